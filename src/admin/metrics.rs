//! The names of the metrics recorded for every decision, through the [`metrics`] facade.
//!
//! Install any `metrics` recorder (Prometheus, StatsD, …) to collect them; without one they
//! cost next to nothing. Every metric carries a `tool` label; rejections also carry `reason`.

use std::time::Duration;

/// Counter of admitted calls.
pub const ADMITTED: &str = "highway_ratelimit_admitted_total";
/// Counter of rejected calls, labelled with `reason`: `outside_hours`, `blocked_date`,
/// `report_expired`, `quota_exhausted`, `switched_off` or `store_unavailable`.
pub const REJECTED: &str = "highway_ratelimit_rejected_total";
/// Counter of token store errors and timeouts, whether the call was then admitted (fail open)
/// or rejected.
pub const STORE_ERRORS: &str = "highway_ratelimit_store_errors_total";
/// Histogram of the time one decision takes, in seconds, from the policy lookup to the store's
/// answer.
pub const DECISION_SECONDS: &str = "highway_ratelimit_decision_seconds";

pub(crate) fn record_admitted(tool: &str) {
    metrics::counter!(ADMITTED, "tool" => tool.to_owned()).increment(1);
}

pub(crate) fn record_rejected(tool: &str, reason: &'static str) {
    metrics::counter!(REJECTED, "tool" => tool.to_owned(), "reason" => reason).increment(1);
}

pub(crate) fn record_store_error(tool: &str) {
    metrics::counter!(STORE_ERRORS, "tool" => tool.to_owned()).increment(1);
}

pub(crate) fn record_latency(tool: &str, elapsed: Duration) {
    metrics::histogram!(DECISION_SECONDS, "tool" => tool.to_owned()).record(elapsed.as_secs_f64());
}
