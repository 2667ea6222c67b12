//! The image config document (OCI `application/vnd.oci.image.config.v1+json`,
//! Docker's `application/vnd.docker.container.image.v1+json`): the image's
//! default container `Config`, its layers' diff IDs and its history. An image's
//! ID is the digest of this document's bytes, so Berth keeps the bytes it was
//! given and reads them through this type; it never re-serializes a config it
//! did not make.

use serde::{Deserialize, Serialize};

use crate::container::ContainerConfig;
use crate::{Extra, nullable};

/// An image config.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// `amd64`, `arm64`, ...
    #[serde(default, deserialize_with = "nullable")]
    pub architecture: String,
    /// `linux`.
    #[serde(default, deserialize_with = "nullable")]
    pub os: String,
    /// `v8` and the like.
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub variant: String,
    /// RFC 3339.
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub created: String,
    /// The author.
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub author: String,
    /// The Docker version that built it.
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub docker_version: String,
    /// A comment (`docker import -m`).
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub comment: String,
    /// The default config of its containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ContainerConfig>,
    /// The layers, by uncompressed digest.
    #[serde(default, deserialize_with = "nullable")]
    pub rootfs: RootFs,
    /// How it was built, one entry a step.
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    /// Fields Berth does not act on (`container_config`, `docker_version`...).
    #[serde(flatten)]
    pub extra: Extra,
}

/// `rootfs`: the layers' diff IDs, bottom first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type", default = "layers")]
    pub kind: String,
    /// `sha256:<hex>` of each uncompressed layer.
    #[serde(default, deserialize_with = "nullable")]
    pub diff_ids: Vec<String>,
}

fn layers() -> String {
    "layers".into()
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs { kind: layers(), diff_ids: Vec::new() }
    }
}

/// One build step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// RFC 3339.
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub created: String,
    /// The instruction.
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub created_by: String,
    /// The author.
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub author: String,
    /// A comment.
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub comment: String,
    /// The step made no layer.
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

impl ImageConfig {
    /// The default container config (empty when the image has none).
    pub fn container_config(&self) -> ContainerConfig {
        self.config.clone().unwrap_or_default()
    }
}

/// Docker's `AuthConfig`: registry credentials, as `POST /auth` takes them and
/// as `X-Registry-Auth` carries them (base64 JSON). Never stored, never logged.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
pub struct AuthConfig {
    /// The user name.
    #[serde(default, deserialize_with = "nullable")]
    pub username: String,
    /// The password.
    #[serde(default, deserialize_with = "nullable")]
    pub password: String,
    /// `base64(user:password)`, as some clients send it instead.
    #[serde(default, deserialize_with = "nullable")]
    pub auth: String,
    /// The registry (`https://index.docker.io/v1/`, `host:port`).
    #[serde(default, deserialize_with = "nullable")]
    pub serveraddress: String,
    /// A refresh token from a token service.
    #[serde(default, deserialize_with = "nullable")]
    pub identitytoken: String,
    /// A bearer token for the registry.
    #[serde(default, deserialize_with = "nullable")]
    pub registrytoken: String,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("username", &self.username)
            .field("serveraddress", &self.serveraddress)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_docker_image_config() {
        let doc = br#"{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"],"Env":["PATH=/bin"],"Labels":null},
            "container_config":{"Cmd":["/bin/sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:aa"]},
            "history":[{"created_by":"ADD file","empty_layer":false},{"created_by":"CMD sh","empty_layer":true}]}"#;
        let c: ImageConfig = serde_json::from_slice(doc).expect("config");
        assert_eq!(c.container_config().argv(), vec!["sh"]);
        assert_eq!(c.rootfs.diff_ids, vec!["sha256:aa"]);
        assert!(c.history[1].empty_layer);
        assert!(c.extra.contains_key("container_config"));
    }
}
