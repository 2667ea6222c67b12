//! How confined a default container is, tried as a user (or an attacker)
//! would: its capability sets (for the command, an exec and an `--init`
//! process), and `no-new-privileges`.

use berth_tests::Daemon;

/// dockerd's default capabilities as the kernel's mask: CHOWN, DAC_OVERRIDE,
/// FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, NET_RAW,
/// SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP.
const DEFAULT_CAPS: &str = "00000000a80425fb";

/// The `Key:` lines of a /proc/PID/status, as (key, value) pairs.
fn status_of(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {key} in {text:?}"))
}

fn proc_status(d: &Daemon, args: &[&str]) -> String {
    let (code, out, err) = d.out(args);
    assert_eq!(code, Some(0), "docker {}: {err}", args.join(" "));
    out
}

#[test]
fn capability_sets_are_dockerds_for_command_exec_and_init() {
    let d = Daemon::with_busybox();
    let own = proc_status(&d, &["run", "--rm", "busybox", "cat", "/proc/self/status"]);
    for key in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(status_of(&own, key), DEFAULT_CAPS, "{key} of the command");
    }
    assert_eq!(status_of(&own, "CapInh"), "0000000000000000");
    assert_eq!(status_of(&own, "CapAmb"), "0000000000000000");

    // --init: PID 1 is Berth's init; it holds no more than the command.
    let init = proc_status(&d, &["run", "--rm", "--init", "busybox", "cat", "/proc/1/status"]);
    assert_eq!(status_of(&init, "Name"), "docker-init");
    for key in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(status_of(&init, key), DEFAULT_CAPS, "{key} of the --init process");
    }
    let init_user = proc_status(&d, &["run", "--rm", "--init", "--user", "1000", "busybox", "cat", "/proc/1/status"]);
    assert_eq!(status_of(&init_user, "CapEff"), "0000000000000000", "the init of a non-root command");
    assert_eq!(status_of(&init_user, "CapPrm"), "0000000000000000");
    assert_eq!(status_of(&init_user, "CapBnd"), DEFAULT_CAPS);

    // An exec gets the container's sets.
    d.docker(&["run", "-d", "--name", "box", "busybox", "sleep", "300"]).expect("run -d");
    let exec = proc_status(&d, &["exec", "box", "cat", "/proc/self/status"]);
    assert_eq!(status_of(&exec, "CapEff"), DEFAULT_CAPS, "CapEff of an exec");
    assert_eq!(status_of(&exec, "CapBnd"), DEFAULT_CAPS, "CapBnd of an exec");

    // --cap-drop ALL leaves nothing, not even in the bounding set; --cap-add adds exactly one.
    let none = proc_status(&d, &["run", "--rm", "--cap-drop", "ALL", "busybox", "cat", "/proc/self/status"]);
    assert_eq!(status_of(&none, "CapBnd"), "0000000000000000");
    assert_eq!(status_of(&none, "CapEff"), "0000000000000000");
    let admin = proc_status(&d, &["run", "--rm", "--cap-add", "SYS_ADMIN", "busybox", "cat", "/proc/self/status"]);
    assert_eq!(status_of(&admin, "CapEff"), "00000000a82425fb", "SYS_ADMIN is bit 21");
    // A user other than root has none effective, as on dockerd.
    let user = proc_status(&d, &["run", "--rm", "--user", "1000", "busybox", "cat", "/proc/self/status"]);
    assert_eq!(status_of(&user, "CapEff"), "0000000000000000");
}

#[test]
fn no_new_privileges_is_honoured() {
    let d = Daemon::with_busybox();
    let plain = proc_status(&d, &["run", "--rm", "busybox", "cat", "/proc/self/status"]);
    assert_eq!(status_of(&plain, "NoNewPrivs"), "0");
    let nnp =
        proc_status(&d, &["run", "--rm", "--security-opt", "no-new-privileges", "busybox", "cat", "/proc/self/status"]);
    assert_eq!(status_of(&nnp, "NoNewPrivs"), "1");
    let nnp_true = proc_status(
        &d,
        &["run", "--rm", "--security-opt", "no-new-privileges:true", "--init", "busybox", "cat", "/proc/1/status"],
    );
    assert_eq!(status_of(&nnp_true, "NoNewPrivs"), "1", "the --init process too");
    d.docker(&["run", "-d", "--name", "nnp", "--security-opt", "no-new-privileges", "busybox", "sleep", "300"])
        .expect("run -d");
    let exec = proc_status(&d, &["exec", "nnp", "cat", "/proc/self/status"]);
    assert_eq!(status_of(&exec, "NoNewPrivs"), "1", "an exec in such a container");

    // The daemon-wide default, which a container can turn off, as on dockerd.
    let strict = Daemon::start(&["--no-new-privileges"]).expect("berthd --no-new-privileges");
    strict
        .load(&berth_tests::docker_save_tar(&[berth_tests::TestImage::busybox(&["busybox:latest"])], false))
        .expect("load");
    let on = proc_status(&strict, &["run", "--rm", "busybox", "cat", "/proc/self/status"]);
    assert_eq!(status_of(&on, "NoNewPrivs"), "1");
    let off = proc_status(
        &strict,
        &["run", "--rm", "--security-opt", "no-new-privileges=false", "busybox", "cat", "/proc/self/status"],
    );
    assert_eq!(status_of(&off, "NoNewPrivs"), "0");
}

fn mode_of(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("stat {}: {e}", p.display())).permissions().mode() & 0o7777
}

/// Runs `args` as nobody (uid and gid 65534, no groups); whether it succeeded.
fn as_nobody(args: &[&str]) -> bool {
    std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("setpriv")
        .success()
}

#[test]
fn state_is_private_to_root_and_older_modes_are_fixed() {
    let mut d = Daemon::with_busybox();
    let id =
        d.docker(&["run", "-d", "-e", "SECRET=hunter2", "busybox", "sleep", "300"]).expect("run").trim().to_string();
    let root = d.data_root();
    let bundle = root.join("runtime/containers").join(&id);
    assert_eq!(mode_of(&root), 0o710, "the data root, as dockerd's /var/lib/docker");
    for svc in ["image", "runtime", "network", "volume"] {
        assert_eq!(mode_of(&root.join(svc)), 0o700, "{svc}/");
        if d.args.iter().any(|a| a.starts_with("--state-url")) {
            continue; // the records are in Postgres
        }
        let dbs: Vec<_> = std::fs::read_dir(root.join(svc))
            .expect("read_dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "db"))
            .collect();
        assert!(!dbs.is_empty(), "{svc} has a database");
        for db in dbs {
            assert_eq!(mode_of(&db), 0o600, "{}", db.display());
        }
    }
    assert_eq!(mode_of(&bundle), 0o700, "the bundle");
    for f in ["config.json", "container.log", "ctl.sock"] {
        assert_eq!(mode_of(&bundle.join(f)), 0o600, "{f}");
    }
    assert_eq!(mode_of(&d.sock()), 0o660, "the API socket, as dockerd's");
    // Another local user reads none of it (the test's own temporary directory
    // lets others pass, as /var/lib does).
    let tmp = root.parent().expect("the test's directory");
    std::fs::set_permissions(tmp, std::os::unix::fs::PermissionsExt::from_mode(0o711)).expect("chmod tmp");
    assert!(as_nobody(&["stat", &root.to_string_lossy()]), "nobody reaches the data root itself");
    let spec = bundle.join("config.json");
    assert!(std::fs::read_to_string(&spec).expect("root reads it").contains("hunter2"));
    assert!(!as_nobody(&["cat", &spec.to_string_lossy()]), "nobody reads a container's environment");
    assert!(!as_nobody(&["ls", &root.to_string_lossy()]), "nobody lists the data root");

    // What an older Berth left loose is tightened at the next start.
    let db = root.join("runtime/runtime.db");
    let runtime_dir = root.join("runtime");
    // (No database file when the records are in Postgres.)
    let loose: Vec<(&std::path::Path, u32, u32)> =
        [(root.as_path(), 0o755, 0o710), (&runtime_dir, 0o755, 0o700), (&db, 0o644, 0o600)]
            .into_iter()
            .filter(|(p, _, _)| p.exists())
            .collect();
    for (p, m, _) in &loose {
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(*m)).expect("loosen");
    }
    d.restart().expect("restart");
    for (p, _, want) in &loose {
        assert_eq!(mode_of(p), *want, "{} tightened", p.display());
    }
}

/// Creates an exec and starts it detached; the error message it must fail with.
fn exec_error(d: &Daemon, container: &str, body: &str) -> String {
    let (status, _, created) =
        berth_tests::raw_http(&d.sock(), "POST", &format!("/containers/{container}/exec"), body.as_bytes())
            .expect("exec create");
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&created));
    let id =
        serde_json::from_slice::<serde_json::Value>(&created).expect("json")["Id"].as_str().expect("Id").to_string();
    let (status, _, body) =
        berth_tests::raw_http(&d.sock(), "POST", &format!("/exec/{id}/start"), br#"{"Detach":true}"#)
            .expect("exec start");
    let body = String::from_utf8_lossy(&body).to_string();
    assert!(status >= 400, "the exec must fail: {status} {body}");
    body
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status_of(&status, "VmRSS").trim_end_matches("kB").trim().parse().unwrap_or(0)
}

#[test]
fn a_containers_passwd_cannot_point_berthd_at_the_host() {
    let d = Daemon::with_busybox();
    let pid = d.pid().expect("berthd's pid");
    d.docker(&["run", "-d", "--name", "box", "busybox", "sleep", "300"]).expect("run -d");

    // A symlink out of the container names the container's own file, never the host's.
    let marker = format!("/tmp/berth-passwd-{}", std::process::id());
    std::fs::write(&marker, "root:x:0:0::/root:/bin/sh\nghost:x:4242:4242::/:/bin/sh\n").expect("host file");
    d.docker(&["exec", "box", "ln", "-sf", &format!("/../../../..{marker}"), "/etc/passwd"]).expect("ln");
    let err = exec_error(&d, "box", r#"{"Cmd":["id","-u"],"User":"ghost"}"#);
    let _ = std::fs::remove_file(&marker);
    assert!(err.contains("unable to find user ghost"), "the host's file is not the container's users: {err}");

    // /dev/zero is the container's own device: refused, and berthd reads none of it.
    let before = rss_kib(pid);
    d.docker(&["exec", "box", "ln", "-sf", "/dev/zero", "/etc/passwd"]).expect("ln");
    let err = exec_error(&d, "box", r#"{"Cmd":["true"]}"#);
    assert!(err.contains("/etc/passwd in the container is not a regular file"), "{err}");
    assert!(rss_kib(pid) < before + 64 * 1024, "berthd did not read /dev/zero: {} KiB", rss_kib(pid));

    // At the next start the file is read from the container's layer, inside
    // that layer: the link leads nowhere there, so the container starts as root.
    d.docker(&["stop", "-t", "0", "box"]).expect("stop");
    d.docker(&["start", "box"]).expect("start");
    assert!(rss_kib(pid) < before + 64 * 1024, "berthd did not read /dev/zero at the start");
    assert_eq!(d.docker(&["inspect", "-f", "{{.State.Running}}", "box"]).expect("inspect").trim(), "true");
}

#[test]
fn bridge_names_are_interface_names_berth_makes() {
    let d = Daemon::start(&[]).expect("start");
    let opt = |name: &str| format!("com.docker.network.bridge.name={name}");
    for (name, want) in
        [("e*", "invalid bridge name"), ("a b", "invalid bridge name"), ("lo", "taken by an existing interface")]
    {
        let (code, _, err) = d.out(&["network", "create", "-o", &opt(name), "--subnet", "10.231.40.0/24", "nope"]);
        assert_ne!(code, Some(0), "{name:?}");
        assert!(err.contains(want), "{name:?}: {err}");
    }
    assert!(std::path::Path::new("/sys/class/net/lo").exists(), "the host's interface is untouched");
    assert!(!d.docker(&["network", "ls", "--format", "{{.Name}}"]).expect("ls").contains("nope"));
}

/// A tmpfs mounted under a temporary directory; unmounted on drop.
struct SubMount(std::path::PathBuf);

impl Drop for SubMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn read_only_binds_are_read_only_all_the_way_down() {
    let d = Daemon::with_busybox();
    let tree = tempfile::tempdir().expect("tmp");
    let sub = tree.path().join("sub");
    std::fs::create_dir(&sub).expect("mkdir");
    let ok = std::process::Command::new("mount").args(["-t", "tmpfs", "tmpfs"]).arg(&sub).status().expect("mount");
    assert!(ok.success(), "mount a tmpfs under the tree");
    let _sub = SubMount(sub.clone());
    let src = tree.path().to_string_lossy().to_string();

    let (code, _, err) = d.out(&["run", "--rm", "-v", &format!("{src}:/data:ro"), "busybox", "touch", "/data/sub/f"]);
    assert_ne!(code, Some(0), "a sub-mount of a read-only bind is read-only");
    assert!(err.contains("Read-only file system"), "{err}");
    let (code, _, err) = d.out(&["run", "--rm", "-v", &format!("{src}:/data:ro"), "busybox", "touch", "/data/f"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("Read-only file system"), "{err}");
    assert!(!sub.join("f").exists() && !tree.path().join("f").exists());
    // Read-write binds stay writable below, too.
    d.docker(&["run", "--rm", "-v", &format!("{src}:/data"), "busybox", "touch", "/data/sub/f"]).expect("rw");
    assert!(sub.join("f").exists());
}

#[test]
fn the_hosts_loopback_is_not_reachable_from_a_bridge() {
    let d = Daemon::with_busybox();
    // A published port turns route_localnet on for the bridge.
    let port = berth_tests::free_port();
    d.docker(&["run", "-d", "-p", &format!("127.0.0.1:{port}:80"), "busybox", "httpd", "-f", "-p", "80", "-h", "/etc"])
        .expect("publish");
    let rl = std::fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{}/route_localnet", d.bridge)).expect("sysctl");
    assert_eq!(rl.trim(), "1");
    let gw = d.docker(&["network", "inspect", "--format", "{{(index .IPAM.Config 0).Gateway}}", "bridge"]).expect("gw");
    let gw = gw.trim();
    let neighbour_addr = format!("{}.250", gw.rsplit_once('.').map(|(net, _)| net).expect("gateway"));

    // A service on the host's loopback only.
    let secret_port = berth_tests::free_port();
    let _server = berth_tests::serve_ready(std::process::Command::new("python3").args([
        "-c",
        berth_tests::WHOAMI,
        "127.0.0.1",
        &secret_port.to_string(),
        "loopback-only",
    ]));

    let n = berth_tests::Outside::on_bridge(&d.bridge[2..], &d.bridge, &neighbour_addr, gw);
    assert_eq!(n.fetch("127.0.0.1", secret_port), None, "a host loopback service answered a bridge neighbour");
    // The host itself still reaches the container through 127.0.0.1.
    let reply = std::process::Command::new("python3")
        .args([
            "-c",
            "import socket, sys\ns=socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=3)\n\
                      s.sendall(b'GET /hostname HTTP/1.0\\r\\n\\r\\n'); print(s.recv(1000).decode())",
        ])
        .arg(port.to_string())
        .output()
        .expect("fetch");
    assert!(String::from_utf8_lossy(&reply.stdout).contains("200 OK"), "{}", String::from_utf8_lossy(&reply.stderr));

    // Without Berth's input rules the same packets do reach the host's loopback:
    // the set-up above is a real attack, and the rule is what stops it.
    let table = format!("berth_{}", d.bridge);
    let flushed = std::process::Command::new("nft").args(["flush", "chain", "inet", &table, "input"]).status();
    assert!(flushed.is_ok_and(|s| s.success()));
    assert_eq!(n.fetch("127.0.0.1", secret_port).as_deref(), Some("loopback-only"));
}

#[test]
fn a_container_cannot_hold_every_dns_connection() {
    let d = Daemon::with_busybox();
    d.docker(&["network", "create", "--subnet", "10.231.41.0/24", "net-dnscap"]).expect("network");
    // Twenty clients connect to the embedded DNS over TCP and say nothing.
    // Refused clients exit as soon as they are closed; wait until at most 16
    // are left (or 10 s), then count again after a moment.
    let script = "for i in $(seq 20); do sleep 9 | nc 127.0.0.11 53 >/dev/null 2>&1 & done; \
                  count() { ps -o args | grep -c '^nc 127.0.0.11'; }; \
                  for t in $(seq 100); do [ $(count) -le 16 ] && break; sleep 0.1; done; sleep 0.5; count";
    let held = d
        .docker(&["run", "--rm", "--network", "net-dnscap", "busybox", "sh", "-c", script])
        .expect("run")
        .trim()
        .parse::<u32>()
        .expect("a count");
    assert_eq!(held, 16, "the resolver keeps 16 TCP connections per container and closes the rest at once");
    // Names still resolve over UDP meanwhile.
    let (code, out, err) = d.out(&[
        "run",
        "--rm",
        "--network",
        "net-dnscap",
        "--name",
        "asker",
        "busybox",
        "nslookup",
        "asker",
        "127.0.0.11",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
}

/// A block device the host itself may open (some sandboxes refuse their
/// disks even to root): its path and `major:minor`.
fn a_host_disk() -> (String, String) {
    std::fs::read_dir("/sys/class/block")
        .expect("/sys/class/block")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let path = format!("/dev/{}", e.file_name().to_string_lossy());
            let dev = std::fs::read_to_string(e.path().join("dev")).ok()?;
            std::fs::File::open(&path).is_ok().then(|| (path, dev.trim().to_string()))
        })
        .next()
        .expect("a block device the host can open")
}

/// The `major:minor` of a block device of the host.
fn a_host_block_device() -> String {
    a_host_disk().1
}

#[test]
fn a_container_can_make_a_device_node_but_not_use_a_host_disk() {
    let d = Daemon::with_busybox();
    let dev = a_host_block_device();
    let (major, minor) = dev.split_once(':').expect("major:minor");
    let script = format!("mknod /tmp/disk b {major} {minor} && echo made && head -c 512 /tmp/disk >/dev/null");
    let (code, out, err) = d.out(&["run", "--rm", "busybox", "sh", "-c", &script]);
    assert!(out.contains("made"), "mknod is allowed, as on dockerd: {err}");
    assert_ne!(code, Some(0), "reading the host's disk {dev} is refused");
    assert!(err.contains("Operation not permitted"), "{err}");
    // The devices every container has still work, pseudo-terminals included.
    let (code, out, err) = d.out(&[
        "run",
        "--rm",
        "-t",
        "busybox",
        "sh",
        "-c",
        "head -c 4 /dev/zero | wc -c; head -c 4 /dev/urandom | wc -c; echo x > /dev/null; tty",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("/dev/pts/"), "{out}");
    // A privileged container may.
    let (code, _, err) = d.out(&["run", "--rm", "--privileged", "busybox", "sh", "-c", &script]);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn devices_are_given_with_their_permissions_and_cgroup_rules_add_to_them() {
    let d = Daemon::with_busybox();
    // --device SRC:DST:r makes the node and allows reading only (the disk is
    // opened for writing, never written).
    let (disk, dev) = a_host_disk();
    let (major, minor) = dev.split_once(':').expect("major:minor");
    let given = format!("{disk}:/dev/xvda:r");
    let script = "ls -l /dev/xvda; (exec 3</dev/xvda) && echo read-ok; (exec 3<>/dev/xvda) 2>&1 || echo refused";
    let out = d.docker(&["run", "--rm", "--device", &given, "busybox", "sh", "-c", script]).expect("run --device");
    assert!(out.starts_with("brw-") && out.contains(&format!(" {major},")), "the node, as on the host: {out}");
    assert!(out.contains("read-ok") && out.contains("Operation not permitted") && out.contains("refused"), "{out}");
    // The same disk, made by the container, opened only with a rule for it.
    let script = format!("mknod /tmp/disk b {major} {minor} && (exec 3</tmp/disk) && echo opened");
    let (code, out, err) = d.out(&["run", "--rm", "busybox", "sh", "-c", &script]);
    assert!(code != Some(0) && !out.contains("opened"), "without a rule: {out}{err}");
    let rule = format!("b {major}:{minor} r");
    let out = d
        .docker(&["run", "--rm", "--device-cgroup-rule", &rule, "busybox", "sh", "-c", &script])
        .expect("run --device-cgroup-rule");
    assert_eq!(out.trim(), "opened", "the rule allows reading {dev}");
    let (code, out, err) = d.out(&[
        "run",
        "--rm",
        "--device-cgroup-rule",
        &format!("b {major}:{minor} m"),
        "busybox",
        "sh",
        "-c",
        &script,
    ]);
    assert!(code != Some(0) && !out.contains("opened"), "mknod only: {out}{err}");
    // dockerd's errors: a missing device at the start, a bad rule at the create.
    let (code, _, err) = d.out(&["run", "--rm", "--device", "/dev/berth-nope", "busybox", "true"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("error gathering device information while adding custom device \"/dev/berth-nope\""), "{err}");
    let body = br#"{"Image":"busybox","HostConfig":{"DeviceCgroupRules":["c 1:3 rwx"]}}"#;
    let (status, _, reply) = berth_tests::raw_http(&d.sock(), "POST", "/containers/create", body).expect("create");
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&reply));
    assert!(String::from_utf8_lossy(&reply).contains("invalid device cgroup format 'c 1:3 rwx'"));
    // A privileged container sees the host's devices.
    let out = d.docker(&["run", "--rm", "--privileged", "busybox", "ls", "/dev"]).expect("privileged");
    let host_has = |name: &str| std::path::Path::new("/dev").join(name).exists();
    for name in ["loop-control", "kmsg", "mem"] {
        if host_has(name) {
            assert!(out.lines().any(|l| l == name), "/dev/{name} in a privileged container: {out}");
        }
    }
    // Nothing masked or read-only in /proc and /sys, as on dockerd: a sysctl
    // of its own network namespace can be written.
    let script = "grep -E ' /proc/(sys|keys|acpi|bus|fs|irq|kcore|timer_list) | /sys/firmware ' /proc/mounts; \
                  echo 1 > /proc/sys/net/ipv4/ip_forward && echo written";
    let out = d.docker(&["run", "--rm", "--privileged", "busybox", "sh", "-c", script]).expect("privileged /proc");
    assert_eq!(out.trim(), "written", "no masked or read-only mounts: {out}");
}

#[test]
fn the_host_shim_binary_is_out_of_a_containers_reach() {
    let d = Daemon::with_busybox();
    // With --init, PID 1 stays Berth's process for the container's life: its
    // /proc/1/exe is the host's berth-shim.
    let script = "cat /proc/1/exe >/dev/null 2>&1 && echo readable; \
                  (exec 3<>/proc/1/exe) 2>/dev/null && echo writable; echo done";
    let out = d.docker(&["run", "--rm", "--init", "busybox", "sh", "-c", script]).expect("run");
    assert_eq!(out.trim(), "done", "the host binary behind /proc/1/exe");
    // An exec's process before its execve is the same binary; an exec that
    // looks at every process of the container finds none it can open.
    d.docker(&["run", "-d", "--init", "--name", "box", "busybox", "sleep", "300"]).expect("run -d");
    let scan = "for p in /proc/[0-9]*; do cat $p/exe >/dev/null 2>&1 && readlink $p/exe; done; echo done";
    let out = d.docker(&["exec", "box", "sh", "-c", scan]).expect("exec");
    assert!(!out.contains("berth-shim"), "a berth-shim binary readable from the container: {out}");

    // With CAP_SYS_PTRACE the container may open its init's binary: what it
    // finds is a sealed in-memory copy, not the host's file, and it takes no
    // write (the CVE-2019-5736 attack keeps such a descriptor and writes
    // through it once the binary stops running).
    let host = std::fs::metadata(berth_tests::bin("berth-shim")).expect("the shim binary");
    let probe = "readlink /proc/1/exe; stat -L -c '%d:%i' /proc/1/exe; \
                 (echo x >>/proc/1/exe) 2>/dev/null && echo appended; \
                 (echo x 1<>/proc/1/exe) 2>/dev/null && echo written; echo done";
    let out = d
        .docker(&["run", "--rm", "--init", "--cap-add", "SYS_PTRACE", "busybox", "sh", "-c", probe])
        .expect("run with SYS_PTRACE");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.first().is_some_and(|l| l.starts_with("/memfd:berth-shim")), "{out}");
    use std::os::unix::fs::MetadataExt;
    assert_ne!(lines.get(1).copied(), Some(format!("{}:{}", host.dev(), host.ino()).as_str()), "{out}");
    assert_eq!(&lines[2..], ["done"], "the copy took a write: {out}");
}

#[test]
fn the_default_seccomp_profile_is_dockerds() {
    let d = Daemon::with_busybox();
    let status = proc_status(&d, &["run", "--rm", "busybox", "cat", "/proc/self/status"]);
    assert_eq!(status_of(&status, "Seccomp"), "2", "a filter is loaded");
    // A new user namespace needs CAP_SYS_ADMIN under the profile (as keyctl is refused).
    let (code, _, err) = d.out(&["run", "--rm", "busybox", "busybox", "unshare", "-U", "true"]);
    assert_ne!(code, Some(0), "unshare -U under the default profile");
    assert!(err.contains("Operation not permitted"), "{err}");
    // Unconfined, and privileged, the same call goes through.
    let unconfined =
        ["run", "--rm", "--security-opt", "seccomp=unconfined", "busybox", "busybox", "unshare", "-U", "true"];
    assert_eq!(d.out(&unconfined).0, Some(0), "seccomp=unconfined");
    let plain = proc_status(
        &d,
        &["run", "--rm", "--security-opt", "seccomp=unconfined", "busybox", "cat", "/proc/self/status"],
    );
    assert_eq!(status_of(&plain, "Seccomp"), "0");
    let privileged = proc_status(&d, &["run", "--rm", "--privileged", "busybox", "cat", "/proc/self/status"]);
    assert_eq!(status_of(&privileged, "Seccomp"), "0", "privileged runs unconfined, as on dockerd");
    // What every container does still works: a shell, pipes, forks, linux32 (personality 8).
    assert_eq!(
        d.docker(&["run", "--rm", "busybox", "sh", "-c", "echo a | cat; busybox linux32 busybox uname -m"])
            .expect("run")
            .trim(),
        "a\ni686"
    );
    // An exec gets the same filter.
    d.docker(&["run", "-d", "--name", "box", "busybox", "sleep", "300"]).expect("run -d");
    let (code, _, _) = d.out(&["exec", "box", "busybox", "unshare", "-U", "true"]);
    assert_ne!(code, Some(0), "an exec is filtered too");

    // A profile of one's own, as the CLI sends it (it reads the file).
    let dir = tempfile::tempdir().expect("tmp");
    let profile = dir.path().join("no-mkdir.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}"#,
    )
    .expect("profile");
    let opt = format!("seccomp={}", profile.display());
    let (code, _, err) = d.out(&["run", "--rm", "--security-opt", &opt, "busybox", "mkdir", "/tmp/x"]);
    assert_ne!(code, Some(0), "mkdir is refused by the profile");
    assert!(err.contains("Operation not permitted"), "{err}");
    assert_eq!(
        d.out(&["run", "--rm", "--security-opt", &opt, "busybox", "busybox", "unshare", "-U", "true"]).0,
        Some(0)
    );
}

#[test]
fn split_services_do_not_serve_unauthenticated_grpc_beyond_loopback() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = berth_tests::free_port();
    let out = std::process::Command::new(berth_tests::bin("berth-volume"))
        .args(["--listen", &format!("tcp://0.0.0.0:{port}"), "--data-root"])
        .arg(dir.path())
        .output()
        .expect("berth-volume");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--insecure-tcp"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
