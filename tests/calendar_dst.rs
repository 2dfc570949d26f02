//! Working time across daylight-saving changes: working hours are local wall-clock time, so a
//! range that a clock change shortens or repeats lasts less or more than its nominal length.

mod calendar_support;

use calendar_support::*;
use chrono::Weekday;
use chrono_tz::{America, Australia, Tz};
use highway_ratelimit::calendar::WorkingTime;
use highway_ratelimit::schedule::Schedule;

/// Builds a schedule in `zone` whose only resource works `start - end` every day.
fn every_day(zone: Tz, start: &str, end: &str) -> Schedule {
    let mut tool = resource("tool");
    tool.working_hours = hours_on(&EVERY_DAY, &[(start, end)]);
    schedule(
        project("2025-01-01T00:00:00Z", "2027-01-01T00:00:00Z", zone),
        vec![tool],
    )
}

fn working(schedule: &Schedule, from: &str, to: &str) -> Vec<(String, String)> {
    let working_time = WorkingTime::new(schedule, &schedule.resources[0]);
    spans(&working_time.working_between(utc(from), utc(to)))
}

#[test]
fn new_york_spring_forward_sunday() {
    // 2025-03-09: at 02:00 EST (07:00Z) the clocks jump to 03:00 EDT. 01:00 - 04:00 local runs
    // from 01:00 EST = 06:00Z to 04:00 EDT = 08:00Z: two hours. The day before and after keep
    // three hours, at 06:00Z and 05:00Z.
    let schedule = every_day(America::New_York, "01:00", "04:00");
    let got = working(&schedule, "2025-03-08T00:00:00Z", "2025-03-11T00:00:00Z");
    let expected = pairs(&[
        ("2025-03-08T06:00:00Z", "2025-03-08T09:00:00Z"),
        ("2025-03-09T06:00:00Z", "2025-03-09T08:00:00Z"),
        ("2025-03-10T05:00:00Z", "2025-03-10T08:00:00Z"),
    ]);
    assert_eq!(got, expected);
}

#[test]
fn new_york_fall_back_sunday() {
    // 2025-11-02: at 02:00 EDT (06:00Z) the clocks fall back to 01:00 EST, so 01:00 - 02:00
    // happens twice. 01:00 - 04:00 local runs from 01:00 EDT = 05:00Z to 04:00 EST = 09:00Z:
    // four hours.
    let schedule = every_day(America::New_York, "01:00", "04:00");
    let got = working(&schedule, "2025-11-01T00:00:00Z", "2025-11-04T00:00:00Z");
    let expected = pairs(&[
        ("2025-11-01T05:00:00Z", "2025-11-01T08:00:00Z"),
        ("2025-11-02T05:00:00Z", "2025-11-02T09:00:00Z"),
        ("2025-11-03T06:00:00Z", "2025-11-03T09:00:00Z"),
    ]);
    assert_eq!(got, expected);
}

#[test]
fn new_york_office_hours_keep_local_time() {
    // Monday to Friday 09:00 - 17:00: 14:00Z - 22:00Z in EST before 2025-03-09, 13:00Z - 21:00Z
    // in EDT after it. The Sunday of the change is off, so nothing else moves.
    let mut tool = resource("tool");
    tool.working_hours = hours_on(&WEEKDAYS, &[("09:00", "17:00")]);
    let schedule = schedule(
        project(
            "2025-01-01T00:00:00Z",
            "2026-01-01T00:00:00Z",
            America::New_York,
        ),
        vec![tool],
    );
    let got = working(&schedule, "2025-03-07T00:00:00Z", "2025-03-11T00:00:00Z");
    let expected = pairs(&[
        ("2025-03-07T14:00:00Z", "2025-03-07T22:00:00Z"),
        ("2025-03-10T13:00:00Z", "2025-03-10T21:00:00Z"),
    ]);
    assert_eq!(got, expected);
}

#[test]
fn santiago_midnight_spring_forward() {
    // America/Santiago moves from -04 to -03 when Sunday 2025-09-07 begins: local 00:00 - 01:00
    // does not exist, and the day starts at 01:00 -03 = 04:00Z. Sunday 00:00 - 02:00 local is
    // therefore only 01:00 - 02:00 -03 = 04:00Z - 05:00Z. Saturday 22:00 - 24:00 -04 is
    // 02:00Z - 04:00Z and ends where Sunday's range begins, so the two merge.
    let mut tool = resource("tool");
    tool.working_hours = hours_on(&[Weekday::Sun], &[("00:00", "02:00")]);
    tool.working_hours.days[Weekday::Sat.num_days_from_monday() as usize] =
        vec![range("22:00", "24:00")];
    let schedule = schedule(
        project(
            "2025-01-01T00:00:00Z",
            "2027-01-01T00:00:00Z",
            America::Santiago,
        ),
        vec![tool],
    );
    let got = working(&schedule, "2025-09-06T00:00:00Z", "2025-09-08T00:00:00Z");
    assert_eq!(
        got,
        pairs(&[("2025-09-07T02:00:00Z", "2025-09-07T05:00:00Z")])
    );
}

#[test]
fn santiago_midnight_fall_back() {
    // On 2026-04-05 at 00:00 -03 (03:00Z) Santiago's clocks fall back to Saturday 23:00 -04, so
    // Saturday 23:00 - 24:00 happens twice. Saturday 22:00 - 24:00 runs from 22:00 -03 = 01:00Z
    // to 24:00 -04 = 04:00Z: three hours. Sunday 00:00 - 01:00 then starts at 04:00Z.
    let mut tool = resource("tool");
    tool.working_hours = hours_on(&[Weekday::Sat], &[("22:00", "24:00")]);
    tool.working_hours.days[Weekday::Sun.num_days_from_monday() as usize] =
        vec![range("00:00", "01:00")];
    let schedule = schedule(
        project(
            "2025-01-01T00:00:00Z",
            "2027-01-01T00:00:00Z",
            America::Santiago,
        ),
        vec![tool],
    );
    let got = working(&schedule, "2026-04-04T00:00:00Z", "2026-04-06T00:00:00Z");
    assert_eq!(
        got,
        pairs(&[("2026-04-05T01:00:00Z", "2026-04-05T05:00:00Z")])
    );
}

#[test]
fn lord_howe_half_hour_forward() {
    // Australia/Lord_Howe moves from +10:30 to +11 at 02:00 local on 2025-10-05 (15:30Z on the
    // 4th): local 02:00 - 02:30 does not exist. Sunday 02:00 - 03:00 is only 02:30 - 03:00 +11,
    // 15:30Z - 16:00Z.
    let schedule = every_day(Australia::Lord_Howe, "02:00", "03:00");
    let got = working(&schedule, "2025-10-03T00:00:00Z", "2025-10-06T00:00:00Z");
    let expected = pairs(&[
        ("2025-10-03T15:30:00Z", "2025-10-03T16:30:00Z"),
        ("2025-10-04T15:30:00Z", "2025-10-04T16:00:00Z"),
        ("2025-10-05T15:00:00Z", "2025-10-05T16:00:00Z"),
    ]);
    assert_eq!(got, expected);
}

#[test]
fn lord_howe_half_hour_back() {
    // On 2026-04-05 at 02:00 +11 (15:00Z on the 4th) Lord Howe's clocks fall back to 01:30
    // +10:30, so 01:30 - 02:00 happens twice. Sunday 01:00 - 03:00 runs from 01:00 +11 = 14:00Z
    // to 03:00 +10:30 = 16:30Z: two and a half hours.
    let schedule = every_day(Australia::Lord_Howe, "01:00", "03:00");
    let got = working(&schedule, "2026-04-04T00:00:00Z", "2026-04-05T12:00:00Z");
    assert_eq!(
        got,
        pairs(&[("2026-04-04T14:00:00Z", "2026-04-04T16:30:00Z")])
    );
}

#[test]
fn round_the_clock_hours_merge() {
    // 00:00 - 24:00 every day is one interval across days and across the fall-back change.
    let schedule = every_day(America::New_York, "00:00", "24:00");
    let got = working(&schedule, "2025-11-01T00:00:00Z", "2025-11-04T00:00:00Z");
    assert_eq!(
        got,
        pairs(&[("2025-11-01T00:00:00Z", "2025-11-04T00:00:00Z")])
    );
}

#[test]
fn is_working_matches_intervals() {
    let schedule = every_day(America::New_York, "01:00", "04:00");
    let working_time = WorkingTime::new(&schedule, &schedule.resources[0]);
    assert!(working_time.is_working(utc("2025-11-02T08:59:59Z")));
    assert!(!working_time.is_working(utc("2025-11-02T09:00:00Z")));
    assert!(!working_time.is_working(utc("2025-03-09T08:00:00Z")));
}
