//! The admin API against a real PostgreSQL: writing, reading, listing and deleting limits,
//! default-tenant fallback, validation, and the change notification sent with each write.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{Duration as ChronoDuration, SubsecRound, Utc, Weekday};
use chrono_tz::Tz;
use common::TestDatabase;
use highway_ratelimit::admin::{
    Admin, AdminError, CHANGES_CHANNEL, Change, LimitSpec, PostgresPolicies,
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
