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

/// A create cut off by a crash settles by the timeout it was sent with: a restart whose
/// configuration shortened `request_timeout_secs` must not look it up (and re-send it)
/// while the old request may still run upstream.
#[tokio::test(flavor = "multi_thread")]
async fn an_abandoned_create_settles_by_the_timeout_it_was_sent_with() {
    let s = setup(5).await;
    let seq = s
        .engine
        .db()
        .call(|st| {
            st.write(|tx| {
                let seq = journal::insert(
                    tx,
                    &journal::NewEntry {
                        resource: "phone_numbers",
                        op: Op::Create,
                        local_id: Some(1),
                        upstream_id: None,
                        payload: "{}",
                        row_values: "{}",
                    },
                )?;
                journal::advance(tx, seq, &Event::Send)?;
                // Sent by a process whose timeout was a minute.
                journal::set_sent_timeout(tx, seq, Duration::from_secs(60))?;
                Ok(seq)
            })
        })
        .await
        .unwrap();
    let ctx = s.ctx();
    assert_eq!(ctx.settings.sync.request_timeout, Duration::from_secs(3));
    resolve::claim_abandoned(&ctx).await.unwrap();
    let entry = s
        .engine
        .db()
        .call(move |st| Ok(journal::get(st.conn(), seq)?.unwrap()))
        .await
        .unwrap();
    assert_eq!(entry.stage, Stage::Unknown);
    let settle = chrono::DateTime::parse_from_rfc3339(entry.settle_at.as_deref().unwrap()).unwrap();
    let lag = chrono::Duration::from_std(ctx.settings.sync.list_lag).unwrap();
    assert!(
        settle > chrono::Utc::now() + chrono::Duration::seconds(55) + lag,
        "settles at {settle}, by today's 3 s timeout"
    );
}

/// An id typed over while the row's update is in flight: the answer's write-back keeps the
/// record linked to its row, so the next pass reads an id edit (nothing sent), not a
/// delete of the record.
#[tokio::test(flavor = "multi_thread")]
async fn an_id_edited_while_its_update_is_in_flight_deletes_nothing() {
    let s = setup(10).await;
    pull(&s.ctx()).await.unwrap();
    let id = s.upstream_ids()[3];
    s.person(format!(
        "UPDATE phone_numbers SET description = 'in flight' WHERE id = {id}"
    ))
    .await;
    let control = s.sandbox.control();
    control.push_scripted(ScriptedFault {
        method: Some("PUT".into()),
        kind: Some(Kind::PhoneNumbers),
        page: None,
        action: FaultAction::Delay(800),
        times: 1,
    });
    let ctx = s.ctx();
    let pushing = tokio::spawn(async move { push(&ctx).await.map(|(stats, _)| stats) });
    tokio::time::sleep(Duration::from_millis(400)).await;
    s.person(format!("UPDATE phone_numbers SET id = 66666 WHERE id = {id}"))
        .await;
    assert_eq!(pushing.await.unwrap().unwrap().updated, 1);
    let (stats, _) = push(&s.ctx()).await.unwrap();
    assert_eq!((stats.deleted, stats.created), (0, 0), "{stats:?}");
    assert_eq!(control.count_requests("DELETE", Kind::PhoneNumbers), 0);
    assert!(
        control.get(Kind::PhoneNumbers, id).is_some(),
        "the record was deleted"
    );
}

/// An update a gateway answered 504 may still land later: nothing more is sent for the
/// record until it cannot, so a newer edit is not overwritten by the older request
/// arriving last.
#[tokio::test(flavor = "multi_thread")]
async fn a_newer_edit_is_not_overtaken_by_an_update_a_gateway_answered_504() {
    let s = setup(10).await;
    pull(&s.ctx()).await.unwrap();
    let id = s.upstream_ids()[1];
    let control = s.sandbox.control();
    control.push_scripted(ScriptedFault {
        method: Some("PUT".into()),
        kind: Some(Kind::PhoneNumbers),
        page: None,
        action: FaultAction::GatewayTimeout(1500),
        times: 1,
    });
    s.person(format!(
        "UPDATE phone_numbers SET description = 'older' WHERE id = {id}"
    ))
    .await;
    push(&s.ctx()).await.unwrap();
    s.person(format!(
        "UPDATE phone_numbers SET description = 'newer' WHERE id = {id}"
    ))
    .await;
    push(&s.ctx()).await.unwrap();
    // Past any late arrival of the first request.
    tokio::time::sleep(Duration::from_millis(1700)).await;
    assert_eq!(
        control.get(Kind::PhoneNumbers, id).unwrap()["description"],
        "newer"
    );
}

/// An update cut off by a crash may still land: the next pass sends nothing for the
/// resource until it cannot, so the newer edit made meanwhile is not overtaken by it.
#[tokio::test(flavor = "multi_thread")]
async fn a_newer_edit_waits_out_an_update_cut_off_by_a_crash() {
    let s = setup(10).await;
    pull(&s.ctx()).await.unwrap();
    let id = s.upstream_ids()[2];
    s.engine
        .db()
        .call(move |st| {
            let local_id: i64 =
                st.conn()
                    .query_row("SELECT local_id FROM phone_numbers WHERE id = ?1", [id], |r| {
                        r.get(0)
                    })?;
            st.write(|tx| {
                let seq = journal::insert(
                    tx,
                    &journal::NewEntry {
                        resource: "phone_numbers",
                        op: Op::Update,
                        local_id: Some(local_id),
                        upstream_id: Some(id),
                        payload: r#"{"description":"older"}"#,
                        row_values: "{}",
                    },
                )?;
                journal::advance(tx, seq, &Event::Send)?;
                journal::set_sent_timeout(tx, seq, Duration::from_secs(2))?;
                Ok(())
            })?;
            st.person().execute(
                "UPDATE phone_numbers SET description = 'newer' WHERE id = ?1",
                [id],
            )?;
            Ok(())
        })
        .await
        .unwrap();
    let started = std::time::Instant::now();
    push(&s.ctx()).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "sent after {:?}, while the cut-off request could still land",
        started.elapsed()
    );
    assert_eq!(
        s.sandbox.control().get(Kind::PhoneNumbers, id).unwrap()["description"],
        "newer"
    );
}
