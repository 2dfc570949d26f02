//! Token stores: where calls are counted, per scope key and window.
//!
//! A [`TokenStore`] checks and consumes a call's cost in every limited window kind in one atomic
//! step: either every window has room and every counter grows by the cost, or nothing changes.

pub mod lease;
pub mod postgres;

use std::fmt;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use chrono::{DateTime, Utc, Weekday};
use chrono_tz::Tz;
use futures_util::future::BoxFuture;

use crate::report::Capacity;
use crate::window::WindowKind;

mod memory;
mod usage;

pub use memory::MemoryStore;
pub use usage::{WindowUsage, Windows};

/// The counter a call is charged to: a tool of a tenant, narrowed by the policy's scope.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ScopeKey {
    /// The tenant whose policy applies (`default` when the default row applies).
    pub tenant: String,
    /// The tool name, such as `tools.email.send`.
    pub tool: String,
    /// `global`, the tenant id, or the workflow run id, as the policy's scope chooses.
    pub scope: String,
}

/// Hashes the lengths of the ids in one word and then their bytes: four writes to the hasher
/// instead of the six of a derived implementation, on every call to a token store. The lengths
/// separate keys whose ids concatenate to the same text.
impl Hash for ScopeKey {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        let lengths = (self.tenant.len() as u64)
            ^ (self.tool.len() as u64).rotate_left(21)
            ^ (self.scope.len() as u64).rotate_left(42);
        state.write_u64(lengths);
        state.write(self.tenant.as_bytes());
        state.write(self.tool.as_bytes());
        state.write(self.scope.as_bytes());
    }
}

impl fmt::Display for ScopeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tenant {:?}, tool {:?}, scope {:?}",
            self.tenant, self.tool, self.scope
        )
    }
}

/// One call to charge: the key, the cost, the limits in force and the calendar of the windows.
#[derive(Debug, Clone, Copy)]
pub struct ConsumeRequest<'a> {
    /// The counter to charge.
    pub key: &'a ScopeKey,
    /// How many units the call uses (1 for a plain call).
    pub cost: u64,
    /// The limit of each window kind; unlimited kinds are not counted.
    pub capacity: &'a Capacity,
    /// The time zone whose calendar day, week and month windows follow.
    pub timezone: Tz,
    /// The first day of a week window.
    pub week_start: Weekday,
    /// The instant of the call; `None` lets the store use its own clock (the database clock for
    /// PostgreSQL).
    pub at: Option<DateTime<Utc>>,
}

/// The outcome of a consume or peek.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Every window had room; the cost was charged to all of them.
    Admitted {
        /// Every limited window, shortest first.
        windows: Windows,
    },
    /// A window had no room; nothing was charged anywhere.
    Rejected {
        /// The window that refused; when several refuse, the one that resets last.
        window: WindowKind,
        /// When the call can next succeed as far as the counters can tell: the reset of the
        /// refusing window.
        retry_at: DateTime<Utc>,
        /// Every limited window, shortest first.
        windows: Windows,
    },
}

impl Decision {
    /// Returns whether the call was admitted.
    pub fn is_admitted(&self) -> bool {
        matches!(self, Decision::Admitted { .. })
    }

    /// Returns the state of every limited window, shortest first.
    pub fn windows(&self) -> &[WindowUsage] {
        match self {
            Decision::Admitted { windows } | Decision::Rejected { windows, .. } => windows,
        }
    }
}

/// The error of a store operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The cost is larger than a window's whole limit, so the call can never succeed under
    /// these limits. The rate limit layer rejects it as a quota instead when a later window of
    /// the policy's schedule has limits that admit the cost.
    #[error(
        "a cost of {cost} can never fit the {window} limit of {limit}: split the call or raise the limit"
    )]
    CostExceedsLimit {
        /// The window whose limit is too small.
        window: WindowKind,
        /// That window's limit.
        limit: u64,
        /// The call's cost.
        cost: u64,
    },
    /// A cost of 0 was requested.
    #[error("invalid cost 0: a call costs at least 1 unit")]
    ZeroCost,
    /// The store did not respond within its timeout.
    #[error("token store timed out after {0:?}")]
    Timeout(Duration),
    /// The store could not be reached or failed. The cause is the error's
    /// [`source`](std::error::Error::source), not part of its message.
    #[error("token store unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Counts calls per scope key and window, and decides whether a call fits.
///
/// Implementations are exact: under any interleaving of concurrent calls, no window admits more
/// than its limit, and a rejected call changes no counter.
pub trait TokenStore: Send + Sync + 'static {
    /// Checks every limited window and, when all have room for `request.cost`, charges it to all
    /// of them in one atomic step.
    fn consume<'a>(
        &'a self,
        request: ConsumeRequest<'a>,
    ) -> BoxFuture<'a, Result<Decision, StoreError>>;

    /// Returns the decision `consume` would take, without charging anything.
    fn peek<'a>(
        &'a self,
        request: ConsumeRequest<'a>,
    ) -> BoxFuture<'a, Result<Decision, StoreError>>;

    /// Returns whether the store decides on the calling thread, as an in-process store does:
    /// [`consume_now`](Self::consume_now) always returns `Some`, and `consume` and `peek` finish
    /// on their first poll. The rate limit layer then decides a call inside `Service::call`,
    /// with no future of its own, and gives the store the instant it read from its clock.
    ///
    /// `false` by default. An implementation that returns `true` must keep that promise: the
    /// layer treats a missing outcome as a store failure.
    fn is_immediate(&self) -> bool {
        false
    }

    /// Decides and charges a call on the calling thread, without a future, as
    /// [`consume`](Self::consume) would: `None` when the store has to wait for something (a
    /// database), and the call must go through `consume`.
    ///
    /// `None` by default. A store in process memory implements it so that a call allocates
    /// nothing.
    fn consume_now(&self, request: ConsumeRequest<'_>) -> Option<Result<Decision, StoreError>> {
        let _ = request;
        None
    }
}
