//! Capacity: the limits in force for a resource at an instant.

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};
use chrono_tz::Tz;

use super::local::{LocalDay, local_date};
use crate::report::{AvailabilityWindow, Capacity};
use crate::schedule::{Interval, Limit, Resource};

/// The count limits of one resource, evaluated in a time zone.
///
/// A limit applies at an instant when its `period` contains the instant, its `days` contain the
/// local weekday, its `hours` contain the local time, and its `resources` are empty or name the
/// resource. The capacity in force is, for each window kind, the smallest value among the
/// limits of that kind that apply.
#[derive(Debug, Clone)]
pub struct CapacityRules<'a> {
    limits: Vec<&'a Limit>,
    zone: Tz,
}

impl<'a> CapacityRules<'a> {
    /// Collects the limits of `resource` that apply to it, evaluated in `zone`.
    pub fn new(resource: &'a Resource, zone: Tz) -> CapacityRules<'a> {
        let limits = resource
            .limits
            .iter()
            .filter(|limit| limit.resources.is_empty() || limit.resources.contains(&resource.id))
            .collect();
        CapacityRules { limits, zone }
    }

    /// Returns the capacity of the limits that no `period`, `days` or `hours` narrow.
    pub fn default_capacity(&self) -> Capacity {
        self.limits
            .iter()
            .filter(|limit| {
                limit.period.is_none() && limit.days.is_none() && limit.hours.is_empty()
            })
            .fold(Capacity::UNLIMITED, |capacity, limit| {
                capacity.min(&single(limit))
            })
    }

    /// Returns the capacity in force at `at`.
    pub fn capacity_at(&self, at: DateTime<Utc>) -> Capacity {
        let local = at.with_timezone(&self.zone);
        let weekday = local.weekday();
        let second = local.num_seconds_from_midnight();
        self.limits
            .iter()
            .filter(|limit| limit.period.is_none_or(|period| period.contains(at)))
            .filter(|limit| limit.applies_on(weekday))
            .filter(|limit| {
                limit.hours.is_empty()
                    || limit
                        .hours
                        .iter()
                        .any(|range| range.start <= second && second < range.end)
            })
            .fold(Capacity::UNLIMITED, |capacity, limit| {
                capacity.min(&single(limit))
            })
    }

    /// Appends the windows of the working interval `interval` to `windows`: one per stretch of
    /// constant capacity, merged with the last window when it ends where `interval` starts with
    /// the same capacity.
    pub fn split_into(&self, interval: Interval, windows: &mut Vec<AvailabilityWindow>) {
        let mut cuts = self.changes_within(interval);
        cuts.push(interval.end);
        let mut start = interval.start;
        for end in cuts {
            let capacity = self.capacity_at(start);
            match windows.last_mut() {
                Some(last) if last.end == start && last.capacity == capacity => last.end = end,
                _ => windows.push(AvailabilityWindow {
                    start,
                    end,
                    capacity,
                }),
            }
            start = end;
        }
    }

    /// Returns the instants strictly inside `interval` where a limit may start or stop applying,
    /// sorted and without duplicates.
    fn changes_within(&self, interval: Interval) -> Vec<DateTime<Utc>> {
        let mut cuts: Vec<DateTime<Utc>> = Vec::new();
        for limit in &self.limits {
            if let Some(period) = limit.period {
                cuts.extend([period.start, period.end]);
            }
        }

        let by_day = self
            .limits
            .iter()
            .any(|limit| limit.days.is_some() || !limit.hours.is_empty());
        if by_day {
            let last = local_date(interval.end, self.zone);
            let mut date = local_date(interval.start, self.zone)
                .pred_opt()
                .unwrap_or(NaiveDate::MIN);
            while date <= last {
                let day = LocalDay::new(date, self.zone);
                cuts.extend(day.whole().iter().flat_map(|span| [span.start, span.end]));
                for limit in &self.limits {
                    for range in &limit.hours {
                        cuts.extend(
                            day.instants(range.start, range.end)
                                .iter()
                                .flat_map(|span| [span.start, span.end]),
                        );
                    }
                }
                let Some(next) = date.succ_opt() else { break };
                date = next;
            }
        }

        cuts.retain(|cut| interval.start < *cut && *cut < interval.end);
        cuts.sort();
        cuts.dedup();
        cuts
    }
}

fn single(limit: &Limit) -> Capacity {
    let mut capacity = Capacity::UNLIMITED;
    capacity.set(limit.kind.window(), Some(limit.value));
    capacity
}
