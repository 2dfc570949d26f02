use std::sync::Arc;
use std::task::{Context, Poll};

use tower_service::Service;
use tracing::Instrument;

use super::error::{RateLimitError, Rejection, RejectionReason};
use super::future::{ResponseFuture, Step};
use super::identity::{CallerIdentity, CallerRef};
use super::limiter::{
    Admission, AdmittedCounter, FirstCheck, Limiter, PolicyMemo, count_rejection,
};

/// Rate-limits the calls to an inner service.
///
/// Made by [`RateLimitLayer`](super::RateLimitLayer); clones share the layer's limits.
#[derive(Debug, Clone)]
pub struct RateLimit<S> {
    inner: S,
    limiter: Arc<Limiter>,
    memo: PolicyMemo,
    admitted: AdmittedCounter,
}

impl<S> RateLimit<S> {
    pub(crate) fn from_limiter(inner: S, limiter: Arc<Limiter>) -> Self {
        RateLimit {
            inner,
            limiter,
            memo: PolicyMemo::default(),
            admitted: AdmittedCounter::default(),
        }
    }

    /// Returns a reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Returns a mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// Returns the limiter shared by the layer's services, whose clock the HTTP adapter reads.
    #[cfg(feature = "axum")]
    pub(crate) fn limiter(&self) -> &Arc<Limiter> {
        &self.limiter
    }

    /// Drops the cached policy and report of `tool` for `tenant`, as
    /// [`RateLimitLayer::invalidate`](super::RateLimitLayer::invalidate) does.
    pub fn invalidate(&self, tenant: &str, tool: &str) {
        self.limiter.invalidate(tenant, tool);
    }
}

impl<S: Clone> RateLimit<S> {
    /// Takes the service `poll_ready` made ready and leaves a fresh clone behind, which the next
    /// `poll_ready` makes ready in turn. A rejected call drops the taken service, so that what its
    /// readiness reserved (a concurrency permit, a buffer slot) goes back at once.
    fn take_ready(&mut self) -> S {
        let clone = self.inner.clone();
        std::mem::replace(&mut self.inner, clone)
    }
}

impl<S, Request> Service<Request> for RateLimit<S>
where
    S: Service<Request> + Clone,
    Request: CallerIdentity,
{
    type Response = S::Response;
    type Error = RateLimitError<S::Error>;
    type Future = ResponseFuture<S, Request>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(RateLimitError::Service)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let caller = match CallerRef::from_extensions(
            request.extensions(),
            self.limiter.settings.tool.as_ref(),
        ) {
            Ok(caller) => caller,
            Err(error) => {
                tracing::warn!(%error, "rate limited request without identity");
                let rejection = Rejection::new(
                    RejectionReason::MissingIdentity(error),
                    None,
                    self.limiter
                        .settings
                        .tool
                        .as_ref()
                        .map(|tool| tool.shared().clone()),
                    self.limiter.now(),
                );
                count_rejection(&rejection);
                drop(self.take_ready());
                return ResponseFuture::rejected(rejection);
            }
        };

        // `None` when DEBUG is off, because a span that no subscriber wants still costs its
        // fallback to the `log` crate when created and entered.
        let span = tracing::enabled!(tracing::Level::DEBUG).then(|| {
            tracing::debug_span!(
                "rate_limit",
                tenant = %caller.tenant,
                tool = %caller.tool,
                decision = tracing::field::Empty,
            )
        });
        let decision = match &span {
            None => self
                .limiter
                .check_now(caller, &mut self.memo, &mut self.admitted),
            Some(span) => span.in_scope(|| {
                self.limiter
                    .check_now(caller, &mut self.memo, &mut self.admitted)
            }),
        };
        if let Some(decision) = decision {
            match decision {
                Ok(admission) => {
                    if let Some(span) = &span {
                        span.record("decision", tracing::field::debug(&admission));
                    }
                    // Decided without waiting: the service `poll_ready` made ready is called
                    // at once.
                    return ResponseFuture::admitted(self.inner.call(request), admission);
                }
                Err(rejection) if !self.limiter.would_wait(&rejection) => {
                    if let Some(span) = &span {
                        span.record("decision", rejection.reason().as_str());
                    }
                    drop(self.take_ready());
                    return ResponseFuture::rejected(rejection);
                }
                Err(_) => {}
            }
        }

        // The decision has to wait, so the ready service goes into the future, which calls it
        // later without holding `&mut self`. When wait mode delays the call, the future
        // drops the ready service for the length of the wait and makes a clone ready afterwards.
        let caller = caller.to_owned();
        let inner = self.take_ready();
        let limiter = self.limiter.clone();
        let check = async move {
            match limiter.check_first(&caller).await {
                FirstCheck::Decided(decision) => {
                    record_decision(&decision);
                    Step::Decided(decision)
                }
                FirstCheck::Wait(wait) => {
                    let again = async move {
                        let decision = limiter.check_again(&caller).await;
                        record_decision(&decision);
                        decision
                    };
                    Step::Wait {
                        wait,
                        again: Box::pin(again.instrument(tracing::Span::current())),
                    }
                }
            }
        };
        let span = span.unwrap_or_else(tracing::Span::none);
        ResponseFuture::new(Box::pin(check.instrument(span)), inner, request)
    }
}

/// Records a decision made in the response future in the current `rate_limit` span.
fn record_decision(decision: &Result<Admission, Rejection>) {
    let span = tracing::Span::current();
    match decision {
        Ok(admission) => span.record("decision", tracing::field::debug(admission)),
        Err(rejection) => span.record("decision", rejection.reason().as_str()),
    };
    tracing::trace!(?decision, "rate limit decision");
}
