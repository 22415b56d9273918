//! Resolving creates whose effect upstream is not known: abandoned by a process that died,
//! answered with a 5xx or not at all (outcome unknown), or accepted without an id. Each is
//! looked for by its natural key; what the lookup may conclude is the lifecycle's to say:
//! an accepted create is never sent again, an unknown one only after its request can no
//! longer be in progress and a lookup after that misses.

use super::reconcile::reconcile_create;
use super::retry::MAX_INLINE_WAIT;
use super::{ResourceCtx, SyncError};
use crate::store::journal::{self, Entry, Event, Op, Stage};
use crate::store::StoreError;
use std::time::Duration;

/// How a resolution went.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Resolved {
    /// Found and adopted.
    Found,
    /// Proven never to have taken effect: the entry is Queued, safe to send.
    SafeToSend,
    /// Still unresolved; looked for again later.
    Waiting,
    /// Accepted and never found within `sync.identify_timeout_secs`: a person must look.
    GaveUp,
}

fn at(after: Duration) -> String {
    (chrono::Utc::now() + chrono::Duration::from_std(after).unwrap_or_default())
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The time before which a lookup's miss proves nothing about a request that began at
/// `from` without an answer: it may still be in progress for the request timeout, and its
/// record may take `sync.list_lag_secs` more to be listed.
pub(super) fn settle_at(ctx: &ResourceCtx, from: chrono::DateTime<chrono::Utc>) -> String {
    let settle = ctx.settings.sync.request_timeout + ctx.settings.sync.list_lag;
    (from + chrono::Duration::from_std(settle).unwrap_or_default())
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn parse_time(t: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// Entries found Sending belong to a process that is gone (one writer per database, and
/// a reload lets requests finish): an abandoned create settles a request timeout after its
/// attempt began; an abandoned update or delete is sent again, but only once it can no
/// longer land upstream (nothing is sent for the resource before then, so a newer edit is
/// not overtaken by the older request arriving last).
pub(super) async fn claim_abandoned(ctx: &ResourceCtx) -> Result<(), SyncError> {
    let resource = ctx.kind.name();
    let entries = ctx.db.call(move |s| journal::active(s.conn(), resource)).await?;
    let mut hold_until = chrono::Utc::now();
    for e in entries.into_iter().filter(|e| e.stage == Stage::Sending) {
        let began = parse_time(&e.updated_at).unwrap_or_else(chrono::Utc::now);
        let seq = e.seq;
        // The request may run upstream as long as the timeout it was sent with, even if
        // the configuration shortened it before this start.
        let sent_with = ctx.db.call(move |s| journal::sent_timeout(s.conn(), seq)).await?;
        let timeout = sent_with.map_or(ctx.settings.sync.request_timeout, |t| {
            t.max(ctx.settings.sync.request_timeout)
        });
        let settle = (began
            + chrono::Duration::from_std(timeout + ctx.settings.sync.list_lag).unwrap_or_default())
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        if e.op != Op::Create {
            hold_until = hold_until.max(began + chrono::Duration::from_std(timeout).unwrap_or_default());
        }
        ctx.db
            .call(move |s| journal::advance(s.conn(), seq, &Event::Abandoned { settle_at: &settle }))
            .await?;
        tracing::info!(resource, seq, op = %e.op, local_id = e.local_id,
            "found a request interrupted before its answer came; it is resolved before anything is sent again");
    }
    let left = (hold_until - chrono::Utc::now()).to_std().unwrap_or_default();
    if !left.is_zero() {
        tracing::warn!(resource, wait_ms = left.as_millis() as u64,
            "an interrupted update or delete may still land upstream; waiting until it cannot before sending anything");
        if !ctx.retry.pause(left).await {
            return Err(SyncError::Postponed(format!(
                "{resource}: stopping while an interrupted request may still land; nothing sent"
            )));
        }
    }
    Ok(())
}

/// Looks for every unresolved create of the resource that is due (all of them in a
/// one-shot run). Returns how many are still waiting.
pub(super) async fn resolve_all(ctx: &ResourceCtx) -> Result<u64, SyncError> {
    claim_abandoned(ctx).await?;
    let resource = ctx.kind.name();
    let now = crate::store::now_text();
    let one_shot = ctx.opts.one_shot;
    let entries: Vec<Entry> = ctx
        .db
        .call(move |s| journal::active(s.conn(), resource))
        .await?
        .into_iter()
        .filter(|e| e.op == Op::Create && e.stage.unresolved())
        .filter(|e| {
            let due = e.next_attempt_at.as_deref().is_none_or(|t| t <= now.as_str());
            // A one-shot run looks for accepted creates every time; an unknown outcome that
            // has not settled yet is looked for once, then when it settles.
            due || (one_shot && e.stage != Stage::Unknown)
        })
        .collect();
    let mut waiting = 0;
    for entry in entries {
        if ctx.shutdown.is_cancelled() {
            break;
        }
        if resolve(ctx, &entry).await? == Resolved::Waiting {
            waiting += 1;
        }
    }
    Ok(waiting)
}

/// One lookup for one unresolved create, and the move it justifies.
pub(super) async fn resolve(ctx: &ResourceCtx, entry: &Entry) -> Result<Resolved, SyncError> {
    let resource = ctx.kind.name();
    let seq = entry.seq;
    let found = match reconcile_create(ctx, entry).await {
        Ok(found) => found,
        // Lookups that keep failing (a long outage) are bounded like identification: past
        // `sync.identify_timeout_secs` a person is asked; the create is still not re-sent.
        Err(e) if matches!(e.outcome(), crate::sync::Outcome::Transient(_)) => {
            let error = format!(
                "whether upstream made this create could not be told within sync.identify_timeout_secs ({} s): \
                 its lookups kept failing ({e}). It is NOT sent again: check upstream; if the record is not there, \
                 `restsync journal retry {seq}` sends it",
                ctx.settings.sync.identify_timeout.as_secs()
            );
            if give_up_if_overdue(ctx, entry, error).await? {
                return Ok(Resolved::GaveUp);
            }
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    if found {
        return Ok(Resolved::Found);
    }
    let now = chrono::Utc::now();
    let now_text = crate::store::now_text();
    match entry.stage {
        Stage::Unknown | Stage::Undetermined
            if entry.stage == Stage::Undetermined
                && entry.settle_at.as_deref().is_some_and(|t| t <= now_text.as_str()) =>
        {
            // Lookups work again and this one, made after the request settled, missed.
            ctx.db
                .call(move |s| journal::advance(s.conn(), seq, &Event::NotFoundAfterSettle))
                .await?;
            tracing::info!(
                resource,
                seq,
                local_id = entry.local_id,
                "lookups work again and the create was never made; sending it"
            );
            Ok(Resolved::SafeToSend)
        }
        Stage::Unknown => {
            let settle = entry.settle_at.clone().unwrap_or_default();
            if settle.as_str() <= now_text.as_str() {
                ctx.db
                    .call(move |s| journal::advance(s.conn(), seq, &Event::NotFoundAfterSettle))
                    .await?;
                tracing::info!(
                    resource,
                    seq,
                    local_id = entry.local_id,
                    "not found upstream once the earlier request could no longer be in progress; sending it"
                );
                return Ok(Resolved::SafeToSend);
            }
            let note = format!(
                "outcome unknown; not found yet, and the request may still be in progress upstream until {settle}"
            );
            ctx.db
                .call(move |s| {
                    journal::advance(
                        s.conn(),
                        seq,
                        &Event::NotYetFound {
                            at: &settle,
                            note: &note,
                        },
                    )
                })
                .await?;
            Ok(Resolved::Waiting)
        }
        Stage::Accepted => {
            let accepted = entry.accepted_at.as_deref().and_then(parse_time).unwrap_or(now);
            let error = format!(
                "upstream accepted this create at {} but the record it made was not found within \
                 sync.identify_timeout_secs ({} s). It is NOT sent again: check upstream; if the record is not \
                 there, `restsync journal retry {seq}` sends it again",
                entry.accepted_at.as_deref().unwrap_or("?"),
                ctx.settings.sync.identify_timeout.as_secs()
            );
            if give_up_if_overdue(ctx, entry, error).await? {
                return Ok(Resolved::GaveUp);
            }
            // Lists lag behind creates: look again, less often the longer it takes.
            let elapsed = now.signed_duration_since(accepted).to_std().unwrap_or_default();
            let next = at((elapsed / 2).clamp(Duration::from_secs(1), Duration::from_secs(60)));
            let note = "accepted upstream; not listed yet, looking again".to_string();
            ctx.db
                .call(move |s| {
                    journal::advance(
                        s.conn(),
                        seq,
                        &Event::NotYetFound {
                            at: &next,
                            note: &note,
                        },
                    )
                })
                .await?;
            Ok(Resolved::Waiting)
        }
        Stage::Unidentified | Stage::Undetermined => {
            let next = at(Duration::from_secs(300));
            let note = entry.last_error.clone().unwrap_or_default();
            ctx.db
                .call(move |s| {
                    journal::advance(
                        s.conn(),
                        seq,
                        &Event::NotYetFound {
                            at: &next,
                            note: &note,
                        },
                    )
                })
                .await?;
            Ok(Resolved::GaveUp)
        }
        _ => Ok(Resolved::Waiting),
    }
}

/// Fails an unresolved create whose identification deadline (`sync.identify_timeout_secs`
/// after it was accepted, or after its outcome settled) has passed, with `error` for the
/// person who must look; returns whether it did.
async fn give_up_if_overdue(ctx: &ResourceCtx, entry: &Entry, error: String) -> Result<bool, SyncError> {
    let since = entry.accepted_at.as_deref().or(entry.settle_at.as_deref());
    let Some(since) = since.and_then(parse_time) else {
        return Ok(false);
    };
    let limit = ctx.settings.sync.identify_timeout;
    let now = chrono::Utc::now();
    if now.signed_duration_since(since).to_std().unwrap_or_default() < limit {
        return Ok(false);
    }
    let deadline = (now - chrono::Duration::from_std(limit).unwrap_or_default())
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let seq = entry.seq;
    let applied = ctx
        .db
        .call(move |s| {
            match journal::advance(
                s.conn(),
                seq,
                &Event::GiveUpIdentifying {
                    deadline: &deadline,
                    error: &error,
                },
            ) {
                Ok(_) => Ok(true),
                Err(StoreError::Transition(_)) => Ok(false),
                Err(e) => Err(e),
            }
        })
        .await?;
    if applied {
        tracing::error!(resource = %ctx.kind, seq, local_id = entry.local_id,
            "unresolved create given up for a person (it is not sent again)");
    }
    Ok(applied)
}

/// Resolves a create just answered without an id (or with a 5xx), waiting in place a
/// little for a lagging list, so a run usually ends with the record identified.
pub(super) async fn resolve_soon(ctx: &ResourceCtx, seq: i64) -> Result<Resolved, SyncError> {
    let mut wait = ctx.settings.sync.retry_base.max(Duration::from_millis(200));
    let mut waited = Duration::ZERO;
    // At most `sync.max_attempts_per_run` lookups in place; later runs and passes go on.
    for _ in 0..ctx.retry.attempts() {
        let Some(entry) = ctx.db.call(move |s| journal::get(s.conn(), seq)).await? else {
            return Ok(Resolved::Waiting);
        };
        if !entry.stage.unresolved() {
            return Ok(Resolved::Found);
        }
        let resolved = resolve(ctx, &entry).await?;
        // An unknown outcome still settling, close enough to wait for in this run.
        let settle_in = entry
            .settle_at
            .as_deref()
            .and_then(parse_time)
            .and_then(|t| (t - chrono::Utc::now()).to_std().ok());
        let pause = match (resolved, entry.stage) {
            (Resolved::Waiting, Stage::Accepted) => wait,
            (Resolved::Waiting, Stage::Unknown) => settle_in.unwrap_or_default() + Duration::from_millis(50),
            (r, _) => return Ok(r),
        };
        if waited + pause > MAX_INLINE_WAIT / 2 || !ctx.retry.pause(pause).await {
            return Ok(Resolved::Waiting);
        }
        waited += pause;
        wait = (wait * 2).min(Duration::from_secs(4));
    }
    Ok(Resolved::Waiting)
}
