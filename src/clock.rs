//! Clocks: where the rate limiter reads the current instant.
//!
//! [`SystemClock`] reads the system's wall clock and is the default. [`TokioClock`] starts at a
//! fixed instant and advances with tokio's clock, so tests and examples run on any date and,
//! with `tokio::time::pause`, without waiting:
//!
//! ```
//! use highway_ratelimit::clock::{Clock, TokioClock};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let start = "2026-03-02T09:00:00Z".parse().unwrap();
//! let clock = TokioClock::starting_at(start);
//!
//! tokio::time::sleep(std::time::Duration::from_secs(90)).await;
//!
//! assert_eq!(clock.now(), start + chrono::Duration::seconds(90));
//! # }
//! ```

use std::fmt::Debug;

use chrono::{DateTime, Utc};

/// A source of the current instant.
pub trait Clock: Debug + Send + Sync + 'static {
    /// Returns the current instant.
    fn now(&self) -> DateTime<Utc>;

    /// Returns the instant to hand to a token store with a call made at `now`.
    ///
    /// `None` lets the store use its own clock (the database clock for PostgreSQL), so that every
    /// worker counts in the same windows. Clocks that are not the wall clock return `Some(now)`,
    /// because a store's clock would not follow them.
    fn store_instant(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        Some(now)
    }
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn store_instant(&self, _now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        None
    }
}

/// A clock that starts at a fixed instant and advances with tokio's clock.
///
/// Under `tokio::time::pause` it advances only when tokio's clock does (with
/// `tokio::time::advance`, or when every task sleeps), which makes time-dependent behaviour
/// testable without waiting. Outside a paused runtime it follows the system's monotonic clock.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    origin: DateTime<Utc>,
    started: tokio::time::Instant,
}

impl TokioClock {
    /// Creates a clock that reads `origin` now and advances with tokio's clock from here.
    pub fn starting_at(origin: DateTime<Utc>) -> Self {
        TokioClock {
            origin,
            started: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = tokio::time::Instant::now().saturating_duration_since(self.started);
        self.origin + chrono::Duration::from_std(elapsed).unwrap_or(chrono::Duration::MAX)
    }
}
