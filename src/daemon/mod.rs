//! The long-running service (`restsync sync`): schedules each resource's cycles, pushes
//! local edits promptly, reloads on SIGHUP, stops cleanly on SIGTERM, and tells systemd
//! and Prometheus how it is doing. It only schedules: the work is the same engine cycle
//! `sync --once` runs.

mod health;
mod notify;
mod scheduler;
mod signals;
mod watch;

pub use health::Health;
pub use signals::Control;

use crate::config::{self, Settings};
use crate::store::{AsyncStore, Store};
use crate::sync::{CycleOptions, Engine};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::exit::{CONFIG as EXIT_CONFIG, FATAL as EXIT_FATAL, OK as EXIT_OK};

/// Runs the service until `control.shutdown` is cancelled; reloads the configuration from
/// `config_path` on every `control.reload` message. The CLI passes the process's signals
/// ([`Control::from_signals`]); tests drive it directly.
pub async fn run(config_path: PathBuf, settings: Settings, opts: CycleOptions, control: Control) -> i32 {
    let Control {
        shutdown,
        mut reload,
        health,
    } = control;
    crate::telemetry::install();
    let mut registered: Vec<&'static str> = settings.resources.iter().map(|r| r.kind.name()).collect();
    crate::telemetry::register(&registered);
    if let Some(addr) = settings.metrics_listen {
        if let Err(e) = health::serve(addr, health.clone(), shutdown.clone()).await {
            tracing::error!(%addr, error = %e, "cannot serve metrics");
            return EXIT_FATAL;
        }
        tracing::info!(%addr, "serving /metrics and /healthz");
    }

    let mut settings = settings;
    let mut first = true;
    loop {
        let generation = shutdown.child_token();
        let tasks = match start(&settings, opts, &generation, &health).await {
            Ok(t) => t,
            Err((code, message)) => {
                tracing::error!("{message}");
                return code;
            }
        };
        if first {
            notify::ready();
            first = false;
        } else {
            notify::reloaded();
        }
        tracing::info!(
            config = %config_path.display(),
            database = %settings.database_path.display(),
            resources = settings.resources.len(),
            "restsync running"
        );
        // Wait for shutdown, or for a reload with a configuration that validates.
        let new_settings = loop {
            tokio::select! {
                _ = shutdown.cancelled() => break None,
                Some(()) = reload.recv() => match reload_config(&config_path, &settings) {
                    Some(s) => break Some(s),
                    None => continue,
                },
            }
        };
        notify::status(if new_settings.is_some() {
            "reloading configuration"
        } else {
            "stopping"
        });
        if new_settings.is_none() {
            notify::stopping();
        } else {
            notify::reloading();
        }
        generation.cancel();
        if new_settings.is_some() {
            // A reload never abandons a request: writes finish (each is bounded by
            // sync.request_timeout_secs) before the new configuration starts.
            stop(tasks, None).await;
        } else {
            stop(tasks, Some(settings.daemon.shutdown_grace)).await;
        }
        match new_settings {
            Some(s) => {
                // A resource added by the reload gets its series at zero like the others;
                // the ones already counting keep their values.
                let added: Vec<&'static str> = s
                    .resources
                    .iter()
                    .map(|r| r.kind.name())
                    .filter(|n| !registered.contains(n))
                    .collect();
                crate::telemetry::register(&added);
                registered.extend(added);
                settings = s;
            }
            None => {
                tracing::info!("stopped");
                return EXIT_OK;
            }
        }
    }
}

/// The new configuration, if it validates and the database can take its resource
/// definitions (a new one's tables are created here, before the switch). The database
/// itself cannot change: the service holds its writer lock from the start.
fn reload_config(path: &Path, running: &Settings) -> Option<Settings> {
    let loaded = config::load(path).map_err(|e| e.to_string()).and_then(|s| {
        if s.database_path != running.database_path {
            return Err(format!(
                "database.path changed from {} to {}: a running service keeps the database (and the writer lock) \
                 it started with; restart it to use another",
                running.database_path.display(),
                s.database_path.display()
            ));
        }
        Store::open_for(&s.database_path, &s.kinds())
            .map(|_| s)
            .map_err(|e| format!("invalid configuration {}: {e}", path.display()))
    });
    match loaded {
        Ok(s) => {
            tracing::info!(config = %path.display(), "configuration reloaded");
            Some(s)
        }
        Err(e) => {
            // One line per event in the journal: the problems go on the same line.
            let error = e.to_string().replace("\n  - ", " | ");
            tracing::error!(%error, "configuration reload refused; keeping the running configuration");
            None
        }
    }
}

/// Opens the store and starts one scheduler per resource plus the change watcher.
async fn start(
    settings: &Settings,
    opts: CycleOptions,
    token: &CancellationToken,
    health: &Health,
) -> Result<JoinSet<()>, (i32, String)> {
    let store = Store::open_for(&settings.database_path, &settings.kinds()).map_err(|e| {
        let code = if e.is_config() { EXIT_CONFIG } else { EXIT_FATAL };
        (code, e.to_string())
    })?;
    let engine = Engine::new(Arc::new(settings.clone()), AsyncStore::new(store))
        .map_err(|e| (EXIT_CONFIG, e.to_string()))?
        .with_shutdown(token.clone());
    let engine = Arc::new(engine);
    health.expect(&settings.kinds());
    let (changes, _) = tokio::sync::broadcast::channel(16);
    let mut tasks = JoinSet::new();
    tasks.spawn(watch::run(
        settings.database_path.clone(),
        settings.daemon.watch_interval,
        changes.clone(),
        token.clone(),
    ));
    for res in &settings.resources {
        tasks.spawn(scheduler::run(scheduler::Job {
            engine: engine.clone(),
            kind: res.kind,
            schedule: res.schedule.clone(),
            time_zone: settings.sync.time_zone,
            changes: changes.subscribe(),
            push_delay: settings.daemon.push_delay,
            opts,
            token: token.clone(),
            health: health.clone(),
        }));
    }
    Ok(tasks)
}

/// Lets tasks finish their unit of work, up to the grace period if there is one.
async fn stop(mut tasks: JoinSet<()>, grace: Option<std::time::Duration>) {
    let all = async { while tasks.join_next().await.is_some() {} };
    let Some(grace) = grace else {
        all.await;
        return;
    };
    if tokio::time::timeout(grace, all).await.is_err() {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            "requests still in flight after the grace period; stopping anyway (the next start reconciles them)"
        );
    }
}
