//! Berth's gateway: the Docker Engine REST API, translated to the services' traits.
//!
//! The gateway holds `Arc<dyn ImageApi>` and friends and cannot tell whether a
//! service runs in the same process (`berthd`) or behind gRPC (split mode). It
//! owns no state of its own. Pieces:
//! - [`version`]: API version negotiation and the `/v1.NN` prefix, as an outer layer.
//! - [`error`]: the one mapping of error kinds to HTTP statuses and `{"message"}`.
//! - [`routes`]: handlers, one module per Docker resource.
//! - [`server`]: listeners (unix socket, TCP with mutual TLS, loopback TCP), the
//!   accept loop (HTTP/1.1 with upgrades, for hijacked streams) and graceful shutdown.
//! - [`config`]: the daemon configuration: file, environment, flags, validated at once.
//! - [`authz`]: the caller's identity, the authorization policy, the audit log.

#![forbid(unsafe_code)]
#![recursion_limit = "256"]

pub mod authz;
pub mod config;
pub mod error;
pub mod metrics;
pub mod params;
pub mod routes;
pub mod server;
pub mod tls;
pub mod version;

use std::path::PathBuf;
use std::sync::Arc;

use berth_image_api::ImageApi;
use berth_network_api::NetworkApi;
use berth_runtime_api::RuntimeApi;
use berth_volume_api::VolumeApi;

/// Facts about the daemon that `/info` and `/version` report.
#[derive(Debug, Clone)]
pub struct DaemonInfo {
    /// Data root (`DockerRootDir`).
    pub data_root: PathBuf,
    /// Exec root.
    pub exec_root: PathBuf,
    /// A stable ID for this daemon.
    pub id: String,
    /// Whether debug logging is on.
    pub debug: bool,
}

/// What every handler can reach: the services and the daemon facts.
#[derive(Clone)]
pub struct AppState {
    /// The image service.
    pub images: Arc<dyn ImageApi>,
    /// The runtime service.
    pub runtime: Arc<dyn RuntimeApi>,
    /// The network service.
    pub networks: Arc<dyn NetworkApi>,
    /// The volume service.
    pub volumes: Arc<dyn VolumeApi>,
    /// Where events come from: one shared bus in `berthd`, each service's in split mode.
    pub events: Vec<Arc<dyn berth_core::events::EventSource>>,
    /// Daemon facts.
    pub info: Arc<DaemonInfo>,
    /// Fires when the daemon shuts down: long-lived streams (wait, follow, attach,
    /// exec) end then instead of holding the shutdown for the grace period.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Authorization and audit, when configured (`--authorization-config`, `--audit-log`).
    pub authz: Option<Arc<authz::Authz>>,
}

/// Berth's version.
pub const BERTH_VERSION: &str = env!("CARGO_PKG_VERSION");

pub use routes::app;
