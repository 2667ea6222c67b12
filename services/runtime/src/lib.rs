//! Berth's runtime service: containers, their lifecycle, exec, attach, logs and
//! cgroups, each container under a `berth-shim` monitor.
//!
//! This version holds the container records and answers the questions other
//! parts already ask (`docker ps`, `docker info`, "is this image in use?"); the
//! lifecycle arrives with the containers issue. The shape is the one every
//! service has: the [`RuntimeApi`] trait, [`LocalRuntime`] over a
//! [`ContainerStore`], and gRPC server and client adapters.

#![forbid(unsafe_code)]

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use berth_core::grpc::{RequestIdInterceptor, status_to_error};
use berth_core::{Error, Result};
pub use berth_proto::runtime::v1 as pb;
use berth_proto::types::v1::{Filter, KeyValue};
use sqlx::{Row, SqlitePool};
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// What the runtime service does, in-process or remote.
#[async_trait]
pub trait RuntimeApi: Send + Sync + 'static {
    /// Containers, newest first; stopped ones only with `all`.
    async fn list(&self, all: bool, filters: Vec<Filter>) -> Result<Vec<pb::Container>>;
    /// Containers that use `image_id`, and whether one of them runs.
    async fn image_in_use(&self, image_id: &str) -> Result<pb::ImageInUseResponse>;
}

// === store ===

/// The embedded migrations of the runtime service.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/runtime");

/// Persistence of container records.
///
/// Schema (`migrations/runtime/0001_init.sql`):
/// `containers(id PK, name UNIQUE, image, image_id, state, command, labels JSON, created_at)`.
#[async_trait]
pub trait ContainerStore: Send + Sync + 'static {
    /// Every container record, newest first.
    async fn containers(&self) -> Result<Vec<pb::Container>>;
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

fn labels_from_json(s: &str) -> Vec<KeyValue> {
    serde_json::from_str::<std::collections::BTreeMap<String, String>>(s)
        .unwrap_or_default()
        .into_iter()
        .map(|(key, value)| KeyValue { key, value })
        .collect()
}

#[async_trait]
impl ContainerStore for SqliteContainerStore {
    async fn containers(&self) -> Result<Vec<pb::Container>> {
        let rows = sqlx::query(
            "SELECT id, name, image, image_id, state, command, labels, created_at FROM containers ORDER BY created_at DESC",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(pb::Container {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    image: r.try_get("image")?,
                    image_id: r.try_get("image_id")?,
                    state: r.try_get("state")?,
                    created: r.try_get("created_at")?,
                    labels: labels_from_json(&r.try_get::<String, _>("labels")?),
                    command: r.try_get("command")?,
                })
            })
            .collect()
    }
}

// === local implementation ===

/// The runtime service over a container store.
pub struct LocalRuntime {
    store: Arc<dyn ContainerStore>,
}

impl LocalRuntime {
    /// Opens the service's state under `dir` (`<data-root>/runtime`).
    pub async fn open(dir: &Path) -> Result<Self> {
        let pool = berth_core::db::open_sqlite(&dir.join("runtime.db"), &MIGRATOR).await?;
        Ok(Self::with_store(Arc::new(SqliteContainerStore::new(pool))))
    }

    /// A runtime over any store.
    pub fn with_store(store: Arc<dyn ContainerStore>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl RuntimeApi for LocalRuntime {
    async fn list(&self, all: bool, filters: Vec<Filter>) -> Result<Vec<pb::Container>> {
        const KEYS: [&str; 10] =
            ["id", "name", "label", "status", "ancestor", "exited", "before", "since", "volume", "network"];
        if let Some(f) = filters.iter().find(|f| !KEYS.contains(&f.key.as_str())) {
            return Err(Error::invalid(format!("invalid filter '{}'", f.key)));
        }
        Ok(self.store.containers().await?.into_iter().filter(|c| all || c.state == "running").collect())
    }

    async fn image_in_use(&self, image_id: &str) -> Result<pb::ImageInUseResponse> {
        let users: Vec<pb::Container> =
            self.store.containers().await?.into_iter().filter(|c| c.image_id == image_id).collect();
        Ok(pb::ImageInUseResponse {
            running: users.iter().any(|c| c.state == "running"),
            container_ids: users.into_iter().map(|c| c.id).collect(),
        })
    }
}

// === gRPC server adapter ===

/// Serves a [`RuntimeApi`] over gRPC.
#[derive(Clone)]
pub struct RuntimeGrpcServer {
    api: Arc<dyn RuntimeApi>,
}

impl RuntimeGrpcServer {
    /// The tonic service for `api`.
    pub fn service(api: Arc<dyn RuntimeApi>) -> pb::runtime_service_server::RuntimeServiceServer<Self> {
        pb::runtime_service_server::RuntimeServiceServer::new(Self { api })
    }
}

#[tonic::async_trait]
impl pb::runtime_service_server::RuntimeService for RuntimeGrpcServer {
    async fn list_containers(
        &self,
        req: Request<pb::ListContainersRequest>,
    ) -> Result<Response<pb::ListContainersResponse>, Status> {
        let r = req.into_inner();
        let containers = self.api.list(r.all, r.filters).await?;
        Ok(Response::new(pb::ListContainersResponse { containers }))
    }

    async fn image_in_use(
        &self,
        req: Request<pb::ImageInUseRequest>,
    ) -> Result<Response<pb::ImageInUseResponse>, Status> {
        Ok(Response::new(self.api.image_in_use(&req.into_inner().image_id).await?))
    }
}

// === gRPC client adapter ===

/// [`RuntimeApi`] over a gRPC channel.
#[derive(Clone)]
pub struct RuntimeGrpcClient {
    inner: pb::runtime_service_client::RuntimeServiceClient<InterceptedService<Channel, RequestIdInterceptor>>,
}

impl RuntimeGrpcClient {
    /// A client on `channel`.
    pub fn new(channel: Channel) -> Self {
        Self {
            inner: pb::runtime_service_client::RuntimeServiceClient::with_interceptor(channel, RequestIdInterceptor),
        }
    }
}

#[async_trait]
impl RuntimeApi for RuntimeGrpcClient {
    async fn list(&self, all: bool, filters: Vec<Filter>) -> Result<Vec<pb::Container>> {
        let r = self
            .inner
            .clone()
            .list_containers(pb::ListContainersRequest { all, filters })
            .await
            .map_err(|s| status_to_error("runtime", s))?;
        Ok(r.into_inner().containers)
    }

    async fn image_in_use(&self, image_id: &str) -> Result<pb::ImageInUseResponse> {
        let r = self
            .inner
            .clone()
            .image_in_use(pb::ImageInUseRequest { image_id: image_id.into() })
            .await
            .map_err(|s| status_to_error("runtime", s))?;
        Ok(r.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Vec<pb::Container>);

    #[async_trait]
    impl ContainerStore for Fixed {
        async fn containers(&self) -> Result<Vec<pb::Container>> {
            Ok(self.0.clone())
        }
    }

    fn c(id: &str, image_id: &str, state: &str) -> pb::Container {
        pb::Container { id: id.into(), image_id: image_id.into(), state: state.into(), ..Default::default() }
    }

    #[tokio::test]
    async fn lists_running_unless_all() {
        let rt = LocalRuntime::with_store(Arc::new(Fixed(vec![c("a", "i", "running"), c("b", "i", "exited")])));
        assert_eq!(rt.list(false, vec![]).await.map(|v| v.len()).ok(), Some(1));
        assert_eq!(rt.list(true, vec![]).await.map(|v| v.len()).ok(), Some(2));
        let bad = vec![Filter { key: "colour".into(), values: vec![] }];
        assert!(rt.list(true, bad).await.is_err());
    }

    #[tokio::test]
    async fn image_usage() {
        let rt = LocalRuntime::with_store(Arc::new(Fixed(vec![c("a", "i", "exited"), c("b", "j", "running")])));
        let u = rt.image_in_use("i").await.expect("usage");
        assert_eq!(u.container_ids, vec!["a".to_string()]);
        assert!(!u.running);
    }

    #[tokio::test]
    async fn sqlite_store_opens_empty() {
        let dir = tempfile::tempdir().expect("tmp");
        let rt = LocalRuntime::open(dir.path()).await.expect("open");
        assert!(rt.list(true, vec![]).await.expect("list").is_empty());
    }
}
