//! HTTP responses to rejected calls: status codes, `Retry-After` and the IETF `RateLimit-Policy`
//! and `RateLimit` fields, for axum routers and other `http` services.
//!
//! [`HttpRateLimitLayer`] turns every rejection into a response, so the wrapped service keeps its
//! own error type and fits where axum expects an infallible service. The status says why:
//!
//! | rejection | status |
//! | --- | --- |
//! | quota exhausted, outside allowed hours, blocked date | 429 Too Many Requests, with `Retry-After` |
//! | token store, policy source or schedule unavailable (fail-closed) | 503 Service Unavailable, with `Retry-After` (5 s unless [`RateLimitBuilder::unavailable_retry_after`](crate::layer::RateLimitBuilder::unavailable_retry_after) sets another wait) |
//! | cost larger than a limit in force now that a later window of the schedule admits | 429 Too Many Requests, with `Retry-After` |
//! | cost larger than every limit the call can meet | 413 Content Too Large: the call can never fit |
//! | no policy for the tool | 403 Forbidden |
//! | a static limit of 0, which switches the tool off | 403 Forbidden |
//! | missing identity extension | 500 Internal Server Error: the service is misconfigured |
//!
//! The body is the rejection's message as plain text. For an unavailable store or policy source it
//! leaves out the cause, such as a refused connection to the database's address, which the
//! limiter logs instead.
//!
//! `Retry-After` is in whole seconds, rounded up so that a client that waits exactly that long
//! is not rejected again, and at least 1 (see [`Rejection::retry_after`]). A quota rejection also carries the fields of
//! draft-ietf-httpapi-ratelimit-headers (version 09): `RateLimit-Policy` lists every limited
//! window as `"minute";q=LIMIT;w=SECONDS` and `RateLimit` its state as
//! `"minute";r=REMAINING;t=SECONDS_TO_RESET`. For the window that rejected the call, `t` counts
//! to the retry time, like `Retry-After`: the schedule may raise the limit before the counter
//! resets, or keep the call out after the reset until working hours begin. Calendar windows vary
//! in length (a day can last 23 or 25 hours), so `w` is the nominal length, and is left out for
//! months. A response to an admitted call that was counted carries the same two fields, with the
//! remaining units after the call. A number over the 15 digits of a structured-field integer,
//! such as a schedule's `dailymax 10000000000000000`, is sent as 999999999999999.
//!
//! A quota rejection for a cost larger than the limit in force, which a later window of the
//! schedule admits, names only the window whose limit is too small. The store rejects such a
//! call before it reads any count, so the fields do not show the counter. `RateLimit-Policy`
//! gives the limit in force now, and `RateLimit` gives `r=0` with `t` equal to `Retry-After`,
//! because none of that limit can serve the call before the schedule's limits admit its cost.
//! The counter's own reset can be later (a day limit resets at midnight, not when the morning
//! limit ends), and section 6 of the draft states that `t` SHOULD name the same instant as a
//! `Retry-After` in the same response.
//!
//! Put the layer on the route's method router with `MethodRouter::route_layer`, as below. Only
//! requests that reach the tool are then counted. `Router::layer` also wraps the router's
//! fallback, and `Router::route_layer` wraps the method router's fallback (axum 0.8), so there a
//! request for an unknown path (404) or a method the route lacks (405) uses the quota, and once
//! the quota is gone it is answered 429 instead of 404 or 405.
//!
//! ```
//! use std::sync::Arc;
//!
//! use axum::{Router, routing::post};
//! use highway_ratelimit::layer::{RateLimitLayer, StaticPolicies, TenantId};
//! use highway_ratelimit::store::MemoryStore;
//!
//! async fn send_email() -> &'static str {
//!     "sent"
//! }
//!
//! async fn authenticate(mut request: axum::extract::Request) -> axum::extract::Request {
//!     // A real service takes the tenant from the caller's verified credentials.
//!     request.extensions_mut().insert(TenantId::new("acme"));
//!     request
//! }
//!
//! let limits = RateLimitLayer::builder(Arc::new(StaticPolicies::new()), Arc::new(MemoryStore::new()))
//!     .tool("tools.email.send")
//!     .build();
//! let app: Router = Router::new()
//!     .route("/send", post(send_email).route_layer(limits.into_http()))
//!     .layer(axum::middleware::map_request(authenticate));
//! ```

use std::fmt::Write;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use ::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::layer::{
    Admission, IdentityError, Limiter, RateLimit, RateLimitError, RateLimitLayer, Rejection,
    RejectionReason, ResponseFuture,
};
use crate::store::WindowUsage;
use crate::window::WindowKind;

/// The `RateLimit-Policy` field name.
pub const RATELIMIT_POLICY: &str = "ratelimit-policy";
/// The `RateLimit` field name.
pub const RATELIMIT: &str = "ratelimit";

impl RateLimitLayer {
    /// Returns a layer that responds to rejected calls with an HTTP response instead of an error.
    pub fn into_http(self) -> HttpRateLimitLayer {
        HttpRateLimitLayer { inner: self }
    }
}

/// Rate-limits an HTTP service and responds to rejected calls with a response; see the
/// [module documentation](self).
#[derive(Debug, Clone)]
pub struct HttpRateLimitLayer {
    inner: RateLimitLayer,
}

impl<S> Layer<S> for HttpRateLimitLayer {
    type Service = HttpRateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpRateLimit {
            inner: self.inner.layer(inner),
        }
    }
}

/// An HTTP service behind a rate limit that responds to rejected calls with a response.
#[derive(Debug, Clone)]
pub struct HttpRateLimit<S> {
    inner: RateLimit<S>,
}

impl<S> HttpRateLimit<S> {
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

impl<S, B> Service<::http::Request<B>> for HttpRateLimit<S>
where
    S: Service<::http::Request<B>> + Clone,
    S::Response: IntoResponse,
{
    type Response = Response;
    type Error = S::Error;
    type Future = HttpResponseFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(|error| match error {
            RateLimitError::Service(error) => error,
            RateLimitError::Rejected(_) => {
                unreachable!("poll_ready only returns the inner service's errors")
            }
        })
    }

    fn call(&mut self, request: ::http::Request<B>) -> Self::Future {
        HttpResponseFuture {
            limiter: self.inner.limiter().clone(),
            inner: self.inner.call(request),
        }
    }
}

pin_project! {
    /// The response future of [`HttpRateLimit`]: the tool's response with the `RateLimit`
    /// fields, or the response to a rejection.
    pub struct HttpResponseFuture<S, B>
    where
        S: Service<::http::Request<B>>,
    {
        #[pin]
        inner: ResponseFuture<S, ::http::Request<B>>,
        // Its clock is read when the response is ready, because `t` in the `RateLimit` field
        // counts from the response, after any wait and the tool's own time.
        limiter: Arc<Limiter>,
    }
}

impl<S, B> Future for HttpResponseFuture<S, B>
where
    S: Service<::http::Request<B>> + Clone,
    S::Response: IntoResponse,
{
    type Output = Result<Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let response = match ready!(this.inner.as_mut().poll(cx)) {
            Ok(response) => response,
            Err(RateLimitError::Rejected(rejection)) => {
                return Poll::Ready(Ok(rejection.into_response()));
            }
            Err(RateLimitError::Service(error)) => return Poll::Ready(Err(error)),
        };

        let mut response = response.into_response();
        if let Some(Admission::Counted(windows)) = this.inner.take_admission() {
            insert_ratelimit_fields(response.headers_mut(), &windows, this.limiter.now());
        }
        Poll::Ready(Ok(response))
    }
}

impl<S, B> std::fmt::Debug for HttpResponseFuture<S, B>
where
    S: Service<::http::Request<B>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpResponseFuture").finish_non_exhaustive()
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let mut headers = HeaderMap::new();
        let wait = self.retry_after();
        if let Some(wait) = wait {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(whole_seconds(wait)));
        }
        if let RejectionReason::QuotaExhausted {
            window,
            limit,
            windows,
            ..
        } = self.reason()
        {
            // The retry time as `Retry-After` gives it, which is later than the reason's when the
            // store's clock lags the layer's.
            let retry_at = &(self.decided_at() + wait.unwrap_or_default());
            if windows.is_empty() {
                // The cost is larger than the limit in force, so the store read no count.
                let rejecting_window = WindowUsage {
                    kind: *window,
                    limit: *limit,
                    remaining: 0,
                    reset_at: *retry_at,
                };
                insert_ratelimit_fields(&mut headers, &[rejecting_window], self.decided_at());
            } else {
                // The rejecting window has room again at the retry time, which the schedule can
                // move before its counter's reset (the limit rises) or after it (the reset falls
                // outside working hours).
                let windows: Vec<WindowUsage> = windows
                    .iter()
                    .map(|usage| {
                        if usage.kind == *window {
                            WindowUsage {
                                reset_at: *retry_at,
                                ..*usage
                            }
                        } else {
                            *usage
                        }
                    })
                    .collect();
                insert_ratelimit_fields(&mut headers, &windows, self.decided_at());
            }
        }
        let message = self.client_message();
        (status(&self), headers, message).into_response()
    }
}

/// Returns the status code of a rejection's response.
pub fn status(rejection: &Rejection) -> StatusCode {
    match rejection.reason() {
        RejectionReason::QuotaExhausted { .. }
        | RejectionReason::OutsideHours { .. }
        | RejectionReason::BlockedDate { .. } => StatusCode::TOO_MANY_REQUESTS,
        RejectionReason::StoreUnavailable(_)
        | RejectionReason::PolicyUnavailable(_)
        | RejectionReason::ScheduleUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        RejectionReason::CostExceedsLimit { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        RejectionReason::NoPolicy | RejectionReason::Disabled { .. } => StatusCode::FORBIDDEN,
        // An id is empty, too long or contains a NUL: the request carried it, so the request is
        // at fault.
        RejectionReason::MissingIdentity(
            IdentityError::IdTooLong { .. }
            | IdentityError::EmptyId { .. }
            | IdentityError::NulInId { .. },
        ) => StatusCode::BAD_REQUEST,
        // An extension is missing: the service's own stack did not set it.
        RejectionReason::MissingIdentity(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn insert_ratelimit_fields(headers: &mut HeaderMap, windows: &[WindowUsage], now: DateTime<Utc>) {
    if windows.is_empty() {
        return;
    }
    let (policy, state) = ratelimit_fields(windows, now);
    // Both values are ASCII built from numbers and window names, so conversion cannot fail.
    if let (Ok(policy), Ok(state)) = (HeaderValue::try_from(policy), HeaderValue::try_from(state)) {
        headers.insert(RATELIMIT_POLICY, policy);
        headers.insert(RATELIMIT, state);
    }
}

/// Returns the `RateLimit-Policy` and `RateLimit` field values for `windows` at `now`.
pub fn ratelimit_fields(
    windows: &[WindowUsage],
    now: chrono::DateTime<chrono::Utc>,
) -> (String, String) {
    let mut policy = String::new();
    let mut state = String::new();
    for usage in windows {
        let separator = if policy.is_empty() { "" } else { ", " };
        let name = usage.kind.as_str();
        // `fmt::Write` for `String` never returns an error.
        let _ = write!(
            policy,
            "{separator}\"{name}\";q={}",
            sf_integer(usage.limit)
        );
        if let Some(seconds) = nominal_seconds(usage.kind) {
            let _ = write!(policy, ";w={seconds}");
        }
        let reset = (usage.reset_at - now).to_std().unwrap_or(Duration::ZERO);
        let _ = write!(
            state,
            "{separator}\"{name}\";r={};t={}",
            sf_integer(usage.remaining),
            sf_integer(whole_seconds(reset))
        );
    }
    (policy, state)
}

/// The largest integer of a structured field: 15 digits (RFC 8941, kept by RFC 9651).
const MAX_SF_INTEGER: u64 = 999_999_999_999_999;

/// Returns `value`, or [`MAX_SF_INTEGER`] when it has more digits than a structured field allows,
/// because a parser rejects the whole field for one integer too long. A client that reads a
/// larger limit as 10^15 - 1 still never runs into it.
fn sf_integer(value: u64) -> u64 {
    value.min(MAX_SF_INTEGER)
}

fn nominal_seconds(kind: WindowKind) -> Option<u64> {
    match kind {
        WindowKind::Minute => Some(60),
        WindowKind::Hour => Some(3_600),
        WindowKind::Day => Some(86_400),
        WindowKind::Week => Some(604_800),
        WindowKind::Month => None,
    }
}

/// Rounds up to whole seconds.
fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}
