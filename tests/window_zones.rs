//! Day, week and month windows of every zone in the time zone database, checked against the
//! local calendar itself rather than against the code that computes them.
//!
//! The instants lie around every offset change from 2011 to 2036 (Pacific/Apia's skipped
//! 2011-12-30 included), plus a sparse sweep in between. Each window must contain its instant.
//! Its start must be the first instant whose local date reaches the window's first date, and its
//! end the first instant whose local date reaches the next window's first date. Minute and hour windows must contain the instant and
//! last a minute and an hour.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Offset, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use highway_ratelimit::window::WindowKind;

/// Returns the offset of `zone` at `at`, in seconds east of UTC.
fn offset(zone: Tz, at: i64) -> i64 {
    let instant = DateTime::from_timestamp(at, 0).unwrap();
    zone.offset_from_utc_datetime(&instant.naive_utc())
        .fix()
        .local_minus_utc() as i64
}

fn date(zone: Tz, at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&zone).date_naive()
}

/// Returns the instants in `[from, to)` (seconds since the epoch) at which `zone` changes its
/// offset. Offsets change months apart, so sampling every 12 hours finds each change, and a
/// binary search places it to the second.
fn transitions(zone: Tz, from: i64, to: i64) -> Vec<i64> {
    let mut changes = Vec::new();
    let step = 12 * 3600;
    let mut probe = from;
    let mut off = offset(zone, probe);
    while probe < to {
        let next = probe + step;
        let next_off = offset(zone, next);
        if next_off != off {
            let (mut lo, mut hi) = (probe, next);
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if offset(zone, mid) == off {
                    lo = mid
                } else {
                    hi = mid
                }
            }
            changes.push(hi);
            off = offset(zone, hi);
            probe = hi;
        } else {
            probe = next;
        }
    }
    changes
}

/// Returns a failure unless `instant` is the first instant whose local date is `first` or later.
fn check_boundary(
    zone: Tz,
    instant: DateTime<Utc>,
    first: NaiveDate,
    label: &str,
) -> Option<String> {
    let local_date_at = date(zone, instant);
    let before = date(zone, instant - Duration::seconds(1));
    if local_date_at >= first && before < first {
        None
    } else {
        Some(format!(
            "{label} {instant} in {zone}: local date {local_date_at}, one second before {before}, expected the first instant of {first}"
        ))
    }
}

#[test]
fn every_zone_aligns_windows() {
    let from = Utc
        .with_ymd_and_hms(2011, 1, 1, 0, 0, 0)
        .unwrap()
        .timestamp();
    let to = Utc
        .with_ymd_and_hms(2037, 1, 1, 0, 0, 0)
        .unwrap()
        .timestamp();
    let mut failures = Vec::new();
    for zone in chrono_tz::TZ_VARIANTS {
        let mut instants = Vec::new();
        for change in transitions(zone, from, to) {
            for delta in [
                -1,
                0,
                1,
                -1800,
                1800,
                -12 * 3600,
                12 * 3600,
                -24 * 3600,
                24 * 3600,
            ] {
                instants.push(change + delta);
            }
        }
        let mut sweep = from;
        while sweep < to {
            instants.push(sweep);
            sweep += 29 * 86_400 + 3 * 3600 + 17 * 60;
        }
        for at in instants {
            let at = DateTime::from_timestamp(at, 0).unwrap();
            let local_date = date(zone, at);
            for week_start in [Weekday::Mon, Weekday::Sun, Weekday::Sat] {
                for kind in WindowKind::ALL {
                    let window = kind.window_at(at, zone, week_start);
                    if !window.contains(at) {
                        failures.push(format!("{kind} {window:?} does not contain {at} in {zone}"));
                        continue;
                    }
                    let (first, next) = match kind {
                        WindowKind::Minute => {
                            if window.end - window.start != Duration::minutes(1) {
                                failures.push(format!(
                                    "{kind} {window:?} at {at} in {zone} has the wrong length"
                                ));
                            }
                            continue;
                        }
                        WindowKind::Hour => {
                            if window.end - window.start != Duration::hours(1) {
                                failures.push(format!(
                                    "{kind} {window:?} at {at} in {zone} has the wrong length"
                                ));
                            }
                            continue;
                        }
                        WindowKind::Day => (local_date, local_date.succ_opt().unwrap()),
                        WindowKind::Week => {
                            let back = (7 + local_date.weekday().num_days_from_monday() as i64
                                - week_start.num_days_from_monday() as i64)
                                % 7;
                            let first = local_date - Duration::days(back);
                            (first, first + Duration::days(7))
                        }
                        WindowKind::Month => {
                            let first =
                                NaiveDate::from_ymd_opt(local_date.year(), local_date.month(), 1)
                                    .unwrap();
                            let next = if local_date.month() == 12 {
                                NaiveDate::from_ymd_opt(local_date.year() + 1, 1, 1)
                            } else {
                                NaiveDate::from_ymd_opt(
                                    local_date.year(),
                                    local_date.month() + 1,
                                    1,
                                )
                            }
                            .unwrap();
                            (first, next)
                        }
                    };
                    failures.extend(check_boundary(
                        zone,
                        window.start,
                        first,
                        &format!("{kind} start"),
                    ));
                    failures.extend(check_boundary(
                        zone,
                        window.end,
                        next,
                        &format!("{kind} end"),
                    ));
                }
            }
        }
    }
    failures.sort();
    failures.dedup();
    for failure in failures.iter().take(60) {
        eprintln!("{failure}");
    }
    assert!(failures.is_empty(), "{} failures", failures.len());
}
