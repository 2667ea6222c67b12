//! Berth's network service: bridges, IPAM, network namespaces, published ports
//! and the embedded DNS.
//!
//! This version holds the network records and lists them; bridges, IPAM and the
//! predefined `bridge`/`host`/`none` networks arrive with the networking issue.
//! The shape is the one every service has: the [`NetworkApi`] trait,
//! [`LocalNetwork`] over a [`NetworkStore`], and gRPC server and client adapters.

#![forbid(unsafe_code)]

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use berth_core::grpc::{RequestIdInterceptor, status_to_error};
use berth_core::{Error, Result};
pub use berth_proto::network::v1 as pb;
use berth_proto::types::v1::{Filter, KeyValue};
use sqlx::{Row, SqlitePool};
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// What the network service does, in-process or remote.
#[async_trait]
pub trait NetworkApi: Send + Sync + 'static {
    /// Networks matching `filters`.
    async fn list(&self, filters: Vec<Filter>) -> Result<Vec<pb::Network>>;
}

/// The embedded migrations of the network service.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/network");

/// Persistence of network records.
///
/// Schema (`migrations/network/0001_init.sql`):
/// `networks(id PK, name UNIQUE, driver, internal, labels JSON, created_at)`.
#[async_trait]
pub trait NetworkStore: Send + Sync + 'static {
    /// Every network record, by name.
    async fn networks(&self) -> Result<Vec<pb::Network>>;
}

/// [`NetworkStore`] on SQLite.
#[derive(Debug, Clone)]
pub struct SqliteNetworkStore {
    pool: SqlitePool,
}

impl SqliteNetworkStore {
    /// Wraps an open pool whose migrations have run.
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl NetworkStore for SqliteNetworkStore {
    async fn networks(&self) -> Result<Vec<pb::Network>> {
        let rows = sqlx::query("SELECT id, name, driver, internal, labels, created_at FROM networks ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let labels: String = r.try_get("labels")?;
                Ok(pb::Network {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    driver: r.try_get("driver")?,
                    scope: "local".into(),
                    created: r.try_get("created_at")?,
                    internal: r.try_get::<i64, _>("internal")? != 0,
                    labels: serde_json::from_str::<std::collections::BTreeMap<String, String>>(&labels)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(key, value)| KeyValue { key, value })
                        .collect(),
                })
            })
            .collect()
    }
}

/// The network service over a network store.
pub struct LocalNetwork {
    store: Arc<dyn NetworkStore>,
}

impl LocalNetwork {
    /// Opens the service's state under `dir` (`<data-root>/network`).
    pub async fn open(dir: &Path) -> Result<Self> {
        let pool = berth_core::db::open_sqlite(&dir.join("network.db"), &MIGRATOR).await?;
        Ok(Self::with_store(Arc::new(SqliteNetworkStore::new(pool))))
    }

    /// A service over any store.
    pub fn with_store(store: Arc<dyn NetworkStore>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl NetworkApi for LocalNetwork {
    async fn list(&self, filters: Vec<Filter>) -> Result<Vec<pb::Network>> {
        const KEYS: [&str; 7] = ["driver", "id", "label", "name", "scope", "type", "dangling"];
        if let Some(f) = filters.iter().find(|f| !KEYS.contains(&f.key.as_str())) {
            return Err(Error::invalid(format!("invalid filter '{}'", f.key)));
        }
        let names: Vec<&String> = filters.iter().filter(|f| f.key == "name").flat_map(|f| &f.values).collect();
        Ok(self
            .store
            .networks()
            .await?
            .into_iter()
            .filter(|n| names.is_empty() || names.iter().any(|w| n.name.contains(w.as_str())))
            .collect())
    }
}

/// Serves a [`NetworkApi`] over gRPC.
#[derive(Clone)]
pub struct NetworkGrpcServer {
    api: Arc<dyn NetworkApi>,
}

impl NetworkGrpcServer {
    /// The tonic service for `api`.
    pub fn service(api: Arc<dyn NetworkApi>) -> pb::network_service_server::NetworkServiceServer<Self> {
        pb::network_service_server::NetworkServiceServer::new(Self { api })
    }
}

#[tonic::async_trait]
impl pb::network_service_server::NetworkService for NetworkGrpcServer {
    async fn list_networks(
        &self,
        req: Request<pb::ListNetworksRequest>,
    ) -> Result<Response<pb::ListNetworksResponse>, Status> {
        let networks = self.api.list(req.into_inner().filters).await?;
        Ok(Response::new(pb::ListNetworksResponse { networks }))
    }
}

/// [`NetworkApi`] over a gRPC channel.
#[derive(Clone)]
pub struct NetworkGrpcClient {
    inner: pb::network_service_client::NetworkServiceClient<InterceptedService<Channel, RequestIdInterceptor>>,
}

impl NetworkGrpcClient {
    /// A client on `channel`.
    pub fn new(channel: Channel) -> Self {
        Self {
            inner: pb::network_service_client::NetworkServiceClient::with_interceptor(channel, RequestIdInterceptor),
        }
    }
}

#[async_trait]
impl NetworkApi for NetworkGrpcClient {
    async fn list(&self, filters: Vec<Filter>) -> Result<Vec<pb::Network>> {
        let r = self
            .inner
            .clone()
            .list_networks(pb::ListNetworksRequest { filters })
            .await
            .map_err(|s| status_to_error("network", s))?;
        Ok(r.into_inner().networks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn opens_empty_and_checks_filters() {
        let dir = tempfile::tempdir().expect("tmp");
        let svc = LocalNetwork::open(dir.path()).await.expect("open");
        assert!(svc.list(vec![]).await.expect("list").is_empty());
        let bad = vec![Filter { key: "colour".into(), values: vec![] }];
        assert_eq!(svc.list(bad).await.err().map(|e| e.kind()), Some(berth_core::ErrorKind::InvalidArgument));
    }
}
