//! A container's documents: the create body, its `Config` and `HostConfig`,
//! mounts (`Mount` as requested, [`MountPoint`] as resolved), `State` and
//! `Health`, and an exec's config. Field names are dockerd's (API 1.50).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::network::NetworkingConfig;
use crate::{Extra, StrSlice, nullable};

/// `POST /containers/create`: the container's `Config` with its `HostConfig`
/// and `NetworkingConfig` beside the config's fields.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct CreateBody {
    /// The container's config (every other field of the body).
    #[serde(flatten)]
    pub config: ContainerConfig,
    /// How the host runs it.
    #[serde(rename = "HostConfig", default, deserialize_with = "nullable")]
    pub host_config: HostConfig,
    /// Networks to connect at create.
    #[serde(rename = "NetworkingConfig", default, deserialize_with = "nullable")]
    pub networking_config: NetworkingConfig,
}

/// Docker's container `Config` (also the `config` of an image).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    /// The container's hostname.
    #[serde(default, deserialize_with = "nullable")]
    pub hostname: String,
    /// The NIS domain name.
    #[serde(default, deserialize_with = "nullable")]
    pub domainname: String,
    /// `user`, `uid`, `user:group` or `uid:gid`.
    #[serde(default, deserialize_with = "nullable")]
    pub user: String,
    /// Attach stdin (for `docker run -i`).
    #[serde(default, deserialize_with = "nullable")]
    pub attach_stdin: bool,
    /// Attach stdout.
    #[serde(default, deserialize_with = "nullable")]
    pub attach_stdout: bool,
    /// Attach stderr.
    #[serde(default, deserialize_with = "nullable")]
    pub attach_stderr: bool,
    /// Exposed ports: `80/tcp` -> `{}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, Value>>,
    /// Run on a TTY.
    #[serde(default, deserialize_with = "nullable")]
    pub tty: bool,
    /// Keep stdin open.
    #[serde(default, deserialize_with = "nullable")]
    pub open_stdin: bool,
    /// Close stdin when the first attached client ends its input.
    #[serde(default, deserialize_with = "nullable")]
    pub stdin_once: bool,
    /// `KEY=value` pairs.
    #[serde(default)]
    pub env: Option<Vec<String>>,
    /// The command (after the entrypoint).
    #[serde(default)]
    pub cmd: StrSlice,
    /// The healthcheck.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
    /// Windows only.
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "std::ops::Not::not")]
    pub args_escaped: bool,
    /// The image as the user named it.
    #[serde(default, deserialize_with = "nullable")]
    pub image: String,
    /// Anonymous volumes: path -> `{}`.
    #[serde(default)]
    pub volumes: Option<BTreeMap<String, Value>>,
    /// The working directory.
    #[serde(default, deserialize_with = "nullable")]
    pub working_dir: String,
    /// The entrypoint.
    #[serde(default)]
    pub entrypoint: StrSlice,
    /// No networking at all.
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "std::ops::Not::not")]
    pub network_disabled: bool,
    /// The MAC address (deprecated here; per endpoint since API 1.44).
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub mac_address: String,
    /// ONBUILD triggers of an image.
    #[serde(default)]
    pub on_build: Option<Vec<String>>,
    /// Labels.
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    /// The signal that stops it (`SIGTERM`).
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub stop_signal: String,
    /// Seconds to wait before SIGKILL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<i64>,
    /// The shell of shell-form commands.
    #[serde(default, skip_serializing_if = "StrSlice::is_none")]
    pub shell: StrSlice,
    /// Fields Berth does not act on, kept as sent.
    #[serde(flatten)]
    pub extra: Extra,
}

impl StrSlice {
    /// Whether the list was not given at all.
    pub fn is_none(&self) -> bool {
        self.0.is_none()
    }
}

impl ContainerConfig {
    /// The environment (none when not given).
    pub fn env(&self) -> &[String] {
        self.env.as_deref().unwrap_or_default()
    }

    /// The labels (none when not given).
    pub fn labels(&self) -> impl Iterator<Item = (&String, &String)> {
        self.labels.iter().flatten()
    }

    /// The exposed ports' keys (`80/tcp`).
    pub fn exposed_ports(&self) -> impl Iterator<Item = &String> {
        self.exposed_ports.iter().flat_map(|m| m.keys())
    }

    /// The image's anonymous volume paths.
    pub fn volume_paths(&self) -> impl Iterator<Item = &String> {
        self.volumes.iter().flat_map(|m| m.keys())
    }

    /// The command line: Entrypoint followed by Cmd.
    pub fn argv(&self) -> Vec<String> {
        self.entrypoint.as_slice().iter().chain(self.cmd.as_slice()).cloned().collect()
    }
}

/// A healthcheck: `Test` is `[]` (inherit), `["NONE"]`, `["CMD", args...]` or
/// `["CMD-SHELL", command]`; durations in nanoseconds (0: the default).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthConfig {
    /// The probe.
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub test: Vec<String>,
    /// Time between probes.
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "is_zero")]
    pub interval: i64,
    /// A probe that runs longer failed.
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "is_zero")]
    pub timeout: i64,
    /// Failures in a row that make the container unhealthy.
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "is_zero")]
    pub retries: i64,
    /// Time to start before failures count.
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "is_zero")]
    pub start_period: i64,
    /// Time between probes during the start period.
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "is_zero")]
    pub start_interval: i64,
    /// Fields Berth does not act on, kept as sent.
    #[serde(flatten)]
    pub extra: Extra,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// `HostConfig.LogConfig`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LogConfig {
    /// The driver (`json-file`).
    #[serde(rename = "Type", default, deserialize_with = "nullable")]
    pub kind: String,
    /// Driver options (`max-size`, `max-file`).
    #[serde(default, deserialize_with = "nullable")]
    pub config: BTreeMap<String, String>,
}

/// `HostConfig.RestartPolicy`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RestartPolicy {
    /// `no`, `always`, `unless-stopped`, `on-failure` (or empty).
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    /// Retries of `on-failure`.
    #[serde(default, deserialize_with = "nullable")]
    pub maximum_retry_count: i64,
}

impl RestartPolicy {
    /// Checks the policy as dockerd does at create (and update).
    pub fn validate(&self) -> Result<(), String> {
        match self.name.as_str() {
            "" | "no" | "always" | "unless-stopped" => {
                if self.maximum_retry_count != 0 {
                    return Err("invalid restart policy: maximum retry count can only be used with 'on-failure'".into());
                }
            }
            "on-failure" => {
                if self.maximum_retry_count < 0 {
                    return Err("invalid restart policy: maximum retry count cannot be negative".into());
                }
            }
            other => {
                return Err(format!(
                    "invalid restart policy: unknown policy '{other}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"
                ));
            }
        }
        Ok(())
    }

    /// Whether any restart is asked for.
    pub fn is_set(&self) -> bool {
        !matches!(self.name.as_str(), "" | "no")
    }

    /// Whether an exit with `code` after `restarts` restarts, for a container
    /// the user did not stop (`manually_stopped`).
    pub fn restarts_after(&self, code: i64, restarts: i64, manually_stopped: bool) -> bool {
        if manually_stopped {
            return false;
        }
        match self.name.as_str() {
            "always" | "unless-stopped" => true,
            "on-failure" => code != 0 && (self.maximum_retry_count == 0 || restarts < self.maximum_retry_count),
            _ => false,
        }
    }

    /// Whether berthd starts the container again when it starts (a reboot).
    pub fn starts_with_daemon(&self, manually_stopped: bool) -> bool {
        self.name == "always" || (self.name == "unless-stopped" && !manually_stopped)
    }
}

/// A host port a container port is published on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PortBinding {
    /// The host address (empty: all).
    #[serde(default, deserialize_with = "nullable")]
    pub host_ip: String,
    /// The host port, a range `8000-8010`, or empty for a free one.
    #[serde(default, deserialize_with = "nullable")]
    pub host_port: String,
}

/// `port/proto` -> bindings (`null`: exposed, not published).
pub type PortMap = BTreeMap<String, Option<Vec<PortBinding>>>;

/// A resource limit (`--ulimit`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Ulimit {
    /// `nofile`, `nproc`, ...
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    /// Soft limit.
    #[serde(default, deserialize_with = "nullable")]
    pub soft: i64,
    /// Hard limit.
    #[serde(default, deserialize_with = "nullable")]
    pub hard: i64,
}

/// `POST /containers/{id}/update`'s body: the resources to change (zero or
/// absent: unchanged) and the restart policy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateConfig {
    /// CPU shares.
    #[serde(default, deserialize_with = "nullable")]
    pub cpu_shares: i64,
    /// Memory limit in bytes.
    #[serde(default, deserialize_with = "nullable")]
    pub memory: i64,
    /// Memory plus swap (-1: unlimited swap).
    #[serde(default, deserialize_with = "nullable")]
    pub memory_swap: i64,
    /// Soft memory limit.
    #[serde(default, deserialize_with = "nullable")]
    pub memory_reservation: i64,
    /// CPUs in billionths (`--cpus`).
    #[serde(default, deserialize_with = "nullable")]
    pub nano_cpus: i64,
    /// CFS period in µs.
    #[serde(default, deserialize_with = "nullable")]
    pub cpu_period: i64,
    /// CFS quota in µs.
    #[serde(default, deserialize_with = "nullable")]
    pub cpu_quota: i64,
    /// CPUs allowed.
    #[serde(default, deserialize_with = "nullable")]
    pub cpuset_cpus: String,
    /// Memory nodes allowed.
    #[serde(default, deserialize_with = "nullable")]
    pub cpuset_mems: String,
    /// Maximum processes (0 or -1: unlimited).
    #[serde(default)]
    pub pids_limit: Option<i64>,
    /// Block I/O weight.
    #[serde(default, deserialize_with = "nullable")]
    pub blkio_weight: i64,
    /// The new restart policy (an empty name: unchanged).
    #[serde(default)]
    pub restart_policy: Option<RestartPolicy>,
    /// Fields Berth does not act on.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A host device given to a container (`--device /dev/x[:/dev/y[:rwm]]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeviceMapping {
    /// The device node on the host, or a directory of them.
    #[serde(default, deserialize_with = "nullable")]
    pub path_on_host: String,
    /// Where it appears in the container (the host path if empty).
    #[serde(default, deserialize_with = "nullable")]
    pub path_in_container: String,
    /// What the container may do with it: any of `r`, `w`, `m` (`rwm` if empty).
    #[serde(default, deserialize_with = "nullable")]
    pub cgroup_permissions: String,
}

/// Docker's `HostConfig`. Resource fields are flattened in, as in Docker's JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostConfig {
    /// `-v` binds and volumes: `src:dst[:opts]`.
    #[serde(default)]
    pub binds: Option<Vec<String>>,
    /// The log driver and its options.
    #[serde(default, deserialize_with = "nullable")]
    pub log_config: LogConfig,
    /// `default`, `bridge`, `host`, `none`, `container:<id>` or a network name.
    #[serde(default, deserialize_with = "nullable")]
    pub network_mode: String,
    /// Published ports.
    #[serde(default)]
    pub port_bindings: Option<PortMap>,
    /// The restart policy.
    #[serde(default, deserialize_with = "nullable")]
    pub restart_policy: RestartPolicy,
    /// Remove the container when it exits (`--rm`).
    #[serde(default, deserialize_with = "nullable")]
    pub auto_remove: bool,
    /// The default volume driver.
    #[serde(default, deserialize_with = "nullable")]
    pub volume_driver: String,
    /// `container[:ro|rw]` to take volumes from.
    #[serde(default)]
    pub volumes_from: Option<Vec<String>>,
    /// Capabilities to add.
    #[serde(default)]
    pub cap_add: Option<Vec<String>>,
    /// Capabilities to drop.
    #[serde(default)]
    pub cap_drop: Option<Vec<String>>,
    /// DNS servers.
    #[serde(default)]
    pub dns: Option<Vec<String>>,
    /// resolv.conf options.
    #[serde(default)]
    pub dns_options: Option<Vec<String>>,
    /// Search domains.
    #[serde(default)]
    pub dns_search: Option<Vec<String>>,
    /// `name:ip` hosts entries.
    #[serde(default)]
    pub extra_hosts: Option<Vec<String>>,
    /// Extra groups for the container's process.
    #[serde(default)]
    pub group_add: Option<Vec<String>>,
    /// IPC namespace mode.
    #[serde(default, deserialize_with = "nullable")]
    pub ipc_mode: String,
    /// Legacy links.
    #[serde(default)]
    pub links: Option<Vec<String>>,
    /// OOM killer preference.
    #[serde(default, deserialize_with = "nullable")]
    pub oom_score_adj: i64,
    /// PID namespace mode.
    #[serde(default, deserialize_with = "nullable")]
    pub pid_mode: String,
    /// `host` keeps the container out of the daemon's user namespace remapping.
    #[serde(default, deserialize_with = "nullable")]
    pub userns_mode: String,
    /// UTS namespace mode (`host`: the host's hostname).
    #[serde(rename = "UTSMode", default, deserialize_with = "nullable")]
    pub uts_mode: String,
    /// Every capability, every device, no confinement.
    #[serde(default, deserialize_with = "nullable")]
    pub privileged: bool,
    /// Publish every exposed port (`-P`).
    #[serde(default, deserialize_with = "nullable")]
    pub publish_all_ports: bool,
    /// A read-only root filesystem.
    #[serde(default, deserialize_with = "nullable")]
    pub readonly_rootfs: bool,
    /// `no-new-privileges`, `seccomp=...`, ...
    #[serde(default)]
    pub security_opt: Option<Vec<String>>,
    /// Paths hidden from the container, instead of dockerd's list (`null`: the list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masked_paths: Option<Vec<String>>,
    /// Paths the container may only read, instead of dockerd's list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readonly_paths: Option<Vec<String>>,
    /// Namespaced kernel parameters (`--sysctl net.ipv4.ip_forward=1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sysctls: Option<BTreeMap<String, String>>,
    /// tmpfs mounts: path -> options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs: Option<BTreeMap<String, String>>,
    /// The size of /dev/shm in bytes (0: 64 MiB).
    #[serde(default, deserialize_with = "nullable")]
    pub shm_size: i64,
    /// CPU shares (relative weight).
    #[serde(default, deserialize_with = "nullable")]
    pub cpu_shares: i64,
    /// Memory limit in bytes.
    #[serde(default, deserialize_with = "nullable")]
    pub memory: i64,
    /// CPU quota in units of 1e-9 CPUs (`--cpus`).
    #[serde(default, deserialize_with = "nullable")]
    pub nano_cpus: i64,
    /// CFS period in microseconds.
    #[serde(default, deserialize_with = "nullable")]
    pub cpu_period: i64,
    /// CFS quota in microseconds.
    #[serde(default, deserialize_with = "nullable")]
    pub cpu_quota: i64,
    /// CPUs the container may use (`0-3`, `0,1`).
    #[serde(default, deserialize_with = "nullable")]
    pub cpuset_cpus: String,
    /// Memory nodes the container may use.
    #[serde(default, deserialize_with = "nullable")]
    pub cpuset_mems: String,
    /// Memory soft limit.
    #[serde(default, deserialize_with = "nullable")]
    pub memory_reservation: i64,
    /// Memory plus swap limit (-1: unlimited swap).
    #[serde(default, deserialize_with = "nullable")]
    pub memory_swap: i64,
    /// The PID limit (`null`/0: unlimited, -1: unlimited).
    #[serde(default)]
    pub pids_limit: Option<i64>,
    /// Relative block I/O weight, 10..1000 (0: the default).
    #[serde(default, deserialize_with = "nullable")]
    pub blkio_weight: i64,
    /// Resource limits.
    #[serde(default)]
    pub ulimits: Option<Vec<Ulimit>>,
    /// Host devices (`--device`).
    #[serde(default)]
    pub devices: Option<Vec<DeviceMapping>>,
    /// More device cgroup rules (`--device-cgroup-rule 'c 42:* rmw'`).
    #[serde(default)]
    pub device_cgroup_rules: Option<Vec<String>>,
    /// `--mount` mounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mounts: Option<Vec<Mount>>,
    /// Run an init as PID 1 (`--init`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    /// The OCI runtime that runs the container (`--runtime`): `berth` (the
    /// shim's own, the default) or an installed one such as `runc`.
    #[serde(default, deserialize_with = "nullable")]
    pub runtime: String,
    /// Fields Berth does not act on, kept as sent.
    #[serde(flatten)]
    pub extra: Extra,
}

impl HostConfig {
    /// `host`, `none`, `container:<id>` or a network; `default` as `bridge`.
    pub fn network_mode(&self) -> &str {
        match self.network_mode.as_str() {
            "" | "default" => "bridge",
            m => m,
        }
    }

    /// Whether the container uses the host's network namespace.
    pub fn host_network(&self) -> bool {
        self.network_mode == "host"
    }

    /// The DNS servers (none when not given).
    pub fn dns(&self) -> &[String] {
        self.dns.as_deref().unwrap_or_default()
    }

    /// The DNS search domains.
    pub fn dns_search(&self) -> &[String] {
        self.dns_search.as_deref().unwrap_or_default()
    }

    /// The resolv.conf options.
    pub fn dns_options(&self) -> &[String] {
        self.dns_options.as_deref().unwrap_or_default()
    }

    /// `--add-host` entries.
    pub fn extra_hosts(&self) -> &[String] {
        self.extra_hosts.as_deref().unwrap_or_default()
    }

    /// `--group-add` entries.
    pub fn group_add(&self) -> &[String] {
        self.group_add.as_deref().unwrap_or_default()
    }

    /// `--security-opt` entries.
    pub fn security_opt(&self) -> &[String] {
        self.security_opt.as_deref().unwrap_or_default()
    }

    /// `--mount` entries.
    pub fn mounts(&self) -> &[Mount] {
        self.mounts.as_deref().unwrap_or_default()
    }

    /// `-v` entries.
    pub fn binds(&self) -> &[String] {
        self.binds.as_deref().unwrap_or_default()
    }
}

/// A `--mount` as requested (`HostConfig.Mounts`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Mount {
    /// `bind`, `volume`, `tmpfs`, ...
    #[serde(rename = "Type", default, deserialize_with = "nullable")]
    pub kind: String,
    /// The host path or volume name.
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// The path in the container.
    #[serde(default, deserialize_with = "nullable")]
    pub target: String,
    /// Mount read-only.
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// Bind options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_options: Option<BindOptions>,
    /// Volume options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_options: Option<VolumeOptions>,
    /// tmpfs options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs_options: Option<TmpfsOptions>,
    /// Fields Berth does not act on, kept as sent.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `Mount.BindOptions`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BindOptions {
    /// `rprivate`, `rshared`, ...
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub propagation: String,
    /// Only the mount at the source, not those below it (`bind-recursive=disabled`).
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "std::ops::Not::not")]
    pub non_recursive: bool,
    /// Fields Berth does not act on, kept as sent.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `Mount.VolumeOptions`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeOptions {
    /// Do not copy the image's content into an empty volume.
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "std::ops::Not::not")]
    pub no_copy: bool,
    /// Labels of a volume created by this mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// The driver and its options for a volume created by this mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_config: Option<DriverConfig>,
    /// Mount this path inside the volume instead of its root (API 1.45).
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub subpath: String,
    /// Fields Berth does not act on, kept as sent.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `VolumeOptions.DriverConfig`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DriverConfig {
    /// The driver.
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Its options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<BTreeMap<String, String>>,
}

/// `Mount.TmpfsOptions`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TmpfsOptions {
    /// Size in bytes (0: the kernel's default).
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "is_zero")]
    pub size_bytes: i64,
    /// Fields Berth does not act on, kept as sent.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One entry of a container's `Mounts` as resolved at create, as Docker's inspect
/// shows it (`NoCopy` is Berth's own, kept for the start).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MountPoint {
    /// volume or bind.
    #[serde(rename = "Type")]
    pub typ: String,
    /// The volume's name (volumes only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The host path: the volume's mountpoint or the bind's source.
    pub source: String,
    /// The path in the container.
    pub destination: String,
    /// `local` for volumes.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub driver: String,
    /// The mode as given (`ro`, `z`, ...).
    pub mode: String,
    /// Writable.
    #[serde(rename = "RW")]
    pub rw: bool,
    /// Bind propagation (`rprivate` unless given).
    pub propagation: String,
    /// No copy-up into this volume (`nocopy`, `volume-nocopy`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_copy: bool,
    /// The path inside the volume that is mounted (`VolumeOptions.Subpath`),
    /// resolved inside the volume when the container starts. Berth's own.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subpath: String,
    /// A bind of the source mount only (`BindOptions.NonRecursive`). Berth's own.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub non_recursive: bool,
}

/// The statuses a container goes through, and the moves between them, in one
/// place. `docker ps` and inspect show [`ContainerStatus::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerStatus {
    /// Made, never started (or a start failed before the command ran).
    Created,
    /// Its command runs.
    Running,
    /// Frozen.
    Paused,
    /// Waiting to be started again by its restart policy.
    Restarting,
    /// Being removed.
    Removing,
    /// Its command ended.
    Exited,
    /// Could not be removed or recovered.
    Dead,
}

impl ContainerStatus {
    /// Every status.
    pub const ALL: [ContainerStatus; 7] = [
        ContainerStatus::Created,
        ContainerStatus::Running,
        ContainerStatus::Paused,
        ContainerStatus::Restarting,
        ContainerStatus::Removing,
        ContainerStatus::Exited,
        ContainerStatus::Dead,
    ];

    /// dockerd's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerStatus::Created => "created",
            ContainerStatus::Running => "running",
            ContainerStatus::Paused => "paused",
            ContainerStatus::Restarting => "restarting",
            ContainerStatus::Removing => "removing",
            ContainerStatus::Exited => "exited",
            ContainerStatus::Dead => "dead",
        }
    }

    /// Parses dockerd's word; an unknown word (a damaged record) is `Dead`.
    pub fn parse(s: &str) -> ContainerStatus {
        ContainerStatus::ALL.into_iter().find(|c| c.as_str() == s).unwrap_or(ContainerStatus::Dead)
    }

    /// Whether a process of the container is alive (running, frozen, or between
    /// restarts with a shim that may still hold it): `State.Running` in inspect.
    pub fn is_running(self) -> bool {
        matches!(self, ContainerStatus::Running | ContainerStatus::Paused)
    }

    /// Whether a shim holds (or may hold) the container: watched after a restart.
    pub fn is_live(self) -> bool {
        matches!(self, ContainerStatus::Running | ContainerStatus::Paused | ContainerStatus::Restarting)
    }

    /// `docker start` may start it (a live one answers "already running").
    pub fn can_start(self) -> bool {
        matches!(self, ContainerStatus::Created | ContainerStatus::Exited | ContainerStatus::Dead)
    }

    /// `docker stop` and `kill` have a process to signal.
    pub fn can_signal(self) -> bool {
        self == ContainerStatus::Running
    }

    /// `docker pause`.
    pub fn can_pause(self) -> bool {
        self == ContainerStatus::Running
    }

    /// `docker unpause`.
    pub fn can_unpause(self) -> bool {
        self == ContainerStatus::Paused
    }

    /// `docker exec`, attach's live stream, resize: a running, unfrozen process.
    pub fn can_exec(self) -> bool {
        self == ContainerStatus::Running
    }

    /// `docker rm` without `-f`.
    pub fn can_remove(self) -> bool {
        !self.is_live()
    }

    /// Whether the move from `self` to `to` is one the runtime makes.
    pub fn can_become(self, to: ContainerStatus) -> bool {
        use ContainerStatus::*;
        match (self, to) {
            (Created | Exited | Dead, Running) => true,
            // A start that fails before the command runs stays (or goes back to) created.
            (Created | Exited, Created) => true,
            (Running, Paused) | (Paused, Running) => true,
            (Running | Paused | Restarting, Exited) => true,
            (Running, Restarting) | (Exited, Restarting) | (Restarting, Running) => true,
            (s, Removing) => s != Removing,
            (Removing, Dead) | (_, Dead) => true,
            _ => false,
        }
    }
}

impl std::fmt::Display for ContainerStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `State` block of `docker inspect`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct State {
    /// The status word.
    pub status: ContainerStatus,
    /// A process is alive.
    pub running: bool,
    /// Frozen.
    pub paused: bool,
    /// Between restarts.
    pub restarting: bool,
    /// The last run ran out of memory.
    #[serde(rename = "OOMKilled")]
    pub oom_killed: bool,
    /// Dead.
    pub dead: bool,
    /// The init's host PID (0 when not running).
    pub pid: i64,
    /// The last exit code.
    pub exit_code: i64,
    /// Why the last start failed.
    pub error: String,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339.
    pub finished_at: String,
    /// The healthcheck's state, for containers that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
}

/// `State.Health`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    /// `starting`, `healthy` or `unhealthy`.
    pub status: String,
    /// Failed probes in a row.
    pub failing_streak: i64,
    /// The last probes, oldest first.
    pub log: Vec<HealthLog>,
}

/// One probe's result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthLog {
    /// RFC 3339.
    pub start: String,
    /// RFC 3339.
    pub end: String,
    /// The probe's exit code.
    pub exit_code: i64,
    /// Its output.
    pub output: String,
}

/// `POST /containers/{id}/exec`'s body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExecConfig {
    /// Attach stdin.
    #[serde(default, deserialize_with = "nullable")]
    pub attach_stdin: bool,
    /// Attach stdout.
    #[serde(default, deserialize_with = "nullable")]
    pub attach_stdout: bool,
    /// Attach stderr.
    #[serde(default, deserialize_with = "nullable")]
    pub attach_stderr: bool,
    /// Detach keys (`ctrl-p,ctrl-q`).
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub detach_keys: String,
    /// Run on a TTY.
    #[serde(default, deserialize_with = "nullable")]
    pub tty: bool,
    /// `KEY=value` pairs over the container's.
    #[serde(default)]
    pub env: Option<Vec<String>>,
    /// The command.
    #[serde(default)]
    pub cmd: StrSlice,
    /// Extended privileges.
    #[serde(default, deserialize_with = "nullable")]
    pub privileged: bool,
    /// The user (the container's when empty).
    #[serde(default, deserialize_with = "nullable")]
    pub user: String,
    /// The working directory (the container's when empty).
    #[serde(default, deserialize_with = "nullable")]
    pub working_dir: String,
    /// Fields Berth does not act on, kept as sent.
    #[serde(flatten)]
    pub extra: Extra,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Any JSON document, as a client could send.
    fn json() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(|f| serde_json::json!(f)),
            "[A-Za-z]{0,12}".prop_map(serde_json::Value::from),
        ];
        let keys = prop_oneof![
            Just("Cmd".to_string()),
            Just("Env".to_string()),
            Just("HostConfig".to_string()),
            Just("Memory".to_string()),
            Just("Binds".to_string()),
            Just("PortBindings".to_string()),
            Just("Mounts".to_string()),
            Just("Healthcheck".to_string()),
            Just("Labels".to_string()),
            Just("ExposedPorts".to_string()),
            Just("RestartPolicy".to_string()),
            Just("Entrypoint".to_string()),
            "[A-Za-z]{1,10}",
        ];
        leaf.prop_recursive(4, 64, 8, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                proptest::collection::btree_map(keys.clone(), inner, 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        // Every body a client sends is parsed or refused with a message, never a panic.
        #[test]
        fn any_body_is_parsed_or_refused(v in json()) {
            let bytes = serde_json::to_vec(&v).unwrap_or_default();
            let _ = crate::parse::<CreateBody>("create body", &bytes);
            let _ = crate::parse::<HostConfig>("host config", &bytes);
            let _ = crate::parse::<ExecConfig>("exec config", &bytes);
            let _ = crate::parse::<crate::network::NetworkingConfig>("networking config", &bytes);
        }
    }
    use serde_json::json;

    #[test]
    fn create_body_splits_and_keeps_unknown_fields() {
        let body = json!({
            "Image": "busybox", "Cmd": "sh", "Env": null, "Tty": true, "FutureField": {"a": 1},
            "HostConfig": {"Memory": 67108864, "Binds": ["/a:/b:ro"], "NetworkMode": "web", "NewKnob": true,
                           "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}], "53/udp": null},
                           "PidsLimit": null, "Mounts": [{"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1024, "Mode": 448}}]},
            "NetworkingConfig": {"EndpointsConfig": {"web": {"Aliases": ["api"], "IPAMConfig": {"IPv4Address": "10.1.0.5"}}}}
        });
        let b: CreateBody = serde_json::from_value(body).expect("body");
        assert_eq!(b.config.cmd, StrSlice::of(["sh"]));
        assert!(b.config.tty && b.config.env.is_none());
        assert_eq!(b.config.extra["FutureField"], json!({"a": 1}));
        assert!(!b.config.extra.contains_key("HostConfig"), "the host config is not an unknown field of the config");
        let hc = &b.host_config;
        assert_eq!((hc.memory, hc.network_mode()), (64 << 20, "web"));
        assert_eq!(hc.extra["NewKnob"], json!(true));
        assert_eq!(hc.port_bindings.as_ref().and_then(|p| p.get("53/udp").cloned()), Some(None));
        let tmpfs = &hc.mounts()[0];
        assert_eq!(
            tmpfs.tmpfs_options.as_ref().map(|t| (t.size_bytes, t.extra["Mode"].clone())),
            Some((1024, json!(448)))
        );
        let ep = &b.networking_config.endpoints_config["web"];
        assert_eq!(ep.aliases.as_deref(), Some(&["api".to_string()][..]));
        // What inspect returns keeps what was sent.
        let back = serde_json::to_value(hc).expect("json");
        assert_eq!(back["NewKnob"], json!(true));
        assert_eq!(back["Mounts"][0]["TmpfsOptions"], json!({"SizeBytes": 1024, "Mode": 448}));
    }

    #[test]
    fn wrong_types_are_errors_that_name_the_field() {
        let err = serde_json::from_value::<CreateBody>(json!({"HostConfig": {"Memory": "lots"}})).expect_err("type");
        assert!(err.to_string().contains("invalid type"), "{err}");
        assert!(serde_json::from_value::<CreateBody>(json!({"Cmd": 3})).is_err());
    }

    #[test]
    fn statuses_and_their_moves() {
        use ContainerStatus::*;
        for s in ContainerStatus::ALL {
            assert_eq!(ContainerStatus::parse(s.as_str()), s);
            assert_eq!(serde_json::to_value(s).ok(), Some(json!(s.as_str())));
        }
        assert_eq!(ContainerStatus::parse("bogus"), Dead);
        assert!(Created.can_start() && Exited.can_start() && !Running.can_start() && !Paused.can_start());
        assert!(Running.can_pause() && !Paused.can_pause() && Paused.can_unpause());
        assert!(Running.can_exec() && !Paused.can_exec() && !Exited.can_exec());
        assert!(Exited.can_remove() && !Running.can_remove() && !Restarting.can_remove());
        assert!(Running.can_become(Exited) && Paused.can_become(Running) && !Exited.can_become(Paused));
        assert!(!Removing.can_become(Removing) && Removing.can_become(Dead));
        assert!(Paused.is_running() && !Restarting.is_running() && Restarting.is_live());
    }
}
