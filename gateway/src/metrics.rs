//! `/metrics` on `--metrics-addr` (dockerd's flag): the process's Prometheus
//! metrics ([`berth_core::metrics`]) served by [`berth_core::service::serve_metrics`],
//! with the gauges that describe the daemon's state (containers by state, the
//! engine's facts) read at each scrape.

use std::net::SocketAddr;
use std::sync::Arc;

use berth_models::container::ContainerStatus;

use crate::AppState;

/// Sets the scrape-time gauges, under dockerd's names.
async fn refresh(state: &AppState) {
    let m = berth_core::metrics::global();
    if let Ok(containers) = state.runtime.list(true, vec![], 0).await {
        let (mut running, mut paused, mut stopped) = (0, 0, 0);
        for c in &containers {
            let status = c.state.as_ref().map(|s| s.status.as_str()).unwrap_or("created");
            match ContainerStatus::parse(status) {
                ContainerStatus::Running | ContainerStatus::Restarting => running += 1,
                ContainerStatus::Paused => paused += 1,
                _ => stopped += 1,
            }
        }
        let help = "The count of containers in various states";
        for (state, n) in [("running", running), ("paused", paused), ("stopped", stopped)] {
            m.set("engine_daemon_container_states_containers", help, &[("state", state)], f64::from(n));
        }
    }
    let (kernel, arch) = (crate::routes::kernel_version(), berth_models::host_arch().to_string());
    m.set(
        "engine_daemon_engine_info",
        "The information related to the engine and the OS it is running on",
        &[
            ("version", crate::BERTH_VERSION),
            ("kernel", &kernel),
            ("architecture", &arch),
            ("os_type", "linux"),
            ("daemon_id", &state.info.id),
        ],
        1.0,
    );
}

/// Serves `/metrics` on `addr` until `shutdown` fires.
pub async fn serve(
    addr: SocketAddr,
    state: AppState,
    shutdown: tokio_util::sync::CancellationToken,
) -> berth_core::Result<()> {
    let refresh: berth_core::service::MetricsRefresh = Arc::new(move || {
        let state = state.clone();
        Box::pin(async move { refresh(&state).await })
    });
    berth_core::service::serve_metrics(addr, shutdown, Some(refresh)).await
}
