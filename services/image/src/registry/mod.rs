//! Exchanging images with registries through the OCI distribution protocol,
//! with `oci-client` for the protocol (basic auth, ranged blob reads, chunked
//! uploads, cross-repository mounts); token authentication ([`auth`]) and
//! manifest reads are Berth's own, so that what a registry answers is bounded.
//!
//! Which registry and how, as dockerd decides it:
//! - a reference without a domain is Docker Hub's (`docker.io/library/...`),
//!   reached through the `registry-mirrors` first when there are any;
//! - HTTPS, verified with the system's roots plus `certs.d/<host:port>/*.crt`;
//! - a registry in `insecure-registries` (CIDRs or `host[:port]`; 127.0.0.0/8
//!   always) is tried over HTTPS without verification, then over plain HTTP.

mod auth;
pub mod pull;
pub mod push;

use std::net::{IpAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use berth_core::{Error, ErrorKind, Result};
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;

use crate::pb;
use crate::reference::Reference;

pub use berth_image_api::RegistryConfig;

/// Where a reference lives: the registry host (`docker.io` for Hub) and the
/// repository path in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// `host[:port]`, or `docker.io`.
    pub registry: String,
    /// `library/busybox`, `team/app`.
    pub repository: String,
}

/// The registry and repository of a parsed reference.
pub fn locate(r: &Reference) -> Location {
    let qualified = r.qualified_name();
    match qualified.split_once('/') {
        Some((registry, repository)) => Location { registry: registry.into(), repository: repository.into() },
        None => Location { registry: "docker.io".into(), repository: qualified },
    }
}

fn in_cidr(ip: IpAddr, cidr: &str) -> bool {
    let (net, bits) = match cidr.split_once('/') {
        Some((n, b)) => (n, b.parse::<u32>().ok()),
        None => (cidr, None),
    };
    match (ip, net.parse::<IpAddr>()) {
        (IpAddr::V4(ip), Ok(IpAddr::V4(net))) => {
            let bits = bits.unwrap_or(32).min(32);
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), Ok(IpAddr::V6(net))) => {
            let bits = bits.unwrap_or(128).min(128);
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// How the daemon's registry settings decide where and how to reach a registry.
/// Whether `host` (`host[:port]`) is in `listed`: by `host[:port]`, by name, or
/// because one of its addresses is in a listed CIDR.
fn host_listed(host: &str, listed: &[&str]) -> bool {
    if listed.contains(&host) {
        return true;
    }
    let name = host.rsplit_once(':').map(|(h, p)| if p.chars().all(|c| c.is_ascii_digit()) { h } else { host });
    let name = name.unwrap_or(host).trim_start_matches('[').trim_end_matches(']');
    if listed.contains(&name) {
        return true;
    }
    let cidrs: Vec<&str> = listed.iter().copied().filter(|l| l.contains('/')).collect();
    if cidrs.is_empty() {
        return false;
    }
    let ips: Vec<IpAddr> = match name.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => (name, 0).to_socket_addrs().map(|a| a.map(|s| s.ip()).collect()).unwrap_or_default(),
    };
    ips.iter().any(|ip| cidrs.iter().any(|c| in_cidr(*ip, c)))
}

pub trait RegistryConfigExt {
    /// Whether `host` (`host[:port]`) is insecure.
    fn is_insecure(&self, host: &str) -> bool;
    /// Whether foreign layers of images from `host` may be fetched from their
    /// own URLs (`allow-nondistributable-artifacts`).
    fn allows_foreign_urls(&self, host: &str) -> bool;
    /// The extra roots for `host` from `certs.d/<host>/*.crt`.
    fn roots_for(&self, host: &str) -> Vec<Vec<u8>>;
    /// How to speak to `host`: the scheme and whether to verify certificates.
    fn endpoint(&self, host: &str) -> impl std::future::Future<Output = Endpoint> + Send;
    /// The hosts to try for a registry: the mirrors first for Docker Hub.
    fn hosts_for(&self, registry: &str) -> Vec<String>;
}

impl RegistryConfigExt for RegistryConfig {
    /// Whether `host` (`host[:port]`) is insecure: listed by name, or one of its
    /// addresses is in a listed CIDR (127.0.0.0/8 always is).
    fn is_insecure(&self, host: &str) -> bool {
        let listed: Vec<&str> = self.insecure.iter().map(String::as_str).chain(["127.0.0.0/8"]).collect();
        host_listed(host, &listed)
    }

    /// Whether foreign layers from `host` may come from their URLs: only for
    /// registries listed in `allow-nondistributable-artifacts` (by name or
    /// CIDR), as dockerd on Linux; elsewhere they come from the registry.
    fn allows_foreign_urls(&self, host: &str) -> bool {
        let listed: Vec<&str> = self.allow_nondistributable.iter().map(String::as_str).collect();
        host_listed(host, &listed)
    }

    /// The extra roots for `host` from `certs.d/<host>/*.crt`.
    fn roots_for(&self, host: &str) -> Vec<Vec<u8>> {
        let dir = self.certs_dir.join(host);
        let Ok(entries) = std::fs::read_dir(&dir) else { return vec![] };
        let mut pems: Vec<(PathBuf, Vec<u8>)> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "crt"))
            .filter_map(|p| std::fs::read(&p).ok().map(|d| (p, d)))
            .collect();
        pems.sort();
        pems.into_iter().map(|(_, d)| d).collect()
    }

    /// How to speak to `host`: the scheme and whether to verify certificates.
    /// Insecure registries are probed: HTTPS (unverified) if it answers, else HTTP.
    async fn endpoint(&self, host: &str) -> Endpoint {
        if !self.is_insecure(host) {
            return Endpoint { host: host.to_string(), https: true, verify: true, roots: self.roots_for(host) };
        }
        let probe = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .build();
        let https = match probe {
            Ok(c) => c.get(format!("https://{host}/v2/")).send().await.is_ok(),
            Err(_) => false,
        };
        Endpoint { host: host.to_string(), https, verify: false, roots: self.roots_for(host) }
    }

    /// The hosts to try for a registry: the mirrors first for Docker Hub.
    fn hosts_for(&self, registry: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        if registry == "docker.io" {
            for m in &self.mirrors {
                let host = m.trim_end_matches('/');
                let host = host.split_once("://").map(|(_, h)| h).unwrap_or(host);
                out.push(host.to_string());
            }
        }
        out.push(registry.to_string());
        out
    }
}

/// How to reach one registry host.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `host[:port]`.
    pub host: String,
    /// HTTPS (else plain HTTP).
    pub https: bool,
    /// Verify the server's certificate.
    pub verify: bool,
    /// Extra trusted roots (PEM) from certs.d.
    pub roots: Vec<Vec<u8>>,
}

impl Endpoint {
    /// An `oci-client` for this endpoint.
    pub fn client(&self, config: &RegistryConfig) -> oci_client::Client {
        let host = if self.host == "docker.io" { "index.docker.io".to_string() } else { self.host.clone() };
        oci_client::Client::new(ClientConfig {
            protocol: if self.https { ClientProtocol::Https } else { ClientProtocol::HttpsExcept(vec![host]) },
            accept_invalid_certificates: !self.verify,
            extra_root_certificates: self
                .roots
                .iter()
                .map(|d| Certificate { encoding: CertificateEncoding::Pem, data: d.clone() })
                .collect(),
            max_concurrent_download: config.max_concurrent_downloads.max(1),
            max_concurrent_upload: config.max_concurrent_uploads.max(1),
            connect_timeout: Some(Duration::from_secs(15)),
            read_timeout: Some(Duration::from_secs(60)),
            ..Default::default()
        })
    }

    /// The registry API's base URL: Docker Hub's API lives at registry-1.docker.io.
    pub(crate) fn registry_base(&self) -> String {
        match self.host.as_str() {
            "docker.io" | "index.docker.io" => "https://registry-1.docker.io".into(),
            _ => self.base(),
        }
    }

    /// A plain HTTP client with this endpoint's trust settings (for `docker
    /// login` and bounded manifest reads).
    pub(crate) fn http(&self) -> Result<reqwest::Client> {
        let mut b = reqwest::Client::builder()
            .danger_accept_invalid_certs(!self.verify)
            .connect_timeout(Duration::from_secs(15))
            .timeout(Duration::from_secs(30));
        for pem in &self.roots {
            let cert = reqwest::Certificate::from_pem(pem).map_err(|e| Error::invalid(format!("certs.d: {e}")))?;
            b = b.add_root_certificate(cert);
        }
        b.build().map_err(|e| Error::internal(format!("http client: {e}")))
    }

    fn base(&self) -> String {
        format!("{}://{}", if self.https { "https" } else { "http" }, self.host)
    }
}

/// The credentials of a request, for oci-client.
pub fn auth_of(a: Option<&pb::RegistryAuth>) -> RegistryAuth {
    match a {
        Some(a) if !a.registry_token.is_empty() => RegistryAuth::Bearer(a.registry_token.clone()),
        Some(a) if !a.username.is_empty() || !a.password.is_empty() => {
            RegistryAuth::Basic(a.username.clone(), a.password.clone())
        }
        Some(a) if !a.identity_token.is_empty() => RegistryAuth::Basic("<token>".into(), a.identity_token.clone()),
        _ => RegistryAuth::Anonymous,
    }
}

/// An oci-client error as Berth's, with dockerd's words where it has them.
pub fn error_of(e: OciDistributionError, what: &str) -> Error {
    use OciDistributionError as E;
    match e {
        E::AuthenticationFailure(m) => {
            Error::new(ErrorKind::Unauthenticated, format!("{what}: unauthorized: authentication required: {m}"))
        }
        E::UnauthorizedError { url } => {
            Error::new(ErrorKind::Unauthenticated, format!("{what}: unauthorized: authentication required ({url})"))
        }
        E::ImageManifestNotFoundError(m) => Error::not_found(format!("{what}: manifest unknown: {m}")),
        E::ServerError { code: 404, message, .. } => {
            Error::not_found(format!("{what}: not found: {}", brief(&message)))
        }
        E::ServerError { code: 401, message, .. } => {
            Error::new(ErrorKind::Unauthenticated, format!("{what}: unauthorized: {}", brief(&message)))
        }
        E::ServerError { code, message, url } => {
            Error::internal(format!("{what}: {url} answered {code}: {}", brief(&message)))
        }
        E::RegistryError { envelope, .. } => {
            let text: Vec<String> = envelope.errors.iter().map(|e| format!("{:?}: {}", e.code, e.message)).collect();
            let joined = text.join("; ");
            if joined.contains("ManifestUnknown") {
                // dockerd's words: "manifest for x:y not found: manifest unknown: ...".
                let detail = envelope.errors.first().map(|e| e.message.clone()).unwrap_or_default();
                Error::not_found(format!("{what} not found: manifest unknown: {detail}"))
            } else if joined.contains("NameUnknown") || joined.contains("BlobUnknown") {
                Error::not_found(format!("{what}: {joined}"))
            } else if joined.contains("Unauthorized") || joined.contains("Denied") {
                Error::new(ErrorKind::Unauthenticated, format!("{what}: {joined}"))
            } else {
                Error::internal(format!("{what}: {joined}"))
            }
        }
        E::RequestError(r) => Error::internal(format!("{what}: {}", request_error(&r))),
        other => Error::internal(format!("{what}: {other}")),
    }
}

/// A request error with its causes (connection refused, TLS), as Go prints them.
fn request_error(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

fn brief(body: &str) -> String {
    let b = body.trim();
    b.chars().take(300).collect()
}

/// `docker login`: checks the credentials against the registry's `/v2/`
/// (basic auth directly, or the token service its challenge names).
pub async fn login(config: &RegistryConfig, auth: &pb::RegistryAuth) -> Result<pb::LoginResponse> {
    let server = auth.server_address.trim();
    let host = server.split_once("://").map(|(_, h)| h).unwrap_or(server).trim_end_matches('/');
    let host = host.strip_suffix("/v1").or_else(|| host.strip_suffix("/v2")).unwrap_or(host);
    let host = if host.is_empty() || host.contains("index.docker.io") { "docker.io" } else { host };
    let endpoint = config.endpoint(host).await;
    let http = endpoint.http()?;
    let url = format!("{}/v2/", endpoint.base());
    let denied = || {
        Error::new(ErrorKind::Unauthenticated, format!("login attempt to {url} failed with status: 401 Unauthorized"))
    };
    let first = http
        .get(&url)
        .basic_auth(&auth.username, Some(&auth.password))
        .send()
        .await
        .map_err(|e| Error::internal(format!("Get \"{url}\": {}", request_error(&e))))?;
    if first.status().is_success() {
        return Ok(pb::LoginResponse { status: "Login Succeeded".into(), identity_token: String::new() });
    }
    if first.status() != reqwest::StatusCode::UNAUTHORIZED {
        return Err(Error::internal(format!("login attempt to {url} failed with status: {}", first.status())));
    }
    // A token service: ask it for a token with these credentials.
    let challenge = first.headers().get(reqwest::header::WWW_AUTHENTICATE).and_then(|h| h.to_str().ok());
    let Some(auth::Challenge { realm, service }) = challenge.and_then(auth::Challenge::parse) else {
        return Err(denied());
    };
    let mut req = http.get(&realm).basic_auth(&auth.username, Some(&auth.password));
    if let Some(service) = service {
        req = req.query(&[("service", service)]);
    }
    let r = req.send().await.map_err(|e| Error::internal(format!("Get \"{realm}\": {}", request_error(&e))))?;
    if !r.status().is_success() {
        return Err(denied());
    }
    Ok(pb::LoginResponse { status: "Login Succeeded".into(), identity_token: String::new() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insecure_like_dockerd() {
        let c = RegistryConfig { insecure: vec!["10.0.0.0/8".into(), "reg.test:5000".into()], ..Default::default() };
        assert!(c.is_insecure("127.0.0.1:5000") && c.is_insecure("127.9.9.9"), "loopback always");
        assert!(c.is_insecure("10.1.2.3:443") && c.is_insecure("reg.test:5000"));
        assert!(!c.is_insecure("192.168.1.1:5000") && !c.is_insecure("reg.test:5001"));
        assert!(c.is_insecure("localhost:5000"), "names resolve");
        assert!(in_cidr("::1".parse().expect("ip"), "::1/128"));
    }

    #[test]
    fn locations_and_mirrors() {
        let l = locate(&Reference::parse("busybox").expect("ref"));
        assert_eq!((l.registry.as_str(), l.repository.as_str()), ("docker.io", "library/busybox"));
        let l = locate(&Reference::parse("127.0.0.1:5000/team/app:v1").expect("ref"));
        assert_eq!((l.registry.as_str(), l.repository.as_str()), ("127.0.0.1:5000", "team/app"));
        let c = RegistryConfig { mirrors: vec!["http://127.0.0.1:5001/".into()], ..Default::default() };
        assert_eq!(c.hosts_for("docker.io"), vec!["127.0.0.1:5001", "docker.io"]);
        assert_eq!(c.hosts_for("reg.test"), vec!["reg.test"]);
    }

    #[test]
    fn credentials() {
        assert!(matches!(auth_of(None), RegistryAuth::Anonymous));
        let a = pb::RegistryAuth { username: "u".into(), password: "p".into(), ..Default::default() };
        assert!(matches!(auth_of(Some(&a)), RegistryAuth::Basic(u, p) if u == "u" && p == "p"));
        assert!(!format!("{a:?}").contains("\"p\""), "never printed");
    }
}
