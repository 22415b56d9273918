//! The lifecycle of a journal entry: every stage it can be in and every move between them,
//! decided here and nowhere else. The push path reports what happened ([`Event`]); this
//! module checks the move is legal and makes it in one statement, so a rule such as "an
//! accepted create is never sent again" holds however the rest of the code evolves.
//!
//! ```text
//!                 insert
//!                   |                    Supersede (row changed or reverted)
//!                   v                 +-------------------------------------> Superseded
//!   Rebase  +---> Queued -------------+
//!   Retry   +---- |  ^  \__ Reject (refused before sending) ________
//!                 |  |                                              \
//!            Send |  | Retry (answered: nothing happened upstream)   v
//!                 v  |                                            Failed ---- PersonRetry --> Queued
//!               Sending -- Reject (a 422, an error body) -------->  ^
//!                 |   \                                             | Retry past sync.max_attempts
//!                 |    \-- OutcomeUnknown / Abandoned (create) ---> Unknown --+
//!                 |                                                  |  ^     | NotFoundAfterSettle
//!                 |-- Accept (2xx, no id) --> Accepted ---+          |  |     | (a lookup after the
//!                 |                              ^  |     |          +--+     |  request can no longer
//!                 |                NotYetFound --+  |     |     NotYetFound   |  be in progress)
//!                 |                                 |     |                   v
//!                 |            GiveUpIdentifying    v     |                 Queued
//!                 |                          Unidentified |
//!                 |                         (failed; only |
//!                 |                          PersonRetry  |
//!                 |                          sends again) |
//!                 |                                 |     |
//!                 +-- Succeed ----> Done <-- Succeed/Adopt (a lookup found it)
//! ```
//!
//! A Queued update or delete whose change upstream already holds (found by fetch before
//! write) goes straight to Done (AlreadyUpstream), counting no attempt.
//!
//! An Unknown whose lookups keep failing past `sync.identify_timeout_secs` becomes
//! Undetermined (`failed`, for a person); like Unknown it goes to Done when a lookup finds
//! its record, and to Queued only when a lookup after `settle_at` misses.
//!
//! Stored as the `state` column (pending, in_flight, done, failed, superseded) plus
//! `outcome` (NULL, `unknown`, `created`), so `restsync journal --state` keeps its five
//! states: Queued, Unknown and Accepted are all `pending`; Failed, Unidentified and
//! Undetermined `failed`.
//!
//! Invariants (each a unit test below):
//! - Accepted and Unidentified never become Queued or Sending except by a person's
//!   `journal retry` (PersonRetry) on an Unidentified entry.
//! - Unknown (and Undetermined) becomes Queued only after its `settle_at` has passed.
//! - Accepted becomes Unidentified, and Unknown becomes Failed, only after `accepted_at`
//!   (or `settle_at`) is older than the deadline (`sync.identify_timeout_secs`).
//! - An entry whose request may have had an effect (Sending, Unknown, Accepted,
//!   Unidentified) is never superseded: its effect upstream must be found first.
//! - Done and Superseded are final.
//! - Every retry counts an attempt; past `sync.max_attempts` the entry is Failed.

use super::super::{now_text, Result, StoreError};
use rusqlite::{params, Connection, OptionalExtension};
use std::fmt;

/// Where a journal entry is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Waiting to be sent (possibly after a backoff).
    Queued,
    /// A request is being sent. Found at start-up, it was abandoned by a process that died.
    Sending,
    /// A create whose request may have taken effect: looked up by natural key before any
    /// re-send, and a miss counts only after `settle_at`.
    Unknown,
    /// Upstream accepted a create without saying what it made; being identified. Never
    /// sent again by restsync.
    Accepted,
    Done,
    /// Upstream refused the change, or it cannot be pushed: needs a person.
    Failed,
    /// Accepted but never identified within `sync.identify_timeout_secs`: needs a person,
    /// and still never sent again unless the person says so.
    Unidentified,
    /// An unknown outcome that could not be settled within `sync.identify_timeout_secs`
    /// (its lookups kept failing): needs a person meanwhile. Never sent again unless a
    /// lookup, once lookups work again, proves it was not made (or a person says so).
    Undetermined,
    Superseded,
}

impl Stage {
    pub const ALL: [Stage; 9] = [
        Stage::Queued,
        Stage::Sending,
        Stage::Unknown,
        Stage::Accepted,
        Stage::Done,
        Stage::Failed,
        Stage::Unidentified,
        Stage::Undetermined,
        Stage::Superseded,
    ];

    /// The stored `(state, outcome)` pair.
    pub fn columns(self) -> (&'static str, Option<&'static str>) {
        match self {
            Stage::Queued => ("pending", None),
            Stage::Sending => ("in_flight", Some(OUTCOME_UNKNOWN)),
            Stage::Unknown => ("pending", Some(OUTCOME_UNKNOWN)),
            Stage::Accepted => ("pending", Some(OUTCOME_CREATED)),
            Stage::Done => ("done", None),
            Stage::Failed => ("failed", None),
            Stage::Unidentified => ("failed", Some(OUTCOME_CREATED)),
            Stage::Undetermined => ("failed", Some(OUTCOME_UNKNOWN)),
            Stage::Superseded => ("superseded", None),
        }
    }

    /// Reads a stored pair. An in-flight entry is Sending whatever its outcome says.
    pub fn from_columns(state: &str, outcome: Option<&str>) -> Option<Stage> {
        Some(match (state, outcome) {
            ("in_flight", _) => Stage::Sending,
            ("pending", None) => Stage::Queued,
            ("pending", Some(OUTCOME_UNKNOWN)) => Stage::Unknown,
            ("pending", Some(OUTCOME_CREATED)) => Stage::Accepted,
            ("done", _) => Stage::Done,
            ("failed", Some(OUTCOME_CREATED)) => Stage::Unidentified,
            ("failed", Some(OUTCOME_UNKNOWN)) => Stage::Undetermined,
            ("failed", _) => Stage::Failed,
            ("superseded", _) => Stage::Superseded,
            _ => return None,
        })
    }

    /// Upstream may hold this entry's effect already: it must be found, not re-sent.
    pub fn unresolved(self) -> bool {
        matches!(
            self,
            Stage::Sending | Stage::Unknown | Stage::Accepted | Stage::Unidentified | Stage::Undetermined
        )
    }

    pub fn is_final(self) -> bool {
        matches!(self, Stage::Done | Stage::Superseded)
    }

    /// Needs a person: shown by `status`, and the run exits 65.
    pub fn needs_human(self) -> bool {
        matches!(self, Stage::Failed | Stage::Unidentified | Stage::Undetermined)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Queued => "queued",
            Stage::Sending => "sending",
            Stage::Unknown => "outcome unknown",
            Stage::Accepted => "accepted, not yet identified",
            Stage::Done => "done",
            Stage::Failed => "failed",
            Stage::Unidentified => "accepted, never identified",
            Stage::Undetermined => "outcome never determined",
            Stage::Superseded => "superseded",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a request may have done upstream without us learning it.
pub const OUTCOME_UNKNOWN: &str = "unknown";
/// Upstream accepted a create; the record it made is not identified yet.
pub const OUTCOME_CREATED: &str = "created";

/// Who asks for a move: some moves are a person's decision only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    Engine,
    Person,
}

/// Something that happened to an entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Event<'a> {
    /// A request is about to go out (counts an attempt).
    Send,
    /// The payload, recomputed just before sending (against upstream's current record).
    Rebase { payload: &'a str, row_values: &'a str },
    /// Upstream answered success, or a lookup found the record a create made.
    Succeed { upstream_id: Option<i64> },
    /// Nothing needs sending: upstream's current record already holds the change (an
    /// earlier attempt whose answer was lost, a delete of a record already gone).
    AlreadyUpstream { upstream_id: Option<i64> },
    /// A create answered 2xx without saying what it made.
    Accept,
    /// The request may have taken effect; a lookup miss counts only after `settle_at`.
    OutcomeUnknown {
        settle_at: &'a str,
        status: Option<u16>,
        error: &'a str,
    },
    /// Found Sending at start-up: the process that sent it is gone. A create becomes
    /// Unknown (settling at `settle_at`); an update or delete is safe to repeat.
    Abandoned { settle_at: &'a str },
    /// Answered in a way that proves nothing happened (429, connect refused, a 5xx to an
    /// update or delete, a lookup that failed); next try at `at`. Past `max_attempts`
    /// attempts the entry fails with this error.
    Retry {
        at: &'a str,
        status: Option<u16>,
        error: &'a str,
        max_attempts: u32,
    },
    /// Upstream refused, or the change cannot be pushed as it stands.
    Reject { status: Option<u16>, error: &'a str },
    /// A lookup did not find the created record yet; look again at `at`.
    NotYetFound { at: &'a str, note: &'a str },
    /// A lookup after `settle_at` did not find it: the create never took effect.
    NotFoundAfterSettle,
    /// Accepted (or settled, for an unknown outcome) before `deadline` and still not found
    /// or not lookable: a person must look. An accepted create becomes Unidentified, an
    /// unknown one Failed; neither is sent again without a person.
    GiveUpIdentifying { deadline: &'a str, error: &'a str },
    /// The row changed again, was reverted, or the change was given up.
    Supersede,
    /// `restsync journal retry`: make a failed entry sendable, an unresolved one due now.
    PersonRetry,
}

impl Event<'_> {
    fn name(&self) -> &'static str {
        match self {
            Event::Send => "send",
            Event::Rebase { .. } => "rebase",
            Event::Succeed { .. } => "succeed",
            Event::AlreadyUpstream { .. } => "already-upstream",
            Event::Accept => "accept",
            Event::OutcomeUnknown { .. } => "outcome-unknown",
            Event::Abandoned { .. } => "abandoned",
            Event::Retry { .. } => "retry",
            Event::Reject { .. } => "reject",
            Event::NotYetFound { .. } => "not-yet-found",
            Event::NotFoundAfterSettle => "not-found-after-settle",
            Event::GiveUpIdentifying { .. } => "give-up-identifying",
            Event::Supersede => "supersede",
            Event::PersonRetry => "person-retry",
        }
    }

    /// The stages this event may move an entry from, for `actor`.
    pub fn allowed_from(&self, actor: Actor) -> &'static [Stage] {
        use Stage::*;
        match (self, actor) {
            (Event::PersonRetry, Actor::Person) => {
                &[Queued, Failed, Unknown, Accepted, Unidentified, Undetermined]
            }
            (Event::PersonRetry, Actor::Engine) => &[],
            (Event::Supersede, Actor::Person) => &[Queued, Failed, Unidentified, Undetermined],
            (_, Actor::Person) => &[],
            (Event::Send, _) => &[Queued],
            (Event::Rebase { .. }, _) => &[Queued],
            (Event::Succeed { .. }, _) => &[Sending, Unknown, Accepted, Unidentified, Undetermined],
            (Event::AlreadyUpstream { .. }, _) => &[Queued],
            (Event::Accept, _) => &[Sending, Unknown],
            (Event::OutcomeUnknown { .. }, _) => &[Sending],
            (Event::Abandoned { .. }, _) => &[Sending],
            (Event::Retry { .. }, _) => &[Sending, Queued],
            (Event::Reject { .. }, _) => &[Queued, Sending, Failed],
            (Event::NotYetFound { .. }, _) => &[Unknown, Accepted, Unidentified, Undetermined],
            (Event::NotFoundAfterSettle, _) => &[Unknown, Undetermined],
            (Event::GiveUpIdentifying { .. }, _) => &[Accepted, Unknown],
            (Event::Supersede, _) => &[Queued, Failed],
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("journal entry {seq}: {event} is not allowed from {from}")]
pub struct IllegalTransition {
    pub seq: i64,
    pub event: &'static str,
    pub from: String,
}

fn stage_of(conn: &Connection, seq: i64) -> Result<Option<Stage>> {
    let row: Option<(String, Option<String>)> = conn
        .prepare_cached("SELECT state, outcome FROM journal WHERE seq = ?1")?
        .query_row([seq], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(row.and_then(|(s, o)| Stage::from_columns(&s, o.as_deref())))
}

/// The SQL condition "the entry is in one of `stages`".
fn in_stages(stages: &[Stage]) -> String {
    let terms: Vec<String> = stages
        .iter()
        .map(|s| match s.columns() {
            ("in_flight", _) => "state = 'in_flight'".to_string(),
            (state, None) if matches!(s, Stage::Done | Stage::Superseded) => format!("state = '{state}'"),
            (state, None) => format!("(state = '{state}' AND outcome IS NULL)"),
            (state, Some(o)) => format!("(state = '{state}' AND outcome = '{o}')"),
        })
        .collect();
    if terms.is_empty() {
        "0".into()
    } else {
        format!("({})", terms.join(" OR "))
    }
}

/// Moves entry `seq` on `event`, if that is legal from where it is; returns the new stage.
/// One statement, so the check and the move cannot be separated by another writer.
pub fn apply(conn: &Connection, seq: i64, event: &Event<'_>, actor: Actor) -> Result<Stage> {
    let now = now_text();
    let from = in_stages(event.allowed_from(actor));
    let changed = match event {
        Event::Send => conn.execute(
            &format!(
                "UPDATE journal SET state = 'in_flight', outcome = 'unknown', attempts = attempts + 1, \
                 updated_at = ?2 WHERE seq = ?1 AND {from}"
            ),
            params![seq, now],
        )?,
        Event::Rebase { payload, row_values } => conn.execute(
            &format!(
                "UPDATE journal SET payload = ?2, row_values = ?3, updated_at = ?4 WHERE seq = ?1 AND {from}"
            ),
            params![seq, payload, row_values, now],
        )?,
        Event::Succeed { upstream_id } => conn.execute(
            &format!(
                "UPDATE journal SET state = 'done', outcome = NULL, upstream_id = coalesce(?2, upstream_id), \
                 next_attempt_at = NULL, updated_at = ?3 WHERE seq = ?1 AND {from}"
            ),
            params![seq, upstream_id, now],
        )?,
        Event::AlreadyUpstream { upstream_id } => conn.execute(
            &format!(
                "UPDATE journal SET state = 'done', outcome = NULL, upstream_id = coalesce(?2, upstream_id), \
                 next_attempt_at = NULL, last_error = NULL, updated_at = ?3 WHERE seq = ?1 AND {from}"
            ),
            params![seq, upstream_id, now],
        )?,
        Event::Accept => conn.execute(
            &format!(
                "UPDATE journal SET state = 'pending', outcome = 'created', accepted_at = ?2, next_attempt_at = ?2, \
                 last_error = 'accepted upstream; identifying the created record', updated_at = ?2 \
                 WHERE seq = ?1 AND {from}"
            ),
            params![seq, now],
        )?,
        Event::OutcomeUnknown {
            settle_at,
            status,
            error,
        } => conn.execute(
            &format!(
                "UPDATE journal SET state = 'pending', outcome = 'unknown', settle_at = ?2, next_attempt_at = NULL, \
                 last_status = ?3, last_error = ?4, updated_at = ?5 WHERE seq = ?1 AND {from}"
            ),
            params![seq, settle_at, status, error, now],
        )?,
        Event::Abandoned { settle_at } => conn.execute(
            &format!(
                "UPDATE journal SET state = 'pending', \
                 outcome = CASE op WHEN 'create' THEN 'unknown' ELSE NULL END, \
                 settle_at = CASE op WHEN 'create' THEN ?2 ELSE NULL END, next_attempt_at = NULL, \
                 last_error = coalesce(last_error, 'interrupted before the answer came'), updated_at = ?3 \
                 WHERE seq = ?1 AND {from}"
            ),
            params![seq, settle_at, now],
        )?,
        Event::Retry {
            at,
            status,
            error,
            max_attempts,
        } => conn.execute(
            &format!(
                "UPDATE journal SET outcome = NULL, \
                 state = CASE WHEN attempts >= ?5 THEN 'failed' ELSE 'pending' END, \
                 next_attempt_at = CASE WHEN attempts >= ?5 THEN NULL ELSE ?2 END, \
                 last_status = ?3, \
                 last_error = CASE WHEN attempts >= ?5 \
                   THEN 'gave up after ' || attempts || ' attempts (sync.max_attempts): ' || ?4 ELSE ?4 END, \
                 updated_at = ?6 WHERE seq = ?1 AND {from}"
            ),
            params![seq, at, status, error, max_attempts, now],
        )?,
        Event::Reject { status, error } => conn.execute(
            &format!(
                "UPDATE journal SET state = 'failed', outcome = NULL, last_status = ?2, last_error = ?3, \
                 next_attempt_at = NULL, updated_at = ?4 WHERE seq = ?1 AND {from}"
            ),
            params![seq, status, error, now],
        )?,
        Event::NotYetFound { at, note } => conn.execute(
            &format!(
                "UPDATE journal SET next_attempt_at = ?2, last_error = ?3, updated_at = ?4 WHERE seq = ?1 AND {from}"
            ),
            params![seq, at, note, now],
        )?,
        Event::NotFoundAfterSettle => conn.execute(
            &format!(
                "UPDATE journal SET state = 'pending', outcome = NULL, next_attempt_at = NULL, \
                 last_error = 'not found upstream once the earlier request could no longer be in progress; safe to send', \
                 updated_at = ?2 WHERE seq = ?1 AND {from} AND coalesce(settle_at, '') <= ?2"
            ),
            params![seq, now],
        )?,
        Event::GiveUpIdentifying { deadline, error } => conn.execute(
            &format!(
                "UPDATE journal SET state = 'failed', next_attempt_at = NULL, last_error = ?3, updated_at = ?4 \
                 WHERE seq = ?1 AND {from} AND coalesce(accepted_at, settle_at, updated_at) <= ?2"
            ),
            params![seq, deadline, error, now],
        )?,
        Event::Supersede => conn.execute(
            &format!(
                "UPDATE journal SET state = 'superseded', outcome = NULL, next_attempt_at = NULL, updated_at = ?2 \
                 WHERE seq = ?1 AND {from}"
            ),
            params![seq, now],
        )?,
        Event::PersonRetry => conn.execute(
            &format!(
                "UPDATE journal SET \
                 outcome = CASE WHEN state = 'failed' THEN NULL ELSE outcome END, \
                 accepted_at = CASE WHEN state = 'failed' THEN NULL ELSE accepted_at END, \
                 state = 'pending', attempts = 0, next_attempt_at = NULL, updated_at = ?2 \
                 WHERE seq = ?1 AND {from}"
            ),
            params![seq, now],
        )?,
    };
    if changed == 0 {
        let from = match stage_of(conn, seq)? {
            Some(stage) => stage.to_string(),
            None => "nowhere (no such entry)".into(),
        };
        return Err(StoreError::Transition(IllegalTransition {
            seq,
            event: event.name(),
            from,
        }));
    }
    stage_of(conn, seq)?.ok_or(StoreError::Corrupt {
        seq,
        message: "entry vanished during a transition".into(),
    })
}

#[cfg(test)]
mod tests;
