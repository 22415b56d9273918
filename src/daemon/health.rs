//! What `/healthz` and systemd's STATUS= report, and the HTTP endpoint serving it with
//! `/metrics`.

use crate::resources::ResourceKind;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// Whether a resource's last full cycle and last push pass succeeded, and the problem if not.
#[derive(Default)]
struct LastOutcome {
    cycle: Option<(bool, Option<String>)>,
    push: Option<(bool, Option<String>)>,
    /// When the next scheduled walk runs (RFC 3339 in the schedule's zone).
    next_walk: Option<String>,
}

/// The last outcome of every resource: healthy when its last cycle (and any push since)
/// succeeded. Whoever holds a clone can also wait for the next pass to finish.
#[derive(Clone)]
pub struct Health {
    inner: Arc<Mutex<BTreeMap<ResourceKind, LastOutcome>>>,
    /// Counts finished passes (cycles and push passes), so a driver awaits one instead of
    /// polling.
    passes: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            inner: Default::default(),
            passes: Arc::new(tokio::sync::watch::channel(0).0),
        }
    }
}

impl Health {
    /// Records a full cycle (`full`) or a push pass. A full cycle also pushes, so it
    /// clears an older push pass's result.
    pub fn set(&self, kind: ResourceKind, full: bool, ok: bool, problem: Option<String>) {
        if let Ok(mut map) = self.inner.lock() {
            let entry = map.entry(kind).or_default();
            if full {
                entry.cycle = Some((ok, problem));
                entry.push = None;
            } else {
                entry.push = Some((ok, problem));
            }
        }
        self.passes.send_modify(|n| *n += 1);
    }

    /// Notified each time a cycle or a push pass of any resource finishes.
    pub fn passes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.passes.subscribe()
    }

    /// Waits, up to `within`, until `done` holds after a finished pass (or already holds).
    /// Returns whether it did.
    pub async fn until(&self, within: std::time::Duration, mut done: impl FnMut() -> bool) -> bool {
        let mut passes = self.passes();
        let wait = async {
            while !done() {
                if passes.changed().await.is_err() {
                    return false;
                }
            }
            true
        };
        tokio::time::timeout(within, wait).await.unwrap_or(false)
    }

    /// The resources the service runs: each counts from the start, so one whose first
    /// cycle has not finished (a slow walk during an outage, say) keeps `/healthz` at 503
    /// instead of being left out; resources no longer configured are dropped.
    pub fn expect(&self, kinds: &[ResourceKind]) {
        if let Ok(mut map) = self.inner.lock() {
            map.retain(|k, _| kinds.contains(k));
            for kind in kinds {
                map.entry(*kind).or_default();
            }
        }
    }

    /// Records when the resource's next scheduled walk runs.
    pub fn set_next_walk(&self, kind: ResourceKind, at: String) {
        if let Ok(mut map) = self.inner.lock() {
            map.entry(kind).or_default().next_walk = Some(at);
        }
    }

    /// Healthy, and a line per resource.
    pub fn report(&self) -> (bool, String) {
        let Ok(map) = self.inner.lock() else {
            return (false, "health state unavailable\n".into());
        };
        if map.is_empty() {
            return (false, "no cycle finished yet\n".into());
        }
        let mut text = String::new();
        let mut healthy = true;
        for (kind, last) in map.iter() {
            let failing = [&last.cycle, &last.push]
                .into_iter()
                .flatten()
                .find(|(ok, _)| !ok)
                .map(|(_, problem)| problem.clone().unwrap_or_default());
            let ok = last.cycle.is_some() && failing.is_none();
            healthy &= ok;
            let next = last
                .next_walk
                .as_deref()
                .map(|t| format!(" (next walk {t})"))
                .unwrap_or_default();
            match failing {
                Some(p) => text.push_str(&format!("{kind}: failing: {p}{next}\n")),
                None if ok => text.push_str(&format!("{kind}: ok{next}\n")),
                None => text.push_str(&format!("{kind}: first cycle not finished yet{next}\n")),
            }
        }
        (healthy, text)
    }

    pub fn summary(&self) -> String {
        let (_, text) = self.report();
        text.trim_end().replace('\n', "; ")
    }
}

async fn healthz(State(health): State<Health>) -> (StatusCode, String) {
    let (ok, text) = health.report();
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, text)
}

async fn metrics() -> ([(&'static str, &'static str); 1], String) {
    (
        [("content-type", "text/plain; version=0.0.4")],
        crate::telemetry::render(),
    )
}

/// Binds `addr` now (so a bad address fails start-up) and serves until shutdown.
pub async fn serve(addr: SocketAddr, health: Health, shutdown: CancellationToken) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(health);
    tokio::spawn(async move {
        let server =
            axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await });
        if let Err(e) = server.await {
            tracing::error!(error = %e, "metrics endpoint failed");
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resource_whose_first_cycle_has_not_finished_is_not_healthy() {
        let health = Health::default();
        health.expect(&[ResourceKind::PHONE_NUMBERS, ResourceKind::ADDRESSES]);
        health.set(ResourceKind::PHONE_NUMBERS, true, true, None);
        let (healthy, text) = health.report();
        assert!(!healthy, "{text}");
        assert_eq!(
            text,
            "phone_numbers: ok\naddresses: first cycle not finished yet\n"
        );
        health.set(ResourceKind::ADDRESSES, true, true, None);
        assert!(health.report().0);
        // A resource taken out of the configuration no longer counts.
        health.set(ResourceKind::ADDRESSES, true, false, Some("down".into()));
        health.expect(&[ResourceKind::PHONE_NUMBERS]);
        assert_eq!(health.report(), (true, "phone_numbers: ok\n".to_string()));
    }

    #[test]
    fn the_report_says_each_resources_state_and_next_walk() {
        let health = Health::default();
        assert_eq!(health.report(), (false, "no cycle finished yet\n".to_string()));
        health.set_next_walk(ResourceKind::PHONE_NUMBERS, "2026-12-07T09:00:00+08:00".into());
        health.set(ResourceKind::PHONE_NUMBERS, true, true, None);
        health.set(ResourceKind::ADDRESSES, true, false, Some("upstream down".into()));
        let (healthy, text) = health.report();
        assert!(!healthy);
        assert_eq!(
            text,
            "phone_numbers: ok (next walk 2026-12-07T09:00:00+08:00)\naddresses: failing: upstream down\n"
        );
        assert_eq!(
            health.summary(),
            "phone_numbers: ok (next walk 2026-12-07T09:00:00+08:00); addresses: failing: upstream down"
        );
    }
}
