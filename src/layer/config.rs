//! The settings of a rate limit layer and the builder that makes one.

use std::sync::Arc;
use std::time::Duration;

use super::error::Rejection;
use super::identity::{ToolName, within_limit, without_nul};
use super::layer::RateLimitLayer;
use super::limiter::Limiter;
use crate::clock::{Clock, SystemClock};
use crate::policy::PolicySource;
use crate::store::TokenStore;

/// The decision for a call whose tool has no policy, neither the tenant's own nor the
/// default tenant's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissingPolicy {
    /// Reject the call with [`RejectionReason::NoPolicy`](super::RejectionReason::NoPolicy):
    /// a tool without any configured policy is most likely a mistake, and rejecting makes it visible at
    /// once.
    #[default]
    Reject,
    /// Admit the call without counting it.
    Admit,
}

/// The settings shared by every service of one layer.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) tool: Option<ToolName>,
    pub(crate) store_timeout: Duration,
    pub(crate) missing_policy: MissingPolicy,
    pub(crate) max_wait: Option<Duration>,
    pub(crate) cache_capacity: u64,
    pub(crate) cache_ttl: Duration,
    pub(crate) report_days: u32,
    pub(crate) unavailable_retry_after: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            tool: None,
            store_timeout: Duration::from_millis(500),
            missing_policy: MissingPolicy::Reject,
            max_wait: None,
            cache_capacity: 10_000,
            cache_ttl: Duration::from_secs(60),
            report_days: crate::report::ReportOptions::DEFAULT_DAYS,
            unavailable_retry_after: Rejection::DEFAULT_UNAVAILABLE_RETRY_AFTER,
        }
    }
}

/// Builds a [`RateLimitLayer`] from a policy source, a token store and settings.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// use highway_ratelimit::layer::{MissingPolicy, RateLimitLayer, StaticPolicies};
/// use highway_ratelimit::store::MemoryStore;
///
/// let layer = RateLimitLayer::builder(Arc::new(StaticPolicies::new()), Arc::new(MemoryStore::new()))
///     .tool("tools.email.send")
///     .store_timeout(Duration::from_millis(200))
///     .missing_policy(MissingPolicy::Admit)
///     .wait_up_to(Duration::from_secs(2))
///     .build();
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct RateLimitBuilder {
    policies: Arc<dyn PolicySource>,
    store: Arc<dyn TokenStore>,
    /// `None`: the [`SystemClock`].
    clock: Option<Arc<dyn Clock>>,
    settings: Settings,
}

// Written by hand because the policy source and the store need not implement `Debug`.
impl std::fmt::Debug for RateLimitBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitBuilder")
            .field(
                "clock",
                self.clock
                    .as_ref()
                    .map_or(&SystemClock as &dyn std::fmt::Debug, |clock| clock),
            )
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl RateLimitBuilder {
    pub(crate) fn new(policies: Arc<dyn PolicySource>, store: Arc<dyn TokenStore>) -> Self {
        RateLimitBuilder {
            policies,
            store,
            clock: None,
            settings: Settings::default(),
        }
    }

    /// Names the tool every call through this layer is made to, instead of reading a
    /// [`ToolName`] extension from each request.
    ///
    /// # Panics
    ///
    /// Panics when `tool` is empty, longer than
    /// [`Caller::MAX_ID_BYTES`](super::Caller::MAX_ID_BYTES) or contains a NUL character. The
    /// layer would otherwise reject
    /// every call with [`IdentityError`](super::IdentityError), which the HTTP and gRPC adapters
    /// return as a bad request from the client.
    pub fn tool(mut self, tool: impl Into<Arc<str>>) -> Self {
        let tool = ToolName::new(tool);
        let checked = within_limit("tool name", tool.as_str())
            .and_then(|name| without_nul("tool name", name));
        if let Err(error) = checked {
            panic!("invalid tool name in RateLimitBuilder::tool: {error}");
        }
        self.settings.tool = Some(tool);
        self
    }

    /// Sets the clock that decides which window and which report slot a call falls in
    /// ([`SystemClock`] by default).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Sets the longest a token store call may take before it counts as failed (500 ms by
    /// default); the policy's `fail_open` then decides. A read of the policy source has the same
    /// limit.
    ///
    /// A store that decides on the calling thread ([`TokenStore::is_immediate`], such as
    /// [`MemoryStore`](crate::store::MemoryStore)) is not timed, and neither is a policy source
    /// in memory ([`PolicySource::is_immediate`], such as
    /// [`StaticPolicies`](super::StaticPolicies)). When both are immediate, any timeout works.
    /// Otherwise [`build`](Self::build) panics on a zero timeout, under which every call to the
    /// store, or every read of a policy that is not cached, would time out.
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.settings.store_timeout = timeout;
        self
    }

    /// Sets what happens to calls whose tool has no policy ([`MissingPolicy::Reject`] by
    /// default).
    pub fn missing_policy(mut self, missing: MissingPolicy) -> Self {
        self.settings.missing_policy = missing;
        self
    }

    /// Turns on wait mode: a call rejected with a retry time at most `max_wait` away sleeps
    /// until then and is tried once more, instead of failing at once.
    ///
    /// The waiting call gives back the inner service's readiness (a concurrency permit, a buffer
    /// slot) while it sleeps, so other callers reach the tool meanwhile. It waits for the inner
    /// service to be ready again before it is checked and charged a second time.
    ///
    /// The sleep uses Tokio's timer, so a call that would wait panics on a runtime built
    /// without `enable_time` or outside a Tokio runtime, as tower's `Timeout` does. Calls
    /// that do not wait need no timer with the in-process store.
    pub fn wait_up_to(mut self, max_wait: Duration) -> Self {
        self.settings.max_wait = Some(max_wait);
        self
    }

    /// Sets how many policies and reports are cached (10,000 by default).
    pub fn cache_capacity(mut self, entries: u64) -> Self {
        self.settings.cache_capacity = entries;
        self
    }

    /// Sets how long a cached policy or report is used before it is read again (60 s by
    /// default). Changes reach the layer sooner through
    /// [`RateLimitLayer::invalidate`]. A time to live over 1000 years, such as
    /// `Duration::MAX`, keeps them until they are invalidated or evicted.
    ///
    /// When reading a policy again fails, the layer applies the last policy it read for that
    /// tenant and tool for another time to live, so a database outage does not turn a fail-open
    /// policy into a rejection.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.settings.cache_ttl = ttl;
        self
    }

    /// Sets the horizon, in days, of a report computed again after it expired (7 by default).
    /// It ranges from 1 to [`MAX_HORIZON_DAYS`](crate::report::MAX_HORIZON_DAYS), and a value
    /// outside is brought to the nearer bound.
    pub fn report_days(mut self, days: u32) -> Self {
        self.settings.report_days = days.clamp(1, crate::report::MAX_HORIZON_DAYS);
        self
    }

    /// Sets the wait announced to the client when a call is rejected because the token store,
    /// the policy source or the schedule is unavailable and the policy fails closed. It is 5 s by
    /// default, and at least one second is announced.
    ///
    /// The axum adapter sends it as the 503's `Retry-After`, and the tonic adapter as the
    /// `UNAVAILABLE` status's retry delay. [`Rejection::retry_after`] returns it. The limiter
    /// cannot know when the dependency recovers, so this is a hint that keeps clients from
    /// sending their retries all at once into an outage. A longer wait spares a struggling
    /// database more load, a shorter one resumes the tools sooner after a short outage.
    pub fn unavailable_retry_after(mut self, wait: Duration) -> Self {
        self.settings.unavailable_retry_after = wait;
        self
    }

    /// Builds the layer.
    ///
    /// # Panics
    ///
    /// Panics when the store timeout is zero and the store or the policy source does not decide
    /// on the calling thread. Every call to such a store, or every read of a policy that is not
    /// cached, would then time out.
    pub fn build(self) -> RateLimitLayer {
        let timeout = self.settings.store_timeout;
        assert!(
            !timeout.is_zero() || self.store.is_immediate(),
            "invalid store timeout of {timeout:?} in RateLimitBuilder::store_timeout: every call \
             to a store that does not decide on the calling thread, such as PostgreSQL, would time \
             out; use a positive duration, such as the default {:?}",
            Settings::default().store_timeout
        );
        assert!(
            !timeout.is_zero() || self.policies.is_immediate(),
            "invalid store timeout of {timeout:?} in RateLimitBuilder::store_timeout: it also \
             limits reads of the policy source, and every read of a source that does not decide \
             on the calling thread, such as PostgresPolicies, would time out; use a positive \
             duration, such as the default {:?}",
            Settings::default().store_timeout
        );
        RateLimitLayer::from_limiter(Arc::new(Limiter::new(
            self.policies,
            self.store,
            self.clock,
            self.settings,
        )))
    }
}
