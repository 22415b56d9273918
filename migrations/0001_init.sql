-- restsync schema, version 1.
--
-- Mirror tables are the public, user-editable interface. Each has a base snapshot table
-- holding the last upstream state known to be in sync (matched by upstream `id`), which
-- the three-way merge compares both sides against. Pushes go through `journal`.

CREATE TABLE phone_numbers (
    local_id    INTEGER PRIMARY KEY,
    id          INTEGER UNIQUE,
    contact_id  INTEGER,
    type        INTEGER,
    number      TEXT,
    extension   TEXT,
    description TEXT,
    profile_id  INTEGER
);

CREATE TABLE addresses (
    local_id    INTEGER PRIMARY KEY,
    id          INTEGER UNIQUE,
    contact_id  INTEGER,
    type        INTEGER,
    address     TEXT,
    country_id  INTEGER,
    state_id    INTEGER,
    city_id     INTEGER,
    description TEXT,
    profile_id  INTEGER
);

CREATE TABLE smart_numbers (
    local_id    INTEGER PRIMARY KEY,
    id          INTEGER UNIQUE,
    user_id     INTEGER,
    phone_a     TEXT,
    phone_b     TEXT,
    phone_x     TEXT,
    description TEXT,
    created_at  TEXT
);

-- Base snapshots: same columns as the mirror, keyed by upstream id, plus the raw upstream
-- JSON and a hash of it so an unchanged record is recognised without parsing it.
CREATE TABLE phone_numbers_base (
    id          INTEGER PRIMARY KEY,
    local_id    INTEGER,
    contact_id  INTEGER,
    type        INTEGER,
    number      TEXT,
    extension   TEXT,
    description TEXT,
    profile_id  INTEGER,
    raw         TEXT NOT NULL,
    hash        INTEGER NOT NULL,
    synced_at   TEXT NOT NULL
);

CREATE TABLE addresses_base (
    id          INTEGER PRIMARY KEY,
    local_id    INTEGER,
    contact_id  INTEGER,
    type        INTEGER,
    address     TEXT,
    country_id  INTEGER,
    state_id    INTEGER,
    city_id     INTEGER,
    description TEXT,
    profile_id  INTEGER,
    raw         TEXT NOT NULL,
    hash        INTEGER NOT NULL,
    synced_at   TEXT NOT NULL
);

CREATE TABLE smart_numbers_base (
    id          INTEGER PRIMARY KEY,
    local_id    INTEGER,
    user_id     INTEGER,
    phone_a     TEXT,
    phone_b     TEXT,
    phone_x     TEXT,
    description TEXT,
    created_at  TEXT,
    raw         TEXT NOT NULL,
    hash        INTEGER NOT NULL,
    synced_at   TEXT NOT NULL
);

-- One row per resource: how the last walks went.
CREATE TABLE sync_state (
    resource              TEXT PRIMARY KEY,
    last_walk_started_at  TEXT,
    last_complete_walk_at TEXT,
    row_count             INTEGER,
    pages                 INTEGER,
    last_duration_ms      INTEGER,
    last_error            TEXT,
    last_error_at         TEXT
);

-- The change journal: every push is written here before its request is sent.
-- state: pending -> in_flight -> done | failed; superseded when the row changed again
-- before the entry was sent. outcome: 'unknown' while a request may have reached upstream
-- without an answer (reconciled by natural key before anything is re-sent), 'created'
-- when upstream accepted a create whose record has not been identified yet.
CREATE TABLE journal (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    resource        TEXT NOT NULL,
    op              TEXT NOT NULL CHECK (op IN ('create', 'update', 'delete')),
    local_id        INTEGER,
    upstream_id     INTEGER,
    payload         TEXT NOT NULL,
    row_values      TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'in_flight', 'done', 'failed', 'superseded')),
    outcome         TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    last_status     INTEGER,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX journal_active ON journal (resource, state) WHERE state IN ('pending', 'in_flight', 'failed');
CREATE INDEX journal_row ON journal (resource, local_id);
CREATE INDEX journal_finished ON journal (updated_at) WHERE state IN ('done', 'superseded');

-- Every conflict the merge resolved, with both values, so nothing is lost silently.
CREATE TABLE conflicts (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    resource     TEXT NOT NULL,
    local_id     INTEGER,
    upstream_id  INTEGER,
    kind         TEXT NOT NULL CHECK (kind IN ('field', 'deleted_upstream', 'deleted_locally')),
    field        TEXT,
    base_value   TEXT,
    local_value  TEXT,
    remote_value TEXT,
    resolution   TEXT NOT NULL,
    detected_at  TEXT NOT NULL
);
CREATE INDEX conflicts_resource ON conflicts (resource, detected_at);
