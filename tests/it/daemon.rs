//! `restsync sync` as a long-running service: a real process against the sandbox, with a
//! NOTIFY_SOCKET this test listens on, signals, the metrics endpoint and SQL edits.

use crate::common::Env;
use restsync::sandbox::{FaultAction, Kind, ScriptedFault};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::UnixDatagram;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

struct Daemon {
    child: Child,
    notify: UnixDatagram,
    log: mpsc::UnboundedReceiver<String>,
    metrics: String,
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn daemon_config(env: &Env, metrics_port: u16, extra_tail: &str) {
    env.write_config(
        "schedule = \"*/2 * * * * *\"",
        &format!(
            "[daemon]\npush_delay_ms = 200\nwatch_interval_ms = 100\nshutdown_grace_secs = 5\n\n\
             [metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n{extra_tail}"
        ),
    );
}

async fn start_daemon(env: &Env) -> Daemon {
    let metrics_port = free_port();
    daemon_config(env, metrics_port, "");
    spawn_daemon(env, metrics_port)
}

fn spawn_daemon(env: &Env, metrics_port: u16) -> Daemon {
    let sock = env.dir.path().join(format!("notify-{}.sock", free_port()));
    let notify = UnixDatagram::bind(&sock).expect("bind notify socket");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_restsync"));
    cmd.arg("--config").arg(&env.config).arg("sync");
    for (k, _) in std::env::vars() {
        if k.starts_with("RESTSYNC_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("RUST_LOG", "info")
        .env("NOTIFY_SOCKET", &sock)
        // As systemd sets it for WatchdogSec=0.4: heartbeats expected every 200 ms.
        .env("WATCHDOG_USEC", "400000")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("start restsync sync");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, log) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = tx.send(line);
        }
    });
    Daemon {
        child,
        notify,
        log,
        metrics: format!("http://127.0.0.1:{metrics_port}"),
    }
}

impl Daemon {
    /// Waits for a notification containing `what`.
    async fn notified(&self, what: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        let mut buf = vec![0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let n = tokio::time::timeout(left, self.notify.recv(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("no {what:?} notification within {within:?}"))
                .expect("recv");
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            if msg.contains(what) {
                return msg;
            }
        }
    }

    /// Waits for a log line containing `what`.
    async fn logged(&mut self, what: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.log.recv()).await {
                Ok(Some(line)) if line.contains(what) => return line,
                Ok(Some(_)) => {}
                _ => panic!("no log line with {what:?} within {within:?}"),
            }
        }
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.id().expect("running").to_string();
        let ok = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("kill");
        assert!(ok.success());
    }

    async fn stop(self) -> i32 {
        self.signal("-TERM");
        self.exited().await
    }

    async fn exited(mut self) -> i32 {
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("exits after SIGTERM")
            .expect("wait");
        status.code().unwrap_or(-1)
    }
}

/// The service in-process: `daemon::run` on the env's configuration, driven by its
/// `Control` (no process, no signals); its `Health` tells when passes finish.
pub(crate) struct InProcess {
    pub health: restsync::daemon::Health,
    pub reload: tokio::sync::mpsc::Sender<()>,
    shutdown: tokio_util::sync::CancellationToken,
    service: tokio::task::JoinHandle<i32>,
}

impl InProcess {
    pub(crate) fn start(env: &Env) -> InProcess {
        let settings = restsync::config::load_with_env(&env.config, Default::default()).expect("config");
        let health = restsync::daemon::Health::default();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let (reload, reload_rx) = tokio::sync::mpsc::channel(4);
        let service = tokio::spawn(restsync::daemon::run(
            env.config.clone(),
            settings,
            restsync::sync::CycleOptions::default(),
            restsync::daemon::Control {
                shutdown: shutdown.clone(),
                reload: reload_rx,
                health: health.clone(),
            },
        ));
        InProcess {
            health,
            reload,
            shutdown,
            service,
        }
    }

    /// Waits until `done` holds after a finished pass (20 s at most).
    pub(crate) async fn until(&self, what: &str, done: impl FnMut() -> bool) {
        let ok = self.health.until(Duration::from_secs(20), done).await;
        assert!(ok, "{what}: not within 20 s ({})", self.health.summary());
    }

    /// Waits until every resource's last pass succeeded.
    pub(crate) async fn healthy(&self, what: &str) {
        let health = self.health.clone();
        self.until(what, move || health.report().0).await;
    }

    pub(crate) async fn stop(self) -> i32 {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.service)
            .await
            .expect("stops")
            .expect("task")
    }
}

/// Polls `cond` until it holds or `within` passes; returns how long it took.
pub(crate) async fn eventually(within: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

fn walked_all(env: &Env) -> bool {
    env.db_path.exists()
        && env
            .db()
            .query_row(
                "SELECT count(*) FROM sync_state WHERE last_complete_walk_at IS NOT NULL",
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap_or(0)
            == 3
}

#[tokio::test(flavor = "multi_thread")]
async fn the_service_syncs_pushes_promptly_reports_and_stops_cleanly() {
    let env = Env::start(60).await;
    let daemon = start_daemon(&env).await;
    daemon.notified("READY=1", Duration::from_secs(20)).await;
    eventually(Duration::from_secs(20), "first walk", || walked_all(&env)).await;
    env.assert_converged();

    // An SQL edit reaches upstream within seconds, without waiting for a walk.
    let id = env.upstream_ids(Kind::PhoneNumbers)[5];
    env.exec(&format!(
        "UPDATE phone_numbers SET description = '服務中修改' WHERE id = {id}"
    ));
    let took = eventually(Duration::from_secs(5), "local edit pushed", || {
        env.control
            .get(Kind::PhoneNumbers, id)
            .is_some_and(|r| r["description"] == "服務中修改")
    })
    .await;
    assert!(took < Duration::from_secs(5));

    // An upstream change reaches the mirror on the next scheduled walk (every 2 s).
    let aid = env.upstream_ids(Kind::Addresses)[2];
    env.control.update(
        Kind::Addresses,
        aid,
        serde_json::json!({"description": "上游修改"}),
    );
    eventually(Duration::from_secs(8), "upstream change pulled", || {
        env.row_json("addresses", aid)["description"] == "上游修改"
    })
    .await;

    // STATUS= lines say what it is doing, and when each resource walks next.
    let status_line = daemon.notified("(next walk ", Duration::from_secs(20)).await;
    assert!(status_line.contains("STATUS="), "{status_line}");
    let at = status_line
        .split("(next walk ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_default();
    assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "{status_line}");

    // `status` works while the service runs.
    let status = env.restsync(&["status", "--json"]).await;
    // 0 healthy or 75 work waiting, never an error for running beside the service.
    assert!(matches!(status.code, 0 | 75), "{}", status.stderr);
    assert!(
        status.stdout.contains("\"resource\": \"phone_numbers\""),
        "{}",
        status.stdout
    );

    let client = reqwest::Client::new();
    let metrics = client
        .get(format!("{}/metrics", daemon.metrics))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    for name in [
        "restsync_records_pulled_total",
        "restsync_pushes_total",
        "restsync_journal_entries",
        "restsync_conflicts_total",
        "restsync_last_successful_walk_timestamp_seconds",
        "restsync_upstream_request_duration_seconds_bucket",
    ] {
        assert!(metrics.contains(name), "metrics lack {name}:\n{metrics}");
    }
    assert!(
        metrics.contains(r#"restsync_pushes_total{resource="phone_numbers",op="update",outcome="done"}"#),
        "{metrics}"
    );
    // Series nothing has happened to yet are exported from the start, at zero.
    for zero in [
        r#"restsync_pushes_total{resource="smart_numbers",op="any",outcome="failed"} 0"#,
        r#"restsync_journal_entries{resource="addresses",state="failed"} 0"#,
    ] {
        assert!(metrics.contains(zero), "metrics lack {zero}:\n{metrics}");
    }
    let health = client
        .get(format!("{}/healthz", daemon.metrics))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status().as_u16(), 200);

    // Upstream failing makes /healthz say so.
    env.control.push_scripted(ScriptedFault {
        method: Some("GET".into()),
        kind: Some(Kind::SmartNumbers),
        page: None,
        action: FaultAction::Status(401, r#"{"message":"Unauthenticated.","code":401}"#.into()),
        times: 1000,
    });
    let url = format!("{}/healthz", daemon.metrics);
    let mut unhealthy = false;
    for _ in 0..100 {
        let r = client.get(&url).send().await.expect("healthz");
        if r.status().as_u16() == 503 {
            unhealthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(unhealthy, "/healthz never turned 503 while smart_numbers failed");

    daemon.notified("WATCHDOG=1", Duration::from_secs(5)).await;
    daemon.signal("-TERM");
    daemon.notified("STOPPING=1", Duration::from_secs(10)).await;
    let code = daemon.exited().await;
    assert_eq!(code, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_edits_is_pushed_in_one_pass() {
    let env = Env::start(40).await;
    let mut daemon = start_daemon(&env).await;
    daemon.notified("READY=1", Duration::from_secs(20)).await;
    eventually(Duration::from_secs(20), "first walk", || walked_all(&env)).await;
    // Twelve separate commits within a few milliseconds, as a script would make them.
    let ids = env.upstream_ids(Kind::Addresses);
    let conn = env.db();
    for id in &ids[..12] {
        conn.execute("UPDATE addresses SET description = 'burst' WHERE id = ?1", [id])
            .expect("edit");
    }
    drop(conn);
    let mut pushed_by_pass = Vec::new();
    while pushed_by_pass.iter().sum::<u64>() < 12 {
        let line = daemon.logged("pushed_updated=", Duration::from_secs(10)).await;
        let n = line
            .split("pushed_updated=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        if line.contains("addresses") && n > 0 {
            // A push pass logs as one (a scheduled walk may take the burst too).
            assert!(
                line.contains("push pass finished") || line.contains("cycle finished"),
                "{line}"
            );
            assert_eq!(line.matches("resource=").count(), 1, "one resource field: {line}");
            pushed_by_pass.push(n);
        }
    }
    assert!(
        pushed_by_pass.len() <= 2,
        "one push per edit instead of a batch: {pushed_by_pass:?}"
    );
    assert_eq!(daemon.stop().await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_with_a_broken_config_keeps_the_running_one() {
    let env = Env::start(30).await;
    let mut daemon = start_daemon(&env).await;
    daemon.notified("READY=1", Duration::from_secs(20)).await;
    eventually(Duration::from_secs(20), "first walk", || walked_all(&env)).await;

    let good = std::fs::read_to_string(&env.config).expect("config");
    std::fs::write(
        &env.config,
        good.replace("on_conflict", "x")
            .replace("[sync]", "[sync]\non_conflict = \"nope\""),
    )
    .expect("break config");
    daemon.signal("-HUP");
    let line = daemon.logged("reload refused", Duration::from_secs(10)).await;
    assert!(line.contains("sync.on_conflict"), "{line}");

    // Still running with the old configuration: edits still go through.
    let id = env.upstream_ids(Kind::Addresses)[0];
    env.exec(&format!(
        "UPDATE addresses SET description = 'after HUP' WHERE id = {id}"
    ));
    eventually(Duration::from_secs(6), "edit pushed after refused reload", || {
        env.control
            .get(Kind::Addresses, id)
            .is_some_and(|r| r["description"] == "after HUP")
    })
    .await;

    // Another database is refused too: the service holds the one it started with (and its
    // writer lock); nothing is created at the new path.
    let other = env.dir.path().join("other.db");
    let db = env.db_path.display().to_string();
    std::fs::write(&env.config, good.replace(&db, &other.display().to_string())).expect("move db");
    daemon.signal("-HUP");
    let line = daemon.logged("reload refused", Duration::from_secs(10)).await;
    assert!(line.contains("database.path changed"), "{line}");
    assert!(!other.exists(), "a database was opened at the new path");

    // A valid new configuration is taken.
    std::fs::write(&env.config, &good).expect("restore config");
    daemon.signal("-HUP");
    daemon
        .logged("configuration reloaded", Duration::from_secs(10))
        .await;
    assert_eq!(daemon.stop().await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_push_loses_nothing_and_duplicates_nothing() {
    let env = Env::start(20).await;
    env.sync_ok().await;
    let mut values = Vec::new();
    for i in 0..24 {
        values.push(format!("(1900000, 2, '0955{i:06}', NULL, 'stop test {i}')"));
    }
    env.exec(&format!(
        "INSERT INTO phone_numbers (contact_id, type, number, extension, description) VALUES {}",
        values.join(",")
    ));
    // Slow creates, so the stop lands in the middle of the push.
    env.control.push_scripted(ScriptedFault {
        method: Some("POST".into()),
        kind: Some(Kind::PhoneNumbers),
        page: None,
        action: FaultAction::Delay(150),
        times: 1000,
    });
    let daemon = start_daemon(&env).await;
    daemon.notified("READY=1", Duration::from_secs(20)).await;
    eventually(Duration::from_secs(20), "push under way", || {
        env.control.count_requests("POST", Kind::PhoneNumbers) >= 3
    })
    .await;
    assert_eq!(daemon.stop().await, 0);
    let created_before_restart = env.control.count_requests("POST", Kind::PhoneNumbers);
    assert!(
        created_before_restart < 24,
        "the push finished before the stop; nothing was tested"
    );

    // The next start completes the journal.
    for _ in 0..5 {
        if env.sync_once().await.code == 0 {
            break;
        }
    }
    env.assert_converged();
    let upstream: Vec<String> = env
        .control
        .list(Kind::PhoneNumbers)
        .iter()
        .filter_map(|r| r["description"].as_str().map(str::to_string))
        .filter(|d| d.starts_with("stop test "))
        .collect();
    assert_eq!(upstream.len(), 24, "every row created exactly once: {upstream:?}");
    let mut unique = upstream.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 24, "duplicates upstream");
}

#[tokio::test(flavor = "multi_thread")]
async fn journal_retries_run_when_due_not_on_the_schedule() {
    let env = Env::start(20).await;
    let metrics_port = free_port();
    daemon_config(&env, metrics_port, "");
    // Walk only at start and then hourly: a retry cannot ride on a scheduled walk.
    let text = std::fs::read_to_string(&env.config).expect("config").replace(
        "schedule = \"*/2 * * * * *\"",
        "schedule = \"0 0 * * * *\"\nmax_attempts_per_run = 2",
    );
    std::fs::write(&env.config, text).expect("config");
    let service = InProcess::start(&env);
    service.healthy("first walk").await;

    // The first push pass fails twice (its attempts), the entry waits, then goes through.
    env.control.push_scripted(ScriptedFault {
        method: Some("PUT".into()),
        kind: Some(Kind::PhoneNumbers),
        page: None,
        action: FaultAction::Status(503, r#"{"message":"Service Unavailable"}"#.into()),
        times: 3,
    });
    let id = env.upstream_ids(Kind::PhoneNumbers)[0];
    env.exec(&format!(
        "UPDATE phone_numbers SET description = 'retried' WHERE id = {id}"
    ));
    service
        .until("retry pushed without a walk", || {
            env.control
                .get(Kind::PhoneNumbers, id)
                .is_some_and(|r| r["description"] == "retried")
        })
        .await;
    assert_eq!(env.control.count_requests("PUT", Kind::PhoneNumbers), 4);
    assert_eq!(service.stop().await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_writer_per_database_while_the_service_runs() {
    let env = Env::start(30).await;
    let daemon = start_daemon(&env).await;
    daemon.notified("READY=1", Duration::from_secs(20)).await;
    eventually(Duration::from_secs(20), "first walk", || walked_all(&env)).await;
    let pid = daemon.child.id().expect("running");
    let lock_file = env.dir.path().join("mirror.db.lock");
    assert_eq!(
        std::fs::read_to_string(&lock_file).expect("lock file").trim(),
        pid.to_string(),
        "the service does not name itself in the lock file"
    );

    // A one-shot run on the same database waits briefly, then leaves the work for later.
    let started = Instant::now();
    let run = env.sync_once().await;
    let took = started.elapsed();
    assert_eq!(run.code, 75, "{}", run.stderr);
    assert!(took < Duration::from_secs(10), "gave up only after {took:?}");
    let expected = format!(
        "another restsync process (pid {pid}) is syncing this database ({})",
        env.db_path.display()
    );
    assert!(run.stderr.contains(&expected), "{}", run.stderr);

    // So does a command that writes the journal.
    let run = env.restsync(&["journal", "retry", "--all"]).await;
    assert_eq!(run.code, 75, "{}", run.stderr);
    assert!(run.stderr.contains(&format!("(pid {pid})")), "{}", run.stderr);

    // Readers never take the lock.
    let started = Instant::now();
    let status = env.restsync(&["status"]).await;
    assert!(matches!(status.code, 0 | 75), "{}", status.stderr);
    assert!(status.stdout.contains("phone_numbers:"), "{}", status.stdout);
    let journal = env.restsync(&["journal"]).await;
    assert_eq!(journal.code, 0, "{}", journal.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "readers waited for the writer lock"
    );

    // Once the service is gone, the lock is free again.
    assert_eq!(daemon.stop().await, 0);
    env.sync_ok().await;
}

/// Local edits every quarter second (each one a push pass) never cost a scheduled walk.
#[tokio::test(flavor = "multi_thread")]
async fn steady_local_edits_never_cost_a_scheduled_walk() {
    let env = Env::start(20).await;
    env.sync_ok().await;
    let id = env.upstream_ids(Kind::Addresses)[0];
    daemon_config(&env, free_port(), "");
    let text = std::fs::read_to_string(&env.config)
        .expect("config")
        .replace("schedule = \"*/2 * * * * *\"", "schedule = \"* * * * * *\"");
    std::fs::write(&env.config, text).expect("config");
    let service = InProcess::start(&env);
    service.healthy("first cycles").await;
    let walks = || {
        env.control
            .requests()
            .iter()
            .filter(|r| {
                r.method == "GET"
                    && r.path.ends_with("/api/v1/phone-number")
                    && r.query.split('&').any(|p| p == "page=1")
                    && !r.query.contains("number=")
            })
            .count()
    };
    let before = walks();
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < Duration::from_secs(5) {
        env.exec(&format!(
            "UPDATE phone_numbers SET description = 'edit {n}' WHERE local_id = 1;
             UPDATE addresses SET description = 'edit {n}' WHERE id = {id};"
        ));
        n += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let walked = walks() - before;
    // The schedule ticks every second: five ticks in 5 s (one may straddle the window).
    assert!(
        walked >= 4,
        "only {walked} of ~5 scheduled walks ran during the edits"
    );
    // The edits went out too.
    let last = format!("edit {}", n - 1);
    service
        .until("last edit pushed", || {
            env.control.get(Kind::Addresses, id).expect("address")["description"] == last.as_str()
        })
        .await;
    assert_eq!(service.stop().await, 0);
}

/// A reload in the middle of a slow create lets the request finish: one INSERT, one
/// record upstream, however long the request outlasts the shutdown grace.
#[tokio::test(flavor = "multi_thread")]
async fn a_reload_during_a_slow_create_never_duplicates_it() {
    let env = Env::start(20).await;
    env.sync_ok().await;
    let metrics_port = free_port();
    daemon_config(&env, metrics_port, "");
    // Requests may take 8 s; the grace is 1 s: the old reload abandoned the create.
    let config = std::fs::read_to_string(&env.config).expect("config");
    let config = config
        .replace("request_timeout_secs = 3", "request_timeout_secs = 8")
        .replace("shutdown_grace_secs = 5", "shutdown_grace_secs = 1");
    std::fs::write(&env.config, config).expect("write config");
    env.control.push_scripted(ScriptedFault {
        method: Some("POST".into()),
        kind: Some(Kind::PhoneNumbers),
        page: None,
        action: FaultAction::Delay(3000),
        times: 1,
    });
    let daemon = spawn_daemon(&env, metrics_port);
    daemon.notified("READY=1", Duration::from_secs(20)).await;
    env.exec(
        "INSERT INTO phone_numbers (contact_id, type, number, description) VALUES (1935038, 2, '0977 000 111', 'reload')",
    );
    eventually(Duration::from_secs(10), "create in flight", || {
        env.count("SELECT count(*) FROM journal WHERE op = 'create' AND state = 'in_flight'") == 1
    })
    .await;
    daemon.signal("-HUP");
    daemon.notified("READY=1", Duration::from_secs(20)).await;
    eventually(Duration::from_secs(20), "create adopted", || {
        env.count("SELECT count(*) FROM phone_numbers WHERE number = '0977 000 111' AND id IS NOT NULL") == 1
    })
    .await;
    // Give a duplicate every chance to appear before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let made = env
        .control
        .list(Kind::PhoneNumbers)
        .into_iter()
        .filter(|r| r["number"] == "0977 000 111")
        .count();
    assert_eq!(made, 1, "one INSERT, {made} records upstream");
    assert_eq!(env.control.count_requests("POST", Kind::PhoneNumbers), 1);
    assert_eq!(daemon.stop().await, 0);
}

/// The service in-process, each step awaited as the pass that does it finishes (no
/// sleeps, no polling).
#[tokio::test(flavor = "multi_thread")]
async fn the_service_runs_reloads_and_stops_under_its_control() {
    let env = Env::start(20).await;
    daemon_config(&env, free_port(), "");
    let service = InProcess::start(&env);
    service.healthy("first cycles").await;
    assert_eq!(env.count("SELECT count(*) FROM phone_numbers"), 20);
    let id = env.upstream_ids(Kind::PhoneNumbers)[4];
    let description =
        |env: &Env| env.control.get(Kind::PhoneNumbers, id).expect("phone")["description"].clone();
    env.exec(&format!(
        "UPDATE phone_numbers SET description = 'in-process' WHERE id = {id}"
    ));
    service
        .until("edit pushed", || description(&env) == "in-process")
        .await;
    // A reload restarts the schedulers with the (same) configuration; the service goes on.
    service.reload.send(()).await.expect("reload");
    env.exec(&format!(
        "UPDATE phone_numbers SET description = 'after reload' WHERE id = {id}"
    ));
    service
        .until("edit pushed after the reload", || {
            description(&env) == "after reload"
        })
        .await;
    assert_eq!(service.stop().await, 0);
    env.assert_converged();
}

/// Fetch before write, where it matters most: a push pass (no walk) after upstream moved a
/// phone to another contact and someone edited its description here. The PUT must carry
/// upstream's current contact, not the mirror's stale one; a same-field edit on both sides
/// goes through the conflict policy and is recorded.
#[tokio::test(flavor = "multi_thread")]
async fn a_push_pass_between_walks_keeps_upstream_changes_made_since_the_last_walk() {
    let env = Env::start(20).await;
    env.sync_ok().await;
    let metrics_port = free_port();
    daemon_config(&env, metrics_port, "");
    // No scheduled walk during the test: only push passes run after the first cycle.
    let config = std::fs::read_to_string(&env.config).expect("config");
    std::fs::write(
        &env.config,
        config.replace("schedule = \"*/2 * * * * *\"", "schedule = \"0 0 0 1 1 *\""),
    )
    .expect("write config");
    let mut daemon = spawn_daemon(&env, metrics_port);
    daemon.notified("READY=1", Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ids = env.upstream_ids(Kind::PhoneNumbers);
    let (moved, both) = (ids[3], ids[4]);
    env.control.update(
        Kind::PhoneNumbers,
        moved,
        serde_json::json!({"contact_id": 1_999_123}),
    );
    env.control.update(
        Kind::PhoneNumbers,
        both,
        serde_json::json!({"description": "upstream's"}),
    );
    env.exec(&format!(
        "UPDATE phone_numbers SET description = 'local only' WHERE id = {moved};
         UPDATE phone_numbers SET description = 'local too' WHERE id = {both};"
    ));
    eventually(Duration::from_secs(15), "push pass", || {
        env.control.get(Kind::PhoneNumbers, moved).expect("phone")["description"] == "local only"
    })
    .await;
    let record = env.control.get(Kind::PhoneNumbers, moved).expect("phone");
    assert_eq!(
        record["phone_contact"]["contact_id"], 1_999_123,
        "the push moved the phone back to its old contact"
    );
    eventually(Duration::from_secs(10), "conflict recorded", || {
        env.count(&format!(
            "SELECT count(*) FROM conflicts WHERE upstream_id = {both}"
        )) == 1
    })
    .await;
    assert_eq!(
        env.control.get(Kind::PhoneNumbers, both).expect("phone")["description"],
        "upstream's",
        "remote-wins: upstream's same-field edit stays"
    );
    // No walk ran (the schedule is a year away): the pass logs as a push pass.
    let line = daemon.logged("push pass finished", Duration::from_secs(5)).await;
    assert!(line.contains("resource=phone_numbers"), "{line}");
    assert_eq!(daemon.stop().await, 0);
}

/// A walk that failed for a reason that passes (here upstream answering 500 to everything)
/// is tried again within seconds once it has passed, not at the next tick (a year away).
#[tokio::test(flavor = "multi_thread")]
async fn a_walk_that_failed_transiently_is_tried_again_without_waiting_for_the_tick() {
    let env = Env::start(10).await;
    env.write_config(
        "schedule = \"0 0 0 1 1 *\"",
        "[daemon]\npush_delay_ms = 200\nwatch_interval_ms = 100\nshutdown_grace_secs = 5\n",
    );
    env.control.set_faults(restsync::sandbox::Faults {
        error_rate: 1.0,
        ..Default::default()
    });
    let service = InProcess::start(&env);
    let health = service.health.clone();
    service
        .until("the first walks fail", move || {
            health.summary().matches("failing").count() == 3
        })
        .await;
    env.control.set_faults(Default::default());
    service.healthy("walked again after upstream recovered").await;
    assert!(walked_all(&env));
    assert_eq!(env.count("SELECT count(*) FROM phone_numbers"), 10);
    assert_eq!(service.stop().await, 0);
}
