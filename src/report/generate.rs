//! Computing an availability report from a schedule.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, Utc};
use chrono_tz::Tz;

use super::{AvailabilityReport, GeneratedReport, REPORT_VERSION, ReportError, ReportOptions};
use crate::calendar::intervals::overlaps;
use crate::calendar::{CapacityRules, LocalDay, WorkingTime, local_date};
use crate::schedule::{Interval, Resource, Schedule};
use crate::window::first_instant_at_or_after;

/// The maximum horizon, in days: about ten years.
pub const MAX_HORIZON_DAYS: u32 = 3660;

/// Returns the resource a report is about: the one named `id`, or, when `id` is `None`, the
/// only resource of the schedule or else its only resource without children.
pub fn select_resource<'a>(
    schedule: &'a Schedule,
    id: Option<&str>,
) -> Result<&'a Resource, ReportError> {
    let available = || {
        schedule
            .resources
            .iter()
            .map(|resource| resource.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(id) = id {
        return schedule
            .resource(id)
            .ok_or_else(|| ReportError::UnknownResource {
                id: id.to_owned(),
                available: available(),
            });
    }
    match schedule.resources.as_slice() {
        [] => Err(ReportError::NoResource),
        [only] => Ok(only),
        resources => {
            let mut leaves = resources
                .iter()
                .filter(|resource| resource.children.is_empty());
            match (leaves.next(), leaves.next()) {
                (Some(leaf), None) => Ok(leaf),
                _ => Err(ReportError::ResourceRequired {
                    available: available(),
                }),
            }
        }
    }
}

/// Returns the time zone of a resource's calendar: its own, else the project's.
pub fn resource_zone(schedule: &Schedule, resource: &Resource) -> Tz {
    resource.timezone.unwrap_or(schedule.project.timezone)
}

/// Returns the instant `days` local calendar days after `from`, at the same local wall time
/// (the first instant after a clock change skips it).
pub fn add_local_days(from: DateTime<Utc>, days: u32, zone: Tz) -> DateTime<Utc> {
    let local = from.with_timezone(&zone).naive_local();
    let later = local
        .checked_add_signed(Duration::days(i64::from(days)))
        .unwrap_or(NaiveDateTime::MAX);
    first_instant_at_or_after(later, zone)
}

pub(super) fn generate(
    schedule: &Schedule,
    options: &ReportOptions,
) -> Result<GeneratedReport, ReportError> {
    if options.days == 0 || options.days > MAX_HORIZON_DAYS {
        return Err(ReportError::InvalidHorizon { days: options.days });
    }
    let out_of_range = ReportError::OutOfRange {
        from: options.from,
        days: options.days,
    };
    let in_range = |instant: DateTime<Utc>| (0..=9999).contains(&instant.year());
    if !in_range(options.from) {
        return Err(out_of_range);
    }
    let resource = select_resource(schedule, options.resource.as_deref())?;
    let working_time = WorkingTime::new(schedule, resource);
    let zone = working_time.zone();
    let from = options.from;
    let until = add_local_days(from, options.days, zone);
    if !in_range(until) {
        return Err(out_of_range);
    }

    let intervals = working_time.between(from, until);
    let rules = CapacityRules::new(resource, zone);
    let mut windows = Vec::with_capacity(intervals.working.len());
    for interval in &intervals.working {
        rules.split_into(*interval, &mut windows);
    }

    let blocked_dates = blocked_dates(&intervals.scheduled, &intervals.working, from, until, zone);
    let warnings = time_frame_warnings(schedule, from, until);

    let report = AvailabilityReport {
        version: REPORT_VERSION,
        generated_at: options.generated_at,
        valid_until: until,
        timezone: zone,
        week_start: schedule.project.week_start,
        windows,
        blocked_dates,
        default_capacity: rules.default_capacity(),
    };
    Ok(GeneratedReport { report, warnings })
}

/// Returns the local dates of `[from, until)` that have time inside the working hours but no
/// working time, because vacations or leaves cover all of it.
fn blocked_dates(
    scheduled: &[Interval],
    working: &[Interval],
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    zone: Tz,
) -> Vec<NaiveDate> {
    let mut blocked = Vec::new();
    if scheduled.is_empty() {
        return blocked;
    }
    let end = until
        .checked_sub_signed(Duration::seconds(1))
        .unwrap_or(until);
    let last = local_date(end, zone);
    let mut date = local_date(from, zone);
    while date <= last {
        let spans = LocalDay::new(date, zone).whole();
        let inside = |list: &[Interval]| {
            spans.iter().any(|span| {
                let span = Interval {
                    start: span.start.max(from),
                    end: span.end.min(until),
                };
                span.start < span.end && overlaps(list, span)
            })
        };
        if inside(scheduled) && !inside(working) {
            blocked.push(date);
        }
        let Some(next) = date.succ_opt() else { break };
        date = next;
    }
    blocked
}

fn time_frame_warnings(
    schedule: &Schedule,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Vec<String> {
    let project = &schedule.project;
    let zone = project.timezone;
    let show = |at: DateTime<Utc>| {
        format!(
            "{} {}",
            at.with_timezone(&zone).format("%Y-%m-%d %H:%M"),
            zone
        )
    };
    let mut warnings = Vec::new();
    if project.start > from && project.start < until {
        warnings.push(format!(
            "the schedule's time frame starts on {}: no calls are allowed before it; move the project start earlier",
            show(project.start)
        ));
    }
    if project.end <= from || project.start >= until {
        warnings.push(format!(
            "the horizon lies outside the schedule's time frame ({} to {}): no calls are allowed in it; \
             extend the project over it or start the horizon inside the time frame",
            show(project.start),
            show(project.end)
        ));
    } else if project.end < until {
        warnings.push(format!(
            "the schedule's time frame ends on {}: no calls will be allowed after it; extend the project end",
            show(project.end)
        ));
    }
    warnings
}
