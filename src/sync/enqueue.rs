//! Turning local edits into journal entries: one active entry per changed row, written
//! before any request is sent; entries whose row changed again are superseded.

use crate::resources::ResourceSpec;
use crate::store::journal::{self, Entry, NewEntry, Op, State};
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

pub(super) struct Desired {
    op: Op,
    local_id: Option<i64>,
    upstream_id: Option<i64>,
    payload: String,
    row_values: String,
    /// Set when the change cannot be pushed as it stands.
    rejected: Option<String>,
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

/// Brings the journal in line with the mirror: one active entry per changed row, stale
/// ones superseded. Returns the entries due now, the local delete count and the base count.
pub(super) fn enqueue(
    store: &mut Store,
    spec: &'static ResourceSpec,
) -> Result<(Vec<Entry>, usize, i64), StoreError> {
    // Nothing changed and nothing waiting: read only, so an idle pass writes nothing
    // (the daemon's change watcher would otherwise wake itself up).
    let idle = mirror::local_changes(store.conn(), spec)?.is_empty()
        && journal::active(store.conn(), spec.table)?.is_empty();
    if idle {
        return Ok((Vec::new(), 0, 0));
    }
    store.write(|tx| {
        let changes = mirror::local_changes(tx, spec)?;
        let base_count = mirror::count_base(tx, spec)?;
        let delete_count = changes.deletes.len();
        let mut desired: Vec<Desired> = Vec::new();
        for m in &changes.creates {
            desired.push(Desired {
                op: Op::Create,
                local_id: Some(m.local_id),
                upstream_id: None,
                payload: Json::Object(spec.create_payload(&m.values)).to_string(),
                row_values: journal_values(spec, &m.values),
                rejected: spec
                    .validate_local(&m.values)
                    .err()
                    .map(|e| format!("{} local_id {}: {e}", spec.table, m.local_id)),
            });
        }
        for (m, b) in &changes.updates {
            let rejected = if !spec.can_update {
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
                rejected: None,
            });
        }

        let mut active: HashMap<RowKey, Entry> = HashMap::new();
        for e in journal::active(tx, spec.table)? {
            let key = key_of(e.op, e.local_id, e.upstream_id);
            if let Some(older) = active.insert(key, e) {
                journal::supersede(tx, older.seq)?;
            }
        }
        for d in desired {
            let key = key_of(d.op, d.local_id, d.upstream_id);
            if let Some(e) = active.remove(&key) {
                // Unresolved outcome: upstream may hold the effect already; keep the entry
                // until it is reconciled, and push any newer edit after that.
                if e.outcome.is_some() || (e.op == d.op && e.payload == d.payload && e.row_values == d.row_values) {
                    // A change that cannot be pushed stays failed: `journal retry` must not
                    // turn it into a request (a PUT to Plusofon, which has no update).
                    if let Some(reason) = d.rejected.as_deref().filter(|_| e.outcome.is_none()) {
                        if e.state != State::Failed {
                            journal::mark_failed(tx, e.seq, None, reason)?;
                        }
                    }
                    continue;
                }
                journal::supersede(tx, e.seq)?;
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
                journal::mark_failed(tx, seq, None, &reason)?;
            }
        }
        // Rows that no longer differ from their base (reverted, or already applied).
        for e in active.into_values() {
            if e.outcome.is_none() {
                journal::supersede(tx, e.seq)?;
            }
        }
        let now = crate::store::now_text();
        let due = journal::active(tx, spec.table)?
            .into_iter()
            .filter(|e| e.state == State::Pending && e.next_attempt_at.as_deref().is_none_or(|t| t <= now.as_str()))
            .collect();
        Ok((due, delete_count, base_count))
    })
}

/// The row values an entry was computed from, read back from the journal.
pub(super) fn sent_values(spec: &ResourceSpec, entry: &Entry) -> Result<Vec<Value>, StoreError> {
    spec.values_from_json(&entry.row_values)
        .map_err(|message| StoreError::Corrupt {
            seq: entry.seq,
            message,
        })
}
