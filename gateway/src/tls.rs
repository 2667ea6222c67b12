//! Mutual TLS for TCP listeners, as dockerd's `--tlsverify`: the server presents
//! its certificate and demands a client certificate that chains to `--tlscacert`.
//! A client without one, or with one from another CA, fails the handshake. ALPN
//! offers only `http/1.1`, which hijacked streams need. One crypto provider
//! (ring) serves the whole workspace.

use std::sync::Arc;

use berth_core::{Error, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use crate::config::TlsFiles;

fn certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| Error::invalid(format!("read {}: {e}", path.display())))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::invalid(format!("parse {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::invalid(format!("{} holds no PEM certificate", path.display())));
    }
    Ok(certs)
}

/// Builds the rustls server configuration for `files`.
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in certs(&files.ca)? {
        roots.add(ca).map_err(|e| Error::invalid(format!("CA {}: {e}", files.ca.display())))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| Error::invalid(format!("client verifier: {e}")))?;
    let chain = certs(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| Error::invalid(format!("read key {}: {e}", files.key.display())))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::internal(format!("tls versions: {e}")))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| Error::invalid(format!("server certificate {}: {e}", files.cert.display())))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
