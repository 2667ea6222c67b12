//! User namespaces (`--userns-remap`): the container's root is an unprivileged
//! host user (the first ID of a subordinate range), and every namespace the
//! container gets is owned by its user namespace, so its capabilities count
//! there and nowhere else.
//!
//! How the pieces fit:
//! - The image layers and the writable layer stay as they are on disk (owned
//!   by 0, as without remapping): the overlay is made of *idmapped* mounts of
//!   them (`mount_setattr(MOUNT_ATTR_IDMAP)`), so the container sees its files
//!   owned by its own root, and what it writes lands on disk with the IDs it
//!   sees. Layers are shared with other containers, remapped or not, and
//!   `docker commit`/`diff`/`cp` of a stopped container read them unchanged.
//!   dockerd chowns a whole copy of every layer per remapping instead.
//! - The overlay is mounted by the shim, in a mount namespace of its own, with
//!   the container's root as its file-system IDs: overlayfs does its internal
//!   work (copy-up, whiteouts, the work directory) with its mounter's
//!   credentials, which must map through the idmapped layers, while trusted
//!   xattrs (opaque directories) and whiteout devices need the host's
//!   capabilities, which the shim keeps.
//! - Binds are detached copies made by the shim ([`crate::init::prepare_binds`]);
//!   volumes and the container's own files (`hosts`, `resolv.conf`, `hostname`)
//!   are idmapped, host paths are not (their files show as `nobody` unless the
//!   range owns them, as on dockerd).
//! - The init starts in the new user and PID namespaces at once
//!   ([`crate::sys::fork_into_userns`]); the shim writes its ID maps, and the
//!   init becomes the namespace's root before anything else.
//!
//! `MOUNT_ATTR_IDMAP` takes a user namespace, not a mapping, and the
//! container's own namespace only exists once the mounts are made, so the
//! mounts use a *template*: a namespace with the same maps, made by a child
//! that exists for that alone.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use berth_shim::protocol::Annotations;
use berth_shim::spec::{IdMapping, Spec};

use crate::init::InitError;
use crate::sys;

/// The directory, in the bundle, where the idmapped layers are attached
/// (in the shim's mount namespace only).
const IDMAPPED: &str = "idmapped";

/// Writes the spec's ID maps for process `pid`, which must have just made a
/// user namespace (each file takes one write).
pub fn write_maps(pid: libc::pid_t, spec: &Spec) -> io::Result<()> {
    std::fs::write(format!("/proc/{pid}/uid_map"), IdMapping::map_file(&spec.linux.uid_mappings))?;
    std::fs::write(format!("/proc/{pid}/gid_map"), IdMapping::map_file(&spec.linux.gid_mappings))
}

/// A user namespace with the spec's maps, to idmap mounts with.
pub fn template(spec: &Spec) -> Result<OwnedFd, InitError> {
    let fail = |e: io::Error| InitError(125, format!("make a user namespace for the ID maps: {e}"));
    let (ready_r, ready_w) = sys::pipe().map_err(fail)?;
    let (hold_r, hold_w) = sys::pipe().map_err(fail)?;
    match sys::fork().map_err(fail)? {
        sys::Forked::Child => {
            drop((ready_r, hold_w));
            let made = sys::unshare(libc::CLONE_NEWUSER).is_ok();
            let _ = sys::write_all(ready_w.as_fd(), if made { b"y" } else { b"n" });
            // Held until the shim has its handle.
            let _ = sys::read(hold_r.as_fd(), &mut [0u8; 1]);
            sys::exit_now(0);
        }
        sys::Forked::Parent(pid) => {
            drop((ready_w, hold_r));
            let handle = (|| {
                let mut b = [0u8; 1];
                if sys::read(ready_r.as_fd(), &mut b)? != 1 || b[0] != b'y' {
                    return Err(io::Error::other("unshare(CLONE_NEWUSER) failed"));
                }
                write_maps(pid, spec)?;
                sys::open(Path::new(&format!("/proc/{pid}/ns/user")), libc::O_RDONLY)
            })();
            drop(hold_w);
            let _ = sys::wait_child(pid, false);
            handle.map_err(fail)
        }
    }
}

/// The host user and group the container's root is.
pub fn host_root(spec: &Spec) -> Result<(u32, u32), InitError> {
    let uid = IdMapping::host_of(&spec.linux.uid_mappings, 0);
    let gid = IdMapping::host_of(&spec.linux.gid_mappings, 0);
    uid.zip(gid).ok_or_else(|| InitError(125, "the user namespace's maps leave its root unmapped".into()))
}

/// Attaches an idmapped copy of the mount at `source` (not those below it) at `target`.
fn attach_idmapped(source: &Path, target: &Path, userns: BorrowedFd<'_>) -> io::Result<()> {
    std::fs::create_dir_all(target)?;
    let tree = sys::clone_tree(source, false)?;
    let attrs = sys::MountAttrs { set: sys::attr::IDMAP, userns: Some(userns), ..Default::default() };
    sys::set_mount_attrs(tree.as_fd(), &attrs)
        .map_err(|e| io::Error::new(e.kind(), format!("idmap {}: {e}", source.display())))?;
    sys::move_mount(tree.as_fd(), target)
}

/// Mounts the container's overlay from idmapped layers on the spec's root
/// path, in the calling (the shim's own) mount namespace; that path.
pub fn mount_rootfs(
    bundle: &Path,
    spec: &Spec,
    ann: &Annotations,
    userns: BorrowedFd<'_>,
) -> Result<PathBuf, InitError> {
    let io = |what: &str, e: io::Error| InitError(125, format!("{what}: {e}"));
    let rootfs = bundle.join(&spec.root.path);
    std::fs::create_dir_all(&rootfs).map_err(|e| io("create the root", e))?;
    let dir = bundle.join(IDMAPPED);
    for (i, lower) in ann.lowerdirs.iter().enumerate() {
        attach_idmapped(lower, &dir.join(i.to_string()), userns).map_err(|e| io("idmap a layer", e))?;
    }
    // The writable layer and its work directory must be on one mount.
    let rw = ann.upperdir.parent().filter(|p| Some(*p) == ann.workdir.parent());
    let (Some(rw), Some(upper), Some(work)) = (rw, ann.upperdir.file_name(), ann.workdir.file_name()) else {
        return Err(InitError(125, "the writable layer and its work directory must share a directory".into()));
    };
    attach_idmapped(rw, &dir.join("rw"), userns).map_err(|e| io("idmap the writable layer", e))?;
    let lower: Vec<String> = (0..ann.lowerdirs.len()).map(|i| i.to_string()).collect();
    let options = format!(
        "lowerdir={},upperdir=rw/{},workdir=rw/{}",
        lower.join(":"),
        upper.to_string_lossy(),
        work.to_string_lossy()
    );
    // Short, relative layer paths: many layers fit in mount(2)'s one page.
    std::env::set_current_dir(&dir).map_err(|e| io("enter the idmapped layers", e))?;
    let (uid, gid) = host_root(spec)?;
    // Mounted as the container's root (file-system IDs), keeping the shim's
    // capabilities: a change of fsuid away from 0 drops the file ones from the
    // effective set, so they are raised again for the mount alone.
    sys::set_fs_ids(uid, gid);
    let mounted = raise_effective().and_then(|()| sys::mount("overlay", &rootfs, Some("overlay"), 0, Some(&options)));
    sys::set_fs_ids(0, 0);
    mounted.map_err(|e| io("mount the overlay", e))?;
    Ok(rootfs)
}

/// Makes every permitted capability effective.
fn raise_effective() -> io::Result<()> {
    let (Some(permitted), Some(inheritable)) = (crate::init::own_caps("CapPrm"), crate::init::own_caps("CapInh"))
    else {
        return Err(io::Error::other("cannot read this process's capabilities"));
    };
    sys::capset(permitted, permitted, inheritable)
}
