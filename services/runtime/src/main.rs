//! `berth-runtime`: the runtime service as its own process, serving gRPC.

use std::sync::Arc;

use berth_core::service::ServiceArgs;
use clap::Parser;

/// Berth's runtime service.
#[derive(Parser, Debug)]
#[command(name = "berth-runtime", version)]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    berth_core::service::run("runtime", args.service, |dir| async move {
        Ok(berth_runtime::RuntimeGrpcServer::service(Arc::new(berth_runtime::LocalRuntime::open(&dir).await?)))
    })
    .await?;
    Ok(())
}
