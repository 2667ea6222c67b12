//! Dockerfile instructions applied to an image config, as `docker import --change`
//! and `docker commit --change` take them: CMD, ENTRYPOINT, ENV, WORKDIR, USER,
//! LABEL, EXPOSE, VOLUME, STOPSIGNAL.

use berth_core::{Error, Result};
use berth_models::StrSlice;
use berth_models::container::ContainerConfig;
use serde_json::json;

/// Applies each instruction in `changes` to the container config `config`.
pub fn apply(config: &mut ContainerConfig, changes: &[String]) -> Result<()> {
    for change in changes {
        let change = change.trim();
        if change.is_empty() {
            continue;
        }
        let (word, rest) = change.split_once(char::is_whitespace).unwrap_or((change, ""));
        let rest = rest.trim();
        match word.to_ascii_uppercase().as_str() {
            "CMD" => config.cmd = StrSlice(Some(command(rest, true)?)),
            "ENTRYPOINT" => config.entrypoint = StrSlice(Some(command(rest, true)?)),
            "ENV" => {
                let list = config.env.get_or_insert_with(Vec::new);
                for (k, v) in pairs(rest, "ENV")? {
                    list.retain(|e| e.split_once('=').map(|(ek, _)| ek) != Some(k.as_str()));
                    list.push(format!("{k}={v}"));
                }
            }
            "LABEL" => {
                let map = config.labels.get_or_insert_with(Default::default);
                map.extend(pairs(rest, "LABEL")?);
            }
            "WORKDIR" => {
                require(rest, "WORKDIR")?;
                config.working_dir = unquote(rest);
            }
            "USER" => {
                require(rest, "USER")?;
                config.user = unquote(rest);
            }
            "STOPSIGNAL" => {
                require(rest, "STOPSIGNAL")?;
                config.stop_signal = rest.to_string();
            }
            "EXPOSE" => {
                require(rest, "EXPOSE")?;
                let map = config.exposed_ports.get_or_insert_with(Default::default);
                for p in rest.split_whitespace() {
                    let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
                    if port.parse::<u16>().is_err() || !matches!(proto, "tcp" | "udp" | "sctp") {
                        return Err(Error::invalid(format!("invalid EXPOSE port {p:?}")));
                    }
                    map.insert(format!("{port}/{proto}"), json!({}));
                }
            }
            "VOLUME" => {
                require(rest, "VOLUME")?;
                let map = config.volumes.get_or_insert_with(Default::default);
                for v in command(rest, false)? {
                    map.insert(v, json!({}));
                }
            }
            other => {
                return Err(Error::invalid(format!("{other} is not a valid change command")));
            }
        }
    }
    Ok(())
}

fn require(rest: &str, what: &str) -> Result<()> {
    if rest.is_empty() { Err(Error::invalid(format!("{what} requires at least one argument"))) } else { Ok(()) }
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    if s.len() >= 2 && ((s.starts_with('"') && s.ends_with('"')) || (s.starts_with('\'') && s.ends_with('\''))) {
        s[1..s.len() - 1].to_string()
    } else {
        s.to_string()
    }
}

/// The JSON (exec) form `["a","b"]`, or the shell form wrapped in `/bin/sh -c`
/// (when `shell`), or split on whitespace.
fn command(rest: &str, shell: bool) -> Result<Vec<String>> {
    if rest.starts_with('[')
        && let Ok(list) = serde_json::from_str::<Vec<String>>(rest)
    {
        return Ok(list);
    }
    if rest.is_empty() {
        return Ok(vec![]);
    }
    Ok(if shell {
        vec!["/bin/sh".into(), "-c".into(), rest.to_string()]
    } else {
        rest.split_whitespace().map(str::to_string).collect()
    })
}

/// `k=v k2="v 2"` or the legacy `k v` form.
fn pairs(rest: &str, what: &str) -> Result<Vec<(String, String)>> {
    require(rest, what)?;
    let words = split_words(rest);
    if !words[0].contains('=') {
        let (k, v) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        return Ok(vec![(k.to_string(), unquote(v))]);
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), unquote(v))),
            _ => Err(Error::invalid(format!("{what} names must be followed by '=': {w:?}"))),
        })
        .collect()
}

/// Splits on whitespace outside double or single quotes.
fn split_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => {
                quote = None;
                cur.push(c);
            }
            (None, '"' | '\'') => {
                quote = Some(c);
                cur.push(c);
            }
            (None, c) if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            (_, c) => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn run(changes: &[&str]) -> Result<Value> {
        let mut c = ContainerConfig::default();
        apply(&mut c, &changes.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
        Ok(serde_json::to_value(c).expect("json"))
    }

    #[test]
    fn applies_the_usual_changes() {
        let v = run(&[
            r#"CMD ["/bin/sh", "-c", "echo hi"]"#,
            "ENTRYPOINT /bin/app --flag",
            "ENV A=1 B=\"two words\"",
            "ENV A=3",
            "WORKDIR /srv",
            "USER nobody",
            "LABEL team=core",
            "EXPOSE 80 53/udp",
        ])
        .expect("apply");
        assert_eq!(v["Cmd"], json!(["/bin/sh", "-c", "echo hi"]));
        assert_eq!(v["Entrypoint"], json!(["/bin/sh", "-c", "/bin/app --flag"]));
        assert_eq!(v["Env"], json!(["B=two words", "A=3"]));
        assert_eq!(v["WorkingDir"], json!("/srv"));
        assert_eq!(v["User"], json!("nobody"));
        assert_eq!(v["Labels"], json!({"team": "core"}));
        assert_eq!(v["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
    }

    #[test]
    fn legacy_env_form() {
        let v = run(&["ENV PATH /usr/bin:/bin"]).expect("apply");
        assert_eq!(v["Env"], json!(["PATH=/usr/bin:/bin"]));
    }

    #[test]
    fn rejects_unknown_and_empty() {
        assert!(run(&["RUN make"]).is_err());
        assert!(run(&["WORKDIR"]).is_err());
        assert!(run(&["EXPOSE http"]).is_err());
    }
}
