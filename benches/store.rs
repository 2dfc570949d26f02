//! Throughput of the PostgreSQL token store beside the original design's function.
//!
//! Each case runs N concurrent clients (tokio tasks, each with a pooled connection) for a fixed
//! time. Every client consumes one token in the minute, hour and day windows as fast as it can,
//! against one hot key or against keys spread over 10,000 scope keys, on emptied tables or with every
//! key's rows for the current windows present (`spread-counted`). `highway` is this crate's store with its
//! default settings, which send concurrent calls of a process together, one round trip and one
//! transaction per batch; `highway unbatched` sends every call on its own (`max_batch_size(1)`):
//! one round trip per call. `original` calls the original design's `consume_tool_rate_token` once per window:
//! three round trips and three transactions per call.
//!
//! ```text
//! cargo bench --bench store                       # PostgreSQL at 127.0.0.1:5432
//! DATABASE_URL=postgres://… cargo bench --bench store
//! BENCH_SECONDS=5 cargo bench --bench store       # seconds measured per case (default 3)
//! BENCH_KEYS=spread BENCH_CLIENTS=16 cargo bench --bench store   # one case (hot, spread, spread-counted)
//! ```
//!
//! The benchmark creates a database of its own on the server and drops it at the end.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Weekday;
use chrono_tz::Tz;
use deadpool_postgres::Pool;
use highway_ratelimit::report::Capacity;
use highway_ratelimit::store::postgres::{PostgresConfig, PostgresStore};
use highway_ratelimit::store::{ConsumeRequest, ScopeKey, TokenStore};

#[path = "support/postgres.rs"]
mod postgres;
use postgres::{bench_seconds, connect, original_pool, with_database};

const CONCURRENCY: [usize; 4] = [1, 4, 16, 64];
const SPREAD_KEYS: u64 = 10_000;
/// High enough that no call is rejected during a run, so both sides do the same work.
const LIMIT: u64 = 1_000_000_000;
const WARM_UP: Duration = Duration::from_millis(300);
/// Turns each contender takes per case.
const ROUNDS: usize = 3;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Keys {
    Hot,
    /// 10,000 keys on empty tables: most calls are the first of their key in their windows, and
    /// insert their rows.
    Spread,
    /// 10,000 keys whose rows for the current windows exist before the round: most calls update
    /// rows, as when keys make many calls per window.
    SpreadCounted,
}

impl Keys {
    /// Returns the value of `BENCH_KEYS` that selects these keys.
    fn setting(self) -> &'static str {
        match self {
            Keys::Hot => "hot",
            Keys::Spread => "spread",
            Keys::SpreadCounted => "spread-counted",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Keys::Hot => "hot key",
            Keys::Spread => "10,000 keys",
            Keys::SpreadCounted => "10,000 keys, rows present",
        }
    }

    fn pick(self, state: &mut u64) -> u64 {
        match self {
            Keys::Hot => 0,
            Keys::Spread | Keys::SpreadCounted => {
                // xorshift64: cheap, and different per client.
                *state ^= *state << 13;
                *state ^= *state >> 7;
                *state ^= *state << 17;
                *state % SPREAD_KEYS
            }
        }
    }
}

#[derive(Clone)]
enum Contender {
    Highway(PostgresStore),
    Original(Pool),
}

impl Contender {
    async fn call(&self, key: u64) -> bool {
        let scope = format!("workflow-{key}");
        match self {
            Contender::Highway(store) => {
                let key = ScopeKey {
                    tenant: "acme".to_owned(),
                    tool: "tools.email.send".to_owned(),
                    scope,
                };
                let capacity = Capacity {
                    per_minute: Some(LIMIT),
                    per_hour: Some(LIMIT),
                    per_day: Some(LIMIT),
                    ..Capacity::UNLIMITED
                };
                let request = ConsumeRequest {
                    key: &key,
                    cost: 1,
                    capacity: &capacity,
                    timezone: Tz::UTC,
                    week_start: Weekday::Mon,
                    at: None,
                };
                store
                    .consume(request)
                    .await
                    .expect("consume succeeds")
                    .is_admitted()
            }
            Contender::Original(pool) => {
                let client = pool.get().await.expect("pooled connection");
                let statement = client
                    .prepare_cached("SELECT seed.consume_tool_rate_token('acme', 'tools.email.send', $1, $2, $3)")
                    .await
                    .expect("statement prepares");
                let limit = LIMIT as i32;
                for window in ["minute", "hour", "day"] {
                    let row = client
                        .query_one(&statement, &[&scope, &window, &limit])
                        .await
                        .expect("consume_tool_rate_token succeeds");
                    if !row.get::<_, bool>(0) {
                        return false;
                    }
                }
                true
            }
        }
    }
}

/// Runs `clients` tasks against `contender` for `seconds` after a warm-up; returns the calls
/// counted and the seconds measured.
async fn measure(contender: &Contender, keys: Keys, clients: usize, seconds: f64) -> (u64, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let counting = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));

    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let (contender, stop, counting, calls) = (
                contender.clone(),
                stop.clone(),
                counting.clone(),
                calls.clone(),
            );
            tokio::spawn(async move {
                let mut state = 0x9E37_79B9_7F4A_7C15_u64
                    ^ (client as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                while !stop.load(Ordering::Relaxed) {
                    let admitted = contender.call(keys.pick(&mut state)).await;
                    assert!(admitted, "no call is rejected below a limit of {LIMIT}");
                    if counting.load(Ordering::Relaxed) {
                        calls.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();

    tokio::time::sleep(WARM_UP).await;
    counting.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    counting.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("client task completes");
    }
    (calls.load(Ordering::Relaxed), elapsed)
}

/// Empties both usage tables, and for [`Keys::SpreadCounted`] gives every key a row with one call in
/// each of the current UTC minute, hour and day windows, in both.
async fn reset_tables(client: &tokio_postgres::Client, keys: Keys) {
    client
        .batch_execute("TRUNCATE highway.tool_rate_limit_usage, seed.tool_rate_limit_usage")
        .await
        .expect("tables truncate");
    if keys == Keys::SpreadCounted {
        client
            .batch_execute(&format!(
                "INSERT INTO highway.tool_rate_limit_usage
                     (tenant_id, tool_name, scope_key, window_type, window_start, window_end,
                      request_count)
                 SELECT 'acme', 'tools.email.send', 'workflow-' || key, kind,
                     date_trunc(kind, now()), date_trunc(kind, now()) + ('1 ' || kind)::interval, 1
                 FROM generate_series(0, {last}) AS key,
                     unnest(ARRAY['minute', 'hour', 'day']) AS kind;
                 INSERT INTO seed.tool_rate_limit_usage
                     (tenant_id, tool_name, scope_key, window_type, window_start, request_count)
                 SELECT 'acme', 'tools.email.send', 'workflow-' || key, kind,
                     date_trunc(kind, now()), 1
                 FROM generate_series(0, {last}) AS key,
                     unnest(ARRAY['minute', 'hour', 'day']) AS kind",
                last = SPREAD_KEYS - 1
            ))
            .await
            .expect("rows for the current windows insert");
        client
            .batch_execute(
                "VACUUM ANALYZE highway.tool_rate_limit_usage, seed.tool_rate_limit_usage",
            )
            .await
            .expect("usage tables vacuum");
    }
    client
        .batch_execute("CHECKPOINT")
        .await
        .expect("checkpoint runs");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this with no such flag: build only.
    if !std::env::args().any(|argument| argument == "--bench") {
        return;
    }
    let only_keys = std::env::var("BENCH_KEYS").ok();
    if let Some(value) = &only_keys
        && ![Keys::Hot, Keys::Spread, Keys::SpreadCounted]
            .iter()
            .any(|keys| keys.setting() == value)
    {
        eprintln!(
            "BENCH_KEYS={value:?} selects no case: use hot, spread or spread-counted, or unset it"
        );
        std::process::exit(2);
    }
    let only_clients = std::env::var("BENCH_CLIENTS").ok();
    if let Some(value) = &only_clients
        && !CONCURRENCY
            .iter()
            .any(|clients| clients.to_string() == *value)
    {
        eprintln!(
            "BENCH_CLIENTS={value:?} selects no case: use one of {CONCURRENCY:?}, or unset it"
        );
        std::process::exit(2);
    }
    let admin_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let seconds = bench_seconds();

    let database = format!("highway_bench_{}", std::process::id());
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
        .unwrap()
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
        "PostgreSQL {version}, {seconds} s per case, minute + hour + day limits, one token per call\n"
    );
    println!(
        "| keys | clients | highway calls/s | highway unbatched calls/s | original calls/s | ratio | unbatched ratio |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for keys in [Keys::Hot, Keys::Spread, Keys::SpreadCounted] {
        if only_keys
            .as_deref()
            .is_some_and(|only| only != keys.setting())
        {
            continue;
        }
        for clients in CONCURRENCY {
            if only_clients
                .as_deref()
                .is_some_and(|only| only != clients.to_string())
            {
                continue;
            }
            // The contenders take turns in short rounds, so that a change in the machine's load
            // during the run hits all of them alike. Each gets a pool of its own, closed after
            // its round, so that the server's connection limit holds.
            let mut totals = [(0_u64, 0_f64); 3];
            for _ in 0..ROUNDS {
                for (contender, total) in totals.iter_mut().enumerate() {
                    reset_tables(&client, keys).await;
                    let (calls, elapsed) = match contender {
                        0 | 1 => {
                            let batch_size = if contender == 0 {
                                PostgresConfig::DEFAULT_MAX_BATCH_SIZE
                            } else {
                                1
                            };
                            let store = PostgresStore::new(
                                PostgresConfig::new(url.clone())
                                    .pool_size(clients)
                                    .max_batch_size(batch_size),
                            )
                            .expect("valid connection string");
                            let measured = measure(
                                &Contender::Highway(store.clone()),
                                keys,
                                clients,
                                seconds / ROUNDS as f64,
                            )
                            .await;
                            store.pool().close();
                            measured
                        }
                        _ => {
                            let pool = original_pool(&url, clients);
                            let measured = measure(
                                &Contender::Original(pool.clone()),
                                keys,
                                clients,
                                seconds / ROUNDS as f64,
                            )
                            .await;
                            pool.close();
                            measured
                        }
                    };
                    total.0 += calls;
                    total.1 += elapsed;
                }
            }
            let [ours, unbatched, theirs] = totals.map(|(calls, elapsed)| calls as f64 / elapsed);
            println!(
                "| {} | {clients} | {ours:.0} | {unbatched:.0} | {theirs:.0} | {:.2}× | {:.2}× |",
                keys.name(),
                ours / theirs,
                unbatched / theirs
            );
        }
    }

    drop(client);
    if let Err(error) = admin
        .batch_execute(&format!("DROP DATABASE {database} WITH (FORCE)"))
        .await
    {
        eprintln!("could not drop {database}: {error}; drop it by hand");
    }
}
