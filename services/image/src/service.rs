//! [`LocalImageService`]: the image service itself, over a [`store::ImageStore`]
//! and the on-disk [`content::Content`].
//!
//! Writers (load, import, tag, remove, prune) take one lock, so layer
//! bookkeeping never races; readers do not. Blocking work (tar, hashing, disk)
//! runs on the blocking pool.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use berth_core::{ByteStream, Error, Result};
use berth_models::image::ImageConfig;
use bytes::Bytes;
use futures::StreamExt;
use time::OffsetDateTime;
use tokio::sync::Mutex;
use tokio_util::io::{StreamReader, SyncIoBridge};

use crate::archive::{self, SaveImage, Staged};
use crate::content::Content;
use crate::digest::{chain_ids, sha256_digest};
use crate::filters::{Filters, labels_match, parse_until};
use crate::reference::{Reference, glob_match};
use crate::store::{ImageRecord, ImageStore, LayerRecord, MIGRATIONS, SqlImageStore};
use crate::{Filter, ImageApi, pb};

/// The image service over SQLite and a content directory.
#[derive(Clone)]
pub struct LocalImageService {
    pub(crate) store: Arc<dyn ImageStore>,
    pub(crate) content: Content,
    /// Loads, imports, deletes and the commits of pulls change the store one at a time.
    pub(crate) write: Arc<Mutex<()>>,
    pub(crate) registry: Arc<crate::registry::RegistryConfig>,
    /// Layers pulls are unpacking or have unpacked but not committed yet.
    pub(crate) pending: Arc<PendingLayers>,
    /// Where image events go.
    pub(crate) events: Arc<berth_core::events::EventBus>,
    /// The runtime service, for the builder's containers (set once both exist).
    pub(crate) runtime: Arc<std::sync::OnceLock<Arc<dyn berth_runtime_api::RuntimeApi>>>,
}

/// Layers on disk the store does not know yet, because the pulls that unpack
/// them run outside the write lock (several at once). The sweep leaves them,
/// and one chain is unpacked by one caller at a time.
#[derive(Default)]
pub struct PendingLayers {
    /// Chain ID to (diff ID, the record once unpacked).
    layers: std::sync::Mutex<HashMap<String, (String, Option<LayerRecord>)>>,
    locks: std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl PendingLayers {
    /// The lock of one chain (unpacking it, or deciding it is there).
    pub(crate) fn lock_for(&self, chain: &str) -> Arc<Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(chain.to_string()).or_default().clone()
    }

    /// Marks a chain as being unpacked (before its first byte is written).
    pub(crate) fn begin(&self, chain: &str, diff: &str) {
        let mut l = self.layers.lock().unwrap_or_else(|e| e.into_inner());
        l.entry(chain.to_string()).or_insert_with(|| (diff.to_string(), None));
    }

    /// Records an unpacked chain.
    pub(crate) fn done(&self, rec: &LayerRecord) {
        let mut l = self.layers.lock().unwrap_or_else(|e| e.into_inner());
        l.insert(rec.chain_id.clone(), (rec.diff_id.clone(), Some(rec.clone())));
    }

    /// Forgets a chain (committed to the store, or its unpack failed).
    pub(crate) fn forget(&self, chain: &str) {
        self.layers.lock().unwrap_or_else(|e| e.into_inner()).remove(chain);
        self.locks.lock().unwrap_or_else(|e| e.into_inner()).remove(chain);
    }

    /// An unpacked chain's record.
    pub(crate) fn get(&self, chain: &str) -> Option<LayerRecord> {
        self.layers.lock().unwrap_or_else(|e| e.into_inner()).get(chain).and_then(|(_, r)| r.clone())
    }

    /// Every pending chain and diff ID (for the sweep to leave).
    fn keep(&self) -> (Vec<String>, Vec<String>) {
        let l = self.layers.lock().unwrap_or_else(|e| e.into_inner());
        (l.keys().cloned().collect(), l.values().map(|(d, _)| d.clone()).collect())
    }
}

/// How a reference was resolved, which decides what `rmi` does.
enum Resolved {
    /// By tag or digest reference: the reference string in familiar form.
    Ref(String),
    /// By full or short ID.
    Id,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::internal(format!("blocking task failed: {e}")))?
}

fn to_io(stream: ByteStream) -> impl tokio::io::AsyncRead + Send + Unpin {
    StreamReader::new(stream.map(|r| r.map_err(|e| std::io::Error::other(e.to_string()))))
}

/// Runs an operation that reports on a progress channel in a task of its own;
/// its error, if it fails, is the stream's last item.
fn progress_task<F, Fut>(op: F) -> crate::ProgressStream
where
    F: FnOnce(crate::registry::pull::ProgressTx) -> Fut,
    Fut: std::future::Future<Output = Result<()>> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    let work = op(tx.clone());
    tokio::spawn(async move {
        if let Err(e) = work.await {
            let _ = tx.send(Err(e)).await;
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

fn short(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

/// A stored image's config. It was parsed when the image came in (load,
/// pull, import), so a config that no longer parses is read as empty.
fn image_config(rec: &ImageRecord) -> ImageConfig {
    berth_models::parse("image config", &rec.config).unwrap_or_default()
}

/// An image's labels (its config's `config.Labels`).
fn image_labels(rec: &ImageRecord) -> Option<std::collections::BTreeMap<String, String>> {
    image_config(rec).config.and_then(|c| c.labels)
}

fn created_of(rec: &ImageRecord) -> OffsetDateTime {
    berth_core::id::parse_rfc3339(&rec.created).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

impl LocalImageService {
    /// Opens the service's state under `dir` (`<data-root>/image`).
    pub async fn open(dir: &Path) -> Result<Self> {
        Self::open_with(dir, &berth_core::db::State::Embedded, crate::registry::RegistryConfig::default()).await
    }

    /// Opens the service with its records in `state` and the daemon's registry settings.
    pub async fn open_with(
        dir: &Path,
        state: &berth_core::db::State,
        registry: crate::registry::RegistryConfig,
    ) -> Result<Self> {
        let content = Content::open(dir)?;
        let pool = state.open("image", dir, &MIGRATIONS).await?;
        let mut svc = Self::with_store(Arc::new(SqlImageStore::new(pool)), content);
        svc.registry = Arc::new(registry);
        svc.sweep().await?;
        Ok(svc)
    }

    /// A service over any store.
    pub fn with_store(store: Arc<dyn ImageStore>, content: Content) -> Self {
        Self {
            store,
            content,
            write: Arc::new(Mutex::new(())),
            registry: Arc::new(crate::registry::RegistryConfig::default()),
            pending: Arc::new(PendingLayers::default()),
            events: Default::default(),
            runtime: Default::default(),
        }
    }

    /// Whether a container was created from image `id`, as far as the runtime
    /// service (when this one has it) says; when it cannot tell, the image
    /// counts as used and is kept.
    async fn used_by_containers(&self, id: &str) -> bool {
        let Some(runtime) = self.runtime.get() else { return false };
        match runtime.list(true, vec![], 0).await {
            Ok(containers) => containers.iter().any(|c| c.image_id == id),
            Err(e) => {
                tracing::warn!(error = %e, image = %id, "cannot tell whether containers use an image; it is kept");
                true
            }
        }
    }

    /// Gives the builder the runtime service (which needs this one first).
    pub fn set_runtime(&self, runtime: Arc<dyn berth_runtime_api::RuntimeApi>) {
        let _ = self.runtime.set(runtime);
    }

    /// A file of image `reference` (`etc/passwd`), read through its layers
    /// (a whiteout hides it), at most 1 MiB; `None` when it has none.
    pub(crate) async fn read_image_file(&self, reference: &str, rel: &str) -> Result<Option<String>> {
        let image = self.inspect(reference).await?;
        let rel = rel.to_string();
        blocking(move || {
            for dir in image.layer_dirs.iter().rev() {
                match std::fs::symlink_metadata(Path::new(dir).join(&rel)) {
                    Ok(m) if std::os::unix::fs::FileTypeExt::is_char_device(&m.file_type()) => return Ok(None),
                    Ok(_) => {
                        let bytes = berth_core::rootfs::read_in_root(Path::new(dir), Path::new(&rel), 1 << 20)?;
                        return Ok(bytes.map(|b| String::from_utf8_lossy(&b).into_owned()));
                    }
                    Err(_) => {}
                }
            }
            Ok(None)
        })
        .await
    }

    /// Publishes on `bus` instead of a bus of its own (`berthd` shares one).
    pub fn with_events(mut self, bus: Arc<berth_core::events::EventBus>) -> Self {
        self.events = bus;
        self
    }

    /// The bus this service publishes on.
    pub fn events(&self) -> Arc<berth_core::events::EventBus> {
        self.events.clone()
    }

    /// `untag` and `delete` events for what a removal did.
    fn emit_deletes(&self, id: &str, items: &[pb::DeleteItem]) {
        for item in items.iter().filter_map(|i| i.item.as_ref()) {
            match item {
                pb::delete_item::Item::Untagged(r) => self.emit("untag", id, r),
                pb::delete_item::Item::Deleted(d) => self.emit("delete", d, d),
            }
        }
    }

    /// An image event: the image (or reference) and its `name`.
    fn emit(&self, action: &str, id: &str, name: &str) {
        self.events.publish("image", action, id, [("name", name)]);
    }

    /// Removes content no record names (leftovers of a crash or a failed load).
    pub(crate) async fn sweep(&self) -> Result<()> {
        let layers = self.store.layers().await?;
        let mut chains: HashSet<String> = layers.iter().map(|l| l.chain_id.clone()).collect();
        let mut diffs: HashSet<String> = layers.iter().map(|l| l.diff_id.clone()).collect();
        let (pending_chains, pending_diffs) = self.pending.keep();
        chains.extend(pending_chains);
        diffs.extend(pending_diffs);
        let content = self.content.clone();
        let n = blocking(move || content.sweep(&chains, &diffs)).await?;
        if n > 0 {
            tracing::info!(removed = n, "swept unreferenced image content");
        }
        Ok(())
    }

    async fn resolve(&self, reference: &str) -> Result<(ImageRecord, Resolved)> {
        let not_found = || Error::not_found(format!("No such image: {reference}"));
        let reference = reference.trim();
        if reference.is_empty() {
            return Err(Error::invalid("image reference must not be empty"));
        }
        let by_id = |id: String| async move {
            self.store.image(&id).await?.ok_or_else(|| Error::not_found(format!("No such image: {id}")))
        };
        if let Some(hex) = reference.strip_prefix("sha256:") {
            if hex.len() == 64 {
                return Ok((by_id(reference.to_string()).await.map_err(|_| not_found())?, Resolved::Id));
            }
            return self.by_prefix(hex).await?.map(|r| (r, Resolved::Id)).ok_or_else(not_found);
        }
        if let Ok(parsed) = Reference::parse(reference) {
            let key = match &parsed.digest {
                Some(d) => format!("{}@{d}", parsed.name),
                None => parsed.tagged(),
            };
            if let Some(id) = self.store.resolve_ref(&key).await? {
                return Ok((by_id(id).await?, Resolved::Ref(key)));
            }
        }
        self.by_prefix(reference).await?.map(|r| (r, Resolved::Id)).ok_or_else(not_found)
    }

    async fn by_prefix(&self, hex: &str) -> Result<Option<ImageRecord>> {
        if hex.is_empty() || hex.len() > 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Ok(None);
        }
        let ids = self.store.ids_with_prefix(&format!("sha256:{hex}")).await?;
        match ids.as_slice() {
            [] => Ok(None),
            [id] => self.store.image(id).await,
            _ => Err(Error::invalid(format!("short ID {hex} is ambiguous: it matches {} images", ids.len()))),
        }
    }

    fn to_proto(&self, rec: &ImageRecord) -> pb::Image {
        pb::Image {
            id: rec.id.clone(),
            repo_tags: rec.tags.clone(),
            repo_digests: rec.digests.clone(),
            created: rec.created.clone(),
            size: rec.size,
            config: rec.config.clone(),
            diff_ids: rec.layers.iter().map(|l| l.diff_id.clone()).collect(),
            layer_dirs: rec
                .layers
                .iter()
                .filter_map(|l| self.content.layer_dir(&l.chain_id).ok())
                .map(|p| p.to_string_lossy().into_owned())
                .collect(),
            last_tag_time: rec.last_tag_time.clone(),
            parent: rec.parent.clone(),
        }
    }

    /// Deletes an image record and the content only it used. Caller holds the write lock.
    async fn delete_locked(&self, id: &str, items: &mut Vec<pb::DeleteItem>) -> Result<i64> {
        let all = self.store.images().await?;
        let parent = all.iter().find(|r| r.id == id).map(|r| r.parent.clone()).unwrap_or_default();
        let orphans = self.store.delete_image(id).await?;
        items.push(deleted(id));
        let remaining: HashSet<String> = self.store.layers().await?.into_iter().map(|l| l.diff_id).collect();
        let mut reclaimed = 0;
        for layer in orphans {
            reclaimed += layer.size;
            let content = self.content.clone();
            let keep_blob = remaining.contains(&layer.diff_id);
            let chain = layer.chain_id.clone();
            let diff = layer.diff_id.clone();
            blocking(move || {
                content.remove_layer(&chain)?;
                if !keep_blob {
                    content.remove_blob(&diff)?;
                }
                Ok(())
            })
            .await?;
            items.push(deleted(&layer.chain_id));
        }
        // A build's intermediate images go with the last image made on them,
        // as on dockerd: an untagged parent no other image is made on, and no
        // container was created from.
        if let Some(p) = all.iter().find(|r| !parent.is_empty() && r.id == parent)
            && p.tags.is_empty()
            && p.digests.is_empty()
            && !all.iter().any(|r| r.parent == parent && r.id != id)
            && !self.used_by_containers(&parent).await
        {
            reclaimed += Box::pin(self.delete_locked(&parent, items)).await?;
        }
        Ok(reclaimed)
    }

    /// Unpacks the missing layers of a stack of staged diff IDs and returns their records.
    async fn ensure_layers(&self, diff_ids: &[String]) -> Result<Vec<LayerRecord>> {
        let known: HashMap<String, LayerRecord> =
            self.store.layers().await?.into_iter().map(|l| (l.chain_id.clone(), l)).collect();
        let mut out = Vec::with_capacity(diff_ids.len());
        let chains = chain_ids(diff_ids);
        for (i, (chain, diff)) in chains.iter().zip(diff_ids).enumerate() {
            let parent = i.checked_sub(1).map(|p| chains[p].clone());
            if let Some(rec) = known.get(chain) {
                out.push(rec.clone());
                continue;
            }
            // A pull may be unpacking the same chain: wait for it, and use its work.
            let lock = self.pending.lock_for(chain);
            let _unpacking = lock.lock().await;
            if let Some(rec) = self.pending.get(chain) {
                out.push(rec);
                continue;
            }
            let content = self.content.clone();
            let (c, d) = (chain.clone(), diff.clone());
            let span = tracing::info_span!("layer unpack", chain_id = %c);
            let size = blocking(move || span.in_scope(|| content.unpack_layer(&c, &d))).await?;
            out.push(LayerRecord { chain_id: chain.clone(), diff_id: diff.clone(), parent, size: size as i64 });
        }
        Ok(out)
    }

    pub(crate) async fn commit(&self, config: Vec<u8>, layers: Vec<LayerRecord>, tags: &[String]) -> Result<String> {
        self.commit_on(config, layers, tags, "").await
    }

    /// `docker builder prune`: the classic build cache is the builds'
    /// intermediate images (untagged, with images made on them); they go, and
    /// with them the layers no other image has (an earlier stage's, say). The
    /// images made on them keep their layers and lose their parent link, so
    /// the next build of the same steps runs them again.
    async fn prune_build_cache(&self, filters: Vec<Filter>, in_use: Vec<String>) -> Result<pb::PruneImagesResponse> {
        let f = Filters::new(filters, &["until"])?;
        let until = match f.get("until").first() {
            Some(u) => Some(parse_until(u, OffsetDateTime::now_utc())?),
            None => None,
        };
        let in_use: HashSet<String> = in_use.into_iter().collect();
        let _w = self.write.lock().await;
        let images = self.store.images().await?;
        let parents: HashSet<&str> = images.iter().map(|r| r.parent.as_str()).filter(|p| !p.is_empty()).collect();
        let cache: Vec<&ImageRecord> = images
            .iter()
            .filter(|r| r.tags.is_empty() && r.digests.is_empty() && parents.contains(r.id.as_str()))
            .filter(|r| !in_use.contains(&r.id) && until.is_none_or(|u| created_of(r) <= u))
            .collect();
        let (mut items, mut reclaimed) = (Vec::new(), 0);
        for rec in cache {
            let gone = |i: &pb::DeleteItem| matches!(&i.item, Some(pb::delete_item::Item::Deleted(d)) if *d == rec.id);
            if !items.iter().any(gone) {
                reclaimed += self.delete_locked(&rec.id, &mut items).await?;
            }
        }
        Ok(pb::PruneImagesResponse { items, space_reclaimed: reclaimed })
    }

    /// An image's ID, parent and config.
    pub(crate) async fn image_config(&self, reference: &str) -> Result<(String, String, ImageConfig)> {
        let (rec, _) = self.resolve(reference).await?;
        let cfg = berth_models::parse("image config", &rec.config)
            .map_err(|e| Error::internal(format!("image {}: {e}", rec.id)))?;
        Ok((rec.id, rec.parent, cfg))
    }

    /// Stores `config` (whose layers are all in the store already) as an
    /// image made on `parent`: a build step restored from a `--cache-from`
    /// image, with no layer written.
    pub(crate) async fn restore(&self, config: &ImageConfig, parent: &str) -> Result<String> {
        let bytes = serde_json::to_vec(config).map_err(|e| Error::internal(e.to_string()))?;
        let layers = self.ensure_layers(&config.rootfs.diff_ids).await?;
        self.commit_on(bytes, layers, &[], parent).await
    }

    /// As [`Self::commit`], recording the image `parent` it was made on
    /// (`docker commit`, build steps; the classic build cache follows it).
    async fn commit_on(
        &self,
        config: Vec<u8>,
        layers: Vec<LayerRecord>,
        tags: &[String],
        parent: &str,
    ) -> Result<String> {
        let id = sha256_digest(&config);
        let cfg: ImageConfig = berth_models::parse("image config", &config).map_err(Error::invalid)?;
        let created = if cfg.created.is_empty() { "1970-01-01T00:00:00Z".to_string() } else { cfg.created };
        let rec = ImageRecord {
            id: id.clone(),
            size: layers.iter().map(|l| l.size).sum(),
            config,
            created,
            parent: parent.to_string(),
            last_tag_time: String::new(),
            tags: vec![],
            digests: vec![],
            layers,
        };
        self.store.commit_image(&rec, tags, &berth_core::id::now_rfc3339()).await?;
        Ok(id)
    }

    async fn load_locked(&self, input: ByteStream) -> Result<Vec<pb::LoadedImage>> {
        let staging = self.content.staging()?;
        let reader = SyncIoBridge::new(to_io(input));
        let content = self.content.clone();
        let stage_dir = staging.path().to_path_buf();
        // Unpack the archive, then stage, hash and verify every layer blob.
        let found = blocking(move || {
            let staged = Staged::unpack(reader, &stage_dir)?;
            let images = staged.images()?;
            let mut done: HashMap<PathBuf, String> = HashMap::new();
            let mut out = Vec::new();
            for img in images {
                let cfg: ImageConfig = berth_models::parse("image config", &img.config).map_err(Error::invalid)?;
                let want = cfg.rootfs.diff_ids;
                if want.len() != img.layers.len() {
                    return Err(Error::invalid(format!(
                        "invalid archive: the config names {} layers, the manifest {}",
                        want.len(),
                        img.layers.len()
                    )));
                }
                for (i, path) in img.layers.iter().enumerate() {
                    let diff = match done.get(path) {
                        Some(d) => d.clone(),
                        None => {
                            let file = std::fs::File::open(path)?;
                            let layer = content.stage_layer(&stage_dir, file)?;
                            if let Some(Some(expected)) = img.layer_digests.get(i)
                                && *expected != layer.raw_digest
                                && *expected != layer.diff_id
                            {
                                return Err(Error::invalid(format!(
                                    "invalid archive: layer {} has digest {}, expected {expected}",
                                    i + 1,
                                    layer.raw_digest
                                )));
                            }
                            content.commit_blob(&layer.path, &layer.diff_id)?;
                            done.insert(path.clone(), layer.diff_id.clone());
                            layer.diff_id
                        }
                    };
                    if diff != want[i] {
                        return Err(Error::invalid(format!(
                            "invalid archive: layer {} has diff ID {diff}, but the config expects {}",
                            i + 1,
                            want[i]
                        )));
                    }
                }
                out.push((img.config, img.tags, want));
            }
            Ok(out)
        })
        .await?;
        let mut loaded = Vec::new();
        for (config, tags, diffs) in found {
            let layers = self.ensure_layers(&diffs).await?;
            let id = self.commit(config, layers, &tags).await?;
            if tags.is_empty() {
                loaded.push(pb::LoadedImage { id: id.clone(), reference: String::new() });
            }
            for t in tags {
                loaded.push(pb::LoadedImage { id: id.clone(), reference: t });
            }
        }
        drop(staging);
        Ok(loaded)
    }

    async fn import_locked(&self, options: pb::ImportOptions, input: ByteStream) -> Result<String> {
        let tag = import_tag(&options)?;
        let (os, arch) = match options.platform.split_once('/') {
            Some((os, arch)) => (os.to_string(), arch.to_string()),
            None if options.platform.is_empty() => ("linux".to_string(), archive::host_arch().to_string()),
            None => (options.platform.clone(), archive::host_arch().to_string()),
        };
        if os != "linux" {
            return Err(Error::invalid(format!("unsupported os {os}")));
        }
        let staging = self.content.staging()?;
        let reader = SyncIoBridge::new(to_io(input));
        let content = self.content.clone();
        let stage_dir = staging.path().to_path_buf();
        let diff = blocking(move || {
            let layer = content.stage_layer(&stage_dir, reader)?;
            // Check that it is a tar before it goes anywhere: count its entries.
            let f = std::fs::File::open(&layer.path)?;
            let mut archive = tar::Archive::new(std::io::BufReader::new(f));
            let mut n = 0usize;
            for entry in archive.entries().map_err(|e| Error::invalid(format!("invalid tar: {e}")))? {
                entry.map_err(|e| Error::invalid(format!("invalid tar: {e}")))?;
                n += 1;
            }
            if n == 0 {
                return Err(Error::invalid("invalid tar: the archive is empty"));
            }
            content.commit_blob(&layer.path, &layer.diff_id)?;
            Ok(layer.diff_id)
        })
        .await?;
        let layers = self.ensure_layers(std::slice::from_ref(&diff)).await?;
        let mut container_config = berth_models::container::ContainerConfig::default();
        crate::changes::apply(&mut container_config, &options.changes)?;
        let now = berth_core::id::now_rfc3339();
        let comment = if options.message.is_empty() { "Imported from -".to_string() } else { options.message.clone() };
        let config = ImageConfig {
            architecture: arch,
            os,
            created: now.clone(),
            config: Some(container_config),
            rootfs: berth_models::image::RootFs { kind: "layers".into(), diff_ids: vec![diff] },
            history: vec![berth_models::image::History { created: now, comment, ..Default::default() }],
            ..Default::default()
        };
        let bytes = serde_json::to_vec(&config).map_err(|e| Error::internal(e.to_string()))?;
        let tags: Vec<String> = tag.into_iter().collect();
        drop(staging);
        self.commit(bytes, layers, &tags).await
    }
}

impl LocalImageService {
    async fn commit_locked(&self, options: pb::CommitOptions, input: ByteStream) -> Result<String> {
        let tag = import_tag(&pb::ImportOptions {
            repo: options.repo.clone(),
            tag: options.tag.clone(),
            ..Default::default()
        })?;
        // No parent: an image of nothing yet (a build's `FROM scratch`).
        let parent = match options.parent.as_str() {
            "" => None,
            p => Some(self.resolve(p).await?.0),
        };
        let mut config: ImageConfig = match &parent {
            Some(parent) => berth_models::parse("image config", &parent.config)
                .map_err(|e| Error::internal(format!("image {}: {e}", parent.id)))?,
            None => ImageConfig {
                architecture: archive::host_arch().to_string(),
                os: "linux".into(),
                rootfs: berth_models::image::RootFs { kind: "layers".into(), diff_ids: vec![] },
                ..Default::default()
            },
        };
        let mut diff_ids = config.rootfs.diff_ids.clone();
        let staging = self.content.staging()?;
        if !options.empty_layer {
            let reader = SyncIoBridge::new(to_io(input));
            let content = self.content.clone();
            let stage_dir = staging.path().to_path_buf();
            let diff = blocking(move || {
                let layer = content.stage_layer(&stage_dir, reader)?;
                content.commit_blob(&layer.path, &layer.diff_id)?;
                Ok(layer.diff_id)
            })
            .await?;
            diff_ids.push(diff);
        }
        let layers = self.ensure_layers(&diff_ids).await?;
        let mut container_config: berth_models::container::ContainerConfig = if options.config.is_empty() {
            config.container_config()
        } else {
            berth_models::parse("container config", &options.config).map_err(Error::invalid)?
        };
        crate::changes::apply(&mut container_config, &options.changes)?;
        let now = berth_core::id::now_rfc3339();
        config.created = now.clone();
        config.author = options.author.clone();
        config.comment = options.comment.clone();
        config.config = Some(container_config);
        config.rootfs.diff_ids = diff_ids;
        // What described the parent's making does not describe this image's.
        config.extra.remove("container");
        config.extra.remove("container_config");
        if parent.is_some() || !options.created_by.is_empty() || !options.empty_layer {
            config.history.push(berth_models::image::History {
                created: now,
                created_by: options.created_by.clone(),
                author: options.author.clone(),
                comment: options.comment.clone(),
                empty_layer: options.empty_layer,
            });
        }
        let bytes = serde_json::to_vec(&config).map_err(|e| Error::internal(e.to_string()))?;
        let tags: Vec<String> = tag.into_iter().collect();
        drop(staging);
        self.commit_on(bytes, layers, &tags, parent.as_ref().map(|p| p.id.as_str()).unwrap_or("")).await
    }
}

fn deleted(id: &str) -> pb::DeleteItem {
    pb::DeleteItem { item: Some(pb::delete_item::Item::Deleted(id.to_string())) }
}

fn untagged(reference: &str) -> pb::DeleteItem {
    pb::DeleteItem { item: Some(pb::delete_item::Item::Untagged(reference.to_string())) }
}

fn import_tag(o: &pb::ImportOptions) -> Result<Option<String>> {
    if o.repo.is_empty() {
        return Ok(None);
    }
    let r = Reference::parse(&o.repo)?;
    if r.digest.is_some() {
        return Err(Error::invalid("cannot import to a digest reference"));
    }
    Ok(Some(match (&r.tag, o.tag.is_empty()) {
        (Some(_), _) | (None, true) => r.tagged(),
        (None, false) => Reference::parse(&format!("{}:{}", r.name, o.tag))?.tagged(),
    }))
}

#[async_trait]
impl ImageApi for LocalImageService {
    async fn list(&self, all: bool, filters: Vec<Filter>) -> Result<Vec<pb::Image>> {
        let f = Filters::new(filters, &["reference", "dangling", "label", "before", "since", "until"])?;
        let dangling = f.bool("dangling")?;
        let mut before = None;
        for r in f.get("before") {
            before = Some(created_of(&self.resolve(r).await?.0));
        }
        let mut since = None;
        for r in f.get("since") {
            since = Some(created_of(&self.resolve(r).await?.0));
        }
        let until = match f.get("until").first() {
            Some(u) => Some(parse_until(u, OffsetDateTime::now_utc())?),
            None => None,
        };
        let refs = f.get("reference");
        let labels = f.get("label");
        let mut out = Vec::new();
        let images = self.store.images().await?;
        let parents: HashSet<String> = images.iter().map(|r| r.parent.clone()).filter(|p| !p.is_empty()).collect();
        for rec in images {
            // A build's intermediate images (untagged, others made on them)
            // show only with `all`, and are never dangling (dockerd).
            let intermediate = rec.tags.is_empty() && parents.contains(&rec.id);
            if intermediate && !all {
                continue;
            }
            if let Some(d) = dangling
                && d != (rec.tags.is_empty() && !intermediate)
            {
                continue;
            }
            let created = created_of(&rec);
            if before.is_some_and(|b| created >= b)
                || since.is_some_and(|s| created <= s)
                || until.is_some_and(|u| created > u)
            {
                continue;
            }
            if !labels.is_empty() && !labels_match(image_labels(&rec).as_ref(), &labels) {
                continue;
            }
            if !refs.is_empty() {
                // As dockerd: any pattern may match (they are ORed), and the
                // image lists only the references that did.
                let matches = |r: &String| {
                    // `name:tag` or `name@digest`: the name without either.
                    let name = match r.split_once('@') {
                        Some((n, _)) => n,
                        None => r.rsplit_once(':').map(|(n, _)| n).unwrap_or(r),
                    };
                    refs.iter().any(|p| glob_match(p, r) || glob_match(p, name))
                };
                if !rec.tags.iter().any(matches) {
                    continue;
                }
                let mut shown = rec.clone();
                shown.tags.retain(matches);
                shown.digests.retain(matches);
                out.push(self.to_proto(&shown));
                continue;
            }
            out.push(self.to_proto(&rec));
        }
        Ok(out)
    }

    async fn inspect(&self, reference: &str) -> Result<pb::Image> {
        Ok(self.to_proto(&self.resolve(reference).await?.0))
    }

    async fn history(&self, reference: &str) -> Result<Vec<pb::HistoryItem>> {
        let (rec, _) = self.resolve(reference).await?;
        let cfg = image_config(&rec);
        let unix = |s: &str| berth_core::id::parse_rfc3339(s).map(|t| t.unix_timestamp()).unwrap_or(0);
        let mut items = Vec::new();
        let mut layer = 0usize;
        let history = cfg.history;
        if history.is_empty() {
            for l in &rec.layers {
                items.push(pb::HistoryItem {
                    id: "<missing>".into(),
                    created: unix(&rec.created),
                    size: l.size,
                    ..Default::default()
                });
            }
        }
        for h in history {
            let empty = h.empty_layer;
            let size = if empty {
                0
            } else {
                let s = rec.layers.get(layer).map(|l| l.size).unwrap_or(0);
                layer += 1;
                s
            };
            items.push(pb::HistoryItem {
                id: "<missing>".into(),
                created: unix(&h.created),
                created_by: h.created_by,
                tags: vec![],
                size,
                comment: h.comment,
            });
        }
        items.reverse();
        // As dockerd: the newest entry is the image's, and each older one its
        // parent's while the parent chain lasts (a build step adds one entry
        // and one parent), so a local build shows its intermediate images.
        let mut at = Some(rec);
        for item in items.iter_mut() {
            let Some(image) = at.take() else { break };
            item.id = image.id.clone();
            item.tags = image.tags.clone();
            if !image.parent.is_empty() {
                at = self.store.image(&image.parent).await?;
            }
        }
        Ok(items)
    }

    async fn tag(&self, source: &str, repo: &str, tag: &str) -> Result<()> {
        let _w = self.write.lock().await;
        let (rec, _) = self.resolve(source).await?;
        let r = Reference::parse(repo)?;
        if r.digest.is_some() {
            return Err(Error::invalid("refusing to create a tag with a digest reference"));
        }
        let target = match (r.tag.as_deref(), tag) {
            (Some(_), "") | (None, "") => r.tagged(),
            (_, t) => Reference::parse(&format!("{}:{t}", r.name))?.tagged(),
        };
        if target.starts_with("sha256:")
            || target.split(':').next().is_some_and(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(Error::invalid("refusing to create an ambiguous tag using digest algorithm as name"));
        }
        self.store.tag(&target, &rec.id, &berth_core::id::now_rfc3339()).await?;
        self.emit("tag", &rec.id, &target);
        Ok(())
    }

    async fn remove(&self, reference: &str, force: bool, keep_image: bool) -> Result<Vec<pb::DeleteItem>> {
        let _w = self.write.lock().await;
        let (rec, how) = self.resolve(reference).await?;
        let mut items = Vec::new();
        match how {
            Resolved::Ref(r) => {
                self.store.untag(&r).await?;
                items.push(untagged(&r));
                let mut left = rec.tags.len() + rec.digests.len() - 1;
                // As dockerd: when the last tag of a repository goes, that
                // repository's digest references go with it.
                let repo_of = |x: &str| Reference::parse(x).map(|p| p.name).unwrap_or_default();
                let name = repo_of(&r);
                if !r.contains('@') && !rec.tags.iter().any(|t| *t != r && repo_of(t) == name) {
                    for d in rec.digests.iter().filter(|d| repo_of(d) == name) {
                        self.store.untag(d).await?;
                        items.push(untagged(d));
                        left -= 1;
                    }
                }
                if left == 0 && !keep_image {
                    self.delete_locked(&rec.id, &mut items).await?;
                }
            }
            Resolved::Id => {
                if rec.tags.len() > 1 && !force {
                    return Err(Error::conflict(format!(
                        "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
                        short(&rec.id)
                    )));
                }
                for r in rec.tags.iter().chain(&rec.digests) {
                    self.store.untag(r).await?;
                    items.push(untagged(r));
                }
                if !keep_image {
                    self.delete_locked(&rec.id, &mut items).await?;
                }
            }
        }
        self.emit_deletes(&rec.id, &items);
        Ok(items)
    }

    async fn prune(&self, req: pb::PruneImagesRequest) -> Result<pb::PruneImagesResponse> {
        let pb::PruneImagesRequest { filters, in_use, build_cache } = req;
        if build_cache {
            return self.prune_build_cache(filters, in_use).await;
        }
        let f = Filters::new(filters, &["dangling", "until", "label", "label!"])?;
        let dangling_only = f.bool("dangling")?.unwrap_or(true);
        let until = match f.get("until").first() {
            Some(u) => Some(parse_until(u, OffsetDateTime::now_utc())?),
            None => None,
        };
        let labels = f.get("label");
        let not_labels = f.get("label!");
        let in_use: HashSet<String> = in_use.into_iter().collect();
        let _w = self.write.lock().await;
        let mut items = Vec::new();
        let mut reclaimed = 0;
        let images = self.store.images().await?;
        // An untagged image others are made on is a build's intermediate, not
        // dangling: it goes with its last child (see `delete_locked`).
        let parents: HashSet<String> = images.iter().map(|r| r.parent.clone()).filter(|p| !p.is_empty()).collect();
        for rec in images {
            if in_use.contains(&rec.id) || (dangling_only && (!rec.tags.is_empty() || parents.contains(&rec.id))) {
                continue;
            }
            // Gone already, with a child deleted before it.
            if items
                .iter()
                .any(|i: &pb::DeleteItem| matches!(&i.item, Some(pb::delete_item::Item::Deleted(d)) if *d == rec.id))
            {
                continue;
            }
            if until.is_some_and(|u| created_of(&rec) > u) {
                continue;
            }
            let cfg_labels = image_labels(&rec);
            let cfg_labels = cfg_labels.as_ref();
            if !labels_match(cfg_labels, &labels) || (!not_labels.is_empty() && labels_match(cfg_labels, &not_labels)) {
                continue;
            }
            for r in rec.tags.iter().chain(&rec.digests) {
                self.store.untag(r).await?;
                items.push(untagged(r));
            }
            reclaimed += self.delete_locked(&rec.id, &mut items).await?;
        }
        Ok(pb::PruneImagesResponse { items, space_reclaimed: reclaimed })
    }

    async fn load(&self, input: ByteStream) -> Result<Vec<pb::LoadedImage>> {
        let _w = self.write.lock().await;
        let out = self.load_locked(input).await;
        for l in out.iter().flatten() {
            self.emit("load", &l.id, if l.reference.is_empty() { &l.id } else { &l.reference });
        }
        if out.is_err() {
            // Blobs or layers staged before the failure are unreferenced: drop them now.
            if let Err(e) = self.sweep().await {
                tracing::warn!(error = %e, "sweep after failed load");
            }
        }
        out
    }

    async fn save(&self, names: Vec<String>) -> Result<ByteStream> {
        if names.is_empty() {
            return Err(Error::invalid("no images to save"));
        }
        let mut images: Vec<SaveImage> = Vec::new();
        let mut index_of: HashMap<String, usize> = HashMap::new();
        for name in &names {
            // A repository name without a tag saves every tag of that repository.
            let mut targets: Vec<(ImageRecord, Option<String>)> = Vec::new();
            let parsed = Reference::parse(name).ok().filter(|r| r.tag.is_none() && r.digest.is_none());
            if let Some(r) = parsed {
                for rec in self.store.images().await? {
                    for t in rec.tags.iter().filter(|t| t.rsplit_once(':').map(|(n, _)| n) == Some(r.name.as_str())) {
                        targets.push((rec.clone(), Some(t.clone())));
                    }
                }
            }
            if targets.is_empty() {
                let (rec, how) = self.resolve(name).await?;
                let tag = match how {
                    Resolved::Ref(r) if !r.contains('@') => Some(r),
                    _ => None,
                };
                targets.push((rec, tag));
            }
            for (rec, tag) in targets {
                let i = match index_of.get(&rec.id) {
                    Some(&i) => i,
                    None => {
                        let mut layers = Vec::new();
                        for l in &rec.layers {
                            let path = self.content.blob_path(&l.diff_id)?;
                            if !path.exists() {
                                return Err(Error::internal(format!(
                                    "layer blob {} of {} is missing",
                                    l.diff_id, rec.id
                                )));
                            }
                            layers.push((l.diff_id.clone(), path));
                        }
                        let mtime = created_of(&rec).unix_timestamp().max(0) as u64;
                        images.push(SaveImage { config: rec.config.clone(), tags: vec![], layers, mtime });
                        index_of.insert(rec.id.clone(), images.len() - 1);
                        images.len() - 1
                    }
                };
                if let Some(t) = tag
                    && !images[i].tags.contains(&t)
                {
                    images[i].tags.push(t);
                }
            }
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes>>(8);
        tokio::task::spawn_blocking(move || {
            let writer = ChannelWriter { tx: tx.clone() };
            let out = std::io::BufWriter::with_capacity(256 * 1024, writer);
            if let Err(e) = archive::write_archive(&images, out) {
                let _ = tx.blocking_send(Err(e));
            }
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    async fn build(&self, options: pb::BuildOptions, input: ByteStream) -> Result<berth_image_api::BuildStream> {
        let runtime = self.runtime.get().cloned().ok_or_else(|| {
            Error::unavailable("the builder needs the runtime service, which this image service does not know")
        })?;
        // Names are checked before anything runs, as dockerd does.
        let mut tags = Vec::new();
        for t in &options.tags {
            let r = Reference::parse(t)?;
            if r.digest.is_some() {
                return Err(Error::invalid(format!("invalid reference format: {t} has a digest")));
            }
            tags.push(r);
        }
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let svc = self.clone();
        tokio::spawn(async move {
            let quiet = options.quiet;
            let msg = |kind| Ok(pb::BuildMessage { kind: Some(kind) });
            use pb::build_message::Kind;
            match svc.build_image(runtime, options, input, tx.clone()).await {
                Ok(id) => {
                    for r in &tags {
                        if let Err(e) =
                            svc.tag(&id, &r.name, r.tag.as_deref().unwrap_or(crate::reference::DEFAULT_TAG)).await
                        {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                    }
                    if quiet {
                        let _ = tx.send(msg(Kind::Stream(format!("{id}\n")))).await;
                        return;
                    }
                    let _ = tx.send(msg(Kind::AuxId(id.clone()))).await;
                    let short = id.strip_prefix("sha256:").unwrap_or(&id).chars().take(12).collect::<String>();
                    let _ = tx.send(msg(Kind::Stream(format!("Successfully built {short}\n")))).await;
                    for r in &tags {
                        let _ = tx.send(msg(Kind::Stream(format!("Successfully tagged {}\n", r.tagged())))).await;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                }
            }
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    async fn commit(&self, options: pb::CommitOptions, input: ByteStream) -> Result<String> {
        let _w = self.write.lock().await;
        let tagged = import_tag(&pb::ImportOptions {
            repo: options.repo.clone(),
            tag: options.tag.clone(),
            ..Default::default()
        });
        let out = self.commit_locked(options, input).await;
        if let (Ok(id), Ok(Some(reference))) = (&out, tagged) {
            self.emit("tag", id, &reference);
        }
        out
    }

    async fn import(&self, options: pb::ImportOptions, input: ByteStream) -> Result<String> {
        let _w = self.write.lock().await;
        let out = self.import_locked(options, input).await;
        if let Ok(id) = &out {
            self.emit("import", id, id);
        }
        if out.is_err()
            && let Err(e) = self.sweep().await
        {
            tracing::warn!(error = %e, "sweep after failed import");
        }
        out
    }

    async fn pull(&self, req: pb::PullImageRequest) -> Result<crate::ProgressStream> {
        let svc = self.clone();
        Ok(progress_task(move |tx| async move { svc.pull_into(req, tx).await }))
    }

    async fn push(&self, req: pb::PushImageRequest) -> Result<crate::ProgressStream> {
        let svc = self.clone();
        Ok(progress_task(move |tx| async move { svc.push_from(req, tx).await }))
    }

    async fn login(&self, auth: pb::RegistryAuth) -> Result<pb::LoginResponse> {
        crate::registry::login(&self.registry, &auth).await
    }

    async fn store_info(&self) -> Result<pb::StoreInfoResponse> {
        let images = self.store.images().await?.len() as i64;
        let layers = self.store.layers().await?;
        Ok(pb::StoreInfoResponse {
            images,
            layers: layers.len() as i64,
            layers_size: layers.iter().map(|l| l.size).sum(),
            root: self.content.root().to_string_lossy().into_owned(),
        })
    }
}

/// Sends written bytes as chunks over a channel; fails once the reader is gone.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Result<Bytes>>,
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tx
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "reader went away"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
