//! Mutual TLS for the Docker API's TCP listeners, as dockerd's `--tlsverify`
//! (see `berth_core::tls`): a client without a certificate from `--tlscacert`
//! fails the handshake. ALPN offers only `http/1.1`, which hijacked streams need.

use std::sync::Arc;

use berth_core::Result;

use crate::config::TlsFiles;

/// Builds the rustls server configuration for `files`.
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>> {
    berth_core::tls::server_config(files, &[b"http/1.1"])
}
