//! `restsync conflicts`: recorded conflicts are listed (text and JSON), and a losing value
//! put back with `restore` is pushed by the next sync; a restore over a row that changed
//! since is refused.

use crate::common::Env;
use restsync::sandbox::Kind;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn a_losing_field_value_is_listed_restored_and_pushed() {
    let env = Env::start(10).await;
    env.sync_ok().await;
    let id = env.upstream_ids(Kind::PhoneNumbers)[2];
    env.exec(&format!(
        "UPDATE phone_numbers SET description = 'ours' WHERE id = {id}"
    ));
    env.control.update(
        Kind::PhoneNumbers,
        id,
        serde_json::json!({"description": "theirs"}),
    );
    env.sync_ok().await;
    assert_eq!(env.row_json("phone_numbers", id)["description"], "theirs");

    let list = env.restsync(&["conflicts"]).await;
    assert_eq!(list.code, 0, "{}", list.stderr);
    assert!(
        list.stdout.contains("field description")
            && list.stdout.contains("\"ours\"")
            && list.stdout.contains("\"theirs\""),
        "{}",
        list.stdout
    );
    let json = env
        .restsync(&[
            "conflicts",
            "--json",
            "--resource",
            "phone_numbers",
            "--since",
            "1h",
        ])
        .await;
    let doc: Value = serde_json::from_str(&json.stdout).expect("JSON");
    let found = doc.as_array().expect("array");
    assert_eq!(found.len(), 1, "{doc}");
    assert_eq!(found[0]["id"], id);
    assert_eq!(found[0]["local"], "ours", "values as JSON values, not JSON text");
    let seq = found[0]["seq"].as_i64().expect("seq").to_string();
    let none = env
        .restsync(&["conflicts", "--json", "--resource", "addresses"])
        .await;
    assert_eq!(none.stdout.trim(), "[]");

    // The row no longer holds the value the conflict left: refused, naming the field.
    env.exec(&format!(
        "UPDATE phone_numbers SET description = 'a third' WHERE id = {id}"
    ));
    let changed = env.restsync(&["conflicts", "restore", &seq]).await;
    assert_eq!(changed.code, 65, "{}", changed.stdout);
    assert!(
        changed.stderr.contains("description changed since"),
        "{}",
        changed.stderr
    );
    env.exec(&format!(
        "UPDATE phone_numbers SET description = 'theirs' WHERE id = {id}"
    ));
    let restore = env.restsync(&["conflicts", "restore", &seq]).await;
    assert_eq!(restore.code, 0, "{}", restore.stderr);
    assert_eq!(env.row_json("phone_numbers", id)["description"], "ours");
    env.sync_ok().await;
    assert_eq!(
        env.control.get(Kind::PhoneNumbers, id).expect("phone")["description"],
        "ours"
    );
    // Restored once only.
    let again = env.restsync(&["conflicts", "restore", &seq]).await;
    assert_eq!(again.code, 65, "{}", again.stdout);
    assert!(again.stderr.contains("restored already"), "{}", again.stderr);
    let missing = env.restsync(&["conflicts", "restore", "9999"]).await;
    assert_eq!(missing.code, 65);
    let bad = env.restsync(&["conflicts", "--since", "soon"]).await;
    assert_eq!(bad.code, 64, "{}", bad.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_row_removed_because_upstream_deleted_it_comes_back_as_a_create() {
    let env = Env::start(10).await;
    env.sync_ok().await;
    let id = env.upstream_ids(Kind::Addresses)[4];
    env.exec(&format!(
        "UPDATE addresses SET description = 'kept by restore' WHERE id = {id}"
    ));
    env.control.delete(Kind::Addresses, id);
    env.sync_ok().await;
    assert_eq!(
        env.count(&format!("SELECT count(*) FROM addresses WHERE id = {id}")),
        0
    );
    let json = env.restsync(&["conflicts", "--json"]).await;
    let doc: Value = serde_json::from_str(&json.stdout).expect("JSON");
    let conflict = doc
        .as_array()
        .expect("array")
        .iter()
        .find(|c| c["kind"] == "deleted_upstream")
        .expect("a deleted_upstream conflict")
        .clone();
    let seq = conflict["seq"].to_string();
    let restore = env.restsync(&["conflicts", "restore", &seq]).await;
    assert_eq!(restore.code, 0, "{}", restore.stderr);
    assert_eq!(
        env.count("SELECT count(*) FROM addresses WHERE id IS NULL AND description = 'kept by restore'"),
        1
    );
    env.sync_ok().await;
    // Restored once: a second restore would create the record a second time.
    let again = env.restsync(&["conflicts", "restore", &seq]).await;
    assert_eq!(again.code, 65, "{}", again.stdout);
    assert!(again.stderr.contains("restored already"), "{}", again.stderr);
    let listed = env.restsync(&["conflicts"]).await;
    assert!(listed.stdout.contains("(restored 20"), "{}", listed.stdout);
    env.sync_ok().await;
    let ids = env.upstream_ids(Kind::Addresses);
    let made: Vec<Value> = ids
        .iter()
        .filter_map(|i| env.control.get(Kind::Addresses, *i))
        .filter(|r| r["description"] == "kept by restore")
        .collect();
    assert_eq!(made.len(), 1, "created upstream exactly once");
    env.assert_converged();
}
