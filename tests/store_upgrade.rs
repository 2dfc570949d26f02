//! Upgrading a database from migration 9 while stores consume: the migrations of the usage table
//! must keep every limit exact, lose no count, and leave the statements that pooled connections
//! prepared before them working.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc, Weekday};
use chrono_tz::Tz;
use highway_ratelimit::report::Capacity;
use highway_ratelimit::store::postgres::{PostgresConfig, PostgresStore};
use highway_ratelimit::store::{ConsumeRequest, ScopeKey, StoreError, TokenStore};

use common::TestDatabase;

/// The tasks that consume while the migrations run.
const TASKS: usize = 6;

/// The limit of the key that every task shares, per minute, hour and day.
const SHARED_LIMIT: u64 = 300;

/// The calls charged to each key at migration 9, before the store starts.
const EARLIER_CALLS: i64 = 20;

/// The rows of other keys in the usage table, so that rebuilding its index takes a while.
const OTHER_ROWS: i64 = 20_000;

const STATEMENT_TIMEOUT: Duration = Duration::from_millis(300);
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

fn key(scope: &str) -> ScopeKey {
    ScopeKey {
        tenant: "acme".to_owned(),
        tool: "tools.pdf".to_owned(),
        scope: scope.to_owned(),
    }
}

fn capacity(limit: u64) -> Capacity {
    Capacity {
        per_minute: Some(limit),
        per_hour: Some(limit),
        per_day: Some(limit),
        ..Capacity::UNLIMITED
    }
}

fn instant() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-02T10:15:30Z")
        .expect("the test instant is RFC 3339")
        .with_timezone(&Utc)
}

/// Creates the schema of migration 9 and charges `EARLIER_CALLS` calls to each of `keys` with that
/// migration's consume function.
async fn database_at_migration_9(database: &TestDatabase, keys: &[ScopeKey]) {
    let client = database.migrate_to(9).await;

    client
        .execute(
            "INSERT INTO highway.tool_rate_limit_usage
                 (tenant_id, tool_name, scope_key, window_type, window_start, window_end,
                  request_count)
             SELECT 'other', 'tools.other', 'run-' || i, 'day', $1::timestamptz,
                 $1::timestamptz + interval '1 day', 1
             FROM generate_series(1, $2::bigint) AS i",
            &[&instant(), &OTHER_ROWS],
        )
        .await
        .unwrap();
    for key in keys {
        client
            .query(
                "SELECT * FROM highway.consume_tool_rate_tokens($1, $2, $3, $4, \
                     ARRAY['minute', 'hour', 'day'], ARRAY[$5, $5, $5]::BIGINT[], $6)",
                &[
                    &key.tenant,
                    &key.tool,
                    &key.scope,
                    &EARLIER_CALLS,
                    &i64::try_from(SHARED_LIMIT).unwrap(),
                    &instant(),
                ],
            )
            .await
            .unwrap();
    }
}

/// Returns the counts of the minute, hour and day windows of `key`.
async fn counts(database: &TestDatabase, key: &ScopeKey) -> Vec<(String, i64)> {
    let client = database.client().await;
    client
        .query(
            "SELECT window_type, request_count FROM highway.tool_rate_limit_usage
             WHERE tenant_id = $1 AND tool_name = $2 AND scope_key = $3
             ORDER BY window_end - window_start",
            &[&key.tenant, &key.tool, &key.scope],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

fn same_counts(count: i64) -> Vec<(String, i64)> {
    ["minute", "hour", "day"]
        .iter()
        .map(|kind| ((*kind).to_owned(), count))
        .collect()
}

/// What one task saw.
#[derive(Default)]
struct Outcome {
    shared_admitted: i64,
    own_admitted: i64,
    /// The calls of the task's own key admitted after the migrations finished.
    own_admitted_after_migration: i64,
    timeouts: usize,
    /// Every error other than the store's timeout, with the call's key.
    errors: Vec<String>,
    slowest: Duration,
}

/// Makes one call for `key`, and records its outcome.
async fn consume(
    store: &PostgresStore,
    key: &ScopeKey,
    capacity: &Capacity,
    outcome: &mut Outcome,
) -> bool {
    let request = ConsumeRequest {
        key,
        cost: 1,
        capacity,
        timezone: Tz::UTC,
        week_start: Weekday::Mon,
        at: Some(instant()),
    };
    let started = Instant::now();
    let result = store.consume(request).await;
    outcome.slowest = outcome.slowest.max(started.elapsed());
    match result {
        Ok(decision) => decision.is_admitted(),
        Err(StoreError::Timeout(_)) => {
            outcome.timeouts += 1;
            false
        }
        Err(error) => {
            outcome.errors.push(format!("{}: {error:?}", key.scope));
            false
        }
    }
}

/// Runs `TASKS` tasks that consume for one shared key and a key of their own each while the store
/// migrates a database at migration 9 to the latest migration, and checks the limits and counts.
///
/// A session holds a lock on the usage table while the migration starts, so that the migration's
/// ALTER TABLE waits for it and the calls queue behind the ALTER for longer than the statement
/// timeout, as behind a long rebuild. The migration waits for the lock without a limit, so that
/// it does not back off.
async fn upgrade_under_load(batch_size: usize) {
    let database = TestDatabase::new().await;
    let shared = Arc::new(key("shared"));
    let own_keys: Vec<ScopeKey> = (0..TASKS).map(|task| key(&format!("own-{task}"))).collect();
    let mut all_keys = own_keys.clone();
    all_keys.push((*shared).clone());
    database_at_migration_9(&database, &all_keys).await;

    let store = PostgresStore::new(
        PostgresConfig::new(database.url())
            .pool_size(4)
            .statement_timeout(STATEMENT_TIMEOUT)
            .call_timeout(CALL_TIMEOUT)
            .max_batch_size(batch_size)
            .migration_lock_timeout(Duration::ZERO),
    )
    .unwrap();
    let migrated = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    // How far the tasks got: the shared key's admitted calls, and the tasks whose own key has
    // admitted a call since the migrations finished.
    let shared_total = Arc::new(AtomicI64::new(0));
    let tasks_past_migration = Arc::new(AtomicUsize::new(0));

    let mut tasks = Vec::new();
    for own in &own_keys {
        let (store, shared, own) = (store.clone(), shared.clone(), own.clone());
        let (migrated, stop) = (migrated.clone(), stop.clone());
        let (shared_total, tasks_past_migration) =
            (shared_total.clone(), tasks_past_migration.clone());
        tasks.push(tokio::spawn(async move {
            let shared_capacity = capacity(SHARED_LIMIT);
            // Never reached, so that every call of the key goes through the fast statement.
            let own_capacity = capacity(1_000_000);
            let mut outcome = Outcome::default();
            while !stop.load(Ordering::SeqCst) {
                let after_migration = migrated.load(Ordering::SeqCst);
                if consume(&store, &shared, &shared_capacity, &mut outcome).await {
                    outcome.shared_admitted += 1;
                    shared_total.fetch_add(1, Ordering::SeqCst);
                }
                if consume(&store, &own, &own_capacity, &mut outcome).await {
                    outcome.own_admitted += 1;
                    if after_migration {
                        outcome.own_admitted_after_migration += 1;
                        if outcome.own_admitted_after_migration == 1 {
                            tasks_past_migration.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            }
            outcome
        }));
    }

    // Let every pooled connection prepare the store's statements before the migrations.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let blocker = database.client().await;
    blocker
        .batch_execute(
            "BEGIN; LOCK TABLE highway.tool_rate_limit_usage IN ACCESS SHARE MODE;
             SELECT count(*) FROM highway.tool_rate_limit_usage;",
        )
        .await
        .unwrap();
    let migration = tokio::spawn({
        let store = store.clone();
        async move { store.migrate().await }
    });
    database.wait_for_lock_waiters(1).await;
    tokio::time::sleep(STATEMENT_TIMEOUT * 3).await;
    blocker.batch_execute("COMMIT").await.unwrap();
    let applied = migration.await.unwrap();
    migrated.store(true, Ordering::SeqCst);
    // The calls go on until the shared key has used its limit and every task's own key has
    // admitted a call after the migrations, however slowly a loaded machine runs them.
    let shared_left = i64::try_from(SHARED_LIMIT).unwrap() - EARLIER_CALLS;
    let deadline = Instant::now() + Duration::from_secs(60);
    while (shared_total.load(Ordering::SeqCst) < shared_left
        || tasks_past_migration.load(Ordering::SeqCst) < TASKS)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A little longer, so that calls beyond the shared limit are tried and rejected.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);

    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("task completes"));
    }

    assert_eq!(applied.unwrap(), vec![10, 11, 12]);
    let errors: Vec<&String> = outcomes.iter().flat_map(|o| &o.errors).collect();
    assert!(
        errors.is_empty(),
        "{} calls failed, first {:?}",
        errors.len(),
        errors.first()
    );
    let slowest = outcomes.iter().map(|o| o.slowest).max().unwrap();
    assert!(
        slowest < CALL_TIMEOUT + Duration::from_millis(500),
        "a call took {slowest:?}"
    );
    let timeouts: usize = outcomes.iter().map(|o| o.timeouts).sum();
    assert!(timeouts > 0, "no call waited for the migration's lock");

    let shared_admitted: i64 = outcomes.iter().map(|o| o.shared_admitted).sum();
    let shared_limit = i64::try_from(SHARED_LIMIT).unwrap();
    assert_eq!(shared_admitted, shared_limit - EARLIER_CALLS);
    assert_eq!(counts(&database, &shared).await, same_counts(shared_limit));
    for (own, outcome) in own_keys.iter().zip(&outcomes) {
        assert!(
            outcome.own_admitted_after_migration > 0,
            "{} had no call admitted after the migrations",
            own.scope
        );
        assert_eq!(
            counts(&database, own).await,
            same_counts(EARLIER_CALLS + outcome.own_admitted),
            "{}",
            own.scope
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbatched_calls_survive_upgrade() {
    upgrade_under_load(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_calls_survive_upgrade() {
    upgrade_under_load(64).await;
}

/// Changes the collation of `window_type`, which the store's single-call statement returns, after
/// the store has prepared that statement on its only connection: the store must prepare it again.
#[tokio::test]
async fn changed_result_column_is_prepared_again() {
    let database = TestDatabase::new().await;
    let store = database
        .store_with(|config| config.pool_size(1).max_batch_size(1))
        .await;
    let key = key("run-1");
    let capacity = capacity(10);
    let mut outcome = Outcome::default();
    assert!(consume(&store, &key, &capacity, &mut outcome).await);

    database
        .client()
        .await
        .batch_execute(
            "ALTER TABLE highway.tool_rate_limit_usage ALTER COLUMN window_type TYPE TEXT COLLATE \"C\"",
        )
        .await
        .unwrap();
    assert!(consume(&store, &key, &capacity, &mut outcome).await);
    assert!(
        outcome.errors.is_empty(),
        "calls failed: {:?}",
        outcome.errors
    );
    assert_eq!(outcome.timeouts, 0);
    assert_eq!(counts(&database, &key).await, same_counts(2));
}

/// Opens a transaction that has read the usage table and stays open, so that a migration that
/// alters the table waits for it.
async fn open_reader(database: &TestDatabase) -> tokio_postgres::Client {
    let reader = database.client().await;
    reader
        .batch_execute("BEGIN; SELECT count(*) FROM highway.tool_rate_limit_usage;")
        .await
        .unwrap();
    reader
}

/// Returns the store of a test of migration locks, at migration 9, whose migrations wait `lock`
/// for each lock.
async fn store_at_migration_9(database: &TestDatabase, lock: Duration) -> PostgresStore {
    database_at_migration_9(database, &[]).await;
    PostgresStore::new(
        PostgresConfig::new(database.url())
            .statement_timeout(Duration::from_secs(5))
            .call_timeout(Duration::from_secs(10))
            .migration_lock_timeout(lock),
    )
    .unwrap()
}

/// A migration that waits for a table's lock behind an open transaction backs off after its lock
/// timeout, so the calls that queued behind its lock request run long before the transaction
/// ends, and it applies once the transaction ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_backs_off_from_open_transaction() {
    let database = TestDatabase::new().await;
    let store = store_at_migration_9(&database, Duration::from_millis(100)).await;
    let reader = open_reader(&database).await;
    let migration = tokio::spawn({
        let store = store.clone();
        async move { store.migrate().await }
    });
    database.wait_for_lock_waiters(1).await;

    let key = key("run-1");
    let capacity = capacity(1_000_000);
    let mut outcome = Outcome::default();
    let started = Instant::now();
    let mut calls = 0;
    while started.elapsed() < Duration::from_millis(1500) {
        assert!(consume(&store, &key, &capacity, &mut outcome).await);
        calls += 1;
    }
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    assert!(
        outcome.slowest < Duration::from_millis(600),
        "a call waited {:?} behind the migration's lock request",
        outcome.slowest
    );
    assert!(
        !migration.is_finished(),
        "the migration ran past the open transaction"
    );

    reader.batch_execute("COMMIT").await.unwrap();
    assert_eq!(migration.await.unwrap().unwrap(), vec![10, 11, 12]);
    assert_eq!(counts(&database, &key).await, same_counts(calls));
}

/// A migration that cannot get its lock in any attempt fails with an error that names it and what
/// to do, and leaves the database at the version before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_gives_up_on_lock() {
    let database = TestDatabase::new().await;
    let store = store_at_migration_9(&database, Duration::from_millis(20)).await;
    let reader = open_reader(&database).await;

    let error = store.migrate().await.unwrap_err();

    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    let message = std::error::Error::source(&error)
        .expect("the error has a cause")
        .to_string();
    assert!(
        message.contains("migration 0010_usage_write_cost.sql failed"),
        "{message}"
    );
    assert!(message.contains("in each of 10 attempts"), "{message}");
    assert!(message.contains("pg_stat_activity"), "{message}");
    let latest: i32 = database
        .client()
        .await
        .query_one("SELECT max(version) FROM highway.ratelimit_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(latest, 9);

    reader.batch_execute("COMMIT").await.unwrap();
    assert_eq!(store.migrate().await.unwrap(), vec![10, 11, 12]);
}

/// With a zero lock timeout a migration waits for its locks as long as it takes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_lock_timeout_waits_for_lock() {
    let database = TestDatabase::new().await;
    let store = store_at_migration_9(&database, Duration::ZERO).await;
    let reader = open_reader(&database).await;
    let migration = tokio::spawn({
        let store = store.clone();
        async move { store.migrate().await }
    });
    database.wait_for_lock_waiters(1).await;

    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!migration.is_finished(), "the migration stopped waiting");
    let waiters = database.lock_waiters(&database.client().await).await;
    assert_eq!(waiters, 1, "the migration no longer waits for the lock");

    reader.batch_execute("COMMIT").await.unwrap();
    assert_eq!(migration.await.unwrap().unwrap(), vec![10, 11, 12]);
}

/// A migration whose caller gives up on it while it backs off leaves no advisory lock behind on
/// the pool's connection, so another worker's migration can run once the table is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_migration_releases_lock() {
    let database = TestDatabase::new().await;
    let store = store_at_migration_9(&database, Duration::from_millis(50)).await;
    let reader = open_reader(&database).await;

    let abandoned = tokio::time::timeout(Duration::from_millis(300), store.migrate()).await;
    assert!(abandoned.is_err(), "the migration ended: {abandoned:?}");
    reader.batch_execute("COMMIT").await.unwrap();

    let other_worker = PostgresStore::new(PostgresConfig::new(database.url())).unwrap();
    let migrated = tokio::time::timeout(Duration::from_secs(10), other_worker.migrate()).await;
    let applied = migrated
        .expect("the other worker's migration waited 10 s for the migration lock")
        .unwrap();
    assert_eq!(applied, vec![10, 11, 12]);
}
