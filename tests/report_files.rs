//! Reports of `.tjp` files under `tests/schedules/`, against windows worked out by hand. The
//! same cases, written as model values, are in `calendar_dst.rs`, `calendar_leaves.rs` and
//! `report_generate.rs`; these tests check that the parsed files mean the same.

use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use chrono_tz::Tz;
use highway_ratelimit::report::{AvailabilityReport, ReportOptions};
use highway_ratelimit::schedule::Schedule;
use highway_ratelimit::window::first_instant_at_or_after;

fn load(name: &str) -> Schedule {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/schedules")
        .join(name);
    Schedule::from_file(&path)
        .unwrap_or_else(|error| panic!("{} does not parse:\n{error}", path.display()))
}

fn utc(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn local(zone: Tz, text: &str) -> DateTime<Utc> {
    first_instant_at_or_after(
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").unwrap(),
        zone,
    )
}

fn report(schedule: &Schedule, from: DateTime<Utc>, days: u32) -> AvailabilityReport {
    let options = ReportOptions {
        resource: None,
        from,
        days,
        generated_at: from,
    };
    AvailabilityReport::generate(schedule, &options)
        .unwrap()
        .report
}

/// Formats the windows as `start end` lines, with the daily and hourly capacity when set.
fn lines(report: &AvailabilityReport) -> Vec<String> {
    report
        .windows
        .iter()
        .map(|window| {
            let mut line = format!(
                "{} {}",
                window.start.format("%Y-%m-%dT%H:%MZ"),
                window.end.format("%Y-%m-%dT%H:%MZ")
            );
            if let Some(per_hour) = window.capacity.per_hour {
                line.push_str(&format!(" {per_hour}/h"));
            }
            if let Some(per_day) = window.capacity.per_day {
                line.push_str(&format!(" {per_day}/day"));
            }
            line
        })
        .collect()
}

fn dates(list: &[&str]) -> Vec<NaiveDate> {
    list.iter().map(|text| text.parse().unwrap()).collect()
}

#[test]
fn email_limits_across_christmas() {
    // Monday to Friday 09:00 - 17:00 UTC; 25 and 26 December are vacations; the time frame
    // ends on 2026-01-01, so the New Year vacation lies outside it.
    let schedule = load("email_limits.tjp");
    let generated = AvailabilityReport::generate(
        &schedule,
        &ReportOptions {
            resource: None,
            from: utc("2025-12-20T00:00:00Z"),
            days: 14,
            generated_at: utc("2025-12-20T00:00:00Z"),
        },
    )
    .unwrap();
    let expected = [22, 23, 24, 29, 30, 31]
        .map(|day| format!("2025-12-{day}T09:00Z 2025-12-{day}T17:00Z 500/day"));
    assert_eq!(lines(&generated.report), expected);
    assert_eq!(
        generated.report.blocked_dates,
        dates(&["2025-12-25", "2025-12-26"])
    );
    assert_eq!(generated.report.default_capacity.per_day, Some(500));
    assert_eq!(generated.warnings.len(), 1, "{:?}", generated.warnings);
}

#[test]
fn new_york_clock_changes() {
    // 01:00 - 04:00 local: two hours on 2025-03-09 (02:00 - 03:00 skipped), four hours on
    // 2025-11-02 (01:00 - 02:00 repeated).
    let schedule = load("dst_new_york.tjp");
    let spring = report(&schedule, utc("2025-03-09T00:00:00Z"), 1);
    assert_eq!(lines(&spring), ["2025-03-09T06:00Z 2025-03-09T08:00Z"]);
    let fall = report(&schedule, utc("2025-11-02T00:00:00Z"), 1);
    assert_eq!(lines(&fall), ["2025-11-02T05:00Z 2025-11-02T09:00Z"]);
}

#[test]
fn santiago_midnight_changes() {
    // Spring forward at Sunday 2025-09-07 00:00 -04: Saturday 22:00 - 24:00 (02:00Z - 04:00Z)
    // and Sunday 01:00 - 02:00 -03 (04:00Z - 05:00Z) touch. Fall back at Sunday 2026-04-05
    // 00:00 -03: Saturday 22:00 - 24:00 lasts three hours, then Sunday 00:00 - 02:00 -04.
    let schedule = load("dst_santiago.tjp");
    let zone = chrono_tz::America::Santiago;
    let spring = report(&schedule, local(zone, "2025-09-06 00:00"), 2);
    assert_eq!(lines(&spring), ["2025-09-07T02:00Z 2025-09-07T05:00Z"]);
    let fall = report(&schedule, local(zone, "2026-04-04 00:00"), 2);
    assert_eq!(lines(&fall), ["2026-04-05T01:00Z 2026-04-05T06:00Z"]);
}

#[test]
fn lord_howe_half_hour_changes() {
    // 01:00 - 03:00 local: 02:00 - 02:30 is skipped on 2025-10-05 (+10:30 to +11), and
    // 01:30 - 02:00 repeats on 2026-04-05 (+11 to +10:30).
    let schedule = load("dst_lord_howe.tjp");
    let zone = chrono_tz::Australia::Lord_Howe;
    let spring = report(&schedule, local(zone, "2025-10-05 00:00"), 1);
    assert_eq!(lines(&spring), ["2025-10-04T14:30Z 2025-10-04T16:00Z"]);
    let fall = report(&schedule, local(zone, "2026-04-05 00:00"), 1);
    assert_eq!(lines(&fall), ["2026-04-04T14:00Z 2026-04-04T16:30Z"]);
}

#[test]
fn vacation_forms() {
    // Berlin, UTC+1: the bare date, the range without its end date, `+2d` and a date with a
    // time (24 hours from Wednesday 12:00).
    let schedule = load("vacations.tjp");
    let got = report(
        &schedule,
        local(chrono_tz::Europe::Berlin, "2025-01-13 00:00"),
        14,
    );
    let expected = [
        "2025-01-16T08:00Z 2025-01-16T16:00Z",
        "2025-01-17T08:00Z 2025-01-17T16:00Z",
        "2025-01-22T08:00Z 2025-01-22T11:00Z",
        "2025-01-23T11:00Z 2025-01-23T16:00Z",
        "2025-01-24T08:00Z 2025-01-24T16:00Z",
    ];
    assert_eq!(lines(&got), expected);
    assert_eq!(
        got.blocked_dates,
        dates(&[
            "2025-01-13",
            "2025-01-14",
            "2025-01-15",
            "2025-01-20",
            "2025-01-21"
        ])
    );
}

#[test]
fn shift_rotation_and_replace() {
    // Early (05:00Z - 13:00Z) the week of the 13th, late (13:00Z - 21:00Z) the week of the
    // 20th, then the cover shift (09:00Z - 11:00Z) which keeps Tuesday the 28th despite the
    // global vacation (`replace`) and loses Thursday the 30th to its own vacation. From
    // 1 February the tool's default hours (08:00Z - 16:00Z) apply again.
    let schedule = load("shift_rotation.tjp");
    let got = report(
        &schedule,
        local(chrono_tz::Europe::Berlin, "2025-01-13 00:00"),
        22,
    );
    let mut expected = Vec::new();
    expected.extend((13..=17).map(|day| format!("2025-01-{day}T05:00Z 2025-01-{day}T13:00Z")));
    expected.extend((20..=24).map(|day| format!("2025-01-{day}T13:00Z 2025-01-{day}T21:00Z")));
    expected
        .extend([27, 28, 29, 31].map(|day| format!("2025-01-{day}T09:00Z 2025-01-{day}T11:00Z")));
    expected.push("2025-02-03T08:00Z 2025-02-03T16:00Z".into());
    assert_eq!(lines(&got), expected);
    assert_eq!(got.blocked_dates, dates(&["2025-01-30"]));
}

#[test]
fn capacity_by_weekday_and_hour() {
    // 08:00 - 18:00 New York (EDT, 12:00Z - 22:00Z); 100, 500 and 200 a day on Monday,
    // Tuesday and Wednesday; 20 an hour from 12:00 to 14:00 local, else 60.
    let schedule = load("capacity.tjp");
    let got = report(
        &schedule,
        local(chrono_tz::America::New_York, "2025-06-02 00:00"),
        3,
    );
    let mut expected = Vec::new();
    for (day, daily) in [(2, 100), (3, 500), (4, 200)] {
        expected.push(format!(
            "2025-06-0{day}T12:00Z 2025-06-0{day}T16:00Z 60/h {daily}/day"
        ));
        expected.push(format!(
            "2025-06-0{day}T16:00Z 2025-06-0{day}T18:00Z 20/h {daily}/day"
        ));
        expected.push(format!(
            "2025-06-0{day}T18:00Z 2025-06-0{day}T22:00Z 60/h {daily}/day"
        ));
    }
    assert_eq!(lines(&got), expected);
}

#[test]
fn resource_zone_from_file() {
    // Tokyo hours 09:00 - 18:00 are 00:00Z - 09:00Z; Monday 5 May (Tokyo) is a vacation.
    let schedule = load("tokyo_resource.tjp");
    let got = report(
        &schedule,
        local(chrono_tz::Asia::Tokyo, "2025-05-05 00:00"),
        2,
    );
    assert_eq!(got.timezone, chrono_tz::Asia::Tokyo);
    assert_eq!(lines(&got), ["2025-05-06T00:00Z 2025-05-06T09:00Z 40/day"]);
    assert_eq!(got.blocked_dates, dates(&["2025-05-05"]));
}
