//! Several OS processes, each with many tasks, share one limit in PostgreSQL.
//!
//! The parent test starts copies of this test binary that run the ignored `worker_process` test
//! against the parent's database.

mod common;

use std::process::Command;
use std::sync::Arc;

use chrono::{DateTime, Utc, Weekday};
use chrono_tz::Tz;
use highway_ratelimit::report::Capacity;
use highway_ratelimit::store::postgres::{PostgresConfig, PostgresStore};
use highway_ratelimit::store::{ConsumeRequest, ScopeKey, TokenStore};

use common::TestDatabase;

/// The database a worker process charges; set only in worker processes.
const WORKER_URL: &str = "HIGHWAY_STORE_WORKER_URL";
/// The `max_batch_size` of a worker process.
const WORKER_BATCH_SIZE: &str = "HIGHWAY_STORE_WORKER_BATCH_SIZE";
const PROCESSES: usize = 4;
const TASKS_PER_PROCESS: usize = 16;
const CALLS_PER_TASK: usize = 8;
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

#[tokio::test]
async fn processes_admit_exactly_the_limit() {
    let database = TestDatabase::new().await;
    database.store().await;
    let executable = std::env::current_exe().expect("the test binary knows its path");

    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            Command::new(&executable)
                .args([
                    "worker_process",
                    "--exact",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(WORKER_URL, database.url())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("the test binary starts again as a worker")
        })
        .collect();
    let mut admitted = 0;
    for child in children {
        let output = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .expect("waiting thread completes")
            .expect("worker output is readable");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "worker failed: {stdout}");
        admitted += stdout
            .lines()
            .find_map(|line| line.split("admitted=").nth(1))
            .and_then(|count| count.trim().parse::<usize>().ok())
            .unwrap_or_else(|| panic!("worker printed no admitted count: {stdout}"));
    }

    let demand = PROCESSES * TASKS_PER_PROCESS * CALLS_PER_TASK;
    assert!(demand > 150, "the test asks for more than the day limit");
    assert_eq!(admitted, 150);
    let client = database.client().await;
    let rows = client
        .query(
            "SELECT window_type, request_count FROM highway.tool_rate_limit_usage
             ORDER BY array_position(ARRAY['minute', 'hour', 'day'], window_type)",
            &[],
        )
        .await
        .unwrap();
    let counters: Vec<(String, i64)> = rows.iter().map(|row| (row.get(0), row.get(1))).collect();
    assert_eq!(
        counters,
        vec![
            ("minute".to_owned(), 150),
            ("hour".to_owned(), 150),
            ("day".to_owned(), 150)
        ],
        "every window was charged exactly once per admitted call"
    );
}

/// Runs the workload of one worker process, and nothing unless the test above started it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs in the worker processes of processes_admit_exactly_the_limit"]
async fn worker_process() {
    let Ok(url) = std::env::var(WORKER_URL) else {
        eprintln!(
            "{WORKER_URL} is unset: this test only runs as a worker of processes_admit_exactly_the_limit"
        );
        return;
    };
    let store = Arc::new(
        PostgresStore::new(PostgresConfig::new(url).pool_size(TASKS_PER_PROCESS)).unwrap(),
    );
    let key = Arc::new(shared_key());

    let tasks: Vec<_> = (0..TASKS_PER_PROCESS)
        .map(|_| {
            let (store, key) = (store.clone(), key.clone());
            tokio::spawn(async move {
                let mut admitted = 0;
                for _ in 0..CALLS_PER_TASK {
                    let request = ConsumeRequest {
                        key: &key,
                        cost: 1,
                        capacity: &LIMITS,
                        timezone: Tz::UTC,
                        week_start: Weekday::Mon,
                        at: Some(call_instant()),
                    };
                    admitted += usize::from(
                        store
                            .consume(request)
                            .await
                            .expect("consume succeeds")
                            .is_admitted(),
                    );
                }
                admitted
            })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        admitted += task.await.expect("task completes");
    }
    println!("\nadmitted={admitted}");
}
