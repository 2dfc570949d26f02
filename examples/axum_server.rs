//! An axum server whose `/send` route is rate-limited per tenant: 429 with `Retry-After` and the
//! IETF `RateLimit-Policy` / `RateLimit` fields once a tenant's quota is used up.
//!
//! Run with `cargo run --example axum_server`. The example serves on a free port of 127.0.0.1,
//! sends a few requests to itself, prints the answers and stops.

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::routing::post;
use highway_ratelimit::layer::{RateLimitLayer, StaticPolicies, TenantId};
use highway_ratelimit::policy::Policy;
use highway_ratelimit::report::Capacity;
use highway_ratelimit::store::MemoryStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Takes the tenant from the `x-tenant` header. A real service takes it from the caller's
/// verified credentials, because the tenant decides whose quota a call uses.
async fn authenticate(mut request: Request) -> Request {
    let tenant = request
        .headers()
        .get("x-tenant")
        .and_then(|value| value.to_str().ok())
        .map(TenantId::new);
    if let Some(tenant) = tenant {
        request.extensions_mut().insert(tenant);
    }
    request
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let limits = Capacity {
        per_minute: Some(2),
        per_day: Some(500),
        ..Capacity::UNLIMITED
    };
    let policies = StaticPolicies::new().with(Policy::new("default", "tools.email.send", limits));
    let rate_limit = RateLimitLayer::builder(Arc::new(policies), Arc::new(MemoryStore::new()))
        .tool("tools.email.send")
        .build();

    let app = Router::new()
        // On the method router, so that a 404 or 405 does not use the quota.
        .route(
            "/send",
            post(|| async { "sent\n" }).route_layer(rate_limit.into_http()),
        )
        .layer(axum::middleware::map_request(authenticate));

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    println!("serving on http://{address}");

    for (number, tenant) in ["acme", "acme", "acme", "globex"].into_iter().enumerate() {
        let response = post_send(address, tenant).await?;
        println!(
            "--- request {} for {tenant}:\n{}",
            number + 1,
            response.trim_end()
        );
    }
    Ok(())
}

/// Sends `POST /send` over a plain HTTP/1.1 connection and returns the whole response.
async fn post_send(address: std::net::SocketAddr, tenant: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(address).await?;
    let request = format!(
        "POST /send HTTP/1.1\r\nhost: {address}\r\nx-tenant: {tenant}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response)
}
