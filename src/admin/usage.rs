//! Usage: how much of each window the counters of a tenant and tool have used, listed in pages.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::connection::AdminConnection;
use super::{Admin, AdminError, PostgresPolicies};
use crate::layer::key::scope_key;
use crate::policy::{PolicySource, Scope};
use crate::window::WindowKind;

/// The number of counters in a page of usage unless the query sets another.
pub const DEFAULT_USAGE_PAGE_SIZE: u32 = 100;

/// The maximum number of counters in a page of usage. It bounds the memory and the time of one
/// query; a caller that wants every counter reads page after page.
pub const MAX_USAGE_PAGE_SIZE: u32 = 1000;

/// The maximum length of a cursor's text, in bytes. A cursor that [`Admin::usage`] returns is far
/// shorter unless a scope key contains thousands of bytes, which PostgreSQL's index of the usage
/// table cannot store anyway.
const MAX_CURSOR_LEN: usize = 8192;

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

/// The filter and the page of an [`Admin::usage`] listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageQuery {
    /// Only this workflow run's counters, for a limit that counts per workflow run.
    pub workflow: Option<String>,
    /// The maximum number of counters in the page, from 1 to [`MAX_USAGE_PAGE_SIZE`].
    pub page_size: u32,
    /// Start after this counter: the [`UsagePage::next`] of the previous page. `None` for the
    /// first page.
    pub after: Option<UsageCursor>,
}

impl Default for UsageQuery {
    fn default() -> Self {
        UsageQuery {
            workflow: None,
            page_size: DEFAULT_USAGE_PAGE_SIZE,
            after: None,
        }
    }
}

impl UsageQuery {
    /// Creates the query of the first page of every counter, with [`DEFAULT_USAGE_PAGE_SIZE`]
    /// counters.
    pub fn new() -> Self {
        UsageQuery::default()
    }

    /// Sets the workflow run whose counters are listed.
    pub fn workflow(mut self, run: impl Into<String>) -> Self {
        self.workflow = Some(run.into());
        self
    }

    /// Sets the maximum number of counters in the page.
    pub fn page_size(mut self, page_size: u32) -> Self {
        self.page_size = page_size;
        self
    }

    /// Sets the cursor after which the page starts.
    pub fn after(mut self, cursor: UsageCursor) -> Self {
        self.after = Some(cursor);
        self
    }
}

/// One page of counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsagePage {
    /// The counters, ordered by scope key, then window kind by its name, then window start.
    pub counts: Vec<WindowCount>,
    /// The cursor of the next page, `None` when this page is the last.
    pub next: Option<UsageCursor>,
}

/// The position of a counter in the order of [`UsagePage::counts`], which a query passes to
/// continue after it.
///
/// Its text form is opaque: URL-safe base64 without padding, so that it fits a query string
/// as is. Because the position is the counter's own key, a page that starts after it is correct
/// however many counters were written or deleted since: no counter that exists throughout is
/// listed twice or left out.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UsageCursor {
    scope_key: String,
    window: WindowKind,
    window_start: DateTime<Utc>,
}

impl UsageCursor {
    fn of(count: &WindowCount) -> Self {
        UsageCursor {
            scope_key: count.scope_key.clone(),
            window: count.window,
            window_start: count.window_start,
        }
    }
}

/// The text inside the base64: `WINDOW.MICROSECONDS.SCOPE_KEY`, the window start in microseconds
/// since the Unix epoch, as PostgreSQL's `TIMESTAMPTZ` stores it.
impl fmt::Display for UsageCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plain = format!(
            "{}.{}.{}",
            self.window.as_str(),
            self.window_start.timestamp_micros(),
            self.scope_key
        );
        f.write_str(&URL_SAFE_NO_PAD.encode(plain))
    }
}

/// The error of a cursor that [`Admin::usage`] did not return.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid cursor {value:?}: {reason}; pass the \"next\" value of the previous page unchanged, \
     or leave the cursor out for the first page"
)]
pub struct ParseUsageCursorError {
    value: String,
    reason: &'static str,
}

impl FromStr for UsageCursor {
    type Err = ParseUsageCursorError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = |reason| ParseUsageCursorError {
            value: text.chars().take(64).collect(),
            reason,
        };
        if text.len() > MAX_CURSOR_LEN {
            return Err(invalid("longer than any cursor a page returns"));
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| invalid("not URL-safe base64"))?;
        let plain = String::from_utf8(bytes).map_err(|_| invalid("not UTF-8 inside"))?;

        let mut parts = plain.splitn(3, '.');
        let (Some(window), Some(micros), Some(scope_key)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("not a position in the usage listing"));
        };
        let window = window
            .parse::<WindowKind>()
            .map_err(|_| invalid("unknown window kind inside"))?;
        let window_start = micros
            .parse::<i64>()
            .ok()
            .and_then(DateTime::from_timestamp_micros)
            .ok_or_else(|| invalid("invalid window start inside"))?;
        // PostgreSQL's text cannot hold a NUL character, and a query with one fails as if the
        // database were unavailable.
        if scope_key.contains('\0') {
            return Err(invalid("NUL character inside"));
        }
        Ok(UsageCursor {
            scope_key: scope_key.to_owned(),
            window,
            window_start,
        })
    }
}

impl Serialize for UsageCursor {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for UsageCursor {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Admin {
    /// Returns a page of the counters a call of `tenant` to `tool` is charged to, in their
    /// current windows, ordered by scope key, then window kind by its name (`day`, `hour`,
    /// `minute`, `month`, `week`), then window start. That is the order of the usage table's
    /// primary key, so PostgreSQL reads a page from its index, starting at the cursor, with no
    /// sort.
    ///
    /// The policy in force decides which counters those are: the `global` counter, the tenant's
    /// counter, or the tenant's counters of every workflow run (only `query.workflow`'s when it
    /// is given). Without a policy, every counter of the tenant and tool is listed. Windows that
    /// have ended are left out.
    ///
    /// # Errors
    ///
    /// [`AdminError::InvalidPage`] for a page size outside 1 to [`MAX_USAGE_PAGE_SIZE`],
    /// [`AdminError::InvalidLimit`] for an id with a NUL character.
    pub async fn usage(
        &self,
        tenant: &str,
        tool: &str,
        query: &UsageQuery,
    ) -> Result<UsagePage, AdminError> {
        super::limits::reject_nul("tenant", tenant)?;
        super::limits::reject_nul("tool", tool)?;
        if !(1..=MAX_USAGE_PAGE_SIZE).contains(&query.page_size) {
            return Err(AdminError::InvalidPage(format!(
                "invalid page size {}: expected 1 to {MAX_USAGE_PAGE_SIZE}",
                query.page_size
            )));
        }
        let workflow = query.workflow.as_deref();
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

        // Reading one row more than the page size shows whether another page follows.
        let fetch = i64::from(query.page_size) + 1;
        let client = AdminConnection::get(self.pool()).await?;
        let rows = match &query.after {
            None => {
                client
                    .query(
                        "SELECT scope_key, window_type, window_start, window_end, \
                           request_count::bigint AS used \
                         FROM highway.tool_rate_limit_usage \
                         WHERE tenant_id = $1 AND tool_name = $2 \
                           AND ($3::text IS NULL OR scope_key = $3) AND starts_with(scope_key, $4) \
                           AND window_end > now() \
                         ORDER BY scope_key, window_type, window_start \
                         LIMIT $5",
                        &[&policy_tenant, &tool, &key, &prefix, &fetch],
                    )
                    .await?
            }
            Some(after) => {
                client
                    .query(
                        "SELECT scope_key, window_type, window_start, window_end, \
                           request_count::bigint AS used \
                         FROM highway.tool_rate_limit_usage \
                         WHERE tenant_id = $1 AND tool_name = $2 \
                           AND ($3::text IS NULL OR scope_key = $3) AND starts_with(scope_key, $4) \
                           AND window_end > now() \
                           AND (scope_key, window_type, window_start) > ($6, $7, $8) \
                         ORDER BY scope_key, window_type, window_start \
                         LIMIT $5",
                        &[
                            &policy_tenant,
                            &tool,
                            &key,
                            &prefix,
                            &fetch,
                            &after.scope_key,
                            &after.window.as_str(),
                            &after.window_start,
                        ],
                    )
                    .await?
            }
        };
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

        let page_size = query.page_size as usize;
        let next = if counts.len() > page_size {
            counts.truncate(page_size);
            counts.last().map(UsageCursor::of)
        } else {
            None
        };
        Ok(UsagePage { counts, next })
    }
}
