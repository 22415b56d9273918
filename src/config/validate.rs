//! One validation pass over the raw configuration that names every bad key, and the
//! defaults filled in for the keys left out.

use super::defaults;
use super::raw::*;
use super::schedule::parse_schedule;
use super::*;
use crate::resources::definition;

pub(super) fn validate(path: &Path, raw: RawConfig) -> Result<Settings, ConfigError> {
    let mut problems = Vec::new();
    let base_dir = path.parent().unwrap_or(Path::new("."));

    let database_path = match raw.database.path {
        Some(p) if p.as_os_str().is_empty() => {
            problems.push("database.path: must not be empty".into());
            PathBuf::new()
        }
        Some(p) if p.is_relative() => base_dir.join(p),
        Some(p) => p,
        None => base_dir.join("restsync.db"),
    };

    let mut upstreams = BTreeMap::new();
    // Sections present but invalid: already reported, so their resources say nothing more.
    let mut invalid_upstreams = Vec::new();
    for (name, section) in [
        (UpstreamName::Firstline, raw.upstreams.firstline),
        (UpstreamName::Plusofon, raw.upstreams.plusofon),
    ] {
        if let Some(section) = section {
            match validate_upstream(name, section, base_dir, &mut problems) {
                Some(u) => {
                    upstreams.insert(name.as_str(), u);
                }
                None => invalid_upstreams.push(name),
            }
        }
    }

    let sync = validate_sync(raw.sync, &mut problems);

    let mut resources = Vec::new();
    let mut sections = raw.resources;
    let mut entries: Vec<(ResourceKind, RawResource)> = Vec::new();
    for kind in ResourceKind::BUILT_IN {
        let section = sections.remove(kind.name()).unwrap_or_default();
        let key = format!("resources.{}", kind.name());
        let definition = section.definition();
        if !definition.is_empty() || section.filters.is_some() {
            let mut keys = definition.keys();
            if section.filters.is_some() {
                keys.push("filters");
            }
            problems.push(format!(
                "{key}: {} cannot be set for a built-in resource (only enabled, schedule{}); to sync it differently, \
                 copy `restsync resources show {}` under another name and adapt it",
                keys.join(", "),
                if kind == ResourceKind::SMART_NUMBERS { ", user_id" } else { "" },
                kind.name()
            ));
        }
        if section.user_id.is_some() && kind != ResourceKind::SMART_NUMBERS {
            problems.push(format!(
                "{key}.user_id: only resources.smart_numbers takes a user_id filter"
            ));
        }
        entries.push((kind, section));
    }
    for (name, section) in sections {
        let key = format!("resources.{name}");
        if section.user_id.is_some() {
            problems.push(format!(
                "{key}.user_id: a defined resource takes list filters as `filters = {{ user_id = N }}`"
            ));
        }
        if let Some(spec) = definition::build(&name, &section.definition(), &mut problems) {
            let before = problems.len();
            for (filter, value) in section.filters.iter().flatten() {
                match spec.columns.iter().find(|c| c.name == filter) {
                    None => problems.push(format!(
                        "{key}.filters: `{filter}` is not a column of this resource"
                    )),
                    Some(col) if !value.fits(col.ty) => problems.push(format!(
                        "{key}.filters: `{filter}` holds {}; {} does not fit it",
                        col.ty.expected(),
                        value.to_query_value()
                    )),
                    Some(_) => {}
                }
            }
            if problems.len() == before {
                entries.push((crate::resources::define(spec), section));
            }
        }
    }
    for (kind, section) in entries {
        let key = format!("resources.{}", kind.name());
        let upstream = kind.spec().upstream;
        let configured = upstreams.contains_key(upstream.as_str());
        match section.enabled {
            Some(false) => continue,
            _ if !configured && invalid_upstreams.contains(&upstream) => continue,
            Some(true) if !configured => {
                problems.push(format!(
                    "{key}.enabled: true, but [upstreams.{}] is not configured",
                    upstream.as_str()
                ));
                continue;
            }
            None if !configured && !kind.is_built_in() => {
                problems.push(format!(
                    "{key}.upstream: {:?}, but [upstreams.{}] is not configured (or set enabled = false)",
                    upstream.as_str(),
                    upstream.as_str()
                ));
                continue;
            }
            _ if !configured => continue,
            _ => {}
        }
        let schedule = match section.schedule {
            Some(s) => parse_schedule(&s)
                .map_err(|e| problems.push(format!("{key}.schedule: {e}")))
                .ok()
                .map(|parsed| (parsed, s)),
            None => sync
                .as_ref()
                .map(|s| (s.schedule.clone(), s.schedule_text.clone())),
        };
        let mut filters: Vec<(&'static str, String)> = Vec::new();
        if let Some(user_id) = section.user_id {
            filters.push(("user_id", user_id.to_string()));
        }
        for (name, value) in section.filters.iter().flatten() {
            if let Some(col) = kind.spec().columns.iter().find(|c| c.name == name) {
                filters.push((col.name, value.to_query_value()));
            }
        }
        if let Some((schedule, schedule_text)) = schedule {
            resources.push(ResourceSettings {
                kind,
                schedule,
                schedule_text,
                filters,
            });
        }
    }
    if upstreams.is_empty() && problems.is_empty() {
        problems.push("upstreams: configure [upstreams.firstline] and/or [upstreams.plusofon]".into());
    }

    let log_format = match raw.log.format.as_deref() {
        None => None,
        Some("text") => Some(LogFormat::Text),
        Some("json") => Some(LogFormat::Json),
        Some(other) => {
            problems.push(format!("log.format: {other:?} is not one of \"text\", \"json\""));
            None
        }
    };
    if let Some(level) = &raw.log.level {
        if tracing_subscriber::EnvFilter::try_new(level).is_err() {
            problems.push(format!("log.level: {level:?} is not a valid level or filter"));
        }
    }

    let metrics_listen = raw.metrics.listen.as_deref().and_then(|s| {
        s.parse()
            .map_err(|_| {
                problems.push(format!(
                    "metrics.listen: {s:?} is not an address like \"127.0.0.1:9187\""
                ))
            })
            .ok()
    });
    let grace = raw
        .daemon
        .shutdown_grace_secs
        .unwrap_or(defaults::SHUTDOWN_GRACE_SECS);
    if grace > 600 {
        problems.push(format!("daemon.shutdown_grace_secs: {grace} is more than 600"));
    }
    let push_delay = raw.daemon.push_delay_ms.unwrap_or(defaults::PUSH_DELAY_MS);
    if push_delay > 600_000 {
        problems.push(format!("daemon.push_delay_ms: {push_delay} is more than 600000"));
    }
    let watch_interval = raw
        .daemon
        .watch_interval_ms
        .unwrap_or(defaults::WATCH_INTERVAL_MS);
    if !(50..=600_000).contains(&watch_interval) {
        problems.push(format!(
            "daemon.watch_interval_ms: {watch_interval} is outside 50..=600000"
        ));
    }
    let daemon = DaemonSettings {
        shutdown_grace: Duration::from_secs(grace),
        push_delay: Duration::from_millis(push_delay),
        watch_interval: Duration::from_millis(watch_interval),
    };

    match sync {
        Some(sync) if problems.is_empty() => Ok(Settings {
            source: path.to_path_buf(),
            database_path,
            upstreams,
            resources,
            sync,
            log_level: raw.log.level,
            log_format,
            metrics_listen,
            daemon,
        }),
        _ => Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            problems,
        }),
    }
}

fn validate_upstream(
    name: UpstreamName,
    raw: RawUpstream,
    base_dir: &Path,
    problems: &mut Vec<String>,
) -> Option<UpstreamSettings> {
    let key = format!("upstreams.{}", name.as_str());
    let before = problems.len();
    let base_url = match raw.base_url.as_deref() {
        None => {
            problems.push(format!("{key}.base_url: required"));
            None
        }
        Some(s) => match Url::parse(s) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
            Ok(u) => {
                problems.push(format!(
                    "{key}.base_url: {s:?} must be an http(s) URL with a host (scheme {:?})",
                    u.scheme()
                ));
                None
            }
            Err(e) => {
                problems.push(format!("{key}.base_url: {s:?} is not a valid URL ({e})"));
                None
            }
        },
    };
    let mut credentials = vec![match (&raw.token, &raw.token_file) {
        (None, Some(file)) => format!("{key}.token_file ({})", file.display()),
        _ => format!("{key}.token"),
    }];
    let token = match (raw.token, raw.token_file) {
        (Some(_), Some(_)) => {
            problems.push(format!("{key}: set token or token_file, not both"));
            None
        }
        (Some(t), None) if t.trim().is_empty() => {
            problems.push(format!("{key}.token: must not be empty"));
            None
        }
        (Some(t), None) if !is_header_safe(t.trim()) => {
            problems.push(format!(
                "{key}.token: contains characters not allowed in an HTTP header"
            ));
            None
        }
        (Some(t), None) => Some(Secret::new(t.trim())),
        (None, Some(file)) => read_token_file(&key, &file, base_dir, problems),
        (None, None) => {
            problems.push(format!("{key}.token: required (or token_file)"));
            None
        }
    };
    let client = match (name, raw.client) {
        (UpstreamName::Plusofon, None) => {
            problems.push(format!("{key}.client: required (the Client header value)"));
            None
        }
        (UpstreamName::Plusofon, Some(c)) if c.trim().is_empty() => {
            problems.push(format!("{key}.client: must not be empty"));
            None
        }
        (UpstreamName::Plusofon, Some(c)) if !is_header_safe(&c) => {
            problems.push(format!(
                "{key}.client: contains characters not allowed in an HTTP header"
            ));
            None
        }
        (UpstreamName::Firstline, Some(_)) => {
            problems.push(format!("{key}.client: only upstreams.plusofon takes a client"));
            None
        }
        (_, c) => c,
    };
    if client.is_some() {
        credentials.push(format!("{key}.client"));
    }
    if let Some(rate) = raw.max_requests_per_sec {
        if !(rate > 0.0 && rate <= 100_000.0) {
            problems.push(format!(
                "{key}.max_requests_per_sec: {rate} is outside (0, 100000]"
            ));
        }
    }
    if let Some(n) = raw.max_in_flight.filter(|n| !(1..=10_000).contains(n)) {
        problems.push(format!("{key}.max_in_flight: {n} is outside 1..=10000"));
    }
    if problems.len() > before {
        return None;
    }
    Some(UpstreamSettings {
        name,
        base_url: base_url?,
        token: token?,
        client,
        max_requests_per_sec: raw.max_requests_per_sec,
        max_in_flight: raw.max_in_flight,
        credentials,
    })
}

/// Visible ASCII and spaces: what an HTTP header value can carry as is.
fn is_header_safe(s: &str) -> bool {
    s.bytes()
        .all(|b| b == b' ' || b == b'\t' || (0x21..0x7f).contains(&b))
}

/// `token_file` may be relative to `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=`).
fn read_token_file(key: &str, file: &Path, base_dir: &Path, problems: &mut Vec<String>) -> Option<Secret> {
    let resolved = if file.is_absolute() {
        file.to_path_buf()
    } else if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        Path::new(&dir).join(file)
    } else {
        base_dir.join(file)
    };
    match std::fs::read_to_string(&resolved) {
        Ok(t) if t.trim().is_empty() => {
            problems.push(format!("{key}.token_file: {} is empty", resolved.display()));
            None
        }
        Ok(t) if !is_header_safe(t.trim()) => {
            problems.push(format!(
                "{key}.token_file: {} holds characters not allowed in an HTTP header",
                resolved.display()
            ));
            None
        }
        Ok(t) => Some(Secret::new(t.trim())),
        Err(e) => {
            problems.push(format!(
                "{key}.token_file: cannot read {}: {e}",
                resolved.display()
            ));
            None
        }
    }
}

fn validate_sync(raw: RawSync, problems: &mut Vec<String>) -> Option<SyncSettings> {
    let before = problems.len();
    let schedule = parse_schedule(raw.schedule.as_deref().unwrap_or(defaults::SCHEDULE))
        .map_err(|e| problems.push(format!("sync.schedule: {e}")))
        .ok();
    let zone_name = raw.time_zone.as_deref().unwrap_or(defaults::TIME_ZONE);
    let time_zone = match zone_name {
        "local" => Some(local_zone(std::env::var("TZ").ok().as_deref(), iana_time_zone::get_timezone().ok())),
        name => name
            .parse::<chrono_tz::Tz>()
            .map_err(|_| {
                problems.push(format!(
                    "sync.time_zone: {zone_name:?} is not an IANA time zone name (for example \"Europe/Moscow\", \"Asia/Taipei\", \"UTC\") or \"local\""
                ))
            })
            .ok(),
    };
    let per_page = raw.per_page.unwrap_or(defaults::PER_PAGE);
    if !(1..=1000).contains(&per_page) {
        problems.push(format!("sync.per_page: {per_page} is outside 1..=1000"));
    }
    let concurrency = raw.concurrency.unwrap_or(defaults::CONCURRENCY);
    if !(1..=64).contains(&concurrency) {
        problems.push(format!("sync.concurrency: {concurrency} is outside 1..=64"));
    }
    let timeout = raw.request_timeout_secs.unwrap_or(defaults::REQUEST_TIMEOUT_SECS);
    if !(1..=3600).contains(&timeout) {
        problems.push(format!(
            "sync.request_timeout_secs: {timeout} is outside 1..=3600"
        ));
    }
    let on_conflict_text = raw.on_conflict.as_deref().unwrap_or(defaults::ON_CONFLICT);
    let on_conflict = on_conflict_text.parse().unwrap_or_else(|()| {
        problems.push(format!(
            "sync.on_conflict: {on_conflict_text:?} is not one of \"remote-wins\", \"local-wins\""
        ));
        ConflictPolicy::RemoteWins
    });
    let fraction = raw.max_delete_fraction.unwrap_or(defaults::MAX_DELETE_FRACTION);
    if !(0.0..=1.0).contains(&fraction) {
        problems.push(format!(
            "sync.max_delete_fraction: {fraction} is outside 0.0..=1.0"
        ));
    }
    let attempts = raw.max_attempts_per_run.unwrap_or(defaults::MAX_ATTEMPTS_PER_RUN);
    if attempts == 0 || attempts > 100 {
        problems.push(format!(
            "sync.max_attempts_per_run: {attempts} is outside 1..=100"
        ));
    }
    let max_attempts = raw.max_attempts.unwrap_or(defaults::MAX_ATTEMPTS);
    if !(1..=10_000).contains(&max_attempts) {
        problems.push(format!("sync.max_attempts: {max_attempts} is outside 1..=10000"));
    }
    let identify_timeout = raw
        .identify_timeout_secs
        .unwrap_or(defaults::IDENTIFY_TIMEOUT_SECS);
    if !(1..=604_800).contains(&identify_timeout) {
        problems.push(format!(
            "sync.identify_timeout_secs: {identify_timeout} is outside 1..=604800 (a week)"
        ));
    }
    let list_lag = raw.list_lag_secs.unwrap_or(defaults::LIST_LAG_SECS);
    if list_lag > 3600 {
        problems.push(format!("sync.list_lag_secs: {list_lag} is more than 3600"));
    }
    let retry_base_ms = raw.retry_base_ms.unwrap_or(defaults::RETRY_BASE_MS);
    if retry_base_ms > 60_000 {
        problems.push(format!("sync.retry_base_ms: {retry_base_ms} is more than 60000"));
    }
    let max_retry_after = raw.max_retry_after_secs.unwrap_or(defaults::MAX_RETRY_AFTER_SECS);
    if max_retry_after > 86_400 {
        problems.push(format!(
            "sync.max_retry_after_secs: {max_retry_after} is more than 86400 (a day)"
        ));
    }
    let retention_days = raw
        .journal_retention_days
        .unwrap_or(defaults::JOURNAL_RETENTION_DAYS);
    if retention_days > 36_500 {
        problems.push(format!(
            "sync.journal_retention_days: {retention_days} is more than 36500"
        ));
    }
    if problems.len() > before {
        return None;
    }
    Some(SyncSettings {
        schedule: schedule?,
        schedule_text: raw.schedule.unwrap_or_else(|| defaults::SCHEDULE.to_string()),
        time_zone: time_zone?,
        per_page,
        concurrency,
        request_timeout: Duration::from_secs(timeout),
        on_conflict,
        max_delete_fraction: fraction,
        max_attempts_per_run: attempts,
        max_attempts,
        identify_timeout: Duration::from_secs(identify_timeout),
        list_lag: Duration::from_secs(list_lag),
        retry_base: Duration::from_millis(retry_base_ms),
        max_retry_after: Duration::from_secs(max_retry_after),
        journal_retention: Duration::from_secs(retention_days.saturating_mul(86_400)),
    })
}

/// The system's zone: `TZ` when it names an IANA zone (`Asia/Taipei`, `:Europe/Moscow`),
/// else the zone /etc/localtime points at, else UTC.
pub(super) fn local_zone(tz_env: Option<&str>, system: Option<String>) -> chrono_tz::Tz {
    let from_env = tz_env
        .map(|t| t.trim_start_matches(':'))
        .and_then(|t| t.parse::<chrono_tz::Tz>().ok());
    from_env
        .or_else(|| system.and_then(|s| s.parse().ok()))
        .unwrap_or(chrono_tz::UTC)
}
