//! Change propagation between workers through PostgreSQL `NOTIFY`: a limit changed by one worker
//! is enforced by another worker's rate-limit layer, and the listener survives a lost connection.

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use common::TestDatabase;
use highway_ratelimit::admin::{Admin, Change, ChangeListener, LimitSpec, PostgresPolicies};
use highway_ratelimit::clock::TokioClock;
use highway_ratelimit::layer::{
    RateLimitError, RateLimitLayer, RejectionReason, TenantId, ToolName,
};
use highway_ratelimit::policy::DEFAULT_TENANT;
use tokio::sync::mpsc;
use tower::{Service, ServiceBuilder, ServiceExt};

/// A worker: a rate-limit layer that caches policies for an hour, on its own pool, with a
/// listener that drops cache entries on change.
struct Worker {
    layer: RateLimitLayer,
    listener: highway_ratelimit::admin::ListenerHandle,
}

impl Worker {
    async fn start(database: &TestDatabase) -> Worker {
        let store = database.store().await;
        let policies = PostgresPolicies::from_admin(&Admin::from_store(&store));
        // A fixed start keeps every call of the test in one day window.
        let layer = RateLimitLayer::builder(Arc::new(policies), Arc::new(store))
            .clock(TokioClock::starting_at(Utc::now()))
            .cache_ttl(Duration::from_secs(3600))
            .build();
        let mut listener =
            ChangeListener::new(database.url().parse().unwrap()).spawn_invalidating(layer.clone());
        tokio::time::timeout(Duration::from_secs(5), listener.wait_connected(1))
            .await
            .expect("the listener connects within 5 s");
        Worker { layer, listener }
    }

    async fn call(&self, tenant: &str, tool: &str) -> Result<(), RateLimitError<Infallible>> {
        let mut service = ServiceBuilder::new()
            .layer(self.layer.clone())
            .service_fn(|_request: http::Request<()>| async { Ok::<_, Infallible>(()) });
        let mut request = http::Request::new(());
        request.extensions_mut().insert(TenantId::new(tenant));
        request.extensions_mut().insert(ToolName::new(tool));
        service.ready().await?.call(request).await
    }
}

async fn next(changes: &mut mpsc::UnboundedReceiver<Change>) -> Change {
    tokio::time::timeout(Duration::from_secs(10), changes.recv())
        .await
        .expect("a change within 10 s")
        .expect("the listener is running")
}

#[tokio::test]
async fn change_enforced_by_other_worker() {
    let database = TestDatabase::new().await;
    let writer = Admin::from_store(&database.store().await);
    writer
        .upsert(&LimitSpec {
            per_day: Some(100),
            ..LimitSpec::new("acme", "tools.http")
        })
        .await
        .unwrap();

    let worker = Worker::start(&database).await;
    for _ in 0..2 {
        worker
            .call("acme", "tools.http")
            .await
            .expect("2 calls fit 100 a day");
    }

    writer
        .upsert(&LimitSpec {
            per_day: Some(2),
            ..LimitSpec::new("acme", "tools.http")
        })
        .await
        .unwrap();
    let changed = Instant::now();
    loop {
        match worker.call("acme", "tools.http").await {
            Err(RateLimitError::Rejected(rejection)) => {
                match rejection.reason() {
                    RejectionReason::QuotaExhausted { limit, .. } => assert_eq!(*limit, 2),
                    other => panic!("expected the new quota to reject, got {other}"),
                }
                break;
            }
            Ok(()) => assert!(
                changed.elapsed() < Duration::from_secs(1),
                "the new limit was not enforced within 1 s"
            ),
            Err(other) => panic!("{other}"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    worker.listener.shutdown().await;
}

#[tokio::test]
async fn default_change_reaches_other_tenants() {
    let database = TestDatabase::new().await;
    let writer = Admin::from_store(&database.store().await);
    writer
        .upsert(&LimitSpec {
            per_day: Some(1),
            ..LimitSpec::new(DEFAULT_TENANT, "tools.mail")
        })
        .await
        .unwrap();

    let worker = Worker::start(&database).await;
    worker
        .call("globex", "tools.mail")
        .await
        .expect("the first call fits");
    assert!(
        worker.call("globex", "tools.mail").await.is_err(),
        "the second call exceeds 1 a day"
    );

    // Switching the default off admits every call of tenants without their own row.
    writer
        .upsert(&LimitSpec {
            enabled: false,
            ..LimitSpec::new(DEFAULT_TENANT, "tools.mail")
        })
        .await
        .unwrap();
    let changed = Instant::now();
    while worker.call("globex", "tools.mail").await.is_err() {
        assert!(
            changed.elapsed() < Duration::from_secs(1),
            "the default change was not seen within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    worker.listener.shutdown().await;
}

#[tokio::test]
async fn listener_reconnects_after_lost_connection() {
    let database = TestDatabase::new().await;
    let admin = Admin::from_store(&database.store().await);

    let (sender, mut changes) = mpsc::unbounded_channel();
    let sender = Arc::new(sender);
    let mut listener = ChangeListener::new(database.url().parse().unwrap())
        .with_backoff(Duration::from_millis(50), Duration::from_secs(1))
        .spawn(move |change| {
            let sender = sender.clone();
            async move {
                let _ = sender.send(change);
            }
        });
    assert_eq!(
        next(&mut changes).await,
        Change::All,
        "connecting drops every cached entry"
    );

    let client = database.client().await;
    let terminated = client
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = 'highway-ratelimit listener' AND datname = current_database()",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(terminated.len(), 1, "one listener connection to terminate");

    assert_eq!(
        next(&mut changes).await,
        Change::All,
        "reconnecting drops every cached entry"
    );
    tokio::time::timeout(Duration::from_secs(10), listener.wait_connected(2))
        .await
        .unwrap();

    admin
        .upsert(&LimitSpec {
            per_minute: Some(3),
            ..LimitSpec::new("acme", "tools.http")
        })
        .await
        .unwrap();
    assert_eq!(
        next(&mut changes).await,
        Change::Limit {
            tenant: "acme".into(),
            tool: "tools.http".into()
        }
    );

    listener.shutdown().await;
}
