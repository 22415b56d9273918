//! The change journal: durable records of every push, written before the request is sent.
//! How an entry moves from stage to stage is decided in [`lifecycle`] alone.

pub mod lifecycle;

pub use lifecycle::{Actor, Event, IllegalTransition, Stage, OUTCOME_CREATED, OUTCOME_UNKNOWN};

use super::tracking;
use super::{now_text, Result, StoreError};
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    Update,
    Delete,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Update => "update",
            Op::Delete => "delete",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Op {
    type Err = String;
    fn from_str(s: &str) -> Result<Op, String> {
        match s {
            "create" => Ok(Op::Create),
            "update" => Ok(Op::Update),
            "delete" => Ok(Op::Delete),
            other => Err(format!("unknown operation {other:?}")),
        }
    }
}

/// The value of the journal's `state` column (what `restsync journal --state` filters on).
/// An entry's lifecycle is its [`Stage`], which this and `outcome` together store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredState {
    Pending,
    InFlight,
    Done,
    Failed,
    Superseded,
}

impl StoredState {
    pub const ALL: [StoredState; 5] = [
        StoredState::Pending,
        StoredState::InFlight,
        StoredState::Done,
        StoredState::Failed,
        StoredState::Superseded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StoredState::Pending => "pending",
            StoredState::InFlight => "in_flight",
            StoredState::Done => "done",
            StoredState::Failed => "failed",
            StoredState::Superseded => "superseded",
        }
    }
}

impl fmt::Display for StoredState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StoredState {
    type Err = String;
    fn from_str(s: &str) -> Result<StoredState, String> {
        StoredState::ALL
            .into_iter()
            .find(|st| st.as_str() == s || (s == "in-flight" && *st == StoredState::InFlight))
            .ok_or_else(|| {
                format!("unknown journal state {s:?} (pending, in_flight, done, failed, superseded)")
            })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub seq: i64,
    pub resource: String,
    pub op: Op,
    pub local_id: Option<i64>,
    pub upstream_id: Option<i64>,
    /// JSON request body.
    pub payload: String,
    /// JSON array of the mirror row's values the payload was computed from.
    pub row_values: String,
    pub state: StoredState,
    /// Where the entry is in its lifecycle (`state` and `outcome` together).
    pub stage: Stage,
    pub outcome: Option<String>,
    pub attempts: i64,
    pub next_attempt_at: Option<String>,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// Unknown outcome: a lookup miss counts only after this time.
    pub settle_at: Option<String>,
    /// When upstream accepted a create it did not identify.
    pub accepted_at: Option<String>,
}

pub struct NewEntry<'a> {
    pub resource: &'a str,
    pub op: Op,
    pub local_id: Option<i64>,
    pub upstream_id: Option<i64>,
    pub payload: &'a str,
    pub row_values: &'a str,
}

const COLUMNS: &str = "seq, resource, op, local_id, upstream_id, payload, row_values, state, outcome, \
    attempts, next_attempt_at, last_status, last_error, created_at, updated_at, settle_at, accepted_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<(Entry, String, String)> {
    let op: String = r.get(2)?;
    let state: String = r.get(7)?;
    Ok((
        Entry {
            seq: r.get(0)?,
            resource: r.get(1)?,
            op: Op::Create,
            local_id: r.get(3)?,
            upstream_id: r.get(4)?,
            payload: r.get(5)?,
            row_values: r.get(6)?,
            state: StoredState::Pending,
            stage: Stage::Queued,
            outcome: r.get(8)?,
            attempts: r.get(9)?,
            next_attempt_at: r.get(10)?,
            last_status: r.get(11)?,
            last_error: r.get(12)?,
            created_at: r.get(13)?,
            updated_at: r.get(14)?,
            settle_at: r.get(15)?,
            accepted_at: r.get(16)?,
        },
        op,
        state,
    ))
}

fn finish(raw: (Entry, String, String)) -> Result<Entry> {
    let (mut e, op, state) = raw;
    e.op = op
        .parse()
        .map_err(|message| StoreError::Corrupt { seq: e.seq, message })?;
    e.state = state
        .parse()
        .map_err(|message| StoreError::Corrupt { seq: e.seq, message })?;
    e.stage = Stage::from_columns(&state, e.outcome.as_deref()).ok_or_else(|| StoreError::Corrupt {
        seq: e.seq,
        message: format!("unknown outcome {:?} for state {state}", e.outcome),
    })?;
    Ok(e)
}

fn query(conn: &Connection, where_clause: &str, params: impl rusqlite::Params) -> Result<Vec<Entry>> {
    let q = format!("SELECT {COLUMNS} FROM journal {where_clause}");
    let mut stmt = conn.prepare_cached(&q)?;
    let rows = stmt.query_map(params, from_row)?;
    rows.map(|r| finish(r?)).collect()
}

pub fn insert(conn: &Connection, e: &NewEntry<'_>) -> Result<i64> {
    let now = now_text();
    conn.prepare_cached(
        "INSERT INTO journal (resource, op, local_id, upstream_id, payload, row_values, state, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?7)",
    )?
    .execute(params![e.resource, e.op.as_str(), e.local_id, e.upstream_id, e.payload, e.row_values, now])?;
    Ok(conn.last_insert_rowid())
}

pub fn get(conn: &Connection, seq: i64) -> Result<Option<Entry>> {
    let q = format!("SELECT {COLUMNS} FROM journal WHERE seq = ?1");
    let raw = conn.prepare_cached(&q)?.query_row([seq], from_row).optional()?;
    raw.map(finish).transpose()
}

/// Entries still to be resolved (pending, in flight or failed) for a resource, oldest first.
pub fn active(conn: &Connection, resource: &str) -> Result<Vec<Entry>> {
    query(
        conn,
        "WHERE resource = ?1 AND state IN ('pending', 'in_flight', 'failed') ORDER BY seq",
        [resource],
    )
}

/// Active entries about the given rows (by `local_id`) or records (by `upstream_id`),
/// oldest first: O(rows) index lookups, for a push pass that looks only at edited rows.
pub fn active_about(
    conn: &Connection,
    resource: &str,
    local_ids: impl IntoIterator<Item = i64>,
    ids: impl IntoIterator<Item = i64>,
) -> Result<Vec<Entry>> {
    let mut found: std::collections::BTreeMap<i64, Entry> = Default::default();
    let active = "state IN ('pending', 'in_flight', 'failed')";
    for local_id in local_ids {
        for e in query(
            conn,
            &format!("WHERE resource = ?1 AND local_id = ?2 AND {active}"),
            params![resource, local_id],
        )? {
            found.insert(e.seq, e);
        }
    }
    for id in ids {
        for e in query(
            conn,
            &format!("WHERE resource = ?1 AND upstream_id = ?2 AND {active}"),
            params![resource, id],
        )? {
            found.insert(e.seq, e);
        }
    }
    Ok(found.into_values().collect())
}

/// Up to `limit` queued entries of a resource after `after_seq` that are due at `now`
/// (every queued one when `every`): a push pass sends them page by page, so its memory
/// does not grow with the number of changes.
pub fn due(
    conn: &Connection,
    resource: &str,
    after_seq: i64,
    now: &str,
    every: bool,
    limit: usize,
) -> Result<Vec<Entry>> {
    query(
        conn,
        "WHERE resource = ?1 AND state = 'pending' AND outcome IS NULL AND seq > ?2 \
         AND (?3 OR next_attempt_at IS NULL OR next_attempt_at <= ?4) ORDER BY seq LIMIT ?5",
        params![resource, after_seq, every, now, limit as i64],
    )
}

/// Active entries of a resource by stage.
pub fn stage_counts(conn: &Connection, resource: &str) -> Result<std::collections::HashMap<Stage, usize>> {
    let mut stmt = conn.prepare_cached(
        "SELECT state, outcome, count(*) FROM journal WHERE resource = ?1 \
         AND state IN ('pending', 'in_flight', 'failed') GROUP BY state, outcome",
    )?;
    let rows = stmt.query_map([resource], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Option<String>>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    let mut out = std::collections::HashMap::new();
    for row in rows {
        let (state, outcome, n) = row?;
        if let Some(stage) = Stage::from_columns(&state, outcome.as_deref()) {
            *out.entry(stage).or_insert(0) += n as usize;
        }
    }
    Ok(out)
}

/// The first `limit` entries of a resource that need a person.
pub fn first_failed(conn: &Connection, resource: &str, limit: usize) -> Result<Vec<Entry>> {
    query(
        conn,
        "WHERE resource = ?1 AND state = 'failed' ORDER BY seq LIMIT ?2",
        params![resource, limit as i64],
    )
}

/// Whether a resource has any active entry (a cheap test for an idle pass).
pub fn has_active(conn: &Connection, resource: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS(SELECT 1 FROM journal WHERE resource = ?1 AND state IN ('pending', 'in_flight', 'failed'))",
        )?
        .query_row([resource], |r| r.get(0))?)
}

/// Records the request timeout an entry is being sent with (see `sent_timeout`).
pub fn set_sent_timeout(conn: &Connection, seq: i64, timeout: std::time::Duration) -> Result<()> {
    conn.prepare_cached("UPDATE journal SET sent_timeout_ms = ?2 WHERE seq = ?1")?
        .execute(params![seq, timeout.as_millis() as i64])?;
    Ok(())
}

/// The request timeout entry `seq` was last sent with, if recorded: a request cut off by a
/// crash may run upstream that long, whatever the configuration says after the restart.
pub fn sent_timeout(conn: &Connection, seq: i64) -> Result<Option<std::time::Duration>> {
    let ms: Option<i64> = conn
        .prepare_cached("SELECT sent_timeout_ms FROM journal WHERE seq = ?1")?
        .query_row([seq], |r| r.get(0))
        .optional()?
        .flatten();
    Ok(ms.map(|ms| std::time::Duration::from_millis(ms.max(0) as u64)))
}

/// In the `last_error` of a change refused because a row now holds another row's record
/// (ids moved between rows): only a person can say which record the row is.
pub const IDS_MOVED: &str = "ids cannot move between rows";

/// How a delete held by the mass-delete guard starts its `last_error`.
pub const HELD_BY_GUARD: &str = "held by the mass-delete guard";

/// Deletes waiting to be sent, those the guard holds included: what the guard weighs. (Held
/// ones count, so the guard does not lift by itself when the resource grows meanwhile.)
pub fn waiting_deletes(conn: &Connection, resource: &str) -> Result<usize> {
    let n: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM journal WHERE resource = ?1 AND op = 'delete' AND \
             ((state = 'pending' AND outcome IS NULL) OR (state = 'failed' AND attempts = 0 AND last_error LIKE ?2 || '%'))",
        )?
        .query_row(params![resource, HELD_BY_GUARD], |r| r.get(0))?;
    Ok(n as usize)
}

/// The guard refused the resource's waiting deletes: they are held (failed, for a person)
/// until `sync --once --allow-mass-delete` or `journal drop`. Returns how many were held now.
pub fn hold_deletes(conn: &Connection, resource: &str, why: &str) -> Result<usize> {
    let seqs: Vec<i64> = conn
        .prepare_cached(
            "SELECT seq FROM journal WHERE resource = ?1 AND op = 'delete' AND state = 'pending' AND outcome IS NULL",
        )?
        .query_map([resource], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let error = format!("{HELD_BY_GUARD}: {why}");
    for seq in &seqs {
        advance(
            conn,
            *seq,
            &Event::Reject {
                status: None,
                error: &error,
            },
        )?;
    }
    Ok(seqs.len())
}

/// A person allowed the mass delete (`--allow-mass-delete`): held deletes are sendable again.
pub fn release_held_deletes(conn: &Connection, resource: &str) -> Result<usize> {
    let seqs: Vec<i64> = conn
        .prepare_cached(
            "SELECT seq FROM journal WHERE resource = ?1 AND op = 'delete' AND state = 'failed' \
             AND attempts = 0 AND last_error LIKE ?2 || '%'",
        )?
        .query_map(params![resource, HELD_BY_GUARD], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for seq in &seqs {
        lifecycle::apply(conn, *seq, &Event::PersonRetry, Actor::Person)?;
    }
    Ok(seqs.len())
}

pub fn list(conn: &Connection, state: Option<StoredState>, limit: i64) -> Result<Vec<Entry>> {
    match state {
        Some(s) => query(
            conn,
            "WHERE state = ?1 ORDER BY seq DESC LIMIT ?2",
            params![s.as_str(), limit],
        ),
        None => query(conn, "ORDER BY seq DESC LIMIT ?1", [limit]),
    }
}

/// `restsync journal retry`: failed entries become sendable again (an accepted create that
/// was never identified is sent again only this way); unresolved ones are looked up now.
/// Returns how many entries changed.
pub fn retry(conn: &Connection, seq: Option<i64>) -> Result<usize> {
    let seqs: Vec<i64> = match seq {
        Some(seq) => vec![seq],
        // Deletes the mass-delete guard holds stay held: only `--allow-mass-delete` or a
        // drop decides them.
        None => conn
            .prepare(
                "SELECT seq FROM journal WHERE state IN ('failed', 'pending') \
                 AND NOT (op = 'delete' AND state = 'failed' AND attempts = 0 AND coalesce(last_error, '') LIKE ?1 || '%') \
                 ORDER BY seq",
            )?
            .query_map([HELD_BY_GUARD], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?,
    };
    let mut n = 0;
    for seq in seqs {
        match lifecycle::apply(conn, seq, &Event::PersonRetry, Actor::Person) {
            Ok(_) => {
                n += 1;
                // The next pass looks at the row again: a change that cannot be pushed as it
                // stands is refused again there, before any request.
                if let Some(e) = get(conn, seq)? {
                    let mark = match (e.op, e.local_id, e.upstream_id) {
                        (Op::Create, Some(l), _) | (Op::Update, Some(l), _) => Some(tracking::Mark::Row(l)),
                        (_, _, Some(id)) => Some(tracking::Mark::Upstream(id)),
                        _ => None,
                    };
                    if let Some(m) = mark {
                        tracking::mark(conn, &e.resource, m)?;
                    }
                }
            }
            Err(StoreError::Transition(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Deletes finished entries last touched before `cutoff`. Returns how many.
pub fn purge_finished(conn: &Connection, cutoff: &str) -> Result<usize> {
    Ok(conn.execute(
        "DELETE FROM journal WHERE state IN ('done', 'superseded') AND updated_at < ?1",
        [cutoff],
    )?)
}

/// Entry counts by state for a resource.
pub fn counts(conn: &Connection, resource: &str) -> Result<Vec<(String, i64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT state, count(*) FROM journal WHERE resource = ?1 GROUP BY state ORDER BY state",
    )?;
    let rows = stmt.query_map([resource], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Whether a local row was ever the subject of a create entry (a row the user inserted,
/// as opposed to one a walk copied in).
pub fn has_create_entry(conn: &Connection, resource: &str, local_id: i64) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS(SELECT 1 FROM journal WHERE resource = ?1 AND op = 'create' AND local_id = ?2)",
        )?
        .query_row(params![resource, local_id], |r| r.get(0))?)
}

pub fn failed(conn: &Connection, resource: &str) -> Result<Vec<Entry>> {
    query(
        conn,
        "WHERE resource = ?1 AND state = 'failed' ORDER BY seq",
        [resource],
    )
}

/// When the earliest pending entry of a resource becomes due (None: nothing waits).
pub fn next_due(conn: &Connection, resource: &str) -> Result<Option<String>> {
    let due: Option<String> = conn
        .prepare_cached(
            "SELECT min(coalesce(next_attempt_at, '')) FROM journal WHERE resource = ?1 AND state = 'pending'",
        )?
        .query_row([resource], |r| r.get(0))?;
    Ok(due)
}

/// Row values of update entries for a record that were sent (attempts > 0), are not done,
/// and were touched after its base snapshot was written: pushes whose effect may be
/// upstream without the base knowing it yet.
pub fn unsettled_update_values(
    conn: &Connection,
    resource: &str,
    base_table: &str,
    id: i64,
) -> Result<Vec<String>> {
    let q = format!(
        "SELECT row_values FROM journal WHERE resource = ?1 AND op = 'update' AND upstream_id = ?2 \
         AND attempts > 0 AND state <> 'done' AND updated_at >= (SELECT synced_at FROM {base_table} WHERE id = ?2)"
    );
    let rows = conn
        .prepare_cached(&q)?
        .query_map(params![resource, id], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

/// Moves an entry on something the engine saw (see [`lifecycle`] for what is legal).
pub fn advance(conn: &Connection, seq: i64, event: &Event<'_>) -> Result<Stage> {
    lifecycle::apply(conn, seq, event, Actor::Engine)
}
