//! Throughput of token leases on one hot key, beside the exact store and the original design's
//! function, with callers spread over several OS processes.
//!
//! Each case starts `PROCESSES` copies of this benchmark binary; each runs its share of the
//! callers (tokio tasks on a two-thread runtime) against one hot key for a fixed time, all
//! processes measuring the same wall-clock interval. Every call consumes one token in the minute,
//! hour and day windows.
//!
//! - `lease`: `LeasedStore` with its default settings over a `PostgresStore`.
//! - `exact`: `PostgresStore` with its default settings (concurrent calls of a process share one
//!   round trip and one transaction).
//! - `exact unbatched`: `PostgresStore` with `max_batch_size(1)`, one round trip per call.
//! - `original`: the original design's `consume_tool_rate_token`, called once per window (three
//!   round trips and three transactions per call).
//!
//! After each case the benchmark compares the usage counters with the calls the processes
//! admitted, and a last case checks that 64 leasing callers admit exactly a day limit they exceed.
//!
//! ```text
//! cargo bench --bench lease                    # PostgreSQL at 127.0.0.1:5432
//! DATABASE_URL=postgres://… cargo bench --bench lease
//! BENCH_SECONDS=5 cargo bench --bench lease    # seconds measured per case (default 3)
//! ```
//!
//! The benchmark creates a database of its own on the server and drops it at the end.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::Weekday;
use chrono_tz::Tz;
use deadpool_postgres::Pool;
use highway_ratelimit::report::Capacity;
use highway_ratelimit::store::lease::{LeaseConfig, LeasedStore};
use highway_ratelimit::store::postgres::{PostgresConfig, PostgresStore};
use highway_ratelimit::store::{ConsumeRequest, ScopeKey, TokenStore};

#[path = "support/postgres.rs"]
mod postgres;
use postgres::{bench_seconds, connect, original_pool, with_database};

const PROCESSES: usize = 4;
const CLIENTS: [usize; 2] = [16, 64];
/// High enough that no call is rejected during a throughput case.
const LIMIT: u64 = 1_000_000_000;
/// The day limit of the last case, which 64 callers exceed within its run.
const OVERLOAD_DAY_LIMIT: u64 = 5_000;
/// Time between starting the processes and the start of the measured interval: process start,
/// connections and warm-up.
const LEAD_TIME: Duration = Duration::from_millis(1500);

const CONTENDERS: [&str; 4] = ["lease", "exact", "exact unbatched", "original"];

// The environment of a worker process.
const WORKER_CONTENDER: &str = "HIGHWAY_LEASE_BENCH_CONTENDER";
const WORKER_URL: &str = "HIGHWAY_LEASE_BENCH_URL";
const WORKER_TASKS: &str = "HIGHWAY_LEASE_BENCH_TASKS";
const WORKER_START_MS: &str = "HIGHWAY_LEASE_BENCH_START_MS";
const WORKER_END_MS: &str = "HIGHWAY_LEASE_BENCH_END_MS";
const WORKER_DAY_LIMIT: &str = "HIGHWAY_LEASE_BENCH_DAY_LIMIT";

fn hot_key() -> ScopeKey {
    ScopeKey {
        tenant: "acme".to_owned(),
        tool: "tools.email.send".to_owned(),
        scope: "global".to_owned(),
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or_default()
}

#[derive(Clone)]
enum Contender {
    Store(Arc<dyn TokenStore>),
    Original(Pool),
}

impl Contender {
    /// Makes one call: `Some(admitted)`, or `None` when the store failed (a timeout under load).
    async fn call(&self, capacity: &Capacity) -> Option<bool> {
        match self {
            Contender::Store(store) => {
                let key = hot_key();
                let request = ConsumeRequest {
                    key: &key,
                    cost: 1,
                    capacity,
                    timezone: Tz::UTC,
                    week_start: Weekday::Mon,
                    at: None,
                };
                match store.consume(request).await {
                    Ok(decision) => Some(decision.is_admitted()),
                    Err(error) => {
                        eprintln!("consume failed: {error}");
                        None
                    }
                }
            }
            Contender::Original(pool) => {
                let client = pool.get().await.ok()?;
                let statement = client
                    .prepare_cached(
                        "SELECT seed.consume_tool_rate_token('acme', 'tools.email.send', 'global', $1, $2)",
                    )
                    .await
                    .expect("statement prepares");
                let limit = LIMIT as i32;
                for window in ["minute", "hour", "day"] {
                    let row = client
                        .query_one(&statement, &[&window, &limit])
                        .await
                        .ok()?;
                    if !row.get::<_, bool>(0) {
                        return Some(false);
                    }
                }
                Some(true)
            }
        }
    }
}

/// The counts one worker process prints.
#[derive(Default, Debug, Clone, Copy)]
struct Counts {
    /// Calls completed within the measured interval.
    measured: u64,
    /// Calls admitted over the whole run.
    admitted: u64,
    rejected: u64,
    /// Calls that failed, such as timeouts.
    failed: u64,
}

/// Runs the callers of one worker process and prints its counts.
async fn worker(contender_name: &str) {
    let variable = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is set"));
    let url = variable(WORKER_URL);
    let tasks: usize = variable(WORKER_TASKS).parse().expect("a task count");
    let start_ms: u64 = variable(WORKER_START_MS).parse().expect("a start time");
    let end_ms: u64 = variable(WORKER_END_MS).parse().expect("an end time");
    let day_limit: u64 = variable(WORKER_DAY_LIMIT).parse().expect("a day limit");
    let capacity = Capacity {
        per_minute: Some(LIMIT),
        per_hour: Some(LIMIT),
        per_day: Some(day_limit),
        ..Capacity::UNLIMITED
    };

    let mut leased = None;
    let contender = match contender_name {
        "lease" => {
            let exact = PostgresStore::new(patient(PostgresConfig::new(url)).pool_size(4))
                .expect("valid connection string");
            let store = LeasedStore::new(exact, LeaseConfig::new());
            leased = Some(store.clone());
            Contender::Store(Arc::new(store))
        }
        "exact" | "exact unbatched" => {
            let batch_size = if contender_name == "exact" {
                PostgresConfig::DEFAULT_MAX_BATCH_SIZE
            } else {
                1
            };
            let config = patient(PostgresConfig::new(url))
                .pool_size(tasks)
                .max_batch_size(batch_size);
            Contender::Store(Arc::new(
                PostgresStore::new(config).expect("valid connection string"),
            ))
        }
        _ => Contender::Original(original_pool(&url, tasks)),
    };

    let stop = Arc::new(AtomicBool::new(false));
    let totals = Arc::new([
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
    ]);
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (contender, stop, totals) = (contender.clone(), stop.clone(), totals.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let outcome = contender.call(&capacity).await;
                    let now = unix_ms();
                    if outcome.is_some() && (start_ms..end_ms).contains(&now) {
                        totals[0].fetch_add(1, Ordering::Relaxed);
                    }
                    let slot = match outcome {
                        Some(true) => 1,
                        Some(false) => 2,
                        None => 3,
                    };
                    totals[slot].fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(end_ms.saturating_sub(unix_ms()))).await;
    stop.store(true, Ordering::Relaxed);
    for handle in handles {
        handle.await.expect("caller task completes");
    }
    if let Some(store) = leased {
        store
            .shutdown()
            .await
            .expect("shutdown gives back the leases");
    }
    println!(
        "measured={} admitted={} rejected={} failed={}",
        totals[0].load(Ordering::Relaxed),
        totals[1].load(Ordering::Relaxed),
        totals[2].load(Ordering::Relaxed),
        totals[3].load(Ordering::Relaxed)
    );
}

/// Raises the timeouts: the benchmark measures throughput, and 64 callers queued on one row lock
/// of a loaded 2-core machine can wait longer than the default 2 s.
fn patient(config: PostgresConfig) -> PostgresConfig {
    config
        .statement_timeout(Duration::from_secs(20))
        .call_timeout(Duration::from_secs(30))
}

/// Runs one case: `clients` callers of `contender` spread over the worker processes.
fn run_case(url: &str, contender: &str, clients: usize, seconds: f64, day_limit: u64) -> Counts {
    let executable = std::env::current_exe().expect("the benchmark knows its path");
    let start_ms = unix_ms() + LEAD_TIME.as_millis() as u64;
    let end_ms = start_ms + (seconds * 1000.0) as u64;

    let children: Vec<_> = (0..PROCESSES)
        .map(|process| {
            // Spread the callers as evenly as possible.
            let tasks = clients / PROCESSES + usize::from(process < clients % PROCESSES);
            Command::new(&executable)
                .arg("--bench")
                .env(WORKER_CONTENDER, contender)
                .env(WORKER_URL, url)
                .env(WORKER_TASKS, tasks.to_string())
                .env(WORKER_START_MS, start_ms.to_string())
                .env(WORKER_END_MS, end_ms.to_string())
                .env(WORKER_DAY_LIMIT, day_limit.to_string())
                .stdout(Stdio::piped())
                .spawn()
                .expect("the benchmark starts again as a worker")
        })
        .collect();

    let mut counts = Counts::default();
    for child in children {
        let output = child.wait_with_output().expect("worker output is readable");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "worker failed: {stdout}");
        let field = |label: &str| -> u64 {
            stdout
                .split_whitespace()
                .find_map(|word| word.strip_prefix(label))
                .and_then(|count| count.parse().ok())
                .unwrap_or_else(|| panic!("worker printed no {label} count: {stdout}"))
        };
        counts.measured += field("measured=");
        counts.admitted += field("admitted=");
        counts.rejected += field("rejected=");
        counts.failed += field("failed=");
    }
    counts
}

/// Returns the summed counter of each window type of the hot key, minute, hour and day.
async fn counters(client: &tokio_postgres::Client, schema: &str) -> [i64; 3] {
    let query = format!(
        "SELECT coalesce(sum(request_count) FILTER (WHERE window_type = 'minute'), 0)::bigint,
                coalesce(sum(request_count) FILTER (WHERE window_type = 'hour'), 0)::bigint,
                coalesce(sum(request_count) FILTER (WHERE window_type = 'day'), 0)::bigint
         FROM {schema}.tool_rate_limit_usage"
    );
    let row = client.query_one(&query, &[]).await.expect("counters read");
    [row.get(0), row.get(1), row.get(2)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let Ok(contender) = std::env::var(WORKER_CONTENDER) {
        worker(&contender).await;
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this with no such flag: build only.
    if !std::env::args().any(|argument| argument == "--bench") {
        return;
    }
    let admin_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let seconds = bench_seconds();

    let database = format!("highway_lease_bench_{}", std::process::id());
    let admin = connect(&admin_url).await;
    admin
        .batch_execute(&format!("CREATE DATABASE {database}"))
        .await
        .expect("CREATE DATABASE succeeds");
    let url = with_database(&admin_url, &database);
    let client = connect(&url).await;
    let version: String = client
        .query_one("SHOW server_version", &[])
        .await
        .expect("the server reports its version")
        .get(0);
    PostgresStore::new(PostgresConfig::new(url.clone()))
        .expect("valid connection string")
        .migrate()
        .await
        .expect("migrations apply");
    client
        .batch_execute(include_str!("seed_consume.sql"))
        .await
        .expect("the original function is created");

    println!(
        "PostgreSQL {version}, {seconds} s per case, one hot key, {PROCESSES} processes, minute + hour + day limits\n"
    );
    println!(
        "| clients | lease calls/s | exact calls/s | exact unbatched calls/s | original calls/s | lease / original | lease / exact | counters − admitted (lease: minute, hour, day) | failed calls |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---|---:|");
    for clients in CLIENTS {
        let mut rates = [0.0; 4];
        let mut lease_gap = [0_i64; 3];
        let mut failed = 0;
        for (index, contender) in CONTENDERS.into_iter().enumerate() {
            client
                .batch_execute(
                    "TRUNCATE highway.tool_rate_limit_usage, seed.tool_rate_limit_usage; CHECKPOINT",
                )
                .await
                .expect("tables truncate");
            let counts = tokio::task::spawn_blocking({
                let url = url.clone();
                move || run_case(&url, contender, clients, seconds, LIMIT)
            })
            .await
            .expect("the case completes");
            rates[index] = counts.measured as f64 / seconds;

            let schema = if contender == "original" {
                "seed"
            } else {
                "highway"
            };
            let charged = counters(&client, schema).await;
            let admitted = counts.admitted as i64;
            // The exact stores and the original charge exactly the admitted calls; leases leave
            // the unused tokens of ended minutes charged, never fewer than the calls admitted.
            assert_eq!(
                counts.rejected, 0,
                "{contender}: no call is rejected below {LIMIT}"
            );
            for (window, count) in ["minute", "hour", "day"].into_iter().zip(charged) {
                assert!(
                    count >= admitted,
                    "{contender}: the {window} counters hold {count} for {admitted} admitted calls"
                );
            }
            failed += counts.failed;
            if contender == "lease" {
                lease_gap = charged.map(|count| count - admitted);
            } else {
                // A call that timed out may have been charged after all.
                for count in charged {
                    assert!(
                        count <= admitted + counts.failed as i64,
                        "{contender} charges each admitted call once"
                    );
                }
            }
        }
        let [lease, exact, unbatched, original] = rates;
        println!(
            "| {clients} | {lease:.0} | {exact:.0} | {unbatched:.0} | {original:.0} | {:.1}× | {:.1}× | {}, {}, {} | {failed} |",
            lease / original,
            lease / exact,
            lease_gap[0],
            lease_gap[1],
            lease_gap[2]
        );
    }

    // Overload: 64 leasing callers ask for far more than a day limit.
    client
        .batch_execute("TRUNCATE highway.tool_rate_limit_usage")
        .await
        .expect("tables truncate");
    let counts = tokio::task::spawn_blocking({
        let url = url.clone();
        move || run_case(&url, "lease", 64, seconds.min(2.0), OVERLOAD_DAY_LIMIT)
    })
    .await
    .expect("the case completes");
    let charged = counters(&client, "highway").await;
    println!(
        "\noverload, 64 leasing callers, day limit {OVERLOAD_DAY_LIMIT}: admitted {}, rejected {}, day counter {}",
        counts.admitted, counts.rejected, charged[2]
    );
    assert!(
        counts.admitted <= OVERLOAD_DAY_LIMIT,
        "leases admitted {} calls for a day limit of {OVERLOAD_DAY_LIMIT}",
        counts.admitted
    );
    assert_eq!(
        charged[2], counts.admitted as i64,
        "after shutdown the open day counts exactly the admitted calls"
    );
    if counts.admitted < OVERLOAD_DAY_LIMIT {
        println!(
            "the callers did not reach the limit in the run: {} tokens left",
            OVERLOAD_DAY_LIMIT - counts.admitted
        );
    }

    drop(client);
    if let Err(error) = admin
        .batch_execute(&format!("DROP DATABASE {database} WITH (FORCE)"))
        .await
    {
        eprintln!("could not drop {database}: {error}; drop it by hand");
    }
}
