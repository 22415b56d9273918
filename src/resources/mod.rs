//! The synced resources: their mirror columns, how an upstream record maps to a mirror row
//! and back, which columns may be pushed, and what each upstream can do. Three ship with
//! the binary; more are defined in the config ([`definition`]).

pub mod definition;

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

/// A synced resource: a handle on its specification. The three built-ins are definitions
/// that ship with the binary (`builtin.toml`, read once); others are defined in the config
/// ([`define`]). Two handles are the same resource when they name the same mirror table.
#[derive(Clone, Copy)]
pub struct ResourceKind(Handle);

#[derive(Clone, Copy)]
enum Handle {
    /// Index into [`BUILT_IN_NAMES`] and the built-in specifications.
    BuiltIn(usize),
    Defined(&'static ResourceSpec),
}

/// The built-in resources' names (their mirror tables), in table order.
pub const BUILT_IN_NAMES: [&str; 3] = ["phone_numbers", "addresses", "smart_numbers"];

/// The definitions that ship with the binary, in the same form a config file uses.
const BUILT_IN_DEFINITIONS: &str = include_str!("builtin.toml");

fn built_in_specs() -> &'static [&'static ResourceSpec; 3] {
    static SPECS: std::sync::OnceLock<[&'static ResourceSpec; 3]> = std::sync::OnceLock::new();
    SPECS.get_or_init(|| {
        let mut defined = definition::parse_built_in(BUILT_IN_DEFINITIONS);
        BUILT_IN_NAMES.map(|name| {
            let at = defined.iter().position(|s| s.table == name);
            // The file is part of the binary and a test reads every definition in it.
            let spec = at
                .map(|i| defined.swap_remove(i))
                .unwrap_or_else(|| panic!("builtin.toml defines {name}"));
            &*Box::leak(Box::new(spec))
        })
    })
}

impl ResourceKind {
    pub const PHONE_NUMBERS: ResourceKind = ResourceKind(Handle::BuiltIn(0));
    pub const ADDRESSES: ResourceKind = ResourceKind(Handle::BuiltIn(1));
    pub const SMART_NUMBERS: ResourceKind = ResourceKind(Handle::BuiltIn(2));

    /// The resources that ship with the binary, in table order.
    pub const BUILT_IN: [ResourceKind; 3] = [
        ResourceKind::PHONE_NUMBERS,
        ResourceKind::ADDRESSES,
        ResourceKind::SMART_NUMBERS,
    ];

    pub fn spec(self) -> &'static ResourceSpec {
        match self.0 {
            Handle::BuiltIn(i) => built_in_specs()[i],
            Handle::Defined(spec) => spec,
        }
    }

    pub fn name(self) -> &'static str {
        match self.0 {
            Handle::BuiltIn(i) => BUILT_IN_NAMES[i],
            Handle::Defined(spec) => spec.table,
        }
    }

    pub fn is_built_in(self) -> bool {
        matches!(self.0, Handle::BuiltIn(_))
    }

    /// A built-in, or a resource defined by the loaded configuration.
    pub fn from_name(name: &str) -> Option<ResourceKind> {
        Self::all().into_iter().find(|k| k.name() == name)
    }

    /// The built-ins, then the defined resources in the order they were defined.
    pub fn all() -> Vec<ResourceKind> {
        let mut all = Self::BUILT_IN.to_vec();
        all.extend(defined().iter().copied());
        all
    }
}

/// Resources defined in this process (by the configuration), newest definition per name.
fn defined() -> std::sync::RwLockReadGuard<'static, Vec<ResourceKind>> {
    DEFINED.read().unwrap_or_else(|e| e.into_inner())
}

static DEFINED: std::sync::RwLock<Vec<ResourceKind>> = std::sync::RwLock::new(Vec::new());

/// Registers a resource defined in the configuration and returns its handle. An identical
/// definition returns the handle already registered; a changed one replaces it (a reload).
/// Specifications live for the whole process: a few hundred bytes per distinct definition.
pub fn define(spec: ResourceSpec) -> ResourceKind {
    let mut list = DEFINED.write().unwrap_or_else(|e| e.into_inner());
    if let Some(same) = list.iter().find(|k| *k.spec() == spec) {
        return *same;
    }
    let kind = ResourceKind(Handle::Defined(Box::leak(Box::new(spec))));
    list.retain(|k| k.name() != kind.name());
    list.push(kind);
    kind
}

impl PartialEq for ResourceKind {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for ResourceKind {}

impl std::hash::Hash for ResourceKind {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name().hash(state)
    }
}

impl PartialOrd for ResourceKind {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Built-ins first in their fixed order, then defined resources by name.
impl Ord for ResourceKind {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let rank = |k: &ResourceKind| {
            Self::BUILT_IN
                .iter()
                .position(|b| b == k)
                .unwrap_or(Self::BUILT_IN.len())
        };
        rank(self)
            .cmp(&rank(other))
            .then_with(|| self.name().cmp(other.name()))
    }
}

impl fmt::Debug for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
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
    Real,
}

impl ColumnType {
    /// The name used in definitions and in the mirror table's DDL (lower case).
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnType::Integer => "integer",
            ColumnType::Text => "text",
            ColumnType::Real => "real",
        }
    }

    /// "an integer", "text", "a number": for messages.
    pub fn expected(self) -> &'static str {
        match self {
            ColumnType::Integer => "an integer",
            ColumnType::Text => "text",
            ColumnType::Real => "a number",
        }
    }
}

/// Where a column's value lives in an upstream record: a key, or a path of keys through
/// nested objects (`phone_contact.contact_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonPath {
    Key(&'static str),
    Nested(&'static [&'static str]),
}

impl JsonPath {
    /// The path as written in a definition: keys joined by dots.
    pub fn dotted(&self) -> String {
        match self {
            JsonPath::Key(k) => (*k).to_string(),
            JsonPath::Nested(keys) => keys.join("."),
        }
    }

    /// The key that holds the value (the last one).
    pub fn leaf(&self) -> &'static str {
        match self {
            JsonPath::Key(k) => k,
            JsonPath::Nested(keys) => keys.last().copied().unwrap_or(""),
        }
    }
}

/// How a list endpoint pages its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pagination {
    /// Laravel's resource collection: `data`, `links`, `meta`; `page` and `per_page` asked.
    Laravel,
    /// Paginator fields at the top level next to `data`; only `page` asked (Plusofon).
    Flat,
}

impl Pagination {
    pub fn as_str(self) -> &'static str {
        match self {
            Pagination::Laravel => "laravel",
            Pagination::Flat => "flat",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
#[derive(Debug, PartialEq)]
pub struct ResourceSpec {
    pub upstream: UpstreamName,
    /// Mirror table; its base snapshot lives in `<table>_base`.
    pub table: &'static str,
    pub base_table: &'static str,
    /// Path below the upstream's base URL.
    pub path: &'static str,
    pub pagination: Pagination,
    /// Columns after `local_id` and `id`, in table order.
    pub columns: &'static [Column],
    pub can_create: bool,
    pub can_update: bool,
    pub can_delete: bool,
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
        field: String,
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
                JsonPath::Nested(keys) => nested(obj, keys)?,
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
                    | (ColumnType::Real, Value::Integer(_) | Value::Real(_))
                    | (
                        ColumnType::Text,
                        Value::Text(_) | Value::Integer(_) | Value::Real(_)
                    )
            );
            if !ok {
                let expected = col.ty.expected();
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

/// Follows a path of keys through nested objects; a missing or null step is an absent value.
fn nested<'a>(obj: &'a Map<String, Json>, keys: &[&'static str]) -> Result<Option<&'a Json>, RecordError> {
    let Some((last, through)) = keys.split_last() else {
        return Ok(None);
    };
    let mut at = obj;
    for key in through {
        match at.get(*key) {
            None | Some(Json::Null) => return Ok(None),
            Some(Json::Object(o)) => at = o,
            Some(other) => {
                return Err(RecordError::WrongType {
                    field: (*key).to_string(),
                    expected: "an object",
                    found: truncate(&other.to_string(), 60),
                })
            }
        }
    }
    Ok(at.get(*last))
}

fn json_to_value(col: &Column, v: &Json) -> Result<Value, RecordError> {
    let wrong = |found: &Json| RecordError::WrongType {
        field: col.read_from.leaf().to_string(),
        expected: match col.ty {
            ColumnType::Integer => "an integer",
            ColumnType::Text => "a string",
            ColumnType::Real => "a number",
        },
        found: truncate(&found.to_string(), 60),
    };
    match (col.ty, v) {
        (_, Json::Null) => Ok(Value::Null),
        (ColumnType::Integer, Json::Bool(b)) => Ok(Value::Integer(i64::from(*b))),
        (ColumnType::Integer, other) => json_to_i64(other).map(Value::Integer).ok_or_else(|| wrong(other)),
        (ColumnType::Real, Json::Number(n)) => n.as_f64().map(Value::Real).ok_or_else(|| wrong(v)),
        (ColumnType::Real, Json::String(s)) => s.trim().parse().map(Value::Real).map_err(|_| wrong(v)),
        (ColumnType::Real, other) => Err(wrong(other)),
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
