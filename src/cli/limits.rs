use std::path::PathBuf;
use std::process::ExitCode;

use chrono::Weekday;
use chrono_tz::Tz;
use clap::{Args, Subcommand};

use super::database::{
    DatabaseArgs, block_on, parse_limit, parse_timezone, parse_weekday, print_json,
};
use crate::admin::{Admin, AdminError, LimitSpec};
use crate::policy::Scope;
use crate::report::ReportError;
use crate::schedule::{Location, ParseOptions, ReadError, Schedule, read_file};

#[derive(Debug, Args)]
pub(super) struct LimitsArgs {
    #[command(subcommand)]
    command: LimitsCommand,
}

#[derive(Debug, Subcommand)]
enum LimitsCommand {
    /// Create or replace the limit of a tenant for a tool, and tell every worker.
    Set(SetArgs),
    /// Print the limit stored for exactly this tenant and tool.
    Get(KeyArgs),
    /// Print every limit, or those of one tenant.
    List(ListArgs),
    /// Delete the limit of a tenant for a tool; the tenant then follows the default tenant's.
    Delete(KeyArgs),
}

#[derive(Debug, Args)]
struct SetArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    /// The tenant id; `default` sets the limit of every tenant without one of its own.
    #[arg(long)]
    tenant: String,
    /// The tool name, such as tools.email.send.
    #[arg(long)]
    tool: String,
    /// The counter that calls share: one for every caller (global), per tenant, or per workflow run.
    #[arg(long, default_value = "tenant", value_parser = ["global", "tenant", "workflow"])]
    scope: String,
    /// The maximum of calls (or cost units) per minute, without a schedule.
    #[arg(long, value_name = "N", value_parser = parse_limit, allow_negative_numbers = true)]
    per_minute: Option<u64>,
    /// The maximum of calls (or cost units) per hour, without a schedule.
    #[arg(long, value_name = "N", value_parser = parse_limit, allow_negative_numbers = true)]
    per_hour: Option<u64>,
    /// The maximum of calls (or cost units) per day, without a schedule.
    #[arg(long, value_name = "N", value_parser = parse_limit, allow_negative_numbers = true)]
    per_day: Option<u64>,
    /// A .tjp schedule that decides when calls are allowed and how many; it is stored in the
    /// database, so it must not use `include`.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["per_minute", "per_hour", "per_day"])]
    schedule: Option<PathBuf>,
    /// The schedule's resource whose availability applies; may be left out when it has one.
    #[arg(long, value_name = "ID", requires = "schedule")]
    resource: Option<String>,
    /// The IANA time zone whose midnight starts the day windows, such as Europe/Berlin (default
    /// UTC). With a schedule, leave it out or give the schedule's zone.
    #[arg(long, value_name = "ZONE", value_parser = parse_timezone)]
    timezone: Option<Tz>,
    /// The first day of a week, such as monday (the default) or sunday. It is stored for week
    /// windows, which the limits of this command do not have. With a schedule, leave it out or
    /// give the schedule's week start.
    #[arg(long, value_name = "DAY", value_parser = parse_weekday)]
    week_start: Option<Weekday>,
    /// Admit calls when the token store fails or times out, instead of rejecting them.
    #[arg(long)]
    fail_open: bool,
    /// Store the limit switched off: calls are admitted and not counted.
    #[arg(long)]
    disabled: bool,
}

#[derive(Debug, Args)]
struct KeyArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    /// The tenant id.
    #[arg(long)]
    tenant: String,
    /// The tool name.
    #[arg(long)]
    tool: String,
}

#[derive(Debug, Args)]
struct ListArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    /// Only this tenant's limits.
    #[arg(long)]
    tenant: Option<String>,
}

pub(super) fn run(args: LimitsArgs) -> ExitCode {
    block_on(async move {
        let database = match &args.command {
            LimitsCommand::Set(set) => &set.database,
            LimitsCommand::Get(key) | LimitsCommand::Delete(key) => &key.database,
            LimitsCommand::List(list) => &list.database,
        }
        .clone();
        let admin = Admin::from_store(&database.store()?);
        match args.command {
            LimitsCommand::Set(set) => {
                let (spec, printed) = spec_from_args(set)?;
                let unlimited = spec.admits_every_call();
                let outcome = admin.upsert(&spec).await.map_err(|error| match error {
                    AdminError::Report(ReportError::ResourceRequired { .. }) => {
                        format!("{error} with --resource ID")
                    }
                    AdminError::Report(ReportError::UnknownResource { .. }) => {
                        format!("{error}; pass one of them to --resource")
                    }
                    other => database.describe_error(&other),
                })?;
                // The schedule's own warnings come first, and were printed with the file's name
                // and `warning:`. The report's have neither, as in `report`.
                for warning in outcome.warnings.iter().skip(printed) {
                    eprintln!("warning: {warning}");
                }
                if unlimited {
                    eprintln!(
                        "note: the limit of tenant {:?} for tool {:?} has no --per-minute, --per-hour, \
                         --per-day or --schedule, so it admits every call without counting it",
                        spec.tenant, spec.tool
                    );
                }
                print_json(&outcome.limit)?;
            }
            LimitsCommand::Get(key) => {
                let limit = admin
                    .get(&key.tenant, &key.tool)
                    .await
                    .map_err(|error| database.describe_error(&error))?;
                print_json(&limit)?;
            }
            LimitsCommand::List(list) => {
                let limits = admin
                    .list(list.tenant.as_deref())
                    .await
                    .map_err(|error| database.describe_error(&error))?;
                print_json(&limits)?;
            }
            LimitsCommand::Delete(key) => {
                admin
                    .delete(&key.tenant, &key.tool)
                    .await
                    .map_err(|error| database.describe_error(&error))?;
                eprintln!(
                    "deleted the limit of tenant {:?} for tool {:?}",
                    key.tenant, key.tool
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Returns the limit to store, and how many warnings of its schedule were printed.
fn spec_from_args(args: SetArgs) -> Result<(LimitSpec, usize), String> {
    let scope: Scope = args
        .scope
        .parse()
        .map_err(|error: crate::policy::ParseScopeError| error.to_string())?;

    let mut printed = 0;
    let schedule = match &args.schedule {
        Some(path) => {
            let text = read_file(path).map_err(|error| match error {
                ReadError::InvalidUtf8 { .. } => {
                    let whole_file = Location {
                        file: path.clone(),
                        line: 0,
                        column: 0,
                    };
                    error.diagnostic(path, whole_file, "").to_string()
                }
                other => format!("cannot read the schedule {}: {other}", path.display()),
            })?;
            // Parse here first so that errors name the file the operator passed.
            let options = ParseOptions {
                file_name: path.clone(),
                base_dir: None,
            };
            let schedule = Schedule::parse(&text, &options).map_err(|error| error.to_string())?;
            for warning in &schedule.warnings {
                eprintln!("{warning}");
            }
            printed = schedule.warnings.len();
            Some(text)
        }
        None => None,
    };

    let spec = LimitSpec {
        tenant: args.tenant,
        tool: args.tool,
        scope,
        per_minute: args.per_minute,
        per_hour: args.per_hour,
        per_day: args.per_day,
        schedule,
        resource: args.resource,
        timezone: args.timezone,
        week_start: args.week_start,
        enabled: !args.disabled,
        fail_open: args.fail_open,
    };
    Ok((spec, printed))
}
