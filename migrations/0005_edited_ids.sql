-- restsync schema, version 5: a cleared id is told apart from a new row, a restored
-- conflict is restored once, rows with unknown ids are found without a scan, and an
-- interrupted request settles by the timeout it was sent with.
--
-- edited_ids: mirror rows whose `id` someone changed by UPDATE (typed over or cleared; the
--   tracking triggers of src/store/tracking.rs add a row then, and remove it when the row is
--   deleted or its local_id is taken by a new row). Such a row is still its record's row with
--   the id edited, whatever else the UPDATE changed: nothing is pushed for it, and a walk
--   does not merge upstream's records into it, until the id is put back. A row deleted and
--   inserted again (SQLite may give it the same local_id) is a new row and is created. Rows
--   cleared before this version are judged as before: an edited id only when nothing else
--   changed.
-- conflicts.restored_at: when `restsync conflicts restore` put the losing value back; a
--   conflict is restored at most once (a second restore of a deleted-upstream conflict
--   would create the record twice).
CREATE TABLE edited_ids (
    resource TEXT NOT NULL,
    local_id INTEGER NOT NULL,
    -- the id the row held before the edit (its record), so an UPDATE that also moved the
    -- row to another local_id is still found as that record's row
    old_id   INTEGER,
    PRIMARY KEY (resource, local_id)
) WITHOUT ROWID;

ALTER TABLE conflicts ADD COLUMN restored_at TEXT;

-- Rows naming an id upstream never gave are now found through their change marks (kept
-- until a person settles the row) rather than a scan after every walk: the first push pass
-- after this upgrade compares every row once and marks them.
UPDATE change_tracking SET full_check_at = NULL;

-- journal.sent_timeout_ms: the request timeout in force when the entry was last sent. A
--   request cut off by a crash settles after this long (plus the list lag) even when the
--   configuration was shortened before the restart: the request may run that long upstream.
ALTER TABLE journal ADD COLUMN sent_timeout_ms INTEGER;
