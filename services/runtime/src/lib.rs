//! Berth's runtime service: containers, their lifecycle, exec, attach, logs and
//! cgroups, each container under a `berth-shim` monitor.
//!
//! It keeps container records (create merges the request with the image's config
//! as dockerd does), starts each container under its shim ([`lifecycle`]), and
//! reaches running containers through the shim's control socket for attach, exec
//! and TTY resizes ([`stdio`], [`shim`]). The shape is the one every service has: the [`RuntimeApi`] trait, [`service::LocalRuntime`] over a
//! [`store::ContainerStore`], and gRPC server and client adapters in [`grpc`].

// Unsafe code only in `bpf` and `creds`, whose system calls have no safe wrapper.
#![deny(unsafe_code)]

pub mod archive;
#[allow(unsafe_code)]
pub mod bpf;
pub mod cgroups;
pub mod create;
#[allow(unsafe_code)]
pub mod creds;
pub mod devices;
pub mod lifecycle;
pub mod links;
pub mod networking;
pub mod record;
pub mod runtimes;
pub mod seccomp;
pub mod service;
pub mod shim;
pub mod spec;
pub mod stats;
pub mod stdio;
pub mod store;
pub mod userns;
pub mod volumes;

pub use berth_runtime_api::{Filter, RuntimeApi, RuntimeGrpcClient, RuntimeGrpcServer, grpc, pb};
pub use service::{LocalRuntime, RuntimeConfig};
pub use store::{ContainerStore, SqlContainerStore};
