//! Working time and capacity: what a schedule means for one resource, instant by instant.
//!
//! [`WorkingTime`] computes the exact intervals in which a resource works, walking local
//! calendar days of its time zone, so working hours keep to the wall clock across
//! daylight-saving changes. [`CapacityRules`] returns the limits in force at an instant and
//! splits working intervals where they change. [`LocalDay`] maps a local time range of one date
//! to the instants that have it. No time is sliced into slots: every boundary is exact to the
//! second.
//!
//! ```
//! use chrono::{DateTime, NaiveDate, Utc};
//! use highway_ratelimit::calendar::LocalDay;
//!
//! // New York skips 02:00 - 03:00 on 2025-03-09, so 01:00 - 04:00 local lasts two hours.
//! let day = LocalDay::new(NaiveDate::from_ymd_opt(2025, 3, 9).unwrap(), chrono_tz::America::New_York);
//! let instants = day.instants(3600, 4 * 3600);
//! let start: DateTime<Utc> = "2025-03-09T06:00:00Z".parse().unwrap();
//! let end: DateTime<Utc> = "2025-03-09T08:00:00Z".parse().unwrap();
//! assert_eq!((instants[0].start, instants[0].end), (start, end));
//! ```

mod capacity;
pub(crate) mod intervals;
mod local;
mod working;

pub use capacity::CapacityRules;
pub use local::{LocalDay, local_date};
pub use working::{WorkingIntervals, WorkingTime, leave_label};
