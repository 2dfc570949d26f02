//! Local calendar days: which instants have a given local wall-clock time.

use chrono::{DateTime, NaiveDate, Offset, TimeZone, Utc};
use chrono_tz::Tz;

use crate::schedule::Interval;

/// The widest UTC offsets in the time zone database are UTC-12 and UTC+14; a margin of 15 hours
/// on each side of a local date covers every instant whose local date it can be.
const MARGIN: i64 = 15 * 3600;

/// Offset changes are months apart in every zone, so sampling the offset every three hours finds
/// each of them; a binary search then places it to the second.
const SAMPLE_STEP: i64 = 3 * 3600;

/// One local calendar date in a time zone, with the spans of constant UTC offset around it.
///
/// The instants whose local time lies in a range of that date are computed exactly from those
/// spans: a range that a clock change skips is shorter (or empty), a range the clocks repeat is
/// longer, and a date whose midnight does not exist (America/Santiago) starts at the first local
/// time that does, as [`crate::window::first_instant_at_or_after`] would return.
#[derive(Debug, Clone)]
pub struct LocalDay {
    date: NaiveDate,
    /// Local midnight of `date`, as seconds since the epoch of the local clock.
    local_midnight: i64,
    /// `(start, end, offset)`: UTC seconds `[start, end)` during which the offset is `offset`.
    spans: Vec<(i64, i64, i64)>,
}

impl LocalDay {
    /// Prepares `date` in `zone`.
    pub fn new(date: NaiveDate, zone: Tz) -> LocalDay {
        let local_midnight = date
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc()
            .timestamp();
        let spans = constant_offset_spans(
            zone,
            local_midnight - MARGIN,
            local_midnight + 86_400 + MARGIN,
        );
        LocalDay {
            date,
            local_midnight,
            spans,
        }
    }

    /// The local date.
    pub fn date(&self) -> NaiveDate {
        self.date
    }

    /// Returns the instants whose local time on this date lies in `[start, end)` (seconds after
    /// local midnight, `end` up to `86_400`), as sorted, non-overlapping intervals.
    ///
    /// The result is empty when a clock change skips the whole range, and has two intervals
    /// when the clocks repeat a part of it that does not touch its ends.
    pub fn instants(&self, start: u32, end: u32) -> Vec<Interval> {
        let local_start = self.local_midnight + i64::from(start);
        let local_end = self.local_midnight + i64::from(end);
        let mut intervals: Vec<Interval> = Vec::new();
        for &(span_start, span_end, offset) in &self.spans {
            let from = span_start.max(local_start - offset);
            let to = span_end.min(local_end - offset);
            if from >= to {
                continue;
            }
            let (from, to) = (instant(from), instant(to));
            match intervals.last_mut() {
                Some(last) if last.end == from => last.end = to,
                _ => intervals.push(Interval {
                    start: from,
                    end: to,
                }),
            }
        }
        intervals
    }

    /// Returns the instants whose local date is this date.
    pub fn whole(&self) -> Vec<Interval> {
        self.instants(0, 86_400)
    }

    /// Returns the offset changes between the instants of this date, as (instant, change in
    /// seconds); empty on most days.
    pub fn clock_changes(&self) -> Vec<(DateTime<Utc>, i64)> {
        let whole = self.whole();
        let (Some(first), Some(last)) = (whole.first(), whole.last()) else {
            return Vec::new();
        };
        let (first, last) = (first.start.timestamp(), last.end.timestamp());
        self.spans
            .windows(2)
            .filter(|pair| pair[1].0 > first && pair[1].0 < last)
            .map(|pair| (instant(pair[1].0), pair[1].2 - pair[0].2))
            .collect()
    }
}

/// Returns the local date of `at` in `zone`.
pub fn local_date(at: DateTime<Utc>, zone: Tz) -> NaiveDate {
    at.with_timezone(&zone).date_naive()
}

/// Returns the offset of `zone` at `at`, in seconds east of UTC.
fn offset_at(zone: Tz, at: i64) -> i64 {
    let naive = instant(at).naive_utc();
    i64::from(
        zone.offset_from_utc_datetime(&naive)
            .fix()
            .local_minus_utc(),
    )
}

/// Splits `[from, to)` (UTC seconds) into spans of constant offset.
fn constant_offset_spans(zone: Tz, from: i64, to: i64) -> Vec<(i64, i64, i64)> {
    let mut spans = Vec::with_capacity(2);
    let mut span_start = from;
    let mut offset = offset_at(zone, from);
    let mut probe = from;
    while probe < to - 1 {
        let next = (probe + SAMPLE_STEP).min(to - 1);
        let next_offset = offset_at(zone, next);
        if next_offset == offset {
            probe = next;
            continue;
        }
        // The offset changes in (probe, next]: find the first second with the new offset.
        let (mut low, mut high) = (probe, next);
        while high - low > 1 {
            let middle = low + (high - low) / 2;
            if offset_at(zone, middle) == offset {
                low = middle;
            } else {
                high = middle;
            }
        }
        spans.push((span_start, high, offset));
        span_start = high;
        offset = offset_at(zone, high);
        probe = high;
    }
    spans.push((span_start, to, offset));
    spans
}

fn instant(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn spring_forward_skips_an_hour() {
        // New York, 2025-03-09: 02:00 EST becomes 03:00 EDT at 07:00Z, so 01:00 - 04:00 local
        // is 06:00Z - 08:00Z, two hours.
        let day = LocalDay::new(
            NaiveDate::from_ymd_opt(2025, 3, 9).unwrap(),
            chrono_tz::America::New_York,
        );
        let got = day.instants(3600, 4 * 3600);
        assert_eq!(
            got,
            vec![Interval {
                start: utc("2025-03-09T06:00:00Z"),
                end: utc("2025-03-09T08:00:00Z")
            }]
        );
        assert_eq!(
            day.clock_changes(),
            vec![(utc("2025-03-09T07:00:00Z"), 3600)]
        );
    }

    #[test]
    fn fall_back_repeats_an_hour() {
        // New York, 2025-11-02: 02:00 EDT becomes 01:00 EST at 06:00Z, so 01:00 - 04:00 local
        // is 05:00Z - 09:00Z, four hours; 01:30 - 02:00 happens twice.
        let day = LocalDay::new(
            NaiveDate::from_ymd_opt(2025, 11, 2).unwrap(),
            chrono_tz::America::New_York,
        );
        assert_eq!(
            day.instants(3600, 4 * 3600),
            vec![Interval {
                start: utc("2025-11-02T05:00:00Z"),
                end: utc("2025-11-02T09:00:00Z")
            }]
        );
        assert_eq!(
            day.instants(5400, 7200),
            vec![
                Interval {
                    start: utc("2025-11-02T05:30:00Z"),
                    end: utc("2025-11-02T06:00:00Z")
                },
                Interval {
                    start: utc("2025-11-02T06:30:00Z"),
                    end: utc("2025-11-02T07:00:00Z")
                },
            ]
        );
    }
}
