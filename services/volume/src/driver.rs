//! dockerd's `local` volume driver on the host: a volume is the directory
//! `<root>/volumes/<name>/_data`; with the options `type`, `device` and `o` it
//! is a mount on that directory instead (`type=tmpfs,device=tmpfs,o=size=64m`,
//! `type=none,o=bind,device=/srv/x`, or any filesystem mount(8) knows by type).

use std::path::{Path, PathBuf};

use berth_core::{Error, Result};
use berth_proto::types::v1::KeyValue;

/// The driver options the local driver knows.
const OPTION_KEYS: [&str; 4] = ["type", "device", "o", "size"];

/// A volume's mount, from its options; `None` for a plain directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    /// The filesystem type (`none` for a bind mount).
    pub fstype: String,
    /// What is mounted: a device, a host path for binds, `tmpfs`.
    pub device: String,
    /// Mount options (`o`), comma-separated.
    pub options: String,
}

impl MountSpec {
    /// Whether this is a bind mount of a host path.
    pub fn is_bind(&self) -> bool {
        self.options.split(',').any(|o| o == "bind" || o == "rbind")
    }
}

fn opt<'a>(options: &'a [KeyValue], key: &str) -> Option<&'a str> {
    options.iter().find(|kv| kv.key == key).map(|kv| kv.value.as_str())
}

/// Checks a volume's driver options as dockerd's local driver does, and
/// returns its mount, if any.
pub fn parse_options(options: &[KeyValue]) -> Result<Option<MountSpec>> {
    if let Some(kv) = options.iter().find(|kv| !OPTION_KEYS.contains(&kv.key.as_str())) {
        return Err(Error::invalid(format!("invalid option: \"{}\"", kv.key)));
    }
    if opt(options, "size").is_some() {
        return Err(Error::invalid("quota size requested but no quota support"));
    }
    let (fstype, device, o) = (opt(options, "type"), opt(options, "device"), opt(options, "o").unwrap_or(""));
    let Some(fstype) = fstype.filter(|t| !t.is_empty()) else {
        if device.is_some() || !o.is_empty() {
            return Err(Error::invalid("missing required option: \"type\""));
        }
        return Ok(None);
    };
    let device =
        device.filter(|d| !d.is_empty()).ok_or_else(|| Error::invalid("missing required option: \"device\""))?;
    let spec = MountSpec { fstype: fstype.to_string(), device: device.to_string(), options: o.to_string() };
    if spec.is_bind() && !Path::new(device).is_absolute() {
        return Err(Error::invalid(format!("invalid bind device {device:?}: must be an absolute path")));
    }
    Ok(Some(spec))
}

/// The mount points of this process's mount namespace (`/proc/self/mountinfo`,
/// field 5, with its octal escapes undone).
fn mount_points() -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines().filter_map(|l| l.split(' ').nth(4)).map(|p| PathBuf::from(unescape(p))).collect()
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether something is mounted on `path`.
pub fn is_mounted(path: &Path) -> bool {
    mount_points().iter().any(|m| m == path)
}

/// Mounts a volume's filesystem on its `_data` directory unless it is already.
pub fn mount(spec: &MountSpec, data: &Path) -> Result<()> {
    use nix::mount::MsFlags;
    if is_mounted(data) {
        return Ok(());
    }
    let mut flags = MsFlags::empty();
    let mut rest = Vec::new();
    for o in spec.options.split(',').filter(|o| !o.is_empty()) {
        match o {
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            "ro" => flags |= MsFlags::MS_RDONLY,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "rw" => {}
            other => rest.push(other),
        }
    }
    let data_opts = rest.join(",");
    let fstype = if flags.contains(MsFlags::MS_BIND) { None } else { Some(spec.fstype.as_str()) };
    nix::mount::mount(
        Some(spec.device.as_str()),
        data,
        fstype,
        flags,
        (!data_opts.is_empty()).then_some(data_opts.as_str()),
    )
    .map_err(|e| Error::invalid(format!("error while mounting volume '{}': {e}", data.display())))
}

/// Unmounts a volume's filesystem if mounted; after it nothing is mounted there.
pub fn unmount(data: &Path) -> Result<()> {
    if !is_mounted(data) {
        return Ok(());
    }
    nix::mount::umount2(data, nix::mount::MntFlags::MNT_DETACH)
        .map_err(|e| Error::conflict(format!("unmount {}: {e}", data.display())))?;
    if is_mounted(data) {
        return Err(Error::conflict(format!("{} is still mounted", data.display())));
    }
    Ok(())
}

/// Bytes used under `dir`, not following symlinks nor crossing into other
/// filesystems' mounts below it.
pub fn size_of(dir: &Path) -> u64 {
    berth_core::disk::dir_size(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(pairs: &[(&str, &str)]) -> Vec<KeyValue> {
        pairs.iter().map(|(k, v)| KeyValue { key: k.to_string(), value: v.to_string() }).collect()
    }

    #[test]
    fn options_like_the_local_driver() {
        assert_eq!(parse_options(&[]).expect("none"), None);
        let tmpfs = parse_options(&kv(&[("type", "tmpfs"), ("device", "tmpfs"), ("o", "size=1m")])).expect("tmpfs");
        assert_eq!(tmpfs.as_ref().map(|m| m.fstype.as_str()), Some("tmpfs"));
        let bind = parse_options(&kv(&[("type", "none"), ("o", "bind"), ("device", "/srv")])).expect("bind");
        assert!(bind.is_some_and(|b| b.is_bind()));
        let err = |o: &[(&str, &str)]| parse_options(&kv(o)).err().map(|e| e.message().to_string());
        assert_eq!(err(&[("colour", "red")]).as_deref(), Some("invalid option: \"colour\""));
        assert!(err(&[("device", "/x")]).is_some_and(|m| m.contains("\"type\"")));
        assert!(err(&[("type", "tmpfs")]).is_some_and(|m| m.contains("\"device\"")));
        assert!(err(&[("type", "none"), ("o", "bind"), ("device", "rel/path")]).is_some());
    }

    #[test]
    fn mountinfo_paths_are_unescaped() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape("/end\\04"), "/end\\04");
        assert!(is_mounted(Path::new("/proc")));
        assert!(!is_mounted(Path::new("/definitely/not/mounted")));
    }

    #[test]
    fn sizes_do_not_follow_symlinks() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("a"), [0u8; 1000]).expect("a");
        std::fs::create_dir(dir.path().join("sub")).expect("sub");
        std::fs::write(dir.path().join("sub/b"), [0u8; 24]).expect("b");
        std::os::unix::fs::symlink("/usr", dir.path().join("link")).expect("link");
        let size = size_of(dir.path());
        assert!((1024..1100).contains(&size), "{size}");
    }
}
