//! The schedule language: TaskJuggler's project language (`.tjp`), as TaskJuggler 3 and
//! ScriptPlan read it, with count limits for rate limiting.

mod diagnostic;
mod model;

pub use diagnostic::{Diagnostic, Location, ScheduleError, Severity};
pub use model::{
    Interval, Leave, LeaveKind, Limit, LimitKind, Project, Resource, Schedule, Shift,
    ShiftAssignment, TimeRange, WorkingHours,
};

mod parse;

pub use parse::ParseOptions;
