//! `berthd`: every Berth service and the gateway in one process, linked through
//! the same traits the split binaries reach over gRPC, with SQLite under one data
//! root. `berthd certs` makes test certificates for `--tlsverify`.

#![forbid(unsafe_code)]

mod certs;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use berth_gateway::config::{DaemonConfig, DaemonFlags, ProcessEnv};
use berth_gateway::{AppState, DaemonInfo};
use clap::{Parser, Subcommand};

/// Berth: a Docker-compatible container engine.
#[derive(Parser, Debug)]
#[command(name = "berthd", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    daemon: DaemonFlags,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write a CA, a server certificate and a client certificate for --tlsverify.
    Certs {
        /// Directory to write ca.pem, server-cert.pem, server-key.pem, cert.pem, key.pem into.
        #[arg(long)]
        out: PathBuf,
        /// Names and IP addresses the server certificate is valid for.
        #[arg(long = "host", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()])]
        hosts: Vec<String>,
        /// Common name of the client certificate.
        #[arg(long, default_value = "client")]
        client_cn: String,
    },
    /// The audit log (`--audit-log`).
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// Checks the log's hash chain: exits 0 when intact, else names the first bad line.
    Verify {
        /// The log file.
        file: PathBuf,
    },
}

/// Takes the pid file, refusing when another live berthd holds it.
fn take_pidfile(path: &Path) -> anyhow::Result<()> {
    if let Ok(old) = std::fs::read_to_string(path)
        && let Ok(pid) = old.trim().parse::<i32>()
        && pid != std::process::id() as i32
        && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
    {
        anyhow::bail!("pid file {} names running process {pid}: is berthd already running?", path.display());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, format!("{}\n", std::process::id())).with_context(|| format!("write {}", path.display()))
}

/// A daemon ID that stays the same across restarts.
fn daemon_id(data_root: &Path) -> anyhow::Result<String> {
    let path = data_root.join("engine-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_string()),
        _ => {
            let id = berth_core::id::random_id();
            std::fs::write(&path, &id).with_context(|| format!("write {}", path.display()))?;
            Ok(id)
        }
    }
}

async fn run(config: DaemonConfig) -> anyhow::Result<()> {
    let shutdown = berth_core::shutdown::on_signals()?;
    berth_core::service::raise_open_files_limit();
    // The data root as dockerd keeps /var/lib/docker (see berth_core::perms); the
    // exec root can be passed through (to reach the API socket) but not listed.
    berth_core::perms::ensure_dir(&config.data_root, berth_core::perms::DATA_ROOT)?;
    berth_core::perms::ensure_dir(&config.exec_root, 0o711)?;
    take_pidfile(&config.pidfile)?;
    let root = &config.data_root;
    // One bus for every service: `docker events` in the order things happened.
    let events = Arc::new(berth_core::events::EventBus::new());
    let state = berth_core::db::State::parse(config.state_url.as_deref())?;
    tracing::info!(state = %state.describe(), "opening the services' state");
    let images =
        berth_image::service::LocalImageService::open_with(&root.join("image"), &state, config.registry.clone())
            .await?;
    let images = Arc::new(images.with_events(events.clone()));
    let network_config = berth_network::NetworkConfig { bridge: config.bridge.clone() };
    let networks = berth_network::LocalNetwork::open(&root.join("network"), &state, network_config).await?;
    let networks = Arc::new(networks.with_events(events.clone()));
    let runtime_config = berth_runtime::RuntimeConfig {
        log_opts: config.log_opts.clone(),
        no_new_privileges: config.no_new_privileges,
        events: events.clone(),
        runtimes: berth_runtime::runtimes::Runtimes::discover(),
        userns: config.userns_remap.as_deref().map(berth_runtime::userns::Remap::resolve).transpose()?,
    };
    let volumes = berth_volume::LocalVolumes::open(&root.join("volume"), &state).await?;
    let volumes = Arc::new(volumes.with_events(events.clone()));
    let runtime = berth_runtime::LocalRuntime::open(
        &root.join("runtime"),
        &state,
        images.clone(),
        networks.clone(),
        volumes.clone(),
        runtime_config,
    )
    .await?;
    let runtime = Arc::new(runtime);
    // The builder runs its steps' containers through the runtime service.
    images.set_runtime(runtime.clone());
    let authz = berth_gateway::authz::Authz::from_config(&config).await?;
    let mut sources: Vec<Arc<dyn berth_core::events::EventSource>> = vec![events];
    if let Some(a) = &authz {
        sources.push(a.events.clone());
    }
    let state = AppState {
        images,
        runtime,
        networks,
        volumes,
        events: sources,
        info: Arc::new(DaemonInfo {
            data_root: config.data_root.clone(),
            exec_root: config.exec_root.clone(),
            id: daemon_id(root)?,
            debug: config.log_level == "debug" || config.log_level == "trace",
        }),
        shutdown: shutdown.clone(),
        authz,
    };
    tracing::info!(version = berth_gateway::BERTH_VERSION, data_root = %root.display(), "berthd starts serving");
    berth_gateway::server::run(&config, state, shutdown).await?;
    let _ = std::fs::remove_file(&config.pidfile);
    tracing::info!("berthd stopped");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Certs { out, hosts, client_cn }) => {
            certs::generate(&out, &hosts, &client_cn)?;
            println!("wrote ca.pem, server-cert.pem, server-key.pem, cert.pem, key.pem to {}", out.display());
            return Ok(());
        }
        Some(Command::Audit { command: AuditCommand::Verify { file } }) => {
            match berth_gateway::authz::verify(&file) {
                Ok(n) => println!("{}: {n} records, chain intact", file.display()),
                Err((line, why)) => {
                    eprintln!("{}: line {line}: {why}", file.display());
                    std::process::exit(1);
                }
            }
            return Ok(());
        }
        None => {}
    }
    let config = match DaemonConfig::load(&cli.daemon, &ProcessEnv) {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors {
                eprintln!("berthd: invalid configuration: {e}");
            }
            std::process::exit(1);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // Inside the runtime: the trace exporter's connection lives on it.
    let telemetry = {
        let _runtime = rt.enter();
        berth_core::telemetry::init(&config.log_level, config.log_format, config.otlp.as_ref())?
    };
    let served = rt.block_on(async {
        let served = run(config).await;
        telemetry.shutdown().await;
        served
    });
    if let Err(e) = served {
        tracing::error!(error = %e, "berthd failed");
        eprintln!("berthd: {e:#}");
        std::process::exit(1);
    }
    Ok(())
}
