//! Docker's container stats document (`GET /containers/{id}/stats`), with the
//! field names of the Engine API (snake_case, as dockerd writes them).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One sample of a container's resource use.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// `/name`.
    #[serde(default)]
    pub name: String,
    /// The container's ID.
    #[serde(default)]
    pub id: String,
    /// When the sample was read (RFC 3339); the zero time for a stopped container.
    #[serde(default = "zero_time")]
    pub read: String,
    /// When the previous sample was read.
    #[serde(default = "zero_time")]
    pub preread: String,
    /// Processes and their limit.
    #[serde(default)]
    pub pids_stats: PidsStats,
    /// Block I/O.
    #[serde(default)]
    pub blkio_stats: BlkioStats,
    /// Windows only; always 0.
    #[serde(default)]
    pub num_procs: u32,
    /// Windows only; empty.
    #[serde(default)]
    pub storage_stats: BTreeMap<String, u64>,
    /// CPU use now.
    #[serde(default)]
    pub cpu_stats: CpuStats,
    /// CPU use at the previous sample (the CLI's CPU % is the difference).
    #[serde(default)]
    pub precpu_stats: CpuStats,
    /// Memory use.
    #[serde(default)]
    pub memory_stats: MemoryStats,
    /// Per interface of the container's network namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networks: Option<BTreeMap<String, NetworkStats>>,
}

fn zero_time() -> String {
    "0001-01-01T00:00:00Z".into()
}

impl Stats {
    /// A sample with nothing read yet: what dockerd answers for a container
    /// that is not running (zero times, zero counters).
    pub fn empty(name: String, id: String) -> Self {
        Stats { name, id, read: zero_time(), preread: zero_time(), ..Default::default() }
    }

    /// Whether this is such an empty sample.
    pub fn is_empty(&self) -> bool {
        self.read == zero_time()
    }
}

/// `pids_stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PidsStats {
    /// Processes (and threads) in the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<u64>,
    /// The pids limit, when one is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

/// One block I/O counter: device, operation (`read`, `write`), value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BlkioEntry {
    /// Device major number.
    pub major: u64,
    /// Device minor number.
    pub minor: u64,
    /// `read`, `write` (v2), or `Read`, `Write`, `Sync`, ... (v1).
    pub op: String,
    /// Bytes or operations.
    pub value: u64,
}

/// `blkio_stats`: dockerd fills the first two; the rest stay null.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BlkioStats {
    /// Bytes read and written.
    pub io_service_bytes_recursive: Option<Vec<BlkioEntry>>,
    /// Operations.
    pub io_serviced_recursive: Option<Vec<BlkioEntry>>,
    /// v1 only, unused.
    pub io_queue_recursive: Option<Vec<BlkioEntry>>,
    /// v1 only, unused.
    pub io_service_time_recursive: Option<Vec<BlkioEntry>>,
    /// v1 only, unused.
    pub io_wait_time_recursive: Option<Vec<BlkioEntry>>,
    /// v1 only, unused.
    pub io_merged_recursive: Option<Vec<BlkioEntry>>,
    /// v1 only, unused.
    pub io_time_recursive: Option<Vec<BlkioEntry>>,
    /// v1 only, unused.
    pub sectors_recursive: Option<Vec<BlkioEntry>>,
}

/// `cpu_stats` and `precpu_stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuStats {
    /// The container's CPU time.
    #[serde(default)]
    pub cpu_usage: CpuUsage,
    /// The host's CPU time, in nanoseconds (from /proc/stat).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_cpu_usage: Option<u64>,
    /// CPUs online on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online_cpus: Option<u32>,
    /// CFS throttling.
    #[serde(default)]
    pub throttling_data: ThrottlingData,
}

/// `cpu_usage`, in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuUsage {
    /// Everything.
    #[serde(default)]
    pub total_usage: u64,
    /// Per CPU (cgroup v1 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percpu_usage: Option<Vec<u64>>,
    /// In the kernel.
    #[serde(default)]
    pub usage_in_kernelmode: u64,
    /// In user space.
    #[serde(default)]
    pub usage_in_usermode: u64,
}

/// `throttling_data`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ThrottlingData {
    /// CFS periods that passed.
    #[serde(default)]
    pub periods: u64,
    /// Periods in which the container was throttled.
    #[serde(default)]
    pub throttled_periods: u64,
    /// Nanoseconds throttled.
    #[serde(default)]
    pub throttled_time: u64,
}

/// `memory_stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MemoryStats {
    /// Bytes in use (page cache included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<u64>,
    /// The most ever used (cgroup v1 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_usage: Option<u64>,
    /// `memory.stat`, as the kernel names its counters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<BTreeMap<String, u64>>,
    /// The limit: the container's, or the host's memory when it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// Times the limit was hit (cgroup v1 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failcnt: Option<u64>,
}

/// One interface's counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkStats {
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Received packets dropped.
    pub rx_dropped: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Send errors.
    pub tx_errors: u64,
    /// Sent packets dropped.
    pub tx_dropped: u64,
}
