//! The decision shared by every service of a layer: policy, allowed window, capacity, tokens.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc, Weekday};
use chrono_tz::Tz;
use foldhash::fast::RandomState;
use futures_util::FutureExt;
use moka::sync::Cache;

use super::config::{MissingPolicy, Settings};
use super::error::{Rejection, RejectionReason};
use super::identity::{Caller, CallerRef, IdentityError};
use super::indexed_report::IndexedReport;
use super::key::scope_key;
use crate::clock::{Clock, SystemClock};
use crate::error_chain::ErrorChain;
use crate::policy::{Policy, PolicySchedule, PolicySource, Scope};
use crate::report::{AvailabilityReport, Capacity, Closed, GeneratedReport, ReportOptions};
use crate::schedule::{ParseOptions, Schedule};
use crate::store::{
    ConsumeRequest, Decision, ScopeKey, StoreError, TokenStore, WindowUsage, Windows,
};
use crate::window::WindowKind;

/// A policy with what can be computed from it once: the key of its calls when that does not
/// depend on the workflow run, and its stored report, indexed.
#[derive(Debug)]
pub(crate) struct ResolvedPolicy {
    pub(crate) policy: Policy,
    key: Option<ScopeKey>,
    report: Option<Arc<IndexedReport>>,
}

impl ResolvedPolicy {
    fn new(policy: Policy, key: Option<ScopeKey>) -> Self {
        let report = policy
            .schedule
            .as_ref()
            .map(|schedule| Arc::new(IndexedReport::new(schedule.report.clone())));
        ResolvedPolicy {
            policy,
            key,
            report,
        }
    }
}

/// The maximum time to live that moka 0.12 accepts: 1000 years of 365 days.
const MAX_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(1000 * 365 * 24 * 3600);

/// A tenant and tool, the key of every cache.
type CacheKey = (Arc<str>, Arc<str>);

/// A policy in the shared cache (`None`: the source has none for the tenant and tool), with
/// when it was read.
#[derive(Debug, Clone)]
struct CachedPolicy {
    policy: Option<Arc<ResolvedPolicy>>,
    read_at: quanta::Instant,
}

impl CachedPolicy {
    fn read_now(policy: Option<Arc<ResolvedPolicy>>) -> Self {
        CachedPolicy {
            policy,
            read_at: quanta::Instant::now(),
        }
    }
}

/// The policy a service used last, so that a run of calls for one tenant and tool skips the
/// shared cache's lookup and its bookkeeping. Each service (each clone) has its own.
///
/// The memo is used only while the limiter's generation is the one it was read in, so no
/// invalidation happened since. It expires when the cache's time to live has passed since the
/// policy was read from its source, so it never keeps a policy longer than the shared cache.
#[derive(Debug, Clone, Default)]
pub(crate) struct PolicyMemo {
    entry: Option<MemoEntry>,
}

#[derive(Debug, Clone)]
struct MemoEntry {
    key: CacheKey,
    generation: u64,
    /// `None` when the time to live is too long to add to an instant.
    fresh_until: Option<quanta::Instant>,
    policy: Option<Arc<ResolvedPolicy>>,
}

/// The admitted-calls counter a service registered, with the recorder it registered it with.
///
/// A run of admitted calls then skips the registration, which costs a recorder's map lookup per
/// call. The counter is registered again when the recorder changes: one installed after the layer
/// was built, or one installed for a thread. Recorders are identified by address, so a recorder
/// for a thread that takes the address of an earlier, dropped one would receive no counts from a
/// service that outlived the earlier one.
#[derive(Debug, Clone, Default)]
pub(crate) struct AdmittedCounter {
    registered: Option<(usize, metrics::Counter)>,
}

impl AdmittedCounter {
    #[inline]
    fn increment(&mut self) {
        let recorder =
            metrics::with_recorder(|recorder| std::ptr::from_ref(recorder).cast::<()>() as usize);
        match &self.registered {
            Some((registered_with, counter)) if *registered_with == recorder => {
                counter.increment(1);
            }
            _ => {
                let counter = metrics::counter!("highway_ratelimit_admitted_total");
                counter.increment(1);
                self.registered = Some((recorder, counter));
            }
        }
    }
}

/// Returns whether two ids are the same text, comparing their pointers first.
fn same_id(left: &Arc<str>, right: &Arc<str>) -> bool {
    Arc::ptr_eq(left, right) || **left == **right
}

/// The clock of a layer. The system clock has a variant of its own, so that a decision reads
/// the processor's counter once for both the memo's expiry and the instant.
#[derive(Debug)]
enum LayerClock {
    System,
    Custom(Arc<dyn Clock>),
}

impl LayerClock {
    #[inline]
    fn now_at(&self, counter: quanta::Instant) -> DateTime<Utc> {
        match self {
            LayerClock::System => SystemClock::now_at(counter),
            LayerClock::Custom(clock) => clock.now(),
        }
    }

    fn now(&self) -> DateTime<Utc> {
        match self {
            LayerClock::System => SystemClock.now(),
            LayerClock::Custom(clock) => clock.now(),
        }
    }

    fn store_instant(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            LayerClock::System => SystemClock.store_instant(now),
            LayerClock::Custom(clock) => clock.store_instant(now),
        }
    }
}

/// A report computed again after the policy's own expired, or why that failed.
type RenderedReport = Result<Arc<IndexedReport>, Arc<str>>;

/// How far past the end of a report a rejection looks for the schedule's next opening when the
/// report has none left. A month is longer than the closures of a business calendar, such as a
/// holiday and its weekend or the days between Christmas and New Year.
const LOOKAHEAD_DAYS: u32 = 31;

/// The schedule's first opening after a report's end, found by computing the report that follows
/// it. Cached per tenant and tool, so that the calls rejected while the schedule is closed
/// compute it once.
#[derive(Debug, Clone, Copy)]
struct Lookahead {
    /// The `valid_until` of the report it follows.
    after: DateTime<Utc>,
    /// `None` when the schedule does not open within [`LOOKAHEAD_DAYS`], or cannot be computed.
    opening: Option<DateTime<Utc>>,
}

/// The outcome of a call's first check in its response future.
pub(crate) enum FirstCheck {
    /// Admitted or rejected, and counted in the metrics.
    Decided(Result<Admission, Rejection>),
    /// Rejected with a retry time that wait mode waits for. The call is checked again after
    /// this long.
    Wait(std::time::Duration),
}

/// The outcome of a call's check, before the tool is called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// The call was charged; every limited window after the charge, shortest first.
    Counted(Windows),
    /// The call was admitted without counting: no policy and [`MissingPolicy::Admit`], a
    /// disabled policy, or an unlimited capacity.
    Uncounted,
    /// The token store failed and the policy fails open.
    FailedOpen,
}

pub(crate) struct Limiter {
    policies: Arc<dyn PolicySource>,
    store: Arc<dyn TokenStore>,
    clock: LayerClock,
    pub(crate) settings: Settings,
    /// Whether the store finishes on its first poll, which allows [`Limiter::check_now`].
    store_is_immediate: bool,
    policy_cache: Cache<CacheKey, CachedPolicy, RandomState>,
    /// Grows twice at every invalidation, before and after the caches drop their entries. A
    /// service's memo read in an earlier generation is stale, and a policy read from the source
    /// while the generation moved is not kept in the cache.
    generation: AtomicU64,
    /// The last policy read for each tenant and tool, kept past the cache's time to live: what
    /// calls use while the policy source fails, so that a fail-open policy stays open during an
    /// outage longer than the time to live.
    last_known: Cache<CacheKey, Option<Arc<ResolvedPolicy>>, RandomState>,
    report_cache: Cache<CacheKey, RenderedReport, RandomState>,
    lookahead_cache: Cache<CacheKey, Lookahead, RandomState>,
}

// Written by hand because the policy source and the store need not implement `Debug`.
impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("clock", &self.clock)
            .field("settings", &self.settings)
            .field("cached_policies", &self.policy_cache.entry_count())
            .finish_non_exhaustive()
    }
}

impl Limiter {
    pub(crate) fn new(
        policies: Arc<dyn PolicySource>,
        store: Arc<dyn TokenStore>,
        clock: Option<Arc<dyn Clock>>,
        settings: Settings,
    ) -> Self {
        // moka panics on a time to live over 1000 years, which is forever for a cache.
        let cache_ttl = settings.cache_ttl.min(MAX_CACHE_TTL);
        let policy_cache = Cache::builder()
            .max_capacity(settings.cache_capacity)
            .time_to_live(cache_ttl)
            .support_invalidation_closures()
            .build_with_hasher(RandomState::default());
        let last_known = Cache::builder()
            .max_capacity(settings.cache_capacity)
            .build_with_hasher(RandomState::default());
        let report_cache = Cache::builder()
            .max_capacity(settings.cache_capacity)
            .time_to_live(cache_ttl)
            .build_with_hasher(RandomState::default());
        let lookahead_cache = Cache::builder()
            .max_capacity(settings.cache_capacity)
            .time_to_live(cache_ttl)
            .build_with_hasher(RandomState::default());
        Limiter {
            store_is_immediate: store.is_immediate(),
            policies,
            store,
            clock: clock.map_or(LayerClock::System, LayerClock::Custom),
            settings,
            policy_cache,
            generation: AtomicU64::new(0),
            last_known,
            report_cache,
            lookahead_cache,
        }
    }

    /// Drops the cached policy and report of `tool` for `tenant`; for the default tenant, of
    /// every tenant that fell back to it.
    pub(crate) fn invalidate(&self, tenant: &str, tool: &str) {
        tracing::debug!(tenant, tool, "rate limit policy invalidated");
        self.generation.fetch_add(1, Ordering::SeqCst);
        if tenant == crate::policy::DEFAULT_TENANT {
            let tool: Arc<str> = tool.into();
            // Fails only when the cache was built without invalidation closures, which it is not.
            let _ = self
                .policy_cache
                .invalidate_entries_if(move |(_, cached_tool), _| *cached_tool == tool);
        } else {
            self.policy_cache.invalidate(&(tenant.into(), tool.into()));
        }
        self.report_cache.invalidate(&(tenant.into(), tool.into()));
        self.lookahead_cache
            .invalidate(&(tenant.into(), tool.into()));
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn invalidate_all(&self) {
        tracing::debug!("every cached rate limit policy invalidated");
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.policy_cache.invalidate_all();
        self.report_cache.invalidate_all();
        self.lookahead_cache.invalidate_all();
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Checks a call and charges it. In wait mode, a rejection whose retry time is close enough
    /// is not counted and becomes [`FirstCheck::Wait`], so that the caller can give back the
    /// inner service's readiness while it sleeps, and then call [`check_again`](Self::check_again).
    /// Counts any other outcome in the metrics.
    pub(crate) async fn check_first(&self, caller: &Caller) -> FirstCheck {
        let first = self.check(caller).await;
        if let Err(rejection) = &first
            && let Some(wait) = self.wait_for(rejection)
        {
            tracing::trace!(?wait, "waiting for the rate limit to allow the call");
            return FirstCheck::Wait(wait);
        }
        count(&first);
        FirstCheck::Decided(first)
    }

    /// Checks a call again after wait mode slept, and charges it. Counts the call's final
    /// outcome in the metrics.
    pub(crate) async fn check_again(&self, caller: &Caller) -> Result<Admission, Rejection> {
        let result = self.check(caller).await;
        count(&result);
        result
    }

    /// Checks a call in order (allowed window, capacity, tokens) and charges it when all pass.
    /// Times the decision in the metrics.
    async fn check(&self, caller: &Caller) -> Result<Admission, Rejection> {
        let started = quanta::Instant::now();
        let now = self.clock.now_at(started);
        let result = self.decide(caller, now).await;
        metrics::histogram!("highway_ratelimit_decision_seconds")
            .record(started.elapsed().as_secs_f64());
        result.map_err(|rejection| self.with_settings(rejection))
    }

    /// Gives a rejection the layer's settings that decide what it announces.
    fn with_settings(&self, rejection: Rejection) -> Rejection {
        rejection.with_unavailable_retry_after(self.settings.unavailable_retry_after)
    }

    /// Checks a call and charges it without waiting, when all it needs is at hand: an
    /// immediate store, a cached policy and, for a scheduled policy, a valid report. Returns
    /// `None`, having charged nothing, when the call needs [`check_first`](Self::check_first).
    /// Counts the outcome in the metrics unless it is a rejection that wait mode waits out, which
    /// `check_first` and `check_again` then decide and count.
    #[inline]
    pub(crate) fn check_now(
        &self,
        caller: CallerRef<'_>,
        memo: &mut PolicyMemo,
        admitted: &mut AdmittedCounter,
    ) -> Option<Result<Admission, Rejection>> {
        if !self.store_is_immediate {
            return None;
        }
        // One counter reading serves the memo's expiry and, with the system clock, the instant.
        let counter = quanta::Instant::now();
        let cached = self.memoized_policy(caller, memo, counter)?;
        let now = self.clock.now_at(counter);

        let result = match cached {
            None => self.without_policy(caller, now),
            Some(resolved) if !resolved.policy.enabled => Ok(Admission::Uncounted),
            Some(resolved) => {
                let calendar = ready_calendar(resolved, now)?;
                self.charge_now(caller, resolved, &calendar, now)
            }
        }
        .map_err(|rejection| self.with_settings(rejection));
        // Not timed: two more counter readings would add a large share of the decision's cost.
        match &result {
            Ok(_) => admitted.increment(),
            Err(rejection) if self.would_wait(rejection) => {}
            Err(rejection) => count_rejection(rejection),
        }
        Some(result)
    }

    /// Returns the caller's policy from the service's memo when it is still fresh, or else from
    /// the shared cache and remembers it in the memo. `None` when the cache does not contain it.
    #[inline]
    fn memoized_policy<'m>(
        &self,
        caller: CallerRef<'_>,
        memo: &'m mut PolicyMemo,
        at: quanta::Instant,
    ) -> Option<&'m Option<Arc<ResolvedPolicy>>> {
        // Read before the cache, so that an invalidation racing with this call leaves a memo
        // that the next call finds stale.
        let generation = self.generation.load(Ordering::Acquire);
        let fresh = memo.entry.as_ref().is_some_and(|entry| {
            entry.generation == generation
                && entry.fresh_until.is_none_or(|until| at < until)
                && same_id(&entry.key.0, caller.tenant.shared())
                && same_id(&entry.key.1, caller.tool.shared())
        });
        if !fresh {
            let key = cache_key(caller);
            let cached = self.policy_cache.get(&key)?;
            memo.entry = Some(MemoEntry {
                key,
                generation,
                fresh_until: cached.read_at.checked_add(self.settings.cache_ttl),
                policy: cached.policy,
            });
        }
        memo.entry.as_ref().map(|entry| &entry.policy)
    }

    /// Returns the current instant by the layer's clock.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Returns whether wait mode would sleep for this rejection.
    pub(crate) fn would_wait(&self, rejection: &Rejection) -> bool {
        self.wait_for(rejection).is_some()
    }

    /// Returns how long wait mode sleeps before checking the rejected call again, `None` when it
    /// does not wait.
    fn wait_for(&self, rejection: &Rejection) -> Option<std::time::Duration> {
        let max_wait = self.settings.max_wait?;
        rejection
            .wait_until_retry()
            .filter(|wait| *wait <= max_wait)
    }

    async fn decide(&self, owned: &Caller, now: DateTime<Utc>) -> Result<Admission, Rejection> {
        let caller = owned.as_ref();
        let resolved = match self.resolve(owned).await {
            Ok(Some(resolved)) => resolved,
            Ok(None) => return self.without_policy(caller, now),
            Err(error) => {
                tracing::warn!(tenant = %caller.tenant, tool = %caller.tool, error = %ErrorChain(&error), "cannot read the rate limit policy");
                return Err(rejection(
                    caller,
                    now,
                    RejectionReason::PolicyUnavailable(error),
                ));
            }
        };
        let policy = &resolved.policy;
        if !policy.enabled {
            return Ok(Admission::Uncounted);
        }

        let scheduled;
        let calendar = match ready_calendar(&resolved, now) {
            Some(calendar) => calendar,
            None => {
                let (schedule, stored) = policy
                    .schedule
                    .as_ref()
                    .zip(resolved.report.as_ref())
                    .expect("only a scheduled policy waits for its report");
                scheduled = Box::pin(self.scheduled_calendar(policy, schedule, stored, now))
                    .await
                    .map_err(|reason| rejection(caller, now, reason))?;
                scheduled.borrow()
            }
        };
        if calendar.capacity.is_unlimited() {
            return Ok(Admission::Uncounted);
        }

        let key = call_key(caller, &resolved, now)?;
        let timeout = self.settings.store_timeout;
        let mut consume = self
            .store
            .consume(self.consume_request(caller, &key, &calendar, now));
        // An in-process store finishes on its first poll. Only a store that has to wait gets a
        // timer, boxed so that the timer's size and cost stay off the in-process path.
        let outcome = match (&mut consume).now_or_never() {
            Some(outcome) => outcome,
            None => {
                let timed = Box::pin(tokio::time::timeout(timeout, consume));
                timed.await.unwrap_or(Err(StoreError::Timeout(timeout)))
            }
        };
        self.conclude(outcome, caller, &resolved, calendar.report, &key, now)
    }

    /// Charges a call to an immediate store, on the calling thread.
    #[inline]
    fn charge_now(
        &self,
        caller: CallerRef<'_>,
        resolved: &ResolvedPolicy,
        calendar: &Calendar<'_>,
        now: DateTime<Utc>,
    ) -> Result<Admission, Rejection> {
        if calendar.capacity.is_unlimited() {
            return Ok(Admission::Uncounted);
        }
        let key = call_key(caller, resolved, now)?;
        let request = self.consume_request(caller, &key, calendar, now);
        let outcome = self.store.consume_now(request).unwrap_or_else(|| {
            Err(StoreError::Unavailable(
                "the token store reports itself immediate but did not decide on the calling thread"
                    .into(),
            ))
        });
        self.conclude(outcome, caller, resolved, calendar.report, &key, now)
    }

    #[inline]
    fn consume_request<'a>(
        &self,
        caller: CallerRef<'_>,
        key: &'a ScopeKey,
        calendar: &Calendar<'a>,
        now: DateTime<Utc>,
    ) -> ConsumeRequest<'a> {
        ConsumeRequest {
            key,
            cost: caller.cost.get(),
            capacity: calendar.capacity,
            timezone: calendar.timezone,
            week_start: calendar.week_start,
            // A store in this process has no clock better than the layer's, so it gets the
            // instant already read; a shared store may use its own (the database clock).
            at: if self.store_is_immediate {
                Some(now)
            } else {
                self.clock.store_instant(now)
            },
        }
    }

    /// Returns the outcome of a call for which no policy exists.
    fn without_policy(
        &self,
        caller: CallerRef<'_>,
        now: DateTime<Utc>,
    ) -> Result<Admission, Rejection> {
        match self.settings.missing_policy {
            MissingPolicy::Admit => Ok(Admission::Uncounted),
            MissingPolicy::Reject => Err(rejection(caller, now, RejectionReason::NoPolicy)),
        }
    }

    /// Turns the store's outcome into the call's, applying the policy's `fail_open`. A quota's
    /// retry time is moved to the next opening of `report`, the report that decided the call.
    fn conclude(
        &self,
        outcome: Result<Decision, StoreError>,
        caller: CallerRef<'_>,
        resolved: &ResolvedPolicy,
        indexed: Option<&IndexedReport>,
        key: &ScopeKey,
        now: DateTime<Utc>,
    ) -> Result<Admission, Rejection> {
        let report = indexed.map(IndexedReport::report);
        let reason = match outcome {
            Ok(Decision::Admitted { windows }) => return Ok(Admission::Counted(windows)),
            Ok(Decision::Rejected {
                window,
                retry_at,
                windows,
            }) => {
                let limit = windows
                    .iter()
                    .find(|usage| usage.kind == window)
                    .map_or(0, |usage| usage.limit);
                // A static limit of 0 stays 0 after its window resets, so no retry time would
                // help, whichever window refused.
                if report.is_none()
                    && let Some(switched_off) = windows.iter().find(|usage| usage.limit == 0)
                {
                    let reason = RejectionReason::Disabled {
                        window: switched_off.kind,
                    };
                    return Err(rejection(caller, now, reason));
                }
                // A window that resets outside working hours (a day limit resets at midnight)
                // has room again only when the schedule next opens.
                let reset = report
                    .filter(|report| retry_at < report.valid_until)
                    .and_then(|report| {
                        report.first_allowed_from(retry_at).or_else(|| {
                            let schedule = resolved.policy.schedule.as_ref()?;
                            self.opening_after(&resolved.policy, schedule, report)
                        })
                    })
                    .unwrap_or(retry_at);
                // The report's capacity may rise before then (a day limit narrowed to the
                // morning by `hours`), and the call may fit from that slot on. It may also be
                // lower than the cost when the schedule opens again, so the search goes on past
                // the reset, to the first instant at which the call fits.
                let retry_at = report
                    .and_then(|report| {
                        capacity_rise(report, &windows, caller.cost.get(), now, report.valid_until)
                    })
                    .unwrap_or(reset);
                RejectionReason::QuotaExhausted {
                    window,
                    limit,
                    cost: caller.cost.get(),
                    retry_at,
                    windows,
                }
            }
            Err(StoreError::CostExceedsLimit {
                window,
                limit,
                cost,
            }) if indexed.is_none_or(|indexed| indexed.never_admits(cost, now)) => {
                // A later window of the schedule may have a larger limit that is still too
                // small. Naming it shows the caller which limit to raise, because the limit in
                // force now would suggest that a smaller raise suffices.
                let (window, limit) = indexed
                    .and_then(|indexed| indexed.largest_later_limit(now))
                    .filter(|&(_, later_limit)| later_limit > limit)
                    .unwrap_or((window, limit));
                RejectionReason::CostExceedsLimit {
                    window,
                    limit,
                    cost,
                }
            }
            Err(StoreError::CostExceedsLimit {
                window,
                limit,
                cost,
            }) => cost_exceeds_limit(report, window, limit, cost, now),
            Err(error) if resolved.policy.fail_open => {
                tracing::warn!(%key, error = %ErrorChain(&error), "token store failed; admitting the call because the policy fails open");
                metrics::counter!("highway_ratelimit_store_errors_total", "outcome" => "admitted")
                    .increment(1);
                return Ok(Admission::FailedOpen);
            }
            Err(error) => {
                tracing::error!(%key, error = %ErrorChain(&error), "token store failed; rejecting the call because the policy fails closed");
                metrics::counter!("highway_ratelimit_store_errors_total", "outcome" => "rejected")
                    .increment(1);
                RejectionReason::StoreUnavailable(Arc::new(error))
            }
        };
        Err(rejection(caller, now, reason))
    }

    /// Returns the policy in force for the caller, from the cache or the policy source.
    async fn resolve(
        &self,
        caller: &Caller,
    ) -> Result<Option<Arc<ResolvedPolicy>>, Arc<StoreError>> {
        let cache_key = cache_key(caller.as_ref());
        if let Some(cached) = self.policy_cache.get(&cache_key) {
            return Ok(cached.policy);
        }

        // Read before the source, so that an invalidation during the read shows below.
        let generation = self.generation.load(Ordering::SeqCst);
        // Boxed because a miss is rare and its future is large. Concurrent misses may each read
        // the source; the last one read stays cached.
        let resolved = match Box::pin(self.load_policy(caller)).await {
            Ok(resolved) => resolved,
            Err(error) => {
                let Some(last) = self.last_known.get(&cache_key) else {
                    return Err(error);
                };
                // Cached again for a time to live, so that only one call per time to live waits
                // for the failing source.
                tracing::warn!(tenant = %caller.tenant, tool = %caller.tool, error = %ErrorChain(&error), "cannot read the rate limit policy; applying the last one read");
                self.cache_policy(cache_key, last.clone(), generation);
                return Ok(last);
            }
        };
        self.last_known.insert(cache_key.clone(), resolved.clone());
        self.cache_policy(cache_key, resolved.clone(), generation);
        Ok(resolved)
    }

    /// Caches a policy read from the source in `generation`, unless an invalidation ran since:
    /// the policy may then predate the change, and the next call reads the source again.
    fn cache_policy(&self, key: CacheKey, policy: Option<Arc<ResolvedPolicy>>, generation: u64) {
        self.policy_cache
            .insert(key.clone(), CachedPolicy::read_now(policy));
        // Checked after the insert: an invalidation that dropped the caches before the insert
        // has moved the generation by now, and one that moves it later drops the entry itself.
        if self.generation.load(Ordering::SeqCst) != generation {
            self.policy_cache.invalidate(&key);
        }
    }

    /// Reads the policy in force for the caller from the policy source, within the store
    /// timeout.
    async fn load_policy(
        &self,
        caller: &Caller,
    ) -> Result<Option<Arc<ResolvedPolicy>>, Arc<StoreError>> {
        let tenant = caller.tenant.as_str();
        let tool = caller.tool.as_str();
        let timeout = self.settings.store_timeout;
        let mut resolve = self.policies.resolve(tenant, tool);
        // A source in memory returns on its first poll and needs no timer, so the in-process
        // path runs on a runtime without one, as the store's consume does.
        let resolved = match (&mut resolve).now_or_never() {
            Some(resolved) => resolved,
            None => match tokio::time::timeout(timeout, resolve).await {
                Ok(resolved) => resolved,
                Err(_) => return Err(Arc::new(StoreError::Timeout(timeout))),
            },
        };
        let policy = resolved.map_err(Arc::new)?;
        tracing::debug!(
            tenant,
            tool,
            found = policy.is_some(),
            "rate limit policy loaded"
        );

        Ok(policy.map(|policy| {
            let key = match policy.scope {
                Scope::Workflow => None,
                Scope::Global | Scope::Tenant => scope_key(&policy, tenant, None),
            };
            Arc::new(ResolvedPolicy::new(policy, key))
        }))
    }

    /// Returns the capacity and calendar a scheduled policy applies at `now`, or why the call
    /// is not allowed then. `stored` is the schedule's stored report, indexed.
    async fn scheduled_calendar(
        &self,
        policy: &Policy,
        schedule: &PolicySchedule,
        stored: &Arc<IndexedReport>,
        now: DateTime<Utc>,
    ) -> Result<OwnedCalendar, RejectionReason> {
        let indexed = if schedule.report.covers(now) {
            stored.clone()
        } else {
            match self.rendered_report(policy, schedule, now) {
                Ok(report) => report,
                Err(message) if policy.fail_open => {
                    tracing::warn!(tenant = %policy.tenant, tool = %policy.tool, %message, "expired report cannot be computed again; applying its default capacity because the policy fails open");
                    let report = &schedule.report;
                    return Ok(OwnedCalendar {
                        capacity: report.default_capacity,
                        timezone: report.timezone,
                        week_start: report.week_start,
                        report: None,
                    });
                }
                Err(message) => return Err(RejectionReason::ScheduleUnavailable { message }),
            }
        };

        let report = indexed.report();
        let next_allowed = || {
            report
                .next_allowed(now)
                .or_else(|| self.opening_after(policy, schedule, report))
        };
        match report.closed_at(now) {
            None => Ok(OwnedCalendar::of_report(indexed, now)),
            Some(Closed::OutsideHours) => Err(RejectionReason::OutsideHours {
                next_allowed: next_allowed(),
            }),
            Some(Closed::BlockedDate(date)) => Err(RejectionReason::BlockedDate {
                date,
                next_allowed: next_allowed(),
            }),
            Some(Closed::Expired) => Err(RejectionReason::ScheduleUnavailable {
                message: format!(
                    "the report computed again is valid only until {}",
                    report.valid_until
                )
                .into(),
            }),
        }
    }

    /// Returns the schedule's first opening after the end of `report`, which has none left, within
    /// [`LOOKAHEAD_DAYS`]. A report covers a few days, so a closure that outlasts them (a
    /// Thursday holiday and the weekend after it) would otherwise leave a call without a retry
    /// time, as if the schedule never opened again.
    fn opening_after(
        &self,
        policy: &Policy,
        schedule: &PolicySchedule,
        report: &AvailabilityReport,
    ) -> Option<DateTime<Utc>> {
        let after = report.valid_until;
        let cache_key: CacheKey = (policy.tenant.as_str().into(), policy.tool.as_str().into());
        if let Some(cached) = self.lookahead_cache.get(&cache_key)
            && cached.after == after
        {
            return cached.opening;
        }

        let opening = generate_report(policy, schedule, after, LOOKAHEAD_DAYS)
            .ok()
            .and_then(|generated| generated.report.first_allowed_from(after));
        self.lookahead_cache
            .insert(cache_key, Lookahead { after, opening });
        opening
    }

    /// Returns the policy's report computed again from its definition at `now`, cached with
    /// failures, so a schedule that does not parse is not parsed again on every call.
    fn rendered_report(
        &self,
        policy: &Policy,
        schedule: &PolicySchedule,
        now: DateTime<Utc>,
    ) -> RenderedReport {
        let cache_key: CacheKey = (policy.tenant.as_str().into(), policy.tool.as_str().into());
        if let Some(cached) = self.report_cache.get(&cache_key) {
            match &cached {
                Ok(indexed) if !indexed.report().covers(now) => {
                    self.report_cache.invalidate(&cache_key);
                }
                _ => return cached,
            }
        }

        self.report_cache.get_with(cache_key, || {
            let rendered = render_report(policy, schedule, now, self.settings.report_days);
            match &rendered {
                Ok(indexed) => tracing::info!(
                    tenant = %policy.tenant, tool = %policy.tool, valid_until = %indexed.report().valid_until,
                    "availability report computed again for an instant it did not cover"
                ),
                Err(message) => tracing::error!(
                    tenant = %policy.tenant, tool = %policy.tool, %message,
                    "availability report cannot be computed again for an instant it does not cover"
                ),
            }
            rendered
        })
    }
}

/// Counts a decision in the metrics.
#[inline]
fn count(result: &Result<Admission, Rejection>) {
    match result {
        Ok(_) => metrics::counter!("highway_ratelimit_admitted_total").increment(1),
        Err(rejection) => count_rejection(rejection),
    }
}

/// Counts a rejected call in the metrics.
pub(crate) fn count_rejection(rejection: &Rejection) {
    let reason = rejection.reason().as_str();
    metrics::counter!("highway_ratelimit_rejected_total", "reason" => reason).increment(1);
}

fn cache_key(caller: CallerRef<'_>) -> CacheKey {
    (caller.tenant.shared().clone(), caller.tool.shared().clone())
}

fn rejection(caller: CallerRef<'_>, now: DateTime<Utc>, reason: RejectionReason) -> Rejection {
    Rejection::new(
        reason,
        Some(caller.tenant.shared().clone()),
        Some(caller.tool.shared().clone()),
        now,
    )
}

/// Returns the key a call is charged to: the policy's, or the caller's workflow run's.
fn call_key<'r>(
    caller: CallerRef<'_>,
    resolved: &'r ResolvedPolicy,
    now: DateTime<Utc>,
) -> Result<Cow<'r, ScopeKey>, Rejection> {
    if let Some(key) = &resolved.key {
        return Ok(Cow::Borrowed(key));
    }
    let run = caller.workflow_run.map(|run| run.as_str());
    scope_key(&resolved.policy, caller.tenant.as_str(), run)
        .map(Cow::Owned)
        .ok_or_else(|| {
            let missing = IdentityError::MissingWorkflowRun {
                tool: caller.tool.to_string(),
            };
            rejection(caller, now, RejectionReason::MissingIdentity(missing))
        })
}

/// Returns the rejection of a call whose cost is larger than the `window` limit in force at
/// `now`. A schedule's report can have larger limits in a later window, such as a day limit
/// narrowed to the morning by `hours` or one that differs by weekday. The call is then a quota
/// rejection until the first report window whose limits all admit the cost. It can never
/// succeed when no window before the report ends admits it, or when there is no report.
fn cost_exceeds_limit(
    report: Option<&AvailabilityReport>,
    window: WindowKind,
    limit: u64,
    cost: u64,
    now: DateTime<Utc>,
) -> RejectionReason {
    // No counts: the store rejects such a cost before it reads any, so only limits are judged.
    let fits_later =
        report.and_then(|report| capacity_rise(report, &[], cost, now, report.valid_until));
    match fits_later {
        Some(retry_at) => RejectionReason::QuotaExhausted {
            window,
            limit,
            cost,
            retry_at,
            windows: Windows::new(),
        },
        None => RejectionReason::CostExceedsLimit {
            window,
            limit,
            cost,
        },
    }
}

/// Returns the first instant after `now` and before `until` at which the capacity of `report`
/// has room for a call of `cost`, judged by the counts in `windows`: a counter that has reset by
/// then counts from zero. The capacity changes only where a report window starts and a counter
/// only where it resets, so those instants are the ones tried, in order, and the search stops at
/// the first that fits. A window kind that `windows` does not count is taken to have room, so the
/// instant is the earliest the call can succeed, not a promise.
fn capacity_rise(
    report: &AvailabilityReport,
    windows: &[WindowUsage],
    cost: u64,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    // At most one reset per window kind, in order, without allocating.
    let mut resets = [DateTime::<Utc>::MAX_UTC; WindowKind::ALL.len()];
    let mut reset_count = 0;
    for usage in windows.iter().take(resets.len()) {
        if now < usage.reset_at && usage.reset_at < until {
            resets[reset_count] = usage.reset_at;
            reset_count += 1;
        }
    }
    let resets = &mut resets[..reset_count];
    resets.sort_unstable();

    let fits = |capacity: &Capacity, at: DateTime<Utc>| {
        capacity.limits().all(|(kind, limit)| {
            let used = windows
                .iter()
                .find(|usage| usage.kind == kind && usage.reset_at > at)
                .map_or(0, |usage| usage.limit.saturating_sub(usage.remaining));
            used.checked_add(cost).is_some_and(|total| total <= limit)
        })
    };

    // Report windows are sorted and do not overlap, so their starts merge with the resets.
    let mut starts = report.windows[report.windows.partition_point(|window| window.start <= now)..]
        .iter()
        .take_while(|window| window.start < until)
        .peekable();
    let mut resets = resets.iter().copied().peekable();
    loop {
        let next_start = starts.peek().map(|window| window.start);
        let next_reset = resets.peek().copied();
        let (at, capacity) = match (next_start, next_reset) {
            (None, None) => return None,
            (Some(start), None) => (start, starts.next().map(|window| &window.capacity)),
            (Some(start), Some(reset)) if start <= reset => {
                (start, starts.next().map(|window| &window.capacity))
            }
            (_, Some(reset)) => {
                resets.next();
                (reset, report.capacity_at(reset))
            }
        };
        if capacity.is_some_and(|capacity| fits(capacity, at)) {
            return Some(at);
        }
    }
}

/// Returns the capacity and calendar of a policy at `now` when no await is needed: static
/// limits, or a report still valid and open at `now`. `None` when the report must be
/// consulted through the report cache.
fn ready_calendar(resolved: &ResolvedPolicy, now: DateTime<Utc>) -> Option<Calendar<'_>> {
    let policy = &resolved.policy;
    match &resolved.report {
        None => Some(Calendar {
            capacity: &policy.static_capacity,
            timezone: policy.timezone,
            week_start: policy.week_start,
            report: None,
        }),
        Some(indexed) if indexed.report().covers(now) && indexed.report().is_allowed(now) => {
            Some(Calendar::of_report(indexed, now))
        }
        Some(_) => None,
    }
}

/// The limits of a call and the calendar their windows follow, borrowed from a policy or a
/// report rather than copied, so that the decision moves a reference instead of every limit.
#[derive(Clone, Copy)]
struct Calendar<'a> {
    capacity: &'a Capacity,
    timezone: Tz,
    week_start: Weekday,
    /// The report the capacity was read from, in whose allowed windows a quota's retry time is
    /// placed. `None` for static limits and for a default capacity applied without a report.
    report: Option<&'a IndexedReport>,
}

impl Calendar<'_> {
    /// Returns the capacity and calendar of `indexed` at `now`, an instant inside its windows.
    fn of_report(indexed: &IndexedReport, now: DateTime<Utc>) -> Calendar<'_> {
        let report = indexed.report();
        Calendar {
            capacity: report.capacity_at(now).unwrap_or(&report.default_capacity),
            timezone: report.timezone,
            week_start: report.week_start,
            report: Some(indexed),
        }
    }
}

/// A [`Calendar`] that owns its capacity and report, for a report rendered again, which the
/// report cache may drop while the decision still needs it.
struct OwnedCalendar {
    capacity: Capacity,
    timezone: Tz,
    week_start: Weekday,
    report: Option<Arc<IndexedReport>>,
}

impl OwnedCalendar {
    fn of_report(indexed: Arc<IndexedReport>, now: DateTime<Utc>) -> OwnedCalendar {
        let calendar = Calendar::of_report(&indexed, now);
        OwnedCalendar {
            capacity: *calendar.capacity,
            timezone: calendar.timezone,
            week_start: calendar.week_start,
            report: Some(indexed),
        }
    }

    fn borrow(&self) -> Calendar<'_> {
        Calendar {
            capacity: &self.capacity,
            timezone: self.timezone,
            week_start: self.week_start,
            report: self.report.as_deref(),
        }
    }
}

fn render_report(
    policy: &Policy,
    schedule: &PolicySchedule,
    now: DateTime<Utc>,
    days: u32,
) -> RenderedReport {
    let generated = generate_report(policy, schedule, now, days)?;
    for warning in &generated.warnings {
        tracing::warn!(tenant = %policy.tenant, tool = %policy.tool, %warning, "availability report warning");
    }
    Ok(Arc::new(IndexedReport::new(Arc::new(generated.report))))
}

/// Parses the policy's schedule and computes its report for `days` from `from`, without logging
/// the warnings.
fn generate_report(
    policy: &Policy,
    schedule: &PolicySchedule,
    from: DateTime<Utc>,
    days: u32,
) -> Result<GeneratedReport, Arc<str>> {
    let options = ParseOptions {
        file_name: format!(
            "schedule of tool {} for tenant {}",
            policy.tool, policy.tenant
        )
        .into(),
        base_dir: None,
    };
    let parsed =
        Schedule::parse(&schedule.definition, &options).map_err(|error| error.to_string())?;
    let options = ReportOptions {
        resource: schedule.resource.clone(),
        from,
        days,
        generated_at: from,
    };
    AvailabilityReport::generate(&parsed, &options).map_err(|error| error.to_string().into())
}
