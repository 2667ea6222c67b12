-- The runtime service's schema: container records. Docker's container config,
-- host config and networking config are kept as JSON documents, which the runtime
-- service alone interprets; the columns are what is queried or updated on its own.
CREATE TABLE containers (
    id                TEXT PRIMARY KEY,          -- 64 hex characters
    name              TEXT NOT NULL UNIQUE,      -- without the leading slash
    image             TEXT NOT NULL,             -- the reference the user gave
    image_id          TEXT NOT NULL,             -- resolved image ID
    created_at        TEXT NOT NULL,
    path              TEXT NOT NULL,             -- executable
    args              TEXT NOT NULL,             -- JSON array
    config            BLOB NOT NULL,             -- merged ContainerConfig JSON
    host_config       BLOB NOT NULL,             -- HostConfig JSON
    networking_config BLOB NOT NULL,             -- NetworkingConfig JSON
    status            TEXT NOT NULL,             -- created, running, exited, ...
    pid               BIGINT NOT NULL DEFAULT 0,
    exit_code         BIGINT NOT NULL DEFAULT 0,
    error             TEXT NOT NULL DEFAULT '',
    started_at        TEXT NOT NULL DEFAULT '0001-01-01T00:00:00Z',
    finished_at       TEXT NOT NULL DEFAULT '0001-01-01T00:00:00Z',
    oom_killed        BIGINT NOT NULL DEFAULT 0,
    restart_count     BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX containers_image ON containers (image_id);
