use std::process::ExitCode;

use clap::Args;

use super::database::{DatabaseArgs, block_on};

#[derive(Debug, Args)]
pub(super) struct MigrateArgs {
    #[command(flatten)]
    database: DatabaseArgs,
}

pub(super) fn run(args: MigrateArgs) -> ExitCode {
    block_on(async move {
        let store = args.database.store()?;
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
