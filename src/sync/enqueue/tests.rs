//! Enqueue on an in-memory store: one entry per changed row, written before any request;
//! stale entries superseded, unresolved ones never; changes that cannot be pushed refused.

use super::*;
use crate::resources::ResourceKind;
use crate::store::fixtures::{self, phone_row, phones};
use crate::store::journal::{Event, Stage};
use crate::store::{mirror, Store};
use rusqlite::types::Value;

fn smart() -> &'static ResourceSpec {
    ResourceKind::SMART_NUMBERS.spec()
}

/// user_id, phone_a, phone_b, phone_x, description, created_at
fn smart_row(user: i64, phone_b: &str) -> Vec<Value> {
    vec![
        Value::Integer(user),
        Value::Null,
        Value::Text(phone_b.into()),
        Value::Null,
        Value::Text("d".into()),
        Value::Null,
    ]
}

/// A record known upstream, as a pull writes it (edits in these tests go through
/// `store.person()`, tracked as a person's would be).
fn synced(store: &mut Store, spec: &ResourceSpec, id: i64, values: &[Value]) -> i64 {
    fixtures::synced(store, spec, id, values)
}

fn run(store: &mut Store, spec: &'static ResourceSpec, scope: &[(&'static str, String)]) -> Vec<Entry> {
    enqueue(store, spec, scope).unwrap();
    journal::due(
        store.conn(),
        spec.table,
        0,
        &crate::store::now_text(),
        true,
        usize::MAX >> 1,
    )
    .unwrap()
}

#[test]
fn an_idle_mirror_writes_nothing() {
    let mut store = Store::open_in_memory().unwrap();
    synced(&mut store, phones(), 10, &phone_row("a"));
    // The daily full check has run (it writes its time).
    run(&mut store, phones(), &[]);
    let before: i64 = store
        .conn()
        .query_row("PRAGMA data_version", [], |r| r.get(0))
        .unwrap();
    let changes = store.conn().total_changes();
    assert!(run(&mut store, phones(), &[]).is_empty());
    assert_eq!(store.conn().total_changes(), changes, "nothing written");
    let after: i64 = store
        .conn()
        .query_row("PRAGMA data_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(before, after);
}

#[test]
fn one_entry_per_changed_row_and_a_newer_edit_supersedes_the_queued_one() {
    let mut store = Store::open_in_memory().unwrap();
    let local = synced(&mut store, phones(), 10, &phone_row("a"));
    mirror::update_mirror(store.person(), phones(), local, &phone_row("b")).unwrap();
    let first = run(&mut store, phones(), &[]);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].op, Op::Update);
    // The same state again: the same entry, not a second one.
    assert_eq!(run(&mut store, phones(), &[])[0].seq, first[0].seq);
    mirror::update_mirror(store.person(), phones(), local, &phone_row("c")).unwrap();
    let second = run(&mut store, phones(), &[]);
    assert_eq!(second.len(), 1);
    assert_ne!(second[0].seq, first[0].seq);
    let old = journal::get(store.conn(), first[0].seq).unwrap().unwrap();
    assert_eq!(old.stage, Stage::Superseded);
    // Reverted: nothing left to push.
    mirror::update_mirror(store.person(), phones(), local, &phone_row("a")).unwrap();
    assert!(run(&mut store, phones(), &[]).is_empty());
    assert_eq!(
        journal::get(store.conn(), second[0].seq).unwrap().unwrap().stage,
        Stage::Superseded
    );
}

#[test]
fn an_accepted_create_is_kept_whatever_the_row_does() {
    let mut store = Store::open_in_memory().unwrap();
    let local = mirror::insert_mirror(store.person(), smart(), None, &smart_row(42, "7916")).unwrap();
    let entry = run(&mut store, smart(), &[]).remove(0);
    journal::advance(store.conn(), entry.seq, &Event::Send).unwrap();
    journal::advance(store.conn(), entry.seq, &Event::Accept).unwrap();
    // Edited, then deleted, while upstream's record is being identified.
    mirror::update_mirror(store.person(), smart(), local, &smart_row(42, "7917")).unwrap();
    assert!(
        run(&mut store, smart(), &[]).is_empty(),
        "nothing sendable while accepted"
    );
    mirror::delete_mirror(store.person(), smart(), local).unwrap();
    run(&mut store, smart(), &[]);
    let e = journal::get(store.conn(), entry.seq).unwrap().unwrap();
    assert_eq!(e.stage, Stage::Accepted, "an accepted create is never superseded");
}

#[test]
fn a_create_outside_the_scope_is_failed_before_any_request() {
    let mut store = Store::open_in_memory().unwrap();
    mirror::insert_mirror(store.person(), smart(), None, &smart_row(40, "7916")).unwrap();
    let scope = [("user_id", "12".to_string())];
    assert!(run(&mut store, smart(), &scope).is_empty());
    let failed = journal::failed(store.conn(), "smart_numbers").unwrap();
    assert_eq!(failed.len(), 1);
    let error = failed[0].last_error.clone().unwrap();
    assert!(
        error.contains("user_id 40 is outside") && error.contains("user_id = 12"),
        "{error}"
    );
    assert_eq!(failed[0].attempts, 0);
}

#[test]
fn an_update_of_a_resource_without_an_update_endpoint_is_failed() {
    let mut store = Store::open_in_memory().unwrap();
    let local = synced(&mut store, smart(), 5, &smart_row(42, "7916"));
    mirror::update_mirror(store.person(), smart(), local, &smart_row(42, "7999")).unwrap();
    assert!(run(&mut store, smart(), &[]).is_empty());
    let failed = journal::failed(store.conn(), "smart_numbers").unwrap();
    assert!(failed[0]
        .last_error
        .as_deref()
        .unwrap()
        .contains("no update endpoint"));
}

#[test]
fn a_hand_edited_id_is_neither_a_delete_nor_a_create() {
    let mut store = Store::open_in_memory().unwrap();
    let local = synced(&mut store, phones(), 10, &phone_row("a"));
    mirror::set_mirror_id(store.person(), phones(), local, None).unwrap();
    assert!(run(&mut store, phones(), &[]).is_empty(), "nothing to send");
    let failed = journal::failed(store.conn(), "phone_numbers").unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].op, Op::Delete);
    assert!(failed[0].last_error.as_deref().unwrap().contains("SET id = 10"));
    // Set back: settled.
    mirror::set_mirror_id(store.person(), phones(), local, Some(10)).unwrap();
    assert!(run(&mut store, phones(), &[]).is_empty());
    assert!(journal::failed(store.conn(), "phone_numbers").unwrap().is_empty());
}

/// Following the advice of a refused id edit — delete the row, insert a new one — sends
/// the delete the refusal held back, and the create.
#[test]
fn deleting_a_row_whose_id_was_cleared_sends_the_refused_delete() {
    let mut store = Store::open_in_memory().unwrap();
    let local = synced(&mut store, phones(), 10, &phone_row("a"));
    mirror::set_mirror_id(store.person(), phones(), local, None).unwrap();
    assert!(run(&mut store, phones(), &[]).is_empty());
    let refused = journal::failed(store.conn(), "phone_numbers").unwrap();
    assert_eq!(refused.len(), 1);
    mirror::delete_mirror(store.person(), phones(), local).unwrap();
    mirror::insert_mirror(store.person(), phones(), None, &phone_row("replacement")).unwrap();
    let due = run(&mut store, phones(), &[]);
    let mut ops: Vec<(Op, Option<i64>)> = due.iter().map(|e| (e.op, e.upstream_id)).collect();
    ops.sort_by_key(|(op, _)| op.as_str());
    assert_eq!(ops, vec![(Op::Create, None), (Op::Delete, Some(10))]);
    assert!(journal::failed(store.conn(), "phone_numbers").unwrap().is_empty());
    assert_eq!(
        journal::get(store.conn(), refused[0].seq).unwrap().unwrap().stage,
        Stage::Superseded
    );
}

fn due_ops(store: &mut Store) -> Vec<(Op, Option<i64>)> {
    let mut ops: Vec<(Op, Option<i64>)> = run(store, phones(), &[])
        .iter()
        .map(|e| (e.op, e.upstream_id))
        .collect();
    ops.sort_by_key(|(op, id)| (op.as_str(), *id));
    ops
}

fn failed_errors(store: &Store) -> Vec<String> {
    journal::failed(store.conn(), "phone_numbers")
        .unwrap()
        .into_iter()
        .map(|e| e.last_error.unwrap_or_default())
        .collect()
}

/// Ids swapped between two rows: pushing would overwrite each record with the other's
/// values. Nothing is sent, both rows are named; putting the ids back settles it.
#[test]
fn ids_swapped_between_rows_push_nothing() {
    let mut store = Store::open_in_memory().unwrap();
    let a = synced(&mut store, phones(), 10, &phone_row("a"));
    let b = synced(&mut store, phones(), 11, &phone_row("b"));
    store
        .person()
        .execute_batch(&format!(
            "UPDATE phone_numbers SET id = NULL WHERE local_id = {a};
             UPDATE phone_numbers SET id = 10 WHERE local_id = {b};
             UPDATE phone_numbers SET id = 11 WHERE local_id = {a};"
        ))
        .unwrap();
    assert!(due_ops(&mut store).is_empty());
    let errors = failed_errors(&store);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors.iter().all(|e| e.contains("cannot move between rows")),
        "{errors:?}"
    );
    store
        .person()
        .execute_batch(&format!(
            "UPDATE phone_numbers SET id = NULL WHERE local_id = {a};
             UPDATE phone_numbers SET id = 11 WHERE local_id = {b};
             UPDATE phone_numbers SET id = 10 WHERE local_id = {a};"
        ))
        .unwrap();
    assert!(due_ops(&mut store).is_empty());
    assert!(failed_errors(&store).is_empty(), "settled once the ids are back");
}

/// `UPDATE OR REPLACE ... SET id` onto another row's id deletes that row: the mirror then
/// cannot say whether this row's id changed or the other row moved here. Nothing is sent
/// until a person says which; each way then sends what it means.
#[test]
fn a_row_taken_over_by_or_replace_pushes_nothing_until_a_person_says_which() {
    for fix in ["id back", "moved"] {
        let mut store = Store::open_in_memory().unwrap();
        let a = synced(&mut store, phones(), 10, &phone_row("a"));
        let _b = synced(&mut store, phones(), 11, &phone_row("b"));
        store
            .person()
            .execute(
                &format!("UPDATE OR REPLACE phone_numbers SET id = 11 WHERE local_id = {a}"),
                [],
            )
            .unwrap();
        assert!(due_ops(&mut store).is_empty(), "{fix}");
        let errors = failed_errors(&store);
        assert!(
            !errors.is_empty() && errors.iter().all(|e| e.contains("cannot tell")),
            "{errors:?}"
        );
        match fix {
            "id back" => {
                store
                    .person()
                    .execute(
                        &format!("UPDATE phone_numbers SET id = 10 WHERE local_id = {a}"),
                        [],
                    )
                    .unwrap();
                // Row a is record 10 again; record 11's row was deleted by the REPLACE.
                assert_eq!(due_ops(&mut store), vec![(Op::Delete, Some(11))]);
            }
            _ => {
                store
                    .person()
                    .execute(
                        &format!("UPDATE phone_numbers SET local_id = (SELECT max(local_id) + 1 FROM phone_numbers) WHERE local_id = {a}"),
                        [],
                    )
                    .unwrap();
                // The row is record 11 (with a's values); record 10 lost its row.
                assert_eq!(
                    due_ops(&mut store),
                    vec![(Op::Delete, Some(10)), (Op::Update, Some(11))]
                );
            }
        }
        assert!(failed_errors(&store).is_empty(), "{fix}: settled");
    }
}

/// `INSERT OR REPLACE` of a record under a new local_id (an upsert by id) is an update.
#[test]
fn a_record_inserted_again_under_a_new_local_id_is_an_update() {
    let mut store = Store::open_in_memory().unwrap();
    synced(&mut store, phones(), 10, &phone_row("a"));
    store
        .person()
        .execute(
            "INSERT OR REPLACE INTO phone_numbers (local_id, id, contact_id, type, number, description, profile_id) \
             VALUES (99, 10, 1935038, 2, '0912', 'upserted', 7)",
            [],
        )
        .unwrap();
    assert_eq!(due_ops(&mut store), vec![(Op::Update, Some(10))]);
}

/// A row brought back from its base (`journal drop`) under a new local_id is still that
/// record's row: a later edit is an update, even when its old local_id is taken again.
#[test]
fn a_row_restored_under_a_new_local_id_stays_its_records_row() {
    let mut store = Store::open_in_memory().unwrap();
    let old = synced(&mut store, phones(), 10, &phone_row("a"));
    synced(&mut store, phones(), 11, &phone_row("b"));
    mirror::delete_mirror(store.person(), phones(), old).unwrap();
    store
        .write(|tx| mirror::restore_from_base(tx, phones(), 10))
        .unwrap();
    let restored = mirror::mirror_by_id(store.conn(), phones(), 10)
        .unwrap()
        .unwrap()
        .local_id;
    assert_ne!(restored, old);
    store
        .person()
        .execute(
            &format!("INSERT INTO phone_numbers (local_id, number) VALUES ({old}, '1')"),
            [],
        )
        .unwrap();
    mirror::update_mirror(store.person(), phones(), restored, &phone_row("edited")).unwrap();
    assert_eq!(
        due_ops(&mut store),
        vec![(Op::Create, None), (Op::Update, Some(10))]
    );
}
