//! `docker pull`: manifest (or a manifest list / OCI index, resolved to the
//! wanted platform), config, then the missing layers, several at once, each
//! downloaded to `ingest/<hex>.partial` (resumed with a range request on the
//! next attempt), verified against its digest, then decompressed, checked
//! against the config's diff ID and unpacked as soon as it is complete. The
//! image becomes visible only when everything is in: a failed pull leaves no
//! image, no layer, and keeps its partial downloads for the next attempt.
//!
//! Progress goes out as dockerd's messages (`Pulling from`, `Pulling fs
//! layer`, `Waiting`, `Downloading`, `Verifying Checksum`, `Download complete`,
//! `Extracting`, `Pull complete`, `Already exists`, `Digest:`, `Status:`).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tracing::Instrument as _;

use berth_core::{Error, Result};
use berth_models::distribution::{ImageIndex, ImageManifest, ManifestDoc};
use berth_models::image::ImageConfig;
use futures::{StreamExt, TryStreamExt};
use oci_client::Reference as OciRef;
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::{RegistryConfig, RegistryConfigExt, auth_of, error_of, locate};
use crate::digest::{chain_ids, sha256_digest};
use crate::pb;
use crate::reference::Reference;
use crate::service::LocalImageService;
use crate::store::LayerRecord;

/// Manifest media types.
pub use berth_models::distribution::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
const ACCEPT: [&str; 4] = [DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX];

/// Progress (or the error that ends it) of one operation.
pub type ProgressTx = mpsc::Sender<Result<pb::Progress>>;

/// The 12 hex characters dockerd shows for a digest.
pub(crate) fn short(digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex.chars().take(12).collect()
}

/// Sends progress; `false` once the receiver is gone (the client left).
pub(crate) async fn say(tx: &ProgressTx, id: &str, status: &str) -> bool {
    tx.send(Ok(pb::Progress { id: id.into(), status: status.into(), ..Default::default() })).await.is_ok()
}

/// Sends a byte count for an item (Downloading, Extracting, Pushing).
pub(crate) fn bytes(tx: &ProgressTx, id: &str, status: &str, current: u64, total: u64) {
    // Byte counts are best effort: dropped rather than waited for.
    let _ = tx.try_send(Ok(pb::Progress {
        id: id.into(),
        status: status.into(),
        current: current as i64,
        total: total as i64,
        error: String::new(),
    }));
}

/// The platform a pull wants: `os/arch[/variant]`, by default the host's.
fn wanted_platform(p: &str) -> Result<(String, String, Option<String>)> {
    if p.is_empty() {
        return Ok(("linux".into(), crate::archive::host_arch().into(), None));
    }
    let parts: Vec<&str> = p.split('/').collect();
    match parts.as_slice() {
        [os, arch] => Ok((os.to_string(), arch.to_string(), None)),
        [os, arch, variant] => Ok((os.to_string(), arch.to_string(), Some(variant.to_string()))),
        _ => Err(Error::invalid(format!("\"{p}\": unknown operating system or architecture: invalid argument"))),
    }
}

/// The entry of a manifest list for the platform, as dockerd chooses it:
/// its digest and media type.
pub fn choose(index: &ImageIndex, os: &str, arch: &str, variant: Option<&str>) -> Option<(String, String)> {
    let e = index.choose(os, arch, variant)?;
    let media = if e.media_type.is_empty() { OCI_MANIFEST.to_string() } else { e.media_type.clone() };
    Some((e.digest.clone(), media))
}

/// A resolved image manifest.
struct Resolved {
    client: oci_client::Client,
    oref: OciRef,
    /// The digest the user's reference resolved to (a list's own digest for lists).
    top_digest: String,
    manifest: ImageManifest,
}

/// The largest manifest (or index) Berth reads, as dockerd: 4 MiB.
pub(crate) const MAX_MANIFEST: usize = 4 << 20;

/// The registry's complaint about a manifest request, in oci-client's terms
/// (so [`error_of`] words it as for every other call), as oci-client reads one.
fn response_error(status: reqwest::StatusCode, body: &[u8], url: &str) -> oci_client::errors::OciDistributionError {
    use oci_client::errors::{OciDistributionError as E, OciEnvelope};
    if status == reqwest::StatusCode::UNAUTHORIZED {
        return E::UnauthorizedError { url: url.to_string() };
    }
    match serde_json::from_slice::<OciEnvelope>(body) {
        Ok(envelope) if status.is_client_error() => E::RegistryError { envelope, url: url.to_string() },
        _ => E::ServerError {
            code: status.as_u16(),
            url: url.to_string(),
            message: String::from_utf8_lossy(&body[..body.len().min(1024)]).into_owned(),
        },
    }
}

/// Fetches a manifest, reading at most [`MAX_MANIFEST`] bytes of it (a
/// registry is as hostile as anything else: oci-client would read any size
/// into memory). The authentication is [`super::auth`]'s; the bytes are
/// fetched here, and checked against the digest asked for.
async fn fetch_manifest(
    endpoint: &super::Endpoint,
    client: &oci_client::Client,
    oref: &OciRef,
    auth: &RegistryAuth,
    what: &str,
) -> Result<(Vec<u8>, String)> {
    let token =
        super::auth::authenticate(endpoint, client, oref, auth, oci_client::RegistryOperation::Pull, what).await?;
    let reference = oref.digest().or(oref.tag()).unwrap_or(crate::reference::DEFAULT_TAG);
    let url = format!("{}/v2/{}/manifests/{reference}", endpoint.registry_base(), oref.repository());
    let mut req = endpoint.http()?.get(&url).header(reqwest::header::ACCEPT, ACCEPT.join(", "));
    match (token, auth) {
        (Some(t), _) => req = req.bearer_auth(t),
        (None, RegistryAuth::Basic(user, password)) => req = req.basic_auth(user, Some(password)),
        _ => {}
    }
    let unreachable = |e: reqwest::Error| Error::unavailable(format!("{what}: {url}: {e}"));
    let mut resp = req.send().await.map_err(unreachable)?;
    let status = resp.status();
    let too_big = || Error::invalid(format!("{what}: the manifest is over the limit of {MAX_MANIFEST} bytes"));
    if status.is_success() && resp.content_length().is_some_and(|n| n > MAX_MANIFEST as u64) {
        return Err(too_big());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(unreachable)? {
        if body.len() + chunk.len() > MAX_MANIFEST {
            if !status.is_success() {
                break;
            }
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    if !status.is_success() {
        return Err(error_of(response_error(status, &body, &url), what));
    }
    let digest = sha256_digest(&body);
    if let Some(want) = oref.digest()
        && want != digest
    {
        // The bytes do not hash to the digest asked for: dockerd's words.
        return Err(Error::invalid(format!("manifest verification failed for digest {want}")));
    }
    Ok((body, digest))
}

/// Finds the manifest of `r` for the platform, trying mirrors first.
async fn resolve(config: &RegistryConfig, r: &Reference, platform: &str, auth: RegistryAuth) -> Result<Resolved> {
    let loc = locate(r);
    let (os, arch, variant) = wanted_platform(platform)?;
    let tag = r.tag.clone().unwrap_or_else(|| crate::reference::DEFAULT_TAG.into());
    let what = match &r.digest {
        Some(d) => format!("manifest for {}@{d}", r.name),
        None => format!("manifest for {}:{tag}", r.name),
    };
    let mut last = None;
    for host in config.hosts_for(&loc.registry) {
        let endpoint = config.endpoint(&host).await;
        let client = endpoint.client(config);
        let oref = match &r.digest {
            Some(d) => OciRef::with_digest(host.clone(), loc.repository.clone(), d.clone()),
            None => OciRef::with_tag(host.clone(), loc.repository.clone(), tag.clone()),
        };
        let (raw, digest) = match fetch_manifest(&endpoint, &client, &oref, &auth, &what).await {
            Ok(m) => m,
            // As dockerd: a registry that refuses is a repository that may not exist (404, so the
            // CLI does not stop to ask for a password).
            Err(e) if e.kind() == berth_core::ErrorKind::Unauthenticated => {
                last = Some(Error::not_found(format!(
                    "pull access denied for {}, repository does not exist or may require 'docker login': {}",
                    r.name,
                    e.message()
                )));
                continue;
            }
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        if let Some(want) = &r.digest
            && *want != digest
        {
            return Err(Error::invalid(format!("manifest verification failed for digest {want}")));
        }
        let parsed = ManifestDoc::parse(&raw).map_err(|e| {
            if e.contains("schema 1") {
                Error::not_implemented(format!("{what}: {e}"))
            } else {
                Error::invalid(format!("{what}: {e}"))
            }
        })?;
        let manifest = match parsed {
            ManifestDoc::Image(m) => m,
            ManifestDoc::Index(index) => {
                let platform_text =
                    format!("{os}/{arch}{}", variant.as_deref().map(|v| format!("/{v}")).unwrap_or_default());
                let (entry, _) = choose(&index, &os, &arch, variant.as_deref()).ok_or_else(|| {
                    Error::not_found(format!("no matching manifest for {platform_text} in the manifest list entries"))
                })?;
                let inner = OciRef::with_digest(host.clone(), loc.repository.clone(), entry.clone());
                let (raw, got) = fetch_manifest(&endpoint, &client, &inner, &auth, &what).await?;
                if got != entry {
                    return Err(Error::invalid(format!("manifest verification failed for digest {entry}")));
                }
                match ManifestDoc::parse(&raw).map_err(|e| Error::invalid(format!("{what}: {e}")))? {
                    ManifestDoc::Image(m) => m,
                    ManifestDoc::Index(_) => {
                        return Err(Error::invalid(format!("{what}: a manifest list entry is itself a list")));
                    }
                }
            }
        };
        return Ok(Resolved { client, oref, top_digest: digest, manifest });
    }
    Err(last.unwrap_or_else(|| Error::not_found(format!("{what}: not found"))))
}

/// The largest image config Berth fetches, as dockerd.
const MAX_CONFIG: usize = 8 << 20;

/// An in-memory sink that refuses to grow past `max` bytes.
struct Bounded {
    buf: Vec<u8>,
    max: usize,
}

impl tokio::io::AsyncWrite for Bounded {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.buf.len() + data.len() > self.max {
            let max = self.max;
            return std::task::Poll::Ready(Err(std::io::Error::other(format!("more than {max} bytes"))));
        }
        self.buf.extend_from_slice(data);
        std::task::Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// A layer of the manifest.
#[derive(Clone)]
struct LayerDesc {
    digest: String,
    size: u64,
    media_type: String,
    /// Where a foreign (non-distributable) layer is fetched from instead of the
    /// registry, as dockerd does.
    urls: Vec<String>,
}

/// A blob's bytes from `offset` on (`true`), or from the start (`false`, when
/// the server ignored the range).
type BlobSource = (futures::stream::BoxStream<'static, std::result::Result<bytes::Bytes, std::io::Error>>, bool);

/// A foreign layer from the first of its URLs that answers.
async fn from_urls(urls: &[String], offset: u64) -> Option<BlobSource> {
    let client = reqwest::Client::builder().connect_timeout(Duration::from_secs(15)).build().ok()?;
    for url in urls.iter().filter(|u| u.starts_with("http://") || u.starts_with("https://")) {
        let mut req = client.get(url);
        if offset > 0 {
            req = req.header(reqwest::header::RANGE, format!("bytes={offset}-"));
        }
        match req.send().await {
            Ok(r) if r.status() == reqwest::StatusCode::PARTIAL_CONTENT || r.status().is_success() => {
                let partial = r.status() == reqwest::StatusCode::PARTIAL_CONTENT;
                let stream = r.bytes_stream().map(|c| c.map_err(std::io::Error::other));
                return Some((Box::pin(stream), partial));
            }
            Ok(r) => tracing::debug!(%url, status = %r.status(), "foreign layer URL refused"),
            Err(e) => tracing::debug!(%url, error = %e, "foreign layer URL unreachable"),
        }
    }
    None
}

fn descriptor(l: &LayerDesc) -> OciDescriptor {
    OciDescriptor {
        media_type: l.media_type.clone(),
        digest: l.digest.clone(),
        size: l.size as i64,
        urls: None,
        annotations: None,
    }
}

/// Hashes a file with SHA-256.
fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

/// A reader that reports how far it got (for `Extracting`).
struct Counting<R> {
    inner: R,
    done: u64,
    total: u64,
    last: Instant,
    tx: ProgressTx,
    id: String,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        if self.last.elapsed() >= Duration::from_millis(100) || (n == 0 && self.done > 0) {
            self.last = Instant::now();
            bytes(&self.tx, &self.id, "Extracting", self.done.min(self.total), self.total);
        }
        Ok(n)
    }
}

impl LocalImageService {
    fn ingest_path(&self, digest: &str) -> Result<PathBuf> {
        Ok(self.content.ingest_root().join(format!("{}.partial", crate::digest::digest_hex(digest)?)))
    }

    /// Downloads one layer blob to its ingest file (resuming what is there) and
    /// verifies it.
    async fn download(&self, r: &Resolved, l: &LayerDesc, tx: &ProgressTx) -> Result<PathBuf> {
        let id = short(&l.digest);
        let path = self.ingest_path(&l.digest)?;
        let mut have = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if have > l.size {
            have = 0;
        }
        if have < l.size || l.size == 0 {
            let what = format!("download {}", l.digest);
            // A foreign layer's URLs are other hosts the manifest names: only for
            // registries the daemon allows; otherwise the registry serves it.
            let foreign = if l.urls.is_empty() || !self.registry.allows_foreign_urls(r.oref.registry()) {
                None
            } else {
                from_urls(&l.urls, have).await
            };
            let (mut stream, append) = match foreign {
                Some(source) => source,
                None => {
                    let response = if have > 0 {
                        r.client.pull_blob_stream_partial(&r.oref, &descriptor(l), have, None).await
                    } else {
                        r.client
                            .pull_blob_stream(&r.oref, &descriptor(l))
                            .await
                            .map(oci_client::client::BlobResponse::Full)
                    };
                    match response.map_err(|e| error_of(e, &what))? {
                        oci_client::client::BlobResponse::Partial(s) => (s.stream, true),
                        oci_client::client::BlobResponse::Full(s) => (s.stream, false),
                    }
                }
            };
            let mut file =
                std::fs::OpenOptions::new().create(true).append(append).write(true).truncate(!append).open(&path)?;
            let mut done = if append { have } else { 0 };
            let mut last = Instant::now() - Duration::from_secs(1);
            while let Some(chunk) = stream.next().await {
                let chunk = match chunk {
                    Ok(c) => c,
                    Err(e) if e.to_string().to_ascii_lowercase().contains("digest") => {
                        let _ = std::fs::remove_file(&path);
                        return Err(Error::invalid(format!(
                            "filesystem layer verification failed for digest {}",
                            l.digest
                        )));
                    }
                    Err(e) => return Err(Error::internal(format!("{what}: {e}"))),
                };
                done += chunk.len() as u64;
                if l.size > 0 && done > l.size {
                    // A registry that sends more than the manifest promised is not
                    // let fill the disk.
                    drop(file);
                    let _ = std::fs::remove_file(&path);
                    return Err(Error::invalid(format!(
                        "filesystem layer verification failed for digest {}: more than its {} bytes",
                        l.digest, l.size
                    )));
                }
                file.write_all(&chunk)?;
                berth_core::metrics::global().inc(
                    "berth_image_pull_bytes_total",
                    "Bytes of image layers downloaded from registries.",
                    &[],
                    chunk.len() as f64,
                );
                if last.elapsed() >= Duration::from_millis(100) {
                    last = Instant::now();
                    bytes(tx, &id, "Downloading", done, l.size);
                }
            }
            file.flush()?;
            bytes(tx, &id, "Downloading", done, l.size);
        }
        say(tx, &id, "Verifying Checksum").await;
        let p = path.clone();
        let got = tokio::task::spawn_blocking(move || sha256_file(&p))
            .await
            .map_err(|e| Error::internal(e.to_string()))??;
        if got != l.digest {
            let _ = std::fs::remove_file(&path);
            return Err(Error::invalid(format!("filesystem layer verification failed for digest {}", l.digest)));
        }
        say(tx, &id, "Download complete").await;
        Ok(path)
    }

    /// Decompresses, checks and unpacks a downloaded layer; returns its record.
    /// `target` is the layer's record to be (its size is filled in).
    async fn extract(
        &self,
        blob: PathBuf,
        l: &LayerDesc,
        mut target: LayerRecord,
        stage: PathBuf,
        tx: &ProgressTx,
    ) -> Result<LayerRecord> {
        let id = short(&l.digest);
        let content = self.content.clone();
        let (tx2, total, digest) = (tx.clone(), l.size, l.digest.clone());
        let (want, c) = (target.diff_id.clone(), target.chain_id.clone());
        // Made here, in the pull's span; entered on the blocking thread.
        let span = tracing::info_span!("layer unpack", digest = %l.digest, chain_id = %c);
        let size = tokio::task::spawn_blocking(move || -> Result<u64> {
            let _span = span.entered();
            let file = std::io::BufReader::with_capacity(256 * 1024, std::fs::File::open(&blob)?);
            let reader = Counting { inner: file, done: 0, total, last: Instant::now(), tx: tx2, id };
            let staged = content.stage_layer(&stage, reader)?;
            if staged.diff_id != want {
                let _ = std::fs::remove_file(&staged.path);
                return Err(Error::invalid(format!(
                    "layer {digest}: its content has diff ID {}, but the image config expects {want}",
                    staged.diff_id
                )));
            }
            content.commit_blob(&staged.path, &want)?;
            content.unpack_layer(&c, &want)
        })
        .await
        .map_err(|e| Error::internal(e.to_string()))??;
        say(tx, &short(&l.digest), "Pull complete").await;
        target.size = size as i64;
        Ok(target)
    }

    /// Runs a pull, reporting on `tx`. Holds the store's write lock throughout,
    /// so no failed load or pull sweeps layers another one is unpacking.
    pub(crate) async fn pull_into(&self, req: pb::PullImageRequest, tx: ProgressTx) -> Result<()> {
        let r = Reference::parse(&req.reference)?;
        let resolved = resolve(&self.registry, &r, &req.platform, auth_of(req.auth.as_ref())).await?;
        let result = self.pull_resolved(&r, &resolved, &tx).await;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        berth_core::metrics::global().inc(
            "berth_image_pulls_total",
            "Image pulls, by outcome.",
            &[("result", outcome)],
            1.0,
        );
        if result.is_ok() {
            let name = match &r.digest {
                Some(d) => format!("{}@{d}", r.name),
                None => r.tagged(),
            };
            self.events.publish("image", "pull", &name, [("name", name.as_str())]);
        }
        if result.is_err() {
            // Layers of this pull that are unpacked stay pending (the next attempt
            // uses them); what a failed unpack left is swept.
            let _w = self.write.lock().await;
            if let Err(e) = self.sweep().await {
                tracing::warn!(error = %e, "sweep after failed pull");
            }
        }
        result
    }

    /// Fetches and unpacks one missing layer, unless another pull (or load) got
    /// it in meanwhile: one caller per chain, one download per blob.
    async fn fetch_layer(
        &self,
        res: &Resolved,
        l: &LayerDesc,
        target: LayerRecord,
        stage: PathBuf,
        tx: &ProgressTx,
    ) -> Result<LayerRecord> {
        let chain_lock = self.pending.lock_for(&target.chain_id);
        let _chain = chain_lock.lock().await;
        let stored = self.store.layers().await?.into_iter().find(|s| s.chain_id == target.chain_id);
        if let Some(rec) = stored.or_else(|| self.pending.get(&target.chain_id)) {
            say(tx, &short(&l.digest), "Already exists").await;
            return Ok(rec);
        }
        self.pending.begin(&target.chain_id, &target.diff_id);
        let chain = target.chain_id.clone();
        let result = async {
            let blob = {
                let blob_lock = self.pending.lock_for(&format!("blob:{}", l.digest));
                let _blob = blob_lock.lock().await;
                self.download(res, l, tx)
                    .instrument(tracing::info_span!("layer download", digest = %l.digest, size = l.size))
                    .await?
            };
            self.extract(blob, l, target, stage, tx).await
        }
        .await;
        match &result {
            Ok(rec) => self.pending.done(rec),
            Err(_) => self.pending.forget(&chain),
        }
        result
    }

    async fn pull_resolved(&self, r: &Reference, res: &Resolved, tx: &ProgressTx) -> Result<()> {
        let loc = locate(r);
        let shown = r.digest.clone().or_else(|| r.tag.clone()).unwrap_or_else(|| "latest".into());
        if !say(tx, &shown, &format!("Pulling from {}", loc.repository)).await {
            return Ok(());
        }
        let m = &res.manifest;
        let config_desc = OciDescriptor {
            media_type: m.config.media_type.clone(),
            digest: m.config.digest.clone(),
            size: m.config.size,
            urls: None,
            annotations: None,
        };
        // As dockerd: an image config is at most 8 MiB, whatever the registry sends.
        if !(0..=MAX_CONFIG as i64).contains(&m.config.size) {
            return Err(Error::invalid(format!(
                "image config {} is {} bytes, over the limit of {MAX_CONFIG}",
                config_desc.digest, m.config.size
            )));
        }
        let mut config = Bounded { buf: Vec::new(), max: MAX_CONFIG };
        res.client
            .pull_blob(&res.oref, &config_desc, &mut config)
            .await
            .map_err(|e| error_of(e, &format!("fetch the image config {}", config_desc.digest)))?;
        let config = config.buf;
        if sha256_digest(&config) != config_desc.digest {
            return Err(Error::invalid(format!("image config verification failed for digest {}", config_desc.digest)));
        }
        let cfg: ImageConfig = berth_models::parse("image config", &config).map_err(Error::invalid)?;
        let diff_ids = cfg.rootfs.diff_ids;
        let layers: Vec<LayerDesc> = m
            .layers
            .iter()
            .map(|l| LayerDesc {
                digest: l.digest.clone(),
                size: u64::try_from(l.size).unwrap_or(0),
                media_type: l.media_type.clone(),
                urls: l.urls().to_vec(),
            })
            .collect();
        if layers.len() != diff_ids.len() || layers.iter().any(|l| !crate::reference::is_valid_digest(&l.digest)) {
            return Err(Error::invalid(format!(
                "invalid image: the manifest has {} layers, the config {} diff IDs",
                layers.len(),
                diff_ids.len()
            )));
        }
        let chains = chain_ids(&diff_ids);
        let known: HashMap<String, LayerRecord> =
            self.store.layers().await?.into_iter().map(|l| (l.chain_id.clone(), l)).collect();
        let mut records: Vec<Option<LayerRecord>> = vec![None; layers.len()];
        let mut missing = Vec::new();
        for (i, l) in layers.iter().enumerate() {
            if let Some(k) = known.get(&chains[i]).cloned().or_else(|| self.pending.get(&chains[i])) {
                records[i] = Some(k);
                say(tx, &short(&l.digest), "Already exists").await;
            } else if !missing.iter().any(|j: &usize| layers[*j].digest == l.digest) {
                missing.push(i);
                say(tx, &short(&l.digest), "Pulling fs layer").await;
            } else {
                missing.push(i);
            }
        }
        let parallel = self.registry.max_concurrent_downloads.max(1);
        for &i in missing.iter().skip(parallel) {
            say(tx, &short(&layers[i].digest), "Waiting").await;
        }
        let stage = self.content.staging()?;
        let stage_path = stage.path().to_path_buf();
        let done: Vec<(usize, LayerRecord)> = futures::stream::iter(missing.iter().copied())
            .map(|i| {
                let (l, stage_path) = (layers[i].clone(), stage_path.clone());
                let target = LayerRecord {
                    chain_id: chains[i].clone(),
                    diff_id: diff_ids[i].clone(),
                    parent: i.checked_sub(1).map(|p| chains[p].clone()),
                    size: 0,
                };
                async move {
                    let rec = self.fetch_layer(res, &l, target, stage_path, tx).await?;
                    Ok::<_, Error>((i, rec))
                }
            })
            .buffer_unordered(parallel)
            .try_collect()
            .await?;
        for (i, rec) in done {
            records[i] = Some(rec);
        }
        let records: Vec<LayerRecord> = records.into_iter().flatten().collect();
        let mut refs = Vec::new();
        if r.digest.is_none() {
            refs.push(r.tagged());
        }
        refs.push(format!("{}@{}", r.name, res.top_digest));
        let chains_of_image: Vec<String> = records.iter().map(|l| l.chain_id.clone()).collect();
        let (before, id) = {
            let _w = self.write.lock().await;
            let before = self.store.images().await?.into_iter().find(|i| i.tags.contains(&r.tagged())).map(|i| i.id);
            let id = self.commit(config, records, &refs).await?;
            // In the store now: no longer pending.
            for c in &chains_of_image {
                self.pending.forget(c);
            }
            for l in &layers {
                self.pending.forget(&format!("blob:{}", l.digest));
            }
            (before, id)
        };
        for l in &layers {
            if let Ok(p) = self.ingest_path(&l.digest) {
                let _ = std::fs::remove_file(p);
            }
        }
        say(tx, "", &format!("Digest: {}", res.top_digest)).await;
        let name = match &r.digest {
            Some(d) => format!("{}@{d}", r.name),
            None => r.tagged(),
        };
        if before.as_deref() == Some(id.as_str()) && missing.is_empty() {
            say(tx, "", &format!("Status: Image is up to date for {name}")).await;
        } else {
            say(tx, "", &format!("Status: Downloaded newer image for {name}")).await;
        }
        tracing::info!(reference = %name, id = %id, "image pulled");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn platforms_from_lists() {
        let index: ImageIndex = serde_json::from_value(json!({"manifests": [
            {"digest": "sha256:a", "mediaType": OCI_MANIFEST, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"digest": "sha256:b", "mediaType": DOCKER_MANIFEST, "platform": {"os": "linux", "architecture": "amd64"}},
        ]}))
        .expect("index");
        assert_eq!(choose(&index, "linux", "amd64", None), Some(("sha256:b".into(), DOCKER_MANIFEST.into())));
        assert_eq!(choose(&index, "linux", "arm64", Some("v8")).map(|c| c.0), Some("sha256:a".into()));
        assert_eq!(choose(&index, "linux", "arm64", Some("v7")), None);
        assert_eq!(choose(&index, "windows", "amd64", None), None);
        assert!(wanted_platform("linux").is_err());
        assert_eq!(wanted_platform("linux/arm64/v8").ok().and_then(|p| p.2), Some("v8".into()));
    }
}
