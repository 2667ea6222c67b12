//! What the shim shares with the runtime service: facts about the kernel and the
//! control protocol that both sides must agree on. The shim itself is the
//! `berth-shim` binary.

#![forbid(unsafe_code)]

pub mod messages;
pub mod spec;

/// Linux capability names (without `CAP_`), in kernel numbering order: the index
/// is the capability's number.
pub const CAPABILITIES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The shim's control protocol, spoken over the unix socket [`protocol::SOCKET`]
/// in the bundle directory.
///
/// Every connection starts with one request, a JSON object on one line, and one
/// reply line (`{"ok":true,...}` or `{"ok":false,"code":N,"error":"..."}`):
///
/// | `op`      | fields                                   | afterwards |
/// |-----------|------------------------------------------|------------|
/// | `attach`  | `stdin`, `stdout`, `stderr` (bools)      | a stream: output frames out, input frames in |
/// | `start`   |                                          | closed; the reply says whether the command was executed |
/// | `wait`    |                                          | the reply comes when the container's init exits, with `ExitCode` |
/// | `resize`  | `height`, `width`, `exec` (ID or empty)  | closed |
/// | `exec`    | `id`, `args`, `env`, `cwd`, `uid`, `gid`, `groups`, `tty`, `stdin`, `detach` | unless detached, the exec's stream, ending with an [`EXIT`](protocol::EXIT) frame |
///
/// A stream is a sequence of frames with Docker's 8-byte header (`kind, 0, 0, 0`,
/// big-endian length) and a payload. The shim sends [`STDOUT`](protocol::STDOUT),
/// [`STDERR`](protocol::STDERR) and, for an exec, [`EXIT`](protocol::EXIT); the
/// client sends [`STDIN`](protocol::STDIN) and [`CLOSE_STDIN`](protocol::CLOSE_STDIN).
/// A client that just goes away (a detach) leaves the process's stdin open.
pub mod protocol {
    pub use crate::messages::{Annotations, ExecRequest, ExitRecord, Reply, Request, files, keys};

    /// The socket's file name in the bundle.
    pub const SOCKET: &str = "ctl.sock";
    /// A bind option, `berth.subpath=REL`: mount `REL` inside the source
    /// (resolved in it, never out of it) instead of the source itself.
    pub const SUBPATH_OPTION: &str = "berth.subpath=";
    pub use berth_models::stream::{CLOSE_STDIN, EXIT, HEADER, MAX_FRAME, STDERR, STDIN, STDOUT, header, take_frame};
}

/// Resolves `path` inside `root` the way the container will see it: symlinks
/// are followed as if `root` were `/`, and nothing resolves outside `root`.
pub fn secure_join(root: &std::path::Path, path: &std::path::Path) -> std::io::Result<std::path::PathBuf> {
    use std::path::{Component, PathBuf};
    let mut pending: Vec<PathBuf> = path.components().rev().map(|c| PathBuf::from(c.as_os_str())).collect();
    let mut cur = PathBuf::new();
    let mut hops = 0;
    while let Some(next) = pending.pop() {
        match next.components().next() {
            None | Some(Component::RootDir) | Some(Component::CurDir) => continue,
            Some(Component::ParentDir) => {
                cur.pop();
                continue;
            }
            _ => {}
        }
        let candidate = cur.join(&next);
        match std::fs::symlink_metadata(root.join(&candidate)) {
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > 40 {
                    return Err(std::io::Error::other(format!("too many symlinks resolving {}", path.display())));
                }
                let target = std::fs::read_link(root.join(&candidate))?;
                if target.is_absolute() {
                    cur = PathBuf::new();
                }
                for c in target.components().rev() {
                    pending.push(PathBuf::from(c.as_os_str()));
                }
            }
            _ => cur = candidate,
        }
    }
    Ok(root.join(cur))
}
