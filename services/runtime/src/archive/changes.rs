//! `docker diff`: what a container changed, read from its overlay's writable
//! layer (Berth's own directories, not the container's, so plain paths are
//! safe here). A whiteout (a 0:0 character device) is a deletion; anything
//! else in the layer is a change when the image's layers have the path, an
//! addition when they do not. Docker's kinds: 0 changed, 1 added, 2 deleted.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use berth_runtime_api::pb;

/// Docker's change kinds.
pub const MODIFIED: i32 = 0;
pub const ADDED: i32 = 1;
pub const DELETED: i32 = 2;

fn is_whiteout(m: &std::fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

/// Whether the image's layers (top first) have `rel`: the first layer that
/// says anything (the file, or a whiteout of it) decides.
fn in_layers(lowers: &[PathBuf], rel: &Path) -> bool {
    for layer in lowers {
        match std::fs::symlink_metadata(layer.join(rel)) {
            Ok(m) => return !is_whiteout(&m),
            Err(_) => continue,
        }
    }
    false
}

/// The changes in `upper` over `lowers` (top first), sorted by path.
pub fn list(upper: &Path, lowers: &[PathBuf]) -> Vec<pb::Change> {
    let mut out = Vec::new();
    walk(upper, Path::new(""), lowers, &mut out);
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

fn walk(upper: &Path, rel: &Path, lowers: &[PathBuf], out: &mut Vec<pb::Change>) {
    let Ok(entries) = std::fs::read_dir(upper.join(rel)) else { return };
    for entry in entries.filter_map(|e| e.ok()) {
        let child = rel.join(entry.file_name());
        let Ok(meta) = std::fs::symlink_metadata(upper.join(&child)) else { continue };
        let path = format!("/{}", child.display());
        if is_whiteout(&meta) {
            out.push(pb::Change { path, kind: DELETED });
            continue;
        }
        let kind = if in_layers(lowers, &child) { MODIFIED } else { ADDED };
        out.push(pb::Change { path, kind });
        if meta.is_dir() {
            walk(upper, &child, lowers, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whiteouts_are_deletions_and_the_layers_tell_changes_from_additions() {
        let dir = tempfile::tempdir().expect("tmp");
        let (upper, low1, low2) = (dir.path().join("upper"), dir.path().join("l1"), dir.path().join("l2"));
        for d in [upper.join("etc"), upper.join("tmp/new"), low1.join("etc"), low2.join("bin"), low2.join("tmp")] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        std::fs::write(low1.join("etc/hosts"), b"").expect("lower");
        std::fs::write(low2.join("bin/ls"), b"").expect("lower");
        std::fs::write(upper.join("etc/hosts"), b"changed").expect("upper");
        std::fs::write(upper.join("tmp/new/file"), b"added").expect("upper");
        std::fs::create_dir_all(upper.join("bin")).expect("bin");
        nix::sys::stat::mknod(&upper.join("bin/ls"), nix::sys::stat::SFlag::S_IFCHR, nix::sys::stat::Mode::empty(), 0)
            .expect("whiteout");
        let got: Vec<(String, i32)> = list(&upper, &[low1, low2]).into_iter().map(|c| (c.path, c.kind)).collect();
        let want = [
            ("/bin", MODIFIED),
            ("/bin/ls", DELETED),
            ("/etc", MODIFIED),
            ("/etc/hosts", MODIFIED),
            ("/tmp", MODIFIED),
            ("/tmp/new", ADDED),
            ("/tmp/new/file", ADDED),
        ];
        assert_eq!(got, want.iter().map(|(p, k)| (p.to_string(), *k)).collect::<Vec<_>>());
        assert!(list(&dir.path().join("absent"), &[]).is_empty(), "a container never started changed nothing");
    }
}
