//! `restsync plan`: a cycle's walk and merge without writing, then the pushes it would send.

use super::enqueue::{entry_stays, key_of, Desired};
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

/// The local changes as they stand now, before the walk.
async fn changes_now(ctx: &ResourceCtx) -> Result<mirror::LocalChanges, SyncError> {
    let spec = ctx.api.spec;
    Ok(ctx
        .db
        .call(move |s| mirror::local_changes(s.conn(), spec))
        .await?)
}

/// The local changes as the cycle's walk would leave them (rows merged with upstream's
/// record, the base become upstream's values), and apart, the edited rows of records gone
/// upstream (conflicts the removal settles, not changes to push).
fn merged_changes(
    spec: &ResourceSpec,
    mut changes: mirror::LocalChanges,
    merged: &std::collections::HashMap<i64, MergedRow>,
    gone: &std::collections::HashSet<i64>,
) -> (Vec<mirror::MirrorRow>, mirror::LocalChanges) {
    let mut gone_edits = Vec::new();
    let mut updates = Vec::new();
    for (mut m, mut b) in std::mem::take(&mut changes.updates) {
        if gone.contains(&b.id) {
            gone_edits.push(m);
            continue;
        }
        if let Some(r) = merged.get(&b.id) {
            // The row is gone after the merge (a remote-wins delete): nothing to send.
            let Some(after) = &r.after else { continue };
            m.values = after.clone();
            b.values = r.remote.clone();
        }
        if !spec.changed_writable(&m.values, &b.values).is_empty() {
            updates.push((m, b));
        }
    }
    changes.updates = updates;
    // A local delete of a record gone upstream settles itself; one of a record changed
    // upstream is restored by the merge.
    changes
        .deletes
        .retain(|b| !gone.contains(&b.id) && merged.get(&b.id).is_none_or(|r| r.after.is_none()));
    for b in &mut changes.deletes {
        if let Some(r) = merged.get(&b.id) {
            b.values = r.remote.clone();
        }
    }
    (gone_edits, changes)
}

/// One planned change as a person reads it: the create's values, the update's fields
/// `old -> new`, the delete's record.
fn describe_change(spec: &ResourceSpec, changes: &mirror::LocalChanges, d: &Desired) -> String {
    match d.op {
        Op::Create => {
            let values = changes
                .creates
                .iter()
                .find(|m| Some(m.local_id) == d.local_id)
                .map(|m| values_text(spec, &m.values))
                .unwrap_or_default();
            format!("local_id {}: {values}", d.local_id.unwrap_or_default())
        }
        Op::Update => {
            let fields = changes
                .updates
                .iter()
                .find(|(m, _)| Some(m.local_id) == d.local_id)
                .map(|(m, b)| {
                    spec.columns
                        .iter()
                        .enumerate()
                        .filter(|(i, c)| c.writable && m.values[*i] != b.values[*i])
                        .map(|(i, c)| {
                            format!(
                                "{}: {} -> {}",
                                c.name,
                                value_to_json(&b.values[i]),
                                value_to_json(&m.values[i])
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            format!(
                "local_id {} (id {}): {fields}",
                d.local_id.unwrap_or_default(),
                d.upstream_id.unwrap_or_default()
            )
        }
        Op::Delete => {
            let values = changes
                .deletes
                .iter()
                .find(|b| Some(b.id) == d.upstream_id)
                .map(|b| values_text(spec, &b.values))
                .unwrap_or_default();
            format!("id {}: {values}", d.upstream_id.unwrap_or_default())
        }
    }
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
            plan.upstream_unsettled = true;
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
        plan.upstream_unsettled = true;
        plan.notes.push(format!(
            "upstream changed during the walk; {} record(s) not seen would be confirmed before removal",
            candidates.len()
        ));
    }
    // Say where a real cycle's guards would stop, judged on the counts the cycle judges
    // on: the removal guard after the walk added its new records, the delete guard after
    // the removals too. Removals the guard holds do not happen: the records stay, so local
    // edits and deletes of them are pushed as usual.
    let stored = ctx.db.call(move |s| mirror::count_base(s.conn(), spec)).await? as usize;
    let after_walk = stored + plan.new_records;
    let fraction = ctx.settings.sync.max_delete_fraction;
    let guarded =
        |n: usize, base: usize| n > 0 && n as f64 > fraction * base as f64 && !ctx.opts.allow_mass_delete;
    let guard_note = |n: usize, what: &str, base: usize| {
        format!(
            "the {n} {what} exceed sync.max_delete_fraction ({fraction}) of {base} rows: a cycle would refuse them \
             unless run with --allow-mass-delete"
        )
    };
    let mut after_removals = after_walk.saturating_sub(removals);
    if guarded(removals, after_walk) {
        plan.notes
            .push(guard_note(removals, "removals from the mirror", after_walk));
        plan.guard_would_refuse = true;
        plan.pull_remove.clear();
        gone.clear();
        after_removals = after_walk;
    }
    let merged_rows = std::mem::take(&mut plan.merged_rows);
    let (gone_edits, changes) = merged_changes(spec, changes_now(ctx).await?, &merged_rows, &gone);
    let scope = ctx.api.scope().to_vec();
    let (changes, active, desired) = ctx
        .db
        .call(move |s| {
            // The same question the cycle asks of the rows as its walk leaves them, so plan
            // lists only what it would send, and refuses what it would refuse.
            let desired = super::enqueue::desired_changes(s.conn(), spec, &scope, &changes)?;
            Ok((changes, journal::active(s.conn(), spec.table)?, desired))
        })
        .await?;
    // Rows naming an id upstream never gave: the cycle reports them for a person (65).
    let unknown = ctx.db.call(move |s| mirror::unknown_ids(s.conn(), spec)).await?;
    for (local_id, id) in unknown.into_iter().filter(|_| walk.consistent()) {
        plan.failed.push(format!(
            "local_id {local_id} (id {id}): names an id upstream does not have; neither created nor removed \
             (set its id to NULL to create it, or delete the row)"
        ));
    }
    let policy = ctx.settings.sync.on_conflict;
    for m in &gone_edits {
        plan.conflicts.push(format!(
            "{} id {}: deleted_upstream local={}{}",
            spec.table,
            m.id.unwrap_or_default(),
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
    }
    for d in &desired {
        let key = key_of(d.op, d.local_id, d.upstream_id);
        let entry = active
            .iter()
            .find(|e| key_of(e.op, e.local_id, e.upstream_id) == key);
        let what = describe_change(spec, &changes, d);
        match entry {
            // Being settled (or waiting for a person to say what became of it): the
            // cycle sends nothing for this row until then.
            Some(e) if entry_stays(e, d) && e.stage.unresolved() => {
                let line = format!(
                    "{what}: its {} (journal {}) is {}; not sent again",
                    e.op, e.seq, e.stage
                );
                match e.stage.needs_human() {
                    true => plan.failed.push(line),
                    // Being settled: the cycle leaves it for a later run (75), unless its
                    // walk finds the record it made (noted above) and adopts it.
                    false => {
                        let adopted = format!("journal {}'s create", e.seq);
                        plan.upstream_unsettled |= !plan.notes.iter().any(|n| n.contains(&adopted));
                        plan.notes.push(line)
                    }
                }
            }
            Some(e) if entry_stays(e, d) && e.stage == Stage::Failed => plan.failed.push(format!(
                "{what}: journal {} failed: {}",
                e.seq,
                e.last_error.as_deref().unwrap_or("failed")
            )),
            _ => match &d.rejected {
                Some(reason) => plan.failed.push(format!("{what}: would be refused: {reason}")),
                None => match d.op {
                    Op::Create => plan.push_create.push(what),
                    Op::Update => plan.push_update.push(what),
                    Op::Delete => plan.push_delete.push(what),
                },
            },
        }
    }
    // What the guard would hold is not what the cycle would do: listed as held, not counted.
    if guarded(plan.push_delete.len(), after_removals) {
        plan.notes.push(guard_note(
            plan.push_delete.len(),
            "deletes upstream",
            after_removals,
        ));
        plan.guard_would_refuse = true;
        for d in std::mem::take(&mut plan.push_delete) {
            plan.failed
                .push(format!("{d}: would be held by the mass-delete guard"));
        }
    }
    Ok(plan)
}
