//! The typed model of a schedule: what a `.tjp` file states about when resources work and how much
//! they may be used. Inheritance is already resolved: a resource carries the working hours, leaves,
//! shift assignments and limits that apply to it, whether written on it, on a parent resource or
//! globally.

use chrono::{DateTime, Utc, Weekday};
use chrono_tz::Tz;

use super::diagnostic::{Diagnostic, Location};

/// A parsed and validated schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The project header and its attributes.
    pub project: Project,
    /// Every shift, nested ones included, in declaration order.
    pub shifts: Vec<Shift>,
    /// Every resource, nested ones included, parents before their children.
    pub resources: Vec<Resource>,
    /// Vacations and leaves declared at the top level; they apply to every resource.
    pub leaves: Vec<Leave>,
    /// Warnings found while parsing and validating.
    pub warnings: Vec<Diagnostic>,
}

impl Schedule {
    /// Returns the resource with this id.
    pub fn resource(&self, id: &str) -> Option<&Resource> {
        self.resources.iter().find(|resource| resource.id == id)
    }

    /// Returns the shift with this id.
    pub fn shift(&self, id: &str) -> Option<&Shift> {
        self.shifts.iter().find(|shift| shift.id == id)
    }
}

/// The project header: the time frame and the calendar settings every resource starts from.
#[derive(Debug, Clone)]
pub struct Project {
    /// The project id, when one is written.
    pub id: Option<String>,
    /// The project name.
    pub name: String,
    /// The version string, when one is written.
    pub version: Option<String>,
    /// The start of the time frame; there is no working time before it.
    pub start: DateTime<Utc>,
    /// The end of the time frame, exclusive; there is no working time from it on.
    pub end: DateTime<Utc>,
    /// The project time zone (`timezone`), UTC when none is set.
    pub timezone: Tz,
    /// The slot size in seconds (`timingresolution`): 300, 600, 900, 1200, 1800 or 3600.
    pub timing_resolution: u32,
    /// The `now` attribute, when set.
    pub now: Option<DateTime<Utc>>,
    /// The first day of a week (`weekstartsmonday`, the default, or `weekstartssunday`).
    pub week_start: Weekday,
    /// `dailyworkinghours`, 8 by default.
    pub daily_working_hours: f64,
    /// `yearlyworkingdays`, 260.714 by default.
    pub yearly_working_days: f64,
    /// The project's working hours, the default for resources and shifts.
    pub working_hours: WorkingHours,
    /// The location of the `project` keyword.
    pub location: Location,
}

/// A span of local wall-clock time within one day, in seconds after midnight: `start < end <= 86_400`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimeRange {
    /// Seconds after local midnight.
    pub start: u32,
    /// Seconds after local midnight, exclusive; `86_400` stands for `24:00`.
    pub end: u32,
}

/// Working hours for each day of the week, as local wall-clock time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkingHours {
    /// The ranges of each weekday, indexed by `Weekday::num_days_from_monday`; sorted, not
    /// overlapping, empty for a day off.
    pub days: [Vec<TimeRange>; 7],
}

impl WorkingHours {
    /// Returns the ranges of `day`.
    pub fn on(&self, day: Weekday) -> &[TimeRange] {
        &self.days[day.num_days_from_monday() as usize]
    }
}

impl Default for WorkingHours {
    /// TaskJuggler's default: Monday to Friday 09:00 - 17:00, Saturday and Sunday off.
    fn default() -> Self {
        let office = vec![TimeRange {
            start: 9 * 3600,
            end: 17 * 3600,
        }];
        WorkingHours {
            days: [
                office.clone(),
                office.clone(),
                office.clone(),
                office.clone(),
                office,
                Vec::new(),
                Vec::new(),
            ],
        }
    }
}

/// A half-open interval of time `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Interval {
    /// The first instant inside the interval.
    pub start: DateTime<Utc>,
    /// The first instant after the interval.
    pub end: DateTime<Utc>,
}

impl Interval {
    /// Returns whether `at` lies inside the interval.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.start <= at && at < self.end
    }
}

/// The type of a leave, in TaskJuggler's priority order. `vacation` is a `Holiday` leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LeaveKind {
    /// `project`
    Project,
    /// `annual`
    Annual,
    /// `special`
    Special,
    /// `sick`
    Sick,
    /// `unpaid`
    Unpaid,
    /// `holiday`, and every `vacation`
    Holiday,
    /// `unemployed`
    Unemployed,
}

/// A time with no working time: a vacation or a leave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leave {
    /// The leave type.
    pub kind: LeaveKind,
    /// The name, when one is written (`vacation "Christmas" 2025-12-25`).
    pub name: Option<String>,
    /// The time off.
    pub interval: Interval,
    /// The location of the statement.
    pub location: Location,
}

/// A shift: working hours and leaves that replace a resource's own during its assignments.
#[derive(Debug, Clone)]
pub struct Shift {
    /// The shift id.
    pub id: String,
    /// The name, when one is written (ScriptPlan allows none).
    pub name: Option<String>,
    /// The id of the enclosing shift, for a nested shift.
    pub parent: Option<String>,
    /// The working hours, with days the shift does not set inherited from its parent or the project.
    pub working_hours: WorkingHours,
    /// The shift's own vacations and leaves, with those of its parents.
    pub leaves: Vec<Leave>,
    /// `replace`: inside an assignment, global and resource leaves do not apply.
    pub replace: bool,
    /// The shift's `timezone`, when set.
    pub timezone: Option<Tz>,
    /// The location of the `shift` keyword.
    pub location: Location,
}

/// A shift in force for a resource during an interval (`shifts ID [INTERVAL]`, or ScriptPlan's
/// `workinghours ID`, which assigns it for the whole project).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShiftAssignment {
    /// The id of the shift.
    pub shift: String,
    /// When it is in force; the project's time frame when none is written.
    pub interval: Interval,
    /// The location of the assignment.
    pub location: Location,
}

/// A resource: in this crate, a tool or service whose use is limited.
#[derive(Debug, Clone)]
pub struct Resource {
    /// The resource id.
    pub id: String,
    /// The resource name.
    pub name: String,
    /// The id of the enclosing resource, for a nested resource.
    pub parent: Option<String>,
    /// The ids of the resources declared inside this one.
    pub children: Vec<String>,
    /// The working hours outside shift assignments, inherited days resolved.
    pub working_hours: WorkingHours,
    /// The resource's own time zone (a ScriptPlan attribute); the project zone applies when unset.
    pub timezone: Option<Tz>,
    /// Vacations and leaves of the resource and its parents; global leaves are in
    /// [`Schedule::leaves`].
    pub leaves: Vec<Leave>,
    /// Shift assignments of the resource and its parents, not overlapping.
    pub shifts: Vec<ShiftAssignment>,
    /// The limits in force for the resource: its own, or else those inherited from its parent or
    /// the global `limits`.
    pub limits: Vec<Limit>,
    /// The location of the `resource` keyword.
    pub location: Location,
}

/// A limit on the number of calls (or cost units) in one window kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Limit {
    /// The kind of window the limit counts in.
    pub kind: LimitKind,
    /// The maximum number of calls or cost units in one window.
    pub value: u64,
    /// `period INTERVAL` (or `start` / `end`): the limit applies only inside it.
    pub period: Option<Interval>,
    /// `days mon, wed - fri`: the limit applies only on these local weekdays; `None` for every day.
    pub days: Option<[bool; 7]>,
    /// `hours 12:00 - 14:00`: the limit applies only inside these local times; empty for all day.
    pub hours: Vec<TimeRange>,
    /// `resources ID, …`: the limit applies only to these resources; empty for every resource.
    pub resources: Vec<String>,
    /// The location of the limit.
    pub location: Location,
}

impl Limit {
    /// Returns whether the limit applies on `day` (indexed like [`WorkingHours::days`]).
    pub fn applies_on(&self, day: Weekday) -> bool {
        self.days
            .is_none_or(|days| days[day.num_days_from_monday() as usize])
    }
}

/// The window kind of a limit: `minutelymax`, `hourlymax`, `dailymax`, `weeklymax`, `monthlymax`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    /// `minutelymax`
    Minutely,
    /// `hourlymax`
    Hourly,
    /// `dailymax`
    Daily,
    /// `weeklymax`
    Weekly,
    /// `monthlymax`
    Monthly,
}

impl LimitKind {
    /// Returns the window kind a limit of this kind counts in.
    pub fn window(self) -> crate::window::WindowKind {
        use crate::window::WindowKind;
        match self {
            LimitKind::Minutely => WindowKind::Minute,
            LimitKind::Hourly => WindowKind::Hour,
            LimitKind::Daily => WindowKind::Day,
            LimitKind::Weekly => WindowKind::Week,
            LimitKind::Monthly => WindowKind::Month,
        }
    }
}
