//! Working time against ScriptPlan 0.10.2, recorded in `tests/oracle/` (see its README for the
//! command). Only leaf resources are compared, and where TaskJuggler's rules and ScriptPlan's
//! differ on purpose the expected departure is listed with the rule that applies.

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
    missing: &'static [(&'static str, &'static str)],
}

const DEPARTURES: &[Departure] = &[Departure {
    run: "Vacation.scriptplan.tux3",
    rule: "TaskJuggler adds the parent's vacations to a child's own (team's 2005-10-07 - 2005-10-09 \
           closes tux3's Friday); ScriptPlan drops them once the child declares its own",
    missing: &[("2005-10-07T15:00:00Z", "2005-10-07T23:00:00Z")],
}];

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

        let mut expected = run.intervals.clone();
        if let Some(departure) = DEPARTURES
            .iter()
            .find(|departure| departure.run == run.name)
        {
            for (start, end) in departure.missing {
                let before = expected.len();
                expected.retain(|interval| interval != &(start.to_string(), end.to_string()));
                assert_eq!(
                    expected.len() + 1,
                    before,
                    "{}: ScriptPlan no longer reports {start} {end} ({})",
                    run.name,
                    departure.rule
                );
            }
        }

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

fn show(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
