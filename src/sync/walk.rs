//! Walking a resource's pages: fetched concurrently by number (never by the links, which
//! point at other hosts), applied in order (pages already fetched share a transaction), so
//! memory stays bounded by `sync.concurrency` pages; and how the walk went.

use super::apply::apply_pages;
use super::events::Progress;
use super::report::{Plan, PullStats};
use super::retry::RetryPolicy;
use super::{ResourceCtx, SyncError};
use crate::store::mirror;
use crate::upstream::{Page, ResourceApi, UpstreamError};
use futures::{FutureExt, StreamExt};
use std::collections::VecDeque;

/// Most pages written in one transaction.
const GROUP_PAGES: usize = 8;

/// A fetched page, or why it could not be.
fn fetched_page(
    spec: &crate::resources::ResourceSpec,
    next: Result<Result<Page, UpstreamError>, tokio::task::JoinError>,
) -> Result<Page, SyncError> {
    match next {
        Ok(page) => Ok(page?),
        Err(join) => Err(SyncError::Postponed(format!(
            "{}: page fetch task failed: {join}",
            spec.table
        ))),
    }
}

/// How one walk went.
#[derive(Debug, Default)]
pub(super) struct Walk {
    pub pages: u64,
    pub received: u64,
    pub total: u64,
    pub totals_stable: bool,
    pub repeats: u64,
    /// Records without a usable id: their absence from the seen set proves nothing.
    pub no_id: u64,
    /// Records with an id whose fields could not be read (counted as seen).
    pub unreadable: Vec<String>,
}

impl Walk {
    /// Every record was listed exactly once. A record whose fields are unreadable still
    /// counts as listed: it is a data problem upstream, not churn.
    pub(super) fn consistent(&self) -> bool {
        self.totals_stable && self.repeats == 0 && self.no_id == 0 && self.received == self.total
    }
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
    // Pages already fetched when one is due to be written go into the same transaction
    // (up to `GROUP_PAGES`): a walk that fetches faster than it writes commits less often,
    // and each page stays atomic with its base snapshots.
    let mut fetched: VecDeque<Page> = VecDeque::from([first]);
    let mut page_no = 1u64;
    let mut failed: Option<SyncError> = None;
    loop {
        if fetched.is_empty() && failed.is_none() {
            match rest.next().await {
                None => break,
                Some(next) => match fetched_page(spec, next) {
                    Ok(page) => fetched.push_back(page),
                    Err(e) => failed = Some(e),
                },
            }
        }
        while fetched.len() < GROUP_PAGES && failed.is_none() {
            match rest.next().now_or_never() {
                Some(Some(next)) => match fetched_page(spec, next) {
                    Ok(page) => fetched.push_back(page),
                    Err(e) => failed = Some(e),
                },
                _ => break,
            }
        }
        if fetched.is_empty() {
            if let Some(e) = failed.take() {
                return Err(e);
            }
            break;
        }
        if ctx.shutdown.is_cancelled() {
            return Err(SyncError::Postponed(format!(
                "{}: shutting down; walk interrupted",
                spec.table
            )));
        }
        let mut group: Vec<Page> = fetched.drain(..).collect();
        let records: Vec<(u64, Vec<_>)> = group
            .iter_mut()
            .enumerate()
            .map(|(i, p)| (page_no + i as u64, std::mem::take(&mut p.records)))
            .collect();
        let counts: Vec<u64> = records.iter().map(|(_, r)| r.len() as u64).collect();
        let results = ctx
            .db
            .call(move |s| apply_pages(s, spec, policy, records, dry))
            .await?;
        let mut untrusted = false;
        for ((page, count), r) in group.iter().zip(counts).zip(results) {
            if page.total != walk.total || page.last_page != expected_last {
                walk.totals_stable = false;
            }
            walk.pages += 1;
            walk.received += count;
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
                plan.merged_rows.extend(r.plan.merged_rows);
                plan.notes.extend(r.plan.notes);
                plan.new_records += r.plan.new_records;
            }
            // A page past the end of the listing (empty) or holding nothing new (an API
            // that ignores `page`) means the page count cannot be trusted: stop instead of
            // walking on to `last_page`, which a garbled answer can set absurdly high. The
            // walk then counts as inconsistent, so nothing is removed on its strength.
            if page_no > 1 && page_no < last_page && (count == 0 || r.repeats == count) {
                walk.totals_stable = false;
                untrusted = true;
            }
            if !dry {
                ctx.report(Progress::Page {
                    resource: ctx.kind,
                    page: page_no,
                    last_page: page.last_page,
                    records: count,
                });
            }
            page_no += 1;
        }
        if untrusted {
            break;
        }
        if let Some(e) = failed.take() {
            return Err(e);
        }
    }
    if !dry {
        ctx.report(Progress::WalkDone { resource: ctx.kind });
    }
    stats.pages += walk.pages;
    stats.records += walk.received;
    Ok(walk)
}
