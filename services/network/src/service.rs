//! [`LocalNetwork`]: the network service over a [`NetworkStore`].

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use tracing::Instrument as _;

use async_trait::async_trait;
use berth_core::{Error, Result};
use berth_proto::types::v1::{Filter, KeyValue};

use crate::dns::{self, Dns};
use crate::ipam::{self, Subnet, Subnet6};
use crate::netlink;
use crate::store::{EndpointRecord, MIGRATIONS, NetworkStore, PortRecord, ResolverRecord, SqlNetworkStore};
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
    /// The nftables table of this daemon (empty: no rules, as in unit tests).
    table: String,
    /// Address allocation is check-then-insert; one at a time.
    alloc: tokio::sync::Mutex<()>,
    /// The embedded DNS of the containers on user-defined networks.
    dns: Arc<Dns>,
    /// Where network events go.
    events: Arc<berth_core::events::EventBus>,
    /// Ports published on IPv6 host addresses.
    proxies: crate::proxy::Proxies,
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

/// The name of a bridge network's device that Berth chose itself.
fn generated_bridge(n: &pb::Network) -> String {
    format!("br-{}", &n.id[..n.id.len().min(12)])
}

/// A bridge network's device: the name the client gave
/// (`com.docker.network.bridge.name`), else the one Berth chose from its ID.
/// Only a given name is in the network's `Options`, which dockerd echoes as sent.
fn bridge_of(n: &pb::Network) -> Option<String> {
    if n.driver != "bridge" {
        return None;
    }
    Some(option(n, BRIDGE_NAME).map(str::to_string).unwrap_or_else(|| generated_bridge(n)))
}

/// A network's IPv6 subnet and gateway, if it has IPv6.
fn ipv6_of(n: &pb::Network) -> Option<(Subnet6, Ipv6Addr)> {
    Some((n.subnet6.parse().ok()?, n.gateway6.parse().ok()?))
}

/// The network as clients see it: its `Options` as they were given (a name
/// Berth generated, which an older Berth stored there, is left out).
fn shown(mut n: pb::Network) -> pb::Network {
    let generated = generated_bridge(&n);
    n.options.retain(|kv| !(kv.key == BRIDGE_NAME && kv.value == generated));
    n
}

impl LocalNetwork {
    /// Opens the service's state under `dir` (`<data-root>/network`), creating the
    /// predefined networks on first use.
    pub async fn open(dir: &Path, state: &berth_core::db::State, config: NetworkConfig) -> Result<Self> {
        let pool = state.open("network", dir, &MIGRATIONS).await?;
        let mut svc = Self::with_store(Arc::new(SqlNetworkStore::new(pool)));
        // One table per daemon: `berth` for the default bridge, else named after it.
        svc.table = if config.bridge == "berth0" { "berth".into() } else { format!("berth_{}", config.bridge) };
        svc.predefine(&config).await?;
        // After a crash or a reboot: the rules again, exactly once.
        svc.sync_rules().await?;
        svc.refresh_dns().await?;
        svc.restore_resolvers().await?;
        Ok(svc)
    }

    /// A service over any store.
    pub fn with_store(store: Arc<dyn NetworkStore>) -> Self {
        Self {
            store,
            table: String::new(),
            alloc: tokio::sync::Mutex::new(()),
            dns: Arc::new(Dns::default()),
            events: Default::default(),
            proxies: Default::default(),
        }
    }

    /// Publishes on `bus` instead of a bus of its own (`berthd` shares one).
    pub fn with_events(mut self, bus: Arc<berth_core::events::EventBus>) -> Self {
        self.events = bus;
        self
    }

    /// The bus this service publishes on.
    pub fn events(&self) -> Arc<berth_core::events::EventBus> {
        self.events.clone()
    }

    /// A network event with dockerd's attributes (`name`, `type`, and the container).
    fn emit(&self, action: &str, id: &str, name: &str, container: Option<&str>) {
        let mut attributes = vec![("name", name.to_string()), ("type", "bridge".to_string())];
        if let Some(c) = container {
            attributes.push(("container", c.to_string()));
        }
        self.events.publish("network", action, id, attributes);
    }

    /// Rebuilds the embedded DNS's view of who is where from the store.
    async fn refresh_dns(&self) -> Result<()> {
        let (networks, endpoints) = (self.store.networks().await?, self.store.all_endpoints().await?);
        self.dns.set_table(dns::Table::build(&networks, &endpoints));
        Ok(())
    }

    /// Serves again the resolvers of containers that still run in the same
    /// namespace (after the service restarted); forgets the others.
    async fn restore_resolvers(&self) -> Result<()> {
        for r in self.store.resolvers().await? {
            let same = dns::netns_of(r.pid).is_ok_and(|(dev, ino)| format!("{dev}:{ino}") == r.netns);
            let upstreams = r.upstreams.iter().filter_map(|u| u.parse().ok()).collect();
            if same && self.dns.serve(&r.container_id, r.pid, upstreams).await.is_ok() {
                continue;
            }
            self.store.delete_resolver(&r.container_id).await?;
        }
        Ok(())
    }

    /// Starts the container's resolver (kept in the store for a restart). A
    /// resolver that cannot start is logged, not fatal: the container runs,
    /// without names.
    async fn start_resolver(&self, container_id: &str, pid: i64, dns_servers: &[String]) -> Result<()> {
        let upstreams = dns_servers.iter().filter_map(|u| u.parse().ok()).collect();
        match self.dns.serve(container_id, pid, upstreams).await {
            Ok((dev, ino)) => {
                let r = ResolverRecord {
                    container_id: container_id.to_string(),
                    pid,
                    netns: format!("{dev}:{ino}"),
                    upstreams: dns_servers.to_vec(),
                };
                self.store.put_resolver(&r).await
            }
            Err(e) => {
                tracing::warn!(container = %container_id, error = %e, "embedded DNS not started");
                Ok(())
            }
        }
    }

    /// Replaces this daemon's nftables table with the rules for its bridge networks.
    async fn sync_rules(&self) -> Result<()> {
        if self.table.is_empty() {
            return Ok(());
        }
        let nets: Vec<crate::nft::BridgeRules> = self
            .store
            .networks()
            .await?
            .iter()
            .filter(|n| n.driver == "bridge" && !n.subnet.is_empty())
            .filter_map(|n| {
                Some(crate::nft::BridgeRules {
                    bridge: bridge_of(n)?,
                    subnet: n.subnet.clone(),
                    subnet6: n.subnet6.clone(),
                    internal: n.internal,
                })
            })
            .collect();
        let networks = self.store.networks().await?;
        let ports: Vec<crate::nft::PortRule> = self
            .store
            .ports()
            .await?
            .into_iter()
            .filter_map(|p| {
                let n = networks.iter().find(|n| n.id == p.network_id)?;
                Some(crate::nft::PortRule {
                    proto: p.proto,
                    host_ip: p.host_ip,
                    host_port: p.host_port,
                    container_ip: p.container_ip,
                    container_port: p.container_port,
                    bridge: bridge_of(n)?,
                    subnet: n.subnet.clone(),
                })
            })
            .collect();
        crate::nft::apply(&self.table, &nets, &ports).await?;
        self.proxies.sync(&proxy_routes(&ports));
        Ok(())
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
        if !berth_network_api::valid_bridge_name(&config.bridge) {
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
        netlink::ensure_bridge(&config.bridge, gateway, subnet.prefix, None).await?;
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
        // dockerd's order: the full ID, then the name, then a unique ID prefix.
        if let Some(n) = all.iter().find(|n| n.id == reference).or_else(|| all.iter().find(|n| n.name == reference)) {
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

    /// Finds or hands out the container's address on `net` (the one asked
    /// for, if any) and its MAC (the one asked for, or one made from the address).
    async fn endpoint_for(
        &self,
        net: &pb::Network,
        subnet: &Subnet,
        container_id: &str,
        container_name: &str,
        aliases: &[String],
        (wanted, wanted6, mac): (Option<Ipv4Addr>, Option<Ipv6Addr>, Option<[u8; 6]>),
    ) -> Result<EndpointRecord> {
        let _guard = self.alloc.lock().await;
        let on_net = self.store.endpoints(&net.id).await?;
        if let Some(e) = on_net.iter().find(|e| e.container_id == container_id) {
            return Ok(e.clone());
        }
        let gateway: Ipv4Addr =
            net.gateway.parse().map_err(|_| Error::internal(format!("network {} has no gateway", net.name)))?;
        let used: HashSet<Ipv4Addr> = on_net.iter().filter_map(|e| e.ip.parse().ok()).collect();
        let ip = match wanted {
            Some(ip) if used.contains(&ip) => return Err(Error::conflict(format!("Address already in use: {ip}"))),
            Some(ip) => ip,
            None => {
                let pool = net.ip_range.parse::<Subnet>().unwrap_or(*subnet);
                ipam::allocate(&pool, gateway, &used)
                    .ok_or_else(|| Error::unavailable(format!("no available IPv4 addresses on network {}", net.name)))?
            }
        };
        let ip6 = match ipv6_of(net) {
            None => String::new(),
            Some((subnet6, gateway6)) => {
                let used: HashSet<Ipv6Addr> = on_net.iter().filter_map(|e| e.ip6.parse().ok()).collect();
                match wanted6 {
                    Some(ip) if used.contains(&ip) => {
                        return Err(Error::conflict(format!("Address already in use: {ip}")));
                    }
                    Some(ip) => ip.to_string(),
                    None => ipam::allocate6(&subnet6, gateway6, &used)
                        .ok_or_else(|| {
                            Error::unavailable(format!("no available IPv6 addresses on network {}", net.name))
                        })?
                        .to_string(),
                }
            }
        };
        let record = EndpointRecord {
            ip6,
            network_id: net.id.clone(),
            container_id: container_id.to_string(),
            endpoint_id: berth_core::id::random_id(),
            ip: ip.to_string(),
            mac: ipam::mac_text(&mac.unwrap_or_else(|| ipam::mac_for(ip))),
            host_veth: veth_name(&net.id, container_id),
            container_name: container_name.trim_start_matches('/').to_string(),
            aliases: aliases.to_vec(),
        };
        self.store.insert_endpoint(&record).await?;
        Ok(record)
    }
}

/// The TCP ports to proxy from IPv6 host addresses (see [`crate::proxy`]):
/// those published on one, and, where the host has IPv6, those published on
/// every address (dockerd listens on `::` too).
fn proxy_routes(ports: &[crate::nft::PortRule]) -> Vec<crate::proxy::Route> {
    let host_has_ipv6 = Path::new("/proc/net/if_inet6").exists();
    ports
        .iter()
        .filter(|p| p.proto == "tcp")
        .filter_map(|p| {
            let listen = match p.host_ip.as_str() {
                "" | "0.0.0.0" if host_has_ipv6 => Ipv6Addr::UNSPECIFIED,
                ip => ip.parse::<Ipv6Addr>().ok()?,
            };
            let target: Ipv4Addr = p.container_ip.parse().ok()?;
            Some((SocketAddr::from((listen, p.host_port)), SocketAddr::from((target, p.container_port))))
        })
        .collect()
}

/// Where random host ports come from (dockerd's default range).
const EPHEMERAL: std::ops::RangeInclusive<u16> = 49153..=60999;

/// Whether the host lets us take `ip:port` now (nobody listens there).
fn bindable(proto: &str, ip: IpAddr, port: u16) -> bool {
    match proto {
        "udp" => std::net::UdpSocket::bind((ip, port)).is_ok(),
        _ => std::net::TcpListener::bind((ip, port)).is_ok(),
    }
}

/// Whether two host addresses overlap (0.0.0.0 and `::` are every address:
/// a port published on 0.0.0.0 is also proxied from `::`).
fn same_host(a: &str, b: &str) -> bool {
    let every = |x: &str| x == "0.0.0.0" || x == "::";
    a == b || every(a) || every(b)
}

/// The host end of a container's veth on a network: unique per container and
/// network, at most 15 bytes.
fn veth_name(network_id: &str, container_id: &str) -> String {
    format!("veth{}{}", &container_id[..container_id.len().min(7)], &network_id[..network_id.len().min(4)])
}

fn endpoint_pb(net: &pb::Network, subnet: &Subnet, e: &EndpointRecord) -> pb::Endpoint {
    let prefix6 = net.subnet6.parse::<Subnet6>().map(|s| i32::from(s.prefix)).unwrap_or(0);
    pb::Endpoint {
        ipv6_address: e.ip6.clone(),
        ipv6_prefix_len: if e.ip6.is_empty() { 0 } else { prefix6 },
        ipv6_gateway: if e.ip6.is_empty() { String::new() } else { net.gateway6.clone() },
        network_id: net.id.clone(),
        network_name: net.name.clone(),
        endpoint_id: e.endpoint_id.clone(),
        ip_address: e.ip.clone(),
        prefix_len: i32::from(subnet.prefix),
        gateway: net.gateway.clone(),
        mac_address: e.mac.clone(),
        container_id: e.container_id.clone(),
        container_name: e.container_name.clone(),
        aliases: e.aliases.clone(),
        dns_names: if net.name == "bridge" { vec![] } else { dns::dns_names(e) },
        resolver: String::new(),
    }
}

/// dockerd's network name rule: a letter or digit, then letters, digits, `_.-`.
fn valid_network_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

const PREDEFINED: [&str; 3] = ["bridge", "host", "none"];

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
            .map(shown)
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
        let bridge_name = bridge_of(&net).unwrap_or_else(|| "berth0".to_string());
        let wanted: Option<Ipv4Addr> = match req.ip_address.as_str() {
            "" => None,
            a => {
                let ip: Ipv4Addr = a.parse().map_err(|_| Error::invalid(format!("invalid IPv4 address {a:?}")))?;
                if !subnet.contains(ip) || ip == gateway || ip == subnet.addr {
                    return Err(Error::invalid(format!(
                        "Invalid address {ip}: It does not belong to any of this network's subnets"
                    )));
                }
                Some(ip)
            }
        };
        let v6 = ipv6_of(&net);
        let wanted6: Option<Ipv6Addr> = match (req.ipv6_address.as_str(), v6) {
            ("", _) => None,
            (a, None) => {
                return Err(Error::invalid(format!(
                    "invalid IPv6 address {a}: network {} has no IPv6 (EnableIPv6)",
                    net.name
                )));
            }
            (a, Some((subnet6, gateway6))) => {
                let ip: Ipv6Addr = a.parse().map_err(|_| Error::invalid(format!("invalid IPv6 address {a:?}")))?;
                if !subnet6.contains(ip) || ip == gateway6 || ip == subnet6.addr {
                    return Err(Error::invalid(format!(
                        "Invalid address {ip}: It does not belong to any of this network's subnets"
                    )));
                }
                Some(ip)
            }
        };
        let mac = match req.mac_address.as_str() {
            "" => None,
            m => Some(ipam::parse_mac(m).ok_or_else(|| Error::invalid(format!("invalid MAC address: {m}")))?),
        };
        let aliases: Vec<String> = req.aliases.iter().filter(|a| !a.is_empty()).cloned().collect();
        let e = self
            .endpoint_for(&net, &subnet, &req.container_id, &req.container_name, &aliases, (wanted, wanted6, mac))
            .await?;
        let interface = if req.interface.is_empty() { "eth0".to_string() } else { req.interface.clone() };
        if interface.len() > 15 || interface.contains(['/', ' ']) {
            return Err(Error::invalid(format!("invalid interface name {interface:?}")));
        }
        let ip: Ipv4Addr = e.ip.parse().map_err(|_| Error::internal(format!("stored address {:?}", e.ip)))?;
        let plugged = async {
            let bridge =
                netlink::ensure_bridge(&bridge_name, gateway, subnet.prefix, v6.map(|(s, g)| (g, s.prefix))).await?;
            let plug = netlink::Plug {
                bridge,
                host_veth: &e.host_veth,
                interface: &interface,
                pid: req.pid,
                ip,
                prefix: subnet.prefix,
                gateway: (!net.internal && req.default_route).then_some(gateway),
                mac: ipam::parse_mac(&e.mac).unwrap_or_else(|| ipam::mac_for(ip)),
                ip6: match (e.ip6.parse::<Ipv6Addr>(), v6) {
                    (Ok(ip6), Some((subnet6, gateway6))) => {
                        Some((ip6, subnet6.prefix, (!net.internal && req.default_route).then_some(gateway6)))
                    }
                    _ => None,
                },
            };
            netlink::plug(&plug).instrument(tracing::info_span!("veth plug", network = %net.name)).await
        }
        .await;
        if let Err(err) = plugged {
            self.store.delete_endpoint(&net.id, &req.container_id).await?;
            return Err(err.context(format!("connect to network {}", net.name)));
        }
        self.refresh_dns().await?;
        if net.name != "bridge" {
            self.start_resolver(&req.container_id, req.pid, &req.dns_servers).await?;
        }
        tracing::info!(container = %req.container_id, network = %net.name, ip = %e.ip, "container connected");
        self.emit("connect", &net.id, &net.name, Some(&req.container_id));
        let mut endpoint = endpoint_pb(&net, &subnet, &e);
        if net.name != "bridge" {
            endpoint.resolver = dns::ADDRESS.to_string();
        }
        Ok(endpoint)
    }

    async fn create(&self, req: pb::CreateNetworkRequest) -> Result<pb::Network> {
        if req.name.is_empty() {
            return Err(Error::invalid("network name must not be empty"));
        }
        if !valid_network_name(&req.name) {
            return Err(Error::invalid(format!(
                "invalid network name \"{}\": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed",
                req.name
            )));
        }
        match req.driver.as_str() {
            "" | "bridge" => {}
            "host" | "null" => {
                return Err(Error::forbidden(format!("only one instance of \"{}\" network is allowed", req.driver)));
            }
            other => return Err(Error::not_found(format!("plugin \"{other}\" not found"))),
        }
        let _lock = host_lock().await?;
        let existing = self.store.networks().await?;
        if existing.iter().any(|n| n.name == req.name) {
            return Err(Error::conflict(format!("network with name {} already exists", req.name)));
        }
        let others: Vec<Subnet> = existing.iter().filter_map(|n| n.subnet.parse().ok()).collect();
        let subnet = if req.subnet.is_empty() {
            if !req.gateway.is_empty() || !req.ip_range.is_empty() {
                return Err(Error::invalid("a gateway or an IP range needs a subnet (--subnet)"));
            }
            let mut taken = netlink::host_subnets().await?;
            taken.extend(others.iter().copied());
            ipam::choose(&ipam::default_candidates(), &taken).ok_or_else(|| {
                Error::forbidden("could not find an available, non-overlapping IPv4 address pool among the defaults")
            })?
        } else {
            let s: Subnet = req.subnet.parse().map_err(|e: String| Error::invalid(e))?;
            if s.prefix > 30 {
                return Err(Error::invalid(format!("subnet {s} is too small for a network")));
            }
            if others.iter().any(|o| o.overlaps(&s)) {
                return Err(Error::forbidden("Pool overlaps with other one on this address space"));
            }
            s
        };
        let gateway = if req.gateway.is_empty() {
            subnet.first_host()
        } else {
            let g: Ipv4Addr =
                req.gateway.parse().map_err(|_| Error::invalid(format!("invalid gateway {:?}", req.gateway)))?;
            if !subnet.contains(g) || g == subnet.addr || g == subnet.nth((subnet.size() - 1) as u32) {
                return Err(Error::invalid(format!("no matching subnet for gateway {g}")));
            }
            g
        };
        if !req.ip_range.is_empty() {
            let r: Subnet = req.ip_range.parse().map_err(|e: String| Error::invalid(e))?;
            if !subnet.contains(r.addr) || r.prefix < subnet.prefix {
                return Err(Error::invalid(format!("no matching subnet for range {r}")));
            }
        }
        let mut n = record(&req.name, "bridge");
        let v6 = if req.enable_ipv6 {
            let subnet6 = match req.subnet6.as_str() {
                "" => Subnet6::unique_local(&n.id),
                s => s.parse::<Subnet6>().map_err(Error::invalid)?,
            };
            if subnet6.prefix > 124 {
                return Err(Error::invalid(format!("subnet {subnet6} is too small for a network")));
            }
            if existing.iter().filter_map(|o| o.subnet6.parse::<Subnet6>().ok()).any(|o| o.overlaps(&subnet6)) {
                return Err(Error::forbidden("Pool overlaps with other one on this address space"));
            }
            let gateway6 = match req.gateway6.as_str() {
                "" => subnet6.first_host(),
                g => {
                    let g: Ipv6Addr = g.parse().map_err(|_| Error::invalid(format!("invalid gateway {g:?}")))?;
                    if !subnet6.contains(g) || g == subnet6.addr {
                        return Err(Error::invalid(format!("no matching subnet for gateway {g}")));
                    }
                    g
                }
            };
            Some((subnet6, gateway6))
        } else if !req.subnet6.is_empty() {
            return Err(Error::invalid("an IPv6 subnet needs EnableIPv6 (--ipv6)"));
        } else {
            None
        };
        let options = req.options.clone();
        n.options = options.clone();
        let bridge = bridge_of(&n).unwrap_or_else(|| generated_bridge(&n));
        if !berth_network_api::valid_bridge_name(&bridge) {
            return Err(Error::invalid(format!(
                "invalid bridge name {bridge:?}: 1 to 15 letters, digits, '_', '-' or '.'"
            )));
        }
        if existing.iter().any(|e| bridge_of(e).as_deref() == Some(bridge.as_str())) {
            return Err(Error::conflict(format!("bridge {bridge} is used by another network")));
        }
        // An interface Berth did not make is not Berth's to take (network rm
        // would delete it).
        if std::path::Path::new("/sys/class/net").join(&bridge).exists() {
            return Err(Error::conflict(format!("bridge name {bridge} is taken by an existing interface")));
        }
        n.subnet = subnet.to_string();
        n.gateway = gateway.to_string();
        if let Some((subnet6, gateway6)) = v6 {
            n.subnet6 = subnet6.to_string();
            n.gateway6 = gateway6.to_string();
        }
        n.ip_range = req.ip_range.clone();
        n.internal = req.internal;
        n.labels = req.labels.clone();
        n.options = options;
        netlink::ensure_bridge(&bridge, gateway, subnet.prefix, v6.map(|(s, g)| (g, s.prefix))).await?;
        if let Err(e) = self.store.insert_network(&n).await {
            let _ = netlink::delete_link(&bridge).await;
            return Err(e);
        }
        tracing::info!(name = %n.name, subnet = %n.subnet, bridge = %bridge, "network created");
        self.emit("create", &n.id, &n.name, None);
        self.sync_rules().await?;
        Ok(n)
    }

    async fn inspect(&self, reference: &str) -> Result<pb::Network> {
        let mut n = self.find(reference).await?;
        if let Ok(subnet) = n.subnet.parse::<Subnet>() {
            n.endpoints = self.store.endpoints(&n.id).await?.iter().map(|e| endpoint_pb(&n, &subnet, e)).collect();
        }
        Ok(shown(n))
    }

    async fn remove(&self, reference: &str) -> Result<()> {
        let n = self.find(reference).await?;
        if PREDEFINED.contains(&n.name.as_str()) {
            return Err(Error::forbidden(format!("{} is a pre-defined network and cannot be removed", n.name)));
        }
        if !self.store.endpoints(&n.id).await?.is_empty() {
            return Err(Error::forbidden(format!(
                "error while removing network: network {} id {} has active endpoints",
                n.name, n.id
            )));
        }
        if let Some(bridge) = bridge_of(&n) {
            netlink::delete_link(&bridge).await?;
        }
        self.store.delete_network(&n.id).await?;
        tracing::info!(name = %n.name, "network removed");
        self.emit("destroy", &n.id, &n.name, None);
        self.sync_rules().await
    }

    async fn prune(&self, filters: Vec<Filter>) -> Result<Vec<String>> {
        let mut until = None;
        let (mut labels, mut not_labels) = (vec![], vec![]);
        for f in &filters {
            match f.key.as_str() {
                "label" => labels.extend(f.values.iter().cloned()),
                "label!" => not_labels.extend(f.values.iter().cloned()),
                "until" => {
                    let v = f.values.first().map(String::as_str).unwrap_or_default();
                    let t = berth_core::id::parse_until(v, time::OffsetDateTime::now_utc())?.unix_timestamp();
                    until = Some(t);
                }
                other => return Err(Error::invalid(format!("invalid filter '{other}'"))),
            }
        }
        let mut deleted = Vec::new();
        for n in self.store.networks().await? {
            let has = |l: &String| match l.split_once('=') {
                Some((k, v)) => n.labels.iter().any(|kv| kv.key == k && kv.value == v),
                None => n.labels.iter().any(|kv| &kv.key == l),
            };
            let created = berth_core::id::parse_rfc3339(&n.created).map(|t| t.unix_timestamp()).unwrap_or(0);
            if PREDEFINED.contains(&n.name.as_str())
                || until.is_some_and(|u| created >= u)
                || !labels.iter().all(has)
                || not_labels.iter().any(has)
            {
                continue;
            }
            match self.remove(&n.id).await {
                Ok(()) => deleted.push(n.name),
                Err(e) if e.kind() == berth_core::ErrorKind::Forbidden => {}
                Err(e) => return Err(e),
            }
        }
        Ok(deleted)
    }

    async fn publish(&self, req: pb::PublishPortsRequest) -> Result<Vec<pb::PortMapping>> {
        let net = self.find(&req.network).await?;
        let endpoint = self
            .store
            .endpoints(&net.id)
            .await?
            .into_iter()
            .find(|e| e.container_id == req.container_id)
            .ok_or_else(|| Error::invalid(format!("container is not connected to network {}", net.name)))?;
        let _guard = self.alloc.lock().await;
        let mut taken: Vec<(String, String, u16)> =
            self.store.ports().await?.into_iter().map(|p| (p.proto, p.host_ip, p.host_port)).collect();
        let mut records = Vec::new();
        let mut out = Vec::new();
        for m in req.ports {
            let proto = if m.proto.is_empty() { "tcp".to_string() } else { m.proto.to_ascii_lowercase() };
            if !matches!(proto.as_str(), "tcp" | "udp") {
                return Err(Error::invalid(format!("invalid proto '{}'", m.proto)));
            }
            let container_port = u16::try_from(m.container_port)
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| Error::invalid(format!("invalid container port {}", m.container_port)))?;
            let host_ip = if m.host_ip.is_empty() { "0.0.0.0".to_string() } else { m.host_ip.clone() };
            let ip: IpAddr =
                host_ip.parse().map_err(|_| Error::invalid(format!("invalid host address {host_ip:?}")))?;
            // Written as Go writes an IPv6 address (compressed, no brackets).
            let host_ip = ip.to_string();
            let clash = |port: u16, taken: &[(String, String, u16)]| {
                taken.iter().any(|(p, h, hp)| *p == proto && *hp == port && same_host(h, &host_ip))
            };
            let end = u16::try_from(m.host_port_end).map_err(|_| Error::invalid("invalid host port range"))?;
            let host_port = match u16::try_from(m.host_port).map_err(|_| Error::invalid("invalid host port"))? {
                p if end > p && p > 0 => {
                    (p..=end).find(|p| !clash(*p, &taken) && bindable(&proto, ip, *p)).ok_or_else(|| {
                        Error::conflict(format!(
                            "Bind for {host_ip}:{p}-{end} failed: every port in the range is allocated"
                        ))
                    })?
                }
                0 => EPHEMERAL
                    .clone()
                    .find(|p| !clash(*p, &taken) && bindable(&proto, ip, *p))
                    .ok_or_else(|| Error::unavailable("no free host port left in 49153-60999"))?,
                p if clash(p, &taken) => {
                    return Err(Error::conflict(format!("Bind for {host_ip}:{p} failed: port is already allocated")));
                }
                p if !bindable(&proto, ip, p) => {
                    return Err(Error::conflict(format!(
                        "driver failed programming external connectivity on endpoint {}: \
                         Error starting userland proxy: listen {proto}4 {host_ip}:{p}: bind: address already in use",
                        endpoint.container_name
                    )));
                }
                p => p,
            };
            taken.push((proto.clone(), host_ip.clone(), host_port));
            records.push(PortRecord {
                container_id: req.container_id.clone(),
                network_id: net.id.clone(),
                proto: proto.clone(),
                host_ip: host_ip.clone(),
                host_port,
                container_ip: endpoint.ip.clone(),
                container_port,
            });
            out.push(pb::PortMapping {
                proto,
                host_ip,
                host_port: u32::from(host_port),
                container_port: u32::from(container_port),
                host_port_end: 0,
            });
        }
        self.store.insert_ports(&records).await?;
        if let Err(e) = self.sync_rules().await {
            self.store.delete_ports(&req.container_id, Some(&net.id)).await?;
            return Err(e);
        }
        Ok(out)
    }

    async fn disconnect(&self, container_id: &str, network: &str) -> Result<()> {
        let target = if network.is_empty() { None } else { Some(self.find(network).await?.id) };
        let had_ports = self
            .store
            .ports()
            .await?
            .iter()
            .any(|p| p.container_id == container_id && target.as_ref().is_none_or(|t| *t == p.network_id));
        if had_ports {
            self.store.delete_ports(container_id, target.as_deref()).await?;
            self.sync_rules().await?;
        }
        let endpoints = self.store.container_endpoints(container_id).await?;
        // Network names for the events, read once.
        let names: HashMap<String, String> = if endpoints.is_empty() {
            HashMap::new()
        } else {
            self.store.networks().await?.into_iter().map(|n| (n.id, n.name)).collect()
        };
        for e in endpoints {
            if target.as_ref().is_some_and(|t| *t != e.network_id) {
                continue;
            }
            // Usually gone already: the kernel removes the pair with the container's namespace.
            netlink::delete_link(&e.host_veth).await?;
            self.store.delete_endpoint(&e.network_id, container_id).await?;
            let name = names.get(&e.network_id).map(String::as_str).unwrap_or_default();
            self.emit("disconnect", &e.network_id, name, Some(container_id));
        }
        self.refresh_dns().await?;
        if target.is_none() || !self.dns.wants(container_id) {
            self.dns.stop(container_id);
            self.store.delete_resolver(container_id).await?;
        }
        Ok(())
    }

    async fn rename(&self, container_id: &str, name: &str) -> Result<()> {
        self.store.rename_container(container_id, name.trim_start_matches('/')).await?;
        self.refresh_dns().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_like_dockerd() {
        assert!(valid_network_name("net-a_1.b"));
        assert!(!valid_network_name("-net") && !valid_network_name("a/b") && !valid_network_name(""));
        let v = veth_name(&"f".repeat(64), &"0123456789abcdef".repeat(4));
        assert_eq!(v, "veth0123456ffff");
        assert!(v.len() <= 15);
    }

    #[tokio::test]
    async fn predefined_networks_and_filters() {
        let dir = tempfile::tempdir().expect("tmp");
        let pool = berth_core::db::open_sqlite(&dir.path().join("n.db"), MIGRATIONS.sqlite).await.expect("db");
        let svc = LocalNetwork::with_store(Arc::new(SqlNetworkStore::new(pool)));
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
            container_name: "c".into(),
            ..Default::default()
        });
        assert_eq!(host.await.err().map(|e| e.kind()), Some(berth_core::ErrorKind::InvalidArgument));
    }
}
