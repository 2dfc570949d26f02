//! Token leases when the policy of a key changes between calls. One test lowers a limit below the
//! count and raises it again. The other has workers in two time zones whose day windows start
//! together, and so share a usage row, but end an hour apart. The calls admitted in each window
//! must stay within its limit, and after shutdown every row must count exactly those calls.

mod common;

use std::collections::HashMap;

use chrono::{DateTime, Utc, Weekday};
use chrono_tz::Tz;
use highway_ratelimit::report::Capacity;
use highway_ratelimit::store::lease::{LeaseConfig, LeasedStore};
use highway_ratelimit::store::{ConsumeRequest, Decision, ScopeKey, TokenStore};
use highway_ratelimit::window::WindowKind;

use common::TestDatabase;

fn key() -> ScopeKey {
    ScopeKey {
        tenant: "acme".to_owned(),
        tool: "tools.email.send".to_owned(),
        scope: "global".to_owned(),
    }
}

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("test instants are RFC 3339")
        .with_timezone(&Utc)
}

fn per_day(limit: u64) -> Capacity {
    Capacity {
        per_day: Some(limit),
        ..Capacity::UNLIMITED
    }
}

async fn leased(database: &TestDatabase) -> LeasedStore {
    let exact = database.store_with(|config| config.pool_size(4)).await;
    LeasedStore::new(
        exact,
        LeaseConfig::new().min_batch(8).max_batch(8).share(1.0),
    )
}

async fn consume(
    store: &LeasedStore,
    capacity: &Capacity,
    timezone: Tz,
    at: DateTime<Utc>,
) -> Decision {
    store
        .consume(ConsumeRequest {
            key: &key(),
            cost: 1,
            capacity,
            timezone,
            week_start: Weekday::Mon,
            at: Some(at),
        })
        .await
        .expect("the call is decided")
}

/// Returns the count of each day row of the key, by window start.
async fn day_counts(database: &TestDatabase) -> HashMap<DateTime<Utc>, i64> {
    database
        .client()
        .await
        .query(
            "SELECT window_start, request_count FROM highway.tool_rate_limit_usage
             WHERE window_type = 'day'",
            &[],
        )
        .await
        .expect("usage rows are readable")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

/// A worker leases tokens under a day limit of 20. After 10 calls the limit is lowered to 5, and
/// then raised to 20 again.
#[tokio::test]
async fn lowered_limit_rejects_leased_key() {
    let database = TestDatabase::new().await;
    let store = leased(&database).await;
    let at = utc("2026-03-02T10:15:30Z");
    let day_start = utc("2026-03-02T00:00:00Z");

    for call in 0..10 {
        let decision = consume(&store, &per_day(20), Tz::UTC, at).await;
        assert!(decision.is_admitted(), "call {call} under 20: {decision:?}");
    }
    let lowered = consume(&store, &per_day(5), Tz::UTC, at).await;
    let lowered_peek = store
        .peek(ConsumeRequest {
            key: &key(),
            cost: 1,
            capacity: &per_day(5),
            timezone: Tz::UTC,
            week_start: Weekday::Mon,
            at: Some(at),
        })
        .await
        .expect("the peek is decided");
    let mut raised = 0;
    for _ in 0..15 {
        raised += usize::from(
            consume(&store, &per_day(20), Tz::UTC, at)
                .await
                .is_admitted(),
        );
    }
    store.shutdown().await.expect("shutdown succeeds");

    assert!(
        !lowered.is_admitted(),
        "10 calls used the lowered limit of 5: {lowered:?}"
    );
    assert!(
        !lowered_peek.is_admitted(),
        "a peek under the lowered limit: {lowered_peek:?}"
    );
    assert_eq!(raised, 10, "the raised limit of 20 admits 10 more calls");
    assert_eq!(
        day_counts(&database).await,
        HashMap::from([(day_start, 20)])
    );
}

/// On 29 March 2026 London's day and the UTC day both start at 00:00 UTC and share a usage row,
/// but London's ends at 23:00 UTC. A London worker and a UTC worker with a day limit of 10 call
/// in turn at 22:30, 23:10 and 23:50 UTC.
#[tokio::test]
async fn zones_sharing_day_row_keep_limits() {
    let database = TestDatabase::new().await;
    let london_worker = leased(&database).await;
    let utc_worker = leased(&database).await;
    let london = chrono_tz::Europe::London;
    let capacity = per_day(10);
    let instants = [
        "2026-03-29T22:30:00Z",
        "2026-03-29T23:10:00Z",
        "2026-03-29T23:50:00Z",
    ]
    .map(utc);

    let mut admitted: HashMap<(Tz, DateTime<Utc>), i64> = HashMap::new();
    for at in instants {
        for _ in 0..8 {
            for (worker, zone) in [(&london_worker, london), (&utc_worker, Tz::UTC)] {
                if consume(worker, &capacity, zone, at).await.is_admitted() {
                    let day = WindowKind::Day.window_at(at, zone, Weekday::Mon);
                    *admitted.entry((zone, day.start)).or_default() += 1;
                }
            }
        }
    }
    london_worker.shutdown().await.expect("shutdown succeeds");
    utc_worker.shutdown().await.expect("shutdown succeeds");

    let shared_start = utc("2026-03-29T00:00:00Z");
    let london_next = utc("2026-03-29T23:00:00Z");
    let shared = admitted.get(&(london, shared_start)).copied().unwrap_or(0)
        + admitted.get(&(Tz::UTC, shared_start)).copied().unwrap_or(0);
    let next = admitted.get(&(london, london_next)).copied().unwrap_or(0);
    assert_eq!(shared, 10, "the shared row admits its limit: {admitted:?}");
    assert_eq!(
        next, 10,
        "London's 30 March admits 10 of its 16 calls: {admitted:?}"
    );
    assert_eq!(
        day_counts(&database).await,
        HashMap::from([(shared_start, 10), (london_next, 10)]),
        "the rows count the calls admitted in them: {admitted:?}"
    );
}
