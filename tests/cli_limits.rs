//! The command line against a real PostgreSQL, through the built binary: the life of a limit
//! from `migrate` to `limits delete`.

mod common;

use std::io::Write;
use std::process::{Command, Output};

use chrono::Utc;
use common::TestDatabase;
use serde_json::Value;

fn run(database_url: Option<&str>, args: &[&str]) -> Output {
    run_with_log(database_url, args, Some("off"))
}

/// Runs the binary with `RUST_LOG` set to `log`, or unset for `None`.
fn run_with_log(database_url: Option<&str>, args: &[&str], log: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_highway-ratelimit"));
    command.args(args).env_remove("DATABASE_URL");
    match log {
        Some(filter) => command.env("RUST_LOG", filter),
        None => command.env_remove("RUST_LOG"),
    };
    if let Some(url) = database_url {
        command.env("DATABASE_URL", url);
    }
    command.output().expect("the binary runs")
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "stdout is not JSON ({error}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// Returns what `usage` prints when no counter matches.
fn empty_page() -> Value {
    serde_json::json!({ "counts": [], "next": null })
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Writes `schedule` to a file of its own and runs [`set_schedule_file`] with it.
fn set_schedule(database_url: Option<&str>, schedule: &str, more: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mail.tjp");
    std::fs::write(&path, schedule).unwrap();
    set_schedule_file(database_url, path.to_str().unwrap(), more)
}

/// Runs `limits set` with the schedule at `path` for the tenant `acme` and the tool
/// `tools.mail`, followed by `more` arguments.
fn set_schedule_file(database_url: Option<&str>, path: &str, more: &[&str]) -> Output {
    let mut args = vec![
        "limits",
        "set",
        "--tenant",
        "acme",
        "--tool",
        "tools.mail",
        "--schedule",
        path,
    ];
    args.extend_from_slice(more);
    run(database_url, &args)
}

#[tokio::test(flavor = "multi_thread")]
async fn limit_round_trip() {
    let database = TestDatabase::new().await;
    let url = Some(database.url());

    let migrated = run(url, &["migrate"]);
    assert_eq!(migrated.status.code(), Some(0), "{}", stderr(&migrated));
    let again = run(url, &["migrate"]);
    assert_eq!(again.status.code(), Some(0));
    assert!(stderr(&again).contains("up to date"), "{}", stderr(&again));

    let set = run(
        url,
        &[
            "limits",
            "set",
            "--tenant",
            "acme",
            "--tool",
            "tools.http",
            "--per-minute",
            "2",
            "--per-day",
            "10",
            "--timezone",
            "Europe/Paris",
        ],
    );
    assert_eq!(set.status.code(), Some(0), "{}", stderr(&set));
    let stored = json(&set);
    assert_eq!(stored["per_minute"], 2);
    assert_eq!(stored["per_day"], 10);
    assert_eq!(stored["timezone"], "Europe/Paris");
    assert_eq!(stored["scope"], "tenant");

    let at = Utc::now().to_rfc3339();
    let acquire = |extra: &[&str]| {
        let mut args = vec![
            "acquire",
            "--tenant",
            "acme",
            "--tool",
            "tools.http",
            "--at",
            &at,
        ];
        args.extend_from_slice(extra);
        run(url, &args)
    };
    for call in 1..=2 {
        let admitted = acquire(&[]);
        assert_eq!(
            admitted.status.code(),
            Some(0),
            "call {call}: {}",
            stderr(&admitted)
        );
        let decision = json(&admitted);
        assert_eq!(decision["admitted"], true);
        assert_eq!(decision["tenant"], "acme");
        assert_eq!(decision["tool"], "tools.http");
        assert!(decision.get("reason").is_none(), "{decision}");
    }
    let rejected = acquire(&[]);
    assert_eq!(rejected.status.code(), Some(2), "{}", stderr(&rejected));
    let decision = json(&rejected);
    assert_eq!(decision["admitted"], false);
    assert_eq!(decision["reason"]["kind"], "quota_exhausted");
    assert_eq!(decision["reason"]["window"], "minute");
    assert!(decision["retry_at"].is_string(), "{decision}");
    assert_eq!(decision["windows"][0]["window"], "minute");
    assert_eq!(decision["windows"][0]["limit"], 2);
    assert_eq!(decision["windows"][0]["remaining"], 0);
    assert_eq!(decision["windows"][1]["window"], "day");
    assert_eq!(decision["windows"][1]["remaining"], 8);

    // A dry run charges nothing, so the day still shows 2.
    let peek = acquire(&["--dry-run"]);
    assert_eq!(peek.status.code(), Some(2));
    assert_eq!(json(&peek)["dry_run"], true);

    let usage = run(url, &["usage", "--tenant", "acme", "--tool", "tools.http"]);
    assert_eq!(usage.status.code(), Some(0), "{}", stderr(&usage));
    let counts = json(&usage)["counts"].clone();
    let day = counts
        .as_array()
        .unwrap()
        .iter()
        .find(|count| count["window"] == "day")
        .unwrap_or_else(|| panic!("a day counter in {counts}"));
    assert_eq!(day["used"], 2);
    assert_eq!(day["limit"], 10);
    assert_eq!(day["scope_key"], "tenant:acme");

    let get = run(
        url,
        &["limits", "get", "--tenant", "acme", "--tool", "tools.http"],
    );
    assert_eq!(get.status.code(), Some(0));
    assert_eq!(json(&get), stored);
    let list = run(url, &["limits", "list", "--tenant", "acme"]);
    assert_eq!(json(&list).as_array().map(Vec::len), Some(1));

    let delete = run(
        url,
        &[
            "limits",
            "delete",
            "--tenant",
            "acme",
            "--tool",
            "tools.http",
        ],
    );
    assert_eq!(delete.status.code(), Some(0), "{}", stderr(&delete));
    let unknown = acquire(&[]);
    assert_eq!(unknown.status.code(), Some(2));
    assert_eq!(json(&unknown)["reason"]["kind"], "no_policy");
    let message = json(&unknown)["reason"]["message"].to_string();
    assert!(message.contains("`limits set`"), "{message}");
    assert!(message.contains("--without-policy admit"), "{message}");
    let free = acquire(&["--without-policy", "admit"]);
    assert_eq!(free.status.code(), Some(0));
    assert_eq!(json(&free)["admitted"], true);

    let never_limited = run(
        url,
        &["usage", "--tenant", "acme", "--tool", "tools.unlimited"],
    );
    assert_eq!(never_limited.status.code(), Some(0));
    assert!(
        stderr(&never_limited)
            .contains("no limit for tenant \"acme\" and tool \"tools.unlimited\""),
        "{}",
        stderr(&never_limited)
    );

    let gone = run(
        url,
        &["limits", "get", "--tenant", "acme", "--tool", "tools.http"],
    );
    assert_eq!(gone.status.code(), Some(1));
    assert!(
        stderr(&gone).contains("no limit for tenant \"acme\" and tool \"tools.http\""),
        "{}",
        stderr(&gone)
    );
    let twice = run(
        url,
        &[
            "limits",
            "delete",
            "--tenant",
            "acme",
            "--tool",
            "tools.http",
        ],
    );
    assert_eq!(twice.status.code(), Some(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_say_what_to_do() {
    let database = TestDatabase::new().await;
    let url = Some(database.url());
    assert_eq!(run(url, &["migrate"]).status.code(), Some(0));

    let no_url = run(None, &["limits", "list"]);
    assert_ne!(no_url.status.code(), Some(0));
    assert!(
        stderr(&no_url).contains("--database-url"),
        "{}",
        stderr(&no_url)
    );

    let bad_url = run(
        Some("postgres://nobody@127.0.0.1:1/none"),
        &["limits", "list"],
    );
    assert_eq!(bad_url.status.code(), Some(1));
    assert!(
        stderr(&bad_url).starts_with("error: "),
        "{}",
        stderr(&bad_url)
    );

    let zero = run(
        url,
        &[
            "acquire",
            "--tenant",
            "acme",
            "--tool",
            "tools.http",
            "--cost",
            "0",
        ],
    );
    assert_eq!(zero.status.code(), Some(1));
    assert!(
        stderr(&zero).contains("invalid cost 0"),
        "{}",
        stderr(&zero)
    );

    let workflow = run(
        url,
        &[
            "limits",
            "set",
            "--tenant",
            "acme",
            "--tool",
            "tools.llm",
            "--scope",
            "workflow",
            "--per-hour",
            "5",
        ],
    );
    assert_eq!(workflow.status.code(), Some(0), "{}", stderr(&workflow));
    let no_run = run(url, &["acquire", "--tenant", "acme", "--tool", "tools.llm"]);
    assert_eq!(no_run.status.code(), Some(2), "{}", stderr(&no_run));
    let decision = json(&no_run);
    assert_eq!(decision["reason"]["kind"], "missing_identity");
    let message = decision["reason"]["message"].as_str().unwrap();
    assert!(message.contains("--workflow"), "{decision}");
    let with_run = run(
        url,
        &[
            "acquire",
            "--tenant",
            "acme",
            "--tool",
            "tools.llm",
            "--workflow",
            "run-42",
        ],
    );
    assert_eq!(with_run.status.code(), Some(0), "{}", stderr(&with_run));
    assert_eq!(json(&with_run)["admitted"], true);
    let run_usage = run(
        url,
        &[
            "usage",
            "--tenant",
            "acme",
            "--tool",
            "tools.llm",
            "--workflow",
            "run-42",
        ],
    );
    let counts = json(&run_usage)["counts"].clone();
    assert_eq!(counts[0]["scope_key"], "workflow:acme:run-42", "{counts}");
    assert_eq!(counts[0]["used"], 1, "{counts}");

    let both = run(
        url,
        &[
            "limits",
            "set",
            "--tenant",
            "acme",
            "--tool",
            "tools.http",
            "--per-minute",
            "2",
            "--schedule",
            "x.tjp",
        ],
    );
    assert_ne!(both.status.code(), Some(0));
    assert!(
        stderr(&both).contains("cannot be used with"),
        "{}",
        stderr(&both)
    );

    let missing = run(
        url,
        &[
            "limits",
            "set",
            "--tenant",
            "acme",
            "--tool",
            "tools.http",
            "--schedule",
            "/nonexistent/mail.tjp",
        ],
    );
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("cannot read the schedule /nonexistent/mail.tjp"),
        "{}",
        stderr(&missing)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn schedule_errors_name_the_file() {
    let database = TestDatabase::new().await;
    let url = Some(database.url());
    assert_eq!(run(url, &["migrate"]).status.code(), Some(0));

    let mut file = tempfile::Builder::new().suffix(".tjp").tempfile().unwrap();
    write!(
        file,
        "project mail \"Mail\" 2026-01-01 +1y {{\n  timezone \"Europe/Berlin\"\n}}\n\nresource smtp \"SMTP\" {{\n  workinghours mon - fri 09:00 - 17:00\n  workinghours sat, sun offf\n}}\n"
    )
    .unwrap();
    let path = file.path().to_str().unwrap().to_owned();

    let set = run(
        url,
        &[
            "limits",
            "set",
            "--tenant",
            "acme",
            "--tool",
            "tools.email.send",
            "--schedule",
            &path,
        ],
    );
    assert_eq!(set.status.code(), Some(1));
    assert!(
        stderr(&set).contains(&format!("{path}:7:")),
        "{}",
        stderr(&set)
    );
    let list = run(url, &["limits", "list"]);
    assert_eq!(json(&list), Value::Array(Vec::new()));
}

/// Returns the first date after today, Berlin time, that is a Monday to Thursday. It and the
/// next day are working days, and both lie within a week from now.
fn next_working_date() -> chrono::NaiveDate {
    use chrono::{Datelike, Weekday};
    let mut date = Utc::now()
        .with_timezone(&chrono_tz::Europe::Berlin)
        .date_naive()
        + chrono::Duration::days(1);
    while matches!(date.weekday(), Weekday::Fri | Weekday::Sat | Weekday::Sun) {
        date += chrono::Duration::days(1);
    }
    date
}

fn berlin(date: chrono::NaiveDate, hour: u32) -> chrono::DateTime<Utc> {
    use chrono::TimeZone;
    let local = date.and_hms_opt(hour, 0, 0).unwrap();
    chrono_tz::Europe::Berlin
        .from_local_datetime(&local)
        .single()
        .unwrap()
        .with_timezone(&Utc)
}

#[tokio::test(flavor = "multi_thread")]
async fn schedule_decides_when_calls_go() {
    let database = TestDatabase::new().await;
    let url = Some(database.url());
    assert_eq!(run(url, &["migrate"]).status.code(), Some(0));

    let start = (Utc::now() - chrono::Duration::days(2)).format("%Y-%m-%d");
    let end = (Utc::now() + chrono::Duration::days(90)).format("%Y-%m-%d");
    let mut file = tempfile::Builder::new().suffix(".tjp").tempfile().unwrap();
    write!(
        file,
        "project mail \"Mail\" {start} - {end} {{\n  timezone \"Europe/Berlin\"\n}}\n\n\
         resource smtp \"SMTP relay\" {{\n  workinghours mon - fri 09:00 - 17:00\n  workinghours sat, sun off\n  \
         limits {{ dailymax 2 }}\n}}\n\nresource fax \"Fax\" {{\n  limits {{ dailymax 1 }}\n}}\n"
    )
    .unwrap();
    let path = file.path().to_str().unwrap().to_owned();

    let ambiguous = run(
        url,
        &[
            "limits",
            "set",
            "--tenant",
            "acme",
            "--tool",
            "tools.email.send",
            "--schedule",
            &path,
        ],
    );
    assert_eq!(ambiguous.status.code(), Some(1));
    assert!(
        stderr(&ambiguous).contains("choose one"),
        "{}",
        stderr(&ambiguous)
    );

    let set = run(
        url,
        &[
            "limits",
            "set",
            "--tenant",
            "acme",
            "--tool",
            "tools.email.send",
            "--schedule",
            &path,
            "--resource",
            "smtp",
        ],
    );
    assert_eq!(set.status.code(), Some(0), "{}", stderr(&set));
    let stored = json(&set);
    assert_eq!(stored["timezone"], "Europe/Berlin");
    assert_eq!(stored["schedule"]["resource"], "smtp");
    assert!(stored["schedule"]["valid_until"].is_string(), "{stored}");

    let acquire = |at: chrono::DateTime<Utc>| {
        let at = at.to_rfc3339();
        run(
            url,
            &[
                "acquire",
                "--tenant",
                "acme",
                "--tool",
                "tools.email.send",
                "--at",
                &at,
            ],
        )
    };
    let day = next_working_date();
    let evening = acquire(berlin(day, 20));
    assert_eq!(evening.status.code(), Some(2), "{}", stderr(&evening));
    let decision = json(&evening);
    assert_eq!(decision["reason"]["kind"], "outside_hours");
    let next_morning = berlin(day.succ_opt().unwrap(), 9);
    assert_eq!(
        decision["retry_at"],
        serde_json::to_value(next_morning).unwrap(),
        "{decision}"
    );

    let morning = berlin(day, 10);
    for _ in 0..2 {
        let admitted = acquire(morning);
        assert_eq!(admitted.status.code(), Some(0), "{}", stderr(&admitted));
        assert_eq!(json(&admitted)["admitted"], true);
    }
    let full = acquire(morning);
    assert_eq!(full.status.code(), Some(2));
    let decision = json(&full);
    assert_eq!(decision["reason"]["kind"], "quota_exhausted");
    assert_eq!(decision["reason"]["window"], "day");
}

#[tokio::test(flavor = "multi_thread")]
async fn closed_stdout_is_no_crash() {
    let database = TestDatabase::new().await;
    assert!(run(Some(database.url()), &["migrate"]).status.success());

    // The reader closes the pipe before the command prints, as `| head -0` does.
    let mut child = Command::new(env!("CARGO_BIN_EXE_highway-ratelimit"))
        .args(["limits", "list"])
        .env("DATABASE_URL", database.url())
        .env("RUST_LOG", "off")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("the binary ends");

    assert!(output.status.success(), "{}", stderr(&output));
    assert!(!stderr(&output).contains("panicked"), "{}", stderr(&output));
}

#[tokio::test(flavor = "multi_thread")]
async fn option_errors_show_expected_form() {
    let database = TestDatabase::new().await;
    let url = Some(database.url());

    let tables = run(url, &["limits", "list"]);
    assert_eq!(tables.status.code(), Some(1));
    assert!(
        stderr(&tables).contains("highway-ratelimit migrate"),
        "{}",
        stderr(&tables)
    );

    let set = |option: &str, value: &str| {
        run(
            url,
            &[
                "limits",
                "set",
                "--tenant",
                "acme",
                "--tool",
                "tools.http",
                "--per-minute",
                "2",
                option,
                value,
            ],
        )
    };
    let day = set("--week-start", "funday");
    assert_ne!(day.status.code(), Some(0));
    assert!(
        stderr(&day).contains("expected a weekday such as monday"),
        "{}",
        stderr(&day)
    );
    let zone = set("--timezone", "Mars/Base");
    assert_ne!(zone.status.code(), Some(0));
    assert!(
        stderr(&zone).contains("expected an IANA name such as Europe/Berlin"),
        "{}",
        stderr(&zone)
    );
    let abbreviation = set("--timezone", "EST");
    assert_ne!(abbreviation.status.code(), Some(0));
    assert!(
        stderr(&abbreviation).contains("time zone \"EST\" is not a Region/City name"),
        "{}",
        stderr(&abbreviation)
    );

    let instant = run(
        url,
        &[
            "acquire",
            "--tenant",
            "acme",
            "--tool",
            "tools.http",
            "--at",
            "2026-03-02",
        ],
    );
    assert_ne!(instant.status.code(), Some(0));
    assert!(
        stderr(&instant).contains("such as 2026-03-02T10:00:00Z"),
        "{}",
        stderr(&instant)
    );
}

/// A negative or fractional count is named as an invalid value of its option, not taken for an
/// unknown option, and the command exits with 1 before it reads the database.
#[test]
fn negative_counts_name_the_option() {
    let cases: [(&[&str], &str); 4] = [
        (
            &["limits", "set", "--per-day", "-1"],
            "invalid value '-1' for '--per-day <N>'",
        ),
        (
            &["limits", "set", "--per-minute", "2.5"],
            "invalid value '2.5' for '--per-minute <N>'",
        ),
        (
            &["limits", "set", "--per-hour", "-5"],
            "expected a whole number of calls from 0 to 2147483647",
        ),
        (
            &["acquire", "--cost", "-3"],
            "invalid cost \"-3\": expected a whole number of 1 or more",
        ),
    ];
    for (options, expected) in cases {
        let mut args = options.to_vec();
        args.extend(["--tenant", "acme", "--tool", "tools.http"]);
        let output = run(Some("postgres://nobody@127.0.0.1:1/none"), &args);

        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
        assert!(
            stderr(&output).contains(expected),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

/// `--at` accepts the instants whose windows RFC 3339 can write: a day window of 9999-12-31 ends
/// in the year 10000. An instant outside is an error that charges nothing, and `usage` then
/// prints only RFC 3339 instants.
#[tokio::test(flavor = "multi_thread")]
async fn acquire_at_outside_rfc3339_years() {
    let database = TestDatabase::new().await;
    let url = Some(database.url());
    assert_eq!(run(url, &["migrate"]).status.code(), Some(0));
    let set = run(
        url,
        &[
            "limits",
            "set",
            "--tenant",
            "default",
            "--tool",
            "tools.http",
            "--per-day",
            "5",
        ],
    );
    assert_eq!(set.status.code(), Some(0), "{}", stderr(&set));
    let acquire = |at: &str| {
        run(
            url,
            &[
                "acquire",
                "--tenant",
                "acme",
                "--tool",
                "tools.http",
                "--at",
                at,
            ],
        )
    };

    for at in [
        "9999-12-31T23:59:59Z",
        "9999-01-01T00:00:00Z",
        "9998-12-31T23:59:59-14:00",
        "0000-12-31T23:59:59Z",
        "0001-01-01T00:00:00+01:00",
    ] {
        let rejected = acquire(at);

        assert_eq!(
            rejected.status.code(),
            Some(1),
            "{at}: {}",
            stderr(&rejected)
        );
        assert!(rejected.stdout.is_empty(), "{at}");
        let message = stderr(&rejected);
        assert!(
            message.contains(&format!("invalid instant \"{at}\"")),
            "{message}"
        );
        assert!(
            message.contains("0001-01-01T00:00:00Z to 9998-12-31T23:59:59Z"),
            "{message}"
        );
    }
    let usage = run(url, &["usage", "--tenant", "acme", "--tool", "tools.http"]);
    assert_eq!(usage.status.code(), Some(0), "{}", stderr(&usage));
    assert_eq!(json(&usage), empty_page());

    for at in ["9998-12-31T23:59:59Z", "0001-01-01T00:00:00Z"] {
        let admitted = acquire(at);
        assert_eq!(
            admitted.status.code(),
            Some(0),
            "{at}: {}",
            stderr(&admitted)
        );
    }
    let usage = run(url, &["usage", "--tenant", "acme", "--tool", "tools.http"]);
    assert_eq!(usage.status.code(), Some(0), "{}", stderr(&usage));
    let windows = json(&usage)["counts"].clone();
    let windows = windows.as_array().expect("usage prints a list");
    assert_eq!(windows.len(), 1, "{windows:?}");
    assert_eq!(windows[0]["window_start"], "9998-12-31T00:00:00Z");
    assert_eq!(windows[0]["window_end"], "9999-01-01T00:00:00Z");
}

#[tokio::test(flavor = "multi_thread")]
async fn schedule_warnings_print_once() {
    let database = TestDatabase::new().await;
    let url = Some(database.url());
    assert_eq!(run(url, &["migrate"]).status.code(), Some(0));

    let set = set_schedule_file(url, "tests/schedules/email_limits.tjp", &[]);

    assert_eq!(set.status.code(), Some(0), "{}", stderr(&set));
    let warnings = stderr(&set);
    assert_eq!(
        warnings.matches("vacation \"New Year\"").count(),
        1,
        "{warnings}"
    );
    assert!(
        warnings.contains("tests/schedules/email_limits.tjp:23:1: warning"),
        "{warnings}"
    );
}

#[test]
fn unreachable_database_is_an_error() {
    let output = run(
        Some("postgres://nobody@127.0.0.1:1/none"),
        &["acquire", "--tenant", "acme", "--tool", "tools.http"],
    );

    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let decision = json(&output);
    assert_eq!(decision["reason"]["kind"], "policy_unavailable");
    assert!(
        stderr(&output).contains("Connection refused"),
        "{}",
        stderr(&output)
    );
    assert!(
        stderr(&output).contains("--database-url"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn schedule_with_two_resources_asks_for_one() {
    let database = TestDatabase::new().await;
    let url = Some(database.url());
    assert_eq!(run(url, &["migrate"]).status.code(), Some(0));
    let set = set_schedule(
        url,
        "project two \"Two\" 2026-01-01 - 2027-01-01 {\n  timezone \"UTC\"\n}\n\
         resource mail \"Mail\" {\n  workinghours mon - fri 09:00 - 17:00\n}\n\
         resource sms \"SMS\" {\n  workinghours mon - fri 09:00 - 17:00\n}\n",
        &[],
    );

    assert_eq!(set.status.code(), Some(1), "{}", stderr(&set));
    assert!(stderr(&set).contains("--resource ID"), "{}", stderr(&set));
}

/// A schedule whose project starts after the report's horizon allows no call in it, and the
/// rejection points at the start date as well as the end date.
#[tokio::test(flavor = "multi_thread")]
async fn project_not_started_names_start() {
    let database = TestDatabase::new().await;
    let url = Some(database.url());
    assert_eq!(run(url, &["migrate"]).status.code(), Some(0));
    let set = set_schedule(
        url,
        "project later \"Later\" 9000-01-01 +1y\nresource mail \"Mail\"\n",
        &[],
    );
    assert_eq!(set.status.code(), Some(0), "{}", stderr(&set));

    let acquire = run(
        url,
        &["acquire", "--tenant", "acme", "--tool", "tools.mail"],
    );
    assert_eq!(acquire.status.code(), Some(2), "{}", stderr(&acquire));
    let decision = json(&acquire);
    assert_eq!(decision["reason"]["kind"], "outside_hours");
    let message = decision["reason"]["message"].as_str().expect("a message");
    assert!(message.contains("start and end dates"), "{message}");
}

/// A limited tenant that has made no call yet gets an empty list and a note that explains why,
/// so that `[]` does not read as a missing limit.
#[tokio::test(flavor = "multi_thread")]
async fn usage_before_first_call_notes_it() {
    let database = TestDatabase::new().await;
    let url = Some(database.url());
    assert_eq!(run(url, &["migrate"]).status.code(), Some(0));
    let set = run(
        url,
        &[
            "limits",
            "set",
            "--tenant",
            "default",
            "--tool",
            "tools.http",
            "--per-day",
            "5",
        ],
    );
    assert_eq!(set.status.code(), Some(0), "{}", stderr(&set));

    let usage = run(url, &["usage", "--tenant", "acme", "--tool", "tools.http"]);

    assert_eq!(usage.status.code(), Some(0), "{}", stderr(&usage));
    assert_eq!(json(&usage)["counts"], serde_json::json!([]));
    let note = stderr(&usage);
    assert!(note.contains("no call of tenant \"acme\""), "{note}");
    assert!(note.contains("tenant \"default\""), "{note}");
}

/// The report's warnings read as warnings, as those of the schedule and of `report` do.
#[tokio::test(flavor = "multi_thread")]
async fn report_warnings_say_warning() {
    let database = TestDatabase::new().await;
    let url = Some(database.url());
    assert_eq!(run(url, &["migrate"]).status.code(), Some(0));

    let set = set_schedule(
        url,
        "project later \"Later\" 9000-01-01 +1y\nresource mail \"Mail\"\n",
        &[],
    );

    assert_eq!(set.status.code(), Some(0), "{}", stderr(&set));
    let warnings = stderr(&set);
    assert!(
        warnings
            .lines()
            .any(|line| line.starts_with("warning: the horizon lies outside")),
        "{warnings}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_of_run_notes_tenant_scope() {
    let database = TestDatabase::new().await;
    let url = Some(database.url());
    assert_eq!(run(url, &["migrate"]).status.code(), Some(0));
    let set = run(
        url,
        &[
            "limits",
            "set",
            "--tenant",
            "acme",
            "--tool",
            "tools.http",
            "--per-minute",
            "5",
        ],
    );
    assert_eq!(set.status.code(), Some(0), "{}", stderr(&set));

    let usage = run(
        url,
        &[
            "usage",
            "--tenant",
            "acme",
            "--tool",
            "tools.http",
            "--workflow",
            "run-1",
        ],
    );

    assert_eq!(usage.status.code(), Some(0), "{}", stderr(&usage));
    assert_eq!(json(&usage), empty_page());
    assert!(
        stderr(&usage).contains("counts per tenant, not per workflow run"),
        "{}",
        stderr(&usage)
    );
}

/// Every database command names the server it could not reach, so that a wrong host or port
/// in `DATABASE_URL` shows in the message.
#[test]
fn unreachable_database_is_named() {
    let commands: [&[&str]; 4] = [
        &["migrate"],
        &["limits", "list"],
        &["usage", "--tenant", "acme", "--tool", "tools.http"],
        &["acquire", "--tenant", "acme", "--tool", "tools.http"],
    ];
    for args in commands {
        let output = run(Some("postgres://nobody:secret@127.0.0.1:1/none"), args);

        assert_eq!(
            output.status.code(),
            Some(1),
            "{args:?}: {}",
            stderr(&output)
        );
        let message = stderr(&output);
        assert!(message.contains("127.0.0.1:1"), "{args:?}: {message}");
        assert!(message.contains("DATABASE_URL"), "{args:?}: {message}");
        assert!(!message.contains("secret"), "{args:?}: {message}");
    }
}

/// A database without the tables gets the advice to migrate it, from `acquire` as from the
/// other commands, and not the advice to check the connection.
#[tokio::test(flavor = "multi_thread")]
async fn unmigrated_database_says_migrate() {
    let database = TestDatabase::new().await;
    let url = Some(database.url());

    let commands: [&[&str]; 4] = [
        &["limits", "list"],
        &["limits", "get", "--tenant", "acme", "--tool", "tools.http"],
        &["usage", "--tenant", "acme", "--tool", "tools.http"],
        &["acquire", "--tenant", "acme", "--tool", "tools.http"],
    ];
    for args in commands {
        let output = run(url, args);

        assert_eq!(
            output.status.code(),
            Some(1),
            "{args:?}: {}",
            stderr(&output)
        );
        let message = stderr(&output);
        assert!(
            message.contains("create the tables with `highway-ratelimit migrate`"),
            "{args:?}: {message}"
        );
        assert!(
            !message.contains("PostgreSQL is running at"),
            "{args:?}: {message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_resource_lists_resources() {
    let database = TestDatabase::new().await;
    let url = Some(database.url());
    assert_eq!(run(url, &["migrate"]).status.code(), Some(0));
    let set = set_schedule(
        url,
        "project mail \"Mail\" 2026-01-01 - 2027-01-01 {\n  timezone \"UTC\"\n}\n\
         resource smtp \"SMTP\" {\n  workinghours mon - fri 09:00 - 17:00\n}\n",
        &["--resource", "smpt"],
    );

    assert_eq!(set.status.code(), Some(1), "{}", stderr(&set));
    let message = stderr(&set);
    assert!(
        message.contains("unknown resource \"smpt\": the schedule has smtp"),
        "{message}"
    );
    assert!(
        message.contains("pass one of them to --resource"),
        "{message}"
    );
}

/// `limits set` replaces the whole limit, so one written without any limit, such as to switch on
/// `--fail-open`, gets a note that it admits every call.
#[tokio::test(flavor = "multi_thread")]
async fn set_without_limits_notes_it() {
    let database = TestDatabase::new().await;
    let url = Some(database.url());
    assert_eq!(run(url, &["migrate"]).status.code(), Some(0));
    let key = ["--tenant", "acme", "--tool", "tools.http"];

    let limited = run(
        url,
        &[&["limits", "set"][..], &key, &["--per-day", "5"]].concat(),
    );
    assert_eq!(limited.status.code(), Some(0), "{}", stderr(&limited));
    assert!(!stderr(&limited).contains("note:"), "{}", stderr(&limited));

    let unlimited = run(
        url,
        &[&["limits", "set"][..], &key, &["--fail-open"]].concat(),
    );
    assert_eq!(unlimited.status.code(), Some(0), "{}", stderr(&unlimited));
    let message = stderr(&unlimited);
    assert!(
        message.contains("note: the limit of tenant \"acme\" for tool \"tools.http\" has no"),
        "{message}"
    );
    assert!(message.contains("admits every call"), "{message}");

    let call = run(url, &[&["acquire"][..], &key].concat());
    assert_eq!(call.status.code(), Some(0), "{}", stderr(&call));
    let usage = run(url, &[&["usage"][..], &key].concat());
    assert_eq!(json(&usage), empty_page());
    let message = stderr(&usage);
    assert!(
        message.contains("has no per-minute, per-hour or per-day limit and no schedule"),
        "{message}"
    );
}

/// A zone name in the wrong case gets its spelling, as in a schedule's `timezone`.
#[test]
fn timezone_case_gets_spelling() {
    let output = run(
        Some("postgres://nobody@127.0.0.1:1/none"),
        &[
            "limits",
            "set",
            "--tenant",
            "acme",
            "--tool",
            "tools.http",
            "--per-minute",
            "2",
            "--timezone",
            "europe/berlin",
        ],
    );

    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(
        message.contains("zone names are case-sensitive; write Europe/Berlin"),
        "{message}"
    );
}

/// Without a database, the usage error names the environment variable as well as the option.
#[test]
fn missing_database_names_variable() {
    for args in [&["limits", "list"][..], &["migrate"][..]] {
        let output = run(None, args);

        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let message = stderr(&output);
        assert!(message.contains("--database-url"), "{args:?}: {message}");
        assert!(
            message.contains("Set the DATABASE_URL environment variable"),
            "{args:?}: {message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_of_disabled_limit_notes_it() {
    let database = TestDatabase::new().await;
    let url = Some(database.url());
    assert_eq!(run(url, &["migrate"]).status.code(), Some(0));
    let set = run(
        url,
        &[
            "limits",
            "set",
            "--tenant",
            "default",
            "--tool",
            "tools.http",
            "--per-minute",
            "3",
            "--disabled",
        ],
    );
    assert_eq!(set.status.code(), Some(0), "{}", stderr(&set));
    let call = run(
        url,
        &["acquire", "--tenant", "acme", "--tool", "tools.http"],
    );
    assert_eq!(call.status.code(), Some(0), "{}", stderr(&call));

    let usage = run(url, &["usage", "--tenant", "acme", "--tool", "tools.http"]);

    assert_eq!(usage.status.code(), Some(0), "{}", stderr(&usage));
    assert_eq!(json(&usage), empty_page());
    let message = stderr(&usage);
    assert!(
        message
            .contains("note: the limit of tenant \"default\" for tool \"tools.http\" is disabled"),
        "{message}"
    );
}

/// `migrate --lock-timeout-ms` sets how long each migration waits for a lock: a migration that
/// cannot lock the usage table behind an open transaction fails and names what to do, and a
/// timeout PostgreSQL cannot take is rejected before anything runs.
#[tokio::test(flavor = "multi_thread")]
async fn migrate_lock_timeout_backs_off() {
    let database = TestDatabase::new().await;
    let url = Some(database.url());
    let client = database.migrate_to(9).await;
    client
        .batch_execute("BEGIN; LOCK TABLE highway.tool_rate_limit_usage IN ACCESS SHARE MODE;")
        .await
        .unwrap();

    let output = run_with_log(url, &["migrate", "--lock-timeout-ms", "10"], None);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(
        message.contains("migration 0010_usage_write_cost.sql failed"),
        "{message}"
    );
    assert!(message.contains("pg_stat_activity"), "{message}");
    assert!(message.contains("--lock-timeout-ms"), "{message}");
    let retries = message
        .lines()
        .filter(|line| line.contains("trying again after a pause"))
        .count();
    assert_eq!(retries, 9, "each attempt but the last warns: {message}");

    client.batch_execute("COMMIT").await.unwrap();
    let output = run(url, &["migrate"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("applied migrations 10, 11"),
        "{}",
        stderr(&output)
    );

    let output = run(url, &["migrate", "--lock-timeout-ms", "99999999999"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(
        message.contains("invalid value '99999999999' for '--lock-timeout-ms"),
        "{message}"
    );
}

/// A `--lock-timeout-ms` that PostgreSQL cannot take is rejected as a usage error that names the
/// option and its range, before the command connects.
#[test]
fn migrate_rejects_lock_timeout_over_max() {
    let output = run(
        Some("postgres://postgres@127.0.0.1:1/none"),
        &["migrate", "--lock-timeout-ms", "2147483648"],
    );

    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(message.contains("--lock-timeout-ms"), "{message}");
    assert!(message.contains("2147483647"), "{message}");
    assert!(!message.contains("--database-url"), "{message}");
}

/// An admitted call prints the windows it was charged to, with what remains after it, as a
/// rejected call does, so that a script can pace itself. A dry run charges nothing, so it prints
/// what remains before the call.
#[tokio::test(flavor = "multi_thread")]
async fn admitted_acquire_prints_windows() {
    let database = TestDatabase::new().await;
    let url = Some(database.url());
    assert_eq!(run(url, &["migrate"]).status.code(), Some(0));
    let key = ["--tenant", "acme", "--tool", "tools.http"];
    let set = run(
        url,
        &[
            &["limits", "set"][..],
            &key,
            &["--per-minute", "3", "--per-day", "10"],
        ]
        .concat(),
    );
    assert_eq!(set.status.code(), Some(0), "{}", stderr(&set));
    let at = Utc::now().to_rfc3339();
    let at = ["--at", at.as_str()];

    let admitted = run(url, &[&["acquire"][..], &key, &at].concat());
    assert_eq!(admitted.status.code(), Some(0), "{}", stderr(&admitted));
    let decision = json(&admitted);
    assert_eq!(decision["admitted"], true);
    assert_eq!(decision["windows"][0]["window"], "minute", "{decision}");
    assert_eq!(decision["windows"][0]["limit"], 3);
    assert_eq!(decision["windows"][0]["remaining"], 2);
    assert!(decision["windows"][0]["reset_at"].is_string(), "{decision}");
    assert_eq!(decision["windows"][1]["window"], "day");
    assert_eq!(decision["windows"][1]["remaining"], 9);

    let peek = run(url, &[&["acquire"][..], &key, &at, &["--dry-run"]].concat());
    assert_eq!(peek.status.code(), Some(0), "{}", stderr(&peek));
    let decision = json(&peek);
    assert_eq!(decision["dry_run"], true);
    assert_eq!(decision["windows"][0]["remaining"], 2, "{decision}");

    let second = run(url, &[&["acquire"][..], &key, &at].concat());
    assert_eq!(json(&second)["windows"][0]["remaining"], 1);
}

/// `cleanup` deletes the rows of windows that ended before the retention and keeps those of
/// open windows.
#[tokio::test(flavor = "multi_thread")]
async fn cleanup_deletes_ended_windows() {
    let database = TestDatabase::new().await;
    let url = Some(database.url());

    let migrated = run(url, &["migrate"]);
    assert_eq!(migrated.status.code(), Some(0), "{}", stderr(&migrated));
    let set = run(
        url,
        &[
            "limits",
            "set",
            "--tenant",
            "default",
            "--tool",
            "tools.http",
            "--per-minute",
            "5",
            "--per-day",
            "50",
        ],
    );
    assert_eq!(set.status.code(), Some(0), "{}", stderr(&set));

    // One call in windows that ended long ago, and one in the current windows.
    let acquire = ["acquire", "--tenant", "acme", "--tool", "tools.http"];
    let past = [&acquire[..], &["--at", "2026-01-05T10:00:00Z"]].concat();
    let old_call = run(url, &past);
    assert_eq!(old_call.status.code(), Some(0), "{}", stderr(&old_call));
    let current_call = run(url, &acquire);
    assert_eq!(
        current_call.status.code(),
        Some(0),
        "{}",
        stderr(&current_call)
    );

    let cleanup = run(url, &["cleanup"]);
    assert_eq!(cleanup.status.code(), Some(0), "{}", stderr(&cleanup));
    assert_eq!(
        json(&cleanup)["deleted"],
        2,
        "the minute and day rows of 2026-01-05"
    );

    let usage = run(url, &["usage", "--tenant", "acme", "--tool", "tools.http"]);
    assert_eq!(usage.status.code(), Some(0), "{}", stderr(&usage));
    let windows = json(&usage)["counts"].clone();
    let windows = windows.as_array().expect("an array of windows");
    // The minute row may end between the call and `usage`, so only the day row is certain.
    let day = windows
        .iter()
        .find(|window| window["window"] == "day")
        .unwrap_or_else(|| panic!("the open day row stays: {windows:?}"));
    assert_eq!(day["used"], 1, "{day}");

    let negative = run(url, &["cleanup", "--retention-hours", "-1"]);
    assert_eq!(negative.status.code(), Some(1), "{}", stderr(&negative));
    assert!(
        stderr(&negative).contains("invalid retention \"-1\""),
        "{}",
        stderr(&negative)
    );
}

/// `usage --workflow` for a limit counted per tenant prints the tenant's counters and notes that
/// every run shares them, rather than passing them off as the run's own.
#[tokio::test(flavor = "multi_thread")]
async fn usage_workflow_notes_shared_counters() {
    let database = TestDatabase::new().await;
    let url = Some(database.url());

    let migrated = run(url, &["migrate"]);
    assert_eq!(migrated.status.code(), Some(0), "{}", stderr(&migrated));
    let set = run(
        url,
        &[
            "limits",
            "set",
            "--tenant",
            "acme",
            "--tool",
            "tools.http",
            "--per-day",
            "50",
        ],
    );
    assert_eq!(set.status.code(), Some(0), "{}", stderr(&set));
    let acquire = ["acquire", "--tenant", "acme", "--tool", "tools.http"];
    let admitted = run(url, &[&acquire[..], &["--workflow", "run-1"]].concat());
    assert_eq!(admitted.status.code(), Some(0), "{}", stderr(&admitted));

    let usage = run(
        url,
        &[
            "usage",
            "--tenant",
            "acme",
            "--tool",
            "tools.http",
            "--workflow",
            "run-2",
        ],
    );
    assert_eq!(usage.status.code(), Some(0), "{}", stderr(&usage));
    assert_eq!(json(&usage)["counts"][0]["scope_key"], "tenant:acme");
    assert!(
        stderr(&usage).contains("shared by every run"),
        "{}",
        stderr(&usage)
    );

    let without = run(url, &["usage", "--tenant", "acme", "--tool", "tools.http"]);
    assert_eq!(without.status.code(), Some(0), "{}", stderr(&without));
    assert!(!stderr(&without).contains("note:"), "{}", stderr(&without));
}

/// `usage --page-size N` prints N counters and the cursor of the next page, `--after` continues
/// from it, and `--all` prints every counter with `next` null.
#[tokio::test(flavor = "multi_thread")]
async fn usage_pages_and_all() {
    let database = TestDatabase::new().await;
    let url = Some(database.url());
    assert_eq!(run(url, &["migrate"]).status.code(), Some(0));
    let set = run(
        url,
        &[
            "limits",
            "set",
            "--tenant",
            "acme",
            "--tool",
            "tools.http",
            "--scope",
            "workflow",
            "--per-day",
            "100",
        ],
    );
    assert_eq!(set.status.code(), Some(0), "{}", stderr(&set));
    let at = (Utc::now() + chrono::Duration::days(1)).format("%Y-%m-%dT12:00:00Z");
    let at = at.to_string();
    for run_id in ["run-1", "run-2", "run-3", "run-4", "run-5"] {
        let call = run(
            url,
            &[
                "acquire",
                "--tenant",
                "acme",
                "--tool",
                "tools.http",
                "--workflow",
                run_id,
                "--at",
                &at,
            ],
        );
        assert_eq!(call.status.code(), Some(0), "{}", stderr(&call));
    }
    let usage = ["usage", "--tenant", "acme", "--tool", "tools.http"];

    let mut keys = Vec::new();
    let mut after: Option<String> = None;
    for expected in [2, 2, 1] {
        let mut args = [&usage[..], &["--page-size", "2"]].concat();
        if let Some(cursor) = &after {
            args.extend(["--after", cursor.as_str()]);
        }
        let page = run(url, &args);
        assert_eq!(page.status.code(), Some(0), "{}", stderr(&page));
        let printed = json(&page);
        let counts = printed["counts"].as_array().expect("a list of counts");
        assert_eq!(counts.len(), expected, "{printed}");
        keys.extend(counts.iter().map(|count| count["scope_key"].clone()));
        after = printed["next"].as_str().map(str::to_owned);
        match &after {
            Some(cursor) => assert!(
                stderr(&page).contains(&format!("--after {cursor}")),
                "{}",
                stderr(&page)
            ),
            None => assert!(!stderr(&page).contains("--after"), "{}", stderr(&page)),
        }
    }
    assert_eq!(after, None, "the third page is the last");
    let expected: Vec<Value> = (1..=5)
        .map(|n| Value::from(format!("workflow:acme:run-{n}")))
        .collect();
    assert_eq!(keys, expected);

    let all = run(url, &[&usage[..], &["--all", "--page-size", "2"]].concat());
    assert_eq!(all.status.code(), Some(0), "{}", stderr(&all));
    let printed = json(&all);
    let every: Vec<Value> = printed["counts"]
        .as_array()
        .expect("a list of counts")
        .iter()
        .map(|count| count["scope_key"].clone())
        .collect();
    assert_eq!(every, expected);
    assert_eq!(printed["next"], Value::Null);
}

/// A page size out of range or a cursor that no page printed is an argument error naming it,
/// with nothing on stdout.
#[tokio::test(flavor = "multi_thread")]
async fn usage_page_arguments_rejected() {
    let database = TestDatabase::new().await;
    let url = Some(database.url());
    assert_eq!(run(url, &["migrate"]).status.code(), Some(0));
    let usage = ["usage", "--tenant", "acme", "--tool", "tools.http"];

    let cases = [
        (&["--page-size", "0"][..], "0 is not in 1..=1000"),
        (&["--page-size", "1001"][..], "1001 is not in 1..=1000"),
        (&["--after", "!!"][..], "invalid cursor \"!!\""),
        (&["--after", "bW9uZGF5"][..], "invalid cursor \"bW9uZGF5\""),
    ];
    for (arguments, expected) in cases {
        let output = run(url, &[&usage[..], arguments].concat());

        assert_eq!(
            output.status.code(),
            Some(1),
            "{arguments:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(expected),
            "{arguments:?}: {}",
            stderr(&output)
        );
        assert!(output.stdout.is_empty(), "{arguments:?}");
    }
}

/// A written schedule's warnings are logged ten at a time at most, with one line that counts the
/// rest, so that a schedule with a warning on every line does not flood a service's log.
#[tokio::test(flavor = "multi_thread")]
async fn write_logs_ten_warnings() {
    let database = TestDatabase::new().await;
    let url = Some(database.url());
    assert_eq!(run(url, &["migrate"]).status.code(), Some(0));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mail.tjp");
    let schedule = format!(
        "project p \"P\" 2026-01-01 +1y\nresource r \"R\" {{\n  limits {{\n{}  }}\n}}\n",
        "    dailymax 8h\n".repeat(500)
    );
    std::fs::write(&path, schedule).unwrap();

    let set = run_with_log(
        url,
        &[
            "limits",
            "set",
            "--tenant",
            "acme",
            "--tool",
            "tools.mail",
            "--schedule",
            path.to_str().unwrap(),
        ],
        Some("warn"),
    );

    assert_eq!(set.status.code(), Some(0), "{}", stderr(&set));
    let logged: Vec<String> = stderr(&set)
        .lines()
        .filter(|line| line.contains(" WARN "))
        .map(str::to_owned)
        .collect();
    assert_eq!(logged.len(), 11, "{logged:#?}");
    assert!(
        logged[10].contains("490 more warnings of the schedule not logged"),
        "{}",
        logged[10]
    );
}
