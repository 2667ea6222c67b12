//! Berth's volume service: named and anonymous volumes with dockerd's `local`
//! driver, and the references containers hold on them.
//!
//! A volume is a directory under `<data-root>/volume/volumes/<name>/_data`, or
//! a mount on it (tmpfs, a bind of a host path, any filesystem) by its driver
//! options ([`driver`]). A container holds a reference from its create to its
//! removal ([`VolumeApi::use_volume`], [`VolumeApi::release`]); references are
//! stored, so a volume in use stays protected across a crash. Copying an
//! image's content into a fresh volume (copy-up) is the runtime's part: it
//! knows the image. The shape is the one every service has: the [`VolumeApi`]
//! trait, [`LocalVolumes`] over a [`VolumeStore`], and gRPC adapters in [`grpc`].

#![forbid(unsafe_code)]

pub mod driver;
pub mod grpc;
pub mod service;
pub mod store;

use async_trait::async_trait;
use berth_core::Result;
use berth_proto::types::v1::Filter;
pub use berth_proto::volume::v1 as pb;
pub use grpc::{VolumeGrpcClient, VolumeGrpcServer};
pub use service::{ANONYMOUS, LocalVolumes};
pub use store::{MIGRATOR, SqliteVolumeStore, VolumeStore};

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
