//! Per-call overhead of the rate limit layer with the in-process store, beside governor's keyed
//! limiter and tower_governor on the same trivial service, in the same run.
//!
//! Run with `cargo bench --bench layer`. Every call is admitted: the limits are far above what a
//! run can use. All futures here finish on their first poll, so calls are polled once with
//! `now_or_never` inside a tokio runtime context, which keeps executor overhead out of the
//! figures.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;

use chrono::Weekday;
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use governor::{Quota, RateLimiter};
use highway_ratelimit::layer::TenantId;
use highway_ratelimit::store::{ConsumeRequest, MemoryStore, ScopeKey, TokenStore};

#[path = "support/layer.rs"]
mod support;

use support::{EVERY_WINDOW, MINUTE, TOOL, call_now, checked, governed, limited, request, tool};

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
    let request = || ConsumeRequest {
        key: black_box(&scope),
        cost: 1,
        capacity: &MINUTE,
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

    let mut bare = checked(tool(), &tenant, "the bare service");
    group.bench_function("bare_service", |b| {
        b.iter(|| black_box(call_now(&mut bare, request(&tenant))))
    });

    let mut limited_minute = checked(limited(MINUTE), &tenant, "the layer");
    group.bench_function("highway_layer_minute", |b| {
        b.iter(|| black_box(call_now(&mut limited_minute, request(&tenant))))
    });

    let mut limited_all = checked(limited(EVERY_WINDOW), &tenant, "the layer");
    group.bench_function("highway_layer_five_windows", |b| {
        b.iter(|| black_box(call_now(&mut limited_all, request(&tenant))))
    });

    let mut governed = checked(governed(), &tenant, "tower_governor");
    group.bench_function("tower_governor", |b| {
        b.iter(|| black_box(call_now(&mut governed, request(&tenant))))
    });

    group.finish();
}

criterion_group!(benches, keyed_checks, service_calls);
criterion_main!(benches);
