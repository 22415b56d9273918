//! `restsync conflicts`: the conflicts the merge resolved, and `restore`, which puts a
//! losing value back into the mirror as a person's edit, so the next sync pushes it through
//! the normal path (journal, fetch before write, conflict policy).

use super::exit;
use crate::config::Settings;
use crate::resources::{value_to_json, ResourceKind, ResourceSpec};
use crate::store::sync_state::{self, StoredConflict};
use crate::store::{mirror, Store, StoreError};
use rusqlite::types::Value;
use serde_json::Value as Json;

pub fn run(
    settings: &Settings,
    restore: Option<i64>,
    resource: Option<&str>,
    since: Option<&str>,
    json: bool,
) -> i32 {
    if let Some(name) = resource {
        if ResourceKind::from_name(name).is_none() {
            eprintln!(
                "restsync: --resource {name}: no such resource (phone_numbers, addresses, smart_numbers)"
            );
            return exit::USAGE;
        }
    }
    let since = match since.map(humantime::parse_duration).transpose() {
        Ok(d) => d.map(|d| {
            (chrono::Utc::now() - chrono::Duration::from_std(d).unwrap_or_default())
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        }),
        Err(e) => {
            eprintln!("restsync: --since: {e} (for example 30m, 2h, 7d)");
            return exit::USAGE;
        }
    };
    if !settings.database_path.exists() {
        eprintln!(
            "restsync: no database at {} yet; run `restsync sync --once` first",
            settings.database_path.display()
        );
        return exit::FATAL;
    }
    let mut store = match Store::open(&settings.database_path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("restsync: {e}");
            return exit::FATAL;
        }
    };
    let result = match restore {
        Some(seq) => restore_one(&mut store, seq),
        None => list(&store, resource, since.as_deref(), json),
    };
    result.unwrap_or_else(|e| {
        eprintln!("restsync: {e}");
        exit::FATAL
    })
}

fn list(store: &Store, resource: Option<&str>, since: Option<&str>, json: bool) -> Result<i32, StoreError> {
    let found = sync_state::conflicts(store.conn(), resource, since)?;
    if json {
        // Values are stored as JSON text: shown as the JSON values they are.
        let value = |text: &Option<String>| -> Json {
            text.as_deref()
                .map(|t| serde_json::from_str(t).unwrap_or_else(|_| Json::String(t.to_string())))
                .unwrap_or(Json::Null)
        };
        let doc: Vec<Json> = found
            .iter()
            .map(|s| {
                let c = &s.conflict;
                serde_json::json!({
                    "seq": s.seq,
                    "detected_at": s.detected_at,
                    "resource": c.resource,
                    "local_id": c.local_id,
                    "id": c.upstream_id,
                    "kind": c.kind,
                    "field": c.field,
                    "base": value(&c.base_value),
                    "local": value(&c.local_value),
                    "remote": value(&c.remote_value),
                    "resolution": c.resolution,
                    "restored_at": s.restored_at,
                })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return Ok(exit::OK);
    }
    if found.is_empty() {
        outln!("no conflicts recorded");
        return Ok(exit::OK);
    }
    for s in &found {
        let c = &s.conflict;
        let row = match (c.local_id, c.upstream_id) {
            (Some(l), Some(id)) => format!("local_id {l}, id {id}"),
            (None, Some(id)) => format!("id {id}"),
            (Some(l), None) => format!("local_id {l}"),
            (None, None) => "-".into(),
        };
        let what = match c.field.as_deref() {
            Some(f) => format!("{} {f}", c.kind),
            None => c.kind.clone(),
        };
        let restored = match &s.restored_at {
            Some(when) => format!(" (restored {when})"),
            None => String::new(),
        };
        outln!(
            "#{} {} {} ({row}): {what}, {}{restored}",
            s.seq,
            s.detected_at,
            c.resource,
            c.resolution
        );
        outln!("    base:   {}", c.base_value.as_deref().unwrap_or("-"));
        outln!("    local:  {}", c.local_value.as_deref().unwrap_or("(deleted)"));
        outln!("    remote: {}", c.remote_value.as_deref().unwrap_or("(deleted)"));
    }
    outln!(
        "\n{} conflict(s). `restsync conflicts restore <seq>` puts the losing value back; the next sync pushes it.",
        found.len()
    );
    Ok(exit::OK)
}

/// A JSON scalar as stored in `conflicts`, as a column value.
fn json_scalar(text: &str) -> Option<Value> {
    Some(match serde_json::from_str::<Json>(text).ok()? {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Integer(i64::from(b)),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Real(n.as_f64()?),
        },
        Json::String(s) => Value::Text(s),
        _ => return None,
    })
}

/// A row as stored in `conflicts` (a JSON object by column), in column order.
fn json_row(spec: &ResourceSpec, text: &str) -> Option<Vec<Value>> {
    let Json::Object(map) = serde_json::from_str::<Json>(text).ok()? else {
        return None;
    };
    spec.columns
        .iter()
        .map(|c| match map.get(c.name) {
            None => Some(Value::Null),
            Some(v) => json_scalar(&v.to_string()),
        })
        .collect()
}

/// Why a restore cannot be done as asked.
struct Refused(String);

fn restore_one(store: &mut Store, seq: i64) -> Result<i32, StoreError> {
    let Some(stored) = sync_state::conflict(store.conn(), seq)? else {
        eprintln!("restsync: no conflict {seq} (see `restsync conflicts`)");
        return Ok(exit::DATA);
    };
    let Some(kind) = ResourceKind::from_name(&stored.conflict.resource) else {
        eprintln!(
            "restsync: conflict {seq} is about an unknown resource {}",
            stored.conflict.resource
        );
        return Ok(exit::DATA);
    };
    if let Some(when) = &stored.restored_at {
        eprintln!(
            "restsync: conflict {seq} was restored already ({when}); restoring it again would put the value back \
             twice (a deleted record would be created twice). Edit the row by hand if you need more"
        );
        return Ok(exit::DATA);
    }
    let spec = kind.spec();
    // A person's edit: the change tracking records it, the next sync pushes it. Marked
    // restored in the same transaction, so it happens once.
    let done = store.write_as_person(|tx| {
        // Claimed first (another restore may have come between the read and this
        // transaction); given back if the restore is refused, before anything was written.
        if !sync_state::mark_conflict_restored(tx, seq, true)? {
            return Ok(Err(Refused("it was restored already".into())));
        }
        let done = restore_in(tx, spec, &stored);
        if done.is_err() {
            sync_state::mark_conflict_restored(tx, seq, false)?;
        }
        Ok(done)
    })?;
    match done {
        Ok(what) => {
            outln!("restored conflict {seq}: {what}; the next sync pushes it");
            Ok(exit::OK)
        }
        Err(Refused(why)) => {
            eprintln!("restsync: conflict {seq} not restored: {why}");
            Ok(exit::DATA)
        }
    }
}

fn restore_in(
    tx: &rusqlite::Connection,
    spec: &'static ResourceSpec,
    stored: &StoredConflict,
) -> Result<String, Refused> {
    let c = &stored.conflict;
    let store_err = |e: StoreError| Refused(e.to_string());
    let unreadable = |what: &str| Refused(format!("its recorded {what} value cannot be read back"));
    let local_wins = c.resolution == "local-wins";
    match c.kind.as_str() {
        "field" => {
            let field = c.field.as_deref().ok_or_else(|| unreadable("field"))?;
            let col = spec
                .column_index(field)
                .ok_or_else(|| Refused(format!("{} has no column {field}", spec.table)))?;
            let (winner, loser) = match local_wins {
                true => (&c.local_value, &c.remote_value),
                false => (&c.remote_value, &c.local_value),
            };
            let loser = loser
                .as_deref()
                .and_then(json_scalar)
                .ok_or_else(|| unreadable("losing"))?;
            let row = match c.upstream_id {
                Some(id) => mirror::mirror_by_id(tx, spec, id).map_err(store_err)?,
                None => None,
            };
            let row = match (row, c.local_id) {
                (Some(r), _) => r,
                (None, Some(l)) => mirror::mirror_by_local_id(tx, spec, l)
                    .map_err(store_err)?
                    .ok_or_else(|| Refused("its row is no longer in the mirror".into()))?,
                (None, None) => return Err(Refused("its row is no longer in the mirror".into())),
            };
            let now = value_to_json(&row.values[col]).to_string();
            if Some(now.as_str()) != winner.as_deref() {
                return Err(Refused(format!(
                    "{field} changed since the conflict: it is {now} now, the conflict left {}. Edit the row by hand if \
                     you still want the old value",
                    winner.as_deref().unwrap_or("-")
                )));
            }
            let mut values = row.values.clone();
            values[col] = loser;
            mirror::update_mirror(tx, spec, row.local_id, &values).map_err(store_err)?;
            Ok(format!(
                "{} local_id {} {field} = {}",
                spec.table,
                row.local_id,
                value_to_json(&values[col])
            ))
        }
        // The row was removed locally because upstream deleted the record: back as a new row.
        "deleted_upstream" if !local_wins => {
            let values = c
                .local_value
                .as_deref()
                .and_then(|t| json_row(spec, t))
                .ok_or_else(|| unreadable("local"))?;
            let local_id = mirror::insert_mirror(tx, spec, None, &values).map_err(store_err)?;
            Ok(format!(
                "{} local_id {local_id} inserted again (id NULL: it will be created)",
                spec.table
            ))
        }
        "deleted_upstream" => Err(Refused(
            "local-wins kept the local row (it is created upstream again); nothing was lost".into(),
        )),
        // The local delete lost: delete the row again.
        "deleted_locally" if !local_wins => {
            let id = c.upstream_id.ok_or_else(|| unreadable("id"))?;
            let row = mirror::mirror_by_id(tx, spec, id)
                .map_err(store_err)?
                .ok_or_else(|| Refused(format!("id {id} is no longer in the mirror")))?;
            let remote = c
                .remote_value
                .as_deref()
                .and_then(|t| json_row(spec, t))
                .ok_or_else(|| unreadable("remote"))?;
            let changed = spec.changed_writable(&row.values, &remote);
            if !changed.is_empty() {
                return Err(Refused(format!(
                    "the row changed since the conflict ({}); delete it by hand if you still want it gone",
                    changed.join(", ")
                )));
            }
            mirror::delete_mirror(tx, spec, row.local_id).map_err(store_err)?;
            Ok(format!("{} id {id} deleted again", spec.table))
        }
        // The local delete won: the record upstream had is re-created from its last values.
        "deleted_locally" => {
            let values = c
                .remote_value
                .as_deref()
                .and_then(|t| json_row(spec, t))
                .ok_or_else(|| unreadable("remote"))?;
            let local_id = mirror::insert_mirror(tx, spec, None, &values).map_err(store_err)?;
            Ok(format!(
                "{} local_id {local_id} inserted with upstream's last values (id NULL: it will be created)",
                spec.table
            ))
        }
        other => Err(Refused(format!("conflicts of kind {other} cannot be restored"))),
    }
}
