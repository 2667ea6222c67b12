-- The container's volumes and binds as resolved at create (Docker's MountPoint
-- list as inspect shows it, JSON): which volume backs which path, so start and
-- removal need not resolve them again.
ALTER TABLE containers ADD COLUMN mounts BLOB NOT NULL DEFAULT x'';
