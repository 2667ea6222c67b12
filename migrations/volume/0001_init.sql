-- The volume service's schema: volume records. The local driver, reference counts
-- and copy-up arrive with the volumes issue.
CREATE TABLE volumes (
    name       TEXT PRIMARY KEY,
    driver     TEXT NOT NULL DEFAULT 'local',
    mountpoint TEXT NOT NULL,
    labels     TEXT NOT NULL DEFAULT '{}',   -- JSON object
    options    TEXT NOT NULL DEFAULT '{}',   -- JSON object
    created_at TEXT NOT NULL
);
