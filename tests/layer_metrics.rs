//! The layer's metrics, read through a recorder installed for the test's thread: admitted and
//! rejected calls are counted by reason, and decisions that wait are timed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use highway_ratelimit::clock::{ManualClock, TokioClock};
use layer_support::{builder, request, runtime, send_email};
use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use tower::{Service, ServiceExt};

mod layer_support;

/// Keeps every counter and histogram by its name and labels, as `name{label=value}`.
#[derive(Default)]
struct Recorded {
    counters: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    histograms: Mutex<BTreeMap<String, Arc<Samples>>>,
}

#[derive(Default)]
struct Samples(Mutex<Vec<f64>>);

impl HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(value);
    }
}

fn name_of(key: &Key) -> String {
    let labels: Vec<String> = key
        .labels()
        .map(|label| format!("{}={}", label.key(), label.value()))
        .collect();
    if labels.is_empty() {
        key.name().to_owned()
    } else {
        format!("{}{{{}}}", key.name(), labels.join(","))
    }
}

impl Recorded {
    fn counter(&self, name: &str) -> u64 {
        self.counters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .map_or(0, |counter| counter.load(Ordering::SeqCst))
    }

    fn samples(&self, name: &str) -> Vec<f64> {
        self.histograms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .map(|samples| {
                samples
                    .0
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone()
            })
            .unwrap_or_default()
    }
}

impl Recorder for Recorded {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut counters = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        Counter::from_arc(counters.entry(name_of(key)).or_default().clone())
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let mut histograms = self
            .histograms
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Histogram::from_arc(histograms.entry(name_of(key)).or_default().clone())
    }
}

/// Three admitted calls and two rejected by the minute limit. The first decision reads the
/// policy from its source and is timed. The later ones decide on the calling thread and are
/// only counted.
#[test]
fn counts_decisions_and_times_waits() {
    let recorded = Recorded::default();
    let runtime = runtime(false);

    metrics::with_local_recorder(&recorded, || {
        runtime.block_on(async {
            let layer = builder(3)
                .clock(ManualClock::starting_at(
                    "2026-03-02T10:00:00Z".parse().expect("a valid instant"),
                ))
                .build();
            let service = send_email(&layer);

            let mut admitted = 0;
            let mut rejected = 0;
            for _ in 0..5 {
                match service.clone().oneshot(request("acme")).await {
                    Ok(_) => admitted += 1,
                    Err(error) => {
                        assert!(error.rejection().is_some(), "not a rejection: {error}");
                        rejected += 1;
                    }
                }
            }
            assert_eq!((admitted, rejected), (3, 2));
        });
    });

    assert_eq!(recorded.counter("highway_ratelimit_admitted_total"), 3);
    assert_eq!(
        recorded.counter("highway_ratelimit_rejected_total{reason=quota_exhausted}"),
        2
    );
    let timed = recorded.samples("highway_ratelimit_decision_seconds");
    assert_eq!(
        timed.len(),
        1,
        "only the first decision waits (for the policy source): {timed:?}"
    );
    assert!(timed[0] >= 0.0, "negative duration: {timed:?}");
    assert!(timed[0] < 5.0, "implausible duration: {timed:?}");
}

/// A call that wait mode lets through after its first rejection counts once, as admitted, and a
/// call without a tenant counts as rejected for its missing identity.
#[test]
fn counts_each_call_once() {
    let recorded = Recorded::default();
    let runtime = runtime(true);

    metrics::with_local_recorder(&recorded, || {
        runtime.block_on(async {
            let layer = builder(1)
                .clock(TokioClock::starting_at(
                    "2026-03-02T10:00:30Z".parse().expect("a valid instant"),
                ))
                .wait_up_to(Duration::from_secs(60))
                .build();
            let service = send_email(&layer);

            let first = service.clone().oneshot(request("acme")).await;
            assert!(first.is_ok(), "the first call is rejected");
            let waited = service.clone().oneshot(request("acme")).await;
            assert!(waited.is_ok(), "the waiting call is rejected");
            let anonymous = service.clone().oneshot(http::Request::new(())).await;
            assert!(anonymous.is_err(), "a call without a tenant is admitted");
        });
    });

    assert_eq!(recorded.counter("highway_ratelimit_admitted_total"), 2);
    assert_eq!(
        recorded.counter("highway_ratelimit_rejected_total{reason=quota_exhausted}"),
        0
    );
    assert_eq!(
        recorded.counter("highway_ratelimit_rejected_total{reason=missing_identity}"),
        1
    );
}

/// One service counts its admitted calls with whichever recorder is installed at each call: the
/// first, then another, then none, then the first again.
#[test]
fn counts_follow_recorder_change() {
    let first = Recorded::default();
    let second = Recorded::default();
    let runtime = runtime(false);
    let layer = builder(100)
        .clock(ManualClock::starting_at(
            "2026-03-02T10:00:00Z".parse().expect("a valid instant"),
        ))
        .build();
    let mut service = send_email(&layer);
    let mut send = || {
        runtime.block_on(async {
            let ready = service.ready().await.expect("the tool is ready");
            ready
                .call(request("acme"))
                .await
                .expect("the call is admitted");
        })
    };

    for recorder in [&first, &first, &second, &second, &second] {
        metrics::with_local_recorder(recorder, &mut send);
    }
    send();
    metrics::with_local_recorder(&first, &mut send);

    assert_eq!(first.counter("highway_ratelimit_admitted_total"), 3);
    assert_eq!(second.counter("highway_ratelimit_admitted_total"), 3);
}
