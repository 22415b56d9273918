//! Rows and records for the engine's in-memory tests, in one place.

use super::{content_hash, mirror, Store};
use crate::resources::{ResourceKind, ResourceSpec};
use rusqlite::types::Value;

pub fn phones() -> &'static ResourceSpec {
    ResourceKind::PHONE_NUMBERS.spec()
}

/// contact_id, type, number, extension, description, profile_id
pub fn phone_row(description: &str) -> Vec<Value> {
    vec![
        Value::Integer(1935038),
        Value::Integer(2),
        Value::Text("0912".into()),
        Value::Null,
        Value::Text(description.into()),
        Value::Integer(7),
    ]
}

/// A record as a pull writes it: mirror row and base snapshot agree, nothing is marked.
pub fn try_synced(store: &mut Store, spec: &ResourceSpec, id: i64, values: &[Value]) -> super::Result<i64> {
    store.write(|c| {
        let local = mirror::insert_mirror(c, spec, Some(id), values)?;
        mirror::upsert_base(c, spec, id, Some(local), values, "{}", content_hash(b"{}"))?;
        Ok(local)
    })
}

pub fn synced(store: &mut Store, spec: &ResourceSpec, id: i64, values: &[Value]) -> i64 {
    try_synced(store, spec, id, values).expect("synced row")
}
