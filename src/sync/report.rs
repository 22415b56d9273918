//! What a cycle did, per resource, and the exit code it adds up to.

use crate::exit;
use crate::resources::ResourceKind;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Outcome {
    Ok,
    /// Work left for a later run (exit 75).
    Transient(String),
    /// A person must act (exit 65).
    NeedsHuman(String),
    /// The run could not go on (exit 1).
    Fatal(String),
}

impl Outcome {
    fn rank(&self) -> u8 {
        match self {
            Outcome::Ok => 0,
            Outcome::Transient(_) => 1,
            Outcome::NeedsHuman(_) => 2,
            Outcome::Fatal(_) => 3,
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Ok => exit::OK,
            Outcome::Transient(_) => exit::TEMPFAIL,
            Outcome::NeedsHuman(_) => exit::DATA,
            Outcome::Fatal(_) => exit::FATAL,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PullStats {
    pub pages: u64,
    pub records: u64,
    pub inserted: u64,
    pub updated: u64,
    pub removed: u64,
    pub unchanged: u64,
    pub conflicts: u64,
    pub walks: u32,
    pub bad_records: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PushStats {
    pub created: u64,
    pub updated: u64,
    pub deleted: u64,
    pub failed: u64,
    pub pending: u64,
}

impl PushStats {
    pub fn is_idle(&self) -> bool {
        *self == PushStats::default()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ResourceReport {
    pub resource: ResourceKind,
    pub pulled: Option<PullStats>,
    pub pushed: PushStats,
    pub outcome: Outcome,
    /// Every problem met, in order (the outcome keeps the worst).
    pub problems: Vec<String>,
    pub seconds: f64,
}

impl ResourceReport {
    pub fn new(resource: ResourceKind) -> ResourceReport {
        ResourceReport {
            resource,
            pulled: None,
            pushed: PushStats::default(),
            outcome: Outcome::Ok,
            problems: Vec::new(),
            seconds: 0.0,
        }
    }

    pub fn note(&mut self, outcome: Outcome) {
        match &outcome {
            Outcome::Ok => return,
            Outcome::Transient(m) | Outcome::NeedsHuman(m) | Outcome::Fatal(m) => {
                self.problems.push(m.clone())
            }
        }
        if outcome.rank() > self.outcome.rank() {
            self.outcome = outcome;
        }
    }

    /// The summary line of a full cycle (walk, merge, push).
    pub fn log(&self) {
        self.log_as("cycle finished");
    }

    /// The summary line of a daemon push pass (local edits pushed, no walk).
    pub fn log_push_pass(&self) {
        self.log_as("push pass finished");
    }

    fn log_as(&self, what: &str) {
        let p = self.pulled.clone().unwrap_or_default();
        let s = &self.pushed;
        let status = match &self.outcome {
            Outcome::Ok => "ok",
            Outcome::Transient(_) => "retry-later",
            Outcome::NeedsHuman(_) => "needs-attention",
            Outcome::Fatal(_) => "failed",
        };
        tracing::info!(
            resource = %self.resource,
            status,
            pages = p.pages,
            records = p.records,
            inserted = p.inserted,
            updated = p.updated,
            removed = p.removed,
            conflicts = p.conflicts,
            pushed_created = s.created,
            pushed_updated = s.updated,
            pushed_deleted = s.deleted,
            push_failed = s.failed,
            push_pending = s.pending,
            seconds = (self.seconds * 100.0).round() / 100.0,
            "{what}"
        );
        for problem in &self.problems {
            tracing::warn!(resource = %self.resource, "{problem}");
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CycleReport {
    pub resources: Vec<ResourceReport>,
}

impl CycleReport {
    pub fn exit_code(&self) -> i32 {
        self.resources
            .iter()
            .map(|r| &r.outcome)
            .max_by_key(|o| o.rank())
            .map_or(exit::OK, Outcome::exit_code)
    }
}

/// What a cycle would do (the `plan` command).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    pub pull_insert: Vec<String>,
    pub pull_update: Vec<String>,
    pub pull_remove: Vec<String>,
    pub push_create: Vec<String>,
    pub push_update: Vec<String>,
    pub push_delete: Vec<String>,
    pub conflicts: Vec<String>,
    /// Local changes whose journal entry failed as they stand: not sent by the next cycle.
    pub failed: Vec<String>,
    pub notes: Vec<String>,
    /// Records the walk would merge with a local row or a local delete: the row's values
    /// after the merge (None: the row would be gone) and upstream's values, which become
    /// the base. The pushes are planned from these, as the cycle would journal them.
    #[serde(skip)]
    pub(crate) merged_rows: std::collections::HashMap<i64, MergedRow>,
    /// A guard would refuse part of the cycle (the cycle would need a person).
    #[serde(skip)]
    pub guard_would_refuse: bool,
    /// The cycle would leave work for a later run (75): upstream looked unsettled (an
    /// anomaly of its list, churn during the walk), or a change's outcome is being settled.
    #[serde(skip)]
    pub upstream_unsettled: bool,
    /// Records the walk would add to the base snapshots: the guards' counts grow by these
    /// before they judge, as in the cycle.
    #[serde(skip)]
    pub(crate) new_records: usize,
}

/// A local row as a walk's merge would leave it, and the record it was merged with.
#[derive(Debug, Clone)]
pub(crate) struct MergedRow {
    pub after: Option<Vec<rusqlite::types::Value>>,
    pub remote: Vec<rusqlite::types::Value>,
}

impl Plan {
    /// Whether the next cycle would change anything on either side.
    pub fn has_changes(&self) -> bool {
        [
            &self.pull_insert,
            &self.pull_update,
            &self.pull_remove,
            &self.push_create,
            &self.push_update,
            &self.push_delete,
        ]
        .iter()
        .any(|v| !v.is_empty())
    }
}
