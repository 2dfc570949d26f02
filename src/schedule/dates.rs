//! Dates, times of day and calendar durations as TaskJuggler writes them.

use chrono::{DateTime, Duration, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// The first and last year a date may have.
pub(crate) const YEARS: std::ops::RangeInclusive<i32> = 1970..=9999;

/// Seconds of TaskJuggler's calendar month: 30.4167 days.
const MONTH_SECONDS: f64 = 30.4167 * 86_400.0;

/// Reads `YYYY-MM-DD[-HH:MM[:SS]][-±HHMM]`; without an offset the date is local time in `zone`.
pub(crate) fn parse_date(text: &str, zone: Tz) -> Result<DateTime<Utc>, String> {
    let mut parts = Fields { text, rest: text };
    let year: i32 = parts.number(4)?;
    parts.dash()?;
    let month: u32 = parts.number(2)?;
    parts.dash()?;
    let day: u32 = parts.number(2)?;
    let (mut hour, mut minute, mut second) = (0, 0, 0);
    let mut offset = None;
    if parts.rest.starts_with('-') && parts.rest[1..].contains(':') {
        parts.dash()?;
        hour = parts.number(2)?;
        parts.expect(':')?;
        minute = parts.number(2)?;
        if parts.rest.starts_with(':') {
            parts.expect(':')?;
            second = parts.number(2)?;
        }
    }
    if parts.rest.starts_with('-') {
        parts.dash()?;
        let sign = match parts.rest.chars().next() {
            Some('+') => 1,
            Some('-') => -1,
            _ => {
                return Err(format!(
                    "invalid date `{text}`: the zone offset needs a sign after the dash, as in `-+0200` or `--0700`"
                ));
            }
        };
        parts.rest = &parts.rest[1..];
        let hhmm: i32 = parts.number(4)?;
        let (hours, minutes) = (hhmm / 100, hhmm % 100);
        if minutes >= 60 || !(-1200..=1400).contains(&(sign * hhmm)) {
            return Err(format!(
                "invalid date `{text}`: the zone offset must lie between -1200 and +1400 with minutes below 60"
            ));
        }
        offset = Some(sign * (hours * 3600 + minutes * 60));
    }

    if !YEARS.contains(&year) {
        return Err(format!(
            "invalid date `{text}`: the year must lie between 1970 and 9999"
        ));
    }
    if !(1..=12).contains(&month) {
        return Err(format!(
            "invalid date `{text}`: the month must lie between 1 and 12"
        ));
    }
    let Some(date) = NaiveDate::from_ymd_opt(year, month, day) else {
        return Err(format!(
            "invalid date `{text}`: month {month} of {year} has no day {day}"
        ));
    };
    if hour > 23 || minute > 59 || second > 59 {
        return Err(format!(
            "invalid date `{text}`: the time must lie between 00:00 and 23:59:59; write midnight as the next day's 00:00"
        ));
    }
    let Some(naive) = date.and_hms_opt(hour, minute, second) else {
        return Err(format!("invalid date `{text}`"));
    };
    match offset {
        Some(offset) => Ok(Utc.from_utc_datetime(&(naive - Duration::seconds(offset.into())))),
        None => local_to_utc(naive, zone)
            .ok_or_else(|| format!("invalid date `{text}`: it does not exist in time zone {zone}")),
    }
}

/// Converts local time in `zone` to UTC: the earlier instant of a repeated hour, and for a time
/// skipped by a daylight-saving change, the instant it would be under the offset before the
/// change. So a skipped time moves forward by the length of the gap, which is 30 minutes in
/// Australia/Lord_Howe.
pub(crate) fn local_to_utc(naive: NaiveDateTime, zone: Tz) -> Option<DateTime<Utc>> {
    Some(crate::window::first_instant_at_or_after(naive, zone))
}

/// Returns whether the date `text` has no zone offset and names a local time that a
/// daylight-saving change of `zone` skips.
pub(crate) fn is_skipped_local_time(text: &str, zone: Tz) -> bool {
    wall_clock_time(text).is_some_and(|local| zone.from_local_datetime(&local) == LocalResult::None)
}

/// Returns the local date and time that `text` names, or `None` when it has a zone offset or is
/// not a date.
pub(crate) fn wall_clock_time(text: &str) -> Option<NaiveDateTime> {
    let has_offset = text.contains("-+") || text.contains("--");
    if has_offset {
        return None;
    }
    parse_date(text, Tz::UTC).ok().map(|at| at.naive_utc())
}

/// The same local wall-clock time on the next day: the end of a single-date leave.
pub(crate) fn same_time_next_day(at: DateTime<Utc>, zone: Tz) -> Option<DateTime<Utc>> {
    let local = at.with_timezone(&zone).naive_local();
    local_to_utc(local.checked_add_signed(Duration::days(1))?, zone)
}

/// Seconds of a calendar duration (`+2d`, `+1m`) of `number` (as written) `unit`s: `min` 60 s,
/// `h` 3 600 s, `d` 86 400 s, `w` 7 days, `m` 30.4167 days truncated to the resolution, `y` 365
/// days. The result must be a positive multiple of `resolution` seconds.
pub(crate) fn duration_seconds(number: &str, unit: &str, resolution: i64) -> Result<i64, String> {
    let written = format!("{number}{unit}");
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration `{written}`: expected a number such as 2 or 2.5"))?;
    let unit_seconds = match unit {
        "min" => 60.0,
        "h" => 3_600.0,
        "d" => 86_400.0,
        "w" => 604_800.0,
        "m" => MONTH_SECONDS,
        "y" => 365.0 * 86_400.0,
        _ => {
            return Err(format!(
                "invalid duration unit `{unit}`: expected min, h, d, w, m or y"
            ));
        }
    };
    let seconds = value * unit_seconds;
    if !seconds.is_finite() || seconds > 1e11 {
        return Err(format!(
            "duration `{written}` is too long: durations may span at most a few thousand years"
        ));
    }
    if seconds <= 0.0 {
        return Err(format!("duration `{written}` must be greater than zero"));
    }
    let seconds = if unit == "m" {
        (seconds as i64 / resolution) * resolution
    } else {
        seconds.round() as i64
    };
    if seconds == 0 || seconds % resolution != 0 {
        return Err(format!(
            "duration `{written}` is not a multiple of the timing resolution ({} min): round it to whole {} minute steps",
            resolution / 60,
            resolution / 60
        ));
    }
    Ok(seconds)
}

/// Reads `H:MM` or `HH:MM` as seconds after midnight; `24:00` is the end of the day.
pub(crate) fn parse_time(text: &str) -> Result<u32, String> {
    let (hours, minutes) = text
        .split_once(':')
        .ok_or_else(|| format!("invalid time `{text}`: expected HH:MM"))?;
    let hours: u32 = hours
        .parse()
        .map_err(|_| format!("invalid time `{text}`: expected HH:MM"))?;
    let minutes: u32 = minutes
        .parse()
        .map_err(|_| format!("invalid time `{text}`: expected HH:MM"))?;
    if minutes > 59 || hours > 24 || (hours == 24 && minutes > 0) {
        return Err(format!(
            "invalid time `{text}`: expected a time between 0:00 and 24:00"
        ));
    }
    Ok(hours * 3600 + minutes * 60)
}

struct Fields<'t> {
    text: &'t str,
    rest: &'t str,
}

impl Fields<'_> {
    fn number<T: std::str::FromStr>(&mut self, max_digits: usize) -> Result<T, String> {
        let end = self
            .rest
            .char_indices()
            .take_while(|(i, c)| *i < max_digits && c.is_ascii_digit())
            .count();
        let (digits, rest) = self.rest.split_at(end);
        self.rest = rest;
        digits.parse().map_err(|_| {
            format!(
                "invalid date `{}`: expected YYYY-MM-DD[-HH:MM[:SS]][-±HHMM]",
                self.text
            )
        })
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        match self.rest.strip_prefix(c) {
            Some(rest) => {
                self.rest = rest;
                Ok(())
            }
            None => Err(format!(
                "invalid date `{}`: expected YYYY-MM-DD[-HH:MM[:SS]][-±HHMM]",
                self.text
            )),
        }
    }

    fn dash(&mut self) -> Result<(), String> {
        self.expect('-')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_with_negative_offset() {
        let at = parse_date("2011-04-17-0:00--0700", Tz::UTC).unwrap();
        assert_eq!(at.to_rfc3339(), "2011-04-17T07:00:00+00:00");
    }

    #[test]
    fn date_local_to_zone() {
        let at = parse_date("2025-07-01", chrono_tz::Europe::Berlin).unwrap();
        assert_eq!(at.to_rfc3339(), "2025-06-30T22:00:00+00:00");
    }

    #[test]
    fn date_without_offset_sign() {
        let error = parse_date("2011-04-17-0:00-0700", Tz::UTC).unwrap_err();
        assert!(error.contains("needs a sign"), "{error}");
    }

    #[test]
    fn month_duration_truncated() {
        assert_eq!(
            duration_seconds("1", "m", 3600).unwrap(),
            30 * 86_400 + 10 * 3600
        );
        assert_eq!(duration_seconds("1", "y", 3600).unwrap(), 365 * 86_400);
    }

    #[test]
    fn time_bounds() {
        assert_eq!(parse_time("24:00").unwrap(), 86_400);
        assert!(parse_time("24:30").is_err());
        assert!(parse_time("9:75").is_err());
    }
}
