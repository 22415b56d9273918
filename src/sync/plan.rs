//! `restsync plan`: a cycle's walk and merge without writing, then the pushes it would send.

use super::enqueue::journal_values;
use super::removal::{confirm_absent, confirmable_by_get};
use super::report::{MergedRow, Plan, PullStats};
use super::walk::run_walk;
use super::{ResourceCtx, SyncError};
use crate::resources::{value_to_json, ResourceSpec};
use crate::store::journal::{self, Op, Stage};
use crate::store::mirror;
use rusqlite::types::Value;

/// A row's writable values, shortly: what a create sends, what a delete removes.
fn values_text(spec: &ResourceSpec, values: &[Value]) -> String {
    let text = spec
        .columns
        .iter()
        .zip(values)
        .filter(|(c, v)| c.writable && **v != Value::Null)
        .map(|(c, v)| format!("{}={}", c.name, value_to_json(v)))
        .collect::<Vec<_>>()
        .join(", ");
    crate::resources::truncate(&text, 160)
}

/// Dry run of a cycle: walk and merge without writing, then list the pushes.
pub async fn plan(ctx: &ResourceCtx) -> Result<Plan, SyncError> {
    let spec = ctx.api.spec;
    let mut stats = PullStats::default();
    let mut plan = Plan::default();
    let walk = run_walk(ctx, true, &mut stats, Some(&mut plan)).await?;
    // As the cycle counts them: records outside the scope are never listed, so their
    // absence proves nothing and they are not removed.
    let candidates = super::pull::in_scope_unseen(ctx).await?;
    // Records missing from the walk are gone upstream only once confirmed as the cycle
    // confirms them (GET, or a second walk): a list that lost records while upstream still
    // holds them must not read as removals, nor an edit of one as a conflict.
    let mut gone = std::collections::HashSet::new();
    let mut removals = 0;
    if !candidates.is_empty() && (walk.consistent() || confirmable_by_get(ctx, candidates.len())) {
        let asked = candidates.len();
        let (confirmed, still_there) = confirm_absent(ctx, candidates, &mut stats, true).await?;
        if still_there > 0 && walk.consistent() {
            plan.notes.push(format!(
                "upstream anomaly: {asked} record(s) missing from the list, but {still_there} of them still exist \
                 upstream; a cycle would remove nothing and check again"
            ));
        } else {
            // Counted as the cycle counts them: a row deleted here too, or kept by
            // local-wins because it was edited, is not removed from the mirror.
            let policy = ctx.settings.sync.on_conflict;
            let ids = confirmed.clone();
            let removed = ctx
                .db
                .call(move |s| {
                    let mut removed = Vec::new();
                    for id in ids {
                        let Some(base) = mirror::base_by_id(s.conn(), spec, id)? else {
                            continue;
                        };
                        let local = mirror::mirror_by_id(s.conn(), spec, id)?;
                        let merged = super::merge::merge_absent(spec, policy, &base, local.as_ref());
                        if matches!(merged.mirror, super::merge::MirrorAction::Delete { .. }) {
                            removed.push(id);
                        }
                    }
                    Ok(removed)
                })
                .await?;
            plan.pull_remove = removed
                .iter()
                .map(|id| format!("id {id}: gone upstream"))
                .collect();
            removals = confirmed.len();
            gone = confirmed.into_iter().collect();
        }
    } else if !candidates.is_empty() {
        plan.notes.push(format!(
            "upstream changed during the walk; {} record(s) not seen would be confirmed before removal",
            candidates.len()
        ));
    }
    // Say where a real cycle's guards would stop. Removals the guard holds do not happen:
    // the records stay, so local edits and deletes of them are pushed as usual.
    let base = ctx.db.call(move |s| mirror::count_base(s.conn(), spec)).await? as f64;
    let fraction = ctx.settings.sync.max_delete_fraction;
    let guarded = |n: usize| n > 0 && n as f64 > fraction * base && !ctx.opts.allow_mass_delete;
    let guard_note = |n: usize, what: &str| {
        format!(
            "the {n} {what} exceed sync.max_delete_fraction ({fraction}) of {base} rows: a cycle would refuse them \
             unless run with --allow-mass-delete"
        )
    };
    if guarded(removals) {
        plan.notes.push(guard_note(removals, "removals from the mirror"));
        plan.guard_would_refuse = true;
        plan.pull_remove.clear();
        gone.clear();
    }
    let scope = ctx.api.scope().to_vec();
    let scope_for_db = scope.clone();
    let (changes, failed, active, desired) = ctx
        .db
        .call(move |s| {
            let changes = mirror::local_changes(s.conn(), spec)?;
            let desired = super::enqueue::desired_changes(s.conn(), spec, &scope_for_db, &changes)?;
            Ok((
                changes,
                journal::failed(s.conn(), spec.table)?,
                journal::active(s.conn(), spec.table)?,
                desired,
            ))
        })
        .await?;
    // What the cycle would journal for each changed row, and why not when it would refuse:
    // the same question the cycle asks, so plan lists only what it would send.
    let refused = |op: Op, local_id: Option<i64>, upstream_id: Option<i64>| -> Option<Option<String>> {
        desired
            .iter()
            .find(|d| {
                d.op == op
                    && match op {
                        Op::Create => d.local_id == local_id,
                        _ => d.upstream_id == upstream_id,
                    }
            })
            .map(|d| d.rejected.clone())
    };
    // A change whose entry failed as it stands is not sent by the next cycle: shown as
    // failed, not as a push.
    let failed_as_is = |op: Op, local_id: Option<i64>, id: Option<i64>, values: &[Value]| {
        let row_values = journal_values(spec, values);
        failed.iter().find(|e| {
            e.op == op
                && e.row_values == row_values
                && match op {
                    Op::Create => e.local_id == local_id,
                    _ => e.upstream_id == id,
                }
        })
    };
    let show_failed = |plan: &mut Plan, what: String, e: &journal::Entry| {
        plan.failed.push(format!(
            "{what}: journal {} failed: {}",
            e.seq,
            e.last_error.as_deref().unwrap_or("failed")
        ));
    };
    for m in &changes.creates {
        let what = format!("local_id {}: {}", m.local_id, values_text(spec, &m.values));
        // A create already sent whose outcome is being settled (or that needs a person)
        // is never sent again by a cycle, whatever the row holds now.
        let settling = active.iter().find(|e| {
            e.op == Op::Create
                && e.local_id == Some(m.local_id)
                && !matches!(e.stage, Stage::Queued | Stage::Failed)
        });
        if let Some(e) = settling {
            let line = format!(
                "{what}: its create (journal {}) is {}; not sent again",
                e.seq, e.stage
            );
            match e.stage.needs_human() {
                true => plan.failed.push(line),
                false => plan.notes.push(line),
            }
            continue;
        }
        match refused(Op::Create, Some(m.local_id), None) {
            // Not a create at all: a row whose id was cleared by hand (refused as such).
            None => continue,
            Some(Some(reason)) if failed_as_is(Op::Create, Some(m.local_id), None, &m.values).is_none() => {
                plan.failed.push(format!("{what}: would be refused: {reason}"));
                continue;
            }
            _ => {}
        }
        match failed_as_is(Op::Create, Some(m.local_id), None, &m.values) {
            Some(e) => show_failed(&mut plan, what, e),
            None if !spec.can_create => plan.notes.push(format!(
                "{what}: new, but {} has no create endpoint; would be rejected",
                spec.table
            )),
            None => plan.push_create.push(what),
        }
    }
    // The cycle merges the walk first and journals what is left against the new base: plan
    // the same, so a remote-wins conflict or a record deleted upstream lists no push.
    let merged_rows = std::mem::take(&mut plan.merged_rows);
    let policy = ctx.settings.sync.on_conflict;
    for (m, b) in &changes.updates {
        if gone.contains(&b.id) {
            plan.conflicts.push(format!(
                "{} id {}: deleted_upstream local={}{}",
                spec.table,
                b.id,
                values_text(spec, &m.values),
                super::apply::resolution_text("deleted_upstream", policy)
            ));
            if policy == crate::config::ConflictPolicy::LocalWins {
                plan.push_create.push(format!(
                    "local_id {}: created again (deleted upstream, edited here; local-wins): {}",
                    m.local_id,
                    values_text(spec, &m.values)
                ));
            }
            continue;
        }
        if let Some(Some(reason)) = refused(Op::Update, Some(m.local_id), Some(b.id)) {
            if failed_as_is(Op::Update, Some(m.local_id), Some(b.id), &m.values).is_none() {
                plan.failed.push(format!(
                    "local_id {} (id {}): would be refused: {reason}",
                    m.local_id, b.id
                ));
                continue;
            }
        }
        let (after, against) = match merged_rows.get(&b.id) {
            Some(MergedRow {
                after: Some(after),
                remote,
            }) => (after, remote),
            Some(MergedRow { after: None, .. }) => continue,
            None => (&m.values, &b.values),
        };
        if spec.changed_writable(after, against).is_empty() {
            continue;
        }
        let cols = spec
            .columns
            .iter()
            .enumerate()
            .filter(|(i, c)| c.writable && after[*i] != against[*i])
            .map(|(i, c)| {
                format!(
                    "{}: {} -> {}",
                    c.name,
                    value_to_json(&against[i]),
                    value_to_json(&after[i])
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let what = format!("local_id {} (id {}): {cols}", m.local_id, b.id);
        if let Some(e) = failed_as_is(Op::Update, Some(m.local_id), Some(b.id), &m.values) {
            show_failed(&mut plan, what, e);
        } else if spec.can_update {
            plan.push_update.push(what);
        } else {
            plan.notes.push(format!(
                "local_id {} (id {}): {cols} changed, but {} has no update endpoint; would be rejected",
                m.local_id, b.id, spec.table
            ));
        }
    }
    for b in &changes.deletes {
        let restored = merged_rows.get(&b.id).is_some_and(|r| r.after.is_some());
        if restored || gone.contains(&b.id) {
            continue;
        }
        if let Some(Some(reason)) = refused(Op::Delete, b.local_id, Some(b.id)) {
            if failed_as_is(Op::Delete, b.local_id, Some(b.id), &b.values).is_none() {
                plan.failed
                    .push(format!("id {}: would be refused: {reason}", b.id));
                continue;
            }
        }
        let what = format!("id {}: {}", b.id, values_text(spec, &b.values));
        match failed_as_is(Op::Delete, b.local_id, Some(b.id), &b.values) {
            Some(e) => show_failed(&mut plan, what, e),
            None if !spec.can_delete => plan.notes.push(format!(
                "{what}: deleted locally, but {} has no delete endpoint; would be rejected",
                spec.table
            )),
            None => plan.push_delete.push(what),
        }
    }
    // What the guard would hold is not what the cycle would do: listed as held, not counted.
    if guarded(plan.push_delete.len()) {
        plan.notes
            .push(guard_note(plan.push_delete.len(), "deletes upstream"));
        plan.guard_would_refuse = true;
        for d in std::mem::take(&mut plan.push_delete) {
            plan.failed
                .push(format!("{d}: would be held by the mass-delete guard"));
        }
    }
    Ok(plan)
}
