//! Every `.tjp` file of the corpus: files under `Syntax/Errors/` must be rejected at the line
//! their `# MARK: error LINE ID` comment names, every other file must parse.

use std::path::{Path, PathBuf};

use highway_ratelimit::schedule::Schedule;

fn corpus_files(dir: &Path, files: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            corpus_files(&path, files);
        } else if path.extension().is_some_and(|e| e == "tjp") {
            files.push(path);
        }
    }
}

/// Reads `# MARK: error LINE ID` from an error file.
fn expected_error(path: &Path) -> (u32, String) {
    let text = std::fs::read_to_string(path).unwrap();
    let mark = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("# MARK: error "))
        .unwrap_or_else(|| panic!("{} has no MARK comment", path.display()));
    let mut words = mark.split_whitespace();
    let line = words.next().unwrap().parse().unwrap();
    (line, words.next().unwrap_or_default().to_string())
}

#[test]
fn corpus_parses_or_fails_at_mark() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut files = Vec::new();
    corpus_files(&root, &mut files);
    assert!(files.len() >= 40, "corpus has only {} files", files.len());

    let mut failures = Vec::new();
    let mut rejected = 0;
    for path in &files {
        let result = Schedule::from_file(path);
        if path.components().any(|c| c.as_os_str() == "Errors") {
            let (line, id) = expected_error(path);
            match result {
                Ok(_) => failures.push(format!(
                    "{}: accepted, expected error {id} at line {line}",
                    path.display()
                )),
                Err(error) => {
                    rejected += 1;
                    let first = &error.diagnostics[0];
                    if first.location.line != line || first.location.file != *path {
                        failures.push(format!(
                            "{}: expected {id} at line {line}, got {first}",
                            path.display()
                        ));
                    }
                }
            }
        } else if let Err(error) = result {
            failures.push(format!("{}: rejected:\n{error}", path.display()));
        }
    }
    assert_eq!(rejected, 7, "error files rejected");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn seed_example_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/schedules/seed_email.tjp");
    let schedule = Schedule::from_file(&path).unwrap();
    let service = schedule.resource("email_service").unwrap();
    assert_eq!(service.limits.len(), 1);
    assert_eq!(service.limits[0].value, 500);
    assert_eq!(service.shifts.len(), 1);
    assert_eq!(service.shifts[0].shift, "business_hours");
    assert_eq!(service.shifts[0].interval.start, schedule.project.start);
    assert_eq!(service.shifts[0].interval.end, schedule.project.end);
    assert_eq!(
        schedule.project.end.to_rfc3339(),
        "2026-01-01T00:00:00+00:00"
    );
    assert_eq!(schedule.leaves.len(), 3);
    assert_eq!(schedule.warnings.len(), 1, "{:?}", schedule.warnings);
    assert_eq!(schedule.warnings[0].location.line, 18);
    assert!(
        schedule.warnings[0].message.contains("New Year"),
        "{}",
        schedule.warnings[0]
    );
}

#[test]
fn golden_nested_shift_inherits_days() {
    // TaskJuggler's export of this file resolves s1 to thu/fri 9-17 from the project and s2 to
    // tue 9-14 and wed off from s1.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/Syntax/Correct/Shift.tjp");
    let schedule = Schedule::from_file(&path).unwrap();
    let s1 = schedule.shift("s1").unwrap();
    let s2 = schedule.shift("s2").unwrap();
    let hours = |h: u32| h * 3600;
    assert_eq!(
        s1.working_hours.days[3],
        vec![highway_ratelimit::schedule::TimeRange {
            start: hours(9),
            end: hours(17)
        }]
    );
    assert!(s1.working_hours.days[2].is_empty());
    assert_eq!(s2.parent.as_deref(), Some("s1"));
    assert_eq!(
        s2.working_hours.days[0],
        vec![highway_ratelimit::schedule::TimeRange {
            start: hours(10),
            end: hours(17)
        }]
    );
    assert_eq!(
        s2.working_hours.days[1],
        vec![highway_ratelimit::schedule::TimeRange {
            start: hours(9),
            end: hours(14)
        }]
    );
    assert!(s2.working_hours.days[2].is_empty());
    let r1 = schedule.resource("r1").unwrap();
    assert_eq!(r1.shifts.len(), 2);
}

#[test]
fn included_file_resources_and_prefix() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/Syntax/Correct");
    let schedule = Schedule::from_file(root.join("Include.tjp")).unwrap();
    let names: Vec<_> = schedule.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["RF1", "RF2", "R", "R2"]);

    let schedule = Schedule::from_file(root.join("ResourcePrefix.tjp")).unwrap();
    let bar = schedule.resource("bar").unwrap();
    assert_eq!(bar.parent.as_deref(), Some("team"));
    assert_eq!(bar.working_hours.days[0][0].start, 8 * 3600);
    assert!(bar.working_hours.days[5].is_empty());
}

#[test]
fn scriptplan_cross_midnight_split() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus/scriptplan-tests/airport_retrofit.tjp");
    let schedule = Schedule::from_file(&path).unwrap();
    let night = schedule.shift("night_shift").unwrap();
    assert_eq!(night.name, None);
    let monday = night.working_hours.days[0].clone();
    let saturday = night.working_hours.days[5].clone();
    assert_eq!(monday.len(), 1, "{monday:?}");
    assert_eq!((monday[0].start, monday[0].end), (22 * 3600, 86_400));
    assert_eq!(saturday.len(), 1, "{saturday:?}");
    assert_eq!((saturday[0].start, saturday[0].end), (0, 6 * 3600));
    let tuesday = night.working_hours.days[1].clone();
    assert_eq!(tuesday.len(), 2, "{tuesday:?}");
}

#[test]
fn scriptplan_resource_timezone() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus/scriptplan-tests/timezone_stress.tjp");
    let schedule = Schedule::from_file(&path).unwrap();
    assert_eq!(schedule.project.timezone, chrono_tz::Etc::UTC);
    let tokyo = schedule.resource("dev_jp").unwrap();
    assert_eq!(tokyo.timezone, Some(chrono_tz::Asia::Tokyo));
    assert_eq!(tokyo.parent.as_deref(), Some("team"));
    assert_eq!(tokyo.shifts[0].shift, "local_9to6");
}
