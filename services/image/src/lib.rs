//! Berth's image service.
//!
//! It owns the local content store: verified blobs, image records and tags,
//! layers unpacked once per chain ID and shared by every image that has them, and
//! the `docker load` / `docker save` / `docker import` formats. It hands out layer
//! directories for the runtime service to stack with overlayfs; it never starts a
//! process.
//!
//! The shape, as in every Berth service:
//! - [`ImageApi`]: the domain trait. The gateway holds an `Arc<dyn ImageApi>` and
//!   cannot tell whether the service runs in-process or behind gRPC.
//! - [`service::LocalImageService`]: the implementation (store + content).
//! - [`server::ImageGrpcServer`]: the gRPC server adapter; every method delegates.
//! - [`client::ImageGrpcClient`]: the gRPC client adapter, implementing [`ImageApi`].
//!
//! The trait speaks the protobuf messages directly (as containerd's `local`
//! services implement their generated client interfaces): they are the contract,
//! and a second set of look-alike domain structs would only add conversions.

// Only `layers` has `unsafe` (lsetxattr for overlay opaque markers); everything else is denied.
#![deny(unsafe_code)]

pub mod archive;
pub mod build;
pub mod changes;
pub mod content;
pub mod digest;
pub mod filters;
#[allow(unsafe_code)]
pub mod layers;
pub mod reference;
pub mod registry;
pub mod service;
pub mod store;

pub use berth_image_api::{
    ByteStream, Filter, ImageApi, ImageGrpcClient, ImageGrpcServer, ProgressStream, client, pb, server,
};
