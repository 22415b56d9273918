//! `status`: what the mirror and journal hold, read through its own read-only connection
//! so it works while a sync runs.

use super::exit;
use crate::config::Settings;
use crate::resources::ResourceKind;
use crate::store::{journal, mirror, sync_state, Store, StoreError};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct ResourceStatus {
    pub resource: String,
    pub rows: i64,
    pub pending_local_changes: PendingChanges,
    pub journal: std::collections::BTreeMap<String, i64>,
    pub conflicts: i64,
    pub failed: Vec<FailedEntry>,
    /// Entries still on their way: queued, waiting for a retry, or an unresolved create.
    pub pending: Vec<PendingEntry>,
    /// Rows naming an id no base snapshot knows, as `(local_id, id)`; after a complete
    /// walk, ids upstream never gave.
    pub unknown_ids: Vec<(i64, i64)>,
    /// Rows whose `id` was edited by hand (typed over or cleared): nothing is pushed for
    /// them until the id is put back.
    pub id_edits: Vec<IdEditRow>,
    pub last_complete_pull: Option<String>,
    pub last_error: Option<String>,
    pub sync_state: sync_state::SyncState,
}

#[derive(Debug, Serialize)]
pub struct IdEditRow {
    pub local_id: i64,
    /// The record's id, as upstream has it.
    pub id: i64,
    /// What the row holds now (None: cleared).
    pub now: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct PendingChanges {
    pub creates: usize,
    pub updates: usize,
    pub deletes: usize,
}

#[derive(Debug, Serialize)]
pub struct FailedEntry {
    pub seq: i64,
    pub op: String,
    /// `failed`, or `accepted, never identified` for a create upstream accepted.
    pub stage: String,
    pub local_id: Option<i64>,
    pub upstream_id: Option<i64>,
    pub status: Option<i64>,
    pub error: Option<String>,
    /// What was sent (the request body), or would be when `attempts` is 0 (refused before
    /// any request).
    pub payload: String,
    /// Requests made for it.
    pub attempts: i64,
    /// The command that settles it.
    pub fix: String,
}

#[derive(Debug, Serialize)]
pub struct PendingEntry {
    pub seq: i64,
    pub op: String,
    pub stage: String,
    pub local_id: Option<i64>,
    pub upstream_id: Option<i64>,
    pub attempts: i64,
    pub next_attempt_at: Option<String>,
    pub last_error: Option<String>,
    /// Why it has not gone yet, and what (if anything) a person can do.
    pub waiting_for: String,
}

/// What `status` exits with: 0 healthy, 65 something needs a person, 75 work is waiting.
pub fn exit_code(all: &[ResourceStatus]) -> i32 {
    let needs_human = all.iter().any(|s| {
        !s.failed.is_empty()
            || s.sync_state.last_error_kind.as_deref() == Some("needs_human")
            || (!s.unknown_ids.is_empty() && s.last_complete_pull.is_some())
            || !s.id_edits.is_empty()
    });
    let waiting = all.iter().any(|s| {
        let p = &s.pending_local_changes;
        !s.pending.is_empty() || s.sync_state.last_error.is_some() || p.creates + p.updates + p.deletes > 0
    });
    if needs_human {
        exit::DATA
    } else if waiting {
        exit::TEMPFAIL
    } else {
        exit::OK
    }
}

fn fix_for(e: &journal::Entry) -> String {
    if e.last_error
        .as_deref()
        .is_some_and(|m| m.starts_with(journal::HELD_BY_GUARD))
    {
        return format!(
            "if the deletes are meant, `restsync sync --once --allow-mass-delete` sends them; if not, \
             `restsync journal drop --all --resource {} --held --yes` brings the rows back",
            e.resource
        );
    }
    match e.stage {
        journal::Stage::Unidentified | journal::Stage::Undetermined => format!(
            "check upstream for the record; if it is not there, `restsync journal retry {}` sends it again",
            e.seq
        ),
        // Ids moved between rows: which row is which record only the person knows, so
        // neither a drop nor a retry can settle it.
        _ if e.last_error.as_deref().is_some_and(|m| m.contains(journal::IDS_MOVED)) => {
            "put the ids right by hand as the error says (the fix supersedes the entry)".to_string()
        }
        _ if e.op == journal::Op::Delete => format!(
            "`restsync journal drop {seq}` brings the row back as upstream has it; `restsync journal retry {seq}` sends \
             the delete again once what refused it is fixed",
            seq = e.seq
        ),
        _ => format!(
            "fix the row (the fix supersedes the entry); `restsync journal retry {seq}` sends it again as it is (once \
             what refused it is fixed, in the configuration for example); or `restsync journal drop {seq}` to give the change up",
            seq = e.seq
        ),
    }
}

/// Why an entry on its way has not gone yet.
fn waiting_for(e: &journal::Entry) -> String {
    let later = e
        .next_attempt_at
        .as_deref()
        .filter(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok_and(|t| t > chrono::Utc::now()));
    match e.stage {
        journal::Stage::Queued => match (later, e.last_error.as_deref()) {
            (Some(t), Some(err)) => format!("its next attempt, {} (upstream or the network failed: {err})", relative(t)),
            (Some(t), None) => format!("its next attempt, {}", relative(t)),
            (None, Some(err)) => format!("the next push pass or cycle, which sends it again (last time: {err})"),
            (None, None) => "the next push pass or cycle, which sends it".into(),
        },
        journal::Stage::Sending => {
            "its request was in flight when restsync last stopped; the next run checks what it did before sending anything again".into()
        }
        journal::Stage::Unknown => format!(
            "the create may have been made: it is looked up by its natural key{} before it is ever sent again",
            e.settle_at.as_deref().map(|t| format!(" (a miss counts from {})", relative(t))).unwrap_or_default()
        ),
        journal::Stage::Accepted => "upstream accepted the create; the next walks identify the record it made".into(),
        _ => String::new(),
    }
}

pub fn collect(store: &Store, kind: ResourceKind) -> Result<ResourceStatus, StoreError> {
    let conn = store.conn();
    let spec = kind.spec();
    let changes = mirror::local_changes(conn, spec)?;
    let mut id_edits = Vec::new();
    for b in &changes.deletes {
        let (local_id, now) = match mirror::id_edit(conn, spec, b)? {
            Some(mirror::IdEdit::Edited { local_id, now }) => (local_id, now),
            Some(mirror::IdEdit::TakenOver { local_id, other, .. }) => (local_id, Some(other)),
            None => continue,
        };
        id_edits.push(IdEditRow {
            local_id,
            id: b.id,
            now,
        });
    }
    // Ids moved between rows (swapped): a row holds the id of a record whose own row is
    // still there. The record a row was before is the one the other moved row held.
    let moved: Vec<(i64, i64, i64)> = {
        let mut moved = Vec::new();
        for (m, b) in &changes.updates {
            if let Some(owner) = b.local_id.filter(|&o| o != m.local_id) {
                if mirror::mirror_by_local_id(conn, spec, owner)?.is_some() {
                    moved.push((m.local_id, owner, b.id));
                }
            }
        }
        moved
    };
    for &(local_id, _, now) in &moved {
        let was = moved
            .iter()
            .find(|(_, owner, _)| *owner == local_id)
            .map(|(_, _, id)| *id);
        id_edits.push(IdEditRow {
            local_id,
            id: was.unwrap_or(now),
            now: Some(now),
        });
    }
    let st = sync_state::get(conn, spec.table)?;
    Ok(ResourceStatus {
        resource: spec.table.to_string(),
        rows: mirror::count_mirror(conn, spec)?,
        // A row whose id was edited is neither a delete of its record nor a new row.
        pending_local_changes: PendingChanges {
            creates: changes
                .creates
                .len()
                .saturating_sub(id_edits.iter().filter(|e| e.now.is_none()).count()),
            updates: changes.updates.len().saturating_sub(moved.len()),
            deletes: changes.deletes.len().saturating_sub(id_edits.len()),
        },
        journal: journal::counts(conn, spec.table)?.into_iter().collect(),
        conflicts: sync_state::conflict_count(conn, spec.table)?,
        failed: journal::failed(conn, spec.table)?
            .into_iter()
            .map(|e| FailedEntry {
                seq: e.seq,
                op: e.op.to_string(),
                stage: e.stage.to_string(),
                local_id: e.local_id,
                upstream_id: e.upstream_id,
                status: e.last_status,
                fix: fix_for(&e),
                error: e.last_error,
                payload: e.payload,
                attempts: e.attempts,
            })
            .collect(),
        pending: journal::active(conn, spec.table)?
            .into_iter()
            .filter(|e| !e.stage.needs_human())
            .map(|e| PendingEntry {
                waiting_for: waiting_for(&e),
                seq: e.seq,
                op: e.op.to_string(),
                stage: e.stage.to_string(),
                local_id: e.local_id,
                upstream_id: e.upstream_id,
                attempts: e.attempts,
                next_attempt_at: e.next_attempt_at,
                last_error: e.last_error,
            })
            .collect(),
        unknown_ids: mirror::unknown_ids(conn, spec)?,
        id_edits,
        last_complete_pull: st.last_complete_walk_at.clone(),
        last_error: st.last_error.clone(),
        sync_state: st,
    })
}

/// Lines about definitions the next sync will apply (tables to create or widen) and about
/// resources this configuration leaves out that still hold local changes; `kinds` loses
/// the resources whose tables do not have their defined shape yet. Exit code: 78 for a
/// definition the database refuses, 65 for failed entries left out, 75 for work waiting.
fn definition_notes(
    store: &Store,
    settings: &Settings,
    kinds: &mut Vec<ResourceKind>,
) -> Result<(Vec<String>, i32), i32> {
    use crate::store::definitions::{left_out, preview, Change};
    let conn = store.conn();
    let changes = preview(conn, kinds).map_err(|e| {
        eprintln!("restsync: {e}");
        if e.is_config() {
            exit::CONFIG
        } else {
            exit::FATAL
        }
    })?;
    let (mut notes, mut code) = (Vec::new(), exit::OK);
    for (kind, change) in changes {
        let what = match change {
            Change::None => continue,
            Change::Create => "defined, but its tables are created by the next sync".to_string(),
            Change::Widen { .. } => {
                let added = change.added(kind);
                format!(
                    "its definition adds column(s) {}; the next sync adds them",
                    added.join(", ")
                )
            }
        };
        kinds.retain(|k| *k != kind);
        notes.push(format!("{kind}: {what}"));
        code = code.max(exit::TEMPFAIL);
    }
    for (table, waiting) in left_out(conn, &settings.kinds()).map_err(|e| {
        eprintln!("restsync: {e}");
        exit::FATAL
    })? {
        if waiting == 0 {
            continue;
        }
        let failed = journal::failed(conn, &table).map(|f| f.len()).unwrap_or(0);
        notes.push(format!(
            "{table}: no longer defined or enabled in this configuration, and {waiting} local change(s) wait in it \
             ({failed} failed); they are sent when its definition is back"
        ));
        code = code.max(if failed > 0 { exit::DATA } else { exit::TEMPFAIL });
    }
    Ok((notes, code))
}

pub fn run(settings: &Settings, json: bool) -> i32 {
    if !settings.database_path.exists() {
        eprintln!(
            "restsync: no database at {} yet; run `restsync sync --once` first",
            settings.database_path.display()
        );
        return exit::FATAL;
    }
    let store = match Store::open_read_only(&settings.database_path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("restsync: {e}");
            return exit::FATAL;
        }
    };
    let mut kinds: Vec<ResourceKind> = if settings.resources.is_empty() {
        ResourceKind::BUILT_IN.to_vec()
    } else {
        settings.resources.iter().map(|r| r.kind).collect()
    };
    // Definitions the database does not hold as written yet, and resources it holds that
    // the configuration leaves out: said plainly, and they count in the exit code.
    let (notes, notes_code) = match definition_notes(&store, settings, &mut kinds) {
        Ok(n) => n,
        Err(code) => return code,
    };
    let mut all = Vec::new();
    for kind in kinds {
        match collect(&store, kind) {
            Ok(s) => all.push(s),
            Err(e) => {
                eprintln!("restsync: {kind}: {e}");
                return exit::FATAL;
            }
        }
    }
    if json {
        match serde_json::to_string_pretty(&all) {
            Ok(text) => outln!("{text}"),
            Err(e) => {
                eprintln!("restsync: {e}");
                return exit::FATAL;
            }
        }
        for note in &notes {
            eprintln!("restsync: {note}");
        }
        return exit_code(&all).max(notes_code);
    }
    outln!("database: {}", settings.database_path.display());
    for note in &notes {
        outln!("{note}");
    }
    for s in &all {
        outln!("{}:", s.resource);
        outln!("  rows: {}", s.rows);
        let p = &s.pending_local_changes;
        outln!(
            "  local changes not yet upstream: {} create, {} update, {} delete",
            p.creates,
            p.updates,
            p.deletes
        );
        let journal: Vec<String> = s.journal.iter().map(|(k, v)| format!("{k} {v}")).collect();
        outln!(
            "  journal: {}",
            if journal.is_empty() {
                "empty".into()
            } else {
                journal.join(", ")
            }
        );
        outln!("  conflicts recorded: {}", s.conflicts);
        outln!(
            "  last complete pull: {}",
            s.last_complete_pull
                .as_deref()
                .map_or("never".to_string(), |t| format!("{} ({t})", relative(t)))
        );
        if let Some(err) = &s.last_error {
            outln!("  last error: {err}");
        }
        if !s.unknown_ids.is_empty() {
            let shown: Vec<String> = s
                .unknown_ids
                .iter()
                .take(5)
                .map(|(l, id)| format!("local_id {l} (id {id})"))
                .collect();
            outln!(
                "  rows naming an id upstream does not have: {} ({}); set id to NULL to create them, or delete them",
                s.unknown_ids.len(),
                shown.join(", ")
            );
        }
        if !s.id_edits.is_empty() {
            let shown: Vec<String> = s
                .id_edits
                .iter()
                .take(5)
                .map(|e| {
                    let now = e.now.map_or("NULL".to_string(), |n| n.to_string());
                    format!("local_id {} (id {} -> {now})", e.local_id, e.id)
                })
                .collect();
            outln!(
                "  rows whose id was edited by hand: {} ({}); nothing is pushed for them until the id is put back \
                 (UPDATE {} SET id = <id> WHERE local_id = <local_id>)",
                s.id_edits.len(),
                shown.join(", "),
                s.resource
            );
        }
        for p in &s.pending {
            outln!(
                "  pending journal {} {} local_id {} id {} ({}): {} attempt(s), next {}{}",
                p.seq,
                p.op,
                p.local_id.map_or("-".into(), |v| v.to_string()),
                p.upstream_id.map_or("-".into(), |v| v.to_string()),
                p.stage,
                p.attempts,
                p.next_attempt_at.as_deref().map_or("now".to_string(), relative),
                p.last_error
                    .as_deref()
                    .map(|e| format!("; last error: {e}"))
                    .unwrap_or_default()
            );
            outln!("    waiting for: {}", p.waiting_for);
        }
        for f in &s.failed {
            outln!(
                "  FAILED journal {} {} local_id {} id {} ({}): {}",
                f.seq,
                f.op,
                f.local_id.map_or("-".into(), |v| v.to_string()),
                f.upstream_id.map_or("-".into(), |v| v.to_string()),
                f.stage,
                f.error.as_deref().unwrap_or("")
            );
            match f.attempts {
                0 => outln!("    would send (nothing was sent): {}", f.payload),
                _ => outln!("    sent: {}", f.payload),
            }
            outln!("    fix: {}", f.fix);
        }
    }
    exit_code(&all).max(notes_code)
}

/// A stored time as a person reads it next to the time itself: "4 min ago", "in 30 s".
fn relative(at: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(at) else {
        return at.to_string();
    };
    let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds();
    let n = secs.unsigned_abs();
    let span = match n {
        0..=4 => return "just now".into(),
        5..=119 => format!("{n} s"),
        120..=7199 => format!("{} min", n / 60),
        7200..=172_799 => format!("{} h", n / 3600),
        _ => format!("{} days", n / 86_400),
    };
    if secs >= 0 {
        format!("{span} ago")
    } else {
        format!("in {span}")
    }
}

#[cfg(test)]
mod tests {
    use super::relative;

    fn at(offset_secs: i64) -> String {
        (chrono::Utc::now() + chrono::Duration::seconds(offset_secs))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }

    #[test]
    fn times_read_as_ages_and_waits() {
        assert_eq!(relative(&at(0)), "just now");
        assert_eq!(relative(&at(-42)), "42 s ago");
        assert_eq!(relative(&at(-4 * 60 - 10)), "4 min ago");
        assert_eq!(relative(&at(-3 * 3600 - 5)), "3 h ago");
        assert_eq!(relative(&at(-3 * 86_400)), "3 days ago");
        assert_eq!(relative(&at(31)), "in 30 s");
        assert_eq!(relative("not a time"), "not a time");
    }
}
