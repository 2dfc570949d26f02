//! The schedule language: TaskJuggler's project language (`.tjp`), as TaskJuggler 3 and
//! ScriptPlan read it, with count limits for rate limiting.

mod diagnostic;
mod model;

pub use diagnostic::{Diagnostic, Location, ScheduleError, Severity};
pub use model::{
    Interval, Leave, LeaveKind, Limit, LimitKind, Project, Resource, Schedule, Shift,
    ShiftAssignment, TimeRange, WorkingHours,
};

mod ast;
mod build;
mod dates;
mod grammar;
mod lexer;
mod parse;
mod source;

pub use parse::ParseOptions;
