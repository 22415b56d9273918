//! `restsync plan`: a cycle's walk and merge without writing, then the pushes it would send.

use super::report::{Plan, PullStats};
use super::walk::run_walk;
use super::{ResourceCtx, SyncError};
use crate::store::mirror;

/// Dry run of a cycle: walk and merge without writing, then list the pushes.
pub async fn plan(ctx: &ResourceCtx) -> Result<Plan, SyncError> {
    let spec = ctx.api.spec;
    let mut stats = PullStats::default();
    let mut plan = Plan::default();
    let walk = run_walk(ctx, true, &mut stats, Some(&mut plan)).await?;
    let candidates = ctx.db.call(move |s| mirror::unseen_base(s.conn(), spec)).await?;
    if walk.consistent() {
        plan.pull_remove = candidates
            .iter()
            .map(|id| format!("id {id}: gone upstream"))
            .collect();
    } else if !candidates.is_empty() {
        plan.notes.push(format!(
            "upstream changed during the walk; {} record(s) not seen would be confirmed before removal",
            candidates.len()
        ));
    }
    let changes = ctx
        .db
        .call(move |s| mirror::local_changes(s.conn(), spec))
        .await?;
    for m in &changes.creates {
        plan.push_create.push(format!("local_id {}", m.local_id));
    }
    for (m, b) in &changes.updates {
        let cols = spec.changed_writable(&m.values, &b.values).join(", ");
        if spec.can_update {
            plan.push_update
                .push(format!("local_id {} (id {}): {cols}", m.local_id, b.id));
        } else {
            plan.notes.push(format!(
                "local_id {} (id {}): {cols} changed, but {} has no update endpoint; would be rejected",
                m.local_id, b.id, spec.table
            ));
        }
    }
    for b in &changes.deletes {
        plan.push_delete.push(format!("id {}", b.id));
    }
    // Say where a real cycle's guards would stop.
    let base = ctx.db.call(move |s| mirror::count_base(s.conn(), spec)).await? as f64;
    let fraction = ctx.settings.sync.max_delete_fraction;
    for (what, n) in [
        ("removals from the mirror", plan.pull_remove.len()),
        ("deletes upstream", plan.push_delete.len()),
    ] {
        if n > 0 && n as f64 > fraction * base && !ctx.opts.allow_mass_delete {
            plan.notes.push(format!(
                "the {n} {what} exceed sync.max_delete_fraction ({fraction}) of {base} rows: a cycle would refuse them \
                 unless run with --allow-mass-delete"
            ));
        }
    }
    Ok(plan)
}
