//! Change tracking: the triggers record every edit made from any connection, restsync's
//! own writes record nothing, and the marked rows give the same changes as comparing every
//! row with its base.

use super::*;
use crate::store::fixtures::{phone_row, phones, synced, try_synced};
use crate::store::{mirror, Store};
use proptest::prelude::*;
use rusqlite::types::Value;
use std::collections::BTreeSet;

fn phone(description: &str) -> Vec<Value> {
    phone_row(description)
}

fn pulled(store: &mut Store, id: i64, description: &str) -> i64 {
    synced(store, phones(), id, &phone(description))
}

fn try_pull(store: &mut Store, id: i64, description: &str) -> crate::store::Result<i64> {
    try_synced(store, phones(), id, &phone(description))
}

fn all_marks(conn: &Connection) -> Vec<Mark> {
    marks(conn, "phone_numbers", None, usize::MAX >> 1).unwrap()
}

#[test]
fn an_edit_from_another_connection_is_recorded_with_the_row_and_the_id_it_held() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("restsync.db");
    let mut store = Store::open(&path).unwrap();
    let local = pulled(&mut store, 10, "a");
    assert!(all_marks(store.conn()).is_empty(), "a pull records nothing");
    assert_eq!(edits(store.conn()).unwrap(), 0);

    // As sqlite3 would: its own connection, its own transaction.
    let person = Connection::open(&path).unwrap();
    person
        .execute("UPDATE phone_numbers SET description = 'b' WHERE id = 10", [])
        .unwrap();
    assert_eq!(all_marks(store.conn()), vec![Mark::Row(local)]);
    assert_eq!(edits(store.conn()).unwrap(), 1);
    person
        .execute("DELETE FROM phone_numbers WHERE id = 10", [])
        .unwrap();
    assert_eq!(
        all_marks(store.conn()),
        vec![Mark::Upstream(10), Mark::Row(local)]
    );
    person
        .execute("INSERT INTO phone_numbers (number) VALUES ('0913')", [])
        .unwrap();
    // The new row may reuse the deleted row's local_id: one mark covers both.
    let new_row = person.last_insert_rowid();
    assert!(all_marks(store.conn()).contains(&Mark::Row(new_row)));
    assert_eq!(edits(store.conn()).unwrap(), 3);
}

/// An UPDATE that changes or clears an id is remembered until the row is no longer that
/// row (deleted, or its local_id taken by a new row); an insert, with or without an id, is
/// no edit.
#[test]
fn an_edited_id_is_remembered_until_the_row_is_no_longer_that_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("restsync.db");
    let mut store = Store::open(&path).unwrap();
    let local = pulled(&mut store, 10, "a");
    let person = Connection::open(&path).unwrap();
    let edited = |store: &Store| id_edited(store.conn(), "phone_numbers", local).unwrap();
    let run = |sql: &str| person.execute(sql, []).unwrap();

    run("UPDATE phone_numbers SET description = 'b' WHERE id = 10");
    assert!(!edited(&store), "other columns are no id edit");
    run("UPDATE phone_numbers SET id = NULL, description = 'b' WHERE id = 10");
    assert!(edited(&store), "cleared");
    run("UPDATE phone_numbers SET id = 10 WHERE id IS NULL");
    run("UPDATE phone_numbers SET id = 777 WHERE id = 10");
    assert!(edited(&store), "typed over");
    run("DELETE FROM phone_numbers WHERE id = 777");
    assert!(!edited(&store), "deleted");
    run(&format!(
        "INSERT INTO phone_numbers (local_id, number) VALUES ({local}, '0913')"
    ));
    assert!(!edited(&store), "a new row in the old local_id");
    run(&format!(
        "INSERT OR REPLACE INTO phone_numbers (local_id, id, number) VALUES ({local}, 55, '0914')"
    ));
    assert!(!edited(&store), "inserted with an id");
}

/// `id` takes only an integer or NULL: text typed into it is refused at the edit, naming
/// the column, and nothing is recorded (a sync never meets an id it cannot read).
#[test]
fn an_id_that_is_not_an_integer_is_refused_at_the_edit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("restsync.db");
    let mut store = Store::open(&path).unwrap();
    pulled(&mut store, 10, "a");
    let person = Connection::open(&path).unwrap();
    for sql in [
        "UPDATE phone_numbers SET id = 'abc' WHERE id = 10",
        "UPDATE phone_numbers SET id = 10.5 WHERE id = 10",
        "INSERT INTO phone_numbers (id, number) VALUES ('x1', '0913')",
    ] {
        let err = person.execute(sql, []).unwrap_err().to_string();
        assert!(
            err.contains("phone_numbers.id must be an integer"),
            "{sql}: {err}"
        );
    }
    assert!(all_marks(store.conn()).is_empty());
    // Digits in text are an integer to SQLite (the column's affinity): accepted.
    person
        .execute("UPDATE phone_numbers SET id = '10' WHERE id = 10", [])
        .unwrap();
    person
        .execute("INSERT INTO phone_numbers (id, number) VALUES (NULL, '0914')", [])
        .unwrap();
}

#[test]
fn restsyncs_own_writes_record_nothing_and_other_connections_are_unaffected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("restsync.db");
    let mut store = Store::open(&path).unwrap();
    let local = pulled(&mut store, 10, "a");
    store
        .write(|c| {
            mirror::update_mirror(c, phones(), local, &phone("from upstream"))?;
            mirror::set_mirror_id(c, phones(), local, Some(11))?;
            mirror::delete_mirror(c, phones(), local)
        })
        .unwrap();
    assert!(all_marks(store.conn()).is_empty());
    // restsync's connection runs without triggers; other connections keep them.
    let failed: crate::store::Result<()> = store.write(|c| {
        mirror::insert_mirror(c, phones(), Some(12), &phone("x"))?;
        Err(crate::store::StoreError::Task("boom".into()))
    });
    assert!(failed.is_err());
    let person = Connection::open(&path).unwrap();
    person
        .execute("INSERT INTO phone_numbers (number) VALUES ('0913')", [])
        .unwrap();
    assert_eq!(
        all_marks(store.conn()).len(),
        1,
        "a person's edit after it is recorded"
    );
}

#[test]
fn insert_or_replace_records_the_id_of_the_row_it_displaced() {
    let mut store = Store::open_in_memory().unwrap();
    let local = pulled(&mut store, 10, "a");
    store
        .person()
        .execute(
            "INSERT OR REPLACE INTO phone_numbers (local_id, id, number) VALUES (?1, 99, '1')",
            [local],
        )
        .unwrap();
    let marks = all_marks(store.conn());
    assert!(marks.contains(&Mark::Upstream(10)), "{marks:?}");
    let checked = mirror::changes_of(store.conn(), phones(), &marks).unwrap();
    assert_eq!(checked.changes.deletes.len(), 1, "record 10 lost its row");
}

#[test]
fn update_or_replace_records_the_row_it_displaced() {
    let mut store = Store::open_in_memory().unwrap();
    let a = pulled(&mut store, 10, "a");
    let b = pulled(&mut store, 11, "b");
    // Moving row a onto b's local_id deletes b without a delete trigger.
    store
        .person()
        .execute(
            "UPDATE OR REPLACE phone_numbers SET local_id = ?2 WHERE local_id = ?1",
            [a, b],
        )
        .unwrap();
    let marks = all_marks(store.conn());
    assert!(marks.contains(&Mark::Upstream(11)), "{marks:?}");
    let checked = mirror::changes_of(store.conn(), phones(), &marks).unwrap();
    let deleted: Vec<i64> = checked.changes.deletes.iter().map(|b| b.id).collect();
    assert_eq!(deleted, vec![11]);
}

/// An edit's own conflict clause overrides the triggers': none of these may fail on a
/// mark that exists already, and each is recorded.
#[test]
fn upserts_and_every_conflict_clause_work_and_are_recorded() {
    let mut store = Store::open_in_memory().unwrap();
    let local = pulled(&mut store, 10, "a");
    let c = store.person();
    for sql in [
        "UPDATE OR ABORT phone_numbers SET description = 'x1' WHERE id = 10",
        "UPDATE OR FAIL phone_numbers SET description = 'x2' WHERE id = 10",
        "UPDATE OR ROLLBACK phone_numbers SET description = 'x3' WHERE id = 10",
        "UPDATE OR IGNORE phone_numbers SET description = 'x4' WHERE id = 10",
        "INSERT INTO phone_numbers (id, number, description) VALUES (10, '1', 'x5') \
         ON CONFLICT(id) DO UPDATE SET description = excluded.description",
        "INSERT OR ABORT INTO phone_numbers (number, description) VALUES ('2', 'new')",
    ] {
        c.execute(sql, []).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let description: String = c
        .query_row("SELECT description FROM phone_numbers WHERE id = 10", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(description, "x5");
    assert!(all_marks(c).contains(&Mark::Row(local)));
    assert_eq!(edits(c).unwrap(), 6, "every edit counted");
}

#[test]
fn stored_trigger_text_is_what_was_created() {
    let store = Store::open_in_memory().unwrap();
    for (name, sql) in triggers("phone_numbers") {
        let stored: String = store
            .conn()
            .query_row("SELECT sql FROM sqlite_master WHERE name = ?1", [&name], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(stored, sql);
    }
}

#[test]
fn triggers_are_kept_as_they_are_and_an_altered_one_is_replaced_with_a_full_check() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("restsync.db");
    drop(Store::open(&path).unwrap());
    let checked_at = |path: &std::path::Path| {
        Connection::open(path)
            .unwrap()
            .query_row("SELECT full_check_at FROM change_tracking", [], |r| {
                r.get::<_, Option<String>>(0)
            })
            .unwrap()
    };
    drop(Store::open(&path).unwrap());
    assert!(
        checked_at(&path).is_some(),
        "an untouched trigger set forces no full check"
    );
    Connection::open(&path)
        .unwrap()
        .execute_batch(
            "DROP TRIGGER phone_numbers_track_update;
             CREATE TRIGGER phone_numbers_track_update AFTER UPDATE ON phone_numbers BEGIN SELECT 1; END;",
        )
        .unwrap();
    drop(Store::open(&path).unwrap());
    assert!(checked_at(&path).is_none(), "the next push compares every row");
    let person = Connection::open(&path).unwrap();
    person
        .execute("INSERT INTO phone_numbers (number) VALUES ('1')", [])
        .unwrap();
    person
        .execute("UPDATE phone_numbers SET description = 'd'", [])
        .unwrap();
    assert_eq!(edits(&person).unwrap(), 2, "the real update trigger is back");
}

#[test]
fn marks_are_paged_after_a_key_and_cleared_and_kept_on_request() {
    let store = Store::open_in_memory().unwrap();
    let c = store.person();
    for n in 0..5 {
        c.execute("INSERT INTO phone_numbers (number) VALUES (?1)", [n.to_string()])
            .unwrap();
    }
    let first = marks(c, "phone_numbers", None, 2).unwrap();
    let next = marks(c, "phone_numbers", first.last().copied(), 10).unwrap();
    assert_eq!(first.len() + next.len(), 5);
    assert!(first.iter().all(|m| !next.contains(m)));
    clear(c, "phone_numbers", &first).unwrap();
    assert_eq!(all_marks(c), next);
    let before = edits(c).unwrap();
    keep(c, "phone_numbers", &first).unwrap();
    assert_eq!(all_marks(c).len(), 5);
    assert_eq!(edits(c).unwrap(), before, "keeping a mark wakes no one");
}

#[derive(Debug, Clone)]
enum Edit {
    Pull,
    Insert(u8),
    Describe(u8, u8),
    ClearId(u8),
    SetId(u8, u8),
    Delete(u8),
    Replace(u8, u8),
    MoveOnto(u8, u8),
    Revert(u8),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        Just(Edit::Pull),
        any::<u8>().prop_map(Edit::Insert),
        (any::<u8>(), any::<u8>()).prop_map(|(r, v)| Edit::Describe(r, v % 3)),
        any::<u8>().prop_map(Edit::ClearId),
        (any::<u8>(), any::<u8>()).prop_map(|(r, v)| Edit::SetId(r, v)),
        any::<u8>().prop_map(Edit::Delete),
        (any::<u8>(), any::<u8>()).prop_map(|(r, v)| Edit::Replace(r, v % 3)),
        (any::<u8>(), any::<u8>()).prop_map(|(r, v)| Edit::MoveOnto(r, v)),
        any::<u8>().prop_map(Edit::Revert),
    ]
}

/// (creates by local_id, updates by (local_id, id), deletes by id)
type Summary = (BTreeSet<i64>, BTreeSet<(i64, i64)>, BTreeSet<i64>);

fn summary(c: &mirror::LocalChanges) -> Summary {
    (
        c.creates.iter().map(|m| m.local_id).collect(),
        c.updates.iter().map(|(m, b)| (m.local_id, b.id)).collect(),
        c.deletes.iter().map(|b| b.id).collect(),
    )
}

fn pick(conn: &Connection, n: u8) -> Option<i64> {
    let rows: Vec<i64> = conn
        .prepare("SELECT local_id FROM phone_numbers ORDER BY local_id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    (!rows.is_empty()).then(|| rows[n as usize % rows.len()])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Whatever people do to the mirror between pulls, the marked rows give exactly the
    /// changes a comparison of every row with its base finds, and the safety net finds
    /// nothing the triggers missed.
    #[test]
    fn marked_changes_agree_with_a_full_comparison(edits in prop::collection::vec(edit(), 1..40)) {
        let mut store = Store::open_in_memory().unwrap();
        let mut next_id = 100;
        for e in edits {
            let c = store.person();
            // Ids upstream knows (and a few it does not), so edits collide now and then.
            let id = |v: u8| 100 + i64::from(v % 12);
            // UNIQUE(id) refusals are part of life with plain SQL; a refused edit changes nothing.
            let _ = match e {
                Edit::Pull => {
                    next_id += 1;
                    // A row may hold the id already (typed in by hand): then nothing.
                    let _ = try_pull(&mut store, next_id, "pulled");
                    Ok(0)
                }
                Edit::Insert(v) => c.execute("INSERT INTO phone_numbers (contact_id, number, description) VALUES (1, ?1, 'new')", [v]),
                Edit::Describe(r, v) => match pick(c, r) {
                    Some(l) => c.execute("UPDATE phone_numbers SET description = ?2 WHERE local_id = ?1", rusqlite::params![l, ["a", "b", "pulled"][v as usize]]),
                    None => Ok(0),
                },
                Edit::ClearId(r) => match pick(c, r) {
                    Some(l) => c.execute("UPDATE phone_numbers SET id = NULL WHERE local_id = ?1", [l]),
                    None => Ok(0),
                },
                Edit::SetId(r, v) => match pick(c, r) {
                    Some(l) => c.execute("UPDATE phone_numbers SET id = ?2 WHERE local_id = ?1", [l, id(v)]),
                    None => Ok(0),
                },
                Edit::Delete(r) => match pick(c, r) {
                    Some(l) => c.execute("DELETE FROM phone_numbers WHERE local_id = ?1", [l]),
                    None => Ok(0),
                },
                Edit::Replace(r, v) => match pick(c, r) {
                    Some(l) => c.execute(
                        "INSERT OR REPLACE INTO phone_numbers (local_id, id, contact_id, number, description) VALUES (?1, ?2, 1, 'r', 'replaced')",
                        rusqlite::params![l, if v == 0 { None } else { Some(id(v)) }],
                    ),
                    None => Ok(0),
                },
                Edit::MoveOnto(r, v) => match (pick(c, r), pick(c, v)) {
                    (Some(from), Some(onto)) if v % 2 == 0 => c.execute(
                        "UPDATE OR REPLACE phone_numbers SET local_id = ?2 WHERE local_id = ?1",
                        [from, onto],
                    ),
                    (Some(from), _) => c.execute(
                        "UPDATE OR REPLACE phone_numbers SET id = ?2 WHERE local_id = ?1",
                        [from, id(v)],
                    ),
                    _ => Ok(0),
                },
                Edit::Revert(r) => match pick(c, r) {
                    Some(l) => c.execute(
                        "UPDATE phone_numbers SET (contact_id, type, number, extension, description) = \
                         (SELECT contact_id, type, number, extension, description FROM phone_numbers_base b WHERE b.local_id = ?1) \
                         WHERE local_id = ?1 AND EXISTS (SELECT 1 FROM phone_numbers_base b WHERE b.local_id = ?1)",
                        [l],
                    ),
                    None => Ok(0),
                },
            };
        }
        let c = store.conn();
        let full = mirror::local_changes(c, phones()).unwrap();
        let marked = mirror::changes_of(c, phones(), &all_marks(c)).unwrap();
        prop_assert_eq!(summary(&marked.changes), summary(&full));
        prop_assert_eq!(mirror::mark_all_changes(c, phones()).unwrap(), 0, "the safety net found edits the triggers missed");
    }
}
