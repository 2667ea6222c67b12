//! Berth's packet filtering and NAT: one nftables table of its own (`inet
//! berth`), replaced whole and atomically whenever a network comes or goes, so
//! there is never a duplicate rule and nobody else's rules are touched.
//!
//! - `postrouting` (nat): traffic from a bridge network's subnet leaving through
//!   another interface is masqueraded (not for `--internal` networks);
//! - `forward` (filter): replies pass; nothing crosses between two Berth bridge
//!   networks (isolation); an internal network's bridge forwards nothing in or out;
//! - `input` (filter): nothing but replies reaches the host's loopback addresses
//!   from a bridge (route_localnet is on where ports are published).
//!
//! Beside dockerd: dockerd (through iptables-nft) sets the policy of `FORWARD`
//! in `table ip filter` to DROP, and a drop in any table is final, so Berth's
//! forwarded traffic would die there. dockerd's answer for other forwarders is
//! its `DOCKER-USER` chain, consulted first and never flushed by dockerd: Berth
//! keeps two rules per bridge there (`-i BRIDGE -j ACCEPT`, `-o BRIDGE -j
//! ACCEPT`, in a form iptables can read), tagged `berth:<table>`, so the verdict
//! on its bridges' traffic is its own table's. It makes the chain when dockerd
//! has not yet (dockerd keeps an existing one), so the order the two start in
//! does not matter.
//!
//! The rules live in the kernel, so they keep working while the services are
//! down. Applied through `nft -f -` (nftables' own tool, as its JSON and text
//! front ends are the stable interface).

use std::fmt::Write as _;

use berth_core::{Error, Result};

/// One published port: host address and port to a container's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRule {
    /// tcp or udp.
    pub proto: String,
    /// The host address; 0.0.0.0 for every local address.
    pub host_ip: String,
    /// The host port.
    pub host_port: u16,
    /// The container's address.
    pub container_ip: String,
    /// The container's port.
    pub container_port: u16,
    /// The bridge the container is on.
    pub bridge: String,
    /// That bridge's subnet.
    pub subnet: String,
}

/// What the rules need to know of one bridge network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeRules {
    /// The bridge device.
    pub bridge: String,
    /// The subnet, CIDR.
    pub subnet: String,
    /// The IPv6 subnet, CIDR, on a network with IPv6 (else empty).
    pub subnet6: String,
    /// No way in or out.
    pub internal: bool,
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace(['"', '\\'], ""))
}

/// The nft script that replaces `table inet <table>` with the rules for `nets`
/// and the published `ports`.
pub fn render(table: &str, nets: &[BridgeRules], ports: &[PortRule]) -> String {
    let mut s = String::new();
    // Creating then deleting makes the delete valid when the table is new; the
    // whole script is one transaction.
    let _ = writeln!(s, "table inet {table} {{}}\ndelete table inet {table}\ntable inet {table} {{");
    s.push_str("  chain forward {\n    type filter hook forward priority filter; policy accept;\n");
    s.push_str("    ct state established,related accept\n");
    for n in nets.iter().filter(|n| n.internal) {
        let b = quoted(&n.bridge);
        let _ = writeln!(s, "    iifname {b} oifname != {b} drop\n    oifname {b} iifname != {b} drop");
    }
    for a in nets {
        for b in nets.iter().filter(|b| b.bridge != a.bridge) {
            let _ = writeln!(s, "    iifname {} oifname {} drop", quoted(&a.bridge), quoted(&b.bridge));
        }
    }
    s.push_str("  }\n");
    // A bridge with published ports has route_localnet=1 (so the host's own
    // 127.0.0.1 can reach a container), which would also let a container, or
    // anything on its segment, send to the host's loopback services (the
    // CVE-2020-8558 class). Only replies may arrive for 127.0.0.0/8 from a bridge.
    s.push_str("  chain input {\n    type filter hook input priority filter; policy accept;\n");
    for n in nets {
        let b = quoted(&n.bridge);
        let _ = writeln!(s, "    iifname {b} ip daddr 127.0.0.0/8 ct state != {{ established, related }} drop");
    }
    s.push_str("  }\n");
    // Published ports: arriving (prerouting) and from the host itself (output),
    // to any local address or to the one given.
    let mut dnat = String::new();
    // Ports published on an IPv6 host address are the proxy's (`crate::proxy`).
    for p in ports.iter().filter(|p| !p.host_ip.contains(':')) {
        let to = if p.host_ip == "0.0.0.0" || p.host_ip.is_empty() {
            "fib daddr type local".to_string()
        } else {
            format!("ip daddr {}", p.host_ip)
        };
        let _ = writeln!(
            dnat,
            "    {to} {} dport {} dnat ip to {}:{}",
            p.proto, p.host_port, p.container_ip, p.container_port
        );
    }
    let _ =
        write!(s, "  chain prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n{dnat}  }}\n");
    let _ = write!(s, "  chain output {{\n    type nat hook output priority -100; policy accept;\n{dnat}  }}\n");
    s.push_str("  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n");
    for n in nets.iter().filter(|n| !n.internal) {
        let _ = writeln!(s, "    ip saddr {} oifname != {} masquerade", n.subnet, quoted(&n.bridge));
        if !n.subnet6.is_empty() {
            // NAT66, as dockerd does with ip6tables on.
            let _ = writeln!(s, "    ip6 saddr {} oifname != {} masquerade", n.subnet6, quoted(&n.bridge));
        }
    }
    let mut published: Vec<(&str, &str)> = ports.iter().map(|p| (p.bridge.as_str(), p.subnet.as_str())).collect();
    published.sort_unstable();
    published.dedup();
    for (bridge, subnet) in published {
        // From the host's loopback (route_localnet), and back into the bridge it
        // came from (hairpin): the reply must come back through the host.
        let b = quoted(bridge);
        let _ = writeln!(s, "    oifname {b} ip saddr 127.0.0.0/8 masquerade");
        let _ = writeln!(s, "    oifname {b} ct status dnat ip saddr {subnet} masquerade");
    }
    s.push_str("  }\n}\n");
    s
}

/// Replaces the table with the rules for `nets`, and turns on IPv4 forwarding
/// (as dockerd does) when any network may reach out.
pub async fn apply(table: &str, nets: &[BridgeRules], ports: &[PortRule]) -> Result<()> {
    if nets.iter().any(|n| !n.internal) {
        let _ = tokio::fs::write("/proc/sys/net/ipv4/ip_forward", "1").await;
    }
    if nets.iter().any(|n| !n.internal && !n.subnet6.is_empty()) {
        let _ = tokio::fs::write("/proc/sys/net/ipv6/conf/all/forwarding", "1").await;
    }
    for p in ports {
        // Lets packets to 127.0.0.1 be forwarded to the container after DNAT.
        let _ = tokio::fs::write(format!("/proc/sys/net/ipv4/conf/{}/route_localnet", p.bridge), "1").await;
    }
    run_nft(&render(table, nets, ports)).await?;
    // dockerd's chain is brought in line in the background: two more nft runs
    // (~30 ms) that neither a start of berthd nor a container start waits for.
    if let Ok(mut latest) = DOCKER_USER_WANTED.lock() {
        latest.insert(table.to_string(), nets.to_vec());
    }
    let table = table.to_string();
    tokio::spawn(async move { sync_docker_user(&table).await });
    Ok(())
}

/// What each table of this process wants in DOCKER-USER, the latest first: a
/// sync that runs late applies the newest wish, never an older one.
static DOCKER_USER_WANTED: std::sync::Mutex<std::collections::BTreeMap<String, Vec<BridgeRules>>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// Replaces this table's rules in DOCKER-USER with what it wants now. One at a
/// time in this process (it lists, then edits by handle).
async fn sync_docker_user(table: &str) {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _serial = SERIAL.lock().await;
    let Some(nets) = DOCKER_USER_WANTED.lock().ok().and_then(|w| w.get(table).cloned()) else { return };
    let listed = tokio::process::Command::new("nft")
        .args(["-a", "list", "chain", "ip", "filter", DOCKER_USER])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .await;
    let listing = listed.ok().filter(|o| o.status.success()).map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    let stale = stale_handles(listing.as_deref().unwrap_or(""), table);
    if let Err(e) = run_nft(&render_docker_user(table, &nets, &stale)).await {
        tracing::warn!(error = %e, "accept rules for Berth's bridges in dockerd's DOCKER-USER chain");
    }
}

/// dockerd's chain for rules of others, in `table ip filter`.
const DOCKER_USER: &str = "DOCKER-USER";

/// The handles of this table's rules in a `nft -a list chain` listing.
pub fn stale_handles(listing: &str, table: &str) -> Vec<u64> {
    let tag = format!("comment \"berth:{table}\"");
    listing
        .lines()
        .filter(|l| l.contains(&tag))
        .filter_map(|l| l.rsplit_once("# handle ")?.1.trim().parse().ok())
        .collect()
}

/// The nft script that replaces this table's rules in dockerd's DOCKER-USER
/// chain (made when missing): accept what enters or leaves a non-internal
/// bridge, so Berth's own table decides about it.
pub fn render_docker_user(table: &str, nets: &[BridgeRules], stale: &[u64]) -> String {
    let mut s = format!("add table ip filter\nadd chain ip filter {DOCKER_USER}\n");
    for h in stale {
        let _ = writeln!(s, "delete rule ip filter {DOCKER_USER} handle {h}");
    }
    for n in nets.iter().filter(|n| !n.internal) {
        for dir in ["iifname", "oifname"] {
            let _ = writeln!(
                s,
                "insert rule ip filter {DOCKER_USER} {dir} {} counter accept comment \"berth:{table}\"",
                quoted(&n.bridge)
            );
        }
    }
    s
}

async fn run_nft(script: &str) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| Error::unavailable(format!("run nft (install nftables): {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).await.map_err(|e| Error::internal(format!("write to nft: {e}")))?;
    }
    let out = child.wait_with_output().await.map_err(|e| Error::internal(format!("nft: {e}")))?;
    if !out.status.success() {
        return Err(Error::internal(format!("nft refused the rules: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_user_rules_replace_only_their_own() {
        let listing = "table ip filter {\n\tchain DOCKER-USER { # handle 7\n\
            \t\tiifname \"berth0\" counter packets 0 bytes 0 accept comment \"berth:berth\" # handle 12\n\
            \t\tiifname \"bt1\" counter packets 0 bytes 0 accept comment \"berth:berth_bt1\" # handle 13\n\
            \t\tcounter packets 5 bytes 300 return # handle 8\n\t}\n}\n";
        assert_eq!(stale_handles(listing, "berth"), vec![12]);
        assert_eq!(stale_handles(listing, "berth_bt1"), vec![13]);
        assert!(stale_handles("", "berth").is_empty());
        let nets = vec![
            BridgeRules {
                bridge: "berth0".into(),
                subnet: "172.18.0.0/16".into(),
                subnet6: String::new(),
                internal: false,
            },
            BridgeRules { bridge: "br-i".into(), subnet: "10.2.0.0/24".into(), subnet6: String::new(), internal: true },
        ];
        let s = render_docker_user("berth", &nets, &[12]);
        assert!(s.starts_with("add table ip filter\nadd chain ip filter DOCKER-USER\n"), "{s}");
        assert!(s.contains("delete rule ip filter DOCKER-USER handle 12\n"));
        assert!(
            s.contains("insert rule ip filter DOCKER-USER iifname \"berth0\" counter accept comment \"berth:berth\"")
        );
        assert!(s.contains("insert rule ip filter DOCKER-USER oifname \"berth0\" counter accept"));
        assert!(!s.contains("br-i"), "internal networks forward nothing: {s}");
    }

    #[test]
    fn rules_isolate_masquerade_and_close_internal_networks() {
        let nets = vec![
            BridgeRules {
                bridge: "berth0".into(),
                subnet: "172.18.0.0/16".into(),
                subnet6: String::new(),
                internal: false,
            },
            BridgeRules {
                bridge: "br-a".into(),
                subnet: "10.1.0.0/24".into(),
                subnet6: String::new(),
                internal: false,
            },
            BridgeRules { bridge: "br-i".into(), subnet: "10.2.0.0/24".into(), subnet6: String::new(), internal: true },
        ];
        let s = render("berth", &nets, &[]);
        assert!(s.starts_with("table inet berth {}\ndelete table inet berth\ntable inet berth {"));
        assert!(s.contains("ip saddr 172.18.0.0/16 oifname != \"berth0\" masquerade"));
        assert!(s.contains("ip saddr 10.1.0.0/24 oifname != \"br-a\" masquerade"));
        assert!(!s.contains("10.2.0.0/24"), "an internal network is not masqueraded");
        assert!(s.contains("iifname \"berth0\" oifname \"br-a\" drop"));
        assert!(s.contains("iifname \"br-a\" oifname \"berth0\" drop"));
        assert!(s.contains("iifname \"br-i\" oifname != \"br-i\" drop"));
        // 6 isolation, 2 for the internal network, 3 loopback guards.
        assert_eq!(s.matches(" drop").count(), 6 + 2 + 3);
        assert_eq!(render("berth", &[], &[]).matches("masquerade").count(), 0);
        let six = BridgeRules {
            bridge: "br-6".into(),
            subnet: "10.3.0.0/24".into(),
            subnet6: "fd42:1::/64".into(),
            internal: false,
        };
        assert!(render("berth", &[six], &[]).contains("ip6 saddr fd42:1::/64 oifname != \"br-6\" masquerade"));
    }

    #[test]
    fn published_ports_are_dnat_for_arriving_and_local_traffic() {
        let nets = vec![BridgeRules {
            bridge: "berth0".into(),
            subnet: "172.18.0.0/16".into(),
            subnet6: String::new(),
            internal: false,
        }];
        let port = |host_ip: &str, proto: &str, hp: u16| PortRule {
            proto: proto.into(),
            host_ip: host_ip.into(),
            host_port: hp,
            container_ip: "172.18.0.2".into(),
            container_port: 80,
            bridge: "berth0".into(),
            subnet: "172.18.0.0/16".into(),
        };
        let s = render(
            "berth",
            &nets,
            &[port("0.0.0.0", "tcp", 8080), port("127.0.0.1", "udp", 5353), port("::1", "tcp", 8443)],
        );
        assert!(!s.contains("8443"), "IPv6 host addresses are the proxy's: {s}");
        assert_eq!(s.matches("fib daddr type local tcp dport 8080 dnat ip to 172.18.0.2:80").count(), 2);
        assert_eq!(s.matches("ip daddr 127.0.0.1 udp dport 5353 dnat ip to 172.18.0.2:80").count(), 2);
        assert_eq!(s.matches("oifname \"berth0\" ip saddr 127.0.0.0/8 masquerade").count(), 1);
        assert!(s.contains("oifname \"berth0\" ct status dnat ip saddr 172.18.0.0/16 masquerade"));
        assert!(s.contains("iifname \"berth0\" ip daddr 127.0.0.0/8 ct state != { established, related } drop"));
    }
}
