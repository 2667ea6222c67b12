//! This process's Prometheus metrics: counters, gauges and histograms kept in
//! memory by name and label set, rendered in the text exposition format
//! (version 0.0.4) for `/metrics` (`--metrics-addr`). No client library: the
//! few kinds Berth needs are a map and a lock, and the format is plain text.
//!
//! Names follow Prometheus' conventions (`_total` counters, `_seconds`
//! histograms); where dockerd has an equivalent, its `engine_daemon_*` name is
//! used so dashboards made for dockerd keep working.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};

/// Histogram buckets, in seconds: a millisecond to ten seconds.
const BUCKETS: [f64; 11] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

type Labels = Vec<(String, String)>;

#[derive(Debug, Default, Clone)]
struct Histogram {
    /// Observations at or under each bucket's bound.
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Debug, Default)]
struct Family {
    kind: &'static str,
    help: &'static str,
    values: BTreeMap<Labels, f64>,
    histograms: BTreeMap<Labels, Histogram>,
}

/// The metrics of a process.
#[derive(Debug, Default)]
pub struct Registry {
    families: Mutex<BTreeMap<&'static str, Family>>,
}

fn owned(labels: &[(&str, &str)]) -> Labels {
    labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

impl Registry {
    fn with(&self, name: &'static str, kind: &'static str, help: &'static str, f: impl FnOnce(&mut Family)) {
        if let Ok(mut families) = self.families.lock() {
            let fam = families.entry(name).or_insert_with(|| Family { kind, help, ..Default::default() });
            f(fam);
        }
    }

    /// Adds `by` to a counter.
    pub fn inc(&self, name: &'static str, help: &'static str, labels: &[(&str, &str)], by: f64) {
        self.with(name, "counter", help, |f| *f.values.entry(owned(labels)).or_default() += by);
    }

    /// Sets a gauge.
    pub fn set(&self, name: &'static str, help: &'static str, labels: &[(&str, &str)], value: f64) {
        self.with(name, "gauge", help, |f| {
            f.values.insert(owned(labels), value);
        });
    }

    /// Records one observation (seconds) in a histogram.
    pub fn observe(&self, name: &'static str, help: &'static str, labels: &[(&str, &str)], value: f64) {
        self.with(name, "histogram", help, |f| {
            let h = f.histograms.entry(owned(labels)).or_default();
            for (i, bound) in BUCKETS.iter().enumerate() {
                if value <= *bound {
                    h.counts[i] += 1;
                }
            }
            h.count += 1;
            h.sum += value;
        });
    }

    /// Everything, in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let Ok(families) = self.families.lock() else { return out };
        for (name, f) in families.iter() {
            let _ = writeln!(out, "# HELP {name} {}\n# TYPE {name} {}", f.help, f.kind);
            for (labels, v) in &f.values {
                let _ = writeln!(out, "{name}{} {}", label_text(labels, None), number(*v));
            }
            for (labels, h) in &f.histograms {
                for (i, bound) in BUCKETS.iter().enumerate() {
                    let le = number(*bound);
                    let _ = writeln!(out, "{name}_bucket{} {}", label_text(labels, Some(&le)), h.counts[i]);
                }
                let _ = writeln!(out, "{name}_bucket{} {}", label_text(labels, Some("+Inf")), h.count);
                let _ = writeln!(out, "{name}_sum{} {}", label_text(labels, None), number(h.sum));
                let _ = writeln!(out, "{name}_count{} {}", label_text(labels, None), h.count);
            }
        }
        out
    }
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{}", v as i64) } else { format!("{v}") }
}

/// `{a="x",b="y"}` (with `le` last for a bucket), values escaped as the format says.
fn label_text(labels: &Labels, le: Option<&str>) -> String {
    let escape = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    let mut parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() { String::new() } else { format!("{{{}}}", parts.join(",")) }
}

/// The process's registry.
pub fn global() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_format_as_prometheus_reads_it() {
        let r = Registry::default();
        r.inc("x_requests_total", "Requests.", &[("route", "/a"), ("status", "200")], 1.0);
        r.inc("x_requests_total", "Requests.", &[("route", "/a"), ("status", "200")], 2.0);
        r.set("x_up", "Up.", &[], 1.0);
        r.observe("x_seconds", "Time.", &[("route", "/\"q\"")], 0.02);
        r.observe("x_seconds", "Time.", &[("route", "/\"q\"")], 20.0);
        let text = r.render();
        assert!(text.contains("# TYPE x_requests_total counter\n"), "{text}");
        assert!(text.contains("x_requests_total{route=\"/a\",status=\"200\"} 3\n"), "{text}");
        assert!(text.contains("x_up 1\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{route=\"/\\\"q\\\"\",le=\"0.025\"} 1\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{route=\"/\\\"q\\\"\",le=\"+Inf\"} 2\n"), "{text}");
        assert!(text.contains("x_seconds_count{route=\"/\\\"q\\\"\"} 2\n"), "{text}");
        assert!(text.contains("x_seconds_sum{route=\"/\\\"q\\\"\"} 20.02\n"), "{text}");
    }
}
