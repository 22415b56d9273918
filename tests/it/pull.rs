//! Pull: `restsync sync --once` walks every resource of the sandbox into the mirror.

use crate::common::Env;
use restsync::sandbox::{FaultAction, Kind, ScriptedFault};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn full_pull_of_every_resource_across_many_pages() {
    let env = Env::start(130).await;
    let run = env.sync_ok().await;
    env.assert_converged();
    for kind in [Kind::PhoneNumbers, Kind::Addresses, Kind::SmartNumbers] {
        assert_eq!(env.mirror_ids(kind.name()).len(), 130, "{}", kind.name());
    }
    // per_page 25 for Firstline: 6 pages each; smart numbers come 15 a page whatever we ask.
    let gets = |path: &str| {
        env.control
            .requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path == path)
            .count()
    };
    assert_eq!(gets("/api/v1/phone-number"), 6);
    assert_eq!(gets("/api/v1/address"), 6);
    assert_eq!(gets("/api/v1/smart-numbers"), 9);
    assert!(
        run.stderr.contains("cycle finished"),
        "no summary line:\n{}",
        run.stderr
    );
    // Raw upstream JSON and a base snapshot are kept for every record.
    let raw_ok = env.count(
        "SELECT count(*) FROM phone_numbers_base WHERE json_extract(raw, '$.phone_contact.contact_id') IS NOT NULL",
    );
    assert_eq!(raw_ok, 130);
    let state = env.count("SELECT row_count FROM sync_state WHERE resource = 'smart_numbers' AND last_complete_walk_at IS NOT NULL");
    assert_eq!(state, 130);
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_insert_change_and_removal_reach_the_mirror() {
    let env = Env::start(60).await;
    env.sync_ok().await;
    let ids = env.upstream_ids(Kind::PhoneNumbers);
    let (changed, removed) = (ids[3], ids[40]);
    assert!(env
        .control
        .update(Kind::PhoneNumbers, changed, json!({"description": "改過了"})));
    assert!(env.control.delete(Kind::PhoneNumbers, removed));
    let added = env.control.insert(
        Kind::PhoneNumbers,
        json!({"contact_id": 1935038, "type": 2, "number": "0911222333", "extension": null, "description": "新的"}),
    );
    let sn = env.upstream_ids(Kind::SmartNumbers);
    assert!(env.control.delete(Kind::SmartNumbers, sn[0]));

    env.sync_ok().await;
    env.assert_converged();
    assert_eq!(env.row_json("phone_numbers", changed)["description"], "改過了");
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM phone_numbers WHERE id = {removed}"
        )),
        0
    );
    assert_eq!(env.row_json("phone_numbers", added)["number"], "0911222333");
    assert_eq!(env.row_json("phone_numbers", added)["profile_id"], 1935008);
}

#[tokio::test(flavor = "multi_thread")]
async fn unchanged_records_cost_no_write() {
    let env = Env::start(80).await;
    env.sync_ok().await;
    let snapshot = |env: &Env| -> String {
        env.db()
            .query_row(
                "SELECT group_concat(id || ':' || synced_at) FROM (SELECT id, synced_at FROM phone_numbers_base ORDER BY id)",
                [],
                |r| r.get(0),
            )
            .expect("base snapshot")
    };
    let before = snapshot(&env);
    let run = env.sync_ok().await;
    assert_eq!(
        snapshot(&env),
        before,
        "base snapshots were rewritten although nothing changed"
    );
    assert!(run.stderr.contains("inserted=0"), "{}", run.stderr);
    assert!(run.stderr.contains("updated=0"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn links_pointing_elsewhere_are_not_followed() {
    let env = Env::start(40).await;
    env.sync_ok().await;
    // Every request went to our sandbox with explicit page numbers, none to the hosts in links.
    for r in env.control.requests() {
        if r.method == "GET" {
            assert!(
                r.query.contains("page="),
                "a list request without a page number: {:?}",
                r.query
            );
        }
    }
    env.assert_converged();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_walk_during_which_records_shift_pages_loses_nothing() {
    let env = Env::start(100).await;
    env.sync_ok().await;
    // While page 3 is fetched, two records from earlier pages vanish and three appear in
    // front: a naive walk would skip records on the later pages and remove them.
    env.control.push_scripted(ScriptedFault {
        method: Some("GET".into()),
        kind: Some(Kind::PhoneNumbers),
        page: Some(3),
        action: FaultAction::ShiftPages {
            delete_earlier: 2,
            insert_before: 3,
        },
        times: 1,
    });
    env.sync_ok().await;
    env.assert_converged();
    assert_eq!(env.mirror_ids("phone_numbers").len(), 101);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_walk_is_refused_and_the_mirror_is_untouched() {
    let env = Env::start(70).await;
    env.sync_ok().await;
    let before = env.mirror_ids("addresses");
    env.control.clear(Kind::Addresses);
    let run = env.sync_once().await;
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert!(run.stderr.contains("max_delete_fraction"), "{}", run.stderr);
    assert!(run.stderr.contains("--allow-mass-delete"), "{}", run.stderr);
    assert_eq!(env.mirror_ids("addresses"), before);
    // When the loss is real, the operator says so.
    let run = env.restsync(&["sync", "--once", "--allow-mass-delete"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(env.mirror_ids("addresses").is_empty());
}

/// The engine reports its progress to whoever drives it (and prints nothing itself): one
/// event per page written, the walk's end, and one per push.
#[tokio::test(flavor = "multi_thread")]
async fn the_engine_reports_pages_walks_and_pushes_to_its_observer() {
    use restsync::sync::events::Progress;
    use std::sync::{Arc, Mutex};
    let env = Env::start(40).await;
    env.sync_ok().await;
    let id = env.upstream_ids(Kind::PhoneNumbers)[0];
    env.exec(&format!(
        "UPDATE phone_numbers SET description = 'observed' WHERE id = {id}"
    ));
    let settings = restsync::config::load_with_env(&env.config, Default::default()).expect("config");
    let store = restsync::store::Store::open(&env.db_path).expect("store");
    let seen: Arc<Mutex<Vec<Progress>>> = Arc::default();
    let sink = seen.clone();
    let engine = restsync::sync::Engine::new(Arc::new(settings), restsync::store::AsyncStore::new(store))
        .expect("engine")
        .with_observer(Arc::new(move |p| sink.lock().expect("events").push(p)));
    let report = engine.run_cycle(restsync::sync::CycleOptions::default()).await;
    assert_eq!(report.exit_code(), 0);
    let seen = seen.lock().expect("events").clone();
    for kind in [
        restsync::resources::ResourceKind::PHONE_NUMBERS,
        restsync::resources::ResourceKind::ADDRESSES,
        restsync::resources::ResourceKind::SMART_NUMBERS,
    ] {
        let records: u64 = seen
            .iter()
            .filter_map(|p| match p {
                Progress::Page {
                    resource, records, ..
                } if *resource == kind => Some(*records),
                _ => None,
            })
            .sum();
        assert_eq!(records, 40, "{kind}: {seen:?}");
        let last = seen
            .iter()
            .rev()
            .find_map(|p| match p {
                Progress::Page {
                    resource,
                    page,
                    last_page,
                    ..
                } if *resource == kind => Some((*page, *last_page)),
                _ => None,
            })
            .expect("pages");
        assert_eq!(last.0, last.1, "{kind}: the last page reported is the last page");
        assert!(seen.contains(&Progress::WalkDone { resource: kind }));
    }
    let pushed: Vec<&Progress> = seen
        .iter()
        .filter(|p| matches!(p, Progress::Pushed { .. }))
        .collect();
    assert_eq!(
        pushed,
        vec![&Progress::Pushed {
            resource: restsync::resources::ResourceKind::PHONE_NUMBERS,
            done: true
        }]
    );
}
