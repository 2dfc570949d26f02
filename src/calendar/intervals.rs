//! Operations on sorted lists of half-open intervals.

use crate::schedule::Interval;

/// Sorts `intervals` and merges those that overlap or touch.
pub(crate) fn normalize(mut intervals: Vec<Interval>) -> Vec<Interval> {
    intervals.retain(|interval| interval.start < interval.end);
    intervals.sort();
    let mut merged: Vec<Interval> = Vec::with_capacity(intervals.len());
    for interval in intervals {
        match merged.last_mut() {
            Some(last) if interval.start <= last.end => last.end = last.end.max(interval.end),
            _ => merged.push(interval),
        }
    }
    merged
}

/// Returns the parts of the normalized `intervals` outside every interval of `holes`.
pub(crate) fn subtract(intervals: &[Interval], holes: &[Interval]) -> Vec<Interval> {
    let holes = normalize(holes.to_vec());
    let mut result = Vec::with_capacity(intervals.len());
    for interval in intervals {
        let mut rest = *interval;
        let first = holes.partition_point(|hole| hole.end <= rest.start);
        for hole in &holes[first..] {
            if hole.start >= rest.end {
                break;
            }
            if hole.start > rest.start {
                result.push(Interval {
                    start: rest.start,
                    end: hole.start,
                });
            }
            rest.start = rest.start.max(hole.end);
            if rest.start >= rest.end {
                break;
            }
        }
        if rest.start < rest.end {
            result.push(rest);
        }
    }
    result
}

/// Returns the parts of the normalized `intervals` inside `bounds`.
pub(crate) fn clip(intervals: &[Interval], bounds: Interval) -> Vec<Interval> {
    let first = intervals.partition_point(|interval| interval.end <= bounds.start);
    intervals[first..]
        .iter()
        .take_while(|interval| interval.start < bounds.end)
        .map(|interval| Interval {
            start: interval.start.max(bounds.start),
            end: interval.end.min(bounds.end),
        })
        .filter(|interval| interval.start < interval.end)
        .collect()
}

/// Returns whether the normalized `intervals` meet `probe`.
pub(crate) fn overlaps(intervals: &[Interval], probe: Interval) -> bool {
    let first = intervals.partition_point(|interval| interval.end <= probe.start);
    intervals
        .get(first)
        .is_some_and(|interval| interval.start < probe.end)
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;

    fn at(hour: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(hour * 3600, 0).unwrap()
    }

    fn span(start: i64, end: i64) -> Interval {
        Interval {
            start: at(start),
            end: at(end),
        }
    }

    #[test]
    fn normalize_merges_touching() {
        assert_eq!(
            normalize(vec![span(5, 6), span(1, 3), span(3, 4)]),
            vec![span(1, 4), span(5, 6)]
        );
    }

    #[test]
    fn subtract_cuts_holes() {
        let got = subtract(&[span(0, 10), span(12, 14)], &[span(2, 3), span(9, 13)]);
        assert_eq!(got, vec![span(0, 2), span(3, 9), span(13, 14)]);
    }

    #[test]
    fn clip_and_overlaps() {
        let list = [span(0, 2), span(4, 6)];
        assert_eq!(clip(&list, span(1, 5)), vec![span(1, 2), span(4, 5)]);
        assert!(overlaps(&list, span(5, 9)));
        assert!(!overlaps(&list, span(2, 4)));
    }
}
