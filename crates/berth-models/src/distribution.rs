//! Registry and image-layout documents: content descriptors, image manifests
//! (Docker schema 2 and OCI) and manifest lists / image indexes. The same types
//! read a registry's answers and the `index.json`/manifests of a `docker save`
//! or OCI layout tarball.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::nullable;

/// Docker schema 2 manifest media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list media type.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A platform an image (or an index entry) is for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// `amd64`, `arm64`, ...
    #[serde(default, deserialize_with = "nullable")]
    pub architecture: String,
    /// `linux`, ...
    #[serde(default, deserialize_with = "nullable")]
    pub os: String,
    /// `v8`, ...
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

/// A content descriptor: what a blob or manifest is and where it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// Its media type.
    #[serde(rename = "mediaType", default, deserialize_with = "nullable")]
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Its size in bytes.
    #[serde(default, deserialize_with = "nullable")]
    pub size: i64,
    /// Where a foreign layer is fetched from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    /// Annotations (an OCI layout's `org.opencontainers.image.ref.name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// The platform of an index entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

impl Descriptor {
    /// An annotation's value.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref().and_then(|a| a.get(key)).map(String::as_str)
    }

    /// The foreign layer's URLs (none for an ordinary blob).
    pub fn urls(&self) -> &[String] {
        self.urls.as_deref().unwrap_or_default()
    }
}

/// An image manifest: a config and its layers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageManifest {
    /// 2.
    #[serde(rename = "schemaVersion", default, deserialize_with = "nullable")]
    pub schema_version: i64,
    /// Its media type (optional in OCI).
    #[serde(rename = "mediaType", default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    /// The image config.
    pub config: Descriptor,
    /// The layers, bottom first.
    #[serde(default, deserialize_with = "nullable")]
    pub layers: Vec<Descriptor>,
}

/// A manifest list or image index: one manifest per platform (or per image, in
/// an OCI layout).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageIndex {
    /// 2.
    #[serde(rename = "schemaVersion", default, deserialize_with = "nullable")]
    pub schema_version: i64,
    /// Its media type.
    #[serde(rename = "mediaType", default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    /// The entries.
    #[serde(default, deserialize_with = "nullable")]
    pub manifests: Vec<Descriptor>,
}

impl ImageIndex {
    /// The entry for a platform, as dockerd chooses it (the first that matches).
    pub fn choose(&self, os: &str, arch: &str, variant: Option<&str>) -> Option<&Descriptor> {
        self.manifests.iter().find(|e| {
            e.platform
                .as_ref()
                .is_some_and(|p| p.os == os && p.architecture == arch && variant.is_none_or(|v| p.variant == v))
        })
    }
}

/// What a manifest endpoint (or a layout's blob) may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestDoc {
    /// One image.
    Image(ImageManifest),
    /// A list to choose from.
    Index(ImageIndex),
}

impl ManifestDoc {
    /// Parses a manifest by its media type, or by its shape where the type is
    /// not given (`manifests` makes an index). Schema 1 is refused by name.
    pub fn parse(bytes: &[u8]) -> Result<ManifestDoc, String> {
        #[derive(Deserialize)]
        struct Head {
            #[serde(rename = "schemaVersion", default)]
            schema_version: Option<i64>,
            #[serde(rename = "mediaType", default)]
            media_type: Option<String>,
            #[serde(default)]
            manifests: Option<serde::de::IgnoredAny>,
        }
        let head: Head = serde_json::from_slice(bytes).map_err(|e| format!("invalid manifest: {e}"))?;
        if head.schema_version == Some(1) {
            return Err("Docker schema 1 manifests are not supported".into());
        }
        let media = head.media_type.unwrap_or_default();
        if media == DOCKER_LIST || media == OCI_INDEX || head.manifests.is_some() {
            serde_json::from_slice(bytes).map(ManifestDoc::Index).map_err(|e| format!("invalid manifest list: {e}"))
        } else {
            serde_json::from_slice(bytes).map(ManifestDoc::Image).map_err(|e| format!("invalid manifest: {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_and_indexes_by_type_or_shape() {
        let m = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
            "config":{"mediaType":"c","digest":"sha256:aa","size":3},
            "layers":[{"mediaType":"l","digest":"sha256:bb","size":5,"urls":["http://x/l"]}]}"#;
        let Ok(ManifestDoc::Image(m)) = ManifestDoc::parse(m) else { panic!("a manifest") };
        assert_eq!(
            (m.config.digest.as_str(), m.layers[0].size, m.layers[0].urls()),
            ("sha256:aa", 5, &["http://x/l".to_string()][..])
        );
        let i = br#"{"schemaVersion":2,"manifests":[{"digest":"sha256:a1","platform":{"os":"linux","architecture":"arm64","variant":"v8"}},
            {"digest":"sha256:a2","platform":{"os":"linux","architecture":"amd64"}}]}"#;
        let Ok(ManifestDoc::Index(i)) = ManifestDoc::parse(i) else { panic!("an index") };
        assert_eq!(i.choose("linux", "amd64", None).map(|d| d.digest.as_str()), Some("sha256:a2"));
        assert_eq!(i.choose("linux", "arm64", Some("v7")), None);
        assert!(ManifestDoc::parse(br#"{"schemaVersion":1,"fsLayers":[]}"#).is_err_and(|e| e.contains("schema 1")));
        assert!(ManifestDoc::parse(br#"{"schemaVersion":2,"layers":[]}"#).is_err(), "a manifest needs its config");
    }
}
