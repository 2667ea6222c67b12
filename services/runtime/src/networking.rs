//! A container's networks: plugging them in at the start barrier, and
//! `docker network connect/disconnect` while it runs or while it is stopped.
//! The network service does the kernel work; the runtime keeps the container's
//! NetworkingConfig (what it should be on) and NetworkSettings (what it is on).

use berth_core::{Error, ErrorKind, Result};
use serde_json::{Value, json};

use crate::pb;
use crate::service::{LocalRuntime, status};

/// The ports to publish: `HostConfig.PortBindings` (`-p`), and with
/// `PublishAllPorts` (`-P`) every exposed port without a binding, on a free host
/// port. Keys are `port/proto`; a host port of 0 asks for a free one.
pub fn port_requests(config: &Value, host_config: &Value) -> Result<Vec<berth_network::pb::PortMapping>> {
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
    let bindings = host_config["PortBindings"].as_object().cloned().unwrap_or_default();
    for (key, list) in &bindings {
        let (container_port, proto) = parse_key(key)?;
        let list = list.as_array().cloned().unwrap_or_default();
        let list = if list.is_empty() { vec![json!({})] } else { list };
        for b in list {
            // `8080`, or a range `8000-8010` to take the first free port of.
            let hp = b["HostPort"].as_str().unwrap_or("");
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
            out.push(berth_network::pb::PortMapping {
                proto: proto.clone(),
                host_ip: b["HostIp"].as_str().unwrap_or("").to_string(),
                host_port,
                container_port,
                host_port_end,
            });
        }
    }
    if host_config["PublishAllPorts"].as_bool().unwrap_or(false) {
        for key in config["ExposedPorts"].as_object().map(|m| m.keys().cloned().collect::<Vec<_>>()).unwrap_or_default()
        {
            if bindings.contains_key(&key) {
                continue;
            }
            let (container_port, proto) = parse_key(&key)?;
            out.push(berth_network::pb::PortMapping {
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

/// Whether a container with these NetworkSettings is on a user-defined network
/// (anything but the default bridge, host and none), where the embedded DNS
/// answers names.
pub fn uses_embedded_dns(network_settings: &[u8]) -> bool {
    let settings: Value = serde_json::from_slice(network_settings).unwrap_or_default();
    settings["Networks"].as_object().is_some_and(|m| {
        m.iter().any(|(name, n)| name != "bridge" && !n["NetworkID"].as_str().unwrap_or("").is_empty())
    })
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

impl LocalRuntime {
    /// Plugs a container that waits at its start barrier into its networks (its
    /// NetworkMode first, with the default route, then every other network of its
    /// NetworkingConfig), and returns its NetworkSettings JSON. `none` and `host`
    /// need nothing plugged.
    pub(crate) async fn plug_network(&self, c: &pb::Container, host_config: &Value, pid: i64) -> Result<Vec<u8>> {
        let mode = host_config["NetworkMode"].as_str().unwrap_or("");
        let mut settings = json!({"Networks": {}});
        match (mode, &self.networks) {
            ("host" | "none", _) => {
                settings["Networks"][mode] = json!({"NetworkID": "", "EndpointID": "", "IPAddress": ""});
            }
            (m, Some(_)) if !m.starts_with("container:") => {
                let primary = if matches!(m, "" | "default") { "bridge" } else { m };
                let cfg: Value = serde_json::from_slice(&c.networking_config).unwrap_or_default();
                let endpoints = cfg["EndpointsConfig"].as_object().cloned().unwrap_or_default();
                let mut names = vec![primary.to_string()];
                names.extend(
                    endpoints.keys().filter(|k| *k != primary && !(primary == "bridge" && *k == "default")).cloned(),
                );
                settings["SandboxKey"] = json!(format!("/proc/{pid}/ns/net"));
                for name in names {
                    let ep_cfg = endpoints.get(&name).cloned().unwrap_or(Value::Null);
                    self.plug_one(c, pid, &name, &ep_cfg, &mut settings).await?;
                }
                let config: Value = serde_json::from_slice(&c.config).unwrap_or_default();
                let wanted = port_requests(&config, host_config)?;
                let mut ports = serde_json::Map::new();
                for key in config["ExposedPorts"]
                    .as_object()
                    .map(|m| m.keys().cloned().collect::<Vec<_>>())
                    .unwrap_or_default()
                {
                    ports.insert(key, Value::Null);
                }
                if !wanted.is_empty()
                    && let Some(networks) = &self.networks
                {
                    let published = networks
                        .publish(berth_network::pb::PublishPortsRequest {
                            container_id: c.id.clone(),
                            network: primary.to_string(),
                            ports: wanted,
                        })
                        .await?;
                    for p in published {
                        let key = format!("{}/{}", p.container_port, p.proto);
                        let entry = ports.entry(key).or_insert_with(|| json!([]));
                        if !entry.is_array() {
                            *entry = json!([]);
                        }
                        if let Some(list) = entry.as_array_mut() {
                            list.push(json!({"HostIp": p.host_ip, "HostPort": p.host_port.to_string()}));
                        }
                    }
                }
                settings["Ports"] = Value::Object(ports);
            }
            _ => {}
        }
        Ok(serde_json::to_vec(&settings).unwrap_or_default())
    }

    /// Plugs one network into a container's namespace and records its endpoint
    /// in `settings` (the first one, eth0, carries the default route).
    pub(crate) async fn plug_one(
        &self,
        c: &pb::Container,
        pid: i64,
        network: &str,
        ep_cfg: &Value,
        settings: &mut Value,
    ) -> Result<()> {
        let Some(networks) = &self.networks else { return Ok(()) };
        let used: Vec<String> = settings["Networks"]
            .as_object()
            .map(|m| m.values().filter_map(|v| v["Interface"].as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        let index = (0..).find(|i| !used.contains(&format!("eth{i}"))).unwrap_or(0);
        let interface = format!("eth{index}");
        let e = networks
            .connect(berth_network::pb::ConnectContainerRequest {
                container_id: c.id.clone(),
                network: network.into(),
                pid,
                container_name: c.name.clone(),
                ip_address: ep_cfg["IPAMConfig"]["IPv4Address"].as_str().unwrap_or("").to_string(),
                interface: interface.clone(),
                default_route: index == 0,
                aliases: strings(&ep_cfg["Aliases"]),
                dns_servers: strings(
                    &serde_json::from_slice::<Value>(&c.host_config).map(|h| h["Dns"].clone()).unwrap_or_default(),
                ),
            })
            .await?;
        let list = |v: &[String]| if v.is_empty() { Value::Null } else { json!(v) };
        let endpoint = json!({
            "IPAMConfig": ep_cfg.get("IPAMConfig").cloned().unwrap_or(Value::Null),
            "Links": null,
            "Aliases": list(&e.aliases),
            "DriverOpts": null,
            "NetworkID": e.network_id, "EndpointID": e.endpoint_id, "Gateway": e.gateway,
            "IPAddress": e.ip_address, "IPPrefixLen": e.prefix_len, "IPv6Gateway": "",
            "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "MacAddress": e.mac_address,
            "Interface": interface, "DNSNames": list(&e.dns_names),
        });
        if e.network_name == "bridge" {
            for (k, v) in [
                ("EndpointID", json!(e.endpoint_id)),
                ("Gateway", json!(e.gateway)),
                ("IPAddress", json!(e.ip_address)),
                ("IPPrefixLen", json!(e.prefix_len)),
                ("MacAddress", json!(e.mac_address)),
            ] {
                settings[k] = v;
            }
        }
        settings["Networks"][e.network_name.as_str()] = endpoint;
        Ok(())
    }

    /// `docker network connect`: remembered in the container's NetworkingConfig,
    /// and plugged at once into a running container.
    pub(crate) async fn connect_network(&self, reference: &str, network: &str, ep_cfg: &[u8]) -> Result<()> {
        let networks = self.networks.clone().ok_or_else(|| Error::unavailable("no network service"))?;
        let c = self.resolve(reference).await?;
        let net = networks.inspect(network).await?;
        let host_config: Value = serde_json::from_slice(&c.host_config).unwrap_or_default();
        let mode = host_config["NetworkMode"].as_str().unwrap_or("");
        if matches!(mode, "host" | "none") || mode.starts_with("container:") || net.driver != "bridge" {
            return Err(Error::forbidden(format!(
                "container sharing network namespace with another container or host cannot be connected to any other network ({mode})"
            )));
        }
        let ep_cfg: Value = if ep_cfg.is_empty() {
            json!({})
        } else {
            serde_json::from_slice(ep_cfg).map_err(|e| Error::invalid(format!("invalid endpoint config: {e}")))?
        };
        let primary = if matches!(mode, "" | "default") { "bridge" } else { mode };
        let mut cfg: Value = serde_json::from_slice(&c.networking_config).unwrap_or_else(|_| json!({}));
        let on = |name: &str| name == primary || cfg["EndpointsConfig"].get(name).is_some();
        if on(&net.name) || on(&net.id) {
            return Err(Error::forbidden(format!(
                "endpoint with name {} already exists in network {}",
                c.name, net.name
            )));
        }
        if status(&c) == "running" {
            let pid = c.state.as_ref().map(|s| s.pid).unwrap_or(0);
            let mut state = c.state.clone().unwrap_or_default();
            let mut settings: Value =
                serde_json::from_slice(&state.network_settings).unwrap_or_else(|_| json!({"Networks": {}}));
            self.plug_one(&c, pid, &net.name, &ep_cfg, &mut settings).await?;
            state.network_settings = serde_json::to_vec(&settings).unwrap_or_default();
            state.started_at = String::new();
            self.store.set_state(&c.id, &state).await?;
        }
        if !cfg["EndpointsConfig"].is_object() {
            cfg["EndpointsConfig"] = json!({});
        }
        cfg["EndpointsConfig"][net.name.as_str()] = ep_cfg;
        self.store.set_networking(&c.id, &serde_json::to_vec(&cfg).unwrap_or_default()).await
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
        let mut cfg: Value = serde_json::from_slice(&c.networking_config).unwrap_or_else(|_| json!({}));
        let mut state = c.state.clone().unwrap_or_default();
        let mut settings: Value =
            serde_json::from_slice(&state.network_settings).unwrap_or_else(|_| json!({"Networks": {}}));
        let plugged = settings["Networks"].get(&net.name).is_some();
        let configured = cfg["EndpointsConfig"].get(&net.name).is_some();
        if !plugged && !configured {
            return Err(Error::forbidden(format!("container {} is not connected to network {}", c.id, net.name)));
        }
        if status(&c) == "running" && plugged {
            networks.disconnect(&c.id, &net.id).await?;
            if let Some(m) = settings["Networks"].as_object_mut() {
                m.remove(&net.name);
            }
            state.network_settings = serde_json::to_vec(&settings).unwrap_or_default();
            state.started_at = String::new();
            self.store.set_state(&c.id, &state).await?;
        }
        if let Some(m) = cfg["EndpointsConfig"].as_object_mut() {
            m.remove(&net.name);
        }
        self.store.set_networking(&c.id, &serde_json::to_vec(&cfg).unwrap_or_default()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_networks_use_the_embedded_dns() {
        let on = |v: Value| uses_embedded_dns(&serde_json::to_vec(&v).expect("json"));
        assert!(!on(json!({"Networks": {"bridge": {"NetworkID": "abc"}}})));
        assert!(!on(json!({"Networks": {"host": {"NetworkID": ""}}})));
        assert!(on(json!({"Networks": {"bridge": {"NetworkID": "a"}, "net-a": {"NetworkID": "b"}}})));
        assert!(!on(json!({})));
    }

    #[test]
    fn port_bindings_and_publish_all() {
        let config = json!({"ExposedPorts": {"80/tcp": {}, "53/udp": {}}});
        let hc = json!({"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}], "443": [{"HostPort": ""}]}});
        let mut got = port_requests(&config, &hc).expect("ports");
        got.sort_by_key(|p| p.container_port);
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].container_port, got[0].host_port, got[0].proto.as_str()), (80, 8080, "tcp"));
        assert_eq!(got[0].host_ip, "127.0.0.1");
        assert_eq!((got[1].container_port, got[1].host_port), (443, 0));
        let all = port_requests(&config, &json!({"PublishAllPorts": true})).expect("all");
        assert_eq!(all.len(), 2);
        assert!(all.iter().any(|p| p.container_port == 53 && p.proto == "udp" && p.host_port == 0));
        assert!(port_requests(&config, &json!({"PortBindings": {"x/tcp": []}})).is_err());
        assert!(port_requests(&config, &json!({"PortBindings": {"80/tcp": [{"HostPort": "99999"}]}})).is_err());
        let range =
            port_requests(&config, &json!({"PortBindings": {"80/tcp": [{"HostPort": "8000-8010"}]}})).expect("range");
        assert_eq!((range[0].host_port, range[0].host_port_end), (8000, 8010));
        assert!(port_requests(&config, &json!({"PortBindings": {"80/tcp": [{"HostPort": "9-8"}]}})).is_err());
    }
}
