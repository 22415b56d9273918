//! The sync engine: one cycle per resource is recover -> pull (walk + merge) -> push. The
//! one-shot command and the daemon both call [`Engine::run_cycle`].

mod apply;
mod enqueue;
pub mod events;
pub mod merge;
mod plan;
mod prepare;
mod pull;
mod push;
mod reconcile;
mod removal;
mod report;
mod resolve;
mod retry;
#[cfg(test)]
mod testkit;
mod walk;
mod writeback;

pub use report::{CycleReport, Outcome, Plan, PullStats, PushStats, ResourceReport};

use crate::config::Settings;
use crate::resources::{ResourceKind, UpstreamName};
use crate::store::{AsyncStore, StoreError};
use crate::upstream::{Client, ResourceApi, UpstreamError};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Something a person must look at (a guard refused, upstream rejected a change).
    #[error("{0}")]
    NeedsHuman(String),
    /// Work left for a later run (upstream kept changing, a retry is not due yet).
    #[error("{0}")]
    Postponed(String),
}

impl SyncError {
    pub fn outcome(&self) -> Outcome {
        match self {
            SyncError::Upstream(e) if e.is_retryable() => Outcome::Transient(self.to_string()),
            SyncError::Upstream(_) | SyncError::NeedsHuman(_) => Outcome::NeedsHuman(self.to_string()),
            SyncError::Postponed(_) => Outcome::Transient(self.to_string()),
            SyncError::Store(e) if e.is_busy() => Outcome::Transient(self.to_string()),
            SyncError::Store(_) => Outcome::Fatal(self.to_string()),
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct CycleOptions {
    /// Push local deletes even beyond `sync.max_delete_fraction`.
    pub allow_mass_delete: bool,
    /// A one-shot run: every waiting entry is tried now, whatever its backoff says (the
    /// schedule of the runs is the spacing). The daemon honours each entry's backoff.
    pub one_shot: bool,
}

/// Everything one resource's cycle needs.
pub(crate) struct ResourceCtx {
    pub kind: ResourceKind,
    pub api: ResourceApi,
    pub db: AsyncStore,
    pub settings: Arc<Settings>,
    pub opts: CycleOptions,
    /// Cancelled on shutdown: no new request starts after it.
    pub shutdown: CancellationToken,
    /// The retry policy of every request of this cycle.
    pub retry: retry::RetryPolicy,
    /// Who hears about progress, if anyone.
    pub observer: Option<events::Observer>,
}

impl ResourceCtx {
    pub(crate) fn report(&self, progress: events::Progress) {
        if let Some(observer) = &self.observer {
            observer(progress);
        }
    }
}

pub struct Engine {
    settings: Arc<Settings>,
    db: AsyncStore,
    apis: HashMap<ResourceKind, ResourceApi>,
    shutdown: CancellationToken,
    observer: Option<events::Observer>,
}

impl Engine {
    pub fn new(settings: Arc<Settings>, db: AsyncStore) -> Result<Engine, UpstreamError> {
        let mut clients: HashMap<UpstreamName, Client> = HashMap::new();
        let mut apis = HashMap::new();
        for res in &settings.resources {
            let spec = res.kind.spec();
            let Some(up) = settings.upstream(spec.upstream) else {
                continue;
            };
            let client = match clients.get(&spec.upstream) {
                Some(c) => c.clone(),
                None => {
                    let c = Client::new(up, settings.sync.request_timeout, settings.sync.max_retry_after)?;
                    clients.insert(spec.upstream, c.clone());
                    c
                }
            };
            apis.insert(res.kind, ResourceApi::new(spec, client, res.filters.clone()));
        }
        Ok(Engine {
            settings,
            db,
            apis,
            shutdown: CancellationToken::new(),
            observer: None,
        })
    }

    /// Cycles stop starting requests once `token` is cancelled.
    pub fn with_shutdown(mut self, token: CancellationToken) -> Engine {
        self.shutdown = token;
        self
    }

    /// Progress of walks and pushes goes to `observer`.
    pub fn with_observer(mut self, observer: events::Observer) -> Engine {
        self.observer = Some(observer);
        self
    }

    pub fn settings(&self) -> &Arc<Settings> {
        &self.settings
    }

    pub fn db(&self) -> &AsyncStore {
        &self.db
    }

    pub fn resources(&self) -> Vec<ResourceKind> {
        let mut kinds: Vec<_> = self.apis.keys().copied().collect();
        kinds.sort();
        kinds
    }

    fn ctx(&self, kind: ResourceKind, opts: CycleOptions) -> Option<ResourceCtx> {
        Some(ResourceCtx {
            kind,
            api: self.apis.get(&kind)?.clone(),
            db: self.db.clone(),
            settings: self.settings.clone(),
            opts,
            shutdown: self.shutdown.clone(),
            retry: retry::RetryPolicy::new(&self.settings.sync, self.shutdown.clone()),
            observer: self.observer.clone(),
        })
    }

    /// One full cycle over every enabled resource, resources side by side.
    pub async fn run_cycle(&self, opts: CycleOptions) -> CycleReport {
        let kinds = self.resources();
        let runs = kinds
            .into_iter()
            .filter_map(|k| self.ctx(k, opts))
            .map(|ctx| async move { run_resource(ctx).await });
        CycleReport {
            resources: futures::future::join_all(runs).await,
        }
    }

    /// One cycle of a single resource (the daemon schedules resources separately).
    pub async fn run_resource_cycle(&self, kind: ResourceKind, opts: CycleOptions) -> Option<ResourceReport> {
        Some(run_resource(self.ctx(kind, opts)?).await)
    }

    /// Pushes local edits and due retries without walking upstream (the daemon runs this
    /// when the mirror changed, between scheduled walks).
    pub async fn run_push_pass(&self, kind: ResourceKind, opts: CycleOptions) -> Option<ResourceReport> {
        let ctx = self.ctx(kind, opts)?;
        let span = tracing::info_span!("push");
        Some(
            async move {
                let mut report = ResourceReport::new(kind);
                if let Err(e) = push::recover(&ctx).await {
                    report.note(e.outcome());
                }
                match push::push(&ctx).await {
                    Ok((stats, outcome)) => {
                        report.pushed = stats;
                        report.note(outcome);
                    }
                    Err(e) => report.note(e.outcome()),
                }
                report
            }
            .instrument(span)
            .await,
        )
    }

    /// Asks upstream for the first record of `kind` (one request, no retries): whether the
    /// URL, token and filters work. Returns how many records upstream says it holds.
    pub async fn probe(&self, kind: ResourceKind) -> Option<Result<u64, UpstreamError>> {
        let api = self.apis.get(&kind)?;
        Some(api.list_page(1, 1, &[]).await.map(|page| page.total))
    }

    /// How long until the earliest journal retry of `kind` is due.
    pub async fn next_retry_in(&self, kind: ResourceKind) -> Option<std::time::Duration> {
        let resource = kind.name();
        let due = self
            .db
            .call(move |s| crate::store::journal::next_due(s.conn(), resource))
            .await
            .ok()??;
        if due.is_empty() {
            return Some(std::time::Duration::ZERO);
        }
        let at = chrono::DateTime::parse_from_rfc3339(&due).ok()?;
        Some(
            (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
                .to_std()
                .unwrap_or_default(),
        )
    }

    /// Dry run: what a cycle would do, changing nothing in the mirror or upstream.
    pub async fn plan(&self) -> Vec<(ResourceKind, Result<report::Plan, SyncError>)> {
        let mut out = Vec::new();
        for kind in self.resources() {
            if let Some(ctx) = self.ctx(kind, CycleOptions::default()) {
                out.push((kind, plan::plan(&ctx).await));
            }
        }
        out
    }
}

fn mirror_unknown_ids(
    store: &mut crate::store::Store,
    spec: &'static crate::resources::ResourceSpec,
) -> Result<Vec<(i64, i64)>, StoreError> {
    crate::store::mirror::unknown_ids(store.conn(), spec)
}

async fn run_resource(ctx: ResourceCtx) -> ResourceReport {
    // The span names the pass; each event names its resource itself (once per line).
    let span = tracing::info_span!("cycle");
    let report = run_resource_inner(ctx).instrument(span).await;
    report.log();
    report
}

async fn run_resource_inner(ctx: ResourceCtx) -> ResourceReport {
    let started = Instant::now();
    let mut report = ResourceReport::new(ctx.kind);

    // A create whose answer never came back must be looked for upstream before the walk
    // would mistake the record it made for someone else's.
    if let Err(e) = push::recover(&ctx).await {
        report.note(e.outcome());
    }
    match pull::pull(&ctx).await {
        Ok(stats) => {
            report.pulled = Some(stats);
            // After a complete walk, a row naming an id upstream does not have was typed in
            // by hand: it is neither created nor removed, so a person must say what it is.
            let spec = ctx.api.spec;
            match ctx.db.call(move |s| mirror_unknown_ids(s, spec)).await {
                Ok(unknown) if !unknown.is_empty() => {
                    let shown: Vec<String> = unknown
                        .iter()
                        .take(3)
                        .map(|(l, id)| format!("local_id {l} (id {id})"))
                        .collect();
                    report.note(Outcome::NeedsHuman(format!(
                        "{}: {} row(s) name an id upstream does not have: {}. restsync neither creates nor removes \
                         them; to create one upstream set its id to NULL, otherwise delete it",
                        spec.table,
                        unknown.len(),
                        shown.join(", ")
                    )));
                }
                Ok(_) => {}
                Err(e) => report.note(SyncError::from(e).outcome()),
            }
        }
        Err(e) => {
            let msg = e.to_string();
            let resource = ctx.kind.name();
            let kind = match e.outcome() {
                Outcome::NeedsHuman(_) => "needs_human",
                Outcome::Fatal(_) => "fatal",
                _ => "transient",
            };
            if let Err(store_err) = ctx
                .db
                .call(move |s| crate::store::sync_state::record_error(s.conn(), resource, &msg, kind))
                .await
            {
                report.note(SyncError::from(store_err).outcome());
            }
            report.note(e.outcome());
        }
    }
    // Updates and deletes are merged with upstream's current record just before they are
    // sent (fetch before write), so they go whatever the walk saw.
    match push::push(&ctx).await {
        Ok((stats, outcome)) => {
            report.pushed = stats;
            report.note(outcome);
        }
        Err(e) => report.note(e.outcome()),
    }
    let retention = ctx.settings.sync.journal_retention;
    let cutoff = (chrono::Utc::now() - chrono::Duration::from_std(retention).unwrap_or_default())
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    if let Err(e) = ctx
        .db
        .call(move |s| crate::store::journal::purge_finished(s.conn(), &cutoff))
        .await
    {
        tracing::warn!(error = %e, "could not purge old journal entries");
    }
    report.seconds = started.elapsed().as_secs_f64();
    report
}
