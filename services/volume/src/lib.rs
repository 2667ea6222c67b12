//! Berth's volume service: named and anonymous volumes, their reference counts,
//! bind and tmpfs mounts.
//!
//! This version holds the volume records and lists them; the local driver,
//! copy-up and prune arrive with the volumes issue. The shape is the one every
//! service has: the [`VolumeApi`] trait, [`LocalVolumes`] over a [`VolumeStore`],
//! and gRPC server and client adapters.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use berth_core::grpc::{RequestIdInterceptor, status_to_error};
use berth_core::{Error, Result};
use berth_proto::types::v1::{Filter, KeyValue};
pub use berth_proto::volume::v1 as pb;
use sqlx::{Row, SqlitePool};
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// What the volume service does, in-process or remote.
#[async_trait]
pub trait VolumeApi: Send + Sync + 'static {
    /// Volumes matching `filters`.
    async fn list(&self, filters: Vec<Filter>) -> Result<Vec<pb::Volume>>;
}

/// The embedded migrations of the volume service.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/volume");

/// Persistence of volume records.
///
/// Schema (`migrations/volume/0001_init.sql`):
/// `volumes(name PK, driver, mountpoint, labels JSON, options JSON, created_at)`.
#[async_trait]
pub trait VolumeStore: Send + Sync + 'static {
    /// Every volume record, by name.
    async fn volumes(&self) -> Result<Vec<pb::Volume>>;
}

/// [`VolumeStore`] on SQLite.
#[derive(Debug, Clone)]
pub struct SqliteVolumeStore {
    pool: SqlitePool,
}

impl SqliteVolumeStore {
    /// Wraps an open pool whose migrations have run.
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

fn pairs(json: &str) -> Vec<KeyValue> {
    serde_json::from_str::<BTreeMap<String, String>>(json)
        .unwrap_or_default()
        .into_iter()
        .map(|(key, value)| KeyValue { key, value })
        .collect()
}

#[async_trait]
impl VolumeStore for SqliteVolumeStore {
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
                })
            })
            .collect()
    }
}

/// The volume service over a volume store.
pub struct LocalVolumes {
    store: Arc<dyn VolumeStore>,
}

impl LocalVolumes {
    /// Opens the service's state under `dir` (`<data-root>/volume`).
    pub async fn open(dir: &Path) -> Result<Self> {
        let pool = berth_core::db::open_sqlite(&dir.join("volume.db"), &MIGRATOR).await?;
        Ok(Self::with_store(Arc::new(SqliteVolumeStore::new(pool))))
    }

    /// A service over any store.
    pub fn with_store(store: Arc<dyn VolumeStore>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl VolumeApi for LocalVolumes {
    async fn list(&self, filters: Vec<Filter>) -> Result<Vec<pb::Volume>> {
        const KEYS: [&str; 4] = ["dangling", "driver", "label", "name"];
        if let Some(f) = filters.iter().find(|f| !KEYS.contains(&f.key.as_str())) {
            return Err(Error::invalid(format!("invalid filter '{}'", f.key)));
        }
        let names: Vec<&String> = filters.iter().filter(|f| f.key == "name").flat_map(|f| &f.values).collect();
        Ok(self
            .store
            .volumes()
            .await?
            .into_iter()
            .filter(|v| names.is_empty() || names.iter().any(|w| v.name.contains(w.as_str())))
            .collect())
    }
}

/// Serves a [`VolumeApi`] over gRPC.
#[derive(Clone)]
pub struct VolumeGrpcServer {
    api: Arc<dyn VolumeApi>,
}

impl VolumeGrpcServer {
    /// The tonic service for `api`.
    pub fn service(api: Arc<dyn VolumeApi>) -> pb::volume_service_server::VolumeServiceServer<Self> {
        pb::volume_service_server::VolumeServiceServer::new(Self { api })
    }
}

#[tonic::async_trait]
impl pb::volume_service_server::VolumeService for VolumeGrpcServer {
    async fn list_volumes(
        &self,
        req: Request<pb::ListVolumesRequest>,
    ) -> Result<Response<pb::ListVolumesResponse>, Status> {
        let volumes = self.api.list(req.into_inner().filters).await?;
        Ok(Response::new(pb::ListVolumesResponse { volumes }))
    }
}

/// [`VolumeApi`] over a gRPC channel.
#[derive(Clone)]
pub struct VolumeGrpcClient {
    inner: pb::volume_service_client::VolumeServiceClient<InterceptedService<Channel, RequestIdInterceptor>>,
}

impl VolumeGrpcClient {
    /// A client on `channel`.
    pub fn new(channel: Channel) -> Self {
        Self { inner: pb::volume_service_client::VolumeServiceClient::with_interceptor(channel, RequestIdInterceptor) }
    }
}

#[async_trait]
impl VolumeApi for VolumeGrpcClient {
    async fn list(&self, filters: Vec<Filter>) -> Result<Vec<pb::Volume>> {
        let r = self
            .inner
            .clone()
            .list_volumes(pb::ListVolumesRequest { filters })
            .await
            .map_err(|s| status_to_error("volume", s))?;
        Ok(r.into_inner().volumes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn opens_empty_and_checks_filters() {
        let dir = tempfile::tempdir().expect("tmp");
        let svc = LocalVolumes::open(dir.path()).await.expect("open");
        assert!(svc.list(vec![]).await.expect("list").is_empty());
        let bad = vec![Filter { key: "colour".into(), values: vec![] }];
        assert_eq!(svc.list(bad).await.err().map(|e| e.kind()), Some(berth_core::ErrorKind::InvalidArgument));
    }
}
