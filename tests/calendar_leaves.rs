//! Vacations, leaves and shifts: what removes or replaces working time.

mod calendar_support;

use calendar_support::*;
use chrono::NaiveDate;
use chrono_tz::{America, Europe};
use highway_ratelimit::calendar::{WorkingTime, leave_label};
use highway_ratelimit::report::AvailabilityReport;
use highway_ratelimit::schedule::{Leave, LeaveKind, Location, Schedule};

fn date(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

/// Berlin in January is UTC+1, so 09:00 - 17:00 local is 08:00Z - 16:00Z.
fn berlin_office() -> Schedule {
    schedule(
        project(
            "2025-01-01T00:00:00Z",
            "2026-01-01T00:00:00Z",
            Europe::Berlin,
        ),
        vec![resource("tool")],
    )
}

#[test]
fn every_vacation_form() {
    let mut schedule = berlin_office();
    // `vacation "Bare" 2025-01-13`: a bare date is the whole local day, midnight to midnight.
    schedule.leaves.push(vacation(
        "Bare",
        span("2025-01-12T23:00:00Z", "2025-01-13T23:00:00Z"),
    ));
    // `vacation "Range" 2025-01-14 - 2025-01-16`: the end date is excluded, so Thursday works.
    schedule.leaves.push(vacation(
        "Range",
        span("2025-01-13T23:00:00Z", "2025-01-15T23:00:00Z"),
    ));
    // `vacation "Plus" 2025-01-20 +2d`: 48 hours from Monday's midnight, Monday and Tuesday.
    schedule.resources[0].leaves.push(vacation(
        "Plus",
        span("2025-01-19T23:00:00Z", "2025-01-21T23:00:00Z"),
    ));
    // `vacation "Noon" 2025-01-22-12:00`: a date with a time is 24 hours from that time, so
    // Wednesday works 09:00 - 12:00 and Thursday 12:00 - 17:00; neither date is blocked.
    schedule.resources[0].leaves.push(vacation(
        "Noon",
        span("2025-01-22T11:00:00Z", "2025-01-23T11:00:00Z"),
    ));

    let from = local(Europe::Berlin, "2025-01-13 00:00");
    let generated = AvailabilityReport::generate(&schedule, &options(None, from, 14)).unwrap();
    let report = generated.report;

    let expected = pairs(&[
        ("2025-01-16T08:00:00Z", "2025-01-16T16:00:00Z"),
        ("2025-01-17T08:00:00Z", "2025-01-17T16:00:00Z"),
        ("2025-01-22T08:00:00Z", "2025-01-22T11:00:00Z"),
        ("2025-01-23T11:00:00Z", "2025-01-23T16:00:00Z"),
        ("2025-01-24T08:00:00Z", "2025-01-24T16:00:00Z"),
    ]);
    assert_eq!(window_spans(&report), expected);
    let blocked = [
        "2025-01-13",
        "2025-01-14",
        "2025-01-15",
        "2025-01-20",
        "2025-01-21",
    ]
    .map(date);
    assert_eq!(report.blocked_dates, blocked);
    assert_eq!(report.valid_until, utc("2025-01-26T23:00:00Z"));
}

#[test]
fn leaves_on_names_what_blocks() {
    let mut schedule = berlin_office();
    schedule.leaves.push(vacation(
        "Christmas",
        span("2025-12-24T23:00:00Z", "2025-12-25T23:00:00Z"),
    ));
    schedule.resources[0].leaves.push(Leave {
        kind: LeaveKind::Sick,
        name: None,
        interval: span("2025-12-25T08:00:00Z", "2025-12-25T12:00:00Z"),
        location: Location::default(),
    });
    let working_time = WorkingTime::new(&schedule, &schedule.resources[0]);
    let labels: Vec<String> = working_time
        .leaves_on(date("2025-12-25"))
        .into_iter()
        .map(leave_label)
        .collect();
    assert_eq!(labels, ["Christmas", "sick leave"]);
    assert!(working_time.leaves_on(date("2025-12-26")).is_empty());
}

#[test]
fn shift_rotation() {
    // Early shift 06:00 - 14:00 local (05:00Z - 13:00Z) from Monday 13 January, late shift
    // 14:00 - 22:00 local (13:00Z - 21:00Z) from Monday 20 January, the resource's own
    // 09:00 - 17:00 (08:00Z - 16:00Z) before and after.
    let mut schedule = berlin_office();
    schedule
        .shifts
        .push(shift("early", hours_on(&WEEKDAYS, &[("06:00", "14:00")])));
    schedule
        .shifts
        .push(shift("late", hours_on(&WEEKDAYS, &[("14:00", "22:00")])));
    schedule.resources[0].shifts = vec![
        assign("late", span("2025-01-19T23:00:00Z", "2025-01-26T23:00:00Z")),
        assign(
            "early",
            span("2025-01-12T23:00:00Z", "2025-01-19T23:00:00Z"),
        ),
    ];
    let working_time = WorkingTime::new(&schedule, &schedule.resources[0]);
    let got = spans(
        &working_time.working_between(utc("2025-01-10T00:00:00Z"), utc("2025-01-28T00:00:00Z")),
    );

    let day = |day: u32, start: &str, end: &str| {
        (
            format!("2025-01-{day}T{start}:00Z"),
            format!("2025-01-{day}T{end}:00Z"),
        )
    };
    let mut expected = vec![day(10, "08:00", "16:00")];
    expected.extend((13..=17).map(|date| day(date, "05:00", "13:00")));
    expected.extend((20..=24).map(|date| day(date, "13:00", "21:00")));
    expected.push(day(27, "08:00", "16:00"));
    assert_eq!(got, expected);
}

#[test]
fn shift_assignment_starting_midday() {
    // The early shift starts Wednesday 8 January at 12:00 local (11:00Z): the resource's own
    // hours give 08:00Z - 11:00Z, the shift's 06:00 - 14:00 gives 11:00Z - 13:00Z after it, and
    // the two touch, so they form one interval.
    let mut schedule = berlin_office();
    schedule
        .shifts
        .push(shift("early", hours_on(&WEEKDAYS, &[("06:00", "14:00")])));
    schedule.resources[0].shifts = vec![assign(
        "early",
        span("2025-01-08T11:00:00Z", "2025-01-09T23:00:00Z"),
    )];
    let working_time = WorkingTime::new(&schedule, &schedule.resources[0]);
    let got = spans(
        &working_time.working_between(utc("2025-01-08T00:00:00Z"), utc("2025-01-10T00:00:00Z")),
    );
    assert_eq!(
        got,
        pairs(&[
            ("2025-01-08T08:00:00Z", "2025-01-08T13:00:00Z"),
            ("2025-01-09T05:00:00Z", "2025-01-09T13:00:00Z")
        ])
    );
}

#[test]
fn replace_shift_discards_other_leaves() {
    // Inside a `replace` shift's assignment, the global vacation on Tuesday does not apply but
    // the shift's own vacation on Thursday does. Outside it (Monday 20th) the global vacation
    // applies again.
    let mut schedule = berlin_office();
    let mut cover = shift("cover", hours_on(&WEEKDAYS, &[("10:00", "12:00")]));
    cover.replace = true;
    cover.leaves.push(vacation(
        "Shift day off",
        span("2025-01-15T23:00:00Z", "2025-01-16T23:00:00Z"),
    ));
    schedule.shifts.push(cover);
    schedule.leaves.push(vacation(
        "Tuesday",
        span("2025-01-13T23:00:00Z", "2025-01-14T23:00:00Z"),
    ));
    schedule.leaves.push(vacation(
        "Monday",
        span("2025-01-19T23:00:00Z", "2025-01-20T23:00:00Z"),
    ));
    schedule.resources[0].shifts = vec![assign(
        "cover",
        span("2025-01-12T23:00:00Z", "2025-01-17T23:00:00Z"),
    )];

    let working_time = WorkingTime::new(&schedule, &schedule.resources[0]);
    let got = spans(
        &working_time.working_between(utc("2025-01-13T00:00:00Z"), utc("2025-01-21T00:00:00Z")),
    );
    let expected = pairs(&[
        ("2025-01-13T09:00:00Z", "2025-01-13T11:00:00Z"),
        ("2025-01-14T09:00:00Z", "2025-01-14T11:00:00Z"),
        ("2025-01-15T09:00:00Z", "2025-01-15T11:00:00Z"),
        ("2025-01-17T09:00:00Z", "2025-01-17T11:00:00Z"),
    ]);
    assert_eq!(got, expected);
}

#[test]
fn shift_without_replace_adds_leaves() {
    let mut schedule = berlin_office();
    let mut cover = shift("cover", hours_on(&WEEKDAYS, &[("10:00", "12:00")]));
    cover.leaves.push(vacation(
        "Shift day off",
        span("2025-01-15T23:00:00Z", "2025-01-16T23:00:00Z"),
    ));
    schedule.shifts.push(cover);
    schedule.leaves.push(vacation(
        "Tuesday",
        span("2025-01-13T23:00:00Z", "2025-01-14T23:00:00Z"),
    ));
    schedule.resources[0].shifts = vec![assign(
        "cover",
        span("2025-01-12T23:00:00Z", "2025-01-17T23:00:00Z"),
    )];

    let working_time = WorkingTime::new(&schedule, &schedule.resources[0]);
    let got = spans(
        &working_time.working_between(utc("2025-01-13T00:00:00Z"), utc("2025-01-18T00:00:00Z")),
    );
    let expected = pairs(&[
        ("2025-01-13T09:00:00Z", "2025-01-13T11:00:00Z"),
        ("2025-01-15T09:00:00Z", "2025-01-15T11:00:00Z"),
        ("2025-01-17T09:00:00Z", "2025-01-17T11:00:00Z"),
    ]);
    assert_eq!(got, expected);
}

#[test]
fn shift_timezone_sets_its_hours() {
    // A shift with `timezone "America/New_York"` works 09:00 - 17:00 New York time, which is
    // 14:00Z - 22:00Z in January, for a resource whose own calendar is Berlin's.
    let mut schedule = berlin_office();
    let mut remote = shift("remote", hours_on(&WEEKDAYS, &[("09:00", "17:00")]));
    remote.timezone = Some(America::New_York);
    schedule.shifts.push(remote);
    schedule.resources[0].shifts = vec![assign(
        "remote",
        span("2025-01-01T00:00:00Z", "2026-01-01T00:00:00Z"),
    )];
    let working_time = WorkingTime::new(&schedule, &schedule.resources[0]);
    let got = spans(
        &working_time.working_between(utc("2025-01-13T00:00:00Z"), utc("2025-01-14T00:00:00Z")),
    );
    assert_eq!(
        got,
        pairs(&[("2025-01-13T14:00:00Z", "2025-01-13T22:00:00Z")])
    );
}

#[test]
fn no_working_time_outside_time_frame() {
    // The project runs from Wednesday 2025-01-15 12:00Z to Friday 2025-01-17 10:00Z.
    let schedule = schedule(
        project(
            "2025-01-15T12:00:00Z",
            "2025-01-17T10:00:00Z",
            Europe::Berlin,
        ),
        vec![resource("tool")],
    );
    let working_time = WorkingTime::new(&schedule, &schedule.resources[0]);
    let got = spans(
        &working_time.working_between(utc("2025-01-13T00:00:00Z"), utc("2025-01-20T00:00:00Z")),
    );
    let expected = pairs(&[
        ("2025-01-15T12:00:00Z", "2025-01-15T16:00:00Z"),
        ("2025-01-16T08:00:00Z", "2025-01-16T16:00:00Z"),
        ("2025-01-17T08:00:00Z", "2025-01-17T10:00:00Z"),
    ]);
    assert_eq!(got, expected);
}
