//! Image endpoints (ImageList, ImageInspect, ImageHistory, ImageTag, ImageDelete,
//! ImagePrune, ImageLoad, ImageGet, ImageGetAll, ImageCreate with `fromSrc`).
//!
//! Image names contain `/` and `:`, so everything under `/images/` that is not a
//! fixed route goes through one catch-all that reads the suffix (`/json`,
//! `/history`, `/get`, `/tag`, `/push`).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use berth_core::{ByteStream, Error};
use berth_image_api::pb;
use berth_models::image::{AuthConfig, ImageConfig};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::params::Params;
use crate::version::ApiVersion;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/images/json", get(get_images_list))
        .route("/images/create", post(post_images_create))
        .route("/images/load", post(post_images_load))
        .route("/images/get", get(get_images_get_all))
        .route("/images/prune", post(post_images_prune))
        .route("/build/prune", post(post_build_prune))
        .route("/auth", post(post_auth))
        .route(
            "/images/search",
            get(|| async { ApiResult::<()>::Err(Error::not_implemented("image search is not supported").into()) }),
        )
        .route("/images/{*rest}", get(get_image).post(post_image).delete(delete_image))
}

fn unix_seconds(rfc3339: &str) -> i64 {
    berth_core::id::parse_rfc3339(rfc3339).map(|t| t.unix_timestamp()).unwrap_or(0)
}

/// The image's config, checked by the image service when the image came in.
fn config_of(image: &pb::Image) -> ImageConfig {
    berth_models::parse("image config", &image.config).unwrap_or_default()
}

/// The ImageSummary JSON of an image.
pub(crate) fn summary(image: &pb::Image, version: ApiVersion) -> Value {
    let cfg = config_of(image);
    let mut v = json!({
        "Id": image.id,
        "ParentId": image.parent,
        "RepoTags": image.repo_tags,
        "RepoDigests": image.repo_digests,
        "Created": unix_seconds(&image.created),
        "Size": image.size,
        "SharedSize": -1,
        "Labels": cfg.config.and_then(|c| c.labels),
        "Containers": -1,
    });
    // Output being built, not input read: VirtualSize went away in API 1.44.
    if version < ApiVersion(1, 44) {
        v["VirtualSize"] = json!(image.size);
    }
    v
}

/// The ImageInspect JSON of an image.
fn inspect_json(image: &pb::Image) -> Value {
    let cfg = config_of(image);
    let mut dirs: Vec<&String> = image.layer_dirs.iter().collect();
    let upper = dirs.pop();
    dirs.reverse();
    let lower = dirs.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(":");
    let mut graph = serde_json::Map::new();
    if !lower.is_empty() {
        graph.insert("LowerDir".into(), json!(lower));
    }
    if let Some(u) = upper {
        graph.insert("UpperDir".into(), json!(u));
    }
    let mut out = json!({
        "Id": image.id,
        "RepoTags": image.repo_tags,
        "RepoDigests": image.repo_digests,
        "Parent": image.parent,
        "Comment": cfg.comment,
        "Created": if cfg.created.is_empty() { &image.created } else { &cfg.created },
        "DockerVersion": cfg.docker_version,
        "Author": cfg.author,
        "Config": cfg.config,
        "Architecture": cfg.architecture,
        "Os": if cfg.os.is_empty() { "linux" } else { &cfg.os },
        "Size": image.size,
        "GraphDriver": {"Name": "overlay2", "Data": graph},
        "RootFS": {"Type": "layers", "Layers": image.diff_ids},
        "Metadata": {"LastTagTime": if image.last_tag_time.is_empty() { "0001-01-01T00:00:00Z" } else { &image.last_tag_time }},
    });
    // Output being built: dockerd omits an empty Variant.
    if !cfg.variant.is_empty() {
        out["Variant"] = json!(cfg.variant);
    }
    out
}

pub(super) fn body_stream(body: Body) -> ByteStream {
    Box::pin(body.into_data_stream().map(|r| r.map_err(|e| Error::invalid(format!("read request body: {e}")))))
}

fn json_lines(lines: Vec<Value>) -> Response {
    let mut body = String::new();
    for l in lines {
        body.push_str(&l.to_string());
        body.push('\n');
    }
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn delete_items(items: Vec<pb::DeleteItem>) -> Vec<Value> {
    items
        .into_iter()
        .filter_map(|i| match i.item {
            Some(pb::delete_item::Item::Untagged(r)) => Some(json!({"Untagged": r})),
            Some(pb::delete_item::Item::Deleted(d)) => Some(json!({"Deleted": d})),
            None => None,
        })
        .collect()
}

/// ImageList: `GET /images/json`.
async fn get_images_list(
    State(s): State<AppState>,
    Extension(version): Extension<ApiVersion>,
    uri: Uri,
) -> ApiResult<Json<Value>> {
    let p = Params::parse(uri.query());
    let mut filters = p.filters()?;
    // Before 1.41 the CLI sent the reference as a plain `filter` parameter.
    if let Some(f) = p.get("filter").filter(|f| !f.is_empty()) {
        filters.push(berth_image_api::Filter { key: "reference".into(), values: vec![f.to_string()] });
    }
    let images = s.images.list(p.bool("all"), filters).await?;
    Ok(Json(Value::Array(images.iter().map(|i| summary(i, version)).collect())))
}

/// The credentials of `X-Registry-Auth` (base64url JSON: username, password,
/// serveraddress, identitytoken, registrytoken); none when absent or empty.
pub(crate) fn registry_auth(headers: &HeaderMap) -> Result<Option<pb::RegistryAuth>, Error> {
    let Some(bytes) = base64_header(headers, "X-Registry-Auth")? else { return Ok(None) };
    let v: AuthConfig = serde_json::from_slice(&bytes)
        .map_err(|_| Error::invalid("invalid X-Registry-Auth header: not an AuthConfig"))?;
    Ok(Some(registry_auth_of(v)))
}

/// A header holding base64 (URL-safe, with or without padding, or standard)
/// as the Docker clients send credentials; `None` when absent or empty.
pub(crate) fn base64_header(headers: &HeaderMap, name: &str) -> Result<Option<Vec<u8>>, Error> {
    use base64::Engine as _;
    let Some(raw) = headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|r| !r.is_empty()) else {
        return Ok(None);
    };
    let engines = [
        base64::engine::general_purpose::URL_SAFE,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
        base64::engine::general_purpose::STANDARD,
    ];
    engines
        .iter()
        .find_map(|e| e.decode(raw).ok())
        .map(Some)
        .ok_or_else(|| Error::invalid(format!("invalid {name} header: not base64")))
}

/// Credentials from Docker's AuthConfig (X-Registry-Auth, `POST /auth`); an
/// `auth` field (`base64(user:password)`) stands for the two when they are not given.
pub(crate) fn registry_auth_of(mut v: AuthConfig) -> pb::RegistryAuth {
    use base64::Engine as _;
    if v.username.is_empty()
        && v.password.is_empty()
        && let Ok(pair) = base64::engine::general_purpose::STANDARD.decode(v.auth.trim())
        && let Some((user, password)) = String::from_utf8_lossy(&pair).split_once(':')
    {
        (v.username, v.password) = (user.to_string(), password.to_string());
    }
    pb::RegistryAuth {
        username: v.username,
        password: v.password,
        identity_token: v.identitytoken,
        registry_token: v.registrytoken,
        server_address: v.serveraddress,
    }
}

/// One progress message as dockerd's JSON message: status, id,
/// progressDetail and the progress bar the CLI shows without a terminal.
fn progress_json(p: &pb::Progress) -> Value {
    if !p.error.is_empty() {
        return json!({"errorDetail": {"message": p.error}, "error": p.error});
    }
    let counted = p.total > 0 || p.current > 0;
    let detail = match (counted, p.id.is_empty()) {
        (true, _) => Some(json!({"current": p.current, "total": p.total})),
        (false, false) => Some(json!({})),
        (false, true) => None,
    };
    let msg = JsonMessage {
        status: &p.status,
        id: (!p.id.is_empty()).then_some(p.id.as_str()),
        progress_detail: detail,
        progress: counted.then(|| progress_bar(p.current, p.total)),
    };
    serde_json::to_value(msg).unwrap_or(Value::Null)
}

/// dockerd's `jsonmessage.JSONMessage`, as progress streams carry it.
#[derive(serde::Serialize)]
struct JsonMessage<'a> {
    status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "progressDetail", skip_serializing_if = "Option::is_none")]
    progress_detail: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    progress: Option<String>,
}

/// dockerd's `[=====>     ]  1.2MB/3.4MB`.
fn progress_bar(current: i64, total: i64) -> String {
    let human = |n: i64| -> String {
        let n = n.max(0) as f64;
        match n {
            n if n >= 1e9 => format!("{:.3}GB", n / 1e9),
            n if n >= 1e6 => format!("{:.3}MB", n / 1e6),
            n if n >= 1e3 => format!("{:.3}kB", n / 1e3),
            n => format!("{n}B"),
        }
    };
    if total <= 0 {
        return human(current);
    }
    let width = 50;
    let done = ((current.min(total) as f64 / total as f64) * width as f64) as usize;
    let bar = if done >= width {
        "=".repeat(width)
    } else {
        format!("{}>{}", "=".repeat(done), " ".repeat(width - done - 1))
    };
    format!("[{bar}] {:>8}/{}", human(current), human(total))
}

/// A pull or push as dockerd answers it: an error before the first message is
/// the response's status (404, 401, ...); after it, 200 and JSON lines, the
/// last one an `errorDetail` when it failed.
async fn progress_response(mut stream: berth_image_api::ProgressStream) -> ApiResult<Response> {
    let first = match stream.next().await {
        Some(Ok(p)) => p,
        Some(Err(e)) => return Err(e.into()),
        None => return Err(Error::internal("the image service ended the stream without a word").into()),
    };
    let lines = futures::stream::once(async move { Ok::<_, Error>(first) }).chain(stream).map(|item| {
        let v = match item {
            Ok(p) => progress_json(&p),
            Err(e) => json!({"errorDetail": {"message": e.message()}, "error": e.message()}),
        };
        Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(format!("{v}\n")))
    });
    let mut resp = Response::new(Body::from_stream(lines));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}

/// ImageCreate: `POST /images/create`. `fromSrc=-` imports the request body;
/// `fromImage` pulls from a registry (`tag`, `platform`, `X-Registry-Auth`).
async fn post_images_create(
    State(s): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let p = Params::parse(uri.query());
    match (p.get("fromSrc"), p.get("fromImage")) {
        (Some("-"), _) => {
            let options = pb::ImportOptions {
                repo: p.get("repo").unwrap_or("").to_string(),
                tag: p.get("tag").unwrap_or("").to_string(),
                changes: p.all("changes"),
                message: p.get("message").unwrap_or("").to_string(),
                platform: p.get("platform").unwrap_or("").to_string(),
            };
            let id = s.images.import(options, body_stream(body)).await?;
            Ok(json_lines(vec![json!({"status": id})]))
        }
        (Some(src), _) => Err(Error::not_implemented(format!(
            "importing from {src:?} is not supported: send the tarball as the request body (fromSrc=-)"
        ))
        .into()),
        (None, Some(image)) => {
            // `tag` is a tag, or a digest (`fromImage=x&tag=sha256:...`).
            let reference = match p.get("tag").filter(|t| !t.is_empty()) {
                Some(t) if t.starts_with("sha256:") => format!("{image}@{t}"),
                Some(t) => format!("{image}:{t}"),
                None => image.to_string(),
            };
            let req = pb::PullImageRequest {
                reference,
                platform: p.get("platform").unwrap_or("").to_string(),
                auth: registry_auth(&headers)?,
            };
            progress_response(s.images.pull(req).await?).await
        }
        (None, None) => Err(Error::invalid("either fromSrc or fromImage must be given").into()),
    }
}

/// SystemAuth: `POST /auth` with Docker's AuthConfig: the credentials are
/// checked against the registry (`docker login`), never stored by the daemon.
async fn post_auth(State(s): State<AppState>, body: axum::body::Bytes) -> ApiResult<Json<Value>> {
    let v: AuthConfig = berth_models::parse("AuthConfig", &body).map_err(Error::invalid)?;
    let r = s.images.login(registry_auth_of(v)).await?;
    Ok(Json(json!({"Status": r.status, "IdentityToken": r.identity_token})))
}

/// ImageLoad: `POST /images/load`.
async fn post_images_load(State(s): State<AppState>, body: Body) -> ApiResult<Response> {
    let loaded = s.images.load(body_stream(body)).await?;
    let lines = loaded
        .into_iter()
        .map(|l| {
            if l.reference.is_empty() {
                json!({"stream": format!("Loaded image ID: {}\n", l.id)})
            } else {
                json!({"stream": format!("Loaded image: {}\n", l.reference)})
            }
        })
        .collect();
    Ok(json_lines(lines))
}

pub(super) fn tar_response(stream: ByteStream) -> Response {
    let body = Body::from_stream(stream.map(|r| r.map_err(|e| std::io::Error::other(e.to_string()))));
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-tar"));
    resp
}

/// ImageGetAll: `GET /images/get?names=a&names=b`.
async fn get_images_get_all(State(s): State<AppState>, uri: Uri) -> ApiResult<Response> {
    let names = Params::parse(uri.query()).all("names");
    Ok(tar_response(s.images.save(names).await?))
}

/// BuildPrune: `POST /build/prune` (`docker builder prune`, and `docker
/// system prune` after the other prunes): the classic builder's cache, its
/// intermediate images (see [`build_cache`]), goes; `until` limits it by age.
/// `all` and `keep-storage` change nothing: that cache has no other kind.
async fn post_build_prune(State(s): State<AppState>, uri: Uri) -> ApiResult<Json<Value>> {
    let filters = Params::parse(uri.query()).filters()?;
    let in_use = in_use_images(&s).await?;
    let r = s.images.prune(pb::PruneImagesRequest { filters, in_use, build_cache: true }).await?;
    let deleted: Vec<String> = r
        .items
        .into_iter()
        .filter_map(|i| match i.item {
            Some(pb::delete_item::Item::Deleted(id)) => Some(id),
            _ => None,
        })
        .collect();
    Ok(Json(json!({
        "CachesDeleted": if deleted.is_empty() { Value::Null } else { json!(deleted) },
        "SpaceReclaimed": r.space_reclaimed,
    })))
}

/// The builds' intermediate images among `images`: untagged, with others made on them.
pub(crate) fn intermediate_ids(images: &[pb::Image]) -> std::collections::HashSet<&str> {
    let parents: std::collections::HashSet<&str> = images.iter().map(|i| i.parent.as_str()).collect();
    images
        .iter()
        .filter(|i| i.repo_tags.is_empty() && i.repo_digests.is_empty() && parents.contains(i.id.as_str()))
        .map(|i| i.id.as_str())
        .collect()
}

/// The classic builder's cache as `docker system df` lists build cache: each
/// build's intermediate image (untagged, others made on it) is a record, its
/// size what its step added (its size less its parent's).
pub(crate) fn build_cache(images: &[pb::Image]) -> Vec<Value> {
    let cache = intermediate_ids(images);
    let size_of = |id: &str| images.iter().find(|i| i.id == id).map_or(0, |i| i.size);
    images
        .iter()
        .filter(|i| cache.contains(i.id.as_str()))
        .map(|i| {
            let config: Option<berth_models::image::ImageConfig> = berth_models::parse("image config", &i.config).ok();
            let step = config.and_then(|c| c.history.last().map(|h| h.created_by.clone())).unwrap_or_default();
            json!({
                "ID": i.id.trim_start_matches("sha256:"),
                "Parents": if i.parent.is_empty() { Value::Null } else { json!([i.parent.trim_start_matches("sha256:")]) },
                "Type": "regular",
                "Description": step,
                "InUse": false,
                "Shared": false,
                "Size": (i.size - size_of(&i.parent)).max(0),
                "CreatedAt": i.created,
                "LastUsedAt": Value::Null,
                "UsageCount": 0,
            })
        })
        .collect()
}

/// ImagePrune: `POST /images/prune`.
async fn post_images_prune(State(s): State<AppState>, uri: Uri) -> ApiResult<Json<Value>> {
    let filters = Params::parse(uri.query()).filters()?;
    let in_use = in_use_images(&s).await?;
    let r = s.images.prune(pb::PruneImagesRequest { filters, in_use, build_cache: false }).await?;
    let items = delete_items(r.items);
    Ok(Json(json!({
        "ImagesDeleted": if items.is_empty() { Value::Null } else { Value::Array(items) },
        "SpaceReclaimed": r.space_reclaimed,
    })))
}

async fn in_use_images(s: &AppState) -> Result<Vec<String>, ApiError> {
    let mut ids: Vec<String> = s.runtime.list(true, vec![], 0).await?.into_iter().map(|c| c.image_id).collect();
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// `GET /images/{name}/json|history|get`.
async fn get_image(State(s): State<AppState>, Path(rest): Path<String>) -> ApiResult<Response> {
    if let Some(name) = rest.strip_suffix("/json") {
        return Ok(Json(inspect_json(&s.images.inspect(name).await?)).into_response());
    }
    if let Some(name) = rest.strip_suffix("/history") {
        let items = s.images.history(name).await?;
        let out: Vec<Value> = items
            .into_iter()
            .map(|h| {
                json!({
                    "Id": h.id,
                    "Created": h.created,
                    "CreatedBy": h.created_by,
                    "Tags": if h.tags.is_empty() { Value::Null } else { json!(h.tags) },
                    "Size": h.size,
                    "Comment": h.comment,
                })
            })
            .collect();
        return Ok(Json(Value::Array(out)).into_response());
    }
    if let Some(name) = rest.strip_suffix("/get") {
        return Ok(tar_response(s.images.save(vec![name.to_string()]).await?));
    }
    Err(Error::not_found("page not found").into())
}

/// `POST /images/{name}/tag|push`.
async fn post_image(
    State(s): State<AppState>,
    Path(rest): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let p = Params::parse(uri.query());
    if let Some(name) = rest.strip_suffix("/tag") {
        let repo = p.get("repo").unwrap_or("");
        if repo.is_empty() {
            return Err(Error::invalid("repository name must have at least one component").into());
        }
        s.images.tag(name, repo, p.get("tag").unwrap_or("")).await?;
        return Ok(StatusCode::CREATED.into_response());
    }
    if let Some(name) = rest.strip_suffix("/push") {
        let reference = match p.get("tag").filter(|t| !t.is_empty()) {
            Some(t) => format!("{name}:{t}"),
            None => name.to_string(),
        };
        let req = pb::PushImageRequest { reference, auth: registry_auth(&headers)? };
        return progress_response(s.images.push(req).await?).await;
    }
    Err(Error::not_found("page not found").into())
}

/// ImageDelete: `DELETE /images/{name}`.
///
/// Containers pin their image, as in dockerd: a running one always blocks the
/// delete, a stopped one unless `force`, and a forced delete of an image in use
/// only untags it (Berth keeps the content a stopped container will need again).
async fn delete_image(State(s): State<AppState>, Path(name): Path<String>, uri: Uri) -> ApiResult<Json<Value>> {
    let force = Params::parse(uri.query()).bool("force");
    let image = s.images.inspect(&name).await?;
    let usage = s.runtime.image_in_use(&image.id).await?;
    let short = |id: &str| id.trim_start_matches("sha256:").chars().take(12).collect::<String>();
    let hex = name.trim_start_matches("sha256:");
    let by_id = image.id == name || (!hex.is_empty() && image.id.trim_start_matches("sha256:").starts_with(hex));
    let refs = image.repo_tags.len() + image.repo_digests.len();
    if let Some(user) = usage.container_ids.first() {
        if !by_id && !force && refs <= 1 {
            return Err(Error::conflict(format!(
                "conflict: unable to remove repository reference \"{name}\" (must force) - container {} is using its referenced image {}",
                short(user),
                short(&image.id)
            ))
            .into());
        }
        if by_id && usage.running {
            return Err(Error::conflict(format!(
                "conflict: unable to delete {} (cannot be forced) - image is being used by running container {}",
                short(&image.id),
                short(user)
            ))
            .into());
        }
        if by_id && !force {
            return Err(Error::conflict(format!(
                "conflict: unable to delete {} (must be forced) - image is being used by stopped container {}",
                short(&image.id),
                short(user)
            ))
            .into());
        }
    }
    let items = s.images.remove(&name, force, !usage.container_ids.is_empty()).await?;
    Ok(Json(Value::Array(delete_items(items))))
}
