//! Working time against ScriptPlan 0.10.2, recorded in `tests/oracle/` (see its README for the
//! command). Only leaf resources are compared, and where TaskJuggler's rules and ScriptPlan's
//! differ on purpose the expected departure is listed with the rule that applies.

mod calendar_support;

use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use highway_ratelimit::calendar::WorkingTime;
use highway_ratelimit::schedule::Schedule;

/// One recorded oracle run.
struct OracleRun {
    name: String,
    file: PathBuf,
    resource: String,
    window: (DateTime<Utc>, DateTime<Utc>),
    intervals: Vec<(String, String)>,
}

/// A difference from ScriptPlan that follows TaskJuggler on purpose.
struct Departure {
    run: &'static str,
    /// Why this crate's result differs.
    rule: &'static str,
    /// Intervals ScriptPlan reports that this crate must not.
    scriptplan_only: &'static [(&'static str, &'static str)],
    /// Intervals this crate reports in their place.
    ours_only: &'static [(&'static str, &'static str)],
}

const PLUS_THREE_MONTHS: &str = "TaskJuggler reads `+3m` in the header as 3 x 30.4167 days, \
    truncated to the 15 min timing resolution, so the project ends on 2025-10-31 06:00 UTC; \
    ScriptPlan adds calendar months and ends on 2025-11-01";

const SHIFT_DAYS_INHERITED: &str = "TaskJuggler gives the days a shift does not set the \
    project's working hours (Monday to Friday 09:00 - 17:00 by default, in the resource's zone \
    here); ScriptPlan leaves them without hours. `alpha_shift` sets Monday to Wednesday, so \
    Thursday and Friday keep 09:00 - 17:00 Athens time; `beta_shift` sets Thursday to Sunday, \
    so Monday to Wednesday keep 09:00 - 17:00 Los Angeles time. The project ends on \
    2025-01-31 10:00 UTC (`+1m` is 30.4167 days)";

const DEPARTURES: &[Departure] = &[
    Departure {
        run: "Vacation.scriptplan.tux3",
        rule: "TaskJuggler adds the parent's vacations to a child's own (team's 2005-10-07 - \
               2005-10-09 closes tux3's Friday); ScriptPlan drops them once the child declares \
               its own",
        scriptplan_only: &[("2005-10-07T15:00:00Z", "2005-10-07T23:00:00Z")],
        ours_only: &[],
    },
    Departure {
        run: "airport_retrofit.crew",
        rule: "TaskJuggler reads `+2m` in the header as 2 x 30.4167 days, truncated to the \
               60 min timing resolution, so the project ends on 2025-10-31 20:00 UTC; \
               ScriptPlan adds calendar months and ends on 2025-11-01",
        scriptplan_only: &[("2025-10-31T22:00:00Z", "2025-11-01T00:00:00Z")],
        ours_only: &[],
    },
    Departure {
        run: "airport_ultra_math.irregular_shift",
        rule: PLUS_THREE_MONTHS,
        scriptplan_only: &[
            ("2025-10-31T08:15:00Z", "2025-10-31T11:45:00Z"),
            ("2025-10-31T13:15:00Z", "2025-10-31T16:30:00Z"),
        ],
        ours_only: &[],
    },
    Departure {
        run: "airport_ultra_math.r_math",
        rule: PLUS_THREE_MONTHS,
        scriptplan_only: &[
            ("2025-10-31T08:15:00Z", "2025-10-31T11:45:00Z"),
            ("2025-10-31T13:15:00Z", "2025-10-31T16:30:00Z"),
        ],
        ours_only: &[],
    },
    Departure {
        run: "airport_ultra_math.r_limit",
        rule: PLUS_THREE_MONTHS,
        scriptplan_only: &[("2025-10-31T08:00:00Z", "2025-10-31T18:00:00Z")],
        ours_only: &[],
    },
    Departure {
        run: "blackbox.agent_a",
        rule: SHIFT_DAYS_INHERITED,
        scriptplan_only: &[],
        ours_only: &[
            ("2025-01-02T07:00:00Z", "2025-01-02T15:00:00Z"),
            ("2025-01-03T07:00:00Z", "2025-01-03T15:00:00Z"),
            ("2025-01-09T07:00:00Z", "2025-01-09T15:00:00Z"),
            ("2025-01-10T07:00:00Z", "2025-01-10T15:00:00Z"),
            ("2025-01-16T07:00:00Z", "2025-01-16T15:00:00Z"),
            ("2025-01-17T07:00:00Z", "2025-01-17T15:00:00Z"),
            ("2025-01-23T07:00:00Z", "2025-01-23T15:00:00Z"),
            ("2025-01-24T07:00:00Z", "2025-01-24T15:00:00Z"),
            ("2025-01-30T07:00:00Z", "2025-01-30T15:00:00Z"),
            ("2025-01-31T07:00:00Z", "2025-01-31T10:00:00Z"),
        ],
    },
    Departure {
        run: "blackbox.agent_b",
        rule: SHIFT_DAYS_INHERITED,
        scriptplan_only: &[],
        ours_only: &[
            ("2025-01-01T00:00:00Z", "2025-01-01T01:00:00Z"),
            ("2025-01-01T17:00:00Z", "2025-01-02T01:00:00Z"),
            ("2025-01-06T17:00:00Z", "2025-01-07T01:00:00Z"),
            ("2025-01-07T17:00:00Z", "2025-01-08T01:00:00Z"),
            ("2025-01-08T17:00:00Z", "2025-01-09T01:00:00Z"),
            ("2025-01-13T17:00:00Z", "2025-01-14T01:00:00Z"),
            ("2025-01-14T17:00:00Z", "2025-01-15T01:00:00Z"),
            ("2025-01-15T17:00:00Z", "2025-01-16T01:00:00Z"),
            ("2025-01-20T17:00:00Z", "2025-01-21T01:00:00Z"),
            ("2025-01-21T17:00:00Z", "2025-01-22T01:00:00Z"),
            ("2025-01-22T17:00:00Z", "2025-01-23T01:00:00Z"),
            ("2025-01-27T17:00:00Z", "2025-01-28T01:00:00Z"),
            ("2025-01-28T17:00:00Z", "2025-01-29T01:00:00Z"),
            ("2025-01-29T17:00:00Z", "2025-01-30T01:00:00Z"),
        ],
    },
    Departure {
        run: "thermal.press",
        rule: "a `booking` records work done on a task and is skipped by this crate's parser, \
               as it does not close the resource the way a vacation or leave does; ScriptPlan \
               turns a resource booking into a leave (2025-05-12 09:00 +6h)",
        scriptplan_only: &[("2025-05-12T15:00:00Z", "2025-05-12T17:00:00Z")],
        ours_only: &[("2025-05-12T09:00:00Z", "2025-05-12T17:00:00Z")],
    },
];

/// Returns the intervals this crate must report for `run`: ScriptPlan's, changed by the
/// departure listed for the run.
fn expected_intervals(run: &OracleRun) -> Vec<(String, String)> {
    let mut expected = run.intervals.clone();
    let Some(departure) = DEPARTURES
        .iter()
        .find(|departure| departure.run == run.name)
    else {
        return expected;
    };
    for (start, end) in departure.scriptplan_only {
        let interval = (start.to_string(), end.to_string());
        assert!(
            expected.contains(&interval),
            "{}: ScriptPlan no longer reports {start} {end}, so this departure is stale: {}",
            run.name,
            departure.rule
        );
        expected.retain(|other| *other != interval);
    }
    expected.extend(
        departure
            .ours_only
            .iter()
            .map(|(start, end)| (start.to_string(), end.to_string())),
    );
    expected.sort();
    expected
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load_run(path: &Path) -> OracleRun {
    let text = fs::read_to_string(path).unwrap();
    let header = |key: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("# {key}: ")))
            .unwrap_or_else(|| panic!("{} has no `# {key}:` line", path.display()))
            .to_owned()
    };
    let window = header("window_utc");
    let bounds: Vec<DateTime<Utc>> = window
        .trim_matches(|c| c == '[' || c == ']')
        .split(", ")
        .map(|part| part.trim_matches('\'').parse().unwrap())
        .collect();
    let intervals = text
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (start, end) = line.split_once(' ').unwrap();
            (start.to_owned(), end.to_owned())
        })
        .collect();
    OracleRun {
        name: path.file_stem().unwrap().to_string_lossy().into_owned(),
        file: root().join(header("file")),
        resource: header("resource"),
        window: (bounds[0], bounds[1]),
        intervals,
    }
}

fn runs() -> Vec<OracleRun> {
    let mut paths: Vec<PathBuf> = fs::read_dir(root().join("tests/oracle"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "txt"))
        .collect();
    paths.sort();
    paths.iter().map(|path| load_run(path)).collect()
}

#[test]
fn oracle_runs_are_recorded() {
    let runs = runs();
    assert!(
        runs.len() >= 25,
        "expected the recorded runs under tests/oracle, found {}",
        runs.len()
    );
    assert!(runs.iter().all(|run| !run.intervals.is_empty()));
}

#[test]
fn working_time_matches_scriptplan() {
    let mut compared = 0;
    let mut failures = Vec::new();
    for run in runs() {
        let schedule = Schedule::from_file(&run.file)
            .unwrap_or_else(|error| panic!("{} does not parse:\n{error}", run.file.display()));
        let resource = schedule
            .resource(&run.resource)
            .unwrap_or_else(|| panic!("{}: no resource {}", run.name, run.resource));
        if !resource.children.is_empty() {
            continue;
        }

        let expected = expected_intervals(&run);

        let working_time = WorkingTime::new(&schedule, resource);
        let got: Vec<(String, String)> = working_time
            .working_between(run.window.0, run.window.1)
            .iter()
            .map(|interval| (show(interval.start), show(interval.end)))
            .collect();
        compared += 1;
        if got != expected {
            let only_ours: Vec<_> = got
                .iter()
                .filter(|interval| !expected.contains(interval))
                .collect();
            let only_oracle: Vec<_> = expected
                .iter()
                .filter(|interval| !got.contains(interval))
                .collect();
            failures.push(format!(
                "{}: only ours {only_ours:?}, only ScriptPlan {only_oracle:?}",
                run.name
            ));
        }
    }
    assert!(compared >= 20, "compared only {compared} runs");
    assert!(
        failures.is_empty(),
        "working time differs from ScriptPlan:\n{}",
        failures.join("\n")
    );
}

/// Returns the intervals `working_time` gives in the window of the run, as strings.
fn working_in_window(working_time: &WorkingTime, run: &OracleRun) -> Vec<(String, String)> {
    working_time
        .working_between(run.window.0, run.window.1)
        .iter()
        .map(|interval| (show(interval.start), show(interval.end)))
        .collect()
}

fn oracle_run(name: &str) -> OracleRun {
    load_run(&root().join("tests/oracle").join(format!("{name}.txt")))
}

/// `adapted/Vacation.scriptplan.tjp` written as model values, as TaskJuggler reads it: the
/// header dates are UTC and every later date is local to America/Denver.
fn vacation_example() -> Schedule {
    use calendar_support::*;
    use chrono_tz::America::Denver;

    let day = |date: &str| local(Denver, &format!("{date} 00:00"));
    let leave = |name: &str, start: &str, end: &str| {
        vacation(
            name,
            highway_ratelimit::schedule::Interval {
                start: day(start),
                end: day(end),
            },
        )
    };
    let team_vacation = leave("team", "2005-10-07", "2005-10-09");

    let mut team = resource("team");
    team.children = vec!["tux2".into(), "tux3".into()];
    team.leaves = vec![team_vacation.clone()];
    let mut tux2 = resource("tux2");
    tux2.parent = Some("team".into());
    tux2.leaves = vec![team_vacation.clone()];
    let mut tux3 = resource("tux3");
    tux3.parent = Some("team".into());
    tux3.leaves = vec![team_vacation, leave("tux3", "2005-08-10", "2005-08-11")];
    let mut tuxus = resource("tuxus");
    tuxus.leaves = vec![leave("tuxus", "2005-09-01", "2030-01-01")];

    // `2005-07-22 +163d` is 163 times 24 hours from midnight UTC.
    let mut schedule = schedule(
        project("2005-07-22T00:00:00Z", "2006-01-01T00:00:00Z", Denver),
        vec![team, tux2, tux3, tuxus],
    );
    schedule.leaves = vec![
        leave("Labor Day", "2005-09-05", "2005-09-06"),
        leave("Christmas", "2005-12-25", "2005-12-27"),
    ];
    schedule
}

/// `scriptplan-tests/blackbox.tjp` and `timezone_stress.tjp` written as model values, as
/// TaskJuggler reads them: shift hours are evaluated in each resource's own zone.
fn zoned_shift_examples() -> Vec<(&'static str, Schedule)> {
    use calendar_support::*;
    use chrono::Weekday;

    let zoned = |id: &str,
                 zone: chrono_tz::Tz,
                 shift_id: &str,
                 frame: highway_ratelimit::schedule::Interval| {
        let mut tool = resource(id);
        tool.timezone = Some(zone);
        tool.shifts = vec![assign(shift_id, frame)];
        tool
    };

    // `2025-01-01 +1m` ends 30.4167 days later, truncated to the hour.
    let january = span("2025-01-01T00:00:00Z", "2025-01-31T10:00:00Z");
    let mut blackbox = schedule(
        project(
            "2025-01-01T00:00:00Z",
            "2025-01-31T10:00:00Z",
            chrono_tz::UTC,
        ),
        vec![
            zoned("agent_a", chrono_tz::Europe::Athens, "alpha_shift", january),
            zoned(
                "agent_b",
                chrono_tz::America::Los_Angeles,
                "beta_shift",
                january,
            ),
        ],
    );
    // Days a shift does not set keep the project's default hours, as in TaskJuggler.
    let with_days = |days: &[Weekday], start: &str, end: &str| {
        let mut hours = highway_ratelimit::schedule::WorkingHours::default();
        for day in days {
            hours.days[day.num_days_from_monday() as usize] = vec![range(start, end)];
        }
        hours
    };
    blackbox.shifts = vec![
        shift(
            "alpha_shift",
            with_days(
                &[Weekday::Mon, Weekday::Tue, Weekday::Wed],
                "10:00",
                "14:00",
            ),
        ),
        shift(
            "beta_shift",
            with_days(
                &[Weekday::Thu, Weekday::Fri, Weekday::Sat, Weekday::Sun],
                "18:00",
                "22:00",
            ),
        ),
    ];

    let week = span("2025-05-01T00:00:00Z", "2025-05-08T00:00:00Z");
    let mut stress = schedule(
        project(
            "2025-05-01T00:00:00Z",
            "2025-05-08T00:00:00Z",
            chrono_tz::UTC,
        ),
        vec![
            zoned("dev_jp", chrono_tz::Asia::Tokyo, "local_9to6", week),
            zoned("qa_ny", chrono_tz::America::New_York, "local_9to6", week),
        ],
    );
    stress.shifts = vec![shift(
        "local_9to6",
        hours_on(&WEEKDAYS, &[("09:00", "18:00")]),
    )];

    vec![("blackbox", blackbox), ("timezone_stress", stress)]
}

#[test]
fn model_vacation_example_matches_scriptplan() {
    // Denver office hours 09:00 - 17:00 are 15:00Z - 23:00Z in MDT and 16:00Z - 24:00Z after
    // the change of 2005-10-30, with Labor Day, Christmas and each resource's vacations off.
    let schedule = vacation_example();
    for id in ["tux2", "tux3", "tuxus"] {
        let run = oracle_run(&format!("Vacation.scriptplan.{id}"));
        let expected = expected_intervals(&run);
        let working_time = WorkingTime::new(&schedule, schedule.resource(id).unwrap());
        assert_eq!(working_in_window(&working_time, &run), expected, "{id}");
    }
}

#[test]
fn model_zoned_shifts_match_scriptplan() {
    for (file, schedule) in zoned_shift_examples() {
        for resource in &schedule.resources {
            let run = oracle_run(&format!("{file}.{}", resource.id));
            let working_time = WorkingTime::new(&schedule, resource);
            assert_eq!(
                working_in_window(&working_time, &run),
                expected_intervals(&run),
                "{}",
                run.name
            );
        }
    }
}

fn show(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
