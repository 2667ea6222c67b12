//! Serving the API: bind every configured host first (so a bad address fails
//! before anything is served), then run one accept loop per listener. Each
//! connection is HTTP/1.1 with upgrades enabled, for Docker's hijacked attach and
//! exec streams. On shutdown the loops stop accepting, and open connections get a
//! grace period to finish.
//!
//! TCP is bounded (see `config`): a TLS handshake has `tls-handshake-timeout`
//! to finish, and past `max-tcp-connections` open TCP connections new ones are
//! closed at once. The unix socket is not counted, so however many TCP clients
//! come, the local socket keeps answering.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use berth_core::{Error, Result};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::authz::Identity;
use crate::config::{DaemonConfig, Host};

/// A bound listener.
pub enum Listener {
    /// A unix socket (mode 0660) and its path, removed at shutdown.
    Unix(UnixListener, std::path::PathBuf),
    /// TCP with mutual TLS.
    Tls(TcpListener, TlsAcceptor, TcpLimits),
    /// Plain TCP (loopback with `--insecure-tcp` only).
    Tcp(TcpListener, TcpLimits),
}

/// What bounds the TCP listeners, shared by all of them.
#[derive(Clone)]
pub struct TcpLimits {
    handshake: Duration,
    open: Arc<Semaphore>,
    max: usize,
}

impl TcpLimits {
    fn new(config: &DaemonConfig) -> Self {
        let max = config.max_tcp_connections;
        TcpLimits { handshake: config.tls_handshake_timeout, open: Arc::new(Semaphore::new(max)), max }
    }
}

/// Binds every host of `config`.
pub async fn bind(config: &DaemonConfig) -> Result<Vec<Listener>> {
    let tls = match &config.tls {
        Some(files) => Some(TlsAcceptor::from(crate::tls::server_config(files)?)),
        None => None,
    };
    let limits = TcpLimits::new(config);
    let mut out = Vec::new();
    for host in &config.hosts {
        match host {
            Host::Unix(path) => out.push(Listener::Unix(berth_core::grpc::bind_unix(path, 0o660)?, path.clone())),
            Host::Tcp(addr) => {
                let l = TcpListener::bind(addr).await.map_err(|e| Error::from(e).context(format!("bind {addr}")))?;
                out.push(match &tls {
                    Some(acceptor) => Listener::Tls(l, acceptor.clone(), limits.clone()),
                    None => Listener::Tcp(l, limits.clone()),
                });
            }
        }
        tracing::info!(%host, tls = config.tls.is_some(), "API listening");
    }
    Ok(out)
}

/// Serves one connection until it ends or shutdown fires; then lets the request in
/// flight finish and closes. Every request carries the connection's `identity`
/// (see [`crate::authz`]).
async fn serve_conn<I>(io: I, app: Router, shutdown: CancellationToken, identity: Identity)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let app = tower::ServiceBuilder::new()
        .map_request(move |mut req: axum::http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(identity.clone());
            req
        })
        .service(app);
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

/// Counts the TCP connections refused at the limit and says so in the log at
/// most every ten seconds, however hard a flood goes.
struct Refusals {
    since_warned: u64,
    warned: Option<Instant>,
}

impl Refusals {
    fn refuse(&mut self, peer: std::net::SocketAddr, max: usize) {
        self.since_warned += 1;
        if self.warned.is_none_or(|w| w.elapsed() >= Duration::from_secs(10)) {
            tracing::warn!(%peer, max, refused = self.since_warned, "TCP connection limit reached: connection closed");
            self.warned = Some(Instant::now());
            self.since_warned = 0;
        }
    }
}

/// A permit for one more TCP connection, if the limit allows it.
fn admit(limits: &TcpLimits, peer: std::net::SocketAddr, refusals: &mut Refusals) -> Option<OwnedSemaphorePermit> {
    let permit = limits.open.clone().try_acquire_owned().ok();
    if permit.is_none() {
        refusals.refuse(peer, limits.max);
    }
    permit
}

async fn accept_loop(listener: Listener, app: Router, shutdown: CancellationToken, grace: Duration) {
    let tracker = TaskTracker::new();
    let mut refusals = Refusals { since_warned: 0, warned: None };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = accept(&listener) => match accepted {
                Ok(Accepted::Unix(s)) => {
                    // The peer's credentials, as the kernel gives them (SO_PEERCRED).
                    let identity = match s.peer_cred() {
                        Ok(c) => Identity::unix(c.uid(), c.gid()),
                        Err(_) => Identity::anonymous("unix".into()),
                    };
                    tracker.spawn(serve_conn(s, app.clone(), shutdown.clone(), identity));
                }
                Ok(Accepted::Tcp(s, peer, limits)) => {
                    let Some(permit) = admit(&limits, peer, &mut refusals) else { continue };
                    let (app, shutdown) = (app.clone(), shutdown.clone());
                    tracker.spawn(async move {
                        serve_conn(s, app, shutdown, Identity::anonymous(peer.to_string())).await;
                        drop(permit);
                    });
                }
                Ok(Accepted::Tls(s, peer, acceptor, limits)) => {
                    let Some(permit) = admit(&limits, peer, &mut refusals) else { continue };
                    // The handshake runs in the connection's task so a slow client cannot stall accepting.
                    let (app, shutdown) = (app.clone(), shutdown.clone());
                    tracker.spawn(async move {
                        match tokio::time::timeout(limits.handshake, acceptor.accept(s)).await {
                            Ok(Ok(tls)) => {
                                // The client certificate the handshake verified names the caller.
                                let identity = match tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
                                    Some(cert) => Identity::from_certificate(cert.as_ref(), peer),
                                    None => Identity::anonymous(peer.to_string()),
                                };
                                serve_conn(tls, app, shutdown, identity).await
                            }
                            Ok(Err(e)) => tracing::info!(%peer, error = %e, "tls handshake refused"),
                            Err(_) => tracing::info!(%peer, timeout = ?limits.handshake, "tls handshake timed out"),
                        }
                        drop(permit);
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
    Tcp(tokio::net::TcpStream, std::net::SocketAddr, TcpLimits),
    Tls(tokio::net::TcpStream, std::net::SocketAddr, TlsAcceptor, TcpLimits),
}

async fn accept(l: &Listener) -> std::io::Result<Accepted> {
    match l {
        Listener::Unix(u, _) => u.accept().await.map(|(s, _)| Accepted::Unix(s)),
        Listener::Tcp(t, limits) => t.accept().await.map(|(s, peer)| Accepted::Tcp(s, peer, limits.clone())),
        Listener::Tls(t, a, limits) => {
            t.accept().await.map(|(s, peer)| Accepted::Tls(s, peer, a.clone(), limits.clone()))
        }
    }
}

/// Everything a daemon serving the API does once its state is ready: binds the
/// listeners, serves `/metrics` if asked, tells systemd it is ready, and serves
/// the API until `shutdown` fires (open requests get 10 seconds).
pub async fn run(config: &DaemonConfig, state: crate::AppState, shutdown: CancellationToken) -> Result<()> {
    let listeners = bind(config).await?;
    if let Some(addr) = config.metrics_addr {
        crate::metrics::serve(addr, state.clone(), shutdown.clone()).await?;
    }
    // systemd's Type=notify: the API answers from here on.
    berth_core::service::notify_ready();
    serve(crate::app(state), listeners, shutdown, Duration::from_secs(10)).await;
    Ok(())
}

/// Serves `app` on `listeners` until `shutdown` fires, then drains for up to `grace`.
pub async fn serve(app: Router, listeners: Vec<Listener>, shutdown: CancellationToken, grace: Duration) {
    let mut tasks = tokio::task::JoinSet::new();
    for l in listeners {
        tasks.spawn(accept_loop(l, app.clone(), shutdown.clone(), grace));
    }
    while tasks.join_next().await.is_some() {}
}
