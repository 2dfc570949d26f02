//! A circuit breaker stacked around the rate limiter: rejections pass through without opening
//! it, tool failures open it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use highway_ratelimit::clock::TokioClock;
use highway_ratelimit::layer::{RateLimitError, RateLimitLayer, StaticPolicies, TenantId};
use highway_ratelimit::policy::Policy;
use highway_ratelimit::report::Capacity;
use highway_ratelimit::store::MemoryStore;
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_resilience_circuitbreaker::{CircuitBreakerError, CircuitBreakerLayer};

const TOOL: &str = "tools.email.send";

type Outcome = Result<&'static str, RateLimitError<std::io::Error>>;

fn request() -> http::Request<()> {
    let mut request = http::Request::new(());
    request.extensions_mut().insert(TenantId::new("acme"));
    request
}

#[tokio::test(start_paused = true)]
async fn rejections_keep_breaker_closed_and_failures_open_it() {
    let policies = StaticPolicies::new().with(Policy::new(
        "default",
        TOOL,
        Capacity {
            per_minute: Some(2),
            ..Capacity::UNLIMITED
        },
    ));
    let limits = RateLimitLayer::builder(Arc::new(policies), Arc::new(MemoryStore::new()))
        .tool(TOOL)
        .clock(TokioClock::starting_at(
            "2026-03-02T10:00:00Z".parse().unwrap(),
        ))
        .build();
    let tool_fails = Arc::new(AtomicBool::new(false));
    let tool = {
        let tool_fails = tool_fails.clone();
        service_fn(move |_request: http::Request<()>| {
            let fails = tool_fails.load(Ordering::SeqCst);
            async move {
                if fails {
                    Err(std::io::Error::other("smtp down"))
                } else {
                    Ok("sent")
                }
            }
        })
    };
    let breaker = CircuitBreakerLayer::builder()
        .consecutive_failures(4)
        .failure_classifier(|outcome: &Outcome| matches!(outcome, Err(RateLimitError::Service(_))))
        .build()
        .unwrap();
    let mut service = breaker.layer_fn(limits.layer(tool));

    for _ in 0..2 {
        assert_eq!(
            service
                .ready()
                .await
                .unwrap()
                .call(request())
                .await
                .unwrap(),
            "sent"
        );
    }
    for _ in 0..10 {
        let error = service
            .ready()
            .await
            .unwrap()
            .call(request())
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                CircuitBreakerError::Inner(RateLimitError::Rejected(_))
            ),
            "expected a rejection passed through, got {error:?}"
        );
    }
    assert!(!service.is_open(), "rejections opened the circuit breaker");

    tokio::time::advance(std::time::Duration::from_secs(60)).await;
    tool_fails.store(true, Ordering::SeqCst);
    for _ in 0..2 {
        let error = service
            .ready()
            .await
            .unwrap()
            .call(request())
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                CircuitBreakerError::Inner(RateLimitError::Service(_))
            ),
            "{error:?}"
        );
    }
    tokio::time::advance(std::time::Duration::from_secs(60)).await;
    for _ in 0..2 {
        let error = service
            .ready()
            .await
            .unwrap()
            .call(request())
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                CircuitBreakerError::Inner(RateLimitError::Service(_))
            ),
            "{error:?}"
        );
    }

    assert!(
        service.is_open(),
        "four tool failures in a row did not open the circuit breaker"
    );
    let error = service
        .ready()
        .await
        .unwrap()
        .call(request())
        .await
        .unwrap_err();
    assert!(
        matches!(error, CircuitBreakerError::OpenCircuit),
        "{error:?}"
    );
}
