//! The image service's metadata store: which images exist, their tags and layer
//! stacks, and which layers are unpacked. Content (layer tarballs and unpacked
//! directories) lives on disk; see [`crate::content`].
//!
//! Schema (`migrations/image/0001_init.sql`):
//! ```text
//! layers(chain_id PK, diff_id, parent, size, created_at)
//! images(id PK, config, created, size, parent, last_tag_time, added_at)
//! image_layers(image_id -> images, position, chain_id -> layers)   base first
//! refs(reference PK, image_id -> images, kind 'tag'|'digest', created_at)
//! ```
//! Update this header with every migration.
//!
//! The store sits behind [`ImageStore`] so that a Postgres implementation can
//! replace [`SqlImageStore`] without the service noticing. Writes that make an
//! image visible happen in one transaction, after its layers are on disk, so a
//! crash never leaves a half-made image behind.

use std::collections::HashMap;

use async_trait::async_trait;
use berth_core::{Error, Result};
use sqlx::{AnyPool, Row};

/// An unpacked layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRecord {
    /// Chain ID (also the directory name).
    pub chain_id: String,
    /// Digest of the uncompressed layer tarball.
    pub diff_id: String,
    /// Chain ID of the layer below, if any.
    pub parent: Option<String>,
    /// Bytes of regular files.
    pub size: i64,
}

/// An image with its references and layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    /// `sha256:` digest of the config.
    pub id: String,
    /// The config JSON, byte for byte.
    pub config: Vec<u8>,
    /// Creation time from the config.
    pub created: String,
    /// Sum of layer sizes.
    pub size: i64,
    /// Parent image ID, or empty.
    pub parent: String,
    /// Last time a tag was added, or empty.
    pub last_tag_time: String,
    /// Tags, sorted.
    pub tags: Vec<String>,
    /// Repository digests, sorted.
    pub digests: Vec<String>,
    /// Layers, base first.
    pub layers: Vec<LayerRecord>,
}

/// Persistence of image metadata.
#[async_trait]
pub trait ImageStore: Send + Sync + 'static {
    /// Every image.
    async fn images(&self) -> Result<Vec<ImageRecord>>;
    /// One image by full ID.
    async fn image(&self, id: &str) -> Result<Option<ImageRecord>>;
    /// The image a tag or digest reference points at.
    async fn resolve_ref(&self, reference: &str) -> Result<Option<String>>;
    /// Image IDs that start with `prefix` (`sha256:` included).
    async fn ids_with_prefix(&self, prefix: &str) -> Result<Vec<String>>;
    /// Whether a layer with this chain ID is recorded.
    async fn has_layer(&self, chain_id: &str) -> Result<bool>;
    /// Every recorded layer.
    async fn layers(&self) -> Result<Vec<LayerRecord>>;
    /// Records an image, any new layers of it, and its tags, in one transaction.
    /// Tags that pointed at other images move to this one.
    async fn commit_image(&self, image: &ImageRecord, tags: &[String], now: &str) -> Result<()>;
    /// Points `reference` at `image_id`.
    async fn tag(&self, reference: &str, image_id: &str, now: &str) -> Result<()>;
    /// Removes a reference; false when it did not exist.
    async fn untag(&self, reference: &str) -> Result<bool>;
    /// Deletes an image; returns the layers no image uses any more (their rows are gone).
    async fn delete_image(&self, id: &str) -> Result<Vec<LayerRecord>>;
}

/// [`ImageStore`] in SQL: the same statements on SQLite and on Postgres.
#[derive(Debug, Clone)]
pub struct SqlImageStore {
    pool: AnyPool,
}

/// The image service's schema: `migrations/image/` for SQLite and
/// `migrations/image/postgres/` for Postgres (the same tables; a migration is
/// written once for each).
pub static MIGRATIONS: berth_core::db::Migrations = berth_core::db::Migrations {
    sqlite: &sqlx::migrate!("../../migrations/image"),
    postgres: &sqlx::migrate!("../../migrations/image/postgres"),
};

impl SqlImageStore {
    /// Wraps an open pool whose migrations have run.
    pub fn new(pool: AnyPool) -> Self {
        Self { pool }
    }

    async fn refs_of(&self) -> Result<HashMap<String, (Vec<String>, Vec<String>)>> {
        let rows =
            sqlx::query("SELECT reference, image_id, kind FROM refs ORDER BY reference").fetch_all(&self.pool).await?;
        let mut out: HashMap<String, (Vec<String>, Vec<String>)> = HashMap::new();
        for row in rows {
            let entry = out.entry(row.try_get("image_id")?).or_default();
            let kind: String = row.try_get("kind")?;
            if kind == "digest" {
                entry.1.push(row.try_get("reference")?);
            } else {
                entry.0.push(row.try_get("reference")?);
            }
        }
        Ok(out)
    }

    async fn layers_of(&self) -> Result<HashMap<String, Vec<LayerRecord>>> {
        let rows = sqlx::query(
            "SELECT il.image_id, l.chain_id, l.diff_id, l.parent, l.size FROM image_layers il \
             JOIN layers l ON l.chain_id = il.chain_id ORDER BY il.image_id, il.position",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out: HashMap<String, Vec<LayerRecord>> = HashMap::new();
        for row in rows {
            out.entry(row.try_get("image_id")?).or_default().push(layer_from_row(&row)?);
        }
        Ok(out)
    }

    fn image_from_row(
        row: &sqlx::any::AnyRow,
        refs: &mut HashMap<String, (Vec<String>, Vec<String>)>,
        layers: &mut HashMap<String, Vec<LayerRecord>>,
    ) -> Result<ImageRecord> {
        let id: String = row.try_get("id")?;
        let (tags, digests) = refs.remove(&id).unwrap_or_default();
        Ok(ImageRecord {
            config: row.try_get("config")?,
            created: row.try_get("created")?,
            size: row.try_get("size")?,
            parent: row.try_get("parent")?,
            last_tag_time: row.try_get("last_tag_time")?,
            tags,
            digests,
            layers: layers.remove(&id).unwrap_or_default(),
            id,
        })
    }
}

fn layer_from_row(row: &sqlx::any::AnyRow) -> Result<LayerRecord> {
    Ok(LayerRecord {
        chain_id: row.try_get("chain_id")?,
        diff_id: row.try_get("diff_id")?,
        parent: row.try_get("parent")?,
        size: row.try_get("size")?,
    })
}

const IMAGE_COLUMNS: &str = "id, config, created, size, parent, last_tag_time";

#[async_trait]
impl ImageStore for SqlImageStore {
    async fn images(&self) -> Result<Vec<ImageRecord>> {
        let mut refs = self.refs_of().await?;
        let mut layers = self.layers_of().await?;
        let rows = sqlx::query(&format!("SELECT {IMAGE_COLUMNS} FROM images ORDER BY created DESC, id"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Self::image_from_row(r, &mut refs, &mut layers)).collect()
    }

    async fn image(&self, id: &str) -> Result<Option<ImageRecord>> {
        let Some(row) = sqlx::query(&format!("SELECT {IMAGE_COLUMNS} FROM images WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let mut refs = HashMap::new();
        for r in sqlx::query("SELECT reference, kind FROM refs WHERE image_id = $1 ORDER BY reference")
            .bind(id)
            .fetch_all(&self.pool)
            .await?
        {
            let entry: &mut (Vec<String>, Vec<String>) = refs.entry(id.to_string()).or_default();
            let kind: String = r.try_get("kind")?;
            if kind == "digest" {
                entry.1.push(r.try_get("reference")?);
            } else {
                entry.0.push(r.try_get("reference")?);
            }
        }
        let mut layers = HashMap::new();
        let stack = sqlx::query(
            "SELECT l.chain_id, l.diff_id, l.parent, l.size FROM image_layers il \
             JOIN layers l ON l.chain_id = il.chain_id WHERE il.image_id = $1 ORDER BY il.position",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        layers.insert(id.to_string(), stack.iter().map(layer_from_row).collect::<Result<Vec<_>>>()?);
        Self::image_from_row(&row, &mut refs, &mut layers).map(Some)
    }

    async fn resolve_ref(&self, reference: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT image_id FROM refs WHERE reference = $1")
            .bind(reference)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn ids_with_prefix(&self, prefix: &str) -> Result<Vec<String>> {
        // Prefixes are hex only (checked by the caller), so LIKE has no wildcards to escape.
        Ok(sqlx::query_scalar("SELECT id FROM images WHERE id LIKE $1 ORDER BY id")
            .bind(format!("{prefix}%"))
            .fetch_all(&self.pool)
            .await?)
    }

    async fn has_layer(&self, chain_id: &str) -> Result<bool> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM layers WHERE chain_id = $1")
            .bind(chain_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(n > 0)
    }

    async fn layers(&self) -> Result<Vec<LayerRecord>> {
        let rows = sqlx::query("SELECT chain_id, diff_id, parent, size FROM layers").fetch_all(&self.pool).await?;
        rows.iter().map(layer_from_row).collect()
    }

    async fn commit_image(&self, image: &ImageRecord, tags: &[String], now: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for layer in &image.layers {
            sqlx::query(
                "INSERT INTO layers (chain_id, diff_id, parent, size, created_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (chain_id) DO NOTHING",
            )
            .bind(&layer.chain_id)
            .bind(&layer.diff_id)
            .bind(&layer.parent)
            .bind(layer.size)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        let inserted = sqlx::query(
            "INSERT INTO images (id, config, created, size, parent, last_tag_time, added_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&image.id)
        .bind(&image.config)
        .bind(&image.created)
        .bind(image.size)
        .bind(&image.parent)
        .bind(if tags.is_empty() { "" } else { now })
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 1 {
            for (position, layer) in image.layers.iter().enumerate() {
                sqlx::query("INSERT INTO image_layers (image_id, position, chain_id) VALUES ($1, $2, $3)")
                    .bind(&image.id)
                    .bind(position as i64)
                    .bind(&layer.chain_id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        for tag in tags {
            upsert_ref(&mut tx, tag, &image.id, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn tag(&self, reference: &str, image_id: &str, now: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        upsert_ref(&mut tx, reference, image_id, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn untag(&self, reference: &str) -> Result<bool> {
        let n = sqlx::query("DELETE FROM refs WHERE reference = $1").bind(reference).execute(&self.pool).await?;
        Ok(n.rows_affected() > 0)
    }

    async fn delete_image(&self, id: &str) -> Result<Vec<LayerRecord>> {
        let mut tx = self.pool.begin().await?;
        let chains: Vec<String> =
            sqlx::query_scalar("SELECT chain_id FROM image_layers WHERE image_id = $1 ORDER BY position DESC")
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
        let n = sqlx::query("DELETE FROM images WHERE id = $1").bind(id).execute(&mut *tx).await?;
        if n.rows_affected() == 0 {
            return Err(Error::not_found(format!("No such image: {id}")));
        }
        // Images made on it keep no link to an image that is gone.
        sqlx::query("UPDATE images SET parent = '' WHERE parent = $1").bind(id).execute(&mut *tx).await?;
        // ON DELETE CASCADE removed the image's refs and stack rows; now drop layers nobody stacks.
        let mut orphans = Vec::new();
        for chain in chains {
            let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM image_layers WHERE chain_id = $1")
                .bind(&chain)
                .fetch_one(&mut *tx)
                .await?;
            if users == 0
                && let Some(row) = sqlx::query("SELECT chain_id, diff_id, parent, size FROM layers WHERE chain_id = $1")
                    .bind(&chain)
                    .fetch_optional(&mut *tx)
                    .await?
            {
                orphans.push(layer_from_row(&row)?);
                sqlx::query("DELETE FROM layers WHERE chain_id = $1").bind(&chain).execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(orphans)
    }
}

async fn upsert_ref(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    reference: &str,
    image_id: &str,
    now: &str,
) -> Result<()> {
    let kind = if reference.contains('@') { "digest" } else { "tag" };
    sqlx::query(
        "INSERT INTO refs (reference, image_id, kind, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (reference) DO UPDATE SET image_id = excluded.image_id, created_at = excluded.created_at",
    )
    .bind(reference)
    .bind(image_id)
    .bind(kind)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    if kind == "tag" {
        sqlx::query("UPDATE images SET last_tag_time = $1 WHERE id = $2")
            .bind(now)
            .bind(image_id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}
