use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

#[derive(Debug, Args)]
pub(super) struct ReportArgs {
    /// The schedule file.
    file: PathBuf,
    /// The resource to report on; may be left out when the file has one resource.
    #[arg(long)]
    resource: Option<String>,
    /// The start of the horizon: a date (local midnight in the schedule's zone) or an RFC 3339
    /// instant. Defaults to now.
    #[arg(long)]
    from: Option<String>,
    /// The length of the horizon in days.
    #[arg(long, default_value_t = 7)]
    days: u32,
    /// `json` for the report, `week` for a grid of days × hours.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Json,
    Week,
}

pub(super) fn run(args: ReportArgs) -> ExitCode {
    let _ = args;
    eprintln!("report: not built yet");
    ExitCode::FAILURE
}
