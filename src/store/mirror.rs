//! Mirror rows and their base snapshots. SQL is generated once per resource from its
//! column list, so the three resources share one implementation.

use super::tracking::{self, Mark};
use super::{now_text, Result};
use crate::resources::ResourceSpec;
use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection, OptionalExtension, Row};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;

/// A row of a mirror table as the user left it.
#[derive(Debug, Clone, PartialEq)]
pub struct MirrorRow {
    pub local_id: i64,
    pub id: Option<i64>,
    pub values: Vec<Value>,
}

/// The last upstream state of a record known to be in sync.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseRow {
    pub id: i64,
    pub local_id: Option<i64>,
    pub values: Vec<Value>,
    pub hash: i64,
}

/// What the user changed in the mirror since the last sync.
#[derive(Debug, Default)]
pub struct LocalChanges {
    /// Rows without an upstream id.
    pub creates: Vec<MirrorRow>,
    /// Rows whose writable columns differ from their base snapshot.
    pub updates: Vec<(MirrorRow, BaseRow)>,
    /// Base snapshots whose mirror row is gone.
    pub deletes: Vec<BaseRow>,
}

impl LocalChanges {
    pub fn is_empty(&self) -> bool {
        self.creates.is_empty() && self.updates.is_empty() && self.deletes.is_empty()
    }
}

struct TableSql {
    cols: String,
    select_mirror_by_id: String,
    select_mirror_by_local_id: String,
    select_base_by_id: String,
    insert_mirror: String,
    update_mirror: String,
    upsert_base: String,
    select_creates: String,
    select_updates: String,
    select_deletes: String,
}

/// The statements of a resource, built once per specification. Specifications live for
/// the whole process (built-in statics, or leaked by `resources::define`), so their address
/// and table name identify them.
fn sql(spec: &ResourceSpec) -> &'static TableSql {
    type Key = (usize, &'static str);
    static CACHE: Mutex<Vec<(Key, &'static TableSql)>> = Mutex::new(Vec::new());
    let key = (spec as *const ResourceSpec as usize, spec.table);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, sql)) = cache.iter().find(|(k, _)| *k == key) {
        return sql;
    }
    let built: &'static TableSql = Box::leak(Box::new(build_sql(spec)));
    cache.push((key, built));
    built
}

fn build_sql(spec: &ResourceSpec) -> TableSql {
    let (t, b) = (spec.table, spec.base_table);
    let names: Vec<&str> = spec.columns.iter().map(|c| c.name).collect();
    let cols = names.join(", ");
    let m_cols = names
        .iter()
        .map(|c| format!("m.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let b_cols = names
        .iter()
        .map(|c| format!("b.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let n = names.len();
    let placeholders = |from: usize| {
        (from..from + n)
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let assignments = names
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{c} = ?{}", i + 2))
        .collect::<Vec<_>>()
        .join(", ");
    let writable_differs = spec
        .columns
        .iter()
        .filter(|c| c.writable)
        .map(|c| format!("m.{0} IS NOT b.{0}", c.name))
        .collect::<Vec<_>>()
        .join(" OR ");
    // A resource with nothing writable has no local change to find.
    let writable_differs = if writable_differs.is_empty() {
        "0".to_string()
    } else {
        writable_differs
    };
    TableSql {
        select_mirror_by_id: format!("SELECT local_id, id, {cols} FROM {t} WHERE id = ?1"),
        select_mirror_by_local_id: format!("SELECT local_id, id, {cols} FROM {t} WHERE local_id = ?1"),
        select_base_by_id: format!("SELECT id, local_id, hash, {cols} FROM {b} WHERE id = ?1"),
        insert_mirror: format!("INSERT INTO {t} (id, {cols}) VALUES (?1, {})", placeholders(2)),
        update_mirror: format!("UPDATE {t} SET {assignments} WHERE local_id = ?1"),
        upsert_base: format!(
            "INSERT OR REPLACE INTO {b} (id, local_id, raw, hash, synced_at, {cols}) \
             VALUES (?1, ?2, ?3, ?4, ?5, {})",
            placeholders(6)
        ),
        select_creates: format!("SELECT local_id, id, {cols} FROM {t} WHERE id IS NULL ORDER BY local_id"),
        select_updates: format!(
            "SELECT m.local_id, m.id, {m_cols}, b.id, b.local_id, b.hash, {b_cols} \
             FROM {t} m JOIN {b} b ON b.id = m.id WHERE {writable_differs} ORDER BY m.local_id"
        ),
        select_deletes: format!(
            "SELECT b.id, b.local_id, b.hash, {b_cols} FROM {b} b \
             WHERE NOT EXISTS (SELECT 1 FROM {t} m WHERE m.id = b.id) ORDER BY b.id"
        ),
        cols,
    }
}

fn read_values(row: &Row<'_>, from: usize, n: usize) -> rusqlite::Result<Vec<Value>> {
    (from..from + n).map(|i| row.get::<_, Value>(i)).collect()
}

fn mirror_from_row(row: &Row<'_>, n: usize) -> rusqlite::Result<MirrorRow> {
    Ok(MirrorRow {
        local_id: row.get(0)?,
        id: row.get(1)?,
        values: read_values(row, 2, n)?,
    })
}

fn base_from_row(row: &Row<'_>, at: usize, n: usize) -> rusqlite::Result<BaseRow> {
    Ok(BaseRow {
        id: row.get(at)?,
        local_id: row.get(at + 1)?,
        hash: row.get(at + 2)?,
        values: read_values(row, at + 3, n)?,
    })
}

pub fn mirror_by_id(conn: &Connection, spec: &ResourceSpec, id: i64) -> Result<Option<MirrorRow>> {
    let n = spec.columns.len();
    let mut stmt = conn.prepare_cached(&sql(spec).select_mirror_by_id)?;
    Ok(stmt.query_row([id], |r| mirror_from_row(r, n)).optional()?)
}

pub fn mirror_by_local_id(
    conn: &Connection,
    spec: &ResourceSpec,
    local_id: i64,
) -> Result<Option<MirrorRow>> {
    let n = spec.columns.len();
    let mut stmt = conn.prepare_cached(&sql(spec).select_mirror_by_local_id)?;
    Ok(stmt.query_row([local_id], |r| mirror_from_row(r, n)).optional()?)
}

pub fn base_by_id(conn: &Connection, spec: &ResourceSpec, id: i64) -> Result<Option<BaseRow>> {
    let n = spec.columns.len();
    let mut stmt = conn.prepare_cached(&sql(spec).select_base_by_id)?;
    Ok(stmt.query_row([id], |r| base_from_row(r, 0, n)).optional()?)
}

/// Hashes of the base snapshots among `ids`, to skip records upstream did not change.
pub fn base_hashes(conn: &Connection, spec: &ResourceSpec, ids: &[i64]) -> Result<HashMap<i64, i64>> {
    let mut out = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let marks = vec!["?"; chunk.len()].join(",");
        let q = format!("SELECT id, hash FROM {} WHERE id IN ({marks})", spec.base_table);
        let mut stmt = conn.prepare_cached(&q)?;
        let rows = stmt.query_map(params_from_iter(chunk), |r| Ok((r.get(0)?, r.get(1)?)))?;
        for row in rows {
            let (id, hash) = row?;
            out.insert(id, hash);
        }
    }
    Ok(out)
}

/// Which of `ids` have a mirror row (one query per page instead of one per record).
pub fn mirror_ids_present(
    conn: &Connection,
    spec: &ResourceSpec,
    ids: &[i64],
) -> Result<std::collections::HashSet<i64>> {
    let mut out = std::collections::HashSet::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let marks = vec!["?"; chunk.len()].join(",");
        let q = format!("SELECT id FROM {} WHERE id IN ({marks})", spec.table);
        let mut stmt = conn.prepare_cached(&q)?;
        let rows = stmt.query_map(params_from_iter(chunk), |r| r.get(0))?;
        for row in rows {
            out.insert(row?);
        }
    }
    Ok(out)
}

pub fn insert_mirror(
    conn: &Connection,
    spec: &ResourceSpec,
    id: Option<i64>,
    values: &[Value],
) -> Result<i64> {
    let mut stmt = conn.prepare_cached(&sql(spec).insert_mirror)?;
    let id = id.map_or(Value::Null, Value::Integer);
    stmt.execute(params_from_iter(std::iter::once(&id).chain(values)))?;
    Ok(conn.last_insert_rowid())
}

pub fn update_mirror(conn: &Connection, spec: &ResourceSpec, local_id: i64, values: &[Value]) -> Result<()> {
    let mut stmt = conn.prepare_cached(&sql(spec).update_mirror)?;
    let local_id = Value::Integer(local_id);
    stmt.execute(params_from_iter(std::iter::once(&local_id).chain(values)))?;
    Ok(())
}

pub fn set_mirror_id(conn: &Connection, spec: &ResourceSpec, local_id: i64, id: Option<i64>) -> Result<()> {
    let q = format!("UPDATE {} SET id = ?2 WHERE local_id = ?1", spec.table);
    conn.prepare_cached(&q)?
        .execute(rusqlite::params![local_id, id])?;
    Ok(())
}

pub fn delete_mirror(conn: &Connection, spec: &ResourceSpec, local_id: i64) -> Result<()> {
    let q = format!("DELETE FROM {} WHERE local_id = ?1", spec.table);
    conn.prepare_cached(&q)?.execute([local_id])?;
    Ok(())
}

pub fn upsert_base(
    conn: &Connection,
    spec: &ResourceSpec,
    id: i64,
    local_id: Option<i64>,
    values: &[Value],
    raw: &str,
    hash: i64,
) -> Result<()> {
    upsert_base_at(conn, spec, id, local_id, values, raw, hash, &now_text())
}

/// [`upsert_base`] with the sync time given (one timestamp per page, not per row).
#[allow(clippy::too_many_arguments)]
pub fn upsert_base_at(
    conn: &Connection,
    spec: &ResourceSpec,
    id: i64,
    local_id: Option<i64>,
    values: &[Value],
    raw: &str,
    hash: i64,
    synced_at: &str,
) -> Result<()> {
    let mut stmt = conn.prepare_cached(&sql(spec).upsert_base)?;
    let head = [
        Value::Integer(id),
        local_id.map_or(Value::Null, Value::Integer),
        Value::Text(raw.to_string()),
        Value::Integer(hash),
        Value::Text(synced_at.to_string()),
    ];
    stmt.execute(params_from_iter(head.iter().chain(values)))?;
    Ok(())
}

pub fn delete_base(conn: &Connection, spec: &ResourceSpec, id: i64) -> Result<()> {
    let q = format!("DELETE FROM {} WHERE id = ?1", spec.base_table);
    conn.prepare_cached(&q)?.execute([id])?;
    Ok(())
}

pub fn count_mirror(conn: &Connection, spec: &ResourceSpec) -> Result<i64> {
    let q = format!("SELECT count(*) FROM {}", spec.table);
    Ok(conn.query_row(&q, [], |r| r.get(0))?)
}

/// Rows naming an upstream id that no base snapshot knows: `(local_id, id)`. After a
/// complete walk these are ids upstream never gave (typed in by hand). A row that held a
/// known record is left out: its id was edited, which the push refuses with its own advice.
///
/// Such rows come only from edits, which the triggers mark (and the push pass keeps those
/// marks), so only marked rows are looked at: no scan of the mirror after every walk.
pub fn unknown_ids(conn: &Connection, spec: &ResourceSpec) -> Result<Vec<(i64, i64)>> {
    unknown_ids_where(
        conn,
        spec,
        "m.local_id IN (SELECT key FROM changed_rows WHERE resource = ?1 AND kind = 'local_id')",
    )
}

/// [`unknown_ids`] by a scan of the whole mirror (the daily full check, which marks them).
fn unknown_ids_scan(conn: &Connection, spec: &ResourceSpec) -> Result<Vec<(i64, i64)>> {
    unknown_ids_where(conn, spec, "?1 IS NOT NULL")
}

fn unknown_ids_where(conn: &Connection, spec: &ResourceSpec, rows: &str) -> Result<Vec<(i64, i64)>> {
    let q = format!(
        "SELECT m.local_id, m.id FROM {t} m WHERE {rows} AND m.id IS NOT NULL \
         AND NOT EXISTS (SELECT 1 FROM {b} b WHERE b.id = m.id) \
         AND NOT EXISTS (SELECT 1 FROM {b} b WHERE b.local_id = m.local_id) ORDER BY m.local_id",
        t = spec.table,
        b = spec.base_table
    );
    let rows = conn
        .prepare_cached(&q)?
        .query_map([spec.table], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

/// Whether any base snapshot exists (without counting them all).
pub fn has_base(conn: &Connection, spec: &ResourceSpec) -> Result<bool> {
    let q = format!("SELECT EXISTS (SELECT 1 FROM {})", spec.base_table);
    Ok(conn.query_row(&q, [], |r| r.get(0))?)
}

pub fn count_base(conn: &Connection, spec: &ResourceSpec) -> Result<i64> {
    let q = format!("SELECT count(*) FROM {}", spec.base_table);
    Ok(conn.query_row(&q, [], |r| r.get(0))?)
}

/// Everything the user changed locally, found by comparing the mirror with the base.
pub fn local_changes(conn: &Connection, spec: &ResourceSpec) -> Result<LocalChanges> {
    let s = sql(spec);
    let n = spec.columns.len();
    let creates = conn
        .prepare_cached(&s.select_creates)?
        .query_map([], |r| mirror_from_row(r, n))?
        .collect::<rusqlite::Result<_>>()?;
    let updates = conn
        .prepare_cached(&s.select_updates)?
        .query_map([], |r| Ok((mirror_from_row(r, n)?, base_from_row(r, 2 + n, n)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let deletes = conn
        .prepare_cached(&s.select_deletes)?
        .query_map([], |r| base_from_row(r, 0, n))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(LocalChanges {
        creates,
        updates,
        deletes,
    })
}

/// The local changes among marked rows, and which rows and ids were looked at (a journal
/// entry about a row that was looked at and shows no change is stale).
#[derive(Debug, Default)]
pub struct Checked {
    pub changes: LocalChanges,
    pub local_ids: HashSet<i64>,
    pub ids: HashSet<i64>,
    /// Rows naming an id no base snapshot knows (typed in by hand): their marks are kept,
    /// so [`unknown_ids`] finds them without a scan of the mirror.
    pub unknown: Vec<i64>,
}

/// Compares the marked rows with their base snapshots: O(marks) point lookups, the same
/// answer [`local_changes`] gives for those rows.
pub fn changes_of(conn: &Connection, spec: &ResourceSpec, marks: &[Mark]) -> Result<Checked> {
    let mut checked = Checked::default();
    let mut rows = BTreeSet::new();
    for m in marks {
        match *m {
            Mark::Row(local_id) => {
                rows.insert(local_id);
            }
            Mark::Upstream(id) => {
                checked.ids.insert(id);
                // Whichever row holds the id now is worth a look too.
                if let Some(row) = mirror_by_id(conn, spec, id)? {
                    rows.insert(row.local_id);
                }
            }
        }
    }
    for local_id in rows {
        checked.local_ids.insert(local_id);
        let Some(row) = mirror_by_local_id(conn, spec, local_id)? else {
            continue;
        };
        match row.id {
            None => checked.changes.creates.push(row),
            Some(id) => {
                checked.ids.insert(id);
                match base_by_id(conn, spec, id)? {
                    Some(base) => {
                        if !spec.changed_writable(&row.values, &base.values).is_empty() {
                            checked.changes.updates.push((row, base));
                        }
                    }
                    None => checked.unknown.push(local_id),
                }
            }
        }
    }
    let mut ids: Vec<i64> = checked.ids.iter().copied().collect();
    ids.sort_unstable();
    for id in ids {
        if let Some(base) = base_by_id(conn, spec, id)? {
            if mirror_by_id(conn, spec, id)?.is_none() {
                checked.changes.deletes.push(base);
            }
        }
    }
    Ok(checked)
}

/// After a write of restsync's own (which the triggers do not record): marks the row, or
/// the record whose row is gone, when it now differs from its base, so the next push pass
/// journals what is left to push (a merge that kept a local edit, a delete made while a
/// create was in flight).
pub fn mark_if_changed(
    conn: &Connection,
    spec: &ResourceSpec,
    local_id: Option<i64>,
    id: Option<i64>,
) -> Result<()> {
    let marks: Vec<Mark> = local_id
        .map(Mark::Row)
        .into_iter()
        .chain(id.map(Mark::Upstream))
        .collect();
    let checked = changes_of(conn, spec, &marks)?;
    let c = &checked.changes;
    for m in c.creates.iter().chain(c.updates.iter().map(|(m, _)| m)) {
        tracking::mark(conn, spec.table, Mark::Row(m.local_id))?;
    }
    for b in &c.deletes {
        tracking::mark(conn, spec.table, Mark::Upstream(b.id))?;
    }
    Ok(())
}

/// The safety net behind the triggers: compares every row with its base and marks each
/// change found. Returns how many of those were not marked already (edits the triggers
/// missed: made while they were dropped, or before the upgrade that added them).
pub fn mark_all_changes(conn: &Connection, spec: &ResourceSpec) -> Result<usize> {
    let changes = local_changes(conn, spec)?;
    let marks = changes
        .creates
        .iter()
        .map(|m| Mark::Row(m.local_id))
        .chain(changes.updates.iter().map(|(m, _)| Mark::Row(m.local_id)))
        .chain(changes.deletes.iter().map(|b| Mark::Upstream(b.id)))
        .chain(
            unknown_ids_scan(conn, spec)?
                .into_iter()
                .map(|(l, _)| Mark::Row(l)),
        );
    let mut missed = 0;
    for m in marks {
        if tracking::mark(conn, spec.table, m)? {
            missed += 1;
        }
    }
    Ok(missed)
}

/// Column list of a resource, for queries built elsewhere in the store.
pub fn column_list(spec: &ResourceSpec) -> &'static str {
    &sql(spec).cols
}

/// Ids seen during the current walk live in a per-connection temporary table, so tracking
/// them costs no write to the database file and no memory that grows with the resource.
pub fn begin_walk(conn: &Connection, spec: &ResourceSpec) -> Result<()> {
    conn.execute_batch(&format!(
        "CREATE TEMP TABLE IF NOT EXISTS seen_{t} (id INTEGER PRIMARY KEY); DELETE FROM temp.seen_{t};",
        t = spec.table
    ))?;
    Ok(())
}

/// Records ids as seen; returns how many of them were already seen in this walk.
pub fn mark_seen(conn: &Connection, spec: &ResourceSpec, ids: &[i64]) -> Result<usize> {
    if ids.is_empty() {
        return Ok(0);
    }
    // One statement per page: the ids go in as one JSON array.
    let q = format!(
        "INSERT OR IGNORE INTO temp.seen_{} (id) SELECT value FROM json_each(?1)",
        spec.table
    );
    let list = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
    let inserted = conn.prepare_cached(&q)?.execute([list])?;
    Ok(ids.len() - inserted)
}

pub fn seen_count(conn: &Connection, spec: &ResourceSpec) -> Result<i64> {
    let q = format!("SELECT count(*) FROM temp.seen_{}", spec.table);
    Ok(conn.query_row(&q, [], |r| r.get(0))?)
}

/// Base snapshots not seen in the walk: candidates for removal from the mirror.
pub fn unseen_base(conn: &Connection, spec: &ResourceSpec) -> Result<Vec<i64>> {
    let q = format!(
        "SELECT b.id FROM {b} b WHERE NOT EXISTS (SELECT 1 FROM temp.seen_{t} s WHERE s.id = b.id) ORDER BY b.id",
        b = spec.base_table,
        t = spec.table
    );
    let ids = conn
        .prepare(&q)?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(ids)
}

/// Upstream ids already mapped to a mirror row or base snapshot (not available for adoption).
pub fn is_mapped(conn: &Connection, spec: &ResourceSpec, id: i64) -> Result<bool> {
    let q = format!(
        "SELECT EXISTS(SELECT 1 FROM {t} WHERE id = ?1) OR EXISTS(SELECT 1 FROM {b} WHERE id = ?1)",
        t = spec.table,
        b = spec.base_table
    );
    Ok(conn.prepare_cached(&q)?.query_row([id], |r| r.get(0))?)
}

/// Puts a record's mirror row back to its base snapshot (re-inserting it if deleted).
/// How the row that held a record had its `id` edited by hand, if it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdEdit {
    /// The row's id was typed over (with a value no other row's record has) or cleared
    /// with nothing else changed: the same row, its id edited.
    Edited { local_id: i64, now: Option<i64> },
    /// The row now holds `other`, the record of row `owner`, which is gone from the mirror:
    /// this row's id was changed to it, or row `owner` was moved onto this one.
    TakenOver { local_id: i64, other: i64, owner: i64 },
}

/// Whether the record `base` names lost its row to an id edit: the row it was mirrored
/// in is still there under another id (or none). A row whose id was cleared together
/// with other changes counts as a new row that reused the local_id, not an edit.
pub fn id_edit(conn: &Connection, spec: &ResourceSpec, base: &BaseRow) -> Result<Option<IdEdit>> {
    let Some(local_id) = base.local_id else {
        return Ok(None);
    };
    let Some(row) = mirror_by_local_id(conn, spec, local_id)? else {
        // The row may have moved to another local_id in the same UPDATE that edited its id.
        return match tracking::row_edited_from(conn, spec.table, base.id)? {
            Some(moved) if moved != local_id => id_edit(
                conn,
                spec,
                &BaseRow {
                    local_id: Some(moved),
                    ..base.clone()
                },
            ),
            _ => Ok(None),
        };
    };
    if row.id == Some(base.id) {
        return Ok(None);
    }
    if let Some(other) = row.id {
        return Ok(match base_by_id(conn, spec, other)?.and_then(|o| o.local_id) {
            // The row is `other`'s own: the local_id was freed by deleting this record's
            // row and given by SQLite to a new row since created upstream. This record
            // lost its row (a delete); nobody edited an id.
            Some(owner) if owner == local_id => None,
            Some(owner) => Some(IdEdit::TakenOver {
                local_id,
                other,
                owner,
            }),
            None => Some(IdEdit::Edited {
                local_id,
                now: row.id,
            }),
        });
    }
    // Cleared by an UPDATE (whatever else it changed), or, for a row cleared before that
    // was recorded, with nothing else changed: the same row. Otherwise a row deleted and
    // inserted again that SQLite gave the old local_id: a new row.
    let cleared = super::tracking::id_edited(conn, spec.table, local_id)?
        || spec.changed_writable(&row.values, &base.values).is_empty();
    Ok(cleared.then_some(IdEdit::Edited { local_id, now: None }))
}

/// Whether upstream's record `base`/`local` are about is held by an id edit: its row's id
/// was edited (typed over, cleared, or given to another row), or the row now holding its
/// id had its own id edited into it. A walk merges nothing into such rows until the id is
/// put back: the row may be another record's, and merging would write one record's values
/// into another's row.
pub fn held_by_id_edit(
    conn: &Connection,
    spec: &ResourceSpec,
    base: Option<&BaseRow>,
    local: Option<&MirrorRow>,
) -> Result<bool> {
    if let Some(b) = base {
        if id_edit(conn, spec, b)?.is_some() {
            return Ok(true);
        }
        if let Some(l) = local {
            if b.local_id != Some(l.local_id) && tracking::id_edited(conn, spec.table, l.local_id)? {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Puts a record's row back as upstream last had it (giving up a local edit or delete).
/// A row whose id was edited by hand gets its id back in place, so no second row (and no
/// create of a copy) appears; a row gone from the mirror is inserted again.
pub fn restore_from_base(conn: &Connection, spec: &ResourceSpec, id: i64) -> Result<()> {
    let Some(base) = base_by_id(conn, spec, id)? else {
        return Ok(());
    };
    let edited = match id_edit(conn, spec, &base)? {
        Some(IdEdit::Edited { local_id, .. }) => Some(local_id),
        _ => None,
    };
    match (mirror_by_id(conn, spec, id)?, edited) {
        (Some(row), _) => update_mirror(conn, spec, row.local_id, &base.values)?,
        (None, Some(local_id)) => {
            set_mirror_id(conn, spec, local_id, Some(id))?;
            update_mirror(conn, spec, local_id, &base.values)?;
        }
        (None, None) => {
            // The base follows the row's new local_id, so the row is not later taken for
            // another row's record.
            let local_id = insert_mirror(conn, spec, Some(id), &base.values)?;
            let q = format!("UPDATE {} SET local_id = ?2 WHERE id = ?1", spec.base_table);
            conn.prepare_cached(&q)?
                .execute(rusqlite::params![id, local_id])?;
        }
    }
    Ok(())
}

/// When a record's base snapshot was last written.
pub fn base_synced_at(conn: &Connection, spec: &ResourceSpec, id: i64) -> Result<Option<String>> {
    let q = format!("SELECT synced_at FROM {} WHERE id = ?1", spec.base_table);
    Ok(conn
        .prepare_cached(&q)?
        .query_row([id], |r| r.get(0))
        .optional()?)
}
