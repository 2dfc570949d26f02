//! The PostgreSQL store's batching of queued calls and its fast batch statement, driven through
//! chosen interleavings.
//!
//! Each test holds some usage rows with an uncommitted insert on a connection of its own, so that
//! the store's round trips for those rows wait, and releases them one by one to drive the batcher
//! through a chosen sequence.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc, Weekday};
use chrono_tz::Tz;
use highway_ratelimit::report::Capacity;
use highway_ratelimit::store::postgres::PostgresStore;
use highway_ratelimit::store::{ConsumeRequest, Decision, ScopeKey, StoreError, TokenStore};
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use common::TestDatabase;

fn key(scope: &str) -> ScopeKey {
    ScopeKey {
        tenant: "acme".to_owned(),
        tool: "tools.email.send".to_owned(),
        scope: scope.to_owned(),
    }
}

fn per_minute(limit: u64) -> Capacity {
    Capacity {
        per_minute: Some(limit),
        ..Capacity::UNLIMITED
    }
}

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("test instants are RFC 3339")
        .with_timezone(&Utc)
}

/// Starts a consume of `cost` for `scope` at `at`, with a minute limit of `limit`, in a task.
fn spawn_consume(
    store: &PostgresStore,
    scope: &str,
    cost: u64,
    limit: u64,
    at: DateTime<Utc>,
) -> JoinHandle<Result<Decision, StoreError>> {
    let store = store.clone();
    let key = key(scope);
    tokio::spawn(async move {
        let capacity = per_minute(limit);
        store
            .consume(ConsumeRequest {
                key: &key,
                cost,
                capacity: &capacity,
                timezone: Tz::UTC,
                week_start: Weekday::Mon,
                at: Some(at),
            })
            .await
    })
}

/// Opens a transaction that inserts the minute row of `scope` starting at `start` and keeps it
/// uncommitted, so that every consume of that row waits until [`release`].
async fn hold_row(database: &TestDatabase, scope: &str, start: DateTime<Utc>) -> Client {
    let client = database.client().await;
    client.batch_execute("BEGIN").await.unwrap();
    client
        .execute(
            "INSERT INTO highway.tool_rate_limit_usage
                 (tenant_id, tool_name, scope_key, window_type, window_start, window_end,
                  request_count)
             VALUES ('acme', 'tools.email.send', $1, 'minute', $2::timestamptz, $2::timestamptz + interval '1 minute', 0)",
            &[&scope, &start],
        )
        .await
        .unwrap();
    client
}

async fn release(holder: Client) {
    holder.batch_execute("COMMIT").await.unwrap();
}

/// Returns a store whose statements and calls wait long enough for rows the test holds.
async fn patient_store(database: &TestDatabase) -> PostgresStore {
    database
        .store_with(|config| {
            config
                .statement_timeout(Duration::from_secs(30))
                .call_timeout(Duration::from_secs(60))
        })
        .await
}

/// Returns the count of the minute row of `scope` starting at `start`.
async fn minute_count(database: &TestDatabase, scope: &str, start: DateTime<Utc>) -> i64 {
    database
        .client()
        .await
        .query_one(
            "SELECT request_count FROM highway.tool_rate_limit_usage
             WHERE scope_key = $1 AND window_type = 'minute' AND window_start = $2",
            &[&scope, &start],
        )
        .await
        .unwrap()
        .get(0)
}

/// Lets spawned consumes reach the batcher and the database.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(400)).await;
}

/// Two calls of one key must be decided in the order they reached the store: the earlier one
/// gets the last unit of the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_keeps_arrival_order() {
    let database = TestDatabase::new().await;
    // Three round trips at once, at most two of them batches, two calls per batch.
    let store = database
        .store_with(|config| {
            config
                .pool_size(8)
                .max_batches_in_flight(3)
                .max_batch_size(2)
                .statement_timeout(Duration::from_secs(30))
                .call_timeout(Duration::from_secs(60))
        })
        .await;
    let start = utc("2030-01-01T00:00:00Z");
    let at = utc("2030-01-01T00:00:30Z");

    let hold_x = hold_row(&database, "x", start).await;
    let hold_y = hold_row(&database, "y", start).await;
    let hold_z = hold_row(&database, "z", start).await;
    let hold_w = hold_row(&database, "w", start).await;

    // Three round trips alone, each waiting for its held row: the batcher is full.
    let x = spawn_consume(&store, "x", 1, 100, at);
    let y = spawn_consume(&store, "y", 1, 100, at);
    let z = spawn_consume(&store, "z", 1, 100, at);
    settle().await;

    // Queued in this order: k, w, k. Key k has room for two calls.
    let k0 = spawn_consume(&store, "k", 1, 2, at);
    settle().await;
    let w = spawn_consume(&store, "w", 1, 100, at);
    settle().await;
    let k1 = spawn_consume(&store, "k", 1, 2, at);
    settle().await;

    // x ends, so the batch [k0, w] goes out and waits for w's row. k1 stays queued.
    release(hold_x).await;
    settle().await;
    // k2 comes after k1 and waits for k's round trip.
    let k2 = spawn_consume(&store, "k", 1, 2, at);
    settle().await;
    // y ends: k1 finds k's round trip still running and waits for it, ahead of k2.
    release(hold_y).await;
    settle().await;
    release(hold_w).await;
    release(hold_z).await;

    for task in [x, y, z, w, k0] {
        assert!(task.await.unwrap().unwrap().is_admitted());
    }
    let k1 = k1.await.unwrap().unwrap();
    let k2 = k2.await.unwrap().unwrap();
    assert!(
        k1.is_admitted(),
        "k1 reached the store before k2 but was rejected; k2 admitted: {}",
        k2.is_admitted()
    );
    assert!(
        !k2.is_admitted(),
        "k2 took the unit that k1 asked for first"
    );
}

/// A call's cost and minute limit, for a call whose hour limit is 100.
type Charge = (u64, u64);

/// The instant of the calls that [`queue_behind_held_row`] sends, and the start of their minute.
const QUEUED_AT: &str = "2030-01-01T00:00:30Z";
const QUEUED_MINUTE: &str = "2030-01-01T00:00:00Z";

/// Holds the minute row of `scope`, sends `first` for it, which waits for the row, and queues
/// `queued` behind it one by one, then releases the row: the queued calls go out together in one
/// batch of one key. Returns the decisions of the first call and of the queued ones, in order.
async fn queue_behind_held_row(
    database: &TestDatabase,
    store: &PostgresStore,
    scope: &'static str,
    first: Charge,
    queued: &[Charge],
) -> (Decision, Vec<Decision>) {
    let consume = |(cost, minute_limit): Charge| {
        let store = store.clone();
        tokio::spawn(async move {
            let capacity = Capacity {
                per_minute: Some(minute_limit),
                per_hour: Some(100),
                ..Capacity::UNLIMITED
            };
            store
                .consume(ConsumeRequest {
                    key: &key(scope),
                    cost,
                    capacity: &capacity,
                    timezone: Tz::UTC,
                    week_start: Weekday::Mon,
                    at: Some(utc(QUEUED_AT)),
                })
                .await
        })
    };

    let hold = hold_row(database, scope, utc(QUEUED_MINUTE)).await;
    let first = consume(first);
    settle().await;
    let mut tasks = Vec::new();
    for &charge in queued {
        tasks.push(consume(charge));
        settle().await;
    }
    release(hold).await;

    let first = first.await.unwrap().unwrap();
    let mut decisions = Vec::new();
    for task in tasks {
        decisions.push(task.await.unwrap().unwrap());
    }
    (first, decisions)
}

/// Returns whether `decision` admitted its call, and the units each window has left.
fn outcome(decision: &Decision) -> (bool, Vec<u64>) {
    let remaining = decision
        .windows()
        .iter()
        .map(|window| window.remaining)
        .collect();
    (decision.is_admitted(), remaining)
}

/// Calls of one key that queue behind its round trip go out together and are charged in the order
/// they came, and each gets the counts after its own charge. When the windows have room for only
/// some of them, the earliest get it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_calls_of_one_key_count_in_order() {
    let database = TestDatabase::new().await;
    let store = patient_store(&database).await;
    let minute = utc(QUEUED_MINUTE);

    // Room for every call: minute limit 7, costs 1 + 1 + 2 + 3.
    let (first, queued) =
        queue_behind_held_row(&database, &store, "room", (1, 7), &[(1, 7), (2, 7), (3, 7)]).await;
    assert_eq!(outcome(&first), (true, vec![6, 99]));
    let outcomes: Vec<_> = queued.iter().map(outcome).collect();
    assert_eq!(
        outcomes,
        [
            (true, vec![5, 98]),
            (true, vec![3, 96]),
            (true, vec![0, 93])
        ]
    );
    assert_eq!(minute_count(&database, "room", minute).await, 7);

    // Room for the first two queued calls only: minute limit 5.
    let (first, queued) =
        queue_behind_held_row(&database, &store, "full", (1, 5), &[(1, 5), (2, 5), (3, 5)]).await;
    assert!(first.is_admitted());
    let outcomes: Vec<_> = queued.iter().map(outcome).collect();
    assert_eq!(
        outcomes,
        [
            (true, vec![3, 98]),
            (true, vec![1, 96]),
            (false, vec![1, 96])
        ]
    );
    assert_eq!(minute_count(&database, "full", minute).await, 4);
    assert_eq!(charged(&database, "full").await, 8, "minute 4 and hour 4");
}

/// A batch of one key's calls whose total fits every call's limit, but not the room that the
/// window has left, makes the single-call statement roll back. The batch function then decides
/// the calls in the order they came, each against its own limit, and charges only the admitted calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_rollback_decides_calls_in_order() {
    let database = TestDatabase::new().await;
    let store = patient_store(&database).await;

    // The first call charges 3. The queued calls cost 2 + 2 + 1 = 5, within the smallest minute
    // limit 6, but 3 + 5 passes it, so the statement rolls back.
    let (first, queued) =
        queue_behind_held_row(&database, &store, "k", (3, 10), &[(2, 10), (2, 6), (1, 10)]).await;

    assert!(first.is_admitted());
    let outcomes: Vec<_> = queued.iter().map(outcome).collect();
    assert_eq!(
        outcomes,
        [
            (true, vec![5, 95]),
            (false, vec![1, 95]),
            (true, vec![4, 94])
        ]
    );
    assert_eq!(minute_count(&database, "k", utc(QUEUED_MINUTE)).await, 6);
    assert_eq!(charged(&database, "k").await, 12, "minute 6 and hour 6");
}

/// A batch of one key's calls whose statement the statement timeout cancels charges nothing, and
/// each of its calls gets the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_statement_timeout_charges_nothing() {
    let database = TestDatabase::new().await;
    let store = database
        .store_with(|config| {
            config
                .statement_timeout(Duration::from_millis(1500))
                .call_timeout(Duration::from_secs(60))
        })
        .await;
    let start = utc("2030-01-01T00:00:00Z");
    let at = utc("2030-01-01T00:00:30Z");

    // The first call waits for the held row and times out. The next two queue behind it and go
    // out together, to wait for the same row.
    let hold = hold_row(&database, "k", start).await;
    let first = spawn_consume(&store, "k", 1, 100, at);
    settle().await;
    let second = spawn_consume(&store, "k", 2, 100, at);
    let third = spawn_consume(&store, "k", 3, 100, at);
    for task in [first, second, third] {
        let result = task.await.unwrap();
        assert!(matches!(result, Err(StoreError::Timeout(_))), "{result:?}");
    }
    release(hold).await;

    assert_eq!(minute_count(&database, "k", start).await, 0);
}

/// Two batched calls whose costs sum past `i64::MAX` must not both be admitted when the limit is
/// `i64::MAX`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_batch_costs_stay_within_limit() {
    let database = TestDatabase::new().await;
    let store = patient_store(&database).await;
    let limit = i64::MAX as u64;
    let cost = 4_700_000_000_000_000_000_u64;
    let earlier_start = utc("2030-01-01T00:00:00Z");
    let earlier = utc("2030-01-01T00:00:30Z");
    let later = utc("2030-01-01T00:05:30Z");

    // A first call of the key, in another minute, waits for its held row, so that the next two
    // queue behind it and go out together.
    let hold = hold_row(&database, "k", earlier_start).await;
    let first = spawn_consume(&store, "k", 1, limit, earlier);
    settle().await;
    let second = spawn_consume(&store, "k", cost, limit, later);
    let third = spawn_consume(&store, "k", cost, limit, later);
    settle().await;
    release(hold).await;

    assert!(first.await.unwrap().unwrap().is_admitted());
    let mut admitted = Vec::new();
    for task in [second, third] {
        let result = task.await.unwrap();
        admitted.push(matches!(result, Ok(decision) if decision.is_admitted()));
    }
    let count = minute_count(&database, "k", utc("2030-01-01T00:05:00Z")).await;

    let admitted_cost: u128 = admitted
        .iter()
        .filter(|admitted| **admitted)
        .map(|_| u128::from(cost))
        .sum();
    assert!(
        admitted_cost <= u128::from(limit),
        "admitted {admitted_cost} units in a window of {limit}; the row counts {count}"
    );
}

/// A queued call whose caller stopped waiting is dropped from the queue and charges nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_queued_call_charges_nothing() {
    let database = TestDatabase::new().await;
    let store = patient_store(&database).await;
    let start = utc("2030-01-01T00:00:00Z");
    let at = utc("2030-01-01T00:00:30Z");

    // The first call waits for the held row, so the next calls of the key queue behind it.
    let hold = hold_row(&database, "k", start).await;
    let first = spawn_consume(&store, "k", 1, 100, at);
    settle().await;
    let abandoned = spawn_consume(&store, "k", 10, 100, at);
    let waiting_call = spawn_consume(&store, "k", 1, 100, at);
    settle().await;
    abandoned.abort();
    assert!(abandoned.await.unwrap_err().is_cancelled());
    release(hold).await;

    assert!(first.await.unwrap().unwrap().is_admitted());
    assert!(waiting_call.await.unwrap().unwrap().is_admitted());
    let count = minute_count(&database, "k", start).await;
    assert_eq!(count, 2, "the abandoned call of cost 10 was charged");
}

/// Returns the units charged to the usage rows of `scope`, 0 when it has none.
async fn charged(database: &TestDatabase, scope: &str) -> i64 {
    database
        .client()
        .await
        .query_one(
            "SELECT coalesce(sum(request_count), 0)::bigint FROM highway.tool_rate_limit_usage
             WHERE scope_key = $1",
            &[&scope],
        )
        .await
        .unwrap()
        .get(0)
}

/// A queued call goes out in a batch that first waits for a pooled connection. Its caller stops
/// waiting before the batch gets one, so the call was never sent, and must charge nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_abandoned_before_send_charges_nothing() {
    let database = TestDatabase::new().await;
    // One round trip at a time, on a pool of two connections.
    let store = database
        .store_with(|config| {
            config
                .pool_size(2)
                .max_batches_in_flight(1)
                .statement_timeout(Duration::from_secs(30))
                .call_timeout(Duration::from_secs(60))
        })
        .await;
    let start = utc("2030-01-01T00:00:00Z");
    let at = utc("2030-01-01T00:00:30Z");

    // The first call takes a connection and waits for the held row, so the second call queues.
    let hold = hold_row(&database, "first", start).await;
    let first = spawn_consume(&store, "first", 1, 100, at);
    settle().await;
    let abandoned = spawn_consume(&store, "abandoned", 10, 100, at);
    settle().await;

    // The test takes the other connection, and waits for the first call's, ahead of the batch.
    let other_connection = store.pool().get().await.unwrap();
    let pool = store.pool().clone();
    let (give_back, given_back) = tokio::sync::oneshot::channel::<()>();
    let first_connection = tokio::spawn(async move {
        let connection = pool.get().await.unwrap();
        let _ = given_back.await;
        drop(connection);
    });
    settle().await;
    release(hold).await;
    assert!(first.await.unwrap().unwrap().is_admitted());
    settle().await;

    // The queued call's batch now waits for a connection, and its caller gives up.
    abandoned.abort();
    assert!(abandoned.await.unwrap_err().is_cancelled());
    give_back.send(()).unwrap();
    first_connection.await.unwrap();
    drop(other_connection);
    settle().await;

    assert_eq!(
        charged(&database, "abandoned").await,
        0,
        "the call of cost 10 was charged after its caller gave up, before it was sent"
    );
}

/// A batch whose calls pass a row's limit, decided by the batch function, and a consume of one of
/// its keys must not deadlock. After a day limit is added, the key's minute and hour rows exist
/// and its day row does not. The consume waits for the minute row first, and the batch second.
/// Once the row is free, the consume locks it and creates the day row. A batch that created the
/// day row before it waited for the minute row would then wait for the consume while the consume
/// waits for it, and the server would cancel one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_function_and_consume_do_not_deadlock() {
    let database = TestDatabase::new().await;
    let store = patient_store(&database).await;
    let key = key("k");
    let at = utc("2026-03-02T10:15:30Z");
    let minute_and_hour = Capacity {
        per_minute: Some(100),
        per_hour: Some(1000),
        ..Capacity::UNLIMITED
    };
    let with_day = Capacity {
        per_day: Some(10_000),
        ..minute_and_hour
    };
    let request = |capacity| ConsumeRequest {
        key: &key,
        cost: 1,
        capacity,
        timezone: Tz::UTC,
        week_start: Weekday::Mon,
        at: Some(at),
    };
    assert!(
        store
            .consume(request(&minute_and_hour))
            .await
            .unwrap()
            .is_admitted()
    );

    // Another session locks the minute row, so that the consume waits for it first and the batch
    // second.
    let mut holder = database.client().await;
    let holding = holder.transaction().await.unwrap();
    holding
        .execute(
            "SELECT 1 FROM highway.tool_rate_limit_usage WHERE window_type = 'minute' FOR UPDATE",
            &[],
        )
        .await
        .unwrap();
    let consuming = tokio::spawn({
        let store = store.clone();
        let key = key.clone();
        async move {
            store
                .consume(ConsumeRequest {
                    key: &key,
                    cost: 1,
                    capacity: &with_day,
                    timezone: Tz::UTC,
                    week_start: Weekday::Mon,
                    at: Some(at),
                })
                .await
        }
    });
    database.wait_for_lock_waiters(1).await;

    // Two calls of cost 60 pass the minute limit of 100 together, so the batch function decides
    // them one by one after locking every row.
    let batch_client = database.client().await;
    let batching = tokio::spawn(async move {
        let kinds = ["minute", "hour", "day"];
        let limits = [100_i64, 1000, 10_000];
        let starts = [
            utc("2026-03-02T10:15:00Z"),
            utc("2026-03-02T10:00:00Z"),
            utc("2026-03-02T00:00:00Z"),
        ];
        let ends = [
            utc("2026-03-02T10:16:00Z"),
            utc("2026-03-02T11:00:00Z"),
            utc("2026-03-03T00:00:00Z"),
        ];
        let calls: Vec<i32> = vec![1, 1, 1, 2, 2, 2];
        let items = calls.len();
        let rows = batch_client
            .query(
                "SELECT call_index, window_type, admitted
                 FROM highway.consume_tool_rate_tokens_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                &[
                    &calls,
                    &vec!["acme"; items],
                    &vec!["tools.email.send"; items],
                    &vec!["k"; items],
                    &vec![60_i64; items],
                    &kinds.repeat(2),
                    &limits.repeat(2),
                    &starts.repeat(2),
                    &ends.repeat(2),
                    &vec!["UTC"; items],
                    &vec!["monday"; items],
                ],
            )
            .await?;
        Ok::<_, tokio_postgres::Error>(
            rows.iter()
                .map(|row| row.get::<_, bool>(2))
                .collect::<Vec<bool>>(),
        )
    });
    database.wait_for_lock_waiters(2).await;
    holding.commit().await.unwrap();

    let decision = consuming.await.unwrap();
    let admitted = batching.await.unwrap();
    assert!(
        matches!(&decision, Ok(decision) if decision.is_admitted()),
        "consume: {decision:?}"
    );
    assert_eq!(
        admitted.map_err(|error| match error.as_db_error() {
            Some(db) => db.message().to_owned(),
            None => error.to_string(),
        }),
        Ok(vec![true, true, true, false, false, false]),
        "the batch admits its first call and rejects the second"
    );
}

/// The kinds, limits, starts and ends of three windows, as the SQL functions take them.
type WindowColumns = (
    [&'static str; 3],
    [i64; 3],
    [DateTime<Utc>; 3],
    [DateTime<Utc>; 3],
);

/// Returns the minute, hour and day windows at 10:15:30 on 2 March 2026, shortest first.
fn minute_hour_day() -> WindowColumns {
    (
        ["minute", "hour", "day"],
        [100, 1000, 10_000],
        [
            utc("2026-03-02T10:15:00Z"),
            utc("2026-03-02T10:00:00Z"),
            utc("2026-03-02T00:00:00Z"),
        ],
        [
            utc("2026-03-02T10:16:00Z"),
            utc("2026-03-02T11:00:00Z"),
            utc("2026-03-03T00:00:00Z"),
        ],
    )
}

/// Calls `highway.consume_tool_rate_tokens` for a call of key `k` and cost 1 in the first
/// `windows` of [`minute_hour_day`], and returns whether it was admitted.
async fn consume_with_function(client: &Client, windows: usize) -> Result<bool, String> {
    let (kinds, limits, starts, ends) = minute_hour_day();
    let rows = client
        .query(
            "SELECT admitted FROM highway.consume_tool_rate_tokens('acme', 'tools.email.send',
                 'k', 1, $1, $2, '2026-03-02T10:15:30Z', $3, $4, 'UTC', 'monday', TRUE)",
            &[
                &kinds[..windows].to_vec(),
                &limits[..windows].to_vec(),
                &starts[..windows].to_vec(),
                &ends[..windows].to_vec(),
            ],
        )
        .await
        .map_err(|error| database_message(&error))?;
    Ok(rows.iter().all(|row| row.get::<_, bool>(0)))
}

/// Returns the database's message of a failed statement, or the error itself.
fn database_message(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => error.to_string(),
    }
}

/// The batch function and the consume function must not deadlock, as in
/// `batch_function_and_consume_do_not_deadlock`. There the store decides a consume whose statement
/// the server cancelled again, so the test passes whenever the server cancels the consume. Here
/// both functions run as plain statements, so a deadlock fails the test whichever one the server
/// cancels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_and_consume_function_do_not_deadlock() {
    let database = TestDatabase::new().await;
    database.store().await;
    let seeding = database.client().await;
    assert_eq!(consume_with_function(&seeding, 2).await, Ok(true));

    // Another session locks the minute row, so that the consume waits for it first and the batch
    // second.
    let mut holder = database.client().await;
    let holding = holder.transaction().await.unwrap();
    holding
        .execute(
            "SELECT 1 FROM highway.tool_rate_limit_usage WHERE window_type = 'minute' FOR UPDATE",
            &[],
        )
        .await
        .unwrap();
    let consumer = database.client().await;
    let consuming = tokio::spawn(async move { consume_with_function(&consumer, 3).await });
    database.wait_for_lock_waiters(1).await;

    // Two calls of cost 60 pass the minute limit of 100 together, so the batch function decides
    // them one by one after locking every row.
    let batch_client = database.client().await;
    let batching = tokio::spawn(async move {
        let (kinds, limits, starts, ends) = minute_hour_day();
        let calls: Vec<i32> = vec![1, 1, 1, 2, 2, 2];
        let items = calls.len();
        let rows = batch_client
            .query(
                "SELECT call_index, window_type, admitted
                 FROM highway.consume_tool_rate_tokens_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                &[
                    &calls,
                    &vec!["acme"; items],
                    &vec!["tools.email.send"; items],
                    &vec!["k"; items],
                    &vec![60_i64; items],
                    &kinds.repeat(2),
                    &limits.repeat(2),
                    &starts.repeat(2),
                    &ends.repeat(2),
                    &vec!["UTC"; items],
                    &vec!["monday"; items],
                ],
            )
            .await
            .map_err(|error| database_message(&error))?;
        Ok::<_, String>(
            rows.iter()
                .map(|row| row.get::<_, bool>(2))
                .collect::<Vec<bool>>(),
        )
    });
    database.wait_for_lock_waiters(2).await;
    holding.commit().await.unwrap();

    let consumed = consuming.await.unwrap();
    let admitted = batching.await.unwrap();
    assert_eq!(consumed, Ok(true), "consume");
    assert_eq!(
        admitted,
        Ok(vec![true, true, true, false, false, false]),
        "the batch admits its first call and rejects the second"
    );
}

/// A queued call goes out on its own caller's runtime. Here the call before it runs in the
/// `block_on` of a second runtime, which nothing drives once that call has returned. A batch
/// spawned there would never be sent: the queued call would wait until it timed out, and so would
/// every later call of its key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_call_goes_out_on_its_runtime() {
    let database = TestDatabase::new().await;
    let store = database
        .store_with(|config| {
            config
                .statement_timeout(Duration::from_secs(20))
                .call_timeout(Duration::from_secs(10))
        })
        .await;
    let start = utc("2030-01-01T00:00:00Z");
    let at = utc("2030-01-01T00:00:30Z");

    // The first call waits for the held row in the `block_on` of a runtime on another thread. That
    // runtime stays alive, and idle, until the test ends.
    let hold = hold_row(&database, "k", start).await;
    let (first_sender, first_receiver) = tokio::sync::oneshot::channel();
    let (end_sender, end_receiver) = std::sync::mpsc::channel::<()>();
    let other_thread = std::thread::spawn({
        let store = store.clone();
        move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let key = key("k");
            let capacity = per_minute(100);
            let first = runtime.block_on(store.consume(ConsumeRequest {
                key: &key,
                cost: 1,
                capacity: &capacity,
                timezone: Tz::UTC,
                week_start: Weekday::Mon,
                at: Some(at),
            }));
            let _ = first_sender.send(first);
            let _ = end_receiver.recv();
            drop(runtime);
        }
    });
    database.wait_for_lock_waiters(1).await;

    // The second call queues behind the first, whose round trip has the key in flight.
    let queued = spawn_consume(&store, "k", 1, 100, at);
    settle().await;
    release(hold).await;
    let first = first_receiver.await.unwrap();
    let queued = queued.await.unwrap();
    end_sender.send(()).unwrap();
    other_thread.join().unwrap();

    assert!(
        matches!(&first, Ok(decision) if decision.is_admitted()),
        "first call: {first:?}"
    );
    assert!(
        matches!(&queued, Ok(decision) if decision.is_admitted()),
        "queued call: {queued:?}"
    );
}

/// A batch whose first caller stops waiting must still be sent for the others. The first caller
/// queues in the `block_on` of a current-thread runtime on another thread, with a timeout shorter
/// than the batch's round trip, as the layer's store timeout is. Once it times out, nothing drives
/// that runtime. A batch spawned there would stall, and the second caller, on the test's runtime,
/// would wait until its call timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_outlives_first_caller_timeout() {
    let database = TestDatabase::new().await;
    let store = database
        .store_with(|config| {
            config
                .statement_timeout(Duration::from_secs(20))
                .call_timeout(Duration::from_secs(10))
        })
        .await;
    let start = utc("2030-01-01T00:00:00Z");
    let at = utc("2030-01-01T00:00:30Z");
    let minute_and_hour = Capacity {
        per_minute: Some(100),
        per_hour: Some(1000),
        ..Capacity::UNLIMITED
    };

    // The first call, of the minute alone, waits for the held minute row. The hour row, held by
    // another session, stops the batch after it.
    let minute_holder = hold_row(&database, "k", start).await;
    let hour_holder = database.client().await;
    hour_holder.batch_execute("BEGIN").await.unwrap();
    hour_holder
        .execute(
            "INSERT INTO highway.tool_rate_limit_usage
                 (tenant_id, tool_name, scope_key, window_type, window_start, window_end,
                  request_count)
             VALUES ('acme', 'tools.email.send', 'k', 'hour', $1::timestamptz,
                 $1::timestamptz + interval '1 hour', 0)",
            &[&start],
        )
        .await
        .unwrap();
    let first = spawn_consume(&store, "k", 1, 100, at);
    database.wait_for_lock_waiters(1).await;

    // The impatient caller queues first, on a runtime that stays alive, and idle, until the test
    // ends.
    let (impatient_sender, impatient_receiver) = tokio::sync::oneshot::channel();
    let (end_sender, end_receiver) = std::sync::mpsc::channel::<()>();
    let other_thread = std::thread::spawn({
        let store = store.clone();
        move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let key = key("k");
            let consume = store.consume(ConsumeRequest {
                key: &key,
                cost: 1,
                capacity: &minute_and_hour,
                timezone: Tz::UTC,
                week_start: Weekday::Mon,
                at: Some(at),
            });
            let outcome = runtime
                .block_on(async { tokio::time::timeout(Duration::from_secs(2), consume).await });
            let _ = impatient_sender.send(outcome.is_err());
            let _ = end_receiver.recv();
            drop(runtime);
        }
    });
    settle().await;
    let patient = tokio::spawn({
        let store = store.clone();
        async move {
            let key = key("k");
            store
                .consume(ConsumeRequest {
                    key: &key,
                    cost: 1,
                    capacity: &minute_and_hour,
                    timezone: Tz::UTC,
                    week_start: Weekday::Mon,
                    at: Some(at),
                })
                .await
        }
    });
    settle().await;

    // The first call ends and the batch of the two queued calls waits for the hour row until the
    // impatient caller has given up.
    release(minute_holder).await;
    let first = first.await.unwrap();
    database.wait_for_lock_waiters(1).await;
    let impatient_timed_out = impatient_receiver.await.unwrap();
    release(hour_holder).await;
    let patient = tokio::time::timeout(Duration::from_secs(5), patient).await;
    end_sender.send(()).unwrap();
    other_thread.join().unwrap();

    assert!(
        matches!(&first, Ok(decision) if decision.is_admitted()),
        "first call: {first:?}"
    );
    assert!(impatient_timed_out, "the impatient caller times out");
    let patient = patient.map(|joined| joined.unwrap());
    assert!(
        matches!(&patient, Ok(Ok(decision)) if decision.is_admitted()),
        "patient call within 5 s: {patient:?}"
    );
}

/// A trigger on the usage table raises an error for one scope, inside the fast statements and the
/// consume functions alike, while many callers consume that scope and good ones over a pool of
/// one connection. The failing batches charge nothing and their calls are sent again one by one,
/// so each good call is admitted and counted once, every call of the bad scope fails uncharged,
/// and the one session serves every call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raised_error_fails_only_its_call() {
    let database = TestDatabase::new().await;
    let store = database
        .store_with(|config| config.pool_size(1).max_batch_size(16))
        .await;
    let admin = database.client().await;
    admin
        .batch_execute(
            "CREATE FUNCTION highway.reject_bad_scope() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NEW.scope_key = 'bad' THEN
                     RAISE EXCEPTION 'scope bad is rejected' USING ERRCODE = 'invalid_parameter_value';
                 END IF;
                 RETURN NEW;
             END $$;
             CREATE TRIGGER reject_bad_scope BEFORE INSERT OR UPDATE
                 ON highway.tool_rate_limit_usage
                 FOR EACH ROW EXECUTE FUNCTION highway.reject_bad_scope();",
        )
        .await
        .unwrap();
    let at = utc("2030-01-01T00:00:30Z");
    let scopes = ["bad", "a", "b", "c"];
    let sessions_before = {
        spawn_consume(&store, "a", 1, 1_000, at)
            .await
            .unwrap()
            .unwrap();
        database.store_sessions(&admin).await
    };

    let calls: Vec<_> = (0..120)
        .map(|index| {
            let scope = scopes[index % scopes.len()];
            (scope, spawn_consume(&store, scope, 1, 1_000, at))
        })
        .collect();
    let mut admitted = std::collections::HashMap::new();
    for (scope, call) in calls {
        let result = call.await.unwrap();
        if scope == "bad" {
            assert!(
                matches!(&result, Err(StoreError::Unavailable(_))),
                "a call of the bad scope: {result:?}"
            );
            continue;
        }
        assert!(
            matches!(&result, Ok(Decision::Admitted { .. })),
            "a call of {scope}: {result:?}"
        );
        *admitted.entry(scope).or_insert(0_i64) += 1;
    }

    for scope in scopes {
        let counted: i64 = admin
            .query_one(
                "SELECT coalesce(sum(request_count), 0)::bigint
                 FROM highway.tool_rate_limit_usage WHERE scope_key = $1",
                &[&scope],
            )
            .await
            .unwrap()
            .get(0);
        let expected = admitted.get(scope).copied().unwrap_or_default() + i64::from(scope == "a");
        assert_eq!(counted, expected, "the count of {scope}");
    }
    assert_eq!(database.store_sessions(&admin).await, sessions_before);
}
