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
    let store = Store::open_for(&path, &settings.kinds()).map_err(|e| {
        eprintln!("restsync: {e}");
        if e.is_config() {
            exit::CONFIG
        } else {
            exit::FATAL
        }
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
        Err(code) => {
            if json {
                outln!(
                    "{}",
                    super::summary::json_error(
                        code,
                        "another restsync process holds the database (see stderr)"
                    )
                );
            }
            return code;
        }
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
            Err(code) => {
                if json {
                    outln!(
                        "{}",
                        super::summary::json_error(code, "the database could not be opened (see stderr)")
                    );
                }
                code
            }
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

/// Exit code of `plan --detailed-exitcode` when the next cycle would change something.
const PLAN_HAS_CHANGES: i32 = 2;

/// A dry run changes nothing, tables included: a defined resource whose tables the next
/// sync would create or widen is not planned but named (with what the sync will do).
fn set_aside_definition_changes(settings: &mut Settings) -> Result<Vec<(String, String)>, i32> {
    use crate::store::definitions::{preview, Change};
    if !settings.database_path.exists() {
        return Ok(Vec::new());
    }
    let store = Store::open(&settings.database_path).map_err(|e| {
        eprintln!("restsync: {e}");
        exit::FATAL
    })?;
    let changes = preview(store.conn(), &settings.kinds()).map_err(|e| {
        eprintln!("restsync: {e}");
        if e.is_config() {
            exit::CONFIG
        } else {
            exit::FATAL
        }
    })?;
    let mut aside = Vec::new();
    for (kind, change) in changes {
        let what = match change {
            Change::None => continue,
            Change::Create => "new: the next sync creates its tables and pulls every record".to_string(),
            Change::Widen { .. } => {
                let added = change.added(kind);
                format!(
                    "the next sync adds column(s) {} (filled from the stored records); plan shows it after that",
                    added.join(", ")
                )
            }
        };
        settings.resources.retain(|r| r.kind != kind);
        aside.push((kind.name().to_string(), what));
    }
    Ok(aside)
}

pub async fn plan(mut settings: Settings, json: bool, detailed_exitcode: bool) -> i32 {
    let aside = match set_aside_definition_changes(&mut settings) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let engine = match open_engine(settings, true) {
        Ok(e) => e,
        Err(code) => return code,
    };
    let mut code = exit::OK;
    let mut totals = crate::sync::Plan::default();
    let mut guard_refused = false;
    let mut unsettled = false;
    let mut per_resource = serde_json::Map::new();
    for (name, what) in &aside {
        if !json {
            outln!("{name}:\n  {what}");
        }
        per_resource.insert(name.clone(), serde_json::json!({ "definition_change": what }));
    }
    for (kind, result) in engine.plan().await {
        match result {
            Ok(p) => {
                guard_refused |= p.guard_would_refuse;
                unsettled |= p.upstream_unsettled;
                if !json {
                    print_plan(kind.name(), &p);
                }
                per_resource.insert(
                    kind.name().to_string(),
                    serde_json::to_value(&p).unwrap_or_default(),
                );
                for (total, items) in [
                    (&mut totals.pull_insert, &p.pull_insert),
                    (&mut totals.pull_update, &p.pull_update),
                    (&mut totals.pull_remove, &p.pull_remove),
                    (&mut totals.push_create, &p.push_create),
                    (&mut totals.push_update, &p.push_update),
                    (&mut totals.push_delete, &p.push_delete),
                    (&mut totals.conflicts, &p.conflicts),
                    (&mut totals.failed, &p.failed),
                ] {
                    total.extend(items.iter().cloned());
                }
            }
            Err(e) => {
                if !json {
                    outln!("{kind}:\n  cannot plan: {e}");
                }
                per_resource.insert(
                    kind.name().to_string(),
                    serde_json::json!({ "error": e.to_string() }),
                );
                code = code.max(e.outcome().exit_code());
            }
        }
    }
    let summary = format!(
        "Plan: {} to create, {} to update, {} to delete upstream; {} new, {} changed, {} removed locally; {} conflicts.",
        totals.push_create.len(),
        totals.push_update.len(),
        totals.push_delete.len(),
        totals.pull_insert.len(),
        totals.pull_update.len(),
        totals.pull_remove.len(),
        totals.conflicts.len()
    );
    // As the cycle would end: a change it would refuse or hold needs a person (65).
    let needs_person = !totals.failed.is_empty() || guard_refused;
    if code == exit::OK && detailed_exitcode && needs_person {
        code = exit::DATA;
    } else if code == exit::OK && detailed_exitcode && unsettled {
        // The cycle would leave work for a later run, as it exits: 75.
        code = exit::TEMPFAIL;
    } else if code == exit::OK && detailed_exitcode && (totals.has_changes() || !aside.is_empty()) {
        code = PLAN_HAS_CHANGES;
    }
    if json {
        let doc = serde_json::json!({
            "resources": per_resource,
            "summary": {
                "create": totals.push_create.len(),
                "update": totals.push_update.len(),
                "delete": totals.push_delete.len(),
                "new": totals.pull_insert.len(),
                "changed": totals.pull_update.len(),
                "removed": totals.pull_remove.len(),
                "conflicts": totals.conflicts.len(),
                "failed": totals.failed.len(),
            },
            "exit_code": code,
        });
        outln!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        if !totals.failed.is_empty() {
            outln!(
                "{} change(s) above are not sent by the next cycle and need a person (see `restsync status`).",
                totals.failed.len()
            );
        }
        outln!("{summary}");
    }
    code
}

fn print_plan(name: &str, p: &crate::sync::Plan) {
    outln!("{name}:");
    let sections = [
        ("pull: insert into mirror", &p.pull_insert),
        ("pull: update mirror", &p.pull_update),
        ("pull: remove from mirror", &p.pull_remove),
        ("push: create upstream", &p.push_create),
        ("push: update upstream", &p.push_update),
        ("push: delete upstream", &p.push_delete),
        ("conflicts", &p.conflicts),
        ("failed, not sent", &p.failed),
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
