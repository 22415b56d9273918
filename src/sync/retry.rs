//! Capped exponential backoff with full jitter, honoring (a capped) `Retry-After`.

use crate::upstream::UpstreamError;
use rand::Rng;
use std::time::Duration;

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

/// Runs `op` up to `attempts` times while its error is retryable and the wait before the
/// next attempt is short enough to spend in this run.
pub async fn with_retries<T, F, Fut>(
    attempts: u32,
    base: Duration,
    max_retry_after: Duration,
    what: &str,
    mut op: F,
) -> Result<T, UpstreamError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, UpstreamError>>,
{
    let mut attempt = 0;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_retryable() && attempt + 1 < attempts => {
                let wait = delay(base, attempt, &e, max_retry_after, what);
                if wait > MAX_INLINE_WAIT {
                    tracing::info!(%what, wait_secs = wait.as_secs(), "not waiting that long in this run; leaving it for a later one");
                    return Err(e);
                }
                tracing::debug!(%what, error = %e, wait_ms = wait.as_millis() as u64, "retrying");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

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

    #[tokio::test]
    async fn a_long_retry_after_is_left_for_a_later_run_not_slept_through() {
        let calls = AtomicU32::new(0);
        let started = std::time::Instant::now();
        let result: Result<(), _> =
            with_retries(4, Duration::from_millis(1), Duration::from_secs(300), "t", || {
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
        let result: Result<(), _> =
            with_retries(3, Duration::from_millis(1), Duration::from_secs(300), "t", || {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err(throttled(0)) }
            })
            .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 3);
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
