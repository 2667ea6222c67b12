//! `/metrics` on `--metrics-addr` (dockerd's flag): the process's Prometheus
//! metrics ([`berth_core::metrics`]) in the text format, plain HTTP as dockerd
//! serves them. Gauges that describe the daemon's state (containers by state,
//! the engine's facts) are read at each scrape.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use berth_models::container::ContainerStatus;

use crate::AppState;

async fn metrics(State(state): State<AppState>) -> Response {
    let m = berth_core::metrics::global();
    if let Ok(containers) = state.runtime.list(true, vec![], 0).await {
        // dockerd's gauge and its three states.
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
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], m.render()).into_response()
}

/// Serves `/metrics` on `addr` until `shutdown` fires.
pub async fn serve(
    addr: SocketAddr,
    state: AppState,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "metrics are served without authentication beyond loopback");
    }
    tracing::info!(%addr, "metrics listening");
    let app = Router::new().route("/metrics", get(metrics)).with_state(state);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await;
    });
    Ok(())
}
