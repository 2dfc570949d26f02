//! Parses arbitrary bytes as a schedule and, when they parse, renders its availability report
//! for every resource: generation must return a report or an error, never panic, overflow or
//! loop forever.
//!
//! The first byte picks the horizon (1 to 64 days) and the second how far into the project it
//! starts (0 to 255 days), so that the fuzzer also reaches horizons past the project's end.
//!
//! ```sh
//! cargo +nightly fuzz run generate_report corpus/generate_report ../tests/corpus ../tests/schedules
//! ```

#![no_main]

use chrono::Duration;
use highway_ratelimit::report::{AvailabilityReport, ReportOptions};
use highway_ratelimit::schedule::{ParseOptions, Schedule};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (days, offset, text) = match data {
        [days, offset, rest @ ..] => (u32::from(days % 64) + 1, i64::from(*offset), rest),
        _ => return,
    };
    let text = String::from_utf8_lossy(text);
    let Ok(schedule) = Schedule::parse(&text, &ParseOptions::named("fuzz.tjp")) else {
        return;
    };
    let Some(from) = schedule
        .project
        .start
        .checked_add_signed(Duration::days(offset))
    else {
        return;
    };
    let mut resources: Vec<Option<String>> = schedule
        .resources
        .iter()
        .map(|resource| Some(resource.id.clone()))
        .collect();
    resources.push(None);
    for resource in resources {
        let options = ReportOptions {
            resource,
            from,
            days,
            generated_at: from,
        };
        if let Ok(generated) = AvailabilityReport::generate(&schedule, &options) {
            let report = generated.report;
            let _ = report.next_allowed(from);
            let _ = report.closed_at(from);
        }
    }
});
