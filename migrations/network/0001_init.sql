-- The network service's schema: network records. Bridges, IPAM and endpoints
-- arrive with the networking issue.
CREATE TABLE networks (
    id         TEXT PRIMARY KEY,             -- 64 hex characters
    name       TEXT NOT NULL UNIQUE,
    driver     TEXT NOT NULL,                -- bridge, host, null
    internal   BIGINT NOT NULL DEFAULT 0,
    labels     TEXT NOT NULL DEFAULT '{}',   -- JSON object
    created_at TEXT NOT NULL
);
