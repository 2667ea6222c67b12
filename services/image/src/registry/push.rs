//! `docker push`: for each tag, the layers (gzip-compressed from the stored
//! tarballs, deterministically, so the same layer always has the same digest),
//! skipping those the registry has (a one-byte ranged read stands for HEAD, as
//! oci-client has no HEAD), mounting those another repository of the same
//! registry has (from the image's RepoDigests), then the config and a Docker
//! v2 schema 2 manifest. The image gets the pushed `name@digest` as a RepoDigest.

use std::io::Write;

use berth_core::{Error, Result};
use oci_client::Reference as OciRef;
use oci_client::RegistryOperation;
use oci_client::manifest::OciDescriptor;
use serde_json::json;

use super::pull::{DOCKER_MANIFEST, ProgressTx, bytes, say, short};
use super::{RegistryConfigExt, auth_of, error_of, locate};
use crate::digest::sha256_digest;
use crate::pb;
use crate::reference::Reference;
use crate::service::LocalImageService;
use crate::store::ImageRecord;

const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// A stored layer tarball, gzip-compressed the same way every time.
fn compress(path: &std::path::Path) -> Result<Vec<u8>> {
    let mut input = std::io::BufReader::with_capacity(256 * 1024, std::fs::File::open(path)?);
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::copy(&mut input, &mut enc)?;
    enc.flush()?;
    Ok(enc.finish()?)
}

impl LocalImageService {
    /// Runs a push, reporting on `tx`.
    pub(crate) async fn push_from(&self, req: pb::PushImageRequest, tx: ProgressTx) -> Result<()> {
        let r = Reference::parse(&req.reference)?;
        if r.digest.is_some() {
            return Err(Error::invalid(format!("cannot push a digest reference: {}", req.reference)));
        }
        let images = self.store.images().await?;
        // One tag, or every tag of the repository.
        let mut targets: Vec<(String, ImageRecord)> = Vec::new();
        for img in &images {
            for t in &img.tags {
                let Ok(tr) = Reference::parse(t) else { continue };
                if tr.name == r.name && (r.tag.is_none() || tr.tag == r.tag) {
                    targets.push((tr.tag.unwrap_or_else(|| "latest".into()), img.clone()));
                }
            }
        }
        if targets.is_empty() {
            return Err(Error::not_found(format!("An image does not exist locally with the tag: {}", r.name)));
        }
        targets.sort_by(|a, b| a.0.cmp(&b.0));
        let loc = locate(&r);
        let endpoint = self.registry.endpoint(&loc.registry).await;
        let client = endpoint.client(&self.registry);
        let auth = auth_of(req.auth.as_ref());
        say(&tx, "", &format!("The push refers to repository [{}]", r.qualified_name())).await;
        let first = OciRef::with_tag(loc.registry.clone(), loc.repository.clone(), targets[0].0.clone());
        super::auth::authenticate(&endpoint, &client, &first, &auth, RegistryOperation::Push, "push").await?;
        for (tag, img) in targets {
            let oref = OciRef::with_tag(loc.registry.clone(), loc.repository.clone(), tag.clone());
            let digest = self.push_one(&client, &oref, &img, &images, &tx).await?;
            // The registry now has it: the image gets the RepoDigest.
            self.store.tag(&format!("{}@{digest}", r.name), &img.id, &berth_core::id::now_rfc3339()).await?;
        }
        Ok(())
    }

    async fn push_one(
        &self,
        client: &oci_client::Client,
        oref: &OciRef,
        img: &ImageRecord,
        all: &[ImageRecord],
        tx: &ProgressTx,
    ) -> Result<String> {
        let what = format!("push {}", oref.whole());
        let mut descriptors = Vec::new();
        for layer in img.layers.iter().rev() {
            say(tx, &short(&layer.diff_id), "Preparing").await;
        }
        for layer in &img.layers {
            let blob_path = self.content.blob_path(&layer.diff_id)?;
            let data = tokio::task::spawn_blocking(move || compress(&blob_path))
                .await
                .map_err(|e| Error::internal(e.to_string()))??;
            let digest = sha256_digest(&data);
            let id = short(&layer.diff_id);
            let desc = OciDescriptor {
                media_type: DOCKER_LAYER.into(),
                digest: digest.clone(),
                size: data.len() as i64,
                urls: None,
                annotations: None,
            };
            if client.pull_blob_stream_partial(oref, &desc, 0, Some(1)).await.is_ok() {
                say(tx, &id, "Layer already exists").await;
            } else if let Some(from) = self.mount_source(client, oref, img, all, &digest).await {
                say(tx, &id, &format!("Mounted from {from}")).await;
            } else {
                let total = data.len() as u64;
                bytes(tx, &id, "Pushing", 0, total);
                client.push_blob(oref, &data, &digest).await.map_err(|e| error_of(e, &what))?;
                bytes(tx, &id, "Pushing", total, total);
                say(tx, &id, "Pushed").await;
            }
            descriptors.push(desc);
        }
        client.push_blob(oref, &img.config, &img.id).await.map_err(|e| error_of(e, &what))?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG, "size": img.config.len(), "digest": img.id},
            "layers": descriptors.iter().map(|d| json!({"mediaType": d.media_type, "size": d.size, "digest": d.digest})).collect::<Vec<_>>(),
        });
        let body = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::internal(e.to_string()))?;
        let digest = sha256_digest(&body);
        let size = body.len();
        let content_type = reqwest::header::HeaderValue::from_static(DOCKER_MANIFEST);
        client.push_manifest_raw(oref, body, content_type).await.map_err(|e| error_of(e, &what))?;
        say(tx, "", &format!("{}: digest: {digest} size: {size}", oref.tag().unwrap_or("latest"))).await;
        tracing::info!(reference = %oref.whole(), %digest, "image pushed");
        Ok(digest)
    }

    /// Another repository of the same registry that has the blob, by the
    /// RepoDigests of the local images with this layer; mounted from there.
    async fn mount_source(
        &self,
        client: &oci_client::Client,
        oref: &OciRef,
        img: &ImageRecord,
        all: &[ImageRecord],
        digest: &str,
    ) -> Option<String> {
        let layer_ids: Vec<&str> = img.layers.iter().map(|l| l.chain_id.as_str()).collect();
        for other in all {
            if !other.layers.iter().any(|l| layer_ids.contains(&l.chain_id.as_str())) {
                continue;
            }
            for d in &other.digests {
                let Ok(dr) = Reference::parse(d) else { continue };
                let loc = locate(&dr);
                if loc.registry != oref.registry() || loc.repository == oref.repository() {
                    continue;
                }
                let source = OciRef::with_tag(loc.registry.clone(), loc.repository.clone(), "latest".into());
                if client.mount_blob(oref, &source, digest).await.is_ok() {
                    return Some(loc.repository);
                }
            }
        }
        None
    }
}
