//! Removals: records missing from a walk leave the mirror only once the walk was complete,
//! their absence is confirmed (by GET, or a second walk), and the guard allows that many.

use super::merge::{self, MirrorAction};
use super::report::PullStats;
use super::{ResourceCtx, SyncError};
use crate::config::ConflictPolicy;
use crate::resources::ResourceSpec;
use crate::store::{mirror, Store, StoreError};

use super::apply::{apply_mirror_action, record_conflicts};
use super::walk::run_walk;
/// Absences confirmed one GET at a time up to this many; beyond, by a second walk.
pub(super) const CONFIRM_BY_GET_MAX: usize = 50;

/// Confirms that records missing from a walk are really gone: by GET when there are few
/// and the API has one, else by a second complete walk. Returns the confirmed ids and how
/// many of the candidates turned out to still exist (an anomaly of upstream's list). A
/// `dry` confirmation (plan) reads upstream the same way and writes nothing.
pub(super) async fn confirm_absent(
    ctx: &ResourceCtx,
    candidates: Vec<i64>,
    stats: &mut PullStats,
    dry: bool,
) -> Result<(Vec<i64>, usize), SyncError> {
    if candidates.is_empty() {
        return Ok((candidates, 0));
    }
    let spec = ctx.api.spec;
    if confirmable_by_get(ctx, candidates.len()) {
        let mut gone = Vec::new();
        let asked = candidates.len();
        for id in candidates {
            let what = format!("{} get {id}", spec.table);
            let found = ctx.retry.run(&what, || ctx.api.get(id)).await?;
            if found.is_none() {
                gone.push(id);
            }
        }
        let still_there = asked - gone.len();
        return Ok((gone, still_there));
    }
    let walk = run_walk(ctx, dry, stats, None).await?;
    if !walk.consistent() {
        return Err(SyncError::Postponed(format!(
            "{}: {} record(s) were missing from a walk but upstream changed during the confirming walk; removals postponed",
            spec.table,
            candidates.len()
        )));
    }
    let unseen: std::collections::HashSet<i64> = ctx
        .db
        .call(move |s| mirror::unseen_base(s.conn(), spec))
        .await?
        .into_iter()
        .collect();
    // Only what both walks missed goes.
    Ok((
        candidates.into_iter().filter(|id| unseen.contains(id)).collect(),
        0,
    ))
}

/// Whether `n` absences are settled one GET at a time (else only a complete walk can).
pub(super) fn confirmable_by_get(ctx: &ResourceCtx, n: usize) -> bool {
    ctx.api.can_get() && n <= CONFIRM_BY_GET_MAX
}

pub(super) async fn guard_removals(ctx: &ResourceCtx, removals: usize) -> Result<(), SyncError> {
    let spec = ctx.api.spec;
    let base = ctx.db.call(move |s| mirror::count_base(s.conn(), spec)).await?;
    let fraction = ctx.settings.sync.max_delete_fraction;
    if removals as f64 > fraction * base as f64 && !ctx.opts.allow_mass_delete {
        return Err(SyncError::NeedsHuman(format!(
            "{}: the walk would remove {removals} of {base} rows from the mirror, more than sync.max_delete_fraction ({fraction}); \
             the mirror was left untouched. If upstream really lost these records, run `restsync sync --once --allow-mass-delete`",
            spec.table
        )));
    }
    Ok(())
}

pub(super) fn apply_removals(
    store: &mut Store,
    spec: &'static ResourceSpec,
    policy: ConflictPolicy,
    ids: &[i64],
) -> Result<(u64, u64), StoreError> {
    store.write(|tx| {
        let (mut removed, mut conflicts) = (0, 0);
        for id in ids {
            let Some(base) = mirror::base_by_id(tx, spec, *id)? else {
                continue;
            };
            let local = mirror::mirror_by_id(tx, spec, *id)?;
            let merged = merge::merge_absent(spec, policy, &base, local.as_ref());
            if matches!(merged.mirror, MirrorAction::Delete { .. }) {
                removed += 1;
            }
            conflicts += merged.conflicts.len() as u64;
            let local_id = apply_mirror_action(tx, spec, None, &merged, local.as_ref().map(|m| m.local_id))?;
            record_conflicts(
                tx,
                spec,
                local_id.or(base.local_id),
                Some(*id),
                policy,
                &merged.conflicts,
            )?;
            mirror::delete_base(tx, spec, *id)?;
            // A local edit kept against the removal is now a row to create.
            mirror::mark_if_changed(tx, spec, local_id, None)?;
        }
        Ok((removed, conflicts))
    })
}

#[cfg(test)]
mod tests;
