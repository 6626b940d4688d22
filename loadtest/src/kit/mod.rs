//! The test kit: what the integration tests, the load driver and the demo all do to the local stack.
//!
//! - [`IngestSetup`] / [`IngestProcess`] ([`ingest`]): `sluice-ingest` as a child — one-shot
//!   subcommands (`provision` creates topics, the one way they are made), the long-running service with
//!   its metrics on a free port, readiness (`wait_assigned`), SIGTERM and SIGKILL.
//! - [`metrics`]: GET on ingest's HTTP port and the value of a series in its exposition.
//! - [`Databases`] ([`databases`]): a throwaway PostgreSQL and ClickHouse database, created and dropped.
//! - [`kafka`]: topic deletion, high watermarks, stored offsets, lag, waiting to catch up.
//!
//! Nothing here knows about tests or reports: the callers decide names, settings and what to check.

pub mod databases;
pub mod ingest;
pub mod kafka;
pub mod metrics;

use std::fmt;

pub use databases::Databases;
pub use ingest::{IngestProcess, IngestSetup};
pub use metrics::{metric_sum, metric_value};

/// Where the stack is: flags, or the environment `infra/stack.sh env` prints.
#[derive(Clone, clap::Args)]
pub struct StackArgs {
    #[arg(long, env = "SLUICE_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// An existing PostgreSQL database (throwaway databases are created from it).
    #[arg(
        long,
        env = "SLUICE_POSTGRES_URL",
        default_value = "postgres://sluice:sluice@127.0.0.1:5432/sluice"
    )]
    pub postgres_url: String,
    #[arg(
        long,
        env = "SLUICE_CLICKHOUSE_URL",
        default_value = "http://127.0.0.1:8123"
    )]
    pub clickhouse_url: String,
}

impl StackArgs {
    /// The stack's addresses from the environment (`SLUICE_KAFKA_BROKERS`, `SLUICE_POSTGRES_URL`,
    /// `SLUICE_CLICKHOUSE_URL`), or the local stack's defaults: the same rules as the flags, for tests.
    pub fn from_env() -> StackArgs {
        #[derive(clap::Parser)]
        struct Env {
            #[command(flatten)]
            stack: StackArgs,
        }
        <Env as clap::Parser>::parse_from(["stack"]).stack
    }
}

/// Without the PostgreSQL URL's password.
impl fmt::Debug for StackArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let postgres = url::Url::parse(&self.postgres_url).map_or_else(
            |_| "<unparsable>".to_owned(),
            |mut u| {
                if u.password().is_some() {
                    let _ = u.set_password(Some("***"));
                }
                u.to_string()
            },
        );
        f.debug_struct("StackArgs")
            .field("brokers", &self.brokers)
            .field("postgres_url", &postgres)
            .field("clickhouse_url", &self.clickhouse_url)
            .finish()
    }
}
