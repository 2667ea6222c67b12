//! Berth's runtime service: containers, their lifecycle, exec, attach, logs and
//! cgroups, each container under a `berth-shim` monitor.
//!
//! It keeps container records (create merges the request with the image's config
//! as dockerd does), starts each container under its shim ([`lifecycle`]), and
//! reaches running containers through the shim's control socket for attach, exec
//! and TTY resizes ([`stdio`], [`shim`]). The shape is the one every service has: the [`RuntimeApi`] trait, [`service::LocalRuntime`] over a
//! [`store::ContainerStore`], and gRPC server and client adapters in [`grpc`].

#![forbid(unsafe_code)]

pub mod cgroups;
pub mod create;
pub mod grpc;
pub mod lifecycle;
pub mod networking;
pub mod record;
pub mod service;
pub mod shim;
pub mod spec;
pub mod stdio;
pub mod store;
pub mod volumes;

use async_trait::async_trait;
use berth_core::Result;
pub use berth_proto::runtime::v1 as pb;
use berth_proto::types::v1::Filter;
pub use grpc::{RuntimeGrpcClient, RuntimeGrpcServer};
pub use service::{LocalRuntime, RuntimeConfig};
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
    /// Attaches to a container's streams (waiting for its start when it is not running).
    async fn attach(&self, req: pb::AttachRequest, input: shim::InputStream) -> Result<shim::OutputStream>;
    /// Resizes a container's or an exec's TTY.
    async fn resize(&self, req: pb::ResizeTtyRequest) -> Result<()>;
    /// Records an exec; returns its ID.
    async fn create_exec(&self, req: pb::CreateExecRequest) -> Result<String>;
    /// Runs an exec, streaming its I/O unless detached.
    async fn start_exec(&self, req: pb::StartExecRequest, input: shim::InputStream) -> Result<shim::OutputStream>;
    /// An exec's state.
    async fn inspect_exec(&self, exec_id: &str) -> Result<pb::InspectExecResponse>;
    /// Removes stopped containers matching `filters` (until, label, label!).
    async fn prune(&self, filters: Vec<Filter>) -> Result<pb::PruneContainersResponse>;
    /// Connects a container to a network (EndpointSettings JSON).
    async fn connect_network(&self, reference: &str, network: &str, endpoint_config: &[u8]) -> Result<()>;
    /// Disconnects a container from a network.
    async fn disconnect_network(&self, reference: &str, network: &str, force: bool) -> Result<()>;
}
