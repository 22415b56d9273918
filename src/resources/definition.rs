//! Resources defined in the configuration (`[resources.NAME]` with `upstream`, `path` and
//! `[[resources.NAME.columns]]`): checked key by key into a [`ResourceSpec`], and any
//! specification printed back as the TOML that defines it (`restsync resources show`).

use serde::Deserialize;
use std::fmt::Write as _;

use super::{Column, ColumnType, JsonPath, Pagination, ResourceSpec, UpstreamName, BUILT_IN_NAMES};

/// Tables of restsync's own: no resource may take their names.
const INTERNAL_TABLES: &[&str] = &[
    "sync_state",
    "journal",
    "conflicts",
    "changed_rows",
    "change_tracking",
    "resource_definitions",
    "edited_ids",
    // and its indexes
    "journal_active",
    "journal_row",
    "journal_finished",
    "journal_record",
    "conflicts_resource",
];

/// A resource definition as written (every key optional here, so each missing one is
/// reported by name).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    pub upstream: Option<String>,
    pub path: Option<String>,
    pub pagination: Option<String>,
    pub operations: Option<Vec<String>>,
    pub create_returns_record: Option<bool>,
    pub natural_key: Option<Vec<String>>,
    pub columns: Option<Vec<ColumnDefinition>>,
}

impl Definition {
    /// Whether any key of a definition is present (a section with only `enabled`,
    /// `schedule` or `user_id` is an override of a built-in, not a definition).
    pub fn is_empty(&self) -> bool {
        self.upstream.is_none()
            && self.path.is_none()
            && self.pagination.is_none()
            && self.operations.is_none()
            && self.create_returns_record.is_none()
            && self.natural_key.is_none()
            && self.columns.is_none()
    }

    /// The keys present, for the message refusing them on a built-in.
    pub fn keys(&self) -> Vec<&'static str> {
        [
            ("upstream", self.upstream.is_some()),
            ("path", self.path.is_some()),
            ("pagination", self.pagination.is_some()),
            ("operations", self.operations.is_some()),
            ("create_returns_record", self.create_returns_record.is_some()),
            ("natural_key", self.natural_key.is_some()),
            ("columns", self.columns.is_some()),
        ]
        .into_iter()
        .filter(|(_, present)| *present)
        .map(|(k, _)| k)
        .collect()
    }
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnDefinition {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub ty: Option<String>,
    pub from: Option<String>,
    pub writable: Option<bool>,
    pub required_on_update: Option<bool>,
    pub payload_key: Option<String>,
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

/// A lower-case SQL identifier that SQLite takes unquoted as a column or table name.
fn is_plain_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    first_ok
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 64
        && usable_unquoted(name)
}

/// Asks SQLite itself: keywords (`order`, `group`...) do not parse as bare names, and
/// some names parse but mean something else (`current_date` is today's date), so the
/// name must read back the column's own value.
fn usable_unquoted(name: &str) -> bool {
    rusqlite::Connection::open_in_memory()
        .and_then(|c| {
            c.query_row(
                &format!("SELECT {name} FROM (SELECT 'restsync-probe' AS {name}) AS {name}"),
                [],
                |r| r.get::<_, String>(0),
            )
        })
        .is_ok_and(|v| v == "restsync-probe")
}

/// Columns every base snapshot table has besides the resource's own.
const BASE_COLUMNS: &[&str] = &["raw", "hash", "synced_at"];

/// Checks a definition, naming every bad key in `problems`; returns the specification
/// when there were none.
pub fn build(name: &str, def: &Definition, problems: &mut Vec<String>) -> Option<ResourceSpec> {
    if BUILT_IN_NAMES.contains(&name) {
        problems.push(format!(
            "resources.{name}: the table name `{name}` is taken by restsync itself; choose another name"
        ));
        return None;
    }
    build_spec(name, def, problems)
}

/// The built-in definitions (`builtin.toml`), read with the same rules as a config's.
pub(super) fn parse_built_in(text: &str) -> Vec<ResourceSpec> {
    #[derive(Deserialize)]
    struct File {
        resources: std::collections::BTreeMap<String, Definition>,
    }
    let file: Result<File, _> = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .build()
        .and_then(|c| c.try_deserialize());
    let mut problems = Vec::new();
    let specs: Vec<ResourceSpec> = match file {
        Ok(file) => file
            .resources
            .iter()
            .filter_map(|(name, def)| build_spec(name, def, &mut problems))
            .collect(),
        Err(e) => {
            problems.push(e.to_string());
            Vec::new()
        }
    };
    // The file is part of the binary; a test reads it, so this never fires in a release.
    assert!(problems.is_empty(), "builtin.toml: {problems:?}");
    specs
}

fn build_spec(name: &str, def: &Definition, problems: &mut Vec<String>) -> Option<ResourceSpec> {
    let key = format!("resources.{name}");
    let before = problems.len();
    if !is_plain_identifier(name) {
        problems.push(format!(
            "{key}: `{name}` cannot be a table name (lower-case letters, digits and _, not starting with a digit, at most 64 characters, not an SQL keyword)"
        ));
    } else if INTERNAL_TABLES.contains(&name) || name.starts_with("sqlite_") {
        problems.push(format!(
            "{key}: the table name `{name}` is taken by restsync itself; choose another name"
        ));
    } else if name.ends_with("_base") {
        problems.push(format!(
            "{key}: names ending in `_base` are kept for base snapshots (`{name}` would collide); choose another name"
        ));
    }

    let upstream = match def.upstream.as_deref() {
        Some("firstline") => Some(UpstreamName::Firstline),
        Some("plusofon") => Some(UpstreamName::Plusofon),
        Some(other) => {
            problems.push(format!(
                "{key}.upstream: {other:?} is not one of \"firstline\", \"plusofon\""
            ));
            None
        }
        None => {
            problems.push(format!(
                "{key}.upstream: required (\"firstline\" or \"plusofon\")"
            ));
            None
        }
    };
    let path = match def.path.as_deref() {
        None => {
            problems.push(format!("{key}.path: required (for example \"/api/v1/email\")"));
            None
        }
        Some(p)
            if !p.starts_with('/')
                || p.len() < 2
                || p.ends_with('/')
                || p.contains(['?', '#', '{', '}', ' '])
                || p.split('/').any(|seg| seg == "." || seg == "..") =>
        {
            problems.push(format!(
                "{key}.path: {p:?} must be a path below the upstream's base URL, like \"/api/v1/email\" (no query, no trailing /)"
            ));
            None
        }
        Some(p) => Some(p),
    };
    let pagination = match (def.pagination.as_deref(), upstream) {
        (Some("laravel"), _) => Some(Pagination::Laravel),
        (Some("flat"), _) => Some(Pagination::Flat),
        (Some(other), _) => {
            problems.push(format!(
                "{key}.pagination: {other:?} is not one of \"laravel\", \"flat\""
            ));
            None
        }
        (None, Some(UpstreamName::Plusofon)) => Some(Pagination::Flat),
        (None, _) => Some(Pagination::Laravel),
    };
    let operations: Vec<String> = def
        .operations
        .clone()
        .unwrap_or_else(|| vec!["create".into(), "update".into(), "delete".into()]);
    for (i, op) in operations.iter().enumerate() {
        if operations[..i].contains(op) {
            problems.push(format!("{key}.operations: {op:?} is listed twice"));
        } else if !matches!(op.as_str(), "create" | "update" | "delete" | "list") {
            problems.push(format!(
                "{key}.operations: {op:?} is not one of \"create\", \"update\", \"delete\" (list is always there)"
            ));
        }
    }
    let can = |op: &str| operations.iter().any(|o| o == op);

    let columns = build_columns(&key, def.columns.as_deref(), problems);
    let natural_key: Vec<&'static str> = match (&def.natural_key, &columns) {
        (Some(keys), Some(columns)) => keys
            .iter()
            .filter_map(|k| match columns.iter().find(|c| c.name == k) {
                Some(c) if c.writable => Some(c.name),
                Some(_) => {
                    problems.push(format!(
                        "{key}.natural_key: `{k}` is a read-only column; a created record is looked up by values the local row holds, so use writable columns"
                    ));
                    None
                }
                None => {
                    problems.push(format!("{key}.natural_key: `{k}` is not a column of this resource"));
                    None
                }
            })
            .collect(),
        _ => Vec::new(),
    };
    if let Some(keys) = &def.natural_key {
        for (i, k) in keys.iter().enumerate() {
            if keys[..i].contains(k) {
                problems.push(format!("{key}.natural_key: `{k}` is listed twice"));
            }
        }
    }
    if can("create") && def.natural_key.as_ref().is_none_or(|k| k.is_empty()) && columns.is_some() {
        problems.push(format!(
            "{key}.natural_key: required when the resource can be created: the columns a created record is found by when its outcome is unknown (a timeout), so it is never created twice"
        ));
    }
    if problems.len() > before {
        return None;
    }
    Some(ResourceSpec {
        upstream: upstream?,
        table: leak(name),
        base_table: leak(&format!("{name}_base")),
        path: leak(path?),
        pagination: pagination?,
        columns: Box::leak(columns?.into_boxed_slice()),
        can_create: can("create"),
        can_update: can("update"),
        can_delete: can("delete"),
        create_returns_record: def.create_returns_record.unwrap_or(true),
        lookup_filters: Box::leak(natural_key.into_boxed_slice()),
    })
}

fn build_columns(
    key: &str,
    defs: Option<&[ColumnDefinition]>,
    problems: &mut Vec<String>,
) -> Option<Vec<Column>> {
    let Some(defs) = defs else {
        problems.push(format!(
            "{key}.columns: required: one [[{key}.columns]] table per column"
        ));
        return None;
    };
    if defs.is_empty() {
        problems.push(format!("{key}.columns: at least one column is needed"));
        return None;
    }
    let before = problems.len();
    let mut out = Vec::new();
    for (i, col) in defs.iter().enumerate() {
        let at = format!("{key}.columns[{i}]");
        let Some(name) = col.name.as_deref() else {
            problems.push(format!("{at}.name: required"));
            continue;
        };
        let at = format!("{key}.columns[{i}] ({name})");
        if !is_plain_identifier(name) {
            problems.push(format!(
                "{at}.name: `{name}` cannot be a column name (lower-case letters, digits and _, at most 64 characters, not an SQL keyword)"
            ));
        } else if matches!(name, "local_id" | "id") {
            problems.push(format!(
                "{at}.name: `{name}` is implicit in every mirror table; do not declare it"
            ));
        } else if BASE_COLUMNS.contains(&name) || matches!(name, "rowid" | "oid" | "_rowid_") {
            problems.push(format!(
                "{at}.name: `{name}` is taken by restsync's tables (base snapshots keep raw, hash and synced_at; \
                 rowid, oid and _rowid_ are SQLite's); choose another name and read the field with `from = \"{name}\"`"
            ));
        } else if out.iter().any(|c: &Column| c.name == name) {
            problems.push(format!("{at}.name: `{name}` is declared twice"));
        }
        let ty = match col.ty.as_deref() {
            Some("integer") => Some(ColumnType::Integer),
            Some("text") => Some(ColumnType::Text),
            Some("real") => Some(ColumnType::Real),
            Some(other) => {
                problems.push(format!(
                    "{at}.type: {other:?} is not one of \"integer\", \"text\", \"real\""
                ));
                None
            }
            None => {
                problems.push(format!("{at}.type: required (\"integer\", \"text\" or \"real\")"));
                None
            }
        };
        let writable = col.writable.unwrap_or(false);
        let from = col.from.as_deref().unwrap_or(name);
        let keys: Vec<&str> = from.split('.').collect();
        if keys.iter().any(|k| k.is_empty()) {
            problems.push(format!(
                "{at}.from: {from:?} is not a dot path of keys like \"email_contact.contact_id\""
            ));
        } else if keys[0] == "id" {
            problems.push(format!(
                "{at}.from: {from:?} reads the record's id, which every mirror row holds in `id` already"
            ));
        }
        let payload_key = col.payload_key.as_deref().unwrap_or(name);
        if col.payload_key.is_some() && !writable {
            problems.push(format!(
                "{at}.payload_key: only a writable column is sent upstream"
            ));
        }
        if col.required_on_update == Some(true) && !writable {
            problems.push(format!(
                "{at}.required_on_update: only a writable column is sent upstream"
            ));
        }
        if writable && (payload_key.is_empty() || payload_key.contains('.') || payload_key == "id") {
            problems.push(format!(
                "{at}.payload_key: {payload_key:?} must be one plain key of the request body (not id)"
            ));
        }
        if problems.len() > before {
            continue;
        }
        let read_from = if keys.len() == 1 {
            JsonPath::Key(leak(from))
        } else {
            JsonPath::Nested(Box::leak(
                keys.iter()
                    .map(|k| leak(k))
                    .collect::<Vec<_>>()
                    .into_boxed_slice(),
            ))
        };
        out.push(Column {
            name: leak(name),
            ty: ty?,
            writable,
            required_on_update: col.required_on_update.unwrap_or(false),
            read_from,
            payload_key: leak(payload_key),
        });
    }
    // Paths that run through each other cannot both be values, and two writable columns
    // sent under one key would overwrite each other in the request body.
    for (i, a) in out.iter().enumerate() {
        for b in &out[i + 1..] {
            let (pa, pb) = (a.read_from.dotted(), b.read_from.dotted());
            let overlaps = pa == pb || pb.starts_with(&format!("{pa}.")) || pa.starts_with(&format!("{pb}."));
            if overlaps && (a.writable || b.writable) {
                problems.push(format!(
                    "{key}.columns ({}): `from` {pa:?} and {pb:?} (column {}) read the same place of the record; a request body \
                     written from both could not say what upstream holds. Make one of them read-only or point it elsewhere",
                    a.name, b.name
                ));
            }
            if a.writable && b.writable && a.payload_key == b.payload_key {
                problems.push(format!(
                    "{key}.columns ({}): payload_key {:?} is also column {}'s; each writable column needs its own key in the request body",
                    a.name, a.payload_key, b.name
                ));
            }
        }
    }
    (problems.len() == before).then_some(out)
}

/// The TOML that defines `spec` (a built-in prints as a definition to copy under another
/// name and adapt).
pub fn to_toml(spec: &ResourceSpec) -> String {
    to_toml_with_filters(spec, &[])
}

/// [`to_toml`] with the list filters a configuration gives the resource (a built-in's
/// `user_id` among them), so a copy keeps the same scope.
pub fn to_toml_with_filters(spec: &ResourceSpec, filters: &[(&str, String)]) -> String {
    let q = |s: &str| serde_json::Value::String(s.to_string()).to_string();
    let list = |items: &[&str]| format!("[{}]", items.iter().map(|s| q(s)).collect::<Vec<_>>().join(", "));
    let name = spec.table;
    let mut out = String::new();
    let _ = writeln!(out, "[resources.{name}]");
    let _ = writeln!(out, "upstream = {}", q(spec.upstream.as_str()));
    let _ = writeln!(out, "path = {}", q(spec.path));
    let _ = writeln!(out, "pagination = {}", q(spec.pagination.as_str()));
    let ops: Vec<&str> = [
        ("create", spec.can_create),
        ("update", spec.can_update),
        ("delete", spec.can_delete),
    ]
    .into_iter()
    .filter(|(_, can)| *can)
    .map(|(op, _)| op)
    .collect();
    let _ = writeln!(out, "operations = {}", list(&ops));
    let _ = writeln!(out, "create_returns_record = {}", spec.create_returns_record);
    let _ = writeln!(out, "natural_key = {}", list(spec.lookup_filters));
    if !filters.is_empty() {
        let pairs: Vec<String> = filters
            .iter()
            .map(|(k, v)| {
                let numeric = spec
                    .columns
                    .iter()
                    .find(|c| c.name == *k)
                    .is_some_and(|c| c.ty != ColumnType::Text && v.parse::<f64>().is_ok());
                format!("{k} = {}", if numeric { v.clone() } else { q(v) })
            })
            .collect();
        let _ = writeln!(out, "filters = {{ {} }}", pairs.join(", "));
    }
    for col in spec.columns {
        let _ = writeln!(out, "\n[[resources.{name}.columns]]");
        let _ = writeln!(out, "name = {}", q(col.name));
        let _ = writeln!(out, "type = {}", q(col.ty.as_str()));
        if col.read_from.dotted() != col.name {
            let _ = writeln!(out, "from = {}", q(&col.read_from.dotted()));
        }
        if col.writable {
            let _ = writeln!(out, "writable = true");
        }
        if col.required_on_update {
            let _ = writeln!(out, "required_on_update = true");
        }
        if col.writable && col.payload_key != col.name {
            let _ = writeln!(out, "payload_key = {}", q(col.payload_key));
        }
    }
    out
}
