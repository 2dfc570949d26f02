//! Report generation over 7 and 365 days, and the per-call queries on a report.
//!
//! Run with `cargo bench --bench report`.

use std::hint::black_box;
use std::path::PathBuf;

use chrono::{DateTime, Duration, Utc};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use highway_ratelimit::report::{AvailabilityReport, ReportOptions};
use highway_ratelimit::schedule::Schedule;

#[path = "../tests/calendar_support/mod.rs"]
mod calendar_support;

fn options(resource: &str, from: DateTime<Utc>, days: u32) -> ReportOptions {
    ReportOptions {
        resource: Some(resource.to_owned()),
        from,
        days,
        generated_at: from,
    }
}

/// Returns the schedules to report on. The e-mail example is written as model values, and it
/// and the largest file of the corpus are also parsed from files.
fn cases() -> Vec<(&'static str, Schedule, &'static str, DateTime<Utc>)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut cases = vec![(
        "email_model",
        calendar_support::seed_email(),
        "email_service",
        calendar_support::utc("2025-01-01T00:00:00Z"),
    )];
    let files = [
        (
            "email_file",
            "tests/schedules/email_limits.tjp",
            "email_service",
            "2025-01-01T00:00:00Z",
        ),
        (
            "limits_1_file",
            "tests/corpus/Export-Reports/refs/Limits-1.tjp",
            "r1",
            "2007-03-01T00:00:00Z",
        ),
    ];
    for (name, path, resource, from) in files {
        let schedule = Schedule::from_file(root.join(path))
            .unwrap_or_else(|error| panic!("{path} does not parse:\n{error}"));
        cases.push((name, schedule, resource, calendar_support::utc(from)));
    }
    cases
}

fn generate(c: &mut Criterion) {
    let mut group = c.benchmark_group("generate");
    for (name, schedule, resource, from) in cases() {
        for days in [7, 365] {
            let options = options(resource, from, days);
            group.bench_with_input(BenchmarkId::new(name, days), &options, |b, options| {
                b.iter(|| {
                    AvailabilityReport::generate(black_box(&schedule), black_box(options)).unwrap()
                })
            });
        }
    }
    group.finish();
}

fn queries(c: &mut Criterion) {
    let schedule = calendar_support::seed_email();
    let from = calendar_support::utc("2025-01-01T00:00:00Z");
    let report = AvailabilityReport::generate(&schedule, &options("email_service", from, 365))
        .unwrap()
        .report;
    // 1009 instants spread over the year, 8 hours 41 minutes apart, so they fall inside and
    // outside windows at varied times of day.
    let instants: Vec<DateTime<Utc>> = (0..1009)
        .map(|step| from + Duration::minutes(521 * step))
        .collect();

    let mut group = c.benchmark_group("query_365_days");
    let mut index = 0;
    let mut next = || {
        index = (index + 1) % instants.len();
        instants[index]
    };
    group.bench_function("is_allowed", |b| {
        b.iter(|| report.is_allowed(black_box(next())))
    });
    group.bench_function("capacity_at", |b| {
        b.iter(|| report.capacity_at(black_box(next())).copied())
    });
    group.bench_function("next_allowed", |b| {
        b.iter(|| report.next_allowed(black_box(next())))
    });
    group.finish();
}

criterion_group!(benches, generate, queries);
criterion_main!(benches);
