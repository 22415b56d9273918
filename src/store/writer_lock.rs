//! One writer per database: an exclusive advisory lock on `<database path>.lock`.
//!
//! SQLite serialises transactions, but not a whole sync: two processes pushing the same
//! journal at once can both send a create. So every process that writes or pushes (`sync`,
//! `sync --once`, `journal retry`, `journal drop`, the demo) holds this lock for as long as
//! it runs; readers (`status`, `plan`, `journal` listing) never take it.
//!
//! The lock is `flock`-style (std's [`File::try_lock`]): the kernel drops it when the holder
//! exits, however it exits, so a crash never leaves a stale lock behind. The holder writes
//! its pid into the file so that a process that finds the lock taken can name it. The file
//! itself stays; only the lock on it matters.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a would-be writer waits for the lock before giving up, by default.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(5);

/// How often a waiting process tries the lock again.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock (and still did when the wait ran out).
    #[error(
        "another restsync process (pid {}) is syncing this database ({})",
        pid_text(*.pid),
        .database.display()
    )]
    Held {
        /// The holder's pid as it wrote it into the lock file; `None` if unreadable.
        pid: Option<u32>,
        database: PathBuf,
    },
    /// The lock file cannot be created, opened, locked or written.
    #[error("cannot lock {}: {source}", .path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

/// The held writer lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct WriterLock {
    file: File,
    path: PathBuf,
}

impl WriterLock {
    /// The lock file of a database: its path with `.lock` appended (`restsync.db.lock`).
    pub fn lock_path(db_path: &Path) -> PathBuf {
        // The database's real path, so two configurations that reach one file through a
        // symlink (of the file or of a directory) share one lock.
        let real = std::fs::canonicalize(db_path).unwrap_or_else(|_| {
            match (db_path.parent(), db_path.file_name()) {
                (Some(dir), Some(file)) if !dir.as_os_str().is_empty() => std::fs::canonicalize(dir)
                    .map(|d| d.join(file))
                    .unwrap_or_else(|_| db_path.to_path_buf()),
                _ => db_path.to_path_buf(),
            }
        });
        let mut name = real.into_os_string();
        name.push(".lock");
        PathBuf::from(name)
    }

    /// Takes the writer lock of the database at `db_path`, trying again every 100 ms for up
    /// to `wait` while another process holds it. Creates the lock file (and, like
    /// [`Store::open`](super::Store::open), the database's directory) if needed.
    pub fn acquire(db_path: &Path, wait: Duration) -> Result<WriterLock, LockError> {
        let path = Self::lock_path(db_path);
        let io_err = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io_err)?;
        }
        // Not truncated on open: until the lock is ours, the pid in it is the holder's.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err)?;
        let deadline = Instant::now() + wait;
        let mut logged = false;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::Error(e)) => return Err(io_err(e)),
                Err(TryLockError::WouldBlock) => {
                    let pid = read_pid(&file);
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(LockError::Held {
                            pid,
                            database: db_path.to_path_buf(),
                        });
                    }
                    if !logged {
                        logged = true;
                        tracing::info!(
                            lock = %path.display(),
                            pid = %pid_text(pid),
                            "another restsync process holds the writer lock; waiting up to {:.1}s",
                            wait.as_secs_f64()
                        );
                    }
                    std::thread::sleep(POLL_INTERVAL.min(deadline - now));
                }
            }
        }
        let lock = WriterLock {
            file,
            path: path.clone(),
        };
        lock.write_pid().map_err(io_err)?;
        Ok(lock)
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_pid(&self) -> std::io::Result<()> {
        let mut file = &self.file;
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(format!("{}\n", std::process::id()).as_bytes())?;
        file.flush()
    }
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        // No stale pid for the next reader; the lock itself goes with the file handle.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

fn pid_text(pid: Option<u32>) -> String {
    pid.map_or_else(|| "unknown".to_string(), |p| p.to_string())
}

/// The pid the holder wrote into the lock file, if it has written one yet.
fn read_pid(file: &File) -> Option<u32> {
    let mut file = file;
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    // A pid is a few bytes; anything longer is not one.
    file.take(64).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db_in(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("restsync.db")
    }

    #[test]
    fn a_database_reached_through_a_symlink_shares_its_lock() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::fs::write(real.join("restsync.db"), b"").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(
            WriterLock::lock_path(&link.join("restsync.db")),
            WriterLock::lock_path(&real.join("restsync.db"))
        );
        let held = WriterLock::acquire(&real.join("restsync.db"), Duration::ZERO).unwrap();
        assert!(WriterLock::acquire(&link.join("restsync.db"), Duration::ZERO).is_err());
        drop(held);
    }

    #[test]
    fn the_lock_file_sits_next_to_the_database() {
        assert_eq!(
            WriterLock::lock_path(Path::new("/var/lib/restsync/restsync.db")),
            PathBuf::from("/var/lib/restsync/restsync.db.lock")
        );
        assert_eq!(
            WriterLock::lock_path(Path::new("mirror.db")),
            PathBuf::from("mirror.db.lock")
        );
    }

    #[test]
    fn the_holder_writes_its_pid_and_clears_it_on_release() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = db_in(&dir);
        let lock = WriterLock::acquire(&db, Duration::ZERO).expect("free lock");
        assert_eq!(lock.path(), dir.path().join("restsync.db.lock"));
        let text = std::fs::read_to_string(lock.path()).expect("lock file");
        assert_eq!(text, format!("{}\n", std::process::id()));
        drop(lock);
        let text = std::fs::read_to_string(dir.path().join("restsync.db.lock")).expect("lock file");
        assert_eq!(text, "");
    }

    #[test]
    fn a_second_writer_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = db_in(&dir);
        let _held = WriterLock::acquire(&db, Duration::ZERO).expect("free lock");
        // flock locks belong to the open file, so a second open in this process conflicts
        // exactly as another process would.
        let err = WriterLock::acquire(&db, Duration::ZERO).expect_err("lock is held");
        match &err {
            LockError::Held { pid, database } => {
                assert_eq!(*pid, Some(std::process::id()));
                assert_eq!(database, &db);
            }
            other => panic!("expected Held, got {other:?}"),
        }
        assert_eq!(
            err.to_string(),
            format!(
                "another restsync process (pid {}) is syncing this database ({})",
                std::process::id(),
                db.display()
            )
        );
    }

    #[test]
    fn a_second_writer_waits_for_the_given_time_then_gives_up() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = db_in(&dir);
        let _held = WriterLock::acquire(&db, Duration::ZERO).expect("free lock");
        let started = Instant::now();
        let err = WriterLock::acquire(&db, Duration::from_millis(400)).expect_err("lock is held");
        let waited = started.elapsed();
        assert!(matches!(err, LockError::Held { .. }), "{err:?}");
        assert!(waited >= Duration::from_millis(400), "gave up after {waited:?}");
        assert!(waited < Duration::from_secs(3), "waited {waited:?}");
    }

    #[test]
    fn a_waiting_writer_gets_the_lock_once_it_is_released() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = db_in(&dir);
        let held = WriterLock::acquire(&db, Duration::ZERO).expect("free lock");
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(held);
        });
        let lock = WriterLock::acquire(&db, Duration::from_secs(5)).expect("released within the wait");
        releaser.join().expect("releaser thread");
        let text = std::fs::read_to_string(lock.path()).expect("lock file");
        assert_eq!(text.trim(), std::process::id().to_string());
    }

    #[test]
    fn a_leftover_lock_file_is_no_lock() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = db_in(&dir);
        // What a killed holder (or anything else) may leave behind: contents, but no lock.
        std::fs::write(WriterLock::lock_path(&db), "999999999 and some junk\n").expect("write");
        let lock = WriterLock::acquire(&db, Duration::ZERO).expect("no one holds it");
        let text = std::fs::read_to_string(lock.path()).expect("lock file");
        assert_eq!(text, format!("{}\n", std::process::id()));
    }

    #[test]
    fn an_unreadable_pid_is_reported_as_unknown() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = db_in(&dir);
        let held = WriterLock::acquire(&db, Duration::ZERO).expect("free lock");
        std::fs::write(held.path(), "not a pid").expect("overwrite pid");
        let err = WriterLock::acquire(&db, Duration::ZERO).expect_err("lock is held");
        assert!(matches!(err, LockError::Held { pid: None, .. }), "{err:?}");
        assert!(err.to_string().contains("(pid unknown)"), "{err}");
    }

    #[test]
    fn a_missing_directory_is_created_and_an_impossible_one_is_an_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("state").join("restsync.db");
        let lock = WriterLock::acquire(&db, Duration::ZERO).expect("directory created");
        assert!(lock.path().exists());
        // A regular file where the directory should be.
        let file = dir.path().join("a-file");
        std::fs::write(&file, "x").expect("write");
        let err = WriterLock::acquire(&file.join("restsync.db"), Duration::ZERO).expect_err("no directory");
        match &err {
            LockError::Io { path, .. } => assert_eq!(path, &file.join("restsync.db.lock")),
            other => panic!("expected Io, got {other:?}"),
        }
        assert!(err.to_string().starts_with("cannot lock "), "{err}");
    }
}
