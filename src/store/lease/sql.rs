//! The two round trips of a lease: take tokens, give unused ones back.

use std::time::Duration;

use chrono::{DateTime, Utc, Weekday};
use chrono_tz::Tz;

use crate::store::postgres::{
    PostgresStore, RoundTripConnection, database_error, pool_error, query_cached, query_error,
    weekday_name, whole_microseconds,
};
use crate::store::{ScopeKey, StoreError};
use crate::window::WindowKind;

const TAKE: &str = "SELECT window_type, window_limit, request_count, window_start, window_end, granted \
     FROM highway.lease_tool_rate_tokens($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";

const GIVE_BACK: &str = "SELECT highway.return_tool_rate_tokens($1, $2, $3, $4, $5, $6, $7)";

/// One calendar window of a lease, as the database saw it when the lease was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LeasedWindow {
    pub(super) kind: WindowKind,
    pub(super) limit: u64,
    pub(super) start: DateTime<Utc>,
    pub(super) end: DateTime<Utc>,
    /// The tokens the window had left after the latest take, for every worker.
    pub(super) unleased: u64,
}

/// The parameters of a take.
pub(super) struct TakeRequest<'a> {
    pub(super) key: &'a ScopeKey,
    pub(super) want: u64,
    /// The minimum grant: when fewer tokens are available, none are taken.
    pub(super) min: u64,
    /// The tokens the worker holds in these windows already.
    pub(super) held: u64,
    pub(super) share: f64,
    pub(super) windows: &'a [LeasedWindow],
    pub(super) timezone: Tz,
    pub(super) week_start: Weekday,
    /// Whether the windows are those of the request's own instant rather than the store's clock.
    /// Only then may the take create rows of windows that have ended by the database clock.
    pub(super) explicit_instant: bool,
}

/// The result of a take: the tokens granted and every window's state after it.
pub(super) struct Grant {
    pub(super) granted: u64,
    pub(super) windows: Vec<LeasedWindow>,
}

/// Takes up to `request.want` tokens from every window of `request.windows` in one transaction.
pub(super) async fn take(
    store: &PostgresStore,
    request: TakeRequest<'_>,
    timeout: Duration,
) -> Result<Grant, StoreError> {
    let kinds: Vec<&str> = request.windows.iter().map(|w| w.kind.as_str()).collect();
    let limits: Vec<i64> = request.windows.iter().map(|w| to_i64(w.limit)).collect();
    let starts: Vec<DateTime<Utc>> = request.windows.iter().map(|w| w.start).collect();
    let ends: Vec<DateTime<Utc>> = request.windows.iter().map(|w| w.end).collect();
    let (want, min, held) = (
        to_i64(request.want),
        to_i64(request.min),
        to_i64(request.held),
    );
    let week_start = weekday_name(request.week_start);

    let rows = bounded(timeout, async {
        let connection = RoundTripConnection::get(store.pool())
            .await
            .map_err(|error| pool_error(store.pool(), error))?;
        let client = connection.client();
        let outcome = query_cached(
            client,
            TAKE,
            &[
                &request.key.tenant,
                &request.key.tool,
                &request.key.scope,
                &want,
                &min,
                &held,
                &request.share,
                &kinds,
                &limits,
                &starts,
                &ends,
                &request.timezone.name(),
                &week_start,
                &request.explicit_instant,
            ],
        )
        .await;
        connection.release(&outcome);
        outcome.map_err(|error| query_error(error, store.statement_timeout()))
    })
    .await?;

    let mut granted = 0;
    let mut windows = Vec::with_capacity(rows.len());
    for row in &rows {
        let name: &str = row.try_get(0).map_err(database_error)?;
        let kind: WindowKind = name
            .parse()
            .map_err(|error| StoreError::Unavailable(Box::new(error)))?;
        let limit = to_u64(row.try_get(1).map_err(database_error)?);
        let count = to_u64(row.try_get(2).map_err(database_error)?);
        granted = to_u64(row.try_get(5).map_err(database_error)?);
        windows.push(LeasedWindow {
            kind,
            limit,
            start: row.try_get(3).map_err(database_error)?,
            end: row.try_get(4).map_err(database_error)?,
            unleased: limit.saturating_sub(count),
        });
    }
    if windows.len() != request.windows.len() {
        return Err(StoreError::Unavailable(
            format!(
                "the lease function returned {} windows for {} requested",
                windows.len(),
                request.windows.len()
            )
            .into(),
        ));
    }
    Ok(Grant { granted, windows })
}

/// Gives `tokens` back to each window of `windows` still open at `at`.
///
/// Never retried: a give-back whose reply is lost may have been applied, and applying it twice
/// would let the windows admit more than their limits.
pub(super) async fn give_back(
    store: &PostgresStore,
    key: &ScopeKey,
    tokens: u64,
    windows: &[LeasedWindow],
    at: DateTime<Utc>,
    timeout: Duration,
) -> Result<(), StoreError> {
    let kinds: Vec<&str> = windows.iter().map(|w| w.kind.as_str()).collect();
    let starts: Vec<DateTime<Utc>> = windows.iter().map(|w| w.start).collect();
    let tokens = to_i64(tokens);
    let at = whole_microseconds(at);

    bounded(timeout, async {
        let connection = RoundTripConnection::get(store.pool())
            .await
            .map_err(|error| pool_error(store.pool(), error))?;
        let client = connection.client();
        let outcome = query_cached(
            client,
            GIVE_BACK,
            &[
                &key.tenant,
                &key.tool,
                &key.scope,
                &tokens,
                &kinds,
                &starts,
                &at,
            ],
        )
        .await;
        connection.release(&outcome);
        outcome
            .map(|_| ())
            .map_err(|error| query_error(error, store.statement_timeout()))
    })
    .await
}

async fn bounded<T>(
    timeout: Duration,
    call: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(timeout, call)
        .await
        .unwrap_or(Err(StoreError::Timeout(timeout)))
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or_default()
}
