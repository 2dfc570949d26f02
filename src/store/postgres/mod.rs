//! The PostgreSQL token store: one limit shared by every worker of every machine.
//!
//! [`PostgresStore`] counts calls in `highway.tool_rate_limit_usage`, one row per scope key and
//! window. A call is one round trip and one transaction that checks every limited window and
//! charges all of them or none. A plain statement charges the windows when all have room, and the
//! function `highway.consume_tool_rate_tokens` decides the call when one has not (the design is in
//! docs/token-accounting.md). The windows are those of the database clock (`now()` in the
//! policy's time zone), so every worker agrees on when a window ends, unless the request carries
//! an explicit instant.
//!
//! ```no_run
//! use highway_ratelimit::store::postgres::{PostgresConfig, PostgresStore};
//!
//! # async fn run() -> Result<(), highway_ratelimit::store::StoreError> {
//! let store = PostgresStore::new(PostgresConfig::new("postgres://highway@127.0.0.1/highway"))?;
//! store.migrate().await?;
//! # Ok(())
//! # }
//! ```
//!
//! Every call is bounded by the call timeout: a database that does not reply yields
//! [`StoreError::Timeout`], one that refuses connections [`StoreError::Unavailable`]. A
//! connection whose round trip ended early, broke or had its session ended by the server is
//! closed rather than handed to the next call, and so is one whose cleanup batch ended early. A
//! call that times out may still be charged afterwards, as with any network timeout: its query
//! may be on its way, or in a batch already sent. A queued call whose caller stopped waiting is dropped
//! uncharged, also when its batch is still waiting for a pooled connection.
//!
//! The store runs on tokio. Consumes that queued go out in a task spawned on the runtime of one of
//! them: the first on a multi-threaded runtime, or else the first. So a store shared by several
//! runtimes sends each batch on a runtime that one of its callers drives, and a batch with a caller
//! on a multi-threaded runtime goes on when the others stop waiting.
//!
//! NOTE: deadpool-postgres (0.14) drives each connection in a task on the runtime that opened it.
//! A pooled connection opened on a runtime that is no longer driven stalls the calls that get it
//! until their call timeout, after which the store closes it. Share a store across runtimes only
//! while all of them run.

mod batch;
mod config;
mod fast;
mod migrations;
mod plan;
#[cfg(feature = "tls")]
mod tls;

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc, Weekday};
use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime, TimeoutType,
};
use futures_util::future::BoxFuture;
use tokio_postgres::NoTls;
use tokio_postgres::error::{Severity, SqlState};
use tokio_postgres::types::ToSql;

pub use self::config::PostgresConfig;
pub use self::migrations::{MIGRATIONS, Migration};
use self::plan::WindowPlan;
#[cfg(feature = "tls")]
pub use self::tls::root_certificates_config;
use crate::clock::Clock;
use crate::store::{ConsumeRequest, Decision, StoreError, TokenStore, WindowUsage, Windows};
use crate::window::WindowKind;

const CONSUME: &str = "SELECT window_type, window_limit, request_count, window_end, admitted \
     FROM highway.consume_tool_rate_tokens($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

/// The maximum retention a cleanup applies: 1,000 years of 365.25 days.
pub const MAX_RETENTION: Duration = Duration::from_secs(1_000 * 31_557_600);

/// Deletes one batch of ended usage rows, at most [`CLEANUP_BATCH_ROWS`], whose window ended
/// before `$1`, or when `$1` is null more than `$2` seconds before the database clock's now.
const CLEANUP: &str = "SELECT highway.cleanup_tool_rate_limit_usage(\
     coalesce($1::timestamptz, now() - make_interval(secs => $2::float8)), $3::int)";

/// The maximum number of rows a cleanup deletes per statement. One batch took about 30 ms on
/// PostgreSQL 15.20 with 2 shared vCPUs, well within the default statement timeout. A large
/// backlog of ended rows is thus deleted in many short statements, none of which the timeout
/// cancels.
const CLEANUP_BATCH_ROWS: i32 = 5_000;

/// A [`TokenStore`] in PostgreSQL, exact across any number of processes and machines.
///
/// Cloning is cheap: clones share one connection pool.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    call_timeout: Duration,
    statement_timeout: Duration,
    max_batch_size: usize,
    migration_lock_timeout: Duration,
    batcher: Arc<batch::Batcher>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("pool", &self.pool.status())
            .field("call_timeout", &self.call_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .finish()
    }
}

impl PostgresStore {
    /// Creates a store with the settings of `config`. Connections are opened on first use.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the connection string is invalid, names no server (unlike
    /// libpq, tokio-postgres has no default one) or requires TLS (`sslmode=require`) without
    /// [`PostgresConfig::tls`] (feature `tls`), when the statement
    /// timeout is under 1 ms or over [`PostgresConfig::MAX_STATEMENT_TIMEOUT`], or when the call
    /// or connect timeout is zero.
    pub fn new(config: PostgresConfig) -> Result<Self, StoreError> {
        config
            .check_timeouts()
            .map_err(|message| StoreError::Unavailable(message.into()))?;
        let mut pg = config
            .connection()
            .map_err(|message| StoreError::Unavailable(message.into()))?;

        let mut options = pg.get_options().map(str::to_owned).unwrap_or_default();
        options.push_str(&format!(
            " -c statement_timeout={}",
            config.statement_timeout.as_millis()
        ));
        // The statements rely on read committed. An upsert that waited for another transaction's
        // update of its row then works on the committed row, where repeatable read and
        // serializable raise a serialization error. So the store overrides a database or role
        // default of another level. The server splits the options at spaces, and the backslash
        // keeps the space inside the value.
        options.push_str(" -c default_transaction_isolation=read\\ committed");
        // A call waits for a row lock until the statement timeout, so a database or role default
        // `lock_timeout` must not fail contended calls sooner.
        options.push_str(" -c lock_timeout=0");
        if !config.synchronous_commit {
            options.push_str(" -c synchronous_commit=off");
        }
        pg.options(options.trim_start());
        pg.connect_timeout(config.connect_timeout);
        if pg.get_application_name().is_none() {
            pg.application_name("highway-ratelimit");
        }

        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        #[cfg(feature = "tls")]
        let manager = match &config.tls {
            Some(tls) => Manager::from_config(
                pg,
                tokio_postgres_rustls::MakeRustlsConnect::new(tls.clone()),
                manager_config,
            ),
            None => Manager::from_config(pg, NoTls, manager_config),
        };
        #[cfg(not(feature = "tls"))]
        let manager = Manager::from_config(pg, NoTls, manager_config);
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(config.call_timeout))
            .create_timeout(Some(config.connect_timeout))
            .recycle_timeout(Some(config.call_timeout))
            .build()
            .map_err(|error| StoreError::Unavailable(Box::new(error)))?;

        let batcher = batch::Batcher::new(
            pool.clone(),
            config.max_batch_size,
            config.max_batches_in_flight.min(config.pool_size),
            config.statement_timeout,
            config.call_timeout,
        );
        Ok(PostgresStore {
            pool,
            call_timeout: config.call_timeout,
            statement_timeout: config.statement_timeout,
            max_batch_size: config.max_batch_size,
            migration_lock_timeout: config.migration_lock_timeout,
            batcher: Arc::new(batcher),
            clock: config.clock,
        })
    }

    /// Returns the connection pool, for queries of one's own on the same database.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Applies the migrations the database lacks and returns their versions (empty when it is up
    /// to date).
    ///
    /// Safe to run from many workers at once: an advisory lock lets one apply the migrations while
    /// the others wait. Neither the call timeout nor the statement timeout applies, since a
    /// migration may take a while on a large table. A migration that cannot get a lock within
    /// [`PostgresConfig::migration_lock_timeout`] is rolled back and tried again after a pause.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when a migration fails, or still cannot get its locks after
    /// [`PostgresConfig::MIGRATION_LOCK_ATTEMPTS`] attempts. Its message names the migration.
    pub async fn migrate(&self) -> Result<Vec<i32>, StoreError> {
        let client = self.client().await?;
        migrations::apply(client, self.migration_lock_timeout).await
    }

    /// Deletes the usage rows of windows that ended more than `older_than` ago by the database
    /// clock, and returns how many it deleted. Hour rows are kept an hour longer, and day, week and
    /// month rows two days longer. Calendars whose windows start together share a row, and the
    /// window of another time zone may end later than the one that created the row.
    ///
    /// Run it periodically (every few minutes, or hourly) so that the table holds only current
    /// windows plus `older_than` of history. Calls that pass an explicit instant older than the
    /// cutoff (replays) find their windows empty again.
    ///
    /// A consume counts in the windows that contain its transaction's start, so one that started
    /// just before a window ended may still write that window's row for up to its statement
    /// timeout. A row deleted in between would start again from zero. So `older_than` is raised to
    /// at least this store's statement timeout. Workers with a longer statement timeout need an
    /// `older_than` at least as long as theirs.
    ///
    /// An `older_than` beyond [`MAX_RETENTION`] acts as that, since PostgreSQL's timestamps do not
    /// reach further back than 4713 BC.
    ///
    /// It deletes in batches of at most 5,000 rows, each a statement and a transaction of its own
    /// within the call timeout, until a batch comes back short. An error keeps the batches
    /// already deleted.
    pub async fn cleanup_expired(&self, older_than: Duration) -> Result<u64, StoreError> {
        let older_than = self.cleanup_age(older_than);
        self.delete_ended(None, older_than.as_secs_f64()).await
    }

    /// Deletes the usage rows whose window ended before `cutoff` and returns how many. It
    /// deletes in batches like [`cleanup_expired`](Self::cleanup_expired), for tests and replays
    /// that set the time.
    pub(crate) async fn cleanup_before(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
        self.delete_ended(Some(cutoff), 0.0).await
    }

    /// Deletes ended usage rows in batches of [`CLEANUP_BATCH_ROWS`] until a batch comes back
    /// short: those whose window ended before `cutoff`, or without one, more than `age_seconds`
    /// before the database clock's now.
    async fn delete_ended(
        &self,
        cutoff: Option<DateTime<Utc>>,
        age_seconds: f64,
    ) -> Result<u64, StoreError> {
        let cutoff = cutoff.map(whole_microseconds);
        let mut total = 0;
        loop {
            // The connection is closed rather than returned to the pool when the call timeout
            // abandons the batch, since its delete may still be running.
            let deleted = self
                .bounded(async {
                    let connection = self.batcher.connection().await?;
                    let deleted = connection
                        .client()
                        .query_one(CLEANUP, &[&cutoff, &age_seconds, &CLEANUP_BATCH_ROWS])
                        .await
                        .map_err(|error| self.query_error(error))
                        .and_then(|row| row.try_get::<_, i64>(0).map_err(database_error));
                    connection.release(deleted.as_ref().err());
                    Ok(u64::try_from(deleted?).unwrap_or_default())
                })
                .await?;
            total += deleted;
            if deleted < CLEANUP_BATCH_ROWS.unsigned_abs().into() {
                return Ok(total);
            }
        }
    }

    /// Returns the age past which [`cleanup_expired`](Self::cleanup_expired) deletes a window:
    /// `older_than`, raised to the statement timeout and capped at [`MAX_RETENTION`].
    pub fn cleanup_age(&self, older_than: Duration) -> Duration {
        older_than.max(self.statement_timeout).min(MAX_RETENTION)
    }

    async fn client(&self) -> Result<Object, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|error| pool_error(&self.pool, error))
    }

    async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.call_timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Timeout(self.call_timeout)),
        }
    }

    fn query_error(&self, error: tokio_postgres::Error) -> StoreError {
        query_error(error, self.statement_timeout)
    }

    /// Returns the time after which the server cancels one of the store's statements.
    pub(crate) fn statement_timeout(&self) -> Duration {
        self.statement_timeout
    }

    async fn decide(
        &self,
        request: ConsumeRequest<'_>,
        consume: bool,
    ) -> Result<Decision, StoreError> {
        let plan = WindowPlan::new(&request, self.clock.as_ref())?;
        if plan.is_empty() {
            return Ok(Decision::Admitted {
                windows: Windows::new(),
            });
        }

        let cost = i64::try_from(request.cost).unwrap_or(i64::MAX);
        let week_start = weekday_name(request.week_start);
        let timezone = request.timezone.name();

        let call = fast::Call {
            key: Cow::Borrowed(request.key),
            key_hash: self.batcher.rejections().hash_key(request.key),
            cost,
            plan,
            timezone,
            week_start,
        };
        // Awaited in a timeout here rather than through `bounded`, which would store each future
        // a second time and make this future almost twice as large.
        let windows = if !consume {
            tokio::time::timeout(self.call_timeout, self.batcher.peek(&call)).await
        } else if self.max_batch_size > 1 {
            tokio::time::timeout(self.call_timeout, self.batcher.consume(call)).await
        } else {
            tokio::time::timeout(self.call_timeout, self.batcher.consume_alone(&call)).await
        };
        let windows = windows.map_err(|_| StoreError::Timeout(self.call_timeout))??;
        decision_from_windows(windows, request.cost)
    }
}

impl TokenStore for PostgresStore {
    fn consume<'a>(
        &'a self,
        request: ConsumeRequest<'a>,
    ) -> BoxFuture<'a, Result<Decision, StoreError>> {
        Box::pin(self.decide(request, true))
    }

    fn peek<'a>(
        &'a self,
        request: ConsumeRequest<'a>,
    ) -> BoxFuture<'a, Result<Decision, StoreError>> {
        Box::pin(self.decide(request, false))
    }
}

/// One window of a consume function's result.
#[derive(Debug, Clone, Copy)]
struct WindowRow {
    kind: WindowKind,
    limit: u64,
    /// The window's count after the decision.
    count: u64,
    reset_at: DateTime<Utc>,
    admitted: bool,
}

impl WindowRow {
    /// Reads the columns window type, limit, count, window end and admitted, from `first` on.
    fn from_columns(row: &tokio_postgres::Row, first: usize) -> Result<Self, StoreError> {
        let name: &str = row.try_get(first).map_err(database_error)?;
        let kind: WindowKind = name
            .parse()
            .map_err(|error| StoreError::Unavailable(Box::new(error)))?;
        let limit: i64 = row.try_get(first + 1).map_err(database_error)?;
        let count: i64 = row.try_get(first + 2).map_err(database_error)?;
        Ok(WindowRow {
            kind,
            limit: u64::try_from(limit).unwrap_or_default(),
            count: u64::try_from(count).unwrap_or_default(),
            reset_at: row.try_get(first + 3).map_err(database_error)?,
            admitted: row.try_get(first + 4).map_err(database_error)?,
        })
    }
}

/// Builds the decision from the windows of one call, shortest first.
fn decision_from_windows(rows: Vec<WindowRow>, cost: u64) -> Result<Decision, StoreError> {
    let mut windows = Windows::with_capacity(rows.len());
    let mut admitted = true;
    let mut refusing: Option<WindowUsage> = None;

    for WindowRow {
        kind,
        limit,
        count,
        reset_at,
        admitted: row_admitted,
    } in rows
    {
        admitted &= row_admitted;
        let usage = WindowUsage {
            kind,
            limit,
            remaining: limit.saturating_sub(count),
            reset_at,
        };
        // Among the windows without room, the one that resets last decides when to retry.
        if count.saturating_add(cost) > limit
            && refusing.is_none_or(|r| usage.reset_at >= r.reset_at)
        {
            refusing = Some(usage);
        }
        windows.push(usage);
    }

    if admitted {
        return Ok(Decision::Admitted { windows });
    }
    let refusing = refusing.ok_or_else(|| {
        StoreError::Unavailable(
            "the database rejected a call although every window had room".into(),
        )
    })?;
    Ok(Decision::Rejected {
        window: refusing.kind,
        retry_at: refusing.reset_at,
        windows,
    })
}

pub(crate) fn weekday_name(day: Weekday) -> &'static str {
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

/// Returns `at` rounded down to a whole microsecond, the precision of PostgreSQL's timestamps.
///
/// tokio-postgres drops the nanoseconds of an instant towards 2000, so an instant before 2000 would
/// reach the database rounded up, possibly into the next window. Rounded down, it stays in its
/// windows, whose bounds are whole seconds.
pub(crate) fn whole_microseconds(at: DateTime<Utc>) -> DateTime<Utc> {
    let below_microsecond = at.timestamp_subsec_nanos() % 1_000;
    at - chrono::TimeDelta::nanoseconds(i64::from(below_microsecond))
}

/// Runs `sql` as a statement prepared once per connection.
///
/// A prepared statement whose result columns changed since it was prepared, as when a migration
/// changes the type or collation of a column it returns, fails with "cached plan must not change
/// result type" before it runs. The connection then prepares the statement again and runs it once
/// more, so that connections opened before a migration keep working.
pub(crate) async fn query_cached(
    client: &Object,
    sql: &str,
    parameters: &[&(dyn ToSql + Sync)],
) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
    let statement = client.prepare_cached(sql).await?;
    match client.query(&statement, parameters).await {
        Err(error) if changed_result_type(&error) => {
            tracing::info!(
                error = %error,
                "a prepared statement failed with SQLSTATE 0A000, as when a migration changed its result columns; preparing it again"
            );
            client.statement_cache.remove(sql, &[]);
            let statement = client.prepare_cached(sql).await?;
            client.query(&statement, parameters).await
        }
        result => result,
    }
}

/// Returns whether the server may have rejected a prepared statement because its result columns
/// changed. PostgreSQL 15 raises that error with SQLSTATE 0A000 (feature not supported) when it
/// plans the statement again, before the statement runs. The message is translated under a
/// non-English `lc_messages`, so only the SQLSTATE is compared: a statement that fails with it for
/// another reason runs in a transaction of its own, which the error rolled back, and fails again.
fn changed_result_type(error: &tokio_postgres::Error) -> bool {
    error.code() == Some(&SqlState::FEATURE_NOT_SUPPORTED)
}

/// A pooled connection for one round trip of a lease or a policy read, which share the store's
/// pool.
///
/// When the round trip is dropped before it ends (it timed out, or its caller was cancelled), the
/// connection is closed instead of going back to the pool. Its reply may never come (a server that
/// stopped replying, a half-open TCP connection), or its statement may still wait for a lock, and
/// the next round trip to get it would wait for that reply first.
pub(crate) struct RoundTripConnection {
    object: Option<Object>,
}

impl RoundTripConnection {
    /// Gets a connection from `pool`.
    pub(crate) async fn get(pool: &Pool) -> Result<Self, PoolError> {
        Ok(RoundTripConnection {
            object: Some(pool.get().await?),
        })
    }

    pub(crate) fn client(&self) -> &Object {
        self.object
            .as_ref()
            .expect("a connection holds its client until it is released or dropped")
    }

    /// Returns the connection to the pool after a round trip that ended, or closes it when the
    /// round trip's error left it unfit (see [`ends_session`]). A connection that broke, or that
    /// the server terminated, may not look closed to the pool yet, and the next round trip to get
    /// it would fail without reaching the server.
    pub(crate) fn release<T>(mut self, outcome: &Result<T, tokio_postgres::Error>) {
        let Some(object) = self.object.take() else {
            return;
        };
        if outcome.as_ref().err().is_some_and(ends_session) {
            tracing::debug!("a round trip failed; closing its connection");
            drop(Object::take(object));
        }
    }
}

impl Drop for RoundTripConnection {
    fn drop(&mut self) {
        if let Some(object) = self.object.take() {
            tracing::debug!("a round trip was abandoned; closing its connection");
            drop(Object::take(object));
        }
    }
}

/// Maps a failure to get a pooled connection: a timeout of the pool is a timeout of the call.
pub(crate) fn pool_error(pool: &Pool, error: PoolError) -> StoreError {
    match error {
        PoolError::Timeout(kind) => {
            let timeouts = pool.timeouts();
            let limit = match kind {
                TimeoutType::Wait => timeouts.wait,
                TimeoutType::Create => timeouts.create,
                TimeoutType::Recycle => timeouts.recycle,
            };
            StoreError::Timeout(limit.unwrap_or_default())
        }
        PoolError::Backend(error) => database_error(error),
        other => StoreError::Unavailable(Box::new(other)),
    }
}

/// Maps a failed statement: a statement that the server cancelled after `statement_timeout` is a
/// timeout, any other error is the database's.
pub(crate) fn query_error(error: tokio_postgres::Error, statement_timeout: Duration) -> StoreError {
    if error.code() == Some(&SqlState::QUERY_CANCELED) {
        // NOTE: a `pg_cancel_backend` cancel has the same SQLSTATE and is reported as this
        // timeout too. Only the message, which `lc_messages` translates, tells them apart.
        return StoreError::Timeout(statement_timeout);
    }
    database_error(error)
}

/// Wraps a database error, with the server's message when there is one: the plain `Display` of
/// a server error is only "db error".
pub(crate) fn database_error(error: tokio_postgres::Error) -> StoreError {
    match error.as_db_error() {
        Some(db) => StoreError::Unavailable(Box::new(ServerError {
            message: format!(
                "{}: {} (SQLSTATE {})",
                db.severity(),
                db.message(),
                db.code().code()
            ),
            ends_session: ends_session(&error),
        })),
        None => StoreError::Unavailable(Box::new(error)),
    }
}

/// An error that the server reported, as its severity, message and SQLSTATE.
#[derive(Debug)]
struct ServerError {
    message: String,
    /// Whether the server ended the session with it.
    ends_session: bool,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.message)
    }
}

impl std::error::Error for ServerError {}

/// Returns whether `error` left its connection unfit for another round trip, because the
/// connection broke or the server ended the session (`pg_terminate_backend`, a shutdown). After
/// an error for the statement alone, such as a statement timeout, the session is ready for more.
pub(crate) fn ends_session(error: &tokio_postgres::Error) -> bool {
    error.as_db_error().is_none_or(|db| {
        !matches!(
            db.parsed_severity(),
            Some(Severity::Error | Severity::Warning | Severity::Notice)
        )
    })
}

/// Returns whether a round trip that failed with `error` left its connection unfit for another,
/// as [`ends_session`] decides. A statement timeout and a cost above a limit leave it fit.
pub(crate) fn leaves_connection_unfit(error: &StoreError) -> bool {
    match error {
        StoreError::Timeout(_) | StoreError::CostExceedsLimit { .. } | StoreError::ZeroCost => {
            false
        }
        StoreError::Unavailable(source) => source
            .downcast_ref::<ServerError>()
            .is_none_or(|server| server.ends_session),
    }
}
