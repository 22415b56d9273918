//! One resource's schedule: a full cycle at start and on every cron tick, a push pass
//! shortly after local edits and when a journal retry falls due. One task per resource,
//! so its cycles never overlap. The next tick is kept across push passes, so a pass never
//! costs a walk: a tick that fell inside a pass runs as soon as the pass ends. A walk that
//! overran its slot skips the ticks it covered (once, not as a burst) and says so.

use super::{notify, Health};
use crate::resources::ResourceKind;
use crate::sync::{CycleOptions, Engine, Outcome, ResourceReport};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub struct Job {
    pub engine: Arc<Engine>,
    pub kind: ResourceKind,
    pub schedule: cron::Schedule,
    pub changes: broadcast::Receiver<()>,
    pub push_delay: Duration,
    pub opts: CycleOptions,
    pub token: CancellationToken,
    pub health: Health,
}

/// Retry passes never come closer together than this.
const MIN_RETRY_GAP: Duration = Duration::from_secs(1);
/// A walk starting later than this after its tick is logged.
const LATE_WALK: Duration = Duration::from_secs(1);

/// The first tick of `schedule` strictly after `t` (an hour on, for a schedule that never
/// fires again).
fn tick_after(schedule: &cron::Schedule, t: DateTime<Utc>) -> DateTime<Utc> {
    schedule
        .after(&t)
        .next()
        .unwrap_or(t + chrono::Duration::hours(1))
}

pub async fn run(mut job: Job) {
    let report = job.engine.run_resource_cycle(job.kind, job.opts).await;
    job.finished(report, true);
    let mut next_tick = tick_after(&job.schedule, Utc::now());
    // Retries are chased only while they make progress; a stuck entry (a guard, say)
    // waits for the next edit or tick rather than spinning.
    let mut chase_retries = true;
    loop {
        let until_tick = (next_tick - Utc::now()).to_std().unwrap_or_default();
        let until_retry = if chase_retries {
            job.engine
                .next_retry_in(job.kind)
                .await
                .map(|d| d.max(MIN_RETRY_GAP))
        } else {
            None
        };
        tokio::select! {
            // A due walk goes first: a stream of local edits never starves it.
            biased;
            _ = job.token.cancelled() => return,
            _ = tokio::time::sleep(until_tick) => {
                let late = (Utc::now() - next_tick).to_std().unwrap_or_default();
                if late > LATE_WALK {
                    tracing::info!(resource = %job.kind, late_ms = late.as_millis() as u64,
                        "scheduled walk runs late: its tick fell while a push pass ran");
                }
                let report = job.engine.run_resource_cycle(job.kind, job.opts).await;
                job.finished(report, true);
                let now = Utc::now();
                let skipped = job.schedule.after(&next_tick).take_while(|t| *t <= now).count();
                if skipped > 0 {
                    tracing::warn!(resource = %job.kind, skipped,
                        "scheduled walks skipped: the last walk overran their ticks (the next one runs on schedule)");
                }
                next_tick = tick_after(&job.schedule, now);
                chase_retries = true;
            }
            changed = job.changes.recv() => {
                if matches!(changed, Err(broadcast::error::RecvError::Closed)) {
                    return;
                }
                // Collect the rest of a burst of edits into one push.
                tokio::select! {
                    _ = job.token.cancelled() => return,
                    _ = tokio::time::sleep(job.push_delay) => {}
                }
                while job.changes.try_recv().is_ok() {}
                let report = job.engine.run_push_pass(job.kind, job.opts).await;
                job.finished(report, false);
                chase_retries = true;
            }
            _ = async { tokio::time::sleep(until_retry.unwrap_or_default()).await }, if until_retry.is_some() => {
                let report = job.engine.run_push_pass(job.kind, job.opts).await;
                let progressed = report.as_ref().is_some_and(|r| r.pushed.created + r.pushed.updated + r.pushed.deleted > 0);
                job.finished(report, false);
                chase_retries = progressed;
            }
        }
    }
}

impl Job {
    fn finished(&self, report: Option<ResourceReport>, full: bool) {
        let Some(report) = report else { return };
        // Full cycles log their own summary; a push pass logs only when it did something.
        if !full && (!report.pushed.is_idle() || report.outcome != Outcome::Ok) {
            report.log();
        }
        crate::telemetry::cycle_finished(
            report.resource.name(),
            full,
            report.pulled.as_ref().map(|p| (p.records, p.conflicts)),
            matches!(report.outcome, Outcome::Ok),
            matches!(report.outcome, Outcome::Transient(_)),
        );
        let ok = matches!(report.outcome, Outcome::Ok);
        self.health
            .set(self.kind, full, ok, report.problems.first().cloned());
        notify::status(&self.health.summary());
    }
}
