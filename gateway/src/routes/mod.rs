//! The route table, one module per Docker resource, and the request middleware.
//!
//! Every route is registered once; the `/v1.NN` prefix is stripped by
//! [`crate::version::layer`], which wraps the whole router. Unknown paths answer
//! dockerd's JSON 404, wrong methods a JSON 405.

mod containers;
mod images;
mod system;

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
        .merge(images::router())
        .merge(containers::router())
        .route_layer(middleware::from_fn(trace))
        .fallback(|| async { message(StatusCode::NOT_FOUND, "page not found") })
        .method_not_allowed_fallback(|| async {
            message(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        })
        .with_state(state);
    // The version layer must see the raw path, so it wraps the routed app.
    Router::new()
        .fallback_service(routes)
        .layer(middleware::from_fn(crate::version::layer))
}

/// One span per API request, with method, route, request ID and, at the end,
/// status and duration. The request ID rides into gRPC calls made on its behalf.
async fn trace(req: Request<Body>, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| berth_core::id::random_id()[..16].to_string());
    let span = tracing::info_span!("api", method = %req.method(), route, request_id = %request_id);
    let start = Instant::now();
    let resp = berth_core::grpc::REQUEST_ID
        .scope(request_id, next.run(req).instrument(span.clone()))
        .await;
    let status = resp.status().as_u16();
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| {
        if status >= 500 {
            tracing::warn!(status, ms, "request done");
        } else {
            tracing::info!(status, ms, "request done");
        }
    });
    resp
}
