//! Applying walked pages to the mirror and its base snapshots, on an in-memory store: what
//! a page inserts, updates, leaves alone, merges, records as a conflict, skips as unreadable
//! and adopts, and that restsync's own writes leave nothing marked to push.

use super::*;
use crate::store::fixtures::phones;
use crate::store::journal::{Event, NewEntry, Op};
use crate::store::tracking;
use serde_json::json;

fn record(id: i64, contact: i64, number: &str, description: Option<&str>) -> Box<RawValue> {
    let json = json!({
        "id": id,
        "phone_contact": {"contact_id": contact},
        "type": 2,
        "number": number,
        "extension": null,
        "description": description,
        "profile_id": 7,
    });
    RawValue::from_string(json.to_string()).unwrap()
}

fn apply(store: &mut Store, records: Vec<Box<RawValue>>, policy: ConflictPolicy, dry: bool) -> PageResult {
    let mut results = apply_pages(store, phones(), policy, vec![(1, records)], dry).unwrap();
    results.pop().unwrap()
}

fn pull(store: &mut Store, records: Vec<Box<RawValue>>) -> PageResult {
    store.write(|tx| mirror::begin_walk(tx, phones())).unwrap();
    apply(store, records, ConflictPolicy::RemoteWins, false)
}

fn description(store: &Store, id: i64) -> Option<String> {
    store
        .conn()
        .query_row("SELECT description FROM phone_numbers WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .unwrap()
}

fn base_description(store: &Store, id: i64) -> Option<String> {
    store
        .conn()
        .query_row(
            "SELECT description FROM phone_numbers_base WHERE id = ?1",
            [id],
            |r| r.get(0),
        )
        .unwrap()
}

fn marked(store: &Store) -> bool {
    tracking::any_marks(store.conn(), "phone_numbers").unwrap()
}

fn count(store: &Store, sql: &str) -> i64 {
    store.conn().query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn new_records_land_in_mirror_and_base_and_leave_nothing_to_push() {
    let mut store = Store::open_in_memory().unwrap();
    let r = pull(
        &mut store,
        vec![record(1, 10, "0911", Some("a")), record(2, 11, "0912", None)],
    );
    assert_eq!((r.inserted, r.updated, r.unchanged), (2, 0, 0));
    assert_eq!(count(&store, "SELECT count(*) FROM phone_numbers"), 2);
    assert_eq!(count(&store, "SELECT count(*) FROM phone_numbers_base"), 2);
    assert_eq!(
        count(&store, "SELECT contact_id FROM phone_numbers WHERE id = 1"),
        10,
        "nested phone_contact.contact_id"
    );
    assert!(!marked(&store), "a pull is not a local edit");
    let changes = mirror::local_changes(store.conn(), phones()).unwrap();
    assert!(changes.creates.is_empty() && changes.updates.is_empty() && changes.deletes.is_empty());

    // The same page again: recognised by its hash, nothing rewritten.
    let again = pull(
        &mut store,
        vec![record(1, 10, "0911", Some("a")), record(2, 11, "0912", None)],
    );
    assert_eq!((again.inserted, again.updated, again.unchanged), (0, 0, 2));
}

#[test]
fn a_remote_change_updates_an_untouched_row_and_its_base() {
    let mut store = Store::open_in_memory().unwrap();
    pull(&mut store, vec![record(1, 10, "0911", Some("old"))]);
    let r = pull(&mut store, vec![record(1, 10, "0911", Some("new"))]);
    assert_eq!(r.updated, 1);
    assert_eq!(description(&store, 1).as_deref(), Some("new"));
    assert_eq!(base_description(&store, 1).as_deref(), Some("new"));
    assert!(!marked(&store));
}

#[test]
fn edits_to_different_fields_merge_and_the_local_one_is_still_to_push() {
    let mut store = Store::open_in_memory().unwrap();
    pull(&mut store, vec![record(1, 10, "0911", Some("old"))]);
    store
        .person()
        .execute("UPDATE phone_numbers SET description = 'mine' WHERE id = 1", [])
        .unwrap();
    tracking::clear(
        store.conn(),
        "phone_numbers",
        &tracking::marks(store.conn(), "phone_numbers", None, 10).unwrap(),
    )
    .unwrap();
    let r = pull(&mut store, vec![record(1, 10, "0999", Some("old"))]);
    assert_eq!(r.conflicts, 0);
    let (number, desc): (String, String) = store
        .conn()
        .query_row(
            "SELECT number, description FROM phone_numbers WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (number.as_str(), desc.as_str()),
        ("0999", "mine"),
        "both edits kept"
    );
    assert_eq!(
        base_description(&store, 1).as_deref(),
        Some("old"),
        "base is upstream's"
    );
    assert!(marked(&store), "the kept local edit is marked for the next push");
}

#[test]
fn the_same_field_edited_on_both_sides_is_a_recorded_conflict() {
    for (policy, kept) in [
        (ConflictPolicy::RemoteWins, "theirs"),
        (ConflictPolicy::LocalWins, "mine"),
    ] {
        let mut store = Store::open_in_memory().unwrap();
        pull(&mut store, vec![record(1, 10, "0911", Some("old"))]);
        store
            .person()
            .execute("UPDATE phone_numbers SET description = 'mine' WHERE id = 1", [])
            .unwrap();
        store.write(|tx| mirror::begin_walk(tx, phones())).unwrap();
        let r = apply(
            &mut store,
            vec![record(1, 10, "0911", Some("theirs"))],
            policy,
            false,
        );
        assert_eq!(r.conflicts, 1, "{policy:?}");
        assert_eq!(description(&store, 1).as_deref(), Some(kept), "{policy:?}");
        let stored = sync_state::recent_conflicts(store.conn(), "phone_numbers", 10).unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].field, Some("description".into()));
        assert_eq!(stored[0].local_value.as_deref(), Some("\"mine\""));
        assert_eq!(stored[0].remote_value.as_deref(), Some("\"theirs\""));
    }
}

#[test]
fn unreadable_records_are_skipped_and_named_and_the_rest_applied() {
    let mut store = Store::open_in_memory().unwrap();
    let bad_type = RawValue::from_string(json!({"id": 3, "type": {"x": 1}}).to_string()).unwrap();
    let no_id = RawValue::from_string(json!({"number": "0000"}).to_string()).unwrap();
    let r = pull(&mut store, vec![record(1, 10, "0911", None), bad_type, no_id]);
    assert_eq!(r.inserted, 1);
    assert_eq!(r.no_id, 1);
    assert_eq!(r.unreadable.len(), 1);
    assert!(
        r.unreadable[0].starts_with("id 3:") && r.unreadable[0].contains("type"),
        "{:?}",
        r.unreadable
    );
    assert_eq!(count(&store, "SELECT count(*) FROM phone_numbers"), 1);
}

#[test]
fn a_dry_run_writes_nothing_and_says_what_it_would_do() {
    let mut store = Store::open_in_memory().unwrap();
    pull(&mut store, vec![record(1, 10, "0911", Some("old"))]);
    store
        .person()
        .execute("UPDATE phone_numbers SET description = 'mine' WHERE id = 1", [])
        .unwrap();
    let dump = |store: &Store| {
        let mut stmt = store
            .conn()
            .prepare(
                "SELECT json_group_array(json_array(local_id, id, description)) FROM phone_numbers \
                 UNION ALL SELECT json_group_array(json_array(id, description, hash)) FROM phone_numbers_base \
                 UNION ALL SELECT count(*) FROM conflicts UNION ALL SELECT count(*) FROM changed_rows",
            )
            .unwrap();
        stmt.query_map([], |r| r.get::<_, rusqlite::types::Value>(0))
            .unwrap()
            .map(Result::unwrap)
            .collect::<Vec<_>>()
    };
    let before = dump(&store);
    let r = apply(
        &mut store,
        vec![record(1, 10, "0911", Some("theirs")), record(2, 11, "0912", None)],
        ConflictPolicy::RemoteWins,
        true,
    );
    assert_eq!(dump(&store), before, "nothing written");
    assert_eq!(r.plan.pull_insert.len(), 1);
    assert!(
        r.plan.pull_insert[0].starts_with("id 2: new upstream: contact_id=11"),
        "{:?}",
        r.plan.pull_insert
    );
    assert_eq!(r.plan.conflicts.len(), 1);
    let merged = &r.plan.merged_rows[&1];
    assert_eq!(
        merged.after.as_ref().map(|v| v[4].clone()),
        Some(Value::Text("theirs".into()))
    );
    assert_eq!(description(&store, 1).as_deref(), Some("mine"));
}

#[test]
fn a_new_record_matching_an_unresolved_create_is_adopted_not_copied() {
    let mut store = Store::open_in_memory().unwrap();
    store
        .person()
        .execute(
            "INSERT INTO phone_numbers (contact_id, type, number, description, profile_id) VALUES (10, 2, '0911', 'made', NULL)",
            [],
        )
        .unwrap();
    let local_id = store.conn().last_insert_rowid();
    let values = mirror::mirror_by_local_id(store.conn(), phones(), local_id)
        .unwrap()
        .unwrap()
        .values;
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
                    row_values: &phones().values_to_json(&values),
                },
            )?;
            journal::advance(tx, seq, &Event::Send)?;
            journal::advance(
                tx,
                seq,
                &Event::OutcomeUnknown {
                    settle_at: "2000-01-01T00:00:00.000Z",
                    status: None,
                    error: "connection dropped",
                },
            )
        })
        .unwrap();
    let r = pull(&mut store, vec![record(77, 10, "0911", Some("made"))]);
    assert_eq!(r.inserted, 0, "not copied in as someone else's record");
    assert_eq!(count(&store, "SELECT count(*) FROM phone_numbers"), 1);
    assert_eq!(
        count(
            &store,
            &format!("SELECT id FROM phone_numbers WHERE local_id = {local_id}")
        ),
        77
    );
    let active = journal::active(store.conn(), "phone_numbers").unwrap();
    assert!(active.is_empty(), "the create is settled: {active:?}");
}
