//! The contract of Berth's image service, without its implementation: the
//! [`ImageApi`] trait, its protobuf messages ([`pb`]) and stream types, and the
//! gRPC client and server adapters. The gateway and the other services link
//! this crate only, so they carry none of the image service's own dependencies.

#![forbid(unsafe_code)]

pub mod client;
pub mod server;

use async_trait::async_trait;
use berth_core::Result;
pub use berth_proto::image::v1 as pb;
pub use berth_proto::types::v1::Filter;
pub use client::ImageGrpcClient;
pub use server::ImageGrpcServer;

pub use berth_core::ByteStream;
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
    /// Removes dangling (or all unused) images, or the build cache; the
    /// request's `in_use` are image IDs containers use.
    async fn prune(&self, req: pb::PruneImagesRequest) -> Result<pb::PruneImagesResponse>;
    /// Loads a `docker save` or OCI layout tarball.
    async fn load(&self, input: ByteStream) -> Result<Vec<pb::LoadedImage>>;
    /// Writes the named images as one tarball. Unknown names fail before any byte is sent.
    async fn save(&self, names: Vec<String>) -> Result<ByteStream>;
    /// Makes a one-layer image of a root filesystem tarball; returns its ID.
    async fn import(&self, options: pb::ImportOptions, input: ByteStream) -> Result<String>;
    /// Builds an image with the classic builder from the context tar `input`:
    /// dockerd's output as it goes. Errors before the first message (a bad
    /// option) come as the call's error; later ones end the stream.
    async fn build(&self, options: pb::BuildOptions, input: ByteStream) -> Result<BuildStream>;
    /// Makes an image of `options.parent` and the layer tar `input`; returns its ID.
    async fn commit(&self, options: pb::CommitOptions, input: ByteStream) -> Result<String>;
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
/// The output of a build; an `Err` ends it (the build failed).
pub type BuildStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::BuildMessage>> + Send>>;

/// Progress messages of a pull or push; an `Err` ends it.
pub type ProgressStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::Progress>> + Send>>;

/// Registry settings of the daemon (daemon.json's names).
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// `insecure-registries`: CIDRs or `host[:port]`; 127.0.0.0/8 is always added.
    pub insecure: Vec<String>,
    /// `registry-mirrors`: URLs tried first for Docker Hub images.
    pub mirrors: Vec<String>,
    /// Where `<host:port>/ca.crt` (and any `*.crt`) add trusted roots per registry.
    pub certs_dir: std::path::PathBuf,
    /// `max-concurrent-downloads` (layers at once per pull).
    pub max_concurrent_downloads: usize,
    /// `max-concurrent-uploads` (layers at once per push).
    pub max_concurrent_uploads: usize,
    /// `allow-nondistributable-artifacts`: registries (CIDRs or `host[:port]`)
    /// whose foreign layers may be fetched from the URLs their manifests give.
    pub allow_nondistributable: Vec<String>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            insecure: vec![],
            mirrors: vec![],
            certs_dir: std::path::PathBuf::from("/etc/berth/certs.d"),
            max_concurrent_downloads: 3,
            max_concurrent_uploads: 5,
            allow_nondistributable: vec![],
        }
    }
}
