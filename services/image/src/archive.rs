//! Image archives: what `docker save` writes and `docker load` reads.
//!
//! Two layouts are read:
//! - **docker save** (`manifest.json`): a list of `{Config, RepoTags, Layers}` whose
//!   paths point at files in the archive (`<id>/layer.tar` in old versions,
//!   `blobs/sha256/<hex>` since Docker 25; old versions link duplicates as symlinks).
//! - **OCI image layout** (`oci-layout` + `index.json`): descriptors into
//!   `blobs/sha256/`, possibly through nested indexes; image names come from the
//!   `io.containerd.image.name` or `org.opencontainers.image.ref.name` annotations.
//!
//! Berth writes both at once, as Docker 25+ does: content-addressed blobs, an OCI
//! `index.json`, and a `manifest.json`, so dockerd 20.10, current dockerd and Berth
//! all load it. The image ID is the digest of the config, byte for byte, so IDs
//! survive a save/load round trip on any of them.
//!
//! The archive is untrusted: every path is confined to the staging directory,
//! symlinks are resolved lexically inside it, JSON documents have a size cap,
//! and every blob is checked against its digest before it is used.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use berth_core::{Error, Result};
use berth_models::distribution::{Descriptor, ImageIndex, ImageManifest, ManifestDoc};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::digest::{self, sha256_digest};
use crate::layers::sanitize_entry_path;

/// The largest JSON document (manifest, index, config) an archive may carry.
pub const MAX_JSON_BYTES: u64 = 8 * 1024 * 1024;

/// One image found in an archive, its layers not yet staged.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchiveImage {
    /// The config JSON, byte for byte.
    pub config: Vec<u8>,
    /// References to tag it with, familiar form.
    pub tags: Vec<String>,
    /// Paths (inside the staging directory) of the layer blobs, base first.
    pub layers: Vec<PathBuf>,
    /// Expected digests of the raw layer blobs, when the archive names them (OCI).
    pub layer_digests: Vec<Option<String>>,
}

/// An archive unpacked into a staging directory.
#[derive(Debug)]
pub struct Staged {
    root: PathBuf,
    symlinks: HashMap<PathBuf, PathBuf>,
}

impl Staged {
    /// Reads a tar stream into `root`: regular files and directories are written,
    /// symlinks remembered; anything else is ignored.
    pub fn unpack(input: impl Read, root: &Path) -> Result<Self> {
        let mut archive = tar::Archive::new(input);
        let out = Self::read_entries(&mut archive, root);
        // Read what follows the end-of-archive marker (tar pads to its record size),
        // and the rest of a refused archive, so the client's upload completes and
        // it sees our answer instead of a broken pipe.
        let mut rest = archive.into_inner();
        let _ = std::io::copy(&mut rest, &mut std::io::sink());
        out
    }

    fn read_entries<R: Read>(archive: &mut tar::Archive<R>, root: &Path) -> Result<Self> {
        let bad = |e: std::io::Error| Error::invalid(format!("invalid archive: {e}"));
        let mut symlinks = HashMap::new();
        let mut any = false;
        for entry in archive.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            any = true;
            let raw = entry.path().map_err(bad)?.into_owned();
            let Some(rel) = sanitize_entry_path(&raw)? else {
                continue;
            };
            let target = root.join(&rel);
            match entry.header().entry_type() {
                tar::EntryType::Directory => fs::create_dir_all(&target)?,
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    if let Some(parent) = target.parent() {
                        fs::create_dir_all(parent)?;
                    }
                    let mut out = fs::File::create(&target)?;
                    std::io::copy(&mut entry, &mut out).map_err(bad)?;
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    if let Some(link) = entry.link_name().map_err(bad)? {
                        let link = link.into_owned();
                        // Hard link names are archive-relative, symlinks relative to their directory.
                        let base = if entry.header().entry_type() == tar::EntryType::Link {
                            PathBuf::new()
                        } else {
                            rel.parent().map(Path::to_path_buf).unwrap_or_default()
                        };
                        symlinks.insert(rel, lexical_join(&base, &link)?);
                    }
                }
                _ => {}
            }
        }
        if !any {
            return Err(Error::invalid("invalid archive: empty or not a tar file"));
        }
        Ok(Self { root: root.to_path_buf(), symlinks })
    }

    /// Resolves an archive path to a file in the staging directory.
    pub fn resolve(&self, name: &str) -> Result<PathBuf> {
        let mut rel = lexical_join(Path::new(""), Path::new(name))?;
        for _ in 0..16 {
            match self.symlinks.get(&rel) {
                Some(next) => rel = next.clone(),
                None => {
                    let path = self.root.join(&rel);
                    let meta = fs::symlink_metadata(&path)
                        .map_err(|_| Error::invalid(format!("invalid archive: {name} is missing")))?;
                    if !meta.is_file() {
                        return Err(Error::invalid(format!("invalid archive: {name} is not a file")));
                    }
                    return Ok(path);
                }
            }
        }
        Err(Error::invalid(format!("invalid archive: too many links resolving {name}")))
    }

    /// Reads a JSON document of the archive, refusing oversized ones.
    pub fn read_json_bytes(&self, name: &str) -> Result<Vec<u8>> {
        let path = self.resolve(name)?;
        let len = fs::metadata(&path)?.len();
        if len > MAX_JSON_BYTES {
            return Err(Error::invalid(format!(
                "invalid archive: {name} is too large ({len} bytes, the limit is {MAX_JSON_BYTES})"
            )));
        }
        Ok(fs::read(path)?)
    }

    fn exists(&self, name: &str) -> bool {
        self.resolve(name).is_ok()
    }

    /// Finds the images the archive holds.
    pub fn images(&self) -> Result<Vec<ArchiveImage>> {
        if self.exists("manifest.json") {
            self.docker_images()
        } else if self.exists("index.json") {
            self.oci_images()
        } else {
            Err(Error::invalid(
                "invalid archive: no manifest.json or index.json: not a docker save or OCI layout tarball",
            ))
        }
    }

    fn docker_images(&self) -> Result<Vec<ArchiveImage>> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Entry {
            config: String,
            #[serde(default)]
            repo_tags: Option<Vec<String>>,
            layers: Vec<String>,
        }
        let raw = self.read_json_bytes("manifest.json")?;
        let entries: Vec<Entry> =
            serde_json::from_slice(&raw).map_err(|e| Error::invalid(format!("invalid archive: manifest.json: {e}")))?;
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let config = self.read_json_bytes(&e.config)?;
            if let Some(hex) = blob_hex(&e.config) {
                check_digest(&format!("sha256:{hex}"), &sha256_digest(&config), &e.config)?;
            }
            let mut tags = Vec::new();
            for t in e.repo_tags.unwrap_or_default() {
                tags.push(crate::reference::Reference::parse(&t)?.tagged());
            }
            let layers = e.layers.iter().map(|l| self.resolve(l)).collect::<Result<Vec<_>>>()?;
            let layer_digests = e.layers.iter().map(|l| blob_hex(l).map(|h| format!("sha256:{h}"))).collect();
            out.push(ArchiveImage { config, tags, layers, layer_digests });
        }
        Ok(out)
    }

    fn blob(&self, descriptor: &Descriptor) -> Result<(String, Vec<u8>)> {
        let digest = descriptor.digest.clone();
        let hex = digest::digest_hex(&digest)?;
        let bytes = self.read_json_bytes(&format!("blobs/sha256/{hex}"))?;
        check_digest(&digest, &sha256_digest(&bytes), "blob")?;
        Ok((digest, bytes))
    }

    fn oci_images(&self) -> Result<Vec<ArchiveImage>> {
        let index: ImageIndex = serde_json::from_slice(&self.read_json_bytes("index.json")?)
            .map_err(|e| Error::invalid(format!("invalid archive: index.json: {e}")))?;
        let mut out: Vec<ArchiveImage> = Vec::new();
        let mut by_config: HashMap<Vec<u8>, usize> = HashMap::new();
        for desc in &index.manifests {
            let name = image_name(desc);
            let Some(manifest) = self.pick_manifest(desc, 0)? else {
                continue;
            };
            let (_, config) = self.blob(&manifest.config)?;
            let mut layers = Vec::new();
            let mut layer_digests = Vec::new();
            for layer in &manifest.layers {
                let media = layer.media_type.as_str();
                if media.contains("nondistributable") || media.contains("foreign") {
                    return Err(Error::not_implemented(format!("foreign layer {media} is not supported")));
                }
                let digest = layer.digest.clone();
                let hex = digest::digest_hex(&digest)?;
                layers.push(self.resolve(&format!("blobs/sha256/{hex}"))?);
                layer_digests.push(Some(digest));
            }
            let tags: Vec<String> = name.into_iter().collect();
            match by_config.get(&config) {
                Some(&i) => out[i].tags.extend(tags),
                None => {
                    by_config.insert(config.clone(), out.len());
                    out.push(ArchiveImage { config, tags, layers, layer_digests });
                }
            }
        }
        if out.is_empty() {
            return Err(Error::invalid("invalid archive: index.json lists no image for linux"));
        }
        Ok(out)
    }

    /// Follows a descriptor to an image manifest, choosing linux/amd64 (or the first
    /// linux entry) in an index.
    fn pick_manifest(&self, desc: &Descriptor, depth: usize) -> Result<Option<ImageManifest>> {
        if depth > 4 {
            return Err(Error::invalid("invalid archive: indexes nested too deep"));
        }
        let (_, bytes) = self.blob(desc)?;
        match ManifestDoc::parse(&bytes).map_err(|e| Error::invalid(format!("invalid archive: {e}")))? {
            ManifestDoc::Index(index) => {
                // An entry without a platform is taken for linux, as in a layout.
                let platform_is = |d: &Descriptor, arch: Option<&str>| {
                    let p = d.platform.clone().unwrap_or_default();
                    (p.os.is_empty() || p.os == "linux") && arch.is_none_or(|a| p.architecture == a)
                };
                let entries = &index.manifests;
                let chosen = entries
                    .iter()
                    .find(|d| platform_is(d, Some(host_arch())))
                    .or_else(|| entries.iter().find(|d| platform_is(d, None)));
                match chosen {
                    Some(d) => self.pick_manifest(d, depth + 1),
                    None => Ok(None),
                }
            }
            ManifestDoc::Image(m) => Ok(Some(m)),
        }
    }
}

fn image_name(desc: &Descriptor) -> Option<String> {
    let full = desc.annotation("io.containerd.image.name").or_else(|| {
        // ref.name is sometimes only a tag; only a full reference names an image.
        desc.annotation("org.opencontainers.image.ref.name").filter(|r| r.contains(':') || r.contains('/'))
    })?;
    crate::reference::Reference::parse(full).ok().map(|r| r.tagged())
}

/// The hex of a `blobs/sha256/<hex>` path.
fn blob_hex(path: &str) -> Option<&str> {
    let hex = path.strip_prefix("blobs/sha256/")?;
    crate::reference::is_valid_digest(&format!("sha256:{hex}")).then_some(hex)
}

fn check_digest(want: &str, got: &str, what: &str) -> Result<()> {
    if want == got {
        Ok(())
    } else {
        Err(Error::invalid(format!("invalid archive: digest mismatch for {what}: expected {want}, got {got}")))
    }
}

/// Joins `rel` onto `base` lexically, refusing to climb above the root.
pub fn lexical_join(base: &Path, rel: &Path) -> Result<PathBuf> {
    let mut out: Vec<std::ffi::OsString> =
        if rel.is_absolute() { vec![] } else { base.iter().map(|c| c.to_os_string()).collect() };
    for comp in rel.components() {
        match comp {
            Component::Normal(c) => out.push(c.to_os_string()),
            Component::ParentDir if out.pop().is_none() => {
                return Err(Error::invalid(format!("invalid archive: {} escapes the archive", rel.display())));
            }
            _ => {}
        }
    }
    Ok(out.iter().collect())
}

pub use berth_models::host_arch;

// === writing ===

/// One image to write: its config, layer blobs and the references to record.
#[derive(Debug, Clone)]
pub struct SaveImage {
    /// The config JSON.
    pub config: Vec<u8>,
    /// Familiar `name:tag` references.
    pub tags: Vec<String>,
    /// (diff ID, path of the uncompressed tarball), base first.
    pub layers: Vec<(String, PathBuf)>,
    /// Creation time (seconds) for the archive's mtimes.
    pub mtime: u64,
}

fn append_bytes<W: std::io::Write>(b: &mut tar::Builder<W>, path: &str, data: &[u8], mtime: u64) -> Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(mtime);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, path, data).map_err(|e| Error::internal(format!("write archive: {e}")))
}

fn append_dir<W: std::io::Write>(b: &mut tar::Builder<W>, path: &str, mtime: u64) -> Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_size(0);
    h.set_mode(0o755);
    h.set_mtime(mtime);
    h.set_entry_type(tar::EntryType::Directory);
    b.append_data(&mut h, path, std::io::empty()).map_err(|e| Error::internal(format!("write archive: {e}")))
}

/// Writes `images` as one archive to `out`.
pub fn write_archive(images: &[SaveImage], out: impl std::io::Write) -> Result<()> {
    const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    let mut b = tar::Builder::new(out);
    let mtime = images.iter().map(|i| i.mtime).max().unwrap_or(0);
    append_dir(&mut b, "blobs/", mtime)?;
    append_dir(&mut b, "blobs/sha256/", mtime)?;
    let mut written = std::collections::HashSet::new();
    let mut docker_manifest = Vec::new();
    let mut index = Vec::new();
    for image in images {
        let mut layer_descs = Vec::new();
        let mut layer_paths = Vec::new();
        for (diff_id, path) in &image.layers {
            let hex = digest::digest_hex(diff_id)?;
            let file = fs::File::open(path).map_err(|e| Error::internal(format!("open layer {diff_id}: {e}")))?;
            let size = file.metadata()?.len();
            if written.insert(diff_id.clone()) {
                let mut h = tar::Header::new_ustar();
                h.set_size(size);
                h.set_mode(0o644);
                h.set_mtime(image.mtime);
                h.set_entry_type(tar::EntryType::Regular);
                b.append_data(&mut h, format!("blobs/sha256/{hex}"), std::io::BufReader::new(file))
                    .map_err(|e| Error::internal(format!("write archive: {e}")))?;
            }
            layer_descs.push(json!({"mediaType": OCI_LAYER, "digest": diff_id, "size": size}));
            layer_paths.push(format!("blobs/sha256/{hex}"));
        }
        let config_digest = sha256_digest(&image.config);
        let config_hex = digest::digest_hex(&config_digest)?.to_string();
        if written.insert(config_digest.clone()) {
            append_bytes(&mut b, &format!("blobs/sha256/{config_hex}"), &image.config, image.mtime)?;
        }
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": image.config.len()},
            "layers": layer_descs,
        }))
        .map_err(|e| Error::internal(e.to_string()))?;
        let manifest_digest = sha256_digest(&manifest);
        if written.insert(manifest_digest.clone()) {
            append_bytes(
                &mut b,
                &format!("blobs/sha256/{}", digest::digest_hex(&manifest_digest)?),
                &manifest,
                image.mtime,
            )?;
        }
        let desc = |annotations: Value| json!({"mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": manifest.len(), "annotations": annotations});
        if image.tags.is_empty() {
            index.push(desc(json!({})));
        }
        for tag in &image.tags {
            let r = crate::reference::Reference::parse(tag)?;
            index.push(desc(json!({
                "io.containerd.image.name": format!("{}:{}", r.qualified_name(), r.tag.as_deref().unwrap_or("latest")),
                "org.opencontainers.image.ref.name": r.tag.as_deref().unwrap_or("latest"),
            })));
        }
        docker_manifest.push(json!({
            "Config": format!("blobs/sha256/{config_hex}"),
            "RepoTags": if image.tags.is_empty() { Value::Null } else { json!(image.tags) },
            "Layers": layer_paths,
        }));
    }
    let to_vec = |v: &Value| serde_json::to_vec(v).map_err(|e| Error::internal(e.to_string()));
    append_bytes(
        &mut b,
        "index.json",
        &to_vec(
            &json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": index}),
        )?,
        mtime,
    )?;
    append_bytes(&mut b, "manifest.json", &to_vec(&Value::Array(docker_manifest))?, mtime)?;
    append_bytes(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#, mtime)?;
    b.into_inner().map_err(|e| Error::internal(format!("write archive: {e}")))?.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_join_stays_inside() {
        assert_eq!(lexical_join(Path::new("a"), Path::new("../b/layer.tar")).ok(), Some(PathBuf::from("b/layer.tar")));
        assert!(lexical_join(Path::new("a"), Path::new("../../etc/passwd")).is_err());
        assert_eq!(lexical_join(Path::new("a"), Path::new("/x")).ok(), Some(PathBuf::from("x")));
    }

    fn layer_tar() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        b.append_data(&mut h, "hello", &b"hi\n"[..]).expect("append");
        b.into_inner().expect("tar")
    }

    #[test]
    fn written_archives_read_back() {
        let dir = tempfile::tempdir().expect("tmp");
        let layer = dir.path().join("layer.tar");
        let data = layer_tar();
        fs::write(&layer, &data).expect("write");
        let diff = sha256_digest(&data);
        let config = serde_json::to_vec(&json!({"rootfs": {"type": "layers", "diff_ids": [diff]}})).expect("json");
        let img = SaveImage {
            config: config.clone(),
            tags: vec!["busybox:latest".into()],
            layers: vec![(diff.clone(), layer)],
            mtime: 0,
        };
        let mut out = Vec::new();
        write_archive(&[img], &mut out).expect("write");
        let stage = dir.path().join("stage");
        fs::create_dir(&stage).expect("mkdir");
        let staged = Staged::unpack(&out[..], &stage).expect("unpack");
        let images = staged.images().expect("images");
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].config, config);
        assert_eq!(images[0].tags, vec!["busybox:latest".to_string()]);
        assert_eq!(images[0].layer_digests, vec![Some(diff)]);
        // The same archive without manifest.json reads as an OCI layout with the same result.
        fs::remove_file(stage.join("manifest.json")).expect("rm");
        assert!(Staged::unpack(std::io::empty(), &stage).is_err(), "an empty stream is not an archive");
        let oci = Staged { root: stage.clone(), symlinks: HashMap::new() }.images().expect("oci");
        assert_eq!(oci[0].config, config);
        assert_eq!(oci[0].tags, vec!["busybox:latest".to_string()]);
    }

    #[test]
    fn oversized_manifest_is_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        fs::write(dir.path().join("manifest.json"), vec![b' '; (MAX_JSON_BYTES + 1) as usize]).expect("write");
        let staged = Staged { root: dir.path().to_path_buf(), symlinks: HashMap::new() };
        let err = staged.images().expect_err("too large");
        assert!(err.message().contains("too large"), "{err}");
    }

    #[test]
    fn symlinks_resolve_inside_the_archive() {
        let dir = tempfile::tempdir().expect("tmp");
        fs::create_dir_all(dir.path().join("a")).expect("mkdir");
        fs::write(dir.path().join("a/layer.tar"), b"x").expect("write");
        let mut symlinks = HashMap::new();
        symlinks.insert(PathBuf::from("b/layer.tar"), PathBuf::from("a/layer.tar"));
        let staged = Staged { root: dir.path().to_path_buf(), symlinks };
        assert_eq!(staged.resolve("b/layer.tar").ok(), Some(dir.path().join("a/layer.tar")));
        assert!(staged.resolve("c/layer.tar").is_err());
    }
}
