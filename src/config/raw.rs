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

/// Reads the merged configuration into [`RawConfig`], reporting every unknown key and every
/// value of the wrong type rather than only the first: each offending key is named, taken
/// out, and the rest read again. Returns what could be read, the problems, and the keys
/// taken out (dotted).
pub(super) fn deserialize_all(mut root: config::Value) -> (RawConfig, Vec<String>, Vec<String>) {
    let mut problems = Vec::new();
    let mut removed = Vec::new();
    // Each round takes a key out, so this ends; the bound keeps a pathological file short.
    for _ in 0..200 {
        let error = match serde_path_to_error::deserialize::<_, RawConfig>(root.clone()) {
            Ok(raw) => return (raw, problems, removed),
            Err(e) => e,
        };
        let mut keys: Vec<String> = error
            .path()
            .iter()
            .filter_map(|segment| match segment {
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                _ => None,
            })
            .collect();
        let message = error.into_inner().to_string();
        // The key is named in front; config's own " for key `x`" would say it twice.
        let message = match message.rfind(" for key `") {
            Some(at) if message.ends_with('`') => message[..at].to_string(),
            _ => message,
        };
        // "unknown field `foo`, expected ...": the path stops at the table holding it.
        if let Some(field) = message
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split('`').next())
        {
            if keys.last().map(String::as_str) != Some(field) {
                keys.push(field.to_string());
            }
        }
        let dotted = keys.join(".");
        problems.push(if dotted.is_empty() {
            message
        } else {
            format!("{dotted}: {message}")
        });
        if keys.is_empty() || !take_out(&mut root, &keys) {
            break;
        }
        removed.push(dotted);
    }
    (RawConfig::default(), problems, removed)
}

/// Removes the value at `keys` (table keys, array indices); false when it is not there.
fn take_out(value: &mut config::Value, keys: &[String]) -> bool {
    let Some((first, rest)) = keys.split_first() else {
        return false;
    };
    match &mut value.kind {
        config::ValueKind::Table(map) if rest.is_empty() => map.remove(first).is_some(),
        config::ValueKind::Table(map) => map.get_mut(first).is_some_and(|v| take_out(v, rest)),
        config::ValueKind::Array(items) => first
            .parse::<usize>()
            .ok()
            .and_then(|i| items.get_mut(i))
            .is_some_and(|v| if rest.is_empty() { false } else { take_out(v, rest) }),
        _ => false,
    }
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
