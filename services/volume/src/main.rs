//! `berth-volume`: the volume service as its own process, serving gRPC.

use std::sync::Arc;

use berth_core::service::ServiceArgs;
use clap::Parser;

/// Berth's volume service.
#[derive(Parser, Debug)]
#[command(name = "berth-volume", version)]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let state = berth_core::db::State::parse(args.service.state_url.as_deref())?;
    berth_core::service::run("volume", args.service, |dir| async move {
        let volumes = berth_volume::LocalVolumes::open(&dir, &state).await?;
        let events = volumes.events();
        Ok((berth_volume::VolumeGrpcServer::service(Arc::new(volumes)), events))
    })
    .await?;
    Ok(())
}
