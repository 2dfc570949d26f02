//! Tenant isolation and security through the real layer and PostgreSQL: ids chosen to collide,
//! SQL injection strings, identity from trusted extensions only, and no secret in the logs.

mod common;
mod reliability_support;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use common::TestDatabase;
use highway_ratelimit::admin::{Admin, LimitSpec, PostgresPolicies};
use highway_ratelimit::layer::{Caller, RateLimitError, RateLimitLayer, RejectionReason};
use highway_ratelimit::policy::{DEFAULT_TENANT, Scope};
use highway_ratelimit::store::postgres::{PostgresConfig, PostgresStore};
use reliability_support::{Call, CapturedLogs, call, outcome};
use tower::{Service, ServiceBuilder, ServiceExt};

/// Ids built to collide under a careless encoding: separators, escapes of separators, quotes,
/// SQL, Unicode and an id of the longest length allowed.
fn tricky_ids() -> Vec<String> {
    let mut ids: Vec<String> = [
        "a",
        "a:b",
        "a%3Ab",
        "a%b",
        "a:",
        ":a",
        "%",
        "%25",
        "global",
        "tenant:a",
        "\"a\"",
        "'a'",
        "a'); DELETE FROM highway.tool_rate_limit_usage; --",
        "a\nb",
        "a\tb",
        "日本",
        "日本:東京",
        "e\u{301}",
        "\u{e9}",
        " a",
    ]
    .iter()
    .map(|id| (*id).to_owned())
    .collect();
    ids.push("x".repeat(Caller::MAX_ID_BYTES));
    ids
}

async fn layer_with_defaults(database: &TestDatabase) -> RateLimitLayer {
    let store = database.store().await;
    let admin = Admin::from_store(&store);
    admin
        .upsert(&LimitSpec {
            per_day: Some(2),
            ..LimitSpec::new(DEFAULT_TENANT, "tools.tenant")
        })
        .await
        .unwrap();
    admin
        .upsert(&LimitSpec {
            per_day: Some(2),
            scope: Scope::Workflow,
            ..LimitSpec::new(DEFAULT_TENANT, "tools.workflow")
        })
        .await
        .unwrap();
    let policies = PostgresPolicies::from_admin(&admin);
    RateLimitLayer::builder(Arc::new(policies), Arc::new(store))
        .store_timeout(Duration::from_secs(5))
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tricky_tenants_never_share_tokens() {
    let database = TestDatabase::new().await;
    let layer = layer_with_defaults(&database).await;
    let ids = tricky_ids();

    // Each tenant in turn uses up its quota; every tenant after it still has all of its own.
    for (index, tenant) in ids.iter().enumerate() {
        let first = call(&layer, Call::new(tenant, "tools.tenant")).await;
        assert_eq!(outcome(&first), "admitted", "tenant {tenant:?}: first call");
        let second = call(&layer, Call::new(tenant, "tools.tenant")).await;
        assert_eq!(
            outcome(&second),
            "admitted",
            "tenant {tenant:?}: second call, after {index} other tenants used theirs"
        );
        let third = call(&layer, Call::new(tenant, "tools.tenant")).await;
        assert_eq!(
            outcome(&third),
            "quota_exhausted",
            "tenant {tenant:?}: third call"
        );
    }

    let client = database.client().await;
    let rows = client
        .query(
            "SELECT scope_key, request_count FROM highway.tool_rate_limit_usage \
             WHERE tool_name = 'tools.tenant' AND window_type = 'day'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), ids.len(), "one counter per tenant");
    for row in &rows {
        let count: i64 = row.get(1);
        assert_eq!(count, 2, "{}", row.get::<_, String>(0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tricky_workflow_runs_never_share_tokens() {
    let database = TestDatabase::new().await;
    let layer = layer_with_defaults(&database).await;
    let ids = tricky_ids();
    // Pairs whose naive concatenation with `:` is the same string.
    let mut pairs: Vec<(String, String)> = vec![
        ("a".into(), "b:c".into()),
        ("a:b".into(), "c".into()),
        ("a".into(), "b%3Ac".into()),
        ("a%3Ab".into(), "c".into()),
    ];
    for tenant in ["a", "a:b"] {
        for run in &ids {
            pairs.push((tenant.to_owned(), run.clone()));
        }
    }
    pairs.dedup();

    for (tenant, run) in &pairs {
        let identity = Call {
            run: Some(run),
            ..Call::new(tenant, "tools.workflow")
        };
        let results = [
            call(&layer, identity).await,
            call(&layer, identity).await,
            call(&layer, identity).await,
        ];
        let outcomes: Vec<_> = results.iter().map(outcome).collect();
        assert_eq!(
            outcomes,
            ["admitted", "admitted", "quota_exhausted"],
            "tenant {tenant:?}, run {run:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_in_ids_is_rejected_not_shared() {
    let database = TestDatabase::new().await;
    let layer = layer_with_defaults(&database).await;

    // PostgreSQL text cannot hold NUL, so no policy can name such a tenant: the call is rejected
    // as invalid, and no other tenant's counter moves.
    let nul_tenant = call(&layer, Call::new("a\0", "tools.tenant")).await;
    assert_eq!(outcome(&nul_tenant), "missing_identity");

    // A NUL in a workflow run id is encoded in the key, so it counts on its own.
    for _ in 0..2 {
        let result = call(
            &layer,
            Call {
                run: Some("r\0"),
                ..Call::new("a", "tools.workflow")
            },
        )
        .await;
        assert_eq!(outcome(&result), "admitted");
    }
    let plain = call(
        &layer,
        Call {
            run: Some("r"),
            ..Call::new("a", "tools.workflow")
        },
    )
    .await;
    assert_eq!(outcome(&plain), "admitted", "run r is not run r\\0");
}

/// Returns `length` characters that do not compress, so the database stores them as they are.
fn incompressible_id(length: usize) -> String {
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    (0..length)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b'a' + (state % 26) as u8)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlong_ids_rejected_uncounted() {
    let database = TestDatabase::new().await;
    let layer = layer_with_defaults(&database).await;

    // An id of the longest length allowed, which does not compress, counts as any other.
    let longest = incompressible_id(Caller::MAX_ID_BYTES);
    let outcomes: Vec<_> = [
        call(&layer, Call::new(&longest, "tools.tenant")).await,
        call(&layer, Call::new(&longest, "tools.tenant")).await,
        call(&layer, Call::new(&longest, "tools.tenant")).await,
    ]
    .iter()
    .map(outcome)
    .collect();
    assert_eq!(outcomes, ["admitted", "admitted", "quota_exhausted"]);

    // A B-tree index entry stores at most about 2,700 bytes after compression, so the store could
    // not count a much longer id, and a fail-open policy would then admit the call uncounted. The
    // layer rejects any id over the limit before it calls the store, whatever the policy.
    let repeated = "x".repeat(100_000);
    let incompressible = incompressible_id(10_000);
    for long in [&repeated, &incompressible] {
        for tool in ["tools.tenant", "tools.workflow"] {
            let tenant = call(&layer, Call::new(long, tool)).await;
            assert_eq!(outcome(&tenant), "missing_identity", "{tool}");
            let run = call(
                &layer,
                Call {
                    run: Some(long),
                    ..Call::new("acme", tool)
                },
            )
            .await;
            assert_eq!(outcome(&run), "missing_identity", "{tool}");
        }
    }
    let other = call(&layer, Call::new("x", "tools.tenant")).await;
    assert_eq!(outcome(&other), "admitted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_only_from_extensions() {
    let database = TestDatabase::new().await;
    let layer = layer_with_defaults(&database).await;
    let mut service = ServiceBuilder::new()
        .layer(layer.clone())
        .service_fn(|_request: http::Request<()>| async { Ok::<_, Infallible>(()) });

    // Headers a client controls name a tenant and a tool, but no trusted code inserted them.
    let request = http::Request::builder()
        .header("x-tenant-id", "victim")
        .header("x-highway-tenant", "victim")
        .header("x-tool-name", "tools.tenant")
        .body(())
        .unwrap();
    let result = service.ready().await.unwrap().call(request).await;
    let Err(RateLimitError::Rejected(rejection)) = result else {
        panic!("a request without trusted identity was admitted");
    };
    assert!(
        matches!(rejection.reason(), RejectionReason::MissingIdentity(_)),
        "{rejection}"
    );

    let victim = call(&layer, Call::new("victim", "tools.tenant")).await;
    assert_eq!(outcome(&victim), "admitted");
    let victim = call(&layer, Call::new("victim", "tools.tenant")).await;
    assert_eq!(
        outcome(&victim),
        "admitted",
        "the header request used none of victim's tokens"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_injection_stored_literally() {
    let database = TestDatabase::new().await;
    let store = database.store().await;
    let admin = Admin::from_store(&store);
    let tenant = "t'); DROP TABLE highway.tool_rate_limits; --";
    let tool = "tools.x' OR '1'='1";
    let run = "r\"; DELETE FROM highway.tool_rate_limit_usage; --";
    admin
        .upsert(&LimitSpec {
            per_day: Some(1),
            scope: Scope::Workflow,
            ..LimitSpec::new(tenant, tool)
        })
        .await
        .unwrap();
    admin
        .upsert(&LimitSpec {
            per_day: Some(5),
            ..LimitSpec::new("other", "tools.x")
        })
        .await
        .unwrap();

    let stored = admin.get(tenant, tool).await.unwrap();
    assert_eq!(stored.tenant, tenant);
    assert_eq!(stored.tool, tool);
    assert_eq!(admin.list(None).await.unwrap().len(), 2, "both rows exist");
    assert_eq!(admin.list(Some(tenant)).await.unwrap().len(), 1);

    let policies = PostgresPolicies::from_admin(&admin);
    let layer = RateLimitLayer::builder(Arc::new(policies), Arc::new(store)).build();
    let identity = Call {
        run: Some(run),
        ..Call::new(tenant, tool)
    };
    assert_eq!(outcome(&call(&layer, identity).await), "admitted");
    assert_eq!(outcome(&call(&layer, identity).await), "quota_exhausted");
    assert_eq!(
        outcome(&call(&layer, Call::new("other", "tools.x")).await),
        "admitted",
        "the other tenant's limit is untouched"
    );

    let client = database.client().await;
    let row = client
        .query_one(
            "SELECT tenant_id, tool_name, scope_key, request_count \
             FROM highway.tool_rate_limit_usage WHERE tool_name = $1 AND window_type = 'day'",
            &[&tool],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), tenant);
    assert_eq!(row.get::<_, String>(1), tool);
    assert_eq!(
        row.get::<_, String>(2),
        format!("workflow:t'); DROP TABLE highway.tool_rate_limits; --:{run}")
    );
    assert_eq!(row.get::<_, i64>(3), 1);

    admin.delete(tenant, tool).await.unwrap();
    assert_eq!(
        admin.list(None).await.unwrap().len(),
        1,
        "the delete removed that row only"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_logs() {
    const PASSWORD: &str = "pg-Secret-7fd1c2";
    let logs = CapturedLogs::global();
    let database = TestDatabase::new().await;
    // The throwaway server trusts every local connection, so any password is accepted.
    let with_password = database
        .url()
        .replacen("postgres@", &format!("postgres:{PASSWORD}@"), 1);
    assert!(with_password.contains(PASSWORD), "the URL has a user part");
    let store = PostgresStore::new(PostgresConfig::new(with_password.clone())).unwrap();
    store.migrate().await.unwrap();
    let admin = Admin::from_store(&store);
    admin
        .upsert(&LimitSpec {
            per_day: Some(1),
            ..LimitSpec::new("acme", "tools.http")
        })
        .await
        .unwrap();
    let layer = RateLimitLayer::builder(
        Arc::new(PostgresPolicies::from_admin(&admin)),
        Arc::new(store.clone()),
    )
    .build();
    let mut listener =
        highway_ratelimit::admin::ChangeListener::new(with_password.parse().unwrap())
            .spawn_invalidating(layer.clone());
    tokio::time::timeout(Duration::from_secs(5), listener.wait_connected(1))
        .await
        .unwrap();
    call(&layer, Call::new("acme", "tools.http")).await.unwrap();
    call(&layer, Call::new("acme", "tools.http"))
        .await
        .unwrap_err();

    // A server that refuses connections: errors are logged with the failing URL's host only.
    let refused = "postgres://postgres:pg-Secret-7fd1c2@127.0.0.1:1/nowhere";
    let dead = PostgresStore::new(
        PostgresConfig::new(refused).connect_timeout(Duration::from_millis(200)),
    )
    .unwrap();
    let dead_layer = RateLimitLayer::builder(
        Arc::new(PostgresPolicies::new(dead.pool().clone())),
        Arc::new(dead),
    )
    .build();
    let result = call(&dead_layer, Call::new("acme", "tools.http")).await;
    assert_eq!(outcome(&result), "policy_unavailable");
    let mut dead_listener = highway_ratelimit::admin::ChangeListener::new(refused.parse().unwrap())
        .with_backoff(Duration::from_millis(20), Duration::from_millis(50))
        .spawn(|_| async {});
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = tokio::time::timeout(Duration::from_millis(1), dead_listener.wait_connected(1)).await;
    dead_listener.shutdown().await;

    #[cfg(feature = "admin-router")]
    admin_requests(&admin).await;
    listener.shutdown().await;

    let text = logs.text();
    assert!(!text.is_empty(), "the test captured the logs");
    assert!(
        !text.contains(PASSWORD),
        "the database password was logged:\n{text}"
    );
    assert!(
        !text.contains(ADMIN_TOKEN),
        "the admin token was logged:\n{text}"
    );
    assert!(
        !format!("{store:?}").contains(PASSWORD),
        "the store's Debug output shows the password"
    );
    assert!(
        !format!("{:?}", PostgresConfig::new(with_password.clone())).contains(PASSWORD),
        "the config's Debug output shows the password"
    );
}

const ADMIN_TOKEN: &str = "admin-Token-93be0a";

#[cfg(feature = "admin-router")]
async fn admin_requests(admin: &Admin) {
    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use highway_ratelimit::admin::router::admin_router;

    let router = admin_router(admin.clone(), ADMIN_TOKEN);
    let cases = [
        (Some(format!("Bearer {ADMIN_TOKEN}")), StatusCode::OK),
        (
            Some(format!("Bearer {ADMIN_TOKEN}x")),
            StatusCode::UNAUTHORIZED,
        ),
        (Some(format!("bearer {ADMIN_TOKEN}")), StatusCode::OK),
        (
            Some(format!("Basic {ADMIN_TOKEN}")),
            StatusCode::UNAUTHORIZED,
        ),
        (Some(ADMIN_TOKEN.to_owned()), StatusCode::UNAUTHORIZED),
        (None, StatusCode::UNAUTHORIZED),
    ];
    for (authorization, expected) in cases {
        let mut request = Request::builder().uri("/limits/acme/tools.http");
        if let Some(authorization) = &authorization {
            request = request.header(header::AUTHORIZATION, authorization);
        }
        let response = router
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), expected, "{authorization:?}");
    }

    // A tenant with SQL in it, through the router's path, is looked up literally.
    let response = router
        .clone()
        .oneshot(
            Request::builder()
                .uri("/limits/acme'%20OR%20'1'='1/tools.http")
                .header(header::AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

/// Ids drawn from the characters an encoding of keys could confuse. None is empty, since the layer
/// rejects an empty id.
fn id_strategy() -> impl proptest::strategy::Strategy<Value = String> {
    proptest::string::string_regex("[a:%0-9A-F\\x00'\"\\\\ é日]{1,12}").unwrap()
}

/// Tenant ids drawn like [`id_strategy`], without NUL, which the layer rejects in a tenant id.
fn tenant_strategy() -> impl proptest::strategy::Strategy<Value = String> {
    proptest::string::string_regex("[a:%0-9A-F'\"\\\\ é日]{1,12}").unwrap()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

    /// For any two distinct callers, exhausting one's quota leaves the other's untouched, through
    /// the real layer on the in-process store.
    #[test]
    fn distinct_callers_never_share_tokens(
        first in (tenant_strategy(), id_strategy()),
        second in (tenant_strategy(), id_strategy()),
    ) {
        use highway_ratelimit::layer::StaticPolicies;
        use highway_ratelimit::policy::Policy;
        use highway_ratelimit::report::Capacity;
        use highway_ratelimit::store::MemoryStore;

        proptest::prop_assume!(first != second);
        let mut tenant_policy =
            Policy::new(DEFAULT_TENANT, "tools.tenant", Capacity { per_day: Some(1), ..Capacity::UNLIMITED });
        tenant_policy.scope = Scope::Tenant;
        let mut workflow_policy =
            Policy::new(DEFAULT_TENANT, "tools.workflow", Capacity { per_day: Some(1), ..Capacity::UNLIMITED });
        workflow_policy.scope = Scope::Workflow;
        let policies = StaticPolicies::new().with(tenant_policy).with(workflow_policy);
        let layer = RateLimitLayer::builder(Arc::new(policies), Arc::new(MemoryStore::new())).build();

        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let calls = |(tenant, run): &(String, String)| {
                let (tenant, run) = (tenant.clone(), run.clone());
                let layer = layer.clone();
                async move {
                    let workflow = Call { run: Some(&run), ..Call::new(&tenant, "tools.workflow") };
                    [
                        outcome(&call(&layer, workflow).await),
                        outcome(&call(&layer, workflow).await),
                    ]
                }
            };
            assert_eq!(calls(&first).await, ["admitted", "quota_exhausted"], "{first:?}");
            assert_eq!(calls(&second).await, ["admitted", "quota_exhausted"], "{second:?} after {first:?}");

            if first.0 != second.0 {
                for tenant in [&first.0, &second.0] {
                    let tenant_call = Call::new(tenant, "tools.tenant");
                    assert_eq!(outcome(&call(&layer, tenant_call).await), "admitted", "{tenant:?}");
                }
            }
        });
    }
}

/// A failed policy read is shown to the caller as the server's severity, message and SQLSTATE,
/// as a failed store call is, and never with the DETAIL or HINT of the server's error, which can
/// carry row values. The HTTP body and the gRPC message print that text once, on one line.
#[cfg(all(feature = "axum", feature = "tonic"))]
#[tokio::test]
async fn policy_error_hides_server_detail() {
    use axum::response::IntoResponse;
    use http_body_util::BodyExt;

    let database = TestDatabase::new().await;
    let store = database.store().await;
    let client = database.client().await;
    client
        .batch_execute(
            "ALTER TABLE highway.tool_rate_limits RENAME TO tool_rate_limits_stored;
             CREATE FUNCTION highway.failing_limits() RETURNS SETOF highway.tool_rate_limits_stored
             LANGUAGE plpgsql AS $$
             BEGIN
                 RAISE EXCEPTION 'limits cannot be read'
                     USING DETAIL = 'secret-detail', HINT = 'secret-hint';
             END $$;
             CREATE VIEW highway.tool_rate_limits AS SELECT * FROM highway.failing_limits();",
        )
        .await
        .unwrap();
    let policies = PostgresPolicies::from_admin(&Admin::from_store(&store));
    let layer = RateLimitLayer::builder(Arc::new(policies), Arc::new(store)).build();

    let Err(RateLimitError::Rejected(rejection)) =
        call(&layer, Call::new("acme", "tools.http")).await
    else {
        panic!("a failed policy read rejects the call");
    };
    assert!(
        matches!(rejection.reason(), RejectionReason::PolicyUnavailable(_)),
        "{rejection:?}"
    );

    let status = tonic::Status::from(rejection.clone());
    let response = rejection.into_response();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8(body.to_vec()).unwrap();
    for (place, text) in [
        ("HTTP body", body.as_str()),
        ("gRPC message", status.message()),
    ] {
        // The server's error describes the database, so it goes to the log, not the client.
        assert!(text.contains("cannot read the policy"), "{place}: {text}");
        assert!(!text.contains("limits cannot be read"), "{place}: {text}");
        assert!(!text.contains("secret-detail"), "{place}: {text}");
        assert!(!text.contains("secret-hint"), "{place}: {text}");
        assert!(!text.contains('\n'), "{place}: {text}");
    }
}
