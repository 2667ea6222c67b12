//! The daemon configuration, shared by `berthd` and `berth-gateway`.
//!
//! Three layers, each overriding the one before: a TOML file (`--config-file`,
//! keys named as in dockerd's daemon.json where they mean the same), environment
//! variables (`BERTH_*`), then flags. Everything is validated in one pass and
//! every problem is reported together, before anything binds.
//!
//! | file key       | environment          | flag                 | default                          |
//! |----------------|----------------------|----------------------|----------------------------------|
//! | `hosts`        | `BERTH_HOSTS` (a,b)  | `-H`, `--host`       | `unix://<exec-root>/berth.sock`  |
//! | `data-root`    | `BERTH_DATA_ROOT`    | `--data-root`        | `/var/lib/berth`                 |
//! | `exec-root`    | `BERTH_EXEC_ROOT`    | `--exec-root`        | `/run/berth`                     |
//! | `pidfile`      | `BERTH_PIDFILE`      | `-p`, `--pidfile`    | `<exec-root>/berthd.pid`         |
//! | `tlsverify`    | `BERTH_TLSVERIFY`    | `--tlsverify`        | false                            |
//! | `tlscacert`    | `BERTH_TLSCACERT`    | `--tlscacert`        |                                  |
//! | `tlscert`      | `BERTH_TLSCERT`      | `--tlscert`          |                                  |
//! | `tlskey`       | `BERTH_TLSKEY`       | `--tlskey`           |                                  |
//! | `insecure-tcp` | `BERTH_INSECURE_TCP` | `--insecure-tcp`     | false                            |
//! | `log-level`    | `BERTH_LOG_LEVEL`    | `-l`, `--log-level`  | `info`                           |
//! | `log-format`   | `BERTH_LOG_FORMAT`   | `--log-format`       | `text`                           |
//! | `log-opts`     |                      | `--log-opt K=V`      | `max-size=10m`, `max-file=3`     |
//! | `bridge`       | `BERTH_BRIDGE`       | `-b`, `--bridge`     | `berth0`                         |
//! | `insecure-registries` |               | `--insecure-registry`| 127.0.0.0/8 (always)             |
//! | `registry-mirrors` |                  | `--registry-mirror`  |                                  |
//! | `allow-nondistributable-artifacts` |  | `--allow-nondistributable-artifacts` | none             |
//! | `max-concurrent-downloads` |          | `--max-concurrent-downloads` | 3                        |
//! | `max-concurrent-uploads` |            | `--max-concurrent-uploads` | 5                          |
//! | `certs-dir`    | `BERTH_CERTS_DIR`    | `--certs-dir`        | `/etc/berth/certs.d`             |
//! | `tls-handshake-timeout` |             | `--tls-handshake-timeout` | 10 (seconds)                |
//! | `max-tcp-connections` |               | `--max-tcp-connections` | 1024                          |
//! | `no-new-privileges` |                 | `--no-new-privileges` | false                           |
//! | `userns-remap` |                      | `--userns-remap`     | none (`default`, `USER[:GROUP]`) |
//! | `authorization-config` |              | `--authorization-config` | none (every caller is admin) |
//! | `audit-log`    |                      | `--audit-log`        | none                             |
//! | `authorization-plugins` |             | `--authorization-plugin` | none (repeatable)            |
//! | `metrics-addr` |                      | `--metrics-addr`     | none (e.g. `127.0.0.1:9323`)     |
//! | `state-url`    | `BERTH_STATE_URL`    | `--state-url`        | none: SQLite files in data-root  |
//! | `otlp-endpoint` | `OTEL_EXPORTER_OTLP_ENDPOINT` | `--otlp-endpoint` | none: no traces              |
//!
//! TCP listeners are bounded so that idle or slow clients cannot take every
//! file descriptor (and with them the unix socket): a TLS handshake must end
//! within `tls-handshake-timeout`, and past `max-tcp-connections` open TCP
//! connections a new one is closed at once, with a warning in the log.
//!
//! Registries: `insecure-registries` are CIDRs or `host[:port]` (tried over
//! HTTPS without verification, then HTTP); `certs-dir/<host:port>/*.crt` add
//! trusted roots per registry, as dockerd's `/etc/docker/certs.d`;
//! `registry-mirrors` are tried first for Docker Hub images.
//!
//! `log-opts` (a TOML table, like daemon.json's object) are the json-file options
//! given to containers that set none of their own; flags override file keys.
//!
//! The file itself is named by `--config-file` or `BERTH_CONFIG_FILE`; without
//! either, `/etc/berth/berth.toml` is read when it exists.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use berth_core::telemetry::{self, LogFormat};
use serde::Deserialize;

/// The default configuration file, read when present.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/berth/berth.toml";

/// Flags shared by the daemon binaries. All optional, so that layers can merge.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct DaemonFlags {
    /// Address to serve the Docker API on: unix:///path or tcp://IP:PORT (repeatable).
    #[arg(short = 'H', long = "host", value_name = "ADDR")]
    pub hosts: Vec<String>,
    /// Root of persistent state.
    #[arg(long, value_name = "DIR")]
    pub data_root: Option<PathBuf>,
    /// Root of runtime state (sockets, pid file).
    #[arg(long, value_name = "DIR")]
    pub exec_root: Option<PathBuf>,
    /// Path of the pid file.
    #[arg(short = 'p', long, value_name = "FILE")]
    pub pidfile: Option<PathBuf>,
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// Require TLS client certificates signed by --tlscacert on TCP.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub tlsverify: Option<bool>,
    /// CA certificate (PEM) that client certificates must chain to.
    #[arg(long, value_name = "FILE")]
    pub tlscacert: Option<PathBuf>,
    /// Server certificate (PEM).
    #[arg(long, value_name = "FILE")]
    pub tlscert: Option<PathBuf>,
    /// Server private key (PEM).
    #[arg(long, value_name = "FILE")]
    pub tlskey: Option<PathBuf>,
    /// Allow plain TCP without TLS, on loopback addresses only.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub insecure_tcp: Option<bool>,
    /// Log level: trace, debug, info, warn, error, fatal.
    #[arg(short = 'l', long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Log format: text or json.
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Default container log option, e.g. max-size=10m (repeatable).
    #[arg(long = "log-opt", value_name = "KEY=VALUE")]
    pub log_opts: Vec<String>,
    /// The default bridge network's device.
    #[arg(short = 'b', long, value_name = "NAME")]
    pub bridge: Option<String>,
    /// A registry reached without TLS verification (CIDR or host[:port], repeatable).
    #[arg(long = "insecure-registry", value_name = "REGISTRY")]
    pub insecure_registries: Vec<String>,
    /// A registry whose foreign layers may come from their own URLs (CIDR or host[:port], repeatable).
    #[arg(long = "allow-nondistributable-artifacts", value_name = "REGISTRY")]
    pub allow_nondistributable: Vec<String>,
    /// A mirror of Docker Hub (URL, repeatable).
    #[arg(long = "registry-mirror", value_name = "URL")]
    pub registry_mirrors: Vec<String>,
    /// Layers downloaded at once per pull.
    #[arg(long, value_name = "N")]
    pub max_concurrent_downloads: Option<usize>,
    /// Layers uploaded at once per push.
    #[arg(long, value_name = "N")]
    pub max_concurrent_uploads: Option<usize>,
    /// Per-registry CA certificates: DIR/<host:port>/*.crt.
    #[arg(long, value_name = "DIR")]
    pub certs_dir: Option<PathBuf>,
    /// Seconds a TLS client has to finish its handshake.
    #[arg(long, value_name = "SECONDS")]
    pub tls_handshake_timeout: Option<u64>,
    /// Open TCP connections (all TCP listeners together) before new ones are refused.
    #[arg(long, value_name = "N")]
    pub max_tcp_connections: Option<usize>,
    /// Containers run with no_new_privs unless their --security-opt says otherwise.
    #[arg(long)]
    pub no_new_privileges: bool,
    /// Run containers in user namespaces, as this user's subordinate IDs
    /// (`default`: the `dockremap` user, made when missing).
    #[arg(long, value_name = "default|USER[:GROUP]")]
    pub userns_remap: Option<String>,
    /// Authorization policy (TOML: grants of roles to identities), reloaded on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub authorization_config: Option<PathBuf>,
    /// Append-only, hash-chained log of state-changing and denied requests.
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
    /// A Docker AuthZ plugin to ask about every request (repeatable).
    #[arg(long = "authorization-plugin", value_name = "NAME")]
    pub authorization_plugins: Vec<String>,
    /// Serve Prometheus metrics on this address (`/metrics`, plain HTTP).
    #[arg(long, value_name = "IP:PORT")]
    pub metrics_addr: Option<SocketAddr>,
    /// Keep the services' records in this Postgres database, a schema per
    /// service (default: an SQLite file per service under the data root).
    #[arg(long, value_name = "postgres://...")]
    pub state_url: Option<String>,
    /// Send OpenTelemetry traces to this OTLP collector (http://HOST:PORT;
    /// also `OTEL_EXPORTER_OTLP_ENDPOINT`, with `OTEL_EXPORTER_OTLP_PROTOCOL`).
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
}

/// The configuration file's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    hosts: Option<Vec<String>>,
    data_root: Option<PathBuf>,
    exec_root: Option<PathBuf>,
    pidfile: Option<PathBuf>,
    tlsverify: Option<bool>,
    tlscacert: Option<PathBuf>,
    tlscert: Option<PathBuf>,
    tlskey: Option<PathBuf>,
    insecure_tcp: Option<bool>,
    log_level: Option<String>,
    log_format: Option<String>,
    log_opts: Option<std::collections::BTreeMap<String, String>>,
    bridge: Option<String>,
    insecure_registries: Option<Vec<String>>,
    allow_nondistributable_artifacts: Option<Vec<String>>,
    registry_mirrors: Option<Vec<String>>,
    max_concurrent_downloads: Option<usize>,
    max_concurrent_uploads: Option<usize>,
    certs_dir: Option<PathBuf>,
    tls_handshake_timeout: Option<u64>,
    max_tcp_connections: Option<usize>,
    no_new_privileges: Option<bool>,
    userns_remap: Option<String>,
    authorization_config: Option<PathBuf>,
    audit_log: Option<PathBuf>,
    authorization_plugins: Option<Vec<String>>,
    metrics_addr: Option<SocketAddr>,
    state_url: Option<String>,
    otlp_endpoint: Option<String>,
}

/// Where the environment comes from; tests pass a map.
pub trait Env {
    /// The value of `key`, if set.
    fn get(&self, key: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
}

impl Env for HashMap<String, String> {
    fn get(&self, key: &str) -> Option<String> {
        HashMap::get(self, key).cloned()
    }
}

/// An address the API is served on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A unix socket.
    Unix(PathBuf),
    /// A TCP address.
    Tcp(SocketAddr),
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Unix(p) => write!(f, "unix://{}", p.display()),
            Host::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

/// The TLS files of `--tlsverify`.
pub use berth_core::tls::TlsFiles;

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// API listeners.
    pub hosts: Vec<Host>,
    /// Root of persistent state.
    pub data_root: PathBuf,
    /// Root of runtime state.
    pub exec_root: PathBuf,
    /// Pid file.
    pub pidfile: PathBuf,
    /// Mutual TLS for TCP listeners, when `tlsverify`.
    pub tls: Option<TlsFiles>,
    /// Plain TCP allowed on loopback.
    pub insecure_tcp: bool,
    /// Log level.
    pub log_level: String,
    /// Log format.
    pub log_format: LogFormat,
    /// Default container log options.
    pub log_opts: std::collections::BTreeMap<String, String>,
    /// The default bridge's device.
    pub bridge: String,
    /// Registries, mirrors, certificates and transfer concurrency.
    pub registry: berth_image_api::RegistryConfig,
    /// How long a TLS handshake may take.
    pub tls_handshake_timeout: std::time::Duration,
    /// Open TCP connections before new ones are refused.
    pub max_tcp_connections: usize,
    /// Containers' `no-new-privileges` default.
    pub no_new_privileges: bool,
    /// `--userns-remap`, as given (resolved by the runtime service).
    pub userns_remap: Option<String>,
    /// The authorization policy file.
    pub authorization_config: Option<PathBuf>,
    /// The audit log.
    pub audit_log: Option<PathBuf>,
    /// Docker AuthZ plugins, by name or socket path.
    pub authorization_plugins: Vec<String>,
    /// Where `/metrics` is served.
    pub metrics_addr: Option<SocketAddr>,
    /// Where the services keep their records: `None` for the embedded SQLite
    /// files, else a `postgres://` URL (checked in full by the services).
    pub state_url: Option<String>,
    /// Where traces go (tracing off without one, and without the standard
    /// `OTEL_EXPORTER_OTLP_*` variables).
    pub otlp: Option<telemetry::Otlp>,
}

fn env_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

/// Parses one `-H` value.
pub fn parse_host(s: &str, tls: bool) -> Result<Host, String> {
    if let Some(path) = s.strip_prefix("unix://") {
        if path.is_empty() || !path.starts_with('/') {
            return Err(format!("invalid host {s:?}: want unix:///absolute/path"));
        }
        return Ok(Host::Unix(PathBuf::from(path)));
    }
    if let Some(rest) = s.strip_prefix("tcp://") {
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && !h.ends_with(':') || h.starts_with('[') => {
                (h, p.parse::<u16>().map_err(|_| format!("invalid host {s:?}: bad port {p:?}"))?)
            }
            _ => (rest, if tls { 2376 } else { 2375 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ip: IpAddr = match host {
            "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
            "" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            h => h.parse().map_err(|_| format!("invalid host {s:?}: {h:?} is not an IP address"))?,
        };
        return Ok(Host::Tcp(SocketAddr::new(ip, port)));
    }
    if s.starts_with("fd://") {
        return Err(format!("invalid host {s:?}: socket activation (fd://) is not supported"));
    }
    Err(format!("invalid host {s:?}: want unix:///path or tcp://IP:PORT"))
}

impl DaemonConfig {
    /// Merges file, environment and flags, and validates the result. On failure
    /// returns every problem found.
    pub fn load(flags: &DaemonFlags, env: &dyn Env) -> Result<Self, Vec<String>> {
        let mut errors = Vec::new();
        let file_path = flags
            .config_file
            .clone()
            .or_else(|| env.get("BERTH_CONFIG_FILE").map(PathBuf::from))
            .or_else(|| Path::new(DEFAULT_CONFIG_FILE).exists().then(|| PathBuf::from(DEFAULT_CONFIG_FILE)));
        let file = match &file_path {
            Some(p) => match std::fs::read_to_string(p) {
                Ok(text) => toml::from_str::<FileConfig>(&text).unwrap_or_else(|e| {
                    errors.push(format!("config file {}: {}", p.display(), e.message()));
                    FileConfig::default()
                }),
                Err(e) => {
                    errors.push(format!("config file {}: {e}", p.display()));
                    FileConfig::default()
                }
            },
            None => FileConfig::default(),
        };

        let mut env_bool_of = |key: &str| -> Option<bool> {
            let v = env.get(key)?;
            match env_bool(&v) {
                Some(b) => Some(b),
                None => {
                    errors.push(format!("{key}={v:?} is not a boolean"));
                    None
                }
            }
        };
        let env_tlsverify = env_bool_of("BERTH_TLSVERIFY");
        let env_insecure = env_bool_of("BERTH_INSECURE_TCP");
        let path_of = |flag: &Option<PathBuf>, key: &str, file: &Option<PathBuf>| {
            flag.clone().or_else(|| env.get(key).map(PathBuf::from)).or_else(|| file.clone())
        };
        let data_root =
            path_of(&flags.data_root, "BERTH_DATA_ROOT", &file.data_root).unwrap_or_else(|| "/var/lib/berth".into());
        let exec_root =
            path_of(&flags.exec_root, "BERTH_EXEC_ROOT", &file.exec_root).unwrap_or_else(|| "/run/berth".into());
        let pidfile =
            path_of(&flags.pidfile, "BERTH_PIDFILE", &file.pidfile).unwrap_or_else(|| exec_root.join("berthd.pid"));
        for (name, p) in [("data-root", &data_root), ("exec-root", &exec_root), ("pidfile", &pidfile)] {
            if !p.is_absolute() {
                errors.push(format!("{name} must be an absolute path, not {:?}", p.display()));
            }
        }
        let tlsverify = flags.tlsverify.or(env_tlsverify).or(file.tlsverify).unwrap_or(false);
        let insecure_tcp = flags.insecure_tcp.or(env_insecure).or(file.insecure_tcp).unwrap_or(false);
        let ca = path_of(&flags.tlscacert, "BERTH_TLSCACERT", &file.tlscacert);
        let cert = path_of(&flags.tlscert, "BERTH_TLSCERT", &file.tlscert);
        let key = path_of(&flags.tlskey, "BERTH_TLSKEY", &file.tlskey);
        let tls = if tlsverify {
            match (ca, cert, key) {
                (Some(ca), Some(cert), Some(key)) => {
                    let files = TlsFiles { ca, cert, key };
                    if let Err(e) = crate::tls::server_config(&files) {
                        errors.push(format!("tls: {e}"));
                    }
                    Some(files)
                }
                (ca, cert, key) => {
                    let missing: Vec<&str> =
                        [("--tlscacert", ca.is_none()), ("--tlscert", cert.is_none()), ("--tlskey", key.is_none())]
                            .into_iter()
                            .filter(|(_, m)| *m)
                            .map(|(n, _)| n)
                            .collect();
                    errors.push(format!("--tlsverify needs {}", missing.join(", ")));
                    None
                }
            }
        } else {
            if ca.is_some() || cert.is_some() || key.is_some() {
                errors.push("--tlscacert/--tlscert/--tlskey are set but --tlsverify is not: Berth serves TCP only with mutual TLS".into());
            }
            None
        };

        let raw_hosts: Vec<String> = if !flags.hosts.is_empty() {
            flags.hosts.clone()
        } else if let Some(h) = env.get("BERTH_HOSTS") {
            h.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
        } else if let Some(h) = file.hosts {
            h
        } else {
            vec![format!("unix://{}", exec_root.join("berth.sock").display())]
        };
        let mut hosts = Vec::new();
        for raw in &raw_hosts {
            match parse_host(raw, tlsverify) {
                Ok(Host::Tcp(_)) if !tlsverify && !insecure_tcp => errors.push(format!(
                    "refusing to serve {raw} without --tlsverify: plain TCP gives root to anyone who can connect; \
                     use --tlsverify with certificates (see `berthd certs`), or --insecure-tcp on a loopback address"
                )),
                Ok(Host::Tcp(addr)) if !tlsverify && !addr.ip().is_loopback() => {
                    errors.push(format!("--insecure-tcp only allows loopback addresses; {raw} is not one"))
                }
                Ok(h) => hosts.push(h),
                Err(e) => errors.push(e),
            }
        }
        if hosts.is_empty() && errors.is_empty() {
            errors.push("no host to serve the API on".into());
        }

        let log_level = flags
            .log_level
            .clone()
            .or_else(|| env.get("BERTH_LOG_LEVEL"))
            .or(file.log_level)
            .unwrap_or_else(|| "info".into());
        if let Err(e) = telemetry::validate_level(&log_level) {
            errors.push(e);
        }
        let log_format =
            match flags.log_format.clone().or_else(|| env.get("BERTH_LOG_FORMAT")).or(file.log_format).as_deref() {
                None | Some("text") => LogFormat::Text,
                Some("json") => LogFormat::Json,
                Some(other) => {
                    errors.push(format!("invalid log format {other:?}: want text or json"));
                    LogFormat::Text
                }
            };
        let mut log_opts = file.log_opts.unwrap_or_default();
        for opt in &flags.log_opts {
            match opt.split_once('=') {
                Some((k, v)) => {
                    log_opts.insert(k.to_string(), v.to_string());
                }
                None => errors.push(format!("invalid --log-opt {opt:?}: want KEY=VALUE")),
            }
        }
        if let Err(e) =
            berth_runtime_api::logopts::validate_log_opts(log_opts.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        {
            errors.push(format!("log-opts: {}", e.message()));
        }
        let bridge =
            flags.bridge.clone().or_else(|| env.get("BERTH_BRIDGE")).or(file.bridge).unwrap_or("berth0".into());
        if !berth_network_api::valid_bridge_name(&bridge) {
            errors.push(format!("invalid bridge name {bridge:?}: 1 to 15 letters, digits, '_', '-' or '.'"));
        }
        let mut registry = berth_image_api::RegistryConfig {
            insecure: file.insecure_registries.unwrap_or_default(),
            mirrors: file.registry_mirrors.unwrap_or_default(),
            allow_nondistributable: file.allow_nondistributable_artifacts.unwrap_or_default(),
            ..Default::default()
        };
        registry.insecure.extend(flags.insecure_registries.iter().cloned());
        registry.allow_nondistributable.extend(flags.allow_nondistributable.iter().cloned());
        registry.mirrors.extend(flags.registry_mirrors.iter().cloned());
        for m in &registry.mirrors {
            if !(m.starts_with("http://") || m.starts_with("https://")) {
                errors.push(format!("invalid mirror {m:?}: want http:// or https:// and a host"));
            }
        }
        for (n, name) in [
            (flags.max_concurrent_downloads.or(file.max_concurrent_downloads), "max-concurrent-downloads"),
            (flags.max_concurrent_uploads.or(file.max_concurrent_uploads), "max-concurrent-uploads"),
        ] {
            match n {
                Some(0) => errors.push(format!("invalid {name} 0: want at least 1")),
                Some(n) if name.ends_with("downloads") => registry.max_concurrent_downloads = n,
                Some(n) => registry.max_concurrent_uploads = n,
                None => {}
            }
        }
        if let Some(dir) =
            flags.certs_dir.clone().or_else(|| env.get("BERTH_CERTS_DIR").map(PathBuf::from)).or(file.certs_dir)
        {
            registry.certs_dir = dir;
        }
        let tls_handshake_timeout = flags.tls_handshake_timeout.or(file.tls_handshake_timeout).unwrap_or(10);
        if tls_handshake_timeout == 0 {
            errors.push("invalid tls-handshake-timeout 0: want at least 1 second".into());
        }
        let max_tcp_connections = flags.max_tcp_connections.or(file.max_tcp_connections).unwrap_or(1024);
        if max_tcp_connections == 0 {
            errors.push("invalid max-tcp-connections 0: want at least 1".into());
        }
        let state_url = flags
            .state_url
            .clone()
            .or_else(|| env.get("BERTH_STATE_URL"))
            .or(file.state_url)
            .filter(|s| !s.trim().is_empty());
        if let Some(url) = &state_url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            errors.push("state-url: want a postgres:// URL, or none for the embedded SQLite files".into());
        }

        let otlp_flag = flags.otlp_endpoint.clone().or(file.otlp_endpoint);
        let otlp = telemetry::Otlp::from_env(otlp_flag.as_deref(), "berthd", |k| env.get(k))
            .map_err(|e| errors.push(e.to_string()))
            .ok()
            .flatten();

        if errors.is_empty() {
            Ok(DaemonConfig {
                hosts,
                data_root,
                exec_root,
                pidfile,
                tls,
                insecure_tcp,
                log_level,
                log_format,
                log_opts,
                bridge,
                registry,
                tls_handshake_timeout: std::time::Duration::from_secs(tls_handshake_timeout),
                max_tcp_connections,
                no_new_privileges: flags.no_new_privileges || file.no_new_privileges.unwrap_or(false),
                userns_remap: flags.userns_remap.clone().or(file.userns_remap).filter(|s| !s.is_empty()),
                authorization_config: flags.authorization_config.clone().or(file.authorization_config),
                audit_log: flags.audit_log.clone().or(file.audit_log),
                metrics_addr: flags.metrics_addr.or(file.metrics_addr),
                state_url,
                otlp,
                authorization_plugins: if flags.authorization_plugins.is_empty() {
                    file.authorization_plugins.unwrap_or_default()
                } else {
                    flags.authorization_plugins.clone()
                },
            })
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn flags() -> DaemonFlags {
        DaemonFlags { config_file: Some("/dev/null".into()), ..Default::default() }
    }

    #[test]
    fn defaults() {
        let c = DaemonConfig::load(&flags(), &env(&[])).expect("valid");
        assert_eq!(c.hosts, vec![Host::Unix("/run/berth/berth.sock".into())]);
        assert_eq!(c.data_root, PathBuf::from("/var/lib/berth"));
        assert_eq!(c.pidfile, PathBuf::from("/run/berth/berthd.pid"));
        assert_eq!(c.log_level, "info");
    }

    #[test]
    fn flags_beat_env_beat_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("berth.toml");
        std::fs::write(&file, "data-root = \"/from/file\"\nexec-root = \"/file/exec\"\nlog-level = \"warn\"\n")
            .expect("write");
        let mut f = DaemonFlags { config_file: Some(file), ..Default::default() };
        let e = env(&[("BERTH_DATA_ROOT", "/from/env"), ("BERTH_LOG_LEVEL", "debug")]);
        let c = DaemonConfig::load(&f, &e).expect("valid");
        assert_eq!(c.data_root, PathBuf::from("/from/env"));
        assert_eq!(c.exec_root, PathBuf::from("/file/exec"));
        assert_eq!(c.log_level, "debug");
        f.data_root = Some("/from/flag".into());
        let c = DaemonConfig::load(&f, &e).expect("valid");
        assert_eq!(c.data_root, PathBuf::from("/from/flag"));
    }

    #[test]
    fn reports_every_problem_at_once() {
        let f = DaemonFlags {
            hosts: vec!["tcp://0.0.0.0:2375".into(), "bogus://x".into()],
            log_level: Some("loud".into()),
            data_root: Some("relative".into()),
            ..flags()
        };
        let errs = DaemonConfig::load(&f, &env(&[("BERTH_TLSVERIFY", "maybe")])).expect_err("invalid");
        assert_eq!(errs.len(), 5, "{errs:#?}");
        assert!(errs.iter().any(|e| e.contains("without --tlsverify")));
        assert!(errs.iter().any(|e| e.contains("bogus")));
        assert!(errs.iter().any(|e| e.contains("loud")));
        assert!(errs.iter().any(|e| e.contains("absolute")));
        assert!(errs.iter().any(|e| e.contains("maybe")));
    }

    #[test]
    fn log_opts_merge_file_and_flags_and_are_checked() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("berth.toml");
        std::fs::write(&file, "[log-opts]\nmax-size = \"1m\"\nmax-file = \"5\"\n").expect("write");
        let mut f = DaemonFlags { config_file: Some(file), log_opts: vec!["max-file=2".into()], ..Default::default() };
        let c = DaemonConfig::load(&f, &env(&[])).expect("valid");
        assert_eq!(c.log_opts.get("max-size").map(String::as_str), Some("1m"));
        assert_eq!(c.log_opts.get("max-file").map(String::as_str), Some("2"));
        f.log_opts = vec!["max-size=lots".into(), "colour=blue".into()];
        assert!(DaemonConfig::load(&f, &env(&[])).is_err());
        f.log_opts = vec!["nokey".into()];
        let errs = DaemonConfig::load(&f, &env(&[])).expect_err("invalid");
        assert!(errs.iter().any(|e| e.contains("KEY=VALUE")), "{errs:?}");
    }

    #[test]
    fn unknown_file_keys_are_errors() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("berth.toml");
        std::fs::write(&file, "colour = \"blue\"\n").expect("write");
        let f = DaemonFlags { config_file: Some(file), ..Default::default() };
        let errs = DaemonConfig::load(&f, &env(&[])).expect_err("invalid");
        assert!(errs[0].contains("colour"), "{errs:?}");
    }

    #[test]
    fn insecure_tcp_is_loopback_only() {
        let f = DaemonFlags { hosts: vec!["tcp://127.0.0.1:2375".into()], insecure_tcp: Some(true), ..flags() };
        assert!(DaemonConfig::load(&f, &env(&[])).is_ok());
        let f = DaemonFlags { hosts: vec!["tcp://10.1.2.3:2375".into()], insecure_tcp: Some(true), ..flags() };
        assert!(DaemonConfig::load(&f, &env(&[])).is_err());
    }

    #[test]
    fn tlsverify_needs_all_three_files() {
        let f = DaemonFlags { tlsverify: Some(true), tlscert: Some("/x".into()), ..flags() };
        let errs = DaemonConfig::load(&f, &env(&[])).expect_err("invalid");
        assert!(errs.iter().any(|e| e.contains("--tlscacert") && e.contains("--tlskey")), "{errs:?}");
    }

    #[test]
    fn parses_hosts() {
        assert_eq!(parse_host("tcp://127.0.0.1:2376", true).ok(), Some(Host::Tcp("127.0.0.1:2376".parse().unwrap())));
        assert_eq!(parse_host("tcp://localhost", true).ok(), Some(Host::Tcp("127.0.0.1:2376".parse().unwrap())));
        assert_eq!(parse_host("tcp://[::1]:99", false).ok(), Some(Host::Tcp("[::1]:99".parse().unwrap())));
        assert!(parse_host("unix://relative", false).is_err());
        assert!(parse_host("fd://", false).is_err());
    }
}
