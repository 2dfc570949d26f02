//! The PostgreSQL token store against a real server: atomicity, calendar windows, ids, timeouts
//! and cleanup.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use futures_util::future::join_all;
use highway_ratelimit::clock::ManualClock;
use highway_ratelimit::report::Capacity;
use highway_ratelimit::store::postgres::{PostgresConfig, PostgresStore};
use highway_ratelimit::store::{
    ConsumeRequest, Decision, ScopeKey, StoreError, TokenStore, Windows,
};
use highway_ratelimit::window::WindowKind;

use common::TestDatabase;

fn key(tenant: &str, tool: &str, scope: &str) -> ScopeKey {
    ScopeKey {
        tenant: tenant.to_owned(),
        tool: tool.to_owned(),
        scope: scope.to_owned(),
    }
}

fn capacity(minute: Option<u64>, hour: Option<u64>, day: Option<u64>) -> Capacity {
    Capacity {
        per_minute: minute,
        per_hour: hour,
        per_day: day,
        ..Capacity::UNLIMITED
    }
}

fn request<'a>(
    key: &'a ScopeKey,
    capacity: &'a Capacity,
    cost: u64,
    at: Option<DateTime<Utc>>,
) -> ConsumeRequest<'a> {
    ConsumeRequest {
        key,
        cost,
        capacity,
        timezone: Tz::UTC,
        week_start: Weekday::Mon,
        at,
    }
}

fn weekday_name(day: Weekday) -> &'static str {
    match day {
        Weekday::Mon => "monday",
        Weekday::Tue => "tuesday",
        Weekday::Wed => "wednesday",
        Weekday::Thu => "thursday",
        Weekday::Fri => "friday",
        Weekday::Sat => "saturday",
        Weekday::Sun => "sunday",
    }
}

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("test instants are RFC 3339")
        .with_timezone(&Utc)
}

/// Returns the counter of each window kind of `key`, summed over its windows.
async fn counts(database: &TestDatabase, key: &ScopeKey) -> Vec<(String, i64)> {
    let client = database.client().await;
    let rows = client
        .query(
            "SELECT window_type, sum(request_count)::bigint FROM highway.tool_rate_limit_usage
             WHERE tenant_id = $1 AND tool_name = $2 AND scope_key = $3
             GROUP BY window_type
             ORDER BY array_position(ARRAY['minute', 'hour', 'day', 'week', 'month'], window_type)",
            &[&key.tenant, &key.tool, &key.scope],
        )
        .await
        .expect("usage query runs");
    rows.iter().map(|row| (row.get(0), row.get(1))).collect()
}

fn pairs(expected: &[(&str, i64)]) -> Vec<(String, i64)> {
    expected
        .iter()
        .map(|(kind, count)| (kind.to_string(), *count))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_tasks_admit_exactly_the_limit() {
    admit_exactly_the_limit(64).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_unbatched_tasks_admit_exactly_the_limit() {
    admit_exactly_the_limit(1).await;
}

/// Runs 64 tasks of 5 calls against limits of 100, sending up to `batch_size` calls per round trip.
async fn admit_exactly_the_limit(batch_size: usize) {
    let database = TestDatabase::new().await;
    let store = Arc::new(
        database
            .store_with(|config| config.pool_size(32).max_batch_size(batch_size))
            .await,
    );
    let key = Arc::new(key("acme", "tools.email.send", "acme"));
    let capacity = Arc::new(capacity(Some(100), Some(100), Some(100)));
    let at = utc("2026-03-02T10:15:30Z");

    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (store, key, capacity) = (store.clone(), key.clone(), capacity.clone());
        tasks.push(tokio::spawn(async move {
            let mut admitted = 0;
            for _ in 0..5 {
                let decision = store
                    .consume(request(&key, &capacity, 1, Some(at)))
                    .await
                    .expect("consume succeeds");
                admitted += u32::from(decision.is_admitted());
            }
            admitted
        }));
    }
    let mut admitted = 0;
    for task in tasks {
        admitted += task.await.expect("task completes");
    }

    assert_eq!(admitted, 100);
    assert_eq!(
        counts(&database, &key).await,
        pairs(&[("minute", 100), ("hour", 100), ("day", 100)])
    );
}

#[tokio::test]
async fn rejected_call_changes_no_counter() {
    rejection_changes_no_counter(64).await;
}

#[tokio::test]
async fn unbatched_rejected_call_changes_no_counter() {
    rejection_changes_no_counter(1).await;
}

async fn rejection_changes_no_counter(batch_size: usize) {
    let database = TestDatabase::new().await;
    let store = database
        .store_with(|config| config.max_batch_size(batch_size))
        .await;
    let key = key("acme", "tools.http.request", "run-1");
    let capacity = capacity(Some(10), Some(5), Some(100));
    let at = utc("2026-03-02T10:15:30Z");

    for _ in 0..5 {
        assert!(
            store
                .consume(request(&key, &capacity, 1, Some(at)))
                .await
                .unwrap()
                .is_admitted()
        );
    }
    let decision = store
        .consume(request(&key, &capacity, 1, Some(at)))
        .await
        .unwrap();

    let Decision::Rejected {
        window,
        retry_at,
        windows,
    } = decision
    else {
        panic!("the sixth call exceeds the hour limit of 5: {decision:?}");
    };
    assert_eq!(window, WindowKind::Hour);
    assert_eq!(retry_at, utc("2026-03-02T11:00:00Z"));
    let remaining: Vec<_> = windows
        .iter()
        .map(|w| (w.kind, w.limit, w.remaining))
        .collect();
    assert_eq!(
        remaining,
        vec![
            (WindowKind::Minute, 10, 5),
            (WindowKind::Hour, 5, 0),
            (WindowKind::Day, 100, 95)
        ]
    );
    assert_eq!(
        counts(&database, &key).await,
        pairs(&[("minute", 5), ("hour", 5), ("day", 5)])
    );
}

#[tokio::test]
async fn cost_larger_than_remaining_is_rejected() {
    let database = TestDatabase::new().await;
    let store = database.store().await;
    let key = key("acme", "tools.llm.call", "acme");
    let capacity = capacity(Some(10), None, Some(8));
    let at = utc("2026-03-02T10:15:30Z");

    let first = store
        .consume(request(&key, &capacity, 6, Some(at)))
        .await
        .unwrap();
    assert!(first.is_admitted());
    let second = store
        .consume(request(&key, &capacity, 3, Some(at)))
        .await
        .unwrap();

    let Decision::Rejected {
        window, retry_at, ..
    } = second
    else {
        panic!("6 + 3 exceeds the day limit of 8: {second:?}");
    };
    assert_eq!(window, WindowKind::Day);
    assert_eq!(retry_at, utc("2026-03-03T00:00:00Z"));
    assert_eq!(
        counts(&database, &key).await,
        pairs(&[("minute", 6), ("day", 6)])
    );

    let third = store
        .consume(request(&key, &capacity, 2, Some(at)))
        .await
        .unwrap();
    assert!(
        third.is_admitted(),
        "6 + 2 fits the day limit of 8: {third:?}"
    );
}

#[tokio::test]
async fn several_refusing_windows_report_the_last_reset() {
    let database = TestDatabase::new().await;
    let store = database.store().await;
    let key = key("acme", "tools.sms.send", "acme");
    let capacity = capacity(Some(2), Some(2), Some(2));
    let at = utc("2026-03-02T10:15:30Z");

    store
        .consume(request(&key, &capacity, 2, Some(at)))
        .await
        .unwrap();
    let decision = store
        .consume(request(&key, &capacity, 1, Some(at)))
        .await
        .unwrap();

    let Decision::Rejected {
        window, retry_at, ..
    } = decision
    else {
        panic!("every window is full: {decision:?}");
    };
    assert_eq!(window, WindowKind::Day);
    assert_eq!(retry_at, utc("2026-03-03T00:00:00Z"));
}

#[tokio::test]
async fn cost_larger_than_limit_is_an_error() {
    let database = TestDatabase::new().await;
    let store = database.store().await;
    let key = key("acme", "tools.email.send", "acme");
    let capacity = capacity(Some(10), Some(5), None);

    let error = store
        .consume(request(&key, &capacity, 6, None))
        .await
        .unwrap_err();

    assert!(
        matches!(
            error,
            StoreError::CostExceedsLimit {
                window: WindowKind::Hour,
                limit: 5,
                cost: 6
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("never"), "{error}");
    assert_eq!(counts(&database, &key).await, pairs(&[]));
}

#[tokio::test]
async fn zero_cost_is_an_error() {
    let database = TestDatabase::new().await;
    let store = database.store().await;
    let key = key("acme", "tools.email.send", "acme");
    let capacity = capacity(Some(10), None, None);

    let error = store
        .consume(request(&key, &capacity, 0, None))
        .await
        .unwrap_err();

    assert!(matches!(error, StoreError::ZeroCost), "{error:?}");
}

#[tokio::test]
async fn limit_zero_admits_nothing() {
    let database = TestDatabase::new().await;
    let store = database.store().await;
    let key = key("acme", "tools.email.send", "acme");
    let capacity = capacity(Some(10), None, Some(0));
    let at = utc("2026-03-02T10:15:30Z");

    for _ in 0..3 {
        let decision = store
            .consume(request(&key, &capacity, 1, Some(at)))
            .await
            .unwrap();
        let Decision::Rejected {
            window, retry_at, ..
        } = decision
        else {
            panic!("a day limit of 0 admits nothing: {decision:?}");
        };
        assert_eq!(window, WindowKind::Day);
        assert_eq!(retry_at, utc("2026-03-03T00:00:00Z"));
    }
    let charged: i64 = counts(&database, &key)
        .await
        .iter()
        .map(|(_, count)| count)
        .sum();
    assert_eq!(charged, 0);
}

#[tokio::test]
async fn unlimited_capacity_admits_without_windows() {
    let database = TestDatabase::new().await;
    let store = database.store().await;
    let key = key("acme", "tools.email.send", "acme");

    let decision = store
        .consume(request(&key, &Capacity::UNLIMITED, 1, None))
        .await
        .unwrap();

    assert_eq!(
        decision,
        Decision::Admitted {
            windows: Windows::new()
        }
    );
}

#[tokio::test]
async fn peek_charges_nothing() {
    let database = TestDatabase::new().await;
    let store = database.store().await;
    let key = key("acme", "tools.email.send", "acme");
    let capacity = capacity(None, Some(3), None);
    let at = utc("2026-03-02T10:15:30Z");

    store
        .consume(request(&key, &capacity, 2, Some(at)))
        .await
        .unwrap();
    let fits = store
        .peek(request(&key, &capacity, 1, Some(at)))
        .await
        .unwrap();
    let too_much = store
        .peek(request(&key, &capacity, 2, Some(at)))
        .await
        .unwrap();

    assert!(fits.is_admitted());
    assert_eq!(fits.windows()[0].remaining, 1);
    assert!(!too_much.is_admitted());
    assert_eq!(counts(&database, &key).await, pairs(&[("hour", 2)]));
}

#[tokio::test]
async fn tokyo_days_split_at_local_midnight() {
    let database = TestDatabase::new().await;
    let store = database.store().await;
    let key = key("acme", "tools.email.send", "acme");
    let capacity = capacity(None, None, Some(1));
    let tokyo = chrono_tz::Asia::Tokyo;
    let before_midnight = tokyo
        .with_ymd_and_hms(2026, 3, 2, 23, 59, 0)
        .unwrap()
        .with_timezone(&Utc);
    let after_midnight = tokyo
        .with_ymd_and_hms(2026, 3, 3, 0, 1, 0)
        .unwrap()
        .with_timezone(&Utc);
    let tokyo_request = |at| ConsumeRequest {
        timezone: tokyo,
        ..request(&key, &capacity, 1, Some(at))
    };

    let late = store.consume(tokyo_request(before_midnight)).await.unwrap();
    let again = store.consume(tokyo_request(before_midnight)).await.unwrap();
    let early = store.consume(tokyo_request(after_midnight)).await.unwrap();

    assert!(late.is_admitted());
    assert_eq!(late.windows()[0].reset_at, utc("2026-03-02T15:00:00Z"));
    assert!(
        !again.is_admitted(),
        "the day of 2026-03-02 in Tokyo is full: {again:?}"
    );
    assert!(
        early.is_admitted(),
        "00:01 in Tokyo starts a new day: {early:?}"
    );
    assert_eq!(early.windows()[0].reset_at, utc("2026-03-03T15:00:00Z"));
}

#[tokio::test]
async fn daylight_saving_days_last_23_and_25_hours() {
    let database = TestDatabase::new().await;
    let store = database.store().await;
    let key = key("acme", "tools.email.send", "acme");
    let capacity = capacity(None, None, Some(1));
    let cases = [
        // New York springs forward on 2026-03-08: the day runs from 05:00Z to 04:00Z next day.
        (
            chrono_tz::America::New_York,
            "2026-03-08T12:00:00Z",
            "2026-03-09T04:00:00Z",
            23,
        ),
        // Berlin falls back on 2026-10-25: the day runs from 22:00Z to 23:00Z next day.
        (
            chrono_tz::Europe::Berlin,
            "2026-10-25T12:00:00Z",
            "2026-10-25T23:00:00Z",
            25,
        ),
    ];

    for (zone, at, reset, hours) in cases {
        let day_request = ConsumeRequest {
            timezone: zone,
            ..request(&key, &capacity, 1, Some(utc(at)))
        };
        let decision = store.consume(day_request).await.unwrap();

        assert!(decision.is_admitted(), "{zone}: {decision:?}");
        let window = WindowKind::Day.window_at(utc(at), zone, Weekday::Mon);
        assert_eq!(decision.windows()[0].reset_at, utc(reset), "{zone}");
        assert_eq!((window.end - window.start).num_hours(), hours, "{zone}");

        let client = database.client().await;
        let row = client
            .query_one(
                "SELECT window_start, window_end FROM highway.tool_rate_limit_usage
                 WHERE window_type = 'day' AND window_end = $1",
                &[&utc(reset)],
            )
            .await
            .unwrap();
        let (start, end): (DateTime<Utc>, DateTime<Utc>) = (row.get(0), row.get(1));
        assert_eq!((end - start).num_hours(), hours, "{zone}");
    }
}

#[tokio::test]
async fn ids_are_stored_literally() {
    let database = TestDatabase::new().await;
    let store = database.store().await;
    let capacity = capacity(None, None, Some(1));
    let at = utc("2026-03-02T10:15:30Z");
    let keys = [
        key(
            "o'brien",
            "tools.\"email\".send",
            "run'); DROP TABLE highway.tool_rate_limit_usage; --",
        ),
        key("o''brien", "tools.email.send", "a|b,c:d/e\\f"),
        key(
            "東京テナント",
            "outil.envoyer-courriel",
            "ワークフロー 🚀 ünïcødé",
        ),
        key("tab\there", "new\nline", "%_* $1 ${x} {}"),
        key("", " ", "global"),
    ];

    for key in &keys {
        let first = store
            .consume(request(key, &capacity, 1, Some(at)))
            .await
            .unwrap();
        assert!(first.is_admitted(), "{key}");
    }
    for key in &keys {
        let second = store
            .consume(request(key, &capacity, 1, Some(at)))
            .await
            .unwrap();
        assert!(!second.is_admitted(), "each key has its own counter: {key}");
    }

    let client = database.client().await;
    for key in &keys {
        let stored: i64 = client
            .query_one(
                "SELECT request_count FROM highway.tool_rate_limit_usage
                 WHERE tenant_id = $1 AND tool_name = $2 AND scope_key = $3",
                &[&key.tenant, &key.tool, &key.scope],
            )
            .await
            .unwrap_or_else(|error| panic!("{key} is stored as written: {error}"))
            .get(0);
        assert_eq!(stored, 1, "{key}");
    }
    let rows: i64 = client
        .query_one("SELECT count(*) FROM highway.tool_rate_limit_usage", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, keys.len() as i64);
}

#[tokio::test]
async fn nul_in_an_id_is_an_error() {
    let database = TestDatabase::new().await;
    let store = database.store().await;
    let key = key("acme\0", "tools.email.send", "acme");
    let capacity = capacity(None, None, Some(1));

    let error = store
        .consume(request(&key, &capacity, 1, None))
        .await
        .unwrap_err();

    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
}

#[tokio::test]
async fn database_clock_windows_match_rust_windows() {
    let database = TestDatabase::new().await;
    let store = database.store().await;
    let client = database.client().await;
    let every_window = Capacity {
        per_minute: Some(1000),
        per_hour: Some(1000),
        per_day: Some(1000),
        per_week: Some(1000),
        per_month: Some(1000),
    };
    let zones = [
        (Tz::UTC, Weekday::Mon),
        (chrono_tz::Asia::Tokyo, Weekday::Sun),
        (chrono_tz::Asia::Kolkata, Weekday::Mon),
        (chrono_tz::America::New_York, Weekday::Sun),
        (chrono_tz::Australia::Lord_Howe, Weekday::Sat),
    ];

    for (zone, week_start) in zones {
        let key = key("acme", "tools.email.send", zone.name());
        // Retry when a minute boundary passes between the two clock readings.
        for attempt in 0.. {
            let before: DateTime<Utc> = client.query_one("SELECT now()", &[]).await.unwrap().get(0);
            let decision = store
                .consume(ConsumeRequest {
                    timezone: zone,
                    week_start,
                    ..request(&key, &every_window, 1, None)
                })
                .await
                .unwrap();
            let after: DateTime<Utc> = client.query_one("SELECT now()", &[]).await.unwrap().get(0);
            let expected: Vec<_> = WindowKind::ALL
                .iter()
                .map(|kind| (*kind, kind.window_at(before, zone, week_start).end))
                .collect();
            let later: Vec<_> = WindowKind::ALL
                .iter()
                .map(|kind| (*kind, kind.window_at(after, zone, week_start).end))
                .collect();
            if expected != later && attempt < 3 {
                continue;
            }

            let got: Vec<_> = decision
                .windows()
                .iter()
                .map(|w| (w.kind, w.reset_at))
                .collect();
            assert_eq!(got, expected, "{zone}");
            break;
        }
    }
}

/// Compares `highway.window_bounds` (the database clock's windows) with `WindowKind::window_at`
/// around daylight-saving changes, skipped and repeated midnights, and month and year ends.
#[tokio::test]
async fn sql_windows_match_rust_windows() {
    let database = TestDatabase::new().await;
    database.store().await;
    let client = database.client().await;
    let cases: &[(Tz, &str)] = &[
        (chrono_tz::America::New_York, "2026-03-08T06:59:59Z"),
        (chrono_tz::America::New_York, "2026-03-08T07:00:00Z"),
        (chrono_tz::America::New_York, "2026-11-01T05:30:00Z"),
        (chrono_tz::America::New_York, "2026-11-01T06:30:00Z"),
        (chrono_tz::Europe::Berlin, "2026-10-25T00:30:00Z"),
        (chrono_tz::Europe::Berlin, "2026-10-25T01:30:00Z"),
        (chrono_tz::Europe::Berlin, "2026-03-29T01:00:00Z"),
        // Santiago moves its clocks at midnight: 2026-09-06 has no 00:00.
        (chrono_tz::America::Santiago, "2026-09-06T05:00:00Z"),
        (chrono_tz::America::Santiago, "2026-04-05T03:30:00Z"),
        // Havana goes back from 01:00 to 00:00: 2026-11-01 00:30 happens twice.
        (chrono_tz::America::Havana, "2026-11-01T04:30:00Z"),
        (chrono_tz::America::Havana, "2026-11-01T05:30:00Z"),
        (chrono_tz::Asia::Kolkata, "2026-12-31T18:29:59Z"),
        (chrono_tz::Asia::Kathmandu, "2026-05-31T18:14:00Z"),
        (chrono_tz::Australia::Lord_Howe, "2026-04-04T15:15:00Z"),
        (chrono_tz::Pacific::Apia, "2026-02-28T11:00:00Z"),
        (Tz::UTC, "2026-12-31T23:59:59.999Z"),
        (Tz::UTC, "2028-02-29T12:00:00Z"),
    ];
    let week_starts = [Weekday::Mon, Weekday::Sun, Weekday::Wed];

    for (zone, at) in cases {
        let at = utc(at);
        for week_start in week_starts {
            for kind in WindowKind::ALL {
                let row = client
                    .query_one(
                        "SELECT window_start, window_end FROM highway.window_bounds($1, $2, $3, $4)",
                        &[&kind.as_str(), &at, &zone.name(), &weekday_name(week_start)],
                    )
                    .await
                    .unwrap_or_else(|error| panic!("window_bounds for {kind} at {at} in {zone}: {error}"));
                let window = kind.window_at(at, *zone, week_start);

                let sql: (DateTime<Utc>, DateTime<Utc>) = (row.get(0), row.get(1));
                assert_eq!(
                    sql,
                    (window.start, window.end),
                    "{kind} at {at} in {zone}, weeks from {week_start}"
                );
            }
        }
    }
}

/// The consume function takes the caller's window bounds only when every window contains the
/// instant. Bounds of another time, or of a clock that is off, give way to the right windows.
#[tokio::test]
async fn bounds_that_miss_the_instant_are_recomputed() {
    let database = TestDatabase::new().await;
    database.store().await;
    let client = database.client().await;
    let consume = "SELECT window_type, request_count, window_start, window_end, admitted \
         FROM highway.consume_tool_rate_tokens($1, $2, $3, 1, ARRAY['minute', 'hour', 'day'], \
             ARRAY[10, 10, 10]::BIGINT[], $4, $5, $6, 'Asia/Tokyo', 'monday', TRUE)";
    let windows_at = |at: DateTime<Utc>| {
        [WindowKind::Minute, WindowKind::Hour, WindowKind::Day]
            .map(|kind| kind.window_at(at, chrono_tz::Asia::Tokyo, Weekday::Mon))
    };
    let bounds = |at: DateTime<Utc>| {
        let windows = windows_at(at);
        (
            windows.iter().map(|w| w.start).collect::<Vec<_>>(),
            windows.iter().map(|w| w.end).collect::<Vec<_>>(),
        )
    };

    // An explicit instant with the bounds of a day earlier: the windows at the instant count.
    let at = utc("2026-03-02T14:59:30Z");
    let (starts, ends) = bounds(at - chrono::Duration::days(1));
    let rows = client
        .query(
            consume,
            &[&"acme", &"tools.pdf", &"run-1", &Some(at), &starts, &ends],
        )
        .await
        .unwrap();
    // Window type, count, start, end and admitted.
    type Row = (String, i64, DateTime<Utc>, DateTime<Utc>, bool);
    let got: Vec<Row> = rows
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4)))
        .collect();
    let expected: Vec<_> = windows_at(at)
        .iter()
        .zip(["minute", "hour", "day"])
        .map(|(window, kind)| (kind.to_owned(), 1, window.start, window.end, true))
        .collect();
    assert_eq!(got, expected);

    // The database clock with bounds of an hour ago, as from a worker whose clock is late, and
    // with no bounds at all: both charge the windows that contain the database's now().
    let now: DateTime<Utc> = client.query_one("SELECT now()", &[]).await.unwrap().get(0);
    let (starts, ends) = bounds(now - chrono::Duration::hours(1));
    let none: Option<DateTime<Utc>> = None;
    for (starts, ends) in [(Some(starts), Some(ends)), (None, None)] {
        let rows = client
            .query(
                consume,
                &[&"acme", &"tools.pdf", &"run-2", &none, &starts, &ends],
            )
            .await
            .unwrap();
        let bounds_now: Vec<(DateTime<Utc>, DateTime<Utc>)> = client
            .query(
                "SELECT b.window_start, b.window_end \
                 FROM unnest(ARRAY['minute', 'hour', 'day']) WITH ORDINALITY AS w(kind, ord), \
                     highway.window_bounds(w.kind, now(), 'Asia/Tokyo', 'monday') b \
                 ORDER BY w.ord",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        let got: Vec<(DateTime<Utc>, DateTime<Utc>)> =
            rows.iter().map(|row| (row.get(2), row.get(3))).collect();
        // A window may end between the two queries, so each charged window must start no later
        // than the current one and end after the instant read before the call.
        for (charged, current) in got.iter().zip(&bounds_now) {
            assert!(charged.0 <= current.0, "{got:?} against {bounds_now:?}");
            assert!(charged.1 > now, "{got:?} at {now}");
        }
        assert!(rows.iter().all(|row| row.get::<_, bool>(4)));
    }
    assert_eq!(
        counts(&database, &key("acme", "tools.pdf", "run-2")).await,
        pairs(&[("minute", 2), ("hour", 2), ("day", 2)])
    );
}

/// A process whose clock is a day late sends windows that miss the database's now(). The store's
/// statements then charge nothing themselves, and the database charges its own windows, for
/// calls sent alone and for calls sent together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_process_clock_charges_database_windows() {
    let database = TestDatabase::new().await;
    let client = database.client().await;
    let limits = capacity(Some(1000), Some(1000), Some(1000));

    for batch_size in [1, PostgresConfig::DEFAULT_MAX_BATCH_SIZE] {
        let before: DateTime<Utc> = client.query_one("SELECT now()", &[]).await.unwrap().get(0);
        let late = ManualClock::starting_at(before - chrono::Duration::days(1));
        let store = database
            .store_with(|config| config.clock(late).max_batch_size(batch_size))
            .await;
        let key = key("acme", "tools.pdf", &format!("batch-{batch_size}"));

        // Concurrent calls of one key, so that the batched store sends those that queue together.
        let decisions = join_all((0..20).map(|_| store.consume(request(&key, &limits, 1, None))))
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .expect("every call is decided");
        let after: DateTime<Utc> = client.query_one("SELECT now()", &[]).await.unwrap().get(0);

        assert!(decisions.iter().all(Decision::is_admitted), "{decisions:?}");
        for window in decisions.iter().flat_map(Decision::windows) {
            let at_start = window.kind.window_at(before, Tz::UTC, Weekday::Mon).end;
            let at_end = window.kind.window_at(after, Tz::UTC, Weekday::Mon).end;
            assert!(
                window.reset_at == at_start || window.reset_at == at_end,
                "batch size {batch_size}: {window:?} is not a window of the database clock \
                 between {before} and {after}"
            );
        }
        assert_eq!(
            counts(&database, &key).await,
            pairs(&[("minute", 20), ("hour", 20), ("day", 20)]),
            "batch size {batch_size}"
        );
        let ended: i64 = client
            .query_one(
                "SELECT count(*) FROM highway.tool_rate_limit_usage
                 WHERE scope_key = $1 AND window_end <= $2",
                &[&key.scope, &before],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            ended, 0,
            "batch size {batch_size}: rows in the late clock's windows"
        );
    }
}

#[tokio::test]
async fn cleanup_deletes_only_ended_windows() {
    let database = TestDatabase::new().await;
    let store = database.store().await;
    let key = key("acme", "tools.email.send", "acme");
    let capacity = capacity(Some(1000), Some(1000), Some(1000));
    let now = Utc::now();

    // 200 minutes of old traffic: 200 minute rows, 4 hour rows and 2 day rows at most. A cleanup
    // keeps day rows two days past their end, so the traffic lies five days back: its second day
    // then ended at least three days ago, whatever the time of day.
    for minutes in 0..200 {
        let at = now - chrono::Duration::days(5) + chrono::Duration::minutes(minutes);
        store
            .consume(request(&key, &capacity, 1, Some(at)))
            .await
            .unwrap();
    }
    store
        .consume(request(&key, &capacity, 1, None))
        .await
        .unwrap();
    let client = database.client().await;
    let total = |client: tokio_postgres::Client| async move {
        let count: i64 = client
            .query_one("SELECT count(*) FROM highway.tool_rate_limit_usage", &[])
            .await
            .unwrap()
            .get(0);
        (client, count)
    };
    let (client, before) = total(client).await;

    let deleted = store
        .cleanup_expired(Duration::from_secs(3600))
        .await
        .unwrap();

    let (_, after) = total(client).await;
    assert!(before > 200, "{before} rows before cleanup");
    assert_eq!(after, 3, "only the current minute, hour and day remain");
    assert_eq!(deleted, (before - after) as u64);
    let current = store.peek(request(&key, &capacity, 1, None)).await.unwrap();
    assert!(
        current.windows().iter().all(|w| w.remaining == 999),
        "{current:?}"
    );
}

#[tokio::test]
async fn cleanup_keeps_windows_within_statement_timeout() {
    let database = TestDatabase::new().await;
    let store = database
        .store_with(|config| config.statement_timeout(Duration::from_secs(30)))
        .await;
    let client = database.client().await;
    for (scope, ended_ago) in [("recent", "1 second"), ("old", "2 minutes")] {
        client
            .execute(
                "INSERT INTO highway.tool_rate_limit_usage
                     (tenant_id, tool_name, scope_key, window_type, window_start, window_end,
                      request_count)
                 VALUES ('acme', 'tools.email.send', $1, 'minute',
                     now() - $2::text::interval - interval '1 minute', now() - $2::text::interval, 1)",
                &[&scope, &ended_ago],
            )
            .await
            .unwrap();
    }

    // A consume that started before the recent window ended may still be writing its row.
    let deleted = store.cleanup_expired(Duration::ZERO).await.unwrap();

    assert_eq!(deleted, 1);
    let left: Vec<String> = client
        .query("SELECT scope_key FROM highway.tool_rate_limit_usage", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(left, ["recent"]);
}

/// A cleanup whose caller stopped waiting, while its delete waits for another session's row
/// lock, does not leave its connection busy in the pool: the next call, on rows no session locks,
/// gets a connection that replies.
#[tokio::test]
async fn abandoned_cleanup_spares_next_call() {
    let database = TestDatabase::new().await;
    let call_timeout = Duration::from_millis(500);
    let store = database
        .store_with(|config| {
            config
                .statement_timeout(Duration::from_secs(30))
                .call_timeout(call_timeout)
                .pool_size(1)
        })
        .await;
    let mut blocker = database.client().await;
    blocker
        .execute(
            "INSERT INTO highway.tool_rate_limit_usage
                 (tenant_id, tool_name, scope_key, window_type, window_start, window_end,
                  request_count)
             VALUES ('acme', 'tools.email.send', 'old', 'minute',
                 now() - interval '11 minutes', now() - interval '10 minutes', 1)",
            &[],
        )
        .await
        .unwrap();
    let holding = blocker.transaction().await.unwrap();
    holding
        .execute(
            "SELECT 1 FROM highway.tool_rate_limit_usage WHERE scope_key = 'old' FOR UPDATE",
            &[],
        )
        .await
        .unwrap();

    let cleanup = store.cleanup_expired(Duration::ZERO).await;
    assert!(
        matches!(cleanup, Err(StoreError::Timeout(after)) if after == call_timeout),
        "{cleanup:?}"
    );

    let key = key("acme", "tools.email.send", "fresh");
    let capacity = capacity(None, Some(10), None);
    let at = utc("2026-03-02T10:15:30Z");
    let started = Instant::now();
    let decision = store.consume(request(&key, &capacity, 1, Some(at))).await;
    let waited = started.elapsed();
    holding.rollback().await.unwrap();
    assert!(
        matches!(&decision, Ok(decision) if decision.is_admitted()),
        "{decision:?} after {waited:?}"
    );
    assert_eq!(counts(&database, &key).await, pairs(&[("hour", 1)]));
}

/// A statement timeout cancels a call blocked by another session's row lock, charges nothing,
/// and leaves the store's session open for the next call: a busy server is spared a new
/// connection.
#[tokio::test]
async fn statement_timeout_cancels_a_blocked_call() {
    let database = TestDatabase::new().await;
    let store = database
        .store_with(|config| {
            config
                .statement_timeout(Duration::from_millis(300))
                .call_timeout(Duration::from_secs(10))
                .pool_size(1)
        })
        .await;
    let key = key("acme", "tools.email.send", "acme");
    let capacity = capacity(None, Some(10), None);
    let at = utc("2026-03-02T10:15:30Z");
    store
        .consume(request(&key, &capacity, 1, Some(at)))
        .await
        .unwrap();
    let observer = database.client().await;
    let sessions_before = database.store_sessions(&observer).await;
    assert_eq!(sessions_before.len(), 1, "{sessions_before:?}");

    let mut blocker = database.client().await;
    let transaction = database.lock_usage_rows(&mut blocker).await;
    let started = Instant::now();
    let error = store
        .consume(request(&key, &capacity, 1, Some(at)))
        .await
        .unwrap_err();
    let waited = started.elapsed();
    transaction.rollback().await.unwrap();

    assert!(
        matches!(error, StoreError::Timeout(timeout) if timeout == Duration::from_millis(300)),
        "{error:?}"
    );
    assert!(waited < Duration::from_secs(3), "waited {waited:?}");
    assert_eq!(counts(&database, &key).await, pairs(&[("hour", 1)]));

    store
        .consume(request(&key, &capacity, 1, Some(at)))
        .await
        .unwrap();
    assert_eq!(counts(&database, &key).await, pairs(&[("hour", 2)]));
    assert_eq!(database.store_sessions(&observer).await, sessions_before);
}

/// Waits until a statement of this database's other sessions waits for a row lock.
async fn wait_for_lock_waiter(database: &TestDatabase) {
    let client = database.client().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while lock_waiters(&client).await == 0 {
        assert!(
            Instant::now() < deadline,
            "no statement waited for a lock within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Returns the number of other sessions of the database that wait for a lock.
async fn lock_waiters(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()
                 AND wait_event_type = 'Lock'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// Sets `setting` as the database's default, charges a key once, then locks its minute row in
/// another session with `lock` until the store's next call for the key waits for it and `held`
/// more has passed, and commits. Returns the second call's decision and the key's counts after.
async fn call_waiting_for_row(
    setting: &str,
    lock: &str,
    held: Duration,
) -> (Result<Decision, StoreError>, Vec<(String, i64)>) {
    let database = TestDatabase::new().await;
    database
        .client()
        .await
        .batch_execute(&format!("ALTER DATABASE {} SET {setting}", database.name()))
        .await
        .unwrap();
    let store = database
        .store_with(|config| {
            config
                .statement_timeout(Duration::from_secs(20))
                .call_timeout(Duration::from_secs(30))
        })
        .await;
    let key = key("acme", "tools.email.send", "acme");
    let capacity = capacity(Some(10), Some(100), None);
    let at = utc("2026-03-02T10:15:30Z");
    assert!(
        store
            .consume(request(&key, &capacity, 1, Some(at)))
            .await
            .unwrap()
            .is_admitted()
    );

    let mut holder = database.client().await;
    let transaction = holder.transaction().await.unwrap();
    transaction.execute(lock, &[]).await.unwrap();
    let consuming = tokio::spawn({
        let store = store.clone();
        let key = key.clone();
        async move { store.consume(request(&key, &capacity, 1, Some(at))).await }
    });
    database.wait_for_lock_waiters(1).await;
    tokio::time::sleep(held).await;
    transaction.commit().await.unwrap();

    let decision = consuming.await.unwrap();
    (decision, counts(&database, &key).await)
}

/// A database whose default isolation level is repeatable read must still decide a call that
/// waited for another transaction's update of its row. The statements rely on read committed, where
/// the waiting upsert reads the committed count. Under repeatable read it fails with a serialization
/// error instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeatable_read_database_decides_waiting_call() {
    let (decision, counts) = call_waiting_for_row(
        "default_transaction_isolation = 'repeatable read'",
        "UPDATE highway.tool_rate_limit_usage SET request_count = request_count + 1
         WHERE window_type = 'minute'",
        Duration::ZERO,
    )
    .await;

    assert!(
        matches!(&decision, Ok(decision) if decision.is_admitted()),
        "{decision:?}"
    );
    assert_eq!(counts, pairs(&[("minute", 3), ("hour", 2)]));
}

/// A database whose default lock timeout is shorter than the store's statement timeout must not
/// fail a call that waits for a row lock longer than that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_timeout_database_waits_for_row() {
    let (decision, counts) = call_waiting_for_row(
        "lock_timeout = '50ms'",
        "SELECT 1 FROM highway.tool_rate_limit_usage WHERE window_type = 'minute' FOR UPDATE",
        Duration::from_millis(300),
    )
    .await;

    assert!(
        matches!(&decision, Ok(decision) if decision.is_admitted()),
        "{decision:?}"
    );
    assert_eq!(counts, pairs(&[("minute", 2), ("hour", 2)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlocked_fast_statement_is_decided_again() {
    let database = TestDatabase::new().await;
    let store = database
        .store_with(|config| {
            config
                .statement_timeout(Duration::from_secs(20))
                .call_timeout(Duration::from_secs(30))
        })
        .await;
    let key = key("acme", "tools.email.send", "acme");
    let capacity = capacity(Some(10), Some(100), None);
    let at = utc("2026-03-02T10:15:30Z");
    store
        .consume(request(&key, &capacity, 1, Some(at)))
        .await
        .unwrap();

    // Another session locks the hour row. The store's statement locks the minute row and waits for
    // the hour row, and then the other session requests the minute row, which is a deadlock. The
    // store's backend waited first, so its deadlock check runs first and cancels its statement.
    // Where the role is allowed to, the other session puts off its own check so that it cannot be
    // the one cancelled.
    let mut blocker = database.client().await;
    let _ = blocker.batch_execute("SET deadlock_timeout = '60s'").await;
    let transaction = blocker.transaction().await.unwrap();
    let lock_row = "UPDATE highway.tool_rate_limit_usage SET request_count = request_count
                    WHERE scope_key = 'acme' AND window_type = $1";
    transaction.execute(lock_row, &[&"hour"]).await.unwrap();

    let consuming = tokio::spawn({
        let store = store.clone();
        let key = key.clone();
        async move { store.consume(request(&key, &capacity, 1, Some(at))).await }
    });
    wait_for_lock_waiter(&database).await;
    transaction
        .execute(lock_row, &[&"minute"])
        .await
        .expect("the store's statement, not this session, is cancelled by the deadlock");

    // The call is decided again by the consume function, which waits for this session's locks.
    let watcher = database.client().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if consuming.is_finished() {
            let outcome = consuming.await.unwrap();
            panic!("the call did not wait for the locks: {outcome:?}");
        }
        if lock_waiters(&watcher).await > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the call neither finished nor waited for a lock within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    transaction.commit().await.unwrap();
    let decision = consuming.await.unwrap().unwrap();

    assert!(
        matches!(decision, Decision::Admitted { .. }),
        "{decision:?}"
    );
    assert_eq!(
        counts(&database, &key).await,
        pairs(&[("minute", 2), ("hour", 2)])
    );
}

#[tokio::test]
async fn silent_server_times_out() {
    // A server that accepts connections and never replies.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepting = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let store = PostgresStore::new(
        PostgresConfig::new(format!("postgres://postgres@127.0.0.1:{port}/postgres"))
            .call_timeout(Duration::from_millis(400))
            .connect_timeout(Duration::from_secs(5)),
    )
    .unwrap();
    let key = key("acme", "tools.email.send", "acme");
    let capacity = capacity(None, Some(10), None);

    let started = Instant::now();
    let error = store
        .consume(request(&key, &capacity, 1, None))
        .await
        .unwrap_err();
    let waited = started.elapsed();
    accepting.abort();

    assert!(matches!(error, StoreError::Timeout(_)), "{error:?}");
    assert!(waited < Duration::from_secs(2), "waited {waited:?}");
}

#[tokio::test]
async fn refused_connection_is_unavailable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let store = PostgresStore::new(PostgresConfig::new(format!(
        "postgres://postgres@127.0.0.1:{port}/postgres"
    )))
    .unwrap();
    let key = key("acme", "tools.email.send", "acme");
    let capacity = capacity(None, Some(10), None);

    let error = store
        .consume(request(&key, &capacity, 1, None))
        .await
        .unwrap_err();

    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
}

/// A timeout under which every call would time out, or a statement timeout that PostgreSQL reads
/// as no limit, is rejected with the setting, the value and what to use instead.
#[test]
fn zero_timeouts_are_rejected() {
    let config = || PostgresConfig::new("postgres://postgres@127.0.0.1:5432/postgres");
    let cases = [
        (
            config().statement_timeout(Duration::ZERO),
            "statement_timeout of 0ns",
            "use at least 1ms",
        ),
        (
            config().statement_timeout(Duration::from_micros(500)),
            "statement_timeout of 500µs",
            "use at least 1ms",
        ),
        (
            config().call_timeout(Duration::ZERO),
            "call_timeout of 0ns",
            "such as the default 3s",
        ),
        (
            config().connect_timeout(Duration::ZERO),
            "connect_timeout of 0ns",
            "such as the default 2s",
        ),
        (
            config().migration_lock_timeout(Duration::from_micros(500)),
            "migration_lock_timeout of 500µs",
            "use 0 to wait without a limit",
        ),
        (
            config().migration_lock_timeout(PostgresConfig::MAX_STATEMENT_TIMEOUT * 2),
            "migration_lock_timeout of",
            "or 1ms to that maximum",
        ),
    ];
    for (config, setting, advice) in cases {
        let error = PostgresStore::new(config).unwrap_err();

        assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
        let cause = std::error::Error::source(&error)
            .expect("the error has a cause")
            .to_string();
        assert!(cause.contains(setting), "{setting}: {cause}");
        assert!(cause.contains(advice), "{setting}: {cause}");
    }

    let shortest = config().statement_timeout(Duration::from_millis(1));
    assert!(PostgresStore::new(shortest).is_ok());
    let unlimited_lock_wait = config().migration_lock_timeout(Duration::ZERO);
    assert!(PostgresStore::new(unlimited_lock_wait).is_ok());
}

#[tokio::test]
async fn invalid_connection_string_is_an_error() {
    let error = PostgresStore::new(PostgresConfig::new("postgres://host:notaport/db")).unwrap_err();

    let cause = std::error::Error::source(&error).expect("the error has a cause");
    assert!(
        cause
            .to_string()
            .contains("invalid PostgreSQL connection string"),
        "{cause}"
    );
}

/// PostgreSQL refuses every connection whose `statement_timeout` exceeds a 32-bit count of
/// milliseconds, so a longer timeout is rejected with the maximum, and the maximum itself works.
#[tokio::test]
async fn statement_timeout_over_server_max() {
    let database = TestDatabase::new().await;
    let config = || PostgresConfig::new(database.url());
    let thirty_days = Duration::from_secs(30 * 24 * 60 * 60);

    let error = PostgresStore::new(config().statement_timeout(thirty_days)).unwrap_err();

    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    let cause = std::error::Error::source(&error)
        .expect("the error has a cause")
        .to_string();
    assert!(cause.contains("statement_timeout of 2592000s"), "{cause}");
    assert!(cause.contains("exceeds 2147483647ms"), "{cause}");

    let longest = config().statement_timeout(PostgresConfig::MAX_STATEMENT_TIMEOUT);
    let store = PostgresStore::new(longest).unwrap();
    store.migrate().await.unwrap();
    let key = key("acme", "tools.email.send", "acme");
    let capacity = capacity(None, Some(10), None);
    let decision = store
        .consume(request(&key, &capacity, 1, None))
        .await
        .unwrap();
    assert!(
        matches!(decision, Decision::Admitted { .. }),
        "{decision:?}"
    );
}

/// tokio-postgres prints only "invalid connection string" and keeps what is wrong in its source,
/// so the store's error names that reason itself.
#[tokio::test]
async fn invalid_connection_string_names_reason() {
    let cases = [
        (
            "postgres://host:notaport/db",
            "invalid value for option `port`",
        ),
        ("postgres://host/db?colour=blue", "unknown option `colour`"),
    ];
    for (url, reason) in cases {
        let error = PostgresStore::new(PostgresConfig::new(url)).unwrap_err();

        let cause = std::error::Error::source(&error)
            .expect("the error has a cause")
            .to_string();
        assert!(cause.contains(reason), "{url}: {cause}");
        assert!(
            cause.contains("expected postgres://user@host:port/dbname"),
            "{url}: {cause}"
        );
    }
}

#[tokio::test]
async fn concurrent_migrations_apply_once() {
    let database = TestDatabase::new().await;
    let stores: Vec<_> = (0..4)
        .map(|_| PostgresStore::new(PostgresConfig::new(database.url())).unwrap())
        .collect();

    let results = futures_util::future::join_all(stores.iter().map(PostgresStore::migrate)).await;

    let mut applied: Vec<i32> = results
        .into_iter()
        .flat_map(|result| result.unwrap())
        .collect();
    applied.sort();
    assert_eq!(applied, vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    assert_eq!(stores[0].migrate().await.unwrap(), Vec::<i32>::new());
    let client = database.client().await;
    let recorded: i64 = client
        .query_one("SELECT count(*) FROM highway.ratelimit_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(recorded, 12);
}

#[tokio::test]
async fn policy_table_checks_its_values() {
    let database = TestDatabase::new().await;
    database.store().await;
    let client = database.client().await;

    client
        .execute(
            "INSERT INTO highway.tool_rate_limits (tenant_id, tool_name, requests_per_day, timezone)
             VALUES ('default', 'tools.email.send', 500, 'Asia/Tokyo')",
            &[],
        )
        .await
        .expect("a valid policy is stored");
    let bad_scope = client
        .execute(
            "INSERT INTO highway.tool_rate_limits (tenant_id, tool_name, limit_scope) VALUES ('a', 'b', 'planet')",
            &[],
        )
        .await;
    let negative = client
        .execute(
            "INSERT INTO highway.tool_rate_limits (tenant_id, tool_name, requests_per_hour) VALUES ('a', 'c', -1)",
            &[],
        )
        .await;
    let duplicate = client
        .execute(
            "INSERT INTO highway.tool_rate_limits (tenant_id, tool_name) VALUES ('default', 'tools.email.send')",
            &[],
        )
        .await;

    assert!(bad_scope.is_err());
    assert!(negative.is_err());
    assert!(duplicate.is_err());
}

/// A batch whose calls all fit is charged with one upsert; a batch whose total passes a limit is
/// decided call by call, and its first upsert leaves no trace.
#[tokio::test]
async fn batch_total_over_a_limit_decides_each_call() {
    let database = TestDatabase::new().await;
    database.store().await;
    let client = database.client().await;
    // Three calls: two for key k (minute limit 3, hour limit 5), one of cost 2 for key j.
    let batch = "SELECT call_index, window_type, request_count, admitted \
         FROM highway.consume_tool_rate_tokens_batch( \
             ARRAY[1, 1, 2, 2, 3, 3], ARRAY['acme', 'acme', 'acme', 'acme', 'acme', 'acme'], \
             ARRAY['tools.pdf', 'tools.pdf', 'tools.pdf', 'tools.pdf', 'tools.pdf', 'tools.pdf'], \
             ARRAY['k', 'k', 'k', 'k', 'j', 'j'], ARRAY[1, 1, 1, 1, 2, 2]::BIGINT[], \
             ARRAY['minute', 'hour', 'minute', 'hour', 'minute', 'hour'], \
             ARRAY[3, 5, 3, 5, 3, 5]::BIGINT[], \
             array_fill($1::TIMESTAMPTZ, ARRAY[6]), array_fill($2::TIMESTAMPTZ, ARRAY[6]), \
             array_fill('UTC'::TEXT, ARRAY[6]), array_fill('monday'::TEXT, ARRAY[6]))";
    // The hour rows get the minute's bounds too: only the counts matter here.
    let (start, end) = (utc("2026-03-02T10:15:00Z"), utc("2026-03-02T10:16:00Z"));
    async fn run(
        client: &tokio_postgres::Client,
        batch: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Vec<(i32, String, i64, bool)> {
        let rows = client.query(batch, &[&start, &end]).await.unwrap();
        rows.iter()
            .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
            .collect()
    }
    let item = |call: i32, kind: &str, count: i64, admitted: bool| {
        (call, kind.to_owned(), count, admitted)
    };

    // Every row has room for the batch's total: all admitted, each call sees its own count.
    assert_eq!(
        run(&client, batch, start, end).await,
        vec![
            item(1, "minute", 1, true),
            item(1, "hour", 1, true),
            item(2, "minute", 2, true),
            item(2, "hour", 2, true),
            item(3, "minute", 2, true),
            item(3, "hour", 2, true),
        ]
    );
    // k's minute row has room for one more call, j's for none of cost 2.
    assert_eq!(
        run(&client, batch, start, end).await,
        vec![
            item(1, "minute", 3, true),
            item(1, "hour", 3, true),
            item(2, "minute", 3, false),
            item(2, "hour", 3, false),
            item(3, "minute", 2, false),
            item(3, "hour", 2, false),
        ]
    );
    assert_eq!(
        counts(&database, &key("acme", "tools.pdf", "k")).await,
        pairs(&[("minute", 3), ("hour", 3)])
    );
    assert_eq!(
        counts(&database, &key("acme", "tools.pdf", "j")).await,
        pairs(&[("minute", 2), ("hour", 2)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_call_fails_alone_in_a_batch() {
    let database = TestDatabase::new().await;
    let store = Arc::new(
        database
            .store_with(|config| config.max_batches_in_flight(1))
            .await,
    );
    let capacity = Arc::new(capacity(None, None, Some(100)));
    let at = utc("2026-03-02T10:15:30Z");

    let tasks: Vec<_> = (0..32)
        .map(|index| {
            let (store, capacity) = (store.clone(), capacity.clone());
            let tenant = if index == 20 {
                "bad\0tenant".to_owned()
            } else {
                format!("tenant-{index}")
            };
            tokio::spawn(async move {
                let key = key(&tenant, "tools.email.send", "global");
                store.consume(request(&key, &capacity, 1, Some(at))).await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("task completes"));
    }

    for (index, outcome) in outcomes.iter().enumerate() {
        if index == 20 {
            assert!(
                matches!(outcome, Err(StoreError::Unavailable(_))),
                "{outcome:?}"
            );
        } else {
            assert!(
                matches!(outcome, Ok(decision) if decision.is_admitted()),
                "call {index}: {outcome:?}"
            );
        }
    }
    let client = database.client().await;
    let charged: i64 = client
        .query_one(
            "SELECT sum(request_count)::bigint FROM highway.tool_rate_limit_usage",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(charged, 31);
}

#[tokio::test]
async fn migration_outlasts_the_statement_timeout() {
    let database = TestDatabase::new().await;
    let store = PostgresStore::new(
        PostgresConfig::new(database.url()).statement_timeout(Duration::from_millis(200)),
    )
    .unwrap();

    // Another worker holds the migration lock for longer than the statement timeout.
    let holder = database.client().await;
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&0x6877_7261_7465_6c6d_i64])
        .await
        .unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(600)).await;
        holder
            .execute(
                "SELECT pg_advisory_unlock($1)",
                &[&0x6877_7261_7465_6c6d_i64],
            )
            .await
            .unwrap();
    });
    let applied = store.migrate().await;
    release.await.unwrap();

    assert_eq!(
        applied.unwrap(),
        vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    );
    let timeout: String = store
        .pool()
        .get()
        .await
        .unwrap()
        .query_one("SHOW statement_timeout", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        timeout, "200ms",
        "the connection keeps the store's statement timeout"
    );
}

#[tokio::test]
async fn asynchronous_commit_is_opt_in() {
    let database = TestDatabase::new().await;
    let durable = database.store().await;
    let fast = database
        .store_with(|config| config.synchronous_commit(false))
        .await;

    let setting = |store: PostgresStore| async move {
        let client = store.pool().get().await.unwrap();
        let value: String = client
            .query_one("SHOW synchronous_commit", &[])
            .await
            .unwrap()
            .get(0);
        value
    };

    assert_eq!(setting(durable).await, "on");
    assert_eq!(setting(fast).await, "off");
}

/// A database where migrations 1 to 4 ran, holding usage rows, takes migration 5 and keeps its
/// counts: the store goes on counting from them.
#[tokio::test]
async fn fast_path_migration_keeps_earlier_usage() {
    let database = TestDatabase::new().await;
    let client = database.migrate_to(4).await;
    // Two calls charged by the consume function of migration 2.
    let at = utc("2026-03-02T10:15:30Z");
    for _ in 0..2 {
        client
            .query(
                "SELECT * FROM highway.consume_tool_rate_tokens('acme', 'tools.pdf', 'run-1', 1, \
                     ARRAY['minute', 'hour'], ARRAY[3, 10]::BIGINT[], $1)",
                &[&at],
            )
            .await
            .unwrap();
    }

    let store = PostgresStore::new(PostgresConfig::new(database.url())).unwrap();
    assert_eq!(
        store.migrate().await.unwrap(),
        vec![5, 6, 7, 8, 9, 10, 11, 12]
    );

    let key = key("acme", "tools.pdf", "run-1");
    assert_eq!(
        counts(&database, &key).await,
        pairs(&[("minute", 2), ("hour", 2)])
    );
    let capacity = capacity(Some(3), Some(10), None);
    let third = store
        .consume(request(&key, &capacity, 1, Some(at)))
        .await
        .unwrap();
    let fourth = store
        .consume(request(&key, &capacity, 1, Some(at)))
        .await
        .unwrap();
    assert!(third.is_admitted(), "{third:?}");
    assert!(!fourth.is_admitted(), "{fourth:?}");
    assert_eq!(
        counts(&database, &key).await,
        pairs(&[("minute", 3), ("hour", 3)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_key_batches_admit_exact_limits() {
    admit_exactly_each_limit(PostgresConfig::DEFAULT_MAX_BATCHES_IN_FLIGHT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_batch_in_flight_admits_exact_limits() {
    admit_exactly_each_limit(1).await;
}

/// Runs 64 tasks of 10 calls spread over 8 keys, whose hour limit of 30 is below their minute
/// limit of 40. Batches mix keys, and the fast statement charges rows before it finds an hour row
/// over its limit, so its rollback is what keeps the counts exact.
async fn admit_exactly_each_limit(batches_in_flight: usize) {
    let database = TestDatabase::new().await;
    let store = Arc::new(
        database
            .store_with(|config| {
                config
                    .pool_size(16)
                    .max_batches_in_flight(batches_in_flight)
            })
            .await,
    );
    let capacity = Arc::new(capacity(Some(40), Some(30), Some(1000)));
    let at = utc("2026-03-02T10:15:30Z");

    let tasks: Vec<_> = (0..64)
        .map(|task| {
            let (store, capacity) = (store.clone(), capacity.clone());
            tokio::spawn(async move {
                let mut admitted = [0_u32; 8];
                for call in 0..10 {
                    let scope = (task + call) % 8;
                    let key = key("acme", "tools.email.send", &format!("run-{scope}"));
                    let decision = store
                        .consume(request(&key, &capacity, 1, Some(at)))
                        .await
                        .expect("consume succeeds");
                    admitted[scope] += u32::from(decision.is_admitted());
                }
                admitted
            })
        })
        .collect();
    let mut admitted = [0_u32; 8];
    for task in tasks {
        for (total, count) in admitted.iter_mut().zip(task.await.expect("task completes")) {
            *total += count;
        }
    }

    assert_eq!(admitted, [30; 8]);
    for scope in 0..8 {
        assert_eq!(
            counts(
                &database,
                &key("acme", "tools.email.send", &format!("run-{scope}"))
            )
            .await,
            pairs(&[("minute", 30), ("hour", 30), ("day", 30)]),
            "run-{scope}"
        );
    }
}
