//! Many tasks on one key that switch among calendars at one instant.
//!
//! The instant lies in a different day, week and month window in each calendar below, and the
//! calls keep setting one calendar's windows aside for another's. Each calendar's day must still
//! admit exactly its limit of 40, the smallest of its three limits.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc, Weekday};
use chrono_tz::Tz;
use highway_ratelimit::report::Capacity;
use highway_ratelimit::store::{ConsumeRequest, MemoryStore, ScopeKey, TokenStore};

/// Calendars whose day, week and month windows containing `at()` differ from each other's.
const CALENDARS: [(Tz, Weekday); 4] = [
    (chrono_tz::Pacific::Kiritimati, Weekday::Mon),
    (Tz::UTC, Weekday::Sun),
    (chrono_tz::Asia::Tokyo, Weekday::Wed),
    (chrono_tz::Etc::GMTPlus12, Weekday::Sat),
];

fn at() -> DateTime<Utc> {
    // 23:30Z on 31 March 2026 is 1 April in Kiritimati and Tokyo, 31 March in UTC and -12.
    DateTime::parse_from_rfc3339("2026-03-31T23:30:00Z")
        .expect("the instant is RFC 3339")
        .with_timezone(&Utc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_tasks_admit_each_limit() {
    let store = Arc::new(MemoryStore::new());
    let capacity = Capacity {
        per_day: Some(40),
        per_week: Some(60),
        per_month: Some(50),
        ..Capacity::UNLIMITED
    };
    let admitted: Arc<[AtomicU64; 4]> = Arc::new(Default::default());

    let mut tasks = Vec::new();
    for task in 0..32usize {
        let store = store.clone();
        let admitted = admitted.clone();
        tasks.push(tokio::spawn(async move {
            let key = ScopeKey {
                tenant: "acme".into(),
                tool: "tools.email.send".into(),
                scope: "global".into(),
            };
            for call in 0..40usize {
                let calendar = (task + call) % CALENDARS.len();
                let (timezone, week_start) = CALENDARS[calendar];
                let decision = store
                    .consume(ConsumeRequest {
                        key: &key,
                        cost: 1,
                        capacity: &capacity,
                        timezone,
                        week_start,
                        at: Some(at()),
                    })
                    .await
                    .expect("the store decides");
                if decision.is_admitted() {
                    admitted[calendar].fetch_add(1, Ordering::Relaxed);
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("no task panics");
    }

    for (calendar, count) in admitted.iter().enumerate() {
        assert_eq!(
            count.load(Ordering::Relaxed),
            40,
            "calendar {:?} admits its day limit of 40",
            CALENDARS[calendar]
        );
    }
}
