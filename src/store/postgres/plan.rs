//! The windows of one call, as the parameters of the statements that consume them.

use std::cell::Cell;

use chrono::{DateTime, Datelike, Utc, Weekday};
use chrono_tz::Tz;

use super::whole_microseconds;
use crate::clock::Clock;
use crate::store::{ConsumeRequest, StoreError};
use crate::window::{Window, WindowKind};

/// The maximum count of a usage row (`request_count` is a BIGINT). A larger limit counts as
/// this one, and a larger cost can never be charged.
pub(super) const MAX_COUNT: u64 = i64::MAX as u64;

/// The limited windows of a request, as the consume function's parameters, shortest first.
///
/// The windows are held in arrays with an entry per window kind, so planning a call allocates
/// nothing.
pub(super) struct WindowPlan {
    len: usize,
    kinds: [WindowKind; WindowKind::ALL.len()],
    names: [&'static str; WindowKind::ALL.len()],
    limits: [i64; WindowKind::ALL.len()],
    at: Option<DateTime<Utc>>,
    /// The windows' bounds at the request's instant, or the guess of [`database_guess`] at this
    /// process's clock when the database clock decides. The database uses them only when every
    /// window contains its own clock's instant, and computes the windows itself otherwise, which
    /// costs more server time.
    starts: [DateTime<Utc>; WindowKind::ALL.len()],
    ends: [DateTime<Utc>; WindowKind::ALL.len()],
}

impl WindowPlan {
    /// Collects the limited windows and checks the cost against each limit. Without an instant in
    /// the request, the bounds are those at `clock`'s instant.
    pub(super) fn new(request: &ConsumeRequest<'_>, clock: &dyn Clock) -> Result<Self, StoreError> {
        if request.cost == 0 {
            return Err(StoreError::ZeroCost);
        }

        let request_at = request.at.map(whole_microseconds);
        let mut plan = WindowPlan::empty(request_at);
        let at = request_at.unwrap_or_else(|| clock.now());
        for kind in WindowKind::ALL {
            let Some(limit) = request.capacity.get(kind) else {
                continue;
            };
            // A count is a BIGINT, so a window counts at most `i64::MAX` units whatever its limit.
            let limit = limit.min(MAX_COUNT);
            // A limit of 0 switches the tool off: the database rejects every call in the window.
            if limit > 0 && request.cost > limit {
                return Err(StoreError::CostExceedsLimit {
                    window: kind,
                    limit,
                    cost: request.cost,
                });
            }

            let window = kind.window_at(at, request.timezone, request.week_start);
            let (start, end) = if request.at.is_some() {
                (window.start, window.end)
            } else {
                database_guess(window, request)
            };
            plan.push(kind, i64::try_from(limit).unwrap_or(i64::MAX), start, end);
        }
        Ok(plan)
    }

    /// Returns the request's instant; `None` lets the database clock decide.
    pub(super) fn at(&self) -> Option<DateTime<Utc>> {
        self.at
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(super) fn kinds(&self) -> &[WindowKind] {
        &self.kinds[..self.len]
    }

    pub(super) fn kind_names(&self) -> &[&'static str] {
        &self.names[..self.len]
    }

    pub(super) fn limits(&self) -> &[i64] {
        &self.limits[..self.len]
    }

    pub(super) fn starts(&self) -> &[DateTime<Utc>] {
        &self.starts[..self.len]
    }

    pub(super) fn ends(&self) -> &[DateTime<Utc>] {
        &self.ends[..self.len]
    }

    /// Builds a plan from its windows (kind, limit, start, end), shortest first, for tests of the
    /// statements' parameters.
    #[cfg(test)]
    pub(super) fn of_windows(
        at: Option<DateTime<Utc>>,
        windows: &[(WindowKind, i64, DateTime<Utc>, DateTime<Utc>)],
    ) -> Self {
        let mut plan = WindowPlan::empty(at);
        for &(kind, limit, start, end) in windows {
            plan.push(kind, limit, start, end);
        }
        plan
    }

    fn empty(at: Option<DateTime<Utc>>) -> Self {
        WindowPlan {
            len: 0,
            kinds: WindowKind::ALL,
            names: WindowKind::ALL.map(WindowKind::as_str),
            limits: [0; WindowKind::ALL.len()],
            at,
            starts: [DateTime::UNIX_EPOCH; WindowKind::ALL.len()],
            ends: [DateTime::UNIX_EPOCH; WindowKind::ALL.len()],
        }
    }

    fn push(&mut self, kind: WindowKind, limit: i64, start: DateTime<Utc>, end: DateTime<Utc>) {
        let index = self.len;
        self.kinds[index] = kind;
        self.names[index] = kind.as_str();
        self.limits[index] = limit;
        self.starts[index] = start;
        self.ends[index] = end;
        self.len += 1;
    }
}

/// Returns the bounds to send for `window`, guessed at this process's clock for a call that the
/// database clock decides.
///
/// The database takes a guessed window when it contains its own `now()`. That makes it the window
/// at `now()` only if every instant inside it belongs to it. Where the clocks move by half an hour
/// (Lord Howe, Caracas in 2016), the hour windows on either side of the change are aligned
/// differently. The window of an instant before the change then contains instants whose window
/// starts at the change, or the other way round. A window whose first or last instant belongs to
/// another window is sent empty, like a window outside the dates PostgreSQL can store, so that the
/// database computes the window at `now()` itself.
fn database_guess(window: Window, request: &ConsumeRequest<'_>) -> (DateTime<Utc>, DateTime<Utc>) {
    let key = (window, request.timezone, request.week_start);
    let index = window.kind as usize;
    let whole = match LAST_GUESSES.with(|guesses| guesses.get()[index]) {
        Some((last, whole)) if last == key => whole,
        _ => {
            let whole = guess_is_whole(window, request.timezone, request.week_start);
            LAST_GUESSES.with(|guesses| {
                let mut last = guesses.get();
                last[index] = Some((key, whole));
                guesses.set(last);
            });
            whole
        }
    };
    if whole {
        (window.start, window.end)
    } else {
        (DateTime::UNIX_EPOCH, DateTime::UNIX_EPOCH)
    }
}

/// A window, its time zone and week start, and whether [`guess_is_whole`] holds for it.
type CheckedGuess = ((Window, Tz, Weekday), bool);

thread_local! {
    /// The last window of each kind that [`database_guess`] checked on this thread. Consecutive
    /// calls mostly fall in the same windows, and the check costs two window computations.
    static LAST_GUESSES: Cell<[Option<CheckedGuess>; WindowKind::ALL.len()]> =
        const { Cell::new([None; WindowKind::ALL.len()]) };
}

/// Returns whether `window` can be sent as a guess: PostgreSQL can store its bounds, and its first
/// and last instants belong to it.
fn guess_is_whole(window: Window, zone: Tz, week_start: Weekday) -> bool {
    let storable = |instant: DateTime<Utc>| (-4700..=294_000).contains(&instant.year());
    let belongs =
        |instant: DateTime<Utc>| window.kind.window_at(instant, zone, week_start) == window;
    let last = window
        .end
        .checked_sub_signed(chrono::TimeDelta::nanoseconds(1))
        .unwrap_or(window.start);
    storable(window.start) && storable(window.end) && belongs(window.start) && belongs(last)
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, Offset, TimeZone};
    use chrono_tz::{TZ_VARIANTS, Tz};

    use super::*;
    use crate::report::Capacity;
    use crate::store::ScopeKey;

    /// Returns the instants from `from` to `to` at which `zone`'s offset changes, found by
    /// stepping six hours at a time and halving each step that spans a change.
    fn offset_changes(zone: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let offset = |at: DateTime<Utc>| {
            zone.offset_from_utc_datetime(&at.naive_utc())
                .fix()
                .local_minus_utc()
        };
        let mut changes = Vec::new();
        let mut at = from;
        while at < to {
            let next = at + Duration::hours(6);
            if offset(at) != offset(next) {
                let (mut before, mut after) = (at, next);
                while after - before > Duration::seconds(1) {
                    let middle = before + (after - before) / 2;
                    if offset(middle) == offset(before) {
                        before = middle;
                    } else {
                        after = middle;
                    }
                }
                changes.push(after);
            }
            at = next;
        }
        changes
    }

    /// A guess the database takes (not empty, containing its `now()`) is the window at `now()`.
    /// Checked for every window kind, every offset change of every zone from 1970 to 2040, and
    /// process clocks a second to an hour off on either side.
    #[test]
    fn taken_guesses_are_windows_at_now() {
        let key = ScopeKey {
            tenant: "acme".into(),
            tool: "tools.email.send".into(),
            scope: "global".into(),
        };
        let capacity = Capacity::UNLIMITED;
        let from = Utc.with_ymd_and_hms(1970, 1, 1, 0, 0, 0).unwrap();
        let to = Utc.with_ymd_and_hms(2040, 12, 31, 0, 0, 0).unwrap();
        let offsets = [1, 60, 15 * 60, 30 * 60, 59 * 60].map(Duration::seconds);

        let mut wrong = Vec::new();
        for zone in TZ_VARIANTS {
            let request = ConsumeRequest {
                key: &key,
                cost: 1,
                capacity: &capacity,
                timezone: zone,
                week_start: Weekday::Mon,
                at: None,
            };
            for change in offset_changes(zone, from, to) {
                for kind in WindowKind::ALL {
                    for offset in offsets {
                        for (guess_at, now) in [
                            (change - offset, change),
                            (change, change - offset),
                            (change - offset, change + offset),
                            (change + offset, change - offset),
                        ] {
                            let guess = kind.window_at(guess_at, zone, Weekday::Mon);
                            let (start, end) = database_guess(guess, &request);
                            let actual = kind.window_at(now, zone, Weekday::Mon);
                            // Where the local date runs backwards, the day of `now` can end before
                            // `now` (see the NOTE on `WindowKind::window_at`): no guess can match.
                            if !actual.contains(now) {
                                continue;
                            }
                            if start <= now
                                && now < end
                                && (start, end) != (actual.start, actual.end)
                            {
                                wrong.push(format!(
                                    "{zone} {kind}: guess at {guess_at} is {start} .. {end}, now {now} is in {} .. {}",
                                    actual.start, actual.end
                                ));
                            }
                        }
                    }
                }
            }
        }
        assert!(
            wrong.is_empty(),
            "{} wrong guesses:\n{}",
            wrong.len(),
            wrong.join("\n")
        );
    }
}
