//! Disk usage of directories, as dockerd counts it for `docker system df`,
//! volume sizes and a container's `SizeRw`.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The apparent size of every file under `dir`, on `dir`'s own filesystem
/// only (a mount below it is not counted), symlinks not followed.
pub fn dir_size(dir: &Path) -> u64 {
    fn walk(dir: &Path, dev: u64, total: &mut u64) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let Ok(m) = e.path().symlink_metadata() else { continue };
            if m.is_dir() {
                if m.dev() == dev {
                    walk(&e.path(), dev, total);
                }
            } else {
                *total += m.len();
            }
        }
    }
    let mut total = 0;
    if let Ok(m) = dir.symlink_metadata() {
        walk(dir, m.dev(), &mut total);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_add_up_without_following_links() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(dir.path().join("a/b")).expect("mkdir");
        std::fs::write(dir.path().join("a/one"), vec![0u8; 1000]).expect("write");
        std::fs::write(dir.path().join("a/b/two"), vec![0u8; 24]).expect("write");
        std::os::unix::fs::symlink("/usr", dir.path().join("link")).expect("symlink");
        let link_len = std::fs::symlink_metadata(dir.path().join("link")).expect("lstat").len();
        assert_eq!(dir_size(dir.path()), 1024 + link_len);
        assert_eq!(dir_size(&dir.path().join("missing")), 0);
    }
}
