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
//! connects the attaches that were waiting for this start, then tells the shim
//! to `start`, so no output is lost between the two.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_core::{Error, Result};
use berth_models::container::{ContainerStatus, HostConfig};
use tokio::sync::broadcast;

use berth_shim::protocol::{Annotations, ExitRecord, files};

use crate::pb;
use crate::record;
use crate::service::{LocalRuntime, status};
use crate::spec::{self, SpecInputs};
use crate::store::ContainerStore;

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
    shim: PathBuf,
    events: broadcast::Sender<Event>,
    pub(crate) waiters: crate::stdio::Waiters,
}

impl Host {
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
        Self { dir, cgroup_root, shim, events, waiters: Default::default() }
    }

    /// The bundle directory of container `id`.
    pub fn bundle(&self, id: &str) -> PathBuf {
        self.dir.join("containers").join(id)
    }

    /// Removes a container's bundle (after the container is gone). A shim still
    /// holding a container at its start barrier (the runtime went away between
    /// the two steps of a start) is ended through its init.
    pub fn forget(&self, id: &str) {
        let bundle = self.bundle(id);
        if let Some(pid) =
            std::fs::read_to_string(bundle.join(files::PID)).ok().and_then(|p| p.trim().parse::<i32>().ok())
            && std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|c| c.contains(id))
        {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        if let Ok(mut w) = self.waiters.lock() {
            w.remove(id);
        }
        // Removing cgroups can wait on the kernel (and retries while the last
        // tasks exit): off the caller's path.
        let (root, cid) = (self.cgroup_root.clone(), id.to_string());
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(move || crate::cgroups::remove(&root, &cid))),
            Err(_) => crate::cgroups::remove(&root, &cid),
        }
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

fn pid_alive(pid: i64) -> bool {
    pid > 0 && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
}

pub use berth_runtime_api::logopts::{
    DEFAULT_LOG_MAX_FILE, DEFAULT_LOG_MAX_SIZE, log_limits_of, parse_size, validate_log_opts,
};

/// The log bounds of a container: its `--log-opt max-size/max-file`, or the defaults.
pub fn log_limits(host_config: &HostConfig) -> Result<(u64, u32)> {
    log_limits_of(&host_config.log_config.config)
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

/// The files and stack the image's passwd/group come from: the container's upper
/// layer first, then the image's layers from the top.
fn read_from_layers(upper: &Path, layers: &[String], rel: &str) -> String {
    std::iter::once(upper.to_path_buf())
        .chain(layers.iter().rev().map(PathBuf::from))
        .find_map(|dir| std::fs::read_to_string(dir.join(rel)).ok())
        .unwrap_or_default()
}

fn host_nofile_hard() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).map(|(_, hard)| hard).unwrap_or(1024)
}

/// The container's /etc/resolv.conf: the host's (without loopback resolvers,
/// unreachable from the container's own namespace), or `--dns`,
/// `--dns-search` and `--dns-option` where given, as dockerd writes it.
pub fn resolv_conf(host: &str, host_config: &HostConfig, network_host: bool) -> String {
    let (dns, search, options) = (host_config.dns(), host_config.dns_search(), host_config.dns_options());
    let mut lines: Vec<String> = host
        .lines()
        .filter(|l| {
            let nameserver = l.starts_with("nameserver");
            let loopback = l.contains(" 127.") || l.contains(" ::1");
            !(nameserver && (!dns.is_empty() || (!network_host && loopback))
                || (l.starts_with("search") || l.starts_with("domain")) && !search.is_empty()
                || l.starts_with("options") && !options.is_empty())
        })
        .map(str::to_string)
        .collect();
    lines.extend(dns.iter().map(|d| format!("nameserver {d}")));
    if !search.is_empty() {
        lines.push(format!("search {}", search.join(" ")));
    }
    if !options.is_empty() {
        lines.push(format!("options {}", options.join(" ")));
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// The /etc/resolv.conf of a container on a user-defined network: the
/// embedded DNS at `resolver` (which forwards to `--dns` or the host's
/// resolvers), the host's search domains or `--dns-search`, and `ndots:0`
/// unless `--dns-option` says otherwise, as dockerd writes it.
pub fn embedded_resolv_conf(host: &str, host_config: &HostConfig, resolver: &str) -> String {
    let (search, options) = (host_config.dns_search(), host_config.dns_options().to_vec());
    let mut lines: Vec<String> = Vec::new();
    if search.is_empty() {
        lines.extend(host.lines().filter(|l| l.starts_with("search") || l.starts_with("domain")).map(str::to_string));
    } else {
        lines.push(format!("search {}", search.join(" ")));
    }
    lines.push(format!("nameserver {resolver}"));
    let mut opts: Vec<String> = if options.is_empty() {
        host.lines()
            .filter_map(|l| l.strip_prefix("options"))
            .flat_map(|o| o.split_whitespace().map(str::to_string))
            .filter(|o| !o.starts_with("ndots:"))
            .collect()
    } else {
        options
    };
    if !opts.iter().any(|o| o.starts_with("ndots:")) {
        opts.insert(0, "ndots:0".into());
    }
    lines.push(format!("options {}", opts.join(" ")));
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// The container's /etc/hosts: localhost, its own address (once known) and
/// hostname, and `--add-host` entries.
pub fn hosts_file(hostname: &str, own_ip: Option<&str>, host_config: &HostConfig) -> String {
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n\
         ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    for extra in host_config.extra_hosts() {
        // `name:ip` (the CLI's --add-host), or `name=ip` as newer clients send it.
        if let Some((name, ip)) = extra.split_once([':', '=']) {
            out.push_str(&format!("{ip}\t{name}\n"));
        }
    }
    match own_ip {
        Some(ip) => out.push_str(&format!("{ip}\t{hostname}\n")),
        None => out.push_str(&format!("127.0.1.1\t{hostname}\n")),
    }
    out
}

/// Waits for a container's exit without its shim's help (the shim is gone or
/// going): the exit record it left, or, once the init is gone too and no record
/// came, a stand-in.
async fn poll_exit(bundle: &Path, pid: i64) -> ExitRecord {
    let mut dead_since: Option<std::time::Instant> = None;
    loop {
        if let Some(e) = read_exit(bundle) {
            return e;
        }
        if !pid_alive(pid) {
            let since = *dead_since.get_or_insert_with(std::time::Instant::now);
            if since.elapsed() >= Duration::from_secs(3) {
                return ExitRecord {
                    exit_code: 137,
                    finished_at: berth_core::id::now_rfc3339(),
                    error: Some("the container's shim went away".into()),
                };
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl LocalRuntime {
    /// Finds running containers again after a restart: watches those whose shim
    /// still runs and records the exit of those that stopped meanwhile.
    pub(crate) async fn reconnect(&self) -> Result<()> {
        for c in self.store.containers().await? {
            if status(&c).is_live() {
                self.spawn_watch(&c);
            }
        }
        Ok(())
    }

    fn spawn_watch(&self, c: &pb::Container) {
        let store = self.store.clone();
        let networks = self.networks.clone();
        let volumes = self.volumes.clone();
        let host = self.host.clone();
        let id = c.id.clone();
        let pid = c.state.as_ref().map(|s| s.pid).unwrap_or(0);
        let auto_remove = record::host_config(c).map(|h| h.auto_remove).unwrap_or(false);
        tokio::spawn(async move {
            let bundle = host.bundle(&id);
            let exit = match crate::shim::wait(&bundle).await {
                Some(exit) => exit,
                None => poll_exit(&bundle, pid).await,
            };
            let code = exit.exit_code;
            let oom = crate::cgroups::oom_killed(&host.cgroup_root, &id);
            let state = pb::ContainerState {
                exit_code: code,
                error: exit.error.unwrap_or_default(),
                finished_at: exit.finished_at,
                oom_killed: oom,
                ..record::state(ContainerStatus::Exited)
            };
            if let Err(e) = store.set_state(&id, &state).await {
                tracing::warn!(id = %id, error = %e, "record exit");
            }
            tracing::info!(id = %id, code, "container exited");
            let _ = host.events.send(Event::Exited(id.clone(), code));
            if auto_remove {
                // Volumes first: `docker run --rm` returns once the container is gone.
                crate::volumes::release(volumes.as_ref(), &id, true).await;
                if let Err(e) = store.delete(&id).await {
                    tracing::warn!(id = %id, error = %e, "auto-remove");
                }
                host.forget(&id);
            }
            // Clean-up nobody waits for: removing cgroups and the rest of the
            // veth pair waits on the kernel tearing the namespaces down.
            let (root, cid) = (host.cgroup_root.clone(), id.clone());
            let _ = tokio::task::spawn_blocking(move || crate::cgroups::remove(&root, &cid)).await;
            if let Some(n) = &networks
                && let Err(e) = n.disconnect(&id, "").await
            {
                tracing::warn!(id = %id, error = %e, "release the container's addresses");
            }
        });
    }

    /// Starts a container; `Ok(true)` when it was already running. A container
    /// with auto-remove whose start fails is removed, as dockerd does (`docker run
    /// --rm` waits for that).
    pub(crate) async fn start_container(&self, reference: &str) -> Result<bool> {
        let c = self.resolve(reference).await?;
        if !status(&c).can_start() {
            return Ok(true);
        }
        let out = self.start_resolved(&c).await;
        if out.is_err() {
            if let Ok(mut w) = self.host.waiters.lock() {
                w.remove(&c.id);
            }
            crate::cgroups::remove(&self.host.cgroup_root, &c.id);
            let _ = self.host.events.send(Event::Exited(c.id.clone(), 128));
            if record::host_config(&c).is_ok_and(|h| h.auto_remove) {
                self.release_volumes(&c.id, true).await;
                self.store.delete(&c.id).await?;
                self.host.forget(&c.id);
            }
        }
        out
    }

    async fn start_resolved(&self, c: &pb::Container) -> Result<bool> {
        let t0 = std::time::Instant::now();
        let step = |what: &str| tracing::debug!(id = %c.id, ms = t0.elapsed().as_secs_f64() * 1000.0, "start: {what}");
        let image = self.images.inspect(&c.image_id).await?;
        let config = record::config(c)?;
        let host_config = record::host_config(c)?;
        let bundle = self.host.bundle(&c.id);
        let (upper, work, rootfs) = (bundle.join("upper"), bundle.join("work"), bundle.join("rootfs"));
        for d in [&upper, &work, &rootfs] {
            std::fs::create_dir_all(d).map_err(|e| Error::from(e).context(format!("create {}", d.display())))?;
        }
        for f in [files::EXIT, files::PID] {
            let _ = std::fs::remove_file(bundle.join(f));
        }
        let hostname = config.hostname.clone();
        let network_host = host_config.host_network();
        let hosts = hosts_file(&hostname, None, &host_config);
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let resolv = resolv_conf(&host_resolv, &host_config, network_host);
        for (name, body) in [("hostname", format!("{hostname}\n")), ("hosts", hosts), ("resolv.conf", resolv)] {
            std::fs::write(bundle.join(name), body)?;
        }
        let passwd = read_from_layers(&upper, &image.layer_dirs, "etc/passwd");
        let group = read_from_layers(&upper, &image.layer_dirs, "etc/group");
        let user = spec::resolve_user(&config.user, host_config.group_add(), &passwd, &group)?;
        let mut lower_dirs = vec![upper.clone()];
        lower_dirs.extend(image.layer_dirs.iter().rev().map(PathBuf::from));
        let mounts = self.prepare_mounts(c, lower_dirs).await?;
        let inputs = SpecInputs {
            config: config.clone(),
            host_config: host_config.clone(),
            rootfs: rootfs.clone(),
            hostname_file: bundle.join("hostname"),
            hosts_file: bundle.join("hosts"),
            resolv_file: bundle.join("resolv.conf"),
            user,
            host_nofile_hard: host_nofile_hard(),
            mounts,
        };
        let mut oci = spec::build(&inputs)?;
        let lowerdirs: Vec<PathBuf> = image.layer_dirs.iter().rev().map(PathBuf::from).collect();
        if lowerdirs.is_empty() {
            return Err(Error::invalid(format!("image {} has no layers", image.id)));
        }
        let (log_max_size, log_max_file) = log_limits(&host_config)?;
        let mut annotations = Annotations {
            lowerdirs,
            upperdir: upper.clone(),
            workdir: work.clone(),
            log_path: bundle.join("container.log"),
            log_max_size,
            log_max_file,
            stdin: config.open_stdin,
            init: host_config.init.unwrap_or(false),
            cgroups: Vec::new(),
        };
        let limits = crate::cgroups::Limits::from_spec(&oci);
        step("bundle written");
        let cgroups = crate::cgroups::create(&self.host.cgroup_root, &c.id, &limits).inspect_err(|_| {
            crate::cgroups::remove(&self.host.cgroup_root, &c.id);
        })?;
        annotations.cgroups = cgroups;
        oci.set_annotations(Some(annotations.to_map()));
        let spec_json = serde_json::to_vec_pretty(&oci).map_err(|e| Error::internal(e.to_string()))?;
        std::fs::write(bundle.join(files::SPEC), spec_json)?;

        step("cgroups ready");
        let shim = self.host.shim.clone();
        let bundle_c = bundle.clone();
        let report = tokio::task::spawn_blocking(move || -> Result<String> {
            use std::io::Read;
            let mut child = std::process::Command::new(&shim)
                .arg("--bundle")
                .arg(&bundle_c)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .map_err(|e| Error::unavailable(format!("start {}: {e}", shim.display())))?;
            let mut out = String::new();
            if let Some(mut stdout) = child.stdout.take() {
                let _ = stdout.read_to_string(&mut out);
            }
            let _ = child.wait();
            Ok(out)
        })
        .await
        .map_err(|e| Error::internal(e.to_string()))??;
        step("shim reported");
        let report = report.trim();
        let now = berth_core::id::now_rfc3339();
        if let Some(pid) = report.strip_prefix("ok ").and_then(|p| p.trim().parse::<i64>().ok()) {
            // The container exists and waits at the barrier: plug in its network,
            // connect the attaches that wait for this start, then let the command run.
            let plugged = match self.plug_network(c, &host_config, pid).await {
                Ok(s) => s,
                Err(e) => {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                    if let Some(n) = &self.networks {
                        let _ = n.disconnect(&c.id, "").await;
                    }
                    self.store.set_state(&c.id, &record::failed_start(128, e.message())).await?;
                    return Err(if e.kind() == berth_core::ErrorKind::NotFound {
                        e
                    } else {
                        e.context("failed to set up container networking")
                    });
                }
            };
            step("network plugged");
            // Now the container's address is known: it goes into its /etc/hosts
            // (rewritten in place: the file is bind-mounted).
            if let Some(ip) = plugged.settings.first_ip() {
                let _ = std::fs::write(bundle.join("hosts"), hosts_file(&hostname, Some(ip), &host_config));
            }
            // On a user-defined network, names come from the embedded DNS.
            if let Some(resolver) = &plugged.resolver {
                let resolv = embedded_resolv_conf(&host_resolv, &host_config, resolver);
                let _ = std::fs::write(bundle.join("resolv.conf"), resolv);
            }
            self.connect_waiters(&c.id, &bundle).await;
            step("attaches connected");
            if let Err(e) = crate::shim::start(&bundle).await {
                self.store.set_state(&c.id, &record::failed_start(128, e.message())).await?;
                return Err(e);
            }
            step("command running");
            let state = pb::ContainerState {
                pid,
                started_at: now,
                network_settings: berth_models::to_vec(&plugged.settings),
                ..record::state(ContainerStatus::Running)
            };
            self.store.set_state(&c.id, &state).await?;
            let mut running = c.clone();
            running.state = Some(state);
            self.spawn_watch(&running);
            tracing::info!(id = %c.id, pid, "container started");
            return Ok(false);
        }
        let (code, msg) = report
            .strip_prefix("err ")
            .and_then(|r| r.split_once(' '))
            .map(|(c, m)| (c.parse::<i64>().unwrap_or(128), m.to_string()))
            .unwrap_or((128, format!("the shim did not report: {report:?}")));
        self.store.set_state(&c.id, &record::failed_start(code, &msg)).await?;
        Err(crate::shim::start_error(code, &msg))
    }

    /// Sends `signal` to a running container.
    pub(crate) async fn signal_container(&self, reference: &str, signal: &str) -> Result<()> {
        let sig = parse_signal(if signal.is_empty() { "KILL" } else { signal })?;
        let c = self.resolve(reference).await?;
        let pid = c.state.as_ref().map(|s| s.pid).unwrap_or(0);
        if !status(&c).can_signal() || !pid_alive(pid) {
            return Err(Error::conflict(format!("Container {} is not running", c.id)));
        }
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig)
            .map_err(|e| Error::internal(format!("kill {pid}: {e}")))
    }

    async fn wait_exit(&self, rx: &mut broadcast::Receiver<Event>, id: &str, timeout: Option<Duration>) -> Option<i64> {
        let wait = async {
            loop {
                match rx.recv().await {
                    Ok(Event::Exited(i, code)) if i == id => return Some(code),
                    Ok(Event::Removed(i)) if i == id => return None,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        if let Ok(c) = self.resolve(id).await
                            && status(&c) == ContainerStatus::Exited
                        {
                            return c.state.map(|s| s.exit_code);
                        }
                    }
                    Err(_) => return None,
                }
            }
        };
        match timeout {
            Some(t) => tokio::time::timeout(t, wait).await.ok().flatten(),
            None => wait.await,
        }
    }

    /// Stops a container: its stop signal, then SIGKILL after `timeout` seconds.
    /// `Ok(true)` when it was not running.
    pub(crate) async fn stop_container(&self, reference: &str, timeout: i64, signal: &str) -> Result<bool> {
        let c = self.resolve(reference).await?;
        if !status(&c).can_signal() {
            return Ok(true);
        }
        let config = record::config(&c)?;
        let stop_signal = match (signal, config.stop_signal.as_str()) {
            ("", "") => "SIGTERM".to_string(),
            ("", own) => own.to_string(),
            (given, _) => given.to_string(),
        };
        let timeout = if timeout < 0 { config.stop_timeout.unwrap_or(10) } else { timeout };
        let mut rx = self.host.subscribe();
        if let Err(e) = self.signal_container(&c.id, &stop_signal).await
            && e.kind() != berth_core::ErrorKind::Conflict
        {
            return Err(e);
        }
        if self.wait_exit(&mut rx, &c.id, Some(Duration::from_secs(timeout.max(0) as u64))).await.is_none() {
            self.kill_and_wait(&c).await?;
        }
        Ok(false)
    }

    /// SIGKILLs a container and waits for its exit to be recorded.
    pub(crate) async fn kill_and_wait(&self, c: &pb::Container) -> Result<()> {
        let mut rx = self.host.subscribe();
        match self.signal_container(&c.id, "KILL").await {
            Ok(()) => {}
            Err(e) if e.kind() == berth_core::ErrorKind::Conflict => {}
            Err(e) => return Err(e),
        }
        if self.wait_exit(&mut rx, &c.id, Some(Duration::from_secs(15))).await.is_none() {
            let now = self.resolve(&c.id).await?;
            if status(&now).can_signal() {
                return Err(Error::internal(format!("container {} did not stop after SIGKILL", c.id)));
            }
        }
        Ok(())
    }

    /// Waits for `condition` (not-running, next-exit, removed); returns the exit code.
    pub(crate) async fn wait_container(&self, reference: &str, condition: &str) -> Result<pb::WaitContainerResponse> {
        let mut rx = self.host.subscribe();
        let c = self.resolve(reference).await?;
        let st = c.state.clone().unwrap_or_default();
        let done = |code: i64| pb::WaitContainerResponse { exit_code: code, error: String::new() };
        match condition {
            "" | "not-running" => {
                if !status(&c).is_running() {
                    return Ok(done(st.exit_code));
                }
                Ok(done(self.wait_exit(&mut rx, &c.id, None).await.unwrap_or(st.exit_code)))
            }
            "next-exit" => Ok(done(self.wait_exit(&mut rx, &c.id, None).await.unwrap_or(st.exit_code))),
            "removed" => {
                let mut code = st.exit_code;
                loop {
                    match rx.recv().await {
                        Ok(Event::Exited(i, c2)) if i == c.id => code = c2,
                        Ok(Event::Removed(i)) if i == c.id => return Ok(done(code)),
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            if self.resolve(&c.id).await.is_err() {
                                return Ok(done(code));
                            }
                        }
                        Err(_) => return Ok(done(code)),
                    }
                }
            }
            other => Err(Error::invalid(format!("invalid condition: {other:?}"))),
        }
    }

    /// The container's log as a stream of entries.
    pub(crate) async fn log_stream(&self, req: pb::ContainerLogsRequest) -> Result<LogStream> {
        let c = self.resolve(&req.reference).await?;
        let path = self.host.bundle(&c.id).join("container.log");
        let rx = self.host.subscribe();
        let store = self.store.clone();
        let (tx, out) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(follow_log(path, c.id.clone(), req, rx, store, tx));
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(out)))
    }
}

pub use berth_runtime_api::LogStream;

/// One line of a json-file log, borrowed where it can be.
#[derive(serde::Deserialize)]
struct JsonLine<'a> {
    #[serde(borrow)]
    log: std::borrow::Cow<'a, str>,
    stream: &'a str,
    time: &'a str,
}

fn entry_of(line: &str, req: &pb::ContainerLogsRequest) -> Option<pb::LogEntry> {
    let v: JsonLine<'_> = serde_json::from_str(line).ok()?;
    let stream = match v.stream {
        "stdout" if req.stdout => 1,
        "stderr" if req.stderr => 2,
        _ => return None,
    };
    if req.since > 0.0 || req.until > 0.0 {
        let t = berth_core::id::parse_rfc3339(v.time).map(|t| t.unix_timestamp_nanos() as f64 / 1e9).unwrap_or(0.0);
        if (req.since > 0.0 && t < req.since) || (req.until > 0.0 && t > req.until) {
            return None;
        }
    }
    Some(pb::LogEntry { stream, time: v.time.to_string(), line: v.log.into_owned().into_bytes() })
}

async fn is_running(store: &dyn ContainerStore, id: &str) -> bool {
    store
        .containers()
        .await
        .ok()
        .and_then(|all| all.into_iter().find(|c| c.id == id))
        .is_some_and(|c| status(&c).is_running())
}

async fn follow_log(
    path: PathBuf,
    id: String,
    req: pb::ContainerLogsRequest,
    mut events: broadcast::Receiver<Event>,
    store: Arc<dyn ContainerStore>,
    tx: tokio::sync::mpsc::Sender<Result<pb::LogEntry>>,
) {
    use tokio::io::{AsyncBufReadExt, AsyncSeekExt};
    let open = || async { tokio::fs::File::open(&path).await.ok() };
    let offset_start: u64;
    if req.from_end {
        offset_start = tokio::fs::metadata(&path).await.map(|m| m.len()).unwrap_or(0);
    } else {
        // Everything so far (rotated files first, oldest first), honouring tail.
        let mut entries: Vec<pb::LogEntry> = Vec::new();
        for n in (1..=16).rev() {
            let rotated = PathBuf::from(format!("{}.{n}", path.display()));
            if let Ok(text) = tokio::fs::read_to_string(&rotated).await {
                entries.extend(text.lines().filter_map(|l| entry_of(l, &req)));
            }
        }
        let text = tokio::fs::read_to_string(&path).await.unwrap_or_default();
        offset_start = text.len() as u64;
        entries.extend(text.lines().filter_map(|l| entry_of(l, &req)));
        if req.tail >= 0 && (req.tail as usize) < entries.len() {
            entries.drain(..entries.len() - req.tail as usize);
        }
        for e in entries {
            if tx.send(Ok(e)).await.is_err() {
                return;
            }
        }
        if !req.follow {
            return;
        }
    }
    // Follow: for logs -f until the container is not running; for attach until its
    // next exit. The store is asked once here (and again only if events were lost);
    // after that, the exit event ends the stream.
    let mut offset = offset_start;
    let mut exited = !req.from_end && !is_running(store.as_ref(), &id).await;
    loop {
        if let Some(mut f) = open().await {
            // A file shorter than what we read was rotated: start the new one from its beginning.
            if f.metadata().await.map(|m| m.len() < offset).unwrap_or(false) {
                offset = 0;
            }
            let _ = f.seek(std::io::SeekFrom::Start(offset)).await;
            let mut reader = tokio::io::BufReader::new(f);
            let mut line = String::new();
            loop {
                line.clear();
                match reader.read_line(&mut line).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) if line.ends_with('\n') => {
                        offset += n as u64;
                        if let Some(e) = entry_of(line.trim_end(), &req)
                            && tx.send(Ok(e)).await.is_err()
                        {
                            return;
                        }
                    }
                    Ok(_) => break,
                }
            }
        }
        if exited {
            return;
        }
        // Drain every pending event: ours may queue behind other containers'.
        loop {
            match events.try_recv() {
                Ok(Event::Exited(i, _)) | Ok(Event::Removed(i)) if i == id => {
                    // One more pass picks up what the shim wrote last.
                    exited = true;
                    break;
                }
                Ok(_) => {}
                Err(broadcast::error::TryRecvError::Empty) => break,
                Err(broadcast::error::TryRecvError::Lagged(_)) => {
                    if !is_running(store.as_ref(), &id).await {
                        exited = true;
                        break;
                    }
                }
                Err(broadcast::error::TryRecvError::Closed) => return,
            }
        }
        if exited {
            continue;
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn hc(v: Value) -> HostConfig {
        serde_json::from_value(v).expect("host config")
    }

    #[test]
    fn resolv_conf_and_hosts_like_dockerd() {
        let host = "domain example\nsearch a.example\nnameserver 127.0.0.53\nnameserver 9.9.9.9\noptions edns0\n";
        let plain = resolv_conf(host, &hc(json!({})), false);
        assert!(
            !plain.contains("127.0.0.53") && plain.contains("nameserver 9.9.9.9") && plain.contains("search a.example")
        );
        assert!(resolv_conf(host, &hc(json!({})), true).contains("127.0.0.53"), "host networking keeps the host's");
        let custom = resolv_conf(
            host,
            &hc(json!({"Dns": ["10.0.0.2"], "DnsSearch": ["b.test"], "DnsOptions": ["ndots:2"]})),
            false,
        );
        assert_eq!(custom, "nameserver 10.0.0.2\nsearch b.test\noptions ndots:2\n");
        let hosts =
            hosts_file("box", Some("172.18.0.2"), &hc(json!({"ExtraHosts": ["db:10.0.0.5", "cache=10.0.0.6"]})));
        assert!(
            hosts.contains("10.0.0.5\tdb\n")
                && hosts.contains("10.0.0.6\tcache\n")
                && hosts.ends_with("172.18.0.2\tbox\n")
        );
        assert!(hosts_file("box", None, &hc(json!({}))).ends_with("127.0.1.1\tbox\n"));
        assert_eq!(
            embedded_resolv_conf(host, &hc(json!({})), "127.0.0.11"),
            "domain example\nsearch a.example\nnameserver 127.0.0.11\noptions ndots:0 edns0\n"
        );
        assert_eq!(
            embedded_resolv_conf(
                host,
                &hc(json!({"Dns": ["10.0.0.2"], "DnsSearch": ["b.test"], "DnsOptions": ["ndots:2"]})),
                "127.0.0.11"
            ),
            "search b.test\nnameserver 127.0.0.11\noptions ndots:2\n",
            "--dns servers are the embedded DNS's upstreams, not the container's"
        );
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
