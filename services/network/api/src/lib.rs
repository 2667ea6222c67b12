//! The contract of Berth's network service, without its implementation: the
//! [`NetworkApi`] trait, its protobuf messages ([`pb`]) and stream types, and the
//! gRPC client and server adapters. The gateway and the other services link
//! this crate only, so they carry none of the network service's own dependencies.

#![forbid(unsafe_code)]

pub mod grpc;

use async_trait::async_trait;
use berth_core::Result;
pub use berth_proto::network::v1 as pb;
pub use berth_proto::types::v1::Filter;
pub use grpc::{NetworkGrpcClient, NetworkGrpcServer};

/// Parses `aa:bb:cc:dd:ee:ff` (or with dashes), refusing multicast addresses
/// (an interface cannot have one), as dockerd does.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = text.split([':', '-']).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (b, p) in mac.iter_mut().zip(&parts) {
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    (mac[0] & 1 == 0).then_some(mac)
}

/// Whether `name` can be a bridge device Berth makes: a Linux interface name
/// (1 to 15 bytes, not `.` or `..`) of letters, digits, `_`, `-` and `.` only,
/// so that it means itself in an nftables rule (where `*` is a wildcard) and
/// in a sysfs path.
pub fn valid_bridge_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// What the network service does, in-process or remote.
#[async_trait]
pub trait NetworkApi: Send + Sync + 'static {
    /// Networks matching `filters`.
    async fn list(&self, filters: Vec<Filter>) -> Result<Vec<pb::Network>>;
    /// Plugs a container (its init's network namespace) into a network.
    async fn connect(&self, req: pb::ConnectContainerRequest) -> Result<pb::Endpoint>;
    /// Unplugs a container from one network (or all) and releases its addresses.
    async fn disconnect(&self, container_id: &str, network: &str) -> Result<()>;
    /// Creates a user-defined bridge network.
    async fn create(&self, req: pb::CreateNetworkRequest) -> Result<pb::Network>;
    /// A network by name, ID or unique ID prefix, with its endpoints.
    async fn inspect(&self, reference: &str) -> Result<pb::Network>;
    /// Removes a user-defined network that has no endpoints.
    async fn remove(&self, reference: &str) -> Result<()>;
    /// Removes the user-defined networks without endpoints; returns their names.
    async fn prune(&self, filters: Vec<Filter>) -> Result<Vec<String>>;
    /// Publishes host ports to a connected container; returns them with the
    /// host ports chosen.
    async fn publish(&self, req: pb::PublishPortsRequest) -> Result<Vec<pb::PortMapping>>;
    /// Gives a container's endpoints its new name.
    async fn rename(&self, container_id: &str, name: &str) -> Result<()>;
}

#[cfg(test)]
mod tests {
    #[test]
    fn bridge_names() {
        for good in ["berth0", "br-0123456789ab", "a", "my.net_1-x", "123456789012345"] {
            assert!(super::valid_bridge_name(good), "{good}");
        }
        for bad in ["", ".", "..", "e*", "a b", "a/b", "a:b", "1234567890123456", "tab\t", "ü", "eth0\n"] {
            assert!(!super::valid_bridge_name(bad), "{bad:?}");
        }
    }
}
