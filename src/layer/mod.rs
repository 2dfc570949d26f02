//! The Tower middleware: rate limits on the calls of any service, by policy, schedule and
//! token store.
//!
//! [`RateLimitLayer`] wraps a tool service. For each call, [`RateLimit`] reads who is calling
//! from the request's extensions ([`TenantId`], and optionally [`WorkflowRunId`], [`ToolName`]
//! and [`Cost`]), finds the tool's policy (the tenant's own, else the `default` tenant's), and
//! checks in this order:
//!
//! 1. the allowed window: with a schedule, the call must fall inside a window of the policy's
//!    availability report. Otherwise it is rejected as outside hours or on a blocked date, and
//!    the start of the next window is its retry time, looked up in the schedule past the report
//!    when the report has no window left;
//! 2. the capacity: the report's capacity at that instant, or the policy's static limits when it
//!    has no schedule;
//! 3. the tokens: the cost is charged to every limited window in one atomic step of the
//!    [`TokenStore`](crate::store::TokenStore).
//!
//! Only when all pass is the inner service called. A rejection is a
//! [`RateLimitError::Rejected`], kept apart from the tool's own [`RateLimitError::Service`], so
//! that a caller can tell the two apart. A circuit breaker goes inside the limiter, between it
//! and the tool, so that rejections neither open nor close it (see [`RateLimitError`]).
//!
//! The limiter charges a call in `call`, before the layers under it see the request. A layer
//! under it that makes callers wait in `poll_ready` (`ConcurrencyLimit`, `Buffer`, a breaker
//! with backpressure) charges nothing while it waits. One that fails the call in `call`
//! (`LoadShed`, a breaker that rejects while open) fails a call that was already charged, so put
//! `LoadShed` around the limiter. A response future can also be dropped while a PostgreSQL
//! consume is in flight (a `Timeout` around the limiter, a client that hung up). The call may
//! then stay charged without reaching the tool, because the database can commit the consume
//! after the caller left.
//!
//! In a stack whose errors are `tower::BoxError`, map them after the limiter with
//! [`RateLimitError::into_box_error`]; the rejection is then found with `downcast_ref::<Rejection>()`.
//!
//! The policy decides which calls share a counter (its scope: global, per tenant, per workflow
//! run), whether it is enabled, and whether a failing or slow token store admits calls
//! (`fail_open`) or rejects them. A store call never takes longer than
//! [`RateLimitBuilder::store_timeout`]. Policies and reports are cached for
//! [`RateLimitBuilder::cache_ttl`]; [`RateLimitLayer::invalidate`] applies a change at once.
//! A report is computed again from the schedule's definition for a call past its `valid_until`
//! or before its `generated_at` (a replay). When that fails, a fail-open policy applies the
//! report's default capacity, and a fail-closed one rejects with
//! [`RejectionReason::ScheduleUnavailable`].
//!
//! ```
//! use std::sync::Arc;
//!
//! use highway_ratelimit::layer::{RateLimitError, RateLimitLayer, StaticPolicies, TenantId};
//! use highway_ratelimit::policy::Policy;
//! use highway_ratelimit::report::Capacity;
//! use highway_ratelimit::store::MemoryStore;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let per_minute = Capacity { per_minute: Some(1), ..Capacity::UNLIMITED };
//! let policies = StaticPolicies::new().with(Policy::new("default", "tools.email.send", per_minute));
//! let limits = RateLimitLayer::builder(Arc::new(policies), Arc::new(MemoryStore::new()))
//!     .tool("tools.email.send")
//!     .build();
//! let send_email = ServiceBuilder::new()
//!     .layer(limits)
//!     .service_fn(|_request: http::Request<String>| async { Ok::<_, std::io::Error>("sent") });
//!
//! let request = || {
//!     let mut request = http::Request::new("hello".to_owned());
//!     request.extensions_mut().insert(TenantId::new("acme"));
//!     request
//! };
//! assert_eq!(send_email.clone().oneshot(request()).await.unwrap(), "sent");
//!
//! let second = send_email.oneshot(request()).await;
//! assert!(matches!(second, Err(RateLimitError::Rejected(_))));
//! # }
//! ```

mod config;
mod error;
mod future;
mod identity;
mod indexed_report;
pub(crate) mod key;
#[allow(clippy::module_inception)]
mod layer;
mod limiter;
mod service;
mod static_policies;

pub use config::{MissingPolicy, RateLimitBuilder};
pub use error::{RateLimitError, Rejection, RejectionReason};
pub use future::ResponseFuture;
pub use identity::{
    Caller, CallerIdentity, Cost, IdentityError, TenantId, ToolName, WorkflowRunId,
};
pub use layer::RateLimitLayer;
pub use limiter::Admission;
#[cfg(feature = "axum")]
pub(crate) use limiter::Limiter;
pub use service::RateLimit;
pub use static_policies::StaticPolicies;
