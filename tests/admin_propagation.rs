//! Change propagation between workers through PostgreSQL `NOTIFY`: a limit changed by one worker
//! is enforced by another that caches policies, and the listener survives a lost connection.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use common::TestDatabase;
use futures_util::future::BoxFuture;
use highway_ratelimit::admin::{
    Admin, CallIdentity, Change, ChangeListener, DecideOptions, LimitSpec, PostgresPolicies, decide,
};
use highway_ratelimit::policy::{DEFAULT_TENANT, Policy, PolicySource};
use highway_ratelimit::store::StoreError;
use moka::future::Cache;
use tokio::sync::mpsc;

/// A worker's policy cache: entries live an hour unless the listener drops them.
#[derive(Clone)]
struct CachedPolicies {
    source: PostgresPolicies,
    cache: Cache<(String, String), Option<Policy>>,
}

impl CachedPolicies {
    fn new(source: PostgresPolicies) -> Self {
        let cache = Cache::builder()
            .time_to_live(Duration::from_secs(3600))
            .build();
        CachedPolicies { source, cache }
    }

    async fn apply(&self, change: Change) {
        match change {
            Change::Limit { tenant, tool } if tenant != DEFAULT_TENANT => {
                self.cache.invalidate(&(tenant, tool)).await
            }
            // A default row applies to every tenant without its own row.
            Change::Limit { .. } | Change::All => self.cache.invalidate_all(),
        }
    }
}

impl PolicySource for CachedPolicies {
    fn lookup<'a>(
        &'a self,
        tenant: &'a str,
        tool: &'a str,
    ) -> BoxFuture<'a, Result<Option<Policy>, StoreError>> {
        self.source.lookup(tenant, tool)
    }

    fn resolve<'a>(
        &'a self,
        tenant: &'a str,
        tool: &'a str,
    ) -> BoxFuture<'a, Result<Option<Policy>, StoreError>> {
        Box::pin(async move {
            let key = (tenant.to_owned(), tool.to_owned());
            self.cache
                .try_get_with(key, self.source.resolve(tenant, tool))
                .await
                .map_err(|error| StoreError::Unavailable(error.to_string().into()))
        })
    }
}

async fn next(changes: &mut mpsc::UnboundedReceiver<Change>) -> Change {
    tokio::time::timeout(Duration::from_secs(10), changes.recv())
        .await
        .expect("a change within 10 s")
        .expect("the listener is running")
}

fn call(tenant: &str, tool: &str) -> CallIdentity {
    CallIdentity {
        tenant: tenant.into(),
        tool: tool.into(),
        workflow: None,
        cost: 1,
    }
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

    // The other worker: its own pool, policy cache and listener.
    let store = database.store().await;
    let policies = CachedPolicies::new(PostgresPolicies::from_admin(&Admin::from_store(&store)));
    let cache = policies.clone();
    let config = database.url().parse().unwrap();
    let mut listener = ChangeListener::new(config).spawn(move |change| {
        let cache = cache.clone();
        async move { cache.apply(change).await }
    });
    tokio::time::timeout(Duration::from_secs(5), listener.wait_connected(1))
        .await
        .expect("the listener connects");

    // A fixed instant keeps every call in one day window.
    let at = Some(Utc::now());
    let charge = DecideOptions {
        at,
        ..DecideOptions::default()
    };
    let peek = DecideOptions {
        at,
        dry_run: true,
        ..DecideOptions::default()
    };
    for _ in 0..2 {
        let outcome = decide(&policies, &store, &call("acme", "tools.http"), charge)
            .await
            .unwrap();
        assert!(outcome.admitted, "{outcome:?}");
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
        let outcome = decide(&policies, &store, &call("acme", "tools.http"), peek)
            .await
            .unwrap();
        if !outcome.admitted {
            assert_eq!(outcome.windows[0].limit, 2);
            break;
        }
        assert!(
            changed.elapsed() < Duration::from_secs(1),
            "the new limit was not enforced within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    listener.shutdown().await;
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

    let store = database.store().await;
    let policies = CachedPolicies::new(PostgresPolicies::from_admin(&Admin::from_store(&store)));
    let cache = policies.clone();
    let mut listener = ChangeListener::new(database.url().parse().unwrap()).spawn(move |change| {
        let cache = cache.clone();
        async move { cache.apply(change).await }
    });
    tokio::time::timeout(Duration::from_secs(5), listener.wait_connected(1))
        .await
        .unwrap();

    let at = Some(Utc::now());
    let charge = DecideOptions {
        at,
        ..DecideOptions::default()
    };
    assert!(
        decide(&policies, &store, &call("globex", "tools.mail"), charge)
            .await
            .unwrap()
            .admitted
    );
    assert!(
        !decide(&policies, &store, &call("globex", "tools.mail"), charge)
            .await
            .unwrap()
            .admitted
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
    loop {
        let outcome = decide(&policies, &store, &call("globex", "tools.mail"), charge)
            .await
            .unwrap();
        if outcome.admitted {
            assert_eq!(outcome.basis, "disabled");
            break;
        }
        assert!(
            changed.elapsed() < Duration::from_secs(1),
            "the default change was not seen within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    listener.shutdown().await;
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
