//! The operator's path over TLS with credentials from files, end to end: `sluice-produce` with the
//! stack's `produce.toml` (SASL_SSL, SCRAM-SHA-512, its password in a file) publishes, ingest with the
//! stack's `sluice.toml` (Kafka as above, PostgreSQL through PgBouncer with `sslmode=verify-full`,
//! ClickHouse over HTTPS with the local CA; every password in a file) stores it, exactly: the expectation
//! is what the topics hold, read back and decoded by the test. Neither process may print a password,
//! even at debug level.

use std::process::Command;
use std::time::Duration;

use sluice_loadtest::kit::kafka::read_all;
use sluice_loadtest::verify::Expected;
use sluice_schemas::{decode, Encoding, EventKind, Limits};

use crate::support::TestStack;
use crate::topology::{Cluster, Restore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the cluster stack (make up-cluster): make test-cluster runs it"]
async fn produce_and_ingest_over_tls_with_password_files_and_no_secret_in_logs(
) -> anyhow::Result<()> {
    let _exclusive = crate::faults::EXCLUSIVE.lock().await;
    let cluster = Cluster::from_env();
    let _restore = Restore(&cluster);
    let test = TestStack::on(&cluster.target()?, "tls_secrets", 3).await?;

    // sluice-produce is a binary of another crate: built beside ours (`make test-cluster` builds it).
    let ingest_bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_sluice-ingest"));
    let produce_bin = ingest_bin.with_file_name("sluice-produce");
    anyhow::ensure!(
        produce_bin.exists(),
        "{} is missing: `cargo build -p sluice-producers --bin sluice-produce` (make test-cluster does)",
        produce_bin.display()
    );
    let produced = Command::new(&produce_bin)
        .env_clear()
        .env("RUST_LOG", "debug")
        .arg("--config")
        .arg(cluster.state_file("produce.toml"))
        .args(["--rank-topic", test.topic(EventKind::Rank)])
        .args(["--crawl-topic", test.topic(EventKind::Crawl)])
        .args(["--click-topic", test.topic(EventKind::Click)])
        .args([
            "synthetic",
            "--rate",
            "2000",
            "--count",
            "6000",
            "--encoding",
            "json",
        ])
        .args(["--run-id", &test.name])
        .output()?;
    let produce_log = format!(
        "{}{}",
        String::from_utf8_lossy(&produced.stdout),
        String::from_utf8_lossy(&produced.stderr)
    );
    anyhow::ensure!(
        produced.status.success(),
        "sluice-produce failed:\n{produce_log}"
    );

    let mut ingest = test.spawn_ingest("main", &[("RUST_LOG", "debug")])?;
    test.wait_caught_up_alive(&mut ingest, Duration::from_secs(90))
        .await?;
    let ingest_log = ingest.log.clone();
    let status = ingest.terminate(Duration::from_secs(30))?;
    anyhow::ensure!(status.success(), "ingest exit status {status}");

    // What the topics hold, decoded independently of ingest.
    let mut events = Vec::new();
    for kind in EventKind::ALL {
        for message in read_all(&test.brokers, test.topic(kind))? {
            use rdkafka::message::Message;
            let payload = message.payload().unwrap_or_default();
            events.push(
                decode(
                    kind,
                    Encoding::Json,
                    payload,
                    &Limits::default(),
                    chrono::Utc::now(),
                )
                .map_err(|e| {
                    anyhow::anyhow!("undecodable record in {}: {e:?}", test.topic(kind))
                })?,
            );
        }
    }
    anyhow::ensure!(
        events.len() == 6000,
        "the topics hold {} records, not 6000",
        events.len()
    );
    test.assert_matches(&Expected::from_events(&events)).await?;

    let ingest_log = std::fs::read_to_string(&ingest_log)?;
    for secret in ["kafka-password", "postgres-password", "clickhouse-password"] {
        let value = cluster.secret(secret)?;
        assert!(
            !produce_log.contains(&value),
            "sluice-produce printed the {secret}"
        );
        assert!(!ingest_log.contains(&value), "ingest printed the {secret}");
    }
    test.cleanup().await
}
