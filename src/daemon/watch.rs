//! Notices local edits cheaply: `PRAGMA data_version` on a connection of its own changes
//! whenever another connection (a person's `sqlite3`, or restsync's writer) commits.

use rusqlite::{Connection, OpenFlags};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub async fn run(
    path: PathBuf,
    interval: Duration,
    changes: broadcast::Sender<()>,
    token: CancellationToken,
) {
    let watched = tokio::task::spawn_blocking(move || {
        let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        conn.busy_timeout(crate::store::BUSY_TIMEOUT)?;
        Ok::<_, rusqlite::Error>(conn)
    })
    .await;
    let conn = match watched {
        Ok(Ok(c)) => std::sync::Arc::new(std::sync::Mutex::new(c)),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot watch the mirror for local edits; they will be pushed on schedule");
            return;
        }
        Err(_) => return,
    };
    let mut last: Option<i64> = None;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tick.tick() => {}
        }
        let c = conn.clone();
        let version = tokio::task::spawn_blocking(move || {
            let conn = c.lock().map_err(|_| rusqlite::Error::InvalidQuery)?;
            conn.query_row("PRAGMA data_version", [], |r| r.get::<_, i64>(0))
        })
        .await;
        let Ok(Ok(version)) = version else { continue };
        if last.is_some_and(|l| l != version) {
            let _ = changes.send(());
        }
        last = Some(version);
    }
}
