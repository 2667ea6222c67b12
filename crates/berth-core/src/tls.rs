//! Mutual TLS, as dockerd's `--tlsverify`, for every TCP listener and client of
//! Berth: the Docker API (ALPN `http/1.1`, which hijacked streams need) and the
//! split-mode gRPC services (ALPN `h2`). A server presents its certificate and
//! demands a client certificate that chains to the CA; a client verifies the
//! server's certificate against the same CA and presents its own. The server
//! certificate `berthd certs` writes is valid for both ends, so one set of
//! `--tlscacert/--tlscert/--tlskey` serves a service that listens and dials.
//! One crypto provider (ring) serves the whole workspace.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use crate::{Error, Result};

/// The files of `--tlsverify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA that peers' certificates must chain to (`--tlscacert`).
    pub ca: PathBuf,
    /// This end's certificate chain (`--tlscert`).
    pub cert: PathBuf,
    /// This end's key (`--tlskey`).
    pub key: PathBuf,
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| Error::invalid(format!("read {}: {e}", path.display())))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::invalid(format!("parse {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::invalid(format!("{} holds no PEM certificate", path.display())));
    }
    Ok(certs)
}

fn roots(files: &TlsFiles) -> Result<Arc<rustls::RootCertStore>> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in certs(&files.ca)? {
        roots.add(ca).map_err(|e| Error::invalid(format!("CA {}: {e}", files.ca.display())))?;
    }
    Ok(Arc::new(roots))
}

fn key(files: &TlsFiles) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| Error::invalid(format!("read key {}: {e}", files.key.display())))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server configuration that demands client certificates, offering `alpn`.
pub fn server_config(files: &TlsFiles, alpn: &[&[u8]]) -> Result<Arc<rustls::ServerConfig>> {
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(files)?, provider.clone())
        .build()
        .map_err(|e| Error::invalid(format!("client verifier: {e}")))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::internal(format!("tls versions: {e}")))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(&files.cert)?, key(files)?)
        .map_err(|e| Error::invalid(format!("certificate {}: {e}", files.cert.display())))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A client configuration that trusts only the CA and presents the certificate.
pub fn client_config(files: &TlsFiles, alpn: &[&[u8]]) -> Result<Arc<rustls::ClientConfig>> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::internal(format!("tls versions: {e}")))?
        .with_root_certificates(roots(files)?)
        .with_client_auth_cert(certs(&files.cert)?, key(files)?)
        .map_err(|e| Error::invalid(format!("certificate {}: {e}", files.cert.display())))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}
