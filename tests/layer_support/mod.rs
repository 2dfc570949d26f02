//! Set-up shared by the tests of the layer's metrics and traces: a layer over the in-process store
//! with one `default` policy, a tool that always succeeds, and a runtime on the test's thread.

use std::convert::Infallible;
use std::sync::Arc;

use highway_ratelimit::layer::{RateLimitBuilder, RateLimitLayer, StaticPolicies, TenantId};
use highway_ratelimit::policy::Policy;
use highway_ratelimit::report::Capacity;
use highway_ratelimit::store::MemoryStore;
use tower::{Layer, Service, service_fn};

pub const TOOL: &str = "tools.email.send";

/// Returns a builder of a layer for [`TOOL`] whose `default` policy allows `per_minute` calls a
/// minute, counted in process.
pub fn builder(per_minute: u64) -> RateLimitBuilder {
    let capacity = Capacity {
        per_minute: Some(per_minute),
        ..Capacity::UNLIMITED
    };
    let policies = StaticPolicies::new().with(Policy::new("default", TOOL, capacity));
    RateLimitLayer::builder(Arc::new(policies), Arc::new(MemoryStore::new())).tool(TOOL)
}

/// Wraps a tool that always returns `"sent"` in `layer`.
pub fn send_email(
    layer: &RateLimitLayer,
) -> impl Service<
    http::Request<()>,
    Response = &'static str,
    Error = highway_ratelimit::layer::RateLimitError<Infallible>,
    Future: Send,
> + Clone {
    layer.layer(service_fn(|_: http::Request<()>| async {
        Ok::<_, Infallible>("sent")
    }))
}

pub fn request(tenant: &str) -> http::Request<()> {
    let mut request = http::Request::new(());
    request.extensions_mut().insert(TenantId::new(tenant));
    request
}

/// Returns a runtime that runs every task on the test's thread, where the test's recorder or
/// subscriber is installed.
pub fn runtime(paused: bool) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(paused)
        .build()
        .expect("a runtime starts")
}
