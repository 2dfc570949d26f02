//! The configuration phase: a schedule's text turned into the report stored beside it.

use std::path::PathBuf;

use chrono::format::ParseErrorKind;
use chrono::{DateTime, NaiveDate, SubsecRound, Utc};
use serde::Serialize;

use super::AdminError;
use crate::report::{AvailabilityReport, ReportOptions, resource_zone, select_resource};
use crate::schedule::{ParseOptions, Schedule};
use crate::window::start_of_day;

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

/// The start of a report's horizon, as `report --from` and the admin preview accept it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HorizonStart {
    /// Local midnight of this date in the zone of the report's resource (the resource's
    /// `timezone`, else the project's). Where the clocks skip midnight, the first local time
    /// of the date.
    Date(NaiveDate),
    /// An instant.
    Instant(DateTime<Utc>),
}

impl From<DateTime<Utc>> for HorizonStart {
    fn from(instant: DateTime<Utc>) -> Self {
        HorizonStart::Instant(instant)
    }
}

impl From<NaiveDate> for HorizonStart {
    fn from(date: NaiveDate) -> Self {
        HorizonStart::Date(date)
    }
}

/// The error of a horizon start that is neither a date nor an RFC 3339 instant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid horizon start {value:?}: {}", self.reason())]
pub struct ParseHorizonStartError {
    value: String,
    out_of_range: bool,
}

impl ParseHorizonStartError {
    /// Returns the text that failed to parse.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Returns why the text is invalid and what to write instead, without the value.
    pub fn reason(&self) -> &'static str {
        if self.out_of_range {
            "no such date, time or UTC offset; check each field"
        } else {
            "expected a date such as 2025-12-20 or an RFC 3339 instant such as \
             2025-12-20T09:00:00Z"
        }
    }

    /// Returns the message for the option or field `name` that held the text, such as
    /// `invalid --from value "2026-02-30": no such date, …`.
    pub fn describe(&self, name: &str) -> String {
        format!("invalid {name} value {:?}: {}", self.value, self.reason())
    }
}

impl HorizonStart {
    /// Parses a date such as `2025-12-20` or an RFC 3339 instant such as
    /// `2025-12-20T09:00:00+01:00`.
    pub fn parse(text: &str) -> Result<HorizonStart, ParseHorizonStartError> {
        let date = NaiveDate::parse_from_str(text, "%Y-%m-%d");
        if let Ok(date) = date {
            return Ok(HorizonStart::Date(date));
        }
        let instant = DateTime::parse_from_rfc3339(text);
        if let Ok(at) = instant {
            return Ok(HorizonStart::Instant(at.with_timezone(&Utc)));
        }

        // A value of the right form with a field out of range, such as 2026-02-30.
        let out_of_range = [date.err(), instant.err()]
            .into_iter()
            .flatten()
            .any(|error| error.kind() == ParseErrorKind::OutOfRange);
        Err(ParseHorizonStartError {
            value: text.to_owned(),
            out_of_range,
        })
    }
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
    from: impl Into<HorizonStart>,
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
    let from = match from.into() {
        HorizonStart::Instant(at) => at,
        HorizonStart::Date(date) => {
            let chosen = select_resource(&schedule, resource)?;
            start_of_day(date, resource_zone(&schedule, chosen))
        }
    };
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

/// Runs `work` on Tokio's blocking threads and returns its result.
///
/// Parsing a schedule of a few megabytes and rendering a long horizon take hundreds of
/// milliseconds, and on a runtime thread they would stall every other task of that thread, such
/// as the rate-limit layer's calls in the same service.
///
/// # Panics
///
/// When `work` panics, with its panic, and when the runtime shuts down before `work` ends.
pub(crate) async fn off_runtime<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(error) => match error.try_into_panic() {
            Ok(payload) => std::panic::resume_unwind(payload),
            Err(error) => panic!("the runtime shut down while a report was rendered: {error}"),
        },
    }
}

/// Returns the name of a stored schedule in diagnostics: `TENANT/TOOL.tjp`.
pub(crate) fn schedule_file_name(tenant: &str, tool: &str) -> String {
    format!("{tenant}/{tool}.tjp")
}
