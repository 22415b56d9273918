//! `sync` and `plan`.

use super::exit;
use crate::config::Settings;
use crate::store::{Db, Store};
use crate::sync::{CycleOptions, Engine};
use std::sync::Arc;

fn engine(settings: Settings) -> Result<Engine, i32> {
    let store = Store::open(&settings.database_path).map_err(|e| {
        eprintln!("restsync: {e}");
        exit::FATAL
    })?;
    Engine::new(Arc::new(settings), Db::new(store)).map_err(|e| {
        eprintln!("restsync: {e}");
        exit::CONFIG
    })
}

pub async fn run(settings: Settings, once: bool, allow_mass_delete: bool) -> i32 {
    let schedule = settings.sync.schedule.clone();
    let engine = match engine(settings) {
        Ok(e) => e,
        Err(code) => return code,
    };
    let opts = CycleOptions { allow_mass_delete };
    if once {
        return engine.run_cycle(opts).await.exit_code();
    }
    // Scheduled mode: one cycle now, then one per tick; a tick missed while a cycle ran is
    // skipped rather than run in a burst.
    tracing::info!("restsync started; syncing on schedule");
    loop {
        engine.run_cycle(opts).await;
        let Some(next) = schedule.upcoming(chrono::Utc).next() else {
            tracing::error!("the schedule has no future run times; stopping");
            return exit::CONFIG;
        };
        let wait = (next - chrono::Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown_signal() => {
                tracing::info!("stopping");
                return exit::OK;
            }
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub async fn plan(settings: Settings) -> i32 {
    let engine = match engine(settings) {
        Ok(e) => e,
        Err(code) => return code,
    };
    let mut code = exit::OK;
    for (kind, result) in engine.plan().await {
        println!("{kind}:");
        match result {
            Ok(p) => {
                let sections = [
                    ("pull: insert into mirror", &p.pull_insert),
                    ("pull: update mirror", &p.pull_update),
                    ("pull: remove from mirror", &p.pull_remove),
                    ("push: create upstream", &p.push_create),
                    ("push: update upstream", &p.push_update),
                    ("push: delete upstream", &p.push_delete),
                    ("conflicts", &p.conflicts),
                    ("notes", &p.notes),
                ];
                let mut any = false;
                for (title, items) in sections {
                    if items.is_empty() {
                        continue;
                    }
                    any = true;
                    println!("  {title}: {}", items.len());
                    for item in items.iter().take(20) {
                        println!("    {item}");
                    }
                    if items.len() > 20 {
                        println!("    ... and {} more", items.len() - 20);
                    }
                }
                if !any {
                    println!("  nothing to do");
                }
            }
            Err(e) => {
                println!("  cannot plan: {e}");
                code = code.max(e.outcome().exit_code());
            }
        }
    }
    code
}
