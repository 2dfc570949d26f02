//! Exactness of the rate limit layer over the memory store.
//!
//! The first test compares the layer with a reference model, one call at a time. Each case
//! picks a static policy: limits of every kind (some 0 or unlimited), a time zone and a week
//! start. It also picks a first instant next to a hard calendar boundary: a skipped day in Pacific/Apia,
//! midnight clock changes in America/Santiago, 30-minute changes in Australia/Lord_Howe, the
//! 45-minute offset of Asia/Kathmandu, month and year ends. Calls with random costs then go
//! through a real Tower stack while a manual clock moves forward. The model keeps one count per
//! window kind and start and charges all or nothing. After every call the test compares
//! admission, the tool's calls, the rejection's window, limit, retry time and windows, and peeks
//! the store to check what was charged.
//!
//! The second test delays a call between reading the clock and reaching the store, while other
//! calls move on to the next minute.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use chrono::{DateTime, Duration, Utc, Weekday};
use chrono_tz::Tz;
use futures_util::future::BoxFuture;
use highway_ratelimit::clock::ManualClock;
use highway_ratelimit::layer::{
    Cost, RateLimitError, RateLimitLayer, RejectionReason, StaticPolicies, TenantId,
};
use highway_ratelimit::policy::{Policy, PolicySource};
use highway_ratelimit::report::Capacity;
use highway_ratelimit::store::{ConsumeRequest, MemoryStore, ScopeKey, StoreError, TokenStore};
use highway_ratelimit::window::WindowKind;
use proptest::prelude::*;
use tower::{Service, ServiceExt, service_fn};

const TOOL: &str = "tools.email.send";

/// Zones with a first instant just before one of their hard boundaries.
const STARTS: [(Tz, &str); 9] = [
    // Apia skipped Friday 2011-12-30: Thursday ended at 10:00 UTC and Saturday began.
    (chrono_tz::Pacific::Apia, "2011-12-29T08:30:00Z"),
    // Santiago skips midnight on 2026-09-06 (00:00 -04 becomes 01:00 -03).
    (chrono_tz::America::Santiago, "2026-09-06T02:30:00Z"),
    // Santiago repeats 23:00 on 2026-04-04 (00:00 -03 becomes 23:00 -04).
    (chrono_tz::America::Santiago, "2026-04-05T01:30:00Z"),
    // Lord Howe goes back 30 minutes on 2026-04-05 (02:00 +11 becomes 01:30 +10:30).
    (chrono_tz::Australia::Lord_Howe, "2026-04-04T13:30:00Z"),
    // Lord Howe goes forward 30 minutes on 2026-10-04 (02:00 +10:30 becomes 02:30 +11).
    (chrono_tz::Australia::Lord_Howe, "2026-10-03T14:30:00Z"),
    // Kathmandu (+05:45): the end of March 2026.
    (chrono_tz::Asia::Kathmandu, "2026-03-31T17:30:00Z"),
    // Chatham (+13:45 in summer): the end of 2026.
    (chrono_tz::Pacific::Chatham, "2026-12-31T09:30:00Z"),
    // New York springs forward on 2026-03-08, at the end of a Sunday-start week.
    (chrono_tz::America::New_York, "2026-03-08T04:30:00Z"),
    // Berlin falls back on 2026-10-25: a 25-hour day.
    (chrono_tz::Europe::Berlin, "2026-10-24T21:30:00Z"),
];

const WEEK_STARTS: [Weekday; 3] = [Weekday::Mon, Weekday::Sun, Weekday::Sat];

#[derive(Debug, Clone)]
struct Case {
    start: usize,
    week_start: usize,
    limits: [Option<u64>; 5],
    calls: Vec<(i64, u64)>,
}

fn case() -> impl Strategy<Value = Case> {
    let limit = prop_oneof![1 => Just(None), 1 => Just(Some(0)), 6 => (1u64..8).prop_map(Some)];
    let call = (
        prop_oneof![4 => Just(0i64), 4 => 0i64..600, 2 => 0i64..(6 * 3600)],
        prop_oneof![6 => Just(1u64), 3 => 2u64..5, 1 => 5u64..10],
    );
    (
        0..STARTS.len(),
        0..WEEK_STARTS.len(),
        [
            limit.clone(),
            limit.clone(),
            limit.clone(),
            limit.clone(),
            limit,
        ],
        proptest::collection::vec(call, 1..80),
    )
        .prop_map(|(start, week_start, limits, calls)| Case {
            start,
            week_start,
            limits,
            calls,
        })
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

/// A decision as the model predicts it.
#[derive(Debug, PartialEq)]
enum Outcome {
    Admitted,
    Quota {
        window: WindowKind,
        limit: u64,
        retry_at: DateTime<Utc>,
        windows: Vec<(WindowKind, u64, u64, DateTime<Utc>)>,
    },
    CostExceedsLimit {
        window: WindowKind,
        limit: u64,
    },
    /// A static limit of 0, which no reset lifts.
    Disabled {
        window: WindowKind,
    },
}

/// One count per window kind and start, charged all or nothing.
struct Model {
    capacity: Capacity,
    zone: Tz,
    week_start: Weekday,
    used: HashMap<(WindowKind, DateTime<Utc>), u64>,
}

impl Model {
    fn limited(&self, at: DateTime<Utc>) -> Vec<(WindowKind, u64, DateTime<Utc>, DateTime<Utc>)> {
        WindowKind::ALL
            .into_iter()
            .filter_map(|kind| {
                let limit = self.capacity.get(kind)?;
                let window = kind.window_at(at, self.zone, self.week_start);
                Some((kind, limit, window.start, window.end))
            })
            .collect()
    }

    fn used(&self, kind: WindowKind, start: DateTime<Utc>) -> u64 {
        self.used.get(&(kind, start)).copied().unwrap_or(0)
    }

    fn call(&mut self, at: DateTime<Utc>, cost: u64) -> Outcome {
        let limited = self.limited(at);
        if limited.is_empty() {
            return Outcome::Admitted;
        }
        if let Some(&(kind, limit, _, _)) = limited
            .iter()
            .find(|&&(_, limit, _, _)| limit > 0 && cost > limit)
        {
            return Outcome::CostExceedsLimit {
                window: kind,
                limit,
            };
        }
        if let Some(&(kind, _, _, _)) = limited.iter().find(|&&(_, limit, _, _)| limit == 0) {
            return Outcome::Disabled { window: kind };
        }
        let mut refusing: Option<(WindowKind, u64, DateTime<Utc>)> = None;
        for &(kind, limit, start, end) in &limited {
            let fits = self.used(kind, start) + cost <= limit;
            if !fits && refusing.is_none_or(|(_, _, last)| end >= last) {
                refusing = Some((kind, limit, end));
            }
        }
        match refusing {
            None => {
                for &(kind, _, start, _) in &limited {
                    *self.used.entry((kind, start)).or_insert(0) += cost;
                }
                Outcome::Admitted
            }
            Some((window, limit, retry_at)) => Outcome::Quota {
                window,
                limit,
                retry_at,
                windows: self.remaining(at),
            },
        }
    }

    fn remaining(&self, at: DateTime<Utc>) -> Vec<(WindowKind, u64, u64, DateTime<Utc>)> {
        self.limited(at)
            .into_iter()
            .map(|(kind, limit, start, end)| {
                (
                    kind,
                    limit,
                    limit.saturating_sub(self.used(kind, start)),
                    end,
                )
            })
            .collect()
    }
}

fn observed(result: Result<(), RateLimitError<Infallible>>) -> Outcome {
    let rejection = match result {
        Ok(()) => return Outcome::Admitted,
        Err(RateLimitError::Rejected(rejection)) => rejection,
        Err(RateLimitError::Service(never)) => match never {},
    };
    match rejection.reason() {
        RejectionReason::QuotaExhausted {
            window,
            limit,
            retry_at,
            windows,
            ..
        } => Outcome::Quota {
            window: *window,
            limit: *limit,
            retry_at: *retry_at,
            windows: windows
                .iter()
                .map(|usage| (usage.kind, usage.limit, usage.remaining, usage.reset_at))
                .collect(),
        },
        RejectionReason::CostExceedsLimit { window, limit, .. } => Outcome::CostExceedsLimit {
            window: *window,
            limit: *limit,
        },
        RejectionReason::Disabled { window } => Outcome::Disabled { window: *window },
        other => panic!("unexpected rejection: {other}"),
    }
}

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("test instants are RFC 3339")
        .with_timezone(&Utc)
}

fn request(cost: u64) -> http::Request<()> {
    let mut request = http::Request::new(());
    request.extensions_mut().insert(TenantId::new("acme"));
    request
        .extensions_mut()
        .insert(Cost::new(cost).expect("costs are positive"));
    request
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn layer_matches_window_model(case in case()) {
        let (zone, first) = STARTS[case.start];
        let week_start = WEEK_STARTS[case.week_start];
        let capacity = capacity(case.limits);
        let mut policy = Policy::new("default", TOOL, capacity);
        policy.timezone = zone;
        policy.week_start = week_start;
        let store = Arc::new(MemoryStore::new());
        let clock = ManualClock::starting_at(utc(first));
        let layer = RateLimitLayer::builder(
            Arc::new(StaticPolicies::new().with(policy)),
            store.clone(),
        )
        .tool(TOOL)
        .clock(clock.clone())
        .build();
        let tool_calls = Arc::new(AtomicU64::new(0));
        let counted = tool_calls.clone();
        let mut service = tower::Layer::layer(
            &layer,
            service_fn(move |_: http::Request<()>| {
                counted.fetch_add(1, Ordering::SeqCst);
                async { Ok::<_, Infallible>(()) }
            }),
        );
        let mut model = Model { capacity, zone, week_start, used: HashMap::new() };
        let key = ScopeKey { tenant: "default".into(), tool: TOOL.into(), scope: "tenant:acme".into() };
        let mut admitted = 0;

        for (index, &(advance, cost)) in case.calls.iter().enumerate() {
            clock.advance(Duration::seconds(advance));
            let at = clock.now_for_test();
            let expected = model.call(at, cost);
            let result = tokio_test::block_on(async {
                service.ready().await.expect("the tool is always ready").call(request(cost)).await
            });
            if expected == Outcome::Admitted {
                admitted += 1;
            }
            prop_assert_eq!(observed(result), expected, "call {} at {} costing {}", index, at, cost);
            prop_assert_eq!(tool_calls.load(Ordering::SeqCst), admitted, "call {}", index);

            if capacity.is_unlimited() {
                continue;
            }
            let probe = ConsumeRequest {
                key: &key,
                cost: 1,
                capacity: &capacity,
                timezone: zone,
                week_start,
                at: Some(at),
            };
            let peeked = tokio_test::block_on(store.peek(probe)).expect("a cost of 1 fits every limit");
            let charged: Vec<_> = peeked
                .windows()
                .iter()
                .map(|usage| (usage.kind, usage.limit, usage.remaining, usage.reset_at))
                .collect();
            prop_assert_eq!(charged, model.remaining(at), "counts after call {} at {}", index, at);
        }
    }
}

/// Reads a manual clock.
trait NowForTest {
    fn now_for_test(&self) -> DateTime<Utc>;
}

impl NowForTest for ManualClock {
    fn now_for_test(&self) -> DateTime<Utc> {
        highway_ratelimit::clock::Clock::now(self)
    }
}

/// A policy source that delays every lookup for tenant `hot` while its gate is shut.
struct GatedPolicies {
    policies: StaticPolicies,
    shut: AtomicBool,
    /// Set once a lookup waits at the shut gate.
    held: AtomicBool,
    opened: tokio::sync::Notify,
}

impl PolicySource for GatedPolicies {
    fn lookup<'a>(
        &'a self,
        tenant: &'a str,
        tool: &'a str,
    ) -> BoxFuture<'a, Result<Option<Policy>, StoreError>> {
        Box::pin(async move {
            if tenant == "hot" {
                let opened = self.opened.notified();
                if self.shut.load(Ordering::SeqCst) {
                    self.held.store(true, Ordering::SeqCst);
                    opened.await;
                }
            }
            self.policies.lookup(tenant, tool).await
        })
    }
}

fn tenant_request(tenant: &str) -> http::Request<()> {
    let mut request = http::Request::new(());
    request.extensions_mut().insert(TenantId::new(tenant));
    request
}

/// A call reads the clock at 10:00:59 and then waits for its policy, while 4,096 calls of new
/// tenants at 10:01:00 make the store sweep expired keys. The delayed call still counts in the
/// minute that ended, where its tenant already used the one call allowed.
#[tokio::test]
async fn policy_load_delay_keeps_minute_count() {
    let policies = Arc::new(GatedPolicies {
        policies: StaticPolicies::new().with(Policy::new(
            "default",
            TOOL,
            Capacity {
                per_minute: Some(1),
                ..Capacity::UNLIMITED
            },
        )),
        shut: AtomicBool::new(false),
        held: AtomicBool::new(false),
        opened: tokio::sync::Notify::new(),
    });
    let clock = ManualClock::starting_at(utc("2026-03-02T10:00:58Z"));
    let layer = RateLimitLayer::builder(policies.clone(), Arc::new(MemoryStore::new()))
        .tool(TOOL)
        .clock(clock.clone())
        .store_timeout(std::time::Duration::from_secs(60))
        .build();
    let tool_calls = Arc::new(AtomicU64::new(0));
    let counted = tool_calls.clone();
    let service = tower::Layer::layer(
        &layer,
        service_fn(move |_: http::Request<()>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(()) }
        }),
    );

    service
        .clone()
        .oneshot(tenant_request("hot"))
        .await
        .expect("the first call of the minute is admitted");
    layer.invalidate("default", TOOL);
    policies.shut.store(true, Ordering::SeqCst);
    clock.set(utc("2026-03-02T10:00:59Z"));
    let delayed = tokio::spawn(service.clone().oneshot(tenant_request("hot")));
    // Lets the delayed call read the clock and reach the gate.
    while !policies.held.load(Ordering::SeqCst) {
        tokio::task::yield_now().await;
    }

    clock.set(utc("2026-03-02T10:01:00Z"));
    for tenant in 0..4_096 {
        service
            .clone()
            .oneshot(tenant_request(&format!("tenant-{tenant}")))
            .await
            .expect("each new tenant's first call is admitted");
    }
    policies.shut.store(false, Ordering::SeqCst);
    policies.opened.notify_waiters();
    let late = delayed.await.expect("the delayed call does not panic");

    let rejection = late.expect_err("the tenant's minute allows one call, already used");
    assert!(
        matches!(
            rejection.rejection().map(|rejection| rejection.reason()),
            Some(RejectionReason::QuotaExhausted { limit: 1, .. })
        ),
        "{rejection}"
    );
    assert_eq!(tool_calls.load(Ordering::SeqCst), 1 + 4_096);
}
