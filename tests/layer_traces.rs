//! The layer's traces, read through a subscriber installed for the test's thread.
//!
//! Alone in its test binary, because tracing's cache of enabled callsites and its maximum level
//! are shared by all threads: beside other tests without a subscriber, the span went missing.

use std::sync::{Arc, Mutex, PoisonError};

use highway_ratelimit::clock::ManualClock;
use layer_support::{builder, request, runtime, send_email};
use tower::ServiceExt;

mod layer_support;

/// A writer into memory, for a subscriber's output.
#[derive(Clone, Default)]
struct Output(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Output {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// With DEBUG on, the calls decided on the calling thread run in a `rate_limit` span that records
/// the tenant, the tool and the decision.
#[test]
fn span_records_each_decision() {
    let output = Output::default();
    let writer = output.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_writer(move || writer.clone())
        .finish();
    let runtime = runtime(false);

    tracing::subscriber::with_default(subscriber, || {
        runtime.block_on(async {
            let layer = builder(2)
                .clock(ManualClock::starting_at(
                    "2026-03-02T10:00:00Z".parse().expect("a valid instant"),
                ))
                .build();
            let service = send_email(&layer);
            for _ in 0..3 {
                let _ = service.clone().oneshot(request("acme")).await;
            }
        });
    });

    let text = String::from_utf8_lossy(&output.0.lock().unwrap_or_else(PoisonError::into_inner))
        .into_owned();
    let spans: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("rate_limit{") && line.contains(" close "))
        .collect();
    assert_eq!(spans.len(), 3, "{text}");
    for span in &spans {
        assert!(span.contains("tenant=acme"), "{span}");
        assert!(span.contains("tool=tools.email.send"), "{span}");
    }
    assert!(spans[0].contains("decision=Counted"), "{}", spans[0]);
    assert!(spans[1].contains("decision=Counted"), "{}", spans[1]);
    assert!(
        spans[2].contains("decision=\"quota_exhausted\""),
        "{}",
        spans[2]
    );
}
