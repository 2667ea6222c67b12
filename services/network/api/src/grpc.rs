//! The network service's gRPC adapters.

use std::sync::Arc;

use async_trait::async_trait;
use berth_core::grpc::{RequestIdInterceptor, status_to_error};
use berth_core::{Error, Result};
use berth_proto::types::v1::Filter;
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::{NetworkApi, pb};

/// Serves a [`NetworkApi`] over gRPC.
#[derive(Clone)]
pub struct NetworkGrpcServer {
    api: Arc<dyn NetworkApi>,
}

impl NetworkGrpcServer {
    /// The tonic service for `api`.
    pub fn service(api: Arc<dyn NetworkApi>) -> pb::network_service_server::NetworkServiceServer<Self> {
        pb::network_service_server::NetworkServiceServer::new(Self { api })
    }
}

#[tonic::async_trait]
impl pb::network_service_server::NetworkService for NetworkGrpcServer {
    async fn list_networks(
        &self,
        req: Request<pb::ListNetworksRequest>,
    ) -> Result<Response<pb::ListNetworksResponse>, Status> {
        let networks = self.api.list(req.into_inner().filters).await?;
        Ok(Response::new(pb::ListNetworksResponse { networks }))
    }

    async fn connect_container(
        &self,
        req: Request<pb::ConnectContainerRequest>,
    ) -> Result<Response<pb::ConnectContainerResponse>, Status> {
        let endpoint = self.api.connect(req.into_inner()).await?;
        Ok(Response::new(pb::ConnectContainerResponse { endpoint: Some(endpoint) }))
    }

    async fn disconnect_container(
        &self,
        req: Request<pb::DisconnectContainerRequest>,
    ) -> Result<Response<pb::DisconnectContainerResponse>, Status> {
        let r = req.into_inner();
        self.api.disconnect(&r.container_id, &r.network).await?;
        Ok(Response::new(pb::DisconnectContainerResponse {}))
    }

    async fn create_network(
        &self,
        req: Request<pb::CreateNetworkRequest>,
    ) -> Result<Response<pb::CreateNetworkResponse>, Status> {
        let network = self.api.create(req.into_inner()).await?;
        Ok(Response::new(pb::CreateNetworkResponse { network: Some(network) }))
    }

    async fn inspect_network(
        &self,
        req: Request<pb::InspectNetworkRequest>,
    ) -> Result<Response<pb::InspectNetworkResponse>, Status> {
        let network = self.api.inspect(&req.into_inner().reference).await?;
        Ok(Response::new(pb::InspectNetworkResponse { network: Some(network) }))
    }

    async fn remove_network(
        &self,
        req: Request<pb::RemoveNetworkRequest>,
    ) -> Result<Response<pb::RemoveNetworkResponse>, Status> {
        self.api.remove(&req.into_inner().reference).await?;
        Ok(Response::new(pb::RemoveNetworkResponse {}))
    }

    async fn prune_networks(
        &self,
        req: Request<pb::PruneNetworksRequest>,
    ) -> Result<Response<pb::PruneNetworksResponse>, Status> {
        let deleted = self.api.prune(req.into_inner().filters).await?;
        Ok(Response::new(pb::PruneNetworksResponse { deleted }))
    }

    async fn publish_ports(
        &self,
        req: Request<pb::PublishPortsRequest>,
    ) -> Result<Response<pb::PublishPortsResponse>, Status> {
        let ports = self.api.publish(req.into_inner()).await?;
        Ok(Response::new(pb::PublishPortsResponse { ports }))
    }

    async fn rename_container(
        &self,
        req: Request<pb::RenameContainerRequest>,
    ) -> Result<Response<pb::RenameContainerResponse>, Status> {
        let r = req.into_inner();
        self.api.rename(&r.container_id, &r.name).await?;
        Ok(Response::new(pb::RenameContainerResponse {}))
    }
}

/// [`NetworkApi`] over a gRPC channel.
#[derive(Clone)]
pub struct NetworkGrpcClient {
    inner: pb::network_service_client::NetworkServiceClient<InterceptedService<Channel, RequestIdInterceptor>>,
}

impl NetworkGrpcClient {
    /// A client on `channel`.
    pub fn new(channel: Channel) -> Self {
        Self {
            inner: pb::network_service_client::NetworkServiceClient::with_interceptor(channel, RequestIdInterceptor),
        }
    }
}

fn err(s: Status) -> Error {
    status_to_error("network", s)
}

#[async_trait]
impl NetworkApi for NetworkGrpcClient {
    async fn list(&self, filters: Vec<Filter>) -> Result<Vec<pb::Network>> {
        let r = self.inner.clone().list_networks(pb::ListNetworksRequest { filters }).await.map_err(err)?;
        Ok(r.into_inner().networks)
    }

    async fn connect(&self, req: pb::ConnectContainerRequest) -> Result<pb::Endpoint> {
        let r = self.inner.clone().connect_container(req).await.map_err(err)?;
        r.into_inner().endpoint.ok_or_else(|| Error::internal("the network service answered without an endpoint"))
    }

    async fn disconnect(&self, container_id: &str, network: &str) -> Result<()> {
        let req = pb::DisconnectContainerRequest { container_id: container_id.into(), network: network.into() };
        self.inner.clone().disconnect_container(req).await.map_err(err)?;
        Ok(())
    }

    async fn create(&self, req: pb::CreateNetworkRequest) -> Result<pb::Network> {
        let r = self.inner.clone().create_network(req).await.map_err(err)?;
        r.into_inner().network.ok_or_else(|| Error::internal("the network service answered without a network"))
    }

    async fn inspect(&self, reference: &str) -> Result<pb::Network> {
        let req = pb::InspectNetworkRequest { reference: reference.into() };
        let r = self.inner.clone().inspect_network(req).await.map_err(err)?;
        r.into_inner().network.ok_or_else(|| Error::internal("the network service answered without a network"))
    }

    async fn remove(&self, reference: &str) -> Result<()> {
        self.inner
            .clone()
            .remove_network(pb::RemoveNetworkRequest { reference: reference.into() })
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn prune(&self, filters: Vec<Filter>) -> Result<Vec<String>> {
        let r = self.inner.clone().prune_networks(pb::PruneNetworksRequest { filters }).await.map_err(err)?;
        Ok(r.into_inner().deleted)
    }

    async fn publish(&self, req: pb::PublishPortsRequest) -> Result<Vec<pb::PortMapping>> {
        Ok(self.inner.clone().publish_ports(req).await.map_err(err)?.into_inner().ports)
    }

    async fn rename(&self, container_id: &str, name: &str) -> Result<()> {
        let req = pb::RenameContainerRequest { container_id: container_id.into(), name: name.into() };
        self.inner.clone().rename_container(req).await.map_err(err)?;
        Ok(())
    }
}
