//! One rate-limit decision, made from a policy source and a token store.

use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use tracing::Instrument;

use super::metrics;
use crate::policy::{Policy, PolicySource, Scope};
use crate::report::{Capacity, Closed};
use crate::store::{ConsumeRequest, Decision, ScopeKey, StoreError, TokenStore, WindowUsage};
use crate::window::WindowKind;

/// The caller, tool and cost of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallIdentity {
    /// The calling tenant.
    pub tenant: String,
    /// The tool called.
    pub tool: String,
    /// The workflow run, needed when the tool's limit counts per workflow run.
    pub workflow: Option<String>,
    /// The call's cost in units (1 for a plain call).
    pub cost: u64,
}

/// The reason a call was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RejectReason {
    /// The instant is outside the schedule's working hours.
    OutsideHours,
    /// The instant's local date is blocked by a vacation or leave.
    BlockedDate {
        /// The blocked local date.
        date: NaiveDate,
    },
    /// The stored report ends before the instant: it must be rendered again.
    ReportExpired,
    /// A window's limit is 0: the tool is switched off in it.
    SwitchedOff {
        /// The window whose limit is 0.
        window: WindowKind,
    },
    /// A window has no room left for the call's cost.
    QuotaExhausted {
        /// The window that rejected the call.
        window: WindowKind,
    },
    /// The limit counts per workflow run and the call names no run.
    MissingIdentity {
        /// What the call lacks and how to supply it.
        message: String,
    },
    /// The token store failed or timed out and the policy is fail-closed.
    StoreUnavailable {
        /// The store's error.
        message: String,
    },
}

impl RejectReason {
    /// Returns the reason's name in metrics and logs, such as `quota_exhausted`.
    pub fn as_str(&self) -> &'static str {
        match self {
            RejectReason::OutsideHours => "outside_hours",
            RejectReason::BlockedDate { .. } => "blocked_date",
            RejectReason::ReportExpired => "report_expired",
            RejectReason::SwitchedOff { .. } => "switched_off",
            RejectReason::QuotaExhausted { .. } => "quota_exhausted",
            RejectReason::MissingIdentity { .. } => "missing_identity",
            RejectReason::StoreUnavailable { .. } => "store_unavailable",
        }
    }
}

/// The state of one window after a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WindowState {
    /// The window kind.
    pub window: WindowKind,
    /// The maximum of units the window allows.
    pub limit: u64,
    /// The units left in the window after the decision.
    pub remaining: u64,
    /// When the window's counter starts again from zero.
    pub reset_at: DateTime<Utc>,
}

impl From<&WindowUsage> for WindowState {
    fn from(usage: &WindowUsage) -> Self {
        WindowState {
            window: usage.kind,
            limit: usage.limit,
            remaining: usage.remaining,
            reset_at: usage.reset_at,
        }
    }
}

/// The outcome of one decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// Whether the call may go ahead.
    pub admitted: bool,
    /// Why it may go ahead without a counted decision: `no_policy`, `disabled`, `unlimited`,
    /// `fail_open`; `counted` when the store decided.
    pub basis: &'static str,
    /// The reason the call was rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<RejectReason>,
    /// When the call can next succeed, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<DateTime<Utc>>,
    /// The tenant whose policy applied (`default` for the default row).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_tenant: Option<String>,
    /// The counter the call was charged to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope_key: Option<String>,
    /// Every limited window, shortest first.
    pub windows: Vec<WindowState>,
    /// Whether nothing was charged because only a peek was asked for.
    pub dry_run: bool,
}

impl Outcome {
    fn uncounted(basis: &'static str, policy: Option<&Policy>, dry_run: bool) -> Self {
        Outcome {
            admitted: true,
            basis,
            reason: None,
            retry_at: None,
            policy_tenant: policy.map(|policy| policy.tenant.clone()),
            scope_key: None,
            windows: Vec::new(),
            dry_run,
        }
    }

    fn rejected(
        reason: RejectReason,
        retry_at: Option<DateTime<Utc>>,
        policy: &Policy,
        dry_run: bool,
    ) -> Self {
        Outcome {
            admitted: false,
            basis: "counted",
            reason: Some(reason),
            retry_at,
            policy_tenant: Some(policy.tenant.clone()),
            scope_key: None,
            windows: Vec::new(),
            dry_run,
        }
    }
}

/// How to make a decision.
#[derive(Debug, Clone, Copy, Default)]
pub struct DecideOptions {
    /// The instant of the call; `None` uses the current time for the report and the store's
    /// own clock for the counters.
    pub at: Option<DateTime<Utc>>,
    /// Only report what the decision would be, charging nothing.
    pub dry_run: bool,
    /// The maximum wait for the token store. A slower store counts as a store error.
    pub store_timeout: Option<Duration>,
}

/// Makes one rate-limit decision for a call, records its metrics, and returns it.
///
/// The steps:
/// 1. Resolve the policy in force. No policy, or a disabled one, admits without counting.
/// 2. With a schedule, check that the instant lies in an allowed window of the report and take
///    that window's capacity. Without one, take the static limits.
/// 3. Reject when a limit is 0.
/// 4. Charge the cost to every limited window in one atomic store call, or peek when `dry_run`.
///
/// A store error admits the call when the policy is fail-open and rejects it otherwise.
///
/// # Errors
///
/// Errors of the policy source, and a cost of 0 or larger than a whole window's limit.
pub async fn decide(
    policies: &dyn PolicySource,
    store: &dyn TokenStore,
    call: &CallIdentity,
    options: DecideOptions,
) -> Result<Outcome, StoreError> {
    let span = tracing::info_span!(
        "rate_limit",
        tenant = %call.tenant,
        tool = %call.tool,
        decision = tracing::field::Empty
    );
    let started = Instant::now();
    let result = decide_inner(policies, store, call, options)
        .instrument(span.clone())
        .await;
    metrics::record_latency(started.elapsed());

    match &result {
        Ok(outcome) if outcome.admitted => {
            span.record("decision", "admitted");
            metrics::record_admitted();
        }
        Ok(outcome) => {
            let reason = outcome
                .reason
                .as_ref()
                .map_or("unknown", RejectReason::as_str);
            span.record("decision", reason);
            metrics::record_rejected(reason);
        }
        Err(_) => {
            span.record("decision", "error");
        }
    }
    result
}

async fn decide_inner(
    policies: &dyn PolicySource,
    store: &dyn TokenStore,
    call: &CallIdentity,
    options: DecideOptions,
) -> Result<Outcome, StoreError> {
    if call.cost == 0 {
        return Err(StoreError::ZeroCost);
    }
    let dry_run = options.dry_run;

    let Some(policy) = policies.resolve(&call.tenant, &call.tool).await? else {
        return Ok(Outcome::uncounted("no_policy", None, dry_run));
    };
    if !policy.enabled {
        return Ok(Outcome::uncounted("disabled", Some(&policy), dry_run));
    }

    let now = options.at.unwrap_or_else(Utc::now);
    let capacity = match &policy.schedule {
        Some(schedule) => match schedule.report.closed_at(now) {
            None => schedule
                .report
                .capacity_at(now)
                .copied()
                .unwrap_or_default(),
            Some(closed) => {
                let reason = match closed {
                    Closed::OutsideHours => RejectReason::OutsideHours,
                    Closed::BlockedDate(date) => RejectReason::BlockedDate { date },
                    Closed::Expired => RejectReason::ReportExpired,
                };
                let retry_at = schedule.report.next_allowed(now);
                return Ok(Outcome::rejected(reason, retry_at, &policy, dry_run));
            }
        },
        None => policy.static_capacity,
    };
    if capacity.is_unlimited() {
        return Ok(Outcome::uncounted("unlimited", Some(&policy), dry_run));
    }
    if let Some((window, _)) = capacity.limits().find(|(_, limit)| *limit == 0) {
        return Ok(Outcome::rejected(
            RejectReason::SwitchedOff { window },
            None,
            &policy,
            dry_run,
        ));
    }

    let key = match scope_key_for(&policy, &call.tenant, call.workflow.as_deref()) {
        Ok(key) => key,
        Err(message) => {
            let reason = RejectReason::MissingIdentity { message };
            return Ok(Outcome::rejected(reason, None, &policy, dry_run));
        }
    };
    let request = ConsumeRequest {
        key: &key,
        cost: call.cost,
        capacity: &capacity,
        timezone: policy.timezone,
        week_start: policy.week_start,
        at: options.at,
    };
    let pending = if dry_run {
        store.peek(request)
    } else {
        store.consume(request)
    };
    let answer = match options.store_timeout {
        Some(limit) => tokio::time::timeout(limit, pending)
            .await
            .unwrap_or(Err(StoreError::Timeout(limit))),
        None => pending.await,
    };

    let decision = match answer {
        Ok(decision) => decision,
        Err(error @ (StoreError::CostExceedsLimit { .. } | StoreError::ZeroCost)) => {
            return Err(error);
        }
        Err(error) => {
            if policy.fail_open {
                metrics::record_store_error("admitted");
                tracing::warn!(%error, %key, "token store failed; admitting the call because the limit is fail-open");
                return Ok(Outcome::uncounted("fail_open", Some(&policy), dry_run));
            }
            metrics::record_store_error("rejected");
            tracing::warn!(%error, %key, "token store failed; rejecting the call because the limit is fail-closed");
            let reason = RejectReason::StoreUnavailable {
                message: error.to_string(),
            };
            return Ok(Outcome::rejected(reason, None, &policy, dry_run));
        }
    };

    let windows = decision.windows().iter().map(WindowState::from).collect();
    let mut outcome = match decision {
        Decision::Admitted { .. } => Outcome::uncounted("counted", Some(&policy), dry_run),
        Decision::Rejected {
            window, retry_at, ..
        } => Outcome::rejected(
            RejectReason::QuotaExhausted { window },
            Some(retry_at),
            &policy,
            dry_run,
        ),
    };
    outcome.scope_key = Some(key.scope);
    outcome.windows = windows;
    Ok(outcome)
}

/// Returns the counter a call of `tenant` is charged to under `policy`.
///
/// # Errors
///
/// A message saying what to pass when the policy counts per workflow run and `workflow` is `None`.
pub(crate) fn scope_key_for(
    policy: &Policy,
    tenant: &str,
    workflow: Option<&str>,
) -> Result<ScopeKey, String> {
    let scope = match policy.scope {
        Scope::Global => "global".to_owned(),
        Scope::Tenant => tenant.to_owned(),
        Scope::Workflow => match workflow {
            Some(run) => run.to_owned(),
            None => {
                return Err(format!(
                    "the limit of tool {:?} counts per workflow run: give the workflow run id",
                    policy.tool
                ));
            }
        },
    };
    Ok(ScopeKey {
        tenant: policy.tenant.clone(),
        tool: policy.tool.clone(),
        scope,
    })
}

/// Returns the capacity in force at `now`, `None` outside the schedule's allowed windows.
pub(crate) fn capacity_now(policy: &Policy, now: DateTime<Utc>) -> Option<Capacity> {
    match &policy.schedule {
        Some(schedule) => schedule.report.capacity_at(now).copied(),
        None => Some(policy.static_capacity),
    }
}
