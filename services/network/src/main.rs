//! `berth-network`: the network service as its own process, serving gRPC.

use std::sync::Arc;

use berth_core::service::ServiceArgs;
use clap::Parser;

/// Berth's network service.
#[derive(Parser, Debug)]
#[command(name = "berth-network", version)]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
    /// The default bridge's device.
    #[arg(short = 'b', long, env = "BERTH_BRIDGE", default_value = "berth0")]
    bridge: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = berth_network::NetworkConfig { bridge: args.bridge };
    let state = berth_core::db::State::parse(args.service.state_url.as_deref())?;
    berth_core::service::run("network", args.service, |dir| async move {
        let network = berth_network::LocalNetwork::open(&dir, &state, config).await?;
        let events = network.events();
        Ok((berth_network::NetworkGrpcServer::service(Arc::new(network)), events))
    })
    .await?;
    Ok(())
}
