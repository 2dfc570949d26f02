//! Builders for schedules written as model values, so calendar tests do not depend on the parser.
#![allow(dead_code)]

use chrono::{DateTime, NaiveDateTime, Utc, Weekday};
use chrono_tz::Tz;
use highway_ratelimit::report::{AvailabilityReport, ReportOptions};
use highway_ratelimit::schedule::{
    Interval, Leave, LeaveKind, Limit, LimitKind, Location, Project, Resource, Schedule, Shift,
    ShiftAssignment, TimeRange, WorkingHours,
};
use highway_ratelimit::window::first_instant_at_or_after;

/// Parses an RFC 3339 instant.
pub fn utc(text: &str) -> DateTime<Utc> {
    text.parse()
        .unwrap_or_else(|error| panic!("invalid instant {text:?} in a test: {error}"))
}

/// Returns the first instant with local time `text` (`YYYY-MM-DD HH:MM`) in `zone`.
pub fn local(zone: Tz, text: &str) -> DateTime<Utc> {
    let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M")
        .unwrap_or_else(|error| panic!("invalid local time {text:?} in a test: {error}"));
    first_instant_at_or_after(naive, zone)
}

/// Builds `[start, end)` from two RFC 3339 instants.
pub fn span(start: &str, end: &str) -> Interval {
    Interval {
        start: utc(start),
        end: utc(end),
    }
}

/// Builds a time range from `HH:MM` strings.
pub fn range(start: &str, end: &str) -> TimeRange {
    let seconds = |text: &str| {
        let (hours, minutes) = text.split_once(':').expect("HH:MM");
        hours.parse::<u32>().unwrap() * 3600 + minutes.parse::<u32>().unwrap() * 60
    };
    TimeRange {
        start: seconds(start),
        end: seconds(end),
    }
}

/// Builds working hours with `ranges` on each listed day and none on the others.
pub fn hours_on(days: &[Weekday], ranges: &[(&str, &str)]) -> WorkingHours {
    let mut hours = WorkingHours {
        days: Default::default(),
    };
    for day in days {
        hours.days[day.num_days_from_monday() as usize] = ranges
            .iter()
            .map(|(start, end)| range(start, end))
            .collect();
    }
    hours
}

pub const WEEKDAYS: [Weekday; 5] = [
    Weekday::Mon,
    Weekday::Tue,
    Weekday::Wed,
    Weekday::Thu,
    Weekday::Fri,
];
pub const EVERY_DAY: [Weekday; 7] = [
    Weekday::Mon,
    Weekday::Tue,
    Weekday::Wed,
    Weekday::Thu,
    Weekday::Fri,
    Weekday::Sat,
    Weekday::Sun,
];

/// Builds a project over `[start, end)` in `zone` with TaskJuggler's defaults.
pub fn project(start: &str, end: &str, zone: Tz) -> Project {
    Project {
        id: Some("test".into()),
        name: "Test".into(),
        version: None,
        start: utc(start),
        end: utc(end),
        timezone: zone,
        timing_resolution: 3600,
        now: None,
        week_start: Weekday::Mon,
        daily_working_hours: 8.0,
        yearly_working_days: 260.714,
        working_hours: WorkingHours::default(),
        location: Location::default(),
    }
}

/// Builds a resource with the default working hours and nothing else.
pub fn resource(id: &str) -> Resource {
    Resource {
        id: id.into(),
        name: format!("Resource {id}"),
        parent: None,
        children: Vec::new(),
        working_hours: WorkingHours::default(),
        timezone: None,
        leaves: Vec::new(),
        shifts: Vec::new(),
        limits: Vec::new(),
        location: Location::default(),
    }
}

/// Builds a shift with `hours` and nothing else.
pub fn shift(id: &str, hours: WorkingHours) -> Shift {
    Shift {
        id: id.into(),
        name: Some(format!("Shift {id}")),
        parent: None,
        working_hours: hours,
        leaves: Vec::new(),
        replace: false,
        timezone: None,
        location: Location::default(),
    }
}

/// Builds a shift assignment over `interval`.
pub fn assign(shift: &str, interval: Interval) -> ShiftAssignment {
    ShiftAssignment {
        shift: shift.into(),
        interval,
        location: Location::default(),
    }
}

/// Builds a named vacation over `interval`.
pub fn vacation(name: &str, interval: Interval) -> Leave {
    Leave {
        kind: LeaveKind::Holiday,
        name: Some(name.into()),
        interval,
        location: Location::default(),
    }
}

/// Builds a count limit with no narrowing.
pub fn limit(kind: LimitKind, value: u64) -> Limit {
    Limit {
        kind,
        value,
        period: None,
        days: None,
        hours: Vec::new(),
        resources: Vec::new(),
        location: Location::default(),
    }
}

/// Builds a schedule of `project` and `resources`.
pub fn schedule(project: Project, resources: Vec<Resource>) -> Schedule {
    Schedule {
        project,
        shifts: Vec::new(),
        resources,
        leaves: Vec::new(),
        warnings: Vec::new(),
    }
}

/// Builds report options over `days` days from `from`, generated at `from`.
pub fn options(resource: Option<&str>, from: DateTime<Utc>, days: u32) -> ReportOptions {
    ReportOptions {
        resource: resource.map(str::to_owned),
        from,
        days,
        generated_at: from,
    }
}

/// Formats the windows of a report as `(start, end)` RFC 3339 strings.
pub fn window_spans(report: &AvailabilityReport) -> Vec<(String, String)> {
    report
        .windows
        .iter()
        .map(|window| (show(window.start), show(window.end)))
        .collect()
}

/// Formats intervals as `(start, end)` RFC 3339 strings.
pub fn spans(intervals: &[Interval]) -> Vec<(String, String)> {
    intervals
        .iter()
        .map(|interval| (show(interval.start), show(interval.end)))
        .collect()
}

/// Copies `(start, end)` pairs from string literals.
pub fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(start, end)| (start.to_string(), end.to_string()))
        .collect()
}

pub fn show(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Builds the e-mail example as model values. A `business_hours` shift (Monday to Friday
/// 09:00 - 17:00) applies for the whole of 2025 in UTC, with `dailymax 500`. Vacations fall on
/// 25 and 26 December and on 1 January 2026, which lies after the end of the time frame.
pub fn seed_email() -> Schedule {
    let frame = span("2025-01-01T00:00:00Z", "2026-01-01T00:00:00Z");
    let mut email = resource("email_service");
    email.name = "Email Service".into();
    email.shifts = vec![assign("business_hours", frame)];
    email.limits = vec![limit(LimitKind::Daily, 500)];
    let mut schedule = schedule(
        project(
            "2025-01-01T00:00:00Z",
            "2026-01-01T00:00:00Z",
            chrono_tz::UTC,
        ),
        vec![email],
    );
    schedule.shifts.push(shift(
        "business_hours",
        hours_on(&WEEKDAYS, &[("09:00", "17:00")]),
    ));
    schedule.leaves = vec![
        vacation(
            "Christmas",
            span("2025-12-25T00:00:00Z", "2025-12-26T00:00:00Z"),
        ),
        vacation(
            "Boxing Day",
            span("2025-12-26T00:00:00Z", "2025-12-27T00:00:00Z"),
        ),
        vacation(
            "New Year",
            span("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"),
        ),
    ];
    schedule
}
