//! Usage: how much of each window the counters of a tenant and tool have used.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::connection::AdminConnection;
use super::{Admin, AdminError, PostgresPolicies};
use crate::layer::key::scope_key;
use crate::policy::{PolicySource, Scope};
use crate::window::WindowKind;

/// The counter of one scope key in one current window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WindowCount {
    /// The tenant whose policy the counter belongs to (`default` when the default row applies).
    pub policy_tenant: String,
    /// The scope key, as the rate-limit layer writes it: `global`, `tenant:ID` or
    /// `workflow:TENANT:RUN`.
    pub scope_key: String,
    /// The window kind.
    pub window: WindowKind,
    /// The first instant of the window.
    pub window_start: DateTime<Utc>,
    /// The first instant after the window, when the counter starts again from zero.
    pub window_end: DateTime<Utc>,
    /// The calls (or cost units) counted so far.
    pub used: u64,
    /// The limit of the window in force now, `None` when unlimited or outside the allowed hours.
    pub limit: Option<u64>,
}

impl Admin {
    /// Returns the counters a call of `tenant` to `tool` is charged to, in their current
    /// windows, ordered by scope key and window.
    ///
    /// The policy in force decides which counters those are: the `global` counter, the tenant's
    /// counter, or the tenant's counters of every workflow run (only `workflow`'s when it is
    /// given). Without a policy, every counter of the tenant and tool is listed. Windows that
    /// have ended are left out.
    pub async fn usage(
        &self,
        tenant: &str,
        tool: &str,
        workflow: Option<&str>,
    ) -> Result<Vec<WindowCount>, AdminError> {
        super::limits::reject_nul("tenant", tenant)?;
        super::limits::reject_nul("tool", tool)?;
        let policies = PostgresPolicies::from_admin(self);
        let policy = policies
            .resolve(tenant, tool)
            .await
            .map_err(AdminError::Store)?;

        // The keys to list: those that start with `prefix`, or exactly `key`.
        let (policy_tenant, key, prefix) = match &policy {
            None => (tenant.to_owned(), None, String::new()),
            Some(policy) => match (policy.scope, workflow) {
                (Scope::Workflow, None) => {
                    // The key of an empty run id is the prefix of every run's key.
                    let prefix = scope_key(policy, tenant, Some("")).map(|key| key.scope);
                    (policy.tenant.clone(), None, prefix.unwrap_or_default())
                }
                _ => {
                    let key = scope_key(policy, tenant, workflow);
                    (
                        policy.tenant.clone(),
                        key.map(|key| key.scope),
                        String::new(),
                    )
                }
            },
        };
        let capacity = policy.as_ref().and_then(|policy| match &policy.schedule {
            Some(schedule) => schedule.report.capacity_at(Utc::now()).copied(),
            None => Some(policy.static_capacity),
        });

        let client = AdminConnection::get(self.pool()).await?;
        let rows = client
            .query(
                "SELECT scope_key, window_type, window_start, window_end, request_count::bigint AS used \
                 FROM highway.tool_rate_limit_usage \
                 WHERE tenant_id = $1 AND tool_name = $2 \
                   AND ($3::text IS NULL OR scope_key = $3) AND starts_with(scope_key, $4) \
                   AND window_end > now() \
                 ORDER BY scope_key, window_end - window_start, window_start",
                &[&policy_tenant, &tool, &key, &prefix],
            )
            .await?;
        client.release();

        let mut counts = Vec::with_capacity(rows.len());
        for row in rows {
            let window_type: String = row.try_get("window_type")?;
            let window = window_type.parse::<WindowKind>().map_err(|error| {
                AdminError::invalid_row(&policy_tenant, tool, error.to_string())
            })?;
            let used: i64 = row.try_get("used")?;
            counts.push(WindowCount {
                policy_tenant: policy_tenant.clone(),
                scope_key: row.try_get("scope_key")?,
                window,
                window_start: row.try_get("window_start")?,
                window_end: row.try_get("window_end")?,
                used: u64::try_from(used).unwrap_or_default(),
                limit: capacity.and_then(|capacity| capacity.get(window)),
            });
        }
        Ok(counts)
    }
}
