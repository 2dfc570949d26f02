use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::schedule::Schedule;

#[derive(Debug, Args)]
pub(super) struct CheckArgs {
    /// The schedule file.
    file: PathBuf,
}

pub(super) fn run(args: CheckArgs) -> ExitCode {
    match Schedule::from_file(&args.file) {
        Ok(schedule) => {
            for warning in &schedule.warnings {
                eprintln!("{warning}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}
