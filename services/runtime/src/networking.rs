//! A container's networks: plugging them in at the start barrier, and
//! `docker network connect/disconnect` while it runs or while it is stopped.
//! The network service does the kernel work; the runtime keeps the container's
//! NetworkingConfig (what it should be on) and NetworkSettings (what it is on).

use berth_core::{Error, ErrorKind, Result};
use berth_models::container::{ContainerConfig, HostConfig, PortBinding};
use berth_models::network::{EndpointSettings, NetworkSettings};

use crate::pb;
use crate::record;
use crate::service::{LocalRuntime, status};

/// The ports to publish: `HostConfig.PortBindings` (`-p`), and with
/// `PublishAllPorts` (`-P`) every exposed port without a binding, on a free host
/// port. Keys are `port/proto`; a host port of 0 asks for a free one.
pub fn port_requests(
    config: &ContainerConfig,
    host_config: &HostConfig,
) -> Result<Vec<berth_network_api::pb::PortMapping>> {
    let parse_key = |key: &str| -> Result<(u32, String)> {
        let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
        let port: u32 = port
            .parse()
            .ok()
            .filter(|p| (1..=65535).contains(p))
            .ok_or_else(|| Error::invalid(format!("invalid port {key:?}")))?;
        Ok((port, proto.to_ascii_lowercase()))
    };
    let mut out = Vec::new();
    let bindings = host_config.port_bindings.clone().unwrap_or_default();
    for (key, list) in &bindings {
        let (container_port, proto) = parse_key(key)?;
        let list = list.clone().filter(|l| !l.is_empty()).unwrap_or_else(|| vec![PortBinding::default()]);
        for b in list {
            // `8080`, or a range `8000-8010` to take the first free port of.
            let hp = b.host_port.as_str();
            let port = |s: &str| -> Result<u32> {
                s.parse()
                    .ok()
                    .filter(|p| *p <= 65535)
                    .ok_or_else(|| Error::invalid(format!("invalid host port {hp:?}")))
            };
            let (host_port, host_port_end) = match hp.split_once('-') {
                _ if hp.is_empty() => (0, 0),
                Some((a, b)) => (port(a)?, port(b)?),
                None => (port(hp)?, 0),
            };
            if host_port_end != 0 && host_port_end < host_port {
                return Err(Error::invalid(format!("invalid host port range {hp:?}")));
            }
            out.push(berth_network_api::pb::PortMapping {
                proto: proto.clone(),
                host_ip: b.host_ip.clone(),
                host_port,
                container_port,
                host_port_end,
            });
        }
    }
    if host_config.publish_all_ports {
        for key in config.exposed_ports() {
            if bindings.contains_key(key) {
                continue;
            }
            let (container_port, proto) = parse_key(key)?;
            out.push(berth_network_api::pb::PortMapping {
                proto,
                host_ip: String::new(),
                host_port: 0,
                container_port,
                host_port_end: 0,
            });
        }
    }
    Ok(out)
}

/// What plugging a container in gave: its NetworkSettings, and the nameserver
/// the network service answers its names on (user-defined networks), if any.
#[derive(Debug, Clone, Default)]
pub struct Plugged {
    /// The container's NetworkSettings.
    pub settings: NetworkSettings,
    /// The embedded DNS the container resolves through, as the network service
    /// said when it connected the container.
    pub resolver: Option<String>,
}

impl LocalRuntime {
    /// Plugs a container that waits at its start barrier into its networks (its
    /// NetworkMode first, with the default route, then every other network of its
    /// NetworkingConfig). `none` and `host` need nothing plugged.
    pub(crate) async fn plug_network(&self, c: &pb::Container, host_config: &HostConfig, pid: i64) -> Result<Plugged> {
        let mut out = Plugged::default();
        let mode = host_config.network_mode.as_str();
        match (mode, &self.networks) {
            ("host" | "none", _) => {
                out.settings.networks.insert(mode.to_string(), EndpointSettings::default());
            }
            (m, Some(networks)) if !m.starts_with("container:") => {
                let primary = host_config.network_mode();
                let networking = record::networking(c)?;
                let endpoints = networking.endpoints_config;
                // The NetworkMode network, unless it was disconnected.
                let mut names = if networking.primary_disconnected { vec![] } else { vec![primary.to_string()] };
                names.extend(
                    endpoints.keys().filter(|k| *k != primary && !(primary == "bridge" && *k == "default")).cloned(),
                );
                out.settings.sandbox_key = format!("/proc/{pid}/ns/net");
                for name in names {
                    // The CLI names the default network "default" in EndpointsConfig.
                    let ep_cfg = endpoints
                        .get(&name)
                        .or_else(|| if name == "bridge" { endpoints.get("default") } else { None })
                        .cloned()
                        .unwrap_or_default();
                    let resolver = self.plug_one(c, pid, &name, &ep_cfg, &mut out.settings).await?;
                    out.resolver = out.resolver.or(resolver);
                }
                let config = record::config(c)?;
                let wanted = port_requests(&config, host_config)?;
                let mut ports: berth_models::container::PortMap =
                    config.exposed_ports().map(|k| (k.clone(), None)).collect();
                if !wanted.is_empty() {
                    let published = networks
                        .publish(berth_network_api::pb::PublishPortsRequest {
                            container_id: c.id.clone(),
                            network: primary.to_string(),
                            ports: wanted,
                        })
                        .await?;
                    for p in published {
                        let key = format!("{}/{}", p.container_port, p.proto);
                        ports
                            .entry(key)
                            .or_insert(None)
                            .get_or_insert_with(Vec::new)
                            .push(PortBinding { host_ip: p.host_ip, host_port: p.host_port.to_string() });
                    }
                }
                out.settings.ports = Some(ports);
            }
            _ => {}
        }
        Ok(out)
    }

    /// Plugs one network into a container's namespace and records its endpoint
    /// in `settings` (the first one, eth0, carries the default route). Returns
    /// the resolver the network service serves the container's names on.
    pub(crate) async fn plug_one(
        &self,
        c: &pb::Container,
        pid: i64,
        network: &str,
        ep_cfg: &EndpointSettings,
        settings: &mut NetworkSettings,
    ) -> Result<Option<String>> {
        let Some(networks) = &self.networks else { return Ok(None) };
        let used: Vec<&str> = settings.networks.values().map(|n| n.interface.as_str()).collect();
        let index = (0..).find(|i| !used.contains(&format!("eth{i}").as_str())).unwrap_or(0);
        let interface = format!("eth{index}");
        let e = networks
            .connect(berth_network_api::pb::ConnectContainerRequest {
                container_id: c.id.clone(),
                network: network.into(),
                pid,
                container_name: c.name.clone(),
                ip_address: ep_cfg.requested_ipv4().to_string(),
                ipv6_address: ep_cfg.requested_ipv6().to_string(),
                interface: interface.clone(),
                default_route: index == 0,
                aliases: ep_cfg.aliases().to_vec(),
                dns_servers: record::host_config(c)?.dns().to_vec(),
                // The endpoint's own (API 1.44+), or the container's for its first network.
                mac_address: if !ep_cfg.mac_address.is_empty() {
                    ep_cfg.mac_address.clone()
                } else if index == 0 {
                    record::config(c)?.mac_address
                } else {
                    String::new()
                },
            })
            .await?;
        let list = |v: &[String]| (!v.is_empty()).then(|| v.to_vec());
        let endpoint = EndpointSettings {
            ipam_config: ep_cfg.ipam_config.clone(),
            aliases: list(&e.aliases),
            network_id: e.network_id.clone(),
            endpoint_id: e.endpoint_id.clone(),
            gateway: e.gateway.clone(),
            ip_address: e.ip_address.clone(),
            ip_prefix_len: i64::from(e.prefix_len),
            ipv6_gateway: e.ipv6_gateway.clone(),
            global_ipv6_address: e.ipv6_address.clone(),
            global_ipv6_prefix_len: i64::from(e.ipv6_prefix_len),
            mac_address: e.mac_address.clone(),
            interface,
            dns_names: list(&e.dns_names),
            ..Default::default()
        };
        if e.network_name == "bridge" {
            settings.endpoint_id.clone_from(&e.endpoint_id);
            settings.gateway.clone_from(&e.gateway);
            settings.ip_address.clone_from(&e.ip_address);
            settings.ip_prefix_len = i64::from(e.prefix_len);
            settings.mac_address.clone_from(&e.mac_address);
        }
        settings.networks.insert(e.network_name.clone(), endpoint);
        Ok((!e.resolver.is_empty()).then_some(e.resolver))
    }

    /// `docker network connect`: remembered in the container's NetworkingConfig,
    /// and plugged at once into a running container.
    pub(crate) async fn connect_network(&self, reference: &str, network: &str, ep_cfg: &[u8]) -> Result<()> {
        let networks = self.networks.clone().ok_or_else(|| Error::unavailable("no network service"))?;
        let c = self.resolve(reference).await?;
        let net = networks.inspect(network).await?;
        let host_config = record::host_config(&c)?;
        let mode = host_config.network_mode.as_str();
        if matches!(mode, "host" | "none") || mode.starts_with("container:") || net.driver != "bridge" {
            return Err(Error::forbidden(format!(
                "container sharing network namespace with another container or host cannot be connected to any other network ({mode})"
            )));
        }
        let ep_cfg: EndpointSettings =
            berth_models::parse_or_default("endpoint config", ep_cfg).map_err(Error::invalid)?;
        let primary = host_config.network_mode();
        let mut cfg = record::networking(&c)?;
        let on = |name: &str| (name == primary && !cfg.primary_disconnected) || cfg.endpoints_config.contains_key(name);
        if on(&net.name) || on(&net.id) {
            return Err(Error::forbidden(format!(
                "endpoint with name {} already exists in network {}",
                c.name, net.name
            )));
        }
        if status(&c).is_running() {
            let pid = c.state.as_ref().map(|s| s.pid).unwrap_or(0);
            let mut state = c.state.clone().unwrap_or_default();
            let mut settings = record::network_settings(&state);
            self.plug_one(&c, pid, &net.name, &ep_cfg, &mut settings).await?;
            state.network_settings = berth_models::to_vec(&settings);
            state.started_at = String::new();
            self.store.set_state(&c.id, &state).await?;
        }
        if net.name == primary || net.id == primary {
            cfg.primary_disconnected = false;
        }
        cfg.endpoints_config.insert(net.name.clone(), ep_cfg);
        self.store.set_networking(&c.id, &berth_models::to_vec(&cfg)).await
    }

    /// `docker network disconnect`: unplugged from a running container and
    /// forgotten from its NetworkingConfig.
    pub(crate) async fn disconnect_network(&self, reference: &str, network: &str, force: bool) -> Result<()> {
        let networks = self.networks.clone().ok_or_else(|| Error::unavailable("no network service"))?;
        let c = self.resolve(reference).await?;
        let net = match networks.inspect(network).await {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::NotFound && force => {
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let mut cfg = record::networking(&c)?;
        let mut state = c.state.clone().unwrap_or_default();
        let mut settings = record::network_settings(&state);
        let plugged = settings.networks.contains_key(&net.name);
        let host_config = record::host_config(&c)?;
        let primary = host_config.network_mode();
        let is_primary = (net.name == primary || net.id == primary) && !matches!(primary, "host" | "none");
        // A created or stopped container is on its NetworkMode network too.
        let configured = cfg.endpoints_config.contains_key(&net.name) || (is_primary && !cfg.primary_disconnected);
        if !plugged && !configured {
            return Err(Error::forbidden(format!("container {} is not connected to network {}", c.id, net.name)));
        }
        if status(&c).is_running() && plugged {
            networks.disconnect(&c.id, &net.id).await?;
            settings.networks.remove(&net.name);
            state.network_settings = berth_models::to_vec(&settings);
            state.started_at = String::new();
            self.store.set_state(&c.id, &state).await?;
        }
        cfg.endpoints_config.remove(&net.name);
        if is_primary {
            cfg.primary_disconnected = true;
        }
        self.store.set_networking(&c.id, &berth_models::to_vec(&cfg)).await
    }

    /// The networks a container that does not run is on, as dockerd shows
    /// them: each configured network with its aliases, IPAM settings and ID,
    /// no addresses.
    pub(crate) async fn configured_networks(&self, c: &pb::Container) -> Result<NetworkSettings> {
        let host_config = record::host_config(c)?;
        let mode = host_config.network_mode.as_str();
        let mut settings = NetworkSettings::default();
        if matches!(mode, "host" | "none") {
            settings.networks.insert(mode.to_string(), EndpointSettings::default());
            return Ok(settings);
        }
        if mode.starts_with("container:") {
            return Ok(settings);
        }
        let primary = host_config.network_mode().to_string();
        let cfg = record::networking(c)?;
        let mut names: Vec<String> = if cfg.primary_disconnected { vec![] } else { vec![primary.clone()] };
        names.extend(
            cfg.endpoints_config
                .keys()
                .filter(|k| **k != primary && !(primary == "bridge" && *k == "default"))
                .cloned(),
        );
        for name in names {
            let mut ep = cfg
                .endpoints_config
                .get(&name)
                .or_else(|| if name == "bridge" { cfg.endpoints_config.get("default") } else { None })
                .cloned()
                .unwrap_or_default();
            if let Some(networks) = &self.networks
                && let Ok(net) = networks.inspect(&name).await
            {
                ep.network_id = net.id;
            }
            settings.networks.insert(name, ep);
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn ports(config: &Value, hc: Value) -> Result<Vec<berth_network_api::pb::PortMapping>> {
        let config: ContainerConfig = serde_json::from_value(config.clone()).expect("config");
        let hc: HostConfig = serde_json::from_value(hc).expect("host config");
        port_requests(&config, &hc)
    }

    #[test]
    fn port_bindings_and_publish_all() {
        let config = json!({"ExposedPorts": {"80/tcp": {}, "53/udp": {}}});
        let hc = json!({"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}], "443": [{"HostPort": ""}]}});
        let mut got = ports(&config, hc).expect("ports");
        got.sort_by_key(|p| p.container_port);
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].container_port, got[0].host_port, got[0].proto.as_str()), (80, 8080, "tcp"));
        assert_eq!(got[0].host_ip, "127.0.0.1");
        assert_eq!((got[1].container_port, got[1].host_port), (443, 0));
        let all = ports(&config, json!({"PublishAllPorts": true})).expect("all");
        assert_eq!(all.len(), 2);
        assert!(all.iter().any(|p| p.container_port == 53 && p.proto == "udp" && p.host_port == 0));
        assert!(ports(&config, json!({"PortBindings": {"x/tcp": []}})).is_err());
        assert!(ports(&config, json!({"PortBindings": {"80/tcp": [{"HostPort": "99999"}]}})).is_err());
        let range = ports(&config, json!({"PortBindings": {"80/tcp": [{"HostPort": "8000-8010"}]}})).expect("range");
        assert_eq!((range[0].host_port, range[0].host_port_end), (8000, 8010));
        assert!(ports(&config, json!({"PortBindings": {"80/tcp": [{"HostPort": "9-8"}]}})).is_err());
        assert!(ports(&config, json!({"PortBindings": {"80/tcp": null}})).is_ok_and(|p| p.len() == 1));
    }
}
