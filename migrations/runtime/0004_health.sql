-- The healthcheck's state (Docker's State.Health, JSON; empty for a container
-- without a healthcheck), written by the probe monitor only.
ALTER TABLE containers ADD COLUMN health BLOB NOT NULL DEFAULT x'';
