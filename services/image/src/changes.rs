//! Dockerfile instructions applied to an image config, as `docker import --change`
//! and `docker commit --change` take them: CMD, ENTRYPOINT, ENV, WORKDIR, USER,
//! LABEL, EXPOSE, VOLUME, STOPSIGNAL, ONBUILD (the builder's own code applies them).

use berth_core::{Error, Result};
use berth_models::container::ContainerConfig;

/// The instructions `--change` takes (dockerd's list).
const ALLOWED: [&str; 10] =
    ["CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "USER", "VOLUME", "WORKDIR", "STOPSIGNAL"];

/// Applies each instruction in `changes` to the container config `config`,
/// through the builder's own instruction code (`build::apply_metadata`), so a
/// `--change` means what the same line means in a Dockerfile.
pub fn apply(config: &mut ContainerConfig, changes: &[String]) -> Result<()> {
    let mut cmd_set = false;
    for change in changes {
        let change = change.trim();
        if change.is_empty() {
            continue;
        }
        let word = change.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
        if !ALLOWED.contains(&word.as_str()) {
            return Err(Error::invalid(format!("{word} is not a valid change command")));
        }
        let parsed = crate::build::dockerfile::parse(&format!("FROM scratch\n{change}\n"))?;
        let Some(step) = parsed.steps.get(1) else {
            return Err(Error::invalid(format!("{word} requires at least one argument")));
        };
        let vars: Vec<(String, String)> = config
            .env()
            .iter()
            .map(|e| {
                e.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).unwrap_or((e.clone(), String::new()))
            })
            .collect();
        let lexer = crate::build::dockerfile::Lexer { escape: parsed.escape, vars: &vars };
        crate::build::apply_metadata(config, &step.instruction, &lexer, &mut cmd_set)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

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
