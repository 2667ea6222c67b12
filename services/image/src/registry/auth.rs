//! Token authentication (the distribution spec's `WWW-Authenticate: Bearer`
//! challenge and token service), done here rather than by oci-client, which
//! reads the token service's answer whole into memory whatever its size: a
//! registry is as hostile as anything else. The token is then given to
//! oci-client as a bearer credential, which it keeps for the blob reads and
//! uploads of the same repository without asking again.

use berth_core::{Error, ErrorKind, Result};
use oci_client::secrets::RegistryAuth;
use oci_client::{Reference as OciRef, RegistryOperation};

use super::{Endpoint, brief, error_of, request_error};

/// The largest token service answer read (a token is a few KiB).
pub(crate) const MAX_TOKEN_REPLY: usize = 64 << 10;

/// A `Bearer` challenge: where to get a token, and for which service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Challenge {
    /// The token service's URL.
    pub realm: String,
    /// The `service` to ask the token for.
    pub service: Option<String>,
}

impl Challenge {
    /// Reads `Bearer realm="...",service="...",scope="..."` (quoted or not;
    /// commas inside quotes kept).
    pub fn parse(header: &str) -> Option<Challenge> {
        let (scheme, params) = header.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let mut fields = Vec::new();
        let mut rest = params.trim();
        while !rest.is_empty() {
            let (key, after) = rest.split_once('=')?;
            let (value, next) = match after.strip_prefix('"') {
                Some(quoted) => {
                    let end = quoted.find('"')?;
                    (&quoted[..end], &quoted[end + 1..])
                }
                None => after.split_once(',').map_or((after, ""), |(v, n)| (v, n)),
            };
            fields.push((key.trim().to_ascii_lowercase(), value.to_string()));
            rest = next.trim_start().trim_start_matches(',').trim_start();
        }
        let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        Some(Challenge { realm: field("realm").filter(|r| !r.is_empty())?, service: field("service") })
    }
}

/// The registry's challenge at `/v2/`, if it asks for a token (its body is not read).
pub(crate) async fn challenge(endpoint: &Endpoint) -> Result<Option<Challenge>> {
    let url = format!("{}/v2/", endpoint.registry_base());
    let resp = endpoint
        .http()?
        .get(&url)
        .send()
        .await
        .map_err(|e| Error::unavailable(format!("Get \"{url}\": {}", request_error(&e))))?;
    let header = resp.headers().get(reqwest::header::WWW_AUTHENTICATE).and_then(|h| h.to_str().ok());
    Ok(header.and_then(Challenge::parse))
}

/// Asks the token service for a token for `scope`, with basic credentials
/// when there are any, reading at most [`MAX_TOKEN_REPLY`] bytes.
pub(crate) async fn token(endpoint: &Endpoint, c: &Challenge, scope: &str, auth: &RegistryAuth) -> Result<String> {
    let mut query = vec![("scope", scope.to_string())];
    if let Some(service) = &c.service {
        query.push(("service", service.clone()));
    }
    let mut req = endpoint.http()?.get(&c.realm).query(&query);
    if let RegistryAuth::Basic(user, password) = auth {
        req = req.basic_auth(user, Some(password));
    }
    let realm = &c.realm;
    let failed = |e: reqwest::Error| Error::unavailable(format!("Get \"{realm}\": {}", request_error(&e)));
    let mut resp = req.send().await.map_err(failed)?;
    let status = resp.status();
    if resp.content_length().is_some_and(|n| n > MAX_TOKEN_REPLY as u64) && status.is_success() {
        return Err(too_big(realm));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(failed)? {
        if body.len() + chunk.len() > MAX_TOKEN_REPLY {
            if !status.is_success() {
                break;
            }
            return Err(too_big(realm));
        }
        body.extend_from_slice(&chunk);
    }
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body);
        return Err(Error::new(
            ErrorKind::Unauthenticated,
            format!("unauthorized: authentication required: {}", brief(&text)),
        ));
    }
    #[derive(serde::Deserialize)]
    struct Reply {
        #[serde(default)]
        token: String,
        #[serde(default)]
        access_token: String,
    }
    let reply: Reply = serde_json::from_slice(&body)
        .map_err(|e| Error::invalid(format!("the token service {realm} answered something else than a token: {e}")))?;
    let token = if reply.token.is_empty() { reply.access_token } else { reply.token };
    if token.is_empty() {
        return Err(Error::invalid(format!("the token service {realm} answered no token")));
    }
    Ok(token)
}

fn too_big(realm: &str) -> Error {
    Error::invalid(format!("the token service {realm} answered more than {MAX_TOKEN_REPLY} bytes"))
}

/// Authenticates `client` for `oref` and `op`: gets a token itself when the
/// registry asks for one (see the module), else lets oci-client use the
/// credentials as they are (basic or none). The bearer token, if any.
pub(crate) async fn authenticate(
    endpoint: &Endpoint,
    client: &oci_client::Client,
    oref: &OciRef,
    auth: &RegistryAuth,
    op: RegistryOperation,
    what: &str,
) -> Result<Option<String>> {
    let given_token = matches!(auth, RegistryAuth::Bearer(_));
    let challenge = if given_token { None } else { challenge(endpoint).await? };
    let Some(c) = challenge else {
        // A token the client gave, basic credentials or none: oci-client only
        // looks at /v2/'s headers for these.
        return client.auth(oref, auth, op).await.map_err(|e| error_of(e, what));
    };
    let scope = match op {
        RegistryOperation::Pull => format!("repository:{}:pull", oref.repository()),
        RegistryOperation::Push => format!("repository:{}:pull,push", oref.repository()),
    };
    let token = token(endpoint, &c, &scope, auth).await.map_err(|e| e.context(what.to_string()))?;
    client.auth(oref, &RegistryAuth::Bearer(token.clone()), op).await.map_err(|e| error_of(e, what))?;
    Ok(Some(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_as_registries_send_them() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(
            c,
            Some(Challenge {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into())
            })
        );
        let c = Challenge::parse(r#"bearer service="a,b", realm=http://127.0.0.1:5001/token"#).expect("parsed");
        assert_eq!((c.realm.as_str(), c.service.as_deref()), ("http://127.0.0.1:5001/token", Some("a,b")));
        assert_eq!(Challenge::parse(r#"Basic realm="Registry Realm""#), None);
        assert_eq!(Challenge::parse(r#"Bearer service="x""#), None, "no realm");
        assert_eq!(Challenge::parse(r#"Bearer realm="unterminated"#), None);
    }
}
