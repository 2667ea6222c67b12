-- Whether the user stopped or killed the container (dockerd's
-- HasBeenManuallyStopped): its restart policy leaves it stopped, and an
-- `unless-stopped` container stays stopped when berthd starts. A start clears it.
ALTER TABLE containers ADD COLUMN manually_stopped INTEGER NOT NULL DEFAULT 0;
