//! `restsync check`: the configuration is valid (done by loading it), the database can be
//! opened for writing (or created), and when each resource's walks will run.

use super::exit;
use crate::config::Settings;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::time::Duration;

pub async fn run(config_path: &Path, settings: Settings, online: bool) -> i32 {
    let code = offline(config_path, &settings);
    if !online {
        return code;
    }
    let probed = probe(settings).await;
    if code == exit::OK {
        probed
    } else {
        code
    }
}

/// With `--online`: one request per resource, so a wrong URL or token shows before the
/// first sync does. 65 when upstream refuses (a token, a filter), 75 when it cannot be
/// reached now.
async fn probe(settings: Settings) -> i32 {
    let settings = std::sync::Arc::new(settings);
    let store = match crate::store::Store::open_in_memory() {
        Ok(s) => crate::store::AsyncStore::new(s),
        Err(e) => {
            eprintln!("restsync: {e}");
            return exit::FATAL;
        }
    };
    let engine = match crate::sync::Engine::new(settings.clone(), store) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("restsync: {e}");
            return exit::CONFIG;
        }
    };
    let (mut refused, mut unreachable) = (false, false);
    // One small list request per upstream, through its first enabled resource.
    let mut probed = Vec::new();
    for kind in engine.resources() {
        let upstream = kind.spec().upstream;
        if probed.contains(&upstream) {
            continue;
        }
        probed.push(upstream);
        match engine.probe(kind).await {
            Some(Ok(total)) => outln!(
                "{}: OK ({} answers, {total} records)",
                upstream.as_str(),
                kind.name()
            ),
            Some(Err(e)) => {
                eprintln!("restsync: {} ({}): {e}", upstream.as_str(), kind.name());
                match e.is_retryable() {
                    true => unreachable = true,
                    false => refused = true,
                }
            }
            None => {}
        }
    }
    match (refused, unreachable) {
        (true, _) => exit::DATA,
        (false, true) => exit::TEMPFAIL,
        (false, false) => exit::OK,
    }
}

fn offline(config_path: &Path, settings: &Settings) -> i32 {
    outln!(
        "configuration {} is valid: {} resource(s)",
        config_path.display(),
        settings.resources.len()
    );
    let code = match database_writable(&settings.database_path) {
        Ok(what) => {
            outln!("database {}: {what}", settings.database_path.display());
            exit::OK
        }
        Err(why) => {
            eprintln!(
                "restsync: database {} (database.path): {why}",
                settings.database_path.display()
            );
            exit::CANTCREAT
        }
    };
    let code = match definitions(settings) {
        Ok(()) => code,
        Err(message) => {
            eprintln!("restsync: {message}");
            exit::CONFIG
        }
    };
    for r in &settings.resources {
        let next: Vec<String> = r
            .schedule
            .upcoming(settings.sync.time_zone)
            .take(3)
            .map(|t| t.to_rfc3339())
            .collect();
        outln!(
            "{}: schedule {:?} in {}; next walks {}",
            r.kind.name(),
            r.schedule_text,
            settings.sync.time_zone.name(),
            next.join(", ")
        );
    }
    code
}

/// Whether the database can take the resource definitions, and what start-up will do to
/// their tables (nothing is changed here).
fn definitions(settings: &Settings) -> Result<(), String> {
    use crate::store::definitions::{left_out, preview, Change};
    let defined: Vec<_> = settings
        .kinds()
        .into_iter()
        .filter(|k| !k.is_built_in())
        .collect();
    let path = &settings.database_path;
    let current = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .ok()
        .filter(|c| {
            c.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))
                .is_ok_and(|v| v == crate::store::schema_version() as i64)
        });
    let Some(conn) = current else {
        for kind in defined {
            outln!("{}: its mirror tables are created on the first sync", kind.name());
        }
        return Ok(());
    };
    for (table, waiting) in left_out(&conn, &settings.kinds()).map_err(|e| e.to_string())? {
        if waiting > 0 {
            outln!(
                "{table}: no longer defined or enabled here, and {waiting} local change(s) wait in it; they are sent when its definition is back"
            );
        }
    }
    for (kind, change) in preview(&conn, &defined).map_err(|e| e.to_string())? {
        match change {
            Change::None => {}
            Change::Create => outln!("{}: its mirror tables are created on the next start", kind.name()),
            Change::Widen { .. } => {
                let added = change.added(kind);
                outln!(
                    "{}: columns {} are added on the next start (filled from the stored records)",
                    kind.name(),
                    added.join(", ")
                );
            }
        }
    }
    Ok(())
}

/// Whether restsync could write the database: an existing one is opened read-write and a
/// write lock is taken and released; for a new one, its directory must take a file.
fn database_writable(path: &Path) -> Result<&'static str, String> {
    if path.exists() {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
            .map_err(|e| format!("cannot be opened for writing: {e}"))?;
        conn.busy_timeout(Duration::from_secs(2))
            .map_err(|e| e.to_string())?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| format!("cannot be read: {e}"))?;
        if version > crate::store::schema_version() as i64 {
            return Err(format!(
                "has schema version {version}, newer than this restsync understands ({}); upgrade restsync",
                crate::store::schema_version()
            ));
        }
        return match conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;") {
            Ok(()) => Ok("writable"),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) =>
            {
                Ok("writable (another process is writing it now)")
            }
            Err(e) => Err(format!("cannot be written: {e}")),
        };
    }
    // The nearest directory that exists must take a file; check creates nothing itself.
    let mut dir = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(d) => d.to_path_buf(),
        None => std::path::PathBuf::from("."),
    };
    let mut missing = false;
    while !dir.exists() {
        missing = true;
        match dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(parent) => dir = parent.to_path_buf(),
            None => dir = std::path::PathBuf::from("."),
        }
    }
    if !dir.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    let probe = dir.join(format!(".restsync-check-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| format!("no file can be created in {}: {e}", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(if missing {
        "does not exist yet; the first sync creates it and its missing directories (the nearest existing one is writable)"
    } else {
        "does not exist yet; its directory is writable, the first sync creates it"
    })
}
