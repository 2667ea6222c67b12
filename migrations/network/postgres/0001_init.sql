-- The network service's schema on Postgres: the tables that migrations
-- ../0001 to ../0006 (SQLite) build, in one step. A later migration is
-- written for both.

-- Networks, with their IPAM (IPv4 subnet, range and gateway; IPv6 subnet and
-- gateway, empty without IPv6) and driver options (JSON object).
CREATE TABLE networks (
    id         TEXT PRIMARY KEY,             -- 64 hex characters
    name       TEXT NOT NULL UNIQUE,
    driver     TEXT NOT NULL,                -- bridge, host, null
    internal   BIGINT NOT NULL DEFAULT 0,
    labels     TEXT NOT NULL DEFAULT '{}',   -- JSON object
    created_at TEXT NOT NULL,
    subnet     TEXT NOT NULL DEFAULT '',
    gateway    TEXT NOT NULL DEFAULT '',
    options    TEXT NOT NULL DEFAULT '{}',   -- JSON object
    ip_range   TEXT NOT NULL DEFAULT '',
    subnet6    TEXT NOT NULL DEFAULT '',
    gateway6   TEXT NOT NULL DEFAULT ''
);

-- One endpoint per container plugged into a network; its addresses are unique
-- on that network and never handed out twice.
CREATE TABLE endpoints (
    network_id     TEXT NOT NULL REFERENCES networks (id),
    container_id   TEXT NOT NULL,
    endpoint_id    TEXT NOT NULL UNIQUE,
    ip             TEXT NOT NULL,
    mac            TEXT NOT NULL,
    host_veth      TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    container_name TEXT NOT NULL DEFAULT '',
    aliases        TEXT NOT NULL DEFAULT '[]', -- JSON array
    ip6            TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (network_id, container_id),
    UNIQUE (network_id, ip)
);
CREATE INDEX endpoints_container ON endpoints (container_id);

-- Published ports, unique per protocol, host address and port.
CREATE TABLE ports (
    container_id   TEXT NOT NULL,
    network_id     TEXT NOT NULL,
    proto          TEXT NOT NULL,            -- tcp or udp
    host_ip        TEXT NOT NULL,            -- 0.0.0.0 for every address
    host_port      BIGINT NOT NULL,
    container_ip   TEXT NOT NULL,
    container_port BIGINT NOT NULL,
    UNIQUE (proto, host_ip, host_port)
);
CREATE INDEX ports_container ON ports (container_id);

-- The embedded DNS's running resolvers, by the identity of their network
-- namespace ("dev:inode"), and their upstreams (JSON array).
CREATE TABLE resolvers (
    container_id TEXT PRIMARY KEY,
    pid          BIGINT NOT NULL,
    netns        TEXT NOT NULL,
    upstreams    TEXT NOT NULL DEFAULT '[]'
);
