//! Healthchecks, as dockerd runs them (`daemon/health.go`): a monitor per
//! running container with a healthcheck probes it with an exec every interval
//! (every start interval while it is starting, within the start period), keeps
//! `State.Health` (status, failing streak, the last five results) in the store,
//! and publishes `health_status: ...` when the status changes. A runtime that
//! restarts picks its monitors up again with the stored state.

use std::time::Duration;

use berth_core::{Error, Result};
use berth_models::StrSlice;
use berth_models::container::{ContainerStatus, ExecConfig, Health, HealthConfig, HealthLog};
use futures::StreamExt;
use tokio::sync::broadcast;

use super::Event;
use crate::pb;
use crate::record;
use crate::service::{LocalRuntime, status};

const SECOND: i64 = 1_000_000_000;
/// dockerd's defaults.
const DEFAULT_INTERVAL: i64 = 30 * SECOND;
const DEFAULT_TIMEOUT: i64 = 30 * SECOND;
const DEFAULT_START_INTERVAL: i64 = 5 * SECOND;
const DEFAULT_RETRIES: i64 = 3;
/// Results kept in `State.Health.Log`.
const MAX_LOG: usize = 5;
/// Bytes of a probe's output kept.
const MAX_OUTPUT: usize = 4096;

/// A healthcheck with dockerd's defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Probe {
    argv: Vec<String>,
    interval: Duration,
    timeout: Duration,
    start_period: Duration,
    start_interval: Duration,
    retries: i64,
}

fn or_default(ns: i64, default: i64) -> Duration {
    Duration::from_nanos(if ns > 0 { ns } else { default } as u64)
}

impl Probe {
    /// The probe of `cfg`, run by `shell` for `CMD-SHELL`; none for `NONE` or
    /// no test.
    pub(crate) fn of(cfg: &HealthConfig, shell: &[String]) -> Option<Probe> {
        let argv = match cfg.test.first().map(String::as_str) {
            Some("CMD") => cfg.test[1..].to_vec(),
            Some("CMD-SHELL") => {
                let mut argv = if shell.is_empty() { vec!["/bin/sh".into(), "-c".into()] } else { shell.to_vec() };
                argv.push(cfg.test[1..].join(" "));
                argv
            }
            _ => return None,
        };
        if argv.is_empty() {
            return None;
        }
        Some(Probe {
            argv,
            interval: or_default(cfg.interval, DEFAULT_INTERVAL),
            timeout: or_default(cfg.timeout, DEFAULT_TIMEOUT),
            start_period: or_default(cfg.start_period, 0),
            start_interval: or_default(cfg.start_interval, DEFAULT_START_INTERVAL),
            retries: if cfg.retries > 0 { cfg.retries } else { DEFAULT_RETRIES },
        })
    }

    /// How long to wait for the next probe.
    fn next_interval(&self, since_start: Duration, health: &Health) -> Duration {
        if since_start < self.start_period && health.status == "starting" { self.start_interval } else { self.interval }
    }
}

/// Go's rendering of a duration in `Health check exceeded timeout (1.5s)`.
fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs_f64();
    let (h, m) = ((secs / 3600.0) as u64, ((secs % 3600.0) / 60.0) as u64);
    let s = secs % 60.0;
    let s = if s.fract() == 0.0 { format!("{}s", s as u64) } else { format!("{s}s") };
    match (h, m) {
        (0, 0) => s,
        (0, m) => format!("{m}m{s}"),
        (h, m) => format!("{h}h{m}m{s}"),
    }
}

/// Applies one probe result, as dockerd does: success is healthy and resets
/// the streak; a failure counts unless the container is still starting within
/// its start period, and `retries` of them in a row are unhealthy. Keeps the
/// last five results. Answers whether the status changed.
pub(crate) fn judge(health: &mut Health, result: HealthLog, in_start_period: bool, retries: i64) -> bool {
    let before = health.status.clone();
    if result.exit_code == 0 {
        health.failing_streak = 0;
        health.status = "healthy".into();
    } else if !(health.status == "starting" && in_start_period) {
        health.failing_streak += 1;
        if health.failing_streak >= retries {
            health.status = "unhealthy".into();
        }
    }
    health.log.push(result);
    if health.log.len() > MAX_LOG {
        let extra = health.log.len() - MAX_LOG;
        health.log.drain(..extra);
    }
    health.status != before
}

/// Waits until container `id` exits or is removed.
async fn ended(rx: &mut broadcast::Receiver<Event>, id: &str) {
    loop {
        match rx.recv().await {
            Ok(Event::Exited(i, _)) | Ok(Event::Removed(i)) if i == id => return,
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

fn started_at(c: &pb::Container) -> time::OffsetDateTime {
    c.state
        .as_ref()
        .and_then(|s| time::OffsetDateTime::parse(&s.started_at, &time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(time::OffsetDateTime::now_utc)
}

impl LocalRuntime {
    /// Starts the health monitor of running container `c`, if it has a
    /// healthcheck: `fresh` after a start (the status begins as `starting`),
    /// or continuing from the stored state after a runtime restart.
    pub(crate) fn spawn_health(&self, c: &pb::Container, fresh: bool) {
        let Ok(config) = record::config(c) else { return };
        let Some(probe) = config.healthcheck.as_ref().and_then(|h| Probe::of(h, config.shell.as_slice())) else {
            return;
        };
        let stored: Option<Health> = c
            .state
            .as_ref()
            .filter(|s| !fresh && !s.health.is_empty())
            .and_then(|s| berth_models::parse("health", &s.health).ok());
        let rt = self.clone();
        let id = c.id.clone();
        let started = started_at(c);
        // This monitor's run: it writes nothing once another run has begun.
        let run = c.state.as_ref().map(|s| s.started_at.clone()).unwrap_or_default();
        // Subscribed before the task runs, so an exit right after the start is seen.
        let mut rx = self.host.subscribe();
        tokio::spawn(async move {
            let mut health =
                stored.unwrap_or_else(|| Health { status: "starting".into(), failing_streak: 0, log: vec![] });
            if let Err(e) = rt.store.set_health(&id, &berth_models::to_vec(&health)).await {
                tracing::warn!(id = %id, error = %e, "record health");
            }
            loop {
                let since_start = Duration::try_from(time::OffsetDateTime::now_utc() - started).unwrap_or_default();
                tokio::select! {
                    () = tokio::time::sleep(probe.next_interval(since_start, &health)) => {}
                    () = ended(&mut rx, &id) => {
                        // As dockerd: a stopped monitor leaves the status unhealthy.
                        if rt.resolve(&id).await.is_ok_and(|c| c.state.is_some_and(|s| s.started_at == run)) {
                            health.status = "unhealthy".into();
                            let _ = rt.store.set_health(&id, &berth_models::to_vec(&health)).await;
                        }
                        return;
                    }
                }
                let c = match rt.resolve(&id).await {
                    Ok(c) => c,
                    Err(_) => return,
                };
                match status(&c) {
                    ContainerStatus::Running => {}
                    ContainerStatus::Paused => continue,
                    _ => return,
                }
                let result = rt.probe(&c, &probe).await;
                let in_start_period =
                    Duration::try_from(time::OffsetDateTime::now_utc() - started).is_ok_and(|d| d < probe.start_period);
                // The container may have exited, even started again, during the probe.
                match rt.resolve(&id).await {
                    Ok(now) if now.state.as_ref().is_some_and(|s| s.started_at == run) && status(&now).is_running() => {
                    }
                    _ => continue,
                }
                let changed = judge(&mut health, result, in_start_period, probe.retries);
                if let Err(e) = rt.store.set_health(&id, &berth_models::to_vec(&health)).await {
                    tracing::warn!(id = %id, error = %e, "record health");
                }
                if changed {
                    tracing::info!(id = %id, status = %health.status, "health status");
                    rt.emit(&c, &format!("health_status: {}", health.status), []);
                }
            }
        });
    }

    /// Runs one probe as an exec: its exit code and the first 4 KiB of its
    /// output, or -1 when it runs past the timeout (and is killed).
    async fn probe(&self, c: &pb::Container, probe: &Probe) -> HealthLog {
        let start = berth_core::id::now_rfc3339();
        let outcome = self.run_probe(c, probe).await;
        let (exit_code, output) = match outcome {
            Ok(r) => r,
            Err(e) => (-1, e.message().to_string()),
        };
        HealthLog { start, end: berth_core::id::now_rfc3339(), exit_code, output }
    }

    async fn run_probe(&self, c: &pb::Container, probe: &Probe) -> Result<(i64, String)> {
        let config = ExecConfig {
            attach_stdout: true,
            attach_stderr: true,
            cmd: StrSlice(Some(probe.argv.clone())),
            ..Default::default()
        };
        let req = pb::CreateExecRequest { reference: c.id.clone(), config: berth_models::to_vec(&config) };
        let exec_id = self.exec_create(req).await?;
        let start = pb::StartExecRequest { exec_id: exec_id.clone(), detach: false };
        let result = async {
            let mut out = self.exec_start(start, Box::pin(futures::stream::empty())).await?;
            let collect = async {
                let (mut output, mut code) = (Vec::new(), -1);
                while let Some(item) = out.next().await {
                    match item {
                        Ok(o) if o.exited => code = o.exit_code,
                        Ok(o) => {
                            let room = MAX_OUTPUT.saturating_sub(output.len());
                            output.extend_from_slice(&o.data[..o.data.len().min(room)]);
                        }
                        Err(_) => break,
                    }
                }
                (code, String::from_utf8_lossy(&output).into_owned())
            };
            match tokio::time::timeout(probe.timeout, collect).await {
                Ok(r) => Ok(r),
                Err(_) => {
                    if let Some(pid) = self.exec_pid(&exec_id).filter(|p| *p > 0) {
                        let _ =
                            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::SIGKILL);
                    }
                    Ok((-1, format!("Health check exceeded timeout ({})", go_duration(probe.timeout))))
                }
            }
        }
        .await;
        self.forget_exec(&exec_id);
        result.map_err(|e: Error| e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(code: i64) -> HealthLog {
        HealthLog { exit_code: code, ..Default::default() }
    }

    #[test]
    fn probes_as_dockerd_reads_the_test() {
        let cfg =
            |test: &[&str]| HealthConfig { test: test.iter().map(|s| s.to_string()).collect(), ..Default::default() };
        let p = Probe::of(&cfg(&["CMD-SHELL", "curl -f localhost"]), &[]).expect("shell");
        assert_eq!(p.argv, ["/bin/sh", "-c", "curl -f localhost"]);
        assert_eq!((p.interval, p.timeout, p.retries), (Duration::from_secs(30), Duration::from_secs(30), 3));
        let p = Probe::of(&cfg(&["CMD", "true", "x"]), &[]).expect("exec form");
        assert_eq!(p.argv, ["true", "x"]);
        let shell = ["/bin/ash".to_string(), "-ec".to_string()];
        assert_eq!(
            Probe::of(&cfg(&["CMD-SHELL", "exit 0"]), &shell).expect("SHELL").argv,
            ["/bin/ash", "-ec", "exit 0"]
        );
        assert!(Probe::of(&cfg(&["NONE"]), &[]).is_none());
        assert!(Probe::of(&cfg(&[]), &[]).is_none());
        assert!(Probe::of(&cfg(&["CMD"]), &[]).is_none());
    }

    #[test]
    fn results_make_the_status_as_on_dockerd() {
        let mut h = Health { status: "starting".into(), ..Default::default() };
        assert!(!judge(&mut h, log(1), true, 3), "a failure in the start period does not count");
        assert_eq!((h.status.as_str(), h.failing_streak), ("starting", 0));
        assert!(judge(&mut h, log(0), true, 3), "a success counts at once");
        assert_eq!(h.status, "healthy");
        assert!(!judge(&mut h, log(1), false, 2));
        assert_eq!(h.failing_streak, 1);
        assert!(judge(&mut h, log(-1), false, 2), "retries failures in a row");
        assert_eq!((h.status.as_str(), h.failing_streak), ("unhealthy", 2));
        for _ in 0..10 {
            judge(&mut h, log(1), false, 2);
        }
        assert_eq!(h.log.len(), 5, "the last five results");
        assert!(judge(&mut h, log(0), false, 2));
        assert_eq!((h.status.as_str(), h.failing_streak), ("healthy", 0));
    }

    #[test]
    fn probe_timing() {
        let cfg = HealthConfig {
            test: vec!["CMD".into(), "true".into()],
            interval: 10 * SECOND,
            start_period: 60 * SECOND,
            start_interval: SECOND,
            ..Default::default()
        };
        let p = Probe::of(&cfg, &[]).expect("probe");
        let starting = Health { status: "starting".into(), ..Default::default() };
        let healthy = Health { status: "healthy".into(), ..Default::default() };
        assert_eq!(p.next_interval(Duration::from_secs(5), &starting), Duration::from_secs(1));
        assert_eq!(p.next_interval(Duration::from_secs(5), &healthy), Duration::from_secs(10));
        assert_eq!(p.next_interval(Duration::from_secs(90), &starting), Duration::from_secs(10));
        assert_eq!(go_duration(Duration::from_secs(30)), "30s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_millis(200)), "200ms");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
    }
}
