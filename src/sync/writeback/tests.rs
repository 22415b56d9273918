//! Write-back and removals on an in-memory store: restsync's own writes record no edit,
//! and where they leave a change to push (an edit kept, a row deleted while its create was
//! unresolved, a local edit kept against a removal) the row is marked for the next pass.

use super::*;
use crate::config::ConflictPolicy;
use crate::store::fixtures::{phone_row, phones, synced};
use crate::store::journal::{Event, NewEntry, Op};
use crate::store::tracking::{self, Mark};
use crate::sync::removal::apply_removals;

fn phone(description: &str) -> Vec<Value> {
    phone_row(description)
}

fn pulled(store: &mut Store, id: i64, description: &str) -> i64 {
    synced(store, phones(), id, &phone(description))
}

fn marks(store: &Store) -> Vec<Mark> {
    tracking::marks(store.conn(), "phone_numbers", None, 1000).unwrap()
}

/// A create entry for `local_id`, sent, with its outcome unknown.
fn unresolved_create(store: &mut Store, local_id: i64, values: &[Value]) -> Entry {
    store
        .write(|tx| {
            let seq = journal::insert(
                tx,
                &NewEntry {
                    resource: "phone_numbers",
                    op: Op::Create,
                    local_id: Some(local_id),
                    upstream_id: None,
                    payload: "{}",
                    row_values: &phones().values_to_json(values),
                },
            )?;
            journal::advance(tx, seq, &Event::Send)?;
            Ok(journal::get(tx, seq)?.expect("entry"))
        })
        .unwrap()
}

#[test]
fn a_column_edited_during_the_request_keeps_the_persons_value() {
    let sent = phone("sent");
    let mut current = phone("edited meanwhile");
    current[0] = sent[0].clone();
    let mut upstream = phone("sent");
    upstream[5] = Value::Integer(99);
    let values = write_back_values(phones(), &current, &sent, &upstream);
    assert_eq!(values[4], Value::Text("edited meanwhile".into()));
    assert_eq!(values[5], Value::Integer(99), "read-only columns take upstream's");
}

#[test]
fn a_write_back_over_an_untouched_row_leaves_no_mark() {
    let mut store = Store::open_in_memory().unwrap();
    pulled(&mut store, 10, "a");
    let record = Record {
        id: 10,
        values: phone("b"),
    };
    let seq = store
        .write(|tx| {
            let seq = journal::insert(
                tx,
                &NewEntry {
                    resource: "phone_numbers",
                    op: Op::Update,
                    local_id: Some(1),
                    upstream_id: Some(10),
                    payload: "{}",
                    row_values: "[]",
                },
            )?;
            journal::advance(tx, seq, &Event::Send)?;
            Ok(seq)
        })
        .unwrap();
    let payload = serde_json::json!({"description": "b"});
    let applied = write_back_update(
        &mut store,
        phones(),
        seq,
        &record,
        &phone("b"),
        payload.as_object().unwrap(),
        "{}",
    )
    .unwrap();
    assert!(applied);
    assert!(marks(&store).is_empty());
    assert_eq!(tracking::edits(store.conn()).unwrap(), 0);
}

#[test]
fn adopting_a_create_whose_row_was_deleted_meanwhile_marks_the_delete() {
    let mut store = Store::open_in_memory().unwrap();
    let local = store
        .write(|c| mirror::insert_mirror(c, phones(), None, &phone("new")))
        .unwrap();
    let entry = unresolved_create(&mut store, local, &phone("new"));
    // The person deletes the row while the create's outcome is unknown; the mark is
    // consumed by a pass that cannot act on it yet.
    mirror::delete_mirror(store.person(), phones(), local).unwrap();
    store
        .write(|tx| tracking::clear(tx, "phone_numbers", &[Mark::Row(local)]))
        .unwrap();
    let record = Record {
        id: 55,
        values: phone("new"),
    };
    adopt(&mut store, phones(), &entry, &record, "{}").unwrap();
    assert_eq!(
        marks(&store),
        vec![Mark::Upstream(55)],
        "the delete is looked at next"
    );
    let checked = mirror::changes_of(store.conn(), phones(), &marks(&store)).unwrap();
    assert_eq!(checked.changes.deletes.len(), 1);
}

#[test]
fn a_local_edit_kept_against_a_removal_is_marked_as_a_create() {
    for (policy, kept) in [
        (ConflictPolicy::LocalWins, true),
        (ConflictPolicy::RemoteWins, false),
    ] {
        let mut store = Store::open_in_memory().unwrap();
        let local = pulled(&mut store, 10, "a");
        mirror::update_mirror(store.person(), phones(), local, &phone("edited")).unwrap();
        store
            .write(|tx| tracking::clear(tx, "phone_numbers", &[Mark::Row(local)]))
            .unwrap();
        apply_removals(&mut store, phones(), policy, &[10]).unwrap();
        let row = mirror::mirror_by_local_id(store.conn(), phones(), local).unwrap();
        if kept {
            assert_eq!(row.map(|r| r.id), Some(None), "{policy:?}: unlinked");
            assert_eq!(marks(&store), vec![Mark::Row(local)], "{policy:?}");
        } else {
            assert!(row.is_none(), "{policy:?}: removed");
            assert!(marks(&store).is_empty(), "{policy:?}");
        }
    }
}

/// An update answered without the value sent (upstream ignored the field): the row keeps
/// the user's value, the base takes upstream's, and the entry fails naming the field.
#[test]
fn an_update_upstream_did_not_apply_fails_and_keeps_the_edit() {
    let mut store = Store::open_in_memory().unwrap();
    let local = pulled(&mut store, 10, "a");
    store
        .person()
        .execute("UPDATE phone_numbers SET description = 'mine' WHERE id = 10", [])
        .unwrap();
    let seq = store
        .write(|tx| {
            let seq = journal::insert(
                tx,
                &NewEntry {
                    resource: "phone_numbers",
                    op: Op::Update,
                    local_id: Some(local),
                    upstream_id: Some(10),
                    payload: r#"{"description":"mine"}"#,
                    row_values: &phones().values_to_json(&phone("mine")),
                },
            )?;
            journal::advance(tx, seq, &Event::Send)?;
            Ok(seq)
        })
        .unwrap();
    // Upstream answers with the old value: it did not take the field.
    let record = Record {
        id: 10,
        values: phone("a"),
    };
    let payload = serde_json::json!({"description": "mine"});
    let applied = write_back_update(
        &mut store,
        phones(),
        seq,
        &record,
        &phone("mine"),
        payload.as_object().unwrap(),
        "{}",
    )
    .unwrap();
    assert!(!applied);
    let row = mirror::mirror_by_id(store.conn(), phones(), 10).unwrap().unwrap();
    assert_eq!(row.values[4], Value::Text("mine".into()), "the edit is kept");
    let base = mirror::base_by_id(store.conn(), phones(), 10).unwrap().unwrap();
    assert_eq!(base.values[4], Value::Text("a".into()), "the base is upstream's");
    let entry = journal::get(store.conn(), seq).unwrap().unwrap();
    assert_eq!(entry.stage, crate::store::journal::Stage::Failed);
    let error = entry.last_error.unwrap_or_default();
    assert!(
        error.contains("description: sent \"mine\", upstream holds \"a\""),
        "{error}"
    );
    // Numbers in another JSON form are the same value, not an ignored field.
    let payload = serde_json::json!({"contact_id": 5, "number": "0912"});
    let mut sent = phone("x");
    sent[0] = Value::Integer(5);
    sent[2] = Value::Integer(912);
    let mut answer = sent.clone();
    answer[0] = Value::Text("5".into());
    answer[2] = Value::Text("912".into());
    assert!(not_applied(phones(), payload.as_object().unwrap(), &sent, &answer).is_empty());
}
