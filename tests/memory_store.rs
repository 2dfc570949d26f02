//! The in-process token store: exactness under concurrency, all-or-nothing charging, calendar
//! windows in the request's time zone, and bounded memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Duration, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use highway_ratelimit::report::Capacity;
use highway_ratelimit::store::{
    ConsumeRequest, Decision, MemoryStore, ScopeKey, StoreError, TokenStore, WindowUsage,
};
use highway_ratelimit::window::WindowKind;

fn key(scope: &str) -> ScopeKey {
    ScopeKey {
        tenant: "acme".into(),
        tool: "tools.email.send".into(),
        scope: scope.into(),
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
    zone: Tz,
    at: DateTime<Utc>,
) -> ConsumeRequest<'a> {
    ConsumeRequest {
        key,
        cost,
        capacity,
        timezone: zone,
        week_start: Weekday::Mon,
        at: Some(at),
    }
}

fn remaining(decision: &Decision, kind: WindowKind) -> u64 {
    decision
        .windows()
        .iter()
        .find(|window| window.kind == kind)
        .map(|window| window.remaining)
        .expect("the decision lists every limited window")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_tasks_admit_exactly_the_limit() {
    let store = Arc::new(MemoryStore::new());
    let capacity = Capacity {
        per_minute: Some(1000),
        per_hour: Some(500),
        per_day: Some(300),
        ..Capacity::UNLIMITED
    };
    let at = utc("2026-03-02T10:00:30Z");
    let admitted = Arc::new(AtomicU64::new(0));

    let mut tasks = Vec::new();
    for _ in 0..64 {
        let store = store.clone();
        let admitted = admitted.clone();
        tasks.push(tokio::spawn(async move {
            let key = key("global");
            for _ in 0..50 {
                let decision = store
                    .consume(request(&key, &capacity, 1, Tz::UTC, at))
                    .await
                    .unwrap();
                if decision.is_admitted() {
                    admitted.fetch_add(1, Ordering::Relaxed);
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }

    assert_eq!(admitted.load(Ordering::Relaxed), 300);
    let key = key("global");
    let after = store
        .peek(request(&key, &capacity, 1, Tz::UTC, at))
        .await
        .unwrap();
    assert_eq!(remaining(&after, WindowKind::Day), 0);
    assert_eq!(
        remaining(&after, WindowKind::Hour),
        200,
        "rejected calls charged the hour window"
    );
    assert_eq!(
        remaining(&after, WindowKind::Minute),
        700,
        "rejected calls charged the minute window"
    );
}

#[tokio::test]
async fn rejected_call_changes_no_counter() {
    let store = MemoryStore::new();
    let key = key("global");
    let capacity = Capacity {
        per_minute: Some(5),
        per_day: Some(3),
        ..Capacity::UNLIMITED
    };
    let at = utc("2026-03-02T10:00:00Z");

    for _ in 0..3 {
        assert!(
            store
                .consume(request(&key, &capacity, 1, Tz::UTC, at))
                .await
                .unwrap()
                .is_admitted()
        );
    }
    let rejected = store
        .consume(request(&key, &capacity, 1, Tz::UTC, at))
        .await
        .unwrap();

    let Decision::Rejected {
        window, retry_at, ..
    } = &rejected
    else {
        panic!("expected a rejection, got {rejected:?}");
    };
    assert_eq!(*window, WindowKind::Day);
    assert_eq!(*retry_at, utc("2026-03-03T00:00:00Z"));
    assert_eq!(remaining(&rejected, WindowKind::Minute), 2);
    let peeked = store
        .peek(request(&key, &capacity, 1, Tz::UTC, at))
        .await
        .unwrap();
    assert_eq!(remaining(&peeked, WindowKind::Minute), 2);
    assert_eq!(remaining(&peeked, WindowKind::Day), 0);
}

#[tokio::test]
async fn rejection_names_window_that_resets_last() {
    let store = MemoryStore::new();
    let key = key("global");
    let capacity = Capacity {
        per_minute: Some(1),
        per_hour: Some(1),
        ..Capacity::UNLIMITED
    };
    let at = utc("2026-03-02T10:15:10Z");

    store
        .consume(request(&key, &capacity, 1, Tz::UTC, at))
        .await
        .unwrap();
    let rejected = store
        .consume(request(&key, &capacity, 1, Tz::UTC, at))
        .await
        .unwrap();

    let Decision::Rejected {
        window, retry_at, ..
    } = rejected
    else {
        panic!("expected a rejection");
    };
    assert_eq!(window, WindowKind::Hour);
    assert_eq!(retry_at, utc("2026-03-02T11:00:00Z"));
}

#[tokio::test]
async fn day_starts_at_tokyo_midnight() {
    let store = MemoryStore::new();
    let key = key("global");
    let capacity = Capacity {
        per_day: Some(1),
        ..Capacity::UNLIMITED
    };
    let tokyo = chrono_tz::Asia::Tokyo;
    let before_midnight = tokyo
        .with_ymd_and_hms(2026, 3, 2, 23, 59, 0)
        .unwrap()
        .with_timezone(&Utc);
    let after_midnight = tokyo
        .with_ymd_and_hms(2026, 3, 3, 0, 1, 0)
        .unwrap()
        .with_timezone(&Utc);

    let first = store
        .consume(request(&key, &capacity, 1, tokyo, before_midnight))
        .await
        .unwrap();
    let same_day = store
        .consume(request(
            &key,
            &capacity,
            1,
            tokyo,
            before_midnight + Duration::seconds(30),
        ))
        .await
        .unwrap();
    let next_day = store
        .consume(request(&key, &capacity, 1, tokyo, after_midnight))
        .await
        .unwrap();

    assert!(first.is_admitted());
    assert_eq!(first.windows()[0].reset_at, utc("2026-03-02T15:00:00Z"));
    assert!(!same_day.is_admitted());
    assert!(
        next_day.is_admitted(),
        "00:01 in Tokyo is a new day although it is still 2 March in UTC"
    );
    assert_eq!(next_day.windows()[0].reset_at, utc("2026-03-03T15:00:00Z"));
}

#[tokio::test]
async fn day_lasts_23_hours_when_clocks_spring_forward() {
    let store = MemoryStore::new();
    let key = key("global");
    let capacity = Capacity {
        per_day: Some(1),
        ..Capacity::UNLIMITED
    };
    let new_york = chrono_tz::America::New_York;
    // 2026-03-08 starts at 05:00 UTC (EST) and ends at 04:00 UTC next day (EDT): 23 hours.
    let noon = utc("2026-03-08T17:00:00Z");

    let first = store
        .consume(request(&key, &capacity, 1, new_york, noon))
        .await
        .unwrap();
    let late_evening = store
        .consume(request(
            &key,
            &capacity,
            1,
            new_york,
            utc("2026-03-09T03:59:59Z"),
        ))
        .await
        .unwrap();
    let next_day = store
        .consume(request(
            &key,
            &capacity,
            1,
            new_york,
            utc("2026-03-09T04:00:00Z"),
        ))
        .await
        .unwrap();

    assert!(first.is_admitted());
    assert_eq!(first.windows()[0].reset_at, utc("2026-03-09T04:00:00Z"));
    assert!(!late_evening.is_admitted(), "23:59:59 EDT is still 8 March");
    assert!(next_day.is_admitted());
}

#[tokio::test]
async fn cost_larger_than_remaining_is_rejected_whole() {
    let store = MemoryStore::new();
    let key = key("global");
    let capacity = Capacity {
        per_hour: Some(5),
        ..Capacity::UNLIMITED
    };
    let at = utc("2026-03-02T10:00:00Z");

    let first = store
        .consume(request(&key, &capacity, 3, Tz::UTC, at))
        .await
        .unwrap();
    let too_much = store
        .consume(request(&key, &capacity, 3, Tz::UTC, at))
        .await
        .unwrap();
    let fits = store
        .consume(request(&key, &capacity, 2, Tz::UTC, at))
        .await
        .unwrap();

    assert_eq!(remaining(&first, WindowKind::Hour), 2);
    assert!(!too_much.is_admitted());
    assert_eq!(remaining(&too_much, WindowKind::Hour), 2);
    assert!(fits.is_admitted());
    assert_eq!(remaining(&fits, WindowKind::Hour), 0);
}

#[tokio::test]
async fn cost_larger_than_limit_is_an_error() {
    let store = MemoryStore::new();
    let key = key("global");
    let capacity = Capacity {
        per_minute: Some(100),
        per_hour: Some(10),
        ..Capacity::UNLIMITED
    };
    let at = utc("2026-03-02T10:00:00Z");

    let error = store
        .consume(request(&key, &capacity, 11, Tz::UTC, at))
        .await
        .unwrap_err();

    match error {
        StoreError::CostExceedsLimit {
            window,
            limit,
            cost,
        } => {
            assert_eq!((window, limit, cost), (WindowKind::Hour, 10, 11));
        }
        other => panic!("expected CostExceedsLimit, got {other:?}"),
    }
    assert!(
        store.is_empty(),
        "a call that can never fit created a counter"
    );
}

#[tokio::test]
async fn zero_cost_is_an_error() {
    let store = MemoryStore::new();
    let key = key("global");
    let capacity = Capacity {
        per_minute: Some(1),
        ..Capacity::UNLIMITED
    };

    let error = store
        .consume(request(&key, &capacity, 0, Tz::UTC, Utc::now()))
        .await
        .unwrap_err();

    assert!(matches!(error, StoreError::ZeroCost), "got {error:?}");
}

#[tokio::test]
async fn limit_zero_admits_nothing() {
    let store = MemoryStore::new();
    let key = key("global");
    let capacity = Capacity {
        per_minute: Some(10),
        per_day: Some(0),
        ..Capacity::UNLIMITED
    };
    let at = utc("2026-03-02T10:00:00Z");

    for _ in 0..3 {
        let decision = store
            .consume(request(&key, &capacity, 1, Tz::UTC, at))
            .await
            .unwrap();
        let Decision::Rejected {
            window, retry_at, ..
        } = &decision
        else {
            panic!("a limit of 0 admitted a call: {decision:?}");
        };
        assert_eq!(*window, WindowKind::Day);
        assert_eq!(*retry_at, utc("2026-03-03T00:00:00Z"));
        assert_eq!(remaining(&decision, WindowKind::Minute), 10);
    }
}

#[tokio::test]
async fn unlimited_capacity_admits_without_counting() {
    let store = MemoryStore::new();
    let key = key("global");

    let decision = store
        .consume(request(&key, &Capacity::UNLIMITED, 5, Tz::UTC, Utc::now()))
        .await
        .unwrap();

    assert!(decision.is_admitted());
    assert!(decision.windows().is_empty());
    assert!(store.is_empty());
}

#[tokio::test]
async fn counter_resets_in_next_window() {
    let store = MemoryStore::new();
    let key = key("global");
    let capacity = Capacity {
        per_minute: Some(1),
        ..Capacity::UNLIMITED
    };
    let at = utc("2026-03-02T10:00:59Z");

    assert!(
        store
            .consume(request(&key, &capacity, 1, Tz::UTC, at))
            .await
            .unwrap()
            .is_admitted()
    );
    assert!(
        !store
            .consume(request(&key, &capacity, 1, Tz::UTC, at))
            .await
            .unwrap()
            .is_admitted()
    );
    let next = store
        .consume(request(
            &key,
            &capacity,
            1,
            Tz::UTC,
            at + Duration::seconds(1),
        ))
        .await
        .unwrap();

    assert!(next.is_admitted());
    assert_eq!(next.windows()[0].reset_at, utc("2026-03-02T10:02:00Z"));
}

#[tokio::test]
async fn scope_keys_count_separately() {
    let store = MemoryStore::new();
    let capacity = Capacity {
        per_minute: Some(1),
        ..Capacity::UNLIMITED
    };
    let at = utc("2026-03-02T10:00:00Z");
    let (first, second) = (key("tenant:a"), key("tenant:b"));

    assert!(
        store
            .consume(request(&first, &capacity, 1, Tz::UTC, at))
            .await
            .unwrap()
            .is_admitted()
    );
    assert!(
        store
            .consume(request(&second, &capacity, 1, Tz::UTC, at))
            .await
            .unwrap()
            .is_admitted()
    );
    assert!(
        !store
            .consume(request(&first, &capacity, 1, Tz::UTC, at))
            .await
            .unwrap()
            .is_admitted()
    );
}

#[tokio::test]
async fn peek_charges_nothing() {
    let store = MemoryStore::new();
    let key = key("global");
    let capacity = Capacity {
        per_minute: Some(1),
        ..Capacity::UNLIMITED
    };
    let at = utc("2026-03-02T10:00:00Z");

    for _ in 0..3 {
        assert!(
            store
                .peek(request(&key, &capacity, 1, Tz::UTC, at))
                .await
                .unwrap()
                .is_admitted()
        );
    }

    assert!(store.is_empty());
    assert!(
        store
            .consume(request(&key, &capacity, 1, Tz::UTC, at))
            .await
            .unwrap()
            .is_admitted()
    );
}

#[tokio::test]
async fn memory_stays_bounded_as_keys_expire() {
    let store = MemoryStore::new();
    let capacity = Capacity {
        per_minute: Some(1),
        ..Capacity::UNLIMITED
    };
    let start = utc("2026-03-02T10:00:00Z");

    for i in 0..10_000 {
        let key = key(&format!("workflow:old-{i}"));
        store
            .consume(request(&key, &capacity, 1, Tz::UTC, start))
            .await
            .unwrap();
    }
    assert_eq!(store.len(), 10_000);

    let later = start + Duration::minutes(2);
    for i in 0..10_000 {
        let key = key(&format!("workflow:new-{i}"));
        store
            .consume(request(&key, &capacity, 1, Tz::UTC, later))
            .await
            .unwrap();
    }

    assert_eq!(
        store.len(),
        10_000,
        "expired keys were not dropped as new keys arrived"
    );
}

#[tokio::test]
async fn future_instant_sweeps_no_current_window() {
    let store = MemoryStore::new();
    let capacity = Capacity {
        per_minute: Some(1),
        per_day: Some(1),
        ..Capacity::UNLIMITED
    };
    /// Builds a call that the system clock decides.
    fn now<'a>(key: &'a ScopeKey, capacity: &'a Capacity) -> ConsumeRequest<'a> {
        ConsumeRequest {
            key,
            cost: 1,
            capacity,
            timezone: Tz::UTC,
            week_start: Weekday::Mon,
            at: None,
        }
    }
    let hot = key("hot");
    assert!(
        store
            .consume(now(&hot, &capacity))
            .await
            .unwrap()
            .is_admitted()
    );

    // The store sweeps when the 4,096th new key arrives: that key's call carries an instant two
    // days ahead.
    for i in 0..4_094 {
        let key = key(&format!("workflow:{i}"));
        store.consume(now(&key, &capacity)).await.unwrap();
    }
    let ahead = key("workflow:ahead");
    let mut future = now(&ahead, &capacity);
    future.at = Some(Utc::now() + Duration::days(2));
    store.consume(future).await.unwrap();

    let again = store.consume(now(&hot, &capacity)).await.unwrap();
    assert!(!again.is_admitted(), "{again:?}");
}

#[tokio::test]
async fn calendar_change_keeps_other_calendars_counts() {
    let store = MemoryStore::new();
    let capacity = Capacity {
        per_day: Some(2),
        ..Capacity::UNLIMITED
    };
    let at = utc("2026-03-02T10:15:30Z");
    let key = key("global");

    // The policy's time zone goes back and forth between UTC and Tokyo: each day counts its own
    // calls, whatever the other day took in between.
    let mut admitted = Vec::new();
    for zone in [Tz::UTC, Tz::Asia__Tokyo].repeat(3) {
        let decision = store
            .consume(request(&key, &capacity, 1, zone, at))
            .await
            .unwrap();
        admitted.push((zone, decision.is_admitted()));
    }

    assert_eq!(
        admitted,
        [
            (Tz::UTC, true),
            (Tz::Asia__Tokyo, true),
            (Tz::UTC, true),
            (Tz::Asia__Tokyo, true),
            (Tz::UTC, false),
            (Tz::Asia__Tokyo, false),
        ]
    );
}

fn calendar_request<'a>(
    key: &'a ScopeKey,
    capacity: &'a Capacity,
    cost: u64,
    zone: Tz,
    week_start: Weekday,
    at: DateTime<Utc>,
) -> ConsumeRequest<'a> {
    ConsumeRequest {
        key,
        cost,
        capacity,
        timezone: zone,
        week_start,
        at: Some(at),
    }
}

fn per_day(limit: u64) -> Capacity {
    Capacity {
        per_day: Some(limit),
        ..Capacity::UNLIMITED
    }
}

fn per_minute(limit: u64) -> Capacity {
    Capacity {
        per_minute: Some(limit),
        ..Capacity::UNLIMITED
    }
}

/// A calendar change by a call that does not limit the day: a later day-limited call of the new
/// calendar counts in the new calendar's day, and the calls after it too.
#[tokio::test]
async fn calendar_change_moves_unlimited_windows() {
    let store = MemoryStore::new();
    let key = key("global");
    let day = per_day(10);
    let minute = per_minute(100);
    let mon = Weekday::Mon;

    // Tokyo's day of 2 March runs from 1 March 15:00 to 2 March 15:00 UTC.
    let tokyo = store
        .consume(calendar_request(
            &key,
            &day,
            1,
            Tz::Asia__Tokyo,
            mon,
            utc("2026-03-02T00:30:00Z"),
        ))
        .await
        .unwrap();
    assert!(tokyo.is_admitted(), "{tokyo:?}");

    // The policy moves to UTC; this call limits only the minute.
    let switch = store
        .consume(calendar_request(
            &key,
            &minute,
            1,
            Tz::UTC,
            mon,
            utc("2026-03-02T00:31:00Z"),
        ))
        .await
        .unwrap();
    assert!(switch.is_admitted(), "{switch:?}");

    // 9 units in UTC's day of 2 March, which runs to 3 March 00:00 UTC.
    let morning = store
        .consume(calendar_request(
            &key,
            &day,
            9,
            Tz::UTC,
            mon,
            utc("2026-03-02T01:00:00Z"),
        ))
        .await
        .unwrap();
    assert!(morning.is_admitted(), "{morning:?}");

    // Still UTC's day of 2 March, which has used 9 of its 10 units already.
    let evening = store
        .consume(calendar_request(
            &key,
            &day,
            9,
            Tz::UTC,
            mon,
            utc("2026-03-02T16:00:00Z"),
        ))
        .await
        .unwrap();
    assert!(
        matches!(
            evening,
            Decision::Rejected {
                window: WindowKind::Day,
                ..
            }
        ),
        "UTC's day of 2 March admitted 9 units already, so 9 more pass its limit of 10: {evening:?}"
    );
}

/// A call dated before the newest window is counted in the newest window, so that it cannot use
/// a window's units twice, also when its calendar differs: a change of week start leaves day
/// windows as they are.
#[tokio::test]
async fn replay_in_other_calendar_counts_newest() {
    let store = MemoryStore::new();
    let key = key("global");
    let day = per_day(1);
    let yesterday = utc("2026-03-01T12:00:00Z");
    let today = utc("2026-03-02T12:00:00Z");

    let first = store
        .consume(calendar_request(
            &key,
            &day,
            1,
            Tz::UTC,
            Weekday::Mon,
            yesterday,
        ))
        .await
        .unwrap();
    assert!(first.is_admitted(), "{first:?}");
    let next_day = store
        .consume(calendar_request(
            &key,
            &day,
            1,
            Tz::UTC,
            Weekday::Mon,
            today,
        ))
        .await
        .unwrap();
    assert!(next_day.is_admitted(), "{next_day:?}");

    // Without a calendar change, the replay counts in the newest day and is rejected.
    let replay = store
        .consume(calendar_request(
            &key,
            &day,
            1,
            Tz::UTC,
            Weekday::Mon,
            yesterday,
        ))
        .await
        .unwrap();
    assert!(!replay.is_admitted(), "{replay:?}");

    // The same replay with Sunday as week start: the UTC day of 1 March is the same window,
    // and it admitted its 1 unit already.
    let sunday = store
        .consume(calendar_request(
            &key,
            &day,
            1,
            Tz::UTC,
            Weekday::Sun,
            yesterday,
        ))
        .await
        .unwrap();
    assert!(
        !sunday.is_admitted(),
        "the day of 1 March has no room left in any week start: {sunday:?}"
    );
}

/// The same calendar change as above: the first day-limited call in UTC reports the end of UTC's
/// day and the units left in it.
#[tokio::test]
async fn calendar_change_reports_new_reset() {
    let store = MemoryStore::new();
    let key = key("global");
    let day = per_day(10);
    let minute = per_minute(100);
    let mon = Weekday::Mon;

    store
        .consume(calendar_request(
            &key,
            &day,
            4,
            Tz::Asia__Tokyo,
            mon,
            utc("2026-03-02T00:30:00Z"),
        ))
        .await
        .unwrap();
    store
        .consume(calendar_request(
            &key,
            &minute,
            1,
            Tz::UTC,
            mon,
            utc("2026-03-02T00:31:00Z"),
        ))
        .await
        .unwrap();

    let peeked = store
        .peek(calendar_request(
            &key,
            &day,
            1,
            Tz::UTC,
            mon,
            utc("2026-03-02T01:00:00Z"),
        ))
        .await
        .unwrap();
    let window = peeked.windows()[0];
    assert_eq!(window.reset_at, utc("2026-03-03T00:00:00Z"), "{peeked:?}");
    assert_eq!(
        window.remaining, 10,
        "UTC's day has used nothing: {peeked:?}"
    );
}

/// A key that switches among 22 calendars whose day windows all contain one instant keeps the
/// count of each.
#[tokio::test]
async fn many_calendars_keep_their_counts() {
    let store = MemoryStore::new();
    let key = key("global");
    let day = per_day(1);
    let at = utc("2026-03-02T12:00:00Z");
    // Whole-hour offsets from UTC+11 down to UTC-10: 22 distinct day windows that all
    // contain `at`.
    let zones: Vec<Tz> = (-11..=10)
        .map(|hours: i32| {
            let name = match hours {
                0 => "Etc/GMT".to_owned(),
                h if h < 0 => format!("Etc/GMT{h}"),
                h => format!("Etc/GMT+{h}"),
            };
            name.parse().expect("Etc/GMT zones exist")
        })
        .collect();

    for zone in &zones {
        let decision = store
            .consume(calendar_request(&key, &day, 1, *zone, Weekday::Mon, at))
            .await
            .unwrap();
        assert!(decision.is_admitted(), "{zone}: {decision:?}");
    }

    let mut admitted_again = Vec::new();
    for zone in &zones {
        let decision = store
            .consume(calendar_request(&key, &day, 1, *zone, Weekday::Mon, at))
            .await
            .unwrap();
        if decision.is_admitted() {
            admitted_again.push(zone.name());
        }
    }
    assert!(
        admitted_again.is_empty(),
        "each zone's day admitted its 1 unit already, but these admitted a second: {admitted_again:?}"
    );
}

#[tokio::test]
async fn purge_keeps_keys_with_open_windows() {
    let store = MemoryStore::new();
    let minute_only = Capacity {
        per_minute: Some(5),
        ..Capacity::UNLIMITED
    };
    let with_day = Capacity {
        per_minute: Some(5),
        per_day: Some(50),
        ..Capacity::UNLIMITED
    };
    let at = utc("2026-03-02T10:00:00Z");
    let (short, long) = (key("tenant:short"), key("tenant:long"));

    store
        .consume(request(&short, &minute_only, 1, Tz::UTC, at))
        .await
        .unwrap();
    store
        .consume(request(&long, &with_day, 1, Tz::UTC, at))
        .await
        .unwrap();
    store.purge_expired(at + Duration::minutes(5));

    assert_eq!(store.len(), 1);
    let day = store
        .peek(request(
            &long,
            &with_day,
            1,
            Tz::UTC,
            at + Duration::minutes(5),
        ))
        .await
        .unwrap();
    assert_eq!(remaining(&day, WindowKind::Day), 49);
}

/// Limits of 10 to 50 in the five windows, minute to month.
const FIVE_LIMITS: Capacity = Capacity {
    per_minute: Some(10),
    per_hour: Some(20),
    per_day: Some(30),
    per_week: Some(40),
    per_month: Some(50),
};

/// Returns the state of each of the five windows in Tokyo for a call on Monday 2 March 2026 at
/// 19:00:30 JST (10:00:30 UTC), with limits 10 to 50 and `used` units charged to each.
fn tokyo_five_windows(used: u64) -> Vec<WindowUsage> {
    let ends = [
        (WindowKind::Minute, 10, "2026-03-02T10:01:00Z"),
        (WindowKind::Hour, 20, "2026-03-02T11:00:00Z"),
        (WindowKind::Day, 30, "2026-03-02T15:00:00Z"),
        (WindowKind::Week, 40, "2026-03-08T15:00:00Z"),
        (WindowKind::Month, 50, "2026-03-31T15:00:00Z"),
    ];
    ends.into_iter()
        .map(|(kind, limit, end)| WindowUsage {
            kind,
            limit,
            remaining: limit.saturating_sub(used),
            reset_at: utc(end),
        })
        .collect()
}

#[tokio::test]
async fn five_windows_listed_in_order() {
    let store = MemoryStore::new();
    let key = key("global");
    let capacity = FIVE_LIMITS;
    let tokyo = chrono_tz::Asia::Tokyo;
    let at = utc("2026-03-02T10:00:30Z");

    let peeked_empty = store
        .peek(request(&key, &capacity, 1, tokyo, at))
        .await
        .unwrap();
    let charged = store
        .consume(request(&key, &capacity, 3, tokyo, at))
        .await
        .unwrap();
    let peeked = store
        .peek(request(&key, &capacity, 1, tokyo, at))
        .await
        .unwrap();
    let charged_now = store
        .consume_now(request(&key, &capacity, 2, tokyo, at))
        .expect("the in-process store decides at once")
        .unwrap();

    assert!(peeked_empty.is_admitted());
    assert_eq!(peeked_empty.windows(), tokyo_five_windows(0));
    assert!(charged.is_admitted());
    assert_eq!(charged.windows(), tokyo_five_windows(3));
    assert!(peeked.is_admitted());
    assert_eq!(
        peeked.windows(),
        tokyo_five_windows(3),
        "peek charged a window"
    );
    assert!(charged_now.is_admitted());
    assert_eq!(charged_now.windows(), tokyo_five_windows(5));
}

#[tokio::test]
async fn five_windows_reject_then_reset() {
    let store = MemoryStore::new();
    let key = key("global");
    let capacity = FIVE_LIMITS;
    let tokyo = chrono_tz::Asia::Tokyo;
    let at = utc("2026-03-02T10:00:30Z");

    let first = store
        .consume(request(&key, &capacity, 8, tokyo, at))
        .await
        .unwrap();
    // 3 units are more than the minute's 2 remaining but fit every longer window.
    let rejected = store
        .consume(request(&key, &capacity, 3, tokyo, at))
        .await
        .unwrap();
    let next_minute = store
        .consume(request(
            &key,
            &capacity,
            3,
            tokyo,
            utc("2026-03-02T10:01:00Z"),
        ))
        .await
        .unwrap();

    assert!(first.is_admitted());
    let Decision::Rejected {
        window,
        retry_at,
        windows,
    } = &rejected
    else {
        panic!("expected a rejection, got {rejected:?}");
    };
    assert_eq!(*window, WindowKind::Minute);
    assert_eq!(*retry_at, utc("2026-03-02T10:01:00Z"));
    assert_eq!(
        *windows,
        tokyo_five_windows(8),
        "the rejection charged a window"
    );
    assert!(next_minute.is_admitted(), "{next_minute:?}");
    let mut expected = tokyo_five_windows(11);
    expected[0] = WindowUsage {
        kind: WindowKind::Minute,
        limit: 10,
        remaining: 7,
        reset_at: utc("2026-03-02T10:02:00Z"),
    };
    assert_eq!(next_minute.windows(), expected);
}

/// Two calls read the clock a moment apart and reach the store in the other order: the later one
/// is the 4,096th new key and sweeps at its instant, just after a minute ends. The earlier one,
/// delayed between reading the clock and deciding (by a policy load, say), still counts in that
/// minute, so the sweep must not drop the minute's count.
#[tokio::test]
async fn sweep_keeps_window_of_late_call() {
    let store = MemoryStore::new();
    let capacity = per_minute(1);
    let hot = key("tenant:hot");
    let minute_end = utc("2026-03-02T10:01:00Z");

    let first = store
        .consume(request(
            &hot,
            &capacity,
            1,
            Tz::UTC,
            minute_end - Duration::seconds(2),
        ))
        .await
        .unwrap();
    assert!(first.is_admitted(), "{first:?}");
    for i in 0..4_095 {
        let key = key(&format!("tenant:other-{i}"));
        store
            .consume(request(&key, &capacity, 1, Tz::UTC, minute_end))
            .await
            .unwrap();
    }

    let late = store
        .consume(request(
            &hot,
            &capacity,
            1,
            Tz::UTC,
            minute_end - Duration::seconds(1),
        ))
        .await
        .unwrap();
    assert!(
        !late.is_admitted(),
        "a second call in a minute limited to 1 was admitted: {late:?}"
    );
}

/// A purge from a timer at the end of a minute must not drop that minute's count while a call
/// that read the clock just before is still on its way to the store.
#[tokio::test]
async fn purge_keeps_window_of_late_call() {
    let store = MemoryStore::new();
    let capacity = per_minute(1);
    let hot = key("tenant:hot");
    let minute_end = utc("2026-03-02T10:01:00Z");
    let before_end = minute_end - Duration::seconds(1);

    let first = store
        .consume(request(&hot, &capacity, 1, Tz::UTC, before_end))
        .await
        .unwrap();
    assert!(first.is_admitted(), "{first:?}");
    store.purge_expired(minute_end);
    let late = store
        .consume(request(&hot, &capacity, 1, Tz::UTC, before_end))
        .await
        .unwrap();
    assert!(
        !late.is_admitted(),
        "a second call in a minute limited to 1 was admitted: {late:?}"
    );

    store.purge_expired(minute_end + Duration::minutes(1));
    assert!(
        store.is_empty(),
        "a minute after the window ended, the key is dropped"
    );
}
