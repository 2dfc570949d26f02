//! A small tool registry: three tools of a workflow engine, each behind the rate limiter under its
//! own tool name, with default limits per tool held by the `default` tenant and one tenant that
//! overrides them.
//!
//! - `tools.email.send` costs one unit per recipient: 20 recipients a minute by default.
//! - `tools.http.request` costs one unit per call: 5 calls a minute per workflow run.
//! - `tools.llm.call` costs one unit per token: 2,000 tokens a minute by default, 10,000 for the
//!   tenant `bigco`, which pays for more.
//!
//! Run with `cargo run --example tool_registry`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use highway_ratelimit::clock::ManualClock;
use highway_ratelimit::layer::{
    Cost, RateLimitError, RateLimitLayer, StaticPolicies, TenantId, WorkflowRunId,
};
use highway_ratelimit::policy::{Policy, PolicySource, Scope};
use highway_ratelimit::report::Capacity;
use highway_ratelimit::store::{MemoryStore, TokenStore};
use http::Extensions;
use tower::util::BoxCloneSyncService;
use tower::{Layer, ServiceExt, service_fn};

/// A call of the engine to one of its tools.
#[derive(Debug)]
struct ToolCall {
    /// The tool's input, such as the email's body or the prompt.
    input: String,
    /// The caller's identity and the call's cost, read by the rate limiter.
    extensions: Extensions,
}

impl highway_ratelimit::layer::CallerIdentity for ToolCall {
    fn extensions(&self) -> &Extensions {
        &self.extensions
    }
}

type Tool = BoxCloneSyncService<ToolCall, String, RateLimitError<Infallible>>;

/// The engine's tools by name, each wrapped in a rate limiter that names it.
struct ToolRegistry {
    tools: BTreeMap<&'static str, Tool>,
}

impl ToolRegistry {
    fn new(
        policies: Arc<dyn PolicySource>,
        store: Arc<dyn TokenStore>,
        clock: ManualClock,
    ) -> Self {
        let mut tools = BTreeMap::new();
        let mut register = |name: &'static str, run: fn(&str) -> String| {
            let limits = RateLimitLayer::builder(policies.clone(), store.clone())
                .tool(name)
                .clock(clock.clone())
                .build();
            let tool =
                service_fn(
                    move |call: ToolCall| async move { Ok::<_, Infallible>(run(&call.input)) },
                );
            tools.insert(name, BoxCloneSyncService::new(limits.layer(tool)));
        };
        register("tools.email.send", |input| format!("email sent: {input}"));
        register("tools.http.request", |input| format!("200 OK from {input}"));
        register("tools.llm.call", |input| format!("completion of {input:?}"));
        ToolRegistry { tools }
    }

    async fn call(&self, tool: &str, call: ToolCall) -> Result<String, String> {
        let service = self
            .tools
            .get(tool)
            .ok_or(format!("unknown tool {tool:?}"))?;
        service
            .clone()
            .oneshot(call)
            .await
            .map_err(|error| error.to_string())
    }
}

fn call(tenant: &str, run: &str, input: &str, cost: u64) -> ToolCall {
    let mut extensions = Extensions::new();
    extensions.insert(TenantId::new(tenant));
    extensions.insert(WorkflowRunId::new(run));
    extensions.insert(Cost::new(cost).expect("the example's costs are at least 1"));
    ToolCall {
        input: input.to_owned(),
        extensions,
    }
}

fn per_minute(limit: u64) -> Capacity {
    Capacity {
        per_minute: Some(limit),
        ..Capacity::UNLIMITED
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut http_policy = Policy::new("default", "tools.http.request", per_minute(5));
    http_policy.scope = Scope::Workflow;
    let policies = StaticPolicies::new()
        .with(Policy::new("default", "tools.email.send", per_minute(20)))
        .with(http_policy)
        .with(Policy::new("default", "tools.llm.call", per_minute(2_000)))
        .with(Policy::new("bigco", "tools.llm.call", per_minute(10_000)));
    // A fixed instant, so that every call of the example falls into the same minute.
    let clock = ManualClock::starting_at("2026-12-07T15:00:10Z".parse().expect("a valid instant"));
    let registry = ToolRegistry::new(Arc::new(policies), Arc::new(MemoryStore::new()), clock);

    println!("Emails to 12 recipients each, for tenant acme (20 recipients a minute):");
    for number in 1..=2 {
        let outcome = registry
            .call("tools.email.send", call("acme", "run-1", "invoice", 12))
            .await;
        println!("  email {number}: {}", show(&outcome));
    }

    println!("\nHTTP requests, 5 a minute per workflow run:");
    for (run, count) in [("run-1", 6), ("run-2", 1)] {
        for number in 1..=count {
            let outcome = registry
                .call(
                    "tools.http.request",
                    call("acme", run, "https://example.com", 1),
                )
                .await;
            println!("  {run} request {number}: {}", show(&outcome));
        }
    }

    println!("\nLLM calls of 1,500 tokens each (acme: 2,000 a minute; bigco: 10,000):");
    for tenant in ["acme", "bigco"] {
        for number in 1..=2 {
            let outcome = registry
                .call("tools.llm.call", call(tenant, "run-1", "summarise", 1_500))
                .await;
            println!("  {tenant} call {number}: {}", show(&outcome));
        }
    }

    let unknown = registry
        .call("tools.sms.send", call("acme", "run-1", "hi", 1))
        .await;
    println!("\nAn unregistered tool: {}", show(&unknown));
}

fn show(outcome: &Result<String, String>) -> String {
    match outcome {
        Ok(output) => output.clone(),
        Err(error) => format!("rejected: {error}"),
    }
}
