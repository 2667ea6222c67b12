//! Docker Engine API and image documents as serde types, parsed once where they
//! enter Berth (container create, network connect, image load and pull) and
//! passed typed from there on.
//!
//! Written for Berth rather than taken from `bollard-stubs` (generated from
//! Docker's swagger), because Berth needs what a generated client model does not
//! give:
//! - **Go's decoding rules.** dockerd decodes with Go's `encoding/json`: `null`
//!   is the zero value of any field, `Cmd`/`Entrypoint` may be a string or a
//!   list (`strslice`), and unknown fields are ignored. Every field here takes
//!   `null` ([`nullable`]), and the string-or-list fields use [`StrSlice`].
//! - **What clients sent comes back.** Fields Berth does not act on are kept in
//!   a `#[serde(flatten)] extra` map of each document, so `docker inspect` returns
//!   what a newer client sent, as dockerd does.
//! - **dockerd's output shape.** Fields serialize with dockerd's names and its
//!   `omitempty` choices, and nil-or-empty stays as it was given (`Option`).
//!
//! Modules: [`container`] (create body, `Config`, `HostConfig`, mounts, state,
//! health), [`network`] (`NetworkingConfig`, `EndpointSettings`,
//! `NetworkSettings`), [`image`] (the image config document).

#![forbid(unsafe_code)]

pub mod container;
pub mod distribution;
pub mod gojson;
pub mod image;
pub mod network;
pub mod stats;
pub mod stream;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// Fields a document does not model, kept as sent.
pub type Extra = Map<String, Value>;

/// Deserializes `null` as the type's default, as Go's decoder leaves a field
/// at its zero value on `null`.
pub fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Docker's `strslice`: a list of strings that may also be sent as one string
/// (meaning a list of that one string). `None` is `null` (not given).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StrSlice(pub Option<Vec<String>>);

impl StrSlice {
    /// The strings (none when not given).
    pub fn as_slice(&self) -> &[String] {
        self.0.as_deref().unwrap_or_default()
    }

    /// Whether nothing (or an empty list) was given.
    pub fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }

    /// A given list.
    pub fn of<S: Into<String>>(items: impl IntoIterator<Item = S>) -> Self {
        StrSlice(Some(items.into_iter().map(Into::into).collect()))
    }
}

impl Serialize for StrSlice {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for StrSlice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            One(String),
            Many(Vec<String>),
        }
        Ok(StrSlice(
            match Option::<Form>::deserialize(d)
                .map_err(|_| serde::de::Error::custom("must be a string or a list of strings"))?
            {
                None => None,
                // An empty string is an empty command, as strslice decodes it.
                Some(Form::One(s)) if s.is_empty() => Some(Vec::new()),
                Some(Form::One(s)) => Some(vec![s]),
                Some(Form::Many(v)) => Some(v),
            },
        ))
    }
}

/// The machine's architecture in Go's (and so Docker's and OCI's) words:
/// `amd64`, `arm64`, ...
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// Parses a Docker document, with the error a client should see (400 by the
/// caller's mapping): `invalid <what>: <serde's message>`.
pub fn parse<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| {
        // Bad syntax in Go's words, as dockerd answers it (clients match on them).
        if (e.is_syntax() || e.is_eof())
            && let Some(go) = gojson::syntax_error(bytes)
        {
            return go;
        }
        format!("invalid {what}: {e}")
    })
}

/// [`parse`] of a document that may be absent (empty bytes): its default.
pub fn parse_or_default<T: serde::de::DeserializeOwned + Default>(what: &str, bytes: &[u8]) -> Result<T, String> {
    if bytes.is_empty() { Ok(T::default()) } else { parse(what, bytes) }
}

/// A document as JSON bytes (infallible for these types: string keys only).
pub fn to_vec<T: Serialize>(doc: &T) -> Vec<u8> {
    serde_json::to_vec(doc).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strslice_takes_a_string_a_list_or_null() {
        let p = |s: &str| serde_json::from_str::<StrSlice>(s).map_err(|e| e.to_string());
        assert_eq!(p(r#""sh""#), Ok(StrSlice::of(["sh"])));
        assert_eq!(p(r#"["a","b"]"#), Ok(StrSlice::of(["a", "b"])));
        assert_eq!(p("null"), Ok(StrSlice(None)));
        assert_eq!(p(r#""""#), Ok(StrSlice(Some(vec![]))));
        assert!(p("3").is_err_and(|e| e.contains("string or a list")));
        assert_eq!(serde_json::to_string(&StrSlice(None)).ok().as_deref(), Some("null"));
    }
}
