-- The volume service's schema on Postgres: the tables that migrations ../0001
-- and ../0002 (SQLite) build, in one step. A later migration is written for both.
CREATE TABLE volumes (
    name       TEXT PRIMARY KEY,
    driver     TEXT NOT NULL DEFAULT 'local',
    mountpoint TEXT NOT NULL,
    labels     TEXT NOT NULL DEFAULT '{}',   -- JSON object
    options    TEXT NOT NULL DEFAULT '{}',   -- JSON object
    created_at TEXT NOT NULL
);

-- Which containers hold a reference on which volume, from create to removal.
CREATE TABLE volume_refs (
    volume       TEXT NOT NULL,
    container_id TEXT NOT NULL,
    PRIMARY KEY (volume, container_id)
);
CREATE INDEX volume_refs_container ON volume_refs (container_id);
