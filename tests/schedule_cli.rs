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

/// A file that is not UTF-8 (here Latin-1) is rejected at the first invalid byte, in the file
/// itself as in an included one.
#[test]
fn check_latin1_file_names_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latin1.tjp");
    std::fs::write(
        &path,
        b"project p \"P\" 2026-03-01 - 2026-04-01 {}\nresource r \"Caf\xe9\" {}\n",
    )
    .unwrap();
    let output = check(&path);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    let expected = format!("{}:2:16: invalid UTF-8", path.display());
    assert!(stderr.starts_with(&expected), "{stderr}");

    let included = dir.path().join("latin1.tji");
    std::fs::write(&included, b"# Caf\xe9\n").unwrap();
    let including = dir.path().join("includes.tjp");
    std::fs::write(
        &including,
        "project p \"P\" 2026-03-01 - 2026-04-01 {}\ninclude \"latin1.tji\"\n",
    )
    .unwrap();
    let output = check(&including);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    let expected = format!("{}:1:6: invalid UTF-8", included.display());
    assert!(stderr.starts_with(&expected), "{stderr}");
}

/// An endless file is rejected after a bounded read instead of filling memory.
#[cfg(unix)]
#[test]
fn check_endless_file_stops() {
    let output = check(Path::new("/dev/zero"));
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.starts_with("/dev/zero: cannot read the schedule file: the file is larger than"),
        "{stderr}"
    );
}

/// A schedule without a resource is valid TaskJuggler, but `report` and `limits set` reject it,
/// so `check` warns.
#[test]
fn check_without_resource_warns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no_resource.tjp");
    std::fs::write(&path, "project p \"P\" 2026-01-01 - 2099-01-01 {}\n").unwrap();

    let output = check(&path);

    assert_eq!(output.status.code(), Some(0));
    let stderr = String::from_utf8(output.stderr).unwrap();
    let expected = format!(
        "{}:1:1: warning: the schedule has no resource",
        path.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
}
