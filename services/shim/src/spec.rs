//! The part of the OCI runtime spec (`config.json`) the shim reads, as serde
//! types. The runtime writes the whole spec with the `oci-spec` crate; the shim
//! mirrors only what it acts on, so the per-container process stays small (no
//! builder or derive crates), and a spec it cannot act on (no process, no root)
//! is refused when it is read, not discovered half-way through a setup.
//! Fields the shim does not use are ignored.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::messages::Annotations;

/// A bundle's spec, as the shim sees it.
#[derive(Debug, Clone, Deserialize)]
pub struct Spec {
    /// The container's process.
    pub process: Process,
    /// The root filesystem.
    pub root: Root,
    /// The container's hostname (with a UTS namespace).
    #[serde(default)]
    pub hostname: String,
    /// The container's NIS domain name (`--domainname`, with a UTS namespace).
    #[serde(default)]
    pub domainname: String,
    /// Mounts, in order.
    #[serde(default)]
    pub mounts: Vec<Mount>,
    /// Linux specifics.
    #[serde(default)]
    pub linux: Linux,
    /// Berth's annotations ([`Annotations`]).
    #[serde(default)]
    pub annotations: HashMap<String, String>,
}

impl Spec {
    /// Parses a spec and its annotations.
    pub fn parse(bytes: &[u8]) -> Result<(Spec, Annotations), String> {
        let spec: Spec = serde_json::from_slice(bytes).map_err(|e| format!("parse config.json: {e}"))?;
        let annotations = Annotations::from_map(&spec.annotations)?;
        Ok((spec, annotations))
    }

    /// Whether the spec asks for a namespace of `kind` (`network`, `uts`, ...).
    pub fn has_namespace(&self, kind: &str) -> bool {
        self.linux.namespaces.iter().any(|n| n.kind == kind)
    }

    /// Whether the container's init is PID 1 of a namespace of its own, so
    /// that its exit ends every process of the container (else, with the
    /// host's PID namespace or another container's, the shim ends them).
    pub fn owns_pid_namespace(&self) -> bool {
        self.linux.namespaces.iter().any(|n| n.kind == "pid" && n.path.is_empty())
    }
}

/// The container's process.
#[derive(Debug, Clone, Deserialize)]
pub struct Process {
    /// Run on a TTY.
    #[serde(default)]
    pub terminal: bool,
    /// Who it runs as.
    pub user: User,
    /// The command and its arguments.
    pub args: Vec<String>,
    /// `KEY=value` pairs.
    #[serde(default)]
    pub env: Vec<String>,
    /// The working directory.
    pub cwd: String,
    /// Capability sets.
    #[serde(default)]
    pub capabilities: Capabilities,
    /// Resource limits.
    #[serde(default)]
    pub rlimits: Vec<Rlimit>,
    /// Set `no_new_privs`: no execve can gain privileges (setuid bits, file
    /// capabilities) from then on.
    #[serde(default, rename = "noNewPrivileges")]
    pub no_new_privileges: bool,
}

/// A user and its groups.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    /// User ID.
    pub uid: u32,
    /// Primary group ID.
    pub gid: u32,
    /// Supplementary groups.
    #[serde(default, rename = "additionalGids")]
    pub additional_gids: Vec<u32>,
}

/// Capability sets, by name (`CAP_CHOWN`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Capabilities {
    /// The bounding set: what the process and its children can ever hold.
    #[serde(default)]
    pub bounding: Vec<String>,
    /// What the process uses now.
    #[serde(default)]
    pub effective: Vec<String>,
    /// What it may make effective.
    #[serde(default)]
    pub permitted: Vec<String>,
    /// What passes through an execve to programs that ask for it.
    #[serde(default)]
    pub inheritable: Vec<String>,
    /// What passes through an execve to any program (kept only within
    /// permitted and inheritable).
    #[serde(default)]
    pub ambient: Vec<String>,
}

impl Capabilities {
    /// A set of names as the kernel's bit mask (bit N is capability N).
    pub fn mask(names: &[String]) -> Result<u64, String> {
        names.iter().try_fold(0u64, |mask, name| {
            let bare = name.strip_prefix("CAP_").unwrap_or(name);
            crate::CAPABILITIES
                .iter()
                .position(|c| *c == bare)
                .map(|n| mask | (1u64 << n))
                .ok_or_else(|| format!("unknown capability {name:?}"))
        })
    }
}

/// One resource limit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rlimit {
    /// `RLIMIT_NOFILE`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Soft limit.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

/// The root filesystem.
#[derive(Debug, Clone, Deserialize)]
pub struct Root {
    /// The mount point, relative to the bundle or absolute.
    pub path: String,
    /// Mount it read-only.
    #[serde(default)]
    pub readonly: bool,
}

/// One mount.
#[derive(Debug, Clone, Deserialize)]
pub struct Mount {
    /// Where, inside the container.
    pub destination: String,
    /// Filesystem type (`bind` for binds).
    #[serde(rename = "type", default)]
    pub kind: String,
    /// What.
    #[serde(default)]
    pub source: String,
    /// mount(8) options.
    #[serde(default)]
    pub options: Vec<String>,
}

/// Linux specifics.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Linux {
    /// Namespaces to create.
    #[serde(default)]
    pub namespaces: Vec<Namespace>,
    /// Paths hidden from the container.
    #[serde(default, rename = "maskedPaths")]
    pub masked_paths: Vec<String>,
    /// Paths the container may only read.
    #[serde(default, rename = "readonlyPaths")]
    pub readonly_paths: Vec<String>,
    /// The seccomp filter; none for an unconfined container.
    #[serde(default)]
    pub seccomp: Option<Seccomp>,
    /// Device nodes to make in the container (`--device`, a privileged
    /// container's host devices).
    #[serde(default)]
    pub devices: Vec<Device>,
    /// Kernel parameters of the container's namespaces (`net.*`, IPC ones).
    #[serde(default)]
    pub sysctl: std::collections::BTreeMap<String, String>,
    /// With a `user` namespace: which host user IDs the container's are.
    #[serde(default, rename = "uidMappings")]
    pub uid_mappings: Vec<IdMapping>,
    /// Same for group IDs.
    #[serde(default, rename = "gidMappings")]
    pub gid_mappings: Vec<IdMapping>,
}

/// A range of IDs in a user namespace (`linux.uidMappings`, `linux.gidMappings`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct IdMapping {
    /// The first ID inside.
    #[serde(rename = "containerID")]
    pub container_id: u32,
    /// The host ID it is.
    #[serde(rename = "hostID")]
    pub host_id: u32,
    /// How many.
    pub size: u32,
}

impl IdMapping {
    /// The ranges as `/proc/PID/uid_map` takes them: a line each.
    pub fn map_file(ranges: &[IdMapping]) -> String {
        ranges.iter().map(|r| format!("{} {} {}\n", r.container_id, r.host_id, r.size)).collect()
    }

    /// The host ID of the container's `id`, if mapped.
    pub fn host_of(ranges: &[IdMapping], id: u32) -> Option<u32> {
        ranges
            .iter()
            .find(|r| id >= r.container_id && id - r.container_id < r.size)
            .map(|r| r.host_id + (id - r.container_id))
    }

    /// The container's ID of the host's `id`, if mapped.
    pub fn container_of(ranges: &[IdMapping], id: u32) -> Option<u32> {
        ranges.iter().find(|r| id >= r.host_id && id - r.host_id < r.size).map(|r| r.container_id + (id - r.host_id))
    }
}

/// A device node to make (`linux.devices`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    /// Its path inside the container.
    pub path: String,
    /// `c` (or `u`) for a character device, `b` for a block device.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its numbers.
    pub major: u32,
    /// See `major`.
    pub minor: u32,
    /// Permission bits (0666 if absent).
    #[serde(default)]
    pub file_mode: Option<u32>,
    /// Owner.
    #[serde(default)]
    pub uid: Option<u32>,
    /// Group.
    #[serde(default)]
    pub gid: Option<u32>,
}

/// A seccomp filter as the OCI spec writes it (`linux.seccomp`): a default
/// action, the architectures it covers, and rules per system call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Seccomp {
    /// `SCMP_ACT_ERRNO`, `SCMP_ACT_ALLOW`, ...
    pub default_action: String,
    /// The errno of an `SCMP_ACT_ERRNO` default (EPERM when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_errno_ret: Option<u32>,
    /// `SCMP_ARCH_X86_64`, ...
    #[serde(default)]
    pub architectures: Vec<String>,
    /// Rules, in order.
    #[serde(default)]
    pub syscalls: Vec<SeccompRule>,
}

/// What happens on some system calls, optionally only for some arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeccompRule {
    /// System call names (unknown ones are skipped, as runc does).
    pub names: Vec<String>,
    /// `SCMP_ACT_ALLOW`, `SCMP_ACT_ERRNO`, ...
    pub action: String,
    /// The errno of an `SCMP_ACT_ERRNO` action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno_ret: Option<u32>,
    /// Conditions on arguments, all of which must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<SeccompArg>,
}

/// A condition on one argument: `op` compares it with `value` (for
/// `SCMP_CMP_MASKED_EQ`: the argument masked with `value` equals `valueTwo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeccompArg {
    pub index: u32,
    pub value: u64,
    #[serde(default)]
    pub value_two: u64,
    pub op: String,
}

/// One namespace.
#[derive(Debug, Clone, Deserialize)]
pub struct Namespace {
    /// `mount`, `pid`, `uts`, `ipc`, `network`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Join this namespace (`/proc/PID/ns/net`) instead of making a new one.
    #[serde(default)]
    pub path: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_without_a_user_or_annotations_is_refused() {
        let spec = r#"{"ociVersion":"1.0.2","process":{"user":{"uid":5,"gid":6},"args":["sh"],"cwd":"/"},
            "root":{"path":"rootfs"},"linux":{"namespaces":[{"type":"pid"},{"type":"network"}]},
            "annotations":{"berth.overlay.lowerdir":"/l","berth.overlay.upperdir":"/u","berth.overlay.workdir":"/w",
            "berth.log.path":"/c.log","berth.log.max-size":"0","berth.log.max-file":"1"}}"#;
        let (s, a) = Spec::parse(spec.as_bytes()).expect("spec");
        assert_eq!((s.process.user.uid, s.process.user.gid), (5, 6));
        assert!(s.has_namespace("network") && !s.has_namespace("uts"));
        assert_eq!(a.lowerdirs, vec![std::path::PathBuf::from("/l")]);
        let no_uid = spec.replace(r#""uid":5,"#, "");
        assert!(Spec::parse(no_uid.as_bytes()).is_err_and(|e| e.contains("uid")));
        let no_log = spec.replace(r#""berth.log.path":"/c.log","#, "");
        assert!(Spec::parse(no_log.as_bytes()).is_err_and(|e| e.contains("berth.log.path")));
    }
}
