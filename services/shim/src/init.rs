//! The container's init: what the shim's child does between fork and exec. It
//! enters new namespaces, mounts the overlay root and the spec's mounts, builds
//! `/dev`, pivots into the root, masks paths, applies rlimits, capabilities and
//! the user, and executes the command. Failures are sent to the shim over the
//! close-on-exec sync pipe as `CODE:message`; a successful exec closes it.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use berth_shim::protocol::Annotations;
use berth_shim::spec::{Capabilities, Process as SpecProcess, Seccomp, Spec};

use crate::sys;

/// Where a process's standard streams come from.
#[derive(Clone, Copy)]
pub enum Stdio<'a> {
    /// A TTY, opened inside the container; its master goes to the shim over the
    /// sync socket (message `pty`).
    Tty,
    /// Pipes (or /dev/null): stdin's read end, stdout's and stderr's write ends.
    Pipes(BorrowedFd<'a>, BorrowedFd<'a>, BorrowedFd<'a>),
}

/// What the container's init needs besides the spec.
pub struct InitArgs<'a> {
    /// The OCI spec (config.json).
    pub spec: &'a Spec,
    /// Its annotations: the overlay's layers, `--init`.
    pub annotations: &'a Annotations,
    /// The bundle directory.
    pub bundle: &'a Path,
    /// Its standard streams.
    pub stdio: Stdio<'a>,
    /// The sync socket: `pty` (with the master), `ready`, or `E<code>:<message>`
    /// go to the shim; one message back (the start) lets the command run. In a
    /// user namespace, `mapped` comes first, once the shim wrote its ID maps.
    pub sync: BorrowedFd<'a>,
    /// The shim mounted the root (in a user namespace; see [`crate::userns`])
    /// and made it the working directory; else the init mounts the overlay.
    pub root_mounted: bool,
    /// The spec's binds, made ready by the shim: one entry per mount, `None`
    /// for those that are not binds.
    pub binds: &'a [Option<PreparedBind>],
}

/// A bind made ready by the shim ([`prepare_binds`]): a detached copy of its
/// source with the spec's flags (and ID mapping) already set, attached by the
/// init at its destination. Made before the fork, with the shim's view of the
/// host, so the init needs no access to the source path (in a user namespace
/// it has none to the data root).
pub struct PreparedBind {
    /// The detached mount (close-on-exec).
    pub tree: OwnedFd,
    /// Whether the source is a directory (else a file: the mount point is one too).
    pub is_dir: bool,
}

/// Makes the spec's binds ready; `userns` idmaps those with the `idmap` (or
/// `ridmap`) option. The flags `ro`, `nosuid`, `nodev`, `noexec` are set on
/// every mount of a recursive bind, so `-v /:/host:ro` leaves no sub-mount
/// writable.
pub fn prepare_binds(spec: &Spec, userns: Option<BorrowedFd<'_>>) -> Result<Vec<Option<PreparedBind>>, InitError> {
    spec.mounts
        .iter()
        .map(|m| {
            let (flags, _) = parse_options(&m.options);
            if m.kind == "cgroup" || flags & libc::MS_BIND == 0 {
                return Ok(None);
            }
            let source = Path::new(&m.source);
            let Ok(meta) = std::fs::metadata(source) else {
                return Err(InitError(128, format!("bind source path does not exist: {}", m.source)));
            };
            let recursive = flags & libc::MS_REC != 0;
            let subpath = m.options.iter().find_map(|o| o.strip_prefix(berth_shim::protocol::SUBPATH_OPTION));
            let (tree, meta) = match subpath {
                None => (ctx(sys::clone_tree(source, recursive), || format!("bind {}", m.source))?, meta),
                // Resolved inside the source, so a symlink the container left
                // in its volume cannot lead the bind out of it.
                Some(rel) => {
                    let missing = |e: io::Error| {
                        InitError(128, format!("cannot access path {}/{rel} in the volume: {e}", m.source))
                    };
                    let root =
                        ctx(sys::open(source, libc::O_PATH | libc::O_DIRECTORY), || format!("open {}", m.source))?;
                    let at = sys::open_in_root(root.as_fd(), Path::new(rel)).map_err(missing)?;
                    let meta = std::fs::File::from(at.try_clone().map_err(missing)?).metadata().map_err(missing)?;
                    (ctx(sys::clone_tree_of(at.as_fd(), recursive), || format!("bind {}/{rel}", m.source))?, meta)
                }
            };
            let mut set = 0;
            for (flag, attr) in [
                (libc::MS_RDONLY, sys::attr::RDONLY),
                (libc::MS_NOSUID, sys::attr::NOSUID),
                (libc::MS_NODEV, sys::attr::NODEV),
                (libc::MS_NOEXEC, sys::attr::NOEXEC),
            ] {
                if flags & flag != 0 {
                    set |= attr;
                }
            }
            let userns = userns.filter(|_| m.options.iter().any(|o| o == "idmap" || o == "ridmap"));
            if userns.is_some() {
                set |= sys::attr::IDMAP;
            }
            let attrs = sys::MountAttrs { set, propagation: propagation(&m.options), userns, recursive };
            ctx(sys::set_mount_attrs(tree.as_fd(), &attrs), || format!("set up the bind of {}", m.source))?;
            Ok(Some(PreparedBind { tree, is_dir: meta.is_dir() }))
        })
        .collect()
}

/// A bind's propagation: private unless the options say `slave` or `shared`
/// (a copy of a shared host mount would otherwise join the host's peer group).
fn propagation(options: &[String]) -> u64 {
    let last = options.iter().rev().find_map(|o| match o.as_str() {
        "shared" | "rshared" => Some(libc::MS_SHARED),
        "slave" | "rslave" => Some(libc::MS_SLAVE),
        "private" | "rprivate" => Some(libc::MS_PRIVATE),
        _ => None,
    });
    last.unwrap_or(libc::MS_PRIVATE)
}

/// A setup failure: the exit code to report and a message.
pub struct InitError(pub i32, pub String);

impl From<io::Error> for InitError {
    fn from(e: io::Error) -> Self {
        InitError(128, e.to_string())
    }
}

fn ctx<T>(r: io::Result<T>, what: impl FnOnce() -> String) -> Result<T, InitError> {
    r.map_err(|e| InitError(128, format!("{}: {e}", what())))
}

use berth_shim::secure_join;

const FLAG_OPTIONS: [(&str, libc::c_ulong); 10] = [
    ("ro", libc::MS_RDONLY),
    ("nosuid", libc::MS_NOSUID),
    ("nodev", libc::MS_NODEV),
    ("noexec", libc::MS_NOEXEC),
    ("strictatime", libc::MS_STRICTATIME),
    ("relatime", libc::MS_RELATIME),
    ("noatime", libc::MS_NOATIME),
    ("bind", libc::MS_BIND),
    ("rbind", libc::MS_BIND | libc::MS_REC),
    ("sync", libc::MS_SYNCHRONOUS),
];

fn parse_options(options: &[String]) -> (libc::c_ulong, String) {
    let mut flags = 0;
    let mut data = Vec::new();
    for o in options {
        match FLAG_OPTIONS.iter().find(|(n, _)| n == o) {
            Some((_, f)) => flags |= f,
            None if matches!(o.as_str(), "rw" | "private" | "rprivate" | "newinstance" | "") => {
                if o == "newinstance" {
                    data.push(o.clone());
                }
            }
            None => data.push(o.clone()),
        }
    }
    (flags, data.join(","))
}

fn mount_all(rootfs: &Path, spec: &Spec, binds: &[Option<PreparedBind>], cgroups: &[PathBuf]) -> Result<(), InitError> {
    for (i, m) in spec.mounts.iter().enumerate() {
        let (dest, typ, source) = (m.destination.as_str(), m.kind.as_str(), m.source.as_str());
        if typ == "cgroup" {
            let (flags, _) = parse_options(&m.options);
            let target = ctx(secure_join(rootfs, Path::new(dest)), || format!("resolve {dest}"))?;
            mount_cgroups(&target, cgroups, flags & libc::MS_RDONLY != 0)?;
            continue;
        }
        let target = ctx(secure_join(rootfs, Path::new(dest)), || format!("resolve {dest}"))?;
        let (flags, data) = parse_options(&m.options);
        if flags & libc::MS_BIND == 0 {
            ctx(std::fs::create_dir_all(&target), || format!("create {}", target.display()))?;
            sys::mount(source, &target, Some(typ), flags, Some(&data))?;
            continue;
        }
        let Some(Some(bind)) = binds.get(i) else {
            return Err(InitError(128, format!("the bind of {source} was not made ready")));
        };
        if bind.is_dir {
            ctx(std::fs::create_dir_all(&target), || format!("create {}", target.display()))?;
        } else {
            if let Some(parent) = target.parent() {
                ctx(std::fs::create_dir_all(parent), || format!("create {}", parent.display()))?;
            }
            if std::fs::symlink_metadata(&target).is_err() {
                ctx(std::fs::write(&target, b""), || format!("create {}", target.display()))?;
            }
        }
        ctx(sys::move_mount(bind.tree.as_fd(), &target), || format!("bind {source} on {dest}"))?;
    }
    Ok(())
}

/// The container's `/sys/fs/cgroup` at `target`: its own cgroups, as runc
/// shows them without a cgroup namespace. On a v2 host its directory is the
/// root there; on a v1 (or hybrid) host a tmpfs holds one directory per
/// hierarchy, each the container's own directory of it (`memory/`, `pids/`,
/// ...). Read-only unless privileged; so a program reads its own limits, and a
/// privileged one (Berth itself, in a container) manages cgroups below its own.
/// `cgroups` are the container's directories, `<root>/[<hierarchy>/]berth/<id>`.
fn mount_cgroups(target: &Path, cgroups: &[PathBuf], read_only: bool) -> Result<(), InitError> {
    let ro = if read_only { libc::MS_RDONLY } else { 0 };
    let base = |dir: &Path| dir.parent().and_then(Path::parent).map(Path::to_path_buf);
    let v2 = cgroups.len() == 1 && base(&cgroups[0]).is_some_and(|b| b.join("cgroup.controllers").exists());
    ctx(std::fs::create_dir_all(target), || format!("create {}", target.display()))?;
    let bind = |dir: &Path, at: &Path| -> Result<(), InitError> {
        let src = dir.to_string_lossy();
        sys::mount(&src, at, None, libc::MS_BIND, None)?;
        if read_only {
            // nosuid, nodev and noexec too: in a user namespace the flags the
            // host's cgroup mount has are locked, and a remount must keep them.
            let locked = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
            sys::mount("", at, None, libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | locked, None)?;
        }
        Ok(())
    };
    if v2 {
        return bind(&cgroups[0], target);
    }
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    sys::mount("tmpfs", target, Some("tmpfs"), flags, Some("mode=755"))?;
    for dir in cgroups {
        let Some(name) = base(dir).and_then(|b| b.file_name().map(|n| n.to_owned())) else { continue };
        let at = target.join(name);
        ctx(std::fs::create_dir_all(&at), || format!("create {}", at.display()))?;
        bind(dir, &at)?;
    }
    if ro != 0 {
        sys::mount("", target, None, libc::MS_REMOUNT | flags | ro, Some("mode=755"))?;
    }
    Ok(())
}

/// Binds the host's node at `host` on `target` (made an empty file first):
/// in a user namespace no device node can be made, so, as runc does, the
/// host's own are bound in.
fn bind_host_node(host: &Path, target: &Path) -> Result<(), InitError> {
    let _ = std::fs::remove_file(target);
    ctx(std::fs::write(target, b""), || format!("create {}", target.display()))?;
    sys::mount(&host.to_string_lossy(), target, None, libc::MS_BIND, None)?;
    Ok(())
}

fn make_dev(rootfs: &Path, userns: bool) -> Result<(), InitError> {
    let dev = rootfs.join("dev");
    for (name, major, minor) in
        [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)]
    {
        let p = dev.join(name);
        if userns {
            bind_host_node(&Path::new("/dev").join(name), &p)?;
            continue;
        }
        let _ = std::fs::remove_file(&p);
        ctx(sys::mknod_char(&p, 0o666, major, minor), || format!("mknod {}", p.display()))?;
        // mknod is subject to the umask; make the mode exact.
        ctx(std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o666)), || {
            format!("chmod {}", p.display())
        })?;
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
        ("core", "/proc/kcore"),
    ] {
        let p = dev.join(link);
        let _ = std::fs::remove_file(&p);
        ctx(std::os::unix::fs::symlink(target, &p), || format!("symlink {}", p.display()))?;
    }
    let console = dev.join("console");
    if std::fs::symlink_metadata(&console).is_err() {
        // A terminal is bound over it later (see `tty_stdio`).
        if userns {
            ctx(std::fs::write(&console, b""), || "create /dev/console".into())?;
        } else {
            ctx(sys::mknod_char(&console, 0o620, 5, 1), || "mknod /dev/console".into())?;
        }
    }
    Ok(())
}

/// The spec's device nodes (`--device`, a privileged container's host
/// devices), made in the container's `/dev` with their mode and owner. Paths
/// resolve inside the root: a symlink in the image cannot send a node onto
/// the host. In a user namespace the host's node at the same path is bound
/// in instead, and must be that device.
fn make_devices(rootfs: &Path, spec: &Spec, userns: bool) -> Result<(), InitError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    for d in &spec.linux.devices {
        let kind = match d.kind.as_str() {
            "c" | "u" => libc::S_IFCHR,
            "b" => libc::S_IFBLK,
            other => return Err(InitError(128, format!("device {}: unknown type {other:?}", d.path))),
        };
        // The parent resolves inside the root; the node replaces whatever is
        // at the last component (a symlink is replaced, not followed).
        let rel = Path::new(&d.path);
        let name = rel.file_name().ok_or_else(|| InitError(128, format!("device path {:?}", d.path)))?;
        let parent = rel.parent().unwrap_or(Path::new("/"));
        let parent = ctx(secure_join(rootfs, parent), || format!("resolve {}", d.path))?;
        ctx(std::fs::create_dir_all(&parent), || format!("create {}", parent.display()))?;
        let path = parent.join(name);
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            return Err(InitError(128, format!("device {}: a directory is in the way", d.path)));
        }
        if userns {
            let host = std::fs::metadata(rel).ok().filter(|m| {
                let same_kind = if kind == libc::S_IFBLK {
                    m.file_type().is_block_device()
                } else {
                    m.file_type().is_char_device()
                };
                same_kind && m.rdev() == libc::makedev(d.major, d.minor)
            });
            if host.is_none() {
                return Err(InitError(
                    128,
                    format!("device {}: in a user namespace only a host device at the same path can be used", d.path),
                ));
            }
            bind_host_node(rel, &path)?;
            continue;
        }
        let _ = std::fs::remove_file(&path);
        let mode = d.file_mode.unwrap_or(0o666) & 0o7777;
        ctx(sys::mknod(&path, kind | mode, d.major, d.minor), || format!("mknod {}", d.path))?;
        // mknod is subject to the umask; make the mode exact.
        ctx(std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)), || format!("chmod {}", d.path))?;
        ctx(std::os::unix::fs::chown(&path, d.uid, d.gid), || format!("chown {}", d.path))?;
    }
    Ok(())
}

fn mask_and_protect(spec: &Spec) -> Result<(), InitError> {
    for p in &spec.linux.masked_paths {
        let path = Path::new(p);
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => sys::mount("tmpfs", path, Some("tmpfs"), libc::MS_RDONLY, None)?,
            Ok(_) => sys::mount("/dev/null", path, None, libc::MS_BIND, None)?,
            Err(_) => {}
        }
    }
    for p in &spec.linux.readonly_paths {
        let path = Path::new(p);
        if path.exists() {
            sys::mount(p, path, None, libc::MS_BIND | libc::MS_REC, None)?;
            sys::mount("", path, None, libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_REC, None)?;
        }
    }
    Ok(())
}

const RLIMITS: [(&str, libc::__rlimit_resource_t); 16] = [
    ("RLIMIT_CPU", libc::RLIMIT_CPU),
    ("RLIMIT_FSIZE", libc::RLIMIT_FSIZE),
    ("RLIMIT_DATA", libc::RLIMIT_DATA),
    ("RLIMIT_STACK", libc::RLIMIT_STACK),
    ("RLIMIT_CORE", libc::RLIMIT_CORE),
    ("RLIMIT_RSS", libc::RLIMIT_RSS),
    ("RLIMIT_NPROC", libc::RLIMIT_NPROC),
    ("RLIMIT_NOFILE", libc::RLIMIT_NOFILE),
    ("RLIMIT_MEMLOCK", libc::RLIMIT_MEMLOCK),
    ("RLIMIT_AS", libc::RLIMIT_AS),
    ("RLIMIT_LOCKS", libc::RLIMIT_LOCKS),
    ("RLIMIT_SIGPENDING", libc::RLIMIT_SIGPENDING),
    ("RLIMIT_MSGQUEUE", libc::RLIMIT_MSGQUEUE),
    ("RLIMIT_NICE", libc::RLIMIT_NICE),
    ("RLIMIT_RTPRIO", libc::RLIMIT_RTPRIO),
    ("RLIMIT_RTTIME", libc::RLIMIT_RTTIME),
];

fn find_executable(arg0: &str, env: &[String]) -> Result<PathBuf, InitError> {
    let not_found = || InitError(127, format!("exec: \"{arg0}\": executable file not found in $PATH"));
    if arg0.contains('/') {
        return if Path::new(arg0).exists() {
            Ok(PathBuf::from(arg0))
        } else {
            Err(InitError(127, format!("exec: \"{arg0}\": stat {arg0}: no such file or directory")))
        };
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':') {
        let candidate = Path::new(dir).join(arg0);
        if let Ok(m) = std::fs::metadata(&candidate)
            && m.is_file()
        {
            return Ok(candidate);
        }
    }
    Err(not_found())
}

/// What a process becomes: the spec's `process` for the init, an exec's request
/// for an exec.
pub struct Process {
    /// The command and its arguments.
    pub args: Vec<String>,
    /// `KEY=value` pairs.
    pub env: Vec<String>,
    /// The working directory inside the container.
    pub cwd: String,
    /// The user, group and supplementary groups.
    pub uid: u32,
    /// See `uid`.
    pub gid: u32,
    /// See `uid`.
    pub groups: Vec<u32>,
}

impl Process {
    /// The spec's `process`.
    pub fn from_spec(spec: &Spec) -> Self {
        let p = &spec.process;
        Process {
            args: p.args.clone(),
            env: p.env.clone(),
            cwd: p.cwd.clone(),
            uid: p.user.uid,
            gid: p.user.gid,
            groups: p.user.additional_gids.clone(),
        }
    }
}

/// Sets up the container and executes its command. Returns only on failure.
pub fn run(a: &InitArgs<'_>) -> InitError {
    match setup_and_exec(a) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

enum Never {}

/// Moves process `pid` (0: the caller) into the container's cgroups. On cgroup
/// v1 the first move costs the kernel a grace period (about 10 ms here), so the
/// shim does it for the init while the init sets itself up.
pub fn join_cgroups(cgroups: &[PathBuf], pid: libc::pid_t) -> Result<(), InitError> {
    for dir in cgroups {
        ctx(std::fs::write(dir.join("cgroup.procs"), pid.to_string()), || format!("join cgroup {}", dir.display()))?;
    }
    Ok(())
}

fn pipe_stdio(stdin: BorrowedFd<'_>, stdout: BorrowedFd<'_>, stderr: BorrowedFd<'_>) -> Result<(), InitError> {
    sys::dup2(stdin, 0)?;
    sys::dup2(stdout, 1)?;
    sys::dup2(stderr, 2)?;
    Ok(())
}

/// Opens a TTY in the current mount namespace, makes it the controlling terminal
/// and the standard streams of a new session, and hands its master to the shim.
fn tty_stdio(sync: BorrowedFd<'_>, console: bool) -> Result<(), InitError> {
    let (master, slave) = ctx(sys::open_pty(), || "open a pseudo-terminal".into())?;
    if console && let Ok(path) = sys::fd_path(slave.as_fd()) {
        // /dev/console is the container's terminal too, as runc makes it.
        let _ = sys::mount(&path.to_string_lossy(), Path::new("/dev/console"), None, libc::MS_BIND, None);
    }
    sys::setsid();
    ctx(sys::set_controlling_tty(slave.as_fd()), || "set the controlling terminal".into())?;
    pipe_stdio(slave.as_fd(), slave.as_fd(), slave.as_fd())?;
    drop(slave);
    ctx(sys::send_fd(sync, b"pty", master.as_fd()), || "hand the terminal to the shim".into())?;
    Ok(())
}

/// Mounts the container's overlay (its image layers under its writable layer)
/// on the spec's root path; that path.
pub fn mount_rootfs(bundle: &Path, spec: &Spec, ann: &Annotations) -> Result<PathBuf, InitError> {
    let rootfs = bundle.join(&spec.root.path);
    ctx(std::fs::create_dir_all(&rootfs), || format!("create {}", rootfs.display()))?;
    let lower: Vec<String> = ann.lowerdirs.iter().map(|d| d.to_string_lossy().into_owned()).collect();
    let overlay =
        format!("lowerdir={},upperdir={},workdir={}", lower.join(":"), ann.upperdir.display(), ann.workdir.display());
    sys::mount("overlay", &rootfs, Some("overlay"), 0, Some(&overlay))?;
    Ok(rootfs)
}

/// Enters the root the shim mounted, the working directory (which the new
/// mount namespace moved onto its own copy of the mount; descriptors would
/// still name the shim's): a copy of it is attached on top of it (the one the
/// namespace came with is locked, from a more privileged namespace, and
/// pivot_root refuses it) and becomes the working directory. Its path is ".".
fn enter_root() -> Result<PathBuf, InitError> {
    let copy = ctx(sys::clone_tree(Path::new("."), true), || "copy the root mount".into())?;
    ctx(sys::move_mount(copy.as_fd(), Path::new(".")), || "attach the root mount".into())?;
    ctx(sys::fchdir(copy.as_fd()), || "enter the root".into())?;
    Ok(PathBuf::from("."))
}

/// A container's filesystem mounted for the runtime to read or write through
/// `/proc/PID/root` (`berth-shim --root-view`): the overlay of its layers
/// (read-only without an upper directory) at `target`, and binds on top.
///
/// Arguments: `--target DIR --lower DIR[:DIR...] [--upper DIR --work DIR]
/// [--bind SOURCE:DEST:ro|rw]...`.
#[derive(Debug, Default, PartialEq)]
pub struct RootView {
    target: PathBuf,
    lower: Vec<PathBuf>,
    upper: Option<(PathBuf, PathBuf)>,
    binds: Vec<(PathBuf, PathBuf, bool)>,
}

impl RootView {
    /// Reads the arguments.
    pub fn parse(args: &[String]) -> Result<RootView, String> {
        let mut view = RootView::default();
        let (mut upper, mut work) = (None, None);
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--target" => view.target = PathBuf::from(value),
                "--lower" => view.lower = value.split(':').filter(|s| !s.is_empty()).map(PathBuf::from).collect(),
                "--upper" => upper = Some(PathBuf::from(value)),
                "--work" => work = Some(PathBuf::from(value)),
                "--bind" => {
                    let mut parts = value.rsplitn(3, ':');
                    let (mode, dest, source) = (parts.next(), parts.next(), parts.next());
                    let (Some(mode), Some(dest), Some(source)) = (mode, dest, source) else {
                        return Err(format!("--bind {value}: want SOURCE:DEST:ro|rw"));
                    };
                    view.binds.push((PathBuf::from(source), PathBuf::from(dest), mode == "ro"));
                }
                other => return Err(format!("unknown flag {other}")),
            }
        }
        view.upper = match (upper, work) {
            (Some(u), Some(w)) => Some((u, w)),
            (None, None) => None,
            _ => return Err("--upper and --work go together".into()),
        };
        if !view.target.is_absolute() || view.lower.is_empty() {
            return Err("--target (absolute) and --lower are required".into());
        }
        Ok(view)
    }

    /// Mounts it all in a new mount namespace; nothing shows on the host.
    pub fn mount(&self) -> Result<(), String> {
        let err = |e: InitError| e.1;
        ctx(sys::unshare(libc::CLONE_NEWNS), || "unshare the mount namespace".into()).map_err(err)?;
        sys::mount("", Path::new("/"), None, libc::MS_REC | libc::MS_PRIVATE, None)
            .map_err(|e| format!("make / private: {e}"))?;
        std::fs::create_dir_all(&self.target).map_err(|e| format!("create {}: {e}", self.target.display()))?;
        let lower: Vec<String> = self.lower.iter().map(|d| d.to_string_lossy().into_owned()).collect();
        let (flags, options) = match &self.upper {
            Some((upper, work)) => {
                (0, format!("lowerdir={},upperdir={},workdir={}", lower.join(":"), upper.display(), work.display()))
            }
            None => (libc::MS_RDONLY, format!("lowerdir={}", lower.join(":"))),
        };
        sys::mount("overlay", &self.target, Some("overlay"), flags, Some(&options))
            .map_err(|e| format!("mount the overlay: {e}"))?;
        for (source, dest, ro) in &self.binds {
            let target = secure_join(&self.target, dest).map_err(|e| format!("resolve {}: {e}", dest.display()))?;
            let is_dir = std::fs::metadata(source).map(|m| m.is_dir()).unwrap_or(false);
            if !std::fs::exists(&target).unwrap_or(false) {
                // Only where the container had the mount point: nothing new
                // is made in its layer for a view.
                continue;
            }
            if is_dir != std::fs::metadata(&target).map(|m| m.is_dir()).unwrap_or(false) {
                continue;
            }
            sys::mount(&source.to_string_lossy(), &target, None, libc::MS_BIND | libc::MS_REC, None)
                .map_err(|e| format!("bind {} on {}: {e}", source.display(), dest.display()))?;
            if *ro {
                let remount = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
                sys::mount("", &target, None, remount, None)
                    .map_err(|e| format!("make {} read-only: {e}", dest.display()))?;
            }
        }
        Ok(())
    }
}

fn setup_and_exec(a: &InitArgs<'_>) -> Result<Never, InitError> {
    let spec = a.spec;
    sys::reset_signals();
    // Until its execve this process is the host's berth-shim binary, in the
    // container's PID namespace (and an `--init` process stays it): not
    // dumpable, so no container process without CAP_SYS_PTRACE can open its
    // /proc/PID/exe (the CVE-2019-5736 class). execve makes the command
    // dumpable again.
    sys::set_dumpable(false);
    // The shim moves us into the container's cgroups meanwhile (see
    // `join_cgroups`); it is done before the shim lets the command run.
    if let Stdio::Pipes(i, o, e) = a.stdio {
        pipe_stdio(i, o, e)?;
    }
    let userns = spec.has_namespace("user");
    if userns {
        // Born in the container's user namespace (see `crate::userns`): once
        // the shim has written its maps, become its root.
        let mut msg = [0u8; 16];
        if !matches!(sys::read(a.sync, &mut msg), Ok(n) if &msg[..n] == b"mapped") {
            return Err(InitError(125, "the shim went away before mapping the user namespace".into()));
        }
        ctx(sys::set_ids(0, 0, &[]), || "become root of the user namespace".into())?;
    }
    let mut flags = libc::CLONE_NEWNS;
    let mut joins = Vec::new();
    for ns in &spec.linux.namespaces {
        let flag = match ns.kind.as_str() {
            "uts" => libc::CLONE_NEWUTS,
            "ipc" => libc::CLONE_NEWIPC,
            "network" => libc::CLONE_NEWNET,
            _ => 0,
        };
        if flag == 0 {
            continue;
        }
        if ns.path.is_empty() {
            flags |= flag;
        } else {
            // Another container's (`--network container:NAME`, `--ipc container:NAME`).
            let fd = ctx(sys::open(Path::new(&ns.path), libc::O_RDONLY), || format!("open {}", ns.path))?;
            joins.push((fd, ns.kind.clone()));
        }
    }
    for (fd, kind) in &joins {
        ctx(sys::setns(fd.as_fd()), || format!("join the {kind} namespace"))?;
    }
    ctx(sys::unshare(flags), || "unshare namespaces".into())?;
    if flags & libc::CLONE_NEWNET != 0 {
        ctx(sys::loopback_up(), || "bring lo up".into())?;
    }
    sys::mount("", Path::new("/"), None, libc::MS_REC | libc::MS_PRIVATE, None)?;

    let ann = a.annotations;
    let rootfs = if a.root_mounted { enter_root()? } else { mount_rootfs(a.bundle, spec, ann)? };
    if spec.has_namespace("uts") && !spec.hostname.is_empty() {
        ctx(sys::sethostname(&spec.hostname), || "sethostname".into())?;
    }
    if spec.has_namespace("uts") && !spec.domainname.is_empty() {
        ctx(sys::setdomainname(&spec.domainname), || "setdomainname".into())?;
    }
    mount_all(&rootfs, spec, a.binds, &a.annotations.cgroups)?;
    make_dev(&rootfs, userns)?;
    make_devices(&rootfs, spec, userns)?;

    ctx(std::env::set_current_dir(&rootfs), || "chdir to rootfs".into())?;
    ctx(sys::pivot_root_here(), || "pivot_root".into())?;
    ctx(sys::umount2(Path::new("."), libc::MNT_DETACH), || "detach the old root".into())?;
    ctx(std::env::set_current_dir("/"), || "chdir /".into())?;
    if matches!(a.stdio, Stdio::Tty) {
        tty_stdio(a.sync, true)?;
    }
    // Written in the container's own /proc, before /proc/sys is made
    // read-only (as runc): /proc/sys/net and the IPC parameters are those of
    // the namespaces of the process that writes, this one's. (Berth's own
    // /proc/sys may be read-only: Berth in a container.)
    for (key, value) in &spec.linux.sysctl {
        if key.contains('/') || key.contains("..") {
            return Err(InitError(128, format!("invalid sysctl {key:?}")));
        }
        let path = Path::new("/proc/sys").join(key.replace('.', "/"));
        ctx(std::fs::write(&path, value), || format!("write sysctl {key}"))?;
    }
    mask_and_protect(spec)?;
    if spec.root.readonly {
        sys::mount("", Path::new("/"), None, libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_REC, None)?;
    }
    let process = Process::from_spec(spec);
    let exe = prepare(spec, &process)?;
    // The barrier: the container exists; its command runs when the shim says so.
    ctx(sys::write_all(a.sync, b"ready"), || "report ready".into())?;
    let mut go = [0u8; 8];
    if !matches!(sys::read(a.sync, &mut go), Ok(n) if n > 0) {
        return Err(InitError(125, "the shim went away before the start".into()));
    }
    if ann.init {
        if process.uid != 0 {
            // A command that is not root gains nothing through its execve but
            // its ambient set; the init that stays behind keeps no more.
            let caps = &spec.process.capabilities;
            let mask = |names: &[String]| Capabilities::mask(names).map_err(|e| InitError(128, e));
            let inheritable = mask(&caps.inheritable)?;
            let ambient = mask(&caps.ambient)? & inheritable;
            ctx(sys::capset(ambient, ambient, inheritable), || "set the init's capabilities".into())?;
        }
        return init_and_exec(a.sync, &exe, &process, matches!(a.stdio, Stdio::Tty));
    }
    exec(&exe, &process)
}

/// What an exec needs: the container's spec and init, its own process and stdio.
pub struct ExecArgs<'a> {
    /// The container's OCI spec.
    pub spec: &'a Spec,
    /// The container's cgroup directories.
    pub cgroups: &'a [PathBuf],
    /// The container's init, whose namespaces the exec joins.
    pub init_pid: libc::pid_t,
    /// The process to run.
    pub process: &'a Process,
    /// Its standard streams.
    pub stdio: Stdio<'a>,
    /// The sync socket (`pty` and `E<code>:<message>` messages; closed by the exec).
    pub sync: BorrowedFd<'a>,
}

/// Runs an exec: joins the container's cgroups and namespaces (the shim's
/// children are already in its PID namespace), then becomes the process.
/// Returns only on failure.
pub fn exec_in(a: &ExecArgs<'_>) -> InitError {
    match exec_setup(a) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

fn exec_setup(a: &ExecArgs<'_>) -> Result<Never, InitError> {
    sys::reset_signals();
    // As for the init (see `setup_and_exec`): the host binary stays out of reach.
    sys::set_dumpable(false);
    join_cgroups(a.cgroups, 0)?;
    if let Stdio::Pipes(i, o, e) = a.stdio {
        pipe_stdio(i, o, e)?;
    }
    // The user namespace first: it owns the others, and joining it gives the
    // capabilities to join them.
    let mut kinds = vec![];
    if a.spec.has_namespace("user") {
        kinds.push("user");
    }
    for n in &a.spec.linux.namespaces {
        match n.kind.as_str() {
            "ipc" => kinds.push("ipc"),
            "uts" => kinds.push("uts"),
            "network" => kinds.push("net"),
            _ => {}
        }
    }
    // The mount namespace last: joining it also moves our root into the container.
    kinds.push("mnt");
    let fds: Vec<OwnedFd> = kinds
        .iter()
        .map(|k| {
            let path = PathBuf::from(format!("/proc/{}/ns/{k}", a.init_pid));
            ctx(sys::open(&path, libc::O_RDONLY), || format!("open {}", path.display()))
        })
        .collect::<Result<_, _>>()?;
    for (fd, kind) in fds.into_iter().zip(&kinds) {
        ctx(sys::setns(fd.as_fd()), || format!("join the container's {kind} namespace"))?;
        if *kind == "user" {
            ctx(sys::set_ids(0, 0, &[]), || "become root of the user namespace".into())?;
        }
    }
    if matches!(a.stdio, Stdio::Tty) {
        tty_stdio(a.sync, false)?;
    }
    let exe = prepare(a.spec, a.process)?;
    exec(&exe, a.process)
}

/// Everything before execve that can fail in ways the user should hear about:
/// rlimits, the working directory, capabilities, the user, and finding the
/// executable (127 when it is not there).
fn prepare(spec: &Spec, p: &Process) -> Result<CString, InitError> {
    for r in &spec.process.rlimits {
        let Some((_, res)) = RLIMITS.iter().find(|(n, _)| *n == r.kind) else {
            return Err(InitError(128, format!("unknown rlimit {}", r.kind)));
        };
        ctx(sys::setrlimit(*res, r.soft, r.hard), || format!("setrlimit {}", r.kind))?;
    }
    let cwd = p.cwd.as_str();
    if std::fs::create_dir_all(cwd).is_err() || std::env::set_current_dir(cwd).is_err() {
        return Err(InitError(
            126,
            format!("chdir to cwd (\"{cwd}\") set in config.json failed: no such file or directory"),
        ));
    }
    set_privileges(&spec.process, spec.linux.seccomp.as_ref(), p)?;
    let arg0 = p.args.first().cloned().ok_or_else(|| InitError(127, "no command specified".into()))?;
    let exe = find_executable(&arg0, &p.env)?;
    Ok(sys::cstr(exe.as_os_str())?)
}

/// The process's user and every capability set, as runc sets them: the
/// bounding set is cut first (every capability number the kernel could know,
/// not only those Berth has names for), the user is changed keeping the
/// permitted set, then effective, permitted, inheritable and ambient are set
/// exactly, and `no_new_privs` last. What holds before execve is what an
/// `--init` process keeps for the container's life, so it holds no more than
/// the command does.
fn set_privileges(spec: &SpecProcess, seccomp: Option<&Seccomp>, p: &Process) -> Result<(), InitError> {
    // The seccomp filter first, while the process still holds CAP_SYS_ADMIN (it
    // needs it without no_new_privs); what follows (prctl, setgroups, setgid,
    // setuid, capset, execve) is allowed by any profile that lets a container
    // start, as with runc.
    if let Some(filter) = seccomp {
        crate::seccomp::load(filter).map_err(|e| InitError(128, e))?;
    }
    let caps = &spec.capabilities;
    let mask = |names: &[String]| Capabilities::mask(names).map_err(|e| InitError(128, e));
    // What this process may hold at all: Berth itself can run with a reduced
    // set (in a container, say), and `--privileged` asks for every capability
    // the kernel knows, so the container gets those it can have, as dockerd.
    let held = current_permitted();
    let (bounding, effective, permitted) =
        (mask(&caps.bounding)?, mask(&caps.effective)? & held, mask(&caps.permitted)? & held);
    let (inheritable, ambient) = (mask(&caps.inheritable)? & held, mask(&caps.ambient)? & held);
    for n in (0..64u32).filter(|n| bounding & (1u64 << n) == 0) {
        ctx(sys::drop_bounding_cap(n), || format!("drop capability {n} from the bounding set"))?;
    }
    ctx(sys::keep_caps(true), || "keep capabilities".into())?;
    ctx(sys::set_ids(p.uid, p.gid, &p.groups), || "set user".into())?;
    ctx(sys::keep_caps(false), || "keep capabilities".into())?;
    ctx(sys::capset(effective, permitted, inheritable), || "set capabilities".into())?;
    ctx(sys::set_ambient(ambient & permitted & inheritable), || "set ambient capabilities".into())?;
    if spec.no_new_privileges {
        ctx(sys::no_new_privs(), || "set no_new_privs".into())?;
    }
    Ok(())
}

/// This process's permitted capabilities (`CapPrm` of /proc/self/status);
/// every capability when it cannot be read.
fn current_permitted() -> u64 {
    own_caps("CapPrm").unwrap_or(u64::MAX)
}

/// One of this process's capability sets (`CapPrm`, `CapInh`, ... of
/// /proc/self/status).
pub fn own_caps(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':').and_then(|v| u64::from_str_radix(v.trim(), 16).ok()))
}

fn exec(exe: &CString, p: &Process) -> Result<Never, InitError> {
    let c = |s: &str| sys::cstr(s).map_err(InitError::from);
    let argv: Vec<CString> = p.args.iter().map(|s| c(s)).collect::<Result<_, _>>()?;
    let envp: Vec<CString> = p.env.iter().map(|s| c(s)).collect::<Result<_, _>>()?;
    let err = sys::execve(exe, &argv, &envp);
    let code = if err.raw_os_error() == Some(libc::EACCES) { 126 } else { 127 };
    let arg0 = p.args.first().map(String::as_str).unwrap_or_default();
    // Lower case, as runc words it: the docker CLI maps "permission denied" to 126.
    Err(InitError(code, format!("exec: \"{arg0}\": {}", err.to_string().to_lowercase())))
}

/// `--init`: stays PID 1, runs the command as its child, forwards every signal
/// to it, reaps every zombie, and exits with the command's status (128 + N for a
/// signal), like docker-init (tini). It needs no binary in the image: it is this
/// already-running process.
fn init_and_exec(sync: BorrowedFd<'_>, exe: &CString, p: &Process, tty: bool) -> Result<Never, InitError> {
    ctx(sys::block_all_signals(), || "block signals".into())?;
    sys::close_all_but(sync);
    let child = match ctx(sys::fork(), || "fork the command".into())? {
        sys::Forked::Child => {
            sys::own_foreground_group(tty);
            sys::reset_signals();
            let InitError(code, msg) = match exec(exe, p) {
                Ok(never) => match never {},
                Err(e) => e,
            };
            let _ = sys::write_all(sync, format!("E{code}:{msg}").as_bytes());
            sys::exit_now(code);
        }
        sys::Forked::Parent(pid) => pid,
    };
    // The command holds the sync socket until its execve closes it.
    sys::close_for_good(sync);
    sys::set_name(c"docker-init");
    loop {
        let sig = sys::wait_signal();
        if sig != libc::SIGCHLD {
            sys::kill(child, sig);
            continue;
        }
        while let Some((pid, code)) = sys::reap_any() {
            if pid == child {
                sys::exit_now(code);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_view_arguments() {
        let args = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        let v = RootView::parse(&args(
            "--target /b/rootfs --lower /l/2:/l/1 --upper /b/u --work /b/w --bind /v/data:/srv/x:ro",
        ))
        .expect("parse");
        assert_eq!(v.lower, [PathBuf::from("/l/2"), PathBuf::from("/l/1")]);
        assert_eq!(v.upper, Some((PathBuf::from("/b/u"), PathBuf::from("/b/w"))));
        assert_eq!(v.binds, [(PathBuf::from("/v/data"), PathBuf::from("/srv/x"), true)]);
        assert!(RootView::parse(&args("--target /b/rootfs --lower /l --upper /b/u")).is_err(), "work missing");
        assert!(RootView::parse(&args("--target rel --lower /l")).is_err(), "relative target");
        assert!(RootView::parse(&args("--target /t --lower /l --bind nocolon")).is_err());
        assert!(RootView::parse(&args("--target /t --lower")).is_err());
    }

    #[test]
    fn secure_join_stays_inside() {
        let root = tempfile_dir();
        std::fs::create_dir_all(root.join("real/dir")).expect("mkdir");
        std::os::unix::fs::symlink("/etc", root.join("abs")).expect("symlink");
        std::os::unix::fs::symlink("../../../../..", root.join("real/up")).expect("symlink");
        std::os::unix::fs::symlink("real/dir", root.join("rel")).expect("symlink");
        assert_eq!(secure_join(&root, Path::new("/abs/passwd")).ok(), Some(root.join("etc/passwd")));
        assert_eq!(secure_join(&root, Path::new("/real/up/tmp")).ok(), Some(root.join("tmp")));
        assert_eq!(secure_join(&root, Path::new("/rel/x")).ok(), Some(root.join("real/dir/x")));
        assert_eq!(secure_join(&root, Path::new("/../../x")).ok(), Some(root.join("x")));
        std::fs::remove_dir_all(&root).expect("cleanup");
    }

    fn tempfile_dir() -> PathBuf {
        let p = std::env::temp_dir().join(format!("berth-shim-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("mkdir");
        p
    }

    #[test]
    fn options_split_into_flags_and_data() {
        let (flags, data) = parse_options(&["nosuid".into(), "mode=755".into(), "size=65536k".into(), "ro".into()]);
        assert_eq!(flags, libc::MS_NOSUID | libc::MS_RDONLY);
        assert_eq!(data, "mode=755,size=65536k");
    }
}
