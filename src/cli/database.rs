//! The connection option and the runtime of every database subcommand.

use std::future::Future;
use std::io::Write;
use std::process::ExitCode;

use clap::Args;
use serde::Serialize;

use crate::error_chain::ErrorChain;
use crate::store::postgres::{PostgresConfig, PostgresStore};

/// The database of the limits and counters.
#[derive(Debug, Clone, Args)]
pub(super) struct DatabaseArgs {
    /// The PostgreSQL connection string, such as postgres://user@host:5432/highway.
    #[arg(
        long,
        env = "DATABASE_URL",
        value_name = "URL",
        hide_env_values = true,
        value_parser = parse_database_url
    )]
    database_url: String,
    /// Connects over TLS and trusts the server certificates signed by the certificates of this
    /// PEM file, such as /etc/ssl/certs/ca-certificates.crt. The server certificate must name
    /// the host of the URL. The URL's sslmode=require refuses a server without TLS.
    #[cfg(feature = "tls")]
    #[arg(long, env = "PGSSLROOTCERT", value_name = "FILE")]
    ssl_root_cert: Option<std::path::PathBuf>,
}

impl DatabaseArgs {
    /// Opens a store with a small pool: a command runs a handful of queries.
    pub(super) fn store(&self) -> Result<PostgresStore, String> {
        self.store_with(|config| config)
    }

    /// Opens a store with a small pool and the settings that `configure` changes.
    pub(super) fn store_with(
        &self,
        configure: impl FnOnce(PostgresConfig) -> PostgresConfig,
    ) -> Result<PostgresStore, String> {
        let config = PostgresConfig::new(self.database_url.clone()).pool_size(2);
        #[cfg(feature = "tls")]
        let config = match &self.ssl_root_cert {
            Some(path) => config.tls(
                crate::store::postgres::root_certificates_config(path)
                    .map_err(|message| format!("{message}; check --ssl-root-cert"))?,
            ),
            None => config,
        };
        let config = configure(config);
        PostgresStore::new(config).map_err(|error| {
            format!(
                "{}; check --database-url or DATABASE_URL",
                ErrorChain(&error)
            )
        })
    }

    /// Returns the message of a database error with its causes and what to do next.
    pub(super) fn describe_error(&self, error: &(dyn std::error::Error + 'static)) -> String {
        self.with_hint(ErrorChain(error).to_string())
    }

    /// Returns `message` followed by what to do next when it reports missing tables, a missing
    /// database, a login the server refused or a connection that failed, else `message`
    /// unchanged.
    pub(super) fn with_hint(&self, message: String) -> String {
        if message.contains("relation \"highway.") && message.contains("does not exist") {
            format!("{message}; create the tables with `highway-ratelimit migrate`")
        } else if message.contains("SQLSTATE 3D000")
            || (message.contains("FATAL: database \"") && message.contains("does not exist"))
        {
            let name = self
                .database_url
                .parse::<tokio_postgres::Config>()
                .ok()
                .and_then(|config| config.get_dbname().map(str::to_owned))
                .unwrap_or_else(|| "NAME".to_owned());
            format!(
                "{message}; create it (`createdb {name}` on the server) or name an existing \
                 database in --database-url or DATABASE_URL"
            )
        } else if message.contains("SQLSTATE 28000")
            || message.contains("SQLSTATE 28P01")
            || (message.contains("FATAL: role \"") && message.contains("does not exist"))
            || message.contains("password authentication failed")
            || message.contains("no pg_hba.conf entry")
        {
            format!(
                "{message}; check the user and password of --database-url or DATABASE_URL, and \
                 that the server's pg_hba.conf lets that user in from this host"
            )
        } else if message.contains("invalid peer certificate") {
            format!(
                "{message}; pass the certificate authority that signed the server's certificate                  with --ssl-root-cert, and name a host that the certificate names"
            )
        } else if message.contains("connect") || message.contains("timed out") {
            format!(
                "{message}; check that PostgreSQL is running at {} and that --database-url or \
                 DATABASE_URL names it",
                self.servers()
            )
        } else {
            message
        }
    }

    /// Returns the servers of the connection string as `HOST:PORT`, without the user's password.
    fn servers(&self) -> String {
        let Ok(config) = self.database_url.parse::<tokio_postgres::Config>() else {
            return "the server of the connection string".to_owned();
        };
        let ports = config.get_ports();
        let port = |index: usize| {
            ports
                .get(index)
                .or(ports.first())
                .copied()
                .unwrap_or(DEFAULT_PORT)
        };
        let servers: Vec<String> = config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(index, host)| match host {
                tokio_postgres::config::Host::Tcp(name) => format!("{name}:{}", port(index)),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(folder) => {
                    format!("{}/.s.PGSQL.{}", folder.display(), port(index))
                }
            })
            .collect();
        if servers.is_empty() {
            format!("localhost:{}", port(0))
        } else {
            servers.join(", ")
        }
    }
}

/// Parses `--database-url`, which an empty `DATABASE_URL` sets to an empty string: the
/// connection would then fail with "both host and hostaddr are missing".
fn parse_database_url(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        return Err(
            "the connection string is empty: set DATABASE_URL to one, such as \
             postgres://user@host:5432/highway, or pass --database-url"
                .to_owned(),
        );
    }
    Ok(text.to_owned())
}

/// The port of a connection string that names none.
const DEFAULT_PORT: u16 = 5432;

/// Runs `work` on a single-threaded Tokio runtime; an error is printed on stderr as
/// `error: …` and yields exit code 1.
pub(super) fn block_on<F>(work: F) -> ExitCode
where
    F: Future<Output = Result<ExitCode, String>>,
{
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Parses an IANA time zone name for an option, with a message that shows the expected form.
pub(super) fn parse_timezone(text: &str) -> Result<chrono_tz::Tz, String> {
    crate::calendar::parse_zone_name(text)
}

/// Parses an English weekday name for an option.
pub(super) fn parse_weekday(text: &str) -> Result<chrono::Weekday, String> {
    text.parse()
        .map_err(|_| format!("invalid day {text:?}: expected a weekday such as monday or sunday"))
}

/// Parses a static limit for `--per-minute`, `--per-hour` or `--per-day`. The options accept a
/// leading `-`, so that `-1` gets this message instead of clap's "unexpected argument". The
/// admin API checks the upper bound.
pub(super) fn parse_limit(text: &str) -> Result<u64, String> {
    text.parse().map_err(|_| {
        format!(
            "invalid limit {text:?}: expected a whole number of calls from 0 to {}, such as 500",
            i32::MAX
        )
    })
}

/// Parses `--cost`, which accepts a leading `-` for the same reason as [`parse_limit`]. The
/// command checks that the cost is not 0.
pub(super) fn parse_cost(text: &str) -> Result<u64, String> {
    text.parse().map_err(|_| {
        format!("invalid cost {text:?}: expected a whole number of 1 or more, such as 3")
    })
}

/// The first instant `--at` accepts.
const FIRST_INSTANT: &str = "0001-01-01T00:00:00Z";
/// The last instant `--at` accepts, to the second.
const LAST_INSTANT: &str = "9998-12-31T23:59:59Z";

/// Parses an RFC 3339 instant for an option, from the year 0001 through 9998 in UTC.
///
/// RFC 3339 writes only the years 0000 to 9999. A window can end up to a month after the
/// instant, so a call on 9999-12-31 has a day window that ends in the year 10000, which the JSON
/// output would print as `+10000-01-01T00:00:00Z`. A year of margin at each end keeps every
/// window of an accepted instant within RFC 3339 in any time zone.
pub(super) fn parse_instant(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    use chrono::Datelike;

    let instant = chrono::DateTime::parse_from_rfc3339(text)
        .map(|instant| instant.with_timezone(&chrono::Utc))
        .map_err(|_| {
            format!(
                "invalid instant {text:?}: expected RFC 3339 with a time and an offset, such as 2026-03-02T10:00:00Z"
            )
        })?;
    if !(1..=9998).contains(&instant.year()) {
        return Err(format!(
            "invalid instant {text:?}: the supported range is {FIRST_INSTANT} to {LAST_INSTANT} \
             in UTC, so that the call's windows start and end within the years 0000 to 9999 that \
             RFC 3339 can write"
        ));
    }
    Ok(instant)
}

/// Prints `value` as pretty JSON on stdout. A reader that closed the pipe early (`| head`) wants
/// no more, so that is no error.
pub(super) fn print_json<T: Serialize>(value: &T) -> Result<(), String> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|error| format!("cannot print JSON: {error}"))?;
    text.push('\n');
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(format!("cannot write to stdout: {error}"))
        }
        _ => Ok(()),
    }
}
