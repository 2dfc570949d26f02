//! Generating availability reports from schedules written as model values.

mod calendar_support;

use calendar_support::*;
use chrono::{NaiveDate, Weekday};
use chrono_tz::{America, Asia};
use highway_ratelimit::report::{AvailabilityReport, Capacity, Closed, ReportError};
use highway_ratelimit::schedule::{Limit, LimitKind};

fn date(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

fn days(list: &[Weekday]) -> Option<[bool; 7]> {
    let mut days = [false; 7];
    for day in list {
        days[day.num_days_from_monday() as usize] = true;
    }
    Some(days)
}

fn capacity(per_hour: Option<u64>, per_day: Option<u64>) -> Capacity {
    Capacity {
        per_hour,
        per_day,
        ..Capacity::UNLIMITED
    }
}

#[test]
fn seed_across_christmas_and_time_frame_end() {
    // From Saturday 2025-12-20 for 14 days: Monday to Wednesday 22 - 24 and 29 - 31 December
    // work 09:00 - 17:00 UTC. The 25th and 26th would work by the hours but are vacations, so
    // they are blocked. The time frame ends on 2026-01-01 00:00, so 1 and 2 January have no
    // working time (and are not blocked: no vacation closes them) and a warning reports it.
    let schedule = seed_email();
    let from = utc("2025-12-20T00:00:00Z");
    let generated = AvailabilityReport::generate(&schedule, &options(None, from, 14)).unwrap();
    let report = &generated.report;

    let expected: Vec<(String, String)> = [22, 23, 24, 29, 30, 31]
        .iter()
        .map(|day| {
            (
                format!("2025-12-{day}T09:00:00Z"),
                format!("2025-12-{day}T17:00:00Z"),
            )
        })
        .collect();
    assert_eq!(window_spans(report), expected);
    assert!(
        report
            .windows
            .iter()
            .all(|window| window.capacity == capacity(None, Some(500)))
    );
    assert_eq!(
        report.blocked_dates,
        [date("2025-12-25"), date("2025-12-26")]
    );
    assert_eq!(report.default_capacity, capacity(None, Some(500)));
    assert_eq!(report.valid_until, utc("2026-01-03T00:00:00Z"));
    assert_eq!(report.generated_at, from);
    assert_eq!(report.timezone, chrono_tz::UTC);
    assert_eq!(report.week_start, Weekday::Mon);
    assert_eq!(
        generated.warnings,
        [
            "the schedule's time frame ends on 2026-01-01 00:00 UTC: no calls will be allowed after it; extend the project end"
        ]
    );
}

#[test]
fn seed_report_queries() {
    let schedule = seed_email();
    let report =
        AvailabilityReport::generate(&schedule, &options(None, utc("2025-12-20T00:00:00Z"), 14))
            .unwrap()
            .report;

    assert!(report.is_allowed(utc("2025-12-22T09:00:00Z")));
    assert!(!report.is_allowed(utc("2025-12-22T17:00:00Z")));
    assert_eq!(
        report.capacity_at(utc("2025-12-23T12:00:00Z")),
        Some(&capacity(None, Some(500)))
    );
    assert_eq!(report.capacity_at(utc("2025-12-25T12:00:00Z")), None);
    assert_eq!(
        report.next_allowed(utc("2025-12-24T17:00:00Z")),
        Some(utc("2025-12-29T09:00:00Z"))
    );
    assert_eq!(report.next_allowed(utc("2025-12-31T10:00:00Z")), None);
    assert_eq!(
        report.closed_at(utc("2025-12-25T12:00:00Z")),
        Some(Closed::BlockedDate(date("2025-12-25")))
    );
    assert_eq!(
        report.closed_at(utc("2025-12-27T12:00:00Z")),
        Some(Closed::OutsideHours)
    );
    assert_eq!(
        report.closed_at(utc("2026-01-03T00:00:00Z")),
        Some(Closed::Expired)
    );
}

#[test]
fn seed_report_json_fields() {
    let schedule = seed_email();
    let report =
        AvailabilityReport::generate(&schedule, &options(None, utc("2025-12-20T00:00:00Z"), 7))
            .unwrap()
            .report;
    let json = serde_json::to_value(&report).unwrap();

    let expected = serde_json::json!({
        "version": 1,
        "generated_at": "2025-12-20T00:00:00Z",
        "valid_until": "2025-12-27T00:00:00Z",
        "timezone": "UTC",
        "week_start": "monday",
        "windows": [
            {"start": "2025-12-22T09:00:00Z", "end": "2025-12-22T17:00:00Z", "capacity": {"per_day": 500}},
            {"start": "2025-12-23T09:00:00Z", "end": "2025-12-23T17:00:00Z", "capacity": {"per_day": 500}},
            {"start": "2025-12-24T09:00:00Z", "end": "2025-12-24T17:00:00Z", "capacity": {"per_day": 500}}
        ],
        "blocked_dates": ["2025-12-25", "2025-12-26"],
        "default_capacity": {"per_day": 500}
    });
    assert_eq!(json, expected);
    let back: AvailabilityReport = serde_json::from_value(json).unwrap();
    assert_eq!(back, report);
}

#[test]
fn capacity_by_weekday_and_time_of_day() {
    // New York in June is UTC-4; the tool works 08:00 - 18:00 local, 12:00Z - 22:00Z. Daily
    // limits: 100 on Mondays, 200 on Wednesdays, 500 on the other days. Hourly: 60, and 20
    // between 12:00 and 14:00 local (16:00Z - 18:00Z). Each day therefore has three windows,
    // split at 16:00Z and 18:00Z; only the unnarrowed hourly 60 is the default capacity.
    let mut tool = resource("tool");
    tool.working_hours = hours_on(&WEEKDAYS, &[("08:00", "18:00")]);
    tool.limits = vec![
        Limit {
            days: days(&[Weekday::Mon]),
            ..limit(LimitKind::Daily, 100)
        },
        Limit {
            days: days(&[Weekday::Wed]),
            ..limit(LimitKind::Daily, 200)
        },
        Limit {
            days: days(&[
                Weekday::Tue,
                Weekday::Thu,
                Weekday::Fri,
                Weekday::Sat,
                Weekday::Sun,
            ]),
            ..limit(LimitKind::Daily, 500)
        },
        limit(LimitKind::Hourly, 60),
        Limit {
            hours: vec![range("12:00", "14:00")],
            ..limit(LimitKind::Hourly, 20)
        },
    ];
    let schedule = schedule(
        project(
            "2025-01-01T00:00:00Z",
            "2026-01-01T00:00:00Z",
            America::New_York,
        ),
        vec![tool],
    );
    let from = local(America::New_York, "2025-06-02 00:00");
    let report = AvailabilityReport::generate(&schedule, &options(None, from, 3))
        .unwrap()
        .report;

    let mut expected = Vec::new();
    for (day, daily) in [(2, 100), (3, 500), (4, 200)] {
        let at = |time: &str| utc(&format!("2025-06-0{day}T{time}:00Z"));
        expected.push((at("12:00"), at("16:00"), capacity(Some(60), Some(daily))));
        expected.push((at("16:00"), at("18:00"), capacity(Some(20), Some(daily))));
        expected.push((at("18:00"), at("22:00"), capacity(Some(60), Some(daily))));
    }
    let got: Vec<_> = report
        .windows
        .iter()
        .map(|window| (window.start, window.end, window.capacity))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(report.default_capacity, capacity(Some(60), None));
}

#[test]
fn capacity_changes_at_local_midnight() {
    // Round-the-clock hours in New York with 100 a day on Mondays and 500 otherwise: one window
    // from the horizon start (Saturday 00:00 EDT = 04:00Z) to Monday 00:00 EDT, one for Monday,
    // one from Tuesday to the end; Saturday and Sunday share a capacity, so they merge.
    let mut tool = resource("tool");
    tool.working_hours = hours_on(&EVERY_DAY, &[("00:00", "24:00")]);
    tool.limits = vec![
        Limit {
            days: days(&[Weekday::Mon]),
            ..limit(LimitKind::Daily, 100)
        },
        Limit {
            days: days(&[
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri,
                Weekday::Sat,
                Weekday::Sun,
            ]),
            ..limit(LimitKind::Daily, 500)
        },
    ];
    let schedule = schedule(
        project(
            "2025-01-01T00:00:00Z",
            "2026-01-01T00:00:00Z",
            America::New_York,
        ),
        vec![tool],
    );
    let from = local(America::New_York, "2025-06-07 00:00");
    let report = AvailabilityReport::generate(&schedule, &options(None, from, 4))
        .unwrap()
        .report;
    let got: Vec<_> = report
        .windows
        .iter()
        .map(|window| {
            (
                show(window.start),
                show(window.end),
                window.capacity.per_day,
            )
        })
        .collect();
    let expected = vec![
        (
            "2025-06-07T04:00:00Z".to_owned(),
            "2025-06-09T04:00:00Z".to_owned(),
            Some(500),
        ),
        (
            "2025-06-09T04:00:00Z".to_owned(),
            "2025-06-10T04:00:00Z".to_owned(),
            Some(100),
        ),
        (
            "2025-06-10T04:00:00Z".to_owned(),
            "2025-06-11T04:00:00Z".to_owned(),
            Some(500),
        ),
    ];
    assert_eq!(got, expected);
    assert_eq!(report.default_capacity, Capacity::UNLIMITED);
}

#[test]
fn capacity_period_and_resources() {
    // `dailymax 50 { period 2025-12-23-12:00 - 2025-12-24-00:00 }` splits Tuesday at noon;
    // `dailymax 1 { resources other }` names another resource, so it does not apply.
    let mut schedule = seed_email();
    let email = &mut schedule.resources[0];
    email.limits.push(Limit {
        period: Some(span("2025-12-23T12:00:00Z", "2025-12-24T00:00:00Z")),
        ..limit(LimitKind::Daily, 50)
    });
    email.limits.push(Limit {
        resources: vec!["other".into()],
        ..limit(LimitKind::Daily, 1)
    });
    let report =
        AvailabilityReport::generate(&schedule, &options(None, utc("2025-12-23T00:00:00Z"), 1))
            .unwrap()
            .report;
    let got: Vec<_> = report
        .windows
        .iter()
        .map(|window| {
            (
                show(window.start),
                show(window.end),
                window.capacity.per_day,
            )
        })
        .collect();
    let expected = vec![
        (
            "2025-12-23T09:00:00Z".to_owned(),
            "2025-12-23T12:00:00Z".to_owned(),
            Some(500),
        ),
        (
            "2025-12-23T12:00:00Z".to_owned(),
            "2025-12-23T17:00:00Z".to_owned(),
            Some(50),
        ),
    ];
    assert_eq!(got, expected);
}

#[test]
fn resource_zone_differs_from_project() {
    // The project is in UTC; the tool works 09:00 - 18:00 Tokyo time (UTC+9), 00:00Z - 09:00Z,
    // with 10 calls on Tokyo Mondays and 40 otherwise. Children's Day, Monday 2025-05-05 in
    // Tokyo, starts at 2025-05-04T15:00Z. The report follows Tokyo's calendar: its zone, the
    // blocked date and where its horizon of 2 days from Tokyo midnight starts and ends.
    let mut tool = resource("tool");
    tool.timezone = Some(Asia::Tokyo);
    tool.working_hours = hours_on(&WEEKDAYS, &[("09:00", "18:00")]);
    tool.limits = vec![
        Limit {
            days: days(&[Weekday::Mon]),
            ..limit(LimitKind::Daily, 10)
        },
        Limit {
            days: days(&[Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri]),
            ..limit(LimitKind::Daily, 40)
        },
    ];
    let mut schedule = schedule(
        project(
            "2025-01-01T00:00:00Z",
            "2026-01-01T00:00:00Z",
            chrono_tz::UTC,
        ),
        vec![tool],
    );
    schedule.leaves.push(vacation(
        "Children's Day",
        span("2025-05-04T15:00:00Z", "2025-05-05T15:00:00Z"),
    ));

    let from = local(Asia::Tokyo, "2025-05-05 00:00");
    assert_eq!(from, utc("2025-05-04T15:00:00Z"));
    let report = AvailabilityReport::generate(&schedule, &options(None, from, 2))
        .unwrap()
        .report;
    assert_eq!(report.timezone, Asia::Tokyo);
    assert_eq!(report.valid_until, utc("2025-05-06T15:00:00Z"));
    assert_eq!(report.blocked_dates, [date("2025-05-05")]);
    assert_eq!(
        window_spans(&report),
        pairs(&[("2025-05-06T00:00:00Z", "2025-05-06T09:00:00Z")])
    );
    assert_eq!(report.windows[0].capacity.per_day, Some(40));
}

#[test]
fn horizon_before_time_frame_warns() {
    let schedule = seed_email();
    let generated =
        AvailabilityReport::generate(&schedule, &options(None, utc("2024-12-30T00:00:00Z"), 7))
            .unwrap();
    assert_eq!(
        generated.warnings,
        [
            "the schedule's time frame starts on 2025-01-01 00:00 UTC: no calls are allowed before it; move the project start earlier"
        ]
    );
    assert_eq!(
        generated.report.windows[0].start,
        utc("2025-01-01T09:00:00Z")
    );

    let later =
        AvailabilityReport::generate(&schedule, &options(None, utc("2026-02-01T00:00:00Z"), 7))
            .unwrap();
    assert!(later.report.windows.is_empty());
    assert!(
        later.warnings[0].starts_with("the horizon lies outside the schedule's time frame"),
        "{:?}",
        later.warnings
    );
}

#[test]
fn resource_selection_errors() {
    let from = utc("2025-12-20T00:00:00Z");
    let empty = schedule(
        project(
            "2025-01-01T00:00:00Z",
            "2026-01-01T00:00:00Z",
            chrono_tz::UTC,
        ),
        vec![],
    );
    assert_eq!(
        AvailabilityReport::generate(&empty, &options(None, from, 7)).unwrap_err(),
        ReportError::NoResource
    );

    let two = schedule(
        project(
            "2025-01-01T00:00:00Z",
            "2026-01-01T00:00:00Z",
            chrono_tz::UTC,
        ),
        vec![resource("a"), resource("b")],
    );
    let error = AvailabilityReport::generate(&two, &options(None, from, 7)).unwrap_err();
    assert_eq!(
        error.to_string(),
        "the schedule has several resources (a, b): choose one"
    );
    let error = AvailabilityReport::generate(&two, &options(Some("c"), from, 7)).unwrap_err();
    assert_eq!(
        error.to_string(),
        "unknown resource \"c\": the schedule has a, b"
    );
    assert!(AvailabilityReport::generate(&two, &options(Some("b"), from, 7)).is_ok());

    let mut team = resource("team");
    team.children = vec!["member".into()];
    let mut member = resource("member");
    member.parent = Some("team".into());
    let group = schedule(
        project(
            "2025-01-01T00:00:00Z",
            "2026-01-01T00:00:00Z",
            chrono_tz::UTC,
        ),
        vec![team, member],
    );
    let report = AvailabilityReport::generate(&group, &options(None, from, 7));
    assert!(
        report.is_ok(),
        "the only resource without children is chosen: {report:?}"
    );
}

#[test]
fn horizon_outside_rfc3339_years_fails() {
    let schedule = seed_email();
    let cases = [
        (chrono::DateTime::<chrono::Utc>::MAX_UTC, 1),
        (chrono::DateTime::<chrono::Utc>::MIN_UTC, 1),
        (utc("9999-12-25T00:00:00Z"), 3660),
        (utc("9999-12-31T00:00:00Z"), 1),
    ];
    for (from, days) in cases {
        let error =
            AvailabilityReport::generate(&schedule, &options(None, from, days)).unwrap_err();
        assert_eq!(error, ReportError::OutOfRange { from, days });
    }
}

#[test]
fn horizon_length_is_checked() {
    let schedule = seed_email();
    let from = utc("2025-12-20T00:00:00Z");
    for days in [0, 3661] {
        let error =
            AvailabilityReport::generate(&schedule, &options(None, from, days)).unwrap_err();
        assert_eq!(error, ReportError::InvalidHorizon { days });
    }
    assert!(AvailabilityReport::generate(&schedule, &options(None, from, 3660)).is_ok());
}

#[test]
fn horizon_counts_local_days() {
    // Seven local days from Saturday 2025-03-08 00:00 in New York end on Saturday 03-15 00:00
    // EDT, 04:00Z: six days of 24 hours and the 23-hour day of the change.
    let schedule = schedule(
        project(
            "2025-01-01T00:00:00Z",
            "2026-01-01T00:00:00Z",
            America::New_York,
        ),
        vec![resource("tool")],
    );
    let from = local(America::New_York, "2025-03-08 00:00");
    let report = AvailabilityReport::generate(&schedule, &options(None, from, 7))
        .unwrap()
        .report;
    assert_eq!(from, utc("2025-03-08T05:00:00Z"));
    assert_eq!(report.valid_until, utc("2025-03-15T04:00:00Z"));
}

#[test]
fn horizon_at_calendar_limits() {
    // A horizon far outside the time frame yields no windows and a warning, at both ends of
    // the years an RFC 3339 instant can name.
    let schedule = seed_email();
    for (from, days) in [("9999-12-25T00:00:00Z", 6), ("0000-01-01T00:00:00Z", 3660)] {
        let generated =
            AvailabilityReport::generate(&schedule, &options(None, utc(from), days)).unwrap();
        assert!(generated.report.windows.is_empty(), "{from}");
        assert!(generated.report.blocked_dates.is_empty(), "{from}");
        assert_eq!(
            generated.warnings.len(),
            1,
            "{from}: {:?}",
            generated.warnings
        );
    }
}
