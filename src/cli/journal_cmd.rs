//! `journal`: list entries, retry failed ones, drop a change.

use super::{exit, JournalAction};
use crate::config::Settings;
use crate::resources::ResourceKind;
use crate::store::journal::{self, Op, StoredState};
use crate::store::{mirror, Store, StoreError};
use std::io::{BufRead, IsTerminal, Write};

pub fn run(settings: &Settings, action: Option<JournalAction>, state: Option<&str>, limit: i64) -> i32 {
    if !settings.database_path.exists() {
        eprintln!(
            "restsync: no database at {} yet; run `restsync sync --once` first",
            settings.database_path.display()
        );
        return exit::FATAL;
    }
    // Retry and drop write the journal: one writer at a time. Listing only reads.
    let _lock = match &action {
        Some(JournalAction::Retry { .. } | JournalAction::Drop { .. }) => {
            match super::writer_lock(&settings.database_path) {
                Ok(lock) => Some(lock),
                Err(code) => return code,
            }
        }
        None => None,
    };
    let mut store = match Store::open(&settings.database_path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("restsync: {e}");
            return exit::FATAL;
        }
    };
    let result = match action {
        None => list(&store, state, limit),
        Some(JournalAction::Retry { seq, all }) => retry(&mut store, seq, all),
        Some(JournalAction::Drop {
            seq: Some(seq), yes, ..
        }) => drop_entry(&mut store, seq, yes),
        Some(JournalAction::Drop {
            seq: None,
            resource,
            held,
            state,
            yes,
            ..
        }) => drop_all(&mut store, resource.as_deref(), state.as_deref(), held, yes),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("restsync: {e}");
            exit::FATAL
        }
    }
}

fn list(store: &Store, state: Option<&str>, limit: i64) -> Result<i32, StoreError> {
    let state = match state.map(str::parse::<StoredState>).transpose() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("restsync: --state: {e}");
            return Ok(exit::USAGE);
        }
    };
    let entries = journal::list(store.conn(), state, limit)?;
    if entries.is_empty() {
        outln!("no journal entries");
    }
    for e in entries {
        outln!(
            "{:>6}  {:<13} {:<10} {:<6} local_id={:<6} id={:<8} attempts={} updated={}{}",
            e.seq,
            e.resource,
            e.state.as_str(),
            e.op.as_str(),
            e.local_id.map_or("-".into(), |v| v.to_string()),
            e.upstream_id.map_or("-".into(), |v| v.to_string()),
            e.attempts,
            e.updated_at,
            e.last_error.map(|m| format!("\n        {m}")).unwrap_or_default()
        );
    }
    Ok(exit::OK)
}

fn retry(store: &mut Store, seq: Option<i64>, all: bool) -> Result<i32, StoreError> {
    if seq.is_none() && !all {
        eprintln!("restsync: journal retry needs an entry number or --all");
        return Ok(exit::USAGE);
    }
    if let Some(seq) = seq {
        match journal::get(store.conn(), seq)? {
            None => {
                eprintln!("restsync: no journal entry {seq}");
                return Ok(exit::DATA);
            }
            Some(e)
                if !journal::Event::PersonRetry
                    .allowed_from(journal::Actor::Person)
                    .contains(&e.stage) =>
            {
                eprintln!(
                    "restsync: journal entry {seq} is {} ({}); only failed or waiting entries can be retried",
                    e.state, e.stage
                );
                return Ok(exit::DATA);
            }
            Some(e)
                if e.last_error
                    .as_deref()
                    .is_some_and(|m| m.starts_with(journal::HELD_BY_GUARD)) =>
            {
                eprintln!(
                    "restsync: journal entry {seq} is a delete held by the mass-delete guard; `restsync sync --once \
                     --allow-mass-delete` sends the held deletes, `restsync journal drop` gives them up"
                );
                return Ok(exit::DATA);
            }
            Some(_) => {}
        }
    }
    // A running daemon watches the edit count: it sends the retried entries now.
    let n = store.write(|tx| {
        let n = journal::retry(tx, seq)?;
        crate::store::tracking::note_edit(tx)?;
        Ok(n)
    })?;
    outln!(
        "{n} entr{} will be tried on the next sync (a change still refused here, an id edit say, is refused again \
         before any request)",
        if n == 1 { "y" } else { "ies" }
    );
    Ok(if n == 0 && seq.is_some() {
        exit::DATA
    } else {
        exit::OK
    })
}

fn drop_entry(store: &mut Store, seq: i64, yes: bool) -> Result<i32, StoreError> {
    let Some(entry) = journal::get(store.conn(), seq)? else {
        eprintln!("restsync: no journal entry {seq}");
        return Ok(exit::DATA);
    };
    if !journal::Event::Supersede
        .allowed_from(journal::Actor::Person)
        .contains(&entry.stage)
    {
        eprintln!(
            "restsync: journal entry {seq} is {} ({}); only queued or failed entries can be dropped \
             (one whose request may have reached upstream must be resolved first)",
            entry.state, entry.stage
        );
        return Ok(exit::DATA);
    }
    let Some(kind) = ResourceKind::from_name(&entry.resource) else {
        eprintln!(
            "restsync: journal entry {seq} names an unknown resource {:?}",
            entry.resource
        );
        return Ok(exit::DATA);
    };
    // A row changed since its entry was written is a newer change: the next sync journals
    // it afresh (superseding this entry). Dropping would silently throw that edit away.
    let supersedable = matches!(entry.stage, journal::Stage::Queued | journal::Stage::Failed);
    if let (Op::Create | Op::Update, Some(local_id), true) = (entry.op, entry.local_id, supersedable) {
        let spec = kind.spec();
        let row = mirror::mirror_by_local_id(store.conn(), spec, local_id)?;
        let journaled = spec.values_from_json(&entry.row_values).ok();
        if let (Some(row), Some(journaled)) = (row, journaled) {
            let changed = spec.changed_writable(&row.values, &journaled);
            if !changed.is_empty() {
                eprintln!(
                    "restsync: journal entry {seq}: {kind} local_id {local_id} changed since the entry was written \
                     ({}); nothing dropped. The next sync sends the row as it is now and this entry is superseded; to \
                     give the edit up, put the row back by hand",
                    changed.join(", ")
                );
                return Ok(exit::DATA);
            }
        }
    }
    let effect = match entry.op {
        Op::Create if entry.stage == journal::Stage::Unidentified => format!(
            "delete local row {} of {}. Upstream DID accept this create: if its record shows up upstream \
             later, a walk brings it in as a new row (delete it upstream to be rid of it)",
            entry.local_id.unwrap_or(0),
            kind
        ),
        Op::Create if entry.stage == journal::Stage::Undetermined => format!(
            "delete local row {} of {}. Upstream MAY have made this create: if its record shows up upstream \
             later, a walk brings it in as a new row",
            entry.local_id.unwrap_or(0),
            kind
        ),
        Op::Create => format!(
            "delete local row {} of {} (it was never created upstream)",
            entry.local_id.unwrap_or(0),
            kind
        ),
        Op::Update | Op::Delete => {
            let id = entry.upstream_id.unwrap_or(0);
            let spec = kind.spec();
            let edit = match mirror::base_by_id(store.conn(), spec, id)? {
                Some(base) => mirror::id_edit(store.conn(), spec, &base)?,
                None => None,
            };
            match edit {
                // Restoring the record would take its id from a row that now holds it for
                // another record: only the person knows which row is which.
                Some(mirror::IdEdit::TakenOver { local_id, other, .. }) => {
                    eprintln!(
                        "restsync: journal entry {seq}: the row that held {kind} id {id} (local_id {local_id}) now holds \
                         id {other}, another record's; dropping cannot tell which record that row is. Put the ids right \
                         by hand as the entry's error says (`restsync status`); the fix supersedes the entry"
                    );
                    return Ok(exit::DATA);
                }
                Some(mirror::IdEdit::Edited { local_id, .. }) => format!(
                    "give {kind} local_id {local_id} its id {id} back and restore its values from the base snapshot \
                     (the last state known upstream)"
                ),
                None => format!(
                    "restore {kind} row with id {id} from its base snapshot (the last state known upstream)"
                ),
            }
        }
    };
    if !yes {
        if !std::io::stdin().is_terminal() {
            eprintln!("restsync: dropping journal entry {seq} would {effect}; pass --yes to confirm");
            return Ok(exit::DATA);
        }
        print!("Drop journal entry {seq}? This will {effect}. [y/N] ");
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if !answer.trim().eq_ignore_ascii_case("y") {
            outln!("nothing changed");
            return Ok(exit::OK);
        }
    }
    let spec = kind.spec();
    store.write(|tx| {
        match (entry.op, entry.local_id, entry.upstream_id) {
            (Op::Create, Some(local_id), _) => mirror::delete_mirror(tx, spec, local_id)?,
            (_, _, Some(id)) => mirror::restore_from_base(tx, spec, id)?,
            _ => {}
        }
        journal::lifecycle::apply(tx, seq, &journal::Event::Supersede, journal::Actor::Person)?;
        Ok(())
    })?;
    outln!("dropped journal entry {seq}: {effect}");
    Ok(exit::OK)
}

/// `journal drop --all`: every queued or failed entry (of a resource, in a state) given up
/// at once, each as `journal drop <seq>` would (undo of a guarded mass delete, say).
fn drop_all(
    store: &mut Store,
    resource: Option<&str>,
    state: Option<&str>,
    held: bool,
    yes: bool,
) -> Result<i32, StoreError> {
    if let Some(name) = resource {
        if ResourceKind::from_name(name).is_none() {
            eprintln!(
                "restsync: --resource {name}: no such resource ({})",
                ResourceKind::all()
                    .iter()
                    .map(|k| k.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            return Ok(exit::USAGE);
        }
    }
    let state = match state {
        None => None,
        Some("pending") => Some(StoredState::Pending),
        Some("failed") => Some(StoredState::Failed),
        Some(other) => {
            eprintln!("restsync: --state {other}: only pending or failed entries can be dropped");
            return Ok(exit::USAGE);
        }
    };
    let droppable = journal::Event::Supersede.allowed_from(journal::Actor::Person);
    let mut entries = Vec::new();
    for kind in ResourceKind::all() {
        if resource.is_some_and(|r| r != kind.name()) {
            continue;
        }
        entries.extend(
            journal::active(store.conn(), kind.name())?
                .into_iter()
                .filter(|e| droppable.contains(&e.stage) && state.is_none_or(|s| e.state == s))
                .filter(|e| {
                    !held
                        || e.last_error
                            .as_deref()
                            .is_some_and(|m| m.starts_with(journal::HELD_BY_GUARD))
                }),
        );
    }
    if entries.is_empty() {
        outln!("no journal entries to drop");
        return Ok(exit::OK);
    }
    if !yes {
        eprintln!(
            "restsync: dropping {} journal entr{} would restore their rows from the last state known upstream \
             (and delete rows never created); pass --yes to confirm",
            entries.len(),
            if entries.len() == 1 { "y" } else { "ies" }
        );
        return Ok(exit::DATA);
    }
    let mut dropped = 0;
    for e in entries {
        if drop_entry(store, e.seq, true)? == exit::OK {
            dropped += 1;
        }
    }
    outln!(
        "dropped {dropped} journal entr{}",
        if dropped == 1 { "y" } else { "ies" }
    );
    Ok(exit::OK)
}
