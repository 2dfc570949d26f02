//! Soak: several OS processes, each a worker with its own pool and rate-limit layer, call a few
//! hot keys and many cold keys for a sustained time. Checks that every key admits exactly its
//! limit when demand exceeds it, never more, and that worker memory and the usage table stay
//! bounded while the run goes on.
//!
//! The default run lasts `DEFAULT_SECONDS`; set `SOAK_SECONDS` for a longer one:
//! `SOAK_SECONDS=600 cargo test --release --test reliability_soak -- --nocapture`.

mod common;
mod reliability_support;

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::TestDatabase;
use highway_ratelimit::admin::{Admin, LimitSpec, PostgresPolicies};
use highway_ratelimit::clock::TokioClock;
use highway_ratelimit::layer::RateLimitLayer;
use highway_ratelimit::policy::DEFAULT_TENANT;
use highway_ratelimit::store::postgres::{PostgresConfig, PostgresStore};
use reliability_support::{Call, call, outcome};

/// The database a worker process calls through; set only in worker processes.
const WORKER_URL: &str = "HIGHWAY_SOAK_WORKER_URL";
/// How long a worker calls, in seconds; set only in worker processes.
const WORKER_SECONDS: &str = "HIGHWAY_SOAK_WORKER_SECONDS";
/// The worker's index, which seeds its choice of cold tenants.
const WORKER_INDEX: &str = "HIGHWAY_SOAK_WORKER_INDEX";
const DEFAULT_SECONDS: u64 = 20;
const PROCESSES: usize = 3;
const TASKS_PER_PROCESS: usize = 12;
const HOT_TOOLS: [&str; 3] = ["tools.hot.a", "tools.hot.b", "tools.hot.c"];
const HOT_LIMIT: u64 = 400;
const COLD_TENANTS: u64 = 4_000;
const COLD_LIMIT: u64 = 3;
/// How much a worker's resident memory may grow between the end of the warm-up (a quarter of the
/// run) and the end of the run.
const RSS_GROWTH_BOUND_KIB: u64 = 32 * 1024;

fn run_seconds() -> u64 {
    std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|seconds| seconds.parse().ok())
        .unwrap_or(DEFAULT_SECONDS)
}

/// The fixed start of every worker's clock, so a run never crosses a day window.
fn origin() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-02T08:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_hold_limits_and_memory() {
    let seconds = run_seconds();
    let database = TestDatabase::new().await;
    let admin = Admin::from_store(&database.store().await);
    for tool in HOT_TOOLS {
        admin
            .upsert(&LimitSpec {
                per_day: Some(HOT_LIMIT),
                ..LimitSpec::new("hot", tool)
            })
            .await
            .unwrap();
    }
    admin
        .upsert(&LimitSpec {
            per_day: Some(COLD_LIMIT),
            ..LimitSpec::new(DEFAULT_TENANT, "tools.cold")
        })
        .await
        .unwrap();

    let executable = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..PROCESSES)
        .map(|index| {
            Command::new(&executable)
                .args([
                    "soak_worker",
                    "--exact",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(WORKER_URL, database.url())
                .env(WORKER_SECONDS, seconds.to_string())
                .env(WORKER_INDEX, index.to_string())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("the test binary starts again as a worker")
        })
        .collect();

    // Sample the usage table while the workers run.
    let client = database.client().await;
    let mut max_rows = 0_i64;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(seconds) {
        let rows: i64 = client
            .query_one("SELECT count(*) FROM highway.tool_rate_limit_usage", &[])
            .await
            .unwrap()
            .get(0);
        max_rows = max_rows.max(rows);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    let mut admitted: HashMap<String, u64> = HashMap::new();
    let mut demand: HashMap<String, u64> = HashMap::new();
    let mut calls = 0;
    for child in children {
        let output = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "worker failed: {stdout}");
        for line in stdout.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                ["key", key, asked, got] => {
                    *demand.entry((*key).to_owned()).or_default() += asked.parse::<u64>().unwrap();
                    *admitted.entry((*key).to_owned()).or_default() += got.parse::<u64>().unwrap();
                }
                ["calls", count] => calls += count.parse::<u64>().unwrap(),
                ["rss", warm, end, max] => {
                    let (warm, end): (u64, u64) = (warm.parse().unwrap(), end.parse().unwrap());
                    eprintln!(
                        "worker RSS: {warm} KiB after warm-up, {end} KiB at the end, max {max} KiB"
                    );
                    assert!(
                        end <= warm + RSS_GROWTH_BOUND_KIB,
                        "worker RSS grew from {warm} KiB to {end} KiB"
                    );
                }
                _ => {}
            }
        }
    }

    // Exactness: a key whose demand exceeds its limit admitted exactly the limit.
    for tool in HOT_TOOLS {
        let key = format!("hot/{tool}");
        assert!(demand[&key] > HOT_LIMIT, "{key}: demand {}", demand[&key]);
        assert_eq!(admitted[&key], HOT_LIMIT, "{key}");
    }
    let mut saturated = 0;
    for (key, asked) in &demand {
        if key.starts_with("hot/") {
            continue;
        }
        let got = admitted[key];
        assert_eq!(got, (*asked).min(COLD_LIMIT), "{key}: demand {asked}");
        saturated += usize::from(*asked > COLD_LIMIT);
    }
    assert!(saturated > 0, "no cold key was asked more than its limit");

    // The database counted what the workers were told, key by key.
    let rows = client
        .query(
            "SELECT tenant_id, tool_name, scope_key, request_count \
             FROM highway.tool_rate_limit_usage WHERE window_type = 'day'",
            &[],
        )
        .await
        .unwrap();
    let mut counted_total = 0;
    for row in &rows {
        let (tool, scope, count): (String, String, i64) = (row.get(1), row.get(2), row.get(3));
        let tenant = scope.strip_prefix("tenant:").unwrap();
        counted_total += count as u64;
        assert_eq!(
            count as u64,
            admitted[&format!("{tenant}/{tool}")],
            "{tenant}/{tool}"
        );
    }
    let admitted_total: u64 = admitted.values().sum();
    assert_eq!(counted_total, admitted_total, "calls lost or counted twice");
    // One row per key and window: the table grows with the keys, not with the calls.
    assert!(
        max_rows as usize <= demand.len(),
        "{max_rows} usage rows for {} keys",
        demand.len()
    );
    eprintln!(
        "soak {seconds} s, {PROCESSES} processes: {calls} calls, {} keys, {admitted_total} admitted, {saturated} cold keys saturated, at most {max_rows} usage rows",
        demand.len()
    );
}

/// Runs one worker process of the soak, and nothing unless the test above started it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs in the worker processes of processes_hold_limits_and_memory"]
async fn soak_worker() {
    let Ok(url) = std::env::var(WORKER_URL) else {
        eprintln!("{WORKER_URL} is unset: this test only runs as a worker of the soak");
        return;
    };
    let seconds: u64 = std::env::var(WORKER_SECONDS).unwrap().parse().unwrap();
    let index: u64 = std::env::var(WORKER_INDEX).unwrap().parse().unwrap();
    let store = PostgresStore::new(PostgresConfig::new(url).pool_size(8)).unwrap();
    let policies = PostgresPolicies::from_admin(&Admin::from_store(&store));
    // The soak checks counts and memory, not latency. In CI, where three worker processes of a
    // debug build with 12 tasks each share two cores with the server, calls were rejected as
    // store unavailable under the 500 ms default store timeout.
    let layer = RateLimitLayer::builder(Arc::new(policies), Arc::new(store))
        .clock(TokioClock::starting_at(origin()))
        .cache_capacity(1_000)
        .store_timeout(Duration::from_secs(5))
        .build();

    let run = Duration::from_secs(seconds);
    let started = Instant::now();
    let sampler = tokio::spawn(async move {
        let mut warm = None;
        let mut max = 0;
        while started.elapsed() < run {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let rss = resident_kib();
            max = max.max(rss);
            if warm.is_none() && started.elapsed() >= run / 4 {
                warm = Some(rss);
            }
        }
        (warm.unwrap_or(max), resident_kib(), max)
    });

    let tasks: Vec<_> = (0..TASKS_PER_PROCESS as u64)
        .map(|task| {
            let layer = layer.clone();
            tokio::spawn(async move {
                let mut seed = (index << 32 | task).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                let mut counts: HashMap<String, (u64, u64)> = HashMap::new();
                let mut calls = 0_u64;
                while started.elapsed() < run {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let (tenant, tool) = if seed.is_multiple_of(4) {
                        (
                            "hot".to_owned(),
                            HOT_TOOLS[(seed >> 8) as usize % HOT_TOOLS.len()],
                        )
                    } else {
                        (format!("cold-{}", (seed >> 8) % COLD_TENANTS), "tools.cold")
                    };
                    let result = call(&layer, Call::new(&tenant, tool)).await;
                    let got = match outcome(&result) {
                        "admitted" => 1,
                        "quota_exhausted" => 0,
                        other => panic!("{tenant}/{tool}: unexpected outcome {other}: {result:?}"),
                    };
                    let entry = counts.entry(format!("{tenant}/{tool}")).or_default();
                    entry.0 += 1;
                    entry.1 += got;
                    calls += 1;
                }
                (counts, calls)
            })
        })
        .collect();

    let mut counts: HashMap<String, (u64, u64)> = HashMap::new();
    let mut calls = 0;
    for task in tasks {
        let (task_counts, task_calls) = task.await.unwrap();
        calls += task_calls;
        for (key, (asked, got)) in task_counts {
            let entry = counts.entry(key).or_default();
            entry.0 += asked;
            entry.1 += got;
        }
    }
    let (warm, end, max) = sampler.await.unwrap();
    println!();
    for (key, (asked, got)) in counts {
        println!("key {key} {asked} {got}");
    }
    println!("calls {calls}");
    println!("rss {warm} {end} {max}");
}

/// Returns this process's resident set size in KiB, from `/proc/self/status`.
fn resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("/proc/self/status has VmRSS")
}
