//! Pulls in-process, against the sandbox on 127.0.0.1 and an in-memory store: a complete
//! walk brings every record and removes what upstream lost (confirmed by GET), a list that
//! lost records GET still finds removes nothing, and records shifted between pages by churn
//! during a walk are walked again, never taken as removals.

use super::*;
use crate::sandbox::{FaultAction, Faults, Kind, ScriptedFault};
use crate::sync::testkit::setup;

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
