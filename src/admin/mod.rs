//! Operations: manage limits in PostgreSQL, tell every worker about a change, keep reports fresh
//! and the usage table small.
//!
//! [`Admin`] is the API operators use, from Rust, from the `highway-ratelimit` command line, or
//! over HTTP through the optional `router` module (cargo feature `admin-router`). Writing a limit is
//! the configuration phase: the schedule is parsed, its availability report rendered, and both
//! are stored with the report's `valid_until`, together with a `NOTIFY` on the
//! [`CHANGES_CHANNEL`] channel in the same transaction.
//!
//! Each worker reads limits through [`PostgresPolicies`], caches them, and runs a
//! [`ChangeListener`] that drops cache entries as soon as another process changes them. A
//! [`Refresher`] renders reports again before they expire, and a [`Cleanup`] task deletes usage
//! rows of windows that ended long ago.
//!
//! Rows of the [`DEFAULT_TENANT`](crate::policy::DEFAULT_TENANT) tenant hold the defaults; a
//! tenant's own row for a tool overrides the default row for that tool.

mod cleanup;
mod connection;
mod error;
mod limits;
mod notify;
mod postgres_policies;
mod refresher;
mod render;
#[cfg(feature = "admin-router")]
pub mod router;
mod usage;

pub use cleanup::{Cleanup, DEFAULT_RETENTION};
pub use error::AdminError;
pub use limits::{Admin, LimitSpec, StoredLimit, StoredSchedule, WriteOutcome};
pub use notify::{CHANGES_CHANNEL, Change, ChangeListener, ListenerHandle};
pub use postgres_policies::PostgresPolicies;
pub use refresher::{RefreshSummary, Refresher};
pub use render::{DEFAULT_HORIZON_DAYS, HorizonStart, ParseHorizonStartError, ReportPreview};
pub use usage::{
    DEFAULT_USAGE_PAGE_SIZE, MAX_USAGE_PAGE_SIZE, ParseUsageCursorError, UsageCursor, UsagePage,
    UsageQuery, WindowCount,
};
