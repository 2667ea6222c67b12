-- The runtime service's schema on Postgres: the table that migrations ../0001
-- to ../0005 (SQLite) build, in one step, with BYTEA for BLOB. A later
-- migration is written for both.
CREATE TABLE containers (
    id                TEXT PRIMARY KEY,          -- 64 hex characters
    name              TEXT NOT NULL UNIQUE,      -- without the leading slash
    image             TEXT NOT NULL,             -- the reference the user gave
    image_id          TEXT NOT NULL,             -- resolved image ID
    created_at        TEXT NOT NULL,
    path              TEXT NOT NULL,             -- executable
    args              TEXT NOT NULL,             -- JSON array
    config            BYTEA NOT NULL,            -- merged ContainerConfig JSON
    host_config       BYTEA NOT NULL,            -- HostConfig JSON
    networking_config BYTEA NOT NULL,            -- NetworkingConfig JSON
    status            TEXT NOT NULL,             -- created, running, exited, ...
    pid               BIGINT NOT NULL DEFAULT 0,
    exit_code         BIGINT NOT NULL DEFAULT 0,
    error             TEXT NOT NULL DEFAULT '',
    started_at        TEXT NOT NULL DEFAULT '0001-01-01T00:00:00Z',
    finished_at       TEXT NOT NULL DEFAULT '0001-01-01T00:00:00Z',
    oom_killed        BIGINT NOT NULL DEFAULT 0,
    restart_count     BIGINT NOT NULL DEFAULT 0,
    network_settings  BYTEA NOT NULL DEFAULT ''::BYTEA, -- inspect's NetworkSettings JSON while running
    mounts            BYTEA NOT NULL DEFAULT ''::BYTEA, -- MountPoint list JSON, resolved at create
    health            BYTEA NOT NULL DEFAULT ''::BYTEA, -- State.Health JSON
    manually_stopped  BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX containers_image ON containers (image_id);
