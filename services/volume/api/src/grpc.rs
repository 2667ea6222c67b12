//! The volume service's gRPC adapters.

use std::sync::Arc;

use async_trait::async_trait;
use berth_core::grpc::{RequestIdInterceptor, status_to_error};
use berth_core::{Error, Result};
use berth_proto::types::v1::Filter;
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::{VolumeApi, pb};

/// Serves a [`VolumeApi`] over gRPC.
#[derive(Clone)]
pub struct VolumeGrpcServer {
    api: Arc<dyn VolumeApi>,
}

impl VolumeGrpcServer {
    /// The tonic service for `api`.
    pub fn service(api: Arc<dyn VolumeApi>) -> pb::volume_service_server::VolumeServiceServer<Self> {
        pb::volume_service_server::VolumeServiceServer::new(Self { api })
    }
}

#[tonic::async_trait]
impl pb::volume_service_server::VolumeService for VolumeGrpcServer {
    async fn list_volumes(
        &self,
        req: Request<pb::ListVolumesRequest>,
    ) -> Result<Response<pb::ListVolumesResponse>, Status> {
        let r = req.into_inner();
        let volumes = self.api.list(r.filters, r.with_size).await?;
        Ok(Response::new(pb::ListVolumesResponse { volumes }))
    }

    async fn create_volume(
        &self,
        req: Request<pb::CreateVolumeRequest>,
    ) -> Result<Response<pb::CreateVolumeResponse>, Status> {
        let volume = self.api.create(req.into_inner()).await?;
        Ok(Response::new(pb::CreateVolumeResponse { volume: Some(volume) }))
    }

    async fn inspect_volume(
        &self,
        req: Request<pb::InspectVolumeRequest>,
    ) -> Result<Response<pb::InspectVolumeResponse>, Status> {
        let volume = self.api.inspect(&req.into_inner().name).await?;
        Ok(Response::new(pb::InspectVolumeResponse { volume: Some(volume) }))
    }

    async fn remove_volume(
        &self,
        req: Request<pb::RemoveVolumeRequest>,
    ) -> Result<Response<pb::RemoveVolumeResponse>, Status> {
        let r = req.into_inner();
        self.api.remove(&r.name, r.force).await?;
        Ok(Response::new(pb::RemoveVolumeResponse {}))
    }

    async fn prune_volumes(
        &self,
        req: Request<pb::PruneVolumesRequest>,
    ) -> Result<Response<pb::PruneVolumesResponse>, Status> {
        Ok(Response::new(self.api.prune(req.into_inner().filters).await?))
    }

    async fn use_volume(&self, req: Request<pb::UseVolumeRequest>) -> Result<Response<pb::UseVolumeResponse>, Status> {
        let r = req.into_inner();
        let volume = self.api.use_volume(r.volume.unwrap_or_default(), &r.container_id).await?;
        Ok(Response::new(pb::UseVolumeResponse { volume: Some(volume) }))
    }

    async fn release_volumes(
        &self,
        req: Request<pb::ReleaseVolumesRequest>,
    ) -> Result<Response<pb::ReleaseVolumesResponse>, Status> {
        let r = req.into_inner();
        let removed = self.api.release(&r.container_id, r.remove_anonymous).await?;
        Ok(Response::new(pb::ReleaseVolumesResponse { removed }))
    }
}

/// [`VolumeApi`] over a gRPC channel.
#[derive(Clone)]
pub struct VolumeGrpcClient {
    inner: pb::volume_service_client::VolumeServiceClient<InterceptedService<Channel, RequestIdInterceptor>>,
}

impl VolumeGrpcClient {
    /// A client on `channel`.
    pub fn new(channel: Channel) -> Self {
        Self { inner: pb::volume_service_client::VolumeServiceClient::with_interceptor(channel, RequestIdInterceptor) }
    }
}

fn err(s: Status) -> Error {
    status_to_error("volume", s)
}

fn volume(v: Option<pb::Volume>) -> Result<pb::Volume> {
    v.ok_or_else(|| Error::internal("the volume service answered without a volume"))
}

#[async_trait]
impl VolumeApi for VolumeGrpcClient {
    async fn list(&self, filters: Vec<Filter>, with_size: bool) -> Result<Vec<pb::Volume>> {
        let r = self.inner.clone().list_volumes(pb::ListVolumesRequest { filters, with_size }).await.map_err(err)?;
        Ok(r.into_inner().volumes)
    }

    async fn create(&self, req: pb::CreateVolumeRequest) -> Result<pb::Volume> {
        volume(self.inner.clone().create_volume(req).await.map_err(err)?.into_inner().volume)
    }

    async fn inspect(&self, name: &str) -> Result<pb::Volume> {
        let req = pb::InspectVolumeRequest { name: name.into() };
        volume(self.inner.clone().inspect_volume(req).await.map_err(err)?.into_inner().volume)
    }

    async fn remove(&self, name: &str, force: bool) -> Result<()> {
        self.inner.clone().remove_volume(pb::RemoveVolumeRequest { name: name.into(), force }).await.map_err(err)?;
        Ok(())
    }

    async fn prune(&self, filters: Vec<Filter>) -> Result<pb::PruneVolumesResponse> {
        Ok(self.inner.clone().prune_volumes(pb::PruneVolumesRequest { filters }).await.map_err(err)?.into_inner())
    }

    async fn use_volume(&self, req: pb::CreateVolumeRequest, container_id: &str) -> Result<pb::Volume> {
        let req = pb::UseVolumeRequest { volume: Some(req), container_id: container_id.into() };
        volume(self.inner.clone().use_volume(req).await.map_err(err)?.into_inner().volume)
    }

    async fn release(&self, container_id: &str, remove_anonymous: bool) -> Result<Vec<String>> {
        let req = pb::ReleaseVolumesRequest { container_id: container_id.into(), remove_anonymous };
        Ok(self.inner.clone().release_volumes(req).await.map_err(err)?.into_inner().removed)
    }
}
