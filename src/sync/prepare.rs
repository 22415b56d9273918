//! Fetch before write: an update or delete of a record that can be read back is merged,
//! just before it is sent, against the record as upstream holds it at that moment, with
//! the same three-way field merge, conflict policy and `conflicts` rows as a walk. The
//! request then carries upstream's current value for every required-but-unchanged field
//! (Firstline's PUT wants `contact_id`), so a push never undoes a change made upstream
//! since the last walk, and never has to wait for a complete walk.

use super::apply::{apply_mirror_action, record_conflicts, with_own_pushes};
use super::enqueue::journal_values;
use super::merge::{self, MirrorAction};
use super::{ResourceCtx, SyncError};
use crate::config::ConflictPolicy;
use crate::resources::{Record, ResourceSpec};
use crate::store::journal::{self, Entry, Event, Op, Stage};
use crate::store::{content_hash, mirror, Store, StoreError};
use crate::upstream::UpstreamError;
use serde_json::Value as Json;

/// What is left to do for an entry after merging it with upstream's current record.
#[derive(Debug)]
pub(super) enum Prepared {
    /// Send it (its payload now computed against upstream's current record).
    Send(Box<Entry>),
    /// Nothing to send: upstream already holds the change, the record is gone, the row
    /// changed meanwhile, or the conflict policy decided for upstream's version.
    Settled(Settled),
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Settled {
    /// Upstream already had it (an update that matches, a delete of a record already gone).
    AlreadyUpstream,
    /// The row changed since the entry was made: superseded; the next pass recomputes it.
    Stale,
    /// The merge kept upstream's version (remote-wins, or the record was deleted upstream).
    MergedAway,
}

/// Fetches the record an update or delete is about and merges the entry with it.
pub(super) async fn fetch_before_write(ctx: &ResourceCtx, entry: Entry) -> Result<Prepared, SyncError> {
    let spec = ctx.api.spec;
    let sync = &ctx.settings.sync;
    let id = entry.upstream_id.ok_or(StoreError::Corrupt {
        seq: entry.seq,
        message: format!("{} without upstream id", entry.op),
    })?;
    let what = format!("{} get {id} before {}", spec.table, entry.op);
    let fetched = ctx.retry.run(&what, || ctx.api.get(id)).await?;
    let policy = sync.on_conflict;
    let outcome = ctx
        .db
        .call(move |s| merge_with_upstream(s, spec, policy, entry, fetched))
        .await?
        .map_err(|message| UpstreamError::Malformed {
            upstream: spec.upstream.as_str(),
            message: format!("{} record {id}: {message}", spec.table),
        })?;
    if let Prepared::Settled(how) = &outcome {
        tracing::info!(resource = spec.table, id, settled = ?how, "nothing to send after merging with upstream's current record");
    }
    Ok(outcome)
}

/// The merge, the mirror and base updates, the conflicts and the entry's new payload, in
/// one transaction: the row cannot change between the merge and the journal write. A
/// field the single-record answer leaves out (Firstline's address GET has no `contact_id`)
/// is taken as unchanged since the base snapshot. `Err(message)` inside: the record could
/// not be read.
pub(super) fn merge_with_upstream(
    store: &mut Store,
    spec: &'static ResourceSpec,
    policy: ConflictPolicy,
    entry: Entry,
    fetched: Option<Json>,
) -> Result<Result<Prepared, String>, StoreError> {
    store.write(|tx| merge_in(tx, spec, policy, entry, fetched))
}

fn merge_in(
    tx: &rusqlite::Connection,
    spec: &'static ResourceSpec,
    policy: ConflictPolicy,
    entry: Entry,
    fetched: Option<Json>,
) -> Result<Result<Prepared, String>, StoreError> {
    let seq = entry.seq;
    let Some(id) = entry.upstream_id else {
        return Err(StoreError::Corrupt {
            seq,
            message: "no upstream id".into(),
        });
    };
    let current = journal::get(tx, seq)?.map(|e| e.stage);
    if current != Some(Stage::Queued) {
        return Ok(Ok(Prepared::Settled(Settled::Stale)));
    }
    let local = mirror::mirror_by_id(tx, spec, id)?;
    let base = mirror::base_by_id(tx, spec, id)?;
    let still_wanted = match (entry.op, &local) {
        (Op::Update, Some(m)) => journal_values(spec, &m.values) == entry.row_values,
        (Op::Delete, None) => true,
        _ => false,
    };
    if !still_wanted {
        journal::advance(tx, seq, &Event::Supersede)?;
        return Ok(Ok(Prepared::Settled(Settled::Stale)));
    }
    let local_id = local.as_ref().map(|m| m.local_id);
    let remote: Option<(Record, Json)> = match fetched {
        None => None,
        Some(json) => {
            let known = base
                .as_ref()
                .map(|b| b.values.as_slice())
                .or(local.as_ref().map(|m| m.values.as_slice()));
            match spec.parse(&json, known) {
                Ok(record) => Some((record, json)),
                Err(e) => return Ok(Err(e.to_string())),
            }
        }
    };
    match (entry.op, remote) {
        (Op::Delete, None) => {
            mirror::delete_base(tx, spec, id)?;
            journal::advance(
                tx,
                seq,
                &Event::AlreadyUpstream {
                    upstream_id: Some(id),
                },
            )?;
            Ok(Ok(Prepared::Settled(Settled::AlreadyUpstream)))
        }
        (_, None) => {
            // Deleted upstream, edited here: delete-vs-edit, as a walk decides it.
            if let Some(base) = &base {
                let merged = merge::merge_absent(spec, policy, base, local.as_ref());
                let kept = apply_mirror_action(tx, spec, None, &merged, local_id)?;
                record_conflicts(tx, spec, kept.or(local_id), Some(id), policy, &merged.conflicts)?;
            }
            mirror::delete_base(tx, spec, id)?;
            mirror::mark_if_changed(tx, spec, local_id, None)?;
            journal::advance(tx, seq, &Event::Supersede)?;
            Ok(Ok(Prepared::Settled(Settled::MergedAway)))
        }
        (op, Some((record, json))) => {
            // restsync's own earlier push whose answer was lost is not a remote change.
            let base = match base {
                Some(b) => Some(with_own_pushes(tx, spec, b, &record.values, local.as_ref())?),
                None => None,
            };
            let merged = merge::merge_present(spec, policy, &record, base.as_ref(), local.as_ref());
            let kept = apply_mirror_action(tx, spec, Some(id), &merged, local_id)?;
            record_conflicts(tx, spec, kept, Some(id), policy, &merged.conflicts)?;
            let raw = json.to_string();
            mirror::upsert_base(
                tx,
                spec,
                id,
                kept,
                &record.values,
                &raw,
                content_hash(raw.as_bytes()),
            )?;
            match (op, &merged.mirror) {
                // remote-wins restored the row a person deleted: no delete goes out.
                (Op::Delete, MirrorAction::Insert(_)) => {
                    journal::advance(tx, seq, &Event::Supersede)?;
                    Ok(Ok(Prepared::Settled(Settled::MergedAway)))
                }
                (Op::Delete, _) => Ok(Ok(Prepared::Send(Box::new(entry)))),
                _ => {
                    let values = match &merged.mirror {
                        MirrorAction::Update { values, .. } => values.clone(),
                        _ => local.map(|m| m.values).unwrap_or_default(),
                    };
                    if spec.changed_writable(&values, &record.values).is_empty() {
                        let how = if merged.conflicts.is_empty() {
                            // Upstream holds exactly this (an earlier attempt whose answer
                            // was lost, say): the change is done.
                            journal::advance(
                                tx,
                                seq,
                                &Event::AlreadyUpstream {
                                    upstream_id: Some(id),
                                },
                            )?;
                            Settled::AlreadyUpstream
                        } else {
                            journal::advance(tx, seq, &Event::Supersede)?;
                            Settled::MergedAway
                        };
                        return Ok(Ok(Prepared::Settled(how)));
                    }
                    let payload = Json::Object(spec.update_payload(&values, &record.values)).to_string();
                    let row_values = journal_values(spec, &values);
                    journal::advance(
                        tx,
                        seq,
                        &Event::Rebase {
                            payload: &payload,
                            row_values: &row_values,
                        },
                    )?;
                    Ok(Ok(Prepared::Send(Box::new(Entry {
                        payload,
                        row_values,
                        ..entry
                    }))))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
