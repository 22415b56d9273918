//! Shared harness for the integration tests: a sandbox on 127.0.0.1 (port 0), a temporary
//! directory with a config and a real SQLite file, and the real `restsync` binary.

use restsync::sandbox::{Kind, Sandbox, SandboxControl, SandboxOptions};
use rusqlite::Connection;
use std::path::PathBuf;
use std::process::Output;

pub struct Env {
    pub sandbox: Sandbox,
    pub control: SandboxControl,
    pub opts: SandboxOptions,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub db_path: PathBuf,
}

/// What a `restsync` run left behind.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Env {
    pub async fn start(records: usize) -> Env {
        Env::start_with(SandboxOptions {
            records,
            ..SandboxOptions::default()
        })
        .await
    }

    pub async fn start_with(opts: SandboxOptions) -> Env {
        let sandbox = Sandbox::start(opts.clone()).await.expect("sandbox starts");
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("restsync.toml");
        let db_path = dir.path().join("mirror.db");
        let env = Env {
            control: sandbox.control(),
            sandbox,
            opts,
            dir,
            config,
            db_path,
        };
        env.write_config("", "");
        env
    }

    /// Writes the config: `sync_extra` goes inside `[sync]`, `tail` after everything.
    pub fn write_config(&self, sync_extra: &str, tail: &str) {
        let text = format!(
            r#"[database]
path = "{db}"

[upstreams.firstline]
base_url = "{fl}"
token = "{flt}"

[upstreams.plusofon]
base_url = "{pl}"
token = "{plt}"
client = "{client}"

[sync]
per_page = 25
concurrency = 4
request_timeout_secs = 3
list_lag_secs = 1
retry_base_ms = 10
max_retry_after_secs = 2
{sync_extra}

{tail}
"#,
            db = self.db_path.display(),
            fl = self.sandbox.firstline_url(),
            flt = self.opts.firstline_token,
            pl = self.sandbox.plusofon_url(),
            plt = self.opts.plusofon_token,
            client = self.opts.plusofon_client,
        );
        // A key in `sync_extra` replaces the default one above it.
        let overridden: Vec<&str> = sync_extra
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
            .collect();
        let mut seen_sync = false;
        let text: String = text
            .lines()
            .filter(|l| {
                if l.trim() == "[sync]" {
                    seen_sync = true;
                }
                let key = l.split_once('=').map(|(k, _)| k.trim());
                let is_default = seen_sync && !sync_extra.lines().any(|x| x.trim() == l.trim());
                !(is_default && key.is_some_and(|k| overridden.contains(&k)))
            })
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&self.config, text).expect("write config");
    }

    /// Runs the real binary with this environment's config.
    pub async fn restsync(&self, args: &[&str]) -> Run {
        self.restsync_env(args, &[]).await
    }

    pub async fn restsync_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = self.command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Run::from(cmd.output().await.expect("run restsync"))
    }

    /// The command `restsync` runs as (same args and environment), for tests that need the
    /// child process itself (to kill it, or to act while it runs).
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_restsync"));
        cmd.arg("--config").arg(&self.config).args(args);
        for (k, _) in std::env::vars() {
            if k.starts_with("RESTSYNC_") || k == "RUST_LOG" {
                cmd.env_remove(k);
            }
        }
        cmd.env("RUST_LOG", "info");
        cmd.kill_on_drop(true);
        cmd
    }

    /// Starts `restsync` in the background with its output discarded.
    pub fn spawn(&self, args: &[&str]) -> tokio::process::Child {
        self.command(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn restsync")
    }

    pub async fn sync_once(&self) -> Run {
        self.restsync(&["sync", "--once"]).await
    }

    /// Runs `sync --once` and insists it exits 0.
    pub async fn sync_ok(&self) -> Run {
        let run = self.sync_once().await;
        assert_eq!(run.code, 0, "sync --once failed:\n{}", run.stderr);
        run
    }

    pub fn db(&self) -> Connection {
        Connection::open(&self.db_path).expect("open mirror")
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.db().query_row(sql, [], |r| r.get(0)).expect("count query")
    }

    pub fn exec(&self, sql: &str) {
        self.db().execute_batch(sql).expect("local edit");
    }

    /// Upstream ids of a resource, sorted.
    pub fn upstream_ids(&self, kind: Kind) -> Vec<i64> {
        let mut ids: Vec<i64> = self
            .control
            .list(kind)
            .iter()
            .filter_map(|r| r["id"].as_i64())
            .collect();
        ids.sort();
        ids
    }

    /// Mirror ids of a table, sorted (NULL ids excluded).
    pub fn mirror_ids(&self, table: &str) -> Vec<i64> {
        let conn = self.db();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT id FROM {table} WHERE id IS NOT NULL ORDER BY id"
            ))
            .expect("prepare");
        let ids = stmt
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<Vec<i64>, _>>()
            .expect("ids");
        ids
    }

    /// Asserts the mirror and upstream hold the same records with the same writable values.
    pub fn assert_converged(&self) {
        for kind in [Kind::PhoneNumbers, Kind::Addresses, Kind::SmartNumbers] {
            let table = kind.name();
            assert_eq!(
                self.mirror_ids(table),
                self.upstream_ids(kind),
                "{table}: mirror and upstream ids differ"
            );
            let nulls = self.count(&format!("SELECT count(*) FROM {table} WHERE id IS NULL"));
            assert_eq!(nulls, 0, "{table}: rows never created upstream");
            for rec in self.control.list(kind) {
                let id = rec["id"].as_i64().expect("id");
                let row = self.row_json(table, id);
                for (col, key) in writable(kind) {
                    let upstream = match kind {
                        Kind::PhoneNumbers if *col == "contact_id" => {
                            rec["phone_contact"]["contact_id"].clone()
                        }
                        _ => rec[*key].clone(),
                    };
                    assert_eq!(row[*col], upstream, "{table} id {id} column {col}");
                }
            }
        }
    }

    /// A mirror row as JSON keyed by column name.
    pub fn row_json(&self, table: &str, id: i64) -> serde_json::Value {
        let conn = self.db();
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM {table} WHERE id = ?1"))
            .expect("prepare");
        let names: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
        stmt.query_row([id], |r| {
            let mut map = serde_json::Map::new();
            for (i, name) in names.iter().enumerate() {
                let v: rusqlite::types::Value = r.get(i)?;
                let j = match v {
                    rusqlite::types::Value::Null => serde_json::Value::Null,
                    rusqlite::types::Value::Integer(n) => n.into(),
                    rusqlite::types::Value::Real(f) => f.into(),
                    rusqlite::types::Value::Text(t) => t.into(),
                    rusqlite::types::Value::Blob(_) => serde_json::Value::Null,
                };
                map.insert(name.clone(), j);
            }
            Ok(serde_json::Value::Object(map))
        })
        .unwrap_or_else(|e| panic!("{table} row with id {id}: {e}"))
    }
}

/// (mirror column, upstream list key) of each writable column.
pub fn writable(kind: Kind) -> &'static [(&'static str, &'static str)] {
    match kind {
        Kind::PhoneNumbers => &[
            ("contact_id", "contact_id"),
            ("type", "type"),
            ("number", "number"),
            ("extension", "extension"),
            ("description", "description"),
        ],
        Kind::Addresses => &[
            ("contact_id", "contact_id"),
            ("type", "type"),
            ("address", "address"),
            ("country_id", "country_id"),
            ("state_id", "state_id"),
            ("city_id", "city_id"),
            ("description", "description"),
        ],
        Kind::SmartNumbers => &[
            ("user_id", "user_id"),
            ("phone_b", "phoneB"),
            ("description", "description"),
        ],
    }
}
