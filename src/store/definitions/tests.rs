use super::*;
use crate::resources::definition::{build, ColumnDefinition, Definition};
use crate::resources::{define, ResourceKind};
use crate::store::{mirror, tracking, Store};
use rusqlite::types::Value;

fn column(name: &str, ty: &str, from: Option<&str>, writable: bool) -> ColumnDefinition {
    ColumnDefinition {
        name: Some(name.into()),
        ty: Some(ty.into()),
        from: from.map(str::to_string),
        writable: Some(writable),
        ..ColumnDefinition::default()
    }
}

/// An e-mail resource named `name` with the given columns after `contact_id` and `email`.
fn emails(name: &str, extra: Vec<ColumnDefinition>) -> ResourceKind {
    let mut columns = vec![
        column("contact_id", "integer", Some("email_contact.contact_id"), true),
        column("email", "text", None, true),
    ];
    columns.extend(extra);
    let def = Definition {
        upstream: Some("firstline".into()),
        path: Some("/api/v1/email".into()),
        natural_key: Some(vec!["contact_id".into(), "email".into()]),
        columns: Some(columns),
        ..Definition::default()
    };
    let mut problems = Vec::new();
    let spec = build(name, &def, &mut problems).unwrap_or_else(|| panic!("{problems:?}"));
    define(spec)
}

fn table_info(store: &Store, table: &str) -> Vec<(String, String, i64)> {
    let mut stmt = store
        .conn()
        .prepare(&format!(
            "SELECT name, type, pk FROM pragma_table_info('{table}') ORDER BY cid"
        ))
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn unique_columns(store: &Store, table: &str) -> Vec<String> {
    let mut stmt = store
        .conn()
        .prepare(&format!(
            "SELECT ii.name FROM pragma_index_list('{table}') il, pragma_index_info(il.name) ii WHERE il.[unique] ORDER BY ii.name"
        ))
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn a_defined_resource_gets_mirror_and_base_tables_shaped_like_a_built_ins() {
    let kind = emails("emails_shape", vec![column("score", "real", None, false)]);
    let mut store = Store::open_in_memory().unwrap();
    ensure_all(&mut store, &[kind]).unwrap();
    let cols = table_info(&store, "emails_shape");
    assert_eq!(
        cols,
        vec![
            ("local_id".into(), "INTEGER".into(), 1),
            ("id".into(), "INTEGER".into(), 0),
            ("contact_id".into(), "INTEGER".into(), 0),
            ("email".into(), "TEXT".into(), 0),
            ("score".into(), "REAL".into(), 0),
        ]
    );
    assert_eq!(unique_columns(&store, "emails_shape"), vec!["id".to_string()]);
    let base: Vec<String> = table_info(&store, "emails_shape_base")
        .into_iter()
        .map(|c| c.0)
        .collect();
    assert_eq!(
        base,
        [
            "id",
            "local_id",
            "contact_id",
            "email",
            "score",
            "raw",
            "hash",
            "synced_at"
        ]
    );
    // Edits by a person are tracked like on any mirror table; restsync's own are not.
    let spec = kind.spec();
    let row = [Value::Integer(1), Value::Text("a@b.c".into()), Value::Null];
    store
        .write(|tx| mirror::insert_mirror(tx, spec, Some(5), &row))
        .unwrap();
    assert!(!tracking::any_marks(store.conn(), "emails_shape").unwrap());
    store
        .person()
        .execute("UPDATE emails_shape SET email = 'x@y.z'", [])
        .unwrap();
    assert!(tracking::any_marks(store.conn(), "emails_shape").unwrap());
    // Opening again changes nothing.
    ensure_all(&mut store, &[kind]).unwrap();
    assert_eq!(table_info(&store, "emails_shape"), cols);
}

#[test]
fn the_built_ins_tables_are_what_their_definitions_would_create() {
    let mut store = Store::open_in_memory().unwrap();
    for builtin in ResourceKind::BUILT_IN {
        let copy_name = format!("copy_{}", builtin.name());
        let spec = builtin.spec();
        let copy = define(crate::resources::ResourceSpec {
            table: Box::leak(copy_name.clone().into_boxed_str()),
            base_table: Box::leak(format!("{copy_name}_base").into_boxed_str()),
            upstream: spec.upstream,
            path: spec.path,
            pagination: spec.pagination,
            columns: spec.columns,
            can_create: spec.can_create,
            can_update: spec.can_update,
            can_delete: spec.can_delete,
            create_returns_record: spec.create_returns_record,
            lookup_filters: spec.lookup_filters,
        });
        ensure_all(&mut store, &[copy]).unwrap();
        assert_eq!(table_info(&store, builtin.name()), table_info(&store, &copy_name));
        assert_eq!(
            table_info(&store, spec.base_table),
            table_info(&store, copy.spec().base_table)
        );
        assert_eq!(
            unique_columns(&store, builtin.name()),
            unique_columns(&store, &copy_name)
        );
        assert_eq!(unique_columns(&store, builtin.name()), vec!["id".to_string()]);
    }
}

#[test]
fn an_added_column_is_filled_from_the_stored_records_without_a_walk() {
    let v1 = emails("emails_grow", vec![]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let mut store = Store::open_for(&path, &[v1]).unwrap();
    let spec = v1.spec();
    let raw = r#"{"id": 8, "email_contact": {"contact_id": 3}, "email": "a@b.c", "label": "work", "email_meta": {"rank": 2}}"#;
    store
        .write(|tx| {
            let row = [Value::Integer(3), Value::Text("a@b.c".into())];
            let local = mirror::insert_mirror(tx, spec, Some(8), &row)?;
            mirror::upsert_base(tx, spec, 8, Some(local), &row, raw, 1)
        })
        .unwrap();
    drop(store);

    let v2 = emails(
        "emails_grow",
        vec![
            column("label", "text", None, true),
            column("rank", "integer", Some("email_meta.rank"), false),
        ],
    );
    let store = Store::open_for(&path, &[v2]).unwrap();
    let (label, rank, base_label): (String, i64, String) = store
        .conn()
        .query_row(
            "SELECT m.label, m.rank, b.label FROM emails_grow m JOIN emails_grow_base b ON b.id = m.id",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((label.as_str(), rank, base_label.as_str()), ("work", 2, "work"));
    // Filling is restsync's own write: nothing to push.
    assert!(!tracking::any_marks(store.conn(), "emails_grow").unwrap());
    let changes = mirror::local_changes(store.conn(), v2.spec()).unwrap();
    assert!(changes.creates.is_empty() && changes.updates.is_empty() && changes.deletes.is_empty());
}

#[test]
fn a_definition_that_would_drop_rename_retype_or_move_data_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let original = emails("emails_keep", vec![column("label", "text", None, true)]);
    Store::open_for(&path, &[original]).unwrap();
    let cases: Vec<(ResourceKind, &str)> = vec![
        (
            emails("emails_keep", vec![]),
            "`label` (text) was removed or renamed",
        ),
        (
            emails("emails_keep", vec![column("tag", "text", None, true)]),
            "`label` (text) was removed or renamed",
        ),
        (
            emails("emails_keep", vec![column("label", "integer", None, true)]),
            "`label` was created as text and is now integer",
        ),
        (
            emails(
                "emails_keep",
                vec![
                    column("extra", "text", None, false),
                    column("label", "text", None, true),
                ],
            ),
            "`label` moved",
        ),
    ];
    for (kind, wanted) in cases {
        let Err(err) = Store::open_for(&path, &[kind]) else {
            panic!("refused")
        };
        assert!(err.is_config(), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("resources.emails_keep") && text.contains(wanted),
            "{text}"
        );
        assert!(
            text.contains("DROP TABLE emails_keep"),
            "says how to start over: {text}"
        );
    }
    // Another path: refused too.
    let mut problems = Vec::new();
    let moved = build(
        "emails_keep",
        &Definition {
            upstream: Some("firstline".into()),
            path: Some("/api/v2/email".into()),
            natural_key: Some(vec!["email".into()]),
            columns: Some(vec![
                column("contact_id", "integer", Some("email_contact.contact_id"), true),
                column("email", "text", None, true),
                column("label", "text", None, true),
            ]),
            ..Definition::default()
        },
        &mut problems,
    )
    .unwrap();
    let err = Store::open_for(&path, &[define(moved)]).err().expect("refused");
    assert!(
        err.to_string().contains("/api/v1/email") && err.to_string().contains("/api/v2/email"),
        "{err}"
    );
    // Nothing was changed by the refusals.
    let store = Store::open_for(&path, &[original]).unwrap();
    let names: Vec<String> = table_info(&store, "emails_keep")
        .into_iter()
        .map(|c| c.0)
        .collect();
    assert_eq!(names, ["local_id", "id", "contact_id", "email", "label"]);
}

#[test]
fn a_table_restsync_did_not_create_is_never_taken_over() {
    let mut store = Store::open_in_memory().unwrap();
    store
        .conn()
        .execute_batch("CREATE TABLE emails_mine (x TEXT); INSERT INTO emails_mine VALUES ('keep me');")
        .unwrap();
    let Err(err) = ensure_all(&mut store, &[emails("emails_mine", vec![])]) else {
        panic!("refused")
    };
    assert!(
        err.to_string()
            .contains("already has a table or index named `emails_mine`"),
        "{err}"
    );
    let kept: String = store
        .conn()
        .query_row("SELECT x FROM emails_mine", [], |r| r.get(0))
        .unwrap();
    assert_eq!(kept, "keep me");
}

#[test]
fn defined_tables_keep_their_triggers_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let kind = emails("emails_restart", vec![]);
    Store::open_for(&path, &[kind]).unwrap();
    // Someone drops a trigger; the next open (even without the definition) puts it back.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let name: String = conn
        .query_row(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'emails_restart' LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    conn.execute_batch(&format!("DROP TRIGGER {name}")).unwrap();
    drop(conn);
    let store = Store::open(&path).unwrap();
    let back: bool = store
        .conn()
        .prepare("SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = ?1")
        .unwrap()
        .exists([&name])
        .unwrap();
    assert!(back, "{name} reinstalled");
}

#[test]
fn reading_a_column_from_another_place_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    Store::open_for(
        &path,
        &[emails(
            "emails_from",
            vec![column("tag", "text", Some("meta.tag"), false)],
        )],
    )
    .unwrap();
    let moved = emails(
        "emails_from",
        vec![column("tag", "text", Some("meta.tag2"), false)],
    );
    let Err(err) = Store::open_for(&path, &[moved]) else {
        panic!("refused")
    };
    assert!(
        err.to_string().contains("`tag` was read from \"meta.tag\""),
        "{err}"
    );
}

#[test]
fn a_resource_with_nothing_writable_has_no_local_changes_to_find() {
    let kind = emails_readonly();
    let mut store = Store::open_in_memory().unwrap();
    ensure_all(&mut store, &[kind]).unwrap();
    let changes = mirror::local_changes(store.conn(), kind.spec()).unwrap();
    assert!(changes.updates.is_empty());
}

fn emails_readonly() -> ResourceKind {
    let def = Definition {
        upstream: Some("firstline".into()),
        path: Some("/api/v1/readonly".into()),
        operations: Some(vec![]),
        columns: Some(vec![column("k", "text", None, false)]),
        ..Definition::default()
    };
    let mut problems = Vec::new();
    define(build("emails_readonly", &def, &mut problems).unwrap_or_else(|| panic!("{problems:?}")))
}

/// The built-ins' mirror tables are a public contract: the same columns, types, keys and
/// unique constraints as ever, whatever builds them.
#[test]
fn the_built_in_mirror_tables_keep_their_contract() {
    let store = Store::open_in_memory().unwrap();
    let expected: [(&str, &[(&str, &str)]); 3] = [
        (
            "phone_numbers",
            &[
                ("contact_id", "INTEGER"),
                ("type", "INTEGER"),
                ("number", "TEXT"),
                ("extension", "TEXT"),
                ("description", "TEXT"),
                ("profile_id", "INTEGER"),
            ],
        ),
        (
            "addresses",
            &[
                ("contact_id", "INTEGER"),
                ("type", "INTEGER"),
                ("address", "TEXT"),
                ("country_id", "INTEGER"),
                ("state_id", "INTEGER"),
                ("city_id", "INTEGER"),
                ("description", "TEXT"),
                ("profile_id", "INTEGER"),
            ],
        ),
        (
            "smart_numbers",
            &[
                ("user_id", "INTEGER"),
                ("phone_a", "TEXT"),
                ("phone_b", "TEXT"),
                ("phone_x", "TEXT"),
                ("description", "TEXT"),
                ("created_at", "TEXT"),
            ],
        ),
    ];
    for (table, columns) in expected {
        let mut want = vec![
            ("local_id".to_string(), "INTEGER".to_string(), 1),
            ("id".to_string(), "INTEGER".to_string(), 0),
        ];
        want.extend(columns.iter().map(|(n, t)| (n.to_string(), t.to_string(), 0)));
        assert_eq!(table_info(&store, table), want, "{table}");
        assert_eq!(unique_columns(&store, table), vec!["id".to_string()], "{table}");
        let kind = ResourceKind::from_name(table).unwrap();
        let names: Vec<&str> = kind.spec().columns.iter().map(|c| c.name).collect();
        let listed: Vec<&str> = columns.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, listed, "{table}: the specification's columns");
    }
}
