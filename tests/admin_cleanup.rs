//! Usage cleanup against a real PostgreSQL: the usage table stays bounded while calls go on, and
//! the counters of open windows survive.

mod common;

use std::time::Duration;

use chrono::{DateTime, Duration as ChronoDuration, DurationRound, Utc, Weekday};
use chrono_tz::Tz;
use common::TestDatabase;
use highway_ratelimit::admin::{Cleanup, DEFAULT_RETENTION};
use highway_ratelimit::report::Capacity;
use highway_ratelimit::store::postgres::PostgresStore;
use highway_ratelimit::store::{ConsumeRequest, ScopeKey, TokenStore};

const CAPACITY: Capacity = Capacity {
    per_minute: Some(10),
    per_hour: Some(100),
    per_day: Some(1000),
    per_week: None,
    per_month: None,
};

async fn charge(store: &PostgresStore, key: &ScopeKey, at: DateTime<Utc>) {
    let request = ConsumeRequest {
        key,
        cost: 1,
        capacity: &CAPACITY,
        timezone: Tz::UTC,
        week_start: Weekday::Mon,
        at: Some(at),
    };
    let decision = store.consume(request).await.expect("the store answers");
    assert!(
        decision.is_admitted(),
        "one call per 10 minutes fits every window"
    );
}

async fn usage_rows(store: &PostgresStore) -> i64 {
    let client = store.pool().get().await.unwrap();
    client
        .query_one("SELECT count(*) FROM highway.tool_rate_limit_usage", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn usage_table_stays_bounded() {
    let database = TestDatabase::new().await;
    let store = database.store().await;
    let cleanup = Cleanup::new(store.clone()).with_retention(DEFAULT_RETENTION);
    let key = ScopeKey {
        tenant: "acme".into(),
        tool: "tools.http".into(),
        scope: "acme".into(),
    };

    // Five simulated days of one call every 10 minutes, with a cleanup at the end of each day.
    // Each day leaves 144 minute rows, 24 hour rows and 1 day row; a retention of one day keeps
    // at most two days of them.
    let bound = 2 * (144 + 24 + 1);
    let first_day = (Utc::now() - ChronoDuration::days(10))
        .duration_trunc(ChronoDuration::days(1))
        .unwrap();
    let mut written = 0;
    for day in 0..5 {
        let day_start = first_day + ChronoDuration::days(day);
        for slot in 0..144 {
            charge(&store, &key, day_start + ChronoDuration::minutes(10 * slot)).await;
        }
        written += 144 + 24 + 1;

        let day_end = day_start + ChronoDuration::days(1);
        let deleted = cleanup.run_once_at(day_end).await.unwrap();
        let rows = usage_rows(&store).await;
        assert!(
            rows <= bound,
            "day {day}: {rows} rows left, more than {bound}"
        );
        if day >= 1 {
            assert!(
                deleted > 0,
                "day {day}: the rows of day {} should have gone",
                day - 1
            );
        }
    }
    assert!(
        written > 2 * bound,
        "the test writes more rows than the bound"
    );

    // The database-clock cleanup removes everything older than the retention.
    let deleted = cleanup.run_once().await.unwrap();
    assert!(deleted > 0);
    assert_eq!(usage_rows(&store).await, 0);
}

#[tokio::test]
async fn open_windows_survive_cleanup() {
    let database = TestDatabase::new().await;
    let store = database.store().await;
    let key = ScopeKey {
        tenant: "acme".into(),
        tool: "tools.http".into(),
        scope: "acme".into(),
    };

    let now = Utc::now();
    charge(&store, &key, now).await;
    charge(&store, &key, now - ChronoDuration::days(3)).await;
    assert_eq!(usage_rows(&store).await, 6);

    // Even a retention of zero keeps the windows that contain now.
    let deleted = Cleanup::new(store.clone())
        .with_retention(Duration::ZERO)
        .run_once()
        .await
        .unwrap();
    assert_eq!(deleted, 3);
    let client = store.pool().get().await.unwrap();
    let rows = client
        .query("SELECT window_type, request_count FROM highway.tool_rate_limit_usage ORDER BY window_end - window_start", &[])
        .await
        .unwrap();
    let kept: Vec<(String, i64)> = rows.iter().map(|row| (row.get(0), row.get(1))).collect();
    assert_eq!(
        kept,
        [
            ("minute".to_owned(), 1),
            ("hour".to_owned(), 1),
            ("day".to_owned(), 1)
        ]
    );
}

#[tokio::test]
async fn longest_retention_and_zero_interval_run() {
    let database = TestDatabase::new().await;
    let store = database.store().await;
    let key = ScopeKey {
        tenant: "acme".into(),
        tool: "tools.http".into(),
        scope: "acme".into(),
    };
    charge(&store, &key, Utc::now() - ChronoDuration::days(3)).await;
    let cleanup = Cleanup::new(store.clone())
        .with_retention(Duration::MAX)
        .with_interval(Duration::ZERO);

    assert_eq!(cleanup.run_once_at(Utc::now()).await.unwrap(), 0);
    assert_eq!(cleanup.run_once().await.unwrap(), 0);
    assert_eq!(usage_rows(&store).await, 3);

    let running = tokio::spawn(cleanup.run());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!running.is_finished(), "the cleanup loop stopped");
    running.abort();
}

/// A table that has grown while no cleanup ran contains more ended rows than one statement can
/// delete within the store's statement timeout. A cleanup that deletes them in one statement is
/// cancelled and rolled back on every pass, so the table never shrinks again.
#[tokio::test]
async fn cleanup_finishes_on_large_backlog() {
    let database = TestDatabase::new().await;
    let store = database
        .store_with(|config| config.statement_timeout(Duration::from_millis(300)))
        .await;
    let backlog: i64 = 200_000;
    insert_ended_minutes(&database, backlog).await;

    let deleted = Cleanup::new(store.clone()).run_once().await;

    assert_eq!(
        deleted.expect("a cleanup pass finishes"),
        u64::try_from(backlog).unwrap()
    );
    assert_eq!(usage_rows(&store).await, 0);
}

/// `run_once_at` deletes a backlog of more than one batch, down to the last row.
#[tokio::test]
async fn cleanup_at_instant_finishes_on_backlog() {
    let database = TestDatabase::new().await;
    let store = database
        .store_with(|config| config.statement_timeout(Duration::from_millis(300)))
        .await;
    insert_ended_minutes(&database, 12_345).await;

    let deleted = Cleanup::new(store.clone())
        .run_once_at(Utc::now())
        .await
        .expect("a cleanup pass finishes");

    assert_eq!(deleted, 12_345);
    assert_eq!(usage_rows(&store).await, 0);
}

/// Inserts `count` minute rows of 1,000 tenants whose windows ended ten days ago. The store's
/// connections could cancel a large insert, so it runs on a connection of its own.
async fn insert_ended_minutes(database: &TestDatabase, count: i64) {
    database
        .client()
        .await
        .execute(
            "INSERT INTO highway.tool_rate_limit_usage
                 (tenant_id, tool_name, scope_key, window_type, window_start, window_end,
                  request_count)
             SELECT 't' || (g % 1000), 'tools.http', 'tenant:t' || (g % 1000), 'minute',
                    now() - interval '10 days' + (g / 1000) * interval '1 minute',
                    now() - interval '10 days' + (g / 1000 + 1) * interval '1 minute', 1
             FROM generate_series(0, $1::bigint - 1) AS g",
            &[&count],
        )
        .await
        .unwrap();
}
