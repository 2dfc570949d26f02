//! The PostgreSQL store's guessed windows against a database clock frozen at offset changes, with
//! process clocks from seconds to a day off either way. Every call must be counted in the windows
//! that `WindowKind::window_at` gives at the database clock's instant, with exact counts.

mod common;
mod frozen_clock;

use chrono::{DateTime, Duration, Offset, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use futures_util::future::join_all;
use highway_ratelimit::report::Capacity;
use highway_ratelimit::store::{ConsumeRequest, ScopeKey, TokenStore};
use highway_ratelimit::window::WindowKind;

use frozen_clock::{FrozenDatabase, key, utc};

/// Returns a capacity of `limit` in each window of `kinds`, and no limit in the others.
fn limits(kinds: &[WindowKind], limit: u64) -> Capacity {
    let of = |kind| kinds.contains(&kind).then_some(limit);
    Capacity {
        per_minute: of(WindowKind::Minute),
        per_hour: of(WindowKind::Hour),
        per_day: of(WindowKind::Day),
        per_week: of(WindowKind::Week),
        per_month: of(WindowKind::Month),
    }
}

fn request<'a>(
    key: &'a ScopeKey,
    capacity: &'a Capacity,
    zone: Tz,
    cost: u64,
) -> ConsumeRequest<'a> {
    ConsumeRequest {
        key,
        cost,
        capacity,
        timezone: zone,
        week_start: Weekday::Mon,
        at: None,
    }
}

/// Returns the rows that `count` units charged at `now` in `zone` leave: one per kind in `kinds`.
fn expected_rows(
    kinds: &[WindowKind],
    now: DateTime<Utc>,
    zone: Tz,
    count: i64,
) -> Vec<(String, DateTime<Utc>, i64)> {
    let mut rows: Vec<_> = kinds
        .iter()
        .map(|kind| {
            let window = kind.window_at(now, zone, Weekday::Mon);
            (kind.as_str().to_owned(), window.start, count)
        })
        .collect();
    rows.sort();
    rows
}

fn offset_seconds(zone: Tz, at: DateTime<Utc>) -> i32 {
    zone.offset_from_utc_datetime(&at.naive_utc())
        .fix()
        .local_minus_utc()
}

/// Returns the instants in `[from, to)` at which the UTC offset of `zone` changes.
fn offset_changes(zone: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let mut changes = Vec::new();
    let mut at = from.timestamp();
    while at < to.timestamp() {
        let next = at + 3_600;
        let instant = |seconds| DateTime::from_timestamp(seconds, 0).unwrap();
        if offset_seconds(zone, instant(at)) != offset_seconds(zone, instant(next)) {
            let (mut low, mut high) = (at, next);
            while high - low > 1 {
                let middle = low + (high - low) / 2;
                if offset_seconds(zone, instant(middle)) == offset_seconds(zone, instant(at)) {
                    low = middle;
                } else {
                    high = middle;
                }
            }
            changes.push(instant(high));
        }
        at = next;
    }
    changes
}

/// Checks calls of several shapes, limited in the windows of `kinds`, with the database clock at
/// `now` in `zone` and the process clock `skew` seconds off. Returns a line per difference from
/// `window_at(now)`.
async fn check_calls(
    kinds: &[WindowKind],
    database: &FrozenDatabase,
    zone: Tz,
    now: DateTime<Utc>,
    skew: i64,
    batch_size: usize,
) -> Vec<String> {
    let process_now = now + Duration::seconds(skew);
    let store = database.store(process_now, batch_size).await;
    let label = format!(
        "{zone}, database clock {now}, process clock {process_now}, batch size {batch_size}"
    );
    let mut failures = Vec::new();
    let capacity = limits(kinds, 1_000);

    // Concurrent calls of one key, and of three more keys.
    let single_key = key(&format!("one-{skew}-{batch_size}-{}", kinds.len()));
    let several: Vec<ScopeKey> = (0..3)
        .map(|index| {
            key(&format!(
                "several-{index}-{skew}-{batch_size}-{}",
                kinds.len()
            ))
        })
        .collect();
    let mut calls = Vec::new();
    for _ in 0..6 {
        calls.push(store.consume(request(&single_key, &capacity, zone, 1)));
    }
    for other in &several {
        calls.push(store.consume(request(other, &capacity, zone, 1)));
        calls.push(store.consume(request(other, &capacity, zone, 1)));
    }
    for decision in join_all(calls).await {
        match decision {
            Ok(decision) if decision.is_admitted() => {
                for window in decision.windows() {
                    let expected = window.kind.window_at(now, zone, Weekday::Mon);
                    if window.reset_at != expected.end {
                        failures.push(format!(
                            "{label}: {} reset_at {}, expected {}",
                            window.kind, window.reset_at, expected.end
                        ));
                    }
                }
            }
            other => failures.push(format!("{label}: call not admitted: {other:?}")),
        }
    }
    let rows = database.rows(&single_key).await;
    if rows != expected_rows(kinds, now, zone, 6) {
        failures.push(format!(
            "{label}: rows of one key {rows:?}, expected {:?}",
            expected_rows(kinds, now, zone, 6)
        ));
    }
    for other in &several {
        let rows = database.rows(other).await;
        if rows != expected_rows(kinds, now, zone, 2) {
            failures.push(format!(
                "{label}: rows of {} {rows:?}, expected {:?}",
                other.scope,
                expected_rows(kinds, now, zone, 2)
            ));
        }
    }

    // Rejections: with a limit of 3 in every window, one of three calls of cost 2 fits.
    let small = limits(kinds, 3);
    let rejected_key = key(&format!("reject-{skew}-{batch_size}-{}", kinds.len()));
    let decisions =
        join_all((0..3).map(|_| store.consume(request(&rejected_key, &small, zone, 2)))).await;
    let admitted = decisions
        .iter()
        .filter(|decision| matches!(decision, Ok(decision) if decision.is_admitted()))
        .count();
    if admitted != 1 {
        failures.push(format!(
            "{label}: {admitted} of 3 calls of cost 2 admitted under a limit of 3: {decisions:?}"
        ));
    }
    let rows = database.rows(&rejected_key).await;
    if rows != expected_rows(kinds, now, zone, 2) {
        failures.push(format!(
            "{label}: rows after rejections {rows:?}, expected {:?}",
            expected_rows(kinds, now, zone, 2)
        ));
    }

    // A peek reads the database clock's windows and charges nothing.
    let rows_before_peek = database.rows(&single_key).await;
    match store.peek(request(&single_key, &capacity, zone, 1)).await {
        Ok(peek) => {
            for window in peek.windows() {
                let expected = window.kind.window_at(now, zone, Weekday::Mon);
                if window.reset_at != expected.end || window.remaining != 994 {
                    failures.push(format!(
                        "{label}: peek {window:?}, expected reset_at {} and 994 remaining",
                        expected.end
                    ));
                }
            }
        }
        Err(error) => failures.push(format!("{label}: peek failed: {error}")),
    }
    if database.rows(&single_key).await != rows_before_peek {
        failures.push(format!("{label}: the peek changed the rows"));
    }
    failures
}

/// A policy without a minute limit, whose guessed windows need not share a minute with `now()`.
const HOUR_AND_DAY: [WindowKind; 2] = [WindowKind::Hour, WindowKind::Day];

const SKEWS: [i64; 8] = [-86_400, -3_600, -900, -5, 5, 900, 3_600, 86_400];

async fn check_zone_changes(zone: Tz, from: &str, to: &str) -> Vec<String> {
    let mut failures = Vec::new();
    for change in offset_changes(zone, utc(from), utc(to)) {
        for now in [
            change - Duration::seconds(1),
            change + Duration::minutes(10),
        ] {
            let database = FrozenDatabase::at(now).await;
            for skew in SKEWS {
                for batch_size in [1, 64] {
                    failures.extend(
                        check_calls(&WindowKind::ALL, &database, zone, now, skew, batch_size).await,
                    );
                }
            }
        }
    }
    failures
}

fn assert_no_failures(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn lord_howe_changes_charge_database_windows() {
    assert_no_failures(
        check_zone_changes(
            chrono_tz::Australia::Lord_Howe,
            "2026-01-01T00:00:00Z",
            "2027-01-01T00:00:00Z",
        )
        .await,
    );
}

#[tokio::test]
async fn new_york_changes_charge_database_windows() {
    assert_no_failures(
        check_zone_changes(
            chrono_tz::America::New_York,
            "2026-01-01T00:00:00Z",
            "2027-01-01T00:00:00Z",
        )
        .await,
    );
}

#[tokio::test]
async fn santiago_changes_charge_database_windows() {
    assert_no_failures(
        check_zone_changes(
            chrono_tz::America::Santiago,
            "2026-01-01T00:00:00Z",
            "2027-01-01T00:00:00Z",
        )
        .await,
    );
}

#[tokio::test]
async fn havana_changes_charge_database_windows() {
    assert_no_failures(
        check_zone_changes(
            chrono_tz::America::Havana,
            "2026-01-01T00:00:00Z",
            "2027-01-01T00:00:00Z",
        )
        .await,
    );
}

#[tokio::test]
async fn kathmandu_change_charges_database_windows() {
    assert_no_failures(
        check_zone_changes(
            chrono_tz::Asia::Kathmandu,
            "1985-06-01T00:00:00Z",
            "1986-06-01T00:00:00Z",
        )
        .await,
    );
}

#[tokio::test]
async fn chatham_changes_charge_database_windows() {
    assert_no_failures(
        check_zone_changes(
            chrono_tz::Pacific::Chatham,
            "2026-01-01T00:00:00Z",
            "2027-01-01T00:00:00Z",
        )
        .await,
    );
}

/// Caracas moved from -04:30 to -04:00 at 02:30 local time on 1 May 2016 (07:00 UTC). The hour
/// window of a process clock before the change, [06:30, 07:30) UTC, starts in itself and contains
/// 07:10 UTC, but the hour window at 07:10 UTC is [07:00, 08:00).
#[tokio::test]
async fn caracas_earlier_hour_guess_charges_database_hour() {
    let zone = chrono_tz::America::Caracas;
    let now = utc("2016-05-01T07:10:00Z");
    let database = FrozenDatabase::at(now).await;
    let mut failures = Vec::new();
    for batch_size in [1, 64] {
        failures.extend(check_calls(&HOUR_AND_DAY, &database, zone, now, -900, batch_size).await);
    }
    assert_no_failures(failures);
}

/// Pyongyang moved from +08:30 to +09:00 at 23:30 local time on 4 May 2018 (15:00 UTC): the hour
/// window [14:30, 15:30) UTC before the change contains 15:10 UTC, whose hour window is
/// [15:00, 16:00).
#[tokio::test]
async fn pyongyang_earlier_hour_guess_charges_database_hour() {
    let zone = chrono_tz::Asia::Pyongyang;
    let now = utc("2018-05-04T15:10:00Z");
    let database = FrozenDatabase::at(now).await;
    let mut failures = Vec::new();
    for batch_size in [1, 64] {
        failures
            .extend(check_calls(&[WindowKind::Hour], &database, zone, now, -900, batch_size).await);
    }
    assert_no_failures(failures);
}
