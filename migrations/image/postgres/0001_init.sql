-- The image service's schema on Postgres: the tables of ../0001_init.sql (SQLite)
-- with BYTEA for BLOB. A later migration is written for both.

-- One row per unpacked layer. A chain ID names a layer with all layers below it,
-- so a row is shared by every image whose stack starts the same way.
CREATE TABLE layers (
    chain_id   TEXT PRIMARY KEY,             -- sha256:..., also the directory name
    diff_id    TEXT NOT NULL,                -- sha256 of the uncompressed layer tar
    parent     TEXT,                         -- chain ID below, NULL for a base layer
    size       BIGINT NOT NULL,              -- bytes of regular files in the layer
    created_at TEXT NOT NULL
);

-- One row per image; the ID is the digest of the config, which is stored verbatim.
CREATE TABLE images (
    id            TEXT PRIMARY KEY,          -- sha256:<hex of config>
    config        BYTEA NOT NULL,            -- the image config JSON, byte for byte
    created       TEXT NOT NULL,             -- "created" from the config (RFC 3339)
    size          BIGINT NOT NULL,           -- sum of the layers' sizes
    parent        TEXT NOT NULL DEFAULT '',
    last_tag_time TEXT NOT NULL DEFAULT '',
    added_at      TEXT NOT NULL
);

-- The layer stack of each image, base first (position 0).
CREATE TABLE image_layers (
    image_id TEXT NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    position BIGINT NOT NULL,
    chain_id TEXT NOT NULL REFERENCES layers (chain_id),
    PRIMARY KEY (image_id, position)
);
CREATE INDEX image_layers_chain ON image_layers (chain_id);

-- Tags ("busybox:latest") and digests ("busybox@sha256:...") in familiar form.
CREATE TABLE refs (
    reference  TEXT PRIMARY KEY,
    image_id   TEXT NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    kind       TEXT NOT NULL,                -- 'tag' or 'digest'
    created_at TEXT NOT NULL
);
CREATE INDEX refs_image ON refs (image_id);
