//! Working time: the instants at which a resource works.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use chrono_tz::Tz;

use super::intervals::{clip, normalize, subtract};
use super::local::{LocalDay, local_date};
use crate::schedule::{Interval, Leave, LeaveKind, Resource, Schedule, Shift, WorkingHours};

/// The working time of one resource of a schedule.
///
/// An instant is working time when it lies inside the project's time frame, its local time
/// lies inside the working hours of its local weekday, and no vacation or leave covers it.
/// Inside a shift assignment the shift's working hours replace the resource's, and the shift's
/// leaves apply too. A shift with `replace` also discards the global and resource leaves there.
/// Working hours are local time in the resource's zone (the project's when it sets none), and a
/// shift's own `timezone`, when set, is the zone of that shift's hours.
#[derive(Debug, Clone)]
pub struct WorkingTime<'a> {
    schedule: &'a Schedule,
    resource: &'a Resource,
    zone: Tz,
}

/// The working time over a span, before and after vacations and leaves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkingIntervals {
    /// The instants inside the working hours (and the project's time frame), sorted and merged.
    pub scheduled: Vec<Interval>,
    /// `scheduled` less vacations and leaves: the working time.
    pub working: Vec<Interval>,
}

/// A part of time with one set of working hours and leaves.
struct Regime<'a> {
    span: Interval,
    hours: &'a WorkingHours,
    zone: Tz,
    shift: Option<&'a Shift>,
}

impl<'a> WorkingTime<'a> {
    /// Prepares the working time of `resource`, which must belong to `schedule`.
    pub fn new(schedule: &'a Schedule, resource: &'a Resource) -> WorkingTime<'a> {
        let zone = resource.timezone.unwrap_or(schedule.project.timezone);
        WorkingTime {
            schedule,
            resource,
            zone,
        }
    }

    /// Returns the zone of the resource's working hours and calendar: its own, else the project's.
    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// The resource.
    pub fn resource(&self) -> &'a Resource {
        self.resource
    }

    /// Returns the working time inside `[from, to)`, with the time the working hours alone give.
    pub fn between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> WorkingIntervals {
        let project = &self.schedule.project;
        let span = Interval {
            start: from.max(project.start),
            end: to.min(project.end),
        };
        if span.start >= span.end {
            return WorkingIntervals::default();
        }

        let mut result = WorkingIntervals::default();
        for regime in self.regimes(span) {
            let scheduled = hours_between(regime.hours, regime.zone, regime.span);
            let working = subtract(&scheduled, &self.leaves_in(&regime));
            result.scheduled.extend(scheduled);
            result.working.extend(working);
        }
        result.scheduled = normalize(result.scheduled);
        result.working = normalize(result.working);
        result
    }

    /// Returns the working intervals inside `[from, to)`.
    pub fn working_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Interval> {
        self.between(from, to).working
    }

    /// Returns whether `at` is working time.
    pub fn is_working(&self, at: DateTime<Utc>) -> bool {
        !self
            .working_between(at, at + Duration::seconds(1))
            .is_empty()
    }

    /// Returns the vacations and leaves that apply to the resource on the local date `date` (in
    /// [`WorkingTime::zone`]). These are the global ones, the resource's own and inherited ones,
    /// and those of shifts assigned then. Inside a `replace` shift assignment, global and
    /// resource leaves are left out.
    pub fn leaves_on(&self, date: NaiveDate) -> Vec<&'a Leave> {
        let mut found: Vec<&'a Leave> = Vec::new();
        for span in LocalDay::new(date, self.zone).whole() {
            for regime in self.regimes(span) {
                for leave in self.applicable_leaves(&regime) {
                    let overlaps = leave.interval.start < regime.span.end
                        && regime.span.start < leave.interval.end;
                    if overlaps && !found.iter().any(|seen| std::ptr::eq(*seen, leave)) {
                        found.push(leave);
                    }
                }
            }
        }
        found
    }

    /// Splits `span` into the parts outside and inside shift assignments.
    fn regimes(&self, span: Interval) -> Vec<Regime<'a>> {
        let own = |span| Regime {
            span,
            hours: &self.resource.working_hours,
            zone: self.zone,
            shift: None,
        };
        let mut assignments: Vec<_> = self
            .resource
            .shifts
            .iter()
            .filter_map(|assignment| {
                Some((assignment.interval, self.schedule.shift(&assignment.shift)?))
            })
            .collect();
        assignments.sort_by_key(|(interval, _)| interval.start);

        let mut regimes = Vec::new();
        let mut cursor = span.start;
        for (interval, shift) in assignments {
            let start = interval.start.max(cursor);
            let end = interval.end.min(span.end);
            if start >= end {
                continue;
            }
            if cursor < start {
                regimes.push(own(Interval {
                    start: cursor,
                    end: start,
                }));
            }
            let zone = shift.timezone.unwrap_or(self.zone);
            regimes.push(Regime {
                span: Interval { start, end },
                hours: &shift.working_hours,
                zone,
                shift: Some(shift),
            });
            cursor = end;
        }
        if cursor < span.end {
            regimes.push(own(Interval {
                start: cursor,
                end: span.end,
            }));
        }
        regimes
    }

    fn applicable_leaves(&self, regime: &Regime<'a>) -> Vec<&'a Leave> {
        let replace = regime.shift.is_some_and(|shift| shift.replace);
        let mut leaves: Vec<&'a Leave> = Vec::new();
        if !replace {
            leaves.extend(&self.schedule.leaves);
            leaves.extend(&self.resource.leaves);
        }
        if let Some(shift) = regime.shift {
            leaves.extend(&shift.leaves);
        }
        leaves
    }

    fn leaves_in(&self, regime: &Regime<'a>) -> Vec<Interval> {
        self.applicable_leaves(regime)
            .iter()
            .map(|leave| leave.interval)
            .collect()
    }
}

/// Returns a short description of a leave for people: its name, else its type.
pub fn leave_label(leave: &Leave) -> String {
    if let Some(name) = leave.name.as_deref().filter(|name| !name.is_empty()) {
        return name.to_owned();
    }
    let kind = match leave.kind {
        LeaveKind::Project => "project leave",
        LeaveKind::Annual => "annual leave",
        LeaveKind::Special => "special leave",
        LeaveKind::Sick => "sick leave",
        LeaveKind::Unpaid => "unpaid leave",
        LeaveKind::Holiday => "vacation",
        LeaveKind::Unemployed => "unemployed",
    };
    kind.to_owned()
}

/// Returns the instants of `span` whose local time in `zone` lies inside `hours`, walking the
/// local dates of the span.
fn hours_between(hours: &WorkingHours, zone: Tz, span: Interval) -> Vec<Interval> {
    let mut found = Vec::new();
    let last = local_date(span.end, zone)
        .succ_opt()
        .unwrap_or(NaiveDate::MAX);
    let mut date = local_date(span.start, zone)
        .pred_opt()
        .unwrap_or(NaiveDate::MIN);
    while date <= last {
        let ranges = hours.on(date.weekday());
        if !ranges.is_empty() {
            let day = LocalDay::new(date, zone);
            for range in ranges {
                found.extend(day.instants(range.start, range.end));
            }
        }
        let Some(next) = date.succ_opt() else { break };
        date = next;
    }
    clip(&normalize(found), span)
}
