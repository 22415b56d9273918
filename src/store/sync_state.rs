//! Per-resource sync state (how the walks went) and the conflict record.

use super::{now_text, Result};
use rusqlite::{params, Connection, OptionalExtension};

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SyncState {
    pub resource: String,
    pub last_walk_started_at: Option<String>,
    pub last_complete_walk_at: Option<String>,
    pub row_count: Option<i64>,
    pub pages: Option<i64>,
    pub last_duration_ms: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    /// `transient`, `needs_human` or `fatal`.
    pub last_error_kind: Option<String>,
}

pub fn walk_started(conn: &Connection, resource: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO sync_state (resource, last_walk_started_at) VALUES (?1, ?2) \
         ON CONFLICT (resource) DO UPDATE SET last_walk_started_at = excluded.last_walk_started_at",
        params![resource, now_text()],
    )?;
    Ok(())
}

pub fn walk_completed(
    conn: &Connection,
    resource: &str,
    rows: i64,
    pages: i64,
    duration_ms: i64,
) -> Result<()> {
    conn.execute(
        "INSERT INTO sync_state (resource, last_complete_walk_at, row_count, pages, last_duration_ms, last_error, last_error_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, NULL, NULL) \
         ON CONFLICT (resource) DO UPDATE SET last_complete_walk_at = excluded.last_complete_walk_at, \
         row_count = excluded.row_count, pages = excluded.pages, last_duration_ms = excluded.last_duration_ms, \
         last_error = NULL, last_error_at = NULL, last_error_kind = NULL",
        params![resource, now_text(), rows, pages, duration_ms],
    )?;
    Ok(())
}

/// Records a failed cycle step; `kind` is `transient`, `needs_human` or `fatal`.
pub fn record_error(conn: &Connection, resource: &str, error: &str, kind: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO sync_state (resource, last_error, last_error_at, last_error_kind) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (resource) DO UPDATE SET last_error = excluded.last_error, last_error_at = excluded.last_error_at, \
         last_error_kind = excluded.last_error_kind",
        params![resource, error, now_text(), kind],
    )?;
    Ok(())
}

pub fn get(conn: &Connection, resource: &str) -> Result<SyncState> {
    let st = conn
        .query_row(
            "SELECT resource, last_walk_started_at, last_complete_walk_at, row_count, pages, last_duration_ms, \
             last_error, last_error_at, last_error_kind FROM sync_state WHERE resource = ?1",
            [resource],
            |r| {
                Ok(SyncState {
                    resource: r.get(0)?,
                    last_walk_started_at: r.get(1)?,
                    last_complete_walk_at: r.get(2)?,
                    row_count: r.get(3)?,
                    pages: r.get(4)?,
                    last_duration_ms: r.get(5)?,
                    last_error: r.get(6)?,
                    last_error_at: r.get(7)?,
                    last_error_kind: r.get(8)?,
                })
            },
        )
        .optional()?;
    Ok(st.unwrap_or_else(|| SyncState {
        resource: resource.to_string(),
        ..SyncState::default()
    }))
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Conflict {
    pub resource: String,
    pub local_id: Option<i64>,
    pub upstream_id: Option<i64>,
    /// `field`, `deleted_upstream` or `deleted_locally`.
    pub kind: String,
    pub field: Option<String>,
    pub base_value: Option<String>,
    pub local_value: Option<String>,
    pub remote_value: Option<String>,
    pub resolution: String,
}

pub fn record_conflict(conn: &Connection, c: &Conflict) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO conflicts (resource, local_id, upstream_id, kind, field, base_value, local_value, remote_value, \
         resolution, detected_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        c.resource,
        c.local_id,
        c.upstream_id,
        c.kind,
        c.field,
        c.base_value,
        c.local_value,
        c.remote_value,
        c.resolution,
        now_text()
    ])?;
    Ok(())
}

pub fn conflict_count(conn: &Connection, resource: &str) -> Result<i64> {
    Ok(conn.query_row(
        "SELECT count(*) FROM conflicts WHERE resource = ?1",
        [resource],
        |r| r.get(0),
    )?)
}

pub fn recent_conflicts(conn: &Connection, resource: &str, limit: i64) -> Result<Vec<Conflict>> {
    let mut stmt = conn.prepare(
        "SELECT resource, local_id, upstream_id, kind, field, base_value, local_value, remote_value, resolution \
         FROM conflicts WHERE resource = ?1 ORDER BY seq DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![resource, limit], |r| {
        Ok(Conflict {
            resource: r.get(0)?,
            local_id: r.get(1)?,
            upstream_id: r.get(2)?,
            kind: r.get(3)?,
            field: r.get(4)?,
            base_value: r.get(5)?,
            local_value: r.get(6)?,
            remote_value: r.get(7)?,
            resolution: r.get(8)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A recorded conflict with its number and time.
#[derive(Debug, Clone)]
pub struct StoredConflict {
    pub seq: i64,
    pub detected_at: String,
    pub conflict: Conflict,
    /// When `restsync conflicts restore` put the losing value back (once at most).
    pub restored_at: Option<String>,
}

fn stored_conflict(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredConflict> {
    Ok(StoredConflict {
        seq: r.get(0)?,
        detected_at: r.get(1)?,
        conflict: Conflict {
            resource: r.get(2)?,
            local_id: r.get(3)?,
            upstream_id: r.get(4)?,
            kind: r.get(5)?,
            field: r.get(6)?,
            base_value: r.get(7)?,
            local_value: r.get(8)?,
            remote_value: r.get(9)?,
            resolution: r.get(10)?,
        },
        restored_at: r.get(11)?,
    })
}

const CONFLICT_COLUMNS: &str = "seq, detected_at, resource, local_id, upstream_id, kind, field, base_value, \
     local_value, remote_value, resolution, restored_at";

/// Records that conflict `seq` was restored (or, `restored` false, takes that back);
/// false when it already was so (nothing changed).
pub fn mark_conflict_restored(conn: &Connection, seq: i64, restored: bool) -> Result<bool> {
    let changed = match restored {
        true => conn.execute(
            "UPDATE conflicts SET restored_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
             WHERE seq = ?1 AND restored_at IS NULL",
            [seq],
        )?,
        false => conn.execute(
            "UPDATE conflicts SET restored_at = NULL WHERE seq = ?1 AND restored_at IS NOT NULL",
            [seq],
        )?,
    };
    Ok(changed == 1)
}

/// Conflicts, oldest first, of one resource or all, detected at or after `since`.
pub fn conflicts(
    conn: &Connection,
    resource: Option<&str>,
    since: Option<&str>,
) -> Result<Vec<StoredConflict>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {CONFLICT_COLUMNS} FROM conflicts WHERE (?1 IS NULL OR resource = ?1) \
         AND (?2 IS NULL OR detected_at >= ?2) ORDER BY seq"
    ))?;
    let rows = stmt.query_map(params![resource, since], stored_conflict)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn conflict(conn: &Connection, seq: i64) -> Result<Option<StoredConflict>> {
    Ok(conn
        .prepare(&format!(
            "SELECT {CONFLICT_COLUMNS} FROM conflicts WHERE seq = ?1"
        ))?
        .query_row([seq], stored_conflict)
        .optional()?)
}
