//! Reliability: the real `restsync` binary against the sandbox under random and scripted
//! faults, lost answers, kills at many points, pages shifting mid-walk, an empty-list outage,
//! garbage answers and a database locked by another writer. Each test ends with the mirror
//! and the sandbox holding the same records, every local change applied upstream exactly
//! once (created records counted by content) and nothing the user wrote lost.

use crate::common::{Env, Run};
use restsync::sandbox::{FaultAction, Faults, Kind, ScriptedFault};
use rusqlite::{params, Connection, TransactionBehavior};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, Instant};

const ALL: [Kind; 3] = [Kind::PhoneNumbers, Kind::Addresses, Kind::SmartNumbers];
/// Plusofon users the sandbox knows.
const USERS: [i64; 6] = [12, 15, 40, 41, 42, 43];

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
fn rows(env: &Env, sql: &str, args: &[&dyn rusqlite::ToSql]) -> Vec<Value> {
    let conn = env.db();
    let mut stmt = conn.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let names: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
    stmt.query_map(args, |r| {
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

/// A run may fail, but never by crashing.
fn assert_no_panic(run: &Run, what: &str) {
    assert_ne!(run.code, 101, "{what}: restsync panicked:\n{}", run.stderr);
    assert!(
        !run.stderr.contains("panicked"),
        "{what}: a panic was logged:\n{}",
        run.stderr
    );
}

fn assert_integrity(env: &Env) {
    let verdict: String = env
        .db()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(verdict, "ok", "the mirror database is corrupt");
}

/// Runs `sync --once` until it exits 0; every other exit must be 75. Returns the exit codes.
async fn sync_until_ok(env: &Env, max_runs: usize, what: &str) -> Vec<i32> {
    let mut codes = Vec::new();
    let mut last = String::new();
    for n in 1..=max_runs {
        let run = env.sync_once().await;
        assert_no_panic(&run, what);
        codes.push(run.code);
        last = run.stderr.clone();
        if run.code == 0 {
            return codes;
        }
        assert_eq!(
            run.code, 75,
            "{what}: run {n} did not finish, so it must exit 75 (codes so far {codes:?}):\n{}",
            run.stderr
        );
        // A create interrupted mid-request is resolved only once that request can no
        // longer be in progress (request_timeout_secs 3 + margin): runs are spaced out, as
        // a timer would space them.
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
    panic!(
        "{what}: sync --once did not exit 0 within {max_runs} runs: {codes:?}; the last run said:\n{last}"
    );
}

/// One `sync --once` under transient faults: no panic, exit 0 or 75, an intact database.
async fn transient_run(env: &Env, n: usize, codes: &mut Vec<i32>, what: &str) -> i32 {
    let run = env.sync_once().await;
    assert_no_panic(&run, what);
    codes.push(run.code);
    assert!(
        run.code == 0 || run.code == 75,
        "{what}: run {n} exited {} (all non-zero exits must be 75; codes {codes:?}):\n{}",
        run.code,
        run.stderr
    );
    assert_integrity(env);
    run.code
}

fn writes(env: &Env) -> usize {
    env.control
        .requests()
        .iter()
        .filter(|r| r.method != "GET")
        .count()
}

fn statuses(env: &Env) -> Vec<u16> {
    env.control.requests().iter().map(|r| r.status).collect()
}

fn active_entries(env: &Env) -> i64 {
    env.count("SELECT count(*) FROM journal WHERE state IN ('pending', 'in_flight', 'failed')")
}

/// The upstream key (list rendering) and mirror column that tell created records apart.
fn unique_key(kind: Kind) -> (&'static str, &'static str) {
    match kind {
        Kind::PhoneNumbers => ("number", "number"),
        Kind::Addresses => ("address", "address"),
        Kind::SmartNumbers => ("phoneB", "phone_b"),
    }
}

fn upstream_where(env: &Env, kind: Kind, key: &str, value: &Value) -> Vec<Value> {
    env.control
        .list(kind)
        .into_iter()
        .filter(|r| &r[key] == value)
        .collect()
}

/// The mirror tables' rows keyed by (table, local_id), to compare before and after a run.
fn mirror_snapshot(env: &Env) -> BTreeMap<(String, i64), Value> {
    let mut out = BTreeMap::new();
    for kind in ALL {
        let table = kind.name();
        for row in rows(env, &format!("SELECT * FROM {table}"), &[]) {
            let local = row["local_id"].as_i64().expect("local_id");
            out.insert((table.to_string(), local), row);
        }
    }
    out
}

fn mirror_id_set(env: &Env, kind: Kind) -> BTreeSet<i64> {
    env.mirror_ids(kind.name()).into_iter().collect()
}

fn scripted(
    method: Option<&str>,
    kind: Option<Kind>,
    page: Option<u32>,
    action: FaultAction,
) -> ScriptedFault {
    ScriptedFault {
        method: method.map(str::to_string),
        kind,
        page,
        action,
        times: 1,
    }
}

/// How many local changes of each sort to make per resource.
#[derive(Clone, Copy)]
struct Mix {
    creates: usize,
    /// Rows inserted twice with identical content (both must become distinct records).
    twins: usize,
    updates: usize,
    deletes: usize,
    /// Skip this many upstream ids before picking the records to update and delete.
    offset: usize,
}

/// (field, value) pairs; the field names are the same in the mirror and the list rendering.
type Fields = Vec<(&'static str, Value)>;

/// Local changes made with SQL, and what upstream must look like once they are pushed.
#[derive(Default, Debug)]
struct Changes {
    /// (kind, unique value, how many identical rows were inserted).
    created: Vec<(Kind, Value, usize)>,
    /// (kind, upstream id, [(field, value)]); the field names are the same in the mirror
    /// and in the list rendering.
    updated: Vec<(Kind, i64, Fields)>,
    deleted: Vec<(Kind, i64)>,
}

impl Changes {
    fn extend(&mut self, other: Changes) {
        self.created.extend(other.created);
        self.updated.extend(other.updated);
        self.deleted.extend(other.deleted);
    }

    fn touched_ids(&self) -> HashSet<(Kind, i64)> {
        self.updated
            .iter()
            .map(|(k, id, _)| (*k, *id))
            .chain(self.deleted.iter().copied())
            .collect()
    }
}

/// Inserts, updates and deletes rows of every resource (smart numbers cannot be updated).
/// `tag` (0..100) keeps the values of different batches apart; records in `avoid` are
/// left alone.
fn make_changes(env: &Env, tag: u32, mix: Mix, avoid: &HashSet<(Kind, i64)>) -> Changes {
    let conn = env.db();
    let mut out = Changes::default();
    for kind in ALL {
        let table = kind.name();
        let ids = env.upstream_ids(kind);
        for i in 0..mix.creates + mix.twins {
            let copies = if i < mix.twins { 2 } else { 1 };
            let value = match kind {
                Kind::PhoneNumbers => format!("0800 {tag:02} {i:04}"),
                Kind::Addresses => format!("測試街{tag}之{i}號"),
                Kind::SmartNumbers => format!("7800{tag:02}{i:05}"),
            };
            for _ in 0..copies {
                let n = i as i64;
                let res = match kind {
                    Kind::PhoneNumbers => conn.execute(
                        "INSERT INTO phone_numbers (contact_id, type, number, extension, description) \
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![
                            1_935_100 + n,
                            n % 5,
                            value,
                            (i % 2 == 0).then_some("12"),
                            format!("reliability {tag} {i}")
                        ],
                    ),
                    Kind::Addresses => conn.execute(
                        "INSERT INTO addresses (contact_id, type, address, country_id, state_id, city_id, description) \
                         VALUES (?1, ?2, ?3, 1, ?4, ?5, ?6)",
                        params![
                            1_938_200 + n,
                            n % 6,
                            value,
                            1 + n % 7,
                            1 + n % 47,
                            format!("reliability {tag} {i}")
                        ],
                    ),
                    Kind::SmartNumbers => conn.execute(
                        "INSERT INTO smart_numbers (user_id, phone_b, description) VALUES (?1, ?2, ?3)",
                        params![USERS[i % USERS.len()], value, format!("надёжность {tag} {i}")],
                    ),
                };
                res.unwrap_or_else(|e| panic!("insert into {table}: {e}"));
            }
            out.created.push((kind, json!(value), copies));
        }
        let mut pick = ids
            .iter()
            .copied()
            .filter(|id| !avoid.contains(&(kind, *id)))
            .skip(mix.offset);
        if kind != Kind::SmartNumbers {
            for i in 0..mix.updates {
                let id = pick.next().expect("enough records to update");
                let fields: Fields = match kind {
                    Kind::PhoneNumbers => vec![
                        ("description", json!(format!("更新 {tag} {i}"))),
                        ("extension", json!(format!("{tag}{i}"))),
                    ],
                    _ => vec![
                        ("address", json!(format!("更新路{tag}之{i}號"))),
                        ("description", Value::Null),
                        ("city_id", json!(1 + i as i64)),
                    ],
                };
                for (col, v) in &fields {
                    let sql_value = match v {
                        Value::Null => rusqlite::types::Value::Null,
                        Value::Number(n) => rusqlite::types::Value::Integer(n.as_i64().expect("int")),
                        other => rusqlite::types::Value::Text(other.as_str().expect("text").to_string()),
                    };
                    conn.execute(
                        &format!("UPDATE {table} SET {col} = ?1 WHERE id = ?2"),
                        params![sql_value, id],
                    )
                    .expect("local update");
                }
                out.updated.push((kind, id, fields));
            }
        }
        for _ in 0..mix.deletes {
            let id = pick.next().expect("enough records to delete");
            conn.execute(&format!("DELETE FROM {table} WHERE id = ?1"), [id])
                .expect("local delete");
            out.deleted.push((kind, id));
        }
    }
    out
}

/// Asserts every change is upstream exactly once and mirrored, and (when given) that each
/// resource holds exactly the expected number of records.
fn verify(env: &Env, changes: &Changes, expected_counts: Option<&BTreeMap<&'static str, usize>>) {
    for (kind, value, copies) in &changes.created {
        let (ukey, col) = unique_key(*kind);
        let table = kind.name();
        let made = upstream_where(env, *kind, ukey, value);
        let text = value.as_str().expect("text value").to_string();
        let mirrored = rows(
            env,
            &format!("SELECT * FROM {table} WHERE {col} = ?1 ORDER BY id"),
            &[&text],
        );
        if made.len() != *copies {
            // What the journal knows, to tell a lost change from a duplicated one.
            let journal = rows(
                env,
                "SELECT seq, op, local_id, upstream_id, state, outcome, attempts, last_error \
                 FROM journal WHERE resource = ?1 AND op = 'create'",
                &[&table],
            );
            eprintln!("{table} {value}: mirror rows {mirrored:#?}\ncreate entries {journal:#?}");
        }
        assert_eq!(
            made.len(),
            *copies,
            "{table} {value}: expected {copies} record(s) upstream (no duplicates, nothing lost): {made:#?}"
        );
        let mut up_ids: Vec<i64> = made.iter().filter_map(|r| r["id"].as_i64()).collect();
        up_ids.sort();
        let mut m_ids: Vec<i64> = mirrored.iter().filter_map(|r| r["id"].as_i64()).collect();
        m_ids.sort();
        assert_eq!(
            mirrored.len(),
            *copies,
            "{table} {value}: mirror rows {mirrored:#?}"
        );
        assert_eq!(m_ids, up_ids, "{table} {value}: mirror rows {mirrored:#?}");
    }
    for (kind, id, fields) in &changes.updated {
        let rec = env
            .control
            .get(*kind, *id)
            .unwrap_or_else(|| panic!("{} id {id}: updated record vanished upstream", kind.name()));
        for (field, value) in fields {
            assert_eq!(
                &rec[*field],
                value,
                "{} id {id} field {field}: {rec}",
                kind.name()
            );
        }
    }
    for (kind, id) in &changes.deleted {
        assert!(
            env.control.get(*kind, *id).is_none(),
            "{} id {id}: the local delete did not reach upstream",
            kind.name()
        );
        assert_eq!(
            env.count(&format!("SELECT count(*) FROM {} WHERE id = {id}", kind.name())),
            0,
            "{} id {id}: deleted row came back",
            kind.name()
        );
    }
    if let Some(counts) = expected_counts {
        for kind in ALL {
            assert_eq!(
                env.control.count(kind),
                counts[kind.name()],
                "{}: upstream record count",
                kind.name()
            );
        }
    }
}

/// Upstream counts after applying `changes` to the current ones.
fn counts_after(env: &Env, changes: &Changes) -> BTreeMap<&'static str, usize> {
    ALL.into_iter()
        .map(|kind| {
            let created: usize = changes
                .created
                .iter()
                .filter(|(k, _, _)| *k == kind)
                .map(|(_, _, n)| n)
                .sum();
            let deleted = changes.deleted.iter().filter(|(k, _)| *k == kind).count();
            (kind.name(), env.control.count(kind) + created - deleted)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// 1. Random 500s and 429s
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn every_operation_converges_under_random_500s_and_429s() {
    let env = Env::start(20).await;
    env.sync_ok().await;
    let mix = Mix {
        creates: 3,
        twins: 0,
        updates: 3,
        deletes: 3,
        offset: 2,
    };
    let changes = make_changes(&env, 1, mix, &HashSet::new());
    let expected = counts_after(&env, &changes);
    env.control.set_faults(Faults {
        seed: 1,
        error_rate: 0.25,
        rate_limit_rate: 0.15,
        retry_after_secs: 1,
        ..Faults::default()
    });
    let mut codes = Vec::new();
    for n in 1..=6 {
        if transient_run(&env, n, &mut codes, "random 500s and 429s").await == 0 {
            break;
        }
    }
    let seen = statuses(&env);
    assert!(
        seen.contains(&500) && seen.contains(&429),
        "no faults were served: {seen:?}"
    );
    env.control.set_faults(Faults::default());
    env.sync_ok().await;
    eprintln!("exit codes under faults: {codes:?}");
    verify(&env, &changes, Some(&expected));
    assert_eq!(active_entries(&env), 0);
    env.assert_converged();
}

// ---------------------------------------------------------------------------------------
// 2. Lost answers to creates
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn creates_whose_answers_are_dropped_are_never_duplicated() {
    let env = Env::start(20).await;
    env.sync_ok().await;
    let mix = Mix {
        creates: 6,
        twins: 2,
        updates: 0,
        deletes: 0,
        offset: 0,
    };
    let changes = make_changes(&env, 2, mix, &HashSet::new());
    let expected = counts_after(&env, &changes);
    env.control.set_faults(Faults {
        seed: 2,
        drop_after_commit_rate: 0.5,
        ..Faults::default()
    });
    let codes = sync_until_ok(&env, 10, "dropped create answers").await;
    let dropped = env
        .control
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.status == 0)
        .count();
    assert!(
        dropped >= 5,
        "too few answers were dropped to test anything: {dropped}"
    );
    env.control.set_faults(Faults::default());
    env.sync_ok().await;
    eprintln!("exit codes: {codes:?}; dropped POST answers: {dropped}");
    verify(&env, &changes, Some(&expected));
    assert_eq!(active_entries(&env), 0);
    env.assert_converged();
}

// ---------------------------------------------------------------------------------------
// 3. SIGKILL at many points of a mixed push
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum KillPoint {
    /// Kill this long after the start (during start-up, the walk or the push).
    AfterMs(u64),
    /// Kill as soon as the sandbox has answered this many writes of this run; more are
    /// usually in flight, committed upstream with their answers not yet read.
    AfterWrites(usize),
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_at_many_points_of_a_mixed_push_loses_and_duplicates_nothing() {
    let env = Env::start(20).await;
    env.sync_ok().await;
    let mix = Mix {
        creates: 8,
        twins: 0,
        updates: 4,
        deletes: 3,
        offset: 1,
    };
    let changes = make_changes(&env, 3, mix, &HashSet::new());
    let expected = counts_after(&env, &changes);
    // Slow answers, so kills find requests in flight.
    env.control.set_faults(Faults {
        latency_ms: 15,
        ..Faults::default()
    });
    use KillPoint::*;
    let schedule = [
        AfterMs(20),
        AfterWrites(1),
        AfterMs(80),
        AfterWrites(1),
        AfterWrites(2),
        AfterMs(140),
        AfterWrites(3),
        AfterWrites(1),
        AfterWrites(4),
        AfterWrites(2),
        AfterWrites(5),
        AfterWrites(3),
        AfterWrites(6),
        AfterWrites(2),
        AfterWrites(8),
        AfterWrites(4),
    ];
    let started = Instant::now();
    // (kill point, killed?, writes answered in the run, journal entries left in flight)
    let mut progress = Vec::new();
    for point in schedule {
        let before = writes(&env);
        let mut child = env.spawn(&["sync", "--once"]);
        let t0 = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break Some(status);
            }
            let due = match point {
                AfterMs(ms) => t0.elapsed() >= Duration::from_millis(ms),
                AfterWrites(k) => writes(&env) >= before + k,
            };
            if due {
                break None;
            }
            assert!(t0.elapsed() < Duration::from_secs(20), "a run hung");
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let killed = status.is_none();
        if killed {
            child.kill().await.expect("SIGKILL restsync");
        } else {
            let code = status.and_then(|s| s.code());
            assert!(
                matches!(code, Some(0) | Some(75)),
                "a run that was not killed exited {code:?}"
            );
        }
        assert_integrity(&env);
        let in_flight = env.count("SELECT count(*) FROM journal WHERE state = 'in_flight'");
        progress.push((point, killed, writes(&env) - before, in_flight));
        if !killed {
            break;
        }
    }
    env.control.set_faults(Faults::default());
    eprintln!("kill points: {progress:?}");
    let killed = progress.iter().filter(|p| p.1).count();
    assert!(
        killed >= 8,
        "too few runs were killed to test anything: {progress:?}"
    );
    assert!(
        progress.iter().any(|p| p.1 && p.3 > 0),
        "no kill left a journal entry in flight: {progress:?}"
    );
    sync_until_ok(&env, 4, "after the kills").await;
    verify(&env, &changes, Some(&expected));
    assert_eq!(active_entries(&env), 0);
    env.assert_converged();
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the kill loop took {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------
// 4. Pages shifting mid-walk under pending local edits
// ---------------------------------------------------------------------------------------

struct Shift {
    kind: Kind,
    page: u32,
    delete_earlier: usize,
    insert_before: usize,
    times: u32,
}

async fn shifting_pages_keep_records_and_pending_edits(shift: Shift) {
    let kind = shift.kind;
    let table = kind.name();
    let env = Env::start(100).await;
    env.sync_ok().await;
    let per_page = if kind == Kind::SmartNumbers { 15 } else { 25 };
    let listing = env.control.ids(kind);
    // Records at page boundaries (they move to the neighbouring page when the listing
    // shifts), never among the first ones, which the shift deletes.
    let edge: Vec<i64> = (1..=4)
        .flat_map(|p| [p * per_page - 1, p * per_page])
        .filter(|&pos| pos >= shift.delete_earlier + 2 && pos < listing.len())
        .map(|pos| listing[pos])
        .collect();
    let (to_delete, to_edit) = edge.split_at(2);
    let mut edited = Vec::new();
    for (i, id) in to_edit.iter().enumerate() {
        if kind == Kind::SmartNumbers {
            break;
        }
        let value = format!("shifted edit {i}");
        env.exec(&format!(
            "UPDATE {table} SET description = '{value}' WHERE id = {id}"
        ));
        edited.push((*id, value));
    }
    for id in to_delete {
        env.exec(&format!("DELETE FROM {table} WHERE id = {id}"));
    }
    let created = match kind {
        Kind::PhoneNumbers => {
            env.exec(
                "INSERT INTO phone_numbers (contact_id, type, number) VALUES (1935038, 1, '0800 44 0001')",
            );
            ("number", "0800 44 0001")
        }
        Kind::Addresses => {
            env.exec("INSERT INTO addresses (contact_id, type, address) VALUES (1938277, 1, '移動路1號')");
            ("address", "移動路1號")
        }
        Kind::SmartNumbers => {
            env.exec("INSERT INTO smart_numbers (user_id, phone_b) VALUES (43, '78004400001')");
            ("phoneB", "78004400001")
        }
    };
    env.control.push_scripted(ScriptedFault {
        method: Some("GET".into()),
        kind: Some(kind),
        page: Some(shift.page),
        action: FaultAction::ShiftPages {
            delete_earlier: shift.delete_earlier,
            insert_before: shift.insert_before,
        },
        times: shift.times,
    });

    let mut codes = Vec::new();
    for n in 1..=5 {
        let mirror_before = mirror_id_set(&env, kind);
        let run = env.sync_once().await;
        assert_no_panic(&run, "shifting pages");
        codes.push(run.code);
        assert!(
            run.code == 0 || run.code == 75,
            "{table} run {n}: exit {} ({codes:?}):\n{}",
            run.code,
            run.stderr
        );
        // Nothing that exists upstream left the mirror.
        let upstream: BTreeSet<i64> = env.upstream_ids(kind).into_iter().collect();
        let mirror_after = mirror_id_set(&env, kind);
        let lost: Vec<&i64> = mirror_before
            .intersection(&upstream)
            .filter(|id| !mirror_after.contains(id))
            .collect();
        assert!(
            lost.is_empty(),
            "{table} run {n}: records still upstream were removed: {lost:?}"
        );
        // The pending edits survive every run.
        for (id, value) in &edited {
            assert_eq!(
                env.row_json(table, *id)["description"],
                json!(value),
                "{table} run {n}: the local edit of id {id} was lost"
            );
        }
        for id in to_delete {
            assert_eq!(
                env.count(&format!("SELECT count(*) FROM {table} WHERE id = {id}")),
                0,
                "{table} run {n}: locally deleted id {id} came back"
            );
        }
        if run.code == 0 {
            break;
        }
    }
    assert_eq!(codes.last(), Some(&0), "{table}: never finished: {codes:?}");
    // Every scripted shift happened: 100 seeded, the shifts, one create, two deletes.
    let net = shift.times as usize * shift.insert_before + 1;
    let gone = shift.times as usize * shift.delete_earlier + to_delete.len();
    assert_eq!(
        env.control.count(kind),
        100 + net - gone,
        "{table}: not every shift happened"
    );
    // Records added while the last walk ran come in with the next one (churn never holds
    // a run back, so the run that exits 0 may not have seen them yet).
    env.sync_ok().await;
    env.assert_converged();
    for (id, value) in &edited {
        let rec = env.control.get(kind, *id).expect("edited record upstream");
        assert_eq!(rec["description"], json!(value), "{table} id {id}");
    }
    for id in to_delete {
        assert!(
            env.control.get(kind, *id).is_none(),
            "{table} id {id} not deleted upstream"
        );
    }
    let made = upstream_where(&env, kind, created.0, &json!(created.1));
    assert_eq!(made.len(), 1, "{table}: {made:#?}");
    eprintln!("{table}: exit codes {codes:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn phone_pages_shifting_later_keep_records_and_pending_edits() {
    shifting_pages_keep_records_and_pending_edits(Shift {
        kind: Kind::PhoneNumbers,
        page: 3,
        delete_earlier: 2,
        insert_before: 3,
        times: 1,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn phone_pages_shifting_earlier_twice_keep_records_and_pending_edits() {
    shifting_pages_keep_records_and_pending_edits(Shift {
        kind: Kind::PhoneNumbers,
        page: 2,
        delete_earlier: 5,
        insert_before: 0,
        times: 2,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn address_pages_shifting_on_every_walk_keep_records_and_pending_edits() {
    shifting_pages_keep_records_and_pending_edits(Shift {
        kind: Kind::Addresses,
        page: 4,
        delete_earlier: 1,
        insert_before: 6,
        times: 3,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn smart_number_pages_shifting_keep_records_and_pending_deletes() {
    shifting_pages_keep_records_and_pending_edits(Shift {
        kind: Kind::SmartNumbers,
        page: 3,
        delete_earlier: 4,
        insert_before: 1,
        times: 2,
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 5. Empty-list outage
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_list_outage_keeps_the_mirror_and_loses_no_pending_change() {
    // More records than restsync confirms one GET at a time, so Firstline's absences are
    // confirmed by a second walk, which the outage empties too.
    let env = Env::start(60).await;
    env.sync_ok().await;
    let mix = Mix {
        creates: 2,
        twins: 0,
        updates: 2,
        deletes: 1,
        offset: 3,
    };
    let changes = make_changes(&env, 5, mix, &HashSet::new());
    let expected = counts_after(&env, &changes);
    let before = mirror_snapshot(&env);
    env.control.set_faults(Faults {
        empty_outage: true,
        ..Faults::default()
    });
    // Two runs during the outage (a cron job does not know it is one).
    for n in 1..=2 {
        let run = env.sync_once().await;
        assert_no_panic(&run, "empty outage");
        assert_eq!(run.code, 65, "outage run {n}:\n{}", run.stderr);
        assert!(
            run.stderr.contains("max_delete_fraction") && run.stderr.contains("left untouched"),
            "outage run {n}: the message does not say the mass-removal guard held:\n{}",
            run.stderr
        );
        assert_integrity(&env);
        // Every row is kept: untouched ones exactly as they were, edits as the user left
        // them (creates and updates may have been pushed meanwhile, which fills ids).
        let now = mirror_snapshot(&env);
        let touched = changes.touched_ids();
        for ((table, local), row) in &before {
            let kind = ALL.into_iter().find(|k| k.name() == table).expect("kind");
            let id = row["id"].as_i64();
            let untouched = id.is_some_and(|id| !touched.contains(&(kind, id)));
            if untouched {
                assert_eq!(
                    now.get(&(table.clone(), *local)),
                    Some(row),
                    "outage run {n}: {table} row changed"
                );
            }
        }
        for kind in ALL {
            let rows_now = env.count(&format!("SELECT count(*) FROM {}", kind.name()));
            let rows_before = before.keys().filter(|(t, _)| t == kind.name()).count() as i64;
            assert_eq!(rows_now, rows_before, "outage run {n}: {} lost rows", kind.name());
        }
    }
    env.control.set_faults(Faults::default());
    let run = env.sync_once().await;
    assert_eq!(
        run.code, 0,
        "the first healthy run after the outage:\n{}",
        run.stderr
    );
    verify(&env, &changes, Some(&expected));
    assert_eq!(active_entries(&env), 0);
    env.assert_converged();
}

// ---------------------------------------------------------------------------------------
// 6. Garbage answers
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn random_html_and_truncated_answers_never_panic_nor_corrupt() {
    let env = Env::start(30).await;
    // Gateway pages and lost answers hold their records for the request timeout.
    env.write_config("request_timeout_secs = 1\nlist_lag_secs = 0", "");
    env.sync_ok().await;
    let mix = Mix {
        creates: 3,
        twins: 0,
        updates: 2,
        deletes: 2,
        offset: 1,
    };
    let changes = make_changes(&env, 6, mix, &HashSet::new());
    let expected = counts_after(&env, &changes);
    env.control.set_faults(Faults {
        seed: 6,
        error_rate: 0.05,
        html_rate: 0.25,
        truncated_rate: 0.35,
        ..Faults::default()
    });
    let mut codes = Vec::new();
    for n in 1..=4 {
        transient_run(&env, n, &mut codes, "html and truncated answers").await;
        // The user's edits are all still in the mirror.
        for (kind, id, fields) in &changes.updated {
            let row = env.row_json(kind.name(), *id);
            for (f, v) in fields {
                assert_eq!(&row[*f], v, "run {n}: {} id {id} lost its edit", kind.name());
            }
        }
        for (kind, value, copies) in &changes.created {
            let (_, col) = unique_key(*kind);
            let text = value.as_str().expect("text").to_string();
            let n_rows = rows(
                &env,
                &format!("SELECT local_id FROM {} WHERE {col} = ?1", kind.name()),
                &[&text],
            )
            .len();
            assert_eq!(n_rows, *copies, "run {n}: {} row {value}", kind.name());
        }
    }
    let seen = statuses(&env);
    assert!(seen.contains(&502), "no HTML page was served: {seen:?}");
    env.control.set_faults(Faults::default());
    sync_until_ok(&env, 3, "after html and truncated answers").await;
    eprintln!("exit codes under garbage: {codes:?}");
    verify(&env, &changes, Some(&expected));
    env.assert_converged();
}

/// Bodies a broken proxy or upstream might send with HTTP 200.
const GARBAGE: &[&str] = &[
    "<garbage>",
    "{}",
    "[]",
    r#"{"data":{"id":"x"}}"#,
    "null",
    "\u{0}\u{1}\u{fffd}",
    r#"{"data":[{"id":"x"},{"no":"id"},7],"meta":{"current_page":1,"last_page":1,"total":3}}"#,
    r#"{"data":[],"meta":{"current_page":"one","last_page":-1,"total":1.5}}"#,
    r#"{"data":{"id":1e400}}"#,
    r#"{"current_page":1,"data":[{"id":-1,"user_id":"x"}],"last_page":0,"total":9}"#,
    r#"{"success":"maybe","data":null}"#,
    "<!DOCTYPE html><title></title><title>",
];

#[tokio::test(flavor = "multi_thread")]
async fn garbage_answers_to_every_request_never_panic_nor_corrupt() {
    let env = Env::start(30).await;
    // A garbled answer to a write leaves its outcome unknown until the request could no
    // longer be in progress: the shortest timeout keeps the twelve rounds short. Nothing
    // lags here, so lookups need no extra wait.
    env.write_config("request_timeout_secs = 1\nlist_lag_secs = 0", "");
    env.sync_ok().await;
    let seeded: HashSet<(Kind, i64)> = ALL
        .into_iter()
        .flat_map(|k| env.upstream_ids(k).into_iter().map(move |id| (k, id)))
        .collect();
    let mut all_changes = Changes::default();
    for (round, body) in GARBAGE.iter().enumerate() {
        // Only seeded records are updated or deleted, each once.
        let mut avoid = all_changes.touched_ids();
        avoid.extend(
            ALL.into_iter()
                .flat_map(|k| env.upstream_ids(k).into_iter().map(move |id| (k, id)))
                .filter(|key| !seeded.contains(key)),
        );
        // Fresh pending changes each round, so every write endpoint meets the garbage.
        let changes = make_changes(
            &env,
            10 + round as u32,
            Mix {
                creates: 1,
                twins: 0,
                updates: 1,
                deletes: 1,
                offset: 0,
            },
            &avoid,
        );
        let touched = changes.touched_ids();
        all_changes.extend(changes);
        let before = mirror_snapshot(&env);
        for kind in ALL {
            env.control.push_scripted(scripted(
                Some("GET"),
                Some(kind),
                Some(1),
                FaultAction::Status(200, (*body).into()),
            ));
            let mut methods = vec!["POST", "PUT"];
            // An empty object or body is how a successful delete may legitimately answer.
            if !matches!(*body, "{}") {
                methods.push("DELETE");
            }
            for method in methods {
                if method == "PUT" && kind == Kind::SmartNumbers {
                    continue;
                }
                env.control.push_scripted(scripted(
                    Some(method),
                    Some(kind),
                    None,
                    FaultAction::Status(200, (*body).into()),
                ));
            }
        }
        let run = env.sync_once().await;
        let what = format!("garbage body {body:?}");
        assert_no_panic(&run, &what);
        assert!(
            matches!(run.code, 0 | 75),
            "{what}: exit {}:\n{}",
            run.code,
            run.stderr
        );
        assert_integrity(&env);
        // Rows nobody changed are exactly as they were.
        let now = mirror_snapshot(&env);
        for ((table, local), row) in &before {
            let kind = ALL.into_iter().find(|k| k.name() == table).expect("kind");
            let Some(id) = row["id"].as_i64() else { continue };
            if touched.contains(&(kind, id)) {
                continue;
            }
            assert_eq!(
                now.get(&(table.clone(), *local)),
                Some(row),
                "{what}: {table} row changed"
            );
        }
        // And the user's pending edits are all there.
        for (kind, id, fields) in &all_changes.updated {
            let row = env.row_json(kind.name(), *id);
            for (f, v) in fields {
                assert_eq!(&row[*f], v, "{what}: {} id {id} lost its edit", kind.name());
            }
        }
    }
    // Scripted faults that found no request are still queued; they are spent by these runs.
    sync_until_ok(&env, 6, "after garbage answers").await;
    env.sync_ok().await;
    verify(&env, &all_changes, None);
    assert_eq!(active_entries(&env), 0);
    env.assert_converged();
}

/// A list page as the sandbox would answer it, with one record's field replaced.
fn doctored_page(env: &Env, kind: Kind, id: i64, field: &str, value: Value) -> String {
    let mut records = env.control.list(kind);
    for r in &mut records {
        if r["id"] == json!(id) {
            r[field] = value.clone();
        }
    }
    let total = records.len();
    match kind {
        Kind::SmartNumbers => {
            records.truncate(15);
            json!({"current_page": 1, "data": records, "last_page": total.div_ceil(15), "per_page": 15, "total": total})
        }
        _ => {
            records.truncate(25);
            json!({"data": records, "links": {}, "meta": {"current_page": 1, "last_page": total.div_ceil(25), "per_page": 25, "total": total}})
        }
    }
    .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn records_with_wrong_typed_fields_are_skipped_without_touching_the_mirror() {
    let env = Env::start(12).await;
    env.sync_ok().await;
    // The sandbox stores typed records, so a wrong-typed field is served by a doctored page.
    let phone = env.upstream_ids(Kind::PhoneNumbers)[3];
    let address = env.upstream_ids(Kind::Addresses)[4];
    let smart = env.upstream_ids(Kind::SmartNumbers)[5];
    env.exec(&format!(
        "UPDATE phone_numbers SET description = 'mine' WHERE id = {phone};
         UPDATE addresses SET description = 'mine too' WHERE id = {address};"
    ));
    let doctored = [
        (
            Kind::PhoneNumbers,
            doctored_page(&env, Kind::PhoneNumbers, phone, "type", json!("not a number")),
        ),
        (
            Kind::Addresses,
            doctored_page(&env, Kind::Addresses, address, "city_id", json!({"id": 3})),
        ),
        (
            Kind::SmartNumbers,
            doctored_page(&env, Kind::SmartNumbers, smart, "phoneB", json!([7, 9])),
        ),
    ];
    // The run's walk gets the doctored page (one walk: an unreadable record is a data
    // problem upstream, not churn, so it is not walked again because of it).
    for (kind, body) in &doctored {
        env.control.push_scripted(ScriptedFault {
            method: Some("GET".into()),
            kind: Some(*kind),
            page: Some(1),
            action: FaultAction::Status(200, body.clone()),
            times: 1,
        });
    }
    let before = mirror_snapshot(&env);
    let run = env.sync_once().await;
    assert_no_panic(&run, "wrong-typed fields");
    // A person must look (exit 65), and every bad record is named with its field and value.
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert!(run.stderr.contains("could not be read"), "{}", run.stderr);
    for (id, field, value) in [
        (phone, "type", "not a number"),
        (address, "city_id", "\"id\""),
        (smart, "phoneB", "[7,9]"),
    ] {
        assert!(
            run.stderr.contains(&format!("id {id}: field `{field}`")) && run.stderr.contains(value),
            "id {id} {field}: {}",
            run.stderr
        );
    }
    assert_eq!(
        env.count("SELECT count(*) FROM sync_state WHERE last_error LIKE '%could not be read%'"),
        3,
        "status shows the problem"
    );
    assert_integrity(&env);
    // The unreadable records' rows are untouched; the rest of the walk was applied, and
    // the local edits were pushed (merged against upstream's record, read by id).
    let now = mirror_snapshot(&env);
    assert_eq!(
        now, before,
        "the mirror changed although nothing upstream changed"
    );
    assert_eq!(
        env.control.get(Kind::PhoneNumbers, phone).expect("phone")["description"],
        "mine"
    );
    assert_eq!(
        env.control.get(Kind::Addresses, address).expect("address")["description"],
        "mine too"
    );
    let walks: usize = env
        .control
        .requests()
        .iter()
        .filter(|r| {
            r.method == "GET"
                && r.path.ends_with("/phone-number")
                && r.query.split('&').any(|p| p == "page=1")
                && !r.query.contains("number=")
        })
        .count();
    assert_eq!(
        walks, 2,
        "one walk per run, not repeated because of the bad record"
    );
    env.sync_ok().await;
    assert_eq!(
        env.control.get(Kind::PhoneNumbers, phone).expect("phone")["description"],
        "mine"
    );
    assert_eq!(
        env.control.get(Kind::Addresses, address).expect("address")["description"],
        "mine too"
    );
    env.assert_converged();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_absurd_page_count_does_not_keep_the_walk_going() {
    let env = Env::start(30).await;
    env.sync_ok().await;
    let mut page: Value = serde_json::from_str(&doctored_page(
        &env,
        Kind::PhoneNumbers,
        0,
        "description",
        Value::Null,
    ))
    .expect("page json");
    page["meta"]["last_page"] = json!(u64::MAX);
    let mut smart: Value = serde_json::from_str(&doctored_page(
        &env,
        Kind::SmartNumbers,
        0,
        "description",
        Value::Null,
    ))
    .expect("page json");
    // Consistent with an absurd total: only running out of records can end this walk.
    smart["total"] = json!(1_000_000_000_000u64);
    smart["last_page"] = json!(1_000_000_000u64);
    env.control.push_scripted(scripted(
        Some("GET"),
        Some(Kind::PhoneNumbers),
        Some(1),
        FaultAction::Status(200, page.to_string()),
    ));
    env.control.push_scripted(scripted(
        Some("GET"),
        Some(Kind::SmartNumbers),
        Some(1),
        FaultAction::Status(200, smart.to_string()),
    ));
    let before = mirror_snapshot(&env);
    let started = Instant::now();
    let run = tokio::time::timeout(Duration::from_secs(30), env.sync_once())
        .await
        .expect("a page count of 2^64 kept the walk going for 30 s");
    assert_no_panic(&run, "absurd last_page");
    assert!(matches!(run.code, 0 | 75), "{}", run.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(mirror_snapshot(&env), before);
    env.sync_ok().await;
    env.assert_converged();
}

// ---------------------------------------------------------------------------------------
// 7. The database locked by another writer
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_database_locked_by_another_writer_is_waited_for() {
    let env = Env::start(20).await;
    env.sync_ok().await;
    let mix = Mix {
        creates: 2,
        twins: 0,
        updates: 2,
        deletes: 1,
        offset: 2,
    };
    let mut changes = make_changes(&env, 7, mix, &HashSet::new());
    let hold = Duration::from_millis(2500);
    let path = env.db_path.clone();
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    // Someone else's long write transaction, which itself adds a row.
    let holder = std::thread::spawn(move || {
        let mut conn = Connection::open(&path).expect("open mirror");
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .expect("BEGIN IMMEDIATE");
        tx.execute(
            "INSERT INTO phone_numbers (contact_id, type, number, description) \
             VALUES (1935999, 1, '0800 77 9999', 'written while locked')",
            [],
        )
        .expect("insert under the lock");
        locked_tx.send(()).expect("signal");
        std::thread::sleep(hold);
        tx.commit().expect("COMMIT");
    });
    tokio::task::spawn_blocking(move || locked_rx.recv().expect("lock taken"))
        .await
        .expect("join");
    let started = Instant::now();
    let run = env.sync_once().await;
    let took = started.elapsed();
    holder.join().expect("lock holder");
    assert_no_panic(&run, "locked database");
    assert_eq!(run.code, 0, "restsync did not wait for the lock:\n{}", run.stderr);
    assert!(
        took >= hold - Duration::from_millis(300),
        "the run finished in {took:?}, before the lock was released"
    );
    assert_integrity(&env);
    changes
        .created
        .push((Kind::PhoneNumbers, json!("0800 77 9999"), 1));
    // The row written under the lock is pushed by this run or the next.
    env.sync_ok().await;
    verify(&env, &changes, None);
    assert_eq!(active_entries(&env), 0);
    env.assert_converged();
}

// ---------------------------------------------------------------------------------------
// 8. A typo in a read-only column
// ---------------------------------------------------------------------------------------

/// Read-only columns are upstream's to fill; a wrong-typed value a person left there must
/// not make the row's journal entry unreadable and block its push.
#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_typed_read_only_column_does_not_block_the_push() {
    let env = Env::start(10).await;
    env.sync_ok().await;
    let id = env.upstream_ids(Kind::PhoneNumbers)[2];
    env.exec(&format!(
        "INSERT INTO phone_numbers (contact_id, type, number, profile_id) VALUES (1935038, 1, '0800 88 0001', 'abc');
         INSERT INTO addresses (contact_id, type, address, profile_id) VALUES (1938277, 1, '唯讀路1號', 2.5);
         INSERT INTO smart_numbers (user_id, phone_b, phone_x, created_at) VALUES (40, '78008800001', x'00ff', 7);
         UPDATE phone_numbers SET description = 'typo next door', profile_id = 'oops' WHERE id = {id};"
    ));
    let run = env.sync_once().await;
    assert_no_panic(&run, "read-only typo");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let changes = Changes {
        created: vec![
            (Kind::PhoneNumbers, json!("0800 88 0001"), 1),
            (Kind::Addresses, json!("唯讀路1號"), 1),
            (Kind::SmartNumbers, json!("78008800001"), 1),
        ],
        updated: vec![(
            Kind::PhoneNumbers,
            id,
            vec![("description", json!("typo next door"))],
        )],
        deleted: vec![],
    };
    verify(&env, &changes, None);
    env.sync_ok().await;
    env.assert_converged();
    // The read-only columns took upstream's values.
    assert_eq!(
        env.count("SELECT count(*) FROM phone_numbers WHERE typeof(profile_id) <> 'integer'"),
        0
    );
    assert_eq!(
        env.count("SELECT count(*) FROM addresses WHERE typeof(profile_id) <> 'integer'"),
        0
    );
}

// ---------------------------------------------------------------------------------------
// 9. An update whose answer was lost, then edited again
// ---------------------------------------------------------------------------------------

/// What happens after the lost update.
#[derive(Clone, Copy, Debug)]
enum Then {
    EditAgain,
    Delete,
    /// Edit again; the next run's walk fails and its push of the new edit fails before
    /// reaching upstream, so the lost entry is superseded before any walk saw its effect.
    EditAgainWalkFails,
}

/// The update's answer never arrives (committed upstream, the run gives up), the user edits
/// the row again: upstream now differs from the base snapshot only by restsync's own push,
/// which must not count as a remote change that overrides the newer edit.
async fn lost_update_then(then: Then) {
    let env = Env::start(10).await;
    // A lost answer holds the record for the request timeout: the shortest keeps it brief.
    env.write_config("max_attempts_per_run = 2\nrequest_timeout_secs = 1", "");
    env.sync_ok().await;
    let id = env.upstream_ids(Kind::Addresses)[4];
    env.exec(&format!(
        "UPDATE addresses SET description = 'first' WHERE id = {id}"
    ));
    env.control.push_scripted(ScriptedFault {
        method: Some("PUT".into()),
        kind: Some(Kind::Addresses),
        page: None,
        action: FaultAction::DropAfterCommit,
        times: 2,
    });
    let run = env.sync_once().await;
    // The retry reads the record first and finds the update made: the run may end at once.
    assert!(matches!(run.code, 0 | 75), "{then:?}: {}", run.stderr);
    let lost_left_pending = run.code == 75;
    assert_eq!(
        env.control.get(Kind::Addresses, id).expect("address")["description"],
        "first"
    );
    match then {
        Then::EditAgain | Then::EditAgainWalkFails => env.exec(&format!(
            "UPDATE addresses SET description = 'second' WHERE id = {id}"
        )),
        Then::Delete => env.exec(&format!("DELETE FROM addresses WHERE id = {id}")),
    }
    if let Then::EditAgainWalkFails = then {
        env.control.push_scripted(ScriptedFault {
            method: Some("GET".into()),
            kind: Some(Kind::Addresses),
            page: Some(1),
            action: FaultAction::Status(503, r#"{"message":"Service Unavailable"}"#.into()),
            times: 2,
        });
        env.control.push_scripted(ScriptedFault {
            method: Some("PUT".into()),
            kind: Some(Kind::Addresses),
            page: None,
            action: FaultAction::Status(503, r#"{"message":"Service Unavailable"}"#.into()),
            times: 2,
        });
        let run = env.sync_once().await;
        assert_eq!(run.code, 75, "{then:?}: {}", run.stderr);
        let superseded =
            env.count("SELECT count(*) FROM journal WHERE state = 'superseded' AND attempts > 0");
        if lost_left_pending {
            assert_eq!(superseded, 1, "{then:?}: the lost entry was not superseded");
        }
    }
    sync_until_ok(&env, 4, "after a lost update").await;
    env.assert_converged();
    match then {
        Then::EditAgain | Then::EditAgainWalkFails => {
            assert_eq!(
                env.control.get(Kind::Addresses, id).expect("address")["description"],
                "second",
                "{then:?}: the newer local edit was lost"
            );
        }
        Then::Delete => assert!(
            env.control.get(Kind::Addresses, id).is_none(),
            "{then:?}: the local delete was lost"
        ),
    }
    let lost = rows(&env, "SELECT * FROM conflicts", &[]);
    assert!(
        lost.is_empty(),
        "{then:?}: restsync's own push was taken for a conflict: {lost:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edit_after_a_lost_update_answer_is_not_overridden_by_it() {
    lost_update_then(Then::EditAgain).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delete_after_a_lost_update_answer_is_not_undone_by_it() {
    lost_update_then(Then::Delete).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edit_after_a_lost_update_answer_survives_a_failed_walk() {
    lost_update_then(Then::EditAgainWalkFails).await;
}
