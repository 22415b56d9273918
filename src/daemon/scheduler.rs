//! One resource's schedule: a full cycle at start and on every cron tick, a push pass
//! shortly after local edits and when a journal retry falls due. One task per resource,
//! so its cycles never overlap. The next tick is kept across push passes, so a pass never
//! costs a walk: a tick that fell inside a pass runs as soon as the pass ends. A walk that
//! overran its slot skips the ticks it covered (once, not as a burst) and says so. A walk
//! that failed for a reason that may pass (a locked database, upstream down) is tried
//! again after 2 s, doubling up to 5 min, not only at the next tick.

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
    pub schedule: crate::config::Schedule,
    /// The zone the schedule is read in (`sync.time_zone`).
    pub time_zone: chrono_tz::Tz,
    pub changes: broadcast::Receiver<()>,
    pub push_delay: Duration,
    pub opts: CycleOptions,
    pub token: CancellationToken,
    pub health: Health,
}

/// Retry passes never come closer together than this.
const MIN_RETRY_GAP: Duration = Duration::from_secs(1);
/// After a pass or cycle that left transient work (a database locked past the busy
/// timeout, an upstream outage), another push pass follows after this, doubling up to
/// `MAX_FOLLOW_UP`, so the edits it could not take are not left for the next tick.
const FIRST_FOLLOW_UP: Duration = Duration::from_secs(2);
const MAX_FOLLOW_UP: Duration = Duration::from_secs(300);
/// A walk starting later than this after its tick is logged.
const LATE_WALK: Duration = Duration::from_secs(1);

/// The first tick of `schedule`, read in `zone`, strictly after `t` (an hour on, for a
/// schedule that never fires again).
fn tick_after(schedule: &crate::config::Schedule, zone: chrono_tz::Tz, t: DateTime<Utc>) -> DateTime<Utc> {
    schedule
        .after(&t.with_timezone(&zone))
        .next()
        .map_or(t + chrono::Duration::hours(1), |next| next.with_timezone(&Utc))
}

fn follow_up(transient: bool, last: Option<Duration>) -> Option<Duration> {
    transient.then(|| last.map_or(FIRST_FOLLOW_UP, |d| (d * 2).min(MAX_FOLLOW_UP)))
}

/// Whether a full cycle's walk itself failed for a reason that may pass (a locked
/// database, an unreachable upstream): then the walk is tried again with backoff rather
/// than at the next tick.
fn walk_failed(report: &Option<ResourceReport>) -> bool {
    report
        .as_ref()
        .is_some_and(|r| r.pulled.is_none() && matches!(r.outcome, Outcome::Transient(_)))
}

pub async fn run(mut job: Job) {
    let report = job.engine.run_resource_cycle(job.kind, job.opts).await;
    let mut walk_again = follow_up(walk_failed(&report), None);
    let mut follow = follow_up(job.finished(report, true), None);
    let mut next_tick = tick_after(&job.schedule, job.time_zone, Utc::now());
    job.announce_next_walk(next_tick);
    // Retries are chased only while they make progress; a stuck entry (a guard, say)
    // waits for the next edit or tick rather than spinning.
    let mut chase_retries = true;
    loop {
        let until_tick = (next_tick - Utc::now()).to_std().unwrap_or_default();
        let journal_retry = if chase_retries {
            job.engine
                .next_retry_in(job.kind)
                .await
                .map(|d| d.max(MIN_RETRY_GAP))
        } else {
            None
        };
        let until_retry = match (journal_retry, follow) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let until_walk_again = walk_again.map(|d| d.min(until_tick));
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
                walk_again = follow_up(walk_failed(&report), None);
                follow = follow_up(job.finished(report, true), None);
                let now = Utc::now();
                let skipped = job
                    .schedule
                    .after(&next_tick.with_timezone(&job.time_zone))
                    .take_while(|t| t.with_timezone(&Utc) <= now)
                    .count();
                if skipped > 0 {
                    tracing::warn!(resource = %job.kind, skipped,
                        "scheduled walks skipped: the last walk overran their ticks (the next one runs on schedule)");
                }
                next_tick = tick_after(&job.schedule, job.time_zone, now);
                job.announce_next_walk(next_tick);
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
                follow = follow_up(job.finished(report, false), None);
                chase_retries = true;
            }
            // The last walk failed for a reason that may have passed: try it again (the
            // schedule's next tick stays where it is).
            _ = async { tokio::time::sleep(until_walk_again.unwrap_or_default()).await }, if until_walk_again.is_some() => {
                tracing::info!(resource = %job.kind, "walking again after a failure that may have passed");
                let report = job.engine.run_resource_cycle(job.kind, job.opts).await;
                walk_again = follow_up(walk_failed(&report), walk_again);
                follow = follow_up(job.finished(report, true), None);
                chase_retries = true;
            }
            _ = async { tokio::time::sleep(until_retry.unwrap_or_default()).await }, if until_retry.is_some() => {
                let report = job.engine.run_push_pass(job.kind, job.opts).await;
                let progressed = report.as_ref().is_some_and(|r| r.pushed.created + r.pushed.updated + r.pushed.deleted > 0);
                follow = follow_up(job.finished(report, false), follow);
                chase_retries = progressed;
            }
        }
    }
}

impl Job {
    /// Logs when the next scheduled walk runs and shows it in STATUS= and /healthz.
    fn announce_next_walk(&self, at: chrono::DateTime<Utc>) {
        let local = at.with_timezone(&self.time_zone).to_rfc3339();
        tracing::info!(resource = %self.kind, next_walk = %local, "next scheduled walk");
        self.health.set_next_walk(self.kind, local);
        notify::status(&self.health.summary());
    }

    /// Logs and reports a pass or cycle; returns whether it left transient work.
    fn finished(&self, report: Option<ResourceReport>, full: bool) -> bool {
        let Some(report) = report else { return false };
        // Full cycles log their own summary; a push pass logs only when it did something.
        if !full && (!report.pushed.is_idle() || report.outcome != Outcome::Ok) {
            report.log_push_pass();
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
        matches!(report.outcome, Outcome::Transient(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_are_read_in_the_configured_zone() {
        let nine = crate::config::parse_schedule("0 9 * * *").unwrap();
        let t: DateTime<Utc> = "2026-11-30T00:30:00Z".parse().unwrap();
        assert_eq!(
            tick_after(&nine, chrono_tz::Asia::Taipei, t),
            "2026-11-30T01:00:00Z".parse::<DateTime<Utc>>().unwrap(),
            "09:00 in Taipei is 01:00 UTC"
        );
        assert_eq!(
            tick_after(&nine, chrono_tz::UTC, t),
            "2026-11-30T09:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        // Daylight saving: 09:00 in New York is 13:00 UTC in summer, 14:00 in winter.
        let july: DateTime<Utc> = "2026-07-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            tick_after(&nine, chrono_tz::America::New_York, july),
            "2026-07-01T13:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            tick_after(&nine, chrono_tz::America::New_York, t),
            "2026-11-30T14:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
    }

    #[test]
    fn follow_up_passes_back_off_while_work_stays_transient_and_stop_when_it_clears() {
        let first = follow_up(true, None);
        assert_eq!(first, Some(FIRST_FOLLOW_UP));
        let second = follow_up(true, first);
        assert_eq!(second, Some(FIRST_FOLLOW_UP * 2));
        let mut d = second;
        for _ in 0..20 {
            d = follow_up(true, d);
        }
        assert_eq!(d, Some(MAX_FOLLOW_UP));
        assert_eq!(follow_up(false, d), None);
    }
}
