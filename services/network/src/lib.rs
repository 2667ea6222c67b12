//! Berth's network service: bridges, IPAM, network namespaces, published ports
//! and the embedded DNS.
//!
//! This version has the predefined networks (`bridge`, `host`, `none`) and
//! user-defined bridge networks (create, inspect, remove, prune), and plugs
//! containers into them: an address from the network's subnet ([`ipam`],
//! persisted in the store so it is never handed out twice), and a veth pair
//! between the network's bridge and the container's namespace ([`netlink`]).
//! Traffic rules live in an nftables table of Berth's own ([`nft`]): outbound
//! NAT, isolation between networks, closed internal networks, published ports.
//! Containers on user-defined networks find each other by name through the
//! embedded DNS ([`dns`]). The shape is the one every service has: the [`NetworkApi`] trait, [`LocalNetwork`]
//! over a [`NetworkStore`], and gRPC server and client adapters in [`grpc`].

#![forbid(unsafe_code)]

pub mod dns;
pub mod grpc;
pub mod ipam;
pub mod netlink;
pub mod nft;
pub mod service;
pub mod store;

use async_trait::async_trait;
use berth_core::Result;
pub use berth_proto::network::v1 as pb;
use berth_proto::types::v1::Filter;
pub use grpc::{NetworkGrpcClient, NetworkGrpcServer};
pub use service::{LocalNetwork, NetworkConfig};
pub use store::{NetworkStore, SqliteNetworkStore};

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
