//! Push: bring the journal in line with the mirror (entries written before any request),
//! then take each due entry one step further through its lifecycle: resolve an unresolved
//! create, merge an update or delete with upstream's current record, send, and record what
//! the answer proves. The moves themselves are the lifecycle's (`store::journal::lifecycle`).

use super::enqueue::{enqueue, journal_values, sent_values};
use super::prepare::{fetch_before_write, Prepared, Settled};
use super::report::{Outcome, PushStats};
use super::resolve::{self, Resolved};
use super::retry::MAX_INLINE_WAIT;
use super::writeback::{adopt_answer, parse_answer, write_back_update};
use super::{ResourceCtx, SyncError};
use crate::store::journal::{self, Entry, Event, Op, Stage};
use crate::store::{mirror, StoreError};
use crate::upstream::{CreateOutcome, DeleteOutcome, UpstreamError, WriteEffect};
use futures::StreamExt;
use rusqlite::types::Value;
use serde_json::Value as Json;

/// What became of one entry in this pass.
enum Executed {
    Done(Op),
    Failed,
    /// Still waiting (a retry, a lookup, a settle time).
    Pending,
    /// Nothing was sent: upstream already holds the change, or the merge kept upstream's.
    Settled,
    /// Nothing was sent: the row changed after the entry was made; a later pass sends it.
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
                s.write(|tx| journal::advance(tx, e.seq, &Event::Supersede))?;
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

/// Resolves creates left unresolved by earlier passes or runs (see [`resolve`]).
pub async fn recover(ctx: &ResourceCtx) -> Result<(), SyncError> {
    resolve::resolve_all(ctx).await.map(|_| ())
}

/// How many due entries a pass reads at a time: memory stays flat however many changes
/// wait.
const SEND_PAGE: usize = 200;

/// Pushes due journal entries: one pass over the resource's local changes.
pub async fn push(ctx: &ResourceCtx) -> Result<(PushStats, Outcome), SyncError> {
    let spec = ctx.api.spec;
    resolve::claim_abandoned(ctx).await?;
    let scope: Vec<(&'static str, String)> = ctx.api.scope().to_vec();
    let (delete_count, base_count) = ctx.db.call(move |s| enqueue(s, spec, &scope)).await?;
    let mut outcome = Outcome::Ok;
    let fraction = ctx.settings.sync.max_delete_fraction;
    let guard_deletes = delete_count > 0 && delete_count as f64 > fraction * base_count as f64;
    if delete_count > 0 && ctx.opts.allow_mass_delete {
        // A person said yes: deletes held by earlier runs go out with the rest.
        ctx.db
            .call(move |s| s.write(|tx| journal::release_held_deletes(tx, spec.table)))
            .await?;
    } else if guard_deletes {
        let why = format!(
            "{delete_count} of {base_count} rows were deleted locally, more than sync.max_delete_fraction ({fraction}); \
             if that is intended, run `restsync sync --once --allow-mass-delete`; otherwise restore the rows \
             (`restsync journal drop --all --resource {} --held --yes` restores them from their base snapshots)",
            spec.table
        );
        let message = format!("{}: {why}", spec.table);
        // Held until a person decides: the refusal does not lift by itself when the
        // resource grows (creates pushed meanwhile) or a later run sees a smaller fraction.
        ctx.db
            .call(move |s| s.write(|tx| journal::hold_deletes(tx, spec.table, &why)))
            .await?;
        outcome = Outcome::NeedsHuman(message);
    }
    let mut stats = PushStats::default();
    let resource = spec.table;
    let mut stale = 0;
    // Entries due when the pass starts, oldest first, a page at a time; one rescheduled
    // during the pass waits for a later one.
    let now = crate::store::now_text();
    let every = ctx.opts.one_shot;
    let mut after = 0;
    loop {
        let at = now.clone();
        let page = ctx
            .db
            .call(move |s| journal::due(s.conn(), resource, after, &at, every, SEND_PAGE))
            .await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        let runnable = page.into_iter();
        let mut results = futures::stream::iter(runnable)
            .map(|e| execute(ctx, e))
            .buffer_unordered(ctx.settings.sync.concurrency);
        while let Some(r) = results.next().await {
            let (op, result) = match &r {
                Executed::Done(op) => (op.as_str(), "done"),
                Executed::Failed => ("any", "failed"),
                Executed::Pending => ("any", "retry"),
                Executed::Settled | Executed::Stale => ("any", "superseded"),
            };
            crate::telemetry::push(resource, op, result);
            ctx.report(super::events::Progress::Pushed {
                resource: ctx.kind,
                done: matches!(r, Executed::Done(_) | Executed::Settled),
            });
            match r {
                Executed::Done(Op::Create) => stats.created += 1,
                Executed::Done(Op::Update) => stats.updated += 1,
                Executed::Done(Op::Delete) => stats.deleted += 1,
                Executed::Stale => stale += 1,
                _ => {}
            }
        }
        if ctx.shutdown.is_cancelled() {
            break;
        }
    }
    if stale > 0 {
        note(
            &mut outcome,
            Outcome::Transient(format!(
                "{resource}: {stale} row(s) changed while their push waited; a later run pushes the newer values"
            )),
        );
    }
    let (by_stage, counts, first_failed) = ctx
        .db
        .call(move |s| {
            Ok((
                journal::stage_counts(s.conn(), resource)?,
                journal::counts(s.conn(), resource)?,
                journal::first_failed(s.conn(), resource, 3)?,
            ))
        })
        .await?;
    // Every state, so a state that emptied reads 0 rather than its last count.
    for state in journal::StoredState::ALL {
        let n = counts
            .iter()
            .find(|(s, _)| s == state.as_str())
            .map_or(0, |(_, n)| *n);
        crate::telemetry::journal_depth(resource, state.as_str().to_string(), n);
    }
    let in_stage = |stage: Stage| by_stage.get(&stage).copied().unwrap_or(0);
    let failed: usize = by_stage
        .iter()
        .filter(|(s, _)| s.needs_human())
        .map(|(_, n)| n)
        .sum();
    let active: usize = by_stage.values().sum();
    stats.failed = failed as u64;
    stats.pending = (active - failed) as u64;
    if failed > 0 {
        let first: Vec<String> = first_failed
            .iter()
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
        let more = if failed > first.len() {
            format!(" (and {} more)", failed - first.len())
        } else {
            String::new()
        };
        note(&mut outcome, Outcome::NeedsHuman(format!(
            "{resource}: {failed} change(s) need a person: {}{more}. `restsync status` says what settles each (fix the row, retry or drop the entry)",
            first.join("; ")
        )));
    }
    if stats.pending > 0 {
        let accepted = in_stage(Stage::Accepted);
        let unknown = in_stage(Stage::Unknown);
        let mut detail = String::new();
        if accepted > 0 {
            detail.push_str(&format!(
                " ({accepted} accepted upstream and being identified; never sent again)"
            ));
        }
        if unknown > 0 {
            detail.push_str(&format!(
                " ({unknown} with an unknown outcome, looked for upstream before anything is re-sent)"
            ));
        }
        note(
            &mut outcome,
            Outcome::Transient(format!(
                "{resource}: {} change(s) still pending{detail}; a later run will retry them",
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

async fn execute(ctx: &ResourceCtx, entry: Entry) -> Executed {
    // Shutting down: start no new request; the entry stays for the next start.
    if ctx.shutdown.is_cancelled() {
        return Executed::Pending;
    }
    let (seq, op) = (entry.seq, entry.op);
    match execute_inner(ctx, entry).await {
        Ok(r) => r,
        // An entry that cannot be read back would fail the same way forever: a person
        // must look at it.
        Err(SyncError::Store(e @ StoreError::Corrupt { .. })) => {
            let message = e.to_string();
            tracing::error!(resource = %ctx.kind, seq, %op, error = %message, "journal entry unreadable");
            let _ = ctx
                .db
                .call(move |s| {
                    journal::advance(
                        s.conn(),
                        seq,
                        &Event::Reject {
                            status: None,
                            error: &message,
                        },
                    )
                })
                .await;
            Executed::Failed
        }
        Err(e) => {
            tracing::warn!(resource = %ctx.kind, seq, %op, error = %e, "push interrupted; the entry waits for a later pass");
            Executed::Pending
        }
    }
}

/// Takes one entry as far as it can go in this pass.
async fn execute_inner(ctx: &ResourceCtx, mut entry: Entry) -> Result<Executed, SyncError> {
    let spec = ctx.api.spec;
    let mut attempt = 0u32;
    loop {
        if ctx.shutdown.is_cancelled() {
            return Ok(Executed::Pending);
        }
        // An unknown outcome is resolved before anything is sent again.
        if entry.stage.unresolved() {
            match resolve::resolve(ctx, &entry).await? {
                Resolved::Found => return Ok(Executed::Done(Op::Create)),
                Resolved::SafeToSend => {}
                Resolved::Waiting => return Ok(Executed::Pending),
                Resolved::GaveUp => return Ok(Executed::Failed),
            }
            entry = reload(ctx, entry.seq).await?;
        }
        if entry.stage != Stage::Queued {
            return Ok(Executed::Pending);
        }
        // The definition may have dropped an operation since the entry was queued: what
        // upstream cannot do is never sent.
        let allowed = match entry.op {
            Op::Create => spec.can_create,
            Op::Update => spec.can_update,
            Op::Delete => spec.can_delete,
        };
        if !allowed {
            let seq = entry.seq;
            let msg = format!(
                "{} journal {seq}: the upstream cannot {} {} records (the resource's operations leave it out), so nothing \
                 was sent. Put the operation back in the definition and run `restsync journal retry {seq}`, or \
                 `restsync journal drop {seq}` to give the change up",
                spec.table, entry.op, spec.table
            );
            tracing::error!(resource = spec.table, seq, op = %entry.op, error = %msg, "push refused");
            ctx.db
                .call(move |s| {
                    journal::advance(
                        s.conn(),
                        seq,
                        &Event::Reject {
                            status: None,
                            error: &msg,
                        },
                    )
                })
                .await?;
            return Ok(Executed::Failed);
        }
        if (entry.op == Op::Create || !ctx.api.can_get()) && superseded_if_stale(ctx, &entry).await? {
            return Ok(Executed::Stale);
        }
        if entry.op != Op::Create && ctx.api.can_get() {
            match fetch_before_write(ctx, entry.clone()).await {
                Ok(Prepared::Send(rebased)) => entry = *rebased,
                Ok(Prepared::Settled(Settled::AlreadyUpstream)) => {
                    tracing::info!(resource = spec.table, id = entry.upstream_id, op = %entry.op,
                        "upstream already holds this change");
                    return Ok(Executed::Done(entry.op));
                }
                Ok(Prepared::Settled(Settled::Stale)) => return Ok(Executed::Stale),
                Ok(Prepared::Settled(_)) => return Ok(Executed::Settled),
                // Stopping before the record could be fetched: nothing was sent.
                Err(SyncError::Upstream(UpstreamError::NotStarted)) => return Ok(Executed::Pending),
                Err(SyncError::Upstream(e)) if e.is_retryable() => {
                    return Ok(retry_later(ctx, &entry, &e, attempt, false).await?.0);
                }
                Err(e) => return Err(e),
            }
        }
        let sent = sent_values(spec, &entry)?;
        let payload: serde_json::Map<String, Json> =
            serde_json::from_str(&entry.payload).map_err(|e| StoreError::Corrupt {
                seq: entry.seq,
                message: e.to_string(),
            })?;
        // The stop may have come while the record was being fetched: nothing starts now.
        if ctx.shutdown.is_cancelled() {
            return Ok(Executed::Pending);
        }
        let seq = entry.seq;
        let timeout = ctx.settings.sync.request_timeout;
        ctx.db
            .call(move |s| {
                s.write(|tx| {
                    let stage = journal::advance(tx, seq, &Event::Send)?;
                    journal::set_sent_timeout(tx, seq, timeout)?;
                    Ok(stage)
                })
            })
            .await?;
        let started = chrono::Utc::now();
        let result = send(ctx, &entry, &payload, &sent).await;
        let error = match result {
            Ok(done) => return Ok(done),
            Err(SyncError::Upstream(e)) => e,
            Err(other) => return Err(other),
        };
        let (msg, status) = (error.to_string(), error.status());
        let effect = if entry.op == Op::Create {
            error.write_effect()
        } else {
            WriteEffect::None
        };
        match effect {
            WriteEffect::MayHaveHappened | WriteEffect::MayStillBeInProgress => {
                // An answered 5xx is over, but its record may still take the list's lag to show.
                let settle_at = if effect == WriteEffect::MayHaveHappened {
                    let lag = chrono::Duration::from_std(ctx.settings.sync.list_lag).unwrap_or_default();
                    (chrono::Utc::now() + lag).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                } else {
                    resolve::settle_at(ctx, started)
                };
                tracing::warn!(resource = spec.table, seq, local_id = entry.local_id, error = %msg, settle_at,
                    "create's outcome unknown; it is looked for upstream before anything is sent again");
                ctx.db
                    .call(move |s| {
                        journal::advance(
                            s.conn(),
                            seq,
                            &Event::OutcomeUnknown {
                                settle_at: &settle_at,
                                status,
                                error: &msg,
                            },
                        )
                    })
                    .await?;
                match resolve::resolve_soon(ctx, seq).await? {
                    Resolved::SafeToSend if attempt + 1 < ctx.retry.attempts() => {
                        attempt += 1;
                        entry = reload(ctx, seq).await?;
                        continue;
                    }
                    Resolved::SafeToSend => return Ok(Executed::Pending),
                    other => return finish_resolution(other),
                }
            }
            WriteEffect::None if error.is_retryable() => {
                // An update or delete that may still be running upstream (a timeout, a
                // gateway's 502-504): nothing more goes to this record until it can no
                // longer land, or it could overtake a later request (a newer edit would be
                // overwritten by the older one arriving last).
                if error.write_effect() == WriteEffect::MayStillBeInProgress {
                    let timeout =
                        chrono::Duration::from_std(ctx.settings.sync.request_timeout).unwrap_or_default();
                    let left = (started + timeout - chrono::Utc::now())
                        .to_std()
                        .unwrap_or_default();
                    tracing::warn!(resource = spec.table, seq, id = entry.upstream_id, op = %entry.op, error = %msg,
                        wait_ms = left.as_millis() as u64,
                        "the request may still be running upstream; waiting until it cannot land before anything else is sent for this record");
                    if !ctx.retry.pause(left).await {
                        // Stopping: the entry stays in flight, so the next start holds the
                        // record until the request cannot land, as for a crash.
                        return Ok(Executed::Pending);
                    }
                }
                match retry_later(ctx, &entry, &error, attempt, true).await? {
                    (Executed::Pending, wait) if attempt + 1 < ctx.retry.attempts() => {
                        if wait > MAX_INLINE_WAIT || !ctx.retry.pause(wait).await {
                            return Ok(Executed::Pending);
                        }
                        attempt += 1;
                        entry = reload(ctx, seq).await?;
                    }
                    (other, _) => return Ok(other),
                }
            }
            WriteEffect::None => {
                tracing::error!(resource = spec.table, seq, local_id = entry.local_id, id = entry.upstream_id,
                    op = %entry.op, error = %msg, "push rejected by upstream");
                ctx.db
                    .call(move |s| journal::advance(s.conn(), seq, &Event::Reject { status, error: &msg }))
                    .await?;
                return Ok(Executed::Failed);
            }
        }
    }
}

fn finish_resolution(r: Resolved) -> Result<Executed, SyncError> {
    Ok(match r {
        Resolved::Found => Executed::Done(Op::Create),
        Resolved::GaveUp => Executed::Failed,
        Resolved::SafeToSend | Resolved::Waiting => Executed::Pending,
    })
}

async fn reload(ctx: &ResourceCtx, seq: i64) -> Result<Entry, SyncError> {
    ctx.db
        .call(move |s| journal::get(s.conn(), seq))
        .await?
        .ok_or_else(|| {
            SyncError::Store(StoreError::Corrupt {
                seq,
                message: "entry vanished".into(),
            })
        })
}

/// Records a failure that proves nothing happened upstream; the entry waits for its next
/// attempt (or, past `sync.max_attempts`, fails for a person). Returns the wait chosen.
async fn retry_later(
    ctx: &ResourceCtx,
    entry: &Entry,
    error: &UpstreamError,
    attempt: u32,
    sent: bool,
) -> Result<(Executed, std::time::Duration), SyncError> {
    let sync = &ctx.settings.sync;
    let spec = ctx.api.spec;
    let what = format!("{} {} local_id {:?}", spec.table, entry.op, entry.local_id);
    let wait = ctx.retry.delay(attempt, error, &what);
    let at = (chrono::Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default())
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let (seq, msg, status, max_attempts) = (entry.seq, error.to_string(), error.status(), sync.max_attempts);
    tracing::warn!(resource = spec.table, seq, local_id = entry.local_id, op = %entry.op, error = %msg,
        attempt, sent, "push failed; will retry");
    let stage = ctx
        .db
        .call(move |s| {
            journal::advance(
                s.conn(),
                seq,
                &Event::Retry {
                    at: &at,
                    status,
                    error: &msg,
                    max_attempts,
                },
            )
        })
        .await?;
    if stage == Stage::Failed {
        tracing::error!(resource = spec.table, seq, local_id = entry.local_id, op = %entry.op,
            max_attempts, "push kept failing; gave up until `restsync journal retry`");
        return Ok((Executed::Failed, wait));
    }
    Ok((Executed::Pending, wait))
}

async fn send(
    ctx: &ResourceCtx,
    entry: &Entry,
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
                    .call(move |s| adopt_answer(s, spec, &entry_c, &record, &raw))
                    .await?;
                Ok(Executed::Done(Op::Create))
            }
            CreateOutcome::Accepted => {
                // Plusofon answers without an id: find what it made by listing. Whatever
                // the lookups find, this create is never sent again.
                ctx.db
                    .call(move |s| journal::advance(s.conn(), seq, &Event::Accept))
                    .await?;
                finish_resolution(resolve::resolve_soon(ctx, seq).await?)
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
            let payload = payload.clone();
            let applied = ctx
                .db
                .call(move |s| write_back_update(s, spec, seq, &record, &sent, &payload, &raw))
                .await?;
            Ok(if applied {
                Executed::Done(Op::Update)
            } else {
                Executed::Failed
            })
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
                        journal::advance(
                            tx,
                            seq,
                            &Event::Succeed {
                                upstream_id: Some(id),
                            },
                        )?;
                        Ok(())
                    })
                })
                .await?;
            Ok(Executed::Done(Op::Delete))
        }
    }
}

#[cfg(test)]
mod tests;
