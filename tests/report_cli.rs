//! `highway-ratelimit report`, run as a user runs it.

use std::path::PathBuf;
use std::process::{Command, Output};

use chrono::{DateTime, Utc};
use highway_ratelimit::report::AvailabilityReport;
use serde_json::Value;

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_highway-ratelimit"))
        .arg("report")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the highway-ratelimit binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const EMAIL: &str = "tests/schedules/email_limits.tjp";

#[test]
fn missing_file_is_an_error() {
    let output = run(&["tests/schedules/no_such_file.tjp"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("no_such_file.tjp"), "{stderr}");
    assert!(stderr.contains("cannot read the schedule file"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[test]
fn invalid_from_is_an_error() {
    let output = run(&[EMAIL, "--from", "20/12/2025"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("invalid --from value \"20/12/2025\""),
        "{stderr}"
    );
    assert!(stderr.contains("2025-12-20T09:00:00Z"), "{stderr}");
}

#[test]
fn impossible_from_is_named() {
    for from in ["2026-02-30", "2026-13-01", "2026-03-01T25:00:00Z"] {
        let output = run(&[EMAIL, "--from", from]);
        assert_eq!(output.status.code(), Some(1), "--from {from}");
        let stderr = text(&output.stderr);
        let expected = format!("invalid --from value {from:?}: no such date, time or UTC offset");
        assert!(stderr.contains(&expected), "{stderr}");
    }
}

#[test]
fn invalid_days_is_an_error() {
    for days in ["0", "3661", "seven"] {
        let output = run(&[EMAIL, "--days", days]);
        assert_eq!(output.status.code(), Some(1), "--days {days}");
        let stderr = text(&output.stderr);
        assert!(stderr.contains("--days"), "{stderr}");
    }
}

#[test]
fn email_report_as_json() {
    let output = run(&[EMAIL, "--from", "2025-12-20", "--days", "14"]);
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: the schedule's time frame ends on 2026-01-01 00:00 UTC"),
        "{stderr}"
    );

    let report: Value = serde_json::from_slice(&output.stdout).expect("stdout is JSON");
    assert_eq!(report["version"], 1);
    assert_eq!(report["timezone"], "UTC");
    assert_eq!(report["valid_until"], "2026-01-03T00:00:00Z");
    assert_eq!(
        report["blocked_dates"],
        serde_json::json!(["2025-12-25", "2025-12-26"])
    );
    assert_eq!(
        report["default_capacity"],
        serde_json::json!({"per_day": 500})
    );
    let windows = report["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 6);
    assert_eq!(
        windows[0],
        serde_json::json!({"start": "2025-12-22T09:00:00Z", "end": "2025-12-22T17:00:00Z", "capacity": {"per_day": 500}})
    );
    assert_eq!(windows[5]["end"], "2025-12-31T17:00:00Z");
}

/// A horizon that started in the past is stamped with its start, because a report generated
/// after its `valid_until` would cover no instant at all.
#[test]
fn past_from_is_generated_at_start() {
    let output = run(&[EMAIL, "--from", "2025-12-20", "--days", "7"]);
    assert!(output.status.success(), "{}", text(&output.stderr));

    let report: AvailabilityReport =
        serde_json::from_slice(&output.stdout).expect("stdout is a report");
    assert_eq!(report.generated_at, at("2025-12-20T00:00:00Z"));
    assert_eq!(report.valid_until, at("2025-12-27T00:00:00Z"));
    for window in &report.windows {
        assert!(report.covers(window.start), "{window:?}");
    }
}

/// A horizon that starts now or later keeps the time of the run as `generated_at`.
#[test]
fn future_from_is_generated_at_start() {
    let output = run(&[EMAIL, "--from", "2099-01-01", "--days", "1"]);
    assert!(output.status.success(), "{}", text(&output.stderr));

    let report: AvailabilityReport =
        serde_json::from_slice(&output.stdout).expect("stdout is a report");
    assert_eq!(
        report.generated_at + chrono::Duration::days(1),
        report.valid_until,
        "generated_at is the start of the one-day horizon"
    );
    assert!(
        !report.covers(Utc::now()),
        "the report does not cover the time before its horizon"
    );
}

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

#[test]
fn from_accepts_an_instant() {
    let output = run(&[EMAIL, "--from", "2025-12-22T12:00:00+02:00", "--days", "1"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["valid_until"], "2025-12-23T10:00:00Z");
    assert_eq!(report["windows"][0]["start"], "2025-12-22T10:00:00Z");
    assert_eq!(report["windows"][0]["end"], "2025-12-22T17:00:00Z");
    assert_eq!(report["windows"][1]["start"], "2025-12-23T09:00:00Z");
    assert_eq!(report["windows"][1]["end"], "2025-12-23T10:00:00Z");
}

#[test]
fn email_report_as_week() {
    let output = run(&[
        EMAIL,
        "--from",
        "2025-12-20",
        "--days",
        "14",
        "--format",
        "week",
        "--resource",
        "email_service",
    ]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        stdout.starts_with("email_service \"Email Service\"\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Mon 22 Dec  ..................AAAAAAAAAAAAAAAA..............    8h"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Thu 25 Dec  blocked: Christmas"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Fri 26 Dec  blocked: Boxing Day"),
        "{stdout}"
    );
    assert!(stdout.contains("A  500/day"), "{stdout}");
    assert!(
        stdout.lines().all(|line| line.chars().count() <= 80),
        "{stdout}"
    );
}

/// A team with one member: the report is the member's, and stderr names it, since the JSON does
/// not name its resource.
#[test]
fn only_leaf_resource_is_named() {
    let mut file = tempfile::NamedTempFile::with_suffix(".tjp").unwrap();
    std::io::Write::write_all(
        &mut file,
        b"project p \"P\" 2026-03-01 - 2026-04-01 {\n  timezone \"UTC\"\n}\n\
          resource team \"Team\" {\n  resource mailer \"Mailer\" {\n    limits { dailymax 5 }\n  }\n}\n",
    )
    .unwrap();
    let output = run(&[file.path().to_str().unwrap(), "--from", "2026-03-02"]);

    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("the report is for resource \"mailer\""),
        "{stderr}"
    );
    assert!(stderr.contains("--resource ID"), "{stderr}");
}

#[test]
fn several_resources_need_one_chosen() {
    let file = PathBuf::from("tests/corpus/scriptplan-tests/timezone_stress.tjp");
    let output = run(&[file.to_str().unwrap(), "--from", "2025-05-01"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("several resources (team, dev_jp, qa_ny)"),
        "{stderr}"
    );
    assert!(stderr.contains("choose one with --resource ID"), "{stderr}");

    let output = run(&[
        file.to_str().unwrap(),
        "--from",
        "2025-05-01",
        "--resource",
        "qa_nyc",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    let expected = "unknown resource \"qa_nyc\": the schedule has team, dev_jp, qa_ny; pass one of them to --resource";
    assert!(stderr.contains(expected), "{stderr}");

    let output = run(&[
        file.to_str().unwrap(),
        "--from",
        "2025-05-01",
        "--resource",
        "qa_ny",
        "--days",
        "1",
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    // `--from` as a date is local midnight in the resource's zone (New York, UTC-4 in May).
    assert_eq!(report["timezone"], "America/New_York");
    assert_eq!(report["valid_until"], "2025-05-02T04:00:00Z");
    assert_eq!(
        report["windows"],
        serde_json::json!([{"start": "2025-05-01T13:00:00Z", "end": "2025-05-01T22:00:00Z", "capacity": {}}])
    );
}

/// `report --from DATE` and the admin preview read a date the same way: local midnight in the
/// resource's zone. Both render the same report from a real schedule of several zones.
#[test]
fn preview_date_matches_report() {
    use highway_ratelimit::admin::{Admin, HorizonStart};
    use highway_ratelimit::store::postgres::{PostgresConfig, PostgresStore};

    let file = "tests/corpus/scriptplan-tests/timezone_stress.tjp";
    let definition = std::fs::read_to_string(file).unwrap();
    // The preview renders without a database; the pool never connects.
    let store = PostgresStore::new(PostgresConfig::new("postgres://nobody@127.0.0.1:1/none"));
    let admin = Admin::from_store(&store.unwrap());

    for resource in ["team", "dev_jp", "qa_ny"] {
        for from in ["2025-05-01", "2025-03-09", "2025-11-02T12:00:00+09:00"] {
            let output = run(&[file, "--resource", resource, "--from", from, "--days", "3"]);
            assert!(output.status.success(), "{}", text(&output.stderr));
            let printed: Value = serde_json::from_slice(&output.stdout).unwrap();

            let start = HorizonStart::parse(from).unwrap();
            let preview = admin
                .preview(&definition, file, Some(resource), start, 3)
                .unwrap();
            let previewed = serde_json::to_value(&preview.report).unwrap();

            assert_eq!(previewed, printed, "{resource} from {from}");
        }
    }
}
