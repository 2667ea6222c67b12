//! The gRPC server adapter: every method unpacks the request, calls [`ImageApi`]
//! and packs the answer. No logic lives here.

use std::pin::Pin;
use std::sync::Arc;

use berth_core::grpc::byte_chunks;
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::pb::image_service_server::{ImageService, ImageServiceServer};
use crate::{ImageApi, pb};

/// Serves an [`ImageApi`] over gRPC.
#[derive(Clone)]
pub struct ImageGrpcServer {
    api: Arc<dyn ImageApi>,
}

impl ImageGrpcServer {
    /// The tonic service for `api`.
    pub fn service(api: Arc<dyn ImageApi>) -> ImageServiceServer<Self> {
        ImageServiceServer::new(Self { api }).max_decoding_message_size(16 * 1024 * 1024)
    }
}

type SaveStream = Pin<Box<dyn Stream<Item = Result<pb::SaveImagesResponse, Status>> + Send>>;
type ProgressStream = Pin<Box<dyn Stream<Item = Result<pb::Progress, Status>> + Send>>;

fn progress(s: crate::ProgressStream) -> ProgressStream {
    Box::pin(s.map(|r| r.map_err(Status::from)))
}

#[tonic::async_trait]
impl ImageService for ImageGrpcServer {
    async fn list_images(
        &self,
        req: Request<pb::ListImagesRequest>,
    ) -> Result<Response<pb::ListImagesResponse>, Status> {
        let r = req.into_inner();
        let images = self.api.list(r.all, r.filters).await?;
        Ok(Response::new(pb::ListImagesResponse { images }))
    }

    async fn inspect_image(
        &self,
        req: Request<pb::InspectImageRequest>,
    ) -> Result<Response<pb::InspectImageResponse>, Status> {
        let image = self.api.inspect(&req.into_inner().reference).await?;
        Ok(Response::new(pb::InspectImageResponse { image: Some(image) }))
    }

    async fn image_history(
        &self,
        req: Request<pb::ImageHistoryRequest>,
    ) -> Result<Response<pb::ImageHistoryResponse>, Status> {
        let items = self.api.history(&req.into_inner().reference).await?;
        Ok(Response::new(pb::ImageHistoryResponse { items }))
    }

    async fn tag_image(&self, req: Request<pb::TagImageRequest>) -> Result<Response<pb::TagImageResponse>, Status> {
        let r = req.into_inner();
        self.api.tag(&r.source, &r.repo, &r.tag).await?;
        Ok(Response::new(pb::TagImageResponse {}))
    }

    async fn remove_image(
        &self,
        req: Request<pb::RemoveImageRequest>,
    ) -> Result<Response<pb::RemoveImageResponse>, Status> {
        let r = req.into_inner();
        let items = self.api.remove(&r.reference, r.force, r.keep_image).await?;
        Ok(Response::new(pb::RemoveImageResponse { items }))
    }

    async fn prune_images(
        &self,
        req: Request<pb::PruneImagesRequest>,
    ) -> Result<Response<pb::PruneImagesResponse>, Status> {
        Ok(Response::new(self.api.prune(req.into_inner()).await?))
    }

    async fn load_images(
        &self,
        req: Request<Streaming<pb::LoadImagesRequest>>,
    ) -> Result<Response<pb::LoadImagesResponse>, Status> {
        let input = byte_chunks(req.into_inner(), |m| Some(m.chunk));
        let images = self.api.load(input).await?;
        Ok(Response::new(pb::LoadImagesResponse { images }))
    }

    type SaveImagesStream = SaveStream;

    async fn save_images(&self, req: Request<pb::SaveImagesRequest>) -> Result<Response<SaveStream>, Status> {
        let out = self.api.save(req.into_inner().names).await?;
        let stream = out.map(|r| r.map(|chunk| pb::SaveImagesResponse { chunk }).map_err(Status::from));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn import_image(
        &self,
        req: Request<Streaming<pb::ImportImageRequest>>,
    ) -> Result<Response<pb::ImportImageResponse>, Status> {
        let mut stream = req.into_inner();
        let options = match stream.message().await? {
            Some(pb::ImportImageRequest { part: Some(pb::import_image_request::Part::Options(o)) }) => o,
            _ => {
                return Err(Status::invalid_argument("the first import message must carry the options"));
            }
        };
        let input = byte_chunks(stream, |m| match m.part {
            Some(pb::import_image_request::Part::Chunk(c)) => Some(c),
            _ => None,
        });
        let id = self.api.import(options, input).await?;
        Ok(Response::new(pb::ImportImageResponse { id }))
    }

    type BuildImageStream = Pin<Box<dyn Stream<Item = Result<pb::BuildMessage, Status>> + Send>>;

    async fn build_image(
        &self,
        req: Request<Streaming<pb::BuildRequest>>,
    ) -> Result<Response<Self::BuildImageStream>, Status> {
        use pb::build_request::Part;
        let mut stream = req.into_inner();
        let Some(pb::BuildRequest { part: Some(Part::Options(options)) }) = stream.message().await? else {
            return Err(Status::invalid_argument("the first build message must carry the options"));
        };
        let input = byte_chunks(stream, |m| match m.part {
            Some(Part::Chunk(c)) => Some(c),
            _ => None,
        });
        let out = self.api.build(options, input).await?;
        Ok(Response::new(Box::pin(out.map(|r| r.map_err(Status::from)))))
    }

    async fn commit_image(
        &self,
        req: Request<Streaming<pb::CommitImageRequest>>,
    ) -> Result<Response<pb::CommitImageResponse>, Status> {
        use pb::commit_image_request::Part;
        let mut stream = req.into_inner();
        let Some(pb::CommitImageRequest { part: Some(Part::Options(options)) }) = stream.message().await? else {
            return Err(Status::invalid_argument("the first commit message must carry the options"));
        };
        let input = byte_chunks(stream, |m| match m.part {
            Some(Part::Chunk(c)) => Some(c),
            _ => None,
        });
        let id = self.api.commit(options, input).await?;
        Ok(Response::new(pb::CommitImageResponse { id }))
    }

    async fn store_info(&self, _req: Request<pb::StoreInfoRequest>) -> Result<Response<pb::StoreInfoResponse>, Status> {
        Ok(Response::new(self.api.store_info().await?))
    }

    type PullImageStream = ProgressStream;

    async fn pull_image(&self, req: Request<pb::PullImageRequest>) -> Result<Response<ProgressStream>, Status> {
        Ok(Response::new(progress(self.api.pull(req.into_inner()).await?)))
    }

    type PushImageStream = ProgressStream;

    async fn push_image(&self, req: Request<pb::PushImageRequest>) -> Result<Response<ProgressStream>, Status> {
        Ok(Response::new(progress(self.api.push(req.into_inner()).await?)))
    }

    async fn login(&self, req: Request<pb::LoginRequest>) -> Result<Response<pb::LoginResponse>, Status> {
        let auth = req.into_inner().auth.unwrap_or_default();
        Ok(Response::new(self.api.login(auth).await?))
    }
}
