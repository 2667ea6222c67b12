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
pub mod ipam;
pub mod netlink;
pub mod nft;
pub mod proxy;
pub mod service;
pub mod store;

pub use berth_network_api::{Filter, NetworkApi, NetworkGrpcClient, NetworkGrpcServer, grpc, pb};
pub use service::{LocalNetwork, NetworkConfig};
pub use store::{NetworkStore, SqlNetworkStore};
