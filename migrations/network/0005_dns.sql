-- The embedded DNS: the aliases a container answers to on a network
-- (`--network-alias`, `network connect --alias`; a JSON array), and the
-- containers whose resolver runs, with the identity of their network namespace
-- ("dev:inode" of /proc/PID/ns/net) so that a restarted service serves them
-- again, and never a namespace a reused PID names. Upstreams: a JSON array of
-- the container's --dns servers (empty: the host's).
ALTER TABLE endpoints ADD COLUMN aliases TEXT NOT NULL DEFAULT '[]';
CREATE TABLE resolvers (
    container_id TEXT PRIMARY KEY,
    pid          BIGINT NOT NULL,
    netns        TEXT NOT NULL,
    upstreams    TEXT NOT NULL DEFAULT '[]'
);
