//! `berth-image`: the image service as its own process, serving gRPC.

use std::sync::Arc;

use berth_core::service::ServiceArgs;
use clap::Parser;

/// Berth's image service.
#[derive(Parser, Debug)]
#[command(name = "berth-image", version)]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    berth_core::service::run("image", args.service, |dir| async move {
        Ok(berth_image::server::ImageGrpcServer::service(Arc::new(
            berth_image::service::LocalImageService::open(&dir).await?,
        )))
    })
    .await?;
    Ok(())
}
