//! The configuration as written: TOML and `RESTSYNC_*` environment values, before any
//! check. Unknown keys are refused here (`deny_unknown_fields`).

use crate::resources::definition::{ColumnDefinition, Definition};
use serde::Deserialize;
use std::collections::BTreeMap;
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

/// `[resources.NAME]`: an override of a built-in (`enabled`, `schedule`, `user_id`) or a
/// resource definition (the other keys; see `resources::definition`).
pub(super) type RawResources = BTreeMap<String, RawResource>;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResource {
    pub(super) enabled: Option<bool>,
    pub(super) schedule: Option<String>,
    pub(super) user_id: Option<i64>,
    pub(super) upstream: Option<String>,
    pub(super) path: Option<String>,
    pub(super) pagination: Option<String>,
    pub(super) operations: Option<Vec<String>>,
    pub(super) create_returns_record: Option<bool>,
    pub(super) natural_key: Option<Vec<String>>,
    pub(super) filters: Option<BTreeMap<String, RawScalar>>,
    pub(super) columns: Option<Vec<ColumnDefinition>>,
}

/// A list filter's value: `filters = { user_id = 12, kind = "work" }`.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub(super) enum RawScalar {
    Integer(i64),
    Real(f64),
    Bool(bool),
    Text(String),
}

impl RawScalar {
    /// Whether the value can be a filter on a column of this type.
    pub(super) fn fits(&self, ty: crate::resources::ColumnType) -> bool {
        use crate::resources::ColumnType;
        match (ty, self) {
            (ColumnType::Integer, RawScalar::Integer(_) | RawScalar::Bool(_)) => true,
            (ColumnType::Integer, RawScalar::Text(t)) => t.trim().parse::<i64>().is_ok(),
            (ColumnType::Real, RawScalar::Integer(_) | RawScalar::Real(_)) => true,
            (ColumnType::Real, RawScalar::Text(t)) => t.trim().parse::<f64>().is_ok(),
            (ColumnType::Text, _) => true,
            _ => false,
        }
    }

    pub(super) fn to_query_value(&self) -> String {
        match self {
            RawScalar::Integer(i) => i.to_string(),
            RawScalar::Real(r) => r.to_string(),
            RawScalar::Bool(b) => u8::from(*b).to_string(),
            RawScalar::Text(t) => t.clone(),
        }
    }
}

impl RawResource {
    pub(super) fn definition(&self) -> Definition {
        Definition {
            upstream: self.upstream.clone(),
            path: self.path.clone(),
            pagination: self.pagination.clone(),
            operations: self.operations.clone(),
            create_returns_record: self.create_returns_record,
            natural_key: self.natural_key.clone(),
            columns: self.columns.clone(),
        }
    }
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
