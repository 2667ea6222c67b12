//! The everyday commands on a running container beyond start and stop: pause
//! and unpause, top, and kill as dockerd answers it; through the docker CLI
//! and bollard.

use berth_tests::Daemon;

fn inspect(d: &Daemon, name: &str, format: &str) -> String {
    d.docker(&["inspect", "-f", format, name]).expect("inspect").trim().to_string()
}

fn full_id(d: &Daemon, name: &str) -> String {
    inspect(d, name, "{{.Id}}")
}

/// What the kernel says of the container's freezer cgroup.
fn freezer_state(id: &str) -> String {
    let v1 = format!("/sys/fs/cgroup/freezer/berth/{id}/freezer.state");
    let v2 = format!("/sys/fs/cgroup/berth/{id}/cgroup.events");
    std::fs::read_to_string(v1)
        .map(|s| s.trim().to_string())
        .or_else(|_| {
            std::fs::read_to_string(v2).map(|e| if e.contains("frozen 1") { "FROZEN".into() } else { "THAWED".into() })
        })
        .expect("a freezer cgroup")
}

#[test]
fn pause_freezes_and_unpause_thaws_with_dockerds_answers() {
    let d = Daemon::with_busybox();
    d.docker(&["run", "-d", "--name", "box", "busybox", "sleep", "300"]).expect("run -d");
    let id = full_id(&d, "box");
    d.docker(&["pause", "box"]).expect("pause");
    assert_eq!(freezer_state(&id), "FROZEN");
    assert_eq!(inspect(&d, "box", "{{.State.Status}} {{.State.Paused}} {{.State.Running}}"), "paused true true");
    let ps = d.docker(&["ps", "--format", "{{.Names}} {{.Status}}"]).expect("ps");
    assert!(ps.contains("box Up ") && ps.contains("(Paused)"), "{ps}");
    let paused = d.docker(&["ps", "--filter", "status=paused", "-q"]).expect("ps paused");
    assert_eq!(paused.trim().len(), 12, "{paused}");

    // What dockerd refuses on a paused container.
    let (code, _, err) = d.out(&["pause", "box"]);
    assert_ne!(code, Some(0));
    assert!(err.contains(&format!("Container {id} is already paused")), "{err}");
    let (code, _, err) = d.out(&["exec", "box", "true"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("is paused, unpause the container before exec"), "{err}");

    d.docker(&["unpause", "box"]).expect("unpause");
    assert_eq!(freezer_state(&id), "THAWED");
    assert_eq!(inspect(&d, "box", "{{.State.Status}} {{.State.Paused}}"), "running false");
    assert_eq!(d.docker(&["exec", "box", "echo", "alive"]).expect("exec").trim(), "alive");
    let (code, _, err) = d.out(&["unpause", "box"]);
    assert_ne!(code, Some(0));
    assert!(err.contains(&format!("Container {id} is not paused")), "{err}");

    // Stop and kill thaw a paused container first.
    d.docker(&["pause", "box"]).expect("pause");
    d.docker(&["stop", "-t", "1", "box"]).expect("stop a paused container");
    assert_eq!(inspect(&d, "box", "{{.State.Status}} {{.State.Paused}}"), "exited false");
    let (code, _, err) = d.out(&["pause", "box"]);
    assert_ne!(code, Some(0));
    assert!(err.contains(&format!("Container {id} is not running")), "{err}");

    d.docker(&["run", "-d", "--name", "frozen", "busybox", "sleep", "300"]).expect("run -d");
    d.docker(&["pause", "frozen"]).expect("pause");
    d.docker(&["kill", "frozen"]).expect("kill a paused container");
    assert_eq!(inspect(&d, "frozen", "{{.State.Status}} {{.State.ExitCode}}"), "exited 137");
}

#[test]
fn kill_returns_once_the_exit_is_recorded() {
    let d = Daemon::with_busybox();
    for i in 0..3 {
        let name = format!("k{i}");
        d.docker(&["run", "-d", "--name", &name, "busybox", "sleep", "300"]).expect("run -d");
        d.docker(&["kill", &name]).expect("kill");
        // No wait in between: the answer to kill means it is recorded.
        assert_eq!(inspect(&d, &name, "{{.State.Running}} {{.State.ExitCode}} {{.State.Status}}"), "false 137 exited");
    }
    // Another signal only signals.
    d.docker(&["run", "-d", "--name", "usr", "busybox", "sh", "-c", "trap 'exit 3' USR1; while :; do sleep 1; done"])
        .expect("run -d");
    d.docker(&["kill", "-s", "USR1", "usr"]).expect("kill -s USR1");
    assert_eq!(d.docker(&["wait", "usr"]).expect("wait").trim(), "3");
    let (code, _, err) = d.out(&["kill", "usr"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("is not running"), "{err}");
}

#[test]
fn top_lists_the_containers_processes_as_seen_inside() {
    let d = Daemon::with_busybox();
    d.docker(&["run", "-d", "--name", "box", "busybox", "sh", "-c", "sleep 301 & sleep 302"]).expect("run -d");
    d.docker(&["exec", "-d", "-u", "nobody", "box", "sleep", "303"]).expect("exec -d");
    // The detached exec starts in the background; give it a moment to appear.
    let mut out = String::new();
    for _ in 0..50 {
        out = d.docker(&["top", "box"]).expect("top");
        if out.contains("sleep 303") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(header, ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]);
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    let row = |cmd: &str| {
        rows.iter().find(|r| r.join(" ").ends_with(cmd)).unwrap_or_else(|| panic!("no {cmd} in {out}")).clone()
    };
    // (busybox's sh executes its last command in place: PID 1 is that sleep.)
    let init = row("sleep 302");
    assert_eq!((init[0], init[1], init[2]), ("root", "1", "0"), "PID 1 inside, no parent inside: {out}");
    let child = row("sleep 301");
    assert_eq!(child[2], "1", "the child of the container's PID 1: {out}");
    let exec = row("sleep 303");
    assert_eq!(exec[0], "nobody", "the user named as the container names it: {out}");
    assert!(exec[1].parse::<u32>().expect("pid") < 100, "a PID of the container's namespace: {out}");
    assert_eq!(rows.len(), 3, "the container's processes only: {out}");

    // ps options are honoured.
    let aux = d.docker(&["top", "box", "aux"]).expect("top aux");
    let titles: Vec<&str> = aux.lines().next().expect("header").split_whitespace().collect();
    assert_eq!(titles.first(), Some(&"USER"));
    assert!(titles.contains(&"%MEM") && titles.last() == Some(&"COMMAND"), "{aux}");
    let (code, _, err) = d.out(&["top", "box", "-o", "comm"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("Couldn't find PID field in ps output"), "{err}");

    d.docker(&["kill", "box"]).expect("kill");
    let (code, _, err) = d.out(&["top", "box"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("is not running"), "{err}");
}

#[tokio::test]
async fn bollard_pauses_and_tops() {
    let d = Daemon::with_busybox();
    d.docker(&["run", "-d", "--name", "box", "busybox", "sleep", "300"]).expect("run -d");
    let client = bollard::Docker::connect_with_unix(&d.host, 30, bollard::API_DEFAULT_VERSION).expect("connect");
    client.pause_container("box").await.expect("pause");
    let info = client
        .inspect_container("box", None::<bollard::query_parameters::InspectContainerOptions>)
        .await
        .expect("inspect");
    let state = info.state.expect("state");
    assert_eq!(state.paused, Some(true));
    assert_eq!(state.status, Some(bollard::models::ContainerStateStatusEnum::PAUSED));
    client.unpause_container("box").await.expect("unpause");
    let top = client
        .top_processes("box", Some(bollard::query_parameters::TopOptions { ps_args: "-ef".into() }))
        .await
        .expect("top");
    let titles = top.titles.expect("titles");
    let processes = top.processes.expect("processes");
    let pid_at = titles.iter().position(|t| t == "PID").expect("PID column");
    assert_eq!(processes.len(), 1, "{processes:?}");
    assert_eq!(processes[0][pid_at], "1");
    let err = client.pause_container("nope").await.expect_err("no such container");
    assert!(matches!(err, bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }), "{err:?}");
}

fn stats_doc(d: &Daemon, path: &str) -> serde_json::Value {
    let (status, _, body) = berth_tests::raw_http(&d.sock(), "GET", path, b"").expect("stats");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).expect("stats JSON")
}

#[test]
fn stats_report_what_the_cli_shows() {
    let d = Daemon::with_busybox();
    // Busy for a while, some network traffic, a memory limit.
    let script = "gw=$(ip route | awk '/default/ {print $3}'); ping -c 2 -W 1 $gw >/dev/null; \
                  end=$(( $(date +%s) + 20 )); while [ $(date +%s) -lt $end ]; do :; done; sleep 300";
    d.docker(&["run", "-d", "--name", "busy", "--memory", "64m", "busybox", "sh", "-c", script]).expect("run -d");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let out = d
        .docker(&[
            "stats",
            "--no-stream",
            "--format",
            "{{.Name}}|{{.CPUPerc}}|{{.MemUsage}}|{{.NetIO}}|{{.BlockIO}}|{{.PIDs}}",
            "busy",
        ])
        .expect("stats --no-stream");
    let f: Vec<&str> = out.trim().split('|').collect();
    assert_eq!(f.len(), 6, "{out}");
    assert_eq!(f[0], "busy");
    let cpu: f64 = f[1].trim_end_matches('%').parse().expect("CPU %");
    assert!(cpu > 20.0, "a busy loop: {out}");
    assert!(f[2].ends_with(" / 64MiB") && !f[2].starts_with("0B"), "memory against the limit: {out}");
    assert!(!f[3].starts_with("0B /"), "the pings were received: {out}");
    assert!(f[4].contains(" / "), "{out}");
    assert!(f[5].parse::<u32>().expect("PIDs") >= 1, "{out}");

    // The document: both samples, the host's CPU time, the container's interfaces.
    let doc = stats_doc(&d, "/containers/busy/stats?stream=false");
    assert_eq!(doc["name"], "/busy");
    assert!(doc["cpu_stats"]["system_cpu_usage"].as_u64().unwrap_or(0) > 0, "{doc}");
    assert!(doc["precpu_stats"]["system_cpu_usage"].as_u64().unwrap_or(0) > 0, "primed: {doc}");
    assert!(doc["cpu_stats"]["online_cpus"].as_u64().unwrap_or(0) >= 1, "{doc}");
    assert_eq!(doc["memory_stats"]["limit"], 64 << 20);
    assert!(doc["memory_stats"]["stats"].is_object(), "{doc}");
    assert!(doc["networks"]["eth0"]["rx_packets"].as_u64().unwrap_or(0) > 0, "{doc}");
    assert!(doc["networks"].get("lo").is_none(), "{doc}");
    assert!(doc["pids_stats"]["current"].as_u64().unwrap_or(0) >= 1, "{doc}");
    let once = stats_doc(&d, "/containers/busy/stats?stream=false&one-shot=true");
    assert!(once["precpu_stats"].get("system_cpu_usage").is_none(), "one-shot is not primed: {once}");
    let (status, _, _) =
        berth_tests::raw_http(&d.sock(), "GET", "/containers/busy/stats?stream=true&one-shot=true", b"").expect("bad");
    assert_eq!(status, 400);

    // A stopped container: zeros, as dockerd.
    d.docker(&["create", "--name", "idle", "busybox", "true"]).expect("create");
    let idle = stats_doc(&d, "/containers/idle/stats?stream=false");
    assert_eq!(idle["read"], "0001-01-01T00:00:00Z");
    let out =
        d.docker(&["stats", "--no-stream", "--format", "{{.CPUPerc}} {{.MemUsage}}", "idle"]).expect("stats idle");
    assert_eq!(out.trim(), "0.00% 0B / 0B");
    let (status, _, _) =
        berth_tests::raw_http(&d.sock(), "GET", "/containers/nope/stats?stream=false", b"").expect("404");
    assert_eq!(status, 404);
}

#[tokio::test]
async fn bollard_streams_stats_a_second_apart() {
    use futures::StreamExt;
    let d = Daemon::with_busybox();
    d.docker(&["run", "-d", "--name", "box", "busybox", "sleep", "300"]).expect("run -d");
    let client = bollard::Docker::connect_with_unix(&d.host, 30, bollard::API_DEFAULT_VERSION).expect("connect");
    let options = bollard::query_parameters::StatsOptions { stream: true, one_shot: false };
    let samples: Vec<_> = client.stats("box", Some(options)).take(3).collect().await;
    let samples: Vec<_> = samples.into_iter().map(|s| s.expect("a sample")).collect();
    assert_eq!(samples.len(), 3);
    for pair in samples.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let total = |c: &Option<bollard::models::ContainerCpuStats>| {
            c.as_ref().and_then(|c| c.cpu_usage.as_ref()).and_then(|u| u.total_usage)
        };
        assert_eq!(total(&b.precpu_stats), total(&a.cpu_stats), "each carries the one before");
        assert_eq!(b.preread, a.read);
        assert_ne!(b.read, a.read);
    }
}

/// A cgroup v1 controller file of container `id` (or the v2 equivalent).
fn cgroup_value(id: &str, v1: &str, v2: &str) -> String {
    std::fs::read_to_string(format!("/sys/fs/cgroup/{v1}").replace("{id}", id))
        .or_else(|_| std::fs::read_to_string(format!("/sys/fs/cgroup/berth/{id}/{v2}")))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[test]
fn update_changes_limits_live_and_keeps_them() {
    let d = Daemon::with_busybox();
    d.docker(&["run", "-d", "--name", "box", "--memory", "64m", "busybox", "sleep", "300"]).expect("run -d");
    let id = full_id(&d, "box");
    d.docker(&[
        "update",
        "--memory",
        "96m",
        "--memory-swap",
        "192m",
        "--cpus",
        "0.5",
        "--pids-limit",
        "40",
        "--cpu-shares",
        "512",
        "--restart",
        "on-failure:3",
        "box",
    ])
    .expect("update");
    // Live, in the kernel.
    assert_eq!(cgroup_value(&id, "memory/berth/{id}/memory.limit_in_bytes", "memory.max"), (96u64 << 20).to_string());
    assert_eq!(cgroup_value(&id, "pids/berth/{id}/pids.max", "pids.max"), "40");
    assert_eq!(cgroup_value(&id, "cpu/berth/{id}/cpu.cfs_quota_us", "cpu.max").split(' ').next(), Some("50000"));
    assert_eq!(cgroup_value(&id, "cpu/berth/{id}/cpu.shares", "cpu.weight"), "512");
    // Shown in inspect, and kept for the next start.
    let shown = "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}} {{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}";
    let want = format!("{} {} 500000000 40 on-failure:3", 96u64 << 20, 192u64 << 20);
    assert_eq!(inspect(&d, "box", shown), want);
    d.docker(&["restart", "-t", "0", "box"]).expect("restart");
    assert_eq!(cgroup_value(&id, "pids/berth/{id}/pids.max", "pids.max"), "40", "applied at the next start");
    assert_eq!(inspect(&d, "box", shown), want);

    // A stopped container takes updates too.
    d.docker(&["stop", "-t", "0", "box"]).expect("stop");
    d.docker(&["update", "--memory", "128m", "--memory-swap", "256m", "box"]).expect("update stopped");
    assert_eq!(inspect(&d, "box", "{{.HostConfig.Memory}}"), (128u64 << 20).to_string());

    // dockerd's refusals.
    let (code, _, err) = d.out(&["update", "--memory", "512m", "box"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("Memory limit should be smaller than already set memoryswap limit"), "{err}");
    let (code, _, err) = d.out(&["update", "--restart", "sometimes", "box"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("unknown policy 'sometimes'"), "{err}");
    // Below what the container uses: the kernel says no, and nothing is stored.
    d.docker(&["start", "box"]).expect("start");
    d.docker(&["exec", "-d", "box", "sh", "-c", "head -c 50m /dev/zero > /dev/shm/fill; sleep 300"]).expect("fill");
    std::thread::sleep(std::time::Duration::from_millis(800));
    let (code, _, err) = d.out(&["update", "--memory", "8m", "--memory-swap", "8m", "box"]);
    assert_ne!(code, Some(0), "memory below usage");
    assert!(err.contains("Cannot update container"), "{err}");
    assert_eq!(inspect(&d, "box", "{{.HostConfig.Memory}}"), (128u64 << 20).to_string());
    let (code, _, _) = d.out(&["update", "--memory", "64m", "nope"]);
    assert_ne!(code, Some(0));
}

#[test]
fn log_drivers_as_dockerd_offers_them() {
    let d = Daemon::with_busybox();
    // none: the output reaches an attached client, and nothing is kept.
    let out = d.docker(&["run", "--name", "quiet", "--log-driver", "none", "busybox", "echo", "hi"]).expect("run");
    assert_eq!(out.trim(), "hi");
    let (code, _, err) = d.out(&["logs", "quiet"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("configured logging driver does not support reading"), "{err}");
    // local: read back as json-file is.
    d.docker(&[
        "run",
        "--name",
        "kept",
        "--log-driver",
        "local",
        "--log-opt",
        "max-size=1m",
        "busybox",
        "echo",
        "hello",
    ])
    .expect("run local");
    assert_eq!(d.docker(&["logs", "kept"]).expect("logs").trim(), "hello");
    assert_eq!(
        d.docker(&["inspect", "-f", "{{.HostConfig.LogConfig.Type}}", "kept"]).expect("inspect").trim(),
        "local"
    );
    // Refused at create, with dockerd's words where dockerd has them.
    for (args, want) in [
        (vec!["--log-driver", "bogus"], "logger: no log driver named 'bogus' is registered"),
        (vec!["--log-driver", "syslog"], "log driver 'syslog' is not supported by Berth"),
        (vec!["--log-opt", "nope=1"], "unknown log opt 'nope' for json-file log driver"),
        (vec!["--log-driver", "local", "--log-opt", "tag=x"], "unknown log opt 'tag' for local log driver"),
    ] {
        let mut full = vec!["create"];
        full.extend(args);
        full.push("busybox");
        let (code, _, err) = d.out(&full);
        assert_ne!(code, Some(0), "{full:?}");
        assert!(err.contains(want), "{full:?}: {err}");
    }
}

#[test]
fn restart_is_an_event_and_system_prune_sweeps() {
    let d = Daemon::with_busybox();
    let since = berth_tests::unix_time(-2);
    d.docker(&["run", "-d", "--name", "keep", "busybox", "sleep", "300"]).expect("run");
    let pid = inspect(&d, "keep", "{{.State.Pid}}");
    d.docker(&["restart", "-t", "0", "keep"]).expect("restart");
    assert_ne!(inspect(&d, "keep", "{{.State.Pid}}"), pid, "a new process");
    let until = berth_tests::unix_time(1);
    let events = d
        .docker(&[
            "events",
            "--since",
            &since,
            "--until",
            &until,
            "--filter",
            "container=keep",
            "--format",
            "{{.Action}}",
        ])
        .expect("events");
    let actions: Vec<&str> = events.lines().collect();
    assert!(actions.ends_with(&["start", "restart"]), "{actions:?}");

    d.docker(&["create", "--name", "gone", "busybox", "true"]).expect("create");
    let gone = full_id(&d, "gone");
    d.docker(&["network", "create", "unused-net"]).expect("network create");
    let out = d.docker(&["system", "prune", "-f"]).expect("system prune");
    assert!(out.contains("Deleted Containers:") && out.contains(&gone), "{out}");
    assert!(out.contains("unused-net"), "{out}");
    let left = d.docker(&["ps", "-a", "--format", "{{.Names}}"]).expect("ps");
    assert_eq!(left.trim(), "keep", "the running one stays");
    assert!(d.out(&["network", "inspect", "unused-net"]).0 != Some(0));
}

#[test]
fn sizes_of_a_containers_writes() {
    let d = Daemon::with_busybox();
    d.docker(&["run", "--name", "writer", "busybox", "sh", "-c", "head -c 1048576 /dev/zero > /big"]).expect("run");
    d.docker(&["create", "--name", "clean", "busybox", "true"]).expect("create");
    let rw: u64 = inspect(&d, "writer", "{{.SizeRw}}").parse().unwrap_or(0);
    assert_eq!(rw, 0, "without --size, as dockerd: no size");
    let out = d.docker(&["inspect", "--size", "-f", "{{.SizeRw}} {{.SizeRootFs}}", "writer"]).expect("inspect --size");
    let sizes: Vec<u64> = out.split_whitespace().filter_map(|v| v.parse().ok()).collect();
    assert_eq!(sizes.len(), 2, "{out}");
    assert!(sizes[0] >= 1 << 20 && sizes[0] < 2 << 20, "{out}");
    assert!(sizes[1] > sizes[0], "the image's size too: {out}");
    let ps = d.docker(&["ps", "-a", "--size", "--format", "{{.Names}} {{.Size}}"]).expect("ps --size");
    assert!(ps.lines().any(|l| l.starts_with("writer 1.05MB (virtual ")), "{ps}");
    assert!(ps.lines().any(|l| l.starts_with("clean 0B (virtual ")), "{ps}");
}

#[test]
fn mac_addresses_are_given_to_the_interface() {
    let d = Daemon::with_busybox();
    let out = d
        .docker(&[
            "run",
            "--name",
            "mac1",
            "--mac-address",
            "02:42:de:ad:be:ef",
            "busybox",
            "cat",
            "/sys/class/net/eth0/address",
        ])
        .expect("run --mac-address");
    assert_eq!(out.trim(), "02:42:de:ad:be:ef");
    // The legacy field (Config.MacAddress) as older clients send it.
    let body = br#"{"Image":"busybox","Cmd":["cat","/sys/class/net/eth0/address"],"MacAddress":"02:42:00:00:be:ef"}"#;
    let (status, _, reply) =
        berth_tests::raw_http(&d.sock(), "POST", "/containers/create?name=legacy", body).expect("create");
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&reply));
    let out = d.docker(&["start", "-a", "legacy"]).expect("start");
    assert_eq!(out.trim(), "02:42:00:00:be:ef");
    for bad in ["nope", "01:00:5e:00:00:01"] {
        let body = format!(r#"{{"Image":"busybox","MacAddress":"{bad}"}}"#);
        let (status, _, reply) =
            berth_tests::raw_http(&d.sock(), "POST", "/containers/create", body.as_bytes()).expect("create");
        assert_eq!(status, 400, "{bad}");
        assert!(String::from_utf8_lossy(&reply).contains(&format!("invalid MAC address: {bad}")));
    }
}

#[test]
fn legacy_links_set_hosts_and_variables() {
    let d = Daemon::with_busybox();
    d.docker(&["run", "-d", "--name", "db", "-e", "SECRET=x", "--expose", "5432", "busybox", "sleep", "300"])
        .expect("run db");
    let db_ip = inspect(&d, "db", "{{.NetworkSettings.Networks.bridge.IPAddress}}");
    assert!(!db_ip.is_empty());
    let out = d
        .docker(&["run", "--name", "web", "--link", "db:database", "busybox", "sh", "-c", "env | sort; cat /etc/hosts"])
        .expect("run --link");
    for want in [
        "DATABASE_NAME=/web/database".to_string(),
        format!("DATABASE_PORT=tcp://{db_ip}:5432"),
        format!("DATABASE_PORT_5432_TCP_ADDR={db_ip}"),
        "DATABASE_PORT_5432_TCP_PORT=5432".to_string(),
        "DATABASE_ENV_SECRET=x".to_string(),
    ] {
        assert!(out.lines().any(|l| l == want), "{want} in {out}");
    }
    let hosts_line = out.lines().find(|l| l.starts_with(&format!("{db_ip}\t"))).unwrap_or_default();
    assert!(hosts_line.contains("database") && hosts_line.ends_with(" db"), "{out}");
    assert_eq!(inspect(&d, "web", "{{json .HostConfig.Links}}"), r#"["/db:/web/database"]"#);
    // The container's own environment stays its own.
    assert!(!inspect(&d, "web", "{{json .Config.Env}}").contains("DATABASE_"));
    // A link to nothing is refused at create; to a stopped container, at start.
    let (code, _, err) = d.out(&["create", "--link", "nope:x", "busybox", "true"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("could not get container for nope"), "{err}");
    d.docker(&["stop", "-t", "0", "db"]).expect("stop db");
    let (code, _, err) = d.out(&["start", "web"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("Cannot link to a non running container: /db AS /web/database"), "{err}");
    // A rename of either end carries over into the links, as on dockerd.
    d.docker(&["rename", "db", "store"]).expect("rename the linked container");
    assert_eq!(inspect(&d, "web", "{{json .HostConfig.Links}}"), r#"["/store:/web/database"]"#);
    d.docker(&["rename", "web", "front"]).expect("rename the linking container");
    assert_eq!(inspect(&d, "front", "{{json .HostConfig.Links}}"), r#"["/store:/front/database"]"#);
    d.docker(&["start", "store"]).expect("start store");
    d.docker(&["start", "front"]).expect("the link resolves by the new name");
}
