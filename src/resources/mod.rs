//! The three synced resources: their mirror columns, how an upstream record maps to a
//! mirror row and back, which columns may be pushed, and what each upstream can do.

mod addresses;
mod phone_numbers;
mod smart_numbers;

use rusqlite::types::Value;
use serde_json::{Map, Value as Json};
use std::fmt;

/// Which upstream API serves a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpstreamName {
    Firstline,
    Plusofon,
}

impl UpstreamName {
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamName::Firstline => "firstline",
            UpstreamName::Plusofon => "plusofon",
        }
    }
}

/// The resources restsync knows. The names are the mirror table names and config keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceKind {
    PhoneNumbers,
    Addresses,
    SmartNumbers,
}

impl ResourceKind {
    pub const ALL: [ResourceKind; 3] = [
        ResourceKind::PhoneNumbers,
        ResourceKind::Addresses,
        ResourceKind::SmartNumbers,
    ];

    pub fn spec(self) -> &'static ResourceSpec {
        match self {
            ResourceKind::PhoneNumbers => &phone_numbers::SPEC,
            ResourceKind::Addresses => &addresses::SPEC,
            ResourceKind::SmartNumbers => &smart_numbers::SPEC,
        }
    }

    pub fn name(self) -> &'static str {
        self.spec().table
    }

    pub fn from_name(name: &str) -> Option<ResourceKind> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl serde::Serialize for ResourceKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Integer,
    Text,
}

/// Where a column's value lives in an upstream record.
#[derive(Debug, Clone, Copy)]
pub enum JsonPath {
    Key(&'static str),
    Nested(&'static str, &'static str),
}

#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub ty: ColumnType,
    /// Pushed upstream when changed locally; read-only columns always take upstream's value.
    pub writable: bool,
    /// Sent with every update even when unchanged (Firstline's PUT requires `contact_id`).
    pub required_on_update: bool,
    pub read_from: JsonPath,
    /// The key used in create/update request bodies.
    pub payload_key: &'static str,
}

impl Column {
    pub const fn writable(name: &'static str, ty: ColumnType) -> Column {
        Column {
            name,
            ty,
            writable: true,
            required_on_update: false,
            read_from: JsonPath::Key(name),
            payload_key: name,
        }
    }

    pub const fn read_only(name: &'static str, ty: ColumnType) -> Column {
        Column {
            name,
            ty,
            writable: false,
            required_on_update: false,
            read_from: JsonPath::Key(name),
            payload_key: name,
        }
    }

    pub const fn read_from(mut self, path: JsonPath) -> Column {
        self.read_from = path;
        self
    }

    pub const fn required_on_update(mut self) -> Column {
        self.required_on_update = true;
        self
    }
}

/// Everything restsync needs to know about one resource.
#[derive(Debug)]
pub struct ResourceSpec {
    pub kind: ResourceKind,
    pub upstream: UpstreamName,
    /// Mirror table; its base snapshot lives in `<table>_base`.
    pub table: &'static str,
    pub base_table: &'static str,
    /// Path below the upstream's base URL.
    pub path: &'static str,
    /// Columns after `local_id` and `id`, in table order.
    pub columns: &'static [Column],
    pub can_update: bool,
    /// A create answers with the created record (Plusofon answers only `{"success": true}`).
    pub create_returns_record: bool,
    /// Columns passed as search filters when looking for a record by its natural key.
    pub lookup_filters: &'static [&'static str],
}

/// One record as upstream holds it, mapped to mirror columns.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub id: i64,
    pub values: Vec<Value>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RecordError {
    #[error("record is not a JSON object")]
    NotAnObject,
    #[error("record has no integer `id`")]
    MissingId,
    #[error("field `{field}` should be {expected}, found {found}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
        found: String,
    },
}

impl ResourceSpec {
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// Maps an upstream record to mirror values. A field absent from the record takes its
    /// value from `fallback` (the values that were sent, for create/update answers that
    /// leave fields out), or NULL.
    pub fn parse(&self, json: &Json, fallback: Option<&[Value]>) -> Result<Record, RecordError> {
        let obj = json.as_object().ok_or(RecordError::NotAnObject)?;
        let id = obj
            .get("id")
            .and_then(json_to_i64)
            .ok_or(RecordError::MissingId)?;
        let mut values = Vec::with_capacity(self.columns.len());
        for (i, col) in self.columns.iter().enumerate() {
            let raw = match col.read_from {
                JsonPath::Key(k) => obj.get(k),
                JsonPath::Nested(outer, inner) => match obj.get(outer) {
                    None | Some(Json::Null) => None,
                    Some(Json::Object(o)) => o.get(inner),
                    Some(other) => {
                        return Err(RecordError::WrongType {
                            field: outer,
                            expected: "an object",
                            found: truncate(&other.to_string(), 60),
                        })
                    }
                },
            };
            let value = match raw {
                None => fallback.and_then(|f| f.get(i)).cloned().unwrap_or(Value::Null),
                Some(v) => json_to_value(col, v)?,
            };
            values.push(value);
        }
        Ok(Record { id, values })
    }

    /// The request body for a create: every writable column.
    pub fn create_payload(&self, values: &[Value]) -> Map<String, Json> {
        self.columns
            .iter()
            .zip(values)
            .filter(|(c, _)| c.writable)
            .map(|(c, v)| (c.payload_key.to_string(), value_to_json(v)))
            .collect()
    }

    /// The request body for an update: the changed writable columns plus the ones the
    /// upstream requires on every update.
    pub fn update_payload(&self, values: &[Value], base: &[Value]) -> Map<String, Json> {
        self.columns
            .iter()
            .enumerate()
            .filter(|(i, c)| c.writable && (c.required_on_update || values[*i] != base[*i]))
            .map(|(i, c)| (c.payload_key.to_string(), value_to_json(&values[i])))
            .collect()
    }

    /// Writable columns whose values differ.
    pub fn changed_writable(&self, a: &[Value], b: &[Value]) -> Vec<&'static str> {
        self.columns
            .iter()
            .zip(a.iter().zip(b))
            .filter(|(c, (x, y))| c.writable && x != y)
            .map(|(c, _)| c.name)
            .collect()
    }

    /// Checks a local row before it is pushed: integer columns must hold integers.
    pub fn validate_local(&self, values: &[Value]) -> Result<(), String> {
        for (col, v) in self.columns.iter().zip(values) {
            if !col.writable {
                continue;
            }
            let ok = matches!(
                (col.ty, v),
                (_, Value::Null)
                    | (ColumnType::Integer, Value::Integer(_))
                    | (
                        ColumnType::Text,
                        Value::Text(_) | Value::Integer(_) | Value::Real(_)
                    )
            );
            if !ok {
                let expected = match col.ty {
                    ColumnType::Integer => "an integer",
                    ColumnType::Text => "text",
                };
                return Err(format!(
                    "column `{}` must be {expected}, found {}",
                    col.name,
                    describe_value(v)
                ));
            }
        }
        Ok(())
    }
}

impl ResourceSpec {
    /// Serialises mirror values (journal `row_values`).
    pub fn values_to_json(&self, values: &[Value]) -> String {
        Json::Array(values.iter().map(value_to_json).collect()).to_string()
    }

    /// Reads back what [`values_to_json`](Self::values_to_json) wrote.
    pub fn values_from_json(&self, text: &str) -> Result<Vec<Value>, String> {
        let items: Vec<Json> = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if items.len() != self.columns.len() {
            return Err(format!(
                "expected {} values, found {}",
                self.columns.len(),
                items.len()
            ));
        }
        self.columns
            .iter()
            .zip(&items)
            .map(|(c, v)| json_to_value(c, v).map_err(|e| e.to_string()))
            .collect()
    }
}

pub fn describe_value(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::Integer(i) => i.to_string(),
        Value::Real(r) => r.to_string(),
        Value::Text(t) => format!("{t:?}"),
        Value::Blob(b) => format!("a blob of {} bytes", b.len()),
    }
}

fn json_to_i64(v: &Json) -> Option<i64> {
    match v {
        Json::Number(n) => n.as_i64(),
        Json::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn json_to_value(col: &Column, v: &Json) -> Result<Value, RecordError> {
    let wrong = |found: &Json| RecordError::WrongType {
        field: match col.read_from {
            JsonPath::Key(k) => k,
            JsonPath::Nested(_, inner) => inner,
        },
        expected: match col.ty {
            ColumnType::Integer => "an integer",
            ColumnType::Text => "a string",
        },
        found: truncate(&found.to_string(), 60),
    };
    match (col.ty, v) {
        (_, Json::Null) => Ok(Value::Null),
        (ColumnType::Integer, Json::Bool(b)) => Ok(Value::Integer(i64::from(*b))),
        (ColumnType::Integer, other) => json_to_i64(other).map(Value::Integer).ok_or_else(|| wrong(other)),
        (ColumnType::Text, Json::String(s)) => Ok(Value::Text(s.clone())),
        (ColumnType::Text, Json::Number(n)) => Ok(Value::Text(n.to_string())),
        (ColumnType::Text, other) => Err(wrong(other)),
    }
}

pub fn value_to_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Integer(i) => Json::from(*i),
        Value::Real(r) => serde_json::Number::from_f64(*r)
            .map(Json::Number)
            .unwrap_or(Json::Null),
        Value::Text(t) => Json::String(t.clone()),
        Value::Blob(b) => Json::String(String::from_utf8_lossy(b).into_owned()),
    }
}

pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let cut: String = s.chars().take(max).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests;
