//! The SQL functions that write `highway.tool_rate_limit_usage`, called directly with arguments
//! that break their rules, as another Highway component could call them.
//!
//! The usage table has no CHECK constraints (migration 0010), so the functions' own checks are all
//! that keeps out rows of an unknown window type, rows whose end is not after their start, and
//! negative counts. Each rejected call must fail with a message that names the bad value and leave
//! the table as it was.

mod common;

use chrono::{DateTime, Duration, Utc};
use tokio_postgres::{Client, Row};

use common::TestDatabase;

/// The instant of every call: mid-minute, so that the minute window is [10:15, 10:16).
const AT: &str = "2026-03-02T10:15:30Z";

/// The window types of the valid calls that fill the usage table before the invalid ones.
const SEED_KINDS: [&str; 2] = ["minute", "hour"];
/// The limits of those windows.
const SEED_LIMITS: [i64; 2] = [5, 5];

/// One row of the usage table: window type, start, end and count.
type UsageRow = (String, DateTime<Utc>, DateTime<Utc>, i64);
/// Window starts or ends, one per window, any of them NULL.
type BoundList = Vec<Option<DateTime<Utc>>>;

/// Window starts or ends as the functions take them: NULL, or one per window.
type Bounds = Option<BoundList>;

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|error| panic!("invalid test instant {text}: {error}"))
        .with_timezone(&Utc)
}

fn at() -> DateTime<Utc> {
    utc(AT)
}

fn seconds(count: i64) -> Duration {
    Duration::seconds(count)
}

/// Returns the starts and ends of the minute and the hour at `AT`.
fn minute_and_hour_bounds() -> (Vec<DateTime<Utc>>, Vec<DateTime<Utc>>) {
    (
        vec![utc("2026-03-02T10:15:00Z"), utc("2026-03-02T10:00:00Z")],
        vec![utc("2026-03-02T10:16:00Z"), utc("2026-03-02T11:00:00Z")],
    )
}

/// Returns a migrated database and a client whose session shows timestamps in UTC, as the
/// expected messages do.
async fn database_and_client() -> (TestDatabase, Client) {
    let database = TestDatabase::new().await;
    database.store().await;
    let client = database.client().await;
    client
        .batch_execute("SET TIME ZONE 'UTC'")
        .await
        .expect("the session accepts the UTC time zone");
    (database, client)
}

async fn usage_rows(client: &Client) -> Vec<UsageRow> {
    client
        .query(
            "SELECT window_type, window_start, window_end, request_count
             FROM highway.tool_rate_limit_usage ORDER BY window_type, window_start",
            &[],
        )
        .await
        .expect("the usage table can be read")
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
        .collect()
}

/// Checks that a call failed with a message containing `expected`.
fn assert_rejected(case: &str, result: Result<Vec<Row>, tokio_postgres::Error>, expected: &str) {
    let message = match result {
        Ok(rows) => panic!(
            "{case}: the call succeeded and returned {} rows",
            rows.len()
        ),
        Err(error) => match error.as_db_error() {
            Some(db_error) => db_error.message().to_owned(),
            None => error.to_string(),
        },
    };
    assert!(
        message.contains(expected),
        "{case}: the message {message:?} does not contain {expected:?}"
    );
}

/// A call of one of the functions under test, with its arguments.
trait SqlCall {
    async fn run(&self, client: &Client) -> Result<Vec<Row>, tokio_postgres::Error>;
}

/// Checks that each call is rejected with its message and leaves the usage table as it was.
async fn assert_calls_rejected<C: SqlCall>(client: &Client, cases: &[(&str, C, &str)]) {
    let before = usage_rows(client).await;
    for (case, call, expected) in cases {
        assert_rejected(case, call.run(client).await, expected);
        assert_eq!(
            usage_rows(client).await,
            before,
            "{case}: the usage table changed"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// highway.consume_tool_rate_tokens
// ---------------------------------------------------------------------------------------------

/// The arguments of one call of `highway.consume_tool_rate_tokens` at `AT`.
struct Consume<'a> {
    cost: Option<i64>,
    kinds: Vec<Option<&'a str>>,
    limits: Vec<Option<i64>>,
    starts: Bounds,
    ends: Bounds,
}

impl SqlCall for Consume<'_> {
    async fn run(&self, client: &Client) -> Result<Vec<Row>, tokio_postgres::Error> {
        client
            .query(
                "SELECT * FROM highway.consume_tool_rate_tokens('acme', 'tools.pdf', 'k',
                     $1, $2, $3, $4, $5, $6, 'UTC', 'monday', TRUE)",
                &[
                    &self.cost,
                    &self.kinds,
                    &self.limits,
                    &at(),
                    &self.starts,
                    &self.ends,
                ],
            )
            .await
    }
}

/// Returns a call of the minute window with limit 5, whose bounds the function computes.
fn consume_minute(cost: Option<i64>) -> Consume<'static> {
    Consume {
        cost,
        kinds: vec![Some("minute")],
        limits: vec![Some(5)],
        starts: None,
        ends: None,
    }
}

/// Returns bounds for `count` windows that all contain `AT`, with strictly increasing ends. The
/// consume function's common path takes such bounds from the caller without computing any window.
fn bounds_around_at(count: i64) -> (BoundList, BoundList) {
    let starts = (1..=count).map(|i| Some(at() - seconds(5 * i))).collect();
    let ends = (1..=count).map(|i| Some(at() + seconds(5 * i))).collect();
    (starts, ends)
}

/// Fills the usage table with one valid consume of the minute and the hour at `AT`.
async fn fill_with_consume(client: &Client) {
    let (starts, ends) = minute_and_hour_bounds();
    client
        .query(
            "SELECT * FROM highway.consume_tool_rate_tokens('acme', 'tools.pdf', 'k', 2, $1, $2,
                 $3, $4, $5, 'UTC', 'monday', TRUE)",
            &[
                &SEED_KINDS.to_vec(),
                &SEED_LIMITS.to_vec(),
                &at(),
                &starts,
                &ends,
            ],
        )
        .await
        .expect("a valid consume succeeds");
}

#[tokio::test]
async fn consume_rejects_invalid_costs() {
    let (_database, client) = database_and_client().await;
    fill_with_consume(&client).await;

    let cases = [
        ("cost 0", consume_minute(Some(0)), "invalid cost '0'"),
        ("cost -1", consume_minute(Some(-1)), "invalid cost '-1'"),
        ("cost NULL", consume_minute(None), "invalid cost NULL"),
    ];
    assert_calls_rejected(&client, &cases).await;
}

#[tokio::test]
async fn consume_rejects_invalid_window_types() {
    let (_database, client) = database_and_client().await;
    fill_with_consume(&client).await;

    let (two_starts, two_ends) = bounds_around_at(2);
    let (six_starts, six_ends) = bounds_around_at(6);
    let cases = [
        (
            "unknown type",
            vec![Some("fortnight")],
            None,
            None,
            "{fortnight}",
        ),
        ("NULL type", vec![None], None, None, "{NULL}"),
        (
            "minute twice",
            vec![Some("minute"), Some("minute")],
            None,
            None,
            "{minute,minute}",
        ),
        (
            "minute twice, bounds containing the instant",
            vec![Some("minute"), Some("minute")],
            Some(two_starts.clone()),
            Some(two_ends.clone()),
            "{minute,minute}",
        ),
        (
            "hour before minute",
            vec![Some("hour"), Some("minute")],
            None,
            None,
            "{hour,minute}",
        ),
        (
            "hour before minute, bounds containing the instant",
            vec![Some("hour"), Some("minute")],
            Some(two_starts),
            Some(two_ends),
            "{hour,minute}",
        ),
        (
            "all five types and the minute again, bounds containing the instant",
            ["minute", "hour", "day", "week", "month", "minute"]
                .map(Some)
                .to_vec(),
            Some(six_starts),
            Some(six_ends),
            "{minute,hour,day,week,month,minute}",
        ),
    ];
    let cases = cases.map(|(case, kinds, starts, ends, expected)| {
        let call = Consume {
            cost: Some(1),
            limits: vec![Some(5); kinds.len()],
            kinds,
            starts,
            ends,
        };
        (case, call, expected)
    });
    assert_calls_rejected(&client, &cases).await;
}

/// A call that lists a window type twice and is rejected by one of its rows undoes its charge
/// of the other. The undo must not subtract the cost from the row that rejected it, which would
/// take that row's count below 0.
#[tokio::test]
async fn consume_with_a_type_twice_leaves_counts_alone() {
    let (_database, client) = database_and_client().await;
    let (starts, ends) = bounds_around_at(2);
    // The second minute row has a count of 2 and a limit of 5, so a call of cost 4 does not fit.
    let first = Consume {
        cost: Some(2),
        kinds: vec![Some("minute")],
        limits: vec![Some(5)],
        starts: Some(vec![starts[1]]),
        ends: Some(vec![ends[1]]),
    };
    first.run(&client).await.expect("a valid consume succeeds");
    let before = usage_rows(&client).await;

    let call = Consume {
        cost: Some(4),
        kinds: vec![Some("minute"), Some("minute")],
        limits: vec![Some(5), Some(5)],
        starts: Some(starts),
        ends: Some(ends),
    };
    assert_rejected("minute twice", call.run(&client).await, "{minute,minute}");
    assert_eq!(usage_rows(&client).await, before);
}

#[tokio::test]
async fn consume_rejects_invalid_limits() {
    let (_database, client) = database_and_client().await;
    fill_with_consume(&client).await;

    let (starts, ends) = bounds_around_at(1);
    let cases = [
        (
            "limit -1",
            vec![Some(-1)],
            None,
            None,
            "invalid minute limit '-1'",
        ),
        (
            "limit NULL",
            vec![None],
            None,
            None,
            "invalid minute limit NULL",
        ),
        (
            "limit -1, bounds containing the instant",
            vec![Some(-1)],
            Some(starts.clone()),
            Some(ends.clone()),
            "invalid minute limit '-1'",
        ),
        (
            "limit NULL, bounds containing the instant",
            vec![None],
            Some(starts),
            Some(ends),
            "invalid minute limit NULL",
        ),
        (
            "two limits for one window",
            vec![Some(5), Some(5)],
            None,
            None,
            "p_window_types and p_limits must have the same length",
        ),
    ];
    let cases = cases.map(|(case, limits, starts, ends, expected)| {
        let call = Consume {
            cost: Some(1),
            kinds: vec![Some("minute")],
            limits,
            starts,
            ends,
        };
        (case, call, expected)
    });
    assert_calls_rejected(&client, &cases).await;
}

/// The single-call function takes the caller's bounds only when every window contains the
/// instant, and computes the windows otherwise, so bounds that it cannot use never reach a row.
#[tokio::test]
async fn consume_replaces_unusable_bounds() {
    let (_database, client) = database_and_client().await;
    let minute_at = (
        "minute".to_owned(),
        utc("2026-03-02T10:15:00Z"),
        utc("2026-03-02T10:16:00Z"),
        1,
    );

    let cases = [
        (
            "end before start",
            Some(at() + seconds(5)),
            Some(at() - seconds(5)),
        ),
        ("end equal to start", Some(at()), Some(at())),
        ("start NULL", None, Some(at() + seconds(5))),
        ("end NULL", Some(at() - seconds(5)), None),
    ];
    for (case, start, end) in cases {
        let call = Consume {
            starts: Some(vec![start]),
            ends: Some(vec![end]),
            ..consume_minute(Some(1))
        };
        call.run(&client)
            .await
            .unwrap_or_else(|error| panic!("{case}: the call failed: {error}"));
        assert_eq!(usage_rows(&client).await, vec![minute_at.clone()], "{case}");
        client
            .batch_execute("DELETE FROM highway.tool_rate_limit_usage")
            .await
            .unwrap();
    }

    let call = Consume {
        starts: Some(vec![Some(at() - seconds(5)), Some(at() - seconds(5))]),
        ends: Some(vec![Some(at() + seconds(5))]),
        ..consume_minute(Some(1))
    };
    call.run(&client)
        .await
        .expect("a call with more starts than ends succeeds");
    assert_eq!(usage_rows(&client).await, vec![minute_at]);
}

// ---------------------------------------------------------------------------------------------
// highway.consume_tool_rate_tokens_batch
// ---------------------------------------------------------------------------------------------

/// One item of a batch: one window of one call, all of key `k`.
#[derive(Clone, Copy)]
struct Item<'a> {
    call: i32,
    cost: Option<i64>,
    kind: Option<&'a str>,
    limit: Option<i64>,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
}

/// Returns a valid item of call `call`: cost 1, limit 5, the window of `kind` at `AT`.
fn item(call: i32, kind: &str) -> Item<'_> {
    let (start, end) = match kind {
        "minute" => (utc("2026-03-02T10:15:00Z"), utc("2026-03-02T10:16:00Z")),
        "hour" => (utc("2026-03-02T10:00:00Z"), utc("2026-03-02T11:00:00Z")),
        other => panic!("no test bounds for window type {other}"),
    };
    Item {
        call,
        cost: Some(1),
        kind: Some(kind),
        limit: Some(5),
        start: Some(start),
        end: Some(end),
    }
}

async fn consume_batch(
    client: &Client,
    items: &[Item<'_>],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let calls: Vec<i32> = items.iter().map(|item| item.call).collect();
    let keys = vec!["k"; items.len()];
    let costs: Vec<Option<i64>> = items.iter().map(|item| item.cost).collect();
    let kinds: Vec<Option<&str>> = items.iter().map(|item| item.kind).collect();
    let limits: Vec<Option<i64>> = items.iter().map(|item| item.limit).collect();
    let starts: BoundList = items.iter().map(|item| item.start).collect();
    let ends: BoundList = items.iter().map(|item| item.end).collect();
    let timezones = vec!["UTC"; items.len()];
    let week_starts = vec!["monday"; items.len()];
    client
        .query(
            "SELECT * FROM highway.consume_tool_rate_tokens_batch($1, $2, $3, $4, $5, $6, $7, $8,
                 $9, $10, $11)",
            &[
                &calls,
                &keys,
                &keys,
                &keys,
                &costs,
                &kinds,
                &limits,
                &starts,
                &ends,
                &timezones,
                &week_starts,
            ],
        )
        .await
}

/// Fills the usage table with a valid batch of two calls of the minute and the hour at `AT`.
async fn fill_with_batch(client: &Client) {
    let items = [
        item(1, "minute"),
        item(1, "hour"),
        item(2, "minute"),
        item(2, "hour"),
    ];
    consume_batch(client, &items)
        .await
        .expect("a valid batch succeeds");
}

impl SqlCall for Vec<Item<'_>> {
    async fn run(&self, client: &Client) -> Result<Vec<Row>, tokio_postgres::Error> {
        consume_batch(client, self).await
    }
}

#[tokio::test]
async fn batch_rejects_invalid_costs() {
    let (_database, client) = database_and_client().await;
    fill_with_batch(&client).await;
    let cost = |base: Item<'static>, cost: Option<i64>| Item { cost, ..base };

    let cases = [
        (
            "cost 0",
            vec![cost(item(1, "minute"), Some(0))],
            "invalid cost '0' of call 1",
        ),
        (
            "cost -1",
            vec![cost(item(1, "minute"), Some(-1))],
            "invalid cost '-1' of call 1",
        ),
        (
            "cost NULL",
            vec![cost(item(1, "minute"), None)],
            "invalid cost NULL of call 1",
        ),
        (
            "cost -3 on a call's second item",
            vec![item(1, "minute"), cost(item(1, "hour"), Some(-3))],
            "invalid cost '-3' of call 1",
        ),
        (
            "cost 0 on the second call",
            vec![item(1, "minute"), cost(item(2, "minute"), Some(0))],
            "invalid cost '0' of call 2",
        ),
    ];
    assert_calls_rejected(&client, &cases).await;
}

#[tokio::test]
async fn batch_rejects_invalid_limits() {
    let (_database, client) = database_and_client().await;
    fill_with_batch(&client).await;
    let limit = |base: Item<'static>, limit: Option<i64>| Item { limit, ..base };

    let cases = [
        (
            "limit -1",
            vec![limit(item(1, "minute"), Some(-1))],
            "invalid minute limit '-1' of call 1",
        ),
        (
            "limit NULL",
            vec![limit(item(1, "minute"), None)],
            "invalid minute limit NULL of call 1",
        ),
        (
            "limit -1 on a call's second item",
            vec![item(1, "minute"), limit(item(1, "hour"), Some(-1))],
            "invalid hour limit '-1' of call 1",
        ),
    ];
    assert_calls_rejected(&client, &cases).await;
}

#[tokio::test]
async fn batch_rejects_invalid_window_types() {
    let (_database, client) = database_and_client().await;
    fill_with_batch(&client).await;
    let kind = |base: Item<'static>, kind: Option<&'static str>| Item { kind, ..base };
    let computed = |base: Item<'static>| Item {
        start: None,
        end: None,
        ..base
    };

    let cases = [
        (
            "unknown type with bounds",
            vec![kind(item(1, "minute"), Some("fortnight"))],
            "invalid window type 'fortnight' of call 1",
        ),
        (
            "unknown type without bounds",
            vec![computed(kind(item(1, "minute"), Some("fortnight")))],
            "invalid window type 'fortnight' of call 1",
        ),
        (
            "NULL type with bounds",
            vec![kind(item(1, "minute"), None)],
            "invalid window type NULL of call 1",
        ),
        (
            "NULL type without bounds",
            vec![computed(kind(item(1, "minute"), None))],
            "invalid window type NULL of call 1",
        ),
        (
            "minute twice in one call",
            vec![item(1, "minute"), item(1, "minute")],
            "invalid window types {minute,minute} of call 1",
        ),
        (
            "minute twice in one call, with other bounds",
            vec![
                item(1, "minute"),
                Item {
                    start: Some(at() - seconds(5)),
                    end: Some(at() + seconds(5)),
                    ..item(1, "minute")
                },
            ],
            "invalid window types {minute,minute} of call 1",
        ),
        (
            "minute twice in the second call",
            vec![
                item(1, "minute"),
                item(2, "minute"),
                item(2, "hour"),
                item(2, "minute"),
            ],
            "invalid window types {minute,hour,minute} of call 2",
        ),
    ];
    assert_calls_rejected(&client, &cases).await;
}

/// Two calls of one batch may share a window: the check that a call lists each window type once
/// must not reject them, and the second call is decided against the count the first one left.
#[tokio::test]
async fn batch_calls_may_share_a_window() {
    let (_database, client) = database_and_client().await;
    let limit_one = |base: Item<'static>| Item {
        limit: Some(1),
        ..base
    };

    let rows = consume_batch(
        &client,
        &[limit_one(item(1, "minute")), limit_one(item(2, "minute"))],
    )
    .await
    .expect("two calls of one window are a valid batch");
    let admitted: Vec<bool> = rows.iter().map(|row| row.get("admitted")).collect();

    assert_eq!(admitted, vec![true, false]);
    assert_eq!(usage_rows(&client).await[0].3, 1);
}

#[tokio::test]
async fn batch_rejects_invalid_bounds() {
    let (_database, client) = database_and_client().await;
    fill_with_batch(&client).await;
    let bounds = |start: Option<&str>, end: Option<&str>| Item {
        start: start.map(utc),
        end: end.map(utc),
        ..item(1, "minute")
    };

    let cases = [
        (
            "end before start",
            vec![bounds(
                Some("2026-03-02T10:16:00Z"),
                Some("2026-03-02T10:15:00Z"),
            )],
            "invalid minute window bounds ['2026-03-02 10:16:00+00', '2026-03-02 10:15:00+00') of call 1",
        ),
        (
            "end equal to start",
            vec![bounds(
                Some("2026-03-02T10:15:00Z"),
                Some("2026-03-02T10:15:00Z"),
            )],
            "invalid minute window bounds ['2026-03-02 10:15:00+00', '2026-03-02 10:15:00+00') of call 1",
        ),
        (
            "start NULL, end given",
            vec![bounds(None, Some("2000-01-01T00:00:00Z"))],
            "invalid minute window bounds [NULL, '2000-01-01 00:00:00+00') of call 1",
        ),
        (
            "start given, end NULL",
            vec![bounds(Some("2026-03-02T10:15:00Z"), None)],
            "invalid minute window bounds ['2026-03-02 10:15:00+00', NULL) of call 1",
        ),
        (
            "end before start on the second call",
            vec![
                item(1, "minute"),
                Item {
                    call: 2,
                    ..bounds(Some("2026-03-02T10:16:00Z"), Some("2026-03-02T10:15:00Z"))
                },
            ],
            "invalid minute window bounds ['2026-03-02 10:16:00+00', '2026-03-02 10:15:00+00') of call 2",
        ),
    ];
    assert_calls_rejected(&client, &cases).await;
}

#[tokio::test]
async fn batch_rejects_arrays_of_other_lengths() {
    let (_database, client) = database_and_client().await;
    fill_with_batch(&client).await;
    let before = usage_rows(&client).await;

    let result = client
        .query(
            "SELECT * FROM highway.consume_tool_rate_tokens_batch(ARRAY[1, 1], ARRAY['k', 'k'],
                 ARRAY['k', 'k'], ARRAY['k', 'k'], ARRAY[1, 1]::BIGINT[],
                 ARRAY['minute', 'hour'], ARRAY[5, 5]::BIGINT[], ARRAY[NULL]::TIMESTAMPTZ[],
                 ARRAY[NULL, NULL]::TIMESTAMPTZ[], ARRAY['UTC', 'UTC'],
                 ARRAY['monday', 'monday'])",
            &[],
        )
        .await;

    assert_rejected(
        "one start for two items",
        result,
        "every array must have one element per item",
    );
    assert_eq!(usage_rows(&client).await, before);
}

// ---------------------------------------------------------------------------------------------
// highway.lease_tool_rate_tokens
// ---------------------------------------------------------------------------------------------

/// The arguments of one take of `highway.lease_tool_rate_tokens`.
#[derive(Clone)]
struct Take<'a> {
    want: Option<i64>,
    min: Option<i64>,
    held: Option<i64>,
    share: Option<f64>,
    kinds: Vec<Option<&'a str>>,
    limits: Vec<Option<i64>>,
    starts: Bounds,
    ends: Bounds,
    explicit_instant: bool,
}

impl SqlCall for Take<'_> {
    async fn run(&self, client: &Client) -> Result<Vec<Row>, tokio_postgres::Error> {
        client
            .query(
                "SELECT * FROM highway.lease_tool_rate_tokens('acme', 'tools.pdf', 'k', $1, $2,
                     $3, $4, $5, $6, $7, $8, 'UTC', 'monday', $9)",
                &[
                    &self.want,
                    &self.min,
                    &self.held,
                    &self.share,
                    &self.kinds,
                    &self.limits,
                    &self.starts,
                    &self.ends,
                    &self.explicit_instant,
                ],
            )
            .await
    }
}

/// Returns a valid take of 3 tokens from the minute and the hour at `AT`.
fn take() -> Take<'static> {
    let (starts, ends) = minute_and_hour_bounds();
    Take {
        want: Some(3),
        min: Some(1),
        held: Some(0),
        share: Some(1.0),
        kinds: SEED_KINDS.map(Some).to_vec(),
        limits: SEED_LIMITS.map(Some).to_vec(),
        starts: Some(starts.into_iter().map(Some).collect()),
        ends: Some(ends.into_iter().map(Some).collect()),
        explicit_instant: true,
    }
}

#[tokio::test]
async fn lease_rejects_invalid_requests() {
    let (_database, client) = database_and_client().await;
    take().run(&client).await.expect("a valid take succeeds");

    let cases = [
        (
            "want 0",
            Take {
                want: Some(0),
                min: Some(0),
                ..take()
            },
            "want '0', min '0', held '0'",
        ),
        (
            "want NULL",
            Take {
                want: None,
                ..take()
            },
            "want NULL",
        ),
        (
            "min -1",
            Take {
                min: Some(-1),
                ..take()
            },
            "min '-1'",
        ),
        (
            "min NULL",
            Take {
                min: None,
                ..take()
            },
            "min NULL",
        ),
        (
            "min above want",
            Take {
                min: Some(4),
                ..take()
            },
            "want '3', min '4'",
        ),
        (
            "held -1",
            Take {
                held: Some(-1),
                ..take()
            },
            "held '-1'",
        ),
        (
            "held NULL",
            Take {
                held: None,
                ..take()
            },
            "held NULL",
        ),
        (
            "share 0",
            Take {
                share: Some(0.0),
                ..take()
            },
            "invalid lease share '0'",
        ),
        (
            "share 1.5",
            Take {
                share: Some(1.5),
                ..take()
            },
            "invalid lease share '1.5'",
        ),
        (
            "share NaN",
            Take {
                share: Some(f64::NAN),
                ..take()
            },
            "invalid lease share 'NaN'",
        ),
        (
            "share NULL",
            Take {
                share: None,
                ..take()
            },
            "invalid lease share NULL",
        ),
    ];
    assert_calls_rejected(&client, &cases).await;
}

#[tokio::test]
async fn lease_rejects_invalid_window_types() {
    let (_database, client) = database_and_client().await;
    take().run(&client).await.expect("a valid take succeeds");
    let kinds = |kinds: Vec<Option<&'static str>>| {
        let count = kinds.len();
        let (starts, ends) = bounds_around_at(i64::try_from(count).unwrap());
        Take {
            limits: vec![Some(5); count],
            starts: Some(starts),
            ends: Some(ends),
            kinds,
            ..take()
        }
    };

    let cases = [
        (
            "unknown type",
            kinds(vec![Some("fortnight")]),
            "invalid window types {fortnight}",
        ),
        (
            "NULL type",
            kinds(vec![None]),
            "invalid window types {NULL}",
        ),
        (
            "minute twice",
            kinds(vec![Some("minute"), Some("minute")]),
            "invalid window types {minute,minute}",
        ),
        ("no type", kinds(vec![]), "invalid window types {}"),
    ];
    assert_calls_rejected(&client, &cases).await;
}

#[tokio::test]
async fn lease_rejects_invalid_limits() {
    let (_database, client) = database_and_client().await;
    take().run(&client).await.expect("a valid take succeeds");

    let cases = [
        (
            "hour limit -1",
            Take {
                limits: vec![Some(5), Some(-1)],
                ..take()
            },
            "invalid hour limit '-1'",
        ),
        (
            "hour limit NULL",
            Take {
                limits: vec![Some(5), None],
                ..take()
            },
            "invalid hour limit NULL",
        ),
        (
            "one limit for two windows",
            Take {
                limits: vec![Some(5)],
                ..take()
            },
            "must have the same length",
        ),
    ];
    assert_calls_rejected(&client, &cases).await;
}

#[tokio::test]
async fn lease_rejects_invalid_bounds() {
    let (_database, client) = database_and_client().await;
    take().run(&client).await.expect("a valid take succeeds");
    let minute = |start: Option<&str>, end: Option<&str>, explicit_instant: bool| Take {
        kinds: vec![Some("minute")],
        limits: vec![Some(5)],
        starts: Some(vec![start.map(utc)]),
        ends: Some(vec![end.map(utc)]),
        explicit_instant,
        ..take()
    };

    let cases = [
        (
            "end before start",
            minute(
                Some("2026-03-02T10:16:00Z"),
                Some("2026-03-02T10:15:00Z"),
                true,
            ),
            "invalid minute window bounds ['2026-03-02 10:16:00+00', '2026-03-02 10:15:00+00')",
        ),
        (
            "end before start, in the future",
            minute(
                Some("2030-01-01T00:01:00Z"),
                Some("2030-01-01T00:00:00Z"),
                false,
            ),
            "invalid minute window bounds ['2030-01-01 00:01:00+00', '2030-01-01 00:00:00+00')",
        ),
        (
            "end equal to start",
            minute(
                Some("2026-03-02T10:15:00Z"),
                Some("2026-03-02T10:15:00Z"),
                true,
            ),
            "invalid minute window bounds ['2026-03-02 10:15:00+00', '2026-03-02 10:15:00+00')",
        ),
        (
            "start NULL",
            minute(None, Some("2030-01-01T00:00:00Z"), false),
            "invalid minute window bounds [NULL, '2030-01-01 00:00:00+00')",
        ),
        (
            "end NULL",
            minute(Some("2030-01-01T00:00:00Z"), None, false),
            "invalid minute window bounds ['2030-01-01 00:00:00+00', NULL)",
        ),
        (
            "ends without starts",
            Take {
                starts: None,
                ..take()
            },
            "p_window_starts is NULL",
        ),
        (
            "starts without ends",
            Take {
                ends: None,
                ..take()
            },
            "p_window_ends is NULL",
        ),
        (
            "one end for two windows",
            Take {
                ends: Some(vec![Some(at() + seconds(5))]),
                ..take()
            },
            "must have the same length",
        ),
    ];
    assert_calls_rejected(&client, &cases).await;
}

// ---------------------------------------------------------------------------------------------
// highway.return_tool_rate_tokens
// ---------------------------------------------------------------------------------------------

/// The arguments of one call of `highway.return_tool_rate_tokens` at `AT`.
struct GiveBack<'a> {
    tokens: Option<i64>,
    kinds: Vec<Option<&'a str>>,
    starts: BoundList,
}

impl SqlCall for GiveBack<'_> {
    async fn run(&self, client: &Client) -> Result<Vec<Row>, tokio_postgres::Error> {
        client
            .query(
                "SELECT highway.return_tool_rate_tokens('acme', 'tools.pdf', 'k', $1, $2, $3, $4)",
                &[&self.tokens, &self.kinds, &self.starts, &at()],
            )
            .await
    }
}

/// Returns the kinds and starts of the windows of `take()`.
fn leased_windows() -> (Vec<Option<&'static str>>, BoundList) {
    let (starts, _) = minute_and_hour_bounds();
    (
        SEED_KINDS.map(Some).to_vec(),
        starts.into_iter().map(Some).collect(),
    )
}

#[tokio::test]
async fn return_rejects_invalid_token_counts() {
    let (_database, client) = database_and_client().await;
    take().run(&client).await.expect("a valid take succeeds");
    let (kinds, starts) = leased_windows();

    let cases = [
        ("0 tokens", Some(0), "invalid token count '0'"),
        ("-2 tokens", Some(-2), "invalid token count '-2'"),
        ("NULL tokens", None, "invalid token count NULL"),
    ];
    let cases = cases.map(|(case, tokens, expected)| {
        let call = GiveBack {
            tokens,
            kinds: kinds.clone(),
            starts: starts.clone(),
        };
        (case, call, expected)
    });
    assert_calls_rejected(&client, &cases).await;
}

#[tokio::test]
async fn return_rejects_invalid_window_types() {
    let (_database, client) = database_and_client().await;
    take().run(&client).await.expect("a valid take succeeds");
    let (_, starts) = leased_windows();

    let cases = [
        (
            "unknown type",
            vec![Some("fortnight"), Some("hour")],
            "invalid window types {fortnight,hour}",
        ),
        (
            "NULL type",
            vec![None, Some("hour")],
            "invalid window types {NULL,hour}",
        ),
        (
            "minute twice",
            vec![Some("minute"), Some("minute")],
            "invalid window types {minute,minute}",
        ),
        (
            "one type for two starts",
            vec![Some("minute")],
            "p_window_types and p_window_starts must have the same length",
        ),
    ];
    let cases = cases.map(|(case, kinds, expected)| {
        let call = GiveBack {
            tokens: Some(1),
            kinds,
            starts: starts.clone(),
        };
        (case, call, expected)
    });
    assert_calls_rejected(&client, &cases).await;
}

/// A return cannot tell a lease's tokens from other charges, so it clamps each count at 0 rather
/// than take it below.
#[tokio::test]
async fn return_of_more_than_taken_stops_at_zero() {
    let (_database, client) = database_and_client().await;
    take().run(&client).await.expect("a valid take succeeds");
    let (kinds, starts) = leased_windows();

    let call = GiveBack {
        tokens: Some(10),
        kinds,
        starts,
    };
    let credited: i32 = call
        .run(&client)
        .await
        .expect("a return of more tokens than taken succeeds")[0]
        .get(0);
    let counts: Vec<i64> = usage_rows(&client)
        .await
        .into_iter()
        .map(|row| row.3)
        .collect();

    assert_eq!(credited, 2);
    assert_eq!(counts, vec![0, 0]);
}
