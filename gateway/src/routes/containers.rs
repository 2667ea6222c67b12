//! Container endpoints: ContainerCreate, ContainerInspect, ContainerList,
//! ContainerRename, ContainerDelete. The lifecycle operations (start, stop, kill,
//! wait, attach, logs, exec, ...) answer 501 for an existing container until the
//! runtime service can run containers, and 404 for a missing one.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use axum::{Json, Router};
use berth_core::Error;
use berth_runtime::pb;
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::error::ApiResult;
use crate::params::Params;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/containers/json", get(get_containers_list))
        .route("/containers/create", post(post_containers_create))
        .route(
            "/containers/prune",
            post(|| async {
                ApiResult::<()>::Err(
                    Error::not_implemented("container prune arrives with the container lifecycle").into(),
                )
            }),
        )
        .route("/containers/{id}/json", get(get_container_inspect))
        .route("/containers/{id}/rename", post(post_container_rename))
        .route("/containers/{id}", delete(delete_container))
        .route("/containers/{id}/{*op}", any(container_lifecycle))
}

const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn state_of(c: &pb::Container) -> pb::ContainerState {
    c.state.clone().unwrap_or_default()
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or(Value::Null)
}

/// Go's `units.HumanDuration`, which `docker ps` shows.
pub(crate) fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        _ if s < 60 => format!("{s} seconds"),
        _ if m == 1 => "About a minute".into(),
        _ if m < 60 => format!("{m} minutes"),
        _ if h == 1 => "About an hour".into(),
        _ if h < 48 => format!("{h} hours"),
        _ if h < 24 * 7 * 2 => format!("{d} days"),
        _ if h < 24 * 30 * 2 => format!("{} weeks", d / 7),
        _ if h < 24 * 365 * 2 => format!("{} months", d / 30),
        _ => format!("{} years", d / 365),
    }
}

fn since(rfc3339: &str) -> i64 {
    berth_core::id::parse_rfc3339(rfc3339).map(|t| (time::OffsetDateTime::now_utc() - t).whole_seconds()).unwrap_or(0)
}

/// The `Status` column of `docker ps`.
fn status_text(c: &pb::Container) -> String {
    let st = state_of(c);
    match st.status.as_str() {
        "created" => "Created".into(),
        "running" => format!("Up {}", human_duration(since(&st.started_at))),
        "paused" => format!("Up {} (Paused)", human_duration(since(&st.started_at))),
        "exited" => format!("Exited ({}) {} ago", st.exit_code, human_duration(since(&st.finished_at))),
        "dead" => "Dead".into(),
        "removing" => "Removal In Progress".into(),
        "restarting" => format!("Restarting ({}) {} ago", st.exit_code, human_duration(since(&st.finished_at))),
        other => other.to_string(),
    }
}

fn labels(c: &pb::Container) -> Value {
    Value::Object(c.labels.iter().map(|kv| (kv.key.clone(), json!(kv.value))).collect())
}

fn network_mode(c: &pb::Container) -> String {
    match json_of(&c.host_config)["NetworkMode"].as_str() {
        None | Some("") | Some("default") => "bridge".into(),
        Some(m) => m.into(),
    }
}

/// The ContainerSummary JSON of a container.
pub(crate) fn summary(c: &pb::Container) -> Value {
    let command =
        std::iter::once(c.path.as_str()).chain(c.args.iter().map(String::as_str)).collect::<Vec<_>>().join(" ");
    json!({
        "Id": c.id,
        "Names": [format!("/{}", c.name)],
        "Image": c.image,
        "ImageID": c.image_id,
        "Command": command,
        "Created": berth_core::id::parse_rfc3339(&c.created).map(|t| t.unix_timestamp()).unwrap_or(0),
        "Ports": [],
        "Labels": labels(c),
        "State": state_of(c).status,
        "Status": status_text(c),
        "HostConfig": {"NetworkMode": network_mode(c)},
        "NetworkSettings": {"Networks": {}},
        "Mounts": [],
    })
}

fn with_defaults(value: Value, defaults: Value) -> Value {
    let mut out: Map<String, Value> = defaults.as_object().cloned().unwrap_or_default();
    if let Value::Object(given) = value {
        for (k, v) in given {
            out.insert(k, v);
        }
    }
    Value::Object(out)
}

/// The ContainerInspectResponse JSON of a container.
fn inspect_json(c: &pb::Container) -> Value {
    let st = state_of(c);
    let mut config = with_defaults(
        json_of(&c.config),
        json!({
            "Hostname": "", "Domainname": "", "User": "", "AttachStdin": false, "AttachStdout": false,
            "AttachStderr": false, "Tty": false, "OpenStdin": false, "StdinOnce": false, "Env": [],
            "Cmd": null, "Image": "", "Volumes": null, "WorkingDir": "", "Entrypoint": null,
            "OnBuild": null, "Labels": {},
        }),
    );
    config["Image"] = json!(c.image);
    let mut host_config = with_defaults(
        json_of(&c.host_config),
        json!({
            "Binds": null, "ContainerIDFile": "", "LogConfig": {"Type": "json-file", "Config": {}},
            "NetworkMode": "bridge", "PortBindings": {}, "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
            "AutoRemove": false, "VolumeDriver": "", "VolumesFrom": null, "CapAdd": null, "CapDrop": null,
            "Dns": [], "DnsOptions": [], "DnsSearch": [], "ExtraHosts": null, "GroupAdd": null, "IpcMode": "private",
            "Links": null, "OomScoreAdj": 0, "PidMode": "", "Privileged": false, "PublishAllPorts": false,
            "ReadonlyRootfs": false, "SecurityOpt": null, "UTSMode": "", "UsernsMode": "", "ShmSize": 67108864,
            "Runtime": "berth", "Isolation": "", "CpuShares": 0, "Memory": 0, "NanoCpus": 0, "CpusetCpus": "",
            "MemorySwap": 0, "PidsLimit": null, "Ulimits": null, "Tmpfs": null, "Init": null,
        }),
    );
    host_config["NetworkMode"] = json!(network_mode(c));
    json!({
        "Id": c.id,
        "Created": c.created,
        "Path": c.path,
        "Args": c.args,
        "State": {
            "Status": st.status,
            "Running": st.status == "running" || st.status == "paused",
            "Paused": st.status == "paused",
            "Restarting": st.status == "restarting",
            "OOMKilled": st.oom_killed,
            "Dead": st.status == "dead",
            "Pid": st.pid,
            "ExitCode": st.exit_code,
            "Error": st.error,
            "StartedAt": if st.started_at.is_empty() { ZERO_TIME } else { &st.started_at },
            "FinishedAt": if st.finished_at.is_empty() { ZERO_TIME } else { &st.finished_at },
        },
        "Image": c.image_id,
        "ResolvConfPath": "",
        "HostnamePath": "",
        "HostsPath": "",
        "LogPath": "",
        "Name": format!("/{}", c.name),
        "RestartCount": c.restart_count,
        "Driver": "overlay2",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": null,
        "HostConfig": host_config,
        "GraphDriver": {"Name": "overlay2", "Data": null},
        "Mounts": [],
        "Config": config,
        "NetworkSettings": {
            "Bridge": "", "SandboxID": "", "SandboxKey": "", "Ports": {}, "HairpinMode": false,
            "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "SecondaryIPAddresses": null,
            "SecondaryIPv6Addresses": null, "EndpointID": "", "Gateway": "", "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0, "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "",
            "Networks": {},
        },
    })
}

/// ContainerCreate: `POST /containers/create?name=`.
async fn post_containers_create(State(s): State<AppState>, uri: Uri, body: Bytes) -> ApiResult<Response> {
    let p = Params::parse(uri.query());
    if body.is_empty() {
        return Err(Error::invalid("config cannot be empty in order to create a container").into());
    }
    let mut config: Map<String, Value> =
        serde_json::from_slice(&body).map_err(|e| Error::invalid(format!("invalid JSON: {e}")))?;
    let host_config = config.remove("HostConfig").unwrap_or(Value::Null);
    let networking = config.remove("NetworkingConfig").unwrap_or(Value::Null);
    let to_bytes = |v: &Value| if v.is_null() { Vec::new() } else { serde_json::to_vec(v).unwrap_or_default() };
    let created = s
        .runtime
        .create(pb::CreateContainerRequest {
            name: p.get("name").unwrap_or("").to_string(),
            config: serde_json::to_vec(&config).map_err(|e| Error::internal(e.to_string()))?,
            host_config: to_bytes(&host_config),
            networking_config: to_bytes(&networking),
        })
        .await?;
    Ok((StatusCode::CREATED, Json(json!({"Id": created.id, "Warnings": created.warnings}))).into_response())
}

/// ContainerList: `GET /containers/json`.
async fn get_containers_list(State(s): State<AppState>, uri: Uri) -> ApiResult<Json<Value>> {
    let p = Params::parse(uri.query());
    let limit = match p.get("limit") {
        None | Some("") => 0,
        Some(l) => l.parse::<i64>().map_err(|_| Error::invalid(format!("invalid limit {l:?}")))?,
    };
    let list = s.runtime.list(p.bool("all"), p.filters()?, limit.max(0)).await?;
    Ok(Json(Value::Array(list.iter().map(summary).collect())))
}

/// ContainerInspect: `GET /containers/{id}/json`.
async fn get_container_inspect(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(inspect_json(&s.runtime.inspect(&id).await?)))
}

/// ContainerRename: `POST /containers/{id}/rename?name=`.
async fn post_container_rename(State(s): State<AppState>, Path(id): Path<String>, uri: Uri) -> ApiResult<StatusCode> {
    let p = Params::parse(uri.query());
    let name = p.get("name").unwrap_or("");
    if name.is_empty() {
        return Err(Error::invalid("a new name is required").into());
    }
    s.runtime.rename(&id, name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// ContainerDelete: `DELETE /containers/{id}?force=&v=`.
async fn delete_container(State(s): State<AppState>, Path(id): Path<String>, uri: Uri) -> ApiResult<StatusCode> {
    let p = Params::parse(uri.query());
    s.runtime.remove(&id, p.bool("force"), p.bool("v")).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Everything else under `/containers/{id}/`: 404 for a missing container,
/// 501 until containers can run.
async fn container_lifecycle(State(s): State<AppState>, Path((id, op)): Path<(String, String)>) -> ApiResult<()> {
    s.runtime.inspect(&id).await?;
    Err(Error::not_implemented(format!("{op}: running containers is not implemented yet")).into())
}

#[cfg(test)]
mod tests {
    use super::human_duration;

    #[test]
    fn durations_read_like_docker_ps() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(30), "30 seconds");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(600), "10 minutes");
        assert_eq!(human_duration(3600), "About an hour");
        assert_eq!(human_duration(5 * 3600), "5 hours");
        assert_eq!(human_duration(3 * 86400), "3 days");
    }
}
