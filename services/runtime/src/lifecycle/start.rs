//! Created to running. The shim makes the container and holds its init at a
//! barrier; meanwhile the runtime plugs in its network, writes its address
//! into /etc/hosts, connects the attaches waiting for this start, and only
//! then lets the command run, so no output is lost and the network is there
//! from the command's first instruction.

use std::path::{Path, PathBuf};
use tracing::Instrument as _;

use berth_core::{Error, ErrorKind, Result};
use berth_models::container::{ContainerStatus, HostConfig};
use berth_shim::protocol::files;

use super::Event;
use super::bundle::{self, PlanInputs};
use super::bundle::{embedded_resolv_conf, hosts_file};
use super::launch::{self, Report};
use crate::pb;
use crate::record;
use crate::service::{LocalRuntime, status};

/// The image's passwd or group file as the container will see it: from the
/// topmost of the container's upper layer and the image's layers that has
/// it, each read inside its own layer (a symlink never leaves it).
fn read_from_layers(upper: &Path, layers: &[String], rel: &str) -> Result<String> {
    for dir in std::iter::once(upper.to_path_buf()).chain(layers.iter().rev().map(PathBuf::from)) {
        match std::fs::symlink_metadata(dir.join(rel)) {
            // An overlay whiteout: the file was deleted above the image's layers.
            Ok(m) if std::os::unix::fs::FileTypeExt::is_char_device(&m.file_type()) => return Ok(String::new()),
            Ok(_) => return crate::spec::read_user_db(&dir, rel),
            Err(_) => {}
        }
    }
    Ok(String::new())
}

fn host_nofile_hard() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).map(|(_, hard)| hard).unwrap_or(1024)
}

impl LocalRuntime {
    /// What this container shares with others: the namespaces of other
    /// containers it joins (`--network container:NAME`, `--ipc
    /// container:NAME`, paths under the running donor's init, checked to still
    /// be that container's), and the host tmpfs it binds at `/dev/shm` (its own
    /// when shareable, mounted now; its IPC donor's when it joins one).
    /// dockerd's refusals: a donor that does not run, an IPC donor that is not
    /// `shareable`.
    async fn shared(&self, bundle: &Path, hc: &HostConfig) -> Result<(Vec<(String, String)>, Option<String>)> {
        let mut joins = Vec::new();
        let mut shm = None;
        let modes =
            [("network", &hc.network_mode, "network"), ("ipc", &hc.ipc_mode, "IPC"), ("pid", &hc.pid_mode, "PID")];
        for (kind, mode, what) in modes {
            let Some(reference) = mode.strip_prefix("container:") else { continue };
            let donor = self.resolve(reference).await?;
            let pid = donor.state.as_ref().map(|s| s.pid).unwrap_or(0);
            if !status(&donor).is_live() || !super::container_pid(pid, &donor.id) {
                return Err(Error::conflict(format!("cannot join {what} of a non running container: {}", donor.id)));
            }
            if kind == "ipc" {
                if record::host_config(&donor)?.ipc_mode != "shareable" {
                    return Err(Error::invalid(format!(
                        "cannot join IPC of a non-shareable container: {} (hint: use IpcMode:shareable for the donor container)",
                        donor.id
                    )));
                }
                let donor_shm = super::shared_shm::path(&self.host.bundle(&donor.id));
                shm = super::shared_shm::mounted(&donor_shm).then(|| donor_shm.display().to_string());
            }
            let ns = if kind == "network" { "net" } else { kind };
            joins.push((kind.to_string(), format!("/proc/{pid}/ns/{ns}")));
        }
        if hc.ipc_mode == "shareable" {
            let size = Some(hc.shm_size).filter(|s| *s > 0).unwrap_or(64 << 20);
            let bundle = bundle.to_path_buf();
            let mounted = tokio::task::spawn_blocking(move || super::shared_shm::mount(&bundle, size))
                .await
                .map_err(|e| Error::internal(e.to_string()))??;
            shm = Some(mounted.display().to_string());
        }
        Ok((joins, shm))
    }

    /// Starts a container; `Ok(true)` when it was already running. A container
    /// with auto-remove whose start fails is removed, as dockerd does (`docker run
    /// --rm` waits for that).
    pub(crate) async fn start_container(&self, reference: &str) -> Result<bool> {
        let c = self.resolve(reference).await?;
        // Not while the last run's exit is still being cleaned up.
        let lock = self.host.lock_of(&c.id);
        let _guard = lock.lock().await;
        let c = self.resolve(&c.id).await?;
        if !status(&c).can_start() {
            return Ok(true);
        }
        // A start by the user begins the restart policy afresh, as dockerd's does.
        if c.restart_count != 0 || c.manually_stopped {
            self.store.set_restart(&c.id, 0, false).await?;
        }
        self.host.backoff.forget(&c.id);
        let started = std::time::Instant::now();
        let out = self.start_resolved(&c).await;
        // dockerd's name for how long container actions take.
        berth_core::metrics::global().observe(
            "engine_daemon_container_actions_seconds",
            "The number of seconds it takes to process each container action",
            &[("action", "start")],
            started.elapsed().as_secs_f64(),
        );
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

    pub(super) async fn start_resolved(&self, c: &pb::Container) -> Result<bool> {
        let t0 = std::time::Instant::now();
        let step = |what: &str| tracing::debug!(id = %c.id, ms = t0.elapsed().as_secs_f64() * 1000.0, "start: {what}");
        let image = self.images.inspect(&c.image_id).await?;
        let config = record::config(c)?;
        let host_config = record::host_config(c)?;
        let bundle = self.host.bundle(&c.id);
        let [upper, ..] = bundle::dirs(&bundle);
        berth_core::perms::ensure_dir(&bundle, berth_core::perms::PRIVATE_DIR)?;
        for d in bundle::dirs(&bundle) {
            std::fs::create_dir_all(&d).map_err(|e| Error::from(e).context(format!("create {}", d.display())))?;
        }
        for f in [files::EXIT, files::PID] {
            let _ = std::fs::remove_file(bundle.join(f));
        }
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let mut lower_dirs = vec![upper.clone()];
        lower_dirs.extend(image.layer_dirs.iter().rev().map(PathBuf::from));
        let mounts = self.prepare_mounts(c, lower_dirs).await?;
        let links = self.resolve_links(c, &host_config).await?;
        // The links' variables go into the spec only (inspect shows the container's own).
        let mut config = config;
        config.env = Some(config.env().iter().cloned().chain(links.iter().flat_map(|l| l.env())).collect());
        let (joins, shm_source) = self.shared(&bundle, &host_config).await?;
        let mut plan = bundle::plan(PlanInputs {
            bundle: &bundle,
            image_id: &image.id,
            layer_dirs: &image.layer_dirs,
            config: &config,
            host_config: &host_config,
            host_resolv: &host_resolv,
            passwd: &read_from_layers(&upper, &image.layer_dirs, "etc/passwd")?,
            group: &read_from_layers(&upper, &image.layer_dirs, "etc/group")?,
            mounts,
            host_nofile_hard: host_nofile_hard(),
            no_new_privileges: self.config.no_new_privileges,
            runtime: self.config.runtimes.resolve(&host_config.runtime)?.map(PathBuf::from),
            init_binary: self.config.runtimes.init.clone(),
            userns: self
                .config
                .userns
                .as_ref()
                .filter(|_| crate::userns::applies(self.config.userns.as_ref(), &host_config)),
            joins,
            shm_source,
        })?;
        for (name, body) in &plan.files {
            std::fs::write(bundle.join(name), body)?;
        }
        step("bundle written");
        let limits = crate::cgroups::Limits::from_spec(&plan.spec);
        let cgroups = crate::cgroups::create(&self.host.cgroup_root, &c.id, &limits).inspect_err(|_| {
            crate::cgroups::remove(&self.host.cgroup_root, &c.id);
        })?;
        // The spec holds the container's environment: for root's eyes only.
        berth_core::perms::write_private(&bundle.join(files::SPEC), &plan.spec_json(cgroups)?)?;
        step("cgroups ready");

        let launched = launch::launch(&self.host.shim, &bundle)
            .instrument(tracing::info_span!("shim start", container = %c.id))
            .await;
        let outcome = match &launched {
            Ok(Report::Ready(_)) => "ok",
            _ => "error",
        };
        berth_core::metrics::global().inc(
            "berth_shim_starts_total",
            "Shims started, by outcome.",
            &[("result", outcome)],
            1.0,
        );
        let pid = match launched? {
            Report::Ready(pid) => pid,
            Report::Failed(code, msg) => {
                self.record_failed_start(&c.id, code, &msg).await?;
                return Err(crate::shim::start_error(code, &msg));
            }
        };
        step("shim reported");
        let started_at = berth_core::id::now_rfc3339();
        // The container exists and waits at the barrier: plug in its network,
        // connect the attaches that wait for this start, then let the command run.
        let plugged = match self
            .plug_network(c, &host_config, pid)
            .instrument(tracing::info_span!("network plug", container = %c.id))
            .await
        {
            Ok(s) => s,
            Err(e) => {
                let _ =
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
                if let Some(n) = &self.networks {
                    let _ = n.disconnect(&c.id, "").await;
                }
                self.record_failed_start(&c.id, 128, e.message()).await?;
                return Err(if e.kind() == ErrorKind::NotFound {
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
            let mut hosts = hosts_file(&config.hostname, Some(ip), &host_config);
            hosts.extend(links.iter().map(|l| l.hosts_line()));
            let _ = std::fs::write(bundle.join("hosts"), hosts);
        }
        // On a user-defined network, names come from the embedded DNS.
        if let Some(resolver) = &plugged.resolver {
            let resolv = embedded_resolv_conf(&host_resolv, &host_config, resolver);
            let _ = std::fs::write(bundle.join("resolv.conf"), resolv);
        }
        self.connect_waiters(&c.id, &bundle).await;
        step("attaches connected");
        if let Err(e) = crate::shim::start(&bundle).await {
            self.record_failed_start(&c.id, 128, e.message()).await?;
            return Err(e);
        }
        step("command running");
        let state = pb::ContainerState {
            pid,
            started_at,
            network_settings: berth_models::to_vec(&plugged.settings),
            ..record::state(ContainerStatus::Running)
        };
        self.store.set_state(&c.id, &state).await?;
        let mut running = c.clone();
        running.state = Some(state);
        self.spawn_watch(&running);
        self.spawn_health(&running, true);
        record::emit_volume_events(&self.config.events, c, "mount");
        tracing::info!(id = %c.id, pid, "container started");
        self.emit(c, "start", []);
        Ok(false)
    }

    /// The legacy links of `c`, on the default bridge only (on a user-defined
    /// network dockerd makes them DNS aliases): each linked container must run.
    async fn resolve_links(&self, c: &pb::Container, hc: &HostConfig) -> Result<Vec<crate::links::Link>> {
        if !matches!(hc.network_mode.as_str(), "" | "default" | "bridge") {
            return Ok(vec![]);
        }
        let mut out = Vec::new();
        for link in hc.links.iter().flatten() {
            let (name, alias) = crate::links::parse(link);
            let child =
                self.resolve(&name).await.map_err(|_| Error::invalid(format!("could not get container for {name}")))?;
            let state = child.state.clone().unwrap_or_default();
            let settings = record::network_settings(&state);
            let ip = settings.networks.get("bridge").map(|n| n.ip_address.clone()).filter(|ip| !ip.is_empty());
            let (Some(ip), true) = (ip, status(&child).is_running()) else {
                return Err(Error::conflict(format!(
                    "Cannot link to a non running container: /{} AS /{}/{alias}",
                    child.name, c.name
                )));
            };
            let child_config = record::config(&child)?;
            out.push(crate::links::Link {
                alias,
                parent: c.name.clone(),
                child_name: child.name.clone(),
                child_hostname: child_config.hostname.clone(),
                ip,
                child: child_config,
            });
        }
        Ok(out)
    }

    /// A start that failed leaves the container created, with dockerd's exit
    /// code (126, 127 or 128) and the reason in its state.
    async fn record_failed_start(&self, id: &str, code: i64, msg: &str) -> Result<()> {
        self.store.set_state(id, &record::failed_start(code, msg)).await
    }
}
