//! The configuration phase: a schedule's text turned into the report stored beside it.

use std::path::PathBuf;

use chrono::{DateTime, SubsecRound, Utc};
use serde::Serialize;

use super::AdminError;
use crate::report::{AvailabilityReport, ReportOptions};
use crate::schedule::{ParseOptions, Schedule};

/// The number of days a stored report covers unless configured otherwise.
pub const DEFAULT_HORIZON_DAYS: u32 = 7;

/// A rendered report with the warnings found while parsing the schedule and rendering it.
#[derive(Debug, Clone, Serialize)]
pub struct ReportPreview {
    /// The report.
    pub report: AvailabilityReport,
    /// Warnings, such as a time frame that ends inside the horizon, one per entry.
    pub warnings: Vec<String>,
    /// The end of the schedule's time frame: no call is allowed from then on.
    pub time_frame_end: DateTime<Utc>,
}

/// Parses `definition` and renders the report of `resource` for `days` days from `from`.
///
/// `from` and `generated_at` are cut to whole seconds, so the report's instants survive a
/// `TIMESTAMPTZ` column (microseconds) unchanged.
///
/// `file_name` is the name printed in `FILE:LINE:COL` diagnostics. A stored schedule has no
/// folder, so `include` is rejected: the definition must be self-contained.
pub(crate) fn render(
    definition: &str,
    file_name: &str,
    resource: Option<&str>,
    from: DateTime<Utc>,
    days: u32,
) -> Result<ReportPreview, AdminError> {
    let options = ParseOptions {
        file_name: PathBuf::from(file_name),
        base_dir: None,
    };
    let schedule = Schedule::parse(definition, &options)?;

    // The report is stamped with the start of its horizon, because the layer uses a report from
    // its `generated_at` up to its `valid_until`. A past horizon is then covered whole, and the
    // time before a future one, where the report has no windows, is not covered.
    let from = from.trunc_subsecs(0);
    let report_options = ReportOptions {
        resource: resource.map(str::to_owned),
        from,
        days,
        generated_at: from,
    };
    let generated = AvailabilityReport::generate(&schedule, &report_options)?;

    let mut warnings: Vec<String> = schedule.warnings.iter().map(ToString::to_string).collect();
    warnings.extend(generated.warnings);
    Ok(ReportPreview {
        report: generated.report,
        warnings,
        time_frame_end: schedule.project.end,
    })
}

/// Returns the name of a stored schedule in diagnostics: `TENANT/TOOL.tjp`.
pub(crate) fn schedule_file_name(tenant: &str, tool: &str) -> String {
    format!("{tenant}/{tool}.tjp")
}
