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

pub(super) fn write_back_update(
    store: &mut Store,
    spec: &'static ResourceSpec,
    seq: i64,
    record: &Record,
    sent: &[Value],
    raw: &str,
) -> Result<(), StoreError> {
    store.write(|tx| {
        let current = mirror::mirror_by_id(tx, spec, record.id)?;
        let local_id = current.as_ref().map(|c| c.local_id);
        if let Some(cur) = &current {
            let values = write_back_values(spec, &cur.values, sent, &record.values);
            if values != cur.values {
                mirror::update_mirror(tx, spec, cur.local_id, &values)?;
            }
        }
        settle(tx, spec, seq, record, local_id, raw)
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
