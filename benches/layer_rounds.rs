//! The layer's overhead beside governor's keyed check, timed in interleaved rounds.
//!
//! Criterion measures one benchmark for seconds before it starts the next, so a change of the
//! machine's speed that lasts seconds (another job, a change of clock speed) can slow one
//! benchmark and not the other, and moves their ratio. Here each round times every contender for
//! the same number of calls, one right after the other, in an order that rotates from round to
//! round, and each ratio is taken within one round. A change that lasts longer than a round then
//! slows both sides of that round's ratio. A shorter one shows as one round out of line, which the
//! median leaves out. The contenders and the service are those of the `layer` benchmark.
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

/// The contenders, in the order of [`Round::times`].
const NAMES: [&str; 5] = [
    "governor keyed check",
    "bare service",
    "layer, minute",
    "layer, five windows",
    "tower_governor",
];
const KEYED_CHECK: usize = 0;
const BARE: usize = 1;
const LAYER_MINUTE: usize = 2;
const LAYER_FIVE: usize = 3;

/// Nanoseconds per call of each contender in one round, in the order of [`NAMES`].
#[derive(Debug, Clone, Copy)]
struct Round {
    times: [f64; NAMES.len()],
}

impl Round {
    /// Returns the overhead of contender `wrapped` over the bare service, in keyed checks.
    fn ratio(&self, wrapped: usize) -> f64 {
        (self.times[wrapped] - self.times[BARE]) / self.times[KEYED_CHECK]
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

/// Reads a whole number of at least 1 from the environment variable `name`.
fn setting(name: &str, default: u32) -> u32 {
    let Ok(value) = std::env::var(name) else {
        return default;
    };
    match value.parse() {
        Ok(number) if number >= 1 => number,
        _ => {
            eprintln!(
                "{name}={value:?} is not a whole number of at least 1: unset it or pass one such as {default}"
            );
            std::process::exit(2);
        }
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this with no such flag: one
    // short round in a debug build, to check that it runs, not to measure.
    let benching = std::env::args().any(|argument| argument == "--bench");
    let (rounds, calls) = if benching {
        (setting("ROUNDS", 15), setting("CALLS", 1_000_000))
    } else {
        println!(
            "a check that the benchmark runs, not a measurement: run `cargo bench` to measure"
        );
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
    // Each contender's loop is compiled for its own closure, with no dynamic call inside, so
    // that the keyed check is timed as criterion times it.
    let mut time = |contender: usize| match contender {
        KEYED_CHECK => per_call(calls, || {
            black_box(keyed.check_key(black_box(&key)).is_ok());
        }),
        BARE => per_call(calls, || {
            black_box(call_now(&mut bare, request(&tenant)));
        }),
        LAYER_MINUTE => per_call(calls, || {
            black_box(call_now(&mut limited_minute, request(&tenant)));
        }),
        LAYER_FIVE => per_call(calls, || {
            black_box(call_now(&mut limited_all, request(&tenant)));
        }),
        _ => per_call(calls, || {
            black_box(call_now(&mut governed, request(&tenant)));
        }),
    };

    println!("{rounds} rounds of {calls} calls per contender, nanoseconds per call");
    println!(
        "| round | {} | layer overhead / keyed check, minute | same, five windows |",
        NAMES.join(" | ")
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut results = Vec::new();
    for number in 0..rounds as usize {
        let mut round = Round {
            times: [0.0; NAMES.len()],
        };
        for offset in 0..NAMES.len() {
            let contender = (number + offset) % NAMES.len();
            round.times[contender] = time(contender);
        }
        let times: Vec<String> = round
            .times
            .iter()
            .map(|time| format!("{time:.1}"))
            .collect();
        println!(
            "| {} | {} | {:.2}× | {:.2}× |",
            number + 1,
            times.join(" | "),
            round.ratio(LAYER_MINUTE),
            round.ratio(LAYER_FIVE),
        );
        results.push(round);
    }

    let times: Vec<String> = (0..NAMES.len())
        .map(|index| {
            let time = median(results.iter().map(|round| round.times[index]).collect());
            format!("{time:.1}")
        })
        .collect();
    let minute: Vec<f64> = results
        .iter()
        .map(|round| round.ratio(LAYER_MINUTE))
        .collect();
    let five: Vec<f64> = results
        .iter()
        .map(|round| round.ratio(LAYER_FIVE))
        .collect();
    println!(
        "| median | {} | {:.2}× | {:.2}× |",
        times.join(" | "),
        median(minute.clone()),
        median(five),
    );
    println!(
        "The median of each column is taken on its own: a ratio of the last row is the median of \
         the rounds' ratios, not the ratio of that row's times."
    );
    let lowest = minute.iter().copied().fold(f64::INFINITY, f64::min);
    let highest = minute.iter().copied().fold(0.0, f64::max);
    println!(
        "Layer overhead with a minute window: {lowest:.2}× to {highest:.2}× a governor keyed check over the rounds."
    );
}
