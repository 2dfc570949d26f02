//! `highway-ratelimit check`, run as a built binary.

use std::path::Path;
use std::process::{Command, Output};

fn check(file: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_highway-ratelimit"))
        .arg("check")
        .arg(file)
        .output()
        .unwrap()
}

#[test]
fn check_valid_file_with_warnings() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/schedules/seed_email.tjp");
    let output = check(&path);
    assert_eq!(output.status.code(), Some(0));
    let stderr = String::from_utf8(output.stderr).unwrap();
    let expected = format!("{}:18:1: warning: vacation \"New Year\"", path.display());
    assert!(stderr.contains(&expected), "{stderr}");
    // The time frame of the example ended on 2026-01-01.
    assert!(
        stderr.contains(":1:1: warning: the project's time frame ended at 2026-01-01"),
        "{stderr}"
    );
}

#[test]
fn check_invalid_file_exits_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.tjp");
    std::fs::write(
        &path,
        "project \"P\" 2025-01-01 +1y {\n  timezone \"Mars/Olympus\"\n}\nvacation 2025-02-30\n",
    )
    .unwrap();
    let output = check(&path);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].starts_with(&format!(
            "{}:2:12: unknown time zone \"Mars/Olympus\"",
            path.display()
        )),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "{}:4:10: invalid date `2025-02-30`",
            path.display()
        )),
        "{stderr}"
    );
}

#[test]
fn check_missing_file() {
    let output = check(Path::new("/nonexistent/schedule.tjp"));
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("cannot read the schedule file"), "{stderr}");
    assert!(
        stderr.starts_with("/nonexistent/schedule.tjp: "),
        "a whole-file error names no line: {stderr}"
    );
}

#[test]
fn check_far_future_time_frame_has_no_warning() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ok.tjp");
    std::fs::write(
        &path,
        "project \"P\" 2025-01-01 - 2090-01-01\nresource r \"R\"\n",
    )
    .unwrap();
    let output = check(&path);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(String::from_utf8(output.stderr).unwrap(), "");
}
