//! Address management: IPv4 subnets, the choice of the default bridge's
//! subnet, IPv6 subnets of networks with IPv6, and handing out addresses.
//! Pure logic; the store keeps what was handed out.

use std::collections::HashSet;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IPv4 network in CIDR form, e.g. `172.18.0.0/16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subnet {
    /// The network address (host bits zero).
    pub addr: Ipv4Addr,
    /// The prefix length, 0 to 32.
    pub prefix: u8,
}

impl Subnet {
    /// The subnet of `addr/prefix`, host bits cleared.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Self {
        let prefix = prefix.min(32);
        Subnet { addr: Ipv4Addr::from(u32::from(addr) & Self::mask_of(prefix)), prefix }
    }

    fn mask_of(prefix: u8) -> u32 {
        if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) }
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & Self::mask_of(self.prefix) == u32::from(self.addr)
    }

    /// Whether the two share any address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        let p = self.prefix.min(other.prefix);
        let m = Self::mask_of(p);
        u32::from(self.addr) & m == u32::from(other.addr) & m
    }

    /// The `n`-th address (0 is the network address).
    pub fn nth(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr).wrapping_add(n))
    }

    /// The number of addresses.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// The first usable address, dockerd's default gateway.
    pub fn first_host(&self) -> Ipv4Addr {
        self.nth(1)
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s.split_once('/').ok_or_else(|| format!("invalid subnet {s:?}: want ADDRESS/PREFIX"))?;
        let addr: Ipv4Addr = a.parse().map_err(|_| format!("invalid subnet {s:?}: bad address"))?;
        let prefix: u8 =
            p.parse().ok().filter(|p| *p <= 32).ok_or_else(|| format!("invalid subnet {s:?}: bad prefix"))?;
        Ok(Subnet::new(addr, prefix))
    }
}

/// Where the default bridge's subnet comes from, in order: dockerd's default
/// pools without 172.17.0.0/16 (dockerd's own `docker0`, so both engines can run
/// on one host), then 192.168.0.0/16 in /20s.
pub fn default_candidates() -> Vec<Subnet> {
    let mut out: Vec<Subnet> = (18..=31).map(|b| Subnet::new(Ipv4Addr::new(172, b, 0, 0), 16)).collect();
    out.extend((0..16).map(|i| Subnet::new(Ipv4Addr::new(192, 168, i * 16, 0), 20)));
    out
}

/// The first candidate that overlaps nothing in `taken` (the host's routes and
/// addresses, and other networks).
pub fn choose(candidates: &[Subnet], taken: &[Subnet]) -> Option<Subnet> {
    candidates.iter().find(|c| !taken.iter().any(|t| t.overlaps(c))).copied()
}

/// The lowest free host address of `subnet`: not the network or broadcast
/// address, not the gateway, not in `used`.
pub fn allocate(subnet: &Subnet, gateway: Ipv4Addr, used: &HashSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    let last = subnet.size().saturating_sub(1).min(u64::from(u32::MAX)) as u32;
    (1..last).map(|n| subnet.nth(n)).find(|ip| *ip != gateway && !used.contains(ip))
}

/// An IPv6 network in CIDR form, e.g. `fd12:3456:789a::/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subnet6 {
    /// The network address (host bits zero).
    pub addr: Ipv6Addr,
    /// The prefix length, 0 to 128.
    pub prefix: u8,
}

impl Subnet6 {
    /// The subnet of `addr/prefix`, host bits cleared.
    pub fn new(addr: Ipv6Addr, prefix: u8) -> Self {
        let prefix = prefix.min(128);
        Subnet6 { addr: Ipv6Addr::from(u128::from(addr) & Self::mask_of(prefix)), prefix }
    }

    fn mask_of(prefix: u8) -> u128 {
        if prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(prefix)) }
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: Ipv6Addr) -> bool {
        u128::from(ip) & Self::mask_of(self.prefix) == u128::from(self.addr)
    }

    /// Whether the two share any address.
    pub fn overlaps(&self, other: &Subnet6) -> bool {
        let m = Self::mask_of(self.prefix.min(other.prefix));
        u128::from(self.addr) & m == u128::from(other.addr) & m
    }

    /// The `n`-th address (0 is the subnet-router anycast address).
    pub fn nth(&self, n: u128) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.addr).wrapping_add(n))
    }

    /// The first usable address, dockerd's default gateway.
    pub fn first_host(&self) -> Ipv6Addr {
        self.nth(1)
    }

    /// A unique local /64 (`fd00::/8`, RFC 4193) made from a network's ID:
    /// the 40-bit global ID from its first hex digits, subnet 0.
    pub fn unique_local(id: &str) -> Subnet6 {
        let global = u64::from_str_radix(id.get(..10).unwrap_or("0"), 16).unwrap_or(0) & 0xff_ffff_ffff;
        let addr = (0xfdu128 << 120) | (u128::from(global) << 80);
        Subnet6::new(Ipv6Addr::from(addr), 64)
    }
}

impl fmt::Display for Subnet6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Subnet6 {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s.split_once('/').ok_or_else(|| format!("invalid subnet {s:?}: want ADDRESS/PREFIX"))?;
        let addr: Ipv6Addr = a.parse().map_err(|_| format!("invalid subnet {s:?}: bad address"))?;
        let prefix: u8 =
            p.parse().ok().filter(|p| *p <= 128).ok_or_else(|| format!("invalid subnet {s:?}: bad prefix"))?;
        Ok(Subnet6::new(addr, prefix))
    }
}

/// The lowest free address of an IPv6 `subnet` after its gateway's
/// neighbours: not the subnet-router anycast address, not the gateway, not
/// in `used`. At most the first 65536 are looked at.
pub fn allocate6(subnet: &Subnet6, gateway: Ipv6Addr, used: &HashSet<Ipv6Addr>) -> Option<Ipv6Addr> {
    let size = if subnet.prefix == 0 { u128::MAX } else { 1u128 << (128 - u32::from(subnet.prefix)) };
    (1..size.min(65536)).map(|n| subnet.nth(n)).find(|ip| *ip != gateway && !used.contains(ip))
}

/// dockerd's MAC address for a container IP: `02:42` and the four address bytes.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

pub use berth_network_api::parse_mac;

/// A MAC address as text.
pub fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_addresses_as_dockerd_takes_them() {
        assert_eq!(parse_mac("02:42:ac:11:00:05"), Some([0x02, 0x42, 0xac, 0x11, 0, 5]));
        assert_eq!(parse_mac("02-42-AC-11-00-05"), Some([0x02, 0x42, 0xac, 0x11, 0, 5]));
        for bad in
            ["", "02:42:ac:11:00", "02:42:ac:11:00:05:06", "zz:42:ac:11:00:05", "01:00:5e:00:00:01", "2:42:ac:11:0:5"]
        {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }

    fn s(t: &str) -> Subnet {
        t.parse().expect("subnet")
    }

    #[test]
    fn subnets_parse_and_compare() {
        assert_eq!(s("172.18.3.4/16").to_string(), "172.18.0.0/16");
        assert!(s("10.0.0.0/8").overlaps(&s("10.1.0.0/16")));
        assert!(s("10.1.0.0/16").overlaps(&s("10.0.0.0/8")));
        assert!(!s("10.1.0.0/16").overlaps(&s("10.2.0.0/16")));
        assert!(s("172.18.0.0/16").contains("172.18.255.1".parse().expect("ip")));
        assert!("10.0.0.0/33".parse::<Subnet>().is_err());
        assert!("nonsense".parse::<Subnet>().is_err());
    }

    #[test]
    fn the_default_avoids_dockerd_and_the_host() {
        let candidates = default_candidates();
        assert!(!candidates.iter().any(|c| c.overlaps(&s("172.17.0.0/16"))));
        assert_eq!(choose(&candidates, &[]), Some(s("172.18.0.0/16")));
        let taken = [s("172.18.5.0/24"), s("172.16.0.0/13")];
        assert_eq!(choose(&candidates, &taken), Some(s("172.24.0.0/16")));
        assert_eq!(choose(&candidates, &[s("0.0.0.0/0")]), None);
    }

    #[test]
    fn ipv6_subnets_and_addresses() {
        let net: Subnet6 = "fd12:3456:789a:1::9/64".parse().expect("subnet");
        assert_eq!(net.to_string(), "fd12:3456:789a:1::/64");
        assert_eq!(net.first_host(), "fd12:3456:789a:1::1".parse::<Ipv6Addr>().expect("ip"));
        assert!(net.contains("fd12:3456:789a:1:ffff::1".parse().expect("ip")));
        assert!(!net.contains("fd12:3456:789a:2::1".parse().expect("ip")));
        assert!(net.overlaps(&"fd12:3456:789a::/48".parse().expect("subnet")));
        let mut used = HashSet::new();
        let first = allocate6(&net, net.first_host(), &used).expect("an address");
        assert_eq!(first, "fd12:3456:789a:1::2".parse::<Ipv6Addr>().expect("ip"));
        used.insert(first);
        assert_eq!(allocate6(&net, net.first_host(), &used), Some("fd12:3456:789a:1::3".parse().expect("ip")));
        let tiny: Subnet6 = "fd00::/127".parse().expect("subnet");
        assert_eq!(allocate6(&tiny, tiny.first_host(), &HashSet::new()), None);
        let ula = Subnet6::unique_local("0123456789abcdef");
        assert_eq!(ula.to_string(), "fd01:2345:6789::/64");
        assert!("fd00::/129".parse::<Subnet6>().is_err() && "10.0.0.0/8".parse::<Subnet6>().is_err());
    }

    #[test]
    fn addresses_are_handed_out_lowest_first() {
        let net = s("10.9.0.0/30");
        let gw = net.first_host();
        let mut used = HashSet::new();
        assert_eq!(allocate(&net, gw, &used), Some("10.9.0.2".parse().expect("ip")));
        used.insert("10.9.0.2".parse().expect("ip"));
        // .3 is the broadcast address of a /30.
        assert_eq!(allocate(&net, gw, &used), None);
        assert_eq!(mac_text(&mac_for("172.18.0.2".parse().expect("ip"))), "02:42:ac:12:00:02");
    }
}
