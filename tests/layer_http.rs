//! The rate limit layer inside a real axum `Router`: statuses, `Retry-After` and the IETF
//! `RateLimit-Policy` / `RateLimit` fields.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::routing::post;
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use highway_ratelimit::clock::TokioClock;
use highway_ratelimit::layer::{
    Caller, RateLimitBuilder, RateLimitLayer, StaticPolicies, TenantId,
};
use highway_ratelimit::policy::Policy;
use highway_ratelimit::report::Capacity;
use highway_ratelimit::store::{
    ConsumeRequest, Decision, MemoryStore, StoreError, TokenStore, WindowUsage,
};
use highway_ratelimit::window::WindowKind;
use http::StatusCode;
use http_body_util::BodyExt;
use tower::ServiceExt;

const TOOL: &str = "tools.email.send";

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("test instants are RFC 3339")
        .with_timezone(&Utc)
}

/// Stands in for authentication: copies the `x-tenant` header into a `TenantId` extension.
async fn authenticate(mut request: Request) -> Request {
    let tenant = request
        .headers()
        .get("x-tenant")
        .and_then(|value| value.to_str().ok())
        .map(TenantId::new);
    if let Some(tenant) = tenant {
        request.extensions_mut().insert(tenant);
    }
    request
}

fn app(layer: RateLimitLayer) -> Router {
    Router::new()
        .route(
            "/send",
            post(|| async { "sent" }).route_layer(layer.into_http()),
        )
        .layer(axum::middleware::map_request(authenticate))
}

fn limited_app(capacity: Capacity, start: &str) -> Router {
    let policies = StaticPolicies::new().with(Policy::new("default", TOOL, capacity));
    app(
        RateLimitLayer::builder(Arc::new(policies), Arc::new(MemoryStore::new()))
            .tool(TOOL)
            .clock(TokioClock::starting_at(utc(start)))
            .build(),
    )
}

fn send(tenant: Option<&str>) -> Request {
    let mut request = http::Request::post("/send");
    if let Some(tenant) = tenant {
        request = request.header("x-tenant", tenant);
    }
    request.body(Body::empty()).unwrap()
}

fn header<'a>(response: &'a http::Response<Body>, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("the response has no {name} field"))
        .to_str()
        .unwrap()
}

async fn body(response: http::Response<Body>) -> String {
    String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn exhausted_quota_is_429_with_fields() {
    let app = limited_app(
        Capacity {
            per_minute: Some(2),
            per_day: Some(100),
            ..Capacity::UNLIMITED
        },
        "2026-03-02T10:00:00Z",
    );

    for remaining in [1, 0] {
        let response = app.clone().oneshot(send(Some("acme"))).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            header(&response, "ratelimit-policy"),
            r#""minute";q=2;w=60, "day";q=100;w=86400"#
        );
        let day_remaining = 98 + remaining;
        assert_eq!(
            header(&response, "ratelimit"),
            format!(r#""minute";r={remaining};t=60, "day";r={day_remaining};t=50400"#)
        );
        assert_eq!(body(response).await, "sent");
    }
    tokio::time::advance(Duration::from_millis(500)).await;
    let response = app.clone().oneshot(send(Some("acme"))).await.unwrap();

    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        header(&response, "retry-after"),
        "60",
        "59.5 s rounds up to 60"
    );
    assert_eq!(
        header(&response, "ratelimit-policy"),
        r#""minute";q=2;w=60, "day";q=100;w=86400"#
    );
    assert_eq!(
        header(&response, "ratelimit"),
        r#""minute";r=0;t=60, "day";r=98;t=50400"#
    );
    let text = body(response).await;
    assert!(text.contains("minute quota of 2 is exhausted"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn other_tenant_is_not_limited() {
    let app = limited_app(
        Capacity {
            per_minute: Some(1),
            ..Capacity::UNLIMITED
        },
        "2026-03-02T10:00:00Z",
    );

    assert_eq!(
        app.clone()
            .oneshot(send(Some("acme")))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.clone()
            .oneshot(send(Some("acme")))
            .await
            .unwrap()
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );

    assert_eq!(
        app.oneshot(send(Some("globex"))).await.unwrap().status(),
        StatusCode::OK
    );
}

#[tokio::test(start_paused = true)]
async fn missing_tenant_is_500() {
    let app = limited_app(
        Capacity {
            per_minute: Some(1),
            ..Capacity::UNLIMITED
        },
        "2026-03-02T10:00:00Z",
    );

    let response = app.oneshot(send(None)).await.unwrap();

    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(response.headers().get("retry-after").is_none());
    assert!(body(response).await.contains("TenantId"));
}

#[tokio::test(start_paused = true)]
async fn overlong_tenant_is_400() {
    let app = limited_app(
        Capacity {
            per_minute: Some(1),
            ..Capacity::UNLIMITED
        },
        "2026-03-02T10:00:00Z",
    );
    let tenant = "t".repeat(Caller::MAX_ID_BYTES + 1);

    let response = app.oneshot(send(Some(&tenant))).await.unwrap();

    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(body(response).await.contains("513 bytes"));
}

#[tokio::test(start_paused = true)]
async fn cost_beyond_limit_is_413() {
    let policies = StaticPolicies::new().with(Policy::new(
        "default",
        TOOL,
        Capacity {
            per_minute: Some(2),
            ..Capacity::UNLIMITED
        },
    ));
    let layer = RateLimitLayer::builder(Arc::new(policies), Arc::new(MemoryStore::new()))
        .tool(TOOL)
        .build();
    let app = Router::new()
        .route(
            "/send",
            post(|| async { "sent" }).route_layer(layer.into_http()),
        )
        .layer(axum::middleware::map_request(
            |mut request: Request| async move {
                request.extensions_mut().insert(TenantId::new("acme"));
                request
                    .extensions_mut()
                    .insert(highway_ratelimit::layer::Cost::new(3).unwrap());
                request
            },
        ));

    let response = app.oneshot(send(None)).await.unwrap();

    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(response.headers().get("retry-after").is_none());
}

/// A schedule with the default working hours, 09:00 to 17:00 on weekdays in UTC, that allows
/// 10 calls a day, of which at most 2 before noon.
const PACED_SCHEDULE: &str = r#"
project paced "Paced email" 2026-01-01 - 2027-01-01 {
  timezone "UTC"
}

resource email "Email service" {
  limits {
    dailymax 10
    dailymax 2 { hours 09:00 - 12:00 }
  }
}
"#;

/// Returns a router whose calls from `acme` cost `cost` units, limited by [`PACED_SCHEDULE`] from
/// 10:00 on Monday 2 March 2026.
fn paced_app(cost: u64) -> Router {
    let options = highway_ratelimit::report::ReportOptions {
        resource: None,
        from: utc("2026-03-02T00:00:00Z"),
        days: 7,
        generated_at: utc("2026-03-02T00:00:00Z"),
    };
    let schedule =
        highway_ratelimit::policy::PolicySchedule::render("paced.tjp", PACED_SCHEDULE, &options)
            .expect("the paced schedule renders");
    let policies = StaticPolicies::new().with(Policy::scheduled("default", TOOL, schedule));
    let layer = RateLimitLayer::builder(Arc::new(policies), Arc::new(MemoryStore::new()))
        .tool(TOOL)
        .clock(TokioClock::starting_at(utc("2026-03-02T10:00:00Z")))
        .build();
    Router::new()
        .route(
            "/send",
            post(|| async { "sent" }).route_layer(layer.into_http()),
        )
        .layer(axum::middleware::map_request(
            move |mut request: Request| async move {
                request.extensions_mut().insert(TenantId::new("acme"));
                request
                    .extensions_mut()
                    .insert(highway_ratelimit::layer::Cost::new(cost).unwrap());
                request
            },
        ))
}

#[tokio::test(start_paused = true)]
async fn cost_above_slot_is_429_until_rise() {
    let app = paced_app(5);

    let response = app.oneshot(send(None)).await.unwrap();

    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        header(&response, "retry-after"),
        "7200",
        "until noon, when the day allows 10"
    );
    assert_eq!(
        header(&response, "ratelimit-policy"),
        r#""day";q=2;w=86400"#,
        "the day limit in force before noon"
    );
    assert_eq!(
        header(&response, "ratelimit"),
        r#""day";r=0;t=7200"#,
        "nothing of the morning's limit serves a cost of 5, and t matches Retry-After"
    );
    let text = body(response).await;
    assert!(
        text.contains("a cost of 5 is more than the day limit of 2 in force now"),
        "{text}"
    );
    assert!(text.contains("2026-03-02 12:00:00 UTC"), "{text}");
}

/// The morning's 2 calls use up the day limit in force, which rises to 10 at noon, while the day
/// counter resets only at midnight. `t` of the rejecting window names noon, as `Retry-After` does.
#[tokio::test(start_paused = true)]
async fn quota_429_resets_at_rise() {
    let app = paced_app(1);
    for _ in 0..2 {
        let admitted = app.clone().oneshot(send(None)).await.unwrap();
        assert_eq!(admitted.status(), StatusCode::OK);
    }

    let response = app.oneshot(send(None)).await.unwrap();

    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&response, "retry-after"), "7200", "until noon");
    assert_eq!(
        header(&response, "ratelimit-policy"),
        r#""day";q=2;w=86400"#
    );
    assert_eq!(
        header(&response, "ratelimit"),
        r#""day";r=0;t=7200"#,
        "the limit rises at noon, before the counter resets at midnight"
    );
}

#[tokio::test(start_paused = true)]
async fn missing_policy_is_403() {
    let layer = RateLimitLayer::builder(
        Arc::new(StaticPolicies::new()),
        Arc::new(MemoryStore::new()),
    )
    .tool(TOOL)
    .build();

    let response = app(layer).oneshot(send(Some("acme"))).await.unwrap();

    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

/// A token store whose database is down.
struct DownStore;

impl TokenStore for DownStore {
    fn consume<'a>(
        &'a self,
        _request: ConsumeRequest<'a>,
    ) -> BoxFuture<'a, Result<Decision, StoreError>> {
        Box::pin(async { Err(StoreError::Unavailable("connection refused".into())) })
    }

    fn peek<'a>(
        &'a self,
        request: ConsumeRequest<'a>,
    ) -> BoxFuture<'a, Result<Decision, StoreError>> {
        self.consume(request)
    }
}

#[tokio::test(start_paused = true)]
async fn zero_limit_is_403_without_retry_after() {
    let app = limited_app(
        Capacity {
            per_minute: Some(0),
            ..Capacity::UNLIMITED
        },
        "2026-03-02T10:00:00Z",
    );

    let response = app.oneshot(send(Some("acme"))).await.unwrap();

    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.headers().get("retry-after").is_none());
    assert!(body(response).await.contains("switches the tool off"));
}

/// Returns a builder of a fail-closed limit of 5 calls a minute on a store whose database is down.
fn fail_closed_on_down_store() -> RateLimitBuilder {
    let policies = StaticPolicies::new().with(Policy::new(
        "default",
        TOOL,
        Capacity {
            per_minute: Some(5),
            ..Capacity::UNLIMITED
        },
    ));
    RateLimitLayer::builder(Arc::new(policies), Arc::new(DownStore)).tool(TOOL)
}

#[tokio::test(start_paused = true)]
async fn store_down_is_503_when_failing_closed() {
    let layer = fail_closed_on_down_store().build();

    let response = app(layer).oneshot(send(Some("acme"))).await.unwrap();

    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&response, "retry-after"), "5");
    assert!(
        response.headers().get("ratelimit").is_none(),
        "no counter was read"
    );
    let body = body(response).await;
    assert!(body.contains("the token store failed"), "{body}");
    assert!(
        !body.contains("connection refused"),
        "the store's error describes the server's network and stays in its log: {body}"
    );
}

#[tokio::test(start_paused = true)]
async fn store_down_announces_configured_retry_after() {
    let layer = fail_closed_on_down_store()
        .unavailable_retry_after(Duration::from_millis(29_001))
        .build();

    let response = app(layer).oneshot(send(Some("acme"))).await.unwrap();

    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        header(&response, "retry-after"),
        "30",
        "whole seconds, rounded up"
    );
}

#[tokio::test(start_paused = true)]
async fn store_down_admits_when_failing_open() {
    let mut policy = Policy::new(
        "default",
        TOOL,
        Capacity {
            per_minute: Some(5),
            ..Capacity::UNLIMITED
        },
    );
    policy.fail_open = true;
    let layer = RateLimitLayer::builder(
        Arc::new(StaticPolicies::new().with(policy)),
        Arc::new(DownStore),
    )
    .tool(TOOL)
    .build();

    let response = app(layer).oneshot(send(Some("acme"))).await.unwrap();

    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn outside_hours_is_429_until_monday() {
    let policy = email_schedule_policy("2026-03-02T00:00:00Z", 14, Capacity::UNLIMITED);
    // Saturday 7 March 2026, 12:00 in New York (EST); Monday 9 March opens at 09:00 EDT.
    let layer = RateLimitLayer::builder(
        Arc::new(StaticPolicies::new().with(policy)),
        Arc::new(MemoryStore::new()),
    )
    .tool(TOOL)
    .clock(TokioClock::starting_at(utc("2026-03-07T17:00:00Z")))
    .build();

    let response = app(layer).oneshot(send(Some("acme"))).await.unwrap();

    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        header(&response, "retry-after"),
        (44 * 3600).to_string(),
        "until 2026-03-09T13:00:00Z"
    );
    assert!(
        response.headers().get("ratelimit").is_none(),
        "no quota was exhausted"
    );
    assert!(body(response).await.contains("outside the allowed hours"));
}

/// Returns a policy with `capacity` as its static limits that follows the email example
/// schedule, with a report of `days` days from `report_from`. The schedule allows 10 calls a
/// minute, 100 an hour and 200 a day on Fridays in New York.
fn email_schedule_policy(report_from: &str, days: u32, capacity: Capacity) -> Policy {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/schedules/email.tjp");
    let definition = std::fs::read_to_string(path).expect("the email example schedule exists");
    let schedule = highway_ratelimit::schedule::Schedule::parse(&definition, &Default::default())
        .expect("the email example schedule parses");
    let options = highway_ratelimit::report::ReportOptions {
        resource: None,
        from: utc(report_from),
        days,
        generated_at: utc(report_from),
    };
    let report = highway_ratelimit::report::AvailabilityReport::generate(&schedule, &options)
        .expect("the email report generates")
        .report;
    let mut policy = Policy::new("default", TOOL, capacity);
    policy.schedule = Some(highway_ratelimit::policy::PolicySchedule {
        definition,
        resource: None,
        report: Arc::new(report),
    });
    policy
}

/// Builds an app whose policy follows the email example schedule (see
/// [`email_schedule_policy`]), with a clock that starts at `start`. The policy's static limit of
/// 1000 a minute applies to no call.
fn email_schedule_app(report_from: &str, days: u32, start: &str) -> Router {
    let static_limits = Capacity {
        per_minute: Some(1000),
        ..Capacity::UNLIMITED
    };
    let policy = email_schedule_policy(report_from, days, static_limits);
    app(RateLimitLayer::builder(
        Arc::new(StaticPolicies::new().with(policy)),
        Arc::new(MemoryStore::new()),
    )
    .tool(TOOL)
    .clock(TokioClock::starting_at(utc(start)))
    .build())
}

/// Sends two calls on Friday 6 March 2026 at 10:00 in New York (EST) and checks that the fields
/// of the second show Friday's limits of the report and a day that ends at midnight in New York.
async fn assert_friday_fields(app: Router) {
    let first = app.clone().oneshot(send(Some("acme"))).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let second = app.oneshot(send(Some("acme"))).await.unwrap();

    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(
        header(&second, "ratelimit-policy"),
        r#""minute";q=10;w=60, "hour";q=100;w=3600, "day";q=200;w=86400"#
    );
    assert_eq!(
        header(&second, "ratelimit"),
        r#""minute";r=8;t=60, "hour";r=98;t=3600, "day";r=198;t=50400"#,
        "the day ends at 2026-03-07T05:00:00Z"
    );
}

#[tokio::test(start_paused = true)]
async fn report_limits_in_fields() {
    let app = email_schedule_app("2026-03-02T00:00:00Z", 14, "2026-03-06T15:00:00Z");

    assert_friday_fields(app).await;
}

#[tokio::test(start_paused = true)]
async fn rendered_report_limits_in_fields() {
    // The report ended on 1 February, so the layer renders it again for the call's instant.
    let app = email_schedule_app("2026-01-25T00:00:00Z", 7, "2026-03-06T15:00:00Z");

    assert_friday_fields(app).await;
}

#[tokio::test(start_paused = true)]
async fn fields_after_wait_count_from_response() {
    let policies = StaticPolicies::new().with(Policy::new(
        "default",
        TOOL,
        Capacity {
            per_minute: Some(1),
            ..Capacity::UNLIMITED
        },
    ));
    let app = app(
        RateLimitLayer::builder(Arc::new(policies), Arc::new(MemoryStore::new()))
            .tool(TOOL)
            .clock(TokioClock::starting_at(utc("2026-03-02T10:00:45Z")))
            .wait_up_to(Duration::from_secs(30))
            .build(),
    );

    let first = app.clone().oneshot(send(Some("acme"))).await.unwrap();
    assert_eq!(header(&first, "ratelimit"), r#""minute";r=0;t=15"#);
    // The second call waits 15 s for the next minute, which ends at 10:02:00.
    let second = app.oneshot(send(Some("acme"))).await.unwrap();

    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(
        header(&second, "ratelimit"),
        r#""minute";r=0;t=60"#,
        "the response is sent at 10:01:00"
    );
}

#[tokio::test(start_paused = true)]
async fn fields_after_slow_tool_count_from_response() {
    let policies = StaticPolicies::new().with(Policy::new(
        "default",
        TOOL,
        Capacity {
            per_minute: Some(5),
            ..Capacity::UNLIMITED
        },
    ));
    let limits = RateLimitLayer::builder(Arc::new(policies), Arc::new(MemoryStore::new()))
        .tool(TOOL)
        .clock(TokioClock::starting_at(utc("2026-03-02T10:00:00Z")))
        .build();
    // The tool takes 20 s to answer, as a call to an LLM can.
    let app = Router::new()
        .route(
            "/send",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(20)).await;
                "sent"
            }),
        )
        .layer(limits.into_http())
        .layer(axum::middleware::map_request(authenticate));

    let response = app.oneshot(send(Some("acme"))).await.unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(&response, "ratelimit"),
        r#""minute";r=4;t=40"#,
        "the response is sent at 10:00:20, 40 s before the minute ends"
    );
}

/// A request that matches no route (404) or no method of its route (405) never reaches the tool,
/// so it must not use the tool's quota, and it keeps the router's own status.
#[tokio::test(start_paused = true)]
async fn unrouted_requests_are_not_charged() {
    let app = limited_app(
        Capacity {
            per_minute: Some(1),
            ..Capacity::UNLIMITED
        },
        "2026-03-02T10:00:00Z",
    );
    let unknown_path = http::Request::post("/nowhere")
        .header("x-tenant", "acme")
        .body(Body::empty())
        .unwrap();
    let wrong_method = http::Request::get("/send")
        .header("x-tenant", "acme")
        .body(Body::empty())
        .unwrap();

    let not_found = app.clone().oneshot(unknown_path).await.unwrap();
    let not_allowed = app.clone().oneshot(wrong_method).await.unwrap();
    let sent = app.oneshot(send(Some("acme"))).await.unwrap();

    assert_eq!(not_found.status(), StatusCode::NOT_FOUND);
    assert_eq!(not_allowed.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(sent.status(), StatusCode::OK, "{}", body(sent).await);
}

/// A tool name that the layer itself names is the service's configuration, not the request's.
/// So an empty or overlong one makes the builder panic, rather than every call getting 400 as if
/// the client had sent an invalid id.
#[test]
fn invalid_fixed_tool_panics() {
    for tool in [String::new(), "t".repeat(Caller::MAX_ID_BYTES + 1)] {
        let builder = RateLimitLayer::builder(
            Arc::new(StaticPolicies::new()),
            Arc::new(MemoryStore::new()),
        );
        let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            builder.tool(tool).build()
        }));
        assert!(built.is_err(), "the builder accepted an invalid tool name");
    }
}

/// A NUL character in the layer's own tool name is a configuration error too, which the builder
/// reports, rather than every call getting 400 for an invalid tool name that the client never
/// sent.
#[test]
fn fixed_tool_with_nul_panics() {
    let builder = RateLimitLayer::builder(
        Arc::new(StaticPolicies::new()),
        Arc::new(MemoryStore::new()),
    );

    let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        builder.tool("tools.http\0").build()
    }));

    let panic = built.expect_err("the builder accepted a tool name with a NUL character");
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .unwrap_or_default();
    assert!(message.contains("NUL"), "{message}");
}

/// A token store whose clock runs 2 s behind the layer's, as a PostgreSQL server's can: it
/// rejects every call with the reset of the minute its own clock is in, which can already have
/// passed by the layer's clock.
struct LaggingStore;

impl LaggingStore {
    const LAG: chrono::TimeDelta = chrono::TimeDelta::seconds(2);

    fn reject(request: &ConsumeRequest<'_>) -> Decision {
        let store_now = request.at.expect("the test clock passes its instant") - Self::LAG;
        let minute_start = store_now.timestamp().div_euclid(60) * 60;
        let reset_at = DateTime::from_timestamp(minute_start + 60, 0).unwrap();
        let usage = WindowUsage {
            kind: WindowKind::Minute,
            limit: 1,
            remaining: 0,
            reset_at,
        };
        Decision::Rejected {
            window: WindowKind::Minute,
            retry_at: reset_at,
            windows: [usage].into_iter().collect(),
        }
    }
}

impl TokenStore for LaggingStore {
    fn consume<'a>(
        &'a self,
        request: ConsumeRequest<'a>,
    ) -> BoxFuture<'a, Result<Decision, StoreError>> {
        Box::pin(async move { Ok(Self::reject(&request)) })
    }

    fn peek<'a>(
        &'a self,
        request: ConsumeRequest<'a>,
    ) -> BoxFuture<'a, Result<Decision, StoreError>> {
        self.consume(request)
    }
}

/// A retry time that the layer's clock has already passed, because the store's clock lags, still
/// gets a wait of one second: `Retry-After: 0` would send the client straight back into the
/// same rejection.
#[tokio::test(start_paused = true)]
async fn lagging_store_clock_waits_a_second() {
    let layer = RateLimitLayer::builder(
        Arc::new(StaticPolicies::new().with(Policy::new(
            "default",
            TOOL,
            Capacity {
                per_minute: Some(1),
                ..Capacity::UNLIMITED
            },
        ))),
        Arc::new(LaggingStore),
    )
    .tool(TOOL)
    .clock(TokioClock::starting_at(utc("2026-03-02T10:00:01.500Z")))
    .build();

    let response = app(layer).oneshot(send(Some("acme"))).await.unwrap();

    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&response, "retry-after"), "1");
    assert_eq!(header(&response, "ratelimit"), r#""minute";r=0;t=1"#);
}

/// Structured-field integers have at most 15 digits (RFC 8941). A schedule's `dailymax` can set
/// a larger limit, which is sent as the largest such integer, because a longer value makes a
/// client's parser drop the whole field.
#[tokio::test(start_paused = true)]
async fn huge_limits_stay_valid_fields() {
    let app = limited_app(
        Capacity {
            per_minute: Some(10_000_000_000_000_000),
            per_day: Some(1_000),
            ..Capacity::UNLIMITED
        },
        "2026-03-02T10:00:00Z",
    );

    let response = app.oneshot(send(Some("acme"))).await.unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(&response, "ratelimit-policy"),
        r#""minute";q=999999999999999;w=60, "day";q=1000;w=86400"#
    );
    assert_eq!(
        header(&response, "ratelimit"),
        r#""minute";r=999999999999999;t=60, "day";r=999;t=50400"#
    );
}
