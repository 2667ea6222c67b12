//! Attach, exec and TTY resize: everything that reaches a container's processes
//! through its shim's control socket ([`crate::shim`]).
//!
//! Exec records live in memory, as in dockerd: they describe processes of running
//! containers and mean nothing after the runtime restarts. An exec's exit code is
//! also written by the shim to `exec-<id>.json` in the bundle, so a detached
//! exec's code is known even though nobody streamed it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use berth_core::{Error, Result};
use berth_models::container::{ContainerStatus, ExecConfig};
use futures::StreamExt;
use tokio::sync::oneshot;

use crate::pb;
use crate::record;
use crate::service::{LocalRuntime, status};
use crate::shim::{self, InputPolicy, InputStream, OutputStream};
use berth_shim::protocol::{ExecRequest, ExitRecord, Request, files};

/// An exec: what to run, and what became of it.
#[derive(Debug, Clone)]
pub struct ExecRecord {
    /// The exec's ID.
    pub id: String,
    /// Its container's ID.
    pub container_id: String,
    /// Docker's ExecConfig.
    pub config: ExecConfig,
    /// Started once (an exec runs at most once).
    pub started: bool,
    /// The process, once started.
    pub pid: i64,
    /// Its exit code, once it exited.
    pub exit_code: Option<i64>,
}

/// The execs of this runtime, by ID.
pub type Execs = Arc<Mutex<HashMap<String, ExecRecord>>>;

/// An attach that waits for its container's next start.
#[derive(Debug)]
pub struct Waiter {
    request: Request,
    conn: oneshot::Sender<tokio::net::UnixStream>,
}

/// Attaches waiting for a start, by container ID.
pub type Waiters = Arc<Mutex<HashMap<String, Vec<Waiter>>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep using it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn not_running(id: &str) -> Error {
    Error::conflict(format!("Container {id} is not running"))
}

/// Why an exec cannot run in `c`: paused, or not running (dockerd's words).
fn cannot_exec(c: &pb::Container) -> Error {
    if status(c) == ContainerStatus::Paused {
        Error::conflict(format!("Container {} is paused, unpause the container before exec", c.id))
    } else {
        not_running(&c.id)
    }
}

/// `base` with `overrides` applied by variable name (a name without `=` unsets
/// nothing and is ignored, as in dockerd's exec).
fn merge_env(base: Vec<String>, overrides: &[String]) -> Vec<String> {
    let mut out = base;
    for o in overrides.iter().filter(|o| o.contains('=')) {
        let key = o.split('=').next().unwrap_or_default();
        out.retain(|e| e.split('=').next() != Some(key));
        out.push(o.clone());
    }
    out
}

impl LocalRuntime {
    /// Attaches to a container's streams; waits for its next start when it is
    /// not running, and then sees all of its output.
    pub(crate) async fn attach_container(&self, req: pb::AttachRequest, input: InputStream) -> Result<OutputStream> {
        let c = self.resolve(&req.reference).await?;
        let config = record::config(&c)?;
        let tty = config.tty;
        let stdin = req.stdin && config.open_stdin;
        let policy = InputPolicy { stdin, close_on_eof: config.stdin_once && !tty };
        let request = Request::Attach { stdin, stdout: req.stdout, stderr: req.stderr };
        let bundle = self.host.bundle(&c.id);
        if status(&c) == ContainerStatus::Paused {
            return Err(Error::conflict("You cannot attach to a paused container, unpause it first"));
        }
        self.emit(&c, "attach", []);
        if status(&c).can_exec() {
            let (reply, conn) = shim::request(&bundle, &request).await?;
            reply.into_result().map_err(|(_, msg)| Error::internal(msg))?;
            return Ok(shim::pump(conn, input, policy));
        }
        let (conn_tx, conn_rx) = oneshot::channel();
        lock(&self.host.waiters).entry(c.id.clone()).or_default().push(Waiter { request, conn: conn_tx });
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            // Dropped unanswered when the start fails or the container goes.
            let Ok(conn) = conn_rx.await else { return };
            let mut out = shim::pump(conn, input, policy);
            while let Some(item) = out.next().await {
                if tx.send(item).await.is_err() {
                    return;
                }
            }
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    /// Connects the attaches that waited for this start, before the command runs.
    pub(crate) async fn connect_waiters(&self, id: &str, bundle: &Path) {
        let waiting = lock(&self.host.waiters).remove(id).unwrap_or_default();
        for w in waiting {
            if w.conn.is_closed() {
                continue;
            }
            match shim::request(bundle, &w.request).await {
                Ok((reply, conn)) if reply.ok => {
                    let _ = w.conn.send(conn);
                }
                Ok((reply, _)) => tracing::warn!(id, ?reply, "attach refused"),
                Err(e) => tracing::warn!(id, error = %e, "attach"),
            }
        }
    }

    /// Sets the window size of a container's or an exec's TTY.
    pub(crate) async fn resize_tty(&self, req: pb::ResizeTtyRequest) -> Result<()> {
        let (container, exec) = if req.exec_id.is_empty() {
            (req.reference.clone(), String::new())
        } else {
            let rec = self.exec_record(&req.exec_id)?;
            (rec.container_id, rec.id)
        };
        let c = self.resolve(&container).await?;
        if !status(&c).can_exec() {
            return Err(not_running(&c.id));
        }
        // A container without a TTY has nothing to resize: dockerd answers OK.
        if exec.is_empty() && !crate::record::config(&c).is_ok_and(|cfg| cfg.tty) {
            return Ok(());
        }
        let clamp = |n: u32| u16::try_from(n).unwrap_or(u16::MAX);
        let request = Request::Resize {
            height: clamp(req.height),
            width: clamp(req.width),
            exec: (!exec.is_empty()).then_some(exec),
        };
        let (reply, _) = shim::request(&self.host.bundle(&c.id), &request).await?;
        reply.into_result().map(drop).map_err(|(_, msg)| Error::invalid(format!("cannot resize: {msg}")))
    }

    fn exec_record(&self, id: &str) -> Result<ExecRecord> {
        lock(&self.execs).get(id).cloned().ok_or_else(|| Error::not_found(format!("No such exec instance: {id}")))
    }

    /// Records an exec for a running container.
    pub(crate) async fn exec_create(&self, req: pb::CreateExecRequest) -> Result<String> {
        let c = self.resolve(&req.reference).await?;
        if !status(&c).can_exec() {
            return Err(cannot_exec(&c));
        }
        let config: ExecConfig = berth_models::parse("exec config", &req.config).map_err(Error::invalid)?;
        crate::create::validate_env(config.env.as_deref().unwrap_or_default())?;
        if config.cmd.is_empty() {
            return Err(Error::invalid("No exec command specified"));
        }
        let id = berth_core::id::random_id();
        self.emit(&c, &format!("exec_create: {}", config.cmd.as_slice().join(" ")), [("execID", id.clone())]);
        let rec =
            ExecRecord { id: id.clone(), container_id: c.id.clone(), config, started: false, pid: 0, exit_code: None };
        lock(&self.execs).insert(id.clone(), rec);
        Ok(id)
    }

    /// The exec's state, with the exit code of a detached exec picked up from
    /// the shim's record.
    pub(crate) async fn exec_inspect(&self, id: &str) -> Result<pb::InspectExecResponse> {
        let mut rec = self.exec_record(id)?;
        if rec.started && rec.exit_code.is_none() {
            let file = self.host.bundle(&rec.container_id).join(files::exec_exit(id));
            let code = std::fs::read(&file).ok().and_then(|b| serde_json::from_slice::<ExitRecord>(&b).ok());
            let code = match code {
                Some(record) => Some(record.exit_code),
                // The container (and so the exec) is gone without a record.
                None => match self.resolve(&rec.container_id).await {
                    Ok(c) if status(&c).is_running() => None,
                    _ => Some(137),
                },
            };
            if let Some(code) = code {
                rec.exit_code = Some(code);
                if let Some(r) = lock(&self.execs).get_mut(id) {
                    r.exit_code = Some(code);
                }
            }
        }
        Ok(pb::InspectExecResponse {
            id: rec.id,
            container_id: rec.container_id,
            running: rec.started && rec.exit_code.is_none(),
            exit_code: rec.exit_code,
            pid: if rec.exit_code.is_none() { rec.pid } else { 0 },
            config: berth_models::to_vec(&rec.config),
        })
    }

    /// Runs an exec. Unless detached, the stream carries its output and ends with
    /// its exit code; a command that cannot be started is reported in the stream
    /// (and by the exec's exit code, 126 or 127), as dockerd does.
    pub(crate) async fn exec_start(&self, req: pb::StartExecRequest, input: InputStream) -> Result<OutputStream> {
        let rec = {
            let mut execs = lock(&self.execs);
            let rec = execs
                .get_mut(&req.exec_id)
                .ok_or_else(|| Error::not_found(format!("No such exec instance: {}", req.exec_id)))?;
            if rec.started {
                let what = if rec.exit_code.is_some() { "has already run" } else { "is already running" };
                return Err(Error::conflict(format!("Error: Exec command {} {what}", rec.id)));
            }
            rec.started = true;
            rec.clone()
        };
        let result = self.exec_start_inner(&rec, req.detach, input).await;
        if let Err(e) = &result {
            if let Some(r) = lock(&self.execs).get_mut(&rec.id) {
                r.exit_code = Some(126);
            }
            tracing::warn!(exec = %rec.id, error = %e, "exec failed");
        }
        result
    }

    async fn exec_start_inner(&self, rec: &ExecRecord, detach: bool, input: InputStream) -> Result<OutputStream> {
        let c = self.resolve(&rec.container_id).await?;
        let pid = c.state.as_ref().map(|s| s.pid).unwrap_or(0);
        if !status(&c).can_exec() {
            return Err(cannot_exec(&c));
        }
        let bundle = self.host.bundle(&c.id);
        let (spec, _) = std::fs::read(bundle.join(files::SPEC))
            .map_err(|e| e.to_string())
            .and_then(|b| berth_shim::spec::Spec::parse(&b))
            .map_err(|e| Error::internal(format!("the container's bundle: {e}")))?;
        let cfg = &rec.config;
        let container_cfg = record::config(&c)?;
        let host_cfg = record::host_config(&c)?;
        let user_spec = if cfg.user.is_empty() { &container_cfg.user } else { &cfg.user };
        // The container's own view of its users, through its root, without
        // following its symlinks out of it (see berth_core::rootfs).
        let root = std::path::PathBuf::from(format!("/proc/{pid}/root"));
        let passwd = crate::spec::read_user_db(&root, "etc/passwd")?;
        let group = crate::spec::read_user_db(&root, "etc/group")?;
        let user = crate::spec::resolve_user(user_spec, host_cfg.group_add(), &passwd, &group)?;
        let (tty, stdin) = (cfg.tty, cfg.attach_stdin);
        let cwd = if cfg.working_dir.is_empty() { &spec.process.cwd } else { &cfg.working_dir };
        let request = Request::Exec(ExecRequest {
            id: rec.id.clone(),
            args: cfg.cmd.as_slice().to_vec(),
            env: merge_env(spec.process.env.clone(), cfg.env.as_deref().unwrap_or_default()),
            cwd: if cwd.is_empty() { "/".into() } else { cwd.to_string() },
            uid: user.uid,
            gid: user.gid,
            groups: user.additional_gids,
            tty,
            stdin,
            detach,
        });
        let (reply, conn) = shim::request(&bundle, &request).await?;
        let execs = self.execs.clone();
        let id = rec.id.clone();
        let (bus, container) = (self.config.events.clone(), c.clone());
        let set_exit = move |code: i64| {
            if let Some(r) = lock(&execs).get_mut(&id) {
                r.exit_code = Some(code);
            }
            record::emit(&bus, &container, "exec_die", [("execID", id.clone()), ("exitCode", code.to_string())]);
        };
        if let Err((code, msg)) = reply.clone().into_result() {
            let code = if code == 125 || code == 128 { 126 } else { i64::from(code) };
            set_exit(code);
            let message =
                format!("OCI runtime exec failed: exec failed: unable to start container process: {msg}: unknown");
            if detach {
                return Err(if code == 126 { Error::internal(message) } else { Error::invalid(message) });
            }
            let out = vec![
                Ok(pb::StreamOutput { stream: 1, data: format!("{message}\r\n").into_bytes(), ..Default::default() }),
                Ok(pb::StreamOutput { exited: true, exit_code: code, ..Default::default() }),
            ];
            return Ok(Box::pin(futures::stream::iter(out)));
        }
        let exec_pid = reply.pid.map(i64::from).unwrap_or(0);
        if let Some(r) = lock(&self.execs).get_mut(&rec.id) {
            r.pid = exec_pid;
        }
        tracing::info!(container = %c.id, exec = %rec.id, pid = exec_pid, "exec started");
        self.emit(&c, &format!("exec_start: {}", cfg.cmd.as_slice().join(" ")), [("execID", rec.id.clone())]);
        if detach {
            // Nobody reads this exec's stream: its exit is picked up from the
            // record the shim leaves (`exec-<id>.json`), for inspect and exec_die.
            let (rt, file) = (self.clone(), bundle.join(files::exec_exit(&rec.id)));
            tokio::spawn(async move {
                let code = loop {
                    if let Some(r) =
                        std::fs::read(&file).ok().and_then(|b| serde_json::from_slice::<ExitRecord>(&b).ok())
                    {
                        break r.exit_code;
                    }
                    match rt.resolve(&c.id).await {
                        Ok(now) if status(&now).is_running() => {}
                        // The container (and so the exec) is gone without a record.
                        _ => break 137,
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                };
                set_exit(code);
            });
            return Ok(Box::pin(futures::stream::empty()));
        }
        let out = shim::pump(conn, input, InputPolicy { stdin, close_on_eof: !tty });
        Ok(Box::pin(out.inspect(move |item| {
            if let Ok(o) = item
                && o.exited
            {
                set_exit(o.exit_code);
            }
        })))
    }

    /// The host PID of a started exec.
    pub(crate) fn exec_pid(&self, id: &str) -> Option<i64> {
        lock(&self.execs).get(id).map(|r| r.pid)
    }

    /// Forgets one exec (a health probe's, once it is judged), and the exit
    /// record the shim left for it.
    pub(crate) fn forget_exec(&self, id: &str) {
        let removed = lock(&self.execs).remove(id);
        if let Some(rec) = removed {
            let _ = std::fs::remove_file(self.host.bundle(&rec.container_id).join(files::exec_exit(id)));
        }
    }

    /// Forgets the execs of a removed container.
    pub(crate) fn forget_execs(&self, container_id: &str) {
        lock(&self.execs).retain(|_, r| r.container_id != container_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_env_overrides_by_name() {
        let base = vec!["PATH=/bin".to_string(), "A=1".to_string()];
        let merged = merge_env(base, &["A=2".into(), "B=3".into(), "NOEQUALS".into()]);
        assert_eq!(merged, vec!["PATH=/bin", "A=2", "B=3"]);
    }
}
