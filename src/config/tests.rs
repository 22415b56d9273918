//! Unit tests of configuration loading: TOML files in a temporary directory, environment
//! overrides passed as a map, and the validation pass.

use super::*;
use rusqlite::types::Value;
use std::collections::HashMap;
use std::fs;
use tempfile::TempDir;

const FIRSTLINE: &str = r#"
[upstreams.firstline]
base_url = "https://firstline.example.com"
token = "fl-file-token"
"#;

const PLUSOFON: &str = r#"
[upstreams.plusofon]
base_url = "https://restapi.plusofon.ru"
token = "pl-file-token"
client = "10553"
"#;

fn write(dir: &TempDir, toml: &str) -> PathBuf {
    let path = dir.path().join("restsync.toml");
    fs::write(&path, toml).unwrap();
    path
}

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn load_str(toml: &str) -> Result<Settings, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    load_with_env(&write(&dir, toml), HashMap::new())
}

fn load_ok(toml: &str) -> Settings {
    load_str(toml).unwrap_or_else(|e| panic!("config should load: {e}"))
}

/// The problems reported for an invalid configuration.
fn problems(toml: &str) -> Vec<String> {
    problems_of(load_str(toml))
}

fn problems_of(r: Result<Settings, ConfigError>) -> Vec<String> {
    match r {
        Err(ConfigError::Invalid { problems, .. }) => problems,
        Err(other) => panic!("expected Invalid, got {other}"),
        Ok(s) => panic!("expected Invalid, got {s:?}"),
    }
}

/// Asserts that exactly one problem is reported and that it names `key`.
fn rejected_naming(toml: &str, key: &str) -> String {
    let p = problems(toml);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].contains(key), "{:?} does not name {key}", p[0]);
    p.into_iter().next().unwrap()
}

#[test]
fn minimal_config_loads_with_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, FIRSTLINE);
    let s = load_with_env(&path, HashMap::new()).unwrap();
    assert_eq!(s.source, path);
    assert_eq!(s.database_path, dir.path().join("restsync.db"));
    let fl = s.upstream(UpstreamName::Firstline).unwrap();
    assert_eq!(fl.name, UpstreamName::Firstline);
    assert_eq!(fl.base_url.as_str(), "https://firstline.example.com/");
    assert_eq!(fl.token.expose(), "fl-file-token");
    assert_eq!(fl.client, None);
    assert!(s.upstream(UpstreamName::Plusofon).is_none());

    let sync = &s.sync;
    assert_eq!(sync.per_page, 100);
    assert_eq!(sync.concurrency, 4);
    assert_eq!(sync.request_timeout, Duration::from_secs(30));
    assert_eq!(sync.on_conflict, ConflictPolicy::RemoteWins);
    assert_eq!(sync.max_delete_fraction, 0.5);
    assert_eq!(sync.max_attempts_per_run, 4);
    assert_eq!(sync.retry_base, Duration::from_millis(500));
    assert_eq!(sync.max_retry_after, Duration::from_secs(300));
    assert_eq!(sync.journal_retention, Duration::from_secs(30 * 86_400));
    assert_eq!(sync.schedule, parse_schedule("0 */5 * * * *").unwrap());
    assert_eq!(s.log_level, None);
    assert_eq!(s.log_format, None);

    let kinds: Vec<ResourceKind> = s.resources.iter().map(|r| r.kind).collect();
    assert_eq!(kinds, [ResourceKind::PHONE_NUMBERS, ResourceKind::ADDRESSES]);
    for r in &s.resources {
        assert_eq!(
            r.schedule, sync.schedule,
            "resources default to the sync schedule"
        );
        assert!(r.filters.is_empty());
    }
}

#[test]
fn full_config_loads_every_key() {
    let toml = format!(
        r#"
[database]
path = "data/mirror.db"
{FIRSTLINE}
{PLUSOFON}
[resources.phone_numbers]
enabled = true
schedule = "0 0 * * * *"

[resources.smart_numbers]
user_id = 40
schedule = "*/10 * * * *"

[sync]
schedule = "0 */2 * * * *"
per_page = 250
concurrency = 8
request_timeout_secs = 10
on_conflict = "local-wins"
max_delete_fraction = 0.25
max_attempts_per_run = 2
retry_base_ms = 100
max_retry_after_secs = 60
journal_retention_days = 7

[log]
level = "restsync=debug,info"
format = "json"
"#
    );
    let dir = tempfile::tempdir().unwrap();
    let s = load_with_env(&write(&dir, &toml), HashMap::new()).unwrap();
    assert_eq!(s.database_path, dir.path().join("data/mirror.db"));
    let pl = s.upstream(UpstreamName::Plusofon).unwrap();
    assert_eq!(pl.client.as_deref(), Some("10553"));
    assert_eq!(pl.token.expose(), "pl-file-token");
    assert_eq!(s.sync.per_page, 250);
    assert_eq!(s.sync.concurrency, 8);
    assert_eq!(s.sync.request_timeout, Duration::from_secs(10));
    assert_eq!(s.sync.on_conflict, ConflictPolicy::LocalWins);
    assert_eq!(s.sync.max_delete_fraction, 0.25);
    assert_eq!(s.sync.max_attempts_per_run, 2);
    assert_eq!(s.sync.retry_base, Duration::from_millis(100));
    assert_eq!(s.sync.max_retry_after, Duration::from_secs(60));
    assert_eq!(s.sync.journal_retention, Duration::from_secs(7 * 86_400));
    assert_eq!(s.log_level.as_deref(), Some("restsync=debug,info"));
    assert_eq!(s.log_format, Some(LogFormat::Json));

    assert_eq!(s.resources.len(), 3);
    let pn = s.resource(ResourceKind::PHONE_NUMBERS).unwrap();
    assert_eq!(pn.schedule, parse_schedule("0 0 * * * *").unwrap());
    let addr = s.resource(ResourceKind::ADDRESSES).unwrap();
    assert_eq!(addr.schedule, s.sync.schedule);
    let sn = s.resource(ResourceKind::SMART_NUMBERS).unwrap();
    assert_eq!(sn.filters, vec![("user_id", "40".to_string())]);
    assert_eq!(sn.schedule, parse_schedule("0 */10 * * * *").unwrap());
}

#[test]
fn absolute_database_path_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("elsewhere").join("m.db");
    let toml = format!("[database]\npath = {:?}\n{FIRSTLINE}", db.to_str().unwrap());
    let s = load_with_env(&write(&dir, &toml), HashMap::new()).unwrap();
    assert_eq!(s.database_path, db);
    rejected_naming(&format!("[database]\npath = \"\"\n{FIRSTLINE}"), "database.path");
}

#[test]
fn missing_file_is_a_load_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.toml");
    match load_with_env(&path, HashMap::new()) {
        Err(ConfigError::Load { path: p, message }) => {
            assert_eq!(p, path);
            assert!(message.contains("--config"), "{message}");
        }
        other => panic!("expected Load, got {other:?}"),
    }
}

#[test]
fn malformed_base_url_is_rejected() {
    for url in [
        "not a url",
        "ftp://firstline.example.com",
        "file:///tmp/x",
        "https://",
    ] {
        let toml = format!("[upstreams.firstline]\nbase_url = {url:?}\ntoken = \"t\"\n");
        rejected_naming(&toml, "upstreams.firstline.base_url");
    }
    rejected_naming(
        "[upstreams.firstline]\ntoken = \"t\"\n",
        "upstreams.firstline.base_url",
    );
}

#[test]
fn token_is_required_and_not_empty() {
    let p = rejected_naming(
        "[upstreams.firstline]\nbase_url = \"https://f.example\"\n",
        "upstreams.firstline.token",
    );
    assert!(p.contains("required"), "{p}");
    rejected_naming(
        "[upstreams.firstline]\nbase_url = \"https://f.example\"\ntoken = \"  \"\n",
        "upstreams.firstline.token",
    );
    rejected_naming(
        "[upstreams.firstline]\nbase_url = \"https://f.example\"\ntoken = \"a\"\ntoken_file = \"/x\"\n",
        "upstreams.firstline",
    );
}

#[test]
fn unknown_conflict_policy_is_rejected() {
    let p = rejected_naming(
        &format!("{FIRSTLINE}\n[sync]\non_conflict = \"newest-wins\"\n"),
        "sync.on_conflict",
    );
    assert!(p.contains("newest-wins"), "{p}");
}

#[test]
fn bad_cron_schedules_are_rejected() {
    rejected_naming(
        &format!("{FIRSTLINE}\n[sync]\nschedule = \"every minute\"\n"),
        "sync.schedule",
    );
    rejected_naming(
        &format!("{FIRSTLINE}\n[sync]\nschedule = \"61 * * * *\"\n"),
        "sync.schedule",
    );
    rejected_naming(
        &format!("{FIRSTLINE}\n[resources.addresses]\nschedule = \"* * *\"\n"),
        "resources.addresses.schedule",
    );
    // The bound is the largest value allowed, said on one line.
    let p = rejected_naming(
        &format!("{FIRSTLINE}\n[sync]\nschedule = \"0 0 24 * * *\"\n"),
        "sync.schedule",
    );
    assert!(p.contains("Hours must be at most 23") && !p.contains('\n'), "{p}");
}

#[test]
fn a_bad_value_from_the_environment_names_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("restsync.toml");
    std::fs::write(&path, FIRSTLINE).unwrap();
    for (value, expected) in [("5000", "outside 1..=1000"), ("abc", "integer")] {
        let env = [("RESTSYNC_SYNC__PER_PAGE".to_string(), value.to_string())].into();
        let message = load_with_env(&path, env)
            .map(|_| ())
            .expect_err("invalid")
            .to_string();
        assert!(
            message.contains(expected) && message.contains("environment variable RESTSYNC_SYNC__PER_PAGE"),
            "{message}"
        );
    }
    // A problem in the file is not blamed on an unrelated variable.
    std::fs::write(&path, format!("{FIRSTLINE}\n[sync]\nconcurrency = 0\n")).unwrap();
    let env = [("RESTSYNC_SYNC__PER_PAGE".to_string(), "10".to_string())].into();
    let message = load_with_env(&path, env)
        .map(|_| ())
        .expect_err("invalid")
        .to_string();
    assert!(
        message.contains("sync.concurrency") && !message.contains("environment variable"),
        "{message}"
    );
}

#[test]
fn the_time_zone_is_an_iana_name_defaulting_to_the_systems() {
    let s = load_str(&format!("{FIRSTLINE}\n[sync]\ntime_zone = \"Asia/Taipei\"\n")).unwrap();
    assert_eq!(s.sync.time_zone, chrono_tz::Asia::Taipei);
    let local = validate::local_zone(
        std::env::var("TZ").ok().as_deref(),
        iana_time_zone::get_timezone().ok(),
    );
    assert_eq!(
        load_str(FIRSTLINE).unwrap().sync.time_zone,
        local,
        "the system's zone by default"
    );
    assert_eq!(
        load_str(&format!("{FIRSTLINE}\n[sync]\ntime_zone = \"local\"\n"))
            .unwrap()
            .sync
            .time_zone,
        local
    );
    // How the system's zone is found: TZ first (with or without its leading colon), then
    // the system's setting, then UTC.
    assert_eq!(
        validate::local_zone(Some(":Asia/Taipei"), Some("Europe/Moscow".into())),
        chrono_tz::Asia::Taipei
    );
    assert_eq!(
        validate::local_zone(Some("EST5EDT,M3.2.0"), Some("Europe/Moscow".into())),
        chrono_tz::Europe::Moscow
    );
    assert_eq!(validate::local_zone(None, None), chrono_tz::UTC);
    rejected_naming(
        &format!("{FIRSTLINE}\n[sync]\ntime_zone = \"Mars/Olympus\"\n"),
        "sync.time_zone",
    );
}

#[test]
fn unknown_keys_are_rejected_by_name() {
    for (toml, key) in [
        (format!("{FIRSTLINE}\n[sync]\nfoo = 1\n"), "foo"),
        (format!("{FIRSTLINE}\n[daemon]\nx = 1\n"), "daemon"),
        (format!("{FIRSTLINE}\nbase_uri = \"x\"\n"), "base_uri"),
        (
            format!("{FIRSTLINE}\n[resources.phone_numbers]\nenable = true\n"),
            "enable",
        ),
    ] {
        let p = problems(&toml);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains(key), "{:?} does not mention {key}", p[0]);
    }
}

#[test]
fn out_of_range_numbers_are_rejected() {
    rejected_naming(&format!("{FIRSTLINE}\n[sync]\nper_page = 0\n"), "sync.per_page");
    rejected_naming(
        &format!("{FIRSTLINE}\n[sync]\nper_page = 1001\n"),
        "sync.per_page",
    );
    rejected_naming(
        &format!("{FIRSTLINE}\n[sync]\nmax_delete_fraction = 2.0\n"),
        "sync.max_delete_fraction",
    );
    rejected_naming(
        &format!("{FIRSTLINE}\n[sync]\nmax_delete_fraction = -0.1\n"),
        "sync.max_delete_fraction",
    );
    rejected_naming(
        &format!("{FIRSTLINE}\n[sync]\nmax_delete_fraction = nan\n"),
        "sync.max_delete_fraction",
    );
    rejected_naming(
        &format!("{FIRSTLINE}\n[sync]\nconcurrency = 0\n"),
        "sync.concurrency",
    );
    rejected_naming(
        &format!("{FIRSTLINE}\n[sync]\nrequest_timeout_secs = 0\n"),
        "sync.request_timeout_secs",
    );
    rejected_naming(
        &format!("{FIRSTLINE}\n[sync]\nmax_attempts_per_run = 0\n"),
        "sync.max_attempts_per_run",
    );
    // A negative count does not fit the type at all; still a problem naming the key.
    let p = problems(&format!("{FIRSTLINE}\n[sync]\nper_page = -1\n"));
    assert!(p.iter().any(|p| p.contains("per_page")), "{p:?}");
    // The edges of the ranges are fine.
    let s = load_ok(&format!(
        "{FIRSTLINE}\n[sync]\nper_page = 1000\nmax_delete_fraction = 1.0\nconcurrency = 64\n"
    ));
    assert_eq!(s.sync.per_page, 1000);
    assert_eq!(s.sync.max_delete_fraction, 1.0);
    let s = load_ok(&format!(
        "{FIRSTLINE}\n[sync]\nper_page = 1\nmax_delete_fraction = 0.0\n"
    ));
    assert_eq!(s.sync.per_page, 1);
}

#[test]
fn plusofon_needs_a_client_and_firstline_takes_none() {
    let p = rejected_naming(
        "[upstreams.plusofon]\nbase_url = \"https://p.example\"\ntoken = \"t\"\n",
        "upstreams.plusofon.client",
    );
    assert!(p.contains("required"), "{p}");
    rejected_naming(
        "[upstreams.plusofon]\nbase_url = \"https://p.example\"\ntoken = \"t\"\nclient = \" \"\n",
        "upstreams.plusofon.client",
    );
    rejected_naming(
        "[upstreams.firstline]\nbase_url = \"https://f.example\"\ntoken = \"t\"\nclient = \"c\"\n",
        "upstreams.firstline.client",
    );
}

#[test]
fn other_invalid_values_name_their_keys() {
    rejected_naming(&format!("{FIRSTLINE}\n[log]\nformat = \"xml\"\n"), "log.format");
    rejected_naming(&format!("{FIRSTLINE}\n[log]\nlevel = \"[[[\"\n"), "log.level");
    rejected_naming(
        &format!("{FIRSTLINE}\n[resources.phone_numbers]\nuser_id = 3\n"),
        "resources.phone_numbers.user_id",
    );
    let p = problems("");
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("upstreams"), "{p:?}");
}

#[test]
fn several_problems_are_reported_together() {
    let toml = r#"
[upstreams.firstline]
base_url = "nonsense"

[upstreams.plusofon]
base_url = "https://p.example"
token = "t"

[resources.smart_numbers]
schedule = "bad"

[sync]
per_page = 0
on_conflict = "whatever"
max_delete_fraction = 2.0
schedule = "also bad"
"#;
    let err = load_str(toml).unwrap_err();
    let text = err.to_string();
    let p = problems_of(Err(err));
    for key in [
        "upstreams.firstline.base_url",
        "upstreams.firstline.token",
        "upstreams.plusofon.client",
        "sync.per_page",
        "sync.on_conflict",
        "sync.max_delete_fraction",
        "sync.schedule",
    ] {
        assert!(p.iter().any(|p| p.starts_with(key)), "{key} missing from {p:?}");
        assert!(text.contains(key), "{key} missing from the message:\n{text}");
    }
    assert!(p.len() >= 7, "{p:?}");
}

#[test]
fn five_field_cron_lines_are_accepted() {
    let five = parse_schedule("*/5 * * * *").unwrap();
    assert_eq!(five, parse_schedule("0 */5 * * * *").unwrap());
    let next: Vec<_> = five.upcoming(chrono::Utc).take(3).collect();
    for t in &next {
        assert_eq!(chrono::Timelike::second(t), 0);
        assert_eq!(chrono::Timelike::minute(t) % 5, 0);
    }
    assert!(
        parse_schedule("0 */5 * * * * 2099").is_ok(),
        "seven fields (with year)"
    );
    let err = parse_schedule("nope").unwrap_err();
    assert!(err.contains("\"nope\""), "{err}");
    let s = load_ok(&format!("{FIRSTLINE}\n[sync]\nschedule = \"*/5 * * * *\"\n"));
    assert_eq!(s.sync.schedule, five);
}

/// In a crontab line the day of week is 0-7 with Sunday 0 (and 7) and Monday 1; the cron
/// crate counts 1-7 from Sunday. A five-field line must keep its crontab meaning.
#[test]
fn five_field_day_of_week_has_crontab_meaning() {
    use chrono::Datelike;
    let monday = parse_schedule("0 9 * * 1").unwrap();
    let next = monday.upcoming(chrono::Utc).next().unwrap();
    assert_eq!(next.weekday(), chrono::Weekday::Mon, "crontab `1` is Monday");
    let weekdays = parse_schedule("0 9 * * 1-5").unwrap();
    for t in weekdays.upcoming(chrono::Utc).take(10) {
        assert!(
            !matches!(t.weekday(), chrono::Weekday::Sat | chrono::Weekday::Sun),
            "{t}"
        );
    }
    let sunday = parse_schedule("0 0 * * 0").expect("crontab `0` is Sunday");
    assert_eq!(
        sunday.upcoming(chrono::Utc).next().unwrap().weekday(),
        chrono::Weekday::Sun
    );
}

/// One weekday convention: a six-field line fires at the same instants as its five-field
/// equivalent and as the same line with day names.
#[test]
fn six_and_five_field_lines_agree_on_the_day_of_week() {
    let next = |s: &str| -> Vec<_> { parse_schedule(s).unwrap().upcoming(chrono::Utc).take(3).collect() };
    let mondays = next("0 9 * * 1");
    assert_eq!(next("0 0 9 * * 1"), mondays);
    assert_eq!(next("0 9 * * MON"), mondays);
    assert_eq!(next("0 0 9 * * Mon"), mondays);
    assert_eq!(next("0 0 9 * * 1-5"), next("0 9 * * 1-5"));
    assert_eq!(next("0 0 0 * * 0"), next("0 0 * * 7"));
}

#[test]
fn environment_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, FIRSTLINE);
    let s = load_with_env(
        &path,
        env(&[
            ("RESTSYNC_UPSTREAMS__FIRSTLINE__TOKEN", "env-token"),
            ("RESTSYNC_SYNC__PER_PAGE", "50"),
            ("RESTSYNC_SYNC__ON_CONFLICT", "local-wins"),
        ]),
    )
    .unwrap();
    assert_eq!(
        s.upstream(UpstreamName::Firstline).unwrap().token.expose(),
        "env-token"
    );
    assert_eq!(s.sync.per_page, 50);
    assert_eq!(s.sync.on_conflict, ConflictPolicy::LocalWins);
    assert!(!format!("{s:?}").contains("env-token"));
}

#[test]
fn environment_can_configure_an_upstream_the_file_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, FIRSTLINE);
    let s = load_with_env(
        &path,
        env(&[
            ("RESTSYNC_UPSTREAMS__PLUSOFON__BASE_URL", "https://p.example"),
            ("RESTSYNC_UPSTREAMS__PLUSOFON__TOKEN", "pt"),
            ("RESTSYNC_UPSTREAMS__PLUSOFON__CLIENT", "c1"),
        ]),
    )
    .unwrap();
    assert_eq!(
        s.upstream(UpstreamName::Plusofon).unwrap().client.as_deref(),
        Some("c1")
    );
    assert!(s.resource(ResourceKind::SMART_NUMBERS).is_some());
}

#[test]
fn invalid_environment_values_are_reported_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, FIRSTLINE);
    let p = problems_of(load_with_env(&path, env(&[("RESTSYNC_SYNC__PER_PAGE", "0")])));
    assert!(p.iter().any(|p| p.starts_with("sync.per_page")), "{p:?}");
    let p = problems_of(load_with_env(&path, env(&[("RESTSYNC_SYNC__FOO", "1")])));
    assert!(p.iter().any(|p| p.contains("foo")), "{p:?}");
}

/// Tokens are opaque strings; one made only of digits must reach the upstream unchanged.
#[test]
fn numeric_token_from_the_environment_is_kept_verbatim() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, FIRSTLINE);
    for token in ["0012345", "123456789012345678901234567890"] {
        let s = load_with_env(&path, env(&[("RESTSYNC_UPSTREAMS__FIRSTLINE__TOKEN", token)])).unwrap();
        assert_eq!(s.upstream(UpstreamName::Firstline).unwrap().token.expose(), token);
    }
}

#[test]
fn token_file_is_read_and_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let token_path = dir.path().join("fl.token");
    fs::write(&token_path, "  file-secret\n\n").unwrap();
    let toml = format!(
        "[upstreams.firstline]\nbase_url = \"https://f.example\"\ntoken_file = {:?}\n",
        token_path.to_str().unwrap()
    );
    let s = load_with_env(&write(&dir, &toml), HashMap::new()).unwrap();
    assert_eq!(
        s.upstream(UpstreamName::Firstline).unwrap().token.expose(),
        "file-secret"
    );
    assert!(!format!("{s:?}").contains("file-secret"));
    // A refused token is looked for where it came from: the file, or the variable.
    let hint = s.upstream(UpstreamName::Firstline).unwrap().credentials_hint();
    assert_eq!(
        hint,
        format!("check upstreams.firstline.token_file ({})", token_path.display())
    );
    let env = HashMap::from([(
        "RESTSYNC_UPSTREAMS__FIRSTLINE__TOKEN_FILE".to_string(),
        token_path.display().to_string(),
    )]);
    let s = load_with_env(&write(&dir, &toml), env).unwrap();
    let hint = s.upstream(UpstreamName::Firstline).unwrap().credentials_hint();
    assert!(
        hint.starts_with("check RESTSYNC_UPSTREAMS__FIRSTLINE__TOKEN_FILE (the environment variable"),
        "{hint}"
    );

    // An empty file and a missing one name the key.
    fs::write(&token_path, " \n").unwrap();
    let p = problems_of(load_with_env(&write(&dir, &toml), HashMap::new()));
    assert!(
        p.len() == 1 && p[0].starts_with("upstreams.firstline.token_file"),
        "{p:?}"
    );
    fs::remove_file(&token_path).unwrap();
    let p = problems_of(load_with_env(&write(&dir, &toml), HashMap::new()));
    assert!(
        p.len() == 1 && p[0].starts_with("upstreams.firstline.token_file"),
        "{p:?}"
    );
    assert!(p[0].contains("fl.token"), "{p:?}");
}

/// The only test that touches `CREDENTIALS_DIRECTORY` (tests run in parallel; every other
/// test uses absolute token_file paths).
#[test]
fn relative_token_file_resolves_against_credentials_directory() {
    let config_dir = tempfile::tempdir().unwrap();
    let creds = tempfile::tempdir().unwrap();
    fs::write(creds.path().join("firstline"), "from-credentials\n").unwrap();
    fs::write(config_dir.path().join("firstline"), "from-config-dir\n").unwrap();
    let path = write(
        &config_dir,
        "[upstreams.firstline]\nbase_url = \"https://f.example\"\ntoken_file = \"firstline\"\n",
    );
    let saved = std::env::var_os("CREDENTIALS_DIRECTORY");
    std::env::set_var("CREDENTIALS_DIRECTORY", creds.path());
    let with_creds = load_with_env(&path, HashMap::new());
    std::env::remove_var("CREDENTIALS_DIRECTORY");
    let without = load_with_env(&path, HashMap::new());
    if let Some(v) = saved {
        std::env::set_var("CREDENTIALS_DIRECTORY", v);
    }
    let token = |s: Result<Settings, ConfigError>| {
        s.unwrap()
            .upstream(UpstreamName::Firstline)
            .unwrap()
            .token
            .expose()
            .to_string()
    };
    assert_eq!(token(with_creds), "from-credentials");
    assert_eq!(token(without), "from-config-dir");
}

#[test]
fn disabled_resource_is_skipped() {
    let s = load_ok(&format!("{FIRSTLINE}\n[resources.addresses]\nenabled = false\n"));
    assert!(s.resource(ResourceKind::ADDRESSES).is_none());
    assert!(s.resource(ResourceKind::PHONE_NUMBERS).is_some());
    // Disabled, its bad schedule is not even looked at.
    let s = load_ok(&format!(
        "{FIRSTLINE}\n[resources.addresses]\nenabled = false\nschedule = \"bad\"\n"
    ));
    assert!(s.resource(ResourceKind::ADDRESSES).is_none());
}

#[test]
fn enabled_resource_without_its_upstream_is_an_error() {
    rejected_naming(
        &format!("{FIRSTLINE}\n[resources.smart_numbers]\nenabled = true\n"),
        "resources.smart_numbers.enabled",
    );
    let p = rejected_naming(
        &format!("{PLUSOFON}\n[resources.phone_numbers]\nenabled = true\n"),
        "resources.phone_numbers.enabled",
    );
    assert!(p.contains("upstreams.firstline"), "{p}");
}

#[test]
fn resources_default_to_enabled_when_their_upstream_is_configured() {
    let s = load_ok(PLUSOFON);
    let kinds: Vec<ResourceKind> = s.resources.iter().map(|r| r.kind).collect();
    assert_eq!(kinds, [ResourceKind::SMART_NUMBERS]);
    let s = load_ok(&format!("{FIRSTLINE}{PLUSOFON}"));
    assert_eq!(s.resources.len(), 3);
    // A section without `enabled` still follows its upstream.
    let s = load_ok(&format!("{FIRSTLINE}\n[resources.smart_numbers]\nuser_id = 4\n"));
    assert!(s.resource(ResourceKind::SMART_NUMBERS).is_none());
}

#[test]
fn debug_output_never_shows_tokens() {
    let s = load_ok(&format!("{FIRSTLINE}{PLUSOFON}"));
    let debug = format!("{s:?}");
    assert!(!debug.contains("fl-file-token"), "{debug}");
    assert!(!debug.contains("pl-file-token"), "{debug}");
    assert!(debug.contains("Secret(***)"));
    let pretty = format!("{s:#?}");
    assert!(!pretty.contains("fl-file-token") && !pretty.contains("pl-file-token"));
    assert_eq!(format!("{:?}", Secret::new("x")), "Secret(***)");
}

#[test]
fn conflict_policy_names_round_trip() {
    for p in [ConflictPolicy::RemoteWins, ConflictPolicy::LocalWins] {
        assert_eq!(p.as_str().parse::<ConflictPolicy>(), Ok(p));
    }
    assert!("remote_wins".parse::<ConflictPolicy>().is_err());
}

#[test]
fn crontab_day_of_week_ranges_ending_on_sunday() {
    use chrono::Datelike;
    let all = parse_schedule("0 9 * * 0-7").unwrap();
    let days: std::collections::HashSet<_> =
        all.upcoming(chrono::Utc).take(14).map(|t| t.weekday()).collect();
    assert_eq!(days.len(), 7);
    let weekend = parse_schedule("0 9 * * 5-7").unwrap();
    let days: std::collections::HashSet<_> = weekend
        .upcoming(chrono::Utc)
        .take(9)
        .map(|t| t.weekday())
        .collect();
    let expected: std::collections::HashSet<_> =
        [chrono::Weekday::Fri, chrono::Weekday::Sat, chrono::Weekday::Sun]
            .into_iter()
            .collect();
    assert_eq!(days, expected);
    assert!(parse_schedule("0 9 * * 8").is_err());
}

const EMAILS: &str = r#"
[resources.emails]
upstream = "firstline"
path = "/api/v1/email"
natural_key = ["contact_id", "email"]
filters = { contact_id = 7 }

[[resources.emails.columns]]
name = "contact_id"
type = "integer"
from = "email_contact.contact_id"
writable = true
required_on_update = true

[[resources.emails.columns]]
name = "email"
type = "text"
writable = true

[[resources.emails.columns]]
name = "score"
type = "real"
"#;

#[test]
fn a_defined_resource_loads_with_its_columns_filters_and_defaults() {
    let s = load_ok(&format!("{FIRSTLINE}{EMAILS}"));
    let kinds = s.kinds();
    assert_eq!(kinds.len(), 3, "phone_numbers, addresses and emails: {kinds:?}");
    let emails = ResourceKind::from_name("emails").expect("registered by the load");
    assert!(!emails.is_built_in());
    let spec = emails.spec();
    assert_eq!(
        (spec.table, spec.base_table, spec.path),
        ("emails", "emails_base", "/api/v1/email")
    );
    assert_eq!(spec.pagination, crate::resources::Pagination::Laravel);
    assert!(spec.can_create && spec.can_update && spec.can_delete && spec.create_returns_record);
    assert_eq!(spec.lookup_filters, &["contact_id", "email"]);
    let contact = &spec.columns[0];
    assert_eq!(contact.read_from.dotted(), "email_contact.contact_id");
    assert!(contact.writable && contact.required_on_update);
    assert_eq!(spec.columns[2].ty, crate::resources::ColumnType::Real);
    assert!(!spec.columns[2].writable, "columns are read-only unless said");
    let res = s.resource(emails).unwrap();
    assert_eq!(res.filters, vec![("contact_id", "7".to_string())]);
    assert_eq!(res.schedule, s.sync.schedule);
    // A record of the upstream maps through the nested path.
    let r = spec
        .parse(&serde_json::json!({"id": 3, "email_contact": {"contact_id": "9"}, "email": "a@b.c", "score": "1.5"}), None)
        .unwrap();
    assert_eq!(
        r.values,
        vec![Value::Integer(9), Value::Text("a@b.c".into()), Value::Real(1.5)]
    );
}

#[test]
fn a_plusofon_definition_pages_flat_unless_told() {
    let toml = format!(
        "{PLUSOFON}\n[resources.routes]\nupstream = \"plusofon\"\npath = \"/api/v1/routes\"\noperations = [\"create\", \"delete\"]\n\
         create_returns_record = false\nnatural_key = [\"name\"]\n[[resources.routes.columns]]\nname = \"name\"\ntype = \"text\"\nwritable = true\n"
    );
    load_ok(&toml);
    let spec = ResourceKind::from_name("routes").unwrap().spec();
    assert_eq!(spec.pagination, crate::resources::Pagination::Flat);
    assert!(spec.can_create && !spec.can_update && spec.can_delete && !spec.create_returns_record);
}

#[test]
fn every_bad_key_of_a_definition_is_named() {
    let cases: &[(&str, &str)] = &[
        ("[resources.contacts]\nenabled = true\n", "resources.contacts.upstream: required"),
        ("[resources.contacts]\nenabled = true\n", "resources.contacts.path: required"),
        ("[resources.contacts]\nenabled = true\n", "resources.contacts.columns: required"),
        (
            "[resources.e2]\nupstream = \"firstline\"\npath = \"/x\"\nnatural_key = [\"a\"]\n[[resources.e2.columns]]\nname = \"a\"\ntype = \"date\"\nwritable = true\n",
            "resources.e2.columns[0] (a).type: \"date\" is not one of",
        ),
        (
            "[resources.e3]\nupstream = \"firstline\"\npath = \"/x\"\nnatural_key = [\"nope\"]\n[[resources.e3.columns]]\nname = \"a\"\ntype = \"text\"\nwritable = true\n",
            "resources.e3.natural_key: `nope` is not a column",
        ),
        (
            "[resources.e4]\nupstream = \"firstline\"\npath = \"/x\"\nnatural_key = [\"a\"]\n[[resources.e4.columns]]\nname = \"a\"\ntype = \"text\"\nwritable = true\n\
             [[resources.e4.columns]]\nname = \"b\"\ntype = \"text\"\nfrom = \"a.inner\"\n",
            "resources.e4.columns (a): `from` \"a\" and \"a.inner\"",
        ),
        (
            "[resources.journal]\nupstream = \"firstline\"\npath = \"/x\"\nnatural_key = [\"a\"]\n[[resources.journal.columns]]\nname = \"a\"\ntype = \"text\"\nwritable = true\n",
            "resources.journal: the table name `journal` is taken",
        ),
        (
            "[resources.emails_base]\nupstream = \"firstline\"\npath = \"/x\"\nnatural_key = [\"a\"]\n[[resources.emails_base.columns]]\nname = \"a\"\ntype = \"text\"\nwritable = true\n",
            "resources.emails_base: names ending in `_base`",
        ),
        (
            "[resources.e5]\nupstream = \"firstline\"\npath = \"/x\"\nnatural_key = [\"order\"]\n[[resources.e5.columns]]\nname = \"order\"\ntype = \"text\"\nwritable = true\n",
            "resources.e5.columns[0] (order).name: `order` cannot be a column name",
        ),
        (
            "[resources.e6]\nupstream = \"firstline\"\npath = \"/x\"\nnatural_key = [\"a\"]\n[[resources.e6.columns]]\nname = \"id\"\ntype = \"integer\"\n\
             [[resources.e6.columns]]\nname = \"a\"\ntype = \"text\"\nwritable = true\n",
            "resources.e6.columns[0] (id).name: `id` is implicit",
        ),
        (
            "[resources.e7]\nupstream = \"firstline\"\npath = \"/x\"\n[[resources.e7.columns]]\nname = \"a\"\ntype = \"text\"\nwritable = true\n",
            "resources.e7.natural_key: required when the resource can be created",
        ),
        (
            "[resources.e8]\nupstream = \"crm\"\npath = \"/x\"\noperations = [\"patch\"]\n[[resources.e8.columns]]\nname = \"a\"\ntype = \"text\"\n",
            "resources.e8.upstream: \"crm\" is not one of",
        ),
        (
            "[resources.e8]\nupstream = \"crm\"\npath = \"/x\"\noperations = [\"patch\"]\n[[resources.e8.columns]]\nname = \"a\"\ntype = \"text\"\n",
            "resources.e8.operations: \"patch\" is not one of",
        ),
        (
            "[resources.e9]\nupstream = \"firstline\"\npath = \"/x\"\noperations = []\nfilters = { b = 1 }\n[[resources.e9.columns]]\nname = \"a\"\ntype = \"text\"\n",
            "resources.e9.filters: `b` is not a column",
        ),
        (
            "[resources.e10]\nupstream = \"firstline\"\npath = \"/x\"\nnatural_key = [\"current_date\"]\n[[resources.e10.columns]]\nname = \"current_date\"\ntype = \"text\"\nwritable = true\n",
            "resources.e10.columns[0] (current_date).name: `current_date` cannot be a column name",
        ),
        (
            "[resources.e11]\nupstream = \"firstline\"\npath = \"/x\"\noperations = []\n[[resources.e11.columns]]\nname = \"raw\"\ntype = \"text\"\n",
            "resources.e11.columns[0] (raw).name: `raw` is taken",
        ),
        (
            "[resources.e12]\nupstream = \"firstline\"\npath = \"/api/../x\"\noperations = []\n[[resources.e12.columns]]\nname = \"a\"\ntype = \"text\"\n",
            "resources.e12.path",
        ),
        (
            "[resources.e13]\nupstream = \"firstline\"\npath = \"/x\"\noperations = [\"delete\", \"delete\"]\nfilters = { a = \"many\" }\n[[resources.e13.columns]]\nname = \"a\"\ntype = \"integer\"\n",
            "resources.e13.operations: \"delete\" is listed twice",
        ),
        (
            "[resources.e14]\nupstream = \"firstline\"\npath = \"/x\"\noperations = []\nfilters = { a = \"many\" }\n[[resources.e14.columns]]\nname = \"a\"\ntype = \"integer\"\n",
            "resources.e14.filters: `a` holds an integer; many does not fit it",
        ),
        (
            "[resources.phone_numbers]\npath = \"/api/v2/phone\"\n",
            "resources.phone_numbers: path cannot be set for a built-in resource",
        ),
    ];
    for (section, wanted) in cases {
        let p = problems(&format!("{FIRSTLINE}{section}"));
        assert!(
            p.iter().any(|m| m.contains(wanted)),
            "{wanted:?} not among {p:#?}"
        );
    }
    // Several bad keys in one definition: all of them at once.
    let p = problems(&format!(
        "{FIRSTLINE}[resources.bad]\nupstream = \"x\"\npath = \"nope\"\npagination = \"cursor\"\n[[resources.bad.columns]]\nname = \"A\"\ntype = \"blob\"\n"
    ));
    for key in [
        "bad.upstream",
        "bad.path",
        "bad.pagination",
        "(A).name",
        "(A).type",
    ] {
        assert!(p.iter().any(|m| m.contains(key)), "{key} not among {p:#?}");
    }
}

#[test]
fn each_built_in_printed_as_toml_defines_the_same_resource_under_another_name() {
    for kind in ResourceKind::BUILT_IN {
        let printed = crate::resources::definition::to_toml(kind.spec());
        let copy_name = format!("copy_of_{}", kind.name());
        let renamed = printed
            .replace(
                &format!("resources.{}]", kind.name()),
                &format!("resources.{copy_name}]"),
            )
            .replace(
                &format!("resources.{}.", kind.name()),
                &format!("resources.{copy_name}."),
            );
        let s = load_ok(&format!("{FIRSTLINE}{PLUSOFON}{renamed}"));
        let copy = ResourceKind::from_name(&copy_name).expect("defined");
        assert!(s.resource(copy).is_some(), "{copy_name} enabled");
        let (a, b) = (kind.spec(), copy.spec());
        assert_eq!(b.table, copy_name);
        assert_eq!(
            (
                a.upstream,
                a.path,
                a.pagination,
                a.columns,
                a.can_create,
                a.can_update,
                a.can_delete,
                a.create_returns_record,
                a.lookup_filters
            ),
            (
                b.upstream,
                b.path,
                b.pagination,
                b.columns,
                b.can_create,
                b.can_update,
                b.can_delete,
                b.create_returns_record,
                b.lookup_filters
            ),
            "{printed}"
        );
    }
}

#[test]
fn a_built_in_printed_with_its_configured_filters_keeps_its_scope_when_copied() {
    let s = load_ok(&format!("{PLUSOFON}\n[resources.smart_numbers]\nuser_id = 40\n"));
    let res = s.resource(ResourceKind::SMART_NUMBERS).unwrap();
    let printed =
        crate::resources::definition::to_toml_with_filters(ResourceKind::SMART_NUMBERS.spec(), &res.filters);
    assert!(printed.contains("filters = { user_id = 40 }"), "{printed}");
    let copy = printed.replace("resources.smart_numbers", "resources.team_numbers");
    let s = load_ok(&format!("{PLUSOFON}{copy}"));
    let team = ResourceKind::from_name("team_numbers").unwrap();
    assert_eq!(
        s.resource(team).unwrap().filters,
        vec![("user_id", "40".to_string())]
    );
}

/// "Mondays at 9" written three ways fires at the same instants: Mondays, 09:00 in the
/// configured zone.
#[test]
fn mondays_at_nine_are_the_same_mondays_in_the_configured_zone() {
    use chrono::{Datelike, Timelike};
    let zone = chrono_tz::Asia::Taipei;
    let runs: Vec<Vec<String>> = ["0 0 9 * * 1", "0 9 * * 1", "0 9 * * MON"]
        .iter()
        .map(|line| {
            let schedule = parse_schedule(line).unwrap();
            schedule
                .upcoming(zone)
                .take(3)
                .map(|t| {
                    assert_eq!(t.weekday(), chrono::Weekday::Mon, "{line}: {t}");
                    assert_eq!((t.hour(), t.minute(), t.second()), (9, 0, 0), "{line}: {t}");
                    t.to_rfc3339()
                })
                .collect()
        })
        .collect();
    assert!(runs[0][0].ends_with("T09:00:00+08:00"), "{:?}", runs[0]);
    assert_eq!(runs[0], runs[1]);
    assert_eq!(runs[1], runs[2]);
}

/// Unknown keys, values of the wrong type and out-of-range values: all in one message.
#[test]
fn unknown_keys_type_errors_and_bad_values_are_reported_together() {
    let p = problems(&format!(
        "{FIRSTLINE}extra = 1\n[sync]\nper_pge = 50\nconcurrency = \"many\"\nmax_delete_fraction = 7.0\n\
         [daemon]\npush_delay_ms = \"soon\"\n[log]\nformat = \"xml\"\n"
    ));
    for key in [
        "upstreams.firstline.extra",
        "sync.per_pge",
        "sync.concurrency",
        "daemon.push_delay_ms",
        "sync.max_delete_fraction",
        "log.format",
    ] {
        assert!(
            p.iter().any(|m| m.starts_with(&format!("{key}:"))),
            "{key} not among {p:#?}"
        );
    }
    assert!(
        !p.iter()
            .any(|m| m.starts_with("sync.concurrency:") && m.contains("outside")),
        "a bad value is not also reported as missing or out of range: {p:#?}"
    );
}

/// Crontab runs a line whose day-of-month and weekday are both set on either day: the 1st
/// of the month, and every Monday. Six fields read the same.
#[test]
fn day_of_month_and_weekday_together_mean_either_day_as_in_crontab() {
    use chrono::{Datelike, TimeZone};
    let start = chrono_tz::Asia::Taipei
        .with_ymd_and_hms(2026, 12, 1, 0, 0, 0)
        .unwrap();
    for line in ["0 9 1 * 1", "0 0 9 1 * MON"] {
        let schedule = parse_schedule(line).unwrap();
        let days: Vec<(u32, u32, chrono::Weekday)> = schedule
            .after(&start)
            .take(6)
            .map(|t| (t.month(), t.day(), t.weekday()))
            .collect();
        // Tue 1 Dec 2026, then every Monday, then 1 Jan 2027 (a Friday).
        assert_eq!(
            days,
            vec![
                (12, 1, chrono::Weekday::Tue),
                (12, 7, chrono::Weekday::Mon),
                (12, 14, chrono::Weekday::Mon),
                (12, 21, chrono::Weekday::Mon),
                (12, 28, chrono::Weekday::Mon),
                (1, 1, chrono::Weekday::Fri),
            ],
            "{line}"
        );
    }
    // Only one of them restricted: as before.
    let mondays: Vec<chrono::Weekday> = parse_schedule("0 9 * * 1")
        .unwrap()
        .after(&start)
        .take(3)
        .map(|t| t.weekday())
        .collect();
    assert_eq!(mondays, vec![chrono::Weekday::Mon; 3]);
}
