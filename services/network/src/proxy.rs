//! Published ports on IPv6 host addresses: `::` (the other half of a port
//! published with no host address, as dockerd listens on both) and any given
//! one, `::1` included. A packet from `::1` cannot be DNAT'ed out of the host
//! (IPv6 has no `route_localnet`), so, as dockerd's docker-proxy, a userland
//! TCP proxy takes these connections and opens one to the container's IPv4
//! address. IPv4 host addresses stay with nftables ([`crate::nft`]). UDP is not
//! proxied.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Connections one proxy carries at once; past it, new ones wait in the backlog.
const MAX_CONNECTIONS: usize = 1024;
/// How long the container may take to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One proxy: where it listens, where it connects.
pub type Route = (SocketAddr, SocketAddr);

/// The running proxies of this network service.
#[derive(Default)]
pub struct Proxies {
    running: Mutex<HashMap<Route, CancellationToken>>,
}

impl Proxies {
    /// Runs a proxy for each of `wanted` that does not run yet and stops those
    /// no longer wanted. A host port that cannot be taken is logged and left.
    pub fn sync(&self, wanted: &[Route]) {
        let Ok(mut running) = self.running.lock() else { return };
        running.retain(|route, stop| {
            let keep = wanted.contains(route);
            if !keep {
                stop.cancel();
            }
            keep
        });
        for route in wanted {
            if running.contains_key(route) {
                continue;
            }
            match listen(route.0) {
                Ok(listener) => {
                    let stop = CancellationToken::new();
                    tokio::spawn(serve(listener, route.1, stop.clone()));
                    running.insert(*route, stop);
                }
                Err(e) => tracing::warn!(listen = %route.0, error = %e, "IPv6 port not published"),
            }
        }
    }
}

impl Drop for Proxies {
    fn drop(&mut self) {
        if let Ok(running) = self.running.lock() {
            running.values().for_each(CancellationToken::cancel);
        }
    }
}

/// A listener on an IPv6 address only (`IPV6_V6ONLY`: IPv4 is nftables').
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

async fn serve(listener: TcpListener, target: SocketAddr, stop: CancellationToken) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let (mut client, _) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!(error = %e, "proxy accept");
                    continue;
                }
            },
        };
        let stop = stop.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let Ok(Ok(mut upstream)) = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await else {
                return;
            };
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn connections_to_the_v6_address_reach_the_target_until_stopped() {
        let upstream = TcpListener::bind("127.0.0.1:0").await.expect("listen");
        let target = upstream.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = upstream.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 5];
                    if s.read_exact(&mut buf).await.is_ok() {
                        let _ = s.write_all(&buf.to_ascii_uppercase()).await;
                    }
                });
            }
        });
        // A free port on ::1 (the host must have IPv6 loopback, as the e2e tests need).
        let probe = std::net::TcpListener::bind("[::1]:0").expect("IPv6 loopback");
        let listen_at = probe.local_addr().expect("addr");
        drop(probe);
        let proxies = Proxies::default();
        proxies.sync(&[(listen_at, target)]);
        let mut c = TcpStream::connect(listen_at).await.expect("connect through the proxy");
        c.write_all(b"hello").await.expect("write");
        let mut got = [0u8; 5];
        c.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"HELLO");
        proxies.sync(&[]);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(TcpStream::connect(listen_at).await.is_err(), "stopped");
    }
}
