//! Resource limits through cgroups, on v1, v2 and hybrid hosts.
//!
//! A v2 host has `cgroup.controllers` at the root of `/sys/fs/cgroup`; each
//! container gets `/sys/fs/cgroup/berth/<id>` with `memory.max`, `cpu.max`, ...
//! A v1 host (and a hybrid one, whose v1 controllers sit beside a cgroup2 mount at
//! `unified/`, where crun refuses to run) gets one directory per controller,
//! `/sys/fs/cgroup/<controller>/berth/<id>`, with `memory.limit_in_bytes`,
//! `cpu.cfs_quota_us`, ... The container's init joins every directory by writing
//! `0` (itself) to `cgroup.procs` before it executes the command. Every function
//! takes the cgroup root as a parameter, so tests point it at a temporary tree.

use std::fs;
use std::path::{Path, PathBuf};

use berth_core::{Error, Result};

/// The cgroup layout of the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Separate hierarchies per controller (including hybrid hosts).
    V1,
    /// The unified hierarchy.
    V2,
}

/// Tells v2 from v1 by the root's `cgroup.controllers`.
pub fn detect(root: &Path) -> Version {
    if root.join("cgroup.controllers").exists() { Version::V2 } else { Version::V1 }
}

/// Limits taken from the OCI spec's `linux.resources`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Memory limit in bytes.
    pub memory: Option<i64>,
    /// Memory plus swap in bytes (-1: unlimited), Docker's MemorySwap.
    pub memory_swap: Option<i64>,
    /// CFS quota and period in microseconds.
    pub cpu_quota: Option<(i64, u64)>,
    /// Relative CPU weight (Docker's shares, 2..262144).
    pub cpu_shares: Option<u64>,
    /// CPUs allowed (`0-1`, `0,2`).
    pub cpuset_cpus: Option<String>,
    /// Maximum number of processes.
    pub pids: Option<i64>,
    /// Device cgroup rules in order (the last that matches an access decides).
    pub devices: Vec<oci_spec::runtime::LinuxDeviceCgroup>,
    /// Relative block I/O weight (10..1000).
    pub blkio_weight: Option<u64>,
}

impl Limits {
    /// Reads the limits from an OCI spec.
    pub fn from_spec(spec: &oci_spec::runtime::Spec) -> Self {
        let r = spec.linux().as_ref().and_then(|l| l.resources().clone()).unwrap_or_default();
        let memory = (*r.memory()).unwrap_or_default();
        let cpu = r.cpu().clone().unwrap_or_default();
        Limits {
            memory: memory.limit(),
            memory_swap: memory.swap(),
            cpu_quota: cpu.quota().map(|q| (q, cpu.period().unwrap_or(100_000))),
            cpu_shares: cpu.shares(),
            cpuset_cpus: cpu.cpus().clone(),
            pids: r.pids().as_ref().map(|p| p.limit()),
            devices: r.devices().clone().unwrap_or_default(),
            blkio_weight: r.block_io().as_ref().and_then(|b| b.weight()).map(u64::from),
        }
    }
}

/// The v1 controllers a container gets a directory in: limits, the device
/// cgroup, the freezer (pause), and the accounting that stats reads.
const V1_CONTROLLERS: [&str; 8] = ["memory", "cpu", "pids", "cpuset", "devices", "freezer", "cpuacct", "blkio"];

fn write(dir: &Path, file: &str, value: &str) -> Result<()> {
    fs::write(dir.join(file), value)
        .map_err(|e| Error::invalid(format!("cgroup {}/{file} = {value}: {e}", dir.display())))
}

/// The directories of container `id`, created and limited. The caller writes
/// them into the spec so the init joins them.
pub fn create(root: &Path, id: &str, limits: &Limits) -> Result<Vec<PathBuf>> {
    let dirs = match detect(root) {
        Version::V2 => {
            let parent = root.join("berth");
            fs::create_dir_all(&parent)?;
            // Delegate the controllers we use to the children of berth/.
            if let Ok(available) = fs::read_to_string(root.join("cgroup.subtree_control")) {
                for c in ["memory", "cpu", "pids", "cpuset", "io"] {
                    if !available.split_whitespace().any(|a| a == c) {
                        let _ = fs::write(root.join("cgroup.subtree_control"), format!("+{c}"));
                    }
                }
            }
            let _ = fs::write(parent.join("cgroup.subtree_control"), "+memory +cpu +pids +cpuset +io");
            let dir = parent.join(id);
            fs::create_dir_all(&dir)?;
            write_limits(root, id, limits)?;
            // The device cgroup: a BPF program on the container's cgroup.
            if !limits.devices.is_empty() {
                crate::bpf::attach(&dir, &limits.devices)?;
            }
            vec![dir]
        }
        Version::V1 => {
            let mut dirs = Vec::new();
            for c in V1_CONTROLLERS {
                let base = root.join(c);
                if !base.exists() {
                    continue;
                }
                let dir = base.join("berth").join(id);
                fs::create_dir_all(&dir)?;
                if c == "cpuset" {
                    // A cpuset without cpus and mems accepts no task: inherit them.
                    for f in ["cpuset.cpus", "cpuset.mems"] {
                        for d in [base.join("berth"), dir.clone()] {
                            let parent = d.parent().map(Path::to_path_buf).unwrap_or_default();
                            if fs::read_to_string(d.join(f)).map(|s| s.trim().is_empty()).unwrap_or(false)
                                && let Ok(v) = fs::read_to_string(parent.join(f))
                            {
                                write(&d, f, v.trim())?;
                            }
                        }
                    }
                }
                dirs.push(dir);
            }
            let dir = |c: &str| root.join(c).join("berth").join(id);
            // The device cgroup: rules in order, a deny-all first.
            if root.join("devices").exists() {
                for rule in &limits.devices {
                    let file = if rule.allow() { "devices.allow" } else { "devices.deny" };
                    write(&dir("devices"), file, &rule.to_string())?;
                }
            }
            write_limits(root, id, limits)?;
            dirs
        }
    };
    Ok(dirs)
}

/// Writes the resource limits of container `id` into its existing cgroups:
/// at create, and again for `docker update` while it runs. Limits left out
/// (`None`) are not touched.
pub fn write_limits(root: &Path, id: &str, limits: &Limits) -> Result<()> {
    match detect(root) {
        Version::V2 => {
            let dir = root.join("berth").join(id);
            if let Some(m) = limits.memory {
                write(&dir, "memory.max", &if m > 0 { m.to_string() } else { "max".into() })?;
                match limits.memory_swap {
                    Some(-1) => write(&dir, "memory.swap.max", "max")?,
                    Some(total) if m > 0 && total >= m => write(&dir, "memory.swap.max", &(total - m).to_string())?,
                    _ => {}
                }
            }
            if let Some((q, p)) = limits.cpu_quota {
                let q = if q > 0 { q.to_string() } else { "max".into() };
                write(&dir, "cpu.max", &format!("{q} {p}"))?;
            }
            if let Some(s) = limits.cpu_shares {
                // The conversion runc and crun use from shares to weight.
                let weight = 1 + ((s.clamp(2, 262_144) - 2) * 9999) / 262_142;
                write(&dir, "cpu.weight", &weight.to_string())?;
            }
            if let Some(c) = &limits.cpuset_cpus {
                write(&dir, "cpuset.cpus", c)?;
            }
            if let Some(p) = limits.pids {
                write(&dir, "pids.max", &if p > 0 { p.to_string() } else { "max".into() })?;
            }
            if let Some(w) = limits.blkio_weight.filter(|_| dir.join("io.weight").exists()) {
                // blkio's 10..1000 onto io's 1..10000, as runc maps it.
                write(&dir, "io.weight", &format!("default {}", 1 + (w.clamp(10, 1000) - 10) * 9999 / 990))?;
            }
        }
        Version::V1 => {
            let dir = |c: &str| root.join(c).join("berth").join(id);
            if let Some(m) = limits.memory {
                let mem = dir("memory");
                let limit = if m > 0 { m } else { -1 };
                // Absent when the kernel runs without swap accounting.
                let memsw = mem.join("memory.memsw.limit_in_bytes").exists();
                let total = limits.memory_swap.filter(|t| *t != 0 && memsw);
                // memory may never exceed memory+swap: raise that first when it grows.
                if let Some(t) = total
                    && (t == -1 || t >= limit)
                {
                    let _ = write(&mem, "memory.memsw.limit_in_bytes", &t.to_string());
                }
                write(&mem, "memory.limit_in_bytes", &limit.to_string())?;
                if let Some(t) = total {
                    write(&mem, "memory.memsw.limit_in_bytes", &t.to_string())?;
                }
            }
            if let Some((q, p)) = limits.cpu_quota {
                write(&dir("cpu"), "cpu.cfs_period_us", &p.to_string())?;
                write(&dir("cpu"), "cpu.cfs_quota_us", &if q > 0 { q } else { -1 }.to_string())?;
            }
            if let Some(s) = limits.cpu_shares {
                write(&dir("cpu"), "cpu.shares", &s.to_string())?;
            }
            if let Some(c) = &limits.cpuset_cpus {
                write(&dir("cpuset"), "cpuset.cpus", c)?;
            }
            if let Some(p) = limits.pids {
                write(&dir("pids"), "pids.max", &if p > 0 { p.to_string() } else { "max".into() })?;
            }
            if let Some(w) = limits.blkio_weight {
                let blkio = dir("blkio");
                for file in ["blkio.weight", "blkio.bfq.weight"] {
                    if blkio.join(file).exists() {
                        write(&blkio, file, &w.to_string())?;
                        break;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Freezes (`true`) or thaws every process of container `id`, and waits until
/// the kernel reports it done: `freezer.state` on v1, `cgroup.freeze` and
/// `cgroup.events` on v2. A process in the middle of a system call may take a
/// while to freeze; after 5 s the cgroup is thawed again and the pause fails.
pub fn freeze(root: &Path, id: &str, frozen: bool) -> Result<()> {
    // The file to write, what to write, and the file and line that say it is done.
    let (dir, file, value, status, done) = match detect(root) {
        Version::V2 => (
            root.join("berth").join(id),
            "cgroup.freeze",
            if frozen { "1" } else { "0" },
            "cgroup.events",
            if frozen { "frozen 1" } else { "frozen 0" },
        ),
        Version::V1 => {
            let state = if frozen { "FROZEN" } else { "THAWED" };
            (root.join("freezer").join("berth").join(id), "freezer.state", state, "freezer.state", state)
        }
    };
    if !dir.exists() {
        return Err(Error::unavailable(format!("the container {id} has no freezer cgroup")));
    }
    write(&dir, file, value)?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        if fs::read_to_string(dir.join(status)).is_ok_and(|t| t.lines().any(|l| l.trim() == done)) {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            if frozen {
                let _ = freeze(root, id, false);
            }
            return Err(Error::internal(format!(
                "the container {id} did not {}",
                if frozen { "freeze" } else { "thaw" }
            )));
        }
        // v1 moves FREEZING to FROZEN only when the state is read again.
        if matches!(detect(root), Version::V1) {
            let _ = write(&dir, file, value);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// The PIDs (on the host) of every process in container `id`'s cgroup.
pub fn processes(root: &Path, id: &str) -> Vec<i32> {
    let dir = match detect(root) {
        Version::V2 => root.join("berth").join(id),
        Version::V1 => root.join("pids").join("berth").join(id),
    };
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Whether the kernel's OOM killer killed something in the container's cgroup.
pub fn oom_killed(root: &Path, id: &str) -> bool {
    let text = match detect(root) {
        Version::V2 => fs::read_to_string(root.join("berth").join(id).join("memory.events")),
        Version::V1 => fs::read_to_string(root.join("memory/berth").join(id).join("memory.oom_control")),
    }
    .unwrap_or_default();
    text.lines().any(|l| l.strip_prefix("oom_kill ").and_then(|n| n.trim().parse::<u64>().ok()).unwrap_or(0) > 0)
}

/// Removes the container's cgroups (they must be empty; retried briefly while the
/// kernel finishes tearing the processes down).
pub fn remove(root: &Path, id: &str) {
    let dirs: Vec<PathBuf> = match detect(root) {
        Version::V2 => vec![root.join("berth").join(id)],
        Version::V1 => V1_CONTROLLERS.iter().map(|c| root.join(c).join("berth").join(id)).collect(),
    };
    for d in dirs {
        remove_tree(&d);
    }
}

/// Removes a cgroup and the cgroups below it (a privileged container, Berth
/// itself in one say, may have made some), deepest first. A cgroup goes once
/// its last task has: a few tries.
fn remove_tree(d: &Path) {
    if let Ok(entries) = fs::read_dir(d) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path());
            }
        }
    }
    for _ in 0..50 {
        match fs::remove_dir(d) {
            Ok(()) => break,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v1_root() -> tempfile::TempDir {
        let t = tempfile::tempdir().expect("tmp");
        for c in V1_CONTROLLERS {
            fs::create_dir_all(t.path().join(c)).expect("mkdir");
        }
        fs::write(t.path().join("cpuset/cpuset.cpus"), "0-1\n").expect("write");
        fs::write(t.path().join("cpuset/cpuset.mems"), "0\n").expect("write");
        t
    }

    #[test]
    fn v1_limits_land_in_each_controller() {
        let root = v1_root();
        // A real cgroupfs creates the files with a directory; the fixture pre-creates them empty.
        for (c, f) in [("cpuset", "cpuset.cpus"), ("cpuset", "cpuset.mems")] {
            for d in [root.path().join(c).join("berth"), root.path().join(c).join("berth/c1")] {
                fs::create_dir_all(&d).expect("mkdir");
                fs::write(d.join(f), "").expect("write");
            }
        }
        let limits = Limits {
            memory: Some(64 << 20),
            memory_swap: Some(128 << 20),
            cpu_quota: Some((150_000, 100_000)),
            cpu_shares: Some(512),
            cpuset_cpus: None,
            pids: Some(20),
            devices: {
                let mut deny = crate::devices::parse_cgroup_rule("a *:* rwm").expect("rule");
                deny.set_allow(false);
                vec![deny, crate::devices::parse_cgroup_rule("c 1:3 rwm").expect("rule")]
            },
            blkio_weight: None,
        };
        assert_eq!(detect(root.path()), Version::V1);
        let dirs = create(root.path(), "c1", &limits).expect("create");
        assert_eq!(dirs.len(), V1_CONTROLLERS.len());
        let read = |p: &str| fs::read_to_string(root.path().join(p)).unwrap_or_default();
        assert_eq!(read("memory/berth/c1/memory.limit_in_bytes"), (64 << 20).to_string());
        assert_eq!(read("cpu/berth/c1/cpu.cfs_quota_us"), "150000");
        assert_eq!(read("cpu/berth/c1/cpu.shares"), "512");
        assert_eq!(read("pids/berth/c1/pids.max"), "20");
        assert_eq!(read("cpuset/berth/c1/cpuset.cpus"), "0-1", "inherited from the parent");
        // (A real devices.allow takes every write; the fixture keeps the last.)
        assert_eq!(read("devices/berth/c1/devices.deny"), "a *:* rwm");
        assert_eq!(read("devices/berth/c1/devices.allow"), "c 1:3 rwm");
        fs::write(
            root.path().join("memory/berth/c1/memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
        )
        .expect("write");
        assert!(oom_killed(root.path(), "c1"));
    }

    #[test]
    fn v2_limits_use_unified_names() {
        let root = tempfile::tempdir().expect("tmp");
        fs::write(root.path().join("cgroup.controllers"), "cpu memory pids cpuset\n").expect("write");
        let limits = Limits {
            memory: Some(1 << 30),
            memory_swap: Some(-1),
            cpu_quota: Some((50_000, 100_000)),
            cpu_shares: Some(1024),
            cpuset_cpus: None,
            pids: Some(7),
            devices: vec![],
            blkio_weight: None,
        };
        create(root.path(), "c2", &limits).expect("create");
        let read = |p: &str| fs::read_to_string(root.path().join("berth/c2").join(p)).unwrap_or_default();
        assert_eq!(read("memory.max"), (1 << 30).to_string());
        assert_eq!(read("memory.swap.max"), "max");
        assert_eq!(read("cpu.max"), "50000 100000");
        assert_eq!(read("cpu.weight"), "39");
        assert_eq!(read("pids.max"), "7");
        fs::write(root.path().join("berth/c2/memory.events"), "low 0\noom 1\noom_kill 0\n").expect("write");
        assert!(!oom_killed(root.path(), "c2"));
    }

    #[test]
    fn limits_from_spec() {
        let spec: oci_spec::runtime::Spec = serde_json::from_value(serde_json::json!({"ociVersion": "1.0.2",
            "linux": {"resources": {"memory": {"limit": 10}, "cpu": {"quota": 5, "period": 10}, "pids": {"limit": 3}}}}))
        .expect("spec");
        let l = Limits::from_spec(&spec);
        assert_eq!((l.memory, l.cpu_quota, l.pids), (Some(10), Some((5, 10)), Some(3)));
        let (_, rules) = crate::devices::resolve(&Default::default()).expect("rules");
        let spec = oci_spec::runtime::SpecBuilder::default()
            .linux(
                oci_spec::runtime::LinuxBuilder::default()
                    .resources(oci_spec::runtime::LinuxResourcesBuilder::default().devices(rules).build().expect("r"))
                    .build()
                    .expect("linux"),
            )
            .build()
            .expect("spec");
        let d: Vec<(bool, String)> =
            Limits::from_spec(&spec).devices.iter().map(|r| (r.allow(), r.to_string())).collect();
        assert_eq!(d[0], (false, "a *:* rwm".to_string()), "everything denied first");
        assert!(d.contains(&(true, "c 1:3 rwm".to_string())) && d.contains(&(true, "c 136:* rwm".to_string())));
        assert!(d.contains(&(true, "b *:* m".to_string())), "mknod of a block device, but no use");
        assert!(!d.iter().any(|(allow, r)| *allow && r.starts_with("b ") && r.ends_with("rwm")));
    }
}
