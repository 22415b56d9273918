//! Mirror and base tables of resources defined in the configuration: created from the
//! definition on start-up, widened when a definition adds columns, and never narrowed.
//!
//! `resource_definitions` remembers the upstream, path and columns each table was made
//! with. A definition that adds columns at the end gets them on both tables, filled from
//! each record's stored raw JSON (no walk needed); any other change to the stored shape
//! is refused with what to do, so no mirror data is ever dropped by a config edit.

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};

use super::{now_text, tracking, Result, StoreError};
use crate::resources::{ResourceKind, ResourceSpec};

/// What a defined table was created with: the part of a definition that shapes storage.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Stored {
    upstream: String,
    path: String,
    columns: Vec<StoredColumn>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct StoredColumn {
    name: String,
    #[serde(rename = "type")]
    ty: String,
    /// Where its values are read in a record (the dot path).
    #[serde(default)]
    from: Option<String>,
}

impl Stored {
    fn of(spec: &ResourceSpec) -> Stored {
        Stored {
            upstream: spec.upstream.as_str().to_string(),
            path: spec.path.to_string(),
            columns: spec
                .columns
                .iter()
                .map(|c| StoredColumn {
                    name: c.name.to_string(),
                    ty: c.ty.as_str().to_string(),
                    from: Some(c.read_from.dotted()),
                })
                .collect(),
        }
    }
}

fn defined_tables_known(conn: &Connection) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'resource_definitions'")?
        .exists([])
}

/// Names of the defined tables this database holds.
pub(crate) fn defined_tables(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    if !defined_tables_known(conn)? {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare_cached("SELECT name FROM resource_definitions ORDER BY name")?;
    let names = stmt.query_map([], |r| r.get(0))?.collect();
    names
}

/// Makes the database hold every defined resource of `kinds` as defined (built-ins are
/// in the schema already). One transaction per resource.
pub fn ensure_all(store: &mut super::Store, kinds: &[ResourceKind]) -> Result<()> {
    for kind in kinds.iter().filter(|k| !k.is_built_in()) {
        store.write(|tx| ensure(tx, kind.spec()))?;
    }
    for (table, waiting) in left_out(store.conn(), kinds)? {
        if waiting > 0 {
            tracing::warn!(resource = %table, changes = waiting,
                "this database mirrors a resource the configuration no longer defines or enables; its local changes wait until it is back");
        }
    }
    Ok(())
}

/// Defined tables this database holds that `kinds` leaves out (their definition was
/// removed from the config or disabled), with the local changes waiting in each: those are
/// not sent until the definition is back.
pub fn left_out(conn: &Connection, kinds: &[ResourceKind]) -> Result<Vec<(String, i64)>> {
    let mut out = Vec::new();
    for table in defined_tables(conn)? {
        if kinds.iter().any(|k| k.name() == table) {
            continue;
        }
        let waiting: i64 = conn.query_row(
            "SELECT (SELECT count(*) FROM journal WHERE resource = ?1 AND state IN ('pending', 'in_flight', 'failed')) \
                  + (SELECT count(*) FROM changed_rows WHERE resource = ?1)",
            [&table],
            |r| r.get(0),
        )?;
        out.push((table, waiting));
    }
    Ok(out)
}

fn refuse(spec: &ResourceSpec, message: String) -> StoreError {
    StoreError::Definition {
        resource: spec.table.to_string(),
        message,
    }
}

/// What start-up will do to a defined resource's tables.
#[derive(Debug, PartialEq)]
pub enum Change {
    /// Tables as defined already.
    None,
    /// Tables are created.
    Create,
    /// The columns after the first `existing` are added.
    Widen { existing: usize },
}

impl Change {
    /// The columns a widening adds (none otherwise).
    pub fn added(&self, kind: ResourceKind) -> Vec<&'static str> {
        match self {
            Change::Widen { existing } => kind.spec().columns[*existing..].iter().map(|c| c.name).collect(),
            _ => Vec::new(),
        }
    }
}

/// What start-up would do to the tables of each defined resource of `kinds`, without
/// doing it: the refusal a definition would meet, or the changes. Used by `restsync check`.
pub fn preview(conn: &Connection, kinds: &[ResourceKind]) -> Result<Vec<(ResourceKind, Change)>> {
    let mut out = Vec::new();
    for kind in kinds.iter().filter(|k| !k.is_built_in()) {
        out.push((*kind, change_for(conn, kind.spec())?));
    }
    Ok(out)
}

fn ensure(tx: &Transaction<'_>, spec: &ResourceSpec) -> Result<()> {
    match change_for(tx, spec)? {
        Change::None => Ok(()),
        Change::Create => create(tx, spec, &Stored::of(spec)),
        Change::Widen { existing } => widen(tx, spec, existing, &Stored::of(spec)),
    }
}

fn change_for(conn: &Connection, spec: &ResourceSpec) -> Result<Change> {
    let wanted = Stored::of(spec);
    // A database from before definitions (schema 3 or older) holds none yet.
    if !defined_tables_known(conn)? {
        return Ok(Change::Create);
    }
    let stored: Option<String> = conn
        .query_row(
            "SELECT definition FROM resource_definitions WHERE name = ?1",
            [spec.table],
            |r| r.get(0),
        )
        .optional()?;
    let Some(stored) = stored else {
        for table in [spec.table, spec.base_table] {
            let taken: bool = conn
                .prepare_cached("SELECT 1 FROM sqlite_master WHERE name = ?1")?
                .exists([table])?;
            if taken {
                return Err(refuse(
                    spec,
                    format!(
                        "the database already has a table or index named `{table}` that restsync did not create \
                         for this resource; name the resource differently (the section name is the table name)"
                    ),
                ));
            }
        }
        return Ok(Change::Create);
    };
    let stored: Stored = serde_json::from_str(&stored).map_err(|e| {
        refuse(
            spec,
            format!("the stored definition in resource_definitions cannot be read ({e})"),
        )
    })?;
    if stored == wanted {
        return Ok(Change::None);
    }
    let start_over = format!(
        "restsync never drops mirror data for a config change. Put the definition back, or give the new \
         definition another name; to start this resource over, stop restsync and run \
         `DROP TABLE {t}; DROP TABLE {t}_base; DELETE FROM resource_definitions WHERE name = '{t}';` \
         (after keeping what you need)",
        t = spec.table
    );
    if stored.upstream != wanted.upstream || stored.path != wanted.path {
        return Err(refuse(
            spec,
            format!(
                "the mirror table `{}` holds records of {} {}, but the definition now says {} {}. {start_over}",
                spec.table, stored.upstream, stored.path, wanted.upstream, wanted.path
            ),
        ));
    }
    for (i, old) in stored.columns.iter().enumerate() {
        match wanted.columns.get(i) {
            Some(new) if new == old => {}
            Some(new) if new.name == old.name && new.ty == old.ty => {
                // Same column read from another place: its stored values came from the
                // old one, and would stay until each record changes upstream.
                if let (Some(was), Some(now)) = (&old.from, &new.from) {
                    return Err(refuse(
                        spec,
                        format!(
                            "columns: `{}` was read from {was:?} and the definition now says {now:?}; its values came from \
                             the old place. Put `from` back, or add a new column at the end that reads {now:?}. {start_over}",
                            old.name
                        ),
                    ));
                }
            }
            Some(new) if new.name == old.name => {
                return Err(refuse(
                    spec,
                    format!(
                        "columns: `{}` was created as {} and is now {}; a column's type cannot change. {start_over}",
                        old.name, old.ty, new.ty
                    ),
                ))
            }
            _ => {
                let now = wanted.columns.iter().position(|c| c.name == old.name);
                let what = match now {
                    Some(_) => format!("`{}` moved; new columns go at the end, after the existing ones", old.name),
                    None => format!("`{}` ({}) was removed or renamed", old.name, old.ty),
                };
                return Err(refuse(spec, format!("columns: {what}. {start_over}")));
            }
        }
    }
    Ok(Change::Widen {
        existing: stored.columns.len(),
    })
}

fn column_defs(spec: &ResourceSpec) -> String {
    spec.columns
        .iter()
        .map(|c| format!(",\n    {} {}", c.name, c.ty.as_str().to_uppercase()))
        .collect()
}

fn create(tx: &Transaction<'_>, spec: &ResourceSpec, wanted: &Stored) -> Result<()> {
    let cols = column_defs(spec);
    tx.execute_batch(&format!(
        "CREATE TABLE {t} (\n    local_id INTEGER PRIMARY KEY,\n    id INTEGER UNIQUE{cols}\n);\n\
         CREATE TABLE {b} (\n    id INTEGER PRIMARY KEY,\n    local_id INTEGER{cols},\n    \
         raw TEXT NOT NULL,\n    hash INTEGER NOT NULL,\n    synced_at TEXT NOT NULL\n);",
        t = spec.table,
        b = spec.base_table
    ))?;
    tracking::create_triggers(tx, spec.table)?;
    let now = now_text();
    tx.execute(
        "INSERT INTO resource_definitions (name, definition, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)",
        params![spec.table, to_json(wanted), now],
    )?;
    tracing::info!(
        resource = spec.table,
        "created the mirror table of a defined resource"
    );
    Ok(())
}

/// Adds the columns after the first `existing` to both tables and fills them from each
/// record's raw JSON: the base gets upstream's value, and so does the mirror row (a value
/// nobody could have edited locally yet). Triggers are off on restsync's connection, so
/// nothing here is taken for a local edit.
fn widen(tx: &Transaction<'_>, spec: &ResourceSpec, existing: usize, wanted: &Stored) -> Result<()> {
    let added = &spec.columns[existing..];
    if added.is_empty() {
        tx.execute(
            "UPDATE resource_definitions SET definition = ?2, updated_at = ?3 WHERE name = ?1",
            params![spec.table, to_json(wanted), now_text()],
        )?;
        return Ok(());
    }
    for col in added {
        for table in [spec.table, spec.base_table] {
            tx.execute_batch(&format!(
                "ALTER TABLE {table} ADD COLUMN {} {}",
                col.name,
                col.ty.as_str().to_uppercase()
            ))?;
        }
    }
    let mut filled = 0usize;
    let mut unreadable = 0usize;
    {
        let mut rows = tx.prepare(&format!("SELECT id, local_id, raw FROM {}", spec.base_table))?;
        let sets: String = added
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{} = ?{}", c.name, i + 2))
            .collect::<Vec<_>>()
            .join(", ");
        let mut base_update = tx.prepare(&format!("UPDATE {} SET {sets} WHERE id = ?1", spec.base_table))?;
        let mut mirror_update =
            tx.prepare(&format!("UPDATE {} SET {sets} WHERE local_id = ?1", spec.table))?;
        let mut it = rows.query([])?;
        while let Some(row) = it.next()? {
            let (id, local_id, raw): (i64, Option<i64>, String) = (row.get(0)?, row.get(1)?, row.get(2)?);
            let parsed = serde_json::from_str(&raw)
                .ok()
                .and_then(|json| spec.parse(&json, None).ok());
            let Some(record) = parsed else {
                unreadable += 1;
                continue;
            };
            let values = &record.values[existing..];
            let mut args: Vec<&dyn rusqlite::ToSql> = vec![&id];
            args.extend(values.iter().map(|v| v as &dyn rusqlite::ToSql));
            base_update.execute(args.as_slice())?;
            if let Some(local_id) = local_id {
                args[0] = &local_id;
                mirror_update.execute(args.as_slice())?;
            }
            filled += 1;
        }
    }
    let widened = widen_journal(tx, spec, existing)?;
    tx.execute(
        "UPDATE resource_definitions SET definition = ?2, updated_at = ?3 WHERE name = ?1",
        params![spec.table, to_json(wanted), now_text()],
    )?;
    if widened > 0 {
        tracing::info!(
            resource = spec.table,
            entries = widened,
            "journal entries waiting to be sent now carry the new columns"
        );
    }
    let names: Vec<&str> = added.iter().map(|c| c.name).collect();
    tracing::info!(resource = spec.table, columns = ?names, records = filled,
        "added columns to a defined resource, filled from the stored upstream records");
    if unreadable > 0 {
        tracing::warn!(
            resource = spec.table,
            records = unreadable,
            "some stored records could not be read for the new columns; the next walk fills them"
        );
    }
    Ok(())
}

/// Entries still to be sent hold the row's values as of their journaling, one per column:
/// they get the new columns' values (the row's, else its base's), so they read as the
/// same change under the wider definition rather than as a different or corrupt one.
fn widen_journal(tx: &Transaction<'_>, spec: &ResourceSpec, existing: usize) -> Result<usize> {
    let added: Vec<&str> = spec.columns[existing..].iter().map(|c| c.name).collect();
    let cols = added.join(", ");
    let entries: Vec<(i64, Option<i64>, Option<i64>, String)> = {
        let mut stmt = tx.prepare(
            "SELECT seq, local_id, upstream_id, row_values FROM journal \
             WHERE resource = ?1 AND state IN ('pending', 'in_flight', 'failed') AND row_values IS NOT NULL",
        )?;
        let rows = stmt.query_map([spec.table], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut from_mirror = tx.prepare(&format!("SELECT {cols} FROM {} WHERE local_id = ?1", spec.table))?;
    let mut from_base = tx.prepare(&format!("SELECT {cols} FROM {} WHERE id = ?1", spec.base_table))?;
    let read = |row: &rusqlite::Row<'_>| -> rusqlite::Result<Vec<rusqlite::types::Value>> {
        (0..added.len()).map(|i| row.get(i)).collect()
    };
    let mut widened = 0;
    for (seq, local_id, upstream_id, text) in entries {
        let Ok(mut values) = serde_json::from_str::<Vec<serde_json::Value>>(&text) else {
            continue;
        };
        if values.len() != existing {
            continue;
        }
        let mut extra = None;
        if let Some(l) = local_id {
            extra = from_mirror.query_row([l], read).optional()?;
        }
        if extra.is_none() {
            if let Some(id) = upstream_id {
                extra = from_base.query_row([id], read).optional()?;
            }
        }
        let extra = extra.unwrap_or_else(|| vec![rusqlite::types::Value::Null; added.len()]);
        values.extend(extra.iter().map(crate::resources::value_to_json));
        tx.execute(
            "UPDATE journal SET row_values = ?2 WHERE seq = ?1",
            params![seq, serde_json::Value::Array(values).to_string()],
        )?;
        widened += 1;
    }
    Ok(widened)
}

fn to_json(stored: &Stored) -> String {
    serde_json::to_string(stored).unwrap_or_default()
}

#[cfg(test)]
mod tests;
