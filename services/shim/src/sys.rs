//! Thin, checked wrappers over the syscalls the shim and the container init need.
//! Every `unsafe` block in the shim is here, each with the reason it is sound.
//!
//! Descriptors are typed: what a call creates comes back as an [`OwnedFd`]
//! (closed when dropped, never twice), and what a call only uses is a
//! [`BorrowedFd`], so no descriptor can be used after it was closed. The one
//! plain number is a target slot (`dup2`'s 0, 1, 2).

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Converts a path or string to a C string.
pub fn cstr(s: impl AsRef<std::ffi::OsStr>) -> io::Result<CString> {
    CString::new(s.as_ref().as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in string"))
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(rc) }
}

/// Takes ownership of a descriptor a syscall just returned (or its error).
fn owned(rc: libc::c_int) -> io::Result<OwnedFd> {
    let fd = check(rc)?;
    // SAFETY: the syscall returned a new, open descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Takes ownership of the two descriptors a pipe2 or socketpair filled in.
fn owned_pair(fds: [RawFd; 2]) -> (OwnedFd, OwnedFd) {
    // SAFETY: the syscall succeeded, so both are new, open descriptors that nothing else owns.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// A pipe whose ends are close-on-exec: (read, write).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the two-element array we pass.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    Ok(owned_pair(fds))
}

/// dup2(2): makes slot `new` (0, 1 or 2) a copy of `old`, without close-on-exec.
/// The slot is the process's standard stream from then on, not an `OwnedFd`.
pub fn dup2(old: BorrowedFd<'_>, new: RawFd) -> io::Result<()> {
    // SAFETY: dup2 only manipulates the descriptor table; `old` is open.
    check(unsafe { libc::dup2(old.as_raw_fd(), new) }).map(|_| ())
}

/// poll(2) over `fds`, waiting at most `timeout_ms` (-1: without limit). An
/// interrupted wait (EINTR) simply returns with no events set.
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: libc::c_int) {
    // SAFETY: `fds` is a valid, exclusively borrowed array of pollfd of the length we pass.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
}

/// write(2) of the whole buffer.
pub fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: the pointer and length describe `buf`, which outlives the call.
        let n = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// read(2) into `buf`; 0 means end of file.
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: the pointer and length describe `buf`, which outlives the call.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// The outcome of fork(2).
pub enum Forked {
    /// In the parent, with the child's pid.
    Parent(libc::pid_t),
    /// In the child.
    Child,
}

/// fork(2). The shim is single-threaded, so the child may do anything.
pub fn fork() -> io::Result<Forked> {
    // SAFETY: the shim never starts threads, so the child inherits a consistent
    // process (no locks held by vanished threads).
    let pid = check(unsafe { libc::fork() })?;
    Ok(if pid == 0 { Forked::Child } else { Forked::Parent(pid) })
}

/// unshare(2) with CLONE_* `flags`.
pub fn unshare(flags: libc::c_int) -> io::Result<()> {
    // SAFETY: unshare takes only flags.
    check(unsafe { libc::unshare(flags) }).map(|_| ())
}

/// mount(2).
pub fn mount(
    source: &str,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let source = cstr(source)?;
    let target_c = cstr(target.as_os_str())?;
    let fstype = fstype.map(cstr).transpose()?;
    let data = data.filter(|d| !d.is_empty()).map(cstr).transpose()?;
    // SAFETY: every pointer is a NUL-terminated string that outlives the call, or null.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target_c.as_ptr(),
            fstype.as_ref().map_or(std::ptr::null(), |f| f.as_ptr()),
            flags,
            data.as_ref().map_or(std::ptr::null(), |d| d.as_ptr().cast()),
        )
    };
    check(rc).map(|_| ()).map_err(|e| io::Error::new(e.kind(), format!("mount {}: {e}", target.display())))
}

/// umount2(2).
pub fn umount2(target: &Path, flags: libc::c_int) -> io::Result<()> {
    let t = cstr(target.as_os_str())?;
    // SAFETY: `t` is a NUL-terminated string that outlives the call.
    check(unsafe { libc::umount2(t.as_ptr(), flags) }).map(|_| ())
}

/// pivot_root(2) with both arguments ".": the old root is stacked under the new
/// one and detached right after.
pub fn pivot_root_here() -> io::Result<()> {
    let dot = c".";
    // SAFETY: both arguments are the static string "."; the syscall has no libc wrapper.
    check(unsafe { libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) as libc::c_int }).map(|_| ())
}

/// mknod(2) of a character device.
pub fn mknod_char(path: &Path, mode: u32, major: u32, minor: u32) -> io::Result<()> {
    mknod(path, libc::S_IFCHR | mode, major, minor)
}

/// mknod(2): `mode` holds the node's type (S_IFCHR, S_IFBLK) and permissions.
pub fn mknod(path: &Path, mode: u32, major: u32, minor: u32) -> io::Result<()> {
    let p = cstr(path.as_os_str())?;
    // SAFETY: `p` outlives the call; makedev is arithmetic.
    check(unsafe { libc::mknod(p.as_ptr(), mode, libc::makedev(major, minor)) }).map(|_| ())
}

// From <linux/mount.h> and <linux/fcntl.h>: the new mount API's flags and
// mount_setattr's argument.
const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
/// mount_setattr's attributes (`MOUNT_ATTR_*`).
pub mod attr {
    /// Read-only.
    pub const RDONLY: u64 = 0x1;
    /// Ignore setuid and setgid bits.
    pub const NOSUID: u64 = 0x2;
    /// No device files.
    pub const NODEV: u64 = 0x4;
    /// No execution.
    pub const NOEXEC: u64 = 0x8;
    /// Owners seen through the user namespace given beside it.
    pub const IDMAP: u64 = 0x0010_0000;
}
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// What [`set_mount_attrs`] changes.
#[derive(Debug, Default, Clone, Copy)]
pub struct MountAttrs<'a> {
    /// `attr::*` bits to set.
    pub set: u64,
    /// `MS_PRIVATE`, `MS_SLAVE` or `MS_SHARED`; 0 leaves it.
    pub propagation: u64,
    /// With `attr::IDMAP`: the user namespace whose mapping the mount shows.
    pub userns: Option<BorrowedFd<'a>>,
    /// The mounts below too.
    pub recursive: bool,
}

fn mount_setattr(dirfd: RawFd, path: &CStr, flags: libc::c_uint, a: &MountAttrs<'_>) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: a.set,
        attr_clr: 0,
        propagation: a.propagation,
        userns_fd: a.userns.map_or(0, |fd| fd.as_raw_fd() as u64),
    };
    let flags = flags | if a.recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: `path` is NUL-terminated and `attr` a mount_attr of the size we
    // pass; both outlive the call, and `dirfd` is open or AT_FDCWD.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dirfd,
            path.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    check(rc as libc::c_int).map(|_| ())
}

/// Changes the attributes of the mount `fd` refers to (a detached one from
/// [`clone_tree`] may also get an ID mapping, once, before it is attached).
pub fn set_mount_attrs(fd: BorrowedFd<'_>, a: &MountAttrs<'_>) -> io::Result<()> {
    mount_setattr(fd.as_raw_fd(), c"", libc::AT_EMPTY_PATH as libc::c_uint, a)
}

/// open_tree(2) with `OPEN_TREE_CLONE`: a detached copy of the mount at `path`
/// (and of those below it when `recursive`), to be attached with
/// [`move_mount`]. Close-on-exec.
pub fn clone_tree(path: &Path, recursive: bool) -> io::Result<OwnedFd> {
    let p = cstr(path.as_os_str())?;
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    // SAFETY: `p` is NUL-terminated and outlives the call; the syscall returns
    // a new descriptor or an error.
    let rc = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, p.as_ptr(), flags) };
    owned(rc as libc::c_int).map_err(|e| io::Error::new(e.kind(), format!("open_tree {}: {e}", path.display())))
}

/// open_tree(2) with `OPEN_TREE_CLONE` of the file or directory `fd` refers
/// to (see [`clone_tree`]).
pub fn clone_tree_of(fd: BorrowedFd<'_>, recursive: bool) -> io::Result<OwnedFd> {
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    // SAFETY: an open descriptor and a static empty string; the syscall
    // returns a new descriptor or an error.
    let rc = unsafe { libc::syscall(libc::SYS_open_tree, fd.as_raw_fd(), c"".as_ptr(), flags) };
    owned(rc as libc::c_int)
}

/// openat2(2) of `path` inside the directory `root` with `O_PATH` and
/// `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`: `..` and symlinks (absolute
/// ones too) resolve as if `root` were `/`, so nothing outside it is reached.
pub fn open_in_root(root: BorrowedFd<'_>, path: &Path) -> io::Result<OwnedFd> {
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    // From <linux/openat2.h>.
    const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
    const RESOLVE_IN_ROOT: u64 = 0x10;
    let p = cstr(path.as_os_str())?;
    let how = OpenHow {
        flags: (libc::O_PATH | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: `p` is NUL-terminated and `how` an open_how of the size we pass;
    // both outlive the call, and `root` is open.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            p.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    owned(rc as libc::c_int)
}

/// move_mount(2): attaches the detached mount `fd` at `target`.
pub fn move_mount(fd: BorrowedFd<'_>, target: &Path) -> io::Result<()> {
    let t = cstr(target.as_os_str())?;
    // SAFETY: both strings are NUL-terminated and outlive the call; `fd` is open.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    check(rc as libc::c_int)
        .map(|_| ())
        .map_err(|e| io::Error::new(e.kind(), format!("move_mount {}: {e}", target.display())))
}

/// fchdir(2).
pub fn fchdir(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: an open descriptor.
    check(unsafe { libc::fchdir(fd.as_raw_fd()) }).map(|_| ())
}

/// Like [`fork`], but the child starts in a new user namespace and a new PID
/// namespace owned by it (clone(2) with `CLONE_NEWUSER | CLONE_NEWPID`): the
/// namespaces the child makes later are owned by its user namespace too, so
/// its root is root over them and nothing else.
pub fn fork_into_userns() -> io::Result<Forked> {
    // SAFETY: as fork (the shim never starts threads); a null stack makes the
    // child run on a copy of ours, exactly as fork does.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_NEWUSER | libc::CLONE_NEWPID | libc::SIGCHLD) as libc::c_ulong,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_int>(),
            std::ptr::null_mut::<libc::c_int>(),
            0 as libc::c_ulong,
        )
    };
    let pid = check(pid as libc::c_int)?;
    Ok(if pid == 0 { Forked::Child } else { Forked::Parent(pid) })
}

/// setfsuid(2) and setfsgid(2): the IDs the kernel checks file access
/// against (and gives new files) for this thread.
pub fn set_fs_ids(uid: u32, gid: u32) {
    // SAFETY: plain integer arguments; both calls only change this thread's credentials.
    unsafe {
        libc::setfsgid(gid);
        libc::setfsuid(uid);
    }
}

/// sethostname(2).
pub fn sethostname(name: &str) -> io::Result<()> {
    // SAFETY: the pointer and length describe `name`.
    check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) }).map(|_| ())
}

/// setdomainname(2).
pub fn setdomainname(name: &str) -> io::Result<()> {
    // SAFETY: the pointer and length describe `name`.
    check(unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) }).map(|_| ())
}

/// setrlimit(2).
pub fn setrlimit(resource: libc::__rlimit_resource_t, soft: u64, hard: u64) -> io::Result<()> {
    let lim = libc::rlimit { rlim_cur: soft, rlim_max: hard };
    // SAFETY: `lim` is a valid rlimit that outlives the call.
    check(unsafe { libc::setrlimit(resource, &lim) }).map(|_| ())
}

/// Drops capability `cap` from the bounding set; capabilities the kernel does not
/// know are ignored.
pub fn drop_bounding_cap(cap: u32) -> io::Result<()> {
    // SAFETY: prctl(PR_CAPBSET_DROP, cap) takes plain integers.
    let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
    match check(rc) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
        other => other.map(|_| ()),
    }
}

/// Keeps the permitted capabilities across a change of user away from root
/// (`PR_SET_KEEPCAPS`; execve clears it again).
pub fn keep_caps(on: bool) -> io::Result<()> {
    // SAFETY: prctl(PR_SET_KEEPCAPS, 0|1) takes plain integers.
    check(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, on as libc::c_ulong, 0, 0, 0) }).map(|_| ())
}

/// capset(2): the effective, permitted and inheritable sets of this thread, as
/// 64-bit masks (bit N is capability N).
pub fn capset(effective: u64, permitted: u64, inheritable: u64) -> io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    // _LINUX_CAPABILITY_VERSION_3: two Data entries, the low and high 32 bits.
    let header = Header { version: 0x2008_0522, pid: 0 };
    let half = |m: u64, high: bool| if high { (m >> 32) as u32 } else { m as u32 };
    let data = [false, true].map(|high| Data {
        effective: half(effective, high),
        permitted: half(permitted, high),
        inheritable: half(inheritable, high),
    });
    // SAFETY: the header and the two-entry data array are the layout capset(2)
    // reads for version 3, and both outlive the call.
    check(unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) } as libc::c_int).map(|_| ())
}

/// Sets the ambient set to exactly `mask` (each must be permitted and inheritable).
pub fn set_ambient(mask: u64) -> io::Result<()> {
    // SAFETY: prctl(PR_CAP_AMBIENT, ...) takes plain integers.
    check(unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0) })?;
    for n in (0..64).filter(|n| mask & (1u64 << n) != 0) {
        // SAFETY: as above.
        check(unsafe {
            libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong, n as libc::c_ulong, 0, 0)
        })?;
    }
    Ok(())
}

/// Sets `no_new_privs` on this process and its descendants, for good.
pub fn no_new_privs() -> io::Result<()> {
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS, 1) takes plain integers.
    check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) }).map(|_| ())
}

/// Sets the user and groups of the process, groups first.
pub fn set_ids(uid: u32, gid: u32, groups: &[u32]) -> io::Result<()> {
    // SAFETY: the pointer and length describe `groups`.
    check(unsafe { libc::setgroups(groups.len(), groups.as_ptr()) })?;
    // SAFETY: plain integer arguments.
    check(unsafe { libc::setgid(gid) })?;
    // SAFETY: plain integer arguments.
    check(unsafe { libc::setuid(uid) })?;
    Ok(())
}

/// execve(2); returns only on failure.
pub fn execve(path: &CStr, argv: &[CString], envp: &[CString]) -> io::Error {
    let mut a: Vec<*const libc::c_char> = argv.iter().map(|s| s.as_ptr()).collect();
    a.push(std::ptr::null());
    let mut e: Vec<*const libc::c_char> = envp.iter().map(|s| s.as_ptr()).collect();
    e.push(std::ptr::null());
    // SAFETY: argv and envp are null-terminated arrays of pointers to C strings
    // that all outlive the call.
    unsafe { libc::execve(path.as_ptr(), a.as_ptr(), e.as_ptr()) };
    io::Error::last_os_error()
}

/// waitpid(2); `None` with WNOHANG when the child has not exited. Returns the
/// Docker-style exit code: the exit status, or 128 + signal.
pub fn wait_child(pid: libc::pid_t, nohang: bool) -> io::Result<Option<i32>> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid int to write the status into.
        let rc = unsafe { libc::waitpid(pid, &mut status, if nohang { libc::WNOHANG } else { 0 }) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if rc == 0 {
            return Ok(None);
        }
        if libc::WIFEXITED(status) {
            return Ok(Some(libc::WEXITSTATUS(status)));
        }
        if libc::WIFSIGNALED(status) {
            return Ok(Some(128 + libc::WTERMSIG(status)));
        }
    }
}

/// Immediately ends the (child) process.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and runs no destructors or atexit handlers,
    // which is what a forked child must do.
    unsafe { libc::_exit(code) }
}

/// setsid(2).
pub fn setsid() {
    // SAFETY: no arguments; failure (already a leader) is harmless.
    unsafe { libc::setsid() };
}

/// Opens /dev/null read-write.
pub fn dev_null() -> io::Result<OwnedFd> {
    // SAFETY: the path is a static NUL-terminated string.
    owned(unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) })
}

/// Sets O_NONBLOCK on `fd`.
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: fcntl on an open descriptor.
    let flags = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    // SAFETY: as above.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) }).map(|_| ())
}

/// A connected pair of close-on-exec `SOCK_SEQPACKET` sockets: message
/// boundaries are kept and descriptors can be passed.
pub fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two descriptors into the two-element array we pass.
    check(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) })?;
    Ok(owned_pair(fds))
}

/// Sends `data` on `sock` with descriptor `fd` attached (SCM_RIGHTS).
pub fn send_fd(sock: BorrowedFd<'_>, data: &[u8], fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() };
    // SAFETY: CMSG_SPACE is arithmetic on a constant size.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) } as usize;
    let mut cbuf = vec![0u8; space];
    // SAFETY: msghdr is plain data; every pointer set below outlives sendmsg.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = space;
    // SAFETY: the control buffer holds one header with room for one int, as
    // CMSG_SPACE computed; CMSG_FIRSTHDR/CMSG_DATA point inside it.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), fd.as_raw_fd());
    }
    // SAFETY: `msg` describes valid buffers (see above).
    check(unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) } as libc::c_int).map(|_| ())
}

/// Receives one message from `sock` into `buf`: its length (0 at end of file) and
/// the descriptor passed with it, if any (made close-on-exec).
pub fn recv_with_fd(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: CMSG_SPACE is arithmetic on a constant size.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) } as usize;
    let mut cbuf = vec![0u8; space];
    // SAFETY: msghdr is plain data; every pointer set below outlives recvmsg.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = space;
    let n = loop {
        // SAFETY: `msg` describes valid buffers.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let mut fd = None;
    // SAFETY: the kernel filled the control buffer; the CMSG macros walk it within
    // msg_controllen, and an SCM_RIGHTS header carries at least one int: a
    // descriptor the kernel just installed in this process, owned by nothing else.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if !cmsg.is_null() && (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
            fd = Some(OwnedFd::from_raw_fd(std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>())));
        }
    }
    Ok((n, fd))
}

/// A signal set with every signal.
fn full_sigset() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data, initialised by sigfillset.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t.
    unsafe { libc::sigfillset(&mut set) };
    set
}

/// Blocks SIGCHLD and returns a non-blocking, close-on-exec signalfd that reads it.
pub fn sigchld_fd() -> io::Result<OwnedFd> {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is valid; sigprocmask and signalfd read it.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        check(libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()))?;
        owned(libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC))
    }
}

/// Blocks every signal (the `--init` process waits for them with [`wait_signal`]).
pub fn block_all_signals() -> io::Result<()> {
    let set = full_sigset();
    // SAFETY: `set` is a valid sigset_t.
    check(unsafe { libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) }).map(|_| ())
}

/// Gives a process about to exec the signal state a new program expects: nothing
/// blocked, and SIGPIPE back to its default (Rust's runtime ignores it, and an
/// ignored signal stays ignored across execve).
pub fn reset_signals() {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset; signal() takes
    // a signal number and the default disposition.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Waits for any signal (all are blocked); returns its number.
pub fn wait_signal() -> i32 {
    let set = full_sigset();
    loop {
        // SAFETY: `set` is valid; the info pointer may be null.
        let sig = unsafe { libc::sigwaitinfo(&set, std::ptr::null_mut()) };
        if sig > 0 {
            return sig;
        }
    }
}

/// Empties a signalfd after it polled readable.
pub fn drain_signalfd(fd: BorrowedFd<'_>) {
    let mut buf = [0u8; 128 * 8];
    while matches!(read(fd, &mut buf), Ok(n) if n > 0) {}
}

/// waitpid(-1, WNOHANG): some exited child and its Docker-style exit code.
pub fn reap_any() -> Option<(libc::pid_t, i32)> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid int to write into.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return None;
        }
        if libc::WIFEXITED(status) {
            return Some((pid, libc::WEXITSTATUS(status)));
        }
        if libc::WIFSIGNALED(status) {
            return Some((pid, 128 + libc::WTERMSIG(status)));
        }
    }
}

/// kill(2).
pub fn kill(pid: libc::pid_t, sig: i32) {
    // SAFETY: plain integer arguments; failure (the process is gone) is harmless.
    unsafe { libc::kill(pid, sig) };
}

/// open(2) of a path with `flags` (close-on-exec is added).
pub fn open(path: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
    let p = cstr(path.as_os_str())?;
    // SAFETY: `p` is a NUL-terminated string that outlives the call.
    owned(unsafe { libc::open(p.as_ptr(), flags | libc::O_CLOEXEC) })
        .map_err(|e| io::Error::new(e.kind(), format!("open {}: {e}", path.display())))
}

/// setns(2) into the namespace `fd` refers to.
pub fn setns(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: an open descriptor and a constant.
    check(unsafe { libc::setns(fd.as_raw_fd(), 0) }).map(|_| ())
}

/// Opens a new pseudo-terminal from the `/dev/ptmx` of the current mount
/// namespace: (master, slave), both close-on-exec.
pub fn open_pty() -> io::Result<(OwnedFd, OwnedFd)> {
    let master = open(Path::new("/dev/ptmx"), libc::O_RDWR | libc::O_NOCTTY)?;
    let mut unlock: libc::c_int = 0;
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCSPTLCK reads an int and TIOCGPTN writes one; both point at locals.
    unsafe {
        check(libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &mut unlock))?;
        check(libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut n))?;
    }
    let slave = open(Path::new(&format!("/dev/pts/{n}")), libc::O_RDWR | libc::O_NOCTTY)?;
    Ok((master, slave))
}

/// The path of the pseudo-terminal `fd` is the slave of, as `/proc/self/fd` says.
pub fn fd_path(fd: BorrowedFd<'_>) -> io::Result<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Makes `fd` (a terminal) the controlling terminal of this session.
pub fn set_controlling_tty(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: TIOCSCTTY takes an integer argument.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0) }).map(|_| ())
}

/// Sets a terminal's window size.
pub fn set_winsize(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> io::Result<()> {
    let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads a winsize, which `ws` is.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) }).map(|_| ())
}

/// Puts this process in a process group of its own and, on a terminal, in the
/// foreground (the `--init` child, so that ^C reaches it and not the init).
pub fn own_foreground_group(tty: bool) {
    // SAFETY: plain integer arguments; SIGTTOU is blocked in the caller, so
    // tcsetpgrp from a background group does not stop it.
    unsafe {
        libc::setpgid(0, 0);
        if tty {
            libc::tcsetpgrp(0, libc::getpid());
        }
    }
}

/// One write(2); `WouldBlock` on a full non-blocking descriptor.
pub fn write_some(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: the pointer and length describe `buf`, which outlives the call.
        let n = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Closes `fd` in a process that never returns to the descriptor's owner: the
/// `--init` process after it forked the command (it waits for signals until it
/// ends with [`exit_now`], so the `OwnedFd` lent here is never dropped).
pub fn close_for_good(fd: BorrowedFd<'_>) {
    // SAFETY: closing an open descriptor that is not used, or closed, again (see above).
    unsafe { libc::close(fd.as_raw_fd()) };
}

/// Closes every descriptor from 3 up except `keep` (the `--init` process holds
/// nothing of the shim's). The caller must not use, or drop, any other
/// `OwnedFd` afterwards: it only runs in a child that never returns (it
/// executes or exits).
pub fn close_all_but(keep: BorrowedFd<'_>) {
    let keep = keep.as_raw_fd();
    // SAFETY: close_range takes plain integers; closing descriptors this process
    // no longer uses (see above).
    unsafe {
        if keep > 3 {
            libc::syscall(libc::SYS_close_range, 3u32, (keep - 1) as u32, 0u32);
        }
        libc::syscall(libc::SYS_close_range, (keep + 1).max(3) as u32, u32::MAX, 0u32);
    }
}

/// Sets whether the process is dumpable; a process that is not has its
/// /proc/PID entries owned by root and its `exe`, `mem` and `environ` closed
/// to anyone without CAP_SYS_PTRACE.
pub fn set_dumpable(on: bool) {
    // SAFETY: prctl(PR_SET_DUMPABLE, 0|1) takes plain integers.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, on as libc::c_ulong, 0, 0, 0) };
}

/// Makes this process a child subreaper: orphans among its descendants (a
/// container's init once `runc create` exits) become its children, not init's.
pub fn set_child_subreaper() -> io::Result<()> {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) takes plain integers.
    check(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) }).map(|_| ())
}

/// Sets the process's name (its `comm`, what `ps` shows).
pub fn set_name(name: &std::ffi::CStr) {
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of up to 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0) };
}

/// Brings the loopback interface of the current network namespace up (a new
/// namespace starts with it down).
pub fn loopback_up() -> io::Result<()> {
    // SAFETY: socket(2) with constant arguments.
    let sock = owned(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: ifreq is plain data; the name is copied within its 16 bytes and
    // SIOCGIFFLAGS/SIOCSIFFLAGS read and write the flags member of this struct.
    let r = unsafe {
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        check(libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req)).and_then(|_| {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            check(libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req))
        })
    };
    r.map(|_| ())
}
