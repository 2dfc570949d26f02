//! gRPC statuses for rejected calls: `RESOURCE_EXHAUSTED` with the retry delay, for tonic
//! servers and services.
//!
//! [`GrpcRateLimitLayer`] wraps a tonic service and turns every rejection into a gRPC status
//! response. Put it on the service whose calls it limits with tonic's `LayerExt::named_layer`, as
//! below. `Server::builder().layer(…)` wraps the whole server instead, so calls to every other
//! service on it (health checks, reflection) and to services it does not have (`UNIMPLEMENTED`)
//! are charged to the layer's tool too. On one service, a call to a method the service lacks is
//! charged as well, and so is one to a method that is not a tool call, unless
//! [`GrpcRateLimitLayer::methods`] names the methods to limit. A rejection also converts into a
//! [`tonic::Status`] directly, for a limiter stacked around a handler that takes
//! `tonic::Request`s. The code depends on the rejection:
//!
//! | rejection | code |
//! | --- | --- |
//! | quota exhausted, outside allowed hours, blocked date | `RESOURCE_EXHAUSTED` |
//! | token store, policy source or schedule unavailable (fail-closed) | `UNAVAILABLE` |
//! | cost larger than a limit in force now that a later window of the schedule admits | `RESOURCE_EXHAUSTED` |
//! | cost larger than every limit the call can meet | `INVALID_ARGUMENT`: the call can never fit |
//! | no policy for the tool | `PERMISSION_DENIED` |
//! | a static limit of 0, which switches the tool off | `PERMISSION_DENIED` |
//! | missing identity extension | `INTERNAL`: the service is misconfigured |
//!
//! The status details follow Google's error model (`google.rpc.Status`), which
//! `tonic_types::StatusExt::get_error_details` reads:
//!
//! - a `google.rpc.ErrorInfo` on every rejection, whose `reason` is the rejection's kind in upper
//!   case (`QUOTA_EXHAUSTED`, `OUTSIDE_HOURS`, `BLOCKED_DATE`, `COST_EXCEEDS_LIMIT`, `DISABLED`,
//!   `STORE_UNAVAILABLE`, `POLICY_UNAVAILABLE`, `SCHEDULE_UNAVAILABLE`, `NO_POLICY`,
//!   `MISSING_IDENTITY`), whose `domain` is [`ERROR_DOMAIN`], and whose metadata contains the
//!   `tenant` and `tool` when known, and for a quota the `window` and its `limit`;
//! - a `google.rpc.RetryInfo` with the retry delay when a retry time is known or a dependency is
//!   unavailable, which gRPC clients that follow Google's error model read. It is at least one
//!   second (see [`Rejection::retry_after`]). The same delay goes in `retry-after` metadata too, in
//!   whole seconds rounded up, and in `grpc-retry-pushback-ms`, in milliseconds rounded up, which
//!   clients with a gRPC retry policy wait before their next attempt;
//! - a `google.rpc.QuotaFailure` for an exhausted quota, whose one violation names the tenant and
//!   tool as its subject and the window and limit in its description.
//!
//! ```no_run
//! use std::convert::Infallible;
//! use std::sync::Arc;
//!
//! use highway_ratelimit::layer::{RateLimitLayer, StaticPolicies};
//! use highway_ratelimit::store::MemoryStore;
//! use tonic::server::NamedService;
//! use tonic::service::LayerExt;
//!
//! # async fn serve<S>(email: S) -> Result<(), tonic::transport::Error>
//! # where
//! #     S: tower::Service<http::Request<tonic::body::Body>, Response = http::Response<tonic::body::Body>, Error = Infallible>
//! #         + NamedService + Clone + Send + Sync + 'static,
//! #     S::Future: Send + 'static,
//! # {
//! let limits = RateLimitLayer::builder(Arc::new(StaticPolicies::new()), Arc::new(MemoryStore::new()))
//!     .tool("tools.email.send")
//!     .build();
//! tonic::transport::Server::builder()
//!     .add_service(limits.into_grpc().named_layer(email))
//!     .serve("127.0.0.1:50051".parse().unwrap())
//!     .await
//! # }
//! ```

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::Map;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, QuotaViolation, StatusExt};
use tower_layer::Layer;
use tower_service::Service;

use crate::layer::{
    Admission, IdentityError, RateLimit, RateLimitError, RateLimitLayer, Rejection,
    RejectionReason, ResponseFuture,
};

/// The metadata key of the retry delay, in whole seconds.
pub const RETRY_AFTER: &str = "retry-after";

/// The metadata key of the retry delay in milliseconds (rounded up) that gRPC clients with a
/// retry policy wait before their next attempt, as gRPC's proposal A6 (client retries) defines it.
pub const RETRY_PUSHBACK_MS: &str = "grpc-retry-pushback-ms";

/// The `domain` of the `google.rpc.ErrorInfo` detail of a rejection.
pub const ERROR_DOMAIN: &str = "highway-ratelimit";

impl RateLimitLayer {
    /// Returns a layer that responds to rejected gRPC calls with a status instead of an error.
    pub fn into_grpc(self) -> GrpcRateLimitLayer {
        GrpcRateLimitLayer {
            inner: self,
            methods: None,
        }
    }
}

/// Rate-limits a gRPC server and responds to rejected calls with a status; see the
/// [module documentation](self).
#[derive(Debug, Clone)]
pub struct GrpcRateLimitLayer {
    inner: RateLimitLayer,
    methods: Option<Arc<[String]>>,
}

impl GrpcRateLimitLayer {
    /// Limits only the calls to these methods, given as request paths such as
    /// `/highway.example.Email/Send`, and passes every other call to the service uncharged.
    ///
    /// Without it, every call that reaches the layer is charged. That includes a call to a
    /// method the service does not have, which then fails with `UNIMPLEMENTED`, and a call to a
    /// method that is not a tool call, such as a status query.
    ///
    /// # Panics
    ///
    /// Panics when a path is not of the form `/PACKAGE.SERVICE/METHOD`, such as
    /// `highway.example.Email/Send` without its leading slash. Such a path matches no request, so
    /// the layer would otherwise charge no call at all.
    pub fn methods<I>(mut self, paths: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        let paths: Arc<[String]> = paths.into_iter().map(Into::into).collect();
        for path in paths.iter() {
            assert!(
                is_method_path(path),
                "invalid gRPC method path {path:?} in GrpcRateLimitLayer::methods: write it as \
                 the request path `/PACKAGE.SERVICE/METHOD`, such as `/highway.example.Email/Send`"
            );
        }
        self.methods = Some(paths);
        self
    }
}

/// Returns whether `path` has the form of a gRPC request path: `/SERVICE/METHOD`, both parts
/// non-empty and without a further `/`.
fn is_method_path(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    match rest.split_once('/') {
        Some((service, method)) => {
            !service.is_empty() && !method.is_empty() && !method.contains('/')
        }
        None => false,
    }
}

impl<S> Layer<S> for GrpcRateLimitLayer {
    type Service = GrpcRateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcRateLimit {
            inner: self.inner.layer(inner),
            methods: self.methods.clone(),
        }
    }
}

/// A gRPC server behind a rate limit that responds to rejected calls with a status.
#[derive(Debug, Clone)]
pub struct GrpcRateLimit<S> {
    inner: RateLimit<S>,
    /// The request paths that are charged, or `None` to charge every call.
    methods: Option<Arc<[String]>>,
}

impl<S> GrpcRateLimit<S> {
    /// Returns a reference to the inner service.
    pub fn get_ref(&self) -> &S {
        self.inner.get_ref()
    }

    /// Returns a mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        self.inner.get_mut()
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner.into_inner()
    }
}

/// Turns the limiter's outcome into a response or the server's own error.
type IntoGrpc<T, E> = fn(Result<T, RateLimitError<E>>) -> Result<T, E>;

impl<S, B, ResBody> Service<http::Request<B>> for GrpcRateLimit<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>> + Clone,
    ResBody: Default,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = Map<ResponseFuture<S, http::Request<B>>, IntoGrpc<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(|error| match error {
            RateLimitError::Service(error) => error,
            RateLimitError::Rejected(_) => {
                unreachable!("poll_ready only returns the inner service's errors")
            }
        })
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let into_grpc: IntoGrpc<S::Response, S::Error> = |result| match result {
            Ok(response) => Ok(response),
            Err(RateLimitError::Rejected(rejection)) => Ok(Status::from(rejection).into_http()),
            Err(RateLimitError::Service(error)) => Err(error),
        };
        let limited = self.methods.as_deref().is_none_or(|methods| {
            let path = request.uri().path();
            methods.iter().any(|method| method == path)
        });
        if !limited {
            // `poll_ready` made the inner service ready, so it takes the call at once.
            let future = self.inner.get_mut().call(request);
            return ResponseFuture::admitted(future, Admission::Uncounted).map(into_grpc);
        }
        self.inner.call(request).map(into_grpc)
    }
}

/// Returns the status code of a rejection.
pub fn code(rejection: &Rejection) -> Code {
    match rejection.reason() {
        RejectionReason::QuotaExhausted { .. }
        | RejectionReason::OutsideHours { .. }
        | RejectionReason::BlockedDate { .. } => Code::ResourceExhausted,
        RejectionReason::StoreUnavailable(_)
        | RejectionReason::PolicyUnavailable(_)
        | RejectionReason::ScheduleUnavailable { .. } => Code::Unavailable,
        RejectionReason::CostExceedsLimit { .. } => Code::InvalidArgument,
        RejectionReason::NoPolicy | RejectionReason::Disabled { .. } => Code::PermissionDenied,
        RejectionReason::MissingIdentity(
            IdentityError::IdTooLong { .. }
            | IdentityError::EmptyId { .. }
            | IdentityError::NulInId { .. },
        ) => Code::InvalidArgument,
        RejectionReason::MissingIdentity(_) => Code::Internal,
    }
}

impl From<Rejection> for Status {
    fn from(rejection: Rejection) -> Status {
        let code = code(&rejection);
        let message = rejection.client_message();
        let mut metadata = MetadataMap::new();
        if let Some(wait) = rejection.retry_after() {
            metadata.insert(RETRY_AFTER, MetadataValue::from(whole_seconds(wait)));
            metadata.insert(RETRY_PUSHBACK_MS, MetadataValue::from(whole_millis(wait)));
        }
        Status::with_error_details_and_metadata(code, message, error_details(&rejection), metadata)
    }
}

impl<E: Into<Status>> From<RateLimitError<E>> for Status {
    fn from(error: RateLimitError<E>) -> Status {
        match error {
            RateLimitError::Rejected(rejection) => rejection.into(),
            RateLimitError::Service(error) => error.into(),
        }
    }
}

/// Builds the details of a rejection's status, as the module documentation lists them.
fn error_details(rejection: &Rejection) -> ErrorDetails {
    let reason = rejection.reason();
    let mut info = std::collections::HashMap::new();
    if let Some(tenant) = rejection.tenant() {
        info.insert("tenant".to_owned(), tenant.to_owned());
    }
    if let Some(tool) = rejection.tool() {
        info.insert("tool".to_owned(), tool.to_owned());
    }

    let mut details = ErrorDetails::new();
    if let RejectionReason::QuotaExhausted { window, limit, .. } = reason {
        info.insert("window".to_owned(), window.as_str().to_owned());
        info.insert("limit".to_owned(), limit.to_string());
        let subject = format!(
            "tenant {}, tool {}",
            rejection.tenant().unwrap_or_default(),
            rejection.tool().unwrap_or_default()
        );
        details.set_quota_failure(vec![QuotaViolation::new(subject, reason.to_string())]);
    }
    details.set_error_info(reason.as_str().to_ascii_uppercase(), ERROR_DOMAIN, info);
    if let Some(wait) = rejection.retry_after() {
        details.set_retry_info(Some(wait));
    }
    details
}

/// Rounds up to whole milliseconds.
fn whole_millis(duration: Duration) -> u64 {
    let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    millis.saturating_add(u64::from(
        !duration.subsec_nanos().is_multiple_of(1_000_000),
    ))
}

/// Rounds up to whole seconds.
fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}
