//! `berth-image`: the image service as its own process, serving gRPC.

use std::path::PathBuf;
use std::sync::Arc;

use berth_core::service::ServiceArgs;
use clap::Parser;

/// Berth's image service.
#[derive(Parser, Debug)]
#[command(name = "berth-image", version)]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
    /// A registry reached without TLS verification (CIDR or host[:port], repeatable).
    #[arg(long = "insecure-registry", value_name = "REGISTRY")]
    insecure_registries: Vec<String>,
    /// A mirror of Docker Hub (URL, repeatable).
    #[arg(long = "registry-mirror", value_name = "URL")]
    registry_mirrors: Vec<String>,
    /// Layers downloaded at once per pull.
    #[arg(long, default_value_t = 3)]
    max_concurrent_downloads: usize,
    /// Layers uploaded at once per push.
    #[arg(long, default_value_t = 5)]
    max_concurrent_uploads: usize,
    /// Per-registry CA certificates: DIR/<host:port>/*.crt.
    #[arg(long, env = "BERTH_CERTS_DIR", default_value = "/etc/berth/certs.d")]
    certs_dir: PathBuf,
    /// A registry whose foreign layers may come from their own URLs (CIDR or host[:port], repeatable).
    #[arg(long = "allow-nondistributable-artifacts", value_name = "REGISTRY")]
    allow_nondistributable: Vec<String>,
    /// gRPC address of the runtime service, which runs the builder's steps.
    #[arg(long, env = "BERTH_RUNTIME_ADDR", default_value = "unix:///run/berth/runtime.sock")]
    runtime_addr: berth_core::grpc::Addr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let registry = berth_image::registry::RegistryConfig {
        insecure: args.insecure_registries,
        mirrors: args.registry_mirrors,
        certs_dir: args.certs_dir,
        max_concurrent_downloads: args.max_concurrent_downloads.max(1),
        max_concurrent_uploads: args.max_concurrent_uploads.max(1),
        allow_nondistributable: args.allow_nondistributable,
    };
    // Dialled lazily: the runtime service may start after this one.
    let tls = args.service.client_tls()?;
    let runtime =
        berth_runtime_api::RuntimeGrpcClient::new(berth_core::grpc::channel(&args.runtime_addr, tls.as_ref())?);
    let state = berth_core::db::State::parse(args.service.state_url.as_deref())?;
    berth_core::service::run("image", args.service, |dir| async move {
        let images = berth_image::service::LocalImageService::open_with(&dir, &state, registry).await?;
        images.set_runtime(Arc::new(runtime));
        let events = images.events();
        Ok((berth_image::server::ImageGrpcServer::service(Arc::new(images)), events))
    })
    .await?;
    Ok(())
}
