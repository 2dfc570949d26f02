//! Coalescing of concurrent consumes into one round trip.
//!
//! A consume goes out alone at once, from the caller's own task, when its scope key has no round
//! trip running, fewer than `max_batches_in_flight` round trips run and no consume is queued.
//! Otherwise it queues: behind its key's round trip, which holds the key's row locks until its
//! commit, or until a round trip ends. When a round trip ends, the consumes that queued go out
//! together, in a task of their own, up to `max_batch_size` per round trip, and are decided in
//! order in one transaction (see [`super::fast`]). At most half the round trips, rounded up, carry
//! queued consumes. So a few concurrent calls go out at once without a task switch, many
//! concurrent calls share a few statements and commits, and calls for one hot key share one
//! commit.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use deadpool_postgres::{Object, Pool};
use tokio::sync::oneshot;

use super::WindowRow;
use super::fast::{BatchFailure, Call, Rejections, Sender};
use crate::error_chain::ErrorChain;
use crate::store::StoreError;

/// Sends the consumes of one store, alone or in batches.
pub(super) struct Batcher {
    pool: Pool,
    max_batch_size: usize,
    max_in_flight: usize,
    statement_timeout: Duration,
    /// The maximum time of a batch's round trip. By then every caller in the batch has stopped
    /// waiting.
    call_timeout: Duration,
    rejections: Rejections,
    state: Mutex<State>,
}

/// A pooled connection for one round trip.
///
/// When the round trip is dropped before it ends (its caller timed out or was cancelled), the
/// connection leaves the pool instead of going back. Its reply may never come (a server that
/// stopped replying, a half-open TCP connection), and the next call to get it would wait first.
pub(super) struct Connection {
    object: Option<Object>,
}

impl Connection {
    pub(super) fn client(&self) -> &Object {
        self.object
            .as_ref()
            .expect("a connection holds its client until it is released or dropped")
    }

    /// Returns the connection to the pool after a round trip that ended, or closes it when the
    /// round trip's error left it unfit (see [`super::leaves_connection_unfit`]). A connection
    /// that broke, or that the server terminated, may not look closed to the pool yet, and the
    /// next round trip to get it would fail without reaching the server. After a statement
    /// timeout the session is fine, and keeping it spares a busy server a new connection.
    pub(super) fn release(mut self, error: Option<&StoreError>) {
        let Some(object) = self.object.take() else {
            return;
        };
        if error.is_some_and(super::leaves_connection_unfit) {
            tracing::debug!("a round trip broke its connection; closing it");
            drop(Object::take(object));
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(object) = self.object.take() {
            tracing::debug!("a round trip was abandoned; closing its connection");
            drop(Object::take(object));
        }
    }
}

/// The round trips running and the consumes queued. The keys are [`Call::key_hash`] values.
#[derive(Default)]
struct State {
    running: usize,
    /// The running round trips that carry consumes which queued.
    batches_running: usize,
    /// The keys that a running round trip carries.
    in_flight: HashSet<u64>,
    /// Consumes waiting for their key's round trip to end.
    waiting: HashMap<u64, Vec<Pending>>,
    /// Consumes whose key is free, waiting for a round trip to end.
    ready: VecDeque<Pending>,
    /// The arrival number of the next consume that queues.
    next_arrival: u64,
}

impl State {
    /// Starts a round trip for a consume of `key` alone, when its key has no round trip running,
    /// fewer than `max_in_flight` round trips run and no consume is queued. Returns whether it
    /// started one.
    fn start_alone(&mut self, key: u64, max_in_flight: usize) -> bool {
        if self.in_flight.contains(&key) || self.running >= max_in_flight || !self.ready.is_empty()
        {
            return false;
        }
        self.running += 1;
        self.in_flight.insert(key);
        true
    }

    /// Numbers a consume that queues.
    fn pending(
        &mut self,
        call: Call<'static>,
        reply: oneshot::Sender<Result<Vec<WindowRow>, StoreError>>,
    ) -> Pending {
        let arrival = self.next_arrival;
        self.next_arrival += 1;
        Pending {
            arrival,
            call,
            reply,
            runtime: tokio::runtime::Handle::try_current().ok(),
        }
    }

    /// Queues a consume behind its key's round trip, among the key's other waiting consumes in
    /// the order they arrived. A consume that queued as ready and finds its key busy only when a
    /// batch is taken arrived before the ones that went to wait for the key directly.
    fn wait_for_key(&mut self, key: u64, pending: Pending) {
        let waiting = self.waiting.entry(key).or_default();
        let at = waiting.partition_point(|other| other.arrival < pending.arrival);
        waiting.insert(at, pending);
    }
}

/// A queued consume and the channel to its caller.
struct Pending {
    /// The order in which consumes queued: the calls of one key go out in this order.
    arrival: u64,
    call: Call<'static>,
    reply: oneshot::Sender<Result<Vec<WindowRow>, StoreError>>,
    /// The tokio runtime of the caller, which runs while the caller waits for the reply.
    runtime: Option<tokio::runtime::Handle>,
}

/// One running round trip. Dropping it, when the round trip ends or its caller gives up, frees
/// its keys and sends the consumes that queued.
struct RoundTrip {
    batcher: Arc<Batcher>,
    keys: Vec<u64>,
    /// Whether it carries consumes that queued.
    queued: bool,
}

impl Drop for RoundTrip {
    fn drop(&mut self) {
        self.batcher.finish(&self.keys, self.queued);
    }
}

impl Batcher {
    pub(super) fn new(
        pool: Pool,
        max_batch_size: usize,
        max_in_flight: usize,
        statement_timeout: Duration,
        call_timeout: Duration,
    ) -> Self {
        Batcher {
            pool,
            max_batch_size,
            max_in_flight,
            statement_timeout,
            call_timeout,
            rejections: Rejections::new(),
            state: Mutex::new(State::default()),
        }
    }

    pub(super) fn rejections(&self) -> &Rejections {
        &self.rejections
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is consistent after every statement that changes it, so a panic elsewhere
        // while the lock was held leaves nothing to repair.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Consumes for `call`, in a batch with other calls when it has to queue.
    pub(super) async fn consume(
        self: &Arc<Self>,
        call: Call<'_>,
    ) -> Result<Vec<WindowRow>, StoreError> {
        let key = call.key_hash;
        if self.lock().start_alone(key, self.max_in_flight) {
            return self.consume_started_alone(&call).await;
        }

        // The call may have to wait in a queue, which needs a key of its own. Its key is copied
        // outside the lock, and the state may have changed meanwhile.
        let call = call.into_owned();
        let queued = {
            let mut state = self.lock();
            if state.start_alone(key, self.max_in_flight) {
                Ok(call)
            } else {
                let (reply, answer) = oneshot::channel();
                let in_flight = state.in_flight.contains(&key);
                let pending = state.pending(call, reply);
                if in_flight {
                    state.wait_for_key(key, pending);
                } else {
                    state.ready.push_back(pending);
                }
                Err(answer)
            }
        };

        match queued {
            Ok(call) => self.consume_started_alone(&call).await,
            Err(answer) => answer.await.unwrap_or_else(|_| {
                Err(StoreError::Unavailable(
                    "the round trip of a queued consume stopped with its tokio runtime".into(),
                ))
            }),
        }
    }

    /// Consumes for `call` in the round trip that [`State::start_alone`] started for it.
    async fn consume_started_alone(
        self: &Arc<Self>,
        call: &Call<'_>,
    ) -> Result<Vec<WindowRow>, StoreError> {
        let _round_trip = RoundTrip {
            batcher: self.clone(),
            keys: vec![call.key_hash],
            queued: false,
        };
        self.consume_alone(call).await
    }

    /// Consumes for `call` in a round trip of its own, whatever else runs.
    pub(super) async fn consume_alone(
        &self,
        call: &Call<'_>,
    ) -> Result<Vec<WindowRow>, StoreError> {
        let connection = self.connection().await?;
        let result = self.sender(connection.client()).consume_one(call).await;
        connection.release(result.as_ref().err());
        result
    }

    /// Decides `call` without charging it, in a round trip of its own.
    pub(super) async fn peek(&self, call: &Call<'_>) -> Result<Vec<WindowRow>, StoreError> {
        let connection = self.connection().await?;
        let sender = self.sender(connection.client());
        let result = match sender.check_key_indexed(call).await {
            Ok(()) => sender.decide_with_function(call, false).await,
            Err(error) => Err(error),
        };
        connection.release(result.as_ref().err());
        result
    }

    pub(super) async fn connection(&self) -> Result<Connection, StoreError> {
        let object = self
            .pool
            .get()
            .await
            .map_err(|error| super::pool_error(&self.pool, error))?;
        Ok(Connection {
            object: Some(object),
        })
    }

    fn sender<'a>(&'a self, client: &'a deadpool_postgres::Object) -> Sender<'a> {
        Sender {
            client,
            statement_timeout: self.statement_timeout,
            rejections: &self.rejections,
        }
    }

    /// Ends a round trip: frees its keys and starts round trips for the consumes that queued.
    fn finish(self: &Arc<Self>, keys: &[u64], queued: bool) {
        let batches = {
            let mut state = self.lock();
            state.running -= 1;
            if queued {
                state.batches_running -= 1;
            }
            for key in keys {
                state.in_flight.remove(key);
                if let Some(calls) = state.waiting.remove(key) {
                    state.ready.extend(calls);
                }
            }
            self.take_batches(&mut state)
        };
        for (batch, keys) in batches {
            self.start(batch, keys);
        }
    }

    /// Takes batches from the ready consumes while round trips for them are free, and marks them
    /// running.
    fn take_batches(&self, state: &mut State) -> Vec<(Vec<Pending>, Vec<u64>)> {
        let mut batches = Vec::new();
        let max_batches = self.max_in_flight.div_ceil(2);
        while state.running < self.max_in_flight
            && state.batches_running < max_batches
            && !state.ready.is_empty()
        {
            let mut batch = Vec::new();
            let mut keys = HashSet::new();
            while batch.len() < self.max_batch_size {
                let Some(pending) = state.ready.pop_front() else {
                    break;
                };
                // Its caller stopped waiting (a timeout, a cancelled request) and received an
                // error, so the call is not charged.
                if pending.reply.is_closed() {
                    continue;
                }
                let key = pending.call.key_hash;
                if state.in_flight.contains(&key) {
                    state.wait_for_key(key, pending);
                } else {
                    keys.insert(key);
                    batch.push(pending);
                }
            }
            if batch.is_empty() {
                continue;
            }

            let keys: Vec<u64> = keys.into_iter().collect();
            state.in_flight.extend(keys.iter().copied());
            state.running += 1;
            state.batches_running += 1;
            batches.push((batch, keys));
        }
        batches
    }

    /// Sends a batch in a task of its own, on the runtime of one of its callers: the first whose
    /// runtime is multi-threaded, or else the first.
    ///
    /// The round trip that ended may have run on another runtime, which nothing may drive any more:
    /// a `block_on` that returned with the call. A batch spawned there would keep its keys and its
    /// place among the round trips until its callers time out, and so would every batch after it.
    /// A current-thread runtime runs only while its `block_on` does, and its caller may stop
    /// waiting (the layer's store timeout) before the batch ends. The worker threads of a
    /// multi-threaded runtime drive the batch whether or not its callers still wait.
    fn start(self: &Arc<Self>, batch: Vec<Pending>, keys: Vec<u64>) {
        let round_trip = RoundTrip {
            batcher: self.clone(),
            keys,
            queued: true,
        };
        let runtimes = || batch.iter().filter_map(|pending| pending.runtime.as_ref());
        let runtime = runtimes()
            .find(|runtime| runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
            .or_else(|| runtimes().next())
            .cloned()
            .or_else(|| tokio::runtime::Handle::try_current().ok());
        let Some(runtime) = runtime else {
            // No caller of the batch is on a tokio runtime, so there is none to send the batch on.
            // Its callers get an error when `batch` is dropped.
            drop(batch);
            return;
        };
        tracing::trace!(calls = batch.len(), "sending a batch of consumes");
        let batcher = self.clone();
        runtime.spawn(async move {
            let _round_trip = round_trip;
            batcher.send(batch).await;
        });
    }

    /// Sends one batch and hands every consume its result.
    ///
    /// The round trip is bounded by the call timeout, because no caller waits longer. Until it
    /// ends, the batch keeps its keys and its place among the round trips.
    async fn send(&self, batch: Vec<Pending>) {
        let deadline = tokio::time::Instant::now() + self.call_timeout;
        let connection = tokio::time::timeout_at(deadline, self.connection())
            .await
            .unwrap_or(Err(StoreError::Timeout(self.call_timeout)));
        let (batch, outcome) = match connection {
            Ok(connection) => {
                // The batch may have waited for a connection until some callers stopped waiting.
                // Their calls were never sent, so they are dropped uncharged like queued ones.
                let batch: Vec<Pending> = batch
                    .into_iter()
                    .filter(|pending| !pending.reply.is_closed())
                    .collect();
                let outcome = match tokio::time::timeout_at(
                    deadline,
                    self.round_trip(connection.client(), &batch),
                )
                .await
                {
                    Ok(outcome) => {
                        connection.release(outcome.as_ref().err().map(|failure| &failure.error));
                        outcome
                    }
                    // Dropping the connection closes it, since its reply may never come.
                    Err(_) => Err(BatchFailure {
                        error: StoreError::Timeout(self.call_timeout),
                        charged_nothing: false,
                    }),
                };
                (batch, outcome)
            }
            Err(error) => (
                batch,
                Err(BatchFailure {
                    error,
                    charged_nothing: true,
                }),
            ),
        };

        let failure = match outcome {
            Ok(per_call) => {
                for (pending, windows) in batch.into_iter().zip(per_call) {
                    let _ = pending.reply.send(Ok(windows));
                }
                return;
            }
            Err(failure) => failure,
        };
        let mut batch = batch;
        if batch.len() == 1 {
            if let Some(pending) = batch.pop() {
                let _ = pending.reply.send(Err(failure.error));
            }
            return;
        }

        // A timeout is no fault of one call: sending the calls again one by one would only hold
        // their keys longer.
        if let StoreError::Timeout(after) = failure.error {
            tracing::debug!(calls = batch.len(), ?after, "a batch of consumes timed out");
            for pending in batch {
                let _ = pending.reply.send(Err(StoreError::Timeout(after)));
            }
            return;
        }

        // The connection broke and the batch may have committed: sending its calls again could
        // charge them twice, so each caller gets the error, as a single call would.
        if !failure.charged_nothing {
            let error = failure.error;
            tracing::warn!(calls = batch.len(), error = %ErrorChain(&error), "a batch of consumes failed after it was sent; its calls may have been charged");
            for pending in batch {
                let message = format!(
                    "a batch of consumes failed after it was sent, so this call may have been charged: {}",
                    ErrorChain(&error)
                );
                let _ = pending
                    .reply
                    .send(Err(StoreError::Unavailable(message.into())));
            }
            return;
        }

        // One bad call (an id the database rejects, say) fails the whole transaction: send each
        // call whose caller still waits on its own, so that only the bad one gets the error.
        let error = failure.error;
        tracing::debug!(calls = batch.len(), error = %ErrorChain(&error), "a batch of consumes failed; sending its calls one by one");
        for pending in batch {
            if pending.reply.is_closed() {
                continue;
            }
            let result = tokio::time::timeout(self.call_timeout, self.consume_alone(&pending.call))
                .await
                .unwrap_or(Err(StoreError::Timeout(self.call_timeout)));
            let _ = pending.reply.send(result);
        }
    }

    /// Sends the calls of `batch` on `client` in one round trip, with the single-call statement
    /// for one call and the batch statement for several.
    async fn round_trip(
        &self,
        client: &Object,
        batch: &[Pending],
    ) -> Result<Vec<Vec<WindowRow>>, BatchFailure> {
        let calls: Vec<&Call<'_>> = batch.iter().map(|pending| &pending.call).collect();
        let sender = self.sender(client);
        match calls.as_slice() {
            [] => Ok(Vec::new()),
            [call] => sender
                .consume_one(call)
                .await
                .map(|windows| vec![windows])
                .map_err(|error| BatchFailure {
                    error,
                    charged_nothing: false,
                }),
            _ => sender.consume_batch(&calls).await,
        }
    }
}
