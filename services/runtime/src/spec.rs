//! The OCI runtime spec of a container, built from Docker's config and host
//! config, so the same bundle can go to Berth's shim or to runc or crun (`--runtime`).
//!
//! What dockerd puts in a spec by default, and so does Berth:
//! - namespaces: mount, PID, UTS, IPC and network (none of the network one with
//!   `--network host`);
//! - capabilities: dockerd's default set, changed by `--cap-add`/`--cap-drop`
//!   (`ALL` included), or every capability with `--privileged`;
//! - masked paths (`/proc/kcore`, `/sys/firmware`, ...) and read-only paths
//!   (`/proc/sys`, `/proc/sysrq-trigger`, ...), unless privileged;
//! - mounts: `/proc`, `/dev` (tmpfs), `/dev/pts`, `/dev/shm`, `/dev/mqueue`,
//!   `/sys` (read-only), `/sys/fs/cgroup` (read-only), Berth's `/etc/hosts`,
//!   `/etc/hostname` and `/etc/resolv.conf`, then the user's binds and tmpfs;
//! - rlimits: `RLIMIT_NOFILE` at the host's hard limit (capped at 1048576), as
//!   hosts without CAP_SYS_RESOURCE cannot raise it, and the user's `--ulimit`s,
//!   which must stay within the host's hard limits;
//! - resources: memory, swap, CPU quota (from `--cpus`), shares, cpuset, pids.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use berth_core::{Error, Result};
use berth_models::container::{ContainerConfig, HostConfig};
use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxIdMappingBuilder, LinuxMemoryBuilder,
    LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder, LinuxResourcesBuilder, Mount, MountBuilder,
    PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

/// The kernel parameters of a container: dockerd's defaults in a network
/// namespace of its own (a non-root process may bind ports below 1024 and
/// ping), then the container's `--sysctl`s.
/// `mapped_gids`: in a user namespace, how many group IDs it maps (the ping
/// range can only name mapped groups).
pub fn sysctls(hc: &HostConfig, mapped_gids: Option<u64>) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    let own_net = !hc.host_network() && !hc.network_mode.starts_with("container:");
    if own_net {
        let last_group = mapped_gids.map_or(2_147_483_647, |n| n.saturating_sub(1).min(2_147_483_647));
        out.insert("net.ipv4.ip_unprivileged_port_start".to_string(), "0".to_string());
        out.insert("net.ipv4.ping_group_range".to_string(), format!("0 {last_group}"));
    }
    out.extend(hc.sysctls.clone().unwrap_or_default());
    out
}

/// Only kernel parameters of a namespace the container has its own of can be
/// set: IPC ones (`kernel.msg*`, `kernel.sem`, `kernel.shm*`, `fs.mqueue.*`)
/// and network ones (`net.*`, not with `--network host`), as runc allows.
pub fn validate_sysctls(hc: &HostConfig) -> Result<()> {
    for key in hc.sysctls.iter().flatten().map(|(k, _)| k) {
        let ipc = key.starts_with("kernel.msg")
            || key == "kernel.sem"
            || key.starts_with("kernel.shm")
            || key.starts_with("fs.mqueue.");
        let net = key.starts_with("net.");
        if !(ipc || net) || key.contains('/') || key.contains("..") {
            return Err(Error::invalid(format!("sysctl \"{key}\" is not in a separate kernel namespace")));
        }
        if net && (hc.host_network() || hc.network_mode.starts_with("container:")) {
            return Err(Error::invalid(format!("sysctl \"{key}\" not allowed in host network namespace")));
        }
    }
    Ok(())
}

/// dockerd's default capabilities.
pub const DEFAULT_CAPS: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Every capability Linux defines (for `--privileged` and `--cap-add ALL`).
pub use berth_shim::CAPABILITIES as ALL_CAPS;

/// Paths dockerd masks in an unprivileged container.
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths dockerd makes read-only in an unprivileged container.
pub const READONLY_PATHS: [&str; 5] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// The most of `/etc/passwd` or `/etc/group` Berth reads (the container controls it).
const MAX_USER_DB: u64 = 8 << 20;

/// The container's `/etc/passwd` or `/etc/group` (`rel`), read inside `root`
/// (see [`berth_core::rootfs`]); empty when it has none.
pub fn read_user_db(root: &Path, rel: &str) -> Result<String> {
    let bytes = berth_core::rootfs::read_in_root(root, Path::new(rel), MAX_USER_DB)
        .map_err(|e| Error::invalid(format!("unable to find user: {}", e.message())))?;
    Ok(bytes.map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default())
}

/// A user resolved against the image's `/etc/passwd` and `/etc/group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    /// User ID.
    pub uid: u32,
    /// Primary group ID.
    pub gid: u32,
    /// Supplementary groups (the user's groups plus `--group-add`).
    pub additional_gids: Vec<u32>,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = Vec<&str>> {
    passwd.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')).map(|l| l.split(':').collect())
}

fn group_id(group: &str, spec: &str) -> Result<u32> {
    if let Ok(n) = spec.parse::<u32>() {
        return Ok(n);
    }
    passwd_entries(group)
        .find(|f| f.first() == Some(&spec))
        .and_then(|f| f.get(2).and_then(|g| g.parse().ok()))
        .ok_or_else(|| Error::invalid(format!("unable to find group {spec}: no matching entries in group file")))
}

/// Resolves `-u` (`name`, `uid`, `name:group`, `uid:gid`) and `--group-add` the
/// way dockerd does, from the contents of the image's passwd and group files.
pub fn resolve_user(user: &str, group_add: &[String], passwd: &str, group: &str) -> Result<ResolvedUser> {
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let (uid, name, mut gid) = if u.is_empty() {
        (0, Some("root".to_string()), 0)
    } else if let Ok(n) = u.parse::<u32>() {
        let entry = passwd_entries(passwd).find(|f| f.get(2).and_then(|x| x.parse::<u32>().ok()) == Some(n));
        let gid = entry.as_ref().and_then(|f| f.get(3).and_then(|x| x.parse().ok())).unwrap_or(0);
        (n, entry.and_then(|f| f.first().map(|s| s.to_string())), gid)
    } else {
        let f = passwd_entries(passwd)
            .find(|f| f.first() == Some(&u))
            .ok_or_else(|| Error::invalid(format!("unable to find user {u}: no matching entries in passwd file")))?;
        let uid = f.get(2).and_then(|x| x.parse().ok()).ok_or_else(|| Error::invalid("malformed passwd entry"))?;
        let gid = f.get(3).and_then(|x| x.parse().ok()).unwrap_or(0);
        (uid, Some(u.to_string()), gid)
    };
    if let Some(g) = g {
        gid = group_id(group, g)?;
    }
    let mut additional: Vec<u32> = Vec::new();
    if g.is_none()
        && let Some(name) = &name
    {
        for f in passwd_entries(group) {
            let members = f.get(3).map(|m| m.split(',').any(|x| x == name)).unwrap_or(false);
            if members
                && let Some(id) = f.get(2).and_then(|x| x.parse::<u32>().ok())
                && id != gid
            {
                additional.push(id);
            }
        }
    }
    for extra in group_add {
        let id = group_id(group, extra)?;
        if !additional.contains(&id) {
            additional.push(id);
        }
    }
    Ok(ResolvedUser { uid, gid, additional_gids: additional })
}

fn parse_cap(name: &str) -> Result<Capability> {
    let bare = name.trim().to_ascii_uppercase();
    let bare = bare.strip_prefix("CAP_").unwrap_or(&bare);
    Capability::from_str(bare).map_err(|_| Error::invalid(format!("unknown capability: \"{name}\"")))
}

/// The capability set after `--cap-add` / `--cap-drop` / `--privileged`.
pub fn capabilities(host_config: &HostConfig) -> Result<HashSet<Capability>> {
    let all = || ALL_CAPS.iter().map(|c| parse_cap(c)).collect::<Result<HashSet<_>>>();
    if host_config.privileged {
        return all();
    }
    let (add, drop) =
        (host_config.cap_add.clone().unwrap_or_default(), host_config.cap_drop.clone().unwrap_or_default());
    let is_all = |v: &[String]| v.iter().any(|c| c.eq_ignore_ascii_case("ALL"));
    let mut caps: HashSet<Capability> = if is_all(&drop) {
        HashSet::new()
    } else {
        DEFAULT_CAPS.iter().map(|c| parse_cap(c)).collect::<Result<_>>()?
    };
    for c in drop.iter().filter(|c| !c.eq_ignore_ascii_case("ALL")) {
        caps.remove(&parse_cap(c)?);
    }
    if is_all(&add) {
        caps.extend(all()?);
    }
    for c in add.iter().filter(|c| !c.eq_ignore_ascii_case("ALL")) {
        caps.insert(parse_cap(c)?);
    }
    Ok(caps)
}

fn rlimit_type(name: &str) -> Result<PosixRlimitType> {
    Ok(match name {
        "core" => PosixRlimitType::RlimitCore,
        "cpu" => PosixRlimitType::RlimitCpu,
        "data" => PosixRlimitType::RlimitData,
        "fsize" => PosixRlimitType::RlimitFsize,
        "locks" => PosixRlimitType::RlimitLocks,
        "memlock" => PosixRlimitType::RlimitMemlock,
        "msgqueue" => PosixRlimitType::RlimitMsgqueue,
        "nice" => PosixRlimitType::RlimitNice,
        "nofile" => PosixRlimitType::RlimitNofile,
        "nproc" => PosixRlimitType::RlimitNproc,
        "rss" => PosixRlimitType::RlimitRss,
        "rtprio" => PosixRlimitType::RlimitRtprio,
        "rttime" => PosixRlimitType::RlimitRttime,
        "sigpending" => PosixRlimitType::RlimitSigpending,
        "stack" => PosixRlimitType::RlimitStack,
        other => return Err(Error::invalid(format!("invalid ulimit type: {other}"))),
    })
}

/// The bind option naming a path inside the source to mount instead
/// (`VolumeOptions.Subpath`); Berth's shim reads it.
pub use berth_shim::protocol::SUBPATH_OPTION;

/// Everything [`build`] needs besides the Docker documents.
#[derive(Debug, Clone)]
pub struct SpecInputs {
    /// The merged container config (`Config`).
    pub config: ContainerConfig,
    /// The host config (`HostConfig`).
    pub host_config: HostConfig,
    /// The container's root filesystem (the overlay mount point).
    pub rootfs: PathBuf,
    /// Files Berth writes for the container, bound over the image's.
    pub hostname_file: PathBuf,
    /// See `hostname_file`.
    pub hosts_file: PathBuf,
    /// See `hostname_file`.
    pub resolv_file: PathBuf,
    /// The resolved user.
    pub user: ResolvedUser,
    /// The host's hard limit for open files.
    pub host_nofile_hard: u64,
    /// The container's volumes and binds, resolved at create.
    pub mounts: Vec<crate::volumes::MountPoint>,
    /// The daemon's `no-new-privileges` default.
    pub no_new_privileges: bool,
    /// The daemon's remapping, when the container runs in a user namespace.
    pub userns: Option<crate::userns::Remap>,
    /// Namespaces of other containers to join, by kind (`network`, `ipc`): their
    /// `/proc/PID/ns/...` paths.
    pub joins: Vec<(String, String)>,
    /// A host tmpfs bound at `/dev/shm` instead of a tmpfs of its own: a
    /// shareable container's, or the IPC donor's it joins.
    pub shm_source: Option<String>,
}

/// dockerd's IPC modes: `private` (the default), `shareable` (others may join
/// it), `container:NAME`, `host`, `none`.
pub fn validate_ipc_mode(mode: &str) -> Result<()> {
    match mode {
        "" | "private" | "shareable" | "host" | "none" => Ok(()),
        m if m.strip_prefix("container:").is_some_and(|r| !r.is_empty()) => Ok(()),
        m => Err(Error::invalid(format!("invalid IPC mode: {m}"))),
    }
}

/// `HostConfig.PidMode` and `UTSMode` as dockerd takes them: a PID namespace
/// of the container's own (empty), the host's, or another container's; a UTS
/// namespace of its own or the host's (which keeps the host's name, so a
/// hostname of its own conflicts).
pub fn validate_pid_and_uts(hc: &HostConfig, hostname: &str) -> Result<()> {
    match hc.pid_mode.as_str() {
        "" | "host" => {}
        m if m.strip_prefix("container:").is_some_and(|r| !r.is_empty()) => {}
        m => return Err(Error::invalid(format!("invalid PID mode: {m}"))),
    }
    match hc.uts_mode.as_str() {
        "" | "host" => {}
        m => return Err(Error::invalid(format!("invalid UTS mode: {m}"))),
    }
    if hc.uts_mode == "host" && !hostname.is_empty() {
        return Err(Error::invalid("conflicting options: hostname and the UTS mode"));
    }
    Ok(())
}

/// Whether the container runs with `no_new_privs`: its `--security-opt
/// no-new-privileges[=|:true|false]`, else the daemon's default, as dockerd.
pub fn no_new_privileges(hc: &HostConfig, default: bool) -> bool {
    hc.security_opt()
        .iter()
        .rev()
        .find_map(|o| match o.as_str() {
            "no-new-privileges" | "no-new-privileges:true" | "no-new-privileges=true" => Some(true),
            "no-new-privileges:false" | "no-new-privileges=false" => Some(false),
            _ => None,
        })
        .unwrap_or(default)
}

fn oci(e: oci_spec::OciSpecError) -> Error {
    Error::internal(format!("building the OCI spec: {e}"))
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount> {
    MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
        .map_err(oci)
}

/// The tmpfs mounts of `--mount type=tmpfs` and `--tmpfs` (volumes and binds
/// are resolved at create: [`crate::volumes`]).
pub fn user_mounts(host_config: &HostConfig) -> Result<Vec<Mount>> {
    let mut out = Vec::new();
    let check = |target: &str| -> Result<()> {
        if !target.starts_with('/') {
            return Err(Error::invalid(format!(
                "invalid mount config for type \"tmpfs\": invalid mount path: '{target}' mount path must be absolute"
            )));
        }
        if Path::new(target).components().all(|c| matches!(c, std::path::Component::RootDir)) {
            return Err(Error::invalid(
                "invalid mount config for type \"tmpfs\": invalid specification: destination can't be '/'",
            ));
        }
        Ok(())
    };
    for m in host_config.mounts().iter().filter(|m| m.kind == "tmpfs") {
        let target = m.target.as_str();
        check(target)?;
        let size = m.tmpfs_options.as_ref().map(|t| t.size_bytes).filter(|s| *s > 0).map(|s| format!("size={s}"));
        let mut opts = vec!["nosuid", "nodev", "noexec"];
        if let Some(s) = &size {
            opts.push(s);
        }
        if m.read_only {
            opts.push("ro");
        }
        out.push(mount(target, "tmpfs", "tmpfs", &opts)?);
    }
    for (target, given) in host_config.tmpfs.iter().flatten() {
        check(target)?;
        let mut o: Vec<&str> = vec!["nosuid", "nodev", "noexec"];
        o.extend(given.split(',').filter(|s| !s.is_empty()));
        out.push(mount(target, "tmpfs", "tmpfs", &o)?);
    }
    Ok(out)
}

/// Builds the OCI spec of a container.
pub fn build(inputs: &SpecInputs) -> Result<Spec> {
    let cfg = &inputs.config;
    let hc = &inputs.host_config;
    let privileged = hc.privileged;
    let args = cfg.argv();
    if args.is_empty() {
        return Err(Error::invalid("no command specified"));
    }
    let mut env = cfg.env().to_vec();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
        env.push(format!("HOSTNAME={}", cfg.hostname));
    }
    let cwd = match cfg.working_dir.as_str() {
        w if !w.is_empty() => {
            if !w.starts_with('/') {
                return Err(Error::invalid(format!(
                    "the working directory '{w}' is invalid, it needs to be an absolute path"
                )));
            }
            w.to_string()
        }
        _ => "/".into(),
    };

    let nofile = inputs.host_nofile_hard.min(1_048_576);
    let mut rlimits = vec![
        PosixRlimitBuilder::default()
            .typ(PosixRlimitType::RlimitNofile)
            .soft(nofile)
            .hard(nofile)
            .build()
            .map_err(oci)?,
    ];
    for u in hc.ulimits.iter().flatten() {
        let typ = rlimit_type(&u.name)?;
        let soft = u.soft.max(0) as u64;
        let hard = u.hard.max(0) as u64;
        if soft > hard {
            return Err(Error::invalid(format!(
                "ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
            )));
        }
        if typ == PosixRlimitType::RlimitNofile && hard > inputs.host_nofile_hard {
            return Err(Error::invalid(format!(
                "ulimit nofile hard limit {hard} exceeds the host's hard limit {}",
                inputs.host_nofile_hard
            )));
        }
        rlimits.retain(|r| r.typ() != typ);
        rlimits.push(PosixRlimitBuilder::default().typ(typ).soft(soft).hard(hard).build().map_err(oci)?);
    }

    let caps = capabilities(hc)?;
    let process = ProcessBuilder::default()
        .terminal(cfg.tty)
        .user(
            UserBuilder::default()
                .uid(inputs.user.uid)
                .gid(inputs.user.gid)
                .additional_gids(inputs.user.additional_gids.clone())
                .build()
                .map_err(oci)?,
        )
        .args(args)
        .env(env)
        .cwd(cwd)
        .capabilities(
            // Inheritable and ambient stay empty, as on dockerd since
            // CVE-2022-24769 (oci-spec's defaults would fill them, and a
            // non-root user would keep KILL, NET_BIND_SERVICE and AUDIT_WRITE).
            LinuxCapabilitiesBuilder::default()
                .bounding(caps.clone())
                .effective(caps.clone())
                .permitted(caps.clone())
                .inheritable(HashSet::new())
                .ambient(HashSet::new())
                .build()
                .map_err(oci)?,
        )
        .rlimits(rlimits)
        .no_new_privileges(no_new_privileges(hc, inputs.no_new_privileges))
        .oom_score_adj(i32::try_from(hc.oom_score_adj).unwrap_or(0))
        .build()
        .map_err(oci)?;

    let shm = Some(hc.shm_size).filter(|s| *s > 0).unwrap_or(64 * 1024 * 1024);
    let shm_opt = format!("size={shm}");
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"])?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        )?,
        mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", if privileged { "rw" } else { "ro" }])?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", if privileged { "rw" } else { "ro" }],
        )?,
        mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"])?,
    ];
    // /dev/shm: the host's with `--ipc host`, none with `--ipc none`, else its own.
    match hc.ipc_mode.as_str() {
        "host" => mounts.push(mount("/dev/shm", "bind", "/dev/shm", &["rbind", "rprivate", "nosuid", "nodev"])?),
        "none" => {}
        _ => match &inputs.shm_source {
            Some(shared) => {
                mounts.push(mount("/dev/shm", "bind", shared, &["rbind", "rprivate", "nosuid", "noexec", "nodev"])?)
            }
            None => {
                mounts.push(mount("/dev/shm", "tmpfs", "shm", &["nosuid", "noexec", "nodev", "mode=1777", &shm_opt])?)
            }
        },
    }
    // In a user namespace, Berth's own files and volumes are idmapped: their
    // owners on disk show as the container's (host paths are not: their files
    // show as `nobody` unless the range owns them, as on dockerd).
    let idmap = inputs.userns.as_ref().map(|_| "idmap");
    for (dest, file) in [
        ("/etc/resolv.conf", &inputs.resolv_file),
        ("/etc/hostname", &inputs.hostname_file),
        ("/etc/hosts", &inputs.hosts_file),
    ] {
        let opts: Vec<&str> = ["rbind", "rprivate"].into_iter().chain(idmap).collect();
        mounts.push(mount(dest, "bind", &file.to_string_lossy(), &opts)?);
    }
    // Volumes and binds, parents before what is mounted inside them.
    let mut binds = inputs.mounts.clone();
    binds.sort_by_key(|m| Path::new(&m.destination).components().count());
    for m in &binds {
        let mut opts = vec![if m.non_recursive { "bind" } else { "rbind" }, if m.rw { "rw" } else { "ro" }];
        opts.push(if m.propagation.is_empty() { "rprivate" } else { m.propagation.as_str() });
        if m.typ == "volume" {
            opts.extend(idmap);
        }
        // The shim resolves it inside the volume (see berth-shim's `init::prepare_binds`).
        let subpath = format!("{SUBPATH_OPTION}{}", m.subpath);
        if !m.subpath.is_empty() {
            opts.push(&subpath);
        }
        mounts.push(mount(&m.destination, "bind", &m.source, &opts)?);
    }
    mounts.extend(user_mounts(hc)?);

    let mut namespaces = vec![LinuxNamespaceType::Mount];
    if hc.pid_mode != "host" {
        namespaces.push(LinuxNamespaceType::Pid);
    }
    if hc.uts_mode != "host" {
        namespaces.push(LinuxNamespaceType::Uts);
    }
    if hc.ipc_mode != "host" {
        namespaces.push(LinuxNamespaceType::Ipc);
    }
    if !hc.host_network() {
        namespaces.push(LinuxNamespaceType::Network);
    }
    if inputs.userns.is_some() {
        namespaces.push(LinuxNamespaceType::User);
    }
    let namespaces = namespaces
        .into_iter()
        .map(|t| {
            let mut b = LinuxNamespaceBuilder::default().typ(t);
            // Another container's namespace, joined (`container:NAME` modes).
            let kind = match t {
                LinuxNamespaceType::Network => Some("network"),
                LinuxNamespaceType::Ipc => Some("ipc"),
                LinuxNamespaceType::Pid => Some("pid"),
                _ => None,
            };
            if let Some(path) = kind.and_then(|k| inputs.joins.iter().find(|(jk, _)| jk == k)).map(|(_, p)| p) {
                b = b.path(PathBuf::from(path));
            }
            b.build().map_err(oci)
        })
        .collect::<Result<Vec<_>>>()?;

    let mut resources = LinuxResourcesBuilder::default();
    if hc.memory > 0 || hc.memory_swap != 0 {
        let mut m = LinuxMemoryBuilder::default();
        if hc.memory > 0 {
            m = m.limit(hc.memory);
        }
        if hc.memory_swap != 0 {
            m = m.swap(hc.memory_swap);
        }
        resources = resources.memory(m.build().map_err(oci)?);
    }
    let mut cpu = LinuxCpuBuilder::default();
    let mut any_cpu = false;
    if hc.nano_cpus > 0 {
        cpu = cpu.period(100_000u64).quota(hc.nano_cpus * 100_000 / 1_000_000_000);
        any_cpu = true;
    }
    if hc.cpu_shares > 0 {
        cpu = cpu.shares(hc.cpu_shares as u64);
        any_cpu = true;
    }
    if !hc.cpuset_cpus.is_empty() {
        cpu = cpu.cpus(hc.cpuset_cpus.clone());
        any_cpu = true;
    }
    if any_cpu {
        resources = resources.cpu(cpu.build().map_err(oci)?);
    }
    if let Some(limit) = hc.pids_limit.filter(|l| *l > 0) {
        resources = resources.pids(LinuxPidsBuilder::default().limit(limit).build().map_err(oci)?);
    }
    if let Ok(weight) = u16::try_from(hc.blkio_weight)
        && weight > 0
    {
        let block_io = oci_spec::runtime::LinuxBlockIoBuilder::default().weight(weight).build().map_err(oci)?;
        resources = resources.block_io(block_io);
    }
    let (device_nodes, device_rules) = crate::devices::resolve(hc)?;
    let mapped_gids = inputs.userns.as_ref().map(|r| r.gids.iter().map(|g| u64::from(g.size)).sum());
    resources = resources.devices(device_rules);
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .devices(device_nodes)
        .resources(resources.build().map_err(oci)?)
        .sysctl(sysctls(hc, mapped_gids).into_iter().collect::<std::collections::HashMap<_, _>>());
    if let Some(remap) = &inputs.userns {
        let maps = |ranges: &[crate::userns::IdRange]| {
            ranges
                .iter()
                .map(|r| {
                    LinuxIdMappingBuilder::default()
                        .container_id(r.container)
                        .host_id(r.host)
                        .size(r.size)
                        .build()
                        .map_err(oci)
                })
                .collect::<Result<Vec<_>>>()
        };
        linux = linux.uid_mappings(maps(&remap.uids)?).gid_mappings(maps(&remap.gids)?);
    }
    if privileged {
        // Nothing masked or read-only, as dockerd: set explicitly, since the
        // builder's defaults are oci-spec's own lists (a privileged Berth
        // could not then run containers itself: /proc/sys was read-only).
        linux = linux.masked_paths(Vec::new()).readonly_paths(Vec::new());
    } else {
        // The client's lists when it gave them (an empty one masks nothing), else dockerd's.
        let masked = hc.masked_paths.clone().unwrap_or_else(|| MASKED_PATHS.iter().map(|s| s.to_string()).collect());
        let readonly =
            hc.readonly_paths.clone().unwrap_or_else(|| READONLY_PATHS.iter().map(|s| s.to_string()).collect());
        linux = linux.masked_paths(masked).readonly_paths(readonly);
    }
    let cap_names: HashSet<String> =
        caps.iter().map(|c| format!("CAP_{}", c.to_string().trim_start_matches("CAP_"))).collect();
    if let Some(filter) = crate::seccomp::filter_of(hc, &cap_names)? {
        // The same document in oci-spec's types (the field names are the OCI spec's).
        let value = serde_json::to_value(&filter).map_err(|e| Error::internal(e.to_string()))?;
        let seccomp: oci_spec::runtime::LinuxSeccomp =
            serde_json::from_value(value).map_err(|e| Error::internal(format!("the seccomp filter: {e}")))?;
        linux = linux.seccomp(seccomp);
    }
    SpecBuilder::default()
        .version("1.0.2")
        .root(RootBuilder::default().path(inputs.rootfs.clone()).readonly(hc.readonly_rootfs).build().map_err(oci)?)
        .hostname(cfg.hostname.clone())
        .domainname(cfg.domainname.clone())
        .process(process)
        .mounts(mounts)
        .linux(linux.build().map_err(oci)?)
        .build()
        .map_err(oci)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33::/var/www:/bin/false\nbob:x:1000:1000::/home/bob:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwww:x:33:\nstaff:x:50:bob,www\nbob:x:1000:\n";

    #[test]
    fn resolves_users_like_dockerd() {
        let r = |u: &str, add: &[&str]| {
            resolve_user(u, &add.iter().map(|s| s.to_string()).collect::<Vec<_>>(), PASSWD, GROUP)
        };
        assert_eq!(r("", &[]).ok(), Some(ResolvedUser { uid: 0, gid: 0, additional_gids: vec![] }));
        assert_eq!(r("bob", &[]).ok(), Some(ResolvedUser { uid: 1000, gid: 1000, additional_gids: vec![50] }));
        assert_eq!(r("33", &[]).ok(), Some(ResolvedUser { uid: 33, gid: 33, additional_gids: vec![50] }));
        assert_eq!(r("4242:4343", &[]).ok(), Some(ResolvedUser { uid: 4242, gid: 4343, additional_gids: vec![] }));
        assert_eq!(
            r("bob:www", &["staff", "7"]).ok(),
            Some(ResolvedUser { uid: 1000, gid: 33, additional_gids: vec![50, 7] })
        );
        let err = r("nobody", &[]).expect_err("missing user");
        assert!(err.message().contains("unable to find user nobody"), "{err}");
        assert!(r("bob:nogroup", &[]).is_err());
    }

    #[test]
    fn capability_sets() {
        let caps = |hc: Value| capabilities(&host(hc)).map(|c| c.len()).unwrap_or(usize::MAX);
        assert_eq!(caps(json!({})), DEFAULT_CAPS.len());
        assert_eq!(caps(json!({"CapDrop": ["ALL"]})), 0);
        assert_eq!(caps(json!({"CapDrop": ["ALL"], "CapAdd": ["net_admin"]})), 1);
        assert_eq!(caps(json!({"CapAdd": ["CAP_SYS_ADMIN"], "CapDrop": ["MKNOD"]})), DEFAULT_CAPS.len());
        assert_eq!(caps(json!({"Privileged": true})), ALL_CAPS.len());
        assert!(capabilities(&host(json!({"CapAdd": ["FLY"]}))).is_err());
    }

    fn host(v: Value) -> HostConfig {
        serde_json::from_value(v).expect("host config")
    }

    fn inputs(config: Value, host_config: Value) -> SpecInputs {
        SpecInputs {
            config: serde_json::from_value(config).expect("config"),
            host_config: host(host_config),
            rootfs: "/run/berth/c/rootfs".into(),
            hostname_file: "/run/berth/c/hostname".into(),
            hosts_file: "/run/berth/c/hosts".into(),
            resolv_file: "/run/berth/c/resolv.conf".into(),
            user: ResolvedUser { uid: 0, gid: 0, additional_gids: vec![] },
            host_nofile_hard: 20_000,
            mounts: vec![],
            no_new_privileges: false,
            userns: None,
            joins: vec![],
            shm_source: None,
        }
    }

    #[test]
    fn sysctls_default_only_in_an_own_network_namespace() {
        let sysctls_of = |hc: &HostConfig| sysctls(hc, None);
        let remapped = sysctls(&host(json!({})), Some(65536));
        assert_eq!(remapped.get("net.ipv4.ping_group_range").map(String::as_str), Some("0 65535"));
        let own = sysctls_of(&host(json!({"Sysctls": {"net.core.somaxconn": "512"}})));
        assert_eq!(own.get("net.ipv4.ip_unprivileged_port_start").map(String::as_str), Some("0"));
        assert_eq!(own.get("net.core.somaxconn").map(String::as_str), Some("512"));
        let shared = sysctls_of(&host(json!({"NetworkMode": "host"})));
        assert!(shared.is_empty(), "nothing is written into the host's namespace: {shared:?}");
        assert!(sysctls_of(&host(json!({"NetworkMode": "container:abc"}))).is_empty());
        assert!(validate_sysctls(&host(json!({"Sysctls": {"kernel.shmmax": "1", "fs.mqueue.msg_max": "20"}}))).is_ok());
        assert!(validate_sysctls(&host(json!({"Sysctls": {"kernel.hostname": "x"}}))).is_err());
        assert!(validate_sysctls(&host(json!({"Sysctls": {"net.ipv4.../x": "1"}}))).is_err());
        assert!(validate_sysctls(&host(json!({"NetworkMode": "host", "Sysctls": {"kernel.sem": "1 2 3 4"}}))).is_ok());
    }

    #[test]
    fn no_new_privileges_from_the_container_or_the_daemon() {
        let nnp = |opts: Value, default: bool| no_new_privileges(&host(json!({"SecurityOpt": opts})), default);
        assert!(!nnp(json!([]), false));
        assert!(nnp(json!([]), true), "the daemon's default");
        assert!(nnp(json!(["no-new-privileges"]), false));
        assert!(nnp(json!(["no-new-privileges=true"]), false));
        assert!(!nnp(json!(["no-new-privileges:false"]), true), "the container's word wins");
        assert!(nnp(json!(["no-new-privileges=false", "no-new-privileges:true"]), false), "the last one counts");
    }

    #[test]
    fn default_spec_matches_dockerd() {
        let spec = build(&inputs(json!({"Cmd": ["sh", "-c", "true"], "Hostname": "abc", "Env": ["A=1"]}), json!({})))
            .expect("spec");
        let v = serde_json::to_value(&spec).expect("json");
        assert_eq!(v["process"]["args"], json!(["sh", "-c", "true"]));
        assert_eq!(v["process"]["cwd"], "/");
        assert_eq!(v["hostname"], "abc");
        let env: Vec<String> = serde_json::from_value(v["process"]["env"].clone()).expect("env");
        assert!(
            env.iter().any(|e| e.starts_with("PATH="))
                && env.contains(&"A=1".into())
                && env.contains(&"HOSTNAME=abc".into())
        );
        let ns: Vec<&str> =
            v["linux"]["namespaces"].as_array().expect("ns").iter().filter_map(|n| n["type"].as_str()).collect();
        assert_eq!(ns, vec!["mount", "pid", "uts", "ipc", "network"]);
        assert_eq!(v["linux"]["maskedPaths"].as_array().map(|a| a.len()), Some(MASKED_PATHS.len()));
        assert!(v["linux"]["readonlyPaths"].as_array().expect("ro").contains(&json!("/proc/sys")));
        assert_eq!(v["process"]["rlimits"][0], json!({"type": "RLIMIT_NOFILE", "hard": 20000, "soft": 20000}));
        let dests: Vec<&str> =
            v["mounts"].as_array().expect("mounts").iter().filter_map(|m| m["destination"].as_str()).collect();
        for d in ["/proc", "/dev", "/dev/pts", "/dev/shm", "/sys", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf"] {
            assert!(dests.contains(&d), "{d} in {dests:?}");
        }
    }

    #[test]
    fn a_remapped_container_gets_a_user_namespace_and_idmapped_volumes() {
        use crate::userns::{IdRange, Remap};
        let mut inp = inputs(json!({"Cmd": ["sh"]}), json!({}));
        inp.mounts = vec![
            crate::volumes::MountPoint {
                typ: "volume".into(),
                source: "/v/data/_data".into(),
                destination: "/data".into(),
                rw: true,
                ..Default::default()
            },
            crate::volumes::MountPoint {
                typ: "bind".into(),
                source: "/srv".into(),
                destination: "/srv".into(),
                rw: true,
                ..Default::default()
            },
        ];
        inp.userns = Some(Remap {
            user: "dockremap".into(),
            group: "dockremap".into(),
            uids: vec![IdRange { container: 0, host: 100000, size: 65536 }],
            gids: vec![IdRange { container: 0, host: 200000, size: 1000 }],
        });
        let v = serde_json::to_value(build(&inp).expect("spec")).expect("json");
        let ns: Vec<&str> =
            v["linux"]["namespaces"].as_array().expect("ns").iter().filter_map(|n| n["type"].as_str()).collect();
        assert!(ns.contains(&"user"), "{ns:?}");
        assert_eq!(v["linux"]["uidMappings"], json!([{"containerID": 0, "hostID": 100000, "size": 65536}]));
        assert_eq!(v["linux"]["gidMappings"], json!([{"containerID": 0, "hostID": 200000, "size": 1000}]));
        let idmapped = |dest: &str| {
            v["mounts"].as_array().expect("mounts").iter().any(|m| {
                m["destination"] == dest && m["options"].as_array().is_some_and(|o| o.contains(&json!("idmap")))
            })
        };
        assert!(idmapped("/data") && idmapped("/etc/hosts") && idmapped("/etc/resolv.conf"));
        assert!(!idmapped("/srv"), "a host path keeps its owners");
        inp.userns = None;
        let v = serde_json::to_value(build(&inp).expect("spec")).expect("json");
        assert!(v["linux"].get("uidMappings").is_none_or(|m| m.as_array().is_none_or(|a| a.is_empty())));
    }

    #[test]
    fn host_config_becomes_resources_mounts_and_namespaces() {
        let hc = json!({
            "Memory": 64 << 20, "MemorySwap": 128 << 20, "NanoCpus": 1_500_000_000, "CpuShares": 512,
            "CpusetCpus": "0", "PidsLimit": 50, "NetworkMode": "host", "ReadonlyRootfs": true,
            "Tmpfs": {"/run": "size=1m"},
            "Ulimits": [{"Name": "nproc", "Soft": 100, "Hard": 200}],
        });
        let mut inp = inputs(json!({"Cmd": ["true"]}), hc);
        inp.mounts = vec![crate::volumes::MountPoint {
            typ: "bind".into(),
            source: "/srv/data".into(),
            destination: "/data".into(),
            ..Default::default()
        }];
        let v = serde_json::to_value(build(&inp).expect("spec")).expect("json");
        let r = &v["linux"]["resources"];
        assert_eq!(r["memory"]["limit"], 64 << 20);
        assert_eq!(r["memory"]["swap"], 128 << 20);
        assert_eq!(r["cpu"]["quota"], 150_000);
        assert_eq!(r["cpu"]["period"], 100_000);
        assert_eq!(r["cpu"]["shares"], 512);
        assert_eq!(r["cpu"]["cpus"], "0");
        assert_eq!(r["pids"]["limit"], 50);
        assert_eq!(v["root"]["readonly"], true);
        let ns: Vec<&str> =
            v["linux"]["namespaces"].as_array().expect("ns").iter().filter_map(|n| n["type"].as_str()).collect();
        assert!(!ns.contains(&"network"), "host networking keeps the host's namespace");
        let data = v["mounts"].as_array().expect("mounts").iter().find(|m| m["destination"] == "/data").expect("bind");
        assert_eq!(data["source"], "/srv/data");
        assert!(data["options"].as_array().expect("opts").contains(&json!("ro")));
        assert!(
            v["mounts"].as_array().expect("mounts").iter().any(|m| m["destination"] == "/run" && m["type"] == "tmpfs")
        );
        assert!(
            v["process"]["rlimits"]
                .as_array()
                .expect("rlimits")
                .iter()
                .any(|r| r["type"] == "RLIMIT_NPROC" && r["hard"] == 200)
        );
    }

    #[test]
    fn the_shim_reads_the_spec_the_runtime_writes() {
        let mut inp = inputs(
            json!({"Cmd": ["sh"], "Hostname": "h"}),
            json!({"Ulimits": [{"Name": "rttime", "Soft": 1, "Hard": 2}]}),
        );
        inp.user = ResolvedUser { uid: 7, gid: 8, additional_gids: vec![9] };
        let mut spec = build(&inp).expect("spec");
        let ann = berth_shim::protocol::Annotations {
            lowerdirs: vec!["/l".into()],
            log_path: "/c.log".into(),
            log_max_file: 1,
            ..Default::default()
        };
        spec.set_annotations(Some(ann.to_map()));
        let bytes = serde_json::to_vec(&spec).expect("json");
        let (read, read_ann) = berth_shim::spec::Spec::parse(&bytes).expect("the shim parses it");
        assert_eq!(
            (read.process.user.uid, read.process.user.gid, read.process.user.additional_gids.clone()),
            (7, 8, vec![9])
        );
        assert_eq!(read.process.args, vec!["sh"]);
        assert_eq!(read.hostname, "h");
        assert!(read.has_namespace("network"));
        assert!(read.process.rlimits.iter().any(|r| r.kind == "RLIMIT_RTTIME" && r.hard == 2));
        assert!(read.process.capabilities.bounding.iter().any(|c| c == "CAP_CHOWN"));
        assert_eq!(read.linux.masked_paths.len(), MASKED_PATHS.len());
        assert_eq!(read_ann, ann);
    }

    #[test]
    fn refuses_what_cannot_work() {
        let nofile = json!({"Ulimits": [{"Name": "nofile", "Soft": 30000, "Hard": 30000}]});
        assert!(build(&inputs(json!({"Cmd": ["true"]}), nofile)).is_err(), "above the host's hard limit");
        assert!(build(&inputs(json!({"Cmd": ["true"], "WorkingDir": "rel"}), json!({}))).is_err());
        assert!(build(&inputs(json!({}), json!({}))).is_err());
    }
}
