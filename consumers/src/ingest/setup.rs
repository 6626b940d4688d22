//! Start-up: the sinks built from the config, their migrations (waiting for databases that are still
//! starting, with the sinks' backoff), the schema check of a process that does not migrate, and the
//! Kafka consumer's settings.

use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::config::ClientConfig;
use sluice_sinks::clickhouse::{ClickHouseConfig, ClickHouseSink};
use sluice_sinks::dead_letter::DeadLetterSink;
use sluice_sinks::postgres::{PostgresSink, PARTITION_MONTHS_AHEAD};
use sluice_sinks::retry::Backoff;
use sluice_sinks::{SinkError, SinkSet};

use crate::config::{Config, StartFrom};

/// How start-up waits for a database: attempts up to 2 s apart.
fn waiting() -> Backoff {
    Backoff::new(Duration::from_millis(250), Duration::from_secs(2))
}

/// Builds the sinks from the config.
pub fn sinks(config: &Config) -> anyhow::Result<SinkSet> {
    let mut postgres = PostgresSink::connect_pooled(
        &config.postgres_url,
        config.postgres_password()?.as_deref(),
        &config.group_id,
        config.postgres_max_connections,
        config.postgres_pool_mode,
    )?;
    if config.postgres_aggregates_enabled {
        postgres = postgres.remembering_keys(config.known_keys_bytes());
    } else {
        postgres = postgres.without_aggregates();
    }
    let clickhouse = config
        .clickhouse_enabled
        .then(|| -> anyhow::Result<ClickHouseSink> {
            ClickHouseSink::new(&ClickHouseConfig {
                url: config.clickhouse_url.clone(),
                database: config.clickhouse_database.clone(),
                user: config.clickhouse_user.clone(),
                password: config.clickhouse_password()?,
                insert_streams: config.clickhouse_insert_streams,
                cluster: config.clickhouse_cluster().map(str::to_owned),
                ca_file: config.clickhouse_ca_file.clone(),
            })
            // The URLs were checked by Config::validate: what can fail here is the CA file.
            .context("invalid config: clickhouse_ca_file (env SLUICE_CLICKHOUSE_CA_FILE)")
        });
    let dead_letters = if config.dead_letter_topic.is_empty() {
        None
    } else {
        let props = config.kafka_properties_with_secrets()?;
        Some(DeadLetterSink::new(
            &config.kafka_brokers,
            &config.dead_letter_topic,
            &props,
        )?)
    };
    Ok(SinkSet {
        postgres,
        clickhouse: clickhouse.transpose()?,
        dead_letters,
    })
}

/// Applies both sinks' migrations, waiting (up to `patience`) for databases that are still starting.
pub async fn migrate(sinks: &SinkSet, patience: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + patience;
    let mut backoff = waiting();
    loop {
        let result = async {
            sinks.postgres.migrate().await?;
            sinks
                .postgres
                .ensure_partitions(PARTITION_MONTHS_AHEAD)
                .await?;
            if let Some(ch) = &sinks.clickhouse {
                // One instance at a time: ClickHouse's DDL has no lock of its own.
                sinks.postgres.exclusively(ch.migrate()).await?;
            }
            Ok::<_, SinkError>(())
        }
        .await;
        match result {
            Ok(()) => return Ok(()),
            Err(e) if e.is_transient() && Instant::now() < deadline => {
                tracing::warn!(error = %e, "migrations waiting for the database");
                tokio::time::sleep(backoff.next_delay()).await;
            }
            Err(e) => return Err(e).context("migrations failed"),
        }
    }
}

/// For a process that does not migrate (`migrate_on_start = false`, e.g. logged in as a member of
/// `sluice_writer`): waits up to `patience` for PostgreSQL, then fails with a clear message when the
/// schema lacks a migration this build needs, instead of failing later at the first commit.
pub async fn check_schema(postgres: &PostgresSink, patience: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + patience;
    let mut backoff = waiting();
    loop {
        match postgres.missing_migrations().await {
            Ok(missing) if missing.is_empty() => return Ok(()),
            Ok(missing) => anyhow::bail!(
                "the PostgreSQL schema lacks migrations {missing:?} that this build needs and \
                 migrate_on_start is false: run `sluice-ingest migrate` as the tables' owner first"
            ),
            Err(e) if e.is_transient() && Instant::now() < deadline => {
                tracing::warn!(error = %e, "schema check waiting for the database");
                tokio::time::sleep(backoff.next_delay()).await;
            }
            Err(e) => return Err(e).context("cannot check the PostgreSQL schema version"),
        }
    }
}

pub(super) fn consumer_config(config: &Config) -> anyhow::Result<ClientConfig> {
    let auto_offset_reset = match config.start_from {
        StartFrom::Earliest => "earliest",
        StartFrom::Latest => "latest",
    };
    // librdkafka's pre-fetch counts toward `max_buffered_bytes`: its local queue and one fetch response
    // get half of `Config::kafka_queue_bytes` each (librdkafka's defaults, 64 MiB and 50 MiB, are
    // outside any budget). A fetch is raised to `message.max.bytes` by librdkafka if below it.
    let share = config.kafka_queue_bytes() / 2;
    let queue_kbytes = (share / 1024).to_string();
    let fetch_bytes = share.to_string();
    let mut settings: Vec<(&str, &str)> = vec![
        ("group.id", config.group_id.as_str()),
        ("client.id", "sluice-ingest"),
        ("enable.auto.commit", "false"),
        ("enable.auto.offset.store", "false"),
        ("enable.partition.eof", "false"),
        ("partition.assignment.strategy", "cooperative-sticky"),
        ("statistics.interval.ms", "1000"),
        // librdkafka waits 1 s (its default) before fetching again once its local queue is full; at
        // 100k+ events/s that leaves the consumer idle half the time. Measured on a 1M-event backlog:
        // 158k events/s with the default, 320k with 20 ms (docs/BENCHMARKS.md).
        ("fetch.queue.backoff.ms", "20"),
        ("auto.offset.reset", auto_offset_reset),
        ("queued.max.messages.kbytes", &queue_kbytes),
        ("fetch.max.bytes", &fetch_bytes),
    ];
    // Static membership (docs/operations.md, "Static membership"): a restart with the same id gets the
    // same partitions back without waiting for the old session to time out.
    if let Some(id) = config.instance_id() {
        settings.push(("group.instance.id", id));
    }
    config.kafka_client_config(&settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every Kafka client ingest builds gets the SASL password from `kafka_sasl_password_file`: librdkafka
    /// refuses to create a SASL client without one ("sasl.username and sasl.password must be set").
    #[tokio::test]
    async fn every_kafka_client_gets_the_sasl_password_file() {
        let dir = std::env::temp_dir().join(format!("sluice-setup-sasl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("kafka-password");
        std::fs::write(&file, "hunter8\n").unwrap();
        let mut config = Config {
            kafka_sasl_password_file: Some(file),
            clickhouse_enabled: false,
            ..Config::default()
        };
        for (k, v) in [
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "sluice"),
        ] {
            config.kafka_properties.insert(k.into(), v.into());
        }
        let sinks = sinks(&config).map_err(|e| e.to_string());
        assert!(sinks.is_ok(), "{:?}", sinks.err());
        let consumer: Result<rdkafka::consumer::BaseConsumer, _> =
            consumer_config(&config).unwrap().create();
        assert!(consumer.is_ok(), "{:?}", consumer.err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// librdkafka's pre-fetch is part of the memory budget: its queue and one fetch get a sixteenth of
    /// `max_buffered_bytes` each (at least 1 MiB, at most 64 MiB), librdkafka accepts the values even
    /// for a tiny budget, and `kafka_properties` still override them. The PostgreSQL sink's known keys
    /// take a sixty-fourth (1–64 MiB) when the group merges aggregates.
    #[test]
    fn the_prefetch_queue_is_a_share_of_the_memory_budget() {
        let get = |config: &Config, key: &str| {
            consumer_config(config)
                .unwrap()
                .get(key)
                .map(str::to_owned)
                .unwrap()
        };
        let half_gib = Config {
            max_buffered_bytes: 512 * 1024 * 1024,
            ..Config::default()
        };
        assert_eq!(get(&half_gib, "queued.max.messages.kbytes"), "32768");
        assert_eq!(get(&half_gib, "fetch.max.bytes"), "33554432");
        // 512 MiB less librdkafka's 64 MiB and the known keys' 8 MiB (a sixty-fourth).
        assert_eq!(half_gib.known_keys_bytes(), 8 * 1024 * 1024);
        assert_eq!(half_gib.batch_budget_bytes(), 440 * 1024 * 1024);
        // A large budget goes to the batches and the dedup windows, not to librdkafka.
        let six_gib = Config {
            max_buffered_bytes: 6 * 1024 * 1024 * 1024,
            ..Config::default()
        };
        assert_eq!(get(&six_gib, "queued.max.messages.kbytes"), "65536");
        assert_eq!(get(&six_gib, "fetch.max.bytes"), "67108864");
        assert_eq!(six_gib.known_keys_bytes(), 64 * 1024 * 1024);
        assert_eq!(
            six_gib.batch_budget_bytes(),
            (6 * 1024 - 128 - 64) * 1024 * 1024
        );
        let olap_only = Config {
            postgres_aggregates_enabled: false,
            ..six_gib.clone()
        };
        assert_eq!(olap_only.known_keys_bytes(), 0);
        assert_eq!(
            olap_only.batch_budget_bytes(),
            (6 * 1024 - 128) * 1024 * 1024
        );
        let tiny = Config {
            max_buffered_bytes: 4 * 1024 * 1024,
            ..Config::default()
        };
        assert_eq!(get(&tiny, "queued.max.messages.kbytes"), "1024");
        assert_eq!(get(&tiny, "fetch.max.bytes"), "1048576");
        assert_eq!(tiny.known_keys_bytes(), 1024 * 1024);
        assert_eq!(tiny.batch_budget_bytes(), 2 * 1024 * 1024);
        let consumer: Result<rdkafka::consumer::BaseConsumer, _> =
            consumer_config(&tiny).unwrap().create();
        assert!(consumer.is_ok(), "{:?}", consumer.err());
        let mut own = tiny.clone();
        own.kafka_properties
            .insert("fetch.max.bytes".into(), "5000000".into());
        assert_eq!(get(&own, "fetch.max.bytes"), "5000000");
    }

    #[tokio::test]
    async fn the_clickhouse_sink_gets_the_cluster_and_a_bad_ca_file_names_its_key() {
        let cluster = |name: Option<&str>| Config {
            clickhouse_cluster: name.map(str::to_owned),
            dead_letter_topic: String::new(),
            ..Config::default()
        };
        let built = sinks(&cluster(Some("sluice"))).unwrap();
        assert_eq!(built.clickhouse.unwrap().cluster(), Some("sluice"));
        // Empty means a single server, like unset.
        let built = sinks(&cluster(Some(""))).unwrap();
        assert_eq!(built.clickhouse.unwrap().cluster(), None);
        let built = sinks(&cluster(None)).unwrap();
        assert_eq!(built.clickhouse.unwrap().cluster(), None);

        let missing = Config {
            clickhouse_ca_file: Some("/nonexistent/ca.pem".into()),
            ..cluster(None)
        };
        let error = format!("{:#}", sinks(&missing).unwrap_err());
        assert!(
            error.starts_with(
                "invalid config: clickhouse_ca_file (env SLUICE_CLICKHOUSE_CA_FILE): "
            ) && error.contains("CA file /nonexistent/ca.pem: cannot read it"),
            "{error}"
        );
    }
}
