//! Settings of the ingest service. Sources, later ones winning: built-in defaults (pointing at the local
//! stack), the TOML file named by `SLUICE_CONFIG` (or `--config`), then `SLUICE_<KEY>` environment
//! variables (`SLUICE_KAFKA_BROKERS`, `SLUICE_POSTGRES_URL`, …: the key in upper case). A bad value is
//! reported with its key and, for enumerations, the accepted values. Secrets (database passwords) may come
//! from files (`*_password_file`) and are never printed: `Debug` redacts them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use sluice_schemas::{EventKind, Limits};
use sluice_sinks::postgres::Pooling;

/// Where to start a partition that has no stored offset yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartFrom {
    Earliest,
    Latest,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct Config {
    pub kafka_brokers: String,
    pub group_id: String,
    /// Static group membership: this process's stable identity in the group (librdkafka
    /// `group.instance.id`; env `SLUICE_GROUP_INSTANCE_ID`), e.g. the pod name of a StatefulSet. A
    /// restarted member with the same id gets its partitions back at once instead of after the session
    /// timeout; a stopped one keeps them until the session timeout. Unset or empty: dynamic membership.
    pub group_instance_id: Option<String>,
    pub rank_topic: String,
    pub crawl_topic: String,
    pub click_topic: String,
    /// Event kinds this instance consumes: a comma list of rank, crawl, click (e.g. to give noisy crawl
    /// traffic its own deployment and consumer group).
    pub kinds: String,
    /// Where a partition without a stored offset starts.
    pub start_from: StartFrom,
    /// Topic that receives refused records with their reason; empty disables dead-lettering.
    pub dead_letter_topic: String,
    /// Idempotency window, in seconds of Kafka record time: a re-sent `event_id` within it is dropped.
    /// 0 disables deduplication.
    pub dedup_window_secs: u64,
    /// Extra librdkafka properties (TLS, SASL, fetch sizes, …), passed through as-is.
    pub kafka_properties: BTreeMap<String, String>,
    /// A file holding the Kafka SASL password: every Kafka client gets it as `sasl.password` (over one
    /// in `kafka_properties`). Read when a client is built; only the path is ever printed.
    pub kafka_sasl_password_file: Option<PathBuf>,

    pub postgres_url: String,
    /// A file holding the PostgreSQL password (overrides the URL's).
    pub postgres_password_file: Option<PathBuf>,
    pub postgres_max_connections: u32,
    /// How `postgres_url` reaches PostgreSQL: `session` (directly, or a PgBouncer in session mode) or
    /// `transaction` (a PgBouncer with `pool_mode = transaction`: no named prepared statements, no
    /// session state; docs/postgres.md).
    pub postgres_pool_mode: Pooling,

    /// Merge the OLTP aggregates into PostgreSQL. `false` (with `clickhouse_enabled`) makes an OLAP-only
    /// consumer group: PostgreSQL then keeps only its offsets and dedup window.
    pub postgres_aggregates_enabled: bool,
    /// Write raw events to ClickHouse. `false` runs the PostgreSQL path alone.
    pub clickhouse_enabled: bool,
    pub clickhouse_url: String,
    pub clickhouse_database: String,
    pub clickhouse_user: Option<String>,
    pub clickhouse_password: Option<String>,
    pub clickhouse_password_file: Option<PathBuf>,
    /// Concurrent INSERTs per ClickHouse table and flush, at most (each of at least 50,000 rows): the
    /// server runs one insert and its materialized views on one thread, so more streams let a flush's
    /// inserts use more of its cores, at the price of more, smaller parts for it to merge. Default 1
    /// (2 before session 21: on the 2-core benchmark machine, ClickHouse spent 10 % less CPU in
    /// sustained runs with 1, drains were unchanged; docs/BENCHMARKS.md). Raise it when ClickHouse has
    /// cores to spare.
    pub clickhouse_insert_streams: usize,
    /// The ClickHouse cluster (its `remote_servers` name on the servers) the migrations run on:
    /// `ON CLUSTER`, with `Replicated*` engines (docs/analytics.md, "On a cluster"). Unset or empty: a
    /// single server. `clickhouse_url` may then list the replicas, comma-separated, the first preferred.
    pub clickhouse_cluster: Option<String>,
    /// A PEM file of CA certificates that `https://` ClickHouse URLs may be signed by, trusted besides
    /// the system's roots.
    pub clickhouse_ca_file: Option<PathBuf>,

    /// Time between flushes when caught up (the lag-adaptive minimum), in milliseconds.
    pub flush_interval_ms: u64,
    /// Longest time between flushes, reached when the fetch lag is `flush_lag_high` or more.
    /// Equal to `flush_interval_ms` for a fixed interval.
    pub flush_interval_max_ms: u64,
    /// Smoothed fetch lag (records) at or below which the interval is the minimum.
    pub flush_lag_low: u64,
    /// Smoothed fetch lag (records) at or above which the interval is the maximum.
    pub flush_lag_high: u64,
    /// Flush early once batches hold this many aggregate rows.
    pub max_buffered_keys: usize,
    /// The memory budget of what ingest buffers: the batches (accumulating and in flight), the dedup
    /// windows and librdkafka's pre-fetch queue ([`Config::kafka_queue_bytes`],
    /// [`Config::batch_budget_bytes`]). Default: a quarter of the memory ingest may use
    /// ([`default_buffer_budget`]).
    pub max_buffered_bytes: usize,
    /// Partitions flushed concurrently.
    pub flush_concurrency: usize,
    /// `/health/ready` turns not-ready when a flush has been in flight (retrying) this long, or when no
    /// Kafka broker has been reachable this long, in milliseconds.
    pub ready_stall_timeout_ms: u64,
    /// How long shutdown (and a rebalance's drain) may take before unflushed work is left to replay.
    pub shutdown_timeout_ms: u64,

    /// Largest record value accepted, in bytes.
    pub max_record_bytes: usize,
    /// Oldest `occurred_at` accepted, in hours before now.
    pub max_event_age_hours: i64,
    /// Newest `occurred_at` accepted, in minutes after now.
    pub max_event_future_minutes: i64,

    /// Prometheus metrics listener; empty string disables it.
    pub metrics_addr: String,
    pub log_format: LogFormat,
    /// Run migrations at start-up.
    pub migrate_on_start: bool,
    /// `false` runs ingest without any sink (benchmark baseline R1): records are read, decoded and
    /// aggregated, and the batches are dropped at flush time. Nothing is stored.
    pub sinks_enabled: bool,
}

impl Default for Config {
    fn default() -> Self {
        let limits = Limits::default();
        Config {
            kafka_brokers: "127.0.0.1:9092".into(),
            group_id: "sluice-ingest".into(),
            group_instance_id: None,
            rank_topic: EventKind::Rank.default_topic().into(),
            crawl_topic: EventKind::Crawl.default_topic().into(),
            click_topic: EventKind::Click.default_topic().into(),
            kinds: "rank,crawl,click".into(),
            start_from: StartFrom::Earliest,
            dead_letter_topic: "sluice-dead-letters".into(),
            dedup_window_secs: 900,
            kafka_properties: BTreeMap::new(),
            kafka_sasl_password_file: None,
            postgres_url: "postgres://sluice:sluice@127.0.0.1:5432/sluice".into(),
            postgres_password_file: None,
            postgres_max_connections: 8,
            postgres_pool_mode: Pooling::Session,
            postgres_aggregates_enabled: true,
            clickhouse_enabled: true,
            clickhouse_url: "http://127.0.0.1:8123".into(),
            clickhouse_database: "sluice".into(),
            clickhouse_user: None,
            clickhouse_password: None,
            clickhouse_password_file: None,
            clickhouse_insert_streams: 1,
            clickhouse_cluster: None,
            clickhouse_ca_file: None,
            flush_interval_ms: 1000,
            flush_interval_max_ms: 10_000,
            flush_lag_low: 10_000,
            flush_lag_high: 1_000_000,
            max_buffered_keys: 1_000_000,
            max_buffered_bytes: default_buffer_budget(),
            flush_concurrency: 4,
            shutdown_timeout_ms: 20_000,
            ready_stall_timeout_ms: 60_000,
            max_record_bytes: limits.max_record_bytes,
            max_event_age_hours: limits.max_past.num_hours(),
            max_event_future_minutes: limits.max_future.num_minutes(),
            metrics_addr: "127.0.0.1:9464".into(),
            log_format: LogFormat::Text,
            migrate_on_start: true,
            sinks_enabled: true,
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let props: BTreeMap<&str, &str> = self
            .kafka_properties
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str(),
                    if is_secret_key(k) { "***" } else { v.as_str() },
                )
            })
            .collect();
        f.debug_struct("Config")
            .field("kafka_brokers", &self.kafka_brokers)
            .field("group_id", &self.group_id)
            .field("group_instance_id", &self.group_instance_id)
            .field(
                "topics",
                &[&self.rank_topic, &self.crawl_topic, &self.click_topic],
            )
            .field("start_from", &self.start_from)
            .field("kafka_properties", &props)
            .field("kafka_sasl_password_file", &self.kafka_sasl_password_file)
            .field("postgres_url", &redact(&self.postgres_url))
            .field("postgres_pool_mode", &self.postgres_pool_mode)
            .field("clickhouse_enabled", &self.clickhouse_enabled)
            .field("clickhouse_url", &redact(&self.clickhouse_url))
            .field("clickhouse_database", &self.clickhouse_database)
            .field("clickhouse_user", &self.clickhouse_user)
            .field(
                "clickhouse_password",
                &self.clickhouse_password.as_ref().map(|_| "***"),
            )
            .field("clickhouse_cluster", &self.clickhouse_cluster)
            .field("clickhouse_ca_file", &self.clickhouse_ca_file)
            .field("flush_interval_ms", &self.flush_interval_ms)
            .field("max_buffered_bytes", &self.max_buffered_bytes)
            .field("shutdown_timeout_ms", &self.shutdown_timeout_ms)
            .field("metrics_addr", &self.metrics_addr)
            .finish_non_exhaustive()
    }
}

/// What stands in for a secret in printed settings.
const REDACTED: &str = "***";

use sluice_sinks::error::redact;

/// librdkafka property names that hold secrets.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password") || k.contains("secret") || k.contains("jaas") || k.ends_with(".key.pem")
}

impl Config {
    /// A librdkafka client configuration for this deployment: the brokers, then the caller's own
    /// `settings`, then `kafka_properties` (TLS, SASL, tuning), which therefore override both, then
    /// `sasl.password` from `kafka_sasl_password_file` ([`Config::kafka_properties_with_secrets`]). Every
    /// Kafka client of `sluice-ingest` (consumer, admin, replay, dead-letter reader) starts here, and the
    /// dead-letter sink gets the same properties, so none can miss the security settings. Fails only when
    /// the password file cannot be read.
    pub fn kafka_client_config(
        &self,
        settings: &[(&str, &str)],
    ) -> anyhow::Result<rdkafka::ClientConfig> {
        let mut cc = rdkafka::ClientConfig::new();
        cc.set("bootstrap.servers", &self.kafka_brokers);
        for (key, value) in settings {
            cc.set(*key, *value);
        }
        for (key, value) in self.kafka_properties_with_secrets()? {
            cc.set(key, value);
        }
        Ok(cc)
    }

    /// `kafka_properties`, plus `sasl.password` from `kafka_sasl_password_file` (over one set there):
    /// what every Kafka client gets after its own settings. For the clients built elsewhere (the
    /// dead-letter sink); [`Config::kafka_client_config`] uses it too.
    pub fn kafka_properties_with_secrets(&self) -> anyhow::Result<Vec<(String, String)>> {
        let mut properties = self.kafka_properties.clone();
        if let Some(password) = read_secret(
            self.kafka_sasl_password_file.as_deref(),
            "kafka_sasl_password_file",
        )? {
            properties.insert("sasl.password".into(), password);
        }
        Ok(properties.into_iter().collect())
    }

    /// Loads defaults ← TOML file ← `SLUICE_*` environment, then validates.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("SLUICE_CONFIG").map(PathBuf::from));
        if let Some(path) = &file {
            if !path.exists() {
                bail!("config file {} does not exist", path.display());
            }
            figment = figment.merge(Toml::file(path));
        }
        // Only known keys are read from the environment: the stack scripts use other SLUICE_* variables.
        let known: Vec<String> = Config::keys();
        figment = figment
            .merge(Env::prefixed("SLUICE_").filter(move |k| known.iter().any(|n| k == n.as_str())));
        let config: Config = figment
            .extract()
            .map_err(|e| anyhow::anyhow!(describe(e)))?;
        config.validate()?;
        Ok(config)
    }

    /// The setting names (the TOML keys; `SLUICE_<KEY>` in the environment), in `sluice-ingest config`'s
    /// order.
    pub fn keys() -> Vec<String> {
        match serde_json::to_value(Config::default()) {
            Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }

    /// Every setting with its effective value, as `sluice-ingest config` prints it: one entry per key of
    /// [`Config::keys`], secrets redacted — passwords in URLs (`postgres_url`, `clickhouse_url`, any
    /// `kafka_properties` value), `clickhouse_password`, and `kafka_properties` whose name looks secret
    /// (SASL passwords, JAAS configs, keys). The `*_password_file` settings show the path only: their
    /// files are not read here. Unset optional settings are `null`.
    pub fn effective(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut shown = self.clone();
        shown.postgres_url = redact(&shown.postgres_url);
        shown.clickhouse_url = redact(&shown.clickhouse_url);
        if shown.clickhouse_password.is_some() {
            shown.clickhouse_password = Some(REDACTED.into());
        }
        for (key, value) in shown.kafka_properties.iter_mut() {
            *value = if is_secret_key(key) {
                REDACTED.into()
            } else {
                redact(value)
            };
        }
        match serde_json::to_value(shown) {
            Ok(serde_json::Value::Object(map)) => map,
            // Config is a struct of strings, numbers and string maps: it always serializes to an object.
            _ => unreachable!("Config serializes to a JSON object"),
        }
    }

    /// [`Config::effective`] for people: `key = value` lines, values as JSON (strings quoted, `null` for
    /// unset).
    pub fn effective_text(&self) -> String {
        self.effective()
            .iter()
            .map(|(key, value)| format!("{key} = {value}\n"))
            .collect()
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.flush_interval_ms == 0 {
            bail!("invalid config: flush_interval_ms must be > 0 (milliseconds)");
        }
        if self.flush_interval_max_ms < self.flush_interval_ms {
            bail!(
                "invalid config: flush_interval_max_ms ({}) must be >= flush_interval_ms ({})",
                self.flush_interval_max_ms,
                self.flush_interval_ms
            );
        }
        if self.flush_lag_low == 0 || self.flush_lag_high <= self.flush_lag_low {
            bail!("invalid config: flush_lag_low must be > 0 and flush_lag_high > flush_lag_low (records)");
        }
        if self.shutdown_timeout_ms == 0 {
            bail!("invalid config: shutdown_timeout_ms must be > 0 (milliseconds)");
        }
        if self.ready_stall_timeout_ms == 0 {
            bail!("invalid config: ready_stall_timeout_ms (env SLUICE_READY_STALL_TIMEOUT_MS) must be > 0 (milliseconds)");
        }
        if let Some(id) = &self.group_instance_id {
            if id.len() > 249
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            {
                bail!("invalid config: group_instance_id (env SLUICE_GROUP_INSTANCE_ID) {id:?}: accepted: up to 249 characters of a-z, A-Z, 0-9, '.', '_', '-'");
            }
        }
        if self.flush_concurrency == 0 || self.postgres_max_connections == 0 {
            bail!("invalid config: flush_concurrency and postgres_max_connections must be > 0");
        }
        if !(1..=64).contains(&self.clickhouse_insert_streams) {
            bail!("invalid config: clickhouse_insert_streams must be between 1 and 64 (concurrent INSERTs per table)");
        }
        if let Err(e) = sluice_sinks::clickhouse::parse_urls(&self.clickhouse_url) {
            bail!("invalid config: clickhouse_url (env SLUICE_CLICKHOUSE_URL): {e}");
        }
        if let Some(cluster) = self.clickhouse_cluster() {
            if cluster.len() > 255
                || !cluster
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            {
                bail!("invalid config: clickhouse_cluster (env SLUICE_CLICKHOUSE_CLUSTER) {cluster:?}: accepted: a cluster name of the servers' remote_servers, up to 255 characters of a-z, A-Z, 0-9, '.', '_', '-'; unset or empty for a single server");
            }
        }
        // Bounded before `limits()` builds TimeDeltas from them (an out-of-range TimeDelta panics).
        let (past_max, future_max) = (
            sluice_schemas::validate::MAX_PAST_LIMIT.num_hours(),
            sluice_schemas::validate::MAX_FUTURE_LIMIT.num_minutes(),
        );
        if !(0..=past_max).contains(&self.max_event_age_hours) {
            bail!(
                "invalid config: max_event_age_hours ({}) must be between 0 and {past_max} (hours; accepted event times must fit ClickHouse DateTime)",
                self.max_event_age_hours
            );
        }
        if !(0..=future_max).contains(&self.max_event_future_minutes) {
            bail!(
                "invalid config: max_event_future_minutes ({}) must be between 0 and {future_max} (minutes)",
                self.max_event_future_minutes
            );
        }
        if self.max_record_bytes == 0 {
            bail!("invalid config: max_record_bytes must be at least 1 (bytes)");
        }
        self.limits()
            .check()
            .map_err(|e| anyhow::anyhow!("invalid config: {e}"))?;
        self.event_kinds()?;
        let topics = [&self.rank_topic, &self.crawl_topic, &self.click_topic];
        if topics.iter().any(|t| t.is_empty())
            || topics[0] == topics[1]
            || topics[1] == topics[2]
            || topics[0] == topics[2]
        {
            bail!("invalid config: rank_topic, crawl_topic and click_topic must be distinct, non-empty names");
        }
        if let Some(timeout) = self.kafka_properties.get("session.timeout.ms") {
            let session: u64 = timeout
                .parse()
                .with_context(|| format!("invalid config: kafka_properties.session.timeout.ms={timeout:?} is not a number"))?;
            if self.shutdown_timeout_ms >= session {
                bail!("invalid config: shutdown_timeout_ms ({}) must be below session.timeout.ms ({session}) so a drain cannot get the consumer ejected", self.shutdown_timeout_ms);
            }
        }
        Ok(())
    }

    /// The kinds this instance consumes, parsed from `kinds`.
    pub fn event_kinds(&self) -> anyhow::Result<Vec<EventKind>> {
        let mut kinds = Vec::new();
        for part in self
            .kinds
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let kind: EventKind = part
                .parse()
                .map_err(|e| anyhow::anyhow!("invalid config: kinds (env SLUICE_KINDS): {e}"))?;
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        if kinds.is_empty() {
            bail!("invalid config: kinds (env SLUICE_KINDS) is empty; accepted: a comma list of rank, crawl, click");
        }
        Ok(kinds)
    }

    /// The dedup window in milliseconds, or `None` when deduplication is off.
    pub fn dedup_window_ms(&self) -> Option<i64> {
        (self.dedup_window_secs > 0).then(|| (self.dedup_window_secs as i64).saturating_mul(1000))
    }

    pub fn topic_of(&self, kind: EventKind) -> &str {
        match kind {
            EventKind::Rank => &self.rank_topic,
            EventKind::Crawl => &self.crawl_topic,
            EventKind::Click => &self.click_topic,
        }
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_record_bytes: self.max_record_bytes,
            max_past: chrono::TimeDelta::hours(self.max_event_age_hours),
            max_future: chrono::TimeDelta::minutes(self.max_event_future_minutes),
            ..Limits::default()
        }
    }

    /// The share of `max_buffered_bytes` for librdkafka's pre-fetch: an eighth, at least 2 MiB and at
    /// most 128 MiB (a fetch queue beyond that buys nothing: librdkafka's own defaults are 64 MiB of
    /// queue and a 50 MiB fetch). Half of it is the local queue (`queued.max.messages.kbytes`), half one
    /// fetch response (`fetch.max.bytes`); `kafka_properties` can set either (then the share stays
    /// reserved as is).
    pub fn kafka_queue_bytes(&self) -> usize {
        (self.max_buffered_bytes / 8).clamp(2 * 1024 * 1024, 128 * 1024 * 1024)
    }

    /// The share of `max_buffered_bytes` for the PostgreSQL sink's fingerprints of the aggregate keys
    /// it has written (`PostgresSink::remembering_keys`, fixed at start): a sixty-fourth, at least
    /// 1 MiB and at most 64 MiB (two generations of ~16 M keys); none when the group merges no
    /// aggregates.
    pub fn known_keys_bytes(&self) -> usize {
        if !self.postgres_aggregates_enabled {
            return 0;
        }
        (self.max_buffered_bytes / 64).clamp(1024 * 1024, 64 * 1024 * 1024)
    }

    /// What the batches and the dedup windows may hold together: `max_buffered_bytes` less the
    /// pre-fetch share ([`Config::kafka_queue_bytes`]) and the known keys' share
    /// ([`Config::known_keys_bytes`]), at least half of it. The poll loop takes the windows' bytes out
    /// of it as they grow (`ingest::schedule`).
    pub fn batch_budget_bytes(&self) -> usize {
        self.max_buffered_bytes
            .saturating_sub(self.kafka_queue_bytes())
            .saturating_sub(self.known_keys_bytes())
            .max(self.max_buffered_bytes / 2)
    }

    /// The flush controller's settings.
    pub fn flush_controller(&self) -> sluice_aggregator::controller::ControllerConfig {
        sluice_aggregator::controller::ControllerConfig {
            min: Duration::from_millis(self.flush_interval_ms),
            max: Duration::from_millis(self.flush_interval_max_ms),
            lag_low: self.flush_lag_low as f64,
            lag_high: self.flush_lag_high as f64,
            ..Default::default()
        }
    }

    /// The static-membership instance id, if one is set (an empty value means none).
    pub fn instance_id(&self) -> Option<&str> {
        self.group_instance_id
            .as_deref()
            .filter(|id| !id.is_empty())
    }

    pub fn ready_stall_timeout(&self) -> Duration {
        Duration::from_millis(self.ready_stall_timeout_ms)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }

    /// The PostgreSQL password from its file, if one is configured.
    pub fn postgres_password(&self) -> anyhow::Result<Option<String>> {
        read_secret(
            self.postgres_password_file.as_deref(),
            "postgres_password_file",
        )
    }

    /// The ClickHouse cluster the migrations run on, if one is set (an empty value means none).
    pub fn clickhouse_cluster(&self) -> Option<&str> {
        self.clickhouse_cluster
            .as_deref()
            .filter(|name| !name.is_empty())
    }

    /// The ClickHouse password: from its file if configured, else the inline value.
    pub fn clickhouse_password(&self) -> anyhow::Result<Option<String>> {
        Ok(read_secret(
            self.clickhouse_password_file.as_deref(),
            "clickhouse_password_file",
        )?
        .or_else(|| self.clickhouse_password.clone()))
    }
}

fn read_secret(path: Option<&Path>, key: &str) -> anyhow::Result<Option<String>> {
    let Some(path) = path else { return Ok(None) };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("invalid config: {key}: cannot read {}", path.display()))?;
    Ok(Some(text.trim_end_matches(['\n', '\r']).to_owned()))
}

/// Figment's errors name the key; say which environment variable that is, too.
fn describe(e: figment::Error) -> String {
    e.into_iter()
        .map(|err| {
            let key = err.path.join(".");
            if key.is_empty() {
                format!("invalid config: {err}")
            } else {
                format!(
                    "invalid config: {key} (env SLUICE_{}): {}",
                    key.to_ascii_uppercase(),
                    err.kind
                )
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The default `max_buffered_bytes`: a quarter of the memory this process may use — the cgroup's
/// limit when it has one (a container), else the machine's memory — and at least 512 MiB (the fixed
/// default before, kept as the floor so that a small machine behaves as it did). The same fraction
/// the JVM takes for its default heap. The budget counts the dedup windows, which hold
/// `dedup_window_secs` of keys (≈ 35 bytes each: 3 GB at 100k events/s and 900 s), so a fixed 512 MiB
/// would leave the batches nothing at such rates. Read from two files (`/sys/fs/cgroup`,
/// `/proc/meminfo`) rather than through a system-information crate that scans far more.
pub fn default_buffer_budget() -> usize {
    budget_for_memory(memory_limit())
}

/// A quarter of `memory` bytes, at least 512 MiB ([`default_buffer_budget`]).
fn budget_for_memory(memory: Option<u64>) -> usize {
    const FLOOR: usize = 512 * 1024 * 1024;
    memory
        .map(|m| usize::try_from(m / 4).unwrap_or(usize::MAX))
        .unwrap_or(FLOOR)
        .max(FLOOR)
}

/// The memory this process may use: the smaller of the machine's (`MemTotal`) and its cgroup's limit
/// (v2 `memory.max`, v1 `memory.limit_in_bytes`), in bytes; `None` when neither can be read.
fn memory_limit() -> Option<u64> {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let total = read("/proc/meminfo").as_deref().and_then(mem_total);
    let cgroup = read("/sys/fs/cgroup/memory.max")
        .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
        .as_deref()
        .and_then(cgroup_limit);
    match (total, cgroup) {
        (Some(t), Some(c)) => Some(t.min(c)),
        (t, c) => t.or(c),
    }
}

/// `MemTotal` of a `/proc/meminfo` text, in bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// A cgroup memory limit file's value in bytes; `None` for no limit (`max`, or v1's page-rounded
/// `i64::MAX`).
fn cgroup_limit(text: &str) -> Option<u64> {
    let limit: u64 = text.trim().parse().ok()?;
    (limit < 1 << 62).then_some(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_properties_override_the_callers_settings() {
        let mut c = Config {
            kafka_brokers: "b1:9092".into(),
            ..Config::default()
        };
        c.kafka_properties
            .insert("security.protocol".into(), "SASL_SSL".into());
        c.kafka_properties.insert("acks".into(), "1".into());
        let cc = c
            .kafka_client_config(&[("acks", "all"), ("client.id", "x")])
            .unwrap();
        assert_eq!(cc.get("bootstrap.servers"), Some("b1:9092"));
        assert_eq!(cc.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(cc.get("acks"), Some("1"));
        assert_eq!(cc.get("client.id"), Some("x"));
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's own signature
    fn env_overrides_defaults_and_bad_values_name_the_key() {
        // figment::Jail isolates the environment; results travel out through its error channel.
        let run = |vars: &'static [(&'static str, &'static str)]| -> String {
            let mut out = String::new();
            let _ = figment::Jail::try_with(|jail| {
                for (k, v) in vars {
                    jail.set_env(k, v);
                }
                out = match Config::load(None) {
                    Ok(c) => format!(
                        "OK {} {} {:?}",
                        c.kafka_brokers, c.flush_interval_ms, c.log_format
                    ),
                    Err(e) => format!("ERR {e}"),
                };
                Ok(())
            });
            out
        };
        assert_eq!(run(&[]), "OK 127.0.0.1:9092 1000 Text");
        assert_eq!(
            run(&[
                ("SLUICE_KAFKA_BROKERS", "k1:9092,k2:9092"),
                ("SLUICE_FLUSH_INTERVAL_MS", "750"),
                ("SLUICE_LOG_FORMAT", "json")
            ]),
            "OK k1:9092,k2:9092 750 Json"
        );
        let bad_enum = run(&[("SLUICE_LOG_FORMAT", "xml")]);
        assert!(
            bad_enum.starts_with("ERR invalid config: log_format (env SLUICE_LOG_FORMAT)"),
            "{bad_enum}"
        );
        assert!(
            bad_enum.contains("`text`") && bad_enum.contains("`json`"),
            "{bad_enum}"
        );
        let bad_number = run(&[("SLUICE_FLUSH_INTERVAL_MS", "soon")]);
        assert!(
            bad_number.starts_with(
                "ERR invalid config: flush_interval_ms (env SLUICE_FLUSH_INTERVAL_MS)"
            ),
            "{bad_number}"
        );
        assert!(run(&[("SLUICE_MAX_EVENT_AGE_HOURS", "87600")]).starts_with("OK "));
        for (env, expected) in [
            (&[("SLUICE_FLUSH_INTERVAL_MS", "0")], "ERR invalid config: flush_interval_ms must be > 0 (milliseconds)"),
            (&[("SLUICE_KINDS", "rank,bogus")], "ERR invalid config: kinds (env SLUICE_KINDS): unknown event kind \"bogus\"; accepted: rank, crawl, click"),
            // Event limits that would let a validated event exceed what the databases hold (or overflow a
            // TimeDelta) are refused, naming the key and the accepted range.
            (&[("SLUICE_MAX_EVENT_AGE_HOURS", "9223372036854775807")], "ERR invalid config: max_event_age_hours (9223372036854775807) must be between 0 and 87600 (hours; accepted event times must fit ClickHouse DateTime)"),
            (&[("SLUICE_MAX_EVENT_FUTURE_MINUTES", "-1")], "ERR invalid config: max_event_future_minutes (-1) must be between 0 and 527040 (minutes)"),
            (&[("SLUICE_MAX_RECORD_BYTES", "0")], "ERR invalid config: max_record_bytes must be at least 1 (bytes)"),
            (&[("SLUICE_READY_STALL_TIMEOUT_MS", "0")], "ERR invalid config: ready_stall_timeout_ms (env SLUICE_READY_STALL_TIMEOUT_MS) must be > 0 (milliseconds)"),
            (&[("SLUICE_GROUP_INSTANCE_ID", "pod 0")], "ERR invalid config: group_instance_id (env SLUICE_GROUP_INSTANCE_ID) \"pod 0\": accepted: up to 249 characters of a-z, A-Z, 0-9, '.', '_', '-'"),
            (&[("SLUICE_GROUP_INSTANCE_ID", "sluice-ingest-click-0")], "OK 127.0.0.1:9092 1000 Text"),
            (&[("SLUICE_CLICKHOUSE_URL", "localhost:8123")], "ERR invalid config: clickhouse_url (env SLUICE_CLICKHOUSE_URL): \"localhost:8123\" is not an http:// or https:// URL with a host; accepted: one URL or a comma-separated list of replica URLs, the first preferred"),
            (&[("SLUICE_CLICKHOUSE_URL", "https://ch1:8443,")], "ERR invalid config: clickhouse_url (env SLUICE_CLICKHOUSE_URL): \"\" is not an http:// or https:// URL with a host; accepted: one URL or a comma-separated list of replica URLs, the first preferred"),
            (&[("SLUICE_CLICKHOUSE_URL", "https://ch1:8443, https://ch2:8443")], "OK 127.0.0.1:9092 1000 Text"),
            (&[("SLUICE_CLICKHOUSE_CLUSTER", "my cluster")], "ERR invalid config: clickhouse_cluster (env SLUICE_CLICKHOUSE_CLUSTER) \"my cluster\": accepted: a cluster name of the servers' remote_servers, up to 255 characters of a-z, A-Z, 0-9, '.', '_', '-'; unset or empty for a single server"),
            (&[("SLUICE_CLICKHOUSE_CLUSTER", "sluice")], "OK 127.0.0.1:9092 1000 Text"),
            // Unrelated SLUICE_* variables (used by the stack scripts) are ignored.
            (&[("SLUICE_STATE_DIR", "/tmp/x")], "OK 127.0.0.1:9092 1000 Text"),
        ] {
            assert_eq!(run(env), expected, "{env:?}");
        }
    }

    #[test]
    fn debug_redacts_secrets() {
        let mut c = Config {
            postgres_url: "postgres://u:hunter2@h/db".into(),
            clickhouse_password: Some("hunter3".into()),
            ..Config::default()
        };
        c.kafka_properties
            .insert("sasl.password".into(), "hunter4".into());
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter"), "{shown}");
        assert!(shown.contains("postgres://u:***@h/db"), "{shown}");
    }

    #[test]
    fn effective_settings_list_every_key_with_secrets_redacted() {
        let mut c = Config {
            postgres_url: "postgres://u:hunter2@h:5432/db".into(),
            clickhouse_url: "http://ch:hunter3@h:8123,http://ch:hunter6@h2:8123".into(),
            clickhouse_password: Some("hunter4".into()),
            postgres_password_file: Some("/run/secrets/pg".into()),
            ..Config::default()
        };
        c.kafka_properties
            .insert("sasl.password".into(), "hunter5".into());
        c.kafka_properties
            .insert("security.protocol".into(), "SASL_SSL".into());

        let text = c.effective_text();
        assert!(!text.contains("hunter"), "{text}");
        let lines: Vec<&str> = text.lines().collect();
        let keys: Vec<&str> = lines
            .iter()
            .map(|l| l.split_once(" = ").expect("key = value").0)
            .collect();
        assert_eq!(keys, Config::keys(), "{text}");
        for line in [
            r#"postgres_url = "postgres://u:***@h:5432/db""#,
            r#"clickhouse_url = "http://ch:***@h:8123,http://ch:***@h2:8123""#,
            r#"clickhouse_cluster = null"#,
            r#"clickhouse_ca_file = null"#,
            r#"clickhouse_password = "***""#,
            r#"postgres_password_file = "/run/secrets/pg""#,
            r#"kafka_properties = {"sasl.password":"***","security.protocol":"SASL_SSL"}"#,
            r#"group_instance_id = null"#,
            r#"flush_interval_ms = 1000"#,
            r#"log_format = "text""#,
        ] {
            assert!(lines.contains(&line), "missing {line:?} in\n{text}");
        }

        let json = serde_json::to_string(&c.effective()).unwrap();
        assert!(!json.contains("hunter"), "{json}");
        let parsed: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&json).unwrap();
        assert_eq!(parsed.keys().cloned().collect::<Vec<_>>(), Config::keys());
        assert_eq!(parsed["postgres_url"], "postgres://u:***@h:5432/db");
        // The list is the struct's fields: 42 settings today (a new field shows up here and in
        // `sluice-ingest config --keys`, which the deploy checks read).
        assert_eq!(Config::keys().len(), 42);
    }

    #[test]
    fn kafka_sasl_password_comes_from_its_file_and_only_the_path_is_shown() {
        let dir = std::env::temp_dir().join(format!("sluice-sasl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("kafka-password");
        std::fs::write(&file, "hunter6\n").unwrap();
        let mut c = Config {
            kafka_sasl_password_file: Some(file.clone()),
            ..Config::default()
        };
        // The file wins over a password in kafka_properties; the trailing newline is not part of it.
        c.kafka_properties
            .insert("sasl.password".into(), "stale".into());
        let cc = c.kafka_client_config(&[("client.id", "x")]).unwrap();
        assert_eq!(cc.get("sasl.password"), Some("hunter6"));
        assert_eq!(cc.get("client.id"), Some("x"));

        let text = c.effective_text();
        assert!(
            !text.contains("hunter6") && !text.contains("stale"),
            "{text}"
        );
        let path = serde_json::to_string(&file).unwrap();
        assert!(
            text.lines()
                .any(|l| l == format!("kafka_sasl_password_file = {path}")),
            "{text}"
        );
        assert!(!format!("{c:?}").contains("hunter6"));

        // Without the setting nothing is added; an unreadable file names the key.
        assert_eq!(
            Config::default()
                .kafka_client_config(&[])
                .unwrap()
                .get("sasl.password"),
            None
        );
        std::fs::remove_file(&file).unwrap();
        let err = c.kafka_client_config(&[]).unwrap_err().to_string();
        assert!(
            err.starts_with("invalid config: kafka_sasl_password_file: cannot read "),
            "{err}"
        );
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's own signature
    fn postgres_pool_mode_is_session_or_transaction() {
        let run = |value: Option<&'static str>| -> String {
            let mut out = String::new();
            let _ = figment::Jail::try_with(|jail| {
                if let Some(v) = value {
                    jail.set_env("SLUICE_POSTGRES_POOL_MODE", v);
                }
                out = match Config::load(None) {
                    Ok(c) => format!("OK {:?}", c.postgres_pool_mode),
                    Err(e) => format!("ERR {e}"),
                };
                Ok(())
            });
            out
        };
        assert_eq!(run(None), "OK Session");
        assert_eq!(run(Some("transaction")), "OK Transaction");
        assert_eq!(run(Some("session")), "OK Session");
        let bad = run(Some("statement"));
        assert!(
            bad.starts_with(
                "ERR invalid config: postgres_pool_mode (env SLUICE_POSTGRES_POOL_MODE)"
            ),
            "{bad}"
        );
        assert!(
            bad.contains("`session`") && bad.contains("`transaction`"),
            "{bad}"
        );
    }

    /// The default budget is a quarter of the memory limit, never below the old fixed 512 MiB.
    #[test]
    fn the_default_budget_is_a_quarter_of_the_memory_at_least_512_mib() {
        const MIB: u64 = 1024 * 1024;
        assert_eq!(
            budget_for_memory(Some(24 * 1024 * MIB)),
            6 * 1024 * 1024 * 1024
        );
        assert_eq!(budget_for_memory(Some(4 * 1024 * MIB)), 1024 * 1024 * 1024);
        assert_eq!(budget_for_memory(Some(1024 * MIB)), 512 * 1024 * 1024);
        assert_eq!(budget_for_memory(None), 512 * 1024 * 1024);
        // The limit files as the kernel writes them.
        assert_eq!(
            mem_total("MemTotal:       24683784 kB\nMemFree:  1 kB\n"),
            Some(24_683_784 * 1024)
        );
        assert_eq!(mem_total("MemFree: 1 kB\n"), None);
        assert_eq!(cgroup_limit("2147483648\n"), Some(2 * 1024 * MIB));
        assert_eq!(cgroup_limit("max\n"), None);
        assert_eq!(cgroup_limit("9223372036854771712\n"), None);
    }
}
