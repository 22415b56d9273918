//! `sync` and `plan`.

use super::exit;
use crate::config::Settings;
use crate::store::{AsyncStore, Store};
use crate::sync::{CycleOptions, Engine};
use std::path::PathBuf;
use std::sync::Arc;

fn engine(settings: Settings) -> Result<Engine, i32> {
    open_engine(settings, false)
}

/// `dry`: plan without a database yet works on an empty in-memory one, so it creates no file.
fn open_engine(settings: Settings, dry: bool) -> Result<Engine, i32> {
    let path = if dry && !settings.database_path.exists() {
        std::path::PathBuf::from(":memory:")
    } else {
        settings.database_path.clone()
    };
    let store = Store::open(&path).map_err(|e| {
        eprintln!("restsync: {e}");
        exit::FATAL
    })?;
    Engine::new(Arc::new(settings), AsyncStore::new(store)).map_err(|e| {
        eprintln!("restsync: {e}");
        exit::CONFIG
    })
}

/// `sync --once` and the service. Both hold the database's writer lock for as long as they
/// run, so two of them never push the same journal at once.
pub async fn run(
    config_path: PathBuf,
    settings: Settings,
    once: bool,
    allow_mass_delete: bool,
    json: bool,
) -> i32 {
    let opts = CycleOptions {
        allow_mass_delete,
        one_shot: once,
    };
    let lock = match super::writer_lock_async(&settings.database_path).await {
        Ok(lock) => lock,
        Err(code) => return code,
    };
    let code = if once {
        // SIGTERM/SIGINT stop a one-shot run the same way: no request starts after the
        // signal, requests in flight finish, and the run exits 75 with the work left.
        let control = crate::daemon::Control::from_signals();
        match engine(settings) {
            Ok(engine) => {
                let mut engine = engine.with_shutdown(control.shutdown.clone());
                if let Some(observer) = super::progress::observer() {
                    engine = engine.with_observer(observer);
                }
                let report = engine.run_cycle(opts).await;
                let code = report.exit_code();
                let code = if control.shutdown.is_cancelled() && code == super::exit::OK {
                    super::exit::TEMPFAIL
                } else {
                    code
                };
                super::progress::clear();
                if json {
                    outln!("{}", super::summary::json(&report, code));
                } else {
                    for line in super::summary::lines(&report, code) {
                        outln!("{line}");
                    }
                }
                code
            }
            Err(code) => code,
        }
    } else {
        crate::daemon::run(
            config_path,
            settings,
            opts,
            crate::daemon::Control::from_signals(),
        )
        .await
    };
    drop(lock);
    code
}

pub async fn plan(settings: Settings) -> i32 {
    let engine = match open_engine(settings, true) {
        Ok(e) => e,
        Err(code) => return code,
    };
    let mut code = exit::OK;
    for (kind, result) in engine.plan().await {
        outln!("{kind}:");
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
                    outln!("  {title}: {}", items.len());
                    for item in items.iter().take(20) {
                        outln!("    {item}");
                    }
                    if items.len() > 20 {
                        outln!("    ... and {} more", items.len() - 20);
                    }
                }
                if !any {
                    outln!("  nothing to do");
                }
            }
            Err(e) => {
                outln!("  cannot plan: {e}");
                code = code.max(e.outcome().exit_code());
            }
        }
    }
    code
}
