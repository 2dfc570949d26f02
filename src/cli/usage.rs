use std::process::ExitCode;

use clap::Args;

use super::database::{DatabaseArgs, block_on, print_json};
use crate::admin::{
    Admin, DEFAULT_USAGE_PAGE_SIZE, MAX_USAGE_PAGE_SIZE, PostgresPolicies, UsageCursor, UsagePage,
    UsageQuery,
};
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
    /// The maximum number of counters to print, 1 to 1000 (default 100, or 1000 per query with
    /// --all).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_USAGE_PAGE_SIZE)))]
    page_size: Option<u32>,
    /// Start after this cursor: the "next" value that the previous page printed.
    #[arg(long, value_name = "CURSOR", value_parser = parse_cursor)]
    after: Option<UsageCursor>,
    /// Read page after page and print every counter, with "next" null.
    #[arg(long)]
    all: bool,
}

fn parse_cursor(text: &str) -> Result<UsageCursor, String> {
    text.parse().map_err(|error| format!("{error}"))
}

pub(super) fn run(args: UsageArgs) -> ExitCode {
    block_on(async move {
        let store = args.database.store()?;
        let admin = Admin::from_store(&store);
        let page = read_usage(&admin, &args).await?;
        print_json(&page)?;
        if let Some(next) = &page.next {
            eprintln!(
                "note: more counters follow; pass --after {next} for the next page, or --all for \
                 every page"
            );
        }
        let counts = page.counts;
        if !counts.is_empty() && args.workflow.is_some() {
            note_shared_counters(&admin, &args).await?;
        }
        // An empty page after a cursor only means that the listing ended.
        if counts.is_empty() && args.after.is_none() {
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
                Some(policy) => eprintln!(
                    "note: no call of tenant {:?} to tool {:?} is counted in the current windows \
                     of the limit of tenant {:?}; the counters start with the first call",
                    args.tenant, args.tool, policy.tenant
                ),
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Reads one page of counters, or with `--all` every page from `--after` on, joined into one.
async fn read_usage(admin: &Admin, args: &UsageArgs) -> Result<UsagePage, String> {
    let default_size = if args.all {
        MAX_USAGE_PAGE_SIZE
    } else {
        DEFAULT_USAGE_PAGE_SIZE
    };
    let mut query = UsageQuery {
        workflow: args.workflow.clone(),
        page_size: args.page_size.unwrap_or(default_size),
        after: args.after.clone(),
    };
    let mut every = UsagePage {
        counts: Vec::new(),
        next: None,
    };
    loop {
        let page = admin
            .usage(&args.tenant, &args.tool, &query)
            .await
            .map_err(|error| args.database.describe_error(&error))?;
        if !args.all {
            return Ok(page);
        }
        every.counts.extend(page.counts);
        match page.next {
            Some(next) => query.after = Some(next),
            None => return Ok(every),
        }
    }
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
