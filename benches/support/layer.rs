//! The service, requests and limits shared by the layer benchmarks.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use futures_util::FutureExt;
use highway_ratelimit::layer::{RateLimitLayer, StaticPolicies, TenantId};
use highway_ratelimit::policy::Policy;
use highway_ratelimit::report::Capacity;
use highway_ratelimit::store::MemoryStore;
use http::{Request, Response};
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_governor::GovernorError;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::KeyExtractor;

pub const TOOL: &str = "tools.email.send";
/// A limit no benchmark run reaches.
pub const PLENTY: u64 = 1 << 50;

/// A minute limit that is never reached.
pub const MINUTE: Capacity = Capacity {
    per_minute: Some(PLENTY),
    ..Capacity::UNLIMITED
};

/// Limits of every window kind, minute to month, that are never reached.
pub const EVERY_WINDOW: Capacity = Capacity {
    per_minute: Some(PLENTY),
    per_hour: Some(PLENTY),
    per_day: Some(PLENTY),
    per_week: Some(PLENTY),
    per_month: Some(PLENTY),
};

/// Keys tower_governor by the same tenant extension the rate limit layer reads.
#[derive(Debug, Clone, Copy)]
pub struct TenantKey;

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

/// Returns the tool every contender wraps, which replies at once with an empty response.
pub fn tool()
-> impl Service<Request<()>, Response = Response<Body>, Error = Infallible, Future: Send>
+ Clone
+ Send
+ 'static {
    service_fn(|_request: Request<()>| async { Ok::<_, Infallible>(Response::new(Body::empty())) })
}

/// Returns a request of `tenant`, built for each call as a server would.
pub fn request(tenant: &TenantId) -> Request<()> {
    let mut request = Request::new(());
    request.extensions_mut().insert(tenant.clone());
    request
}

/// Calls a service whose futures finish at once, polling each future once.
pub fn call_now<S: Service<Request<()>>>(
    service: &mut S,
    request: Request<()>,
) -> Option<S::Response> {
    service.ready().now_or_never()?.ok()?;
    service.call(request).now_or_never()?.ok()
}

/// Wraps the tool in the rate limit layer with the in-process store, counting per tenant with
/// `capacity`.
pub fn limited(capacity: Capacity) -> impl Service<Request<()>> {
    let policies = StaticPolicies::new().with(Policy::new("default", TOOL, capacity));
    RateLimitLayer::builder(Arc::new(policies), Arc::new(MemoryStore::new()))
        .tool(TOOL)
        .build()
        .layer(tool())
}

/// Wraps the tool in tower_governor's layer keyed by tenant, with limits that are never reached.
pub fn governed() -> impl Service<Request<()>> {
    let config = GovernorConfigBuilder::default()
        .per_nanosecond(1)
        .burst_size(u32::MAX)
        .key_extractor(TenantKey)
        .finish()
        .expect("the governor configuration is valid");
    tower_governor::GovernorLayer::new(config).layer(tool())
}

/// Returns `service` after checking that it admits a first call and replies to it at once.
pub fn checked<S: Service<Request<()>>>(mut service: S, tenant: &TenantId, name: &str) -> S {
    assert!(
        call_now(&mut service, request(tenant)).is_some(),
        "{name} rejected the first call or did not answer at once"
    );
    service
}
