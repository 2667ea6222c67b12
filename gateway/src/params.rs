//! Query parameters as dockerd reads them: repeated keys, Go-style booleans, and
//! the `filters` JSON in both of its shapes.

use std::collections::BTreeMap;

use berth_core::{Error, Result};
use berth_proto::types::v1::Filter;
use serde_json::Value;

/// The decoded query string of a request.
#[derive(Debug, Default, Clone)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Decodes a raw query string.
    pub fn parse(query: Option<&str>) -> Self {
        Params(form_urlencoded::parse(query.unwrap_or("").as_bytes()).into_owned().collect())
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub fn all(&self, key: &str) -> Vec<String> {
        self.0.iter().filter(|(k, _)| k == key).map(|(_, v)| v.clone()).collect()
    }

    /// A boolean as Go's `httputils.BoolValue`: absent, "", "0", "no", "false", "none" are false.
    pub fn bool(&self, key: &str) -> bool {
        self.get(key)
            .is_some_and(|v| !matches!(v.trim().to_ascii_lowercase().as_str(), "" | "0" | "no" | "false" | "none"))
    }

    /// The `filters` parameter.
    pub fn filters(&self) -> Result<Vec<Filter>> {
        parse_filters(self.get("filters").unwrap_or(""))
    }
}

/// Parses `{"key":["a","b"]}` or the older `{"key":{"a":true}}` into filters.
pub fn parse_filters(raw: &str) -> Result<Vec<Filter>> {
    if raw.trim().is_empty() {
        return Ok(vec![]);
    }
    let bad = |why: String| Error::invalid(format!("invalid filter: {why}"));
    let map: BTreeMap<String, Value> = serde_json::from_str(raw).map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::new();
    for (key, v) in map {
        let values = match v {
            Value::Array(items) => items
                .into_iter()
                .map(|i| i.as_str().map(str::to_string).ok_or_else(|| bad(format!("values of {key} must be strings"))))
                .collect::<Result<Vec<_>>>()?,
            Value::Object(m) => m.into_iter().filter(|(_, on)| on.as_bool().unwrap_or(false)).map(|(k, _)| k).collect(),
            _ => return Err(bad(format!("values of {key} must be a list or a map"))),
        };
        out.push(Filter { key, values });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        // Query strings and `filters` JSON come from any client.
        #[test]
        fn any_query_and_filters_are_parsed_or_refused(q in "\\PC{0,300}", f in "\\PC{0,300}") {
            let _ = Params::parse(Some(&q));
            let _ = parse_filters(&f);
        }

        #[test]
        fn filter_shaped_json_is_parsed_or_refused(f in r#"[{}\[\]":,a-z0-9 =!]{0,120}"#) {
            let _ = parse_filters(&f);
        }
    }

    #[test]
    fn both_filter_shapes() {
        let a = parse_filters(r#"{"dangling":{"true":true},"label":["a=b","c"]}"#).expect("parse");
        assert_eq!(a[0].key, "dangling");
        assert_eq!(a[0].values, vec!["true".to_string()]);
        assert_eq!(a[1].values, vec!["a=b".to_string(), "c".to_string()]);
        assert!(parse_filters("{not json").is_err());
        assert!(parse_filters(r#"{"a":1}"#).is_err());
        assert!(parse_filters("").expect("empty").is_empty());
    }

    #[test]
    fn go_booleans_and_repeats() {
        let p = Params::parse(Some("force=1&noprune=false&names=a&names=b%3Alatest&q="));
        assert!(p.bool("force"));
        assert!(!p.bool("noprune"));
        assert!(!p.bool("q"));
        assert!(!p.bool("absent"));
        assert_eq!(p.all("names"), vec!["a".to_string(), "b:latest".to_string()]);
    }
}
