//! The settings of a [`PostgresStore`](super::PostgresStore).

use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};

/// The settings of a [`PostgresStore`](super::PostgresStore): where the database is, how many
/// connections to keep, and how long a call may take.
///
/// ```
/// use std::time::Duration;
/// use highway_ratelimit::store::postgres::PostgresConfig;
///
/// let config = PostgresConfig::new("postgres://highway@127.0.0.1/highway")
///     .pool_size(16)
///     .statement_timeout(Duration::from_millis(250))
///     .call_timeout(Duration::from_millis(500));
/// assert_eq!(config.get_pool_size(), 16);
/// ```
#[derive(Clone)]
pub struct PostgresConfig {
    pub(super) url: String,
    pub(super) pool_size: usize,
    pub(super) statement_timeout: Duration,
    pub(super) call_timeout: Duration,
    pub(super) connect_timeout: Duration,
    pub(super) synchronous_commit: bool,
    pub(super) max_batch_size: usize,
    pub(super) max_batches_in_flight: usize,
    pub(super) migration_lock_timeout: Duration,
    pub(super) clock: Arc<dyn Clock>,
    #[cfg(feature = "tls")]
    pub(super) tls: Option<rustls::ClientConfig>,
}

// Written by hand so that the password in the connection string never reaches a log: the
// connection string is shown as `tokio_postgres` parses it, which redacts the password.
impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let connection: Result<tokio_postgres::Config, _> = self.url.parse();
        let mut debug = f.debug_struct("PostgresConfig");
        match &connection {
            Ok(connection) => debug.field("connection", connection),
            Err(_) => debug.field("connection", &"invalid connection string"),
        };
        debug
            .field("pool_size", &self.pool_size)
            .field("statement_timeout", &self.statement_timeout)
            .field("call_timeout", &self.call_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("synchronous_commit", &self.synchronous_commit)
            .field("max_batch_size", &self.max_batch_size)
            .field("max_batches_in_flight", &self.max_batches_in_flight)
            .field("migration_lock_timeout", &self.migration_lock_timeout)
            .field("clock", &self.clock);
        #[cfg(feature = "tls")]
        debug.field("tls", &self.tls.is_some());
        debug.finish()
    }
}

impl PostgresConfig {
    /// The default number of pooled connections.
    pub const DEFAULT_POOL_SIZE: usize = 16;
    /// The default server-side limit on one statement.
    pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(2);
    /// The default limit on a whole call: waiting for a connection, connecting and the query.
    pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(3);
    /// The default number of calls one round trip may carry.
    pub const DEFAULT_MAX_BATCH_SIZE: usize = 64;
    /// The default number of round trips of consumes in flight at once; the pool size bounds it
    /// too.
    pub const DEFAULT_MAX_BATCHES_IN_FLIGHT: usize = 4;
    /// The default limit on opening one connection.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
    /// The longest `statement_timeout` PostgreSQL accepts: `i32::MAX` milliseconds, about 24.8
    /// days.
    pub const MAX_STATEMENT_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);
    /// The default wait of a migration for one lock before it backs off and tries again.
    pub const DEFAULT_MIGRATION_LOCK_TIMEOUT: Duration = Duration::from_millis(500);
    /// The number of attempts [`PostgresStore::migrate`](super::PostgresStore::migrate) makes at
    /// a migration whose locks it cannot get within the migration lock timeout.
    pub const MIGRATION_LOCK_ATTEMPTS: u32 = 10;

    /// Creates the settings for the database at `url`, a libpq-style connection string
    /// (`postgres://user@host:port/dbname?…` or `host=… user=…`), with the default pool size
    /// and timeouts.
    pub fn new(url: impl Into<String>) -> Self {
        PostgresConfig {
            url: url.into(),
            pool_size: Self::DEFAULT_POOL_SIZE,
            statement_timeout: Self::DEFAULT_STATEMENT_TIMEOUT,
            call_timeout: Self::DEFAULT_CALL_TIMEOUT,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            synchronous_commit: true,
            max_batch_size: Self::DEFAULT_MAX_BATCH_SIZE,
            max_batches_in_flight: Self::DEFAULT_MAX_BATCHES_IN_FLIGHT,
            migration_lock_timeout: Self::DEFAULT_MIGRATION_LOCK_TIMEOUT,
            clock: Arc::new(SystemClock),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// Connects over TLS, trusting the server certificates that `tls` trusts (feature `tls`).
    /// [`root_certificates_config`](super::root_certificates_config) builds one from a PEM file.
    ///
    /// The connection string's `sslmode` decides whether TLS is required: `require` fails a
    /// connection to a server that does not offer TLS, `prefer`, the default, falls back to a
    /// plain connection then, and `disable` never uses TLS. Whenever TLS is used, the server's
    /// certificate must chain to a root of `tls` and name the host of the connection string, as
    /// libpq's `sslmode=verify-full` demands, or the connection fails. Without this setting the
    /// store connects without TLS.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: rustls::ClientConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sets the clock this process reads for a call without an instant, [`SystemClock`] by
    /// default.
    ///
    /// The database clock decides such a call. The store sends the windows at this clock's
    /// instant, and the database uses them only when they contain its own `now()`. Otherwise (a
    /// process whose clock is off, a call at a window's boundary) the database computes the
    /// windows itself, at the cost of a second statement. A call that carries an instant is
    /// counted at that instant, whatever this clock reads.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Sets the maximum number of pooled connections (at least 1).
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// Sets the server's `statement_timeout` for the store's connections: a statement running
    /// longer, such as one waiting for a row lock, is cancelled by the server.
    ///
    /// The server counts it in whole milliseconds, reads 0 as no limit and refuses every
    /// connection whose value exceeds a 32-bit integer, so
    /// [`PostgresStore::new`](super::PostgresStore::new) rejects a timeout under 1 ms or over
    /// [`MAX_STATEMENT_TIMEOUT`](Self::MAX_STATEMENT_TIMEOUT).
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = timeout;
        self
    }

    /// Sets the limit on a whole call, from waiting for a pooled connection to reading the
    /// result. A call that runs longer returns [`StoreError::Timeout`](crate::store::StoreError),
    /// even when the database does not respond at all.
    ///
    /// [`PostgresStore::new`](super::PostgresStore::new) rejects a zero timeout, under which every
    /// call would time out.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Sets the limit on opening one connection.
    ///
    /// [`PostgresStore::new`](super::PostgresStore::new) rejects a zero timeout, under which no
    /// connection could be opened.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets whether a consume waits for its commit to reach the disk (the default).
    ///
    /// With `false`, the store's sessions run with `synchronous_commit = off`: a call returns
    /// before its commit is flushed, so one key admits several times more calls per second, and
    /// the limits stay exact among live workers, but a database crash loses the counts of the last
    /// few hundred milliseconds (three times `wal_writer_delay` at most), which can then be
    /// admitted again.
    pub fn synchronous_commit(mut self, enabled: bool) -> Self {
        self.synchronous_commit = enabled;
        self
    }

    /// Sets how many concurrent consumes of this process one round trip may carry (at least 1;
    /// 1 sends every consume on its own).
    ///
    /// A consume whose scope key already has a round trip running waits for it, since that round
    /// trip holds the key's row locks until it commits; the consumes that waited then go out
    /// together, up to this many per round trip. The database decides them one after another in
    /// one transaction, each all or nothing, exactly as if they had come one by one. They share one
    /// commit, and the commit's disk sync is what limits a key's throughput.
    pub fn max_batch_size(mut self, size: usize) -> Self {
        self.max_batch_size = size.max(1);
        self
    }

    /// Sets how many round trips of consumes may run at once (at least 1; the pool size bounds it
    /// too). Consumes of different keys go out alone at once up to this number. Beyond it, they
    /// queue and go out together, in at most half as many round trips at once (rounded up), so
    /// that under load each statement and commit serves more calls.
    pub fn max_batches_in_flight(mut self, batches: usize) -> Self {
        self.max_batches_in_flight = batches.max(1);
        self
    }

    /// Sets how long [`PostgresStore::migrate`](super::PostgresStore::migrate) waits for a lock,
    /// such as a table's, before it rolls the migration back, pauses for twice as long and tries
    /// again, up to [`MIGRATION_LOCK_ATTEMPTS`](Self::MIGRATION_LOCK_ATTEMPTS) times.
    ///
    /// A migration that alters a table waits until every open transaction that used the table
    /// ends, and every call that needs the table meanwhile queues behind it. A wait shorter than
    /// the statement timeout lets one long transaction delay the migration instead of failing the
    /// calls. Zero waits as long as it takes, in one attempt; otherwise
    /// [`PostgresStore::new`](super::PostgresStore::new) rejects a timeout under 1 ms or over
    /// [`MAX_STATEMENT_TIMEOUT`](Self::MAX_STATEMENT_TIMEOUT).
    pub fn migration_lock_timeout(mut self, timeout: Duration) -> Self {
        self.migration_lock_timeout = timeout;
        self
    }

    /// Returns the connection string.
    pub fn get_url(&self) -> &str {
        &self.url
    }

    /// Returns the maximum number of pooled connections.
    pub fn get_pool_size(&self) -> usize {
        self.pool_size
    }

    /// Returns the server-side limit on one statement.
    pub fn get_statement_timeout(&self) -> Duration {
        self.statement_timeout
    }

    /// Checks the timeouts, which [`PostgresStore::new`](super::PostgresStore::new) calls
    /// before it opens anything. The error names the setting, its value and what to use instead.
    pub(super) fn check_timeouts(&self) -> Result<(), String> {
        if self.statement_timeout < Duration::from_millis(1) {
            return Err(format!(
                "invalid statement_timeout of {:?}: PostgreSQL counts it in whole milliseconds and \
                 reads 0 as no limit, so statements waiting for a row lock would never be \
                 cancelled; use at least 1ms, below the call_timeout (the defaults are {:?} and \
                 {:?})",
                self.statement_timeout,
                Self::DEFAULT_STATEMENT_TIMEOUT,
                Self::DEFAULT_CALL_TIMEOUT,
            ));
        }
        if self.statement_timeout > Self::MAX_STATEMENT_TIMEOUT {
            return Err(format!(
                "invalid statement_timeout of {:?}: PostgreSQL refuses every connection whose \
                 statement_timeout exceeds {}ms (a 32-bit count of milliseconds); use at most \
                 that, below the call_timeout (the defaults are {:?} and {:?})",
                self.statement_timeout,
                Self::MAX_STATEMENT_TIMEOUT.as_millis(),
                Self::DEFAULT_STATEMENT_TIMEOUT,
                Self::DEFAULT_CALL_TIMEOUT,
            ));
        }
        let lock = self.migration_lock_timeout;
        if !lock.is_zero()
            && (lock < Duration::from_millis(1) || lock > Self::MAX_STATEMENT_TIMEOUT)
        {
            return Err(format!(
                "invalid migration_lock_timeout of {lock:?}: PostgreSQL counts it in whole \
                 milliseconds up to {}ms; use 0 to wait without a limit, or 1ms to that maximum \
                 (the default is {:?})",
                Self::MAX_STATEMENT_TIMEOUT.as_millis(),
                Self::DEFAULT_MIGRATION_LOCK_TIMEOUT,
            ));
        }
        if self.call_timeout.is_zero() {
            return Err(format!(
                "invalid call_timeout of {:?}: every call would time out; use a positive duration, \
                 such as the default {:?}",
                self.call_timeout,
                Self::DEFAULT_CALL_TIMEOUT,
            ));
        }
        if self.connect_timeout.is_zero() {
            return Err(format!(
                "invalid connect_timeout of {:?}: no connection could be opened; use a positive \
                 duration, such as the default {:?}",
                self.connect_timeout,
                Self::DEFAULT_CONNECT_TIMEOUT,
            ));
        }
        Ok(())
    }

    /// Returns the limit on a whole call.
    pub fn get_call_timeout(&self) -> Duration {
        self.call_timeout
    }

    /// Parses the connection string, which [`PostgresStore::new`](super::PostgresStore::new)
    /// calls before it opens anything. The error contains the string without its password, the
    /// problem and what to write instead.
    pub(super) fn connection(&self) -> Result<tokio_postgres::Config, String> {
        let redacted_url = redacted(&self.url);
        if let Some((scheme, _)) = self.url.split_once("://")
            && !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
            && !matches!(scheme, "postgres" | "postgresql")
        {
            return Err(format!(
                "invalid PostgreSQL connection string {redacted_url:?}: {scheme}:// is not a \
                 PostgreSQL URL; write postgres://user@host:port/dbname"
            ));
        }
        let config: tokio_postgres::Config =
            self.url.parse().map_err(|error: tokio_postgres::Error| {
                // tokio-postgres prints only "invalid connection string" and keeps the reason,
                // such as "invalid value for option `port`", in its source.
                let reason = std::error::Error::source(&error)
                    .map_or_else(|| error.to_string(), ToString::to_string);
                format!(
                    "invalid PostgreSQL connection string {redacted_url:?}: {reason}; expected \
                     postgres://user@host:port/dbname"
                )
            })?;
        if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
            return Err(format!(
                "invalid PostgreSQL connection string {redacted_url:?}: it names no server, and \
                 tokio-postgres has no default one; write the host, as in \
                 postgres://user@localhost:5432/dbname, or the folder of the server's Unix \
                 socket, as in postgres://user@%2Fvar%2Frun%2Fpostgresql/dbname"
            ));
        }
        #[cfg(feature = "tls")]
        let tls = self.tls.is_some();
        #[cfg(not(feature = "tls"))]
        let tls = false;
        if !tls && config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
            return Err(format!(
                "sslmode=require in the PostgreSQL connection string {redacted_url:?}, but the \
                 store has no certificate authorities to trust, so it connects without TLS and \
                 every connection would fail; build with the `tls` feature and pass them \
                 (`PostgresConfig::tls`, or --ssl-root-cert on the command line), or use \
                 sslmode=prefer or disable over a private network or a Unix socket"
            ));
        }
        Ok(config)
    }
}

/// Returns a connection string with its password replaced by `***`, in the URL form
/// (`postgres://user:password@host`) and as a `password=` parameter of the URL or key-value form.
fn redacted(url: &str) -> String {
    let mut shown = url.to_owned();
    if let Some(scheme_end) = shown.find("://") {
        let authority_start = scheme_end + 3;
        let authority_end = shown[authority_start..]
            .find(['/', '?'])
            .map_or(shown.len(), |end| authority_start + end);
        if let Some(at) = shown[authority_start..authority_end].rfind('@') {
            let user_info = authority_start..authority_start + at;
            if let Some(colon) = shown[user_info.clone()].find(':') {
                shown.replace_range(user_info.start + colon + 1..user_info.end, "***");
            }
        }
    }

    let mut from = 0;
    while let Some(found) = shown[from..].find("password=") {
        let value_start = from + found + "password=".len();
        let rest = &shown[value_start..];
        let value_len = match rest.strip_prefix('\'') {
            // A quoted key-value: up to the closing quote, past escaped quotes.
            Some(quoted) => {
                let mut escaped = false;
                let close = quoted.char_indices().find(|&(_, c)| {
                    let closes = c == '\'' && !escaped;
                    escaped = c == '\\' && !escaped;
                    closes
                });
                close.map_or(rest.len(), |(index, _)| index + 2)
            }
            None => rest.find([' ', '&', '\t', '\n']).unwrap_or(rest.len()),
        };
        shown.replace_range(value_start..value_start + value_len, "***");
        from = value_start + 3;
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::{PostgresConfig, redacted};

    #[test]
    fn redacted_hides_every_password() {
        assert_eq!(
            redacted("postgres://highway:s3cr:et@db:5432/highway"),
            "postgres://highway:***@db:5432/highway"
        );
        assert_eq!(
            redacted("postgres://highway@db/highway?password=s3cret&sslmode=prefer"),
            "postgres://highway@db/highway?password=***&sslmode=prefer"
        );
        assert_eq!(
            redacted("host=db password='it\\'s secret' user=highway"),
            "host=db password=*** user=highway"
        );
        assert_eq!(redacted("host=db password=s3cret"), "host=db password=***");
        assert_eq!(redacted("nonsense"), "nonsense");
    }

    #[test]
    fn connection_errors_name_the_string_without_password() {
        let error = PostgresConfig::new("mysql://root:pw@127.0.0.1:3306/test")
            .connection()
            .unwrap_err();
        assert!(
            error.contains("\"mysql://root:***@127.0.0.1:3306/test\""),
            "{error}"
        );
        assert!(
            error.contains("mysql:// is not a PostgreSQL URL"),
            "{error}"
        );

        let error = PostgresConfig::new("nonsense").connection().unwrap_err();
        assert!(error.contains("\"nonsense\""), "{error}");
        assert!(
            error.contains("postgres://user@host:port/dbname"),
            "{error}"
        );

        let error = PostgresConfig::new("postgres://u:pw@db/x?sslmode=require")
            .connection()
            .unwrap_err();
        assert!(error.contains("sslmode=require"), "{error}");
        assert!(!error.contains("pw@"), "{error}");

        for url in ["", "postgres:///highway", "dbname=highway"] {
            let error = PostgresConfig::new(url).connection().unwrap_err();
            assert!(error.contains("names no server"), "{url:?}: {error}");
        }

        #[cfg(feature = "tls")]
        {
            #[allow(deprecated)]
            let ring = rustls::crypto::ring::default_provider();
            let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(ring))
                .with_safe_default_protocol_versions()
                .expect("ring supports the default protocol versions")
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            assert!(
                PostgresConfig::new("postgres://u@db/x?sslmode=require")
                    .tls(tls)
                    .connection()
                    .is_ok()
            );
        }
        assert!(
            PostgresConfig::new("postgres://u@db/x?sslmode=prefer")
                .connection()
                .is_ok()
        );
        assert!(
            PostgresConfig::new("host=/run/postgresql password=a://b dbname=x")
                .connection()
                .is_ok()
        );
    }
}
