//! The PostgreSQL store against a database clock frozen at a chosen instant. A call without an
//! instant must be counted in the windows of that instant in the request's time zone, whatever the
//! process clock reads.
//! The database clock is frozen as `frozen_clock` describes, so that a test can place it in
//! summer or at a daylight-saving change on any day it runs.

mod common;
mod frozen_clock;

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use futures_util::future::join_all;
use highway_ratelimit::clock::ManualClock;
use highway_ratelimit::report::Capacity;
use highway_ratelimit::store::postgres::PostgresConfig;
use highway_ratelimit::store::{ConsumeRequest, Decision, ScopeKey, TokenStore};
use highway_ratelimit::window::WindowKind;

use common::TestDatabase;
use frozen_clock::{FrozenDatabase, key, utc};

fn request<'a>(key: &'a ScopeKey, capacity: &'a Capacity, timezone: Tz) -> ConsumeRequest<'a> {
    ConsumeRequest {
        key,
        cost: 1,
        capacity,
        timezone,
        week_start: Weekday::Mon,
        at: None,
    }
}

/// Returns the `reset_at` of the window of `kind` in `decision`.
fn reset_at(decision: &Decision, kind: WindowKind) -> DateTime<Utc> {
    decision
        .windows()
        .iter()
        .find(|window| window.kind == kind)
        .unwrap_or_else(|| panic!("{decision:?} has a {kind} window"))
        .reset_at
}

/// At 22:30 UTC on 15 July 2026 it is 00:30 on 16 July in the IANA zone CET (UTC+2 in summer), so
/// the day window starts at 22:00 UTC. PostgreSQL 15 reads `AT TIME ZONE 'CET'` as the fixed
/// abbreviation UTC+1, whose day 15 July started at 23:00 UTC the day before.
const CET_SUMMER_NOW: &str = "2026-07-15T22:30:00Z";
const CET_SUMMER_DAY_START: &str = "2026-07-15T22:00:00Z";

/// Sends 30 concurrent calls of one key in `zone` with a day limit of 10. The store's process clock
/// reads the database clock. Checks that 10 calls are admitted and counted in the day window that
/// starts at `day_start`.
async fn check_day_limit_of_queued_calls(zone: Tz, day_start: DateTime<Utc>) {
    let now = utc(CET_SUMMER_NOW);
    let database = FrozenDatabase::at(now).await;
    let store = database
        .store(now, PostgresConfig::DEFAULT_MAX_BATCH_SIZE)
        .await;
    let key = key("queued");
    let capacity = Capacity {
        per_day: Some(10),
        ..Capacity::UNLIMITED
    };

    // The first call goes out alone. The others queue behind it and go out together, and a batch
    // over the limit is decided by the batch function.
    let decisions = join_all((0..30).map(|_| store.consume(request(&key, &capacity, zone))))
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .expect("every call is decided");
    let admitted = decisions
        .iter()
        .filter(|decision| decision.is_admitted())
        .count();

    assert_eq!(admitted, 10, "{zone}: a day limit of 10 admits 10 calls");
    assert_eq!(
        database.rows(&key).await,
        [("day".to_owned(), day_start, 10)],
        "{zone}: every call is counted in the day that contains {now}"
    );
}

/// The control: Europe/Paris has the same rules as CET, and PostgreSQL reads its name as a zone.
#[tokio::test]
async fn paris_day_limit_holds_for_queued_calls() {
    check_day_limit_of_queued_calls(chrono_tz::Europe::Paris, utc(CET_SUMMER_DAY_START)).await;
}

#[tokio::test]
async fn cet_day_limit_holds_for_queued_calls() {
    check_day_limit_of_queued_calls(chrono_tz::CET, utc(CET_SUMMER_DAY_START)).await;
}

#[tokio::test]
async fn cet_late_process_clock_charges_database_day() {
    let now = utc(CET_SUMMER_NOW);
    let database = FrozenDatabase::at(now).await;
    let on_time = database.store(now, 1).await;
    let late = database.store(now - chrono::Duration::days(1), 1).await;
    let key = key("cet-late");
    let capacity = Capacity {
        per_day: Some(100),
        ..Capacity::UNLIMITED
    };
    let expected = WindowKind::Day.window_at(now, chrono_tz::CET, Weekday::Mon);
    assert_eq!(expected.start, utc(CET_SUMMER_DAY_START));

    let first = on_time
        .consume(request(&key, &capacity, chrono_tz::CET))
        .await
        .expect("the call of the on-time store is decided");
    let second = late
        .consume(request(&key, &capacity, chrono_tz::CET))
        .await
        .expect("the call of the late store is decided");

    assert_eq!(
        reset_at(&first, WindowKind::Day),
        expected.end,
        "on-time store"
    );
    assert_eq!(
        reset_at(&second, WindowKind::Day),
        expected.end,
        "late store"
    );
    assert_eq!(
        database.rows(&key).await,
        [("day".to_owned(), expected.start, 2)],
        "both calls are counted in the CET day that contains {now}"
    );
}

/// Compares `highway.window_bounds` with chrono-tz for the zones whose names PostgreSQL 15 also
/// recognizes as fixed-offset abbreviations (`pg_timezone_abbrevs`), at noon UTC on 15 July 2026,
/// when these zones keep summer time.
/// PostgreSQL reads these names as fixed-offset abbreviations in `AT TIME ZONE`. Migration 0006
/// makes the window functions read the zones instead: summer time for the European names, and
/// the offsets before the 1960s for the American ones.
#[tokio::test]
async fn database_bounds_follow_zone_rules() {
    let database = TestDatabase::new().await;
    database.store().await;
    let client = database.client().await;
    let instants = [
        Utc.with_ymd_and_hms(2026, 7, 15, 12, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2026, 1, 15, 12, 0, 0).unwrap(),
        // Honolulu at -10:30, Phoenix in summer time, Panama before its standard time.
        Utc.with_ymd_and_hms(1944, 7, 15, 12, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(1905, 7, 15, 12, 0, 0).unwrap(),
    ];
    let zones = [
        chrono_tz::CET,
        chrono_tz::EET,
        chrono_tz::MET,
        chrono_tz::WET,
        chrono_tz::EST,
        chrono_tz::MST,
        chrono_tz::HST,
    ];

    for zone in zones {
        for at in instants {
            for kind in [WindowKind::Hour, WindowKind::Day, WindowKind::Month] {
                let expected = kind.window_at(at, zone, Weekday::Mon);
                let row = client
                    .query_one(
                        "SELECT window_start, window_end FROM highway.window_bounds($1, $2, $3, 'monday')",
                        &[&kind.as_str(), &at, &zone.name()],
                    )
                    .await
                    .unwrap();
                let bounds: (DateTime<Utc>, DateTime<Utc>) = (row.get(0), row.get(1));

                assert_eq!(
                    bounds,
                    (expected.start, expected.end),
                    "{kind} window of {zone} at {at}"
                );
            }
        }
    }
}

/// Lord Howe Island moves its clocks by 30 minutes, so two hour windows overlap by 30 minutes at
/// each change. Each case: the database clock, a process clock ahead of it, and the database
/// clock's hour window.
const LORD_HOWE_CASES: [(&str, &str, &str, &str); 2] = [
    // 5 April 2026, 02:00 +11:00 goes back to 01:30 +10:30 (15:00 UTC).
    (
        "2026-04-04T14:50:00Z",
        "2026-04-04T15:10:00Z",
        "2026-04-04T14:00:00Z",
        "2026-04-04T15:00:00Z",
    ),
    // 4 October 2026, 02:00 +10:30 goes forward to 02:30 +11:00 (15:30 UTC).
    (
        "2026-10-03T15:20:00Z",
        "2026-10-03T15:35:00Z",
        "2026-10-03T14:30:00Z",
        "2026-10-03T15:30:00Z",
    ),
];

#[tokio::test]
async fn lord_howe_early_clock_charges_database_hour() {
    let zone = chrono_tz::Australia::Lord_Howe;
    let capacity = Capacity {
        per_hour: Some(100),
        per_day: Some(100),
        ..Capacity::UNLIMITED
    };

    for (now, process_now, hour_start, hour_end) in LORD_HOWE_CASES {
        let (now, process_now) = (utc(now), utc(process_now));
        let (hour_start, hour_end) = (utc(hour_start), utc(hour_end));
        assert_eq!(
            WindowKind::Hour.window_at(now, zone, Weekday::Mon).start,
            hour_start,
            "the hour window at {now}"
        );
        let database = FrozenDatabase::at(now).await;

        for batch_size in [1, PostgresConfig::DEFAULT_MAX_BATCH_SIZE] {
            let store = database.store(process_now, batch_size).await;
            let key = key(&format!("lord-howe-{batch_size}"));
            let label = format!(
                "database clock {now}, process clock {process_now}, batch size {batch_size}"
            );

            let decisions = join_all((0..8).map(|_| store.consume(request(&key, &capacity, zone))))
                .await
                .into_iter()
                .collect::<Result<Vec<_>, _>>()
                .expect("every call is decided");
            let peek = store
                .peek(request(&key, &capacity, zone))
                .await
                .expect("the peek is decided");

            for decision in &decisions {
                assert_eq!(
                    reset_at(decision, WindowKind::Hour),
                    hour_end,
                    "{label}: consume"
                );
            }
            assert_eq!(reset_at(&peek, WindowKind::Hour), hour_end, "{label}: peek");
            let hours: Vec<_> = database
                .rows(&key)
                .await
                .into_iter()
                .filter(|(kind, _, _)| kind == "hour")
                .collect();
            assert_eq!(
                hours,
                [("hour".to_owned(), hour_start, 8)],
                "{label}: hour rows"
            );
        }
    }
}

/// A process clock far outside PostgreSQL's or chrono's range is still only a guess: the
/// database clock decides.
#[tokio::test]
async fn far_off_process_clock_falls_back() {
    let database = TestDatabase::new().await;
    let capacity = Capacity {
        per_minute: Some(100),
        per_hour: Some(100),
        per_day: Some(100),
        per_week: Some(100),
        per_month: Some(100),
    };
    let clocks = [
        Utc.with_ymd_and_hms(-4800, 1, 1, 0, 0, 0).unwrap(),
        DateTime::<Utc>::MIN_UTC,
        DateTime::<Utc>::MAX_UTC,
    ];

    let mut failures = Vec::new();
    for (index, process_now) in clocks.into_iter().enumerate() {
        let store = database
            .store_with(|config| config.clock(ManualClock::starting_at(process_now)))
            .await;
        let key = key(&format!("far-off-{index}"));
        // Spawned so that a panic becomes this case's outcome and the other cases still run.
        let outcome = tokio::spawn(async move {
            store
                .consume(request(&key, &capacity, Tz::UTC))
                .await
                .map(|decision| decision.is_admitted())
                .map_err(|error| error.to_string())
        })
        .await
        .map_err(|panic| panic.to_string());
        if outcome != Ok(Ok(true)) {
            failures.push((process_now, outcome));
        }
    }

    assert!(failures.is_empty(), "calls not admitted: {failures:#?}");
}

/// On 29 March 2026 London moves to summer time, so its day runs from 00:00 to 23:00 UTC while
/// the UTC day of the same start runs to midnight. The two days share one usage row. A key that
/// used its day limit in London and then switched to UTC finds that row full until midnight UTC.
/// A cleanup at 23:10 UTC must not delete it: the UTC day is still in force.
#[tokio::test]
async fn cleanup_keeps_day_shared_with_later_zone() {
    let london_evening = utc("2026-03-29T22:00:00Z");
    let database = FrozenDatabase::at(london_evening).await;
    let store = database.store(london_evening, 1).await;
    let key = key("calendar-switch");
    let capacity = Capacity {
        per_day: Some(3),
        ..Capacity::UNLIMITED
    };
    let london = chrono_tz::Europe::London;

    for _ in 0..3 {
        let decision = store
            .consume(request(&key, &capacity, london))
            .await
            .unwrap();
        assert!(decision.is_admitted(), "{decision:?}");
    }
    let utc_late_evening = utc("2026-03-29T23:10:00Z");
    database
        .client
        .execute(
            "UPDATE frozen_clock.instant SET at = $1",
            &[&utc_late_evening],
        )
        .await
        .unwrap();
    let store = database.store(utc_late_evening, 1).await;
    let before_cleanup = store.peek(request(&key, &capacity, Tz::UTC)).await.unwrap();
    assert!(
        !before_cleanup.is_admitted(),
        "the UTC day shares the London day's count: {before_cleanup:?}"
    );

    store.cleanup_expired(Duration::ZERO).await.unwrap();
    let mut admitted = 0;
    for _ in 0..3 {
        let decision = store
            .consume(request(&key, &capacity, Tz::UTC))
            .await
            .unwrap();
        admitted += usize::from(decision.is_admitted());
    }

    assert_eq!(
        admitted, 0,
        "the UTC day of 29 March already admitted its limit of 3"
    );
}

/// On 29 March 2026 London's day ends at 23:00 UTC, and the UTC day that starts with it at
/// midnight. At 23:00:30 UTC by the database clock a London call belongs to London's 30 March.
/// A process clock a minute late guesses the London day of 29 March, whose usage row is also the
/// UTC day's. A batch that carries that guess with a UTC call of the same key must not take the
/// UTC day's later end as proof that the London guess contains the database clock's `now()`.
#[tokio::test]
async fn shared_day_row_checks_each_call_end() {
    let now = utc("2026-03-29T23:00:30Z");
    let process_now = utc("2026-03-29T22:59:30Z");
    let london = chrono_tz::Europe::London;
    let london_day = WindowKind::Day.window_at(now, london, Weekday::Mon);
    assert_eq!(london_day.start, utc("2026-03-29T23:00:00Z"));
    let database = FrozenDatabase::at(now).await;
    let london_limit = Capacity {
        per_day: Some(2),
        ..Capacity::UNLIMITED
    };
    let utc_limit = Capacity {
        per_day: Some(10),
        ..Capacity::UNLIMITED
    };
    // A call of the key that charges no day row. While it runs, the key is busy and the next calls queue.
    let month_only = Capacity {
        per_month: Some(10),
        ..Capacity::UNLIMITED
    };

    // Batches of one key take the single-call statement, and batches of several keys the batch
    // statement.
    for other_key in [false, true] {
        let store = database
            .store(process_now, PostgresConfig::DEFAULT_MAX_BATCH_SIZE)
            .await;
        let key = key(&format!("london-and-utc-{other_key}"));
        let other = frozen_clock::key(&format!("other-{other_key}"));

        // London's 30 March admits its two calls.
        for _ in 0..2 {
            let decision = store
                .consume(request(&key, &london_limit, london))
                .await
                .unwrap();
            assert!(decision.is_admitted(), "{decision:?}");
        }

        // The first call goes out alone and keeps the key busy, so the next ones go out together.
        let mut calls = vec![
            store.consume(request(&key, &month_only, Tz::UTC)),
            store.consume(request(&key, &london_limit, london)),
            store.consume(request(&key, &utc_limit, Tz::UTC)),
        ];
        if other_key {
            calls.push(store.consume(request(&other, &utc_limit, Tz::UTC)));
        }
        let decisions = join_all(calls).await;
        let london_call = decisions[1].as_ref().expect("the London call is decided");

        assert!(
            !london_call.is_admitted(),
            "other key in batch {other_key}: London's day of 30 March already admitted its limit \
             of 2, rows {:?}",
            database.rows(&key).await
        );
        assert_eq!(
            reset_at(london_call, WindowKind::Day),
            london_day.end,
            "other key in batch {other_key}"
        );
    }
}
