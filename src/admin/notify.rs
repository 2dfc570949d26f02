//! Change propagation: a `NOTIFY` with every write, and a listener in every worker.

use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::layer::RateLimitLayer;

/// The PostgreSQL channel that limit changes are sent on.
pub const CHANGES_CHANNEL: &str = "highway_rate_limits";

/// A change a listener reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    /// The limit of one tenant and tool was written or deleted.
    ///
    /// A change to the [`DEFAULT_TENANT`](crate::policy::DEFAULT_TENANT)'s limit of a tool
    /// changes the limit in force for every tenant without a row of its own, so a cache keyed
    /// by the calling tenant must then drop every entry of the tool.
    Limit {
        /// The tenant id of the row.
        tenant: String,
        /// The tool name of the row.
        tool: String,
    },
    /// Changes may have been missed (the listener has just connected or reconnected): every
    /// cached limit and report must be dropped.
    All,
}

/// Sends the change notification of a row inside the transaction that writes it; PostgreSQL
/// delivers it when the transaction commits, and drops it on rollback.
pub(crate) async fn notify_change(
    transaction: &tokio_postgres::Transaction<'_>,
    tenant: &str,
    tool: &str,
) -> Result<(), tokio_postgres::Error> {
    let change = Change::Limit {
        tenant: tenant.to_owned(),
        tool: tool.to_owned(),
    };
    let payload = serde_json::to_string(&change).unwrap_or_default();
    transaction
        .execute("SELECT pg_notify($1, $2)", &[&CHANGES_CHANNEL, &payload])
        .await?;
    Ok(())
}

/// A background task that listens for limit changes on a dedicated connection and hands each
/// one to an async callback, typically one that invalidates the worker's caches. The callback's
/// future is awaited before the next change is handled, so changes are applied in commit order.
///
/// After a lost connection it reconnects with exponential backoff, and after every successful
/// `LISTEN` (the first one included) it reports [`Change::All`], since notifications sent while
/// it was not listening are lost. Until it is back, the caches' time-to-live bounds how long a
/// stale limit stays in force.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use highway_ratelimit::admin::{Change, ChangeListener};
///
/// let config = "postgres://postgres@127.0.0.1/highway".parse()?;
/// let handle = ChangeListener::new(config).spawn(|change: Change| async move {
///     tracing::info!(?change, "drop cached limits");
/// });
/// // …
/// handle.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ChangeListener {
    config: tokio_postgres::Config,
    min_backoff: Duration,
    max_backoff: Duration,
    #[cfg(feature = "tls")]
    tls: Option<rustls::ClientConfig>,
}

impl ChangeListener {
    /// Creates a listener for the database of `config`, with a backoff from 100 ms up to 30 s.
    ///
    /// The connection's `application_name` is set to `highway-ratelimit listener` unless the
    /// configuration sets one.
    pub fn new(mut config: tokio_postgres::Config) -> Self {
        if config.get_application_name().is_none() {
            config.application_name("highway-ratelimit listener");
        }
        ChangeListener {
            config,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// Connects over TLS, trusting the server certificates that `tls` trusts, with the same
    /// rules as [`PostgresConfig::tls`](crate::store::postgres::PostgresConfig::tls) (feature
    /// `tls`).
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: rustls::ClientConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sets the first and the longest wait between reconnection attempts; each failed attempt
    /// doubles the wait.
    pub fn with_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.min_backoff = min;
        self.max_backoff = max.max(min);
        self
    }

    /// Starts listening on the current Tokio runtime and awaits `on_change(change)` for every
    /// change.
    ///
    /// The callback runs on the listener task, so it should be quick; a cache's `invalidate` is.
    pub fn spawn<F, Fut>(self, on_change: F) -> ListenerHandle
    where
        F: Fn(Change) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (connected, connected_rx) = watch::channel(0u64);
        let callback: Callback = Box::new(move |change| Box::pin(on_change(change)));
        let task = tokio::spawn(self.run(callback, shutdown_rx, connected));
        ListenerHandle {
            task,
            shutdown,
            connected: connected_rx,
        }
    }

    /// Starts listening and applies every change to the caches of `layer`: a changed limit drops
    /// its tenant and tool (every tenant's entries of the tool, for the default tenant), and
    /// [`Change::All`] drops everything.
    pub fn spawn_invalidating(self, layer: RateLimitLayer) -> ListenerHandle {
        self.spawn(move |change| {
            let layer = layer.clone();
            async move {
                match change {
                    Change::Limit { tenant, tool } => layer.invalidate(&tenant, &tool),
                    Change::All => layer.invalidate_all(),
                }
            }
        })
    }

    async fn run(
        self,
        on_change: Callback,
        mut shutdown: watch::Receiver<bool>,
        connected: watch::Sender<u64>,
    ) {
        let mut backoff = self.min_backoff;
        loop {
            let session = tokio::select! {
                result = self.listen(&on_change, &connected) => result,
                _ = shutdown.changed() => return,
            };
            match session {
                Ok(()) => {
                    tracing::warn!(
                        channel = CHANGES_CHANNEL,
                        "change listener lost its connection; reconnecting"
                    );
                    backoff = self.min_backoff;
                }
                Err(error) => {
                    tracing::warn!(
                        channel = CHANGES_CHANNEL,
                        %error,
                        retry_in = ?backoff,
                        "change listener cannot connect; retrying"
                    );
                }
            }

            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => return,
            }
            backoff = (backoff * 2).min(self.max_backoff);
        }
    }

    /// Connects, listens, and forwards notifications until the connection ends. Returns `Ok`
    /// when a connection that was listening ended, `Err` when connecting or `LISTEN` failed.
    async fn listen(
        &self,
        on_change: &Callback,
        connected: &watch::Sender<u64>,
    ) -> Result<(), tokio_postgres::Error> {
        let (client, mut received, driver) = self.connect().await?;

        let listening = client
            .batch_execute(&format!("LISTEN {CHANGES_CHANNEL}"))
            .await;
        if let Err(error) = listening {
            driver.abort();
            return Err(error);
        }
        tracing::info!(channel = CHANGES_CHANNEL, "change listener connected");
        on_change(Change::All).await;
        connected.send_modify(|count| *count += 1);

        while let Some(message) = received.recv().await {
            if let AsyncMessage::Notification(notification) = message {
                if notification.channel() != CHANGES_CHANNEL {
                    continue;
                }
                match serde_json::from_str::<Change>(notification.payload()) {
                    Ok(change) => {
                        tracing::debug!(?change, "limit changed");
                        on_change(change).await;
                    }
                    Err(error) => {
                        tracing::warn!(
                            payload = notification.payload(),
                            %error,
                            "unreadable change notification; dropping every cached limit"
                        );
                        on_change(Change::All).await;
                    }
                }
            }
        }
        drop(client);
        Ok(())
    }
}

impl ChangeListener {
    /// Connects, over TLS when it is set, and starts a task that drives the connection and
    /// forwards its messages.
    async fn connect(
        &self,
    ) -> Result<
        (
            tokio_postgres::Client,
            mpsc::UnboundedReceiver<AsyncMessage>,
            JoinHandle<()>,
        ),
        tokio_postgres::Error,
    > {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls.clone());
            let (client, connection) = self.config.connect(tls).await?;
            let (received, driver) = forward_messages(connection);
            return Ok((client, received, driver));
        }
        let (client, connection) = self.config.connect(NoTls).await?;
        let (received, driver) = forward_messages(connection);
        Ok((client, received, driver))
    }
}

/// Drives `connection` in a task of its own and forwards its messages. The connection yields
/// notifications only while it is polled, and the channel closes when the connection ends.
fn forward_messages<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
) -> (mpsc::UnboundedReceiver<AsyncMessage>, JoinHandle<()>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (messages, received) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut stream = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = stream.next().await {
            match message {
                Ok(message) => {
                    if messages.send(message).is_err() {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "change listener connection failed");
                    break;
                }
            }
        }
    });
    (received, driver)
}

type Callback = Box<dyn Fn(Change) -> BoxFuture<'static, ()> + Send + Sync>;

/// The handle of a running [`ChangeListener`].
///
/// Dropping the handle leaves the listener running for the life of the runtime; call
/// [`shutdown`](Self::shutdown) to stop it.
#[derive(Debug)]
pub struct ListenerHandle {
    task: JoinHandle<()>,
    shutdown: watch::Sender<bool>,
    connected: watch::Receiver<u64>,
}

impl ListenerHandle {
    /// Waits until the listener has issued `LISTEN` on `times` connections in total (the first
    /// connection counts as 1), so that later changes are sure to reach it.
    pub async fn wait_connected(&mut self, times: u64) {
        // The sender lives as long as the task; when the task is gone, there is nothing to wait for.
        let _ = self.connected.wait_for(|count| *count >= times).await;
    }

    /// Stops the listener and waits for its task to end.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}
