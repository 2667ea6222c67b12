-- Bridge networks and their endpoints. A network's IPAM (subnet, gateway) and
-- driver options live on its record; each container plugged into a network has
-- one endpoint, whose address is unique on that network. Endpoints are what
-- survives a restart of the service: addresses are never handed out twice.
ALTER TABLE networks ADD COLUMN subnet TEXT NOT NULL DEFAULT '';
ALTER TABLE networks ADD COLUMN gateway TEXT NOT NULL DEFAULT '';
ALTER TABLE networks ADD COLUMN options TEXT NOT NULL DEFAULT '{}';  -- JSON object

CREATE TABLE endpoints (
    network_id   TEXT NOT NULL REFERENCES networks (id),
    container_id TEXT NOT NULL,
    endpoint_id  TEXT NOT NULL UNIQUE,
    ip           TEXT NOT NULL,
    mac          TEXT NOT NULL,
    host_veth    TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    PRIMARY KEY (network_id, container_id),
    UNIQUE (network_id, ip)
);
CREATE INDEX endpoints_container ON endpoints (container_id);
