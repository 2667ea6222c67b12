//! What a container's bundle holds, decided before anything is written: the
//! files bound over the image's (`hostname`, `hosts`, `resolv.conf`), the OCI
//! spec, and the annotations the shim reads (overlay layers, log bounds, stdin,
//! init). Pure: everything read from the host or the image comes in as
//! [`PlanInputs`], so the whole decision is unit-tested without root.

use std::path::{Path, PathBuf};

use berth_core::{Error, Result};
use berth_models::container::{ContainerConfig, HostConfig};
use berth_shim::protocol::Annotations;

use crate::spec::{self, SpecInputs};
use crate::volumes::MountPoint;

/// What a bundle is made from.
pub(super) struct PlanInputs<'a> {
    /// The bundle directory (`<data-root>/runtime/containers/<id>`).
    pub bundle: &'a Path,
    /// The image's ID, for messages.
    pub image_id: &'a str,
    /// The image's layer directories, bottom first (as the image service lists them).
    pub layer_dirs: &'a [String],
    pub config: &'a ContainerConfig,
    pub host_config: &'a HostConfig,
    /// The host's /etc/resolv.conf.
    pub host_resolv: &'a str,
    /// The image's /etc/passwd and /etc/group (empty where it has none).
    pub passwd: &'a str,
    pub group: &'a str,
    /// The container's volumes and binds, prepared.
    pub mounts: Vec<MountPoint>,
    /// The host's hard limit for open files.
    pub host_nofile_hard: u64,
    /// The daemon's `no-new-privileges` default.
    pub no_new_privileges: bool,
    /// Another OCI runtime's binary, when the container asks for one.
    pub runtime: Option<PathBuf>,
    /// The init bound into the container for `--init` under another runtime.
    pub init_binary: Option<PathBuf>,
    /// The daemon's remapping, when the container runs in a user namespace.
    pub userns: Option<&'a crate::userns::Remap>,
    /// Other containers' namespaces to join (see [`SpecInputs::joins`]).
    pub joins: Vec<(String, String)>,
    /// A host tmpfs to bind at `/dev/shm` (see [`SpecInputs::shm_source`]).
    pub shm_source: Option<String>,
}

/// A bundle, decided.
#[derive(Debug)]
pub(super) struct Plan {
    /// Files written into the bundle before the shim starts: (name, contents).
    pub files: Vec<(&'static str, String)>,
    /// The OCI spec, without annotations yet.
    pub spec: oci_spec::runtime::Spec,
    /// The shim's annotations; `cgroups` is filled once they are made.
    pub annotations: Annotations,
}

/// The bundle's subdirectories: the overlay's writable layer, its work
/// directory, and the mount point of the root filesystem.
pub(crate) fn dirs(bundle: &Path) -> [PathBuf; 3] {
    [bundle.join("upper"), bundle.join("work"), bundle.join("rootfs")]
}

/// Decides a bundle.
pub(super) fn plan(i: PlanInputs<'_>) -> Result<Plan> {
    if i.layer_dirs.is_empty() {
        return Err(Error::invalid(format!("image {} has no layers", i.image_id)));
    }
    let [upper, work, rootfs] = dirs(i.bundle);
    let hostname = &i.config.hostname;
    let files = vec![
        ("hostname", format!("{hostname}\n")),
        ("hosts", hosts_file(hostname, None, i.host_config)),
        ("resolv.conf", resolv_conf(i.host_resolv, i.host_config, i.host_config.host_network())),
    ];
    let user = spec::resolve_user(&i.config.user, i.host_config.group_add(), i.passwd, i.group)?;
    let mut spec = spec::build(&SpecInputs {
        config: i.config.clone(),
        host_config: i.host_config.clone(),
        rootfs,
        hostname_file: i.bundle.join("hostname"),
        hosts_file: i.bundle.join("hosts"),
        resolv_file: i.bundle.join("resolv.conf"),
        user,
        host_nofile_hard: i.host_nofile_hard,
        mounts: i.mounts,
        no_new_privileges: i.no_new_privileges,
        userns: i.userns.cloned(),
        joins: i.joins,
        shm_source: i.shm_source,
    })?;
    // The container's cgroups are Berth's (`crate::cgroups`), for any runtime.
    if let (Some(linux), Some(id)) = (spec.linux_mut(), i.bundle.file_name()) {
        linux.set_cgroups_path(Some(Path::new("/berth").join(id)));
    }
    let init = i.host_config.init.unwrap_or(false);
    if i.runtime.is_some() {
        let init_binary = if init { i.init_binary.as_deref() } else { None };
        if init && init_binary.is_none() {
            return Err(Error::invalid("--init under another runtime needs docker-init or tini-static on the host"));
        }
        crate::runtimes::adapt_spec(&mut spec, init_binary)?;
    }
    let (log_max_size, log_max_file) = super::log_limits(i.host_config)?;
    let annotations = Annotations {
        lowerdirs: i.layer_dirs.iter().rev().map(PathBuf::from).collect(),
        upperdir: upper,
        workdir: work,
        // The `none` driver keeps nothing (the shim writes to /dev/null).
        log_path: if i.host_config.log_config.kind == "none" { PathBuf::new() } else { i.bundle.join("container.log") },
        log_max_size,
        log_max_file,
        stdin: i.config.open_stdin,
        // Under another runtime, the init is the one bound in (see above).
        init: init && i.runtime.is_none(),
        cgroups: Vec::new(),
        runtime: i.runtime,
    };
    Ok(Plan { files, spec, annotations })
}

impl Plan {
    /// The spec as the shim reads it (`config.json`), annotated, with the
    /// container's cgroup directories.
    pub fn spec_json(&mut self, cgroups: Vec<PathBuf>) -> Result<Vec<u8>> {
        self.annotations.cgroups = cgroups;
        self.spec.set_annotations(Some(self.annotations.to_map()));
        serde_json::to_vec_pretty(&self.spec).map_err(|e| Error::internal(e.to_string()))
    }
}

/// The container's /etc/resolv.conf: the host's (without loopback resolvers,
/// unreachable from the container's own namespace), or `--dns`,
/// `--dns-search` and `--dns-option` where given, as dockerd writes it.
pub fn resolv_conf(host: &str, host_config: &HostConfig, network_host: bool) -> String {
    let (dns, search, options) = (host_config.dns(), host_config.dns_search(), host_config.dns_options());
    let mut lines: Vec<String> = host
        .lines()
        .filter(|l| {
            let nameserver = l.starts_with("nameserver");
            let loopback = l.contains(" 127.") || l.contains(" ::1");
            !(nameserver && (!dns.is_empty() || (!network_host && loopback))
                || (l.starts_with("search") || l.starts_with("domain")) && !search.is_empty()
                || l.starts_with("options") && !options.is_empty())
        })
        .map(str::to_string)
        .collect();
    lines.extend(dns.iter().map(|d| format!("nameserver {d}")));
    if !search.is_empty() {
        lines.push(format!("search {}", search.join(" ")));
    }
    if !options.is_empty() {
        lines.push(format!("options {}", options.join(" ")));
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// The /etc/resolv.conf of a container on a user-defined network: the
/// embedded DNS at `resolver` (which forwards to `--dns` or the host's
/// resolvers), the host's search domains or `--dns-search`, and `ndots:0`
/// unless `--dns-option` says otherwise, as dockerd writes it.
pub fn embedded_resolv_conf(host: &str, host_config: &HostConfig, resolver: &str) -> String {
    let (search, options) = (host_config.dns_search(), host_config.dns_options().to_vec());
    let mut lines: Vec<String> = Vec::new();
    if search.is_empty() {
        lines.extend(host.lines().filter(|l| l.starts_with("search") || l.starts_with("domain")).map(str::to_string));
    } else {
        lines.push(format!("search {}", search.join(" ")));
    }
    lines.push(format!("nameserver {resolver}"));
    let mut opts: Vec<String> = if options.is_empty() {
        host.lines()
            .filter_map(|l| l.strip_prefix("options"))
            .flat_map(|o| o.split_whitespace().map(str::to_string))
            .filter(|o| !o.starts_with("ndots:"))
            .collect()
    } else {
        options
    };
    if !opts.iter().any(|o| o.starts_with("ndots:")) {
        opts.insert(0, "ndots:0".into());
    }
    lines.push(format!("options {}", opts.join(" ")));
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// The container's /etc/hosts: localhost, its own address (once known) and
/// hostname, and `--add-host` entries.
pub fn hosts_file(hostname: &str, own_ip: Option<&str>, host_config: &HostConfig) -> String {
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n\
         ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    for extra in host_config.extra_hosts() {
        // `name:ip` (the CLI's --add-host), or `name=ip` as newer clients send it.
        if let Some((name, ip)) = extra.split_once([':', '=']) {
            out.push_str(&format!("{ip}\t{name}\n"));
        }
    }
    match own_ip {
        Some(ip) => out.push_str(&format!("{ip}\t{hostname}\n")),
        None => out.push_str(&format!("127.0.1.1\t{hostname}\n")),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn hc(v: Value) -> HostConfig {
        serde_json::from_value(v).expect("host config")
    }

    fn cfg(v: Value) -> ContainerConfig {
        serde_json::from_value(v).expect("config")
    }

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1000::/home/web:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nweb:x:1000:\nextra:x:2000:web\n";

    fn inputs<'a>(config: &'a ContainerConfig, host_config: &'a HostConfig, layers: &'a [String]) -> PlanInputs<'a> {
        PlanInputs {
            bundle: Path::new("/b/c1"),
            image_id: "sha256:img",
            layer_dirs: layers,
            config,
            host_config,
            host_resolv: "nameserver 127.0.0.53\nnameserver 9.9.9.9\n",
            passwd: PASSWD,
            group: GROUP,
            mounts: Vec::new(),
            host_nofile_hard: 4096,
            no_new_privileges: false,
            runtime: None,
            init_binary: None,
            userns: None,
            joins: vec![],
            shm_source: None,
        }
    }

    #[test]
    fn a_plan_holds_files_spec_and_annotations() {
        let layers = vec!["/l/bottom".to_string(), "/l/top".to_string()];
        let config = cfg(json!({"Hostname": "box", "User": "web", "Cmd": ["sh"], "OpenStdin": true}));
        let host_config = hc(
            json!({"Init": true, "LogConfig": {"Type": "json-file", "Config": {"max-size": "1k", "max-file": "2"}}}),
        );
        let mut plan = plan(inputs(&config, &host_config, &layers)).expect("plan");
        let names: Vec<&str> = plan.files.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["hostname", "hosts", "resolv.conf"]);
        assert_eq!(plan.files[0].1, "box\n");
        assert!(plan.files[1].1.ends_with("127.0.1.1\tbox\n"), "{}", plan.files[1].1);
        assert_eq!(plan.files[2].1, "nameserver 9.9.9.9\n", "no loopback resolver in the container");
        let a = &plan.annotations;
        assert_eq!(a.lowerdirs, [PathBuf::from("/l/top"), PathBuf::from("/l/bottom")], "top first");
        assert_eq!((a.upperdir.as_path(), a.workdir.as_path()), (Path::new("/b/c1/upper"), Path::new("/b/c1/work")));
        assert_eq!((a.log_max_size, a.log_max_file, a.stdin, a.init), (1024, 2, true, true));
        let process = plan.spec.process().as_ref().expect("process");
        assert_eq!((process.user().uid(), process.user().gid()), (1000, 1000), "the image's user");
        assert_eq!(plan.spec.root().as_ref().map(|r| r.path().clone()), Some(PathBuf::from("/b/c1/rootfs")));

        let json = plan.spec_json(vec![PathBuf::from("/sys/fs/cgroup/berth/c1")]).expect("spec");
        let (_, read) = berth_shim::spec::Spec::parse(&json).expect("the shim reads it");
        assert_eq!(read.cgroups, [PathBuf::from("/sys/fs/cgroup/berth/c1")]);
        assert_eq!(read.lowerdirs, plan.annotations.lowerdirs);
        assert_eq!(read.runtime, None, "the shim's own init");
        let spec: Value = serde_json::from_slice(&json).expect("json");
        assert_eq!(spec["linux"]["cgroupsPath"], "/berth/c1", "Berth's cgroups, for any runtime");
    }

    #[test]
    fn a_plan_for_another_runtime_binds_the_init() {
        let layers = vec!["/l/one".to_string()];
        let config = cfg(json!({"Cmd": ["sleep", "1"]}));
        let host_config = hc(json!({"Init": true, "Runtime": "runc"}));
        let runc = PlanInputs { runtime: Some("/usr/sbin/runc".into()), ..inputs(&config, &host_config, &layers) };
        let err = plan(runc).expect_err("no init binary");
        assert!(err.message().contains("--init"), "{}", err.message());
        let runc = PlanInputs {
            runtime: Some("/usr/sbin/runc".into()),
            init_binary: Some("/usr/bin/tini-static".into()),
            ..inputs(&config, &host_config, &layers)
        };
        let mut plan = plan(runc).expect("plan");
        assert!(!plan.annotations.init, "the bound init, not the shim's");
        let json = plan.spec_json(vec![]).expect("spec");
        let (spec, read) = berth_shim::spec::Spec::parse(&json).expect("the shim reads it");
        assert_eq!(read.runtime, Some(PathBuf::from("/usr/sbin/runc")));
        assert_eq!(spec.process.args, ["/sbin/docker-init", "--", "sleep", "1"]);
    }

    #[test]
    fn a_plan_refuses_what_cannot_run() {
        let (config, host_config) = (cfg(json!({"Cmd": ["sh"]})), hc(json!({})));
        let err = plan(inputs(&config, &host_config, &[])).expect_err("no layers");
        assert!(err.message().contains("has no layers"), "{}", err.message());
        let layers = vec!["/l/one".to_string()];
        let nobody = cfg(json!({"Cmd": ["sh"], "User": "ghost"}));
        let err = plan(inputs(&nobody, &host_config, &layers)).expect_err("unknown user");
        assert!(err.message().contains("ghost"), "{}", err.message());
        let bad_log = hc(json!({"LogConfig": {"Type": "json-file", "Config": {"max-size": "lots"}}}));
        assert!(plan(inputs(&config, &bad_log, &layers)).is_err(), "a bad max-size");
    }

    #[test]
    fn resolv_conf_and_hosts_like_dockerd() {
        let host = "domain example\nsearch a.example\nnameserver 127.0.0.53\nnameserver 9.9.9.9\noptions edns0\n";
        let plain = resolv_conf(host, &hc(json!({})), false);
        assert!(
            !plain.contains("127.0.0.53") && plain.contains("nameserver 9.9.9.9") && plain.contains("search a.example")
        );
        assert!(resolv_conf(host, &hc(json!({})), true).contains("127.0.0.53"), "host networking keeps the host's");
        let custom = resolv_conf(
            host,
            &hc(json!({"Dns": ["10.0.0.2"], "DnsSearch": ["b.test"], "DnsOptions": ["ndots:2"]})),
            false,
        );
        assert_eq!(custom, "nameserver 10.0.0.2\nsearch b.test\noptions ndots:2\n");
        let hosts =
            hosts_file("box", Some("172.18.0.2"), &hc(json!({"ExtraHosts": ["db:10.0.0.5", "cache=10.0.0.6"]})));
        assert!(
            hosts.contains("10.0.0.5\tdb\n")
                && hosts.contains("10.0.0.6\tcache\n")
                && hosts.ends_with("172.18.0.2\tbox\n")
        );
        assert!(hosts_file("box", None, &hc(json!({}))).ends_with("127.0.1.1\tbox\n"));
        assert_eq!(
            embedded_resolv_conf(host, &hc(json!({})), "127.0.0.11"),
            "domain example\nsearch a.example\nnameserver 127.0.0.11\noptions ndots:0 edns0\n"
        );
        assert_eq!(
            embedded_resolv_conf(
                host,
                &hc(json!({"Dns": ["10.0.0.2"], "DnsSearch": ["b.test"], "DnsOptions": ["ndots:2"]})),
                "127.0.0.11"
            ),
            "search b.test\nnameserver 127.0.0.11\noptions ndots:2\n",
            "--dns servers are the embedded DNS's upstreams, not the container's"
        );
    }
}
