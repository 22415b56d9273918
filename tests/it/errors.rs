//! Bad answers from upstream and bad configuration: a clear error naming what was wrong,
//! the right exit code, and a mirror left as it was.

use crate::common::Env;
use restsync::sandbox::{FaultAction, Kind, ScriptedFault};

fn always(method: &str, kind: Kind, page: Option<u32>, action: FaultAction) -> ScriptedFault {
    ScriptedFault {
        method: Some(method.into()),
        kind: Some(kind),
        page,
        action,
        times: 1000,
    }
}

/// Mirror content of a table as text, to compare before and after.
fn dump(env: &Env, table: &str) -> String {
    env.db()
        .query_row(
            &format!("SELECT count(*) || ':' || coalesce(group_concat(local_id || '|' || id || '|' || coalesce(description, '')), '') FROM {table}"),
            [],
            |r| r.get(0),
        )
        .expect("dump")
}

#[tokio::test(flavor = "multi_thread")]
async fn unauthorized_is_a_clear_error_and_leaves_the_mirror() {
    let env = Env::start(40).await;
    env.sync_ok().await;
    let id = env.upstream_ids(Kind::PhoneNumbers)[0];
    env.control.update(
        Kind::PhoneNumbers,
        id,
        serde_json::json!({"description": "changed upstream"}),
    );
    let before = dump(&env, "phone_numbers");
    let run = env
        .restsync_env(
            &["sync", "--once"],
            &[("RESTSYNC_UPSTREAMS__FIRSTLINE__TOKEN", "wrong-token")],
        )
        .await;
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert!(
        run.stderr.contains("HTTP 401") && run.stderr.contains("Unauthenticated"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("wrong-token"),
        "the token leaked into the log"
    );
    assert_eq!(dump(&env, "phone_numbers"), before);
    let status = env.restsync(&["status"]).await;
    assert!(
        status.stdout.contains("HTTP 401"),
        "status does not show the last error:\n{}",
        status.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn html_error_pages_are_reported_and_retried_later() {
    let env = Env::start(40).await;
    env.sync_ok().await;
    let before = dump(&env, "addresses");
    env.control
        .push_scripted(always("GET", Kind::Addresses, Some(2), FaultAction::Html(502)));
    let run = env.sync_once().await;
    assert_eq!(run.code, 75, "{}", run.stderr);
    assert!(
        run.stderr.contains("HTTP 502") && run.stderr.contains("Bad Gateway"),
        "{}",
        run.stderr
    );
    assert_eq!(dump(&env, "addresses"), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_html_page_with_status_200_is_not_taken_for_data() {
    let env = Env::start(40).await;
    env.sync_ok().await;
    let before = dump(&env, "phone_numbers");
    let page = "<!DOCTYPE html><html><head><title>Maintenance</title></head><body>back soon</body></html>";
    env.control.push_scripted(always(
        "GET",
        Kind::PhoneNumbers,
        Some(1),
        FaultAction::Status(200, page.into()),
    ));
    let run = env.sync_once().await;
    assert_eq!(run.code, 75, "{}", run.stderr);
    assert!(
        run.stderr.contains("HTML page instead of JSON") && run.stderr.contains("Maintenance"),
        "{}",
        run.stderr
    );
    assert_eq!(dump(&env, "phone_numbers"), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_json_is_reported_and_leaves_the_mirror() {
    let env = Env::start(60).await;
    env.sync_ok().await;
    let id = env.upstream_ids(Kind::SmartNumbers)[20];
    env.control.delete(Kind::SmartNumbers, id);
    let before = dump(&env, "smart_numbers");
    env.control
        .push_scripted(always("GET", Kind::SmartNumbers, Some(3), FaultAction::Truncated));
    let run = env.sync_once().await;
    assert_eq!(run.code, 75, "{}", run.stderr);
    assert!(run.stderr.contains("truncated JSON"), "{}", run.stderr);
    assert!(run.stderr.contains("smart_numbers page 3"), "{}", run.stderr);
    // The record deleted upstream is not removed on the strength of a broken walk.
    assert_eq!(dump(&env, "smart_numbers"), before);
    env.control.set_faults(Default::default());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_passing_fault_is_retried_within_the_run() {
    let env = Env::start(60).await;
    env.control.push_scripted(ScriptedFault {
        method: Some("GET".into()),
        kind: Some(Kind::PhoneNumbers),
        page: Some(2),
        action: FaultAction::Status(500, r#"{"message":"Server Error"}"#.into()),
        times: 2,
    });
    env.control.push_scripted(ScriptedFault {
        method: Some("GET".into()),
        kind: Some(Kind::Addresses),
        page: Some(1),
        action: FaultAction::RetryAfter(1),
        times: 1,
    });
    env.sync_ok().await;
    env.assert_converged();
}

#[tokio::test(flavor = "multi_thread")]
async fn plusofon_error_body_with_http_200_on_a_list_is_an_error() {
    let env = Env::start(30).await;
    env.write_config("", "[resources.smart_numbers]\nuser_id = 999999\n");
    let run = env.sync_once().await;
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert!(run.stderr.contains("User not found"), "{}", run.stderr);
    assert_eq!(env.count("SELECT count(*) FROM smart_numbers"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_configuration_exits_78_naming_the_key() {
    let env = Env::start(5).await;
    let cases: &[(&str, &str, &str)] = &[
        ("on_conflict = \"mine-wins\"", "", "sync.on_conflict"),
        ("schedule = \"every five minutes\"", "", "sync.schedule"),
        ("frobnicate = 1", "", "frobnicate"),
        ("max_attempts_per_run = 0", "", "sync.max_attempts_per_run"),
        ("max_delete_fraction = 3.5", "", "sync.max_delete_fraction"),
    ];
    for (sync_extra, tail, key) in cases {
        env.write_config(sync_extra, tail);
        let run = env.sync_once().await;
        assert_eq!(run.code, 78, "{sync_extra}: {}", run.stderr);
        assert!(
            run.stderr.contains(key),
            "{sync_extra}: message does not name {key}: {}",
            run.stderr
        );
    }
    env.write_config("", "");
    let run = env
        .restsync_env(
            &["sync", "--once"],
            &[("RESTSYNC_UPSTREAMS__PLUSOFON__BASE_URL", "not a url")],
        )
        .await;
    assert_eq!(run.code, 78, "{}", run.stderr);
    assert!(
        run.stderr.contains("upstreams.plusofon.base_url"),
        "{}",
        run.stderr
    );
    let run = env
        .restsync_env(&["sync", "--once"], &[("RESTSYNC_SYNC__PER_PAGE", "0")])
        .await;
    assert_eq!(run.code, 78, "{}", run.stderr);
    assert!(run.stderr.contains("sync.per_page"), "{}", run.stderr);
    // A missing token.
    let text = std::fs::read_to_string(&env.config).expect("config");
    let without_token: String = text
        .lines()
        .filter(|l| !l.starts_with("token = \"sandbox-firstline"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&env.config, without_token).expect("write");
    let run = env.sync_once().await;
    assert_eq!(run.code, 78, "{}", run.stderr);
    assert!(run.stderr.contains("upstreams.firstline.token"), "{}", run.stderr);
    // Nothing was synced by any of these runs.
    assert!(!env.db_path.exists() || env.count("SELECT count(*) FROM phone_numbers") == 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_runs_reopen_and_migrate_the_same_database() {
    let env = Env::start(20).await;
    env.sync_ok().await;
    env.sync_ok().await;
    let version = env.count("PRAGMA user_version");
    assert_eq!(version, restsync::store::schema_version() as i64);
    // A database written by a newer restsync is refused, untouched.
    env.exec("PRAGMA user_version = 99");
    let run = env.sync_once().await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("newer than this restsync understands"),
        "{}",
        run.stderr
    );
    assert_eq!(env.count("PRAGMA user_version"), 99);
}

#[tokio::test(flavor = "multi_thread")]
async fn unrelated_environment_is_ignored_and_bad_header_values_name_their_key() {
    let env = Env::start(5).await;
    let run = env
        .restsync_env(&["check"], &[("RESTSYNC_SOMETHING_ELSE", "1")])
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = env
        .restsync_env(
            &["sync", "--once"],
            &[("RESTSYNC_UPSTREAMS__FIRSTLINE__TOKEN", "abc\u{7f}def")],
        )
        .await;
    assert_eq!(run.code, 78, "{}", run.stderr);
    assert!(run.stderr.contains("upstreams.firstline.token"), "{}", run.stderr);
    let text = std::fs::read_to_string(&env.config).expect("config");
    std::fs::write(
        &env.config,
        text.replace(
            "[upstreams.plusofon]",
            "max_in_flight = 99999999999\n\n[upstreams.plusofon]",
        ),
    )
    .expect("config");
    let run = env.sync_once().await;
    assert_eq!(run.code, 78, "{}", run.stderr);
    assert!(
        run.stderr.contains("upstreams.firstline.max_in_flight"),
        "{}",
        run.stderr
    );
}

/// Runs `restsync demo --dir DIR` with a small sandbox.
async fn demo(dir: &std::path::Path) -> crate::common::Run {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_restsync"));
    cmd.args(["demo", "--records", "12", "--dir"]).arg(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("RESTSYNC_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.kill_on_drop(true);
    let out = cmd.output().await.expect("run restsync demo");
    crate::common::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Names and contents of a directory's files, to compare before and after.
fn snapshot(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| {
            let e = e.expect("entry");
            let bytes = std::fs::read(e.path()).expect("read file");
            (e.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_refuses_a_directory_it_did_not_make_and_touches_nothing() {
    let root = tempfile::tempdir().expect("temp dir");
    let dir = root.path().join("work");
    std::fs::create_dir(&dir).expect("mkdir");
    // Someone's mirror with changes not yet pushed, and their configuration.
    std::fs::write(
        dir.join("restsync.db"),
        b"SQLite format 3\0 pending changes \x01\x02\x03",
    )
    .expect("write db");
    std::fs::write(
        dir.join("restsync.toml"),
        "[database]\npath = \"restsync.db\"\n[upstreams.firstline]\ntoken = \"real\"\n",
    )
    .expect("write config");
    let before = snapshot(&dir);

    let run = demo(&dir).await;
    assert_eq!(run.code, 73, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains(&dir.display().to_string()),
        "the message does not name the directory: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("restsync.db") && run.stderr.contains("restsync.toml"),
        "the message does not say what is there: {}",
        run.stderr
    );
    assert_eq!(snapshot(&dir), before, "the demo changed the directory");
    assert!(
        !run.stdout.contains("First sync"),
        "the demo ran anyway:\n{}",
        run.stdout
    );

    // A file where the directory should be is refused the same way.
    let file = root.path().join("a-file");
    std::fs::write(&file, b"keep me").expect("write file");
    let run = demo(&file).await;
    assert_eq!(run.code, 73, "{}", run.stderr);
    assert!(run.stderr.contains("not a directory"), "{}", run.stderr);
    assert_eq!(std::fs::read(&file).expect("read file"), b"keep me");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_uses_a_new_or_empty_directory_and_reuses_its_own() {
    let root = tempfile::tempdir().expect("temp dir");
    // A directory that does not exist yet: created and marked.
    let fresh = root.path().join("nested").join("demo");
    let run = demo(&fresh).await;
    assert_eq!(run.code, 0, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    assert!(fresh.join(".restsync-demo").exists(), "no marker written");
    assert!(fresh.join("restsync.db").exists() && fresh.join("restsync.toml").exists());
    // Its own directory, with the database it left: rebuilt without a word.
    let run = demo(&fresh).await;
    assert_eq!(run.code, 0, "second run in the same directory:\n{}", run.stderr);
    assert!(run.stdout.contains("First sync"), "{}", run.stdout);

    // An empty directory that already exists.
    let empty = root.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let run = demo(&empty).await;
    assert_eq!(run.code, 0, "empty directory:\n{}", run.stderr);
    assert!(empty.join(".restsync-demo").exists());
}

/// A wrong command line is a usage error, 64, for every command; asking for help is not.
#[tokio::test(flavor = "multi_thread")]
async fn usage_errors_exit_64_and_help_exits_0() {
    let env = Env::start(1).await;
    for args in [
        &["--no-such-option"][..],
        &["sync", "--onse"],
        &["journal", "retry", "not-a-number"],
        &["status", "extra"],
        &[],
    ] {
        let run = env.restsync(args).await;
        assert_eq!(run.code, 64, "{args:?}: {}", run.stderr);
        assert!(!run.stderr.is_empty(), "{args:?} says nothing");
    }
    for args in [&["--help"][..], &["sync", "--help"], &["--version"]] {
        let run = env.restsync(args).await;
        assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
        assert!(!run.stdout.is_empty());
    }
}

/// `check` says whether the database can be written and when the walks run; a database
/// path that cannot be created fails the check (73) naming the key.
#[tokio::test(flavor = "multi_thread")]
async fn check_tests_the_database_and_prints_the_next_walks() {
    let env = Env::start(5).await;
    let run = env.restsync(&["check"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("does not exist yet"), "{}", run.stdout);
    for name in ["phone_numbers", "addresses", "smart_numbers"] {
        let line = run
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name}: schedule")))
            .unwrap_or_else(|| panic!("{name}: {}", run.stdout));
        // RFC 3339 with the zone's offset, like `systemd-analyze calendar`.
        assert!(line.contains("schedule \"0 */5 * * * *\" in "), "{line}");
        let times: Vec<&str> = line
            .rsplit("; next walks ")
            .next()
            .unwrap_or_default()
            .split(", ")
            .collect();
        assert_eq!(times.len(), 3, "{line}");
        for t in times {
            assert!(chrono::DateTime::parse_from_rfc3339(t).is_ok(), "{t:?} in {line}");
        }
    }
    env.sync_ok().await;
    let run = env.restsync(&["check"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains(": writable"), "{}", run.stdout);

    // "Mondays at 9" three ways, in the configured zone: the same three Mondays, 09:00+08:00.
    env.write_config(
        "time_zone = \"Asia/Taipei\"",
        "[resources.phone_numbers]\nschedule = \"0 0 9 * * 1\"\n[resources.addresses]\nschedule = \"0 9 * * 1\"\n\
         [resources.smart_numbers]\nschedule = \"0 9 * * MON\"\n",
    );
    let run = env.restsync(&["check"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let times: Vec<&str> = run
        .stdout
        .lines()
        .filter_map(|l| l.split("; next walks ").nth(1))
        .collect();
    assert_eq!(times.len(), 3, "{}", run.stdout);
    assert!(times.iter().all(|t| *t == times[0]), "{}", run.stdout);
    for t in times[0].split(", ") {
        let at = chrono::DateTime::parse_from_rfc3339(t).expect("RFC 3339");
        assert!(t.ends_with("T09:00:00+08:00"), "{t}");
        assert_eq!(chrono::Datelike::weekday(&at), chrono::Weekday::Mon, "{t}");
    }
    env.write_config("", "");

    // A database in directories that do not exist yet: check says so and creates nothing.
    let text = std::fs::read_to_string(&env.config).expect("config");
    let nested = env.dir.path().join("not/yet/mirror.db");
    std::fs::write(
        &env.config,
        text.replace(&env.db_path.display().to_string(), &nested.display().to_string()),
    )
    .expect("config");
    let run = env.restsync(&["check"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("does not exist yet"), "{}", run.stdout);
    assert!(!env.dir.path().join("not").exists(), "check created directories");
    std::fs::write(&env.config, text).expect("config");

    // The database's directory would have to live inside a regular file.
    let blocker = env.dir.path().join("not-a-dir");
    std::fs::write(&blocker, "x").expect("file");
    let text = std::fs::read_to_string(&env.config).expect("config");
    let db = env.db_path.display().to_string();
    let moved = blocker.join("mirror.db").display().to_string();
    std::fs::write(&env.config, text.replace(&db, &moved)).expect("config");
    let run = env.restsync(&["check"]).await;
    assert_eq!(run.code, 73, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("database.path"), "{}", run.stderr);
}

/// `check --online` asks each upstream for one record: 0 when all answer, 65 when one
/// refuses (a wrong token), 75 when one cannot be reached.
#[tokio::test(flavor = "multi_thread")]
async fn check_online_asks_each_upstream() {
    let env = Env::start(5).await;
    let run = env.restsync(&["check", "--online"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    // One request per upstream, through its first resource.
    for line in [
        "firstline: OK (phone_numbers answers, 5 records)",
        "plusofon: OK (smart_numbers answers, 5 records)",
    ] {
        assert!(run.stdout.contains(line), "{}", run.stdout);
    }
    assert!(!run.stdout.contains("addresses: OK"), "{}", run.stdout);
    let run = env
        .restsync_env(
            &["check", "--online"],
            &[("RESTSYNC_UPSTREAMS__FIRSTLINE__TOKEN", "wrong-token")],
        )
        .await;
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert!(
        run.stderr.contains("firstline (phone_numbers)") && run.stderr.contains("401"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(
            "check RESTSYNC_UPSTREAMS__FIRSTLINE__TOKEN (the environment variable that sets upstreams.firstline.token)"
        ),
        "the variable to fix: {}",
        run.stderr
    );
    assert!(run.stdout.contains("plusofon: OK"), "{}", run.stdout);
    let run = env
        .restsync_env(
            &["check", "--online"],
            &[("RESTSYNC_UPSTREAMS__PLUSOFON__CLIENT", "999")],
        )
        .await;
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("check upstreams.plusofon.token and RESTSYNC_UPSTREAMS__PLUSOFON__CLIENT (the environment variable that sets upstreams.plusofon.client)"),
        "{}",
        run.stderr
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let run = env
        .restsync_env(
            &["check", "--online"],
            &[(
                "RESTSYNC_UPSTREAMS__PLUSOFON__BASE_URL",
                &format!("http://127.0.0.1:{port}"),
            )],
        )
        .await;
    assert_eq!(run.code, 75, "{}", run.stderr);
}

/// `journal retry N` / `journal drop N` on an entry that does not exist, or that is done,
/// say so plainly (65) and change nothing.
#[tokio::test(flavor = "multi_thread")]
async fn journal_commands_on_missing_or_finished_entries_say_so() {
    let env = Env::start(5).await;
    env.sync_ok().await;
    for action in ["retry", "drop"] {
        let run = env
            .restsync(&["journal", action, "999", "--yes"][..if action == "retry" { 3 } else { 4 }])
            .await;
        assert_eq!(run.code, 65, "{action}: {}", run.stderr);
        assert!(
            run.stderr.contains("no journal entry 999"),
            "{action}: {}",
            run.stderr
        );
    }
    let id = env.upstream_ids(Kind::PhoneNumbers)[0];
    env.exec(&format!(
        "UPDATE phone_numbers SET description = 'done' WHERE id = {id}"
    ));
    env.sync_ok().await;
    let seq: i64 = env
        .db()
        .query_row("SELECT seq FROM journal WHERE state = 'done' LIMIT 1", [], |r| {
            r.get(0)
        })
        .expect("a done entry");
    let retry = env.restsync(&["journal", "retry", &seq.to_string()]).await;
    assert_eq!(retry.code, 65, "{}", retry.stderr);
    assert!(
        retry.stderr.contains(&format!("journal entry {seq} is done")),
        "{}",
        retry.stderr
    );
    let drop = env
        .restsync(&["journal", "drop", &seq.to_string(), "--yes"])
        .await;
    assert_eq!(drop.code, 65, "{}", drop.stderr);
    assert!(
        drop.stderr
            .contains("only queued or failed entries can be dropped"),
        "{}",
        drop.stderr
    );
    assert_eq!(
        env.row_json("phone_numbers", id)["description"],
        "done",
        "nothing changed"
    );
}

/// `check` refuses a database written by a newer restsync (73), naming database.path.
#[tokio::test(flavor = "multi_thread")]
async fn check_refuses_a_database_from_a_newer_version() {
    let env = Env::start(3).await;
    env.sync_ok().await;
    env.exec("PRAGMA user_version = 999");
    let run = env.restsync(&["check"]).await;
    assert_eq!(run.code, 73, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("database.path") && run.stderr.contains("newer"),
        "{}",
        run.stderr
    );
}
