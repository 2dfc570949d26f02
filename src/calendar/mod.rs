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

/// Returns why `name` is not a zone the crate accepts where a time zone is written, or `None`
/// when it is `"UTC"` or a Region/City name.
///
/// TaskJuggler 3.8 accepts only those. The tz database's other names are abbreviations (`EST`,
/// `CET`) or legacy rules (`EST5EDT`). `EST` has no daylight saving time, so a calendar meant for
/// New York would run an hour off all summer.
pub(crate) fn zone_name_error(name: &str) -> Option<String> {
    if name == "UTC" || name.contains('/') {
        return None;
    }
    Some(format!(
        "time zone \"{name}\" is not a Region/City name: write \"UTC\" or the zone of a place, such as \"America/New_York\", or \"Etc/GMT+5\" for a fixed offset (UTC-05:00)"
    ))
}

/// Parses a time zone written outside a schedule (an option or a JSON field), with a message that
/// names the value and shows the expected form, or the right spelling of a miscapitalized name.
pub(crate) fn parse_zone_name(text: &str) -> Result<chrono_tz::Tz, String> {
    if let Some(message) = zone_name_error(text) {
        return Err(message);
    }
    text.parse().map_err(|_| {
        let spelled = chrono_tz::TZ_VARIANTS
            .iter()
            .find(|zone| zone.name().eq_ignore_ascii_case(text));
        match spelled {
            Some(zone) => format!(
                "unknown time zone {text:?}: zone names are case-sensitive; write {}",
                zone.name()
            ),
            None => format!(
                "unknown time zone {text:?}: expected an IANA name such as Europe/Berlin or UTC"
            ),
        }
    })
}
