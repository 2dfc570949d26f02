//! Properties of working time and reports, checked against a direct per-instant evaluation:
//! convert the instant to local time with chrono and look its weekday and time up in the
//! working hours. The zones include every kind of clock change.

mod calendar_support;

use calendar_support::*;
use chrono::{DateTime, Datelike, Duration, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use highway_ratelimit::calendar::CapacityRules;
use highway_ratelimit::report::AvailabilityReport;
use highway_ratelimit::schedule::{Limit, LimitKind, TimeRange, WorkingHours};
use proptest::prelude::*;

const ZONES: [Tz; 8] = [
    chrono_tz::America::New_York,
    chrono_tz::America::Santiago,
    chrono_tz::Australia::Lord_Howe,
    chrono_tz::Europe::Berlin,
    chrono_tz::Asia::Kolkata,
    chrono_tz::Pacific::Chatham,
    chrono_tz::America::St_Johns,
    chrono_tz::UTC,
];

/// Up to two non-overlapping ranges per day, on a 15-minute grid.
fn day_ranges() -> impl Strategy<Value = Vec<TimeRange>> {
    proptest::collection::vec(0_u32..=96, 0..=4).prop_map(|mut marks| {
        marks.sort_unstable();
        marks.dedup();
        marks
            .chunks_exact(2)
            .map(|pair| TimeRange {
                start: pair[0] * 900,
                end: pair[1] * 900,
            })
            .collect()
    })
}

fn working_hours() -> impl Strategy<Value = WorkingHours> {
    proptest::array::uniform7(day_ranges()).prop_map(|days| WorkingHours { days })
}

fn is_working_directly(hours: &WorkingHours, zone: Tz, at: DateTime<Utc>) -> bool {
    let local = at.with_timezone(&zone);
    let second = local.num_seconds_from_midnight();
    hours
        .on(local.weekday())
        .iter()
        .any(|range| range.start <= second && second < range.end)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn report_agrees_with_local_time(
        zone_index in 0..ZONES.len(),
        hours in working_hours(),
        start_hours in 0_i64..(2 * 365 * 24),
        days in 1_u32..15,
        probes in proptest::collection::vec(0.0_f64..1.0, 40),
        noon_limit in 1_u64..100,
    ) {
        let zone = ZONES[zone_index];
        let mut tool = resource("tool");
        tool.working_hours = hours.clone();
        let mut sundays = [false; 7];
        sundays[Weekday::Sun.num_days_from_monday() as usize] = true;
        tool.limits = vec![
            limit(LimitKind::Daily, 1000),
            Limit { days: Some(sundays), ..limit(LimitKind::Daily, 10) },
            Limit { hours: vec![range("11:30", "13:15")], ..limit(LimitKind::Hourly, noon_limit) },
        ];
        let schedule = schedule(project("2025-01-01T00:00:00Z", "2027-01-01T00:00:00Z", zone), vec![tool]);
        let from = utc("2025-01-01T00:00:00Z") + Duration::hours(start_hours);
        let report = AvailabilityReport::generate(&schedule, &options(None, from, days)).unwrap().report;
        let rules = CapacityRules::new(&schedule.resources[0], zone);

        for pair in report.windows.windows(2) {
            prop_assert!(pair[0].end <= pair[1].start, "windows overlap: {:?}", pair);
            prop_assert!(pair[0].end < pair[1].start || pair[0].capacity != pair[1].capacity, "windows not merged: {:?}", pair);
        }

        let length = (report.valid_until - from).num_seconds();
        for probe in probes {
            let at = from + Duration::seconds((probe * length as f64) as i64);
            let expected = at < schedule.project.end && is_working_directly(&hours, zone, at);
            prop_assert_eq!(report.is_allowed(at), expected, "at {} ({})", at, at.with_timezone(&zone));
            if expected {
                prop_assert_eq!(report.capacity_at(at), Some(&rules.capacity_at(at)), "at {}", at);
            }
        }
    }
}
