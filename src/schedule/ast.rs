//! The syntax tree the grammar produces: statements as written, with dates and durations still
//! as text, because their meaning depends on the time zone and resolution in force where they
//! stand.

use chrono::Weekday;

use super::LeaveKind;
use super::source::Pos;

/// A value and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Spanned<T> {
    pub value: T,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum DateAst {
    Literal(String),
    Builtin(String),
    /// `%{ DATE + DURATION }` or `%{ DATE - DURATION }`.
    Calculated {
        base: Box<Spanned<DateAst>>,
        minus: bool,
        duration: DurationAst,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DurationAst {
    /// The number as written, for messages.
    pub number: String,
    pub value: f64,
    pub unit: String,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum IntervalAst {
    /// `D1 - D2`
    Range(Spanned<DateAst>, Spanned<DateAst>),
    /// `D +DURATION`
    Plus(Spanned<DateAst>, DurationAst),
    /// `D` alone
    Single(Spanned<DateAst>),
}

impl IntervalAst {
    pub fn pos(&self) -> Pos {
        match self {
            IntervalAst::Range(start, _)
            | IntervalAst::Plus(start, _)
            | IntervalAst::Single(start) => start.pos,
        }
    }
}

/// `mon` or `mon - fri`.
pub(crate) type DaySpec = (Weekday, Option<Weekday>);

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TimeRangeAst {
    pub start: Spanned<String>,
    pub end: Spanned<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WorkingHoursAst {
    pub days: Vec<DaySpec>,
    /// `None` for `off`.
    pub times: Option<Vec<TimeRangeAst>>,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct VacationAst {
    pub name: Option<String>,
    pub intervals: Vec<IntervalAst>,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LeaveAst {
    pub kind: LeaveKind,
    pub name: Option<String>,
    pub interval: IntervalAst,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum LimitValue {
    Count(Spanned<String>),
    Duration(DurationAst),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum LimitAttr {
    Period(IntervalAst),
    Start(Spanned<DateAst>),
    End(Spanned<DateAst>),
    Days(Vec<DaySpec>),
    Hours(Vec<TimeRangeAst>),
    Resources(Vec<Spanned<String>>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LimitAst {
    pub kind: String,
    pub value: LimitValue,
    pub attrs: Vec<LimitAttr>,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ProjectAttr {
    Timezone(Spanned<String>),
    TimingResolution(DurationAst),
    Now(Spanned<DateAst>),
    WeekStart(Weekday),
    DailyWorkingHours(Spanned<f64>),
    YearlyWorkingDays(Spanned<f64>),
    WorkingHours(WorkingHoursAst),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ProjectEnd {
    Date(Spanned<DateAst>),
    Duration(DurationAst),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ProjectAst {
    pub id: Option<String>,
    pub name: String,
    pub version: Option<String>,
    pub start: Spanned<DateAst>,
    pub end: ProjectEnd,
    pub attrs: Vec<ProjectAttr>,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ShiftAttr {
    WorkingHours(WorkingHoursAst),
    Vacation(VacationAst),
    Leaves(Vec<LeaveAst>),
    Replace,
    Timezone(Spanned<String>),
    Shift(ShiftAst),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ShiftAst {
    pub id: Spanned<String>,
    pub name: Option<String>,
    pub attrs: Vec<ShiftAttr>,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ShiftRefAst {
    pub shift: Spanned<String>,
    pub interval: Option<IntervalAst>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ResourceAttr {
    WorkingHours(WorkingHoursAst),
    /// ScriptPlan's `workinghours SHIFT_ID`.
    WorkingHoursShift(Spanned<String>),
    Vacation(VacationAst),
    Leaves(Vec<LeaveAst>),
    Shifts(Vec<ShiftRefAst>),
    /// A `limits` block, with the position of its keyword.
    Limits(Pos, Vec<LimitAst>),
    Timezone(Spanned<String>),
    /// `purge ATTRIBUTE`, which empties an inherited list attribute such as `leaves`.
    Purge(Spanned<String>),
    Resource(ResourceAst),
    Supplement(Spanned<String>, Vec<ResourceAttr>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ResourceAst {
    pub id: Option<String>,
    pub name: String,
    pub attrs: Vec<ResourceAttr>,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Statement {
    Vacation(VacationAst),
    Leaves(Vec<LeaveAst>),
    Limits(Vec<LimitAst>),
    Shift(ShiftAst),
    Resource(ResourceAst),
    SupplementResource(Spanned<String>, Vec<ResourceAttr>),
    /// Limits inside a task: checked, not used.
    TaskLimits(Vec<LimitAst>),
    /// The statements of a file included with a `resourceprefix`.
    Prefixed(Spanned<String>, Vec<Statement>),
    /// A `workinghours` outside the project block, which TaskJuggler rejects.
    StrayWorkingHours(Pos),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FileAst {
    pub project: ProjectAst,
    pub statements: Vec<Statement>,
}
