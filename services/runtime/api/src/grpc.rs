//! The runtime service's gRPC adapters: a server that delegates to a
//! [`RuntimeApi`], and a client that implements it.

use std::sync::Arc;

use async_trait::async_trait;
use berth_core::grpc::{RequestIdInterceptor, status_to_error};
use berth_core::{Error, Result};
use berth_proto::types::v1::Filter;
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

use crate::pb::runtime_service_client::RuntimeServiceClient;
use crate::pb::runtime_service_server::{RuntimeService, RuntimeServiceServer};
use crate::{RuntimeApi, pb};

/// A tar leaving the runtime over gRPC.
type ArchiveStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::ArchiveChunk, Status>> + Send>>;

fn archive_stream(bytes: crate::ByteStream) -> ArchiveStream {
    use futures::StreamExt;
    Box::pin(bytes.map(|r| r.map(|chunk| pb::ArchiveChunk { chunk }).map_err(Status::from)))
}

/// Serves a [`RuntimeApi`] over gRPC.
#[derive(Clone)]
pub struct RuntimeGrpcServer {
    api: Arc<dyn RuntimeApi>,
}

impl RuntimeGrpcServer {
    /// The tonic service for `api`.
    pub fn service(api: Arc<dyn RuntimeApi>) -> RuntimeServiceServer<Self> {
        RuntimeServiceServer::new(Self { api })
    }
}

#[tonic::async_trait]
impl RuntimeService for RuntimeGrpcServer {
    async fn create_container(
        &self,
        req: Request<pb::CreateContainerRequest>,
    ) -> Result<Response<pb::CreateContainerResponse>, Status> {
        Ok(Response::new(self.api.create(req.into_inner()).await?))
    }

    async fn inspect_container(
        &self,
        req: Request<pb::InspectContainerRequest>,
    ) -> Result<Response<pb::InspectContainerResponse>, Status> {
        let container = self.api.inspect(&req.into_inner().reference).await?;
        Ok(Response::new(pb::InspectContainerResponse { container: Some(container) }))
    }

    async fn list_containers(
        &self,
        req: Request<pb::ListContainersRequest>,
    ) -> Result<Response<pb::ListContainersResponse>, Status> {
        let r = req.into_inner();
        let containers = self.api.list(r.all, r.filters, r.limit).await?;
        Ok(Response::new(pb::ListContainersResponse { containers }))
    }

    async fn rename_container(
        &self,
        req: Request<pb::RenameContainerRequest>,
    ) -> Result<Response<pb::RenameContainerResponse>, Status> {
        let r = req.into_inner();
        self.api.rename(&r.reference, &r.new_name).await?;
        Ok(Response::new(pb::RenameContainerResponse {}))
    }

    async fn remove_container(
        &self,
        req: Request<pb::RemoveContainerRequest>,
    ) -> Result<Response<pb::RemoveContainerResponse>, Status> {
        let r = req.into_inner();
        self.api.remove(&r.reference, r.force, r.remove_volumes).await?;
        Ok(Response::new(pb::RemoveContainerResponse {}))
    }

    async fn start_container(
        &self,
        req: Request<pb::StartContainerRequest>,
    ) -> Result<Response<pb::StartContainerResponse>, Status> {
        let already_running = self.api.start(&req.into_inner().reference).await?;
        Ok(Response::new(pb::StartContainerResponse { already_running }))
    }

    async fn stop_container(
        &self,
        req: Request<pb::StopContainerRequest>,
    ) -> Result<Response<pb::StopContainerResponse>, Status> {
        let r = req.into_inner();
        let not_running = self.api.stop(&r.reference, r.timeout, &r.signal).await?;
        Ok(Response::new(pb::StopContainerResponse { not_running }))
    }

    async fn container_size(
        &self,
        req: Request<pb::ContainerSizeRequest>,
    ) -> Result<Response<pb::ContainerSizeResponse>, Status> {
        Ok(Response::new(self.api.size(&req.into_inner().reference).await?))
    }

    async fn runtime_info(
        &self,
        _: Request<pb::RuntimeInfoRequest>,
    ) -> Result<Response<pb::RuntimeInfoResponse>, Status> {
        Ok(Response::new(self.api.runtime_info().await?))
    }

    async fn container_changes(
        &self,
        req: Request<pb::ContainerChangesRequest>,
    ) -> Result<Response<pb::ContainerChangesResponse>, Status> {
        let changes = self.api.changes(&req.into_inner().reference).await?;
        Ok(Response::new(pb::ContainerChangesResponse { changes }))
    }

    type ExportContainerStream = ArchiveStream;

    async fn export_container(
        &self,
        req: Request<pb::ExportContainerRequest>,
    ) -> Result<Response<ArchiveStream>, Status> {
        Ok(Response::new(archive_stream(self.api.export(&req.into_inner().reference).await?)))
    }

    async fn stat_path(&self, req: Request<pb::ArchivePathRequest>) -> Result<Response<pb::PathStat>, Status> {
        let r = req.into_inner();
        Ok(Response::new(self.api.stat_path(&r.reference, &r.path).await?))
    }

    type GetArchiveStream =
        std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::GetArchiveResponse, Status>> + Send>>;

    async fn get_archive(
        &self,
        req: Request<pb::ArchivePathRequest>,
    ) -> Result<Response<Self::GetArchiveStream>, Status> {
        use futures::StreamExt;
        use pb::get_archive_response::Part;
        let r = req.into_inner();
        let (stat, bytes) = self.api.get_archive(&r.reference, &r.path).await?;
        let first = futures::stream::once(async move { Ok(pb::GetArchiveResponse { part: Some(Part::Stat(stat)) }) });
        let rest =
            bytes.map(|r| r.map(|c| pb::GetArchiveResponse { part: Some(Part::Chunk(c)) }).map_err(Status::from));
        Ok(Response::new(Box::pin(first.chain(rest))))
    }

    async fn commit_container(
        &self,
        req: Request<pb::CommitContainerRequest>,
    ) -> Result<Response<pb::CommitContainerResponse>, Status> {
        let id = self.api.commit(req.into_inner()).await?;
        Ok(Response::new(pb::CommitContainerResponse { id }))
    }

    async fn put_archive(
        &self,
        req: Request<Streaming<pb::PutArchiveRequest>>,
    ) -> Result<Response<pb::PutArchiveResponse>, Status> {
        use pb::put_archive_request::Part;
        let mut stream = req.into_inner();
        let Some(pb::PutArchiveRequest { part: Some(Part::Options(options)) }) = stream.message().await? else {
            return Err(Status::invalid_argument("the first archive message must carry the options"));
        };
        let input = berth_core::grpc::byte_chunks(stream, |m| match m.part {
            Some(Part::Chunk(c)) => Some(c),
            _ => None,
        });
        self.api.put_archive(options, input).await?;
        Ok(Response::new(pb::PutArchiveResponse {}))
    }

    async fn restart_container(
        &self,
        req: Request<pb::StopContainerRequest>,
    ) -> Result<Response<pb::RestartContainerResponse>, Status> {
        let r = req.into_inner();
        self.api.restart(&r.reference, r.timeout, &r.signal).await?;
        Ok(Response::new(pb::RestartContainerResponse {}))
    }

    async fn kill_container(
        &self,
        req: Request<pb::KillContainerRequest>,
    ) -> Result<Response<pb::KillContainerResponse>, Status> {
        let r = req.into_inner();
        self.api.kill(&r.reference, &r.signal).await?;
        Ok(Response::new(pb::KillContainerResponse {}))
    }

    async fn wait_container(
        &self,
        req: Request<pb::WaitContainerRequest>,
    ) -> Result<Response<pb::WaitContainerResponse>, Status> {
        let r = req.into_inner();
        Ok(Response::new(self.api.wait(&r.reference, &r.condition).await?))
    }

    type ContainerLogsStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::LogEntry, Status>> + Send>>;

    async fn container_logs(
        &self,
        req: Request<pb::ContainerLogsRequest>,
    ) -> Result<Response<Self::ContainerLogsStream>, Status> {
        use futures::StreamExt;
        let stream = self.api.logs(req.into_inner()).await?;
        Ok(Response::new(Box::pin(stream.map(|r| r.map_err(Status::from)))))
    }

    async fn image_in_use(
        &self,
        req: Request<pb::ImageInUseRequest>,
    ) -> Result<Response<pb::ImageInUseResponse>, Status> {
        Ok(Response::new(self.api.image_in_use(&req.into_inner().image_id).await?))
    }

    type AttachContainerStream = OutputStream;

    async fn attach_container(
        &self,
        req: Request<Streaming<pb::StreamInput>>,
    ) -> Result<Response<Self::AttachContainerStream>, Status> {
        let (first, input) = first_and_rest(req.into_inner()).await?;
        let Some(pb::stream_input::Kind::Attach(attach)) = first else {
            return Err(Status::invalid_argument("the first message must be the attach request"));
        };
        Ok(Response::new(outputs(self.api.attach(attach, input).await?)))
    }

    async fn resize_tty(&self, req: Request<pb::ResizeTtyRequest>) -> Result<Response<pb::ResizeTtyResponse>, Status> {
        self.api.resize(req.into_inner()).await?;
        Ok(Response::new(pb::ResizeTtyResponse {}))
    }

    async fn create_exec(
        &self,
        req: Request<pb::CreateExecRequest>,
    ) -> Result<Response<pb::CreateExecResponse>, Status> {
        Ok(Response::new(pb::CreateExecResponse { id: self.api.create_exec(req.into_inner()).await? }))
    }

    type StartExecStream = OutputStream;

    async fn start_exec(
        &self,
        req: Request<Streaming<pb::StreamInput>>,
    ) -> Result<Response<Self::StartExecStream>, Status> {
        let (first, input) = first_and_rest(req.into_inner()).await?;
        let Some(pb::stream_input::Kind::StartExec(start)) = first else {
            return Err(Status::invalid_argument("the first message must be the start_exec request"));
        };
        Ok(Response::new(outputs(self.api.start_exec(start, input).await?)))
    }

    async fn inspect_exec(
        &self,
        req: Request<pb::InspectExecRequest>,
    ) -> Result<Response<pb::InspectExecResponse>, Status> {
        Ok(Response::new(self.api.inspect_exec(&req.into_inner().exec_id).await?))
    }

    async fn prune_containers(
        &self,
        req: Request<pb::PruneContainersRequest>,
    ) -> Result<Response<pb::PruneContainersResponse>, Status> {
        Ok(Response::new(self.api.prune(req.into_inner().filters).await?))
    }

    async fn connect_network(
        &self,
        req: Request<pb::ConnectNetworkRequest>,
    ) -> Result<Response<pb::ConnectNetworkResponse>, Status> {
        let r = req.into_inner();
        self.api.connect_network(&r.reference, &r.network, &r.endpoint_config).await?;
        Ok(Response::new(pb::ConnectNetworkResponse {}))
    }

    async fn disconnect_network(
        &self,
        req: Request<pb::DisconnectNetworkRequest>,
    ) -> Result<Response<pb::DisconnectNetworkResponse>, Status> {
        let r = req.into_inner();
        self.api.disconnect_network(&r.reference, &r.network, r.force).await?;
        Ok(Response::new(pb::DisconnectNetworkResponse {}))
    }

    async fn pause_container(
        &self,
        req: Request<pb::PauseContainerRequest>,
    ) -> Result<Response<pb::PauseContainerResponse>, Status> {
        let r = req.into_inner();
        self.api.pause(&r.reference, r.unpause).await?;
        Ok(Response::new(pb::PauseContainerResponse {}))
    }

    async fn top_container(
        &self,
        req: Request<pb::TopContainerRequest>,
    ) -> Result<Response<pb::TopContainerResponse>, Status> {
        let r = req.into_inner();
        Ok(Response::new(self.api.top(&r.reference, &r.ps_args).await?))
    }

    async fn container_stats(
        &self,
        req: Request<pb::ContainerStatsRequest>,
    ) -> Result<Response<pb::ContainerStatsResponse>, Status> {
        let stats = self.api.stats(&req.into_inner().reference).await?;
        Ok(Response::new(pb::ContainerStatsResponse { stats }))
    }

    async fn update_container(
        &self,
        req: Request<pb::UpdateContainerRequest>,
    ) -> Result<Response<pb::UpdateContainerResponse>, Status> {
        let r = req.into_inner();
        let warnings = self.api.update(&r.reference, &r.config).await?;
        Ok(Response::new(pb::UpdateContainerResponse { warnings }))
    }
}

type OutputStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::StreamOutput, Status>> + Send>>;

fn outputs(out: crate::OutputStream) -> OutputStream {
    use futures::StreamExt;
    Box::pin(out.map(|r| r.map_err(Status::from)))
}

/// Splits a client stream into its first message (the request) and the rest
/// (input), which ends at the client's end of stream or at a transport error.
async fn first_and_rest(
    mut input: Streaming<pb::StreamInput>,
) -> Result<(Option<pb::stream_input::Kind>, crate::InputStream), Status> {
    use futures::StreamExt;
    let first = input.message().await?.and_then(|m| m.kind);
    let rest = input.take_while(|r| futures::future::ready(r.is_ok())).filter_map(|r| futures::future::ready(r.ok()));
    Ok((first, Box::pin(rest)))
}

/// [`RuntimeApi`] over a gRPC channel.
#[derive(Clone)]
pub struct RuntimeGrpcClient {
    inner: RuntimeServiceClient<InterceptedService<Channel, RequestIdInterceptor>>,
}

impl RuntimeGrpcClient {
    /// A client on `channel`.
    pub fn new(channel: Channel) -> Self {
        Self { inner: RuntimeServiceClient::with_interceptor(channel, RequestIdInterceptor) }
    }
}

fn err(status: Status) -> Error {
    status_to_error("runtime", status)
}

#[async_trait]
impl RuntimeApi for RuntimeGrpcClient {
    async fn create(&self, req: pb::CreateContainerRequest) -> Result<pb::CreateContainerResponse> {
        Ok(self.inner.clone().create_container(req).await.map_err(err)?.into_inner())
    }

    async fn inspect(&self, reference: &str) -> Result<pb::Container> {
        let r = self
            .inner
            .clone()
            .inspect_container(pb::InspectContainerRequest { reference: reference.into() })
            .await
            .map_err(err)?;
        r.into_inner().container.ok_or_else(|| Error::internal("runtime service answered without a container"))
    }

    async fn list(&self, all: bool, filters: Vec<Filter>, limit: i64) -> Result<Vec<pb::Container>> {
        let r =
            self.inner.clone().list_containers(pb::ListContainersRequest { all, filters, limit }).await.map_err(err)?;
        Ok(r.into_inner().containers)
    }

    async fn rename(&self, reference: &str, new_name: &str) -> Result<()> {
        self.inner
            .clone()
            .rename_container(pb::RenameContainerRequest { reference: reference.into(), new_name: new_name.into() })
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn remove(&self, reference: &str, force: bool, remove_volumes: bool) -> Result<()> {
        self.inner
            .clone()
            .remove_container(pb::RemoveContainerRequest { reference: reference.into(), force, remove_volumes })
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn start(&self, reference: &str) -> Result<bool> {
        let r = self
            .inner
            .clone()
            .start_container(pb::StartContainerRequest { reference: reference.into() })
            .await
            .map_err(err)?;
        Ok(r.into_inner().already_running)
    }

    async fn stop(&self, reference: &str, timeout: i64, signal: &str) -> Result<bool> {
        let req = pb::StopContainerRequest { reference: reference.into(), timeout, signal: signal.into() };
        Ok(self.inner.clone().stop_container(req).await.map_err(err)?.into_inner().not_running)
    }

    async fn size(&self, reference: &str) -> Result<pb::ContainerSizeResponse> {
        let req = pb::ContainerSizeRequest { reference: reference.into() };
        Ok(self.inner.clone().container_size(req).await.map_err(err)?.into_inner())
    }

    async fn runtime_info(&self) -> Result<pb::RuntimeInfoResponse> {
        Ok(self.inner.clone().runtime_info(pb::RuntimeInfoRequest {}).await.map_err(err)?.into_inner())
    }

    async fn changes(&self, reference: &str) -> Result<Vec<pb::Change>> {
        let req = pb::ContainerChangesRequest { reference: reference.into() };
        Ok(self.inner.clone().container_changes(req).await.map_err(err)?.into_inner().changes)
    }

    async fn export(&self, reference: &str) -> Result<crate::ByteStream> {
        use futures::StreamExt;
        let req = pb::ExportContainerRequest { reference: reference.into() };
        let stream = self.inner.clone().export_container(req).await.map_err(err)?.into_inner();
        Ok(Box::pin(stream.map(|m| m.map(|m| m.chunk).map_err(err))))
    }

    async fn stat_path(&self, reference: &str, path: &str) -> Result<pb::PathStat> {
        let req = pb::ArchivePathRequest { reference: reference.into(), path: path.into() };
        Ok(self.inner.clone().stat_path(req).await.map_err(err)?.into_inner())
    }

    async fn get_archive(&self, reference: &str, path: &str) -> Result<(pb::PathStat, crate::ByteStream)> {
        use futures::StreamExt;
        use pb::get_archive_response::Part;
        let req = pb::ArchivePathRequest { reference: reference.into(), path: path.into() };
        let mut stream = self.inner.clone().get_archive(req).await.map_err(err)?.into_inner();
        let Some(pb::GetArchiveResponse { part: Some(Part::Stat(stat)) }) = stream.message().await.map_err(err)? else {
            return Err(Error::internal("the runtime sent an archive without its stat"));
        };
        let bytes = stream.filter_map(|m| {
            futures::future::ready(match m {
                Ok(pb::GetArchiveResponse { part: Some(Part::Chunk(c)) }) => Some(Ok(c)),
                Ok(_) => None,
                Err(e) => Some(Err(err(e))),
            })
        });
        Ok((stat, Box::pin(bytes)))
    }

    async fn commit(&self, req: pb::CommitContainerRequest) -> Result<String> {
        Ok(self.inner.clone().commit_container(req).await.map_err(err)?.into_inner().id)
    }

    async fn put_archive(&self, options: pb::PutArchiveOptions, input: crate::ByteStream) -> Result<()> {
        use pb::put_archive_request::Part;
        let first = pb::PutArchiveRequest { part: Some(Part::Options(options)) };
        let reqs = berth_core::grpc::byte_requests(
            input,
            |c| pb::PutArchiveRequest { part: Some(Part::Chunk(c)) },
            Some(first),
        );
        self.inner.clone().put_archive(reqs).await.map_err(err)?;
        Ok(())
    }

    async fn restart(&self, reference: &str, timeout: i64, signal: &str) -> Result<()> {
        let req = pb::StopContainerRequest { reference: reference.into(), timeout, signal: signal.into() };
        self.inner.clone().restart_container(req).await.map_err(err)?;
        Ok(())
    }

    async fn kill(&self, reference: &str, signal: &str) -> Result<()> {
        let req = pb::KillContainerRequest { reference: reference.into(), signal: signal.into() };
        self.inner.clone().kill_container(req).await.map_err(err)?;
        Ok(())
    }

    async fn wait(&self, reference: &str, condition: &str) -> Result<pb::WaitContainerResponse> {
        let req = pb::WaitContainerRequest { reference: reference.into(), condition: condition.into() };
        Ok(self.inner.clone().wait_container(req).await.map_err(err)?.into_inner())
    }

    async fn logs(&self, req: pb::ContainerLogsRequest) -> Result<crate::LogStream> {
        use futures::StreamExt;
        let stream = self.inner.clone().container_logs(req).await.map_err(err)?.into_inner();
        Ok(Box::pin(stream.map(|r| r.map_err(err))))
    }

    async fn image_in_use(&self, image_id: &str) -> Result<pb::ImageInUseResponse> {
        let r =
            self.inner.clone().image_in_use(pb::ImageInUseRequest { image_id: image_id.into() }).await.map_err(err)?;
        Ok(r.into_inner())
    }

    async fn attach(&self, req: pb::AttachRequest, input: crate::InputStream) -> Result<crate::OutputStream> {
        let first = pb::StreamInput { kind: Some(pb::stream_input::Kind::Attach(req)) };
        let out = self.inner.clone().attach_container(with_first(first, input)).await.map_err(err)?;
        Ok(client_outputs(out.into_inner()))
    }

    async fn resize(&self, req: pb::ResizeTtyRequest) -> Result<()> {
        self.inner.clone().resize_tty(req).await.map_err(err)?;
        Ok(())
    }

    async fn create_exec(&self, req: pb::CreateExecRequest) -> Result<String> {
        Ok(self.inner.clone().create_exec(req).await.map_err(err)?.into_inner().id)
    }

    async fn start_exec(&self, req: pb::StartExecRequest, input: crate::InputStream) -> Result<crate::OutputStream> {
        let first = pb::StreamInput { kind: Some(pb::stream_input::Kind::StartExec(req)) };
        let out = self.inner.clone().start_exec(with_first(first, input)).await.map_err(err)?;
        Ok(client_outputs(out.into_inner()))
    }

    async fn inspect_exec(&self, exec_id: &str) -> Result<pb::InspectExecResponse> {
        let req = pb::InspectExecRequest { exec_id: exec_id.into() };
        Ok(self.inner.clone().inspect_exec(req).await.map_err(err)?.into_inner())
    }

    async fn prune(&self, filters: Vec<Filter>) -> Result<pb::PruneContainersResponse> {
        let req = pb::PruneContainersRequest { filters };
        Ok(self.inner.clone().prune_containers(req).await.map_err(err)?.into_inner())
    }

    async fn connect_network(&self, reference: &str, network: &str, endpoint_config: &[u8]) -> Result<()> {
        let req = pb::ConnectNetworkRequest {
            reference: reference.into(),
            network: network.into(),
            endpoint_config: endpoint_config.to_vec(),
        };
        self.inner.clone().connect_network(req).await.map_err(err)?;
        Ok(())
    }

    async fn disconnect_network(&self, reference: &str, network: &str, force: bool) -> Result<()> {
        let req = pb::DisconnectNetworkRequest { reference: reference.into(), network: network.into(), force };
        self.inner.clone().disconnect_network(req).await.map_err(err)?;
        Ok(())
    }

    async fn pause(&self, reference: &str, unpause: bool) -> Result<()> {
        let req = pb::PauseContainerRequest { reference: reference.into(), unpause };
        self.inner.clone().pause_container(req).await.map_err(err)?;
        Ok(())
    }

    async fn top(&self, reference: &str, ps_args: &str) -> Result<pb::TopContainerResponse> {
        let req = pb::TopContainerRequest { reference: reference.into(), ps_args: ps_args.into() };
        Ok(self.inner.clone().top_container(req).await.map_err(err)?.into_inner())
    }

    async fn stats(&self, reference: &str) -> Result<Vec<u8>> {
        let req = pb::ContainerStatsRequest { reference: reference.into() };
        Ok(self.inner.clone().container_stats(req).await.map_err(err)?.into_inner().stats)
    }

    async fn update(&self, reference: &str, config: &[u8]) -> Result<Vec<String>> {
        let req = pb::UpdateContainerRequest { reference: reference.into(), config: config.to_vec() };
        Ok(self.inner.clone().update_container(req).await.map_err(err)?.into_inner().warnings)
    }
}

fn with_first(
    first: pb::StreamInput,
    rest: crate::InputStream,
) -> impl futures::Stream<Item = pb::StreamInput> + Send + 'static {
    use futures::StreamExt;
    futures::stream::once(futures::future::ready(first)).chain(rest)
}

fn client_outputs(out: Streaming<pb::StreamOutput>) -> crate::OutputStream {
    use futures::StreamExt;
    Box::pin(out.map(|r| r.map_err(err)))
}
