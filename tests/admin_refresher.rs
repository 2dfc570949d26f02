//! The report refresher against a real PostgreSQL: reports about to expire are rendered again,
//! stored and announced; schedules that stop rendering keep their old report.

mod common;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use common::TestDatabase;
use highway_ratelimit::admin::{Admin, LimitSpec, PostgresPolicies, Refresher};
use highway_ratelimit::policy::PolicySource;

/// Returns a schedule in which mail goes out Monday to Friday, 09:00 to 17:00 Berlin time, at
/// most 500 a day, in a time frame from two days ago to `end`.
fn mail_schedule(end: DateTime<Utc>) -> String {
    let start = (Utc::now() - Duration::days(2)).format("%Y-%m-%d");
    let end = end.format("%Y-%m-%d");
    format!(
        "project mail \"Mail\" {start} - {end} {{\n  timezone \"Europe/Berlin\"\n}}\n\n\
         resource smtp \"SMTP relay\" {{\n  workinghours mon - fri 09:00 - 17:00\n  \
         workinghours sat, sun off\n  limits {{ dailymax 500 }}\n}}\n"
    )
}

async fn valid_until(admin: &Admin, tenant: &str, tool: &str) -> DateTime<Utc> {
    let limit = admin.get(tenant, tool).await.unwrap();
    limit
        .schedule
        .and_then(|schedule| schedule.valid_until)
        .expect("a stored report")
}

#[tokio::test]
async fn report_about_to_expire_is_replaced() {
    let database = TestDatabase::new().await;
    let admin = Admin::from_store(&database.store().await).with_horizon_days(7);
    let spec = LimitSpec {
        schedule: Some(mail_schedule(Utc::now() + Duration::days(60))),
        ..LimitSpec::new("acme", "tools.email.send")
    };
    admin
        .upsert(&spec)
        .await
        .unwrap_or_else(|error| panic!("the schedule is valid: {error}"));
    let first = valid_until(&admin, "acme", "tools.email.send").await;

    let refresher = Refresher::new(&admin).with_lead_time(Duration::days(2));
    let now = Utc::now().trunc_subsecs(0);
    let early = refresher.run_once_at(now).await.unwrap();
    assert!(
        early.refreshed.is_empty(),
        "a fresh report is left alone: {early:?}"
    );
    assert_eq!(valid_until(&admin, "acme", "tools.email.send").await, first);

    // Six days later the report expires within the lead time of two days.
    let later = now + Duration::days(6);
    let summary = refresher.run_once_at(later).await.unwrap();
    assert_eq!(
        summary.refreshed,
        [("acme".to_owned(), "tools.email.send".to_owned())]
    );
    assert!(summary.failed.is_empty(), "{summary:?}");
    assert!(summary.ending.is_empty(), "{summary:?}");

    let second = valid_until(&admin, "acme", "tools.email.send").await;
    assert!(
        second >= later + Duration::days(7),
        "the new report covers 7 days from the pass: {second}"
    );
    let policy = PostgresPolicies::from_admin(&admin)
        .resolve("acme", "tools.email.send")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(policy.schedule.unwrap().report.valid_until, second);

    // The replaced report is fresh for the same pass.
    let again = refresher.run_once_at(later).await.unwrap();
    assert!(again.refreshed.is_empty(), "{again:?}");
}

#[tokio::test]
async fn ending_time_frame_is_reported() {
    let database = TestDatabase::new().await;
    let admin = Admin::from_store(&database.store().await).with_horizon_days(7);
    let end = Utc::now() + Duration::days(4);
    let spec = LimitSpec {
        schedule: Some(mail_schedule(end)),
        ..LimitSpec::new("acme", "tools.email.send")
    };
    let written = admin
        .upsert(&spec)
        .await
        .unwrap_or_else(|error| panic!("the schedule is valid: {error}"));
    assert!(
        !written.warnings.is_empty(),
        "writing a schedule that ends within the horizon warns"
    );

    let summary = Refresher::new(&admin)
        .run_once_at(Utc::now() + Duration::days(6))
        .await
        .unwrap();
    assert_eq!(summary.refreshed.len(), 1);
    assert_eq!(summary.ending.len(), 1, "{summary:?}");
    let (tenant, tool, time_frame_end) = &summary.ending[0];
    assert_eq!(
        (tenant.as_str(), tool.as_str()),
        ("acme", "tools.email.send")
    );
    assert!(*time_frame_end < Utc::now() + Duration::days(5));
}

#[tokio::test]
async fn unreadable_report_is_rendered_on_read() {
    let database = TestDatabase::new().await;
    let admin = Admin::from_store(&database.store().await);
    let spec = LimitSpec {
        schedule: Some(mail_schedule(Utc::now() + Duration::days(60))),
        ..LimitSpec::new("acme", "tools.email.send")
    };
    admin
        .upsert(&spec)
        .await
        .unwrap_or_else(|error| panic!("the schedule is valid: {error}"));

    let client = database.client().await;
    client
        .execute(
            "UPDATE highway.tool_rate_limits SET schedule_report = '{\"version\": \"nine\"}'",
            &[],
        )
        .await
        .unwrap();

    let policy = PostgresPolicies::from_admin(&admin)
        .resolve("acme", "tools.email.send")
        .await
        .unwrap()
        .unwrap();
    let report = policy.schedule.expect("the schedule is kept").report;
    assert!(!report.windows.is_empty());
    assert!(
        report
            .windows
            .iter()
            .all(|window| window.capacity.per_day == Some(500))
    );
}

#[tokio::test]
async fn broken_schedule_keeps_old_report() {
    let database = TestDatabase::new().await;
    let admin = Admin::from_store(&database.store().await);

    // A row written by hand, bypassing validation, whose report expires within the lead time.
    let old_until = (Utc::now() + Duration::hours(3)).trunc_subsecs(6);
    let client = database.client().await;
    client
        .execute(
            "INSERT INTO highway.tool_rate_limits (tenant_id, tool_name, schedule_definition, schedule_report, schedule_report_valid_until) \
             VALUES ('acme', 'tools.fax', 'project broken \"Broken\" 2026-01-01 +1y {\n  timezone \"Mars/Olympus\"\n}\n', '{}', $1)",
            &[&old_until],
        )
        .await
        .unwrap();

    let summary = Refresher::new(&admin).run_once().await.unwrap();
    assert!(summary.refreshed.is_empty());
    assert_eq!(summary.failed.len(), 1, "{summary:?}");
    let (tenant, tool, error) = &summary.failed[0];
    assert_eq!((tenant.as_str(), tool.as_str()), ("acme", "tools.fax"));
    assert!(
        error.contains("acme/tools.fax.tjp:"),
        "the error names the stored schedule: {error}"
    );
    assert_eq!(valid_until(&admin, "acme", "tools.fax").await, old_until);

    // Reading it back names the tenant and tool, since neither the report nor the schedule works.
    let error = PostgresPolicies::from_admin(&admin)
        .resolve("acme", "tools.fax")
        .await
        .unwrap_err();
    let message = std::error::Error::source(&error)
        .expect("the error has a cause")
        .to_string();
    assert!(
        message.contains("\"acme\"") && message.contains("\"tools.fax\""),
        "{message}"
    );
}

#[tokio::test]
async fn zero_interval_runs() {
    let database = TestDatabase::new().await;
    let admin = Admin::from_store(&database.store().await);

    let running = tokio::spawn(
        Refresher::new(&admin)
            .with_interval(std::time::Duration::ZERO)
            .run(),
    );
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(!running.is_finished(), "the refresher loop stopped");
    running.abort();
}
