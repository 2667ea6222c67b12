//! Starting a shim: `berth-shim --bundle DIR`, which detaches and reports on
//! its stdout, in one line, whether the container stands at its start barrier
//! (`ok PID`) or could not be made (`err CODE MESSAGE`).

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use berth_core::{Error, Result};

/// The `berth-shim` binary, started from a sealed in-memory copy.
///
/// A shim's children become the container's init and its execs; until their
/// `execve` (and for an `--init` process, for the container's life) their
/// `/proc/PID/exe` is the binary they were forked from. Were that the host's
/// `berth-shim`, a container able to reach it (`#!/proc/self/exe`, or
/// `CAP_SYS_PTRACE` and `/proc/1/exe`) could keep a descriptor and rewrite the
/// host binary once it is no longer running (CVE-2019-5736). So shims run from
/// a memfd copy sealed against writes, growth and shrinking, made once per
/// runtime and shared by every shim it starts: nothing reachable from a
/// container is a file of the host.
#[derive(Debug)]
pub(crate) struct ShimBinary {
    path: PathBuf,
    sealed: OnceLock<Option<OwnedFd>>,
}

impl ShimBinary {
    pub fn new(path: PathBuf) -> Self {
        Self { path, sealed: OnceLock::new() }
    }

    /// The binary on the host.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What to execute: the sealed copy as `/proc/self/fd/N` (the descriptor
    /// is close-on-exec, which `execve` honours only after it has opened the
    /// path), or the file itself if no copy could be made.
    pub(crate) fn program(&self) -> PathBuf {
        let sealed = self.sealed.get_or_init(|| match sealed_copy(&self.path) {
            Ok(fd) => Some(fd),
            Err(e) => {
                tracing::warn!(shim = %self.path.display(), error = %e,
                    "cannot make a sealed copy of the shim; containers can reach the host binary");
                None
            }
        });
        match sealed {
            Some(fd) => PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())),
            None => self.path.clone(),
        }
    }
}

/// Copies the file at `path` into a memfd and seals it: no writes, no
/// resizing, no more seals.
fn sealed_copy(path: &Path) -> std::io::Result<OwnedFd> {
    use nix::fcntl::{FcntlArg, SealFlag, fcntl};
    use nix::sys::memfd::{MFdFlags, memfd_create};
    let flags = MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING;
    // MFD_EXEC (Linux 6.3) says the copy is meant to be executed; older
    // kernels refuse the flag, and their memfds are executable anyway.
    let fd = match memfd_create(c"berth-shim", flags | MFdFlags::from_bits_retain(libc::MFD_EXEC)) {
        Err(nix::errno::Errno::EINVAL) => memfd_create(c"berth-shim", flags)?,
        other => other?,
    };
    let mut src = std::fs::File::open(path)?;
    let mut dst = std::fs::File::from(fd);
    std::io::copy(&mut src, &mut dst)?;
    let fd = OwnedFd::from(dst);
    let seals = SealFlag::F_SEAL_SEAL | SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_WRITE;
    fcntl(&fd, FcntlArg::F_ADD_SEALS(seals))?;
    Ok(fd)
}

/// What a shim reported.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Report {
    /// The container's init stands at the barrier with this PID.
    Ready(i64),
    /// The container could not be made: the exit code dockerd would record
    /// (126, 127, 128) and why.
    Failed(i64, String),
}

impl Report {
    /// Reads a shim's report; anything else than its two forms is a failure
    /// that quotes what came.
    pub fn parse(report: &str) -> Report {
        let report = report.trim();
        if let Some(pid) = report.strip_prefix("ok ").and_then(|p| p.trim().parse::<i64>().ok()) {
            return Report::Ready(pid);
        }
        report
            .strip_prefix("err ")
            .and_then(|r| r.split_once(' '))
            .map(|(c, m)| Report::Failed(c.parse::<i64>().unwrap_or(128), m.to_string()))
            .unwrap_or_else(|| Report::Failed(128, format!("the shim did not report: {report:?}")))
    }
}

/// Starts `shim` on `bundle` and waits for its report (the detached shim
/// closes its stdout once it has reported).
pub(super) async fn launch(shim: &std::sync::Arc<ShimBinary>, bundle: &Path) -> Result<Report> {
    let (shim, bundle) = (shim.clone(), bundle.to_path_buf());
    tokio::task::spawn_blocking(move || -> Result<Report> {
        use std::io::Read;
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new(shim.program())
            .arg0("berth-shim")
            .arg("--bundle")
            .arg(&bundle)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| Error::unavailable(format!("start {}: {e}", shim.path.display())))?;
        let mut out = String::new();
        if let Some(mut stdout) = child.stdout.take() {
            let _ = stdout.read_to_string(&mut out);
        }
        let _ = child.wait();
        Ok(Report::parse(&out))
    })
    .await
    .map_err(|e| Error::internal(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_read_as_the_shim_writes_them() {
        assert_eq!(Report::parse("ok 4242\n"), Report::Ready(4242));
        assert_eq!(
            Report::parse("err 127 exec: \"nope\": executable file not found in $PATH\n"),
            Report::Failed(127, "exec: \"nope\": executable file not found in $PATH".into())
        );
        assert_eq!(Report::parse("err x broken"), Report::Failed(128, "broken".into()));
        assert_eq!(Report::parse(""), Report::Failed(128, "the shim did not report: \"\"".into()));
        assert!(matches!(Report::parse("ok notapid"), Report::Failed(128, m) if m.contains("notapid")));
    }

    #[test]
    fn the_sealed_copy_runs_and_cannot_be_written() {
        use std::io::Write;
        let shim = ShimBinary::new("/bin/echo".into());
        let program = shim.program();
        assert!(program.starts_with("/proc/self/fd"), "{}", program.display());
        let out = std::process::Command::new(&program).arg("sealed").output().expect("run the copy");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "sealed\n");
        assert_eq!(std::fs::read(&program).expect("read"), std::fs::read("/bin/echo").expect("read"));
        // Through any path that reaches it, the copy takes no write.
        let mut f = std::fs::OpenOptions::new().write(true).open(&program).expect("open for writing");
        assert!(f.write_all(b"x").is_err(), "a write into the sealed copy");
        assert!(f.set_len(0).is_err(), "truncating the sealed copy");
        // A missing binary is used as it is named, and fails at the start.
        assert_eq!(ShimBinary::new("/nonexistent".into()).program(), PathBuf::from("/nonexistent"));
    }
}
