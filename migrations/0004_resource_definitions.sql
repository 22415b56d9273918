-- restsync schema, version 4: resources defined in the configuration.
--
-- A defined resource's mirror table and base snapshot are created from its definition on
-- start-up (they are not in this file: their columns are the user's). This table remembers
-- what each was created with, so a later definition can add columns (on both tables, filled
-- from the stored raw records) but never silently drop, rename or retype one, nor point the
-- table at another upstream or path.
--
-- name:       the resource, also its mirror table (`<name>_base` is its base snapshot)
-- definition: JSON {"upstream", "path", "columns": [{"name", "type"}]} as last applied
CREATE TABLE resource_definitions (
    name        TEXT PRIMARY KEY,
    definition  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
) WITHOUT ROWID;
