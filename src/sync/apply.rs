//! Applying one page to the mirror and its base snapshots: each record merged with its base
//! and local row, in one transaction per page; a record of an unresolved create adopted.

use super::merge::{self, ConflictNote, Merged, MirrorAction};
use super::report::{MergedRow, Plan};
use super::writeback::adopt_in;
use crate::config::ConflictPolicy;
use crate::resources::ResourceSpec;
use crate::store::mirror::{BaseRow, MirrorRow};
use crate::store::{content_hash, journal, mirror, sync_state, Store, StoreError};
use rusqlite::types::Value;
use rusqlite::Connection;
use serde::Deserialize;
use serde_json::value::RawValue;

#[derive(Deserialize)]
struct IdOnly {
    id: serde_json::Value,
}

fn record_id(raw: &RawValue) -> Option<i64> {
    let v: IdOnly = serde_json::from_str(raw.get()).ok()?;
    match v.id {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[derive(Default)]
pub(super) struct PageResult {
    pub repeats: u64,
    pub no_id: u64,
    pub unreadable: Vec<String>,
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub conflicts: u64,
    pub plan: Plan,
}

/// Merges pages into the mirror in one transaction (each page atomic with its base
/// snapshots, as a transaction per page would be, with fewer commits when the walk fetches
/// faster than it writes).
pub(super) fn apply_pages(
    store: &mut Store,
    spec: &'static ResourceSpec,
    policy: ConflictPolicy,
    pages: Vec<(u64, Vec<Box<RawValue>>)>,
    dry: bool,
) -> Result<Vec<PageResult>, StoreError> {
    let run = |conn: &Connection| {
        pages
            .into_iter()
            .map(|(page_no, records)| apply_page(conn, spec, policy, page_no, records, dry))
            .collect::<Result<Vec<_>, StoreError>>()
    };
    if dry {
        run(store.conn())
    } else {
        store.write_relaxed(|tx| run(tx))
    }
}

/// Merges one page into the mirror and its base snapshots.
fn apply_page(
    conn: &Connection,
    spec: &'static ResourceSpec,
    policy: ConflictPolicy,
    page_no: u64,
    records: Vec<Box<RawValue>>,
    dry: bool,
) -> Result<PageResult, StoreError> {
    let mut result = PageResult::default();
    let mut parsed = Vec::with_capacity(records.len());
    for raw in &records {
        match record_id(raw) {
            Some(id) => parsed.push((id, raw)),
            None => {
                result.no_id += 1;
                tracing::warn!(resource = spec.table, page = page_no, record = %crate::resources::truncate(raw.get(), 120),
                    "upstream record has no usable id; skipped");
            }
        }
    }
    let ids: Vec<i64> = parsed.iter().map(|(id, _)| *id).collect();
    let body = |conn: &Connection, result: &mut PageResult| -> Result<(), StoreError> {
        let hashes = mirror::base_hashes(conn, spec, &ids)?;
        // Creates whose effect upstream is not known yet: a new record that matches one is
        // the record it made, adopted here instead of being copied in as someone else's.
        let mut unresolved: Vec<(journal::Entry, Vec<Value>)> = journal::active(conn, spec.table)?
            .into_iter()
            .filter(|e| e.op == journal::Op::Create && e.stage.unresolved())
            .filter_map(|e| {
                let sent = spec.values_from_json(&e.row_values).ok()?;
                Some((e, sent))
            })
            .collect();
        result.repeats = mirror::mark_seen(conn, spec, &ids)? as u64;
        // Whether a record has a base snapshot or a mirror row is known per page, so a new
        // record costs no lookups.
        let changed: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|id| !hashes.contains_key(id))
            .collect();
        let in_mirror = if changed.is_empty() {
            Default::default()
        } else {
            mirror::mirror_ids_present(conn, spec, &changed)?
        };
        let synced_at = crate::store::now_text();
        for (id, raw) in &parsed {
            let hash = content_hash(raw.get().as_bytes());
            if hashes.get(id) == Some(&hash) {
                result.unchanged += 1;
                continue;
            }
            let record = serde_json::from_str::<serde_json::Value>(raw.get())
                .map_err(|e| e.to_string())
                .and_then(|json| spec.parse(&json, None).map_err(|e| e.to_string()));
            let record = match record {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(resource = spec.table, id, page = page_no, error = %e,
                        "upstream record unreadable; skipped (a data problem upstream)");
                    result.unreadable.push(format!("id {id}: {e}"));
                    continue;
                }
            };
            let base = match hashes.contains_key(id) {
                true => mirror::base_by_id(conn, spec, *id)?,
                false => None,
            };
            let local = match hashes.contains_key(id) || in_mirror.contains(id) {
                true => mirror::mirror_by_id(conn, spec, *id)?,
                false => None,
            };
            let base = match base {
                Some(b) => Some(with_own_pushes(conn, spec, b, &record.values, local.as_ref())?),
                None => None,
            };
            if mirror::held_by_id_edit(conn, spec, base.as_ref(), local.as_ref())? {
                tracing::warn!(resource = spec.table, id,
                    "the record's row has an id edited by hand; nothing is merged into it until the id is put back");
                result.unchanged += 1;
                continue;
            }
            if base.is_none() && local.is_none() {
                let made_by = unresolved
                    .iter()
                    .position(|(_, sent)| spec.changed_writable(&record.values, sent).is_empty());
                if let Some(pos) = made_by {
                    let (entry, sent) = unresolved.swap_remove(pos);
                    if dry {
                        result.plan.notes.push(format!(
                            "id {id}: the record journal {}'s create made (local_id {}); adopted as that row, not a new one",
                            entry.seq,
                            entry.local_id.unwrap_or_default()
                        ));
                        continue;
                    }
                    tracing::info!(
                        resource = spec.table,
                        seq = entry.seq,
                        id,
                        "the walk found the record an unresolved create made; adopted it"
                    );
                    adopt_in(conn, spec, &entry, &sent, &record, raw.get())?;
                    continue;
                }
            }
            let merged = merge::merge_present(spec, policy, &record, base.as_ref(), local.as_ref());
            result.conflicts += merged.conflicts.len() as u64;
            if dry {
                describe(
                    spec,
                    *id,
                    &merged,
                    local.as_ref().map(|m| m.values.as_slice()),
                    base.is_none() && local.is_none(),
                    policy,
                    &mut result.plan,
                );
                if base.is_some() {
                    let after = match &merged.mirror {
                        MirrorAction::Insert(values) | MirrorAction::Update { values, .. } => {
                            Some(values.clone())
                        }
                        MirrorAction::Delete { .. } => None,
                        MirrorAction::None | MirrorAction::Unlink { .. } => {
                            local.as_ref().map(|m| m.values.clone())
                        }
                    };
                    result.plan.merged_rows.insert(
                        *id,
                        MergedRow {
                            after,
                            remote: record.values.clone(),
                        },
                    );
                }
                continue;
            }
            let local_id =
                apply_mirror_action(conn, spec, Some(*id), &merged, local.as_ref().map(|m| m.local_id))?;
            match merged.mirror {
                MirrorAction::Insert(_) => result.inserted += 1,
                MirrorAction::Update { .. } => result.updated += 1,
                _ => {}
            }
            record_conflicts(conn, spec, local_id, Some(*id), policy, &merged.conflicts)?;
            mirror::upsert_base_at(
                conn,
                spec,
                *id,
                local_id,
                &record.values,
                raw.get(),
                hash,
                &synced_at,
            )?;
            // A local edit the merge kept (or a local delete) is still to be pushed, now
            // against the new base: the push pass must look at the row again.
            let had_local_change = match (&local, &base) {
                (None, None) => false,
                (Some(m), Some(b)) => !spec.changed_writable(&m.values, &b.values).is_empty(),
                _ => true,
            };
            if had_local_change {
                mirror::mark_if_changed(conn, spec, local_id, Some(*id))?;
            }
        }
        Ok(())
    };
    body(conn, &mut result)?;
    Ok(result)
}

/// The base snapshot to merge against. Where upstream differs from the base only because an
/// update of restsync's own reached it without the answer coming back (lost, or the run was
/// killed), the field counts as agreed: it takes upstream's value. Otherwise the merge would
/// take restsync's own push for a remote change and, when the row was edited or deleted again
/// meanwhile, `remote-wins` would throw the newer local change away.
///
/// Own updates are the journal's update entries for the record that were sent (attempts > 0),
/// are not done (a done one wrote the base back) and were last touched after the base was
/// written (an older one's effect is in the base already).
pub(super) fn with_own_pushes(
    conn: &Connection,
    spec: &ResourceSpec,
    mut base: BaseRow,
    remote: &[Value],
    local: Option<&MirrorRow>,
) -> Result<BaseRow, StoreError> {
    let differs: Vec<usize> = spec
        .columns
        .iter()
        .enumerate()
        .filter(|(i, c)| c.writable && base.values[*i] != remote[*i])
        .map(|(i, _)| i)
        .collect();
    // Only a local change can make a remote one a conflict.
    let local_changed = local.is_none_or(|m| !spec.changed_writable(&m.values, &base.values).is_empty());
    if differs.is_empty() || !local_changed {
        return Ok(base);
    }
    let sent = crate::store::journal::unsettled_update_values(conn, spec.table, spec.base_table, base.id)?;
    for text in sent {
        let Ok(values) = spec.values_from_json(&text) else {
            continue;
        };
        for &i in &differs {
            if values[i] == remote[i] {
                base.values[i] = remote[i].clone();
            }
        }
    }
    Ok(base)
}

/// What a dry run's merge would do to the mirror, with the values that would change.
fn describe(
    spec: &ResourceSpec,
    id: i64,
    merged: &Merged,
    local: Option<&[Value]>,
    new: bool,
    policy: ConflictPolicy,
    plan: &mut Plan,
) {
    let shown = |values: &[Value]| {
        let text = spec
            .columns
            .iter()
            .zip(values)
            .filter(|(_, v)| **v != Value::Null)
            .map(|(c, v)| format!("{}={}", c.name, crate::resources::value_to_json(v)))
            .collect::<Vec<_>>()
            .join(", ");
        crate::resources::truncate(&text, 160)
    };
    if new {
        plan.new_records += 1;
    }
    match &merged.mirror {
        MirrorAction::Insert(values) if new => plan
            .pull_insert
            .push(format!("id {id}: new upstream: {}", shown(values))),
        MirrorAction::Insert(values) => plan.pull_insert.push(format!(
            "id {id}: restored (deleted locally, changed upstream): {}",
            shown(values)
        )),
        MirrorAction::Update { local_id, values } => {
            let changes = local
                .map(|old| {
                    spec.columns
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| old.get(*i) != values.get(*i))
                        .map(|(i, c)| {
                            format!(
                                "{}: {} -> {}",
                                c.name,
                                old.get(i)
                                    .map(crate::resources::value_to_json)
                                    .unwrap_or_default(),
                                crate::resources::value_to_json(&values[i])
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            plan.pull_update
                .push(format!("id {id} (local_id {local_id}): {changes}"))
        }
        _ => {}
    }
    for c in &merged.conflicts {
        plan.conflicts.push(
            format!(
                "{} id {id}: {} {} local={} remote={}",
                spec.table,
                c.kind,
                c.field.unwrap_or(""),
                c.local.as_deref().unwrap_or("-"),
                c.remote.as_deref().unwrap_or("-"),
            ) + &resolution_text(c.kind, policy),
        );
    }
}

/// How the policy settles a conflict, as `plan` says it.
pub(super) fn resolution_text(kind: &str, policy: ConflictPolicy) -> String {
    let how = match (kind, policy) {
        ("deleted_upstream", ConflictPolicy::RemoteWins) => {
            "remote-wins: the row is removed (its values kept in conflicts)"
        }
        ("deleted_upstream", ConflictPolicy::LocalWins) => "local-wins: the row is created again upstream",
        ("deleted_locally", ConflictPolicy::RemoteWins) => {
            "remote-wins: the row comes back as upstream has it"
        }
        ("deleted_locally", ConflictPolicy::LocalWins) => "local-wins: the record is deleted upstream",
        (_, ConflictPolicy::RemoteWins) => {
            "remote-wins: the mirror takes upstream's value (yours kept in conflicts)"
        }
        (_, ConflictPolicy::LocalWins) => "local-wins: your value is pushed (upstream's kept in conflicts)",
    };
    format!(" -> {how}")
}

/// Applies a merge decision to the mirror; returns the local row id it now lives under.
pub(super) fn apply_mirror_action(
    conn: &Connection,
    spec: &ResourceSpec,
    id: Option<i64>,
    merged: &Merged,
    existing: Option<i64>,
) -> Result<Option<i64>, StoreError> {
    Ok(match &merged.mirror {
        MirrorAction::None => existing,
        MirrorAction::Insert(values) => Some(mirror::insert_mirror(conn, spec, id, values)?),
        MirrorAction::Update { local_id, values } => {
            mirror::update_mirror(conn, spec, *local_id, values)?;
            Some(*local_id)
        }
        MirrorAction::Delete { local_id } => {
            mirror::delete_mirror(conn, spec, *local_id)?;
            None
        }
        MirrorAction::Unlink { local_id } => {
            mirror::set_mirror_id(conn, spec, *local_id, None)?;
            Some(*local_id)
        }
    })
}

pub(super) fn record_conflicts(
    conn: &Connection,
    spec: &ResourceSpec,
    local_id: Option<i64>,
    id: Option<i64>,
    policy: ConflictPolicy,
    notes: &[ConflictNote],
) -> Result<(), StoreError> {
    for c in notes {
        tracing::warn!(
            resource = spec.table,
            local_id,
            id,
            kind = c.kind,
            field = c.field,
            local = c.local.as_deref(),
            remote = c.remote.as_deref(),
            resolution = policy.as_str(),
            "conflict"
        );
        sync_state::record_conflict(
            conn,
            &sync_state::Conflict {
                resource: spec.table.to_string(),
                local_id,
                upstream_id: id,
                kind: c.kind.to_string(),
                field: c.field.map(str::to_string),
                base_value: c.base.clone(),
                local_value: c.local.clone(),
                remote_value: c.remote.clone(),
                resolution: policy.as_str().to_string(),
            },
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
