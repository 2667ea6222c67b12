//! `docker run --runtime runc`: the same OCI bundle made by runc instead of
//! Berth's own shim init, with Berth still the monitor: logs, attach, exec,
//! pause, stats, restart and exit codes behave as under the default runtime.
//! (crun 1.8, Debian 12's, refuses hybrid cgroup hosts such as this one, so
//! only runc is run here; both take the same path through the shim.)

use berth_tests::Daemon;

fn inspect(d: &Daemon, name: &str, format: &str) -> String {
    d.docker(&["inspect", "-f", format, name]).expect("inspect").trim().to_string()
}

fn runc_installed() {
    assert!(
        std::path::Path::new("/usr/sbin/runc").exists() || std::path::Path::new("/usr/bin/runc").exists(),
        "runc is not installed (make test-deps installs it)"
    );
}

#[test]
fn containers_run_under_runc_as_under_berths_own_runtime() {
    runc_installed();
    let d = Daemon::with_busybox();
    let info = d.docker(&["info", "--format", "{{range $k, $v := .Runtimes}}{{$k}} {{end}}| {{.DefaultRuntime}}"]);
    let info = info.expect("info");
    assert!(info.contains("berth") && info.contains("runc") && info.trim().ends_with("| berth"), "{info}");

    // A command's output and exit code.
    let out = d.docker(&["run", "--rm", "--runtime", "runc", "busybox", "sh", "-c", "echo hello; echo oops >&2"]);
    assert_eq!(out.expect("run --rm").trim(), "hello");
    let (code, _, _) = d.out(&["run", "--rm", "--runtime", "runc", "busybox", "sh", "-c", "exit 3"]);
    assert_eq!(code, Some(3));
    let (code, _, err) = d.out(&["run", "--rm", "--runtime", "runc", "busybox", "nope"]);
    assert_eq!(code, Some(127), "{err}");
    assert!(err.contains("executable file not found"), "{err}");

    // runc made it: its state is in the bundle while the container runs, and
    // the defaults hold (capabilities, seccomp, Berth's cgroups, the network).
    d.docker(&["run", "-d", "--name", "rc", "--runtime", "runc", "busybox", "sleep", "300"]).expect("run -d");
    let id = inspect(&d, "rc", "{{.Id}}");
    assert_eq!(inspect(&d, "rc", "{{.HostConfig.Runtime}} {{.State.Status}}"), "runc running");
    let state = d.data_root().join(format!("runtime/containers/{id}/oci/{id}/state.json"));
    assert!(state.exists(), "no runc state at {}", state.display());
    let status = d.docker(&["exec", "rc", "grep", "-E", "^(CapEff|Seccomp):", "/proc/1/status"]).expect("exec");
    assert!(status.contains("00000000a80425fb") && status.contains("Seccomp:\t2"), "{status}");
    let pid = inspect(&d, "rc", "{{.State.Pid}}");
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    assert!(cgroup.contains(&format!("/berth/{id}")), "{cgroup}");
    let net = d.docker(&["exec", "rc", "cat", "/proc/net/dev"]).expect("exec");
    assert!(net.contains("eth0"), "{net}");
    let (code, _, _) = d.out(&["exec", "rc", "sh", "-c", "exit 5"]);
    assert_eq!(code, Some(5));
    let fed = d.docker_with_input(&["exec", "-i", "rc", "sh", "-c", "tr a-z A-Z"], b"piped\n").expect("exec -i");
    assert_eq!(String::from_utf8_lossy(&fed.stdout).trim(), "PIPED");
    assert_eq!(d.docker(&["exec", "-u", "1234:5", "rc", "id", "-u"]).expect("exec -u").trim(), "1234");

    // Pause, stats and top read and write Berth's cgroups.
    d.docker(&["pause", "rc"]).expect("pause");
    assert_eq!(inspect(&d, "rc", "{{.State.Status}}"), "paused");
    d.docker(&["unpause", "rc"]).expect("unpause");
    let stats = d.docker(&["stats", "--no-stream", "--format", "{{.PIDs}}", "rc"]).expect("stats");
    assert_eq!(stats.trim(), "1", "{stats}");
    let top = d.docker(&["top", "rc"]).expect("top");
    assert!(top.contains("sleep 300"), "{top}");

    // A TTY comes from runc's console socket.
    let tty = d.docker(&["run", "--rm", "-t", "--runtime", "runc", "busybox", "tty"]).expect("run -t");
    assert!(tty.trim().starts_with("/dev/pts/"), "{tty}");
    let tty = d.docker(&["exec", "-t", "rc", "tty"]).expect("exec -t");
    assert!(tty.trim().starts_with("/dev/pts/"), "{tty}");

    // --init: the host's static init, bound in as dockerd binds docker-init.
    let init = d.docker(&["run", "--rm", "--init", "--runtime", "runc", "busybox", "cat", "/proc/1/cmdline"]);
    let init = init.expect("run --init").replace('\0', " ");
    assert!(init.starts_with("/sbin/docker-init -- cat"), "{init}");

    // Logs, stop, restart, removal.
    d.docker(&["run", "-d", "--name", "talk", "--runtime", "runc", "busybox", "sh", "-c", "echo said; sleep 300"])
        .expect("run -d");
    d.docker(&["stop", "-t", "1", "talk"]).expect("stop");
    assert_eq!(inspect(&d, "talk", "{{.State.Status}} {{.State.ExitCode}}"), "exited 137");
    assert_eq!(d.docker(&["logs", "talk"]).expect("logs").trim(), "said");
    d.docker(&["start", "talk"]).expect("start again under the same ID");
    assert_eq!(inspect(&d, "talk", "{{.State.Status}}"), "running");
    d.docker(&["rm", "-f", "talk", "rc"]).expect("rm -f");
    assert!(!state.exists(), "runc's state outlived the container");
    assert!(!std::path::Path::new(&format!("/sys/fs/cgroup/pids/berth/{id}")).exists(), "the cgroup is gone");
}

#[test]
fn an_unknown_runtime_is_refused_at_create() {
    let d = Daemon::with_busybox();
    let (code, _, err) = d.out(&["create", "--runtime", "nope", "busybox"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("unknown or invalid runtime name: nope"), "{err}");
    d.docker(&["create", "--name", "plain", "busybox"]).expect("create");
    assert_eq!(inspect(&d, "plain", "{{.HostConfig.Runtime}}"), "berth");
}
