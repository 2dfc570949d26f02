use std::convert::Infallible;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use clap::Args;
use futures_util::future::BoxFuture;
use serde::Serialize;
use tower::{Service, ServiceBuilder, ServiceExt};

use super::database::{DatabaseArgs, block_on, parse_cost, parse_instant, print_json};
use crate::admin::{Admin, PostgresPolicies};
use crate::clock::TokioClock;
use crate::error_chain::with_causes;
use crate::layer::{
    Admission, Cost, IdentityError, MissingPolicy, RateLimitError, RateLimitLayer, Rejection,
    RejectionReason, TenantId, ToolName, WorkflowRunId,
};
use crate::store::{ConsumeRequest, Decision, StoreError, TokenStore, WindowUsage};
use crate::window::WindowKind;

#[derive(Debug, Args)]
pub(super) struct AcquireArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    /// The calling tenant.
    #[arg(long)]
    tenant: String,
    /// The tool name, such as tools.email.send.
    #[arg(long)]
    tool: String,
    /// The workflow run id; required when the limit counts per workflow run.
    #[arg(long, value_name = "RUN")]
    workflow: Option<String>,
    /// The call's cost in units (calls, recipients, tokens: whatever the limit counts).
    #[arg(
        long,
        default_value_t = 1,
        value_name = "N",
        value_parser = parse_cost,
        allow_negative_numbers = true
    )]
    cost: u64,
    /// Print the decision without charging anything.
    #[arg(long)]
    dry_run: bool,
    /// The instant of the call, RFC 3339 (2026-03-02T10:00:00Z), from 0001-01-01T00:00:00Z to
    /// 9998-12-31T23:59:59Z in UTC; defaults to now, with the database clock deciding the
    /// counters' windows. Without --dry-run the call is charged to
    /// the windows of this instant.
    #[arg(long, value_name = "INSTANT", value_parser = parse_instant)]
    at: Option<DateTime<Utc>>,
    /// The decision for a tool that has no policy, for the tenant or the `default` tenant:
    /// `reject` (the layer's default) or `admit`.
    #[arg(long, value_enum, default_value_t = WithoutPolicy::Reject, value_name = "DECISION")]
    without_policy: WithoutPolicy,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum WithoutPolicy {
    Reject,
    Admit,
}

/// The decision printed on stdout.
#[derive(Debug, Serialize)]
struct Printed {
    admitted: bool,
    tenant: String,
    tool: String,
    dry_run: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<PrintedReason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    windows: Vec<PrintedWindow>,
}

#[derive(Debug, Serialize)]
struct PrintedReason {
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    window: Option<WindowKind>,
    message: String,
}

#[derive(Debug, Serialize)]
struct PrintedWindow {
    window: WindowKind,
    limit: u64,
    remaining: u64,
    reset_at: DateTime<Utc>,
}

impl From<&WindowUsage> for PrintedWindow {
    fn from(usage: &WindowUsage) -> Self {
        PrintedWindow {
            window: usage.kind,
            limit: usage.limit,
            remaining: usage.remaining,
            reset_at: usage.reset_at,
        }
    }
}

/// Makes one decision through the rate-limit layer, as a worker would, prints it as JSON, and
/// exits 0 when the call is admitted, 2 when it is rejected.
///
/// A call without any policy is rejected, as by a layer with the default
/// [`MissingPolicy::Reject`], unless `--without-policy admit` is given.
pub(super) fn run(args: AcquireArgs) -> ExitCode {
    block_on(async move {
        let Some(cost) = Cost::new(args.cost) else {
            return Err(
                "invalid cost 0: a call costs at least 1 unit; pass --cost 1 or more".into(),
            );
        };
        let store = args.database.store()?;
        let policies = PostgresPolicies::from_admin(&Admin::from_store(&store));
        let counters: Arc<dyn TokenStore> = if args.dry_run {
            Arc::new(Peek(store))
        } else {
            Arc::new(store)
        };

        let missing_policy = match args.without_policy {
            WithoutPolicy::Reject => MissingPolicy::Reject,
            WithoutPolicy::Admit => MissingPolicy::Admit,
        };
        let mut builder =
            RateLimitLayer::builder(Arc::new(policies), counters).missing_policy(missing_policy);
        if let Some(at) = args.at {
            builder = builder.clock(TokioClock::starting_at(at));
        }
        let mut tool_call = ServiceBuilder::new()
            .layer(builder.build())
            .service_fn(|_request: http::Request<()>| async { Ok::<_, Infallible>(()) });

        let mut request = http::Request::new(());
        request
            .extensions_mut()
            .insert(TenantId::new(args.tenant.as_str()));
        request
            .extensions_mut()
            .insert(ToolName::new(args.tool.as_str()));
        request.extensions_mut().insert(cost);
        if let Some(run) = &args.workflow {
            request
                .extensions_mut()
                .insert(WorkflowRunId::new(run.as_str()));
        }

        let mut printed = Printed {
            admitted: true,
            tenant: args.tenant,
            tool: args.tool,
            dry_run: args.dry_run,
            reason: None,
            retry_at: None,
            windows: Vec::new(),
        };
        let mut failed = false;
        // Only the tool's readiness can fail here, and the tool here is always ready.
        let tool_call = tool_call
            .ready()
            .await
            .map_err(|error| format!("the rate limit layer is not ready: {error}"))?;
        let mut call = std::pin::pin!(tool_call.call(request));
        let outcome = (&mut call).await;
        match outcome {
            Ok(()) => {
                // The windows after the charge, as a rejection lists them. A dry run charges
                // nothing, so its windows show the units left before this call.
                if let Some(Admission::Counted(windows)) = call.as_mut().take_admission() {
                    printed.windows = windows.iter().map(PrintedWindow::from).collect();
                }
            }
            Err(RateLimitError::Rejected(rejection)) => {
                describe_rejection(&mut printed, &rejection);
                failed = unavailable(rejection.reason());
            }
            Err(RateLimitError::Service(never)) => match never {},
        }
        print_json(&printed)?;
        if failed && let Some(reason) = &printed.reason {
            // The layer would reject the call, but no limit decided it: a script must tell this
            // from a rejection.
            return Err(args.database.with_hint(reason.message.clone()));
        }
        Ok(if printed.admitted {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        })
    })
}

fn describe_rejection(printed: &mut Printed, rejection: &Rejection) {
    let reason = rejection.reason();
    let mut window = None;
    if let RejectionReason::QuotaExhausted {
        window: refused,
        windows,
        ..
    } = reason
    {
        window = Some(*refused);
        printed.windows = windows.iter().map(PrintedWindow::from).collect();
    }
    if let RejectionReason::Disabled {
        window: switched_off,
    } = reason
    {
        window = Some(*switched_off);
    }
    let message = match reason {
        RejectionReason::MissingIdentity(IdentityError::MissingWorkflowRun { tool }) => {
            format!("the policy of tool {tool:?} counts per workflow run: pass --workflow RUN")
        }
        RejectionReason::NoPolicy => format!(
            "no limit for tenant {:?} and tool {:?}, nor for the default tenant: create one with \
             `limits set`, or pass --without-policy admit",
            printed.tenant, printed.tool
        ),
        other => with_causes(other.to_string(), std::error::Error::source(rejection)),
    };
    printed.admitted = false;
    printed.retry_at = rejection.retry_at();
    printed.reason = Some(PrintedReason {
        kind: reason.as_str(),
        window,
        message,
    });
}

/// Returns whether a rejection comes from a policy, counter or report that could not be read,
/// rather than from a limit or schedule.
fn unavailable(reason: &RejectionReason) -> bool {
    matches!(
        reason,
        RejectionReason::StoreUnavailable(_)
            | RejectionReason::PolicyUnavailable(_)
            | RejectionReason::ScheduleUnavailable { .. }
    )
}

/// A token store that turns every consume into a peek, so that a dry run takes the layer's
/// decision without charging anything.
struct Peek<S>(S);

impl<S: TokenStore> TokenStore for Peek<S> {
    fn consume<'a>(
        &'a self,
        request: ConsumeRequest<'a>,
    ) -> BoxFuture<'a, Result<Decision, StoreError>> {
        self.0.peek(request)
    }

    fn peek<'a>(
        &'a self,
        request: ConsumeRequest<'a>,
    ) -> BoxFuture<'a, Result<Decision, StoreError>> {
        self.0.peek(request)
    }
}
