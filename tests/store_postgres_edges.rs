//! The PostgreSQL store at calendar edges, checked against the memory store and the Rust calendar.
//!
//! The instants lie a microsecond before, at and after the ends of day, week and month windows. The
//! zones have odd offsets or change their clocks at midnight. The years are those around 1970, 2011
//! (Samoa skipped 30 December), leap years and the year 9999, and weeks start on several days.
//! Calls go one by one to both stores, concurrently through two connection pools, with the database
//! clock frozen at a window end, and through token leases. Peeks are mixed with consumes.

mod common;
mod frozen_clock;

use std::collections::HashMap;

use chrono::{DateTime, Duration, Offset, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use futures_util::future::join_all;
use highway_ratelimit::report::Capacity;
use highway_ratelimit::store::lease::{LeaseConfig, LeasedStore};
use highway_ratelimit::store::{ConsumeRequest, MemoryStore, ScopeKey, TokenStore};
use highway_ratelimit::window::WindowKind;

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

/// Returns the instants a microsecond before, at and after the ends of the day, week and month
/// windows that contain the instants from `from` for `days` days, in `zone` with weeks from
/// `week_start`, sorted and without repeats.
fn boundary_instants(
    zone: Tz,
    week_start: Weekday,
    from: DateTime<Utc>,
    days: i64,
) -> Vec<DateTime<Utc>> {
    let mut instants = Vec::new();
    for hour in 0..days * 24 {
        let at = from + Duration::hours(hour);
        for kind in [WindowKind::Day, WindowKind::Week, WindowKind::Month] {
            let window = kind.window_at(at, zone, week_start);
            for edge in [window.start, window.end] {
                for offset in [-1, 0, 1] {
                    instants.push(edge + Duration::microseconds(offset));
                }
            }
        }
    }
    instants.sort();
    instants.dedup();
    instants
}

/// Runs one key's calls at `instants` through both stores and returns the calls whose outcomes
/// differ.
async fn compare_calls(
    store: &dyn TokenStore,
    memory: &MemoryStore,
    key: &ScopeKey,
    zone: Tz,
    week_start: Weekday,
    instants: &[DateTime<Utc>],
    sequence: &mut Sequence,
) -> Vec<String> {
    let mut differences = Vec::new();
    for at in instants {
        let capacity = Capacity {
            per_minute: Some(4 + sequence.next(3)),
            per_hour: Some(6 + sequence.next(3)),
            per_day: Some(8 + sequence.next(3)),
            per_week: Some(12 + sequence.next(3)),
            per_month: Some(16 + sequence.next(3)),
        };
        let request = ConsumeRequest {
            key,
            cost: 1 + sequence.next(2),
            capacity: &capacity,
            timezone: zone,
            week_start,
            at: Some(*at),
        };
        let peek = sequence.next(4) == 0;
        let (expected, actual) = if peek {
            (memory.peek(request).await, store.peek(request).await)
        } else {
            (memory.consume(request).await, store.consume(request).await)
        };
        let (expected, actual) = (format!("{expected:?}"), format!("{actual:?}"));
        if expected != actual {
            differences.push(format!(
                "{} at {at} in {zone}, weeks from {week_start}:\n  memory   {expected}\n  postgres {actual}",
                if peek { "peek" } else { "consume" }
            ));
        }
    }
    differences
}

/// Sends each key's calls, with limits that change from call to call, to both stores at the
/// edges of day, week and month windows, and compares every outcome.
#[tokio::test]
async fn calendar_edges_match_memory_store() {
    let database = TestDatabase::new().await;
    let store = database.store().await;
    let memory = MemoryStore::new();
    let utc = |year, month, day| Utc.with_ymd_and_hms(year, month, day, 0, 0, 0).unwrap();
    let cases: Vec<(Tz, Weekday, DateTime<Utc>, i64)> = vec![
        (
            chrono_tz::Asia::Kathmandu,
            Weekday::Sun,
            utc(1986, 1, 1) - Duration::days(3),
            6,
        ),
        (
            chrono_tz::Australia::Lord_Howe,
            Weekday::Sat,
            utc(2026, 4, 3),
            4,
        ),
        (
            chrono_tz::Australia::Lord_Howe,
            Weekday::Sun,
            utc(2026, 10, 2),
            4,
        ),
        (
            chrono_tz::America::Santiago,
            Weekday::Sun,
            utc(2026, 9, 4),
            4,
        ),
        (
            chrono_tz::America::Santiago,
            Weekday::Sat,
            utc(2026, 4, 3),
            4,
        ),
        (
            chrono_tz::America::Havana,
            Weekday::Sun,
            utc(2026, 10, 30),
            4,
        ),
        (chrono_tz::America::Havana, Weekday::Sun, utc(2026, 3, 6), 4),
        (chrono_tz::Pacific::Apia, Weekday::Fri, utc(2011, 12, 27), 8),
        (chrono_tz::Pacific::Apia, Weekday::Sat, utc(2011, 12, 27), 8),
        (
            chrono_tz::Africa::Casablanca,
            Weekday::Mon,
            utc(2026, 2, 13),
            6,
        ),
        (
            chrono_tz::Africa::Casablanca,
            Weekday::Mon,
            utc(2026, 3, 20),
            6,
        ),
        (
            chrono_tz::Pacific::Kiritimati,
            Weekday::Tue,
            utc(1994, 12, 28),
            6,
        ),
        (
            chrono_tz::Pacific::Chatham,
            Weekday::Wed,
            utc(2028, 2, 27),
            5,
        ),
        (
            chrono_tz::America::St_Johns,
            Weekday::Thu,
            utc(2024, 2, 27),
            5,
        ),
        (Tz::UTC, Weekday::Mon, utc(1969, 12, 29), 5),
        (
            chrono_tz::America::Los_Angeles,
            Weekday::Sun,
            utc(1969, 12, 30),
            4,
        ),
        (
            chrono_tz::Asia::Tokyo,
            Weekday::Mon,
            utc(1970, 1, 1) - Duration::hours(12),
            3,
        ),
        (chrono_tz::Europe::London, Weekday::Mon, utc(2026, 1, 30), 3),
        (chrono_tz::Asia::Kolkata, Weekday::Fri, utc(9999, 12, 28), 4),
        (
            chrono_tz::Pacific::Kiritimati,
            Weekday::Sun,
            utc(9999, 12, 29),
            3,
        ),
        (Tz::UTC, Weekday::Sun, utc(9999, 12, 30), 2),
    ];
    let mut sequence = Sequence(0x0123_4567_89ab_cdef);

    let mut differences = Vec::new();
    for (index, (zone, week_start, from, days)) in cases.into_iter().enumerate() {
        let key = ScopeKey {
            tenant: format!("tenant %_\\' {index}"),
            tool: "tools.\"edge\".send".to_owned(),
            scope: format!("{zone} 🚀 {index}"),
        };
        let instants = boundary_instants(zone, week_start, from, days);
        differences.extend(
            compare_calls(
                &store,
                &memory,
                &key,
                zone,
                week_start,
                &instants,
                &mut sequence,
            )
            .await,
        );
    }

    assert!(
        differences.is_empty(),
        "{} calls differ:\n{}",
        differences.len(),
        differences.join("\n")
    );
}

/// The zones of the concurrent and database clock tests: offsets of 5:45 and 12:45, half-hour
/// clock changes, clock changes at midnight, and a zone that moves its clocks back an hour for
/// Ramadan.
const ODD_ZONES: [Tz; 7] = [
    chrono_tz::Asia::Kathmandu,
    chrono_tz::Australia::Lord_Howe,
    chrono_tz::America::Santiago,
    chrono_tz::America::Havana,
    chrono_tz::Africa::Casablanca,
    chrono_tz::Pacific::Chatham,
    chrono_tz::America::St_Johns,
];

/// A usage row: the scope, the window kind and the window start.
type RowKey = (String, WindowKind, DateTime<Utc>);

/// Sends rounds of concurrent calls of four keys through two stores, which have two connection
/// pools as two processes do. The instants lie within an hour of clock changes and month ends in
/// the odd zones, and the calls mix four week starts, costs, limited kinds and peeks. Every usage
/// row must count exactly the costs of the consumes admitted in it, and no row more than its
/// kind's limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_edge_calls_charge_admitted_costs() {
    let database = TestDatabase::new().await;
    let stores = [
        database.store().await,
        database.store_with(|config| config.max_batch_size(8)).await,
    ];
    let week_starts = [Weekday::Mon, Weekday::Sun, Weekday::Sat, Weekday::Wed];
    let anchors = [
        Utc.with_ymd_and_hms(2026, 4, 4, 15, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2026, 9, 6, 4, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2026, 11, 1, 5, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2026, 2, 28, 11, 0, 0).unwrap(),
    ];
    let keys: Vec<ScopeKey> = (0..4)
        .map(|index| ScopeKey {
            tenant: "tenant %_\\".to_owned(),
            tool: "tools.'edge'.send".to_owned(),
            scope: format!("run-{index}"),
        })
        .collect();
    let limits = [3, 5, 7, 9, 11];
    let mut sequence = Sequence(0xdead_beef_1234_5678);

    let mut admitted: HashMap<RowKey, u64> = HashMap::new();
    for _ in 0..20 {
        let mut calls = Vec::new();
        for _ in 0..120 {
            let key = &keys[sequence.next(keys.len() as u64) as usize];
            let zone = ODD_ZONES[sequence.next(ODD_ZONES.len() as u64) as usize];
            let week_start = week_starts[sequence.next(week_starts.len() as u64) as usize];
            let anchor = anchors[sequence.next(anchors.len() as u64) as usize];
            let at = anchor + Duration::seconds(sequence.next(7_200) as i64 - 3_600);
            let mut capacity = Capacity::UNLIMITED;
            for (kind, limit) in WindowKind::ALL.into_iter().zip(limits) {
                if sequence.next(3) > 0 {
                    capacity.set(kind, Some(limit));
                }
            }
            let cost = 1 + sequence.next(3);
            let store = &stores[sequence.next(2) as usize];
            let peek = sequence.next(5) == 0;
            calls.push((key, zone, week_start, at, capacity, cost, store, peek));
        }

        let decisions = join_all(calls.iter().map(
            |(key, zone, week_start, at, capacity, cost, store, peek)| {
                let request = ConsumeRequest {
                    key,
                    cost: *cost,
                    capacity,
                    timezone: *zone,
                    week_start: *week_start,
                    at: Some(*at),
                };
                async move {
                    if *peek {
                        store.peek(request).await
                    } else {
                        store.consume(request).await
                    }
                }
            },
        ))
        .await;
        for ((key, zone, week_start, at, capacity, cost, _, peek), decision) in
            calls.iter().zip(decisions)
        {
            let decision = decision.expect("the store decides every call");
            if *peek || !decision.is_admitted() {
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
    let mut charged: HashMap<RowKey, u64> = HashMap::new();
    for row in rows {
        let kind: WindowKind = row.get::<_, &str>(1).parse().unwrap();
        let count: i64 = row.get(3);
        charged.insert((row.get(0), kind, row.get(2)), count as u64);
    }
    for ((scope, kind, start), count) in &charged {
        assert!(
            *count <= limits[*kind as usize],
            "{scope} {kind} window from {start} counts {count}, over its limit"
        );
    }
    assert_eq!(
        charged, admitted,
        "usage rows against the consumes admitted"
    );
    assert!(admitted.len() > 500, "the calls use many windows");
}

/// Compares `highway.window_bounds` with `WindowKind::window_at` in every zone of chrono-tz, at
/// random instants from 1970 to 2099, at the first and last microsecond of each window that
/// contains them, and at its end, for every kind and four week starts. A database clock call whose
/// guessed bounds miss `now()` is counted in the function's windows, and those must be the rows
/// that the store's bounds name.
///
/// The server reads its own time zone data, so an instant where the server's UTC offset differs
/// from chrono-tz's is left out: the test compares the two window algorithms, not the two copies of
/// the data.
#[tokio::test]
async fn sql_windows_match_rust_from_1970_to_2099() {
    let database = TestDatabase::new().await;
    database.store().await;
    let client = database.client().await;
    let week_starts = [
        (Weekday::Mon, "monday"),
        (Weekday::Sun, "sunday"),
        (Weekday::Sat, "saturday"),
        (Weekday::Thu, "thursday"),
    ];
    let first = Utc.with_ymd_and_hms(1970, 1, 1, 0, 0, 0).unwrap();
    let mut sequence = Sequence(0x1234_5678_9abc_def1);

    let mut mismatches = Vec::new();
    let mut compared = 0;
    for zone in chrono_tz::TZ_VARIANTS {
        let mut kinds = Vec::new();
        let mut instants = Vec::new();
        let mut week_names = Vec::new();
        let mut expected = Vec::new();
        for _ in 0..6 {
            let base = first + Duration::seconds(sequence.next(130 * 365 * 86_400) as i64);
            let (week_start, week_name) = week_starts[sequence.next(4) as usize];
            for kind in WindowKind::ALL {
                let window = kind.window_at(base, zone, week_start);
                let last = window.end - Duration::microseconds(1);
                for at in [base, window.start, last, window.end] {
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

        let rows = client
            .query(
                "SELECT b.window_start, b.window_end,
                     extract(epoch FROM (i.at AT TIME ZONE highway.zone_rules($4))
                         - (i.at AT TIME ZONE 'UTC'))::int
                 FROM unnest($1::text[], $2::timestamptz[], $3::text[]) WITH ORDINALITY
                     AS i(kind, at, week_start, ord),
                 LATERAL highway.window_bounds(i.kind, i.at, $4, i.week_start) b
                 ORDER BY i.ord",
                &[&kinds, &instants, &week_names, &zone.name()],
            )
            .await
            .unwrap_or_else(|error| panic!("window_bounds in {zone}: {error}"));
        for (index, row) in rows.iter().enumerate() {
            let at = instants[index];
            let server_offset: i32 = row.get(2);
            let offset = zone
                .offset_from_utc_datetime(&at.naive_utc())
                .fix()
                .local_minus_utc();
            if server_offset != offset {
                continue;
            }
            compared += 1;
            let sql: (DateTime<Utc>, DateTime<Utc>) = (row.get(0), row.get(1));
            if sql != expected[index] {
                mismatches.push(format!(
                    "{zone} {} at {at}, weeks from {}: SQL {sql:?}, Rust {:?}",
                    kinds[index], week_names[index], expected[index]
                ));
            }
        }
    }

    assert!(compared > 300_000, "only {compared} windows compared");
    assert!(
        mismatches.is_empty(),
        "{} of {compared} windows differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

/// Freezes the database clock a microsecond before, at and after the ends of week and month
/// windows in the odd zones, under three week starts, with process clocks a day and two seconds
/// off either way. Four concurrent calls of a key must each be counted in the windows that
/// `WindowKind::window_at` gives at the database clock's instant.
#[tokio::test]
async fn week_and_month_ends_by_database_clock() {
    let database = frozen_clock::FrozenDatabase::at(Utc::now()).await;
    let capacity = Capacity {
        per_minute: Some(1_000),
        per_hour: Some(1_000),
        per_day: Some(1_000),
        per_week: Some(1_000),
        per_month: Some(1_000),
    };
    let mut instants = Vec::new();
    for zone in ODD_ZONES {
        for week_start in [Weekday::Sun, Weekday::Sat, Weekday::Wed] {
            let from = Utc.with_ymd_and_hms(2026, 2, 27, 0, 0, 0).unwrap();
            for kind in [WindowKind::Week, WindowKind::Month] {
                let end = kind.window_at(from, zone, week_start).end;
                for offset in [-1, 0, 1] {
                    instants.push((zone, week_start, end + Duration::microseconds(offset)));
                }
            }
        }
    }

    let mut failures = Vec::new();
    for (index, (zone, week_start, now)) in instants.into_iter().enumerate() {
        database
            .client
            .execute("UPDATE frozen_clock.instant SET at = $1", &[&now])
            .await
            .unwrap();
        for skew in [-86_400, -2, 2, 86_400] {
            let store = database.store(now + Duration::seconds(skew), 8).await;
            let label =
                format!("{zone}, weeks from {week_start}, database clock {now}, skew {skew} s");
            let key = frozen_clock::key(&format!("frozen-{index}-{skew}"));
            let request = ConsumeRequest {
                key: &key,
                cost: 1,
                capacity: &capacity,
                timezone: zone,
                week_start,
                at: None,
            };

            for decision in join_all((0..4).map(|_| store.consume(request))).await {
                match decision {
                    Ok(decision) if decision.is_admitted() => {
                        for window in decision.windows() {
                            let expected = window.kind.window_at(now, zone, week_start);
                            if window.reset_at != expected.end {
                                failures.push(format!(
                                    "{label}: {} resets at {}, expected {}",
                                    window.kind, window.reset_at, expected.end
                                ));
                            }
                        }
                    }
                    other => failures.push(format!("{label}: {other:?}")),
                }
            }
            let mut expected: Vec<(String, DateTime<Utc>, i64)> = WindowKind::ALL
                .iter()
                .map(|kind| {
                    let start = kind.window_at(now, zone, week_start).start;
                    (kind.as_str().to_owned(), start, 4)
                })
                .collect();
            expected.sort();
            let rows = database.rows(&key).await;
            if rows != expected {
                failures.push(format!("{label}: rows {rows:?}, expected {expected:?}"));
            }
        }
    }

    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Sends one key's calls at the edges of day, week and month windows to a `LeasedStore` and a
/// `MemoryStore`, and another key's to a `PostgresStore` and a second `MemoryStore`. Consecutive
/// calls switch between a zone and UTC and change their limits, which gives back the lease and
/// takes another. With one worker, the leased store must admit exactly the calls the memory store
/// admits, and the exact store must return the same decisions.
#[tokio::test]
async fn leased_and_exact_stores_match_memory() {
    let database = TestDatabase::new().await;
    let exact = database.store().await;
    let leased = LeasedStore::new(
        database.store().await,
        LeaseConfig::new().recheck_after(std::time::Duration::ZERO),
    );
    let memory_for_leased = MemoryStore::new();
    let memory_for_exact = MemoryStore::new();
    let utc = |year, month, day| Utc.with_ymd_and_hms(year, month, day, 0, 0, 0).unwrap();
    let cases = [
        (
            chrono_tz::Asia::Kathmandu,
            Weekday::Sun,
            utc(2026, 2, 26),
            4,
        ),
        (
            chrono_tz::Australia::Lord_Howe,
            Weekday::Sat,
            utc(2026, 4, 3),
            3,
        ),
        (
            chrono_tz::America::Santiago,
            Weekday::Sun,
            utc(2026, 9, 4),
            3,
        ),
        (
            chrono_tz::America::Havana,
            Weekday::Sun,
            utc(2026, 10, 30),
            3,
        ),
        (chrono_tz::Pacific::Apia, Weekday::Fri, utc(2011, 12, 27), 6),
    ];
    let mut sequence = Sequence(0x5555_aaaa_1234_9876);

    let mut differences = Vec::new();
    for (index, (zone, week_start, from, days)) in cases.into_iter().enumerate() {
        let leased_key = frozen_clock::key(&format!("leased-{index}"));
        let exact_key = frozen_clock::key(&format!("exact-{index}"));
        for at in boundary_instants(zone, week_start, from, days) {
            let mut capacity = Capacity::UNLIMITED;
            for (kind, limit) in WindowKind::ALL.into_iter().zip([4, 6, 8, 12, 16]) {
                let limit = match sequence.next(6) {
                    0 => None,
                    1 => Some(limit / 2),
                    _ => Some(limit),
                };
                capacity.set(kind, limit);
            }
            let zone = if sequence.next(3) == 0 { Tz::UTC } else { zone };
            let cost = 1 + sequence.next(2);
            let peek = sequence.next(4) == 0;
            let request = ConsumeRequest {
                key: &leased_key,
                cost,
                capacity: &capacity,
                timezone: zone,
                week_start,
                at: Some(at),
            };
            let exact_request = ConsumeRequest {
                key: &exact_key,
                ..request
            };
            let operation = if peek { "peek" } else { "consume" };

            let (expected, actual) = if peek {
                (
                    memory_for_leased.peek(request).await,
                    leased.peek(request).await,
                )
            } else {
                (
                    memory_for_leased.consume(request).await,
                    leased.consume(request).await,
                )
            };
            let (expected, actual) = (expected.unwrap(), actual.unwrap());
            if expected.is_admitted() != actual.is_admitted() {
                differences.push(format!(
                    "leased {operation} at {at} in {zone} of cost {cost}:\n  memory {expected:?}\n  leased {actual:?}"
                ));
            }

            let (expected, actual) = if peek {
                (
                    memory_for_exact.peek(exact_request).await,
                    exact.peek(exact_request).await,
                )
            } else {
                (
                    memory_for_exact.consume(exact_request).await,
                    exact.consume(exact_request).await,
                )
            };
            let (expected, actual) = (format!("{expected:?}"), format!("{actual:?}"));
            if expected != actual {
                differences.push(format!(
                    "exact {operation} at {at} in {zone} of cost {cost}:\n  memory   {expected}\n  postgres {actual}"
                ));
            }
        }
    }
    leased.shutdown().await.expect("the leases are given back");

    assert!(
        differences.is_empty(),
        "{} calls differ:\n{}",
        differences.len(),
        differences.join("\n")
    );
}
