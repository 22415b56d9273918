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

/// Runs `op` up to `attempts` times while its error is retryable.
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
                tracing::debug!(%what, error = %e, wait_ms = wait.as_millis() as u64, "retrying");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}
