//! gRPC statuses for rejected calls: `RESOURCE_EXHAUSTED` with the retry delay, for tonic
//! servers and services.
//!
//! [`GrpcRateLimitLayer`] wraps a tonic service and turns every rejection into a gRPC status
//! response. Put it on the service whose calls it limits with tonic's `LayerExt::named_layer`, as
//! below. `Server::builder().layer(…)` wraps the whole server instead, so calls to every other
//! service on it (health checks, reflection) and to services it does not have (`UNIMPLEMENTED`)
//! are charged to the layer's tool too. A rejection also converts into a [`tonic::Status`]
//! directly, for a limiter stacked around a handler that takes `tonic::Request`s. The code says
//! why:
//!
//! | rejection | code |
//! | --- | --- |
//! | quota exhausted, outside allowed hours, blocked date | `RESOURCE_EXHAUSTED` |
//! | token store, policy source or schedule unavailable (fail-closed) | `UNAVAILABLE` |
//! | cost larger than a limit in force now that a later window of the schedule admits | `RESOURCE_EXHAUSTED` |
//! | cost larger than every limit the call can meet | `INVALID_ARGUMENT`: the call can never fit |
//! | no policy for the tool | `PERMISSION_DENIED` |
//! | missing identity extension | `INTERNAL`: the service is misconfigured |
//!
//! When a retry time is known, the status carries it twice: as `retry-after` metadata in whole
//! seconds (rounded up), and as a `google.rpc.RetryInfo` detail in the status details, which
//! gRPC clients that follow Google's error model read for their retry delay.
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

use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::Map;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Status};
use tower_layer::Layer;
use tower_service::Service;

use crate::layer::{
    IdentityError, RateLimit, RateLimitError, RateLimitLayer, Rejection, RejectionReason,
    ResponseFuture,
};

/// The metadata key of the retry delay, in whole seconds.
pub const RETRY_AFTER: &str = "retry-after";

/// The type URL of `google.rpc.RetryInfo` in a status detail.
const RETRY_INFO_TYPE_URL: &str = "type.googleapis.com/google.rpc.RetryInfo";

impl RateLimitLayer {
    /// Returns a layer that responds to rejected gRPC calls with a status instead of an error.
    pub fn into_grpc(self) -> GrpcRateLimitLayer {
        GrpcRateLimitLayer { inner: self }
    }
}

/// Rate-limits a gRPC server and responds to rejected calls with a status; see the
/// [module documentation](self).
#[derive(Debug, Clone)]
pub struct GrpcRateLimitLayer {
    inner: RateLimitLayer,
}

impl<S> Layer<S> for GrpcRateLimitLayer {
    type Service = GrpcRateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcRateLimit {
            inner: self.inner.layer(inner),
        }
    }
}

/// A gRPC server behind a rate limit that responds to rejected calls with a status.
#[derive(Debug, Clone)]
pub struct GrpcRateLimit<S> {
    inner: RateLimit<S>,
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
        RejectionReason::NoPolicy => Code::PermissionDenied,
        RejectionReason::MissingIdentity(
            IdentityError::IdTooLong { .. } | IdentityError::EmptyId { .. },
        ) => Code::InvalidArgument,
        RejectionReason::MissingIdentity(_) => Code::Internal,
    }
}

impl From<Rejection> for Status {
    fn from(rejection: Rejection) -> Status {
        let code = code(&rejection);
        let message = rejection.to_string();
        let Some(wait) = rejection.retry_after() else {
            return Status::new(code, message);
        };

        let mut metadata = MetadataMap::new();
        metadata.insert(RETRY_AFTER, MetadataValue::from(whole_seconds(wait)));
        let details = status_details(code, &message, wait);
        Status::with_details_and_metadata(code, message, details.into(), metadata)
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

/// Encodes a `google.rpc.Status` whose one detail is a `google.rpc.RetryInfo` with `wait` as
/// its `retry_delay`, in protobuf's wire format.
fn status_details(code: Code, message: &str, wait: Duration) -> Vec<u8> {
    // google.protobuf.Duration: seconds = 1 (int64), nanos = 2 (int32).
    let mut delay = Vec::new();
    put_varint_field(&mut delay, 1, wait.as_secs());
    put_varint_field(&mut delay, 2, u64::from(wait.subsec_nanos()));
    // google.rpc.RetryInfo: retry_delay = 1.
    let mut retry_info = Vec::new();
    put_bytes_field(&mut retry_info, 1, &delay);
    // google.protobuf.Any: type_url = 1, value = 2.
    let mut any = Vec::new();
    put_bytes_field(&mut any, 1, RETRY_INFO_TYPE_URL.as_bytes());
    put_bytes_field(&mut any, 2, &retry_info);
    // google.rpc.Status: code = 1, message = 2, details = 3.
    let mut status = Vec::new();
    put_varint_field(&mut status, 1, code as u64);
    put_bytes_field(&mut status, 2, message.as_bytes());
    put_bytes_field(&mut status, 3, &any);
    status
}

/// Appends a varint field; protobuf leaves fields holding 0 out.
fn put_varint_field(out: &mut Vec<u8>, field: u64, value: u64) {
    if value != 0 {
        put_varint(out, field << 3);
        put_varint(out, value);
    }
}

/// Appends a length-delimited field (wire type 2).
fn put_bytes_field(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_varint(out, (field << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Rounds up to whole seconds.
fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_info_encodes_as_protobuf() {
        let details = status_details(Code::ResourceExhausted, "m", Duration::from_millis(1500));

        // RetryInfo { retry_delay: Duration { seconds: 1, nanos: 500_000_000 } }.
        let nanos = [0x10, 0x80, 0xca, 0xb5, 0xee, 0x01];
        let mut retry_info = vec![0x0a, 2 + nanos.len() as u8, 0x08, 0x01];
        retry_info.extend_from_slice(&nanos);
        let mut expected = vec![0x08, 8, 0x12, 1, b'm', 0x1a];
        let mut any = vec![0x0a, RETRY_INFO_TYPE_URL.len() as u8];
        any.extend_from_slice(RETRY_INFO_TYPE_URL.as_bytes());
        any.extend_from_slice(&[0x12, retry_info.len() as u8]);
        any.extend_from_slice(&retry_info);
        expected.push(any.len() as u8);
        expected.extend_from_slice(&any);
        assert_eq!(details, expected);
    }
}
