//! Metrics as small typed events, exported in Prometheus text format by the daemon.

use crate::sync::{Outcome, ResourceReport};
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

pub fn cycle_finished(report: &ResourceReport, full: bool) {
    let resource = report.resource.name();
    if let Some(p) = &report.pulled {
        metrics::counter!("restsync_records_pulled_total", "resource" => resource).increment(p.records);
        metrics::counter!("restsync_conflicts_total", "resource" => resource).increment(p.conflicts);
        if full && matches!(report.outcome, Outcome::Ok | Outcome::Transient(_)) {
            metrics::gauge!("restsync_last_successful_walk_timestamp_seconds", "resource" => resource)
                .set(chrono::Utc::now().timestamp() as f64);
        }
    }
    let ok = if matches!(report.outcome, Outcome::Ok) {
        1.0
    } else {
        0.0
    };
    metrics::gauge!("restsync_last_cycle_ok", "resource" => resource).set(ok);
}
