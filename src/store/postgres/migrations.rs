//! The SQL migrations in `migrations/`, applied in order and recorded in the database.

use std::time::Duration;

use deadpool_postgres::Object;
use tokio_postgres::error::SqlState;

use super::PostgresConfig;
use crate::store::StoreError;

/// One migration: its version, its file name and its SQL.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// The number the file name starts with; migrations are applied in increasing order.
    pub version: i32,
    /// The file name in `migrations/`.
    pub name: &'static str,
    /// The SQL the file contains.
    pub sql: &'static str,
}

/// Every migration, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_tool_rate_limits.sql",
        sql: include_str!("../../../migrations/0001_tool_rate_limits.sql"),
    },
    Migration {
        version: 2,
        name: "0002_consume_tool_rate_tokens.sql",
        sql: include_str!("../../../migrations/0002_consume_tool_rate_tokens.sql"),
    },
    Migration {
        version: 3,
        name: "0003_consume_tool_rate_tokens_batch.sql",
        sql: include_str!("../../../migrations/0003_consume_tool_rate_tokens_batch.sql"),
    },
    Migration {
        version: 4,
        name: "0004_tool_rate_token_leases.sql",
        sql: include_str!("../../../migrations/0004_tool_rate_token_leases.sql"),
    },
    Migration {
        version: 5,
        name: "0005_consume_fast_path.sql",
        sql: include_str!("../../../migrations/0005_consume_fast_path.sql"),
    },
    Migration {
        version: 6,
        name: "0006_zone_names.sql",
        sql: include_str!("../../../migrations/0006_zone_names.sql"),
    },
    Migration {
        version: 7,
        name: "0007_count_overflow.sql",
        sql: include_str!("../../../migrations/0007_count_overflow.sql"),
    },
    Migration {
        version: 8,
        name: "0008_ended_windows.sql",
        sql: include_str!("../../../migrations/0008_ended_windows.sql"),
    },
    Migration {
        version: 9,
        name: "0009_lease_takes.sql",
        sql: include_str!("../../../migrations/0009_lease_takes.sql"),
    },
    Migration {
        version: 10,
        name: "0010_usage_write_cost.sql",
        sql: include_str!("../../../migrations/0010_usage_write_cost.sql"),
    },
    Migration {
        version: 11,
        name: "0011_argument_checks.sql",
        sql: include_str!("../../../migrations/0011_argument_checks.sql"),
    },
    Migration {
        version: 12,
        name: "0012_cleanup_batches.sql",
        sql: include_str!("../../../migrations/0012_cleanup_batches.sql"),
    },
];

/// The key of the session-level advisory lock that serialises concurrent migrations
/// (the bytes of `"hwratelm"`).
const MIGRATION_LOCK_KEY: i64 = 0x6877_7261_7465_6c6d;

const CREATE_BOOKKEEPING: &str = "
    CREATE SCHEMA IF NOT EXISTS highway;
    CREATE TABLE IF NOT EXISTS highway.ratelimit_migrations (
        version INT PRIMARY KEY,
        name TEXT NOT NULL,
        applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );";

/// Applies the migrations that `highway.ratelimit_migrations` does not list yet, each in its own
/// transaction, and returns the versions applied.
///
/// Holds an advisory lock while it works, so workers that start together apply each migration
/// once: the others wait, then find nothing left to do.
///
/// Each migration waits at most `lock_timeout` for a lock (zero: no limit). One that cannot get
/// its locks in time is rolled back and tried again after a pause of twice that, so that the calls
/// queued behind its lock request can run meanwhile.
pub(super) async fn apply(client: Object, lock_timeout: Duration) -> Result<Vec<i32>, StoreError> {
    let mut connection = MigrationConnection(Some(client));
    let client = connection.client();

    // Waiting for another worker's migrations, or a migration of a large table, may take longer
    // than the store's statement timeout; RESET restores the connection's own setting.
    client
        .batch_execute("SET statement_timeout = 0")
        .await
        .map_err(super::database_error)?;
    let result = apply_with_lock(client, lock_timeout).await;
    let reset = client
        .batch_execute("RESET statement_timeout")
        .await
        .map_err(super::database_error);

    let applied = result?;
    reset?;
    connection.return_to_pool();
    Ok(applied)
}

/// A pooled connection that migrations use. It goes back to the pool only through
/// [`return_to_pool`](Self::return_to_pool), after a run that succeeded, and is closed otherwise.
///
/// A caller may drop `migrate` while it waits, for example under `tokio::time::timeout`, and a
/// failed run may have failed to release the advisory lock. The connection may then still hold
/// the lock, which would make every later migration wait forever, and lack its statement timeout.
/// Closing it ends the session, so the server releases the lock.
struct MigrationConnection(Option<Object>);

impl MigrationConnection {
    fn client(&mut self) -> &mut Object {
        self.0
            .as_mut()
            .expect("the connection is present until it is returned or dropped")
    }

    fn return_to_pool(mut self) {
        self.0.take();
    }
}

impl Drop for MigrationConnection {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            drop(Object::take(client));
        }
    }
}

async fn apply_with_lock(
    client: &mut Object,
    lock_timeout: Duration,
) -> Result<Vec<i32>, StoreError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .map_err(super::database_error)?;

    let result = apply_locked(client, lock_timeout).await;

    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .map_err(super::database_error);
    let applied = result?;
    unlocked?;
    Ok(applied)
}

async fn apply_locked(client: &mut Object, lock_timeout: Duration) -> Result<Vec<i32>, StoreError> {
    client
        .batch_execute(CREATE_BOOKKEEPING)
        .await
        .map_err(super::database_error)?;

    let rows = client
        .query("SELECT version FROM highway.ratelimit_migrations", &[])
        .await
        .map_err(super::database_error)?;
    let done = rows
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<Vec<i32>, _>>()
        .map_err(super::database_error)?;

    let mut applied = Vec::new();
    for migration in MIGRATIONS.iter().filter(|m| !done.contains(&m.version)) {
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applying migration"
        );

        let mut attempt = 1;
        while let Err(error) = apply_one(client, migration, lock_timeout).await {
            let lock_timed_out = error.code() == Some(&SqlState::LOCK_NOT_AVAILABLE);
            if !lock_timed_out {
                return Err(migration_error(migration, error));
            }
            if attempt >= PostgresConfig::MIGRATION_LOCK_ATTEMPTS {
                return Err(StoreError::Unavailable(
                    format!(
                        "migration {} failed: it waited {lock_timeout:?} for its locks in each of \
                         {attempt} attempts; an open transaction or an autovacuum holds a lock \
                         on its tables (see pg_stat_activity): end the transaction or wait for \
                         the autovacuum, migrate at a quieter time, or raise the lock timeout \
                         above deadlock_timeout (PostgresConfig::migration_lock_timeout, or the \
                         --lock-timeout-ms option of `highway-ratelimit migrate`)",
                        migration.name
                    )
                    .into(),
                ));
            }
            tracing::warn!(
                version = migration.version,
                name = migration.name,
                attempt,
                ?lock_timeout,
                "a migration timed out waiting for a lock; trying again after a pause"
            );
            tokio::time::sleep(lock_timeout * 2).await;
            attempt += 1;
        }
        applied.push(migration.version);
    }
    Ok(applied)
}

/// Applies one migration and records it, in one transaction that waits at most `lock_timeout`
/// for each lock.
async fn apply_one(
    client: &mut Object,
    migration: &Migration,
    lock_timeout: Duration,
) -> Result<(), tokio_postgres::Error> {
    let transaction = client.transaction().await?;
    // SET LOCAL ends with the transaction, so the pooled connection keeps its own setting.
    transaction
        .batch_execute(&format!(
            "SET LOCAL lock_timeout = {}",
            lock_timeout.as_millis()
        ))
        .await?;
    transaction.batch_execute(migration.sql).await?;
    transaction
        .execute(
            "INSERT INTO highway.ratelimit_migrations (version, name) VALUES ($1, $2)",
            &[&migration.version, &migration.name],
        )
        .await?;
    transaction.commit().await
}

fn migration_error(migration: &Migration, error: tokio_postgres::Error) -> StoreError {
    let detail = match error.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => error.to_string(),
    };
    StoreError::Unavailable(
        format!(
            "migration {} failed: {detail}; fix the database or the file and run the migrations again",
            migration.name
        )
        .into(),
    )
}
