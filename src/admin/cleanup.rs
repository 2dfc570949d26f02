//! Cleanup: usage rows of windows that ended long ago are deleted.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::AdminError;
use crate::error_chain::ErrorChain;
use crate::store::postgres::PostgresStore;

/// The time usage rows are kept after their window ends: one day.
///
/// A row is only read while its window is open, so the retention serves people looking at
/// recent usage. Even the longest window, a month, is deleted one day after it ends. The usage
/// table thus contains the rows of the open windows plus about one day of ended ones, and those
/// written between two passes.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// A background task that deletes the usage rows of windows that ended more than the retention
/// ago, through [`PostgresStore::cleanup_expired`].
#[derive(Debug, Clone)]
pub struct Cleanup {
    store: PostgresStore,
    retention: Duration,
    interval: Duration,
}

impl Cleanup {
    /// Creates a cleanup with the [`DEFAULT_RETENTION`] and a pass every 10 minutes.
    pub fn new(store: PostgresStore) -> Self {
        Cleanup {
            store,
            retention: DEFAULT_RETENTION,
            interval: Duration::from_secs(600),
        }
    }

    /// Sets how long rows are kept after their window ends.
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Sets the time between two passes of [`run`](Self::run). An interval of zero is raised to
    /// one millisecond.
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Deletes the rows whose window ended more than the retention before the database clock's
    /// now, and returns how many.
    pub async fn run_once(&self) -> Result<u64, AdminError> {
        Ok(self.store.cleanup_expired(self.retention).await?)
    }

    /// Deletes the rows whose window ended more than the retention before `now`, and returns how
    /// many; for tests and replays that set the time. The retention is raised and capped as in
    /// [`PostgresStore::cleanup_age`].
    pub async fn run_once_at(&self, now: DateTime<Utc>) -> Result<u64, AdminError> {
        let age = chrono::Duration::from_std(self.store.cleanup_age(self.retention))
            .unwrap_or(chrono::Duration::MAX);
        // A cutoff before the first instant chrono can hold leaves no row older than it.
        let Some(cutoff) = now.checked_sub_signed(age) else {
            return Ok(0);
        };
        Ok(self.store.cleanup_before(cutoff).await?)
    }

    /// Runs a pass every interval, forever; errors are logged and the next pass tries again.
    /// Spawn it on a Tokio runtime and abort the task to stop it.
    pub async fn run(self) {
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match self.run_once().await {
                Ok(deleted) => tracing::debug!(deleted, "usage cleanup pass done"),
                Err(error) => {
                    tracing::error!(error = %ErrorChain(&error), "usage cleanup failed; retrying at the next interval")
                }
            }
        }
    }
}
