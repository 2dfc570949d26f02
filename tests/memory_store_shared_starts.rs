//! Windows of two calendars that start at the same instant but end at different ones.
//!
//! The PostgreSQL store keys a usage row by (key, window kind, window start), so two calendars
//! whose windows start together share one count there. Europe/London and UTC both start March
//! 2026 at 2026-03-01T00:00Z, but London's March ends an hour earlier (British Summer Time begins
//! on 29 March). A policy that switches between the two zones in March must not get two monthly
//! limits from the memory store when the PostgreSQL store gives one.

mod common;

use chrono::{DateTime, Utc, Weekday};
use chrono_tz::Tz;
use highway_ratelimit::report::Capacity;
use highway_ratelimit::store::{ConsumeRequest, MemoryStore, ScopeKey, TokenStore};
use highway_ratelimit::window::WindowKind;

use common::TestDatabase;

fn key() -> ScopeKey {
    ScopeKey {
        tenant: "acme".into(),
        tool: "tools.email.send".into(),
        scope: "global".into(),
    }
}

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("test instants are RFC 3339")
        .with_timezone(&Utc)
}

fn request<'a>(
    key: &'a ScopeKey,
    capacity: &'a Capacity,
    zone: Tz,
    at: DateTime<Utc>,
) -> ConsumeRequest<'a> {
    ConsumeRequest {
        key,
        cost: 1,
        capacity,
        timezone: zone,
        week_start: Weekday::Mon,
        at: Some(at),
    }
}

/// Sends one call in London, then one in UTC, an hour apart, to `store`, and returns how many
/// of the two it admitted.
async fn admitted_in_march(store: &impl TokenStore) -> usize {
    let key = key();
    let month = Capacity {
        per_month: Some(1),
        ..Capacity::UNLIMITED
    };
    let london = chrono_tz::Europe::London;
    let calls = [
        (london, utc("2026-03-10T12:00:00Z")),
        (Tz::UTC, utc("2026-03-10T13:00:00Z")),
    ];

    let mut admitted = 0;
    for (zone, at) in calls {
        let decision = store
            .consume(request(&key, &month, zone, at))
            .await
            .expect("the store decides");
        if decision.is_admitted() {
            admitted += 1;
        }
    }
    admitted
}

#[test]
fn london_and_utc_march_start_together() {
    let london = WindowKind::Month.window_at(
        utc("2026-03-10T12:00:00Z"),
        chrono_tz::Europe::London,
        Weekday::Mon,
    );
    let utc_month = WindowKind::Month.window_at(utc("2026-03-10T12:00:00Z"), Tz::UTC, Weekday::Mon);

    assert_eq!(london.start, utc_month.start);
    assert_ne!(london.end, utc_month.end);
}

#[tokio::test]
async fn postgres_admits_one_march_call() {
    let database = TestDatabase::new().await;
    let store = database.store().await;

    assert_eq!(admitted_in_march(&store).await, 1);
}

#[tokio::test]
async fn memory_admits_one_march_call() {
    let store = MemoryStore::new();

    assert_eq!(
        admitted_in_march(&store).await,
        1,
        "the PostgreSQL store counts both calls in the March row that starts at 2026-03-01T00:00Z"
    );
}
