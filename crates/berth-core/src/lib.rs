//! Shared foundations of Berth's services and gateway.
//!
//! - [`error`]: the one error vocabulary (not found, invalid, conflict, ...) and its
//!   single mapping to and from gRPC status codes, so a kind survives every hop.
//! - [`grpc`]: listen/connect addresses (unix sockets or TCP), the common server
//!   set-up (health, reflection, request tracing) and client channels.
//! - [`telemetry`]: tracing set-up, text or JSON.
//! - [`shutdown`]: the one SIGINT/SIGTERM path, as a cancellation token.
//! - [`db`]: opening a service's SQLite database and running its migrations.
//! - [`service`]: the flags and start-up of every service binary.
//! - [`events`]: Docker's events: each service's bus, and its gRPC stream.

#![forbid(unsafe_code)]

#[cfg(feature = "db")]
pub mod db;
pub mod disk;
pub mod error;
pub mod events;
pub mod grpc;
pub mod id;
pub mod perms;
pub mod rootfs;
pub mod service;
pub mod shutdown;
pub mod telemetry;
pub mod tls;

pub use error::{Error, ErrorKind, Result};

/// A stream of byte chunks: tarballs in and out of the image service, log streams.
pub type ByteStream = std::pin::Pin<Box<dyn futures_core::Stream<Item = Result<bytes::Bytes>> + Send + 'static>>;
