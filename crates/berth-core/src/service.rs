//! What every service binary (`berth-image`, `berth-runtime`, ...) shares: its
//! flags, start-up order and shutdown. A binary names itself and says how to
//! open its service; everything else is here.

use std::future::Future;
use std::path::{Path, PathBuf};

use crate::Result;
use crate::grpc::Addr;
use crate::telemetry::{self, LogFormat};
use crate::tls::TlsFiles;

/// Flags of a service binary.
#[derive(clap::Args, Debug, Clone)]
pub struct ServiceArgs {
    /// Where to serve gRPC: unix:///path or tcp://IP:PORT [default: unix:///run/berth/<service>.sock].
    #[arg(long, env = "BERTH_LISTEN")]
    pub listen: Option<Addr>,
    /// Root of persistent state; the service keeps its own under <data-root>/<service>.
    #[arg(long, env = "BERTH_DATA_ROOT", default_value = "/var/lib/berth")]
    pub data_root: PathBuf,
    /// Log level: trace, debug, info, warn, error.
    #[arg(long, env = "BERTH_LOG_LEVEL", default_value = "info", value_parser = telemetry::parse_level)]
    pub log_level: String,
    /// Log format.
    #[arg(long, env = "BERTH_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Serve gRPC on a TCP address that is not loopback without TLS, although
    /// the connection is then neither encrypted nor authenticated.
    #[arg(long, env = "BERTH_INSECURE_TCP")]
    pub insecure_tcp: bool,
    /// Mutual TLS on TCP, as dockerd's `--tlsverify`: serve only clients with a
    /// certificate from --tlscacert, and dial other services with --tlscert.
    #[arg(long, env = "BERTH_TLSVERIFY")]
    pub tlsverify: bool,
    /// The CA that peers' certificates must chain to.
    #[arg(long, env = "BERTH_TLSCACERT")]
    pub tlscacert: Option<PathBuf>,
    /// This service's certificate (served, and shown when it dials; `berthd
    /// certs` writes one valid for both).
    #[arg(long, env = "BERTH_TLSCERT")]
    pub tlscert: Option<PathBuf>,
    /// This service's key.
    #[arg(long, env = "BERTH_TLSKEY")]
    pub tlskey: Option<PathBuf>,
    /// Serve this process's Prometheus metrics on `http://ADDR/metrics`.
    #[arg(long, env = "BERTH_METRICS_ADDR", value_name = "IP:PORT")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Keep the service's records in this Postgres database (a schema of its
    /// own), instead of an SQLite file under <data-root>/<service>.
    #[arg(long, env = "BERTH_STATE_URL", value_name = "postgres://...")]
    pub state_url: Option<String>,
    /// Send OpenTelemetry traces to this OTLP collector (http://HOST:PORT;
    /// also `OTEL_EXPORTER_OTLP_ENDPOINT`, with `OTEL_EXPORTER_OTLP_PROTOCOL`).
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
}

impl ServiceArgs {
    /// The `--tlsverify` files, when asked for; all three are then required,
    /// and none is taken without `--tlsverify`.
    pub fn tls_files(&self) -> Result<Option<TlsFiles>> {
        let given = [("--tlscacert", &self.tlscacert), ("--tlscert", &self.tlscert), ("--tlskey", &self.tlskey)];
        if !self.tlsverify {
            return match given.iter().any(|(_, f)| f.is_some()) {
                true => Err(crate::Error::invalid(
                    "--tlscacert/--tlscert/--tlskey are set but --tlsverify is not: Berth speaks TCP only with mutual TLS",
                )),
                false => Ok(None),
            };
        }
        let missing: Vec<&str> = given.iter().filter(|(_, f)| f.is_none()).map(|(flag, _)| *flag).collect();
        match (&self.tlscacert, &self.tlscert, &self.tlskey) {
            (Some(ca), Some(cert), Some(key)) => {
                Ok(Some(TlsFiles { ca: ca.clone(), cert: cert.clone(), key: key.clone() }))
            }
            _ => Err(crate::Error::invalid(format!("--tlsverify needs {}", missing.join(", ")))),
        }
    }

    /// The client side of `--tlsverify`, for dialling other services.
    pub fn client_tls(&self) -> Result<Option<std::sync::Arc<rustls::ClientConfig>>> {
        self.tls_files()?.as_ref().map(crate::grpc::client_tls).transpose()
    }
}

/// A service's gRPC on TCP is served with mutual TLS (`--tlsverify`), or on
/// loopback only, unless the operator says `--insecure-tcp` (on a network of
/// its own, say). Unix sockets are 0600.
pub fn check_listen(listen: &Addr, tls: bool, insecure_tcp: bool) -> Result<()> {
    match listen {
        Addr::Tcp(sa) if !sa.ip().is_loopback() && !tls && !insecure_tcp => Err(crate::Error::invalid(format!(
            "refusing to serve gRPC on {sa} without authentication: use --tlsverify with certificates \
             (see `berthd certs`), listen on loopback or a unix socket, or pass --insecure-tcp"
        ))),
        _ => Ok(()),
    }
}

/// Raises this process's soft limit on open files to its hard limit, as
/// dockerd does: clients, shims' sockets and logs all cost descriptors, and the
/// API's own bounds (`max-tcp-connections`) are meant to be reached first.
pub fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
        && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        tracing::warn!(soft, hard, error = %e, "could not raise the open files limit");
    }
}

/// Runs service `name`: sets up logging and signals, opens the service's state
/// under `<data-root>/<name>` with `open` (which answers the service and the
/// bus it publishes events on), and serves both until SIGTERM or SIGINT.
pub async fn run<S, F, Fut>(name: &str, args: ServiceArgs, open: F) -> Result<()>
where
    F: FnOnce(PathBuf) -> Fut,
    Fut: Future<Output = Result<(S, std::sync::Arc<crate::events::EventBus>)>>,
    S: crate::grpc::GrpcService,
{
    let otlp =
        telemetry::Otlp::from_env(args.otlp_endpoint.as_deref(), &format!("berth-{name}"), |k| std::env::var(k).ok())?;
    let telemetry = telemetry::init(&args.log_level, args.log_format, otlp.as_ref())?;
    let shutdown = crate::shutdown::on_signals()?;
    raise_open_files_limit();
    let tls = args.tls_files()?.as_ref().map(crate::grpc::server_tls).transpose()?;
    let listen = args.listen.unwrap_or_else(|| Addr::Unix(Path::new("/run/berth").join(format!("{name}.sock"))));
    check_listen(&listen, tls.is_some(), args.insecure_tcp)?;
    crate::perms::ensure_dir(&args.data_root, crate::perms::DATA_ROOT)?;
    let (service, events) = open(args.data_root.join(name)).await?;
    if let Some(addr) = args.metrics_addr {
        serve_metrics(addr, shutdown.clone(), None).await?;
    }
    let served =
        crate::grpc::serve(&listen, tls.filter(|_| matches!(listen, Addr::Tcp(_))), service, events, shutdown).await;
    telemetry.shutdown().await;
    served
}

/// What brings gauges up to date before a scrape (the gateway reads container
/// states then).
pub type MetricsRefresh = std::sync::Arc<dyn Fn() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Serves `GET /metrics` (the process's [`crate::metrics`], after `refresh`)
/// on `addr`, plain HTTP/1.0 as dockerd serves them, one answer per connection.
pub async fn serve_metrics(
    addr: std::net::SocketAddr,
    shutdown: tokio_util::sync::CancellationToken,
    refresh: Option<MetricsRefresh>,
) -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| crate::Error::from(e).context(format!("bind the metrics address {addr}")))?;
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "metrics are served without authentication beyond loopback");
    }
    tracing::info!(%addr, "metrics listening");
    tokio::spawn(async move {
        loop {
            let (mut conn, _) = tokio::select! {
                _ = shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(_) => continue,
                },
            };
            let refresh = refresh.clone();
            tokio::spawn(async move {
                // The request line is all that counts; at most 8 KiB of headers are read.
                let mut buf = vec![0u8; 8192];
                let mut n = 0;
                while n < buf.len() && !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    match tokio::time::timeout(std::time::Duration::from_secs(10), conn.read(&mut buf[n..])).await {
                        Ok(Ok(0)) | Err(_) | Ok(Err(_)) => return,
                        Ok(Ok(k)) => n += k,
                    }
                }
                let wanted = buf[..n].starts_with(b"GET /metrics ") || buf[..n].starts_with(b"GET /metrics?");
                let (status, body) = if wanted {
                    if let Some(refresh) = &refresh {
                        refresh().await;
                    }
                    ("200 OK", crate::metrics::global().render())
                } else {
                    ("404 Not Found", "not found\n".to_string())
                };
                let head = format!(
                    "HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes()).await;
                let _ = conn.write_all(body.as_bytes()).await;
            });
        }
    });
    Ok(())
}

/// Tells systemd the service is ready (`READY=1` on `$NOTIFY_SOCKET`, for
/// `Type=notify` units) once it answers; nothing without the variable. The
/// socket may be abstract (`@name`).
pub fn notify_ready() {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let sent = (|| -> std::io::Result<()> {
        use std::os::unix::net::UnixDatagram;
        let socket = UnixDatagram::unbound()?;
        let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
        match bytes.strip_prefix(b"@") {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                socket.send_to_addr(b"READY=1\n", &addr)?;
            }
            None => {
                socket.send_to(b"READY=1\n", std::path::Path::new(&path))?;
            }
        }
        Ok(())
    })();
    if let Err(e) = sent {
        tracing::warn!(error = %e, "could not tell systemd the service is ready");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_over_tcp_is_loopback_only_unless_told() {
        let addr = |s: &str| s.parse::<Addr>().expect("addr");
        assert!(check_listen(&addr("tcp://127.0.0.1:7001"), false, false).is_ok());
        assert!(check_listen(&addr("tcp://[::1]:7001"), false, false).is_ok());
        assert!(check_listen(&addr("unix:///run/berth/image.sock"), false, false).is_ok());
        let err = check_listen(&addr("tcp://0.0.0.0:7001"), false, false).expect_err("any address");
        assert!(err.message().contains("--tlsverify"), "{}", err.message());
        assert!(check_listen(&addr("tcp://0.0.0.0:7001"), true, false).is_ok(), "mutual TLS");
        assert!(check_listen(&addr("tcp://0.0.0.0:7001"), false, true).is_ok(), "told to");
    }

    #[test]
    fn tls_flags_come_all_together_or_not_at_all() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            service: ServiceArgs,
        }
        let parse = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("svc").chain(args.iter().copied())).expect("flags").service.tls_files()
        };
        assert_eq!(parse(&[]).ok(), Some(None));
        let err = parse(&["--tlsverify", "--tlscacert", "/ca.pem"]).expect_err("incomplete");
        assert_eq!(err.message(), "--tlsverify needs --tlscert, --tlskey");
        assert!(parse(&["--tlscert", "/c.pem"]).is_err(), "files without --tlsverify");
        let full = parse(&["--tlsverify", "--tlscacert", "/ca", "--tlscert", "/c", "--tlskey", "/k"]).expect("full");
        assert_eq!(full.map(|f| f.key), Some(PathBuf::from("/k")));
    }
}
