//! Network and volume endpoints: NetworkList, NetworkInspect, NetworkCreate,
//! NetworkDelete, NetworkPrune, NetworkConnect, NetworkDisconnect, VolumeList,
//! VolumeInspect, VolumeCreate, VolumeDelete, VolumePrune. Asking for a missing
//! object is dockerd's 404, so `docker inspect` falls through to the next kind.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use berth_core::Error;
use berth_models::network::{
    NetworkConnectRequest, NetworkCreateRequest, NetworkDisconnectRequest, VolumeCreateRequest,
};
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiResult;
use crate::params::Params;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/networks", get(get_networks_list))
        // dockerd lists at `/networks/` too.
        .route("/networks/", get(get_networks_list))
        .route("/networks/{id}", get(get_network_inspect).delete(delete_network))
        .route("/networks/create", post(post_network_create))
        .route("/networks/prune", post(post_networks_prune))
        .route("/networks/{id}/connect", post(post_network_connect))
        .route("/networks/{id}/disconnect", post(post_network_disconnect))
        .route("/volumes", get(get_volumes_list))
        .route("/volumes/create", post(post_volume_create))
        .route("/volumes/prune", post(post_volumes_prune))
        .route("/volumes/{name}", get(get_volume_inspect).delete(delete_volume))
}

pub(crate) use berth_proto::types::v1::kv::{from_map as pairs, to_object as map};

/// The Volume JSON of a volume, as dockerd 20.10 writes it: `CreatedAt` to
/// the second, `Labels` and `Options` null when there are none; `UsageData`
/// only when its size was walked (`system df`).
pub(crate) fn volume_json(v: &berth_volume_api::pb::Volume) -> Value {
    let created = match v.created_at.split_once('.') {
        // 2026-12-02T14:34:09.507872069Z -> 2026-12-02T14:34:09Z
        Some((secs, rest)) => format!("{secs}{}", rest.trim_start_matches(|c: char| c.is_ascii_digit())),
        None => v.created_at.clone(),
    };
    let mut j = json!({
        "Name": v.name,
        "Driver": v.driver,
        "Mountpoint": v.mountpoint,
        "CreatedAt": created,
        "Labels": if v.labels.is_empty() { Value::Null } else { map(&v.labels) },
        "Options": if v.options.is_empty() { Value::Null } else { map(&v.options) },
        "Scope": v.scope,
    });
    // Output being built: UsageData only where the size was asked for (system df).
    if v.size >= 0 {
        j["UsageData"] = json!({"Size": v.size, "RefCount": v.used_by.len()});
    }
    j
}

fn network_json(n: &berth_network_api::pb::Network) -> Value {
    let mut pools = match (n.subnet.is_empty(), n.ip_range.is_empty()) {
        (true, _) => vec![],
        (false, true) => vec![json!({"Subnet": n.subnet, "Gateway": n.gateway})],
        (false, false) => vec![json!({"Subnet": n.subnet, "Gateway": n.gateway, "IPRange": n.ip_range})],
    };
    if !n.subnet6.is_empty() {
        pools.push(json!({"Subnet": n.subnet6, "Gateway": n.gateway6}));
    }
    json!({
        "Name": n.name,
        "Id": n.id,
        "Created": n.created,
        "Scope": n.scope,
        "Driver": n.driver,
        "EnableIPv4": true,
        "EnableIPv6": !n.subnet6.is_empty(),
        "Internal": n.internal,
        "Attachable": false,
        "Ingress": false,
        "IPAM": {
            "Driver": "default",
            "Options": null,
            "Config": pools,
        },
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": false,
        "Containers": Value::Object(n.endpoints.iter().map(|e| (e.container_id.clone(), json!({
            "Name": e.container_name,
            "EndpointID": e.endpoint_id,
            "MacAddress": e.mac_address,
            "IPv4Address": format!("{}/{}", e.ip_address, e.prefix_len),
            "IPv6Address": if e.ipv6_address.is_empty() {
                String::new()
            } else {
                format!("{}/{}", e.ipv6_address, e.ipv6_prefix_len)
            },
        }))).collect()),
        "Options": map(&n.options),
        "Labels": map(&n.labels),
    })
}

/// NetworkList: `GET /networks`.
async fn get_networks_list(State(s): State<AppState>, uri: Uri) -> ApiResult<Json<Value>> {
    let list = s.networks.list(Params::parse(uri.query()).filters()?).await?;
    Ok(Json(Value::Array(list.iter().map(network_json).collect())))
}

/// NetworkInspect: `GET /networks/{id}`, with the containers on it.
async fn get_network_inspect(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(network_json(&s.networks.inspect(&id).await?)))
}

/// NetworkCreate: `POST /networks/create`.
async fn post_network_create(State(s): State<AppState>, body: Bytes) -> ApiResult<Response> {
    let v: NetworkCreateRequest = berth_models::parse("network config", &body).map_err(Error::invalid)?;
    // At most one IPv4 and one IPv6 pool; which is which, by its subnet.
    let (v6, v4): (Vec<_>, Vec<_>) = v.ipam.config.into_iter().partition(|p| p.subnet.contains(':'));
    if v4.len() > 1 || v6.len() > 1 {
        return Err(Error::not_implemented("more than one IPv4 or IPv6 subnet per network is not supported").into());
    }
    if !v6.is_empty() && !v.enable_ipv6 {
        return Err(Error::invalid("an IPv6 subnet needs EnableIPv6 (--ipv6)").into());
    }
    let (pool, pool6) = (v4.into_iter().next().unwrap_or_default(), v6.into_iter().next().unwrap_or_default());
    let req = berth_network_api::pb::CreateNetworkRequest {
        name: v.name,
        driver: v.driver,
        subnet: pool.subnet,
        gateway: pool.gateway,
        ip_range: pool.ip_range,
        internal: v.internal,
        labels: pairs(&v.labels),
        options: pairs(&v.options),
        enable_ipv6: v.enable_ipv6,
        subnet6: pool6.subnet,
        gateway6: pool6.gateway,
    };
    let n = s.networks.create(req).await?;
    Ok((StatusCode::CREATED, Json(json!({"Id": n.id, "Warning": ""}))).into_response())
}

/// NetworkDelete: `DELETE /networks/{id}`.
async fn delete_network(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    s.networks.remove(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// NetworkConnect: `POST /networks/{id}/connect` with `{Container, EndpointConfig}`.
async fn post_network_connect(State(s): State<AppState>, Path(id): Path<String>, body: Bytes) -> ApiResult<StatusCode> {
    let v: NetworkConnectRequest = berth_models::parse("network connect", &body).map_err(Error::invalid)?;
    if v.container.is_empty() {
        return Err(Error::invalid("Container is required").into());
    }
    let ep = v.endpoint_config.as_ref().map(berth_models::to_vec).unwrap_or_default();
    s.runtime.connect_network(&v.container, &id, &ep).await?;
    Ok(StatusCode::OK)
}

/// NetworkDisconnect: `POST /networks/{id}/disconnect` with `{Container, Force}`.
async fn post_network_disconnect(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let v: NetworkDisconnectRequest = berth_models::parse("network disconnect", &body).map_err(Error::invalid)?;
    if v.container.is_empty() {
        return Err(Error::invalid("Container is required").into());
    }
    s.runtime.disconnect_network(&v.container, &id, v.force).await?;
    Ok(StatusCode::OK)
}

/// NetworkPrune: `POST /networks/prune`.
async fn post_networks_prune(State(s): State<AppState>, uri: Uri) -> ApiResult<Json<Value>> {
    let deleted = s.networks.prune(Params::parse(uri.query()).filters()?).await?;
    Ok(Json(json!({"NetworksDeleted": deleted})))
}

/// VolumeList: `GET /volumes` (filters: dangling, driver, label, name).
async fn get_volumes_list(State(s): State<AppState>, uri: Uri) -> ApiResult<Json<Value>> {
    let list = s.volumes.list(Params::parse(uri.query()).filters()?, false).await?;
    Ok(Json(json!({"Volumes": list.iter().map(volume_json).collect::<Vec<_>>(), "Warnings": null})))
}

/// VolumeInspect: `GET /volumes/{name}`.
async fn get_volume_inspect(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(volume_json(&s.volumes.inspect(&name).await?)))
}

/// VolumeCreate: `POST /volumes/create` with `{Name, Driver, DriverOpts, Labels}`.
async fn post_volume_create(State(s): State<AppState>, body: Bytes) -> ApiResult<Response> {
    let v: VolumeCreateRequest = berth_models::parse("volume config", &body).map_err(Error::invalid)?;
    let req = berth_volume_api::pb::CreateVolumeRequest {
        name: v.name,
        driver: v.driver,
        labels: pairs(&v.labels),
        options: pairs(&v.driver_opts),
        anonymous: false,
    };
    let created = s.volumes.create(req).await?;
    Ok((StatusCode::CREATED, Json(volume_json(&created))).into_response())
}

/// VolumeDelete: `DELETE /volumes/{name}?force=1` (409 while a container uses it).
async fn delete_volume(State(s): State<AppState>, Path(name): Path<String>, uri: Uri) -> ApiResult<StatusCode> {
    s.volumes.remove(&name, Params::parse(uri.query()).bool("force")).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// VolumePrune: `POST /volumes/prune` (anonymous volumes only unless `all=true`,
/// as since API 1.42).
async fn post_volumes_prune(State(s): State<AppState>, uri: Uri) -> ApiResult<Json<Value>> {
    let r = s.volumes.prune(Params::parse(uri.query()).filters()?).await?;
    Ok(Json(json!({"VolumesDeleted": r.deleted, "SpaceReclaimed": r.space_reclaimed})))
}
