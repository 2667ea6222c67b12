//! `berth-runtime`: the runtime service as its own process, serving gRPC. It
//! reaches the image, network and volume services over gRPC too.

use std::sync::Arc;

use berth_core::grpc::{Addr, channel};
use berth_core::service::ServiceArgs;
use clap::Parser;

/// Berth's runtime service.
#[derive(Parser, Debug)]
#[command(name = "berth-runtime", version)]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
    /// gRPC address of the image service.
    #[arg(long, env = "BERTH_IMAGE_ADDR", default_value = "unix:///run/berth/image.sock")]
    image_addr: Addr,
    /// gRPC address of the network service.
    #[arg(long, env = "BERTH_NETWORK_ADDR", default_value = "unix:///run/berth/network.sock")]
    network_addr: Addr,
    /// gRPC address of the volume service.
    #[arg(long, env = "BERTH_VOLUME_ADDR", default_value = "unix:///run/berth/volume.sock")]
    volume_addr: Addr,
    /// Default log option for containers (`max-size=10m`, `max-file=3`), repeatable.
    #[arg(long = "log-opt", value_name = "KEY=VALUE")]
    log_opts: Vec<String>,
    /// Containers run with no_new_privs unless their --security-opt says otherwise.
    #[arg(long)]
    no_new_privileges: bool,
    /// Run containers in user namespaces, as this user's subordinate IDs
    /// (`default`: the `dockremap` user, made when missing).
    #[arg(long, value_name = "default|USER[:GROUP]")]
    userns_remap: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut config = berth_runtime::RuntimeConfig {
        no_new_privileges: args.no_new_privileges,
        runtimes: berth_runtime::runtimes::Runtimes::discover(),
        userns: args.userns_remap.as_deref().map(berth_runtime::userns::Remap::resolve).transpose()?,
        ..Default::default()
    };
    for opt in &args.log_opts {
        let Some((k, v)) = opt.split_once('=') else {
            anyhow::bail!("invalid --log-opt {opt:?}: want KEY=VALUE");
        };
        config.log_opts.insert(k.to_string(), v.to_string());
    }
    // The other services are dialled with this one's own certificate.
    let tls = args.service.client_tls()?;
    let images = Arc::new(berth_image_api::client::ImageGrpcClient::new(channel(&args.image_addr, tls.as_ref())?));
    let networks = Arc::new(berth_network_api::NetworkGrpcClient::new(channel(&args.network_addr, tls.as_ref())?));
    let volumes = Arc::new(berth_volume_api::VolumeGrpcClient::new(channel(&args.volume_addr, tls.as_ref())?));
    let state = berth_core::db::State::parse(args.service.state_url.as_deref())?;
    berth_core::service::run("runtime", args.service, |dir| async move {
        let runtime = berth_runtime::LocalRuntime::open(&dir, &state, images, networks, volumes, config).await?;
        let events = runtime.events();
        Ok((berth_runtime::RuntimeGrpcServer::service(Arc::new(runtime)), events))
    })
    .await?;
    Ok(())
}
