//! The PostgreSQL store checked against the memory store, and against the calls it admitted.
//!
//! The first test sends one key's calls, with costs and limits that change from call to call, to
//! both stores and compares every decision. The memory of rejected keys in `fast.rs` then sends some
//! calls to the fast statement and others straight to the consume function, and neither may change
//! a decision. The second sends concurrent calls of one key that the store coalesces into batches.
//! They mix costs, two minute limits, and calls with and without an explicit instant. Every usage
//! row must contain exactly the cost of the calls admitted in it.

mod common;

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc, Weekday};
use chrono_tz::Tz;
use futures_util::future::join_all;
use highway_ratelimit::report::Capacity;
use highway_ratelimit::store::{ConsumeRequest, Decision, MemoryStore, ScopeKey, TokenStore};

use common::TestDatabase;

/// A small deterministic generator (xorshift), so that a failure can be replayed.
struct Sequence(u64);

impl Sequence {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

#[tokio::test]
async fn decisions_match_memory_store() {
    let database = TestDatabase::new().await;
    let store = database.store().await;
    let memory = MemoryStore::new();
    let key = ScopeKey {
        tenant: "o'brien \"quoted\"".to_owned(),
        tool: "tools.メール.send; DROP TABLE x".to_owned(),
        scope: "run-ü-🚀".to_owned(),
    };
    let start = DateTime::parse_from_rfc3339("2026-03-02T10:58:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let mut sequence = Sequence(0x9e37_79b9_7f4a_7c15);

    for index in 0..400 {
        // Calls walk across three minutes and the hour boundary at 11:00.
        let at = start + Duration::milliseconds(index * 450);
        let capacity = Capacity {
            per_minute: Some(3 + sequence.next(6)),
            per_hour: Some(20 + sequence.next(10)),
            per_day: if sequence.next(4) == 0 {
                Some(0)
            } else {
                Some(500)
            },
            ..Capacity::UNLIMITED
        };
        let cost = 1 + sequence.next(3);
        let request = ConsumeRequest {
            key: &key,
            cost,
            capacity: &capacity,
            timezone: Tz::UTC,
            week_start: Weekday::Mon,
            at: Some(at),
        };

        let expected = memory.consume(request).await;
        let actual = store.consume(request).await;
        assert_eq!(
            format!("{actual:?}"),
            format!("{expected:?}"),
            "call {index} at {at} with cost {cost} and {capacity:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_charge_admitted_costs_exactly() {
    let database = TestDatabase::new().await;
    let store = database
        .store_with(|config| config.max_batches_in_flight(2))
        .await;
    let key = ScopeKey {
        tenant: "acme".to_owned(),
        tool: "tools.email.send".to_owned(),
        scope: "global".to_owned(),
    };

    let calls = (0..300).map(|index: u64| {
        let store = store.clone();
        let key = key.clone();
        async move {
            let capacity = Capacity {
                per_minute: Some(if index.is_multiple_of(5) { 7 } else { 25 }),
                per_hour: Some(400),
                ..Capacity::UNLIMITED
            };
            let cost = 1 + index % 3;
            let at: Option<DateTime<Utc>> = index.is_multiple_of(2).then(Utc::now);
            let decision = store
                .consume(ConsumeRequest {
                    key: &key,
                    cost,
                    capacity: &capacity,
                    timezone: Tz::UTC,
                    week_start: Weekday::Mon,
                    at,
                })
                .await
                .expect("the store decides");
            (cost, decision)
        }
    });
    let outcomes = join_all(calls).await;

    let mut admitted_per_minute: HashMap<DateTime<Utc>, i64> = HashMap::new();
    for (cost, decision) in &outcomes {
        if let Decision::Admitted { windows } = decision {
            let minute_end = windows[0].reset_at;
            *admitted_per_minute.entry(minute_end).or_default() += *cost as i64;
        }
    }

    let rows = database
        .client()
        .await
        .query(
            "SELECT window_end, request_count FROM highway.tool_rate_limit_usage
             WHERE window_type = 'minute'",
            &[],
        )
        .await
        .unwrap();
    let mut charged_per_minute: HashMap<DateTime<Utc>, i64> = HashMap::new();
    for row in rows {
        let count: i64 = row.get(1);
        assert!(
            count <= 25,
            "a minute counts at most the larger limit: {count}"
        );
        charged_per_minute.insert(row.get(0), count);
    }
    charged_per_minute.retain(|_, count| *count > 0);
    assert_eq!(charged_per_minute, admitted_per_minute);
}
