//! The cluster stack as the tests see it: where `infra/cluster.sh` keeps its state and secrets, the
//! addresses each party uses ([`Cluster::target`]: the test's own tooling takes the plain internal
//! listeners, ingest and the event producers the authenticated TLS ones), and the operator's moves the
//! tests make through the script (SIGKILL a node, start it, fail PostgreSQL over).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context};

use crate::support::Target;

/// ClickHouse replicas: (node name, plain HTTP port for the test's reads).
pub(crate) const CLICKHOUSE_REPLICAS: [(&str, u16); 2] =
    [("clickhouse1", 18123), ("clickhouse2", 28123)];

/// The cluster stack of this checkout.
pub(crate) struct Cluster {
    state: PathBuf,
    script: PathBuf,
}

impl Cluster {
    /// `$SLUICE_CLUSTER_STATE_DIR`, else the checkout's `.state-cluster` (as `infra/cluster.sh` decides).
    pub(crate) fn from_env() -> Cluster {
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let state = std::env::var_os("SLUICE_CLUSTER_STATE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo.join(".state-cluster"));
        Cluster {
            state,
            script: repo.join("infra/cluster.sh"),
        }
    }

    fn secret_path(&self, name: &str) -> PathBuf {
        self.state.join("secrets").join(name)
    }

    /// A file `infra/cluster.sh up` wrote into the state dir (`sluice.toml`, `produce.toml`).
    pub(crate) fn state_file(&self, name: &str) -> PathBuf {
        self.state.join(name)
    }

    /// The content of a secret file (`kafka-password`, …), for the test's own clients and its checks.
    pub(crate) fn secret(&self, name: &str) -> anyhow::Result<String> {
        let path = self.secret_path(name);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {} (is the cluster stack up? `make up-cluster`)",
                path.display()
            )
        })?;
        Ok(text.trim_end().to_owned())
    }

    /// Runs `infra/cluster.sh args…`; returns its standard output.
    pub(crate) fn script(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = Command::new("bash")
            .arg(&self.script)
            .args(args)
            .env("SLUICE_CLUSTER_STATE_DIR", &self.state)
            // A killed node is gone at once; a stopped one gets 5 s before SIGKILL.
            .env("SLUICE_CLUSTER_STOP_TIMEOUT", "5")
            .output()
            .context("cannot run infra/cluster.sh")?;
        if !output.status.success() {
            bail!(
                "infra/cluster.sh {args:?} failed ({}):\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    pub(crate) fn kill(&self, node: &str) -> anyhow::Result<()> {
        self.script(&["kill", node]).map(drop)
    }

    pub(crate) fn start(&self, node: &str) -> anyhow::Result<()> {
        self.script(&["start", node]).map(drop)
    }

    /// `pg1` or `pg2`: the node PgBouncer sends writes to.
    pub(crate) fn postgres_primary(&self) -> anyhow::Result<String> {
        let out = self.script(&["postgres-primary"])?;
        let node = out.trim().to_owned();
        anyhow::ensure!(
            node == "pg1" || node == "pg2",
            "postgres-primary said {out:?}"
        );
        Ok(node)
    }

    /// A direct URL to the current primary, for the test's own reads (the CA verifies it: verify-full).
    pub(crate) fn postgres_primary_url(&self, database: &str) -> anyhow::Result<String> {
        let port = match self.postgres_primary()?.as_str() {
            "pg1" => 15432,
            _ => 25432,
        };
        let password = url_encode(&self.secret("postgres-password")?);
        Ok(format!(
            "postgres://sluice:{password}@localhost:{port}/{database}?sslmode=verify-full&sslrootcert={}",
            self.secret_path("ca.pem").display()
        ))
    }

    /// Where everyone connects. Ingest's settings (credentials as files, TLS, the ClickHouse cluster) come
    /// from the config file the stack writes (`SLUICE_CONFIG`); the test overrides only names.
    pub(crate) fn target(&self) -> anyhow::Result<Target> {
        let config = self.state.join("sluice.toml");
        anyhow::ensure!(
            config.exists(),
            "{} is missing: is the cluster stack up? (`make up-cluster`)",
            config.display()
        );
        let producer_properties: BTreeMap<String, String> = [
            ("security.protocol", "SASL_SSL".to_owned()),
            ("sasl.mechanism", "SCRAM-SHA-512".to_owned()),
            ("sasl.username", "sluice".to_owned()),
            ("sasl.password", self.secret("kafka-password")?),
            (
                "ssl.ca.location",
                self.secret_path("ca.pem").display().to_string(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        Ok(Target {
            brokers: "127.0.0.1:19094,127.0.0.1:29094,127.0.0.1:39094".into(),
            event_brokers: "localhost:19092,localhost:29092,localhost:39092".into(),
            producer_properties,
            postgres_admin_url: self.postgres_primary_url("sluice")?,
            ingest_postgres_url: format!(
                "postgres://sluice@localhost:16432/sluice?sslmode=verify-full&sslrootcert={}",
                self.secret_path("ca.pem").display()
            ),
            clickhouse_url: format!("http://127.0.0.1:{}", CLICKHOUSE_REPLICAS[0].1),
            ingest_clickhouse_url: "https://localhost:18443,https://localhost:28443".into(),
            clickhouse_cluster: Some("sluice".into()),
            ingest_env: vec![("SLUICE_CONFIG".into(), config.display().to_string())],
        })
    }
}

/// Brings every node back (`infra/cluster.sh up`: restarts what is down, rejoins a failed-over
/// PostgreSQL pair) when a test ends, passing or not.
pub(crate) struct Restore<'a>(pub(crate) &'a Cluster);

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.0.script(&["up"]) {
            eprintln!("restoring the cluster stack failed: {e:#}");
        }
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
