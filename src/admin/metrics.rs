//! The names of the metrics recorded for every decision, through the [`metrics`] facade.
//!
//! Install any `metrics` recorder (Prometheus, StatsD, …) to collect them; without one they
//! cost next to nothing. The rate-limit layer records the same names with the same labels.

use std::time::Duration;

/// Counter of admitted calls.
pub const ADMITTED: &str = "highway_ratelimit_admitted_total";
/// Counter of rejected calls, labelled `reason` with the rejection's name, such as
/// `quota_exhausted` or `outside_hours`.
pub const REJECTED: &str = "highway_ratelimit_rejected_total";
/// Counter of token store errors and timeouts, labelled `outcome`: `admitted` when the policy
/// fails open, `rejected` when it fails closed.
pub const STORE_ERRORS: &str = "highway_ratelimit_store_errors_total";
/// Histogram of the time one decision takes, in seconds, from the policy lookup to the store's
/// result.
pub const DECISION_SECONDS: &str = "highway_ratelimit_decision_seconds";

pub(crate) fn record_admitted() {
    metrics::counter!(ADMITTED).increment(1);
}

pub(crate) fn record_rejected(reason: &'static str) {
    metrics::counter!(REJECTED, "reason" => reason).increment(1);
}

pub(crate) fn record_store_error(outcome: &'static str) {
    metrics::counter!(STORE_ERRORS, "outcome" => outcome).increment(1);
}

pub(crate) fn record_latency(elapsed: Duration) {
    metrics::histogram!(DECISION_SECONDS).record(elapsed.as_secs_f64());
}
