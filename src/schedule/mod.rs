//! The schedule language: TaskJuggler's project language (`.tjp`), as TaskJuggler 3 and
//! ScriptPlan read it, with count limits for rate limiting.
//!
//! [`Schedule::from_file`] and [`Schedule::parse`] read a schedule into the typed model of this
//! module: the project's time frame and calendar settings, shifts, resources with their working
//! hours, leaves, shift assignments and limits, inheritance already resolved.
//!
//! ```
//! use highway_ratelimit::schedule::{LimitKind, ParseOptions, Schedule};
//!
//! let text = r#"
//! project api "API" 2025-01-01 +1y { timezone "Europe/Berlin" }
//! resource mailer "Mailer" {
//!   workinghours mon - fri 08:00 - 18:00
//!   limits { dailymax 500  hourlymax 100 { days mon } }
//! }
//! vacation "Christmas" 2025-12-25 - 2025-12-27
//! "#;
//! let schedule = Schedule::parse(text, &ParseOptions::named("api.tjp"))?;
//! let mailer = schedule.resource("mailer").unwrap();
//! assert_eq!(mailer.limits[0].kind, LimitKind::Daily);
//! assert_eq!(mailer.limits[0].value, 500);
//! assert_eq!(schedule.leaves.len(), 1);
//! # Ok::<(), highway_ratelimit::schedule::ScheduleError>(())
//! ```
//!
//! Errors are reported as `FILE:LINE:COL: message`, at the offending token of the original text.
//! Inside an included file, the location names that file. Every error found is reported, except
//! that a syntax error stops the parse.
//!
//! # What is read
//!
//! - Comments `#`, `//` and `/* */`; `macro NAME [ body ]` with `${NAME "arg" ...}`, `${?NAME}`
//!   and the built-ins `${projectstart}`, `${projectend}`, `${now}` and `${today}`; `$(VAR)`
//!   environment variables; `include "file.tji" [{ resourceprefix ID }]`, relative to the
//!   including file, inside the project's braces or between properties (before the project
//!   header, an included file may only define macros).
//! - Strings in quotes and TaskJuggler's cut strings: the lines between a line ending in `-8<-` and
//!   a line starting with `->8-`, without the first line's indentation.
//! - The project header `project [ID] "Name" ["version"] (START - END | START +DURATION) [{ ... }]`
//!   with `timezone`, `timingresolution` (`15 min`, `60min`, `1h`), `now`, `weekstartsmonday`,
//!   `weekstartssunday`, `dailyworkinghours`, `yearlyworkingdays` and `workinghours`.
//! - `shift`, `resource`, `supplement resource`, `vacation`, `leaves` and `limits`, at the top
//!   level and nested as TaskJuggler allows.
//! - Constructs that do not affect availability (tasks, reports, accounts, scenarios, journal
//!   entries, navigators, flags, `efficiency`, `rate`, `booking`, scenario-prefixed attributes
//!   such as `plan:vacation`, attributes declared with `extend resource`, ...) are skipped with
//!   their bodies. The limits of a task are checked and dropped.
//!
//! # Dates and durations
//!
//! Dates are `YYYY-MM-DD[-HH:MM[:SS]][-±HHMM]`, with a year from 1970 to 9999. As in TaskJuggler,
//! a date without an offset is local time in the zone in force where it is written: the project
//! header's dates are UTC, and every date after the project's `timezone` is local to that zone.
//! `D1 - D2` ends before `D2`. A lone date in `vacation` or `leaves` lasts until the same local
//! time on the next day. `D +DURATION` takes `min`, `h`, `d` (86 400 s), `w`, `m` (30.4167 days,
//! truncated to the timing resolution) and `y` (365 days). Wherever a date is allowed,
//! `%{ DATE + DURATION }` and `%{ DATE - DURATION }` compute one, as in `%{${now} - 2w}`. Every
//! date and duration must be a multiple of the timing resolution. In `leaves`, ScriptPlan's
//! `D1 ~ D2` means `D1 - D2`.
//!
//! A syntax error at the end of the file names the innermost `{` that is still open.
//!
//! # Two dialects
//!
//! Files in ScriptPlan's dialect are read too: a shift without a name, a resource's
//! `workinghours SHIFT_ID` (the shift is assigned for the whole project), a resource's
//! `timezone`, `Etc/` zones and a project header with or without braces. Without
//! `timingresolution`, such a file gets the largest resolution that divides the minutes of all its
//! dates and times, as ScriptPlan derives it; other files get TaskJuggler's 60 minutes.
//!
//! Working hours that cross midnight (`22:00 - 06:00`) are accepted only in a file that uses
//! one of ScriptPlan's own constructs (a shift without a name, a resource `workinghours
//! SHIFT_ID` or a resource `timezone`). There they are split at midnight: `22:00 - 24:00` on the
//! listed day and `00:00 - 06:00` on the next. TaskJuggler rejects such ranges, and so does this
//! parser in any other file, with a message that says how to write them.
//!
//! # Limits
//!
//! A limit counts calls: `dailymax 500` allows 500 calls a day. The kinds are `minutelymax`,
//! `hourlymax`, `dailymax`, `weeklymax` and `monthlymax`, narrowed by `{ period INTERVAL }`,
//! `{ start DATE }`, `{ end DATE }`, `{ days mon, wed - fri }`, `{ hours 12:00 - 14:00 }` and
//! `{ resources ID, ... }` (leaf resources only). A count below 1 is an error. TaskJuggler's
//! working-time limits (`dailymax 4h`) and the kinds `dailymin`, `weeklymin`, `monthlymin`,
//! `maximum` and `minimum` are read and ignored, with a warning.
//!
//! A resource's first own `limits` block replaces the limits it inherits; top-level resources
//! inherit the global `limits` written before them, nested resources their parent's.
//!
//! # Warnings
//!
//! [`Schedule::warnings`] lists ignored limits, vacations and leaves that lie outside the
//! project's time frame, and macros that are defined twice.

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
pub(crate) use source::{ReadError, read_file};
