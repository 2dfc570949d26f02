//! The email service of a Highway tenant, rate limited by its business calendar.
//!
//! The schedule in `examples/schedules/email.tjp` allows emails on weekdays from 09:00 to 17:00
//! New York time: 500 a day (200 on Fridays), 100 an hour and 10 a minute, with Thanksgiving off.
//! The example renders its availability report, shows it as a week grid and wraps a simulated
//! email tool in `RateLimitLayer`. It then drives a newsletter campaign through Thanksgiving week.
//! A simulated clock starts on Monday 23 November 2026 at 08:30 and jumps to each retry time.
//!
//! Calls are counted in process by default. With `DATABASE_URL` set, they are counted in
//! PostgreSQL instead: the example applies the migrations and clears its own counters first.
//!
//! Run with `cargo run --example email_limits`.

use std::error::Error;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use highway_ratelimit::clock::ManualClock;
use highway_ratelimit::layer::{
    RateLimitError, RateLimitLayer, Rejection, RejectionReason, StaticPolicies, TenantId,
};
use highway_ratelimit::policy::{Policy, PolicySchedule};
use highway_ratelimit::report::{AvailabilityReport, ReportOptions, WeekView};
use highway_ratelimit::schedule::Schedule;
use highway_ratelimit::store::postgres::{PostgresConfig, PostgresStore};
use highway_ratelimit::store::{MemoryStore, TokenStore};
use highway_ratelimit::window::{WindowKind, start_of_day};
use tower::{Service, ServiceExt, service_fn};

const TOOL: &str = "tools.email.send";
const TENANT: &str = "example-newsletters";
const ZONE: Tz = chrono_tz::America::New_York;

type Outcome = Result<u64, RateLimitError<std::convert::Infallible>>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", with_causes(&*error));
            std::process::ExitCode::FAILURE
        }
    }
}

/// Returns the message of `error` followed by those of its causes, which carry the reason, such
/// as "Connection refused" under "error connecting to server".
fn with_causes(error: &dyn Error) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let text = inner.to_string();
        if !message.contains(&text) {
            message.push_str(&format!(": {text}"));
        }
        cause = inner.source();
    }
    message
}

async fn run() -> Result<(), Box<dyn Error>> {
    // The configuration phase: parse the schedule and compute the report for the week.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/schedules/email.tjp");
    let definition = std::fs::read_to_string(&path)?;
    let schedule = Schedule::from_file(&path)?;
    let resource = schedule
        .resource("email")
        .ok_or("the schedule has no `email` resource")?;
    let monday = start_of_day(date(2026, 11, 23), ZONE);
    let options = ReportOptions {
        resource: Some(resource.id.clone()),
        from: monday,
        days: 14,
        generated_at: monday,
    };
    let report = AvailabilityReport::generate(&schedule, &options)?.report;
    println!("The schedule of the email service for Thanksgiving week and the week after:\n");
    let view = WeekView::new(&report, monday).describe_resource(&schedule, resource);
    println!("{view}\n");

    // The runtime phase: a policy with the schedule's report, a token store and the layer.
    let schedule = PolicySchedule::render("email.tjp", definition, &options)?;
    let policy = Policy::scheduled(TENANT, TOOL, schedule);
    let store = token_store().await?;
    let clock = ManualClock::starting_at(at(monday, 8, 30));
    let limits = RateLimitLayer::builder(Arc::new(StaticPolicies::new().with(policy)), store)
        .tool(TOOL)
        .clock(clock.clone())
        .build();

    // The tool: sends one email and returns how many it has sent so far.
    let sent = Arc::new(AtomicU64::new(0));
    let send_email = {
        let sent = sent.clone();
        service_fn(move |_email: http::Request<String>| {
            let total = sent.fetch_add(1, Ordering::SeqCst) + 1;
            async move { Ok::<_, std::convert::Infallible>(total) }
        })
    };
    let mut service = tower::Layer::layer(&limits, send_email);

    println!("Monday 08:30, before business hours:");
    let outcome = send(&mut service).await;
    println!("  {}", describe(&outcome));
    if let Some(retry_at) = outcome
        .as_ref()
        .err()
        .and_then(RateLimitError::rejection)
        .and_then(Rejection::retry_at)
    {
        sleep_until(&clock, retry_at);
    }

    println!("\nA campaign of 600 emails, each sent as soon as the limits allow:");
    let mut minute_waits = 0;
    while sent.load(Ordering::SeqCst) < 600 {
        let outcome = send(&mut service).await;
        let Err(RateLimitError::Rejected(rejection)) = &outcome else {
            continue;
        };
        let Some(retry_at) = rejection.retry_at() else {
            println!("  {}", describe(&outcome));
            break;
        };
        match rejection.reason() {
            RejectionReason::QuotaExhausted {
                window: WindowKind::Minute,
                ..
            } => minute_waits += 1,
            RejectionReason::QuotaExhausted {
                window: WindowKind::Day,
                ..
            } => {
                println!(
                    "  {} emails sent; {}",
                    sent.load(Ordering::SeqCst),
                    describe(&outcome)
                );
                break;
            }
            _ => println!(
                "  {} emails sent; {}",
                sent.load(Ordering::SeqCst),
                describe(&outcome)
            ),
        }
        sleep_until(&clock, retry_at);
    }
    println!("  ({minute_waits} times the campaign waited for the next minute on the way.)");

    println!("\nThanksgiving, Thursday 10:00:");
    sleep_until(&clock, at(monday + chrono::Duration::days(3), 10, 0));
    let outcome = send(&mut service).await;
    println!("  {}", describe(&outcome));

    println!("\nThe Monday after, 09:00:");
    sleep_until(&clock, at(monday + chrono::Duration::days(7), 9, 0));
    let outcome = send(&mut service).await;
    println!("  {}", describe(&outcome));
    Ok(())
}

/// Returns the in-process store, or the PostgreSQL store when `DATABASE_URL` is set.
/// An empty `DATABASE_URL` counts as unset.
async fn token_store() -> Result<Arc<dyn TokenStore>, Box<dyn Error>> {
    let url = std::env::var("DATABASE_URL").unwrap_or_default();
    if url.trim().is_empty() {
        println!("Counting calls in process (set DATABASE_URL to count them in PostgreSQL).\n");
        return Ok(Arc::new(MemoryStore::new()));
    }
    let store = postgres_store(url).await.map_err(|error| {
        format!(
            "cannot count in the PostgreSQL database of DATABASE_URL: {}; check that it names \
             a running server, or unset it to count in process",
            with_causes(&*error)
        )
    })?;
    println!("Counting calls in PostgreSQL (DATABASE_URL is set).\n");
    Ok(Arc::new(store))
}

/// Opens the store at `url`, migrates it and clears the counters of an earlier run.
async fn postgres_store(url: String) -> Result<PostgresStore, Box<dyn Error>> {
    let store = PostgresStore::new(PostgresConfig::new(url))?;
    store.migrate().await?;
    // The campaign runs on fixed dates: clear what an earlier run of this example counted.
    store
        .pool()
        .get()
        .await?
        .execute(
            "DELETE FROM highway.tool_rate_limit_usage WHERE tenant_id = $1 AND tool_name = $2",
            &[&TENANT, &TOOL],
        )
        .await?;
    Ok(store)
}

async fn send<S>(service: &mut S) -> Outcome
where
    S: Service<
            http::Request<String>,
            Response = u64,
            Error = RateLimitError<std::convert::Infallible>,
        >,
{
    let mut email = http::Request::new("Our November newsletter".to_owned());
    email.extensions_mut().insert(TenantId::new(TENANT));
    service.ready().await?.call(email).await
}

/// Advances the simulated clock to `instant`.
fn sleep_until(clock: &ManualClock, instant: DateTime<Utc>) {
    clock.set(instant);
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Ok(total) => format!("sent (email number {total})"),
        Err(RateLimitError::Rejected(rejection)) => describe_rejection(rejection),
        Err(RateLimitError::Service(never)) => match *never {},
    }
}

fn describe_rejection(rejection: &Rejection) -> String {
    let when = local(rejection.decided_at());
    let retry = rejection.retry_at().map_or_else(
        || "no retry time is known".to_owned(),
        |retry| format!("retry at {}", local(retry)),
    );
    match rejection.reason() {
        RejectionReason::OutsideHours { .. } => {
            format!("rejected at {when}: outside business hours; {retry}")
        }
        RejectionReason::BlockedDate { date, .. } => {
            format!("rejected at {when}: {date} is a holiday; {retry}")
        }
        RejectionReason::QuotaExhausted { window, limit, .. } => {
            format!("rejected at {when}: the {window} quota of {limit} is used up; {retry}")
        }
        other => format!("rejected at {when}: {other}"),
    }
}

fn local(instant: DateTime<Utc>) -> String {
    instant
        .with_timezone(&ZONE)
        .format("%a %d %b %H:%M %Z")
        .to_string()
}

fn date(year: i32, month: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, month, day).expect("the example's dates exist")
}

/// Returns the local time `hour:minute` on the day that starts at `midnight`.
fn at(midnight: DateTime<Utc>, hour: i64, minute: i64) -> DateTime<Utc> {
    midnight + chrono::Duration::hours(hour) + chrono::Duration::minutes(minute)
}
