//! The configuration as written: TOML and `RESTSYNC_*` environment values, before any
//! check. Unknown keys are refused here (`deny_unknown_fields`).

use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) database: RawDatabase,
    #[serde(default)]
    pub(super) upstreams: RawUpstreams,
    #[serde(default)]
    pub(super) resources: RawResources,
    #[serde(default)]
    pub(super) sync: RawSync,
    #[serde(default)]
    pub(super) log: RawLog,
    #[serde(default)]
    pub(super) metrics: RawMetrics,
    #[serde(default)]
    pub(super) daemon: RawDaemon,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub(super) listen: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDaemon {
    pub(super) shutdown_grace_secs: Option<u64>,
    pub(super) push_delay_ms: Option<u64>,
    pub(super) watch_interval_ms: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDatabase {
    pub(super) path: Option<PathBuf>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstreams {
    pub(super) firstline: Option<RawUpstream>,
    pub(super) plusofon: Option<RawUpstream>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    pub(super) base_url: Option<String>,
    pub(super) token: Option<String>,
    pub(super) token_file: Option<PathBuf>,
    pub(super) client: Option<String>,
    pub(super) max_requests_per_sec: Option<f64>,
    pub(super) max_in_flight: Option<usize>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResources {
    pub(super) phone_numbers: Option<RawResource>,
    pub(super) addresses: Option<RawResource>,
    pub(super) smart_numbers: Option<RawResource>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResource {
    pub(super) enabled: Option<bool>,
    pub(super) schedule: Option<String>,
    pub(super) user_id: Option<i64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSync {
    pub(super) schedule: Option<String>,
    pub(super) time_zone: Option<String>,
    pub(super) per_page: Option<u32>,
    pub(super) concurrency: Option<usize>,
    pub(super) request_timeout_secs: Option<u64>,
    pub(super) on_conflict: Option<String>,
    pub(super) max_delete_fraction: Option<f64>,
    pub(super) max_attempts_per_run: Option<u32>,
    pub(super) max_attempts: Option<u32>,
    pub(super) identify_timeout_secs: Option<u64>,
    pub(super) list_lag_secs: Option<u64>,
    pub(super) retry_base_ms: Option<u64>,
    pub(super) max_retry_after_secs: Option<u64>,
    pub(super) journal_retention_days: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub(super) level: Option<String>,
    pub(super) format: Option<String>,
}
