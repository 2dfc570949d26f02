//! Bad input: rows of `highway.tool_rate_limits` damaged by hand and read back through the
//! layer, and extreme values of limits, costs, horizons and dates. Nothing may panic; each case
//! is either a clear error that names the tenant and tool or a documented fallback.

mod common;
mod reliability_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use common::TestDatabase;
use highway_ratelimit::admin::{Admin, LimitSpec, PostgresPolicies};
use highway_ratelimit::layer::{RateLimitError, RateLimitLayer, StaticPolicies};
use highway_ratelimit::policy::Policy;
use highway_ratelimit::report::Capacity;
use highway_ratelimit::report::{AvailabilityReport, ReportOptions};
use highway_ratelimit::schedule::{ParseOptions, Schedule};
use highway_ratelimit::store::MemoryStore;
use reliability_support::{Call, CapturedLogs, call, outcome};

/// Returns a schedule open around the clock with 5 calls a day, from `from` to `to` (YYYY-MM-DD).
fn open_schedule(from: &str, to: &str) -> String {
    format!(
        "project p \"P\" {from} - {to} {{\n  timezone \"UTC\"\n}}\n\n\
         resource tool \"Tool\" {{\n  workinghours mon - sun 00:00 - 24:00\n  \
         limits {{ dailymax 5 }}\n}}\n"
    )
}

fn current_schedule() -> String {
    let from = (Utc::now() - chrono::Duration::days(2))
        .format("%Y-%m-%d")
        .to_string();
    let to = (Utc::now() + chrono::Duration::days(60))
        .format("%Y-%m-%d")
        .to_string();
    open_schedule(&from, &to)
}

async fn setup(database: &TestDatabase) -> (Admin, RateLimitLayer) {
    let store = database.store().await;
    let admin = Admin::from_store(&store);
    let policies = PostgresPolicies::from_admin(&admin);
    let layer = RateLimitLayer::builder(Arc::new(policies), Arc::new(store))
        .cache_ttl(Duration::from_millis(1))
        .build();
    (admin, layer)
}

async fn scheduled(admin: &Admin, tenant: &str, tool: &str) {
    admin
        .upsert(&LimitSpec {
            schedule: Some(current_schedule()),
            ..LimitSpec::new(tenant, tool)
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_report_rendered_again() {
    let logs = CapturedLogs::global();
    let database = TestDatabase::new().await;
    let (admin, layer) = setup(&database).await;
    let client = database.client().await;
    let damaged = [
        ("tools.object", r#"{"not": "a report"}"#),
        ("tools.string", r#""report""#),
        ("tools.array", "[1, 2, 3]"),
        ("tools.null", "null"),
        ("tools.truncated", r#"{"timezone": "UTC", "windows": [{"#),
    ];
    for (tool, json) in damaged {
        scheduled(&admin, "acme", tool).await;
        // Text that is not JSON at all cannot be stored in the jsonb column: write SQL NULL then.
        let value: Option<serde_json::Value> = serde_json::from_str(json).ok();
        client
            .execute(
                "UPDATE highway.tool_rate_limits SET schedule_report = $1 WHERE tool_name = $2",
                &[&value, &tool],
            )
            .await
            .unwrap();

        // The definition still parses: the report is rendered again and the limit of 5 holds.
        for call_number in 1..=5 {
            let result = call(&layer, Call::new("acme", tool)).await;
            assert_eq!(outcome(&result), "admitted", "{tool}: call {call_number}");
        }
        let sixth = call(&layer, Call::new("acme", tool)).await;
        assert_eq!(outcome(&sixth), "quota_exhausted", "{tool}");
    }
    let text = logs.text();
    assert!(
        text.contains("stored report unreadable"),
        "the fallback is logged"
    );
    assert!(
        text.contains("tools.truncated"),
        "the warning names the tool"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_definition_names_tenant_and_tool() {
    let database = TestDatabase::new().await;
    let (admin, layer) = setup(&database).await;
    scheduled(&admin, "acme", "tools.broken").await;
    let client = database.client().await;
    client
        .execute(
            "UPDATE highway.tool_rate_limits \
             SET schedule_definition = 'project p \"P\" 2026-01-01 - {', schedule_report = '{}' \
             WHERE tool_name = 'tools.broken'",
            &[],
        )
        .await
        .unwrap();

    let result = call(&layer, Call::new("acme", "tools.broken")).await;
    let Err(RateLimitError::Rejected(rejection)) = &result else {
        panic!("a policy that cannot be read admitted a call")
    };
    assert_eq!(rejection.reason().as_str(), "policy_unavailable");
    let message = rejection.to_string();
    assert!(message.contains("acme"), "{message}");
    assert!(message.contains("tools.broken"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_columns_name_tenant_and_tool() {
    let database = TestDatabase::new().await;
    let (admin, layer) = setup(&database).await;
    let client = database.client().await;
    let cases = [
        ("tools.scope", "limit_scope = 'everyone'"),
        ("tools.zone", "timezone = 'Mars/Olympus_Mons'"),
        ("tools.week", "week_start = 'funday'"),
        ("tools.negative", "requests_per_day = -1"),
    ];
    for (tool, damage) in cases {
        admin
            .upsert(&LimitSpec {
                per_day: Some(5),
                ..LimitSpec::new("acme", tool)
            })
            .await
            .unwrap();
        // A CHECK constraint may reject the damage outright; that protects the row too.
        let written = client
            .execute(
                &format!("UPDATE highway.tool_rate_limits SET {damage} WHERE tool_name = $1"),
                &[&tool],
            )
            .await;
        let result = call(&layer, Call::new("acme", tool)).await;
        match written {
            Err(error) => {
                eprintln!("{tool}: the database rejected the damage: {error}");
                assert_eq!(outcome(&result), "admitted", "{tool}");
            }
            Ok(_) => {
                let Err(RateLimitError::Rejected(rejection)) = &result else {
                    panic!("{tool}: a damaged row admitted a call")
                };
                let message = rejection.to_string();
                assert_eq!(
                    rejection.reason().as_str(),
                    "policy_unavailable",
                    "{message}"
                );
                assert!(
                    message.contains("acme") && message.contains(tool),
                    "{message}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_limits_and_costs() {
    let database = TestDatabase::new().await;
    let (admin, layer) = setup(&database).await;
    let max = i32::MAX as u64;
    for (tool, per_day) in [("tools.off", 0), ("tools.max", max)] {
        admin
            .upsert(&LimitSpec {
                per_day: Some(per_day),
                ..LimitSpec::new("acme", tool)
            })
            .await
            .unwrap_or_else(|error| panic!("per_day {per_day}: {error}"));
    }
    let too_large = admin
        .upsert(&LimitSpec {
            per_day: Some(max + 1),
            ..LimitSpec::new("acme", "tools.over")
        })
        .await
        .expect_err("2^31 does not fit the INT column");
    assert!(
        too_large.to_string().contains(&(max + 1).to_string()),
        "{too_large}"
    );

    // A limit of 0 switches the tool off.
    let off = call(&layer, Call::new("acme", "tools.off")).await;
    assert_eq!(outcome(&off), "disabled");
    let off_costly = call(
        &layer,
        Call {
            cost: u64::MAX,
            ..Call::new("acme", "tools.off")
        },
    )
    .await;
    assert_ne!(outcome(&off_costly), "admitted");

    // The largest limit: a cost of u64::MAX never fits; a cost of the limit fits once.
    let huge = call(
        &layer,
        Call {
            cost: u64::MAX,
            ..Call::new("acme", "tools.max")
        },
    )
    .await;
    assert_eq!(outcome(&huge), "cost_exceeds_limit");
    let whole = call(
        &layer,
        Call {
            cost: max,
            ..Call::new("acme", "tools.max")
        },
    )
    .await;
    assert_eq!(outcome(&whole), "admitted");
    let one_more = call(&layer, Call::new("acme", "tools.max")).await;
    assert_eq!(outcome(&one_more), "quota_exhausted");

    // A cost of u64::MAX under a limit that counts nothing is admitted uncounted.
    admin
        .upsert(&LimitSpec {
            enabled: false,
            ..LimitSpec::new("acme", "tools.free")
        })
        .await
        .unwrap();
    let free = call(
        &layer,
        Call {
            cost: u64::MAX,
            ..Call::new("acme", "tools.free")
        },
    )
    .await;
    assert_eq!(outcome(&free), "admitted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn horizons_of_a_day_and_ten_years() {
    let database = TestDatabase::new().await;
    let store = database.store().await;
    let from = (Utc::now() - chrono::Duration::days(2))
        .format("%Y-%m-%d")
        .to_string();
    let to = (Utc::now() + chrono::Duration::days(11 * 366))
        .format("%Y-%m-%d")
        .to_string();
    for days in [1_u32, 3650] {
        let admin = Admin::from_store(&store).with_horizon_days(days);
        let started = Instant::now();
        let written = admin
            .upsert(&LimitSpec {
                schedule: Some(open_schedule(&from, &to)),
                ..LimitSpec::new("acme", format!("tools.days{days}"))
            })
            .await
            .unwrap_or_else(|error| panic!("horizon of {days} days: {error}"));
        let elapsed = started.elapsed();
        let valid_until = written.limit.schedule.unwrap().valid_until.unwrap();
        let expected = Utc::now() + chrono::Duration::days(i64::from(days));
        assert!(
            (valid_until - expected).num_days().abs() <= 1,
            "{days} days: valid until {valid_until}"
        );
        eprintln!("horizon {days} days: written in {elapsed:?}");

        let policies = PostgresPolicies::from_admin(&admin);
        let layer = RateLimitLayer::builder(Arc::new(policies), Arc::new(store.clone())).build();
        let result = call(&layer, Call::new("acme", &format!("tools.days{days}"))).await;
        assert_eq!(outcome(&result), "admitted", "{days} days");
    }
}

fn report(definition: &str, from: DateTime<Utc>, days: u32) -> Result<AvailabilityReport, String> {
    let options = ParseOptions {
        file_name: "extreme.tjp".into(),
        base_dir: None,
    };
    let schedule = Schedule::parse(definition, &options).map_err(|error| error.to_string())?;
    let options = ReportOptions {
        resource: None,
        from,
        days,
        generated_at: from,
    };
    AvailabilityReport::generate(&schedule, &options)
        .map(|generated| generated.report)
        .map_err(|error| error.to_string())
}

#[test]
fn dates_at_the_ends_of_the_range() {
    let epoch = Utc.with_ymd_and_hms(1970, 1, 1, 0, 0, 0).unwrap();
    let first = report(&open_schedule("1970-01-01", "1970-12-31"), epoch, 7)
        .expect("a schedule in 1970 renders");
    assert!(first.is_allowed(epoch + chrono::Duration::hours(1)));

    let last_day = Utc.with_ymd_and_hms(9999, 12, 25, 0, 0, 0).unwrap();
    let last = report(&open_schedule("9999-01-01", "9999-12-31"), last_day, 3)
        .expect("a schedule in 9999 renders");
    assert!(last.is_allowed(last_day + chrono::Duration::hours(1)));

    // A horizon that runs past the project's end, at the end of the range: an error or a
    // shorter report, never a panic.
    match report(&open_schedule("9999-01-01", "9999-12-31"), last_day, 3650) {
        Ok(report) => eprintln!("a horizon past 9999 ends at {}", report.valid_until),
        Err(message) => {
            eprintln!("a horizon past 9999: {message}");
            assert!(!message.is_empty());
        }
    }
    // Dates outside the range are a parse error that names the date.
    for (from, to, named) in [
        ("1969-12-31", "1970-02-01", "1969-12-31"),
        ("9999-12-01", "10000-01-01", "10000"),
    ] {
        let message = report(&open_schedule(from, to), epoch, 7)
            .expect_err("a date outside 1970 to 9999 is rejected");
        assert!(message.contains(named), "{message}");
    }
}

/// PostgreSQL's text cannot hold a NUL character, so reading the policy of a tenant or tool with
/// one failed on every call, a 503 that no retry could fix, even for a fail-open policy. The
/// layer rejects such an id as invalid before any source or store is asked, whatever they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_in_ids_is_rejected() {
    let database = TestDatabase::new().await;
    let (admin, layer) = setup(&database).await;
    admin
        .upsert(&LimitSpec {
            per_minute: Some(1),
            fail_open: true,
            ..LimitSpec::new("default", "tools.http")
        })
        .await
        .unwrap();

    let calls = [
        ("tenant", Call::new("glob\0ex", "tools.http")),
        ("tool name", Call::new("globex", "tools.http\0")),
    ];
    for (id, request) in calls {
        for attempt in 1..=3 {
            let result = call(&layer, request).await;

            assert_eq!(outcome(&result), "missing_identity", "{id}, call {attempt}");
            let message = result.unwrap_err().to_string();
            assert!(message.contains(&format!("the {id}")), "{message}");
            assert!(message.contains("NUL"), "{message}");
        }
    }

    let memory = RateLimitLayer::builder(
        Arc::new(StaticPolicies::new().with(Policy::new(
            "default",
            "tools.http",
            Capacity {
                per_minute: Some(1),
                ..Capacity::UNLIMITED
            },
        ))),
        Arc::new(MemoryStore::new()),
    )
    .build();
    let result = call(&memory, Call::new("glob\0ex", "tools.http")).await;
    assert_eq!(outcome(&result), "missing_identity", "in-process store");
}
