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

/// Whether a resource's last cycle succeeded, and its first problem if not.
type LastOutcome = (bool, Option<String>);

/// The last outcome of every resource: healthy when its last cycle succeeded.
#[derive(Clone, Default)]
pub struct Health {
    inner: Arc<Mutex<BTreeMap<ResourceKind, LastOutcome>>>,
}

impl Health {
    pub fn set(&self, kind: ResourceKind, ok: bool, problem: Option<String>) {
        if let Ok(mut map) = self.inner.lock() {
            map.insert(kind, (ok, problem));
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
        for (kind, (ok, problem)) in map.iter() {
            healthy &= ok;
            let state = if *ok { "ok" } else { "failing" };
            text.push_str(&format!("{kind}: {state}"));
            if let Some(p) = problem.as_ref().filter(|_| !ok) {
                text.push_str(&format!(": {p}"));
            }
            text.push('\n');
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
