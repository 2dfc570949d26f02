//! The schedules shown in docs/schedule-language.md parse and have the meaning the page describes.

use chrono::{DateTime, TimeZone, Utc};
use highway_ratelimit::report::{AvailabilityReport, ReportOptions};
use highway_ratelimit::schedule::{ParseOptions, Schedule};

fn doc_schedules() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/schedule-language.md");
    let page = std::fs::read_to_string(path).expect("docs/schedule-language.md is readable");
    page.split("```tjp\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap_or_default().to_owned())
        .collect()
}

fn parse(text: &str, index: usize) -> Schedule {
    let options = ParseOptions::named(format!("schedule-language.md block {index}"));
    Schedule::parse(text, &options).unwrap_or_else(|error| panic!("block {index}:\n{error}"))
}

fn report(schedule: &Schedule, resource: &str, from: DateTime<Utc>) -> AvailabilityReport {
    let options = ReportOptions {
        resource: Some(resource.to_owned()),
        from,
        days: 7,
        generated_at: from,
    };
    AvailabilityReport::generate(schedule, &options)
        .expect("a documented schedule renders a report")
        .report
}

#[test]
fn every_documented_schedule_parses() {
    let blocks = doc_schedules();
    assert!(blocks.len() >= 6, "found only {} tjp blocks", blocks.len());
    for (index, block) in blocks.iter().enumerate() {
        parse(block, index);
    }
}

#[test]
fn limits_example_capacity() {
    let blocks = doc_schedules();
    let (index, text) = blocks
        .iter()
        .enumerate()
        .find(|(_, block)| block.contains("dailymax 100 { days mon }"))
        .expect("the limits example is on the page");
    let schedule = parse(text, index);
    // Monday 2 March 2026 in Tokyo (UTC+9).
    let monday = Utc.with_ymd_and_hms(2026, 3, 1, 15, 0, 0).unwrap();
    let report = report(&schedule, "email", monday);

    let morning = report.capacity_at(Utc.with_ymd_and_hms(2026, 3, 2, 1, 0, 0).unwrap());
    assert_eq!(morning.and_then(|capacity| capacity.per_day), Some(100));
    assert_eq!(morning.and_then(|capacity| capacity.per_hour), None);

    let lunch = report.capacity_at(Utc.with_ymd_and_hms(2026, 3, 2, 3, 30, 0).unwrap());
    assert_eq!(lunch.and_then(|capacity| capacity.per_hour), Some(50));

    let wednesday = report.capacity_at(Utc.with_ymd_and_hms(2026, 3, 4, 1, 0, 0).unwrap());
    assert_eq!(wednesday.and_then(|capacity| capacity.per_day), Some(200));
}

#[test]
fn first_schedule_blocks_christmas() {
    let blocks = doc_schedules();
    let schedule = parse(&blocks[0], 0);
    let from = Utc.with_ymd_and_hms(2026, 12, 21, 0, 0, 0).unwrap();
    let report = report(&schedule, "ticket_mailer", from);
    let christmas = chrono::NaiveDate::from_ymd_opt(2026, 12, 25).unwrap();

    assert!(report.blocked_dates.contains(&christmas));
    // Tuesday 22 December, 10:00 in Berlin (UTC+1).
    assert!(report.is_allowed(Utc.with_ymd_and_hms(2026, 12, 22, 9, 0, 0).unwrap()));
    // Thursday 24 December, same hour: the vacation starts that day.
    assert!(!report.is_allowed(Utc.with_ymd_and_hms(2026, 12, 24, 9, 0, 0).unwrap()));
}

#[test]
fn macro_example_blocks_its_holiday() {
    let blocks = doc_schedules();
    let (index, text) = blocks
        .iter()
        .enumerate()
        .find(|(_, block)| block.contains("macro holiday"))
        .expect("the macro example is a tjp block on the page");
    let schedule = parse(text, index);
    let from = Utc.with_ymd_and_hms(2026, 6, 29, 0, 0, 0).unwrap();
    let report = report(&schedule, "api", from);
    let independence_day = chrono::NaiveDate::from_ymd_opt(2026, 7, 3).unwrap();

    assert!(report.blocked_dates.contains(&independence_day));
}
