//! File modes for Berth's state. Nothing under the data root is for other local
//! users: containers' environments (in their `config.json`), their logs, the
//! databases, and the setuid files inside image layers and volumes (the
//! CVE-2021-41091 class). As dockerd does with `/var/lib/docker`, the data root
//! is 0710 (root, and a group that may traverse it), each service's directory
//! 0700, and the files Berth writes there 0600. Modes are set exactly on every
//! start, so what an older Berth made with looser modes is fixed too.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::error::{Error, Result};

/// The data root: traversable by its group, listable by nobody else.
pub const DATA_ROOT: u32 = 0o710;
/// A service's state directory, the exec root, a container's bundle.
pub const PRIVATE_DIR: u32 = 0o700;
/// Databases, specs, logs, control sockets.
pub const PRIVATE_FILE: u32 = 0o600;

/// Creates `path` (and its parents) if needed and gives it exactly `mode`.
pub fn ensure_dir(path: &Path, mode: u32) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|e| Error::from(e).context(format!("create {}", path.display())))?;
    set_mode(path, mode)
}

/// Gives `path` exactly `mode`.
pub fn set_mode(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::from(e).context(format!("chmod {:o} {}", mode, path.display())))
}

/// Gives `path` exactly `mode` if it exists.
pub fn set_mode_if_exists(path: &Path, mode: u32) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => set_mode(path, mode),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::from(e).context(format!("stat {}", path.display()))),
    }
}

/// Writes `data` to a new or truncated file that only its owner can read,
/// whatever the umask (and tightening an older file's mode).
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(PRIVATE_FILE).open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(PRIVATE_FILE))?;
    f.write_all(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(p: &Path) -> u32 {
        std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777
    }

    #[test]
    fn modes_are_exact_and_loose_ones_are_tightened() {
        let t = tempfile::tempdir().expect("tmp");
        let dir = t.path().join("a/b");
        ensure_dir(&dir, PRIVATE_DIR).expect("ensure");
        assert_eq!(mode_of(&dir), 0o700);
        set_mode(&dir, 0o777).expect("loosen");
        ensure_dir(&dir, PRIVATE_DIR).expect("again");
        assert_eq!(mode_of(&dir), 0o700, "an older, looser mode is fixed");
        let f = dir.join("spec");
        std::fs::write(&f, b"old").expect("write");
        set_mode(&f, 0o644).expect("loosen");
        write_private(&f, b"new").expect("write_private");
        assert_eq!((mode_of(&f), std::fs::read(&f).expect("read")), (0o600, b"new".to_vec()));
        set_mode_if_exists(&dir.join("absent"), 0o600).expect("absent is fine");
    }
}
