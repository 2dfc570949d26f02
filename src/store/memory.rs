//! The in-process token store: exact within one process, with no database.
//!
//! Every scope key owns one mutex that guards the counters of all its windows, so a call checks
//! and charges minute to month under one lock and a rejected call changes nothing. Keys live in a
//! sharded map ([`dashmap`]): calls for different keys take different locks, and the hot path
//! never takes a lock shared by every key.
//!
//! Each window is a fixed calendar window from [`WindowKind::window_at`] in the request's time
//! zone. A counter starts from zero when a call falls after its window's end; the window bounds
//! are kept with the counter, so the calendar is only computed again at a window boundary. Keys
//! whose windows have all ended are dropped by a sweep that runs as new keys arrive (amortised
//! O(1) per new key) or on [`MemoryStore::purge_expired`], so memory follows the number of keys
//! active in the current windows, not every key ever seen.
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
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc, Weekday};
use chrono_tz::Tz;
use dashmap::DashMap;
use foldhash::fast::RandomState;
use futures_util::future::{self, BoxFuture};

use super::{ConsumeRequest, Decision, ScopeKey, StoreError, TokenStore, WindowUsage};
use crate::window::{Window, WindowKind};

/// The minimum number of new keys between two sweeps of expired keys.
const MIN_SWEEP_INTERVAL: usize = 4096;

/// A token store in process memory.
///
/// Exact under any number of concurrent tasks and threads of one process; counts are lost when
/// the process stops and are not shared with other processes (use the PostgreSQL store for that).
#[derive(Debug, Default)]
pub struct MemoryStore {
    /// Hashed with foldhash rather than SipHash: keys come from trusted ids, and hashing three
    /// strings per call is a large part of the store's cost.
    keys: DashMap<ScopeKey, Mutex<KeyCounters>, RandomState>,
    new_keys_since_sweep: AtomicUsize,
    /// How many new keys make the next sweep due: the number of keys left by the last sweep,
    /// at least [`MIN_SWEEP_INTERVAL`].
    sweep_interval: AtomicUsize,
}

/// The counters of every window kind of one scope key.
#[derive(Debug)]
struct KeyCounters {
    timezone: Tz,
    week_start: Weekday,
    slots: [Slot; WindowKind::ALL.len()],
}

/// The counter of one window kind: the window it counts and the units used in it.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    window: Option<Window>,
    used: u64,
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

    /// Drops every scope key whose windows have all ended at `now`.
    ///
    /// The store calls this by itself as new keys arrive; call it from a timer to free memory
    /// sooner when few new keys arrive.
    pub fn purge_expired(&self, now: DateTime<Utc>) {
        self.keys.retain(|_, counters| {
            let counters = counters.get_mut().unwrap_or_else(PoisonError::into_inner);
            counters.last_end().is_some_and(|end| end > now)
        });
        self.new_keys_since_sweep.store(0, Ordering::Relaxed);
        self.sweep_interval
            .store(self.keys.len(), Ordering::Relaxed);
    }

    fn decide(&self, request: &ConsumeRequest<'_>, charge: bool) -> Result<Decision, StoreError> {
        check_cost(request)?;
        let at = request.at.unwrap_or_else(Utc::now);
        if request.capacity.is_unlimited() {
            return Ok(Decision::Admitted {
                windows: Vec::new(),
            });
        }

        if let Some(entry) = self.keys.get(request.key) {
            let mut counters = entry.lock().unwrap_or_else(PoisonError::into_inner);
            return Ok(counters.decide(request, at, charge));
        }
        if !charge {
            let mut fresh = KeyCounters::new(request.timezone, request.week_start);
            return Ok(fresh.decide(request, at, false));
        }

        self.sweep_if_due(at);
        let mut entry = self
            .keys
            .entry(request.key.clone())
            .or_insert_with(|| Mutex::new(KeyCounters::new(request.timezone, request.week_start)));
        let counters = entry.get_mut().unwrap_or_else(PoisonError::into_inner);
        Ok(counters.decide(request, at, true))
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

/// Rejects a cost of 0 and a cost no window could ever hold.
///
/// A limit of 0 is not checked here: it switches the tool off for that window, so the call is
/// rejected with the window's reset as the retry time rather than failed for good.
fn check_cost(request: &ConsumeRequest<'_>) -> Result<(), StoreError> {
    if request.cost == 0 {
        return Err(StoreError::ZeroCost);
    }
    for (window, limit) in request.capacity.limits() {
        if limit > 0 && request.cost > limit {
            return Err(StoreError::CostExceedsLimit {
                window,
                limit,
                cost: request.cost,
            });
        }
    }
    Ok(())
}

impl KeyCounters {
    fn new(timezone: Tz, week_start: Weekday) -> Self {
        KeyCounters {
            timezone,
            week_start,
            slots: [Slot::default(); WindowKind::ALL.len()],
        }
    }

    /// Returns the end of the latest window that still contains a count.
    fn last_end(&self) -> Option<DateTime<Utc>> {
        self.slots
            .iter()
            .filter(|slot| slot.used > 0)
            .filter_map(|slot| slot.window.map(|window| window.end))
            .max()
    }

    fn decide(
        &mut self,
        request: &ConsumeRequest<'_>,
        at: DateTime<Utc>,
        charge: bool,
    ) -> Decision {
        let calendar_changed =
            self.timezone != request.timezone || self.week_start != request.week_start;
        if charge && calendar_changed {
            self.timezone = request.timezone;
            self.week_start = request.week_start;
        }

        // The counters as they stand at `at`: a slot whose window ended counts from zero. Peeks
        // work on this copy and never write back.
        let mut current = self.slots;
        for (kind, _) in request.capacity.limits() {
            let slot = &mut current[kind as usize];
            let stale = match slot.window {
                None => true,
                Some(window) => calendar_changed || at >= window.end,
            };
            if stale {
                let window = kind.window_at(at, request.timezone, request.week_start);
                if slot.window != Some(window) {
                    *slot = Slot {
                        window: Some(window),
                        used: 0,
                    };
                }
            }
            // An instant before the slot's window (a replay, or a clock that stepped back) is
            // counted in the newest window seen, so it can never free units already used.
        }

        let mut refusing: Option<(WindowKind, DateTime<Utc>)> = None;
        for (kind, limit) in request.capacity.limits() {
            let slot = &current[kind as usize];
            let end = slot.window.map_or(at, |window| window.end);
            if slot.used.saturating_add(request.cost) > limit
                && refusing.is_none_or(|(_, last)| end >= last)
            {
                refusing = Some((kind, end));
            }
        }

        if refusing.is_none() && charge {
            for (kind, _) in request.capacity.limits() {
                current[kind as usize].used += request.cost;
            }
        }
        if charge {
            self.slots = current;
        }

        let windows = request
            .capacity
            .limits()
            .map(|(kind, limit)| {
                let slot = &current[kind as usize];
                WindowUsage {
                    kind,
                    limit,
                    remaining: limit.saturating_sub(slot.used),
                    reset_at: slot.window.map_or(at, |window| window.end),
                }
            })
            .collect();
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
}
