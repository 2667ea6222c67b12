//! [`LocalVolumes`]: the volume service over a [`VolumeStore`], with dockerd's
//! local driver.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use berth_core::{Error, ErrorKind, Result};
use berth_proto::types::v1::{Filter, KeyValue};

use crate::driver;
use crate::store::{MIGRATIONS, SqlVolumeStore, VolumeStore};
use crate::{VolumeApi, pb};

/// The label dockerd puts on anonymous volumes (since 23.0); a plain `volume
/// prune` removes only volumes that carry it.
pub const ANONYMOUS: &str = "com.docker.volume.anonymous";

/// The volume service.
pub struct LocalVolumes {
    store: Arc<dyn VolumeStore>,
    /// `<data-root>/volume/volumes`: one directory per volume.
    root: PathBuf,
    /// Where volume events go.
    events: Arc<berth_core::events::EventBus>,
    /// Create, use, release and remove are check-then-act; one at a time.
    lock: tokio::sync::Mutex<()>,
}

/// dockerd's rule for local volume names: a letter or digit, then at least one
/// more of letters, digits, `_.-`.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() >= 2
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn map_of(kvs: &[KeyValue]) -> BTreeMap<&str, &str> {
    kvs.iter().map(|kv| (kv.key.as_str(), kv.value.as_str())).collect()
}

fn not_found(name: &str) -> Error {
    Error::not_found(format!("get {name}: no such volume"))
}

/// Whether a filter value means yes (`true`, `1`).
fn truthy(v: &str) -> Result<bool> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(Error::invalid(format!("invalid filter value {other:?}: want true or false"))),
    }
}

/// `label=key` or `label=key=value` against a volume's labels.
fn has_label(v: &pb::Volume, want: &str) -> bool {
    match want.split_once('=') {
        Some((k, val)) => v.labels.iter().any(|kv| kv.key == k && kv.value == val),
        None => v.labels.iter().any(|kv| kv.key == want),
    }
}

impl LocalVolumes {
    /// Opens the service's state under `dir` (`<data-root>/volume`). The
    /// volumes themselves are where dockerd keeps them, beside it:
    /// `<data-root>/volumes/<name>/_data` (an older Berth kept them in
    /// `<data-root>/volume/volumes`: moved once, with a link left there for
    /// the containers that name the old paths).
    pub async fn open(dir: &Path, state: &berth_core::db::State) -> Result<Self> {
        let pool = state.open("volume", dir, &MIGRATIONS).await?;
        let old = dir.join("volumes");
        let root = dir.parent().map_or_else(|| old.clone(), |data_root| data_root.join("volumes"));
        let io = |what: &str, p: &Path| {
            let p = p.display().to_string();
            let what = what.to_string();
            move |e: std::io::Error| Error::from(e).context(format!("{what} {p}"))
        };
        if root != old && old.is_dir() && !old.is_symlink() && !root.exists() {
            std::fs::rename(&old, &root).map_err(io("move the volumes to", &root))?;
            std::os::unix::fs::symlink(&root, &old).map_err(io("link", &old))?;
        }
        berth_core::perms::ensure_dir(&root, berth_core::perms::PRIVATE_DIR)?;
        Ok(Self::new(Arc::new(SqlVolumeStore::new(pool)), root))
    }

    /// A service over any store, keeping volumes under `root`.
    pub fn new(store: Arc<dyn VolumeStore>, root: PathBuf) -> Self {
        Self { store, root, lock: tokio::sync::Mutex::new(()), events: Default::default() }
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

    /// A service over any store, with volumes under a temporary directory.
    pub fn with_store(store: Arc<dyn VolumeStore>) -> Self {
        Self::new(store, std::env::temp_dir().join("berth-volumes"))
    }

    fn dir_of(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Every volume with the containers using it.
    async fn all(&self) -> Result<Vec<pb::Volume>> {
        let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (volume, container) in self.store.refs().await? {
            users.entry(volume).or_default().push(container);
        }
        let mut list = self.store.volumes().await?;
        for v in &mut list {
            v.used_by = users.remove(&v.name).unwrap_or_default();
        }
        Ok(list)
    }

    async fn find(&self, name: &str) -> Result<pb::Volume> {
        self.all().await?.into_iter().find(|v| v.name == name).ok_or_else(|| not_found(name))
    }

    /// Creates a volume, or returns the one of that name (with the lock held).
    async fn create_locked(&self, req: pb::CreateVolumeRequest) -> Result<pb::Volume> {
        match req.driver.as_str() {
            "" | "local" => {}
            other => {
                return Err(Error::not_found(format!(
                    "error looking up volume plugin {other}: plugin \"{other}\" not found"
                )));
            }
        }
        let name = if req.name.is_empty() { berth_core::id::random_id() } else { req.name.clone() };
        if !valid_name(&name) {
            return Err(Error::invalid(format!(
                "create {name}: \"{name}\" includes invalid characters for a local volume name, only \
                 \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
            )));
        }
        let spec = driver::parse_options(&req.options)?;
        if let Some(existing) = self.all().await?.into_iter().find(|v| v.name == name) {
            if !req.options.is_empty() && map_of(&existing.options) != map_of(&req.options) {
                return Err(Error::conflict(format!(
                    "create {name}: a volume with this name already exists with different options"
                )));
            }
            return Ok(existing);
        }
        if let Some(s) = spec.as_ref().filter(|s| s.is_bind())
            && !Path::new(&s.device).is_dir()
        {
            return Err(Error::invalid(format!(
                "create {name}: failed to mount local volume: mount {}: no such file or directory",
                s.device
            )));
        }
        let data = self.dir_of(&name).join("_data");
        std::fs::create_dir_all(&data).map_err(|e| Error::from(e).context(format!("create {}", data.display())))?;
        let mut labels = req.labels.clone();
        // A volume given no name is anonymous, as on dockerd 23+ (a plain
        // `volume prune` takes it).
        if (req.anonymous || req.name.is_empty()) && !labels.iter().any(|kv| kv.key == ANONYMOUS) {
            labels.push(KeyValue { key: ANONYMOUS.into(), value: String::new() });
        }
        let v = pb::Volume {
            name: name.clone(),
            driver: "local".into(),
            mountpoint: data.to_string_lossy().into_owned(),
            created_at: berth_core::id::now_rfc3339(),
            labels,
            options: req.options.clone(),
            scope: "local".into(),
            used_by: vec![],
            size: -1,
        };
        if let Err(e) = self.store.insert(&v).await {
            let _ = std::fs::remove_dir_all(self.dir_of(&name));
            return Err(e);
        }
        tracing::info!(name = %name, anonymous = req.anonymous, "volume created");
        self.events.publish("volume", "create", &name, [("driver", "local")]);
        Ok(v)
    }

    /// Removes a volume nobody uses (with the lock held): its mount, its
    /// directory, its record. Returns the bytes it held.
    async fn remove_locked(&self, v: &pb::Volume) -> Result<u64> {
        if !v.used_by.is_empty() {
            return Err(Error::conflict(format!("remove {}: volume is in use - [{}]", v.name, v.used_by.join(", "))));
        }
        let dir = self.dir_of(&v.name);
        let data = dir.join("_data");
        driver::unmount(&data)?;
        let size = driver::size_of(&data);
        // Never walk into a mount that is still there (a bind volume's host data).
        if driver::is_mounted(&data) {
            return Err(Error::conflict(format!("remove {}: its mount is still in place", v.name)));
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::from(e).context(format!("remove {}", dir.display()))),
        }
        self.store.delete(&v.name).await?;
        tracing::info!(name = %v.name, "volume removed");
        self.events.publish("volume", "destroy", &v.name, [("driver", v.driver.as_str())]);
        Ok(size)
    }
}

#[async_trait]
impl VolumeApi for LocalVolumes {
    async fn list(&self, filters: Vec<Filter>, with_size: bool) -> Result<Vec<pb::Volume>> {
        const KEYS: [&str; 4] = ["dangling", "driver", "label", "name"];
        if let Some(f) = filters.iter().find(|f| !KEYS.contains(&f.key.as_str())) {
            return Err(Error::invalid(format!("invalid filter '{}'", f.key)));
        }
        let values =
            |key: &str| -> Vec<&String> { filters.iter().filter(|f| f.key == key).flat_map(|f| &f.values).collect() };
        let dangling = values("dangling").first().map(|v| truthy(v)).transpose()?;
        let (names, labels, drivers) = (values("name"), values("label"), values("driver"));
        let mut list: Vec<pb::Volume> = self
            .all()
            .await?
            .into_iter()
            .filter(|v| names.is_empty() || names.iter().any(|w| v.name.contains(w.as_str())))
            .filter(|v| labels.iter().all(|l| has_label(v, l)))
            .filter(|v| drivers.is_empty() || drivers.iter().any(|d| v.driver == **d))
            .filter(|v| dangling.is_none_or(|d| d == v.used_by.is_empty()))
            .collect();
        if with_size {
            let dirs: Vec<PathBuf> = list.iter().map(|v| PathBuf::from(&v.mountpoint)).collect();
            let sizes =
                tokio::task::spawn_blocking(move || dirs.iter().map(|d| driver::size_of(d)).collect::<Vec<_>>())
                    .await
                    .map_err(|e| Error::internal(e.to_string()))?;
            for (v, size) in list.iter_mut().zip(sizes) {
                v.size = i64::try_from(size).unwrap_or(i64::MAX);
            }
        }
        Ok(list)
    }

    async fn create(&self, req: pb::CreateVolumeRequest) -> Result<pb::Volume> {
        let _guard = self.lock.lock().await;
        self.create_locked(req).await
    }

    async fn inspect(&self, name: &str) -> Result<pb::Volume> {
        self.find(name).await
    }

    async fn remove(&self, name: &str, force: bool) -> Result<()> {
        let _guard = self.lock.lock().await;
        match self.find(name).await {
            Ok(v) => self.remove_locked(&v).await.map(|_| ()),
            Err(e) if e.kind() == ErrorKind::NotFound && force => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn prune(&self, filters: Vec<Filter>) -> Result<pb::PruneVolumesResponse> {
        let mut all = false;
        let (mut labels, mut not_labels) = (vec![], vec![]);
        for f in &filters {
            match f.key.as_str() {
                "label" => labels.extend(f.values.iter().cloned()),
                "label!" => not_labels.extend(f.values.iter().cloned()),
                "all" => all = f.values.iter().map(|v| truthy(v)).collect::<Result<Vec<bool>>>()?.contains(&true),
                other => return Err(Error::invalid(format!("invalid filter '{other}'"))),
            }
        }
        let _guard = self.lock.lock().await;
        let mut out = pb::PruneVolumesResponse::default();
        for v in self.all().await? {
            let anonymous = v.labels.iter().any(|kv| kv.key == ANONYMOUS);
            if !v.used_by.is_empty()
                || (!all && !anonymous)
                || !labels.iter().all(|l| has_label(&v, l))
                || not_labels.iter().any(|l| has_label(&v, l))
            {
                continue;
            }
            out.space_reclaimed += self.remove_locked(&v).await?;
            out.deleted.push(v.name);
        }
        Ok(out)
    }

    async fn use_volume(&self, req: pb::CreateVolumeRequest, container_id: &str) -> Result<pb::Volume> {
        if container_id.is_empty() {
            return Err(Error::invalid("a volume is used by a container: container ID missing"));
        }
        let _guard = self.lock.lock().await;
        let mut v = self.create_locked(req).await?;
        self.store.add_ref(&v.name, container_id).await?;
        if let Some(spec) = driver::parse_options(&v.options)? {
            let data = PathBuf::from(&v.mountpoint);
            tokio::task::spawn_blocking(move || driver::mount(&spec, &data))
                .await
                .map_err(|e| Error::internal(e.to_string()))??;
        }
        if !v.used_by.iter().any(|c| c == container_id) {
            v.used_by.push(container_id.to_string());
        }
        Ok(v)
    }

    async fn release(&self, container_id: &str, remove_anonymous: bool) -> Result<Vec<String>> {
        let _guard = self.lock.lock().await;
        let had: HashSet<String> = self.store.drop_refs(container_id).await?.into_iter().collect();
        let mut removed = Vec::new();
        for v in self.all().await?.into_iter().filter(|v| had.contains(&v.name) && v.used_by.is_empty()) {
            if remove_anonymous && v.labels.iter().any(|kv| kv.key == ANONYMOUS) {
                self.remove_locked(&v).await?;
                removed.push(v.name);
            } else if driver::parse_options(&v.options).ok().flatten().is_some() {
                // Nobody uses it: its mount goes (a tmpfs volume's content with it, as in dockerd).
                let _ = driver::unmount(Path::new(&v.mountpoint));
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn service() -> (tempfile::TempDir, LocalVolumes) {
        let dir = tempfile::tempdir().expect("tmp");
        let svc = LocalVolumes::open(&dir.path().join("volume"), &Default::default()).await.expect("open");
        (dir, svc)
    }

    #[tokio::test]
    async fn volumes_live_where_dockerd_keeps_them_and_old_ones_move_there() {
        let dir = tempfile::tempdir().expect("tmp");
        let old = dir.path().join("volume/volumes/kept/_data");
        std::fs::create_dir_all(&old).expect("mkdir");
        std::fs::write(old.join("f"), b"x").expect("write");
        let svc = LocalVolumes::open(&dir.path().join("volume"), &Default::default()).await.expect("open");
        assert_eq!(std::fs::read(dir.path().join("volumes/kept/_data/f")).expect("moved"), b"x");
        assert_eq!(std::fs::read(old.join("f")).expect("the old path still leads there"), b"x");
        let v = svc.create(named("fresh")).await.expect("create");
        assert_eq!(PathBuf::from(&v.mountpoint), dir.path().join("volumes/fresh/_data"));
        drop(svc);
        // Opened again: nothing moves twice.
        LocalVolumes::open(&dir.path().join("volume"), &Default::default()).await.expect("reopen");
        assert!(dir.path().join("volumes/kept/_data/f").exists());
    }

    fn named(name: &str) -> pb::CreateVolumeRequest {
        pb::CreateVolumeRequest { name: name.into(), ..Default::default() }
    }

    fn kind<T: std::fmt::Debug>(r: Result<T>) -> Option<ErrorKind> {
        r.err().map(|e| e.kind())
    }

    #[test]
    fn names_like_dockerd() {
        assert!(valid_name("data") && valid_name("a.b_c-1") && valid_name("0x"));
        assert!(!valid_name("a") && !valid_name("-a") && !valid_name("a/b") && !valid_name("../x") && !valid_name(""));
    }

    #[tokio::test]
    async fn create_inspect_list_and_clashes() {
        let (_dir, svc) = service().await;
        let mut req = named("data");
        req.labels = vec![KeyValue { key: "team".into(), value: "blue".into() }];
        let v = svc.create(req.clone()).await.expect("create");
        assert!(v.mountpoint.ends_with("volumes/data/_data") && Path::new(&v.mountpoint).is_dir(), "{}", v.mountpoint);
        assert_eq!(svc.create(named("data")).await.expect("again").created_at, v.created_at, "the same volume");
        let mut other = named("data");
        other.options = vec![
            KeyValue { key: "type".into(), value: "tmpfs".into() },
            KeyValue { key: "device".into(), value: "tmpfs".into() },
        ];
        assert_eq!(kind(svc.create(other).await), Some(ErrorKind::Conflict));
        assert_eq!(kind(svc.create(named("../etc")).await), Some(ErrorKind::InvalidArgument));
        let mut plugin = named("p1");
        plugin.driver = "nfs-plugin".into();
        assert_eq!(kind(svc.create(plugin).await), Some(ErrorKind::NotFound));
        let generated = svc.create(pb::CreateVolumeRequest::default()).await.expect("generated");
        assert_eq!(generated.name.len(), 64);
        assert!(generated.labels.iter().any(|kv| kv.key == ANONYMOUS), "no name: anonymous, as dockerd 23+");
        assert!(!v.labels.iter().any(|kv| kv.key == ANONYMOUS), "a named volume is not");
        assert_eq!(kind(svc.inspect("nope").await), Some(ErrorKind::NotFound));
        let by_label = vec![Filter { key: "label".into(), values: vec!["team=blue".into()] }];
        let names: Vec<String> = svc.list(by_label, false).await.expect("list").into_iter().map(|v| v.name).collect();
        assert_eq!(names, vec!["data".to_string()]);
        let bad = vec![Filter { key: "colour".into(), values: vec![] }];
        assert_eq!(kind(svc.list(bad, false).await), Some(ErrorKind::InvalidArgument));
    }

    #[tokio::test]
    async fn references_protect_and_release_removes_anonymous() {
        let (_dir, svc) = service().await;
        let c1 = "1".repeat(64);
        let named_v = svc.use_volume(named("keep"), &c1).await.expect("use named");
        std::fs::write(Path::new(&named_v.mountpoint).join("f"), b"hello").expect("write");
        let anon = svc
            .use_volume(pb::CreateVolumeRequest { anonymous: true, ..Default::default() }, &c1)
            .await
            .expect("use anonymous");
        assert!(anon.labels.iter().any(|kv| kv.key == ANONYMOUS));
        assert_eq!(kind(svc.remove("keep", false).await), Some(ErrorKind::Conflict), "in use");
        assert_eq!(kind(svc.remove("keep", true).await), Some(ErrorKind::Conflict), "force does not override use");
        let dangling = vec![Filter { key: "dangling".into(), values: vec!["true".into()] }];
        assert!(svc.list(dangling.clone(), false).await.expect("list").is_empty());
        assert!(svc.prune(vec![]).await.expect("prune").deleted.is_empty(), "used volumes stay");
        let removed = svc.release(&c1, true).await.expect("release");
        assert_eq!(removed, vec![anon.name.clone()]);
        assert!(!Path::new(&anon.mountpoint).exists());
        let sized = svc.list(dangling, true).await.expect("list");
        assert_eq!(sized.iter().map(|v| (v.name.as_str(), v.size)).collect::<Vec<_>>(), vec![("keep", 5)]);
        // A plain prune keeps named volumes; all=true takes them.
        assert!(svc.prune(vec![]).await.expect("prune").deleted.is_empty());
        let all = vec![Filter { key: "all".into(), values: vec!["true".into()] }];
        let pruned = svc.prune(all).await.expect("prune all");
        assert_eq!((pruned.deleted, pruned.space_reclaimed), (vec!["keep".to_string()], 5));
        svc.remove("keep", true).await.expect("force ignores a missing volume");
        assert_eq!(kind(svc.remove("keep", false).await), Some(ErrorKind::NotFound));
    }
}
