-- Which containers hold a reference on which volume: from the container's create
-- to its removal, as in dockerd (a volume used by any container, running or not,
-- cannot be removed). Stored, so a crash forgets none.
CREATE TABLE volume_refs (
    volume       TEXT NOT NULL,
    container_id TEXT NOT NULL,
    PRIMARY KEY (volume, container_id)
);
CREATE INDEX volume_refs_container ON volume_refs (container_id);
