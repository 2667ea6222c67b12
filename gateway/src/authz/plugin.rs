//! Docker's authorization plugin protocol (`--authorization-plugin NAME`), as
//! dockerd speaks it, so existing plugins work: each plugin is activated once
//! (`Plugin.Activate` must list `authz`), asked before every request
//! (`AuthZPlugin.AuthZReq`) and told the answer's status and headers after it
//! (`AuthZPlugin.AuthZRes`); either may refuse. JSON request bodies up to 1 MiB
//! are sent along, base64 in `RequestBody`, as dockerd sends them. A plugin is
//! found as dockerd finds it: an absolute socket path, `/run/docker/plugins/
//! NAME.sock`, or a `/etc/docker/plugins/NAME.spec` naming `unix://PATH`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use serde::{Deserialize, Serialize};

/// How long a plugin may take to answer.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer read from a plugin.
const MAX_ANSWER: usize = 1 << 20;
/// JSON bodies up to this size go to the plugin, as dockerd sends them.
pub const MAX_BODY: usize = 1 << 20;

/// One plugin.
#[derive(Debug, Clone)]
pub struct Plugin {
    /// Its name, for messages.
    pub name: String,
    socket: PathBuf,
}

/// What a plugin is asked (moby's `authorization.Request`).
#[derive(Debug, Default, Serialize)]
pub struct AuthzRequest {
    #[serde(rename = "User", skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(rename = "UserAuthNMethod", skip_serializing_if = "String::is_empty")]
    pub authn_method: String,
    #[serde(rename = "RequestMethod")]
    pub method: String,
    #[serde(rename = "RequestUri")]
    pub uri: String,
    #[serde(rename = "RequestBody", skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(rename = "RequestHeaders", skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(rename = "ResponseStatusCode", skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(rename = "ResponseHeaders", skip_serializing_if = "BTreeMap::is_empty")]
    pub response_headers: BTreeMap<String, String>,
}

impl AuthzRequest {
    /// A request's facts; `body` only when it is JSON and small.
    pub fn new(user: &str, method: &str, uri: &str, headers: &axum::http::HeaderMap, body: Option<&[u8]>) -> Self {
        AuthzRequest {
            user: user.to_string(),
            authn_method: if user.is_empty() { String::new() } else { "TLS".into() },
            method: method.to_string(),
            uri: uri.to_string(),
            body: body.map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
            headers: header_map(headers),
            ..Default::default()
        }
    }
}

/// Headers as the protocol carries them: one value each.
pub fn header_map(h: &axum::http::HeaderMap) -> BTreeMap<String, String> {
    h.iter().filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string()))).collect()
}

#[derive(Debug, Default, Deserialize)]
struct AuthzAnswer {
    #[serde(rename = "Allow", default)]
    allow: bool,
    #[serde(rename = "Msg", default)]
    msg: String,
    #[serde(rename = "Err", default)]
    err: String,
}

#[derive(Debug, Default, Deserialize)]
struct Activation {
    #[serde(rename = "Implements", default)]
    implements: Vec<String>,
}

/// Why a plugin did not allow a request: refused (403) or failed (500).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Denied(String),
    Failed(String),
}

impl Plugin {
    /// Finds plugin `name` and activates it.
    pub async fn activate(name: &str) -> Result<Plugin, String> {
        let socket = locate(name)?;
        let p = Plugin { name: name.to_string(), socket };
        let body = p.call("/Plugin.Activate", b"{}").await?;
        let a: Activation = serde_json::from_slice(&body).map_err(|e| format!("plugin {name}: activation: {e}"))?;
        if !a.implements.iter().any(|i| i == "authz") {
            return Err(format!("plugin {name} does not implement authz (it implements {:?})", a.implements));
        }
        Ok(p)
    }

    /// `AuthZPlugin.AuthZReq` (no status) or `AuthZPlugin.AuthZRes` (with one).
    pub async fn check(&self, req: &AuthzRequest) -> Result<(), Refusal> {
        let which = if req.status.is_some() { "AuthZPlugin.AuthZRes" } else { "AuthZPlugin.AuthZReq" };
        let body = serde_json::to_vec(req).map_err(|e| Refusal::Failed(e.to_string()))?;
        let failed = |e: String| Refusal::Failed(format!("plugin {} failed with error: {which}: {e}", self.name));
        let answer = self.call(&format!("/{which}"), &body).await.map_err(failed)?;
        let a: AuthzAnswer = serde_json::from_slice(&answer).map_err(|e| failed(e.to_string()))?;
        if !a.err.is_empty() {
            return Err(failed(a.err));
        }
        if !a.allow {
            return Err(Refusal::Denied(format!("authorization denied by plugin {}: {}", self.name, a.msg)));
        }
        Ok(())
    }

    /// One POST over the plugin's socket; the answer's body.
    async fn call(&self, path: &str, body: &[u8]) -> Result<Vec<u8>, String> {
        use http_body_util::{BodyExt, Full};
        let work = async {
            let stream = tokio::net::UnixStream::connect(&self.socket)
                .await
                .map_err(|e| format!("plugin {}: connect {}: {e}", self.name, self.socket.display()))?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| format!("plugin {}: {e}", self.name))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            let req = axum::http::Request::post(path)
                .header("Host", "plugin")
                .header("Content-Type", "application/vnd.docker.plugins.v1.2+json")
                .header("Accept", "application/vnd.docker.plugins.v1.2+json")
                .body(Full::new(bytes::Bytes::copy_from_slice(body)))
                .map_err(|e| e.to_string())?;
            let resp = sender.send_request(req).await.map_err(|e| format!("plugin {}: {e}", self.name))?;
            let status = resp.status();
            let limited = http_body_util::Limited::new(resp.into_body(), MAX_ANSWER);
            let bytes = limited.collect().await.map_err(|e| format!("plugin {}: {e}", self.name))?.to_bytes();
            if !status.is_success() {
                return Err(format!("plugin {} answered {status}: {}", self.name, String::from_utf8_lossy(&bytes)));
            }
            Ok(bytes.to_vec())
        };
        tokio::time::timeout(TIMEOUT, work).await.map_err(|_| format!("plugin {} did not answer in time", self.name))?
    }
}

/// Where plugin `name` listens.
fn locate(name: &str) -> Result<PathBuf, String> {
    if name.starts_with('/') {
        return Ok(PathBuf::from(name));
    }
    if name.is_empty() || name.contains('/') || name.contains("..") {
        return Err(format!("invalid plugin name {name:?}"));
    }
    let sock = Path::new("/run/docker/plugins").join(format!("{name}.sock"));
    if sock.exists() {
        return Ok(sock);
    }
    for dir in ["/etc/docker/plugins", "/usr/lib/docker/plugins"] {
        let spec = Path::new(dir).join(format!("{name}.spec"));
        if let Ok(text) = std::fs::read_to_string(&spec)
            && let Some(path) = text.trim().strip_prefix("unix://")
        {
            return Ok(PathBuf::from(path));
        }
    }
    Err(format!("authorization plugin {name} not found (no /run/docker/plugins/{name}.sock, no {name}.spec)"))
}
