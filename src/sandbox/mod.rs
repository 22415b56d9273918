//! Built-in sandbox: a stateful in-process emulator of the Firstline and Plusofon APIs.
//!
//! Two listeners on 127.0.0.1 (one per upstream) share one data store, one fault engine and
//! one request log. Tests and the `restsync sandbox` command drive it through
//! [`SandboxControl`]; the emulation follows the upstream documents, quirks included.

mod defined;
mod faults;
mod firstline;
mod layer;
mod net;
mod plusofon;
mod query;
mod records;
mod refdata;
mod render;
mod seed;
mod state;
mod validate;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_faults;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use serde_json::{Map, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use faults::{parse_faults, FaultAction, Faults, ScriptedFault};
pub use state::Kind;

use faults::FaultEngine;
use net::{ConnMeta, KillListener};
use state::Records;

/// How to start a [`Sandbox`].
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// 0 = any free port; always bound on 127.0.0.1.
    pub firstline_port: u16,
    pub plusofon_port: u16,
    /// Seeded data is a pure function of this seed and `records`.
    pub seed: u64,
    /// Seeded record count for each of the three resources.
    pub records: usize,
    pub firstline_token: String,
    pub plusofon_token: String,
    /// Expected value of Plusofon's `Client` header.
    pub plusofon_client: String,
    pub faults: Faults,
    /// Resources defined in a configuration, served from their definitions (each seeded
    /// with `records` generated records) next to the built-ins of their upstream.
    pub defined: Vec<crate::resources::ResourceKind>,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            firstline_port: 0,
            plusofon_port: 0,
            seed: 42,
            records: 250,
            firstline_token: "sandbox-firstline-token".to_string(),
            plusofon_token: "sandbox-plusofon-token".to_string(),
            plusofon_client: "10553".to_string(),
            faults: Faults::default(),
            defined: Vec::new(),
        }
    }
}

/// One request as the sandbox served it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    /// Raw query string, without the `?`.
    pub query: String,
    /// HTTP status answered; 0 when the connection was dropped instead.
    pub status: u16,
}

/// State shared by both servers and every [`SandboxControl`].
pub(crate) struct Shared {
    state: Mutex<Records>,
    faults: Mutex<FaultEngine>,
    log: Mutex<Vec<RequestRecord>>,
    /// Records created through the API, and when: lists may not show them yet.
    created: Mutex<Vec<(Kind, i64, std::time::Instant)>>,
    /// Defined resources' records, by resource name.
    defined: Mutex<std::collections::BTreeMap<&'static str, defined::Collection>>,
    firstline_token: String,
    plusofon_token: String,
    plusofon_client: String,
}

/// Locks ignoring poisoning: the data stays usable even if a holder panicked.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub(crate) fn state(&self) -> MutexGuard<'_, Records> {
        lock(&self.state)
    }

    pub(crate) fn faults(&self) -> MutexGuard<'_, FaultEngine> {
        lock(&self.faults)
    }

    pub(crate) fn record(&self, r: RequestRecord) {
        lock(&self.log).push(r);
    }

    pub(crate) fn note_created(&self, kind: Kind, id: i64) {
        lock(&self.created).push((kind, id, std::time::Instant::now()));
    }

    /// Ids of `kind` created too recently to be listed (the `list_lag_ms` fault).
    pub(crate) fn unlisted(&self, kind: Kind) -> Vec<i64> {
        let lag = self.faults().list_lag();
        let mut created = lock(&self.created);
        created.retain(|(_, _, at)| at.elapsed() < lag);
        created
            .iter()
            .filter(|(k, _, _)| *k == kind)
            .map(|(_, id, _)| *id)
            .collect()
    }
}

/// A running sandbox; dropping it stops the servers too, [`Sandbox::shutdown`] waits for that.
pub struct Sandbox {
    shared: Arc<Shared>,
    firstline_addr: SocketAddr,
    plusofon_addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Sandbox {
    /// Seeds the data and binds both listeners before returning, so the URLs answer at once.
    pub async fn start(opts: SandboxOptions) -> io::Result<Sandbox> {
        let fl = TcpListener::bind(("127.0.0.1", opts.firstline_port)).await?;
        let pl = TcpListener::bind(("127.0.0.1", opts.plusofon_port)).await?;
        let (seed, records) = (opts.seed, opts.records);
        // Seeding a million rows takes a while; keep it off the async workers.
        let state = tokio::task::spawn_blocking(move || seed::seeded_state(seed, records))
            .await
            .map_err(io::Error::other)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            faults: Mutex::new(FaultEngine::new(opts.faults)),
            log: Mutex::new(Vec::new()),
            created: Mutex::new(Vec::new()),
            defined: Mutex::new(
                opts.defined
                    .iter()
                    .map(|k| (k.name(), defined::Collection::seeded(*k, seed, records)))
                    .collect(),
            ),
            firstline_token: opts.firstline_token,
            plusofon_token: opts.plusofon_token,
            plusofon_client: opts.plusofon_client,
        });
        let firstline_addr = fl.local_addr()?;
        let plusofon_addr = pl.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let tasks = vec![
            serve(fl, firstline::router(shared.clone()), stopped.clone()),
            serve(pl, plusofon::router(shared.clone()), stopped),
        ];
        Ok(Sandbox {
            shared,
            firstline_addr,
            plusofon_addr,
            stop,
            tasks,
        })
    }

    pub fn firstline_url(&self) -> String {
        format!("http://{}", self.firstline_addr)
    }

    pub fn plusofon_url(&self) -> String {
        format!("http://{}", self.plusofon_addr)
    }

    pub fn control(&self) -> SandboxControl {
        SandboxControl {
            shared: self.shared.clone(),
        }
    }

    /// Stops accepting, lets in-flight requests finish (at most 5 s), then returns.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for mut task in self.tasks {
            if tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

fn serve(listener: TcpListener, router: Router, mut stopped: watch::Receiver<bool>) -> JoinHandle<()> {
    let app = router.into_make_service_with_connect_info::<ConnMeta>();
    tokio::spawn(async move {
        // Also resolves when the Sandbox (the sender) is dropped.
        let signal = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        if let Err(e) = axum::serve(KillListener(listener), app)
            .with_graceful_shutdown(signal)
            .await
        {
            tracing::warn!("sandbox server stopped: {e}");
        }
    })
}

/// Starts a sandbox, runs it until `shutdown` resolves, then stops it (the CLI's `sandbox`).
pub async fn run(opts: SandboxOptions, shutdown: impl Future<Output = ()>) -> io::Result<()> {
    let sandbox = Sandbox::start(opts).await?;
    shutdown.await;
    sandbox.shutdown().await;
    Ok(())
}

/// Direct access to a running sandbox's data, faults and request log.
#[derive(Clone)]
pub struct SandboxControl {
    shared: Arc<Shared>,
}

fn as_map(fields: Value) -> Map<String, Value> {
    match fields {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

impl SandboxControl {
    /// Every record, rendered as the list endpoint renders it, in listing order.
    pub fn list(&self, kind: Kind) -> Vec<Value> {
        render::listed_range(&self.shared, kind, 0, usize::MAX)
    }

    /// `limit` records from listing position `offset`, rendered like [`Self::list`]; for
    /// checking big data sets in chunks, since `list` of a million rows takes gigabytes.
    pub fn list_range(&self, kind: Kind, offset: usize, limit: usize) -> Vec<Value> {
        render::listed_range(&self.shared, kind, offset, limit)
    }

    /// Every id in listing order; cheap even for a million records.
    pub fn ids(&self, kind: Kind) -> Vec<i64> {
        self.shared.state().ids(kind)
    }

    /// One record, rendered as the list endpoint renders it.
    pub fn get(&self, kind: Kind, id: i64) -> Option<Value> {
        render::listed(&self.shared, kind, id)
    }

    pub fn count(&self, kind: Kind) -> usize {
        self.shared.state().count(kind)
    }

    /// Creates a record like a successful API create, without validation; returns its id.
    pub fn insert(&self, kind: Kind, fields: Value) -> i64 {
        self.shared.state().insert(kind, &as_map(fields))
    }

    /// Merges the given API-named fields into a record; false if there is no such id.
    pub fn update(&self, kind: Kind, id: i64, fields: Value) -> bool {
        self.shared.state().update(kind, id, &as_map(fields))
    }

    pub fn delete(&self, kind: Kind, id: i64) -> bool {
        self.shared.state().delete(kind, id)
    }

    pub fn clear(&self, kind: Kind) {
        self.shared.state().clear(kind);
    }

    /// Replaces the random faults (and restarts their random stream from `faults.seed`).
    /// The records of a defined resource, in listing order (empty if it is not served).
    pub fn defined_records(&self, resource: &str) -> Vec<Value> {
        lock(&self.shared.defined)
            .get(resource)
            .map(defined::Collection::records)
            .unwrap_or_default()
    }

    /// Changes one column of a defined resource's record upstream (someone else's edit).
    pub fn defined_set(&self, resource: &str, id: i64, column: &str, value: Value) -> bool {
        lock(&self.shared.defined)
            .get_mut(resource)
            .is_some_and(|c| c.set(id, column, value))
    }

    /// Deletes a defined resource's record upstream.
    pub fn defined_delete(&self, resource: &str, id: i64) -> bool {
        lock(&self.shared.defined)
            .get_mut(resource)
            .is_some_and(|c| c.remove(id))
    }

    pub fn set_faults(&self, faults: Faults) {
        self.shared.faults().set(faults);
    }

    /// Queues a one-shot fault, checked before the random ones.
    pub fn push_scripted(&self, fault: ScriptedFault) {
        self.shared.faults().push(fault);
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.shared.log).clone()
    }

    /// How many requests with this method went to this kind's endpoints.
    pub fn count_requests(&self, method: &str, kind: Kind) -> usize {
        lock(&self.shared.log)
            .iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method) && Kind::from_path(&r.path) == Some(kind))
            .count()
    }
}
