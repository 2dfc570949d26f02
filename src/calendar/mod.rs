//! Working time and capacity: what a schedule means for one resource, instant by instant.
//!
//! [`WorkingTime`] computes the exact intervals in which a resource works, walking local
//! calendar days of its time zone, so working hours keep to the wall clock across
//! daylight-saving changes. [`CapacityRules`] returns the limits in force at an instant and
//! splits working intervals where they change. [`LocalDay`] maps a local time range of one date
//! to the instants that have it. No time is sliced into slots: every boundary is exact to the
//! second.

mod capacity;
pub(crate) mod intervals;
mod local;
mod working;

pub use capacity::CapacityRules;
pub use local::{LocalDay, local_date};
pub use working::{WorkingIntervals, WorkingTime, leave_label};
