-- The container's NetworkSettings while it runs (addresses, MAC, endpoint IDs,
-- as Docker's inspect shows them), as a JSON document; empty when it is stopped.
ALTER TABLE containers ADD COLUMN network_settings BLOB NOT NULL DEFAULT x'';
