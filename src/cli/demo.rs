//! `demo` and `sandbox`: run restsync against the built-in emulator.

use super::exit;
use crate::config;
use crate::resources::ResourceKind;
use crate::sandbox::{self, Kind, Sandbox, SandboxOptions};
use crate::store::{AsyncStore, Store};
use crate::sync::{CycleOptions, CycleReport, Engine};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// Edits a person might make with `sqlite3`, pushed upstream by the second cycle.
const DEMO_EDITS: &[&str] = &[
    "INSERT INTO phone_numbers (contact_id, type, number, extension, description) \
     VALUES (1935038, 2, '0912345678', NULL, '示範：新增的手機')",
    "UPDATE addresses SET description = '示範：更新的備註' \
     WHERE local_id = (SELECT min(local_id) FROM addresses)",
    "INSERT INTO smart_numbers (user_id, phone_b, description) \
     VALUES (40, '79161234567', 'демо: новый умный номер')",
    "DELETE FROM smart_numbers WHERE local_id = (SELECT max(local_id) FROM smart_numbers WHERE id IS NOT NULL)",
];

pub async fn serve_sandbox(
    firstline_port: u16,
    plusofon_port: u16,
    seed: u64,
    records: usize,
    faults: Option<&str>,
    defined: Vec<crate::resources::ResourceKind>,
) -> i32 {
    let faults = match faults.map(sandbox::parse_faults).transpose() {
        Ok(f) => f.unwrap_or_default(),
        Err(e) => {
            eprintln!("restsync: --faults: {e}");
            return exit::CONFIG;
        }
    };
    let opts = SandboxOptions {
        firstline_port,
        plusofon_port,
        seed,
        records,
        faults,
        defined,
        ..SandboxOptions::default()
    };
    let sandbox = match Sandbox::start(opts.clone()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("restsync: cannot start the sandbox: {e}");
            return exit::FATAL;
        }
    };
    outln!(
        "Firstline sandbox: {}  (token {})",
        sandbox.firstline_url(),
        opts.firstline_token
    );
    outln!(
        "Plusofon sandbox:  {}  (token {}, client {})",
        sandbox.plusofon_url(),
        opts.plusofon_token,
        opts.plusofon_client
    );
    for kind in &opts.defined {
        let spec = kind.spec();
        outln!(
            "  also {} at {}{} ({} records)",
            spec.table,
            match spec.upstream {
                crate::resources::UpstreamName::Firstline => sandbox.firstline_url(),
                crate::resources::UpstreamName::Plusofon => sandbox.plusofon_url(),
            },
            spec.path,
            opts.records
        );
    }
    outln!("Ctrl-C stops it.");
    let _ = tokio::signal::ctrl_c().await;
    sandbox.shutdown().await;
    exit::OK
}

pub fn sandbox_config(sandbox: &Sandbox, opts: &SandboxOptions, database: &str) -> String {
    format!(
        r#"# Written by `restsync demo`: restsync against the built-in sandbox.
[database]
path = "{database}"

[upstreams.firstline]
base_url = "{fl}"
token = "{flt}"

[upstreams.plusofon]
base_url = "{pl}"
token = "{plt}"
client = "{client}"

[sync]
per_page = 100
concurrency = 4
"#,
        fl = sandbox.firstline_url(),
        flt = opts.firstline_token,
        pl = sandbox.plusofon_url(),
        plt = opts.plusofon_token,
        client = opts.plusofon_client,
    )
}

/// Marks a directory as the demo's own: only there may it rebuild restsync.db and
/// restsync.toml without asking.
pub const MARKER: &str = ".restsync-demo";

/// How many of a refused directory's entries the message names.
const NAMED_ENTRIES: usize = 8;

pub async fn run(dir: &Path, records: usize) -> i32 {
    if let Err(message) = claim_dir(dir) {
        eprintln!("restsync demo: {message}");
        return exit::CANTCREAT;
    }
    // A demo pushes like any sync: one writer per database (a second demo in the same place).
    let lock = match super::writer_lock_async(&dir.join("restsync.db")).await {
        Ok(lock) => lock,
        Err(code) => return code,
    };
    let code = match run_inner(dir, records).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("restsync demo: {e}");
            exit::FATAL
        }
    };
    drop(lock);
    code
}

/// Makes `dir` the demo's: creates it if it does not exist, takes it if it is empty, and
/// marks it either way; a directory an earlier demo marked is reused. Anything else (a
/// directory holding someone's files, a file) is refused untouched: the demo deletes and
/// rewrites restsync.db and restsync.toml. The error is the message to show.
fn claim_dir(dir: &Path) -> Result<(), String> {
    let shown = dir.display();
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {shown}: {e}"))?;
        }
        Err(e) => return Err(format!("cannot use {shown}: {e}")),
        Ok(meta) if !meta.is_dir() => {
            return Err(format!(
                "refusing to use {shown}: it exists and is not a directory; \
                 pass --dir with a new or empty directory"
            ))
        }
        Ok(_) => {
            let mut names = Vec::new();
            let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read {shown}: {e}"))?;
            for entry in entries {
                let entry = entry.map_err(|e| format!("cannot read {shown}: {e}"))?;
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
            if names.iter().any(|n| n == MARKER) {
                return Ok(());
            }
            if !names.is_empty() {
                names.sort();
                let mut listed = names
                    .iter()
                    .take(NAMED_ENTRIES)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ");
                if names.len() > NAMED_ENTRIES {
                    listed.push_str(&format!(" and {} more", names.len() - NAMED_ENTRIES));
                }
                return Err(format!(
                    "refusing to use {shown}: it already holds {listed}, and an earlier demo did not \
                     make it (no {MARKER} file); the demo would delete and rewrite restsync.db and \
                     restsync.toml there. Nothing was changed; pass --dir with a new or empty directory"
                ));
            }
        }
    }
    std::fs::write(
        dir.join(MARKER),
        "This directory belongs to `restsync demo`, which rebuilds restsync.db and restsync.toml \
         here on every run.\n",
    )
    .map_err(|e| format!("cannot write {}: {e}", dir.join(MARKER).display()))
}

/// Any failure ends the demo with its message; nothing here is retried.
async fn run_inner(dir: &Path, records: usize) -> Result<i32, Box<dyn std::error::Error + Send + Sync>> {
    let opts = SandboxOptions {
        records,
        ..SandboxOptions::default()
    };
    let sandbox = Sandbox::start(opts.clone()).await?;
    // The demo's own database (in its own, marked directory) is rebuilt on every run: the
    // sandbox starts fresh too.
    for name in ["restsync.db", "restsync.db-wal", "restsync.db-shm"] {
        let _ = std::fs::remove_file(dir.join(name));
    }
    let config_path = dir.join("restsync.toml");
    std::fs::write(&config_path, sandbox_config(&sandbox, &opts, "restsync.db"))?;
    let settings = Arc::new(config::load_with_env(&config_path, Default::default())?);
    let db_path = settings.database_path.clone();
    let engine = Engine::new(settings, AsyncStore::new(Store::open(&db_path)?))?;

    outln!("restsync demo: syncing with the built-in sandbox");
    outln!(
        "  Firstline at {}, Plusofon at {}\n",
        sandbox.firstline_url(),
        sandbox.plusofon_url()
    );
    let started = Instant::now();
    let first = engine.run_cycle(CycleOptions::default()).await;
    outln!(
        "1. First sync: pulled every resource into an empty mirror ({:.2}s)",
        started.elapsed().as_secs_f64()
    );
    print_report(&first);

    outln!("\n2. Editing the mirror with plain SQL, as a person or another program would:");
    let conn = rusqlite::Connection::open(&db_path)?;
    for sql in DEMO_EDITS {
        conn.execute(sql, [])?;
        outln!(
            "   sqlite> {};",
            sql.split_whitespace().collect::<Vec<_>>().join(" ")
        );
    }
    drop(conn);

    let started = Instant::now();
    let second = engine.run_cycle(CycleOptions::default()).await;
    outln!(
        "\n3. Second sync: pushed the edits upstream ({:.2}s)",
        started.elapsed().as_secs_f64()
    );
    print_report(&second);

    let control = sandbox.control();
    outln!("\n4. Both sides now hold:");
    let reader = Store::open_read_only(&db_path)?;
    for (kind, resource) in [
        (Kind::PhoneNumbers, ResourceKind::PHONE_NUMBERS),
        (Kind::Addresses, ResourceKind::ADDRESSES),
        (Kind::SmartNumbers, ResourceKind::SMART_NUMBERS),
    ] {
        let mirror_rows = crate::store::mirror::count_mirror(reader.conn(), resource.spec())?;
        outln!(
            "   {:<14} {:>6} records upstream, {:>6} rows in the mirror",
            resource.name(),
            control.count(kind),
            mirror_rows
        );
    }
    drop(reader);
    let abs = std::fs::canonicalize(&db_path).unwrap_or(db_path.clone());
    outln!("\nThe mirror is at {}", abs.display());
    outln!(
        "Look inside:  sqlite3 {} 'SELECT * FROM phone_numbers ORDER BY local_id DESC LIMIT 5'",
        abs.display()
    );
    outln!(
        "Journal:      sqlite3 {} 'SELECT seq, resource, op, state, local_id, upstream_id FROM journal'",
        abs.display()
    );
    outln!(
        "Status:       restsync --config {} status   (the sandbox is gone once the demo ends)",
        config_path.display()
    );
    sandbox.shutdown().await;
    Ok(second.exit_code())
}

fn print_report(report: &CycleReport) {
    for line in super::summary::lines(report, report.exit_code()) {
        outln!("   {line}");
    }
}
