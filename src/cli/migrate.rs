use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::database::{DatabaseArgs, block_on};
use crate::store::postgres::PostgresConfig;

#[derive(Debug, Args)]
pub(super) struct MigrateArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    /// How long a migration waits for a table lock, in milliseconds, before it backs off and
    /// tries again (10 attempts). 0 waits without a limit, and 2147483647 is PostgreSQL's
    /// maximum. Calls that need the table queue behind a migration that waits.
    #[arg(
        long,
        value_name = "MS",
        default_value_t = default_lock_timeout_ms(),
        value_parser = clap::value_parser!(u64).range(0..=max_lock_timeout_ms()),
    )]
    lock_timeout_ms: u64,
}

const fn max_lock_timeout_ms() -> u64 {
    PostgresConfig::MAX_STATEMENT_TIMEOUT.as_millis() as u64
}

fn default_lock_timeout_ms() -> u64 {
    u64::try_from(PostgresConfig::DEFAULT_MIGRATION_LOCK_TIMEOUT.as_millis()).unwrap_or(u64::MAX)
}

pub(super) fn run(args: MigrateArgs) -> ExitCode {
    block_on(async move {
        let lock_timeout = Duration::from_millis(args.lock_timeout_ms);
        let store = args
            .database
            .store_with(|config| config.migration_lock_timeout(lock_timeout))?;
        let applied = store.migrate().await.map_err(|error| {
            format!("migration failed: {}", args.database.describe_error(&error))
        })?;
        if applied.is_empty() {
            eprintln!("the database is up to date");
        } else {
            let versions: Vec<String> = applied.iter().map(ToString::to_string).collect();
            eprintln!("applied migrations {}", versions.join(", "));
        }
        Ok(ExitCode::SUCCESS)
    })
}
