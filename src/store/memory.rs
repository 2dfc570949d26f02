//! The in-process token store: exact within one process, with no database.
//!
//! Keys live in a sharded map ([`dashmap`]). A call checks and charges the counters of all its
//! windows, minute to month, under the write lock of the shard that contains its key, so the
//! charge is one step and a rejected call changes nothing. Keys of different shards take
//! different locks, a lock is held for the few comparisons of one decision, and the hot path
//! never takes a lock shared by every key.
//!
//! Each window is a fixed calendar window from [`WindowKind::window_at`] in the request's time
//! zone. A counter starts from zero when a call falls after its window's end; the window bounds
//! are kept with the counter, so the calendar is only computed again at a window boundary. Each
//! counter also keeps the calendar (time zone and week start) of its window. When a key's calendar
//! changes, the old calendar's windows still in force are set aside with their counts, so switching
//! back finds them again, as the PostgreSQL store finds each window's row. Keys whose windows
//! have all ended are dropped by a sweep that runs as new keys arrive (amortised O(1) per new
//! key) or on [`MemoryStore::purge_expired`]. So memory follows the number of keys active in the
//! current windows, not every key ever seen. A key is dropped a minute after its windows end, so
//! that a call delayed between reading its clock and reaching the store still finds the count of
//! its window.
//!
//! ```
//! use highway_ratelimit::report::Capacity;
//! use highway_ratelimit::store::{ConsumeRequest, MemoryStore, ScopeKey, TokenStore};
//!
//! # tokio_test::block_on(async {
//! let store = MemoryStore::new();
//! let key = ScopeKey { tenant: "acme".into(), tool: "tools.email.send".into(), scope: "global".into() };
//! let capacity = Capacity { per_minute: Some(2), ..Capacity::UNLIMITED };
//! let request = ConsumeRequest {
//!     key: &key,
//!     cost: 1,
//!     capacity: &capacity,
//!     timezone: chrono_tz::Asia::Tokyo,
//!     week_start: chrono::Weekday::Mon,
//!     at: None,
//! };
//!
//! assert!(store.consume(request).await?.is_admitted());
//! assert!(store.consume(request).await?.is_admitted());
//! assert!(!store.consume(request).await?.is_admitted());
//! # Ok::<(), highway_ratelimit::store::StoreError>(())
//! # }).unwrap();
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, Utc, Weekday};
use chrono_tz::Tz;
use dashmap::DashMap;
use foldhash::fast::RandomState;
use futures_util::future::{self, BoxFuture};

use super::{ConsumeRequest, Decision, ScopeKey, StoreError, TokenStore, WindowUsage, Windows};
use crate::clock::{Clock, SystemClock};
use crate::window::{Window, WindowKind};

/// The minimum number of new keys between two sweeps of expired keys.
const MIN_SWEEP_INTERVAL: usize = 4096;

/// How long before the instant of a purge a key's windows must have ended for the purge to drop
/// it.
///
/// A caller reads its clock before it reaches the store, and the rate limit layer may wait for a
/// policy load or a report in between, so a call can reach the store after a purge at a later
/// instant. Without this lag the purge would drop a minute window that the call still counts
/// in, and the call would start that minute again from zero.
///
/// NOTE: a call delayed by more than this between reading its clock and reaching the store can
/// still find its key purged and count from zero.
const PURGE_LAG: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

/// A token store in process memory.
///
/// Exact under any number of concurrent tasks and threads of one process; counts are lost when
/// the process stops and are not shared with other processes (use the PostgreSQL store for that).
#[derive(Debug, Default)]
pub struct MemoryStore {
    /// Hashed with foldhash rather than SipHash: keys come from trusted ids, and hashing three
    /// strings per call is a large part of the store's cost.
    keys: DashMap<ScopeKey, KeyCounters, RandomState>,
    new_keys_since_sweep: AtomicUsize,
    /// How many new keys make the next sweep due: the number of keys left by the last sweep,
    /// at least [`MIN_SWEEP_INTERVAL`].
    sweep_interval: AtomicUsize,
}

/// The counters of every window kind of one scope key.
#[derive(Debug, Default, Clone)]
struct KeyCounters {
    /// The window of each kind that the key's latest call of that kind counted in.
    slots: [Slot; WindowKind::ALL.len()],
    /// Windows of other calendars that were still in force when a call of another calendar
    /// replaced them (a policy whose time zone or week start changed), with their counts. A call
    /// in their calendar finds its count again. Windows that ended are dropped when the key starts
    /// its next window.
    set_aside: Vec<(WindowKind, Slot)>,
}

/// The counter of one window kind: the window it counts, the calendar the window belongs to, and
/// the units used in it.
#[derive(Debug, Clone, Copy)]
struct Slot {
    window: Option<Window>,
    used: u64,
    timezone: Tz,
    week_start: Weekday,
}

impl Default for Slot {
    fn default() -> Self {
        Slot {
            window: None,
            used: 0,
            timezone: Tz::UTC,
            week_start: Weekday::Mon,
        }
    }
}

impl MemoryStore {
    /// Creates an empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns the number of scope keys held, expired ones not yet swept included.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Returns whether the store contains no scope key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Drops every scope key whose windows all ended a minute or more before `now`.
    ///
    /// The minute is for calls that read their clock before `now` but reach the store after
    /// the purge: they still count in windows that ended by `now`. The store calls this by itself
    /// as new keys arrive. Call it from a timer to free memory sooner when few new keys arrive.
    pub fn purge_expired(&self, now: DateTime<Utc>) {
        let ended_before = now.checked_sub_signed(PURGE_LAG).unwrap_or(now);
        self.keys
            .retain(|_, counters| counters.last_end().is_some_and(|end| end > ended_before));
        self.new_keys_since_sweep.store(0, Ordering::Relaxed);
        self.sweep_interval
            .store(self.keys.len(), Ordering::Relaxed);
    }

    #[inline]
    fn decide(&self, request: &ConsumeRequest<'_>, charge: bool) -> Result<Decision, StoreError> {
        let limits = Limits::of(request);
        limits.check_cost(request.cost)?;
        let at = request.at.unwrap_or_else(|| SystemClock.now());
        if limits.is_empty() {
            return Ok(Decision::Admitted {
                windows: Windows::new(),
            });
        }

        if !charge {
            return Ok(match self.keys.get(request.key) {
                Some(counters) => counters.peek(&limits, request, at),
                None => KeyCounters::default().peek(&limits, request, at),
            });
        }
        if let Some(mut counters) = self.keys.get_mut(request.key) {
            return Ok(counters.decide(&limits, request, at, true));
        }

        // A call with an instant of its own (a test, an example, a replay) may carry one ahead of
        // the clock: sweeping at it would drop windows that calls at the clock still count in.
        self.sweep_if_due(at.min(SystemClock.now()));
        let mut counters = self.keys.entry(request.key.clone()).or_default();
        Ok(counters.decide(&limits, request, at, true))
    }

    /// Sweeps expired keys once as many new keys arrived since the last sweep as that sweep left
    /// (at least [`MIN_SWEEP_INTERVAL`]), so the cost of a sweep is amortised over the insertions
    /// that made it due. Between sweeps the store grows to at most twice the keys the last sweep
    /// left, or by [`MIN_SWEEP_INTERVAL`] keys.
    fn sweep_if_due(&self, now: DateTime<Utc>) {
        let new_keys = self.new_keys_since_sweep.fetch_add(1, Ordering::Relaxed) + 1;
        let interval = self
            .sweep_interval
            .load(Ordering::Relaxed)
            .max(MIN_SWEEP_INTERVAL);
        if new_keys >= interval {
            tracing::trace!(keys = self.keys.len(), "sweeping expired rate limit keys");
            self.purge_expired(now);
        }
    }
}

/// Returns until when a window's count is kept after the window ends in its own calendar.
///
/// Another calendar's window of the same kind may start at the same instant and end later, when
/// the two calendars change their clocks differently inside it: the PostgreSQL store counts both
/// in one row, keyed by the start. For hour windows their ends differ by less than an hour, since
/// Lord Howe moves its clocks by 30 minutes. For longer windows they differ by less than two days,
/// since Samoa skipped a whole day in 2011. So the count is kept that much longer. Minute windows
/// end together in every calendar.
fn kept_until(kind: WindowKind, window: Window) -> DateTime<Utc> {
    let grace = match kind {
        WindowKind::Minute => chrono::TimeDelta::zero(),
        WindowKind::Hour => chrono::TimeDelta::hours(1),
        _ => chrono::TimeDelta::days(2),
    };
    window
        .end
        .checked_add_signed(grace)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The limited window kinds of a request with their limits, shortest first, read once from its
/// capacity.
struct Limits {
    len: usize,
    items: [(WindowKind, u64); WindowKind::ALL.len()],
}

impl Limits {
    #[inline]
    fn of(request: &ConsumeRequest<'_>) -> Limits {
        let mut limits = Limits {
            len: 0,
            items: [(WindowKind::Minute, 0); WindowKind::ALL.len()],
        };
        for kind in WindowKind::ALL {
            if let Some(limit) = request.capacity.get(kind) {
                limits.items[limits.len] = (kind, limit);
                limits.len += 1;
            }
        }
        limits
    }

    #[inline]
    fn as_slice(&self) -> &[(WindowKind, u64)] {
        &self.items[..self.len]
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Rejects a cost of 0 and a cost no window could ever hold.
    ///
    /// A limit of 0 is not checked here: it switches the tool off for that window, so the call
    /// is rejected with the window's reset as the retry time rather than failed for good.
    #[inline]
    fn check_cost(&self, cost: u64) -> Result<(), StoreError> {
        if cost == 0 {
            return Err(StoreError::ZeroCost);
        }
        for &(window, limit) in self.as_slice() {
            if limit > 0 && cost > limit {
                return Err(StoreError::CostExceedsLimit {
                    window,
                    limit,
                    cost,
                });
            }
        }
        Ok(())
    }
}

impl KeyCounters {
    /// Returns the end of the latest window that still contains a count.
    fn last_end(&self) -> Option<DateTime<Utc>> {
        let slots = self.slots.iter().zip(WindowKind::ALL);
        let set_aside = self.set_aside.iter().map(|(kind, slot)| (slot, *kind));
        slots
            .chain(set_aside)
            .filter(|(slot, _)| slot.used > 0)
            .filter_map(|(slot, kind)| slot.window.map(|window| kept_until(kind, window)))
            .max()
    }

    /// Replaces the slot of `kind` with `window` of the request's calendar.
    ///
    /// Windows are matched by their start, as the PostgreSQL store keys its rows. So a window that
    /// starts where the slot's does keeps the slot's count: the same window computed again, the
    /// same day under another week start, or the month of a zone whose summer time ends it an hour
    /// earlier. Otherwise the slot's window is set aside when it counts something and another
    /// calendar may still count in it (see [`kept_until`]), and `window` takes the count of a
    /// window set aside with its start.
    ///
    /// Returns whether it set a window aside.
    #[cold]
    #[inline(never)]
    fn start_window(
        &mut self,
        kind: WindowKind,
        window: Window,
        at: DateTime<Utc>,
        request: &ConsumeRequest<'_>,
    ) -> bool {
        let previous = std::mem::replace(
            &mut self.slots[kind as usize],
            Slot {
                window: Some(window),
                used: 0,
                timezone: request.timezone,
                week_start: request.week_start,
            },
        );
        if previous
            .window
            .is_some_and(|previous| previous.start == window.start)
        {
            self.slots[kind as usize].used = previous.used;
            return false;
        }
        self.set_aside.retain(|(other, slot)| {
            slot.window
                .is_some_and(|window| kept_until(*other, window) > at)
        });
        let set_aside = previous.used > 0
            && previous
                .window
                .is_some_and(|window| kept_until(kind, window) > at);
        if set_aside {
            self.set_aside.push((kind, previous));
        }
        if let Some(index) = self.set_aside.iter().position(|(other, slot)| {
            *other == kind && slot.window.is_some_and(|other| other.start == window.start)
        }) {
            self.slots[kind as usize].used = self.set_aside.swap_remove(index).1.used;
        }
        set_aside
    }

    /// Returns the decision a call at `at` would get, deciding on a copy of the counters.
    fn peek(&self, limits: &Limits, request: &ConsumeRequest<'_>, at: DateTime<Utc>) -> Decision {
        self.clone().decide(limits, request, at, false)
    }

    /// Brings the limited windows up to `at`, decides, and charges when `charge` is set and
    /// every window has room. Starting a window that began after a slot's window ended is no
    /// charge: the slot counted nothing in it.
    #[inline(always)]
    fn decide(
        &mut self,
        limits: &Limits,
        request: &ConsumeRequest<'_>,
        at: DateTime<Utc>,
        charge: bool,
    ) -> Decision {
        let mut refusing: Option<(WindowKind, DateTime<Utc>)> = None;
        // The counters before the first window this call starts, put back if it is rejected
        // after setting a window in force aside: a call that counts in no window must not move
        // the windows that later replays count in.
        let mut before: Option<KeyCounters> = None;
        let mut set_aside = false;
        for &(kind, limit) in limits.as_slice() {
            let slot = &self.slots[kind as usize];
            let same_calendar =
                slot.timezone == request.timezone && slot.week_start == request.week_start;
            let end = match slot.window {
                // An instant before the slot's window (a replay, or a clock that stepped back) is
                // counted in the newest window seen, in whatever calendar, so it can never free
                // units already used.
                Some(window) if at < window.end && (same_calendar || at < window.start) => {
                    window.end
                }
                _ => {
                    if charge && before.is_none() {
                        before = Some(self.clone());
                    }
                    let window = kind.window_at(at, request.timezone, request.week_start);
                    set_aside |= self.start_window(kind, window, at, request);
                    window.end
                }
            };
            let slot = &self.slots[kind as usize];
            let fits = slot
                .used
                .checked_add(request.cost)
                .is_some_and(|total| total <= limit);
            if !fits && refusing.is_none_or(|(_, last)| end >= last) {
                refusing = Some((kind, end));
            }
        }

        let charged = charge && refusing.is_none();
        let mut windows = Windows::with_capacity(limits.len);
        for &(kind, limit) in limits.as_slice() {
            let slot = &mut self.slots[kind as usize];
            if charged {
                slot.used = slot.used.saturating_add(request.cost);
            }
            windows.push(WindowUsage {
                kind,
                limit,
                remaining: limit.saturating_sub(slot.used),
                // Read in place: copying the whole `Option<Window>` to take its end made the
                // processor wait for the copy's stores before the load. The first loop gave
                // every limited slot a window, so `None` does not occur here.
                reset_at: match &slot.window {
                    Some(window) => window.end,
                    None => at,
                },
            });
        }
        if refusing.is_some()
            && set_aside
            && let Some(before) = before
        {
            *self = before;
        }
        match refusing {
            None => Decision::Admitted { windows },
            Some((window, retry_at)) => Decision::Rejected {
                window,
                retry_at,
                windows,
            },
        }
    }
}

impl TokenStore for MemoryStore {
    fn consume<'a>(
        &'a self,
        request: ConsumeRequest<'a>,
    ) -> BoxFuture<'a, Result<Decision, StoreError>> {
        Box::pin(future::ready(self.decide(&request, true)))
    }

    fn peek<'a>(
        &'a self,
        request: ConsumeRequest<'a>,
    ) -> BoxFuture<'a, Result<Decision, StoreError>> {
        Box::pin(future::ready(self.decide(&request, false)))
    }

    fn is_immediate(&self) -> bool {
        true
    }

    #[inline]
    fn consume_now(&self, request: ConsumeRequest<'_>) -> Option<Result<Decision, StoreError>> {
        Some(self.decide(&request, true))
    }
}
