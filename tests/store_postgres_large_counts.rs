//! Limits and costs near the maximum count of a usage row (`i64::MAX`, a BIGINT), in the
//! PostgreSQL store beside the memory store.

mod common;

use chrono::{DateTime, Utc, Weekday};
use chrono_tz::Tz;
use highway_ratelimit::report::Capacity;
use highway_ratelimit::store::postgres::PostgresStore;
use highway_ratelimit::store::{
    ConsumeRequest, Decision, MemoryStore, ScopeKey, StoreError, TokenStore,
};
use highway_ratelimit::window::WindowKind;

use common::TestDatabase;

const MAX_COUNT: u64 = i64::MAX as u64;

fn key(scope: &str) -> ScopeKey {
    ScopeKey {
        tenant: "acme".to_owned(),
        tool: "tools.bulk.export".to_owned(),
        scope: scope.to_owned(),
    }
}

fn per_minute(limit: u64) -> Capacity {
    Capacity {
        per_minute: Some(limit),
        ..Capacity::UNLIMITED
    }
}

fn request<'a>(key: &'a ScopeKey, capacity: &'a Capacity, cost: u64) -> ConsumeRequest<'a> {
    ConsumeRequest {
        key,
        cost,
        capacity,
        timezone: Tz::UTC,
        week_start: Weekday::Mon,
        at: Some(
            DateTime::parse_from_rfc3339("2026-03-02T10:15:30Z")
                .expect("a valid instant")
                .with_timezone(&Utc),
        ),
    }
}

/// Fills a window whose limit is the maximum count, then checks that the next call, and a peek,
/// are rejections as in the memory store.
async fn full_window_rejects(store: &dyn TokenStore, scope: &str) {
    let key = key(scope);
    let capacity = per_minute(MAX_COUNT);

    let first = store
        .consume(request(&key, &capacity, MAX_COUNT))
        .await
        .unwrap();
    assert!(first.is_admitted(), "{first:?}");
    assert_eq!(first.windows()[0].remaining, 0);

    let next = store.consume(request(&key, &capacity, 1)).await.unwrap();
    assert!(
        matches!(
            next,
            Decision::Rejected {
                window: WindowKind::Minute,
                ..
            }
        ),
        "{next:?}"
    );
    let peeked = store.peek(request(&key, &capacity, 1)).await.unwrap();
    assert!(!peeked.is_admitted(), "{peeked:?}");
}

#[tokio::test]
async fn full_window_rejects_in_both_stores() {
    let database = TestDatabase::new().await;
    let store = database.store().await;
    full_window_rejects(&MemoryStore::new(), "memory").await;
    full_window_rejects(&store, "alone").await;

    let unbatched = database.store_with(|config| config.max_batch_size(1)).await;
    full_window_rejects(&unbatched, "unbatched").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_window_rejects_batched_calls() {
    let database = TestDatabase::new().await;
    let store = database.store().await;
    let key = key("batched");
    let capacity = per_minute(MAX_COUNT);
    store
        .consume(request(&key, &capacity, MAX_COUNT - 2))
        .await
        .unwrap();

    // Concurrent calls of one key queue behind each other and go out in batches, whose total
    // costs pass the maximum count.
    let calls = (0..8).map(|_| {
        let store: PostgresStore = store.clone();
        let key = key.clone();
        tokio::spawn(async move {
            let capacity = per_minute(MAX_COUNT);
            store.consume(request(&key, &capacity, 1)).await
        })
    });
    let mut admitted = 0;
    for call in calls {
        let decision = call.await.unwrap().unwrap();
        if decision.is_admitted() {
            admitted += 1;
        }
    }

    assert_eq!(admitted, 2);
    let peeked = store.peek(request(&key, &capacity, 1)).await.unwrap();
    assert_eq!(peeked.windows()[0].remaining, 0);
}

#[tokio::test]
async fn limit_above_largest_count_acts_as_it() {
    let database = TestDatabase::new().await;
    let store = database.store().await;
    let key = key("above");
    let capacity = per_minute(u64::MAX);

    let error = store
        .consume(request(&key, &capacity, u64::MAX))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::CostExceedsLimit {
                limit: MAX_COUNT,
                cost: u64::MAX,
                ..
            }
        ),
        "{error:?}"
    );

    let decision = store
        .consume(request(&key, &capacity, MAX_COUNT))
        .await
        .unwrap();
    assert!(decision.is_admitted(), "{decision:?}");
    assert_eq!(decision.windows()[0].limit, MAX_COUNT);
    assert_eq!(decision.windows()[0].remaining, 0);
    let next = store.consume(request(&key, &capacity, 1)).await.unwrap();
    assert!(!next.is_admitted(), "{next:?}");
}
