//! Token leases: hot keys admitted in process, without a round trip per call.
//!
//! [`LeasedStore`] wraps a [`PostgresStore`]. Per scope key, a worker takes a batch of tokens from
//! PostgreSQL in one transaction, charged to every limited window alike and never more than any
//! window has left, and admits calls from it in process. It takes the next batch in the
//! background before the lease runs dry, and gives the unused tokens back when the lease's
//! windows end or the store shuts down.
//!
//! ```no_run
//! use highway_ratelimit::store::lease::{LeaseConfig, LeasedStore};
//! use highway_ratelimit::store::postgres::{PostgresConfig, PostgresStore};
//!
//! # async fn run() -> Result<(), highway_ratelimit::store::StoreError> {
//! let exact = PostgresStore::new(PostgresConfig::new("postgres://highway@127.0.0.1/highway"))?;
//! exact.migrate().await?;
//! let store = LeasedStore::new(exact, LeaseConfig::new().lease_when(|key| key.scope == "global"));
//! // … serve calls through `store` …
//! store.shutdown().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # The invariant
//!
//! A window's counter holds the admitted calls plus the tokens that leases hold. A take never
//! raises a counter above its limit, and a worker admits only tokens it took, each once, so the
//! calls admitted in a window never exceed its limit, whatever the number of workers, their
//! interleaving or their crashes. A lease is tied to the windows it was taken in: a call whose
//! instant lies outside any of them takes a new lease, and tokens never carry into the next
//! window.
//!
//! Tokens are lost, never duplicated. Some tokens stay charged to their windows until the windows
//! end: those a crashed worker held, those of a give-back that failed, and those of a take that
//! the server committed after its reply missed [`LeaseConfig::call_timeout`]. That is at most
//! [`LeaseConfig::max_batch`] tokens per key and worker each time, or the cost of one call when
//! larger. Keep the store's `statement_timeout` below
//! the lease `call_timeout` (the defaults are 2 s and 3 s), so that the server cancels a slow
//! take before the worker gives up on it.
//!
//! # What differs from the exact store
//!
//! - The store's clock ([`LeaseConfig::clock`], the system clock by default) decides a call's
//!   windows when the request carries no instant, not the database clock. Keep the workers'
//!   clocks synchronized: a skewed clock moves calls near a window boundary into the neighbouring
//!   window, but never over-admits.
//! - The remaining tokens a decision reports are those the database had not leased out at this
//!   worker's latest take, plus what this worker's lease holds. Other workers' leases and their
//!   calls since that take are not seen, so the figure is an upper bound that lags.
//! - A call may be rejected while other workers hold unused tokens: those come back when their
//!   windows end or they shut down. After a rejection because the database had no tokens left,
//!   the worker rejects that key's calls on its own for [`LeaseConfig::recheck_after`].
//! - [`TokenStore::peek`] reports what this worker's lease can admit, and otherwise what the
//!   database holds.
//!
//! The store runs on tokio: refills and the sweep of ended leases are tasks of the runtime of
//! the first consume. Both judge whether a lease's windows have ended by the store's clock, so a
//! [`ManualClock`](crate::clock::ManualClock) moved past a window's end lets the sweep give that
//! lease back without waiting for the wall clock.

mod config;
mod sql;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Instant;

use chrono::{DateTime, Utc, Weekday};
use chrono_tz::Tz;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;

pub use self::config::LeaseConfig;
use self::sql::{Grant, LeasedWindow, TakeRequest};
use crate::clock::Clock;
use crate::error_chain::ErrorChain;
use crate::store::postgres::PostgresStore;
use crate::store::{
    ConsumeRequest, Decision, ScopeKey, StoreError, TokenStore, WindowUsage, Windows,
};
use crate::window::WindowKind;

/// A [`TokenStore`] that admits calls from tokens leased in batches from a [`PostgresStore`].
///
/// Cloning is cheap: clones share the leases. Call [`LeasedStore::shutdown`] before the process
/// exits so that other workers can use the unused tokens. A store dropped without it loses them
/// for the rest of their windows, like a crash.
#[derive(Clone)]
pub struct LeasedStore {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for LeasedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeasedStore")
            .field("exact", &self.shared.exact)
            .field("config", &self.shared.config)
            .field("closed", &self.shared.closed.load(Ordering::Relaxed))
            .finish()
    }
}

struct Shared {
    exact: PostgresStore,
    config: LeaseConfig,
    slots: Mutex<HashMap<ScopeKey, Arc<Slot>>>,
    closed: AtomicBool,
    sweeper: OnceLock<()>,
}

/// The lease of one key and the lock that lets one take or give-back run at a time for it.
#[derive(Default)]
struct Slot {
    state: Mutex<SlotState>,
    exchange: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct SlotState {
    lease: Option<Lease>,
    refilling: bool,
    /// The size of the next lease.
    batch: u64,
    /// Calls admitted from leases since the latest take, and when that take was.
    calls_since_take: u64,
    last_take: Option<Instant>,
    /// Whether a call found the lease dry since the latest take.
    ran_dry: bool,
}

/// Tokens held for one key, tied to the windows they were taken in.
struct Lease {
    windows: Vec<LeasedWindow>,
    timezone: Tz,
    week_start: Weekday,
    available: u64,
    /// Whether the calls carry their own instants; otherwise the store's clock decides.
    explicit_clock: bool,
    /// The latest instant of a call served from this lease.
    latest_at: DateTime<Utc>,
    /// Until when calls that need more than `available` and more than `exhausted_room` are
    /// rejected without asking the database.
    exhausted_until: Option<Instant>,
    /// The units this worker could still use in the fullest window at the take that found a
    /// window short: the lease's own units plus those no worker had leased. A call that needs no
    /// more asks the database again.
    exhausted_room: u64,
}

/// A call's limited windows, computed at its instant.
struct CallPlan {
    windows: Vec<LeasedWindow>,
    timezone: Tz,
    week_start: Weekday,
    at: DateTime<Utc>,
    explicit_clock: bool,
    cost: u64,
}

impl LeasedStore {
    /// Creates a store that leases tokens from `exact`, whose migrations must include the lease
    /// functions ([`PostgresStore::migrate`] applies them).
    pub fn new(exact: PostgresStore, config: LeaseConfig) -> Self {
        LeasedStore {
            shared: Arc::new(Shared {
                exact,
                config,
                slots: Mutex::new(HashMap::new()),
                closed: AtomicBool::new(false),
                sweeper: OnceLock::new(),
            }),
        }
    }

    /// Returns the exact store the leases are taken from.
    pub fn exact(&self) -> &PostgresStore {
        &self.shared.exact
    }

    /// Returns the tokens this worker holds for `key` and has not admitted yet.
    pub fn held(&self, key: &ScopeKey) -> u64 {
        let slot = lock(&self.shared.slots).get(key).cloned();
        slot.and_then(|slot| {
            lock(&slot.state)
                .lease
                .as_ref()
                .map(|lease| lease.available)
        })
        .unwrap_or(0)
    }

    /// Returns the size of the next lease of `key`, in tokens, before the share cap near a limit.
    pub fn batch_size(&self, key: &ScopeKey) -> u64 {
        let slot = lock(&self.shared.slots).get(key).cloned();
        slot.map_or(self.shared.config.min_batch, |slot| lock(&slot.state).batch)
    }

    /// Gives back every lease's unused tokens and returns how many it gave back. Later calls go to
    /// the exact store, one round trip each.
    ///
    /// The give-backs run concurrently, as many at once as the pool has connections. Once one
    /// fails, the leases not yet given back are skipped, so that a database that replies to
    /// nothing holds the shutdown for about one call timeout, not one per lease.
    ///
    /// # Errors
    ///
    /// The first error of a give-back. The tokens of a failed or skipped give-back stay charged
    /// until their windows end.
    pub async fn shutdown(&self) -> Result<u64, StoreError> {
        self.shared.closed.store(true, Ordering::SeqCst);
        let slots: Vec<(ScopeKey, Arc<Slot>)> = lock(&self.shared.slots)
            .iter()
            .map(|(key, slot)| (key.clone(), slot.clone()))
            .collect();
        let concurrency = self.shared.exact.pool().status().max_size.max(1);
        let failed = AtomicBool::new(false);
        let skipped = AtomicU64::new(0);

        let results: Vec<Result<u64, StoreError>> = futures_util::stream::iter(slots)
            .map(|(key, slot)| {
                let (failed, skipped) = (&failed, &skipped);
                async move {
                    if failed.load(Ordering::Acquire) {
                        skipped.fetch_add(1, Ordering::Relaxed);
                        return Ok(0);
                    }
                    let result = self.give_back_at_shutdown(&key, &slot).await;
                    if result.is_err() {
                        failed.store(true, Ordering::Release);
                    }
                    result
                }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;

        let skipped = skipped.into_inner();
        if skipped > 0 {
            tracing::warn!(
                keys = skipped,
                "skipped the give-back of leases after a give-back failed; their tokens stay charged until their windows end"
            );
        }
        results.into_iter().sum()
    }

    /// Gives back the lease of `key` at shutdown, and returns how many tokens it gave back.
    async fn give_back_at_shutdown(&self, key: &ScopeKey, slot: &Slot) -> Result<u64, StoreError> {
        // A take of the key may still hold the exchange lock, so the wait is bounded like a round
        // trip.
        let timeout = self.shared.config.call_timeout;
        let _exchange = tokio::time::timeout(timeout, slot.exchange.lock())
            .await
            .map_err(|_| StoreError::Timeout(timeout))?;
        let Some(lease) = lock(&slot.state).lease.take() else {
            return Ok(0);
        };
        let at = if lease.explicit_clock {
            lease.latest_at
        } else {
            self.shared.config.clock.now()
        };
        let tokens = lease.available;
        self.shared.give_back(key, lease, at).await?;
        Ok(tokens)
    }

    async fn consume_leased(&self, request: ConsumeRequest<'_>) -> Result<Decision, StoreError> {
        let shared = &self.shared;
        if shared.closed.load(Ordering::Acquire) || !shared.config.leases(request.key) {
            return shared.exact.consume(request).await;
        }
        let Some(plan) = CallPlan::new(&request, &*shared.config.clock)? else {
            // No limited window, or a limit of 0: the exact store decides without a lease.
            return shared.exact.consume(request).await;
        };
        self.start_sweeper();

        let slot = shared.slot(request.key);
        if let Some(decision) = shared.serve(request.key, &slot, &plan, false) {
            return Ok(decision);
        }

        let timeout = shared.config.call_timeout;
        let exchange = tokio::time::timeout(timeout, slot.exchange.lock())
            .await
            .map_err(|_| StoreError::Timeout(timeout))?;
        if shared.closed.load(Ordering::Acquire) {
            drop(exchange);
            return shared.exact.consume(request).await;
        }
        if let Some(decision) = shared.serve(request.key, &slot, &plan, true) {
            return Ok(decision);
        }
        let decision = shared.take_for(request.key, &slot, &plan).await;
        drop(exchange);
        decision
    }

    async fn peek_leased(&self, request: ConsumeRequest<'_>) -> Result<Decision, StoreError> {
        let shared = &self.shared;
        if shared.closed.load(Ordering::Acquire) || !shared.config.leases(request.key) {
            return shared.exact.peek(request).await;
        }
        let Some(plan) = CallPlan::new(&request, &*shared.config.clock)? else {
            return shared.exact.peek(request).await;
        };
        let slot = lock(&shared.slots).get(request.key).cloned();
        if let Some(slot) = slot {
            let state = lock(&slot.state);
            if let Some(lease) = state.lease.as_ref().filter(|lease| lease.covers(&plan))
                && lease.available >= plan.cost
            {
                return Ok(Decision::Admitted {
                    windows: lease.usage(),
                });
            }
        }
        shared.exact.peek(request).await
    }

    /// Starts the task that gives back the leases of ended windows, once per store.
    fn start_sweeper(&self) {
        self.shared.sweeper.get_or_init(|| {
            let shared = Arc::downgrade(&self.shared);
            let interval = self.shared.config.sweep_interval;
            tokio::spawn(sweep(shared, interval));
        });
    }
}

impl TokenStore for LeasedStore {
    fn consume<'a>(
        &'a self,
        request: ConsumeRequest<'a>,
    ) -> BoxFuture<'a, Result<Decision, StoreError>> {
        Box::pin(self.consume_leased(request))
    }

    fn peek<'a>(
        &'a self,
        request: ConsumeRequest<'a>,
    ) -> BoxFuture<'a, Result<Decision, StoreError>> {
        Box::pin(self.peek_leased(request))
    }
}

impl Shared {
    fn slot(&self, key: &ScopeKey) -> Arc<Slot> {
        let mut slots = lock(&self.slots);
        if let Some(slot) = slots.get(key) {
            return slot.clone();
        }
        let slot = Arc::new(Slot::default());
        lock(&slot.state).batch = self.config.min_batch;
        slots.insert(key.clone(), slot.clone());
        slot
    }

    /// Admits the call from the lease when it covers the call's windows and holds enough tokens,
    /// or rejects it while the database is known to have too few. Returns `None` when the call
    /// needs a take.
    ///
    /// `waited` is true when the call already waited for its key's exchange lock, so that a dry
    /// lease is counted once.
    fn serve(
        self: &Arc<Self>,
        key: &ScopeKey,
        slot: &Arc<Slot>,
        plan: &CallPlan,
        waited: bool,
    ) -> Option<Decision> {
        let mut state = lock(&slot.state);
        let state = &mut *state;
        let lease = state.lease.as_mut().filter(|lease| lease.covers(plan))?;

        if lease.available >= plan.cost {
            lease.available -= plan.cost;
            lease.latest_at = lease.latest_at.max(plan.at);
            let decision = Decision::Admitted {
                windows: lease.usage(),
            };
            let low = lease.available < state.batch.div_ceil(2).max(plan.cost);
            let usable = lease
                .exhausted_until
                .is_none_or(|until| until <= Instant::now());
            state.calls_since_take += 1;
            if low && usable && !state.refilling && !self.closed.load(Ordering::Acquire) {
                state.refilling = true;
                tokio::spawn(refill(self.clone(), key.clone(), slot.clone()));
            }
            return Some(decision);
        }

        if plan.cost > lease.exhausted_room
            && lease
                .exhausted_until
                .is_some_and(|until| until > Instant::now())
        {
            return Some(lease.rejection(plan.cost));
        }
        if !waited {
            state.ran_dry = true;
        }
        None
    }

    /// Takes tokens for a call the lease cannot serve, with the key's exchange lock held, and
    /// decides the call.
    async fn take_for(
        self: &Arc<Self>,
        key: &ScopeKey,
        slot: &Arc<Slot>,
        plan: &CallPlan,
    ) -> Result<Decision, StoreError> {
        // A lease of other windows (or limits) is given back before the new one is taken.
        let stale = {
            let mut state = lock(&slot.state);
            match &state.lease {
                Some(lease) if !lease.covers(plan) => state.lease.take(),
                _ => None,
            }
        };
        if let Some(stale) = stale
            && let Err(error) = self.give_back(key, stale, plan.at).await
        {
            tracing::warn!(%key, error = %ErrorChain(&error), "could not give back the tokens of an ended lease; they stay charged until their windows end");
        }

        let (held, want) = {
            let mut state = lock(&slot.state);
            let held = state.lease.as_ref().map_or(0, |lease| lease.available);
            let want = self
                .next_batch(&mut state)
                .max(plan.cost)
                .saturating_sub(held);
            (held, want)
        };
        let windows = match lock(&slot.state).lease.as_ref() {
            Some(lease) => lease.windows.clone(),
            None => plan.windows.clone(),
        };
        let grant = sql::take(
            &self.exact,
            TakeRequest {
                key,
                want,
                min: plan.cost.saturating_sub(held),
                held,
                share: self.config.share,
                windows: &windows,
                timezone: plan.timezone,
                week_start: plan.week_start,
                explicit_instant: plan.explicit_clock,
            },
            self.config.call_timeout,
        )
        .await?;
        tracing::debug!(%key, want, granted = grant.granted, "took a token lease");

        let mut state = lock(&slot.state);
        let lease = self.store_grant(&mut state, plan, grant);
        if lease.available < plan.cost {
            return Ok(lease.rejection(plan.cost));
        }
        lease.available -= plan.cost;
        lease.latest_at = lease.latest_at.max(plan.at);
        let windows = lease.usage();
        state.calls_since_take += 1;
        Ok(Decision::Admitted { windows })
    }

    /// Adds a grant to the lease of its windows, creating the lease when there is none, and marks
    /// the lease exhausted when the database granted nothing.
    fn store_grant<'s>(
        &self,
        state: &'s mut SlotState,
        plan: &CallPlan,
        grant: Grant,
    ) -> &'s mut Lease {
        let lease = state.lease.get_or_insert_with(|| Lease {
            windows: grant.windows.clone(),
            timezone: plan.timezone,
            week_start: plan.week_start,
            available: 0,
            explicit_clock: plan.explicit_clock,
            latest_at: plan.at,
            exhausted_until: None,
            exhausted_room: 0,
        });
        lease.absorb(grant, plan.cost, self.config.recheck_after);
        lease
    }

    /// Returns the size of the next lease, from the rate of calls since the latest take, and
    /// starts counting again.
    fn next_batch(&self, state: &mut SlotState) -> u64 {
        let now = Instant::now();
        let previous = state.batch.max(self.config.min_batch);
        let mut batch = match state.last_take {
            Some(last) => {
                // Over less than `lease_ahead`, the rate is measured over `lease_ahead`: a short
                // burst does not make the next lease larger than the burst.
                let ahead = self.config.lease_ahead.as_secs_f64();
                let elapsed = now.duration_since(last).as_secs_f64().max(ahead).max(1e-6);
                let rate = state.calls_since_take as f64 / elapsed;
                (rate * ahead).ceil() as u64
            }
            None => previous,
        };
        // A lease that ran dry before its refill arrived was too small: grow at least twofold.
        // Otherwise shrink by half at most per take, so that a pause does not reset the size.
        if state.ran_dry {
            batch = batch.max(previous.saturating_mul(2));
        } else {
            batch = batch.max(previous / 2);
        }
        let batch = batch.clamp(self.config.min_batch, self.config.max_batch);

        state.batch = batch;
        state.calls_since_take = 0;
        state.last_take = Some(now);
        state.ran_dry = false;
        batch
    }

    /// Gives a lease's unused tokens back to its windows still open at `at`.
    async fn give_back(
        &self,
        key: &ScopeKey,
        lease: Lease,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if lease.available == 0 {
            return Ok(());
        }
        tracing::debug!(%key, tokens = lease.available, "giving back a token lease");
        sql::give_back(
            &self.exact,
            key,
            lease.available,
            &lease.windows,
            at,
            self.config.call_timeout,
        )
        .await
    }
}

/// Tops up the lease of `key` before it runs dry, in the background.
async fn refill(shared: Arc<Shared>, key: ScopeKey, slot: Arc<Slot>) {
    let exchange = slot.exchange.lock().await;
    let request = {
        let mut state = lock(&slot.state);
        let now = shared.config.clock.now();
        let current = state.lease.as_ref().filter(|lease| {
            lease.available < state.batch.div_ceil(2).max(1)
                && (lease.explicit_clock || lease.windows.iter().all(|w| now < w.end))
        });
        match current {
            Some(lease) if !shared.closed.load(Ordering::Acquire) => {
                let windows = lease.windows.clone();
                let (timezone, week_start, explicit_instant, held) = (
                    lease.timezone,
                    lease.week_start,
                    lease.explicit_clock,
                    lease.available,
                );
                let want = shared.next_batch(&mut state).saturating_sub(held).max(1);
                Some((windows, timezone, week_start, explicit_instant, held, want))
            }
            _ => None,
        }
    };
    let Some((windows, timezone, week_start, explicit_instant, held, want)) = request else {
        lock(&slot.state).refilling = false;
        return;
    };

    let result = sql::take(
        &shared.exact,
        TakeRequest {
            key: &key,
            want,
            min: 0,
            held,
            share: shared.config.share,
            windows: &windows,
            timezone,
            week_start,
            explicit_instant,
        },
        shared.config.call_timeout,
    )
    .await;
    let mut state = lock(&slot.state);
    state.refilling = false;
    match result {
        Ok(grant) => {
            tracing::debug!(%key, want, granted = grant.granted, "refilled a token lease");
            match state.lease.as_mut() {
                // The exchange lock was held throughout, so the lease is the one refilled.
                Some(lease)
                    if lease
                        .windows
                        .iter()
                        .map(|w| w.start)
                        .eq(windows.iter().map(|w| w.start)) =>
                {
                    lease.absorb(grant, 1, shared.config.recheck_after);
                }
                _ => {
                    tracing::error!(%key, granted = grant.granted, "a refilled lease vanished; its tokens stay charged until their windows end")
                }
            }
        }
        Err(error) => {
            tracing::warn!(%key, error = %ErrorChain(&error), "could not refill a token lease");
        }
    }
    drop(state);
    drop(exchange);
}

/// Gives back, every `interval`, the leases whose windows have ended by the store's clock, until
/// the store is dropped or shut down.
async fn sweep(shared: Weak<Shared>, interval: std::time::Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if shared.closed.load(Ordering::Acquire) {
            return;
        }

        let now = shared.config.clock.now();
        let slots: Vec<(ScopeKey, Arc<Slot>)> = {
            let mut slots = lock(&shared.slots);
            // Forget idle keys. A caller holding a slot keeps its count above 1, and callers get
            // slots under this lock, so no lease is left in a forgotten slot.
            slots.retain(|_, slot| {
                Arc::strong_count(slot) > 1
                    || lock(&slot.state).lease.is_some()
                    || lock(&slot.state).refilling
            });
            slots
                .iter()
                .map(|(key, slot)| (key.clone(), slot.clone()))
                .collect()
        };
        for (key, slot) in slots {
            let Ok(_exchange) = slot.exchange.try_lock() else {
                continue;
            };
            let ended = {
                let mut state = lock(&slot.state);
                match &state.lease {
                    Some(lease)
                        if !lease.explicit_clock && lease.windows.iter().any(|w| w.end <= now) =>
                    {
                        state.lease.take()
                    }
                    _ => None,
                }
            };
            if let Some(lease) = ended
                && let Err(error) = shared.give_back(&key, lease, now).await
            {
                tracing::warn!(%key, error = %ErrorChain(&error), "could not give back the tokens of an ended lease; they stay charged until their windows end");
            }
        }
    }
}

impl CallPlan {
    /// Collects the call's limited windows at its instant, or `None` when the call needs no lease:
    /// no window is limited, or one has a limit of 0.
    fn new(request: &ConsumeRequest<'_>, clock: &dyn Clock) -> Result<Option<Self>, StoreError> {
        if request.cost == 0 {
            return Err(StoreError::ZeroCost);
        }
        let explicit_clock = request.at.is_some();
        let at = request.at.unwrap_or_else(|| clock.now());

        let mut windows = Vec::new();
        let mut switched_off = false;
        for kind in WindowKind::ALL {
            let Some(limit) = request.capacity.get(kind) else {
                continue;
            };
            // A count is a BIGINT in the database, so a larger limit acts as `i64::MAX`, as in the
            // exact store. The lease then matches the limit the database reports.
            let limit = limit.min(i64::MAX as u64);
            if limit == 0 {
                switched_off = true;
                continue;
            }
            if request.cost > limit {
                return Err(StoreError::CostExceedsLimit {
                    window: kind,
                    limit,
                    cost: request.cost,
                });
            }
            let window = kind.window_at(at, request.timezone, request.week_start);
            windows.push(LeasedWindow {
                kind,
                limit,
                start: window.start,
                end: window.end,
                unleased: limit,
            });
        }
        if switched_off || windows.is_empty() {
            return Ok(None);
        }
        Ok(Some(CallPlan {
            windows,
            timezone: request.timezone,
            week_start: request.week_start,
            at,
            explicit_clock,
            cost: request.cost,
        }))
    }
}

impl Lease {
    /// Returns whether the lease was taken for the call's calendar, window kinds and limits, and
    /// every window of it contains the call's instant.
    fn covers(&self, plan: &CallPlan) -> bool {
        self.timezone == plan.timezone
            && self.week_start == plan.week_start
            && self.explicit_clock == plan.explicit_clock
            && self.windows.len() == plan.windows.len()
            && self.windows.iter().zip(&plan.windows).all(|(held, call)| {
                held.kind == call.kind
                    && held.limit == call.limit
                    && held.start <= plan.at
                    && plan.at < held.end
            })
    }

    /// Adds a grant for these windows, and marks the lease exhausted when some window had fewer
    /// tokens left than `needed` beyond what the lease holds.
    fn absorb(&mut self, grant: Grant, needed: u64, recheck_after: std::time::Duration) {
        self.available += grant.granted;
        self.windows = grant.windows;
        let room = self
            .windows
            .iter()
            .map(|window| window.unleased.saturating_add(self.available))
            .min()
            .unwrap_or(u64::MAX);
        let short = room < needed;
        self.exhausted_until = short.then(|| Instant::now() + recheck_after);
        self.exhausted_room = room;
    }

    /// Returns every window's state as this worker sees it: the tokens nobody had leased at the
    /// latest take plus those this lease holds.
    fn usage(&self) -> Windows {
        self.windows
            .iter()
            .map(|window| WindowUsage {
                kind: window.kind,
                limit: window.limit,
                remaining: window
                    .unleased
                    .saturating_add(self.available)
                    .min(window.limit),
                reset_at: window.end,
            })
            .collect()
    }

    /// Returns the rejection of a call of `cost`: among the windows without room, the one that
    /// resets last refuses.
    fn rejection(&self, cost: u64) -> Decision {
        let windows = self.usage();
        let refusing = windows
            .iter()
            .filter(|usage| usage.remaining < cost)
            .max_by_key(|usage| usage.reset_at)
            .or_else(|| windows.iter().min_by_key(|usage| usage.remaining))
            .copied();
        let (window, retry_at) = refusing
            .map(|usage| (usage.kind, usage.reset_at))
            .unwrap_or((WindowKind::Minute, self.latest_at));
        Decision::Rejected {
            window,
            retry_at,
            windows,
        }
    }
}

/// Locks a mutex, recovering the data of a thread that panicked while holding it: every update
/// of the lease state is a single step that leaves it consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
