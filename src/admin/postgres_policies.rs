//! Policies read from `highway.tool_rate_limits`.

use std::sync::Arc;

use chrono::Utc;
use deadpool_postgres::Pool;
use futures_util::future::BoxFuture;
use tokio_postgres::Row;

use super::limits::{SELECT_COLUMNS, stored_limit};
use super::render::{render, schedule_file_name};
use super::{Admin, AdminError};
use crate::policy::{DEFAULT_TENANT, Policy, PolicySchedule, PolicySource};
use crate::report::AvailabilityReport;
use crate::store::StoreError;
use crate::store::postgres::RoundTripConnection;

/// A [`PolicySource`] that reads the limits written through [`Admin`].
///
/// [`resolve`](PolicySource::resolve) takes the tenant's own row and else the default tenant's
/// in one query. Each read is a round trip, so put a cache in front of it and clear the cache
/// from a [`ChangeListener`](super::ChangeListener).
///
/// A stored report that cannot be decoded (written by a version with another format, or edited
/// by hand) is rendered again from the stored schedule definition, so the limit stays in force.
/// A warning names the tenant and tool, and the stored row is left for the
/// [`Refresher`](super::Refresher) to replace. A definition that no longer parses is an error
/// that names the tenant and tool.
#[derive(Clone)]
pub struct PostgresPolicies {
    pool: Pool,
    horizon_days: u32,
}

impl std::fmt::Debug for PostgresPolicies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresPolicies")
            .field("horizon_days", &self.horizon_days)
            .finish_non_exhaustive()
    }
}

impl PostgresPolicies {
    /// Creates the source on a pool.
    pub fn new(pool: Pool) -> Self {
        PostgresPolicies {
            pool,
            horizon_days: super::DEFAULT_HORIZON_DAYS,
        }
    }

    /// Creates the source on the pool of an admin API, with the same report horizon.
    pub fn from_admin(admin: &Admin) -> Self {
        PostgresPolicies {
            pool: admin.pool().clone(),
            horizon_days: admin.horizon_days(),
        }
    }

    async fn read(
        &self,
        tenant: &str,
        tool: &str,
        with_default: bool,
    ) -> Result<Option<Policy>, AdminError> {
        // The layer stops waiting after its store timeout. The connection is then closed rather
        // than returned to the pool, which the store's consumes may share, since its query may
        // still be waiting for a lock.
        let connection = RoundTripConnection::get(&self.pool).await?;
        // The tenant's own row sorts first; the default row is only a fallback.
        let fallback = if with_default { DEFAULT_TENANT } else { tenant };
        let row = connection
            .client()
            .query_opt(
                &format!(
                    "SELECT {SELECT_COLUMNS} FROM highway.tool_rate_limits \
                     WHERE tool_name = $2 AND tenant_id IN ($1, $3) \
                     ORDER BY tenant_id = $1 DESC LIMIT 1"
                ),
                &[&tenant, &tool, &fallback],
            )
            .await;
        connection.release(&row);
        row?.map(|row| policy_from_row(&row, self.horizon_days))
            .transpose()
    }
}

impl PolicySource for PostgresPolicies {
    fn lookup<'a>(
        &'a self,
        tenant: &'a str,
        tool: &'a str,
    ) -> BoxFuture<'a, Result<Option<Policy>, StoreError>> {
        Box::pin(async move { Ok(self.read(tenant, tool, false).await?) })
    }

    fn resolve<'a>(
        &'a self,
        tenant: &'a str,
        tool: &'a str,
    ) -> BoxFuture<'a, Result<Option<Policy>, StoreError>> {
        Box::pin(async move { Ok(self.read(tenant, tool, true).await?) })
    }
}

fn policy_from_row(row: &Row, horizon_days: u32) -> Result<Policy, AdminError> {
    let limit = stored_limit(row)?;
    let schedule = match &limit.schedule {
        Some(stored) => {
            let json: Option<serde_json::Value> = row.try_get("schedule_report")?;
            let decoded = json
                .ok_or_else(|| "the report is missing".to_owned())
                .and_then(|json| {
                    serde_json::from_value::<AvailabilityReport>(json)
                        .map_err(|error| error.to_string())
                });
            let report = match decoded {
                Ok(report) => report,
                Err(problem) => {
                    tracing::warn!(
                        tenant = %limit.tenant,
                        tool = %limit.tool,
                        problem,
                        "stored report unreadable; rendering it again from the schedule"
                    );
                    let file_name = schedule_file_name(&limit.tenant, &limit.tool);
                    render(
                        &stored.definition,
                        &file_name,
                        stored.resource.as_deref(),
                        Utc::now(),
                        horizon_days,
                    )
                    .map_err(|error| {
                        AdminError::invalid_row(&limit.tenant, &limit.tool, error.to_string())
                    })?
                    .report
                }
            };
            Some(PolicySchedule {
                definition: stored.definition.clone(),
                resource: stored.resource.clone(),
                report: Arc::new(report),
            })
        }
        None => None,
    };

    Ok(Policy {
        static_capacity: limit.static_capacity(),
        schedule,
        scope: limit.scope,
        timezone: limit.timezone,
        week_start: limit.week_start,
        enabled: limit.enabled,
        fail_open: limit.fail_open,
        tenant: limit.tenant,
        tool: limit.tool,
    })
}
