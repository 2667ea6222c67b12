//! Devices: the nodes a container is given (`--device`, every host device for
//! `--privileged`) and the device cgroup rules that say which it may use.
//!
//! Rules are kept as the OCI spec writes them (`linux.resources.devices`) and
//! applied by [`crate::cgroups`]: written to `devices.allow`/`devices.deny` on
//! cgroup v1, compiled into a BPF program ([`crate::bpf`]) on cgroup v2. The
//! nodes go into the spec's `linux.devices`; the shim makes them in the
//! container's `/dev`.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use berth_core::{Error, Result};
use berth_models::container::HostConfig;
use oci_spec::runtime::{
    LinuxDevice, LinuxDeviceBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType,
};

fn oci(e: oci_spec::OciSpecError) -> Error {
    Error::internal(format!("building the OCI spec: {e}"))
}

fn rule(
    allow: bool,
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> Result<LinuxDeviceCgroup> {
    let mut b = LinuxDeviceCgroupBuilder::default().allow(allow).typ(typ).access(access);
    if let Some(m) = major {
        b = b.major(m);
    }
    if let Some(m) = minor {
        b = b.minor(m);
    }
    b.build().map_err(oci)
}

/// The rules every container starts from, as dockerd and runc set them:
/// nothing, but creating any device node (`m`: MKNOD is a default capability,
/// and a node is harmless when it cannot be opened) and using the devices
/// every container has: null, zero, full, random, urandom, tty, console, ptmx,
/// its pseudo-terminals and tun. A privileged container may use every device.
fn default_rules(privileged: bool) -> Result<Vec<LinuxDeviceCgroup>> {
    use LinuxDeviceType::{A, B, C};
    if privileged {
        return Ok(vec![rule(true, A, None, None, "rwm")?]);
    }
    let mut rules =
        vec![rule(false, A, None, None, "rwm")?, rule(true, C, None, None, "m")?, rule(true, B, None, None, "m")?];
    // null, random, full, tty, zero, urandom, console, ptmx, tun.
    for (major, minor) in [(1, 3), (1, 8), (1, 7), (5, 0), (1, 5), (1, 9), (5, 1), (5, 2), (10, 200)] {
        rules.push(rule(true, C, Some(major), Some(minor), "rwm")?);
    }
    // Pseudo-terminals (/dev/pts/*).
    rules.push(rule(true, C, Some(136), None, "rwm")?);
    Ok(rules)
}

/// Parses a `--device-cgroup-rule` as dockerd accepts it: `TYPE MAJOR:MINOR
/// ACCESS`, with `a`, `b` or `c`, numbers or `*`, and one to three of `rwm`
/// (`c 42:* rmw`).
pub fn parse_cgroup_rule(text: &str) -> Result<LinuxDeviceCgroup> {
    let bad = || Error::invalid(format!("invalid device cgroup format '{text}'"));
    let mut parts = text.split(' ');
    let (Some(typ), Some(numbers), Some(access), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let typ = match typ {
        "a" => LinuxDeviceType::A,
        "b" => LinuxDeviceType::B,
        "c" => LinuxDeviceType::C,
        _ => return Err(bad()),
    };
    let number = |n: &str| -> Result<Option<i64>> {
        match n {
            "*" => Ok(None),
            n if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => n.parse().map(Some).map_err(|_| bad()),
            _ => Err(bad()),
        }
    };
    let (major, minor) = numbers.split_once(':').ok_or_else(bad)?;
    if access.is_empty() || access.len() > 3 || !access.bytes().all(|b| matches!(b, b'r' | b'w' | b'm')) {
        return Err(bad());
    }
    rule(true, typ, number(major)?, number(minor)?, access)
}

/// Checks what create can check of a container's devices: the syntax of its
/// cgroup rules and device permissions, and that device paths are absolute.
/// (Whether a host device exists is known only at the start, as on dockerd.)
pub fn validate(hc: &HostConfig) -> Result<()> {
    for r in hc.device_cgroup_rules.iter().flatten() {
        parse_cgroup_rule(r)?;
    }
    for d in hc.devices.iter().flatten() {
        permissions(&d.cgroup_permissions)?;
        if !d.path_on_host.starts_with('/') {
            return Err(Error::invalid(format!("{} is not an absolute path", d.path_on_host)));
        }
        if !d.path_in_container.is_empty() && !d.path_in_container.starts_with('/') {
            return Err(Error::invalid(format!("{} is not an absolute path", d.path_in_container)));
        }
    }
    Ok(())
}

fn permissions(p: &str) -> Result<&str> {
    if p.is_empty() {
        return Ok("rwm");
    }
    if p.len() > 3 || !p.bytes().all(|b| matches!(b, b'r' | b'w' | b'm')) {
        return Err(Error::invalid(format!("invalid device mode: {p}")));
    }
    Ok(p)
}

/// A container's devices: the nodes to make in its `/dev`, and its device
/// cgroup rules (the defaults, then one per `--device`, then its
/// `--device-cgroup-rule`s).
pub fn resolve(hc: &HostConfig) -> Result<(Vec<LinuxDevice>, Vec<LinuxDeviceCgroup>)> {
    let mut nodes = Vec::new();
    let mut rules = default_rules(hc.privileged)?;
    if hc.privileged {
        nodes.extend(host_devices(Path::new("/dev"), Path::new("/dev"))?);
    }
    for d in hc.devices.iter().flatten() {
        let access = permissions(&d.cgroup_permissions)?;
        let inside = if d.path_in_container.is_empty() { &d.path_on_host } else { &d.path_in_container };
        let given = given_devices(Path::new(&d.path_on_host), Path::new(inside)).map_err(|e| {
            Error::invalid(format!(
                "error gathering device information while adding custom device \"{}\": {e}",
                d.path_on_host
            ))
        })?;
        for node in given {
            rules.push(rule(true, node.typ(), Some(node.major()), Some(node.minor()), access)?);
            nodes.retain(|n: &LinuxDevice| n.path() != node.path());
            nodes.push(node);
        }
    }
    for r in hc.device_cgroup_rules.iter().flatten() {
        rules.push(parse_cgroup_rule(r)?);
    }
    Ok((nodes, rules))
}

/// The device at `host` (symlinks followed), or each device under it if it is
/// a directory, placed at `inside`.
fn given_devices(host: &Path, inside: &Path) -> std::io::Result<Vec<LinuxDevice>> {
    let resolved = std::fs::canonicalize(host)?;
    let meta = std::fs::metadata(&resolved)?;
    if meta.is_dir() {
        return host_devices(&resolved, inside);
    }
    node(inside, &meta).ok_or_else(|| std::io::Error::other("not a device node")).map(|n| vec![n])
}

/// Directories of /dev that hold no device a container is given: they are
/// made per container (pts, shm, mqueue) or are links into /proc.
const SKIPPED: [&str; 7] = ["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];

/// Every device node under `dir` (not following symlinks), placed under `inside`.
fn host_devices(dir: &Path, inside: &Path) -> std::io::Result<Vec<LinuxDevice>> {
    let mut out = Vec::new();
    let mut pending: Vec<(PathBuf, PathBuf)> = vec![(dir.to_path_buf(), inside.to_path_buf())];
    while let Some((dir, inside)) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(_) => continue,
            };
            if meta.is_dir() {
                if !SKIPPED.iter().any(|s| name == *s) {
                    pending.push((entry.path(), inside.join(&name)));
                }
                continue;
            }
            // /dev/console is the container's terminal and /dev/ptmx the
            // multiplexer of its own pseudo-terminals, both made by the shim.
            if dir == Path::new("/dev") && (name == "console" || name == "ptmx") {
                continue;
            }
            if let Some(n) = node(&inside.join(&name), &meta) {
                out.push(n);
            }
        }
    }
    out.sort_by(|a, b| a.path().cmp(b.path()));
    Ok(out)
}

/// The spec's description of a device node with `meta`'s type, numbers, mode
/// and owner, at `path`.
fn node(path: &Path, meta: &std::fs::Metadata) -> Option<LinuxDevice> {
    let typ = if meta.file_type().is_char_device() {
        LinuxDeviceType::C
    } else if meta.file_type().is_block_device() {
        LinuxDeviceType::B
    } else {
        return None;
    };
    let rdev = meta.rdev();
    LinuxDeviceBuilder::default()
        .path(path)
        .typ(typ)
        .major(i64::from(nix::sys::stat::major(rdev) as u32))
        .minor(i64::from(nix::sys::stat::minor(rdev) as u32))
        .file_mode(meta.mode() & 0o7777)
        .uid(meta.uid())
        .gid(meta.gid())
        .build()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hc(v: serde_json::Value) -> HostConfig {
        serde_json::from_value(v).expect("host config")
    }

    #[test]
    fn cgroup_rules_are_read_as_dockerd_reads_them() {
        let r = parse_cgroup_rule("c 42:* rmw").expect("valid");
        assert_eq!(r.to_string(), "c 42:* rmw");
        assert!(r.allow());
        assert_eq!(parse_cgroup_rule("a *:* rwm").expect("valid").to_string(), "a *:* rwm");
        assert_eq!(parse_cgroup_rule("b 8:0 r").expect("valid").minor(), Some(0));
        for bad in [
            "",
            "c 1:3",
            "x 1:3 r",
            "c 1:3 rwx",
            "c 1:3 rwmr",
            "c -1:3 r",
            "c 1-3 r",
            "c 1:3  r",
            "c 1:3 r extra",
            "c :3 r",
            "c 99999999999999999999:1 r",
        ] {
            let e = parse_cgroup_rule(bad).expect_err(bad);
            assert_eq!(e.to_string(), format!("invalid device cgroup format '{bad}'"));
        }
    }

    #[test]
    fn a_given_device_is_made_and_allowed_with_its_permissions() {
        let (nodes, rules) = resolve(&hc(json!({
            "Devices": [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/xnull", "CgroupPermissions": "r"}],
            "DeviceCgroupRules": ["c 42:* rmw"]
        })))
        .expect("resolve");
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].path(), Path::new("/dev/xnull"));
        assert_eq!((nodes[0].major(), nodes[0].minor()), (1, 3));
        let text: Vec<String> = rules.iter().map(|r| r.to_string()).collect();
        assert_eq!(text[0], "a *:* rwm", "deny everything first");
        assert!(!rules[0].allow());
        assert_eq!(&text[text.len() - 2..], ["c 1:3 r", "c 42:* rmw"]);
        // The host path by default; rwm by default.
        let (nodes, rules) = resolve(&hc(json!({"Devices": [{"PathOnHost": "/dev/zero"}]}))).expect("resolve");
        assert_eq!(nodes[0].path(), Path::new("/dev/zero"));
        assert_eq!(rules.last().map(|r| r.to_string()).as_deref(), Some("c 1:5 rwm"));
    }

    #[test]
    fn what_is_not_a_device_is_refused_with_dockerds_words() {
        let e = resolve(&hc(json!({"Devices": [{"PathOnHost": "/dev/nope-berth"}]}))).expect_err("missing");
        assert!(
            e.to_string()
                .starts_with("error gathering device information while adding custom device \"/dev/nope-berth\""),
            "{e}"
        );
        let e = resolve(&hc(json!({"Devices": [{"PathOnHost": "/etc/hostname"}]}))).expect_err("a file");
        assert!(e.to_string().ends_with("not a device node"), "{e}");
        assert!(validate(&hc(json!({"Devices": [{"PathOnHost": "/dev/null", "CgroupPermissions": "rwx"}]}))).is_err());
        assert!(validate(&hc(json!({"Devices": [{"PathOnHost": "dev/null"}]}))).is_err());
        assert!(validate(&hc(json!({"DeviceCgroupRules": ["c 1:3"]}))).is_err());
        assert!(validate(&hc(json!({"Devices": [{"PathOnHost": "/dev/null", "CgroupPermissions": "rw"}], "DeviceCgroupRules": ["b *:* m"]}))).is_ok());
    }

    #[test]
    fn privileged_containers_get_every_host_device_and_every_permission() {
        let (nodes, rules) = resolve(&hc(json!({"Privileged": true}))).expect("resolve");
        assert_eq!(rules.iter().map(|r| r.to_string()).collect::<Vec<_>>(), ["a *:* rwm"]);
        assert!(nodes.iter().any(|n| n.path() == Path::new("/dev/null")), "{nodes:?}");
        let own = |p: &Path| p.starts_with("/dev/pts") || p == Path::new("/dev/console") || p == Path::new("/dev/ptmx");
        assert!(!nodes.iter().any(|n| own(n.path())), "{nodes:?}");
        // A directory gives the devices under it.
        let (nodes, _) =
            resolve(&hc(json!({"Devices": [{"PathOnHost": "/dev", "PathInContainer": "/dev/host"}]}))).expect("dir");
        assert!(nodes.iter().any(|n| n.path() == Path::new("/dev/host/null")), "{nodes:?}");
    }
}
