//! An availability report with the largest cost each of its windows and the later ones admit.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::report::AvailabilityReport;
use crate::window::WindowKind;

/// A report that a policy applies, with, for each of its windows, the largest cost that it or a
/// later window admits. A call whose cost is above the limit in force is rejected for good only
/// when no later window admits it, and this finds that with a binary search instead of a scan
/// of the report.
#[derive(Debug)]
pub(crate) struct IndexedReport {
    report: Arc<AvailabilityReport>,
    largest_costs: Box<[u64]>,
}

impl IndexedReport {
    pub(crate) fn new(report: Arc<AvailabilityReport>) -> Self {
        let mut largest_costs: Box<[u64]> = report
            .windows
            .iter()
            .map(|window| {
                window
                    .capacity
                    .limits()
                    .map(|(_, limit)| limit)
                    .min()
                    .unwrap_or(u64::MAX)
            })
            .collect();
        for index in (1..largest_costs.len()).rev() {
            largest_costs[index - 1] = largest_costs[index - 1].max(largest_costs[index]);
        }
        IndexedReport {
            report,
            largest_costs,
        }
    }

    pub(crate) fn report(&self) -> &AvailabilityReport {
        &self.report
    }

    /// Returns the tightest limit of the window that starts after `now` and admits the largest
    /// cost, or `None` when no window starts after `now`. A cost that no later window admits
    /// exceeds this limit even where the report has the most room.
    pub(crate) fn largest_later_limit(&self, now: DateTime<Utc>) -> Option<(WindowKind, u64)> {
        let later = self
            .report
            .windows
            .partition_point(|window| window.start <= now);
        self.report.windows[later..]
            .iter()
            .filter_map(|window| window.capacity.limits().min_by_key(|&(_, limit)| limit))
            .max_by_key(|&(_, limit)| limit)
    }

    /// Returns whether no window that starts after `now` admits a call of `cost`.
    pub(crate) fn never_admits(&self, cost: u64, now: DateTime<Utc>) -> bool {
        let later = self
            .report
            .windows
            .partition_point(|window| window.start <= now);
        self.largest_costs
            .get(later)
            .is_none_or(|&largest| cost > largest)
    }
}
