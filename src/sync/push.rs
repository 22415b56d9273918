//! Push: turn local edits into journal entries (written before any request), then send
//! them with bounded retries; write results back without overwriting edits made meanwhile.
//! A create whose outcome is unknown is looked for upstream by its natural key before it
//! is ever sent again.

use super::pull::content_hash;
use super::report::{Outcome, PushStats};
use super::retry::{delay, with_retries};
use super::{ResourceCtx, SyncError};
use crate::resources::{describe_value, Record, ResourceSpec};
use crate::store::journal::{self, Entry, NewEntry, Op, State, OUTCOME_CREATED, OUTCOME_UNKNOWN};
use crate::store::{mirror, Store, StoreError};
use crate::upstream::{CreateOutcome, DeleteOutcome, UpstreamError};
use futures::StreamExt;
use rusqlite::types::Value;
use rusqlite::Connection;
use serde_json::Value as Json;
use std::collections::HashMap;
use std::time::Duration;

/// The longest a one-shot run waits in place before leaving an entry for a later run.
const MAX_INLINE_WAIT: Duration = Duration::from_secs(30);

/// Identifies the row an entry is about: upstream id once known, else the local row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum RowKey {
    Upstream(i64),
    Local(i64),
}

fn key_of(op: Op, local_id: Option<i64>, upstream_id: Option<i64>) -> RowKey {
    match (op, upstream_id, local_id) {
        (Op::Create, _, Some(l)) => RowKey::Local(l),
        (_, Some(u), _) => RowKey::Upstream(u),
        (_, None, l) => RowKey::Local(l.unwrap_or(0)),
    }
}

struct Desired {
    op: Op,
    local_id: Option<i64>,
    upstream_id: Option<i64>,
    payload: String,
    row_values: String,
    /// Set when the change cannot be pushed as it stands.
    rejected: Option<String>,
}

enum Executed {
    Done(Op),
    Failed,
    Pending,
    /// The row changed after the entry was made: superseded, not sent stale.
    Stale,
}

/// Checks, just before sending, that the row still holds what the entry was computed from.
/// If not, the entry is superseded; the next pass computes one from the row as it is now.
async fn superseded_if_stale(ctx: &ResourceCtx, entry: &Entry) -> Result<bool, SyncError> {
    let spec = ctx.api.spec;
    let e = entry.clone();
    let stale = ctx
        .db
        .call(move |s| {
            let stale = match (e.op, e.local_id, e.upstream_id) {
                (Op::Create | Op::Update, Some(local_id), _) => {
                    mirror::mirror_by_local_id(s.conn(), spec, local_id)?
                        // Compared as journaled: `journal_values` may have cleaned the row.
                        .is_none_or(|m| journal_values(spec, &m.values) != e.row_values)
                }
                (Op::Delete, _, Some(id)) => mirror::mirror_by_id(s.conn(), spec, id)?.is_some(),
                _ => false,
            };
            if stale {
                s.write(|tx| journal::supersede(tx, e.seq))?;
            }
            Ok(stale)
        })
        .await?;
    if stale {
        tracing::info!(resource = spec.table, seq = entry.seq, local_id = entry.local_id, op = %entry.op,
            "row changed before its push was sent; superseded");
    }
    Ok(stale)
}

/// Resolves entries left in flight by an earlier run (killed, or the answer was lost).
pub async fn recover(ctx: &ResourceCtx) -> Result<(), SyncError> {
    let resource = ctx.kind.name();
    let entries = ctx.db.call(move |s| journal::active(s.conn(), resource)).await?;
    for entry in entries {
        let unresolved = entry.state == State::InFlight || entry.outcome.is_some();
        if !unresolved {
            continue;
        }
        match entry.op {
            Op::Create => {
                if !reconcile_create(ctx, &entry).await? {
                    let seq = entry.seq;
                    let note = "not found upstream after an unknown outcome; safe to send again";
                    ctx.db
                        .call(move |s| {
                            journal::mark_retry(s.conn(), seq, &crate::store::now_text(), None, note, None)
                        })
                        .await?;
                }
            }
            // Updates and deletes are safe to repeat.
            Op::Update | Op::Delete => {
                let seq = entry.seq;
                let note = entry
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "interrupted; will send again".into());
                ctx.db
                    .call(move |s| {
                        journal::mark_retry(s.conn(), seq, &crate::store::now_text(), None, &note, None)
                    })
                    .await?;
            }
        }
    }
    Ok(())
}

pub async fn push(ctx: &ResourceCtx) -> Result<(PushStats, Outcome), SyncError> {
    let spec = ctx.api.spec;
    let (due, delete_count, base_count) = ctx.db.call(move |s| enqueue(s, spec)).await?;
    let mut outcome = Outcome::Ok;
    let fraction = ctx.settings.sync.max_delete_fraction;
    let guard_deletes =
        delete_count > 0 && delete_count as f64 > fraction * base_count as f64 && !ctx.opts.allow_mass_delete;
    if guard_deletes {
        outcome = Outcome::NeedsHuman(format!(
            "{}: {delete_count} of {base_count} rows were deleted locally, more than sync.max_delete_fraction ({fraction}); \
             the deletes were not pushed. If that is intended, run `restsync sync --once --allow-mass-delete`; \
             otherwise restore the rows (`restsync journal drop <seq>` restores one from its base snapshot)",
            spec.table
        ));
    }
    let runnable: Vec<Entry> = due
        .into_iter()
        .filter(|e| !(guard_deletes && e.op == Op::Delete))
        .collect();
    let results: Vec<Executed> = futures::stream::iter(runnable)
        .map(|e| execute(ctx, e))
        .buffer_unordered(ctx.settings.sync.concurrency)
        .collect()
        .await;
    let mut stats = PushStats::default();
    let mut stale = 0u64;
    let resource = spec.table;
    for r in &results {
        let (op, outcome) = match r {
            Executed::Done(op) => (op.as_str(), "done"),
            Executed::Failed => ("any", "failed"),
            Executed::Pending => ("any", "retry"),
            Executed::Stale => ("any", "superseded"),
        };
        crate::telemetry::push(resource, op, outcome);
    }
    for r in results {
        match r {
            Executed::Done(Op::Create) => stats.created += 1,
            Executed::Done(Op::Update) => stats.updated += 1,
            Executed::Done(Op::Delete) => stats.deleted += 1,
            Executed::Stale => stale += 1,
            Executed::Failed | Executed::Pending => {}
        }
    }
    let (active, counts) = ctx
        .db
        .call(move |s| {
            Ok((
                journal::active(s.conn(), resource)?,
                journal::counts(s.conn(), resource)?,
            ))
        })
        .await?;
    for (state, n) in counts {
        crate::telemetry::journal_depth(resource, state, n);
    }
    let failed: Vec<&Entry> = active.iter().filter(|e| e.state == State::Failed).collect();
    stats.failed = failed.len() as u64;
    stats.pending = active.len() as u64 - stats.failed;
    if !failed.is_empty() {
        let first: Vec<String> = failed
            .iter()
            .take(3)
            .map(|e| {
                format!(
                    "journal {} {} local_id {}: {}",
                    e.seq,
                    e.op,
                    e.local_id.map_or("-".into(), |l| l.to_string()),
                    e.last_error.as_deref().unwrap_or("failed")
                )
            })
            .collect();
        let more = if failed.len() > 3 {
            format!(" (and {} more)", failed.len() - 3)
        } else {
            String::new()
        };
        note(&mut outcome, Outcome::NeedsHuman(format!(
            "{resource}: {} change(s) rejected: {}{more}. Fix the rows (the fix supersedes the entry), or see `restsync journal --state failed`",
            failed.len(),
            first.join("; ")
        )));
    }
    if stale > 0 {
        note(
            &mut outcome,
            Outcome::Transient(format!(
                "{resource}: {stale} row(s) changed while their push waited; a later run pushes the newer values"
            )),
        );
    }
    if stats.pending > 0 {
        note(
            &mut outcome,
            Outcome::Transient(format!(
                "{resource}: {} change(s) still pending; a later run will retry them",
                stats.pending
            )),
        );
    }
    Ok((stats, outcome))
}

fn note(current: &mut Outcome, new: Outcome) {
    let rank = |o: &Outcome| match o {
        Outcome::Ok => 0,
        Outcome::Transient(_) => 1,
        Outcome::NeedsHuman(_) => 2,
        Outcome::Fatal(_) => 3,
    };
    if rank(&new) > rank(current) {
        *current = new;
    }
}

/// A mirror row's values as journaled (`row_values`). Read-only columns are upstream's to
/// fill, and nothing checks what a person typed into them: a value that does not read back
/// as its column's type (text in `profile_id`, say) is journaled as NULL, else the entry
/// could never be read again and the row's push would be stuck for good.
fn journal_values(spec: &ResourceSpec, values: &[Value]) -> String {
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
fn enqueue(store: &mut Store, spec: &'static ResourceSpec) -> Result<(Vec<Entry>, usize, i64), StoreError> {
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

async fn execute(ctx: &ResourceCtx, mut entry: Entry) -> Executed {
    // Shutting down: start no new request; the entry stays pending for the next start.
    if ctx.shutdown.is_cancelled() {
        return Executed::Pending;
    }
    match execute_inner(ctx, &mut entry).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(resource = %ctx.kind, seq = entry.seq, op = %entry.op, error = %e, "push interrupted");
            Executed::Pending
        }
    }
}

async fn execute_inner(ctx: &ResourceCtx, entry: &mut Entry) -> Result<Executed, SyncError> {
    let spec = ctx.api.spec;
    let sync = &ctx.settings.sync;
    let sent = spec
        .values_from_json(&entry.row_values)
        .map_err(|message| StoreError::Corrupt {
            seq: entry.seq,
            message,
        })?;
    let payload: serde_json::Map<String, Json> =
        serde_json::from_str(&entry.payload).map_err(|e| StoreError::Corrupt {
            seq: entry.seq,
            message: e.to_string(),
        })?;
    let mut attempt = 0u32;
    loop {
        if entry.outcome.is_none() && superseded_if_stale(ctx, entry).await? {
            return Ok(Executed::Stale);
        }
        if entry.op == Op::Create && entry.outcome.is_some() && reconcile_create(ctx, entry).await? {
            return Ok(Executed::Done(Op::Create));
        }
        let seq = entry.seq;
        ctx.db
            .call(move |s| journal::mark_in_flight(s.conn(), seq))
            .await?;
        let result = send(ctx, entry, &payload, &sent).await;
        match result {
            Ok(done) => return Ok(done),
            Err(SyncError::Upstream(e)) if e.is_retryable() => {
                let outcome = if e.outcome_unknown() || entry.outcome.is_some() {
                    Some(OUTCOME_UNKNOWN)
                } else {
                    None
                };
                entry.outcome = outcome.map(str::to_string);
                let what = format!("{} {} local_id {:?}", spec.table, entry.op, entry.local_id);
                let wait = delay(sync.retry_base, attempt, &e, sync.max_retry_after, &what);
                attempt += 1;
                let next_at = (chrono::Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default())
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                let msg = e.to_string();
                let status = e.status();
                tracing::warn!(resource = spec.table, seq, local_id = entry.local_id, op = %entry.op, error = %msg,
                    attempt, "push failed; will retry");
                ctx.db
                    .call(move |s| journal::mark_retry(s.conn(), seq, &next_at, status, &msg, outcome))
                    .await?;
                if attempt >= sync.max_attempts_per_run || wait > MAX_INLINE_WAIT {
                    return Ok(Executed::Pending);
                }
                tokio::time::sleep(wait).await;
            }
            Err(SyncError::Upstream(e)) => {
                let msg = e.to_string();
                let status = e.status();
                tracing::error!(resource = spec.table, seq, local_id = entry.local_id, id = entry.upstream_id,
                    op = %entry.op, error = %msg, "push rejected by upstream");
                ctx.db
                    .call(move |s| journal::mark_failed(s.conn(), seq, status, &msg))
                    .await?;
                return Ok(Executed::Failed);
            }
            Err(other) => return Err(other),
        }
    }
}

async fn send(
    ctx: &ResourceCtx,
    entry: &mut Entry,
    payload: &serde_json::Map<String, Json>,
    sent: &[Value],
) -> Result<Executed, SyncError> {
    let spec = ctx.api.spec;
    let seq = entry.seq;
    match entry.op {
        Op::Create => match ctx.api.create(payload).await? {
            CreateOutcome::Record(json) => {
                let record = parse_answer(spec, &json, sent)?;
                let (entry_c, raw) = (entry.clone(), json.to_string());
                ctx.db
                    .call(move |s| adopt(s, spec, &entry_c, &record, &raw))
                    .await?;
                Ok(Executed::Done(Op::Create))
            }
            CreateOutcome::Accepted => {
                // Plusofon answers without an id: find what it made by listing.
                entry.outcome = Some(OUTCOME_CREATED.into());
                let note = "accepted upstream; identifying the created record";
                ctx.db
                    .call(move |s| {
                        journal::mark_retry(
                            s.conn(),
                            seq,
                            &crate::store::now_text(),
                            None,
                            note,
                            Some(OUTCOME_CREATED),
                        )
                    })
                    .await?;
                if reconcile_create(ctx, entry).await? {
                    Ok(Executed::Done(Op::Create))
                } else {
                    Ok(Executed::Pending)
                }
            }
        },
        Op::Update => {
            let id = entry.upstream_id.ok_or(StoreError::Corrupt {
                seq,
                message: "update without upstream id".into(),
            })?;
            let json = ctx.api.update(id, payload).await?;
            let record = parse_answer(spec, &json, sent)?;
            let raw = json.to_string();
            let sent = sent.to_vec();
            ctx.db
                .call(move |s| write_back_update(s, spec, seq, &record, &sent, &raw))
                .await?;
            Ok(Executed::Done(Op::Update))
        }
        Op::Delete => {
            let id = entry.upstream_id.ok_or(StoreError::Corrupt {
                seq,
                message: "delete without upstream id".into(),
            })?;
            let outcome = ctx.api.delete(id).await?;
            if outcome == DeleteOutcome::NotFound {
                tracing::info!(resource = spec.table, id, "already deleted upstream");
            }
            ctx.db
                .call(move |s| {
                    s.write(|tx| {
                        mirror::delete_base(tx, spec, id)?;
                        journal::mark_done(tx, seq, Some(id))
                    })
                })
                .await?;
            Ok(Executed::Done(Op::Delete))
        }
    }
}

fn parse_answer(spec: &ResourceSpec, json: &Json, sent: &[Value]) -> Result<Record, SyncError> {
    spec.parse(json, Some(sent)).map_err(|e| {
        SyncError::Upstream(UpstreamError::Malformed {
            upstream: spec.upstream.as_str(),
            message: format!("{} answer: {e}", spec.table),
        })
    })
}

/// New mirror values after a push: a column the user changed since the entry was made
/// keeps the user's value (the next cycle pushes it); the others take upstream's.
fn write_back_values(
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

fn write_back_update(
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
        mirror::upsert_base(
            tx,
            spec,
            record.id,
            local_id,
            &record.values,
            raw,
            content_hash(raw.as_bytes()),
        )?;
        journal::mark_done(tx, seq, Some(record.id))
    })
}

/// Links a created record to the local row the entry came from.
fn adopt(
    store: &mut Store,
    spec: &'static ResourceSpec,
    entry: &Entry,
    record: &Record,
    raw: &str,
) -> Result<(), StoreError> {
    let sent = spec
        .values_from_json(&entry.row_values)
        .map_err(|message| StoreError::Corrupt {
            seq: entry.seq,
            message,
        })?;
    store.write(|tx| adopt_in(tx, spec, entry, &sent, record, raw))
}

fn adopt_in(
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
    mirror::upsert_base(
        tx,
        spec,
        record.id,
        local_id,
        &record.values,
        raw,
        content_hash(raw.as_bytes()),
    )?;
    journal::mark_done(tx, entry.seq, Some(record.id))?;
    tracing::info!(
        resource = spec.table,
        local_id,
        id = record.id,
        "created upstream"
    );
    Ok(())
}

/// Looks upstream for the record a create made, by its natural key, and adopts it.
/// Returns whether it was found.
async fn reconcile_create(ctx: &ResourceCtx, entry: &Entry) -> Result<bool, SyncError> {
    let spec = ctx.api.spec;
    let sync = &ctx.settings.sync;
    let sent = spec
        .values_from_json(&entry.row_values)
        .map_err(|message| StoreError::Corrupt {
            seq: entry.seq,
            message,
        })?;
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
    let candidates = with_retries(
        sync.max_attempts_per_run,
        sync.retry_base,
        sync.max_retry_after,
        &what,
        || ctx.api.search_all(&filters, sync.per_page),
    )
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
async fn ensure_listing_not_empty(ctx: &ResourceCtx) -> Result<(), SyncError> {
    let spec = ctx.api.spec;
    let sync = &ctx.settings.sync;
    let known = ctx.db.call(move |s| mirror::count_base(s.conn(), spec)).await?;
    if known == 0 {
        return Ok(());
    }
    let what = format!("{} listing check", spec.table);
    let page = with_retries(
        sync.max_attempts_per_run,
        sync.retry_base,
        sync.max_retry_after,
        &what,
        || ctx.api.list_page(1, 1, &[]),
    )
    .await?;
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
fn is_walk_copy(conn: &Connection, spec: &ResourceSpec, entry: &Entry, id: i64) -> Result<bool, StoreError> {
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
