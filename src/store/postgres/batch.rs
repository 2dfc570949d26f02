//! Coalescing of concurrent consumes into one round trip.
//!
//! Consumes go to a dispatcher task through a channel. A consume whose scope key has no round trip
//! running goes out at once, with whatever other consumes are ready, as long as fewer than
//! `max_batches_in_flight` round trips run. A consume whose key already has a round trip running
//! waits for it, because that round trip holds the key's row locks until its commit. When it
//! returns, every consume that waited for the key goes out in the next round trip, up to
//! `max_batch_size` per round trip, to `highway.consume_tool_rate_tokens_batch`, which decides them
//! in order in one transaction. So calls spread over many keys run concurrently, and calls for one
//! hot key share one commit.

use std::collections::{HashMap, HashSet, VecDeque};
use std::slice;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};

use tokio_postgres::error::SqlState;

use super::{CONSUME, WindowRow, database_error};
use crate::store::StoreError;

const CONSUME_BATCH: &str = "SELECT call_index, window_type, window_limit, request_count, window_end, admitted \
     FROM highway.consume_tool_rate_tokens_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

/// One consume waiting for its round trip, with everything the database needs, owned.
pub(super) struct Pending {
    pub(super) tenant: String,
    pub(super) tool: String,
    pub(super) scope: String,
    pub(super) cost: i64,
    pub(super) kinds: Vec<&'static str>,
    pub(super) limits: Vec<i64>,
    /// The request's instant; `None` lets the database clock decide.
    pub(super) at: Option<DateTime<Utc>>,
    /// The windows' bounds: at `at`, or hints at this process's clock (see `WindowPlan`).
    pub(super) starts: Vec<DateTime<Utc>>,
    pub(super) ends: Vec<DateTime<Utc>>,
    pub(super) timezone: &'static str,
    pub(super) week_start: &'static str,
    pub(super) reply: oneshot::Sender<Result<Vec<WindowRow>, StoreError>>,
}

/// Starts the dispatcher on the current tokio runtime and returns the channel to it. The
/// dispatcher stops when every sender is dropped.
pub(super) fn spawn_dispatcher(
    pool: Pool,
    max_batch_size: usize,
    max_in_flight: usize,
    statement_timeout: Duration,
) -> mpsc::UnboundedSender<Pending> {
    let (sender, receiver) = mpsc::unbounded_channel();
    tokio::spawn(dispatch(
        pool,
        receiver,
        max_batch_size,
        max_in_flight,
        statement_timeout,
    ));
    sender
}

/// The identity of a scope key: tenant, tool and scope.
type KeyId = (String, String, String);

impl Pending {
    fn key_id(&self) -> KeyId {
        (self.tenant.clone(), self.tool.clone(), self.scope.clone())
    }
}

async fn dispatch(
    pool: Pool,
    mut receiver: mpsc::UnboundedReceiver<Pending>,
    max_batch_size: usize,
    max_in_flight: usize,
    statement_timeout: Duration,
) {
    let (done_sender, mut done) = mpsc::unbounded_channel::<Vec<KeyId>>();
    // Consumes free to go, consumes waiting for their key's round trip, and the keys in flight.
    let mut ready: VecDeque<Pending> = VecDeque::new();
    let mut waiting: HashMap<KeyId, Vec<Pending>> = HashMap::new();
    let mut in_flight: HashSet<KeyId> = HashSet::new();
    let mut running = 0;

    loop {
        while running < max_in_flight && !ready.is_empty() {
            let mut batch = Vec::new();
            let mut keys = HashSet::new();
            while batch.len() < max_batch_size {
                let Some(pending) = ready.pop_front() else {
                    break;
                };
                let key = pending.key_id();
                if in_flight.contains(&key) {
                    waiting.entry(key).or_default().push(pending);
                } else {
                    keys.insert(key);
                    batch.push(pending);
                }
            }
            if batch.is_empty() {
                continue;
            }

            let keys: Vec<KeyId> = keys.into_iter().collect();
            in_flight.extend(keys.iter().cloned());
            running += 1;
            tracing::trace!(
                calls = batch.len(),
                keys = keys.len(),
                "sending a batch of consumes"
            );
            let (pool, done_sender) = (pool.clone(), done_sender.clone());
            tokio::spawn(async move {
                run(&pool, batch, statement_timeout).await;
                let _ = done_sender.send(keys);
            });
        }

        tokio::select! {
            received = receiver.recv() => {
                let Some(pending) = received else {
                    // Every store handle is gone, so no caller waits any more.
                    return;
                };
                accept(pending, &in_flight, &mut waiting, &mut ready);
                while let Ok(pending) = receiver.try_recv() {
                    accept(pending, &in_flight, &mut waiting, &mut ready);
                }
            }
            Some(keys) = done.recv() => {
                running -= 1;
                for key in keys {
                    in_flight.remove(&key);
                    if let Some(calls) = waiting.remove(&key) {
                        ready.extend(calls);
                    }
                }
            }
        }
    }
}

/// Queues a new consume: ready, unless its key has a round trip running or consumes waiting.
fn accept(
    pending: Pending,
    in_flight: &HashSet<KeyId>,
    waiting: &mut HashMap<KeyId, Vec<Pending>>,
    ready: &mut VecDeque<Pending>,
) {
    let key = pending.key_id();
    if in_flight.contains(&key) {
        waiting.entry(key).or_default().push(pending);
    } else {
        ready.push_back(pending);
    }
}

/// Sends one batch and hands every consume its result.
async fn run(pool: &Pool, batch: Vec<Pending>, statement_timeout: Duration) {
    let error = match send(pool, &batch, statement_timeout).await {
        Ok(per_call) => {
            for (pending, rows) in batch.into_iter().zip(per_call) {
                let _ = pending.reply.send(Ok(rows));
            }
            return;
        }
        Err(error) => error,
    };

    let mut batch = batch;
    if batch.len() == 1 {
        if let Some(pending) = batch.pop() {
            let _ = pending.reply.send(Err(error));
        }
        return;
    }
    // One bad call (an id the database rejects, say) fails the whole transaction: send each call
    // on its own so that only the bad one gets the error.
    tracing::debug!(calls = batch.len(), %error, "a batch of consumes failed; sending its calls one by one");
    for pending in batch {
        let result = send(pool, slice::from_ref(&pending), statement_timeout)
            .await
            .map(|mut per_call| per_call.pop().unwrap_or_default());
        let _ = pending.reply.send(result);
    }
}

/// Sends one round trip and returns the rows of each call, in the batch's order.
async fn send(
    pool: &Pool,
    batch: &[Pending],
    statement_timeout: Duration,
) -> Result<Vec<Vec<WindowRow>>, StoreError> {
    let query_error = |error: tokio_postgres::Error| {
        if error.code() == Some(&SqlState::QUERY_CANCELED) {
            StoreError::Timeout(statement_timeout)
        } else {
            database_error(error)
        }
    };

    // A lone call takes the single-call function, one upsert with no sorting of rows.
    if let [pending] = batch {
        let client = pool.get().await.map_err(|error| pool_error(pool, error))?;
        let statement = client.prepare_cached(CONSUME).await.map_err(query_error)?;
        let consume = true;
        let rows = client
            .query(
                &statement,
                &[
                    &pending.tenant,
                    &pending.tool,
                    &pending.scope,
                    &pending.cost,
                    &pending.kinds,
                    &pending.limits,
                    &pending.at,
                    &pending.starts,
                    &pending.ends,
                    &pending.timezone,
                    &pending.week_start,
                    &consume,
                ],
            )
            .await
            .map_err(query_error)?;
        let windows = rows
            .iter()
            .map(|row| WindowRow::from_columns(row, 0))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(vec![windows]);
    }

    let items: usize = batch.iter().map(|pending| pending.kinds.len()).sum();
    let mut calls = Vec::with_capacity(items);
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

    for (index, pending) in batch.iter().enumerate() {
        let call = i32::try_from(index + 1).unwrap_or(i32::MAX);
        for (window, kind) in pending.kinds.iter().enumerate() {
            calls.push(call);
            tenants.push(pending.tenant.as_str());
            tools.push(pending.tool.as_str());
            scopes.push(pending.scope.as_str());
            costs.push(pending.cost);
            kinds.push(*kind);
            limits.push(pending.limits[window]);
            // The batch function computes the database clock's windows once per batch.
            starts.push(pending.at.map(|_| pending.starts[window]));
            ends.push(pending.at.map(|_| pending.ends[window]));
            timezones.push(pending.timezone);
            week_starts.push(pending.week_start);
        }
    }

    let client = pool
        .get()
        .await
        .map_err(|error| StoreError::Unavailable(Box::new(error)))?;
    let statement = client
        .prepare_cached(CONSUME_BATCH)
        .await
        .map_err(query_error)?;
    let rows = client
        .query(
            &statement,
            &[
                &calls,
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
        .map_err(query_error)?;

    let mut per_call: Vec<Vec<WindowRow>> = batch
        .iter()
        .map(|pending| Vec::with_capacity(pending.kinds.len()))
        .collect();
    for row in &rows {
        let call: i32 = row.try_get(0).map_err(database_error)?;
        let window = WindowRow::from_columns(row, 1)?;
        let slot = usize::try_from(call - 1)
            .ok()
            .and_then(|index| per_call.get_mut(index))
            .ok_or_else(|| {
                StoreError::Unavailable(
                    format!("the database returned an unknown call {call}").into(),
                )
            })?;
        slot.push(window);
    }
    Ok(per_call)
}

/// Maps a failure to get a pooled connection: a timeout of the pool is a timeout of the call.
fn pool_error(pool: &Pool, error: deadpool_postgres::PoolError) -> StoreError {
    use deadpool_postgres::{PoolError, TimeoutType};

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
        other => StoreError::Unavailable(Box::new(other)),
    }
}
