//! `berth-network`: the network service as its own process, serving gRPC.

use std::path::PathBuf;
use std::sync::Arc;

use berth_core::grpc::Addr;
use berth_core::telemetry::{self, LogFormat};
use clap::Parser;

/// Berth's network service.
#[derive(Parser, Debug)]
#[command(name = "berth-network", version)]
struct Args {
    /// Where to serve gRPC: unix:///path or tcp://IP:PORT.
    #[arg(long, env = "BERTH_NETWORK_ADDR", default_value = "unix:///run/berth/network.sock")]
    listen: Addr,
    /// Root of persistent state; the service keeps its own under <data-root>/network.
    #[arg(long, env = "BERTH_DATA_ROOT", default_value = "/var/lib/berth")]
    data_root: PathBuf,
    /// Log level: trace, debug, info, warn, error.
    #[arg(long, env = "BERTH_LOG_LEVEL", default_value = "info", value_parser = telemetry::parse_level)]
    log_level: String,
    /// Log format.
    #[arg(long, env = "BERTH_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    telemetry::init(&args.log_level, args.log_format);
    let shutdown = berth_core::shutdown::on_signals()?;
    let svc = berth_network::LocalNetwork::open(&args.data_root.join("network")).await?;
    berth_core::grpc::serve(&args.listen, berth_network::NetworkGrpcServer::service(Arc::new(svc)), shutdown).await?;
    Ok(())
}
