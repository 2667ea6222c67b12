-- The runtime service's schema: container records. The containers issue fills in
-- the lifecycle; the record shape is here so the store and its trait exist.
CREATE TABLE containers (
    id         TEXT PRIMARY KEY,             -- 64 hex characters
    name       TEXT NOT NULL UNIQUE,         -- without the leading slash
    image      TEXT NOT NULL,                -- the reference the user gave
    image_id   TEXT NOT NULL,                -- resolved image ID
    state      TEXT NOT NULL,                -- created, running, exited, ...
    command    TEXT NOT NULL DEFAULT '',
    labels     TEXT NOT NULL DEFAULT '{}',   -- JSON object
    created_at TEXT NOT NULL
);
CREATE INDEX containers_image ON containers (image_id);
