//! The three-way merge of one record: upstream now, the base snapshot (the last state both
//! sides agreed on) and the local mirror row. Pure: decides, does not write.

use crate::config::ConflictPolicy;
use crate::resources::{Record, ResourceSpec};
use crate::store::mirror::{BaseRow, MirrorRow};
use rusqlite::types::Value;

#[derive(Debug, PartialEq)]
pub enum MirrorAction {
    None,
    Insert(Vec<Value>),
    Update {
        local_id: i64,
        values: Vec<Value>,
    },
    Delete {
        local_id: i64,
    },
    /// Keep the row but forget its upstream id, so it is created again upstream.
    Unlink {
        local_id: i64,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConflictNote {
    pub kind: &'static str,
    pub field: Option<&'static str>,
    pub base: Option<String>,
    pub local: Option<String>,
    pub remote: Option<String>,
}

#[derive(Debug, PartialEq)]
pub struct Merged {
    pub mirror: MirrorAction,
    pub conflicts: Vec<ConflictNote>,
}

/// Conflict values are stored as JSON, so the losing value can be recovered exactly.
fn text(v: &Value) -> String {
    crate::resources::value_to_json(v).to_string()
}

fn row_text(spec: &ResourceSpec, values: &[Value]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = spec
        .columns
        .iter()
        .zip(values)
        .map(|(c, v)| (c.name.to_string(), crate::resources::value_to_json(v)))
        .collect();
    serde_json::Value::Object(map).to_string()
}

fn writable_equal(spec: &ResourceSpec, a: &[Value], b: &[Value]) -> bool {
    spec.changed_writable(a, b).is_empty()
}

/// Merges a record that upstream holds. The base snapshot becomes `upstream` afterwards.
pub fn merge_present(
    spec: &ResourceSpec,
    policy: ConflictPolicy,
    upstream: &Record,
    base: Option<&BaseRow>,
    local: Option<&MirrorRow>,
) -> Merged {
    let mut conflicts = Vec::new();
    let mirror = match (base, local) {
        (None, None) => MirrorAction::Insert(upstream.values.clone()),
        // A row that names this id without a base: its writable values are local edits.
        (None, Some(m)) => {
            let base_values = upstream.values.clone();
            let merged = merge_fields(
                spec,
                policy,
                &base_values,
                &m.values,
                &upstream.values,
                &mut conflicts,
            );
            update_if_changed(m, merged)
        }
        (Some(b), None) => {
            if writable_equal(spec, &b.values, &upstream.values) {
                // Deleted locally, unchanged upstream: the delete will be pushed.
                MirrorAction::None
            } else {
                let resolution_restores = policy == ConflictPolicy::RemoteWins;
                conflicts.push(ConflictNote {
                    kind: "deleted_locally",
                    field: None,
                    base: Some(row_text(spec, &b.values)),
                    local: None,
                    remote: Some(row_text(spec, &upstream.values)),
                });
                if resolution_restores {
                    MirrorAction::Insert(upstream.values.clone())
                } else {
                    MirrorAction::None
                }
            }
        }
        (Some(b), Some(m)) => {
            let merged = merge_fields(
                spec,
                policy,
                &b.values,
                &m.values,
                &upstream.values,
                &mut conflicts,
            );
            update_if_changed(m, merged)
        }
    };
    Merged { mirror, conflicts }
}

fn update_if_changed(m: &MirrorRow, merged: Vec<Value>) -> MirrorAction {
    if merged == m.values {
        MirrorAction::None
    } else {
        MirrorAction::Update {
            local_id: m.local_id,
            values: merged,
        }
    }
}

/// Field by field: a side that did not change takes the other's value; both changed to
/// different values is a conflict the policy settles. Read-only columns follow upstream.
fn merge_fields(
    spec: &ResourceSpec,
    policy: ConflictPolicy,
    base: &[Value],
    local: &[Value],
    remote: &[Value],
    conflicts: &mut Vec<ConflictNote>,
) -> Vec<Value> {
    spec.columns
        .iter()
        .enumerate()
        .map(|(i, col)| {
            let (b, l, r) = (&base[i], &local[i], &remote[i]);
            if !col.writable || l == b || l == r {
                r.clone()
            } else if r == b {
                l.clone()
            } else {
                conflicts.push(ConflictNote {
                    kind: "field",
                    field: Some(col.name),
                    base: Some(text(b)),
                    local: Some(text(l)),
                    remote: Some(text(r)),
                });
                match policy {
                    ConflictPolicy::RemoteWins => r.clone(),
                    ConflictPolicy::LocalWins => l.clone(),
                }
            }
        })
        .collect()
}

/// Merges a record upstream no longer holds (verified by a complete walk).
pub fn merge_absent(
    spec: &ResourceSpec,
    policy: ConflictPolicy,
    base: &BaseRow,
    local: Option<&MirrorRow>,
) -> Merged {
    match local {
        None => Merged {
            mirror: MirrorAction::None,
            conflicts: Vec::new(),
        },
        Some(m) if writable_equal(spec, &base.values, &m.values) => Merged {
            mirror: MirrorAction::Delete { local_id: m.local_id },
            conflicts: Vec::new(),
        },
        Some(m) => Merged {
            mirror: match policy {
                ConflictPolicy::RemoteWins => MirrorAction::Delete { local_id: m.local_id },
                ConflictPolicy::LocalWins => MirrorAction::Unlink { local_id: m.local_id },
            },
            conflicts: vec![ConflictNote {
                kind: "deleted_upstream",
                field: None,
                base: Some(row_text(spec, &base.values)),
                local: Some(row_text(spec, &m.values)),
                remote: None,
            }],
        },
    }
}

#[cfg(test)]
mod tests;
