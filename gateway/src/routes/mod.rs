//! The route table, one module per Docker resource, and the request middleware.
//!
//! Every route is registered once; the `/v1.NN` prefix is stripped by
//! [`crate::version::layer`], which wraps the whole router. Unknown paths answer
//! dockerd's JSON 404, wrong methods a JSON 405.

mod archive;
mod build;
mod containers;
mod events;
mod images;
mod resources;
mod streams;
mod system;

pub(crate) use system::kernel_version;

use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::MatchedPath;
use axum::http::{Request, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use tracing::Instrument;

use crate::AppState;
use crate::error::message;

/// The whole API as one service: routes, tracing, version handling.
pub fn app(state: AppState) -> Router {
    let routes = Router::new()
        .merge(system::router())
        .merge(events::router())
        .merge(images::router())
        .merge(containers::router())
        .merge(archive::router())
        .merge(build::router())
        .merge(resources::router())
        .route_layer(middleware::from_fn_with_state(state.clone(), crate::authz::authorize))
        .route_layer(middleware::from_fn(trace))
        .fallback(|| async { message(StatusCode::NOT_FOUND, "page not found") })
        .method_not_allowed_fallback(|| async { message(StatusCode::METHOD_NOT_ALLOWED, "method not allowed") })
        .with_state(state);
    // The version layer must see the raw path, so it wraps the routed app.
    Router::new().fallback_service(routes).layer(middleware::from_fn(crate::version::layer))
}

/// One span per API request, with method, route, request ID, caller and, at
/// the end, status and duration. The request ID and the caller ride into the
/// gRPC calls made on its behalf, so split services log them too.
async fn trace(req: Request<Body>, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string()).unwrap_or_default();
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| berth_core::id::random_id()[..16].to_string());
    let caller = req
        .extensions()
        .get::<crate::authz::Identity>()
        .map(|i| if i.names.is_empty() { format!("anonymous@{}", i.source) } else { i.names.join(",") })
        .unwrap_or_default();
    let method = req.method().to_string();
    // Unmatched paths count as one route, so a scanner cannot grow the label set.
    let route_label = if route.is_empty() { "other".to_string() } else { route.clone() };
    let span = tracing::info_span!(
        "api",
        method = %method,
        route,
        request_id = %request_id,
        caller = %caller,
        otel.name = tracing::field::Empty,
        otel.kind = tracing::field::Empty,
        http.request.method = tracing::field::Empty,
        http.route = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
    );
    let traced = berth_core::telemetry::enabled();
    if traced {
        // The OpenTelemetry span's name and attributes (kept out of the logs
        // when traces are off).
        span.record("otel.name", format!("{method} {route_label}"));
        span.record("otel.kind", "server");
        span.record("http.request.method", method.as_str());
        span.record("http.route", route_label.as_str());
        // A client's W3C trace context (dockerd 26+ honours it too) makes this
        // request part of the client's trace.
        berth_core::telemetry::set_remote_parent(&span, req.headers());
    }
    let start = Instant::now();
    let served = berth_core::grpc::REQUEST_ID.scope(request_id, next.run(req).instrument(span.clone()));
    let resp = berth_core::grpc::CALLER.scope(caller, served).await;
    let status = resp.status().as_u16();
    if traced {
        span.record("http.response.status_code", status);
    }
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    let m = berth_core::metrics::global();
    let status_text = status.to_string();
    let labels = [("method", method.as_str()), ("route", route_label.as_str()), ("status", status_text.as_str())];
    m.inc("berth_api_requests_total", "Docker API requests, by method, route and status.", &labels, 1.0);
    m.observe(
        "berth_api_request_duration_seconds",
        "Time to the answer (streams: to their headers) of Docker API requests.",
        &labels[..2],
        ms / 1000.0,
    );
    span.in_scope(|| {
        if status >= 500 {
            tracing::warn!(status, ms, "request done");
        } else {
            tracing::info!(status, ms, "request done");
        }
    });
    resp
}

#[cfg(test)]
mod tests {
    //! The router against in-memory fakes of the service traits: no sockets.

    use std::sync::Arc;

    use async_trait::async_trait;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use berth_core::{ByteStream, Error, Result};
    use berth_image_api::{Filter, ImageApi, pb};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use crate::{AppState, DaemonInfo};

    struct FakeImages;

    #[async_trait]
    impl ImageApi for FakeImages {
        async fn list(&self, _all: bool, filters: Vec<Filter>) -> Result<Vec<pb::Image>> {
            if filters.iter().any(|f| f.key == "boom") {
                return Err(Error::unavailable("image service unavailable"));
            }
            Ok(vec![pb::Image { id: "sha256:aa".into(), repo_tags: vec!["a:1".into()], size: 5, ..Default::default() }])
        }
        async fn inspect(&self, reference: &str) -> Result<pb::Image> {
            Err(Error::not_found(format!("No such image: {reference}")))
        }
        async fn history(&self, _: &str) -> Result<Vec<pb::HistoryItem>> {
            Ok(vec![])
        }
        async fn tag(&self, _: &str, _: &str, _: &str) -> Result<()> {
            Err(Error::conflict("tag conflict"))
        }
        async fn remove(&self, _: &str, _: bool, _: bool) -> Result<Vec<pb::DeleteItem>> {
            Ok(vec![])
        }
        async fn prune(&self, _: pb::PruneImagesRequest) -> Result<pb::PruneImagesResponse> {
            Ok(pb::PruneImagesResponse::default())
        }
        async fn load(&self, _: ByteStream) -> Result<Vec<pb::LoadedImage>> {
            Err(Error::invalid("invalid archive: empty or not a tar file"))
        }
        async fn save(&self, _: Vec<String>) -> Result<ByteStream> {
            Err(Error::not_found("No such image: x"))
        }
        async fn import(&self, _: pb::ImportOptions, _: ByteStream) -> Result<String> {
            Ok("sha256:bb".into())
        }
        async fn commit(&self, _: pb::CommitOptions, _: ByteStream) -> Result<String> {
            Err(Error::unavailable("not in this test"))
        }
        async fn build(&self, _: pb::BuildOptions, _: ByteStream) -> Result<berth_image_api::BuildStream> {
            Err(Error::unavailable("not in this test"))
        }
        async fn store_info(&self) -> Result<pb::StoreInfoResponse> {
            Ok(pb::StoreInfoResponse::default())
        }
        async fn pull(&self, _: pb::PullImageRequest) -> Result<berth_image_api::ProgressStream> {
            Err(Error::unavailable("no registries in this test"))
        }
        async fn push(&self, _: pb::PushImageRequest) -> Result<berth_image_api::ProgressStream> {
            Err(Error::unavailable("no registries in this test"))
        }
        async fn login(&self, _: pb::RegistryAuth) -> Result<pb::LoginResponse> {
            Err(Error::unavailable("no registries in this test"))
        }
    }

    fn app() -> axum::Router {
        super::app(AppState {
            images: Arc::new(FakeImages),
            runtime: Arc::new(Unavailable),
            networks: Arc::new(Unavailable),
            volumes: Arc::new(Unavailable),
            events: vec![],
            info: Arc::new(DaemonInfo { data_root: "/d".into(), exec_root: "/e".into(), id: "x".into(), debug: false }),
            shutdown: Default::default(),
            authz: None,
        })
    }

    /// Every service but images answers "unavailable": these tests are about the image routes.
    struct Unavailable;
    #[async_trait]
    impl berth_runtime_api::RuntimeApi for Unavailable {
        async fn create(
            &self,
            _: berth_runtime_api::pb::CreateContainerRequest,
        ) -> Result<berth_runtime_api::pb::CreateContainerResponse> {
            Err(Error::unavailable("not in this test"))
        }
        async fn inspect(&self, _: &str) -> Result<berth_runtime_api::pb::Container> {
            Err(Error::unavailable("not in this test"))
        }
        async fn list(
            &self,
            _: bool,
            _: Vec<berth_runtime_api::Filter>,
            _: i64,
        ) -> Result<Vec<berth_runtime_api::pb::Container>> {
            Err(Error::unavailable("not in this test"))
        }
        async fn rename(&self, _: &str, _: &str) -> Result<()> {
            Err(Error::unavailable("not in this test"))
        }
        async fn remove(&self, _: &str, _: bool, _: bool) -> Result<()> {
            Err(Error::unavailable("not in this test"))
        }
        async fn image_in_use(&self, _: &str) -> Result<berth_runtime_api::pb::ImageInUseResponse> {
            Err(Error::unavailable("not in this test"))
        }
        async fn start(&self, _: &str) -> Result<bool> {
            Err(Error::unavailable("not in this test"))
        }
        async fn stop(&self, _: &str, _: i64, _: &str) -> Result<bool> {
            Err(Error::unavailable("not in this test"))
        }
        async fn kill(&self, _: &str, _: &str) -> Result<()> {
            Err(Error::unavailable("not in this test"))
        }
        async fn wait(&self, _: &str, _: &str) -> Result<berth_runtime_api::pb::WaitContainerResponse> {
            Err(Error::unavailable("not in this test"))
        }
        async fn logs(&self, _: berth_runtime_api::pb::ContainerLogsRequest) -> Result<berth_runtime_api::LogStream> {
            Err(Error::unavailable("not in this test"))
        }
        async fn attach(
            &self,
            _: berth_runtime_api::pb::AttachRequest,
            _: berth_runtime_api::InputStream,
        ) -> Result<berth_runtime_api::OutputStream> {
            Err(Error::unavailable("not in this test"))
        }
        async fn resize(&self, _: berth_runtime_api::pb::ResizeTtyRequest) -> Result<()> {
            Err(Error::unavailable("not in this test"))
        }
        async fn create_exec(&self, _: berth_runtime_api::pb::CreateExecRequest) -> Result<String> {
            Err(Error::unavailable("not in this test"))
        }
        async fn start_exec(
            &self,
            _: berth_runtime_api::pb::StartExecRequest,
            _: berth_runtime_api::InputStream,
        ) -> Result<berth_runtime_api::OutputStream> {
            Err(Error::unavailable("not in this test"))
        }
        async fn inspect_exec(&self, _: &str) -> Result<berth_runtime_api::pb::InspectExecResponse> {
            Err(Error::unavailable("not in this test"))
        }
        async fn prune(
            &self,
            _: Vec<berth_runtime_api::Filter>,
        ) -> Result<berth_runtime_api::pb::PruneContainersResponse> {
            Err(Error::unavailable("not in this test"))
        }
        async fn connect_network(&self, _: &str, _: &str, _: &[u8]) -> Result<()> {
            Err(Error::unavailable("not in this test"))
        }
        async fn disconnect_network(&self, _: &str, _: &str, _: bool) -> Result<()> {
            Err(Error::unavailable("not in this test"))
        }
        async fn pause(&self, _: &str, _: bool) -> Result<()> {
            Err(Error::unavailable("not in this test"))
        }
        async fn top(&self, _: &str, _: &str) -> Result<berth_runtime_api::pb::TopContainerResponse> {
            Err(Error::unavailable("not in this test"))
        }
        async fn stats(&self, _: &str) -> Result<Vec<u8>> {
            Err(Error::unavailable("not in this test"))
        }
        async fn update(&self, _: &str, _: &[u8]) -> Result<Vec<String>> {
            Err(Error::unavailable("not in this test"))
        }
        async fn restart(&self, _: &str, _: i64, _: &str) -> Result<()> {
            Err(Error::unavailable("not in this test"))
        }
        async fn size(&self, _: &str) -> Result<berth_runtime_api::pb::ContainerSizeResponse> {
            Err(Error::unavailable("not in this test"))
        }
        async fn runtime_info(&self) -> Result<berth_runtime_api::pb::RuntimeInfoResponse> {
            Err(Error::unavailable("not in this test"))
        }
        async fn changes(&self, _: &str) -> Result<Vec<berth_runtime_api::pb::Change>> {
            Err(Error::unavailable("not in this test"))
        }
        async fn export(&self, _: &str) -> Result<berth_core::ByteStream> {
            Err(Error::unavailable("not in this test"))
        }
        async fn stat_path(&self, _: &str, _: &str) -> Result<berth_runtime_api::pb::PathStat> {
            Err(Error::unavailable("not in this test"))
        }
        async fn get_archive(
            &self,
            _: &str,
            _: &str,
        ) -> Result<(berth_runtime_api::pb::PathStat, berth_core::ByteStream)> {
            Err(Error::unavailable("not in this test"))
        }
        async fn put_archive(
            &self,
            _: berth_runtime_api::pb::PutArchiveOptions,
            _: berth_core::ByteStream,
        ) -> Result<()> {
            Err(Error::unavailable("not in this test"))
        }
        async fn commit(&self, _: berth_runtime_api::pb::CommitContainerRequest) -> Result<String> {
            Err(Error::unavailable("not in this test"))
        }
    }
    #[async_trait]
    impl berth_network_api::NetworkApi for Unavailable {
        async fn list(&self, _: Vec<berth_network_api::Filter>) -> Result<Vec<berth_network_api::pb::Network>> {
            Err(Error::unavailable("not in this test"))
        }
        async fn connect(
            &self,
            _: berth_network_api::pb::ConnectContainerRequest,
        ) -> Result<berth_network_api::pb::Endpoint> {
            Err(Error::unavailable("not in this test"))
        }
        async fn disconnect(&self, _: &str, _: &str) -> Result<()> {
            Err(Error::unavailable("not in this test"))
        }
        async fn create(
            &self,
            _: berth_network_api::pb::CreateNetworkRequest,
        ) -> Result<berth_network_api::pb::Network> {
            Err(Error::unavailable("not in this test"))
        }
        async fn inspect(&self, _: &str) -> Result<berth_network_api::pb::Network> {
            Err(Error::unavailable("not in this test"))
        }
        async fn remove(&self, _: &str) -> Result<()> {
            Err(Error::unavailable("not in this test"))
        }
        async fn prune(&self, _: Vec<berth_network_api::Filter>) -> Result<Vec<String>> {
            Err(Error::unavailable("not in this test"))
        }
        async fn publish(
            &self,
            _: berth_network_api::pb::PublishPortsRequest,
        ) -> Result<Vec<berth_network_api::pb::PortMapping>> {
            Err(Error::unavailable("not in this test"))
        }
        async fn rename(&self, _: &str, _: &str) -> Result<()> {
            Err(Error::unavailable("not in this test"))
        }
    }
    #[async_trait]
    impl berth_volume_api::VolumeApi for Unavailable {
        async fn list(&self, _: Vec<berth_volume_api::Filter>, _: bool) -> Result<Vec<berth_volume_api::pb::Volume>> {
            Err(Error::unavailable("not in this test"))
        }
        async fn create(&self, _: berth_volume_api::pb::CreateVolumeRequest) -> Result<berth_volume_api::pb::Volume> {
            Err(Error::unavailable("not in this test"))
        }
        async fn inspect(&self, _: &str) -> Result<berth_volume_api::pb::Volume> {
            Err(Error::unavailable("not in this test"))
        }
        async fn remove(&self, _: &str, _: bool) -> Result<()> {
            Err(Error::unavailable("not in this test"))
        }
        async fn prune(&self, _: Vec<berth_volume_api::Filter>) -> Result<berth_volume_api::pb::PruneVolumesResponse> {
            Err(Error::unavailable("not in this test"))
        }
        async fn use_volume(
            &self,
            _: berth_volume_api::pb::CreateVolumeRequest,
            _: &str,
        ) -> Result<berth_volume_api::pb::Volume> {
            Err(Error::unavailable("not in this test"))
        }
        async fn release(&self, _: &str, _: bool) -> Result<Vec<String>> {
            Err(Error::unavailable("not in this test"))
        }
    }

    async fn call(method: &str, uri: &str) -> (StatusCode, serde_json::Value) {
        let req = Request::builder().method(method).uri(uri).body(Body::empty()).expect("request");
        let resp = app().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    }

    #[tokio::test]
    async fn errors_keep_their_kind_as_status() {
        assert_eq!(
            call("GET", "/v1.44/images/x/json").await,
            (StatusCode::NOT_FOUND, serde_json::json!({"message": "No such image: x"}))
        );
        assert_eq!(call("POST", "/images/x/tag?repo=y").await.0, StatusCode::CONFLICT);
        assert_eq!(call("POST", "/images/x/tag").await.0, StatusCode::BAD_REQUEST);
        assert_eq!(call("POST", "/images/load").await.0, StatusCode::BAD_REQUEST);
        let boom = "/images/json?filters=%7B%22boom%22%3A%5B%22x%22%5D%7D";
        assert_eq!(call("GET", boom).await.0, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            call("GET", "/v1.50/nope").await,
            (StatusCode::NOT_FOUND, serde_json::json!({"message": "page not found"}))
        );
    }

    #[tokio::test]
    async fn virtual_size_only_for_old_clients() {
        let (_, old) = call("GET", "/v1.43/images/json").await;
        assert_eq!(old[0]["VirtualSize"], 5);
        let (_, new) = call("GET", "/v1.44/images/json").await;
        assert!(new[0].get("VirtualSize").is_none());
        assert_eq!(new[0]["RepoTags"], serde_json::json!(["a:1"]));
    }

    #[tokio::test]
    async fn import_answers_json_lines() {
        let req =
            Request::builder().method("POST").uri("/images/create?fromSrc=-").body(Body::from("tar")).expect("req");
        let resp = app().oneshot(req).await.expect("infallible");
        assert_eq!(resp.status(), StatusCode::OK);
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(&bytes[..], b"{\"status\":\"sha256:bb\"}\n");
    }
}
