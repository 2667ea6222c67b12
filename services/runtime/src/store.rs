//! The runtime service's store of container records.
//!
//! Schema (`migrations/runtime/0001_init.sql`):
//! ```text
//! containers(id PK, name UNIQUE, image, image_id, created_at, path, args JSON,
//!            config JSON, host_config JSON, networking_config JSON,
//!            status, pid, exit_code, error, started_at, finished_at, oom_killed, restart_count,
//!            network_settings JSON, mounts JSON, health JSON, manually_stopped)
//! ```
//! Update this header with every migration.
//!
//! [`CachedContainerStore`] keeps every record in memory in front of the
//! durable store, as dockerd keeps its containers in memory: listing (`docker
//! ps`, every name and ID lookup) reads no database, and every change is written
//! through before it is visible.

use async_trait::async_trait;
use berth_core::{Error, Result};
use berth_proto::types::v1::KeyValue;
use sqlx::{AnyPool, Row};

use crate::pb;

/// The runtime service's schema: `migrations/runtime/` for SQLite and
/// `migrations/runtime/postgres/` for Postgres (the same tables; a migration is
/// written once for each).
pub static MIGRATIONS: berth_core::db::Migrations = berth_core::db::Migrations {
    sqlite: &sqlx::migrate!("../../migrations/runtime"),
    postgres: &sqlx::migrate!("../../migrations/runtime/postgres"),
};

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
    /// Records a new state; an empty `started_at` keeps the old one, and the
    /// health is left as it is (see `set_health`).
    async fn set_state(&self, id: &str, state: &pb::ContainerState) -> Result<()>;
    /// Records the healthcheck's state (Docker's `State.Health` JSON).
    async fn set_health(&self, id: &str, health: &[u8]) -> Result<()>;
    /// Replaces the HostConfig JSON (`docker update`).
    async fn set_host_config(&self, id: &str, host_config: &[u8]) -> Result<()>;
    /// Records the restart count and whether the user stopped the container.
    async fn set_restart(&self, id: &str, restart_count: i64, manually_stopped: bool) -> Result<()>;
    /// Replaces the NetworkingConfig JSON (networks connected and disconnected).
    async fn set_networking(&self, id: &str, networking_config: &[u8]) -> Result<()>;
}

/// [`ContainerStore`] in SQL: the same statements on SQLite and on Postgres.
#[derive(Debug, Clone)]
pub struct SqlContainerStore {
    pool: AnyPool,
}

impl SqlContainerStore {
    /// Wraps an open pool whose migrations have run.
    pub fn new(pool: AnyPool) -> Self {
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
    // Written by the runtime at create from a parsed Config.
    let config: berth_models::container::ContainerConfig =
        berth_models::parse_or_default("Config", config).unwrap_or_default();
    config.labels.as_ref().map(berth_proto::types::v1::kv::from_map).unwrap_or_default()
}

#[async_trait]
impl ContainerStore for SqlContainerStore {
    async fn containers(&self) -> Result<Vec<pb::Container>> {
        let rows = sqlx::query(
            "SELECT id, name, image, image_id, created_at, path, args, config, host_config, networking_config, \
             status, pid, exit_code, error, started_at, finished_at, oom_killed, restart_count, network_settings, \
             mounts, health, manually_stopped FROM containers ORDER BY created_at DESC, id",
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
                        health: r.try_get("health")?,
                    }),
                    config,
                    host_config: r.try_get("host_config")?,
                    networking_config: r.try_get("networking_config")?,
                    restart_count: r.try_get("restart_count")?,
                    mounts: r.try_get("mounts")?,
                    manually_stopped: r.try_get::<i64, _>("manually_stopped")? != 0,
                })
            })
            .collect()
    }

    async fn insert(&self, c: &pb::Container) -> Result<()> {
        let state = c.state.clone().unwrap_or_default();
        sqlx::query(
            "INSERT INTO containers (id, name, image, image_id, created_at, path, args, config, host_config, \
             networking_config, status, mounts) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
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
        .bind(&c.mounts)
        .execute(&self.pool)
        .await
        .map_err(|e| unique_violation(e, &c.name))?;
        Ok(())
    }

    async fn rename(&self, id: &str, new_name: &str) -> Result<()> {
        let n = sqlx::query("UPDATE containers SET name = $1 WHERE id = $2")
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
            "UPDATE containers SET status = $1, pid = $2, exit_code = $3, error = $4, \
             started_at = CASE WHEN $5 = '' THEN started_at ELSE $6 END, \
             finished_at = CASE WHEN $7 = '' THEN finished_at ELSE $8 END, oom_killed = $9, network_settings = $10 \
             WHERE id = $11",
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

    async fn set_health(&self, id: &str, health: &[u8]) -> Result<()> {
        sqlx::query("UPDATE containers SET health = $1 WHERE id = $2")
            .bind(health)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn set_host_config(&self, id: &str, host_config: &[u8]) -> Result<()> {
        sqlx::query("UPDATE containers SET host_config = $1 WHERE id = $2")
            .bind(host_config)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn set_restart(&self, id: &str, restart_count: i64, manually_stopped: bool) -> Result<()> {
        sqlx::query("UPDATE containers SET restart_count = $1, manually_stopped = $2 WHERE id = $3")
            .bind(restart_count)
            .bind(manually_stopped as i64)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete(&self, id: &str) -> Result<bool> {
        let n = sqlx::query("DELETE FROM containers WHERE id = $1").bind(id).execute(&self.pool).await?;
        Ok(n.rows_affected() > 0)
    }

    async fn set_networking(&self, id: &str, networking_config: &[u8]) -> Result<()> {
        sqlx::query("UPDATE containers SET networking_config = $1 WHERE id = $2")
            .bind(networking_config)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// A [`ContainerStore`] with every record in memory, written through to `inner`.
/// The records are loaded once, on first use; this must be the only writer of
/// `inner` (the runtime service owns its store).
pub struct CachedContainerStore<S> {
    inner: S,
    /// Records newest first, as `containers` returns them; `None` until loaded.
    cache: tokio::sync::RwLock<Option<Vec<pb::Container>>>,
}

impl<S: ContainerStore> CachedContainerStore<S> {
    /// A cache in front of `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner, cache: tokio::sync::RwLock::new(None) }
    }

    async fn loaded(&self) -> Result<tokio::sync::RwLockWriteGuard<'_, Option<Vec<pb::Container>>>> {
        let mut guard = self.cache.write().await;
        if guard.is_none() {
            *guard = Some(self.inner.containers().await?);
        }
        Ok(guard)
    }
}

/// The time the schema stores for "never".
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// A record as the database has it right after `insert`: labels derived from
/// the config, and a state of only its status.
fn as_inserted(c: &pb::Container) -> pb::Container {
    let mut c = c.clone();
    c.labels = labels_of(&c.config);
    let status = c.state.take().map(|s| s.status).unwrap_or_default();
    c.state = Some(pb::ContainerState {
        status,
        started_at: ZERO_TIME.into(),
        finished_at: ZERO_TIME.into(),
        ..Default::default()
    });
    c
}

fn newest_first(list: &mut [pb::Container]) {
    list.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.id.cmp(&b.id)));
}

#[async_trait]
impl<S: ContainerStore> ContainerStore for CachedContainerStore<S> {
    async fn containers(&self) -> Result<Vec<pb::Container>> {
        if let Some(list) = self.cache.read().await.as_ref() {
            return Ok(list.clone());
        }
        Ok(self.loaded().await?.as_ref().cloned().unwrap_or_default())
    }

    async fn insert(&self, c: &pb::Container) -> Result<()> {
        let mut guard = self.loaded().await?;
        self.inner.insert(c).await?;
        if let Some(list) = guard.as_mut() {
            list.push(as_inserted(c));
            newest_first(list);
        }
        Ok(())
    }

    async fn rename(&self, id: &str, new_name: &str) -> Result<()> {
        let mut guard = self.loaded().await?;
        self.inner.rename(id, new_name).await?;
        if let Some(c) = guard.as_mut().and_then(|l| l.iter_mut().find(|c| c.id == id)) {
            c.name = new_name.to_string();
        }
        Ok(())
    }

    async fn delete(&self, id: &str) -> Result<bool> {
        let mut guard = self.loaded().await?;
        let existed = self.inner.delete(id).await?;
        if let Some(list) = guard.as_mut() {
            list.retain(|c| c.id != id);
        }
        Ok(existed)
    }

    async fn set_state(&self, id: &str, state: &pb::ContainerState) -> Result<()> {
        let mut guard = self.loaded().await?;
        self.inner.set_state(id, state).await?;
        if let Some(c) = guard.as_mut().and_then(|l| l.iter_mut().find(|c| c.id == id)) {
            let old = c.state.take().unwrap_or_default();
            let mut new = state.clone();
            // As the SQL does: an empty time keeps the old one.
            if new.started_at.is_empty() {
                new.started_at = old.started_at;
            }
            if new.finished_at.is_empty() {
                new.finished_at = old.finished_at;
            }
            new.health = old.health;
            c.state = Some(new);
        }
        Ok(())
    }

    async fn set_health(&self, id: &str, health: &[u8]) -> Result<()> {
        let mut guard = self.loaded().await?;
        self.inner.set_health(id, health).await?;
        if let Some(state) =
            guard.as_mut().and_then(|l| l.iter_mut().find(|c| c.id == id)).and_then(|c| c.state.as_mut())
        {
            state.health = health.to_vec();
        }
        Ok(())
    }

    async fn set_host_config(&self, id: &str, host_config: &[u8]) -> Result<()> {
        let mut guard = self.loaded().await?;
        self.inner.set_host_config(id, host_config).await?;
        if let Some(c) = guard.as_mut().and_then(|l| l.iter_mut().find(|c| c.id == id)) {
            c.host_config = host_config.to_vec();
        }
        Ok(())
    }

    async fn set_restart(&self, id: &str, restart_count: i64, manually_stopped: bool) -> Result<()> {
        let mut guard = self.loaded().await?;
        self.inner.set_restart(id, restart_count, manually_stopped).await?;
        if let Some(c) = guard.as_mut().and_then(|l| l.iter_mut().find(|c| c.id == id)) {
            c.restart_count = restart_count;
            c.manually_stopped = manually_stopped;
        }
        Ok(())
    }

    async fn set_networking(&self, id: &str, networking_config: &[u8]) -> Result<()> {
        let mut guard = self.loaded().await?;
        self.inner.set_networking(id, networking_config).await?;
        if let Some(c) = guard.as_mut().and_then(|l| l.iter_mut().find(|c| c.id == id)) {
            c.networking_config = networking_config.to_vec();
        }
        Ok(())
    }
}
