//! The migration runner for the DDL under `clickhouse/migrations/`: base files for every supported
//! server, `.modern.sql` overlays for servers at least [`MODERN_SINCE`], each recorded in
//! `sluice_schema_migrations` when applied.

use clickhouse::Row;
use serde::Deserialize;

use super::cluster::{create_database, on_cluster};
use super::{classify, ClickHouseSink, Replica, SINK};
use crate::error::{Result, SinkError};

/// One schema migration: a base SQL file for every supported server and an optional overlay for modern
/// ones. Statements are separated by `;` at line ends; comment lines start with `--`.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub base: &'static str,
    pub modern: Option<&'static str>,
}

/// The migrations, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "raw_events",
        base: include_str!("../../../../clickhouse/migrations/0001_raw_events.sql"),
        modern: Some(include_str!(
            "../../../../clickhouse/migrations/0001_raw_events.modern.sql"
        )),
    },
    Migration {
        version: 2,
        name: "rollups",
        base: include_str!("../../../../clickhouse/migrations/0002_rollups.sql"),
        modern: None,
    },
    Migration {
        version: 3,
        name: "click_hour_view",
        base: include_str!("../../../../clickhouse/migrations/0003_click_hour_view.sql"),
        modern: None,
    },
    Migration {
        version: 4,
        name: "click_day_view",
        base: include_str!("../../../../clickhouse/migrations/0004_click_day_view.sql"),
        modern: None,
    },
    Migration {
        version: 5,
        name: "rollups_as_views",
        base: include_str!("../../../../clickhouse/migrations/0005_rollups_as_views.sql"),
        modern: None,
    },
];

/// The first server version (major, minor) that gets the modern overlays and TTL retention. Every
/// feature they use (LowCardinality, codecs, DateTime64, `MODIFY TTL`) is in 21.8 LTS; verified on 26.x.
pub const MODERN_SINCE: (u32, u32) = (21, 8);

/// A server's `version()`, e.g. `18.16.1` or `26.9.2.1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerVersion {
    pub major: u32,
    pub minor: u32,
    pub text: String,
}

impl ServerVersion {
    /// Parses `major.minor[.…]`; `None` when it does not start that way.
    pub fn parse(text: &str) -> Option<ServerVersion> {
        let mut parts = text.trim().split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(ServerVersion {
            major,
            minor,
            text: text.trim().to_owned(),
        })
    }

    /// Whether the server gets the modern overlays and TTL.
    pub fn is_modern(&self) -> bool {
        (self.major, self.minor) >= MODERN_SINCE
    }
}

/// A migration step the runner applied: `name` is the migration's name, or `name.modern` for an overlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedMigration {
    pub version: u32,
    pub name: String,
}

/// One step still to apply: a base migration, or a modern overlay (`name.modern`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Step {
    version: u32,
    name: String,
    sql: &'static str,
}

/// The steps of [`MIGRATIONS`] not in `recorded`, in order: each base migration and, on a modern
/// server, each overlay.
fn pending(recorded: &[(u32, String)], modern: bool) -> Vec<Step> {
    // A base migration counts as done by its version (whatever name it was recorded under), an
    // overlay by its version and name.
    let base_done = |version: u32| {
        recorded
            .iter()
            .any(|(v, n)| *v == version && !n.ends_with(".modern"))
    };
    let done = |version: u32, name: &str| recorded.iter().any(|(v, n)| *v == version && n == name);
    let mut steps = Vec::new();
    for migration in MIGRATIONS {
        if !base_done(migration.version) {
            steps.push(Step {
                version: migration.version,
                name: migration.name.to_owned(),
                sql: migration.base,
            });
        }
        if let Some(overlay) = migration.modern.filter(|_| modern) {
            let name = format!("{}.modern", migration.name);
            if !done(migration.version, &name) {
                steps.push(Step {
                    version: migration.version,
                    name,
                    sql: overlay,
                });
            }
        }
    }
    steps
}

impl ClickHouseSink {
    /// Creates the database if needed and applies, in version order, each base migration not yet
    /// recorded in `sluice_schema_migrations` and, on a modern server, each overlay not yet recorded.
    /// With a cluster, every DDL statement runs `ON CLUSTER` in its replicated form ([`on_cluster`]).
    /// Idempotent; returns the steps it applied.
    pub async fn migrate(&self) -> Result<Vec<AppliedMigration>> {
        self.on_replicas(|replica| self.migrate_on(replica)).await
    }

    async fn migrate_on(&self, replica: &Replica) -> Result<Vec<AppliedMigration>> {
        let modern = replica_version(replica).await?.is_modern();
        // Up to date: no DDL at all. On a cluster every `ON CLUSTER` statement, even `CREATE … IF NOT
        // EXISTS`, waits until each replica has run it, so running them on every start would keep
        // ingest from starting while one replica is down.
        let steps = pending(&self.recorded(replica).await?, modern).len();
        if steps == 0 {
            return Ok(Vec::new());
        }
        if self.cluster().is_some() {
            tracing::info!(
                steps,
                "clickhouse: applying migrations ON CLUSTER (each statement waits until every replica ran it)"
            );
        }
        replica
            .admin
            .query_raw(&create_database(&self.database, self.cluster()))
            .execute()
            .await
            .map_err(classify)?;
        self.run(replica, BOOKKEEPING).await?;
        // Read again: another instance may have applied some steps meanwhile.
        let mut ran = Vec::new();
        for step in pending(&self.recorded(replica).await?, modern) {
            self.apply(replica, step.version, &step.name, step.sql)
                .await?;
            ran.push(AppliedMigration {
                version: step.version,
                name: step.name,
            });
        }
        Ok(ran)
    }

    /// The steps recorded in `sluice_schema_migrations` on `replica` (none while the database or the
    /// table does not exist there). Reads only: no DDL.
    async fn recorded(&self, replica: &Replica) -> Result<Vec<(u32, String)>> {
        let exists: u64 = replica
            .admin
            .query(
                "SELECT count() FROM system.tables \
                 WHERE database = ? AND name = 'sluice_schema_migrations'",
            )
            .bind(&self.database)
            .fetch_one()
            .await
            .map_err(classify)?;
        if exists == 0 {
            return Ok(Vec::new());
        }
        #[derive(Row, Deserialize)]
        struct Recorded {
            version: u32,
            name: String,
        }
        Ok(replica
            .client
            .query_raw("SELECT version, name FROM sluice_schema_migrations")
            .fetch_all::<Recorded>()
            .await
            .map_err(classify)?
            .into_iter()
            .map(|r| (r.version, r.name))
            .collect())
    }

    /// Runs one statement of a migration file: as it is on a single server, in its cluster form
    /// ([`on_cluster`]) with a cluster.
    async fn run(&self, replica: &Replica, statement: &str) -> Result<()> {
        let clustered;
        let sql = match self.cluster() {
            Some(cluster) => {
                clustered = on_cluster(statement, cluster, &self.database)
                    .map_err(|e| SinkError::permanent(SINK, format!("cluster DDL: {e}")))?;
                clustered.as_str()
            }
            None => statement,
        };
        replica
            .client
            .query_raw(sql)
            .execute()
            .await
            .map_err(classify)
    }

    /// Runs one migration file's statements, then records it.
    async fn apply(&self, replica: &Replica, version: u32, name: &str, sql: &str) -> Result<()> {
        for statement in statements(sql) {
            self.run(replica, &statement).await?;
        }
        replica
            .client
            .query_raw(&format!(
                "INSERT INTO sluice_schema_migrations (version, name, applied_at) VALUES ({version}, {}, now())",
                quote_literal(name)
            ))
            .execute()
            .await
            .map_err(classify)
    }
}

/// The runner's bookkeeping table (replicated like the others on a cluster).
const BOOKKEEPING: &str = "CREATE TABLE IF NOT EXISTS sluice_schema_migrations \
     (version UInt32, name String, applied_at DateTime) ENGINE = MergeTree() ORDER BY version";

/// A replica's version.
pub(super) async fn replica_version(replica: &Replica) -> Result<ServerVersion> {
    let text: String = replica
        .admin
        .query("SELECT version()")
        .fetch_one()
        .await
        .map_err(classify)?;
    ServerVersion::parse(&text)
        .ok_or_else(|| SinkError::permanent(SINK, format!("unrecognised server version {text:?}")))
}

pub(super) fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('\\', "\\\\").replace('`', "\\`"))
}

pub(super) fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The statements of a migration file: split on `;` at line ends, comment lines dropped.
pub fn statements(sql: &str) -> Vec<String> {
    sql.split(";\n")
        .map(strip_comments)
        .filter(|s| !s.is_empty())
        .collect()
}

fn strip_comments(statement: &str) -> String {
    statement
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .trim_end_matches(';')
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_steps_are_the_unrecorded_bases_and_on_modern_servers_overlays() {
        let names =
            |steps: Vec<Step>| -> Vec<String> { steps.into_iter().map(|s| s.name).collect() };
        assert_eq!(
            names(pending(&[], false)),
            [
                "raw_events",
                "rollups",
                "click_hour_view",
                "click_day_view",
                "rollups_as_views"
            ]
        );
        assert_eq!(
            names(pending(&[], true)),
            [
                "raw_events",
                "raw_events.modern",
                "rollups",
                "click_hour_view",
                "click_day_view",
                "rollups_as_views"
            ]
        );
        let all_base = [
            (1, "raw_events".to_owned()),
            (2, "rollups".to_owned()),
            (3, "click_hour_view".to_owned()),
            (4, "click_day_view".to_owned()),
            (5, "rollups_as_views".to_owned()),
        ];
        assert!(pending(&all_base, false).is_empty());
        assert_eq!(names(pending(&all_base, true)), ["raw_events.modern"]);
        // A base recorded under an older name still counts; an overlay alone does not make its base done.
        let renamed = [
            (1, "raw".to_owned()),
            (2, "rollups.modern".to_owned()),
            (3, "click_hour_view".to_owned()),
        ];
        assert_eq!(
            names(pending(&renamed, false)),
            ["rollups", "click_day_view", "rollups_as_views"]
        );
    }

    #[test]
    fn migrations_split_into_statements() {
        let statements = statements(MIGRATIONS[0].base);
        assert_eq!(statements.len(), 3);
        assert!(statements
            .iter()
            .all(|s| s.starts_with("CREATE TABLE IF NOT EXISTS")));
        let rollups = super::statements(MIGRATIONS[1].base);
        assert!(rollups
            .iter()
            .all(|s| s.starts_with("CREATE ") || s.starts_with("INSERT INTO ")));
        assert!(rollups.iter().all(|s| !s.contains("--")));
    }

    #[test]
    fn every_migration_file_is_listed() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../clickhouse/migrations");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        let mut listed = Vec::new();
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "versions are 1, 2, 3, …");
            let stem = format!("{:04}_{}", m.version, m.name);
            let base = format!("{stem}.sql");
            assert_eq!(
                std::fs::read_to_string(format!("{dir}/{base}")).unwrap(),
                m.base
            );
            listed.push(base);
            if let Some(overlay) = m.modern {
                let file = format!("{stem}.modern.sql");
                assert_eq!(
                    std::fs::read_to_string(format!("{dir}/{file}")).unwrap(),
                    overlay
                );
                listed.push(file);
            }
        }
        listed.sort();
        assert_eq!(files, listed);
    }

    #[test]
    fn parses_server_versions() {
        let old = ServerVersion::parse("18.16.1").unwrap();
        assert_eq!((old.major, old.minor), (18, 16));
        assert!(!old.is_modern());
        assert!(ServerVersion::parse("26.9.2.1\n").unwrap().is_modern());
        assert!(ServerVersion::parse("21.8.15.7").unwrap().is_modern());
        assert!(!ServerVersion::parse("21.7.1").unwrap().is_modern());
        assert_eq!(ServerVersion::parse("nightly"), None);
    }
}
