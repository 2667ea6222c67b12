//! ImageBuild: `POST /build`, the classic builder (`DOCKER_BUILDKIT=0 docker
//! build`, docker-py's `images.build`, compose's `build:`). The body is the
//! context tar; the answer streams dockerd's JSON lines as the build goes:
//! `{"stream": "Step 1/3 : FROM busybox\n"}`, `{"aux": {"ID": "sha256:..."}}`,
//! `{"stream": "Successfully built ..."}`, and a failure as `{"errorDetail":
//! ..., "error": ...}` after the output that led to it.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use axum::response::Response;
use axum::routing::post;
use berth_core::Error;
use berth_image_api::pb;
use futures::StreamExt;
use serde_json::{Value, json};

use super::images::{base64_header, body_stream, registry_auth_of};
use crate::AppState;
use crate::error::ApiResult;
use crate::params::Params;

pub fn router() -> Router<AppState> {
    Router::new().route("/build", post(post_build))
}

/// A JSON map parameter (`buildargs`, `labels`): null values are left out.
fn json_map(p: &Params, key: &str) -> Result<std::collections::HashMap<String, String>, Error> {
    let Some(raw) = p.get(key).filter(|s| !s.is_empty()) else { return Ok(Default::default()) };
    let map: std::collections::HashMap<String, Option<String>> =
        serde_json::from_str(raw).map_err(|e| Error::invalid(format!("invalid {key}: {e}")))?;
    Ok(map.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect())
}

/// `X-Registry-Config`: base64url JSON of registry -> AuthConfig.
fn registry_config(headers: &HeaderMap) -> Result<std::collections::HashMap<String, pb::RegistryAuth>, Error> {
    let Some(bytes) = base64_header(headers, "X-Registry-Config")? else { return Ok(Default::default()) };
    let map: std::collections::HashMap<String, berth_models::image::AuthConfig> = serde_json::from_slice(&bytes)
        .map_err(|_| Error::invalid("invalid X-Registry-Config header: not a map of AuthConfig"))?;
    Ok(map.into_iter().map(|(k, v)| (k, registry_auth_of(v))).collect())
}

fn message_json(m: &pb::BuildMessage) -> Value {
    match &m.kind {
        Some(pb::build_message::Kind::Stream(s)) => json!({"stream": s}),
        Some(pb::build_message::Kind::AuxId(id)) => json!({"aux": {"ID": id}}),
        None => json!({}),
    }
}

async fn post_build(State(s): State<AppState>, uri: Uri, headers: HeaderMap, body: Body) -> ApiResult<Response> {
    let p = Params::parse(uri.query());
    let cache_from: Vec<String> = match p.get("cachefrom").filter(|s| !s.is_empty()) {
        Some(raw) => serde_json::from_str(raw).map_err(|e| Error::invalid(format!("invalid cachefrom: {e}")))?,
        None => vec![],
    };
    let options = pb::BuildOptions {
        tags: p.all("t"),
        dockerfile: p.get("dockerfile").unwrap_or_default().to_string(),
        build_args: json_map(&p, "buildargs")?,
        target: p.get("target").unwrap_or_default().to_string(),
        labels: json_map(&p, "labels")?,
        no_cache: p.bool("nocache"),
        // Intermediate containers go unless told otherwise (dockerd's default).
        rm: p.get("rm").is_none_or(|v| v.is_empty() || p.bool("rm")),
        force_rm: p.bool("forcerm"),
        pull: p.bool("pull"),
        cache_from,
        network_mode: p.get("networkmode").unwrap_or_default().to_string(),
        extra_hosts: p
            .get("extrahosts")
            .map(|h| h.split(',').filter(|x| !x.is_empty()).map(str::to_string).collect())
            .unwrap_or_default(),
        shm_size: p.get("shmsize").and_then(|v| v.parse().ok()).unwrap_or(0),
        platform: p.get("platform").unwrap_or_default().to_string(),
        quiet: p.bool("q"),
        auths: registry_config(&headers)?,
        remote: p.get("remote").unwrap_or_default().to_string(),
    };
    let mut stream = s.images.build(options, body_stream(body)).await?;
    // What fails before the first line (the context, the Dockerfile, the
    // target) is the response's status, as on dockerd.
    let first = match stream.next().await {
        Some(Ok(m)) => m,
        Some(Err(e)) => return Err(e.into()),
        None => return Err(Error::internal("the image service ended the build without a word").into()),
    };
    let stream = futures::stream::once(async move { Ok::<_, Error>(first) }).chain(stream);
    let lines = stream.map(|item| {
        let v = match item {
            Ok(m) => message_json(&m),
            Err(e) => json!({"errorDetail": {"message": e.message()}, "error": e.message()}),
        };
        Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(format!("{v}\n")))
    });
    let mut resp = Response::new(Body::from_stream(lines));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}
