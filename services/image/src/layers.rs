//! Unpacking a layer tarball into a directory that overlayfs can stack.
//!
//! Docker layers mark deletions with *whiteouts*: an entry `dir/.wh.name` means
//! "`dir/name` is gone", and `dir/.wh..wh..opq` means "hide everything the lower
//! layers have in `dir`". overlayfs spells the same things differently: a
//! character device 0/0 named `name`, and the xattr `trusted.overlay.opaque=y` on
//! `dir`. This module converts one into the other while unpacking.
//!
//! A layer is untrusted input. Every entry is placed strictly inside the target:
//! `..` components are refused, leading `/` is dropped, no entry is ever written
//! through a symlink (each parent is checked with lstat, and an existing entry is
//! replaced, not followed), and hard links must point inside the layer.

use std::ffi::CString;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use berth_core::{Error, Result};

/// Prefix of a whiteout entry's file name.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// File name of an opaque-directory marker.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Turns a tar entry path into a relative path with only normal components.
/// Returns `None` for the root itself (`./`, `/`), an error for `..`.
pub fn sanitize_entry_path(raw: &Path) -> Result<Option<PathBuf>> {
    let mut out = PathBuf::new();
    for comp in raw.components() {
        match comp {
            Component::Normal(c) => out.push(c),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => {
                return Err(Error::invalid(format!(
                    "invalid layer: entry {:?} escapes the layer with '..'",
                    raw.display()
                )));
            }
            Component::Prefix(_) => {
                return Err(Error::invalid(format!("invalid layer: entry {:?}", raw.display())));
            }
        }
    }
    Ok(if out.as_os_str().is_empty() { None } else { Some(out) })
}

/// What one entry becomes.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// A normal entry at this relative path.
    Entry(PathBuf),
    /// A whiteout: `path` must read as deleted in the merged view.
    Whiteout(PathBuf),
    /// An opaque marker for the directory at this path ("" for the layer root).
    Opaque(PathBuf),
    /// Nothing to do (the root entry, or whiteout metadata such as `.wh..wh.plnk`).
    Skip,
}

/// Classifies a tar entry by its path.
pub fn classify(raw: &Path) -> Result<Action> {
    let Some(rel) = sanitize_entry_path(raw)? else {
        return Ok(Action::Skip);
    };
    let name = rel.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let parent = rel.parent().map(Path::to_path_buf).unwrap_or_default();
    if name == OPAQUE_MARKER {
        return Ok(Action::Opaque(parent));
    }
    if let Some(target) = name.strip_prefix(WHITEOUT_PREFIX) {
        if target.starts_with(".wh.") || target.is_empty() {
            return Ok(Action::Skip);
        }
        return Ok(Action::Whiteout(parent.join(target)));
    }
    Ok(Action::Entry(rel))
}

/// Makes sure every parent of `rel` under `root` is a real directory (creating
/// missing ones) and none is a symlink, so nothing is written outside `root`.
fn ensure_parent(root: &Path, rel: &Path) -> Result<PathBuf> {
    let mut cur = root.to_path_buf();
    if let Some(parent) = rel.parent() {
        for comp in parent.components() {
            cur.push(comp);
            match fs::symlink_metadata(&cur) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(Error::invalid(format!(
                        "invalid layer: entry {:?} escapes the layer through the symlink {:?}",
                        rel.display(),
                        cur.strip_prefix(root).unwrap_or(&cur).display()
                    )));
                }
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    return Err(Error::invalid(format!(
                        "invalid layer: parent of {:?} is not a directory",
                        rel.display()
                    )));
                }
                Err(_) => {
                    fs::create_dir(&cur)?;
                    fs::set_permissions(&cur, fs::Permissions::from_mode(0o755))?;
                }
            }
        }
    }
    Ok(root.join(rel))
}

/// Removes whatever is at `path` (without following a symlink), if anything.
fn clear(path: &Path, keep_dir: bool) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            if !keep_dir {
                fs::remove_dir_all(path)?;
            }
        }
        Ok(_) => fs::remove_file(path)?,
        Err(_) => {}
    }
    Ok(())
}

fn cpath(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| Error::invalid("path contains a NUL byte"))
}

fn set_opaque(dir: &Path) -> Result<()> {
    let path = cpath(dir)?;
    let name = c"trusted.overlay.opaque";
    // SAFETY: both strings are NUL-terminated and outlive the call; the value is a
    // one-byte buffer whose length we pass. lsetxattr does not follow symlinks.
    let rc = unsafe { libc::lsetxattr(path.as_ptr(), name.as_ptr(), b"y".as_ptr().cast(), 1, 0) };
    if rc != 0 {
        return Err(Error::internal(format!("mark {} opaque: {}", dir.display(), std::io::Error::last_os_error())));
    }
    Ok(())
}

fn make_whiteout(path: &Path) -> Result<()> {
    use nix::sys::stat::{Mode, SFlag, makedev, mknod};
    mknod(path, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
        .map_err(|e| Error::internal(format!("create whiteout {}: {e}", path.display())))
}

fn make_node(path: &Path, header: &tar::Header) -> Result<()> {
    use nix::sys::stat::{Mode, SFlag, makedev, mknod};
    let kind = match header.entry_type() {
        tar::EntryType::Char => SFlag::S_IFCHR,
        tar::EntryType::Block => SFlag::S_IFBLK,
        _ => SFlag::S_IFIFO,
    };
    let major = header.device_major().ok().flatten().unwrap_or(0);
    let minor = header.device_minor().ok().flatten().unwrap_or(0);
    let mode = Mode::from_bits_truncate(header.mode().unwrap_or(0o644) & 0o7777);
    mknod(path, kind, mode, makedev(major.into(), minor.into()))
        .map_err(|e| Error::internal(format!("mknod {}: {e}", path.display())))?;
    let uid = header.uid().unwrap_or(0) as u32;
    let gid = header.gid().unwrap_or(0) as u32;
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    Ok(())
}

/// Unpacks the tar stream `input` into `dest` (which must exist and be empty),
/// converting whiteouts. Returns the layer's size: the bytes of its regular files.
pub fn unpack(input: impl Read, dest: &Path) -> Result<u64> {
    let mut archive = tar::Archive::new(input);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    let mut size = 0u64;
    let bad = |e: std::io::Error| Error::invalid(format!("invalid layer tar: {e}"));
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let raw = entry.path().map_err(bad)?.into_owned();
        match classify(&raw)? {
            Action::Skip => {}
            Action::Opaque(dir) => {
                let target = if dir.as_os_str().is_empty() {
                    dest.to_path_buf()
                } else {
                    let t = ensure_parent(dest, &dir)?;
                    if fs::symlink_metadata(&t).is_err() {
                        fs::create_dir(&t)?;
                    }
                    t
                };
                set_opaque(&target)?;
            }
            Action::Whiteout(rel) => {
                let target = ensure_parent(dest, &rel)?;
                clear(&target, false)?;
                make_whiteout(&target)?;
            }
            Action::Entry(rel) => {
                let target = ensure_parent(dest, &rel)?;
                let kind = entry.header().entry_type();
                clear(&target, kind.is_dir())?;
                match kind {
                    tar::EntryType::Link => {
                        let link = entry
                            .link_name()
                            .map_err(bad)?
                            .ok_or_else(|| {
                                Error::invalid(format!("invalid layer: hard link {:?} has no target", rel.display()))
                            })?
                            .into_owned();
                        let link_rel = sanitize_entry_path(&link)?.ok_or_else(|| {
                            Error::invalid(format!("invalid layer: hard link {:?} points at the root", rel.display()))
                        })?;
                        let source = ensure_parent(dest, &link_rel)?;
                        let meta = fs::symlink_metadata(&source).map_err(|_| {
                            Error::invalid(format!(
                                "invalid layer: hard link {:?} points at missing {:?}",
                                rel.display(),
                                link_rel.display()
                            ))
                        })?;
                        if meta.is_dir() {
                            return Err(Error::invalid(format!(
                                "invalid layer: hard link {:?} to a directory",
                                rel.display()
                            )));
                        }
                        fs::hard_link(&source, &target)?;
                    }
                    tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                        make_node(&target, entry.header())?;
                    }
                    tar::EntryType::Regular
                    | tar::EntryType::Continuous
                    | tar::EntryType::Directory
                    | tar::EntryType::Symlink
                    | tar::EntryType::GNUSparse => {
                        if kind.is_file() || kind == tar::EntryType::Continuous || kind == tar::EntryType::GNUSparse {
                            size += entry.header().size().unwrap_or(0);
                        }
                        entry
                            .unpack(&target)
                            .map_err(|e| Error::invalid(format!("invalid layer: unpack {:?}: {e}", rel.display())))?;
                    }
                    // PAX/GNU metadata records are consumed by the tar reader; anything else is ignored.
                    _ => {}
                }
            }
        }
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config { cases: 128, ..Default::default() })]
        // Robustness (issue 13): a layer is hostile. A valid layer with bytes
        // changed anywhere unpacks or is refused, never panics, and never
        // writes beside its directory.
        #[test]
        fn a_mangled_layer_stays_inside(flips in proptest::collection::vec((0usize..6144, proptest::num::u8::ANY), 1..24)) {
            let mut data = tar_of(|b| {
                file(b, "etc/hostname", b"box\n");
                symlink(b, "link", "../../outside");
                file(b, "dir/file", &[7u8; 900]);
                symlink(b, "abs", "/etc");
            });
            let len = data.len();
            for (at, byte) in flips {
                if let Some(b) = data.get_mut(at % len) {
                    *b ^= byte;
                }
            }
            let root = tempfile::tempdir().expect("tmp");
            let dest = root.path().join("layer");
            fs::create_dir(&dest).expect("mkdir");
            let _ = unpack(&data[..], &dest);
            let beside: Vec<_> = fs::read_dir(root.path()).expect("read").filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
            proptest::prop_assert_eq!(beside, vec![std::ffi::OsString::from("layer")]);
        }
    }

    #[test]
    fn sanitizes_paths() {
        assert_eq!(sanitize_entry_path(Path::new("./a/b")).ok().flatten(), Some(PathBuf::from("a/b")));
        assert_eq!(sanitize_entry_path(Path::new("/etc/passwd")).ok().flatten(), Some(PathBuf::from("etc/passwd")));
        assert_eq!(sanitize_entry_path(Path::new("./")).ok().flatten(), None);
        assert!(sanitize_entry_path(Path::new("a/../../etc")).is_err());
        assert!(sanitize_entry_path(Path::new("../x")).is_err());
    }

    #[test]
    fn classifies_whiteouts() {
        assert_eq!(classify(Path::new("etc/.wh.passwd")).ok(), Some(Action::Whiteout("etc/passwd".into())));
        assert_eq!(classify(Path::new("var/.wh..wh..opq")).ok(), Some(Action::Opaque("var".into())));
        assert_eq!(classify(Path::new(".wh..wh..opq")).ok(), Some(Action::Opaque("".into())));
        assert_eq!(classify(Path::new(".wh..wh.plnk/1")).ok(), Some(Action::Entry(".wh..wh.plnk/1".into())));
        assert_eq!(classify(Path::new("a/.wh..wh.plnk")).ok(), Some(Action::Skip));
        assert_eq!(classify(Path::new("bin/sh")).ok(), Some(Action::Entry("bin/sh".into())));
    }

    fn tar_of(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        b.into_inner().expect("tar")
    }

    fn header() -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
        let mut h = header();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, data).expect("append");
    }

    fn symlink(b: &mut tar::Builder<Vec<u8>>, path: &str, target: &str) {
        let mut h = header();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, path, target).expect("append");
    }

    #[test]
    fn unpacks_files_and_counts_size() {
        let dir = tempfile::tempdir().expect("tmp");
        let data = tar_of(|b| {
            file(b, "etc/hostname", b"box\n");
            file(b, "bin/tool", &[1u8; 1000]);
            symlink(b, "bin/link", "/bin/tool");
        });
        let size = unpack(&data[..], dir.path()).expect("unpack");
        assert_eq!(size, 1004);
        assert_eq!(fs::read(dir.path().join("etc/hostname")).ok().as_deref(), Some(&b"box\n"[..]));
        assert_eq!(fs::read_link(dir.path().join("bin/link")).ok(), Some(PathBuf::from("/bin/tool")));
    }

    #[test]
    fn refuses_to_write_through_a_symlink() {
        let dir = tempfile::tempdir().expect("tmp");
        let outside = tempfile::tempdir().expect("tmp");
        let target = outside.path().to_string_lossy().into_owned();
        let data = tar_of(|b| {
            symlink(b, "escape", &target);
            file(b, "escape/pwned", b"x");
        });
        let dest = dir.path().join("layer");
        fs::create_dir(&dest).expect("mkdir");
        let err = unpack(&data[..], &dest).expect_err("must fail");
        assert!(err.message().contains("symlink"), "{err}");
        assert!(!outside.path().join("pwned").exists());
    }

    #[test]
    fn replaces_a_symlink_instead_of_following_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let outside = tempfile::tempdir().expect("tmp");
        let victim = outside.path().join("victim");
        fs::write(&victim, b"safe").expect("write");
        let data = tar_of(|b| {
            symlink(b, "f", &victim.to_string_lossy());
            file(b, "f", b"overwritten");
        });
        unpack(&data[..], dir.path()).expect("unpack");
        assert_eq!(fs::read(&victim).ok().as_deref(), Some(&b"safe"[..]));
        assert_eq!(fs::read(dir.path().join("f")).ok().as_deref(), Some(&b"overwritten"[..]));
    }

    #[test]
    fn refuses_dotdot_entries() {
        // tar::Builder refuses to write "..", so write the header by hand.
        let mut h = tar::Header::new_old();
        h.set_size(1);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        let name = b"../escaped";
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        let mut data = h.as_bytes().to_vec();
        data.extend_from_slice(&[b'x'; 512]);
        data.extend_from_slice(&[0u8; 1024]);
        let dir = tempfile::tempdir().expect("tmp");
        let err = unpack(&data[..], dir.path()).expect_err("must fail");
        assert!(err.message().contains(".."), "{err}");
    }

    #[test]
    fn truncated_tar_is_an_error() {
        let data = tar_of(|b| file(b, "big", &[0u8; 4096]));
        let dir = tempfile::tempdir().expect("tmp");
        assert!(unpack(&data[..1024], dir.path()).is_err());
    }
}
