use std::process::ExitCode;

use clap::Args;

use super::database::{DatabaseArgs, block_on, print_json};
use crate::admin::{Admin, PostgresPolicies};
use crate::error_chain::ErrorChain;
use crate::policy::{PolicySource, Scope};

#[derive(Debug, Args)]
pub(super) struct UsageArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    /// The calling tenant.
    #[arg(long)]
    tenant: String,
    /// The tool name, such as tools.email.send.
    #[arg(long)]
    tool: String,
    /// Only this workflow run's counters, for a limit that counts per workflow run.
    #[arg(long, value_name = "RUN")]
    workflow: Option<String>,
}

pub(super) fn run(args: UsageArgs) -> ExitCode {
    block_on(async move {
        let store = args.database.store()?;
        let admin = Admin::from_store(&store);
        let counts = admin
            .usage(&args.tenant, &args.tool, args.workflow.as_deref())
            .await
            .map_err(|error| args.database.describe_error(&error))?;
        print_json(&counts)?;
        if !counts.is_empty() && args.workflow.is_some() {
            note_shared_counters(&admin, &args).await?;
        }
        if counts.is_empty() {
            let policy = PostgresPolicies::from_admin(&admin)
                .resolve(&args.tenant, &args.tool)
                .await
                .map_err(|error| {
                    args.database
                        .with_hint(format!("cannot read the policy: {}", ErrorChain(&error)))
                })?;
            match policy {
                None => eprintln!(
                    "note: no limit for tenant {:?} and tool {:?}, nor for the default tenant, so nothing is counted; set one with `limits set`",
                    args.tenant, args.tool
                ),
                Some(policy) if !policy.enabled => eprintln!(
                    "note: the limit of tenant {:?} for tool {:?} is disabled, so calls are admitted without being counted; enable it with `limits set` without --disabled",
                    policy.tenant, args.tool
                ),
                Some(policy)
                    if policy.schedule.is_none() && policy.static_capacity.is_unlimited() =>
                {
                    eprintln!(
                        "note: the limit of tenant {:?} for tool {:?} has no per-minute, per-hour or per-day limit and no schedule, so calls are admitted without being counted",
                        policy.tenant, args.tool
                    );
                }
                Some(policy) if args.workflow.is_some() && policy.scope != Scope::Workflow => {
                    let counts = match policy.scope {
                        Scope::Global => "for every caller together",
                        _ => "per tenant",
                    };
                    eprintln!(
                        "note: the limit of tool {:?} counts {counts}, not per workflow run, so no run has a counter of its own; leave out --workflow",
                        args.tool
                    );
                }
                Some(_) => {}
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Notes on stderr that the counters printed for `--workflow` are shared by every run, when the
/// limit counts per tenant or for every caller.
async fn note_shared_counters(admin: &Admin, args: &UsageArgs) -> Result<(), String> {
    let policy = PostgresPolicies::from_admin(admin)
        .resolve(&args.tenant, &args.tool)
        .await
        .map_err(|error| {
            args.database
                .with_hint(format!("cannot read the policy: {}", ErrorChain(&error)))
        })?;
    let counts = match policy.map(|policy| policy.scope) {
        Some(Scope::Global) => "for every caller together",
        Some(Scope::Tenant) => "per tenant",
        _ => return Ok(()),
    };
    eprintln!(
        "note: the limit of tool {:?} counts {counts}, not per workflow run, so these counters are \
         shared by every run; leave out --workflow",
        args.tool
    );
    Ok(())
}
