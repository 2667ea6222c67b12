//! What every service binary (`berth-image`, `berth-runtime`, ...) shares: its
//! flags, start-up order and shutdown. A binary names itself and says how to
//! open its service; everything else is here.

use std::future::Future;
use std::path::{Path, PathBuf};

use crate::Result;
use crate::grpc::Addr;
use crate::telemetry::{self, LogFormat};

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
    /// Serve gRPC on a TCP address that is not loopback, although the
    /// connection is neither encrypted nor authenticated.
    #[arg(long, env = "BERTH_INSECURE_TCP")]
    pub insecure_tcp: bool,
}

/// A service's gRPC has no authentication of its own yet: on TCP it is served
/// on loopback only, unless the operator says `--insecure-tcp` (on a network
/// of its own, say). Unix sockets are 0600.
pub fn check_listen(listen: &Addr, insecure_tcp: bool) -> Result<()> {
    match listen {
        Addr::Tcp(sa) if !sa.ip().is_loopback() && !insecure_tcp => Err(crate::Error::invalid(format!(
            "refusing to serve gRPC on {sa} without authentication: listen on loopback or a unix socket, \
             or pass --insecure-tcp"
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
    telemetry::init(&args.log_level, args.log_format);
    let shutdown = crate::shutdown::on_signals()?;
    raise_open_files_limit();
    let listen = args.listen.unwrap_or_else(|| Addr::Unix(Path::new("/run/berth").join(format!("{name}.sock"))));
    check_listen(&listen, args.insecure_tcp)?;
    crate::perms::ensure_dir(&args.data_root, crate::perms::DATA_ROOT)?;
    let (service, events) = open(args.data_root.join(name)).await?;
    crate::grpc::serve(&listen, service, events, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_over_tcp_is_loopback_only_unless_told() {
        let addr = |s: &str| s.parse::<Addr>().expect("addr");
        assert!(check_listen(&addr("tcp://127.0.0.1:7001"), false).is_ok());
        assert!(check_listen(&addr("tcp://[::1]:7001"), false).is_ok());
        assert!(check_listen(&addr("unix:///run/berth/image.sock"), false).is_ok());
        let err = check_listen(&addr("tcp://0.0.0.0:7001"), false).expect_err("any address");
        assert!(err.message().contains("--insecure-tcp"), "{}", err.message());
        assert!(check_listen(&addr("tcp://0.0.0.0:7001"), true).is_ok());
    }
}
