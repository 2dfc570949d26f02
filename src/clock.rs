//! Clocks: where the rate limiter reads the current instant.
//!
//! [`SystemClock`] reads the system's wall clock and is the default. [`TokioClock`] starts at a
//! fixed instant and advances with tokio's clock, so tests and examples run on any date and,
//! with `tokio::time::pause`, without waiting. [`ManualClock`] reads the instant it was last set
//! to, for replays and for programs whose real I/O rules out paused time:
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

use std::cell::Cell;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, NaiveTime, TimeDelta, Timelike, Utc};

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

/// A shared clock reads like the clock it points to, so that one `Arc<dyn Clock>` can serve
/// several settings (a layer and a lease store, say).
impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> DateTime<Utc> {
        (**self).now()
    }

    fn store_instant(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        (**self).store_instant(now)
    }
}

/// The system's wall clock.
///
/// Each thread reads the wall clock at most every [`SystemClock::RESYNC`] and, in between, adds
/// the time elapsed on the processor's time-stamp counter (through [`quanta`]) to its last
/// reading. A call then costs a counter read instead of a system call and a calendar conversion,
/// and the instant stays within microseconds of the wall clock. A step of the wall clock (a
/// manual change, a time synchronisation) shows within [`SystemClock::RESYNC`]. Where the
/// processor has no reliable counter, quanta reads the monotonic clock instead.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl SystemClock {
    /// How long a thread adds counter time to its last reading of the wall clock before it
    /// reads the wall clock again.
    pub const RESYNC: Duration = Duration::from_millis(100);
}

thread_local! {
    /// This thread's last reading of the wall clock.
    static WALL_READING: Cell<Option<WallReading>> = const { Cell::new(None) };
}

/// A reading of the wall clock with the counter instant it was taken at.
#[derive(Debug, Clone, Copy)]
struct WallReading {
    counter: quanta::Instant,
    wall: DateTime<Utc>,
    /// The nanoseconds of `wall` since its midnight, so that adding counter time is an integer
    /// addition unless the sum passes midnight.
    nanos_of_day: u64,
}

impl WallReading {
    const NANOS_PER_DAY: u64 = 86_400 * 1_000_000_000;

    fn new(counter: quanta::Instant, wall: DateTime<Utc>) -> Self {
        let time = wall.time();
        // A reading inside a leap second (nanoseconds from 1e9) is left to chrono's addition.
        let nanos_of_day = if time.nanosecond() < 1_000_000_000 {
            u64::from(time.num_seconds_from_midnight()) * 1_000_000_000
                + u64::from(time.nanosecond())
        } else {
            Self::NANOS_PER_DAY
        };
        WallReading {
            counter,
            wall,
            nanos_of_day,
        }
    }

    /// Returns the instant `since` after the reading, `since` being under [`SystemClock::RESYNC`].
    #[inline]
    fn plus(&self, since: Duration) -> Option<DateTime<Utc>> {
        // Below RESYNC the nanoseconds fit any integer used here.
        let nanos = self.nanos_of_day + since.as_nanos() as u64;
        if nanos < Self::NANOS_PER_DAY {
            let time = NaiveTime::from_num_seconds_from_midnight_opt(
                (nanos / 1_000_000_000) as u32,
                (nanos % 1_000_000_000) as u32,
            )?;
            return Some(self.wall.naive_utc().date().and_time(time).and_utc());
        }
        self.wall
            .checked_add_signed(TimeDelta::nanoseconds(since.as_nanos() as i64))
    }
}

impl Clock for SystemClock {
    #[inline]
    fn now(&self) -> DateTime<Utc> {
        Self::now_at(quanta::Instant::now())
    }

    fn store_instant(&self, _now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        None
    }
}

impl SystemClock {
    /// Returns the wall-clock instant at `counter`, a counter reading just taken, so that a
    /// caller that needs both reads the counter once.
    #[inline]
    pub(crate) fn now_at(counter: quanta::Instant) -> DateTime<Utc> {
        let last = WALL_READING.get();
        if let Some(last) = last {
            let since = counter.saturating_duration_since(last.counter);
            if since < Self::RESYNC
                && let Some(now) = last.plus(since)
            {
                return now;
            }
        }
        Self::resync()
    }

    /// Reads the wall clock and keeps the reading for this thread's next calls. Out of line, so
    /// that the common path of [`SystemClock::now_at`] inlines into its caller.
    #[cold]
    #[inline(never)]
    fn resync() -> DateTime<Utc> {
        // Read the counter again, because the caller's reading may be older than the wall clock
        // read here.
        let wall = Utc::now();
        WALL_READING.set(Some(WallReading::new(quanta::Instant::now(), wall)));
        wall
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

/// A clock that reads the instant it was last set to, for replays and for examples that do
/// real I/O, where tokio's paused time would fire every timeout at once.
///
/// Clones share one instant, so the clock handed to a layer can be moved from outside:
///
/// ```
/// use highway_ratelimit::clock::{Clock, ManualClock};
///
/// let start = "2026-03-02T09:00:00Z".parse().unwrap();
/// let clock = ManualClock::starting_at(start);
/// let layer_clock = clock.clone();
///
/// clock.advance(chrono::Duration::minutes(5));
///
/// assert_eq!(layer_clock.now(), start + chrono::Duration::minutes(5));
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl ManualClock {
    /// Creates a clock that reads `start` until it is set or advanced.
    pub fn starting_at(start: DateTime<Utc>) -> Self {
        ManualClock {
            now: Arc::new(Mutex::new(start)),
        }
    }

    /// Sets the instant every clone reads.
    pub fn set(&self, now: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = now;
    }

    /// Moves the instant forward by `step` (backward when `step` is negative); leaves it
    /// unchanged when the result would be outside chrono's range of dates.
    pub fn advance(&self, step: chrono::Duration) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(moved) = now.checked_add_signed(step) {
            *now = moved;
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads across several resynchronisations: every instant lies between two readings of the
    /// wall clock taken around it, give or take a millisecond of counter drift.
    #[test]
    fn system_clock_follows_the_wall_clock() {
        let tolerance = TimeDelta::milliseconds(1);
        let started = std::time::Instant::now();
        let mut reads = 0;
        while started.elapsed() < SystemClock::RESYNC * 4 {
            let before = Utc::now();
            let now = SystemClock.now();
            let after = Utc::now();
            assert!(
                before - tolerance <= now && now <= after + tolerance,
                "{now} is not between {before} and {after}"
            );
            reads += 1;
            if reads % 64 == 0 {
                std::thread::sleep(Duration::from_millis(3));
            }
        }
        assert!(reads > 100, "only {reads} readings");
    }

    /// Counter time added to a reading gives the instant chrono's own addition gives, before
    /// midnight, at midnight and past it.
    #[test]
    fn wall_reading_adds_across_midnight() {
        let counter = quanta::Instant::now();
        for (wall, since_ms) in [
            ("2026-03-02T09:00:00.123456789Z", 99),
            ("2026-12-31T23:59:59.950000000Z", 49),
            ("2026-12-31T23:59:59.950000000Z", 50),
            ("2026-12-31T23:59:59.950000000Z", 80),
            ("2028-02-28T23:59:59.999999999Z", 1),
            ("2026-03-02T00:00:00Z", 0),
            ("2026-03-02T09:59:60.500000000Z", 0),
            ("2026-03-02T09:59:60.500000000Z", 20),
            ("2026-03-02T23:59:60.500000000Z", 20),
        ] {
            let wall: DateTime<Utc> = wall.parse().unwrap();
            let since = Duration::from_millis(since_ms);
            assert_eq!(
                WallReading::new(counter, wall).plus(since),
                Some(wall + since),
                "{wall} plus {since:?}"
            );
        }
    }

    #[test]
    fn each_thread_reads_the_wall_clock_itself() {
        let main = SystemClock.now();
        let other = std::thread::spawn(|| SystemClock.now())
            .join()
            .expect("the thread reads the clock");
        assert!(
            other >= main - TimeDelta::milliseconds(1),
            "{other} < {main}"
        );
        assert!((other - Utc::now()).abs() < TimeDelta::milliseconds(50));
    }
}
