//! Berth's runtime service: containers, their lifecycle, exec, attach, logs and
//! cgroups, each container under a `berth-shim` monitor.
//!
//! This version keeps container records: create (the request merged with the
//! image's config, as dockerd merges them), inspect, list with Docker's filters,
//! rename and remove, and it answers "is this image in use?" for `docker rmi`.
//! Starting containers arrives with the shim. The shape is the one every service
//! has: the [`RuntimeApi`] trait, [`service::LocalRuntime`] over a
//! [`store::ContainerStore`], and gRPC server and client adapters in [`grpc`].

#![forbid(unsafe_code)]

pub mod cgroups;
pub mod create;
pub mod grpc;
pub mod lifecycle;
pub mod service;
pub mod spec;
pub mod store;

use async_trait::async_trait;
use berth_core::Result;
pub use berth_proto::runtime::v1 as pb;
use berth_proto::types::v1::Filter;
pub use grpc::{RuntimeGrpcClient, RuntimeGrpcServer};
pub use service::LocalRuntime;
pub use store::{ContainerStore, SqliteContainerStore};

/// What the runtime service does, in-process or remote.
#[async_trait]
pub trait RuntimeApi: Send + Sync + 'static {
    /// Creates a container record from Docker's create body.
    async fn create(&self, req: pb::CreateContainerRequest) -> Result<pb::CreateContainerResponse>;
    /// Resolves a name, full ID or unique ID prefix.
    async fn inspect(&self, reference: &str) -> Result<pb::Container>;
    /// Containers, newest first; stopped ones only with `all` (or a status filter).
    async fn list(&self, all: bool, filters: Vec<Filter>, limit: i64) -> Result<Vec<pb::Container>>;
    /// Renames a container.
    async fn rename(&self, reference: &str, new_name: &str) -> Result<()>;
    /// Removes a container.
    async fn remove(&self, reference: &str, force: bool, remove_volumes: bool) -> Result<()>;
    /// Containers that use `image_id`, and whether one of them runs.
    async fn image_in_use(&self, image_id: &str) -> Result<pb::ImageInUseResponse>;
    /// Starts a container; `Ok(true)` when it was already running.
    async fn start(&self, reference: &str) -> Result<bool>;
    /// Stops a container; `Ok(true)` when it was not running.
    async fn stop(&self, reference: &str, timeout: i64, signal: &str) -> Result<bool>;
    /// Sends a signal to a running container.
    async fn kill(&self, reference: &str, signal: &str) -> Result<()>;
    /// Waits for a condition (not-running, next-exit, removed).
    async fn wait(&self, reference: &str, condition: &str) -> Result<pb::WaitContainerResponse>;
    /// The container's log entries.
    async fn logs(&self, req: pb::ContainerLogsRequest) -> Result<lifecycle::LogStream>;
}
