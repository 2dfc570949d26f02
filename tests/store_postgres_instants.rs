//! The PostgreSQL store with explicit instants: instants that PostgreSQL cannot store exactly,
//! and batches whose calls fall on both sides of window ends in several calendars. Every path of
//! a call must count it in the windows that contain its instant, as `MemoryStore` does.

mod common;

use std::collections::HashMap;

use chrono::{DateTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use futures_util::future::join_all;
use highway_ratelimit::report::Capacity;
use highway_ratelimit::store::{ConsumeRequest, Decision, MemoryStore, ScopeKey, TokenStore};
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

/// The limit of each window kind, the same in every calendar, so that a usage row shared by two
/// calendars has one limit.
const LIMITS: [u64; 5] = [3, 5, 7, 9, 11];

/// Sends rounds of concurrent calls of three keys, so that most go out in batches of several keys.
/// The calls' instants lie a moment before or after a window end. The ends are London's clock
/// change at 01:00 UTC on 29 March 2026, the end of London's day at 23:00 UTC, the UTC day's end,
/// and Berlin's month end at 22:00 UTC on 31 March. Calls of one key mix time zones and week starts, limited
/// kinds and costs. Every usage row must count exactly the costs of the calls admitted in it, and
/// no row more than its kind's limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boundary_batches_charge_admitted_costs() {
    let database = TestDatabase::new().await;
    let store = database.store().await;
    let zones = [
        Tz::UTC,
        chrono_tz::Europe::London,
        chrono_tz::Europe::Berlin,
        chrono_tz::America::New_York,
        chrono_tz::Australia::Lord_Howe,
    ];
    let week_starts = [Weekday::Mon, Weekday::Sun];
    let ends = [
        "2026-03-29T01:00:00Z",
        "2026-03-29T23:00:00Z",
        "2026-03-30T00:00:00Z",
        "2026-03-31T22:00:00Z",
    ]
    .map(|text| {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    });
    let offsets_ms = [-1_000, -1, 0, 1, 999];
    let keys: Vec<ScopeKey> = (0..3)
        .map(|index| key(&format!("boundary-{index}")))
        .collect();
    let mut sequence = Sequence(0x2545_f491_4f6c_dd1d);

    let mut calls = Vec::new();
    for _ in 0..600 {
        let key = keys[sequence.next(3) as usize].clone();
        let zone = zones[sequence.next(zones.len() as u64) as usize];
        let week_start = week_starts[sequence.next(2) as usize];
        let end = ends[sequence.next(ends.len() as u64) as usize];
        let at = end
            + chrono::Duration::milliseconds(
                offsets_ms[sequence.next(offsets_ms.len() as u64) as usize],
            );
        let mut capacity = Capacity::UNLIMITED;
        for (kind, limit) in WindowKind::ALL.into_iter().zip(LIMITS) {
            if sequence.next(3) > 0 {
                capacity.set(kind, Some(limit));
            }
        }
        let cost = 1 + sequence.next(3);
        calls.push((key, zone, week_start, at, capacity, cost));
    }

    let mut admitted: HashMap<(String, WindowKind, DateTime<Utc>), u64> = HashMap::new();
    for round in calls.chunks(150) {
        let decisions = join_all(round.iter().map(
            |(key, zone, week_start, at, capacity, cost)| {
                store.consume(ConsumeRequest {
                    key,
                    cost: *cost,
                    capacity,
                    timezone: *zone,
                    week_start: *week_start,
                    at: Some(*at),
                })
            },
        ))
        .await;
        for ((key, zone, week_start, at, capacity, cost), decision) in round.iter().zip(decisions) {
            let decision = decision.expect("the store decides every call");
            if !matches!(decision, Decision::Admitted { .. }) {
                continue;
            }
            for kind in WindowKind::ALL {
                if capacity.get(kind).is_some() {
                    let window = kind.window_at(*at, *zone, *week_start);
                    *admitted
                        .entry((key.scope.clone(), kind, window.start))
                        .or_default() += cost;
                }
            }
        }
    }

    let rows = database
        .client()
        .await
        .query(
            "SELECT scope_key, window_type, window_start, request_count
             FROM highway.tool_rate_limit_usage WHERE request_count > 0",
            &[],
        )
        .await
        .unwrap();
    let mut charged: HashMap<(String, WindowKind, DateTime<Utc>), u64> = HashMap::new();
    for row in rows {
        let kind: WindowKind = row.get::<_, &str>(1).parse().unwrap();
        let count: i64 = row.get(3);
        charged.insert((row.get(0), kind, row.get(2)), count as u64);
    }
    for ((scope, kind, start), count) in &charged {
        assert!(
            *count <= LIMITS[*kind as usize],
            "{scope} {kind} window from {start} counts {count}, over its limit"
        );
    }
    assert_eq!(charged, admitted, "usage rows against the calls admitted");
    assert!(
        admitted.len() > 20,
        "the calls use many windows: {admitted:?}"
    );
}

/// Sends one key's calls, with instants that move forward across the clock changes of late March
/// 2026, to `MemoryStore` and `PostgresStore`, and compares every outcome. Consecutive calls switch
/// time zone, week start, limits (lowered below the count and raised again) and cost. Both stores
/// count a window by its kind and start, so windows of two calendars that start together share
/// one count in both.
#[tokio::test]
async fn calendar_switches_match_memory_store() {
    let database = TestDatabase::new().await;
    let store = database.store().await;
    let memory = MemoryStore::new();
    let key = key("calendar-switches");
    let zones = [
        Tz::UTC,
        chrono_tz::Europe::London,
        chrono_tz::Europe::Berlin,
        chrono_tz::Australia::Lord_Howe,
        chrono_tz::Asia::Kolkata,
    ];
    let week_starts = [Weekday::Mon, Weekday::Sun];
    let mut at = Utc.with_ymd_and_hms(2026, 3, 28, 20, 0, 0).unwrap();
    let mut sequence = Sequence(0x5851_f42d_4c95_7f2d);

    for index in 0..600 {
        at += chrono::Duration::seconds(sequence.next(45 * 60) as i64);
        let mut capacity = Capacity::UNLIMITED;
        for kind in WindowKind::ALL {
            let limit = match sequence.next(10) {
                0 | 1 => None,
                2 => Some(0),
                limit => Some(limit * 2),
            };
            capacity.set(kind, limit);
        }
        let request = ConsumeRequest {
            key: &key,
            cost: 1 + sequence.next(4),
            capacity: &capacity,
            timezone: zones[sequence.next(zones.len() as u64) as usize],
            week_start: week_starts[sequence.next(2) as usize],
            at: Some(at),
        };

        let expected = memory.consume(request).await;
        let actual = store.consume(request).await;
        assert_eq!(
            format!("{actual:?}"),
            format!("{expected:?}"),
            "call {index} at {at} in {} with cost {} and {capacity:?}",
            request.timezone,
            request.cost
        );
    }
}

/// Returns the instants of 2026 at which `zone`'s UTC offset changes, found by stepping six hours
/// at a time and halving each step that spans a change.
fn offset_changes_2026(zone: Tz) -> Vec<DateTime<Utc>> {
    use chrono::Offset;
    let offset = |at: DateTime<Utc>| {
        zone.offset_from_utc_datetime(&at.naive_utc())
            .fix()
            .local_minus_utc()
    };
    let mut changes = Vec::new();
    let mut at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let end = Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap();
    while at < end {
        let next = at + chrono::Duration::hours(6);
        if offset(at) != offset(next) {
            let (mut before, mut after) = (at, next);
            while after - before > chrono::Duration::seconds(1) {
                let middle = before + (after - before) / 2;
                if offset(middle) == offset(before) {
                    before = middle;
                } else {
                    after = middle;
                }
            }
            changes.push(after);
        }
        at = next;
    }
    changes
}

/// Returns whether the server's time zone data gives `zone` the same UTC offsets as chrono-tz
/// through 2026: every six hours and on both sides of each change in chrono-tz's data. The name
/// goes through `highway.zone_rules`, as in the window functions.
async fn server_agrees_on_offsets(
    client: &tokio_postgres::Client,
    zone: Tz,
    changes: &[DateTime<Utc>],
) -> bool {
    use chrono::Offset;
    let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let mut instants: Vec<DateTime<Utc>> = (0..=4 * 365)
        .map(|step| start + chrono::Duration::hours(6 * step))
        .collect();
    for change in changes {
        instants.push(*change - chrono::Duration::seconds(1));
        instants.push(*change);
    }
    let rows = client
        .query(
            "SELECT extract(epoch FROM (t AT TIME ZONE highway.zone_rules($1))
                 - (t AT TIME ZONE 'UTC'))::int
             FROM unnest($2::timestamptz[]) WITH ORDINALITY AS i(t, ord) ORDER BY ord",
            &[&zone.name(), &instants],
        )
        .await
        .unwrap_or_else(|error| panic!("offsets of {zone}: {error}"));
    rows.iter().zip(&instants).all(|(row, at)| {
        let server: i32 = row.get(0);
        let chrono = zone
            .offset_from_utc_datetime(&at.naive_utc())
            .fix()
            .local_minus_utc();
        server == chrono
    })
}

/// Compares `highway.window_bounds` with `WindowKind::window_at` in every zone of chrono-tz, a
/// second before, at and after each of the zone's offset changes in 2026, for every window kind and
/// two week starts. A call decided by the function and one sent with the store's bounds must be
/// counted in the same row.
///
/// The server reads its own time zone data, which can be older or newer than chrono-tz's. A zone
/// that the server lacks or whose 2026 offsets differ is therefore left out, because the test
/// compares the two window algorithms, not the two copies of the data.
#[tokio::test]
async fn every_zone_change_matches_sql_windows() {
    let database = TestDatabase::new().await;
    database.store().await;
    let client = database.client().await;
    let week_starts = [(Weekday::Mon, "monday"), (Weekday::Sun, "sunday")];
    let server_zones: std::collections::HashSet<String> = client
        .query("SELECT name FROM pg_timezone_names", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();

    let mut mismatches = Vec::new();
    let mut compared = 0;
    let mut zones_left_out = Vec::new();
    for zone in chrono_tz::TZ_VARIANTS {
        let changes = offset_changes_2026(zone);
        if !server_zones.contains(zone.name())
            || !server_agrees_on_offsets(&client, zone, &changes).await
        {
            zones_left_out.push(zone.name());
            continue;
        }
        let mut kinds = Vec::new();
        let mut instants = Vec::new();
        let mut week_names = Vec::new();
        let mut expected = Vec::new();
        for change in changes {
            for at in [
                change - chrono::Duration::seconds(1),
                change,
                change + chrono::Duration::seconds(1),
            ] {
                for (week_start, week_name) in week_starts {
                    for kind in WindowKind::ALL {
                        let window = kind.window_at(at, zone, week_start);
                        kinds.push(kind.as_str());
                        instants.push(at);
                        week_names.push(week_name);
                        expected.push((window.start, window.end));
                    }
                }
            }
        }
        if kinds.is_empty() {
            continue;
        }
        let rows = client
            .query(
                "SELECT b.window_start, b.window_end
                 FROM unnest($1::text[], $2::timestamptz[], $3::text[]) WITH ORDINALITY
                     AS i(kind, at, week_start, ord),
                 LATERAL highway.window_bounds(i.kind, i.at, $4, i.week_start) b
                 ORDER BY i.ord",
                &[&kinds, &instants, &week_names, &zone.name()],
            )
            .await
            .unwrap_or_else(|error| panic!("window_bounds in {zone}: {error}"));
        for (index, row) in rows.iter().enumerate() {
            let sql: (DateTime<Utc>, DateTime<Utc>) = (row.get(0), row.get(1));
            compared += 1;
            if sql != expected[index] {
                mismatches.push(format!(
                    "{zone} {} at {} weeks from {}: SQL {:?}, Rust {:?}",
                    kinds[index], instants[index], week_names[index], sql, expected[index]
                ));
            }
        }
    }

    assert!(
        zones_left_out.len() < chrono_tz::TZ_VARIANTS.len() / 10,
        "the server's time zone data differs from chrono-tz's in {} zones: {}",
        zones_left_out.len(),
        zones_left_out.join(", ")
    );
    assert!(compared > 1000, "only {compared} windows compared");
    assert!(
        mismatches.is_empty(),
        "{} of {compared} windows differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
