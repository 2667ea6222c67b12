//! Log drivers and their options: `json-file` (the default), `local` (kept in
//! the same file format, with dockerd's `local` defaults) and `none`; their
//! names, defaults and checks. Both the daemon's configuration (`log-opts`) and
//! each container's `--log-opt` go through these, so a bad option is refused
//! the same way wherever it is given.

use berth_core::{Error, Result};

/// Default bound of a container's log: like json-file with `max-size=10m`,
/// `max-file=3`, so a chatty container cannot fill the disk.
pub const DEFAULT_LOG_MAX_SIZE: u64 = 10 * 1024 * 1024;
/// See [`DEFAULT_LOG_MAX_SIZE`].
pub const DEFAULT_LOG_MAX_FILE: u32 = 3;

/// Parses `1k`, `10m`, `1g` (or plain bytes) as json-file's `max-size` does.
pub fn parse_size(s: &str) -> Result<u64> {
    let s = s.trim().to_ascii_lowercase();
    let (num, mult) = match s.chars().last() {
        Some('k') => (&s[..s.len() - 1], 1024),
        Some('m') => (&s[..s.len() - 1], 1024 * 1024),
        Some('g') => (&s[..s.len() - 1], 1024 * 1024 * 1024),
        _ => (s.as_str(), 1),
    };
    num.parse::<u64>().map(|n| n * mult).map_err(|_| Error::invalid(format!("invalid max-size {s:?}")))
}

/// The log bounds that log options (`max-size`, `max-file`) give, or the defaults.
pub fn log_limits_of(opts: &std::collections::BTreeMap<String, String>) -> Result<(u64, u32)> {
    let size = match opts.get("max-size") {
        Some(s) => parse_size(s)?,
        None => DEFAULT_LOG_MAX_SIZE,
    };
    let files = match opts.get("max-file") {
        Some(f) => f
            .parse::<u32>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| Error::invalid(format!("invalid max-file {f:?}")))?,
        None => DEFAULT_LOG_MAX_FILE,
    };
    Ok((size, files))
}

/// The drivers dockerd ships that Berth does not implement: refused with a
/// message that says so, rather than dockerd's "no log driver named".
const OTHER_DOCKERD_DRIVERS: [&str; 9] =
    ["syslog", "journald", "gelf", "fluentd", "awslogs", "splunk", "etwlogs", "gcplogs", "logentries"];

/// Options of dockerd's `local` driver.
const LOCAL_OPTS: [&str; 3] = ["max-size", "max-file", "compress"];

/// Checks a container's log driver and options as dockerd does at create.
pub fn validate_log_config(kind: &str, opts: &std::collections::BTreeMap<String, String>) -> Result<()> {
    let allowed: &[&str] = match kind {
        "" | "json-file" => &JSON_FILE_OPTS,
        "local" => &LOCAL_OPTS,
        "none" => &[],
        k if OTHER_DOCKERD_DRIVERS.contains(&k) => {
            return Err(Error::invalid(format!(
                "logger: log driver '{k}' is not supported by Berth (json-file, local and none are)"
            )));
        }
        k => return Err(Error::invalid(format!("logger: no log driver named '{k}' is registered"))),
    };
    let name = if kind.is_empty() { "json-file" } else { kind };
    if let Some(k) = opts.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(Error::invalid(format!("unknown log opt '{k}' for {name} log driver")));
    }
    log_limits_for(kind, opts).map(|_| ())
}

/// The log bounds of a driver and its options: `local` keeps 5 files of 20 MiB
/// by default, as dockerd's; json-file [`log_limits_of`].
pub fn log_limits_for(kind: &str, opts: &std::collections::BTreeMap<String, String>) -> Result<(u64, u32)> {
    if kind == "local" {
        let mut with_defaults = opts.clone();
        with_defaults.entry("max-size".into()).or_insert_with(|| "20m".into());
        with_defaults.entry("max-file".into()).or_insert_with(|| "5".into());
        return log_limits_of(&with_defaults);
    }
    log_limits_of(opts)
}

/// The options of json-file. dockerd accepts the same names.
const JSON_FILE_OPTS: [&str; 8] =
    ["max-size", "max-file", "compress", "labels", "labels-regex", "env", "env-regex", "tag"];

/// Checks log options (a container's `--log-opt` or the daemon's `log-opts`).
pub fn validate_log_opts<'a>(opts: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<()> {
    let mut config = std::collections::BTreeMap::new();
    for (k, v) in opts {
        if !JSON_FILE_OPTS.contains(&k) {
            return Err(Error::invalid(format!("unknown log opt '{k}' for json-file log driver")));
        }
        config.insert(k.to_string(), v.to_string());
    }
    log_limits_of(&config).map(|_| ())
}
