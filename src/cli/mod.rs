//! The `highway-ratelimit` command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod acquire;
mod check;
mod cleanup;
mod database;
mod limits;
mod migrate;
mod report;
mod usage;

/// Calendar-aware rate limits for tool calls: check schedules, render availability reports, and
/// manage limits in PostgreSQL.
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
    /// Create or upgrade the database tables and functions.
    Migrate(migrate::MigrateArgs),
    /// Create, show, list and delete the limits of tenants and tools.
    Limits(limits::LimitsArgs),
    /// Print a page of the counters a tenant's calls to a tool are charged to, in their current
    /// windows, with the cursor of the next page; --all prints every page.
    Usage(usage::UsageArgs),
    /// Make one real decision for a call as the rate-limit layer would, and print it as JSON;
    /// exit 0 when admitted, 2 when rejected, 1 on error.
    Acquire(acquire::AcquireArgs),
    /// Delete the usage rows of windows that ended more than the retention ago, once, and print
    /// how many as JSON. Workers run the same pass every 10 minutes with `admin::Cleanup`.
    Cleanup(cleanup::CleanupArgs),
}

impl Cli {
    /// Runs the command and returns the process exit code.
    pub fn run(self) -> ExitCode {
        match self.command {
            Command::Check(args) => check::run(args),
            Command::Report(args) => report::run(args),
            Command::Migrate(args) => migrate::run(args),
            Command::Limits(args) => limits::run(args),
            Command::Usage(args) => usage::run(args),
            Command::Acquire(args) => acquire::run(args),
            Command::Cleanup(args) => cleanup::run(args),
        }
    }
}
