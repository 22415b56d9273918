//! Pulls in-process, against the sandbox on 127.0.0.1 and an in-memory store: a complete
//! walk brings every record and removes what upstream lost (confirmed by GET), a list that
//! lost records GET still finds removes nothing, and records shifted between pages by churn
//! during a walk are walked again, never taken as removals.

use super::*;
use crate::config;
use crate::resources::ResourceKind;
use crate::sandbox::{FaultAction, Faults, Kind, Sandbox, SandboxOptions, ScriptedFault};
use crate::store::{AsyncStore, Store};
use crate::sync::{CycleOptions, Engine};
use std::sync::Arc;

struct Setup {
    sandbox: Sandbox,
    engine: Engine,
    _dir: tempfile::TempDir,
}

async fn setup(records: usize) -> Setup {
    let opts = SandboxOptions {
        records,
        ..SandboxOptions::default()
    };
    let sandbox = Sandbox::start(opts.clone()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("restsync.toml");
    std::fs::write(
        &path,
        format!(
            r#"[database]
path = "unused.db"
[upstreams.firstline]
base_url = "{}"
token = "{}"
[upstreams.plusofon]
base_url = "{}"
token = "{}"
client = "{}"
[sync]
per_page = 10
retry_base_ms = 10
request_timeout_secs = 3
"#,
            sandbox.firstline_url(),
            opts.firstline_token,
            sandbox.plusofon_url(),
            opts.plusofon_token,
            opts.plusofon_client
        ),
    )
    .unwrap();
    let settings = config::load_with_env(&path, Default::default()).unwrap();
    let db = AsyncStore::new(Store::open_in_memory().unwrap());
    let engine = Engine::new(Arc::new(settings), db).unwrap();
    Setup {
        sandbox,
        engine,
        _dir: dir,
    }
}

impl Setup {
    fn ctx(&self) -> ResourceCtx {
        self.engine
            .ctx(ResourceKind::PHONE_NUMBERS, CycleOptions::default())
            .unwrap()
    }

    async fn mirror_ids(&self) -> Vec<i64> {
        let spec = ResourceKind::PHONE_NUMBERS.spec();
        let mut ids: Vec<i64> = self
            .engine
            .db()
            .call(move |s| {
                let mut stmt = s.conn().prepare(&format!("SELECT id FROM {}", spec.table))?;
                let ids = stmt
                    .query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<i64>>>()?;
                Ok(ids)
            })
            .await
            .unwrap();
        ids.sort_unstable();
        ids
    }

    fn upstream_ids(&self) -> Vec<i64> {
        let mut ids = self.sandbox.control().ids(Kind::PhoneNumbers);
        ids.sort_unstable();
        ids
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_complete_walk_brings_every_record_and_removes_what_upstream_lost() {
    let s = setup(30).await;
    let stats = pull(&s.ctx()).await.unwrap();
    assert_eq!((stats.inserted, stats.pages, stats.removed), (30, 3, 0));
    assert_eq!(s.mirror_ids().await, s.upstream_ids());

    let control = s.sandbox.control();
    let lost = s.upstream_ids()[3..5].to_vec();
    for id in &lost {
        control.delete(Kind::PhoneNumbers, *id);
    }
    let stats = pull(&s.ctx()).await.unwrap();
    assert_eq!((stats.inserted, stats.removed), (0, 2));
    assert_eq!(s.mirror_ids().await, s.upstream_ids());
    // Each absence was confirmed by GET before the row went.
    let asked: Vec<String> = control
        .requests()
        .iter()
        .filter(|r| r.method == "GET")
        .map(|r| r.path.clone())
        .collect();
    for id in lost {
        assert!(asked.iter().any(|p| p.ends_with(&format!("/{id}"))), "{asked:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_list_that_get_contradicts_removes_nothing() {
    let s = setup(20).await;
    pull(&s.ctx()).await.unwrap();
    s.sandbox.control().set_faults(Faults {
        empty_outage: true,
        ..Faults::default()
    });
    let err = pull(&s.ctx()).await.unwrap_err();
    assert!(matches!(err, SyncError::Postponed(_)), "{err}");
    assert!(err.to_string().contains("upstream anomaly"), "{err}");
    assert_eq!(s.mirror_ids().await.len(), 20);
}

#[tokio::test(flavor = "multi_thread")]
async fn records_shifted_by_churn_during_a_walk_are_walked_again_not_removed() {
    let s = setup(30).await;
    pull(&s.ctx()).await.unwrap();
    let control = s.sandbox.control();
    // While page 2 is asked for, two records of page 1 go and three arrive in front: the
    // rest of the listing shifts, so this walk misses records that still exist.
    control.push_scripted(ScriptedFault {
        method: Some("GET".into()),
        kind: Some(Kind::PhoneNumbers),
        page: Some(2),
        action: FaultAction::ShiftPages {
            delete_earlier: 2,
            insert_before: 3,
        },
        times: 1,
    });
    let stats = pull(&s.ctx()).await.unwrap();
    assert!(stats.walks >= 2, "walked again: {stats:?}");
    assert_eq!(stats.removed, 2, "only the two records really gone: {stats:?}");
    assert_eq!(s.mirror_ids().await, s.upstream_ids());
}
