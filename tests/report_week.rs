//! The week view of a report, as a person reads it.

mod calendar_support;

use calendar_support::*;
use chrono::NaiveDate;
use chrono_tz::America;
use highway_ratelimit::report::{AvailabilityReport, WeekView};
use highway_ratelimit::schedule::{Limit, LimitKind};

const SEED_VIEW: &str = r#"email_service "Email Service"
2025-12-20 00:00 to 2026-01-03 00:00, local time in UTC

            00  02  04  06  08  10  12  14  16  18  20  22
Sat 20 Dec  ................................................    0h
Sun 21 Dec  ................................................    0h

            00  02  04  06  08  10  12  14  16  18  20  22
Mon 22 Dec  ..................AAAAAAAAAAAAAAAA..............    8h
Tue 23 Dec  ..................AAAAAAAAAAAAAAAA..............    8h
Wed 24 Dec  ..................AAAAAAAAAAAAAAAA..............    8h
Thu 25 Dec  blocked: Christmas
Fri 26 Dec  blocked: vacation or leave
Sat 27 Dec  ................................................    0h
Sun 28 Dec  ................................................    0h

            00  02  04  06  08  10  12  14  16  18  20  22
Mon 29 Dec  ..................AAAAAAAAAAAAAAAA..............    8h
Tue 30 Dec  ..................AAAAAAAAAAAAAAAA..............    8h
Wed 31 Dec  ..................AAAAAAAAAAAAAAAA..............    8h
Thu 01 Jan  ................................................    0h
Fri 02 Jan  ................................................    0h

A  500/day
Lower case: open for part of the half hour. '.': closed.
Blank: outside the horizon or skipped by a clock change.
Note: the schedule's time frame ends on 2026-01-01 00:00 UTC: no calls will be
allowed after it; extend the project end.
"#;

#[test]
fn seed_week_view() {
    // Weeks start on Monday; 09:00 - 17:00 is cells 18 to 33; the 26th has no name given here.
    let schedule = seed_email();
    let from = utc("2025-12-20T00:00:00Z");
    let generated = AvailabilityReport::generate(&schedule, &options(None, from, 14)).unwrap();
    let view = WeekView::new(&generated.report, from)
        .title("email_service \"Email Service\"")
        .blocked_name(NaiveDate::from_ymd_opt(2025, 12, 25).unwrap(), "Christmas")
        .note(format!("Note: {}.", generated.warnings[0]))
        .to_string();
    assert_eq!(view, SEED_VIEW);
    assert!(
        view.lines().all(|line| line.chars().count() <= 80),
        "{view}"
    );
}

#[test]
fn fall_back_week_view() {
    // New York, from Saturday 2025-11-01 10:00 for 3 days: Saturday's cells before 10:00 lie
    // outside the horizon (blank). The tool works 01:00 - 04:00 and 08:15 - 18:00 with 60 an
    // hour, 20 between 12:00 and 14:00 (level B). 08:00 - 08:30 is open for part of the half
    // hour (lower case). Sunday's 01:00 - 04:00 lasts four hours because 01:00 - 02:00 repeats:
    // 4 + 9.75 = 13.75 hours.
    let mut tool = resource("tool");
    tool.working_hours = hours_on(&EVERY_DAY, &[("01:00", "04:00"), ("08:15", "18:00")]);
    tool.limits = vec![
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
    let from = local(America::New_York, "2025-11-01 10:00");
    let report = AvailabilityReport::generate(&schedule, &options(None, from, 3))
        .unwrap()
        .report;
    let view = WeekView::new(&report, from).to_string();

    let lines: Vec<&str> = view.lines().collect();
    assert_eq!(
        lines[0],
        "2025-11-01 10:00 to 2025-11-04 10:00, local time in America/New_York"
    );
    assert_eq!(
        lines[3],
        "Sat 01 Nov                      AAAABBBBAAAAAAAA............    8h"
    );
    assert_eq!(
        lines[4],
        "Sun 02 Nov  ..AAAAAA........aAAAAAAABBBBAAAAAAAA............ 13.8h clocks -1h"
    );
    assert_eq!(
        lines[7],
        "Mon 03 Nov  ..AAAAAA........aAAAAAAABBBBAAAAAAAA............ 12.8h"
    );
    assert!(view.contains("\nA  60/h\nB  20/h\n"), "{view}");
    assert!(
        view.lines().all(|line| line.chars().count() <= 80),
        "{view}"
    );
}

#[test]
fn spring_forward_cells_are_blank() {
    // On 2025-03-09 New York skips 02:00 - 03:00, so cells 4 and 5 are blank.
    let mut tool = resource("tool");
    tool.working_hours = hours_on(&EVERY_DAY, &[("01:00", "04:00")]);
    let schedule = schedule(
        project(
            "2025-01-01T00:00:00Z",
            "2026-01-01T00:00:00Z",
            America::New_York,
        ),
        vec![tool],
    );
    let from = local(America::New_York, "2025-03-09 00:00");
    let report = AvailabilityReport::generate(&schedule, &options(None, from, 1))
        .unwrap()
        .report;
    let view = WeekView::new(&report, from).to_string();
    let day = view
        .lines()
        .find(|line| line.starts_with("Sun 09 Mar"))
        .unwrap();
    assert_eq!(
        day,
        "Sun 09 Mar  ..AA  AA........................................    2h clocks +1h"
    );
}

#[test]
fn capacities_beyond_letters_share_one_legend_line() {
    // 24 hourly limits on three days with different daily limits: 72 capacity levels.
    let mut text = String::from(
        "project p \"Many\" 2026-01-01 +1y\nresource r \"R\" {\n  workinghours mon - sun 00:00 - 24:00\n  limits {\n",
    );
    for hour in 0..24 {
        let limit = 100 + hour;
        text.push_str(&format!(
            "    hourlymax {limit} {{ hours {hour:02}:00 - {:02}:00 }}\n",
            hour + 1
        ));
    }
    for (index, day) in ["mon", "tue", "wed"].iter().enumerate() {
        text.push_str(&format!("    dailymax {} {{ days {day} }}\n", 1000 + index));
    }
    text.push_str("  }\n}\n");
    let schedule = highway_ratelimit::schedule::Schedule::parse(
        &text,
        &highway_ratelimit::schedule::ParseOptions::named("many.tjp"),
    )
    .unwrap();
    let from = utc("2026-03-02T00:00:00Z");
    let generated = AvailabilityReport::generate(&schedule, &options(None, from, 3)).unwrap();
    let view = WeekView::new(&generated.report, from).to_string();

    let starred: Vec<&str> = view.lines().filter(|line| line.starts_with("* ")).collect();
    assert_eq!(
        starred,
        ["*  46 other capacities, listed in the JSON report"],
        "{view}"
    );
    assert!(view.contains("\nZ  101/h, 1001/day\n"), "{view}");
}

#[test]
fn long_names_wrap_within_80_columns() {
    let mut text = String::from(
        "project p \"P\" 2026-01-01 +1y {\n  timezone \"America/Argentina/ComodRivadavia\"\n}\nresource r \"A resource name that is longer than eighty columns all by itself, with more\"\n",
    );
    for number in 0..4 {
        text.push_str(&format!(
            "vacation \"Company-wide maintenance window number {number}\" 2026-03-02\n"
        ));
    }
    let schedule = highway_ratelimit::schedule::Schedule::parse(
        &text,
        &highway_ratelimit::schedule::ParseOptions::named("long.tjp"),
    )
    .unwrap();
    // Midnight of 2 March in Argentina (UTC-3), whose zone name makes the horizon line long.
    let from = utc("2026-03-02T03:00:00Z");
    let generated = AvailabilityReport::generate(&schedule, &options(None, from, 2)).unwrap();
    let view = WeekView::new(&generated.report, from)
        .describe_resource(&schedule, &schedule.resources[0])
        .to_string();

    assert!(
        view.lines().all(|line| line.chars().count() <= 80),
        "{view}"
    );
    assert!(
        view.contains("Mon 02 Mar  blocked: Company-wide maintenance window number 0,"),
        "{view}"
    );
    assert!(view.contains("number 3\n"), "{view}");
    assert!(view.contains("Tue 03 Mar  ......"), "{view}");
}

#[test]
fn horizon_inside_half_hour_is_lower_case() {
    // The horizon starts at 09:20 on Monday 22 December: the 09:00 cell is open for only its
    // last 10 minutes, so it is a lower-case letter; the next cell is open throughout.
    let schedule = seed_email();
    let from = utc("2025-12-22T09:20:00Z");
    let generated = AvailabilityReport::generate(&schedule, &options(None, from, 1)).unwrap();
    let view = WeekView::new(&generated.report, from).to_string();
    let monday = view
        .lines()
        .find(|line| line.starts_with("Mon 22 Dec"))
        .expect("the view has a line for Monday");

    assert_eq!(&monday[12 + 18..12 + 20], "aA", "{view}");
}
