//! A container's networks: `NetworkingConfig` (what it should be on, with each
//! endpoint's requested addresses and aliases) and `NetworkSettings` (what it is
//! on while it runs). Both share Docker's `EndpointSettings`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::container::PortMap;
use crate::{Extra, nullable};

/// `NetworkingConfig`: endpoint settings by network name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkingConfig {
    /// Network name -> endpoint settings.
    #[serde(rename = "EndpointsConfig", default, deserialize_with = "nullable")]
    pub endpoints_config: BTreeMap<String, EndpointSettings>,
    /// Berth's own record, never sent by clients: the network of the
    /// container's NetworkMode was disconnected (`docker network disconnect`),
    /// so a start leaves it out, as dockerd does.
    #[serde(rename = "BerthPrimaryDisconnected", default, skip_serializing_if = "std::ops::Not::not")]
    pub primary_disconnected: bool,
}

/// Addresses requested for an endpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointIpamConfig {
    /// A static IPv4 address (`--ip`).
    #[serde(rename = "IPv4Address", default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub ipv4_address: String,
    /// A static IPv6 address (`--ip6`).
    #[serde(rename = "IPv6Address", default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub ipv6_address: String,
    /// Fields Berth does not act on, kept as sent.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Docker's `EndpointSettings`: as requested (in `NetworkingConfig`) and as
/// plugged (in `NetworkSettings.Networks`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointSettings {
    /// Requested addresses.
    #[serde(rename = "IPAMConfig", default)]
    pub ipam_config: Option<EndpointIpamConfig>,
    /// Legacy links.
    #[serde(rename = "Links", default)]
    pub links: Option<Vec<String>>,
    /// Names the container answers to on this network.
    #[serde(rename = "Aliases", default)]
    pub aliases: Option<Vec<String>>,
    /// The endpoint's MAC address.
    #[serde(rename = "MacAddress", default, deserialize_with = "nullable")]
    pub mac_address: String,
    /// Driver options.
    #[serde(rename = "DriverOpts", default)]
    pub driver_opts: Option<BTreeMap<String, String>>,
    /// The network's ID.
    #[serde(rename = "NetworkID", default, deserialize_with = "nullable")]
    pub network_id: String,
    /// The endpoint's ID.
    #[serde(rename = "EndpointID", default, deserialize_with = "nullable")]
    pub endpoint_id: String,
    /// The network's gateway.
    #[serde(rename = "Gateway", default, deserialize_with = "nullable")]
    pub gateway: String,
    /// The container's IPv4 address.
    #[serde(rename = "IPAddress", default, deserialize_with = "nullable")]
    pub ip_address: String,
    /// Its prefix length.
    #[serde(rename = "IPPrefixLen", default, deserialize_with = "nullable")]
    pub ip_prefix_len: i64,
    /// The IPv6 gateway.
    #[serde(rename = "IPv6Gateway", default, deserialize_with = "nullable")]
    pub ipv6_gateway: String,
    /// The container's IPv6 address.
    #[serde(rename = "GlobalIPv6Address", default, deserialize_with = "nullable")]
    pub global_ipv6_address: String,
    /// Its prefix length.
    #[serde(rename = "GlobalIPv6PrefixLen", default, deserialize_with = "nullable")]
    pub global_ipv6_prefix_len: i64,
    /// The interface inside the container (Berth's; `eth0`, `eth1`...).
    #[serde(rename = "Interface", default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub interface: String,
    /// Every name the embedded DNS answers for this endpoint.
    #[serde(rename = "DNSNames", default)]
    pub dns_names: Option<Vec<String>>,
    /// Fields Berth does not act on, kept as sent.
    #[serde(flatten)]
    pub extra: Extra,
}

impl EndpointSettings {
    /// The requested static IPv4 address, if any.
    pub fn requested_ipv4(&self) -> &str {
        self.ipam_config.as_ref().map(|c| c.ipv4_address.as_str()).unwrap_or_default()
    }

    /// The static IPv6 address asked for (`--ip6`), or "".
    pub fn requested_ipv6(&self) -> &str {
        self.ipam_config.as_ref().map(|c| c.ipv6_address.as_str()).unwrap_or_default()
    }

    /// The aliases (none when not given).
    pub fn aliases(&self) -> &[String] {
        self.aliases.as_deref().unwrap_or_default()
    }
}

/// `NetworkSettings` of a running container (what `docker inspect` and `docker
/// port` show). The top-level address fields are the default bridge's, as in
/// dockerd.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkSettings {
    /// The network namespace (`/proc/PID/ns/net`).
    #[serde(rename = "SandboxKey", default, deserialize_with = "nullable")]
    pub sandbox_key: String,
    /// Exposed and published ports.
    #[serde(rename = "Ports", default)]
    pub ports: Option<PortMap>,
    /// The default bridge's endpoint ID.
    #[serde(rename = "EndpointID", default, deserialize_with = "nullable")]
    pub endpoint_id: String,
    /// The default bridge's gateway.
    #[serde(rename = "Gateway", default, deserialize_with = "nullable")]
    pub gateway: String,
    /// The container's address on the default bridge.
    #[serde(rename = "IPAddress", default, deserialize_with = "nullable")]
    pub ip_address: String,
    /// Its prefix length.
    #[serde(rename = "IPPrefixLen", default, deserialize_with = "nullable")]
    pub ip_prefix_len: i64,
    /// Its MAC address.
    #[serde(rename = "MacAddress", default, deserialize_with = "nullable")]
    pub mac_address: String,
    /// Endpoints by network name.
    #[serde(rename = "Networks", default, deserialize_with = "nullable")]
    pub networks: BTreeMap<String, EndpointSettings>,
    /// Fields Berth does not act on, kept as sent.
    #[serde(flatten)]
    pub extra: Extra,
}

impl NetworkSettings {
    /// The first address the container has on any network.
    pub fn first_ip(&self) -> Option<&str> {
        self.networks.values().map(|n| n.ip_address.as_str()).find(|i| !i.is_empty())
    }
}

/// One IPAM pool of a network create.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IpamPool {
    /// CIDR.
    #[serde(rename = "Subnet", default, deserialize_with = "nullable")]
    pub subnet: String,
    /// The range to allocate from (CIDR inside the subnet).
    #[serde(rename = "IPRange", default, deserialize_with = "nullable")]
    pub ip_range: String,
    /// The gateway address.
    #[serde(rename = "Gateway", default, deserialize_with = "nullable")]
    pub gateway: String,
    /// Fields Berth does not act on, kept as sent.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A network create's IPAM settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ipam {
    /// The pools.
    #[serde(rename = "Config", default, deserialize_with = "nullable")]
    pub config: Vec<IpamPool>,
    /// Fields Berth does not act on, kept as sent.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `POST /networks/create`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkCreateRequest {
    /// The network's name.
    #[serde(rename = "Name", default, deserialize_with = "nullable")]
    pub name: String,
    /// `bridge` (or empty).
    #[serde(rename = "Driver", default, deserialize_with = "nullable")]
    pub driver: String,
    /// No outside access.
    #[serde(rename = "Internal", default, deserialize_with = "nullable")]
    pub internal: bool,
    /// IPv6 too (with an IPv6 pool in `IPAM`, or one Berth makes).
    #[serde(rename = "EnableIPv6", default, deserialize_with = "nullable")]
    pub enable_ipv6: bool,
    /// Addresses.
    #[serde(rename = "IPAM", default, deserialize_with = "nullable")]
    pub ipam: Ipam,
    /// Labels.
    #[serde(rename = "Labels", default, deserialize_with = "nullable")]
    pub labels: BTreeMap<String, String>,
    /// Driver options, echoed back by inspect exactly as given.
    #[serde(rename = "Options", default, deserialize_with = "nullable")]
    pub options: BTreeMap<String, String>,
    /// Fields Berth does not act on, kept as sent.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `POST /networks/{id}/connect`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct NetworkConnectRequest {
    /// The container (name or ID).
    #[serde(rename = "Container", default, deserialize_with = "nullable")]
    pub container: String,
    /// Its endpoint on the network.
    #[serde(rename = "EndpointConfig", default)]
    pub endpoint_config: Option<EndpointSettings>,
}

/// `POST /networks/{id}/disconnect`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct NetworkDisconnectRequest {
    /// The container (name or ID).
    #[serde(rename = "Container", default, deserialize_with = "nullable")]
    pub container: String,
    /// Disconnect even if the network is gone.
    #[serde(rename = "Force", default, deserialize_with = "nullable")]
    pub force: bool,
}

/// `POST /volumes/create`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct VolumeCreateRequest {
    /// The name (empty: a generated one, anonymous).
    #[serde(rename = "Name", default, deserialize_with = "nullable")]
    pub name: String,
    /// `local` (or empty).
    #[serde(rename = "Driver", default, deserialize_with = "nullable")]
    pub driver: String,
    /// Driver options.
    #[serde(rename = "DriverOpts", default, deserialize_with = "nullable")]
    pub driver_opts: BTreeMap<String, String>,
    /// Labels.
    #[serde(rename = "Labels", default, deserialize_with = "nullable")]
    pub labels: BTreeMap<String, String>,
}
