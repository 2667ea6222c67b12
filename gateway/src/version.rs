//! API versions: the `/v1.NN` path prefix, its bounds, and the headers every
//! response carries.
//!
//! The docker CLI pings, reads `Api-Version`, and prefixes every path with
//! `/v{min(client, server)}`; with `DOCKER_API_VERSION` it skips the ping. Every
//! route is served with and without the prefix. A prefix outside
//! [`MIN_API_VERSION`]..=[`API_VERSION`] answers 400, as dockerd does. Because
//! axum routes before `Router::layer` middleware runs, the prefix is stripped by
//! a layer wrapped *around* the router.

use std::fmt;

use axum::body::Body;
use axum::http::{HeaderValue, Request, Uri};
use axum::middleware::Next;
use axum::response::Response;

/// The newest API version Berth speaks (the docker CLI 28 speaks 1.50).
pub const API_VERSION: ApiVersion = ApiVersion(1, 50);
/// The oldest API version Berth accepts.
pub const MIN_API_VERSION: ApiVersion = ApiVersion(1, 24);

/// An API version `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion(pub u32, pub u32);

impl ApiVersion {
    /// Parses `1.44`.
    pub fn parse(s: &str) -> Option<Self> {
        let (a, b) = s.split_once('.')?;
        Some(ApiVersion(a.parse().ok()?, b.parse().ok()?))
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// Splits `/v1.44/images/json` into the version and `/images/json`.
pub fn split_prefix(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/v")?;
    let end = rest.find('/').unwrap_or(rest.len());
    let ver = &rest[..end];
    if ver.is_empty() || !ver.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let tail = &rest[end..];
    Some((ver, if tail.is_empty() { "/" } else { tail }))
}

/// Strips the version prefix, checks its bounds, records the version as a request
/// extension and stamps the version headers on the response.
pub async fn layer(mut req: Request<Body>, next: Next) -> Response {
    let mut version = API_VERSION;
    let path = req.uri().path().to_string();
    if let Some((ver, tail)) = split_prefix(&path) {
        let Some(v) = ApiVersion::parse(ver) else {
            return stamp(crate::error::message(
                axum::http::StatusCode::BAD_REQUEST,
                format!("invalid API version {ver:?}"),
            ));
        };
        if v < MIN_API_VERSION {
            return stamp(crate::error::message(
                axum::http::StatusCode::BAD_REQUEST,
                format!(
                    "client version {v} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
                ),
            ));
        }
        if v > API_VERSION {
            return stamp(crate::error::message(
                axum::http::StatusCode::BAD_REQUEST,
                format!("client version {v} is too new. Maximum supported API version is {API_VERSION}"),
            ));
        }
        version = v;
        let new = match req.uri().query() {
            Some(q) => format!("{tail}?{q}"),
            None => tail.to_string(),
        };
        if let Ok(uri) = new.parse::<Uri>() {
            *req.uri_mut() = uri;
        }
    }
    req.extensions_mut().insert(version);
    stamp(next.run(req).await)
}

fn stamp(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert("api-version", HeaderValue::from_static(API_VERSION_STR));
    h.insert("ostype", HeaderValue::from_static("linux"));
    h.insert("docker-experimental", HeaderValue::from_static("false"));
    if let Ok(v) = HeaderValue::from_str(&format!("Berth/{} (linux)", crate::BERTH_VERSION)) {
        h.insert("server", v);
    }
    resp
}

/// [`API_VERSION`] as a header value.
pub const API_VERSION_STR: &str = "1.50";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_prefixes() {
        assert_eq!(split_prefix("/v1.41/images/json"), Some(("1.41", "/images/json")));
        assert_eq!(split_prefix("/v1.50/_ping"), Some(("1.50", "/_ping")));
        assert_eq!(split_prefix("/images/json"), None);
        assert_eq!(split_prefix("/volumes/x"), None);
        assert_eq!(split_prefix("/v1.44"), Some(("1.44", "/")));
    }

    #[test]
    fn orders_versions() {
        assert!(ApiVersion::parse("1.9") < ApiVersion::parse("1.24"));
        assert!(ApiVersion::parse("1.50") > ApiVersion::parse("1.44"));
        assert_eq!(API_VERSION.to_string(), API_VERSION_STR);
        assert_eq!(ApiVersion::parse("x.1"), None);
    }
}
