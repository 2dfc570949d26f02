//! The PostgreSQL store with long scope keys.
//!
//! A usage row's primary key entry contains the key's tenant, tool and scope ids, and a B-tree
//! entry of PostgreSQL takes at most 2,704 bytes (with the default 8 kB pages). Longer ids fit when
//! PostgreSQL compresses them. A key whose ids do not fit must fail in a peek as in a consume, and
//! a key whose ids fit must be counted like any other.

mod common;

use chrono::{TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use highway_ratelimit::report::Capacity;
use highway_ratelimit::store::lease::{LeaseConfig, LeasedStore};
use highway_ratelimit::store::{ConsumeRequest, MemoryStore, ScopeKey, StoreError, TokenStore};

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

/// Returns `bytes` random hexadecimal digits. PostgreSQL stores them uncompressed, since its
/// compression cannot shrink them by the quarter it requires.
fn incompressible_id(bytes: usize, seed: u64) -> String {
    let mut sequence = Sequence(seed);
    (0..bytes)
        .map(|_| char::from_digit(sequence.next(16) as u32, 16).unwrap())
        .collect()
}

/// Returns the message of the error that caused `error`, which a server error keeps as the
/// source of [`StoreError::Unavailable`].
fn cause(error: &StoreError) -> String {
    std::error::Error::source(error).map_or_else(String::new, ToString::to_string)
}

/// The ids of a usage row are part of its primary key entry, and PostgreSQL's B-tree entries take
/// at most 2,704 bytes. A consume of a key whose ids are longer and do not compress fails with the
/// server's error. A peek, which writes no row, must fail alike rather than admit a call that the
/// consume cannot charge. Nothing is left in the table.
#[tokio::test]
async fn unindexable_ids_fail_peek_and_consume() {
    let database = TestDatabase::new().await;
    let store = database.store().await;
    let capacity = Capacity {
        per_minute: Some(2),
        per_day: Some(5),
        ..Capacity::UNLIMITED
    };
    let at = Utc.with_ymd_and_hms(2026, 3, 2, 10, 15, 0).unwrap();
    let key = ScopeKey {
        tenant: "acme".to_owned(),
        tool: "tools.email.send".to_owned(),
        scope: incompressible_id(3_000, 0x9e37_79b9_7f4a_7c15),
    };
    let request = ConsumeRequest {
        key: &key,
        cost: 1,
        capacity: &capacity,
        timezone: Tz::UTC,
        week_start: Weekday::Mon,
        at: Some(at),
    };

    let peek = store.peek(request).await.expect_err("peek");
    let consume = store.consume(request).await.expect_err("consume");
    let peek_again = store.peek(request).await.expect_err("second peek");

    for (operation, error) in [
        ("peek", &peek),
        ("consume", &consume),
        ("second peek", &peek_again),
    ] {
        assert!(
            matches!(error, StoreError::Unavailable(_)),
            "{operation}: {error:?}"
        );
        assert!(
            cause(error).contains("exceeds btree version 4 maximum 2704"),
            "{operation}: {}",
            cause(error)
        );
        assert!(
            cause(error).contains("SQLSTATE 54000"),
            "{operation}: {}",
            cause(error)
        );
    }
    let rows: i64 = database
        .client()
        .await
        .query_one("SELECT count(*) FROM highway.tool_rate_limit_usage", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 0, "the peeks left no row");
}

/// A leased key with such ids fails alike: its peek goes to the exact store, and its consume cannot
/// take a lease.
#[tokio::test]
async fn unindexable_leased_ids_fail_peek_and_consume() {
    let database = TestDatabase::new().await;
    let store = LeasedStore::new(database.store().await, LeaseConfig::new());
    let capacity = Capacity {
        per_minute: Some(2),
        ..Capacity::UNLIMITED
    };
    let key = ScopeKey {
        tenant: incompressible_id(2_000, 4),
        tool: "tools.email.send".to_owned(),
        scope: incompressible_id(1_000, 5),
    };
    let request = ConsumeRequest {
        key: &key,
        cost: 1,
        capacity: &capacity,
        timezone: Tz::UTC,
        week_start: Weekday::Mon,
        at: None,
    };

    let peek = store.peek(request).await.expect_err("peek");
    let consume = store.consume(request).await.expect_err("consume");

    for (operation, error) in [("peek", &peek), ("consume", &consume)] {
        assert!(
            cause(error).contains("SQLSTATE 54000"),
            "{operation}: {error:?}: {}",
            cause(error)
        );
    }
    store.shutdown().await.expect("nothing to give back");
}

/// Ids far longer than a B-tree entry that PostgreSQL compresses to fit are peeked and consumed
/// like short ones, with the same decisions as the memory store.
#[tokio::test]
async fn compressible_long_ids_are_counted() {
    let database = TestDatabase::new().await;
    let store = database.store().await;
    let memory = MemoryStore::new();
    let capacity = Capacity {
        per_minute: Some(2),
        per_day: Some(3),
        ..Capacity::UNLIMITED
    };
    let at = Utc.with_ymd_and_hms(2026, 3, 2, 10, 15, 0).unwrap();
    let key = ScopeKey {
        tenant: "acme".to_owned(),
        tool: "tools.email.send".to_owned(),
        scope: "workflow:acme:".to_owned() + &"run-".repeat(2_500),
    };
    let request = ConsumeRequest {
        key: &key,
        cost: 1,
        capacity: &capacity,
        timezone: Tz::UTC,
        week_start: Weekday::Mon,
        at: Some(at),
    };

    for call in 0..3 {
        let expected = memory.peek(request).await;
        let actual = store.peek(request).await;
        assert_eq!(
            format!("{actual:?}"),
            format!("{expected:?}"),
            "peek {call}"
        );
        let expected = memory.consume(request).await;
        let actual = store.consume(request).await;
        assert_eq!(
            format!("{actual:?}"),
            format!("{expected:?}"),
            "consume {call}"
        );
    }
}

/// Ids of 2,600 bytes together that do not compress are counted like short ones. A usage row's
/// primary key entry contains the three ids, and PostgreSQL's B-tree entries take at most 2,704
/// bytes with the default 8 kB pages.
#[tokio::test]
async fn long_incompressible_ids_are_counted() {
    let database = TestDatabase::new().await;
    let store = database.store().await;
    let memory = MemoryStore::new();
    let capacity = Capacity {
        per_minute: Some(2),
        per_month: Some(3),
        ..Capacity::UNLIMITED
    };
    let at = Utc.with_ymd_and_hms(2026, 3, 2, 10, 15, 0).unwrap();
    let key = ScopeKey {
        tenant: incompressible_id(1_000, 1),
        tool: incompressible_id(600, 2),
        scope: incompressible_id(1_000, 3),
    };
    let request = ConsumeRequest {
        key: &key,
        cost: 1,
        capacity: &capacity,
        timezone: Tz::UTC,
        week_start: Weekday::Mon,
        at: Some(at),
    };

    for call in 0..3 {
        let expected = memory.consume(request).await;
        let actual = store.consume(request).await;
        assert_eq!(
            format!("{actual:?}"),
            format!("{expected:?}"),
            "call {call}"
        );
    }
}
