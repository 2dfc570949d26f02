//! Policies: the limits of one tool for one tenant, and where they come from.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use chrono::Weekday;
use chrono_tz::Tz;
use futures_util::future::BoxFuture;

use crate::report::{AvailabilityReport, Capacity, ReportError, ReportOptions};
use crate::schedule::{ParseOptions, Schedule, ScheduleError};
use crate::store::StoreError;

/// The tenant id whose policies apply to tenants that have no policy of their own.
pub const DEFAULT_TENANT: &str = "default";

/// The counter that calls share: one for all, one per tenant or one per workflow run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Scope {
    /// One counter for every caller of the tool.
    Global,
    /// One counter per tenant.
    #[default]
    Tenant,
    /// One counter per workflow run.
    Workflow,
}

impl Scope {
    /// The name stored in the `limit_scope` column: `global`, `tenant` or `workflow`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::Global => "global",
            Scope::Tenant => "tenant",
            Scope::Workflow => "workflow",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a scope name that is not `global`, `tenant` or `workflow`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid scope {0:?}: expected global, tenant or workflow")]
pub struct ParseScopeError(pub String);

impl FromStr for Scope {
    type Err = ParseScopeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "global" => Ok(Scope::Global),
            "tenant" => Ok(Scope::Tenant),
            "workflow" => Ok(Scope::Workflow),
            _ => Err(ParseScopeError(s.to_owned())),
        }
    }
}

/// A schedule attached to a policy: its `.tjp` text and the report computed from it.
#[derive(Debug, Clone)]
pub struct PolicySchedule {
    /// The `.tjp` text, kept so that the report can be computed again before it expires.
    pub definition: String,
    /// The resource of the schedule whose availability applies; `None` when it has one resource.
    pub resource: Option<String>,
    /// The report in force.
    pub report: Arc<AvailabilityReport>,
}

impl PolicySchedule {
    /// Parses `definition` and computes the report that `options` requests.
    ///
    /// `name` is printed in the `NAME:LINE:COL` of errors; `include` is rejected, because the
    /// text has no folder. Warnings of the schedule and the report are logged with `tracing`.
    pub fn render(
        name: &str,
        definition: impl Into<String>,
        options: &ReportOptions,
    ) -> Result<PolicySchedule, RenderError> {
        let definition = definition.into();
        let schedule = Schedule::parse(&definition, &ParseOptions::named(name))?;
        let generated = AvailabilityReport::generate(&schedule, options)?;
        for warning in &schedule.warnings {
            tracing::warn!(schedule = name, %warning, "schedule warning");
        }
        for warning in &generated.warnings {
            tracing::warn!(schedule = name, %warning, "availability report warning");
        }
        Ok(PolicySchedule {
            definition,
            resource: options.resource.clone(),
            report: Arc::new(generated.report),
        })
    }
}

/// The error for a schedule that cannot become a policy's schedule.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// The schedule does not parse or is invalid.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// The report cannot be computed, such as for an unknown resource.
    #[error(transparent)]
    Report(#[from] ReportError),
}

/// The limits of one tool for one tenant (or for the `default` tenant).
#[derive(Debug, Clone)]
pub struct Policy {
    /// The tenant the policy belongs to; [`DEFAULT_TENANT`] for the defaults.
    pub tenant: String,
    /// The tool name, such as `tools.email.send`.
    pub tool: String,
    /// The counter that calls share: one for all, one per tenant or one per workflow run.
    pub scope: Scope,
    /// Limits used when there is no schedule (`requests_per_minute`, `_hour`, `_day`).
    pub static_capacity: Capacity,
    /// The schedule whose report decides when calls are allowed and with which capacity.
    pub schedule: Option<PolicySchedule>,
    /// The time zone whose calendar the day, week and month windows follow.
    pub timezone: Tz,
    /// The first day of a week window.
    pub week_start: Weekday,
    /// A disabled policy admits every call without counting it.
    pub enabled: bool,
    /// When the token store fails or times out: admit the call (and log it) instead of rejecting.
    pub fail_open: bool,
}

impl Policy {
    /// Creates an enabled, fail-closed policy with static limits, tenant scope and UTC days.
    pub fn new(tenant: impl Into<String>, tool: impl Into<String>, capacity: Capacity) -> Self {
        Policy {
            tenant: tenant.into(),
            tool: tool.into(),
            scope: Scope::Tenant,
            static_capacity: capacity,
            schedule: None,
            timezone: Tz::UTC,
            week_start: Weekday::Mon,
            enabled: true,
            fail_open: false,
        }
    }
}

impl Policy {
    /// Creates an enabled, fail-closed, tenant-scoped policy whose hours and capacity come from
    /// `schedule`. Its day, week and month windows follow the report's zone and week start.
    pub fn scheduled(
        tenant: impl Into<String>,
        tool: impl Into<String>,
        schedule: PolicySchedule,
    ) -> Self {
        let mut policy = Policy::new(tenant, tool, Capacity::UNLIMITED);
        policy.timezone = schedule.report.timezone;
        policy.week_start = schedule.report.week_start;
        policy.schedule = Some(schedule);
        policy
    }
}

/// A source of policies: memory, PostgreSQL, or anything else.
pub trait PolicySource: Send + Sync + 'static {
    /// Returns the policy written for exactly this tenant and tool, if any.
    fn lookup<'a>(
        &'a self,
        tenant: &'a str,
        tool: &'a str,
    ) -> BoxFuture<'a, Result<Option<Policy>, StoreError>>;

    /// Returns the policy in force for a tenant's calls to a tool: the tenant's own, or else the
    /// [`DEFAULT_TENANT`]'s.
    fn resolve<'a>(
        &'a self,
        tenant: &'a str,
        tool: &'a str,
    ) -> BoxFuture<'a, Result<Option<Policy>, StoreError>> {
        Box::pin(async move {
            if let Some(policy) = self.lookup(tenant, tool).await? {
                return Ok(Some(policy));
            }
            if tenant == DEFAULT_TENANT {
                return Ok(None);
            }
            self.lookup(DEFAULT_TENANT, tool).await
        })
    }

    /// Returns whether `lookup` and `resolve` finish on their first poll, as a source in memory
    /// does. The rate limit layer then never times a read, so
    /// [`RateLimitBuilder::store_timeout`](crate::layer::RateLimitBuilder::store_timeout) does not
    /// apply to it.
    ///
    /// `false` by default. An implementation that returns `true` must keep that promise, or a
    /// layer built with a zero store timeout fails every read that waits.
    fn is_immediate(&self) -> bool {
        false
    }
}
