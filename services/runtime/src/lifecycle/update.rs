//! `docker update`: new resource limits and restart policy for a container,
//! checked as dockerd checks them, written into a running container's cgroups
//! at once, and stored so the next start has them too.

use berth_core::{Error, Result};
use berth_models::container::{ContainerStatus, HostConfig, UpdateConfig};

use crate::cgroups::Limits;
use crate::record;
use crate::service::{LocalRuntime, status};

/// `hc` with `u` applied, as dockerd applies an update (zero fields keep the
/// old value).
pub(crate) fn apply(mut hc: HostConfig, u: &UpdateConfig) -> Result<HostConfig> {
    if let Some(rp) = u.restart_policy.as_ref().filter(|rp| !rp.name.is_empty()) {
        if hc.auto_remove && rp.is_set() {
            return Err(Error::invalid(
                "Restart policy cannot be updated because AutoRemove is enabled for the container",
            ));
        }
        rp.validate().map_err(Error::invalid)?;
        hc.restart_policy = rp.clone();
    }
    if u.memory != 0 {
        if u.memory_swap == 0 && hc.memory_swap > 0 && u.memory > hc.memory_swap {
            return Err(Error::invalid(
                "Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time",
            ));
        }
        hc.memory = u.memory;
    }
    if u.memory_swap != 0 {
        hc.memory_swap = u.memory_swap;
    }
    if u.memory_reservation != 0 {
        hc.memory_reservation = u.memory_reservation;
    }
    if u.nano_cpus != 0 {
        if hc.cpu_quota > 0 {
            return Err(Error::invalid(
                "Conflicting options: Nano CPUs cannot be updated as CPU Quota has already been set",
            ));
        }
        hc.nano_cpus = u.nano_cpus;
    }
    if u.cpu_quota != 0 || u.cpu_period != 0 {
        if hc.nano_cpus > 0 {
            return Err(Error::invalid(
                "Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set",
            ));
        }
        if u.cpu_quota != 0 {
            hc.cpu_quota = u.cpu_quota;
        }
        if u.cpu_period != 0 {
            hc.cpu_period = u.cpu_period;
        }
    }
    if u.cpu_shares != 0 {
        hc.cpu_shares = u.cpu_shares;
    }
    if !u.cpuset_cpus.is_empty() {
        hc.cpuset_cpus.clone_from(&u.cpuset_cpus);
    }
    if !u.cpuset_mems.is_empty() {
        hc.cpuset_mems.clone_from(&u.cpuset_mems);
    }
    if let Some(p) = u.pids_limit.filter(|p| *p != 0) {
        hc.pids_limit = Some(p);
    }
    if u.blkio_weight != 0 {
        hc.blkio_weight = u.blkio_weight;
    }
    crate::create::validate_host_config(&hc)?;
    Ok(hc)
}

/// The cgroup limits of `hc`, every one set (0: unlimited), for a live update.
pub(crate) fn limits_of(hc: &HostConfig) -> Limits {
    let period = if hc.cpu_period > 0 { hc.cpu_period as u64 } else { 100_000 };
    let quota = if hc.nano_cpus > 0 { hc.nano_cpus * 100_000 / 1_000_000_000 } else { hc.cpu_quota };
    let period = if hc.nano_cpus > 0 { 100_000 } else { period };
    Limits {
        memory: Some(hc.memory),
        // 0 means "not set": swap is left as it is (as runc does).
        memory_swap: (hc.memory_swap != 0).then_some(hc.memory_swap),
        cpu_quota: Some((quota, period)),
        cpu_shares: (hc.cpu_shares > 0).then_some(hc.cpu_shares as u64),
        cpuset_cpus: (!hc.cpuset_cpus.is_empty()).then(|| hc.cpuset_cpus.clone()),
        pids: Some(hc.pids_limit.unwrap_or(0)),
        devices: vec![],
        blkio_weight: (hc.blkio_weight > 0).then_some(hc.blkio_weight as u64),
    }
}

impl LocalRuntime {
    /// Applies an update: checked, written to the running container's
    /// cgroups, stored. Answers dockerd's warnings (none).
    pub(crate) async fn update_container(&self, reference: &str, body: &[u8]) -> Result<Vec<String>> {
        let c = self.resolve(reference).await?;
        let update: UpdateConfig = berth_models::parse("update config", body).map_err(Error::invalid)?;
        let hc = apply(record::host_config(&c)?, &update)?;
        if matches!(status(&c), ContainerStatus::Running | ContainerStatus::Paused) {
            let (root, id, limits) = (self.host.cgroup_root.clone(), c.id.clone(), limits_of(&hc));
            tokio::task::spawn_blocking(move || crate::cgroups::write_limits(&root, &id, &limits))
                .await
                .map_err(|e| Error::internal(e.to_string()))?
                .map_err(|e| Error::invalid(format!("Cannot update container {}: {}", c.id, e.message())))?;
        }
        self.store.set_host_config(&c.id, &berth_models::to_vec(&hc)).await?;
        self.emit(&c, "update", []);
        Ok(vec![])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hc(v: serde_json::Value) -> HostConfig {
        serde_json::from_value(v).expect("host config")
    }

    fn update(v: serde_json::Value) -> UpdateConfig {
        serde_json::from_value(v).expect("update config")
    }

    #[test]
    fn updates_change_only_what_they_name() {
        let old = hc(json!({"Memory": 64 << 20, "CpuShares": 512, "RestartPolicy": {"Name": "no"}}));
        let new =
            apply(old, &update(json!({"Memory": 128 << 20, "PidsLimit": 50, "RestartPolicy": {"Name": "always"}})))
                .expect("apply");
        assert_eq!((new.memory, new.cpu_shares, new.pids_limit), (128 << 20, 512, Some(50)));
        assert_eq!(new.restart_policy.name, "always");
        let same = apply(new.clone(), &update(json!({"RestartPolicy": {"Name": ""}}))).expect("apply");
        assert_eq!(same.restart_policy.name, "always", "an empty policy leaves it");
    }

    #[test]
    fn updates_are_refused_with_dockerds_words() {
        let err = |old: serde_json::Value, u: serde_json::Value| {
            apply(hc(old), &update(u)).expect_err("refused").message().to_string()
        };
        assert_eq!(
            err(json!({"Memory": 64 << 20, "MemorySwap": 128 << 20}), json!({"Memory": 256 << 20})),
            "Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time"
        );
        assert_eq!(
            err(json!({}), json!({"Memory": 64 << 20, "MemorySwap": 32 << 20})),
            "Minimum memoryswap limit should be larger than memory limit, see usage"
        );
        assert_eq!(err(json!({}), json!({"Memory": 1024})), "Minimum memory limit allowed is 6MB");
        assert_eq!(
            err(json!({"AutoRemove": true}), json!({"RestartPolicy": {"Name": "always"}})),
            "Restart policy cannot be updated because AutoRemove is enabled for the container"
        );
        assert!(err(json!({}), json!({"RestartPolicy": {"Name": "bogus"}})).contains("unknown policy 'bogus'"));
        assert_eq!(err(json!({}), json!({"BlkioWeight": 5})), "Range of blkio weight is from 10 to 1000");
    }

    #[test]
    fn limits_for_a_live_update_name_every_resource() {
        let l = limits_of(&hc(json!({"NanoCpus": 1_500_000_000_i64, "Memory": 64 << 20})));
        assert_eq!(l.cpu_quota, Some((150_000, 100_000)));
        assert_eq!((l.memory, l.pids), (Some(64 << 20), Some(0)), "unset means unlimited");
    }
}
