//! The refresher: renders stored reports again before they expire.

use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde::Serialize;

use super::connection::AdminConnection;
use super::notify::notify_change;
use super::render::{render, schedule_file_name};
use super::{Admin, AdminError};
use crate::error_chain::ErrorChain;

/// A background task that renders a limit's report again when its `valid_until` is within the
/// lead time, stores it, and notifies every listener.
///
/// It logs a warning when a schedule's time frame ends within the horizon, because from then on
/// the schedule allows no call: the operator must extend the project's dates in time.
///
/// Several workers may run a refresher on the same database: a report is replaced only if it is
/// still the one that was read, so each expiring report is written once.
#[derive(Clone)]
pub struct Refresher {
    pool: Pool,
    horizon_days: u32,
    lead_time: chrono::Duration,
    interval: Duration,
}

impl std::fmt::Debug for Refresher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refresher")
            .field("horizon_days", &self.horizon_days)
            .field("lead_time", &self.lead_time)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

/// The result of one refresher pass.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RefreshSummary {
    /// The (tenant, tool) pairs whose report was replaced.
    pub refreshed: Vec<(String, String)>,
    /// The (tenant, tool) pairs whose report could not be rendered, with the error.
    pub failed: Vec<(String, String, String)>,
    /// The (tenant, tool) pairs whose schedule's time frame ends within the horizon, with the
    /// end: from then on the schedule allows no call.
    pub ending: Vec<(String, String, DateTime<Utc>)>,
}

impl Refresher {
    /// Creates a refresher with the admin API's pool and horizon, a lead time of 2 days and a
    /// pass every 10 minutes.
    ///
    /// The lead time must be shorter than the horizon, or every pass renders every report again.
    pub fn new(admin: &Admin) -> Self {
        Refresher {
            pool: admin.pool().clone(),
            horizon_days: admin.horizon_days(),
            lead_time: chrono::Duration::days(2),
            interval: Duration::from_secs(600),
        }
    }

    /// Sets how long before `valid_until` a report is rendered again.
    pub fn with_lead_time(mut self, lead_time: chrono::Duration) -> Self {
        self.lead_time = lead_time;
        self
    }

    /// Sets the time between two passes of [`run`](Self::run). An interval of zero is raised to
    /// one millisecond.
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Runs one pass now.
    pub async fn run_once(&self) -> Result<RefreshSummary, AdminError> {
        self.run_once_at(Utc::now()).await
    }

    /// Runs one pass as if the time were `now`: every report whose `valid_until` is before
    /// `now + lead time` (or that is missing) is rendered for the horizon starting at `now`.
    ///
    /// A schedule that no longer renders is logged and listed in
    /// [`failed`](RefreshSummary::failed); its old report stays in force until it expires.
    pub async fn run_once_at(&self, now: DateTime<Utc>) -> Result<RefreshSummary, AdminError> {
        let client = AdminConnection::get(&self.pool).await?;
        let due = client
            .query(
                "SELECT tenant_id, tool_name, schedule_definition, schedule_resource, schedule_report_valid_until \
                 FROM highway.tool_rate_limits \
                 WHERE schedule_definition IS NOT NULL \
                   AND (schedule_report_valid_until IS NULL OR schedule_report_valid_until < $1) \
                 ORDER BY tenant_id, tool_name",
                &[&(now + self.lead_time)],
            )
            .await?;
        client.release();

        let mut summary = RefreshSummary::default();
        for row in due {
            let tenant: String = row.try_get("tenant_id")?;
            let tool: String = row.try_get("tool_name")?;
            let definition: String = row.try_get("schedule_definition")?;
            let resource: Option<String> = row.try_get("schedule_resource")?;
            let old_valid_until: Option<DateTime<Utc>> =
                row.try_get("schedule_report_valid_until")?;

            let file_name = schedule_file_name(&tenant, &tool);
            let preview = match render(
                &definition,
                &file_name,
                resource.as_deref(),
                now,
                self.horizon_days,
            ) {
                Ok(preview) => preview,
                Err(error) => {
                    tracing::error!(%tenant, %tool, error = %ErrorChain(&error), "cannot render the report again; the old one stays until it expires");
                    summary.failed.push((tenant, tool, error.to_string()));
                    continue;
                }
            };
            let horizon_end = now + chrono::Duration::days(i64::from(self.horizon_days));
            if preview.time_frame_end < horizon_end {
                tracing::warn!(
                    %tenant,
                    %tool,
                    time_frame_end = %preview.time_frame_end,
                    "the schedule's time frame ends within the report horizon: no call is allowed after it; extend the project dates"
                );
                summary
                    .ending
                    .push((tenant.clone(), tool.clone(), preview.time_frame_end));
            }

            let report = serde_json::to_value(&preview.report).map_err(|error| {
                AdminError::invalid_row(
                    &tenant,
                    &tool,
                    format!("cannot encode the report: {error}"),
                )
            })?;
            let mut client = AdminConnection::get(&self.pool).await?;
            let transaction = client.transaction().await?;
            let updated = transaction
                .execute(
                    "UPDATE highway.tool_rate_limits \
                     SET schedule_report = $3, schedule_report_valid_until = $4, updated_at = now() \
                     WHERE tenant_id = $1 AND tool_name = $2 AND schedule_definition = $5 \
                       AND schedule_report_valid_until IS NOT DISTINCT FROM $6",
                    &[&tenant, &tool, &report, &preview.report.valid_until, &definition, &old_valid_until],
                )
                .await?;
            if updated == 0 {
                // Another writer changed the row since it was read; its report is the newer one.
                transaction.rollback().await?;
                client.release();
                continue;
            }
            notify_change(&transaction, &tenant, &tool).await?;
            transaction.commit().await?;
            client.release();

            tracing::info!(%tenant, %tool, valid_until = %preview.report.valid_until, "report rendered again");
            summary.refreshed.push((tenant, tool));
        }
        Ok(summary)
    }

    /// Runs a pass every interval, forever; errors are logged and the next pass tries again.
    /// Spawn it on a Tokio runtime and abort the task to stop it.
    pub async fn run(self) {
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match self.run_once().await {
                Ok(summary) => tracing::debug!(
                    refreshed = summary.refreshed.len(),
                    failed = summary.failed.len(),
                    "refresher pass done"
                ),
                Err(error) => {
                    tracing::error!(error = %ErrorChain(&error), "refresher pass failed; retrying at the next interval")
                }
            }
        }
    }
}
