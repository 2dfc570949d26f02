//! The test-database harness itself: the throwaway server and the database per test.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{TestDatabase, ThrowawayServer, with_database};

/// Set in the child process that checks the fallback without `DATABASE_URL`.
const FALLBACK_CHILD: &str = "HIGHWAY_HARNESS_FALLBACK_CHILD";

#[tokio::test]
async fn throwaway_server_serves_and_stops() {
    let server = ThrowawayServer::start().unwrap_or_else(|message| panic!("{message}"));
    let port = server.port();

    {
        let database = TestDatabase::on_server(&server.url()).await;
        let client = database.client().await;
        let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
        assert_eq!(one, 1);
        let store = database.store().await;
        assert_eq!(store.migrate().await.unwrap(), Vec::<i32>::new());
    }
    drop(server);

    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the server stopped"
    );
}

#[tokio::test]
async fn databases_are_separate_and_dropped() {
    let first = TestDatabase::new().await;
    let second = TestDatabase::new().await;
    let name = first.name().to_owned();
    assert_ne!(first.name(), second.name());

    first
        .client()
        .await
        .batch_execute("CREATE TABLE only_here (x INT)")
        .await
        .unwrap();
    let elsewhere = second
        .client()
        .await
        .batch_execute("SELECT * FROM only_here")
        .await;
    assert!(
        elsewhere.is_err(),
        "the second database has no table of the first"
    );

    drop(first);
    let client = second.client().await;
    let left: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&name],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "the dropped test database is gone");
}

#[test]
fn database_name_is_replaced_in_urls() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
        "postgres://postgres@127.0.0.1:5432/t1"
    );
    assert_eq!(
        with_database("postgresql://u:p@host/db?sslmode=disable", "t2"),
        "postgresql://u:p@host/t2?sslmode=disable"
    );
    assert_eq!(
        with_database("postgres://host:5433", "t3"),
        "postgres://host:5433/t3"
    );
    assert_eq!(
        with_database("host=/tmp user=postgres", "t4"),
        "host=/tmp user=postgres dbname=t4"
    );
}

/// Runs the fallback check in a child process without `DATABASE_URL`, then checks that the child's
/// throwaway server stopped when the child exited.
#[test]
fn fallback_starts_a_server_without_database_url() {
    let executable = std::env::current_exe().expect("the test binary knows its path");

    let output = Command::new(executable)
        .args(["fallback_child", "--exact", "--ignored", "--nocapture"])
        .env_remove("DATABASE_URL")
        .env(FALLBACK_CHILD, "1")
        .output()
        .expect("the test binary starts again");

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "fallback child failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let port: u16 = stdout
        .lines()
        .find_map(|line| line.split("port=").nth(1))
        .and_then(|port| port.trim().parse().ok())
        .unwrap_or_else(|| panic!("the child printed no port: {stdout}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "the throwaway server on port {port} outlived its process"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test]
#[ignore = "runs in the child process of fallback_starts_a_server_without_database_url"]
async fn fallback_child() {
    if std::env::var_os(FALLBACK_CHILD).is_none() {
        eprintln!(
            "{FALLBACK_CHILD} is unset: this test only runs as a child of fallback_starts_a_server_without_database_url"
        );
        return;
    }
    assert!(std::env::var_os("DATABASE_URL").is_none());

    let database = TestDatabase::new().await;
    let client = database.client().await;
    let port: i32 = client
        .query_one("SELECT current_setting('port')::int", &[])
        .await
        .unwrap()
        .get(0);
    let data_directory: String = client
        .query_one("SELECT current_setting('data_directory')", &[])
        .await
        .unwrap()
        .get(0);

    assert!(
        data_directory.contains("highway-pg-"),
        "a throwaway server serves: {data_directory}"
    );
    println!("\nport={port}");
}
