use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::Utc;
use clap::{Args, ValueEnum};

use crate::admin::HorizonStart;
use crate::report::{
    AvailabilityReport, MAX_HORIZON_DAYS, ReportError, ReportOptions, WeekView, resource_zone,
    select_resource,
};
use crate::schedule::Schedule;
use crate::window::start_of_day;

#[derive(Debug, Args)]
pub(super) struct ReportArgs {
    /// The schedule file.
    file: PathBuf,
    /// The resource to report on; may be left out when the file has one resource, or only one
    /// without child resources.
    #[arg(long)]
    resource: Option<String>,
    /// The start of the horizon: a date (local midnight in the resource's zone, else the
    /// project's) or an RFC 3339 instant. Defaults to now.
    #[arg(long)]
    from: Option<String>,
    /// The length of the horizon in local calendar days, 1 to 3660.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_HORIZON_DAYS)))]
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
    match render(&args) {
        Ok(output) => {
            let mut stdout = std::io::stdout().lock();
            if stdout.write_all(output.as_bytes()).is_err() {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

/// Returns the text for stdout; prints warnings on stderr.
fn render(args: &ReportArgs) -> Result<String, String> {
    let from_arg = args
        .from
        .as_deref()
        .map(HorizonStart::parse)
        .transpose()
        .map_err(|error| format!("error: {}", error.describe("--from")))?;
    let schedule = Schedule::from_file(&args.file).map_err(|error| error.to_string())?;
    for warning in &schedule.warnings {
        eprintln!("{warning}");
    }

    let resource =
        select_resource(&schedule, args.resource.as_deref()).map_err(|error| match error {
            ReportError::ResourceRequired { .. } => format!("error: {error} with --resource ID"),
            ReportError::UnknownResource { .. } => {
                format!("error: {error}; pass one of them to --resource")
            }
            other => format!("error: {other}"),
        })?;
    if args.resource.is_none() && schedule.resources.len() > 1 {
        eprintln!(
            "note: the report is for resource {:?}, the only one without sub-resources; pass --resource ID for another",
            resource.id
        );
    }
    let zone = resource_zone(&schedule, resource);
    let now = Utc::now();
    let from = match from_arg {
        Some(HorizonStart::Date(date)) => start_of_day(date, zone),
        Some(HorizonStart::Instant(at)) => at,
        None => now,
    };

    // The layer uses a report from its `generated_at` up to its `valid_until`, so the report is
    // stamped with the start of its horizon. It then covers the whole horizon of a past `--from`,
    // and none of the time before a future one, where it has no windows.
    let options = ReportOptions {
        resource: Some(resource.id.clone()),
        from,
        days: args.days,
        generated_at: from,
    };
    let generated =
        AvailabilityReport::generate(&schedule, &options).map_err(|error| match error {
            ReportError::InvalidHorizon { .. } => format!("error: {error}; pass --days N"),
            other => format!("error: {other}"),
        })?;
    for warning in &generated.warnings {
        eprintln!("warning: {warning}");
    }

    let report = &generated.report;
    match args.format {
        Format::Json => {
            let mut json = serde_json::to_string_pretty(report)
                .map_err(|error| format!("error: cannot write the report as JSON: {error}"))?;
            json.push('\n');
            Ok(json)
        }
        Format::Week => {
            let mut view = WeekView::new(report, from).describe_resource(&schedule, resource);
            for warning in &generated.warnings {
                view = view.note(format!("Note: {warning}."));
            }
            Ok(view.to_string())
        }
    }
}
