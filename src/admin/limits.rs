//! Creating, reading, listing and deleting limits.

use chrono::{DateTime, Utc, Weekday};
use chrono_tz::Tz;
use deadpool_postgres::Pool;
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;

use super::AdminError;
use super::connection::AdminConnection;
use super::notify::notify_change;
use super::render::{
    DEFAULT_HORIZON_DAYS, HorizonStart, ReportPreview, off_runtime, render, schedule_file_name,
};
use crate::policy::Scope;
use crate::report::Capacity;
use crate::store::postgres::PostgresStore;

/// The maximum length of a tenant id or tool name, in bytes. It keeps change notifications far
/// below PostgreSQL's 8000-byte payload limit.
const MAX_NAME_LEN: usize = 256;

/// The number of a written schedule's warnings that are logged one by one; a single line counts
/// the rest.
const MAX_LOGGED_WARNINGS: usize = 10;

/// A limit to create or replace: what an operator writes for one tenant and tool.
///
/// Without a schedule, the static limits apply around the clock, counted in windows of the
/// `timezone`'s calendar. With a schedule, the schedule's report decides when calls are allowed
/// and with which capacity, and the static limits must be left out.
///
/// Deserializing rejects unknown fields, so that a misspelled limit is an error rather than a
/// limit left out of the replacement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSpec {
    /// The tenant id; [`DEFAULT_TENANT`](crate::policy::DEFAULT_TENANT) for the defaults.
    pub tenant: String,
    /// The tool name, such as `tools.email.send`.
    pub tool: String,
    /// The counter that calls share: `global`, `tenant` (the default) or `workflow`.
    #[serde(default, with = "scope_name")]
    pub scope: Scope,
    /// The maximum of calls (or cost units) per minute without a schedule.
    #[serde(default)]
    pub per_minute: Option<u64>,
    /// The maximum of calls (or cost units) per hour without a schedule.
    #[serde(default)]
    pub per_hour: Option<u64>,
    /// The maximum of calls (or cost units) per day without a schedule.
    #[serde(default)]
    pub per_day: Option<u64>,
    /// The `.tjp` text of the schedule; it must be self-contained (no `include`).
    #[serde(default)]
    pub schedule: Option<String>,
    /// The schedule's resource whose availability applies; may be left out when the schedule has
    /// one resource.
    #[serde(default)]
    pub resource: Option<String>,
    /// The time zone of the windows. Without a schedule it defaults to UTC; with a schedule it is
    /// the schedule's and may be left out.
    #[serde(default, deserialize_with = "deserialize_timezone")]
    pub timezone: Option<Tz>,
    /// The first day of a week window. Without a schedule it defaults to Monday; with a schedule
    /// it is the schedule's and may be left out.
    #[serde(default, with = "weekday_name::option")]
    pub week_start: Option<Weekday>,
    /// A disabled limit admits every call without counting it.
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// Admit calls (and log them) when the token store fails, instead of rejecting them.
    #[serde(default)]
    pub fail_open: bool,
}

/// Reads `timezone` with the command line's messages, in place of chrono-tz's "failed to parse
/// timezone".
fn deserialize_timezone<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Tz>, D::Error> {
    let Some(name) = Option::<String>::deserialize(deserializer)? else {
        return Ok(None);
    };
    crate::calendar::parse_zone_name(&name)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

fn enabled_by_default() -> bool {
    true
}

impl LimitSpec {
    /// Creates an enabled, fail-closed, tenant-scoped limit with no limits set yet.
    pub fn new(tenant: impl Into<String>, tool: impl Into<String>) -> Self {
        LimitSpec {
            tenant: tenant.into(),
            tool: tool.into(),
            scope: Scope::Tenant,
            per_minute: None,
            per_hour: None,
            per_day: None,
            schedule: None,
            resource: None,
            timezone: None,
            week_start: None,
            enabled: true,
            fail_open: false,
        }
    }

    /// Returns whether the limit is enabled but sets no limit and no schedule, so that it
    /// admits every call without counting it.
    pub(crate) fn admits_every_call(&self) -> bool {
        self.enabled && self.schedule.is_none() && self.static_capacity().is_unlimited()
    }

    fn static_capacity(&self) -> Capacity {
        Capacity {
            per_minute: self.per_minute,
            per_hour: self.per_hour,
            per_day: self.per_day,
            ..Capacity::UNLIMITED
        }
    }
}

/// The schedule part of a stored limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredSchedule {
    /// The `.tjp` text.
    pub definition: String,
    /// The resource whose availability applies; `None` when the schedule has one resource.
    pub resource: Option<String>,
    /// The end of the stored report's horizon; the refresher renders a new report before it.
    pub valid_until: Option<DateTime<Utc>>,
}

/// A limit as stored in `highway.tool_rate_limits`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredLimit {
    /// The tenant id.
    pub tenant: String,
    /// The tool name.
    pub tool: String,
    /// The counter that calls share.
    #[serde(with = "scope_name")]
    pub scope: Scope,
    /// The static limit per minute, if any.
    pub per_minute: Option<u64>,
    /// The static limit per hour, if any.
    pub per_hour: Option<u64>,
    /// The static limit per day, if any.
    pub per_day: Option<u64>,
    /// The schedule, if any.
    pub schedule: Option<StoredSchedule>,
    /// The time zone of the windows.
    pub timezone: Tz,
    /// The first day of a week window.
    #[serde(with = "weekday_name")]
    pub week_start: Weekday,
    /// Whether calls are counted at all.
    pub enabled: bool,
    /// Whether calls are admitted when the token store fails.
    pub fail_open: bool,
    /// When the row was created.
    pub created_at: DateTime<Utc>,
    /// When the row was last written.
    pub updated_at: DateTime<Utc>,
}

impl StoredLimit {
    /// Returns the static limits as a capacity (unlimited kinds are `None`).
    pub fn static_capacity(&self) -> Capacity {
        Capacity {
            per_minute: self.per_minute,
            per_hour: self.per_hour,
            per_day: self.per_day,
            ..Capacity::UNLIMITED
        }
    }
}

/// The result of a write: the stored limit and the warnings of its schedule.
#[derive(Debug, Clone, Serialize)]
pub struct WriteOutcome {
    /// The limit as stored.
    pub limit: StoredLimit,
    /// Warnings about the schedule, such as a time frame that ends inside the report's horizon.
    pub warnings: Vec<String>,
    /// Whether the write created the limit; `false` when it replaced a stored one. The HTTP
    /// router returns it as the status (201 or 200), not in the body.
    #[serde(skip)]
    pub created: bool,
}

/// The admin API: limits in PostgreSQL, written in the configuration phase.
///
/// Every write happens in one transaction with a `NOTIFY` on
/// [`CHANGES_CHANNEL`](super::CHANGES_CHANNEL), so listeners learn about it only once it is
/// committed.
#[derive(Clone)]
pub struct Admin {
    pool: Pool,
    horizon_days: u32,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("horizon_days", &self.horizon_days)
            .finish_non_exhaustive()
    }
}

pub(crate) const SELECT_COLUMNS: &str = "tenant_id, tool_name, limit_scope, \
     requests_per_minute::bigint AS per_minute, requests_per_hour::bigint AS per_hour, \
     requests_per_day::bigint AS per_day, schedule_definition, schedule_resource, schedule_report, \
     schedule_report_valid_until, timezone, week_start, enabled, fail_open, created_at, updated_at";

impl Admin {
    /// Creates the API on a pool, rendering reports for [`DEFAULT_HORIZON_DAYS`] days.
    pub fn new(pool: Pool) -> Self {
        Admin {
            pool,
            horizon_days: DEFAULT_HORIZON_DAYS,
        }
    }

    /// Creates the API on the connection pool of a token store.
    pub fn from_store(store: &PostgresStore) -> Self {
        Admin::new(store.pool().clone())
    }

    /// Sets how many days a rendered report covers, from 1 to
    /// [`MAX_HORIZON_DAYS`](crate::report::MAX_HORIZON_DAYS); a value outside is brought to the
    /// nearer bound.
    pub fn with_horizon_days(mut self, days: u32) -> Self {
        self.horizon_days = days.clamp(1, crate::report::MAX_HORIZON_DAYS);
        self
    }

    /// Returns the number of days a rendered report covers.
    pub fn horizon_days(&self) -> u32 {
        self.horizon_days
    }

    /// Returns the connection pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Validates a limit, renders its schedule's report, stores both (replacing the tenant's row
    /// for the tool, if any) and notifies every listener, in one transaction.
    ///
    /// # Errors
    ///
    /// [`AdminError::InvalidLimit`] for an invalid field. [`AdminError::InvalidSchedule`] with
    /// the `FILE:LINE:COL` diagnostics of a schedule that does not parse, where the file is
    /// named `TENANT/TOOL.tjp`. [`AdminError::Report`] when no report can be rendered. Nothing is
    /// stored in these cases.
    pub async fn upsert(&self, spec: &LimitSpec) -> Result<WriteOutcome, AdminError> {
        validate_names(&spec.tenant, &spec.tool)?;
        if let Some(schedule) = &spec.schedule
            && schedule.contains('\0')
        {
            return Err(AdminError::InvalidLimit(
                "invalid schedule: remove its NUL character, which PostgreSQL cannot store".into(),
            ));
        }
        if let Some(message) = spec
            .timezone
            .and_then(|zone| crate::calendar::zone_name_error(zone.name()))
        {
            return Err(AdminError::InvalidLimit(message));
        }
        let static_capacity = spec.static_capacity();
        for (kind, limit) in static_capacity.limits() {
            if limit > i32::MAX as u64 {
                return Err(AdminError::InvalidLimit(format!(
                    "invalid per-{kind} limit {limit}: the most a static limit stores is {}",
                    i32::MAX
                )));
            }
        }

        let rendered = match &spec.schedule {
            Some(definition) => {
                let (admin, spec, definition) = (self.clone(), spec.clone(), definition.clone());
                Some(off_runtime(move || admin.render_spec(&spec, &definition)).await?)
            }
            None => {
                if spec.resource.is_some() {
                    return Err(AdminError::InvalidLimit(
                        "a resource was given without a schedule: add the schedule or leave the resource out".into(),
                    ));
                }
                None
            }
        };

        let (timezone, week_start) = match &rendered {
            Some(preview) => (preview.report.timezone, preview.report.week_start),
            None => (
                spec.timezone.unwrap_or(Tz::UTC),
                spec.week_start.unwrap_or(Weekday::Mon),
            ),
        };
        let (report_json, valid_until) = match &rendered {
            Some(preview) => (
                Some(serde_json::to_value(&preview.report).map_err(|error| {
                    AdminError::InvalidLimit(format!("cannot encode the report as JSON: {error}"))
                })?),
                Some(preview.report.valid_until),
            ),
            None => (None, None),
        };

        let mut client = AdminConnection::get(&self.pool).await?;
        let transaction = client.transaction().await?;
        let row = transaction
            .query_one(
                &format!(
                    "INSERT INTO highway.tool_rate_limits AS l (tenant_id, tool_name, limit_scope, \
                       requests_per_minute, requests_per_hour, requests_per_day, schedule_definition, \
                       schedule_resource, schedule_report, schedule_report_valid_until, timezone, \
                       week_start, enabled, fail_open) \
                     VALUES ($1, $2, $3, $4::bigint, $5::bigint, $6::bigint, $7, $8, $9, $10, $11, $12, $13, $14) \
                     ON CONFLICT (tenant_id, tool_name) DO UPDATE SET \
                       limit_scope = EXCLUDED.limit_scope, \
                       requests_per_minute = EXCLUDED.requests_per_minute, \
                       requests_per_hour = EXCLUDED.requests_per_hour, \
                       requests_per_day = EXCLUDED.requests_per_day, \
                       schedule_definition = EXCLUDED.schedule_definition, \
                       schedule_resource = EXCLUDED.schedule_resource, \
                       schedule_report = EXCLUDED.schedule_report, \
                       schedule_report_valid_until = EXCLUDED.schedule_report_valid_until, \
                       timezone = EXCLUDED.timezone, week_start = EXCLUDED.week_start, \
                       enabled = EXCLUDED.enabled, fail_open = EXCLUDED.fail_open, updated_at = now() \
                     RETURNING {SELECT_COLUMNS}, (l.xmax = 0) AS created"
                ),
                &[
                    &spec.tenant,
                    &spec.tool,
                    &spec.scope.as_str(),
                    &spec.per_minute.map(|n| n as i64),
                    &spec.per_hour.map(|n| n as i64),
                    &spec.per_day.map(|n| n as i64),
                    &spec.schedule,
                    &spec.resource,
                    &report_json,
                    &valid_until,
                    &timezone.name(),
                    &weekday_name::name(week_start),
                    &spec.enabled,
                    &spec.fail_open,
                ],
            )
            .await?;
        notify_change(&transaction, &spec.tenant, &spec.tool).await?;
        transaction.commit().await?;
        client.release();

        // A row that the statement inserted has no deleting or locking transaction yet, so its
        // `xmax` is 0. The conflicting row that `DO UPDATE` replaced is locked by this
        // transaction, so the new version's `xmax` is not.
        let created: bool = row.try_get("created")?;
        let limit = stored_limit(&row)?;
        let warnings = rendered.map(|preview| preview.warnings).unwrap_or_default();
        // A schedule can repeat a warning once per line, so a large one would flood the log.
        for warning in warnings.iter().take(MAX_LOGGED_WARNINGS) {
            tracing::warn!(tenant = %spec.tenant, tool = %spec.tool, "{warning}");
        }
        if warnings.len() > MAX_LOGGED_WARNINGS {
            tracing::warn!(
                tenant = %spec.tenant,
                tool = %spec.tool,
                "{} more warnings of the schedule not logged",
                warnings.len() - MAX_LOGGED_WARNINGS
            );
        }
        tracing::info!(tenant = %spec.tenant, tool = %spec.tool, created, "limit written");
        Ok(WriteOutcome {
            limit,
            warnings,
            created,
        })
    }

    /// Returns the limit stored for exactly this tenant and tool.
    ///
    /// # Errors
    ///
    /// [`AdminError::NotFound`] when there is none, [`AdminError::InvalidLimit`] for an id with a
    /// NUL character.
    pub async fn get(&self, tenant: &str, tool: &str) -> Result<StoredLimit, AdminError> {
        reject_nul("tenant", tenant)?;
        reject_nul("tool", tool)?;
        let client = AdminConnection::get(&self.pool).await?;
        let row = client
            .query_opt(
                &format!("SELECT {SELECT_COLUMNS} FROM highway.tool_rate_limits WHERE tenant_id = $1 AND tool_name = $2"),
                &[&tenant, &tool],
            )
            .await?;
        client.release();
        match row {
            Some(row) => stored_limit(&row),
            None => Err(AdminError::NotFound {
                tenant: tenant.to_owned(),
                tool: tool.to_owned(),
            }),
        }
    }

    /// Returns every stored limit, or those of one tenant, sorted by tenant and tool.
    pub async fn list(&self, tenant: Option<&str>) -> Result<Vec<StoredLimit>, AdminError> {
        if let Some(tenant) = tenant {
            reject_nul("tenant", tenant)?;
        }
        let client = AdminConnection::get(&self.pool).await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {SELECT_COLUMNS} FROM highway.tool_rate_limits \
                     WHERE $1::text IS NULL OR tenant_id = $1 ORDER BY tenant_id, tool_name"
                ),
                &[&tenant],
            )
            .await?;
        client.release();
        rows.iter().map(stored_limit).collect()
    }

    /// Deletes the limit of a tenant and tool and notifies every listener. Calls of the tenant
    /// then follow the default tenant's limit for the tool, if there is one.
    ///
    /// # Errors
    ///
    /// [`AdminError::NotFound`] when there was none, [`AdminError::InvalidLimit`] for an id with a
    /// NUL character.
    pub async fn delete(&self, tenant: &str, tool: &str) -> Result<(), AdminError> {
        reject_nul("tenant", tenant)?;
        reject_nul("tool", tool)?;
        let mut client = AdminConnection::get(&self.pool).await?;
        let transaction = client.transaction().await?;
        let deleted = transaction
            .execute(
                "DELETE FROM highway.tool_rate_limits WHERE tenant_id = $1 AND tool_name = $2",
                &[&tenant, &tool],
            )
            .await?;
        if deleted == 0 {
            transaction.rollback().await?;
            client.release();
            return Err(AdminError::NotFound {
                tenant: tenant.to_owned(),
                tool: tool.to_owned(),
            });
        }
        notify_change(&transaction, tenant, tool).await?;
        transaction.commit().await?;
        client.release();
        tracing::info!(tenant, tool, "limit deleted");
        Ok(())
    }

    /// Renders the report of a schedule without storing anything: `days` days from `from`, an
    /// instant or a date whose local midnight in the resource's zone starts the horizon.
    ///
    /// `file_name` is the name printed in diagnostics.
    pub fn preview(
        &self,
        definition: &str,
        file_name: &str,
        resource: Option<&str>,
        from: impl Into<HorizonStart>,
        days: u32,
    ) -> Result<ReportPreview, AdminError> {
        render(definition, file_name, resource, from, days)
    }

    fn render_spec(&self, spec: &LimitSpec, definition: &str) -> Result<ReportPreview, AdminError> {
        if !spec.static_capacity().is_unlimited() {
            return Err(AdminError::InvalidLimit(
                "per-minute, per-hour and per-day limits do not apply with a schedule: \
                 write them in the schedule's `limits { minutelymax N hourlymax N dailymax N }` block"
                    .into(),
            ));
        }
        let file_name = schedule_file_name(&spec.tenant, &spec.tool);
        let preview = render(
            definition,
            &file_name,
            spec.resource.as_deref(),
            Utc::now(),
            self.horizon_days,
        )?;

        if let Some(zone) = spec.timezone
            && zone != preview.report.timezone
        {
            return Err(AdminError::InvalidLimit(format!(
                "time zone {zone} differs from the schedule's {}: leave the time zone out, or set \
                     `timezone \"{zone}\"` in the schedule's resource if it has a `timezone` of its \
                     own, else in its project",
                preview.report.timezone
            )));
        }
        if let Some(day) = spec.week_start
            && day != preview.report.week_start
        {
            return Err(AdminError::InvalidLimit(format!(
                "week start {} differs from the schedule's {}: leave the week start out or set \
                     `weekstartsmonday` or `weekstartssunday` in the schedule",
                weekday_name::name(day),
                weekday_name::name(preview.report.week_start)
            )));
        }
        Ok(preview)
    }
}

/// Returns [`AdminError::InvalidLimit`] when `value` contains a NUL character, which PostgreSQL's
/// text cannot hold: a query with it would fail as if the database were unavailable.
pub(crate) fn reject_nul(field: &str, value: &str) -> Result<(), AdminError> {
    if value.contains('\0') {
        return Err(AdminError::InvalidLimit(format!(
            "invalid {field} {value:?}: NUL characters are not allowed"
        )));
    }
    Ok(())
}

fn validate_names(tenant: &str, tool: &str) -> Result<(), AdminError> {
    for (field, value) in [("tenant", tenant), ("tool", tool)] {
        if value.trim().is_empty() {
            return Err(AdminError::InvalidLimit(format!(
                "missing {field}: give a non-empty {field} name"
            )));
        }
        if value.len() > MAX_NAME_LEN {
            return Err(AdminError::InvalidLimit(format!(
                "invalid {field} {value:?}: longer than {MAX_NAME_LEN} bytes"
            )));
        }
        // Clients resolve such a segment of `/limits/{tenant}/{tool}` as the current or the
        // parent folder, so no GET or DELETE of the limit would reach it.
        if value == "." || value == ".." {
            return Err(AdminError::InvalidLimit(format!(
                "invalid {field} {value:?}: . and .. cannot be path segments of the admin API's \
                 URLs; choose another {field} name"
            )));
        }
        if value.chars().any(char::is_control) {
            return Err(AdminError::InvalidLimit(format!(
                "invalid {field} {value:?}: control characters are not allowed"
            )));
        }
    }
    Ok(())
}

/// Reads a row selected with [`SELECT_COLUMNS`].
pub(crate) fn stored_limit(row: &Row) -> Result<StoredLimit, AdminError> {
    let tenant: String = row.try_get("tenant_id")?;
    let tool: String = row.try_get("tool_name")?;
    let invalid = |message: String| AdminError::invalid_row(&tenant, &tool, message);

    let scope: String = row.try_get("limit_scope")?;
    let scope = scope
        .parse::<Scope>()
        .map_err(|error| invalid(error.to_string()))?;
    let limit = |column: &str| -> Result<Option<u64>, AdminError> {
        let value: Option<i64> = row.try_get(column)?;
        value
            .map(|n| u64::try_from(n).map_err(|_| invalid(format!("negative {column} {n}"))))
            .transpose()
    };
    let per_minute = limit("per_minute")?;
    let per_hour = limit("per_hour")?;
    let per_day = limit("per_day")?;

    let timezone: String = row.try_get("timezone")?;
    let timezone = timezone
        .parse::<Tz>()
        .map_err(|_| invalid(format!("unknown time zone {timezone:?}")))?;
    let week_start: String = row.try_get("week_start")?;
    let week_start = week_start
        .parse::<Weekday>()
        .map_err(|_| invalid(format!("invalid week start {week_start:?}")))?;

    let definition: Option<String> = row.try_get("schedule_definition")?;
    let schedule = match definition {
        Some(definition) => Some(StoredSchedule {
            definition,
            resource: row.try_get("schedule_resource")?,
            valid_until: row.try_get("schedule_report_valid_until")?,
        }),
        None => None,
    };

    Ok(StoredLimit {
        scope,
        per_minute,
        per_hour,
        per_day,
        schedule,
        timezone,
        week_start,
        enabled: row.try_get("enabled")?,
        fail_open: row.try_get("fail_open")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        tenant,
        tool,
    })
}

pub(crate) mod scope_name {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::policy::Scope;

    pub(crate) fn serialize<S: Serializer>(
        scope: &Scope,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(scope.as_str())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Scope, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

pub(crate) mod weekday_name {
    use chrono::Weekday;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn name(day: Weekday) -> &'static str {
        match day {
            Weekday::Mon => "monday",
            Weekday::Tue => "tuesday",
            Weekday::Wed => "wednesday",
            Weekday::Thu => "thursday",
            Weekday::Fri => "friday",
            Weekday::Sat => "saturday",
            Weekday::Sun => "sunday",
        }
    }

    pub(crate) fn parse(text: &str) -> Result<Weekday, String> {
        text.parse::<Weekday>().map_err(|_| {
            format!("invalid week start {text:?}: expected a weekday such as \"monday\"")
        })
    }

    pub(crate) fn serialize<S: Serializer>(
        day: &Weekday,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(name(*day))
    }

    pub(crate) mod option {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(
            day: &Option<Weekday>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match day {
                Some(day) => serializer.serialize_some(name(*day)),
                None => serializer.serialize_none(),
            }
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<Weekday>, D::Error> {
            let text = Option::<String>::deserialize(deserializer)?;
            text.map(|text| parse(&text).map_err(serde::de::Error::custom))
                .transpose()
        }
    }
}
