//! The `highway-ratelimit` command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod check;
mod report;

/// Calendar-aware rate limits for tool calls: check schedules and render availability reports.
#[derive(Debug, Parser)]
#[command(name = "highway-ratelimit", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a `.tjp` schedule: exit 0 when valid (warnings on stderr), 1 with the errors on stderr.
    Check(check::CheckArgs),
    /// Print the availability report of one resource of a schedule.
    Report(report::ReportArgs),
}

impl Cli {
    /// Runs the command and returns the process exit code.
    pub fn run(self) -> ExitCode {
        match self.command {
            Command::Check(args) => check::run(args),
            Command::Report(args) => report::run(args),
        }
    }
}
