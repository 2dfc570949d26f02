//! The week view: a report drawn as a grid of local days × half hours for people to read.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};

use super::{AvailabilityReport, Capacity};
use crate::calendar::{LocalDay, WorkingTime, leave_label, local_date};
use crate::schedule::{Interval, Resource, Schedule};

/// The width of the day label column, `Mon 22 Dec` and two spaces.
const LABEL_WIDTH: usize = 12;
/// Each character of the grid stands for half an hour of local time.
const CELL_SECONDS: u32 = 1800;
const CELLS: u32 = 86_400 / CELL_SECONDS;
/// The width of a terminal the view must fit.
const MAX_WIDTH: usize = 80;
const LEVEL_LETTERS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// A report drawn as one line per local day, 48 half-hour cells wide, in at most 80 columns.
///
/// A letter marks an open half hour and names its capacity level, which the legend under the
/// grid lists. The letter is lower case when the half hour is open only in part. A `.` marks a
/// closed half hour, and a blank lies outside the horizon or in local time a clock change skips. A blocked date shows the
/// vacations or leaves that close it, and a day with a clock change says so at its end.
///
/// ```
/// use chrono::{DateTime, Utc, Weekday};
/// use highway_ratelimit::report::{AvailabilityReport, AvailabilityWindow, Capacity, WeekView};
///
/// let at = |text: &str| text.parse::<DateTime<Utc>>().unwrap();
/// let capacity = Capacity { per_day: Some(500), ..Capacity::UNLIMITED };
/// let report = AvailabilityReport {
///     version: 1,
///     generated_at: at("2025-12-22T00:00:00Z"),
///     valid_until: at("2025-12-23T00:00:00Z"),
///     timezone: chrono_tz::UTC,
///     week_start: Weekday::Mon,
///     windows: vec![AvailabilityWindow { start: at("2025-12-22T09:00:00Z"), end: at("2025-12-22T17:00:00Z"), capacity }],
///     blocked_dates: vec![],
///     default_capacity: capacity,
/// };
/// let view = WeekView::new(&report, at("2025-12-22T00:00:00Z")).to_string();
/// assert!(view.contains("Mon 22 Dec  ..................AAAAAAAAAAAAAAAA.............."));
/// assert!(view.contains("A  500/day"));
/// ```
#[derive(Debug, Clone)]
pub struct WeekView<'a> {
    report: &'a AvailabilityReport,
    from: DateTime<Utc>,
    title: Option<String>,
    blocked_names: BTreeMap<NaiveDate, String>,
    notes: Vec<String>,
}

impl<'a> WeekView<'a> {
    /// Draws `report`, whose horizon starts at `from`.
    pub fn new(report: &'a AvailabilityReport, from: DateTime<Utc>) -> WeekView<'a> {
        WeekView {
            report,
            from,
            title: None,
            blocked_names: BTreeMap::new(),
            notes: Vec::new(),
        }
    }

    /// Sets the first line, such as the resource's id and name.
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// Names what blocks `date`, such as `Christmas`.
    pub fn blocked_name(mut self, date: NaiveDate, name: impl Into<String>) -> Self {
        self.blocked_names.insert(date, name.into());
        self
    }

    /// Titles the view with `resource` and names each blocked date after the vacations and
    /// leaves of `schedule` that block it.
    pub fn describe_resource(mut self, schedule: &Schedule, resource: &Resource) -> Self {
        let working_time = WorkingTime::new(schedule, resource);
        for date in &self.report.blocked_dates {
            let names: Vec<String> = working_time
                .leaves_on(*date)
                .into_iter()
                .map(leave_label)
                .collect();
            if !names.is_empty() {
                self.blocked_names.insert(*date, names.join(", "));
            }
        }
        self.title(format!("{} \"{}\"", resource.id, resource.name))
    }

    /// Adds a line under the grid, such as a warning.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    fn levels(&self) -> Vec<Capacity> {
        let mut levels: Vec<Capacity> = Vec::new();
        for window in &self.report.windows {
            if !levels.contains(&window.capacity) {
                levels.push(window.capacity);
            }
        }
        levels
    }

    fn horizon(&self) -> Interval {
        Interval {
            start: self.from,
            end: self.report.valid_until,
        }
    }

    /// Returns the grid line of one date and its open time in seconds.
    fn day_cells(&self, day: &LocalDay, levels: &[Capacity]) -> (String, i64) {
        let mut cells = String::with_capacity(CELLS as usize);
        let mut open_total = 0;
        for cell in 0..CELLS {
            let instants = day.instants(cell * CELL_SECONDS, (cell + 1) * CELL_SECONDS);
            let inside: Vec<Interval> = instants
                .iter()
                .filter_map(|span| intersect(*span, self.horizon()))
                .collect();
            let length: i64 = inside.iter().map(seconds).sum();
            let full_length: i64 = instants.iter().map(seconds).sum();
            if length == 0 {
                cells.push(' ');
                continue;
            }

            let mut open_by_level = vec![0_i64; levels.len()];
            for span in &inside {
                let first = self
                    .report
                    .windows
                    .partition_point(|window| window.end <= span.start);
                for window in self.report.windows[first..]
                    .iter()
                    .take_while(|window| window.start < span.end)
                {
                    let overlap = intersect(
                        *span,
                        Interval {
                            start: window.start,
                            end: window.end,
                        },
                    );
                    let level = levels
                        .iter()
                        .position(|level| *level == window.capacity)
                        .unwrap_or(0);
                    open_by_level[level] += overlap.as_ref().map_or(0, seconds);
                }
            }
            let open: i64 = open_by_level.iter().sum();
            open_total += open;
            if open == 0 {
                cells.push('.');
                continue;
            }
            let level = (0..levels.len())
                .max_by_key(|level| (open_by_level[*level], usize::MAX - level))
                .unwrap_or(0);
            let letter = char::from(*LEVEL_LETTERS.get(level).unwrap_or(&b'*'));
            // Part of the half hour may lie outside the horizon: that part is not open either.
            cells.push(if open < full_length {
                letter.to_ascii_lowercase()
            } else {
                letter
            });
        }
        (cells, open_total)
    }
}

impl fmt::Display for WeekView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let report = self.report;
        let zone = report.timezone;
        let show = |at: DateTime<Utc>| at.with_timezone(&zone).format("%Y-%m-%d %H:%M").to_string();
        if let Some(title) = &self.title {
            for line in wrap(title, MAX_WIDTH) {
                writeln!(f, "{line}")?;
            }
        }
        let horizon = format!(
            "{} to {}, local time in {zone}",
            show(self.from),
            show(report.valid_until)
        );
        for line in wrap(&horizon, MAX_WIDTH) {
            writeln!(f, "{line}")?;
        }

        let levels = self.levels();
        let first = local_date(self.from, zone);
        let end = report
            .valid_until
            .checked_sub_signed(Duration::seconds(1))
            .unwrap_or(report.valid_until);
        let last = local_date(end, zone);
        let mut date = first;
        while date <= last {
            if date == first || date.weekday() == report.week_start {
                writeln!(f)?;
                write_axis(f)?;
            }
            let label = date.format("%a %d %b").to_string();
            if report.blocked_dates.binary_search(&date).is_ok() {
                let name = self
                    .blocked_names
                    .get(&date)
                    .map_or("vacation or leave", String::as_str);
                // Several vacations may block one date: continue their names under the first.
                let indent = LABEL_WIDTH + "blocked: ".len();
                let mut prefix = format!("{label:<LABEL_WIDTH$}blocked: ");
                let mut lines = wrap(name, MAX_WIDTH - indent);
                if lines.is_empty() {
                    lines.push("vacation or leave".to_owned());
                }
                for line in lines {
                    writeln!(f, "{prefix}{line}")?;
                    prefix = " ".repeat(indent);
                }
            } else {
                let day = LocalDay::new(date, zone);
                let (cells, open) = self.day_cells(&day, &levels);
                let mut line = format!("{label:<LABEL_WIDTH$}{cells} {:>5}", hours(open));
                for (_, change) in day.clock_changes() {
                    line.push_str(&format!(
                        " clocks {}{}",
                        if change > 0 { '+' } else { '-' },
                        hours(change.abs())
                    ));
                }
                writeln!(f, "{}", line.trim_end())?;
            }
            let Some(next) = date.succ_opt() else { break };
            date = next;
        }

        writeln!(f)?;
        if levels.is_empty() {
            writeln!(f, "No open time in the horizon.")?;
        }
        for (letter, level) in LEVEL_LETTERS.iter().zip(&levels) {
            writeln!(f, "{}  {}", char::from(*letter), describe(level))?;
        }
        // The grid marks every level past the letters with `*`, so one line covers them all.
        let unlettered = levels.len().saturating_sub(LEVEL_LETTERS.len());
        if unlettered > 0 {
            let noun = if unlettered == 1 {
                "capacity"
            } else {
                "capacities"
            };
            writeln!(f, "*  {unlettered} other {noun}, listed in the JSON report")?;
        }
        writeln!(
            f,
            "Lower case: open for part of the half hour. '.': closed."
        )?;
        writeln!(
            f,
            "Blank: outside the horizon or skipped by a clock change."
        )?;
        for note in &self.notes {
            for line in wrap(note, MAX_WIDTH) {
                writeln!(f, "{line}")?;
            }
        }
        Ok(())
    }
}

/// Breaks `text` into lines of at most `width` characters at spaces; a longer word keeps a
/// line of its own.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

fn write_axis(f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let mut axis = " ".repeat(LABEL_WIDTH);
    for hour in (0..24).step_by(2) {
        axis.push_str(&format!("{hour:02}  "));
    }
    writeln!(f, "{}", axis.trim_end())
}

/// Describes a capacity as `10/min, 100/h, 500/day`.
fn describe(capacity: &Capacity) -> String {
    if capacity.is_unlimited() {
        return "no limit".to_owned();
    }
    capacity
        .limits()
        .map(|(kind, limit)| {
            let unit = match kind {
                crate::window::WindowKind::Minute => "min",
                crate::window::WindowKind::Hour => "h",
                crate::window::WindowKind::Day => "day",
                crate::window::WindowKind::Week => "week",
                crate::window::WindowKind::Month => "month",
            };
            format!("{limit}/{unit}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn hours(seconds: i64) -> String {
    if seconds % 3600 == 0 {
        format!("{}h", seconds / 3600)
    } else {
        format!("{:.1}h", seconds as f64 / 3600.0)
    }
}

fn intersect(a: Interval, b: Interval) -> Option<Interval> {
    let span = Interval {
        start: a.start.max(b.start),
        end: a.end.min(b.end),
    };
    (span.start < span.end).then_some(span)
}

fn seconds(span: &Interval) -> i64 {
    (span.end - span.start).num_seconds()
}
