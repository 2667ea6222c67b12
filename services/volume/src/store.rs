//! Persistence of volume records and of the references containers hold.

use async_trait::async_trait;
use berth_core::{Error, Result};
use sqlx::{AnyPool, Row};

use crate::pb;

/// The volume service's schema: `migrations/volume/` for SQLite and
/// `migrations/volume/postgres/` for Postgres (the same tables; a migration is
/// written once for each).
pub static MIGRATIONS: berth_core::db::Migrations = berth_core::db::Migrations {
    sqlite: &sqlx::migrate!("../../migrations/volume"),
    postgres: &sqlx::migrate!("../../migrations/volume/postgres"),
};

/// Persistence of volume records and references.
///
/// Schema (`migrations/volume/`): `volumes(name PK, driver, mountpoint, labels
/// JSON, options JSON, created_at)` and `volume_refs(volume, container_id)`.
#[async_trait]
pub trait VolumeStore: Send + Sync + 'static {
    /// Every volume record, by name (`used_by` empty, `size` -1).
    async fn volumes(&self) -> Result<Vec<pb::Volume>>;
    /// Records a volume; a taken name is `AlreadyExists`.
    async fn insert(&self, v: &pb::Volume) -> Result<()>;
    /// Forgets a volume and its references.
    async fn delete(&self, name: &str) -> Result<()>;
    /// Every reference: (volume, container ID).
    async fn refs(&self) -> Result<Vec<(String, String)>>;
    /// Records a container's reference on a volume (idempotent).
    async fn add_ref(&self, volume: &str, container_id: &str) -> Result<()>;
    /// Drops every reference of a container; returns the volumes it had.
    async fn drop_refs(&self, container_id: &str) -> Result<Vec<String>>;
}

/// [`VolumeStore`] in SQL: the same statements on SQLite and on Postgres.
#[derive(Debug, Clone)]
pub struct SqlVolumeStore {
    pool: AnyPool,
}

impl SqlVolumeStore {
    /// Wraps an open pool whose migrations have run.
    pub fn new(pool: AnyPool) -> Self {
        Self { pool }
    }
}

use berth_proto::types::v1::kv::{from_text as pairs, to_text as json_of};

#[async_trait]
impl VolumeStore for SqlVolumeStore {
    async fn volumes(&self) -> Result<Vec<pb::Volume>> {
        let rows =
            sqlx::query("SELECT name, driver, mountpoint, labels, options, created_at FROM volumes ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok(pb::Volume {
                    name: r.try_get("name")?,
                    driver: r.try_get("driver")?,
                    mountpoint: r.try_get("mountpoint")?,
                    created_at: r.try_get("created_at")?,
                    labels: pairs(&r.try_get::<String, _>("labels")?),
                    options: pairs(&r.try_get::<String, _>("options")?),
                    scope: "local".into(),
                    used_by: vec![],
                    size: -1,
                })
            })
            .collect()
    }

    async fn insert(&self, v: &pb::Volume) -> Result<()> {
        sqlx::query(
            "INSERT INTO volumes (name, driver, mountpoint, labels, options, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&v.name)
        .bind(&v.driver)
        .bind(&v.mountpoint)
        .bind(json_of(&v.labels))
        .bind(json_of(&v.options))
        .bind(&v.created_at)
        .execute(&self.pool)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => {
                Error::already_exists(format!("volume {} already exists", v.name))
            }
            _ => Error::from(e),
        })?;
        Ok(())
    }

    async fn delete(&self, name: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM volume_refs WHERE volume = $1").bind(name).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM volumes WHERE name = $1").bind(name).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn refs(&self) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT volume, container_id FROM volume_refs ORDER BY volume, container_id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok((r.try_get("volume")?, r.try_get("container_id")?))).collect()
    }

    async fn add_ref(&self, volume: &str, container_id: &str) -> Result<()> {
        sqlx::query("INSERT INTO volume_refs (volume, container_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(volume)
            .bind(container_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn drop_refs(&self, container_id: &str) -> Result<Vec<String>> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query("SELECT volume FROM volume_refs WHERE container_id = $1")
            .bind(container_id)
            .fetch_all(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM volume_refs WHERE container_id = $1").bind(container_id).execute(&mut *tx).await?;
        tx.commit().await?;
        rows.iter().map(|r| Ok(r.try_get("volume")?)).collect()
    }
}
