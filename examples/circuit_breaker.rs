//! A circuit breaker between the rate limiter and the tool: rejections never reach the breaker,
//! so they neither open nor close it, while failures of the tool itself open it.
//!
//! The limiter goes outside. A breaker stacked around the limiter would have to record each
//! rejection as an outcome of the tool. tower-resilience-circuitbreaker 0.14 records every
//! result that its classifier does not count as a failure as a success. So a rejected probe
//! would close a half-open breaker while the tool is still down, and a rejection between two tool
//! failures would reset its count of failures in a row. `tests/layer_circuit_breaker.rs` checks
//! both orders.
//!
//! While the breaker is open, the limiter still admits and charges the calls that the breaker
//! then fails without calling the tool. Build the breaker with `.backpressure()` to make callers
//! wait in `ready()` until it lets a probe through, which charges nothing.
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

type Outcome = Result<&'static str, RateLimitError<CircuitBreakerError<std::io::Error>>>;

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

    // The breaker receives only the calls the limiter admitted, so every error it gets is the
    // tool's own, and its default classifier counts each one as a failure.
    let (breaker, circuit) = CircuitBreakerLayer::builder()
        .consecutive_failures(2)
        .build_with_handle()?;
    let mut service = limits.layer(breaker.layer(send_email));

    println!("ten emails against a limit of three a minute:");
    for number in 1..=10 {
        let outcome = service.ready().await?.call(email("acme")).await;
        println!("  email {number:2}: {}", describe(&outcome));
    }
    println!("circuit open after rejections: {}", circuit.is_open());

    println!("the mail server goes down; another tenant sends:");
    mail_server_down.store(true, Ordering::SeqCst);
    for number in 1..=4 {
        let outcome = service.ready().await?.call(email("globex")).await;
        println!("  email {number:2}: {}", describe(&outcome));
    }
    println!("circuit open after tool failures: {}", circuit.is_open());
    Ok(())
}

fn email(tenant: &str) -> http::Request<String> {
    let mut request = http::Request::new("Hello!".to_owned());
    request.extensions_mut().insert(TenantId::new(tenant));
    request
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Ok(response) => (*response).to_owned(),
        Err(RateLimitError::Rejected(rejection)) => {
            let wait = rejection.retry_after().unwrap_or_default();
            format!("rejected, retry in {} s", wait.as_secs_f64().ceil())
        }
        Err(RateLimitError::Service(CircuitBreakerError::Inner(error))) => {
            format!("tool failed: {error}")
        }
        Err(RateLimitError::Service(CircuitBreakerError::OpenCircuit)) => {
            "not called: the circuit is open (the call was charged)".to_owned()
        }
    }
}
