//! A resource defined only in the config (an `emails` endpoint restsync has never heard
//! of) does what the built-ins do: pull, remote and local changes both ways, conflicts,
//! exactly-once creates under an unknown outcome, the mass-delete guard, and a definition
//! that grows a column.

use crate::common::Env;
use restsync::resources::ResourceKind;
use restsync::sandbox::{FaultAction, SandboxOptions, ScriptedFault};
use serde_json::{json, Value};
use std::collections::HashMap;

/// The definition of an e-mail resource named `name`; `extra` adds columns.
fn emails(name: &str, extra: &str) -> String {
    format!(
        r#"
[resources.{name}]
upstream = "firstline"
path = "/api/v1/{name}"
natural_key = ["contact_id", "email"]

[[resources.{name}.columns]]
name = "contact_id"
type = "integer"
from = "email_contact.contact_id"
writable = true
required_on_update = true

[[resources.{name}.columns]]
name = "email"
type = "text"
writable = true

[[resources.{name}.columns]]
name = "verified"
type = "integer"
{extra}
"#
    )
}

/// Only the defined resource is synced: the built-ins are switched off.
fn only(definition: &str) -> String {
    format!(
        "[resources.phone_numbers]\nenabled = false\n[resources.addresses]\nenabled = false\n\
         [resources.smart_numbers]\nenabled = false\n{definition}"
    )
}

/// Registers a definition in this process (as loading the config does), for the sandbox.
fn define(definition: &str, name: &str) -> ResourceKind {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("defs.toml");
    let text = format!(
        "[upstreams.firstline]\nbase_url = \"http://127.0.0.1:1\"\ntoken = \"t\"\n\
         [upstreams.plusofon]\nbase_url = \"http://127.0.0.1:1\"\ntoken = \"t\"\nclient = \"1\"\n{definition}"
    );
    std::fs::write(&path, text).unwrap();
    restsync::config::load_with_env(&path, HashMap::new()).unwrap_or_else(|e| panic!("{e}"));
    ResourceKind::from_name(name).expect("defined")
}

async fn start(name: &str, extra: &str, records: usize) -> Env {
    let kind = define(&emails(name, extra), name);
    let env = Env::start_with(SandboxOptions {
        records,
        defined: vec![kind],
        ..SandboxOptions::default()
    })
    .await;
    env.write_config("", &only(&emails(name, extra)));
    env
}

fn upstream_by_id(env: &Env, name: &str) -> HashMap<i64, Value> {
    env.control
        .defined_records(name)
        .into_iter()
        .map(|r| (r["id"].as_i64().unwrap(), r))
        .collect()
}

fn posts(env: &Env, path: &str) -> usize {
    env.control
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == path)
        .count()
}

#[tokio::test]
async fn a_resource_defined_only_in_the_config_syncs_both_ways() {
    let env = start("emails", "", 30).await;
    env.sync_ok().await;
    assert_eq!(env.count("SELECT count(*) FROM emails"), 30);
    let upstream = upstream_by_id(&env, "emails");
    let contact: i64 = env
        .db()
        .query_row("SELECT contact_id FROM emails WHERE id = 4", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        Some(contact),
        upstream[&4]["email_contact"]["contact_id"].as_i64(),
        "read through the nested path"
    );

    // Both sides change: a remote edit, a local edit, a local create, a local delete, and
    // one record edited on both sides (a conflict; remote wins by default).
    assert!(env
        .control
        .defined_set("emails", 3, "email", json!("remote@x.test")));
    assert!(env
        .control
        .defined_set("emails", 9, "email", json!("remote9@x.test")));
    env.exec("UPDATE emails SET email = 'local@x.test' WHERE id = 5");
    env.exec("UPDATE emails SET email = 'local9@x.test' WHERE id = 9");
    env.exec("INSERT INTO emails (contact_id, email) VALUES (77, 'new@x.test')");
    env.exec("DELETE FROM emails WHERE id = 7");
    env.sync_ok().await;

    let upstream = upstream_by_id(&env, "emails");
    let mirror_email = |id: i64| -> String {
        env.db()
            .query_row("SELECT email FROM emails WHERE id = ?1", [id], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(mirror_email(3), "remote@x.test");
    assert_eq!(upstream[&5]["email"], "local@x.test");
    assert_eq!(
        upstream[&5]["email_contact"]["contact_id"],
        upstream[&5]["email_contact"]["contact_id"]
    );
    assert!(!upstream.contains_key(&7), "deleted upstream");
    assert_eq!(mirror_email(9), "remote9@x.test");
    let created: Vec<&Value> = upstream.values().filter(|r| r["email"] == "new@x.test").collect();
    assert_eq!(created.len(), 1);
    assert_eq!(
        created[0]["email_contact"]["contact_id"], 77,
        "written at the nested path"
    );
    let new_id = created[0]["id"].as_i64().unwrap();
    assert_eq!(
        env.count("SELECT count(*) FROM emails WHERE email = 'new@x.test' AND id IS NOT NULL"),
        1
    );
    assert_eq!(
        env.count(&format!("SELECT count(*) FROM emails WHERE id = {new_id}")),
        1
    );

    let conflicts = env
        .restsync(&["conflicts", "--resource", "emails", "--json"])
        .await;
    assert_eq!(conflicts.code, 0, "{}", conflicts.stderr);
    assert!(
        conflicts.stdout.contains("local9@x.test") && conflicts.stdout.contains("remote9@x.test"),
        "{}",
        conflicts.stdout
    );

    // A second cycle sends nothing again.
    let before = env
        .control
        .requests()
        .iter()
        .filter(|r| r.method != "GET")
        .count();
    env.sync_ok().await;
    let after = env
        .control
        .requests()
        .iter()
        .filter(|r| r.method != "GET")
        .count();
    assert_eq!(before, after, "converged: no writes on the next cycle");
    assert_eq!(posts(&env, "/api/v1/emails"), 1);
    let status = env.restsync(&["status"]).await;
    assert_eq!(status.code, 0, "{}\n{}", status.stdout, status.stderr);
    assert!(status.stdout.contains("emails"), "{}", status.stdout);

    // The resources command knows it, and prints it back as the TOML that defines it.
    let list = env.restsync(&["resources"]).await;
    assert_eq!(list.code, 0, "{}", list.stderr);
    let line = list
        .stdout
        .lines()
        .find(|l| l.starts_with("emails "))
        .expect("listed");
    assert!(
        line.contains("config") && line.contains("/api/v1/emails") && line.ends_with("yes"),
        "{line}"
    );
    assert!(
        list.stdout
            .contains("contact_id integer writable (from email_contact.contact_id)"),
        "{}",
        list.stdout
    );
    let shown = env.restsync(&["resources", "show", "emails"]).await;
    assert_eq!(shown.code, 0);
    assert!(
        shown.stdout.contains("[resources.emails]")
            && shown.stdout.contains("from = \"email_contact.contact_id\""),
        "{}",
        shown.stdout
    );
    let missing = env.restsync(&["resources", "show", "nope"]).await;
    assert_eq!(missing.code, 64, "{}", missing.stderr);
}

#[tokio::test]
async fn a_create_whose_answer_is_lost_is_found_by_its_natural_key_not_sent_twice() {
    let env = start("emails_lost", "", 5).await;
    env.sync_ok().await;
    env.exec("INSERT INTO emails_lost (contact_id, email) VALUES (12, 'once@x.test')");
    env.control.push_scripted(ScriptedFault {
        method: Some("POST".into()),
        kind: None,
        page: None,
        action: FaultAction::DropAfterCommit,
        times: 1,
    });
    let mut code = -1;
    for _ in 0..6 {
        code = env.sync_once().await.code;
        if code == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    }
    assert_eq!(code, 0);
    let dropped = env
        .control
        .requests()
        .iter()
        .any(|r| r.method == "POST" && r.status == 0);
    assert!(
        dropped,
        "the create's answer was lost: {:?}",
        env.control.requests()
    );
    let made: Vec<Value> = env
        .control
        .defined_records("emails_lost")
        .into_iter()
        .filter(|r| r["email"] == "once@x.test")
        .collect();
    assert_eq!(made.len(), 1, "created exactly once");
    assert_eq!(posts(&env, "/api/v1/emails_lost"), 1);
    let id = made[0]["id"].as_i64().unwrap();
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM emails_lost WHERE id = {id} AND email = 'once@x.test'"
        )),
        1
    );
}

#[tokio::test]
async fn the_mass_delete_guard_holds_a_defined_resources_deletes() {
    let env = start("emails_guard", "", 20).await;
    env.sync_ok().await;
    env.exec("DELETE FROM emails_guard");
    let run = env.sync_once().await;
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert_eq!(
        env.control.defined_records("emails_guard").len(),
        20,
        "nothing deleted upstream"
    );
    let deletes = env
        .control
        .requests()
        .iter()
        .filter(|r| r.method == "DELETE")
        .count();
    assert_eq!(deletes, 0);
}

#[tokio::test]
async fn a_definition_that_adds_a_column_upgrades_the_existing_mirror() {
    let grown = "[[resources.emails_grow.columns]]\nname = \"label\"\ntype = \"text\"\nfrom = \"meta.label\"\nwritable = true\n";
    // The upstream already holds `meta.label`; the first definition does not read it.
    let env = start("emails_grow", grown, 8).await;
    env.write_config("", &only(&emails("emails_grow", "")));
    env.sync_ok().await;
    let cols = |env: &Env| -> Vec<String> {
        let db = env.db();
        let mut stmt = db
            .prepare("SELECT name FROM pragma_table_info('emails_grow')")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert!(!cols(&env).contains(&"label".to_string()));

    env.write_config("", &only(&emails("emails_grow", grown)));
    let check = env.restsync(&["check"]).await;
    assert_eq!(check.code, 0, "{}", check.stderr);
    assert!(
        check.stdout.contains("emails_grow: columns label are added"),
        "{}",
        check.stdout
    );
    assert!(
        !cols(&env).contains(&"label".to_string()),
        "check changes nothing"
    );
    let status = env.restsync(&["status"]).await;
    assert_eq!(status.code, 75, "{}\n{}", status.stdout, status.stderr);
    assert!(
        status
            .stdout
            .contains("emails_grow: its definition adds column(s) label"),
        "{}",
        status.stdout
    );
    // A dry run changes nothing, tables included: it says what the sync will do.
    let plan = env.restsync(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(plan.code, 2, "{}\n{}", plan.stdout, plan.stderr);
    assert!(
        plan.stdout.contains("the next sync adds column(s) label"),
        "{}",
        plan.stdout
    );
    assert!(
        !cols(&env).contains(&"label".to_string()),
        "plan changed the table"
    );
    env.sync_ok().await;
    assert!(cols(&env).contains(&"label".to_string()));
    let plan = env.restsync(&["plan", "--detailed-exitcode"]).await;
    assert_eq!(
        plan.code, 0,
        "the new column came from stored records: nothing to pull or push\n{}\n{}",
        plan.stdout, plan.stderr
    );
    let upstream = upstream_by_id(&env, "emails_grow");
    let label: String = env
        .db()
        .query_row("SELECT label FROM emails_grow WHERE id = 2", [], |r| r.get(0))
        .unwrap();
    assert_eq!(Some(label.as_str()), upstream[&2]["meta"]["label"].as_str());
    // The new column is pushed like any other.
    env.exec("UPDATE emails_grow SET label = 'home' WHERE id = 2");
    env.sync_ok().await;
    assert_eq!(upstream_by_id(&env, "emails_grow")[&2]["meta"]["label"], "home");

    // Taking the column away again is refused (exit 78), naming it; the data stays.
    env.write_config("", &only(&emails("emails_grow", "")));
    let check = env.restsync(&["check"]).await;
    assert_eq!(check.code, 78, "{}", check.stderr);
    assert!(
        check.stderr.contains("`label` (text) was removed or renamed"),
        "{}",
        check.stderr
    );
    let run = env.sync_once().await;
    assert_eq!(run.code, 78, "{}", run.stderr);
    assert!(
        run.stderr.contains("`label` (text) was removed or renamed"),
        "{}",
        run.stderr
    );
    assert_eq!(
        env.count("SELECT count(*) FROM emails_grow WHERE label = 'home'"),
        1
    );
}

/// A Plusofon-style definition: flat pages, a create answered only `{"success": true}`
/// (identified by its natural key), and only create allowed: a local update or delete is
/// refused (65) naming the row, and nothing is sent for it.
#[tokio::test]
async fn a_plusofon_style_definition_identifies_creates_and_refuses_what_upstream_cannot_do() {
    let definition = r#"
[resources.routes]
upstream = "plusofon"
path = "/api/v1/routes"
operations = ["create"]
create_returns_record = false
natural_key = ["name"]

[[resources.routes.columns]]
name = "name"
type = "text"
writable = true

[[resources.routes.columns]]
name = "weight"
type = "real"
writable = true
"#;
    let kind = define(definition, "routes");
    let env = Env::start_with(SandboxOptions {
        records: 40,
        defined: vec![kind],
        ..SandboxOptions::default()
    })
    .await;
    env.write_config("", &only(definition));
    env.sync_ok().await;
    assert_eq!(
        env.count("SELECT count(*) FROM routes"),
        40,
        "every flat page walked"
    );

    env.exec("INSERT INTO routes (name, weight) VALUES ('night', 0.25)");
    env.sync_ok().await;
    let made: Vec<Value> = env
        .control
        .defined_records("routes")
        .into_iter()
        .filter(|r| r["name"] == "night")
        .collect();
    assert_eq!(made.len(), 1);
    assert_eq!(made[0]["weight"], 0.25);
    let id = made[0]["id"].as_i64().unwrap();
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM routes WHERE name = 'night' AND id = {id}"
        )),
        1,
        "identified by lookup"
    );

    env.exec("UPDATE routes SET weight = 9.5 WHERE id = 3");
    env.exec("DELETE FROM routes WHERE id = 4");
    let run = env.sync_once().await;
    assert_eq!(run.code, 65, "{}", run.stderr);
    let writes = env
        .control
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" || r.method == "DELETE")
        .count();
    assert_eq!(writes, 0, "nothing sent that upstream cannot do");
    let status = env.restsync(&["status"]).await;
    assert_eq!(status.code, 65);
    assert!(
        status.stdout.contains("no update endpoint")
            && status.stdout.contains("cannot delete routes records"),
        "{}",
        status.stdout
    );
    assert_eq!(
        env.count("SELECT count(*) FROM routes WHERE id = 3 AND weight = 9.5"),
        1,
        "the edit is kept"
    );
    assert_eq!(
        env.control.defined_records("routes").len(),
        41,
        "record 4 is still upstream"
    );
}

/// Changes waiting in the journal when a definition grows are sent after it, not given up.
#[tokio::test]
async fn changes_waiting_when_a_column_is_added_are_still_sent() {
    let grown = "[[resources.emails_wait.columns]]\nname = \"label\"\ntype = \"text\"\nfrom = \"meta.label\"\nwritable = true\n";
    let env = start("emails_wait", grown, 6).await;
    let small = only(&emails("emails_wait", ""));
    env.write_config("max_attempts_per_run = 1", &small);
    env.sync_ok().await;
    env.exec("UPDATE emails_wait SET email = 'waited@x.test' WHERE id = 3");
    env.exec("INSERT INTO emails_wait (contact_id, email) VALUES (5, 'new-wait@x.test')");
    env.exec("DELETE FROM emails_wait WHERE id = 4");
    for method in ["PUT", "POST", "DELETE"] {
        env.control.push_scripted(ScriptedFault {
            method: Some(method.into()),
            kind: None,
            page: None,
            action: FaultAction::Status(503, "{\"message\": \"down\"}".into()),
            times: 1,
        });
    }
    let run = env.sync_once().await;
    assert_eq!(run.code, 75, "left for later: {}", run.stderr);

    env.write_config("max_attempts_per_run = 1", &only(&emails("emails_wait", grown)));
    let mut code = -1;
    for _ in 0..6 {
        let run = env.sync_once().await;
        code = run.code;
        if code == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert_eq!(code, 0);
    let upstream = upstream_by_id(&env, "emails_wait");
    assert_eq!(upstream[&3]["email"], "waited@x.test", "the update was sent");
    assert!(!upstream.contains_key(&4), "the delete was sent");
    assert_eq!(
        upstream
            .values()
            .filter(|r| r["email"] == "new-wait@x.test")
            .count(),
        1,
        "the create was sent once"
    );
    let failed = env.count("SELECT count(*) FROM journal WHERE state = 'failed'");
    assert_eq!(failed, 0);
}

/// A definition taken out of the config leaves its table alone, and `check` says when
/// local changes wait in it.
#[tokio::test]
async fn check_tells_of_changes_waiting_in_a_resource_no_longer_defined() {
    let env = start("emails_gone", "", 4).await;
    env.sync_ok().await;
    env.exec("UPDATE emails_gone SET email = 'kept@x.test' WHERE id = 2");
    env.write_config("", &only(""));
    let check = env.restsync(&["check"]).await;
    assert_eq!(check.code, 0, "{}", check.stderr);
    assert!(
        check
            .stdout
            .contains("emails_gone: no longer defined or enabled here, and 1 local change(s) wait"),
        "{}",
        check.stdout
    );
    let status = env.restsync(&["status"]).await;
    assert_eq!(status.code, 75, "{}\n{}", status.stdout, status.stderr);
    assert!(
        status
            .stdout
            .contains("emails_gone: no longer defined or enabled"),
        "{}",
        status.stdout
    );
    env.sync_ok().await;
    assert_eq!(
        env.count("SELECT count(*) FROM emails_gone WHERE email = 'kept@x.test'"),
        1,
        "the table is left alone"
    );
}

/// The service with a defined resource: a reload that adds a column applies it live; one
/// that removes a column is refused and the running definition keeps syncing.
#[tokio::test(flavor = "multi_thread")]
async fn the_service_applies_a_grown_definition_on_reload_and_refuses_a_shrunk_one() {
    let grown = "[[resources.emails_live.columns]]\nname = \"label\"\ntype = \"text\"\nfrom = \"meta.label\"\nwritable = true\n";
    let env = start("emails_live", grown, 6).await;
    let metrics_port = crate::daemon::free_port();
    let daemon_tail = format!(
        "[daemon]\npush_delay_ms = 200\nwatch_interval_ms = 100\nshutdown_grace_secs = 5\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n"
    );
    let write = |extra: &str| {
        env.write_config(
            "schedule = \"*/2 * * * * *\"",
            &format!("{daemon_tail}{}", only(&emails("emails_live", extra))),
        );
    };
    write("");
    // Each step is awaited as the pass that does it finishes: no sleeps, no polling.
    let service = crate::daemon::InProcess::start(&env);
    service.healthy("first walk").await;
    assert_eq!(env.count("SELECT count(*) FROM emails_live"), 6);
    // Its metrics are a built-in's: the same series, labelled with its name.
    let metrics = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    for series in [
        "restsync_records_pulled_total{resource=\"emails_live\"}",
        "restsync_journal_entries{resource=\"emails_live\",state=\"pending\"}",
        "restsync_last_successful_walk_timestamp_seconds{resource=\"emails_live\"}",
    ] {
        assert!(metrics.contains(series), "{series} missing:\n{metrics}");
    }

    write(grown);
    service.reload.send(()).await.expect("reload");
    let has_label = |env: &Env| env.db().prepare("SELECT label FROM emails_live LIMIT 1").is_ok();
    // The reload adds the column before the new schedulers start.
    service.until("column added on reload", || has_label(&env)).await;
    env.exec("UPDATE emails_live SET label = 'live' WHERE id = 2");
    service
        .until("the scheduler restarted with the new definition", || {
            upstream_by_id(&env, "emails_live")[&2]["meta"]["label"] == "live"
        })
        .await;

    // Shrinking is refused; the running (grown) definition goes on syncing.
    write("");
    service.reload.send(()).await.expect("reload");
    env.exec("UPDATE emails_live SET label = 'still', email = 'still@x.test' WHERE id = 3");
    service
        .until("edit pushed after the refused reload", || {
            let r = &upstream_by_id(&env, "emails_live")[&3];
            r["meta"]["label"] == "still" && r["email"] == "still@x.test"
        })
        .await;
    assert!(has_label(&env), "the column and its data stay");
    assert_eq!(service.stop().await, 0);
}

/// A create answered only `{"success": true}` while the list lags behind it: the record is
/// identified once the list shows it, and never created twice meanwhile.
#[tokio::test]
async fn an_accepted_create_behind_a_lagging_list_is_identified_not_repeated() {
    let definition = r#"
[resources.routes_lag]
upstream = "plusofon"
path = "/api/v1/routes-lag"
create_returns_record = false
natural_key = ["name"]

[[resources.routes_lag.columns]]
name = "name"
type = "text"
writable = true
"#;
    let kind = define(definition, "routes_lag");
    let env = Env::start_with(SandboxOptions {
        records: 3,
        defined: vec![kind],
        ..SandboxOptions::default()
    })
    .await;
    env.write_config("", &only(definition));
    env.sync_ok().await;
    env.control.set_faults(restsync::sandbox::Faults {
        list_lag_ms: 1500,
        ..Default::default()
    });
    env.exec("INSERT INTO routes_lag (name) VALUES ('lagging')");
    let first = env.sync_once().await;
    assert_ne!(
        first.code, 0,
        "not identified while the list lags: {}",
        first.stderr
    );
    // plan agrees: the accepted create is not a push the next cycle would send.
    let plan = env.restsync(&["plan", "--json"]).await;
    let doc: Value = serde_json::from_str(&plan.stdout).expect("plan JSON");
    assert_eq!(doc["summary"]["create"], 0, "{doc}");
    assert!(
        doc["resources"]["routes_lag"]["notes"]
            .to_string()
            .contains("not sent again"),
        "{doc}"
    );
    let mut code = first.code;
    for _ in 0..10 {
        if code == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
        code = env.sync_once().await.code;
    }
    assert_eq!(code, 0);
    let made: Vec<Value> = env
        .control
        .defined_records("routes_lag")
        .into_iter()
        .filter(|r| r["name"] == "lagging")
        .collect();
    assert_eq!(made.len(), 1, "created once");
    assert_eq!(posts(&env, "/api/v1/routes-lag"), 1);
    let id = made[0]["id"].as_i64().unwrap();
    assert_eq!(
        env.count(&format!("SELECT count(*) FROM routes_lag WHERE id = {id}")),
        1
    );
}

/// Changes queued while an operation was allowed are not sent once the definition leaves
/// it out: refused (65), upstream untouched.
#[tokio::test]
async fn queued_changes_are_not_sent_after_their_operation_is_dropped() {
    let env = start("emails_ops", "", 5).await;
    env.write_config(
        "max_attempts_per_run = 1\nretry_base_ms = 1",
        &only(&emails("emails_ops", "")),
    );
    env.sync_ok().await;
    env.exec("UPDATE emails_ops SET email = 'queued@x.test' WHERE id = 1");
    env.exec("DELETE FROM emails_ops WHERE id = 2");
    for method in ["PUT", "DELETE", "GET"] {
        env.control.push_scripted(ScriptedFault {
            method: Some(method.into()),
            kind: None,
            page: None,
            action: FaultAction::Status(503, "{\"message\": \"down\"}".into()),
            times: if method == "GET" { 0 } else { 1 },
        });
    }
    let run = env.sync_once().await;
    assert_eq!(run.code, 75, "queued for later: {}", run.stderr);
    let limited = only(&emails("emails_ops", "").replace(
        "natural_key = [\"contact_id\", \"email\"]",
        "natural_key = [\"contact_id\", \"email\"]\noperations = [\"create\"]",
    ));
    env.write_config("max_attempts_per_run = 1\nretry_base_ms = 1", &limited);
    let writes_before = env
        .control
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" || r.method == "DELETE")
        .count();
    let run = env.sync_once().await;
    assert_eq!(run.code, 65, "{}", run.stderr);
    let writes_after = env
        .control
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" || r.method == "DELETE")
        .count();
    assert_eq!(writes_before, writes_after, "nothing sent");
    let upstream = upstream_by_id(&env, "emails_ops");
    assert!(upstream.contains_key(&2), "not deleted");
    assert_ne!(upstream[&1]["email"], "queued@x.test", "not updated");
    let status = env.restsync(&["status"]).await;
    assert!(
        status
            .stdout
            .contains("the upstream cannot update emails_ops records"),
        "{}",
        status.stdout
    );
    assert!(
        status
            .stdout
            .contains("the upstream cannot delete emails_ops records"),
        "{}",
        status.stdout
    );
}

/// An update upstream answers without the value sent (here the definition's payload_key is
/// not the upstream's field) never silently undoes the edit: the row keeps it, the run
/// says so (65), and nothing is sent again until a person acts.
#[tokio::test]
async fn an_update_upstream_ignores_keeps_the_edit_and_fails_loudly() {
    let label = "[[resources.emails_ignored.columns]]\nname = \"label\"\ntype = \"text\"\nwritable = true\n";
    let env = start("emails_ignored", label, 5).await;
    let wrong_key = format!("{label}payload_key = \"title\"\n");
    env.write_config("", &only(&emails("emails_ignored", &wrong_key)));
    env.sync_ok().await;
    env.exec("UPDATE emails_ignored SET label = 'fresh-edit' WHERE id = 4");
    let run = env.sync_once().await;
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert_eq!(
        env.count("SELECT count(*) FROM emails_ignored WHERE id = 4 AND label = 'fresh-edit'"),
        1,
        "the edit is kept"
    );
    let status = env.restsync(&["status"]).await;
    assert!(
        status
            .stdout
            .contains("label: sent \"fresh-edit\", upstream holds \"label-4\""),
        "{}",
        status.stdout
    );
    let puts = |env: &Env| {
        env.control
            .requests()
            .iter()
            .filter(|r| r.method == "PUT")
            .count()
    };
    let before = puts(&env);
    let again = env.sync_once().await;
    assert_eq!(again.code, 65, "{}", again.stderr);
    assert_eq!(puts(&env), before, "not sent again and again");

    // The same for a create: the record is made once, the row keeps the value upstream
    // did not take, and the update that follows fails naming it.
    env.exec("INSERT INTO emails_ignored (contact_id, email, label) VALUES (3, 'made@x.test', 'new-label')");
    let mut last = -1;
    for _ in 0..3 {
        last = env.sync_once().await.code;
    }
    assert_eq!(last, 65);
    assert_eq!(
        env.control
            .defined_records("emails_ignored")
            .iter()
            .filter(|r| r["email"] == "made@x.test")
            .count(),
        1,
        "created once"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM emails_ignored WHERE email = 'made@x.test' AND label = 'new-label' AND id IS NOT NULL"),
        1,
        "the row keeps the value upstream did not take"
    );
    let status = env.restsync(&["status"]).await;
    assert!(
        status
            .stdout
            .contains("label: sent \"new-label\", upstream holds null"),
        "{}",
        status.stdout
    );
}

/// `restsync sandbox --definitions CONFIG` serves the resources that configuration defines.
#[tokio::test]
async fn the_sandbox_command_serves_the_definitions_of_a_config() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("defs.toml");
    std::fs::write(
        &config,
        format!(
            "[upstreams.firstline]\nbase_url = \"http://127.0.0.1:1\"\ntoken = \"t\"\n{}",
            emails("emails_cli", "")
        ),
    )
    .unwrap();
    let (fl, pl) = (crate::daemon::free_port(), crate::daemon::free_port());
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_restsync"))
        .args([
            "sandbox",
            "--firstline-port",
            &fl.to_string(),
            "--plusofon-port",
            &pl.to_string(),
            "--records",
            "7",
        ])
        .arg("--definitions")
        .arg(&config)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("sandbox starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut announced = String::new();
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(std::time::Duration::from_secs(10), lines.next_line()).await
    {
        announced.push_str(&line);
        announced.push('\n');
        if line.starts_with("Ctrl-C") {
            break;
        }
    }
    assert!(
        announced.contains(&format!(
            "also emails_cli at http://127.0.0.1:{fl}/api/v1/emails_cli (7 records)"
        )),
        "{announced}"
    );
    let page: Value = reqwest::Client::new()
        .get(format!(
            "http://127.0.0.1:{fl}/api/v1/emails_cli?page=1&per_page=5"
        ))
        .bearer_auth("sandbox-firstline-token")
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("JSON page");
    assert_eq!(page["meta"]["total"], 7, "{page}");
    assert_eq!(page["data"].as_array().map(Vec::len), Some(5));
    assert!(page["data"][0]["email_contact"]["contact_id"].is_i64(), "{page}");
    let _ = child.kill().await;
}
