//! Push and two-way sync: local edits made with plain SQL on the mirror reach the sandbox
//! through the real `restsync` binary; merges, conflicts, rejections, lost answers, kills
//! and the journal commands behave as documented.

use crate::common::Env;
use restsync::sandbox::{FaultAction, Faults, Kind, ScriptedFault};
use rusqlite::params;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn sql_to_json(v: rusqlite::types::Value) -> Value {
    match v {
        rusqlite::types::Value::Null => Value::Null,
        rusqlite::types::Value::Integer(n) => n.into(),
        rusqlite::types::Value::Real(f) => f.into(),
        rusqlite::types::Value::Text(t) => t.into(),
        rusqlite::types::Value::Blob(b) => String::from_utf8_lossy(&b).into_owned().into(),
    }
}

/// Every row a query returns, as JSON objects keyed by column name.
fn rows(env: &Env, sql: &str) -> Vec<Value> {
    let conn = env.db();
    let mut stmt = conn.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let names: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
    stmt.query_map([], |r| {
        let mut map = serde_json::Map::new();
        for (i, name) in names.iter().enumerate() {
            map.insert(name.clone(), sql_to_json(r.get(i)?));
        }
        Ok(Value::Object(map))
    })
    .expect("query")
    .collect::<Result<_, _>>()
    .expect("rows")
}

fn one_row(env: &Env, sql: &str) -> Value {
    let mut all = rows(env, sql);
    assert_eq!(all.len(), 1, "expected exactly one row from {sql}, got {all:?}");
    all.remove(0)
}

/// Runs one INSERT and returns the new row's local_id.
fn insert(env: &Env, sql: &str) -> i64 {
    let conn = env.db();
    conn.execute(sql, []).unwrap_or_else(|e| panic!("{sql}: {e}"));
    conn.last_insert_rowid()
}

fn local_id_of(env: &Env, table: &str, id: i64) -> i64 {
    env.count(&format!("SELECT local_id FROM {table} WHERE id = {id}"))
}

fn journal(env: &Env) -> Vec<Value> {
    rows(env, "SELECT * FROM journal ORDER BY seq")
}

fn conflicts(env: &Env) -> Vec<Value> {
    rows(env, "SELECT * FROM conflicts ORDER BY seq")
}

/// Statuses the sandbox answered to `method` requests on `kind`, in order (0 = dropped).
fn statuses(env: &Env, method: &str, kind: Kind) -> Vec<u16> {
    env.control
        .requests()
        .iter()
        .filter(|r| r.method == method && kind_of(&r.path) == Some(kind))
        .map(|r| r.status)
        .collect()
}

fn kind_of(path: &str) -> Option<Kind> {
    [
        ("/api/v1/phone-number", Kind::PhoneNumbers),
        ("/api/v1/address", Kind::Addresses),
        ("/api/v1/smart-numbers", Kind::SmartNumbers),
    ]
    .into_iter()
    .find(|(p, _)| {
        path.strip_prefix(p)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
    .map(|(_, k)| k)
}

/// Writes (POST, PUT, PATCH, DELETE) the sandbox has seen so far.
fn writes(env: &Env) -> usize {
    env.control
        .requests()
        .iter()
        .filter(|r| r.method != "GET")
        .count()
}

/// Upstream records of `kind` whose `key` (list rendering) equals `value`.
fn upstream_where(env: &Env, kind: Kind, key: &str, value: &Value) -> Vec<Value> {
    env.control
        .list(kind)
        .into_iter()
        .filter(|r| &r[key] == value)
        .collect()
}

fn scripted(method: &str, kind: Kind, action: FaultAction, times: u32) -> ScriptedFault {
    ScriptedFault {
        method: Some(method.into()),
        kind: Some(kind),
        page: None,
        action,
        times,
    }
}

/// Runs `sync --once` until it exits 0; every other exit must be 75 (work left for later).
async fn sync_until_ok(env: &Env, max_runs: usize) -> usize {
    for n in 1..=max_runs {
        let run = env.sync_once().await;
        if run.code == 0 {
            return n;
        }
        assert_eq!(
            run.code, 75,
            "run {n}: a run that did not finish must exit 75:\n{}",
            run.stderr
        );
    }
    panic!("sync --once did not exit 0 within {max_runs} runs");
}

/// Waits until a query counts at least one row (a state the child process reaches).
async fn until_count(env: &Env, sql: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while env.count(sql) == 0 {
        assert!(Instant::now() < deadline, "timed out waiting for: {sql}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Everything restsync keeps in the database file, for before/after comparisons.
fn dump(env: &Env) -> Value {
    let tables = [
        "phone_numbers",
        "addresses",
        "smart_numbers",
        "phone_numbers_base",
        "addresses_base",
        "smart_numbers_base",
        "journal",
        "conflicts",
        "sync_state",
    ];
    Value::Object(
        tables
            .iter()
            .map(|t| {
                (
                    t.to_string(),
                    Value::Array(rows(env, &format!("SELECT * FROM {t} ORDER BY 1"))),
                )
            })
            .collect(),
    )
}

// ---------------------------------------------------------------------------------------
// 1. Creates, updates and deletes on all three resources
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn local_creates_updates_and_deletes_reach_every_upstream() {
    let env = Env::start(30).await;
    env.sync_ok().await;
    let phones = env.upstream_ids(Kind::PhoneNumbers);
    let addrs = env.upstream_ids(Kind::Addresses);
    let smarts = env.upstream_ids(Kind::SmartNumbers);
    let (p_upd, p_del) = (phones[1], phones[2]);
    let (a_upd, a_del) = (addrs[3], addrs[4]);
    let s_del = smarts[5];

    let p_new = insert(
        &env,
        "INSERT INTO phone_numbers (id, contact_id, type, number, extension, description) \
         VALUES (NULL, 1935038, 2, '0912 345 678', NULL, '新的手機')",
    );
    let a_new = insert(
        &env,
        "INSERT INTO addresses (id, contact_id, type, address, country_id, state_id, city_id, description) \
         VALUES (NULL, 1938277, 1, '松仁路100號12樓', 1, 1, 14, '新地址')",
    );
    let s_new = insert(
        &env,
        "INSERT INTO smart_numbers (id, user_id, phone_b, description) VALUES (NULL, 40, '79161234567', 'Новый номер')",
    );
    env.exec(&format!(
        "UPDATE phone_numbers SET type = 3, description = '改了' WHERE id = {p_upd};
         DELETE FROM phone_numbers WHERE id = {p_del};
         UPDATE addresses SET address = '信義路五段7號', description = NULL WHERE id = {a_upd};
         DELETE FROM addresses WHERE id = {a_del};
         DELETE FROM smart_numbers WHERE id = {s_del};"
    ));

    env.sync_ok().await;
    env.assert_converged();

    // Created rows got their upstream id and the server-assigned columns.
    let p = one_row(
        &env,
        &format!("SELECT * FROM phone_numbers WHERE local_id = {p_new}"),
    );
    let pid = p["id"].as_i64().expect("phone id filled");
    assert_eq!(p["profile_id"], 1935008, "{p}");
    let up = env.control.get(Kind::PhoneNumbers, pid).expect("phone upstream");
    assert_eq!(up["number"], "0912 345 678");
    assert_eq!(up["phone_contact"]["contact_id"], 1935038);
    assert_eq!(up["description"], "新的手機");

    let a = one_row(&env, &format!("SELECT * FROM addresses WHERE local_id = {a_new}"));
    let aid = a["id"].as_i64().expect("address id filled");
    assert_eq!(a["profile_id"], 1938247, "{a}");
    let up = env.control.get(Kind::Addresses, aid).expect("address upstream");
    assert_eq!(up["address"], "松仁路100號12樓");
    assert_eq!(up["city_id"], 14);
    assert_eq!(up["contact_id"], 1938277);

    let s = one_row(
        &env,
        &format!("SELECT * FROM smart_numbers WHERE local_id = {s_new}"),
    );
    let sid = s["id"].as_i64().expect("smart number id filled");
    let up = env
        .control
        .get(Kind::SmartNumbers, sid)
        .expect("smart number upstream");
    assert_eq!(s["phone_a"], "79991230046", "phoneA of user 40: {s}");
    assert!(
        s["phone_x"].as_str().is_some_and(|x| x.starts_with("7977")),
        "{s}"
    );
    assert!(s["created_at"].as_str().is_some_and(|c| !c.is_empty()), "{s}");
    assert_eq!(s["phone_x"], up["phoneX"]);
    assert_eq!(s["created_at"], up["created_at"]);
    assert_eq!(up["phoneB"], "79161234567");
    assert_eq!(up["description"], "Новый номер");
    assert!(
        !smarts.contains(&sid),
        "the smart number was adopted from an old record"
    );

    // Updates reached upstream.
    let up = env.control.get(Kind::PhoneNumbers, p_upd).expect("updated phone");
    assert_eq!(up["type"], 3);
    assert_eq!(up["description"], "改了");
    let up = env.control.get(Kind::Addresses, a_upd).expect("updated address");
    assert_eq!(up["address"], "信義路五段7號");
    assert_eq!(up["description"], Value::Null);

    // Deletes reached upstream.
    assert!(env.control.get(Kind::PhoneNumbers, p_del).is_none());
    assert!(env.control.get(Kind::Addresses, a_del).is_none());
    assert!(env.control.get(Kind::SmartNumbers, s_del).is_none());

    // One request per change, each answered successfully.
    assert_eq!(statuses(&env, "POST", Kind::PhoneNumbers), [201]);
    assert_eq!(statuses(&env, "POST", Kind::Addresses), [201]);
    assert_eq!(statuses(&env, "POST", Kind::SmartNumbers), [200]);
    assert_eq!(statuses(&env, "PUT", Kind::PhoneNumbers), [200]);
    assert_eq!(statuses(&env, "PUT", Kind::Addresses), [200]);
    assert!(statuses(&env, "PUT", Kind::SmartNumbers).is_empty());
    assert_eq!(statuses(&env, "DELETE", Kind::PhoneNumbers), [204]);
    assert_eq!(statuses(&env, "DELETE", Kind::Addresses), [204]);
    assert_eq!(statuses(&env, "DELETE", Kind::SmartNumbers), [200]);

    // Every change went through the journal and finished.
    let entries = journal(&env);
    assert_eq!(entries.len(), 8, "{entries:#?}");
    assert!(entries.iter().all(|e| e["state"] == "done"), "{entries:#?}");

    // A second cycle has nothing to push.
    let before = writes(&env);
    env.sync_ok().await;
    assert_eq!(writes(&env), before, "a cycle without changes wrote upstream");
    env.assert_converged();
}

// ---------------------------------------------------------------------------------------
// 2. Field-level merge
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn changes_to_different_columns_of_a_record_are_both_kept() {
    let env = Env::start(30).await;
    env.sync_ok().await;
    let pid = env.upstream_ids(Kind::PhoneNumbers)[6];
    let aid = env.upstream_ids(Kind::Addresses)[8];
    env.exec(&format!(
        "UPDATE phone_numbers SET description = '本地備註' WHERE id = {pid};
         UPDATE addresses SET type = 5 WHERE id = {aid};"
    ));
    assert!(env
        .control
        .update(Kind::PhoneNumbers, pid, json!({"number": "02 2345 6789"})));
    assert!(env
        .control
        .update(Kind::Addresses, aid, json!({"description": "遠端備註"})));

    env.sync_ok().await;
    env.assert_converged();

    let row = env.row_json("phone_numbers", pid);
    assert_eq!(row["description"], "本地備註");
    assert_eq!(row["number"], "02 2345 6789");
    let up = env.control.get(Kind::PhoneNumbers, pid).expect("phone");
    assert_eq!(up["description"], "本地備註");
    assert_eq!(up["number"], "02 2345 6789");

    let row = env.row_json("addresses", aid);
    assert_eq!(row["type"], 5);
    assert_eq!(row["description"], "遠端備註");
    let up = env.control.get(Kind::Addresses, aid).expect("address");
    assert_eq!(up["type"], 5);
    assert_eq!(up["description"], "遠端備註");

    assert!(conflicts(&env).is_empty(), "{:#?}", conflicts(&env));
    assert_eq!(statuses(&env, "PUT", Kind::PhoneNumbers), [200]);
    assert_eq!(statuses(&env, "PUT", Kind::Addresses), [200]);
}

// ---------------------------------------------------------------------------------------
// 3. Conflict policies
// ---------------------------------------------------------------------------------------

async fn same_column_changed_on_both_sides(local_wins: bool) {
    let env = Env::start(30).await;
    if local_wins {
        env.write_config("on_conflict = \"local-wins\"", "");
    }
    env.sync_ok().await;
    let pid = env.upstream_ids(Kind::PhoneNumbers)[7];
    let aid = env.upstream_ids(Kind::Addresses)[2];
    env.exec(&format!(
        "UPDATE phone_numbers SET description = 'mine' WHERE id = {pid};
         UPDATE addresses SET address = '我的路1號' WHERE id = {aid};"
    ));
    assert!(env
        .control
        .update(Kind::PhoneNumbers, pid, json!({"description": "theirs"})));
    assert!(env
        .control
        .update(Kind::Addresses, aid, json!({"address": "他們的路2號"})));

    env.sync_ok().await;
    env.assert_converged();

    let (policy, phone, address) = if local_wins {
        ("local-wins", "mine", "我的路1號")
    } else {
        ("remote-wins", "theirs", "他們的路2號")
    };
    assert_eq!(env.row_json("phone_numbers", pid)["description"], phone);
    assert_eq!(
        env.control.get(Kind::PhoneNumbers, pid).expect("phone")["description"],
        phone
    );
    assert_eq!(env.row_json("addresses", aid)["address"], address);
    assert_eq!(
        env.control.get(Kind::Addresses, aid).expect("address")["address"],
        address
    );

    let found = conflicts(&env);
    assert_eq!(found.len(), 2, "{found:#?}");
    for (resource, id, field, mine, theirs) in [
        ("phone_numbers", pid, "description", "mine", "theirs"),
        ("addresses", aid, "address", "我的路1號", "他們的路2號"),
    ] {
        let c = found
            .iter()
            .find(|c| c["resource"] == resource)
            .unwrap_or_else(|| panic!("no conflict for {resource}: {found:#?}"));
        assert_eq!(c["kind"], "field", "{c}");
        assert_eq!(c["field"], field, "{c}");
        assert_eq!(c["upstream_id"], id, "{c}");
        assert_eq!(c["resolution"], policy, "{c}");
        assert!(c["local_value"].as_str().is_some_and(|v| v.contains(mine)), "{c}");
        assert!(
            c["remote_value"].as_str().is_some_and(|v| v.contains(theirs)),
            "{c}"
        );
    }
    // The losing value is not pushed; the winning local one is pushed exactly once.
    let puts = if local_wins { vec![200] } else { vec![] };
    assert_eq!(statuses(&env, "PUT", Kind::PhoneNumbers), puts);
    assert_eq!(statuses(&env, "PUT", Kind::Addresses), puts);

    // Settled: the next cycle neither writes nor records the conflict again.
    let before = writes(&env);
    env.sync_ok().await;
    assert_eq!(writes(&env), before);
    assert_eq!(conflicts(&env).len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn same_column_conflict_remote_wins_by_default() {
    same_column_changed_on_both_sides(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn same_column_conflict_local_wins_when_configured() {
    same_column_changed_on_both_sides(true).await;
}

// ---------------------------------------------------------------------------------------
// 4. Delete versus edit
// ---------------------------------------------------------------------------------------

async fn delete_versus_edit(local_wins: bool) {
    let env = Env::start(30).await;
    if local_wins {
        env.write_config("on_conflict = \"local-wins\"", "");
    }
    env.sync_ok().await;
    let ids = env.upstream_ids(Kind::PhoneNumbers);
    let (gone_upstream, gone_locally) = (ids[4], ids[9]);
    let edited_local_id = local_id_of(&env, "phone_numbers", gone_upstream);

    // Deleted upstream, edited locally.
    env.exec(&format!(
        "UPDATE phone_numbers SET description = 'edited here' WHERE id = {gone_upstream}"
    ));
    assert!(env.control.delete(Kind::PhoneNumbers, gone_upstream));
    // Deleted locally, edited upstream.
    env.exec(&format!("DELETE FROM phone_numbers WHERE id = {gone_locally}"));
    assert!(env.control.update(
        Kind::PhoneNumbers,
        gone_locally,
        json!({"description": "edited there"})
    ));

    env.sync_ok().await;
    env.assert_converged();

    let policy = if local_wins { "local-wins" } else { "remote-wins" };
    let found = conflicts(&env);
    assert_eq!(found.len(), 2, "{found:#?}");
    let up = found
        .iter()
        .find(|c| c["kind"] == "deleted_upstream")
        .unwrap_or_else(|| panic!("no deleted_upstream conflict: {found:#?}"));
    assert_eq!(up["upstream_id"], gone_upstream, "{up}");
    assert_eq!(up["resolution"], policy, "{up}");
    assert!(
        up["local_value"]
            .as_str()
            .is_some_and(|v| v.contains("edited here")),
        "{up}"
    );
    let local = found
        .iter()
        .find(|c| c["kind"] == "deleted_locally")
        .unwrap_or_else(|| panic!("no deleted_locally conflict: {found:#?}"));
    assert_eq!(local["upstream_id"], gone_locally, "{local}");
    assert_eq!(local["resolution"], policy, "{local}");
    assert!(
        local["remote_value"]
            .as_str()
            .is_some_and(|v| v.contains("edited there")),
        "{local}"
    );

    let edited_here = upstream_where(&env, Kind::PhoneNumbers, "description", &json!("edited here"));
    if local_wins {
        // The local edit survives: the row is created again under a new id.
        let row = one_row(
            &env,
            &format!("SELECT * FROM phone_numbers WHERE local_id = {edited_local_id}"),
        );
        let new_id = row["id"].as_i64().expect("re-created upstream");
        assert_ne!(new_id, gone_upstream);
        assert_eq!(row["description"], "edited here");
        assert_eq!(edited_here.len(), 1, "{edited_here:#?}");
        assert_eq!(edited_here[0]["id"], new_id);
        // The local delete wins over the upstream edit.
        assert!(env.control.get(Kind::PhoneNumbers, gone_locally).is_none());
        assert_eq!(statuses(&env, "DELETE", Kind::PhoneNumbers), [204]);
    } else {
        // Upstream's delete wins: the edited row is gone.
        assert_eq!(
            env.count(&format!(
                "SELECT count(*) FROM phone_numbers WHERE local_id = {edited_local_id}"
            )),
            0
        );
        assert!(edited_here.is_empty(), "{edited_here:#?}");
        // Upstream's edit wins: the deleted row comes back with it.
        assert_eq!(
            env.row_json("phone_numbers", gone_locally)["description"],
            "edited there"
        );
        assert!(env.control.get(Kind::PhoneNumbers, gone_locally).is_some());
        assert_eq!(writes(&env), 0, "remote-wins must not write upstream");
    }
    assert_eq!(ids.len() as i64 - 1, env.control.count(Kind::PhoneNumbers) as i64);
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_versus_edit_remote_wins() {
    delete_versus_edit(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_versus_edit_local_wins() {
    delete_versus_edit(true).await;
}

// ---------------------------------------------------------------------------------------
// 5. A 422 on create
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_create_is_kept_reported_and_sent_again_once_fixed() {
    let env = Env::start(20).await;
    env.sync_ok().await;
    let local = insert(
        &env,
        "INSERT INTO phone_numbers (contact_id, type, number, extension, description) \
         VALUES (1935038, 2, '0912-ABC-678', '12', '打錯了')",
    );
    let written = one_row(
        &env,
        &format!("SELECT * FROM phone_numbers WHERE local_id = {local}"),
    );

    let run = env.sync_once().await;
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert!(
        run.stderr.contains("The number format is invalid."),
        "{}",
        run.stderr
    );
    // The row stays exactly as written.
    assert_eq!(
        one_row(
            &env,
            &format!("SELECT * FROM phone_numbers WHERE local_id = {local}")
        ),
        written
    );
    assert_eq!(written["id"], Value::Null);
    assert_eq!(statuses(&env, "POST", Kind::PhoneNumbers), [422]);

    let failed = rows(&env, "SELECT * FROM journal WHERE state = 'failed'");
    assert_eq!(failed.len(), 1, "{failed:#?}");
    let seq = failed[0]["seq"].as_i64().expect("seq");
    assert_eq!(failed[0]["op"], "create");
    assert_eq!(failed[0]["local_id"], local);
    assert_eq!(failed[0]["last_status"], 422);

    let status = env.restsync(&["status"]).await;
    // A failed entry needs a person: status says so with its exit code too.
    assert_eq!(status.code, 65, "{}", status.stderr);
    assert!(
        status.stdout.contains(&format!("journal drop {seq}")),
        "{}",
        status.stdout
    );
    let line = status
        .stdout
        .lines()
        .find(|l| l.contains("FAILED"))
        .unwrap_or_else(|| panic!("no failed entry in status:\n{}", status.stdout));
    assert!(
        line.contains(&format!("journal {seq} create local_id {local}")),
        "{line}"
    );
    assert!(line.contains("422"), "{line}");
    assert!(line.contains("The number format is invalid."), "{line}");

    let listed = env.restsync(&["journal", "--state", "failed"]).await;
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert!(
        listed.stdout.contains(&format!("local_id={local}")),
        "{}",
        listed.stdout
    );
    assert!(listed.stdout.contains("create"), "{}", listed.stdout);
    assert!(
        listed.stdout.contains("The number format is invalid."),
        "{}",
        listed.stdout
    );

    // Unchanged, the rejected row is not sent again.
    let run = env.sync_once().await;
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert_eq!(statuses(&env, "POST", Kind::PhoneNumbers), [422]);

    // The fix supersedes the failed entry and is created exactly once.
    env.exec(&format!(
        "UPDATE phone_numbers SET number = '0912-345-678' WHERE local_id = {local}"
    ));
    env.sync_ok().await;
    env.assert_converged();
    assert_eq!(statuses(&env, "POST", Kind::PhoneNumbers), [422, 201]);
    let made = upstream_where(&env, Kind::PhoneNumbers, "number", &json!("0912-345-678"));
    assert_eq!(made.len(), 1, "{made:#?}");
    let row = one_row(
        &env,
        &format!("SELECT * FROM phone_numbers WHERE local_id = {local}"),
    );
    assert_eq!(row["id"], made[0]["id"]);
    assert_eq!(row["extension"], "12");
    let old = one_row(&env, &format!("SELECT * FROM journal WHERE seq = {seq}"));
    assert_eq!(old["state"], "superseded", "{old}");
    let status = env.restsync(&["status"]).await;
    assert!(!status.stdout.contains("FAILED"), "{}", status.stdout);
}

// ---------------------------------------------------------------------------------------
// 6. Smart numbers cannot be updated
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_smart_number_update_is_refused_before_anything_is_sent() {
    let env = Env::start(20).await;
    env.sync_ok().await;
    let sid = env.upstream_ids(Kind::SmartNumbers)[3];
    let local = local_id_of(&env, "smart_numbers", sid);
    let original: Option<String> = env
        .db()
        .query_row(
            "SELECT description FROM smart_numbers WHERE local_id = ?1",
            [local],
            |r| r.get(0),
        )
        .expect("description");
    let upstream_before = env.control.get(Kind::SmartNumbers, sid).expect("smart number");
    env.exec(&format!(
        "UPDATE smart_numbers SET description = 'Переименован' WHERE local_id = {local}"
    ));

    let run = env.sync_once().await;
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("local_id {local}")),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("no update endpoint"), "{}", run.stderr);
    // Nothing was sent for it.
    for r in env.control.requests() {
        assert!(
            r.method == "GET",
            "unexpected {} {} while the change was refused",
            r.method,
            r.path
        );
    }
    assert_eq!(
        env.control.get(Kind::SmartNumbers, sid).expect("smart number"),
        upstream_before
    );
    // The local edit is kept, not overwritten by the walk.
    assert_eq!(env.row_json("smart_numbers", sid)["description"], "Переименован");

    let status = env.restsync(&["status"]).await;
    let line = status
        .stdout
        .lines()
        .find(|l| l.contains("FAILED"))
        .unwrap_or_else(|| panic!("no failed entry in status:\n{}", status.stdout));
    assert!(
        line.contains(&format!("update local_id {local} id {sid}")),
        "{line}"
    );
    assert!(line.contains("no update endpoint"), "{line}");

    // Reverting the row clears it.
    env.db()
        .execute(
            "UPDATE smart_numbers SET description = ?1 WHERE local_id = ?2",
            params![original, local],
        )
        .expect("revert");
    env.sync_ok().await;
    env.assert_converged();
    let status = env.restsync(&["status"]).await;
    assert!(!status.stdout.contains("FAILED"), "{}", status.stdout);
    assert_eq!(
        env.count("SELECT count(*) FROM journal WHERE state IN ('pending', 'in_flight', 'failed')"),
        0
    );
    assert_eq!(writes(&env), 0);
}

// ---------------------------------------------------------------------------------------
// 7. Plusofon's error body with HTTP 200
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn an_error_body_with_http_200_fails_the_create() {
    let env = Env::start(20).await;
    env.sync_ok().await;
    let local = insert(
        &env,
        "INSERT INTO smart_numbers (user_id, phone_b, description) VALUES (99, '79161112233', 'Нет такого')",
    );
    let run = env.sync_once().await;
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert!(run.stderr.contains("User not found."), "{}", run.stderr);
    assert_eq!(statuses(&env, "POST", Kind::SmartNumbers), [200]);

    let failed = one_row(&env, "SELECT * FROM journal WHERE state = 'failed'");
    assert_eq!(failed["op"], "create");
    assert_eq!(failed["local_id"], local);
    assert!(
        failed["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("User not found.")),
        "{failed}"
    );
    let row = one_row(
        &env,
        &format!("SELECT * FROM smart_numbers WHERE local_id = {local}"),
    );
    assert_eq!(row["id"], Value::Null);
    assert!(upstream_where(&env, Kind::SmartNumbers, "phoneB", &json!("79161112233")).is_empty());
    let status = env.restsync(&["status"]).await;
    assert!(
        status
            .stdout
            .lines()
            .any(|l| l.contains("FAILED") && l.contains("User not found.")),
        "{}",
        status.stdout
    );

    // With a known user the row goes through.
    env.exec(&format!(
        "UPDATE smart_numbers SET user_id = 41 WHERE local_id = {local}"
    ));
    env.sync_ok().await;
    env.assert_converged();
    let made = upstream_where(&env, Kind::SmartNumbers, "phoneB", &json!("79161112233"));
    assert_eq!(made.len(), 1, "{made:#?}");
    assert_eq!(made[0]["phoneA"], "79991230051");
}

// ---------------------------------------------------------------------------------------
// 8. A create whose answer is lost after upstream committed it
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_phone_number_create_answer_makes_no_duplicate() {
    let env = Env::start(30).await;
    env.sync_ok().await;
    let local = insert(
        &env,
        "INSERT INTO phone_numbers (contact_id, type, number, description) VALUES (1935038, 2, '0955 123 456', '回應遺失')",
    );
    env.control.push_scripted(scripted(
        "POST",
        Kind::PhoneNumbers,
        FaultAction::DropAfterCommit,
        1,
    ));
    sync_until_ok(&env, 4).await;

    let made = upstream_where(&env, Kind::PhoneNumbers, "number", &json!("0955 123 456"));
    assert_eq!(made.len(), 1, "{made:#?}");
    let row = one_row(&env, "SELECT * FROM phone_numbers WHERE number = '0955 123 456'");
    assert_eq!(row["local_id"], local);
    assert_eq!(row["id"], made[0]["id"]);
    assert_eq!(row["profile_id"], 1935008);
    // The record was found by its natural key, not created a second time.
    assert_eq!(statuses(&env, "POST", Kind::PhoneNumbers), [0]);
    env.assert_converged();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_smart_number_create_answer_makes_no_duplicate() {
    let env = Env::start(30).await;
    env.sync_ok().await;
    let local = insert(
        &env,
        "INSERT INTO smart_numbers (user_id, phone_b, description) VALUES (41, '79169998877', 'Потерянный ответ')",
    );
    env.control.push_scripted(scripted(
        "POST",
        Kind::SmartNumbers,
        FaultAction::DropAfterCommit,
        1,
    ));
    sync_until_ok(&env, 4).await;

    let made = upstream_where(&env, Kind::SmartNumbers, "phoneB", &json!("79169998877"));
    assert_eq!(made.len(), 1, "{made:#?}");
    let row = one_row(&env, "SELECT * FROM smart_numbers WHERE phone_b = '79169998877'");
    assert_eq!(row["local_id"], local);
    assert_eq!(row["id"], made[0]["id"]);
    assert_eq!(row["phone_x"], made[0]["phoneX"]);
    assert_eq!(row["phone_a"], "79991230051");
    assert_eq!(statuses(&env, "POST", Kind::SmartNumbers), [0]);
    env.assert_converged();
}

/// The lost answer is noticed in one run and resolved in a later one, whose first lookup
/// fails: the walk then copies the record in before the create is reconciled.
async fn lost_create_reconciled_after_a_failed_lookup(kind: Kind) {
    let env = Env::start(30).await;
    env.write_config("max_attempts_per_run = 1", "");
    env.sync_ok().await;
    let (local, key, value) = match kind {
        Kind::SmartNumbers => (
            insert(
                &env,
                "INSERT INTO smart_numbers (user_id, phone_b, description) VALUES (42, '79165554433', 'Двойник?')",
            ),
            "phoneB",
            json!("79165554433"),
        ),
        _ => (
            insert(
                &env,
                "INSERT INTO phone_numbers (contact_id, type, number, description) VALUES (1935038, 1, '02 8765 4321', '重複？')",
            ),
            "number",
            json!("02 8765 4321"),
        ),
    };
    let table = kind.name();
    // The walk and then the lookup after the lost answer fail, so the run ends unresolved.
    env.control.push_scripted(ScriptedFault {
        method: Some("GET".into()),
        kind: Some(kind),
        page: Some(1),
        action: FaultAction::Status(500, r#"{"message":"Server Error"}"#.into()),
        times: 2,
    });
    env.control
        .push_scripted(scripted("POST", kind, FaultAction::DropAfterCommit, 1));
    let run = env.sync_once().await;
    assert_eq!(run.code, 75, "{}", run.stderr);
    assert_eq!(upstream_where(&env, kind, key, &value).len(), 1);

    // The next run's first list request of this resource is the lookup; it fails once.
    env.control.push_scripted(ScriptedFault {
        method: Some("GET".into()),
        kind: Some(kind),
        page: Some(1),
        action: FaultAction::Status(500, r#"{"message":"Server Error"}"#.into()),
        times: 1,
    });
    sync_until_ok(&env, 4).await;

    let made = upstream_where(&env, kind, key, &value);
    assert_eq!(
        made.len(),
        1,
        "{table}: the create was sent again after its record had been copied in by a walk: {made:#?}"
    );
    let id = made[0]["id"].as_i64().expect("id");
    let mirrored = rows(&env, &format!("SELECT * FROM {table} WHERE id = {id}"));
    assert_eq!(mirrored.len(), 1, "{mirrored:#?}");
    assert_eq!(mirrored[0]["local_id"], local, "{mirrored:#?}");
    env.assert_converged();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_phone_number_create_found_after_a_failed_lookup_is_not_duplicated() {
    lost_create_reconciled_after_a_failed_lookup(Kind::PhoneNumbers).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_smart_number_create_found_after_a_failed_lookup_is_not_duplicated() {
    lost_create_reconciled_after_a_failed_lookup(Kind::SmartNumbers).await;
}

// ---------------------------------------------------------------------------------------
// 9. Killed mid-push, restarted
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_push_killed_at_any_point_creates_every_row_exactly_once() {
    let env = Env::start(20).await;
    env.sync_ok().await;
    let phones: Vec<String> = (0..30).map(|i| format!("0933 000 {i:03}")).collect();
    let streets: Vec<String> = (0..10).map(|i| format!("測試路{i}號")).collect();
    {
        let conn = env.db();
        for (i, n) in phones.iter().enumerate() {
            conn.execute(
                "INSERT INTO phone_numbers (contact_id, type, number, description) VALUES (?1, 2, ?2, ?3)",
                params![1_935_100 + i as i64, n, format!("kill {i}")],
            )
            .expect("insert phone");
        }
        for a in &streets {
            conn.execute(
                "INSERT INTO addresses (contact_id, type, address, country_id, state_id, city_id) \
                 VALUES (1935200, 0, ?1, 1, 2, 3)",
                [a],
            )
            .expect("insert address");
        }
    }
    env.control.set_faults(Faults {
        latency_ms: 25,
        ..Faults::default()
    });
    // Kill points move later each time, so the runs die during the walk, between
    // requests and with creates in flight, until one run gets to finish on its own.
    let mut progress = Vec::new();
    let mut ms = 50u64;
    for _ in 0..15 {
        let mut child = env.spawn(&["sync", "--once"]);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        let finished = child.try_wait().expect("try_wait").is_some();
        if !finished {
            child.kill().await.expect("kill restsync");
        }
        let created = env
            .count("SELECT count(*) FROM phone_numbers WHERE id IS NOT NULL AND description LIKE 'kill %'");
        let in_flight = env.count("SELECT count(*) FROM journal WHERE state = 'in_flight'");
        progress.push((ms, finished, created, in_flight));
        if finished {
            break;
        }
        ms += 30;
    }
    env.control.set_faults(Faults::default());
    // (kill point ms, run already finished, phones created so far, entries left in flight)
    eprintln!("kill points: {progress:?}");
    // A create killed mid-request is only declared "never made" once that request can no
    // longer be in progress upstream: request_timeout_secs (3) plus the margin.
    tokio::time::sleep(Duration::from_secs(6)).await;
    sync_until_ok(&env, 3).await;

    for n in &phones {
        let made = upstream_where(&env, Kind::PhoneNumbers, "number", &json!(n));
        assert_eq!(made.len(), 1, "{n} upstream {made:#?}; kills: {progress:?}");
        let mirrored = rows(
            &env,
            &format!("SELECT id FROM phone_numbers WHERE number = '{n}'"),
        );
        assert_eq!(mirrored.len(), 1, "{n} in the mirror: {mirrored:#?}");
        assert_eq!(mirrored[0]["id"], made[0]["id"]);
    }
    for a in &streets {
        let made = upstream_where(&env, Kind::Addresses, "address", &json!(a));
        assert_eq!(made.len(), 1, "{a} upstream {made:#?}; kills: {progress:?}");
    }
    assert_eq!(env.control.count(Kind::PhoneNumbers), 50);
    assert_eq!(env.control.count(Kind::Addresses), 30);
    assert_eq!(
        env.count("SELECT count(*) FROM journal WHERE state IN ('pending', 'in_flight', 'failed')"),
        0
    );
    env.assert_converged();
}

// ---------------------------------------------------------------------------------------
// 10. Mass-delete guard
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn deleting_most_of_a_table_needs_allow_mass_delete() {
    let env = Env::start(20).await;
    env.sync_ok().await;
    let phone_gone = env.upstream_ids(Kind::PhoneNumbers)[0];
    env.exec(&format!(
        "DELETE FROM addresses WHERE local_id IN (SELECT local_id FROM addresses ORDER BY id LIMIT 15);
         DELETE FROM phone_numbers WHERE id = {phone_gone};"
    ));

    let run = env.sync_once().await;
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert!(run.stderr.contains("15 of 20"), "{}", run.stderr);
    assert!(run.stderr.contains("--allow-mass-delete"), "{}", run.stderr);
    assert!(statuses(&env, "DELETE", Kind::Addresses).is_empty());
    assert_eq!(env.control.count(Kind::Addresses), 20);
    assert_eq!(env.count("SELECT count(*) FROM addresses"), 5);
    // The guard is per table: a single phone delete still went through.
    assert_eq!(statuses(&env, "DELETE", Kind::PhoneNumbers), [204]);
    assert!(env.control.get(Kind::PhoneNumbers, phone_gone).is_none());

    // Still refused on the next plain run, even once the table has grown so that the same
    // deletes are a smaller fraction of it: only a person lifts the refusal.
    for n in 0..20 {
        env.exec(&format!(
            "INSERT INTO addresses (contact_id, type, address, description) VALUES (1935038, 1, 'grown {n}', 'grown')"
        ));
    }
    for _ in 0..2 {
        let run = env.sync_once().await;
        assert_eq!(run.code, 65, "{}", run.stderr);
        assert!(
            statuses(&env, "DELETE", Kind::Addresses).is_empty(),
            "{}",
            run.stderr
        );
    }
    assert_eq!(env.control.count(Kind::Addresses), 40);
    // `journal retry` is not the consent the guard asks for, for all entries or for one.
    let retry = env.restsync(&["journal", "retry", "--all"]).await;
    assert_eq!(retry.code, 0, "{}", retry.stderr);
    let held = env.count(
        "SELECT min(seq) FROM journal WHERE resource = 'addresses' AND op = 'delete' AND state = 'failed'",
    );
    let one = env.restsync(&["journal", "retry", &held.to_string()]).await;
    assert_eq!(one.code, 65, "{}", one.stderr);
    assert!(
        one.stderr.contains("held by the mass-delete guard"),
        "{}",
        one.stderr
    );
    let run = env.sync_once().await;
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert!(
        statuses(&env, "DELETE", Kind::Addresses).is_empty(),
        "{}",
        run.stderr
    );

    let run = env.restsync(&["sync", "--once", "--allow-mass-delete"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(statuses(&env, "DELETE", Kind::Addresses).len(), 15);
    assert_eq!(env.control.count(Kind::Addresses), 25);
    env.assert_converged();
}

// ---------------------------------------------------------------------------------------
// 11. `plan` changes nothing
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn plan_reports_both_sides_and_changes_nothing() {
    let env = Env::start(30).await;
    env.sync_ok().await;
    let phones = env.upstream_ids(Kind::PhoneNumbers);
    let addrs = env.upstream_ids(Kind::Addresses);
    let (p_upd, p_del, p_conflict) = (phones[1], phones[2], phones[3]);
    let a_remote = addrs[4];
    let p_upd_local = local_id_of(&env, "phone_numbers", p_upd);
    let p_new = insert(
        &env,
        "INSERT INTO phone_numbers (contact_id, type, number) VALUES (1935038, 0, '02 1111 2222')",
    );
    env.exec(&format!(
        "UPDATE phone_numbers SET description = 'planned' WHERE id = {p_upd};
         DELETE FROM phone_numbers WHERE id = {p_del};
         UPDATE phone_numbers SET description = 'local side' WHERE id = {p_conflict};"
    ));
    assert!(env.control.update(
        Kind::PhoneNumbers,
        p_conflict,
        json!({"description": "remote side"})
    ));
    assert!(env
        .control
        .update(Kind::Addresses, a_remote, json!({"description": "upstream edit"})));
    let up_new = env.control.insert(
        Kind::PhoneNumbers,
        json!({"contact_id": 1935038, "type": 2, "number": "0911 000 111", "extension": null, "description": null}),
    );

    let before = dump(&env);
    let upstream_before: Vec<Vec<Value>> = Kind::ALL.iter().map(|k| env.control.list(*k)).collect();
    let requests_before = env.control.requests().len();
    let run = env.restsync(&["plan"]).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let out = &run.stdout;
    for expected in [
        "push: create upstream: 1".to_string(),
        format!("local_id {p_new}"),
        // The conflicting edit loses to upstream's (remote-wins): only one update is sent.
        "push: update upstream: 1".to_string(),
        format!("local_id {p_upd_local} (id {p_upd}): description"),
        "push: delete upstream: 1".to_string(),
        format!("id {p_del}"),
        format!("id {up_new}: new upstream"),
        format!("id {a_remote} (local_id"),
        format!(
            "phone_numbers id {p_conflict}: field description local=\"local side\" remote=\"remote side\""
        ),
    ] {
        assert!(out.contains(&expected), "plan output lacks {expected:?}:\n{out}");
    }

    assert_eq!(dump(&env), before, "plan changed the database");
    let after = env.control.requests();
    for r in &after[requests_before..] {
        assert_eq!(r.method, "GET", "plan sent {} {}", r.method, r.path);
    }
    assert!(after.len() > requests_before, "plan did not look upstream");
    let upstream_after: Vec<Vec<Value>> = Kind::ALL.iter().map(|k| env.control.list(*k)).collect();
    assert_eq!(upstream_after, upstream_before, "plan changed upstream");
    assert_ne!(
        env.control.get(Kind::PhoneNumbers, p_upd).expect("phone")["description"],
        "planned"
    );
    assert!(env.control.get(Kind::PhoneNumbers, p_del).is_some());

    // What the plan announced is what the sync then does.
    env.sync_ok().await;
    env.assert_converged();
}

// ---------------------------------------------------------------------------------------
// 12. Transient failures
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn transient_failures_of_an_update_are_retried_within_the_run() {
    let env = Env::start(20).await;
    env.sync_ok().await;
    let pid = env.upstream_ids(Kind::PhoneNumbers)[5];
    env.exec(&format!(
        "UPDATE phone_numbers SET description = 'retry me' WHERE id = {pid}"
    ));
    env.control.push_scripted(scripted(
        "PUT",
        Kind::PhoneNumbers,
        FaultAction::Status(500, r#"{"message":"Server Error"}"#.into()),
        2,
    ));
    env.control
        .push_scripted(scripted("PUT", Kind::PhoneNumbers, FaultAction::RetryAfter(1), 1));
    let started = Instant::now();
    env.sync_ok().await;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "Retry-After: 1 was not honoured ({:?})",
        started.elapsed()
    );
    assert_eq!(statuses(&env, "PUT", Kind::PhoneNumbers), [500, 500, 429, 200]);
    assert_eq!(
        env.control.get(Kind::PhoneNumbers, pid).expect("phone")["description"],
        "retry me"
    );
    let entry = one_row(&env, "SELECT * FROM journal WHERE op = 'update'");
    assert_eq!(entry["state"], "done", "{entry}");
    assert_eq!(entry["attempts"], 4, "{entry}");
    env.assert_converged();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fault_outlasting_the_attempts_leaves_the_entry_for_the_next_run() {
    let env = Env::start(20).await;
    env.write_config("max_attempts_per_run = 2", "");
    env.sync_ok().await;
    let pid = env.upstream_ids(Kind::PhoneNumbers)[5];
    let before = env.control.get(Kind::PhoneNumbers, pid).expect("phone");
    env.exec(&format!(
        "UPDATE phone_numbers SET description = 'later' WHERE id = {pid}"
    ));
    env.control.push_scripted(scripted(
        "PUT",
        Kind::PhoneNumbers,
        FaultAction::Status(503, r#"{"message":"Service Unavailable"}"#.into()),
        3,
    ));
    let run = env.sync_once().await;
    assert_eq!(run.code, 75, "{}", run.stderr);
    assert_eq!(statuses(&env, "PUT", Kind::PhoneNumbers), [503, 503]);
    assert_eq!(env.control.get(Kind::PhoneNumbers, pid).expect("phone"), before);
    let entry = one_row(&env, "SELECT * FROM journal WHERE op = 'update'");
    assert_eq!(entry["state"], "pending", "{entry}");
    assert_eq!(entry["last_status"], 503, "{entry}");
    assert_eq!(env.row_json("phone_numbers", pid)["description"], "later");
    let status = env.restsync(&["status"]).await;
    assert!(status.stdout.contains("pending 1"), "{}", status.stdout);

    env.sync_ok().await;
    assert_eq!(statuses(&env, "PUT", Kind::PhoneNumbers), [503, 503, 503, 200]);
    assert_eq!(
        env.control.get(Kind::PhoneNumbers, pid).expect("phone")["description"],
        "later"
    );
    env.assert_converged();
}

// ---------------------------------------------------------------------------------------
// 13. An edit made while its push is in flight
// ---------------------------------------------------------------------------------------

async fn edit_during_flight(create: bool) {
    let env = Env::start(20).await;
    env.sync_ok().await;
    let local = if create {
        insert(
            &env,
            "INSERT INTO phone_numbers (contact_id, type, number, description) VALUES (1935038, 2, '0977 123 123', 'first')",
        )
    } else {
        let pid = env.upstream_ids(Kind::PhoneNumbers)[4];
        env.exec(&format!(
            "UPDATE phone_numbers SET description = 'first' WHERE id = {pid}"
        ));
        local_id_of(&env, "phone_numbers", pid)
    };
    let (method, op) = if create {
        ("POST", "create")
    } else {
        ("PUT", "update")
    };
    env.control
        .push_scripted(scripted(method, Kind::PhoneNumbers, FaultAction::Delay(1500), 1));
    let child = env
        .command(&["sync", "--once"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn restsync");
    until_count(
        &env,
        &format!("SELECT count(*) FROM journal WHERE op = '{op}' AND state = 'in_flight'"),
    )
    .await;
    env.exec(&format!(
        "UPDATE phone_numbers SET description = 'second' WHERE local_id = {local}"
    ));
    let out = child.wait_with_output().await.expect("restsync output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        matches!(out.status.code(), Some(0 | 75)),
        "{:?}\n{stderr}",
        out.status
    );
    assert_eq!(
        statuses(&env, method, Kind::PhoneNumbers),
        [if create { 201 } else { 200 }]
    );

    let row = one_row(
        &env,
        &format!("SELECT * FROM phone_numbers WHERE local_id = {local}"),
    );
    assert_eq!(
        row["description"], "second",
        "the newer local edit was overwritten\n{stderr}"
    );
    let id = row["id"].as_i64().expect("id known after the push");
    assert_eq!(
        env.control.get(Kind::PhoneNumbers, id).expect("upstream")["description"],
        "first"
    );

    env.sync_ok().await;
    assert_eq!(env.row_json("phone_numbers", id)["description"], "second");
    assert_eq!(
        env.control.get(Kind::PhoneNumbers, id).expect("upstream")["description"],
        "second"
    );
    assert_eq!(
        upstream_where(&env, Kind::PhoneNumbers, "id", &json!(id)).len(),
        1
    );
    if create {
        assert_eq!(statuses(&env, "POST", Kind::PhoneNumbers), [201]);
    }
    env.assert_converged();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edit_made_while_its_update_is_in_flight_is_kept_and_pushed_next() {
    edit_during_flight(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edit_made_while_its_create_is_in_flight_is_kept_and_pushed_next() {
    edit_during_flight(true).await;
}

// ---------------------------------------------------------------------------------------
// 14. `journal retry --all` and `journal drop`
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn journal_retry_all_sends_failed_entries_again() {
    let env = Env::start(20).await;
    env.sync_ok().await;
    let phone = insert(
        &env,
        "INSERT INTO phone_numbers (contact_id, type, number) VALUES (1935038, 2, '0988 765 432')",
    );
    let address = insert(
        &env,
        "INSERT INTO addresses (contact_id, type, address) VALUES (1935038, 3, '中正路8號')",
    );
    let refused = r#"{"message":"Conflict: the contact is locked."}"#;
    env.control.push_scripted(scripted(
        "POST",
        Kind::PhoneNumbers,
        FaultAction::Status(409, refused.into()),
        1,
    ));
    env.control.push_scripted(scripted(
        "POST",
        Kind::Addresses,
        FaultAction::Status(409, refused.into()),
        1,
    ));
    let run = env.sync_once().await;
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert!(run.stderr.contains("the contact is locked"), "{}", run.stderr);
    assert_eq!(
        env.count("SELECT count(*) FROM journal WHERE state = 'failed'"),
        2
    );

    // Failed entries are not sent again on their own.
    let run = env.sync_once().await;
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert_eq!(statuses(&env, "POST", Kind::PhoneNumbers), [409]);
    assert_eq!(statuses(&env, "POST", Kind::Addresses), [409]);

    let retry = env.restsync(&["journal", "retry", "--all"]).await;
    assert_eq!(retry.code, 0, "{}", retry.stderr);
    assert!(retry.stdout.contains("2 entries"), "{}", retry.stdout);
    assert_eq!(
        env.count("SELECT count(*) FROM journal WHERE state = 'failed'"),
        0
    );

    env.sync_ok().await;
    env.assert_converged();
    assert_eq!(statuses(&env, "POST", Kind::PhoneNumbers), [409, 201]);
    assert_eq!(statuses(&env, "POST", Kind::Addresses), [409, 201]);
    for (table, local) in [("phone_numbers", phone), ("addresses", address)] {
        let row = one_row(&env, &format!("SELECT * FROM {table} WHERE local_id = {local}"));
        assert!(row["id"].is_i64(), "{table}: {row}");
    }
    assert_eq!(
        upstream_where(&env, Kind::PhoneNumbers, "number", &json!("0988 765 432")).len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn journal_drop_restores_the_row_from_its_base_snapshot() {
    let env = Env::start(20).await;
    env.sync_ok().await;
    let ids = env.upstream_ids(Kind::PhoneNumbers);
    let (edited, deleted) = (ids[2], ids[3]);
    let edited_before = env.row_json("phone_numbers", edited);
    let deleted_before = env.row_json("phone_numbers", deleted);
    let upstream_before = env.control.list(Kind::PhoneNumbers);

    // A create and an update upstream rejects (422) and a delete upstream refuses (403).
    env.exec("INSERT INTO phone_numbers (contact_id, type, number) VALUES (1935038, 9, '0912 000 000')");
    env.exec(&format!(
        "UPDATE phone_numbers SET number = 'not a number!' WHERE id = {edited};
         DELETE FROM phone_numbers WHERE id = {deleted};"
    ));
    env.control.push_scripted(scripted(
        "DELETE",
        Kind::PhoneNumbers,
        FaultAction::Status(403, r#"{"message":"This action is unauthorized."}"#.into()),
        1,
    ));
    let run = env.sync_once().await;
    assert_eq!(run.code, 65, "{}", run.stderr);
    let failed = rows(&env, "SELECT * FROM journal WHERE state = 'failed' ORDER BY seq");
    assert_eq!(failed.len(), 3, "{failed:#?}");
    let seq_of = |op: &str| {
        failed
            .iter()
            .find(|e| e["op"] == op)
            .and_then(|e| e["seq"].as_i64())
            .unwrap_or_else(|| panic!("no failed {op}: {failed:#?}"))
    };
    let (create_seq, update_seq, delete_seq) = (seq_of("create"), seq_of("update"), seq_of("delete"));

    // Without --yes (and no terminal to ask on) nothing happens.
    let refused = env.restsync(&["journal", "drop", &update_seq.to_string()]).await;
    assert_eq!(refused.code, 65, "{}", refused.stderr);
    assert!(refused.stderr.contains("--yes"), "{}", refused.stderr);
    assert_eq!(env.row_json("phone_numbers", edited)["number"], "not a number!");

    // A row fixed after its entry failed is a newer change: dropping the old entry would
    // throw the fix away, so it is refused and the fix stays.
    env.exec(&format!(
        "UPDATE phone_numbers SET number = '0912 111 222' WHERE id = {edited}"
    ));
    let fixed = env
        .restsync(&["journal", "drop", &update_seq.to_string(), "--yes"])
        .await;
    assert_eq!(fixed.code, 65, "{}", fixed.stderr);
    assert!(fixed.stderr.contains("changed since"), "{}", fixed.stderr);
    assert_eq!(env.row_json("phone_numbers", edited)["number"], "0912 111 222");
    env.exec(&format!(
        "UPDATE phone_numbers SET number = 'not a number!' WHERE id = {edited}"
    ));

    for seq in [create_seq, update_seq, delete_seq] {
        let run = env
            .restsync(&["journal", "drop", &seq.to_string(), "--yes"])
            .await;
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert!(
            run.stdout.contains(&format!("dropped journal entry {seq}")),
            "{}",
            run.stdout
        );
    }
    // The never-created row is gone; the other two are back as upstream last had them.
    // (The restored row may reuse the dropped row's local_id: SQLite hands out max + 1.)
    assert_eq!(
        env.count("SELECT count(*) FROM phone_numbers WHERE number = '0912 000 000'"),
        0
    );
    assert_eq!(env.row_json("phone_numbers", edited), edited_before);
    let restored = env.row_json("phone_numbers", deleted);
    for (col, _) in crate::common::writable(Kind::PhoneNumbers) {
        assert_eq!(restored[*col], deleted_before[*col], "column {col}");
    }
    assert_eq!(restored["profile_id"], deleted_before["profile_id"]);
    assert_eq!(
        env.count("SELECT count(*) FROM journal WHERE state IN ('pending', 'in_flight', 'failed')"),
        0
    );

    let writes_before = writes(&env);
    env.sync_ok().await;
    assert_eq!(writes(&env), writes_before, "a dropped change was sent");
    assert_eq!(env.control.list(Kind::PhoneNumbers), upstream_before);
    env.assert_converged();
}

// ---------------------------------------------------------------------------------------
// More edges
// ---------------------------------------------------------------------------------------

/// Identical local rows are distinct records: each gets its own upstream record, even
/// though finding Plusofon's records by content cannot tell them apart.
#[tokio::test(flavor = "multi_thread")]
async fn identical_local_rows_become_distinct_records() {
    let env = Env::start(20).await;
    env.sync_ok().await;
    let mut smart = Vec::new();
    let mut phone = Vec::new();
    for _ in 0..4 {
        smart.push(insert(
            &env,
            "INSERT INTO smart_numbers (user_id, phone_b, description) VALUES (43, '79160001122', 'Близнецы')",
        ));
        phone.push(insert(
            &env,
            "INSERT INTO phone_numbers (contact_id, type, number, description) VALUES (1935038, 0, '02 2222 3333', '雙胞胎')",
        ));
    }
    sync_until_ok(&env, 3).await;
    env.assert_converged();
    for (table, kind, key, value, locals) in [
        (
            "smart_numbers",
            Kind::SmartNumbers,
            "phoneB",
            json!("79160001122"),
            &smart,
        ),
        (
            "phone_numbers",
            Kind::PhoneNumbers,
            "number",
            json!("02 2222 3333"),
            &phone,
        ),
    ] {
        assert_eq!(upstream_where(&env, kind, key, &value).len(), 4, "{table}");
        let mut ids = Vec::new();
        for local in locals {
            let row = one_row(&env, &format!("SELECT * FROM {table} WHERE local_id = {local}"));
            ids.push(row["id"].as_i64().unwrap_or_else(|| panic!("{table}: {row}")));
        }
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 4, "{table}: rows share upstream records");
        assert_eq!(
            statuses(&env, "POST", kind).len(),
            4,
            "{table}: one create per row"
        );
    }
}

/// `journal retry` cannot turn a change that has no endpoint into a request.
#[tokio::test(flavor = "multi_thread")]
async fn retrying_a_refused_smart_number_update_still_sends_nothing() {
    let env = Env::start(20).await;
    env.sync_ok().await;
    let sid = env.upstream_ids(Kind::SmartNumbers)[2];
    env.exec(&format!(
        "UPDATE smart_numbers SET description = 'Снова' WHERE id = {sid}"
    ));
    let run = env.sync_once().await;
    assert_eq!(run.code, 65, "{}", run.stderr);
    let retry = env.restsync(&["journal", "retry", "--all"]).await;
    assert_eq!(retry.code, 0, "{}", retry.stderr);

    let run = env.sync_once().await;
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert!(run.stderr.contains("no update endpoint"), "{}", run.stderr);
    assert_eq!(writes(&env), 0, "{:?}", env.control.requests());
    let status = env.restsync(&["status"]).await;
    assert!(
        status
            .stdout
            .lines()
            .any(|l| l.contains("FAILED") && l.contains("no update endpoint")),
        "{}",
        status.stdout
    );
}

/// Answers lost after an update and a delete were committed: both are resolved safely.
#[tokio::test(flavor = "multi_thread")]
async fn lost_answers_to_updates_and_deletes_are_repeated_safely() {
    let env = Env::start(20).await;
    env.sync_ok().await;
    let ids = env.upstream_ids(Kind::PhoneNumbers);
    let (updated, deleted) = (ids[1], ids[2]);
    let smart_deleted = env.upstream_ids(Kind::SmartNumbers)[1];
    env.exec(&format!(
        "UPDATE phone_numbers SET description = 'once more' WHERE id = {updated};
         DELETE FROM phone_numbers WHERE id = {deleted};
         DELETE FROM smart_numbers WHERE id = {smart_deleted};"
    ));
    for (method, kind) in [
        ("PUT", Kind::PhoneNumbers),
        ("DELETE", Kind::PhoneNumbers),
        ("DELETE", Kind::SmartNumbers),
    ] {
        env.control
            .push_scripted(scripted(method, kind, FaultAction::DropAfterCommit, 1));
    }
    sync_until_ok(&env, 3).await;
    env.assert_converged();
    assert_eq!(
        env.control.get(Kind::PhoneNumbers, updated).expect("phone")["description"],
        "once more"
    );
    assert!(env.control.get(Kind::PhoneNumbers, deleted).is_none());
    assert!(env.control.get(Kind::SmartNumbers, smart_deleted).is_none());
    // Firstline: the retry reads the record first (fetch before write) and finds the change
    // already made, so nothing is sent twice. Plusofon has no GET: its delete is repeated.
    assert_eq!(statuses(&env, "PUT", Kind::PhoneNumbers), [0]);
    assert_eq!(statuses(&env, "DELETE", Kind::PhoneNumbers), [0]);
    assert_eq!(statuses(&env, "DELETE", Kind::SmartNumbers), [0, 404]);
    assert_eq!(env.count("SELECT count(*) FROM journal WHERE state <> 'done'"), 0);
}

/// Read-only columns are filled from upstream: a local edit is not pushed, and the next
/// change upstream brings upstream's value back (as the README says).
#[tokio::test(flavor = "multi_thread")]
async fn read_only_columns_are_not_pushed_and_follow_upstream() {
    let env = Env::start(20).await;
    env.sync_ok().await;
    let sid = env.upstream_ids(Kind::SmartNumbers)[4];
    let pid = env.upstream_ids(Kind::PhoneNumbers)[4];
    let phone_x = env.row_json("smart_numbers", sid)["phone_x"].clone();
    let profile = env.row_json("phone_numbers", pid)["profile_id"].clone();
    env.exec(&format!(
        "UPDATE smart_numbers SET phone_x = '70000000000' WHERE id = {sid};
         UPDATE phone_numbers SET profile_id = 1 WHERE id = {pid};"
    ));
    env.sync_ok().await;
    assert_eq!(writes(&env), 0, "a read-only column was pushed");
    assert!(journal(&env).is_empty(), "{:#?}", journal(&env));

    assert!(env.control.update(
        Kind::PhoneNumbers,
        pid,
        json!({"description": "upstream touched it"})
    ));
    env.sync_ok().await;
    let row = env.row_json("phone_numbers", pid);
    assert_eq!(row["profile_id"], profile);
    assert_eq!(row["description"], "upstream touched it");
    assert_eq!(
        env.control.get(Kind::SmartNumbers, sid).expect("smart number")["phoneX"],
        phone_x
    );
    assert_eq!(writes(&env), 0);
    env.assert_converged();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_queued_entry_whose_row_changed_is_superseded_not_sent_stale() {
    let env = Env::start(20).await;
    env.write_config("concurrency = 1", "");
    env.sync_ok().await;
    let ids = env.upstream_ids(Kind::PhoneNumbers);
    let (first, last) = (ids[0], ids[5]);
    let original = env.control.get(Kind::PhoneNumbers, last).expect("record")["description"].clone();
    env.exec(&format!(
        "UPDATE phone_numbers SET description = 'queued' WHERE id IN ({})",
        ids[..6]
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    ));
    // Slow PUTs, one at a time: the last row's entry waits in the queue.
    env.control.push_scripted(ScriptedFault {
        method: Some("PUT".into()),
        kind: Some(Kind::PhoneNumbers),
        page: None,
        action: FaultAction::Delay(300),
        times: 10,
    });
    let child = env.spawn(&["sync", "--once"]);
    let puts_to = |id: i64| {
        env.control
            .requests()
            .iter()
            .filter(|r| r.method == "PUT" && r.path.ends_with(&format!("/{id}")))
            .count()
    };
    let started = std::time::Instant::now();
    while puts_to(first) == 0 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the push never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    env.exec(&format!(
        "UPDATE phone_numbers SET description = 'newer' WHERE id = {last}"
    ));
    let status = child.wait_with_output().await.expect("run").status;
    assert_eq!(status.code(), Some(75));
    assert_eq!(puts_to(last), 0, "the stale entry was sent");
    assert_eq!(
        env.control.get(Kind::PhoneNumbers, last).expect("record")["description"],
        original
    );
    env.sync_ok().await;
    assert_eq!(
        env.control.get(Kind::PhoneNumbers, last).expect("record")["description"],
        "newer"
    );
    assert_eq!(puts_to(last), 1);
    env.assert_converged();
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_names_the_guard_and_needs_no_database() {
    let env = Env::start(20).await;
    // Before any sync: plan works on an empty mirror and creates no database file.
    let run = env.restsync(&["plan"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("pull: insert into mirror: 20"),
        "{}",
        run.stdout
    );
    assert!(!env.db_path.exists(), "plan created the database");

    env.sync_ok().await;
    env.exec("DELETE FROM addresses WHERE local_id > 3");
    let run = env.restsync(&["plan"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    // The guard would hold the deletes: shown as held, not as pushes the cycle would send.
    assert!(!run.stdout.contains("push: delete upstream"), "{}", run.stdout);
    assert_eq!(
        run.stdout
            .matches("would be held by the mass-delete guard")
            .count(),
        17,
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("exceed sync.max_delete_fraction"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("0 to delete upstream"), "{}", run.stdout);
    let detailed = env.restsync(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(
        detailed.code, 65,
        "the guard would need a person: {}",
        detailed.stdout
    );
    // With --allow-mass-delete they would go: a real cycle agrees.
    let cycle = env.sync_once().await;
    assert_eq!(cycle.code, 65, "{}", cycle.stderr);
    assert_eq!(env.control.count(Kind::Addresses), 20);
}

// ---------------------------------------------------------------------------------------
// Trust rules: no duplicate create, no lost update, no silent success
// ---------------------------------------------------------------------------------------

/// A create upstream accepted (`{"success": true}`) is never sent again, however long its
/// list lags: runs that cannot find it say so (75) and send nothing; once it is listed, it
/// is adopted.
#[tokio::test(flavor = "multi_thread")]
async fn an_accepted_create_is_never_sent_again_while_the_list_lags() {
    let env = Env::start(20).await;
    env.write_config("max_attempts_per_run = 2", "");
    env.sync_ok().await;
    let local = insert(
        &env,
        "INSERT INTO smart_numbers (user_id, phone_b, description) VALUES (42, '79160001122', 'лаг')",
    );
    env.control.set_faults(Faults {
        list_lag_ms: 60_000,
        ..Faults::default()
    });
    for run_no in 1..=3 {
        let run = env.sync_once().await;
        assert_eq!(run.code, 75, "run {run_no}: {}", run.stderr);
        assert!(run.stderr.contains("accepted upstream"), "{}", run.stderr);
        assert_eq!(
            env.control.count_requests("POST", Kind::SmartNumbers),
            1,
            "run {run_no} sent the accepted create again"
        );
    }
    let status = env.restsync(&["status"]).await;
    // Waiting work, with each pending entry's attempts and last error: exit 75.
    assert_eq!(status.code, 75, "{}", status.stderr);
    assert!(
        status.stdout.contains("accepted, not yet identified") && status.stdout.contains("attempt(s)"),
        "{}",
        status.stdout
    );
    env.control.set_faults(Faults::default());
    env.sync_ok().await;
    let made = upstream_where(&env, Kind::SmartNumbers, "phoneB", &json!("79160001122"));
    assert_eq!(made.len(), 1, "{made:#?}");
    let row = one_row(&env, "SELECT * FROM smart_numbers WHERE phone_b = '79160001122'");
    assert_eq!(row["local_id"], local);
    assert_eq!(row["id"], made[0]["id"]);
    assert_eq!(env.control.count_requests("POST", Kind::SmartNumbers), 1);
    env.assert_converged();
}

/// Past `sync.identify_timeout_secs` an accepted, never-listed create needs a person
/// (exit 65, shown by status) and is still not sent again; `journal retry` sends it.
#[tokio::test(flavor = "multi_thread")]
async fn an_unidentified_accepted_create_needs_a_person_and_is_not_resent() {
    let env = Env::start(20).await;
    env.write_config("max_attempts_per_run = 1\nidentify_timeout_secs = 1", "");
    env.sync_ok().await;
    insert(
        &env,
        "INSERT INTO smart_numbers (user_id, phone_b, description) VALUES (42, '79160003344', 'потерян')",
    );
    env.control.set_faults(Faults {
        list_lag_ms: 600_000,
        ..Faults::default()
    });
    let first = env.sync_once().await;
    assert_eq!(first.code, 75, "{}", first.stderr);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let second = env.sync_once().await;
    assert_eq!(second.code, 65, "{}", second.stderr);
    assert!(second.stderr.contains("NOT sent again"), "{}", second.stderr);
    let third = env.sync_once().await;
    assert_eq!(third.code, 65, "{}", third.stderr);
    assert_eq!(env.control.count_requests("POST", Kind::SmartNumbers), 1);
    let status = env.restsync(&["status"]).await;
    assert_eq!(status.code, 65, "{}", status.stdout);
    assert!(
        status.stdout.contains("accepted, never identified"),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains("79160003344"),
        "what was sent: {}",
        status.stdout
    );
    let seq = env.count("SELECT seq FROM journal WHERE op = 'create' AND state = 'failed'");
    let retry = env.restsync(&["journal", "retry", &seq.to_string()]).await;
    assert_eq!(retry.code, 0, "{}", retry.stderr);
    env.control.set_faults(Faults::default());
    env.sync_once().await;
    assert_eq!(
        env.control.count_requests("POST", Kind::SmartNumbers),
        2,
        "a person's retry sends it again"
    );
}

/// Fetch before write: a phone moved to another contact upstream since the last walk keeps
/// its new contact when only its description is edited locally.
#[tokio::test(flavor = "multi_thread")]
async fn an_update_keeps_a_contact_moved_upstream_since_the_last_walk() {
    let env = Env::start(20).await;
    env.sync_ok().await;
    let id = env.upstream_ids(Kind::PhoneNumbers)[2];
    assert!(env
        .control
        .update(Kind::PhoneNumbers, id, json!({"contact_id": 1999001})));
    env.exec(&format!(
        "UPDATE phone_numbers SET description = '只改描述' WHERE id = {id}"
    ));
    // A local change waits: status says so (75) until a run pushes it.
    assert_eq!(env.restsync(&["status"]).await.code, 75);
    let run = env.sync_ok().await;
    assert_eq!(env.restsync(&["status"]).await.code, 0);
    let upstream = env.control.get(Kind::PhoneNumbers, id).expect("phone");
    assert_eq!(upstream["description"], "只改描述", "{}", run.stderr);
    assert_eq!(
        upstream["phone_contact"]["contact_id"], 1999001,
        "the PUT moved the phone back to its old contact"
    );
    let row = one_row(&env, &format!("SELECT * FROM phone_numbers WHERE id = {id}"));
    assert_eq!(row["contact_id"], 1999001);
    assert_eq!(env.count("SELECT count(*) FROM conflicts"), 0);
    env.sync_ok().await;
    env.assert_converged();
}

/// Fetch before write: the same field edited on both sides goes through the conflict
/// policy and is recorded; a local delete of a record edited upstream is too.
#[tokio::test(flavor = "multi_thread")]
async fn pushes_meet_upstream_edits_made_since_the_last_walk_with_the_conflict_policy() {
    let env = Env::start(20).await;
    env.sync_ok().await;
    let ids = env.upstream_ids(Kind::Addresses);
    let (edited, deleted) = (ids[1], ids[2]);
    env.control
        .update(Kind::Addresses, edited, json!({"description": "upstream's"}));
    env.control
        .update(Kind::Addresses, deleted, json!({"description": "still wanted"}));
    env.exec(&format!(
        "UPDATE addresses SET description = 'mine' WHERE id = {edited};
         DELETE FROM addresses WHERE id = {deleted};"
    ));
    env.sync_ok().await;
    // remote-wins (the default): upstream's value stays, and the row comes back.
    assert_eq!(
        env.control.get(Kind::Addresses, edited).expect("address")["description"],
        "upstream's"
    );
    assert!(
        env.control.get(Kind::Addresses, deleted).is_some(),
        "the delete was sent"
    );
    assert_eq!(env.control.count_requests("DELETE", Kind::Addresses), 0);
    let restored = one_row(&env, &format!("SELECT * FROM addresses WHERE id = {deleted}"));
    assert_eq!(restored["description"], "still wanted");
    let conflicts = rows(
        &env,
        "SELECT kind, upstream_id, local_value FROM conflicts ORDER BY seq",
    );
    assert_eq!(conflicts.len(), 2, "{conflicts:#?}");
    assert!(conflicts
        .iter()
        .any(|c| c["kind"] == "field" && c["upstream_id"] == edited && c["local_value"] == "\"mine\""));
    assert!(conflicts
        .iter()
        .any(|c| c["kind"] == "deleted_locally" && c["upstream_id"] == deleted));
    env.assert_converged();
}

/// Records added upstream during every walk do not starve local edits: completeness gates
/// removals only.
#[tokio::test(flavor = "multi_thread")]
async fn constant_upstream_churn_does_not_hold_back_local_edits() {
    let env = Env::start(60).await;
    env.sync_ok().await;
    let id = env.upstream_ids(Kind::PhoneNumbers)[40];
    env.exec(&format!(
        "UPDATE phone_numbers SET description = 'despite churn' WHERE id = {id}"
    ));
    env.control.push_scripted(ScriptedFault {
        method: Some("GET".into()),
        kind: Some(Kind::PhoneNumbers),
        page: Some(2),
        action: FaultAction::ShiftPages {
            delete_earlier: 0,
            insert_before: 2,
        },
        times: 20,
    });
    let run = env.sync_once().await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        env.control.get(Kind::PhoneNumbers, id).expect("phone")["description"],
        "despite churn"
    );
}

/// Plusofon's error body decides, whatever the HTTP status: "User not found" with HTTP 500
/// is a rejection (65, upstream's words in status), sent once, not retried forever.
#[tokio::test(flavor = "multi_thread")]
async fn a_plusofon_error_body_under_http_500_is_a_rejection_not_a_retry() {
    let env = Env::start(20).await;
    env.sync_ok().await;
    insert(
        &env,
        "INSERT INTO smart_numbers (user_id, phone_b, description) VALUES (42, '79160005566', 'нет')",
    );
    env.control.push_scripted(scripted(
        "POST",
        Kind::SmartNumbers,
        FaultAction::Status(500, r#"{"message": "User not found", "code": 500}"#.into()),
        5,
    ));
    let run = env.sync_once().await;
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert_eq!(env.control.count_requests("POST", Kind::SmartNumbers), 1);
    let status = env.restsync(&["status"]).await;
    assert!(status.stdout.contains("User not found"), "{}", status.stdout);
    let again = env.sync_once().await;
    assert_eq!(again.code, 65, "{}", again.stderr);
    assert_eq!(env.control.count_requests("POST", Kind::SmartNumbers), 1);
}

/// A local create outside the resource's scope is refused before anything is sent.
#[tokio::test(flavor = "multi_thread")]
async fn a_create_outside_the_configured_scope_is_refused_before_sending() {
    let env = Env::start(20).await;
    env.write_config("", "[resources.smart_numbers]\nuser_id = 42\n");
    env.sync_ok().await;
    let before = env.count("SELECT count(*) FROM smart_numbers");
    insert(
        &env,
        "INSERT INTO smart_numbers (user_id, phone_b, description) VALUES (40, '79160007788', 'чужой')",
    );
    let run = env.sync_once().await;
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert!(
        run.stderr.contains("outside this resource's scope"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("user_id = 42"), "{}", run.stderr);
    assert_eq!(env.control.count_requests("POST", Kind::SmartNumbers), 0);
    // The row stays, for the person to fix.
    assert_eq!(env.count("SELECT count(*) FROM smart_numbers"), before + 1);
}

/// A list that answers 200 with nothing while GET shows the records is an upstream
/// anomaly: the mirror keeps every row, the run exits 75 and the state says why.
#[tokio::test(flavor = "multi_thread")]
async fn an_empty_list_contradicted_by_get_is_an_anomaly_not_a_success() {
    let env = Env::start(20).await;
    // Plusofon has no GET to contradict its list: its empty list meets the removal guard.
    env.write_config("", "[resources.smart_numbers]\nenabled = false\n");
    env.sync_ok().await;
    let before = env.count("SELECT count(*) FROM phone_numbers");
    env.control.set_faults(Faults {
        empty_outage: true,
        ..Faults::default()
    });
    // plan foresees it: the cycle would leave work for later (75).
    let plan = env.restsync(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(plan.code, 75, "{}", plan.stdout);
    let run = env.sync_once().await;
    assert_eq!(run.code, 75, "{}", run.stderr);
    assert!(run.stderr.contains("upstream anomaly"), "{}", run.stderr);
    assert_eq!(env.count("SELECT count(*) FROM phone_numbers"), before);
    // The summary shows no walk counts for it, rather than a misleading 0.
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("phone_numbers") && l.split_whitespace().nth(1) == Some("-")),
        "{}",
        run.stdout
    );
    assert_eq!(
        env.count("SELECT count(*) FROM sync_state WHERE resource = 'phone_numbers' AND last_error LIKE '%anomaly%'"),
        1
    );
}

/// Each one-shot run tries every pending entry, whatever its backoff says.
#[tokio::test(flavor = "multi_thread")]
async fn a_one_shot_run_tries_entries_whose_backoff_has_not_expired() {
    let env = Env::start(20).await;
    env.write_config("max_attempts_per_run = 1\nmax_retry_after_secs = 600", "");
    env.sync_ok().await;
    let id = env.upstream_ids(Kind::PhoneNumbers)[3];
    env.exec(&format!(
        "UPDATE phone_numbers SET description = 'after the outage' WHERE id = {id}"
    ));
    env.control.push_scripted(scripted(
        "PUT",
        Kind::PhoneNumbers,
        FaultAction::RetryAfter(600),
        1,
    ));
    let first = env.sync_once().await;
    assert_eq!(first.code, 75, "{}", first.stderr);
    let later = env.count("SELECT count(*) FROM journal WHERE state = 'pending' AND next_attempt_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+60 seconds')");
    assert_eq!(later, 1, "the entry waits for its backoff");
    env.sync_ok().await;
    assert_eq!(
        env.control.get(Kind::PhoneNumbers, id).expect("phone")["description"],
        "after the outage"
    );
}

/// Schema version 2 is applied on the first start: a version-1 database with a local edit,
/// its journal entry and a create left in flight loses none of them, and the edit and the
/// create reach upstream exactly once afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn a_version_1_database_with_pending_work_is_upgraded_and_pushed() {
    let env = Env::start(20).await;
    let record = env.control.list(Kind::PhoneNumbers)[0].clone();
    let id = record["id"].as_i64().expect("id");
    let contact = record["phone_contact"]["contact_id"].as_i64().expect("contact");
    let old = "2026-01-01T00:00:00.000Z";
    {
        // The version-1 schema, as a version-1 restsync left the file.
        let conn = env.db();
        conn.execute_batch(include_str!("../../migrations/0001_init.sql"))
            .expect("version-1 schema");
        conn.pragma_update(None, "user_version", 1).expect("user_version");
        let values = json!([
            contact,
            record["type"],
            record["number"],
            record["extension"],
            "edited before the upgrade",
            record["profile_id"]
        ]);
        conn.execute(
            "INSERT INTO phone_numbers (local_id, id, contact_id, type, number, extension, description, profile_id) \
             VALUES (1, ?1, ?2, ?3, ?4, ?5, 'edited before the upgrade', ?6)",
            params![
                id,
                contact,
                record["type"].as_i64(),
                record["number"].as_str(),
                record["extension"].as_str(),
                record["profile_id"].as_i64()
            ],
        )
        .expect("mirror row");
        conn.execute(
            "INSERT INTO phone_numbers_base (id, local_id, contact_id, type, number, extension, description, profile_id, raw, hash, synced_at) \
             VALUES (?1, 1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?9)",
            params![
                id,
                contact,
                record["type"].as_i64(),
                record["number"].as_str(),
                record["extension"].as_str(),
                record["description"].as_str(),
                record["profile_id"].as_i64(),
                record.to_string(),
                old
            ],
        )
        .expect("base row");
        conn.execute(
            "INSERT INTO journal (resource, op, local_id, upstream_id, payload, row_values, state, attempts, created_at, updated_at) \
             VALUES ('phone_numbers', 'update', 1, ?1, ?2, ?3, 'pending', 1, ?4, ?4)",
            params![
                id,
                json!({"contact_id": contact, "description": "edited before the upgrade"}).to_string(),
                values.to_string(),
                old
            ],
        )
        .expect("update entry");
        conn.execute(
            "INSERT INTO phone_numbers (local_id, contact_id, type, number, description) \
             VALUES (2, 1935038, 2, '0966 121 212', 'created before the upgrade')",
            [],
        )
        .expect("new row");
        conn.execute(
            "INSERT INTO journal (resource, op, local_id, payload, row_values, state, outcome, attempts, created_at, updated_at) \
             VALUES ('phone_numbers', 'create', 2, ?1, ?2, 'in_flight', 'unknown', 1, ?3, ?3)",
            params![
                json!({"contact_id": 1935038, "type": 2, "number": "0966 121 212", "extension": null, "description": "created before the upgrade"}).to_string(),
                json!([1935038, 2, "0966 121 212", null, "created before the upgrade", null]).to_string(),
                old
            ],
        )
        .expect("create entry");
    }
    env.sync_ok().await;
    let version: i64 = env
        .db()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("user_version");
    assert_eq!(version, restsync::store::schema_version() as i64);
    assert_eq!(
        env.control.get(Kind::PhoneNumbers, id).expect("phone")["description"],
        "edited before the upgrade"
    );
    let made = upstream_where(&env, Kind::PhoneNumbers, "number", &json!("0966 121 212"));
    assert_eq!(made.len(), 1, "{made:#?}");
    assert_eq!(
        env.count("SELECT count(*) FROM journal WHERE state NOT IN ('done', 'superseded')"),
        0
    );
    env.assert_converged();
}

/// `id` is upstream's: editing or clearing it by hand pushes nothing (no delete of the old
/// record, no create of a new one), names the row, and setting it back settles it.
#[tokio::test(flavor = "multi_thread")]
async fn editing_a_rows_id_by_hand_pushes_nothing_and_says_how_to_undo_it() {
    let env = Env::start(20).await;
    env.sync_ok().await;
    let address = env.upstream_ids(Kind::Addresses)[2];
    let smart = env.upstream_ids(Kind::SmartNumbers)[3];
    let phone = env.upstream_ids(Kind::PhoneNumbers)[4];
    env.exec(&format!(
        "UPDATE addresses SET id = id + 1000000 WHERE id = {address};
         UPDATE smart_numbers SET id = NULL WHERE id = {smart};
         UPDATE phone_numbers SET id = 99999, description = 'and an edit' WHERE id = {phone};"
    ));
    // Ids edited by hand: status asks for a person before any run, naming the rows.
    let status = env.restsync(&["status"]).await;
    assert_eq!(status.code, 65, "{}", status.stdout);
    assert_eq!(
        status
            .stdout
            .matches("rows whose id was edited by hand: 1 (")
            .count(),
        3,
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains(&format!("(id {smart} -> NULL)")),
        "{}",
        status.stdout
    );
    let json: Value = serde_json::from_str(&env.restsync(&["status", "--json"]).await.stdout).expect("json");
    for r in json.as_array().expect("resources") {
        assert_eq!(
            r["pending_local_changes"],
            json!({"creates": 0, "updates": 0, "deletes": 0}),
            "an id edit is neither a create nor a delete: {r}"
        );
    }
    let run = env.sync_once().await;
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert!(run.stderr.contains("id was changed from"), "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("SET id = {address}")),
        "{}",
        run.stderr
    );
    assert!(
        env.control.get(Kind::PhoneNumbers, phone).is_some(),
        "an id edit deleted the record"
    );
    for kind in [Kind::Addresses, Kind::SmartNumbers, Kind::PhoneNumbers] {
        assert_eq!(env.control.count_requests("DELETE", kind), 0, "{kind:?}");
        assert_eq!(env.control.count_requests("POST", kind), 0, "{kind:?}");
    }
    assert!(env.control.get(Kind::Addresses, address).is_some());
    assert!(env
        .control
        .list(Kind::SmartNumbers)
        .iter()
        .any(|r| r["id"] == smart));
    env.exec(&format!(
        "UPDATE addresses SET id = {address} WHERE id = {};
         UPDATE smart_numbers SET id = {smart} WHERE id IS NULL;
         UPDATE phone_numbers SET id = {phone} WHERE id = 99999;",
        address + 1_000_000
    ));
    env.sync_ok().await;
    env.assert_converged();
}

/// Clearing an id in the same UPDATE as other edits is still an id edit (no delete of the
/// record, no create of a copy), also after the id was first typed over; a row deleted and
/// inserted again, which SQLite may give the same local_id, is a new row and is created.
#[tokio::test(flavor = "multi_thread")]
async fn a_cleared_id_with_other_edits_pushes_nothing_but_a_reinserted_row_is_created() {
    let env = Env::start(20).await;
    env.sync_ok().await;
    let phone = env.upstream_ids(Kind::PhoneNumbers)[2];
    let address = env.upstream_ids(Kind::Addresses)[3];
    env.exec(&format!(
        "UPDATE phone_numbers SET id = NULL, description = 'cleared and edited' WHERE id = {phone};
         UPDATE addresses SET id = 777777 WHERE id = {address};"
    ));
    let run = env.sync_once().await;
    assert_eq!(run.code, 65, "{}", run.stderr);
    // A row that held a known record is an id edit, not a row typed in with an unknown id
    // (whose advice, "set its id to NULL", would not apply).
    assert!(!run.stderr.contains("set its id to NULL"), "{}", run.stderr);
    env.exec("UPDATE addresses SET id = NULL, description = 'then cleared' WHERE id = 777777");
    let run = env.sync_once().await;
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert!(run.stderr.contains("id was changed from"), "{}", run.stderr);
    assert!(!run.stderr.contains("set its id to NULL"), "{}", run.stderr);
    for kind in [Kind::PhoneNumbers, Kind::Addresses] {
        assert_eq!(env.control.count_requests("POST", kind), 0, "{kind:?}");
        assert_eq!(env.control.count_requests("DELETE", kind), 0, "{kind:?}");
    }
    env.exec(&format!(
        "UPDATE phone_numbers SET id = {phone} WHERE id IS NULL;
         UPDATE addresses SET id = {address} WHERE id IS NULL;"
    ));
    env.sync_ok().await;
    assert_eq!(
        env.control.get(Kind::PhoneNumbers, phone).expect("phone")["description"],
        "cleared and edited"
    );

    // Delete the last row and insert another: SQLite hands out the same local_id.
    let (last, last_id): (i64, i64) = env
        .db()
        .query_row(
            "SELECT local_id, id FROM phone_numbers ORDER BY local_id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("last row");
    env.exec(&format!(
        "DELETE FROM phone_numbers WHERE local_id = {last};
         INSERT INTO phone_numbers (contact_id, type, number, description) VALUES (1935038, 2, '0911 222 333', 'a new row');"
    ));
    assert_eq!(
        env.count("SELECT max(local_id) FROM phone_numbers"),
        last,
        "the local_id was reused"
    );
    env.sync_ok().await;
    assert!(env.control.get(Kind::PhoneNumbers, last_id).is_none(), "deleted");
    assert_eq!(
        upstream_where(&env, Kind::PhoneNumbers, "number", &json!("0911 222 333")).len(),
        1
    );
    env.assert_converged();
}

/// The way out status offers for a refused id edit (`journal drop`) gives the row its id
/// back in place: no copy of the record appears beside it, so nothing is created upstream.
/// A row that now holds another record's id is not guessed at: the drop is refused.
#[tokio::test(flavor = "multi_thread")]
async fn dropping_a_refused_id_edit_puts_the_id_back_without_a_copy() {
    let env = Env::start(20).await;
    env.sync_ok().await;
    let ids = env.upstream_ids(Kind::SmartNumbers);
    let (smart, a, b) = (ids[3], ids[5], ids[6]);
    let rows = env.count("SELECT count(*) FROM smart_numbers");
    env.exec(&format!(
        "UPDATE smart_numbers SET id = NULL WHERE id = {smart};
         DELETE FROM smart_numbers WHERE id = {b};
         UPDATE smart_numbers SET id = {b} WHERE id = {a};"
    ));
    let run = env.sync_once().await;
    assert_eq!(run.code, 65, "{}", run.stderr);
    let seq_of = |id: i64| {
        env.count(&format!(
            "SELECT seq FROM journal WHERE resource = 'smart_numbers' AND op = 'delete' AND upstream_id = {id} AND state = 'failed'"
        ))
    };
    let status = env.restsync(&["status"]).await;
    assert!(
        status.stdout.contains(&format!("journal drop {}", seq_of(smart))),
        "{}",
        status.stdout
    );
    // Moved ids: status offers no drop (it would be refused), only the fix by hand.
    assert!(
        !status.stdout.contains(&format!("journal drop {}`", seq_of(a)))
            && status.stdout.contains("put the ids right by hand"),
        "{}",
        status.stdout
    );
    let seq = seq_of(smart).to_string();
    let drop = env.restsync(&["journal", "drop", &seq, "--yes"]).await;
    assert_eq!(drop.code, 0, "{}", drop.stderr);
    assert!(drop.stdout.contains("its id"), "{}", drop.stdout);
    let refused = env
        .restsync(&["journal", "drop", &seq_of(a).to_string(), "--yes"])
        .await;
    assert_eq!(refused.code, 65, "{}", refused.stderr);
    assert!(refused.stderr.contains("another record's"), "{}", refused.stderr);
    // Put the swapped pair right by hand, as the entry's error says, then sync.
    env.exec(&format!("UPDATE smart_numbers SET id = {a} WHERE id = {b}"));
    let run = env.sync_once().await;
    assert_eq!(
        env.control.count_requests("POST", Kind::SmartNumbers),
        0,
        "a copy was created: {}",
        run.stderr
    );
    assert_eq!(
        env.count(&format!("SELECT count(*) FROM smart_numbers WHERE id = {smart}")),
        1
    );
    assert_eq!(
        env.count("SELECT count(*) FROM smart_numbers"),
        rows - 1,
        "only row {b}, deleted here, is gone"
    );
}

/// SIGTERM stops a one-shot run cleanly: requests in flight finish, no new one starts, the
/// run exits 75, and the next run completes the work without duplicates.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_a_one_shot_run_cleanly() {
    let env = Env::start(20).await;
    env.write_config("concurrency = 1", "");
    env.sync_ok().await;
    for i in 0..6 {
        env.exec(&format!(
            "INSERT INTO phone_numbers (contact_id, type, number, description) VALUES (1935038, 2, '0988 000 {i:03}', 'term {i}')"
        ));
    }
    env.control
        .push_scripted(scripted("POST", Kind::PhoneNumbers, FaultAction::Delay(400), 6));
    let child = env.spawn(&["sync", "--once"]);
    let pid = child.id().expect("pid").to_string();
    let started = Instant::now();
    while env.count("SELECT count(*) FROM journal WHERE op = 'create' AND state = 'in_flight'") == 0 {
        assert!(started.elapsed() < Duration::from_secs(10), "no create started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let out = child.wait_with_output().await.expect("wait");
    assert_eq!(
        out.status.code(),
        Some(75),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent = env.control.count_requests("POST", Kind::PhoneNumbers);
    assert!(sent < 6, "the run went on after SIGTERM ({sent} creates sent)");
    assert_eq!(
        env.count("SELECT count(*) FROM journal WHERE state = 'in_flight'"),
        0,
        "the request in flight was let finish"
    );
    env.sync_ok().await;
    for i in 0..6 {
        let made = upstream_where(
            &env,
            Kind::PhoneNumbers,
            "number",
            &json!(format!("0988 000 {i:03}")),
        );
        assert_eq!(made.len(), 1, "{made:#?}");
    }
}

/// A row inserted with an id upstream never gave is neither created nor removed: the run
/// and `status` say so (65) until a person sets the id to NULL (then it is created).
#[tokio::test(flavor = "multi_thread")]
async fn a_row_inserted_with_an_unknown_id_is_reported_not_ignored() {
    let env = Env::start(20).await;
    env.sync_ok().await;
    env.exec(
        "INSERT INTO phone_numbers (id, contact_id, type, number, description) VALUES (777777, 1935038, 2, '0912 777 777', 'explicit id')",
    );
    // plan says so too, and needs a person as the cycle does.
    let plan = env.restsync(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(plan.code, 65, "{}", plan.stdout);
    assert!(
        plan.stdout.contains("names an id upstream does not have"),
        "{}",
        plan.stdout
    );
    // Reported by every run until a person settles it, not only the first.
    for _ in 0..2 {
        let run = env.sync_once().await;
        assert_eq!(run.code, 65, "{}", run.stderr);
        assert!(run.stderr.contains("id 777777"), "{}", run.stderr);
    }
    let status = env.restsync(&["status"]).await;
    assert_eq!(status.code, 65, "{}", status.stdout);
    assert!(
        status.stdout.contains("id upstream does not have"),
        "{}",
        status.stdout
    );
    assert_eq!(env.control.count_requests("POST", Kind::PhoneNumbers), 0);
    env.exec("UPDATE phone_numbers SET id = NULL WHERE id = 777777");
    env.sync_ok().await;
    let made = upstream_where(&env, Kind::PhoneNumbers, "number", &json!("0912 777 777"));
    assert_eq!(made.len(), 1, "{made:#?}");
    env.assert_converged();
}

/// A create whose answer was lost while the list lags behind writes is not declared "never
/// made" before `sync.list_lag_secs` has passed: one INSERT, one record.
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_create_answer_under_a_lagging_list_is_not_sent_twice() {
    let env = Env::start(20).await;
    env.write_config("list_lag_secs = 10", "");
    env.sync_ok().await;
    env.exec("INSERT INTO phone_numbers (contact_id, type, number, description) VALUES (1935038, 2, '0933 707 070', 'lag')");
    env.control.set_faults(Faults {
        list_lag_ms: 7000,
        ..Faults::default()
    });
    env.control.push_scripted(scripted(
        "POST",
        Kind::PhoneNumbers,
        FaultAction::DropAfterCommit,
        1,
    ));
    let run = env.sync_once().await;
    assert!(matches!(run.code, 0 | 75), "{}", run.stderr);
    env.control.set_faults(Faults::default());
    sync_until_ok(&env, 3).await;
    let made = upstream_where(&env, Kind::PhoneNumbers, "number", &json!("0933 707 070"));
    assert_eq!(made.len(), 1, "one INSERT, {} records: {made:#?}", made.len());
    assert_eq!(env.control.count_requests("POST", Kind::PhoneNumbers), 1);
    env.assert_converged();
}

/// A gateway's 504 ends only the gateway's wait: the backend behind it may make the record
/// later. The create is looked for once the request could no longer be in progress (as an
/// unanswered one), so its late record is found, not created a second time.
#[tokio::test(flavor = "multi_thread")]
async fn a_create_answered_504_by_a_gateway_is_not_sent_twice() {
    let env = Env::start(20).await;
    env.sync_ok().await;
    env.exec("INSERT INTO phone_numbers (contact_id, type, number, description) VALUES (1935038, 2, '0933 504 504', 'behind a gateway')");
    env.control.push_scripted(scripted(
        "POST",
        Kind::PhoneNumbers,
        FaultAction::GatewayTimeout(2500),
        1,
    ));
    // The backend commits 2.5 s after the 504: past the list's lag (1 s), within the
    // request timeout (3 s).
    let started = Instant::now();
    let run = env.sync_once().await;
    assert!(matches!(run.code, 0 | 75), "{}", run.stderr);
    if let Some(left) = Duration::from_millis(2700).checked_sub(started.elapsed()) {
        tokio::time::sleep(left).await;
    }
    sync_until_ok(&env, 3).await;
    let made = upstream_where(&env, Kind::PhoneNumbers, "number", &json!("0933 504 504"));
    assert_eq!(made.len(), 1, "one INSERT, {} records: {made:#?}", made.len());
    assert_eq!(
        env.count("SELECT count(*) FROM phone_numbers WHERE number = '0933 504 504'"),
        1
    );
    env.assert_converged();
}

/// During an outage whose lookups keep failing, an unresolved create is bounded too: past
/// `sync.identify_timeout_secs` it waits for a person (65) and is still not sent again.
#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_outcome_that_cannot_be_looked_up_is_bounded_not_resent() {
    let env = Env::start(20).await;
    env.write_config("max_attempts_per_run = 1\nidentify_timeout_secs = 1", "");
    env.sync_ok().await;
    env.exec("INSERT INTO phone_numbers (contact_id, type, number, description) VALUES (1935038, 2, '0944 100 200', 'outage')");
    env.control.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    let first = env.sync_once().await;
    assert_eq!(first.code, 75, "{}", first.stderr);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let second = env.sync_once().await;
    assert_eq!(second.code, 65, "{}", second.stderr);
    assert!(second.stderr.contains("NOT sent again"), "{}", second.stderr);
    let status = env.restsync(&["status"]).await;
    assert_eq!(status.code, 65, "{}", status.stdout);
    assert!(
        status.stdout.contains("outcome never determined"),
        "{}",
        status.stdout
    );
    assert_eq!(
        env.control.count_requests("POST", Kind::PhoneNumbers),
        1,
        "sent again"
    );
    // Once lookups work again, one that misses proves the create was never made: it goes.
    env.control.set_faults(Faults::default());
    env.sync_ok().await;
    let made = upstream_where(&env, Kind::PhoneNumbers, "number", &json!("0944 100 200"));
    assert_eq!(made.len(), 1, "{made:#?}");
    env.assert_converged();
}

/// `sync --once` ends with a summary table (and the next step when something needs a
/// person); `--json` prints the cycle report as one JSON document on stdout instead.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_ends_with_a_summary_or_one_json_document() {
    let env = Env::start(20).await;
    let run = env.sync_ok().await;
    let table: Vec<&str> = run.stdout.lines().collect();
    assert!(
        table[0].contains("inserted") && table[0].contains("status"),
        "{}",
        run.stdout
    );
    for name in ["phone_numbers", "addresses", "smart_numbers"] {
        let line = table
            .iter()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name}: {}", run.stdout));
        assert!(line.contains(" 20 ") && line.ends_with("ok"), "{line}");
    }
    assert!(!run.stdout.contains("Next:"), "{}", run.stdout);

    // A change upstream refuses: the summary says what to do next.
    let sid = env.upstream_ids(Kind::SmartNumbers)[2];
    env.exec(&format!(
        "UPDATE smart_numbers SET description = 'no update endpoint' WHERE id = {sid}"
    ));
    let run = env.sync_once().await;
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert!(run.stdout.contains("needs a person"), "{}", run.stdout);
    assert!(run.stdout.contains("restsync status"), "{}", run.stdout);

    let run = env.restsync(&["sync", "--once", "--json"]).await;
    assert_eq!(run.code, 65, "{}", run.stderr);
    let doc: Value = serde_json::from_str(&run.stdout).expect("one JSON document on stdout");
    assert_eq!(doc["exit_code"], 65);
    let resources = doc["resources"].as_array().expect("resources");
    assert_eq!(resources.len(), 3);
    let smart = resources
        .iter()
        .find(|r| r["resource"] == "smart_numbers")
        .expect("smart_numbers");
    assert_eq!(smart["pulled"]["records"], 20);
    assert_eq!(smart["pushed"]["failed"], 1);
    assert!(smart["outcome"]["NeedsHuman"].is_string(), "{smart}");
    assert!(!run.stderr.is_empty(), "logs stay on stderr");

    // A run that cannot start a cycle still answers with one JSON document.
    let text = std::fs::read_to_string(&env.config).expect("config");
    std::fs::write(&env.config, format!("{text}\n[bogus]\nkey = 1\n")).expect("config");
    let run = env.restsync(&["sync", "--once", "--json"]).await;
    assert_eq!(run.code, 78, "{}", run.stderr);
    let doc: Value = serde_json::from_str(&run.stdout).expect("one JSON document on stdout");
    assert_eq!(doc["exit_code"], 78);
    assert!(
        doc["error"].as_str().is_some_and(|e| e.contains("bogus")),
        "{doc}"
    );
}

/// `plan` shows field-level values and one summary line, answers in JSON, and with
/// `--detailed-exitcode` says by its code whether the next cycle would change anything. A
/// change whose entry failed as it stands is shown as failed, never as a push.
#[tokio::test(flavor = "multi_thread")]
async fn plan_shows_values_a_summary_json_and_detailed_exit_codes() {
    let env = Env::start(20).await;
    env.sync_ok().await;
    let quiet = env.restsync(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(quiet.code, 0, "{}", quiet.stdout);
    assert!(
        quiet.stdout.contains(
            "Plan: 0 to create, 0 to update, 0 to delete upstream; 0 new, 0 changed, 0 removed locally; 0 conflicts."
        ),
        "{}",
        quiet.stdout
    );

    let id = env.upstream_ids(Kind::PhoneNumbers)[1];
    let before = env.row_json("phone_numbers", id)["description"].clone();
    env.exec(&format!(
        "UPDATE phone_numbers SET description = 'planned value' WHERE id = {id}"
    ));
    // A smart-number update has no endpoint: it fails, and stays failed.
    let sid = env.upstream_ids(Kind::SmartNumbers)[0];
    env.exec(&format!(
        "UPDATE smart_numbers SET description = 'cannot go' WHERE id = {sid}"
    ));
    env.restsync(&["sync", "--once"]).await;
    env.exec(&format!(
        "UPDATE phone_numbers SET description = 'planned again' WHERE id = {id}"
    ));
    let run = env.restsync(&["plan", "--detailed-exitcode"]).await;
    // A failed change the cycle would not send needs a person: 65, as the cycle would end.
    assert_eq!(run.code, 65, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("description: \"planned value\" -> \"planned again\""),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("failed, not sent: 1"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("Plan: 0 to create, 1 to update, 0 to delete upstream"),
        "{}",
        run.stdout
    );
    let json = env.restsync(&["plan", "--json"]).await;
    assert_eq!(json.code, 0, "{}", json.stderr);
    let doc: Value = serde_json::from_str(&json.stdout).expect("one JSON document");
    assert_eq!(doc["summary"]["update"], 1);
    assert_eq!(doc["summary"]["failed"], 1);
    assert_eq!(doc["resources"]["smart_numbers"]["push_update"], json!([]));
    assert_eq!(
        doc["resources"]["smart_numbers"]["failed"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_ne!(before, json!("planned again"));
}

/// Undo at scale: after a guarded mass delete, `journal drop --all --resource R --yes`
/// gives every held delete up and brings the rows back; nothing is deleted upstream.
#[tokio::test(flavor = "multi_thread")]
async fn journal_drop_all_undoes_a_guarded_mass_delete() {
    let env = Env::start(20).await;
    env.sync_ok().await;
    let before = env.count("SELECT count(*) FROM addresses");
    env.exec("DELETE FROM addresses WHERE local_id > 2");
    let run = env.sync_once().await;
    assert_eq!(run.code, 65, "the guard holds the deletes: {}", run.stderr);
    let held = env.count(
        "SELECT count(*) FROM journal WHERE resource = 'addresses' AND op = 'delete' AND state = 'failed'",
    );
    assert_eq!(held, before - 2);

    let unconfirmed = env
        .restsync(&["journal", "drop", "--all", "--resource", "addresses"])
        .await;
    assert_eq!(unconfirmed.code, 65, "{}", unconfirmed.stderr);
    assert!(unconfirmed.stderr.contains("--yes"), "{}", unconfirmed.stderr);
    let bad = env
        .restsync(&["journal", "drop", "--all", "--state", "done", "--yes"])
        .await;
    assert_eq!(bad.code, 64, "{}", bad.stderr);

    let run = env
        .restsync(&[
            "journal",
            "drop",
            "--all",
            "--resource",
            "addresses",
            "--state",
            "failed",
            "--yes",
        ])
        .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains(&format!("dropped {held} journal entries")),
        "{}",
        run.stdout
    );
    assert_eq!(env.count("SELECT count(*) FROM addresses"), before);
    env.sync_ok().await;
    assert_eq!(env.control.count(Kind::Addresses) as i64, before);
    env.assert_converged();
}

/// `plan` merges the walk first, as a cycle does: a same-field conflict remote-wins lists
/// no update, a local edit of a record deleted upstream is a conflict (not an update), a
/// local delete of a record changed upstream is restored (not a delete), and the numbers
/// agree with what the cycle then sends and records.
#[tokio::test(flavor = "multi_thread")]
async fn plan_lists_what_the_cycle_sends_after_merging_the_walk() {
    let env = Env::start(20).await;
    env.sync_ok().await;
    let ids = env.upstream_ids(Kind::PhoneNumbers);
    let (both, gone, restored, plain) = (ids[2], ids[3], ids[4], ids[5]);
    env.control
        .update(Kind::PhoneNumbers, both, json!({"description": "remote side"}));
    env.exec(&format!(
        "UPDATE phone_numbers SET description = 'local side' WHERE id = {both}"
    ));
    env.control.delete(Kind::PhoneNumbers, gone);
    env.exec(&format!(
        "UPDATE phone_numbers SET description = 'edited, gone' WHERE id = {gone}"
    ));
    env.control.update(
        Kind::PhoneNumbers,
        restored,
        json!({"description": "changed upstream"}),
    );
    env.exec(&format!("DELETE FROM phone_numbers WHERE id = {restored}"));
    env.exec(&format!(
        "UPDATE phone_numbers SET description = 'just local' WHERE id = {plain}"
    ));

    let json = env.restsync(&["plan", "--json"]).await;
    assert_eq!(json.code, 0, "{}", json.stderr);
    let doc: Value = serde_json::from_str(&json.stdout).expect("one JSON document");
    let phones = &doc["resources"]["phone_numbers"];
    let updates: Vec<String> = phones["push_update"]
        .as_array()
        .expect("list")
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(updates.len(), 1, "only the plain edit is pushed: {updates:?}");
    assert!(updates[0].contains(&format!("(id {plain})")), "{updates:?}");
    assert_eq!(
        phones["push_delete"],
        json!([]),
        "the delete loses to the upstream change"
    );
    let conflicts = phones["conflicts"].as_array().expect("list").len();
    assert_eq!(conflicts, 3, "{}", phones["conflicts"]);
    // Each conflict says how the policy settles it; pulled changes show their values.
    for c in phones["conflicts"].as_array().expect("list") {
        assert!(c.as_str().is_some_and(|c| c.contains(" -> remote-wins: ")), "{c}");
    }
    let updated = phones["pull_update"].to_string();
    assert!(
        updated.contains("description: \\\"local side\\\" -> \\\"remote side\\\""),
        "{updated}"
    );
    let restored = phones["pull_insert"].to_string();
    assert!(
        restored.contains("restored") && restored.contains("changed upstream"),
        "{restored}"
    );

    let run = env.restsync(&["sync", "--once", "--json"]).await;
    let report: Value = serde_json::from_str(&run.stdout).expect("report");
    let pushed = &report["resources"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["resource"] == "phone_numbers"))
        .expect("phone_numbers")["pushed"];
    assert_eq!(pushed["updated"], 1, "{report}");
    assert_eq!(pushed["deleted"], 0, "{report}");
    assert_eq!(
        env.count("SELECT count(*) FROM conflicts WHERE resource = 'phone_numbers'"),
        3
    );
}

/// `status` says why each entry on its way has not gone yet, and for deletes the guard
/// holds, both ways out.
#[tokio::test(flavor = "multi_thread")]
async fn status_says_why_entries_wait_and_how_to_release_guarded_deletes() {
    let env = Env::start(20).await;
    env.write_config("max_attempts_per_run = 1\nretry_base_ms = 60000", "");
    env.sync_ok().await;
    let id = env.upstream_ids(Kind::PhoneNumbers)[1];
    env.exec(&format!(
        "UPDATE phone_numbers SET description = 'later' WHERE id = {id}"
    ));
    env.control.push_scripted(ScriptedFault {
        method: Some("PUT".into()),
        kind: Some(Kind::PhoneNumbers),
        page: None,
        action: FaultAction::Status(503, "{\"message\": \"maintenance\"}".into()),
        times: 1,
    });
    env.exec("UPDATE addresses SET contact_id = 'not a number', description = 'keep me' WHERE local_id = 1");
    env.exec("DELETE FROM addresses WHERE local_id > 1");
    let run = env.sync_once().await;
    assert_eq!(run.code, 65, "{}", run.stderr);
    let status = env.restsync(&["status"]).await;
    assert!(
        status.stdout.contains("waiting for: its next attempt, in ") && status.stdout.contains("maintenance"),
        "{}",
        status.stdout
    );
    assert!(
        status
            .stdout
            .contains("`restsync sync --once --allow-mass-delete` sends them")
            && status
                .stdout
                .contains("`restsync journal drop --all --resource addresses --held --yes`"),
        "{}",
        status.stdout
    );
    let json: Value = serde_json::from_str(&env.restsync(&["status", "--json"]).await.stdout).expect("json");
    let phones = json
        .as_array()
        .and_then(|a| a.iter().find(|r| r["resource"] == "phone_numbers"))
        .expect("phone_numbers");
    assert!(
        phones["pending"][0]["waiting_for"]
            .as_str()
            .is_some_and(|w| w.contains("next attempt")),
        "{phones}"
    );

    // The suggested undo brings the deleted rows back and leaves the other failed change.
    let rows_before = env.count("SELECT count(*) FROM addresses");
    let undo = env
        .restsync(&[
            "journal",
            "drop",
            "--all",
            "--resource",
            "addresses",
            "--held",
            "--yes",
        ])
        .await;
    assert_eq!(undo.code, 0, "{}", undo.stderr);
    assert!(
        env.count("SELECT count(*) FROM addresses") > rows_before,
        "rows back"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM addresses WHERE local_id = 1 AND description = 'keep me'"),
        1,
        "the unrelated edit is kept"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM journal WHERE resource = 'addresses' AND state = 'failed'"),
        1,
        "its failed entry stays"
    );
}

/// Rows whose ids were edited by hand (cleared, swapped between rows) are refused by the
/// cycle, and plan says so instead of listing creates, deletes and updates.
#[tokio::test(flavor = "multi_thread")]
async fn plan_shows_id_edits_as_refused_like_the_cycle() {
    let env = Env::start(10).await;
    env.sync_ok().await;
    let ids = env.upstream_ids(Kind::PhoneNumbers);
    let (cleared, a, b) = (ids[1], ids[2], ids[3]);
    env.exec(&format!(
        "UPDATE phone_numbers SET id = NULL WHERE id = {cleared};
         UPDATE phone_numbers SET id = -1 WHERE id = {a};
         UPDATE phone_numbers SET id = {a} WHERE id = {b};
         UPDATE phone_numbers SET id = {b} WHERE id = -1;"
    ));
    let json = env.restsync(&["plan", "--json"]).await;
    assert_eq!(json.code, 0, "{}", json.stderr);
    let doc: Value = serde_json::from_str(&json.stdout).expect("plan JSON");
    let summary = &doc["summary"];
    assert_eq!(
        (
            summary["create"].as_u64(),
            summary["update"].as_u64(),
            summary["delete"].as_u64()
        ),
        (Some(0), Some(0), Some(0)),
        "{doc}"
    );
    let failed = doc["resources"]["phone_numbers"]["failed"].to_string();
    assert!(failed.contains("would be refused"), "{failed}");
    let writes = |env: &Env| {
        env.control
            .requests()
            .iter()
            .filter(|r| r.method != "GET")
            .count()
    };
    let before = writes(&env);
    let run = env.sync_once().await;
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert_eq!(writes(&env), before, "the cycle sends nothing either");
}

/// A scope filter added after a pull: the rows outside it are not removed by the cycle
/// (the filtered list never shows them), and plan neither lists them as removals nor warns
/// of a mass removal.
#[tokio::test(flavor = "multi_thread")]
async fn plan_and_cycle_agree_on_rows_outside_a_new_scope() {
    let env = Env::start(20).await;
    env.sync_ok().await;
    let before = env.count("SELECT count(*) FROM smart_numbers");
    let user: i64 = env
        .db()
        .query_row(
            "SELECT user_id FROM smart_numbers GROUP BY user_id ORDER BY count(*) DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .expect("a user");
    env.write_config("", &format!("[resources.smart_numbers]\nuser_id = {user}\n"));
    let plan = env.restsync(&["plan", "--json", "--detailed-exitcode"]).await;
    let doc: Value = serde_json::from_str(&plan.stdout).expect("plan JSON");
    let smart = &doc["resources"]["smart_numbers"];
    assert_eq!(smart["pull_remove"], json!([]), "{doc}");
    assert!(
        !smart["notes"].to_string().contains("max_delete_fraction"),
        "{doc}"
    );
    let run = env.sync_once().await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        env.count("SELECT count(*) FROM smart_numbers"),
        before,
        "nothing removed"
    );
}

/// Counts of one resource's plan and of the cycle that follows it.
fn plan_counts(doc: &Value, resource: &str) -> [usize; 5] {
    let r = &doc["resources"][resource];
    [
        "push_create",
        "push_update",
        "push_delete",
        "pull_remove",
        "conflicts",
    ]
    .map(|k| r[k].as_array().map_or(usize::MAX, Vec::len))
}

fn cycle_counts(report: &Value, resource: &str) -> [u64; 5] {
    let r = report["resources"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["resource"] == resource))
        .cloned()
        .unwrap_or_default();
    let n = |v: &Value| v.as_u64().unwrap_or(u64::MAX);
    [
        n(&r["pushed"]["created"]),
        n(&r["pushed"]["updated"]),
        n(&r["pushed"]["deleted"]),
        n(&r["pulled"]["removed"]),
        n(&r["pulled"]["conflicts"]),
    ]
}

/// A list that answers 200 with nothing (an outage upstream) is seen through by plan as by
/// the cycle: nothing is removed (GET still finds the records, or the guard holds the mass
/// removal), and the local edit and delete are listed as the pushes the cycle then sends.
#[tokio::test(flavor = "multi_thread")]
async fn plan_during_an_empty_list_outage_lists_what_the_cycle_sends() {
    let env = Env::start(20).await;
    env.sync_ok().await;
    let phone = env.upstream_ids(Kind::PhoneNumbers)[2];
    let smart = env.upstream_ids(Kind::SmartNumbers)[3];
    env.exec(&format!(
        "UPDATE phone_numbers SET description = 'during the outage' WHERE id = {phone};
         DELETE FROM smart_numbers WHERE id = {smart};"
    ));
    env.control.set_faults(Faults {
        empty_outage: true,
        ..Faults::default()
    });
    let plan = env.restsync(&["plan", "--json"]).await;
    let doc: Value = serde_json::from_str(&plan.stdout).expect("plan JSON");
    assert_eq!(plan_counts(&doc, "phone_numbers"), [0, 1, 0, 0, 0], "{doc}");
    assert_eq!(plan_counts(&doc, "smart_numbers"), [0, 0, 1, 0, 0], "{doc}");
    let notes = doc["resources"]["phone_numbers"]["notes"].to_string();
    assert!(
        notes.contains("upstream anomaly") && !notes.contains("  "),
        "{notes}"
    );
    let notes = doc["resources"]["smart_numbers"]["notes"].to_string();
    assert!(notes.contains("max_delete_fraction"), "{notes}");

    let run = env.restsync(&["sync", "--once", "--json"]).await;
    let report: Value = serde_json::from_str(&run.stdout).expect("report");
    let pushed = |r: &str| cycle_counts(&report, r)[..3].to_vec();
    assert_eq!(pushed("phone_numbers"), [0, 1, 0], "{report}");
    assert_eq!(pushed("smart_numbers"), [0, 0, 1], "{report}");
    assert_eq!(
        env.control.get(Kind::PhoneNumbers, phone).expect("phone")["description"],
        "during the outage"
    );
}

/// local-wins: a record deleted upstream and edited here is created again, not removed;
/// plan counts it once, as the create the cycle sends, and the conflict.
#[tokio::test(flavor = "multi_thread")]
async fn plan_counts_a_local_wins_recreate_once() {
    let env = Env::start(10).await;
    env.write_config("on_conflict = \"local-wins\"", "");
    env.sync_ok().await;
    let ids = env.upstream_ids(Kind::PhoneNumbers);
    let (edited, untouched) = (ids[1], ids[2]);
    for id in [edited, untouched] {
        env.control.delete(Kind::PhoneNumbers, id);
    }
    env.exec(&format!(
        "UPDATE phone_numbers SET description = 'keep me' WHERE id = {edited}"
    ));
    let plan = env.restsync(&["plan", "--json"]).await;
    let doc: Value = serde_json::from_str(&plan.stdout).expect("plan JSON");
    assert_eq!(plan_counts(&doc, "phone_numbers"), [1, 0, 0, 1, 1], "{doc}");
    let removed = doc["resources"]["phone_numbers"]["pull_remove"].to_string();
    assert!(removed.contains(&format!("id {untouched}")), "{removed}");

    let run = env.restsync(&["sync", "--once", "--json"]).await;
    let report: Value = serde_json::from_str(&run.stdout).expect("report");
    assert_eq!(
        cycle_counts(&report, "phone_numbers"),
        [1, 0, 0, 1, 1],
        "{report}"
    );
}

/// The mass-delete guards judge on the counts the cycle sees after its walk (new records
/// in, removed ones out), and plan judges on the same: a delete share that only looks large
/// before new records arrive is sent by both, one that only looks small before removals is
/// held by both.
#[tokio::test(flavor = "multi_thread")]
async fn plan_and_cycle_judge_the_delete_guard_on_the_same_counts() {
    let env = Env::start(20).await;
    env.write_config(
        "",
        "[resources.smart_numbers]\nenabled = false\n[resources.addresses]\nenabled = false\n",
    );
    env.sync_ok().await;
    let ids = env.upstream_ids(Kind::PhoneNumbers);
    // 7 removed upstream, 7 others deleted here: 7 of the 13 left is more than half.
    for id in &ids[..7] {
        env.control.delete(Kind::PhoneNumbers, *id);
    }
    let local: Vec<String> = ids[7..14].iter().map(i64::to_string).collect();
    env.exec(&format!(
        "DELETE FROM phone_numbers WHERE id IN ({})",
        local.join(",")
    ));
    let plan = env.restsync(&["plan", "--json"]).await;
    let doc: Value = serde_json::from_str(&plan.stdout).expect("plan JSON");
    assert_eq!(plan_counts(&doc, "phone_numbers"), [0, 0, 0, 7, 0], "{doc}");
    assert_eq!(
        doc["resources"]["phone_numbers"]["failed"]
            .as_array()
            .map(Vec::len),
        Some(7),
        "{doc}"
    );
    let run = env.restsync(&["sync", "--once", "--json"]).await;
    assert_eq!(run.code, 65, "{}", run.stderr);
    let report: Value = serde_json::from_str(&run.stdout).expect("report");
    assert_eq!(cycle_counts(&report, "phone_numbers")[2..4], [0, 7], "{report}");
    let undo = env
        .restsync(&["journal", "drop", "--all", "--held", "--yes"])
        .await;
    assert_eq!(undo.code, 0, "{}", undo.stderr);
    env.sync_ok().await;

    // 13 records; 6 new upstream, 9 deleted here: 9 of 19 is less than half.
    for i in 0..6 {
        env.control.insert(
            Kind::PhoneNumbers,
            json!({"contact_id": 1935038, "type": 2, "number": format!("0966 000 {i:03}"), "description": "new"}),
        );
    }
    env.exec("DELETE FROM phone_numbers WHERE local_id IN (SELECT local_id FROM phone_numbers ORDER BY local_id LIMIT 9)");
    let plan = env.restsync(&["plan", "--json"]).await;
    let doc: Value = serde_json::from_str(&plan.stdout).expect("plan JSON");
    assert_eq!(plan_counts(&doc, "phone_numbers"), [0, 0, 9, 0, 0], "{doc}");
    let run = env.restsync(&["sync", "--once", "--json"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report: Value = serde_json::from_str(&run.stdout).expect("report");
    assert_eq!(cycle_counts(&report, "phone_numbers")[2], 9, "{report}");
}

/// A failed change the row has moved past is sent by the cycle, and plan lists it so: a
/// refused id edit whose row was then deleted (a delete now), and a row upstream refused
/// whose bad value a remote-wins merge replaced (the rest of the edit is an update now).
#[tokio::test(flavor = "multi_thread")]
async fn plan_lists_a_change_that_supersedes_its_failed_entry() {
    let env = Env::start(20).await;
    env.sync_ok().await;
    let ids = env.upstream_ids(Kind::PhoneNumbers);
    let (moved, bad) = (ids[4], ids[5]);
    env.exec(&format!(
        "UPDATE phone_numbers SET id = 888888 WHERE id = {moved};
         UPDATE phone_numbers SET number = 'bad', description = 'mine' WHERE id = {bad};"
    ));
    let run = env.sync_once().await;
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert_eq!(
        env.count("SELECT count(*) FROM journal WHERE resource = 'phone_numbers' AND state = 'failed'"),
        2,
        "{}",
        run.stderr
    );
    env.exec("DELETE FROM phone_numbers WHERE id = 888888");
    env.control
        .update(Kind::PhoneNumbers, bad, json!({"number": "0912 345 678"}));

    let plan = env.restsync(&["plan", "--json", "--detailed-exitcode"]).await;
    let doc: Value = serde_json::from_str(&plan.stdout).expect("plan JSON");
    assert_eq!(plan.code, 2, "{doc}");
    assert_eq!(plan_counts(&doc, "phone_numbers"), [0, 1, 1, 0, 1], "{doc}");
    let update = doc["resources"]["phone_numbers"]["push_update"].to_string();
    assert!(
        update.contains("description") && !update.contains("number"),
        "{update}"
    );

    let run = env.restsync(&["sync", "--once", "--json"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report: Value = serde_json::from_str(&run.stdout).expect("report");
    assert_eq!(cycle_counts(&report, "phone_numbers")[..3], [0, 1, 1], "{report}");
    assert_eq!(
        env.control.get(Kind::PhoneNumbers, bad).expect("phone")["description"],
        "mine"
    );
    assert!(env.control.get(Kind::PhoneNumbers, moved).is_none());
}

/// A create upstream accepted but its lagging list did not show yet: once the record is
/// listed, plan says the walk adopts it as the row that made it (not a new record), and
/// the cycle does exactly that.
#[tokio::test(flavor = "multi_thread")]
async fn plan_shows_a_lagging_accepted_create_as_adopted_not_new() {
    let env = Env::start(10).await;
    env.write_config("list_lag_secs = 30", "");
    env.sync_ok().await;
    env.exec("INSERT INTO smart_numbers (user_id, phone_b, description) VALUES (40, '79161234500', 'отстающий список')");
    env.control.set_faults(Faults {
        list_lag_ms: 4000,
        ..Faults::default()
    });
    let started = Instant::now();
    let run = env.sync_once().await;
    assert_eq!(run.code, 75, "{}", run.stderr);
    // While the list lags, plan foresees the cycle leaving it for later, as it does.
    let plan = env.restsync(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(plan.code, 75, "{}", plan.stdout);
    if let Some(left) = Duration::from_millis(4300).checked_sub(started.elapsed()) {
        tokio::time::sleep(left).await;
    }
    let plan = env.restsync(&["plan", "--json", "--detailed-exitcode"]).await;
    assert_ne!(plan.code, 75, "the walk adopts it now: {}", plan.stdout);
    let doc: Value = serde_json::from_str(&plan.stdout).expect("plan JSON");
    let smart = &doc["resources"]["smart_numbers"];
    assert_eq!(smart["pull_insert"], json!([]), "{doc}");
    assert!(
        smart["notes"].to_string().contains("adopted as that row"),
        "{doc}"
    );
    env.sync_ok().await;
    assert_eq!(
        upstream_where(&env, Kind::SmartNumbers, "phoneB", &json!("79161234500")).len(),
        1
    );
    assert_eq!(
        env.count("SELECT count(*) FROM smart_numbers WHERE phone_b = '79161234500'"),
        1
    );
}

/// A row inserted after the last rows were deleted takes a freed local_id (SQLite's
/// max + 1). Once created upstream it is its record's own row: undoing the held deletes
/// brings the deleted records back beside it, and the new record survives on both sides.
#[tokio::test(flavor = "multi_thread")]
async fn undoing_held_deletes_keeps_a_new_row_that_reused_a_local_id() {
    let env = Env::start(20).await;
    env.sync_ok().await;
    env.exec(
        "DELETE FROM addresses WHERE local_id >= 10;
         INSERT INTO addresses (contact_id, type, address, country_id, state_id, city_id, description)
         VALUES (1938277, 1, '松仁路1號', 1, 1, 14, 'brand new');",
    );
    assert_eq!(
        env.count("SELECT local_id FROM addresses WHERE description = 'brand new'"),
        10,
        "the freed local_id was reused"
    );
    let run = env.sync_once().await;
    assert_eq!(run.code, 65, "the deletes are held: {}", run.stderr);
    let new_id = env.count("SELECT id FROM addresses WHERE description = 'brand new'");
    assert!(env.control.get(Kind::Addresses, new_id).is_some(), "created");
    let undo = env
        .restsync(&[
            "journal",
            "drop",
            "--all",
            "--resource",
            "addresses",
            "--held",
            "--yes",
        ])
        .await;
    assert_eq!(undo.code, 0, "{}", undo.stderr);
    env.sync_ok().await;
    assert!(
        env.control.get(Kind::Addresses, new_id).is_some(),
        "the new record was deleted upstream"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM addresses WHERE description = 'brand new'"),
        1
    );
    assert_eq!(env.count("SELECT count(*) FROM addresses"), 21);
    env.assert_converged();
}

/// While two rows hold each other's ids, a walk merges nothing into them: an upstream edit
/// of one record made meanwhile is neither written into the other record's row nor, once
/// the ids are put back, reverted by a push.
#[tokio::test(flavor = "multi_thread")]
async fn upstream_edits_wait_while_rows_hold_swapped_ids() {
    let env = Env::start(10).await;
    env.sync_ok().await;
    let ids = env.upstream_ids(Kind::PhoneNumbers);
    let (a, b) = (ids[2], ids[3]);
    let original_a = env.control.get(Kind::PhoneNumbers, a).expect("a")["description"].clone();
    let swap = |x: i64, y: i64| {
        format!(
            "BEGIN;
             UPDATE phone_numbers SET id = -1 WHERE id = {x};
             UPDATE phone_numbers SET id = {x} WHERE id = {y};
             UPDATE phone_numbers SET id = {y} WHERE id = -1;
             COMMIT;"
        )
    };
    env.exec(&swap(a, b));
    // status sees the swap before any run: a person must put the ids back.
    let status = env.restsync(&["status"]).await;
    assert_eq!(status.code, 65, "{}", status.stdout);
    assert!(
        status.stdout.contains("rows whose id was edited by hand: 2")
            && status.stdout.contains(&format!("(id {a} -> {b})")),
        "{}",
        status.stdout
    );
    let run = env.sync_once().await;
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("UPDATE phone_numbers SET id = {a} WHERE")),
        "{}",
        run.stderr
    );
    let status = env.restsync(&["status"]).await;
    assert!(
        status.stdout.contains("put the ids right by hand") && !status.stdout.contains("journal drop"),
        "{}",
        status.stdout
    );
    env.control
        .update(Kind::PhoneNumbers, b, json!({"description": "remote-b"}));
    assert_eq!(env.sync_once().await.code, 65);
    assert_eq!(
        env.count("SELECT count(*) FROM phone_numbers WHERE description = 'remote-b'"),
        0,
        "merged into a row whose id was swapped"
    );
    env.exec(&swap(b, a));
    env.sync_ok().await;
    assert_eq!(
        env.control.get(Kind::PhoneNumbers, b).expect("b")["description"],
        "remote-b",
        "the upstream edit was reverted"
    );
    assert_eq!(
        env.control.get(Kind::PhoneNumbers, a).expect("a")["description"],
        original_a
    );
    assert_eq!(env.control.count_requests("PUT", Kind::PhoneNumbers), 0);
    assert_eq!(env.row_json("phone_numbers", b)["description"], "remote-b");
    env.assert_converged();
}

/// An id edited in the same UPDATE that moves the row to another local_id is still an id
/// edit: nothing is deleted or created upstream.
#[tokio::test(flavor = "multi_thread")]
async fn an_id_edited_together_with_local_id_pushes_nothing() {
    let env = Env::start(20).await;
    env.sync_ok().await;
    let ids = env.upstream_ids(Kind::PhoneNumbers);
    let (cleared, typed) = (ids[3], ids[4]);
    env.exec(&format!(
        "UPDATE phone_numbers SET id = NULL, local_id = 500 WHERE id = {cleared};
         UPDATE phone_numbers SET id = 888888, local_id = 501 WHERE id = {typed};"
    ));
    let run = env.sync_once().await;
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert!(run.stderr.contains("id was changed from"), "{}", run.stderr);
    assert_eq!(env.control.count_requests("POST", Kind::PhoneNumbers), 0);
    assert_eq!(env.control.count_requests("DELETE", Kind::PhoneNumbers), 0);
    for id in [cleared, typed] {
        assert!(env.control.get(Kind::PhoneNumbers, id).is_some(), "{id} deleted");
    }
    env.exec(&format!(
        "UPDATE phone_numbers SET id = {cleared} WHERE local_id = 500;
         UPDATE phone_numbers SET id = {typed} WHERE local_id = 501;"
    ));
    env.sync_ok().await;
    env.assert_converged();
}
