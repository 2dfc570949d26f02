use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use highway_ratelimit::cli::Cli;

fn main() -> ExitCode {
    // Without RUST_LOG the command logs errors only, plus the warnings of a migration that backs
    // off from a lock, so that `migrate` is not silent while it waits and tries again.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "error,highway_ratelimit::store::postgres::migrations=warn",
        )
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    // Usage errors exit 1 like every other error: exit code 2 means "rejected" for `acquire`.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            let missing_database = error.kind() == clap::error::ErrorKind::MissingRequiredArgument
                && error.to_string().contains("--database-url");
            if missing_database {
                eprintln!("\nSet the DATABASE_URL environment variable or pass --database-url.");
            }
            return if error.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    cli.run()
}
