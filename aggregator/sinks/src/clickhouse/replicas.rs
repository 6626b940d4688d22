//! Several replicas behind one sink, and HTTPS with a private CA. Every request (an insert, a query, a
//! migration step) goes to one replica — first the preferred one: the first URL at start, then whichever
//! answered last — and, on a transient error (network, timeout, a replica without ZooKeeper), to the
//! next URL in order, until each was tried once; the error of the last one is returned (the flush then
//! backs off and retries). A data or permanent error is returned at once: another replica would refuse
//! the same rows.
//!
//! Why one replica's local tables and not a `Distributed` table: with one shard every replica holds all
//! the data, so local `Replicated*` tables answer every analyst query on any replica; an insert into a
//! Replicated table is durable on that replica when it returns (a `Distributed` insert is by default
//! queued on the receiving node and forwarded later, which would let PostgreSQL commit before
//! ClickHouse has the rows); and a retry hits Replicated block deduplication: an insert is retried by
//! calling the same closure again with the same rows, the same `ingested_at`, the same order and the
//! same split into `INSERT`s ([`super::ClickHouseSink::write_all`]), so its blocks have the checksums
//! ZooKeeper already recorded if the first attempt landed, and the other replica drops them. Rows the
//! dedup window misses are still absorbed downstream (ReplacingMergeTree on `event_id`, uniqExact
//! states), as on a single server.
//!
//! TLS: the `clickhouse` crate's own client (hyper with `hyper-tls`, i.e. the system OpenSSL through
//! `native-tls`) trusts the system roots only; with a CA file the sink builds the same client — the
//! crate's keep-alive and idle-pool settings — around a `native-tls` connector that also trusts the
//! file's certificates, and hands it to the crate with `Client::with_http_client`.

use std::future::Future;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;

use super::{ClickHouseSink, Replica, SINK};
use crate::error::{redact, Result, SinkError};

/// The replica URLs of a `url` setting: one URL or several separated by commas, each `http://` or
/// `https://` with a host. `Err` says which part is wrong and what is accepted.
pub fn parse_urls(setting: &str) -> std::result::Result<Vec<String>, String> {
    let urls: Vec<String> = setting
        .split(',')
        .map(str::trim)
        .map(str::to_owned)
        .collect();
    for url in &urls {
        let host = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"));
        if host.is_none_or(|h| h.is_empty() || h.starts_with(['/', ':'])) {
            return Err(format!(
                "{:?} is not an http:// or https:// URL with a host; accepted: one URL or a comma-separated list of replica URLs, the first preferred",
                redact(url)
            ));
        }
    }
    Ok(urls)
}

/// The same as the crate's defaults (`clickhouse::http_client::default`).
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(2);

/// A `clickhouse` client (no URL yet) whose HTTP(S) client trusts the certificates of the PEM file at
/// `path` as well as the system's.
pub(super) fn https_client(path: &Path) -> Result<clickhouse::Client> {
    let fail =
        |what: String| SinkError::permanent(SINK, format!("CA file {}: {what}", path.display()));
    let pem = std::fs::read(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
    let certificates = native_tls::Certificate::stack_from_pem(&pem)
        .map_err(|e| fail(format!("not PEM certificates: {e}")))?;
    if certificates.is_empty() {
        return Err(fail("holds no certificate".into()));
    }
    let mut tls = native_tls::TlsConnector::builder();
    for certificate in certificates {
        tls.add_root_certificate(certificate);
    }
    let tls = tls
        .build()
        .map_err(|e| fail(format!("TLS setup failed: {e}")))?;
    let mut http = HttpConnector::new();
    http.set_keepalive(Some(TCP_KEEPALIVE));
    http.enforce_http(false);
    let connector = hyper_tls::HttpsConnector::from((http, tls.into()));
    let http = HyperClient::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .build(connector);
    Ok(clickhouse::Client::with_http_client(http))
}

impl ClickHouseSink {
    /// The replica tried first.
    pub(super) fn replica(&self) -> &Replica {
        &self.replicas[self.preferred.load(Ordering::Relaxed) % self.replicas.len()]
    }

    /// Runs `op` on the preferred replica and, after a transient error, on the next ones in order
    /// (each once); the replica that succeeds becomes the preferred one. See the module doc.
    pub(super) async fn on_replicas<'a, T, F, Fut>(&'a self, op: F) -> Result<T>
    where
        F: Fn(&'a Replica) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let n = self.replicas.len();
        let first = self.preferred.load(Ordering::Relaxed) % n;
        let mut tried = 0;
        loop {
            let index = (first + tried) % n;
            tried += 1;
            match op(&self.replicas[index]).await {
                Ok(value) => {
                    if index != first {
                        self.preferred.store(index, Ordering::Relaxed);
                        tracing::info!(replica = index + 1, "clickhouse: now writing to replica");
                    }
                    return Ok(value);
                }
                Err(e) if e.is_transient() && tried < n => {
                    tracing::warn!(
                        replica = index + 1,
                        next = (index + 1) % n + 1,
                        error = %e,
                        "clickhouse replica failed; trying the next one with the same rows"
                    );
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The replicated tables of `database` that `replica` has not caught up on yet: a fetch of an inserted
/// part still queued, or entries of the table's replication log not read yet. `log_pointer` (the next
/// entry to read) and `log_max_index` are both 0 for an empty log and for one unread entry alike, so
/// that case asks ZooKeeper whether the log has any entry. For tests and operators waiting until both
/// replicas hold the same data (`SYSTEM SYNC REPLICA` also waits for queued merges, which never run while
/// merges are stopped).
pub async fn tables_behind(
    replica: &clickhouse::Client,
    database: &str,
) -> clickhouse::error::Result<Vec<String>> {
    let tables: Vec<(String, String, u32, u64, u64)> = replica
        .query(
            "SELECT table, zookeeper_path, inserts_in_queue, log_pointer, log_max_index \
             FROM system.replicas WHERE database = ?",
        )
        .bind(database)
        .fetch_all()
        .await?;
    let mut behind = Vec::new();
    for (table, path, fetches, pointer, max_index) in tables {
        let unread = if pointer > max_index {
            false
        } else if max_index > 0 {
            true
        } else {
            let entries: u64 = replica
                .query("SELECT count() FROM system.zookeeper WHERE path = ?")
                .bind(format!("{path}/log"))
                .fetch_one()
                .await?;
            entries > 0
        };
        if fetches > 0 || unread {
            behind.push(table);
        }
    }
    Ok(behind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_one_or_several_replica_urls() {
        assert_eq!(
            parse_urls("http://127.0.0.1:8123").unwrap(),
            ["http://127.0.0.1:8123"]
        );
        assert_eq!(
            parse_urls("https://localhost:18443, https://localhost:28443").unwrap(),
            ["https://localhost:18443", "https://localhost:28443"]
        );
        for bad in [
            "",
            "localhost:8123",
            "http://",
            "https://a:1,",
            "ftp://a",
            "http://:8123",
        ] {
            let error = parse_urls(bad).unwrap_err();
            assert!(
                error.ends_with("accepted: one URL or a comma-separated list of replica URLs, the first preferred"),
                "{bad:?}: {error}"
            );
        }
        // A password in a refused URL is not repeated.
        let error = parse_urls("htp://u:hunter2@h").unwrap_err();
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn a_ca_file_must_hold_certificates() {
        let dir = std::env::temp_dir().join(format!("sluice-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").unwrap();
        let error = https_client(&empty).unwrap_err().to_string();
        assert!(
            error.contains(&format!("CA file {}: ", empty.display())),
            "{error}"
        );
        let missing = dir.join("missing.pem");
        let error = https_client(&missing).unwrap_err().to_string();
        assert!(error.contains("cannot read it"), "{error}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
