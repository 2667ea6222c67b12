//! The contract of Berth's runtime service, without its implementation: the
//! [`RuntimeApi`] trait, its protobuf messages ([`pb`]) and stream types, and the
//! gRPC client and server adapters. The gateway and the other services link
//! this crate only, so they carry none of the runtime service's own dependencies.

#![forbid(unsafe_code)]

pub mod grpc;
pub mod logopts;

use async_trait::async_trait;
pub use berth_core::ByteStream;
use berth_core::Result;
pub use berth_proto::runtime::v1 as pb;
pub use berth_proto::types::v1::Filter;
pub use grpc::{RuntimeGrpcClient, RuntimeGrpcServer};

/// Log entries, in order.
pub type LogStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::LogEntry>> + Send>>;
/// Input from a client of an attach or exec: stdin bytes and the end of input.
pub type InputStream = std::pin::Pin<Box<dyn futures::Stream<Item = pb::StreamInput> + Send>>;
/// Output to a client of an attach or exec.
pub type OutputStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::StreamOutput>> + Send>>;
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
    /// The container's SizeRw and SizeRootFs (`ps --size`, `inspect --size`).
    async fn size(&self, reference: &str) -> Result<pb::ContainerSizeResponse>;
    /// The OCI runtimes containers can run under.
    async fn runtime_info(&self) -> Result<pb::RuntimeInfoResponse>;
    /// What the container changed in its filesystem, sorted by path (`docker diff`).
    async fn changes(&self, reference: &str) -> Result<Vec<pb::Change>>;
    /// The container's root filesystem as a tar, without its volumes (`docker export`).
    async fn export(&self, reference: &str) -> Result<ByteStream>;
    /// Describes `path` in the container (a 404 when it is not there).
    async fn stat_path(&self, reference: &str, path: &str) -> Result<pb::PathStat>;
    /// What `path` in the container is, and a tar of it, volumes included
    /// (one look at the container for both).
    async fn get_archive(&self, reference: &str, path: &str) -> Result<(pb::PathStat, ByteStream)>;
    /// Unpacks a tar into the directory `options.path` of the container.
    async fn put_archive(&self, options: pb::PutArchiveOptions, input: ByteStream) -> Result<()>;
    /// Makes an image of the container's changes; its ID.
    async fn commit(&self, req: pb::CommitContainerRequest) -> Result<String>;
    /// Stops a container if it runs, starts it again (`docker restart`).
    async fn restart(&self, reference: &str, timeout: i64, signal: &str) -> Result<()>;
    /// Sends a signal to a running container.
    async fn kill(&self, reference: &str, signal: &str) -> Result<()>;
    /// Waits for a condition (not-running, next-exit, removed).
    async fn wait(&self, reference: &str, condition: &str) -> Result<pb::WaitContainerResponse>;
    /// The container's log entries.
    async fn logs(&self, req: pb::ContainerLogsRequest) -> Result<LogStream>;
    /// Attaches to a container's streams (waiting for its start when it is not running).
    async fn attach(&self, req: pb::AttachRequest, input: InputStream) -> Result<OutputStream>;
    /// Resizes a container's or an exec's TTY.
    async fn resize(&self, req: pb::ResizeTtyRequest) -> Result<()>;
    /// Records an exec; returns its ID.
    async fn create_exec(&self, req: pb::CreateExecRequest) -> Result<String>;
    /// Runs an exec, streaming its I/O unless detached.
    async fn start_exec(&self, req: pb::StartExecRequest, input: InputStream) -> Result<OutputStream>;
    /// An exec's state.
    async fn inspect_exec(&self, exec_id: &str) -> Result<pb::InspectExecResponse>;
    /// Removes stopped containers matching `filters` (until, label, label!).
    async fn prune(&self, filters: Vec<Filter>) -> Result<pb::PruneContainersResponse>;
    /// Connects a container to a network (EndpointSettings JSON).
    async fn connect_network(&self, reference: &str, network: &str, endpoint_config: &[u8]) -> Result<()>;
    /// Disconnects a container from a network.
    async fn disconnect_network(&self, reference: &str, network: &str, force: bool) -> Result<()>;
    /// Freezes a running container (`unpause`: thaws a paused one).
    async fn pause(&self, reference: &str, unpause: bool) -> Result<()>;
    /// A running container's processes, as `ps ps_args` shows them.
    async fn top(&self, reference: &str, ps_args: &str) -> Result<pb::TopContainerResponse>;
    /// One sample of a container's resource use (Docker's stats JSON).
    async fn stats(&self, reference: &str) -> Result<Vec<u8>>;
    /// Applies Docker's update body; answers the warnings.
    async fn update(&self, reference: &str, config: &[u8]) -> Result<Vec<String>>;
}
