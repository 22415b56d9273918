//! Finding the record a create made when its answer never came: by natural key, in the
//! listing, before anything is sent again (neither upstream has idempotency keys).

use super::enqueue::sent_values;
use super::writeback::adopt;
use super::{ResourceCtx, SyncError};
use crate::resources::{describe_value, ResourceSpec};
use crate::store::journal::{self, Entry};
use crate::store::{mirror, StoreError};
use rusqlite::types::Value;
use rusqlite::Connection;

/// Looks upstream for the record a create made, by its natural key, and adopts it.
/// Returns whether it was found.
pub(super) async fn reconcile_create(ctx: &ResourceCtx, entry: &Entry) -> Result<bool, SyncError> {
    let spec = ctx.api.spec;
    let sync = &ctx.settings.sync;
    let sent = sent_values(spec, entry)?;
    let filters: Vec<(&str, String)> = spec
        .lookup_filters
        .iter()
        .filter_map(|name| {
            let i = spec.column_index(name)?;
            match &sent[i] {
                Value::Null => None,
                v @ Value::Text(_) => Some((*name, crate::resources::value_to_json(v).as_str()?.to_string())),
                v => Some((*name, describe_value(v))),
            }
        })
        .collect();
    let what = format!("{} lookup for local_id {:?}", spec.table, entry.local_id);
    let candidates = ctx
        .retry
        .run(&what, || ctx.api.search_all(&filters, sync.per_page))
        .await?;
    if candidates.is_empty() {
        // "Not found" lets the caller send the create again, so the empty answer must be
        // trustworthy: during an outage that lists nothing at all (seen upstream: valid
        // envelopes, no records, total 0) a create that did take effect would be duplicated.
        ensure_listing_not_empty(ctx).await?;
    }
    let mut matches = Vec::new();
    for json in candidates {
        let Ok(record) = spec.parse(&json, None) else {
            continue;
        };
        if spec.changed_writable(&record.values, &sent).is_empty() {
            matches.push((record, json));
        }
    }
    // Newest first: of identical records, the one just made is the likeliest.
    matches.sort_by_key(|(r, _)| std::cmp::Reverse(r.id));
    for (record, json) in matches {
        let id = record.id;
        let (entry_c, raw) = (entry.clone(), json.to_string());
        // Checked and adopted in one store call: creates run side by side, and two of
        // identical content must not both take the same record (the second adopt would
        // delete the first one's row as if it were a walk copy).
        let adopted = ctx
            .db
            .call(move |s| {
                if mirror::is_mapped(s.conn(), spec, id)? && !is_walk_copy(s.conn(), spec, &entry_c, id)? {
                    return Ok(false);
                }
                adopt(s, spec, &entry_c, &record, &raw)?;
                Ok(true)
            })
            .await?;
        if !adopted {
            continue;
        }
        tracing::info!(
            resource = spec.table,
            seq = entry.seq,
            id,
            "found the record an earlier create made; adopted it"
        );
        return Ok(true);
    }
    Ok(false)
}

/// Fails (transiently) when upstream lists no records at all although the mirror holds
/// some: an empty-list outage, whose empty lookups prove nothing.
pub(super) async fn ensure_listing_not_empty(ctx: &ResourceCtx) -> Result<(), SyncError> {
    let spec = ctx.api.spec;
    let known = ctx.db.call(move |s| mirror::count_base(s.conn(), spec)).await?;
    if known == 0 {
        return Ok(());
    }
    let what = format!("{} listing check", spec.table);
    let page = ctx.retry.run(&what, || ctx.api.list_page(1, 1, &[])).await?;
    if page.total == 0 && page.records.is_empty() {
        return Err(SyncError::Postponed(format!(
            "{}: upstream lists no records at all although the mirror holds {known}; whether an earlier \
             create took effect cannot be told, so it is not sent again until the listing recovers",
            spec.table
        )));
    }
    Ok(())
}

/// Whether upstream record `id`, already in the mirror, is only the copy a walk made of the
/// record this create produced. That happens when the lookup after a lost answer fails
/// (say a 500) and the same run's walk then meets the new record: skipping it as "someone
/// else's" would send the create again and duplicate the record. A walk copy is an
/// unedited row inserted after the entry's own row (larger local_id) that no create entry
/// ever made (so an identical row of the user's, created concurrently, is not taken), and
/// whose base snapshot was first written after the entry was (a record that existed
/// before keeps its older snapshot), so a pre-existing identical record is never taken over.
pub(super) fn is_walk_copy(
    conn: &Connection,
    spec: &ResourceSpec,
    entry: &Entry,
    id: i64,
) -> Result<bool, StoreError> {
    let Some(own) = entry.local_id else {
        return Ok(false);
    };
    let (Some(copy), Some(base)) = (
        mirror::mirror_by_id(conn, spec, id)?,
        mirror::base_by_id(conn, spec, id)?,
    ) else {
        return Ok(false);
    };
    if copy.local_id <= own
        || base.local_id != Some(copy.local_id)
        || !spec.changed_writable(&copy.values, &base.values).is_empty()
        || journal::has_create_entry(conn, spec.table, copy.local_id)?
    {
        return Ok(false);
    }
    let synced_at = mirror::base_synced_at(conn, spec, id)?.unwrap_or_default();
    Ok(synced_at >= entry.created_at)
}
