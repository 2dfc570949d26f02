//! The command line with connection strings and servers it cannot use: each error names the
//! string (without its password) or the server, and what to change.

mod common;

use std::process::{Command, Output};

fn run(database_url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_highway-ratelimit"))
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "off")
        .output()
        .expect("the binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A connection string that is not one, or of another database, is named in the error.
#[test]
fn invalid_connection_string_is_named() {
    for (url, expected) in [
        ("nonsense", "\"nonsense\""),
        (
            "mysql://root:secret@127.0.0.1:3306/test",
            "\"mysql://root:***@127.0.0.1:3306/test\": mysql:// is not a PostgreSQL URL",
        ),
        (
            "postgres://highway:secret@127.0.0.1:1/highway?port=x",
            "\"postgres://highway:***@127.0.0.1:1/highway?port=x\"",
        ),
    ] {
        let output = run(url, &["limits", "list"]);

        assert_eq!(output.status.code(), Some(1), "{url}: {}", stderr(&output));
        let message = stderr(&output);
        assert!(message.contains(expected), "{url}: {message}");
        assert!(
            message.contains("postgres://user@host:port/dbname"),
            "{message}"
        );
        assert!(message.contains("DATABASE_URL"), "{message}");
        assert!(!message.contains("secret"), "{message}");
        assert!(output.stdout.is_empty(), "{url}");
    }
}

/// An empty `DATABASE_URL`, as a shell's `DATABASE_URL= command` sets it, is no connection
/// string: the error asks to set one, and nothing is tried.
#[test]
fn empty_database_url_says_to_set_it() {
    for url in ["", "  "] {
        let output = run(url, &["limits", "list"]);

        assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
        let message = stderr(&output);
        assert!(
            message.contains("the connection string is empty"),
            "{message}"
        );
        assert!(message.contains("set DATABASE_URL"), "{message}");
        assert!(!message.contains("hostaddr"), "{message}");
        assert!(output.stdout.is_empty());
    }
}

/// Without certificate authorities to trust (`--ssl-root-cert`), the store connects without TLS,
/// so a connection string that requires TLS is refused before any connection is tried, with what
/// to do instead.
#[test]
fn required_tls_is_refused_up_front() {
    let output = run(
        "postgres://highway:secret@127.0.0.1:1/highway?sslmode=require",
        &["migrate"],
    );

    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(message.contains("sslmode=require"), "{message}");
    assert!(message.contains("without TLS"), "{message}");
    assert!(message.contains("sslmode=prefer"), "{message}");
    assert!(message.contains("--ssl-root-cert"), "{message}");
    assert!(!message.contains("secret"), "{message}");
    assert!(!message.contains("Connection refused"), "{message}");
}

/// A server that accepts the connection but has no such database, or no such user, gets advice about the
/// database or the login, not about the server.
#[tokio::test(flavor = "multi_thread")]
async fn missing_database_and_user_say_what_to_change() {
    let server = common::server_url().expect("a PostgreSQL server for the tests");

    let missing = common::with_database(server, "highway_no_such_database");
    let output = run(&missing, &["migrate"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(message.contains("highway_no_such_database"), "{message}");
    assert!(
        message.contains("createdb highway_no_such_database"),
        "{message}"
    );

    let stranger = with_user(server, "highway_no_such_user");
    let output = run(&stranger, &["limits", "list"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(message.contains("highway_no_such_user"), "{message}");
    assert!(message.contains("check the user and password"), "{message}");
}

/// Returns `url` with its user replaced by `user` and no password.
fn with_user(url: &str, user: &str) -> String {
    match url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    {
        Some(rest) => {
            let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            format!("postgres://{user}@{host}")
        }
        // A key=value connection string: a later key overrides an earlier one.
        None => format!("{url} user={user} password=''"),
    }
}
