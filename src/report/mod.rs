//! The availability report: when a resource may be used over a horizon, and how much.
//!
//! A report is computed once from a schedule (the configuration phase) and then answers, for
//! every call, whether the call falls in an allowed window and which capacity applies, with a
//! binary search over its windows.

use chrono::{DateTime, NaiveDate, Utc, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::window::WindowKind;

mod generate;
mod week;

pub use generate::{MAX_HORIZON_DAYS, add_local_days, resource_zone, select_resource};
pub use week::WeekView;

/// The version written into new reports.
pub const REPORT_VERSION: u32 = 1;

/// The maximum number of calls or cost units per window kind; `None` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Capacity {
    /// Per local clock minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_minute: Option<u64>,
    /// Per local clock hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_hour: Option<u64>,
    /// Per local calendar day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_day: Option<u64>,
    /// Per local calendar week.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_week: Option<u64>,
    /// Per local calendar month.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_month: Option<u64>,
}

impl Capacity {
    /// A capacity with no limit in any window.
    pub const UNLIMITED: Capacity = Capacity {
        per_minute: None,
        per_hour: None,
        per_day: None,
        per_week: None,
        per_month: None,
    };

    /// Returns the limit for `kind`, `None` when unlimited.
    pub fn get(&self, kind: WindowKind) -> Option<u64> {
        match kind {
            WindowKind::Minute => self.per_minute,
            WindowKind::Hour => self.per_hour,
            WindowKind::Day => self.per_day,
            WindowKind::Week => self.per_week,
            WindowKind::Month => self.per_month,
        }
    }

    /// Sets the limit for `kind`.
    pub fn set(&mut self, kind: WindowKind, limit: Option<u64>) {
        let slot = match kind {
            WindowKind::Minute => &mut self.per_minute,
            WindowKind::Hour => &mut self.per_hour,
            WindowKind::Day => &mut self.per_day,
            WindowKind::Week => &mut self.per_week,
            WindowKind::Month => &mut self.per_month,
        };
        *slot = limit;
    }

    /// Returns the capacity that satisfies both: the smaller limit of each kind.
    pub fn min(&self, other: &Capacity) -> Capacity {
        let mut combined = Capacity::UNLIMITED;
        for kind in WindowKind::ALL {
            let limit = match (self.get(kind), other.get(kind)) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            combined.set(kind, limit);
        }
        combined
    }

    /// Returns the limited window kinds with their limits, shortest window first.
    pub fn limits(&self) -> impl Iterator<Item = (WindowKind, u64)> + '_ {
        WindowKind::ALL
            .into_iter()
            .filter_map(|kind| self.get(kind).map(|limit| (kind, limit)))
    }

    /// Returns whether no window kind is limited.
    pub fn is_unlimited(&self) -> bool {
        self.limits().next().is_none()
    }
}

/// A maximal span of time in which the resource may be used, with one capacity throughout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AvailabilityWindow {
    /// The first instant of the window, RFC 3339 UTC.
    pub start: DateTime<Utc>,
    /// The first instant after the window, RFC 3339 UTC.
    pub end: DateTime<Utc>,
    /// The limits in force throughout the window.
    pub capacity: Capacity,
}

/// The availability report of one resource over a horizon.
///
/// The JSON form keeps the field names of the Highway design (`version`, `generated_at`,
/// `valid_until`, `timezone`, `windows`, `blocked_dates`, `default_capacity`) and adds
/// `week_start`, which decides where week windows begin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AvailabilityReport {
    /// The report format version, [`REPORT_VERSION`].
    pub version: u32,
    /// When the report was computed.
    pub generated_at: DateTime<Utc>,
    /// The end of the horizon: the report does not cover later instants.
    pub valid_until: DateTime<Utc>,
    /// The time zone whose calendar the day, week and month windows follow.
    pub timezone: Tz,
    /// The first day of a week window.
    #[serde(default = "default_week_start", with = "weekday_name")]
    pub week_start: Weekday,
    /// The allowed windows, sorted and not overlapping.
    pub windows: Vec<AvailabilityWindow>,
    /// Local dates in the horizon with no working time because of vacations or leaves.
    pub blocked_dates: Vec<NaiveDate>,
    /// The limits that apply when no narrower limit does.
    pub default_capacity: Capacity,
}

/// The reason an instant is not inside an allowed window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// The instant's local date is blocked by a vacation or leave.
    BlockedDate(NaiveDate),
    /// The instant is outside the working hours.
    OutsideHours,
    /// The instant is at or after `valid_until`: the report must be computed again.
    Expired,
}

impl AvailabilityReport {
    /// Returns whether the report speaks for `at`: from `generated_at` up to `valid_until`.
    /// An instant before the report was computed (a replay) or after its horizon needs a report
    /// computed for it.
    pub fn covers(&self, at: DateTime<Utc>) -> bool {
        self.generated_at <= at && at < self.valid_until
    }

    /// Returns the window that contains `at`. O(log n).
    pub fn window_at(&self, at: DateTime<Utc>) -> Option<&AvailabilityWindow> {
        let index = self.windows.partition_point(|window| window.end <= at);
        self.windows.get(index).filter(|window| window.start <= at)
    }

    /// Returns whether `at` lies inside an allowed window. O(log n).
    pub fn is_allowed(&self, at: DateTime<Utc>) -> bool {
        self.window_at(at).is_some()
    }

    /// Returns the capacity in force at `at`, `None` outside the allowed windows. O(log n).
    pub fn capacity_at(&self, at: DateTime<Utc>) -> Option<&Capacity> {
        self.window_at(at).map(|window| &window.capacity)
    }

    /// Returns the start of the first allowed window that begins after `at`, `None` when there
    /// is none before `valid_until`. O(log n).
    pub fn next_allowed(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let index = self.windows.partition_point(|window| window.start <= at);
        self.windows.get(index).map(|window| window.start)
    }

    /// Returns `at` when it lies inside an allowed window, else the start of the next one; `None`
    /// when no window starts before `valid_until`. O(log n).
    pub fn first_allowed_from(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.is_allowed(at) {
            Some(at)
        } else {
            self.next_allowed(at)
        }
    }

    /// Returns why `at` is not inside an allowed window, `None` when it is. O(log n).
    pub fn closed_at(&self, at: DateTime<Utc>) -> Option<Closed> {
        if self.is_allowed(at) {
            return None;
        }
        if at >= self.valid_until {
            return Some(Closed::Expired);
        }
        let date = at.with_timezone(&self.timezone).date_naive();
        if self.blocked_dates.binary_search(&date).is_ok() {
            Some(Closed::BlockedDate(date))
        } else {
            Some(Closed::OutsideHours)
        }
    }
}

fn default_week_start() -> Weekday {
    Weekday::Mon
}

mod weekday_name {
    use chrono::Weekday;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        day: &Weekday,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let name = match day {
            Weekday::Mon => "monday",
            Weekday::Tue => "tuesday",
            Weekday::Wed => "wednesday",
            Weekday::Thu => "thursday",
            Weekday::Fri => "friday",
            Weekday::Sat => "saturday",
            Weekday::Sun => "sunday",
        };
        serializer.serialize_str(name)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Weekday, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse::<Weekday>().map_err(|_| {
            serde::de::Error::custom(format!(
                "invalid week_start {name:?}: expected a weekday such as \"monday\""
            ))
        })
    }
}

/// The resource and horizon of a report to compute.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// The resource whose availability is reported; `None` when the schedule has one resource.
    pub resource: Option<String>,
    /// The start of the horizon.
    pub from: DateTime<Utc>,
    /// The length of the horizon in local calendar days, from 1 to [`MAX_HORIZON_DAYS`].
    pub days: u32,
    /// The instant written as `generated_at`. The report covers no instant before it (see
    /// [`AvailabilityReport::covers`]), so pass `from`. With a later instant the report does not
    /// cover the start of its horizon. With an earlier one it covers time before its horizon,
    /// where it has no windows.
    pub generated_at: DateTime<Utc>,
}

impl ReportOptions {
    /// The horizon of [`ReportOptions::new`], in days: the horizon of the reports that the
    /// rate limit layer and the admin API compute by default.
    pub const DEFAULT_DAYS: u32 = 7;

    /// Returns the options of a report of the only resource of a schedule, for
    /// [`DEFAULT_DAYS`](Self::DEFAULT_DAYS) days from `from`, stamped with `from` as its
    /// `generated_at`. Change a field with the struct update syntax:
    ///
    /// ```
    /// use highway_ratelimit::report::ReportOptions;
    ///
    /// let now = chrono::Utc::now();
    /// let options = ReportOptions { resource: Some("smtp".to_owned()), ..ReportOptions::new(now) };
    /// assert_eq!((options.days, options.generated_at), (7, now));
    /// ```
    pub fn new(from: DateTime<Utc>) -> Self {
        ReportOptions {
            resource: None,
            from,
            days: Self::DEFAULT_DAYS,
            generated_at: from,
        }
    }
}

/// The error for a report that cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// No resource has the requested id.
    #[error("unknown resource {id:?}: the schedule has {available}")]
    UnknownResource {
        /// The requested id.
        id: String,
        /// The ids the schedule has, for the message.
        available: String,
    },
    /// The schedule has several resources and none was chosen.
    #[error("the schedule has several resources ({available}): choose one")]
    ResourceRequired {
        /// The ids the schedule has, for the message.
        available: String,
    },
    /// The schedule has no resource.
    #[error("the schedule has no resource: add a `resource ID \"Name\" {{ … }}` block")]
    NoResource,
    /// The horizon is empty or too long.
    #[error("invalid horizon of {days} days: expected 1 to 3660")]
    InvalidHorizon {
        /// The requested length.
        days: u32,
    },
    /// The horizon does not lie within the years 0 to 9999, which RFC 3339 timestamps can hold.
    #[error(
        "invalid report start {from}: a horizon of {days} days from it leaves the years 0 to 9999; choose another start or fewer days"
    )]
    OutOfRange {
        /// The requested start.
        from: DateTime<Utc>,
        /// The requested length.
        days: u32,
    },
}

/// A report with the warnings found while computing it.
#[derive(Debug, Clone)]
pub struct GeneratedReport {
    /// The report.
    pub report: AvailabilityReport,
    /// Warnings such as "the project's time frame ends inside the horizon".
    pub warnings: Vec<String>,
}

impl AvailabilityReport {
    /// Computes the report of one resource of `schedule` over the horizon of `options`.
    pub fn generate(
        schedule: &crate::schedule::Schedule,
        options: &ReportOptions,
    ) -> Result<GeneratedReport, ReportError> {
        generate::generate(schedule, options)
    }
}
