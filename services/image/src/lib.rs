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
pub mod changes;
pub mod client;
pub mod content;
pub mod digest;
pub mod filters;
#[allow(unsafe_code)]
pub mod layers;
pub mod reference;
pub mod registry;
pub mod server;
pub mod service;
pub mod store;

use async_trait::async_trait;
pub use berth_core::ByteStream;
use berth_core::Result;
pub use berth_proto::image::v1 as pb;
pub use berth_proto::types::v1::Filter;

/// What the image service does, in-process or remote.
#[async_trait]
pub trait ImageApi: Send + Sync + 'static {
    /// Images matching `filters` (reference, dangling, label, before, since), newest first.
    async fn list(&self, all: bool, filters: Vec<Filter>) -> Result<Vec<pb::Image>>;
    /// Resolves a reference or ID to one image.
    async fn inspect(&self, reference: &str) -> Result<pb::Image>;
    /// The image's history, newest first.
    async fn history(&self, reference: &str) -> Result<Vec<pb::HistoryItem>>;
    /// Points `repo:tag` at the image `source`.
    async fn tag(&self, source: &str, repo: &str, tag: &str) -> Result<()>;
    /// Untags or deletes, as `docker rmi`; with `keep_image` (containers use it) it only untags.
    async fn remove(&self, reference: &str, force: bool, keep_image: bool) -> Result<Vec<pb::DeleteItem>>;
    /// Removes dangling (or all unused) images; `in_use` are image IDs containers use.
    async fn prune(&self, filters: Vec<Filter>, in_use: Vec<String>) -> Result<pb::PruneImagesResponse>;
    /// Loads a `docker save` or OCI layout tarball.
    async fn load(&self, input: ByteStream) -> Result<Vec<pb::LoadedImage>>;
    /// Writes the named images as one tarball. Unknown names fail before any byte is sent.
    async fn save(&self, names: Vec<String>) -> Result<ByteStream>;
    /// Makes a one-layer image of a root filesystem tarball; returns its ID.
    async fn import(&self, options: pb::ImportOptions, input: ByteStream) -> Result<String>;
    /// Counts and sizes.
    async fn store_info(&self) -> Result<pb::StoreInfoResponse>;
    /// Pulls an image from its registry. Errors before the first progress
    /// message come as the stream's first item (so the caller can answer with
    /// a status code); later ones as a last item too.
    async fn pull(&self, req: pb::PullImageRequest) -> Result<ProgressStream>;
    /// Pushes an image (or every tag of a repository) to its registry.
    async fn push(&self, req: pb::PushImageRequest) -> Result<ProgressStream>;
    /// Checks credentials against a registry.
    async fn login(&self, auth: pb::RegistryAuth) -> Result<pb::LoginResponse>;
}

/// Progress messages of a pull or push; an `Err` ends it.
pub type ProgressStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::Progress>> + Send>>;
