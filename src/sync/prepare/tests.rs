//! Fetch before write on an in-memory store: the merge against upstream's current record
//! decides what is sent, and records what it had to decide.

use super::*;
use crate::resources::ResourceKind;
use crate::store::journal::{NewEntry, Stage};
use crate::store::{content_hash, mirror, sync_state, Store};
use rusqlite::types::Value;
use serde_json::json;

fn phones() -> &'static ResourceSpec {
    ResourceKind::PHONE_NUMBERS.spec()
}

/// contact_id, type, number, extension, description, profile_id
fn row(contact: i64, description: &str) -> Vec<Value> {
    vec![
        Value::Integer(contact),
        Value::Integer(2),
        Value::Text("0912".into()),
        Value::Null,
        Value::Text(description.into()),
        Value::Integer(7),
    ]
}

fn upstream(contact: i64, description: &str) -> Json {
    json!({"id": 10, "phone_contact": {"contact_id": contact}, "type": 2, "number": "0912",
           "extension": null, "description": description, "profile_id": 7})
}

/// A synced record edited locally to `local`, with its queued update entry.
fn edited(store: &mut Store, local: &[Value], op: Op) -> Entry {
    let c = store.conn();
    let base = row(1, "base");
    let local_id = mirror::insert_mirror(c, phones(), Some(10), &base).unwrap();
    mirror::upsert_base(c, phones(), 10, Some(local_id), &base, "{}", content_hash(b"{}")).unwrap();
    match op {
        Op::Delete => mirror::delete_mirror(c, phones(), local_id).unwrap(),
        _ => mirror::update_mirror(c, phones(), local_id, local).unwrap(),
    }
    let row_values = match op {
        Op::Delete => phones().values_to_json(&base),
        _ => journal_values(phones(), local),
    };
    let seq = journal::insert(
        c,
        &NewEntry {
            resource: "phone_numbers",
            op,
            local_id: Some(local_id),
            upstream_id: Some(10),
            payload: "{}",
            row_values: &row_values,
        },
    )
    .unwrap();
    journal::get(c, seq).unwrap().unwrap()
}

fn prepare(store: &mut Store, entry: Entry, remote: Option<Json>) -> Prepared {
    merge_with_upstream(store, phones(), ConflictPolicy::RemoteWins, entry, remote)
        .unwrap()
        .unwrap()
}

#[test]
fn a_required_field_changed_upstream_is_sent_at_upstreams_value() {
    let mut store = Store::open_in_memory().unwrap();
    let entry = edited(&mut store, &row(1, "mine"), Op::Update);
    let Prepared::Send(sent) = prepare(&mut store, entry, Some(upstream(99, "base"))) else {
        panic!("nothing to send");
    };
    let payload: Json = serde_json::from_str(&sent.payload).unwrap();
    assert_eq!(payload, json!({"contact_id": 99, "description": "mine"}));
    // The mirror took the contact moved upstream; the journal holds what is sent.
    let now = mirror::mirror_by_id(store.conn(), phones(), 10).unwrap().unwrap();
    assert_eq!(now.values, row(99, "mine"));
    assert_eq!(
        journal::get(store.conn(), sent.seq).unwrap().unwrap().payload,
        sent.payload
    );
}

#[test]
fn a_same_field_edit_upstream_goes_through_the_policy_and_is_recorded() {
    let mut store = Store::open_in_memory().unwrap();
    let entry = edited(&mut store, &row(1, "mine"), Op::Update);
    let seq = entry.seq;
    let prepared = prepare(&mut store, entry, Some(upstream(1, "theirs")));
    assert!(
        matches!(prepared, Prepared::Settled(Settled::MergedAway)),
        "{prepared:?}"
    );
    assert_eq!(
        journal::get(store.conn(), seq).unwrap().unwrap().stage,
        Stage::Superseded
    );
    assert_eq!(
        sync_state::conflict_count(store.conn(), "phone_numbers").unwrap(),
        1
    );
    let now = mirror::mirror_by_id(store.conn(), phones(), 10).unwrap().unwrap();
    assert_eq!(now.values, row(1, "theirs"));
}

#[test]
fn an_update_upstream_already_holds_is_done_without_a_request() {
    let mut store = Store::open_in_memory().unwrap();
    let entry = edited(&mut store, &row(1, "mine"), Op::Update);
    let seq = entry.seq;
    let prepared = prepare(&mut store, entry, Some(upstream(1, "mine")));
    assert!(
        matches!(prepared, Prepared::Settled(Settled::AlreadyUpstream)),
        "{prepared:?}"
    );
    assert_eq!(
        journal::get(store.conn(), seq).unwrap().unwrap().stage,
        Stage::Done
    );
}

#[test]
fn a_delete_of_a_record_edited_upstream_restores_it_under_remote_wins() {
    let mut store = Store::open_in_memory().unwrap();
    let entry = edited(&mut store, &[], Op::Delete);
    let prepared = prepare(&mut store, entry, Some(upstream(1, "edited upstream")));
    assert!(
        matches!(prepared, Prepared::Settled(Settled::MergedAway)),
        "{prepared:?}"
    );
    let back = mirror::mirror_by_id(store.conn(), phones(), 10).unwrap().unwrap();
    assert_eq!(back.values, row(1, "edited upstream"));
    assert_eq!(
        sync_state::conflict_count(store.conn(), "phone_numbers").unwrap(),
        1
    );
}

#[test]
fn a_record_gone_upstream_settles_a_delete_and_conflicts_with_an_update() {
    let mut store = Store::open_in_memory().unwrap();
    let delete = edited(&mut store, &[], Op::Delete);
    let seq = delete.seq;
    assert!(matches!(
        prepare(&mut store, delete, None),
        Prepared::Settled(Settled::AlreadyUpstream)
    ));
    assert_eq!(
        journal::get(store.conn(), seq).unwrap().unwrap().stage,
        Stage::Done
    );

    let mut store = Store::open_in_memory().unwrap();
    let update = edited(&mut store, &row(1, "mine"), Op::Update);
    assert!(matches!(
        prepare(&mut store, update, None),
        Prepared::Settled(Settled::MergedAway)
    ));
    // remote-wins: deleted upstream wins over the edit, and the edit is in `conflicts`.
    assert!(mirror::mirror_by_id(store.conn(), phones(), 10)
        .unwrap()
        .is_none());
    assert_eq!(
        sync_state::conflict_count(store.conn(), "phone_numbers").unwrap(),
        1
    );
}
