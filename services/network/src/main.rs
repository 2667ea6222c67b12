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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    berth_core::service::run("network", args.service, |dir| async move {
        Ok(berth_network::NetworkGrpcServer::service(Arc::new(berth_network::LocalNetwork::open(&dir).await?)))
    })
    .await?;
    Ok(())
}
