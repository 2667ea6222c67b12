//! Network and volume endpoints the network and volume services answer today:
//! NetworkList, NetworkInspect, VolumeList, VolumeInspect. Their lifecycles arrive
//! with their own issues; asking for a missing object is dockerd's 404, so
//! `docker inspect` falls through to the next kind.

use axum::extract::{Path, State};
use axum::http::Uri;
use axum::routing::get;
use axum::{Json, Router};
use berth_core::Error;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiResult;
use crate::params::Params;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/networks", get(get_networks_list))
        .route("/networks/{id}", get(get_network_inspect))
        .route("/volumes", get(get_volumes_list))
        .route("/volumes/{name}", get(get_volume_inspect))
}

/// Ordered key/value pairs as a JSON object (labels, options).
pub(crate) fn map(pairs: &[berth_proto::types::v1::KeyValue]) -> Value {
    Value::Object(pairs.iter().map(|kv| (kv.key.clone(), json!(kv.value))).collect())
}

/// The Volume JSON of a volume.
pub(crate) fn volume_json(v: &berth_volume::pb::Volume) -> Value {
    json!({
        "Name": v.name,
        "Driver": v.driver,
        "Mountpoint": v.mountpoint,
        "CreatedAt": v.created_at,
        "Labels": map(&v.labels),
        "Options": map(&v.options),
        "Scope": v.scope,
    })
}

fn network_json(n: &berth_network::pb::Network) -> Value {
    json!({
        "Name": n.name,
        "Id": n.id,
        "Created": n.created,
        "Scope": n.scope,
        "Driver": n.driver,
        "EnableIPv4": true,
        "EnableIPv6": false,
        "Internal": n.internal,
        "Attachable": false,
        "Ingress": false,
        "IPAM": {
            "Driver": "default",
            "Options": null,
            "Config": if n.subnet.is_empty() { json!([]) } else { json!([{"Subnet": n.subnet, "Gateway": n.gateway}]) },
        },
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": false,
        "Containers": {},
        "Options": map(&n.options),
        "Labels": map(&n.labels),
    })
}

/// NetworkList: `GET /networks`.
async fn get_networks_list(State(s): State<AppState>, uri: Uri) -> ApiResult<Json<Value>> {
    let list = s.networks.list(Params::parse(uri.query()).filters()?).await?;
    Ok(Json(Value::Array(list.iter().map(network_json).collect())))
}

/// NetworkInspect: `GET /networks/{id}`.
async fn get_network_inspect(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let list = s.networks.list(vec![]).await?;
    match list.iter().find(|n| n.id == id || n.name == id || n.id.starts_with(&id)) {
        Some(n) => Ok(Json(network_json(n))),
        None => Err(Error::not_found(format!("network {id} not found")).into()),
    }
}

/// VolumeList: `GET /volumes`.
async fn get_volumes_list(State(s): State<AppState>, uri: Uri) -> ApiResult<Json<Value>> {
    let list = s.volumes.list(Params::parse(uri.query()).filters()?).await?;
    Ok(Json(json!({"Volumes": list.iter().map(volume_json).collect::<Vec<_>>(), "Warnings": []})))
}

/// VolumeInspect: `GET /volumes/{name}`.
async fn get_volume_inspect(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let list = s.volumes.list(vec![]).await?;
    match list.iter().find(|v| v.name == name) {
        Some(v) => Ok(Json(volume_json(v))),
        None => Err(Error::not_found(format!("get {name}: no such volume")).into()),
    }
}
