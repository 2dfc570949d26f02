use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::Args;

use super::database::{DatabaseArgs, block_on, describe_database_error, print_json};
use crate::admin::{Admin, CallIdentity, DecideOptions, PostgresPolicies, decide};

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
    #[arg(long, default_value_t = 1, value_name = "N")]
    cost: u64,
    /// Print the decision without charging anything.
    #[arg(long)]
    dry_run: bool,
    /// The instant of the call, RFC 3339 (2026-03-02T10:00:00Z); defaults to now, with the
    /// database clock deciding the counters' windows.
    #[arg(long, value_name = "INSTANT")]
    at: Option<DateTime<Utc>>,
}

/// Makes one decision as the layer would, prints it as JSON, and exits 0 when the call is
/// admitted, 2 when it is rejected.
pub(super) fn run(args: AcquireArgs) -> ExitCode {
    block_on(async move {
        if args.cost == 0 {
            return Err(
                "invalid cost 0: a call costs at least 1 unit; pass --cost 1 or more".into(),
            );
        }
        let store = args.database.store()?;
        let policies = PostgresPolicies::from_admin(&Admin::from_store(&store));
        let call = CallIdentity {
            tenant: args.tenant,
            tool: args.tool,
            workflow: args.workflow,
            cost: args.cost,
        };
        let options = DecideOptions {
            at: args.at,
            dry_run: args.dry_run,
            store_timeout: None,
        };

        let outcome = decide(&policies, &store, &call, options)
            .await
            .map_err(|error| describe_database_error(&error))?;
        print_json(&outcome)?;
        Ok(if outcome.admitted {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        })
    })
}
