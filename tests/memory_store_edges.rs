//! Edge cases of the memory store's counters. They cover a day window that ends before its
//! instant, limits near `u64::MAX`, instants at the end of chrono's range, a rejected call that
//! moves a slot to another calendar, and windows of two calendars that start together but end
//! apart.
//!
//! The PostgreSQL store keys a usage row by (key, window kind, window start), so two calendars
//! whose windows start together share one count there. Europe/London and UTC both start March 2026
//! at 2026-03-01T00:00Z, but London's March ends an hour earlier, since British Summer Time begins
//! on 29 March. A policy that switches between the two zones in March gets one monthly limit from
//! both stores.

mod common;

use chrono::{DateTime, Duration, Utc, Weekday};
use chrono_tz::Tz;
use highway_ratelimit::report::Capacity;
use highway_ratelimit::store::{ConsumeRequest, Decision, MemoryStore, ScopeKey, TokenStore};
use highway_ratelimit::window::WindowKind;

use common::TestDatabase;

fn key() -> ScopeKey {
    ScopeKey {
        tenant: "acme".into(),
        tool: "tools.email.send".into(),
        scope: "global".into(),
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

fn per_day(limit: u64) -> Capacity {
    Capacity {
        per_day: Some(limit),
        ..Capacity::UNLIMITED
    }
}

/// Returns the first minute of 2009-11-01 UTC whose St. John's day window ends at or before it.
/// St. John's moved its clocks back at 00:01 local time then, so the local date ran backwards.
fn st_johns_repeated_minute() -> DateTime<Utc> {
    let zone = chrono_tz::America::St_Johns;
    let from = utc("2009-11-01T00:00:00Z");
    (0..6 * 60)
        .map(|minute| from + Duration::minutes(minute))
        .find(|at| WindowKind::Day.window_at(*at, zone, Weekday::Mon).end <= *at)
        .expect("St. John's repeats local minutes of 31 October on 2009-11-01")
}

/// Sends four calls in St. John's with a day limit of 1, moving forward in time: one earlier on
/// 31 October, then three in the minutes whose day window is that same 31 October window. Returns
/// how many were admitted.
async fn st_johns_admitted(store: &impl TokenStore) -> usize {
    let key = key();
    let day = per_day(1);
    let zone = chrono_tz::America::St_Johns;
    let repeated = st_johns_repeated_minute();
    let calls = [
        utc("2009-10-31T15:00:00Z"),
        repeated,
        repeated + Duration::minutes(1),
        repeated + Duration::minutes(2),
    ];

    let mut admitted = 0;
    for at in calls {
        let decision = store
            .consume(request(&key, &day, 1, zone, at))
            .await
            .expect("the store decides");
        if decision.is_admitted() {
            admitted += 1;
        }
    }
    admitted
}

#[test]
fn st_johns_repeated_minute_shares_day_start() {
    let zone = chrono_tz::America::St_Johns;
    let earlier = WindowKind::Day.window_at(utc("2009-10-31T15:00:00Z"), zone, Weekday::Mon);
    let repeated = WindowKind::Day.window_at(st_johns_repeated_minute(), zone, Weekday::Mon);

    assert_eq!(earlier, repeated);
}

#[tokio::test]
async fn postgres_counts_st_johns_repeated_minutes() {
    let database = TestDatabase::new().await;
    let store = database.store().await;

    assert_eq!(st_johns_admitted(&store).await, 1);
}

#[tokio::test]
async fn memory_counts_st_johns_repeated_minutes() {
    let store = MemoryStore::new();

    assert_eq!(
        st_johns_admitted(&store).await,
        1,
        "every call is in the St. John's day of 31 October, whose limit is 1"
    );
}

/// With a limit of `u64::MAX`, a counter that is full must reject the next call instead of
/// overflowing.
#[tokio::test]
async fn full_counter_at_u64_max_rejects() {
    let store = MemoryStore::new();
    let key = key();
    let day = per_day(u64::MAX);
    let at = utc("2026-03-02T12:00:00Z");

    let first = store
        .consume(request(&key, &day, u64::MAX, Tz::UTC, at))
        .await
        .unwrap();
    assert!(first.is_admitted(), "{first:?}");

    let second = store
        .consume(request(&key, &day, 1, Tz::UTC, at))
        .await
        .unwrap();
    assert!(
        !second.is_admitted(),
        "the day has used all u64::MAX units: {second:?}"
    );
}

/// Two calls at the last instant chrono can hold, with a minute limit of 1: the second must be
/// rejected, as at any other instant.
#[tokio::test]
async fn last_instant_keeps_its_count() {
    let store = MemoryStore::new();
    let key = key();
    let minute = Capacity {
        per_minute: Some(1),
        ..Capacity::UNLIMITED
    };
    let at = DateTime::<Utc>::MAX_UTC;

    let first = store
        .consume(request(&key, &minute, 1, Tz::UTC, at))
        .await
        .unwrap();
    assert!(first.is_admitted(), "{first:?}");

    let second = store
        .consume(request(&key, &minute, 1, Tz::UTC, at))
        .await
        .unwrap();
    assert!(
        !second.is_admitted(),
        "the minute limit of 1 is used at {at}: {second:?}"
    );
}

/// Sends a UTC call that fills 2 March, optionally a rejected Tokyo call, then a UTC replay at
/// 14:00, before Tokyo's day of 3 March starts. Returns the replay's decision.
async fn replay_after(rejected_tokyo_call: bool) -> Decision {
    let store = MemoryStore::new();
    let key = key();
    let day = per_day(1);
    let day_and_closed_minute = Capacity {
        per_minute: Some(0),
        per_day: Some(1),
        ..Capacity::UNLIMITED
    };

    let first = store
        .consume(request(&key, &day, 1, Tz::UTC, utc("2026-03-02T12:00:00Z")))
        .await
        .unwrap();
    assert!(first.is_admitted(), "{first:?}");

    if rejected_tokyo_call {
        // 16:00Z is 01:00 on 3 March in Tokyo. The minute limit of 0 rejects the call.
        let tokyo = store
            .consume(request(
                &key,
                &day_and_closed_minute,
                1,
                chrono_tz::Asia::Tokyo,
                utc("2026-03-02T16:00:00Z"),
            ))
            .await
            .unwrap();
        assert!(!tokyo.is_admitted(), "{tokyo:?}");
    }

    store
        .consume(request(&key, &day, 1, Tz::UTC, utc("2026-03-02T14:00:00Z")))
        .await
        .unwrap()
}

/// A rejected call changes nothing, so the replay is decided as if it had not been made.
#[tokio::test]
async fn rejected_call_leaves_replay_decision() {
    let without = replay_after(false).await;
    let with = replay_after(true).await;

    assert!(!without.is_admitted(), "UTC's 2 March is full: {without:?}");
    assert!(
        !with.is_admitted(),
        "the rejected Tokyo call counted nothing, so UTC's 2 March is still the newest window \
         with a count, and it is full: {with:?}"
    );
}

/// Sends one call in London, then one in UTC, an hour apart, to `store`, and returns how many
/// of the two it admitted.
async fn admitted_in_march(store: &impl TokenStore) -> usize {
    let key = key();
    let month = Capacity {
        per_month: Some(1),
        ..Capacity::UNLIMITED
    };
    let london = chrono_tz::Europe::London;
    let calls = [
        (london, utc("2026-03-10T12:00:00Z")),
        (Tz::UTC, utc("2026-03-10T13:00:00Z")),
    ];

    let mut admitted = 0;
    for (zone, at) in calls {
        let decision = store
            .consume(request(&key, &month, 1, zone, at))
            .await
            .expect("the store decides");
        if decision.is_admitted() {
            admitted += 1;
        }
    }
    admitted
}

#[test]
fn london_and_utc_march_start_together() {
    let london = WindowKind::Month.window_at(
        utc("2026-03-10T12:00:00Z"),
        chrono_tz::Europe::London,
        Weekday::Mon,
    );
    let utc_month = WindowKind::Month.window_at(utc("2026-03-10T12:00:00Z"), Tz::UTC, Weekday::Mon);

    assert_eq!(london.start, utc_month.start);
    assert_ne!(london.end, utc_month.end);
}

#[tokio::test]
async fn postgres_admits_one_march_call() {
    let database = TestDatabase::new().await;
    let store = database.store().await;

    assert_eq!(admitted_in_march(&store).await, 1);
}

#[tokio::test]
async fn memory_admits_one_march_call() {
    let store = MemoryStore::new();

    assert_eq!(
        admitted_in_march(&store).await,
        1,
        "the PostgreSQL store counts both calls in the March row that starts at 2026-03-01T00:00Z"
    );
}
