//! The kernel side of a bridge network, over rtnetlink: the bridge device with
//! its gateway address, and per container a veth pair whose host end joins the
//! bridge and whose other end becomes `eth0` in the container's network
//! namespace, with its address, MAC and default route.
//!
//! Work inside a container's namespace runs on a thread of its own that has
//! joined that namespace (`setns` changes only the calling thread), with a
//! netlink socket opened there.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use berth_core::{Error, Result};
use futures::TryStreamExt;
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::ipam::Subnet;

fn nl(what: &str) -> impl FnOnce(rtnetlink::Error) -> Error + '_ {
    move |e| Error::internal(format!("{what}: {e}"))
}

fn errno_of(e: &rtnetlink::Error) -> i32 {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.raw_code().abs(),
        _ => 0,
    }
}

/// A netlink handle in the current thread's network namespace.
fn connect() -> Result<Handle> {
    let (conn, handle, _) =
        rtnetlink::new_connection().map_err(|e| Error::internal(format!("open a netlink socket: {e}")))?;
    tokio::spawn(conn);
    Ok(handle)
}

async fn index_of(h: &Handle, name: &str) -> Result<Option<u32>> {
    let mut links = h.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(link) => Ok(link.map(|l| l.header.index)),
        Err(e) if errno_of(&e) == ENODEV => Ok(None),
        Err(e) => Err(Error::internal(format!("look up {name}: {e}"))),
    }
}

/// errno values netlink answers with.
const ENODEV: i32 = 19;
const EEXIST: i32 = 17;

/// The subnets the host already uses: its routes (but the default route) and
/// the networks of its addresses.
pub async fn host_subnets() -> Result<Vec<Subnet>> {
    let h = connect()?;
    let mut out = Vec::new();
    let mut routes = h.route().get(RouteMessageBuilder::<Ipv4Addr>::new().build()).execute();
    while let Some(r) = routes.try_next().await.map_err(nl("list routes"))? {
        let prefix = r.header.destination_prefix_length;
        if prefix == 0 {
            continue;
        }
        for a in &r.attributes {
            if let rtnetlink::packet_route::route::RouteAttribute::Destination(
                rtnetlink::packet_route::route::RouteAddress::Inet(ip),
            ) = a
            {
                out.push(Subnet::new(*ip, prefix));
            }
        }
    }
    let mut addrs = h.address().get().execute();
    while let Some(a) = addrs.try_next().await.map_err(nl("list addresses"))? {
        for attr in &a.attributes {
            if let rtnetlink::packet_route::address::AddressAttribute::Address(IpAddr::V4(ip)) = attr {
                out.push(Subnet::new(*ip, a.header.prefix_len));
            }
        }
    }
    Ok(out)
}

/// Adds `ip/prefix` to the link `index` (an address it has already is fine);
/// an IPv6 one without duplicate address detection, so it is usable at once
/// (the bridge is the only one handing out the network's addresses).
async fn add_address(h: &Handle, index: u32, ip: IpAddr, prefix: u8) -> Result<()> {
    use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags};
    let mut req = h.address().add(index, ip, prefix);
    if ip.is_ipv6() {
        req.message_mut().attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    match req.execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno_of(&e) == EEXIST => Ok(()),
        Err(e) => Err(Error::internal(format!("address {ip}/{prefix}: {e}"))),
    }
}

/// Creates the bridge `name` with `gateway/prefix` (and the IPv6 gateway, on a
/// network with IPv6) when missing, and brings it up; returns its index.
/// Idempotent.
pub async fn ensure_bridge(name: &str, gateway: Ipv4Addr, prefix: u8, v6: Option<(Ipv6Addr, u8)>) -> Result<u32> {
    let h = connect()?;
    if index_of(&h, name).await?.is_none() {
        match h.link().add(LinkBridge::new(name).build()).execute().await {
            Ok(()) => {}
            Err(e) if errno_of(&e) == EEXIST => {}
            Err(e) => return Err(Error::internal(format!("create bridge {name}: {e}"))),
        }
    }
    let index = index_of(&h, name).await?.ok_or_else(|| Error::internal(format!("bridge {name} vanished")))?;
    add_address(&h, index, IpAddr::V4(gateway), prefix).await.map_err(|e| e.context(format!("bridge {name}")))?;
    if let Some((gateway6, prefix6)) = v6 {
        add_address(&h, index, IpAddr::V6(gateway6), prefix6).await.map_err(|e| e.context(format!("bridge {name}")))?;
    }
    h.link().set(LinkUnspec::new_with_index(index).up().build()).execute().await.map_err(nl("bring the bridge up"))?;
    Ok(index)
}

/// A container's end of a bridge network.
#[derive(Debug, Clone)]
pub struct Plug<'a> {
    /// The bridge's index.
    pub bridge: u32,
    /// The host end's name (at most 15 bytes).
    pub host_veth: &'a str,
    /// The inner end's name in the container.
    pub interface: &'a str,
    /// The container's init, whose network namespace gets `eth0`.
    pub pid: i64,
    /// The container's address and network, and the gateway of its default
    /// route (none on an internal network: no way out).
    pub ip: Ipv4Addr,
    /// See `ip`.
    pub prefix: u8,
    /// See `ip`.
    pub gateway: Option<Ipv4Addr>,
    /// The MAC address of `eth0`.
    pub mac: [u8; 6],
    /// On a network with IPv6: the container's IPv6 address and prefix, and
    /// the gateway of its IPv6 default route (none on an internal network).
    pub ip6: Option<(Ipv6Addr, u8, Option<Ipv6Addr>)>,
}

/// Plugs a container into a bridge. On failure the veth pair is removed again.
///
/// The pair is made in one message with its inner end created directly in the
/// container's namespace as `eth0` and its host end already on the bridge and
/// up: moving a device between namespaces afterwards costs the kernel a
/// synchronization that is most of the time of a container start.
pub async fn plug(p: &Plug<'_>) -> Result<()> {
    use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth};
    use std::os::fd::AsRawFd;
    let h = connect()?;
    // A stale pair from a crash would make the name clash.
    delete_link(p.host_veth).await?;
    let ns = std::fs::File::open(format!("/proc/{}/ns/net", p.pid))
        .map_err(|e| Error::internal(format!("open the container's network namespace: {e}")))?;
    let inner = rtnetlink::LinkMessageBuilder::<LinkUnspec>::new()
        .name(p.interface.to_string())
        .address(p.mac.to_vec())
        .setns_by_fd(ns.as_raw_fd())
        .build();
    let pair = rtnetlink::LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
        .name(p.host_veth.to_string())
        .set_info_data(InfoData::Veth(InfoVeth::Peer(inner)))
        .controller(p.bridge)
        .up()
        .build();
    h.link()
        .add(pair)
        .execute()
        .await
        .map_err(|e| Error::internal(format!("create the veth pair {} / {}: {e}", p.host_veth, p.interface)))?;
    // Hairpin: a container reaching its own published port through a host
    // address gets the answer back through the port it came in on (with
    // br_netfilter the bridge would otherwise drop it), as dockerd sets it
    // when no userland proxy carries such traffic.
    let hairpin = format!("/sys/class/net/{}/brport/hairpin_mode", p.host_veth);
    if let Err(e) = tokio::fs::write(&hairpin, "1").await {
        tracing::warn!(port = %p.host_veth, error = %e, "hairpin mode not set");
    }
    let (ip, prefix, gateway, interface, ip6) = (p.ip, p.prefix, p.gateway, p.interface.to_string(), p.ip6);
    let out = in_netns(ns, move |h| async move {
        h.link().set(LinkUnspec::new_with_index(1).up().build()).execute().await.map_err(nl("bring lo up"))?;
        let eth0 = index_of(&h, &interface).await?.ok_or_else(|| Error::internal(format!("{interface} is missing")))?;
        h.address().add(eth0, IpAddr::V4(ip), prefix).execute().await.map_err(nl("address the interface"))?;
        if let Some((ip6, prefix6, _)) = ip6 {
            add_address(&h, eth0, IpAddr::V6(ip6), prefix6).await?;
        }
        h.link()
            .set(LinkUnspec::new_with_index(eth0).up().build())
            .execute()
            .await
            .map_err(nl("bring the interface up"))?;
        if let Some(gateway) = gateway {
            h.route()
                .add(RouteMessageBuilder::<Ipv4Addr>::new().gateway(gateway).build())
                .execute()
                .await
                .map_err(nl("add the default route"))?;
        }
        if let Some((_, _, Some(gateway6))) = ip6 {
            h.route()
                .add(RouteMessageBuilder::<Ipv6Addr>::new().gateway(gateway6).build())
                .execute()
                .await
                .map_err(nl("add the IPv6 default route"))?;
        }
        Ok(())
    })
    .await;
    if out.is_err() {
        let _ = delete_link(p.host_veth).await;
    }
    out
}

/// Runs `f` with a netlink handle inside the network namespace `ns`, on a
/// thread of its own.
async fn in_netns<F, Fut>(ns: std::fs::File, f: F) -> Result<()>
where
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<()>>,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let run = || -> Result<()> {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| Error::internal(format!("enter the container's network namespace: {e}")))?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::internal(e.to_string()))?;
            rt.block_on(async move { f(connect()?).await })
        };
        let _ = tx.send(run());
    });
    rx.await.map_err(|_| Error::internal("the namespace worker died"))?
}

/// Deletes a link by name; a missing one is fine.
pub async fn delete_link(name: &str) -> Result<()> {
    let h = connect()?;
    match index_of(&h, name).await? {
        Some(index) => match h.link().del(index).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno_of(&e) == ENODEV => Ok(()),
            Err(e) => Err(Error::internal(format!("delete {name}: {e}"))),
        },
        None => Ok(()),
    }
}
