//! From the syntax tree to the typed model: dates in the time zone in force where they stand,
//! inheritance of working hours, leaves, shifts and limits, and TaskJuggler's validation rules.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, Duration, DurationRound, Utc, Weekday};
use chrono_tz::Tz;

use super::ast::*;
use super::dates;
use super::lexer::{Kind, Token};
use super::source::{Expansion, Pos};
use super::{
    Diagnostic, Interval, Leave, LeaveKind, Limit, LimitKind, Location, Project, Resource,
    Schedule, Shift, ShiftAssignment, TimeRange, WorkingHours,
};

/// The slot sizes TaskJuggler accepts, in minutes.
const RESOLUTIONS: [i64; 6] = [5, 10, 15, 20, 30, 60];

pub(crate) struct Builder<'e> {
    expansion: &'e Expansion,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    /// The zone dates without an offset are read in: UTC until the project's `timezone`.
    zone: Tz,
    /// The timing resolution in seconds.
    resolution: i64,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    now: Option<DateTime<Utc>>,
    project_hours: WorkingHours,
    /// Whether the file uses a construct that only ScriptPlan accepts, which allows working hours
    /// across midnight.
    scriptplan: bool,
    shifts: Vec<Shift>,
    /// The index in `shifts` of each shift, by id, so that a large schedule is not checked in
    /// quadratic time.
    shift_indexes: HashMap<String, usize>,
    resources: Vec<Resource>,
    /// The index in `resources` of each resource, by id.
    resource_indexes: HashMap<String, usize>,
    leaves: Vec<Leave>,
    global_limits: Vec<Limit>,
    /// The location of the last `limits` block written for each resource, by resource id.
    own_limits: HashMap<String, Location>,
    /// The assignment made by the last ScriptPlan `workinghours SHIFT_ID` of each resource, by
    /// resource id.
    working_hours_shifts: HashMap<String, ShiftAssignment>,
    anonymous_resources: usize,
}

/// Builds the schedule, or returns every error found.
pub(crate) fn build(
    file: &FileAst,
    tokens: &[Token],
    expansion: &Expansion,
) -> Result<Schedule, Vec<Diagnostic>> {
    let scriptplan = uses_scriptplan_dialect(file);
    let explicit_resolution = file
        .project
        .attrs
        .iter()
        .any(|a| matches!(a, ProjectAttr::TimingResolution(_)));
    let resolution = if scriptplan && !explicit_resolution {
        derived_resolution(tokens)
    } else {
        3600
    };
    let mut builder = Builder {
        expansion,
        errors: Vec::new(),
        warnings: expansion.warnings.clone(),
        zone: Tz::UTC,
        resolution,
        start: DateTime::<Utc>::MIN_UTC,
        end: DateTime::<Utc>::MAX_UTC,
        now: None,
        project_hours: WorkingHours::default(),
        scriptplan,
        shifts: Vec::new(),
        shift_indexes: HashMap::new(),
        resources: Vec::new(),
        resource_indexes: HashMap::new(),
        leaves: Vec::new(),
        global_limits: Vec::new(),
        own_limits: HashMap::new(),
        working_hours_shifts: HashMap::new(),
        anonymous_resources: 0,
    };
    let project = builder.project(&file.project);
    for statement in &file.statements {
        builder.statement(statement, None);
    }
    if !builder.errors.is_empty() {
        return Err(builder.errors);
    }
    Ok(Schedule {
        project,
        shifts: builder.shifts,
        resources: builder.resources,
        leaves: builder.leaves,
        warnings: builder.warnings,
    })
}

/// Derives the timing resolution from the minutes of the file's dates and times, as ScriptPlan
/// does without `timingresolution`: the largest of TaskJuggler's resolutions that divides them all.
fn derived_resolution(tokens: &[Token]) -> i64 {
    let minutes = |text: &str| -> Option<i64> {
        let (_, after_colon) = text.split_once(':')?;
        let digits: String = after_colon
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    let mut divisor = 60;
    for token in tokens {
        let minute = match &token.kind {
            Kind::Date(text) | Kind::Time(text) => minutes(text),
            _ => None,
        };
        if let Some(minute) = minute {
            divisor = gcd(divisor, minute);
        }
    }
    let minutes = RESOLUTIONS
        .iter()
        .rev()
        .copied()
        .find(|r| divisor % r == 0)
        .unwrap_or(RESOLUTIONS[0]);
    minutes * 60
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Returns whether the file uses a construct that only ScriptPlan accepts: a shift without a
/// name, a resource `workinghours SHIFT_ID` or a resource `timezone`.
fn uses_scriptplan_dialect(file: &FileAst) -> bool {
    fn shift(ast: &ShiftAst) -> bool {
        ast.name.is_none()
            || ast
                .attrs
                .iter()
                .any(|a| matches!(a, ShiftAttr::Shift(s) if shift(s)))
    }
    fn resource_attrs(attrs: &[ResourceAttr]) -> bool {
        attrs.iter().any(|a| match a {
            ResourceAttr::WorkingHoursShift(_) | ResourceAttr::Timezone(_) => true,
            ResourceAttr::Resource(r) => resource_attrs(&r.attrs),
            ResourceAttr::Supplement(_, attrs) => resource_attrs(attrs),
            _ => false,
        })
    }
    fn statements(list: &[Statement]) -> bool {
        list.iter().any(|s| match s {
            Statement::Shift(s) => shift(s),
            Statement::Resource(r) => resource_attrs(&r.attrs),
            Statement::SupplementResource(_, attrs) => resource_attrs(attrs),
            Statement::Prefixed(_, list) => statements(list),
            _ => false,
        })
    }
    statements(&file.statements)
}

fn weekday_index(day: Weekday) -> usize {
    day.num_days_from_monday() as usize
}

/// Expands `mon - fri` (wrapping, as in `fri - mon`) into day flags.
fn day_flags(specs: &[DaySpec]) -> [bool; 7] {
    let mut flags = [false; 7];
    for &(first, last) in specs {
        let mut day = first;
        flags[weekday_index(day)] = true;
        if let Some(last) = last {
            while day != last {
                day = day.succ();
                flags[weekday_index(day)] = true;
            }
        }
    }
    flags
}

/// Sorts ranges and merges those that overlap or touch.
fn normalize(ranges: &mut Vec<TimeRange>) {
    ranges.sort();
    let mut merged: Vec<TimeRange> = Vec::with_capacity(ranges.len());
    for range in ranges.drain(..) {
        match merged.last_mut() {
            Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
            _ => merged.push(range),
        }
    }
    *ranges = merged;
}

fn format_instant(at: DateTime<Utc>, zone: Tz) -> String {
    at.with_timezone(&zone)
        .format("%Y-%m-%d %H:%M %Z")
        .to_string()
}

impl Builder<'_> {
    fn error(&mut self, pos: Pos, message: impl Into<String>) {
        let location = self.expansion.location(pos);
        self.errors.push(Diagnostic::error(location, message));
    }

    fn warning(&mut self, pos: Pos, message: impl Into<String>) {
        let location = self.expansion.location(pos);
        self.warnings.push(Diagnostic::warning(location, message));
    }

    // -----------------------------------------------------------------------------------------
    // Project

    fn project(&mut self, ast: &ProjectAst) -> Project {
        // The header dates are read before any `timezone`, so in UTC, at the default resolution.
        let start = self.date(&ast.start);
        let end = match &ast.end {
            ProjectEnd::Date(date) => self.date(date),
            ProjectEnd::Duration(duration) => start.and_then(|start| self.plus(start, duration)),
        };
        match (start, end) {
            (Some(start), Some(end)) if end <= start => {
                let pos = match &ast.end {
                    ProjectEnd::Date(date) => date.pos,
                    ProjectEnd::Duration(duration) => duration.pos,
                };
                self.error(
                    pos,
                    "the project ends before it starts: write the end date after the start date",
                );
            }
            (Some(start), Some(end)) => {
                self.start = start;
                self.end = end;
            }
            _ => {}
        }
        let mut project = Project {
            id: ast.id.clone(),
            name: ast.name.clone(),
            version: ast.version.clone(),
            start: start.unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
            end: end.unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
            timezone: Tz::UTC,
            timing_resolution: 3600,
            now: None,
            week_start: Weekday::Mon,
            daily_working_hours: 8.0,
            yearly_working_days: 260.714,
            working_hours: WorkingHours::default(),
            location: self.expansion.location(ast.pos),
        };
        // As in TaskJuggler, a `timingresolution` after `timezone` may make the resolution fit
        // the zone, so the zone is checked once, against the resolution in force at the end of
        // the block. The error goes to the last `timingresolution` after the zone, else to the
        // zone. An invalid `timingresolution` after the zone has its own error, which replaces
        // the zone's.
        let mut zone_check: Option<(Pos, &str)> = None;
        let mut resolution_written = false;
        for attr in &ast.attrs {
            match attr {
                ProjectAttr::Timezone(name) => {
                    if let Some(zone) = self.zone(name) {
                        self.zone = zone;
                        // TaskJuggler resets the project's working hours on a zone change.
                        self.project_hours = WorkingHours::default();
                        let advice = if resolution_written {
                            "set `timingresolution` to a divisor of the offset, such as 15 min"
                        } else {
                            "add `timingresolution 15 min` (or another divisor of the offset) to the project block"
                        };
                        zone_check = Some((name.pos, advice));
                    }
                }
                ProjectAttr::TimingResolution(duration) => {
                    let minutes = match duration.unit.as_str() {
                        "min" => duration.value,
                        "h" => duration.value * 60.0,
                        _ => f64::NAN,
                    };
                    resolution_written = true;
                    if RESOLUTIONS.iter().any(|&r| r as f64 == minutes) {
                        self.resolution = minutes as i64 * 60;
                        self.project_hours = WorkingHours::default();
                        let advice =
                            "set `timingresolution` to a divisor of the offset, such as 15 min";
                        zone_check = Some((duration.pos, advice));
                    } else {
                        zone_check = None;
                        self.error(
                            duration.pos,
                            format!(
                                "invalid timing resolution {} {}: expected 5, 10, 15, 20, 30 or 60 min, as in `timingresolution 15 min`",
                                duration.number, duration.unit
                            ),
                        );
                    }
                }
                ProjectAttr::Now(date) => {
                    self.now = self.date(date);
                    project.now = self.now;
                }
                ProjectAttr::WeekStart(day) => project.week_start = *day,
                // TaskJuggler accepts any number here, and neither value affects availability, so
                // a value out of range gets a warning, not an error.
                ProjectAttr::DailyWorkingHours(hours) => {
                    if !(hours.value > 0.0 && hours.value <= 24.0) {
                        self.warning(
                            hours.pos,
                            format!(
                                "dailyworkinghours {} is not between 0 and 24 hours: check the value (it does not affect availability)",
                                hours.value
                            ),
                        );
                    }
                    project.daily_working_hours = hours.value;
                }
                ProjectAttr::YearlyWorkingDays(days) => {
                    if !(days.value > 0.0 && days.value <= 366.0) {
                        self.warning(
                            days.pos,
                            format!(
                                "yearlyworkingdays {} is not between 0 and 366 days: check the value (it does not affect availability)",
                                days.value
                            ),
                        );
                    }
                    project.yearly_working_days = days.value;
                }
                ProjectAttr::WorkingHours(hours) => {
                    let mut working_hours = std::mem::take(&mut self.project_hours);
                    self.apply_hours(&mut working_hours, hours);
                    self.project_hours = working_hours;
                }
            }
        }
        if let Some((pos, advice)) = zone_check {
            self.check_zone_fits_resolution(pos, advice);
        }
        // The end of `START +DURATION` is misaligned whenever the start is, so only the start is
        // reported then.
        let errors_before = self.errors.len();
        if let Some(start) = start {
            self.check_aligned_date(start, &ast.start);
        }
        let start_aligned = self.errors.len() == errors_before;
        match (&ast.end, end) {
            (ProjectEnd::Date(date), Some(end)) => self.check_aligned_date(end, date),
            (ProjectEnd::Duration(duration), Some(end)) if start_aligned => {
                self.check_aligned(end, duration.pos);
            }
            _ => {}
        }
        project.timezone = self.zone;
        project.timing_resolution = self.resolution as u32;
        project.working_hours = self.project_hours.clone();
        project
    }

    fn zone(&mut self, name: &Spanned<String>) -> Option<Tz> {
        if let Some(message) = crate::calendar::zone_name_error(&name.value) {
            self.error(name.pos, message);
            return None;
        }
        match name.value.parse::<Tz>() {
            Ok(zone) => Some(zone),
            Err(_) => {
                let spelled = chrono_tz::TZ_VARIANTS
                    .iter()
                    .find(|zone| zone.name().eq_ignore_ascii_case(&name.value));
                let message = match spelled {
                    Some(zone) => format!(
                        "unknown time zone \"{}\": zone names are case-sensitive; write \"{}\"",
                        name.value,
                        zone.name()
                    ),
                    None => format!(
                        "unknown time zone \"{}\": expected an IANA name such as \"Europe/Berlin\" or \"UTC\"",
                        name.value
                    ),
                };
                self.error(name.pos, message);
                None
            }
        }
    }

    /// The zone's UTC offsets in the project's first year must be multiples of the resolution.
    /// `advice` ends the error: what to change depends on which statement was checked.
    fn check_zone_fits_resolution(&mut self, pos: Pos, advice: &str) {
        use chrono::{Offset, TimeZone};
        let start = if self.start == DateTime::<Utc>::MIN_UTC {
            DateTime::<Utc>::UNIX_EPOCH
        } else {
            self.start
        };
        for days in [0, 91, 182, 273] {
            let at = start + Duration::days(days);
            let offset = self
                .zone
                .offset_from_utc_datetime(&at.naive_utc())
                .fix()
                .local_minus_utc();
            if i64::from(offset) % self.resolution != 0 {
                let minutes = offset.abs() / 60;
                let sign = if offset < 0 { '-' } else { '+' };
                self.error(
                    pos,
                    format!(
                        "timing resolution {} min is too large for time zone {}, whose UTC offset {sign}{:02}:{:02} is not a multiple of it: {advice}",
                        self.resolution / 60,
                        self.zone,
                        minutes / 60,
                        minutes % 60
                    ),
                );
                return;
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Dates and intervals

    /// The instant of a date; after the project header, it must be aligned to the resolution.
    fn date(&mut self, date: &Spanned<DateAst>) -> Option<DateTime<Utc>> {
        let at = self.date_unchecked(date)?;
        if self.start != DateTime::<Utc>::MIN_UTC {
            match &date.value {
                DateAst::Literal(text) => self.check_aligned_text(at, date.pos, text),
                DateAst::Calculated { .. } => self.check_aligned(at, date.pos),
                DateAst::Builtin(_) => {}
            }
        }
        Some(at)
    }

    /// The instant of a date, without the alignment check: TaskJuggler checks the result of
    /// `%{ DATE + DURATION }`, not the date inside it.
    fn date_unchecked(&mut self, date: &Spanned<DateAst>) -> Option<DateTime<Utc>> {
        match &date.value {
            DateAst::Literal(text) => match dates::parse_date(text, self.zone) {
                Ok(at) => Some(at),
                Err(message) => {
                    self.error(date.pos, message);
                    None
                }
            },
            DateAst::Calculated {
                base,
                minus,
                duration,
            } => {
                let base = self.date_unchecked(base)?;
                let seconds = match dates::duration_seconds(
                    &duration.number,
                    &duration.unit,
                    self.resolution,
                ) {
                    Ok(seconds) => seconds,
                    Err(message) => {
                        self.error(duration.pos, message);
                        return None;
                    }
                };
                let delta = Duration::seconds(if *minus { -seconds } else { seconds });
                match base.checked_add_signed(delta) {
                    Some(at) if dates::YEARS.contains(&at.with_timezone(&self.zone).year()) => {
                        Some(at)
                    }
                    _ => {
                        self.error(
                            date.pos,
                            format!(
                                "the computed date lies outside the years {} to {}: change the date or the duration",
                                dates::YEARS.start(),
                                dates::YEARS.end()
                            ),
                        );
                        None
                    }
                }
            }
            DateAst::Builtin(name) => {
                if self.start == DateTime::<Utc>::MIN_UTC {
                    self.error(
                        date.pos,
                        format!("`${{{name}}}` is only defined after the project header"),
                    );
                    return None;
                }
                let now = || {
                    Utc::now()
                        .duration_trunc(Duration::hours(1))
                        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
                };
                Some(match name.as_str() {
                    "projectstart" => self.start,
                    "projectend" => self.end,
                    "now" => self.now.unwrap_or_else(now),
                    _ => {
                        let now = self
                            .now
                            .unwrap_or_else(now)
                            .with_timezone(&self.zone)
                            .date_naive();
                        dates::local_to_utc(now.and_hms_opt(0, 0, 0)?, self.zone)?
                    }
                })
            }
        }
    }

    fn check_aligned(&mut self, at: DateTime<Utc>, pos: Pos) {
        let text = format_instant(at, self.zone);
        self.check_aligned_text(at, pos, &text);
    }

    /// Checks the instant `at` of `date`, named as written when it is a literal.
    fn check_aligned_date(&mut self, at: DateTime<Utc>, date: &Spanned<DateAst>) {
        match &date.value {
            DateAst::Literal(text) => self.check_aligned_text(at, date.pos, text),
            _ => self.check_aligned(at, date.pos),
        }
    }

    fn check_aligned_text(&mut self, at: DateTime<Utc>, pos: Pos, text: &str) {
        if at.timestamp().rem_euclid(self.resolution) != 0 {
            self.error(
                pos,
                format!(
                    "date {text} is not aligned to the timing resolution of {} min: use a time on a {} minute boundary",
                    self.resolution / 60,
                    self.resolution / 60
                ),
            );
        }
    }

    fn plus(&mut self, start: DateTime<Utc>, duration: &DurationAst) -> Option<DateTime<Utc>> {
        match dates::duration_seconds(&duration.number, &duration.unit, self.resolution) {
            Ok(seconds) => match start.checked_add_signed(Duration::seconds(seconds)) {
                Some(end) if end.year() <= *dates::YEARS.end() => Some(end),
                _ => {
                    self.error(
                        duration.pos,
                        "the interval ends after the year 9999: shorten the duration",
                    );
                    None
                }
            },
            Err(message) => {
                self.error(duration.pos, message);
                None
            }
        }
    }

    /// Builds the error message for an empty interval `start - end` when one of its dates is a
    /// local time skipped by a daylight-saving change, which reads as a later time. Returns `None`
    /// when neither date is skipped.
    fn empty_by_skipped_time(
        &self,
        start: &Spanned<DateAst>,
        end: &Spanned<DateAst>,
        end_at: DateTime<Utc>,
    ) -> Option<String> {
        let written = |date: &Spanned<DateAst>| match &date.value {
            DateAst::Literal(text) => Some(text.clone()),
            _ => None,
        };
        let (start_text, end_text) = (written(start)?, written(end)?);
        let skipped = [&start_text, &end_text]
            .into_iter()
            .find(|text| dates::is_skipped_local_time(text, self.zone))?;
        let read_as = format_instant(dates::parse_date(skipped, self.zone).ok()?, self.zone);
        Some(format!(
            "interval {start_text} - {end_text} is empty: the clocks of {} skip {skipped} at a daylight-saving change, so it reads as {read_as} and the interval ends at {}; write times that exist on that day",
            self.zone,
            format_instant(end_at, self.zone)
        ))
    }

    /// Returns whether `start - end` names local times with the end first (or both the same), as
    /// written and before any zone reads them. Such a range is empty whatever the clocks skip. It
    /// is `false` when either date is not a literal or carries a zone offset.
    fn written_backwards(start: &Spanned<DateAst>, end: &Spanned<DateAst>) -> bool {
        let wall_clock = |date: &Spanned<DateAst>| match &date.value {
            DateAst::Literal(text) => dates::wall_clock_time(text),
            _ => None,
        };
        matches!(
            (wall_clock(start), wall_clock(end)),
            (Some(start_local), Some(end_local)) if end_local <= start_local
        )
    }

    fn interval(&mut self, ast: &IntervalAst) -> Option<Interval> {
        let (start, end) = match ast {
            IntervalAst::Range(start, end) => {
                let (start_at, end_at) = (self.date(start)?, self.date(end)?);
                if end_at <= start_at {
                    // For a range written backwards, the message that requests the earlier date
                    // first fits better than one about a skipped time.
                    let backwards = Self::written_backwards(start, end);
                    if !backwards
                        && let Some(message) = self.empty_by_skipped_time(start, end, end_at)
                    {
                        self.error(start.pos, message);
                        return None;
                    }
                    let written_equal = !backwards || start.value == end.value;
                    if end_at == start_at && written_equal {
                        let start_text = format_instant(start_at, self.zone);
                        let day_after = dates::same_time_next_day(start_at, self.zone)
                            .map_or_else(String::new, |at| format_instant(at, self.zone));
                        self.error(
                            start.pos,
                            format!(
                                "interval from {start_text} to {start_text} is empty, because its end is excluded: for one day, write the start date alone or end the interval on the next day ({day_after})"
                            ),
                        );
                        return None;
                    }
                    self.error(
                        start.pos,
                        format!(
                            "interval end {} is not after its start {}: write the earlier date first (the end date itself is excluded)",
                            format_instant(end_at, self.zone),
                            format_instant(start_at, self.zone)
                        ),
                    );
                    return None;
                }
                (start_at, end_at)
            }
            IntervalAst::Plus(start, duration) => {
                let start = self.date(start)?;
                (start, self.plus(start, duration)?)
            }
            IntervalAst::Single(date) => {
                let start = self.date(date)?;
                let Some(end) = dates::same_time_next_day(start, self.zone) else {
                    self.error(date.pos, "the day after this date is past the year 9999");
                    return None;
                };
                (start, end)
            }
        };
        Some(Interval { start, end })
    }

    fn project_interval(&self) -> Interval {
        Interval {
            start: self.start,
            end: self.end,
        }
    }

    // -----------------------------------------------------------------------------------------
    // Working hours and leaves

    fn apply_hours(&mut self, hours: &mut WorkingHours, ast: &WorkingHoursAst) {
        let days = day_flags(&ast.days);
        let mut same_day = Vec::new();
        let mut next_day = Vec::new();
        for range in ast.times.iter().flatten() {
            let start = dates::parse_time(&range.start.value);
            let end = dates::parse_time(&range.end.value);
            let (start, end) = match (start, end) {
                (Ok(start), Ok(end)) => (start, end),
                (Err(message), _) => return self.error(range.start.pos, message),
                (_, Err(message)) => return self.error(range.end.pos, message),
            };
            // Unlike dates, working hours need not align to the timing resolution: TaskJuggler
            // only rejects misaligned dates, and ScriptPlan derives its resolution from the
            // times used.
            if start < end {
                same_day.push(TimeRange { start, end });
            } else if start > end && self.scriptplan {
                // ScriptPlan's dialect: the range continues on the next day.
                same_day.push(TimeRange { start, end: 86_400 });
                if end > 0 {
                    next_day.push(TimeRange { start: 0, end });
                }
            } else if start == end {
                self.error(
                    range.start.pos,
                    format!(
                        "working hours {} - {} are empty: the end must be after the start",
                        range.start.value, range.end.value
                    ),
                );
            } else {
                self.error(
                    range.start.pos,
                    format!(
                        "working hours {} - {} end before they start: TaskJuggler has no range across midnight, so write `{} - 24:00` and `00:00 - {}` on the next day",
                        range.start.value, range.end.value, range.start.value, range.end.value
                    ),
                );
            }
        }
        let listed: Vec<usize> = (0..7).filter(|&day| days[day]).collect();
        for &day in &listed {
            hours.days[day] = same_day.clone();
        }
        for &day in &listed {
            hours.days[(day + 1) % 7].extend(next_day.iter().copied());
        }
        for ranges in &mut hours.days {
            normalize(ranges);
        }
    }

    fn vacation(&mut self, ast: &VacationAst) -> Vec<Leave> {
        let mut leaves = Vec::new();
        for interval in &ast.intervals {
            if let Some(interval) = self.interval(interval) {
                let leave = Leave {
                    kind: LeaveKind::Holiday,
                    name: ast.name.clone(),
                    interval,
                    location: self.expansion.location(ast.pos),
                };
                self.check_in_time_frame(&leave, "vacation", ast.pos);
                leaves.push(leave);
            }
        }
        leaves
    }

    fn leaves(&mut self, list: &[LeaveAst]) -> Vec<Leave> {
        let mut leaves = Vec::new();
        for ast in list {
            if let Some(interval) = self.interval(&ast.interval) {
                let leave = Leave {
                    kind: ast.kind,
                    name: ast.name.clone(),
                    interval,
                    location: self.expansion.location(ast.pos),
                };
                self.check_in_time_frame(&leave, "leave", ast.pos);
                leaves.push(leave);
            }
        }
        leaves
    }

    fn check_in_time_frame(&mut self, leave: &Leave, what: &str, pos: Pos) {
        if leave.interval.end <= self.start || leave.interval.start >= self.end {
            let name = leave
                .name
                .as_ref()
                .map(|n| format!(" \"{n}\""))
                .unwrap_or_default();
            let message = format!(
                "{what}{name} from {} to {} lies outside the project's time frame ({} to {}) and has no effect",
                format_instant(leave.interval.start, self.zone),
                format_instant(leave.interval.end, self.zone),
                format_instant(self.start, self.zone),
                format_instant(self.end, self.zone),
            );
            self.warning(pos, message);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Limits

    fn limits(&mut self, list: &[LimitAst]) -> Vec<Limit> {
        let mut limits = Vec::new();
        for ast in list {
            if let Some(limit) = self.limit(ast) {
                limits.push(limit);
            }
        }
        limits
    }

    fn limit(&mut self, ast: &LimitAst) -> Option<Limit> {
        let kind = match ast.kind.as_str() {
            "minutelymax" => Some(LimitKind::Minutely),
            "hourlymax" => Some(LimitKind::Hourly),
            "dailymax" => Some(LimitKind::Daily),
            "weeklymax" => Some(LimitKind::Weekly),
            "monthlymax" => Some(LimitKind::Monthly),
            other => {
                self.warning(
                    ast.pos,
                    format!("`{other}` is not used for rate limiting and is ignored: use minutelymax, hourlymax, dailymax, weeklymax or monthlymax"),
                );
                None
            }
        };
        let value = match &ast.value {
            LimitValue::Duration(duration) => {
                if kind.is_some() {
                    self.warning(
                        duration.pos,
                        format!(
                            "`{} {}{}` limits working time and is ignored for rate limiting: write a count of calls such as `{} 500`",
                            ast.kind, duration.number, duration.unit, ast.kind
                        ),
                    );
                }
                None
            }
            LimitValue::Count(count) => match count.value.parse::<i64>() {
                Ok(value) if value >= 1 => Some(value as u64),
                Ok(value) => {
                    self.error(
                        count.pos,
                        format!("invalid limit count {value}: a limit allows at least 1 call per window; to allow no calls at all in some hours, leave them out of the working hours"),
                    );
                    None
                }
                Err(_) if count.value.contains('.') => {
                    self.error(
                        count.pos,
                        format!(
                            "invalid limit count {}: a count of calls is a whole number such as `{} 500` (a TaskJuggler working-time limit needs a unit, as in `{} 2.5d`)",
                            count.value, ast.kind, ast.kind
                        ),
                    );
                    None
                }
                Err(_) => {
                    self.error(
                        count.pos,
                        format!(
                            "invalid limit count {}: the largest count is {}",
                            count.value,
                            i64::MAX
                        ),
                    );
                    None
                }
            },
        };
        let mut limit = Limit {
            kind: kind.unwrap_or(LimitKind::Daily),
            value: value.unwrap_or(0),
            period: None,
            days: None,
            hours: Vec::new(),
            resources: Vec::new(),
            location: self.expansion.location(ast.pos),
        };
        let mut start = None;
        let mut end = None;
        for attr in &ast.attrs {
            match attr {
                LimitAttr::Period(interval) => {
                    if let Some(period) = self.interval(interval) {
                        if period.start < self.start || period.end > self.end {
                            self.error(
                                interval.pos(),
                                format!(
                                    "limit period {} to {} lies outside the project's time frame ({} to {}): choose a period inside it",
                                    format_instant(period.start, self.zone),
                                    format_instant(period.end, self.zone),
                                    format_instant(self.start, self.zone),
                                    format_instant(self.end, self.zone)
                                ),
                            );
                        }
                        limit.period = Some(period);
                    }
                }
                LimitAttr::Start(date) => start = self.date(date).map(|at| (at, date.pos)),
                LimitAttr::End(date) => end = self.date(date).map(|at| (at, date.pos)),
                LimitAttr::Days(days) => limit.days = Some(day_flags(days)),
                LimitAttr::Hours(ranges) => {
                    for range in ranges {
                        let (Ok(start), Ok(end)) = (
                            dates::parse_time(&range.start.value),
                            dates::parse_time(&range.end.value),
                        ) else {
                            self.error(
                                range.start.pos,
                                format!(
                                    "invalid hours {} - {}: expected times between 0:00 and 24:00",
                                    range.start.value, range.end.value
                                ),
                            );
                            continue;
                        };
                        if start < end {
                            limit.hours.push(TimeRange { start, end });
                        } else {
                            self.error(
                                range.start.pos,
                                format!(
                                    "limit hours {} - {} end before they start: write two ranges, `{} - 24:00, 00:00 - {}`",
                                    range.start.value, range.end.value, range.start.value, range.end.value
                                ),
                            );
                        }
                    }
                    normalize(&mut limit.hours);
                }
                LimitAttr::Resources(ids) => {
                    for id in ids {
                        match self.resource_by_id(&id.value) {
                            None => self.error(
                                id.pos,
                                format!("unknown resource `{}`: declare it with `resource {} \"Name\"` before this limit", id.value, id.value),
                            ),
                            Some(resource) if !resource.children.is_empty() => {
                                let members = resource.children.join(", ");
                                self.error(
                                    id.pos,
                                    format!("resource `{}` is a group: a limit's `resources` takes leaf resources, such as {members}", id.value),
                                );
                            }
                            Some(_) => limit.resources.push(id.value.clone()),
                        }
                    }
                }
            }
        }
        if start.is_some() || end.is_some() {
            let period = limit.period.unwrap_or(self.project_interval());
            let from = start.map_or(period.start, |(at, _)| at);
            let to = end.map_or(period.end, |(at, _)| at);
            let pos = start.or(end).map_or(ast.pos, |(_, pos)| pos);
            if to <= from {
                self.error(pos, "the limit's end is not after its start: write an end date after the start date");
            } else if from < self.start || to > self.end {
                self.error(
                    pos,
                    "the limit's start and end must lie inside the project's time frame",
                );
            }
            limit.period = Some(Interval {
                start: from,
                end: to,
            });
        }
        (kind.is_some() && value.is_some()).then_some(limit)
    }

    // -----------------------------------------------------------------------------------------
    // Statements

    fn statement(&mut self, statement: &Statement, parent: Option<usize>) {
        match statement {
            Statement::Vacation(vacation) => {
                let leaves = self.vacation(vacation);
                self.leaves.extend(leaves);
            }
            Statement::Leaves(list) => {
                let leaves = self.leaves(list);
                self.leaves.extend(leaves);
            }
            Statement::Limits(list) => {
                let limits = self.limits(list);
                for limit in limits.iter().filter(|limit| !limit.resources.is_empty()) {
                    // `resources` names only resources declared before the block, and the block
                    // applies only to resources declared after it.
                    let message = format!(
                        "this global limit names resources {} declared before it, but a global `limits` block applies only to the resources declared after it, so the limit applies to none: write it in the `limits` block of each of these resources",
                        limit.resources.join(", ")
                    );
                    self.warnings
                        .push(Diagnostic::warning(limit.location.clone(), message));
                }
                self.global_limits = limits;
            }
            Statement::Shift(shift) => self.shift(shift, None),
            Statement::Resource(resource) => self.resource(resource, parent),
            Statement::SupplementResource(id, attrs) => self.supplement(id, attrs),
            Statement::TaskLimits(list) => {
                self.limits(list);
            }
            Statement::Prefixed(prefix, statements) => {
                let parent = self.resource_index(&prefix.value);
                if parent.is_none() {
                    let message = format!("unknown resource `{}` in `resourceprefix`: declare it before the include", prefix.value);
                    self.error(prefix.pos, message);
                }
                for statement in statements {
                    self.statement(statement, parent);
                }
            }
            Statement::StrayWorkingHours(pos) => self.error(
                *pos,
                "`workinghours` stands outside a project, shift or resource: put the project's working hours inside the `project ... { }` block",
            ),
        }
    }

    /// Builds the error message for the property `property` (such as ``resource `x` ``), defined
    /// at `existing` and again at `pos`. When both are the same place of a file that is included
    /// more than once, it names the includes, since the id is then right and the second include
    /// is the mistake.
    fn duplicate_message(&self, property: &str, existing: &Location, pos: Pos) -> String {
        let sites = self.expansion.include_sites_of(existing);
        if *existing == self.expansion.location(pos) && sites.len() > 1 {
            let sites: Vec<String> = sites.iter().map(ToString::to_string).collect();
            return format!(
                "{property} is defined twice at {existing} because that file is included {} times, at {}: include it once",
                sites.len(),
                sites.join(" and ")
            );
        }
        format!("{property} is already defined at {existing}: choose another id")
    }

    fn shift(&mut self, ast: &ShiftAst, parent: Option<usize>) {
        if let Some(existing) = self
            .shift_index(&ast.id.value)
            .map(|index| &self.shifts[index])
        {
            let message = self.duplicate_message(
                &format!("shift `{}`", ast.id.value),
                &existing.location,
                ast.pos,
            );
            return self.error(ast.id.pos, message);
        }
        let mut shift = match parent {
            Some(index) => {
                let parent = &self.shifts[index];
                Shift {
                    id: ast.id.value.clone(),
                    name: ast.name.clone(),
                    parent: Some(parent.id.clone()),
                    working_hours: parent.working_hours.clone(),
                    leaves: parent.leaves.clone(),
                    replace: parent.replace,
                    timezone: parent.timezone,
                    location: self.expansion.location(ast.pos),
                }
            }
            None => Shift {
                id: ast.id.value.clone(),
                name: ast.name.clone(),
                parent: None,
                working_hours: self.project_hours.clone(),
                leaves: Vec::new(),
                replace: false,
                timezone: None,
                location: self.expansion.location(ast.pos),
            },
        };
        let mut children = Vec::new();
        for attr in &ast.attrs {
            match attr {
                ShiftAttr::WorkingHours(hours) => self.apply_hours(&mut shift.working_hours, hours),
                ShiftAttr::Vacation(vacation) => {
                    let leaves = self.vacation(vacation);
                    shift.leaves.extend(leaves);
                }
                ShiftAttr::Leaves(list) => {
                    let leaves = self.leaves(list);
                    shift.leaves.extend(leaves);
                }
                ShiftAttr::Replace => shift.replace = true,
                ShiftAttr::Timezone(name) => shift.timezone = self.zone(name).or(shift.timezone),
                // A nested shift inherits the attributes written before it.
                ShiftAttr::Shift(child) => children.push((child, shift.clone())),
            }
        }
        let index = self.shifts.len();
        self.shift_indexes.insert(shift.id.clone(), index);
        self.shifts.push(shift);
        for (child, snapshot) in children {
            let own = std::mem::replace(&mut self.shifts[index], snapshot);
            self.shift(child, Some(index));
            self.shifts[index] = own;
        }
    }

    fn resource(&mut self, ast: &ResourceAst, parent: Option<usize>) {
        let id = match &ast.id {
            Some(id) => id.clone(),
            None => {
                self.anonymous_resources += 1;
                format!("_resource_{}", self.anonymous_resources)
            }
        };
        if let Some(existing) = self.resource_by_id(&id) {
            let message =
                self.duplicate_message(&format!("resource `{id}`"), &existing.location, ast.pos);
            return self.error(ast.pos, message);
        }
        let resource = match parent {
            Some(index) => {
                let parent = &self.resources[index];
                Resource {
                    id: id.clone(),
                    name: ast.name.clone(),
                    parent: Some(parent.id.clone()),
                    children: Vec::new(),
                    working_hours: parent.working_hours.clone(),
                    timezone: parent.timezone,
                    leaves: parent.leaves.clone(),
                    shifts: parent.shifts.clone(),
                    limits: parent.limits.clone(),
                    location: self.expansion.location(ast.pos),
                }
            }
            None => Resource {
                id: id.clone(),
                name: ast.name.clone(),
                parent: None,
                children: Vec::new(),
                working_hours: self.project_hours.clone(),
                timezone: None,
                leaves: Vec::new(),
                shifts: Vec::new(),
                limits: self.global_limits.clone(),
                location: self.expansion.location(ast.pos),
            },
        };
        if let Some(index) = parent {
            self.resources[index].children.push(id);
        }
        let index = self.resources.len();
        self.resource_indexes.insert(resource.id.clone(), index);
        self.resources.push(resource);
        self.resource_attributes(index, &ast.attrs);
    }

    fn supplement(&mut self, id: &Spanned<String>, attrs: &[ResourceAttr]) {
        let short = id.value.rsplit('.').next().unwrap_or(&id.value);
        // The resource declared first, when both the full and the short id name one.
        let index = match (self.resource_index(&id.value), self.resource_index(short)) {
            (Some(full), Some(short)) => Some(full.min(short)),
            (full, short) => full.or(short),
        };
        match index {
            Some(index) => self.resource_attributes(index, attrs),
            None => self.error(
                id.pos,
                format!("unknown resource `{}` in `supplement resource`: declare it with `resource {} \"Name\"` first", id.value, id.value),
            ),
        }
    }

    fn resource_attributes(&mut self, index: usize, attrs: &[ResourceAttr]) {
        for attr in attrs {
            match attr {
                ResourceAttr::WorkingHours(hours) => {
                    let mut working_hours =
                        std::mem::take(&mut self.resources[index].working_hours);
                    self.apply_hours(&mut working_hours, hours);
                    self.resources[index].working_hours = working_hours;
                }
                ResourceAttr::WorkingHoursShift(shift) => {
                    // The shift replaces the parent's shifts and the one an earlier
                    // `workinghours SHIFT_ID` of this resource gave, as a working hours statement
                    // replaces the hours before it.
                    let mut replaced = match &self.resources[index].parent {
                        Some(parent) => self.resource_shifts(parent),
                        None => Vec::new(),
                    };
                    let id = self.resources[index].id.clone();
                    replaced.extend(self.working_hours_shifts.remove(&id));
                    self.resources[index]
                        .shifts
                        .retain(|a| !replaced.contains(a));

                    let count = self.resources[index].shifts.len();
                    let interval = self.project_interval();
                    self.assign_shift(index, shift, interval);
                    if self.resources[index].shifts.len() > count {
                        let assignment = self.resources[index].shifts[count].clone();
                        self.working_hours_shifts.insert(id, assignment);
                    }
                }
                ResourceAttr::Vacation(vacation) => {
                    let leaves = self.vacation(vacation);
                    self.resources[index].leaves.extend(leaves);
                }
                ResourceAttr::Leaves(list) => {
                    let leaves = self.leaves(list);
                    self.resources[index].leaves.extend(leaves);
                }
                ResourceAttr::Shifts(references) => {
                    for reference in references {
                        let interval = match &reference.interval {
                            Some(interval) => match self.interval(interval) {
                                Some(interval) => interval,
                                None => continue,
                            },
                            None => self.project_interval(),
                        };
                        self.assign_shift(index, &reference.shift, interval);
                    }
                }
                ResourceAttr::Limits(pos, list) => self.resource_limits(index, *pos, list),
                ResourceAttr::Timezone(name) => {
                    if let Some(zone) = self.zone(name) {
                        self.resources[index].timezone = Some(zone);
                    }
                }
                // TaskJuggler's `purge` empties a list attribute, inherited values included.
                // Of the lists a resource has, only `leaves` affects availability. Global
                // vacations and leaves still apply.
                ResourceAttr::Purge(name) if name.value == "leaves" => {
                    self.resources[index].leaves.clear();
                }
                ResourceAttr::Purge(_) => {}
                ResourceAttr::Resource(child) => self.resource(child, Some(index)),
                ResourceAttr::Supplement(id, attrs) => self.supplement(id, attrs),
            }
        }
    }

    /// Sets a resource's limits from a `limits` block. As in TaskJuggler 3, a block replaces
    /// every limit the resource had, inherited or from an earlier block. A warning names an
    /// earlier block of the same resource, because its limits stop applying.
    fn resource_limits(&mut self, index: usize, pos: Pos, list: &[LimitAst]) {
        let limits = self.limits(list);
        let location = self.expansion.location(pos);
        let id = self.resources[index].id.clone();
        for limit in &limits {
            if limit.resources.is_empty() || limit.resources.contains(&id) {
                continue;
            }
            // Resources declared later in this one inherit the limit, but they cannot be named
            // in it, so `resources` excludes every resource that has the limit.
            let message = format!(
                "this limit of resource `{id}` names only other resources ({}) in `resources`, so it applies to none: write it in the `limits` block of each of these resources",
                limit.resources.join(", ")
            );
            self.warnings
                .push(Diagnostic::warning(limit.location.clone(), message));
        }
        if let Some(earlier) = self.own_limits.insert(id.clone(), location) {
            self.warning(
                pos,
                format!(
                    "this `limits` block replaces the `limits` block at {earlier} of resource `{id}`, as in TaskJuggler: only the last block of a resource applies, so write all its limits in one block"
                ),
            );
        }
        self.resources[index].limits = limits;
    }

    fn assign_shift(&mut self, index: usize, shift: &Spanned<String>, interval: Interval) {
        if self.shift_index(&shift.value).is_none() {
            return self.error(
                shift.pos,
                format!("unknown shift `{}`: declare it with `shift {} \"Name\" {{ ... }}` before the resource that uses it", shift.value, shift.value),
            );
        }
        let overlapping = self.resources[index]
            .shifts
            .iter()
            .find(|a| a.interval.start < interval.end && interval.start < a.interval.end)
            .cloned();
        if let Some(other) = overlapping {
            return self.error(
                shift.pos,
                format!(
                    "the assignment of shift `{}` from {} to {} overlaps the assignment of shift `{}` at {}: shift assignments of a resource must not overlap",
                    shift.value,
                    format_instant(interval.start, self.zone),
                    format_instant(interval.end, self.zone),
                    other.shift,
                    other.location
                ),
            );
        }
        if interval.end <= self.start || interval.start >= self.end {
            let message = format!(
                "the assignment of shift `{}` from {} to {} lies outside the project's time frame ({} to {}) and has no effect",
                shift.value,
                format_instant(interval.start, self.zone),
                format_instant(interval.end, self.zone),
                format_instant(self.start, self.zone),
                format_instant(self.end, self.zone),
            );
            self.warning(shift.pos, message);
        }
        let assignment = ShiftAssignment {
            shift: shift.value.clone(),
            interval,
            location: self.expansion.location(shift.pos),
        };
        self.resources[index].shifts.push(assignment);
    }

    fn resource_shifts(&self, id: &str) -> Vec<ShiftAssignment> {
        self.resource_by_id(id)
            .map(|r| r.shifts.clone())
            .unwrap_or_default()
    }

    fn resource_by_id(&self, id: &str) -> Option<&Resource> {
        self.resource_index(id).map(|index| &self.resources[index])
    }

    fn resource_index(&self, id: &str) -> Option<usize> {
        self.resource_indexes.get(id).copied()
    }

    fn shift_index(&self, id: &str) -> Option<usize> {
        self.shift_indexes.get(id).copied()
    }
}
