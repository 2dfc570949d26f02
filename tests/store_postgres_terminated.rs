//! The PostgreSQL store when round trips end early: the server terminates a connection
//! (`pg_terminate_backend`) in the middle of a call or a batch, or callers stop waiting. The
//! terminated transactions roll back, so their calls must charge nothing. A call sent alone gets
//! an error at once, a batch's calls are sent again one by one, and the store must decide the
//! next calls on fresh connections.

mod common;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc, Weekday};
use chrono_tz::Tz;
use highway_ratelimit::report::Capacity;
use highway_ratelimit::store::postgres::PostgresStore;
use highway_ratelimit::store::{ConsumeRequest, Decision, ScopeKey, StoreError, TokenStore};
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use common::{Interruptions, TestDatabase};

fn key(scope: &str) -> ScopeKey {
    ScopeKey {
        tenant: "acme".to_owned(),
        tool: "tools.email.send".to_owned(),
        scope: scope.to_owned(),
    }
}

fn at() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2030-01-01T00:00:30Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn minute_start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// Starts a consume of `cost` for `scope`, with a minute limit of 100, in a task.
fn spawn_consume(
    store: &PostgresStore,
    scope: &str,
    cost: u64,
) -> JoinHandle<Result<Decision, StoreError>> {
    let store = store.clone();
    let key = key(scope);
    tokio::spawn(async move {
        let capacity = Capacity {
            per_minute: Some(100),
            ..Capacity::UNLIMITED
        };
        store
            .consume(ConsumeRequest {
                key: &key,
                cost,
                capacity: &capacity,
                timezone: Tz::UTC,
                week_start: Weekday::Mon,
                at: Some(at()),
            })
            .await
    })
}

/// Opens a transaction that inserts the minute rows of `scopes` and keeps it uncommitted, so that
/// every consume of those rows waits for a row lock.
async fn hold_rows(database: &TestDatabase, scopes: &[&str]) -> Client {
    let client = database.client().await;
    client.batch_execute("BEGIN").await.unwrap();
    for scope in scopes {
        client
            .execute(
                "INSERT INTO highway.tool_rate_limit_usage
                     (tenant_id, tool_name, scope_key, window_type, window_start, window_end,
                      request_count)
                 VALUES ('acme', 'tools.email.send', $1, 'minute', $2::timestamptz,
                     $2::timestamptz + interval '1 minute', 0)",
                &[scope, &minute_start()],
            )
            .await
            .unwrap();
    }
    client
}

/// Waits until `count` sessions of the database wait for a lock, terminates them, and returns
/// how many it terminated.
async fn terminate_lock_waiters(database: &TestDatabase, admin: &Client, count: i64) -> i64 {
    database.wait_for_lock_waiters(count).await;
    admin
        .query_one(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'",
            &[&database.name()],
        )
        .await
        .unwrap()
        .get(0)
}

/// Returns the total count of the minute rows of `scopes`.
async fn charged(client: &Client, scopes: &[&str]) -> i64 {
    let scopes: Vec<String> = scopes.iter().map(|scope| (*scope).to_owned()).collect();
    client
        .query_one(
            "SELECT coalesce(sum(request_count), 0)::bigint FROM highway.tool_rate_limit_usage
             WHERE scope_key = ANY ($1)",
            &[&scopes],
        )
        .await
        .unwrap()
        .get(0)
}

/// A call that goes out alone and the batch queued behind it both lose their connections while
/// they wait for held rows. The batch mixes two keys, so it takes the batch statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_batch_charges_nothing() {
    let database = TestDatabase::new().await;
    let store = database
        .store_with(|config| {
            config
                .statement_timeout(Duration::from_secs(30))
                .call_timeout(Duration::from_secs(20))
                .max_batches_in_flight(1)
        })
        .await;
    let admin = database.client().await;
    let scopes = ["k", "other"];
    let holder = hold_rows(&database, &scopes).await;

    let first = spawn_consume(&store, "k", 1);
    database.wait_for_lock_waiters(1).await;
    let queued = [
        spawn_consume(&store, "k", 2),
        spawn_consume(&store, "other", 3),
        spawn_consume(&store, "k", 4),
    ];
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    assert_eq!(terminate_lock_waiters(&database, &admin, 1).await, 1);
    let first = first.await.unwrap();
    assert!(
        matches!(first, Err(StoreError::Unavailable(_))),
        "the call whose connection was terminated: {first:?}"
    );

    // The queued calls go out together on another connection and wait for the held rows.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for call in &queued {
        assert!(
            !call.is_finished(),
            "a queued call ended before its batch waited for the held rows"
        );
    }
    assert_eq!(terminate_lock_waiters(&database, &admin, 1).await, 1);

    // The server reported the termination, so the batch charged nothing, and its calls are sent
    // again one by one. They wait for the held rows until the holder commits.
    holder.batch_execute("COMMIT").await.unwrap();
    for call in queued {
        let result = call.await.unwrap();
        assert!(
            matches!(result, Ok(Decision::Admitted { .. })),
            "a call of the terminated batch: {result:?}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the callers of terminated connections waited {:?}",
        started.elapsed()
    );
    assert_eq!(
        charged(&admin, &scopes).await,
        2 + 3 + 4,
        "the terminated call charges nothing, and the calls of the terminated batch once each"
    );

    // The store decides the next calls, alone and in batches, on fresh connections.
    let next: Vec<_> = (0..6)
        .map(|index| spawn_consume(&store, scopes[index % 2], 1))
        .collect();
    for call in next {
        let decision = call.await.unwrap();
        assert!(
            matches!(decision, Ok(Decision::Admitted { .. })),
            "a call after the terminations: {decision:?}"
        );
    }
    assert_eq!(charged(&admin, &scopes).await, 2 + 3 + 4 + 6);
}

/// Callers that stop waiting at every stage of a call: before it is sent, while it waits in a
/// queue or for a connection, and while its statement runs. Each call may have been charged or
/// not, but no window may count more than its limit or less than the calls admitted. The store
/// must also go on deciding calls at once, so a round trip that a cancelled caller started must
/// not keep its key or its place among the round trips.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_callers_leave_store_usable() {
    let database = TestDatabase::new().await;
    let store = database
        .store_with(|config| config.call_timeout(Duration::from_secs(5)).pool_size(3))
        .await;
    let admin = database.client().await;
    let scopes = ["k", "other"];
    let limit = 100;

    let mut admitted = 0;
    let mut cancelled = 0;
    for round in 0..40_u64 {
        let calls = (0..10_u64).map(|index| {
            let store = store.clone();
            let key = key(scopes[(index % 2) as usize]);
            // From no wait at all to a few round trips, so that callers stop at every stage.
            let patience = Duration::from_micros((round * 37 + index * 211) % 4_000);
            tokio::spawn(async move {
                let capacity = Capacity {
                    per_minute: Some(limit),
                    ..Capacity::UNLIMITED
                };
                let call = store.consume(ConsumeRequest {
                    key: &key,
                    cost: 1,
                    capacity: &capacity,
                    timezone: Tz::UTC,
                    week_start: Weekday::Mon,
                    at: Some(at()),
                });
                tokio::time::timeout(patience, call).await
            })
        });
        for call in futures_util::future::join_all(calls).await {
            match call.unwrap() {
                Ok(Ok(Decision::Admitted { .. })) => admitted += 1,
                Ok(Ok(Decision::Rejected { .. })) => {}
                Ok(Err(error)) => panic!("a call failed: {error:?}"),
                Err(_) => cancelled += 1,
            }
        }
    }
    assert!(cancelled > 0, "some callers stopped waiting");
    assert!(admitted > 0, "some calls were admitted");

    // Every call after the cancellations is decided within a round trip or two.
    for scope in scopes {
        let started = Instant::now();
        let decision = spawn_consume(&store, scope, 1).await.unwrap();
        assert!(
            decision.is_ok(),
            "a call after the cancellations: {decision:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "a call after the cancellations took {:?}",
            started.elapsed()
        );
    }

    let charged_before = charged(&admin, &scopes).await;
    assert!(
        charged_before >= admitted,
        "the rows count {charged_before}, fewer than the {admitted} calls admitted"
    );
    for scope in scopes {
        let count = charged(&admin, &[scope]).await;
        assert!(
            count <= limit as i64,
            "{scope} counts {count}, over its limit of {limit}"
        );
    }
}

/// Interrupts the store's statements while many callers consume two keys in batches and alone.
/// Another session locks the keys' rows for 20 ms at a time, so that statements wait. The server
/// cancels them after a statement timeout of 15 ms, or every few milliseconds `pg_cancel_backend`
/// cancels or `pg_terminate_backend` terminates the running ones. Connections go back to the pool
/// after a cancelled statement. No key may count more than its limit, and every call that failed
/// without a timeout or a "may have been charged" error must have charged nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_statements_keep_counts_exact() {
    for interrupt in [
        "statement_timeout",
        "pg_cancel_backend",
        "pg_terminate_backend",
    ] {
        let database = TestDatabase::new().await;
        let statement_timeout = if interrupt == "statement_timeout" {
            Duration::from_millis(15)
        } else {
            Duration::from_secs(2)
        };
        let store = database
            .store_with(|config| {
                config
                    .statement_timeout(statement_timeout)
                    .call_timeout(Duration::from_secs(5))
                    .pool_size(3)
                    .max_batch_size(8)
            })
            .await;
        let admin = database.client().await;
        let scopes = ["k", "other"];
        let limit = 150_u64;
        let holder = hold_rows(&database, &scopes).await;
        holder.batch_execute("COMMIT").await.unwrap();

        let interruptions = Interruptions::start(&database, holder, interrupt).await;

        let calls = (0..32_usize).map(|task| {
            let store = store.clone();
            let key = key(scopes[task % 2]);
            tokio::spawn(async move {
                let capacity = Capacity {
                    per_minute: Some(limit),
                    ..Capacity::UNLIMITED
                };
                let mut outcomes = Vec::new();
                for _ in 0..15 {
                    let decision = store
                        .consume(ConsumeRequest {
                            key: &key,
                            cost: 1,
                            capacity: &capacity,
                            timezone: Tz::UTC,
                            week_start: Weekday::Mon,
                            at: Some(at()),
                        })
                        .await;
                    outcomes.push((key.scope.clone(), decision));
                }
                outcomes
            })
        });
        let outcomes: Vec<(String, Result<Decision, StoreError>)> =
            futures_util::future::join_all(calls)
                .await
                .into_iter()
                .flat_map(Result::unwrap)
                .collect();
        let interrupted = interruptions.stop().await;

        let mut timeouts = 0;
        let mut failed = 0;
        for scope in scopes {
            let mut admitted = 0_i64;
            let mut maybe_charged = 0_i64;
            for (_, decision) in outcomes.iter().filter(|(of, _)| of == scope) {
                match decision {
                    Ok(Decision::Admitted { .. }) => admitted += 1,
                    Ok(Decision::Rejected { .. }) => {}
                    Err(StoreError::Timeout(_)) => {
                        timeouts += 1;
                        maybe_charged += 1;
                    }
                    Err(error) if error.to_string().contains("may have been charged") => {
                        maybe_charged += 1;
                    }
                    Err(_) => failed += 1,
                }
            }
            let count = charged(&admin, &[scope]).await;
            assert!(
                count <= limit as i64,
                "{interrupt}: {scope} counts {count}, over its limit of {limit}"
            );
            assert!(
                admitted <= limit as i64,
                "{interrupt}: {scope} admitted {admitted}, over its limit of {limit}"
            );
            assert!(
                count >= admitted,
                "{interrupt}: {scope} counts {count}, fewer than the {admitted} calls admitted"
            );
            assert!(
                count <= admitted + maybe_charged,
                "{interrupt}: {scope} counts {count} for {admitted} admitted calls and \
                 {maybe_charged} that may have been charged"
            );
        }
        eprintln!(
            "{interrupt}: {interrupted} statements interrupted, {timeouts} calls timed out, \
             {failed} failed uncharged"
        );

        // The store decides calls again once nothing interrupts it. A connection terminated just
        // as its statement ended may not look closed to the pool yet and fail one call, so each
        // key gets one attempt per pooled connection and one more.
        for scope in scopes {
            let mut decision = spawn_consume(&store, scope, 1).await.unwrap();
            for _ in 0..3 {
                if decision.is_ok() {
                    break;
                }
                decision = spawn_consume(&store, scope, 1).await.unwrap();
            }
            assert!(decision.is_ok(), "{interrupt}: {decision:?}");
        }
    }
}
