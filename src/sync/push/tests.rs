//! Pushes in-process, against the sandbox on 127.0.0.1: a stop that comes while a record
//! is fetched before its write starts no write.

use super::*;
use crate::sandbox::{FaultAction, Kind, ScriptedFault};
use crate::sync::pull::pull;
use crate::sync::testkit::setup;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn a_stop_during_the_fetch_before_write_starts_no_write() {
    let s = setup(10).await;
    pull(&s.ctx()).await.unwrap();
    let id = s.upstream_ids()[2];
    s.engine
        .db()
        .call(move |st| {
            st.person().execute(
                "UPDATE phone_numbers SET description = 'after the stop' WHERE id = ?1",
                [id],
            )?;
            Ok(())
        })
        .await
        .unwrap();
    let control = s.sandbox.control();
    control.push_scripted(ScriptedFault {
        method: Some("GET".into()),
        kind: Some(Kind::PhoneNumbers),
        page: None,
        action: FaultAction::Delay(800),
        times: 1,
    });
    let ctx = s.ctx();
    let pushing = tokio::spawn(async move { push(&ctx).await.map(|(stats, _)| stats) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.stop.cancel();
    let stats = pushing.await.unwrap().unwrap();
    assert_eq!(stats.updated, 0);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        control.count_requests("PUT", Kind::PhoneNumbers),
        0,
        "a write started after the stop"
    );
    // The entry waits, unsent and not counted as an attempt, for the next run.
    let (stage, attempts) = s
        .engine
        .db()
        .call(|st| {
            let e = journal::active(st.conn(), "phone_numbers")?.remove(0);
            Ok((e.stage, e.attempts))
        })
        .await
        .unwrap();
    assert_eq!((stage, attempts), (Stage::Queued, 0));
}
