-- User-defined networks: the part of the subnet addresses come from, and the
-- name of each endpoint's container (for `docker network inspect`).
ALTER TABLE networks ADD COLUMN ip_range TEXT NOT NULL DEFAULT '';
ALTER TABLE endpoints ADD COLUMN container_name TEXT NOT NULL DEFAULT '';
