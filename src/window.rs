//! Calendar windows: the minute, hour, day, week and month over which calls are counted.
//!
//! Every window is a fixed window aligned to the local calendar of a time zone. A day starts at
//! local midnight, so it lasts 23 or 25 hours on a daylight-saving change; a week starts at local
//! midnight of the configured first weekday; a month starts at local midnight of the 1st. Where
//! local midnight does not exist (America/Santiago moves its clocks at 00:00), the day starts at
//! the first instant that exists on that date. Minute and hour windows follow the local clock too,
//! so an hour window in Asia/Kolkata runs from :00 to :00 local time.

use std::fmt;
use std::str::FromStr;

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc, Weekday,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// A kind of window over which calls are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WindowKind {
    /// A local clock minute.
    Minute,
    /// A local clock hour.
    Hour,
    /// A local calendar day, from midnight to midnight.
    Day,
    /// A local calendar week, from the configured first weekday.
    Week,
    /// A local calendar month, from the 1st.
    Month,
}

impl WindowKind {
    /// Every kind, shortest first.
    pub const ALL: [WindowKind; 5] = [
        WindowKind::Minute,
        WindowKind::Hour,
        WindowKind::Day,
        WindowKind::Week,
        WindowKind::Month,
    ];

    /// The name stored in the `window_type` column and used in messages: `minute` … `month`.
    pub const fn as_str(self) -> &'static str {
        match self {
            WindowKind::Minute => "minute",
            WindowKind::Hour => "hour",
            WindowKind::Day => "day",
            WindowKind::Week => "week",
            WindowKind::Month => "month",
        }
    }

    /// Returns the window of this kind that contains `at`, in the calendar of `zone`.
    pub fn window_at(self, at: DateTime<Utc>, zone: Tz, week_start: Weekday) -> Window {
        let local = at.with_timezone(&zone).naive_local();
        let (start, end) = match self {
            WindowKind::Minute | WindowKind::Hour => {
                let step = if self == WindowKind::Minute { 60 } else { 3600 };
                // Align on the local clock through the offset in force at `at`. An offset change
                // by a whole number of hours keeps this alignment; a half-hour change (Lord Howe)
                // gives one hour window that overlaps the previous one by 30 minutes.
                let offset = local.and_utc().timestamp() - at.timestamp();
                let local_secs = at.timestamp() + offset;
                let start = local_secs - local_secs.rem_euclid(step) - offset;
                let start = DateTime::from_timestamp(start, 0).unwrap_or(at);
                (start, start + Duration::seconds(step))
            }
            WindowKind::Day => {
                let date = local.date();
                (start_of_day(date, zone), start_of_day(next_day(date), zone))
            }
            WindowKind::Week => {
                let date = local.date();
                let back = (7 + date.weekday().num_days_from_monday() as i64
                    - week_start.num_days_from_monday() as i64)
                    % 7;
                let first = date - Duration::days(back);
                (
                    start_of_day(first, zone),
                    start_of_day(first + Duration::days(7), zone),
                )
            }
            WindowKind::Month => {
                let first = date_or_max(NaiveDate::from_ymd_opt(local.year(), local.month(), 1));
                let next = if local.month() == 12 {
                    NaiveDate::from_ymd_opt(local.year() + 1, 1, 1)
                } else {
                    NaiveDate::from_ymd_opt(local.year(), local.month() + 1, 1)
                };
                (
                    start_of_day(first, zone),
                    start_of_day(date_or_max(next), zone),
                )
            }
        };
        Window {
            kind: self,
            start,
            end,
        }
    }
}

impl fmt::Display for WindowKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a window kind name that is not `minute`, `hour`, `day`, `week` or `month`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid window kind {0:?}: expected minute, hour, day, week or month")]
pub struct ParseWindowKindError(pub String);

impl FromStr for WindowKind {
    type Err = ParseWindowKindError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        WindowKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| ParseWindowKindError(s.to_owned()))
    }
}

/// One window: a kind and the half-open interval `[start, end)` it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    /// The kind of window.
    pub kind: WindowKind,
    /// The first instant inside the window.
    pub start: DateTime<Utc>,
    /// The first instant after the window, when its counter resets.
    pub end: DateTime<Utc>,
}

impl Window {
    /// Returns whether `at` lies inside `[start, end)`.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.start <= at && at < self.end
    }
}

/// Returns the first instant of the local calendar day `date` in `zone`.
///
/// That is local midnight, or, where the clocks skip midnight, the first local time that exists
/// on that date.
pub fn start_of_day(date: NaiveDate, zone: Tz) -> DateTime<Utc> {
    first_instant_at_or_after(date.and_hms_opt(0, 0, 0).unwrap_or_default(), zone)
}

/// Returns the first instant whose local time in `zone` is `local`.
///
/// When `local` falls in the gap of a daylight-saving change, returns the instant `local` would
/// be under the offset in force before the gap, which is `local` shifted forward by the gap's
/// length; for a local time at the start of a gap, that is the instant the clocks jump.
pub fn first_instant_at_or_after(local: NaiveDateTime, zone: Tz) -> DateTime<Utc> {
    match zone.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(earliest, _) => earliest.with_timezone(&Utc),
        LocalResult::None => {
            // Offset changes are months apart in practice, so the offset 26 hours earlier is the
            // one in force before the gap.
            let before = local - Duration::hours(26);
            let offset_before = match zone.from_local_datetime(&before) {
                LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => {
                    t.naive_local().and_utc().timestamp() - t.timestamp()
                }
                LocalResult::None => 0,
            };
            let jump = local.and_utc().timestamp() - offset_before;
            DateTime::from_timestamp(jump, 0).unwrap_or_else(|| local.and_utc())
        }
    }
}

fn next_day(date: NaiveDate) -> NaiveDate {
    date.succ_opt().unwrap_or(NaiveDate::MAX)
}

fn date_or_max(date: Option<NaiveDate>) -> NaiveDate {
    date.unwrap_or(NaiveDate::MAX)
}
