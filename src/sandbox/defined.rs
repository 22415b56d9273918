//! Resources defined in a configuration, served from their definition: records generated
//! from the column types, Laravel or flat pages, create/update/delete as the definition's
//! operations allow, 422s naming the field for values of the wrong type.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, MethodRouter};
use axum::Router;
use serde_json::{json, Map, Value};

use super::layer::{json as json_response, json_object};
use super::query;
use super::Shared;
use crate::resources::{ColumnType, JsonPath, Pagination, ResourceKind, ResourceSpec, UpstreamName};

/// The records of one defined resource, by id (listing order).
#[derive(Debug)]
pub(crate) struct Collection {
    spec: &'static ResourceSpec,
    records: BTreeMap<i64, Value>,
    next_id: i64,
    /// When records were created through the API: lists leave them out for the
    /// `list_lag_ms` fault, as a lagging search index would.
    created: BTreeMap<i64, std::time::Instant>,
}

impl Collection {
    /// `count` records, a pure function of the definition and `seed`.
    pub(crate) fn seeded(kind: ResourceKind, seed: u64, count: usize) -> Collection {
        let spec = kind.spec();
        let mut records = BTreeMap::new();
        for i in 1..=count as i64 {
            let mut record = Map::new();
            record.insert("id".into(), json!(i));
            for (c, col) in spec.columns.iter().enumerate() {
                put(
                    &mut record,
                    &col.read_from,
                    generated(col.ty, col.name, seed, i, c),
                );
            }
            records.insert(i, Value::Object(record));
        }
        Collection {
            spec,
            records,
            next_id: count as i64 + 1,
            created: BTreeMap::new(),
        }
    }

    pub(crate) fn records(&self) -> Vec<Value> {
        self.records.values().cloned().collect()
    }

    /// Sets one column of a record as upstream would (a change made by someone else).
    pub(crate) fn set(&mut self, id: i64, column: &str, value: Value) -> bool {
        let Some(col) = self.spec.columns.iter().find(|c| c.name == column) else {
            return false;
        };
        match self.records.get_mut(&id).and_then(Value::as_object_mut) {
            Some(record) => {
                put(record, &col.read_from, value);
                true
            }
            None => false,
        }
    }

    pub(crate) fn remove(&mut self, id: i64) -> bool {
        self.records.remove(&id).is_some()
    }
}

fn generated(ty: ColumnType, name: &str, seed: u64, i: i64, c: usize) -> Value {
    let n = (seed as i64)
        .wrapping_mul(31)
        .wrapping_add(i * 7 + c as i64)
        .rem_euclid(1000)
        + 1;
    match ty {
        ColumnType::Integer => json!(n),
        ColumnType::Real => json!(n as f64 / 4.0),
        ColumnType::Text => json!(format!("{name}-{i}")),
    }
}

/// Writes `value` where `path` reads it, creating the objects on the way.
fn put(record: &mut Map<String, Value>, path: &JsonPath, value: Value) {
    let keys: Vec<&str> = match path {
        JsonPath::Key(k) => vec![k],
        JsonPath::Nested(keys) => keys.to_vec(),
    };
    let Some((last, through)) = keys.split_last() else {
        return;
    };
    let mut at = record;
    for key in through {
        let slot = at.entry(key.to_string()).or_insert_with(|| json!({}));
        if !slot.is_object() {
            *slot = json!({});
        }
        match slot.as_object_mut() {
            Some(o) => at = o,
            None => return,
        }
    }
    at.insert(last.to_string(), value);
}

fn read<'a>(record: &'a Value, path: &JsonPath) -> Option<&'a Value> {
    match path {
        JsonPath::Key(k) => record.get(k),
        JsonPath::Nested(keys) => keys.iter().try_fold(record, |at, k| at.get(k)),
    }
}

/// Adds the routes of every defined resource served by `upstream`.
pub(crate) fn routes(
    mut router: Router<Arc<Shared>>,
    shared: &Shared,
    upstream: UpstreamName,
) -> Router<Arc<Shared>> {
    let specs: Vec<&'static ResourceSpec> = super::lock(&shared.defined)
        .values()
        .map(|c| c.spec)
        .filter(|s| s.upstream == upstream)
        .collect();
    for spec in specs {
        let name = spec.table;
        let mut collection: MethodRouter<Arc<Shared>> =
            get(move |s: State<Arc<Shared>>, q: RawQuery| list(name, s, q));
        if spec.can_create {
            collection = collection.post(move |s: State<Arc<Shared>>, b: Bytes| create(name, s, b));
        }
        let mut member: MethodRouter<Arc<Shared>> = MethodRouter::new();
        if upstream == UpstreamName::Firstline {
            member = member.get(move |s: State<Arc<Shared>>, id: Path<String>| show(name, s, id));
        }
        if spec.can_update {
            member =
                member.put(move |s: State<Arc<Shared>>, id: Path<String>, b: Bytes| update(name, s, id, b));
        }
        if spec.can_delete {
            member = member.delete(move |s: State<Arc<Shared>>, id: Path<String>| destroy(name, s, id));
        }
        router = router
            .route(spec.path, collection)
            .route(&format!("{}/{{id}}", spec.path), member);
    }
    router
}

fn message(status: StatusCode, text: &str) -> Response {
    json_response(status, &json!({ "message": text, "code": status.as_u16() }))
}

fn invalid(errors: Map<String, Value>) -> Response {
    json_response(
        StatusCode::UNPROCESSABLE_ENTITY,
        &json!({ "message": "The given data was invalid.", "errors": errors }),
    )
}

async fn list(name: &'static str, State(shared): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Response {
    let pairs = query::pairs(q.as_deref().unwrap_or(""));
    let lag = shared.faults().list_lag();
    let param = |key: &str| {
        pairs
            .iter()
            .find(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.clone())
    };
    let defined = super::lock(&shared.defined);
    let Some(c) = defined.get(name) else {
        return message(StatusCode::NOT_FOUND, "Not Found");
    };
    let spec = c.spec;
    let page: u64 = param("page")
        .and_then(|p| p.parse().ok())
        .filter(|p| *p >= 1)
        .unwrap_or(1);
    let per_page: u64 = match spec.pagination {
        Pagination::Laravel => param("per_page")
            .and_then(|p| p.parse().ok())
            .filter(|p| *p >= 1)
            .unwrap_or(15),
        Pagination::Flat => 15,
    };
    // Exact-match filters on any column, as a search endpoint takes them.
    let filters: Vec<(&JsonPath, String)> = spec
        .columns
        .iter()
        .filter_map(|col| param(col.name).map(|v| (&col.read_from, v)))
        .collect();
    let listed = |id: &i64| c.created.get(id).is_none_or(|at| at.elapsed() >= lag);
    let matching: Vec<&Value> = c
        .records
        .iter()
        .filter(|(id, _)| listed(id))
        .map(|(_, r)| r)
        .filter(|r| {
            filters.iter().all(|(path, wanted)| {
                read(r, path).is_some_and(|v| match v {
                    Value::String(s) => s == wanted,
                    Value::Number(n) => wanted.parse::<f64>().ok() == n.as_f64(),
                    Value::Bool(b) => *wanted == u8::from(*b).to_string(),
                    _ => false,
                })
            })
        })
        .collect();
    let total = matching.len() as u64;
    let last_page = total.div_ceil(per_page).max(1);
    let offset = ((page - 1) * per_page) as usize;
    let data: Vec<Value> = matching
        .into_iter()
        .skip(offset)
        .take(per_page as usize)
        .cloned()
        .collect();
    let count = data.len() as u64;
    let from = (count > 0).then_some(offset as u64 + 1);
    let to = from.map(|f| f + count - 1);
    let url = |p: u64| format!("http://localhost{}?page={p}", spec.path);
    let body = match spec.pagination {
        Pagination::Laravel => json!({
            "data": data,
            "links": {
                "first": url(1), "last": url(last_page),
                "prev": (page > 1).then(|| url(page - 1)), "next": (page < last_page).then(|| url(page + 1)),
            },
            "meta": {
                "current_page": page, "from": from, "last_page": last_page, "path": format!("http://localhost{}", spec.path),
                "per_page": per_page, "to": to, "total": total,
            },
        }),
        Pagination::Flat => json!({
            "current_page": page, "data": data, "first_page_url": url(1), "from": from, "last_page": last_page,
            "last_page_url": url(last_page), "next_page_url": (page < last_page).then(|| url(page + 1)),
            "path": format!("http://localhost{}", spec.path), "per_page": per_page,
            "prev_page_url": (page > 1).then(|| url(page - 1)), "to": to, "total": total,
        }),
    };
    json_response(StatusCode::OK, &body)
}

/// The writable columns of `body`, checked against their types; `required` names the
/// ones that must be present.
fn accepted(
    spec: &ResourceSpec,
    body: &Map<String, Value>,
    required: &[&str],
) -> Result<Vec<(usize, Value)>, Map<String, Value>> {
    let mut errors = Map::new();
    let mut out = Vec::new();
    for (i, col) in spec.columns.iter().enumerate().filter(|(_, c)| c.writable) {
        let key = col.payload_key;
        match body.get(key) {
            None if required.contains(&key) => {
                errors.insert(key.into(), json!([format!("The {key} field is required.")]));
            }
            None => {}
            Some(v) => {
                let ok = match (col.ty, v) {
                    (_, Value::Null) => true,
                    (ColumnType::Integer, Value::Number(n)) => n.is_i64(),
                    (ColumnType::Real, Value::Number(_)) => true,
                    (ColumnType::Text, Value::String(_)) => true,
                    _ => false,
                };
                if ok {
                    out.push((i, v.clone()));
                } else {
                    let what = match col.ty {
                        ColumnType::Integer => "an integer",
                        ColumnType::Real => "a number",
                        ColumnType::Text => "a string",
                    };
                    errors.insert(key.into(), json!([format!("The {key} must be {what}.")]));
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn parse_id(id: &str) -> Option<i64> {
    id.parse().ok()
}

async fn create(name: &'static str, State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let Some(body) = json_object(&body) else {
        return message(StatusCode::BAD_REQUEST, "Malformed JSON body");
    };
    let mut defined = super::lock(&shared.defined);
    let Some(c) = defined.get_mut(name) else {
        return message(StatusCode::NOT_FOUND, "Not Found");
    };
    let spec = c.spec;
    let natural: Vec<&str> = spec
        .lookup_filters
        .iter()
        .filter_map(|n| spec.columns.iter().find(|c| c.name == *n).map(|c| c.payload_key))
        .collect();
    let values = match accepted(spec, &body, &natural) {
        Ok(v) => v,
        Err(errors) => return invalid(errors),
    };
    let id = c.next_id;
    c.next_id += 1;
    let mut record = Map::new();
    record.insert("id".into(), json!(id));
    for (i, col) in spec.columns.iter().enumerate() {
        let value = values
            .iter()
            .find(|(at, _)| *at == i)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| {
                if col.writable {
                    Value::Null
                } else {
                    generated(col.ty, col.name, 7, id, i)
                }
            });
        put(&mut record, &col.read_from, value);
    }
    let record = Value::Object(record);
    c.records.insert(id, record.clone());
    c.created.insert(id, std::time::Instant::now());
    if spec.create_returns_record {
        json_response(StatusCode::CREATED, &json!({ "data": record }))
    } else {
        json_response(StatusCode::OK, &json!({ "success": true }))
    }
}

async fn show(name: &'static str, State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let defined = super::lock(&shared.defined);
    match (defined.get(name), parse_id(&id)) {
        (Some(c), Some(id)) => match c.records.get(&id) {
            Some(r) => json_response(StatusCode::OK, &json!({ "data": r })),
            None => message(
                StatusCode::NOT_FOUND,
                &format!("No query results for {name} {id}"),
            ),
        },
        _ => message(StatusCode::NOT_FOUND, "Not Found"),
    }
}

async fn update(
    name: &'static str,
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let Some(body) = json_object(&body) else {
        return message(StatusCode::BAD_REQUEST, "Malformed JSON body");
    };
    let mut defined = super::lock(&shared.defined);
    let (Some(c), Some(id)) = (defined.get_mut(name), parse_id(&id)) else {
        return message(StatusCode::NOT_FOUND, "Not Found");
    };
    let spec = c.spec;
    let required: Vec<&str> = spec
        .columns
        .iter()
        .filter(|c| c.required_on_update)
        .map(|c| c.payload_key)
        .collect();
    let values = match accepted(spec, &body, &required) {
        Ok(v) => v,
        Err(errors) => return invalid(errors),
    };
    let Some(record) = c.records.get_mut(&id).and_then(Value::as_object_mut) else {
        return message(
            StatusCode::NOT_FOUND,
            &format!("No query results for {name} {id}"),
        );
    };
    for (i, v) in values {
        put(record, &spec.columns[i].read_from, v);
    }
    json_response(StatusCode::OK, &json!({ "data": record }))
}

async fn destroy(name: &'static str, State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let mut defined = super::lock(&shared.defined);
    let (Some(c), Some(id)) = (defined.get_mut(name), parse_id(&id)) else {
        return message(StatusCode::NOT_FOUND, "Not Found");
    };
    let flat = c.spec.pagination == Pagination::Flat;
    if c.records.remove(&id).is_none() {
        return message(
            StatusCode::NOT_FOUND,
            &format!("No query results for {name} {id}"),
        );
    }
    if flat {
        json_response(StatusCode::OK, &json!({ "success": true }))
    } else {
        json_response(StatusCode::OK, &json!({}))
    }
}
