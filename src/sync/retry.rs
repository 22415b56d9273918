//! The one retry policy of pulls, pushes and lookups: capped exponential backoff with
//! jitter, honouring (a capped) `Retry-After`, and stopping at once on shutdown: no
//! request starts after the stop signal, and no backoff sleeps through it.

use crate::config::SyncSettings;
use crate::upstream::UpstreamError;
use rand::Rng;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How requests are retried within a run.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    attempts: u32,
    base: Duration,
    max_retry_after: Duration,
    stop: CancellationToken,
}

impl RetryPolicy {
    pub fn new(sync: &SyncSettings, stop: CancellationToken) -> RetryPolicy {
        RetryPolicy {
            attempts: sync.max_attempts_per_run,
            base: sync.retry_base,
            max_retry_after: sync.max_retry_after,
            stop,
        }
    }

    /// The wait before attempt `attempt + 1` after `error`.
    pub fn delay(&self, attempt: u32, error: &UpstreamError, what: &str) -> Duration {
        delay(self.base, attempt, error, self.max_retry_after, what)
    }

    /// Attempts one run may make of one request.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Sleeps `wait` unless stopped first; returns whether the sleep ran to its end.
    pub async fn pause(&self, wait: Duration) -> bool {
        tokio::select! {
            _ = self.stop.cancelled() => false,
            _ = tokio::time::sleep(wait) => true,
        }
    }

    /// Runs `op` while its error is retryable, the attempts last, the wait is short enough
    /// for this run, and no stop was asked for.
    pub async fn run<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, UpstreamError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, UpstreamError>>,
    {
        let mut attempt = 0;
        loop {
            if self.stop.is_cancelled() {
                return Err(UpstreamError::NotStarted);
            }
            let result = op().await;
            let e = match result {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() && attempt + 1 < self.attempts => e,
                Err(e) => return Err(e),
            };
            let wait = self.delay(attempt, &e, what);
            if wait > MAX_INLINE_WAIT {
                tracing::info!(%what, wait_secs = wait.as_secs(), "not waiting that long in this run; leaving it for a later one");
                return Err(e);
            }
            tracing::debug!(%what, error = %e, wait_ms = wait.as_millis() as u64, "retrying");
            if !self.pause(wait).await {
                return Err(e);
            }
            attempt += 1;
        }
    }
}

/// The wait before attempt `attempt + 1` after `error`.
pub fn delay(
    base: Duration,
    attempt: u32,
    error: &UpstreamError,
    max_retry_after: Duration,
    what: &str,
) -> Duration {
    if let Some(after) = error.retry_after() {
        if after > max_retry_after {
            tracing::warn!(
                %what,
                retry_after_secs = after.as_secs(),
                cap_secs = max_retry_after.as_secs(),
                "upstream asked to wait longer than sync.max_retry_after_secs; waiting the cap instead"
            );
            return max_retry_after;
        }
        return after;
    }
    let exp = base
        .saturating_mul(1u32 << attempt.min(10))
        .min(Duration::from_secs(60));
    let jitter = rand::rng().random_range(0.5..=1.0);
    exp.mul_f64(jitter)
}

/// The longest a run waits in place before leaving the work for a later run (exit 75).
pub const MAX_INLINE_WAIT: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn throttled(after: u64) -> UpstreamError {
        UpstreamError::Http {
            upstream: "test",
            status: 429,
            message: "Too Many Attempts.".into(),
            retry_after: Some(Duration::from_secs(after)),
        }
    }

    fn policy(attempts: u32, max_retry_after: Duration) -> RetryPolicy {
        RetryPolicy {
            attempts,
            base: Duration::from_millis(1),
            max_retry_after,
            stop: CancellationToken::new(),
        }
    }

    #[tokio::test]
    async fn a_long_retry_after_is_left_for_a_later_run_not_slept_through() {
        let calls = AtomicU32::new(0);
        let started = std::time::Instant::now();
        let result: Result<(), _> = policy(4, Duration::from_secs(300))
            .run("t", || {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err(throttled(120)) }
            })
            .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn short_waits_are_retried_up_to_the_attempts() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = policy(3, Duration::from_secs(300))
            .run("t", || {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err(throttled(0)) }
            })
            .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_stop_ends_the_backoff_and_no_request_follows() {
        let retry = policy(10, Duration::from_secs(300));
        let calls = AtomicU32::new(0);
        let stop = retry.stop.clone();
        let started = std::time::Instant::now();
        let run = retry.run("t", || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>(throttled(20)) }
        });
        let (result, ()) = tokio::join!(run, async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            stop.cancel();
        });
        assert!(result.is_err());
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "a request started after the stop"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "slept through the stop"
        );
    }

    #[tokio::test]
    async fn after_the_stop_no_request_starts_at_all() {
        let retry = policy(3, Duration::from_millis(10));
        retry.stop.cancel();
        let calls = AtomicU32::new(0);
        let result = retry
            .run("t", || {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Ok::<(), UpstreamError>(()) }
            })
            .await;
        assert!(matches!(result, Err(UpstreamError::NotStarted)), "{result:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn retry_after_is_capped() {
        let wait = delay(
            Duration::from_millis(10),
            0,
            &throttled(7200),
            Duration::from_secs(60),
            "t",
        );
        assert_eq!(wait, Duration::from_secs(60));
    }
}
