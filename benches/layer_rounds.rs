//! The layer's overhead beside governor's keyed check, timed in interleaved rounds.
//!
//! Criterion measures one benchmark after the other, so a change of the machine's speed between
//! two of them (another job starting, a change of clock speed) moves their ratio. Here
//! each round times every contender for the same number of calls, one right after the other, and
//! the ratios are taken within each round, so such a change hits both sides of a ratio alike. The
//! contenders and the service are those of the `layer` benchmark.
//!
//! ```text
//! cargo bench --bench layer_rounds                        # 15 rounds of 1,000,000 calls
//! ROUNDS=31 CALLS=2000000 cargo bench --bench layer_rounds
//! ```

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Instant;

use governor::{Quota, RateLimiter};
use highway_ratelimit::layer::TenantId;

#[path = "support/layer.rs"]
mod support;

use support::{EVERY_WINDOW, MINUTE, call_now, checked, governed, limited, request, tool};

/// Nanoseconds per call of each contender in one round.
#[derive(Debug, Clone, Copy)]
struct Round {
    keyed_check: f64,
    bare: f64,
    layer_minute: f64,
    layer_five: f64,
    tower_governor: f64,
}

impl Round {
    /// Returns the overhead of a wrapped service over the bare one, in keyed checks.
    fn ratio(&self, wrapped: f64) -> f64 {
        (wrapped - self.bare) / self.keyed_check
    }
}

/// Times `calls` runs of `call` and returns nanoseconds per run.
fn per_call(calls: u32, mut call: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..calls {
        call();
    }
    start.elapsed().as_nanos() as f64 / f64::from(calls)
}

fn setting(name: &str, default: u32) -> u32 {
    match std::env::var(name) {
        Ok(value) => value.parse().unwrap_or_else(|_| {
            panic!("{name}={value:?} is not a whole number: unset it or pass one such as {default}")
        }),
        Err(_) => default,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this with no such flag: one
    // short round, to check that it runs.
    let benching = std::env::args().any(|argument| argument == "--bench");
    let (rounds, calls) = if benching {
        (setting("ROUNDS", 15), setting("CALLS", 1_000_000))
    } else {
        (1, 1_000)
    };

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    let _context = runtime.enter();
    let tenant = TenantId::new("acme");
    let keyed = RateLimiter::keyed(Quota::per_second(NonZeroU32::MAX));
    let key: Arc<str> = "acme".into();
    let mut bare = checked(tool(), &tenant, "the bare service");
    let mut limited_minute = checked(limited(MINUTE), &tenant, "the layer");
    let mut limited_all = checked(limited(EVERY_WINDOW), &tenant, "the layer");
    let mut governed = checked(governed(), &tenant, "tower_governor");

    println!("{rounds} rounds of {calls} calls per contender, nanoseconds per call");
    println!(
        "| round | governor keyed check | bare service | layer, minute | layer, five windows | tower_governor | layer overhead / keyed check, minute | same, five windows |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut results = Vec::new();
    for number in 1..=rounds {
        let round = Round {
            keyed_check: per_call(calls, || {
                black_box(keyed.check_key(black_box(&key)).is_ok());
            }),
            bare: per_call(calls, || {
                black_box(call_now(&mut bare, request(&tenant)));
            }),
            layer_minute: per_call(calls, || {
                black_box(call_now(&mut limited_minute, request(&tenant)));
            }),
            layer_five: per_call(calls, || {
                black_box(call_now(&mut limited_all, request(&tenant)));
            }),
            tower_governor: per_call(calls, || {
                black_box(call_now(&mut governed, request(&tenant)));
            }),
        };
        println!(
            "| {number} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2}× | {:.2}× |",
            round.keyed_check,
            round.bare,
            round.layer_minute,
            round.layer_five,
            round.tower_governor,
            round.ratio(round.layer_minute),
            round.ratio(round.layer_five),
        );
        results.push(round);
    }

    let column = |read: fn(&Round) -> f64| median(results.iter().map(read).collect());
    println!(
        "| median | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2}× | {:.2}× |",
        column(|round| round.keyed_check),
        column(|round| round.bare),
        column(|round| round.layer_minute),
        column(|round| round.layer_five),
        column(|round| round.tower_governor),
        column(|round| round.ratio(round.layer_minute)),
        column(|round| round.ratio(round.layer_five)),
    );
    let minute: Vec<f64> = results
        .iter()
        .map(|round| round.ratio(round.layer_minute))
        .collect();
    let lowest = minute.iter().copied().fold(f64::INFINITY, f64::min);
    let highest = minute.iter().copied().fold(0.0, f64::max);
    println!(
        "layer overhead with a minute window: {lowest:.2}× to {highest:.2}× a governor keyed check over the rounds"
    );
}
