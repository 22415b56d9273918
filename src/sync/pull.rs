//! Pull: walk every page of a resource and merge each record into the mirror; then, only
//! after a walk is verified complete and the absences are confirmed, remove what upstream
//! no longer holds.

use super::removal::{apply_removals, confirm_absent, confirmable_by_get, guard_removals};
use super::report::PullStats;
use super::walk::run_walk;
use super::{ResourceCtx, SyncError};
use crate::store::{mirror, sync_state};
use std::time::Instant;

/// Walks tried before giving up on a consistent one this cycle.
const MAX_WALKS: u32 = 3;

pub async fn pull(ctx: &ResourceCtx) -> Result<PullStats, SyncError> {
    let started = Instant::now();
    let spec = ctx.api.spec;
    let resource = spec.table;
    ctx.db
        .call(move |s| sync_state::walk_started(s.conn(), resource))
        .await?;
    let mut stats = PullStats::default();
    // Into an empty mirror, every base snapshot a single walk leaves is one it saw: no
    // scan for records it missed (the first pull of a large account skips reading it all).
    let empty = !ctx.db.call(move |s| mirror::has_base(s.conn(), spec)).await?;

    let mut walk = run_walk(ctx, false, &mut stats, None).await?;
    // Completeness gates removals only: a walk that churned (records added or moved while
    // it ran) but saw every record the mirror knows needs no second walk.
    let mut candidates = match empty {
        true => Vec::new(),
        false => in_scope_unseen(ctx).await?,
    };
    // A GET settles a few absences whatever the walks saw; only beyond that (or without a
    // GET endpoint) does a removal need a walk that listed everything. Walking again first
    // still pays: it brings in what the churn hid from this walk.
    let by_get = |n: usize| confirmable_by_get(ctx, n);
    while !walk.consistent() && !candidates.is_empty() && stats.walks < MAX_WALKS {
        tracing::info!(
            resource,
            received = walk.received,
            total = walk.total,
            repeats = walk.repeats,
            unseen = candidates.len(),
            "upstream changed during the walk; walking again before removing anything"
        );
        walk = run_walk(ctx, false, &mut stats, None).await?;
        candidates = in_scope_unseen(ctx).await?;
    }
    let mut problem = None;
    if !walk.unreadable.is_empty() {
        let shown: Vec<&str> = walk.unreadable.iter().take(3).map(String::as_str).collect();
        let more = walk.unreadable.len().saturating_sub(3);
        problem = Some(SyncError::NeedsHuman(format!(
            "{resource}: {} record(s) upstream could not be read and were skipped: {}{}. The rest of the walk was applied; \
             fix the record upstream",
            walk.unreadable.len(),
            shown.join("; "),
            if more > 0 { format!(" (and {more} more)") } else { String::new() }
        )));
    }
    if walk.no_id > 0 {
        return Err(SyncError::Postponed(format!(
            "{resource}: {} record(s) upstream have no usable id (see the log); nothing was removed from the mirror this cycle",
            walk.no_id
        )));
    }
    if !walk.consistent() && !candidates.is_empty() && !by_get(candidates.len()) {
        return Err(SyncError::Postponed(format!(
            "{resource}: upstream kept changing during {} walks (last: {} records received, total {}); {} removal(s) postponed \
             to the next cycle (local changes were merged and pushed as usual)",
            stats.walks,
            walk.received,
            walk.total,
            candidates.len()
        )));
    }

    let (confirmed, still_there) = confirm_absent(ctx, candidates.clone(), &mut stats, false).await?;
    // A walk that claimed to be complete, contradicted by GET: the list is broken. (After a
    // churning walk, records it missed are expected to still be there.)
    if still_there > 0 && walk.consistent() {
        // The list says gone, GET says present: upstream's list is broken. Keep every row.
        tracing::warn!(
            resource,
            listed = walk.received,
            total = walk.total,
            missing_from_list = candidates.len(),
            still_present = still_there,
            "upstream anomaly: records missing from the list still exist; the mirror keeps every row"
        );
        return Err(SyncError::Postponed(format!(
            "{resource}: upstream anomaly: the list returned {} record(s) (total {}), but {still_there} of the {} record(s) \
             missing from it still exist upstream; nothing was removed. The next cycle checks again",
            walk.received,
            walk.total,
            candidates.len()
        )));
    }
    if !confirmed.is_empty() {
        guard_removals(ctx, confirmed.len()).await?;
        let policy = ctx.settings.sync.on_conflict;
        let (removed, conflicts) = ctx
            .db
            .call(move |s| apply_removals(s, spec, policy, &confirmed))
            .await?;
        stats.removed += removed;
        stats.conflicts += conflicts;
    }
    let millis = started.elapsed().as_millis() as i64;
    let pages = stats.pages as i64;
    let rows = ctx
        .db
        .call(move |s| {
            let rows = mirror::count_mirror(s.conn(), spec)?;
            sync_state::walk_completed(s.conn(), resource, rows, pages, millis)?;
            Ok(rows)
        })
        .await?;
    tracing::debug!(resource, rows, "walk complete");
    match problem {
        Some(p) => Err(p),
        None => Ok(stats),
    }
}

/// Base records the walk did not list, except those outside the resource's scope (the
/// fixed list filters never list them, so their absence proves nothing).
pub(super) async fn in_scope_unseen(ctx: &ResourceCtx) -> Result<Vec<i64>, SyncError> {
    let spec = ctx.api.spec;
    let scope: Vec<(&'static str, String)> = ctx.api.scope().to_vec();
    Ok(ctx
        .db
        .call(move |s| {
            let mut out = Vec::new();
            for id in mirror::unseen_base(s.conn(), spec)? {
                let in_scope = match mirror::base_by_id(s.conn(), spec, id)? {
                    Some(base) => scope.iter().all(|(column, wanted)| {
                        spec.column_index(column)
                            .is_none_or(|i| crate::resources::describe_value(&base.values[i]) == *wanted)
                    }),
                    None => false,
                };
                if in_scope {
                    out.push(id);
                }
            }
            Ok(out)
        })
        .await?)
}

#[cfg(test)]
mod tests;
