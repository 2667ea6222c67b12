//! Seccomp profiles in dockerd's format, and the one a container gets.
//!
//! A profile (`--security-opt seccomp=<profile>`, whose file the docker CLI
//! reads and sends as JSON) lists rules that apply only on some architectures,
//! with or without some capabilities, or from some kernel on. Resolving it for
//! one container (its capabilities, the host's architecture and kernel) gives
//! the plain filter the OCI spec carries (`linux.seccomp`), which the shim
//! loads with libseccomp. Without a profile a container gets
//! [`default_profile`]: dockerd's default, the same allowed calls and argument
//! rules. `--privileged` and `seccomp=unconfined` run without a filter.

use std::collections::HashSet;

use berth_core::{Error, Result};
use berth_models::container::HostConfig;
use berth_shim::spec::{Seccomp, SeccompArg, SeccompRule};
use serde::{Deserialize, Serialize};

/// A profile in dockerd's JSON format.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub default_action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_errno_ret: Option<u32>,
    /// Architectures, when there is no `archMap`.
    #[serde(default)]
    pub architectures: Vec<String>,
    /// Each native architecture and those its processes may also run as.
    #[serde(default)]
    pub arch_map: Vec<ArchMap>,
    #[serde(default)]
    pub syscalls: Vec<Rule>,
}

/// An architecture and its sub-architectures (x86_64: x86 and x32).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchMap {
    pub architecture: String,
    #[serde(default)]
    pub sub_architectures: Option<Vec<String>>,
}

/// One rule of a profile.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    #[serde(default)]
    pub names: Vec<String>,
    /// The older, single-name form.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno_ret: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<SeccompArg>,
    /// The rule applies only where all of these hold.
    #[serde(default)]
    pub includes: Filter,
    /// The rule does not apply where any of these holds.
    #[serde(default)]
    pub excludes: Filter,
}

/// Where a rule applies: capabilities held, architectures, a kernel version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caps: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arches: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_kernel: Option<String>,
}

/// The host's kernel as (major, minor).
pub fn host_kernel() -> (u32, u32) {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().and_then(|r| parse_kernel(r.trim())).unwrap_or((0, 0))
}

fn parse_kernel(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The seccomp architecture of a Go architecture name.
fn scmp_arch(go: &str) -> &'static str {
    match go {
        "amd64" => "SCMP_ARCH_X86_64",
        "arm64" => "SCMP_ARCH_AARCH64",
        "arm" => "SCMP_ARCH_ARM",
        "386" => "SCMP_ARCH_X86",
        "s390x" => "SCMP_ARCH_S390X",
        "riscv64" => "SCMP_ARCH_RISCV64",
        "ppc64le" => "SCMP_ARCH_PPC64LE",
        _ => "",
    }
}

/// The filter `profile` gives a container holding `caps` (`CAP_*` names) on
/// architecture `arch` (Go's name: `amd64`) with kernel `kernel`.
pub fn resolve(profile: &Profile, caps: &HashSet<String>, arch: &str, kernel: (u32, u32)) -> Seccomp {
    let native = scmp_arch(arch);
    let architectures = match profile.arch_map.iter().find(|m| m.architecture == native) {
        Some(m) => {
            std::iter::once(m.architecture.clone()).chain(m.sub_architectures.iter().flatten().cloned()).collect()
        }
        None if profile.arch_map.is_empty() => profile.architectures.clone(),
        None => vec![],
    };
    let applies = |r: &Rule| {
        let inc = &r.includes;
        let exc = &r.excludes;
        (inc.arches.is_empty() || inc.arches.iter().any(|a| a == arch))
            && inc.caps.iter().all(|c| caps.contains(c))
            && inc.min_kernel.as_deref().and_then(parse_kernel).is_none_or(|min| kernel >= min)
            && !exc.arches.iter().any(|a| a == arch)
            && !exc.caps.iter().any(|c| caps.contains(c))
            && exc.min_kernel.as_deref().and_then(parse_kernel).is_none_or(|min| kernel < min)
    };
    let syscalls = profile
        .syscalls
        .iter()
        .filter(|r| applies(r))
        .map(|r| SeccompRule {
            names: if r.name.is_empty() { r.names.clone() } else { vec![r.name.clone()] },
            action: r.action.clone(),
            errno_ret: r.errno_ret,
            args: r.args.clone(),
        })
        .collect();
    Seccomp {
        default_action: profile.default_action.clone(),
        default_errno_ret: profile.default_errno_ret,
        architectures,
        syscalls,
    }
}

/// The profile a container asked for: `None` to run unconfined.
pub fn profile_of(hc: &HostConfig) -> Result<Option<Profile>> {
    if hc.privileged {
        return Ok(None);
    }
    let asked = hc.security_opt().iter().rev().find_map(|o| o.strip_prefix("seccomp=").or(o.strip_prefix("seccomp:")));
    match asked.map(str::trim) {
        None | Some("builtin") => Ok(Some(default_profile())),
        Some("unconfined") => Ok(None),
        Some(json) => serde_json::from_str::<Profile>(json)
            .map(Some)
            .map_err(|e| Error::invalid(format!("Decoding seccomp profile failed: {e}"))),
    }
}

/// The filter for a container: its profile resolved for its capabilities and
/// this host, or `None` when it runs unconfined.
pub fn filter_of(hc: &HostConfig, caps: &HashSet<String>) -> Result<Option<Seccomp>> {
    Ok(profile_of(hc)?.map(|p| resolve(&p, caps, berth_models::host_arch(), host_kernel())))
}

/// Calls every container may make (dockerd's default profile).
const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_time64",
    "futex_waitv",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// Calls allowed only to a container holding a capability.
const WITH_CAPABILITY: &[(&str, &[&str])] = &[
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    ("CAP_SYS_MODULE", &["delete_module", "init_module", "finit_module"]),
    ("CAP_SYS_PACCT", &["acct"]),
    ("CAP_SYS_PTRACE", &["kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace"]),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    ("CAP_SYS_TIME", &["settimeofday", "stime", "clock_settime", "clock_settime64"]),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    ("CAP_SYS_NICE", &["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"]),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

/// Calls allowed only on some architectures.
const ON_ARCH: &[(&[&str], &[&str])] = &[
    (&["ppc64le"], &["sync_file_range2", "swapcontext"]),
    (
        &["arm", "arm64"],
        &["arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush", "set_tls"],
    ),
    (&["amd64", "x32"], &["arch_prctl"]),
    (&["amd64", "x32", "x86"], &["modify_ldt"]),
    (&["s390", "s390x"], &["s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"]),
    (&["riscv64"], &["riscv_flush_icache"]),
];

/// The namespace flags of clone(2) (CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC,
/// NEWUSER, NEWPID, NEWNET): without CAP_SYS_ADMIN a clone may set none of them.
const CLONE_NAMESPACES: u64 = 0x7E02_0000;

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn allow(names: &[&str]) -> Rule {
    Rule { names: strings(names), action: "SCMP_ACT_ALLOW".into(), ..Default::default() }
}

fn arg(index: u32, value: u64, op: &str) -> SeccompArg {
    SeccompArg { index, value, value_two: 0, op: op.into() }
}

/// dockerd's default profile: everything refused with EPERM but the calls
/// every container makes, those its capabilities allow, `socket` for every
/// family but AF_VSOCK, the `personality` values programs use, and `clone`
/// without namespace flags (`clone3`, whose flags seccomp cannot see, answers
/// ENOSYS so that libc falls back to `clone`) unless CAP_SYS_ADMIN is held.
pub fn default_profile() -> Profile {
    let mut syscalls = vec![allow(ALLOWED)];
    syscalls.push(Rule {
        includes: Filter { min_kernel: Some("4.8".into()), ..Default::default() },
        ..allow(&["process_vm_readv", "process_vm_writev", "ptrace"])
    });
    syscalls.push(Rule { args: vec![arg(0, 40, "SCMP_CMP_NE")], ..allow(&["socket"]) });
    for persona in [0u64, 8, 0x20000, 0x20008, 0xffff_ffff] {
        syscalls.push(Rule { args: vec![arg(0, persona, "SCMP_CMP_EQ")], ..allow(&["personality"]) });
    }
    for (arches, names) in ON_ARCH {
        syscalls.push(Rule { includes: Filter { arches: strings(arches), ..Default::default() }, ..allow(names) });
    }
    for (cap, names) in WITH_CAPABILITY {
        syscalls.push(Rule { includes: Filter { caps: vec![cap.to_string()], ..Default::default() }, ..allow(names) });
    }
    let no_admin = || vec!["CAP_SYS_ADMIN".to_string()];
    syscalls.push(Rule {
        args: vec![arg(0, CLONE_NAMESPACES, "SCMP_CMP_MASKED_EQ")],
        excludes: Filter { caps: no_admin(), arches: strings(&["s390", "s390x"]), ..Default::default() },
        ..allow(&["clone"])
    });
    syscalls.push(Rule {
        // s390 passes clone's flags second.
        args: vec![arg(1, CLONE_NAMESPACES, "SCMP_CMP_MASKED_EQ")],
        includes: Filter { arches: strings(&["s390", "s390x"]), ..Default::default() },
        excludes: Filter { caps: no_admin(), ..Default::default() },
        ..allow(&["clone"])
    });
    syscalls.push(Rule {
        names: strings(&["clone3"]),
        action: "SCMP_ACT_ERRNO".into(),
        errno_ret: Some(38),
        excludes: Filter { caps: no_admin(), ..Default::default() },
        ..Default::default()
    });
    let sub = |a: &[&str]| Some(strings(a));
    let arch_map = vec![
        ArchMap {
            architecture: "SCMP_ARCH_X86_64".into(),
            sub_architectures: sub(&["SCMP_ARCH_X86", "SCMP_ARCH_X32"]),
        },
        ArchMap { architecture: "SCMP_ARCH_AARCH64".into(), sub_architectures: sub(&["SCMP_ARCH_ARM"]) },
        ArchMap { architecture: "SCMP_ARCH_S390X".into(), sub_architectures: sub(&["SCMP_ARCH_S390"]) },
        ArchMap { architecture: "SCMP_ARCH_RISCV64".into(), sub_architectures: None },
    ];
    Profile {
        default_action: "SCMP_ACT_ERRNO".into(),
        default_errno_ret: Some(1),
        architectures: vec![],
        arch_map,
        syscalls,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(names: &[&str]) -> HashSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn allowed<'a>(f: &'a Seccomp, name: &str) -> Vec<&'a SeccompRule> {
        f.syscalls.iter().filter(|r| r.names.iter().any(|n| n == name)).collect()
    }

    #[test]
    fn the_default_profile_depends_on_capabilities_and_architecture() {
        let plain = resolve(&default_profile(), &caps(&["CAP_CHOWN", "CAP_SYS_CHROOT"]), "amd64", (6, 1));
        assert_eq!(plain.architectures, ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]);
        assert_eq!((plain.default_action.as_str(), plain.default_errno_ret), ("SCMP_ACT_ERRNO", Some(1)));
        assert!(allowed(&plain, "unshare").is_empty() && allowed(&plain, "mount").is_empty(), "no CAP_SYS_ADMIN");
        assert!(allowed(&plain, "keyctl").is_empty() && allowed(&plain, "add_key").is_empty());
        assert_eq!(allowed(&plain, "chroot").len(), 1, "CAP_SYS_CHROOT");
        assert_eq!(allowed(&plain, "arch_prctl").len(), 1, "amd64");
        assert!(allowed(&plain, "set_tls").is_empty(), "arm only");
        let clone = allowed(&plain, "clone");
        assert_eq!(clone.len(), 1);
        assert_eq!(clone[0].args, [arg(0, CLONE_NAMESPACES, "SCMP_CMP_MASKED_EQ")], "no namespace flags");
        assert_eq!(allowed(&plain, "clone3")[0].errno_ret, Some(38), "ENOSYS: libc falls back to clone");
        assert_eq!(allowed(&plain, "personality").len(), 5);
        assert_eq!(allowed(&plain, "ptrace").len(), 1, "from kernel 4.8");
        assert!(allowed(&resolve(&default_profile(), &caps(&[]), "amd64", (4, 4)), "ptrace").is_empty());

        let admin = resolve(&default_profile(), &caps(&["CAP_SYS_ADMIN"]), "amd64", (6, 1));
        assert_eq!(allowed(&admin, "unshare").len(), 1);
        assert!(allowed(&admin, "clone").iter().all(|r| r.args.is_empty()), "any clone with CAP_SYS_ADMIN");
        assert!(allowed(&admin, "clone3").iter().all(|r| r.action == "SCMP_ACT_ALLOW"));
    }

    #[test]
    fn profiles_come_from_security_options() {
        let hc = |v: serde_json::Value| -> HostConfig { serde_json::from_value(v).expect("host config") };
        assert_eq!(profile_of(&hc(serde_json::json!({}))).expect("default"), Some(default_profile()));
        assert_eq!(profile_of(&hc(serde_json::json!({"SecurityOpt": ["seccomp=unconfined"]}))).expect("off"), None);
        assert_eq!(profile_of(&hc(serde_json::json!({"Privileged": true}))).expect("privileged"), None);
        let own =
            r#"seccomp={"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#;
        let p = profile_of(&hc(serde_json::json!({"SecurityOpt": [own]}))).expect("own").expect("a profile");
        let f = resolve(&p, &caps(&[]), "amd64", (6, 1));
        assert_eq!((f.default_action.as_str(), f.syscalls[0].names[0].as_str()), ("SCMP_ACT_ALLOW", "mkdir"));
        let err = profile_of(&hc(serde_json::json!({"SecurityOpt": ["seccomp={nope"]}))).expect_err("bad json");
        assert!(err.message().contains("Decoding seccomp profile failed"), "{}", err.message());
        assert_eq!(parse_kernel("6.18.44-fc-v973"), Some((6, 18)));
    }
}
