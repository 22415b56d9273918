//! Metrics as small typed events, exported in Prometheus text format by the daemon. Knows
//! nothing of the layers that report to it.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Installs the global recorder (once); before it, every event is a no-op.
pub fn install() {
    if HANDLE.get().is_some() {
        return;
    }
    let built = PrometheusBuilder::new()
        .set_buckets(LATENCY_BUCKETS)
        .and_then(|b| b.install_recorder());
    match built {
        Ok(handle) => {
            let _ = HANDLE.set(handle);
        }
        Err(e) => tracing::warn!(error = %e, "metrics disabled"),
    }
}

/// Exports every series of these resources at zero, so the first scrape already shows
/// them (an absent series cannot be alerted on).
pub fn register(resources: &[&'static str]) {
    for &resource in resources {
        metrics::counter!("restsync_records_pulled_total", "resource" => resource).absolute(0);
        metrics::counter!("restsync_conflicts_total", "resource" => resource).absolute(0);
        metrics::gauge!("restsync_last_cycle_ok", "resource" => resource).set(0.0);
        metrics::gauge!("restsync_last_successful_walk_timestamp_seconds", "resource" => resource).set(0.0);
        for state in ["pending", "in_flight", "done", "failed", "superseded"] {
            metrics::gauge!("restsync_journal_entries", "resource" => resource, "state" => state).set(0.0);
        }
        for op in ["create", "update", "delete"] {
            metrics::counter!("restsync_pushes_total", "resource" => resource, "op" => op, "outcome" => "done")
                .absolute(0);
        }
        for outcome in ["failed", "retry", "superseded"] {
            metrics::counter!("restsync_pushes_total", "resource" => resource, "op" => "any", "outcome" => outcome)
                .absolute(0);
        }
    }
}

pub fn render() -> String {
    HANDLE.get().map(PrometheusHandle::render).unwrap_or_default()
}

pub fn request(upstream: &'static str, method: &str, status: u16, elapsed: Duration) {
    metrics::histogram!("restsync_upstream_request_duration_seconds", "upstream" => upstream)
        .record(elapsed.as_secs_f64());
    metrics::counter!("restsync_upstream_requests_total", "upstream" => upstream, "method" => method.to_string(),
        "status" => status.to_string())
    .increment(1);
}

pub fn push(resource: &'static str, op: &'static str, outcome: &'static str) {
    metrics::counter!("restsync_pushes_total", "resource" => resource, "op" => op, "outcome" => outcome)
        .increment(1);
}

pub fn journal_depth(resource: &'static str, state: String, entries: i64) {
    metrics::gauge!("restsync_journal_entries", "resource" => resource, "state" => state).set(entries as f64);
}

/// One cycle (`full`: with a walk) or push pass finished. `pulled` holds the records and
/// conflicts of its walk, if the walk completed.
pub fn cycle_finished(
    resource: &'static str,
    full: bool,
    pulled: Option<(u64, u64)>,
    ok: bool,
    transient: bool,
) {
    if let Some((records, conflicts)) = pulled {
        metrics::counter!("restsync_records_pulled_total", "resource" => resource).increment(records);
        metrics::counter!("restsync_conflicts_total", "resource" => resource).increment(conflicts);
        if full && (ok || transient) {
            metrics::gauge!("restsync_last_successful_walk_timestamp_seconds", "resource" => resource)
                .set(chrono::Utc::now().timestamp() as f64);
        }
    }
    // A push pass cannot vouch for upstream (it does not walk): it may lower the gauge,
    // only a full cycle raises it.
    if full || !ok {
        metrics::gauge!("restsync_last_cycle_ok", "resource" => resource).set(if ok { 1.0 } else { 0.0 });
    }
}
