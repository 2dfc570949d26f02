//! The connection option and the runtime of every database subcommand.

use std::future::Future;
use std::io::Write;
use std::process::ExitCode;

use clap::Args;
use serde::Serialize;

use crate::store::postgres::{PostgresConfig, PostgresStore};

/// The database of the limits and counters.
#[derive(Debug, Args)]
pub(super) struct DatabaseArgs {
    /// The PostgreSQL connection string, such as postgres://user@host:5432/highway.
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    database_url: String,
}

impl DatabaseArgs {
    /// Opens a store with a small pool: a command runs a handful of queries.
    pub(super) fn store(&self) -> Result<PostgresStore, String> {
        PostgresStore::new(PostgresConfig::new(self.database_url.clone()).pool_size(2))
            .map_err(|error| format!("{error}; check --database-url or DATABASE_URL"))
    }
}

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

/// Returns the message of `error` followed by the messages of its causes that it does not
/// already contain, so that "error connecting to server" comes with the reason.
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let text = inner.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = inner.source();
    }
    message
}

/// Returns the message of a database error with its causes and a hint about the connection.
pub(super) fn describe_database_error(error: &(dyn std::error::Error + 'static)) -> String {
    let message = describe(error);
    if message.contains("connect") || message.contains("timed out") {
        format!("{message}; check --database-url or DATABASE_URL and that the server is running")
    } else {
        message
    }
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
