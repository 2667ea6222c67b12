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
//! - [`metrics`]: the process's Prometheus metrics (`--metrics-addr`).

#![forbid(unsafe_code)]

#[cfg(feature = "db")]
pub mod db;
pub mod disk;
pub mod error;
pub mod events;
pub mod grpc;
pub mod id;
pub mod metrics;
pub mod perms;
pub mod rootfs;
pub mod service;
pub mod shutdown;
pub mod telemetry;
pub mod tls;

pub use error::{Error, ErrorKind, Result};

/// Reads what a client still sends after the end of a tar (its end-of-archive
/// blocks and record padding), at most `max` bytes: an answer sent before the
/// body was read to its end makes the server close the connection while the
/// client still writes (a broken pipe for the docker CLI).
pub fn drain(mut input: impl std::io::Read, max: u64) {
    let mut buf = [0u8; 8192];
    let mut left = max;
    while left > 0 {
        match input.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => left = left.saturating_sub(n as u64),
        }
    }
}

/// A stream of byte chunks: tarballs in and out of the image service, log streams.
pub type ByteStream = std::pin::Pin<Box<dyn futures_core::Stream<Item = Result<bytes::Bytes>> + Send + 'static>>;

#[cfg(test)]
mod tests {
    #[test]
    fn drain_reads_to_the_end_or_the_bound() {
        let mut short = std::io::Cursor::new(vec![0u8; 10_000]);
        super::drain(&mut short, 1 << 20);
        assert_eq!(short.position(), 10_000, "all of it");
        let mut long = std::io::Cursor::new(vec![0u8; 100_000]);
        super::drain(&mut long, 20_000);
        assert!((20_000..30_000).contains(&long.position()), "stops near the bound: {}", long.position());
    }
}
