//! Running containers: `docker run` attached and detached, exit codes, isolation
//! seen from inside, logs, stop/kill/wait/restart, clean-up, and containers that
//! outlive a crashed berthd.

use std::time::{Duration, Instant};

use berth_tests::{Daemon, TestImage, docker_save_tar};

fn overlay_mounts_of(d: &Daemon) -> usize {
    let root = d.data_root().to_string_lossy().to_string();
    std::fs::read_to_string("/proc/mounts").unwrap_or_default().lines().filter(|l| l.contains(&root)).count()
}

fn shims_of(d: &Daemon) -> usize {
    let root = d.data_root().to_string_lossy().to_string();
    std::fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
                .filter(|c| {
                    let c = String::from_utf8_lossy(c);
                    c.contains("berth-shim") && c.contains(&root)
                })
                .count()
        })
        .unwrap_or(0)
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn run_attached_gives_output_and_exit_codes() {
    let d = Daemon::with_busybox();
    assert_eq!(d.out(&["run", "--rm", "busybox", "echo", "hello"]), (Some(0), "hello\n".into(), String::new()));
    let (code, out, err) = d.out(&["run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!((code, out.as_str(), err.as_str()), (Some(3), "out\n", "err\n"));
    let (code, _, err) = d.out(&["run", "--rm", "busybox", "nosuchcmd"]);
    assert_eq!(code, Some(127), "{err}");
    assert!(err.contains("executable file not found"), "{err}");
    let (code, _, err) = d.out(&["run", "--rm", "busybox", "/etc/passwd"]);
    assert_eq!(code, Some(126), "{err}");
    // --rm leaves nothing behind.
    assert_eq!(d.docker(&["ps", "-a", "-q"]).expect("ps").trim(), "");
    assert_eq!(overlay_mounts_of(&d), 0);
    assert_eq!(shims_of(&d), 0);
    // Without --rm the container stays, exited, with its code.
    let (code, _, _) = d.out(&["run", "--name", "kept", "busybox", "sh", "-c", "exit 5"]);
    assert_eq!(code, Some(5));
    let state = d
        .docker(&["inspect", "--format", "{{.State.Status}} {{.State.ExitCode}} {{.State.Pid}}", "kept"])
        .expect("inspect");
    assert_eq!(state.trim(), "exited 5 0");
    assert!(d.docker(&["ps", "-a", "--format", "{{.Status}}"]).expect("ps").starts_with("Exited (5)"));
}

#[test]
fn containers_are_isolated() {
    let d = Daemon::with_busybox();
    let script = "echo pid=$$; hostname; grep CapEff /proc/self/status; ls /dev | tr '\\n' ' '; echo; \
                  [ -s /proc/kcore ] && echo kcore-visible || echo kcore-masked; (echo 1 > /proc/sys/kernel/panic) 2>/dev/null && echo sys-rw || echo sys-ro; \
                  (touch /sys/x) 2>/dev/null && echo sysfs-rw || echo sysfs-ro; cat /proc/net/dev | grep -c ':'; id -u";
    let (code, out, err) = d.out(&["run", "--rm", "-h", "box1", "busybox", "sh", "-c", script]);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "pid=1", "the command is PID 1 of its own namespace");
    assert_eq!(lines[1], "box1");
    assert_eq!(lines[2], "CapEff:\t00000000a80425fb", "dockerd's default capabilities");
    for dev in ["null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm", "fd"] {
        assert!(lines[3].split(' ').any(|x| x == dev), "/dev/{dev} in {}", lines[3]);
    }
    assert_eq!(lines[4], "kcore-masked");
    assert_eq!(lines[5], "sys-ro");
    assert_eq!(lines[6], "sysfs-ro");
    assert_eq!(lines[7], "2", "a network namespace of its own: lo and the bridge's eth0");
    assert_eq!(lines[8], "0");

    // --network host sees the host's interfaces, such as this daemon's bridge.
    let pattern = format!("{}:", d.bridge);
    let (_, out, _) = d.out(&["run", "--rm", "--network", "host", "busybox", "grep", "-c", &pattern, "/proc/net/dev"]);
    assert_eq!(out.trim(), "1", "the host's interfaces under --network host");

    // Capabilities, users, workdir, env, read-only root, binds.
    let (_, out, _) = d.out(&["run", "--rm", "--cap-drop", "ALL", "busybox", "grep", "CapEff", "/proc/self/status"]);
    assert_eq!(out.trim(), "CapEff:\t0000000000000000");
    let (_, out, _) = d.out(&["run", "--rm", "--privileged", "busybox", "grep", "CapBnd", "/proc/self/status"]);
    assert_ne!(out.trim(), "CapBnd:\t00000000a80425fb");
    let (_, out, _) = d.out(&["run", "--rm", "-u", "nobody", "busybox", "id"]);
    assert_eq!(out.trim(), "uid=65534(nobody) gid=65534(nogroup)");
    let (_, out, _) = d.out(&["run", "--rm", "-u", "1234:5678", "busybox", "id", "-u"]);
    assert_eq!(out.trim(), "1234");
    let (code, _, err) = d.out(&["run", "--rm", "-u", "ghost", "busybox", "true"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("unable to find user ghost"), "{err}");
    let (_, out, _) =
        d.out(&["run", "--rm", "-w", "/srv/app", "-e", "GREETING=hi", "busybox", "sh", "-c", "pwd; echo $GREETING"]);
    assert_eq!(out, "/srv/app\nhi\n");
    let (code, _, _) = d.out(&["run", "--rm", "--read-only", "busybox", "touch", "/x"]);
    assert_ne!(code, Some(0), "a read-only root refuses writes");
    let host_dir = d.root.path().join("shared");
    std::fs::create_dir_all(&host_dir).expect("mkdir");
    std::fs::write(host_dir.join("in.txt"), "from host").expect("write");
    let bind = format!("{}:/data", host_dir.display());
    let (_, out, _) =
        d.out(&["run", "--rm", "-v", &bind, "busybox", "sh", "-c", "cat /data/in.txt; echo back > /data/out.txt"]);
    assert_eq!(out, "from host");
    assert_eq!(std::fs::read_to_string(host_dir.join("out.txt")).expect("written back"), "back\n");
    let ro = format!("{}:/data:ro", host_dir.display());
    let (code, _, _) = d.out(&["run", "--rm", "-v", &ro, "busybox", "touch", "/data/nope"]);
    assert_ne!(code, Some(0));
    let (_, out, _) =
        d.out(&["run", "--rm", "--tmpfs", "/scratch", "busybox", "sh", "-c", "mount | grep -c ' /scratch '"]);
    assert_eq!(out.trim(), "1");
    // Mount targets that climb out through symlinks stay inside the rootfs.
    assert_eq!(overlay_mounts_of(&d), 0);
}

#[test]
fn detached_logs_stop_start_kill_wait() {
    let d = Daemon::with_busybox();
    let id = d
        .docker(&["run", "-d", "--name", "svc", "busybox", "sh", "-c", "echo one; echo two >&2; sleep 300"])
        .expect("run -d");
    let id = id.trim().to_string();
    assert_eq!(id.len(), 64);
    wait_until("output", || d.docker(&["logs", "svc"]).map(|o| o.contains("one")).unwrap_or(false));
    let (_, out, err) = d.out(&["logs", "svc"]);
    assert_eq!((out.as_str(), err.as_str()), ("one\n", "two\n"), "stdout and stderr stay apart");
    let (_, out, _) = d.out(&["logs", "--timestamps", "svc"]);
    assert!(out.starts_with("20") && out.trim_end().ends_with(" one"), "{out}");
    assert_eq!(d.docker(&["ps", "--format", "{{.Names}}"]).expect("ps").trim(), "svc");
    let pid = d.docker(&["inspect", "--format", "{{.State.Pid}}", "svc"]).expect("inspect");
    let pid: i32 = pid.trim().parse().expect("pid");
    assert!(pid > 1 && std::path::Path::new(&format!("/proc/{pid}")).exists());

    // A running container cannot be removed without -f.
    let (_, _, err) = d.out(&["rm", "svc"]);
    assert!(err.contains("cannot remove a running container"), "{err}");

    // logs -f follows new output and ends when the container exits.
    d.docker(&["run", "-d", "--name", "ticker", "busybox", "sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.3; done"])
        .expect("ticker");
    let start = Instant::now();
    assert_eq!(d.docker(&["logs", "-f", "ticker"]).expect("logs -f"), "1\n2\n3\n");
    assert!(start.elapsed() < Duration::from_secs(10));
    d.docker(&["rm", "ticker"]).expect("rm ticker");

    // stop: sh as PID 1 ignores SIGTERM, so SIGKILL after the timeout: 137.
    let start = Instant::now();
    d.docker(&["stop", "-t", "1", "svc"]).expect("stop");
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(
        d.docker(&["inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", "svc"]).expect("inspect").trim(),
        "exited 137"
    );
    let (code, _, _) = d.out(&["stop", "svc"]);
    assert_eq!(code, Some(0), "stopping a stopped container is fine (304)");
    let (_, _, err) = d.out(&["kill", "svc"]);
    assert!(err.contains("is not running"), "{err}");

    // start again; kill with a signal; wait reports it.
    d.docker(&["start", "svc"]).expect("start");
    assert_eq!(d.docker(&["inspect", "--format", "{{.State.Running}}", "svc"]).expect("inspect").trim(), "true");
    let waiter = d.docker_cmd(&["wait", "svc"]).stdout(std::process::Stdio::piped()).spawn().expect("wait");
    std::thread::sleep(Duration::from_millis(300));
    d.docker(&["kill", "-s", "KILL", "svc"]).expect("kill");
    let out = waiter.wait_with_output().expect("wait");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "137", "a wait started before the kill reports it");
    assert_eq!(
        d.docker(&["wait", "svc"]).expect("wait").trim(),
        "137",
        "a wait on a stopped container returns at once"
    );
    let (_, _, err) = d.out(&["kill", "-s", "NOPE", "svc"]);
    assert!(err.contains("Invalid signal") || err.contains("is not running"), "{err}");

    // restart; rm -f of a running container leaves nothing behind.
    d.docker(&["restart", "-t", "0", "svc"]).expect("restart");
    assert_eq!(d.docker(&["inspect", "--format", "{{.State.Status}}", "svc"]).expect("inspect").trim(), "running");
    d.docker(&["rm", "-f", "svc"]).expect("rm -f");
    assert_eq!(d.docker(&["ps", "-a", "-q"]).expect("ps").trim(), "");
    wait_until("shims gone", || shims_of(&d) == 0);
    assert_eq!(overlay_mounts_of(&d), 0);
    assert!(!d.data_root().join("runtime/containers").join(&id).exists());
}

#[test]
fn containers_outlive_a_crashed_berthd() {
    let mut d = Daemon::with_busybox();
    d.docker(&[
        "run",
        "-d",
        "--name",
        "long",
        "busybox",
        "sh",
        "-c",
        "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done",
    ])
    .expect("run long");
    d.docker(&["run", "-d", "--name", "short", "busybox", "sh", "-c", "sleep 1; exit 7"]).expect("run short");
    wait_until("ticks", || d.docker(&["logs", "long"]).map(|o| o.contains("tick 1")).unwrap_or(false));
    let pid = d.docker(&["inspect", "--format", "{{.State.Pid}}", "long"]).expect("pid").trim().to_string();

    d.kill9().expect("kill -9 berthd");
    let _ = std::fs::remove_file(d.sock());
    std::thread::sleep(Duration::from_millis(1500));
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists(), "the container kept running without berthd");
    d.restart().expect("start again");

    assert_eq!(
        d.docker(&["inspect", "--format", "{{.State.Status}} {{.State.Pid}}", "long"]).expect("inspect").trim(),
        format!("running {pid}")
    );
    wait_until("short's exit recorded", || {
        d.docker(&["inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", "short"])
            .map(|o| o.trim() == "exited 7")
            .unwrap_or(false)
    });
    let before = d.docker(&["logs", "long"]).expect("logs").lines().count();
    wait_until("still logging", || {
        d.docker(&["logs", "long"]).map(|o| o.lines().count() > before + 2).unwrap_or(false)
    });
    d.docker(&["stop", "-t", "1", "long"]).expect("stop");
    assert_eq!(d.docker(&["inspect", "--format", "{{.State.ExitCode}}", "long"]).expect("inspect").trim(), "137");
    d.docker(&["rm", "long", "short"]).expect("rm");
    wait_until("shims gone", || shims_of(&d) == 0);
}

#[test]
fn cgroup_limits_are_enforced() {
    let d = Daemon::with_busybox();
    // Memory: a shell that holds 64 MB in a variable is OOM-killed under a 16 MB limit.
    let (code, out, _) = d.out(&[
        "run",
        "--name",
        "hog",
        "--memory",
        "16m",
        "--memory-swap",
        "16m",
        "busybox",
        "sh",
        "-c",
        "x=$(head -c 64000000 /dev/zero | tr '\\0' a); echo survived",
    ]);
    assert_eq!(code, Some(137), "{out}");
    assert_eq!(
        d.docker(&["inspect", "--format", "{{.State.OOMKilled}} {{.State.ExitCode}}", "hog"]).expect("inspect").trim(),
        "true 137"
    );
    // Pids: forks beyond the limit fail.
    let (_, _, err) = d.out(&[
        "run",
        "--rm",
        "--pids-limit",
        "5",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 5 & done; echo done",
    ]);
    assert!(err.contains("fork"), "forks past pids.max fail: {err:?}");
    // CPU: the quota is in the container's cgroup, and a plain container is not OOM-killed.
    let id = d
        .docker(&["run", "-d", "--cpus", "1.5", "--cpu-shares", "512", "busybox", "sleep", "30"])
        .expect("run")
        .trim()
        .to_string();
    let root = std::path::Path::new("/sys/fs/cgroup");
    let quota = if root.join("cgroup.controllers").exists() {
        std::fs::read_to_string(root.join("berth").join(&id).join("cpu.max")).expect("cpu.max")
    } else {
        std::fs::read_to_string(root.join("cpu/berth").join(&id).join("cpu.cfs_quota_us")).expect("quota")
    };
    assert!(quota.starts_with("150000"), "{quota}");
    // ... and the container reads its own limits in its /sys/fs/cgroup (as
    // runc shows them: read-only, its own directories).
    let file = if root.join("cgroup.controllers").exists() { "cpu.max" } else { "cpu/cpu.cfs_quota_us" };
    let seen = d.docker(&["exec", &id, "cat", &format!("/sys/fs/cgroup/{file}")]).expect("inside");
    assert_eq!(seen.trim(), quota.trim(), "the container's own cgroup");
    let (code, _, _) = d.out(&["exec", &id, "sh", "-c", &format!("echo 1 > /sys/fs/cgroup/{file}")]);
    assert_ne!(code, Some(0), "read-only");
    // A privileged one manages cgroups below its own (left behind here, and
    // removed with the container's).
    let sub = if root.join("cgroup.controllers").exists() { "sub" } else { "pids/sub" };
    let made = d.docker(&[
        "run",
        "-d",
        "--privileged",
        "busybox",
        "sh",
        "-c",
        &format!("mkdir /sys/fs/cgroup/{sub} && sleep 30"),
    ]);
    let made = made.expect("privileged").trim().to_string();
    let below = if root.join("cgroup.controllers").exists() {
        root.join("berth").join(&made).join("sub")
    } else {
        root.join("pids/berth").join(&made).join("sub")
    };
    wait_until("a cgroup made inside", || below.is_dir());
    d.docker(&["rm", "-f", &made]).expect("rm");
    wait_until("removed with the container's", || !below.exists() && !below.parent().is_some_and(|p| p.exists()));
    d.docker(&["rm", "-f", &id]).expect("rm");
    wait_until("cgroups removed", || {
        !root.join("cpu/berth").join(&id).exists() && !root.join("berth").join(&id).exists()
    });
    d.docker(&["rm", "hog"]).expect("rm hog");
    assert!(!root.join("memory/berth").join("hog").exists());
}

#[test]
fn logs_are_bounded_and_rotated() {
    let d = Daemon::with_busybox();
    // 2000 lines of ~100 bytes into a 20k log with 2 files: the oldest output is gone.
    let script = "i=0; while [ $i -lt 2000 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done";
    let (code, _, _) = d.out(&[
        "run",
        "--name",
        "chatty",
        "--log-opt",
        "max-size=20k",
        "--log-opt",
        "max-file=2",
        "busybox",
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(code, Some(0));
    let id = d.docker(&["inspect", "--format", "{{.Id}}", "chatty"]).expect("id").trim().to_string();
    let dir = d.data_root().join("runtime/containers").join(&id);
    let total: u64 = std::fs::read_dir(&dir)
        .expect("bundle")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("container.log"))
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum();
    assert!(total <= 2 * 20 * 1024 + 200, "logs stay bounded: {total} bytes");
    let logs = d.docker(&["logs", "chatty"]).expect("logs");
    assert!(logs.ends_with("line-1999-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n"), "the newest output is kept");
    assert!(!logs.contains("line-0-"), "the oldest output was rotated away");
    let lines: Vec<&str> = logs.lines().collect();
    let first: u32 = lines[0].split('-').nth(1).and_then(|n| n.parse().ok()).expect("number");
    assert_eq!(lines.len() as u32, 2000 - first, "what is kept is contiguous and in order");
    let (_, tail, _) = d.out(&["logs", "--tail", "2", "chatty"]);
    assert_eq!(tail.lines().count(), 2);
    let (_, _, err) = d.out(&["run", "--rm", "--log-opt", "max-size=lots", "busybox", "true"]);
    assert!(err.contains("invalid max-size"), "{err}");
}

#[test]
fn daemon_log_opts_are_the_default_for_containers() {
    let d = Daemon::start(&["--log-opt", "max-size=8k", "--log-opt", "max-file=2"]).expect("start");
    d.load(&docker_save_tar(&[TestImage::busybox(&["busybox:latest"])], false)).expect("load");
    let script = "i=0; while [ $i -lt 1000 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done";
    assert_eq!(d.out(&["run", "--name", "chatty", "busybox", "sh", "-c", script]).0, Some(0));
    let cfg = d.docker(&["inspect", "--format", "{{json .HostConfig.LogConfig}}", "chatty"]).expect("inspect");
    let cfg: serde_json::Value = serde_json::from_str(&cfg).expect("json");
    assert_eq!(cfg["Type"], "json-file");
    assert_eq!(cfg["Config"]["max-size"], "8k", "{cfg}");
    let logs = d.docker(&["logs", "chatty"]).expect("logs");
    assert!(!logs.contains("line-0-") && logs.ends_with("line-999-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n"));
    // A container's own options win.
    d.docker(&["run", "--name", "own", "--log-opt", "max-size=1m", "busybox", "true"]).expect("run");
    let own = d.docker(&["inspect", "--format", "{{index .HostConfig.LogConfig.Config \"max-size\"}}", "own"]);
    assert_eq!(own.expect("inspect").trim(), "1m");
    // A bad daemon option stops berthd before it serves.
    assert!(Daemon::start(&["--log-opt", "max-size=lots"]).is_err());
}

#[test]
fn removing_fifty_running_containers_leaves_nothing() {
    let d = Daemon::with_busybox();
    let mut ids = Vec::new();
    for i in 0..50 {
        let id = d
            .docker(&["run", "-d", "--name", &format!("c{i}"), "--memory", "32m", "busybox", "sleep", "300"])
            .expect("run -d");
        ids.push(id.trim().to_string());
    }
    assert_eq!(d.docker(&["ps", "-q"]).expect("ps").lines().count(), 50);
    assert_eq!(shims_of(&d), 50);
    let first_veth = d.veth_of(&ids[0], "bridge").expect("veth name");
    assert!(std::fs::metadata(format!("/sys/class/net/{first_veth}")).is_ok(), "{first_veth} while running");
    let mut args = vec!["rm", "-f"];
    args.extend(ids.iter().map(String::as_str));
    d.docker(&args).expect("rm -f all");
    assert_eq!(d.docker(&["ps", "-a", "-q"]).expect("ps").trim(), "");
    wait_until("all shims gone", || shims_of(&d) == 0);
    assert_eq!(overlay_mounts_of(&d), 0);
    let cg = std::path::Path::new("/sys/fs/cgroup");
    wait_until("no cgroup left behind", || {
        ids.iter().all(|id| !cg.join("memory/berth").join(id).exists() && !cg.join("berth").join(id).exists())
    });
    let bundles = std::fs::read_dir(d.data_root().join("runtime/containers")).map(|r| r.count()).unwrap_or(0);
    assert_eq!(bundles, 0);
    // No veth left, and the bridge's addresses are free again: the next container
    // gets the first one.
    for id in &ids {
        let veth = d.veth_of(id, "bridge").expect("veth name");
        assert!(std::fs::metadata(format!("/sys/class/net/{veth}")).is_err(), "{veth} of {id} left behind");
    }
    let net = d.docker(&["network", "inspect", "--format", "{{(index .IPAM.Config 0).Gateway}}", "bridge"]);
    let gateway: std::net::Ipv4Addr = net.expect("gateway").trim().parse().expect("ip");
    let first = std::net::Ipv4Addr::from(u32::from(gateway) + 1);
    let ip = d.docker(&["run", "--rm", "busybox", "ip", "-4", "-o", "addr", "show", "eth0"]).expect("run");
    assert!(ip.contains(&format!("inet {first}/")), "{ip}");
}

#[test]
fn container_prune_removes_stopped_ones() {
    let d = Daemon::with_busybox();
    d.docker(&["create", "--name", "made", "busybox", "true"]).expect("create");
    d.docker(&["run", "--name", "done", "--label", "keep=yes", "busybox", "true"]).expect("run");
    d.docker(&["run", "--name", "gone", "busybox", "true"]).expect("run");
    d.docker(&["run", "-d", "--name", "alive", "busybox", "sleep", "300"]).expect("run -d");
    let out = d.docker(&["container", "prune", "-f", "--filter", "label!=keep=yes"]).expect("prune");
    assert!(out.contains("Total reclaimed space"), "{out}");
    let mut left: Vec<String> =
        d.docker(&["ps", "-a", "--format", "{{.Names}}"]).expect("ps").lines().map(str::to_string).collect();
    left.sort();
    assert_eq!(left, vec!["alive", "done"]);
    d.docker(&["rm", "-f", "alive"]).expect("rm");
}

#[test]
fn sysctls_as_dockerd_sets_and_allows_them() {
    let d = Daemon::with_busybox();
    // dockerd 20.10's defaults in a network namespace of its own: a non-root
    // process binds a port below 1024.
    let out = d.docker(&[
        "run",
        "--rm",
        "-u",
        "1000",
        "busybox",
        "sh",
        "-c",
        "cat /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/sys/net/ipv4/ping_group_range; \
         (nc -l -p 80 >/dev/null 2>&1 & p=$!; sleep 0.3; kill $p && echo bound)",
    ]);
    let out = out.expect("run -u 1000");
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["0", "0", "2147483647", "bound"], "{out}");
    let set = d.docker(&[
        "run",
        "--rm",
        "--sysctl",
        "net.ipv4.tcp_keepalive_time=120",
        "--sysctl",
        "kernel.shmmni=1024",
        "busybox",
        "cat",
        "/proc/sys/net/ipv4/tcp_keepalive_time",
        "/proc/sys/kernel/shmmni",
    ]);
    assert_eq!(set.expect("--sysctl").split_whitespace().collect::<Vec<_>>(), ["120", "1024"]);
    let host = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_keepalive_time").expect("host value");
    assert_ne!(host.trim(), "120", "the host's own value is untouched");
    // The CLI checks names itself; other clients reach the daemon's check.
    for (body, want) in [
        (
            r#"{"Image":"busybox","HostConfig":{"Sysctls":{"vm.swappiness":"1"}}}"#,
            "sysctl \"vm.swappiness\" is not in a separate kernel namespace",
        ),
        (
            r#"{"Image":"busybox","HostConfig":{"NetworkMode":"host","Sysctls":{"net.ipv4.ip_forward":"1"}}}"#,
            "not allowed in host network namespace",
        ),
    ] {
        let (status, _, reply) =
            berth_tests::raw_http(&d.sock(), "POST", "/containers/create", body.as_bytes()).expect("create");
        let reply: serde_json::Value = serde_json::from_slice(&reply).expect("a JSON error");
        assert_eq!(status, 400, "{reply}");
        assert!(reply["message"].as_str().is_some_and(|m| m.contains(want)), "{reply}");
    }
    let hc = d.docker(&["create", "--sysctl", "net.core.somaxconn=512", "busybox"]).expect("create");
    let shown = d.docker(&["inspect", "-f", "{{json .HostConfig.Sysctls}}", hc.trim()]).expect("inspect");
    assert_eq!(shown.trim(), r#"{"net.core.somaxconn":"512"}"#);
}

#[test]
fn dockerds_answers_to_details_of_the_container_api() {
    let d = Daemon::with_busybox();
    let post = |path: &str, body: &str| {
        let (status, _, reply) = berth_tests::raw_http(&d.sock(), "POST", path, body.as_bytes()).expect("post");
        let msg = serde_json::from_slice::<serde_json::Value>(&reply)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_default();
        (status, msg)
    };
    for (body, want) in [
        (r#"{"Image":"busybox","Env":["=foo"]}"#, "invalid environment variable: =foo"),
        (r#"{"Image":"busybox","Env":["OK=1",""]}"#, "invalid environment variable: "),
        (r#"{"Image":"busybox","HostConfig":{"Tmpfs":{"/":""}}}"#, "destination can't be '/'"),
        (r#"{"Image":"busybox","HostConfig":{"Tmpfs":{"rel/dir":""}}}"#, "mount path must be absolute"),
        (
            r#"{"Image":"busybox","HostConfig":{"Mounts":[{"Type":"tmpfs","Target":"x"}]}}"#,
            "mount path must be absolute",
        ),
    ] {
        let (status, msg) = post("/containers/create", body);
        assert_eq!((status, msg.contains(want)), (400, true), "{body}: {msg}");
    }
    // Resizing a container without a TTY is not an error (dockerd).
    d.docker(&["run", "-d", "--name", "notty", "busybox", "sleep", "300"]).expect("run -d");
    let (status, msg) = post("/containers/notty/resize?h=40&w=100", "");
    assert_eq!(status, 200, "{msg}");
    // An exec's environment too.
    let (status, msg) = post("/containers/notty/exec", r#"{"Cmd":["true"],"Env":["=x"]}"#);
    assert_eq!((status, msg.as_str()), (400, "invalid environment variable: =x"));
    // A platform the local image is not: 404 with dockerd's words.
    let (status, msg) = post("/containers/create?platform=linux/arm64", r#"{"Image":"busybox"}"#);
    assert_eq!(status, 404, "{msg}");
    assert!(msg.contains("was found but does not match the specified platform: wanted linux/arm64"), "{msg}");
    let arch = if cfg!(target_arch = "x86_64") { "amd64" } else { "arm64" };
    let (status, msg) = post(&format!("/containers/create?platform=linux/{arch}"), r#"{"Image":"busybox"}"#);
    assert_eq!(status, 201, "{msg}");
    // The network list answers with a trailing slash as well.
    let (status, _, body) = berth_tests::raw_http(&d.sock(), "GET", "/networks/", b"").expect("get");
    let list: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(status, 200);
    assert!(list.as_array().is_some_and(|l| l.iter().any(|n| n["Name"] == "bridge")), "{list}");
}

#[test]
fn domainname_and_the_clients_masked_and_readonly_paths() {
    let d = Daemon::with_busybox();
    let out =
        d.docker(&["run", "--rm", "--domainname", "corp.example", "busybox", "cat", "/proc/sys/kernel/domainname"]);
    assert_eq!(out.expect("--domainname").trim(), "corp.example");
    // MaskedPaths and ReadonlyPaths as a client gives them replace dockerd's lists.
    let body = r#"{"Image":"busybox","Cmd":["sh","-c","cat /proc/timer_list | head -c 5; echo; touch /etc/hostname 2>&1 || echo read-only"],
        "HostConfig":{"MaskedPaths":[],"ReadonlyPaths":["/etc/hostname"]}}"#;
    let (status, _, reply) =
        berth_tests::raw_http(&d.sock(), "POST", "/containers/create?name=paths", body.as_bytes()).expect("create");
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&reply));
    d.docker(&["start", "paths"]).expect("start");
    d.docker(&["wait", "paths"]).expect("wait");
    let logs = d.docker(&["logs", "paths"]).expect("logs");
    let mut lines = logs.lines();
    assert!(lines.next().is_some_and(|l| !l.trim().is_empty()), "/proc/timer_list is not masked: {logs}");
    assert!(logs.contains("read-only") || logs.contains("Read-only"), "{logs}");
    // Without them, dockerd's defaults hold.
    let masked = d.docker(&["run", "--rm", "busybox", "sh", "-c", "wc -c < /proc/timer_list"]).expect("run");
    assert_eq!(masked.trim(), "0", "masked by default");
}

#[test]
fn network_and_ipc_namespaces_shared_as_dockerd_shares_them() {
    let d = Daemon::with_busybox();
    let ns = |args: &[&str], which: &str| {
        let mut a = vec!["run", "--rm"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["busybox", "readlink", which]);
        d.docker(&a).expect("run").trim().to_string()
    };
    d.docker(&[
        "run",
        "-d",
        "--name",
        "donor",
        "--ipc",
        "shareable",
        "busybox",
        "sh",
        "-c",
        "while true; do echo from-donor | nc -l -p 7070; done",
    ])
    .expect("donor");
    let donor_pid = d.docker(&["inspect", "-f", "{{.State.Pid}}", "donor"]).expect("pid");
    let link = |pid: &str, which: &str| {
        std::fs::read_link(format!("/proc/{pid}/ns/{which}")).expect("ns").display().to_string()
    };
    let (donor_net, donor_ipc) = (link(donor_pid.trim(), "net"), link(donor_pid.trim(), "ipc"));

    // --network container: shares the donor's network namespace, loopback included.
    assert_eq!(ns(&["--network", "container:donor"], "/proc/self/ns/net"), donor_net);
    let got =
        d.docker(&["run", "--rm", "--network", "container:donor", "busybox", "nc", "-w", "3", "127.0.0.1", "7070"]);
    assert_eq!(got.expect("the donor's loopback").trim(), "from-donor");
    assert_ne!(ns(&[], "/proc/self/ns/net"), donor_net);
    // IPC: a shareable donor's namespace can be joined; the host's; a private one of its own.
    assert_eq!(ns(&["--ipc", "container:donor"], "/proc/self/ns/ipc"), donor_ipc);
    // ... and its /dev/shm too, a tmpfs on the host while the donor runs.
    d.docker(&["exec", "donor", "sh", "-c", "echo shared > /dev/shm/note"]).expect("write shm");
    let note = d.docker(&["run", "--rm", "--ipc", "container:donor", "busybox", "cat", "/dev/shm/note"]);
    assert_eq!(note.expect("the donor's /dev/shm").trim(), "shared");
    let private_shm = d.docker(&["run", "--rm", "busybox", "sh", "-c", "ls /dev/shm | wc -l"]).expect("own shm");
    assert_eq!(private_shm.trim(), "0");
    assert_eq!(ns(&["--ipc", "host"], "/proc/self/ns/ipc"), link("self", "ipc"));
    assert_ne!(ns(&["--ipc", "private"], "/proc/self/ns/ipc"), donor_ipc);
    let none = d.docker(&[
        "run",
        "--rm",
        "--ipc",
        "none",
        "busybox",
        "sh",
        "-c",
        "test -d /dev/shm && echo shm || echo no-shm",
    ]);
    assert_eq!(none.expect("ipc none").trim(), "no-shm");
    assert_eq!(d.docker(&["inspect", "-f", "{{.HostConfig.IpcMode}}", "donor"]).expect("inspect").trim(), "shareable");
    // A client that says nothing gets dockerd's default, recorded.
    let (status, _, body) =
        berth_tests::raw_http(&d.sock(), "POST", "/v1.41/containers/create?name=oldclient", br#"{"Image":"busybox"}"#)
            .expect("create");
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        d.docker(&["inspect", "-f", "{{.HostConfig.IpcMode}}", "oldclient"]).expect("inspect").trim(),
        "private"
    );

    // dockerd's refusals.
    d.docker(&["run", "-d", "--name", "private", "busybox", "sleep", "300"]).expect("private");
    let (code, _, err) = d.out(&["run", "--rm", "--ipc", "container:private", "busybox", "true"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("non-shareable"), "{err}");
    d.docker(&["create", "--name", "stopped", "busybox"]).expect("create");
    let (code, _, err) = d.out(&["run", "--rm", "--network", "container:stopped", "busybox", "true"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("cannot join network of a non running container"), "{err}");
    let (code, _, err) = d.out(&["run", "--rm", "--ipc", "bogus", "busybox", "true"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("invalid IPC mode: bogus"), "{err}");
    let donor_id = d.docker(&["inspect", "-f", "{{.Id}}", "donor"]).expect("id").trim().to_string();
    d.docker(&["rm", "-f", "donor", "private", "stopped", "oldclient"]).expect("rm");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(!mounts.contains(&donor_id), "the donor's /dev/shm is unmounted with it");
}

#[test]
fn pid_and_uts_namespaces_of_the_host_or_another_container() {
    let d = Daemon::with_busybox();
    let link = |pid: &str, which: &str| {
        std::fs::read_link(format!("/proc/{pid}/ns/{which}")).expect("ns").display().to_string()
    };
    let run = |args: &[&str]| d.docker(&[&["run", "--rm"], args].concat()).expect("run").trim().to_string();
    // --pid host: the host's PID namespace, whose processes it sees.
    assert_eq!(run(&["--pid", "host", "busybox", "readlink", "/proc/self/ns/pid"]), link("self", "pid"));
    let own = std::process::id().to_string();
    let seen = run(&["--pid", "host", "busybox", "sh", "-c", &format!("test -d /proc/{own} && echo seen")]);
    assert_eq!(seen, "seen", "the host's processes");
    assert_eq!(run(&["busybox", "sh", "-c", "echo $$"]), "1", "else PID 1 of its own");
    // --pid container:NAME: that container's, its processes in view.
    d.docker(&["run", "-d", "--name", "pidowner", "busybox", "sleep", "4242"]).expect("owner");
    let owner = d.docker(&["inspect", "-f", "{{.State.Pid}}", "pidowner"]).expect("pid");
    assert_eq!(
        run(&["--pid", "container:pidowner", "busybox", "readlink", "/proc/self/ns/pid"]),
        link(owner.trim(), "pid")
    );
    let ps = run(&["--pid", "container:pidowner", "busybox", "ps", "-o", "pid,args"]);
    assert!(ps.lines().any(|l| l.trim() == "1 sleep 4242"), "{ps}");
    assert_eq!(d.docker(&["inspect", "-f", "{{.HostConfig.PidMode}}", "pidowner"]).expect("inspect").trim(), "");
    // A process left behind by an init that was not PID 1 is ended with it.
    let orphan = "sleep 4343";
    d.docker(&["run", "--name", "leaver", "--pid", "host", "busybox", "sh", "-c", &format!("{orphan} & exit 0")])
        .expect("leaver");
    let alive = |args: &str| {
        std::fs::read_dir("/proc").into_iter().flatten().flatten().any(|e| {
            std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).replace('\0', " ").trim() == args)
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while alive(orphan) {
        assert!(std::time::Instant::now() < deadline, "the container's leftover still runs");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // --uts host: the host's name, which the container cannot set.
    let host = nix_hostname();
    assert_eq!(run(&["--uts", "host", "busybox", "hostname"]), host);
    assert_eq!(run(&["--network", "host", "busybox", "sh", "-c", "echo $HOSTNAME"]), host, "as dockerd names it");
    let (code, _, err) = d.out(&["run", "--rm", "--uts", "host", "--hostname", "x", "busybox", "true"]);
    assert!(code != Some(0) && err.contains("conflicting options: hostname and the UTS mode"), "{err}");
    for (flag, word) in [("--pid", "PID"), ("--uts", "UTS")] {
        let (status, _, body) = berth_tests::raw_http(
            &d.sock(),
            "POST",
            "/containers/create",
            format!(
                r#"{{"Image":"busybox","HostConfig":{{"{}":"bogus"}}}}"#,
                if word == "PID" { "PidMode" } else { "UTSMode" }
            )
            .as_bytes(),
        )
        .expect("create");
        assert_eq!(status, 400, "{flag}: {}", String::from_utf8_lossy(&body));
        assert!(String::from_utf8_lossy(&body).contains(&format!("invalid {word} mode: bogus")));
    }
}

fn nix_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname").trim().to_string()
}
