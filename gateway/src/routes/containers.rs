//! Container endpoints: ContainerCreate, ContainerInspect, ContainerList,
//! ContainerRename, ContainerDelete, ContainerStart, ContainerStop, ContainerRestart,
//! ContainerKill, ContainerWait, ContainerLogs, ContainerAttach, ContainerResize,
//! ContainerExec, ExecStart, ExecResize, ExecInspect, ... (a container's files are
//! in `archive`). An unknown operation answers 501 for an existing container and
//! 404 for a missing one.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use axum::{Json, Router};
use berth_core::Error;
use berth_models::container::{ContainerConfig, CreateBody, ExecConfig, HostConfig, State as StateDoc};
use berth_models::container::{ContainerStatus, MountPoint};
use berth_models::network::NetworkSettings;
use berth_runtime_api::pb;
use serde_json::{Map, Value, json};

use super::streams;
use crate::AppState;
use crate::error::ApiResult;
use crate::params::Params;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/containers/json", get(get_containers_list))
        .route("/containers/prune", post(post_containers_prune))
        .route("/containers/create", post(post_containers_create))
        .route("/containers/{id}/json", get(get_container_inspect))
        .route("/containers/{id}/rename", post(post_container_rename))
        .route("/containers/{id}", delete(delete_container))
        .route("/containers/{id}/start", post(post_container_start))
        .route("/containers/{id}/stop", post(post_container_stop))
        .route("/containers/{id}/restart", post(post_container_restart))
        .route("/containers/{id}/kill", post(post_container_kill))
        .route("/containers/{id}/pause", post(post_container_pause))
        .route("/containers/{id}/unpause", post(post_container_unpause))
        .route("/containers/{id}/top", get(get_container_top))
        .route("/containers/{id}/stats", get(get_container_stats))
        .route("/containers/{id}/update", post(post_container_update))
        .route("/containers/{id}/wait", post(post_container_wait))
        .route("/containers/{id}/logs", get(get_container_logs))
        .route("/containers/{id}/attach", post(post_container_attach))
        .route("/containers/{id}/resize", post(post_container_resize))
        .route("/containers/{id}/exec", post(post_container_exec))
        .route("/exec/{id}/start", post(post_exec_start))
        .route("/exec/{id}/resize", post(post_exec_resize))
        .route("/exec/{id}/json", get(get_exec_inspect))
        .route("/containers/{id}/{*op}", any(container_lifecycle))
}

const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn state_of(c: &pb::Container) -> pb::ContainerState {
    c.state.clone().unwrap_or_default()
}

/// A document the runtime sent, typed; one it could not have sent reads as
/// empty (the runtime checks what it stores).
fn doc<T: serde::de::DeserializeOwned + Default>(bytes: &[u8]) -> T {
    berth_models::parse_or_default("document", bytes).unwrap_or_default()
}

/// A typed document as JSON, for presentation.
fn value_of<T: serde::Serialize>(doc: &T) -> Value {
    serde_json::to_value(doc).unwrap_or(Value::Null)
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

/// The container's `State.Health`, if it has a healthcheck.
fn health_of(st: &pb::ContainerState) -> Option<berth_models::container::Health> {
    (!st.health.is_empty()).then(|| doc(&st.health))
}

/// The `Status` column of `docker ps`.
fn status_text(c: &pb::Container) -> String {
    let st = state_of(c);
    match st.status.as_str() {
        "created" => "Created".into(),
        "running" => {
            let up = format!("Up {}", human_duration(since(&st.started_at)));
            match health_of(&st).map(|h| h.status) {
                Some(s) if s == "starting" => format!("{up} (health: starting)"),
                Some(s) if !s.is_empty() => format!("{up} ({s})"),
                _ => up,
            }
        }
        "paused" => format!("Up {} (Paused)", human_duration(since(&st.started_at))),
        "exited" => format!("Exited ({}) {} ago", st.exit_code, human_duration(since(&st.finished_at))),
        "dead" => "Dead".into(),
        "removing" => "Removal In Progress".into(),
        "restarting" => format!("Restarting ({}) {} ago", st.exit_code, human_duration(since(&st.finished_at))),
        other => other.to_string(),
    }
}

fn network_mode(c: &pb::Container) -> String {
    // Only the one field: `docker ps` asks this of every container.
    #[derive(serde::Deserialize)]
    struct Mode<'a> {
        #[serde(rename = "NetworkMode", borrow)]
        mode: Option<std::borrow::Cow<'a, str>>,
    }
    let mode = serde_json::from_slice::<Mode<'_>>(&c.host_config).ok().and_then(|m| m.mode);
    match mode.as_deref() {
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
        "Ports": ports_of(c),
        "Labels": super::resources::map(&c.labels),
        "State": state_of(c).status,
        "Status": status_text(c),
        "HostConfig": {"NetworkMode": network_mode(c)},
        "NetworkSettings": {"Networks": networks_of(c)},
        "Mounts": mounts_json(&c.mounts),
    })
}

/// The published ports of a running container as `docker ps` lists them.
fn ports_of(c: &pb::Container) -> Value {
    let settings: NetworkSettings = doc(&state_of(c).network_settings);
    let mut out = Vec::new();
    for (key, bindings) in settings.ports.unwrap_or_default() {
        let (port, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
        let private: u64 = port.parse().unwrap_or(0);
        match bindings {
            Some(list) if !list.is_empty() => {
                for b in list {
                    let public: u64 = b.host_port.parse().unwrap_or(0);
                    out.push(json!({"IP": b.host_ip, "PrivatePort": private, "PublicPort": public, "Type": proto}));
                }
            }
            _ => out.push(json!({"PrivatePort": private, "Type": proto})),
        }
    }
    Value::Array(out)
}

/// The `Networks` of the recorded NetworkSettings, for the list.
fn networks_of(c: &pb::Container) -> Value {
    #[derive(serde::Deserialize)]
    struct Settings {
        #[serde(rename = "Networks")]
        networks: Option<Value>,
    }
    let settings = c.state.as_ref().map(|s| s.network_settings.as_slice()).unwrap_or_default();
    serde_json::from_slice::<Settings>(settings).ok().and_then(|s| s.networks).unwrap_or_else(|| json!({}))
}

/// The NetworkSettings the runtime recorded at the start (empty when stopped).
fn network_settings(c: &pb::Container) -> Value {
    value_of(&doc::<NetworkSettings>(&state_of(c).network_settings))
}

fn with_defaults(value: Value, defaults: Value) -> Value {
    let mut out: Map<String, Value> = defaults.as_object().cloned().unwrap_or_default();
    if let Value::Object(given) = value {
        // Not given (null) shows dockerd's default.
        for (k, v) in given.into_iter().filter(|(_, v)| !v.is_null()) {
            out.insert(k, v);
        }
    }
    Value::Object(out)
}

/// The `Mounts` of inspect and of the container list (without Berth's own `NoCopy`).
fn mounts_json(mounts: &[u8]) -> Value {
    let list: Vec<MountPoint> = doc(mounts);
    value_of(&list.into_iter().map(|m| MountPoint { no_copy: false, ..m }).collect::<Vec<_>>())
}

/// The ContainerInspectResponse JSON of a container.
fn inspect_json(c: &pb::Container) -> Value {
    let st = state_of(c);
    let mut config: ContainerConfig = doc(&c.config);
    config.image.clone_from(&c.image);
    let mut host_config: HostConfig = doc(&c.host_config);
    host_config.network_mode = network_mode(c);
    let config = with_defaults(
        value_of(&config),
        json!({
            "Hostname": "", "Domainname": "", "User": "", "AttachStdin": false, "AttachStdout": false,
            "AttachStderr": false, "Tty": false, "OpenStdin": false, "StdinOnce": false, "Env": [],
            "Cmd": null, "Image": "", "Volumes": null, "WorkingDir": "", "Entrypoint": null,
            "OnBuild": null, "Labels": {},
        }),
    );
    let host_config = with_defaults(
        value_of(&host_config),
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
    let status = ContainerStatus::parse(if st.status.is_empty() { "created" } else { &st.status });
    let state = StateDoc {
        status,
        running: status.is_running(),
        paused: status == ContainerStatus::Paused,
        restarting: status == ContainerStatus::Restarting,
        oom_killed: st.oom_killed,
        dead: status == ContainerStatus::Dead,
        pid: st.pid,
        exit_code: st.exit_code,
        error: st.error.clone(),
        started_at: if st.started_at.is_empty() { ZERO_TIME.into() } else { st.started_at.clone() },
        finished_at: if st.finished_at.is_empty() { ZERO_TIME.into() } else { st.finished_at.clone() },
        health: health_of(&st),
    };
    json!({
        "Id": c.id,
        "Created": c.created,
        "Path": c.path,
        "Args": c.args,
        "State": state,
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
        "Mounts": mounts_json(&c.mounts),
        "Config": config,
        "NetworkSettings": with_defaults(network_settings(c), json!({
            "Bridge": "", "SandboxID": "", "SandboxKey": "", "Ports": {}, "HairpinMode": false,
            "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "SecondaryIPAddresses": null,
            "SecondaryIPv6Addresses": null, "EndpointID": "", "Gateway": "", "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0, "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "",
            "Networks": {},
        })),
    })
}

/// ContainerCreate: `POST /containers/create?name=`.
async fn post_containers_create(State(s): State<AppState>, uri: Uri, body: Bytes) -> ApiResult<Response> {
    let p = Params::parse(uri.query());
    if body.is_empty() {
        return Err(Error::invalid("config cannot be empty in order to create a container").into());
    }
    let body: CreateBody = berth_models::parse("container config", &body).map_err(Error::invalid)?;
    let created = s
        .runtime
        .create(pb::CreateContainerRequest {
            name: p.get("name").unwrap_or("").to_string(),
            config: berth_models::to_vec(&body.config),
            host_config: berth_models::to_vec(&body.host_config),
            networking_config: berth_models::to_vec(&body.networking_config),
            platform: p.get("platform").unwrap_or("").to_string(),
        })
        .await?;
    Ok((StatusCode::CREATED, Json(json!({"Id": created.id, "Warnings": created.warnings}))).into_response())
}

/// ContainerPrune: `POST /containers/prune` (filters: until, label, label!).
async fn post_containers_prune(State(s): State<AppState>, uri: Uri) -> ApiResult<Json<Value>> {
    let r = s.runtime.prune(Params::parse(uri.query()).filters()?).await?;
    Ok(Json(json!({
        "ContainersDeleted": if r.deleted.is_empty() { Value::Null } else { json!(r.deleted) },
        "SpaceReclaimed": r.space_reclaimed,
    })))
}

/// ContainerList: `GET /containers/json`.
async fn get_containers_list(State(s): State<AppState>, uri: Uri) -> ApiResult<Json<Value>> {
    let p = Params::parse(uri.query());
    let limit = match p.get("limit") {
        None | Some("") => 0,
        Some(l) => l.parse::<i64>().map_err(|_| Error::invalid(format!("invalid limit {l:?}")))?,
    };
    let list = s.runtime.list(p.bool("all"), p.filters()?, limit.max(0)).await?;
    let mut out: Vec<Value> = list.iter().map(summary).collect();
    if p.bool("size") {
        // Measured for all at once (each walks a writable layer).
        let sizes = futures::future::join_all(list.iter().map(|c| s.runtime.size(&c.id))).await;
        for (v, size) in out.iter_mut().zip(sizes) {
            let size = size?;
            v["SizeRw"] = json!(size.size_rw);
            v["SizeRootFs"] = json!(size.size_root_fs);
        }
    }
    Ok(Json(Value::Array(out)))
}

/// ContainerInspect: `GET /containers/{id}/json`.
async fn get_container_inspect(State(s): State<AppState>, Path(id): Path<String>, uri: Uri) -> ApiResult<Json<Value>> {
    let c = s.runtime.inspect(&id).await?;
    let mut v = inspect_json(&c);
    if Params::parse(uri.query()).bool("size") {
        let size = s.runtime.size(&c.id).await?;
        v["SizeRw"] = json!(size.size_rw);
        v["SizeRootFs"] = json!(size.size_root_fs);
    }
    Ok(Json(v))
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

/// ContainerStart: `POST /containers/{id}/start` (304 when already running).
async fn post_container_start(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    Ok(if s.runtime.start(&id).await? { StatusCode::NOT_MODIFIED } else { StatusCode::NO_CONTENT })
}

fn timeout_param(p: &Params) -> ApiResult<i64> {
    match p.get("t").filter(|t| !t.is_empty()) {
        None => Ok(-1),
        Some(t) => t.parse::<i64>().map_err(|_| Error::invalid(format!("invalid value for t: {t:?}")).into()),
    }
}

/// ContainerStop: `POST /containers/{id}/stop?t=&signal=` (304 when not running).
async fn post_container_stop(State(s): State<AppState>, Path(id): Path<String>, uri: Uri) -> ApiResult<StatusCode> {
    let p = Params::parse(uri.query());
    let not_running = s.runtime.stop(&id, timeout_param(&p)?, p.get("signal").unwrap_or("")).await?;
    Ok(if not_running { StatusCode::NOT_MODIFIED } else { StatusCode::NO_CONTENT })
}

/// ContainerRestart: `POST /containers/{id}/restart?t=`.
async fn post_container_restart(State(s): State<AppState>, Path(id): Path<String>, uri: Uri) -> ApiResult<StatusCode> {
    let p = Params::parse(uri.query());
    s.runtime.restart(&id, timeout_param(&p)?, p.get("signal").unwrap_or("")).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// ContainerKill: `POST /containers/{id}/kill?signal=`.
async fn post_container_kill(State(s): State<AppState>, Path(id): Path<String>, uri: Uri) -> ApiResult<StatusCode> {
    let p = Params::parse(uri.query());
    s.runtime.kill(&id, p.get("signal").unwrap_or("")).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// ContainerPause: `POST /containers/{id}/pause`.
async fn post_container_pause(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    s.runtime.pause(&id, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// ContainerUnpause: `POST /containers/{id}/unpause`.
async fn post_container_unpause(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    s.runtime.pause(&id, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// ContainerTop: `GET /containers/{id}/top?ps_args=`: `{"Titles": [...],
/// "Processes": [[...], ...]}`.
async fn get_container_top(State(s): State<AppState>, Path(id): Path<String>, uri: Uri) -> ApiResult<Json<Value>> {
    let p = Params::parse(uri.query());
    let top = s.runtime.top(&id, p.get("ps_args").unwrap_or("")).await?;
    let processes: Vec<Vec<String>> = top.processes.into_iter().map(|r| r.values).collect();
    Ok(Json(json!({"Titles": top.titles, "Processes": processes})))
}

/// ContainerUpdate: `POST /containers/{id}/update`, answering `{"Warnings": [...]}`.
async fn post_container_update(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    // Checked here as Docker's type, so a malformed body is a 400 with the decoder's words.
    let update: berth_models::container::UpdateConfig =
        berth_models::parse("update config", &body).map_err(Error::invalid)?;
    let warnings = s.runtime.update(&id, &berth_models::to_vec(&update)).await?;
    Ok(Json(json!({"Warnings": warnings})))
}

/// One stats sample of `id`, typed.
async fn stats_sample(
    runtime: &std::sync::Arc<dyn berth_runtime_api::RuntimeApi>,
    id: &str,
) -> berth_core::Result<berth_models::stats::Stats> {
    let bytes = runtime.stats(id).await?;
    berth_models::parse("stats", &bytes).map_err(Error::internal)
}

/// ContainerStats: `GET /containers/{id}/stats?stream=&one-shot=`. Streamed
/// (the default): a sample a second, each carrying the one before as
/// `precpu_stats`, until the container is removed or the client leaves.
/// `stream=false` waits for a second sample so CPU % is not 0, as dockerd;
/// `one-shot=true` answers the first at once.
async fn get_container_stats(State(s): State<AppState>, Path(id): Path<String>, uri: Uri) -> ApiResult<Response> {
    let p = Params::parse(uri.query());
    let stream = p.get("stream").is_none_or(|_| p.bool("stream"));
    let one_shot = p.bool("one-shot");
    if stream && one_shot {
        return Err(Error::invalid("cannot have stream=true and one-shot=true").into());
    }
    let c = s.runtime.inspect(&id).await?;
    let runtime = s.runtime.clone();
    let zero = berth_models::stats::Stats::is_empty;
    if !stream {
        let mut sample = stats_sample(&runtime, &c.id).await?;
        if !one_shot && !zero(&sample) {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let mut next = stats_sample(&runtime, &c.id).await?;
            if !zero(&next) {
                next.precpu_stats = sample.cpu_stats;
                next.preread = sample.read;
            }
            sample = next;
        }
        return Ok(Json(sample).into_response());
    }
    let id = c.id;
    let lines = futures::stream::unfold(
        (runtime, id, None::<berth_models::stats::Stats>),
        |(runtime, id, previous)| async move {
            if previous.is_some() {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            // A removed container ends the stream.
            let mut sample = stats_sample(&runtime, &id).await.ok()?;
            if let Some(p) = previous.as_ref().filter(|p| !p.is_empty() && !sample.is_empty()) {
                sample.precpu_stats = p.cpu_stats.clone();
                sample.preread = p.read.clone();
            }
            let line = format!("{}\n", serde_json::to_string(&sample).unwrap_or_default());
            Some((Ok::<_, std::convert::Infallible>(Bytes::from(line)), (runtime, id, Some(sample))))
        },
    );
    let mut resp = Response::new(axum::body::Body::from_stream(lines));
    resp.headers_mut()
        .insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/json"));
    Ok(resp)
}

/// ContainerWait: `POST /containers/{id}/wait?condition=`. The status line and
/// headers go out at once; the body only when the condition holds, as the
/// docker CLI expects (it waits before it starts the container).
async fn post_container_wait(State(s): State<AppState>, Path(id): Path<String>, uri: Uri) -> ApiResult<Response> {
    let condition = Params::parse(uri.query()).get("condition").unwrap_or("").to_string();
    if !matches!(condition.as_str(), "" | "not-running" | "next-exit" | "removed") {
        return Err(Error::invalid(format!("invalid condition: {condition:?}")).into());
    }
    let c = s.runtime.inspect(&id).await?;
    let runtime = s.runtime.clone();
    use futures::StreamExt;
    let body = futures::stream::once(async move {
        let line = match runtime.wait(&c.id, &condition).await {
            Ok(r) if r.error.is_empty() => json!({"StatusCode": r.exit_code, "Error": null}),
            Ok(r) => json!({"StatusCode": r.exit_code, "Error": {"Message": r.error}}),
            Err(e) => json!({"StatusCode": -1, "Error": {"Message": e.message()}}),
        };
        Ok::<_, std::io::Error>(Bytes::from(format!("{line}\n")))
    })
    .take_until(s.shutdown.clone().cancelled_owned());
    let mut resp = (StatusCode::OK, axum::body::Body::from_stream(body)).into_response();
    resp.headers_mut()
        .insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/json"));
    Ok(resp)
}

fn logs_request(c: &pb::Container, p: &Params) -> ApiResult<pb::ContainerLogsRequest> {
    let (stdout, stderr) = (p.bool("stdout"), p.bool("stderr"));
    let tail = match p.get("tail").unwrap_or("all") {
        "all" | "" => -1,
        t => t.parse::<i64>().map_err(|_| Error::invalid(format!("invalid value for tail: {t:?}")))?,
    };
    let time = |k: &str| -> ApiResult<f64> {
        match p.get(k).filter(|v| !v.is_empty()) {
            None => Ok(0.0),
            Some(v) => v
                .parse::<f64>()
                .ok()
                .or_else(|| berth_core::id::parse_rfc3339(v).map(|t| t.unix_timestamp_nanos() as f64 / 1e9))
                .ok_or_else(|| Error::invalid(format!("invalid value for {k}: {v:?}")).into()),
        }
    };
    Ok(pb::ContainerLogsRequest {
        reference: c.id.clone(),
        follow: p.bool("follow"),
        stdout,
        stderr,
        tail,
        since: time("since")?,
        until: time("until")?,
        from_end: false,
    })
}

fn tty_of(c: &pb::Container) -> bool {
    doc::<ContainerConfig>(&c.config).tty
}

/// ContainerLogs: `GET /containers/{id}/logs`.
async fn get_container_logs(State(s): State<AppState>, Path(id): Path<String>, uri: Uri) -> ApiResult<Response> {
    let p = Params::parse(uri.query());
    let c = s.runtime.inspect(&id).await?;
    let req = logs_request(&c, &p)?;
    if !req.stdout && !req.stderr {
        return Err(Error::invalid("Bad parameters: you must choose at least one stream").into());
    }
    let tty = tty_of(&c);
    let framed = super::streams::frame_logs(s.runtime.logs(req).await?, tty, p.bool("timestamps"));
    use futures::StreamExt;
    let framed = framed.take_until(s.shutdown.clone().cancelled_owned());
    let body = axum::body::Body::from_stream(framed.map(|r| r.map_err(|e| std::io::Error::other(e.to_string()))));
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(axum::http::header::CONTENT_TYPE, streams::content_type(tty));
    Ok(resp)
}

/// ContainerAttach: `POST /containers/{id}/attach`, hijacked (see [`streams`]).
/// Attaching before the start (as `docker run` does) sees all of the output;
/// `logs=1` first replays the log.
async fn post_container_attach(
    State(s): State<AppState>,
    Path(id): Path<String>,
    req: axum::extract::Request,
) -> ApiResult<Response> {
    use futures::StreamExt;
    let (mut parts, _) = req.into_parts();
    let p = Params::parse(parts.uri.query());
    let c = s.runtime.inspect(&id).await?;
    let tty = tty_of(&c);
    let keys = streams::detach_keys(p.get("detachKeys").unwrap_or(""))?;
    let (stdout, stderr) = (p.bool("stdout"), p.bool("stderr"));
    let mut parts_out: Vec<berth_runtime_api::OutputStream> = Vec::new();
    if p.bool("logs") {
        let req = pb::ContainerLogsRequest { reference: c.id.clone(), stdout, stderr, tail: -1, ..Default::default() };
        let logs = s
            .runtime
            .logs(req)
            .await?
            .map(|r| r.map(|e| pb::StreamOutput { stream: e.stream, data: e.line, ..Default::default() }));
        parts_out.push(Box::pin(logs));
    }
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let stdin = p.bool("stdin");
    if p.bool("stream") || !p.bool("logs") {
        let req = pb::AttachRequest { reference: c.id.clone(), stdin, stdout, stderr };
        parts_out.push(s.runtime.attach(req, Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))).await?);
    }
    let output = Box::pin(futures::stream::iter(parts_out).flatten());
    let hijack = streams::Hijack { tty, stdin: stdin.then_some(tx), detach_keys: keys, shutdown: s.shutdown.clone() };
    Ok(streams::respond(&mut parts, output, hijack))
}

fn size_params(p: &Params) -> ApiResult<(u32, u32)> {
    let num = |k: &str| -> ApiResult<u32> {
        let v = p.get(k).unwrap_or("");
        v.parse::<u32>()
            .map_err(|_| Error::invalid(format!("invalid {k} value {v:?}: must be a non-negative integer")).into())
    };
    Ok((num("h")?, num("w")?))
}

/// ContainerResize: `POST /containers/{id}/resize?h=&w=`.
async fn post_container_resize(State(s): State<AppState>, Path(id): Path<String>, uri: Uri) -> ApiResult<StatusCode> {
    let (height, width) = size_params(&Params::parse(uri.query()))?;
    s.runtime.resize(pb::ResizeTtyRequest { reference: id, exec_id: String::new(), height, width }).await?;
    Ok(StatusCode::OK)
}

/// ContainerExec: `POST /containers/{id}/exec`.
async fn post_container_exec(State(s): State<AppState>, Path(id): Path<String>, body: Bytes) -> ApiResult<Response> {
    let config: ExecConfig = berth_models::parse("exec config", &body).map_err(Error::invalid)?;
    streams::detach_keys(&config.detach_keys)?;
    let exec_id = s.runtime.create_exec(pb::CreateExecRequest { reference: id, config: body.to_vec() }).await?;
    Ok((StatusCode::CREATED, Json(json!({"Id": exec_id}))).into_response())
}

/// The body of ExecStart.
#[derive(Debug, Default, serde::Deserialize)]
struct ExecStartConfig {
    /// No stream: the exec runs in the background.
    #[serde(rename = "Detach", default, deserialize_with = "berth_models::nullable")]
    detach: bool,
}

/// ExecStart: `POST /exec/{id}/start`, hijacked unless `Detach`.
async fn post_exec_start(
    State(s): State<AppState>,
    Path(id): Path<String>,
    req: axum::extract::Request,
) -> ApiResult<Response> {
    let (mut parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.map_err(|e| Error::invalid(format!("read body: {e}")))?;
    let start: ExecStartConfig = if body.iter().all(u8::is_ascii_whitespace) {
        ExecStartConfig::default()
    } else {
        berth_models::parse("exec start config", &body).map_err(Error::invalid)?
    };
    let info = s.runtime.inspect_exec(&id).await?;
    let config: ExecConfig = doc(&info.config);
    let (detach, tty, stdin) = (start.detach, config.tty, config.attach_stdin);
    let keys = streams::detach_keys(&config.detach_keys)?;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let output = s
        .runtime
        .start_exec(
            pb::StartExecRequest { exec_id: id, detach },
            Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)),
        )
        .await?;
    if detach {
        return Ok(StatusCode::OK.into_response());
    }
    let hijack = streams::Hijack { tty, stdin: stdin.then_some(tx), detach_keys: keys, shutdown: s.shutdown.clone() };
    Ok(streams::respond(&mut parts, output, hijack))
}

/// ExecResize: `POST /exec/{id}/resize?h=&w=`.
async fn post_exec_resize(State(s): State<AppState>, Path(id): Path<String>, uri: Uri) -> ApiResult<StatusCode> {
    let (height, width) = size_params(&Params::parse(uri.query()))?;
    s.runtime.resize(pb::ResizeTtyRequest { reference: String::new(), exec_id: id, height, width }).await?;
    Ok(StatusCode::OK)
}

/// ExecInspect: `GET /exec/{id}/json`.
async fn get_exec_inspect(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let info = s.runtime.inspect_exec(&id).await?;
    let cfg: ExecConfig = doc(&info.config);
    let cmd = cfg.cmd.as_slice();
    Ok(Json(json!({
        "ID": info.id,
        "Running": info.running,
        "ExitCode": info.exit_code,
        "ProcessConfig": {
            "tty": cfg.tty,
            "entrypoint": cmd.first().cloned().unwrap_or_default(),
            "arguments": cmd.get(1..).unwrap_or_default(),
            "privileged": cfg.privileged,
            "user": cfg.user,
        },
        "OpenStdin": cfg.attach_stdin,
        "OpenStderr": cfg.attach_stderr,
        "OpenStdout": cfg.attach_stdout,
        "CanRemove": false,
        "ContainerID": info.container_id,
        "DetachKeys": cfg.detach_keys,
        "Pid": info.pid,
    })))
}

/// Everything else under `/containers/{id}/`: 404 for a missing container,
/// 501 until containers can run.
async fn container_lifecycle(State(s): State<AppState>, Path((id, op)): Path<(String, String)>) -> ApiResult<()> {
    s.runtime.inspect(&id).await?;
    Err(Error::not_implemented(format!("{op} is not implemented yet")).into())
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
