//! Token leases against a real PostgreSQL: the limit holds across workers, leases stay in their
//! windows, rejected calls charge nothing, unused tokens come back, and the background sweep and
//! refill follow the store's clock.

mod common;
mod frozen_clock;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc, Weekday};
use chrono_tz::Tz;
use highway_ratelimit::clock::ManualClock;
use highway_ratelimit::report::Capacity;
use highway_ratelimit::store::lease::{LeaseConfig, LeasedStore};
use highway_ratelimit::store::postgres::PostgresConfig;
use highway_ratelimit::store::{ConsumeRequest, Decision, ScopeKey, StoreError, TokenStore};
use highway_ratelimit::window::WindowKind;

use common::{Interruptions, TestDatabase, ThrowawayServer};
use frozen_clock::FrozenDatabase;

/// How often the background sweep runs in the tests that wait for it.
const SWEEP_INTERVAL: Duration = Duration::from_millis(20);
/// How long a test waits for background work (a sweep, a refill) before it fails.
const BACKGROUND_DEADLINE: Duration = Duration::from_secs(10);
/// Where the store clock of the clock tests starts: mid-minute, so that the minute ends first.
const CLOCK_START: &str = "2026-03-02T10:15:30Z";

fn hot_key() -> ScopeKey {
    ScopeKey {
        tenant: "acme".to_owned(),
        tool: "tools.email.send".to_owned(),
        scope: "global".to_owned(),
    }
}

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("test instants are RFC 3339")
        .with_timezone(&Utc)
}

fn request<'a>(
    key: &'a ScopeKey,
    capacity: &'a Capacity,
    cost: u64,
    at: DateTime<Utc>,
) -> ConsumeRequest<'a> {
    ConsumeRequest {
        key,
        cost,
        capacity,
        timezone: Tz::UTC,
        week_start: Weekday::Mon,
        at: Some(at),
    }
}

/// Returns a call of cost 1 without an instant: the store's clock places it.
fn request_now<'a>(key: &'a ScopeKey, capacity: &'a Capacity) -> ConsumeRequest<'a> {
    ConsumeRequest {
        at: None,
        ..request(key, capacity, 1, utc(CLOCK_START))
    }
}

/// Returns lease settings on `clock`, with a sweep every [`SWEEP_INTERVAL`].
fn on_clock(clock: &ManualClock) -> LeaseConfig {
    LeaseConfig::new()
        .clock(clock.clone())
        .sweep_interval(SWEEP_INTERVAL)
}

/// Returns lease settings on `clock` whose leases are all 10 tokens, as long as the database has
/// them.
fn ten_token_leases_on(clock: &ManualClock) -> LeaseConfig {
    on_clock(clock).min_batch(10).max_batch(10).share(1.0)
}

/// A zero lease call timeout would fail every round trip, so the setter panics with the setting,
/// the value and what to use instead.
#[test]
fn zero_call_timeout_panics() {
    let panic = std::panic::catch_unwind(|| LeaseConfig::new().call_timeout(Duration::ZERO))
        .expect_err("a zero call timeout panics");

    let message = panic
        .downcast_ref::<String>()
        .expect("the panic message is formatted");
    assert!(message.contains("LeaseConfig::call_timeout"), "{message}");
    assert!(message.contains("0ns"), "{message}");
    assert!(message.contains("such as the default 3s"), "{message}");
}

async fn leased(database: &TestDatabase, config: LeaseConfig) -> LeasedStore {
    LeasedStore::new(database.store_with(|c| c.pool_size(4)).await, config)
}

/// Returns a leased store on `frozen`, whose database clock stays at the instant it was frozen at,
/// so that a store clock set to [`CLOCK_START`] is not behind it.
async fn leased_on(frozen: &FrozenDatabase, config: LeaseConfig) -> LeasedStore {
    let exact = frozen
        .store(utc(CLOCK_START), PostgresConfig::DEFAULT_MAX_BATCH_SIZE)
        .await;
    LeasedStore::new(exact, config)
}

/// Returns the count of every usage row of `key`, as (window type, window start, count), shortest
/// window first.
async fn counters(database: &TestDatabase, key: &ScopeKey) -> Vec<(String, DateTime<Utc>, i64)> {
    let client = database.client().await;
    let rows = client
        .query(
            "SELECT window_type, window_start, request_count FROM highway.tool_rate_limit_usage
             WHERE tenant_id = $1 AND tool_name = $2 AND scope_key = $3
             ORDER BY array_position(ARRAY['minute', 'hour', 'day', 'week', 'month'], window_type),
                 window_start",
            &[&key.tenant, &key.tool, &key.scope],
        )
        .await
        .expect("usage rows are readable");
    rows.iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect()
}

/// Returns the count of every usage row of `key`, shortest window first.
async fn counts(database: &TestDatabase, key: &ScopeKey) -> Vec<i64> {
    counters(database, key)
        .await
        .into_iter()
        .map(|(_, _, count)| count)
        .collect()
}

/// Polls `condition` every 10 ms until it is true, and panics naming `what` after
/// [`BACKGROUND_DEADLINE`].
async fn wait_for(what: &str, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + BACKGROUND_DEADLINE;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not happen within {BACKGROUND_DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The `tracing` events of one thread, kept in memory.
#[derive(Clone, Default)]
struct ThreadLogs(Arc<Mutex<Vec<u8>>>);

impl ThreadLogs {
    /// Captures the events of this thread at WARN and above until the guard is dropped. A
    /// current-thread runtime runs the test's background tasks on this thread too.
    ///
    /// tracing caches whether an event's call site is enabled. While only one subscriber exists
    /// in the process, it consults only the current thread's, so an event first seen on another
    /// test's thread would stay disabled here. A second subscriber, kept for the whole process,
    /// makes it consult every subscriber, and the cache is rebuilt once this one is set.
    fn capture() -> (ThreadLogs, tracing::subscriber::DefaultGuard) {
        static SECOND: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
        SECOND.get_or_init(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()));

        let logs = ThreadLogs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let guard = tracing::subscriber::set_default(subscriber);
        tracing::callsite::rebuild_interest_cache();
        (logs, guard)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("no writer panicked")).into_owned()
    }
}

impl Write for ThreadLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .expect("no writer panicked")
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn admitted(store: &LeasedStore, request: ConsumeRequest<'_>) -> bool {
    store
        .consume(request)
        .await
        .expect("consume succeeds")
        .is_admitted()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_admit_exactly_the_limit() {
    const WORKERS: usize = 4;
    const TASKS: usize = 8;
    /// Calls per task: each worker alone asks for more than the day limit of 150.
    const CALLS: usize = 25;
    let database = TestDatabase::new().await;
    let capacity = Capacity {
        per_minute: Some(400),
        per_hour: Some(250),
        per_day: Some(150),
        ..Capacity::UNLIMITED
    };
    let at = utc("2026-03-02T10:15:30Z");

    let mut handles = Vec::new();
    let mut stores = Vec::new();
    for _ in 0..WORKERS {
        let store = leased(&database, LeaseConfig::new().max_batch(16)).await;
        stores.push(store.clone());
        for _ in 0..TASKS {
            let store = store.clone();
            handles.push(tokio::spawn(async move {
                let key = hot_key();
                let mut count = 0;
                for _ in 0..CALLS {
                    count += usize::from(admitted(&store, request(&key, &capacity, 1, at)).await);
                }
                count
            }));
        }
    }
    let mut total = 0;
    for handle in handles {
        total += handle.await.expect("task completes");
    }
    for store in &stores {
        store
            .shutdown()
            .await
            .expect("shutdown gives back the leases");
    }

    assert_eq!(total, 150);
    let counts: Vec<i64> = counters(&database, &hot_key())
        .await
        .into_iter()
        .map(|(_, _, count)| count)
        .collect();
    assert_eq!(
        counts,
        vec![150, 150, 150],
        "minute, hour and day are charged alike"
    );
}

#[tokio::test]
async fn rejected_call_charges_nothing() {
    let database = TestDatabase::new().await;
    let store = leased(&database, LeaseConfig::new().share(1.0)).await;
    let key = hot_key();
    let capacity = Capacity {
        per_minute: Some(10),
        per_day: Some(5),
        ..Capacity::UNLIMITED
    };
    let at = utc("2026-03-02T10:15:30Z");

    assert!(admitted(&store, request(&key, &capacity, 3, at)).await);
    let rejected = store
        .consume(request(&key, &capacity, 3, at))
        .await
        .expect("consume succeeds");
    let Decision::Rejected {
        window, retry_at, ..
    } = &rejected
    else {
        panic!("a cost of 3 cannot fit the 2 tokens left: {rejected:?}");
    };
    assert_eq!(*window, WindowKind::Day);
    assert_eq!(*retry_at, utc("2026-03-03T00:00:00Z"));
    let charged = counters(&database, &key).await[0].2 as u64;
    assert_eq!(
        charged,
        3 + store.held(&key),
        "the rejected call took no tokens"
    );

    store.shutdown().await.expect("shutdown succeeds");
    let counts: Vec<i64> = counters(&database, &key)
        .await
        .into_iter()
        .map(|(_, _, count)| count)
        .collect();
    assert_eq!(counts, vec![3, 3]);

    // The 2 tokens left are there for the next worker.
    let other = leased(&database, LeaseConfig::new()).await;
    assert!(admitted(&other, request(&key, &capacity, 2, at)).await);
    assert!(!admitted(&other, request(&key, &capacity, 1, at)).await);
    other.shutdown().await.expect("shutdown succeeds");
}

#[tokio::test]
async fn bad_costs_are_errors() {
    let database = TestDatabase::new().await;
    let store = leased(&database, LeaseConfig::new()).await;
    let key = hot_key();
    let capacity = Capacity {
        per_minute: Some(10),
        per_hour: Some(4),
        ..Capacity::UNLIMITED
    };
    let at = utc("2026-03-02T10:15:30Z");

    let error = store
        .consume(request(&key, &capacity, 5, at))
        .await
        .expect_err("a cost above the hour limit can never fit");
    assert!(
        matches!(
            error,
            StoreError::CostExceedsLimit {
                window: WindowKind::Hour,
                limit: 4,
                cost: 5
            }
        ),
        "{error:?}"
    );
    let error = store
        .consume(request(&key, &capacity, 0, at))
        .await
        .expect_err("a cost of 0 is invalid");
    assert!(matches!(error, StoreError::ZeroCost), "{error:?}");
    assert!(counters(&database, &key).await.is_empty());
}

#[tokio::test]
async fn limit_zero_admits_nothing() {
    let database = TestDatabase::new().await;
    let store = leased(&database, LeaseConfig::new()).await;
    let key = hot_key();
    let capacity = Capacity {
        per_minute: Some(10),
        per_day: Some(0),
        ..Capacity::UNLIMITED
    };
    let at = utc("2026-03-02T10:15:30Z");

    let decision = store
        .consume(request(&key, &capacity, 1, at))
        .await
        .expect("consume succeeds");
    let Decision::Rejected { window, .. } = decision else {
        panic!("a limit of 0 admits nothing: {decision:?}");
    };
    assert_eq!(window, WindowKind::Day);
    assert_eq!(store.held(&key), 0);
    let charged: i64 = counters(&database, &key)
        .await
        .iter()
        .map(|(_, _, count)| count)
        .sum();
    assert_eq!(charged, 0);
}

#[tokio::test]
async fn lease_stays_in_its_windows() {
    let database = TestDatabase::new().await;
    let store = leased(
        &database,
        LeaseConfig::new().min_batch(10).max_batch(10).share(1.0),
    )
    .await;
    let key = hot_key();
    let capacity = Capacity {
        per_minute: Some(3),
        per_hour: Some(100),
        ..Capacity::UNLIMITED
    };
    let first_minute = utc("2026-03-02T10:15:30Z");
    let second_minute = utc("2026-03-02T10:16:10Z");

    let mut admitted_first = 0;
    for _ in 0..5 {
        admitted_first +=
            usize::from(admitted(&store, request(&key, &capacity, 1, first_minute)).await);
    }
    let mut admitted_second = 0;
    for _ in 0..5 {
        admitted_second +=
            usize::from(admitted(&store, request(&key, &capacity, 1, second_minute)).await);
    }
    store.shutdown().await.expect("shutdown succeeds");

    assert_eq!(admitted_first, 3);
    assert_eq!(
        admitted_second, 3,
        "the first minute's lease does not carry over"
    );
    assert_eq!(
        counters(&database, &key).await,
        vec![
            ("minute".to_owned(), utc("2026-03-02T10:15:00Z"), 3),
            ("minute".to_owned(), utc("2026-03-02T10:16:00Z"), 3),
            ("hour".to_owned(), utc("2026-03-02T10:00:00Z"), 6),
        ]
    );
}

#[tokio::test]
async fn ended_window_keeps_its_unused_tokens() {
    let database = TestDatabase::new().await;
    let store = leased(
        &database,
        LeaseConfig::new().min_batch(10).max_batch(10).share(1.0),
    )
    .await;
    let key = hot_key();
    let capacity = Capacity {
        per_minute: Some(50),
        per_hour: Some(500),
        ..Capacity::UNLIMITED
    };

    assert!(
        admitted(
            &store,
            request(&key, &capacity, 1, utc("2026-03-02T10:15:30Z"))
        )
        .await
    );
    assert_eq!(store.held(&key), 9);
    // A call in the next minute gives the 9 unused tokens back to the hour, still open, and takes
    // a lease of the new minute.
    assert!(
        admitted(
            &store,
            request(&key, &capacity, 1, utc("2026-03-02T10:16:10Z"))
        )
        .await
    );
    assert_eq!(store.held(&key), 9);
    assert_eq!(store.shutdown().await.expect("shutdown succeeds"), 9);

    assert_eq!(
        counters(&database, &key).await,
        vec![
            ("minute".to_owned(), utc("2026-03-02T10:15:00Z"), 10),
            ("minute".to_owned(), utc("2026-03-02T10:16:00Z"), 1),
            ("hour".to_owned(), utc("2026-03-02T10:00:00Z"), 2),
        ],
        "the ended minute keeps its lease, the hour counts the admitted calls"
    );
}

#[tokio::test]
async fn decisions_report_remaining_and_reset() {
    let database = TestDatabase::new().await;
    let store = leased(&database, LeaseConfig::new().min_batch(4).share(1.0)).await;
    let key = hot_key();
    let capacity = Capacity {
        per_minute: Some(10),
        per_day: Some(1000),
        ..Capacity::UNLIMITED
    };
    let at = utc("2026-03-02T10:15:30Z");

    for expected in [9, 8, 7, 6, 5] {
        let decision = store
            .consume(request(&key, &capacity, 1, at))
            .await
            .expect("consume succeeds");
        assert!(decision.is_admitted(), "{decision:?}");
        let windows = decision.windows();
        assert_eq!(windows.len(), 2);
        assert_eq!(windows[0].kind, WindowKind::Minute);
        assert_eq!(windows[0].limit, 10);
        assert_eq!(
            windows[0].remaining, expected,
            "one worker sees exact figures"
        );
        assert_eq!(windows[0].reset_at, utc("2026-03-02T10:16:00Z"));
        assert_eq!(windows[1].kind, WindowKind::Day);
        assert_eq!(windows[1].remaining, 1000 - (10 - expected));
        assert_eq!(windows[1].reset_at, utc("2026-03-03T00:00:00Z"));
    }
    store.shutdown().await.expect("shutdown succeeds");
}

#[tokio::test]
async fn given_back_tokens_serve_other_workers() {
    let database = TestDatabase::new().await;
    let holder = leased(
        &database,
        LeaseConfig::new().min_batch(20).max_batch(20).share(1.0),
    )
    .await;
    let other = leased(&database, LeaseConfig::new().recheck_after(Duration::ZERO)).await;
    let key = hot_key();
    let capacity = Capacity {
        per_day: Some(50),
        ..Capacity::UNLIMITED
    };
    let at = utc("2026-03-02T10:15:30Z");

    assert!(admitted(&holder, request(&key, &capacity, 1, at)).await);
    assert_eq!(holder.held(&key), 19);
    let mut others = 0;
    while admitted(&other, request(&key, &capacity, 1, at)).await {
        others += 1;
    }
    assert_eq!(others, 30, "the holder's 19 tokens are out of reach");

    assert_eq!(holder.shutdown().await.expect("shutdown succeeds"), 19);
    while admitted(&other, request(&key, &capacity, 1, at)).await {
        others += 1;
    }
    assert_eq!(others, 49, "the given-back tokens serve the other worker");
    other.shutdown().await.expect("shutdown succeeds");
    assert_eq!(counters(&database, &key).await[0].2, 50);
}

#[tokio::test]
async fn leases_shrink_near_the_limit() {
    let database = TestDatabase::new().await;
    let store = leased(
        &database,
        LeaseConfig::new().min_batch(500).max_batch(500).share(0.1),
    )
    .await;
    let key = hot_key();
    let capacity = Capacity {
        per_day: Some(1000),
        ..Capacity::UNLIMITED
    };
    let at = utc("2026-03-02T10:15:30Z");

    assert!(admitted(&store, request(&key, &capacity, 1, at)).await);
    assert_eq!(
        store.held(&key),
        99,
        "a lease takes at most a tenth of what remains"
    );

    let mut total = 1;
    let mut largest_late_hold = 0;
    for _ in 0..1100 {
        if admitted(&store, request(&key, &capacity, 1, at)).await {
            total += 1;
        }
        let charged = counters(&database, &key).await[0].2 as u64;

        if charged >= 990 {
            largest_late_hold = largest_late_hold.max(store.held(&key));
        }
    }
    assert_eq!(
        total, 1000,
        "one worker with demand above the limit uses every token"
    );
    assert!(
        largest_late_hold <= 2,
        "within 10 tokens of the limit a lease takes at most ceil(11 × 0.1) = 2 tokens, held {largest_late_hold}"
    );
    store.shutdown().await.expect("shutdown succeeds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_grows_with_the_call_rate() {
    let database = TestDatabase::new().await;
    let store = leased(
        &database,
        LeaseConfig::new()
            .max_batch(64)
            .lease_ahead(Duration::from_secs(1)),
    )
    .await;
    let capacity = Capacity {
        per_minute: Some(1_000_000),
        per_day: Some(1_000_000),
        ..Capacity::UNLIMITED
    };
    let at = utc("2026-03-02T10:15:30Z");

    let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (store, calls) = (store.clone(), calls.clone());
            tokio::spawn(async move {
                let key = hot_key();
                for _ in 0..300 {
                    assert!(admitted(&store, request(&key, &capacity, 1, at)).await);
                    calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task completes");
    }
    // Let a refill still in flight land.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let key = hot_key();
    let held = store.held(&key);
    let charged = counters(&database, &key).await[0].2 as u64;
    assert_eq!(
        charged,
        2400 + held,
        "the counters hold the admitted calls and the lease"
    );
    assert!(
        held <= 64,
        "a lease never exceeds the largest batch: {held}"
    );
    let batch = store.batch_size(&key);
    assert!(
        batch > 8,
        "eight busy tasks grow the lease beyond one token each: {batch}"
    );
    assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 2400);

    let returned = store.shutdown().await.expect("shutdown succeeds");
    assert_eq!(returned, held);
    assert_eq!(counters(&database, &key).await[0].2, 2400);
}

#[tokio::test]
async fn peek_charges_nothing() {
    let database = TestDatabase::new().await;
    let store = leased(&database, LeaseConfig::new().min_batch(5).share(1.0)).await;
    let key = hot_key();
    let capacity = Capacity {
        per_day: Some(3),
        ..Capacity::UNLIMITED
    };
    let at = utc("2026-03-02T10:15:30Z");

    let peeked = store
        .peek(request(&key, &capacity, 1, at))
        .await
        .expect("peek succeeds");
    assert!(peeked.is_admitted());
    assert!(counters(&database, &key).await.is_empty());

    assert!(admitted(&store, request(&key, &capacity, 1, at)).await);
    assert_eq!(store.held(&key), 2);
    let peeked = store
        .peek(request(&key, &capacity, 2, at))
        .await
        .expect("peek succeeds");
    assert!(peeked.is_admitted(), "the lease holds 2 tokens");
    assert_eq!(store.held(&key), 2, "peek leaves the lease as it was");
    store.shutdown().await.expect("shutdown succeeds");
}

#[tokio::test]
async fn keys_outside_the_predicate_stay_exact() {
    let database = TestDatabase::new().await;
    let store = leased(
        &database,
        LeaseConfig::new()
            .min_batch(10)
            .lease_when(|key| key.scope == "global"),
    )
    .await;
    let tenant_key = ScopeKey {
        scope: "acme".to_owned(),
        ..hot_key()
    };
    let capacity = Capacity {
        per_day: Some(100),
        ..Capacity::UNLIMITED
    };
    let at = utc("2026-03-02T10:15:30Z");

    assert!(admitted(&store, request(&tenant_key, &capacity, 1, at)).await);
    assert_eq!(store.held(&tenant_key), 0);
    assert_eq!(counters(&database, &tenant_key).await[0].2, 1);
    store.shutdown().await.expect("shutdown succeeds");
}

#[tokio::test]
async fn sweep_returns_ended_lease() {
    let frozen = FrozenDatabase::at(utc(CLOCK_START)).await;
    let database = &frozen.database;
    let clock = ManualClock::starting_at(utc(CLOCK_START));
    let holder = leased_on(&frozen, ten_token_leases_on(&clock)).await;
    let other = leased_on(&frozen, on_clock(&clock).recheck_after(Duration::ZERO)).await;
    let key = hot_key();
    let capacity = Capacity {
        per_minute: Some(10),
        per_hour: Some(12),
        per_day: Some(12),
        ..Capacity::UNLIMITED
    };
    let first_minute = utc("2026-03-02T10:15:00Z");
    let hour = utc("2026-03-02T10:00:00Z");
    let day = utc("2026-03-02T00:00:00Z");

    assert!(admitted(&holder, request_now(&key, &capacity)).await);
    let unused = holder.held(&key);
    assert_eq!(unused, 9);
    assert_eq!(
        counters(database, &key).await,
        vec![
            ("minute".to_owned(), first_minute, 10),
            ("hour".to_owned(), hour, 10),
            ("day".to_owned(), day, 10),
        ],
        "the lease is charged to the windows of the store's clock"
    );

    clock.set(utc("2026-03-02T10:16:05Z"));
    wait_for("the sweep's give-back of the ended lease", async || {
        counts(database, &key).await[1] < 10
    })
    .await;

    let after = 10 - unused as i64;
    assert_eq!(
        counters(database, &key).await,
        vec![
            ("minute".to_owned(), first_minute, 10),
            ("hour".to_owned(), hour, after),
            ("day".to_owned(), day, after),
        ],
        "the ended minute keeps its count, the hour and the day drop by the tokens held"
    );
    assert_eq!(holder.held(&key), 0);

    // The hour and the day have 11 tokens left, so the other worker can use the whole new
    // minute. Without the give-back they would have 2 left.
    let mut others = 0;
    for _ in 0..12 {
        others += usize::from(admitted(&other, request_now(&key, &capacity)).await);
    }
    assert_eq!(others, 10);
    other.shutdown().await.expect("shutdown succeeds");
    assert_eq!(holder.shutdown().await.expect("shutdown succeeds"), 0);
    assert_eq!(
        counters(database, &key).await,
        vec![
            ("minute".to_owned(), first_minute, 10),
            ("minute".to_owned(), utc("2026-03-02T10:16:00Z"), 10),
            ("hour".to_owned(), hour, 11),
            ("day".to_owned(), day, 11),
        ]
    );
}

#[tokio::test]
async fn sweep_keeps_open_lease() {
    let frozen = FrozenDatabase::at(utc(CLOCK_START)).await;
    let database = &frozen.database;
    let clock = ManualClock::starting_at(utc(CLOCK_START));
    let store = leased_on(&frozen, ten_token_leases_on(&clock)).await;
    let minute_key = hot_key();
    let minute_limits = Capacity {
        per_minute: Some(100),
        per_hour: Some(1000),
        ..Capacity::UNLIMITED
    };
    let hour_key = ScopeKey {
        scope: "acme".to_owned(),
        ..hot_key()
    };
    let hour_limits = Capacity {
        per_hour: Some(100),
        per_day: Some(1000),
        ..Capacity::UNLIMITED
    };

    assert!(admitted(&store, request_now(&minute_key, &minute_limits)).await);
    assert!(admitted(&store, request_now(&hour_key, &hour_limits)).await);
    assert_eq!(store.held(&hour_key), 9);
    assert_eq!(counts(database, &hour_key).await, vec![10, 10]);

    // Each give-back of a minute key's lease comes from a sweep pass, and the passes run one
    // after another. So once the second one lands, a whole pass with the clock at 10:16:05 has
    // looked at the hour key's lease.
    clock.set(utc("2026-03-02T10:16:05Z"));
    wait_for("the sweep's give-back of the first minute", async || {
        counts(database, &minute_key).await == vec![10, 1]
    })
    .await;
    assert!(admitted(&store, request_now(&minute_key, &minute_limits)).await);
    clock.set(utc("2026-03-02T10:17:05Z"));
    wait_for("the sweep's give-back of the second minute", async || {
        counts(database, &minute_key).await == vec![10, 10, 2]
    })
    .await;

    assert_eq!(
        store.held(&hour_key),
        9,
        "the hour is still open, so the lease stays"
    );
    assert_eq!(counts(database, &hour_key).await, vec![10, 10]);
    assert_eq!(store.shutdown().await.expect("shutdown succeeds"), 9);
    assert_eq!(counts(database, &hour_key).await, vec![1, 1]);
}

#[tokio::test]
async fn refill_tops_up_in_background() {
    let frozen = FrozenDatabase::at(utc(CLOCK_START)).await;
    let database = &frozen.database;
    let clock = ManualClock::starting_at(utc(CLOCK_START));
    let store = leased_on(&frozen, ten_token_leases_on(&clock)).await;
    let key = hot_key();
    let capacity = Capacity {
        per_minute: Some(1000),
        per_day: Some(1000),
        ..Capacity::UNLIMITED
    };

    assert!(admitted(&store, request_now(&key, &capacity)).await);
    let mut calls: i64 = 1;
    assert_eq!(store.held(&key), 9);

    // While another transaction locks the key's rows, a take waits for the lock (up to the
    // store's statement timeout of 2 s), so the calls below can only be admitted from memory.
    let mut blocker = database.client().await;
    let lock = blocker.transaction().await.expect("a transaction starts");
    let locked = lock
        .query(
            "SELECT request_count FROM highway.tool_rate_limit_usage
             WHERE tenant_id = $1 AND tool_name = $2 AND scope_key = $3 FOR UPDATE",
            &[&key.tenant, &key.tool, &key.scope],
        )
        .await
        .expect("the usage rows are locked");
    assert_eq!(locked.len(), 2);

    // Calls 2 to 8 bring the lease from 9 tokens down to 2. From the sixth call on it is below
    // half the batch of 10, which starts a refill that waits for the rows.
    for _ in 2..=8 {
        let decision = tokio::time::timeout(
            Duration::from_secs(1),
            store.consume(request_now(&key, &capacity)),
        )
        .await
        .expect("a call admitted from the lease does not wait for a take")
        .expect("consume succeeds");
        assert!(decision.is_admitted(), "{decision:?}");
        calls += 1;
        let held = store.held(&key);
        assert_eq!(
            held as i64,
            10 - calls,
            "no take lands while the rows are locked"
        );
        assert_eq!(counts(database, &key).await, vec![calls + held as i64; 2]);
    }

    lock.rollback().await.expect("the lock is released");
    wait_for("the refill", async || store.held(&key) > 2).await;

    let held = store.held(&key);
    assert!(held <= 10, "a refill tops up to the batch at most: {held}");
    assert_eq!(
        counts(database, &key).await,
        vec![calls + held as i64; 2],
        "the counters hold the admitted calls and the refilled lease"
    );
    assert_eq!(store.shutdown().await.expect("shutdown succeeds"), held);
    assert_eq!(counts(database, &key).await, vec![calls; 2]);
}

#[tokio::test]
async fn failed_refill_keeps_counts() {
    let (logs, _capture) = ThreadLogs::capture();
    let server = ThrowawayServer::start().unwrap_or_else(|message| panic!("{message}"));
    let database = TestDatabase::on_server(&server.url()).await;
    // The database clock runs on, so the store clock starts at the current instant: a lease takes
    // no new rows in windows that have ended by the database clock.
    let clock = ManualClock::starting_at(Utc::now());
    let exact = database
        .store_with(|config| {
            config
                .pool_size(4)
                .connect_timeout(Duration::from_millis(500))
        })
        .await;
    let store = LeasedStore::new(
        exact,
        ten_token_leases_on(&clock).call_timeout(Duration::from_secs(2)),
    );
    let key = hot_key();
    let capacity = Capacity {
        per_minute: Some(1000),
        per_day: Some(1000),
        ..Capacity::UNLIMITED
    };

    let mut calls: i64 = 0;
    for _ in 1..=5 {
        assert!(admitted(&store, request_now(&key, &capacity)).await);
        calls += 1;
    }
    assert_eq!(store.held(&key), 5);

    // The sixth call brings the lease below half its batch, and its refill finds no server.
    server.stop().expect("the server stops");
    assert!(admitted(&store, request_now(&key, &capacity)).await);
    calls += 1;
    wait_for("a failed refill", async || {
        logs.text().contains("could not refill a token lease")
    })
    .await;
    assert_eq!(
        store.held(&key),
        4,
        "the failed refill leaves the lease as it was"
    );

    // Calls 7 to 10 drain the lease from memory.
    for _ in 7..=10 {
        assert!(admitted(&store, request_now(&key, &capacity)).await);
        calls += 1;
        assert_eq!(store.held(&key) as i64, 10 - calls);
    }
    let error = store
        .consume(request_now(&key, &capacity))
        .await
        .expect_err("the dry lease needs a take, and the server is down");
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    assert_eq!(store.held(&key), 0);

    server.restart().expect("the server restarts");
    assert!(
        admitted(&store, request_now(&key, &capacity)).await,
        "with the server back, calls are admitted again"
    );
    calls += 1;
    let held = store.held(&key);
    assert_eq!(
        counts(&database, &key).await,
        vec![calls + held as i64; 2],
        "the failed refills and the failed take charged nothing"
    );
    assert_eq!(store.shutdown().await.expect("shutdown succeeds"), held);
    assert_eq!(counts(&database, &key).await, vec![calls; 2]);
}

/// A call of cost 5 finds 3 units left and is rejected. A call of cost 2 right after fits those
/// 3 units: the rejection of the larger call does not reject it without asking the database.
#[tokio::test]
async fn small_call_fits_after_large_rejection() {
    let database = TestDatabase::new().await;
    let exact = database.store_with(|config| config.pool_size(4)).await;
    let key = hot_key();
    let capacity = Capacity {
        per_minute: Some(10),
        ..Capacity::UNLIMITED
    };
    let at = utc("2026-03-02T10:15:30Z");

    // Another worker used 7 of the minute's 10 units through the exact store.
    let used = exact
        .consume(request(&key, &capacity, 7, at))
        .await
        .unwrap();
    assert!(used.is_admitted(), "{used:?}");

    // A generous recheck interval keeps the test free of timing.
    let store = LeasedStore::new(
        exact,
        LeaseConfig::new().recheck_after(Duration::from_secs(60)),
    );
    let large = store
        .consume(request(&key, &capacity, 5, at))
        .await
        .unwrap();
    assert!(
        !large.is_admitted(),
        "5 units cannot fit the 3 left: {large:?}"
    );

    let small = store
        .consume(request(&key, &capacity, 2, at))
        .await
        .unwrap();
    assert!(
        small.is_admitted(),
        "2 units fit the 3 the minute has left: {small:?}"
    );
    store.shutdown().await.unwrap();
}

/// A limit above the maximum count of a usage row acts as that count, as in the exact store.
#[tokio::test]
async fn limit_above_max_count_acts_as_it() {
    let database = TestDatabase::new().await;
    let store = LeasedStore::new(database.store().await, LeaseConfig::new());
    let key = hot_key();
    let capacity = Capacity {
        per_minute: Some(u64::MAX),
        ..Capacity::UNLIMITED
    };
    let at = utc("2026-03-02T10:15:30Z");

    let error = store
        .consume(request(&key, &capacity, u64::MAX, at))
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::CostExceedsLimit { limit, .. } if limit == i64::MAX as u64),
        "{error:?}"
    );
    for _ in 0..3 {
        let decision = store
            .consume(request(&key, &capacity, 1, at))
            .await
            .unwrap();
        assert!(decision.is_admitted(), "{decision:?}");
        assert_eq!(decision.windows()[0].limit, i64::MAX as u64);
    }
    store.shutdown().await.unwrap();
}

/// With a share of 1, a lease may take every token a window has left. Near the maximum count, that
/// share computed in DOUBLE PRECISION rounds past the largest BIGINT: the take must still grant.
#[tokio::test]
async fn whole_share_of_max_limit_grants() {
    let database = TestDatabase::new().await;
    let store = LeasedStore::new(database.store().await, LeaseConfig::new().share(1.0));
    let key = hot_key();
    let capacity = Capacity {
        per_minute: Some(u64::MAX),
        ..Capacity::UNLIMITED
    };
    let at = utc("2026-03-02T10:15:30Z");

    for _ in 0..3 {
        let decision = store.consume(request(&key, &capacity, 1, at)).await;
        assert!(
            matches!(&decision, Ok(decision) if decision.is_admitted()),
            "{decision:?}"
        );
    }
    store.shutdown().await.unwrap();
    assert_eq!(counts(&database, &key).await, [3]);
}

/// A lease take and an exact call of one key must not deadlock. After a day limit is added, the
/// key's minute and hour rows exist and its day row does not. The exact call waits for the minute
/// row first, and the take second. Once the row is free, the exact call locks it and creates the
/// day row. A take that created the day row before it waited for the minute row would then wait
/// for the exact call while the exact call waits for it, and the server would cancel one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn take_and_exact_call_do_not_deadlock() {
    let database = TestDatabase::new().await;
    let exact = database
        .store_with(|config| {
            config
                .statement_timeout(Duration::from_secs(20))
                .call_timeout(Duration::from_secs(30))
        })
        .await;
    let key = hot_key();
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
    assert!(
        exact
            .consume(request(&key, &minute_and_hour, 1, at))
            .await
            .unwrap()
            .is_admitted()
    );

    // Another session locks the minute row, so that the exact call waits for it first and the
    // take second.
    let mut holder = database.client().await;
    let holding = holder.transaction().await.unwrap();
    holding
        .execute(
            "SELECT 1 FROM highway.tool_rate_limit_usage WHERE window_type = 'minute' FOR UPDATE",
            &[],
        )
        .await
        .unwrap();
    let exact_call = tokio::spawn({
        let exact = exact.clone();
        let key = key.clone();
        async move { exact.consume(request(&key, &with_day, 1, at)).await }
    });
    database.wait_for_lock_waiters(1).await;
    let leased = LeasedStore::new(
        database
            .store_with(|config| config.call_timeout(Duration::from_secs(30)))
            .await,
        LeaseConfig::new().call_timeout(Duration::from_secs(30)),
    );
    let leased_call = tokio::spawn({
        let leased = leased.clone();
        let key = key.clone();
        async move { leased.consume(request(&key, &with_day, 1, at)).await }
    });
    database.wait_for_lock_waiters(2).await;
    holding.commit().await.unwrap();

    let exact_decision = exact_call.await.unwrap();
    let leased_decision = leased_call.await.unwrap();
    assert!(
        matches!(&exact_decision, Ok(decision) if decision.is_admitted()),
        "exact call: {exact_decision:?}"
    );
    assert!(
        matches!(&leased_decision, Ok(decision) if decision.is_admitted()),
        "leased call: {leased_decision:?}"
    );
    leased.shutdown().await.unwrap();
}

/// The window kinds of the tests that call the SQL functions directly, shortest first.
const TAKE_KINDS: [&str; 3] = ["minute", "hour", "day"];
/// The limits of [`TAKE_KINDS`].
const TAKE_LIMITS: [i64; 3] = [100, 1000, 10_000];

/// Returns the starts and the ends of the [`TAKE_KINDS`] windows at 10:15:30 on 2 March 2026.
fn take_bounds() -> (Vec<DateTime<Utc>>, Vec<DateTime<Utc>>) {
    let starts = vec![
        utc("2026-03-02T10:15:00Z"),
        utc("2026-03-02T10:00:00Z"),
        utc("2026-03-02T00:00:00Z"),
    ];
    let ends = vec![
        utc("2026-03-02T10:16:00Z"),
        utc("2026-03-02T11:00:00Z"),
        utc("2026-03-03T00:00:00Z"),
    ];
    (starts, ends)
}

/// Calls `highway.consume_tool_rate_tokens` for a call of cost 1 in the first `windows` windows
/// of [`TAKE_KINDS`], and returns whether it was admitted.
async fn consume_with_function(
    client: &tokio_postgres::Client,
    windows: usize,
) -> Result<bool, tokio_postgres::Error> {
    let (starts, ends) = take_bounds();
    let rows = client
        .query(
            "SELECT admitted FROM highway.consume_tool_rate_tokens('acme', 'tools.email.send',
                 'global', 1, $1, $2, '2026-03-02T10:15:30Z', $3, $4, 'UTC', 'monday', TRUE)",
            &[
                &TAKE_KINDS[..windows].to_vec(),
                &TAKE_LIMITS[..windows].to_vec(),
                &starts[..windows].to_vec(),
                &ends[..windows].to_vec(),
            ],
        )
        .await?;
    Ok(rows.iter().all(|row| row.get::<_, bool>(0)))
}

/// Returns the database's message of a failed statement, or the error itself.
fn database_message(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => error.to_string(),
    }
}

/// The SQL functions of a take and a consume of one key must not deadlock. After a day limit is
/// added, the key's minute and hour rows exist and its day row does not. The consume waits for the
/// minute row first, and the take second. Once the row is free, the consume locks it and creates
/// the day row. A take that created the day row before it waited for the minute row would then
/// wait for the consume while the consume waits for it, and the server would cancel one of them.
/// Both run as plain statements here, so a cancelled one fails the test whichever it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn take_and_consume_function_do_not_deadlock() {
    let database = TestDatabase::new().await;
    database.store().await;
    let seeding = database.client().await;
    assert_eq!(consume_with_function(&seeding, 2).await.ok(), Some(true));

    // Another session locks the minute row, so that the consume waits for it first and the take
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
    let taker = database.client().await;
    let taking = tokio::spawn(async move {
        let (starts, ends) = take_bounds();
        let row = taker
            .query_one(
                "SELECT max(granted) FROM highway.lease_tool_rate_tokens('acme',
                     'tools.email.send', 'global', 5, 1, 0, 1.0, $1, $2, $3, $4, 'UTC', 'monday',
                     TRUE)",
                &[&TAKE_KINDS.to_vec(), &TAKE_LIMITS.to_vec(), &starts, &ends],
            )
            .await?;
        Ok::<i64, tokio_postgres::Error>(row.get(0))
    });
    database.wait_for_lock_waiters(2).await;
    holding.commit().await.unwrap();

    let consumed = consuming.await.unwrap();
    let granted = taking.await.unwrap();
    assert_eq!(consumed.map_err(|error| database_message(&error)), Ok(true));
    assert_eq!(granted.map_err(|error| database_message(&error)), Ok(5));
}

/// Returns the tokens that `highway.lease_tool_rate_tokens` grants from a fresh minute window of
/// `limit` to a worker that already has `held` tokens and requests `want`, at least 1.
async fn grant_of_take(
    database: &TestDatabase,
    scope: &str,
    limit: i64,
    want: i64,
    held: i64,
    share: f64,
) -> i64 {
    let start = utc("2026-03-02T10:15:00Z");
    let end = utc("2026-03-02T10:16:00Z");
    database
        .client()
        .await
        .query_one(
            "SELECT granted FROM highway.lease_tool_rate_tokens('acme', 'tools.email.send', $1,
                 $2, 1, $3, $4, ARRAY['minute'], ARRAY[$5::bigint], ARRAY[$6::timestamptz],
                 ARRAY[$7::timestamptz], 'UTC', 'monday', TRUE)",
            &[&scope, &want, &held, &share, &limit, &start, &end],
        )
        .await
        .unwrap()
        .get(0)
}

/// A take's share cap is computed in DOUBLE PRECISION. Its conversion to a count must not lose
/// digits: the cap must match the double's value, and with a share of 1 it is every token left.
#[tokio::test]
async fn share_cap_keeps_every_digit() {
    let database = TestDatabase::new().await;
    database.store().await;
    let large: i64 = 1_234_567_890_123_454_321;
    let past_double: i64 = (1 << 53) + 1;

    assert_eq!(
        grant_of_take(&database, "whole-large", large, large, 0, 1.0).await,
        large
    );
    assert_eq!(
        grant_of_take(
            &database,
            "whole-past-double",
            past_double,
            past_double,
            0,
            1.0
        )
        .await,
        past_double
    );
    // ceil(1234567890123454321 * 0.5) in DOUBLE PRECISION: the double nearest the count is
    // 1234567890123454208, and half of it is exact.
    assert_eq!(
        grant_of_take(&database, "half-large", large, large, 0, 0.5).await,
        617_283_945_061_727_104
    );
    // Remaining and held tokens whose share is past the largest BIGINT: the grant is that share,
    // ceil(13123456789012345678 * 0.9) in DOUBLE PRECISION, less the held tokens.
    let remaining: i64 = 7_123_456_789_012_345_678;
    let held: i64 = 6_000_000_000_000_000_000;
    assert_eq!(
        grant_of_take(&database, "large-holding", remaining, remaining, held, 0.9).await,
        5_811_111_110_111_111_168
    );
}

/// A worker whose clock is 5 seconds behind the database's takes leases in the minute that has
/// just ended. A cleanup deletes that minute's row once it ended more than the statement timeout
/// (2 s) ago. The late worker must not start the minute again from 0, because the minute already
/// admitted its limit of 5 calls from a worker on time.
#[tokio::test]
async fn late_clock_cannot_refill_cleaned_window() {
    let on_time = utc("2026-07-15T10:15:30Z");
    let database = FrozenDatabase::at(on_time).await;
    let exact = database.store(on_time, 1).await;
    let key = hot_key();
    let capacity = Capacity {
        per_minute: Some(5),
        ..Capacity::UNLIMITED
    };

    for _ in 0..5 {
        let decision = exact.consume(request_now(&key, &capacity)).await.unwrap();
        assert!(decision.is_admitted(), "{decision:?}");
    }
    let after_the_minute = utc("2026-07-15T10:16:03Z");
    database
        .client
        .execute(
            "UPDATE frozen_clock.instant SET at = $1",
            &[&after_the_minute],
        )
        .await
        .unwrap();
    let deleted = exact.cleanup_expired(Duration::ZERO).await.unwrap();
    assert_eq!(deleted, 1, "the minute of 10:15 ended 3 s ago");

    let late_clock = ManualClock::starting_at(utc("2026-07-15T10:15:58Z"));
    let late = LeasedStore::new(exact, on_clock(&late_clock));
    let mut admitted_late = 0;
    for _ in 0..5 {
        admitted_late += usize::from(admitted(&late, request_now(&key, &capacity)).await);
    }
    late.shutdown().await.unwrap();

    assert_eq!(
        admitted_late, 0,
        "the minute of 10:15 already admitted its limit of 5"
    );
}

/// A recheck interval of `Duration::MAX` means "never ask again within the lease's windows". A
/// take that finds the window short must reject the call, not panic on the instant it computes.
#[tokio::test]
async fn longest_recheck_interval_rejects() {
    let database = TestDatabase::new().await;
    let store = leased(&database, LeaseConfig::new().recheck_after(Duration::MAX)).await;
    let key = hot_key();
    let capacity = Capacity {
        per_minute: Some(1),
        ..Capacity::UNLIMITED
    };
    let at = utc("2026-03-02T10:15:30Z");

    assert!(admitted(&store, request(&key, &capacity, 1, at)).await);
    let outcome = tokio::spawn({
        let store = store.clone();
        let key = key.clone();
        async move {
            store
                .consume(request(&key, &capacity, 1, at))
                .await
                .map(|decision| decision.is_admitted())
                .map_err(|error| error.to_string())
        }
    })
    .await
    .map_err(|panic| panic.to_string());
    store.shutdown().await.unwrap();

    assert_eq!(outcome, Ok(Ok(false)), "the second call is rejected");
}

/// A lease given back in the last microsecond of its window, before 2000. tokio-postgres drops the
/// nanoseconds of an instant towards 2000, so unrounded, the give-back would reach the database at
/// the window's end and find the window ended, and the unused tokens would stay charged.
#[tokio::test]
async fn early_instant_gives_back_before_end() {
    let database = TestDatabase::new().await;
    let store = leased(
        &database,
        LeaseConfig::new().min_batch(10).max_batch(10).share(1.0),
    )
    .await;
    let key = hot_key();
    let larger = Capacity {
        per_hour: Some(500),
        ..Capacity::UNLIMITED
    };
    let smaller = Capacity {
        per_hour: Some(400),
        ..Capacity::UNLIMITED
    };
    let at = utc("1999-06-01T12:59:59.9999995Z");

    assert!(admitted(&store, request(&key, &larger, 1, at)).await);
    assert_eq!(store.held(&key), 9);
    // Other limits make the lease stale: its 9 unused tokens go back before a new lease is taken.
    assert!(admitted(&store, request(&key, &smaller, 1, at)).await);
    assert_eq!(store.held(&key), 9);

    assert_eq!(
        counters(&database, &key).await,
        vec![("hour".to_owned(), utc("1999-06-01T12:00:00Z"), 11)],
        "the first lease's unused tokens went back to the hour"
    );
}

/// A statement timeout fails a take that waits for another session's row lock, charges nothing,
/// and leaves the store's session open for the next take: a busy server is spared a new
/// connection.
#[tokio::test]
async fn statement_timeout_keeps_the_session() {
    let database = TestDatabase::new().await;
    let leased = LeasedStore::new(
        database
            .store_with(|config| {
                config
                    .statement_timeout(Duration::from_millis(300))
                    .pool_size(1)
            })
            .await,
        LeaseConfig::new().min_batch(1).max_batch(1),
    );
    let key = hot_key();
    let capacity = Capacity {
        per_minute: Some(100),
        ..Capacity::UNLIMITED
    };
    let at = utc(CLOCK_START);
    let admitted = |decision: Result<Decision, StoreError>| matches!(&decision, Ok(decision) if decision.is_admitted());
    assert!(admitted(
        leased.consume(request(&key, &capacity, 1, at)).await
    ));
    let observer = database.client().await;
    let sessions = database.store_sessions(&observer).await;
    assert_eq!(sessions.len(), 1, "{sessions:?}");

    let mut holder = database.client().await;
    let holding = database.lock_usage_rows(&mut holder).await;
    let blocked = leased.consume(request(&key, &capacity, 1, at)).await;
    holding.rollback().await.unwrap();
    assert!(
        matches!(blocked, Err(StoreError::Timeout(timeout)) if timeout == Duration::from_millis(300)),
        "{blocked:?}"
    );

    assert!(admitted(
        leased.consume(request(&key, &capacity, 1, at)).await
    ));
    assert_eq!(database.store_sessions(&observer).await, sessions);
    leased.shutdown().await.unwrap();
    let minute: i64 = observer
        .query_one(
            "SELECT request_count FROM highway.tool_rate_limit_usage WHERE window_type = 'minute'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(minute, 2);
}

/// Statements that wrap `highway.lease_tool_rate_tokens` in a function of the same arguments that
/// returns `window_type` as VARCHAR instead of TEXT, as a migration that changes a result column
/// would.
const TAKE_RETURNS_VARCHAR: &str = "
ALTER FUNCTION highway.lease_tool_rate_tokens(TEXT, TEXT, TEXT, BIGINT, BIGINT, BIGINT,
    DOUBLE PRECISION, TEXT[], BIGINT[], TIMESTAMPTZ[], TIMESTAMPTZ[], TEXT, TEXT, BOOLEAN)
    RENAME TO lease_tool_rate_tokens_text;
CREATE FUNCTION highway.lease_tool_rate_tokens(
    p_tenant_id TEXT, p_tool_name TEXT, p_scope_key TEXT, p_want BIGINT, p_min BIGINT,
    p_held BIGINT, p_share DOUBLE PRECISION, p_window_types TEXT[], p_limits BIGINT[],
    p_window_starts TIMESTAMPTZ[], p_window_ends TIMESTAMPTZ[], p_timezone TEXT,
    p_week_start TEXT, p_explicit_instant BOOLEAN)
RETURNS TABLE (window_type VARCHAR, window_limit BIGINT, request_count BIGINT,
    window_start TIMESTAMPTZ, window_end TIMESTAMPTZ, granted BIGINT)
LANGUAGE sql VOLATILE AS $$
    SELECT l.window_type::VARCHAR, l.window_limit, l.request_count, l.window_start,
        l.window_end, l.granted
    FROM highway.lease_tool_rate_tokens_text($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,
        $13, $14) AS l
$$;";

/// Statements that wrap `highway.return_tool_rate_tokens` in a function of the same arguments that
/// returns BIGINT instead of INT.
const GIVE_BACK_RETURNS_BIGINT: &str = "
ALTER FUNCTION highway.return_tool_rate_tokens(TEXT, TEXT, TEXT, BIGINT, TEXT[], TIMESTAMPTZ[],
    TIMESTAMPTZ)
    RENAME TO return_tool_rate_tokens_int;
CREATE FUNCTION highway.return_tool_rate_tokens(
    p_tenant_id TEXT, p_tool_name TEXT, p_scope_key TEXT, p_tokens BIGINT,
    p_window_types TEXT[], p_window_starts TIMESTAMPTZ[], p_at TIMESTAMPTZ)
RETURNS BIGINT
LANGUAGE sql VOLATILE AS $$
    SELECT highway.return_tool_rate_tokens_int($1, $2, $3, $4, $5, $6, $7)::BIGINT
$$;";

/// A take whose prepared statement went stale, because the lease function's result columns
/// changed after the store's only connection prepared it, prepares the statement again, and so
/// does every take after it.
#[tokio::test]
async fn take_after_result_type_change() {
    let database = TestDatabase::new().await;
    let leased = LeasedStore::new(
        database.store_with(|config| config.pool_size(1)).await,
        LeaseConfig::new().min_batch(1).max_batch(1),
    );
    let key = hot_key();
    let capacity = Capacity {
        per_minute: Some(100),
        ..Capacity::UNLIMITED
    };
    let at = utc(CLOCK_START);
    assert!(admitted(&leased, request(&key, &capacity, 1, at)).await);

    database
        .client()
        .await
        .batch_execute(TAKE_RETURNS_VARCHAR)
        .await
        .unwrap();
    for call in 2..=3 {
        let decision = leased.consume(request(&key, &capacity, 1, at)).await;
        assert!(
            matches!(&decision, Ok(decision) if decision.is_admitted()),
            "call {call}: {decision:?}"
        );
    }
    leased.shutdown().await.unwrap();
    assert_eq!(counts(&database, &key).await, [3]);
}

/// A give-back whose prepared statement went stale, because the give-back function's result
/// type changed after the store's only connection prepared it, prepares the statement again and
/// returns the tokens.
#[tokio::test]
async fn give_back_after_result_type_change() {
    let database = TestDatabase::new().await;
    let exact = database.store_with(|config| config.pool_size(1)).await;
    let config = || LeaseConfig::new().min_batch(10).max_batch(10).share(1.0);
    let key = hot_key();
    let capacity = Capacity {
        per_minute: Some(100),
        ..Capacity::UNLIMITED
    };
    let at = utc(CLOCK_START);

    let first = LeasedStore::new(exact.clone(), config());
    assert!(admitted(&first, request(&key, &capacity, 1, at)).await);
    assert_eq!(first.shutdown().await.unwrap(), 9);
    assert_eq!(counts(&database, &key).await, [1]);

    database
        .client()
        .await
        .batch_execute(GIVE_BACK_RETURNS_BIGINT)
        .await
        .unwrap();
    let second = LeasedStore::new(exact, config());
    assert!(admitted(&second, request(&key, &capacity, 1, at)).await);
    let given_back = second.shutdown().await;
    assert!(matches!(given_back, Ok(9)), "{given_back:?}");
    assert_eq!(counts(&database, &key).await, [2]);
}

/// Interrupts the store's statements while many callers consume one leased key. Another session
/// locks the key's rows for 20 ms at a time, and the server cancels the waiting takes after a
/// statement timeout of 15 ms, or `pg_cancel_backend` or `pg_terminate_backend` ends the running
/// ones. The calls admitted never exceed the limit, and the window counts at least the calls
/// admitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_takes_keep_the_limit() {
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
        let exact = database
            .store_with(|config| config.statement_timeout(statement_timeout).pool_size(3))
            .await;
        let leased = Arc::new(LeasedStore::new(
            exact,
            LeaseConfig::new().min_batch(1).max_batch(8),
        ));
        let key = hot_key();
        let limit = 200_u64;
        let at = utc(CLOCK_START);
        let capacity = Capacity {
            per_minute: Some(limit),
            ..Capacity::UNLIMITED
        };
        // The first call takes the key's first lease. On a loaded machine its statement may
        // itself outlast a timeout of 15 ms, so it is tried again until it succeeds.
        let mut attempts = 0;
        loop {
            attempts += 1;
            match leased.consume(request(&key, &capacity, 1, at)).await {
                Ok(decision) => {
                    assert!(decision.is_admitted(), "{decision:?}");
                    break;
                }
                Err(error) if attempts < 100 => eprintln!("first call failed: {error}"),
                Err(error) => {
                    panic!("{interrupt}: the first call failed {attempts} times: {error}")
                }
            }
        }

        let interruptions =
            Interruptions::start(&database, database.client().await, interrupt).await;

        let tasks = (0..16).map(|_| {
            let leased = leased.clone();
            let key = key.clone();
            tokio::spawn(async move {
                let mut outcomes = (0_i64, 0_i64, 0_i64);
                for _ in 0..20 {
                    match leased.consume(request(&key, &capacity, 1, at)).await {
                        Ok(decision) if decision.is_admitted() => outcomes.0 += 1,
                        Ok(_) => outcomes.1 += 1,
                        Err(_) => outcomes.2 += 1,
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                outcomes
            })
        });
        let mut admitted_calls = 1;
        let mut failed = 0;
        for task in futures_util::future::join_all(tasks).await {
            let (admitted, _, errors) = task.unwrap();
            admitted_calls += admitted;
            failed += errors;
        }
        let interrupted = interruptions.stop().await;
        let shutdown = leased.shutdown().await;

        let count = counts(&database, &key).await;
        eprintln!(
            "{interrupt}: {interrupted} interrupted, {admitted_calls} admitted, {failed} failed, \
             count {count:?}, shutdown {shutdown:?}"
        );
        assert!(
            admitted_calls <= limit as i64,
            "{interrupt}: {admitted_calls} calls admitted over the limit of {limit}"
        );
        assert!(
            count[0] >= admitted_calls,
            "{interrupt}: the minute counts {}, fewer than the {admitted_calls} calls admitted",
            count[0]
        );
        assert!(
            count[0] <= limit as i64,
            "{interrupt}: the minute counts {}, over the limit of {limit}",
            count[0]
        );
    }
}
