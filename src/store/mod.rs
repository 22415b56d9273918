//! SQLite store: the only place that talks SQL. Opens the database with durable settings,
//! applies the embedded migrations, and gives the rest of the program typed operations on
//! the mirror, the base snapshots, the journal and the sync state.
//!
//! Durability: WAL journal mode with `synchronous = FULL`, so every committed transaction
//! (a journal entry above all) is fsynced to the WAL before the commit returns and survives
//! power loss; `NORMAL` would only risk the last transactions, which for a journal entry
//! written just before its request is sent is exactly the one that matters. WAL also lets
//! `restsync status` and people's own `sqlite3` sessions read while a sync writes. Writes
//! begin IMMEDIATE so they queue on the busy timeout instead of failing on lock upgrade.

pub mod definitions;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod journal;
pub mod mirror;
pub mod sync_state;
pub mod tracking;
pub mod writer_lock;

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use rusqlite_migration::{Migrations, M};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a statement waits for another writer (a person's long transaction, say).
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

const MIGRATION_SQL: &[&str] = &[
    include_str!("../../migrations/0001_init.sql"),
    include_str!("../../migrations/0002_journal_lifecycle.sql"),
    include_str!("../../migrations/0003_change_tracking.sql"),
    include_str!("../../migrations/0004_resource_definitions.sql"),
    include_str!("../../migrations/0005_edited_ids.sql"),
];

fn migrations() -> Migrations<'static> {
    Migrations::new(MIGRATION_SQL.iter().map(|sql| M::up(sql)).collect())
}

/// The schema version this binary writes.
pub fn schema_version() -> usize {
    MIGRATION_SQL.len()
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database {path}: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("database {path} has schema version {found}, newer than this restsync understands ({supported}); upgrade restsync")]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: usize,
    },
    #[error("migrating database {path}: {message}")]
    Migration { path: PathBuf, message: String },
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    /// A database error, with the file it happened on.
    #[error("database {path}: {source}")]
    At { path: PathBuf, source: rusqlite::Error },
    #[error("corrupt journal entry {seq}: {message}")]
    Corrupt { seq: i64, message: String },
    #[error(transparent)]
    Transition(#[from] journal::IllegalTransition),
    #[error("database task failed: {0}")]
    Task(String),
    /// A resource definition the existing mirror cannot take (a column removed, renamed or
    /// retyped; another upstream or path; a table name already used): a configuration problem.
    #[error("resources.{resource}: {message}")]
    Definition { resource: String, message: String },
}

impl StoreError {
    fn sqlite_code(&self) -> Option<rusqlite::ErrorCode> {
        match self {
            StoreError::Sql(rusqlite::Error::SqliteFailure(e, _))
            | StoreError::At {
                source: rusqlite::Error::SqliteFailure(e, _),
                ..
            } => Some(e.code),
            _ => None,
        }
    }

    /// A lock held too long by another writer: worth retrying later.
    /// A problem of the configuration (a resource definition), not of the database.
    pub fn is_config(&self) -> bool {
        matches!(self, StoreError::Definition { .. })
    }

    pub fn is_busy(&self) -> bool {
        matches!(
            self.sqlite_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        )
    }

    /// A condition of the file or the disk (read-only, full, an I/O error) that may end by
    /// itself: the connection is opened afresh before the next use, so once it ends the
    /// next cycle works without a restart.
    pub fn needs_reopen(&self) -> bool {
        matches!(
            self.sqlite_code(),
            Some(
                rusqlite::ErrorCode::ReadOnly
                    | rusqlite::ErrorCode::DiskFull
                    | rusqlite::ErrorCode::SystemIoFailure
                    | rusqlite::ErrorCode::CannotOpen
            )
        )
    }

    /// Names the database file in a bare SQL error.
    fn at(self, path: &Path) -> StoreError {
        match self {
            StoreError::Sql(source) => StoreError::At {
                path: path.to_path_buf(),
                source,
            },
            other => other,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One writer connection.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) and migrates the database.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(parent);
        }
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        // Refuse a newer database before touching it (switching to WAL is a write).
        check_not_newer(&conn, path)?;
        configure(&conn).map_err(open_err)?;
        migrate(&mut conn, path)?;
        Ok(Store {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// A private in-memory database, migrated: for tests of the engine's steps.
    /// Opens (or creates) the database and makes it hold every resource of `kinds`: the
    /// mirror and base tables of a defined resource are created or widened here (see
    /// [`definitions`]); a definition the existing tables cannot take is refused.
    pub fn open_for(path: &Path, kinds: &[crate::resources::ResourceKind]) -> Result<Store> {
        let mut store = Store::open(path)?;
        definitions::ensure_all(&mut store, kinds)?;
        Ok(store)
    }

    pub fn open_in_memory() -> Result<Store> {
        let path = PathBuf::from(":memory:");
        let mut conn = Connection::open_in_memory().map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        tracking::own_writes_untracked(&conn, true)?;
        migrate(&mut conn, &path)?;
        Ok(Store { conn, path })
    }

    /// Opens an existing database for reading only (status, while a daemon writes).
    pub fn open_read_only(path: &Path) -> Result<Store> {
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        check_not_newer(&conn, path)?;
        let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if found < schema_version() as i64 {
            return Err(StoreError::Migration {
                path: path.to_path_buf(),
                message: format!(
                    "schema version {found} is older than this restsync's ({}); run `restsync sync --once` to upgrade it",
                    schema_version()
                ),
            });
        }
        Ok(Store {
            conn,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Like [`write`](Self::write), for data that can be fetched again (pulled pages):
    /// committed with `synchronous = NORMAL`, which skips the fsync per commit. A power loss
    /// can then lose the last of these transactions but never tears one, and the mirror and
    /// base snapshot roll back together, so the next walk simply re-applies them. Journal
    /// entries are always written with `write`.
    pub fn write_relaxed<T>(&mut self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        let out = self.write(f);
        let restored = self.conn.pragma_update(None, "synchronous", "FULL");
        let out = out?;
        restored?;
        Ok(out)
    }

    /// Runs `f` in an IMMEDIATE transaction, committing only if it succeeds. restsync's own
    /// writes: the change-tracking triggers record nothing for them (a row restsync leaves
    /// differing from its base is marked explicitly, see [`mirror::mark_if_changed`]).
    pub fn write<T>(&mut self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        tracking::own_writes_untracked(&self.conn, true)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Runs `f` in an IMMEDIATE transaction whose mirror edits are recorded like anyone
    /// else's: for edits made on a person's behalf that the next push must send.
    pub fn write_as_person<T>(&mut self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        tracking::own_writes_untracked(&self.conn, false)?;
        let out = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })();
        tracking::own_writes_untracked(&self.conn, true)?;
        out
    }

    /// The connection with tracking on, as a person's would be: for tests that edit the
    /// mirror between steps of the engine (the next `write` turns it off again).
    #[cfg(test)]
    pub fn person(&self) -> &Connection {
        let _ = tracking::own_writes_untracked(&self.conn, false);
        &self.conn
    }
}

/// Every mirror table: the built-ins and the defined resources this database holds. Each
/// gets the change-tracking triggers.
pub(crate) fn mirror_tables(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut tables: Vec<String> = crate::resources::ResourceKind::BUILT_IN
        .iter()
        .map(|k| k.spec().table.to_string())
        .collect();
    tables.extend(definitions::defined_tables(conn)?);
    Ok(tables)
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // restsync's own writes are not edits to push (see `tracking`).
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER, false)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Bounded page cache: memory stays flat however large the mirror grows. Temporary
    // tables (a walk's seen ids) spill to a file rather than to memory for the same reason.
    conn.pragma_update(None, "cache_size", -8000)?;
    conn.pragma_update(None, "wal_autocheckpoint", 10000)?;
    Ok(())
}

fn check_not_newer(conn: &Connection, path: &Path) -> Result<()> {
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > schema_version() as i64 {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found,
            supported: schema_version(),
        });
    }
    Ok(())
}

/// Migrates to the latest schema and installs the change-tracking triggers.
fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    check_not_newer(conn, path)?;
    let version = conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))?;
    let fresh = version == 0;
    migrations().to_latest(conn).map_err(|e| StoreError::Migration {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if !fresh && version < schema_version() as i64 {
        tracing::info!(database = %path.display(), from = version, to = schema_version(), "database upgraded");
    }
    let tables = mirror_tables(conn)?;
    let tables: Vec<&str> = tables.iter().map(String::as_str).collect();
    tracking::install_triggers(conn, &tables).map_err(|e| e.at(path))?;
    // A database created with change tracking has no edit it could have missed: the first
    // full check is due a day from now, not after the first pull.
    if fresh {
        tracking::set_full_check_at(conn, &now_text())?;
    }
    Ok(())
}

/// A cloneable async handle: runs store work on the blocking pool, one writer at a time.
/// Errors name the database file. After an error of the file or the disk, the connection
/// is reopened before the next call, so a condition that ended needs no restart.
#[derive(Clone)]
pub struct AsyncStore {
    inner: Arc<Mutex<(Store, bool)>>,
}

impl AsyncStore {
    pub fn new(store: Store) -> AsyncStore {
        AsyncStore {
            inner: Arc::new(Mutex::new((store, false))),
        }
    }

    pub async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Store) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = inner
                .lock()
                .map_err(|_| StoreError::Task("store lock poisoned".into()))?;
            let (store, reopen) = &mut *guard;
            if *reopen {
                let path = store.path().to_path_buf();
                match Store::open(&path) {
                    Ok(fresh) => {
                        tracing::info!(database = %path.display(), "database reopened");
                        *store = fresh;
                        *reopen = false;
                    }
                    Err(e) => return Err(e.at(&path)),
                }
            }
            let result = f(store);
            if let Err(e) = &result {
                if e.needs_reopen() {
                    *reopen = true;
                }
            }
            result.map_err(|e| e.at(store.path()))
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

/// FNV-1a: stable across builds, so stored hashes stay valid after an upgrade.
/// (The hash of a record's raw JSON in its base snapshot.)
pub fn content_hash(bytes: &[u8]) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

/// Current time as stored in the database (RFC 3339, UTC, milliseconds).
pub fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests;
