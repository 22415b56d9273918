-- restsync schema, version 2: the journal remembers when an unresolved create may be
-- judged, so its lifecycle never needs to guess; the sync state says what kind of problem
-- the last error was, so `status` can tell "needs a person" from "will pass".
--
-- settle_at:   for a request whose outcome is unknown (a timeout, a dropped connection, a
--              5xx, a process killed mid-request): the time after which that request can
--              no longer be in progress upstream. A lookup that misses before it proves
--              nothing; only a miss after it makes the create safe to send again.
-- accepted_at: when upstream accepted a create without saying what it made (Plusofon's
--              `{"success": true}`). Such a create is never sent again by restsync; after
--              `sync.identify_timeout_secs` without finding it, it is failed for a person.
ALTER TABLE journal ADD COLUMN settle_at TEXT;
ALTER TABLE journal ADD COLUMN accepted_at TEXT;

UPDATE journal SET accepted_at = updated_at WHERE outcome = 'created';
UPDATE journal SET settle_at = updated_at WHERE outcome = 'unknown' OR state = 'in_flight';

-- last_error_kind: 'transient' (a later cycle continues), 'needs_human' (a guard refused,
-- upstream data a person must fix) or 'fatal'. NULL when last_error is NULL.
ALTER TABLE sync_state ADD COLUMN last_error_kind TEXT;
UPDATE sync_state SET last_error_kind = 'transient' WHERE last_error IS NOT NULL;
