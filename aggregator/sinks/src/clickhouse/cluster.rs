//! Cluster DDL: the statements of `clickhouse/migrations/` (and the runner's own bookkeeping table) as
//! they run with `clickhouse_cluster` set. Each statement of a base file goes through [`on_cluster`]:
//! every `CREATE`, `DROP` and `ALTER` gets `ON CLUSTER <cluster>` (ClickHouse's distributed DDL queue
//! in ZooKeeper runs it on every host of the cluster), each MergeTree-family engine becomes its
//! `Replicated*` form with the table's own ZooKeeper path, and every table a statement names is
//! qualified with the database (a distributed DDL runs on the other hosts without the session's
//! database: an unqualified `TO click_minute` or `FROM click_events` would mean `default.…` there —
//! seen on 18.16). `INSERT … SELECT` backfills are left alone: they run on the replica the runner talks
//! to and their parts replicate like any insert.
//!
//! Why a transformation and not a second copy of every file: the single-node files stay the one
//! description of the schema (columns, sort keys, views), so the cluster schema cannot drift from it;
//! the rewrite is small, purely textual on the runner's normalised statements, and tested statement by
//! statement against hand-written expectations. It refuses what it does not know (another statement
//! kind, a non-MergeTree engine, a `JOIN` or a subquery in a view) instead of guessing, so a new
//! migration that needs more fails its unit test rather than a cluster.
//!
//! ZooKeeper paths are `/clickhouse/tables/{shard}/<database>/<table>` with the literal database and
//! table names (18.16 has no `{database}`/`{table}` macros), replica name `{replica}`: the servers
//! define the `shard` and `replica` macros (docs/analytics.md, "On a cluster").

use super::migrations::{quote_ident, quote_literal};

/// What a statement creates or changes, by its first words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Table,
    MaterializedView,
    View,
    Drop,
    Alter,
}

const HEADS: &[(&str, Kind)] = &[
    ("CREATE TABLE IF NOT EXISTS ", Kind::Table),
    (
        "CREATE MATERIALIZED VIEW IF NOT EXISTS ",
        Kind::MaterializedView,
    ),
    ("CREATE VIEW IF NOT EXISTS ", Kind::View),
    ("DROP TABLE IF EXISTS ", Kind::Drop),
    ("ALTER TABLE ", Kind::Alter),
];

/// `CREATE DATABASE` on every host of `cluster`.
pub fn create_database(database: &str, cluster: Option<&str>) -> String {
    let mut sql = format!("CREATE DATABASE IF NOT EXISTS {}", quote_ident(database));
    if let Some(cluster) = cluster {
        sql.push_str(&format!(" ON CLUSTER {}", quote_ident(cluster)));
    }
    sql
}

/// One migration statement (as [`super::statements`] yields it) in its cluster form; see the module
/// doc. `Err` names what the transformation cannot handle.
pub fn on_cluster(statement: &str, cluster: &str, database: &str) -> Result<String, String> {
    if statement.starts_with("INSERT INTO ") {
        return Ok(statement.to_owned());
    }
    let first_line = statement.lines().next().unwrap_or_default();
    let Some(&(head, kind)) = HEADS.iter().find(|(h, _)| statement.starts_with(h)) else {
        return Err(format!(
            "no cluster form for the statement starting {first_line:?}"
        ));
    };
    let rest = &statement[head.len()..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '(')
        .unwrap_or(rest.len());
    let (name, after) = rest.split_at(end);
    if name.is_empty() || name.contains(['.', '`']) {
        return Err(format!(
            "expected a plain table name in {first_line:?}, got {name:?}"
        ));
    }
    let db = quote_ident(database);
    let on = format!(" ON CLUSTER {}", quote_ident(cluster));
    let sql = format!("{head}{db}.{name}{on}{after}");
    match kind {
        Kind::Table => replicated_engine(&sql, database, name),
        Kind::MaterializedView => qualify_tables(&sql, &db, true),
        Kind::View => qualify_tables(&sql, &db, false),
        Kind::Drop | Kind::Alter => Ok(sql),
    }
}

/// `ENGINE = XMergeTree(args)` → `ENGINE = ReplicatedXMergeTree('<path>', '{replica}'[, args])`.
fn replicated_engine(sql: &str, database: &str, table: &str) -> Result<String, String> {
    const ENGINE: &str = "ENGINE = ";
    let at = sql
        .find(ENGINE)
        .ok_or_else(|| format!("table {table}: no `{ENGINE}` clause"))?
        + ENGINE.len();
    let open = at
        + sql[at..]
            .find('(')
            .ok_or_else(|| format!("table {table}: engine without parentheses"))?;
    let engine = &sql[at..open];
    if !engine.ends_with("MergeTree") || engine.starts_with("Replicated") {
        return Err(format!(
            "table {table}: engine {engine} has no Replicated form here (a MergeTree-family engine is expected)"
        ));
    }
    let mut depth = 0;
    let close = open
        + sql[open..]
            .find(|c| {
                depth += match c {
                    '(' => 1,
                    ')' => -1,
                    _ => 0,
                };
                depth == 0
            })
            .ok_or_else(|| format!("table {table}: unbalanced engine parentheses"))?;
    let args = sql[open + 1..close].trim();
    let path = quote_literal(&format!("/clickhouse/tables/{{shard}}/{database}/{table}"));
    let mut replicated = format!("Replicated{engine}({path}, '{{replica}}'");
    if !args.is_empty() {
        replicated.push_str(", ");
        replicated.push_str(args);
    }
    replicated.push(')');
    Ok(format!("{}{replicated}{}", &sql[..at], &sql[close + 1..]))
}

/// Qualifies with `db` the table after each `FROM` and, in a materialized view, its `TO` target.
/// Whitespace is kept as it was.
fn qualify_tables(sql: &str, db: &str, materialized: bool) -> Result<String, String> {
    let mut out = String::with_capacity(sql.len() + 64);
    let mut previous = "";
    let mut target_done = !materialized;
    for token in sql.split_inclusive(char::is_whitespace) {
        let word = token.trim_end();
        if word == "JOIN" {
            return Err("a view with a JOIN has no cluster form here".into());
        }
        let qualify = previous == "FROM" || (!target_done && previous == "TO");
        if qualify && !word.is_empty() {
            if previous == "TO" {
                target_done = true;
            }
            if !word.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "expected a plain table name after {previous}, got {word:?}"
                ));
            }
            out.push_str(db);
            out.push('.');
        }
        out.push_str(token);
        if !word.is_empty() {
            previous = word;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::migrations::{statements, MIGRATIONS};
    use super::*;

    fn cluster(statement: &str) -> String {
        on_cluster(statement, "sluice", "analytics").unwrap()
    }

    #[test]
    fn tables_get_on_cluster_and_a_replicated_engine_with_their_own_path() {
        assert_eq!(
            cluster("CREATE TABLE IF NOT EXISTS t (\n    a UInt32\n) ENGINE = ReplacingMergeTree()\nPARTITION BY a\nORDER BY a"),
            "CREATE TABLE IF NOT EXISTS `analytics`.t ON CLUSTER `sluice` (\n    a UInt32\n) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/analytics/t', '{replica}')\nPARTITION BY a\nORDER BY a"
        );
        // Engine arguments follow the path and the replica; nested parentheses are kept whole.
        assert_eq!(
            cluster("CREATE TABLE IF NOT EXISTS v (a UInt32, s String) ENGINE = ReplacingMergeTree(a) ORDER BY (s, a)"),
            "CREATE TABLE IF NOT EXISTS `analytics`.v ON CLUSTER `sluice` (a UInt32, s String) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/analytics/v', '{replica}', a) ORDER BY (s, a)"
        );
        assert_eq!(
            cluster("CREATE TABLE IF NOT EXISTS sluice_schema_migrations (version UInt32, name String, applied_at DateTime) ENGINE = MergeTree() ORDER BY version"),
            "CREATE TABLE IF NOT EXISTS `analytics`.sluice_schema_migrations ON CLUSTER `sluice` (version UInt32, name String, applied_at DateTime) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/analytics/sluice_schema_migrations', '{replica}') ORDER BY version"
        );
        assert_eq!(
            cluster("CREATE TABLE IF NOT EXISTS g (k String, c AggregateFunction(uniqExact, String)) ENGINE = AggregatingMergeTree() ORDER BY k"),
            "CREATE TABLE IF NOT EXISTS `analytics`.g ON CLUSTER `sluice` (k String, c AggregateFunction(uniqExact, String)) ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/analytics/g', '{replica}') ORDER BY k"
        );
    }

    #[test]
    fn views_name_their_tables_with_the_database() {
        assert_eq!(
            cluster("CREATE MATERIALIZED VIEW IF NOT EXISTS m_mv TO m AS\nSELECT a, uniqExactState(s) AS c\nFROM t\nGROUP BY a"),
            "CREATE MATERIALIZED VIEW IF NOT EXISTS `analytics`.m_mv ON CLUSTER `sluice` TO `analytics`.m AS\nSELECT a, uniqExactState(s) AS c\nFROM `analytics`.t\nGROUP BY a"
        );
        assert_eq!(
            cluster("CREATE VIEW IF NOT EXISTS h AS\nSELECT a, toStartOfHour(m, 'UTC') AS hour\nFROM m"),
            "CREATE VIEW IF NOT EXISTS `analytics`.h ON CLUSTER `sluice` AS\nSELECT a, toStartOfHour(m, 'UTC') AS hour\nFROM `analytics`.m"
        );
    }

    #[test]
    fn drops_alters_and_the_database_run_on_the_cluster_and_inserts_stay() {
        assert_eq!(
            cluster("DROP TABLE IF EXISTS click_hour_mv"),
            "DROP TABLE IF EXISTS `analytics`.click_hour_mv ON CLUSTER `sluice`"
        );
        assert_eq!(
            cluster("ALTER TABLE t\n    MODIFY COLUMN s LowCardinality(String)"),
            "ALTER TABLE `analytics`.t ON CLUSTER `sluice`\n    MODIFY COLUMN s LowCardinality(String)"
        );
        let insert = "INSERT INTO m\nSELECT a, uniqExactState(s)\nFROM t\nGROUP BY a";
        assert_eq!(cluster(insert), insert);
        assert_eq!(
            create_database("analytics", Some("sluice")),
            "CREATE DATABASE IF NOT EXISTS `analytics` ON CLUSTER `sluice`"
        );
        assert_eq!(
            create_database("analytics", None),
            "CREATE DATABASE IF NOT EXISTS `analytics`"
        );
    }

    #[test]
    fn refuses_what_it_cannot_transform() {
        let refused = [
            "CREATE TABLE IF NOT EXISTS l (a UInt8) ENGINE = Log",
            "CREATE TABLE IF NOT EXISTS l (a UInt8) ENGINE = Memory()",
            "CREATE TABLE IF NOT EXISTS r (a UInt8) ENGINE = ReplicatedMergeTree('/p', 'r') ORDER BY a",
            "CREATE TABLE IF NOT EXISTS other.t (a UInt8) ENGINE = MergeTree() ORDER BY a",
            "CREATE VIEW IF NOT EXISTS j AS\nSELECT a FROM t\nJOIN u USING a",
            "CREATE VIEW IF NOT EXISTS s AS\nSELECT a FROM (SELECT 1 AS a)",
            "OPTIMIZE TABLE t FINAL",
            "RENAME TABLE a TO b",
        ];
        for statement in refused {
            assert!(
                on_cluster(statement, "sluice", "analytics").is_err(),
                "{statement}"
            );
        }
    }

    /// Every statement of every migration file has a cluster form, and each CREATE TABLE of the base
    /// files gets a Replicated engine (counted by hand: 3 raw tables, 4 rollup tables).
    #[test]
    fn every_migration_statement_has_a_cluster_form() {
        let mut replicated = 0;
        for migration in MIGRATIONS {
            for sql in [Some(migration.base), migration.modern]
                .into_iter()
                .flatten()
            {
                for statement in statements(sql) {
                    let clustered = on_cluster(&statement, "sluice", "sluice")
                        .unwrap_or_else(|e| panic!("{}: {e}", migration.name));
                    if statement.starts_with("INSERT") {
                        assert_eq!(clustered, statement);
                    } else {
                        assert!(clustered.contains(" ON CLUSTER `sluice`"), "{clustered}");
                    }
                    replicated += clustered.matches("ENGINE = Replicated").count();
                }
            }
        }
        assert_eq!(replicated, 7);
    }
}
