//! Faults of PostgreSQL under a running layer: a server stopped in the middle of a run and
//! started again, an exhausted pool, a statement over its timeout. Each test that stops a server
//! starts its own, so no other test loses its database.

mod common;
mod reliability_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{TestDatabase, ThrowawayServer, with_database};
use highway_ratelimit::admin::{Admin, ChangeListener, LimitSpec, PostgresPolicies};
use highway_ratelimit::layer::{RateLimitError, RateLimitLayer, RejectionReason};
use highway_ratelimit::report::Capacity;
use highway_ratelimit::store::lease::{LeaseConfig, LeasedStore};
use highway_ratelimit::store::postgres::{PostgresConfig, PostgresStore};
use highway_ratelimit::store::{ConsumeRequest, ScopeKey, StoreError, TokenStore};
use reliability_support::{Call, CapturedLogs, CountingRecorder, call, outcome};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

/// The layer's bound on a store call.
const STORE_TIMEOUT: Duration = Duration::from_millis(500);
/// What a call may take beyond the store timeout: scheduling on a busy 2-core machine.
const SLACK: Duration = Duration::from_millis(400);

async fn fast_failing_store(database: &TestDatabase) -> PostgresStore {
    database
        .store_with(|config| {
            config
                .call_timeout(STORE_TIMEOUT)
                .connect_timeout(Duration::from_millis(300))
                .statement_timeout(Duration::from_millis(400))
        })
        .await
}

fn layer_on(store: &PostgresStore) -> RateLimitLayer {
    let policies = PostgresPolicies::from_admin(&Admin::from_store(store));
    RateLimitLayer::builder(Arc::new(policies), Arc::new(store.clone()))
        .store_timeout(STORE_TIMEOUT)
        .cache_ttl(Duration::from_secs(3600))
        .build()
}

async fn usage_count(database: &TestDatabase, tool: &str) -> i64 {
    let client = database.client().await;
    let row = client
        .query_one(
            "SELECT coalesce(sum(request_count), 0)::bigint FROM highway.tool_rate_limit_usage \
             WHERE tool_name = $1 AND window_type = 'day'",
            &[&tool],
        )
        .await
        .unwrap();
    row.get(0)
}

async fn limit(admin: &Admin, tool: &str, per_day: u64, fail_open: bool) {
    admin
        .upsert(&LimitSpec {
            per_day: Some(per_day),
            fail_open,
            ..LimitSpec::new("acme", tool)
        })
        .await
        .unwrap();
}

/// A record of one call made while the server went down and came back.
#[derive(Debug)]
struct Attempt {
    outcome: &'static str,
    elapsed: Duration,
    timed_out: bool,
}

/// Calls `tool` in a loop on 4 tasks until `stop` is set, recording each call.
fn call_in_loop(
    layer: &RateLimitLayer,
    tool: &'static str,
    stop: &Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<Attempt>>> {
    (0..4)
        .map(|_| {
            let layer = layer.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut attempts = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let started = Instant::now();
                    let result = call(&layer, Call::new("acme", tool)).await;
                    let timed_out = matches!(
                        &result,
                        Err(RateLimitError::Rejected(rejection))
                            if matches!(rejection.reason(),
                                RejectionReason::StoreUnavailable(error) if matches!(**error, StoreError::Timeout(_)))
                    );
                    attempts.push(Attempt {
                        outcome: outcome(&result),
                        elapsed: started.elapsed(),
                        timed_out,
                    });
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                attempts
            })
        })
        .collect()
}

async fn collect(handles: Vec<tokio::task::JoinHandle<Vec<Attempt>>>) -> Vec<Attempt> {
    let mut all = Vec::new();
    for handle in handles {
        all.extend(handle.await.unwrap());
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_server_fails_closed_then_recovers() {
    let server = ThrowawayServer::start().unwrap();
    let database = TestDatabase::on_server(&server.url()).await;
    let store = fast_failing_store(&database).await;
    let admin = Admin::from_store(&store);
    limit(&admin, "tools.closed", 1_000_000, false).await;
    let layer = layer_on(&store);
    call(&layer, Call::new("acme", "tools.closed"))
        .await
        .expect("the first call fits and caches the policy");

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let handles = call_in_loop(&layer, "tools.closed", &stop);
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.stop().unwrap();
    let stopped = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.restart().unwrap();
    let restarted = Instant::now();
    // The pool drops each broken connection when it is next used, then opens new ones.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let attempts = collect(handles).await;

    let slowest = attempts.iter().map(|a| a.elapsed).max().unwrap();
    assert!(
        slowest <= STORE_TIMEOUT + SLACK,
        "a call took {slowest:?} with the database down; the bound is {:?}",
        STORE_TIMEOUT + SLACK
    );
    let rejected = attempts
        .iter()
        .filter(|a| a.outcome == "store_unavailable")
        .count();
    assert!(
        rejected > 0,
        "no call was rejected while the server was down"
    );
    let unexpected: Vec<_> = attempts
        .iter()
        .filter(|a| a.outcome != "admitted" && a.outcome != "store_unavailable")
        .collect();
    assert!(unexpected.is_empty(), "unexpected outcomes: {unexpected:?}");
    let last_quarter = &attempts[attempts.len() * 3 / 4..];
    assert!(
        last_quarter.iter().any(|a| a.outcome == "admitted"),
        "the layer did not recover within {:?} of the restart",
        restarted.elapsed()
    );

    // No call is lost: every admitted call is counted. A call that timed out may still have
    // been charged (its statement was on its way), so it may add at most one each.
    let admitted = 1 + attempts.iter().filter(|a| a.outcome == "admitted").count() as i64;
    let timed_out = attempts.iter().filter(|a| a.timed_out).count() as i64;
    let counted = usage_count(&database, "tools.closed").await;
    assert!(
        counted >= admitted && counted <= admitted + timed_out,
        "counted {counted}, admitted {admitted}, timed out {timed_out}"
    );
    eprintln!(
        "server down {:?}: {} calls, {} admitted, {} rejected ({} timed out), slowest {:?}, counted {}",
        restarted - stopped,
        attempts.len(),
        admitted - 1,
        rejected,
        timed_out,
        slowest,
        counted
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_server_fails_open_logged_and_counted() {
    let recorder = CountingRecorder::global();
    let logs = CapturedLogs::global();
    let server = ThrowawayServer::start().unwrap();
    let database = TestDatabase::on_server(&server.url()).await;
    let store = fast_failing_store(&database).await;
    let admin = Admin::from_store(&store);
    limit(&admin, "tools.open", 5, true).await;
    limit(&admin, "tools.closed", 5, false).await;
    let layer = layer_on(&store);
    call(&layer, Call::new("acme", "tools.open"))
        .await
        .expect("the first call fits and caches the policy");
    let short_lived = RateLimitLayer::builder(
        Arc::new(PostgresPolicies::from_admin(&admin)),
        Arc::new(store.clone()),
    )
    .store_timeout(STORE_TIMEOUT)
    .cache_ttl(Duration::from_millis(300))
    .build();
    for tool in ["tools.open", "tools.closed"] {
        call(&short_lived, Call::new("acme", tool)).await.unwrap();
    }

    server.stop().unwrap();
    let before = recorder.counter(
        "highway_ratelimit_store_errors_total",
        "outcome",
        "admitted",
    );
    for _ in 0..10 {
        let started = Instant::now();
        call(&layer, Call::new("acme", "tools.open"))
            .await
            .expect("a fail-open policy admits while the store is down");
        assert!(started.elapsed() <= STORE_TIMEOUT + SLACK);
    }
    let after = recorder.counter(
        "highway_ratelimit_store_errors_total",
        "outcome",
        "admitted",
    );
    assert_eq!(after - before, 10, "each admitted failure is counted");
    assert!(
        logs.text()
            .contains("token store failed; admitting the call because the policy fails open"),
        "the failure is logged"
    );

    // A layer whose cached policies expired during the outage applies the last ones it read:
    // the fail-open policy still admits, the fail-closed one rejects for the store's failure.
    tokio::time::sleep(Duration::from_millis(400)).await;
    for _ in 0..3 {
        let started = Instant::now();
        let open = call(&short_lived, Call::new("acme", "tools.open")).await;
        assert_eq!(
            outcome(&open),
            "admitted",
            "fail open past the cache's time to live"
        );
        let closed = call(&short_lived, Call::new("acme", "tools.closed")).await;
        assert_eq!(outcome(&closed), "store_unavailable");
        // A policy read and a consume, each bounded by the store timeout.
        assert!(started.elapsed() <= (STORE_TIMEOUT + SLACK) * 2);
    }
    assert!(
        logs.text().contains("applying the last one read"),
        "the stale policy is logged"
    );

    // A tool whose policy is not cached yet cannot be resolved: rejected within the bound.
    let started = Instant::now();
    let uncached = call(&layer, Call::new("acme", "tools.other")).await;
    assert_eq!(outcome(&uncached), "policy_unavailable");
    assert!(started.elapsed() <= STORE_TIMEOUT + SLACK);

    // Back up, the same layer counts again, and the limit of 5 holds: 2 calls were counted
    // before.
    server.restart().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut admitted = 0;
    while admitted < 3 {
        assert!(Instant::now() < deadline, "no recovery within 10 s");
        let before = recorder.counter(
            "highway_ratelimit_store_errors_total",
            "outcome",
            "admitted",
        );
        call(&layer, Call::new("acme", "tools.open")).await.unwrap();
        let failed_open = recorder.counter(
            "highway_ratelimit_store_errors_total",
            "outcome",
            "admitted",
        ) > before;
        if !failed_open {
            admitted += 1;
        }
    }
    let sixth = call(&layer, Call::new("acme", "tools.open")).await;
    assert_eq!(outcome(&sixth), "quota_exhausted");
    assert_eq!(usage_count(&database, "tools.open").await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_server_listener_reconnects() {
    let server = ThrowawayServer::start().unwrap();
    let database = TestDatabase::on_server(&server.url()).await;
    let store = fast_failing_store(&database).await;
    let admin = Admin::from_store(&store);
    limit(&admin, "tools.http", 100, false).await;
    let layer = layer_on(&store);
    let mut listener = ChangeListener::new(database.url().parse().unwrap())
        .with_backoff(Duration::from_millis(50), Duration::from_millis(500))
        .spawn_invalidating(layer.clone());
    tokio::time::timeout(Duration::from_secs(5), listener.wait_connected(1))
        .await
        .expect("the listener connects");
    call(&layer, Call::new("acme", "tools.http")).await.unwrap();

    server.stop().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.restart().unwrap();
    tokio::time::timeout(Duration::from_secs(10), listener.wait_connected(2))
        .await
        .expect("the listener reconnects within 10 s of the restart");

    // A change written after the restart reaches the layer, whose policy cache lives an hour.
    let admin = Admin::from_store(&fast_failing_store(&database).await);
    let deadline = Instant::now() + Duration::from_secs(10);
    while admin
        .upsert(&LimitSpec {
            per_day: Some(1),
            ..LimitSpec::new("acme", "tools.http")
        })
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the admin API did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let result = call(&layer, Call::new("acme", "tools.http")).await;
        if outcome(&result) == "quota_exhausted" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new limit of 1 was not enforced within 5 s: {}",
            outcome(&result)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    listener.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_pool_times_out_then_serves() {
    let database = TestDatabase::new().await;
    let store = database
        .store_with(|config| config.pool_size(1).call_timeout(STORE_TIMEOUT))
        .await;
    let admin = Admin::from_store(&store);
    limit(&admin, "tools.pool", 100, false).await;
    let layer = layer_on(&store);
    call(&layer, Call::new("acme", "tools.pool")).await.unwrap();

    let held = store.pool().get().await.unwrap();
    let started = Instant::now();
    let result = call(&layer, Call::new("acme", "tools.pool")).await;
    let elapsed = started.elapsed();
    assert_eq!(outcome(&result), "store_unavailable");
    assert!(elapsed <= STORE_TIMEOUT + SLACK, "took {elapsed:?}");
    let Err(RateLimitError::Rejected(rejection)) = &result else {
        unreachable!()
    };
    assert!(
        matches!(rejection.reason(), RejectionReason::StoreUnavailable(error) if matches!(**error, StoreError::Timeout(_))),
        "expected a store timeout, got {rejection}"
    );
    drop(held);

    call(&layer, Call::new("acme", "tools.pool"))
        .await
        .expect("the released connection serves the next call");
    // The timed-out call was queued in a batch and may have been charged once the connection
    // came back: 2 or 3, never more.
    let counted = usage_count(&database, "tools.pool").await;
    assert!((2..=3).contains(&counted), "counted {counted}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_over_timeout_is_cancelled() {
    let database = TestDatabase::new().await;
    let store = database
        .store_with(|config| {
            config
                .statement_timeout(Duration::from_millis(300))
                .call_timeout(Duration::from_secs(3))
        })
        .await;
    let admin = Admin::from_store(&store);
    limit(&admin, "tools.slow", 100, false).await;
    let policies = PostgresPolicies::from_admin(&admin);
    let layer = RateLimitLayer::builder(Arc::new(policies), Arc::new(store.clone()))
        .store_timeout(Duration::from_secs(3))
        .build();
    call(&layer, Call::new("acme", "tools.slow")).await.unwrap();

    // Another session locks the usage table, so the consume waits on the lock until the
    // statement timeout cancels it.
    let mut locker = database.client().await;
    let transaction = locker.transaction().await.unwrap();
    transaction
        .batch_execute("LOCK TABLE highway.tool_rate_limit_usage IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();

    let started = Instant::now();
    let result = call(&layer, Call::new("acme", "tools.slow")).await;
    let elapsed = started.elapsed();
    let Err(RateLimitError::Rejected(rejection)) = &result else {
        panic!("a call blocked past the statement timeout was admitted")
    };
    assert!(
        matches!(rejection.reason(), RejectionReason::StoreUnavailable(error)
            if matches!(**error, StoreError::Timeout(timeout) if timeout == Duration::from_millis(300))),
        "{rejection}"
    );
    assert!(
        elapsed < Duration::from_millis(300) + SLACK * 2,
        "the statement timeout of 300 ms ended the call after {elapsed:?}"
    );
    transaction.rollback().await.unwrap();

    call(&layer, Call::new("acme", "tools.slow"))
        .await
        .expect("the connection serves calls after a cancelled statement");
    assert_eq!(
        usage_count(&database, "tools.slow").await,
        2,
        "the cancelled call was not charged"
    );
}

/// A policy read that the layer stops waiting for, while a lock on the limits table blocks it,
/// must not leave its connection busy in the pool that it shares with the store. The next call
/// of a tool whose policy is cached then gets a connection that replies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_policy_read_spares_consume() {
    let database = TestDatabase::new().await;
    let store = database
        .store_with(|config| {
            config
                .statement_timeout(Duration::from_secs(30))
                .call_timeout(STORE_TIMEOUT)
                .pool_size(1)
        })
        .await;
    let admin = Admin::from_store(&store);
    limit(&admin, "tools.cached", 100, false).await;
    limit(&admin, "tools.uncached", 100, false).await;
    let layer = layer_on(&store);
    call(&layer, Call::new("acme", "tools.cached"))
        .await
        .expect("the first call of the cached tool is admitted");

    let mut locker = database.client().await;
    let transaction = locker.transaction().await.unwrap();
    transaction
        .batch_execute("LOCK TABLE highway.tool_rate_limits IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let uncached = call(&layer, Call::new("acme", "tools.uncached")).await;
    let Err(RateLimitError::Rejected(rejection)) = &uncached else {
        panic!("a call whose policy read was blocked was not rejected: {uncached:?}")
    };
    assert!(
        matches!(rejection.reason(), RejectionReason::PolicyUnavailable(error)
            if matches!(**error, StoreError::Timeout(timeout) if timeout == STORE_TIMEOUT)),
        "{rejection}"
    );

    let started = Instant::now();
    let cached = call(&layer, Call::new("acme", "tools.cached")).await;
    let elapsed = started.elapsed();
    transaction.rollback().await.unwrap();
    assert!(
        cached.is_ok(),
        "the cached tool's call after {elapsed:?}: {cached:?}"
    );
    assert_eq!(usage_count(&database, "tools.cached").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_server_bounded_by_timeout() {
    let server = ThrowawayServer::start().unwrap();
    let database = TestDatabase::on_server(&server.url()).await;
    let store = fast_failing_store(&database).await;
    let admin = Admin::from_store(&store);
    limit(&admin, "tools.closed", 1_000, false).await;
    limit(&admin, "tools.open", 1_000, true).await;
    let layer = layer_on(&store);
    call(&layer, Call::new("acme", "tools.closed"))
        .await
        .unwrap();
    call(&layer, Call::new("acme", "tools.open")).await.unwrap();

    // Connections stay open but the server replies to nothing: only the timeouts end a call.
    server.signal_all("STOP").unwrap();
    let mut slowest = Duration::ZERO;
    let calls = (0..8).map(|index| {
        let layer = layer.clone();
        async move {
            let tool = if index % 2 == 0 {
                "tools.closed"
            } else {
                "tools.open"
            };
            let started = Instant::now();
            let result = call(&layer, Call::new("acme", tool)).await;
            (tool, outcome(&result), started.elapsed())
        }
    });
    let results = futures_util::future::join_all(calls).await;
    let uncached_started = Instant::now();
    let uncached = call(&layer, Call::new("acme", "tools.new")).await;
    let uncached_elapsed = uncached_started.elapsed();
    server.signal_all("CONT").unwrap();

    for (tool, outcome, elapsed) in results {
        let expected = if tool == "tools.open" {
            "admitted"
        } else {
            "store_unavailable"
        };
        assert_eq!(outcome, expected, "{tool} with a hung database");
        slowest = slowest.max(elapsed);
    }
    assert!(
        slowest <= STORE_TIMEOUT + SLACK,
        "a call took {slowest:?} with a hung database; the bound is {:?}",
        STORE_TIMEOUT + SLACK
    );
    assert!(
        slowest >= STORE_TIMEOUT / 2,
        "the calls did wait for the database"
    );
    assert_eq!(outcome(&uncached), "policy_unavailable");
    assert!(
        uncached_elapsed <= STORE_TIMEOUT + SLACK,
        "{uncached_elapsed:?}"
    );
    eprintln!("hung database: slowest call {slowest:?}, policy read {uncached_elapsed:?}");

    let deadline = Instant::now() + Duration::from_secs(10);
    while call(&layer, Call::new("acme", "tools.closed"))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "no recovery within 10 s of SIGCONT"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A TCP proxy in front of a server that can stall every connection it carries so far: they stay
/// open but pass nothing more in either direction, like connections to a host that vanished
/// without closing them. Connections accepted later pass traffic.
struct StallingProxy {
    port: u16,
    /// Grows at each stall; a connection passes traffic while this is its value at accept.
    epoch: Arc<AtomicU64>,
}

impl StallingProxy {
    async fn start(server_port: u16) -> StallingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let epoch = Arc::new(AtomicU64::new(0));
        let shared = epoch.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", server_port)).await else {
                    continue;
                };
                let born = shared.load(Ordering::SeqCst);
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(Self::pipe(client_read, server_write, born, shared.clone()));
                tokio::spawn(Self::pipe(server_read, client_write, born, shared.clone()));
            }
        });
        StallingProxy { port, epoch }
    }

    async fn pipe(
        mut from: OwnedReadHalf,
        mut to: OwnedWriteHalf,
        born: u64,
        epoch: Arc<AtomicU64>,
    ) {
        let mut buffer = vec![0_u8; 16 * 1024];
        loop {
            let read = match from.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(read) => read,
            };
            if epoch.load(Ordering::SeqCst) != born {
                // Stalled: keep both sockets open and pass nothing, for the rest of the test.
                std::future::pending::<()>().await;
            }
            if to.write_all(&buffer[..read]).await.is_err() {
                return;
            }
        }
    }

    fn stall(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }
}

/// Runs `calls` consumes at once, a quarter of them on one hot key so that batches form, and
/// returns their results.
async fn consume_together(store: &PostgresStore, calls: usize) -> Vec<Result<bool, StoreError>> {
    let capacity = Capacity {
        per_minute: Some(1_000_000),
        ..Capacity::UNLIMITED
    };
    let consumes = (0..calls).map(|index| {
        let store = store.clone();
        async move {
            let scope = if index % 4 == 0 {
                "hot".to_owned()
            } else {
                format!("cold-{index}")
            };
            let key = ScopeKey {
                tenant: "acme".to_owned(),
                tool: "tools.stall".to_owned(),
                scope,
            };
            store
                .consume(ConsumeRequest {
                    key: &key,
                    cost: 1,
                    capacity: &capacity,
                    timezone: chrono_tz::UTC,
                    week_start: chrono::Weekday::Mon,
                    at: None,
                })
                .await
                .map(|decision| decision.is_admitted())
        }
    });
    futures_util::future::join_all(consumes).await
}

/// Connections that stop carrying replies without being closed leave the pool when their round
/// trips time out, and batches stuck on them give their keys back. So the store serves calls
/// again on new connections instead of waiting on the stalled ones until TCP gives up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_connections_leave_the_pool() {
    let server = ThrowawayServer::start().unwrap();
    let database = TestDatabase::on_server(&server.url()).await;
    database.store().await;
    let proxy = StallingProxy::start(server.port()).await;
    let store = PostgresStore::new(
        PostgresConfig::new(with_database(
            &format!("postgres://postgres@127.0.0.1:{}/postgres", proxy.port),
            database.name(),
        ))
        .pool_size(4)
        .call_timeout(STORE_TIMEOUT)
        .connect_timeout(Duration::from_millis(300))
        .statement_timeout(Duration::from_millis(400)),
    )
    .unwrap();
    for result in consume_together(&store, 16).await {
        assert!(matches!(result, Ok(true)), "before the stall: {result:?}");
    }

    proxy.stall();
    for result in consume_together(&store, 16).await {
        assert!(
            matches!(result, Err(StoreError::Timeout(_))),
            "on stalled connections: {result:?}"
        );
    }

    let started = Instant::now();
    loop {
        let results = consume_together(&store, 16).await;
        if results.iter().all(|result| matches!(result, Ok(true))) {
            break;
        }
        assert!(
            started.elapsed() < STORE_TIMEOUT * 10,
            "still failing {:?} after the stall: {results:?}",
            started.elapsed()
        );
    }
}

/// Runs `calls` consumes at once through a leased store, each of a key of its own in `round`, so
/// that each takes a lease in a round trip, and returns their results.
async fn lease_together(
    store: &LeasedStore,
    round: usize,
    calls: usize,
) -> Vec<Result<bool, StoreError>> {
    let capacity = Capacity {
        per_minute: Some(1_000_000),
        ..Capacity::UNLIMITED
    };
    let consumes = (0..calls).map(|index| {
        let store = store.clone();
        async move {
            let key = ScopeKey {
                tenant: "acme".to_owned(),
                tool: "tools.stall".to_owned(),
                scope: format!("leased-{round}-{index}"),
            };
            store
                .consume(ConsumeRequest {
                    key: &key,
                    cost: 1,
                    capacity: &capacity,
                    timezone: chrono_tz::UTC,
                    week_start: chrono::Weekday::Mon,
                    at: None,
                })
                .await
                .map(|decision| decision.is_admitted())
        }
    });
    futures_util::future::join_all(consumes).await
}

/// The leased store shares the exact store's pool. Its takes that time out on stalled connections
/// must close them, as the exact store does, so that later takes run on new connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_lease_connections_leave_the_pool() {
    let server = ThrowawayServer::start().unwrap();
    let database = TestDatabase::on_server(&server.url()).await;
    database.store().await;
    let proxy = StallingProxy::start(server.port()).await;
    let exact = PostgresStore::new(
        PostgresConfig::new(with_database(
            &format!("postgres://postgres@127.0.0.1:{}/postgres", proxy.port),
            database.name(),
        ))
        .pool_size(4)
        .call_timeout(STORE_TIMEOUT)
        .connect_timeout(Duration::from_millis(300))
        .statement_timeout(Duration::from_millis(400)),
    )
    .unwrap();
    let store = LeasedStore::new(exact, LeaseConfig::new().call_timeout(STORE_TIMEOUT));
    for result in lease_together(&store, 0, 16).await {
        assert!(matches!(result, Ok(true)), "before the stall: {result:?}");
    }

    proxy.stall();
    for result in lease_together(&store, 1, 16).await {
        assert!(
            matches!(result, Err(StoreError::Timeout(_))),
            "on stalled connections: {result:?}"
        );
    }

    let started = Instant::now();
    let mut round = 2;
    loop {
        let results = lease_together(&store, round, 16).await;
        if results.iter().all(|result| matches!(result, Ok(true))) {
            break;
        }
        assert!(
            started.elapsed() < STORE_TIMEOUT * 10,
            "still failing {:?} after the stall: {results:?}",
            started.elapsed()
        );
        round += 1;
    }
}

/// Shutting a leased store down on a database that replies to nothing takes about one call
/// timeout, not one per lease. Once a give-back fails, the leases not yet given back are skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_server_bounds_lease_shutdown() {
    let server = ThrowawayServer::start().unwrap();
    let database = TestDatabase::on_server(&server.url()).await;
    let exact = database
        .store_with(|config| {
            config
                .pool_size(4)
                .call_timeout(STORE_TIMEOUT)
                .connect_timeout(Duration::from_millis(300))
                .statement_timeout(Duration::from_millis(400))
        })
        .await;
    let config = LeaseConfig::new()
        .call_timeout(STORE_TIMEOUT)
        .min_batch(10)
        .max_batch(10);
    let store = LeasedStore::new(exact, config);
    for result in lease_together(&store, 0, 16).await {
        assert!(matches!(result, Ok(true)), "before the hang: {result:?}");
    }

    server.signal_all("STOP").unwrap();
    let started = Instant::now();
    let result = store.shutdown().await;
    let elapsed = started.elapsed();
    server.signal_all("CONT").unwrap();

    assert!(
        matches!(
            result,
            Err(StoreError::Timeout(_) | StoreError::Unavailable(_))
        ),
        "{result:?}"
    );
    assert!(
        elapsed <= STORE_TIMEOUT * 2 + SLACK,
        "shutdown took {elapsed:?} for 16 leases on a hung database"
    );
}

/// Stops the server with `pg_ctl stop -m fast` while 16 tasks consume two keys in batches and
/// alone, and starts it again. Every running statement gets a FATAL error, which closes its
/// connection, and the store must decide calls again after the restart. Each key counts every
/// admitted call, plus at most the calls that timed out or may have been charged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_shutdown_keeps_counts_exact() {
    let server = ThrowawayServer::start().unwrap();
    let database = TestDatabase::on_server(&server.url()).await;
    let store = database
        .store_with(|config| {
            config
                .call_timeout(Duration::from_secs(1))
                .connect_timeout(Duration::from_millis(300))
                .statement_timeout(Duration::from_millis(800))
                .pool_size(4)
                .max_batch_size(8)
        })
        .await;
    let scopes = ["hot", "other"];

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tasks: Vec<_> = (0..16_usize)
        .map(|task| {
            let store = store.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let key = ScopeKey {
                    tenant: "acme".to_owned(),
                    tool: "tools.shutdown".to_owned(),
                    scope: scopes[task % 2].to_owned(),
                };
                let capacity = Capacity {
                    per_minute: Some(1_000_000),
                    ..Capacity::UNLIMITED
                };
                let mut outcomes = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let decision = store
                        .consume(ConsumeRequest {
                            key: &key,
                            cost: 1,
                            capacity: &capacity,
                            timezone: chrono_tz::UTC,
                            week_start: chrono::Weekday::Mon,
                            at: Some(
                                chrono::DateTime::parse_from_rfc3339("2030-01-01T00:00:30Z")
                                    .unwrap()
                                    .with_timezone(&chrono::Utc),
                            ),
                        })
                        .await;
                    outcomes.push((key.scope.clone(), started.elapsed(), decision));
                    if outcomes
                        .last()
                        .is_some_and(|(_, _, decision)| decision.is_err())
                    {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
                outcomes
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(400)).await;
    server.stop_fast().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.restart().unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.extend(task.await.unwrap());
    }

    let slowest = outcomes
        .iter()
        .map(|(_, elapsed, _)| *elapsed)
        .max()
        .unwrap();
    assert!(
        slowest <= Duration::from_secs(1) + SLACK,
        "a call took {slowest:?}"
    );
    let client = database.client().await;
    for scope in scopes {
        let mut admitted = 0_i64;
        let mut maybe_charged = 0_i64;
        let mut failed = 0_i64;
        for (_, _, decision) in outcomes.iter().filter(|(of, _, _)| of == scope) {
            match decision {
                Ok(decision) if decision.is_admitted() => admitted += 1,
                Ok(decision) => panic!("a call was rejected: {decision:?}"),
                Err(StoreError::Timeout(_)) => maybe_charged += 1,
                Err(error) if error.to_string().contains("may have been charged") => {
                    maybe_charged += 1;
                }
                Err(_) => failed += 1,
            }
        }
        let counted: i64 = client
            .query_one(
                "SELECT coalesce(sum(request_count), 0)::bigint FROM highway.tool_rate_limit_usage
                 WHERE scope_key = $1",
                &[&scope],
            )
            .await
            .unwrap()
            .get(0);
        eprintln!(
            "{scope}: {admitted} admitted, {maybe_charged} may have been charged, {failed} failed, \
             {counted} counted"
        );
        assert!(
            failed > 0,
            "{scope}: no call failed while the server was down"
        );
        assert!(
            counted >= admitted && counted <= admitted + maybe_charged,
            "{scope}: counted {counted}, admitted {admitted}, may have been charged {maybe_charged}"
        );
        let last = outcomes.iter().rev().find(|(of, _, _)| of == scope);
        assert!(
            last.is_some_and(|(_, _, decision)| decision.is_ok()),
            "{scope}: the store did not recover after the restart: {last:?}"
        );
    }
}
