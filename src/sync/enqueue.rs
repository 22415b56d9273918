//! Turning local edits into journal entries: one active entry per changed row, written
//! before any request is sent; entries whose row changed again are superseded.

use crate::resources::{describe_value, ResourceSpec};
use crate::store::journal::{self, Entry, Event, NewEntry, Op, Stage};
use crate::store::mirror::IdEdit;
use crate::store::tracking::{self, Mark};
use crate::store::{mirror, Store, StoreError};
use rusqlite::types::Value;
use serde_json::Value as Json;
use std::collections::HashMap;

/// Identifies the row an entry is about: upstream id once known, else the local row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum RowKey {
    Upstream(i64),
    Local(i64),
}

pub(super) fn key_of(op: Op, local_id: Option<i64>, upstream_id: Option<i64>) -> RowKey {
    match (op, upstream_id, local_id) {
        (Op::Create, _, Some(l)) => RowKey::Local(l),
        (_, Some(u), _) => RowKey::Upstream(u),
        (_, None, l) => RowKey::Local(l.unwrap_or(0)),
    }
}

/// Whether an active entry stays as it is for the change its row now calls for (else it
/// is superseded and the change journaled afresh). `plan` asks the same.
pub(super) fn entry_stays(e: &Entry, d: &Desired) -> bool {
    let same = e.op == d.op && e.payload == d.payload && e.row_values == d.row_values;
    // Refused here, never sent, and the reason is gone (the row was fixed): sent afresh.
    // One refused by upstream stays failed until the row changes.
    let refusal_lifted = e.stage == Stage::Failed && e.attempts == 0 && d.rejected.is_none();
    // Unresolved outcome: upstream may hold the effect already; keep the entry until it is
    // reconciled, and push any newer edit after that.
    (e.stage.unresolved() || same) && !refusal_lifted
}

pub(super) struct Desired {
    pub(super) op: Op,
    pub(super) local_id: Option<i64>,
    pub(super) upstream_id: Option<i64>,
    payload: String,
    row_values: String,
    /// Set when the change cannot be pushed as it stands.
    pub(super) rejected: Option<String>,
}

/// A mirror row's values as journaled (`row_values`). Read-only columns are upstream's to
/// fill, and nothing checks what a person typed into them: a value that does not read back
/// as its column's type (text in `profile_id`, say) is journaled as NULL, else the entry
/// could never be read again and the row's push would be stuck for good.
pub(super) fn journal_values(spec: &ResourceSpec, values: &[Value]) -> String {
    let text = spec.values_to_json(values);
    if spec.values_from_json(&text).is_ok() {
        return text;
    }
    let readable = |i: usize| {
        let mut probe = vec![Value::Null; values.len()];
        probe[i] = values[i].clone();
        spec.values_from_json(&spec.values_to_json(&probe)).is_ok()
    };
    let cleaned: Vec<Value> = spec
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if c.writable || readable(i) {
                values[i].clone()
            } else {
                Value::Null
            }
        })
        .collect();
    spec.values_to_json(&cleaned)
}

/// Why a local create cannot be sent: a column outside the resource's scope (the fixed
/// list filters). Upstream would make the record where this mirror never lists it, the
/// next walk would drop it, and inserting it again would buy a second one.
pub(super) fn out_of_scope(
    spec: &ResourceSpec,
    scope: &[(&'static str, String)],
    local_id: i64,
    values: &[Value],
) -> Option<String> {
    scope.iter().find_map(|(column, wanted)| {
        let i = spec.column_index(column)?;
        let have = describe_value(&values[i]);
        (have != *wanted).then(|| {
            // A built-in's scope is its `user_id` key; a defined resource's, its `filters`.
            let key = if crate::resources::ResourceKind::BUILT_IN
                .iter()
                .any(|k| k.name() == spec.table)
            {
                format!("resources.{}.{column} = {wanted}", spec.table)
            } else {
                format!("resources.{}.filters {{ {column} = {wanted} }}", spec.table)
            };
            format!(
                "{} local_id {local_id}: {column} {have} is outside this resource's scope \
                 ({key}); upstream would create it where this mirror does not list it. \
                 Set {column} to {wanted}, or delete the row",
                spec.table
            )
        })
    })
}

/// Supersedes an entry unless its effect upstream may be pending (the lifecycle refuses).
fn supersede_if_resolved(tx: &rusqlite::Connection, e: &Entry) -> Result<(), StoreError> {
    if matches!(e.stage, Stage::Queued | Stage::Failed) {
        journal::advance(tx, e.seq, &Event::Supersede)?;
    }
    Ok(())
}

/// How many marks one transaction journals: memory and transaction size stay bounded
/// however many rows were edited.
pub(super) const BATCH: usize = 500;

/// How often every row is compared with its base behind the triggers' back.
const FULL_CHECK_EVERY: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// Brings the journal in line with the edited rows: one active entry per changed row,
/// stale ones superseded, in transactions of [`BATCH`] marks. Returns the local deletes
/// waiting to be sent and the base count (for the mass-delete guard); the entries to send
/// are read page by page with `journal::due`.
pub(super) fn enqueue(
    store: &mut Store,
    spec: &'static ResourceSpec,
    scope: &[(&'static str, String)],
) -> Result<(usize, i64), StoreError> {
    full_check_if_due(store)?;
    // Nothing edited and nothing waiting: read only, so an idle pass writes nothing.
    let idle =
        !tracking::any_marks(store.conn(), spec.table)? && !journal::has_active(store.conn(), spec.table)?;
    if idle {
        return Ok((0, 0));
    }
    let mut after = None;
    loop {
        let (last, full) = store.write(|tx| {
            let marks = tracking::marks(tx, spec.table, after, BATCH)?;
            // A row is looked at together with the records its entries are about: a delete
            // refused as an id edit is settled once the row is gone or has its id back.
            let rows: Vec<i64> = marks
                .iter()
                .filter_map(|m| match m {
                    Mark::Row(l) => Some(*l),
                    Mark::Upstream(_) => None,
                })
                .collect();
            let mut look = marks.clone();
            for e in journal::active_about(tx, spec.table, rows, [])? {
                look.extend(e.upstream_id.map(Mark::Upstream));
            }
            let checked = mirror::changes_of(tx, spec, &look)?;
            let mut waiting = journal_changes(tx, spec, scope, &checked)?;
            // A row with an id upstream never gave stays marked until a person settles it,
            // so the check after each walk finds it without a scan.
            waiting.extend(checked.unknown.iter().map(|&l| Mark::Row(l)));
            tracking::clear(tx, spec.table, &marks)?;
            tracking::keep(tx, spec.table, &waiting)?;
            Ok((marks.last().copied(), marks.len() == BATCH))
        })?;
        if !full {
            break;
        }
        after = last;
    }
    let conn = store.conn();
    let deletes = journal::waiting_deletes(conn, spec.table)?;
    let base_count = match deletes {
        0 => 0,
        _ => mirror::count_base(conn, spec)?,
    };
    Ok((deletes, base_count))
}

/// The safety net behind the triggers: once a day (and first after the upgrade that added
/// them), every row of every resource is compared with its base and each change marked.
fn full_check_if_due(store: &mut Store) -> Result<(), StoreError> {
    let last = tracking::full_check_at(store.conn())?;
    let due = last
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .is_none_or(|t| chrono::Utc::now() - t.with_timezone(&chrono::Utc) >= FULL_CHECK_EVERY);
    if !due {
        return Ok(());
    }
    store.write(|tx| {
        let tables = crate::store::mirror_tables(tx)?;
        let kinds = crate::resources::ResourceKind::all();
        for kind in kinds.iter().filter(|k| tables.iter().any(|t| t == k.name())) {
            let spec = kind.spec();
            let missed = mirror::mark_all_changes(tx, spec)?;
            if missed > 0 && last.is_some() {
                tracing::warn!(resource = spec.table, rows = missed,
                    "the periodic check found local edits the change tracking had not recorded (were its triggers dropped?); they will be pushed");
            } else if missed > 0 {
                tracing::info!(resource = spec.table, rows = missed,
                    "found local edits the change tracking had not recorded (made before the upgrade that added it, or while its triggers were missing); they will be pushed");
            }
        }
        tracking::set_full_check_at(tx, &crate::store::now_text())
    })
}

/// Journals the changes of one batch of marked rows. Returns the marks to keep: changes
/// that must wait for an unresolved entry about the same row (a create whose outcome is
/// not known yet), so a later pass journals them once it is resolved.
fn journal_changes(
    tx: &rusqlite::Connection,
    spec: &'static ResourceSpec,
    scope: &[(&'static str, String)],
    checked: &mirror::Checked,
) -> Result<Vec<Mark>, StoreError> {
    let changes = &checked.changes;
    let desired = desired_changes(tx, spec, scope, changes)?;
    journal_desired(tx, spec, checked, desired)
}

/// The entries the changed rows call for, each with the reason it cannot be pushed when
/// it cannot (an id edited by hand, moved between rows, a value of the wrong type, out of
/// scope, an operation upstream lacks). Reads only: `plan` asks the same question.
pub(super) fn desired_changes(
    tx: &rusqlite::Connection,
    spec: &'static ResourceSpec,
    scope: &[(&'static str, String)],
    changes: &mirror::LocalChanges,
) -> Result<Vec<Desired>, StoreError> {
    // A row whose `id` was edited (or cleared) by hand looks like a delete of its record
    // plus a row of unknown origin. `id` is upstream's: nothing is pushed for it.
    let mut id_edited: HashMap<i64, String> = HashMap::new();
    // The same refusals by the record the row held: its delete is refused with them.
    let mut record_edited: HashMap<i64, String> = HashMap::new();
    for b in &changes.deletes {
        match mirror::id_edit(tx, spec, b)? {
            // The row now holds another known record whose own row is gone: either this
            // row's id was changed to it, or that row was moved onto this one (an OR
            // REPLACE does either). The mirror cannot tell which; guessing would overwrite
            // or delete the wrong record upstream.
            Some(IdEdit::TakenOver {
                local_id,
                other,
                owner,
            }) => {
                let t = spec.table;
                id_edited.insert(
                    local_id,
                    format!(
                        "{t} local_id {local_id}: now holds id {other}, the record of local_id {owner} (no longer in the mirror), \
                         and record {x}'s row is gone; {moved}, and restsync cannot tell whether this row's id was changed or row {owner} was \
                         moved onto it (an OR REPLACE does either); nothing was pushed for ids {x} and {other}. If this row is \
                         record {x}: UPDATE {t} SET id = {x} WHERE local_id = {local_id} (record {x} then takes this row's \
                         values and record {other} is deleted upstream). If it is record {other} moved here: UPDATE {t} SET \
                         local_id = (SELECT max(local_id) + 1 FROM {t}) WHERE local_id = {local_id} (record {other} then takes \
                         this row's values and record {x} is deleted upstream). Check the row's values first",
                        x = b.id,
                        moved = journal::IDS_MOVED
                    ),
                );
                record_edited.insert(b.id, id_edited[&local_id].clone());
            }
            Some(IdEdit::Edited { local_id, now }) => {
                let now = now.map_or("NULL".to_string(), |i| i.to_string());
                id_edited.insert(
                    local_id,
                    format!(
                        "{} local_id {local_id}: id was changed from {} to {now} locally, but id is upstream's and cannot \
                         be changed; nothing was pushed. Set it back (UPDATE {} SET id = {} WHERE local_id = {local_id}); \
                         to replace the record, delete the row and insert a new one",
                        spec.table, b.id, spec.table, b.id
                    ),
                );
                record_edited.insert(b.id, id_edited[&local_id].clone());
            }
            None => {}
        }
    }
    let mut desired: Vec<Desired> = Vec::new();
    for m in changes
        .creates
        .iter()
        .filter(|m| !id_edited.contains_key(&m.local_id))
    {
        desired.push(Desired {
            op: Op::Create,
            local_id: Some(m.local_id),
            upstream_id: None,
            payload: Json::Object(spec.create_payload(&m.values)).to_string(),
            row_values: journal_values(spec, &m.values),
            rejected: if spec.can_create {
                spec.validate_local(&m.values)
                    .err()
                    .map(|e| format!("{} local_id {}: {e}", spec.table, m.local_id))
            } else {
                Some(format!(
                    "{} local_id {}: a new row, but the upstream cannot create {} records (its definition's operations \
                 leave out create), so nothing was sent. Delete the row",
                    spec.table, m.local_id, spec.table
                ))
            }
                .or_else(|| out_of_scope(spec, scope, m.local_id, &m.values)),
        });
    }
    for (m, b) in &changes.updates {
        // The record's row moved: its id now sits in another row while the row that held it
        // is still there (ids swapped between rows, say). Pushing would overwrite the record
        // with another row's values.
        let moved_from = match b.local_id {
            Some(owner) if owner != m.local_id => mirror::mirror_by_local_id(tx, spec, owner)?.map(|_| owner),
            _ => None,
        };
        let rejected = if let Some(reason) = id_edited.get(&m.local_id) {
            Some(reason.clone())
        } else if let Some(owner) = moved_from {
            Some(format!(
                "{t} local_id {l}: holds id {id}, which belongs to the row local_id {owner}; {moved} (ids are \
                 upstream's), so nothing was pushed for id {id}. Put each row's id back: UPDATE {t} SET id = {id} WHERE \
                 local_id = {owner} (if two rows swapped ids, move one to a temporary id such as -1 first); to change \
                 what a record holds, edit its values instead",
                t = spec.table,
                l = m.local_id,
                id = b.id,
                moved = journal::IDS_MOVED
            ))
        } else if !spec.can_update {
            Some(format!(
                "{} local_id {} (id {}): {} changed locally, but the upstream has no update endpoint, so the change cannot be pushed. \
                 Revert the row, or delete it and insert a new row to replace the record",
                spec.table,
                m.local_id,
                b.id,
                spec.changed_writable(&m.values, &b.values).join(", ")
            ))
        } else {
            spec.validate_local(&m.values)
                .err()
                .map(|e| format!("{} local_id {} (id {}): {e}", spec.table, m.local_id, b.id))
        };
        desired.push(Desired {
            op: Op::Update,
            local_id: Some(m.local_id),
            upstream_id: Some(b.id),
            payload: Json::Object(spec.update_payload(&m.values, &b.values)).to_string(),
            row_values: journal_values(spec, &m.values),
            rejected,
        });
    }
    for b in &changes.deletes {
        desired.push(Desired {
            op: Op::Delete,
            local_id: b.local_id,
            upstream_id: Some(b.id),
            payload: "{}".into(),
            row_values: spec.values_to_json(&b.values),
            rejected: record_edited.get(&b.id).cloned().or_else(|| {
                (!spec.can_delete).then(|| {
                    format!(
                        "{} id {}: the row was deleted, but the upstream cannot delete {} records (its definition's \
                 operations leave out delete), so nothing was sent. To get the row back as upstream \
                 has it, drop this entry (`restsync journal drop` with its number from `restsync status`)",
                        spec.table, b.id, spec.table
                    )
                })
            }),
        });
    }
    Ok(desired)
}

fn journal_desired(
    tx: &rusqlite::Connection,
    spec: &'static ResourceSpec,
    checked: &mirror::Checked,
    desired: Vec<Desired>,
) -> Result<Vec<Mark>, StoreError> {
    // Entries about the rows looked at; entries about other rows are left as they are.
    let looked_at = |key: RowKey| match key {
        RowKey::Local(l) => checked.local_ids.contains(&l),
        RowKey::Upstream(id) => checked.ids.contains(&id),
    };
    let mut active: HashMap<RowKey, Entry> = HashMap::new();
    let about = journal::active_about(
        tx,
        spec.table,
        checked.local_ids.iter().copied(),
        checked.ids.iter().copied(),
    )?;
    for e in about {
        let key = key_of(e.op, e.local_id, e.upstream_id);
        if !looked_at(key) {
            continue;
        }
        if let Some(older) = active.insert(key, e) {
            supersede_if_resolved(tx, &older)?;
        }
    }
    let mut waiting = Vec::new();
    for d in desired {
        let key = key_of(d.op, d.local_id, d.upstream_id);
        if let Some(e) = active.remove(&key) {
            let same = e.op == d.op && e.payload == d.payload && e.row_values == d.row_values;
            if entry_stays(&e, &d) {
                // A change that cannot be pushed stays failed: `journal retry` must not
                // turn it into a request (a PUT to Plusofon, which has no update).
                if let Some(reason) = d.rejected.as_deref().filter(|_| e.stage == Stage::Queued) {
                    journal::advance(
                        tx,
                        e.seq,
                        &Event::Reject {
                            status: None,
                            error: reason,
                        },
                    )?;
                }
                if !same {
                    waiting.push(match (d.op, d.local_id, d.upstream_id) {
                        (Op::Delete, _, Some(id)) => Mark::Upstream(id),
                        (_, Some(l), _) => Mark::Row(l),
                        (_, None, id) => Mark::Upstream(id.unwrap_or_default()),
                    });
                }
                continue;
            }
            supersede_if_resolved(tx, &e)?;
        }
        let seq = journal::insert(
            tx,
            &NewEntry {
                resource: spec.table,
                op: d.op,
                local_id: d.local_id,
                upstream_id: d.upstream_id,
                payload: &d.payload,
                row_values: &d.row_values,
            },
        )?;
        if let Some(reason) = d.rejected {
            tracing::error!(resource = spec.table, local_id = d.local_id, op = %d.op, error = %reason, "change rejected");
            journal::advance(
                tx,
                seq,
                &Event::Reject {
                    status: None,
                    error: &reason,
                },
            )?;
        }
    }
    // Rows looked at that no longer differ from their base (reverted, or already applied).
    for e in active.into_values() {
        supersede_if_resolved(tx, &e)?;
    }
    Ok(waiting)
}

/// The row values an entry was computed from, read back from the journal.
pub(super) fn sent_values(spec: &ResourceSpec, entry: &Entry) -> Result<Vec<Value>, StoreError> {
    spec.values_from_json(&entry.row_values)
        .map_err(|message| StoreError::Corrupt {
            seq: entry.seq,
            message,
        })
}

#[cfg(test)]
mod tests;
