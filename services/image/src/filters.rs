//! Docker-style filters (`{"label":["a=b"],"dangling":["true"]}`) for images.

use berth_core::{Error, Result};
use std::collections::BTreeMap;

use time::OffsetDateTime;

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

/// Parses an `until` value: a Unix timestamp (with optional fraction), RFC 3339,
/// or a Go duration (`10m`, `24h`, `1h30m`) counted back from `now`.
pub fn parse_until(value: &str, now: OffsetDateTime) -> Result<OffsetDateTime> {
    let bad = || Error::invalid(format!("invalid filter 'until={value}'"));
    if let Some(t) = berth_core::id::parse_rfc3339(value) {
        return Ok(t);
    }
    if let Ok(secs) = value.parse::<f64>() {
        return OffsetDateTime::from_unix_timestamp_nanos((secs * 1e9) as i128).map_err(|_| bad());
    }
    let mut total = 0f64;
    let mut num = String::new();
    for c in value.chars() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let n: f64 = num.parse().map_err(|_| bad())?;
        num.clear();
        total += n * match c {
            'h' => 3600.0,
            'm' => 60.0,
            's' => 1.0,
            _ => return Err(bad()),
        };
    }
    if !num.is_empty() {
        return Err(bad());
    }
    Ok(now - time::Duration::seconds_f64(total))
}

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

    #[test]
    fn until_forms() {
        let now = OffsetDateTime::from_unix_timestamp(10_000).expect("t");
        assert_eq!(parse_until("1h30m", now).ok(), Some(now - time::Duration::seconds(5400)));
        assert_eq!(parse_until("500", now).ok().map(|t| t.unix_timestamp()), Some(500));
        assert_eq!(parse_until("1970-01-01T00:01:00Z", now).ok().map(|t| t.unix_timestamp()), Some(60));
        assert!(parse_until("soon", now).is_err());
    }
}
