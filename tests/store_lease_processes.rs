//! Several OS processes lease tokens of one hot key: the limit holds exactly, a worker killed
//! with SIGKILL loses at most its lease, and tokens given back at shutdown serve the others.
//!
//! The parent tests start copies of this test binary that run the ignored `lease_worker` test
//! against the parent's database, in the mode the environment names.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use chrono::{DateTime, Utc, Weekday};
use chrono_tz::Tz;
use highway_ratelimit::report::Capacity;
use highway_ratelimit::store::lease::{LeaseConfig, LeasedStore};
use highway_ratelimit::store::postgres::{PostgresConfig, PostgresStore};
use highway_ratelimit::store::{ConsumeRequest, ScopeKey, TokenStore};

use common::TestDatabase;

/// The database a worker process charges; set only in worker processes.
const WORKER_URL: &str = "HIGHWAY_LEASE_WORKER_URL";
/// What a worker process does: `demand`, `hold` or `give-back`.
const WORKER_MODE: &str = "HIGHWAY_LEASE_WORKER_MODE";
/// The largest lease of a worker process.
const WORKER_MAX_BATCH: &str = "HIGHWAY_LEASE_WORKER_MAX_BATCH";

const TASKS_PER_PROCESS: usize = 8;
/// Calls per task of a `demand` worker: one process alone asks for more than the day limit.
const CALLS_PER_TASK: usize = 25;
/// Calls a `hold` or `give-back` worker makes before it stops calling.
const HOLDER_CALLS: usize = 5;
const LIMITS: Capacity = Capacity {
    per_minute: Some(400),
    per_hour: Some(250),
    per_day: Some(150),
    per_week: None,
    per_month: None,
};

fn shared_key() -> ScopeKey {
    ScopeKey {
        tenant: "acme".to_owned(),
        tool: "tools.email.send".to_owned(),
        scope: "global".to_owned(),
    }
}

fn call_instant() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-02T10:15:30Z")
        .expect("valid instant")
        .with_timezone(&Utc)
}

fn start_worker(database: &TestDatabase, mode: &str, max_batch: u64) -> Child {
    let executable = std::env::current_exe().expect("the test binary knows its path");
    Command::new(executable)
        .args([
            "lease_worker",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(WORKER_URL, database.url())
        .env(WORKER_MODE, mode)
        .env(WORKER_MAX_BATCH, max_batch.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the test binary starts again as a worker")
}

/// Waits for a worker and returns the `admitted=` count it printed.
async fn admitted_by(child: Child) -> usize {
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("waiting thread completes")
        .expect("worker output is readable");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "worker failed: {stdout}");
    count_after(&stdout, "admitted=")
}

fn count_after(output: &str, label: &str) -> usize {
    output
        .lines()
        .find_map(|line| line.split(label).nth(1))
        .and_then(|count| count.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("worker printed no {label} count: {output}"))
}

async fn counters(database: &TestDatabase) -> Vec<(String, i64)> {
    let client = database.client().await;
    let rows = client
        .query(
            "SELECT window_type, request_count FROM highway.tool_rate_limit_usage
             ORDER BY array_position(ARRAY['minute', 'hour', 'day'], window_type)",
            &[],
        )
        .await
        .expect("usage rows are readable");
    rows.iter().map(|row| (row.get(0), row.get(1))).collect()
}

fn all_windows(count: i64) -> Vec<(String, i64)> {
    ["minute", "hour", "day"]
        .into_iter()
        .map(|kind| (kind.to_owned(), count))
        .collect()
}

#[tokio::test]
async fn processes_admit_exactly_the_limit() {
    let database = TestDatabase::new().await;
    database.store().await;

    let children: Vec<Child> = (0..4)
        .map(|_| start_worker(&database, "demand", 16))
        .collect();
    let mut admitted = 0;
    for child in children {
        admitted += admitted_by(child).await;
    }

    assert_eq!(
        admitted, 150,
        "the day limit holds exactly across 4 processes"
    );
    assert_eq!(counters(&database).await, all_windows(150));
}

#[tokio::test]
async fn killed_worker_loses_at_most_its_lease() {
    const MAX_BATCH: u64 = 20;
    let database = TestDatabase::new().await;
    database.store().await;

    // The holder admits a few calls from its lease, says so, and waits: it is killed holding the
    // rest of its lease in the middle of the window.
    let mut holder = start_worker(&database, "hold", MAX_BATCH);
    let stdout = holder.stdout.take().expect("the holder's output is piped");
    let holder_admitted = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        let admitted = lines
            .by_ref()
            .map_while(Result::ok)
            .find(|line| line.contains("holding admitted="))
            .map(|line| count_after(&line, "admitted="))
            .expect("the holder reports its calls before it is killed");
        holder.kill().expect("SIGKILL reaches the holder");
        holder.wait().expect("the killed holder is reaped");
        admitted
    })
    .await
    .expect("the killing thread completes");
    assert_eq!(holder_admitted, HOLDER_CALLS);

    let children: Vec<Child> = (0..3)
        .map(|_| start_worker(&database, "demand", 16))
        .collect();
    let mut others = 0;
    for child in children {
        others += admitted_by(child).await;
    }

    let total = holder_admitted + others;
    assert!(total <= 150, "admitted {total} calls for a limit of 150");
    let lost = 150 - total;
    assert!(
        lost as u64 <= MAX_BATCH,
        "the killed worker took {lost} unused tokens with it, more than its largest lease of {MAX_BATCH}"
    );
    assert_eq!(
        lost,
        MAX_BATCH as usize - HOLDER_CALLS,
        "exactly the killed worker's unused lease is lost"
    );
    assert_eq!(
        counters(&database).await,
        all_windows(150),
        "the lost tokens stay charged to their windows"
    );
}

#[tokio::test]
async fn tokens_given_back_at_shutdown_serve_others() {
    let database = TestDatabase::new().await;
    database.store().await;

    let giver = start_worker(&database, "give-back", 40);
    let output = tokio::task::spawn_blocking(move || giver.wait_with_output())
        .await
        .expect("waiting thread completes")
        .expect("worker output is readable");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "worker failed: {stdout}");
    assert_eq!(count_after(&stdout, "admitted="), HOLDER_CALLS);
    assert_eq!(count_after(&stdout, "returned="), 40 - HOLDER_CALLS);
    assert_eq!(
        counters(&database).await,
        all_windows(HOLDER_CALLS as i64),
        "only the admitted calls stay charged"
    );

    let others = admitted_by(start_worker(&database, "demand", 16)).await;
    assert_eq!(others, 150 - HOLDER_CALLS);
    assert_eq!(counters(&database).await, all_windows(150));
}

/// Runs the workload of one worker process, and nothing unless a test above started it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs in the worker processes of the tests above"]
async fn lease_worker() {
    let Ok(url) = std::env::var(WORKER_URL) else {
        eprintln!("{WORKER_URL} is unset: this test only runs as a worker of the tests above");
        return;
    };
    let mode = std::env::var(WORKER_MODE).unwrap_or_else(|_| "demand".to_owned());
    let max_batch: u64 = std::env::var(WORKER_MAX_BATCH)
        .ok()
        .and_then(|size| size.parse().ok())
        .unwrap_or(LeaseConfig::DEFAULT_MAX_BATCH);
    let exact = PostgresStore::new(PostgresConfig::new(url).pool_size(4)).unwrap();
    let key = Arc::new(shared_key());

    if mode == "demand" {
        let store = LeasedStore::new(exact, LeaseConfig::new().max_batch(max_batch));
        let tasks: Vec<_> = (0..TASKS_PER_PROCESS)
            .map(|_| {
                let (store, key) = (store.clone(), key.clone());
                tokio::spawn(async move {
                    let mut admitted = 0;
                    for _ in 0..CALLS_PER_TASK {
                        admitted += usize::from(consume(&store, &key).await);
                    }
                    admitted
                })
            })
            .collect();
        let mut admitted = 0;
        for task in tasks {
            admitted += task.await.expect("task completes");
        }
        let returned = store
            .shutdown()
            .await
            .expect("shutdown gives back the leases");
        println!("\nadmitted={admitted} returned={returned}");
        return;
    }

    // A holder takes one whole lease for its first call.
    let config = LeaseConfig::new()
        .max_batch(max_batch)
        .min_batch(max_batch)
        .share(1.0);
    let store = LeasedStore::new(exact, config);
    let mut admitted = 0;
    for _ in 0..HOLDER_CALLS {
        admitted += usize::from(consume(&store, &key).await);
    }
    if mode == "hold" {
        println!("\nholding admitted={admitted} held={}", store.held(&key));
        // Waits to be killed; exits on its own, without giving anything back, should the parent
        // test have died first.
        tokio::time::sleep(std::time::Duration::from_secs(120)).await;
        std::process::exit(0);
    }
    let returned = store
        .shutdown()
        .await
        .expect("shutdown gives back the leases");
    println!("\nadmitted={admitted} returned={returned}");
}

async fn consume(store: &LeasedStore, key: &ScopeKey) -> bool {
    let request = ConsumeRequest {
        key,
        cost: 1,
        capacity: &LIMITS,
        timezone: Tz::UTC,
        week_start: Weekday::Mon,
        at: Some(call_instant()),
    };
    store
        .consume(request)
        .await
        .expect("consume succeeds")
        .is_admitted()
}
