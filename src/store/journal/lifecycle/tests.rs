//! The lifecycle's rules as assertions: every legal move, and the moves the trust rules
//! forbid, on an in-memory store.

use super::*;
use crate::store::journal::{self, NewEntry, Op};
use crate::store::Store;

fn store() -> Store {
    Store::open_in_memory().expect("in-memory store")
}

fn entry(conn: &Connection, op: Op) -> i64 {
    journal::insert(
        conn,
        &NewEntry {
            resource: "smart_numbers",
            op,
            local_id: Some(1),
            upstream_id: (op != Op::Create).then_some(9),
            payload: "{}",
            row_values: "[]",
        },
    )
    .expect("insert")
}

fn stage(conn: &Connection, seq: i64) -> Stage {
    journal::get(conn, seq).expect("get").expect("entry").stage
}

const PAST: &str = "2000-01-01T00:00:00.000Z";
const FUTURE: &str = "2999-01-01T00:00:00.000Z";

fn engine(conn: &Connection, seq: i64, event: Event<'_>) -> Result<Stage> {
    apply(conn, seq, &event, Actor::Engine)
}

fn is_illegal(r: Result<Stage>) -> bool {
    matches!(r, Err(StoreError::Transition(_)))
}

/// Puts a fresh create into `target` by legal moves.
fn create_in(conn: &Connection, target: Stage) -> i64 {
    let seq = entry(conn, Op::Create);
    let steps: Vec<Event<'_>> = match target {
        Stage::Queued => vec![],
        Stage::Sending => vec![Event::Send],
        Stage::Unknown => vec![
            Event::Send,
            Event::OutcomeUnknown {
                settle_at: FUTURE,
                status: None,
                error: "timeout",
            },
        ],
        Stage::Accepted => vec![Event::Send, Event::Accept],
        Stage::Unidentified => vec![
            Event::Send,
            Event::Accept,
            Event::GiveUpIdentifying {
                deadline: FUTURE,
                error: "never listed",
            },
        ],
        Stage::Undetermined => vec![
            Event::Send,
            Event::OutcomeUnknown {
                settle_at: FUTURE,
                status: None,
                error: "timeout",
            },
            Event::GiveUpIdentifying {
                deadline: FUTURE,
                error: "lookups kept failing",
            },
        ],
        Stage::Done => vec![Event::Send, Event::Succeed { upstream_id: Some(5) }],
        Stage::Failed => vec![Event::Reject {
            status: None,
            error: "bad",
        }],
        Stage::Superseded => vec![Event::Supersede],
    };
    for step in steps {
        engine(conn, seq, step).expect("setup move");
    }
    assert_eq!(stage(conn, seq), target);
    seq
}

#[test]
fn stages_round_trip_through_their_columns() {
    for s in Stage::ALL {
        let (state, outcome) = s.columns();
        assert_eq!(Stage::from_columns(state, outcome), Some(s), "{s:?}");
    }
    // A version-1 in-flight entry carried outcome 'unknown' or nothing: Sending either way.
    assert_eq!(Stage::from_columns("in_flight", None), Some(Stage::Sending));
    assert_eq!(Stage::from_columns("pending", Some("bogus")), None);
}

#[test]
fn a_plain_push_goes_queued_sending_done() {
    let s = store();
    let c = s.conn();
    let seq = entry(c, Op::Update);
    assert_eq!(engine(c, seq, Event::Send).unwrap(), Stage::Sending);
    assert_eq!(journal::get(c, seq).unwrap().unwrap().attempts, 1);
    assert_eq!(
        engine(c, seq, Event::Succeed { upstream_id: Some(9) }).unwrap(),
        Stage::Done
    );
}

#[test]
fn an_accepted_create_is_never_made_sendable_by_the_engine() {
    let s = store();
    let c = s.conn();
    for from in [Stage::Accepted, Stage::Unidentified, Stage::Undetermined] {
        let seq = create_in(c, from);
        let moves = [
            Event::Send,
            Event::NotFoundAfterSettle,
            Event::Retry {
                at: PAST,
                status: None,
                error: "x",
                max_attempts: 10,
            },
            Event::Supersede,
            Event::Abandoned { settle_at: PAST },
            Event::PersonRetry,
        ];
        for ev in moves {
            assert!(is_illegal(engine(c, seq, ev.clone())), "{from:?} -> {ev:?}");
            assert_eq!(stage(c, seq), from);
        }
        // A lookup miss keeps it where it is; a lookup hit completes it.
        engine(
            c,
            seq,
            Event::NotYetFound {
                at: FUTURE,
                note: "not listed yet",
            },
        )
        .unwrap();
        assert_eq!(stage(c, seq), from);
        assert_eq!(
            engine(
                c,
                seq,
                Event::Succeed {
                    upstream_id: Some(77)
                }
            )
            .unwrap(),
            Stage::Done
        );
    }
}

#[test]
fn only_a_person_sends_an_unidentified_create_again() {
    let s = store();
    let c = s.conn();
    let seq = create_in(c, Stage::Unidentified);
    assert_eq!(
        apply(c, seq, &Event::PersonRetry, Actor::Person).unwrap(),
        Stage::Queued
    );
    // A person's retry of an accepted create still being identified only makes its lookup
    // due now: it stays accepted.
    let accepted = create_in(c, Stage::Accepted);
    assert_eq!(
        apply(c, accepted, &Event::PersonRetry, Actor::Person).unwrap(),
        Stage::Accepted
    );
}

#[test]
fn an_unknown_outcome_is_declared_not_found_only_after_it_settles() {
    let s = store();
    let c = s.conn();
    let seq = create_in(c, Stage::Unknown);
    // settle_at is in the future: the request could still be in progress upstream.
    assert!(is_illegal(engine(c, seq, Event::NotFoundAfterSettle)));
    assert!(is_illegal(engine(c, seq, Event::Send)));
    assert_eq!(stage(c, seq), Stage::Unknown);
    c.execute(
        "UPDATE journal SET settle_at = ?1 WHERE seq = ?2",
        params![PAST, seq],
    )
    .unwrap();
    assert_eq!(engine(c, seq, Event::NotFoundAfterSettle).unwrap(), Stage::Queued);
    assert_eq!(engine(c, seq, Event::Send).unwrap(), Stage::Sending);
}

#[test]
fn giving_up_on_identification_waits_for_the_deadline() {
    let s = store();
    let c = s.conn();
    let seq = create_in(c, Stage::Accepted);
    let early = engine(
        c,
        seq,
        Event::GiveUpIdentifying {
            deadline: PAST,
            error: "x",
        },
    );
    assert!(is_illegal(early));
    assert_eq!(stage(c, seq), Stage::Accepted);
}

#[test]
fn entries_that_may_have_reached_upstream_are_never_superseded() {
    let s = store();
    let c = s.conn();
    for from in [
        Stage::Sending,
        Stage::Unknown,
        Stage::Accepted,
        Stage::Unidentified,
        Stage::Undetermined,
    ] {
        let seq = create_in(c, from);
        assert!(is_illegal(engine(c, seq, Event::Supersede)), "{from:?}");
    }
    for from in [Stage::Queued, Stage::Failed] {
        let seq = create_in(c, from);
        assert_eq!(engine(c, seq, Event::Supersede).unwrap(), Stage::Superseded);
    }
}

#[test]
fn done_and_superseded_are_final() {
    let s = store();
    let c = s.conn();
    for from in [Stage::Done, Stage::Superseded] {
        let seq = create_in(c, from);
        for ev in [
            Event::Send,
            Event::Supersede,
            Event::Accept,
            Event::Succeed { upstream_id: None },
            Event::Reject {
                status: None,
                error: "x",
            },
        ] {
            assert!(is_illegal(engine(c, seq, ev)), "{from:?}");
        }
        assert!(is_illegal(apply(c, seq, &Event::PersonRetry, Actor::Person)));
        assert_eq!(stage(c, seq), from);
    }
}

#[test]
fn retries_are_bounded_by_max_attempts() {
    let s = store();
    let c = s.conn();
    let seq = entry(c, Op::Delete);
    let retry = |c: &Connection| {
        engine(
            c,
            seq,
            Event::Retry {
                at: PAST,
                status: Some(503),
                error: "Service Unavailable",
                max_attempts: 3,
            },
        )
    };
    for _ in 0..2 {
        engine(c, seq, Event::Send).unwrap();
        assert_eq!(retry(c).unwrap(), Stage::Queued);
    }
    engine(c, seq, Event::Send).unwrap();
    assert_eq!(retry(c).unwrap(), Stage::Failed);
    let e = journal::get(c, seq).unwrap().unwrap();
    assert!(e.last_error.unwrap().contains("gave up after 3 attempts"));
}

#[test]
fn an_abandoned_create_becomes_unknown_and_an_abandoned_update_is_repeated() {
    let s = store();
    let c = s.conn();
    let create = create_in(c, Stage::Sending);
    assert_eq!(
        engine(c, create, Event::Abandoned { settle_at: FUTURE }).unwrap(),
        Stage::Unknown
    );
    assert_eq!(
        journal::get(c, create).unwrap().unwrap().settle_at.as_deref(),
        Some(FUTURE)
    );
    let update = entry(c, Op::Update);
    engine(c, update, Event::Send).unwrap();
    assert_eq!(
        engine(c, update, Event::Abandoned { settle_at: FUTURE }).unwrap(),
        Stage::Queued
    );
}

#[test]
fn a_change_upstream_already_holds_is_done_without_an_attempt() {
    let s = store();
    let c = s.conn();
    let seq = entry(c, Op::Update);
    let done = engine(c, seq, Event::AlreadyUpstream { upstream_id: Some(9) }).unwrap();
    assert_eq!(done, Stage::Done);
    assert_eq!(journal::get(c, seq).unwrap().unwrap().attempts, 0);
    // Only a queued entry: one whose request may be out is resolved by a lookup instead.
    let sending = create_in(c, Stage::Sending);
    assert!(is_illegal(engine(
        c,
        sending,
        Event::AlreadyUpstream { upstream_id: None }
    )));
}

#[test]
fn the_engine_cannot_retry_for_a_person() {
    let s = store();
    let c = s.conn();
    let seq = create_in(c, Stage::Failed);
    assert!(is_illegal(engine(c, seq, Event::PersonRetry)));
    assert!(is_illegal(engine(c, seq, Event::Send)));
}
