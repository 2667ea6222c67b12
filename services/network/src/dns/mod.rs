//! The embedded DNS: what a container on a user-defined network finds at
//! 127.0.0.11, as in dockerd.
//!
//! For every container on a user-defined network the service binds a UDP
//! socket and a TCP listener to 127.0.0.11:53 *inside the container's network
//! namespace* (a short-lived thread enters the namespace, binds, and leaves: a
//! socket stays in the namespace it was made in) and serves them from its own
//! event loop. Which socket a query came in on says who asks, so every answer
//! is scoped to the asker's networks:
//! - a container's name, its `--network-alias`es and its short ID resolve to
//!   its addresses on the networks the asker shares with it (also as
//!   `name.network`); AAAA too on networks with IPv6, and for a name without
//!   IPv6 an empty answer, not NXDOMAIN;
//! - reverse lookups of those addresses give `name.network`;
//! - anything else is forwarded as it came to the container's `--dns` servers,
//!   or the host's (sent from the host's namespace, so a resolver on the host's
//!   loopback works), unless every network of the container is internal.
//!
//! The default bridge has no name resolution, as in dockerd. Which containers
//! have a resolver is kept in the store, with the identity of the namespace, so
//! a restarted service serves them again (and never a namespace a reused PID
//! now names).

pub mod wire;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use berth_core::{Error, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

use crate::pb;
use crate::store::EndpointRecord;
use wire::{Query, Record};

/// The resolver's address in every container.
pub const ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);
/// How long one upstream gets to answer.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(3);
/// Queries forwarded at once per container; more are answered SERVFAIL.
const MAX_FORWARDS: usize = 64;
/// How long an idle TCP client may keep its connection.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// TCP connections open at once per container; more are closed at once, so a
/// container cannot take the network service's descriptors.
const MAX_TCP_CONNECTIONS: usize = 16;

/// The identity of a network namespace: the device and inode of its nsfs file.
pub type NetnsId = (u64, u64);

/// A container's addresses on one network, with every name it answers to.
#[derive(Debug, Clone)]
struct Entry {
    /// Lower case: the container's name, its aliases, its short ID.
    names: Vec<String>,
    ip: Ipv4Addr,
    /// Its IPv6 address, on a network with IPv6.
    ip6: Option<Ipv6Addr>,
    /// `name.network`, the answer to a reverse lookup.
    ptr: String,
}

#[derive(Debug, Clone)]
struct Net {
    name: String,
    internal: bool,
    /// User-defined networks resolve names; the default bridge does not.
    resolves: bool,
    entries: Vec<Entry>,
}

/// Who is where, rebuilt from the store whenever an endpoint changes, and read
/// (without a lock held across any await) by every query.
#[derive(Debug, Default)]
pub struct Table {
    nets: Vec<Net>,
    /// Container ID to the indexes of its networks in `nets`.
    member_of: HashMap<String, Vec<usize>>,
}

/// The names a container answers to on a network, as dockerd's `DNSNames`:
/// its name, its aliases, its short ID.
pub fn dns_names(e: &EndpointRecord) -> Vec<String> {
    let mut names = vec![e.container_name.clone()];
    names.extend(e.aliases.iter().cloned());
    names.push(e.container_id.chars().take(12).collect());
    names.retain(|n| !n.is_empty());
    names.dedup();
    names
}

impl Table {
    /// The table for these networks and endpoints.
    pub fn build(networks: &[pb::Network], endpoints: &[EndpointRecord]) -> Table {
        let mut t = Table::default();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for n in networks.iter().filter(|n| n.driver == "bridge") {
            index.insert(&n.id, t.nets.len());
            t.nets.push(Net {
                name: n.name.clone(),
                internal: n.internal,
                resolves: n.name != "bridge",
                entries: vec![],
            });
        }
        for e in endpoints {
            let (Some(&i), Ok(ip)) = (index.get(e.network_id.as_str()), e.ip.parse::<Ipv4Addr>()) else { continue };
            let net = &mut t.nets[i];
            let names = dns_names(e).iter().map(|n| n.to_ascii_lowercase()).collect();
            let ptr = format!("{}.{}", e.container_name, net.name);
            net.entries.push(Entry { names, ip, ip6: e.ip6.parse().ok(), ptr });
            t.member_of.entry(e.container_id.clone()).or_default().push(i);
        }
        t
    }

    fn nets_of<'a>(&'a self, container_id: &str) -> impl Iterator<Item = &'a Net> + 'a {
        self.member_of.get(container_id).into_iter().flatten().filter_map(|i| self.nets.get(*i))
    }

    /// The addresses `name` stands for, as `container_id` sees it: on the
    /// user-defined networks it is on, by name, alias or short ID, or as
    /// `name.network`. `None`: not a name of Berth's.
    pub fn lookup(&self, container_id: &str, name: &str) -> Option<Vec<IpAddr>> {
        let mut found = Vec::new();
        for net in self.nets_of(container_id).filter(|n| n.resolves) {
            let lower = net.name.to_ascii_lowercase();
            let bare = name.strip_suffix(lower.as_str()).and_then(|s| s.strip_suffix('.'));
            for e in &net.entries {
                if e.names.iter().any(|n| n == name || Some(n.as_str()) == bare) {
                    for ip in std::iter::once(IpAddr::V4(e.ip)).chain(e.ip6.map(IpAddr::V6)) {
                        if !found.contains(&ip) {
                            found.push(ip);
                        }
                    }
                }
            }
        }
        (!found.is_empty()).then_some(found)
    }

    /// The name of `ip` on the asker's user-defined networks (reverse lookup).
    pub fn reverse(&self, container_id: &str, ip: Ipv4Addr) -> Option<String> {
        self.nets_of(container_id)
            .filter(|n| n.resolves)
            .flat_map(|n| n.entries.iter())
            .find(|e| e.ip == ip)
            .map(|e| e.ptr.clone())
    }

    /// Whether the container may reach resolvers outside: not when all its
    /// networks are internal.
    pub fn may_forward(&self, container_id: &str) -> bool {
        self.nets_of(container_id).any(|n| !n.internal)
    }

    /// Whether the container is on a network that resolves names.
    pub fn wants_resolver(&self, container_id: &str) -> bool {
        self.nets_of(container_id).any(|n| n.resolves)
    }

    #[cfg(test)]
    fn endpoints(&self) -> usize {
        self.nets.iter().map(|n| n.entries.len()).sum()
    }
}

/// One container's running resolver.
struct Server {
    netns: NetnsId,
    stop: CancellationToken,
}

/// The embedded DNS of every container on a user-defined network.
#[derive(Default)]
pub struct Dns {
    table: RwLock<Arc<Table>>,
    servers: Mutex<HashMap<String, Server>>,
}

/// The nameservers of a resolv.conf.
pub fn nameservers(resolv_conf: &str) -> Vec<IpAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect()
}

/// The identity of the network namespace of `pid`.
pub fn netns_of(pid: i64) -> std::io::Result<NetnsId> {
    let m = std::fs::metadata(format!("/proc/{pid}/ns/net"))?;
    Ok((m.dev(), m.ino()))
}

/// Binds the resolver's sockets inside the network namespace of `pid`: a
/// thread of its own enters the namespace (setns affects only the calling
/// thread), binds, and ends; the sockets stay in that namespace.
fn bind_in(pid: i64) -> std::io::Result<(NetnsId, std::net::UdpSocket, std::net::TcpListener)> {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
    let m = ns.metadata()?;
    let id = (m.dev(), m.ino());
    let (udp, tcp) = std::thread::scope(|s| {
        s.spawn(|| -> std::io::Result<_> {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
            let udp = std::net::UdpSocket::bind((ADDRESS, 53))?;
            let tcp = std::net::TcpListener::bind((ADDRESS, 53))?;
            udp.set_nonblocking(true)?;
            tcp.set_nonblocking(true)?;
            Ok((udp, tcp))
        })
        .join()
        .map_err(|_| std::io::Error::other("the thread binding the resolver panicked"))?
    })?;
    Ok((id, udp, tcp))
}

impl Dns {
    /// Replaces the table (after endpoints changed).
    pub fn set_table(&self, table: Table) {
        if let Ok(mut t) = self.table.write() {
            *t = Arc::new(table);
        }
    }

    fn table(&self) -> Arc<Table> {
        self.table.read().map(|t| t.clone()).unwrap_or_default()
    }

    /// Whether the container is on a network with names (by the current table).
    pub fn wants(&self, container_id: &str) -> bool {
        self.table().wants_resolver(container_id)
    }

    /// Serves the container whose init is `pid`, forwarding to `upstreams`
    /// (empty: the host's resolvers). Idempotent for the same namespace; a new
    /// namespace (the container started again) replaces the old resolver.
    /// Returns the namespace's identity.
    pub async fn serve(self: &Arc<Self>, container_id: &str, pid: i64, upstreams: Vec<IpAddr>) -> Result<NetnsId> {
        let current = netns_of(pid).map_err(|e| Error::not_found(format!("network namespace of {pid}: {e}")))?;
        if let Ok(servers) = self.servers.lock()
            && servers.get(container_id).is_some_and(|s| s.netns == current)
        {
            return Ok(current);
        }
        self.stop(container_id);
        let (netns, udp, tcp) = tokio::task::spawn_blocking(move || bind_in(pid))
            .await
            .map_err(|e| Error::internal(e.to_string()))?
            .map_err(|e| Error::internal(format!("bind the embedded DNS at {ADDRESS}:53: {e}")))?;
        let udp = Arc::new(UdpSocket::from_std(udp)?);
        let tcp = TcpListener::from_std(tcp)?;
        let stop = CancellationToken::new();
        if let Ok(mut servers) = self.servers.lock() {
            servers.insert(container_id.to_string(), Server { netns, stop: stop.clone() });
        }
        // The container's --dns, else the host's resolvers as they are now (read
        // once per container, as dockerd does at the sandbox's start).
        let upstreams = if upstreams.is_empty() {
            nameservers(&tokio::fs::read_to_string("/etc/resolv.conf").await.unwrap_or_default())
        } else {
            upstreams
        };
        let ctx = Arc::new(Ctx {
            dns: self.clone(),
            container_id: container_id.to_string(),
            upstreams,
            forwards: Arc::new(tokio::sync::Semaphore::new(MAX_FORWARDS)),
            tcp_conns: Arc::new(tokio::sync::Semaphore::new(MAX_TCP_CONNECTIONS)),
        });
        tokio::spawn(run(ctx, udp, tcp, stop));
        tracing::debug!(container = %container_id, "embedded DNS serving");
        Ok(netns)
    }

    /// Stops a container's resolver (its sockets close, so its namespace can go).
    pub fn stop(&self, container_id: &str) {
        if let Some(s) = self.servers.lock().ok().and_then(|mut s| s.remove(container_id)) {
            s.stop.cancel();
        }
    }
}

/// What every query of one container's resolver needs.
struct Ctx {
    dns: Arc<Dns>,
    container_id: String,
    /// Where unknown names go: the container's `--dns`, else the host's resolvers.
    upstreams: Vec<IpAddr>,
    forwards: Arc<tokio::sync::Semaphore>,
    /// TCP connections of this container's resolver.
    tcp_conns: Arc<tokio::sync::Semaphore>,
}

impl Ctx {
    /// The local answer to `packet`, or `Err(())` when it has to go upstream.
    fn local(&self, packet: &[u8], limit: usize) -> std::result::Result<Vec<u8>, ()> {
        let Some(q) = wire::parse_query(packet) else {
            return match wire::id_of(packet) {
                Some(id) => Ok(wire::error_for(id, wire::FORMERR)),
                None => Ok(Vec::new()),
            };
        };
        let table = self.dns.table();
        match answer_locally(&table, &self.container_id, &q) {
            Some((rcode, records)) => Ok(wire::answer(&q, rcode, &records, limit)),
            None if !table.may_forward(&self.container_id) => Ok(wire::answer(&q, wire::SERVFAIL, &[], limit)),
            None => Err(()),
        }
    }

    async fn forward_udp(&self, packet: &[u8]) -> Option<Vec<u8>> {
        let id = wire::id_of(packet)?;
        for &upstream in &self.upstreams {
            let bind: SocketAddr =
                if upstream.is_ipv4() { (Ipv4Addr::UNSPECIFIED, 0).into() } else { "[::]:0".parse().ok()? };
            let Ok(sock) = UdpSocket::bind(bind).await else { continue };
            if sock.connect((upstream, 53)).await.is_err() || sock.send(packet).await.is_err() {
                continue;
            }
            let mut buf = vec![0u8; 65535];
            // A reply from elsewhere or for another ID is ignored (connect filters the source).
            let got = tokio::time::timeout(UPSTREAM_TIMEOUT, async {
                loop {
                    match sock.recv(&mut buf).await {
                        Ok(n) if n >= 12 && wire::id_of(&buf[..n]) == Some(id) => return Some(n),
                        Ok(_) => continue,
                        Err(_) => return None,
                    }
                }
            })
            .await;
            if let Ok(Some(n)) = got {
                buf.truncate(n);
                return Some(buf);
            }
        }
        None
    }

    async fn forward_tcp(&self, packet: &[u8]) -> Option<Vec<u8>> {
        for &upstream in &self.upstreams {
            let attempt = async {
                let mut s = TcpStream::connect((upstream, 53)).await.ok()?;
                s.write_all(&(packet.len() as u16).to_be_bytes()).await.ok()?;
                s.write_all(packet).await.ok()?;
                read_framed(&mut s).await
            };
            if let Ok(Some(reply)) = tokio::time::timeout(UPSTREAM_TIMEOUT, attempt).await {
                return Some(reply);
            }
        }
        None
    }

    fn servfail(packet: &[u8]) -> Vec<u8> {
        match wire::parse_query(packet) {
            Some(q) => wire::answer(&q, wire::SERVFAIL, &[], wire::UDP_LIMIT),
            None => wire::id_of(packet).map(|id| wire::error_for(id, wire::SERVFAIL)).unwrap_or_default(),
        }
    }
}

/// The answer Berth gives itself, or `None` for a name that is not Berth's.
fn answer_locally(table: &Table, container_id: &str, q: &Query) -> Option<(u8, Vec<Record>)> {
    if q.qclass != wire::CLASS_IN {
        return None;
    }
    match q.qtype {
        wire::TYPE_PTR => {
            let ip = wire::reverse_v4(&q.name)?;
            table.reverse(container_id, ip).map(|name| (wire::NOERROR, vec![Record::Ptr(name)]))
        }
        qtype => {
            let ips = table.lookup(container_id, &q.name)?;
            // The name exists; it has A records, and AAAA ones on networks with
            // IPv6 (an empty answer, not NXDOMAIN, for a type it has none of).
            let records = ips
                .into_iter()
                .filter_map(|ip| match ip {
                    IpAddr::V4(v4) if qtype == wire::TYPE_A => Some(Record::A(v4)),
                    IpAddr::V6(v6) if qtype == wire::TYPE_AAAA => Some(Record::Aaaa(v6)),
                    _ => None,
                })
                .collect();
            Some((wire::NOERROR, records))
        }
    }
}

async fn read_framed(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await.ok()?;
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut msg).await.ok()?;
    Some(msg)
}

/// One container's resolver: UDP queries and TCP connections until stopped.
async fn run(ctx: Arc<Ctx>, udp: Arc<UdpSocket>, tcp: TcpListener, stop: CancellationToken) {
    let mut buf = vec![0u8; 65535];
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            got = udp.recv_from(&mut buf) => {
                let Ok((n, from)) = got else { continue };
                let packet = buf[..n].to_vec();
                match ctx.local(&packet, wire::UDP_LIMIT) {
                    Ok(reply) if reply.is_empty() => {}
                    Ok(reply) => { let _ = udp.send_to(&reply, from).await; }
                    Err(()) => {
                        let Ok(permit) = ctx.forwards.clone().try_acquire_owned() else {
                            let _ = udp.send_to(&Ctx::servfail(&packet), from).await;
                            continue;
                        };
                        let (ctx, udp) = (ctx.clone(), udp.clone());
                        tokio::spawn(async move {
                            let reply = ctx.forward_udp(&packet).await.unwrap_or_else(|| Ctx::servfail(&packet));
                            let _ = udp.send_to(&reply, from).await;
                            drop(permit);
                        });
                    }
                }
            }
            got = tcp.accept() => {
                let Ok((stream, _)) = got else { continue };
                // Past the limit the connection is dropped, and so closed.
                let Ok(permit) = ctx.tcp_conns.clone().try_acquire_owned() else { continue };
                let (ctx, stop) = (ctx.clone(), stop.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = serve_tcp(ctx, stream) => {}
                    }
                    drop(permit);
                });
            }
        }
    }
    tracing::debug!(container = %ctx.container_id, "embedded DNS stopped");
}

/// Queries over one TCP connection (two-byte length before each message).
async fn serve_tcp(ctx: Arc<Ctx>, mut stream: TcpStream) {
    while let Ok(Some(packet)) = tokio::time::timeout(TCP_IDLE, read_framed(&mut stream)).await {
        let reply = match ctx.local(&packet, usize::from(u16::MAX)) {
            Ok(reply) => reply,
            Err(()) => ctx.forward_tcp(&packet).await.unwrap_or_else(|| Ctx::servfail(&packet)),
        };
        if reply.is_empty() {
            return;
        }
        let Ok(len) = u16::try_from(reply.len()) else { return };
        if stream.write_all(&len.to_be_bytes()).await.is_err() || stream.write_all(&reply).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(id: &str, name: &str, internal: bool) -> pb::Network {
        pb::Network { id: id.into(), name: name.into(), driver: "bridge".into(), internal, ..Default::default() }
    }

    fn ep(net: &str, cid: &str, name: &str, ip: &str, aliases: &[&str]) -> EndpointRecord {
        EndpointRecord {
            network_id: net.into(),
            container_id: cid.into(),
            endpoint_id: String::new(),
            ip: ip.into(),
            mac: String::new(),
            host_veth: String::new(),
            container_name: name.into(),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            ip6: if ip == "10.1.0.2" { "fd00:1::2".into() } else { String::new() },
        }
    }

    fn table() -> Table {
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        let c = "c".repeat(64);
        let d = "d".repeat(64);
        Table::build(
            &[
                net("n1", "net-one", false),
                net("n2", "net-two", false),
                net("br", "bridge", false),
                net("i", "in", true),
            ],
            &[
                ep("n1", &a, "web", "10.1.0.2", &["Srv", "shared"]),
                ep("n1", &b, "client", "10.1.0.3", &["shared"]),
                ep("n2", &c, "other", "10.2.0.2", &[]),
                ep("n2", &b, "client", "10.2.0.3", &[]),
                ep("br", &a, "web", "10.9.0.2", &[]),
                ep("br", &d, "plain", "10.9.0.3", &[]),
                ep("i", &d, "plain", "10.5.0.3", &[]),
                ep("br", &"f".repeat(64), "lonely", "10.9.0.4", &[]),
            ],
        )
    }

    #[test]
    fn names_aliases_and_short_ids_on_shared_networks_only() {
        let t = table();
        let (a, b, c, d) = ("a".repeat(64), "b".repeat(64), "c".repeat(64), "d".repeat(64));
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let web = Some(vec![ip("10.1.0.2"), ip("fd00:1::2")]);
        assert_eq!(t.lookup(&b, "web"), web, "not the default bridge's address");
        assert_eq!(t.lookup(&b, "srv"), web, "aliases, case-insensitive");
        assert_eq!(t.lookup(&b, "aaaaaaaaaaaa"), web, "short ID");
        assert_eq!(t.lookup(&b, &a), None, "only the short ID");
        assert_eq!(t.lookup(&b, "web.net-one"), web, "name.network");
        assert_eq!(t.lookup(&b, "web.net-two"), None);
        assert_eq!(t.lookup(&a, "shared"), Some(vec![ip("10.1.0.2"), ip("fd00:1::2"), ip("10.1.0.3")]), "round robin");
        assert_eq!(t.lookup(&a, "other"), None, "isolated networks do not resolve each other");
        assert_eq!(t.lookup(&c, "client"), Some(vec![ip("10.2.0.3")]));
        assert_eq!(t.lookup(&d, "web"), None, "the default bridge has no names");
        let v4 = |s: &str| s.parse::<Ipv4Addr>().expect("ip");
        assert_eq!(t.reverse(&b, v4("10.1.0.2")), Some("web.net-one".into()));
        assert_eq!(t.reverse(&c, v4("10.1.0.2")), None);
        assert!(t.may_forward(&a) && t.may_forward(&d));
        assert!(t.wants_resolver(&b) && t.wants_resolver(&d), "internal networks have names too");
        assert!(!t.wants_resolver(&"f".repeat(64)), "the default bridge alone has none");
        assert_eq!(t.endpoints(), 8);
    }

    #[test]
    fn internal_only_containers_do_not_forward() {
        let e = "e".repeat(64);
        let t = Table::build(&[net("i", "in", true)], &[ep("i", &e, "x", "10.5.0.9", &[])]);
        assert!(!t.may_forward(&e));
        assert!(t.wants_resolver(&e));
    }

    #[test]
    fn answers_and_forwarding_decisions() {
        let t = table();
        let b = "b".repeat(64);
        let q = |name: &str, qtype: u16| {
            let mut p = Vec::new();
            for v in [1u16, 0x0100, 1, 0, 0, 0] {
                p.extend_from_slice(&v.to_be_bytes());
            }
            for l in name.split('.') {
                p.push(l.len() as u8);
                p.extend_from_slice(l.as_bytes());
            }
            p.push(0);
            p.extend_from_slice(&qtype.to_be_bytes());
            p.extend_from_slice(&1u16.to_be_bytes());
            wire::parse_query(&p).expect("query")
        };
        let (rcode, records) = answer_locally(&t, &b, &q("web", wire::TYPE_A)).expect("local");
        assert_eq!((rcode, records), (wire::NOERROR, vec![Record::A(Ipv4Addr::new(10, 1, 0, 2))]));
        let (rcode, records) = answer_locally(&t, &b, &q("web", wire::TYPE_AAAA)).expect("local");
        assert_eq!((rcode, records), (wire::NOERROR, vec![Record::Aaaa("fd00:1::2".parse().expect("ip"))]));
        let (rcode, records) = answer_locally(&t, &b, &q("client", wire::TYPE_AAAA)).expect("local");
        assert_eq!((rcode, records.len()), (wire::NOERROR, 0), "a name without IPv6 is not NXDOMAIN");
        assert!(answer_locally(&t, &b, &q("example", wire::TYPE_A)).is_none(), "forwarded");
        let ptr = answer_locally(&t, &b, &q("3.0.1.10.in-addr.arpa", wire::TYPE_PTR)).expect("ptr");
        assert_eq!(ptr.1, vec![Record::Ptr("client.net-one".into())]);
        assert!(answer_locally(&t, &b, &q("1.1.1.1.in-addr.arpa", wire::TYPE_PTR)).is_none());
    }

    #[test]
    fn nameservers_of_resolv_conf() {
        let got = nameservers("# c\nnameserver 127.0.0.53\nnameserver  ::1 \nsearch x\nnameserver bogus\n");
        assert_eq!(got, vec!["127.0.0.53".parse::<IpAddr>().expect("ip"), "::1".parse().expect("ip")]);
    }
}
