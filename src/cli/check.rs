use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{Duration, Utc};
use clap::Args;

use crate::schedule::{Diagnostic, Schedule};

/// How far ahead `check` looks for the end of a schedule's time frame.
const HORIZON_DAYS: i64 = 7;

#[derive(Debug, Args)]
pub(super) struct CheckArgs {
    /// The schedule file.
    file: PathBuf,
}

/// Parses the file; prints warnings and exits 0 when it is valid, prints the errors and exits 1
/// when not.
pub(super) fn run(args: CheckArgs) -> ExitCode {
    match Schedule::from_file(&args.file) {
        Ok(schedule) => {
            for warning in &schedule.warnings {
                eprintln!("{warning}");
            }
            if let Some(warning) = time_frame_warning(&schedule) {
                eprintln!("{warning}");
            }
            if schedule.resources.is_empty() {
                let warning = Diagnostic::warning(
                    schedule.project.location.clone(),
                    "the schedule has no resource, so it yields no report and cannot be a \
                     limit's schedule; add a `resource ID \"Name\" { … }` block",
                );
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

/// Warns when the time frame has ended or ends within [`HORIZON_DAYS`], because outside it there
/// is no working time and every call would be rejected.
fn time_frame_warning(schedule: &Schedule) -> Option<Diagnostic> {
    let project = &schedule.project;
    let now = Utc::now();
    let end = project
        .end
        .with_timezone(&project.timezone)
        .format("%Y-%m-%d %H:%M %Z");
    if project.end <= now {
        Some(Diagnostic::warning(
            project.location.clone(),
            format!(
                "the project's time frame ended at {end}: there is no working time after it; extend the end date"
            ),
        ))
    } else if project.end <= now + Duration::days(HORIZON_DAYS) {
        Some(Diagnostic::warning(
            project.location.clone(),
            format!(
                "the project's time frame ends at {end}, within {HORIZON_DAYS} days: there is no working time after it; extend the end date"
            ),
        ))
    } else {
        None
    }
}
