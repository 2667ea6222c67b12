//! Running to exited: watching for a container's exit (through its shim, or
//! by polling its bundle when the shim is gone), recording it, and the
//! signals, stops and waits that lead there.

use std::path::Path;
use std::time::Duration;

use berth_core::{Error, Result};
use berth_models::container::ContainerStatus;
use berth_shim::protocol::ExitRecord;
use tokio::sync::broadcast;

use super::{Event, container_pid, parse_signal, read_exit};
use crate::pb;
use crate::record;
use crate::service::{LocalRuntime, status};

/// Waits for a container's exit without its shim's help (the shim is gone or
/// going): the exit record it left, or, once the init is gone too and no record
/// came, a stand-in.
async fn poll_exit(bundle: &Path, pid: i64, id: &str) -> ExitRecord {
    let mut dead_since: Option<std::time::Instant> = None;
    loop {
        if let Some(e) = read_exit(bundle) {
            return e;
        }
        if !container_pid(pid, id) {
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
                self.spawn_health(&c, false);
            }
        }
        Ok(())
    }

    pub(super) fn spawn_watch(&self, c: &pb::Container) {
        let store = self.store.clone();
        let networks = self.networks.clone();
        let volumes = self.volumes.clone();
        let host = self.host.clone();
        let bus = self.config.events.clone();
        let container = c.clone();
        let id = c.id.clone();
        let pid = c.state.as_ref().map(|s| s.pid).unwrap_or(0);
        let auto_remove = record::host_config(c).map(|h| h.auto_remove).unwrap_or(false);
        let rt = self.clone();
        tokio::spawn(async move {
            let bundle = host.bundle(&id);
            let exit = match crate::shim::wait(&bundle).await {
                Some(exit) => exit,
                None => poll_exit(&bundle, pid, &id).await,
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
            if oom {
                record::emit(&bus, &container, "oom", []);
            }
            record::emit(&bus, &container, "die", [("exitCode", code.to_string())]);
            record::emit_volume_events(&bus, &container, "unmount");
            let _ = host.events.send(Event::Exited(id.clone(), code));
            if auto_remove {
                // Volumes and addresses first: `docker run --rm` returns once
                // the container is gone, and nothing of it may show after.
                crate::volumes::release(volumes.as_ref(), &id, true).await;
                if let Some(n) = &networks
                    && let Err(e) = n.disconnect(&id, "").await
                {
                    tracing::warn!(id = %id, error = %e, "release the container's addresses");
                }
                if let Err(e) = store.delete(&id).await {
                    tracing::warn!(id = %id, error = %e, "auto-remove");
                }
                host.forget(&id);
                record::emit(&bus, &container, "destroy", []);
            }
            // Clean-up nobody waits for (removing cgroups and the rest of the
            // veth pair waits on the kernel tearing the namespaces down), and
            // the restart policy's decision: under the container's lifecycle
            // lock, and only while no new run has begun (a `docker restart`
            // starts one as soon as the exit is recorded).
            let lock = host.lock_of(&id);
            let guard = lock.lock().await;
            let still_exited =
                auto_remove || rt.resolve(&id).await.is_ok_and(|c| status(&c) == ContainerStatus::Exited);
            if still_exited {
                let (root, cid) = (host.cgroup_root.clone(), id.clone());
                let _ = tokio::task::spawn_blocking(move || crate::cgroups::remove(&root, &cid)).await;
                super::shared_shm::unmount(&host.bundle(&id));
                if !auto_remove
                    && let Some(n) = &networks
                    && let Err(e) = n.disconnect(&id, "").await
                {
                    tracing::warn!(id = %id, error = %e, "release the container's addresses");
                }
            }
            drop(guard);
            if !auto_remove && still_exited {
                rt.restart_after_exit(&id, code).await;
            }
        });
    }

    /// Sends `signal` to a running container.
    pub(crate) async fn signal_container(&self, reference: &str, signal: &str) -> Result<()> {
        let sig = parse_signal(if signal.is_empty() { "KILL" } else { signal })?;
        let mut c = self.resolve(reference).await?;
        if status(&c) == ContainerStatus::Paused {
            // A frozen process takes no signal until thawed.
            self.thaw_if_paused(&c).await?;
            c = self.resolve(&c.id).await?;
        }
        let pid = c.state.as_ref().map(|s| s.pid).unwrap_or(0);
        if !status(&c).can_signal() || !container_pid(pid, &c.id) {
            return Err(Error::conflict(format!("Container {} is not running", c.id)));
        }
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig)
            .map_err(|e| Error::internal(format!("kill {pid}: {e}")))?;
        self.emit(&c, "kill", [("signal", (sig as i32).to_string())]);
        Ok(())
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

    /// `docker kill`: thaws a paused container first, and with SIGKILL (the
    /// default) returns once the exit is recorded, as dockerd does, so an
    /// inspect right after shows it stopped with 137.
    pub(crate) async fn kill_container(&self, reference: &str, signal: &str) -> Result<()> {
        let sig = parse_signal(if signal.is_empty() { "KILL" } else { signal })?;
        let mut c = self.resolve(reference).await?;
        if status(&c) == ContainerStatus::Restarting || status(&c).is_running() {
            // Marked under the lifecycle lock, from a fresh record.
            let (now, ended) = self.end_restart_loop(&c).await?;
            if ended {
                // Between two runs: no process to signal; the loop ends (dockerd's answer).
                return Ok(());
            }
            c = now;
        }
        if sig != nix::sys::signal::Signal::SIGKILL {
            return self.signal_container(&c.id, signal).await;
        }
        let pid = c.state.as_ref().map(|s| s.pid).unwrap_or(0);
        if !status(&c).is_running() || !container_pid(pid, &c.id) {
            return Err(Error::conflict(format!("Container {} is not running", c.id)));
        }
        self.kill_and_wait(&c).await
    }

    /// Stops a container: its stop signal, then SIGKILL after `timeout` seconds.
    /// `Ok(true)` when it was not running. A paused container is thawed first.
    pub(crate) async fn stop_container(&self, reference: &str, timeout: i64, signal: &str) -> Result<bool> {
        let c = self.resolve(reference).await?;
        // Stopped by the user, under the lifecycle lock, whatever the status
        // read here: an exit just recorded may be about to become a restart
        // (the policy loop takes the same lock and then sees the mark), a
        // container between two runs ends its loop here, and one the loop
        // started again while this waited for the lock is stopped below.
        let (c, ended) = self.end_restart_loop(&c).await?;
        if ended {
            self.emit(&c, "stop", []);
            return Ok(false);
        }
        self.thaw_if_paused(&c).await?;
        let c = self.resolve(&c.id).await?;
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
        self.emit(&c, "stop", []);
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
}
