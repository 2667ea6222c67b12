//! Legacy links (`--link NAME[:ALIAS]`) on the default bridge, as dockerd makes
//! them: the linked container's address in `/etc/hosts` under the alias, and
//! `ALIAS_PORT_*`, `ALIAS_NAME` and `ALIAS_ENV_*` variables in the environment.

use berth_models::container::ContainerConfig;

/// `NAME[:ALIAS]`, or the stored form `/NAME:/PARENT/ALIAS`: (name, alias).
pub fn parse(link: &str) -> (String, String) {
    let (name, alias) = link.split_once(':').unwrap_or((link, link));
    let name = name.trim_start_matches('/').to_string();
    let alias = alias.rsplit('/').next().unwrap_or(alias).to_string();
    (name, alias)
}

/// The stored form dockerd shows in inspect: `/NAME:/PARENT/ALIAS`.
pub fn normalize(link: &str, parent: &str) -> String {
    let (name, alias) = parse(link);
    format!("/{name}:/{}/{alias}", parent.trim_start_matches('/'))
}

/// One link of a starting container to a running one.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    /// The alias the parent knows the child by.
    pub alias: String,
    /// The parent's name (without `/`).
    pub parent: String,
    /// The child's name (without `/`), hostname and address.
    pub child_name: String,
    /// See `child_name`.
    pub child_hostname: String,
    /// See `child_name`.
    pub ip: String,
    /// The child's exposed ports (`80/tcp`) and environment.
    pub child: ContainerConfig,
}

impl Link {
    /// The variables dockerd sets for this link.
    pub fn env(&self) -> Vec<String> {
        let prefix = self.alias.to_ascii_uppercase().replace('-', "_");
        let mut ports: Vec<(u16, String)> = self
            .child
            .exposed_ports()
            .filter_map(|p| {
                let (port, proto) = p.split_once('/').unwrap_or((p.as_str(), "tcp"));
                Some((port.parse().ok()?, proto.to_string()))
            })
            .collect();
        // tcp ports first, then by number (dockerd's withTCPPriority).
        ports.sort_by_key(|(port, proto)| (proto != "tcp", *port));
        let mut out = Vec::new();
        out.push(format!("{prefix}_NAME=/{}/{}", self.parent, self.alias));
        if let Some((port, proto)) = ports.first() {
            out.push(format!("{prefix}_PORT={proto}://{}:{port}", self.ip));
        }
        for (port, proto) in &ports {
            let key = format!("{prefix}_PORT_{port}_{}", proto.to_ascii_uppercase());
            out.push(format!("{key}={proto}://{}:{port}", self.ip));
            out.push(format!("{key}_ADDR={}", self.ip));
            out.push(format!("{key}_PORT={port}"));
            out.push(format!("{key}_PROTO={proto}"));
        }
        for e in self.child.env() {
            let Some((k, v)) = e.split_once('=') else { continue };
            if matches!(k, "HOME" | "PATH") {
                continue;
            }
            out.push(format!("{prefix}_ENV_{k}={v}"));
        }
        out
    }

    /// The `/etc/hosts` line: the address, the alias, the child's hostname
    /// and (when it differs from the alias) its name.
    pub fn hosts_line(&self) -> String {
        let mut names = vec![self.alias.clone(), self.child_hostname.clone()];
        if self.child_name != self.alias {
            names.push(self.child_name.clone());
        }
        format!("{}\t{}\n", self.ip, names.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_forms() {
        assert_eq!(parse("db"), ("db".into(), "db".into()));
        assert_eq!(parse("db:database"), ("db".into(), "database".into()));
        assert_eq!(parse("/db:/web/database"), ("db".into(), "database".into()));
        assert_eq!(normalize("db:database", "/web"), "/db:/web/database");
        assert_eq!(normalize("db", "web"), "/db:/web/db");
    }

    #[test]
    fn variables_and_hosts_as_dockerd_writes_them() {
        let child: ContainerConfig = serde_json::from_value(serde_json::json!({
            "Env": ["PATH=/bin", "SECRET=x", "HOME=/root"],
            "ExposedPorts": {"5432/tcp": {}, "80/udp": {}}
        }))
        .expect("config");
        let l = Link {
            alias: "my-db".into(),
            parent: "web".into(),
            child_name: "db".into(),
            child_hostname: "0123456789ab".into(),
            ip: "172.18.0.2".into(),
            child,
        };
        let env = l.env();
        assert_eq!(env[0], "MY_DB_NAME=/web/my-db");
        assert_eq!(env[1], "MY_DB_PORT=tcp://172.18.0.2:5432", "tcp ports come first");
        for want in [
            "MY_DB_PORT_5432_TCP=tcp://172.18.0.2:5432",
            "MY_DB_PORT_5432_TCP_ADDR=172.18.0.2",
            "MY_DB_PORT_5432_TCP_PORT=5432",
            "MY_DB_PORT_5432_TCP_PROTO=tcp",
            "MY_DB_ENV_SECRET=x",
        ] {
            assert!(env.iter().any(|e| e == want), "{want} in {env:?}");
        }
        assert!(!env.iter().any(|e| e.starts_with("MY_DB_ENV_PATH") || e.starts_with("MY_DB_ENV_HOME")));
        assert_eq!(l.hosts_line(), "172.18.0.2\tmy-db 0123456789ab db\n");
    }
}
