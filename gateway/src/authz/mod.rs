//! Who may do what: the caller's identity, a policy of grants, and an audit log.
//!
//! - **Identity**: on TCP with `--tlsverify`, the client certificate's subject
//!   (`cn:NAME`, `ou:UNIT`) and subject alternative names (`san:URI`,
//!   `san:DNS`); on the unix socket, the peer's `uid:N` and `gid:N`
//!   (`SO_PEERCRED`). [`server`](crate::server) attaches it to every request.
//! - **Policy** (`--authorization-config FILE`, TOML, reloaded on SIGHUP): grants
//!   map identities to a role (`read-only`, `operator`, `admin`, or one of the
//!   file's `[roles.NAME]` listing actions), optionally scoped to labels, and
//!   grant dangerous options (`allow`). An action is the method and the route as
//!   registered: `POST /containers/{id}/start`. What makes a container create or
//!   an exec dangerous is read from its body: `privileged`, `host-network`,
//!   `host-pid`, `host-ipc`, `host-uts`, `userns-host`, `cap-add`, `device`,
//!   `seccomp-unconfined`, `bind:/path` (a host path under it); every role but
//!   `admin` needs them granted. Without a file, every caller is admin.
//! - **Label scope**: a grant with `labels` sees only containers, images,
//!   volumes and networks carrying them, and only their events (lists and
//!   events are filtered, others answer 404 as if absent, so nothing leaks);
//!   the containers, volumes and networks it creates get them (an image's
//!   labels are part of its ID: those come from its build).
//! - **Audit** (`--audit-log FILE`): one JSON line per state-changing or denied
//!   request, each carrying the SHA-256 of the line before it (`prev`), so a
//!   removed or edited line breaks the chain ([`verify`], `berthd audit verify`);
//!   rotated by size to `FILE.1` (older ones shift up) without breaking it; each
//!   record is also an `audit` event for `docker events`.
//! - **Plugins** (`--authorization-plugin NAME`): Docker's AuthZ plugin
//!   protocol ([`plugin`]), asked after the policy, before and after each request.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use axum::body::Body;
use axum::extract::{MatchedPath, State};
use axum::http::{Method, Request, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::error::message;

pub mod plugin;

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Every name a grant may use: `uid:0`, `gid:0`, `cn:alice`, `ou:ops`, `san:spiffe://x`.
    pub names: Vec<String>,
    /// Where it connected from: `unix`, or the TCP peer address.
    pub source: String,
}

impl Identity {
    /// A unix socket peer.
    pub fn unix(uid: u32, gid: u32) -> Identity {
        Identity { names: vec![format!("uid:{uid}"), format!("gid:{gid}")], source: "unix".into() }
    }

    /// A TLS client, from its certificate (DER).
    pub fn from_certificate(der: &[u8], peer: std::net::SocketAddr) -> Identity {
        use x509_parser::prelude::*;
        let mut names = Vec::new();
        if let Ok((_, cert)) = X509Certificate::from_der(der) {
            let subject = cert.subject();
            names.extend(subject.iter_common_name().filter_map(|a| a.as_str().ok()).map(|cn| format!("cn:{cn}")));
            names.extend(
                subject.iter_organizational_unit().filter_map(|a| a.as_str().ok()).map(|ou| format!("ou:{ou}")),
            );
            if let Ok(Some(san)) = cert.subject_alternative_name() {
                for n in &san.value.general_names {
                    match n {
                        GeneralName::URI(u) => names.push(format!("san:{u}")),
                        GeneralName::DNSName(d) => names.push(format!("san:{d}")),
                        _ => {}
                    }
                }
            }
        }
        Identity { names, source: peer.to_string() }
    }

    /// A plain TCP client (`--insecure-tcp` on loopback): no identity.
    pub fn anonymous(source: String) -> Identity {
        Identity { names: vec![], source }
    }

    /// How the log names it.
    pub fn shown(&self) -> &str {
        self.names.first().map(String::as_str).unwrap_or("anonymous")
    }
}

/// A policy file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    grant: Vec<Grant>,
    #[serde(default)]
    roles: BTreeMap<String, RoleDef>,
}

/// One grant of a policy.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// `cn:NAME`, `ou:UNIT`, `uid:N`, `gid:N` or `san:NAME`.
    pub identity: String,
    /// `read-only`, `operator`, `admin` or a role of the file.
    pub role: String,
    /// Only objects with these labels; new objects get them.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Dangerous options granted (see the module).
    #[serde(default)]
    pub allow: Vec<String>,
}

/// A role of a policy file: the actions it may take (`GET /containers/json`,
/// or `GET *` for every route of a method).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleDef {
    actions: Vec<String>,
}

const BUILTIN_ROLES: [&str; 3] = ["read-only", "operator", "admin"];

/// What read-only callers may not read: files and images (they hold what
/// containers and images keep), and hijacked streams.
const NOT_READ_ONLY: [&str; 6] = [
    "/containers/{id}/archive",
    "/containers/{id}/export",
    "/containers/{id}/attach/ws",
    "/images/get",
    "/images/{name}/get",
    "/exec/{id}/json",
];

/// What an operator may do beside reading.
const OPERATOR: [&str; 9] = [
    "POST /containers/{id}/start",
    "POST /containers/{id}/stop",
    "POST /containers/{id}/restart",
    "POST /containers/{id}/kill",
    "POST /containers/{id}/pause",
    "POST /containers/{id}/unpause",
    "POST /containers/{id}/wait",
    "POST /containers/{id}/resize",
    "POST /containers/{id}/attach",
];

/// The exec routes, an operator's only with `allow = ["exec"]`.
const EXEC: [&str; 4] =
    ["POST /containers/{id}/exec", "POST /exec/{id}/start", "POST /exec/{id}/resize", "GET /exec/{id}/json"];

/// A loaded policy.
#[derive(Debug, Default)]
pub struct Policy {
    grants: Vec<Grant>,
    roles: BTreeMap<String, RoleDef>,
}

impl Policy {
    /// Reads and checks a policy file.
    pub fn load(path: &Path) -> Result<Policy, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn parse(text: &str) -> Result<Policy, String> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| e.to_string())?;
        for g in &file.grant {
            let kind = g.identity.split_once(':').map(|(k, _)| k);
            if !matches!(kind, Some("cn" | "ou" | "uid" | "gid" | "san")) {
                return Err(format!("grant identity {:?}: want cn:, ou:, uid:, gid: or san:", g.identity));
            }
            if !BUILTIN_ROLES.contains(&g.role.as_str()) && !file.roles.contains_key(&g.role) {
                return Err(format!("grant for {}: unknown role {:?}", g.identity, g.role));
            }
        }
        Ok(Policy { grants: file.grant, roles: file.roles })
    }

    fn role_allows(&self, g: &Grant, method: &Method, route: &str) -> bool {
        let action = format!("{method} {route}");
        let reading = (*method == Method::GET || *method == Method::HEAD) && !NOT_READ_ONLY.contains(&route);
        let exec = g.allow.iter().any(|a| a == "exec") && EXEC.contains(&action.as_str());
        match g.role.as_str() {
            "admin" => true,
            "read-only" => reading,
            "operator" => reading || OPERATOR.contains(&action.as_str()) || exec,
            custom => self
                .roles
                .get(custom)
                .is_some_and(|r| r.actions.iter().any(|a| *a == action || *a == format!("{method} *") || a == "*")),
        }
    }

    /// The grant that lets `id` take `method route` with the `dangerous`
    /// options, or why not.
    fn decide(&self, id: &Identity, method: &Method, route: &str, dangerous: &[Dangerous]) -> Result<&Grant, String> {
        let mine: Vec<&Grant> = self.grants.iter().filter(|g| id.names.contains(&g.identity)).collect();
        if mine.is_empty() {
            return Err(format!("{} has no grant", id.shown()));
        }
        let mut missing = String::new();
        for g in &mine {
            if !self.role_allows(g, method, route) {
                missing = format!("{} (role {}) may not {method} {route}", id.shown(), g.role);
                continue;
            }
            match dangerous.iter().find(|d| g.role != "admin" && !d.granted_by(&g.allow)) {
                Some(d) => missing = format!("{} (role {}) lacks the grant {:?}", id.shown(), g.role, d.name()),
                None => return Ok(g),
            }
        }
        Err(missing)
    }

    fn len(&self) -> usize {
        self.grants.len()
    }
}

/// An option of a request that needs a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Dangerous {
    /// `privileged`, `host-network`, ...
    Named(&'static str),
    /// A bind of this host path.
    Bind(String),
}

impl Dangerous {
    fn name(&self) -> String {
        match self {
            Dangerous::Named(n) => n.to_string(),
            Dangerous::Bind(p) => format!("bind:{p}"),
        }
    }

    fn granted_by(&self, allow: &[String]) -> bool {
        match self {
            Dangerous::Named(n) => allow.iter().any(|a| a == n),
            Dangerous::Bind(path) => allow.iter().filter_map(|a| a.strip_prefix("bind:")).any(|root| {
                let root = root.trim_end_matches('/');
                Path::new(path).components().all(|c| !matches!(c, std::path::Component::ParentDir))
                    && (root.is_empty() || path == root || path.starts_with(&format!("{root}/")))
            }),
        }
    }
}

/// The dangerous options of a container create or exec body (a body that
/// does not parse has none: its handler refuses it anyway).
fn dangerous_in(route: &str, body: &[u8]) -> Vec<Dangerous> {
    use berth_models::container::{CreateBody, ExecConfig};
    let mut out = Vec::new();
    if route == "/containers/{id}/exec" {
        if berth_models::parse_or_default::<ExecConfig>("exec config", body).is_ok_and(|e| e.privileged) {
            out.push(Dangerous::Named("privileged"));
        }
        return out;
    }
    let Ok(create) = berth_models::parse_or_default::<CreateBody>("container config", body) else { return out };
    let hc = create.host_config;
    if hc.privileged {
        out.push(Dangerous::Named("privileged"));
    }
    for (mode, name) in [
        (&hc.network_mode, "host-network"),
        (&hc.pid_mode, "host-pid"),
        (&hc.ipc_mode, "host-ipc"),
        (&hc.uts_mode, "host-uts"),
        (&hc.userns_mode, "userns-host"),
    ] {
        if mode == "host" {
            out.push(Dangerous::Named(name));
        }
    }
    if hc.cap_add.as_ref().is_some_and(|c| !c.is_empty()) {
        out.push(Dangerous::Named("cap-add"));
    }
    if hc.devices.as_ref().is_some_and(|d| !d.is_empty())
        || hc.device_cgroup_rules.as_ref().is_some_and(|r| !r.is_empty())
    {
        out.push(Dangerous::Named("device"));
    }
    let unconfined =
        |o: &String| matches!(o.as_str(), "seccomp=unconfined" | "seccomp:unconfined" | "apparmor=unconfined");
    if hc.security_opt().iter().any(unconfined) {
        out.push(Dangerous::Named("seccomp-unconfined"));
    }
    for b in hc.binds() {
        // `SOURCE:DEST[:MODE]`, where a source starting with `/` is a host path.
        if let Some((src, _)) = b.split_once(':')
            && src.starts_with('/')
        {
            out.push(Dangerous::Bind(src.to_string()));
        }
    }
    for m in hc.mounts().iter().filter(|m| m.kind == "bind") {
        out.push(Dangerous::Bind(m.source.clone()));
    }
    out
}

/// The kind of object a route names by `{id}`/`{name}`, when scoped by labels.
fn scoped_kind(route: &str) -> Option<&'static str> {
    if route.starts_with("/containers/{id}") {
        Some("container")
    } else if route.starts_with("/volumes/{name}") {
        Some("volume")
    } else if route.starts_with("/networks/{id}") {
        Some("network")
    } else if route.starts_with("/images/{name}") {
        Some("image")
    } else {
        None
    }
}

/// The audit log: a file written append-only, each line chained to the one before.
pub struct Audit {
    path: PathBuf,
    max_size: u64,
    state: Mutex<AuditState>,
}

struct AuditState {
    file: std::fs::File,
    size: u64,
    /// The hex SHA-256 of the last line written (64 zeros before the first).
    last: String,
}

/// The hash a line's successor carries: hex SHA-256 of the line (without its newline).
fn line_hash(line: &str) -> String {
    hex::encode(Sha256::digest(line.as_bytes()))
}

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Rotated files kept (`FILE.1` ... `FILE.5`).
const KEEP_ROTATED: usize = 5;

impl Audit {
    /// Opens (or creates, mode 0600) the log at `path`, continuing its chain.
    pub fn open(path: &Path, max_size: u64) -> std::io::Result<Audit> {
        let existing = std::fs::read_to_string(path).unwrap_or_default();
        let last = existing.lines().last().map(line_hash).unwrap_or_else(|| GENESIS.to_string());
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(Audit { path: path.to_path_buf(), max_size, state: Mutex::new(AuditState { file, size, last }) })
    }

    /// Appends one record (its `prev` field is added here).
    pub fn record(&self, mut entry: serde_json::Map<String, Value>) {
        let Ok(mut st) = self.state.lock() else { return };
        entry.insert("prev".into(), Value::String(st.last.clone()));
        let line = Value::Object(entry).to_string();
        if st.size + line.len() as u64 + 1 > self.max_size && st.size > 0 {
            // Rotate: the new file's first line chains to the old file's last.
            for i in (1..KEEP_ROTATED).rev() {
                let _ = std::fs::rename(rotated(&self.path, i), rotated(&self.path, i + 1));
            }
            let _ = std::fs::rename(&self.path, rotated(&self.path, 1));
            match open_append(&self.path) {
                Ok(f) => {
                    st.file = f;
                    st.size = 0;
                }
                Err(e) => tracing::error!(error = %e, "audit log rotation failed"),
            }
        }
        if let Err(e) = writeln!(st.file, "{line}").and_then(|()| st.file.flush()) {
            tracing::error!(error = %e, "audit log write failed");
            return;
        }
        st.size += line.len() as u64 + 1;
        st.last = line_hash(&line);
    }
}

fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut p = path.as_os_str().to_os_string();
    p.push(format!(".{n}"));
    PathBuf::from(p)
}

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)
}

/// Checks an audit log's chain: each line's `prev` is the hash of the line
/// before it (the first line's chains to a rotated file or is the genesis).
/// The number of lines, or the first bad line (1-based) and why.
pub fn verify(path: &Path) -> Result<usize, (usize, String)> {
    let text = std::fs::read_to_string(path).map_err(|e| (0, format!("read {}: {e}", path.display())))?;
    let mut prev: Option<String> = None;
    let mut n = 0;
    for (i, line) in text.lines().enumerate() {
        n = i + 1;
        let v: Value = serde_json::from_str(line).map_err(|e| (n, format!("not a JSON record: {e}")))?;
        let got = v["prev"].as_str().ok_or_else(|| (n, "no prev field".to_string()))?;
        if let Some(want) = &prev
            && got != want
        {
            return Err((n, "the chain is broken: the line before it was removed or changed".into()));
        }
        prev = Some(line_hash(line));
    }
    Ok(n)
}

/// Authorization and audit, as configured.
pub struct Authz {
    /// The policy file (none: everyone is admin).
    path: Option<PathBuf>,
    policy: RwLock<Option<Arc<Policy>>>,
    audit: Option<Audit>,
    /// Docker AuthZ plugins, asked in order.
    plugins: Vec<plugin::Plugin>,
    /// Where audit records also go as `audit` events (`docker events`).
    pub events: Arc<berth_core::events::EventBus>,
}

impl Authz {
    /// From `--authorization-config`, `--audit-log` and `--authorization-plugin`;
    /// `None` when none is set. Plugins are activated now: one that does not
    /// answer, or does not implement `authz`, stops the start.
    pub async fn new(
        policy: Option<&Path>,
        audit: Option<&Path>,
        plugins: &[String],
    ) -> anyhow::Result<Option<Arc<Authz>>> {
        if policy.is_none() && audit.is_none() && plugins.is_empty() {
            return Ok(None);
        }
        let mut active = Vec::new();
        for name in plugins {
            active.push(plugin::Plugin::activate(name).await.map_err(anyhow::Error::msg)?);
        }
        let loaded = policy.map(Policy::load).transpose().map_err(anyhow::Error::msg)?;
        let audit = audit
            .map(|p| Audit::open(p, 64 << 20).map_err(|e| anyhow::anyhow!("open the audit log {}: {e}", p.display())))
            .transpose()?;
        Ok(Some(Arc::new(Authz {
            path: policy.map(Path::to_path_buf),
            policy: RwLock::new(loaded.map(Arc::new)),
            audit,
            plugins: active,
            events: Arc::new(berth_core::events::EventBus::new()),
        })))
    }

    /// As the daemon's configuration asks, the policy reloaded on every SIGHUP.
    pub async fn from_config(config: &crate::config::DaemonConfig) -> anyhow::Result<Option<Arc<Authz>>> {
        let authz = Self::new(
            config.authorization_config.as_deref(),
            config.audit_log.as_deref(),
            &config.authorization_plugins,
        )
        .await?;
        if let Some(a) = &authz {
            a.reload_on_sighup()?;
        }
        Ok(authz)
    }

    /// Whether a policy is in force (`docker info` says so).
    pub fn enforcing(&self) -> bool {
        self.policy.read().is_ok_and(|p| p.is_some())
    }

    /// Reads the policy file again; a bad file keeps the old policy.
    pub fn reload(&self) {
        let Some(path) = &self.path else { return };
        match Policy::load(path) {
            Ok(p) => {
                tracing::info!(grants = p.len(), file = %path.display(), "authorization policy reloaded");
                if let Ok(mut slot) = self.policy.write() {
                    *slot = Some(Arc::new(p));
                }
            }
            Err(e) => tracing::error!(error = %e, "authorization policy not reloaded; the old one stays"),
        }
    }

    /// Reloads the policy on every SIGHUP, for the process's life.
    pub fn reload_on_sighup(self: &Arc<Self>) -> std::io::Result<()> {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let me = self.clone();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                me.reload();
            }
        });
        Ok(())
    }

    fn current(&self) -> Option<Arc<Policy>> {
        self.policy.read().ok().and_then(|p| p.clone())
    }
}

/// Bodies read to judge a request (creates and execs) are at most this big.
const MAX_JUDGED_BODY: usize = 4 << 20;

fn denied(text: &str) -> Response {
    message(StatusCode::FORBIDDEN, format!("authorization denied: {text}"))
}

/// The middleware: decides, scopes, and audits every request.
pub async fn authorize(State(state): State<AppState>, req: Request<Body>, next: Next) -> Response {
    let Some(authz) = state.authz.clone() else { return next.run(req).await };
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string()).unwrap_or_default();
    let id = req.extensions().get::<Identity>().cloned().unwrap_or_else(|| Identity::anonymous("local".into()));
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let (mut parts, body) = req.into_parts();
    let resource = {
        use axum::extract::FromRequestParts;
        let params = axum::extract::RawPathParams::from_request_parts(&mut parts, &state).await.ok();
        params.and_then(|p| p.iter().find(|(k, _)| matches!(*k, "id" | "name")).map(|(_, v)| v.to_string()))
    };
    let req = Request::from_parts(parts, body);
    let changes = method != Method::GET && method != Method::HEAD;
    let audit = |decision: &str, rule: &str, status: u16| {
        if authz.audit.is_some() {
            let actor = resource.clone().unwrap_or_else(|| path.clone());
            authz.events.publish(
                "audit",
                decision,
                &actor,
                [
                    ("identity", id.names.join(",")),
                    ("source", id.source.clone()),
                    ("method", method.to_string()),
                    ("path", path.clone()),
                    ("rule", rule.to_string()),
                    ("status", status.to_string()),
                ],
            );
        }
        if let Some(a) = &authz.audit {
            let mut e = serde_json::Map::new();
            e.insert("time".into(), json!(berth_core::id::now_rfc3339()));
            e.insert("identity".into(), json!(id.names));
            e.insert("source".into(), json!(id.source));
            e.insert("method".into(), json!(method.as_str()));
            e.insert("path".into(), json!(path));
            e.insert("resource".into(), json!(resource));
            e.insert("decision".into(), json!(decision));
            e.insert("rule".into(), json!(rule));
            e.insert("status".into(), json!(status));
            a.record(e);
        }
    };
    let policy = authz.current();
    // Judge the bodies that carry dangerous options, and give new objects the
    // grant's labels; plugins see every JSON body up to 1 MiB, as dockerd sends them.
    let judged = policy.is_some()
        && matches!(
            (method.as_str(), route.as_str()),
            ("POST", "/containers/create" | "/containers/{id}/exec" | "/volumes/create" | "/networks/create")
        );
    let json_body = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    let small = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n <= plugin::MAX_BODY);
    let for_plugins = !authz.plugins.is_empty() && json_body && small;
    let (parts, body) = req.into_parts();
    let (raw, body) = if judged || for_plugins {
        match axum::body::to_bytes(body, MAX_JUDGED_BODY).await {
            Ok(b) => (Some(b.clone()), Body::from(b)),
            Err(_) => return message(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
        }
    } else {
        (None, body)
    };
    let body_json = if judged {
        raw.as_deref().and_then(|b| serde_json::from_slice::<Value>(b).ok()).unwrap_or(Value::Null)
    } else {
        Value::Null
    };
    let mut rule = "no policy".to_string();
    let mut req = Request::from_parts(parts, body);
    if let Some(policy) = policy {
        let dangerous = if judged { dangerous_in(&route, raw.as_deref().unwrap_or_default()) } else { vec![] };
        let grant = match policy.decide(&id, &method, &route, &dangerous) {
            Ok(g) => g.clone(),
            Err(why) => {
                tracing::warn!(identity = %id.shown(), source = %id.source, %method, %route, reason = %why, "request denied");
                audit("deny", &why, 403);
                return denied(&why);
            }
        };
        rule = format!("{} -> {}", grant.identity, grant.role);
        if !grant.labels.is_empty() {
            match scope(&state, &grant.labels, &route, resource.as_deref(), req, body_json).await {
                Ok(r) => req = r,
                Err(resp) => {
                    audit("deny", &format!("{rule}: outside its labels"), resp.status().as_u16());
                    return resp;
                }
            }
        }
    }
    // Docker AuthZ plugins: the user is the client certificate's common name, as dockerd sends it.
    let user = id.names.iter().find_map(|n| n.strip_prefix("cn:")).unwrap_or_default().to_string();
    let uri = req.uri().to_string();
    let mut asked = plugin::AuthzRequest::new(
        &user,
        method.as_str(),
        &uri,
        req.headers(),
        raw.as_deref().filter(|_| for_plugins && json_body),
    );
    for p in &authz.plugins {
        if let Err(refusal) = p.check(&asked).await {
            return plugin_refused(&audit, refusal);
        }
    }
    tracing::debug!(identity = %id.shown(), %method, %route, rule = %rule, "request allowed");
    let resp = next.run(req).await;
    // After it (not for hijacked streams, already handed over): the plugins hear the status.
    if !authz.plugins.is_empty() && resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        asked.status = Some(resp.status().as_u16());
        asked.response_headers = plugin::header_map(resp.headers());
        for p in &authz.plugins {
            if let Err(refusal) = p.check(&asked).await {
                return plugin_refused(&audit, refusal);
            }
        }
    }
    if changes {
        audit("allow", &rule, resp.status().as_u16());
    }
    resp
}

/// A plugin's refusal as dockerd answers it: 403, or 500 when it failed.
fn plugin_refused(audit: &impl Fn(&str, &str, u16), refusal: plugin::Refusal) -> Response {
    let (status, text) = match refusal {
        plugin::Refusal::Denied(m) => (StatusCode::FORBIDDEN, m),
        plugin::Refusal::Failed(m) => (StatusCode::INTERNAL_SERVER_ERROR, m),
    };
    tracing::warn!(reason = %text, "request refused by an authorization plugin");
    audit("deny", &text, status.as_u16());
    message(status, text)
}

/// Applies a grant's label scope to a request: lists filtered by the labels,
/// objects without them answered as absent, new objects given them.
async fn scope(
    state: &AppState,
    labels: &BTreeMap<String, String>,
    route: &str,
    resource: Option<&str>,
    req: Request<Body>,
    body: Value,
) -> Result<Request<Body>, Response> {
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let has_all = |got: &[(String, String)]| labels.iter().all(|(k, v)| got.iter().any(|(gk, gv)| gk == k && gv == v));
    match route {
        "/containers/json" | "/volumes" | "/networks" | "/networks/" | "/images/json" | "/events" => {
            let (mut parts, body) = req.into_parts();
            let mut query: Vec<(String, String)> =
                form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes()).into_owned().collect();
            let mut filters: BTreeMap<String, Value> = query
                .iter()
                .find(|(k, _)| k == "filters")
                .and_then(|(_, v)| serde_json::from_str(v).ok())
                .unwrap_or_default();
            let mut wanted: Vec<Value> = match filters.remove("label") {
                // Both shapes clients send: a list, or a map of value to true.
                Some(Value::Array(a)) => a,
                Some(Value::Object(m)) => m.into_iter().map(|(k, _)| Value::String(k)).collect(),
                _ => vec![],
            };
            wanted.extend(pairs.iter().map(|p| Value::String(p.clone())));
            filters.insert("label".into(), Value::Array(wanted));
            query.retain(|(k, _)| k != "filters");
            query.push(("filters".into(), Value::from(serde_json::Map::from_iter(filters)).to_string()));
            let q: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(query).finish();
            let uri = format!("{}?{q}", parts.uri.path());
            parts.uri = uri.parse().map_err(|_| message(StatusCode::BAD_REQUEST, "invalid query"))?;
            return Ok(Request::from_parts(parts, body));
        }
        "/containers/create" | "/volumes/create" | "/networks/create" => {
            let mut body = if body.is_object() { body } else { json!({}) };
            let slot = &mut body["Labels"];
            if !slot.is_object() {
                *slot = json!({});
            }
            for (k, v) in labels {
                slot[k] = Value::String(v.clone());
            }
            let (mut parts, _) = req.into_parts();
            parts.headers.remove(axum::http::header::CONTENT_LENGTH);
            return Ok(Request::from_parts(parts, Body::from(body.to_string())));
        }
        _ => {}
    }
    let (Some(kind), Some(reference)) = (scoped_kind(route), resource) else { return Ok(req) };
    let to_pairs = |kv: &[berth_proto::types::v1::KeyValue]| -> Vec<(String, String)> {
        kv.iter().map(|p| (p.key.clone(), p.value.clone())).collect()
    };
    let (visible, absent) = match kind {
        "container" => match state.runtime.inspect(reference).await {
            Ok(c) => {
                let cfg: berth_models::container::ContainerConfig =
                    berth_models::parse_or_default("config", &c.config).unwrap_or_default();
                let got: Vec<(String, String)> = cfg.labels.unwrap_or_default().into_iter().collect();
                (has_all(&got), format!("No such container: {reference}"))
            }
            Err(_) => (true, String::new()),
        },
        "image" => match state.images.inspect(reference).await {
            Ok(i) => {
                let cfg: berth_models::image::ImageConfig =
                    berth_models::parse_or_default("image config", &i.config).unwrap_or_default();
                let got: Vec<(String, String)> =
                    cfg.container_config().labels.unwrap_or_default().into_iter().collect();
                (has_all(&got), format!("No such image: {reference}"))
            }
            Err(_) => (true, String::new()),
        },
        "volume" => match state.volumes.inspect(reference).await {
            Ok(v) => (has_all(&to_pairs(&v.labels)), format!("get {reference}: no such volume")),
            Err(_) => (true, String::new()),
        },
        _ => match state.networks.inspect(reference).await {
            Ok(n) => (has_all(&to_pairs(&n.labels)), format!("network {reference} not found")),
            Err(_) => (true, String::new()),
        },
    };
    if visible { Ok(req) } else { Err(message(StatusCode::NOT_FOUND, absent)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
        [[grant]]
        identity = "cn:alice"
        role = "read-only"
        labels = { team = "a" }

        [[grant]]
        identity = "cn:bob"
        role = "operator"
        allow = ["exec", "privileged", "bind:/srv/data"]

        [[grant]]
        identity = "uid:0"
        role = "admin"

        [[grant]]
        identity = "ou:ci"
        role = "builder"

        [roles.builder]
        actions = ["POST /build", "GET *"]
    "#;

    fn who(name: &str) -> Identity {
        Identity { names: vec![name.to_string()], source: "test".into() }
    }

    #[test]
    fn roles_allow_what_they_name() {
        let p = Policy::parse(POLICY).expect("policy");
        let get = Method::GET;
        let post = Method::POST;
        assert!(p.decide(&who("cn:alice"), &get, "/containers/json", &[]).is_ok());
        assert!(p.decide(&who("cn:alice"), &post, "/containers/{id}/start", &[]).is_err());
        assert!(p.decide(&who("cn:alice"), &get, "/containers/{id}/archive", &[]).is_err(), "no files");
        assert!(p.decide(&who("cn:bob"), &post, "/containers/{id}/start", &[]).is_ok());
        assert!(p.decide(&who("cn:bob"), &post, "/containers/{id}/exec", &[]).is_ok(), "exec granted");
        assert!(p.decide(&who("cn:bob"), &post, "/containers/create", &[]).is_err());
        assert!(p.decide(&who("ou:ci"), &post, "/build", &[]).is_ok());
        assert!(p.decide(&who("ou:ci"), &post, "/containers/create", &[]).is_err());
        assert!(p.decide(&who("uid:0"), &Method::DELETE, "/images/{name}", &[]).is_ok());
        let why = p.decide(&who("cn:mallory"), &get, "/_ping", &[]).expect_err("no grant");
        assert!(why.contains("no grant"), "{why}");
        assert!(Policy::parse("[[grant]]\nidentity = \"bob\"\nrole = \"admin\"\n").is_err(), "no kind");
        assert!(Policy::parse("[[grant]]\nidentity = \"cn:x\"\nrole = \"nope\"\n").is_err(), "unknown role");
    }

    #[test]
    fn dangerous_options_need_grants() {
        let body = json!({"HostConfig": {
            "Privileged": true, "NetworkMode": "host", "CapAdd": ["NET_ADMIN"],
            "Binds": ["/srv/data/x:/x", "vol:/v", "/etc:/host-etc:ro"],
            "Mounts": [{"Type": "bind", "Source": "/srv/data", "Target": "/d"}],
            "SecurityOpt": ["seccomp=unconfined"]
        }});
        let d = dangerous_in("/containers/create", body.to_string().as_bytes());
        let names: Vec<String> = d.iter().map(Dangerous::name).collect();
        assert_eq!(
            names,
            [
                "privileged",
                "host-network",
                "cap-add",
                "seccomp-unconfined",
                "bind:/srv/data/x",
                "bind:/etc",
                "bind:/srv/data"
            ]
        );
        let allow = vec!["bind:/srv/data".to_string()];
        assert!(Dangerous::Bind("/srv/data/x".into()).granted_by(&allow));
        assert!(Dangerous::Bind("/srv/data".into()).granted_by(&allow));
        assert!(!Dangerous::Bind("/srv/database".into()).granted_by(&allow));
        assert!(!Dangerous::Bind("/srv/data/../../etc".into()).granted_by(&allow));
        let p = Policy::parse(POLICY).expect("policy");
        let privileged = [Dangerous::Named("privileged")];
        let why = p.decide(&who("cn:alice"), &Method::POST, "/containers/{id}/exec", &privileged);
        assert!(why.is_err());
        assert!(p.decide(&who("uid:0"), &Method::POST, "/containers/create", &d).is_ok(), "admin has them all");
        assert!(dangerous_in("/containers/{id}/exec", br#"{"Privileged": true}"#).len() == 1);
        let host = br#"{"HostConfig": {"UTSMode": "host", "PidMode": "host"}}"#;
        let names: Vec<String> = dangerous_in("/containers/create", host).iter().map(Dangerous::name).collect();
        assert_eq!(names, ["host-pid", "host-uts"]);
    }

    #[test]
    fn the_audit_chain_breaks_where_a_line_changes() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("audit.log");
        let a = Audit::open(&path, 1 << 20).expect("open");
        for i in 0..5 {
            let mut e = serde_json::Map::new();
            e.insert("n".into(), json!(i));
            a.record(e);
        }
        drop(a);
        // Reopened, the chain goes on.
        let a = Audit::open(&path, 1 << 20).expect("reopen");
        a.record(serde_json::Map::new());
        assert_eq!(verify(&path), Ok(6));
        let text = std::fs::read_to_string(&path).expect("read");
        let edited = text.replacen("\"n\":2", "\"n\":7", 1);
        std::fs::write(&path, edited).expect("write");
        assert_eq!(verify(&path).map_err(|(line, _)| line), Err(4), "the line after the edited one");
        let mut lines: Vec<&str> = text.lines().collect();
        lines.remove(1);
        std::fs::write(&path, lines.join("\n")).expect("write");
        assert_eq!(verify(&path).map_err(|(line, _)| line), Err(2), "a removed line");
        // Rotation keeps the chain across files.
        let small = dir.path().join("small.log");
        let a = Audit::open(&small, 200).expect("open");
        for i in 0..10 {
            let mut e = serde_json::Map::new();
            e.insert("n".into(), json!(i));
            a.record(e);
        }
        assert!(rotated(&small, 1).exists());
        let last_rotated = std::fs::read_to_string(rotated(&small, 1)).expect("rotated");
        let first_new = std::fs::read_to_string(&small).expect("new");
        let first: Value = serde_json::from_str(first_new.lines().next().expect("a line")).expect("json");
        assert_eq!(first["prev"], line_hash(last_rotated.lines().last().expect("a line")));
    }
}
