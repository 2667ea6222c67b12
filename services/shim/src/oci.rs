//! Another OCI runtime makes the container (`docker run --runtime runc`): the
//! bundle is OCI already, so the shim hands it to `runc` (or `crun`) and stays
//! the monitor (stdio, log, attach, exit records), driving the runtime the way
//! containerd's runc shim does:
//! - the shim is a child subreaper, so the container's init and every exec,
//!   whose runtime process exits once they run, become the shim's children and
//!   their exits are the shim's to read;
//! - the overlay root is mounted by the shim in a mount namespace of its own
//!   (the runtime wants `root.path` mounted; the host never sees the mount);
//! - `create` holds the container before its command, as the shim's own init
//!   does, so the network is plugged in before `start`; an exec is
//!   `exec --detach` with a process file; `delete --force` once the init is gone;
//! - the runtime's own messages go to a JSON log in the bundle, and its last
//!   error is what the user hears; a TTY master arrives on a console socket.
//!
//! The runtime's state lives in the bundle (`--root`), so it goes with the
//! container, and the cgroups are Berth's own (`linux.cgroupsPath`), which the
//! shim also joins itself: pause, stats and top work the same for any runtime.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use berth_shim::spec::{Capabilities, Rlimit, User};
use serde::{Deserialize, Serialize};

use crate::sys;

/// A failure: the exit code dockerd reports for it and the runtime's message.
pub type Failure = (i32, String);

/// The runtime's state directory (`--root`), in the bundle.
const STATE: &str = "oci";
/// The runtime's log (`--log`, JSON lines), in the bundle.
const LOG: &str = "oci.log";
/// Where the runtime writes a process's PID.
const PID_FILE: &str = "oci.pid";
/// The socket a TTY's master arrives on (relative: a bundle's path can be
/// longer than a socket address holds; the runtime runs in the bundle).
const CONSOLE: &str = "console.sock";

/// One container's OCI runtime.
pub struct Oci {
    binary: PathBuf,
    bundle: PathBuf,
    /// The container's ID in the runtime's state: the bundle's name.
    id: String,
}

/// The standard streams the runtime passes on to the process; a TTY is the
/// runtime's to make.
pub enum Streams {
    Tty,
    Fds(OwnedFd, OwnedFd, OwnedFd),
}

/// A process to run in the container (the OCI spec's `process`, for `exec`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecProcess<'a> {
    pub terminal: bool,
    pub user: User,
    pub args: &'a [String],
    pub env: &'a [String],
    pub cwd: &'a str,
    pub capabilities: &'a Capabilities,
    pub rlimits: &'a [Rlimit],
    pub no_new_privileges: bool,
}

/// A line of the runtime's JSON log (runc and crun write the same fields).
#[derive(Deserialize)]
struct LogLine {
    #[serde(default)]
    level: String,
    #[serde(default)]
    msg: String,
}

impl Oci {
    /// The runtime `binary` for the container whose bundle is `bundle`.
    pub fn new(binary: &Path, bundle: &Path) -> Result<Oci, String> {
        let id = bundle
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| format!("the bundle {} has no name to use as an ID", bundle.display()))?;
        Ok(Oci { binary: binary.to_path_buf(), bundle: bundle.to_path_buf(), id: id.to_string() })
    }

    fn name(&self) -> String {
        self.binary.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "runtime".into())
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root").arg(self.bundle.join(STATE));
        cmd.arg("--log").arg(self.bundle.join(LOG)).args(["--log-format", "json"]);
        cmd.args(args).current_dir(&self.bundle);
        cmd
    }

    /// Runs the runtime with `streams` as its standard streams (and so the
    /// process's); a failure carries the runtime's last logged error.
    fn run(&self, what: &str, mut cmd: Command, streams: Streams) -> Result<(), Failure> {
        let _ = std::fs::remove_file(self.bundle.join(LOG));
        match streams {
            Streams::Tty => {
                cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
            }
            Streams::Fds(i, o, e) => {
                cmd.stdin(Stdio::from(i)).stdout(Stdio::from(o)).stderr(Stdio::from(e));
            }
        }
        let status = cmd.status().map_err(|e| (125, format!("run {}: {e}", self.binary.display())))?;
        if status.success() {
            return Ok(());
        }
        let msg = self.last_error().unwrap_or_else(|| format!("{} {what} failed: {status}", self.name()));
        Err((exit_code_of(&msg), format!("OCI runtime {what} failed: {msg}")))
    }

    /// The last error the runtime logged (at most the log's last 64 KiB).
    fn last_error(&self) -> Option<String> {
        let log = std::fs::read(self.bundle.join(LOG)).ok()?;
        let tail = &log[log.len().saturating_sub(64 << 10)..];
        String::from_utf8_lossy(tail)
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<LogLine>(l).ok())
            .find(|l| matches!(l.level.as_str(), "error" | "fatal") && !l.msg.is_empty())
            .map(|l| l.msg)
    }

    fn read_pid(&self) -> Result<libc::pid_t, Failure> {
        let text = std::fs::read_to_string(self.bundle.join(PID_FILE))
            .map_err(|e| (125, format!("read the PID {} wrote: {e}", self.name())))?;
        text.trim().parse().map_err(|_| (125, format!("{} wrote no PID: {text:?}", self.name())))
    }

    /// Creates the container, held before its command: its init's PID, and the
    /// TTY master when the spec asks for a terminal.
    pub fn create(&self, streams: Streams, tty: bool) -> Result<(libc::pid_t, Option<OwnedFd>), Failure> {
        let console = if tty { Some(Console::bind(&self.bundle)?) } else { None };
        let mut cmd = self.command(&["create", "--bundle", ".", "--pid-file", PID_FILE]);
        if console.is_some() {
            cmd.args(["--console-socket", CONSOLE]);
        }
        cmd.arg(&self.id);
        let made = self.run("create", cmd, streams).and_then(|_| {
            let pid = self.read_pid()?;
            let master = console.as_ref().map(Console::receive).transpose()?;
            Ok((pid, master))
        });
        if made.is_err() {
            self.delete();
        }
        made
    }

    /// Lets the container's command run.
    pub fn start(&self) -> Result<(), Failure> {
        let null = || sys::dev_null().map_err(|e| (125, e.to_string()));
        self.run("start", self.command(&["start", &self.id]), Streams::Fds(null()?, null()?, null()?))
    }

    /// Starts `process` in the container (exec `exec_id`): its PID, and its
    /// TTY master for a terminal.
    pub fn exec(
        &self,
        exec_id: &str,
        process: &ExecProcess<'_>,
        streams: Streams,
    ) -> Result<(libc::pid_t, Option<OwnedFd>), Failure> {
        let file = self.bundle.join(format!("exec-{exec_id}.process.json"));
        let body = serde_json::to_vec(process).map_err(|e| (125, e.to_string()))?;
        // The process's environment: for root's eyes only, as config.json.
        write_private(&file, &body).map_err(|e| (125, format!("write {}: {e}", file.display())))?;
        let console = if process.terminal { Some(Console::bind(&self.bundle)?) } else { None };
        let mut cmd = self.command(&["exec", "--detach", "--pid-file", PID_FILE, "--process"]);
        cmd.arg(&file);
        if console.is_some() {
            cmd.args(["--console-socket", CONSOLE]);
        }
        cmd.arg(&self.id);
        let started = self.run("exec", cmd, streams).and_then(|_| {
            let pid = self.read_pid()?;
            let master = console.as_ref().map(Console::receive).transpose()?;
            Ok((pid, master))
        });
        let _ = std::fs::remove_file(&file);
        started
    }

    /// Forgets the container (its state; its cgroups, now empty).
    pub fn delete(&self) {
        let null = || sys::dev_null().ok();
        let mut cmd = self.command(&["delete", "--force", &self.id]);
        if let (Some(i), Some(o), Some(e)) = (null(), null(), null()) {
            cmd.stdin(Stdio::from(i)).stdout(Stdio::from(o)).stderr(Stdio::from(e));
        }
        let _ = cmd.status();
    }
}

/// dockerd's exit codes for a command that could not run: 127 when it is not
/// there, 126 when it cannot be executed, 128 for anything else.
fn exit_code_of(msg: &str) -> i32 {
    let m = msg.to_ascii_lowercase();
    if m.contains("executable file not found") || m.contains("no such file or directory") {
        127
    } else if m.contains("permission denied") || m.contains("is a directory") {
        126
    } else {
        128
    }
}

fn write_private(path: &Path, body: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(body)
}

/// The console socket: the runtime connects, sends the TTY master and goes.
struct Console(UnixListener);

impl Console {
    fn bind(bundle: &Path) -> Result<Console, Failure> {
        let os = |e: io::Error| (125, format!("console socket: {e}"));
        // Bound relative to the bundle, for the same reason as ctl.sock.
        std::env::set_current_dir(bundle).map_err(os)?;
        let _ = std::fs::remove_file(CONSOLE);
        let listener = UnixListener::bind(CONSOLE).map_err(os)?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(CONSOLE, std::fs::Permissions::from_mode(0o600)).map_err(os)?;
        }
        listener.set_nonblocking(true).map_err(os)?;
        Ok(Console(listener))
    }

    /// The master the runtime sent (it has exited, so its connection waits).
    fn receive(&self) -> Result<OwnedFd, Failure> {
        let (conn, _) = self.0.accept().map_err(|e| (125, format!("the runtime sent no terminal: {e}")))?;
        let _ = conn.set_nonblocking(false);
        let mut buf = [0u8; 4096];
        match sys::recv_with_fd(conn.as_fd(), &mut buf) {
            Ok((_, Some(fd))) => Ok(fd),
            Ok((_, None)) => Err((125, "the runtime sent no terminal".into())),
            Err(e) => Err((125, format!("receive the terminal: {e}"))),
        }
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(CONSOLE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runtimes_message_gives_dockerds_exit_code() {
        let nope = r#"runc create failed: unable to start container process: exec: "nope": executable file not found in $PATH"#;
        assert_eq!(exit_code_of(nope), 127);
        assert_eq!(exit_code_of("exec /etc: permission denied"), 126);
        assert_eq!(exit_code_of("cgroups in hybrid mode not supported"), 128);
    }

    #[test]
    fn the_last_logged_error_is_the_message() {
        let dir = std::env::temp_dir().join(format!("berth-oci-test-{}", std::process::id()));
        let bundle = dir.join("c1");
        std::fs::create_dir_all(&bundle).expect("mkdir");
        let oci = Oci::new(Path::new("/usr/sbin/runc"), &bundle).expect("oci");
        assert_eq!(oci.id, "c1");
        std::fs::write(
            bundle.join(LOG),
            "{\"level\":\"warning\",\"msg\":\"w\"}\nnot json\n{\"level\":\"error\",\"msg\":\"first\"}\n{\"msg\":\"second\",\"level\":\"error\"}\n{\"level\":\"info\",\"msg\":\"i\"}\n",
        )
        .expect("log");
        assert_eq!(oci.last_error().as_deref(), Some("second"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
