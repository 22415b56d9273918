//! Change tracking end to end: edits made with a separate SQLite connection (as sqlite3
//! makes them) are recorded and pushed; restsync's own pulls and write-backs record nothing;
//! a row edited and edited back costs no request; edits made while the triggers were gone
//! are found by the safety net.

use crate::common::Env;
use restsync::sandbox::Kind;

fn marks(env: &Env) -> i64 {
    env.count("SELECT count(*) FROM changed_rows")
}

fn edits(env: &Env) -> i64 {
    env.count("SELECT edits FROM change_tracking")
}

fn writes(env: &Env) -> usize {
    env.control
        .requests()
        .iter()
        .filter(|r| r.method != "GET")
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn edits_from_another_connection_are_recorded_and_pushed_and_restsyncs_own_writes_record_nothing() {
    let env = Env::start(30).await;
    env.sync_ok().await;
    assert_eq!(marks(&env), 0, "the first pull recorded edits");
    assert_eq!(edits(&env), 0);

    let id = env.upstream_ids(Kind::PhoneNumbers)[3];
    env.exec(&format!(
        "UPDATE phone_numbers SET description = 'tracked' WHERE id = {id}"
    ));
    assert_eq!(marks(&env), 1);
    assert_eq!(edits(&env), 1);
    // Upstream changes of other records: the pull writes them without recording anything.
    let other = env.upstream_ids(Kind::PhoneNumbers)[5];
    env.control.update(
        Kind::PhoneNumbers,
        other,
        serde_json::json!({"description": "changed upstream"}),
    );
    env.sync_ok().await;
    assert_eq!(
        env.control.get(Kind::PhoneNumbers, id).expect("phone")["description"],
        "tracked"
    );
    assert_eq!(
        env.row_json("phone_numbers", other)["description"],
        "changed upstream"
    );
    assert_eq!(marks(&env), 0, "pushed and pulled rows leave no marks");
    assert_eq!(edits(&env), 1, "only the person's edit counted");
    env.assert_converged();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_row_edited_and_edited_back_before_a_push_sends_nothing() {
    let env = Env::start(10).await;
    env.sync_ok().await;
    let id = env.upstream_ids(Kind::Addresses)[2];
    let before = env.row_json("addresses", id)["description"].clone();
    env.exec(&format!(
        "UPDATE addresses SET description = 'for a moment' WHERE id = {id}"
    ));
    let put_back = match before.as_str() {
        Some(text) => format!("'{}'", text.replace('\'', "''")),
        None => "NULL".into(),
    };
    env.exec(&format!(
        "UPDATE addresses SET description = {put_back} WHERE id = {id}"
    ));
    let writes_before = writes(&env);
    env.sync_ok().await;
    assert_eq!(writes(&env), writes_before, "{:?}", env.control.requests());
    assert_eq!(marks(&env), 0);
    assert_eq!(
        env.count("SELECT count(*) FROM journal WHERE resource = 'addresses'"),
        0,
        "no entry for a change that is not one"
    );
}

/// A trigger someone dropped comes back on the next start, and the edits made while it
/// was gone are found by comparing every row with its base.
#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_trigger_is_installed_again_and_the_edits_it_missed_are_pushed() {
    let env = Env::start(10).await;
    env.sync_ok().await;
    let id = env.upstream_ids(Kind::PhoneNumbers)[1];
    env.exec(&format!(
        "DROP TRIGGER phone_numbers_track_update;
         UPDATE phone_numbers SET description = 'untracked' WHERE id = {id};"
    ));
    assert_eq!(marks(&env), 0);
    let run = env.sync_ok().await;
    assert_eq!(
        env.control.get(Kind::PhoneNumbers, id).expect("phone")["description"],
        "untracked"
    );
    assert!(run.stderr.contains("installed again"), "{}", run.stderr);
    assert_eq!(
        env.count("SELECT count(*) FROM sqlite_master WHERE name = 'phone_numbers_track_update'"),
        1
    );
}

/// The daily safety net: an edit whose mark was lost is still found and pushed, once the
/// check is due.
#[tokio::test(flavor = "multi_thread")]
async fn an_edit_whose_mark_was_lost_is_found_by_the_daily_full_check() {
    let env = Env::start(10).await;
    env.sync_ok().await;
    let id = env.upstream_ids(Kind::PhoneNumbers)[1];
    env.exec(&format!(
        "UPDATE phone_numbers SET description = 'mark lost' WHERE id = {id};
         DELETE FROM changed_rows;"
    ));
    // Not due yet: the edit waits.
    env.sync_ok().await;
    assert_ne!(
        env.control.get(Kind::PhoneNumbers, id).expect("phone")["description"],
        "mark lost"
    );
    // A day later, the check runs and the edit goes out.
    env.exec("UPDATE change_tracking SET full_check_at = '2000-01-01T00:00:00.000Z'");
    let run = env.sync_ok().await;
    assert_eq!(
        env.control.get(Kind::PhoneNumbers, id).expect("phone")["description"],
        "mark lost"
    );
    assert!(
        run.stderr.contains("change tracking had not recorded"),
        "{}",
        run.stderr
    );
}
