-- Published ports: a host address and port forwarded to a container's address
-- and port. Unique per protocol, host address and port: a port is handed out once.
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
