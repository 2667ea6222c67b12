//! A container's files, read and written from the host without ever leaving
//! the container's root: the runtime holds a directory descriptor of the root
//! (`/proc/PID/root` of a running container, or a helper's mount), resolves
//! every path the user names with `openat2(RESOLVE_IN_ROOT)` (symlinks, `..`
//! included, resolve as in the container), and then works on the last
//! element through its parent's descriptor with `*at` calls that do not
//! follow symlinks. A container that swaps a directory for a symlink to `/`
//! while a copy runs (the CVE-2018-15664 class) only redirects the copy to a
//! place in its own tree, never the host's: there is no check-then-use of a
//! path.
//!
//! [`stat`], [`pack`] and [`unpack`] are `docker cp`'s three operations, with
//! dockerd's rules for the path (the directory part follows symlinks, the last
//! element does not; a trailing `/.` means the directory's contents).

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use berth_core::{Error, Result};
use berth_shim::spec::IdMapping;
use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};
use nix::unistd::UnlinkatFlags;

/// Filesystems a copy never descends into (a running container's `/proc`,
/// `/sys` and friends are the kernel's, not the container's files).
const SKIPPED_FS: [i64; 6] = [
    0x9fa0,      // proc
    0x6265_6572, // sysfs
    0x27e0eb,    // cgroup
    0x6367_7270, // cgroup2
    0x1cd1,      // devpts
    0x1980_0202, // mqueue
];

/// Opens `rel` under `root` as the container resolves it, with `flags`.
fn open_in_root(root: BorrowedFd<'_>, rel: &Path, flags: OFlag) -> std::result::Result<OwnedFd, Errno> {
    let rel = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    // EAGAIN: a rename or mount somewhere during a `..` step; the kernel asks
    // for another try.
    let mut tries = 0;
    loop {
        match nix::fcntl::openat2(root, rel, how) {
            Err(Errno::EAGAIN) if tries < 64 => tries += 1,
            other => return other,
        }
    }
}

fn io_err(what: impl std::fmt::Display, e: Errno) -> Error {
    Error::invalid(format!("{what}: {}", e.desc()))
}

/// A path as the user gave it, split as dockerd splits it.
#[derive(Debug, PartialEq)]
pub struct Target {
    /// The directory part, relative to the root (followed through symlinks).
    pub dir: PathBuf,
    /// The last element, not followed; `None` when the path names the
    /// directory itself (`/`, `/etc/`, `/etc/.`).
    pub base: Option<OsString>,
    /// What the archive's entries are named after: the path's last element,
    /// `.` for `/etc/.` (the contents), `/` for the root.
    pub name: String,
}

/// Splits `path` (relative paths are taken from the root).
pub fn target(path: &str) -> Target {
    let trailing_dot = path.ends_with("/.") || path == ".";
    let trailing_slash = path.ends_with('/');
    let parts: Vec<&OsStr> = Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s),
            Component::ParentDir => Some(OsStr::new("..")),
            _ => None,
        })
        .collect();
    let Some((last, dirs)) = parts.split_last() else {
        return Target { dir: PathBuf::new(), base: None, name: if trailing_dot { ".".into() } else { "/".into() } };
    };
    let name = if trailing_dot { ".".to_string() } else { last.to_string_lossy().into_owned() };
    if trailing_dot || trailing_slash || *last == OsStr::new("..") {
        return Target { dir: parts.iter().collect(), base: None, name };
    }
    Target { dir: dirs.iter().collect(), base: Some(last.to_os_string()), name }
}

/// What a path in the container is: its parent's descriptor, its last element
/// (`None`: the directory itself) and its status, not following a last symlink.
struct Found {
    parent: OwnedFd,
    base: Option<OsString>,
    stat: FileStat,
}

fn not_found(path: &str) -> Error {
    Error::not_found(format!("Could not find the file {path} in container"))
}

fn find(root: BorrowedFd<'_>, path: &str) -> Result<(Target, Found)> {
    let t = target(path);
    let parent = match open_in_root(root, &t.dir, OFlag::O_PATH | OFlag::O_DIRECTORY) {
        Ok(fd) => fd,
        Err(Errno::ENOENT | Errno::ENOTDIR) => return Err(not_found(path)),
        Err(e) => return Err(io_err(format!("resolve {path}"), e)),
    };
    let stat = match &t.base {
        None => nix::sys::stat::fstat(&parent).map_err(|e| io_err(format!("stat {path}"), e))?,
        Some(base) => {
            match nix::sys::stat::fstatat(&parent, base.as_os_str(), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::ENOENT) => return Err(not_found(path)),
                Err(e) => return Err(io_err(format!("stat {path}"), e)),
            }
        }
    };
    let base = t.base.clone();
    Ok((t, Found { parent, base, stat }))
}

fn kind(stat: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits())
}

/// Go's `os.FileMode` of a Unix mode, as the docker CLI reads the stat header.
pub fn go_mode(st_mode: u32) -> u32 {
    let mut m = st_mode & 0o777;
    m |= match SFlag::from_bits_truncate(st_mode & SFlag::S_IFMT.bits()) {
        SFlag::S_IFDIR => 1 << 31,
        SFlag::S_IFLNK => 1 << 27,
        SFlag::S_IFIFO => 1 << 25,
        SFlag::S_IFSOCK => 1 << 24,
        SFlag::S_IFBLK => 1 << 26,
        SFlag::S_IFCHR => (1 << 26) | (1 << 21),
        _ => 0,
    };
    for (bit, go) in [(0o4000, 1 << 23), (0o2000, 1 << 22), (0o1000, 1 << 20)] {
        if st_mode & bit != 0 {
            m |= go;
        }
    }
    m
}

fn rfc3339(secs: i64, nanos: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(secs) * 1_000_000_000 + i128::from(nanos))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// The absolute path `path` resolves to in the container, every symlink
/// followed (dockerd's `linkTarget`), read with `readlinkat` step by step.
fn resolve_links(root: BorrowedFd<'_>, path: &str) -> Result<String> {
    let mut pending: Vec<OsString> = Path::new(path).components().rev().map(|c| c.as_os_str().to_os_string()).collect();
    let mut cur: Vec<OsString> = Vec::new();
    let mut hops = 0;
    while let Some(next) = pending.pop() {
        match next.as_bytes() {
            b"/" | b"." | b"" => continue,
            b".." => {
                cur.pop();
                continue;
            }
            _ => {}
        }
        let candidate: PathBuf = cur.iter().chain(std::iter::once(&next)).collect();
        let is_link =
            open_in_root(root, candidate.parent().unwrap_or(Path::new("")), OFlag::O_PATH | OFlag::O_DIRECTORY)
                .ok()
                .and_then(|dir| nix::fcntl::readlinkat(&dir, next.as_os_str()).ok());
        match is_link {
            Some(target) => {
                hops += 1;
                if hops > 40 {
                    return Err(Error::invalid(format!("too many levels of symbolic links in {path}")));
                }
                if Path::new(&target).is_absolute() {
                    cur.clear();
                }
                pending.extend(Path::new(&target).components().rev().map(|c| c.as_os_str().to_os_string()));
            }
            None => cur.push(next),
        }
    }
    let joined: PathBuf = cur.iter().collect();
    Ok(format!("/{}", joined.display()))
}

/// `HEAD /archive`: what `path` is, as dockerd's `X-Docker-Container-Path-Stat`.
pub fn stat(root: BorrowedFd<'_>, path: &str) -> Result<berth_runtime_api::pb::PathStat> {
    let (t, found) = find(root, path)?;
    let st = &found.stat;
    let link_target = if kind(st) == SFlag::S_IFLNK { resolve_links(root, path)? } else { String::new() };
    Ok(berth_runtime_api::pb::PathStat {
        name: t.name,
        size: st.st_size,
        mode: go_mode(st.st_mode),
        mtime: rfc3339(st.st_mtime, st.st_mtime_nsec),
        link_target,
    })
}

/// How owners seen from outside map to the container's: the same, except in
/// a running container in a user namespace (`--userns-remap`), whose files
/// show through its idmapped layers with the host IDs of its range.
#[derive(Debug, Clone, Default)]
pub struct Ids {
    /// The container's user ID ranges (none: IDs are the same inside and out).
    pub uids: Vec<IdMapping>,
    /// Same for groups.
    pub gids: Vec<IdMapping>,
}

/// What an ID outside no range is inside: the kernel's overflow ID, `nobody`.
const OVERFLOW_ID: u32 = 65534;

impl Ids {
    /// The container's owner of a file seen with `uid`, `gid`.
    fn inside(&self, uid: u32, gid: u32) -> (u32, u32) {
        if self.uids.is_empty() {
            return (uid, gid);
        }
        let uid = IdMapping::container_of(&self.uids, uid).unwrap_or(OVERFLOW_ID);
        (uid, IdMapping::container_of(&self.gids, gid).unwrap_or(OVERFLOW_ID))
    }

    /// The owner to give a file from outside for the container's `uid`, `gid`.
    fn outside(&self, uid: u32, gid: u32) -> Result<(u32, u32)> {
        if self.uids.is_empty() {
            return Ok((uid, gid));
        }
        let unmapped = |what: &str, id: u32| {
            Error::invalid(format!("{what} {id} is not mapped in the container's user namespace"))
        };
        let host_uid = IdMapping::host_of(&self.uids, uid).ok_or_else(|| unmapped("user", uid))?;
        Ok((host_uid, IdMapping::host_of(&self.gids, gid).ok_or_else(|| unmapped("group", gid))?))
    }
}

fn header_for(st: &FileStat, ids: &Ids) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    let (uid, gid) = ids.inside(st.st_uid, st.st_gid);
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(u64::from(uid));
    h.set_gid(u64::from(gid));
    h.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
    h.set_size(0);
    h
}

/// Writes a tar of `path` in the container to `out`, entries named after the
/// path's last element (`hosts`, `etc/passwd`, `./passwd` for `/etc/.`).
pub fn pack(root: BorrowedFd<'_>, path: &str, out: impl Write, ids: &Ids) -> Result<()> {
    let (t, found) = find(root, path)?;
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    let prefix = if t.name == "/" { PathBuf::from(".") } else { PathBuf::from(&t.name) };
    match &found.base {
        Some(base) => add(&mut tar, found.parent.as_fd(), base, &found.stat, &prefix, ids)?,
        None => {
            let here = nix::fcntl::openat(
                &found.parent,
                ".",
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| io_err(format!("open {path}"), e))?;
            let mut h = header_for(&found.stat, ids);
            h.set_entry_type(tar::EntryType::Directory);
            tar.append_data(&mut h, dir_name(&prefix), std::io::empty()).map_err(tar_err)?;
            add_children(&mut tar, here, &prefix, ids)?;
        }
    }
    tar.finish().map_err(|e| Error::internal(format!("tar: {e}")))
}

/// Writes a tar of the whole root, entries relative to it (`docker export`).
pub fn pack_root(root: BorrowedFd<'_>, out: impl Write) -> Result<()> {
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    let here = nix::fcntl::openat(root, ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| io_err("open the root", e))?;
    add_children(&mut tar, here, Path::new(""), &Ids::default())?;
    tar.finish().map_err(|e| Error::internal(format!("tar: {e}")))
}

/// Writes the overlay writable layer `upper` as a Docker layer tar: a
/// whiteout (a 0:0 character device) becomes `.wh.NAME`, an opaque directory
/// (`trusted.overlay.opaque=y`) gets a `.wh..wh..opq` entry (`docker commit`).
/// Walked by descriptor, never following a symlink: a running container may
/// be changing the layer meanwhile.
pub fn pack_layer(upper: BorrowedFd<'_>, out: impl Write) -> Result<()> {
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    let here = nix::fcntl::openat(upper, ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| io_err("open the writable layer", e))?;
    add_layer_children(&mut tar, here, Path::new(""))?;
    tar.finish().map_err(tar_err)
}

fn add_layer_children<W: Write>(tar: &mut tar::Builder<W>, dir: OwnedFd, prefix: &Path) -> Result<()> {
    let names = list(dir.as_fd()).map_err(|e| io_err(format!("list {}", prefix.display()), e))?;
    for name in names {
        let Ok(st) = nix::sys::stat::fstatat(&dir, name.as_os_str(), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) else {
            continue;
        };
        let path = prefix.join(&name);
        match kind(&st) {
            SFlag::S_IFCHR if st.st_rdev == 0 => {
                let mut wh = OsString::from(".wh.");
                wh.push(&name);
                let mut h = header_for(&st, &Ids::default());
                h.set_mode(0o600);
                h.set_entry_type(tar::EntryType::Regular);
                tar.append_data(&mut h, prefix.join(wh), std::io::empty()).map_err(tar_err)?;
            }
            SFlag::S_IFDIR => {
                let Ok(sub) = nix::fcntl::openat(
                    &dir,
                    name.as_os_str(),
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                ) else {
                    continue;
                };
                let mut h = header_for(&st, &Ids::default());
                h.set_entry_type(tar::EntryType::Directory);
                tar.append_data(&mut h, dir_name(&path), std::io::empty()).map_err(tar_err)?;
                let sub = std::fs::File::from(sub);
                let opaque = xattr::FileExt::get_xattr(&sub, "trusted.overlay.opaque").ok().flatten();
                if opaque.as_deref() == Some(b"y") {
                    let mut h = header_for(&st, &Ids::default());
                    h.set_mode(0o600);
                    h.set_entry_type(tar::EntryType::Regular);
                    tar.append_data(&mut h, path.join(".wh..wh..opq"), std::io::empty()).map_err(tar_err)?;
                }
                add_layer_children(tar, OwnedFd::from(sub), &path)?;
            }
            _ => add(tar, dir.as_fd(), &name, &st, &path, &Ids::default())?,
        }
    }
    Ok(())
}

/// A directory's entry name ends in `/`, as tar and dockerd write it.
fn dir_name(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_os_string();
    if !s.as_bytes().ends_with(b"/") {
        s.push("/");
    }
    PathBuf::from(s)
}

/// The names in the directory `dir` (without `.` and `..`), sorted; a
/// separate descriptor reads it, so `dir` can be used for `*at` calls meanwhile.
fn list(dir: BorrowedFd<'_>) -> std::result::Result<Vec<OsString>, Errno> {
    let listing = nix::fcntl::openat(dir, ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
    let mut names: Vec<OsString> = nix::dir::Dir::from_fd(listing)?
        .iter()
        .filter_map(|e| e.ok())
        .map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_os_string())
        .filter(|n| n != "." && n != "..")
        .collect();
    names.sort();
    Ok(names)
}

fn tar_err(e: std::io::Error) -> Error {
    Error::internal(format!("tar: {e}"))
}

/// Adds the entries of the directory `dir` under `prefix`, sorted by name.
fn add_children<W: Write>(tar: &mut tar::Builder<W>, dir: OwnedFd, prefix: &Path, ids: &Ids) -> Result<()> {
    if nix::sys::statfs::fstatfs(&dir).is_ok_and(|s| SKIPPED_FS.contains(&{ s.filesystem_type().0 })) {
        return Ok(());
    }
    let names = list(dir.as_fd()).map_err(|e| io_err(format!("list {}", prefix.display()), e))?;
    for name in names {
        // Gone since the listing: nothing to copy.
        let Ok(st) = nix::sys::stat::fstatat(&dir, name.as_os_str(), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) else {
            continue;
        };
        add(tar, dir.as_fd(), &name, &st, &prefix.join(&name), ids)?;
    }
    Ok(())
}

/// Adds `name` of the directory `parent` (whose status is `st`) as `as_path`.
fn add<W: Write>(
    tar: &mut tar::Builder<W>,
    parent: BorrowedFd<'_>,
    name: &OsStr,
    st: &FileStat,
    as_path: &Path,
    ids: &Ids,
) -> Result<()> {
    let mut h = header_for(st, ids);
    match kind(st) {
        SFlag::S_IFDIR => {
            let dir = match nix::fcntl::openat(
                parent,
                name,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            ) {
                Ok(d) => d,
                // Swapped for something else since its status was read: skip it.
                Err(_) => return Ok(()),
            };
            h.set_entry_type(tar::EntryType::Directory);
            tar.append_data(&mut h, dir_name(as_path), std::io::empty()).map_err(tar_err)?;
            add_children(tar, dir, as_path, ids)
        }
        SFlag::S_IFREG => {
            // O_NOFOLLOW and O_NONBLOCK: a symlink or FIFO swapped in is refused, not followed or waited on.
            let Ok(fd) = nix::fcntl::openat(
                parent,
                name,
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
                Mode::empty(),
            ) else {
                return Ok(());
            };
            let file = std::fs::File::from(fd);
            let Ok(meta) = file.metadata() else { return Ok(()) };
            if !meta.is_file() {
                return Ok(());
            }
            let size = meta.len();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(size);
            // Exactly `size` bytes, whatever the file does meanwhile.
            let data = file.take(size).chain(std::io::repeat(0)).take(size);
            tar.append_data(&mut h, as_path, data).map_err(tar_err)
        }
        SFlag::S_IFLNK => {
            let Ok(target) = nix::fcntl::readlinkat(parent, name) else { return Ok(()) };
            h.set_entry_type(tar::EntryType::Symlink);
            tar.append_link(&mut h, as_path, Path::new(&target)).map_err(tar_err)
        }
        SFlag::S_IFCHR | SFlag::S_IFBLK | SFlag::S_IFIFO => {
            let (t, dev) = match kind(st) {
                SFlag::S_IFCHR => (tar::EntryType::Char, st.st_rdev),
                SFlag::S_IFBLK => (tar::EntryType::Block, st.st_rdev),
                _ => (tar::EntryType::Fifo, 0),
            };
            h.set_entry_type(t);
            let _ = h.set_device_major(nix::sys::stat::major(dev) as u32);
            let _ = h.set_device_minor(nix::sys::stat::minor(dev) as u32);
            tar.append_data(&mut h, as_path, std::io::empty()).map_err(tar_err)
        }
        // Sockets are not archived (as dockerd).
        _ => Ok(()),
    }
}

/// How to unpack.
#[derive(Debug, Clone, Default)]
pub struct UnpackOptions {
    /// Refuse to replace a directory with a non-directory, or the reverse.
    pub no_overwrite_dir_non_dir: bool,
    /// Every file owned by this user and group instead of the tar's owners.
    pub owner: Option<(u32, u32)>,
    /// How the container's owners are written from outside.
    pub ids: Ids,
}

/// The path of an entry inside the destination: no `..` above it, no root.
fn entry_path(raw: &Path) -> Result<Option<PathBuf>> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return Err(Error::invalid(format!(
                        "invalid archive entry {}: it leaves the destination",
                        raw.display()
                    )));
                }
            }
            Component::Prefix(_) => return Err(Error::invalid(format!("invalid archive entry {}", raw.display()))),
        }
    }
    Ok(if out.as_os_str().is_empty() { None } else { Some(out) })
}

/// The directory `rel` under `dest` (made, with its parents, where missing),
/// resolved in the container's root.
fn ensure_dir(root: BorrowedFd<'_>, dest: &Path, rel: &Path) -> Result<OwnedFd> {
    let mut cur = dest.to_path_buf();
    let mut fd = open_in_root(root, &cur, OFlag::O_PATH | OFlag::O_DIRECTORY)
        .map_err(|e| io_err(format!("open {}", dest.display()), e))?;
    for c in rel.components() {
        let Component::Normal(name) = c else { continue };
        cur.push(name);
        fd = match open_in_root(root, &cur, OFlag::O_PATH | OFlag::O_DIRECTORY) {
            Ok(next) => next,
            Err(Errno::ENOENT) => {
                nix::sys::stat::mkdirat(&fd, name, Mode::from_bits_truncate(0o755))
                    .or_else(|e| if e == Errno::EEXIST { Ok(()) } else { Err(e) })
                    .map_err(|e| io_err(format!("mkdir /{}", cur.display()), e))?;
                open_in_root(root, &cur, OFlag::O_PATH | OFlag::O_DIRECTORY)
                    .map_err(|e| io_err(format!("open /{}", cur.display()), e))?
            }
            Err(e) => return Err(io_err(format!("open /{}", cur.display()), e)),
        };
    }
    Ok(fd)
}

/// Removes `name` of `dir`, a whole tree if it is a directory, never
/// following a symlink.
fn remove_all(dir: BorrowedFd<'_>, name: &OsStr) -> std::result::Result<(), Errno> {
    match nix::unistd::unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => return Ok(()),
        Err(Errno::EISDIR) => {}
        Err(e) => return Err(e),
    }
    let sub = nix::fcntl::openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    for n in list(sub.as_fd())? {
        remove_all(sub.as_fd(), &n)?;
    }
    nix::unistd::unlinkat(dir, name, UnlinkatFlags::RemoveDir)
}

/// Sets owner, mode and times of `name` in `dir` through an `O_PATH` handle
/// that does not follow a symlink (the mode is left alone on a symlink).
fn set_attrs(dir: BorrowedFd<'_>, name: &OsStr, h: &tar::Header, owner: Option<(u32, u32)>, ids: &Ids) -> Result<()> {
    let fd = nix::fcntl::openat(dir, name, OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| io_err(format!("open {}", name.to_string_lossy()), e))?;
    let (uid, gid) = match owner {
        Some(o) => o,
        None => (
            h.uid().ok().and_then(|u| u32::try_from(u).ok()).unwrap_or(0),
            h.gid().ok().and_then(|g| u32::try_from(g).ok()).unwrap_or(0),
        ),
    };
    let (uid, gid) = ids.outside(uid, gid)?;
    let empty = c"";
    nix::unistd::fchownat(
        &fd,
        empty,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
        nix::fcntl::AtFlags::AT_EMPTY_PATH,
    )
    .map_err(|e| io_err(format!("chown {}", name.to_string_lossy()), e))?;
    let st = nix::sys::stat::fstat(&fd).map_err(|e| io_err("stat", e))?;
    if kind(&st) != SFlag::S_IFLNK {
        // Through /proc/self/fd: the handle is the file itself, not a name to resolve again.
        let proc = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        let mode = h.mode().unwrap_or(0o644) & 0o7777;
        std::fs::set_permissions(&proc, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .map_err(|e| Error::invalid(format!("chmod {}: {e}", name.to_string_lossy())))?;
        if let Ok(mtime) = h.mtime() {
            let t = nix::sys::time::TimeSpec::new(i64::try_from(mtime).unwrap_or(0), 0);
            let _ = nix::sys::stat::utimensat(
                nix::fcntl::AT_FDCWD,
                &proc,
                &t,
                &t,
                nix::sys::stat::UtimensatFlags::FollowSymlink,
            );
        }
    }
    Ok(())
}

/// Unpacks the tar `input` into the directory `path` of the container.
pub fn unpack(root: BorrowedFd<'_>, path: &str, input: impl Read, opts: UnpackOptions) -> Result<()> {
    let (t, found) = find(root, path)?;
    if kind(&found.stat) != SFlag::S_IFDIR {
        return Err(Error::invalid("extraction point is not a directory"));
    }
    let dest: PathBuf = match &t.base {
        Some(b) => t.dir.join(b),
        None => t.dir.clone(),
    };
    let mut archive = tar::Archive::new(input);
    let entries = archive.entries().map_err(|e| Error::invalid(format!("read the archive: {e}")))?;
    let mut dirs: Vec<(PathBuf, tar::Header)> = Vec::new();
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::invalid(format!("read the archive: {e}")))?;
        let raw = entry.path().map_err(|e| Error::invalid(format!("archive entry name: {e}")))?.into_owned();
        let Some(rel) = entry_path(&raw)? else {
            continue;
        };
        let (parent_rel, leaf) = (rel.parent().unwrap_or(Path::new("")), rel.file_name().unwrap_or_default());
        let parent = ensure_dir(root, &dest, parent_rel)?;
        let header = entry.header().clone();
        let etype = header.entry_type();
        let shown = format!("/{}", dest.join(&rel).display());
        let existing = nix::sys::stat::fstatat(&parent, leaf, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).ok();
        let existing_dir = existing.as_ref().is_some_and(|st| kind(st) == SFlag::S_IFDIR);
        if let Some(_st) = &existing
            && opts.no_overwrite_dir_non_dir
        {
            if existing_dir && !etype.is_dir() {
                return Err(Error::invalid(format!("cannot overwrite directory \"{shown}\" with non-directory")));
            }
            if !existing_dir && etype.is_dir() {
                return Err(Error::invalid(format!("cannot overwrite non-directory \"{shown}\" with directory")));
            }
        }
        let mode = Mode::from_bits_truncate(header.mode().unwrap_or(0o644) & 0o7777);
        let fail = |what: &str, e: Errno| io_err(format!("{what} {shown}"), e);
        if etype.is_dir() {
            if !existing_dir {
                if existing.is_some() {
                    remove_all(parent.as_fd(), leaf).map_err(|e| fail("remove", e))?;
                }
                nix::sys::stat::mkdirat(&parent, leaf, mode).map_err(|e| fail("mkdir", e))?;
            }
            // Directory attributes last, once their contents are in.
            dirs.push((rel.clone(), header));
            continue;
        }
        if existing.is_some() {
            remove_all(parent.as_fd(), leaf).map_err(|e| fail("remove", e))?;
        }
        match etype {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let fd = nix::fcntl::openat(
                    &parent,
                    leaf,
                    OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(|e| fail("create", e))?;
                let mut file = std::fs::File::from(fd);
                std::io::copy(&mut entry, &mut file).map_err(|e| Error::invalid(format!("write {shown}: {e}")))?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|e| Error::invalid(format!("link target of {shown}: {e}")))?
                    .ok_or_else(|| Error::invalid(format!("symlink {shown} has no target")))?;
                nix::unistd::symlinkat(target.as_ref(), &parent, leaf).map_err(|e| fail("symlink", e))?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(|e| Error::invalid(format!("link target of {shown}: {e}")))?
                    .ok_or_else(|| Error::invalid(format!("hard link {shown} has no target")))?;
                let Some(target_rel) = entry_path(&target)? else {
                    return Err(Error::invalid(format!("hard link {shown} names no file")));
                };
                let (t_parent, t_leaf) =
                    (target_rel.parent().unwrap_or(Path::new("")), target_rel.file_name().unwrap_or_default());
                let t_dir = ensure_dir(root, &dest, t_parent)?;
                nix::unistd::linkat(&t_dir, t_leaf, &parent, leaf, nix::fcntl::AtFlags::empty())
                    .map_err(|e| fail("link", e))?;
                continue;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let (k, dev) = match etype {
                    tar::EntryType::Char => (SFlag::S_IFCHR, true),
                    tar::EntryType::Block => (SFlag::S_IFBLK, true),
                    _ => (SFlag::S_IFIFO, false),
                };
                let rdev = if dev {
                    let major = header.device_major().ok().flatten().unwrap_or(0);
                    let minor = header.device_minor().ok().flatten().unwrap_or(0);
                    nix::sys::stat::makedev(u64::from(major), u64::from(minor))
                } else {
                    0
                };
                nix::sys::stat::mknodat(&parent, leaf, k, mode, rdev).map_err(|e| fail("mknod", e))?;
            }
            // PAX and GNU long-name records are read by the tar crate; other
            // kinds (sockets, volume labels) are skipped, as dockerd does.
            _ => continue,
        }
        set_attrs(parent.as_fd(), leaf, &header, opts.owner, &opts.ids)?;
    }
    // Deepest first, so a read-only directory is made so after its contents.
    dirs.sort_by_key(|(rel, _)| std::cmp::Reverse(rel.components().count()));
    for (rel, header) in dirs {
        let parent = ensure_dir(root, &dest, rel.parent().unwrap_or(Path::new("")))?;
        set_attrs(parent.as_fd(), rel.file_name().unwrap_or_default(), &header, opts.owner, &opts.ids)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn open(dir: &Path) -> OwnedFd {
        nix::fcntl::open(dir, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).expect("open root")
    }

    #[test]
    fn a_writable_layer_becomes_a_docker_layer_with_whiteouts() {
        let dir = tempfile::tempdir().expect("tmp");
        let upper = dir.path().join("upper");
        std::fs::create_dir_all(upper.join("etc/opaque")).expect("mkdir");
        std::fs::write(upper.join("etc/opaque/kept"), b"k").expect("file");
        nix::sys::stat::mknod(&upper.join("etc/gone"), SFlag::S_IFCHR, Mode::empty(), 0).expect("whiteout");
        xattr::set(upper.join("etc/opaque"), "trusted.overlay.opaque", b"y").expect("opaque");
        symlink("/etc/opaque/kept", upper.join("link")).expect("symlink");
        let mut out = Vec::new();
        pack_layer(open(&upper).as_fd(), &mut out).expect("pack");
        let mut a = tar::Archive::new(&out[..]);
        let names: Vec<String> = a
            .entries()
            .expect("entries")
            .map(|e| e.expect("entry").path().expect("path").display().to_string())
            .collect();
        assert_eq!(
            names,
            ["etc/", "etc/.wh.gone", "etc/opaque/", "etc/opaque/.wh..wh..opq", "etc/opaque/kept", "link"]
        );
    }

    #[test]
    fn paths_split_as_dockerd_splits_them() {
        let t = target("/etc/hosts");
        assert_eq!((t.dir, t.base, t.name), (PathBuf::from("etc"), Some("hosts".into()), "hosts".to_string()));
        let t = target("/etc/");
        assert_eq!((t.dir, t.base, t.name), (PathBuf::from("etc"), None, "etc".to_string()));
        let t = target("/etc/.");
        assert_eq!((t.dir, t.base, t.name), (PathBuf::from("etc"), None, ".".to_string()));
        let t = target("/");
        assert_eq!((t.dir, t.base, t.name), (PathBuf::new(), None, "/".to_string()));
        assert_eq!(target("tmp/x").dir, PathBuf::from("tmp"));
        assert_eq!(go_mode(0o040755), (1 << 31) | 0o755);
        assert_eq!(go_mode(0o120777), (1 << 27) | 0o777);
        assert_eq!(go_mode(0o104755), (1 << 23) | 0o755);
    }

    #[test]
    fn symlinks_resolve_inside_the_root_both_ways() {
        let outer = tempfile::tempdir().expect("tmp");
        let host_file = outer.path().join("host-secret");
        std::fs::write(&host_file, b"host").expect("host file");
        let root = outer.path().join("root");
        std::fs::create_dir_all(root.join("etc")).expect("etc");
        std::fs::write(root.join("etc/hosts"), b"127.0.0.1 localhost\n").expect("hosts");
        std::fs::write(root.join("host-secret"), b"inside").expect("inner");
        // The container points its paths at the host's root.
        symlink("/", root.join("escape")).expect("symlink");
        symlink("../../..", root.join("etc/up")).expect("symlink");
        symlink("/etc/hosts", root.join("link")).expect("symlink");
        let fd = open(&root);

        let s = stat(fd.as_fd(), "/link").expect("stat");
        assert_eq!((s.name.as_str(), s.link_target.as_str()), ("link", "/etc/hosts"));
        assert_eq!(s.mode & (1 << 27), 1 << 27, "a symlink");
        assert!(stat(fd.as_fd(), "/nope").is_err_and(|e| e.kind() == berth_core::ErrorKind::NotFound));

        // Reading through the escape reads the container's own file.
        let mut out = Vec::new();
        pack(fd.as_fd(), "/escape/host-secret", &mut out, &Ids::default()).expect("pack");
        let mut a = tar::Archive::new(&out[..]);
        let mut e = a.entries().expect("entries").next().expect("one").expect("entry");
        assert_eq!(e.path().expect("path").to_str(), Some("host-secret"));
        let mut body = String::new();
        e.read_to_string(&mut body).expect("read");
        assert_eq!(body, "inside");

        // Writing through it lands inside too.
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o640);
        h.set_uid(1000);
        h.set_gid(1000);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, "dropped", &b"new"[..]).expect("append");
        let mut h2 = tar::Header::new_gnu();
        h2.set_size(0);
        h2.set_entry_type(tar::EntryType::Symlink);
        tar.append_link(&mut h2, "sub/ln", "/etc/shadow").expect("link");
        let bytes = tar.into_inner().expect("tar");
        unpack(fd.as_fd(), "/etc/up/escape/", &bytes[..], UnpackOptions::default()).expect("unpack");
        assert_eq!(std::fs::read(root.join("dropped")).expect("dropped inside"), b"new");
        assert!(!outer.path().join("dropped").exists() && !Path::new("/dropped").exists(), "nothing on the host");
        let meta = std::fs::metadata(root.join("dropped")).expect("meta");
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        assert_eq!((meta.uid(), meta.gid(), meta.permissions().mode() & 0o777), (1000, 1000, 0o640));
        assert_eq!(std::fs::read_link(root.join("sub/ln")).expect("link"), Path::new("/etc/shadow"));
        assert_eq!(std::fs::read(&host_file).expect("host"), b"host");

        // A file over a directory is refused when asked.
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, "etc", &b""[..]).expect("append");
        let bytes = tar.into_inner().expect("tar");
        let opts = UnpackOptions { no_overwrite_dir_non_dir: true, ..Default::default() };
        let err = unpack(fd.as_fd(), "/", &bytes[..], opts.clone()).expect_err("dir over non-dir");
        assert!(err.message().contains("cannot overwrite directory"), "{}", err.message());
        let err = unpack(fd.as_fd(), "/etc/hosts", &bytes[..], opts).expect_err("not a directory");
        assert_eq!(err.message(), "extraction point is not a directory");

        // `..` in an entry is refused.
        let mut raw = tar::Header::new_old();
        raw.as_old_mut().name[..9].copy_from_slice(b"../../out");
        raw.set_size(0);
        raw.set_entry_type(tar::EntryType::Regular);
        raw.set_cksum();
        let mut bytes = raw.as_bytes().to_vec();
        bytes.extend_from_slice(&[0u8; 1024]);
        assert!(unpack(fd.as_fd(), "/etc", &bytes[..], UnpackOptions::default()).is_err());
    }

    #[test]
    fn owners_map_between_the_host_and_a_user_namespace() {
        let range = |container_id, host_id, size| IdMapping { container_id, host_id, size };
        let ids = Ids { uids: vec![range(0, 100_000, 65536)], gids: vec![range(0, 200_000, 10)] };
        assert_eq!(ids.inside(100_005, 200_003), (5, 3));
        assert_eq!(ids.inside(0, 7), (OVERFLOW_ID, OVERFLOW_ID), "the host's root is nobody inside");
        assert_eq!(ids.outside(1234, 9).ok(), Some((101_234, 200_009)));
        assert!(ids.outside(1, 10).is_err(), "group 10 is past the range");
        assert_eq!(Ids::default().inside(5, 6), (5, 6));
        assert_eq!(Ids::default().outside(5, 6).ok(), Some((5, 6)));
    }
}
