//! Reports of `.tjp` files under `tests/schedules/`, against windows worked out by hand. The
//! same cases, written as model values, are in `calendar_dst.rs`, `calendar_leaves.rs` and
//! `report_generate.rs`; these tests check that the parsed files mean the same.

mod calendar_support;

use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use chrono_tz::Tz;
use highway_ratelimit::report::{AvailabilityReport, ReportOptions};
use highway_ratelimit::schedule::Schedule;
use highway_ratelimit::window::first_instant_at_or_after;

fn load(name: &str) -> Schedule {
    load_path(&format!("tests/schedules/{name}"))
}

/// Parses the file at `path`, relative to the repository.
fn load_path(path: &str) -> Schedule {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path);
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

fn report_of(
    schedule: &Schedule,
    resource: &str,
    from: DateTime<Utc>,
    days: u32,
) -> AvailabilityReport {
    let options = ReportOptions {
        resource: Some(resource.to_owned()),
        from,
        days,
        generated_at: from,
    };
    AvailabilityReport::generate(schedule, &options)
        .unwrap()
        .report
}

#[test]
fn seed_example_file_matches_model() {
    // The example shipped with the crate, parsed, gives the same report as the model-built
    // schedule of `report_generate.rs` over the same 14 days across Christmas and the end of
    // the time frame, warnings included.
    let parsed = load_path("examples/schedules/seed_email.tjp");
    let model = calendar_support::seed_email();
    let from = utc("2025-12-20T00:00:00Z");
    let options = ReportOptions {
        resource: None,
        from,
        days: 14,
        generated_at: from,
    };
    let from_file = AvailabilityReport::generate(&parsed, &options).unwrap();
    let from_model = AvailabilityReport::generate(&model, &options).unwrap();
    assert_eq!(from_file.report, from_model.report);
    assert_eq!(from_file.warnings, from_model.warnings);
    assert_eq!(
        from_file.report.blocked_dates,
        dates(&["2025-12-25", "2025-12-26"])
    );
    assert_eq!(from_file.report.windows.len(), 6);
}

#[test]
fn taskjuggler_shift_inheritance() {
    // `Syntax/Correct/Shift.tjp`, Denver (UTC-7 in January 2000). Shift s1 sets Monday
    // 10:00 - 12:00, 13:00 - 15:00, Tuesday 09:00 - 14:00 and Wednesday off; Thursday and
    // Friday keep the project's 09:00 - 17:00. The nested s2 sets only Monday 10:00 - 17:00
    // and inherits the rest from s1. r1 has s1 from 1 to 10 January and s2 from 11 to 20
    // January, and its own 09:00 - 17:00 on Monday 10 January, between the two.
    let schedule = load_path("tests/corpus/Syntax/Correct/Shift.tjp");
    let got = report_of(
        &schedule,
        "r1",
        local(chrono_tz::America::Denver, "2000-01-03 00:00"),
        15,
    );
    let expected = [
        "2000-01-03T17:00Z 2000-01-03T19:00Z",
        "2000-01-03T20:00Z 2000-01-03T22:00Z",
        "2000-01-04T16:00Z 2000-01-04T21:00Z",
        "2000-01-06T16:00Z 2000-01-07T00:00Z",
        "2000-01-07T16:00Z 2000-01-08T00:00Z",
        "2000-01-10T16:00Z 2000-01-11T00:00Z",
        "2000-01-11T16:00Z 2000-01-11T21:00Z",
        "2000-01-13T16:00Z 2000-01-14T00:00Z",
        "2000-01-14T16:00Z 2000-01-15T00:00Z",
        "2000-01-17T17:00Z 2000-01-18T00:00Z",
    ];
    assert_eq!(lines(&got), expected);
    assert!(got.blocked_dates.is_empty());
}

#[test]
fn taskjuggler_vacation_examples() {
    // `Syntax/Correct/Vacation.tjp`, Denver office hours 09:00 - 17:00: 15:00Z - 23:00Z in
    // MDT, 16:00Z - 24:00Z in MST.
    let schedule = load_path("tests/corpus/Syntax/Correct/Vacation.tjp");
    let denver = chrono_tz::America::Denver;

    // tux3's own vacation on Wednesday 10 August.
    let tux3 = report_of(&schedule, "tux3", local(denver, "2005-08-08 00:00"), 5);
    assert_eq!(tux3.blocked_dates, dates(&["2005-08-10"]));
    assert_eq!(tux3.windows.len(), 4);

    // The team's `vacation 2005-10-07 +2d` covers Friday and Saturday, and tux2 inherits it.
    let tux2 = report_of(&schedule, "tux2", local(denver, "2005-10-03 00:00"), 7);
    assert_eq!(tux2.blocked_dates, dates(&["2005-10-07"]));
    assert_eq!(
        lines(&tux2).last().unwrap(),
        "2005-10-06T15:00Z 2005-10-06T23:00Z"
    );

    // Tuxia starts on 1 August: a vacation from 1971 blocks the days before.
    let tuxia = report_of(&schedule, "tuxia", local(denver, "2005-07-28 00:00"), 7);
    assert_eq!(tuxia.blocked_dates, dates(&["2005-07-28", "2005-07-29"]));
    assert_eq!(lines(&tuxia)[0], "2005-08-01T15:00Z 2005-08-01T23:00Z");

    // `2005-12-25 - 2005-12-27` excludes the 27th: Monday the 26th is blocked (Sunday the
    // 25th has no working hours anyway) and Tuesday the 27th works. The project ends on
    // 2006-01-01 00:00 UTC, Saturday 31 December 17:00 in Denver.
    let options = ReportOptions {
        resource: Some("tux2".into()),
        from: local(denver, "2005-12-26 00:00"),
        days: 7,
        generated_at: utc("2005-12-26T07:00:00Z"),
    };
    let christmas = AvailabilityReport::generate(&schedule, &options).unwrap();
    assert_eq!(christmas.report.blocked_dates, dates(&["2005-12-26"]));
    assert_eq!(
        lines(&christmas.report)[0],
        "2005-12-27T16:00Z 2005-12-28T00:00Z"
    );
    assert_eq!(christmas.report.windows.len(), 4);
    assert_eq!(
        christmas.warnings,
        [
            "the schedule's time frame ends on 2005-12-31 17:00 America/Denver: no calls will be allowed after it; extend the project end"
        ]
    );
}
