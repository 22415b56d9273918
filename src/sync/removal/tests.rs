//! Removals on an in-memory store: a record gone upstream leaves the mirror and its base,
//! a local edit of it is a conflict the policy settles (remote-wins: removed, its values kept
//! in `conflicts`; local-wins: kept as a row to create), and a row deleted here too goes
//! quietly.

use super::*;
use crate::store::fixtures::{phone_row, phones, synced};
use crate::store::tracking;

fn count(store: &Store, sql: &str) -> i64 {
    store.conn().query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Three records: 1 untouched, 2 edited here, 3 deleted here.
fn three_records() -> Store {
    let mut store = Store::open_in_memory().unwrap();
    for id in 1..=3 {
        synced(&mut store, phones(), id, &phone_row("upstream"));
    }
    store
        .person()
        .execute_batch(
            "UPDATE phone_numbers SET description = 'mine' WHERE id = 2;
             DELETE FROM phone_numbers WHERE id = 3;",
        )
        .unwrap();
    store
}

#[test]
fn remote_wins_removes_every_row_and_keeps_the_edit_in_conflicts() {
    let mut store = three_records();
    let (removed, conflicts) =
        apply_removals(&mut store, phones(), ConflictPolicy::RemoteWins, &[1, 2, 3]).unwrap();
    assert_eq!(
        (removed, conflicts),
        (2, 1),
        "rows 1 and 2 left; 3 was gone already"
    );
    assert_eq!(count(&store, "SELECT count(*) FROM phone_numbers"), 0);
    assert_eq!(count(&store, "SELECT count(*) FROM phone_numbers_base"), 0);
    let kept: String = store
        .conn()
        .query_row(
            "SELECT local_value FROM conflicts WHERE kind = 'deleted_upstream' AND upstream_id = 2",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(kept.contains("mine"), "{kept}");
    let changes = mirror::local_changes(store.conn(), phones()).unwrap();
    assert!(changes.is_empty(), "nothing left to push: {changes:?}");
}

#[test]
fn local_wins_keeps_the_edited_row_as_a_create() {
    let mut store = three_records();
    // As after a push pass that read the marks (the edit could not be sent yet).
    store.conn().execute("DELETE FROM changed_rows", []).unwrap();
    let (removed, conflicts) =
        apply_removals(&mut store, phones(), ConflictPolicy::LocalWins, &[1, 2, 3]).unwrap();
    assert_eq!((removed, conflicts), (1, 1));
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM phone_numbers WHERE id IS NULL AND description = 'mine'"
        ),
        1
    );
    assert_eq!(count(&store, "SELECT count(*) FROM phone_numbers_base"), 0);
    let changes = mirror::local_changes(store.conn(), phones()).unwrap();
    assert_eq!(changes.creates.len(), 1, "{changes:?}");
    assert!(changes.updates.is_empty() && changes.deletes.is_empty());
    // The push pass finds it through the marks, not a scan.
    assert!(tracking::any_marks(store.conn(), "phone_numbers").unwrap());
}

#[test]
fn ids_without_a_base_are_skipped() {
    let mut store = three_records();
    let (removed, conflicts) =
        apply_removals(&mut store, phones(), ConflictPolicy::RemoteWins, &[1, 99]).unwrap();
    assert_eq!((removed, conflicts), (1, 0));
    assert_eq!(count(&store, "SELECT count(*) FROM phone_numbers_base"), 2);
}
