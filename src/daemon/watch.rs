//! Notices local edits cheaply. `PRAGMA data_version` on a connection of its own changes
//! whenever another connection commits (costs no I/O); only then is the edit counter the
//! change-tracking triggers keep read, and only when it moved is the daemon woken. So a
//! commit of restsync's own (a pull, a write-back) never wakes it, and an idle daemon
//! reads nothing.

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
    let mut last: Option<(i64, i64)> = None;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tick.tick() => {}
        }
        let c = conn.clone();
        let known = last;
        let seen = tokio::task::spawn_blocking(move || {
            let conn = c.lock().map_err(|_| rusqlite::Error::InvalidQuery)?;
            let version = conn.query_row("PRAGMA data_version", [], |r| r.get::<_, i64>(0))?;
            if known.is_some_and(|(v, _)| v == version) {
                return Ok(known);
            }
            let edits = crate::store::tracking::edits(&conn).map_err(|_| rusqlite::Error::InvalidQuery)?;
            Ok::<_, rusqlite::Error>(Some((version, edits)))
        })
        .await;
        let Ok(Ok(Some(seen))) = seen else { continue };
        if last.is_some_and(|(_, edits)| edits != seen.1) {
            let _ = changes.send(());
        }
        last = Some(seen);
    }
}
