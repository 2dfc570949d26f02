//! The decision shared by every service of a layer: policy, allowed window, capacity, tokens.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc, Weekday};
use chrono_tz::Tz;
use futures_util::FutureExt;
use moka::future::Cache;

use super::config::{MissingPolicy, Settings};
use super::error::{Rejection, RejectionReason};
use super::identity::{Caller, IdentityError};
use super::key::scope_key;
use crate::clock::Clock;
use crate::policy::{Policy, PolicySchedule, PolicySource, Scope};
use crate::report::{AvailabilityReport, Capacity, Closed, ReportOptions};
use crate::schedule::{ParseOptions, Schedule};
use crate::store::{ConsumeRequest, Decision, ScopeKey, StoreError, TokenStore, WindowUsage};

/// A policy with what can be computed from it once: the key of its calls when that does not
/// depend on the workflow run.
#[derive(Debug)]
pub(crate) struct ResolvedPolicy {
    pub(crate) policy: Policy,
    key: Option<ScopeKey>,
}

/// A tenant and tool, the key of both caches.
type CacheKey = (Arc<str>, Arc<str>);

/// A report computed again after the policy's own expired, or why that failed.
type RenderedReport = Result<Arc<AvailabilityReport>, Arc<str>>;

/// The outcome of a call's check, before the tool is called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// The call was charged; every limited window after the charge, shortest first.
    Counted(Vec<WindowUsage>),
    /// The call was admitted without counting: no policy and [`MissingPolicy::Admit`], a
    /// disabled policy, or an unlimited capacity.
    Uncounted,
    /// The token store failed and the policy fails open.
    FailedOpen,
}

pub(crate) struct Limiter {
    policies: Arc<dyn PolicySource>,
    store: Arc<dyn TokenStore>,
    clock: Arc<dyn Clock>,
    pub(crate) settings: Settings,
    policy_cache: Cache<CacheKey, Option<Arc<ResolvedPolicy>>>,
    report_cache: Cache<CacheKey, RenderedReport>,
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
        clock: Arc<dyn Clock>,
        settings: Settings,
    ) -> Self {
        let policy_cache = Cache::builder()
            .max_capacity(settings.cache_capacity)
            .time_to_live(settings.cache_ttl)
            .support_invalidation_closures()
            .build();
        let report_cache = Cache::builder()
            .max_capacity(settings.cache_capacity)
            .time_to_live(settings.cache_ttl)
            .build();
        Limiter {
            policies,
            store,
            clock,
            settings,
            policy_cache,
            report_cache,
        }
    }

    /// Drops the cached policy and report of `tool` for `tenant`; for the default tenant, of
    /// every tenant that fell back to it.
    pub(crate) async fn invalidate(&self, tenant: &str, tool: &str) {
        tracing::debug!(tenant, tool, "rate limit policy invalidated");
        if tenant == crate::policy::DEFAULT_TENANT {
            let tool: Arc<str> = tool.into();
            // Fails only when the cache was built without invalidation closures, which it is not.
            let _ = self
                .policy_cache
                .invalidate_entries_if(move |(_, cached_tool), _| *cached_tool == tool);
        } else {
            self.policy_cache
                .invalidate(&(tenant.into(), tool.into()))
                .await;
        }
        self.report_cache
            .invalidate(&(tenant.into(), tool.into()))
            .await;
    }

    pub(crate) fn invalidate_all(&self) {
        tracing::debug!("every cached rate limit policy invalidated");
        self.policy_cache.invalidate_all();
        self.report_cache.invalidate_all();
    }

    /// Checks a call and charges it; in wait mode, sleeps once until the retry time when it is
    /// close enough and checks again.
    pub(crate) async fn check_waiting(&self, caller: &Caller) -> Result<Admission, Rejection> {
        let first = self.check(caller).await;
        let Some(max_wait) = self.settings.max_wait else {
            return first;
        };
        let Err(rejection) = &first else {
            return first;
        };
        let Some(wait) = rejection.retry_after().filter(|wait| *wait <= max_wait) else {
            return first;
        };

        tracing::trace!(?wait, "waiting for the rate limit to allow the call");
        tokio::time::sleep(wait).await;
        self.check(caller).await
    }

    /// Checks a call in order (allowed window, capacity, tokens) and charges it when all pass.
    pub(crate) async fn check(&self, caller: &Caller) -> Result<Admission, Rejection> {
        let started = Instant::now();
        let now = self.clock.now();
        let result = self.decide(caller, now).await;

        metrics::histogram!("highway_ratelimit_decision_seconds")
            .record(started.elapsed().as_secs_f64());
        match &result {
            Ok(_) => metrics::counter!("highway_ratelimit_admitted_total").increment(1),
            Err(rejection) => {
                let reason = rejection.reason().as_str();
                metrics::counter!("highway_ratelimit_rejected_total", "reason" => reason)
                    .increment(1);
            }
        }
        result
    }

    async fn decide(&self, caller: &Caller, now: DateTime<Utc>) -> Result<Admission, Rejection> {
        let reject = |reason| {
            Rejection::new(
                reason,
                Some(caller.tenant.shared().clone()),
                Some(caller.tool.shared().clone()),
                now,
            )
        };

        let resolved = match self.resolve(caller).await {
            Ok(Some(resolved)) => resolved,
            Ok(None) => {
                return match self.settings.missing_policy {
                    MissingPolicy::Admit => Ok(Admission::Uncounted),
                    MissingPolicy::Reject => Err(reject(RejectionReason::NoPolicy)),
                };
            }
            Err(error) => {
                tracing::warn!(tenant = %caller.tenant, tool = %caller.tool, %error, "cannot read the rate limit policy");
                return Err(reject(RejectionReason::PolicyUnavailable(error)));
            }
        };
        let policy = &resolved.policy;
        if !policy.enabled {
            return Ok(Admission::Uncounted);
        }

        let calendar = match &policy.schedule {
            None => Calendar {
                capacity: policy.static_capacity,
                timezone: policy.timezone,
                week_start: policy.week_start,
            },
            Some(schedule) => self
                .scheduled_calendar(policy, schedule, now)
                .await
                .map_err(reject)?,
        };
        if calendar.capacity.is_unlimited() {
            return Ok(Admission::Uncounted);
        }

        let workflow_key;
        let key = match &resolved.key {
            Some(key) => key,
            None => {
                let run = caller.workflow_run.as_ref().map(|run| run.as_str());
                workflow_key = scope_key(policy, caller.tenant.as_str(), run).ok_or_else(|| {
                    reject(RejectionReason::MissingIdentity(
                        IdentityError::MissingWorkflowRun {
                            tool: caller.tool.to_string(),
                        },
                    ))
                })?;
                &workflow_key
            }
        };
        let request = ConsumeRequest {
            key,
            cost: caller.cost.get(),
            capacity: &calendar.capacity,
            timezone: calendar.timezone,
            week_start: calendar.week_start,
            at: self.clock.store_instant(now),
        };
        let timeout = self.settings.store_timeout;
        let mut consume = self.store.consume(request);
        // An in-process store finishes on its first poll; only a store that has to wait gets a
        // timer, which keeps the timer's cost off the in-process path.
        let outcome = match (&mut consume).now_or_never() {
            Some(outcome) => outcome,
            None => match tokio::time::timeout(timeout, consume).await {
                Ok(outcome) => outcome,
                Err(_) => Err(StoreError::Timeout(timeout)),
            },
        };

        match outcome {
            Ok(Decision::Admitted { windows }) => Ok(Admission::Counted(windows)),
            Ok(Decision::Rejected {
                window,
                retry_at,
                windows,
            }) => {
                let limit = windows
                    .iter()
                    .find(|usage| usage.kind == window)
                    .map_or(0, |usage| usage.limit);
                Err(reject(RejectionReason::QuotaExhausted {
                    window,
                    limit,
                    retry_at,
                    windows,
                }))
            }
            Err(StoreError::CostExceedsLimit {
                window,
                limit,
                cost,
            }) => Err(reject(RejectionReason::CostExceedsLimit {
                window,
                limit,
                cost,
            })),
            Err(error) if policy.fail_open => {
                tracing::warn!(%key, %error, "token store failed; admitting the call because the policy fails open");
                metrics::counter!("highway_ratelimit_store_errors_total", "outcome" => "admitted")
                    .increment(1);
                Ok(Admission::FailedOpen)
            }
            Err(error) => {
                tracing::error!(%key, %error, "token store failed; rejecting the call because the policy fails closed");
                metrics::counter!("highway_ratelimit_store_errors_total", "outcome" => "rejected")
                    .increment(1);
                Err(reject(RejectionReason::StoreUnavailable(Arc::new(error))))
            }
        }
    }

    /// Returns the policy in force for the caller, from the cache or the policy source.
    async fn resolve(
        &self,
        caller: &Caller,
    ) -> Result<Option<Arc<ResolvedPolicy>>, Arc<StoreError>> {
        let cache_key = (caller.tenant.shared().clone(), caller.tool.shared().clone());
        if let Some(cached) = self.policy_cache.get(&cache_key).await {
            return Ok(cached);
        }

        let tenant = caller.tenant.as_str();
        let tool = caller.tool.as_str();
        self.policy_cache
            .try_get_with(cache_key.clone(), async move {
                let timeout = self.settings.store_timeout;
                let policy = match tokio::time::timeout(
                    timeout,
                    self.policies.resolve(tenant, tool),
                )
                .await
                {
                    Ok(policy) => policy?,
                    Err(_) => return Err(StoreError::Timeout(timeout)),
                };
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
                    Arc::new(ResolvedPolicy { policy, key })
                }))
            })
            .await
    }

    /// Returns the capacity and calendar a scheduled policy applies at `now`, or why the call
    /// is not allowed then.
    async fn scheduled_calendar(
        &self,
        policy: &Policy,
        schedule: &PolicySchedule,
        now: DateTime<Utc>,
    ) -> Result<Calendar, RejectionReason> {
        let report = if now < schedule.report.valid_until {
            schedule.report.clone()
        } else {
            match self.rendered_report(policy, schedule, now).await {
                Ok(report) => report,
                Err(message) if policy.fail_open => {
                    tracing::warn!(tenant = %policy.tenant, tool = %policy.tool, %message, "expired report cannot be computed again; applying its default capacity because the policy fails open");
                    let report = &schedule.report;
                    return Ok(Calendar {
                        capacity: report.default_capacity,
                        timezone: report.timezone,
                        week_start: report.week_start,
                    });
                }
                Err(message) => return Err(RejectionReason::ScheduleUnavailable { message }),
            }
        };

        match report.closed_at(now) {
            None => Ok(Calendar {
                capacity: report
                    .capacity_at(now)
                    .copied()
                    .unwrap_or(report.default_capacity),
                timezone: report.timezone,
                week_start: report.week_start,
            }),
            Some(Closed::OutsideHours) => Err(RejectionReason::OutsideHours {
                next_allowed: report.next_allowed(now),
            }),
            Some(Closed::BlockedDate(date)) => Err(RejectionReason::BlockedDate {
                date,
                next_allowed: report.next_allowed(now),
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

    /// Returns the policy's report computed again from its definition at `now`, cached with
    /// failures, so a schedule that does not parse is not parsed again on every call.
    async fn rendered_report(
        &self,
        policy: &Policy,
        schedule: &PolicySchedule,
        now: DateTime<Utc>,
    ) -> Result<Arc<AvailabilityReport>, Arc<str>> {
        let cache_key: CacheKey = (policy.tenant.as_str().into(), policy.tool.as_str().into());
        if let Some(cached) = self.report_cache.get(&cache_key).await {
            match &cached {
                Ok(report) if now >= report.valid_until => {
                    self.report_cache.invalidate(&cache_key).await
                }
                _ => return cached,
            }
        }

        self.report_cache
            .get_with(cache_key, async move {
                let rendered = render_report(policy, schedule, now, self.settings.report_days);
                match &rendered {
                    Ok(report) => tracing::info!(
                        tenant = %policy.tenant, tool = %policy.tool, valid_until = %report.valid_until,
                        "expired availability report computed again"
                    ),
                    Err(message) => tracing::error!(
                        tenant = %policy.tenant, tool = %policy.tool, %message,
                        "expired availability report cannot be computed again"
                    ),
                }
                rendered
            })
            .await
    }
}

/// The limits of a call and the calendar their windows follow.
struct Calendar {
    capacity: Capacity,
    timezone: Tz,
    week_start: Weekday,
}

fn render_report(
    policy: &Policy,
    schedule: &PolicySchedule,
    now: DateTime<Utc>,
    days: u32,
) -> Result<Arc<AvailabilityReport>, Arc<str>> {
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
        from: now,
        days,
        generated_at: now,
    };
    let generated =
        AvailabilityReport::generate(&parsed, &options).map_err(|error| error.to_string())?;

    for warning in &generated.warnings {
        tracing::warn!(tenant = %policy.tenant, tool = %policy.tool, %warning, "availability report warning");
    }
    Ok(Arc::new(generated.report))
}
