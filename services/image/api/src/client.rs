//! The gRPC client adapter: an [`ImageApi`] backed by a remote image service.
//! gRPC statuses turn back into Berth errors of the same kind.

use async_trait::async_trait;
use berth_core::grpc::{RequestIdInterceptor, byte_requests, status_to_error};
use berth_core::{ByteStream, Error, Result};
use futures::StreamExt;
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;

use crate::pb::image_service_client::ImageServiceClient;
use crate::{Filter, ImageApi, pb};

/// [`ImageApi`] over a gRPC channel.
#[derive(Clone)]
pub struct ImageGrpcClient {
    inner: ImageServiceClient<InterceptedService<Channel, RequestIdInterceptor>>,
}

impl ImageGrpcClient {
    /// A client on `channel`.
    pub fn new(channel: Channel) -> Self {
        let inner = ImageServiceClient::with_interceptor(channel, RequestIdInterceptor)
            .max_decoding_message_size(16 * 1024 * 1024);
        Self { inner }
    }
}

fn err(status: tonic::Status) -> Error {
    status_to_error("image", status)
}

#[async_trait]
impl ImageApi for ImageGrpcClient {
    async fn list(&self, all: bool, filters: Vec<Filter>) -> Result<Vec<pb::Image>> {
        let r = self.inner.clone().list_images(pb::ListImagesRequest { all, filters }).await.map_err(err)?;
        Ok(r.into_inner().images)
    }

    async fn inspect(&self, reference: &str) -> Result<pb::Image> {
        let r = self
            .inner
            .clone()
            .inspect_image(pb::InspectImageRequest { reference: reference.into() })
            .await
            .map_err(err)?;
        r.into_inner().image.ok_or_else(|| Error::internal("image service answered without an image"))
    }

    async fn history(&self, reference: &str) -> Result<Vec<pb::HistoryItem>> {
        let r = self
            .inner
            .clone()
            .image_history(pb::ImageHistoryRequest { reference: reference.into() })
            .await
            .map_err(err)?;
        Ok(r.into_inner().items)
    }

    async fn tag(&self, source: &str, repo: &str, tag: &str) -> Result<()> {
        self.inner
            .clone()
            .tag_image(pb::TagImageRequest { source: source.into(), repo: repo.into(), tag: tag.into() })
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn remove(&self, reference: &str, force: bool, keep_image: bool) -> Result<Vec<pb::DeleteItem>> {
        let r = self
            .inner
            .clone()
            .remove_image(pb::RemoveImageRequest { reference: reference.into(), force, no_prune: false, keep_image })
            .await
            .map_err(err)?;
        Ok(r.into_inner().items)
    }

    async fn prune(&self, req: pb::PruneImagesRequest) -> Result<pb::PruneImagesResponse> {
        let r = self.inner.clone().prune_images(req).await.map_err(err)?;
        Ok(r.into_inner())
    }

    async fn load(&self, input: ByteStream) -> Result<Vec<pb::LoadedImage>> {
        let reqs = byte_requests(input, |chunk| pb::LoadImagesRequest { chunk }, None);
        let r = self.inner.clone().load_images(reqs).await.map_err(err)?;
        Ok(r.into_inner().images)
    }

    async fn save(&self, names: Vec<String>) -> Result<ByteStream> {
        let r = self.inner.clone().save_images(pb::SaveImagesRequest { names }).await.map_err(err)?;
        Ok(Box::pin(r.into_inner().map(|m| m.map(|m| m.chunk).map_err(err))))
    }

    async fn import(&self, options: pb::ImportOptions, input: ByteStream) -> Result<String> {
        use pb::import_image_request::Part;
        let first = pb::ImportImageRequest { part: Some(Part::Options(options)) };
        let reqs = byte_requests(input, |c| pb::ImportImageRequest { part: Some(Part::Chunk(c)) }, Some(first));
        let r = self.inner.clone().import_image(reqs).await.map_err(err)?;
        Ok(r.into_inner().id)
    }

    async fn build(&self, options: pb::BuildOptions, input: ByteStream) -> Result<crate::BuildStream> {
        use pb::build_request::Part;
        let first = pb::BuildRequest { part: Some(Part::Options(options)) };
        let reqs = byte_requests(input, |c| pb::BuildRequest { part: Some(Part::Chunk(c)) }, Some(first));
        let r = self.inner.clone().build_image(reqs).await.map_err(err)?;
        Ok(Box::pin(r.into_inner().map(|m| m.map_err(err))))
    }

    async fn commit(&self, options: pb::CommitOptions, input: ByteStream) -> Result<String> {
        use pb::commit_image_request::Part;
        let first = pb::CommitImageRequest { part: Some(Part::Options(options)) };
        let reqs = byte_requests(input, |c| pb::CommitImageRequest { part: Some(Part::Chunk(c)) }, Some(first));
        let r = self.inner.clone().commit_image(reqs).await.map_err(err)?;
        Ok(r.into_inner().id)
    }

    async fn store_info(&self) -> Result<pb::StoreInfoResponse> {
        let r = self.inner.clone().store_info(pb::StoreInfoRequest {}).await.map_err(err)?;
        Ok(r.into_inner())
    }

    async fn pull(&self, req: pb::PullImageRequest) -> Result<crate::ProgressStream> {
        let r = self.inner.clone().pull_image(req).await.map_err(err)?;
        Ok(Box::pin(r.into_inner().map(|m| m.map_err(err))))
    }

    async fn push(&self, req: pb::PushImageRequest) -> Result<crate::ProgressStream> {
        let r = self.inner.clone().push_image(req).await.map_err(err)?;
        Ok(Box::pin(r.into_inner().map(|m| m.map_err(err))))
    }

    async fn login(&self, auth: pb::RegistryAuth) -> Result<pb::LoginResponse> {
        let r = self.inner.clone().login(pb::LoginRequest { auth: Some(auth) }).await.map_err(err)?;
        Ok(r.into_inner())
    }
}
