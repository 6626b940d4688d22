//! Producer settings: where the brokers are, which topic each event kind goes to, how values are
//! encoded, and the librdkafka tuning (linger, batch size, compression) plus free-form `extra`
//! properties (TLS, SASL, ...) that flow unchanged into the librdkafka client configuration. Secrets
//! in `extra` never leave this module in printable form: [`ProducerConfig`]'s `Debug` redacts them. The
//! SASL password may come from a file (`sasl_password_file`), read when the client is built.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use rdkafka::ClientConfig;
use serde::Deserialize;
use sluice_schemas::{Encoding, EventKind};

use crate::ProduceError;

/// What `Debug` prints instead of a secret value.
const REDACTED: &str = "<redacted>";

/// How to reach Kafka and what to write there. `Default` suits a local single-broker setup.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProducerConfig {
    /// `bootstrap.servers`: comma-separated `host:port` list.
    pub brokers: String,
    /// Topic of rank events (default `rank-events`).
    pub rank_topic: String,
    /// Topic of crawl events (default `crawl-events`).
    pub crawl_topic: String,
    /// Topic of click events (default `click-events`).
    pub click_topic: String,
    /// Encoding of record values; bincode records name it in a `sluice-encoding` header, JSON records
    /// (the default a consumer assumes) carry none.
    pub encoding: Encoding,
    /// `linger.ms`: how long librdkafka waits to fill a batch.
    pub linger_ms: u32,
    /// `batch.size`: maximum bytes of one batch per partition.
    pub batch_size: u32,
    /// `compression.type`: none, gzip, snappy, lz4 or zstd.
    pub compression: String,
    /// Any other librdkafka property, applied after the settings above (so it may override them),
    /// except the [`CONTRACT_SETTINGS`] (idempotence, `acks=all`, the murmur2 partitioner). Keys containing
    /// `password`, `secret` or `sasl.jaas` are redacted from `Debug` output.
    pub extra: BTreeMap<String, String>,
    /// A file holding the SASL password, set as `sasl.password` (over one in `extra`); a trailing
    /// newline is not part of it. Only the path is ever printed.
    pub sasl_password_file: Option<PathBuf>,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            brokers: "127.0.0.1:9092".to_owned(),
            rank_topic: EventKind::Rank.default_topic().to_owned(),
            crawl_topic: EventKind::Crawl.default_topic().to_owned(),
            click_topic: EventKind::Click.default_topic().to_owned(),
            encoding: Encoding::Json,
            linger_ms: 5,
            batch_size: 1_000_000,
            compression: "lz4".to_owned(),
            extra: BTreeMap::new(),
            sasl_password_file: None,
        }
    }
}

impl ProducerConfig {
    /// The configured topic of an event kind.
    pub fn topic(&self, kind: EventKind) -> &str {
        match kind {
            EventKind::Rank => &self.rank_topic,
            EventKind::Crawl => &self.crawl_topic,
            EventKind::Click => &self.click_topic,
        }
    }

    /// The librdkafka configuration of an idempotent producer with these settings. Fails only when the
    /// SASL password file cannot be read.
    pub(crate) fn client_config(&self) -> Result<ClientConfig, ProduceError> {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &self.brokers)
            .set("linger.ms", self.linger_ms.to_string())
            .set("batch.size", self.batch_size.to_string())
            .set("compression.type", &self.compression);
        for (key, value) in &self.extra {
            cfg.set(key, value);
        }
        if let Some(path) = &self.sasl_password_file {
            let password =
                std::fs::read_to_string(path).map_err(|source| ProduceError::PasswordFile {
                    path: path.clone(),
                    source,
                })?;
            cfg.set("sasl.password", password.trim_end_matches(['\n', '\r']));
        }
        Ok(require_contract(cfg))
    }
}

/// The librdkafka settings every Sluice producer has, whatever else is configured:
/// - `enable.idempotence=true`, `acks=all`: idempotence (which implies bounded in-flight requests and
///   retries within `message.timeout.ms`) is what makes a retried send not duplicate or reorder records.
/// - `partitioner=murmur2_random`: Kafka's Java-client partitioner, murmur2 of the key (librdkafka's
///   default is CRC32). Every client writing Sluice topics must place a key on the same partition, or
///   a copy of an event sent through another client escapes its partition's dedup window
///   (docs/events.md, "Partitioning").
pub const CONTRACT_SETTINGS: [(&str, &str); 3] = [
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("partitioner", "murmur2_random"),
];

/// Sets [`CONTRACT_SETTINGS`] over whatever `cfg` holds. Every librdkafka producer of the project
/// is built through this: the [`EventProducer`](crate::EventProducer), ingest's dead-letter sink and
/// `sluice-ingest dead-letters republish`.
pub fn require_contract(mut cfg: ClientConfig) -> ClientConfig {
    for (key, value) in CONTRACT_SETTINGS {
        cfg.set(key, value);
    }
    cfg
}

/// Whether a librdkafka property holds a secret that must never be printed.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("password") || key.contains("secret") || key.contains("sasl.jaas")
}

/// `extra` with secret values replaced by [`REDACTED`].
struct RedactedMap<'a>(&'a BTreeMap<String, String>);

impl fmt::Debug for RedactedMap<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| {
                let shown: &str = if is_secret_key(k) { REDACTED } else { v };
                (k, shown)
            }))
            .finish()
    }
}

impl fmt::Debug for ProducerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProducerConfig")
            .field("brokers", &self.brokers)
            .field("rank_topic", &self.rank_topic)
            .field("crawl_topic", &self.crawl_topic)
            .field("click_topic", &self.click_topic)
            .field("encoding", &self.encoding)
            .field("linger_ms", &self.linger_ms)
            .field("batch_size", &self.batch_size)
            .field("compression", &self.compression)
            .field("extra", &RedactedMap(&self.extra))
            .field("sasl_password_file", &self.sasl_password_file)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let cfg = ProducerConfig::default();
        assert_eq!(cfg.brokers, "127.0.0.1:9092");
        assert_eq!(cfg.topic(EventKind::Rank), "rank-events");
        assert_eq!(cfg.topic(EventKind::Crawl), "crawl-events");
        assert_eq!(cfg.topic(EventKind::Click), "click-events");
        assert_eq!(cfg.encoding, Encoding::Json);
        assert_eq!(cfg.linger_ms, 5);
        assert_eq!(cfg.compression, "lz4");
    }

    #[test]
    fn debug_redacts_secrets_only() {
        let mut cfg = ProducerConfig::default();
        for (k, v) in [
            ("sasl.password", "hunter2"),
            ("ssl.key.password", "pa55"),
            ("sasl.oauthbearer.client.secret", "s3cr3t"),
            ("sasl.jaas.config", "jaas-value"),
            ("SASL.PASSWORD.UPPER", "upper-value"),
            ("security.protocol", "SASL_SSL"),
            ("sasl.username", "alice"),
        ] {
            cfg.extra.insert(k.to_owned(), v.to_owned());
        }
        let printed = format!("{cfg:?}");
        for secret in ["hunter2", "pa55", "s3cr3t", "jaas-value", "upper-value"] {
            assert!(!printed.contains(secret), "{secret} leaked in {printed}");
        }
        assert_eq!(printed.matches(REDACTED).count(), 5, "{printed}");
        assert!(
            printed.contains(r#""security.protocol": "SASL_SSL""#),
            "{printed}"
        );
        assert!(printed.contains(r#""sasl.username": "alice""#), "{printed}");
        // The alternate form goes through the same code.
        assert!(!format!("{cfg:#?}").contains("hunter2"));
    }

    #[test]
    fn client_config_forces_idempotence_after_extra() {
        let mut cfg = ProducerConfig::default();
        cfg.extra.insert("acks".to_owned(), "1".to_owned());
        cfg.extra
            .insert("enable.idempotence".to_owned(), "false".to_owned());
        cfg.extra.insert("linger.ms".to_owned(), "50".to_owned());
        let client = cfg.client_config().unwrap();
        assert_eq!(client.get("acks"), Some("all"));
        assert_eq!(client.get("enable.idempotence"), Some("true"));
        assert_eq!(client.get("linger.ms"), Some("50"));
        assert_eq!(client.get("compression.type"), Some("lz4"));
        assert_eq!(client.get("bootstrap.servers"), Some("127.0.0.1:9092"));
    }

    #[test]
    fn client_config_forces_the_java_compatible_partitioner() {
        let mut cfg = ProducerConfig::default();
        cfg.extra
            .insert("partitioner".to_owned(), "consistent_random".to_owned());
        assert_eq!(
            cfg.client_config().unwrap().get("partitioner"),
            Some("murmur2_random")
        );
    }

    #[test]
    fn sasl_password_comes_from_its_file_and_is_never_printed() {
        let dir = std::env::temp_dir().join(format!("sluice-produce-sasl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("kafka-password");
        std::fs::write(&file, "hunter7\r\n").unwrap();
        let mut cfg = ProducerConfig {
            sasl_password_file: Some(file.clone()),
            ..ProducerConfig::default()
        };
        cfg.extra
            .insert("sasl.password".to_owned(), "stale".to_owned());
        assert_eq!(
            cfg.client_config().unwrap().get("sasl.password"),
            Some("hunter7")
        );
        let printed = format!("{cfg:?}");
        assert!(!printed.contains("hunter7"), "{printed}");
        assert!(printed.contains("kafka-password"), "{printed}");
        assert_eq!(
            ProducerConfig::default()
                .client_config()
                .unwrap()
                .get("sasl.password"),
            None
        );
        std::fs::remove_file(&file).unwrap();
        let err = cfg.client_config().unwrap_err().to_string();
        assert!(
            err.starts_with("cannot read the kafka SASL password file (--kafka-sasl-password-file, env SLUICE_KAFKA_SASL_PASSWORD_FILE) "),
            "{err}"
        );
        std::fs::remove_dir(&dir).unwrap();
    }
}
