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
pub mod service;
pub mod store;

pub use berth_volume_api::{Filter, VolumeApi, VolumeGrpcClient, VolumeGrpcServer, grpc, pb};
pub use service::{ANONYMOUS, LocalVolumes};
pub use store::{MIGRATIONS, SqlVolumeStore, VolumeStore};
