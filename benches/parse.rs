//! Parsing schedules: the largest corpus files, the email example, every ScriptPlan-dialect
//! file of the corpus in one pass (compared with ScriptPlan 0.10.2 by
//! `benches/scriptplan_parse.py`), and a generated schedule with thousands of resources and
//! shifts.

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use highway_ratelimit::schedule::{ParseOptions, Schedule};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// The file's text and the options that resolve its includes.
fn load(relative: &str) -> (String, ParseOptions) {
    let path = root().join(relative);
    let text = std::fs::read_to_string(&path).unwrap();
    let options = ParseOptions {
        file_name: path.clone(),
        base_dir: path.parent().map(Path::to_path_buf),
    };
    (text, options)
}

/// The ScriptPlan-dialect files of the corpus, which ScriptPlan 0.10.2 also parses.
fn scriptplan_files() -> Vec<(String, ParseOptions)> {
    let mut names: Vec<String> = std::fs::read_dir(root().join("tests/corpus/scriptplan-tests"))
        .unwrap()
        .map(|entry| {
            format!(
                "tests/corpus/scriptplan-tests/{}",
                entry.unwrap().file_name().to_string_lossy()
            )
        })
        .filter(|name| name.ends_with(".tjp"))
        .collect();
    names.push("tests/corpus/adapted/Vacation.scriptplan.tjp".to_string());
    names.sort();
    names.iter().map(|name| load(name)).collect()
}

fn parse_files(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    for relative in [
        "tests/corpus/Export-Reports/refs/Limits-1.tjp",
        "tests/corpus/scriptplan-tests/airport_ultra_math.tjp",
        "tests/corpus/Scheduler/Correct/Booking.tjp",
        "examples/schedules/seed_email.tjp",
    ] {
        let (text, options) = load(relative);
        Schedule::parse(&text, &options).unwrap();
        let name = Path::new(relative)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| Schedule::parse(black_box(&text), &options).unwrap())
        });
    }

    let files = scriptplan_files();
    let bytes: usize = files.iter().map(|(text, _)| text.len()).sum();
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function(format!("scriptplan_dialect_{}_files", files.len()), |b| {
        b.iter(|| {
            for (text, options) in &files {
                Schedule::parse(black_box(text), options).unwrap();
            }
        })
    });

    let (text, options) = many_ids(20_000);
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("generated_20000_resources_and_shifts", |b| {
        b.iter(|| Schedule::parse(black_box(&text), &options).unwrap())
    });
    group.finish();
}

/// Returns a schedule with `count` resources, `count` shifts and a resource that uses the last
/// shift, on which a parser that compares each new id with every earlier one takes quadratic
/// time.
fn many_ids(count: usize) -> (String, ParseOptions) {
    let mut text = String::from("project p \"P\" 2026-01-01 +1y\n");
    for index in 0..count {
        text.push_str(&format!("resource r{index} \"R\"\nshift s{index} \"S\"\n"));
    }
    let last = count - 1;
    text.push_str(&format!(
        "resource user \"U\" {{ shifts s{last} 2026-03-02 +1w }}\n"
    ));
    (text, ParseOptions::named("generated.tjp"))
}

criterion_group!(benches, parse_files);
criterion_main!(benches);
