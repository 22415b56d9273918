//! Unit tests of the three-way merge: every case of `merge_present` and `merge_absent`.

use super::*;
use crate::resources::ResourceKind;

const LOCAL_ID: i64 = 7;
const ID: i64 = 245621;

fn spec() -> &'static ResourceSpec {
    ResourceKind::PHONE_NUMBERS.spec()
}

/// A phone number row: contact_id, type, number, extension, description, profile_id
/// (the last one read-only).
fn phone(number: &str, description: Option<&str>, profile_id: i64) -> Vec<Value> {
    vec![
        Value::Integer(1935038),
        Value::Integer(0),
        Value::Text(number.into()),
        Value::Null,
        description.map_or(Value::Null, |d| Value::Text(d.into())),
        Value::Integer(profile_id),
    ]
}

fn record(values: Vec<Value>) -> Record {
    Record { id: ID, values }
}

fn base(values: Vec<Value>) -> BaseRow {
    BaseRow {
        id: ID,
        local_id: Some(LOCAL_ID),
        values,
        hash: 1,
    }
}

fn local(values: Vec<Value>) -> MirrorRow {
    MirrorRow {
        local_id: LOCAL_ID,
        id: Some(ID),
        values,
    }
}

fn parse_json(text: &Option<String>) -> serde_json::Value {
    serde_json::from_str(text.as_deref().expect("row text present")).expect("row text is JSON")
}

const POLICIES: [ConflictPolicy; 2] = [ConflictPolicy::RemoteWins, ConflictPolicy::LocalWins];

#[test]
fn new_upstream_record_is_inserted() {
    let up = record(phone("0928846763", None, 1));
    for policy in POLICIES {
        let m = merge_present(spec(), policy, &up, None, None);
        assert_eq!(m.mirror, MirrorAction::Insert(up.values.clone()));
        assert!(m.conflicts.is_empty());
    }
}

#[test]
fn unchanged_on_both_sides_does_nothing() {
    let v = phone("0928846763", Some("home"), 1);
    for policy in POLICIES {
        let m = merge_present(
            spec(),
            policy,
            &record(v.clone()),
            Some(&base(v.clone())),
            Some(&local(v.clone())),
        );
        assert_eq!(m.mirror, MirrorAction::None);
        assert!(m.conflicts.is_empty());
    }
}

#[test]
fn change_only_upstream_updates_the_mirror() {
    let b = phone("0928846763", Some("home"), 1);
    let up = phone("0928846763", Some("office"), 1);
    for policy in POLICIES {
        let m = merge_present(
            spec(),
            policy,
            &record(up.clone()),
            Some(&base(b.clone())),
            Some(&local(b.clone())),
        );
        assert_eq!(
            m.mirror,
            MirrorAction::Update {
                local_id: LOCAL_ID,
                values: up.clone()
            }
        );
        assert!(m.conflicts.is_empty());
    }
}

#[test]
fn change_only_local_keeps_the_local_row() {
    let b = phone("0928846763", Some("home"), 1);
    let l = phone("0928846763", Some("edited here"), 1);
    for policy in POLICIES {
        let m = merge_present(
            spec(),
            policy,
            &record(b.clone()),
            Some(&base(b.clone())),
            Some(&local(l.clone())),
        );
        // The merged row equals the local row: nothing to write to the mirror.
        assert_eq!(m.mirror, MirrorAction::None, "{policy:?}");
        assert!(m.conflicts.is_empty());
    }
}

#[test]
fn both_changed_different_fields_keeps_both_changes() {
    let b = phone("0928846763", Some("home"), 1);
    let l = phone("0911222333", Some("home"), 1);
    let up = phone("0928846763", Some("office"), 1);
    for policy in POLICIES {
        let m = merge_present(
            spec(),
            policy,
            &record(up.clone()),
            Some(&base(b.clone())),
            Some(&local(l.clone())),
        );
        assert_eq!(
            m.mirror,
            MirrorAction::Update {
                local_id: LOCAL_ID,
                values: phone("0911222333", Some("office"), 1)
            },
            "{policy:?}"
        );
        assert!(m.conflicts.is_empty());
    }
}

#[test]
fn same_field_conflict_remote_wins_takes_upstream_and_notes_it() {
    let b = phone("0928846763", Some("home"), 1);
    let l = phone("0928846763", Some("mine"), 1);
    let up = phone("0928846763", Some("theirs"), 1);
    let m = merge_present(
        spec(),
        ConflictPolicy::RemoteWins,
        &record(up.clone()),
        Some(&base(b)),
        Some(&local(l)),
    );
    assert_eq!(
        m.mirror,
        MirrorAction::Update {
            local_id: LOCAL_ID,
            values: up
        }
    );
    assert_eq!(
        m.conflicts,
        vec![ConflictNote {
            kind: "field",
            field: Some("description"),
            base: Some("\"home\"".into()),
            local: Some("\"mine\"".into()),
            remote: Some("\"theirs\"".into()),
        }]
    );
}

#[test]
fn same_field_conflict_local_wins_keeps_local_and_notes_it() {
    let b = phone("0928846763", Some("home"), 1);
    let l = phone("0928846763", Some("mine"), 1);
    let up = phone("0928846763", Some("theirs"), 1);
    let m = merge_present(
        spec(),
        ConflictPolicy::LocalWins,
        &record(up),
        Some(&base(b)),
        Some(&local(l)),
    );
    assert_eq!(m.mirror, MirrorAction::None);
    assert_eq!(
        m.conflicts,
        vec![ConflictNote {
            kind: "field",
            field: Some("description"),
            base: Some("\"home\"".into()),
            local: Some("\"mine\"".into()),
            remote: Some("\"theirs\"".into()),
        }]
    );
}

#[test]
fn local_wins_conflict_still_takes_other_upstream_changes() {
    let b = phone("0928846763", Some("home"), 1);
    let l = phone("0928846763", Some("mine"), 1);
    // Upstream changed the description (conflict) and the number (no conflict).
    let up = phone("0911000000", Some("theirs"), 1);
    let m = merge_present(
        spec(),
        ConflictPolicy::LocalWins,
        &record(up),
        Some(&base(b)),
        Some(&local(l)),
    );
    assert_eq!(
        m.mirror,
        MirrorAction::Update {
            local_id: LOCAL_ID,
            values: phone("0911000000", Some("mine"), 1)
        }
    );
    assert_eq!(m.conflicts.len(), 1);
    assert_eq!(m.conflicts[0].field, Some("description"));
}

#[test]
fn conflict_values_are_stored_as_json() {
    // type (an integer column) changed on both sides; the base description was NULL and
    // both sides set different texts.
    let mut b = phone("1", None, 1);
    let mut l = phone("1", Some("l"), 1);
    let mut up = phone("1", Some("r"), 1);
    b[1] = Value::Integer(0);
    l[1] = Value::Integer(2);
    up[1] = Value::Integer(3);
    let m = merge_present(
        spec(),
        ConflictPolicy::RemoteWins,
        &record(up.clone()),
        Some(&base(b)),
        Some(&local(l)),
    );
    assert_eq!(
        m.conflicts,
        vec![
            ConflictNote {
                kind: "field",
                field: Some("type"),
                base: Some("0".into()),
                local: Some("2".into()),
                remote: Some("3".into()),
            },
            ConflictNote {
                kind: "field",
                field: Some("description"),
                base: Some("null".into()),
                local: Some("\"l\"".into()),
                remote: Some("\"r\"".into()),
            },
        ]
    );
    assert_eq!(
        m.mirror,
        MirrorAction::Update {
            local_id: LOCAL_ID,
            values: up
        }
    );
}

#[test]
fn both_changed_to_the_same_value_is_no_conflict() {
    let b = phone("0928846763", Some("home"), 1);
    let both = phone("0928846763", Some("same"), 1);
    for policy in POLICIES {
        let m = merge_present(
            spec(),
            policy,
            &record(both.clone()),
            Some(&base(b.clone())),
            Some(&local(both.clone())),
        );
        assert_eq!(m.mirror, MirrorAction::None);
        assert!(m.conflicts.is_empty(), "{:?}", m.conflicts);
    }
}

#[test]
fn read_only_columns_always_follow_upstream() {
    let b = phone("0928846763", None, 1);
    for policy in POLICIES {
        // Edited locally, changed upstream too: upstream's value, no conflict.
        let m = merge_present(
            spec(),
            policy,
            &record(phone("0928846763", None, 2)),
            Some(&base(b.clone())),
            Some(&local(phone("0928846763", None, 99))),
        );
        assert_eq!(
            m.mirror,
            MirrorAction::Update {
                local_id: LOCAL_ID,
                values: phone("0928846763", None, 2)
            }
        );
        assert!(m.conflicts.is_empty());
        // Edited locally only: put back to upstream's value.
        let m = merge_present(
            spec(),
            policy,
            &record(b.clone()),
            Some(&base(b.clone())),
            Some(&local(phone("0928846763", None, 99))),
        );
        assert_eq!(
            m.mirror,
            MirrorAction::Update {
                local_id: LOCAL_ID,
                values: b.clone()
            }
        );
        assert!(m.conflicts.is_empty());
    }
}

#[test]
fn deleted_locally_and_unchanged_upstream_leaves_the_delete_to_push() {
    let b = phone("0928846763", Some("home"), 1);
    for policy in POLICIES {
        let m = merge_present(spec(), policy, &record(b.clone()), Some(&base(b.clone())), None);
        assert_eq!(m.mirror, MirrorAction::None);
        assert!(m.conflicts.is_empty());
        // A change upstream to a read-only column only is not an edit that conflicts.
        let m = merge_present(
            spec(),
            policy,
            &record(phone("0928846763", Some("home"), 5)),
            Some(&base(b.clone())),
            None,
        );
        assert_eq!(m.mirror, MirrorAction::None);
        assert!(m.conflicts.is_empty());
    }
}

#[test]
fn deleted_locally_and_edited_upstream_remote_wins_restores_the_row() {
    let b = phone("0928846763", Some("home"), 1);
    let up = phone("0928846763", Some("office"), 1);
    let m = merge_present(
        spec(),
        ConflictPolicy::RemoteWins,
        &record(up.clone()),
        Some(&base(b)),
        None,
    );
    assert_eq!(m.mirror, MirrorAction::Insert(up));
    assert_eq!(m.conflicts.len(), 1);
    let c = &m.conflicts[0];
    assert_eq!(c.kind, "deleted_locally");
    assert_eq!(c.field, None);
    assert_eq!(c.local, None);
    assert_eq!(parse_json(&c.base)["description"], "home");
    assert_eq!(parse_json(&c.remote)["description"], "office");
    assert_eq!(parse_json(&c.remote)["number"], "0928846763");
    assert_eq!(parse_json(&c.remote)["contact_id"], 1935038);
}

#[test]
fn deleted_locally_and_edited_upstream_local_wins_keeps_it_deleted() {
    let b = phone("0928846763", Some("home"), 1);
    let up = phone("0928846763", Some("office"), 1);
    let m = merge_present(
        spec(),
        ConflictPolicy::LocalWins,
        &record(up),
        Some(&base(b)),
        None,
    );
    assert_eq!(m.mirror, MirrorAction::None);
    assert_eq!(m.conflicts.len(), 1);
    let c = &m.conflicts[0];
    assert_eq!(c.kind, "deleted_locally");
    assert_eq!(c.local, None);
    assert_eq!(parse_json(&c.base)["description"], "home");
    assert_eq!(parse_json(&c.remote)["description"], "office");
}

#[test]
fn row_with_id_but_no_base_treats_local_values_as_edits() {
    let up = phone("0928846763", Some("upstream"), 1);
    for policy in POLICIES {
        // Same as upstream: nothing to do.
        let m = merge_present(
            spec(),
            policy,
            &record(up.clone()),
            None,
            Some(&local(up.clone())),
        );
        assert_eq!(m.mirror, MirrorAction::None);
        assert!(m.conflicts.is_empty());
        // Writable columns differ: the local values are kept, without a conflict.
        let m = merge_present(
            spec(),
            policy,
            &record(up.clone()),
            None,
            Some(&local(phone("0911222333", Some("local"), 1))),
        );
        assert_eq!(m.mirror, MirrorAction::None, "{policy:?}");
        assert!(m.conflicts.is_empty());
        // A read-only column differs: it takes upstream's value, writable edits stay.
        let m = merge_present(
            spec(),
            policy,
            &record(up.clone()),
            None,
            Some(&local(phone("0911222333", Some("upstream"), 42))),
        );
        assert_eq!(
            m.mirror,
            MirrorAction::Update {
                local_id: LOCAL_ID,
                values: phone("0911222333", Some("upstream"), 1)
            }
        );
        assert!(m.conflicts.is_empty());
    }
}

#[test]
fn smart_number_read_only_phones_follow_upstream() {
    let spec = ResourceKind::SMART_NUMBERS.spec();
    let row = |phone_a: &str, phone_b: &str, desc: &str| {
        vec![
            Value::Integer(40),
            Value::Text(phone_a.into()),
            Value::Text(phone_b.into()),
            Value::Text("79770005419".into()),
            Value::Text(desc.into()),
            Value::Text("2022-07-01 07:59:59".into()),
        ]
    };
    let b = row("79991230046", "37410324040", "test");
    let l = row("70000000000", "37410324040", "renamed");
    let up = row("79991230047", "37410324040", "test");
    let m = merge_present(
        spec,
        ConflictPolicy::RemoteWins,
        &record(up),
        Some(&base(b)),
        Some(&local(l)),
    );
    assert_eq!(
        m.mirror,
        MirrorAction::Update {
            local_id: LOCAL_ID,
            values: row("79991230047", "37410324040", "renamed")
        }
    );
    assert!(m.conflicts.is_empty());
}

#[test]
fn absent_upstream_and_unchanged_locally_deletes_the_row() {
    let b = phone("0928846763", Some("home"), 1);
    for policy in POLICIES {
        let m = merge_absent(spec(), policy, &base(b.clone()), Some(&local(b.clone())));
        assert_eq!(m.mirror, MirrorAction::Delete { local_id: LOCAL_ID });
        assert!(m.conflicts.is_empty());
        // A local edit to a read-only column is not an edit worth keeping.
        let m = merge_absent(
            spec(),
            policy,
            &base(b.clone()),
            Some(&local(phone("0928846763", Some("home"), 77))),
        );
        assert_eq!(m.mirror, MirrorAction::Delete { local_id: LOCAL_ID });
        assert!(m.conflicts.is_empty());
    }
}

#[test]
fn absent_upstream_and_edited_locally_remote_wins_deletes_with_a_conflict() {
    let b = phone("0928846763", Some("home"), 1);
    let l = phone("0928846763", Some("edited"), 1);
    let m = merge_absent(spec(), ConflictPolicy::RemoteWins, &base(b), Some(&local(l)));
    assert_eq!(m.mirror, MirrorAction::Delete { local_id: LOCAL_ID });
    assert_eq!(m.conflicts.len(), 1);
    let c = &m.conflicts[0];
    assert_eq!(c.kind, "deleted_upstream");
    assert_eq!(c.field, None);
    assert_eq!(c.remote, None);
    assert_eq!(parse_json(&c.base)["description"], "home");
    assert_eq!(parse_json(&c.local)["description"], "edited");
}

#[test]
fn absent_upstream_and_edited_locally_local_wins_unlinks_with_a_conflict() {
    let b = phone("0928846763", Some("home"), 1);
    let l = phone("0928846763", Some("edited"), 1);
    let m = merge_absent(spec(), ConflictPolicy::LocalWins, &base(b), Some(&local(l)));
    assert_eq!(m.mirror, MirrorAction::Unlink { local_id: LOCAL_ID });
    assert_eq!(m.conflicts.len(), 1);
    let c = &m.conflicts[0];
    assert_eq!(c.kind, "deleted_upstream");
    assert_eq!(c.remote, None);
    assert_eq!(parse_json(&c.base)["description"], "home");
    assert_eq!(parse_json(&c.local)["description"], "edited");
}

#[test]
fn absent_upstream_without_local_row_does_nothing() {
    let b = phone("0928846763", Some("home"), 1);
    for policy in POLICIES {
        let m = merge_absent(spec(), policy, &base(b.clone()), None);
        assert_eq!(m.mirror, MirrorAction::None);
        assert!(m.conflicts.is_empty());
    }
}
