//! Change tracking: which mirror rows were edited since the last push pass.
//!
//! Triggers ([`install_triggers`]) record every edit of a mirror table in `changed_rows`,
//! in the edit's own transaction, whoever makes it. restsync's own connections run with
//! triggers disabled ([`own_writes_untracked`]), so its writes record nothing; where they
//! leave a row differing from its base (a merge that kept a local edit, a row deleted
//! while its create was in flight), they [`mark`] it explicitly. A mark is a hint
//! to look, never a change in itself: the push pass compares the row with its base, and a
//! row edited and edited back produces no request.

use super::Result;
use rusqlite::{params, Connection, OptionalExtension};

/// One recorded edit: what to compare with the base snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mark {
    /// A mirror row by `local_id` (inserted, updated or deleted).
    Row(i64),
    /// An upstream id whose mirror row was deleted or lost that id.
    Upstream(i64),
}

impl Mark {
    fn columns(self) -> (&'static str, i64) {
        match self {
            Mark::Row(l) => ("local_id", l),
            Mark::Upstream(id) => ("id", id),
        }
    }

    fn from_columns(kind: &str, key: i64) -> Option<Mark> {
        match kind {
            "local_id" => Some(Mark::Row(key)),
            "id" => Some(Mark::Upstream(key)),
            _ => None,
        }
    }
}

/// SQL that marks `key` (an expression) of `kind` unless it is marked already. No
/// `INSERT OR IGNORE`: an edit's own conflict clause (`UPDATE OR ABORT`, an upsert)
/// overrides a trigger's, and the edit would fail on the duplicate mark.
fn mark_sql(table: &str, kind: &str, key: &str) -> String {
    format!(
        "INSERT INTO changed_rows (resource, kind, key) SELECT '{table}', '{kind}', {key} \
         WHERE {key} IS NOT NULL AND NOT EXISTS \
         (SELECT 1 FROM changed_rows WHERE resource = '{table}' AND kind = '{kind}' AND key = {key});"
    )
}

/// SQL that marks the rows of `table` matching `condition` (on alias `d`): rows an
/// `OR REPLACE` is about to delete, which fires no delete trigger.
fn mark_displaced_sql(table: &str, condition: &str) -> String {
    let mut out = String::new();
    for (kind, column) in [("id", "d.id"), ("local_id", "d.local_id")] {
        out.push_str(&format!(
            "INSERT INTO changed_rows (resource, kind, key) SELECT '{table}', '{kind}', {column} FROM {table} d \
             WHERE ({condition}) AND {column} IS NOT NULL AND NOT EXISTS \
             (SELECT 1 FROM changed_rows c WHERE c.resource = '{table}' AND c.kind = '{kind}' AND c.key = {column});\n"
        ));
    }
    out
}

/// SQL that remembers the updated row as one whose id was edited (it had one, and it is
/// another or none now).
fn remember_edited_sql(table: &str) -> String {
    format!(
        "INSERT INTO edited_ids (resource, local_id, old_id) SELECT '{table}', NEW.local_id, OLD.id \
         WHERE OLD.id IS NOT NULL AND NEW.id IS NOT OLD.id AND NOT EXISTS \
         (SELECT 1 FROM edited_ids WHERE resource = '{table}' AND local_id = NEW.local_id);"
    )
}

/// SQL that forgets the id edit of the row `local_id` (an expression) when `condition` holds.
fn forget_edited_sql(table: &str, local_id: &str, condition: &str) -> String {
    format!("DELETE FROM edited_ids WHERE resource = '{table}' AND local_id = {local_id} AND {condition};")
}

/// The tracking triggers of one mirror table: `(name, CREATE TRIGGER statement)`, each
/// statement exactly as SQLite keeps it in `sqlite_master`, so a changed one is noticed.
fn triggers(table: &str) -> Vec<(String, String)> {
    let bump = "UPDATE change_tracking SET edits = edits + 1;";
    let t = table;
    // `id` is upstream's integer (or NULL for a row to create): anything else is refused at
    // the edit, naming the column, rather than found later by a sync that cannot read it.
    let integer_id = format!(
        "WHEN NEW.id IS NOT NULL AND typeof(NEW.id) <> 'integer'\nBEGIN\n\
         SELECT RAISE(ABORT, '{t}.id must be an integer (upstream''s id) or NULL (a new row)');\nEND"
    );
    vec![
        (
            format!("{t}_id_integer"),
            format!("CREATE TRIGGER {t}_id_integer BEFORE INSERT ON {t}\n{integer_id}"),
        ),
        (
            format!("{t}_id_integer_update"),
            format!("CREATE TRIGGER {t}_id_integer_update BEFORE UPDATE OF id ON {t}\n{integer_id}"),
        ),
        (
            format!("{t}_track_insert"),
            format!(
                "CREATE TRIGGER {t}_track_insert AFTER INSERT ON {t}\nBEGIN\n{}\n{}\n{bump}\nEND",
                mark_sql(t, "local_id", "NEW.local_id"),
                // A new row that took a local_id someone used before has no edited id.
                forget_edited_sql(t, "NEW.local_id", "1")
            ),
        ),
        (
            format!("{t}_track_replace"),
            format!(
                "CREATE TRIGGER {t}_track_replace BEFORE INSERT ON {t}\nBEGIN\n{}END",
                mark_displaced_sql(t, "d.local_id = NEW.local_id OR d.id = NEW.id")
            ),
        ),
        (
            format!("{t}_track_update"),
            format!(
                "CREATE TRIGGER {t}_track_update AFTER UPDATE ON {t}\nBEGIN\n{}\n{}\n{}\n{}\n{}\n{bump}\nEND",
                mark_sql(t, "local_id", "OLD.local_id"),
                mark_sql(t, "local_id", "NEW.local_id"),
                mark_sql(t, "id", "(CASE WHEN OLD.id IS NOT NEW.id THEN OLD.id END)"),
                // The row that had an id and has another or none now: its id was edited.
                remember_edited_sql(t),
                forget_edited_sql(t, "OLD.local_id", "OLD.local_id IS NOT NEW.local_id")
            ),
        ),
        (
            format!("{t}_track_update_replace"),
            format!(
                "CREATE TRIGGER {t}_track_update_replace BEFORE UPDATE ON {t}\n\
                 WHEN NEW.local_id IS NOT OLD.local_id OR NEW.id IS NOT OLD.id\nBEGIN\n{}END",
                mark_displaced_sql(
                    t,
                    "d.local_id IS NOT OLD.local_id AND (d.local_id = NEW.local_id OR d.id = NEW.id)"
                )
            ),
        ),
        (
            format!("{t}_track_delete"),
            format!(
                "CREATE TRIGGER {t}_track_delete AFTER DELETE ON {t}\nBEGIN\n{}\n{}\n{}\n{bump}\nEND",
                mark_sql(t, "local_id", "OLD.local_id"),
                mark_sql(t, "id", "OLD.id"),
                forget_edited_sql(t, "OLD.local_id", "1")
            ),
        ),
    ]
}

/// Installs the tracking triggers of each mirror table, on every start: one someone
/// dropped or changed is put back. When one was missing or different in a database that
/// had them, edits may have gone unrecorded meanwhile: the next push pass compares every
/// row with its base.
/// Installs the triggers of a table created just now (nothing could have been missed).
pub(crate) fn create_triggers(conn: &Connection, table: &str) -> Result<()> {
    for (_, sql) in triggers(table) {
        conn.execute_batch(&format!("{sql};"))?;
    }
    Ok(())
}

pub fn install_triggers(conn: &Connection, tables: &[&str]) -> Result<()> {
    // The counter row the triggers bump (and a daemon watches); someone may have deleted it.
    let restored = conn.execute("INSERT OR IGNORE INTO change_tracking (singleton) VALUES (1)", [])?;
    if restored > 0 {
        tracing::warn!(
            "change_tracking was emptied; restored, and every row is compared with its base on the next push"
        );
    }
    let mut wrong = Vec::new();
    for table in tables {
        for (name, sql) in triggers(table) {
            let stored: Option<String> = conn
                .prepare_cached("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?1")?
                .query_row([&name], |r| r.get(0))
                .optional()?;
            if stored.as_deref() != Some(sql.as_str()) {
                wrong.push((name, sql));
            }
        }
    }
    if wrong.is_empty() {
        return Ok(());
    }
    let tx = conn.unchecked_transaction()?;
    for (name, sql) in &wrong {
        tx.execute_batch(&format!("DROP TRIGGER IF EXISTS {name}; {sql};"))?;
    }
    if full_check_at(&tx)?.is_some() {
        let names: Vec<&str> = wrong.iter().map(|(n, _)| n.as_str()).collect();
        tracing::warn!(triggers = ?names, "change-tracking triggers were missing or altered and are installed again; every row is compared with its base on the next push");
        tx.execute("UPDATE change_tracking SET full_check_at = NULL", [])?;
    }
    tx.commit()?;
    Ok(())
}

/// Turns the tracking triggers off (`true`) or on for this connection only: restsync's
/// own writes are not edits to push. Costs nothing per row, unlike a condition in each
/// trigger, and no other connection is affected.
pub fn own_writes_untracked(conn: &Connection, untracked: bool) -> Result<()> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER,
        !untracked,
    )?;
    Ok(())
}

/// Marks a row for the next push pass, and wakes a running daemon (it watches the count).
/// Returns whether the mark is new.
pub fn mark(conn: &Connection, resource: &str, mark: Mark) -> Result<bool> {
    let (kind, key) = mark.columns();
    let added = conn
        .prepare_cached("INSERT OR IGNORE INTO changed_rows (resource, kind, key) VALUES (?1, ?2, ?3)")?
        .execute(params![resource, kind, key])?;
    if added > 0 {
        note_edit(conn)?;
    }
    Ok(added > 0)
}

/// Whether someone changed the id of the row `local_id` by UPDATE (typed it over or cleared
/// it) since the row was inserted. Stays true when the id is put back: it tells a row
/// cleared by hand from a row inserted without an id, and a row whose id was typed over
/// from a row inserted with it.
pub fn id_edited(conn: &Connection, resource: &str, local_id: i64) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM edited_ids WHERE resource = ?1 AND local_id = ?2")?
        .query_row(params![resource, local_id], |_| Ok(()))
        .optional()?
        .is_some())
}

/// The row whose id someone edited away from `old_id` by UPDATE (even if the same UPDATE
/// gave it another local_id), if any.
pub fn row_edited_from(conn: &Connection, resource: &str, old_id: i64) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT local_id FROM edited_ids WHERE resource = ?1 AND old_id = ?2 LIMIT 1")?
        .query_row(params![resource, old_id], |r| r.get(0))
        .optional()?)
}

/// Tells a running daemon there is work (a person's `journal retry`, say).
pub fn note_edit(conn: &Connection) -> Result<()> {
    conn.prepare_cached("UPDATE change_tracking SET edits = edits + 1")?
        .execute([])?;
    Ok(())
}

/// The edit counter a daemon watches: it moves with every recorded edit, never with
/// restsync's own writes.
pub fn edits(conn: &Connection) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT edits FROM change_tracking")?
        .query_row([], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

/// Up to `limit` marks of a resource after `after` (keyset paging: marks that stay, because
/// their change must wait, are not read again in the same pass).
pub fn marks(conn: &Connection, resource: &str, after: Option<Mark>, limit: usize) -> Result<Vec<Mark>> {
    let (kind, key) = after.map_or(("", i64::MIN), Mark::columns);
    let mut stmt = conn.prepare_cached(
        "SELECT kind, key FROM changed_rows WHERE resource = ?1 AND (kind, key) > (?2, ?3) \
         ORDER BY kind, key LIMIT ?4",
    )?;
    let rows = stmt.query_map(params![resource, kind, key, limit as i64], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (kind, key) = row?;
        out.extend(Mark::from_columns(&kind, key));
    }
    Ok(out)
}

/// Whether a resource has any mark (a cheap test for an idle pass).
pub fn any_marks(conn: &Connection, resource: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT EXISTS(SELECT 1 FROM changed_rows WHERE resource = ?1)")?
        .query_row([resource], |r| r.get(0))?)
}

/// Forgets marks whose change is now in the journal (or that turned out to be no change).
pub fn clear(conn: &Connection, resource: &str, marks: &[Mark]) -> Result<()> {
    let mut stmt =
        conn.prepare_cached("DELETE FROM changed_rows WHERE resource = ?1 AND kind = ?2 AND key = ?3")?;
    for m in marks {
        let (kind, key) = m.columns();
        stmt.execute(params![resource, kind, key])?;
    }
    Ok(())
}

/// Marks rows again whose change must wait (without waking a daemon: nothing new happened).
pub fn keep(conn: &Connection, resource: &str, marks: &[Mark]) -> Result<()> {
    let mut stmt =
        conn.prepare_cached("INSERT OR IGNORE INTO changed_rows (resource, kind, key) VALUES (?1, ?2, ?3)")?;
    for m in marks {
        let (kind, key) = m.columns();
        stmt.execute(params![resource, kind, key])?;
    }
    Ok(())
}

/// When every row was last compared with its base (None: never, or not since the upgrade).
pub fn full_check_at(conn: &Connection) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT full_check_at FROM change_tracking")?
        .query_row([], |r| r.get(0))
        .optional()?
        .flatten())
}

pub fn set_full_check_at(conn: &Connection, at: &str) -> Result<()> {
    conn.prepare_cached("UPDATE change_tracking SET full_check_at = ?1")?
        .execute([at])?;
    Ok(())
}

#[cfg(test)]
mod tests;
