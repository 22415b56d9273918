//! Every default of the configuration, declared once. The example configuration and README
//! state the same values (a test holds them to it).

pub const SCHEDULE: &str = "0 */5 * * * *";
/// The zone schedules are read in: "local" is the system's zone (`TZ`, else
/// /etc/localtime), as cron and systemd timers read theirs.
pub const TIME_ZONE: &str = "local";
pub const PER_PAGE: u32 = 100;
pub const CONCURRENCY: usize = 4;
pub const REQUEST_TIMEOUT_SECS: u64 = 30;
pub const ON_CONFLICT: &str = "remote-wins";
pub const MAX_DELETE_FRACTION: f64 = 0.5;
pub const MAX_ATTEMPTS_PER_RUN: u32 = 4;
pub const MAX_ATTEMPTS: u32 = 10;
pub const IDENTIFY_TIMEOUT_SECS: u64 = 900;
pub const LIST_LAG_SECS: u64 = 30;
pub const RETRY_BASE_MS: u64 = 500;
pub const MAX_RETRY_AFTER_SECS: u64 = 300;
pub const JOURNAL_RETENTION_DAYS: u64 = 30;
pub const SHUTDOWN_GRACE_SECS: u64 = 20;
pub const PUSH_DELAY_MS: u64 = 1000;
pub const WATCH_INTERVAL_MS: u64 = 500;

/// `(section, key, value as written in TOML)` for every default above.
pub fn documented() -> Vec<(&'static str, &'static str, String)> {
    vec![
        ("sync", "schedule", format!("{SCHEDULE:?}")),
        ("sync", "time_zone", format!("{TIME_ZONE:?}")),
        ("sync", "per_page", PER_PAGE.to_string()),
        ("sync", "concurrency", CONCURRENCY.to_string()),
        ("sync", "request_timeout_secs", REQUEST_TIMEOUT_SECS.to_string()),
        ("sync", "on_conflict", format!("{ON_CONFLICT:?}")),
        ("sync", "max_delete_fraction", MAX_DELETE_FRACTION.to_string()),
        ("sync", "max_attempts_per_run", MAX_ATTEMPTS_PER_RUN.to_string()),
        ("sync", "max_attempts", MAX_ATTEMPTS.to_string()),
        ("sync", "identify_timeout_secs", IDENTIFY_TIMEOUT_SECS.to_string()),
        ("sync", "list_lag_secs", LIST_LAG_SECS.to_string()),
        ("sync", "retry_base_ms", RETRY_BASE_MS.to_string()),
        ("sync", "max_retry_after_secs", MAX_RETRY_AFTER_SECS.to_string()),
        (
            "sync",
            "journal_retention_days",
            JOURNAL_RETENTION_DAYS.to_string(),
        ),
        ("daemon", "shutdown_grace_secs", SHUTDOWN_GRACE_SECS.to_string()),
        ("daemon", "push_delay_ms", PUSH_DELAY_MS.to_string()),
        ("daemon", "watch_interval_ms", WATCH_INTERVAL_MS.to_string()),
    ]
}
