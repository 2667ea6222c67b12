//! Turning Docker's create request into a container: names, the merge of the
//! request's config with the image's, and the command line.

use berth_core::{Error, Result};
use rand::Rng;
use serde_json::{Map, Value, json};

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

fn list(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

fn is_empty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        _ => false,
    }
}

/// Merges the image's config into the user's, as dockerd does: user values win,
/// lists of environment variables and maps (labels, ports, volumes) are united,
/// and the image's Entrypoint/Cmd apply unless the user gave an entrypoint.
pub fn merge_config(user: &Map<String, Value>, image: &Value) -> Map<String, Value> {
    let mut out = user.clone();
    let img = |k: &str| image.get(k).cloned().unwrap_or(Value::Null);
    for key in ["User", "WorkingDir", "StopSignal", "Healthcheck", "Shell"] {
        if is_empty(out.get(key)) && !is_empty(image.get(key)) {
            out.insert(key.into(), img(key));
        }
    }
    // Env: the user's entries, then the image's whose names the user did not set.
    let user_env = list(out.get("Env").unwrap_or(&Value::Null));
    let key_of = |e: &Value| e.as_str().map(|s| s.split('=').next().unwrap_or("").to_string());
    let user_keys: Vec<Option<String>> = user_env.iter().map(key_of).collect();
    let mut env = user_env.clone();
    for e in list(&img("Env")) {
        if !user_keys.contains(&key_of(&e)) {
            env.push(e);
        }
    }
    if !env.is_empty() {
        out.insert("Env".into(), Value::Array(env));
    }
    for key in ["Labels", "ExposedPorts", "Volumes"] {
        let mut merged = image.get(key).and_then(Value::as_object).cloned().unwrap_or_default();
        if let Some(mine) = out.get(key).and_then(Value::as_object) {
            for (k, v) in mine {
                merged.insert(k.clone(), v.clone());
            }
        }
        if !merged.is_empty() || out.contains_key(key) {
            out.insert(key.into(), Value::Object(merged));
        }
    }
    if is_empty(out.get("Entrypoint")) {
        if is_empty(out.get("Cmd")) {
            out.insert("Cmd".into(), img("Cmd"));
        }
        out.insert("Entrypoint".into(), img("Entrypoint"));
    }
    out
}

/// The executable and arguments of a merged config: Entrypoint followed by Cmd.
pub fn command_line(config: &Map<String, Value>) -> Result<(String, Vec<String>)> {
    let mut argv: Vec<String> = Vec::new();
    for key in ["Entrypoint", "Cmd"] {
        match config.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for i in items {
                    argv.push(
                        i.as_str().ok_or_else(|| Error::invalid(format!("{key} must be a list of strings")))?.into(),
                    );
                }
            }
            // The API accepts a plain string for both, meaning one word.
            Some(Value::String(s)) if !s.is_empty() => argv.push(s.clone()),
            Some(Value::String(_)) => {}
            Some(_) => return Err(Error::invalid(format!("{key} must be a list of strings"))),
        }
    }
    if argv.is_empty() {
        return Err(Error::invalid("no command specified"));
    }
    let path = argv.remove(0);
    Ok((path, argv))
}

/// Checks the resource values of a HostConfig that dockerd checks at create.
pub fn validate_host_config(hc: &Value) -> Result<()> {
    let num = |k: &str| hc.get(k).and_then(Value::as_i64).unwrap_or(0);
    let memory = num("Memory");
    if memory < 0 {
        return Err(Error::invalid("invalid memory limit: it must not be negative"));
    }
    if memory > 0 && memory < 6 * 1024 * 1024 {
        return Err(Error::invalid("Minimum memory limit allowed is 6MB"));
    }
    let swap = num("MemorySwap");
    if swap > 0 && memory > 0 && swap < memory {
        return Err(Error::invalid("Minimum memoryswap limit should be larger than memory limit, see usage"));
    }
    if swap > 0 && memory == 0 {
        return Err(Error::invalid("You should always set the Memory limit when using Memoryswap limit, see usage"));
    }
    if num("NanoCpus") < 0 {
        return Err(Error::invalid("invalid CPU count: it must not be negative"));
    }
    if num("CpuShares") < 0 {
        return Err(Error::invalid("invalid CPU shares: it must not be negative"));
    }
    if num("CpuQuota") > 0 && num("NanoCpus") > 0 {
        return Err(Error::invalid("Conflicting options: Nano CPUs and CPU Period cannot both be set"));
    }
    let ncpu = std::thread::available_parallelism().map(|n| n.get() as i64).unwrap_or(1);
    if num("NanoCpus") > ncpu * 1_000_000_000 {
        return Err(Error::invalid(format!(
            "Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available"
        )));
    }
    crate::lifecycle::log_limits(hc)?;
    Ok(())
}

/// The empty networking config dockerd stores when none is given.
pub fn default_networking() -> Value {
    json!({"EndpointsConfig": {}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
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
        let image = json!({"Cmd": ["sh"], "Entrypoint": null, "Env": ["PATH=/bin", "A=img"], "WorkingDir": "/srv", "Labels": {"a": "1", "b": "img"}});
        let m = merge_config(&obj(json!({"Env": ["A=user"], "Labels": {"b": "user"}})), &image);
        assert_eq!(m["Cmd"], json!(["sh"]));
        assert_eq!(m["Env"], json!(["A=user", "PATH=/bin"]));
        assert_eq!(m["WorkingDir"], "/srv");
        assert_eq!(m["Labels"], json!({"a": "1", "b": "user"}));
        assert_eq!(command_line(&m).ok(), Some(("sh".to_string(), vec![])));
    }

    #[test]
    fn user_cmd_keeps_image_entrypoint() {
        let image = json!({"Entrypoint": ["/bin/app"], "Cmd": ["--help"]});
        let m = merge_config(&obj(json!({"Cmd": ["--version"]})), &image);
        assert_eq!(command_line(&m).ok(), Some(("/bin/app".to_string(), vec!["--version".to_string()])));
    }

    #[test]
    fn user_entrypoint_drops_image_cmd() {
        let image = json!({"Entrypoint": ["/bin/app"], "Cmd": ["--help"]});
        let m = merge_config(&obj(json!({"Entrypoint": ["/bin/other"]})), &image);
        assert_eq!(command_line(&m).ok(), Some(("/bin/other".to_string(), vec![])));
    }

    #[test]
    fn no_command_is_an_error() {
        let m = merge_config(&obj(json!({})), &json!({}));
        assert_eq!(command_line(&m).err().map(|e| e.message().to_string()).as_deref(), Some("no command specified"));
    }

    #[test]
    fn host_config_limits() {
        assert!(validate_host_config(&json!({"Memory": 1024})).is_err());
        assert!(validate_host_config(&json!({"Memory": 64 << 20, "MemorySwap": 32 << 20})).is_err());
        assert!(validate_host_config(&json!({"Memory": 64 << 20, "MemorySwap": 128 << 20})).is_ok());
        assert!(validate_host_config(&json!({"NanoCpus": 1_000_000_000_000i64})).is_err());
        assert!(
            validate_host_config(&json!({"NetworkMode": "somenet"})).is_ok(),
            "network names are checked by the network service"
        );
        assert!(validate_host_config(&json!({})).is_ok());
    }
}
