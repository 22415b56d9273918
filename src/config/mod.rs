//! Configuration: a TOML file, then `RESTSYNC_*` environment overrides (`__` separates
//! levels), then one validation pass that reports every problem by key.

mod defaults;
mod raw;
mod schedule;
mod validate;

pub use defaults::*;
pub use schedule::{parse_schedule, Schedule};

use crate::resources::{ResourceKind, UpstreamName};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;
use url::Url;

/// Environment variables with the `RESTSYNC_` prefix that are CLI flags, not config keys.
const NON_KEY_ENV: &[&str] = &["RESTSYNC_CONFIG", "RESTSYNC_LOG_FORMAT"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration {path}: {message}")]
    Load { path: PathBuf, message: String },
    #[error("invalid configuration {path}:\n  - {}", problems.join("\n  - "))]
    Invalid { path: PathBuf, problems: Vec<String> },
}

/// A token that never shows up in logs or debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictPolicy {
    RemoteWins,
    LocalWins,
}

impl ConflictPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            ConflictPolicy::RemoteWins => "remote-wins",
            ConflictPolicy::LocalWins => "local-wins",
        }
    }
}

impl FromStr for ConflictPolicy {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "remote-wins" => Ok(ConflictPolicy::RemoteWins),
            "local-wins" => Ok(ConflictPolicy::LocalWins),
            _ => Err(()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    pub name: UpstreamName,
    pub base_url: Url,
    pub token: Secret,
    /// Plusofon's `Client` header.
    pub client: Option<String>,
    /// Requests per second to this upstream, pulls and pushes together (None: unlimited).
    pub max_requests_per_sec: Option<f64>,
    /// Requests in flight to this upstream at once (None: unlimited).
    pub max_in_flight: Option<usize>,
    /// Where the credentials came from, to name when upstream refuses them: the keys
    /// (`upstreams.firstline.token`), or the environment variable that set one.
    pub credentials: Vec<String>,
}

impl UpstreamSettings {
    /// What to check when upstream refuses the credentials (401/403).
    pub fn credentials_hint(&self) -> String {
        format!("check {}", self.credentials.join(" and "))
    }
}

#[derive(Debug, Clone)]
pub struct ResourceSettings {
    pub kind: ResourceKind,
    pub schedule: Schedule,
    /// The schedule as written (five or six fields).
    pub schedule_text: String,
    /// Fixed list filters (a built-in's `user_id`, a definition's `filters`): the scope
    /// every record of the resource lives in, and a local create must stay in.
    pub filters: Vec<(&'static str, String)>,
}

#[derive(Debug, Clone)]
pub struct SyncSettings {
    pub schedule: Schedule,
    /// The schedule as written.
    pub schedule_text: String,
    /// The zone every schedule is read in (`0 0 9 * * *` is 09:00 there).
    pub time_zone: chrono_tz::Tz,
    pub per_page: u32,
    pub concurrency: usize,
    pub request_timeout: Duration,
    pub on_conflict: ConflictPolicy,
    pub max_delete_fraction: f64,
    pub max_attempts_per_run: u32,
    /// Attempts of one entry across all runs before it is failed for a person.
    pub max_attempts: u32,
    /// How long an accepted create is looked for before a person is asked.
    pub identify_timeout: Duration,
    /// How long a created record may take to appear in the list: a create whose outcome is
    /// unknown is declared "not made" only by a lookup after this (plus the request timeout).
    pub list_lag: Duration,
    pub retry_base: Duration,
    pub max_retry_after: Duration,
    pub journal_retention: Duration,
}

/// How the long-running service behaves (`restsync sync` without `--once`).
#[derive(Debug, Clone)]
pub struct DaemonSettings {
    /// How long in-flight requests may take to finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// How long a burst of local edits is collected before one push.
    pub push_delay: Duration,
    /// How often the mirror is checked for local edits.
    pub watch_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub source: PathBuf,
    pub database_path: PathBuf,
    pub upstreams: BTreeMap<&'static str, UpstreamSettings>,
    pub resources: Vec<ResourceSettings>,
    pub sync: SyncSettings,
    pub log_level: Option<String>,
    pub log_format: Option<LogFormat>,
    /// Where `/metrics` and `/healthz` are served, if anywhere.
    pub metrics_listen: Option<std::net::SocketAddr>,
    pub daemon: DaemonSettings,
}

impl Settings {
    pub fn upstream(&self, name: UpstreamName) -> Option<&UpstreamSettings> {
        self.upstreams.get(name.as_str())
    }

    /// The enabled resources.
    pub fn kinds(&self) -> Vec<ResourceKind> {
        self.resources.iter().map(|r| r.kind).collect()
    }

    pub fn resource(&self, kind: ResourceKind) -> Option<&ResourceSettings> {
        self.resources.iter().find(|r| r.kind == kind)
    }
}

/// Loads the file at `path` and the environment, and validates the result.
pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    // Only names with a `__` level separator are config keys (every key lives in a
    // section), so an unrelated RESTSYNC_SOMETHING in the environment is left alone.
    let env: std::collections::HashMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("RESTSYNC_") && k.contains("__") && !NON_KEY_ENV.contains(&k.as_str()))
        .collect();
    load_with_env(path, env)
}

pub fn load_with_env(
    path: &Path,
    env: std::collections::HashMap<String, String>,
) -> Result<Settings, ConfigError> {
    if !path.exists() {
        return Err(ConfigError::Load {
            path: path.to_path_buf(),
            message: "no such file (pass --config PATH or set RESTSYNC_CONFIG)".into(),
        });
    }
    // Config keys set by the environment, so a problem with one names the variable, not
    // the file: `RESTSYNC_SYNC__PER_PAGE` is `sync.per_page`.
    let from_env: Vec<(String, String)> = env
        .keys()
        .filter_map(|name| {
            let key = name.strip_prefix("RESTSYNC_")?.to_lowercase().replace("__", ".");
            Some((key, name.clone()))
        })
        .collect();
    let blame = |e: ConfigError| match e {
        ConfigError::Invalid { path, problems } => ConfigError::Invalid {
            path,
            problems: problems
                .into_iter()
                .map(|p| {
                    let by_env = from_env.iter().find(|(key, _)| {
                        p.starts_with(&format!("{key}:")) || p.contains(&format!("`{key}`"))
                    });
                    match by_env {
                        Some((_, name)) => {
                            format!("{p} (set by the environment variable {name}, not the file)")
                        }
                        None => p,
                    }
                })
                .collect(),
        },
        other => other,
    };
    let root: config::Value = config::Config::builder()
        .add_source(config::File::from(path).format(config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix("RESTSYNC")
                .prefix_separator("_")
                .separator("__")
                .source(Some(env)),
        )
        .build()
        .and_then(|c| c.try_deserialize())
        .map_err(|e| {
            blame(ConfigError::Invalid {
                path: path.to_path_buf(),
                problems: vec![e.to_string()],
            })
        })?;
    let (raw, mut problems, removed) = raw::deserialize_all(root);
    match validate::validate(path, raw) {
        Ok(mut settings) if problems.is_empty() => {
            // A credential set by the environment is fixed there, not in the file.
            for upstream in settings.upstreams.values_mut() {
                for said in &mut upstream.credentials {
                    let key = said.split(' ').next().unwrap_or_default();
                    if let Some((_, name)) = from_env.iter().find(|(k, _)| k == key) {
                        *said = format!("{name} (the environment variable that sets {said})");
                    }
                }
            }
            Ok(settings)
        }
        Ok(_) => Err(blame(ConfigError::Invalid {
            path: path.to_path_buf(),
            problems,
        })),
        // The checks of what could be read, except what follows from a key taken out
        // above (a required key with a bad value is not "missing" too).
        Err(ConfigError::Invalid { problems: more, .. }) => {
            problems.extend(more.into_iter().filter(|p| {
                !removed
                    .iter()
                    .any(|key| p.starts_with(&format!("{key}:")) || p.starts_with(&format!("{key}.")))
            }));
            Err(blame(ConfigError::Invalid {
                path: path.to_path_buf(),
                problems,
            }))
        }
        Err(other) => Err(blame(other)),
    }
}

#[cfg(test)]
mod tests;
