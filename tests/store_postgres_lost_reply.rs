//! A batch whose connection breaks after the database committed it.
//!
//! A batch that fails with an error from the server charged nothing, and its calls can be sent
//! again one by one. A connection that breaks between the commit and the reply (a network fault, a
//! restarted proxy or pooler) leaves that unknown. Each test puts a TCP proxy of its own between the
//! store and PostgreSQL on 127.0.0.1. The proxy forwards everything, except that it drops the
//! connection that carries the first statement with a given text once the server has replied to it
//! with ReadyForQuery, which PostgreSQL sends only after the commit.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc, Weekday};
use chrono_tz::Tz;
use highway_ratelimit::report::Capacity;
use highway_ratelimit::store::postgres::PostgresStore;
use highway_ratelimit::store::{ConsumeRequest, Decision, ScopeKey, StoreError, TokenStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use common::{TestDatabase, with_database};

/// Text of the fast batch statement (`FAST_CONSUME_BATCH` in `src/store/postgres/fast.rs`) that
/// appears in its Parse message.
const BATCH_MARKER: &[u8] = b"WITH r AS MATERIALIZED";
/// Text that appears in the Parse message of the single-call statement for two windows or more
/// (`fast_consume_statement` in `src/store/postgres/fast.rs`), which also charges a batch of calls
/// of one key, and not in the statement for one window.
const TWO_WINDOWS_MARKER: &[u8] = b"($5::text[])[2]";
/// A ReadyForQuery message in the idle state: 'Z', length 5, 'I'.
const READY_IDLE: &[u8] = &[b'Z', 0, 0, 0, 5, b'I'];

fn key(scope: &str) -> ScopeKey {
    ScopeKey {
        tenant: "acme".to_owned(),
        tool: "tools.email.send".to_owned(),
        scope: scope.to_owned(),
    }
}

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("test instants are RFC 3339")
        .with_timezone(&Utc)
}

/// Starts a proxy from a free port on 127.0.0.1 to `upstream`, and returns its port.
///
/// The first connection whose client sends a statement containing `marker` is cut once the
/// server replies to the execution that follows: the reply is withheld and both sockets are
/// closed.
async fn start_proxy(upstream: String, marker: &'static [u8]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let fired = Arc::new(AtomicBool::new(false));
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let Ok(server) = TcpStream::connect(&upstream).await else {
                return;
            };
            tokio::spawn(relay(client, server, marker, fired.clone()));
        }
    });
    port
}

/// The stage of a connection that the proxy is to cut.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stage {
    Normal,
    /// The client sent the Parse message of the marked statement.
    Parsed,
    /// The client sent the execution that follows it.
    Executed,
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    marker: &'static [u8],
    fired: Arc<AtomicBool>,
) {
    let (mut client_read, client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let client_write = Arc::new(Mutex::new(Some(client_write)));
    let stage = Arc::new(std::sync::Mutex::new(Stage::Normal));

    let upstream_stage = stage.clone();
    let upstream = tokio::spawn(async move {
        let mut buffer = vec![0_u8; 64 * 1024];
        loop {
            let read = match client_read.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(read) => read,
            };
            let chunk = &buffer[..read];
            {
                let mut stage = upstream_stage.lock().unwrap();
                match *stage {
                    Stage::Normal
                        if chunk.windows(marker.len()).any(|w| w == marker)
                            && !fired.swap(true, Ordering::SeqCst) =>
                    {
                        *stage = Stage::Parsed;
                    }
                    Stage::Parsed => *stage = Stage::Executed,
                    _ => {}
                }
            }
            if server_write.write_all(chunk).await.is_err() {
                return;
            }
        }
    });

    let mut buffer = vec![0_u8; 64 * 1024];
    let mut withheld = Vec::new();
    loop {
        let read = match server_read.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let chunk = &buffer[..read];
        if *stage.lock().unwrap() == Stage::Executed {
            withheld.extend_from_slice(chunk);
            if withheld.ends_with(READY_IDLE) {
                // The server committed and replied, so drop the connection instead of the reply.
                break;
            }
            continue;
        }
        let mut writer = client_write.lock().await;
        let Some(writer) = writer.as_mut() else {
            break;
        };
        if writer.write_all(chunk).await.is_err() {
            break;
        }
    }
    upstream.abort();
    if let Some(mut writer) = client_write.lock().await.take() {
        let _ = writer.shutdown().await;
    }
}

/// Opens a transaction that inserts the minute row of the key starting at `start` and keeps it
/// uncommitted, so that consumes of that row wait until the transaction commits.
async fn hold_row(database: &TestDatabase, start: DateTime<Utc>) -> Client {
    let client = database.client().await;
    client.batch_execute("BEGIN").await.unwrap();
    client
        .execute(
            "INSERT INTO highway.tool_rate_limit_usage
                 (tenant_id, tool_name, scope_key, window_type, window_start, window_end,
                  request_count)
             VALUES ('acme', 'tools.email.send', 'global', 'minute', $1::timestamptz,
                     $1::timestamptz + interval '1 minute', 0)",
            &[&start],
        )
        .await
        .unwrap();
    client
}

/// Starts a consume of one unit for `scope` at `at`, with a minute limit of `limit` and, when
/// `hourly` is set, an hour limit of 100, in a task.
fn spawn_consume(
    store: &PostgresStore,
    scope: &'static str,
    limit: u64,
    hourly: bool,
    at: DateTime<Utc>,
) -> JoinHandle<Result<Decision, StoreError>> {
    let store = store.clone();
    tokio::spawn(async move {
        let capacity = Capacity {
            per_minute: Some(limit),
            per_hour: hourly.then_some(100),
            ..Capacity::UNLIMITED
        };
        store
            .consume(ConsumeRequest {
                key: &key(scope),
                cost: 1,
                capacity: &capacity,
                timezone: Tz::UTC,
                week_start: Weekday::Mon,
                at: Some(at),
            })
            .await
    })
}

/// Returns a store that reaches the test database through a proxy which cuts the first
/// connection that sends `marker`, once the server has replied to it.
async fn store_behind_proxy(
    database: &TestDatabase,
    marker: &'static [u8],
    max_batches_in_flight: usize,
) -> PostgresStore {
    let upstream = {
        let url = common::server_url().unwrap();
        let authority = url
            .trim_start_matches("postgres://")
            .trim_start_matches("postgresql://")
            .split('/')
            .next()
            .unwrap();
        authority.rsplit('@').next().unwrap().to_owned()
    };
    let port = start_proxy(upstream, marker).await;
    let proxied_url = with_database(
        &format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        database.name(),
    );
    let store = PostgresStore::new(
        highway_ratelimit::store::postgres::PostgresConfig::new(proxied_url)
            .max_batches_in_flight(max_batches_in_flight)
            .statement_timeout(Duration::from_secs(30))
            .call_timeout(Duration::from_secs(60)),
    )
    .unwrap();
    store.migrate().await.unwrap();
    store
}

/// Asserts that a call of a batch whose reply was lost got the error stating that it may have been
/// charged.
fn assert_maybe_charged(result: Result<Decision, StoreError>) {
    match result {
        Err(StoreError::Unavailable(error)) => assert!(
            error.to_string().contains("may have been charged"),
            "{error}"
        ),
        other => panic!("a call of the lost batch returned {other:?}"),
    }
}

/// Returns the count of every usage row, by scope and window type.
async fn counts(database: &TestDatabase) -> Vec<(String, String, i64)> {
    database
        .client()
        .await
        .query(
            "SELECT scope_key, window_type, request_count FROM highway.tool_rate_limit_usage
             ORDER BY scope_key, window_end",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect()
}

fn count(scope: &str, window: &str, count: i64) -> (String, String, i64) {
    (scope.to_owned(), window.to_owned(), count)
}

/// A queued call of [`lose_batch_reply`]: its scope, and whether it has an hour limit.
type Queued = (&'static str, bool);

/// Sends a first call of the key "global", with a minute limit only, which goes alone and waits
/// for the held row. Then queues `second` and `third` behind it and releases the row, so that they
/// go out together as one batch. The proxy cuts the first connection that sends `marker`.
///
/// The first call must be admitted, and each batched call must get the error stating that it may
/// have been charged. Returns the counts of every usage row.
async fn lose_batch_reply(
    marker: &'static [u8],
    max_batches_in_flight: usize,
    second: Queued,
    third: Queued,
) -> Vec<(String, String, i64)> {
    let database = TestDatabase::new().await;
    let store = store_behind_proxy(&database, marker, max_batches_in_flight).await;
    let start = utc("2026-03-02T10:15:00Z");
    let at = utc("2026-03-02T10:15:30Z");
    // Room for every call twice over, so that a call sent again would be charged again.
    let limit = 10;

    let holder = hold_row(&database, start).await;
    let first = spawn_consume(&store, "global", limit, false, at);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let second = spawn_consume(&store, second.0, limit, second.1, at);
    let third = spawn_consume(&store, third.0, limit, third.1, at);
    tokio::time::sleep(Duration::from_millis(400)).await;
    holder.batch_execute("COMMIT").await.unwrap();

    let first = first.await.unwrap();
    assert!(matches!(first, Ok(Decision::Admitted { .. })), "{first:?}");
    assert_maybe_charged(second.await.unwrap());
    assert_maybe_charged(third.await.unwrap());
    counts(&database).await
}

/// The calls of a batch whose reply was lost get an error stating that they may have been charged,
/// and none is sent again, so none is charged twice. One round trip runs at a time, so that the
/// calls of two keys queue together and take the batch statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_batch_reply_charges_calls_once() {
    let counts = lose_batch_reply(BATCH_MARKER, 1, ("global", false), ("other", false)).await;

    assert_eq!(
        counts,
        [count("global", "minute", 2), count("other", "minute", 1)],
        "each call is charged once"
    );
}

/// The same when the batch contains calls of one key only, with minute and hour limits, which the
/// single-call statement for two windows charges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_one_key_batch_reply_charges_calls_once() {
    let counts = lose_batch_reply(TWO_WINDOWS_MARKER, 4, ("global", true), ("global", true)).await;

    assert_eq!(
        counts,
        [count("global", "minute", 3), count("global", "hour", 2)],
        "each call is charged once"
    );
}
