//! The runtime service's store of container records.
//!
//! Schema (`migrations/runtime/0001_init.sql`):
//! ```text
//! containers(id PK, name UNIQUE, image, image_id, created_at, path, args JSON,
//!            config JSON, host_config JSON, networking_config JSON,
//!            status, pid, exit_code, error, started_at, finished_at, oom_killed, restart_count)
//! ```
//! Update this header with every migration.

use async_trait::async_trait;
use berth_core::{Error, Result};
use berth_proto::types::v1::KeyValue;
use sqlx::{Row, SqlitePool};

use crate::pb;

/// The embedded migrations of the runtime service.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/runtime");

/// Persistence of container records.
#[async_trait]
pub trait ContainerStore: Send + Sync + 'static {
    /// Every container record, newest first.
    async fn containers(&self) -> Result<Vec<pb::Container>>;
    /// Inserts a new record; a name clash is [`berth_core::ErrorKind::AlreadyExists`].
    async fn insert(&self, c: &pb::Container) -> Result<()>;
    /// Renames a container; a name clash is [`berth_core::ErrorKind::AlreadyExists`].
    async fn rename(&self, id: &str, new_name: &str) -> Result<()>;
    /// Deletes a record; false when it did not exist.
    async fn delete(&self, id: &str) -> Result<bool>;
    /// Records a new state; an empty `started_at` keeps the old one.
    async fn set_state(&self, id: &str, state: &pb::ContainerState) -> Result<()>;
}

/// [`ContainerStore`] on SQLite.
#[derive(Debug, Clone)]
pub struct SqliteContainerStore {
    pool: SqlitePool,
}

impl SqliteContainerStore {
    /// Wraps an open pool whose migrations have run.
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

fn unique_violation(e: sqlx::Error, what: &str) -> Error {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => Error::already_exists(what.to_string()),
        _ => e.into(),
    }
}

fn labels_of(config: &[u8]) -> Vec<KeyValue> {
    let v: serde_json::Value = serde_json::from_slice(config).unwrap_or_default();
    let mut out: Vec<KeyValue> = v["Labels"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| KeyValue { key: k.clone(), value: v.as_str().unwrap_or("").into() }).collect())
        .unwrap_or_default();
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

#[async_trait]
impl ContainerStore for SqliteContainerStore {
    async fn containers(&self) -> Result<Vec<pb::Container>> {
        let rows = sqlx::query(
            "SELECT id, name, image, image_id, created_at, path, args, config, host_config, networking_config, \
             status, pid, exit_code, error, started_at, finished_at, oom_killed, restart_count, network_settings \
             FROM containers ORDER BY created_at DESC, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let config: Vec<u8> = r.try_get("config")?;
                let args: String = r.try_get("args")?;
                Ok(pb::Container {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    image: r.try_get("image")?,
                    image_id: r.try_get("image_id")?,
                    created: r.try_get("created_at")?,
                    labels: labels_of(&config),
                    path: r.try_get("path")?,
                    args: serde_json::from_str(&args).unwrap_or_default(),
                    state: Some(pb::ContainerState {
                        status: r.try_get("status")?,
                        pid: r.try_get("pid")?,
                        exit_code: r.try_get("exit_code")?,
                        error: r.try_get("error")?,
                        started_at: r.try_get("started_at")?,
                        finished_at: r.try_get("finished_at")?,
                        oom_killed: r.try_get::<i64, _>("oom_killed")? != 0,
                        network_settings: r.try_get("network_settings")?,
                    }),
                    config,
                    host_config: r.try_get("host_config")?,
                    networking_config: r.try_get("networking_config")?,
                    restart_count: r.try_get("restart_count")?,
                })
            })
            .collect()
    }

    async fn insert(&self, c: &pb::Container) -> Result<()> {
        let state = c.state.clone().unwrap_or_default();
        sqlx::query(
            "INSERT INTO containers (id, name, image, image_id, created_at, path, args, config, host_config, \
             networking_config, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&c.id)
        .bind(&c.name)
        .bind(&c.image)
        .bind(&c.image_id)
        .bind(&c.created)
        .bind(&c.path)
        .bind(serde_json::to_string(&c.args).map_err(|e| Error::internal(e.to_string()))?)
        .bind(&c.config)
        .bind(&c.host_config)
        .bind(&c.networking_config)
        .bind(&state.status)
        .execute(&self.pool)
        .await
        .map_err(|e| unique_violation(e, &c.name))?;
        Ok(())
    }

    async fn rename(&self, id: &str, new_name: &str) -> Result<()> {
        let n = sqlx::query("UPDATE containers SET name = ? WHERE id = ?")
            .bind(new_name)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(|e| unique_violation(e, new_name))?;
        if n.rows_affected() == 0 {
            return Err(Error::not_found(format!("No such container: {id}")));
        }
        Ok(())
    }

    async fn set_state(&self, id: &str, s: &pb::ContainerState) -> Result<()> {
        sqlx::query(
            "UPDATE containers SET status = ?, pid = ?, exit_code = ?, error = ?, \
             started_at = CASE WHEN ? = '' THEN started_at ELSE ? END, \
             finished_at = CASE WHEN ? = '' THEN finished_at ELSE ? END, oom_killed = ?, network_settings = ? \
             WHERE id = ?",
        )
        .bind(&s.status)
        .bind(s.pid)
        .bind(s.exit_code)
        .bind(&s.error)
        .bind(&s.started_at)
        .bind(&s.started_at)
        .bind(&s.finished_at)
        .bind(&s.finished_at)
        .bind(s.oom_killed as i64)
        .bind(&s.network_settings)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete(&self, id: &str) -> Result<bool> {
        let n = sqlx::query("DELETE FROM containers WHERE id = ?").bind(id).execute(&self.pool).await?;
        Ok(n.rows_affected() > 0)
    }
}
