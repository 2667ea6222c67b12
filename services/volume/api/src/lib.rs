//! The contract of Berth's volume service, without its implementation: the
//! [`VolumeApi`] trait, its protobuf messages ([`pb`]) and stream types, and the
//! gRPC client and server adapters. The gateway and the other services link
//! this crate only, so they carry none of the volume service's own dependencies.

#![forbid(unsafe_code)]

pub mod grpc;

use async_trait::async_trait;
use berth_core::Result;
pub use berth_proto::types::v1::Filter;
pub use berth_proto::volume::v1 as pb;
pub use grpc::{VolumeGrpcClient, VolumeGrpcServer};

/// What the volume service does, in-process or remote.
#[async_trait]
pub trait VolumeApi: Send + Sync + 'static {
    /// Volumes matching `filters` (dangling, driver, label, name), each walked
    /// for its size only `with_size`.
    async fn list(&self, filters: Vec<Filter>, with_size: bool) -> Result<Vec<pb::Volume>>;
    /// Creates a volume, or returns the one of that name when its options agree.
    async fn create(&self, req: pb::CreateVolumeRequest) -> Result<pb::Volume>;
    /// A volume by name, with the containers using it.
    async fn inspect(&self, name: &str) -> Result<pb::Volume>;
    /// Removes a volume no container uses; `force` makes a missing one no error.
    async fn remove(&self, name: &str, force: bool) -> Result<()>;
    /// Removes unused anonymous volumes (every unused one with `all=true`).
    async fn prune(&self, filters: Vec<Filter>) -> Result<pb::PruneVolumesResponse>;
    /// Gives a container a reference on a volume, creating the volume when
    /// missing, and mounts it when its options say so. Idempotent.
    async fn use_volume(&self, req: pb::CreateVolumeRequest, container_id: &str) -> Result<pb::Volume>;
    /// Drops a container's references; with `remove_anonymous` its anonymous
    /// volumes nobody else uses are removed. Returns the removed names.
    async fn release(&self, container_id: &str, remove_anonymous: bool) -> Result<Vec<String>>;
}
