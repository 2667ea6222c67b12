//! A real local registry for end-to-end pulls: Debian's CNCF distribution
//! (`docker-registry` 2.8.2) on `127.0.0.1:<free port>`, with filesystem
//! storage in a temporary directory, optionally with htpasswd (basic) auth and
//! TLS, plus a small client that pushes [`TestImage`]s, manifest lists and OCI
//! indexes to it and corrupts stored blobs.
//!
//! Notes on distribution 2.8.2, as found here:
//! - htpasswd auth works without TLS: plain HTTP `GET /v2/` answers 401 with
//!   `Www-Authenticate: Basic realm="<realm>"` and 200 with the right
//!   `Authorization: Basic`. (Only the docs ask for TLS; the code does not
//!   enforce it.)
//! - The upload `Location` is absolute (`http://127.0.0.1:PORT/v2/<repo>/blobs/uploads/<uuid>?_state=...`),
//!   built from the request's `Host`.
//! - A monolithic `PUT <location>&digest=...` must not carry
//!   `Content-Type: application/x-www-form-urlencoded` (curl's default for
//!   `--data-binary`): Go's `FormValue("digest")` then reads the body as a form
//!   and the upload fails with `DIGEST_INVALID`. Send `application/octet-stream`.
//! - HEAD answers carry the `Content-Length` of the body a GET would have
//!   (also the JSON error body of a 404) but no body.
//! - `GET /v2/<repo>/manifests/<ref>`: an OCI manifest or index is only
//!   returned when `Accept` names its media type (otherwise 404
//!   `MANIFEST_UNKNOWN`, "OCI manifest found, but accept header does not
//!   support OCI manifests"); a Docker schema2 manifest or manifest list
//!   fetched by tag without its media type in `Accept` is rewritten: a
//!   schema2 manifest to a signed schema1 one
//!   (`application/vnd.docker.distribution.manifest.v1+prettyjws`), a
//!   manifest list to its linux/amd64 entry. By digest both are served as is.
//! - A list or index whose entries the repository lacks is refused (400), so
//!   push the entries first.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::{HttpReply, TestImage, digest, free_port};

/// Docker image manifest (schema 2).
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker gzip layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI uncompressed layer.
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI gzip layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// An `Accept` header value naming every manifest media type.
pub const ACCEPT_ALL_MANIFESTS: &str = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";

/// How the registry is set up.
#[derive(Clone, Debug, Default)]
pub struct RegistryOpts {
    /// Basic auth with this user and password (an htpasswd file with bcrypt).
    pub htpasswd: Option<(String, String)>,
    /// Serve HTTPS with this certificate and key (PEM files); the certificate
    /// must be valid for the IP 127.0.0.1 and is also what the harness trusts.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The local address to listen on; 127.0.0.1 when not given.
    pub ip: Option<String>,
    /// Token auth (`WWW-Authenticate: Bearer`): the token service's realm URL,
    /// the service and issuer names, and the PEM certificate its tokens are
    /// signed with. The harness's own uploads cannot speak it: push through Berth.
    pub token: Option<TokenAuth>,
}

/// The registry's `auth.token` settings.
#[derive(Clone, Debug)]
pub struct TokenAuth {
    /// Where clients get tokens (`http://127.0.0.1:PORT/token`).
    pub realm: String,
    /// The `service` (the token's audience).
    pub service: String,
    /// The `issuer` of the tokens.
    pub issuer: String,
    /// The certificate (PEM) that signs the tokens.
    pub root_cert: PathBuf,
}

/// Which manifest types [`Registry::push_image`] and [`Registry::push_index`] use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Docker schema 2 manifest / manifest list.
    Docker,
    /// OCI image manifest / index.
    Oci,
}

/// How [`Registry::push_image`] stores layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// gzip (deterministic: no name, mtime 0).
    Gzip,
    /// zstd (ruzstd's encoder); only with [`Format::Oci`].
    Zstd,
    /// Uncompressed tar; only with [`Format::Oci`].
    None,
}

/// A running `docker-registry`, killed and its storage removed on drop.
pub struct Registry {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
    opts: RegistryOpts,
}

impl Registry {
    /// Starts a registry on `127.0.0.1:<free port>` with storage in a fresh
    /// temporary directory, and waits until `GET /v2/` answers.
    pub fn start(opts: RegistryOpts) -> Result<Registry> {
        let dir = tempfile::Builder::new().prefix("berth-registry-").tempdir()?;
        std::fs::create_dir_all(dir.path().join("storage"))?;
        if let Some((user, pass)) = &opts.htpasswd {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, pass])
                .stdin(Stdio::null())
                .output()
                .context("run htpasswd (install apache2-utils)")?;
            if !out.status.success() {
                bail!("htpasswd failed: {}", String::from_utf8_lossy(&out.stderr));
            }
            std::fs::write(dir.path().join("htpasswd"), &out.stdout)?;
        }
        let mut r = Registry { child: None, dir, port: 0, opts };
        // free_port() races with other tests: try another port if it was taken.
        for attempt in 1.. {
            r.port = free_port();
            match r.spawn() {
                Ok(()) => break,
                Err(e) if attempt < 3 && format!("{e:#}").contains("address already in use") => {
                    let _ = std::fs::remove_file(r.dir.path().join("registry.log"));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(r)
    }

    /// The registry's configuration file for the current port.
    fn write_config(&self) -> Result<PathBuf> {
        let q = |p: &Path| serde_json::to_string(&p.to_string_lossy()).unwrap_or_default();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\nhttp:\n  addr: {}\n  secret: berth-e2e-secret\n",
            q(&self.storage()),
            self.host()
        );
        if let Some((cert, key)) = &self.opts.tls {
            config.push_str(&format!("  tls:\n    certificate: {}\n    key: {}\n", q(cert), q(key)));
        }
        if let Some(t) = &self.opts.token {
            config.push_str(&format!(
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                serde_json::to_string(&t.realm).unwrap_or_default(),
                serde_json::to_string(&t.service).unwrap_or_default(),
                serde_json::to_string(&t.issuer).unwrap_or_default(),
                q(&t.root_cert)
            ));
        } else if self.opts.htpasswd.is_some() {
            let file = self.dir.path().join("htpasswd");
            config.push_str(&format!("auth:\n  htpasswd:\n    realm: berth-e2e\n    path: {}\n", q(&file)));
        }
        // Manifests may name foreign layers' URLs, on loopback only.
        config.push_str(
            "validation:\n  manifests:\n    urls:\n      allow:\n        - '^https?://127\\.0\\.0\\.1[:/]'\n",
        );
        let path = self.dir.path().join("config.yml");
        std::fs::write(&path, config)?;
        Ok(path)
    }

    fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("registry.log"))?;
        let mut cmd = Command::new("docker-registry");
        cmd.arg("serve").arg(self.write_config()?);
        // REGISTRY_* variables override the config file.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("REGISTRY_") {
                cmd.env_remove(k);
            }
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawn docker-registry (install docker-registry)")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                bail!("docker-registry exited early with {status}\n--- registry log ---\n{}", self.log());
            }
            match self.request("GET", "/v2/", &[], b"") {
                Ok((200, _, _)) => return Ok(()),
                Ok((401, _, _)) if self.opts.token.is_some() => return Ok(()),
                Ok((status, _, body)) => {
                    bail!(
                        "GET /v2/ answered {status}: {}\n--- registry log ---\n{}",
                        String::from_utf8_lossy(&body),
                        self.log()
                    )
                }
                Err(e) if Instant::now() > deadline => {
                    bail!("docker-registry did not answer in 30s: {e:#}\n--- registry log ---\n{}", self.log())
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// `IP:PORT` (127.0.0.1 unless the options name another address).
    pub fn host(&self) -> String {
        format!("{}:{}", self.opts.ip.as_deref().unwrap_or("127.0.0.1"), self.port)
    }

    /// The filesystem root of the registry's storage.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Kills the registry (it goes down); [`Registry::restart`] brings it back.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the registry again on the same port and storage.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.spawn()
    }

    /// One HTTP exchange with the registry, with the configured credentials
    /// (if any). `path` is absolute (`/v2/...`). Does not check the status.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<HttpReply> {
        let auth = self.opts.htpasswd.as_ref().map(|(u, p)| (u.as_str(), p.as_str()));
        self.request_as(auth, method, path, headers, body)
    }

    /// One HTTP exchange with explicit credentials (`None`: anonymous).
    pub fn request_as(
        &self,
        auth: Option<(&str, &str)>,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<HttpReply> {
        let mut all: Vec<(String, String)> = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        if let Some((user, pass)) = auth {
            all.push(("Authorization".into(), format!("Basic {}", base64(format!("{user}:{pass}").as_bytes()))));
        }
        let what = format!("{method} {path}");
        match &self.opts.tls {
            Some((cert, _)) => curl_exchange(cert, &self.host(), method, path, &all, body).context(what),
            None => tcp_exchange(&self.host(), method, path, &all, body).context(what),
        }
    }

    /// [`Registry::request`], failing unless the status is one of `ok`.
    fn call(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8], ok: &[u16]) -> Result<HttpReply> {
        let reply = self.request(method, path, headers, body)?;
        if !ok.contains(&reply.0) {
            bail!("{method} {path}: HTTP {}: {}", reply.0, String::from_utf8_lossy(&reply.2));
        }
        Ok(reply)
    }

    /// Uploads one blob to `repo` (monolithic), unless the registry already
    /// has it; returns its digest.
    pub fn push_blob(&self, repo: &str, data: &[u8]) -> Result<String> {
        let d = digest(data);
        let (status, _, body) = self.request("HEAD", &format!("/v2/{repo}/blobs/{d}"), &[], b"")?;
        match status {
            200 => return Ok(d),
            404 => {}
            _ => bail!("HEAD /v2/{repo}/blobs/{d}: HTTP {status}: {}", String::from_utf8_lossy(&body)),
        }
        let (_, headers, _) = self.call("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], b"", &[202])?;
        let location = header(&headers, "location").context("upload answer without Location")?;
        let path = strip_origin(location);
        let sep = if path.contains('?') { '&' } else { '?' };
        let put = format!("{path}{sep}digest={d}");
        let (_, headers, _) = self.call("PUT", &put, &[("Content-Type", "application/octet-stream")], data, &[201])?;
        if let Some(got) = header(&headers, "docker-content-digest")
            && got != d
        {
            bail!("registry stored blob {d} as {got}");
        }
        Ok(d)
    }

    /// Puts a manifest (or index) under `reference` (a tag or its digest) with
    /// `media_type` as its Content-Type; returns its digest.
    pub fn push_manifest(&self, repo: &str, reference: &str, media_type: &str, manifest: &[u8]) -> Result<String> {
        let d = digest(manifest);
        let (_, headers, _) = self.call(
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Content-Type", media_type)],
            manifest,
            &[201],
        )?;
        if let Some(got) = header(&headers, "docker-content-digest")
            && got != d
        {
            bail!("registry stored manifest {d} as {got}");
        }
        Ok(d)
    }

    /// Uploads the image's layers (compressed per `compression`), config and
    /// manifest, tagged `tag`. Returns the manifest's digest and bytes.
    pub fn push_image(
        &self,
        repo: &str,
        tag: &str,
        image: &TestImage,
        format: Format,
        compression: Compression,
    ) -> Result<(String, Vec<u8>)> {
        let (manifest_type, config_type, layer_type) = match (format, compression) {
            (Format::Docker, Compression::Gzip) => (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER_GZIP),
            (Format::Docker, Compression::None | Compression::Zstd) => {
                bail!("uncompressed and zstd layers need Format::Oci")
            }
            (Format::Oci, Compression::Zstd) => {
                (OCI_MANIFEST, OCI_CONFIG, "application/vnd.oci.image.layer.v1.tar+zstd")
            }
            (Format::Oci, Compression::Gzip) => (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER_GZIP),
            (Format::Oci, Compression::None) => (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER),
        };
        let mut layers = Vec::new();
        for layer in &image.layers {
            let blob = match compression {
                Compression::Gzip => gzip(layer)?,
                Compression::None => layer.clone(),
                Compression::Zstd => {
                    ruzstd::encoding::compress_to_vec(layer.as_slice(), ruzstd::encoding::CompressionLevel::Fastest)
                }
            };
            let d = self.push_blob(repo, &blob)?;
            layers.push(json!({"mediaType": layer_type, "digest": d, "size": blob.len()}));
        }
        let config = image.config_bytes();
        let config_digest = self.push_blob(repo, &config)?;
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": {"mediaType": config_type, "digest": config_digest, "size": config.len()},
            "layers": layers,
        }))?;
        let d = self.push_manifest(repo, tag, manifest_type, &manifest)?;
        Ok((d, manifest))
    }

    /// Pushes a Docker manifest list ([`Format::Docker`]) or OCI index
    /// ([`Format::Oci`]) of manifests already in `repo`, tagged `tag`.
    /// `entries`: (os, architecture, manifest digest, manifest size, manifest
    /// media type). Returns its digest.
    pub fn push_index(
        &self,
        repo: &str,
        tag: &str,
        format: Format,
        entries: &[(String, String, String, u64, String)],
    ) -> Result<String> {
        let media_type = match format {
            Format::Docker => DOCKER_MANIFEST_LIST,
            Format::Oci => OCI_INDEX,
        };
        let manifests: Vec<_> = entries
            .iter()
            .map(|(os, arch, d, size, mt)| {
                json!({"mediaType": mt, "digest": d, "size": size, "platform": {"architecture": arch, "os": os}})
            })
            .collect();
        let index = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": media_type, "manifests": manifests}))?;
        self.push_manifest(repo, tag, media_type, &index)
    }

    /// The path of a blob's data file in storage.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let (algo, hex) = digest.split_once(':').unwrap_or(("sha256", digest));
        let prefix = hex.get(..2).unwrap_or(hex);
        self.storage().join("docker/registry/v2/blobs").join(algo).join(prefix).join(hex).join("data")
    }

    /// Overwrites a stored blob with garbage of the same length (every byte
    /// flipped), so the registry serves bytes that do not match the digest.
    pub fn corrupt_blob(&self, digest: &str) -> Result<()> {
        let path = self.blob_path(digest);
        let data = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
        let garbage: Vec<u8> = data.iter().map(|b| !b).collect();
        std::fs::write(&path, garbage).with_context(|| format!("write {}", path.display()))?;
        Ok(())
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The first value of header `name` (lower case).
fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// `http(s)://host/path?q` → `/path?q`; a relative reference is kept.
fn strip_origin(location: &str) -> String {
    match location.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or_else(|| "/".to_string(), |i| rest[i..].to_string()),
        None => location.to_string(),
    }
}

fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    // Same settings as the crate's OCI layout tarballs, so digests agree.
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data)?;
    Ok(e.finish()?)
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = |i: usize| chunk.get(i).copied().unwrap_or(0) as u32;
        let n = (b(0) << 16) | (b(1) << 8) | b(2);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Parses a response head (`HTTP/1.1 200 OK\r\nName: value...`) into the
/// status and lower-cased headers.
fn parse_head(head: &str) -> Result<(u16, Vec<(String, String)>)> {
    let mut lines = head.lines();
    let status_line = lines.next().context("empty response")?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())))
        .collect();
    Ok((status, headers))
}

/// Plain HTTP/1.1 over TCP: one request with Content-Length, `Connection:
/// close`; reads the response to EOF and decodes a Content-Length or chunked body.
fn tcp_exchange(host: &str, method: &str, path: &str, headers: &[(String, String)], body: &[u8]) -> Result<HttpReply> {
    let addr = host.parse().with_context(|| format!("address {host}"))?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    s.set_write_timeout(Some(Duration::from_secs(60)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || !matches!(method, "GET" | "HEAD" | "DELETE") {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    // The server may answer (an error) and close before reading all of a
    // large body: then its answer says more than the write error.
    let sent = s.write_all(req.as_bytes()).and_then(|_| s.write_all(body));
    let mut raw = Vec::new();
    let read = s.read_to_end(&mut raw);
    let split = match raw.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(p) => p,
        None => {
            sent?;
            read?;
            bail!("no complete response head: {:?}", String::from_utf8_lossy(&raw));
        }
    };
    let (status, headers) = parse_head(&String::from_utf8_lossy(&raw[..split]))?;
    let rest = &raw[split + 4..];
    let body = if method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status) {
        Vec::new()
    } else if header(&headers, "transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        dechunk(rest)?
    } else if let Some(len) = header(&headers, "content-length") {
        let len: usize = len.parse().with_context(|| format!("bad Content-Length {len:?}"))?;
        if rest.len() < len {
            bail!("body cut short: {} of {len} bytes", rest.len());
        }
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    Ok((status, headers, body))
}

/// Decodes a chunked body.
fn dechunk(mut data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let pos = data.windows(2).position(|w| w == b"\r\n").context("chunked body cut short")?;
        let line = String::from_utf8_lossy(&data[..pos]).to_string();
        let size_text = line.split_once(';').map_or(line.as_str(), |(s, _)| s).trim();
        let size = usize::from_str_radix(size_text, 16).with_context(|| format!("bad chunk size {line:?}"))?;
        data = &data[pos + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            bail!("chunked body cut short");
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// HTTPS through curl (the harness speaks no TLS itself), trusting `cert`.
fn curl_exchange(
    cert: &Path,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<HttpReply> {
    let head_file = tempfile::NamedTempFile::new()?;
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--noproxy", "*", "--max-time", "120", "-H", "Expect:", "--cacert"])
        .arg(cert)
        .arg("-D")
        .arg(head_file.path());
    if method == "HEAD" {
        cmd.arg("--head");
    } else {
        cmd.args(["-X", method]);
    }
    for (k, v) in headers {
        cmd.arg("-H").arg(format!("{k}: {v}"));
    }
    let send_body = !body.is_empty() || !matches!(method, "GET" | "HEAD" | "DELETE");
    if send_body {
        cmd.args(["--data-binary", "@-"]);
        // Not curl's default form type: the registry would read the body as a form.
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
            cmd.args(["-H", "Content-Type: application/octet-stream"]);
        }
    }
    cmd.arg(format!("https://{host}{path}"));
    cmd.stdin(if send_body { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().context("spawn curl")?;
    let writer = child.stdin.take().map(|mut pipe| {
        let data = body.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        })
    });
    let out = child.wait_with_output()?;
    if let Some(w) = writer {
        let _ = w.join();
    }
    if !out.status.success() {
        bail!("curl failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    let heads = std::fs::read_to_string(head_file.path())?;
    // The last response head (after any 1xx).
    let last = heads.rfind("HTTP/").map(|i| &heads[i..]).context("curl wrote no response head")?;
    let (status, headers) = parse_head(last)?;
    let body = if method == "HEAD" { Vec::new() } else { out.stdout };
    Ok((status, headers, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn get_manifest(r: &Registry, repo: &str, reference: &str, accept: &str) -> HttpReply {
        let headers: Vec<(&str, &str)> = if accept.is_empty() { vec![] } else { vec![("Accept", accept)] };
        r.request("GET", &format!("/v2/{repo}/manifests/{reference}"), &headers, b"").expect("GET manifest")
    }

    fn check_manifest(r: &Registry, repo: &str, tag: &str, accept: &str, want_digest: &str, want_bytes: &[u8]) {
        let (status, headers, body) = get_manifest(r, repo, tag, accept);
        assert_eq!(status, 200, "{}\n{}", String::from_utf8_lossy(&body), r.log());
        assert_eq!(digest(&body), want_digest);
        assert_eq!(body, want_bytes);
        assert_eq!(header(&headers, "docker-content-digest"), Some(want_digest));
        // By digest too.
        let (status, _, body) = get_manifest(r, repo, want_digest, accept);
        assert_eq!(status, 200);
        assert_eq!(digest(&body), want_digest);
    }

    fn layer_digests(manifest: &[u8]) -> Vec<String> {
        let m: Value = serde_json::from_slice(manifest).expect("manifest json");
        m["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .map(|l| l["digest"].as_str().expect("digest").to_string())
            .collect()
    }

    #[test]
    fn base64_encodes() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
    }

    #[test]
    fn dechunks_and_strips_origin() {
        assert_eq!(dechunk(b"3;x=y\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").expect("dechunk"), b"abcde");
        assert!(dechunk(b"5\r\nab").is_err());
        assert_eq!(
            strip_origin("http://127.0.0.1:5000/v2/a/blobs/uploads/u?_state=x"),
            "/v2/a/blobs/uploads/u?_state=x"
        );
        assert_eq!(strip_origin("/v2/a/blobs/uploads/u"), "/v2/a/blobs/uploads/u");
    }

    #[test]
    fn registry_push_and_fetch_all_formats() {
        let r = Registry::start(RegistryOpts::default()).expect("start registry");
        let img = TestImage::busybox(&[]);
        let repo = "test/busybox";

        let (d_docker, m_docker) =
            r.push_image(repo, "docker", &img, Format::Docker, Compression::Gzip).expect("push docker");
        let (d_oci, m_oci) = r.push_image(repo, "oci-gz", &img, Format::Oci, Compression::Gzip).expect("push oci gz");
        let (d_tar, m_tar) = r.push_image(repo, "oci-tar", &img, Format::Oci, Compression::None).expect("push oci tar");
        assert!(r.push_image(repo, "bad", &img, Format::Docker, Compression::None).is_err());

        // Same gzip bytes for both gzip formats; the tar layer is the raw layer.
        assert_eq!(layer_digests(&m_docker), layer_digests(&m_oci));
        assert_eq!(layer_digests(&m_tar), vec![digest(&img.layers[0])]);

        check_manifest(&r, repo, "docker", DOCKER_MANIFEST, &d_docker, &m_docker);
        check_manifest(&r, repo, "oci-gz", OCI_MANIFEST, &d_oci, &m_oci);
        check_manifest(&r, repo, "oci-tar", OCI_MANIFEST, &d_tar, &m_tar);
        check_manifest(&r, repo, "oci-gz", ACCEPT_ALL_MANIFESTS, &d_oci, &m_oci);

        // An OCI manifest is not served without its media type in Accept.
        let (status, _, body) = get_manifest(&r, repo, "oci-gz", DOCKER_MANIFEST);
        assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
        assert!(String::from_utf8_lossy(&body).contains("MANIFEST_UNKNOWN"));
        // A Docker schema2 manifest by tag without its type in Accept is
        // rewritten to a signed schema1 manifest.
        let (status, headers, body) = get_manifest(&r, repo, "docker", "");
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "content-type"), Some("application/vnd.docker.distribution.manifest.v1+prettyjws"));
        assert_ne!(digest(&body), d_docker);
        // By digest it is served as is.
        let (status, _, body) = get_manifest(&r, repo, &d_docker, "");
        assert_eq!(status, 200);
        assert_eq!(digest(&body), d_docker);

        // HEAD: status and headers, no body.
        let (status, headers, body) =
            r.request("HEAD", &format!("/v2/{repo}/manifests/oci-gz"), &[("Accept", OCI_MANIFEST)], b"").expect("head");
        assert_eq!((status, body.len()), (200, 0));
        assert_eq!(header(&headers, "docker-content-digest"), Some(d_oci.as_str()));
        assert_eq!(header(&headers, "content-length"), Some(m_oci.len().to_string().as_str()));
        let config = digest(&img.config_bytes());
        let (status, headers, body) = r.request("HEAD", &format!("/v2/{repo}/blobs/{config}"), &[], b"").expect("head");
        assert_eq!((status, body.len()), (200, 0));
        assert_eq!(header(&headers, "content-length"), Some(img.config_bytes().len().to_string().as_str()));
        let (status, _, body) = r.request("GET", &format!("/v2/{repo}/blobs/{config}"), &[], b"").expect("get");
        assert_eq!(status, 200);
        assert_eq!(body, img.config_bytes());

        // Pushing again skips the blobs it has and keeps the digest.
        let before = r.log().matches("PUT /v2/test/busybox/blobs/uploads/").count();
        let (again, _) = r.push_image(repo, "docker2", &img, Format::Docker, Compression::Gzip).expect("push again");
        assert_eq!(again, d_docker);
        assert_eq!(r.log().matches("PUT /v2/test/busybox/blobs/uploads/").count(), before);
        assert!(r.blob_path(&d_docker).exists());
    }

    #[test]
    fn registry_index_and_list() {
        let r = Registry::start(RegistryOpts::default()).expect("start registry");
        let amd = TestImage::busybox(&[]);
        let other = TestImage::busybox(&[]).with_layer(crate::Tar::new().file("marker", b"x", 0o644).finish(), &[]);
        let repo = "multi";
        for (format, list_type) in [(Format::Docker, DOCKER_MANIFEST_LIST), (Format::Oci, OCI_INDEX)] {
            let mt = if format == Format::Docker { DOCKER_MANIFEST } else { OCI_MANIFEST };
            let (d1, m1) = r.push_image(repo, "a", &amd, format, Compression::Gzip).expect("push a");
            let (d2, m2) = r.push_image(repo, "b", &other, format, Compression::Gzip).expect("push b");
            let entries = vec![
                ("linux".to_string(), "amd64".to_string(), d1, m1.len() as u64, mt.to_string()),
                ("linux".to_string(), "arm64".to_string(), d2, m2.len() as u64, mt.to_string()),
            ];
            let tag = format!("{format:?}").to_lowercase();
            let d = r.push_index(repo, &tag, format, &entries).expect("push index");
            let (status, headers, body) = get_manifest(&r, repo, &tag, list_type);
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
            assert_eq!(digest(&body), d);
            assert_eq!(header(&headers, "content-type"), Some(list_type));
            let v: Value = serde_json::from_slice(&body).expect("json");
            assert_eq!(v["manifests"][1]["platform"]["architecture"], "arm64");
            let (status, _, body) = get_manifest(&r, repo, &tag, ACCEPT_ALL_MANIFESTS);
            assert_eq!((status, digest(&body)), (200, d.clone()));
            // Without the list type in Accept: a Docker list by tag is
            // replaced by its linux/amd64 entry, an OCI index is not served.
            let (status, _, body) = get_manifest(&r, repo, &tag, mt);
            if format == Format::Docker {
                assert_eq!((status, digest(&body)), (200, entries[0].2.clone()));
            } else {
                assert_eq!(status, 404);
                assert!(String::from_utf8_lossy(&body).contains("MANIFEST_UNKNOWN"));
            }
        }
        // An index of a manifest the repo does not have is refused.
        let missing = vec![("linux".to_string(), "amd64".to_string(), digest(b"nothing"), 7, OCI_MANIFEST.to_string())];
        let err = r.push_index(repo, "broken", Format::Oci, &missing).expect_err("index of a missing manifest");
        assert!(format!("{err:#}").contains("HTTP 400"), "{err:#}");
    }

    #[test]
    fn registry_corrupt_blob_and_restart() {
        let mut r = Registry::start(RegistryOpts::default()).expect("start registry");
        let img = TestImage::busybox(&[]);
        let (d, m) = r.push_image("c", "latest", &img, Format::Oci, Compression::Gzip).expect("push");
        let layer = layer_digests(&m).remove(0);
        let path = r.blob_path(&layer);
        assert!(path.starts_with(r.storage()));
        let size = std::fs::metadata(&path).expect("blob file").len();
        let (status, _, body) = r.request("GET", &format!("/v2/c/blobs/{layer}"), &[], b"").expect("get");
        assert_eq!((status, digest(&body)), (200, layer.clone()));
        r.corrupt_blob(&layer).expect("corrupt");
        let (status, _, body) = r.request("GET", &format!("/v2/c/blobs/{layer}"), &[], b"").expect("get");
        assert_eq!(status, 200);
        assert_eq!(body.len() as u64, size);
        assert_ne!(digest(&body), layer);

        // Down, then back on the same port with the same content.
        let host = r.host();
        r.stop();
        assert!(r.request("GET", "/v2/", &[], b"").is_err());
        r.restart().expect("restart");
        assert_eq!(r.host(), host);
        check_manifest(&r, "c", "latest", OCI_MANIFEST, &d, &m);
    }

    #[test]
    fn registry_htpasswd_without_tls() {
        let opts = RegistryOpts { htpasswd: Some(("tester".into(), "s3cret".into())), ..Default::default() };
        let r = Registry::start(opts).expect("start registry with htpasswd");
        let (status, headers, _) = r.request_as(None, "GET", "/v2/", &[], b"").expect("anonymous");
        assert_eq!(status, 401);
        let challenge = header(&headers, "www-authenticate").expect("challenge");
        assert!(challenge.starts_with("Basic "), "{challenge}");
        let (status, _, _) = r.request_as(Some(("tester", "wrong")), "GET", "/v2/", &[], b"").expect("wrong");
        assert_eq!(status, 401);
        let (status, _, _) = r.request_as(Some(("tester", "s3cret")), "GET", "/v2/", &[], b"").expect("right");
        assert_eq!(status, 200);

        let img = TestImage::busybox(&[]);
        let (d, m) = r.push_image("auth/busybox", "v1", &img, Format::Docker, Compression::Gzip).expect("push");
        check_manifest(&r, "auth/busybox", "v1", DOCKER_MANIFEST, &d, &m);
        let (status, _, _) = r
            .request_as(None, "GET", "/v2/auth/busybox/manifests/v1", &[("Accept", DOCKER_MANIFEST)], b"")
            .expect("anonymous manifest");
        assert_eq!(status, 401);
    }

    #[test]
    fn registry_tls_with_htpasswd() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (key, cert) =
            crate::self_signed(dir.path(), "server", "127.0.0.1", &["-addext", "subjectAltName=IP:127.0.0.1"]);
        let opts =
            RegistryOpts { htpasswd: Some(("u".into(), "p".into())), tls: Some((cert, key)), ..Default::default() };
        let r = Registry::start(opts).expect("start registry with TLS");
        let img = TestImage::busybox(&[]);
        let (d, m) = r.push_image("tls/busybox", "v1", &img, Format::Oci, Compression::Gzip).expect("push");
        check_manifest(&r, "tls/busybox", "v1", OCI_MANIFEST, &d, &m);
        let (status, _, _) = r.request_as(None, "GET", "/v2/", &[], b"").expect("anonymous");
        assert_eq!(status, 401);
        // Plain HTTP to the TLS port is no registry answer.
        let plain = tcp_exchange(&r.host(), "GET", "/v2/", &[], b"");
        assert!(plain.map(|(s, _, _)| s != 200).unwrap_or(true));
    }
}
