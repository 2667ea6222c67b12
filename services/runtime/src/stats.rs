//! A sample of a container's resource use, as dockerd reports it in
//! `GET /containers/{id}/stats`: read from its cgroups (v1 controllers or the
//! unified hierarchy), the host's `/proc/stat`, and the interfaces of its
//! network namespace (`/proc/PID/net/dev`). The gateway pairs samples a second
//! apart, so the CLI can compute CPU % from `cpu_stats` and `precpu_stats`.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use berth_models::stats::{
    BlkioEntry, CpuStats, CpuUsage, MemoryStats, NetworkStats, PidsStats, Stats, ThrottlingData,
};

use crate::cgroups::{Version, detect};

fn read(dir: &Path, file: &str) -> Option<String> {
    fs::read_to_string(dir.join(file)).ok()
}

fn number(dir: &Path, file: &str) -> Option<u64> {
    read(dir, file)?.trim().parse().ok()
}

/// `key value` lines (memory.stat, cpu.stat, cpuacct.stat) as a map.
fn flat_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// The host's CPU time in nanoseconds and its online CPUs, from /proc/stat
/// (user to softirq, as dockerd counts it).
fn system_cpu(proc_stat: &str, ticks_per_second: u64) -> (u64, u32) {
    let mut total = 0;
    let mut cpus = 0;
    for line in proc_stat.lines() {
        if let Some(rest) = line.strip_prefix("cpu ") {
            let ticks: u64 = rest.split_whitespace().take(7).filter_map(|v| v.parse::<u64>().ok()).sum();
            total = ticks.saturating_mul(1_000_000_000 / ticks_per_second.max(1));
        } else if line.starts_with("cpu") {
            cpus += 1;
        }
    }
    (total, cpus)
}

/// v1's `blkio.throttle.*_recursive`: `MAJ:MIN Op value` lines (the closing
/// `Total value` is left out).
fn blkio_v1(text: &str) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let [dev, op, value] = f.as_slice() else { return None };
            let (major, minor) = dev.split_once(':')?;
            Some(BlkioEntry {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                op: op.to_string(),
                value: value.parse().ok()?,
            })
        })
        .collect()
}

/// v2's `io.stat`: `MAJ:MIN rbytes=.. wbytes=.. rios=.. wios=..` as bytes and
/// operations, read and write.
fn io_v2(text: &str) -> (Vec<BlkioEntry>, Vec<BlkioEntry>) {
    let (mut bytes, mut ios) = (Vec::new(), Vec::new());
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some((major, minor)) = fields.next().and_then(|d| d.split_once(':')) else { continue };
        let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) else { continue };
        for kv in fields {
            let Some((k, v)) = kv.split_once('=') else { continue };
            let Ok(value) = v.parse() else { continue };
            let (list, op) = match k {
                "rbytes" => (&mut bytes, "read"),
                "wbytes" => (&mut bytes, "write"),
                "rios" => (&mut ios, "read"),
                "wios" => (&mut ios, "write"),
                _ => continue,
            };
            list.push(BlkioEntry { major, minor, op: op.into(), value });
        }
    }
    (bytes, ios)
}

/// `/proc/PID/net/dev` without the loopback interface.
fn net_dev(text: &str) -> BTreeMap<String, NetworkStats> {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let name = name.trim();
            let v: Vec<u64> = rest.split_whitespace().filter_map(|n| n.parse().ok()).collect();
            if name == "lo" || v.len() < 12 {
                return None;
            }
            Some((
                name.to_string(),
                NetworkStats {
                    rx_bytes: v[0],
                    rx_packets: v[1],
                    rx_errors: v[2],
                    rx_dropped: v[3],
                    tx_bytes: v[8],
                    tx_packets: v[9],
                    tx_errors: v[10],
                    tx_dropped: v[11],
                },
            ))
        })
        .collect()
}

/// The host's memory in bytes (a container without a limit shows it as its limit).
fn host_memory() -> Option<u64> {
    let info = fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 =
        info.lines().find_map(|l| l.strip_prefix("MemTotal:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

/// One sample of container `id` (its init is `pid`); `networks` says whether
/// the container has a network namespace of its own to report.
pub fn sample(root: &Path, id: &str, pid: i64, networks: bool) -> Stats {
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100) as u64;
    let (system, cpus) = system_cpu(&fs::read_to_string("/proc/stat").unwrap_or_default(), ticks);
    let mut cpu = CpuStats { system_cpu_usage: Some(system), online_cpus: Some(cpus), ..Default::default() };
    let memory;
    let mut stats = Stats { read: berth_core::id::now_rfc3339(), ..Stats::empty(String::new(), String::new()) };
    let limit_or_host = |limit: Option<u64>| match (limit, host_memory()) {
        (Some(l), Some(h)) => Some(l.min(h)),
        (l, h) => l.or(h),
    };
    match detect(root) {
        Version::V1 => {
            let dir = |c: &str| root.join(c).join("berth").join(id);
            let acct = dir("cpuacct");
            let times = read(&acct, "cpuacct.stat").map(|t| flat_keyed(&t)).unwrap_or_default();
            let ns = |k: &str| times.get(k).copied().unwrap_or(0).saturating_mul(1_000_000_000 / ticks.max(1));
            cpu.cpu_usage = CpuUsage {
                total_usage: number(&acct, "cpuacct.usage").unwrap_or(0),
                percpu_usage: read(&acct, "cpuacct.usage_percpu")
                    .map(|t| t.split_whitespace().filter_map(|v| v.parse().ok()).collect()),
                usage_in_kernelmode: ns("system"),
                usage_in_usermode: ns("user"),
            };
            let throttling = read(&dir("cpu"), "cpu.stat").map(|t| flat_keyed(&t)).unwrap_or_default();
            cpu.throttling_data = ThrottlingData {
                periods: throttling.get("nr_periods").copied().unwrap_or(0),
                throttled_periods: throttling.get("nr_throttled").copied().unwrap_or(0),
                throttled_time: throttling.get("throttled_time").copied().unwrap_or(0),
            };
            let mem = dir("memory");
            memory = MemoryStats {
                usage: number(&mem, "memory.usage_in_bytes"),
                max_usage: number(&mem, "memory.max_usage_in_bytes"),
                stats: read(&mem, "memory.stat").map(|t| flat_keyed(&t)),
                limit: limit_or_host(number(&mem, "memory.limit_in_bytes")),
                failcnt: number(&mem, "memory.failcnt"),
            };
            let blkio = dir("blkio");
            stats.blkio_stats.io_service_bytes_recursive = Some(
                read(&blkio, "blkio.throttle.io_service_bytes_recursive").map(|t| blkio_v1(&t)).unwrap_or_default(),
            );
            stats.blkio_stats.io_serviced_recursive =
                Some(read(&blkio, "blkio.throttle.io_serviced_recursive").map(|t| blkio_v1(&t)).unwrap_or_default());
            let pids = dir("pids");
            stats.pids_stats = PidsStats { current: number(&pids, "pids.current"), limit: number(&pids, "pids.max") };
        }
        Version::V2 => {
            let dir = root.join("berth").join(id);
            let c = read(&dir, "cpu.stat").map(|t| flat_keyed(&t)).unwrap_or_default();
            let us = |k: &str| c.get(k).copied().unwrap_or(0).saturating_mul(1000);
            cpu.cpu_usage = CpuUsage {
                total_usage: us("usage_usec"),
                percpu_usage: None,
                usage_in_kernelmode: us("system_usec"),
                usage_in_usermode: us("user_usec"),
            };
            cpu.throttling_data = ThrottlingData {
                periods: c.get("nr_periods").copied().unwrap_or(0),
                throttled_periods: c.get("nr_throttled").copied().unwrap_or(0),
                throttled_time: us("throttled_usec"),
            };
            memory = MemoryStats {
                usage: number(&dir, "memory.current"),
                max_usage: None,
                stats: read(&dir, "memory.stat").map(|t| flat_keyed(&t)),
                limit: limit_or_host(number(&dir, "memory.max")),
                failcnt: None,
            };
            let (bytes, ios) = read(&dir, "io.stat").map(|t| io_v2(&t)).unwrap_or_default();
            stats.blkio_stats.io_service_bytes_recursive = Some(bytes);
            stats.blkio_stats.io_serviced_recursive = Some(ios);
            stats.pids_stats = PidsStats { current: number(&dir, "pids.current"), limit: number(&dir, "pids.max") };
        }
    }
    stats.cpu_stats = cpu;
    stats.memory_stats = memory;
    if networks && pid > 0 {
        stats.networks = fs::read_to_string(format!("/proc/{pid}/net/dev")).ok().map(|t| net_dev(&t));
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_cpu_time_is_counted_as_dockerd_counts_it() {
        let text =
            "cpu  100 1 50 1000 10 2 3 4 0 0\ncpu0 50 0 25 500 5 1 1 2 0 0\ncpu1 50 1 25 500 5 1 2 2 0 0\nintr 1\n";
        let (total, cpus) = system_cpu(text, 100);
        assert_eq!(total, (100 + 1 + 50 + 1000 + 10 + 2 + 3) * 10_000_000, "user to softirq, in ns");
        assert_eq!(cpus, 2);
    }

    #[test]
    fn block_io_of_both_cgroup_versions() {
        let v1 = blkio_v1("8:0 Read 4096\n8:0 Write 512\n8:0 Sync 0\nTotal 4608\n");
        assert_eq!(v1.len(), 3);
        assert_eq!(v1[0], BlkioEntry { major: 8, minor: 0, op: "Read".into(), value: 4096 });
        let (bytes, ios) = io_v2("254:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\nbad\n");
        assert_eq!(
            bytes.iter().map(|e| (e.op.as_str(), e.value)).collect::<Vec<_>>(),
            [("read", 4096), ("write", 8192)]
        );
        assert_eq!(ios.iter().map(|e| e.value).sum::<u64>(), 3);
    }

    #[test]
    fn interfaces_of_the_namespace_without_loopback() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
                    face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
                    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n  \
                    eth0:    1500      10    1    2    0     0          0         0      900       9    3    4    0     0       0          0\n";
        let n = net_dev(text);
        assert_eq!(n.keys().collect::<Vec<_>>(), ["eth0"]);
        let e = &n["eth0"];
        assert_eq!((e.rx_bytes, e.rx_packets, e.rx_errors, e.rx_dropped), (1500, 10, 1, 2));
        assert_eq!((e.tx_bytes, e.tx_packets, e.tx_errors, e.tx_dropped), (900, 9, 3, 4));
    }

    #[test]
    fn keyed_files_read_as_maps() {
        let m = flat_keyed("cache 4096\nrss 8192\nbroken\n");
        assert_eq!(m.get("rss"), Some(&8192));
        assert_eq!(m.len(), 2);
    }
}
