//! System endpoints: `/_ping` (SystemPing, SystemPingHead), `/version`
//! (SystemVersion), `/info` (SystemInfo), `/system/df` (SystemDataUsage), and the
//! answers of a dockerd that is not in a swarm and has no plugins.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::error::{ApiResult, message};
use crate::version::{API_VERSION, MIN_API_VERSION};
use crate::{AppState, BERTH_VERSION};

pub fn router() -> Router<AppState> {
    let swarm = || async {
        message(
            StatusCode::SERVICE_UNAVAILABLE,
            "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.",
        )
    };
    let mut router = Router::new()
        .route("/_ping", get(ping).head(ping))
        .route("/version", get(version))
        .route("/info", get(info))
        .route("/system/df", get(data_usage))
        .route("/plugins", get(|| async { Json(json!([])) }))
        .route("/session", post(session))
        .route(
            "/swarm/leave",
            post(|| async { message(StatusCode::SERVICE_UNAVAILABLE, "This node is not part of a swarm") }),
        );
    for area in ["swarm", "services", "tasks", "nodes", "secrets", "configs"] {
        router = router.route(&format!("/{area}"), any(swarm)).route(&format!("/{area}/{{*rest}}"), any(swarm));
    }
    router
}

/// Session: `POST /session`, which BuildKit-capable clients open before a
/// build. As dockerd without BuildKit: the `h2c` upgrade is taken (101) and
/// the connection held until the client closes it, nothing being served on
/// it; no or another `Upgrade` is dockerd's 400.
async fn session(State(state): State<AppState>, req: axum::extract::Request) -> Response {
    let (mut parts, _) = req.into_parts();
    let proto = parts.headers.get(header::UPGRADE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    if proto.is_empty() {
        return message(StatusCode::BAD_REQUEST, "no upgrade proto in request");
    }
    if proto != "h2c" {
        return message(StatusCode::BAD_REQUEST, format!("protocol {proto} not supported"));
    }
    let Some(upgrade) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() else {
        return message(StatusCode::BAD_REQUEST, "handler does not support hijack");
    };
    let shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut io = hyper_util::rt::TokioIo::new(upgraded);
        let mut sink = tokio::io::sink();
        tokio::select! {
            _ = tokio::io::copy(&mut io, &mut sink) => {}
            _ = shutdown.cancelled() => {}
        }
    });
    let mut resp = StatusCode::SWITCHING_PROTOCOLS.into_response();
    resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    resp.headers_mut().insert(header::UPGRADE, HeaderValue::from_static("h2c"));
    resp
}

/// SystemPing / SystemPingHead.
async fn ping() -> Response {
    let mut resp = (StatusCode::OK, "OK").into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-store, must-revalidate"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert("builder-version", HeaderValue::from_static("1"));
    h.insert("swarm", HeaderValue::from_static("inactive"));
    resp
}

pub(crate) fn kernel_version() -> String {
    nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default()
}

fn arch() -> &'static str {
    berth_models::host_arch()
}

/// SystemVersion.
async fn version() -> Json<Value> {
    let kernel = kernel_version();
    Json(json!({
        "Platform": {"Name": "Berth"},
        "Components": [{
            "Name": "Engine",
            "Version": BERTH_VERSION,
            "Details": {
                "ApiVersion": API_VERSION.to_string(),
                "MinAPIVersion": MIN_API_VERSION.to_string(),
                "Os": "linux",
                "Arch": arch(),
                "KernelVersion": kernel,
                "GitCommit": option_env!("BERTH_GIT_COMMIT").unwrap_or(""),
                "GoVersion": "",
                "BuildTime": "",
                "Experimental": "false",
            }
        }],
        "Version": BERTH_VERSION,
        "ApiVersion": API_VERSION.to_string(),
        "MinAPIVersion": MIN_API_VERSION.to_string(),
        "GitCommit": option_env!("BERTH_GIT_COMMIT").unwrap_or(""),
        "GoVersion": "",
        "Os": "linux",
        "Arch": arch(),
        "KernelVersion": kernel,
        "BuildTime": "",
    }))
}

/// Host facts read from /proc and /sys.
pub(crate) struct Host {
    pub mem_total: u64,
    pub ncpu: usize,
    pub cgroup_version: &'static str,
    pub operating_system: String,
    pub os_version: String,
    pub hostname: String,
}

pub(crate) fn host() -> Host {
    let mem_total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<u64>().ok()))
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0);
    let ncpu = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    // cgroup v2 alone has cgroup.controllers at the root; hybrid hosts (v1 controllers
    // plus /sys/fs/cgroup/unified) count as v1, as dockerd reports them.
    let cgroup_version = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() { "2" } else { "1" };
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let field = |k: &str| {
        os_release
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default()
    };
    let hostname = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
    Host {
        mem_total,
        ncpu,
        cgroup_version,
        operating_system: if field("PRETTY_NAME").is_empty() { "Linux".into() } else { field("PRETTY_NAME") },
        os_version: field("VERSION_ID"),
        hostname,
    }
}

/// SystemInfo.
async fn info(
    State(state): State<AppState>,
    axum::Extension(version): axum::Extension<crate::version::ApiVersion>,
) -> ApiResult<Json<Value>> {
    let containers = state.runtime.list(true, vec![], 0).await?;
    let status = |c: &berth_runtime_api::pb::Container| c.state.as_ref().map(|s| s.status.clone()).unwrap_or_default();
    let running = containers.iter().filter(|c| status(c) == "running").count();
    let paused = containers.iter().filter(|c| status(c) == "paused").count();
    let store = state.images.store_info().await?;
    let runtimes = state.runtime.runtime_info().await?;
    let runtime_paths: serde_json::Map<String, Value> =
        runtimes.runtimes.iter().map(|r| (r.name.clone(), json!({"path": r.path}))).collect();
    let host = host();
    let now = berth_core::id::now_rfc3339();
    // Which authorization is in force: a policy file, or none (every caller is admin).
    let mut security_options = runtimes.security_options;
    if state.authz.as_ref().is_some_and(|a| a.enforcing()) {
        security_options.push("name=authorization,policy=file".into());
    }
    let doc = json!({
        "ID": state.info.id,
        "Containers": containers.len(),
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": containers.len() - running - paused,
        "Images": store.images,
        "Driver": "overlay2",
        "DriverStatus": [["Backing Filesystem", backing_fs(&state.info.data_root)], ["Supports d_type", "true"], ["Using metacopy", "false"], ["Native Overlay Diff", "true"], ["userxattr", "false"]],
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"], "Authorization": null, "Log": ["json-file"]},
        "MemoryLimit": true,
        "SwapLimit": true,
        "CpuCfsPeriod": true,
        "CpuCfsQuota": true,
        "CPUShares": true,
        "CPUSet": true,
        "PidsLimit": true,
        "IPv4Forwarding": std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").map(|s| s.trim() == "1").unwrap_or(false),
        "Debug": state.info.debug,
        "NFd": std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0),
        "OomKillDisable": false,
        "NGoroutines": 0,
        "SystemTime": now,
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": host.cgroup_version,
        "NEventsListener": 0,
        "KernelVersion": kernel_version(),
        "OperatingSystem": host.operating_system,
        "OSVersion": host.os_version,
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"InsecureRegistryCIDRs": ["127.0.0.0/8"], "IndexConfigs": {}, "Mirrors": []},
        "NCPU": host.ncpu,
        "MemTotal": host.mem_total,
        "GenericResources": null,
        "DockerRootDir": state.info.data_root.to_string_lossy(),
        "HttpProxy": "",
        "HttpsProxy": "",
        "NoProxy": "",
        "Name": host.hostname,
        "Labels": [],
        "ExperimentalBuild": false,
        "ServerVersion": BERTH_VERSION,
        "Runtimes": runtime_paths,
        "DefaultRuntime": runtimes.default_runtime,
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": false, "Error": "", "RemoteManagers": null},
        "LiveRestoreEnabled": true,
        "Isolation": "",
        "InitBinary": "",
        "ContainerdCommit": {"ID": ""},
        "RuncCommit": {"ID": ""},
        "InitCommit": {"ID": ""},
        "SecurityOptions": security_options,
        "Warnings": [],
    });
    Ok(Json(info_for_version(doc, version)))
}

/// `/info` as dockerd answers a client of `version`: before 1.25 with
/// `ExecutionDriver` and security options by name only, before 1.39 with
/// `<unknown>` for an unknown kernel or OS.
fn info_for_version(mut doc: Value, version: crate::version::ApiVersion) -> Value {
    use crate::version::ApiVersion;
    if version < ApiVersion(1, 25) {
        doc["ExecutionDriver"] = json!("<not supported>");
        let names: Vec<String> = doc["SecurityOptions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|o| o.split(',').find_map(|kv| kv.strip_prefix("name=")).unwrap_or(o).to_string())
            .collect();
        doc["SecurityOptions"] = json!(names);
    }
    if version < ApiVersion(1, 39) {
        for key in ["KernelVersion", "OperatingSystem"] {
            if doc[key].as_str().is_some_and(str::is_empty) {
                doc[key] = json!("<unknown>");
            }
        }
    }
    doc
}

fn backing_fs(path: &std::path::Path) -> &'static str {
    match nix::sys::statfs::statfs(path).map(|s| s.filesystem_type()) {
        Ok(t) if t == nix::sys::statfs::EXT4_SUPER_MAGIC => "extfs",
        Ok(t) if t == nix::sys::statfs::XFS_SUPER_MAGIC => "xfs",
        Ok(t) if t == nix::sys::statfs::BTRFS_SUPER_MAGIC => "btrfs",
        Ok(t) if t == nix::sys::statfs::TMPFS_MAGIC => "tmpfs",
        Ok(t) if t == nix::sys::statfs::OVERLAYFS_SUPER_MAGIC => "overlayfs",
        _ => "<unknown>",
    }
}

/// SystemDataUsage.
async fn data_usage(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let store = state.images.store_info().await?;
    let images = state.images.list(true, vec![]).await?;
    let containers = state.runtime.list(true, vec![], 0).await?;
    let volumes = state.volumes.list(vec![], true).await?;
    // The builds' intermediate images are listed as build cache, not as images.
    let cache = super::images::intermediate_ids(&images);
    let summaries: Vec<Value> = images
        .iter()
        .filter(|i| !cache.contains(i.id.as_str()))
        .map(|i| {
            let mut s = super::images::summary(i, API_VERSION);
            // Output being built: system df counts each image's containers.
            s["Containers"] = json!(containers.iter().filter(|c| c.image_id == i.id).count());
            s
        })
        .collect();
    Ok(Json(json!({
        "LayersSize": store.layers_size,
        "Images": summaries,
        "Containers": containers.iter().map(super::containers::summary).collect::<Vec<_>>(),
        "Volumes": volumes.iter().map(super::resources::volume_json).collect::<Vec<_>>(),
        "BuildCache": super::images::build_cache(&images),
    })))
}
