//! `restsync resources`: the resources this configuration can sync (built-in and defined)
//! with their columns; `resources show NAME` prints one as the TOML that defines it.

use crate::config::Settings;
use crate::exit;
use crate::resources::{definition, ResourceKind, ResourceSpec};

/// `settings` is None when there is no configuration file: the built-ins are listed.
pub fn run(settings: Option<&Settings>, show: Option<&str>) -> i32 {
    let kinds = ResourceKind::all();
    if let Some(name) = show {
        return match kinds.iter().find(|k| k.name() == name) {
            Some(kind) => {
                let filters = settings
                    .and_then(|s| s.resource(*kind))
                    .map(|r| r.filters.clone())
                    .unwrap_or_default();
                outln!(
                    "{}",
                    definition::to_toml_with_filters(kind.spec(), &filters).trim_end()
                );
                exit::OK
            }
            None => {
                let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
                eprintln!(
                    "restsync: no resource named {name:?} (known: {})",
                    names.join(", ")
                );
                exit::USAGE
            }
        };
    }
    outln!(
        "{:<20} {:<10} {:<9} {:<26} {:<22} ENABLED",
        "RESOURCE",
        "UPSTREAM",
        "ORIGIN",
        "PATH",
        "OPERATIONS"
    );
    for kind in &kinds {
        let spec = kind.spec();
        let enabled = match settings {
            Some(s) if s.resource(*kind).is_some() => "yes",
            Some(_) => "no",
            None => "-",
        };
        outln!(
            "{:<20} {:<10} {:<9} {:<26} {:<22} {enabled}",
            spec.table,
            spec.upstream.as_str(),
            if kind.is_built_in() { "built-in" } else { "config" },
            spec.path,
            operations(spec)
        );
        outln!("    columns: {}", columns(spec));
    }
    exit::OK
}

fn operations(spec: &ResourceSpec) -> String {
    let mut ops = vec!["list"];
    for (op, can) in [
        ("create", spec.can_create),
        ("update", spec.can_update),
        ("delete", spec.can_delete),
    ] {
        if can {
            ops.push(op);
        }
    }
    ops.join(" ")
}

/// `local_id, id, contact_id integer writable (from phone_contact.contact_id), ...`
fn columns(spec: &ResourceSpec) -> String {
    let mut out = vec!["local_id".to_string(), "id".to_string()];
    for col in spec.columns {
        let mut text = format!("{} {}", col.name, col.ty.as_str());
        if col.writable {
            text.push_str(" writable");
        }
        if col.read_from.dotted() != col.name {
            text.push_str(&format!(" (from {})", col.read_from.dotted()));
        }
        out.push(text);
    }
    out.join(", ")
}
