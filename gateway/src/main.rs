//! `berth-gateway`: the Docker API as its own process, reaching the services over gRPC.

use std::sync::Arc;

use berth_core::grpc::{Addr, channel};
use berth_gateway::config::{DaemonConfig, DaemonFlags, ProcessEnv};
use berth_gateway::{AppState, DaemonInfo};
use clap::Parser;

/// Berth's gateway: serves the Docker Engine API and forwards to the services.
#[derive(Parser, Debug)]
#[command(name = "berth-gateway", version)]
struct Args {
    #[command(flatten)]
    daemon: DaemonFlags,
    /// gRPC address of the image service.
    #[arg(long, env = "BERTH_IMAGE_ADDR", default_value = "unix:///run/berth/image.sock")]
    image_addr: Addr,
    /// gRPC address of the runtime service.
    #[arg(long, env = "BERTH_RUNTIME_ADDR", default_value = "unix:///run/berth/runtime.sock")]
    runtime_addr: Addr,
    /// gRPC address of the network service.
    #[arg(long, env = "BERTH_NETWORK_ADDR", default_value = "unix:///run/berth/network.sock")]
    network_addr: Addr,
    /// gRPC address of the volume service.
    #[arg(long, env = "BERTH_VOLUME_ADDR", default_value = "unix:///run/berth/volume.sock")]
    volume_addr: Addr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = match DaemonConfig::load(&args.daemon, &ProcessEnv) {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors {
                eprintln!("berth-gateway: {e}");
            }
            std::process::exit(1);
        }
    };
    let mut otlp = config.otlp.clone();
    if let Some(o) = otlp.as_mut().filter(|_| std::env::var_os("OTEL_SERVICE_NAME").is_none()) {
        o.service_name = "berth-gateway".into();
    }
    let telemetry = berth_core::telemetry::init(&config.log_level, config.log_format, otlp.as_ref())?;
    let shutdown = berth_core::shutdown::on_signals()?;
    berth_core::service::raise_open_files_limit();
    // Services on TCP are dialled with mutual TLS when the gateway has
    // `--tlsverify` files (its certificate is its client identity).
    let tls = config.tls.as_ref().map(berth_core::grpc::client_tls).transpose()?;
    let tls = tls.as_ref();
    let authz = berth_gateway::authz::Authz::from_config(&config).await?;
    let state = AppState {
        images: Arc::new(berth_image_api::ImageGrpcClient::new(channel(&args.image_addr, tls)?)),
        runtime: Arc::new(berth_runtime_api::RuntimeGrpcClient::new(channel(&args.runtime_addr, tls)?)),
        networks: Arc::new(berth_network_api::NetworkGrpcClient::new(channel(&args.network_addr, tls)?)),
        volumes: Arc::new(berth_volume_api::VolumeGrpcClient::new(channel(&args.volume_addr, tls)?)),
        events: [&args.image_addr, &args.runtime_addr, &args.network_addr, &args.volume_addr]
            .into_iter()
            .map(|a| {
                Ok(Arc::new(berth_core::events::EventsGrpcClient::new(channel(a, tls)?))
                    as Arc<dyn berth_core::events::EventSource>)
            })
            .chain(authz.iter().map(|a| Ok(a.events.clone() as Arc<dyn berth_core::events::EventSource>)))
            .collect::<berth_core::Result<_>>()?,
        info: Arc::new(DaemonInfo {
            data_root: config.data_root.clone(),
            exec_root: config.exec_root.clone(),
            id: berth_core::id::random_id(),
            debug: config.log_level == "debug" || config.log_level == "trace",
        }),
        shutdown: shutdown.clone(),
        authz,
    };
    let served = berth_gateway::server::run(&config, state, shutdown).await;
    telemetry.shutdown().await;
    served?;
    Ok(())
}
