//! The benchmark suite: `cargo bench` (`cargo bench --bench sync -- --quick` for 100k rows and a
//! smaller push).
//!
//! Runs the real `restsync` binary against the built-in sandbox on 127.0.0.1 and measures
//! wall time and the restsync process's peak RSS (VmHWM from /proc, sampled every 20 ms).
//! Prints a table and writes it between the result markers of BENCHMARKS.md. Measures
//! only: nothing here passes or fails on absolute times.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use restsync::sandbox::{Faults, Kind, Sandbox, SandboxOptions};
use rusqlite::Connection;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

struct Measured {
    seconds: f64,
    peak_rss_mb: f64,
    code: i32,
    summary: Vec<serde_json::Value>,
}

struct Bench {
    sandbox: Sandbox,
    opts: SandboxOptions,
    dir: tempfile::TempDir,
}

impl Bench {
    async fn start(records: usize, faults: Faults) -> Bench {
        let opts = SandboxOptions {
            records,
            faults,
            ..SandboxOptions::default()
        };
        let sandbox = Sandbox::start(opts.clone()).await.expect("sandbox");
        Bench {
            sandbox,
            opts,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("bench.db")
    }

    /// Config for phone numbers only (the resource the targets are about).
    fn config(&self, concurrency: usize, upstream_extra: &str) -> PathBuf {
        let path = self.dir.path().join("bench.toml");
        let text = format!(
            "[database]\npath = \"{}\"\n\n[upstreams.firstline]\nbase_url = \"{}\"\ntoken = \"{}\"\n{upstream_extra}\n\n\
             [resources.addresses]\nenabled = false\n\n[sync]\nper_page = 100\nconcurrency = {concurrency}\n\
             request_timeout_secs = 60\nretry_base_ms = 50\nmax_retry_after_secs = 5\nmax_attempts_per_run = 8\n\
             max_delete_fraction = 0.9\n",
            self.db().display(),
            self.sandbox.firstline_url(),
            self.opts.firstline_token
        );
        std::fs::write(&path, text).expect("config");
        path
    }

    async fn run(&self, config: &Path, args: &[&str]) -> Measured {
        let started = Instant::now();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_restsync"))
            .arg("--config")
            .arg(config)
            .arg("--log-format")
            .arg("json")
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn restsync");
        let pid = child.id().expect("pid");
        let stderr = child.stderr.take().expect("stderr");
        let reader = tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt;
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            let mut summary = Vec::new();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    if v["message"] == "cycle finished" {
                        summary.push(v);
                    }
                }
            }
            summary
        });
        let mut peak_kb = 0u64;
        let status = loop {
            if let Some(kb) = vm_hwm_kb(pid) {
                peak_kb = peak_kb.max(kb);
            }
            tokio::select! {
                s = child.wait() => break s.expect("wait"),
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        };
        let seconds = started.elapsed().as_secs_f64();
        Measured {
            seconds,
            peak_rss_mb: peak_kb as f64 / 1024.0,
            code: status.code().unwrap_or(-1),
            summary: reader.await.unwrap_or_default(),
        }
    }
}

fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn written(m: &Measured) -> u64 {
    m.summary
        .iter()
        .map(|s| {
            ["inserted", "updated", "removed"]
                .iter()
                .map(|k| s[*k].as_u64().unwrap_or(0))
                .sum::<u64>()
        })
        .sum()
}

/// The floor: fetch the same pages (same concurrency), parse them, bulk insert the rows
/// into SQLite, with nothing else.
/// Every page of the phone numbers, fetched 4 at a time by a minimal client and parsed into
/// `Value`, in order: the floors' shared input.
fn floor_pages(bench: &Bench, rows: usize) -> impl futures::Stream<Item = serde_json::Value> {
    use futures::StreamExt;
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/phone-number", bench.sandbox.firstline_url());
    let token = format!("Bearer {}", bench.opts.firstline_token);
    futures::stream::iter(1..=rows.div_ceil(100))
        .map(move |p| {
            let (client, url, token) = (client.clone(), url.clone(), token.clone());
            tokio::spawn(async move {
                let body = client
                    .get(&url)
                    .query(&[("page", p.to_string()), ("per_page", "100".to_string())])
                    .header("Authorization", token)
                    .send()
                    .await
                    .expect("page")
                    .bytes()
                    .await
                    .expect("body");
                serde_json::from_slice::<serde_json::Value>(&body).expect("json")
            })
        })
        .buffered(4)
        .map(|page| page.expect("task"))
}

/// The least a walk costs: every page fetched (same concurrency) and parsed, nothing
/// written. Neither API can list only what changed, so a cycle that sees upstream's state
/// pays at least this.
async fn fetch_floor(bench: &Bench, rows: usize) -> f64 {
    use futures::StreamExt;
    let started = Instant::now();
    let mut pages = std::pin::pin!(floor_pages(bench, rows));
    let mut records = 0;
    while let Some(page) = pages.next().await {
        records += page["data"].as_array().map_or(0, Vec::len);
    }
    assert_eq!(records, rows, "fetch floor saw every record");
    started.elapsed().as_secs_f64()
}

async fn floor(bench: &Bench, rows: usize) -> f64 {
    use futures::StreamExt;
    let db = bench.dir.path().join("floor.db");
    let started = Instant::now();
    let conn = Connection::open(&db).expect("floor db");
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
         CREATE TABLE t(id INTEGER PRIMARY KEY, contact_id INTEGER, type INTEGER, number TEXT, extension TEXT,
                        description TEXT, profile_id INTEGER, raw TEXT)",
    )
    .expect("schema");
    let mut stream = std::pin::pin!(floor_pages(bench, rows));
    while let Some(page) = stream.next().await {
        let tx = conn.unchecked_transaction().expect("tx");
        {
            let mut stmt = tx
                .prepare_cached("INSERT INTO t VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")
                .expect("stmt");
            for r in page["data"].as_array().into_iter().flatten() {
                stmt.execute(rusqlite::params![
                    r["id"].as_i64(),
                    r["phone_contact"]["contact_id"].as_i64(),
                    r["type"].as_i64(),
                    r["number"].as_str(),
                    r["extension"].as_str(),
                    r["description"].as_str(),
                    r["profile_id"].as_i64(),
                    r.to_string()
                ])
                .expect("insert");
            }
        }
        tx.commit().expect("commit");
    }
    started.elapsed().as_secs_f64()
}

struct Report {
    text: String,
}

impl Report {
    fn row(&mut self, cells: &[String]) {
        let line = format!("| {} |", cells.join(" | "));
        println!("{line}");
        let _ = writeln!(self.text, "{line}");
    }
    fn header(&mut self, title: &str, cols: &[&str]) {
        println!("\n{title}");
        let _ = writeln!(self.text, "\n### {title}\n");
        self.row(&cols.iter().map(|c| c.to_string()).collect::<Vec<_>>());
        self.row(&cols.iter().map(|_| "---".to_string()).collect::<Vec<_>>());
    }
}

async fn pull_benches(report: &mut Report, sizes: &[usize]) {
    report.header(
        "1-3. Pull, steady state, 1% changed (phone numbers, per_page 100, concurrency 4)",
        &[
            "rows",
            "scenario",
            "seconds",
            "rows/s",
            "rows written",
            "peak RSS MB",
        ],
    );
    for &rows in sizes {
        let bench = Bench::start(rows, Faults::default()).await;
        let f = floor(&bench, rows).await;
        report.row(&[
            rows.to_string(),
            "floor: fetch + parse + bulk insert".into(),
            format!("{f:.2}"),
            format!("{:.0}", rows as f64 / f),
            rows.to_string(),
            "-".into(),
        ]);
        let f = fetch_floor(&bench, rows).await;
        report.row(&[
            rows.to_string(),
            "floor: fetch + parse only (what any walk costs)".into(),
            format!("{f:.2}"),
            format!("{:.0}", rows as f64 / f),
            "0".into(),
            "-".into(),
        ]);
        let config = bench.config(4, "");
        let first = bench.run(&config, &["sync", "--once"]).await;
        assert_eq!(first.code, 0, "first pull failed");
        report.row(&[
            rows.to_string(),
            "first pull into an empty mirror".into(),
            format!("{:.2}", first.seconds),
            format!("{:.0}", rows as f64 / first.seconds),
            written(&first).to_string(),
            format!("{:.1}", first.peak_rss_mb),
        ]);
        let steady = bench.run(&config, &["sync", "--once"]).await;
        report.row(&[
            rows.to_string(),
            "steady state, nothing changed".into(),
            format!("{:.2}", steady.seconds),
            format!("{:.0}", rows as f64 / steady.seconds),
            written(&steady).to_string(),
            format!("{:.1}", steady.peak_rss_mb),
        ]);

        // 1% changed upstream and 1% (other records) changed locally.
        let ids = bench.sandbox.control().ids(Kind::PhoneNumbers);
        let step = 100;
        for id in ids.iter().step_by(step) {
            bench.sandbox.control().update(
                Kind::PhoneNumbers,
                *id,
                serde_json::json!({"description": "bench upstream"}),
            );
        }
        {
            let conn = Connection::open(bench.db()).expect("db");
            conn.execute(
                "UPDATE phone_numbers SET description = 'bench local' WHERE local_id % 100 = 50",
                [],
            )
            .expect("local edits");
        }
        let plan = bench.run(&config, &["plan"]).await;
        report.row(&[
            rows.to_string(),
            "1% upstream + 1% local: plan (pull + merge + plan)".into(),
            format!("{:.2}", plan.seconds),
            format!("{:.0}", rows as f64 / plan.seconds),
            "0".into(),
            format!("{:.1}", plan.peak_rss_mb),
        ]);
        let cycle = bench.run(&config, &["sync", "--once"]).await;
        report.row(&[
            rows.to_string(),
            "1% upstream + 1% local: full cycle incl. pushes".into(),
            format!("{:.2}", cycle.seconds),
            format!("{:.0}", rows as f64 / cycle.seconds),
            written(&cycle).to_string(),
            format!("{:.1}", cycle.peak_rss_mb),
        ]);
        bench.sandbox.shutdown().await;
    }
}

async fn push_benches(report: &mut Report, changes: usize, concurrencies: &[usize], rate: f64) {
    report.header(
        &format!("4. Pushing {changes} local changes (1/3 creates, updates, deletes), sandbox latency 20 ms"),
        &[
            "concurrency",
            "rate limit req/s",
            "seconds",
            "requests/s",
            "% of limit",
            "429s seen",
            "peak RSS MB",
        ],
    );
    let mut cases: Vec<(usize, Option<f64>)> = concurrencies.iter().map(|c| (*c, None)).collect();
    cases.push((16, Some(rate)));
    for (concurrency, limit) in cases {
        let faults = Faults {
            latency_ms: 20,
            rate_limit_per_sec: limit.unwrap_or(0.0),
            ..Faults::default()
        };
        let base_rows = changes;
        let bench = Bench::start(base_rows, Faults::default()).await;
        let extra = limit
            .map(|l| format!("max_requests_per_sec = {l}"))
            .unwrap_or_default();
        let config = bench.config(concurrency, &extra);
        let first = bench.run(&config, &["sync", "--once"]).await;
        assert_eq!(first.code, 0);
        let per_op = changes / 3;
        {
            let conn = Connection::open(bench.db()).expect("db");
            conn.execute_batch("BEGIN").expect("begin");
            for i in 0..(changes - 2 * per_op) {
                conn.execute(
                    "INSERT INTO phone_numbers (contact_id, type, number, description) VALUES (1900000, 2, ?1, 'bench create')",
                    [format!("09{i:08}")],
                )
                .expect("insert");
            }
            conn.execute(
                "UPDATE phone_numbers SET description = 'bench update' WHERE local_id IN \
                 (SELECT local_id FROM phone_numbers WHERE id IS NOT NULL ORDER BY local_id LIMIT ?1)",
                [per_op as i64],
            )
            .expect("update");
            conn.execute(
                "DELETE FROM phone_numbers WHERE local_id IN \
                 (SELECT local_id FROM phone_numbers WHERE id IS NOT NULL ORDER BY local_id DESC LIMIT ?1)",
                [per_op as i64],
            )
            .expect("delete");
            conn.execute_batch("COMMIT").expect("commit");
        }
        bench.sandbox.control().set_faults(faults);
        let before = bench.sandbox.control().requests().len();
        let run = bench.run(&config, &["sync", "--once"]).await;
        let requests = bench.sandbox.control().requests();
        let new = &requests[before..];
        let writes = new.iter().filter(|r| r.method != "GET").count();
        let throttled = new.iter().filter(|r| r.status == 429).count();
        let rps = new.len() as f64 / run.seconds;
        report.row(&[
            concurrency.to_string(),
            limit.map_or("none".into(), |l| format!("{l:.0}")),
            format!("{:.2}", run.seconds),
            format!("{rps:.0} ({writes} writes)"),
            limit.map_or("-".into(), |l| format!("{:.0}%", 100.0 * rps / l)),
            throttled.to_string(),
            format!("{:.1}", run.peak_rss_mb),
        ]);
        bench.sandbox.shutdown().await;
    }
}

/// User plus system CPU time of a process so far, in seconds (from /proc/<pid>/stat).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / clock_ticks())
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The daemon over a mirror of `rows`: CPU while idle, and CPU and latency per single-row
/// edit (made with a separate connection, as sqlite3 would), default watch interval and
/// push delay. The schedule is set far away, so only local edits wake it.
async fn daemon_benches(report: &mut Report, sizes: &[usize], idle_secs: u64, edits: usize) {
    report.header(
        "5. The daemon (`restsync sync`): idle, and one single-row edit at a time",
        &[
            "rows",
            "idle CPU (% of one core)",
            "CPU per edit pushed (ms)",
            "edit to upstream (ms, median)",
            "peak RSS MB",
        ],
    );
    for &rows in sizes {
        let bench = Bench::start(rows, Faults::default()).await;
        let config = bench.config(4, "");
        let mut text = std::fs::read_to_string(&config).expect("config");
        text = text.replace("[sync]\n", "[sync]\nschedule = \"0 0 0 1 1 *\"\n");
        std::fs::write(&config, text).expect("config");
        let first = bench.run(&config, &["sync", "--once"]).await;
        assert_eq!(first.code, 0, "first pull failed");

        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_restsync"))
            .arg("--config")
            .arg(&config)
            .arg("--log-format")
            .arg("json")
            .arg("sync")
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn daemon");
        let pid = child.id().expect("pid");
        let stderr = child.stderr.take().expect("stderr");
        let (walked_tx, walked_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt;
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            let mut walked = Some(walked_tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("cycle finished") {
                    if let Some(tx) = walked.take() {
                        let _ = tx.send(());
                    }
                }
            }
        });
        // The walk at start-up, then a moment for it to settle.
        let _ = tokio::time::timeout(Duration::from_secs(600), walked_rx).await;
        tokio::time::sleep(Duration::from_secs(2)).await;

        let before = cpu_seconds(pid).unwrap_or(0.0);
        tokio::time::sleep(Duration::from_secs(idle_secs)).await;
        let idle = (cpu_seconds(pid).unwrap_or(0.0) - before) / idle_secs as f64 * 100.0;

        let ids = bench.sandbox.control().ids(Kind::PhoneNumbers);
        let conn = Connection::open(bench.db()).expect("db");
        let mut latencies = Vec::new();
        let before = cpu_seconds(pid).unwrap_or(0.0);
        for n in 0..edits {
            let id = ids[(n * 7919) % ids.len()];
            let text = format!("daemon edit {n}");
            let started = Instant::now();
            conn.execute(
                "UPDATE phone_numbers SET description = ?1 WHERE id = ?2",
                rusqlite::params![text, id],
            )
            .expect("edit");
            while bench
                .sandbox
                .control()
                .get(Kind::PhoneNumbers, id)
                .map(|r| r["description"].clone())
                != Some(serde_json::Value::String(text.clone()))
            {
                assert!(started.elapsed() < Duration::from_secs(60), "edit {n} not pushed");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            latencies.push(started.elapsed().as_secs_f64() * 1000.0);
            // Any pass the push itself would wake up happens here, and is counted.
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        let per_edit_ms = (cpu_seconds(pid).unwrap_or(0.0) - before) / edits as f64 * 1000.0;
        latencies.sort_by(f64::total_cmp);
        let peak = vm_hwm_kb(pid).unwrap_or(0) as f64 / 1024.0;
        let _ = child.start_kill();
        let _ = child.wait().await;
        report.row(&[
            rows.to_string(),
            format!("{idle:.2}"),
            format!("{per_edit_ms:.1}"),
            format!("{:.0}", latencies[latencies.len() / 2]),
            format!("{peak:.1}"),
        ]);
        bench.sandbox.shutdown().await;
    }
}

/// Peak memory of a push: the same mirror, 1k and 10k local changes, no added latency.
async fn push_memory_benches(report: &mut Report, base_rows: usize, counts: &[usize]) {
    report.header(
        &format!("6. Peak RSS of `sync --once` pushing N local updates over a {base_rows}-row mirror (concurrency 16)"),
        &["changes", "seconds", "writes", "peak RSS MB"],
    );
    for &changes in counts {
        let bench = Bench::start(base_rows, Faults::default()).await;
        let config = bench.config(16, "");
        let first = bench.run(&config, &["sync", "--once"]).await;
        assert_eq!(first.code, 0);
        {
            let conn = Connection::open(bench.db()).expect("db");
            conn.execute(
                "UPDATE phone_numbers SET description = 'bench update' WHERE local_id IN \
                 (SELECT local_id FROM phone_numbers ORDER BY local_id LIMIT ?1)",
                [changes as i64],
            )
            .expect("update");
        }
        let before = bench.sandbox.control().requests().len();
        let run = bench.run(&config, &["sync", "--once"]).await;
        let writes = bench.sandbox.control().requests()[before..]
            .iter()
            .filter(|r| r.method != "GET")
            .count();
        report.row(&[
            changes.to_string(),
            format!("{:.2}", run.seconds),
            writes.to_string(),
            format!("{:.1}", run.peak_rss_mb),
        ]);
        bench.sandbox.shutdown().await;
    }
}

fn write_results(results: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
    let (start, end) = ("<!-- results:start -->", "<!-- results:end -->");
    let existing = std::fs::read_to_string(&path).unwrap_or_default();
    let machine = format!(
        "Machine: {} cores, {}; restsync {} (release build).\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(|l| l
                .split(':')
                .nth(1)
                .unwrap_or("")
                .trim()
                .to_string()))
            .unwrap_or_else(|| "unknown CPU".into()),
        env!("CARGO_PKG_VERSION")
    );
    let block = format!("{start}\n{machine}{results}\n{end}");
    let updated = match (existing.find(start), existing.find(end)) {
        (Some(a), Some(b)) if a < b => format!("{}{block}{}", &existing[..a], &existing[b + end.len()..]),
        _ => format!("{existing}\n## Results\n\n{block}\n"),
    };
    if let Err(e) = std::fs::write(&path, updated) {
        eprintln!("cannot write {}: {e}", path.display());
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut report = Report { text: String::new() };
    runtime.block_on(async {
        let sizes: &[usize] = if quick { &[100_000] } else { &[100_000, 1_000_000] };
        pull_benches(&mut report, sizes).await;
        let (changes, concurrencies) = if quick {
            (1_500, vec![4, 16])
        } else {
            (10_000, vec![1, 4, 16])
        };
        push_benches(&mut report, changes, &concurrencies, 200.0).await;
        if quick {
            daemon_benches(&mut report, &[100_000], 10, 5).await;
            push_memory_benches(&mut report, 20_000, &[1_000, 10_000]).await;
        } else {
            daemon_benches(&mut report, &[100_000, 1_000_000], 60, 20).await;
            push_memory_benches(&mut report, 100_000, &[1_000, 10_000]).await;
        }
    });
    if !quick {
        write_results(&report.text);
    } else {
        println!("\n(--quick: BENCHMARKS.md not updated)");
    }
}
