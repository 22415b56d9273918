//! Push: turn local edits into journal entries (written before any request), then send
//! them with bounded retries; write results back without overwriting edits made meanwhile.
//! A create whose outcome is unknown is looked for upstream by its natural key before it
//! is ever sent again.

use super::report::{Outcome, PushStats};
use super::retry::{delay, MAX_INLINE_WAIT};
use super::{ResourceCtx, SyncError};
use crate::store::journal::{self, Entry, Op, State, OUTCOME_CREATED, OUTCOME_UNKNOWN};
use crate::store::{mirror, StoreError};
use crate::upstream::{CreateOutcome, DeleteOutcome};
use futures::StreamExt;
use rusqlite::types::Value;
use serde_json::Value as Json;

use super::enqueue::{enqueue, journal_values, sent_values};
use super::reconcile::reconcile_create;
use super::writeback::{adopt, parse_answer, write_back_update};

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

/// Pushes due journal entries. `merged_with_upstream` is false when this cycle's pull
/// failed: updates and deletes then wait, since the merge could not weigh them against
/// upstream's current state (the conflict policy would be skipped); creates still go.
pub async fn push(ctx: &ResourceCtx, merged_with_upstream: bool) -> Result<(PushStats, Outcome), SyncError> {
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
    let (runnable, deferred): (Vec<Entry>, Vec<Entry>) = due
        .into_iter()
        .filter(|e| !(guard_deletes && e.op == Op::Delete))
        .partition(|e| merged_with_upstream || e.op == Op::Create || e.outcome.is_some());
    if !deferred.is_empty() {
        note(
            &mut outcome,
            Outcome::Transient(format!(
                "{}: {} update(s)/delete(s) wait for a complete pull, so they can be merged with upstream first",
                spec.table,
                deferred.len()
            )),
        );
    }
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

async fn execute(ctx: &ResourceCtx, mut entry: Entry) -> Executed {
    // Shutting down: start no new request; the entry stays pending for the next start.
    if ctx.shutdown.is_cancelled() {
        return Executed::Pending;
    }
    match execute_inner(ctx, &mut entry).await {
        Ok(r) => r,
        // An entry that cannot be read back would fail the same way forever: a person
        // must look at it.
        Err(SyncError::Store(e @ crate::store::StoreError::Corrupt { .. })) => {
            let (seq, message) = (entry.seq, e.to_string());
            tracing::error!(resource = %ctx.kind, seq, op = %entry.op, error = %message, "journal entry unreadable");
            let _ = ctx
                .db
                .call(move |s| journal::mark_failed(s.conn(), seq, None, &message))
                .await;
            Executed::Failed
        }
        Err(e) => {
            tracing::error!(resource = %ctx.kind, seq = entry.seq, op = %entry.op, error = %e, "push interrupted");
            Executed::Pending
        }
    }
}

async fn execute_inner(ctx: &ResourceCtx, entry: &mut Entry) -> Result<Executed, SyncError> {
    let spec = ctx.api.spec;
    let sync = &ctx.settings.sync;
    let sent = sent_values(spec, entry)?;
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
