//! Turning Docker's create request into a container: names, the merge of the
//! request's config with the image's, and the command line.

use berth_core::{Error, Result};
use rand::Rng;
use std::collections::BTreeMap;

use berth_models::container::{ContainerConfig, HostConfig};

/// Checks a requested name (`/web-1` or `web-1`) and returns it without the slash.
pub fn validate_name(name: &str) -> Result<String> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    let bytes = bare.as_bytes();
    let ok = bytes.len() >= 2
        && bytes[0].is_ascii_alphanumeric()
        && bytes[1..].iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(bare.to_string())
    } else {
        Err(Error::invalid(format!("Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")))
    }
}

const LEFT: [&str; 24] = [
    "admiring", "bold", "brave", "calm", "clever", "dazzling", "eager", "elegant", "festive", "gallant", "happy",
    "jolly", "keen", "kind", "lucid", "modest", "nifty", "peaceful", "quirky", "relaxed", "serene", "sharp", "vibrant",
    "zealous",
];
const RIGHT: [&str; 24] = [
    "albattani",
    "babbage",
    "bohr",
    "curie",
    "darwin",
    "einstein",
    "euler",
    "faraday",
    "gauss",
    "hopper",
    "hypatia",
    "kepler",
    "lamarr",
    "lovelace",
    "meitner",
    "newton",
    "noether",
    "pascal",
    "ritchie",
    "shannon",
    "tesla",
    "turing",
    "wozniak",
    "yonath",
];

/// A Docker-style generated name (`brave_turing`); `attempt` > 0 adds a number.
pub fn generate_name(attempt: u32) -> String {
    let mut rng = rand::rng();
    let base = format!("{}_{}", LEFT[rng.random_range(0..LEFT.len())], RIGHT[rng.random_range(0..RIGHT.len())]);
    if attempt == 0 { base } else { format!("{base}{}", rng.random_range(0..10)) }
}

/// Merges the image's config into the user's, as dockerd does: user values win,
/// lists of environment variables and maps (labels, ports, volumes) are united,
/// and the image's Entrypoint/Cmd apply unless the user gave an entrypoint.
pub fn merge_config(user: &ContainerConfig, image: &ContainerConfig) -> ContainerConfig {
    let mut out = user.clone();
    let take = |mine: &mut String, theirs: &String| {
        if mine.is_empty() {
            mine.clone_from(theirs);
        }
    };
    take(&mut out.user, &image.user);
    take(&mut out.working_dir, &image.working_dir);
    take(&mut out.stop_signal, &image.stop_signal);
    // The healthcheck field by field: what the user left empty comes from the image.
    match (&mut out.healthcheck, &image.healthcheck) {
        (None, theirs) => out.healthcheck.clone_from(theirs),
        (Some(mine), Some(theirs)) => {
            if mine.test.is_empty() {
                mine.test.clone_from(&theirs.test);
            }
            for (m, t) in [
                (&mut mine.interval, theirs.interval),
                (&mut mine.timeout, theirs.timeout),
                (&mut mine.start_period, theirs.start_period),
                (&mut mine.start_interval, theirs.start_interval),
                (&mut mine.retries, theirs.retries),
            ] {
                if *m == 0 {
                    *m = t;
                }
            }
        }
        (Some(_), None) => {}
    }
    if out.shell.is_empty() && !image.shell.is_empty() {
        out.shell = image.shell.clone();
    }
    // Env: the user's entries, then the image's whose names the user did not set.
    let key_of = |e: &String| e.split('=').next().unwrap_or("").to_string();
    let user_keys: Vec<String> = user.env().iter().map(key_of).collect();
    let mut env = user.env().to_vec();
    env.extend(image.env().iter().filter(|e| !user_keys.contains(&key_of(e))).cloned());
    if !env.is_empty() {
        out.env = Some(env);
    }
    fn unite<V: Clone>(
        mine: &Option<BTreeMap<String, V>>,
        theirs: &Option<BTreeMap<String, V>>,
    ) -> Option<BTreeMap<String, V>> {
        let mut merged = theirs.clone().unwrap_or_default();
        merged.extend(mine.iter().flatten().map(|(k, v)| (k.clone(), v.clone())));
        (!merged.is_empty() || mine.is_some()).then_some(merged)
    }
    out.labels = unite(&user.labels, &image.labels);
    out.exposed_ports = unite(&user.exposed_ports, &image.exposed_ports);
    out.volumes = unite(&user.volumes, &image.volumes);
    if user.entrypoint.is_empty() {
        if user.cmd.is_empty() {
            out.cmd = image.cmd.clone();
        }
        out.entrypoint = image.entrypoint.clone();
    }
    out
}

/// The executable and arguments of a merged config: Entrypoint followed by Cmd.
pub fn command_line(config: &ContainerConfig) -> Result<(String, Vec<String>)> {
    let mut argv = config.argv();
    if argv.is_empty() {
        return Err(Error::invalid("no command specified"));
    }
    let path = argv.remove(0);
    Ok((path, argv))
}

/// Checks a healthcheck as dockerd does at create: durations are 0 (the
/// default) or at least 1 ms, retries are not negative.
/// Every `KEY[=value]` has a key (dockerd's `ValidateEnv`).
pub fn validate_env(env: &[String]) -> Result<()> {
    match env.iter().find(|e| e.split('=').next().unwrap_or("").is_empty()) {
        Some(bad) => Err(Error::invalid(format!("invalid environment variable: {bad}"))),
        None => Ok(()),
    }
}

pub fn validate_healthcheck(h: Option<&berth_models::container::HealthConfig>) -> Result<()> {
    let Some(h) = h else { return Ok(()) };
    for (what, d) in [
        ("Interval", h.interval),
        ("Timeout", h.timeout),
        ("StartPeriod", h.start_period),
        ("StartInterval", h.start_interval),
    ] {
        if d != 0 && d < 1_000_000 {
            return Err(Error::invalid(format!("{what} in Healthcheck cannot be less than 1ms")));
        }
    }
    if h.retries < 0 {
        return Err(Error::invalid("Retries in Healthcheck cannot be negative"));
    }
    Ok(())
}

/// Checks the resource values of a HostConfig that dockerd checks at create.
pub fn validate_host_config(hc: &HostConfig) -> Result<()> {
    crate::devices::validate(hc)?;
    crate::spec::validate_sysctls(hc)?;
    if hc.blkio_weight != 0 && !(10..=1000).contains(&hc.blkio_weight) {
        return Err(Error::invalid("Range of blkio weight is from 10 to 1000"));
    }
    let memory = hc.memory;
    if memory < 0 {
        return Err(Error::invalid("invalid memory limit: it must not be negative"));
    }
    if memory > 0 && memory < 6 * 1024 * 1024 {
        return Err(Error::invalid("Minimum memory limit allowed is 6MB"));
    }
    let swap = hc.memory_swap;
    if swap > 0 && memory > 0 && swap < memory {
        return Err(Error::invalid("Minimum memoryswap limit should be larger than memory limit, see usage"));
    }
    if swap > 0 && memory == 0 {
        return Err(Error::invalid("You should always set the Memory limit when using Memoryswap limit, see usage"));
    }
    if hc.nano_cpus < 0 {
        return Err(Error::invalid("invalid CPU count: it must not be negative"));
    }
    if hc.cpu_shares < 0 {
        return Err(Error::invalid("invalid CPU shares: it must not be negative"));
    }
    if hc.cpu_quota > 0 && hc.nano_cpus > 0 {
        return Err(Error::invalid("Conflicting options: Nano CPUs and CPU Period cannot both be set"));
    }
    let ncpu = std::thread::available_parallelism().map(|n| n.get() as i64).unwrap_or(1);
    if hc.nano_cpus > ncpu * 1_000_000_000 {
        return Err(Error::invalid(format!(
            "Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available"
        )));
    }
    berth_runtime_api::logopts::validate_log_config(&hc.log_config.kind, &hc.log_config.config)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn cfg(v: Value) -> ContainerConfig {
        serde_json::from_value(v).expect("config")
    }

    fn hc(v: Value) -> HostConfig {
        serde_json::from_value(v).expect("host config")
    }

    #[test]
    fn names() {
        assert_eq!(validate_name("/web-1").ok().as_deref(), Some("web-1"));
        assert!(validate_name("a").is_err());
        assert!(validate_name("-x").is_err());
        assert!(validate_name("we b").is_err());
        let g = generate_name(0);
        assert!(validate_name(&g).is_ok() && g.contains('_'), "{g}");
    }

    #[test]
    fn image_command_applies_without_user_entrypoint() {
        let image = cfg(
            json!({"Cmd": ["sh"], "Entrypoint": null, "Env": ["PATH=/bin", "A=img"], "WorkingDir": "/srv", "Labels": {"a": "1", "b": "img"}}),
        );
        let m = merge_config(&cfg(json!({"Env": ["A=user"], "Labels": {"b": "user"}})), &image);
        let v = serde_json::to_value(&m).expect("json");
        assert_eq!(v["Cmd"], json!(["sh"]));
        assert_eq!(v["Env"], json!(["A=user", "PATH=/bin"]));
        assert_eq!(v["WorkingDir"], "/srv");
        assert_eq!(v["Labels"], json!({"a": "1", "b": "user"}));
        assert_eq!(command_line(&m).ok(), Some(("sh".to_string(), vec![])));
    }

    #[test]
    fn user_cmd_keeps_image_entrypoint() {
        let image = cfg(json!({"Entrypoint": ["/bin/app"], "Cmd": ["--help"]}));
        let m = merge_config(&cfg(json!({"Cmd": ["--version"]})), &image);
        assert_eq!(command_line(&m).ok(), Some(("/bin/app".to_string(), vec!["--version".to_string()])));
    }

    #[test]
    fn user_entrypoint_drops_image_cmd() {
        let image = cfg(json!({"Entrypoint": ["/bin/app"], "Cmd": ["--help"]}));
        let m = merge_config(&cfg(json!({"Entrypoint": "/bin/other"})), &image);
        assert_eq!(command_line(&m).ok(), Some(("/bin/other".to_string(), vec![])));
    }

    #[test]
    fn no_command_is_an_error() {
        let m = merge_config(&cfg(json!({})), &cfg(json!({})));
        assert_eq!(command_line(&m).err().map(|e| e.message().to_string()).as_deref(), Some("no command specified"));
    }

    #[test]
    fn host_config_limits() {
        assert!(validate_host_config(&hc(json!({"Memory": 1024}))).is_err());
        assert!(validate_host_config(&hc(json!({"Memory": 64 << 20, "MemorySwap": 32 << 20}))).is_err());
        assert!(validate_host_config(&hc(json!({"Memory": 64 << 20, "MemorySwap": 128 << 20}))).is_ok());
        assert!(validate_host_config(&hc(json!({"NanoCpus": 1_000_000_000_000i64}))).is_err());
        assert!(
            validate_host_config(&hc(json!({"NetworkMode": "somenet"}))).is_ok(),
            "network names are checked by the network service"
        );
        assert!(validate_host_config(&hc(json!({}))).is_ok());
    }
}
