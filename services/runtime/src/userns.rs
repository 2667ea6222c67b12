//! `--userns-remap`: containers' users are a range of unprivileged host IDs,
//! read from `/etc/subuid` and `/etc/subgid` as dockerd reads them. With
//! `default`, the `dockremap` user and its ranges are made when missing, as
//! dockerd makes them. The shim does the rest (`berth-shim`'s `userns`
//! module): a user namespace per container with these maps, idmapped layers
//! and volumes.

use std::path::Path;

use berth_core::{Error, Result};
use berth_models::container::HostConfig;

/// The user dockerd remaps to with `--userns-remap default`.
pub const DEFAULT_USER: &str = "dockremap";

/// One range: container IDs from `container`, host IDs from `host`, `size` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    /// The first ID in the container.
    pub container: u32,
    /// The host ID it is.
    pub host: u32,
    /// How many.
    pub size: u32,
}

/// The daemon's remapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remap {
    /// The user (and group) named in the setting, as names.
    pub user: String,
    /// See `user`.
    pub group: String,
    /// The user ID ranges, the container's IDs counted on from 0 across them.
    pub uids: Vec<IdRange>,
    /// Same for groups.
    pub gids: Vec<IdRange>,
}

impl Remap {
    /// Resolves `default`, `user`, `user:group` (names or numbers) against the
    /// host's account files.
    pub fn resolve(setting: &str) -> Result<Remap> {
        Self::resolve_in(setting, Path::new("/etc"))
    }

    fn resolve_in(setting: &str, etc: &Path) -> Result<Remap> {
        let read = |name: &str| std::fs::read_to_string(etc.join(name)).unwrap_or_default();
        let (user, group) = match setting.split_once(':') {
            Some((u, g)) => (u.to_string(), g.to_string()),
            None => (setting.to_string(), setting.to_string()),
        };
        if user.is_empty() || group.is_empty() {
            return Err(Error::invalid(format!(
                "invalid userns-remap setting {setting:?}: want default, USER or USER:GROUP"
            )));
        }
        let (user, group) = if user == "default" {
            ensure_default_user(etc)?;
            (DEFAULT_USER.to_string(), DEFAULT_USER.to_string())
        } else {
            (user, group)
        };
        let (passwd, groups) = (read("passwd"), read("group"));
        let uid =
            account(&passwd, &user).ok_or_else(|| Error::invalid(format!("userns-remap: no such user: {user}")))?;
        let gid =
            account(&groups, &group).ok_or_else(|| Error::invalid(format!("userns-remap: no such group: {group}")))?;
        let uids = ranges(&read("subuid"), &uid.0, uid.1);
        let gids = ranges(&read("subgid"), &gid.0, gid.1);
        if uids.is_empty() {
            return Err(Error::invalid(format!("no subuid ranges found for user {:?}", uid.0)));
        }
        if gids.is_empty() {
            return Err(Error::invalid(format!("no subgid ranges found for group {:?}", gid.0)));
        }
        Ok(Remap { user: uid.0, group: gid.0, uids, gids })
    }

    /// The host user and group the container's root is.
    pub fn root(&self) -> (u32, u32) {
        (self.uids[0].host, self.gids[0].host)
    }
}

/// `(name, id)` of an account in a passwd or group file, found by name or number.
fn account(file: &str, wanted: &str) -> Option<(String, u32)> {
    file.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let id: u32 = f.nth(1)?.parse().ok()?;
        (name == wanted || wanted.parse() == Ok(id)).then(|| (name.to_string(), id))
    })
}

/// The ranges `/etc/subuid` (or subgid) gives the account, by name or number,
/// in file order, with the container's IDs counted on from 0.
fn ranges(file: &str, name: &str, id: u32) -> Vec<IdRange> {
    let mut next = 0u32;
    file.lines()
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            let (who, start, count) = (f.next()?, f.next()?.parse::<u32>().ok()?, f.next()?.parse::<u32>().ok()?);
            (who == name || who.parse() == Ok(id)).then_some((start, count))
        })
        .filter(|(_, count)| *count > 0)
        .map_while(|(host, size)| {
            let range = IdRange { container: next, host, size };
            next = next.checked_add(size)?;
            Some(range)
        })
        .collect()
}

/// Makes the `dockremap` user and its ranges when missing, as dockerd: a
/// system user with no shell, and 65536 IDs above every range already given.
fn ensure_default_user(etc: &Path) -> Result<()> {
    let passwd = std::fs::read_to_string(etc.join("passwd")).unwrap_or_default();
    if account(&passwd, DEFAULT_USER).is_none() {
        let out = std::process::Command::new("useradd")
            .args(["--system", "--no-create-home", "--user-group", "--shell", "/bin/false", DEFAULT_USER])
            .output()
            .map_err(|e| Error::internal(format!("userns-remap default: run useradd: {e}")))?;
        if !out.status.success() {
            return Err(Error::internal(format!(
                "userns-remap default: useradd {DEFAULT_USER}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    for file in ["subuid", "subgid"] {
        let path = etc.join(file);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.lines().any(|l| l.split(':').next() == Some(DEFAULT_USER)) {
            continue;
        }
        let end = text
            .lines()
            .filter_map(|l| {
                let mut f = l.split(':').skip(1);
                Some(f.next()?.parse::<u64>().ok()? + f.next()?.parse::<u64>().ok()?)
            })
            .max()
            .unwrap_or(0);
        let line = format!("{DEFAULT_USER}:{}:65536\n", end.max(100_000));
        let mut body = text;
        if !body.is_empty() && !body.ends_with('\n') {
            body.push('\n');
        }
        body.push_str(&line);
        std::fs::write(&path, body).map_err(|e| Error::internal(format!("write {}: {e}", path.display())))?;
    }
    Ok(())
}

/// Whether a container runs in a user namespace: the daemon remaps and the
/// container did not ask for `--userns=host`.
pub fn applies(remap: Option<&Remap>, hc: &HostConfig) -> bool {
    remap.is_some() && hc.userns_mode != "host"
}

/// dockerd's checks of a create against the remapping.
pub fn validate(remap: Option<&Remap>, hc: &HostConfig) -> Result<()> {
    if !matches!(hc.userns_mode.as_str(), "" | "host") {
        return Err(Error::invalid(format!("invalid USER mode: {}", hc.userns_mode)));
    }
    if !applies(remap, hc) {
        return Ok(());
    }
    if hc.privileged {
        return Err(Error::invalid(
            "privileged mode is incompatible with user namespaces.  You must run the container in the host namespace when running privileged mode",
        ));
    }
    if hc.host_network() {
        return Err(Error::invalid("cannot share the host's network namespace when user namespaces are enabled"));
    }
    if hc.pid_mode == "host" {
        return Err(Error::invalid("cannot share the host PID namespace when user namespaces are enabled"));
    }
    if hc.network_mode.starts_with("container:")
        || hc.ipc_mode.starts_with("container:")
        || hc.pid_mode.starts_with("container:")
        || hc.ipc_mode == "host"
        || hc.uts_mode == "host"
    {
        // Another container's namespaces belong to its own user namespace.
        return Err(Error::invalid(
            "sharing another container's or the host's namespaces is not supported with user namespaces yet: use --userns=host",
        ));
    }
    if !matches!(hc.runtime.as_str(), "" | "berth") {
        return Err(Error::invalid(format!(
            "runtime {} cannot run containers in user namespaces here: use the default runtime or --userns=host",
            hc.runtime
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_by_name_or_number_and_counted_on() {
        let file = "alice:100000:65536\n1001:300000:10\nbob:200000:65536\nalice:500000:1000\nbad line\nalice:9:x\n";
        assert_eq!(
            ranges(file, "alice", 1000),
            [
                IdRange { container: 0, host: 100000, size: 65536 },
                IdRange { container: 65536, host: 500000, size: 1000 }
            ]
        );
        assert_eq!(ranges(file, "carol", 1001), [IdRange { container: 0, host: 300000, size: 10 }]);
        assert!(ranges(file, "dave", 7).is_empty());
    }

    #[test]
    fn settings_resolve_against_the_account_files() {
        let etc = std::env::temp_dir().join(format!("berth-userns-{}", std::process::id()));
        std::fs::create_dir_all(&etc).expect("mkdir");
        std::fs::write(etc.join("passwd"), "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/:/bin/sh\n").expect("w");
        std::fs::write(etc.join("group"), "root:x:0:\nalice:x:1000:\nstaff:x:50:\n").expect("w");
        std::fs::write(etc.join("subuid"), "alice:100000:65536\n").expect("w");
        std::fs::write(etc.join("subgid"), "alice:100000:65536\nstaff:700000:65536\n").expect("w");
        let r = Remap::resolve_in("alice", &etc).expect("alice");
        assert_eq!((r.user.as_str(), r.group.as_str(), r.root()), ("alice", "alice", (100000, 100000)));
        let r = Remap::resolve_in("1000:staff", &etc).expect("by number");
        assert_eq!((r.user.as_str(), r.group.as_str(), r.root()), ("alice", "staff", (100000, 700000)));
        assert!(Remap::resolve_in("root", &etc).is_err_and(|e| e.to_string().contains("no subuid ranges")));
        assert!(Remap::resolve_in("nobody", &etc).is_err_and(|e| e.to_string().contains("no such user")));
        assert!(Remap::resolve_in("alice:", &etc).is_err());
        std::fs::remove_dir_all(&etc).expect("cleanup");
    }

    #[test]
    fn dockerds_conflicts_with_user_namespaces() {
        let remap = Remap {
            user: "a".into(),
            group: "a".into(),
            uids: vec![IdRange { container: 0, host: 100000, size: 65536 }],
            gids: vec![IdRange { container: 0, host: 100000, size: 65536 }],
        };
        let hc = |v: serde_json::Value| serde_json::from_value::<HostConfig>(v).expect("host config");
        let privileged = hc(serde_json::json!({"Privileged": true}));
        assert!(validate(Some(&remap), &privileged).is_err_and(|e| e.to_string().contains("privileged mode")));
        assert!(validate(Some(&remap), &hc(serde_json::json!({"Privileged": true, "UsernsMode": "host"}))).is_ok());
        assert!(validate(None, &privileged).is_ok());
        assert!(validate(Some(&remap), &hc(serde_json::json!({"NetworkMode": "host"}))).is_err());
        assert!(validate(Some(&remap), &hc(serde_json::json!({"PidMode": "host"}))).is_err());
        assert!(validate(Some(&remap), &hc(serde_json::json!({"Runtime": "runc"}))).is_err());
        assert!(validate(None, &hc(serde_json::json!({"UsernsMode": "bogus"}))).is_err());
        assert!(applies(Some(&remap), &hc(serde_json::json!({}))));
    }
}
