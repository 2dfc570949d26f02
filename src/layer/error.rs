//! Errors: why the rate limiter rejected a call, kept apart from the tool's own errors.

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};

use super::identity::IdentityError;
use crate::store::{StoreError, WindowUsage, Windows};
use crate::window::WindowKind;

/// The error of a [`RateLimit`](super::RateLimit) service: the limiter rejected the call, or the
/// tool failed.
///
/// A rejection carries no news of the tool's health, because the tool was not called, so a
/// circuit breaker should record it neither as a failure nor as a success. Stack the breaker
/// inside the limiter, between it and the tool, where no rejection reaches it. A breaker around
/// the limiter works only if it can leave an outcome unrecorded. tower-resilience-circuitbreaker
/// 0.14 cannot, because it records every result that its classifier does not count as a failure
/// as a success. See `examples/circuit_breaker.rs`.
#[derive(Debug)]
pub enum RateLimitError<E> {
    /// The limiter rejected the call; the tool was not called.
    Rejected(Rejection),
    /// The tool was called and failed, or was not ready.
    Service(E),
}

impl<E> RateLimitError<E> {
    /// Returns the rejection, `None` for a tool error.
    pub fn rejection(&self) -> Option<&Rejection> {
        match self {
            RateLimitError::Rejected(rejection) => Some(rejection),
            RateLimitError::Service(_) => None,
        }
    }

    /// Returns whether the limiter rejected the call.
    pub fn is_rejected(&self) -> bool {
        matches!(self, RateLimitError::Rejected(_))
    }

    /// Returns the tool's error, `None` for a rejection.
    pub fn into_service_error(self) -> Option<E> {
        match self {
            RateLimitError::Rejected(_) => None,
            RateLimitError::Service(error) => Some(error),
        }
    }
}

impl<E: fmt::Display> fmt::Display for RateLimitError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RateLimitError::Rejected(rejection) => rejection.fmt(f),
            RateLimitError::Service(error) => error.fmt(f),
        }
    }
}

impl<E: Error + 'static> Error for RateLimitError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            RateLimitError::Rejected(rejection) => rejection.source(),
            RateLimitError::Service(error) => error.source(),
        }
    }
}

/// A call the rate limiter rejected: the reason, the tenant and tool, and when to retry.
#[derive(Debug, Clone)]
pub struct Rejection {
    /// Boxed, so that the outcome of an admitted call, which has the size of the larger of
    /// admission and rejection, stays small to move.
    reason: Box<RejectionReason>,
    tenant: Option<Arc<str>>,
    tool: Option<Arc<str>>,
    decided_at: DateTime<Utc>,
    /// The wait that [`retry_after`](Rejection::retry_after) announces when a dependency is
    /// unavailable.
    unavailable_retry_after: Duration,
}

impl Rejection {
    pub(crate) fn new(
        reason: RejectionReason,
        tenant: Option<Arc<str>>,
        tool: Option<Arc<str>>,
        decided_at: DateTime<Utc>,
    ) -> Self {
        Rejection {
            reason: Box::new(reason),
            tenant,
            tool,
            decided_at,
            unavailable_retry_after: Self::DEFAULT_UNAVAILABLE_RETRY_AFTER,
        }
    }

    /// Sets the wait that [`retry_after`](Self::retry_after) announces when a dependency is
    /// unavailable.
    pub(crate) fn with_unavailable_retry_after(mut self, wait: Duration) -> Self {
        self.unavailable_retry_after = wait;
        self
    }

    /// Returns why the call was rejected.
    pub fn reason(&self) -> &RejectionReason {
        &self.reason
    }

    /// Returns the tenant of the call, `None` when the request named none.
    pub fn tenant(&self) -> Option<&str> {
        self.tenant.as_deref()
    }

    /// Returns the tool of the call, `None` when the request named none.
    pub fn tool(&self) -> Option<&str> {
        self.tool.as_deref()
    }

    /// Returns when the decision was taken, by the limiter's clock.
    pub fn decided_at(&self) -> DateTime<Utc> {
        self.decided_at
    }

    /// Returns the earliest instant at which the same call can succeed, as far as the limiter
    /// can tell. Returns `None` when retrying cannot help or when no time is known.
    pub fn retry_at(&self) -> Option<DateTime<Utc>> {
        match &*self.reason {
            RejectionReason::OutsideHours { next_allowed }
            | RejectionReason::BlockedDate { next_allowed, .. } => *next_allowed,
            RejectionReason::QuotaExhausted { retry_at, .. } => Some(*retry_at),
            _ => None,
        }
    }

    /// Returns how long to wait from the decision until [`retry_at`](Self::retry_at), as HTTP's
    /// `Retry-After` and gRPC's retry delay announce it.
    ///
    /// The wait is at least [`MIN_RETRY_AFTER`](Self::MIN_RETRY_AFTER). A retry time at or before
    /// the decision, or only a moment after it, mostly comes from a store whose clock lags the
    /// layer's, such as a PostgreSQL server's when the layer uses the system clock. A shorter wait
    /// would send the call straight back into the same rejection.
    ///
    /// A rejection because a dependency is unavailable ([`is_unavailable`](Self::is_unavailable))
    /// has no retry time, because the limiter cannot tell when the dependency recovers. For it the
    /// wait is the one that
    /// [`RateLimitBuilder::unavailable_retry_after`](super::RateLimitBuilder::unavailable_retry_after)
    /// sets, [`DEFAULT_UNAVAILABLE_RETRY_AFTER`](Self::DEFAULT_UNAVAILABLE_RETRY_AFTER) unless
    /// changed, so that clients of a 503 or an `UNAVAILABLE` status spread their retries instead of
    /// sending them back at once. Wait mode does not wait for such a rejection.
    pub fn retry_after(&self) -> Option<Duration> {
        let wait = if self.is_unavailable() {
            self.unavailable_retry_after
        } else {
            self.wait_until_retry()?
        };
        Some(wait.max(Self::MIN_RETRY_AFTER))
    }

    /// The smallest wait of [`retry_after`](Self::retry_after): one second, the smallest
    /// `Retry-After` of HTTP above zero.
    pub const MIN_RETRY_AFTER: Duration = Duration::from_secs(1);

    /// The wait that [`retry_after`](Self::retry_after) announces by default when a dependency
    /// is unavailable: five seconds.
    pub const DEFAULT_UNAVAILABLE_RETRY_AFTER: Duration = Duration::from_secs(5);

    /// Returns how long wait mode sleeps before it checks the call again. That is the exact wait
    /// until [`retry_at`](Self::retry_at), so that a call does not sleep past a near reset, or
    /// [`MIN_RETRY_AFTER`](Self::MIN_RETRY_AFTER) when the retry time is not after the decision.
    pub(crate) fn wait_until_retry(&self) -> Option<Duration> {
        let wait = self.retry_at()? - self.decided_at;
        let wait = wait.to_std().unwrap_or(Duration::ZERO);
        Some(if wait.is_zero() {
            Self::MIN_RETRY_AFTER
        } else {
            wait
        })
    }

    /// Returns the message that an HTTP or gRPC response shows the client: the rejection and its
    /// causes, except the cause of an unavailable store or policy source. That cause (a server
    /// address, an operating system error) describes the server's own network, so it goes to the
    /// server's log, where the limiter writes it, and not to the client.
    #[cfg(any(feature = "axum", feature = "tonic"))]
    pub(crate) fn client_message(&self) -> String {
        if self.is_unavailable() {
            self.to_string()
        } else {
            crate::error_chain::ErrorChain(self).to_string()
        }
    }

    /// Returns whether the call failed because a dependency of the limiter (the token store,
    /// the policy source, the schedule) is unavailable, rather than because of a limit.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            *self.reason,
            RejectionReason::StoreUnavailable(_)
                | RejectionReason::PolicyUnavailable(_)
                | RejectionReason::ScheduleUnavailable { .. }
        )
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rate limit rejected the call")?;
        if let Some(tool) = &self.tool {
            write!(f, " to {tool:?}")?;
        }
        if let Some(tenant) = &self.tenant {
            write!(f, " for tenant {tenant:?}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// The source is the [`StoreError`] of a failed store or policy source. The message of an
/// [`IdentityError`] is already part of the rejection's message, so for a missing identity the
/// source is that error's own source, and a chain of causes prints each message once.
impl Error for Rejection {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match &*self.reason {
            RejectionReason::StoreUnavailable(error)
            | RejectionReason::PolicyUnavailable(error) => Some(&**error),
            RejectionReason::MissingIdentity(error) => error.source(),
            _ => None,
        }
    }
}

/// The reason the rate limiter rejected a call.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RejectionReason {
    /// The call falls outside the schedule's working hours.
    #[error("outside the allowed hours{}", next(next_allowed))]
    OutsideHours {
        /// The start of the next allowed window; `None` when the report has none.
        next_allowed: Option<DateTime<Utc>>,
    },
    /// The call falls on a date blocked by a vacation or leave.
    #[error("{date} is a blocked date{}", next(next_allowed))]
    BlockedDate {
        /// The blocked local date.
        date: NaiveDate,
        /// The start of the next allowed window; `None` when the report has none.
        next_allowed: Option<DateTime<Utc>>,
    },
    /// A window's quota is used up, or the call's cost is larger than a limit in force now but
    /// fits the limits of a later window of the schedule's report.
    #[error("{}", quota(*window, *limit, *cost, windows, retry_at))]
    QuotaExhausted {
        /// The window that refused; when several refuse, the one that resets last. For a cost
        /// larger than a limit in force, a window whose limit is smaller than the cost.
        window: WindowKind,
        /// That window's limit.
        limit: u64,
        /// The call's cost.
        cost: u64,
        /// When that window resets or, when it resets outside the schedule's allowed windows,
        /// the start of the next allowed window after the reset. When the schedule's capacity
        /// rises before then, it is the first instant at which the call fits again. For a cost
        /// larger than a limit in force, it is the start of the first report window whose
        /// limits all admit the cost.
        retry_at: DateTime<Utc>,
        /// Every limited window, shortest first, as the store left them. Empty for a cost
        /// larger than a limit in force, because the store rejects such a call before it reads
        /// any count.
        windows: Windows,
    },
    /// The call's cost is larger than a window's whole limit, and no later window of the
    /// schedule's report has limits that admit it (or the limits are static), so it can never
    /// succeed.
    #[error(
        "a cost of {cost} can never fit the {window} limit of {limit}: split the call or raise the limit"
    )]
    CostExceedsLimit {
        /// The window whose limit is too small: with a schedule, the tightest window of the later
        /// report window with the largest limits, when those are larger than the limits in force.
        window: WindowKind,
        /// That window's limit.
        limit: u64,
        /// The call's cost.
        cost: u64,
    },
    /// A static limit of 0 switches the tool off in a window, so no call succeeds until the limit
    /// is raised. A schedule's limit of 0 is a [`QuotaExhausted`](Self::QuotaExhausted) instead,
    /// with the retry time at which the schedule's limits admit the call again.
    #[error("the {window} limit is 0, which switches the tool off: raise the limit to allow calls")]
    Disabled {
        /// The window whose limit is 0.
        window: WindowKind,
    },
    /// The token store failed or timed out, and the policy fails closed. The store's error is
    /// the [`source`](Error::source), not part of the message.
    #[error("the token store failed, and the policy fails closed")]
    StoreUnavailable(#[source] Arc<StoreError>),
    /// The policy source failed or timed out. The source's error is the
    /// [`source`](Error::source), not part of the message.
    #[error("cannot read the policy")]
    PolicyUnavailable(#[source] Arc<StoreError>),
    /// The schedule's report expired and could not be computed again, and the policy fails
    /// closed.
    #[error("the schedule's report expired and cannot be computed again: {message}")]
    ScheduleUnavailable {
        /// The reason the report could not be computed.
        message: Arc<str>,
    },
    /// No policy exists for the tool, and the layer rejects such calls.
    #[error(
        "no rate limit policy for this tool, neither the tenant's nor the default tenant's: add one, or let the layer admit such calls with RateLimitBuilder::missing_policy"
    )]
    NoPolicy,
    /// The request lacks an extension the limiter needs, or an id in it is too long.
    #[error(transparent)]
    MissingIdentity(IdentityError),
}

impl RejectionReason {
    /// Returns a short name for logs and metric labels: `outside_hours`, `blocked_date`,
    /// `quota_exhausted`, `cost_exceeds_limit`, `disabled`, `store_unavailable`,
    /// `policy_unavailable`, `schedule_unavailable`, `no_policy` or `missing_identity`.
    pub fn as_str(&self) -> &'static str {
        match self {
            RejectionReason::OutsideHours { .. } => "outside_hours",
            RejectionReason::BlockedDate { .. } => "blocked_date",
            RejectionReason::QuotaExhausted { .. } => "quota_exhausted",
            RejectionReason::CostExceedsLimit { .. } => "cost_exceeds_limit",
            RejectionReason::Disabled { .. } => "disabled",
            RejectionReason::StoreUnavailable(_) => "store_unavailable",
            RejectionReason::PolicyUnavailable(_) => "policy_unavailable",
            RejectionReason::ScheduleUnavailable { .. } => "schedule_unavailable",
            RejectionReason::NoPolicy => "no_policy",
            RejectionReason::MissingIdentity(_) => "missing_identity",
        }
    }
}

/// Describes an exhausted quota: a limit of 0 switches the tool off for the window, and a cost
/// above the limit waits for a window with a larger one.
fn quota(
    window: WindowKind,
    limit: u64,
    cost: u64,
    windows: &[WindowUsage],
    retry_at: &DateTime<Utc>,
) -> String {
    if limit == 0 {
        return format!(
            "the {window} limit is 0, which switches the tool off in this window; retry at {retry_at}"
        );
    }
    if cost > limit {
        return format!(
            "a cost of {cost} is more than the {window} limit of {limit} in force now; the schedule's limits admit it from {retry_at}, so retry then"
        );
    }
    format!(
        "the {window} quota of {limit} {}; retry at {retry_at}",
        left(windows, window)
    )
}

/// Describes what is left of the refusing window: nothing, or too little for the call's cost.
fn left(windows: &[WindowUsage], window: WindowKind) -> String {
    match windows.iter().find(|usage| usage.kind == window) {
        Some(usage) if usage.remaining > 0 => {
            format!("has {} left, less than the call's cost", usage.remaining)
        }
        _ => "is exhausted (0 remaining)".to_owned(),
    }
}

fn next(next_allowed: &Option<DateTime<Utc>>) -> String {
    match next_allowed {
        Some(at) => format!("; next allowed at {at}"),
        None => "; the schedule allows no call before its report ends: check its working hours and its project's start and end dates".to_owned(),
    }
}

impl<E: Into<tower::BoxError>> RateLimitError<E> {
    /// Converts the error into a [`tower::BoxError`]: a rejection becomes a boxed [`Rejection`]
    /// (found again with `downcast_ref`), a service error its own boxed form.
    ///
    /// `RateLimitError<BoxError>` cannot implement [`Error`] itself, because `BoxError` does not,
    /// so in a stack whose errors are boxed, map them after the limiter:
    /// `ServiceBuilder::new().timeout(…).map_err(RateLimitError::into_box_error).layer(limits)`.
    pub fn into_box_error(self) -> tower::BoxError {
        match self {
            RateLimitError::Rejected(rejection) => Box::new(rejection),
            RateLimitError::Service(error) => error.into(),
        }
    }
}
