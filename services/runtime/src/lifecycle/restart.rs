//! Restart policies, as dockerd's restart manager applies them: after an exit
//! the container is `restarting` for a delay that starts at 100 ms and doubles
//! with each restart (up to a minute), back to 100 ms once a run lasted 10 s;
//! `docker stop` or `kill` ends the loop; `always` and `unless-stopped`
//! containers are started again when berthd starts (after a reboot), while
//! those whose shims kept running are adopted, not restarted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_models::container::ContainerStatus;

use crate::pb;
use crate::record;
use crate::service::{LocalRuntime, status};

const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(60);
/// A run at least this long resets the delay.
const STABLE: Duration = Duration::from_secs(10);

/// The current delay of each container that restarts.
#[derive(Debug, Clone, Default)]
pub struct Backoff(Arc<Mutex<HashMap<String, Duration>>>);

impl Backoff {
    /// The delay before the next restart of `id`, whose last run lasted `ran`.
    pub fn next(&self, id: &str, ran: Duration) -> Duration {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let next = match map.get(id) {
            Some(d) if ran < STABLE => (*d * 2).min(MAX_DELAY),
            _ => FIRST_DELAY,
        };
        map.insert(id.to_string(), next);
        next
    }

    /// Forgets `id` (a user start, a removal).
    pub fn forget(&self, id: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }
}

/// How long the last run of `c` lasted.
fn last_run(c: &pb::Container) -> Duration {
    let parse = |t: &str| time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok();
    let st = c.state.clone().unwrap_or_default();
    match (parse(&st.started_at), parse(&st.finished_at)) {
        (Some(a), Some(b)) => Duration::try_from(b - a).unwrap_or_default(),
        _ => Duration::ZERO,
    }
}

impl LocalRuntime {
    /// After container `id` exited with `code`: restarts it if its policy says
    /// so, after the back-off delay, unless it is stopped meanwhile.
    pub(crate) async fn restart_after_exit(&self, id: &str, code: i64) {
        let lock = self.host.lock_of(id);
        let delay = {
            let _guard = lock.lock().await;
            let Ok(c) = self.resolve(id).await else { return };
            let Ok(hc) = record::host_config(&c) else { return };
            // Started again by hand meanwhile, or stopped: not the loop's business.
            if status(&c) != ContainerStatus::Exited
                || !hc.restart_policy.restarts_after(code, c.restart_count, c.manually_stopped)
            {
                self.host.backoff.forget(id);
                return;
            }
            let delay = self.host.backoff.next(id, last_run(&c));
            let mut state = c.state.clone().unwrap_or_default();
            state.status = ContainerStatus::Restarting.as_str().into();
            state.pid = 0;
            if let Err(e) = self.store.set_state(id, &state).await {
                tracing::warn!(id, error = %e, "record restarting");
                return;
            }
            delay
        };
        tracing::info!(id, ms = delay.as_millis() as u64, "restarting by policy");
        tokio::time::sleep(delay).await;
        let _guard = lock.lock().await;
        // Stopped, killed, removed or started meanwhile: nothing to do.
        let Ok(c) = self.resolve(id).await else { return };
        if status(&c) != ContainerStatus::Restarting || c.manually_stopped {
            return;
        }
        if let Err(e) = self.store.set_restart(id, c.restart_count + 1, c.manually_stopped).await {
            tracing::warn!(id, error = %e, "record the restart count");
        }
        let c = match self.resolve(id).await {
            Ok(c) => c,
            Err(_) => return,
        };
        if let Err(e) = self.start_resolved(&c).await {
            tracing::warn!(id, error = %e, "restart by policy failed");
            let mut state = c.state.clone().unwrap_or_default();
            if status(&c) == ContainerStatus::Restarting {
                state.status = ContainerStatus::Exited.as_str().into();
                let _ = self.store.set_state(id, &state).await;
            }
        }
    }

    /// When berthd starts: `always` containers, and `unless-stopped` ones the
    /// user did not stop, that are not running (the host rebooted, or berthd
    /// was down when they exited) are started again.
    pub(crate) fn restart_at_boot(&self) {
        let rt = self.clone();
        tokio::spawn(async move {
            let Ok(all) = rt.store.containers().await else { return };
            for c in all.into_iter().filter(|c| matches!(status(c), ContainerStatus::Exited)) {
                let wanted =
                    record::host_config(&c).is_ok_and(|h| h.restart_policy.starts_with_daemon(c.manually_stopped));
                if wanted {
                    tracing::info!(id = %c.id, "starting by restart policy at daemon start");
                    if let Err(e) = rt.start_container(&c.id).await {
                        tracing::warn!(id = %c.id, error = %e, "start at daemon start");
                    }
                }
            }
        });
    }

    /// Marks a container stopped by the user (stop, kill), under its
    /// lifecycle lock, from a fresh record: its restart policy leaves it alone
    /// from now on, and if it is between two runs its loop ends there (it is
    /// `exited`). Returns the record as it is then and whether a loop ended;
    /// what the caller read before may be stale (the loop may have started
    /// the container again meanwhile: it is running, and must be stopped).
    pub(crate) async fn end_restart_loop(&self, c: &pb::Container) -> berth_core::Result<(pb::Container, bool)> {
        let lock = self.host.lock_of(&c.id);
        let _guard = lock.lock().await;
        let c = self.resolve(&c.id).await?;
        self.mark_manually_stopped(&c).await?;
        if status(&c) != ContainerStatus::Restarting {
            return Ok((c, false));
        }
        let mut state = c.state.clone().unwrap_or_default();
        state.status = ContainerStatus::Exited.as_str().into();
        self.store.set_state(&c.id, &state).await?;
        Ok((self.resolve(&c.id).await?, true))
    }

    /// Marks `c` stopped by the user (stop, kill): its policy leaves it stopped.
    pub(crate) async fn mark_manually_stopped(&self, c: &pb::Container) -> berth_core::Result<()> {
        self.host.backoff.forget(&c.id);
        self.store.set_restart(&c.id, c.restart_count, true).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_and_reset_after_a_stable_run() {
        let b = Backoff::default();
        let short = Duration::from_secs(1);
        assert_eq!(b.next("a", short), Duration::from_millis(100));
        assert_eq!(b.next("a", short), Duration::from_millis(200));
        assert_eq!(b.next("a", short), Duration::from_millis(400));
        assert_eq!(b.next("b", short), Duration::from_millis(100), "per container");
        assert_eq!(b.next("a", Duration::from_secs(10)), Duration::from_millis(100), "reset after 10 s up");
        for _ in 0..20 {
            b.next("a", short);
        }
        assert_eq!(b.next("a", short), Duration::from_secs(60), "at most a minute");
        b.forget("a");
        assert_eq!(b.next("a", short), Duration::from_millis(100));
    }
}
