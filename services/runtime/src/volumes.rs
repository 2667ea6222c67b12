//! A container's volumes and binds: what `-v`, `--mount`, the image's `VOLUME`
//! and `--volumes-from` ask for, resolved once at create into Docker's
//! MountPoint list (kept with the container), the references the volume
//! service keeps for it, and copy-up at start.
//!
//! Precedence by destination, as dockerd: the config's anonymous volumes
//! (`-v /path`, the image's `VOLUME`), then `--volumes-from`, then `Binds`
//! (`-v src:dst`), then `Mounts` (`--mount`); a later one replaces an earlier
//! one at the same path, and only what is left is created. Two binds or mounts
//! at one path are an error.
//!
//! Copy-up: when an empty volume (not `nocopy`) is mounted over a path that has
//! content in the image, that content (owners, modes, xattrs, symlinks) is
//! copied into it before the container starts, read from a read-only overlay of
//! the container's layers, as dockerd does.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_core::{Error, Result};
use berth_models::container::{ContainerConfig, HostConfig};

pub use berth_models::container::MountPoint;

/// A mount the create asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Wanted {
    /// A volume to use (or create), with how it is mounted.
    Volume(MountPoint, berth_volume_api::pb::CreateVolumeRequest),
    /// A bind of a host path.
    Bind(MountPoint),
}

impl Wanted {
    fn destination(&self) -> &str {
        match self {
            Wanted::Volume(mp, _) | Wanted::Bind(mp) => &mp.destination,
        }
    }
}

const PROPAGATIONS: [&str; 6] = ["private", "rprivate", "shared", "rshared", "slave", "rslave"];

/// The parts of a `-v` mode (`ro,z,nocopy`): writable, no-copy, propagation.
fn parse_mode(mode: &str) -> Result<(bool, bool, String)> {
    let (mut rw, mut nocopy, mut propagation) = (true, false, String::new());
    for m in mode.split(',').filter(|m| !m.is_empty()) {
        match m {
            "ro" => rw = false,
            "rw" => rw = true,
            "nocopy" => nocopy = true,
            "z" | "Z" | "consistent" | "cached" | "delegated" => {}
            p if PROPAGATIONS.contains(&p) => propagation = p.to_string(),
            other => return Err(Error::invalid(format!("invalid mode: {other}"))),
        }
    }
    Ok((rw, nocopy, propagation))
}

fn check_destination(spec: &str, typ: &str, dst: &str) -> Result<()> {
    if !dst.starts_with('/') {
        return Err(Error::invalid(format!(
            "invalid volume specification: '{spec}': invalid mount config for type \"{typ}\": invalid mount path: \
             '{dst}' mount path must be absolute"
        )));
    }
    if Path::new(dst).components().all(|c| matches!(c, std::path::Component::RootDir)) {
        return Err(Error::invalid(format!(
            "invalid volume specification: '{spec}': invalid mount config for type \"{typ}\": invalid specification: \
             destination can't be '/'"
        )));
    }
    Ok(())
}

fn clean(dst: &str) -> String {
    let p: PathBuf = Path::new(dst).components().collect();
    p.to_string_lossy().into_owned()
}

/// Labels or driver options as the volume service's key/value pairs.
fn pairs(map: Option<&BTreeMap<String, String>>) -> Vec<berth_proto::types::v1::KeyValue> {
    map.map(berth_proto::types::v1::kv::from_map).unwrap_or_default()
}

fn volume(
    name: &str,
    dst: &str,
    rw: bool,
    mode: &str,
    no_copy: bool,
) -> (MountPoint, berth_volume_api::pb::CreateVolumeRequest) {
    let mp = MountPoint {
        typ: "volume".into(),
        name: name.into(),
        destination: clean(dst),
        driver: "local".into(),
        mode: mode.into(),
        rw,
        no_copy,
        ..Default::default()
    };
    let req = berth_volume_api::pb::CreateVolumeRequest {
        name: name.into(),
        anonymous: name.is_empty(),
        ..Default::default()
    };
    (mp, req)
}

/// The mounts a create asks for, by destination, with `from` the mount points
/// of the `--volumes-from` containers (already given their modes).
pub fn plan(config: &ContainerConfig, host_config: &HostConfig, from: Vec<MountPoint>) -> Result<Vec<Wanted>> {
    let mut by_dst: BTreeMap<String, Wanted> = BTreeMap::new();
    for dst in config.volume_paths() {
        check_destination(dst, "volume", dst)?;
        let (mp, req) = volume("", dst, true, "", false);
        by_dst.insert(mp.destination.clone(), Wanted::Volume(mp, req));
    }
    for mp in from {
        let w = if mp.typ == "volume" {
            let req = berth_volume_api::pb::CreateVolumeRequest { name: mp.name.clone(), ..Default::default() };
            Wanted::Volume(mp, req)
        } else {
            Wanted::Bind(mp)
        };
        by_dst.insert(w.destination().to_string(), w);
    }
    let mut explicit: Vec<Wanted> = Vec::new();
    for spec in host_config.binds() {
        let parts: Vec<&str> = spec.split(':').collect();
        let (src, dst, mode) = match parts.as_slice() {
            [src, dst] => (*src, *dst, ""),
            [src, dst, mode] => (*src, *dst, *mode),
            _ => return Err(Error::invalid(format!("invalid volume specification: '{spec}'"))),
        };
        if src.is_empty() {
            return Err(Error::invalid(format!("invalid volume specification: '{spec}'")));
        }
        let (rw, nocopy, propagation) = parse_mode(mode)?;
        if src.starts_with('/') {
            check_destination(spec, "bind", dst)?;
            if nocopy {
                return Err(Error::invalid(format!("invalid volume specification: '{spec}': nocopy is for volumes")));
            }
            explicit.push(Wanted::Bind(MountPoint {
                typ: "bind".into(),
                source: src.to_string(),
                destination: clean(dst),
                mode: mode.into(),
                rw,
                propagation: if propagation.is_empty() { "rprivate".into() } else { propagation },
                ..Default::default()
            }));
        } else {
            check_destination(spec, "volume", dst)?;
            let (mp, req) = volume(src, dst, rw, if mode.is_empty() { "z" } else { mode }, nocopy);
            explicit.push(Wanted::Volume(mp, req));
        }
    }
    for m in host_config.mounts() {
        let target = m.target.as_str();
        if m.kind == "tmpfs" {
            continue;
        }
        let rw = !m.read_only;
        match m.kind.as_str() {
            "volume" => {
                check_destination(target, "volume", target)?;
                let o = m.volume_options.clone().unwrap_or_default();
                let (mut mp, mut req) = volume(&m.source, target, rw, "", o.no_copy);
                if !o.subpath.is_empty() {
                    let local = Path::new(&o.subpath)
                        .components()
                        .all(|c| matches!(c, std::path::Component::Normal(_) | std::path::Component::CurDir));
                    if !local {
                        return Err(Error::invalid(
                            "invalid mount config for type \"volume\": subpath must be a relative path within the volume",
                        ));
                    }
                    // The image's files are not copied into a part of a volume.
                    mp.subpath = o.subpath.clone();
                    mp.no_copy = true;
                }
                req.labels = pairs(o.labels.as_ref());
                let driver = o.driver_config.unwrap_or_default();
                req.driver = driver.name;
                req.options = pairs(driver.options.as_ref());
                explicit.push(Wanted::Volume(mp, req));
            }
            "bind" => {
                check_destination(target, "bind", target)?;
                let src = m.source.as_str();
                if !Path::new(src).exists() {
                    return Err(Error::invalid(format!(
                        "invalid mount config for type \"bind\": bind source path does not exist: {src}"
                    )));
                }
                let propagation = m
                    .bind_options
                    .as_ref()
                    .map(|b| b.propagation.as_str())
                    .filter(|p| !p.is_empty())
                    .unwrap_or("rprivate");
                explicit.push(Wanted::Bind(MountPoint {
                    typ: "bind".into(),
                    source: src.to_string(),
                    destination: clean(target),
                    rw,
                    propagation: propagation.to_string(),
                    non_recursive: m.bind_options.as_ref().is_some_and(|b| b.non_recursive),
                    ..Default::default()
                }));
            }
            other => return Err(Error::not_implemented(format!("mount type {other:?} is not supported"))),
        }
    }
    let mut seen = std::collections::HashSet::new();
    for w in explicit {
        if !seen.insert(w.destination().to_string()) {
            return Err(Error::invalid(format!("Duplicate mount point: {}", w.destination())));
        }
        by_dst.insert(w.destination().to_string(), w);
    }
    // A tmpfs at a path takes it: no volume is made there (an image's VOLUME
    // under `--tmpfs` stays a tmpfs, as on dockerd).
    let tmpfs: Vec<String> = host_config
        .mounts()
        .iter()
        .filter(|m| m.kind == "tmpfs")
        .map(|m| clean(&m.target))
        .chain(host_config.tmpfs.iter().flatten().map(|(t, _)| clean(t)))
        .collect();
    by_dst.retain(|dst, _| !tmpfs.contains(dst));
    Ok(by_dst.into_values().collect())
}

/// `--volumes-from` entries: `container[:ro|:rw]`.
pub fn parse_volumes_from(entry: &str) -> Result<(&str, Option<bool>)> {
    match entry.split_once(':') {
        None => Ok((entry, None)),
        Some((c, "ro")) => Ok((c, Some(false))),
        Some((c, "rw")) => Ok((c, Some(true))),
        Some((_, mode)) => Err(Error::invalid(format!("invalid mode for volumes-from: {mode}"))),
    }
}

/// A container's stored mount points.
pub fn stored(mounts: &[u8]) -> Vec<MountPoint> {
    if mounts.is_empty() {
        return vec![];
    }
    serde_json::from_slice(mounts).unwrap_or_default()
}

fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).map(|mut d| d.next().is_none()).unwrap_or(false)
}

/// Whether any of `dirs` (a container's upper dir and its image's layers) has
/// something at `dest`: the cheap test before an overlay is mounted for copy-up.
fn present_in(dirs: &[PathBuf], dest: &str) -> bool {
    let rel = dest.trim_start_matches('/');
    dirs.iter().any(|d| d.join(rel).symlink_metadata().is_ok())
}

/// Copy-up into `volume` (empty) from what the container's image has at
/// `dest`: `lower` are the container's upper dir and its image's layers, top
/// first. Mounts them read-only at `scratch` for the copy, and unmounts.
pub fn copy_up(lower: &[PathBuf], dest: &str, volume: &Path, scratch: &Path) -> Result<bool> {
    if !is_empty_dir(volume) || !present_in(lower, dest) {
        return Ok(false);
    }
    // A read-only overlay needs two lower layers: the upper dir and at least one layer.
    if lower.len() < 2 {
        return Ok(false);
    }
    std::fs::create_dir_all(scratch)?;
    let lowerdir = lower.iter().map(|p| p.to_string_lossy().into_owned()).collect::<Vec<_>>().join(":");
    nix::mount::mount(
        Some("overlay"),
        scratch,
        Some("overlay"),
        nix::mount::MsFlags::MS_RDONLY,
        Some(format!("lowerdir={lowerdir}").as_str()),
    )
    .map_err(|e| Error::internal(format!("mount the image for copy-up: {e}")))?;
    let result = (|| -> Result<bool> {
        let src = berth_shim::secure_join(scratch, Path::new(dest))?;
        let m = match src.symlink_metadata() {
            Ok(m) if m.is_dir() => m,
            _ => return Ok(false),
        };
        copy_tree(&src, volume)?;
        // The volume's root takes the owner and mode of the image's directory.
        std::os::unix::fs::chown(volume, Some(m.uid()), Some(m.gid()))?;
        std::fs::set_permissions(volume, std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
        Ok(true)
    })();
    let _ = nix::mount::umount2(scratch, nix::mount::MntFlags::MNT_DETACH);
    let _ = std::fs::remove_dir(scratch);
    result.map_err(|e| e.context(format!("copy the image's {dest} into its volume")))
}

fn copy_xattrs(src: &Path, dst: &Path) {
    let Ok(names) = xattr::list(src) else { return };
    for name in names {
        // Overlay's own bookkeeping stays behind.
        if name.to_string_lossy().starts_with("trusted.overlay.") {
            continue;
        }
        if let Ok(Some(value)) = xattr::get(src, &name) {
            let _ = xattr::set(dst, &name, &value);
        }
    }
}

/// Copies the tree under `src` into the existing directory `dst`: directories,
/// regular files, symlinks, with owners, modes and xattrs. New entries are made
/// exclusively (never through something already there), so a symlink placed in
/// the volume meanwhile cannot send a write elsewhere.
pub fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let (from, to) = (entry.path(), dst.join(entry.file_name()));
        let m = from.symlink_metadata()?;
        let ft = m.file_type();
        if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)?;
            std::os::unix::fs::lchown(&to, Some(m.uid()), Some(m.gid()))?;
            continue;
        }
        let file = if ft.is_dir() {
            std::fs::create_dir(&to)?;
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits() | nix::fcntl::OFlag::O_DIRECTORY.bits())
                .open(&to)?
        } else if ft.is_file() {
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
                .open(&to)?;
            std::io::copy(&mut std::fs::File::open(&from)?, &mut out)?;
            out
        } else {
            // Devices, fifos and sockets have no place in a volume's seed.
            continue;
        };
        std::os::unix::fs::fchown(&file, Some(m.uid()), Some(m.gid()))?;
        file.set_permissions(std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
        copy_xattrs(&from, &to);
        if ft.is_dir() {
            copy_tree(&from, &to)?;
        }
    }
    Ok(())
}

impl crate::service::LocalRuntime {
    /// The mount points `HostConfig.VolumesFrom` brings, with their modes.
    pub(crate) async fn volumes_from(&self, host_config: &HostConfig) -> Result<Vec<MountPoint>> {
        let mut out = Vec::new();
        for entry in host_config.volumes_from.iter().flatten() {
            let (reference, rw) = parse_volumes_from(entry)?;
            // A 400, not dockerd's 404: on a 404 the docker CLI goes to pull the image.
            let other = self.resolve(reference).await.map_err(|e| {
                if e.kind() == berth_core::ErrorKind::NotFound {
                    Error::invalid(format!("No such container: {reference}"))
                } else {
                    e
                }
            })?;
            for mut mp in stored(&other.mounts) {
                if let Some(rw) = rw {
                    mp.rw = rw;
                    mp.mode = if rw { "rw".into() } else { "ro".into() };
                }
                out.push(mp);
            }
        }
        Ok(out)
    }

    /// Takes a reference on every volume of `wanted` for container `id`
    /// (creating what is missing) and returns the resolved mount points. On a
    /// failure the references taken so far are dropped again.
    pub(crate) async fn use_volumes(&self, id: &str, wanted: Vec<Wanted>) -> Result<Vec<MountPoint>> {
        let mut out = Vec::new();
        for w in wanted {
            match w {
                Wanted::Bind(mp) => out.push(mp),
                Wanted::Volume(mut mp, req) => {
                    let Some(volumes) = &self.volumes else {
                        return Err(Error::unavailable("volumes need the volume service"));
                    };
                    match volumes.use_volume(req, id).await {
                        Ok(v) => {
                            mp.name = v.name;
                            mp.source = v.mountpoint;
                            out.push(mp);
                        }
                        Err(e) => {
                            self.release_volumes(id, true).await;
                            return Err(e);
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Drops a container's references on its volumes (its anonymous volumes go
    /// too with `remove_anonymous`: `rm -v`, `--rm`). Logged, never fatal: the
    /// container is gone either way.
    pub(crate) async fn release_volumes(&self, id: &str, remove_anonymous: bool) {
        release(self.volumes.as_ref(), id, remove_anonymous).await;
    }

    /// The mount points of a container about to start: its volumes mounted
    /// (after a reboot a tmpfs volume needs it again) and, where empty, filled
    /// from the image (copy-up). `lower` is the container's upper dir and its
    /// image's layers, top first.
    pub(crate) async fn prepare_mounts(
        &self,
        c: &crate::pb::Container,
        lower: Vec<PathBuf>,
    ) -> Result<Vec<MountPoint>> {
        let mounts = stored(&c.mounts);
        create_missing_bind_sources(&crate::record::host_config(c)?)?;
        for (i, mp) in mounts.iter().enumerate().filter(|(_, m)| m.typ == "volume") {
            let Some(volumes) = &self.volumes else {
                return Err(Error::unavailable("volumes need the volume service"));
            };
            let req = berth_volume_api::pb::CreateVolumeRequest { name: mp.name.clone(), ..Default::default() };
            volumes.use_volume(req, &c.id).await?;
            if mp.no_copy {
                continue;
            }
            let (lower, dest, volume) = (lower.clone(), mp.destination.clone(), PathBuf::from(&mp.source));
            let scratch = self.host.bundle(&c.id).join(format!("copyup{i}"));
            tokio::task::spawn_blocking(move || copy_up(&lower, &dest, &volume, &scratch))
                .await
                .map_err(|e| Error::internal(e.to_string()))??;
        }
        Ok(mounts)
    }
}

/// The host directories `-v /host/path:/path` names that are missing, made
/// at each start (mode 0755), as dockerd makes them; a `--mount` bind's
/// missing source is an error instead (checked at create).
fn create_missing_bind_sources(host_config: &HostConfig) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    for src in host_config.binds().iter().filter_map(|b| b.split(':').next()).filter(|s| s.starts_with('/')) {
        if std::fs::symlink_metadata(src).is_err() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(src)
                .map_err(|e| Error::from(e).context(format!("create the bind source {src}")))?;
        }
    }
    Ok(())
}

/// Drops a container's volume references (see `release_volumes`); for the
/// exit watcher, which holds no runtime.
pub(crate) async fn release(
    volumes: Option<&std::sync::Arc<dyn berth_volume_api::VolumeApi>>,
    id: &str,
    remove_anonymous: bool,
) {
    if let Some(v) = volumes {
        match v.release(id, remove_anonymous).await {
            Ok(removed) if !removed.is_empty() => tracing::info!(id = %id, ?removed, "anonymous volumes removed"),
            Ok(_) => {}
            Err(e) => tracing::warn!(id = %id, error = %e, "release the container's volumes"),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_tmpfs_takes_the_place_of_an_image_volume() {
        let config: ContainerConfig =
            serde_json::from_value(serde_json::json!({"Volumes": {"/data": {}, "/cache": {}, "/keep": {}}}))
                .expect("config");
        let hc: HostConfig = serde_json::from_value(serde_json::json!({
            "Tmpfs": {"/data": "size=1m"},
            "Mounts": [{"Type": "tmpfs", "Target": "/cache/"}]
        }))
        .expect("host config");
        let wanted = plan(&config, &hc, vec![]).expect("plan");
        let dests: Vec<&str> = wanted.iter().map(Wanted::destination).collect();
        assert_eq!(dests, ["/keep"]);
    }
    use super::*;
    use serde_json::{Value, json};

    fn dsts(p: &[Wanted]) -> Vec<(&str, &str)> {
        p.iter()
            .map(|w| match w {
                Wanted::Volume(mp, req) => {
                    (mp.destination.as_str(), if req.name.is_empty() { "anon" } else { req.name.as_str() })
                }
                Wanted::Bind(mp) => (mp.destination.as_str(), mp.source.as_str()),
            })
            .collect()
    }

    fn cfg(v: Value) -> ContainerConfig {
        serde_json::from_value(v).expect("config")
    }

    fn host(v: Value) -> HostConfig {
        serde_json::from_value(v).expect("host config")
    }

    #[test]
    fn precedence_like_dockerd() {
        let config = json!({"Volumes": {"/data": {}, "/cache": {}, "/logs/": {}}});
        let from = vec![MountPoint {
            typ: "volume".into(),
            name: "shared".into(),
            destination: "/cache".into(),
            rw: true,
            ..Default::default()
        }];
        let hc = json!({
            "Binds": ["named:/data:ro,nocopy", "/srv:/srv:rslave"],
            "Mounts": [{"Type": "volume", "Target": "/m", "VolumeOptions": {"NoCopy": true, "Labels": {"a": "b"}}},
                       {"Type": "tmpfs", "Target": "/run"}],
        });
        let p = plan(&cfg(config), &host(hc), from).expect("plan");
        assert_eq!(
            dsts(&p),
            vec![("/cache", "shared"), ("/data", "named"), ("/logs", "anon"), ("/m", "anon"), ("/srv", "/srv")]
        );
        let Wanted::Volume(data, req) = &p[1] else { panic!("volume") };
        assert!(!data.rw && data.no_copy && !req.anonymous && data.mode == "ro,nocopy");
        let Wanted::Volume(m, req) = &p[3] else { panic!("volume") };
        assert!(m.no_copy && req.anonymous && req.labels.len() == 1);
        let Wanted::Bind(srv) = &p[4] else { panic!("bind") };
        assert_eq!((srv.propagation.as_str(), srv.rw), ("rslave", true));
    }

    #[test]
    fn bad_specifications() {
        let err = |hc: Value| {
            plan(&cfg(json!({})), &host(hc), vec![]).err().map(|e| e.message().to_string()).unwrap_or_default()
        };
        assert!(err(json!({"Binds": ["v:/"]})).contains("destination can't be '/'"));
        assert!(err(json!({"Binds": ["v:rel"]})).contains("must be absolute"));
        assert!(err(json!({"Binds": ["v:/a:bogus"]})).contains("invalid mode: bogus"));
        assert!(err(json!({"Binds": ["a:b:c:d"]})).contains("invalid volume specification"));
        assert!(err(json!({"Binds": ["v:/a", "w:/a"]})).contains("Duplicate mount point: /a"));
        assert!(
            err(json!({"Mounts": [{"Type": "bind", "Source": "/definitely/not/here", "Target": "/x"}]}))
                .contains("bind source path does not exist")
        );
        assert!(plan(&cfg(json!({"Volumes": {"rel": {}}})), &host(json!({})), vec![]).is_err());
        assert_eq!(parse_volumes_from("c1:ro").ok(), Some(("c1", Some(false))));
        assert!(parse_volumes_from("c1:zz").is_err());
    }

    #[test]
    fn copies_owners_modes_symlinks_and_xattrs() {
        let dir = tempfile::tempdir().expect("tmp");
        let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
        std::fs::create_dir_all(src.join("sub")).expect("src");
        std::fs::create_dir(&dst).expect("dst");
        std::fs::write(src.join("sub/f"), b"data").expect("f");
        std::os::unix::fs::chown(src.join("sub/f"), Some(1234), Some(5678)).expect("chown");
        std::fs::set_permissions(src.join("sub"), std::fs::Permissions::from_mode(0o750)).expect("chmod");
        std::os::unix::fs::symlink("/etc/passwd", src.join("link")).expect("symlink");
        let _ = xattr::set(src.join("sub/f"), "user.berth", b"yes");
        copy_tree(&src, &dst).expect("copy");
        let f = dst.join("sub/f").symlink_metadata().expect("f");
        assert_eq!((f.uid(), f.gid()), (1234, 5678));
        assert_eq!(std::fs::read(dst.join("sub/f")).expect("read"), b"data");
        assert_eq!(dst.join("sub").symlink_metadata().expect("sub").mode() & 0o777, 0o750);
        assert_eq!(std::fs::read_link(dst.join("link")).expect("link"), PathBuf::from("/etc/passwd"));
        if xattr::get(src.join("sub/f"), "user.berth").ok().flatten().is_some() {
            assert_eq!(xattr::get(dst.join("sub/f"), "user.berth").ok().flatten(), Some(b"yes".to_vec()));
        }
        // Nothing is written through what is already there.
        assert!(copy_tree(&src, &dst).is_err(), "exclusive creation");
    }
}
