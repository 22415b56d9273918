//! Unit tests of the store: opening and migrating, the mirror and base tables, the walk's
//! seen-set, the journal, the sync state and the conflict record.

use super::journal::{self, Event, NewEntry, Op, Stage, StoredState, OUTCOME_UNKNOWN};
use super::mirror::{self, MirrorRow};
use super::sync_state::{self, Conflict};
use super::*;
use crate::resources::{ResourceKind, ResourceSpec};
use rusqlite::types::Value;
use tempfile::TempDir;

fn send(tx: &Connection, seq: i64) -> Result<Stage> {
    journal::advance(tx, seq, &Event::Send)
}

fn succeed(tx: &Connection, seq: i64, upstream_id: Option<i64>) -> Result<Stage> {
    journal::advance(tx, seq, &Event::Succeed { upstream_id })
}

fn reject(tx: &Connection, seq: i64, status: Option<u16>, error: &str) -> Result<Stage> {
    journal::advance(tx, seq, &Event::Reject { status, error })
}

fn supersede(tx: &Connection, seq: i64) -> Result<Stage> {
    journal::advance(tx, seq, &Event::Supersede)
}

fn open_temp() -> (TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("restsync.db")).unwrap();
    (dir, store)
}

fn phones() -> &'static ResourceSpec {
    ResourceKind::PHONE_NUMBERS.spec()
}

/// contact_id, type, number, extension, description, profile_id (read-only).
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

fn tables(conn: &Connection) -> Vec<String> {
    conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

fn user_version(conn: &Connection) -> i64 {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap()
}

fn new_entry<'a>(resource: &'a str, op: Op, local_id: Option<i64>) -> NewEntry<'a> {
    NewEntry {
        resource,
        op,
        local_id,
        upstream_id: None,
        payload: r#"{"number":"1"}"#,
        row_values: "[1]",
    }
}

#[test]
fn open_creates_the_schema() {
    let (dir, store) = open_temp();
    assert!(dir.path().join("restsync.db").exists());
    assert_eq!(store.path(), dir.path().join("restsync.db"));
    let t = tables(store.conn());
    for name in [
        "phone_numbers",
        "phone_numbers_base",
        "addresses",
        "addresses_base",
        "smart_numbers",
        "smart_numbers_base",
        "sync_state",
        "journal",
        "conflicts",
    ] {
        assert!(t.iter().any(|x| x == name), "{name} missing from {t:?}");
    }
    assert_eq!(user_version(store.conn()), schema_version() as i64);
    assert!(schema_version() >= 1);
    // The mirror tables have the spec's columns.
    for kind in ResourceKind::BUILT_IN {
        let spec = kind.spec();
        let q = format!(
            "SELECT local_id, id, {} FROM {}",
            mirror::column_list(spec),
            spec.table
        );
        store.conn().prepare(&q).unwrap();
        assert_eq!(mirror::count_mirror(store.conn(), spec).unwrap(), 0);
        assert_eq!(mirror::count_base(store.conn(), spec).unwrap(), 0);
    }
}

#[test]
fn open_creates_missing_parent_directories() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a").join("b").join("m.db");
    Store::open(&path).unwrap();
    assert!(path.exists());
}

#[test]
fn reopening_is_idempotent_and_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    {
        let mut store = Store::open(&path).unwrap();
        store
            .write(|tx| mirror::insert_mirror(tx, phones(), Some(1), &phone("1", None, 1)))
            .unwrap();
    }
    for _ in 0..2 {
        let store = Store::open(&path).unwrap();
        assert_eq!(user_version(store.conn()), schema_version() as i64);
        assert_eq!(mirror::count_mirror(store.conn(), phones()).unwrap(), 1);
    }
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let newer = schema_version() as i64 + 1;
    {
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", newer).unwrap();
        conn.execute_batch("CREATE TABLE from_the_future (x)").unwrap();
    }
    match Store::open(&path) {
        Err(StoreError::TooNew {
            path: p,
            found,
            supported,
        }) => {
            assert_eq!(p, path);
            assert_eq!(found, newer);
            assert_eq!(supported, schema_version());
        }
        Err(e) => panic!("expected TooNew, got {e}"),
        Ok(_) => panic!("expected TooNew, the database was opened"),
    }
    match Store::open_read_only(&path) {
        Err(e @ StoreError::TooNew { .. }) => assert!(e.to_string().contains("upgrade restsync"), "{e}"),
        Err(e) => panic!("expected TooNew, got {e}"),
        Ok(_) => panic!("expected TooNew, the database was opened"),
    }
    // Untouched: nothing was migrated.
    let conn = Connection::open(&path).unwrap();
    assert_eq!(user_version(&conn), newer);
    assert_eq!(tables(&conn), ["from_the_future"]);
}

#[test]
fn connection_is_durable_and_checks_foreign_keys() {
    let (_dir, store) = open_temp();
    let c = store.conn();
    let mode: String = c.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
    assert_eq!(mode.to_lowercase(), "wal");
    let sync: i64 = c.pragma_query_value(None, "synchronous", |r| r.get(0)).unwrap();
    assert_eq!(sync, 2, "synchronous = FULL");
    let fk: i64 = c.pragma_query_value(None, "foreign_keys", |r| r.get(0)).unwrap();
    assert_eq!(fk, 1);
    let busy: i64 = c.pragma_query_value(None, "busy_timeout", |r| r.get(0)).unwrap();
    assert_eq!(busy, BUSY_TIMEOUT.as_millis() as i64);
}

#[test]
fn mirror_rows_insert_read_update_and_delete() {
    let (_dir, mut store) = open_temp();
    let spec = phones();
    store
        .write(|tx| {
            let a = mirror::insert_mirror(tx, spec, None, &phone("111", None, 1))?;
            let b = mirror::insert_mirror(tx, spec, Some(42), &phone("222", Some("d"), 2))?;
            assert_ne!(a, b);
            assert_eq!(
                mirror::mirror_by_local_id(tx, spec, a)?,
                Some(MirrorRow {
                    local_id: a,
                    id: None,
                    values: phone("111", None, 1)
                })
            );
            assert_eq!(
                mirror::mirror_by_id(tx, spec, 42)?,
                Some(MirrorRow {
                    local_id: b,
                    id: Some(42),
                    values: phone("222", Some("d"), 2)
                })
            );
            assert_eq!(mirror::mirror_by_id(tx, spec, 43)?, None);
            // Upstream ids are unique in the mirror.
            assert!(mirror::insert_mirror(tx, spec, Some(42), &phone("333", None, 1)).is_err());

            mirror::update_mirror(tx, spec, b, &phone("222", Some("changed"), 3))?;
            assert_eq!(
                mirror::mirror_by_id(tx, spec, 42)?.unwrap().values,
                phone("222", Some("changed"), 3)
            );
            mirror::set_mirror_id(tx, spec, a, Some(7))?;
            assert_eq!(mirror::mirror_by_id(tx, spec, 7)?.unwrap().local_id, a);
            mirror::set_mirror_id(tx, spec, a, None)?;
            assert_eq!(mirror::mirror_by_id(tx, spec, 7)?, None);
            assert_eq!(mirror::count_mirror(tx, spec)?, 2);
            mirror::delete_mirror(tx, spec, a)?;
            assert_eq!(mirror::mirror_by_local_id(tx, spec, a)?, None);
            assert_eq!(mirror::count_mirror(tx, spec)?, 1);
            Ok(())
        })
        .unwrap();
}

#[test]
fn base_snapshots_upsert_and_hash_lookup() {
    let (_dir, mut store) = open_temp();
    let spec = phones();
    store
        .write(|tx| {
            mirror::upsert_base(tx, spec, 1, Some(10), &phone("1", None, 1), "{\"id\":1}", 111)?;
            mirror::upsert_base(tx, spec, 2, None, &phone("2", None, 1), "{\"id\":2}", 222)?;
            let b = mirror::base_by_id(tx, spec, 1)?.unwrap();
            assert_eq!((b.id, b.local_id, b.hash), (1, Some(10), 111));
            assert_eq!(b.values, phone("1", None, 1));
            // Upsert replaces.
            mirror::upsert_base(tx, spec, 1, Some(10), &phone("1", Some("x"), 1), "{}", 112)?;
            let b = mirror::base_by_id(tx, spec, 1)?.unwrap();
            assert_eq!((b.hash, b.values[4].clone()), (112, Value::Text("x".into())));
            assert_eq!(mirror::count_base(tx, spec)?, 2);
            let raw: String = tx.query_row("SELECT raw FROM phone_numbers_base WHERE id = 2", [], |r| {
                r.get(0)
            })?;
            assert_eq!(raw, "{\"id\":2}");

            let h = mirror::base_hashes(tx, spec, &[1, 2, 3])?;
            assert_eq!(h.len(), 2);
            assert_eq!(h[&1], 112);
            assert_eq!(h[&2], 222);
            assert!(mirror::base_hashes(tx, spec, &[])?.is_empty());

            mirror::delete_base(tx, spec, 2)?;
            assert_eq!(mirror::base_by_id(tx, spec, 2)?, None);
            Ok(())
        })
        .unwrap();
}

#[test]
fn base_hashes_cover_more_ids_than_one_chunk() {
    let (_dir, mut store) = open_temp();
    let spec = ResourceKind::SMART_NUMBERS.spec();
    let values = vec![Value::Null; spec.columns.len()];
    store
        .write(|tx| {
            for id in 1..=1200 {
                mirror::upsert_base(tx, spec, id, None, &values, "{}", id * 3)?;
            }
            let ids: Vec<i64> = (0..=1300).collect();
            let h = mirror::base_hashes(tx, spec, &ids)?;
            assert_eq!(h.len(), 1200);
            assert!((1..=1200).all(|id| h[&id] == id * 3));
            Ok(())
        })
        .unwrap();
}

#[test]
fn local_changes_finds_creates_updates_and_deletes() {
    let (_dir, mut store) = open_temp();
    let spec = phones();
    let changes = store
        .write(|tx| {
            // A new local row.
            let new = mirror::insert_mirror(tx, spec, None, &phone("new", None, 0))?;
            // In sync.
            mirror::insert_mirror(tx, spec, Some(1), &phone("1", None, 1))?;
            mirror::upsert_base(tx, spec, 1, None, &phone("1", None, 1), "{}", 1)?;
            // A writable column edited.
            let edited = mirror::insert_mirror(tx, spec, Some(2), &phone("2", Some("edited"), 1))?;
            mirror::upsert_base(tx, spec, 2, None, &phone("2", Some("orig"), 1), "{}", 2)?;
            // A writable column set to NULL.
            let cleared = mirror::insert_mirror(tx, spec, Some(3), &phone("3", None, 1))?;
            mirror::upsert_base(tx, spec, 3, None, &phone("3", Some("orig"), 1), "{}", 3)?;
            // Only the read-only column differs: not a change to push.
            mirror::insert_mirror(tx, spec, Some(4), &phone("4", None, 99))?;
            mirror::upsert_base(tx, spec, 4, None, &phone("4", None, 1), "{}", 4)?;
            // Deleted locally.
            mirror::upsert_base(tx, spec, 5, Some(55), &phone("5", None, 1), "{}", 5)?;
            let c = mirror::local_changes(tx, spec)?;
            Ok((c, new, edited, cleared))
        })
        .unwrap();
    let (c, new, edited, cleared) = changes;
    assert_eq!(c.creates.len(), 1);
    assert_eq!(c.creates[0].local_id, new);
    assert_eq!(c.creates[0].values, phone("new", None, 0));

    let updates: Vec<(i64, i64)> = c.updates.iter().map(|(m, b)| (m.local_id, b.id)).collect();
    assert_eq!(updates, [(edited, 2), (cleared, 3)]);
    assert_eq!(c.updates[0].0.values, phone("2", Some("edited"), 1));
    assert_eq!(c.updates[0].1.values, phone("2", Some("orig"), 1));
    assert_eq!(c.updates[0].1.hash, 2);

    assert_eq!(c.deletes.len(), 1);
    assert_eq!((c.deletes[0].id, c.deletes[0].local_id), (5, Some(55)));
    assert_eq!(c.deletes[0].values, phone("5", None, 1));
}

#[test]
fn restore_from_base_and_is_mapped() {
    let (_dir, mut store) = open_temp();
    let spec = phones();
    store
        .write(|tx| {
            mirror::upsert_base(tx, spec, 1, None, &phone("1", Some("base"), 1), "{}", 1)?;
            let l = mirror::insert_mirror(tx, spec, Some(1), &phone("1", Some("local"), 1))?;
            mirror::restore_from_base(tx, spec, 1)?;
            assert_eq!(
                mirror::mirror_by_local_id(tx, spec, l)?.unwrap().values,
                phone("1", Some("base"), 1)
            );
            mirror::delete_mirror(tx, spec, l)?;
            mirror::restore_from_base(tx, spec, 1)?;
            assert_eq!(
                mirror::mirror_by_id(tx, spec, 1)?.unwrap().values,
                phone("1", Some("base"), 1)
            );
            // No base: nothing happens.
            mirror::restore_from_base(tx, spec, 9)?;
            assert_eq!(mirror::count_mirror(tx, spec)?, 1);

            assert!(mirror::is_mapped(tx, spec, 1)?);
            mirror::insert_mirror(tx, spec, Some(2), &phone("2", None, 1))?;
            assert!(mirror::is_mapped(tx, spec, 2)?);
            mirror::upsert_base(tx, spec, 3, None, &phone("3", None, 1), "{}", 3)?;
            assert!(mirror::is_mapped(tx, spec, 3)?);
            assert!(!mirror::is_mapped(tx, spec, 4)?);
            Ok(())
        })
        .unwrap();
}

/// A row whose id was edited by hand gets its id back in place: restoring never leaves a
/// second row behind (the edited one would then be created upstream as a copy). A row
/// whose id was cleared along with its values is a new row: the record comes back beside it.
#[test]
fn restore_from_base_puts_an_edited_id_back_in_place() {
    let (_dir, mut store) = open_temp();
    let spec = phones();
    store
        .write(|tx| {
            let cleared = mirror::insert_mirror(tx, spec, None, &phone("1", Some("base"), 1))?;
            mirror::upsert_base(tx, spec, 1, Some(cleared), &phone("1", Some("base"), 1), "{}", 1)?;
            let typed = mirror::insert_mirror(tx, spec, Some(77), &phone("2", Some("mine"), 1))?;
            mirror::upsert_base(tx, spec, 2, Some(typed), &phone("2", Some("base"), 1), "{}", 2)?;
            let reused = mirror::insert_mirror(tx, spec, None, &phone("new", None, 1))?;
            mirror::upsert_base(tx, spec, 3, Some(reused), &phone("3", None, 1), "{}", 3)?;
            let base = |id| mirror::base_by_id(tx, spec, id).map(Option::unwrap);
            assert_eq!(
                mirror::id_edit(tx, spec, &base(1)?)?,
                Some(mirror::IdEdit::Edited {
                    local_id: cleared,
                    now: None
                })
            );
            assert_eq!(
                mirror::id_edit(tx, spec, &base(2)?)?,
                Some(mirror::IdEdit::Edited {
                    local_id: typed,
                    now: Some(77)
                })
            );
            assert_eq!(mirror::id_edit(tx, spec, &base(3)?)?, None);

            for id in [1, 2, 3] {
                mirror::restore_from_base(tx, spec, id)?;
            }
            assert_eq!(
                mirror::count_mirror(tx, spec)?,
                4,
                "only the reused row gained a neighbour"
            );
            let row = mirror::mirror_by_local_id(tx, spec, cleared)?.unwrap();
            assert_eq!((row.id, row.values), (Some(1), phone("1", Some("base"), 1)));
            let row = mirror::mirror_by_local_id(tx, spec, typed)?.unwrap();
            assert_eq!((row.id, row.values), (Some(2), phone("2", Some("base"), 1)));
            assert_eq!(mirror::mirror_by_local_id(tx, spec, reused)?.unwrap().id, None);
            assert_eq!(
                mirror::mirror_by_id(tx, spec, 3)?.unwrap().values,
                phone("3", None, 1)
            );

            // A row that now holds another record's id, whose own row is gone, is taken over.
            let a = mirror::mirror_by_id(tx, spec, 1)?.unwrap().local_id;
            let b = mirror::mirror_by_id(tx, spec, 2)?.unwrap().local_id;
            mirror::delete_mirror(tx, spec, b)?;
            mirror::set_mirror_id(tx, spec, a, Some(2))?;
            assert_eq!(
                mirror::id_edit(tx, spec, &base(1)?)?,
                Some(mirror::IdEdit::TakenOver {
                    local_id: a,
                    other: 2,
                    owner: b
                })
            );
            Ok(())
        })
        .unwrap();
}

#[test]
fn walk_tracks_seen_ids_repeats_and_unseen_bases() {
    let (_dir, mut store) = open_temp();
    let spec = phones();
    store
        .write(|tx| {
            for id in 1..=5 {
                mirror::upsert_base(tx, spec, id, None, &phone("x", None, 1), "{}", id)?;
            }
            Ok(())
        })
        .unwrap();
    let c = store.conn();
    mirror::begin_walk(c, spec).unwrap();
    assert_eq!(mirror::seen_count(c, spec).unwrap(), 0);
    assert_eq!(
        mirror::mark_seen(c, spec, &[1, 2, 2]).unwrap(),
        1,
        "a repeat within one page"
    );
    assert_eq!(
        mirror::mark_seen(c, spec, &[2, 3, 9]).unwrap(),
        1,
        "a repeat across pages"
    );
    assert_eq!(mirror::mark_seen(c, spec, &[]).unwrap(), 0);
    assert_eq!(mirror::seen_count(c, spec).unwrap(), 4);
    assert_eq!(mirror::unseen_base(c, spec).unwrap(), [4, 5]);
    // Walks of other resources are tracked apart.
    let addr = ResourceKind::ADDRESSES.spec();
    mirror::begin_walk(c, addr).unwrap();
    assert_eq!(mirror::mark_seen(c, addr, &[1, 2]).unwrap(), 0);
    assert_eq!(mirror::seen_count(c, spec).unwrap(), 4);
    // A new walk starts empty.
    mirror::begin_walk(c, spec).unwrap();
    assert_eq!(mirror::seen_count(c, spec).unwrap(), 0);
    assert_eq!(mirror::unseen_base(c, spec).unwrap(), [1, 2, 3, 4, 5]);
    assert_eq!(mirror::mark_seen(c, spec, &[1]).unwrap(), 0);
    // The seen set is temporary: nothing of it lands in the database file.
    assert!(!tables(c).iter().any(|t| t.starts_with("seen_")));
}

#[test]
fn journal_entry_lifecycle() {
    let (_dir, mut store) = open_temp();
    store
        .write(|tx| {
            let seq = journal::insert(
                tx,
                &NewEntry {
                    resource: "phone_numbers",
                    op: Op::Update,
                    local_id: Some(3),
                    upstream_id: Some(30),
                    payload: r#"{"contact_id":5}"#,
                    row_values: "[5]",
                },
            )?;
            let e = journal::get(tx, seq)?.unwrap();
            assert_eq!(e.seq, seq);
            assert_eq!(e.resource, "phone_numbers");
            assert_eq!(e.op, Op::Update);
            assert_eq!((e.local_id, e.upstream_id), (Some(3), Some(30)));
            assert_eq!(e.payload, r#"{"contact_id":5}"#);
            assert_eq!(e.row_values, "[5]");
            assert_eq!(e.state, StoredState::Pending);
            assert_eq!(e.outcome, None);
            assert_eq!(e.attempts, 0);
            assert_eq!(e.created_at, e.updated_at);
            assert!(e.created_at.ends_with('Z'), "{}", e.created_at);

            send(tx, seq)?;
            let e = journal::get(tx, seq)?.unwrap();
            assert_eq!((e.state, e.attempts), (StoredState::InFlight, 1));
            assert_eq!(e.outcome.as_deref(), Some(OUTCOME_UNKNOWN));

            journal::advance(
                tx,
                seq,
                &Event::Retry {
                    at: "2100-01-01T00:00:00.000Z",
                    status: Some(503),
                    error: "busy",
                    max_attempts: 10,
                },
            )?;
            let e = journal::get(tx, seq)?.unwrap();
            assert_eq!(e.state, StoredState::Pending);
            assert_eq!(e.attempts, 1, "a retry keeps the attempt count");
            assert_eq!(e.next_attempt_at.as_deref(), Some("2100-01-01T00:00:00.000Z"));
            assert_eq!(
                (e.last_status, e.last_error.as_deref()),
                (Some(503), Some("busy"))
            );
            assert_eq!(e.stage, Stage::Queued);

            send(tx, seq)?;
            assert_eq!(journal::get(tx, seq)?.unwrap().attempts, 2);

            reject(tx, seq, Some(422), "invalid number")?;
            let e = journal::get(tx, seq)?.unwrap();
            assert_eq!(e.state, StoredState::Failed);
            assert_eq!(e.attempts, 2);
            assert_eq!(
                (e.last_status, e.last_error.as_deref()),
                (Some(422), Some("invalid number"))
            );
            assert_eq!((e.outcome, e.next_attempt_at), (None, None));

            assert_eq!(journal::retry(tx, Some(seq))?, 1);
            let e = journal::get(tx, seq)?.unwrap();
            assert_eq!(
                (e.state, e.attempts, e.next_attempt_at),
                (StoredState::Pending, 0, None)
            );

            send(tx, seq)?;
            succeed(tx, seq, None)?;
            let e = journal::get(tx, seq)?.unwrap();
            assert_eq!(e.state, StoredState::Done);
            assert_eq!(e.upstream_id, Some(30), "done without an id keeps the known one");
            assert_eq!(e.outcome, None);
            // Finished entries are not retried or superseded.
            assert_eq!(journal::retry(tx, Some(seq))?, 0);
            assert!(supersede(tx, seq).is_err());
            assert_eq!(journal::get(tx, seq)?.unwrap().state, StoredState::Done);
            assert_eq!(journal::get(tx, seq + 100)?, None);
            Ok(())
        })
        .unwrap();
}

#[test]
fn journal_done_records_the_created_id() {
    let (_dir, mut store) = open_temp();
    store
        .write(|tx| {
            let seq = journal::insert(tx, &new_entry("phone_numbers", Op::Create, Some(1)))?;
            assert_eq!(journal::get(tx, seq)?.unwrap().upstream_id, None);
            send(tx, seq)?;
            succeed(tx, seq, Some(777))?;
            assert_eq!(journal::get(tx, seq)?.unwrap().upstream_id, Some(777));
            Ok(())
        })
        .unwrap();
}

#[test]
fn journal_supersede_active_list_counts_and_retry_all() {
    let (_dir, mut store) = open_temp();
    store
        .write(|tx| {
            let p = journal::insert(tx, &new_entry("phone_numbers", Op::Create, Some(1)))?;
            let f = journal::insert(tx, &new_entry("phone_numbers", Op::Update, Some(2)))?;
            let i = journal::insert(tx, &new_entry("phone_numbers", Op::Delete, Some(3)))?;
            let s = journal::insert(tx, &new_entry("phone_numbers", Op::Update, Some(4)))?;
            let d = journal::insert(tx, &new_entry("phone_numbers", Op::Create, Some(5)))?;
            let other = journal::insert(tx, &new_entry("addresses", Op::Create, Some(1)))?;
            assert!(p < f && f < i && i < s && s < d && d < other);
            reject(tx, f, None, "rejected")?;
            send(tx, i)?;
            supersede(tx, s)?;
            send(tx, d)?;
            succeed(tx, d, Some(50))?;
            assert_eq!(journal::get(tx, s)?.unwrap().state, StoredState::Superseded);

            let active: Vec<i64> = journal::active(tx, "phone_numbers")?
                .iter()
                .map(|e| e.seq)
                .collect();
            assert_eq!(active, [p, f, i]);
            let failed: Vec<i64> = journal::failed(tx, "phone_numbers")?
                .iter()
                .map(|e| e.seq)
                .collect();
            assert_eq!(failed, [f]);
            let all: Vec<i64> = journal::list(tx, None, 100)?.iter().map(|e| e.seq).collect();
            assert_eq!(all, [other, d, s, i, f, p], "newest first");
            assert_eq!(journal::list(tx, None, 2)?.len(), 2);
            let pending: Vec<i64> = journal::list(tx, Some(StoredState::Pending), 10)?
                .iter()
                .map(|e| e.seq)
                .collect();
            assert_eq!(pending, [other, p]);

            let counts = journal::counts(tx, "phone_numbers")?;
            let expected: Vec<(String, i64)> = [
                ("done", 1),
                ("failed", 1),
                ("in_flight", 1),
                ("pending", 1),
                ("superseded", 1),
            ]
            .into_iter()
            .map(|(s, n)| (s.to_string(), n))
            .collect();
            assert_eq!(counts, expected);
            assert_eq!(journal::counts(tx, "smart_numbers")?, []);

            // An in-flight entry may have reached upstream: it is never superseded.
            assert!(supersede(tx, i).is_err());
            assert_eq!(journal::get(tx, i)?.unwrap().state, StoredState::InFlight);

            // Retry everything: failed and pending entries everywhere, not finished or
            // in-flight ones.
            assert_eq!(journal::retry(tx, None)?, 3);
            assert_eq!(journal::get(tx, f)?.unwrap().state, StoredState::Pending);
            assert_eq!(journal::get(tx, d)?.unwrap().state, StoredState::Done);
            assert_eq!(journal::get(tx, s)?.unwrap().state, StoredState::Superseded);
            Ok(())
        })
        .unwrap();
}

#[test]
fn journal_purge_removes_only_old_finished_entries() {
    let (_dir, mut store) = open_temp();
    store
        .write(|tx| {
            let done = journal::insert(tx, &new_entry("addresses", Op::Create, Some(1)))?;
            let superseded = journal::insert(tx, &new_entry("addresses", Op::Update, Some(2)))?;
            let failed = journal::insert(tx, &new_entry("addresses", Op::Update, Some(3)))?;
            let pending = journal::insert(tx, &new_entry("addresses", Op::Delete, Some(4)))?;
            send(tx, done)?;
            succeed(tx, done, None)?;
            supersede(tx, superseded)?;
            reject(tx, failed, None, "x")?;

            assert_eq!(journal::purge_finished(tx, "2000-01-01T00:00:00.000Z")?, 0);
            assert_eq!(journal::purge_finished(tx, "2999-01-01T00:00:00.000Z")?, 2);
            assert_eq!(journal::get(tx, done)?, None);
            assert_eq!(journal::get(tx, superseded)?, None);
            assert!(journal::get(tx, failed)?.is_some());
            assert!(journal::get(tx, pending)?.is_some());
            Ok(())
        })
        .unwrap();
}

#[test]
fn journal_names_parse() {
    for op in [Op::Create, Op::Update, Op::Delete] {
        assert_eq!(op.as_str().parse::<Op>(), Ok(op));
        assert_eq!(op.to_string(), op.as_str());
    }
    assert!("upsert".parse::<Op>().is_err());
    for st in StoredState::ALL {
        assert_eq!(st.as_str().parse::<StoredState>(), Ok(st));
    }
    assert_eq!("in-flight".parse::<StoredState>(), Ok(StoredState::InFlight));
    let err = "stuck".parse::<StoredState>().unwrap_err();
    assert!(err.contains("stuck") && err.contains("pending"), "{err}");
}

#[test]
fn journal_constraints_reject_unknown_ops_and_states() {
    let (_dir, store) = open_temp();
    let insert = |op: &str, state: &str| {
        store.conn().execute(
            "INSERT INTO journal (resource, op, payload, row_values, state, created_at, updated_at) \
             VALUES ('addresses', ?1, '{}', '[]', ?2, 'now', 'now')",
            [op, state],
        )
    };
    assert!(insert("upsert", "pending").is_err());
    assert!(insert("create", "stuck").is_err());
    assert!(insert("create", "pending").is_ok());
}

#[test]
fn sync_state_records_walks_and_errors() {
    let (_dir, mut store) = open_temp();
    store
        .write(|tx| {
            let st = sync_state::get(tx, "addresses")?;
            assert_eq!(
                st,
                sync_state::SyncState {
                    resource: "addresses".into(),
                    ..Default::default()
                }
            );

            sync_state::walk_started(tx, "addresses")?;
            let st = sync_state::get(tx, "addresses")?;
            assert!(st.last_walk_started_at.is_some());
            assert_eq!(st.last_complete_walk_at, None);

            sync_state::record_error(tx, "addresses", "HTTP 500", "transient")?;
            let st = sync_state::get(tx, "addresses")?;
            assert_eq!(st.last_error.as_deref(), Some("HTTP 500"));
            assert!(st.last_error_at.is_some());
            assert!(st.last_walk_started_at.is_some(), "an error keeps the walk start");

            sync_state::walk_completed(tx, "addresses", 130, 6, 1234)?;
            let st = sync_state::get(tx, "addresses")?;
            assert!(st.last_complete_walk_at.is_some());
            assert_eq!(
                (st.row_count, st.pages, st.last_duration_ms),
                (Some(130), Some(6), Some(1234))
            );
            assert_eq!(
                (st.last_error, st.last_error_at),
                (None, None),
                "a complete walk clears the error"
            );
            assert!(st.last_walk_started_at.is_some());

            // An error on a resource never walked before.
            sync_state::record_error(tx, "smart_numbers", "boom", "fatal")?;
            let st = sync_state::get(tx, "smart_numbers")?;
            assert_eq!(st.last_error.as_deref(), Some("boom"));
            assert_eq!(st.last_walk_started_at, None);
            // A completed walk on a resource never started before.
            sync_state::walk_completed(tx, "phone_numbers", 1, 1, 1)?;
            assert_eq!(sync_state::get(tx, "phone_numbers")?.row_count, Some(1));
            Ok(())
        })
        .unwrap();
}

#[test]
fn conflicts_are_recorded_and_counted() {
    let (_dir, mut store) = open_temp();
    let conflict = |resource: &str, field: Option<&str>, resolution: &str| Conflict {
        resource: resource.into(),
        local_id: Some(1),
        upstream_id: Some(10),
        kind: if field.is_some() {
            "field"
        } else {
            "deleted_upstream"
        }
        .into(),
        field: field.map(Into::into),
        base_value: Some("\"a\"".into()),
        local_value: Some("\"b\"".into()),
        remote_value: field.map(|_| "\"c\"".into()),
        resolution: resolution.into(),
    };
    store
        .write(|tx| {
            assert_eq!(sync_state::conflict_count(tx, "phone_numbers")?, 0);
            sync_state::record_conflict(tx, &conflict("phone_numbers", Some("description"), "remote-wins"))?;
            sync_state::record_conflict(tx, &conflict("phone_numbers", None, "unlinked"))?;
            sync_state::record_conflict(tx, &conflict("addresses", Some("address"), "local-wins"))?;
            assert_eq!(sync_state::conflict_count(tx, "phone_numbers")?, 2);
            assert_eq!(sync_state::conflict_count(tx, "addresses")?, 1);
            assert_eq!(sync_state::conflict_count(tx, "smart_numbers")?, 0);
            let recent = sync_state::recent_conflicts(tx, "phone_numbers", 10)?;
            assert_eq!(
                recent,
                [
                    conflict("phone_numbers", None, "unlinked"),
                    conflict("phone_numbers", Some("description"), "remote-wins")
                ]
            );
            assert_eq!(sync_state::recent_conflicts(tx, "phone_numbers", 1)?.len(), 1);
            // The kind is checked by the schema.
            let mut bad = conflict("addresses", None, "x");
            bad.kind = "other".into();
            assert!(sync_state::record_conflict(tx, &bad).is_err());
            Ok(())
        })
        .unwrap();
}

#[test]
fn write_commits_on_ok_and_rolls_back_on_err() {
    let (_dir, mut store) = open_temp();
    let spec = phones();
    let r: Result<()> = store.write(|tx| {
        mirror::insert_mirror(tx, spec, Some(1), &phone("1", None, 1))?;
        journal::insert(tx, &new_entry("phone_numbers", Op::Create, Some(1)))?;
        Err(StoreError::Task("stop".into()))
    });
    assert!(matches!(r, Err(StoreError::Task(ref m)) if m == "stop"), "{r:?}");
    assert_eq!(mirror::count_mirror(store.conn(), spec).unwrap(), 0);
    assert!(journal::list(store.conn(), None, 10).unwrap().is_empty());
    assert!(store.conn().is_autocommit(), "no transaction left open");

    let local_id = store
        .write(|tx| mirror::insert_mirror(tx, spec, Some(1), &phone("1", None, 1)))
        .unwrap();
    assert_eq!(
        mirror::mirror_by_local_id(store.conn(), spec, local_id)
            .unwrap()
            .unwrap()
            .id,
        Some(1)
    );
    // A failing statement inside the closure rolls back the earlier ones too.
    let r = store.write(|tx| {
        mirror::insert_mirror(tx, spec, Some(2), &phone("2", None, 1))?;
        mirror::insert_mirror(tx, spec, Some(1), &phone("dup", None, 1))
    });
    assert!(matches!(r, Err(StoreError::Sql(_))), "{r:?}");
    assert_eq!(mirror::count_mirror(store.conn(), spec).unwrap(), 1);
}

#[test]
fn read_only_store_reads_while_a_writer_holds_the_database() {
    let (dir, mut store) = open_temp();
    let path = dir.path().join("restsync.db");
    let spec = phones();
    store
        .write(|tx| mirror::insert_mirror(tx, spec, Some(1), &phone("1", None, 1)))
        .unwrap();
    let reader = Store::open_read_only(&path).unwrap();
    assert_eq!(reader.path(), path);
    store
        .write(|tx| {
            mirror::insert_mirror(tx, spec, Some(2), &phone("2", None, 1))?;
            // The writer's transaction is open and uncommitted: readers see the last commit.
            assert_eq!(mirror::count_mirror(reader.conn(), spec)?, 1);
            let late = Store::open_read_only(&path)?;
            assert_eq!(mirror::count_mirror(late.conn(), spec)?, 1);
            assert_eq!(mirror::count_mirror(tx, spec)?, 2);
            Ok(())
        })
        .unwrap();
    assert_eq!(mirror::count_mirror(reader.conn(), spec).unwrap(), 2);
    // It cannot write.
    let err = reader
        .conn()
        .execute("DELETE FROM phone_numbers", [])
        .unwrap_err();
    assert_eq!(
        err.sqlite_error_code(),
        Some(rusqlite::ErrorCode::ReadOnly),
        "{err}"
    );
}

#[test]
fn read_only_open_of_a_missing_database_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.db");
    assert!(matches!(
        Store::open_read_only(&path),
        Err(StoreError::Open { .. })
    ));
    assert!(!path.exists(), "a read-only open creates nothing");
}

#[test]
fn a_second_writer_gets_a_busy_error() {
    let (dir, mut store) = open_temp();
    let path = dir.path().join("restsync.db");
    store
        .write(|_tx| {
            let other = Connection::open(&path)?;
            other.busy_timeout(std::time::Duration::ZERO)?;
            let err = StoreError::from(other.execute_batch("BEGIN IMMEDIATE").unwrap_err());
            assert!(err.is_busy(), "{err}");
            Ok(())
        })
        .unwrap();
    assert!(!StoreError::Task("x".into()).is_busy());
    assert!(!StoreError::from(rusqlite::Error::QueryReturnedNoRows).is_busy());
}

#[test]
fn now_text_is_utc_milliseconds() {
    let t = now_text();
    assert_eq!(t.len(), "2024-01-01T00:00:00.000Z".len(), "{t}");
    assert!(t.ends_with('Z'));
    assert!(chrono::DateTime::parse_from_rfc3339(&t).is_ok());
}

#[tokio::test]
async fn a_read_only_database_is_reopened_once_writable_and_errors_name_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("restsync.db");
    drop(Store::open(&path).unwrap());
    // As a daemon started while the file was read-only would hold it.
    let db = AsyncStore::new(Store::open_read_only(&path).unwrap());
    let write = |db: &AsyncStore| {
        let db = db.clone();
        async move {
            db.call(|s| s.write(|tx| sync_state::walk_started(tx, "phone_numbers")))
                .await
        }
    };
    let err = write(&db).await.unwrap_err();
    assert!(err.needs_reopen(), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "the error names the database: {err}"
    );
    // The condition has ended (here: the next open is read-write): no restart needed.
    write(&db).await.unwrap();
    let started = db
        .call(|s| sync_state::get(s.conn(), "phone_numbers"))
        .await
        .unwrap()
        .last_walk_started_at;
    assert!(started.is_some());
}
