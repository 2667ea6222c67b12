//! Serving the API: bind every configured host first (so a bad address fails
//! before anything is served), then run one accept loop per listener. Each
//! connection is HTTP/1.1 with upgrades enabled, for Docker's hijacked attach and
//! exec streams. On shutdown the loops stop accepting, and open connections get a
//! grace period to finish.

use std::time::Duration;

use axum::Router;
use berth_core::{Error, Result};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{DaemonConfig, Host};

/// A bound listener.
pub enum Listener {
    /// A unix socket (mode 0660) and its path, removed at shutdown.
    Unix(UnixListener, std::path::PathBuf),
    /// TCP with mutual TLS.
    Tls(TcpListener, TlsAcceptor),
    /// Plain TCP (loopback with `--insecure-tcp` only).
    Tcp(TcpListener),
}

/// Binds every host of `config`.
pub async fn bind(config: &DaemonConfig) -> Result<Vec<Listener>> {
    let tls = match &config.tls {
        Some(files) => Some(TlsAcceptor::from(crate::tls::server_config(files)?)),
        None => None,
    };
    let mut out = Vec::new();
    for host in &config.hosts {
        match host {
            Host::Unix(path) => out.push(Listener::Unix(berth_core::grpc::bind_unix(path, 0o660)?, path.clone())),
            Host::Tcp(addr) => {
                let l = TcpListener::bind(addr).await.map_err(|e| Error::from(e).context(format!("bind {addr}")))?;
                out.push(match &tls {
                    Some(acceptor) => Listener::Tls(l, acceptor.clone()),
                    None => Listener::Tcp(l),
                });
            }
        }
        tracing::info!(%host, tls = config.tls.is_some(), "API listening");
    }
    Ok(out)
}

/// Serves one connection until it ends or shutdown fires; then lets the request in
/// flight finish and closes.
async fn serve_conn<I>(io: I, app: Router, shutdown: CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = TowerToHyperService::new(app);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(60))
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

async fn accept_loop(listener: Listener, app: Router, shutdown: CancellationToken, grace: Duration) {
    let tracker = TaskTracker::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = accept(&listener) => match accepted {
                Ok(Accepted::Unix(s)) => { tracker.spawn(serve_conn(s, app.clone(), shutdown.clone())); }
                Ok(Accepted::Tcp(s)) => { tracker.spawn(serve_conn(s, app.clone(), shutdown.clone())); }
                Ok(Accepted::Tls(s, acceptor)) => {
                    // The handshake runs in the connection's task so a slow client cannot stall accepting.
                    let (app, shutdown) = (app.clone(), shutdown.clone());
                    tracker.spawn(async move {
                        match acceptor.accept(s).await {
                            Ok(tls) => serve_conn(tls, app, shutdown).await,
                            Err(e) => tracing::info!(error = %e, "tls handshake refused"),
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    if let Listener::Unix(_, path) = &listener {
        let _ = std::fs::remove_file(path);
    }
    drop(listener);
    tracker.close();
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!("connections still open after the grace period; closing them");
    }
}

enum Accepted {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
    Tls(tokio::net::TcpStream, TlsAcceptor),
}

async fn accept(l: &Listener) -> std::io::Result<Accepted> {
    match l {
        Listener::Unix(u, _) => u.accept().await.map(|(s, _)| Accepted::Unix(s)),
        Listener::Tcp(t) => t.accept().await.map(|(s, _)| Accepted::Tcp(s)),
        Listener::Tls(t, a) => t.accept().await.map(|(s, _)| Accepted::Tls(s, a.clone())),
    }
}

/// Serves `app` on `listeners` until `shutdown` fires, then drains for up to `grace`.
pub async fn serve(app: Router, listeners: Vec<Listener>, shutdown: CancellationToken, grace: Duration) {
    let mut tasks = tokio::task::JoinSet::new();
    for l in listeners {
        tasks.spawn(accept_loop(l, app.clone(), shutdown.clone(), grace));
    }
    while tasks.join_next().await.is_some() {}
}
