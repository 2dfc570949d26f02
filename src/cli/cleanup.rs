use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use super::database::{DatabaseArgs, block_on, print_json};
use crate::admin::{Cleanup, DEFAULT_RETENTION};

#[derive(Debug, Args)]
pub(super) struct CleanupArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    /// How long usage rows are kept after their window ends, in hours. Rows of open windows are
    /// never deleted. Hour rows are kept an hour longer, and day, week and month rows two days
    /// longer.
    #[arg(
        long,
        value_name = "HOURS",
        default_value_t = default_retention_hours(),
        value_parser = parse_hours,
        allow_negative_numbers = true
    )]
    retention_hours: u64,
}

/// Parses `--retention-hours`, which accepts a leading `-` so that `-1` gets this message
/// instead of clap's "unexpected argument".
fn parse_hours(text: &str) -> Result<u64, String> {
    text.parse().map_err(|_| {
        format!("invalid retention {text:?}: expected a whole number of hours, such as 24")
    })
}

fn default_retention_hours() -> u64 {
    DEFAULT_RETENTION.as_secs() / 3600
}

/// The JSON that the command prints.
#[derive(Serialize)]
struct CleanupOutput {
    deleted: u64,
}

pub(super) fn run(args: CleanupArgs) -> ExitCode {
    block_on(async move {
        let retention = Duration::from_secs(args.retention_hours.saturating_mul(3600));
        let store = args.database.store()?;
        let deleted = Cleanup::new(store)
            .with_retention(retention)
            .run_once()
            .await
            .map_err(|error| format!("cleanup failed: {}", args.database.describe_error(&error)))?;
        print_json(&CleanupOutput { deleted })?;
        Ok(ExitCode::SUCCESS)
    })
}
