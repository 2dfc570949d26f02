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

    /// Returns the name stored in the `window_type` column and used in messages: `minute` …
    /// `month`.
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
    ///
    /// NOTE: where the clocks go back across midnight (Newfoundland and Moncton, which changed at
    /// 00:01 until 2010), the local date runs backwards, and the day, week or month window of an
    /// instant in the repeated minutes ends before that instant. No zone does this after 2010.
    ///
    /// An instant within two days of either end of chrono's range (the years -262143 and
    /// 262142) is moved two days inside it first, since its local time may not exist in `zone`.
    pub fn window_at(self, at: DateTime<Utc>, zone: Tz, week_start: Weekday) -> Window {
        let margin = Duration::days(2);
        let at = at.clamp(
            DateTime::<Utc>::MIN_UTC + margin,
            DateTime::<Utc>::MAX_UTC - margin,
        );
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
                (start, saturating_add(start, Duration::seconds(step)))
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
                let first = date
                    .checked_sub_signed(Duration::days(back))
                    .unwrap_or(NaiveDate::MIN);
                let next = first
                    .checked_add_signed(Duration::days(7))
                    .unwrap_or(NaiveDate::MAX);
                (start_of_day(first, zone), start_of_day(next, zone))
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
            let before = local
                .checked_sub_signed(Duration::hours(26))
                .unwrap_or(NaiveDateTime::MIN);
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

/// Returns `at` plus `step`, or the last instant chrono can hold when that is later.
fn saturating_add(at: DateTime<Utc>, step: Duration) -> DateTime<Utc> {
    at.checked_add_signed(step)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn next_day(date: NaiveDate) -> NaiveDate {
    date.succ_opt().unwrap_or(NaiveDate::MAX)
}

fn date_or_max(date: Option<NaiveDate>) -> NaiveDate {
    date.unwrap_or(NaiveDate::MAX)
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc, Weekday};
    use chrono_tz::Tz;

    use super::{Window, WindowKind, start_of_day};

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("test instants are RFC 3339")
            .with_timezone(&Utc)
    }

    #[test]
    fn extreme_instants_give_windows() {
        let zones = [
            Tz::UTC,
            chrono_tz::Pacific::Kiritimati,
            chrono_tz::Pacific::Pago_Pago,
            chrono_tz::Australia::Lord_Howe,
        ];
        for at in [DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC] {
            for zone in zones {
                for week_start in [Weekday::Mon, Weekday::Sun] {
                    for kind in WindowKind::ALL {
                        let window = kind.window_at(at, zone, week_start);
                        assert!(
                            window.start <= window.end,
                            "{kind} at {at} in {zone}: {window:?}"
                        );
                    }
                }
            }
        }
    }

    fn window(kind: WindowKind, at: &str, zone: Tz) -> (DateTime<Utc>, DateTime<Utc>) {
        let Window { start, end, .. } = kind.window_at(utc(at), zone, Weekday::Mon);
        (start, end)
    }

    #[test]
    fn minute_and_hour_follow_the_utc_clock() {
        assert_eq!(
            window(WindowKind::Minute, "2026-03-02T10:15:30.250Z", Tz::UTC),
            (utc("2026-03-02T10:15:00Z"), utc("2026-03-02T10:16:00Z"))
        );
        assert_eq!(
            window(WindowKind::Hour, "2026-03-02T10:15:30Z", Tz::UTC),
            (utc("2026-03-02T10:00:00Z"), utc("2026-03-02T11:00:00Z"))
        );
    }

    #[test]
    fn hour_follows_a_half_hour_offset() {
        // Kolkata is UTC+05:30, so its hours start at half past in UTC.
        assert_eq!(
            window(
                WindowKind::Hour,
                "2026-03-02T10:15:00Z",
                chrono_tz::Asia::Kolkata
            ),
            (utc("2026-03-02T09:30:00Z"), utc("2026-03-02T10:30:00Z"))
        );
        assert_eq!(
            window(
                WindowKind::Hour,
                "2026-03-02T10:45:00Z",
                chrono_tz::Asia::Kolkata
            ),
            (utc("2026-03-02T10:30:00Z"), utc("2026-03-02T11:30:00Z"))
        );
    }

    #[test]
    fn tokyo_day_starts_at_local_midnight() {
        let tokyo = chrono_tz::Asia::Tokyo;
        let before = tokyo
            .with_ymd_and_hms(2026, 3, 2, 23, 59, 0)
            .unwrap()
            .with_timezone(&Utc);
        let after = tokyo
            .with_ymd_and_hms(2026, 3, 3, 0, 1, 0)
            .unwrap()
            .with_timezone(&Utc);

        let first = WindowKind::Day.window_at(before, tokyo, Weekday::Mon);
        let second = WindowKind::Day.window_at(after, tokyo, Weekday::Mon);

        assert_eq!(
            (first.start, first.end),
            (utc("2026-03-01T15:00:00Z"), utc("2026-03-02T15:00:00Z"))
        );
        assert_eq!(
            (second.start, second.end),
            (utc("2026-03-02T15:00:00Z"), utc("2026-03-03T15:00:00Z"))
        );
    }

    #[test]
    fn daylight_saving_days_last_23_and_25_hours() {
        let spring = WindowKind::Day.window_at(
            utc("2026-03-08T12:00:00Z"),
            chrono_tz::America::New_York,
            Weekday::Mon,
        );
        let autumn = WindowKind::Day.window_at(
            utc("2026-10-25T12:00:00Z"),
            chrono_tz::Europe::Berlin,
            Weekday::Mon,
        );

        assert_eq!(
            (spring.start, spring.end),
            (utc("2026-03-08T05:00:00Z"), utc("2026-03-09T04:00:00Z"))
        );
        assert_eq!(spring.end - spring.start, Duration::hours(23));
        assert_eq!(
            (autumn.start, autumn.end),
            (utc("2026-10-24T22:00:00Z"), utc("2026-10-25T23:00:00Z"))
        );
        assert_eq!(autumn.end - autumn.start, Duration::hours(25));
    }

    #[test]
    fn skipped_midnight_starts_the_day_at_the_jump() {
        // Santiago moves from 00:00 -04 to 01:00 -03 on 2026-09-06.
        let santiago = chrono_tz::America::Santiago;
        let day = WindowKind::Day.window_at(utc("2026-09-06T12:00:00Z"), santiago, Weekday::Mon);

        assert_eq!(day.start, utc("2026-09-06T04:00:00Z"));
        assert_eq!(day.end, utc("2026-09-07T03:00:00Z"));
        assert_eq!(
            start_of_day(NaiveDate::from_ymd_opt(2026, 9, 6).unwrap(), santiago),
            day.start
        );
    }

    #[test]
    fn repeated_midnight_starts_the_day_at_the_first() {
        // Havana goes back from 01:00 -04 to 00:00 -05 on 2026-11-01: midnight happens twice.
        let havana = chrono_tz::America::Havana;
        let day = WindowKind::Day.window_at(utc("2026-11-01T05:30:00Z"), havana, Weekday::Mon);

        assert_eq!(day.start, utc("2026-11-01T04:00:00Z"));
        assert_eq!(day.end, utc("2026-11-02T05:00:00Z"));
        assert_eq!(day.end - day.start, Duration::hours(25));
    }

    #[test]
    fn week_starts_on_the_configured_day() {
        // 2026-03-04 is a Wednesday.
        let at = utc("2026-03-04T12:00:00Z");

        let monday = WindowKind::Week.window_at(at, Tz::UTC, Weekday::Mon);
        let sunday = WindowKind::Week.window_at(at, Tz::UTC, Weekday::Sun);
        let wednesday = WindowKind::Week.window_at(at, Tz::UTC, Weekday::Wed);

        assert_eq!(
            (monday.start, monday.end),
            (utc("2026-03-02T00:00:00Z"), utc("2026-03-09T00:00:00Z"))
        );
        assert_eq!(
            (sunday.start, sunday.end),
            (utc("2026-03-01T00:00:00Z"), utc("2026-03-08T00:00:00Z"))
        );
        assert_eq!(
            (wednesday.start, wednesday.end),
            (utc("2026-03-04T00:00:00Z"), utc("2026-03-11T00:00:00Z"))
        );
    }

    #[test]
    fn week_across_a_clock_change_lasts_167_hours() {
        let week = WindowKind::Week.window_at(
            utc("2026-03-10T12:00:00Z"),
            chrono_tz::America::New_York,
            Weekday::Mon,
        );

        assert_eq!(week.start, utc("2026-03-09T04:00:00Z"));
        assert_eq!(week.end - week.start, Duration::hours(168));
        let previous = WindowKind::Week.window_at(
            utc("2026-03-05T12:00:00Z"),
            chrono_tz::America::New_York,
            Weekday::Mon,
        );
        assert_eq!(previous.end, week.start);
        assert_eq!(previous.end - previous.start, Duration::hours(167));
    }

    #[test]
    fn month_runs_from_the_first_to_the_first() {
        assert_eq!(
            window(WindowKind::Month, "2026-12-31T23:59:59Z", Tz::UTC),
            (utc("2026-12-01T00:00:00Z"), utc("2027-01-01T00:00:00Z"))
        );
        assert_eq!(
            window(WindowKind::Month, "2028-02-29T12:00:00Z", Tz::UTC),
            (utc("2028-02-01T00:00:00Z"), utc("2028-03-01T00:00:00Z"))
        );
        // 2026-01-31 16:00 UTC is already February 1st in Tokyo.
        assert_eq!(
            window(
                WindowKind::Month,
                "2026-01-31T16:00:00Z",
                chrono_tz::Asia::Tokyo
            ),
            (utc("2026-01-31T15:00:00Z"), utc("2026-02-28T15:00:00Z"))
        );
    }

    #[test]
    fn window_end_belongs_to_the_next_window() {
        let first = WindowKind::Day.window_at(utc("2026-03-02T23:59:59Z"), Tz::UTC, Weekday::Mon);
        let next = WindowKind::Day.window_at(first.end, Tz::UTC, Weekday::Mon);

        assert!(first.contains(first.start));
        assert!(!first.contains(first.end));
        assert_eq!(next.start, first.end);
        assert!(next.contains(first.end));
    }

    /// Sweeps instants across clock changes in zones with whole-hour, half-hour and midnight
    /// changes: every window contains its instant and has a positive length, and consecutive
    /// day, week and month windows tile time without gaps or overlaps.
    #[test]
    fn windows_contain_their_instant_across_clock_changes() {
        let sweeps: [(Tz, &str); 6] = [
            (chrono_tz::America::New_York, "2026-03-07T00:00:00Z"),
            (chrono_tz::America::New_York, "2026-10-31T00:00:00Z"),
            (chrono_tz::America::Santiago, "2026-09-05T00:00:00Z"),
            (chrono_tz::America::Havana, "2026-10-31T00:00:00Z"),
            (chrono_tz::Australia::Lord_Howe, "2026-04-04T00:00:00Z"),
            (chrono_tz::Pacific::Apia, "2026-02-27T00:00:00Z"),
        ];

        for (zone, from) in sweeps {
            let from = utc(from);
            for step in 0..(3 * 24 * 60 / 7) {
                let at = from + Duration::minutes(7 * step);
                for kind in WindowKind::ALL {
                    let window = kind.window_at(at, zone, Weekday::Sun);
                    assert!(
                        window.contains(at),
                        "{kind} window {window:?} must contain {at} in {zone}"
                    );
                    if matches!(kind, WindowKind::Day | WindowKind::Week | WindowKind::Month) {
                        let next = kind.window_at(window.end, zone, Weekday::Sun);
                        assert_eq!(
                            next.start, window.end,
                            "{kind} windows tile time in {zone} after {at}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn kind_names_round_trip() {
        for kind in WindowKind::ALL {
            assert_eq!(kind.as_str().parse::<WindowKind>(), Ok(kind));
            assert_eq!(kind.to_string(), kind.as_str());
        }
    }

    #[test]
    fn invalid_kind_name_is_an_error() {
        let error = "fortnight".parse::<WindowKind>().unwrap_err();

        assert_eq!(
            error.to_string(),
            "invalid window kind \"fortnight\": expected minute, hour, day, week or month"
        );
    }
}
