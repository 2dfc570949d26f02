//! The rate limit layer driven through real Tower stacks: order of checks, every rejection kind,
//! scopes, shared state, concurrency, failing stores, wait mode and identity errors.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc, Weekday};
use chrono_tz::Tz;
use futures_util::future::BoxFuture;
use highway_ratelimit::clock::TokioClock;
use highway_ratelimit::layer::{
    Caller, Cost, IdentityError, MissingPolicy, RateLimit, RateLimitError, RateLimitLayer,
    Rejection, RejectionReason, StaticPolicies, TenantId, ToolName, WorkflowRunId,
};
use highway_ratelimit::policy::{Policy, PolicySchedule, PolicySource, Scope};
use highway_ratelimit::report::{AvailabilityReport, AvailabilityWindow, Capacity, REPORT_VERSION};
use highway_ratelimit::store::{ConsumeRequest, Decision, MemoryStore, StoreError, TokenStore};
use highway_ratelimit::window::WindowKind;
use tower::{Service, ServiceExt, service_fn};

const TOOL: &str = "tools.email.send";

/// Monday 2 March 2026, 10:00 UTC.
fn monday_ten() -> DateTime<Utc> {
    utc("2026-03-02T10:00:00Z")
}

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("test instants are RFC 3339")
        .with_timezone(&Utc)
}

fn per_minute(limit: u64) -> Capacity {
    Capacity {
        per_minute: Some(limit),
        ..Capacity::UNLIMITED
    }
}

type Request = http::Request<()>;

fn request(tenant: &str) -> Request {
    let mut request = http::Request::new(());
    request.extensions_mut().insert(TenantId::new(tenant));
    request
}

fn request_in_run(tenant: &str, run: &str) -> Request {
    let mut request = request(tenant);
    request.extensions_mut().insert(WorkflowRunId::new(run));
    request
}

/// A tool that counts its calls and echoes the tenant.
#[derive(Clone, Default)]
struct Tool {
    calls: Arc<AtomicUsize>,
}

impl Tool {
    fn service(
        &self,
    ) -> impl Service<Request, Response = String, Error = Infallible, Future: Send>
    + Clone
    + Send
    + 'static {
        let calls = self.calls.clone();
        service_fn(move |request: Request| {
            calls.fetch_add(1, Ordering::SeqCst);
            let tenant = request
                .extensions()
                .get::<TenantId>()
                .map(ToString::to_string)
                .unwrap_or_default();
            async move { Ok::<_, Infallible>(format!("sent for {tenant}")) }
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

fn layer_with(policies: StaticPolicies) -> RateLimitLayer {
    RateLimitLayer::builder(Arc::new(policies), Arc::new(MemoryStore::new()))
        .tool(TOOL)
        .clock(TokioClock::starting_at(monday_ten()))
        .build()
}

/// Returns a layer in wait mode, waiting up to `max_wait_seconds`, over a default policy of
/// `per_minute_limit` calls a minute, whose clock starts at `start`.
fn waiting_layer(per_minute_limit: u64, start: &str, max_wait_seconds: u64) -> RateLimitLayer {
    RateLimitLayer::builder(
        Arc::new(StaticPolicies::new().with(Policy::new(
            "default",
            TOOL,
            per_minute(per_minute_limit),
        ))),
        Arc::new(MemoryStore::new()),
    )
    .tool(TOOL)
    .clock(TokioClock::starting_at(utc(start)))
    .wait_up_to(Duration::from_secs(max_wait_seconds))
    .build()
}

async fn call<S>(service: &mut S, request: Request) -> Result<String, RateLimitError<Infallible>>
where
    S: Service<Request, Response = String, Error = RateLimitError<Infallible>>,
{
    service.ready().await?.call(request).await
}

fn rejection(result: Result<String, RateLimitError<Infallible>>) -> Rejection {
    match result {
        Err(RateLimitError::Rejected(rejection)) => rejection,
        Err(RateLimitError::Service(error)) => match error {},
        Ok(response) => panic!("expected a rejection, the call was admitted: {response}"),
    }
}

#[tokio::test(start_paused = true)]
async fn quota_exhausted_after_limit() {
    let tool = Tool::default();
    let layer = layer_with(StaticPolicies::new().with(Policy::new("default", TOOL, per_minute(2))));
    let mut service = tower::Layer::layer(&layer, tool.service());

    assert_eq!(
        call(&mut service, request("acme")).await.unwrap(),
        "sent for acme"
    );
    assert_eq!(
        call(&mut service, request("acme")).await.unwrap(),
        "sent for acme"
    );
    let rejected = rejection(call(&mut service, request("acme")).await);

    assert_eq!(tool.calls(), 2, "the tool was called for a rejected call");
    match rejected.reason() {
        RejectionReason::QuotaExhausted {
            window,
            limit,
            cost,
            retry_at,
            windows,
        } => {
            assert_eq!(*window, WindowKind::Minute);
            assert_eq!(*limit, 2);
            assert_eq!(*cost, 1);
            assert_eq!(*retry_at, utc("2026-03-02T10:01:00Z"));
            assert_eq!(windows[0].remaining, 0);
        }
        other => panic!("expected QuotaExhausted, got {other:?}"),
    }
    assert_eq!(rejected.retry_after(), Some(Duration::from_secs(60)));
    assert_eq!(rejected.tenant(), Some("acme"));
    assert_eq!(rejected.tool(), Some(TOOL));
    let message = rejected.to_string();
    assert!(
        message.contains("minute quota of 2 is exhausted"),
        "{message}"
    );
    assert!(message.contains("2026-03-02 10:01:00 UTC"), "{message}");
}

#[tokio::test(start_paused = true)]
async fn quota_comes_back_in_next_window() {
    let layer = layer_with(StaticPolicies::new().with(Policy::new("default", TOOL, per_minute(1))));
    let mut service = tower::Layer::layer(&layer, Tool::default().service());

    call(&mut service, request("acme")).await.unwrap();
    rejection(call(&mut service, request("acme")).await);
    tokio::time::advance(Duration::from_secs(60)).await;

    call(&mut service, request("acme")).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn clones_and_layered_services_share_limit() {
    let tool = Tool::default();
    let layer = layer_with(StaticPolicies::new().with(Policy::new("default", TOOL, per_minute(3))));
    let mut first = tower::Layer::layer(&layer, tool.service());
    let mut clone = first.clone();
    let mut second = tower::Layer::layer(&layer.clone(), tool.service());

    call(&mut first, request("acme")).await.unwrap();
    call(&mut clone, request("acme")).await.unwrap();
    call(&mut second, request("acme")).await.unwrap();

    rejection(call(&mut first, request("acme")).await);
    rejection(call(&mut clone, request("acme")).await);
    rejection(call(&mut second, request("acme")).await);
    assert_eq!(tool.calls(), 3);
}

/// A rejected call gives back what the inner service's readiness reserved: here the only permit
/// of a concurrency limit under the layer, which another clone then gets.
#[tokio::test(start_paused = true)]
async fn rejection_releases_inner_readiness() {
    let tool = Tool::default();
    let layer = layer_with(StaticPolicies::new().with(Policy::new("default", TOOL, per_minute(1))));
    let limited = tower::limit::ConcurrencyLimit::new(tool.service(), 1);
    let mut first = tower::Layer::layer(&layer, limited);
    let mut second = first.clone();

    call(&mut first, request("acme")).await.unwrap();
    rejection(call(&mut first, request("acme")).await);
    let no_tenant = http::Request::new(());
    let missing = first.ready().await.unwrap().call(no_tenant).await;
    assert!(matches!(
        rejection(missing).reason(),
        RejectionReason::MissingIdentity(_)
    ));

    let ready = tokio_test::task::spawn(second.ready()).poll();
    assert!(
        ready.is_ready(),
        "the permit is still held by the service whose call was rejected"
    );
    assert_eq!(tool.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn tenant_scope_counts_each_tenant() {
    let layer = layer_with(StaticPolicies::new().with(Policy::new("default", TOOL, per_minute(1))));
    let mut service = tower::Layer::layer(&layer, Tool::default().service());

    call(&mut service, request("acme")).await.unwrap();
    call(&mut service, request("globex")).await.unwrap();

    rejection(call(&mut service, request("acme")).await);
    rejection(call(&mut service, request("globex")).await);
}

#[tokio::test(start_paused = true)]
async fn global_scope_shares_one_counter() {
    let mut policy = Policy::new("default", TOOL, per_minute(2));
    policy.scope = Scope::Global;
    let layer = layer_with(StaticPolicies::new().with(policy));
    let mut service = tower::Layer::layer(&layer, Tool::default().service());

    call(&mut service, request("acme")).await.unwrap();
    call(&mut service, request("globex")).await.unwrap();

    rejection(call(&mut service, request("initech")).await);
}

#[tokio::test(start_paused = true)]
async fn workflow_scope_counts_each_run() {
    let mut policy = Policy::new("default", TOOL, per_minute(1));
    policy.scope = Scope::Workflow;
    let layer = layer_with(StaticPolicies::new().with(policy));
    let mut service = tower::Layer::layer(&layer, Tool::default().service());

    call(&mut service, request_in_run("acme", "run-1"))
        .await
        .unwrap();
    call(&mut service, request_in_run("acme", "run-2"))
        .await
        .unwrap();
    rejection(call(&mut service, request_in_run("acme", "run-1")).await);
    let missing_run = rejection(call(&mut service, request("acme")).await);

    match missing_run.reason() {
        RejectionReason::MissingIdentity(IdentityError::MissingWorkflowRun { tool }) => {
            assert_eq!(tool, TOOL)
        }
        other => panic!("expected MissingWorkflowRun, got {other:?}"),
    }
    assert!(
        missing_run.to_string().contains("WorkflowRunId"),
        "{missing_run}"
    );
}

#[tokio::test(start_paused = true)]
async fn tenant_policy_overrides_default() {
    let policies = StaticPolicies::new()
        .with(Policy::new("default", TOOL, per_minute(1)))
        .with(Policy::new("acme", TOOL, per_minute(3)));
    let layer = layer_with(policies);
    let mut service = tower::Layer::layer(&layer, Tool::default().service());

    for _ in 0..3 {
        call(&mut service, request("acme")).await.unwrap();
    }
    call(&mut service, request("globex")).await.unwrap();

    rejection(call(&mut service, request("acme")).await);
    rejection(call(&mut service, request("globex")).await);
}

#[tokio::test(start_paused = true)]
async fn missing_policy_rejects_by_default() {
    let tool = Tool::default();
    let layer = layer_with(StaticPolicies::new());
    let mut service = tower::Layer::layer(&layer, tool.service());

    let rejected = rejection(call(&mut service, request("acme")).await);

    assert!(
        matches!(rejected.reason(), RejectionReason::NoPolicy),
        "{rejected:?}"
    );
    assert!(
        rejected.to_string().contains("missing_policy"),
        "{rejected}"
    );
    assert_eq!(tool.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn missing_policy_admits_when_configured() {
    let tool = Tool::default();
    let layer = RateLimitLayer::builder(
        Arc::new(StaticPolicies::new()),
        Arc::new(MemoryStore::new()),
    )
    .tool(TOOL)
    .missing_policy(MissingPolicy::Admit)
    .build();
    let mut service = tower::Layer::layer(&layer, tool.service());

    for _ in 0..5 {
        call(&mut service, request("acme")).await.unwrap();
    }

    assert_eq!(tool.calls(), 5);
}

#[tokio::test(start_paused = true)]
async fn disabled_policy_admits_without_counting() {
    let mut policy = Policy::new("default", TOOL, per_minute(1));
    policy.enabled = false;
    let layer = layer_with(StaticPolicies::new().with(policy));
    let mut service = tower::Layer::layer(&layer, Tool::default().service());

    for _ in 0..5 {
        call(&mut service, request("acme")).await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn cost_extension_charges_units() {
    let layer = layer_with(StaticPolicies::new().with(Policy::new("default", TOOL, per_minute(5))));
    let mut service = tower::Layer::layer(&layer, Tool::default().service());
    let with_cost = |units| {
        let mut request = request("acme");
        request
            .extensions_mut()
            .insert(Cost::new(units).expect("test costs are positive"));
        request
    };

    call(&mut service, with_cost(3)).await.unwrap();
    let too_much = rejection(call(&mut service, with_cost(3)).await);
    call(&mut service, with_cost(2)).await.unwrap();
    let never = rejection(call(&mut service, with_cost(6)).await);

    assert!(
        matches!(too_much.reason(), RejectionReason::QuotaExhausted { .. }),
        "{too_much:?}"
    );
    match never.reason() {
        RejectionReason::CostExceedsLimit {
            window,
            limit,
            cost,
        } => {
            assert_eq!((*window, *limit, *cost), (WindowKind::Minute, 5, 6));
        }
        other => panic!("expected CostExceedsLimit, got {other:?}"),
    }
    assert_eq!(
        never.retry_at(),
        None,
        "a call that can never fit has no retry time"
    );
}

#[tokio::test(start_paused = true)]
async fn missing_tenant_names_the_extension() {
    let tool = Tool::default();
    let layer = layer_with(StaticPolicies::new().with(Policy::new("default", TOOL, per_minute(5))));
    let mut service = tower::Layer::layer(&layer, tool.service());

    let rejected = rejection(call(&mut service, http::Request::new(())).await);

    assert!(matches!(
        rejected.reason(),
        RejectionReason::MissingIdentity(IdentityError::MissingTenant)
    ));
    assert!(rejected.to_string().contains("TenantId"), "{rejected}");
    assert_eq!(tool.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn overlong_ids_are_rejected() {
    let tool = Tool::default();
    let mut policy = Policy::new("default", TOOL, per_minute(5));
    policy.fail_open = true;
    policy.scope = Scope::Workflow;
    let layer = layer_with(StaticPolicies::new().with(policy));
    let mut service = tower::Layer::layer(&layer, tool.service());
    let longest = "t".repeat(Caller::MAX_ID_BYTES);
    let too_long = "t".repeat(Caller::MAX_ID_BYTES + 1);

    call(&mut service, request_in_run(&longest, &longest))
        .await
        .unwrap();
    let tenant = rejection(call(&mut service, request_in_run(&too_long, "run-1")).await);
    let run = rejection(call(&mut service, request_in_run("acme", &too_long)).await);

    let RejectionReason::MissingIdentity(tenant_error) = tenant.reason() else {
        panic!("expected an identity error, got {tenant}");
    };
    assert_eq!(
        tenant_error,
        &IdentityError::IdTooLong {
            id: "tenant",
            length: Caller::MAX_ID_BYTES + 1,
            max: Caller::MAX_ID_BYTES,
        }
    );
    assert!(matches!(
        run.reason(),
        RejectionReason::MissingIdentity(IdentityError::IdTooLong {
            id: "workflow run",
            ..
        })
    ));
    assert!(tenant.to_string().contains("513 bytes"), "{tenant}");
    assert_eq!(
        tool.calls(),
        1,
        "a call with an overlong id reached the tool"
    );
}

#[tokio::test(start_paused = true)]
async fn zero_limit_rejects_as_switched_off() {
    let tool = Tool::default();
    let layer = layer_with(StaticPolicies::new().with(Policy::new("default", TOOL, per_minute(0))));
    let mut service = tower::Layer::layer(&layer, tool.service());

    let rejected = rejection(call(&mut service, request("acme")).await);

    assert!(
        matches!(
            rejected.reason(),
            RejectionReason::Disabled {
                window: WindowKind::Minute
            }
        ),
        "{rejected}"
    );
    assert!(
        rejected.to_string().contains("switches the tool off"),
        "{rejected}"
    );
    // The limit is still 0 when the minute resets, so no retry time is announced.
    assert_eq!(rejected.retry_at(), None);
    assert_eq!(rejected.retry_after(), None);
    assert_eq!(tool.calls(), 0);
}

/// Wait mode does not sleep on a static limit of 0, which no reset lifts.
#[tokio::test(start_paused = true)]
async fn zero_limit_does_not_wait() {
    let tool = Tool::default();
    let layer = waiting_layer(0, "2026-03-02T10:00:30Z", 120);
    let mut service = tower::Layer::layer(&layer, tool.service());
    let started = tokio::time::Instant::now();

    let rejected = rejection(call(&mut service, request("acme")).await);

    assert!(
        matches!(rejected.reason(), RejectionReason::Disabled { .. }),
        "{rejected}"
    );
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(tool.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn empty_ids_are_rejected() {
    let tool = Tool::default();
    let mut policy = Policy::new("default", TOOL, per_minute(5));
    policy.fail_open = true;
    policy.scope = Scope::Workflow;
    let layer = layer_with(StaticPolicies::new().with(policy));
    let mut service = tower::Layer::layer(&layer, tool.service());

    let tenant = rejection(call(&mut service, request_in_run("", "run-1")).await);
    let run = rejection(call(&mut service, request_in_run("acme", "")).await);

    assert!(
        matches!(
            tenant.reason(),
            RejectionReason::MissingIdentity(IdentityError::EmptyId { id: "tenant" })
        ),
        "{tenant}"
    );
    assert!(
        matches!(
            run.reason(),
            RejectionReason::MissingIdentity(IdentityError::EmptyId { id: "workflow run" })
        ),
        "{run}"
    );
    assert!(tenant.to_string().contains("tenant is empty"), "{tenant}");
    assert_eq!(tool.calls(), 0, "a call with an empty id reached the tool");
}

#[tokio::test(start_paused = true)]
async fn tool_name_read_from_extension() {
    let policies = StaticPolicies::new()
        .with(Policy::new("default", "tools.sms.send", per_minute(1)))
        .with(Policy::new("default", TOOL, per_minute(5)));
    let layer = RateLimitLayer::builder(Arc::new(policies), Arc::new(MemoryStore::new()))
        .clock(TokioClock::starting_at(monday_ten()))
        .build();
    let mut service = tower::Layer::layer(&layer, Tool::default().service());
    let sms = || {
        let mut request = request("acme");
        request
            .extensions_mut()
            .insert(ToolName::new("tools.sms.send"));
        request
    };

    call(&mut service, sms()).await.unwrap();
    let second_sms = rejection(call(&mut service, sms()).await);
    let unnamed = rejection(call(&mut service, request("acme")).await);

    assert_eq!(second_sms.tool(), Some("tools.sms.send"));
    assert!(matches!(
        unnamed.reason(),
        RejectionReason::MissingIdentity(IdentityError::MissingTool)
    ));
    assert!(unnamed.to_string().contains("ToolName"), "{unnamed}");
}

#[tokio::test(start_paused = true)]
async fn invalidate_applies_policy_change_at_once() {
    let policies =
        Arc::new(StaticPolicies::new().with(Policy::new("default", TOOL, per_minute(1))));
    let layer = RateLimitLayer::builder(policies.clone(), Arc::new(MemoryStore::new()))
        .tool(TOOL)
        .clock(TokioClock::starting_at(monday_ten()))
        .build();
    let mut service = tower::Layer::layer(&layer, Tool::default().service());

    call(&mut service, request("acme")).await.unwrap();
    rejection(call(&mut service, request("acme")).await);
    policies.insert(Policy::new("default", TOOL, per_minute(3)));
    rejection(call(&mut service, request("acme")).await);
    layer.invalidate("default", TOOL);

    call(&mut service, request("acme")).await.unwrap();
    call(&mut service, request("acme")).await.unwrap();
    rejection(call(&mut service, request("acme")).await);
}

#[tokio::test(start_paused = true)]
async fn alternating_tenants_each_get_their_policy() {
    let policies = StaticPolicies::new()
        .with(Policy::new("default", TOOL, per_minute(2)))
        .with(Policy::new("acme", TOOL, per_minute(1)));
    let layer = layer_with(policies);
    let mut service = tower::Layer::layer(&layer, Tool::default().service());

    call(&mut service, request("acme")).await.unwrap();
    call(&mut service, request("globex")).await.unwrap();
    rejection(call(&mut service, request("acme")).await);
    call(&mut service, request("globex")).await.unwrap();
    let acme = rejection(call(&mut service, request("acme")).await);
    let globex = rejection(call(&mut service, request("globex")).await);

    assert_eq!(acme.tenant(), Some("acme"));
    assert_eq!(globex.tenant(), Some("globex"));
}

/// A policy source whose first lookup of the `default` tenant reads the policy and then waits
/// until the test releases it, as a database query whose reply is slow does.
struct SlowFirstLookup {
    policies: Arc<StaticPolicies>,
    default_lookups: AtomicUsize,
    read: tokio::sync::Notify,
    release: tokio::sync::Notify,
}

impl PolicySource for SlowFirstLookup {
    fn lookup<'a>(
        &'a self,
        tenant: &'a str,
        tool: &'a str,
    ) -> BoxFuture<'a, Result<Option<Policy>, StoreError>> {
        Box::pin(async move {
            let policy = self.policies.lookup(tenant, tool).await?;
            if tenant == "default" && self.default_lookups.fetch_add(1, Ordering::SeqCst) == 0 {
                self.read.notify_one();
                self.release.notified().await;
            }
            Ok(policy)
        })
    }
}

#[tokio::test(start_paused = true)]
async fn invalidate_during_policy_load_applies() {
    let policies =
        Arc::new(StaticPolicies::new().with(Policy::new("default", TOOL, per_minute(100))));
    let source = Arc::new(SlowFirstLookup {
        policies: policies.clone(),
        default_lookups: AtomicUsize::new(0),
        read: tokio::sync::Notify::new(),
        release: tokio::sync::Notify::new(),
    });
    let layer = RateLimitLayer::builder(source.clone(), Arc::new(MemoryStore::new()))
        .tool(TOOL)
        .clock(TokioClock::starting_at(monday_ten()))
        .build();
    let tool = Tool::default();
    let mut service = tower::Layer::layer(&layer, tool.service());

    // The first call misses the cache and reads the policy of 100 a minute.
    let first = tokio::spawn({
        let mut service = service.clone();
        async move { call(&mut service, request("acme")).await }
    });
    source.read.notified().await;
    // Before its reply arrives, the limit drops to 1 a minute and the layer is invalidated.
    policies.insert(Policy::new("default", TOOL, per_minute(1)));
    layer.invalidate("default", TOOL);
    source.release.notify_one();
    first
        .await
        .unwrap()
        .expect("the first call fits either limit");

    let second = call(&mut service, request("acme")).await;

    assert!(
        matches!(second, Err(RateLimitError::Rejected(_))),
        "the policy read before the invalidation stayed cached: {second:?}"
    );
    assert_eq!(tool.calls(), 1);
}

/// The cache's time to live runs on the real clock, so this test does not pause tokio's time.
#[tokio::test]
async fn policy_change_applies_after_cache_ttl_without_invalidation() {
    let ttl = Duration::from_millis(150);
    let policies =
        Arc::new(StaticPolicies::new().with(Policy::new("default", TOOL, per_minute(1))));
    let layer = RateLimitLayer::builder(policies.clone(), Arc::new(MemoryStore::new()))
        .tool(TOOL)
        .clock(highway_ratelimit::clock::ManualClock::starting_at(
            monday_ten(),
        ))
        .cache_ttl(ttl)
        .build();
    let mut service = tower::Layer::layer(&layer, Tool::default().service());

    call(&mut service, request("acme")).await.unwrap();
    policies.insert(Policy::new("default", TOOL, per_minute(3)));
    // Within the time to live the policy read first still applies, to this service and a clone.
    rejection(call(&mut service, request("acme")).await);
    rejection(call(&mut service.clone(), request("acme")).await);

    tokio::time::sleep(ttl * 2).await;
    call(&mut service, request("acme")).await.unwrap();
    call(&mut service, request("acme")).await.unwrap();
    rejection(call(&mut service, request("acme")).await);
}

#[tokio::test(start_paused = true)]
async fn unbounded_cache_ttl_builds() {
    // A time to live of `Duration::MAX` keeps policies cached until they are invalidated.
    let layer = RateLimitLayer::builder(
        Arc::new(StaticPolicies::new().with(Policy::new("default", TOOL, per_minute(1)))),
        Arc::new(MemoryStore::new()),
    )
    .tool(TOOL)
    .clock(TokioClock::starting_at(monday_ten()))
    .cache_ttl(Duration::MAX)
    .build();
    let mut service = tower::Layer::layer(&layer, Tool::default().service());

    call(&mut service, request("acme")).await.unwrap();
    rejection(call(&mut service, request("acme")).await);
}

#[test]
fn runtime_without_timers_admits() {
    // A runtime built without `enable_time`, as `Builder::new_current_thread().build()` is.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime starts");
    let layer = layer_with(StaticPolicies::new().with(Policy::new("default", TOOL, per_minute(1))));
    let tool = Tool::default();
    let mut service = tower::Layer::layer(&layer, tool.service());

    let first = runtime.block_on(call(&mut service, request("acme")));
    let second = runtime.block_on(call(&mut service, request("acme")));

    assert_eq!(first.unwrap(), "sent for acme");
    rejection(second);
    assert_eq!(tool.calls(), 1);
}

/// Builds a report for Monday 2 March 2026 to Monday 9 March: 09:00–17:00 UTC on working days,
/// with Wednesday 4 March blocked, 2 calls per hour inside the windows.
fn office_hours_report(valid_until: DateTime<Utc>) -> AvailabilityReport {
    let capacity = Capacity {
        per_hour: Some(2),
        ..Capacity::UNLIMITED
    };
    let windows = [2, 3, 5, 6]
        .into_iter()
        .map(|day| AvailabilityWindow {
            start: utc(&format!("2026-03-0{day}T09:00:00Z")),
            end: utc(&format!("2026-03-0{day}T17:00:00Z")),
            capacity,
        })
        .collect();
    AvailabilityReport {
        version: REPORT_VERSION,
        generated_at: utc("2026-03-01T00:00:00Z"),
        valid_until,
        timezone: Tz::UTC,
        week_start: Weekday::Mon,
        windows,
        blocked_dates: vec![NaiveDate::from_ymd_opt(2026, 3, 4).unwrap()],
        default_capacity: Capacity {
            per_hour: Some(1),
            ..Capacity::UNLIMITED
        },
    }
}

fn scheduled_layer(
    start: DateTime<Utc>,
    report: AvailabilityReport,
    fail_open: bool,
) -> RateLimitLayer {
    let mut policy = Policy::new("default", TOOL, per_minute(100));
    policy.fail_open = fail_open;
    policy.schedule = Some(PolicySchedule {
        definition: "this text is not a schedule".to_owned(),
        resource: None,
        report: Arc::new(report),
    });
    RateLimitLayer::builder(
        Arc::new(StaticPolicies::new().with(policy)),
        Arc::new(MemoryStore::new()),
    )
    .tool(TOOL)
    .clock(TokioClock::starting_at(start))
    .build()
}

#[tokio::test(start_paused = true)]
async fn report_capacity_replaces_static_limits() {
    let layer = scheduled_layer(
        monday_ten(),
        office_hours_report(utc("2026-03-09T00:00:00Z")),
        false,
    );
    let mut service = tower::Layer::layer(&layer, Tool::default().service());

    call(&mut service, request("acme")).await.unwrap();
    call(&mut service, request("acme")).await.unwrap();
    let rejected = rejection(call(&mut service, request("acme")).await);

    match rejected.reason() {
        RejectionReason::QuotaExhausted { window, limit, .. } => {
            assert_eq!((*window, *limit), (WindowKind::Hour, 2))
        }
        other => panic!("expected the report's hourly quota, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn quota_retry_waits_for_opening() {
    // The hourly quota runs out at 16:30 on Monday; its window resets at 17:00, when the
    // schedule is closed, so the call can next succeed when it opens on Tuesday at 09:00.
    let layer = scheduled_layer(
        utc("2026-03-02T16:30:00Z"),
        office_hours_report(utc("2026-03-09T00:00:00Z")),
        false,
    );
    let mut service = tower::Layer::layer(&layer, Tool::default().service());

    call(&mut service, request("acme")).await.unwrap();
    call(&mut service, request("acme")).await.unwrap();
    let rejected = rejection(call(&mut service, request("acme")).await);

    match rejected.reason() {
        RejectionReason::QuotaExhausted {
            window, retry_at, ..
        } => {
            assert_eq!(*window, WindowKind::Hour);
            assert_eq!(*retry_at, utc("2026-03-03T09:00:00Z"));
        }
        other => panic!("expected QuotaExhausted, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn outside_hours_rejects_until_next_window() {
    let layer = scheduled_layer(
        utc("2026-03-02T18:30:00Z"),
        office_hours_report(utc("2026-03-09T00:00:00Z")),
        false,
    );
    let tool = Tool::default();
    let mut service = tower::Layer::layer(&layer, tool.service());

    let rejected = rejection(call(&mut service, request("acme")).await);

    match rejected.reason() {
        RejectionReason::OutsideHours { next_allowed } => {
            assert_eq!(*next_allowed, Some(utc("2026-03-03T09:00:00Z")));
        }
        other => panic!("expected OutsideHours, got {other:?}"),
    }
    assert_eq!(
        rejected.retry_after(),
        Some(Duration::from_secs(14 * 3600 + 30 * 60))
    );
    assert_eq!(tool.calls(), 0);
}

/// The report's last window ends on Friday: a call on Saturday finds no window to wait for, and
/// the message names what to check.
#[tokio::test(start_paused = true)]
async fn no_window_left_names_schedule_checks() {
    let layer = scheduled_layer(
        utc("2026-03-07T12:00:00Z"),
        office_hours_report(utc("2026-03-09T00:00:00Z")),
        false,
    );
    let tool = Tool::default();
    let mut service = tower::Layer::layer(&layer, tool.service());

    let rejected = rejection(call(&mut service, request("acme")).await);

    match rejected.reason() {
        RejectionReason::OutsideHours { next_allowed } => assert_eq!(*next_allowed, None),
        other => panic!("expected OutsideHours, got {other:?}"),
    }
    assert_eq!(rejected.retry_after(), None);
    let message = rejected.to_string();
    assert!(
        message.contains("no call before its report ends"),
        "{message}"
    );
    assert!(
        message.contains("working hours and its project's start and end dates"),
        "{message}"
    );
    assert_eq!(tool.calls(), 0);
}

/// Returns a layer whose `default` policy follows `examples/schedules/email.tjp`: business hours
/// in New York, and Thanksgiving on 26 and 27 November 2026. Its report covers the 7 days from
/// Monday 23 November 08:30 in New York, and its clock starts at `start`.
fn thanksgiving_layer(start: DateTime<Utc>) -> RateLimitLayer {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/schedules/email.tjp");
    let definition = std::fs::read_to_string(path).expect("the email example schedule exists");
    let options = highway_ratelimit::report::ReportOptions {
        resource: None,
        from: utc("2026-11-23T13:30:00Z"),
        days: 7,
        generated_at: utc("2026-11-23T13:30:00Z"),
    };
    let schedule = PolicySchedule::render("email.tjp", definition, &options)
        .expect("the email schedule renders");
    RateLimitLayer::builder(
        Arc::new(StaticPolicies::new().with(Policy::scheduled("default", TOOL, schedule))),
        Arc::new(MemoryStore::new()),
    )
    .tool(TOOL)
    .clock(TokioClock::starting_at(start))
    .build()
}

/// The report ends on Monday 30 November at 08:30, before the schedule opens at 09:00, so on
/// Thanksgiving it has no opening left. The retry time comes from the schedule past the report:
/// Monday 09:00, not "no call before its report ends".
#[tokio::test(start_paused = true)]
async fn closure_past_report_end_retries_at_next_opening() {
    let layer = thanksgiving_layer(utc("2026-11-26T15:00:00Z"));
    let mut service = tower::Layer::layer(&layer, Tool::default().service());

    let rejected = rejection(call(&mut service, request("acme")).await);

    let monday_nine = utc("2026-11-30T14:00:00Z");
    match rejected.reason() {
        RejectionReason::BlockedDate { date, next_allowed } => {
            assert_eq!(*date, NaiveDate::from_ymd_opt(2026, 11, 26).unwrap());
            assert_eq!(*next_allowed, Some(monday_nine));
        }
        other => panic!("expected BlockedDate, got {other:?}"),
    }
    assert_eq!(rejected.retry_at(), Some(monday_nine));
    assert!(
        !rejected.to_string().contains("before its report ends"),
        "{rejected}"
    );

    // On the Saturday after, the same opening, found again from the cache.
    tokio::time::advance(Duration::from_secs(2 * 24 * 3600)).await;
    let rejected = rejection(call(&mut service, request("acme")).await);
    match rejected.reason() {
        RejectionReason::OutsideHours { next_allowed } => {
            assert_eq!(*next_allowed, Some(monday_nine));
        }
        other => panic!("expected OutsideHours, got {other:?}"),
    }
}

/// A day quota used up on the Wednesday before Thanksgiving resets at midnight, on a holiday
/// that the report still covers. The schedule next opens after the report ends, on Monday.
#[tokio::test(start_paused = true)]
async fn quota_retry_past_report_end() {
    // From Wednesday 25 November, 09:00 in New York: 10 calls a minute and 100 an hour, so the
    // day quota of 500 runs out in the fifth hour.
    let layer = thanksgiving_layer(utc("2026-11-25T14:00:00Z"));
    let mut service = tower::Layer::layer(&layer, Tool::default().service());
    for _hour in 0..5 {
        for _minute in 0..10 {
            for _call in 0..10 {
                call(&mut service, request("acme"))
                    .await
                    .expect("within the quotas");
            }
            tokio::time::advance(Duration::from_secs(60)).await;
        }
        tokio::time::advance(Duration::from_secs(50 * 60)).await;
    }

    let rejected = rejection(call(&mut service, request("acme")).await);

    match rejected.reason() {
        RejectionReason::QuotaExhausted { window, .. } => assert_eq!(*window, WindowKind::Day),
        other => panic!("expected QuotaExhausted, got {other:?}"),
    }
    assert_eq!(rejected.retry_at(), Some(utc("2026-11-30T14:00:00Z")));
}

/// A schedule whose project ends inside the report has no opening past it either, and the
/// rejection still names what to check.
#[tokio::test(start_paused = true)]
async fn ended_project_leaves_no_retry_time() {
    let definition = "project mail \"Mail\" 2026-01-01 - 2026-03-06 { timezone \"UTC\" }\n\
                      resource mail \"Mail\" {\n  limits { dailymax 5 }\n}\n";
    let options = highway_ratelimit::report::ReportOptions {
        resource: None,
        from: utc("2026-03-02T00:00:00Z"),
        days: 7,
        generated_at: utc("2026-03-02T00:00:00Z"),
    };
    let schedule =
        PolicySchedule::render("mail.tjp", definition, &options).expect("the schedule renders");
    let layer = RateLimitLayer::builder(
        Arc::new(StaticPolicies::new().with(Policy::scheduled("default", TOOL, schedule))),
        Arc::new(MemoryStore::new()),
    )
    .tool(TOOL)
    .clock(TokioClock::starting_at(utc("2026-03-07T10:00:00Z")))
    .build();
    let mut service = tower::Layer::layer(&layer, Tool::default().service());

    let rejected = rejection(call(&mut service, request("acme")).await);

    match rejected.reason() {
        RejectionReason::OutsideHours { next_allowed } => assert_eq!(*next_allowed, None),
        other => panic!("expected OutsideHours, got {other:?}"),
    }
    assert!(
        rejected.to_string().contains("start and end dates"),
        "{rejected}"
    );
}

#[tokio::test(start_paused = true)]
async fn blocked_date_rejects_with_date() {
    let layer = scheduled_layer(
        utc("2026-03-04T11:00:00Z"),
        office_hours_report(utc("2026-03-09T00:00:00Z")),
        false,
    );
    let mut service = tower::Layer::layer(&layer, Tool::default().service());

    let rejected = rejection(call(&mut service, request("acme")).await);

    match rejected.reason() {
        RejectionReason::BlockedDate { date, next_allowed } => {
            assert_eq!(*date, NaiveDate::from_ymd_opt(2026, 3, 4).unwrap());
            assert_eq!(*next_allowed, Some(utc("2026-03-05T09:00:00Z")));
        }
        other => panic!("expected BlockedDate, got {other:?}"),
    }
    assert!(
        rejected
            .to_string()
            .contains("2026-03-04 is a blocked date"),
        "{rejected}"
    );
}

#[tokio::test(start_paused = true)]
async fn expired_report_that_cannot_render_fails_closed() {
    let layer = scheduled_layer(
        monday_ten(),
        office_hours_report(utc("2026-03-02T09:00:00Z")),
        false,
    );
    let tool = Tool::default();
    let mut service = tower::Layer::layer(&layer, tool.service());

    let rejected = rejection(call(&mut service, request("acme")).await);

    assert!(
        matches!(
            rejected.reason(),
            RejectionReason::ScheduleUnavailable { .. }
        ),
        "{rejected:?}"
    );
    assert!(rejected.is_unavailable());
    assert!(
        rejected
            .to_string()
            .contains("schedule of tool tools.email.send"),
        "{rejected}"
    );
    assert_eq!(tool.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn expired_report_fails_open_with_default_capacity() {
    let layer = scheduled_layer(
        monday_ten(),
        office_hours_report(utc("2026-03-02T09:00:00Z")),
        true,
    );
    let mut service = tower::Layer::layer(&layer, Tool::default().service());

    call(&mut service, request("acme")).await.unwrap();
    let rejected = rejection(call(&mut service, request("acme")).await);

    match rejected.reason() {
        RejectionReason::QuotaExhausted { window, limit, .. } => {
            assert_eq!((*window, *limit), (WindowKind::Hour, 1))
        }
        other => panic!("expected the default capacity's hourly quota, got {other:?}"),
    }
}

/// A token store whose every call fails, or never finishes.
struct BrokenStore {
    hangs: bool,
}

impl TokenStore for BrokenStore {
    fn consume<'a>(
        &'a self,
        _request: ConsumeRequest<'a>,
    ) -> BoxFuture<'a, Result<Decision, StoreError>> {
        let hangs = self.hangs;
        Box::pin(async move {
            if hangs {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            Err(StoreError::Unavailable("connection refused".into()))
        })
    }

    fn peek<'a>(
        &'a self,
        request: ConsumeRequest<'a>,
    ) -> BoxFuture<'a, Result<Decision, StoreError>> {
        self.consume(request)
    }
}

fn broken_layer(hangs: bool, fail_open: bool) -> RateLimitLayer {
    let mut policy = Policy::new("default", TOOL, per_minute(1));
    policy.fail_open = fail_open;
    RateLimitLayer::builder(
        Arc::new(StaticPolicies::new().with(policy)),
        Arc::new(BrokenStore { hangs }),
    )
    .tool(TOOL)
    .store_timeout(Duration::from_millis(250))
    .build()
}

#[tokio::test(start_paused = true)]
async fn store_error_fails_closed() {
    let tool = Tool::default();
    let mut service = tower::Layer::layer(&broken_layer(false, false), tool.service());

    let rejected = rejection(call(&mut service, request("acme")).await);

    assert!(
        matches!(rejected.reason(), RejectionReason::StoreUnavailable(_)),
        "{rejected:?}"
    );
    assert!(rejected.is_unavailable());
    let chain = error_chain(&rejected);
    assert!(chain.contains("connection refused"), "{chain}");
    assert_eq!(tool.calls(), 0);
    assert_eq!(
        rejected.retry_at(),
        None,
        "nobody knows when the store recovers"
    );
    assert_eq!(
        rejected.retry_after(),
        Some(Rejection::DEFAULT_UNAVAILABLE_RETRY_AFTER)
    );
}

/// The wait announced for an unavailable store is a hint for the client, not a retry time:
/// it follows the builder's setting, is at least one second, and wait mode does not sleep on it.
#[tokio::test(start_paused = true)]
async fn store_error_announces_configured_wait() {
    let policy = Policy::new("default", TOOL, per_minute(1));
    let layer = |wait: Duration| {
        RateLimitLayer::builder(
            Arc::new(StaticPolicies::new().with(policy.clone())),
            Arc::new(BrokenStore { hangs: false }),
        )
        .tool(TOOL)
        .store_timeout(Duration::from_millis(250))
        .wait_up_to(Duration::from_secs(60))
        .unavailable_retry_after(wait)
        .build()
    };

    for (configured, announced) in [
        (Duration::from_secs(30), Duration::from_secs(30)),
        (Duration::from_millis(1_500), Duration::from_millis(1_500)),
        (Duration::ZERO, Rejection::MIN_RETRY_AFTER),
    ] {
        let tool = Tool::default();
        let mut service = tower::Layer::layer(&layer(configured), tool.service());
        let started = tokio::time::Instant::now();

        let rejected = rejection(call(&mut service, request("acme")).await);

        assert!(rejected.is_unavailable(), "{rejected:?}");
        assert_eq!(rejected.retry_after(), Some(announced), "{configured:?}");
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "wait mode slept on an unavailable store"
        );
        assert_eq!(tool.calls(), 0);
    }
}

/// Returns the messages of `error` and of its `source()` chain, joined by ": " as anyhow's `{:#}`
/// prints them.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut messages = vec![error.to_string()];
    let mut cause = error.source();
    while let Some(inner) = cause {
        messages.push(inner.to_string());
        cause = inner.source();
    }
    messages.join(": ")
}

/// Every error on the way from the store to the caller describes its own layer and leaves the
/// cause to `source()`, so that printing the chain shows the cause once.
#[tokio::test(start_paused = true)]
async fn store_error_chain_names_cause_once() {
    let tool = Tool::default();
    let mut service = tower::Layer::layer(&broken_layer(false, false), tool.service());

    let failed = call(&mut service, request("acme")).await.unwrap_err();

    let chain = error_chain(&failed);
    assert_eq!(chain.matches("connection refused").count(), 1, "{chain}");
    assert_eq!(
        chain.matches("token store unavailable").count(),
        1,
        "{chain}"
    );
    assert!(chain.contains("the policy fails closed"), "{chain}");

    let rejected = rejection(Err(failed));
    let RejectionReason::StoreUnavailable(store_error) = rejected.reason() else {
        panic!("expected a store failure: {rejected:?}");
    };
    assert_eq!(store_error.to_string(), "token store unavailable");
    let cause = std::error::Error::source(&**store_error).expect("the store error has a cause");
    assert_eq!(cause.to_string(), "connection refused");
}

#[tokio::test(start_paused = true)]
async fn store_error_fails_open() {
    let tool = Tool::default();
    let mut service = tower::Layer::layer(&broken_layer(false, true), tool.service());

    for _ in 0..3 {
        call(&mut service, request("acme")).await.unwrap();
    }

    assert_eq!(tool.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn slow_store_times_out_closed() {
    let mut service = tower::Layer::layer(&broken_layer(true, false), Tool::default().service());
    let started = tokio::time::Instant::now();

    let rejected = rejection(call(&mut service, request("acme")).await);

    assert_eq!(started.elapsed(), Duration::from_millis(250));
    match rejected.reason() {
        RejectionReason::StoreUnavailable(error) => {
            assert!(
                matches!(**error, StoreError::Timeout(timeout) if timeout == Duration::from_millis(250))
            );
        }
        other => panic!("expected StoreUnavailable, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn slow_store_times_out_open() {
    let tool = Tool::default();
    let mut service = tower::Layer::layer(&broken_layer(true, true), tool.service());
    let started = tokio::time::Instant::now();

    call(&mut service, request("acme")).await.unwrap();

    assert_eq!(started.elapsed(), Duration::from_millis(250));
    assert_eq!(tool.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn wait_mode_sleeps_until_window_resets() {
    let tool = Tool::default();
    let layer = waiting_layer(1, "2026-03-02T10:00:45Z", 30);
    let mut service = tower::Layer::layer(&layer, tool.service());
    let started = tokio::time::Instant::now();

    call(&mut service, request("acme")).await.unwrap();
    call(&mut service, request("acme")).await.unwrap();

    assert_eq!(
        started.elapsed(),
        Duration::from_secs(15),
        "the second call waited for the next minute"
    );
    assert_eq!(tool.calls(), 2);
}

/// A reset 250 ms away is announced as a wait of one second, like one already passed, since a
/// retry sooner than that mostly comes back into the same rejection.
#[tokio::test(start_paused = true)]
async fn subsecond_reset_announces_a_second() {
    let layer = RateLimitLayer::builder(
        Arc::new(StaticPolicies::new().with(Policy::new("default", TOOL, per_minute(1)))),
        Arc::new(MemoryStore::new()),
    )
    .tool(TOOL)
    .clock(TokioClock::starting_at(utc("2026-03-02T10:00:59.750Z")))
    .build();
    let mut service = tower::Layer::layer(&layer, Tool::default().service());

    call(&mut service, request("acme")).await.unwrap();
    let rejected = rejection(call(&mut service, request("acme")).await);

    assert_eq!(rejected.retry_at(), Some(utc("2026-03-02T10:01:00Z")));
    assert_eq!(rejected.retry_after(), Some(Rejection::MIN_RETRY_AFTER));
}

/// Wait mode sleeps only until a reset that is near, not the second that a rejection announces.
#[tokio::test(start_paused = true)]
async fn wait_mode_sleeps_subsecond_wait() {
    let tool = Tool::default();
    let layer = waiting_layer(1, "2026-03-02T10:00:59.750Z", 30);
    let mut service = tower::Layer::layer(&layer, tool.service());
    let started = tokio::time::Instant::now();

    call(&mut service, request("acme")).await.unwrap();
    call(&mut service, request("acme")).await.unwrap();

    assert_eq!(started.elapsed(), Duration::from_millis(250));
    assert_eq!(tool.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn wait_mode_rejects_long_waits_at_once() {
    let layer = waiting_layer(1, "2026-03-02T10:00:10Z", 30);
    let mut service = tower::Layer::layer(&layer, Tool::default().service());
    let started = tokio::time::Instant::now();

    call(&mut service, request("acme")).await.unwrap();
    let rejected = rejection(call(&mut service, request("acme")).await);

    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(rejected.retry_after(), Some(Duration::from_secs(50)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_calls_admit_exactly_the_limit() {
    let tool = Tool::default();
    let mut policy = Policy::new(
        "default",
        TOOL,
        Capacity {
            per_hour: Some(100),
            per_day: Some(150),
            ..Capacity::UNLIMITED
        },
    );
    policy.scope = Scope::Global;
    let layer = RateLimitLayer::builder(
        Arc::new(StaticPolicies::new().with(policy)),
        Arc::new(MemoryStore::new()),
    )
    .tool(TOOL)
    .clock(TokioClock::starting_at(monday_ten()))
    .build();
    let service = tower::Layer::layer(&layer, tool.service());
    let admitted = Arc::new(AtomicUsize::new(0));

    let mut tasks = Vec::new();
    for task in 0..32 {
        let mut service = service.clone();
        let admitted = admitted.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..20 {
                if call(&mut service, request(&format!("tenant-{task}")))
                    .await
                    .is_ok()
                {
                    admitted.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }

    assert_eq!(admitted.load(Ordering::SeqCst), 100);
    assert_eq!(tool.calls(), 100);
}

#[tokio::test]
async fn poll_ready_waits_for_inner_service() {
    let layer =
        layer_with(StaticPolicies::new().with(Policy::new("default", TOOL, per_minute(10))));
    let (inner, mut handle) = tower_test::mock::pair::<Request, &'static str>();
    let mut service = tower_test::mock::Spawn::new(tower::Layer::layer(&layer, inner));

    handle.allow(0);
    tokio_test::assert_pending!(service.poll_ready());

    for round in 0..2 {
        handle.allow(1);
        tokio_test::assert_ready_ok!(service.poll_ready());
        // The response completes only when the mock replies, so it is awaited in its own task.
        let response = tokio::spawn(service.call(request("acme")));
        let (received, reply) = handle
            .next_request()
            .await
            .expect("the admitted call reaches the inner service");
        assert_eq!(
            received.extensions().get::<TenantId>(),
            Some(&TenantId::new("acme"))
        );
        reply.send_response("sent");
        assert_eq!(response.await.unwrap().unwrap(), "sent", "round {round}");
    }
}

#[tokio::test(start_paused = true)]
async fn boxed_errors_stack_with_timeout() {
    // A tool whose errors are boxed, behind the limiter and tower's Timeout, as in most stacks.
    let layer = layer_with(StaticPolicies::new().with(Policy::new("default", TOOL, per_minute(1))));
    let tool = service_fn(|_request: Request| async {
        Err::<String, tower::BoxError>("mail server down".into())
    });
    let mut service = tower::ServiceBuilder::new()
        .timeout(Duration::from_secs(5))
        .map_err(RateLimitError::into_box_error)
        .layer(layer)
        .service(tool);

    let failed = service.ready().await.unwrap().call(request("acme")).await;
    let failure = failed.expect_err("the tool fails");
    assert_eq!(failure.to_string(), "mail server down");
    assert!(failure.downcast_ref::<Rejection>().is_none());

    let rejected = service.ready().await.unwrap().call(request("acme")).await;
    let rejection = rejected.expect_err("the second call is over the limit");
    assert!(
        rejection.downcast_ref::<Rejection>().is_some(),
        "{rejection}"
    );
}

#[tokio::test(start_paused = true)]
async fn inner_error_is_a_service_error() {
    let layer =
        layer_with(StaticPolicies::new().with(Policy::new("default", TOOL, per_minute(10))));
    let failing = service_fn(|_request: Request| async {
        Err::<String, _>(std::io::Error::other("smtp down"))
    });
    let mut service: RateLimit<_> = tower::Layer::layer(&layer, failing);

    let error = service
        .ready()
        .await
        .unwrap()
        .call(request("acme"))
        .await
        .unwrap_err();

    assert!(!error.is_rejected());
    assert_eq!(error.to_string(), "smtp down");
    assert_eq!(
        error.into_service_error().map(|error| error.to_string()),
        Some("smtp down".to_owned())
    );
}

/// Builds a policy whose schedule is the email example and whose report expired at the start of
/// February 2026, so the layer must compute the report again from the definition.
fn email_schedule_layer(start: DateTime<Utc>) -> RateLimitLayer {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/schedules/email.tjp");
    let definition = std::fs::read_to_string(path).expect("the email example schedule exists");
    let schedule = highway_ratelimit::schedule::Schedule::parse(&definition, &Default::default())
        .expect("the email example schedule parses");
    let options = highway_ratelimit::report::ReportOptions {
        resource: None,
        from: utc("2026-01-25T00:00:00Z"),
        days: 7,
        generated_at: utc("2026-01-25T00:00:00Z"),
    };
    let stale = AvailabilityReport::generate(&schedule, &options)
        .expect("the email report generates")
        .report;
    assert!(
        !stale.covers(start),
        "the report must not cover the first call"
    );

    let mut policy = Policy::new("default", TOOL, per_minute(1000));
    policy.schedule = Some(PolicySchedule {
        definition,
        resource: None,
        report: Arc::new(stale),
    });
    RateLimitLayer::builder(
        Arc::new(StaticPolicies::new().with(policy)),
        Arc::new(MemoryStore::new()),
    )
    .tool(TOOL)
    .clock(TokioClock::starting_at(start))
    .build()
}

#[tokio::test(start_paused = true)]
async fn replay_before_report_is_computed() {
    // Tuesday 20 January 2026, 10:00 in New York: before the stored report, which starts on
    // 25 January, as when calls are replayed; the schedule is open then.
    let layer = email_schedule_layer(utc("2026-01-20T15:00:00Z"));
    let tool = Tool::default();
    let mut service = tower::Layer::layer(&layer, tool.service());

    call(&mut service, request("acme"))
        .await
        .expect("the report computed for the call's instant is open");
    assert_eq!(tool.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn expired_report_is_computed_again() {
    // Monday 2 March 2026, 10:00 in New York.
    let layer = email_schedule_layer(utc("2026-03-02T15:00:00Z"));
    let mut service = tower::Layer::layer(&layer, Tool::default().service());

    for _ in 0..10 {
        call(&mut service, request("acme")).await.unwrap();
    }
    let rejected = rejection(call(&mut service, request("acme")).await);

    match rejected.reason() {
        RejectionReason::QuotaExhausted { window, limit, .. } => {
            assert_eq!(
                (*window, *limit),
                (WindowKind::Minute, 10),
                "the new report's minutelymax applies"
            );
        }
        other => panic!("expected the new report's minute quota, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn computed_report_moves_quota_retry() {
    // Monday 2 March 2026, 16:59:30 in New York: the minute's quota of 10 runs out, and the
    // minute ends at 17:00, when business hours end.
    let layer = email_schedule_layer(utc("2026-03-02T21:59:30Z"));
    let mut service = tower::Layer::layer(&layer, Tool::default().service());

    for _ in 0..10 {
        call(&mut service, request("acme")).await.unwrap();
    }
    let rejected = rejection(call(&mut service, request("acme")).await);

    match rejected.reason() {
        RejectionReason::QuotaExhausted {
            window, retry_at, ..
        } => {
            assert_eq!(*window, WindowKind::Minute);
            assert_eq!(
                *retry_at,
                utc("2026-03-03T14:00:00Z"),
                "Tuesday 09:00 in New York, when the schedule opens again"
            );
        }
        other => panic!("expected QuotaExhausted, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn replayed_quota_retry_follows_its_day() {
    // Tuesday 20 January 2026, 16:59:30 in New York, before the stored report starts on
    // 25 January: the minute's quota runs out as the schedule closes.
    let layer = email_schedule_layer(utc("2026-01-20T21:59:30Z"));
    let mut service = tower::Layer::layer(&layer, Tool::default().service());

    for _ in 0..10 {
        call(&mut service, request("acme")).await.unwrap();
    }
    let rejected = rejection(call(&mut service, request("acme")).await);

    match rejected.reason() {
        RejectionReason::QuotaExhausted { retry_at, .. } => {
            assert_eq!(
                *retry_at,
                utc("2026-01-21T14:00:00Z"),
                "Wednesday 09:00 in New York, not the first window of the stored report"
            );
        }
        other => panic!("expected QuotaExhausted, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn computed_report_rejects_weekend() {
    // Saturday 7 March 2026, 12:00 in New York; clocks move to EDT on Sunday 8 March.
    let layer = email_schedule_layer(utc("2026-03-07T17:00:00Z"));
    let mut service = tower::Layer::layer(&layer, Tool::default().service());

    let rejected = rejection(call(&mut service, request("acme")).await);

    match rejected.reason() {
        RejectionReason::OutsideHours { next_allowed } => {
            assert_eq!(
                *next_allowed,
                Some(utc("2026-03-09T13:00:00Z")),
                "Monday 09:00 EDT"
            );
        }
        other => panic!("expected OutsideHours, got {other:?}"),
    }
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

#[tokio::test(start_paused = true)]
async fn quota_retry_at_capacity_rise() {
    let options = highway_ratelimit::report::ReportOptions {
        resource: None,
        from: utc("2026-03-02T00:00:00Z"),
        days: 7,
        generated_at: utc("2026-03-02T00:00:00Z"),
    };
    let schedule = PolicySchedule::render("paced.tjp", PACED_SCHEDULE, &options)
        .expect("the paced schedule renders");
    let layer = RateLimitLayer::builder(
        Arc::new(StaticPolicies::new().with(Policy::scheduled("default", TOOL, schedule))),
        Arc::new(MemoryStore::new()),
    )
    .tool(TOOL)
    .clock(TokioClock::starting_at(monday_ten()))
    .build();
    let mut service = tower::Layer::layer(&layer, Tool::default().service());

    call(&mut service, request("acme")).await.unwrap();
    call(&mut service, request("acme")).await.unwrap();
    let rejected = rejection(call(&mut service, request("acme")).await);
    let retry_at = rejected
        .retry_at()
        .expect("a quota rejection has a retry time");
    tokio::time::advance(
        (utc("2026-03-02T12:00:00Z") - monday_ten())
            .to_std()
            .unwrap(),
    )
    .await;
    let at_noon = call(&mut service, request("acme")).await;

    assert!(at_noon.is_ok(), "the day's limit rises to 10 at noon");
    assert_eq!(
        retry_at,
        utc("2026-03-02T12:00:00Z"),
        "the call can succeed from noon, not only on the next day"
    );
}

/// The paced schedule with the morning's share ending at 10:30, and at most 2 calls an hour.
const PACED_HOURLY_SCHEDULE: &str = r#"
project paced "Paced email" 2026-01-01 - 2027-01-01 {
  timezone "UTC"
}

resource email "Email service" {
  limits {
    hourlymax 2
    dailymax 10
    dailymax 2 { hours 09:00 - 10:30 }
  }
}
"#;

#[tokio::test(start_paused = true)]
async fn quota_retry_at_reset_after_rise() {
    let options = highway_ratelimit::report::ReportOptions {
        resource: None,
        from: utc("2026-03-02T00:00:00Z"),
        days: 7,
        generated_at: utc("2026-03-02T00:00:00Z"),
    };
    let schedule = PolicySchedule::render("paced.tjp", PACED_HOURLY_SCHEDULE, &options)
        .expect("the paced schedule renders");
    let layer = RateLimitLayer::builder(
        Arc::new(StaticPolicies::new().with(Policy::scheduled("default", TOOL, schedule))),
        Arc::new(MemoryStore::new()),
    )
    .tool(TOOL)
    .clock(TokioClock::starting_at(monday_ten()))
    .build();
    let mut service = tower::Layer::layer(&layer, Tool::default().service());

    // Both the day's morning share and the hour are used up at 10:00.
    call(&mut service, request("acme")).await.unwrap();
    call(&mut service, request("acme")).await.unwrap();
    let rejected = rejection(call(&mut service, request("acme")).await);
    let retry_at = rejected
        .retry_at()
        .expect("a quota rejection has a retry time");
    tokio::time::advance(Duration::from_secs(3600)).await;
    let at_eleven = call(&mut service, request("acme")).await;

    assert!(
        at_eleven.is_ok(),
        "at 11:00 the day allows 10 and the hour starts again"
    );
    assert_eq!(
        retry_at,
        utc("2026-03-02T11:00:00Z"),
        "the day's limit rises at 10:30 and the hour resets at 11:00"
    );
}

/// Builds a layer whose one policy follows `definition`, with a week's report from Monday
/// 2 March 2026 and a clock that starts at `start`. The layer waits up to `max_wait` when set.
fn schedule_layer(
    definition: &str,
    start: DateTime<Utc>,
    max_wait: Option<Duration>,
) -> RateLimitLayer {
    let options = highway_ratelimit::report::ReportOptions {
        resource: None,
        from: utc("2026-03-02T00:00:00Z"),
        days: 7,
        generated_at: utc("2026-03-02T00:00:00Z"),
    };
    let schedule = PolicySchedule::render("test.tjp", definition, &options)
        .expect("the test schedule renders");
    let builder = RateLimitLayer::builder(
        Arc::new(StaticPolicies::new().with(Policy::scheduled("default", TOOL, schedule))),
        Arc::new(MemoryStore::new()),
    )
    .tool(TOOL)
    .clock(TokioClock::starting_at(start));
    match max_wait {
        Some(max_wait) => builder.wait_up_to(max_wait).build(),
        None => builder.build(),
    }
}

fn request_costing(tenant: &str, units: u64) -> Request {
    let mut request = request(tenant);
    request
        .extensions_mut()
        .insert(Cost::new(units).expect("test costs are positive"));
    request
}

#[tokio::test(start_paused = true)]
async fn cost_above_slot_retries_at_rise() {
    // At 10:00 the day allows 2 units. From noon it allows 10, so a call of 5 fits then.
    let tool = Tool::default();
    let layer = schedule_layer(PACED_SCHEDULE, monday_ten(), None);
    let mut service = tower::Layer::layer(&layer, tool.service());

    let rejected = rejection(call(&mut service, request_costing("acme", 5)).await);

    match rejected.reason() {
        RejectionReason::QuotaExhausted {
            window,
            limit,
            retry_at,
            windows,
            ..
        } => {
            assert_eq!(*window, WindowKind::Day);
            assert_eq!(*limit, 2, "the morning's limit is in force");
            assert_eq!(*retry_at, utc("2026-03-02T12:00:00Z"));
            assert!(windows.is_empty(), "the store counted nothing: {windows:?}");
        }
        other => panic!("expected QuotaExhausted, got {other:?}"),
    }
    assert_eq!(rejected.retry_after(), Some(Duration::from_secs(2 * 3600)));
    let message = rejected.to_string();
    assert!(
        message.contains("a cost of 5 is more than the day limit of 2 in force now"),
        "{message}"
    );
    assert!(message.contains("2026-03-02 12:00:00 UTC"), "{message}");
    assert_eq!(tool.calls(), 0);

    tokio::time::advance(Duration::from_secs(2 * 3600)).await;
    call(&mut service, request_costing("acme", 5))
        .await
        .expect("the day allows 10 from noon");
    assert_eq!(tool.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn cost_above_every_slot_never_fits() {
    let tool = Tool::default();
    let layer = schedule_layer(PACED_SCHEDULE, monday_ten(), None);
    let mut service = tower::Layer::layer(&layer, tool.service());

    let never = rejection(call(&mut service, request_costing("acme", 11)).await);

    match never.reason() {
        RejectionReason::CostExceedsLimit {
            window,
            limit,
            cost,
        } => {
            assert_eq!((*window, *limit, *cost), (WindowKind::Day, 10, 11));
        }
        other => panic!("expected CostExceedsLimit, got {other:?}"),
    }
    assert_eq!(never.retry_at(), None);
    assert_eq!(tool.calls(), 0);
}

/// A cost that no window of the schedule admits names the largest limit of the report, not the
/// smaller one in force now, so that the caller knows which limit to raise.
#[tokio::test(start_paused = true)]
async fn never_fitting_cost_names_largest_limit() {
    let tool = Tool::default();
    let layer = schedule_layer(PACED_SCHEDULE, monday_ten(), None);
    let mut service = tower::Layer::layer(&layer, tool.service());

    let never = rejection(call(&mut service, request_costing("acme", 11)).await);

    let message = never.to_string();
    assert!(
        message.contains("a cost of 11 can never fit the day limit of 10"),
        "{message}"
    );
    assert!(!message.contains("limit of 2"), "{message}");
}

/// A stored report that ended before the call is computed again, and the cost is judged by the
/// slots of the report computed then.
#[tokio::test(start_paused = true)]
async fn expired_report_judges_cost_by_rendered_slots() {
    let options = highway_ratelimit::report::ReportOptions {
        resource: None,
        from: utc("2026-01-05T00:00:00Z"),
        days: 1,
        generated_at: utc("2026-01-05T00:00:00Z"),
    };
    let schedule = PolicySchedule::render("test.tjp", PACED_SCHEDULE, &options)
        .expect("the test schedule renders");
    assert!(
        schedule.report.valid_until < monday_ten(),
        "the stored report has ended by the call"
    );
    let tool = Tool::default();
    let layer = RateLimitLayer::builder(
        Arc::new(StaticPolicies::new().with(Policy::scheduled("default", TOOL, schedule))),
        Arc::new(MemoryStore::new()),
    )
    .tool(TOOL)
    .clock(TokioClock::starting_at(monday_ten()))
    .build();
    let mut service = tower::Layer::layer(&layer, tool.service());

    for _ in 0..2 {
        let never = rejection(call(&mut service, request_costing("acme", 11)).await);
        match never.reason() {
            RejectionReason::CostExceedsLimit {
                window,
                limit,
                cost,
            } => assert_eq!((*window, *limit, *cost), (WindowKind::Day, 10, 11)),
            other => panic!("expected CostExceedsLimit, got {other:?}"),
        }
    }

    let later = rejection(call(&mut service, request_costing("acme", 5)).await);
    assert!(
        matches!(later.reason(), RejectionReason::QuotaExhausted { .. }),
        "{later:?}"
    );
    assert_eq!(later.retry_at(), Some(utc("2026-03-02T12:00:00Z")));
    assert_eq!(tool.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn cost_within_slot_is_charged() {
    let tool = Tool::default();
    let layer = schedule_layer(PACED_SCHEDULE, monday_ten(), None);
    let mut service = tower::Layer::layer(&layer, tool.service());

    call(&mut service, request_costing("acme", 2))
        .await
        .expect("a cost of 2 fits the morning's limit of 2");
    let rejected = rejection(call(&mut service, request_costing("acme", 1)).await);

    match rejected.reason() {
        RejectionReason::QuotaExhausted {
            window,
            limit,
            retry_at,
            windows,
            ..
        } => {
            assert_eq!((*window, *limit), (WindowKind::Day, 2));
            assert_eq!(*retry_at, utc("2026-03-02T12:00:00Z"));
            assert_eq!(windows[0].remaining, 0);
        }
        other => panic!("expected QuotaExhausted, got {other:?}"),
    }
    assert!(
        rejected
            .to_string()
            .contains("the day quota of 2 is exhausted"),
        "{rejected}"
    );
    assert_eq!(tool.calls(), 1);
}

/// The paced schedule with at most 3 calls an hour from noon to 14:00.
const PACED_LUNCH_SCHEDULE: &str = r#"
project paced "Paced email" 2026-01-01 - 2027-01-01 {
  timezone "UTC"
}

resource email "Email service" {
  limits {
    dailymax 10
    dailymax 2 { hours 09:00 - 12:00 }
    hourlymax 3 { hours 12:00 - 14:00 }
  }
}
"#;

#[tokio::test(start_paused = true)]
async fn cost_retry_needs_every_kind() {
    // From noon the day allows 10, but the hour allows 3 until 14:00.
    let layer = schedule_layer(PACED_LUNCH_SCHEDULE, monday_ten(), None);
    let mut service = tower::Layer::layer(&layer, Tool::default().service());

    let rejected = rejection(call(&mut service, request_costing("acme", 5)).await);

    assert_eq!(rejected.retry_at(), Some(utc("2026-03-02T14:00:00Z")));
}

/// A schedule with the default working hours, 09:00 to 17:00 on weekdays in UTC, that allows
/// 2 calls on Mondays and 10 on other days.
const MONDAY_SCHEDULE: &str = r#"
project paced "Paced email" 2026-01-01 - 2027-01-01 {
  timezone "UTC"
}

resource email "Email service" {
  limits {
    dailymax 10
    dailymax 2 { days mon }
  }
}
"#;

#[tokio::test(start_paused = true)]
async fn cost_above_weekday_retries_next_day() {
    let layer = schedule_layer(MONDAY_SCHEDULE, monday_ten(), None);
    let mut service = tower::Layer::layer(&layer, Tool::default().service());

    let rejected = rejection(call(&mut service, request_costing("acme", 5)).await);

    assert!(
        matches!(rejected.reason(), RejectionReason::QuotaExhausted { .. }),
        "{rejected:?}"
    );
    assert_eq!(
        rejected.retry_at(),
        Some(utc("2026-03-03T09:00:00Z")),
        "Tuesday's window allows 10"
    );
}

#[tokio::test(start_paused = true)]
async fn wait_mode_waits_for_cost_fit() {
    let tool = Tool::default();
    let layer = schedule_layer(
        PACED_SCHEDULE,
        monday_ten(),
        Some(Duration::from_secs(3 * 3600)),
    );
    let mut service = tower::Layer::layer(&layer, tool.service());
    let started = tokio::time::Instant::now();

    call(&mut service, request_costing("acme", 5))
        .await
        .expect("the call waits until noon, when a cost of 5 fits");

    assert_eq!(started.elapsed(), Duration::from_secs(2 * 3600));
    assert_eq!(tool.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn wait_mode_rejects_distant_cost_fit() {
    let layer = schedule_layer(
        PACED_SCHEDULE,
        monday_ten(),
        Some(Duration::from_secs(3600)),
    );
    let mut service = tower::Layer::layer(&layer, Tool::default().service());
    let started = tokio::time::Instant::now();

    let rejected = rejection(call(&mut service, request_costing("acme", 5)).await);

    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(rejected.retry_at(), Some(utc("2026-03-02T12:00:00Z")));
}

#[tokio::test(start_paused = true)]
async fn scheduled_policy_from_text() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/schedules/email.tjp");
    let definition = std::fs::read_to_string(path).expect("the email example schedule exists");
    let mut options = highway_ratelimit::report::ReportOptions {
        resource: Some("email".to_owned()),
        from: utc("2026-03-02T05:00:00Z"),
        days: 7,
        generated_at: utc("2026-03-02T05:00:00Z"),
    };
    let schedule = PolicySchedule::render("email.tjp", definition.clone(), &options)
        .expect("the email schedule renders");
    let policy = Policy::scheduled("default", TOOL, schedule);
    assert_eq!(policy.timezone, chrono_tz::America::New_York);

    // Saturday 7 March 2026, 10:00 in New York: no business hours.
    let layer = RateLimitLayer::builder(
        Arc::new(StaticPolicies::new().with(policy)),
        Arc::new(MemoryStore::new()),
    )
    .tool(TOOL)
    .clock(TokioClock::starting_at(utc("2026-03-07T15:00:00Z")))
    .build();
    let mut service = tower::Layer::layer(&layer, Tool::default().service());
    let rejected = rejection(call(&mut service, request("acme")).await);
    assert!(
        matches!(rejected.reason(), RejectionReason::OutsideHours { .. }),
        "{rejected}"
    );

    options.resource = Some("sms".to_owned());
    let unknown = PolicySchedule::render("email.tjp", definition, &options);
    assert!(
        matches!(
            unknown,
            Err(highway_ratelimit::policy::RenderError::Report(_))
        ),
        "{unknown:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn quota_retry_skips_opening_below_cost() {
    // Monday 12:30: a call of 8 leaves 2 of the day's 10. A call of 5 is rejected by the day,
    // which resets at midnight. On Tuesday the schedule opens at 09:00 with a day limit of 2,
    // which a cost of 5 cannot meet, and rises to 10 at noon.
    let layer = schedule_layer(PACED_SCHEDULE, utc("2026-03-02T12:30:00Z"), None);
    let mut service = tower::Layer::layer(&layer, Tool::default().service());

    call(&mut service, request_costing("acme", 8))
        .await
        .expect("a cost of 8 fits the afternoon's limit of 10");
    let rejected = rejection(call(&mut service, request_costing("acme", 5)).await);

    assert!(
        matches!(rejected.reason(), RejectionReason::QuotaExhausted { .. }),
        "{rejected:?}"
    );
    assert_eq!(
        rejected.retry_at(),
        Some(utc("2026-03-03T12:00:00Z")),
        "Tuesday noon, when the day's limit admits a cost of 5 again"
    );
}

#[tokio::test(start_paused = true)]
async fn wait_mode_skips_opening_below_cost() {
    let tool = Tool::default();
    let layer = schedule_layer(
        PACED_SCHEDULE,
        utc("2026-03-02T12:30:00Z"),
        Some(Duration::from_secs(24 * 3600)),
    );
    let mut service = tower::Layer::layer(&layer, tool.service());
    call(&mut service, request_costing("acme", 8))
        .await
        .expect("a cost of 8 fits the afternoon's limit of 10");
    let started = tokio::time::Instant::now();

    let waited = call(&mut service, request_costing("acme", 5)).await;

    assert!(
        waited.is_ok(),
        "Tuesday noon is within the maximum wait: {waited:?}"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(23 * 3600 + 1800));
    assert_eq!(tool.calls(), 2);
}

/// Returns a schedule open all day, every day, whose hour limit alternates between 5 and 6, so
/// that its report has one window per hour, and whose day limit is 10.
fn hourly_slots_schedule() -> String {
    let mut limits = String::new();
    for hour in 0..24 {
        let limit = 5 + hour % 2;
        limits.push_str(&format!(
            "    hourlymax {limit} {{ hours {hour:02}:00 - {:02}:00 }}\n",
            hour + 1
        ));
    }
    format!(
        r#"
project slots "Hourly slots" 2026-01-01 - 2028-01-01 {{
  timezone "UTC"
  workinghours mon - sun 00:00 - 24:00
}}

resource email "Email service" {{
  limits {{
    dailymax 10
{limits}  }}
}}
"#
    )
}

/// On a report of a year of hourly slots, a cost that no slot admits gets `CostExceedsLimit` on
/// every call, and a cost the hour admits again later is a quota rejection. The stored report
/// keeps, per window, the largest cost admitted from there on, so the first case reads no slot.
#[tokio::test(start_paused = true)]
async fn cost_above_year_report_never_fits() {
    let options = highway_ratelimit::report::ReportOptions {
        resource: None,
        from: utc("2026-03-02T00:00:00Z"),
        days: 365,
        generated_at: utc("2026-03-02T00:00:00Z"),
    };
    let schedule = PolicySchedule::render("slots.tjp", hourly_slots_schedule(), &options)
        .expect("the hourly slots schedule renders");
    assert!(
        schedule.report.windows.len() >= 365 * 24,
        "one window per hour"
    );
    let layer = RateLimitLayer::builder(
        Arc::new(StaticPolicies::new().with(Policy::scheduled("default", TOOL, schedule))),
        Arc::new(MemoryStore::new()),
    )
    .tool(TOOL)
    .clock(TokioClock::starting_at(monday_ten()))
    .build();
    let mut service = tower::Layer::layer(&layer, Tool::default().service());

    call(&mut service, request_costing("acme", 5))
        .await
        .unwrap();
    let quota = rejection(call(&mut service, request_costing("acme", 5)).await);
    assert!(
        matches!(quota.reason(), RejectionReason::QuotaExhausted { .. }),
        "{quota:?}"
    );

    for _ in 0..3 {
        let never = rejection(call(&mut service, request_costing("globex", 11)).await);
        assert!(
            matches!(
                never.reason(),
                RejectionReason::CostExceedsLimit { cost: 11, .. }
            ),
            "{never:?}"
        );
    }
}

/// A zero store timeout would fail every call to a store that does not decide on the calling
/// thread, so building such a layer panics with the setting, the value and what to use instead.
/// With the in-process store the timeout is unused, and `zero_settings_still_limit` builds one.
#[test]
fn zero_store_timeout_panics() {
    let builder = RateLimitLayer::builder(
        Arc::new(StaticPolicies::new().with(Policy::new("default", TOOL, per_minute(1)))),
        Arc::new(BrokenStore { hangs: false }),
    )
    .store_timeout(Duration::ZERO);

    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| builder.build()))
        .expect_err("a zero store timeout panics");

    let message = panic
        .downcast_ref::<String>()
        .expect("the panic message is formatted");
    assert!(
        message.contains("RateLimitBuilder::store_timeout"),
        "{message}"
    );
    assert!(message.contains("store timeout of 0ns"), "{message}");
    assert!(message.contains("such as the default 500ms"), "{message}");
}

/// Wait mode sleeps on Tokio's timer, so on a runtime built without `enable_time` a call that
/// would wait panics with Tokio's own message, as tower's `Timeout` does there. A call that does
/// not wait still runs without the timer.
#[test]
#[should_panic(expected = "timers are disabled")]
fn wait_mode_without_timers_panics() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime starts");
    let layer = waiting_layer(1, "2026-03-02T10:00:45Z", 30);
    let tool = Tool::default();
    let mut service = tower::Layer::layer(&layer, tool.service());

    let first = runtime.block_on(call(&mut service, request("acme")));
    assert_eq!(first.unwrap(), "sent for acme");

    let _ = runtime.block_on(call(&mut service, request("acme")));
}

/// A tool that is not `Send`, such as one that keeps its state in an `Rc` on a current-thread
/// runtime, can be limited: the layer moves neither the tool nor the request to another thread.
#[tokio::test(start_paused = true)]
async fn tool_without_send_is_limited() {
    let calls = std::rc::Rc::new(std::cell::Cell::new(0));
    let counted = calls.clone();
    let tool = service_fn(move |_request: Request| {
        counted.set(counted.get() + 1);
        std::future::ready(Ok::<_, Infallible>("sent".to_owned()))
    });
    let layer = layer_with(StaticPolicies::new().with(Policy::new("default", TOOL, per_minute(1))));
    let mut service = tower::Layer::layer(&layer, tool);

    assert_eq!(call(&mut service, request("acme")).await.unwrap(), "sent");
    rejection(call(&mut service, request("acme")).await);
    assert_eq!(calls.get(), 1);
}

/// A cache of no entries or no time to live only makes every call read the policy source. A zero
/// store timeout and maximum wait are harmless with a store that decides at once. So the layer
/// still counts calls against the limit.
#[tokio::test(start_paused = true)]
async fn zero_settings_still_limit() {
    let settings = [
        (0, Duration::from_secs(60)),
        (10, Duration::ZERO),
        (0, Duration::ZERO),
    ];
    for (capacity, ttl) in settings {
        let layer = RateLimitLayer::builder(
            Arc::new(StaticPolicies::new().with(Policy::new("default", TOOL, per_minute(1)))),
            Arc::new(MemoryStore::new()),
        )
        .tool(TOOL)
        .clock(TokioClock::starting_at(monday_ten()))
        .cache_capacity(capacity)
        .cache_ttl(ttl)
        .store_timeout(Duration::ZERO)
        .wait_up_to(Duration::ZERO)
        .build();
        let tool = Tool::default();
        let mut service = tower::Layer::layer(&layer, tool.service());

        call(&mut service, request("acme")).await.unwrap();
        let rejected = rejection(call(&mut service, request("acme")).await);

        assert!(
            matches!(rejected.reason(), RejectionReason::QuotaExhausted { .. }),
            "capacity {capacity}, time to live {ttl:?}: {rejected}"
        );
        assert_eq!(tool.calls(), 1, "capacity {capacity}, time to live {ttl:?}");
    }
}

/// A waiting call dropped while it sleeps (a `Timeout` around the limiter, a client that hung
/// up) gives back the inner service's readiness and is never charged, because it is charged only
/// when it wakes.
#[tokio::test(start_paused = true)]
async fn dropped_waiting_call_is_uncharged() {
    let tool = Tool::default();
    let layer = waiting_layer(1, "2026-03-02T10:00:45Z", 30);
    let limited = tower::limit::ConcurrencyLimit::new(tool.service(), 1);
    let mut service = tower::ServiceBuilder::new()
        .timeout(Duration::from_secs(5))
        .map_err(RateLimitError::into_box_error)
        .layer(layer)
        .service(limited);
    let mut other = service.clone();

    service
        .ready()
        .await
        .unwrap()
        .call(request("acme"))
        .await
        .unwrap();
    let timed_out = service.ready().await.unwrap().call(request("acme")).await;
    assert!(
        timed_out
            .unwrap_err()
            .is::<tower::timeout::error::Elapsed>(),
        "the waiting call times out after 5 s"
    );

    let ready = tokio_test::task::spawn(other.ready()).poll();
    assert!(
        ready.is_ready(),
        "the timed-out call still holds the permit"
    );
    tokio::time::advance(Duration::from_secs(10)).await;
    let next_minute = other.ready().await.unwrap().call(request("acme")).await;
    assert_eq!(next_minute.unwrap(), "sent for acme");
    assert_eq!(tool.calls(), 2);
}

/// `LoadShed` reports itself ready and fails the call when its inner service is not, so under
/// the limiter it sheds calls that were already charged. Around the limiter, it sheds them
/// before they reach the limiter, uncharged.
#[tokio::test(start_paused = true)]
async fn load_shed_charges_only_inside() {
    let policies = || StaticPolicies::new().with(Policy::new("default", TOOL, per_minute(2)));
    let tool = Tool::default();
    let limited = tower::limit::ConcurrencyLimit::new(tool.service(), 1);
    // A clone made ready holds the only permit, so the tool is busy until it is dropped.
    let mut busy = limited.clone();
    busy.ready().await.unwrap();

    let mut shed_inside = tower::ServiceBuilder::new()
        .map_err(RateLimitError::into_box_error)
        .layer(layer_with(policies()))
        .load_shed()
        .service(limited.clone());
    let mut shed_outside = tower::ServiceBuilder::new()
        .load_shed()
        .map_err(RateLimitError::into_box_error)
        .layer(layer_with(policies()))
        .service(limited);

    let inside = shed_inside
        .ready()
        .await
        .unwrap()
        .call(request("acme"))
        .await;
    let outside = shed_outside
        .ready()
        .await
        .unwrap()
        .call(request("acme"))
        .await;
    assert!(
        inside
            .unwrap_err()
            .is::<tower::load_shed::error::Overloaded>()
    );
    assert!(
        outside
            .unwrap_err()
            .is::<tower::load_shed::error::Overloaded>()
    );
    drop(busy);

    for round in 0..2 {
        let admitted = shed_outside
            .ready()
            .await
            .unwrap()
            .call(request("acme"))
            .await;
        assert_eq!(admitted.unwrap(), "sent for acme", "outside, call {round}");
    }
    let admitted = shed_inside
        .ready()
        .await
        .unwrap()
        .call(request("acme"))
        .await;
    assert_eq!(admitted.unwrap(), "sent for acme");
    let charged = shed_inside
        .ready()
        .await
        .unwrap()
        .call(request("acme"))
        .await;
    let charged = charged.unwrap_err();
    assert!(
        charged.downcast_ref::<Rejection>().is_some(),
        "the shed call used one of the 2 calls of the minute: {charged}"
    );
    assert_eq!(tool.calls(), 3);
}

/// Behind `Buffer`, one worker drives the limiter's `poll_ready` and `call` for every caller.
/// Rejected calls give the permit of the concurrency limit under the limiter back, so calls of
/// another tenant still reach the tool.
#[tokio::test(start_paused = true)]
async fn buffered_rejections_keep_permits() {
    let tool = Tool::default();
    let layer = layer_with(StaticPolicies::new().with(Policy::new("default", TOOL, per_minute(1))));
    let limited = tower::limit::ConcurrencyLimit::new(tool.service(), 1);
    let service = tower::buffer::Buffer::new(tower::Layer::layer(&layer, limited), 4);

    let mut outcomes = Vec::new();
    for tenant in ["acme", "acme", "acme", "acme", "globex"] {
        let outcome = service.clone().oneshot(request(tenant)).await;
        outcomes.push(outcome.map_err(|error| error.to_string()));
    }

    assert_eq!(outcomes[0].as_deref(), Ok("sent for acme"));
    for rejected in &outcomes[1..4] {
        let message = rejected.as_ref().unwrap_err();
        assert!(message.contains("quota of 1 is exhausted"), "{message}");
    }
    assert_eq!(outcomes[4].as_deref(), Ok("sent for globex"));
    assert_eq!(tool.calls(), 2);
}

/// A call that wait mode delays waits without the inner service's readiness, so a
/// concurrency limit under the limiter still serves the calls of other tenants meanwhile.
#[tokio::test(start_paused = true)]
async fn waiting_call_leaves_permit_free() {
    let tool = Tool::default();
    let layer = waiting_layer(1, "2026-03-02T10:00:45Z", 30);
    let limited = tower::limit::ConcurrencyLimit::new(tool.service(), 1);
    let mut service = tower::Layer::layer(&layer, limited);
    let mut other = service.clone();

    call(&mut service, request("acme")).await.unwrap();
    let mut waiting = tokio_test::task::spawn(service.ready().await.unwrap().call(request("acme")));
    tokio_test::assert_pending!(waiting.poll());

    let ready = tokio_test::task::spawn(other.ready()).poll();
    assert!(
        ready.is_ready(),
        "the call waiting for the next minute holds the only permit of the tool"
    );
    let globex = other.call(request("globex")).await;
    assert_eq!(globex.unwrap(), "sent for globex");

    tokio::time::advance(Duration::from_secs(16)).await;
    assert_eq!(waiting.await.unwrap(), "sent for acme");
    assert_eq!(tool.calls(), 3);
}
