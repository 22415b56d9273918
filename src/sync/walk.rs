//! Walking a resource's pages: fetched concurrently by number (never by the links, which
//! point at other hosts), applied in order one transaction per page, so memory stays
//! bounded by `sync.concurrency` pages; and how the walk went.

use super::apply::apply_page;
use super::report::{Plan, PullStats};
use super::retry::RetryPolicy;
use super::{ResourceCtx, SyncError};
use crate::store::mirror;
use crate::upstream::{Page, ResourceApi, UpstreamError};
use futures::StreamExt;
use std::io::IsTerminal;

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
