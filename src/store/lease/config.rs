//! The settings of a [`LeasedStore`](super::LeasedStore).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::store::ScopeKey;

/// A predicate on scope keys, shared by the clones of a configuration.
type KeyPredicate = Arc<dyn Fn(&ScopeKey) -> bool + Send + Sync>;

/// The settings of a [`LeasedStore`](super::LeasedStore): how large a lease may grow, how long it
/// should last, and which keys take leases.
///
/// ```
/// use std::time::Duration;
/// use highway_ratelimit::store::lease::LeaseConfig;
///
/// let config = LeaseConfig::new()
///     .max_batch(50)
///     .lease_ahead(Duration::from_millis(200))
///     .lease_when(|key| key.scope == "global");
/// assert_eq!(config.get_max_batch(), 50);
/// ```
#[derive(Clone)]
pub struct LeaseConfig {
    pub(super) max_batch: u64,
    pub(super) min_batch: u64,
    pub(super) lease_ahead: Duration,
    pub(super) share: f64,
    pub(super) recheck_after: Duration,
    pub(super) sweep_interval: Duration,
    pub(super) call_timeout: Duration,
    pub(super) lease_when: Option<KeyPredicate>,
    pub(super) clock: Arc<dyn Clock>,
}

impl fmt::Debug for LeaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaseConfig")
            .field("max_batch", &self.max_batch)
            .field("min_batch", &self.min_batch)
            .field("lease_ahead", &self.lease_ahead)
            .field("share", &self.share)
            .field("recheck_after", &self.recheck_after)
            .field("sweep_interval", &self.sweep_interval)
            .field("call_timeout", &self.call_timeout)
            .field("lease_when", &self.lease_when.as_ref().map(|_| "custom"))
            .field("clock", &self.clock)
            .finish()
    }
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl LeaseConfig {
    /// The default largest lease, in tokens: also the most a crashed worker can hold per key.
    pub const DEFAULT_MAX_BATCH: u64 = 100;
    /// The default time a lease should last at the call rate seen by the process.
    pub const DEFAULT_LEASE_AHEAD: Duration = Duration::from_millis(100);
    /// The default largest fraction of a window's remaining tokens that one lease takes.
    pub const DEFAULT_SHARE: f64 = 0.1;
    /// The default time a worker rejects calls on its own after the database had no tokens left.
    pub const DEFAULT_RECHECK_AFTER: Duration = Duration::from_millis(50);
    /// The maximum recheck interval, 366 days, which is longer than any window a lease is taken
    /// in (a month). Much longer intervals, such as `Duration::MAX`, overflow `Instant` when
    /// added to the current instant.
    pub const MAX_RECHECK_AFTER: Duration = Duration::from_secs(366 * 24 * 3600);
    /// The default interval at which leases of ended windows are given back.
    pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(1);
    /// The default limit on one lease or give-back round trip, including the wait for a
    /// connection.
    pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(3);

    /// Creates the default settings: leases of 1 to 100 tokens sized to last 100 ms, at most a
    /// tenth of what remains, for every key, on the system clock.
    pub fn new() -> Self {
        LeaseConfig {
            max_batch: Self::DEFAULT_MAX_BATCH,
            min_batch: 1,
            lease_ahead: Self::DEFAULT_LEASE_AHEAD,
            share: Self::DEFAULT_SHARE,
            recheck_after: Self::DEFAULT_RECHECK_AFTER,
            sweep_interval: Self::DEFAULT_SWEEP_INTERVAL,
            call_timeout: Self::DEFAULT_CALL_TIMEOUT,
            lease_when: None,
            clock: Arc::new(SystemClock),
        }
    }

    /// Sets the largest lease in tokens (at least 1).
    ///
    /// It bounds the tokens a worker holds per key, and so what a crashed worker takes with it: at
    /// most this many tokens of each window its lease was in. A lease taken for a call whose cost
    /// is larger covers that call, so the bound is the larger of the two.
    pub fn max_batch(mut self, tokens: u64) -> Self {
        self.max_batch = tokens.max(1);
        self.min_batch = self.min_batch.min(self.max_batch);
        self
    }

    /// Sets the smallest lease in tokens (at least 1, at most the largest lease): the size of the
    /// first lease of a key and of the leases of a key that is rarely called.
    pub fn min_batch(mut self, tokens: u64) -> Self {
        self.min_batch = tokens.clamp(1, self.max_batch);
        self
    }

    /// Sets how long a lease should last at the call rate of its key in this process: the next
    /// lease takes `rate × lease_ahead` tokens, within the smallest and largest lease.
    pub fn lease_ahead(mut self, duration: Duration) -> Self {
        self.lease_ahead = duration;
        self
    }

    /// Sets the largest fraction of a window's remaining tokens that one lease may take (clamped
    /// to 0.001 through 1). Leases shrink as the window nears its limit, so that workers that go
    /// idle hold few of the last tokens.
    pub fn share(mut self, fraction: f64) -> Self {
        self.share = if fraction.is_nan() {
            Self::DEFAULT_SHARE
        } else {
            fraction.clamp(0.001, 1.0)
        };
        self
    }

    /// Sets how long a worker rejects calls of a key on its own after the database had too few
    /// tokens for one, before it asks again. Tokens that other workers give back become usable
    /// after at most this long. A longer interval than [`Self::MAX_RECHECK_AFTER`] acts as that
    /// one.
    pub fn recheck_after(mut self, duration: Duration) -> Self {
        self.recheck_after = duration.min(Self::MAX_RECHECK_AFTER);
        self
    }

    /// Sets how often a background task gives back the leases whose windows have ended, so that
    /// their unused tokens count again in the longer windows still open (a lease of minute, hour and
    /// day windows gives its tokens back to the hour and the day when the minute ends).
    pub fn sweep_interval(mut self, interval: Duration) -> Self {
        self.sweep_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// Sets the limit on one round trip that takes or gives back tokens, from waiting for a pooled
    /// connection to reading the result.
    ///
    /// # Panics
    ///
    /// Panics when `timeout` is zero, under which every round trip would time out.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        assert!(
            !timeout.is_zero(),
            "invalid timeout of {timeout:?} in LeaseConfig::call_timeout: every round trip would \
             time out; use a positive duration, such as the default {:?}",
            Self::DEFAULT_CALL_TIMEOUT
        );
        self.call_timeout = timeout;
        self
    }

    /// Leases tokens only for the keys where `predicate` returns `true`; calls of other keys go to
    /// the exact store, one round trip each. By default every key takes leases.
    pub fn lease_when(
        mut self,
        predicate: impl Fn(&ScopeKey) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.lease_when = Some(Arc::new(predicate));
        self
    }

    /// Sets the clock that decides the windows of calls without an instant
    /// ([`ConsumeRequest::at`](crate::store::ConsumeRequest::at) is `None`), and when the
    /// background refill and sweep consider a lease's windows ended ([`SystemClock`] by default).
    ///
    /// The database takes no tokens from a window that has ended by its own clock and has no
    /// usage row any more, since a cleanup may have deleted the row of a full window. So a clock
    /// far behind the database's (a `ManualClock` set in the past, against a live database)
    /// admits nothing in windows that no call used in time.
    ///
    /// Calls with an instant are placed by that instant, whatever the clock reads. A lease taken
    /// for such calls is never swept: it is given back when a call falls outside its windows or
    /// at shutdown. Durations (`lease_ahead`, `recheck_after`, `sweep_interval`) run on tokio's
    /// and the system's monotonic clocks, not on this one.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use highway_ratelimit::clock::{Clock, ManualClock};
    /// use highway_ratelimit::store::lease::LeaseConfig;
    ///
    /// let clock = ManualClock::starting_at("2026-03-02T10:15:30Z".parse().unwrap());
    /// // Clones of a ManualClock share one instant, so `clock` moves the store's clock.
    /// let config = LeaseConfig::new().clock(clock.clone());
    ///
    /// // A clock shared with other settings is passed as it is.
    /// let shared: Arc<dyn Clock> = Arc::new(clock);
    /// let config = LeaseConfig::new().clock(shared);
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Returns the largest lease in tokens.
    pub fn get_max_batch(&self) -> u64 {
        self.max_batch
    }

    /// Returns the smallest lease in tokens.
    pub fn get_min_batch(&self) -> u64 {
        self.min_batch
    }

    /// Returns the largest fraction of a window's remaining tokens that one lease takes.
    pub fn get_share(&self) -> f64 {
        self.share
    }

    pub(super) fn leases(&self, key: &ScopeKey) -> bool {
        self.lease_when
            .as_ref()
            .is_none_or(|predicate| predicate(key))
    }
}
