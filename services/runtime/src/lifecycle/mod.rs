//! Running containers: each one under its own `berth-shim`, which outlives the
//! runtime service. The runtime writes an OCI bundle, starts the shim, reads its
//! one-line report, and watches the bundle for the exit record the shim leaves.
//! A runtime that restarts finds its containers again from their bundles
//! ([`LocalRuntime::reconnect`]): running ones are watched again, and those that
//! exited meanwhile get their exit code from `exit.json`.
//!
//! Bundle layout, `<data-root>/runtime/containers/<id>/`:
//! ```text
//! config.json     the OCI spec          upper/ work/   the overlay's writable layer
//! rootfs/         the mount point       hostname hosts resolv.conf
//! container.log   json-file log         pid exit.json  written by the shim
//! ctl.sock        the shim's control socket (attach, exec, resize, start, wait)
//! exec-<id>.json  an exec's exit record, written by the shim
//! ```
//!
//! Starting is two steps, as in the OCI runtime model: the shim sets the
//! container up and reports `ok PID` with the init held at a barrier; the runtime
//! plugs in the network, connects the attaches that were waiting for this
//! start, then tells the shim to `start`, so no output is lost between the two
//! and the network is there before the command runs.
//!
//! The parts: [`bundle`] decides what a bundle holds (pure, no I/O), [`launch`]
//! starts a shim and reads its report, [`start`] and [`exit`] are the
//! transitions (created to running; running to exited, by itself or by a
//! signal), and [`logs`] reads and follows the json-file log.

mod bundle;
pub(crate) use bundle::dirs as bundle_dirs;
mod exit;
mod health;
mod launch;
mod logs;
mod pause;
mod restart;
mod start;
mod update;

use std::path::{Path, PathBuf};

use berth_core::{Error, Result};
use berth_models::container::HostConfig;
use berth_shim::protocol::{ExitRecord, files};
use tokio::sync::broadcast;

pub use berth_runtime_api::LogStream;

/// Something that happened to a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The container's init exited with this code.
    Exited(String, i64),
    /// The container was removed.
    Removed(String),
}

/// Where containers live on this host, the shim to start them with, and the
/// event channel that waiters listen on.
#[derive(Debug, Clone)]
pub struct Host {
    dir: PathBuf,
    cgroup_root: PathBuf,
    shim: std::sync::Arc<launch::ShimBinary>,
    events: broadcast::Sender<Event>,
    pub(crate) waiters: crate::stdio::Waiters,
    /// Restart-policy delays.
    pub(crate) backoff: restart::Backoff,
    /// One lock per container for the steps that must not interleave: a
    /// start, and what follows an exit (clean-up, the restart policy).
    locks: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>>>,
}

impl Host {
    /// The shim binary on the host.
    pub(crate) fn shim_path(&self) -> &std::path::Path {
        self.shim.path()
    }

    /// What to execute to run the shim (its sealed copy; see `launch`).
    pub(crate) fn shim_program(&self) -> PathBuf {
        self.shim.program()
    }

    /// Containers under `dir/containers`; the shim next to the running binary
    /// (or `BERTH_SHIM`).
    pub fn new(dir: PathBuf) -> Self {
        let shim = std::env::var_os("BERTH_SHIM").map(PathBuf::from).unwrap_or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|e| e.parent().map(|p| p.join("berth-shim")))
                .unwrap_or_else(|| PathBuf::from("berth-shim"))
        });
        let (events, _) = broadcast::channel(1024);
        let cgroup_root =
            std::env::var_os("BERTH_CGROUP_ROOT").map(PathBuf::from).unwrap_or_else(|| "/sys/fs/cgroup".into());
        Self {
            dir,
            cgroup_root,
            shim: std::sync::Arc::new(launch::ShimBinary::new(shim)),
            events,
            waiters: Default::default(),
            backoff: Default::default(),
            locks: Default::default(),
        }
    }

    /// The bundle directory of container `id`.
    pub fn bundle(&self, id: &str) -> PathBuf {
        self.dir.join("containers").join(id)
    }

    /// The lifecycle lock of container `id`.
    pub(crate) fn lock_of(&self, id: &str) -> std::sync::Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(id.to_string()).or_default().clone()
    }

    /// Removes a container's bundle (after the container is gone). A shim still
    /// holding a container at its start barrier (the runtime went away between
    /// the two steps of a start) is ended through its init.
    pub fn forget(&self, id: &str) {
        let bundle = self.bundle(id);
        if let Some(pid) =
            std::fs::read_to_string(bundle.join(files::PID)).ok().and_then(|p| p.trim().parse::<i32>().ok())
            && container_pid(pid.into(), id)
        {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        if let Ok(mut w) = self.waiters.lock() {
            w.remove(id);
        }
        self.backoff.forget(id);
        self.locks.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
        // Removing cgroups can wait on the kernel (and retries while the last
        // tasks exit): off the caller's path.
        let (root, cid) = (self.cgroup_root.clone(), id.to_string());
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(move || crate::cgroups::remove(&root, &cid))),
            Err(_) => crate::cgroups::remove(&root, &cid),
        }
        shared_shm::unmount(&self.bundle(id));
        let _ = std::fs::remove_dir_all(self.bundle(id));
        let _ = self.events.send(Event::Removed(id.to_string()));
    }

    /// A receiver of container events.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }
}

fn read_exit(bundle: &Path) -> Option<ExitRecord> {
    std::fs::read(bundle.join(files::EXIT)).ok().and_then(|b| serde_json::from_slice(&b).ok())
}

/// Whether `pid` is still the container `id`'s process: alive, and in the
/// container's cgroup (whose path names the container). A PID the kernel gave
/// to another process after the container's exited is not the container's, so
/// it is never signalled nor taken for a running container.
pub(crate) fn container_pid(pid: i64, id: &str) -> bool {
    pid > 0
        && !id.is_empty()
        && std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|c| c.lines().any(|l| l.contains(id)))
}

use berth_runtime_api::logopts::log_limits_for;
pub(crate) use berth_runtime_api::logopts::validate_log_opts;

/// The log bounds of a container: its `--log-opt max-size/max-file`, or the defaults.
pub fn log_limits(host_config: &HostConfig) -> Result<(u64, u32)> {
    log_limits_for(&host_config.log_config.kind, &host_config.log_config.config)
}

/// Parses a signal given by name (`KILL`, `SIGTERM`) or number.
pub fn parse_signal(s: &str) -> Result<nix::sys::signal::Signal> {
    use nix::sys::signal::Signal;
    let bad = || Error::invalid(format!("Invalid signal: {s}"));
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| bad());
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    name.parse::<Signal>().map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_is_the_containers_only_while_in_its_cgroup() {
        let me = i64::from(std::process::id());
        let own = std::fs::read_to_string("/proc/self/cgroup").expect("cgroup");
        let segment =
            own.lines().filter_map(|l| l.rsplit('/').next()).find(|s| !s.is_empty()).unwrap_or("").to_string();
        if !segment.is_empty() {
            assert!(container_pid(me, &segment), "our own cgroup names us");
        }
        assert!(!container_pid(me, "0123456789abcdef0123456789abcdef"), "another container's ID");
        assert!(!container_pid(0, "x") && !container_pid(-1, "x") && !container_pid(me, ""));
    }

    #[test]
    fn signals_by_name_and_number() {
        use nix::sys::signal::Signal;
        assert_eq!(parse_signal("KILL").ok(), Some(Signal::SIGKILL));
        assert_eq!(parse_signal("sigterm").ok(), Some(Signal::SIGTERM));
        assert_eq!(parse_signal("9").ok(), Some(Signal::SIGKILL));
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("999").is_err());
    }
}

/// A shareable container's `/dev/shm` (`--ipc shareable`): a tmpfs mounted on
/// the host at `<bundle>/shm`, so the containers that join its IPC namespace
/// (`--ipc container:NAME`) bind the same one, as dockerd keeps it under
/// `containers/<id>/mounts/shm`. Mounted at start, unmounted at exit.
pub(crate) mod shared_shm {
    use std::os::unix::fs::MetadataExt;
    use std::path::{Path, PathBuf};

    use berth_core::{Error, Result};

    /// Where it is mounted.
    pub fn path(bundle: &Path) -> PathBuf {
        bundle.join("shm")
    }

    /// Whether a filesystem is mounted at `path` (it is on another device than its parent).
    pub fn mounted(path: &Path) -> bool {
        let parent = path.parent().unwrap_or(Path::new("/"));
        match (std::fs::metadata(path), std::fs::metadata(parent)) {
            (Ok(p), Ok(q)) => p.dev() != q.dev(),
            _ => false,
        }
    }

    /// Mounts it (`size` bytes) unless it is there already.
    pub fn mount(bundle: &Path, size: i64) -> Result<PathBuf> {
        let path = path(bundle);
        if mounted(&path) {
            return Ok(path);
        }
        std::fs::create_dir_all(&path).map_err(|e| Error::from(e).context(format!("create {}", path.display())))?;
        use nix::mount::MsFlags;
        let data = format!("mode=1777,size={size}");
        nix::mount::mount(
            Some("shm"),
            &path,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some(data.as_str()),
        )
        .map_err(|e| Error::internal(format!("mount the shareable /dev/shm at {}: {e}", path.display())))?;
        Ok(path)
    }

    /// Unmounts it, if mounted (a container still holding it keeps its copy).
    pub fn unmount(bundle: &Path) {
        let path = path(bundle);
        if mounted(&path) {
            let _ = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}
