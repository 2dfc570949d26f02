use std::process::ExitCode;

use clap::Parser;
use highway_ratelimit::cli::Cli;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
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
