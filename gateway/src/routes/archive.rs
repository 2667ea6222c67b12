//! A container's files: ContainerChanges (`docker diff`), ContainerExport
//! (`docker export`), ContainerArchiveInfo, ContainerArchive and
//! PutContainerArchive (`docker cp` both ways). The runtime does the work
//! inside the container's root; here are dockerd's parameters, headers and
//! status codes.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use berth_core::Error;
use berth_runtime_api::pb;
use serde_json::{Value, json};

use super::images::{body_stream, tar_response};
use crate::AppState;
use crate::error::ApiResult;
use crate::params::Params;

/// The header `docker cp` reads a path's status from.
const PATH_STAT: &str = "x-docker-container-path-stat";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/containers/{id}/changes", get(get_changes))
        .route("/containers/{id}/export", get(get_export))
        .route("/containers/{id}/archive", get(get_archive).head(head_archive).put(put_archive))
        .route("/commit", axum::routing::post(post_commit))
}

/// ImageCommit: `POST /commit?container=&repo=&tag=&comment=&author=&pause=&changes=`,
/// the body an optional container config; 201 with the new image's ID.
async fn post_commit(State(s): State<AppState>, uri: Uri, body: axum::body::Bytes) -> ApiResult<Response> {
    let p = Params::parse(uri.query());
    let reference = p.get("container").filter(|c| !c.is_empty()).map(str::to_string);
    let Some(reference) = reference else {
        return Err(Error::invalid("bad parameter: container cannot be empty").into());
    };
    // A body of `null` or nothing is no config; anything else must be one.
    let config = match body.iter().all(u8::is_ascii_whitespace) || body.trim_ascii() == b"null" {
        true => Vec::new(),
        false => {
            let parsed: berth_models::container::ContainerConfig =
                berth_models::parse("container config", &body).map_err(Error::invalid)?;
            berth_models::to_vec(&parsed)
        }
    };
    let req = pb::CommitContainerRequest {
        reference,
        repo: p.get("repo").unwrap_or_default().to_string(),
        tag: p.get("tag").unwrap_or_default().to_string(),
        comment: p.get("comment").unwrap_or_default().to_string(),
        author: p.get("author").unwrap_or_default().to_string(),
        // Paused unless told otherwise, as since API 1.13.
        pause: p.get("pause").is_none_or(|v| v.is_empty() || p.bool("pause")),
        changes: p.all("changes"),
        config,
        ..Default::default()
    };
    let id = s.runtime.commit(req).await?;
    Ok((StatusCode::CREATED, axum::Json(json!({"Id": id}))).into_response())
}

/// ContainerChanges: `[{"Path": "/tmp", "Kind": 0}, ...]`.
async fn get_changes(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<axum::Json<Value>> {
    let changes = s.runtime.changes(&id).await?;
    Ok(axum::Json(Value::Array(changes.into_iter().map(|c| json!({"Path": c.path, "Kind": c.kind})).collect())))
}

/// ContainerExport: the root filesystem as a tar.
async fn get_export(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    Ok(tar_response(s.runtime.export(&id).await?))
}

fn path_param(uri: &Uri) -> Result<String, Error> {
    match Params::parse(uri.query()).get("path") {
        Some(p) if !p.is_empty() => Ok(p.to_string()),
        _ => Err(Error::invalid("bad parameter: path cannot be empty")),
    }
}

/// The stat header's value: base64 of dockerd's JSON.
fn stat_header(stat: &pb::PathStat) -> Option<HeaderValue> {
    let doc = json!({
        "name": stat.name,
        "size": stat.size,
        "mode": stat.mode,
        "mtime": stat.mtime,
        "linkTarget": stat.link_target,
    });
    HeaderValue::from_str(&base64::engine::general_purpose::STANDARD.encode(doc.to_string())).ok()
}

/// ContainerArchiveInfo: the status header only.
async fn head_archive(State(s): State<AppState>, Path(id): Path<String>, uri: Uri) -> ApiResult<Response> {
    let stat = s.runtime.stat_path(&id, &path_param(&uri)?).await?;
    let mut resp = StatusCode::OK.into_response();
    if let Some(v) = stat_header(&stat) {
        resp.headers_mut().insert(PATH_STAT, v);
    }
    Ok(resp)
}

/// ContainerArchive: the status header and a tar of the path.
async fn get_archive(State(s): State<AppState>, Path(id): Path<String>, uri: Uri) -> ApiResult<Response> {
    let (stat, tar) = s.runtime.get_archive(&id, &path_param(&uri)?).await?;
    let mut resp = tar_response(tar);
    if let Some(v) = stat_header(&stat) {
        resp.headers_mut().insert(PATH_STAT, v);
    }
    Ok(resp)
}

/// PutContainerArchive: unpacks the body (a tar) into the directory `path`.
async fn put_archive(State(s): State<AppState>, Path(id): Path<String>, uri: Uri, body: Body) -> ApiResult<Response> {
    let p = Params::parse(uri.query());
    let options = pb::PutArchiveOptions {
        reference: id,
        path: path_param(&uri)?,
        no_overwrite_dir_non_dir: p.bool("noOverwriteDirNonDir"),
        copy_uid_gid: p.bool("copyUIDGID"),
    };
    s.runtime.put_archive(options, body_stream(body)).await?;
    let mut resp = StatusCode::OK.into_response();
    resp.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    Ok(resp)
}
