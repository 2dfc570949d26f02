//! Per-call overhead of the rate limit layer with the in-process store, beside governor's keyed
//! limiter and tower_governor on the same trivial service, in the same run.
//!
//! Run with `cargo bench --bench layer`. Every call is admitted: the limits are far above what a
//! run can use. All futures here finish on their first poll, so calls are polled once with
//! `now_or_never` inside a tokio runtime context, which keeps executor overhead out of the
//! figures.

use std::convert::Infallible;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::body::Body;
use chrono::Weekday;
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use governor::{Quota, RateLimiter};
use highway_ratelimit::layer::{RateLimitLayer, StaticPolicies, TenantId};
use highway_ratelimit::policy::Policy;
use highway_ratelimit::report::Capacity;
use highway_ratelimit::store::{ConsumeRequest, MemoryStore, ScopeKey, TokenStore};
use http::{Request, Response};
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_governor::GovernorError;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::KeyExtractor;

const TOOL: &str = "tools.email.send";
/// A limit no benchmark run reaches.
const PLENTY: u64 = 1 << 50;

/// Keys tower_governor by the same tenant extension the rate limit layer reads.
#[derive(Debug, Clone, Copy)]
struct TenantKey;

impl KeyExtractor for TenantKey {
    type Key = Arc<str>;

    fn extract<T>(&self, request: &Request<T>) -> Result<Self::Key, GovernorError> {
        request
            .extensions()
            .get::<TenantId>()
            .map(|tenant| tenant.shared().clone())
            .ok_or(GovernorError::UnableToExtractKey)
    }
}

fn tool() -> impl Service<Request<()>, Response = Response<Body>, Error = Infallible, Future: Send>
+ Clone
+ Send
+ 'static {
    service_fn(|_request: Request<()>| async { Ok::<_, Infallible>(Response::new(Body::empty())) })
}

fn request(tenant: &TenantId) -> Request<()> {
    let mut request = Request::new(());
    request.extensions_mut().insert(tenant.clone());
    request
}

/// Calls a service whose futures finish at once, polling each future once.
fn call_now<S: Service<Request<()>>>(service: &mut S, request: Request<()>) -> Option<S::Response> {
    service.ready().now_or_never()?.ok()?;
    service.call(request).now_or_never()?.ok()
}

fn layer(capacity: Capacity) -> RateLimitLayer {
    let policies = StaticPolicies::new().with(Policy::new("default", TOOL, capacity));
    RateLimitLayer::builder(Arc::new(policies), Arc::new(MemoryStore::new()))
        .tool(TOOL)
        .build()
}

fn keyed_checks(c: &mut Criterion) {
    let mut group = c.benchmark_group("keyed_check");

    let governor = RateLimiter::keyed(Quota::per_second(NonZeroU32::MAX));
    let key: Arc<str> = "acme".into();
    group.bench_function("governor_keyed", |b| {
        b.iter(|| black_box(governor.check_key(black_box(&key)).is_ok()))
    });

    let store = MemoryStore::new();
    let scope = ScopeKey {
        tenant: "default".into(),
        tool: TOOL.into(),
        scope: "tenant:acme".into(),
    };
    let capacity = Capacity {
        per_minute: Some(PLENTY),
        ..Capacity::UNLIMITED
    };
    let request = || ConsumeRequest {
        key: black_box(&scope),
        cost: 1,
        capacity: &capacity,
        timezone: chrono_tz::UTC,
        week_start: Weekday::Mon,
        at: None,
    };
    group.bench_function("memory_store_minute", |b| {
        b.iter(|| black_box(store.consume(request()).now_or_never()))
    });
    // The synchronous path the layer takes with an in-process store: no future, no allocation.
    group.bench_function("memory_store_minute_now", |b| {
        b.iter(|| black_box(store.consume_now(request())))
    });
    group.finish();
}

fn service_calls(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _context = runtime.enter();
    let tenant = TenantId::new("acme");
    let mut group = c.benchmark_group("admitted_call");

    let mut bare = tool();
    assert!(call_now(&mut bare, request(&tenant)).is_some());
    group.bench_function("bare_service", |b| {
        b.iter(|| black_box(call_now(&mut bare, request(&tenant))))
    });

    let mut limited = layer(Capacity {
        per_minute: Some(PLENTY),
        ..Capacity::UNLIMITED
    })
    .layer(tool());
    assert!(
        call_now(&mut limited, request(&tenant)).is_some(),
        "the layer rejected or did not finish at once"
    );
    group.bench_function("highway_layer_minute", |b| {
        b.iter(|| black_box(call_now(&mut limited, request(&tenant))))
    });

    let every_window = Capacity {
        per_minute: Some(PLENTY),
        per_hour: Some(PLENTY),
        per_day: Some(PLENTY),
        per_week: Some(PLENTY),
        per_month: Some(PLENTY),
    };
    let mut limited_all = layer(every_window).layer(tool());
    assert!(call_now(&mut limited_all, request(&tenant)).is_some());
    group.bench_function("highway_layer_five_windows", |b| {
        b.iter(|| black_box(call_now(&mut limited_all, request(&tenant))))
    });

    let config = GovernorConfigBuilder::default()
        .per_nanosecond(1)
        .burst_size(u32::MAX)
        .key_extractor(TenantKey)
        .finish()
        .unwrap();
    let mut governed = tower_governor::GovernorLayer::new(config).layer(tool());
    assert!(call_now(&mut governed, request(&tenant)).is_some());
    group.bench_function("tower_governor", |b| {
        b.iter(|| black_box(call_now(&mut governed, request(&tenant))))
    });

    group.finish();
}

criterion_group!(benches, keyed_checks, service_calls);
criterion_main!(benches);
