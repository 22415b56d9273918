//! The end of a run: per resource what was pulled and pushed, what is left, and the next
//! step when something needs a person (`sync --once`, the demo), or the same as one JSON
//! document (`sync --once --json`).

use crate::sync::{CycleReport, Outcome};

fn status(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Ok => "ok",
        Outcome::Transient(_) => "retry later",
        Outcome::NeedsHuman(_) => "needs a person",
        Outcome::Fatal(_) => "failed",
    }
}

/// The human summary, as lines; `code` is the run's exit code.
pub fn lines(report: &CycleReport, code: i32) -> Vec<String> {
    let mut out = vec![format!(
        "{:<14} {:>8} {:>6} | pulled {:>8} {:>7} {:>7} | pushed {:>7} {:>7} {:>7} | {:>6} {:>7} {:>9} | status",
        "resource", "records", "pages", "inserted", "updated", "removed", "created", "updated", "deleted", "failed",
        "pending", "conflicts"
    )];
    for r in &report.resources {
        // A walk that did not finish has no counts to show: "-", not a misleading 0.
        let pulled = |f: fn(&crate::sync::PullStats) -> u64| {
            r.pulled.as_ref().map_or("-".to_string(), |p| f(p).to_string())
        };
        let s = &r.pushed;
        out.push(format!(
            "{:<14} {:>8} {:>6} |        {:>8} {:>7} {:>7} |        {:>7} {:>7} {:>7} | {:>6} {:>7} {:>9} | {}",
            r.resource.name(),
            pulled(|p| p.records),
            pulled(|p| p.pages),
            pulled(|p| p.inserted),
            pulled(|p| p.updated),
            pulled(|p| p.removed),
            s.created,
            s.updated,
            s.deleted,
            s.failed,
            s.pending,
            pulled(|p| p.conflicts),
            status(&r.outcome)
        ));
    }
    let mut next = Vec::new();
    for r in &report.resources {
        for problem in &r.problems {
            // Most problems name their resource already.
            let name = r.resource.name();
            if problem.starts_with(&format!("{name}:")) || problem.starts_with(&format!("{name} ")) {
                next.push(format!("  {problem}"));
            } else {
                next.push(format!("  {name}: {problem}"));
            }
        }
    }
    if !next.is_empty() {
        out.push(String::new());
        out.extend(next);
    }
    let step = match code {
        crate::exit::OK => None,
        crate::exit::TEMPFAIL => Some("Next: nothing to do; the next run continues where this one stopped."),
        crate::exit::DATA => {
            Some("Next: `restsync status` shows what needs you and the command that settles each item.")
        }
        _ => Some("Next: read the error above; nothing was lost (the journal keeps every change)."),
    };
    if let Some(step) = step {
        out.push(String::new());
        out.push(step.to_string());
    }
    out
}

/// The JSON document of a run that could not start a cycle (bad configuration, another
/// process holding the database).
pub fn json_error(code: i32, error: &str) -> String {
    let doc = serde_json::json!({ "exit_code": code, "error": error, "resources": [] });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// The cycle report as one JSON document; `code` is the run's exit code.
pub fn json(report: &CycleReport, code: i32) -> String {
    let doc = serde_json::json!({
        "exit_code": code,
        "resources": report.resources,
    });
    serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
