//! A circuit breaker stacked around the rate limiter: rejections pass through the breaker
//! without opening it, while failures of the tool itself open it.
//!
//! Run with `cargo run --example circuit_breaker`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use highway_ratelimit::layer::{RateLimitError, RateLimitLayer, StaticPolicies, TenantId};
use highway_ratelimit::policy::Policy;
use highway_ratelimit::report::Capacity;
use highway_ratelimit::store::MemoryStore;
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_resilience_circuitbreaker::{CircuitBreakerError, CircuitBreakerLayer};

type Outcome = Result<&'static str, RateLimitError<std::io::Error>>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Three emails a minute for every tenant.
    let per_minute = Capacity {
        per_minute: Some(3),
        ..Capacity::UNLIMITED
    };
    let policies =
        StaticPolicies::new().with(Policy::new("default", "tools.email.send", per_minute));
    let limits = RateLimitLayer::builder(Arc::new(policies), Arc::new(MemoryStore::new()))
        .tool("tools.email.send")
        .build();

    // The tool: sends an email, or fails while its mail server is down.
    let mail_server_down = Arc::new(AtomicBool::new(false));
    let send_email = {
        let down = mail_server_down.clone();
        service_fn(move |_request: http::Request<String>| {
            let down = down.load(Ordering::SeqCst);
            async move {
                if down {
                    Err(std::io::Error::other("mail server down"))
                } else {
                    Ok("sent")
                }
            }
        })
    };

    // Count only the tool's own errors as failures: a rejection means the tool was not called.
    let breaker = CircuitBreakerLayer::builder()
        .consecutive_failures(3)
        .failure_classifier(|outcome: &Outcome| matches!(outcome, Err(RateLimitError::Service(_))))
        .build()?;
    let mut service = breaker.layer_fn(limits.layer(send_email));

    println!("ten emails against a limit of three a minute:");
    for number in 1..=10 {
        let outcome = service.ready().await?.call(email("acme")).await;
        println!("  email {number:2}: {}", describe(&outcome));
    }
    println!("circuit open after rejections: {}", service.is_open());

    println!("the mail server goes down; another tenant sends:");
    mail_server_down.store(true, Ordering::SeqCst);
    for number in 1..=4 {
        let outcome = service.ready().await?.call(email("globex")).await;
        println!("  email {number:2}: {}", describe(&outcome));
    }
    println!("circuit open after tool failures: {}", service.is_open());
    Ok(())
}

fn email(tenant: &str) -> http::Request<String> {
    let mut request = http::Request::new("Hello!".to_owned());
    request.extensions_mut().insert(TenantId::new(tenant));
    request
}

fn describe(outcome: &Result<&str, CircuitBreakerError<RateLimitError<std::io::Error>>>) -> String {
    match outcome {
        Ok(response) => (*response).to_owned(),
        Err(CircuitBreakerError::Inner(RateLimitError::Rejected(rejection))) => {
            let wait = rejection.retry_after().unwrap_or_default();
            format!("rejected, retry in {} s", wait.as_secs_f64().ceil())
        }
        Err(CircuitBreakerError::Inner(RateLimitError::Service(error))) => {
            format!("tool failed: {error}")
        }
        Err(CircuitBreakerError::OpenCircuit) => "not called: the circuit is open".to_owned(),
    }
}
