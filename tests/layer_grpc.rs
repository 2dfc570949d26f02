//! The rate limit layer in front of a real tonic server on 127.0.0.1, called by a real tonic
//! client: `RESOURCE_EXHAUSTED` with `retry-after` metadata and a `google.rpc.RetryInfo` detail.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use highway_ratelimit::clock::TokioClock;
use highway_ratelimit::layer::{RateLimitError, RateLimitLayer, StaticPolicies, TenantId};
use highway_ratelimit::policy::Policy;
use highway_ratelimit::report::Capacity;
use highway_ratelimit::store::{
    ConsumeRequest, Decision, MemoryStore, StoreError, TokenStore, WindowUsage,
};
use highway_ratelimit::window::WindowKind;
use http::uri::PathAndQuery;
use tonic::service::LayerExt;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic::{Code, Status};
use tonic_types::StatusExt;
use tower::{ServiceBuilder, ServiceExt, service_fn};

const TOOL: &str = "tools.email.send";

#[path = "../examples/support/email_grpc.rs"]
mod email_grpc;
use email_grpc::{EmailServer, SEND, TextCodec, authenticate};

async fn start_server(limits: RateLimitLayer) -> SocketAddr {
    let incoming =
        TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).expect("binding a loopback port");
    let address = incoming.local_addr().unwrap();
    // On the one service, so that calls to other services are not charged to its tool.
    let stack = ServiceBuilder::new()
        .map_request(authenticate)
        .layer(limits.into_grpc());
    tokio::spawn(
        Server::builder()
            .add_service(stack.named_layer(EmailServer))
            .serve_with_incoming(incoming),
    );
    address
}

async fn send(address: SocketAddr, tenant: &str) -> Result<String, Status> {
    send_to(address, SEND, tenant).await
}

/// Calls the method at `path` as `tenant` with the message `hello`.
async fn send_to(address: SocketAddr, path: &'static str, tenant: &str) -> Result<String, Status> {
    let channel = Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.unwrap();
    let mut request = tonic::Request::new("hello".to_owned());
    request
        .metadata_mut()
        .insert("x-tenant", tenant.parse().unwrap());
    let response = client
        .unary(request, PathAndQuery::from_static(path), TextCodec)
        .await?;
    Ok(response.into_inner())
}

fn limits(store: Arc<dyn TokenStore>, limit: u64) -> RateLimitLayer {
    let policy = Policy::new(
        "default",
        TOOL,
        Capacity {
            per_day: Some(limit),
            ..Capacity::UNLIMITED
        },
    );
    // A fixed start keeps the day window from ending during the test.
    RateLimitLayer::builder(Arc::new(StaticPolicies::new().with(policy)), store)
        .tool(TOOL)
        .clock(TokioClock::starting_at(
            "2026-03-02T10:00:00Z".parse().unwrap(),
        ))
        .build()
}

#[tokio::test]
async fn exhausted_quota_is_resource_exhausted() {
    let address = start_server(limits(Arc::new(MemoryStore::new()), 2)).await;

    assert_eq!(send(address, "acme").await.unwrap(), "sent: hello");
    assert_eq!(send(address, "acme").await.unwrap(), "sent: hello");
    let status = send(address, "acme").await.unwrap_err();

    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("day quota of 2 is exhausted"),
        "{}",
        status.message()
    );
    let retry_after: u64 = status
        .metadata()
        .get("retry-after")
        .expect("the status carries retry-after metadata")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=86_400).contains(&retry_after),
        "retry-after {retry_after}"
    );
    let pushback: u64 = status
        .metadata()
        .get("grpc-retry-pushback-ms")
        .expect("the status carries grpc-retry-pushback-ms metadata")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        pushback.div_ceil(1000),
        retry_after,
        "the pushback and retry-after give the same delay"
    );
    let details = status.get_error_details();
    let retry_delay = details
        .retry_info()
        .and_then(|info| info.retry_delay)
        .expect("the status carries a RetryInfo with a delay");
    assert_eq!(
        retry_delay.as_secs() + u64::from(retry_delay.subsec_nanos() > 0),
        retry_after,
        "RetryInfo and retry-after give the same delay"
    );
    let info = details
        .error_info()
        .expect("the status carries an ErrorInfo");
    assert_eq!(info.reason, "QUOTA_EXHAUSTED");
    assert_eq!(info.domain, highway_ratelimit::grpc::ERROR_DOMAIN);
    assert_eq!(
        info.metadata.get("tenant").map(String::as_str),
        Some("acme")
    );
    assert_eq!(info.metadata.get("window").map(String::as_str), Some("day"));
    assert_eq!(info.metadata.get("limit").map(String::as_str), Some("2"));
    let violations = &details
        .quota_failure()
        .expect("the status carries a QuotaFailure")
        .violations;
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(
        violations[0].subject.contains("acme"),
        "{:?}",
        violations[0]
    );

    assert_eq!(
        send(address, "globex").await.unwrap(),
        "sent: hello",
        "another tenant has its own quota"
    );
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

#[tokio::test]
async fn store_down_is_unavailable() {
    let address = start_server(limits(Arc::new(DownStore), 2)).await;

    let status = send(address, "acme").await.unwrap_err();

    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().contains("the token store failed"),
        "{}",
        status.message()
    );
    assert!(
        !status.message().contains("connection refused"),
        "the store's error stays in the server's log: {}",
        status.message()
    );
    // No retry time is known, so the delay is the layer's default hint for an outage.
    assert_eq!(status.metadata().get("retry-after").unwrap(), "5");
    assert_eq!(
        status.metadata().get("grpc-retry-pushback-ms").unwrap(),
        "5000"
    );
    let details = status.get_error_details();
    let info = details
        .error_info()
        .expect("the status carries an ErrorInfo");
    assert_eq!(info.reason, "STORE_UNAVAILABLE");
    assert_eq!(info.metadata.get("tool").map(String::as_str), Some(TOOL));
    assert_eq!(
        details.retry_info().and_then(|info| info.retry_delay),
        Some(std::time::Duration::from_secs(5))
    );
    assert!(details.quota_failure().is_none(), "no quota was exhausted");
}

#[tokio::test]
async fn handler_level_limit_reads_tonic_request() {
    let handler = service_fn(|request: tonic::Request<String>| async move {
        Ok::<_, Status>(tonic::Response::new(request.into_inner()))
    });
    let service = tower::Layer::layer(&limits(Arc::new(MemoryStore::new()), 1), handler);
    let request = || {
        let mut request = tonic::Request::new("hello".to_owned());
        request.extensions_mut().insert(TenantId::new("acme"));
        request
    };

    let first = service
        .clone()
        .oneshot(request())
        .await
        .map_err(Status::from);
    let second: Result<_, RateLimitError<Status>> = service.oneshot(request()).await;

    assert_eq!(first.unwrap().into_inner(), "hello");
    assert_eq!(
        Status::from(second.unwrap_err()).code(),
        Code::ResourceExhausted
    );
}

/// A call to a service the server does not have never reaches the limited tool, so it must not
/// use the tool's quota, and the client gets `UNIMPLEMENTED`.
#[tokio::test]
async fn unknown_service_is_not_charged() {
    let address = start_server(limits(Arc::new(MemoryStore::new()), 1)).await;

    let unknown = send_to(address, "/highway.example.Other/Send", "acme").await;
    let sent = send(address, "acme").await;

    assert_eq!(unknown.unwrap_err().code(), Code::Unimplemented);
    assert_eq!(sent.unwrap(), "sent: hello");
}

/// A token store that rejects every call in `window`, with the reset that `reset_at` gives for
/// the call's instant.
struct RejectingStore {
    window: WindowKind,
    reset_at: fn(chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc>,
}

impl TokenStore for RejectingStore {
    fn consume<'a>(
        &'a self,
        request: ConsumeRequest<'a>,
    ) -> BoxFuture<'a, Result<Decision, StoreError>> {
        let reset_at = (self.reset_at)(request.at.expect("the test clock passes its instant"));
        let usage = WindowUsage {
            kind: self.window,
            limit: 1,
            remaining: 0,
            reset_at,
        };
        let window = self.window;
        Box::pin(async move {
            Ok(Decision::Rejected {
                window,
                retry_at: reset_at,
                windows: [usage].into_iter().collect(),
            })
        })
    }

    fn peek<'a>(
        &'a self,
        request: ConsumeRequest<'a>,
    ) -> BoxFuture<'a, Result<Decision, StoreError>> {
        self.consume(request)
    }
}

/// Sends a call that `store` rejects, and checks that the status gives a delay of one second in
/// every place it carries one.
async fn assert_waits_a_second(store: RejectingStore) {
    let address = start_server(limits(Arc::new(store), 1)).await;

    let status = send(address, "acme").await.unwrap_err();

    assert_eq!(status.code(), Code::ResourceExhausted);
    let metadata = |key| {
        status
            .metadata()
            .get(key)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(metadata("retry-after").as_deref(), Some("1"));
    assert_eq!(metadata("grpc-retry-pushback-ms").as_deref(), Some("1000"));
    let retry_delay = status
        .get_error_details()
        .retry_info()
        .and_then(|info| info.retry_delay);
    assert_eq!(retry_delay, Some(std::time::Duration::from_secs(1)));
}

/// A retry time that the layer's clock has already passed, because the store's clock lags, still
/// gets a delay of one second: a delay of 0 would send the client straight back into the same
/// rejection. The store's clock runs 2 s behind, as a PostgreSQL server's can, and it rejects
/// with the reset of the minute its own clock is in, which the layer's clock has passed.
#[tokio::test]
async fn lagging_store_clock_waits_a_second() {
    assert_waits_a_second(RejectingStore {
        window: WindowKind::Minute,
        reset_at: |at| {
            let store_now = at - chrono::TimeDelta::seconds(2);
            let minute_start = store_now.timestamp().div_euclid(60) * 60;
            chrono::DateTime::from_timestamp(minute_start + 60, 0).unwrap()
        },
    })
    .await;
}

/// A reset less than a second away (250 ms, as a store whose clock lags the layer's by a little
/// less than the time to its reset reports it) gets the same delay of one second as one already
/// passed, in every place the status carries it.
#[tokio::test]
async fn subsecond_reset_waits_a_second() {
    assert_waits_a_second(RejectingStore {
        window: WindowKind::Day,
        reset_at: |at| at + chrono::TimeDelta::milliseconds(250),
    })
    .await;
}

/// With its methods named, the layer charges only calls to them: a call to a method the service
/// lacks (`UNIMPLEMENTED`), or to one that is not a tool call, passes through uncharged.
#[tokio::test]
async fn only_named_methods_are_charged() {
    let incoming =
        TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).expect("binding a loopback port");
    let address = incoming.local_addr().unwrap();
    let limited = limits(Arc::new(MemoryStore::new()), 1)
        .into_grpc()
        .methods([SEND]);
    let stack = ServiceBuilder::new()
        .map_request(authenticate)
        .layer(limited);
    tokio::spawn(
        Server::builder()
            .add_service(stack.named_layer(EmailServer))
            .serve_with_incoming(incoming),
    );

    let unknown = send_to(address, "/highway.example.Email/Nope", "acme").await;
    let sent = send(address, "acme").await;
    let again = send(address, "acme").await;

    assert_eq!(unknown.unwrap_err().code(), Code::Unimplemented);
    assert_eq!(sent.unwrap(), "sent: hello");
    assert_eq!(again.unwrap_err().code(), Code::ResourceExhausted);
}

/// A method path that matches no request would leave every call uncharged, so `methods` rejects
/// one without its leading slash or its method name.
#[test]
fn malformed_method_path_panics() {
    for path in [
        "highway.example.Email/Send",
        "/highway.example.Email",
        "/Email/",
    ] {
        let layer = limits(Arc::new(MemoryStore::new()), 1).into_grpc();

        let built =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || layer.methods([path])));

        assert!(built.is_err(), "methods accepted {path:?}");
    }
}
