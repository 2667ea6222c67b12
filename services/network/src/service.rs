//! [`LocalNetwork`]: the network service over a [`NetworkStore`].

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use berth_core::{Error, Result};
use berth_proto::types::v1::{Filter, KeyValue};

use crate::ipam::{self, Subnet};
use crate::netlink;
use crate::store::{EndpointRecord, MIGRATOR, NetworkStore, SqliteNetworkStore};
use crate::{NetworkApi, pb};

/// The option that names a bridge network's device, as in dockerd.
pub const BRIDGE_NAME: &str = "com.docker.network.bridge.name";

/// Daemon-wide settings of the network service.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// The default bridge's device (`bridge`, `-b` in dockerd).
    pub bridge: String,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self { bridge: "berth0".into() }
    }
}

/// The network service.
pub struct LocalNetwork {
    store: Arc<dyn NetworkStore>,
    /// Address allocation is check-then-insert; one at a time.
    alloc: tokio::sync::Mutex<()>,
}

/// Serializes the choice of subnets between Berth daemons on one host (tests run
/// several): a file lock held while a default bridge is chosen and created.
async fn host_lock() -> Result<nix::fcntl::Flock<std::fs::File>> {
    tokio::task::spawn_blocking(|| {
        let dir = if Path::new("/run/lock").is_dir() { "/run/lock".into() } else { std::env::temp_dir() };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("berth-network.lock"))?;
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| std::io::Error::from(e))
    })
    .await
    .map_err(|e| Error::internal(e.to_string()))?
    .map_err(|e| Error::internal(format!("lock the host's networks: {e}")))
}

fn record(name: &str, driver: &str) -> pb::Network {
    pb::Network {
        id: berth_core::id::random_id(),
        name: name.into(),
        driver: driver.into(),
        scope: "local".into(),
        created: berth_core::id::now_rfc3339(),
        ..Default::default()
    }
}

fn option<'a>(n: &'a pb::Network, key: &str) -> Option<&'a str> {
    n.options.iter().find(|kv| kv.key == key).map(|kv| kv.value.as_str())
}

impl LocalNetwork {
    /// Opens the service's state under `dir` (`<data-root>/network`), creating the
    /// predefined networks on first use.
    pub async fn open(dir: &Path, config: NetworkConfig) -> Result<Self> {
        let pool = berth_core::db::open_sqlite(&dir.join("network.db"), &MIGRATOR).await?;
        let svc = Self::with_store(Arc::new(SqliteNetworkStore::new(pool)));
        svc.predefine(&config).await?;
        Ok(svc)
    }

    /// A service over any store.
    pub fn with_store(store: Arc<dyn NetworkStore>) -> Self {
        Self { store, alloc: tokio::sync::Mutex::new(()) }
    }

    async fn predefine(&self, config: &NetworkConfig) -> Result<()> {
        self.predefine_fixed().await?;
        self.predefine_bridge(config).await
    }

    /// `host` and `none`, which need nothing from the kernel.
    async fn predefine_fixed(&self) -> Result<()> {
        let existing = self.store.networks().await?;
        for (name, driver) in [("host", "host"), ("none", "null")] {
            if !existing.iter().any(|n| n.name == name) {
                self.store.insert_network(&record(name, driver)).await?;
            }
        }
        Ok(())
    }

    /// The default `bridge`: a subnet that clashes with nothing on the host,
    /// chosen once and kept.
    async fn predefine_bridge(&self, config: &NetworkConfig) -> Result<()> {
        if config.bridge.is_empty() || config.bridge.len() > 15 || config.bridge.contains(['/', ' ']) {
            return Err(Error::invalid(format!("invalid bridge name {:?}", config.bridge)));
        }
        let existing = self.store.networks().await?;
        if existing.iter().any(|n| n.name == "bridge") {
            return Ok(());
        }
        let _lock = host_lock().await?;
        let mut taken = netlink::host_subnets().await?;
        taken.extend(existing.iter().filter_map(|n| n.subnet.parse::<Subnet>().ok()));
        let subnet = ipam::choose(&ipam::default_candidates(), &taken).ok_or_else(|| {
            Error::unavailable("no free subnet for the default bridge: every default address pool overlaps the host's")
        })?;
        let gateway = subnet.first_host();
        // Create the device while holding the lock, so the next daemon sees its route.
        netlink::ensure_bridge(&config.bridge, gateway, subnet.prefix).await?;
        let mut bridge = record("bridge", "bridge");
        bridge.subnet = subnet.to_string();
        bridge.gateway = gateway.to_string();
        bridge.options = vec![
            KeyValue { key: "com.docker.network.bridge.default_bridge".into(), value: "true".into() },
            KeyValue { key: BRIDGE_NAME.into(), value: config.bridge.clone() },
        ];
        self.store.insert_network(&bridge).await?;
        tracing::info!(subnet = %subnet, bridge = %config.bridge, "default bridge network created");
        Ok(())
    }

    /// A network by name, full ID or unique ID prefix.
    async fn find(&self, reference: &str) -> Result<pb::Network> {
        let all = self.store.networks().await?;
        if let Some(n) = all.iter().find(|n| n.name == reference || n.id == reference) {
            return Ok(n.clone());
        }
        let by_prefix: Vec<&pb::Network> =
            all.iter().filter(|n| !reference.is_empty() && n.id.starts_with(reference)).collect();
        match by_prefix.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(Error::not_found(format!("network {reference} not found"))),
            _ => Err(Error::invalid(format!("network {reference} is ambiguous ({} matches found)", by_prefix.len()))),
        }
    }

    /// Finds or hands out the container's address on `net`.
    async fn endpoint_for(&self, net: &pb::Network, subnet: &Subnet, container_id: &str) -> Result<EndpointRecord> {
        let _guard = self.alloc.lock().await;
        let on_net = self.store.endpoints(&net.id).await?;
        if let Some(e) = on_net.iter().find(|e| e.container_id == container_id) {
            return Ok(e.clone());
        }
        let gateway: Ipv4Addr =
            net.gateway.parse().map_err(|_| Error::internal(format!("network {} has no gateway", net.name)))?;
        let used: HashSet<Ipv4Addr> = on_net.iter().filter_map(|e| e.ip.parse().ok()).collect();
        let ip = ipam::allocate(subnet, gateway, &used)
            .ok_or_else(|| Error::unavailable(format!("no available IPv4 addresses on network {}", net.name)))?;
        let record = EndpointRecord {
            network_id: net.id.clone(),
            container_id: container_id.to_string(),
            endpoint_id: berth_core::id::random_id(),
            ip: ip.to_string(),
            mac: ipam::mac_text(&ipam::mac_for(ip)),
            host_veth: format!("veth{}", &container_id[..container_id.len().min(11)]),
        };
        self.store.insert_endpoint(&record).await?;
        Ok(record)
    }
}

fn endpoint_pb(net: &pb::Network, subnet: &Subnet, e: &EndpointRecord) -> pb::Endpoint {
    pb::Endpoint {
        network_id: net.id.clone(),
        network_name: net.name.clone(),
        endpoint_id: e.endpoint_id.clone(),
        ip_address: e.ip.clone(),
        prefix_len: i32::from(subnet.prefix),
        gateway: net.gateway.clone(),
        mac_address: e.mac.clone(),
    }
}

#[async_trait]
impl NetworkApi for LocalNetwork {
    async fn list(&self, filters: Vec<Filter>) -> Result<Vec<pb::Network>> {
        const KEYS: [&str; 7] = ["driver", "id", "label", "name", "scope", "type", "dangling"];
        if let Some(f) = filters.iter().find(|f| !KEYS.contains(&f.key.as_str())) {
            return Err(Error::invalid(format!("invalid filter '{}'", f.key)));
        }
        let values =
            |key: &str| -> Vec<&String> { filters.iter().filter(|f| f.key == key).flat_map(|f| &f.values).collect() };
        let (names, ids, drivers) = (values("name"), values("id"), values("driver"));
        Ok(self
            .store
            .networks()
            .await?
            .into_iter()
            .filter(|n| names.is_empty() || names.iter().any(|w| n.name.contains(w.as_str())))
            .filter(|n| ids.is_empty() || ids.iter().any(|w| n.id.starts_with(w.as_str())))
            .filter(|n| drivers.is_empty() || drivers.iter().any(|w| n.driver == **w))
            .collect())
    }

    async fn connect(&self, req: pb::ConnectContainerRequest) -> Result<pb::Endpoint> {
        if req.container_id.len() < 12 || !req.container_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::invalid(format!("invalid container ID {:?}", req.container_id)));
        }
        let net = self.find(&req.network).await?;
        if net.driver != "bridge" {
            return Err(Error::invalid(format!(
                "container cannot be plugged into network {} (driver {})",
                net.name, net.driver
            )));
        }
        let subnet: Subnet = net.subnet.parse().map_err(Error::internal)?;
        let gateway: Ipv4Addr =
            net.gateway.parse().map_err(|_| Error::internal(format!("network {} has no gateway", net.name)))?;
        let bridge_name = option(&net, BRIDGE_NAME).unwrap_or("berth0").to_string();
        let e = self.endpoint_for(&net, &subnet, &req.container_id).await?;
        let ip: Ipv4Addr = e.ip.parse().map_err(|_| Error::internal(format!("stored address {:?}", e.ip)))?;
        let plugged = async {
            let bridge = netlink::ensure_bridge(&bridge_name, gateway, subnet.prefix).await?;
            let plug = netlink::Plug {
                bridge,
                host_veth: &e.host_veth,
                pid: req.pid,
                ip,
                prefix: subnet.prefix,
                gateway,
                mac: ipam::mac_for(ip),
            };
            netlink::plug(&plug).await
        }
        .await;
        if let Err(err) = plugged {
            self.store.delete_endpoint(&net.id, &req.container_id).await?;
            return Err(err.context(format!("connect to network {}", net.name)));
        }
        tracing::info!(container = %req.container_id, network = %net.name, ip = %e.ip, "container connected");
        Ok(endpoint_pb(&net, &subnet, &e))
    }

    async fn disconnect(&self, container_id: &str, network: &str) -> Result<()> {
        let target = if network.is_empty() { None } else { Some(self.find(network).await?.id) };
        for e in self.store.container_endpoints(container_id).await? {
            if target.as_ref().is_some_and(|t| *t != e.network_id) {
                continue;
            }
            // Usually gone already: the kernel removes the pair with the container's namespace.
            netlink::delete_link(&e.host_veth).await?;
            self.store.delete_endpoint(&e.network_id, container_id).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn predefined_networks_and_filters() {
        let dir = tempfile::tempdir().expect("tmp");
        let pool = berth_core::db::open_sqlite(&dir.path().join("n.db"), &MIGRATOR).await.expect("db");
        let svc = LocalNetwork::with_store(Arc::new(SqliteNetworkStore::new(pool)));
        // The bridge needs root and the kernel (the end-to-end tests cover it).
        svc.predefine_fixed().await.expect("predefine");
        assert!(svc.predefine_bridge(&NetworkConfig { bridge: "a/b".into() }).await.is_err());
        let names: Vec<String> = svc.list(vec![]).await.expect("list").into_iter().map(|n| n.name).collect();
        assert!(names.contains(&"host".to_string()) && names.contains(&"none".to_string()), "{names:?}");
        let by_driver = vec![Filter { key: "driver".into(), values: vec!["null".into()] }];
        let none: Vec<String> = svc.list(by_driver).await.expect("list").into_iter().map(|n| n.name).collect();
        assert_eq!(none, vec!["none".to_string()]);
        let bad = vec![Filter { key: "colour".into(), values: vec![] }];
        assert_eq!(svc.list(bad).await.err().map(|e| e.kind()), Some(berth_core::ErrorKind::InvalidArgument));
        let host = svc.connect(pb::ConnectContainerRequest {
            container_id: "0123456789abcdef".into(),
            network: "host".into(),
            pid: 1,
        });
        assert_eq!(host.await.err().map(|e| e.kind()), Some(berth_core::ErrorKind::InvalidArgument));
    }
}
