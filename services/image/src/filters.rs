//! Docker-style filters (`{"label":["a=b"],"dangling":["true"]}`) for images.

use berth_core::{Error, Result};
use std::collections::BTreeMap;

use crate::Filter;

/// Filters keyed by name, checked against the keys an endpoint accepts.
#[derive(Debug, Default, Clone)]
pub struct Filters(Vec<Filter>);

impl Filters {
    /// Checks every key against `allowed`.
    pub fn new(filters: Vec<Filter>, allowed: &[&str]) -> Result<Self> {
        for f in &filters {
            if !allowed.contains(&f.key.as_str()) {
                return Err(Error::invalid(format!("invalid filter '{}'", f.key)));
            }
        }
        Ok(Self(filters))
    }

    /// The values of `key`, empty when absent.
    pub fn get(&self, key: &str) -> Vec<&str> {
        self.0.iter().filter(|f| f.key == key).flat_map(|f| f.values.iter().map(String::as_str)).collect()
    }

    /// A boolean filter (`dangling=true`); `None` when absent.
    pub fn bool(&self, key: &str) -> Result<Option<bool>> {
        let values = self.get(key);
        let mut out = None;
        for v in values {
            let b = match v.to_ascii_lowercase().as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => return Err(Error::invalid(format!("invalid filter '{key}={v}'"))),
            };
            if out.is_some_and(|o| o != b) {
                return Err(Error::invalid(format!("conflicting values for filter '{key}'")));
            }
            out = Some(b);
        }
        Ok(out)
    }
}

/// Whether `labels` satisfy every `key` or `key=value` in `wanted`.
pub fn labels_match(labels: Option<&BTreeMap<String, String>>, wanted: &[&str]) -> bool {
    let get = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    wanted.iter().all(|w| match w.split_once('=') {
        Some((k, v)) => get(k) == Some(v),
        None => get(w).is_some(),
    })
}

pub use berth_core::id::parse_until;

#[cfg(test)]
mod tests {
    use super::*;

    fn f(key: &str, values: &[&str]) -> Filter {
        Filter { key: key.into(), values: values.iter().map(|s| s.to_string()).collect() }
    }

    #[test]
    fn rejects_unknown_keys() {
        assert!(Filters::new(vec![f("colour", &["red"])], &["label"]).is_err());
        assert!(Filters::new(vec![f("label", &["a"])], &["label"]).is_ok());
    }

    #[test]
    fn booleans() {
        let fs = Filters::new(vec![f("dangling", &["true"])], &["dangling"]).expect("ok");
        assert_eq!(fs.bool("dangling").ok(), Some(Some(true)));
        let fs = Filters::new(vec![f("dangling", &["maybe"])], &["dangling"]).expect("ok");
        assert!(fs.bool("dangling").is_err());
    }

    #[test]
    fn labels() {
        let l: BTreeMap<String, String> = [("a", "1"), ("b", "2")].map(|(k, v)| (k.into(), v.into())).into();
        assert!(labels_match(Some(&l), &["a", "b=2"]));
        assert!(!labels_match(Some(&l), &["a=2"]));
        assert!(!labels_match(Some(&l), &["c"]));
        assert!(labels_match(None, &[]));
    }
}
