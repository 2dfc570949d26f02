//! The memory store against a reference model, for calls whose instants never go backwards.
//!
//! The model keeps one count per window kind and start, the window of each call's own calendar,
//! as the PostgreSQL store keys its rows. Every consume is preceded by a peek
//! that must agree with it. Calls mix zones with clock changes near the end of March 2026, week
//! starts, limited and unlimited kinds, costs and purges. A second property sends calls that go
//! backwards too, and checks that the store does not panic and that peeks agree with consumes.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc, Weekday};
use chrono_tz::Tz;
use highway_ratelimit::report::Capacity;
use highway_ratelimit::store::{ConsumeRequest, Decision, MemoryStore, ScopeKey, TokenStore};
use highway_ratelimit::window::WindowKind;
use proptest::prelude::*;

const ZONES: [Tz; 12] = [
    Tz::UTC,
    chrono_tz::Europe::Berlin,
    chrono_tz::Europe::London,
    chrono_tz::Asia::Tokyo,
    chrono_tz::America::New_York,
    chrono_tz::Asia::Kolkata,
    chrono_tz::Australia::Lord_Howe,
    chrono_tz::Pacific::Kiritimati,
    chrono_tz::Pacific::Honolulu,
    chrono_tz::America::Santiago,
    chrono_tz::Pacific::Chatham,
    chrono_tz::Etc::GMTPlus12,
];

const WEEK_STARTS: [Weekday; 3] = [Weekday::Mon, Weekday::Sun, Weekday::Wed];

#[derive(Debug, Clone)]
enum Step {
    Consume {
        advance_minutes: i64,
        zone: usize,
        week_start: usize,
        limits: [Option<u64>; 5],
        cost: u64,
    },
    Purge,
}

fn step() -> impl Strategy<Value = Step> {
    let limit = prop_oneof![
        2 => Just(None),
        3 => (0u64..6).prop_map(Some),
    ];
    let consume = (
        prop_oneof![
            4 => Just(0i64),
            4 => 0i64..90,
            2 => 0i64..(3 * 24 * 60),
        ],
        0..ZONES.len(),
        0..WEEK_STARTS.len(),
        [
            limit.clone(),
            limit.clone(),
            limit.clone(),
            limit.clone(),
            limit,
        ],
        1u64..4,
    )
        .prop_map(
            |(advance_minutes, zone, week_start, limits, cost)| Step::Consume {
                advance_minutes,
                zone,
                week_start,
                limits,
                cost,
            },
        );
    prop_oneof![9 => consume, 1 => Just(Step::Purge)]
}

fn capacity(limits: [Option<u64>; 5]) -> Capacity {
    Capacity {
        per_minute: limits[0],
        per_hour: limits[1],
        per_day: limits[2],
        per_week: limits[3],
        per_month: limits[4],
    }
}

/// One count per window kind and start, as the PostgreSQL store keys its rows.
#[derive(Default)]
struct Model {
    used: HashMap<(WindowKind, DateTime<Utc>), u64>,
}

/// A decision reduced to what the model predicts: admission, the rejecting window and its reset,
/// and each limited window's kind, limit, remaining units and reset.
#[derive(Debug, PartialEq)]
struct Expected {
    admitted: bool,
    refusing: Option<(WindowKind, DateTime<Utc>)>,
    windows: Vec<(WindowKind, u64, u64, DateTime<Utc>)>,
}

impl Model {
    /// Decides and charges a call, or returns `None` for a cost above a limit, which the store fails.
    fn decide(&mut self, request: &ConsumeRequest<'_>, at: DateTime<Utc>) -> Option<Expected> {
        let mut limited = Vec::new();
        for kind in WindowKind::ALL {
            if let Some(limit) = request.capacity.get(kind) {
                if limit > 0 && request.cost > limit {
                    return None;
                }
                limited.push((
                    kind,
                    limit,
                    kind.window_at(at, request.timezone, request.week_start),
                ));
            }
        }

        let mut refusing: Option<(WindowKind, DateTime<Utc>)> = None;
        for &(kind, limit, window) in &limited {
            let used = self.used.get(&(kind, window.start)).copied().unwrap_or(0);
            if used + request.cost > limit && refusing.is_none_or(|(_, last)| window.end >= last) {
                refusing = Some((kind, window.end));
            }
        }
        let admitted = refusing.is_none();
        let mut windows = Vec::new();
        for &(kind, limit, window) in &limited {
            let used = self.used.entry((kind, window.start)).or_insert(0);
            if admitted {
                *used += request.cost;
            }
            windows.push((kind, limit, limit.saturating_sub(*used), window.end));
        }
        Some(Expected {
            admitted,
            refusing,
            windows,
        })
    }
}

fn observed(decision: &Decision) -> Expected {
    let refusing = match decision {
        Decision::Admitted { .. } => None,
        Decision::Rejected {
            window, retry_at, ..
        } => Some((*window, *retry_at)),
    };
    Expected {
        admitted: decision.is_admitted(),
        refusing,
        windows: decision
            .windows()
            .iter()
            .map(|usage| (usage.kind, usage.limit, usage.remaining, usage.reset_at))
            .collect(),
    }
}

/// Returns what a peek just before `consume` reports: the remaining units before the charge.
fn as_peek(consume: &Decision, cost: u64) -> Expected {
    let mut expected = observed(consume);
    if expected.admitted {
        for window in &mut expected.windows {
            window.2 += cost;
        }
    }
    expected
}

fn key() -> ScopeKey {
    ScopeKey {
        tenant: "acme".into(),
        tool: "tools.email.send".into(),
        scope: "global".into(),
    }
}

fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-27T20:30:00Z")
        .expect("the start is RFC 3339")
        .with_timezone(&Utc)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn forward_calls_match_window_model(steps in proptest::collection::vec(step(), 1..120)) {
        let store = MemoryStore::new();
        let mut model = Model::default();
        let key = key();
        let mut at = start();

        for (index, step) in steps.iter().enumerate() {
            match step {
                Step::Purge => store.purge_expired(at),
                Step::Consume { advance_minutes, zone, week_start, limits, cost } => {
                    at += Duration::minutes(*advance_minutes);
                    let capacity = capacity(*limits);
                    let request = ConsumeRequest {
                        key: &key,
                        cost: *cost,
                        capacity: &capacity,
                        timezone: ZONES[*zone],
                        week_start: WEEK_STARTS[*week_start],
                        at: Some(at),
                    };
                    let expected = model.decide(&request, at);
                    let peek = block_on(store.peek(request));
                    let consume = block_on(store.consume(request));
                    match expected {
                        None => {
                            prop_assert!(peek.is_err(), "step {index}: peek {peek:?}");
                            prop_assert!(consume.is_err(), "step {index}: consume {consume:?}");
                        }
                        Some(expected) => {
                            let peek = peek.expect("the peek decides");
                            let consume = consume.expect("the consume decides");
                            prop_assert_eq!(as_peek(&consume, *cost), observed(&peek), "step {}: peek and consume", index);
                            prop_assert_eq!(observed(&consume), expected, "step {}: {:?}", index, step);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn backward_calls_keep_peek_and_consume_equal(
        steps in proptest::collection::vec((step(), -(2i64 * 24 * 60)..(2 * 24 * 60)), 1..120),
    ) {
        let store = MemoryStore::new();
        let key = key();

        for (index, (step, offset)) in steps.iter().enumerate() {
            let at = start() + Duration::minutes(*offset);
            match step {
                Step::Purge => store.purge_expired(at),
                Step::Consume { zone, week_start, limits, cost, .. } => {
                    let capacity = capacity(*limits);
                    let request = ConsumeRequest {
                        key: &key,
                        cost: *cost,
                        capacity: &capacity,
                        timezone: ZONES[*zone],
                        week_start: WEEK_STARTS[*week_start],
                        at: Some(at),
                    };
                    let peek = block_on(store.peek(request));
                    let consume = block_on(store.consume(request));
                    match (peek, consume) {
                        (Ok(peek), Ok(consume)) => {
                            prop_assert_eq!(as_peek(&consume, *cost), observed(&peek), "step {}", index);
                        }
                        (Err(_), Err(_)) => {}
                        (peek, consume) => {
                            prop_assert!(false, "step {index}: peek {peek:?}, consume {consume:?}");
                        }
                    }
                }
            }
        }
    }
}

/// Runs a memory store future, which is always ready.
fn block_on<T>(future: futures_util::future::BoxFuture<'_, T>) -> T {
    tokio_test::block_on(future)
}
