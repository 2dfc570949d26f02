//! The PostgreSQL store with explicit instants that PostgreSQL cannot store exactly. A timestamp
//! in PostgreSQL has microseconds, and a call's instant may have nanoseconds. Every path of a
//! call must count it in the windows that contain the instant, as `MemoryStore` does.

mod common;

use chrono::{DateTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use highway_ratelimit::report::Capacity;
use highway_ratelimit::store::{ConsumeRequest, MemoryStore, ScopeKey, TokenStore};
use highway_ratelimit::window::WindowKind;

use common::TestDatabase;

fn key(scope: &str) -> ScopeKey {
    ScopeKey {
        tenant: "acme".to_owned(),
        tool: "tools.email.send".to_owned(),
        scope: scope.to_owned(),
    }
}

/// Returns the number of calls of `cost` 1 at `at` that `store` admits out of `calls`.
async fn admitted(
    store: &dyn TokenStore,
    key: &ScopeKey,
    capacity: &Capacity,
    at: DateTime<Utc>,
    calls: usize,
) -> usize {
    let mut admitted = 0;
    for _ in 0..calls {
        let decision = store
            .consume(ConsumeRequest {
                key,
                cost: 1,
                capacity,
                timezone: Tz::UTC,
                week_start: Weekday::Mon,
                at: Some(at),
            })
            .await
            .expect("the call is decided");
        admitted += usize::from(decision.is_admitted());
    }
    admitted
}

/// Half a microsecond before a minute ends. Before 2000, the PostgreSQL epoch, tokio-postgres
/// drops the nanoseconds towards 2000, which moves the instant into the next minute.
#[tokio::test]
async fn sub_microsecond_instant_keeps_minute_limit() {
    let database = TestDatabase::new().await;
    let capacity = Capacity {
        per_minute: Some(2),
        ..Capacity::UNLIMITED
    };
    let instants = [
        Utc.with_ymd_and_hms(1999, 6, 1, 12, 0, 59).unwrap()
            + chrono::Duration::nanoseconds(999_999_500),
        Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 59).unwrap()
            + chrono::Duration::nanoseconds(999_999_500),
    ];

    for (index, at) in instants.into_iter().enumerate() {
        let minute = WindowKind::Minute.window_at(at, Tz::UTC, Weekday::Mon);
        assert!(minute.contains(at));
        let memory = MemoryStore::new();
        let key = key(&format!("sub-microsecond-{index}"));
        assert_eq!(
            admitted(&memory, &key, &capacity, at, 4).await,
            2,
            "MemoryStore at {at:?}"
        );

        for batch_size in [1, 64] {
            let store = database
                .store_with(|config| config.max_batch_size(batch_size))
                .await;
            let key = self::key(&format!("sub-microsecond-{index}-{batch_size}"));

            assert_eq!(
                admitted(&store, &key, &capacity, at, 4).await,
                2,
                "PostgresStore with batch size {batch_size} at {at:?}: the minute of {} admits 2 calls",
                minute.start
            );
        }
    }
}
