//! Writing push results back: ids and read-only columns from upstream, without
//! overwriting what the user changed while the request was in flight.

use super::enqueue::sent_values;
use super::SyncError;
use crate::resources::{Record, ResourceSpec};
use crate::store::journal::{self, Entry};
use crate::store::{content_hash, mirror, Store, StoreError};
use crate::upstream::UpstreamError;
use rusqlite::types::Value;
use rusqlite::Connection;
use serde_json::Value as Json;

pub(super) fn parse_answer(spec: &ResourceSpec, json: &Json, sent: &[Value]) -> Result<Record, SyncError> {
    spec.parse(json, Some(sent)).map_err(|e| {
        SyncError::Upstream(UpstreamError::Malformed {
            upstream: spec.upstream.as_str(),
            message: format!("{} answer: {e}", spec.table),
        })
    })
}

/// New mirror values after a push: a column the user changed since the entry was made
/// keeps the user's value (the next cycle pushes it); the others take upstream's.
pub(super) fn write_back_values(
    spec: &ResourceSpec,
    current: &[Value],
    sent: &[Value],
    upstream: &[Value],
) -> Vec<Value> {
    spec.columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if !c.writable || current[i] == sent[i] {
                upstream[i].clone()
            } else {
                current[i].clone()
            }
        })
        .collect()
}

/// Whether two values are the same for a column, across the JSON forms upstreams answer
/// with (`5` for `"5"` in a text column, `80` for `80.0` in a real one).
fn same_value(a: &Value, b: &Value) -> bool {
    let number = |v: &Value| match v {
        Value::Integer(i) => Some(*i as f64),
        Value::Real(r) => Some(*r),
        Value::Text(t) => t.trim().parse::<f64>().ok(),
        _ => None,
    };
    a == b || matches!((number(a), number(b)), (Some(x), Some(y)) if x == y)
}

/// Writable columns an update sent whose value upstream's answer does not hold: upstream
/// ignored them (a read-only field there, or a payload key it does not know).
pub(super) fn not_applied(
    spec: &ResourceSpec,
    payload: &serde_json::Map<String, Json>,
    sent: &[Value],
    answer: &[Value],
) -> Vec<String> {
    spec.columns
        .iter()
        .enumerate()
        .filter(|(i, c)| {
            c.writable && payload.contains_key(c.payload_key) && !same_value(&sent[*i], &answer[*i])
        })
        .map(|(i, c)| {
            format!(
                "{}: sent {}, upstream holds {}",
                c.name,
                crate::resources::value_to_json(&sent[i]),
                crate::resources::value_to_json(&answer[i])
            )
        })
        .collect()
}

/// Writes an update's answer back. When upstream did not take every value sent, the row
/// keeps what the user wrote, the base takes upstream's answer, and the entry fails naming
/// the fields, so the edit is neither lost nor sent again and again. Returns whether the
/// update was applied as sent.
pub(super) fn write_back_update(
    store: &mut Store,
    spec: &'static ResourceSpec,
    seq: i64,
    record: &Record,
    sent: &[Value],
    payload: &serde_json::Map<String, Json>,
    raw: &str,
) -> Result<bool, StoreError> {
    let ignored = not_applied(spec, payload, sent, &record.values);
    store.write(|tx| {
        let current = mirror::mirror_by_id(tx, spec, record.id)?;
        // No row holds the id now (someone edited it while the update was in flight): the
        // base keeps pointing at the record's row, so the edit reads as an id edit (pushed
        // nothing) and not as a delete of the record.
        let local_id = match &current {
            Some(c) => Some(c.local_id),
            None => mirror::base_by_id(tx, spec, record.id)?.and_then(|b| b.local_id),
        };
        if !ignored.is_empty() {
            let hash = content_hash(raw.as_bytes());
            mirror::upsert_base(tx, spec, record.id, local_id, &record.values, raw, hash)?;
            let error = format!(
                "{} id {}: upstream answered the update without the values sent ({}); the row keeps yours. The field \
                 may be read-only upstream, or its payload_key wrong: fix the row or the definition, then \
                 `restsync journal retry {seq}`",
                spec.table,
                record.id,
                ignored.join("; ")
            );
            tracing::error!(resource = spec.table, seq, id = record.id, error = %error, "update not applied by upstream");
            journal::advance(tx, seq, &journal::Event::Reject { status: None, error: &error })?;
            return Ok(false);
        }
        if let Some(cur) = &current {
            let values = write_back_values(spec, &cur.values, sent, &record.values);
            if values != cur.values {
                mirror::update_mirror(tx, spec, cur.local_id, &values)?;
            }
        }
        settle(tx, spec, seq, record, local_id, raw)?;
        Ok(true)
    })
}

/// Upstream's answer becomes the base snapshot, and the entry is done, in one transaction.
fn settle(
    tx: &Connection,
    spec: &ResourceSpec,
    seq: i64,
    record: &Record,
    local_id: Option<i64>,
    raw: &str,
) -> Result<(), StoreError> {
    let hash = content_hash(raw.as_bytes());
    mirror::upsert_base(tx, spec, record.id, local_id, &record.values, raw, hash)?;
    journal::advance(
        tx,
        seq,
        &journal::Event::Succeed {
            upstream_id: Some(record.id),
        },
    )?;
    Ok(())
}

/// Links a created record to the local row the entry came from.
pub(super) fn adopt(
    store: &mut Store,
    spec: &'static ResourceSpec,
    entry: &Entry,
    record: &Record,
    raw: &str,
) -> Result<(), StoreError> {
    let sent = sent_values(spec, entry)?;
    store.write(|tx| adopt_in(tx, spec, entry, &sent, record, raw))
}

/// Links the record a create answered with. A value the answer does not hold as sent
/// (upstream ignored the field) stays in the row as the user wrote it instead of being
/// replaced: the row then differs from the base, so the next push sends it as an update,
/// and an update upstream does not apply fails naming the field.
pub(super) fn adopt_answer(
    store: &mut Store,
    spec: &'static ResourceSpec,
    entry: &Entry,
    record: &Record,
    raw: &str,
) -> Result<(), StoreError> {
    let sent = sent_values(spec, entry)?;
    let mut shown = record.clone();
    let ignored: Vec<&str> = spec
        .columns
        .iter()
        .enumerate()
        .filter(|(i, c)| c.writable && !same_value(&sent[*i], &record.values[*i]))
        .map(|(i, c)| {
            shown.values[i] = sent[i].clone();
            c.name
        })
        .collect();
    if !ignored.is_empty() {
        tracing::warn!(resource = spec.table, id = record.id, columns = ?ignored,
            "the create's answer does not hold the values sent for these columns; the row keeps yours and the next push sends them as an update");
    }
    store.write(|tx| {
        adopt_in(tx, spec, entry, &sent, &shown, raw)?;
        if !ignored.is_empty() {
            // The base is upstream's answer, not what the row shows.
            let hash = content_hash(raw.as_bytes());
            let local_id = mirror::mirror_by_id(tx, spec, record.id)?.map(|m| m.local_id);
            mirror::upsert_base(tx, spec, record.id, local_id, &record.values, raw, hash)?;
            mirror::mark_if_changed(tx, spec, local_id, Some(record.id))?;
        }
        Ok(())
    })
}

pub(super) fn adopt_in(
    tx: &Connection,
    spec: &'static ResourceSpec,
    entry: &Entry,
    sent: &[Value],
    record: &Record,
    raw: &str,
) -> Result<(), StoreError> {
    let current = match entry.local_id {
        Some(l) => mirror::mirror_by_local_id(tx, spec, l)?,
        None => None,
    };
    // A walk may have copied the record in as a new row before it was identified.
    if let Some(copy) = mirror::mirror_by_id(tx, spec, record.id)? {
        if Some(copy.local_id) != entry.local_id {
            mirror::delete_mirror(tx, spec, copy.local_id)?;
        }
    }
    let local_id = match current {
        Some(cur) if cur.id.is_none() || cur.id == Some(record.id) => {
            let values = write_back_values(spec, &cur.values, sent, &record.values);
            mirror::set_mirror_id(tx, spec, cur.local_id, Some(record.id))?;
            mirror::update_mirror(tx, spec, cur.local_id, &values)?;
            Some(cur.local_id)
        }
        // The row was deleted (or re-linked) meanwhile: keep the base so the next cycle
        // pushes the delete.
        _ => None,
    };
    settle(tx, spec, entry.seq, record, local_id, raw)?;
    // A row deleted or edited while the create was unresolved: that change is pushed next.
    mirror::mark_if_changed(tx, spec, local_id, Some(record.id))?;
    tracing::info!(
        resource = spec.table,
        local_id,
        id = record.id,
        "created upstream"
    );
    Ok(())
}

#[cfg(test)]
mod tests;
