//! A PostgreSQL test database whose clock is frozen at a chosen instant, for the tests of the
//! store's windows at offset changes and in summer time on any day they run.
//!
//! The store's statements and functions call `now()` unqualified. A schema `frozen_clock`, put
//! before `pg_catalog` in the store's `search_path`, defines a `now()` that returns the instant in
//! the table `frozen_clock.instant`.
#![allow(dead_code)]

use chrono::{DateTime, Utc};
use highway_ratelimit::clock::ManualClock;
use highway_ratelimit::store::ScopeKey;
use highway_ratelimit::store::postgres::{PostgresConfig, PostgresStore};

use super::common::TestDatabase;

/// The `options` of a connection string that make `frozen_clock.now()` shadow `pg_catalog.now()`.
const FROZEN_SEARCH_PATH: &str = "options=-c%20search_path%3Dfrozen_clock%2Cpg_catalog%2Cpublic";

/// A test database with the migrations applied and a database clock frozen at one instant.
pub struct FrozenDatabase {
    pub database: TestDatabase,
    pub client: tokio_postgres::Client,
}

impl FrozenDatabase {
    pub async fn at(instant: DateTime<Utc>) -> FrozenDatabase {
        let database = TestDatabase::new().await;
        // Migrate before the schema exists, so that no default expression binds to the frozen now().
        database.store().await;
        let client = database.client().await;
        client
            .batch_execute(
                "CREATE SCHEMA frozen_clock;
                 CREATE TABLE frozen_clock.instant (at timestamptz NOT NULL);
                 CREATE FUNCTION frozen_clock.now() RETURNS timestamptz
                     LANGUAGE sql STABLE AS 'SELECT at FROM frozen_clock.instant';",
            )
            .await
            .expect("the frozen clock is created");
        client
            .execute("INSERT INTO frozen_clock.instant VALUES ($1)", &[&instant])
            .await
            .expect("the frozen instant is stored");
        FrozenDatabase { database, client }
    }

    /// Returns a store whose sessions read the frozen clock and whose process clock reads
    /// `process_now`. Panics when a session of the store does not see the frozen instant.
    pub async fn store(&self, process_now: DateTime<Utc>, max_batch_size: usize) -> PostgresStore {
        let url = format!("{}?{FROZEN_SEARCH_PATH}", self.database.url());
        let store = PostgresStore::new(
            PostgresConfig::new(url)
                .clock(ManualClock::starting_at(process_now))
                .max_batch_size(max_batch_size),
        )
        .expect("the connection string is valid");

        let frozen: DateTime<Utc> = self
            .client
            .query_one("SELECT at FROM frozen_clock.instant", &[])
            .await
            .unwrap()
            .get(0);
        let session = store.pool().get().await.expect("a pooled connection");
        let seen: DateTime<Utc> = session.query_one("SELECT now()", &[]).await.unwrap().get(0);
        assert_eq!(seen, frozen, "the store's sessions read the frozen clock");
        store
    }

    /// Returns the rows of `key` as (window type, window start, count), ordered.
    pub async fn rows(&self, key: &ScopeKey) -> Vec<(String, DateTime<Utc>, i64)> {
        self.client
            .query(
                "SELECT window_type, window_start, request_count FROM highway.tool_rate_limit_usage
                 WHERE tenant_id = $1 AND tool_name = $2 AND scope_key = $3
                 ORDER BY window_type, window_start",
                &[&key.tenant, &key.tool, &key.scope],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .collect()
    }
}

/// Returns a scope key of tenant `acme` and tool `tools.email.send`.
pub fn key(scope: &str) -> ScopeKey {
    ScopeKey {
        tenant: "acme".to_owned(),
        tool: "tools.email.send".to_owned(),
        scope: scope.to_owned(),
    }
}

/// Parses an RFC 3339 instant.
pub fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("test instants are RFC 3339")
        .with_timezone(&Utc)
}
