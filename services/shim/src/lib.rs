//! What the shim shares with the runtime service: facts about the kernel and the
//! control protocol that both sides must agree on. The shim itself is the
//! `berth-shim` binary.

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
    /// Input for the process's stdin.
    pub const STDIN: u8 = 0;
    /// The process's stdout (everything, with a TTY).
    pub const STDOUT: u8 = 1;
    /// The process's stderr.
    pub const STDERR: u8 = 2;
    /// An exec's exit code, as decimal text; the last frame of an exec stream.
    pub const EXIT: u8 = 0x10;
    /// Close the process's stdin (after what was sent before).
    pub const CLOSE_STDIN: u8 = 0x11;
    /// The length of a frame header.
    pub const HEADER: usize = 8;
    /// The largest payload of one frame.
    pub const MAX_FRAME: usize = 1 << 20;

    /// The header of a frame of `kind` with `len` payload bytes.
    pub fn header(kind: u8, len: usize) -> [u8; HEADER] {
        let n = (len as u32).to_be_bytes();
        [kind, 0, 0, 0, n[0], n[1], n[2], n[3]]
    }

    /// Splits the first whole frame off `buf`: `Some((kind, payload))`, or
    /// `None` until a whole frame has arrived. A payload over [`MAX_FRAME`] is an error.
    pub fn take_frame(buf: &mut Vec<u8>) -> Result<Option<(u8, Vec<u8>)>, String> {
        if buf.len() < HEADER {
            return Ok(None);
        }
        let len = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
        if len > MAX_FRAME {
            return Err(format!("frame of {len} bytes is too large"));
        }
        if buf.len() < HEADER + len {
            return Ok(None);
        }
        let kind = buf[0];
        let payload = buf[HEADER..HEADER + len].to_vec();
        buf.drain(..HEADER + len);
        Ok(Some((kind, payload)))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn frames_round_trip_and_wait_for_whole_frames() {
            let mut buf = header(STDOUT, 3).to_vec();
            buf.extend_from_slice(b"ab");
            assert_eq!(take_frame(&mut buf), Ok(None));
            buf.push(b'c');
            buf.extend_from_slice(&header(CLOSE_STDIN, 0));
            assert_eq!(take_frame(&mut buf), Ok(Some((STDOUT, b"abc".to_vec()))));
            assert_eq!(take_frame(&mut buf), Ok(Some((CLOSE_STDIN, Vec::new()))));
            assert!(buf.is_empty());
            let mut big = header(STDIN, MAX_FRAME + 1).to_vec();
            assert!(take_frame(&mut big).is_err());
        }
    }
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
