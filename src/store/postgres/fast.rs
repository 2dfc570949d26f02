//! The fast path of consumes: one plain statement that charges the usage rows of one call, or of a
//! batch of calls, without a PL/pgSQL function in between.
//!
//! The statement admits its calls only when every row has room for them. When a row has no room,
//! or the caller's window bounds do not contain the database clock's `now()`, it calls
//! `highway.rollback_fast_consume`, whose error (SQLSTATE `HW001`) rolls back the whole statement:
//! none of its charges commits. The batch statement also returns, without an error, when it could
//! charge no row at all; a batch of one key's calls, which takes the single-call statement, raises
//! the error in that case too. Either way the calls are then decided again by
//! `highway.consume_tool_rate_tokens` or `highway.consume_tool_rate_tokens_batch`, which handle
//! rejections and compute the windows by the database clock.
//!
//! PostgreSQL logs the rollback's error like any other error. So that a key over its limit does not
//! log one per call, [`Rejections`] remembers the keys whose calls were rejected and sends their
//! calls straight to the functions until the refusing window ends.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Object;
use foldhash::fast::RandomState;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use super::plan::WindowPlan;
use super::{CONSUME, WindowRow, database_error, query_cached};
use crate::store::{ScopeKey, StoreError};
use crate::window::WindowKind;

/// The SQLSTATE of `highway.rollback_fast_consume`.
const ROLLED_BACK: &str = "HW001";

/// How many times a call that the consume function lost to a deadlock is sent again before the
/// deadlock is its error.
const FUNCTION_DEADLOCK_RETRIES: u32 = 3;

/// Returns the statement that charges every window of one call with `windows` windows (1 to 5),
/// in the order given: shortest first, the lock order.
///
/// `$1` to `$3` are the ids, `$4` the cost, and `$5` and `$6` the window types and limits. `$7` is
/// true when the bounds come from the request's own instant, and false when they must contain the
/// database clock's `now()`. Each window's start and end follow, from `$8` on. A window without
/// room, or bounds without `now()`, raise the rollback error at once, so the statement either
/// charges every window or none.
///
/// The rows are a VALUES list, which PostgreSQL 15 inserts in the order listed; it costs the server
/// less than `unnest` and a sort. NOTE: PostgreSQL documents no order for the rows of an INSERT. If
/// it ever took them out of order, two calls of one key could deadlock: the server then cancels one
/// statement, and its call is decided again by the function, like a rollback.
fn fast_consume_statement(windows: usize) -> String {
    let rows: Vec<String> = (0..windows)
        .map(|window| {
            let start = 8 + 2 * window;
            format!(
                "(($5::text[])[{index}], ${start}::timestamptz, ${end}::timestamptz)",
                index = window + 1,
                end = start + 1,
            )
        })
        .collect();
    format!(
        "INSERT INTO highway.tool_rate_limit_usage AS u
    (tenant_id, tool_name, scope_key, window_type, window_start, window_end, request_count,
     last_updated)
SELECT $1::text, $2::text, $3::text, w.kind, w.start_at, w.end_at, $4::bigint, now()
FROM (VALUES {rows}) AS w(kind, start_at, end_at)
WHERE CASE
    WHEN $4::bigint <= ALL ($6::bigint[])
        AND ($7::boolean OR (w.start_at <= now() AND now() < w.end_at)) THEN TRUE
    ELSE highway.rollback_fast_consume()
END
ON CONFLICT (tenant_id, tool_name, scope_key, window_type, window_start)
DO UPDATE SET
    request_count = u.request_count + EXCLUDED.request_count,
    last_updated = EXCLUDED.last_updated
WHERE CASE
    WHEN u.request_count
        <= ($6::bigint[])[array_position($5::text[], u.window_type)] - EXCLUDED.request_count
        THEN TRUE
    ELSE highway.rollback_fast_consume()
END
RETURNING u.window_type, u.request_count",
        rows = rows.join(", ")
    )
}

/// The statements of [`fast_consume_statement`] for 1 to 5 windows.
static FAST_CONSUME: LazyLock<[String; 5]> =
    LazyLock::new(|| std::array::from_fn(|index| fast_consume_statement(index + 1)));

/// Charges distinct usage rows, each with the total cost of the batch's calls that use it, in the
/// order given (the lock order), when every row stays within its limit. `$9` is true for each row
/// whose bounds must contain the database clock's `now()`.
///
/// Returns one row: whether every row was charged (FALSE: none was), and each row's count after
/// the charge, in the order given.
const FAST_CONSUME_BATCH: &str = "
WITH r AS MATERIALIZED (
    SELECT *
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
            $6::timestamptz[], $7::bigint[], $8::bigint[], $9::boolean[])
        WITH ORDINALITY AS r(tenant, tool, scope, kind, start_at, end_at, demand, row_limit,
            by_database_clock, ord)
), charged AS (
    INSERT INTO highway.tool_rate_limit_usage AS u
        (tenant_id, tool_name, scope_key, window_type, window_start, window_end, request_count,
         last_updated)
    SELECT r.tenant, r.tool, r.scope, r.kind, r.start_at, r.end_at, r.demand, now()
    FROM r
    WHERE r.demand <= r.row_limit
        AND (NOT r.by_database_clock OR (r.start_at <= now() AND now() < r.end_at))
    ORDER BY r.ord
    ON CONFLICT (tenant_id, tool_name, scope_key, window_type, window_start)
    DO UPDATE SET
        request_count = u.request_count + EXCLUDED.request_count,
        last_updated = EXCLUDED.last_updated
    WHERE u.request_count <= 9223372036854775807 - EXCLUDED.request_count
    RETURNING u.tenant_id, u.tool_name, u.scope_key, u.window_type, u.window_start,
        u.request_count
)
SELECT
    CASE
        WHEN count(*) = cardinality($1::text[]) AND bool_and(c.request_count <= r.row_limit)
            THEN TRUE
        WHEN count(*) = 0 THEN FALSE
        ELSE highway.rollback_fast_consume()
    END,
    array_agg(c.request_count ORDER BY r.ord)
FROM charged c
JOIN r ON c.tenant_id = r.tenant AND c.tool_name = r.tool AND c.scope_key = r.scope
    AND c.window_type = r.kind AND c.window_start = r.start_at";

/// The maximum combined length in bytes of a key's tenant, tool and scope ids that fits in the
/// usage table's primary key whatever the ids contain.
///
/// A primary key entry contains the three ids, and a B-tree entry of PostgreSQL (with its default
/// 8 kB pages) takes at most 2,704 bytes. The entry's headers, alignment, window type and window
/// start take at most 58 bytes of that. Longer ids fit only when PostgreSQL can compress them.
pub(super) const ALWAYS_INDEXED_KEY_BYTES: usize = 2_600;

/// Inserts a row for each window type in `$4` of the key `$1`, `$2`, `$3`, at a window start
/// that no call uses (`-infinity`), so that PostgreSQL builds the rows' primary key entries.
/// [`Sender::check_key_indexed`] runs it in a transaction that it rolls back.
const PROBE_KEY: &str = "INSERT INTO highway.tool_rate_limit_usage
    (tenant_id, tool_name, scope_key, window_type, window_start, window_end, request_count,
     last_updated)
SELECT $1::text, $2::text, $3::text, kind, '-infinity', '-infinity', 0, now()
FROM unnest($4::text[]) AS kind
ON CONFLICT (tenant_id, tool_name, scope_key, window_type, window_start) DO NOTHING";

const CONSUME_BATCH: &str = "SELECT call_index, window_type, window_limit, request_count, window_end, admitted \
     FROM highway.consume_tool_rate_tokens_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

/// One consume, with everything the database needs. A call that waits in a queue owns its key, and
/// one that goes out at once borrows its caller's.
pub(super) struct Call<'k> {
    pub(super) key: Cow<'k, ScopeKey>,
    /// The hash of `key`, which identifies the key in [`Rejections`] and in the batching of
    /// [`super::batch`]. Two keys with one hash only share those queues, never a counter.
    pub(super) key_hash: u64,
    pub(super) cost: i64,
    pub(super) plan: WindowPlan,
    pub(super) timezone: &'static str,
    pub(super) week_start: &'static str,
}

impl Call<'_> {
    /// Returns the call with a key of its own, to wait in a queue.
    pub(super) fn into_owned(self) -> Call<'static> {
        Call {
            key: Cow::Owned(self.key.into_owned()),
            key_hash: self.key_hash,
            cost: self.cost,
            plan: self.plan,
            timezone: self.timezone,
            week_start: self.week_start,
        }
    }

    fn kind_names(&self) -> &[&'static str] {
        self.plan.kind_names()
    }

    /// Returns whether the fast statement cannot admit the call, because a window's limit is below
    /// the cost (a limit of 0).
    fn over_a_limit(&self) -> bool {
        self.plan.limits().iter().any(|&limit| limit < self.cost)
    }
}

/// The connection and settings that one round trip needs.
pub(super) struct Sender<'a> {
    pub(super) client: &'a Object,
    pub(super) statement_timeout: Duration,
    pub(super) rejections: &'a Rejections,
}

impl Sender<'_> {
    fn query_error(&self, error: tokio_postgres::Error) -> StoreError {
        super::query_error(error, self.statement_timeout)
    }

    /// Consumes for one call: the fast statement, then the consume function when the statement
    /// charged nothing or rolled back.
    pub(super) async fn consume_one(&self, call: &Call<'_>) -> Result<Vec<WindowRow>, StoreError> {
        let statement = call
            .plan
            .kinds()
            .len()
            .checked_sub(1)
            .and_then(|index| FAST_CONSUME.get(index))
            .filter(|_| !call.over_a_limit())
            .filter(|_| !self.rejections.recently_rejected(call));
        if let Some(statement) = statement {
            match self.fast_one(call, statement).await {
                Ok(windows) => return Ok(windows),
                Err(error) if rolled_back(&error) => {}
                Err(error) => return Err(self.query_error(error)),
            }
        }

        let windows = self.decide_with_function(call, true).await?;
        self.rejections.record(call, &windows);
        Ok(windows)
    }

    /// Checks, for a peek, which writes no row, that the usage table's primary key can index the
    /// rows of `call`'s key, and returns the error a consume would get when it cannot.
    ///
    /// Keys of at most [`ALWAYS_INDEXED_KEY_BYTES`] always fit. For a longer key, whether its
    /// entries fit depends on how well PostgreSQL compresses its ids, so the check inserts the
    /// key's rows in a transaction and rolls it back: three round trips, for long keys only.
    pub(super) async fn check_key_indexed(&self, call: &Call<'_>) -> Result<(), StoreError> {
        let key = &call.key;
        if key.tenant.len() + key.tool.len() + key.scope.len() <= ALWAYS_INDEXED_KEY_BYTES {
            return Ok(());
        }

        self.client
            .batch_execute("BEGIN")
            .await
            .map_err(|error| self.query_error(error))?;
        let kinds = call.kind_names();
        let probe = query_cached(
            self.client,
            PROBE_KEY,
            &[&key.tenant, &key.tool, &key.scope, &kinds],
        )
        .await;
        self.client
            .batch_execute("ROLLBACK")
            .await
            .map_err(|error| self.query_error(error))?;
        probe.map(drop).map_err(|error| self.query_error(error))
    }

    /// Decides `call` with `highway.consume_tool_rate_tokens`, and charges it when `consume` is
    /// set and every window has room.
    pub(super) async fn decide_with_function(
        &self,
        call: &Call<'_>,
        consume: bool,
    ) -> Result<Vec<WindowRow>, StoreError> {
        let kinds = call.kind_names();
        let at = call.plan.at();
        let parameters: [&(dyn ToSql + Sync); 12] = [
            &call.key.tenant,
            &call.key.tool,
            &call.key.scope,
            &call.cost,
            &kinds,
            &call.plan.limits(),
            &at,
            &call.plan.starts(),
            &call.plan.ends(),
            &call.timezone,
            &call.week_start,
            &consume,
        ];
        let mut deadlocks = 0;
        let rows = loop {
            match query_cached(self.client, CONSUME, &parameters).await {
                Ok(rows) => break rows,
                // The function locks rows in the fixed order, so only a session that locks them in
                // another order can deadlock with it. The server then rolls the function's
                // transaction back, and the call can be sent again.
                Err(error)
                    if error.code() == Some(&SqlState::T_R_DEADLOCK_DETECTED)
                        && deadlocks < FUNCTION_DEADLOCK_RETRIES =>
                {
                    deadlocks += 1;
                    tracing::debug!(
                        tenant = %call.key.tenant,
                        tool = %call.key.tool,
                        scope = %call.key.scope,
                        deadlocks,
                        "the consume function deadlocked with another session; sending the call again"
                    );
                }
                Err(error) => return Err(self.query_error(error)),
            }
        };
        rows.iter()
            .map(|row| WindowRow::from_columns(row, 0))
            .collect()
    }

    /// Runs `statement`, the fast statement for the number of windows of `call`.
    async fn fast_one(
        &self,
        call: &Call<'_>,
        statement: &str,
    ) -> Result<Vec<WindowRow>, tokio_postgres::Error> {
        let kinds = call.kind_names();
        let limits = call.plan.limits();
        let by_request_instant = call.plan.at().is_some();
        let mut parameters: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(7 + 2 * kinds.len());
        parameters.extend([
            &call.key.tenant as &(dyn ToSql + Sync),
            &call.key.tool,
            &call.key.scope,
            &call.cost,
            &kinds,
            &limits,
            &by_request_instant,
        ]);
        for (start, end) in call.plan.starts().iter().zip(call.plan.ends()) {
            parameters.push(start);
            parameters.push(end);
        }
        let rows = query_cached(self.client, statement, &parameters).await?;

        // Every window is charged or the statement fails, so each has its row.
        let mut counts = [0_i64; WindowKind::ALL.len()];
        for row in &rows {
            let name: &str = row.try_get(0)?;
            if let Some(index) = kinds.iter().position(|kind| *kind == name) {
                counts[index] = row.try_get(1)?;
            }
        }
        Ok(call
            .plan
            .kinds()
            .iter()
            .zip(limits)
            .zip(call.plan.ends())
            .zip(counts)
            .map(|(((&kind, &limit), &reset_at), count)| WindowRow {
                kind,
                limit: u64::try_from(limit).unwrap_or_default(),
                count: u64::try_from(count).unwrap_or_default(),
                reset_at,
                admitted: true,
            })
            .collect())
    }

    /// Consumes for a batch of calls in one transaction: the fast statement, then the batch
    /// function when the statement charged nothing or rolled back. Returns the windows of each
    /// call, in the batch's order.
    pub(super) async fn consume_batch(
        &self,
        calls: &[&Call<'_>],
    ) -> Result<Vec<Vec<WindowRow>>, BatchFailure> {
        let rows = BatchRows::new(calls);
        let skip_fast = rows.over_a_limit()
            || calls
                .iter()
                .any(|call| self.rejections.recently_rejected(call));
        if !skip_fast {
            let outcome = match rows.one_key_statement() {
                Some(statement) => self.fast_one_key(calls, &rows, statement).await,
                None => self.fast_batch(calls, &rows).await,
            };
            match outcome {
                Ok(Some(Ok(windows))) => return Ok(windows),
                // The statement committed, so its calls must not be sent again.
                Ok(Some(Err(error))) => {
                    return Err(BatchFailure {
                        error,
                        charged_nothing: false,
                    });
                }
                Ok(None) => {}
                Err(error) if rolled_back(&error) => {}
                Err(error) => return Err(self.batch_failure(error)),
            }
        }

        let per_call = self.batch_function(calls).await?;
        for (call, windows) in calls.iter().zip(&per_call) {
            self.rejections.record(call, windows);
        }
        Ok(per_call)
    }

    /// Runs the fast statement for a batch; `None` when it charged nothing, and an inner error when
    /// it committed but its reply cannot be read.
    async fn fast_batch(
        &self,
        calls: &[&Call<'_>],
        rows: &BatchRows<'_>,
    ) -> Result<Option<Result<Vec<Vec<WindowRow>>, StoreError>>, tokio_postgres::Error> {
        let replies = query_cached(
            self.client,
            FAST_CONSUME_BATCH,
            &[
                &rows.tenants,
                &rows.tools,
                &rows.scopes,
                &rows.kinds,
                &rows.starts,
                &rows.ends,
                &rows.demands,
                &rows.limits,
                &rows.by_database_clock,
            ],
        )
        .await?;
        // The statement aggregates without GROUP BY, so it returns exactly one row.
        let Some(row) = replies.first() else {
            return Ok(Some(Err(StoreError::Unavailable(
                "the fast batch statement returned no row".into(),
            ))));
        };
        if row.try_get::<_, Option<bool>>(0)? != Some(true) {
            return Ok(None);
        }
        let after: Vec<i64> = match row.try_get(1) {
            Ok(after) => after,
            Err(error) => return Ok(Some(Err(database_error(error)))),
        };
        if after.len() != rows.demands.len() {
            return Ok(Some(Err(StoreError::Unavailable(
                format!(
                    "the fast batch statement returned {} counts for {} rows",
                    after.len(),
                    rows.demands.len()
                )
                .into(),
            ))));
        }

        Ok(Some(Ok(rows.admitted(calls, &after))))
    }

    /// Runs the single-call statement for a batch whose calls all charge the same rows of one key
    /// (the calls that queued behind a hot key), with their total cost and each row's smallest
    /// limit. For one key's three rows the server ran it 1.4 to 1.75 times as fast as the batch
    /// statement (pgbench, BENCHMARKS.md). `statement` is the one that [`BatchRows::one_key_statement`]
    /// returned. It charges every row or rolls back, so it never returns `None`.
    async fn fast_one_key(
        &self,
        calls: &[&Call<'_>],
        rows: &BatchRows<'_>,
        statement: &str,
    ) -> Result<Option<Result<Vec<Vec<WindowRow>>, StoreError>>, tokio_postgres::Error> {
        let by_request_instant = !rows.by_database_clock.iter().any(|&by_clock| by_clock);
        let mut parameters: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(7 + 2 * rows.kinds.len());
        parameters.extend([
            &rows.tenants[0] as &(dyn ToSql + Sync),
            &rows.tools[0],
            &rows.scopes[0],
            &rows.demands[0],
            &rows.kinds,
            &rows.limits,
            &by_request_instant,
        ]);
        for (start, end) in rows.starts.iter().zip(&rows.ends) {
            parameters.push(start);
            parameters.push(end);
        }
        let replies = query_cached(self.client, statement, &parameters).await?;

        // The statement committed: a reply that cannot be read leaves the charges in place.
        let mut after = vec![0_i64; rows.kinds.len()];
        for reply in &replies {
            let read = reply
                .try_get::<_, &str>(0)
                .and_then(|name| Ok((name, reply.try_get::<_, i64>(1)?)));
            let (name, count) = match read {
                Ok(read) => read,
                Err(error) => return Ok(Some(Err(database_error(error)))),
            };
            if let Some(row) = rows.kinds.iter().position(|kind| *kind == name) {
                after[row] = count;
            }
        }
        Ok(Some(Ok(rows.admitted(calls, &after))))
    }

    /// Maps a failed statement of a batch. Only an error that the server reported shows that the
    /// statement's transaction rolled back: when the connection breaks instead, the transaction
    /// may have committed before the reply was lost.
    fn batch_failure(&self, error: tokio_postgres::Error) -> BatchFailure {
        BatchFailure {
            charged_nothing: error.as_db_error().is_some(),
            error: self.query_error(error),
        }
    }

    /// Decides a batch with `highway.consume_tool_rate_tokens_batch`.
    async fn batch_function(
        &self,
        calls: &[&Call<'_>],
    ) -> Result<Vec<Vec<WindowRow>>, BatchFailure> {
        let items: usize = calls.iter().map(|call| call.plan.kinds().len()).sum();
        let mut call_numbers = Vec::with_capacity(items);
        let mut tenants = Vec::with_capacity(items);
        let mut tools = Vec::with_capacity(items);
        let mut scopes = Vec::with_capacity(items);
        let mut costs = Vec::with_capacity(items);
        let mut kinds = Vec::with_capacity(items);
        let mut limits = Vec::with_capacity(items);
        let mut starts: Vec<Option<DateTime<Utc>>> = Vec::with_capacity(items);
        let mut ends: Vec<Option<DateTime<Utc>>> = Vec::with_capacity(items);
        let mut timezones = Vec::with_capacity(items);
        let mut week_starts = Vec::with_capacity(items);

        for (index, call) in calls.iter().enumerate() {
            let number = i32::try_from(index + 1).unwrap_or(i32::MAX);
            for (window, kind) in call.plan.kinds().iter().enumerate() {
                call_numbers.push(number);
                tenants.push(call.key.tenant.as_str());
                tools.push(call.key.tool.as_str());
                scopes.push(call.key.scope.as_str());
                costs.push(call.cost);
                kinds.push(kind.as_str());
                limits.push(call.plan.limits()[window]);
                // The batch function computes the database clock's windows once per batch.
                starts.push(call.plan.at().map(|_| call.plan.starts()[window]));
                ends.push(call.plan.at().map(|_| call.plan.ends()[window]));
                timezones.push(call.timezone);
                week_starts.push(call.week_start);
            }
        }

        let rows = query_cached(
            self.client,
            CONSUME_BATCH,
            &[
                &call_numbers,
                &tenants,
                &tools,
                &scopes,
                &costs,
                &kinds,
                &limits,
                &starts,
                &ends,
                &timezones,
                &week_starts,
            ],
        )
        .await
        .map_err(|error| self.batch_failure(error))?;

        let mut per_call: Vec<Vec<WindowRow>> = calls
            .iter()
            .map(|call| Vec::with_capacity(call.plan.kinds().len()))
            .collect();
        // The transaction committed, so a reply that cannot be read leaves the charges in place.
        let committed = |error: StoreError| BatchFailure {
            error,
            charged_nothing: false,
        };
        for row in &rows {
            let number: i32 = row
                .try_get(0)
                .map_err(|error| committed(database_error(error)))?;
            let window = WindowRow::from_columns(row, 1).map_err(committed)?;
            let slot = usize::try_from(number - 1)
                .ok()
                .and_then(|index| per_call.get_mut(index))
                .ok_or_else(|| {
                    committed(StoreError::Unavailable(
                        format!("the database returned an unknown call {number}").into(),
                    ))
                })?;
            slot.push(window);
        }
        Ok(per_call)
    }
}

/// A batch's failed round trip.
pub(super) struct BatchFailure {
    pub(super) error: StoreError,
    /// Whether the failure shows that the batch charged nothing, so that its calls can be sent
    /// again. It is false when the outcome is unknown: a connection that broke after the commit.
    pub(super) charged_nothing: bool,
}

/// Returns whether the fast statement failed as a whole and left no charge, so that the consume
/// functions can decide its calls.
fn rolled_back(error: &tokio_postgres::Error) -> bool {
    match error.code() {
        Some(code) => code.code() == ROLLED_BACK || *code == SqlState::T_R_DEADLOCK_DETECTED,
        None => false,
    }
}

/// The distinct usage rows of a batch, sorted in lock order, as the fast statement's parameters.
struct BatchRows<'a> {
    tenants: Vec<&'a str>,
    tools: Vec<&'a str>,
    scopes: Vec<&'a str>,
    kinds: Vec<&'static str>,
    starts: Vec<DateTime<Utc>>,
    /// The earliest end that a call of the batch gives each row. Calendars whose windows start
    /// together share a row but may end apart (London's day and the UTC day on 29 March 2026), and
    /// a row checked by the database clock must contain `now()` in the window of every call.
    ends: Vec<DateTime<Utc>>,
    /// The total cost of the batch's calls in each row.
    demands: Vec<i64>,
    /// The smallest limit that a call of the batch gives each row: when the total stays within
    /// it, every call stays within its own limit.
    limits: Vec<i64>,
    by_database_clock: Vec<bool>,
    /// The row of each window of each call, in the batch's order.
    row_of: Vec<Vec<usize>>,
    /// Whether a row's total cost does not fit an `i64`, so no limit can hold it.
    overflowed: bool,
}

/// A usage row's identity in lock order: the ids in byte order (as `COLLATE "C"` sorts them), the
/// window kind from minute to month, and the window start. The batch function sorts the same way.
type RowKey<'a> = (&'a str, &'a str, &'a str, WindowKind, DateTime<Utc>);

/// Returns the usage row of a call's window.
fn row_key<'a>(call: &'a Call<'a>, window: usize) -> RowKey<'a> {
    (
        call.key.tenant.as_str(),
        call.key.tool.as_str(),
        call.key.scope.as_str(),
        call.plan.kinds()[window],
        call.plan.starts()[window],
    )
}

impl<'a> BatchRows<'a> {
    fn new(calls: &[&'a Call<'a>]) -> Self {
        let mut index: BTreeMap<RowKey<'a>, usize> = BTreeMap::new();
        for call in calls {
            for window in 0..call.plan.kinds().len() {
                index.entry(row_key(call, window)).or_insert(0);
            }
        }
        for (row, slot) in index.values_mut().enumerate() {
            *slot = row;
        }

        let count = index.len();
        let mut rows = BatchRows {
            tenants: Vec::with_capacity(count),
            tools: Vec::with_capacity(count),
            scopes: Vec::with_capacity(count),
            kinds: Vec::with_capacity(count),
            starts: Vec::with_capacity(count),
            ends: vec![DateTime::<Utc>::MAX_UTC; count],
            demands: vec![0; count],
            limits: vec![i64::MAX; count],
            by_database_clock: vec![false; count],
            row_of: Vec::with_capacity(calls.len()),
            overflowed: false,
        };
        for &(tenant, tool, scope, kind, start) in index.keys() {
            rows.tenants.push(tenant);
            rows.tools.push(tool);
            rows.scopes.push(scope);
            rows.kinds.push(kind.as_str());
            rows.starts.push(start);
        }
        for call in calls {
            let mut row_of = Vec::with_capacity(call.plan.kinds().len());
            for window in 0..call.plan.kinds().len() {
                let row = index[&row_key(call, window)];
                rows.ends[row] = rows.ends[row].min(call.plan.ends()[window]);
                rows.demands[row] = match rows.demands[row].checked_add(call.cost) {
                    Some(demand) => demand,
                    None => {
                        rows.overflowed = true;
                        i64::MAX
                    }
                };
                rows.limits[row] = rows.limits[row].min(call.plan.limits()[window]);
                rows.by_database_clock[row] |= call.plan.at().is_none();
                row_of.push(row);
            }
            rows.row_of.push(row_of);
        }
        rows
    }

    /// Returns the single-call statement for the batch's rows when every call charges every row,
    /// each once and in the rows' order: the rows of one key's windows, with every call's windows
    /// starting together. The rows then all have the same total cost.
    fn one_key_statement(&self) -> Option<&'static str> {
        let statement = self
            .kinds
            .len()
            .checked_sub(1)
            .and_then(|index| FAST_CONSUME.get(index))?;
        self.row_of
            .iter()
            .all(|row_of| row_of.iter().copied().eq(0..self.kinds.len()))
            .then_some(statement.as_str())
    }

    /// Returns the windows of each call of a batch that was admitted, from each row's count after
    /// the batch. A call's count in a row is the row's count before the batch plus the costs of
    /// the calls up to and including it, as if the calls had come one by one.
    fn admitted(&self, calls: &[&Call<'_>], after: &[i64]) -> Vec<Vec<WindowRow>> {
        let mut charged_so_far = vec![0_i64; after.len()];
        calls
            .iter()
            .zip(&self.row_of)
            .map(|(call, row_of)| {
                row_of
                    .iter()
                    .enumerate()
                    .map(|(window, &row)| {
                        charged_so_far[row] = charged_so_far[row].saturating_add(call.cost);
                        let count = after[row] - self.demands[row] + charged_so_far[row];
                        WindowRow {
                            kind: call.plan.kinds()[window],
                            limit: u64::try_from(call.plan.limits()[window]).unwrap_or_default(),
                            count: u64::try_from(count).unwrap_or_default(),
                            reset_at: call.plan.ends()[window],
                            admitted: true,
                        }
                    })
                    .collect()
            })
            .collect()
    }

    /// Returns whether the fast statement cannot admit the whole batch, because a row's total cost
    /// passes its limit or does not fit an `i64`.
    fn over_a_limit(&self) -> bool {
        self.overflowed
            || self
                .demands
                .iter()
                .zip(&self.limits)
                .any(|(demand, limit)| demand > limit)
    }
}

/// The maximum number of keys [`Rejections`] remembers. Beyond it, new rejections are not remembered.
const MAX_REMEMBERED_REJECTIONS: usize = 4096;

/// The window that rejected a key's latest decided call.
#[derive(Clone, Copy, Debug)]
struct RejectingWindow {
    /// The end of the window, after which it is forgotten.
    until: DateTime<Utc>,
    kind: WindowKind,
    limit: u64,
    /// The units the window still had free when it rejected the call.
    room: u64,
}

/// The keys whose latest decided call was rejected, each with its rejecting window.
///
/// Until that window ends, their calls skip the fast statement, which would charge their other
/// windows and roll back, and go straight to the consume functions. A call that could now fit still
/// tries the fast statement: its limit for that window is higher (the policy changed), or its cost
/// fits the room that was left. Only the number of round trips and the server log depend on it,
/// never a decision.
pub(super) struct Rejections {
    hasher: RandomState,
    rejecting: Mutex<HashMap<u64, RejectingWindow>>,
}

impl Rejections {
    pub(super) fn new() -> Self {
        Rejections {
            hasher: RandomState::default(),
            rejecting: Mutex::new(HashMap::new()),
        }
    }

    /// Returns the hash that identifies `key` in the batching and here.
    pub(super) fn hash_key(&self, key: &ScopeKey) -> u64 {
        self.hasher.hash_one((&key.tenant, &key.tool, &key.scope))
    }

    /// Returns whether the window that rejected the latest call of `call`'s key would reject `call`
    /// too, judged by the limit and room recorded then.
    fn recently_rejected(&self, call: &Call<'_>) -> bool {
        let mut rejecting = self
            .rejecting
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if rejecting.is_empty() {
            return false;
        }
        let Some(window) = rejecting.get(&call.key_hash).copied() else {
            return false;
        };
        // A call with an instant of its own (a replay) is judged at that instant, so that a
        // replayed window that rejected stays remembered while its calls are replayed.
        if window.until <= call.plan.at().unwrap_or_else(Utc::now) {
            rejecting.remove(&call.key_hash);
            return false;
        }
        drop(rejecting);

        let cost = u64::try_from(call.cost).unwrap_or(u64::MAX);
        call.plan
            .kinds()
            .iter()
            .zip(call.plan.limits())
            .any(|(&kind, &limit)| {
                kind == window.kind
                    && u64::try_from(limit).unwrap_or_default() <= window.limit
                    && cost > window.room
            })
    }

    /// Remembers the window that rejected `call`, when `windows` reject it. Of several rejecting
    /// windows, it keeps the one that ends last.
    fn record(&self, call: &Call<'_>, windows: &[WindowRow]) {
        let cost = u64::try_from(call.cost).unwrap_or(u64::MAX);
        let window = windows
            .iter()
            .filter(|window| !window.admitted && window.count.saturating_add(cost) > window.limit)
            .max_by_key(|window| window.reset_at)
            .map(|window| RejectingWindow {
                until: window.reset_at,
                kind: window.kind,
                limit: window.limit,
                room: window.limit.saturating_sub(window.count),
            });
        let Some(window) = window else {
            return;
        };

        let mut rejecting = self
            .rejecting
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if rejecting.len() >= MAX_REMEMBERED_REJECTIONS {
            let now = Utc::now();
            rejecting.retain(|_, window| window.until > now);
            if rejecting.len() >= MAX_REMEMBERED_REJECTIONS {
                return;
            }
        }
        rejecting.insert(call.key_hash, window);
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn utc(hour: u32, minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, hour, minute, 0)
            .single()
            .expect("a valid instant")
    }

    /// Builds a call with a minute and an hour window at 10:15, charged `cost`, with `limits`.
    fn call(tenant: &str, scope: &str, cost: i64, limits: [i64; 2]) -> Call<'static> {
        let key = ScopeKey {
            tenant: tenant.to_owned(),
            tool: "tools.email.send".to_owned(),
            scope: scope.to_owned(),
        };
        Call {
            key_hash: Rejections::new().hash_key(&key),
            key: Cow::Owned(key),
            cost,
            plan: WindowPlan::of_windows(
                None,
                &[
                    (WindowKind::Minute, limits[0], utc(10, 15), utc(10, 16)),
                    (WindowKind::Hour, limits[1], utc(10, 0), utc(11, 0)),
                ],
            ),
            timezone: "UTC",
            week_start: "monday",
        }
    }

    /// Builds another call of `of`'s key.
    fn again(of: &Call<'_>, cost: i64, limits: [i64; 2]) -> Call<'static> {
        Call {
            key_hash: of.key_hash,
            ..call(&of.key.tenant, &of.key.scope, cost, limits)
        }
    }

    fn window(kind: WindowKind, limit: u64, count: u64, reset_at: DateTime<Utc>) -> WindowRow {
        WindowRow {
            kind,
            limit,
            count,
            reset_at,
            admitted: false,
        }
    }

    #[test]
    fn batch_rows_sort_in_lock_order() {
        // "B" sorts before "a" in byte order, as COLLATE "C" sorts it.
        let calls = [
            call("a", "run-2", 1, [10, 100]),
            call("B", "run-1", 2, [10, 100]),
            call("a", "run-2", 3, [5, 50]),
        ];
        let refs: Vec<&Call<'_>> = calls.iter().collect();
        let rows = BatchRows::new(&refs);

        assert_eq!(rows.tenants, ["B", "B", "a", "a"]);
        assert_eq!(rows.kinds, ["minute", "hour", "minute", "hour"]);
        assert_eq!(
            rows.starts,
            [utc(10, 15), utc(10, 0), utc(10, 15), utc(10, 0)]
        );
        assert_eq!(
            rows.ends,
            [utc(10, 16), utc(11, 0), utc(10, 16), utc(11, 0)]
        );
        assert_eq!(rows.row_of, [vec![2, 3], vec![0, 1], vec![2, 3]]);
    }

    #[test]
    fn batch_rows_sum_costs() {
        let calls = [
            call("acme", "run-1", 1, [10, 100]),
            call("acme", "run-1", 3, [5, 50]),
        ];
        let refs: Vec<&Call<'_>> = calls.iter().collect();
        let rows = BatchRows::new(&refs);

        assert_eq!(rows.demands, [4, 4]);
        assert_eq!(rows.limits, [5, 50]);
        assert_eq!(rows.by_database_clock, [true, true]);
        assert!(!rows.over_a_limit());
    }

    #[test]
    fn batch_rows_over_a_limit() {
        let calls = [
            call("acme", "run-1", 3, [5, 50]),
            call("acme", "run-1", 3, [5, 50]),
        ];
        let refs: Vec<&Call<'_>> = calls.iter().collect();

        assert!(BatchRows::new(&refs).over_a_limit());
    }

    #[test]
    fn one_key_needs_the_same_rows() {
        let first = call("acme", "run-1", 1, [10, 100]);
        let second = again(&first, 2, [5, 50]);
        let refs = [&first, &second];
        let rows = BatchRows::new(&refs);
        assert_eq!(rows.one_key_statement(), Some(FAST_CONSUME[1].as_str()));
        assert_eq!(rows.demands, [3, 3]);

        let other_key = call("acme", "run-2", 1, [10, 100]);
        assert_eq!(
            BatchRows::new(&[&first, &other_key]).one_key_statement(),
            None
        );

        // The same key in the next minute: the calls share the hour row only.
        let next_minute = Call {
            plan: WindowPlan::of_windows(
                None,
                &[
                    (WindowKind::Minute, 10, utc(10, 16), utc(10, 17)),
                    (WindowKind::Hour, 100, utc(10, 0), utc(11, 0)),
                ],
            ),
            ..again(&first, 1, [10, 100])
        };
        assert_eq!(
            BatchRows::new(&[&first, &next_minute]).one_key_statement(),
            None
        );

        // The same key with the minute window only.
        let minute_only = Call {
            plan: WindowPlan::of_windows(
                None,
                &[(WindowKind::Minute, 10, utc(10, 15), utc(10, 16))],
            ),
            ..again(&first, 1, [10, 100])
        };
        assert_eq!(
            BatchRows::new(&[&first, &minute_only]).one_key_statement(),
            None
        );
    }

    #[test]
    fn admitted_batch_counts_calls_in_order() {
        let first = call("acme", "run-1", 2, [10, 100]);
        let second = again(&first, 3, [8, 100]);
        let refs = [&first, &second];
        let rows = BatchRows::new(&refs);

        // Before the batch the minute row counted 4 and the hour row 20.
        let windows = rows.admitted(&refs, &[9, 25]);

        let counts: Vec<Vec<u64>> = windows
            .iter()
            .map(|call| call.iter().map(|window| window.count).collect())
            .collect();
        assert_eq!(counts, [vec![6, 22], vec![9, 25]]);
        assert_eq!(windows[1][0].limit, 8, "each call keeps its own limit");
        assert!(windows.iter().flatten().all(|window| window.admitted));
    }

    #[test]
    fn limit_below_cost_skips_the_fast_statement() {
        assert!(call("acme", "run-1", 1, [0, 50]).over_a_limit());
        assert!(!call("acme", "run-1", 1, [1, 50]).over_a_limit());
    }

    #[test]
    fn rejection_is_remembered_until_its_window_ends() {
        let rejections = Rejections::new();
        let rejected = call("acme", "run-1", 1, [10, 100]);
        let later = Utc::now() + chrono::Duration::minutes(1);

        rejections.record(
            &rejected,
            &[
                window(WindowKind::Minute, 10, 10, later),
                window(
                    WindowKind::Hour,
                    100,
                    10,
                    later + chrono::Duration::hours(1),
                ),
            ],
        );

        assert!(rejections.recently_rejected(&rejected));
        let other = call("acme", "run-2", 1, [10, 100]);
        assert!(!rejections.recently_rejected(&other));
    }

    #[test]
    fn replayed_rejection_lasts_its_window() {
        let replayed_at = |of: &Call<'_>, minute: u32| Call {
            plan: WindowPlan::of_windows(
                Some(utc(10, minute) + chrono::Duration::seconds(30)),
                &[
                    (WindowKind::Minute, 10, utc(10, minute), utc(10, minute + 1)),
                    (WindowKind::Hour, 100, utc(10, 0), utc(11, 0)),
                ],
            ),
            ..again(of, 1, [10, 100])
        };
        let rejections = Rejections::new();
        let first = call("acme", "run-1", 1, [10, 100]);
        let rejected = replayed_at(&first, 15);
        rejections.record(
            &rejected,
            &[window(WindowKind::Minute, 10, 10, utc(10, 16))],
        );

        assert!(
            rejections.recently_rejected(&replayed_at(&first, 15)),
            "the replayed minute has not ended at the replayed instant"
        );
        assert!(
            !rejections.recently_rejected(&replayed_at(&first, 16)),
            "the next replayed minute starts from zero"
        );
    }

    #[test]
    fn raised_limit_tries_the_fast_statement() {
        let rejections = Rejections::new();
        let rejected = call("acme", "run-1", 1, [10, 100]);
        let later = Utc::now() + chrono::Duration::minutes(1);
        rejections.record(&rejected, &[window(WindowKind::Minute, 10, 10, later)]);

        assert!(rejections.recently_rejected(&again(&rejected, 1, [10, 200])));
        assert!(!rejections.recently_rejected(&again(&rejected, 1, [11, 100])));
    }

    #[test]
    fn cost_within_room_tries_fast_statement() {
        let rejections = Rejections::new();
        let rejected = call("acme", "run-1", 5, [10, 100]);
        let later = Utc::now() + chrono::Duration::minutes(1);
        rejections.record(&rejected, &[window(WindowKind::Minute, 10, 8, later)]);

        assert!(rejections.recently_rejected(&again(&rejected, 3, [10, 100])));
        assert!(!rejections.recently_rejected(&again(&rejected, 2, [10, 100])));
    }

    #[test]
    fn refusing_window_that_ends_last_is_remembered() {
        let rejections = Rejections::new();
        let rejected = call("acme", "run-1", 1, [10, 100]);
        let later = Utc::now() + chrono::Duration::minutes(1);
        rejections.record(
            &rejected,
            &[
                window(WindowKind::Minute, 10, 10, later),
                window(
                    WindowKind::Hour,
                    100,
                    100,
                    later + chrono::Duration::hours(1),
                ),
            ],
        );

        assert!(rejections.recently_rejected(&again(&rejected, 1, [20, 100])));
        assert!(!rejections.recently_rejected(&again(&rejected, 1, [10, 200])));
    }

    #[test]
    fn ended_rejection_is_forgotten() {
        let rejections = Rejections::new();
        let rejected = call("acme", "run-1", 1, [10, 100]);
        let earlier = Utc::now() - chrono::Duration::seconds(1);

        rejections.record(&rejected, &[window(WindowKind::Minute, 10, 10, earlier)]);

        assert!(!rejections.recently_rejected(&rejected));
        assert!(rejections.rejecting.lock().unwrap().is_empty());
    }

    #[test]
    fn admitted_call_is_not_remembered() {
        let rejections = Rejections::new();
        let admitted = call("acme", "run-1", 1, [10, 100]);
        let later = Utc::now() + chrono::Duration::minutes(1);
        let mut minute = window(WindowKind::Minute, 10, 3, later);
        minute.admitted = true;

        rejections.record(&admitted, &[minute]);

        assert!(!rejections.recently_rejected(&admitted));
    }

    #[test]
    fn remembered_rejections_are_bounded() {
        let rejections = Rejections::new();
        let later = Utc::now() + chrono::Duration::minutes(1);
        for index in 0..MAX_REMEMBERED_REJECTIONS + 10 {
            let rejected = call("acme", &format!("run-{index}"), 1, [10, 100]);
            rejections.record(&rejected, &[window(WindowKind::Minute, 10, 10, later)]);
        }

        assert_eq!(
            rejections.rejecting.lock().unwrap().len(),
            MAX_REMEMBERED_REJECTIONS
        );
    }
}
