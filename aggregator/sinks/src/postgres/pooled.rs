//! How the sink reaches PostgreSQL: directly (or through a session-pooling PgBouncer), or through a
//! PgBouncer in transaction pooling mode (`postgres_pool_mode = "transaction"`). A transaction pooler
//! gives each transaction — and each statement outside one — whichever server connection is free, and
//! PgBouncer 1.18 keeps no protocol-level prepared statements, so in that mode:
//! - statements are unnamed (`persistent(false)`): sqlx's named statements (`sqlx_s_1`, …), cached per
//!   client connection, would be looked up on a server connection that never saw them, or collide with
//!   another client's of the same name (`prepared statement "sqlx_s_1" already exists`);
//! - every statement runs inside an explicit transaction (the sink's reads too): sqlx sends an unnamed
//!   statement as Parse/Describe/Sync, then Bind/Execute/Sync, and outside a transaction the pooler may
//!   hand the two halves to two server connections;
//! - the `extra_float_digits` start-up parameter is not sent (PgBouncer refuses parameters it does not
//!   track; the sink reads no floats as text);
//! - migrations run in one transaction on a connection of their own ([`migrate`]), serialised by a
//!   transaction-level advisory lock instead of sqlx's session lock.

use serde::{Deserialize, Serialize};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, Executor, PgPool};

/// How `postgres_url` reaches PostgreSQL (PgBouncer's `pool_mode` names).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Directly, or through a pooler that keeps one server connection per client connection: named
    /// prepared statements are cached per connection (one round trip per statement fewer).
    #[default]
    Session,
    /// Through a pooler that hands out server connections per transaction (PgBouncer
    /// `pool_mode = transaction`): no session state is relied on.
    Transaction,
}

impl Pooling {
    /// Whether statements may be named and cached per connection.
    pub(super) fn named_statements(self) -> bool {
        self == Pooling::Session
    }

    pub(super) fn connect_options(self, options: PgConnectOptions) -> PgConnectOptions {
        match self {
            Pooling::Session => options,
            Pooling::Transaction => options.extra_float_digits(None),
        }
    }
}

/// The lock sqlx's migrator takes (`pg_advisory_lock`, per session) has this key; the transaction-level
/// lock taken here has the same one, so a migration run through the pooler and one run directly (sqlx's
/// own locking) still exclude each other. sqlx-postgres `migrate.rs`: `generate_lock_id`.
fn lock_id(database: &str) -> i64 {
    const CRC_IEEE: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    0x3d32ad9e * i64::from(CRC_IEEE.checksum(database.as_bytes()))
}

/// How long a migration waits for another one's lock before giving up.
const LOCK_TIMEOUT: &str = "60s";

/// Runs `migrator` through a transaction pooler: on one pool connection, inside one transaction (so the
/// pooler keeps it on one server connection from start to end), after a transaction-level advisory lock;
/// each migration's own transaction becomes a savepoint. sqlx's migrator uses named prepared statements:
/// `DEALLOCATE ALL` before and after leaves none behind on the server connection, and the client
/// connection (whose statement cache names them) is closed afterwards. All migrations apply, or none.
pub(super) async fn migrate(migrator: &Migrator, pool: &PgPool) -> Result<(), MigrateError> {
    if let Some(m) = migrator.iter().find(|m| m.no_tx) {
        return Err(MigrateError::Source(
            format!(
                "migration {} must run outside a transaction, which postgres_pool_mode = \"transaction\" cannot do: run `sluice-ingest migrate` with a direct postgres_url",
                m.version
            )
            .into(),
        ));
    }
    let mut inner = Migrator::with_migrations(migrator.iter().cloned().collect());
    inner.set_locking(false);

    let mut conn = pool.acquire().await?;
    let result = async {
        let mut tx = conn.begin().await?;
        tx.execute("DEALLOCATE ALL").await?;
        tx.execute(sqlx::AssertSqlSafe(format!(
            "SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"
        )))
        .await?;
        let database: String = sqlx::query_scalar("SELECT current_database()")
            .persistent(false)
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(lock_id(&database))
            .persistent(false)
            .execute(&mut *tx)
            .await?;
        // `run_direct` rather than `run(&mut *tx)`: `run`'s `Acquire` bound makes this future unusable
        // with `tokio::spawn` ("implementation of `Acquire` is not general enough"; sqlx's own comment
        // on `run_direct`).
        inner.run_direct(None, &mut *tx, false).await?;
        tx.execute("DEALLOCATE ALL").await?;
        tx.commit().await?;
        Ok::<_, MigrateError>(())
    }
    .await;
    // Its statement cache names statements the server connection no longer has.
    conn.close().await?;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_id_is_sqlx_migrators() {
        // sqlx's generate_lock_id("sluice"): 0x3d32ad9e * crc32("sluice"), computed with Python's
        // zlib.crc32(b"sluice") = 140069170.
        assert_eq!(lock_id("sluice"), 0x3d32ad9e * 140_069_170);
    }

    #[test]
    fn pool_modes_parse_by_pgbouncers_names() {
        #[derive(Deserialize)]
        struct S {
            mode: Pooling,
        }
        let parse = |v: &str| serde_json::from_str::<S>(&format!("{{\"mode\":\"{v}\"}}"));
        assert_eq!(parse("session").unwrap().mode, Pooling::Session);
        assert_eq!(parse("transaction").unwrap().mode, Pooling::Transaction);
        let bad = parse("statement").err().unwrap().to_string();
        assert!(
            bad.contains("`session`") && bad.contains("`transaction`"),
            "{bad}"
        );
        assert!(Pooling::Session.named_statements());
        assert!(!Pooling::Transaction.named_statements());
    }
}
