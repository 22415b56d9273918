//! Pull: walk every page of a resource and merge each record into the mirror; then, only
//! after a walk is verified complete and the absences are confirmed, remove what upstream
//! no longer holds. Pages are fetched concurrently and applied in order, one transaction
//! per page, so memory stays bounded by `sync.concurrency` pages.

use super::merge::{self, ConflictNote, Merged, MirrorAction};
use super::report::{Plan, PullStats};
use super::retry::RetryPolicy;
use super::writeback::adopt_in;
use super::{ResourceCtx, SyncError};
use crate::config::ConflictPolicy;
use crate::resources::ResourceSpec;
use crate::store::mirror::{BaseRow, MirrorRow};
use crate::store::{content_hash, journal, mirror, state, Store, StoreError};
use crate::upstream::{Page, ResourceApi, UpstreamError};
use futures::StreamExt;
use rusqlite::types::Value;
use rusqlite::Connection;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::io::IsTerminal;
use std::time::Instant;

use super::removal::{apply_removals, confirm_absent, guard_removals};
/// Walks tried before giving up on a consistent one this cycle.
const MAX_WALKS: u32 = 3;

#[derive(Deserialize)]
struct IdOnly {
    id: serde_json::Value,
}

fn record_id(raw: &RawValue) -> Option<i64> {
    let v: IdOnly = serde_json::from_str(raw.get()).ok()?;
    match v.id {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// How one walk went.
#[derive(Debug, Default)]
pub(super) struct Walk {
    pages: u64,
    received: u64,
    total: u64,
    totals_stable: bool,
    repeats: u64,
    /// Records without a usable id: their absence from the seen set proves nothing.
    no_id: u64,
    /// Records with an id whose fields could not be read (counted as seen).
    unreadable: Vec<String>,
}

impl Walk {
    /// Every record was listed exactly once. A record whose fields are unreadable still
    /// counts as listed: it is a data problem upstream, not churn.
    pub(super) fn consistent(&self) -> bool {
        self.totals_stable && self.repeats == 0 && self.no_id == 0 && self.received == self.total
    }
}

#[derive(Default)]
struct PageResult {
    repeats: u64,
    no_id: u64,
    unreadable: Vec<String>,
    inserted: u64,
    updated: u64,
    unchanged: u64,
    conflicts: u64,
    plan: Plan,
}

pub async fn pull(ctx: &ResourceCtx) -> Result<PullStats, SyncError> {
    let started = Instant::now();
    let spec = ctx.api.spec;
    let resource = spec.table;
    ctx.db
        .call(move |s| state::walk_started(s.conn(), resource))
        .await?;
    let mut stats = PullStats::default();

    let mut walk = run_walk(ctx, false, &mut stats, None).await?;
    // Completeness gates removals only: a walk that churned (records added or moved while
    // it ran) but saw every record the mirror knows needs no second walk.
    let mut candidates = in_scope_unseen(ctx).await?;
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
        return Err(SyncError::NeedsHuman(format!(
            "{resource}: {} record(s) upstream have no usable id (see the log); nothing was removed from the mirror this cycle",
            walk.no_id
        )));
    }
    if !walk.consistent() && !candidates.is_empty() {
        return Err(SyncError::Postponed(format!(
            "{resource}: upstream kept changing during {} walks (last: {} records received, total {}); {} removal(s) postponed \
             to the next cycle (local changes were merged and pushed as usual)",
            stats.walks,
            walk.received,
            walk.total,
            candidates.len()
        )));
    }

    let (confirmed, still_there) = confirm_absent(ctx, candidates.clone(), &mut stats).await?;
    if still_there > 0 {
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
            state::walk_completed(s.conn(), resource, rows, pages, millis)?;
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
async fn in_scope_unseen(ctx: &ResourceCtx) -> Result<Vec<i64>, SyncError> {
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

async fn fetch_page(
    api: &ResourceApi,
    retry: &RetryPolicy,
    per_page: u32,
    page: u64,
) -> Result<Page, UpstreamError> {
    let what = format!("{} page {page}", api.spec.table);
    retry.run(&what, || api.list_page(page, per_page, &[])).await
}

pub(super) async fn run_walk(
    ctx: &ResourceCtx,
    dry: bool,
    stats: &mut PullStats,
    mut plan: Option<&mut Plan>,
) -> Result<Walk, SyncError> {
    let spec = ctx.api.spec;
    let policy = ctx.settings.sync.on_conflict;
    stats.walks += 1;
    ctx.db.call(move |s| mirror::begin_walk(s.conn(), spec)).await?;
    let progress = std::io::stderr().is_terminal() && !dry;

    let per_page = ctx.settings.sync.per_page;
    let first = fetch_page(&ctx.api, &ctx.retry, per_page, 1).await?;
    let mut walk = Walk {
        total: first.total,
        totals_stable: true,
        ..Walk::default()
    };
    let last_page = first.last_page;
    let expected_last = first.last_page;
    // Each page is fetched on its own task, so up to `concurrency` requests are in flight
    // while earlier pages are being written; pages are still applied in order.
    let (api, retry) = (ctx.api.clone(), ctx.retry.clone());
    let mut rest = futures::stream::iter(2..=last_page)
        .map(move |p| {
            let (api, retry) = (api.clone(), retry.clone());
            tokio::spawn(async move { fetch_page(&api, &retry, per_page, p).await })
        })
        .buffered(ctx.settings.sync.concurrency);
    let mut next: Option<Page> = Some(first);
    let mut page_no = 1u64;
    while let Some(page) = next.take() {
        if ctx.shutdown.is_cancelled() {
            return Err(SyncError::Postponed(format!(
                "{}: shutting down; walk interrupted",
                spec.table
            )));
        }
        if page.total != walk.total || page.last_page != expected_last {
            walk.totals_stable = false;
        }
        walk.pages += 1;
        let count = page.records.len() as u64;
        walk.received += count;
        let records = page.records;
        let r = ctx
            .db
            .call(move |s| apply_page(s, spec, policy, page_no, records, dry))
            .await?;
        walk.repeats += r.repeats;
        walk.no_id += r.no_id;
        stats.bad_records += r.no_id + r.unreadable.len() as u64;
        walk.unreadable.extend(r.unreadable);
        stats.inserted += r.inserted;
        stats.updated += r.updated;
        stats.unchanged += r.unchanged;
        stats.conflicts += r.conflicts;
        if let Some(plan) = plan.as_deref_mut() {
            plan.pull_insert.extend(r.plan.pull_insert);
            plan.pull_update.extend(r.plan.pull_update);
            plan.conflicts.extend(r.plan.conflicts);
        }
        if progress {
            eprint!(
                "\r{}: page {page_no}/{last_page}, {} records ",
                spec.table, walk.received
            );
        }
        // A page past the end of the listing (empty) or holding nothing new (an API that
        // ignores `page`) means the page count cannot be trusted: stop instead of walking
        // on to `last_page`, which a garbled answer can set absurdly high. The walk then
        // counts as inconsistent, so nothing is removed on its strength.
        if page_no > 1 && page_no < last_page && (count == 0 || r.repeats == count) {
            walk.totals_stable = false;
            break;
        }
        page_no += 1;
        next = match rest.next().await {
            None => None,
            Some(Ok(fetched)) => Some(fetched?),
            Some(Err(join)) => {
                return Err(SyncError::Postponed(format!(
                    "{}: page fetch task failed: {join}",
                    spec.table
                )))
            }
        };
    }
    if progress {
        eprintln!();
    }
    stats.pages += walk.pages;
    stats.records += walk.received;
    Ok(walk)
}

/// Merges one page into the mirror in one transaction.
fn apply_page(
    store: &mut Store,
    spec: &'static ResourceSpec,
    policy: ConflictPolicy,
    page_no: u64,
    records: Vec<Box<RawValue>>,
    dry: bool,
) -> Result<PageResult, StoreError> {
    let mut result = PageResult::default();
    let mut parsed = Vec::with_capacity(records.len());
    for raw in &records {
        match record_id(raw) {
            Some(id) => parsed.push((id, raw)),
            None => {
                result.no_id += 1;
                tracing::warn!(resource = spec.table, page = page_no, record = %crate::resources::truncate(raw.get(), 120),
                    "upstream record has no usable id; skipped");
            }
        }
    }
    let ids: Vec<i64> = parsed.iter().map(|(id, _)| *id).collect();
    let body = |conn: &Connection, result: &mut PageResult| -> Result<(), StoreError> {
        let hashes = mirror::base_hashes(conn, spec, &ids)?;
        // Creates whose effect upstream is not known yet: a new record that matches one is
        // the record it made, adopted here instead of being copied in as someone else's.
        let mut unresolved: Vec<(journal::Entry, Vec<Value>)> = match dry {
            true => Vec::new(),
            false => journal::active(conn, spec.table)?
                .into_iter()
                .filter(|e| e.op == journal::Op::Create && e.stage.unresolved())
                .filter_map(|e| {
                    let sent = spec.values_from_json(&e.row_values).ok()?;
                    Some((e, sent))
                })
                .collect(),
        };
        result.repeats = mirror::mark_seen(conn, spec, &ids)? as u64;
        // Whether a record has a base snapshot or a mirror row is known per page, so a new
        // record costs no lookups.
        let changed: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|id| !hashes.contains_key(id))
            .collect();
        let in_mirror = if changed.is_empty() {
            Default::default()
        } else {
            mirror::mirror_ids_present(conn, spec, &changed)?
        };
        let synced_at = crate::store::now_text();
        for (id, raw) in &parsed {
            let hash = content_hash(raw.get().as_bytes());
            if hashes.get(id) == Some(&hash) {
                result.unchanged += 1;
                continue;
            }
            let record = serde_json::from_str::<serde_json::Value>(raw.get())
                .map_err(|e| e.to_string())
                .and_then(|json| spec.parse(&json, None).map_err(|e| e.to_string()));
            let record = match record {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(resource = spec.table, id, page = page_no, error = %e,
                        "upstream record unreadable; skipped (a data problem upstream)");
                    result.unreadable.push(format!("id {id}: {e}"));
                    continue;
                }
            };
            let base = match hashes.contains_key(id) {
                true => mirror::base_by_id(conn, spec, *id)?,
                false => None,
            };
            let local = match hashes.contains_key(id) || in_mirror.contains(id) {
                true => mirror::mirror_by_id(conn, spec, *id)?,
                false => None,
            };
            let base = match base {
                Some(b) => Some(with_own_pushes(conn, spec, b, &record.values, local.as_ref())?),
                None => None,
            };
            if base.is_none() && local.is_none() {
                let made_by = unresolved
                    .iter()
                    .position(|(_, sent)| spec.changed_writable(&record.values, sent).is_empty());
                if let Some(pos) = made_by {
                    let (entry, sent) = unresolved.swap_remove(pos);
                    tracing::info!(
                        resource = spec.table,
                        seq = entry.seq,
                        id,
                        "the walk found the record an unresolved create made; adopted it"
                    );
                    adopt_in(conn, spec, &entry, &sent, &record, raw.get())?;
                    continue;
                }
            }
            let merged = merge::merge_present(spec, policy, &record, base.as_ref(), local.as_ref());
            result.conflicts += merged.conflicts.len() as u64;
            if dry {
                describe(
                    spec,
                    *id,
                    &merged,
                    base.is_none() && local.is_none(),
                    &mut result.plan,
                );
                continue;
            }
            let local_id =
                apply_mirror_action(conn, spec, Some(*id), &merged, local.as_ref().map(|m| m.local_id))?;
            match merged.mirror {
                MirrorAction::Insert(_) => result.inserted += 1,
                MirrorAction::Update { .. } => result.updated += 1,
                _ => {}
            }
            record_conflicts(conn, spec, local_id, Some(*id), policy, &merged.conflicts)?;
            mirror::upsert_base_at(
                conn,
                spec,
                *id,
                local_id,
                &record.values,
                raw.get(),
                hash,
                &synced_at,
            )?;
        }
        Ok(())
    };
    if dry {
        body(store.conn(), &mut result)?;
    } else {
        store.write_relaxed(|tx| body(tx, &mut result))?;
    }
    Ok(result)
}

/// The base snapshot to merge against. Where upstream differs from the base only because an
/// update of restsync's own reached it without the answer coming back (lost, or the run was
/// killed), the field counts as agreed: it takes upstream's value. Otherwise the merge would
/// take restsync's own push for a remote change and, when the row was edited or deleted again
/// meanwhile, `remote-wins` would throw the newer local change away.
///
/// Own updates are the journal's update entries for the record that were sent (attempts > 0),
/// are not done (a done one wrote the base back) and were last touched after the base was
/// written (an older one's effect is in the base already).
pub(super) fn with_own_pushes(
    conn: &Connection,
    spec: &ResourceSpec,
    mut base: BaseRow,
    remote: &[Value],
    local: Option<&MirrorRow>,
) -> Result<BaseRow, StoreError> {
    let differs: Vec<usize> = spec
        .columns
        .iter()
        .enumerate()
        .filter(|(i, c)| c.writable && base.values[*i] != remote[*i])
        .map(|(i, _)| i)
        .collect();
    // Only a local change can make a remote one a conflict.
    let local_changed = local.is_none_or(|m| !spec.changed_writable(&m.values, &base.values).is_empty());
    if differs.is_empty() || !local_changed {
        return Ok(base);
    }
    let sent = crate::store::journal::unsettled_update_values(conn, spec.table, spec.base_table, base.id)?;
    for text in sent {
        let Ok(values) = spec.values_from_json(&text) else {
            continue;
        };
        for &i in &differs {
            if values[i] == remote[i] {
                base.values[i] = remote[i].clone();
            }
        }
    }
    Ok(base)
}

fn describe(spec: &ResourceSpec, id: i64, merged: &Merged, new: bool, plan: &mut Plan) {
    match &merged.mirror {
        MirrorAction::Insert(_) if new => plan.pull_insert.push(format!("id {id}: new upstream")),
        MirrorAction::Insert(_) => plan
            .pull_insert
            .push(format!("id {id}: restored (deleted locally, changed upstream)")),
        MirrorAction::Update { local_id, .. } => {
            plan.pull_update.push(format!("id {id} (local_id {local_id})"))
        }
        _ => {}
    }
    for c in &merged.conflicts {
        plan.conflicts.push(format!(
            "{} id {id}: {} {} local={} remote={}",
            spec.table,
            c.kind,
            c.field.unwrap_or(""),
            c.local.as_deref().unwrap_or("-"),
            c.remote.as_deref().unwrap_or("-")
        ));
    }
}

/// Applies a merge decision to the mirror; returns the local row id it now lives under.
pub(super) fn apply_mirror_action(
    conn: &Connection,
    spec: &ResourceSpec,
    id: Option<i64>,
    merged: &Merged,
    existing: Option<i64>,
) -> Result<Option<i64>, StoreError> {
    Ok(match &merged.mirror {
        MirrorAction::None => existing,
        MirrorAction::Insert(values) => Some(mirror::insert_mirror(conn, spec, id, values)?),
        MirrorAction::Update { local_id, values } => {
            mirror::update_mirror(conn, spec, *local_id, values)?;
            Some(*local_id)
        }
        MirrorAction::Delete { local_id } => {
            mirror::delete_mirror(conn, spec, *local_id)?;
            None
        }
        MirrorAction::Unlink { local_id } => {
            mirror::set_mirror_id(conn, spec, *local_id, None)?;
            Some(*local_id)
        }
    })
}

pub(super) fn record_conflicts(
    conn: &Connection,
    spec: &ResourceSpec,
    local_id: Option<i64>,
    id: Option<i64>,
    policy: ConflictPolicy,
    notes: &[ConflictNote],
) -> Result<(), StoreError> {
    for c in notes {
        tracing::warn!(
            resource = spec.table,
            local_id,
            id,
            kind = c.kind,
            field = c.field,
            local = c.local.as_deref(),
            remote = c.remote.as_deref(),
            resolution = policy.as_str(),
            "conflict"
        );
        state::record_conflict(
            conn,
            &state::Conflict {
                resource: spec.table.to_string(),
                local_id,
                upstream_id: id,
                kind: c.kind.to_string(),
                field: c.field.map(str::to_string),
                base_value: c.base.clone(),
                local_value: c.local.clone(),
                remote_value: c.remote.clone(),
                resolution: policy.as_str().to_string(),
            },
        )?;
    }
    Ok(())
}
