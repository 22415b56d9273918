-- restsync schema, version 3: local edits are recorded as they happen.
--
-- Triggers on the mirror tables record every edited row in `changed_rows`, in the same
-- transaction as the edit, whoever makes it (sqlite3, a program, a person). The triggers
-- come from one template in src/store/tracking.rs, installed on every start (so a trigger
-- someone dropped comes back, and any mirror table gets the same ones). A push pass
-- reads only those rows and compares them with their base snapshots, so finding local
-- edits costs O(edits), not a scan of the mirror.
--
-- restsync's own connections run with triggers disabled (SQLITE_DBCONFIG_ENABLE_TRIGGER,
-- a per-connection setting), so its writes (pulls, write-backs, adoption) record nothing
-- and cost nothing extra; every other connection fires them.
--
-- changed_rows.kind: 'local_id' names a mirror row (inserted, updated or deleted) to compare
--   with its base; 'id' names an upstream id whose mirror row was deleted or lost that id
--   (the base snapshot whose row may be gone).
-- change_tracking.edits: counts recorded edits; the daemon wakes up when it moves, not on
--   any commit (so its own writes never wake it).
-- change_tracking.full_check_at: when every row was last compared with its base (the
--   periodic safety net); NULL here, so the first run after this upgrade does one.

CREATE TABLE changed_rows (
    resource TEXT NOT NULL,
    kind     TEXT NOT NULL CHECK (kind IN ('local_id', 'id')),
    key      INTEGER NOT NULL,
    PRIMARY KEY (resource, kind, key)
) WITHOUT ROWID;

CREATE TABLE change_tracking (
    singleton     INTEGER PRIMARY KEY CHECK (singleton = 1),
    edits         INTEGER NOT NULL DEFAULT 0,
    full_check_at TEXT
);
INSERT INTO change_tracking (singleton) VALUES (1);

-- A push pass looks up the entries about a record by its upstream id.
CREATE INDEX journal_record ON journal (resource, upstream_id);
