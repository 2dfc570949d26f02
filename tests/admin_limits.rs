//! The admin API against a real PostgreSQL: writing, reading, listing and deleting limits,
//! default-tenant fallback, validation, and the change notification sent with each write.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{Duration as ChronoDuration, SubsecRound, Utc, Weekday};
use chrono_tz::Tz;
use common::TestDatabase;
use highway_ratelimit::admin::{
    Admin, AdminError, CHANGES_CHANNEL, Change, LimitSpec, MAX_USAGE_PAGE_SIZE, PostgresPolicies,
    UsageCursor, UsageQuery, WindowCount,
};
use highway_ratelimit::layer::RateLimitLayer;
use highway_ratelimit::policy::{PolicySource, Scope};
use highway_ratelimit::report::Capacity;
use highway_ratelimit::store::MemoryStore;
use tokio_postgres::{AsyncMessage, NoTls};

async fn admin(database: &TestDatabase) -> Admin {
    Admin::from_store(&database.store().await)
}

fn static_spec(tenant: &str, tool: &str, per_minute: u64) -> LimitSpec {
    LimitSpec {
        per_minute: Some(per_minute),
        ..LimitSpec::new(tenant, tool)
    }
}

/// Returns a schedule whose time frame covers the next month. Mail goes out Monday to Friday,
/// 09:00 to 17:00 Berlin time, at most 500 a day and 60 a minute.
fn mail_schedule() -> String {
    let start = (Utc::now() - ChronoDuration::days(2)).format("%Y-%m-%d");
    let end = (Utc::now() + ChronoDuration::days(30)).format("%Y-%m-%d");
    format!(
        "project mail \"Mail\" {start} - {end} {{\n  timezone \"Europe/Berlin\"\n}}\n\n\
         resource smtp \"SMTP relay\" {{\n  workinghours mon - fri 09:00 - 17:00\n  \
         workinghours sat, sun off\n  limits {{ dailymax 500 minutelymax 60 }}\n}}\n"
    )
}

#[tokio::test]
async fn zone_abbreviation_is_rejected() {
    let database = TestDatabase::new().await;
    let admin = admin(&database).await;

    for zone in [Tz::EST, Tz::CET, Tz::EST5EDT] {
        let spec = LimitSpec {
            timezone: Some(zone),
            ..static_spec("acme", "tools.email.send", 10)
        };
        let error = admin.upsert(&spec).await.unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains(&format!(
                "time zone \"{}\" is not a Region/City name",
                zone.name()
            )),
            "{message}"
        );
    }
    assert!(
        admin.get("acme", "tools.email.send").await.is_err(),
        "a rejected limit was stored"
    );

    let utc = LimitSpec {
        timezone: Some(Tz::UTC),
        ..static_spec("acme", "tools.email.send", 10)
    };
    admin.upsert(&utc).await.expect("UTC is a zone");
}

#[tokio::test]
async fn static_limit_round_trip() {
    let database = TestDatabase::new().await;
    let admin = admin(&database).await;

    let spec = LimitSpec {
        scope: Scope::Global,
        per_hour: Some(1000),
        per_day: Some(5000),
        timezone: Some(Tz::Asia__Tokyo),
        week_start: Some(Weekday::Sun),
        fail_open: true,
        ..static_spec("acme", "tools.email.send", 10)
    };
    let written = admin.upsert(&spec).await.expect("a static limit is valid");
    assert!(written.warnings.is_empty());

    let stored = admin
        .get("acme", "tools.email.send")
        .await
        .expect("the limit was stored");
    assert_eq!(stored, written.limit);
    assert_eq!(stored.scope, Scope::Global);
    assert_eq!(stored.per_minute, Some(10));
    assert_eq!(stored.per_hour, Some(1000));
    assert_eq!(stored.per_day, Some(5000));
    assert_eq!(stored.timezone, Tz::Asia__Tokyo);
    assert_eq!(stored.week_start, Weekday::Sun);
    assert!(stored.enabled);
    assert!(stored.fail_open);
    assert!(stored.schedule.is_none());

    // A second write replaces the row instead of adding one.
    admin
        .upsert(&static_spec("acme", "tools.email.send", 20))
        .await
        .unwrap();
    let replaced = admin.get("acme", "tools.email.send").await.unwrap();
    assert_eq!(replaced.per_minute, Some(20));
    assert_eq!(replaced.per_hour, None);
    assert_eq!(replaced.scope, Scope::Tenant);
    assert_eq!(replaced.timezone, Tz::UTC);
    assert_eq!(replaced.created_at, stored.created_at);
    assert!(replaced.updated_at >= stored.updated_at);

    admin
        .delete("acme", "tools.email.send")
        .await
        .expect("the limit exists");
    let missing = admin.get("acme", "tools.email.send").await.unwrap_err();
    assert!(matches!(missing, AdminError::NotFound { .. }), "{missing}");
    let again = admin.delete("acme", "tools.email.send").await.unwrap_err();
    assert!(matches!(again, AdminError::NotFound { .. }), "{again}");
}

#[tokio::test]
async fn list_filters_by_tenant() {
    let database = TestDatabase::new().await;
    let admin = admin(&database).await;
    for (tenant, tool) in [
        ("default", "tools.http"),
        ("acme", "tools.http"),
        ("acme", "tools.email.send"),
        ("zeta", "tools.http"),
    ] {
        admin.upsert(&static_spec(tenant, tool, 5)).await.unwrap();
    }

    let all = admin.list(None).await.unwrap();
    let keys: Vec<(&str, &str)> = all
        .iter()
        .map(|limit| (limit.tenant.as_str(), limit.tool.as_str()))
        .collect();
    assert_eq!(
        keys,
        [
            ("acme", "tools.email.send"),
            ("acme", "tools.http"),
            ("default", "tools.http"),
            ("zeta", "tools.http")
        ]
    );

    let acme = admin.list(Some("acme")).await.unwrap();
    assert_eq!(acme.len(), 2);
    assert!(acme.iter().all(|limit| limit.tenant == "acme"));
}

#[tokio::test]
async fn tenant_row_overrides_default() {
    let database = TestDatabase::new().await;
    let admin = admin(&database).await;
    let policies = PostgresPolicies::from_admin(&admin);

    admin
        .upsert(&static_spec("default", "tools.http", 100))
        .await
        .unwrap();
    admin
        .upsert(&static_spec("acme", "tools.http", 5))
        .await
        .unwrap();

    let acme = policies
        .resolve("acme", "tools.http")
        .await
        .unwrap()
        .expect("acme has a row");
    assert_eq!(acme.tenant, "acme");
    assert_eq!(
        acme.static_capacity,
        Capacity {
            per_minute: Some(5),
            ..Capacity::UNLIMITED
        }
    );

    let other = policies
        .resolve("globex", "tools.http")
        .await
        .unwrap()
        .expect("the default applies");
    assert_eq!(other.tenant, "default");
    assert_eq!(other.static_capacity.per_minute, Some(100));

    assert!(
        policies
            .lookup("globex", "tools.http")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        policies
            .resolve("acme", "tools.unknown")
            .await
            .unwrap()
            .is_none()
    );

    admin.delete("acme", "tools.http").await.unwrap();
    let fallback = policies
        .resolve("acme", "tools.http")
        .await
        .unwrap()
        .expect("the default applies");
    assert_eq!(fallback.tenant, "default");
}

/// A resource's own `timezone` decides the zone of its report, so the advice for a `timezone`
/// that differs from it names the resource, not only the project.
#[tokio::test]
async fn timezone_mismatch_names_resource_zone() {
    let database = TestDatabase::new().await;
    let admin = admin(&database).await;
    let start = (Utc::now() - ChronoDuration::days(2)).format("%Y-%m-%d");
    let schedule = format!(
        "project mail \"Mail\" {start} +1y {{\n  timezone \"Etc/UTC\"\n}}\n\
         resource smtp \"SMTP relay\" {{\n  timezone \"America/Chicago\"\n}}\n"
    );
    let spec = LimitSpec {
        schedule: Some(schedule),
        timezone: Some(Tz::Etc__UTC),
        ..LimitSpec::new("acme", "tools.mail")
    };

    let error = admin.upsert(&spec).await.expect_err("the zones differ");

    assert!(matches!(error, AdminError::InvalidLimit(_)), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("differs from the schedule's America/Chicago"),
        "{message}"
    );
    assert!(message.contains("in the schedule's resource"), "{message}");
    assert!(admin.list(None).await.unwrap().is_empty());
}

#[tokio::test]
async fn invalid_limits_store_nothing() {
    let database = TestDatabase::new().await;
    let admin = admin(&database).await;

    let cases = [
        (LimitSpec::new("", "tools.http"), "missing tenant"),
        (LimitSpec::new("acme", " "), "missing tool"),
        (LimitSpec::new("acme\n", "tools.http"), "control characters"),
        (
            LimitSpec::new("a".repeat(300), "tools.http"),
            "longer than 256 bytes",
        ),
        (
            LimitSpec {
                resource: Some("smtp".into()),
                ..LimitSpec::new("acme", "tools.http")
            },
            "without a schedule",
        ),
        (
            static_spec("acme", "tools.http", 1 << 40),
            "the most a static limit stores",
        ),
        (
            LimitSpec {
                schedule: Some(mail_schedule()),
                ..static_spec("acme", "tools.http", 5)
            },
            "do not apply with a schedule",
        ),
    ];
    for (spec, expected) in cases {
        let error = admin.upsert(&spec).await.expect_err(expected);
        assert!(matches!(error, AdminError::InvalidLimit(_)), "{error}");
        assert!(
            error.to_string().contains(expected),
            "{error:?} should mention {expected:?}"
        );
    }
    assert!(admin.list(None).await.unwrap().is_empty());
}

#[tokio::test]
async fn schedule_rendered_on_write() {
    let database = TestDatabase::new().await;
    let admin = admin(&database).await;
    let policies = PostgresPolicies::from_admin(&admin);

    let spec = LimitSpec {
        schedule: Some(mail_schedule()),
        ..LimitSpec::new("acme", "tools.email.send")
    };
    let before = Utc::now().trunc_subsecs(0);
    let written = admin
        .upsert(&spec)
        .await
        .unwrap_or_else(|error| panic!("the schedule is valid: {error}"));

    let schedule = written
        .limit
        .schedule
        .as_ref()
        .expect("the schedule was stored");
    let valid_until = schedule.valid_until.expect("the report's end was stored");
    assert!(valid_until >= before + ChronoDuration::days(7));
    assert!(valid_until <= Utc::now() + ChronoDuration::days(8));
    assert_eq!(written.limit.timezone, Tz::Europe__Berlin);

    let policy = policies
        .resolve("acme", "tools.email.send")
        .await
        .unwrap()
        .unwrap();
    let report = &policy
        .schedule
        .as_ref()
        .expect("the policy has the schedule")
        .report;
    assert_eq!(report.valid_until, valid_until);
    assert!(!report.windows.is_empty());
    assert!(
        report
            .windows
            .iter()
            .all(|window| window.capacity.per_day == Some(500))
    );
    assert!(
        report
            .windows
            .iter()
            .all(|window| window.capacity.per_minute == Some(60))
    );
}

#[tokio::test]
async fn schedule_errors_name_the_place() {
    let database = TestDatabase::new().await;
    let admin = admin(&database).await;

    let broken = mail_schedule().replace("workinghours sat, sun off", "workinghours sat, sun offf");
    let spec = LimitSpec {
        schedule: Some(broken),
        ..LimitSpec::new("acme", "tools.email.send")
    };
    let error = admin.upsert(&spec).await.unwrap_err();
    let AdminError::InvalidSchedule(schedule_error) = &error else {
        panic!("expected a schedule error, got {error}");
    };
    let first = &schedule_error.diagnostics[0];
    assert_eq!(
        first.location.file.to_str(),
        Some("acme/tools.email.send.tjp")
    );
    assert_eq!(first.location.line, 7, "{error}");
    assert!(
        error.to_string().contains("acme/tools.email.send.tjp:7:"),
        "{error}"
    );
    assert!(admin.list(None).await.unwrap().is_empty());
}

#[tokio::test]
async fn writes_notify_after_commit() {
    let database = TestDatabase::new().await;
    let admin = admin(&database).await;

    let (client, mut connection) = tokio_postgres::connect(database.url(), NoTls)
        .await
        .unwrap();
    let (sender, mut received) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = futures_util::StreamExt::next(&mut messages).await {
            if let AsyncMessage::Notification(notification) = message {
                let _ = sender.send((
                    notification.channel().to_owned(),
                    notification.payload().to_owned(),
                ));
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {CHANGES_CHANNEL}"))
        .await
        .unwrap();

    admin
        .upsert(&static_spec("acme", "tools.http", 5))
        .await
        .unwrap();
    admin.delete("acme", "tools.http").await.unwrap();
    // A rejected write sends no notification.
    admin
        .upsert(&LimitSpec::new("", "tools.http"))
        .await
        .unwrap_err();

    let expected = Change::Limit {
        tenant: "acme".into(),
        tool: "tools.http".into(),
    };
    for _ in 0..2 {
        let (channel, payload) = tokio::time::timeout(Duration::from_secs(5), received.recv())
            .await
            .expect("a notification within 5 s")
            .expect("the listener is running");
        assert_eq!(channel, CHANGES_CHANNEL);
        assert_eq!(serde_json::from_str::<Change>(&payload).unwrap(), expected);
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(300), received.recv())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn horizon_days_stay_within_bounds() {
    let database = TestDatabase::new().await;
    let admin = Admin::from_store(&database.store().await);

    assert_eq!(admin.clone().with_horizon_days(0).horizon_days(), 1);
    assert_eq!(admin.clone().with_horizon_days(90).horizon_days(), 90);
    assert_eq!(
        admin.with_horizon_days(100_000).horizon_days(),
        highway_ratelimit::report::MAX_HORIZON_DAYS
    );
}

/// The layer reads policies from PostgreSQL within its store timeout, so a zero timeout would
/// reject every call whose policy is not cached as `policy_unavailable`, even in front of the
/// in-process store. Building such a layer panics with the setting, the value and what to use
/// instead.
#[tokio::test]
async fn zero_timeout_with_postgres_policies_panics() {
    let database = TestDatabase::new().await;
    let admin = admin(&database).await;
    admin
        .upsert(&static_spec("acme", "tools.http", 5))
        .await
        .unwrap();
    let builder = RateLimitLayer::builder(
        Arc::new(PostgresPolicies::from_admin(&admin)),
        Arc::new(MemoryStore::new()),
    )
    .store_timeout(Duration::ZERO);

    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| builder.build()))
        .expect_err("a zero store timeout with policies in PostgreSQL panics");

    let message = panic
        .downcast_ref::<String>()
        .expect("the panic message is formatted");
    assert!(
        message.contains("RateLimitBuilder::store_timeout"),
        "{message}"
    );
    assert!(message.contains("store timeout of 0ns"), "{message}");
    assert!(message.contains("PostgresPolicies"), "{message}");
    assert!(message.contains("such as the default 500ms"), "{message}");
}

/// An upsert whose caller stopped waiting, while another session holds the limit's row lock,
/// must not leave its connection busy in the pool that it shares with the store. The next
/// consume, on usage rows that no session locks, then gets a connection that replies.
#[tokio::test]
async fn abandoned_upsert_spares_next_consume() {
    use highway_ratelimit::store::{ConsumeRequest, ScopeKey, TokenStore};

    let database = TestDatabase::new().await;
    let store = database
        .store_with(|config| {
            config
                .statement_timeout(Duration::from_secs(30))
                .call_timeout(Duration::from_millis(500))
                .pool_size(1)
        })
        .await;
    let admin = Admin::from_store(&store);
    admin
        .upsert(&static_spec("acme", "tools.email.send", 10))
        .await
        .unwrap();

    let mut holder = database.client().await;
    let holding = holder.transaction().await.unwrap();
    holding
        .execute(
            "SELECT 1 FROM highway.tool_rate_limits WHERE tenant_id = 'acme' FOR UPDATE",
            &[],
        )
        .await
        .unwrap();
    let abandoned = tokio::time::timeout(
        Duration::from_millis(300),
        admin.upsert(&static_spec("acme", "tools.email.send", 20)),
    )
    .await;
    assert!(
        abandoned.is_err(),
        "the blocked upsert ended: {abandoned:?}"
    );

    let key = ScopeKey {
        tenant: "acme".to_owned(),
        tool: "tools.email.send".to_owned(),
        scope: "acme".to_owned(),
    };
    let capacity = Capacity {
        per_minute: Some(10),
        ..Capacity::UNLIMITED
    };
    let decision = store
        .consume(ConsumeRequest {
            key: &key,
            cost: 1,
            capacity: &capacity,
            timezone: Tz::UTC,
            week_start: Weekday::Mon,
            at: None,
        })
        .await;
    holding.rollback().await.unwrap();
    assert!(
        matches!(&decision, Ok(decision) if decision.is_admitted()),
        "{decision:?}"
    );
    let stored = admin.get("acme", "tools.email.send").await.unwrap();
    assert_eq!(
        stored.per_minute,
        Some(10),
        "the abandoned upsert wrote nothing"
    );
}

/// Writes a counter of `count` calls for `scope_key` of `acme`'s `tools.http`, in the `kind`
/// window of tomorrow (UTC), as `acquire --at` would charge one: it has not ended, so `usage`
/// lists it, and no window boundary passes while a test runs.
async fn write_counter(client: &tokio_postgres::Client, scope_key: &str, kind: &str, count: i64) {
    let length = if kind == "hour" { "1 hour" } else { "1 day" };
    client
        .execute(
            &format!(
                "INSERT INTO highway.tool_rate_limit_usage
                     (tenant_id, tool_name, scope_key, window_type, window_start, window_end, request_count)
                 SELECT 'acme', 'tools.http', $1, $2, start_at, start_at + interval '{length}', $3
                 FROM (SELECT date_trunc('day', now(), 'UTC') + interval '1 day' AS start_at) AS s"
            ),
            &[&scope_key, &kind, &count],
        )
        .await
        .unwrap_or_else(|error| panic!("writing the counter of {scope_key} failed: {error}"));
}

/// Returns the keyset order of the listing: scope key in byte order, window kind by name.
fn listing_order(counts: &[WindowCount]) -> Vec<(String, String)> {
    counts
        .iter()
        .map(|count| (count.scope_key.clone(), count.window.as_str().to_owned()))
        .collect()
}

#[tokio::test]
async fn usage_pages_cover_every_counter() {
    let database = TestDatabase::new().await;
    let admin = admin(&database).await;
    admin
        .upsert(&LimitSpec {
            scope: Scope::Workflow,
            per_hour: Some(100),
            per_day: Some(1000),
            ..LimitSpec::new("acme", "tools.http")
        })
        .await
        .unwrap();
    let client = database.client().await;
    for run in 0..25 {
        for kind in ["hour", "day"] {
            write_counter(&client, &format!("workflow:acme:run-{run:02}"), kind, run).await;
        }
    }

    let mut listed = Vec::new();
    let mut query = UsageQuery::new().page_size(7);
    let mut pages = 0;
    loop {
        let page = admin.usage("acme", "tools.http", &query).await.unwrap();
        pages += 1;
        assert!(
            page.counts.len() <= 7,
            "page {pages}: {}",
            page.counts.len()
        );
        listed.extend(page.counts);
        match page.next {
            Some(next) => {
                let text = next.to_string();
                assert_eq!(text.parse::<UsageCursor>().unwrap(), next, "{text}");
                query = query.after(next);
            }
            None => break,
        }
    }

    assert_eq!(pages, 8, "50 counters in pages of 7");
    assert_eq!(listed.len(), 50);
    let order = listing_order(&listed);
    let mut sorted = order.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(order, sorted, "listed once each, in keyset order");
    assert_eq!(listed[0].scope_key, "workflow:acme:run-00");
    assert_eq!(listed[0].limit, Some(1000), "the day window comes first");
    assert_eq!(listed[1].limit, Some(100));
    assert_eq!(listed[49].used, 24);
}

/// A cursor is a position, not an offset: counters written or deleted between two pages neither
/// repeat a counter nor skip one that exists throughout.
#[tokio::test]
async fn usage_cursor_survives_writes() {
    let database = TestDatabase::new().await;
    let admin = admin(&database).await;
    admin
        .upsert(&LimitSpec {
            scope: Scope::Workflow,
            per_day: Some(1000),
            ..LimitSpec::new("acme", "tools.http")
        })
        .await
        .unwrap();
    let client = database.client().await;
    for run in ["b", "d", "f", "h"] {
        write_counter(&client, &format!("workflow:acme:{run}"), "day", 1).await;
    }

    let first = admin
        .usage("acme", "tools.http", &UsageQuery::new().page_size(2))
        .await
        .unwrap();
    let keys: Vec<&str> = first.counts.iter().map(|c| c.scope_key.as_str()).collect();
    assert_eq!(keys, ["workflow:acme:b", "workflow:acme:d"]);

    // Before the cursor, at the cursor's key in another window, and after it.
    write_counter(&client, "workflow:acme:a", "day", 1).await;
    write_counter(&client, "workflow:acme:c", "day", 1).await;
    write_counter(&client, "workflow:acme:d", "hour", 1).await;
    write_counter(&client, "workflow:acme:e", "day", 1).await;
    client
        .execute(
            "DELETE FROM highway.tool_rate_limit_usage WHERE scope_key = 'workflow:acme:f'",
            &[],
        )
        .await
        .unwrap();

    let query = UsageQuery::new()
        .page_size(10)
        .after(first.next.expect("a second page"));
    let second = admin.usage("acme", "tools.http", &query).await.unwrap();
    let rest: Vec<(&str, &str)> = second
        .counts
        .iter()
        .map(|c| (c.scope_key.as_str(), c.window.as_str()))
        .collect();
    assert_eq!(
        rest,
        [
            ("workflow:acme:d", "hour"),
            ("workflow:acme:e", "day"),
            ("workflow:acme:h", "day")
        ]
    );
    assert_eq!(second.next, None);
}

#[tokio::test]
async fn usage_rejects_page_size_out_of_range() {
    let database = TestDatabase::new().await;
    let admin = admin(&database).await;

    for size in [0, MAX_USAGE_PAGE_SIZE + 1, u32::MAX] {
        let query = UsageQuery::new().page_size(size);
        let error = admin.usage("acme", "tools.http", &query).await.unwrap_err();

        assert!(
            matches!(error, AdminError::InvalidPage(_)),
            "{size}: {error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains(&format!("invalid page size {size}")),
            "{message}"
        );
        assert!(message.contains("1 to 1000"), "{message}");
    }
    let max = UsageQuery::new().page_size(MAX_USAGE_PAGE_SIZE);
    assert!(admin.usage("acme", "tools.http", &max).await.is_ok());
}

/// A cursor's text comes from clients, so every malformed one is an error that names it, and
/// none reaches PostgreSQL, whose text cannot hold a NUL character.
#[test]
fn cursor_rejects_malformed_text() {
    use base64::Engine;
    let encode = |plain: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(plain);

    let cases = [
        ("", "not a position".to_owned()),
        ("not base64!", "not URL-safe base64".to_owned()),
        ("aGVsbG8=", "not URL-safe base64".to_owned()),
        (&encode("day.0"), "not a position".to_owned()),
        (&encode("year.0.tenant:a"), "unknown window kind".to_owned()),
        (&encode("day.x.tenant:a"), "invalid window start".to_owned()),
        (
            &encode(&format!("day.{}.k", i64::MAX)),
            "invalid window start".to_owned(),
        ),
        (&encode("day.0.tenant:a\0b"), "NUL character".to_owned()),
        (
            &base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xff, 0xfe]),
            "not UTF-8".to_owned(),
        ),
        (&"A".repeat(10_000), "longer than any cursor".to_owned()),
    ];
    for (text, reason) in &cases {
        let error = text.parse::<UsageCursor>().unwrap_err().to_string();

        assert!(error.starts_with("invalid cursor"), "{text:.40}: {error}");
        assert!(error.contains(reason.as_str()), "{text:.40}: {error}");
        assert!(
            error.len() < 400,
            "the message quotes a bounded part: {error}"
        );
    }

    let plain = encode("day.1772409600000000.workflow:acme:r%3A1");
    let cursor: UsageCursor = plain.parse().unwrap();
    assert_eq!(cursor.to_string(), plain);
}

#[tokio::test]
async fn upsert_reports_creation() {
    let database = TestDatabase::new().await;
    let admin = admin(&database).await;

    let first = admin
        .upsert(&static_spec("acme", "tools.http", 5))
        .await
        .unwrap();
    let second = admin
        .upsert(&static_spec("acme", "tools.http", 6))
        .await
        .unwrap();
    admin.delete("acme", "tools.http").await.unwrap();
    let third = admin
        .upsert(&static_spec("acme", "tools.http", 7))
        .await
        .unwrap();

    assert!(first.created, "the first write creates the limit");
    assert!(!second.created, "the second write replaces it");
    assert!(third.created, "a write after the delete creates it again");
}

/// Of many writes that race to create one limit, exactly one creates it: the others wait for its
/// row lock and replace it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_upserts_create_once() {
    let database = TestDatabase::new().await;
    let store = database.store_with(|config| config.pool_size(8)).await;
    let admin = Admin::from_store(&store);

    let writes = (1..=8).map(|n| {
        let admin = admin.clone();
        tokio::spawn(async move { admin.upsert(&static_spec("acme", "tools.http", n)).await })
    });
    let outcomes = futures_util::future::join_all(writes).await;

    let created = outcomes
        .iter()
        .filter(|outcome| outcome.as_ref().unwrap().as_ref().unwrap().created)
        .count();
    assert_eq!(created, 1);
    assert_eq!(admin.list(None).await.unwrap().len(), 1);
}

/// A date is local midnight in the zone of the report's resource: its own `timezone`, else the
/// project's.
#[test]
fn preview_date_is_resource_midnight() {
    let store = highway_ratelimit::store::postgres::PostgresStore::new(
        highway_ratelimit::store::postgres::PostgresConfig::new(
            "postgres://nobody@127.0.0.1:1/none",
        ),
    )
    .unwrap();
    let admin = Admin::from_store(&store);
    let schedule = "project p \"P\" 2026-01-01 +1y {\n  timezone \"Europe/Berlin\"\n}\n\
                    resource berlin \"Berlin\"\n\
                    resource york \"New York\" {\n  timezone \"America/New_York\"\n}\n";
    let date = chrono::NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();

    let cases = [
        ("berlin", "2026-03-01T23:00:00Z"),
        ("york", "2026-03-02T05:00:00Z"),
    ];
    for (resource, expected) in cases {
        let preview = admin
            .preview(schedule, "p.tjp", Some(resource), date, 1)
            .unwrap();

        assert_eq!(
            preview
                .report
                .generated_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            expected,
            "{resource}"
        );
    }

    let error = admin.preview(schedule, "p.tjp", None, date, 1).unwrap_err();
    assert!(error.to_string().contains("several resources"), "{error}");
}
