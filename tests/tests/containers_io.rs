//! Talking to running containers through their shim: stdin with half-close,
//! TTYs and resizes, exec, detach keys, `--init`, and attaching again after
//! berthd was killed.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use berth_tests::{Daemon, hijack, raw_http, read_frames_until};
use serde_json::Value;

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or(Value::Null)
}

#[test]
fn stdin_reaches_the_container_and_its_end_closes_it() {
    let d = Daemon::with_busybox();
    let o = d.docker_with_input(&["run", "-i", "--rm", "busybox", "sh", "-c", "cat; echo done"], b"hello\nworld\n");
    let o = o.expect("docker run -i");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "hello\nworld\ndone\n", "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(0));
    // More than any pipe holds: input waits for the container, nothing is lost.
    let big = vec![b'x'; 3 << 20];
    let o = d.docker_with_input(&["run", "-i", "--rm", "busybox", "wc", "-c"], &big).expect("docker run -i wc");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), (3 << 20).to_string());
    // Without -i the container's stdin is empty.
    let o = d.docker_with_input(&["run", "--rm", "busybox", "wc", "-c"], b"ignored").expect("docker run wc");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "0");
}

#[test]
fn tty_containers_get_a_terminal_and_resizes() {
    let d = Daemon::with_busybox();
    let (code, stdout, stderr) =
        d.out(&["run", "--rm", "-t", "busybox", "sh", "-c", "tty; [ -t 0 ] && [ -t 1 ] && echo both; exit 4"]);
    assert_eq!(code, Some(4), "{stderr}");
    // The terminal's line discipline turns \n into \r\n; stdout is raw.
    assert!(stdout.starts_with("/dev/pts/0\r\n"), "{stdout:?}");
    assert!(stdout.contains("both\r\n"), "{stdout:?}");

    let id = d
        .docker(&["run", "-d", "-t", "busybox", "sh", "-c", "while true; do stty size; sleep 0.1; done"])
        .expect("run -d -t")
        .trim()
        .to_string();
    let (status, _, body) =
        raw_http(&d.sock(), "POST", &format!("/containers/{id}/resize?h=40&w=100"), b"").expect("resize");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    wait_until("the new size", || d.docker(&["logs", &id]).is_ok_and(|l| l.contains("40 100")));
    let (status, _, _) = raw_http(&d.sock(), "POST", &format!("/containers/{id}/resize?h=x&w=1"), b"").expect("bad");
    assert_eq!(status, 400);
    d.docker(&["rm", "-f", &id]).expect("rm");

    // A container without a terminal has nothing to resize: dockerd answers OK.
    let plain = d.docker(&["run", "-d", "busybox", "sleep", "300"]).expect("run").trim().to_string();
    let (status, _, _) = raw_http(&d.sock(), "POST", &format!("/containers/{plain}/resize?h=1&w=1"), b"").expect("r");
    assert_eq!(status, 200);
    d.docker(&["rm", "-f", &plain]).expect("rm");
}

#[test]
fn exec_runs_in_the_container_with_its_options() {
    let d = Daemon::with_busybox();
    d.docker(&["run", "-d", "--name", "box", "-e", "FROM_RUN=1", "busybox", "sleep", "300"]).expect("run");
    let (code, stdout, stderr) = d.out(&[
        "exec",
        "-e",
        "FOO=bar",
        "-w",
        "/tmp",
        "-u",
        "65534",
        "box",
        "sh",
        "-c",
        "echo $FOO $FROM_RUN; pwd; id -u; tr '\\0' ' ' < /proc/1/cmdline",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, "bar 1\n/tmp\n65534\nsleep 300 ");
    // Same namespaces as the container: its hostname and its PID 1.
    let host = d.docker(&["exec", "box", "hostname"]).expect("hostname");
    let inspect: Value = serde_json::from_str(&d.docker(&["inspect", "box"]).expect("inspect")).expect("json");
    assert_eq!(host.trim(), inspect[0]["Config"]["Hostname"].as_str().expect("hostname"));

    assert_eq!(d.out(&["exec", "box", "sh", "-c", "echo oops >&2; exit 7"]).0, Some(7));
    let (code, _, stderr) = d.out(&["exec", "box", "nosuchcmd"]);
    assert_eq!(code, Some(127), "{stderr}");
    let o = d.docker_with_input(&["exec", "-i", "box", "cat"], b"piped in\n").expect("exec -i");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "piped in\n");
    let (code, stdout, _) = d.out(&["exec", "-t", "box", "tty"]);
    assert_eq!(code, Some(0));
    assert!(stdout.starts_with("/dev/pts/"), "{stdout:?}");
    // Detached: returns at once, runs anyway.
    assert_eq!(d.out(&["exec", "-d", "box", "sh", "-c", "sleep 0.2; touch /tmp/flag"]).0, Some(0));
    wait_until("the detached exec", || d.out(&["exec", "box", "test", "-f", "/tmp/flag"]).0 == Some(0));

    // The API directly: exec inspect reports the exit code.
    let cfg = br#"{"Cmd":["sh","-c","exit 3"],"AttachStdout":true}"#;
    let (status, _, body) = raw_http(&d.sock(), "POST", "/containers/box/exec", cfg).expect("create");
    assert_eq!(status, 201);
    let exec_id = json(&body)["Id"].as_str().expect("Id").to_string();
    let (status, _, _) =
        raw_http(&d.sock(), "POST", &format!("/exec/{exec_id}/start"), br#"{"Detach":true}"#).expect("start");
    assert_eq!(status, 200);
    wait_until("the exit code", || {
        let (_, _, body) = raw_http(&d.sock(), "GET", &format!("/exec/{exec_id}/json"), b"").expect("inspect");
        let v = json(&body);
        v["Running"] == Value::Bool(false) && v["ExitCode"] == 3
    });
    let (status, _, _) =
        raw_http(&d.sock(), "POST", &format!("/exec/{exec_id}/start"), br#"{"Detach":true}"#).expect("again");
    assert_eq!(status, 409);
    let (status, _, _) = raw_http(&d.sock(), "GET", "/exec/nosuchexec/json", b"").expect("missing");
    assert_eq!(status, 404);
    let (status, _, _) = raw_http(&d.sock(), "POST", "/containers/box/exec", br#"{"Cmd":[]}"#).expect("empty");
    assert_eq!(status, 400);

    d.docker(&["stop", "-t", "0", "box"]).expect("stop");
    let (code, _, stderr) = d.out(&["exec", "box", "true"]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("is not running"), "{stderr}");
    let (status, _, _) = raw_http(&d.sock(), "POST", "/containers/box/exec", br#"{"Cmd":["true"]}"#).expect("409");
    assert_eq!(status, 409);
}

#[test]
fn detach_keys_end_the_attach_and_leave_the_container_running() {
    let mut d = Daemon::with_busybox();
    let id = d
        .docker(&["run", "-d", "-i", "busybox", "sh", "-c", "while read l; do echo got $l; done"])
        .expect("run -d -i")
        .trim()
        .to_string();
    let path = format!("/containers/{id}/attach?stream=1&stdin=1&stdout=1&stderr=1&detachKeys=ctrl-a,x");
    let (status, mut s) = hijack(&d.sock(), &path, b"").expect("attach");
    assert_eq!(status, 101);
    s.write_all(b"one\n").expect("write");
    assert!(read_frames_until(&mut s, "got one").expect("read").contains("got one"));
    // ctrl-a alone is passed on once the next byte shows it was not the sequence.
    s.write_all(b"\x01y\n\x01x").expect("detach");
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    let inspect: Value = serde_json::from_str(&d.docker(&["inspect", &id]).expect("inspect")).expect("json");
    assert_eq!(inspect[0]["State"]["Running"], true, "detaching must not stop the container");

    // berthd dies; the container keeps its stdin, and a new attach reaches it.
    d.kill9().expect("kill -9");
    d.restart().expect("restart");
    let (status, mut s) = hijack(&d.sock(), &path, b"").expect("attach again");
    assert_eq!(status, 101);
    s.write_all(b"two\n").expect("write");
    assert!(read_frames_until(&mut s, "got two").expect("read").contains("got two"));
    let logs = d.docker(&["logs", &id]).expect("logs");
    assert!(logs.contains("got one") && logs.contains("got \u{1}y") && logs.contains("got two"), "{logs:?}");
    d.docker(&["rm", "-f", &id]).expect("rm");
}

#[test]
fn init_is_pid_1_reaps_orphans_and_forwards_signals() {
    let d = Daemon::with_busybox();
    let (code, stdout, stderr) = d.out(&["run", "--rm", "--init", "busybox", "sh", "-c", "cat /proc/1/comm; echo $$"]);
    assert_eq!(code, Some(0), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"docker-init"), "{stdout}");
    assert_ne!(lines.get(1), Some(&"1"), "the command is not PID 1 under --init");

    let id = d
        .docker(&[
            "run",
            "-d",
            "--init",
            "busybox",
            "sh",
            "-c",
            "trap 'exit 42' TERM; (sleep 0.1 &); while true; do sleep 0.1; done",
        ])
        .expect("run --init")
        .trim()
        .to_string();
    // The orphaned sleep is reparented to the init, which reaps it: no zombies.
    std::thread::sleep(Duration::from_millis(600));
    let stats = d.docker(&["exec", &id, "sh", "-c", "cat /proc/[0-9]*/stat"]).expect("stat");
    // Only the init's children count: the loop's own `sleep` may be a zombie
    // for an instant before the shell reaps it.
    let orphan_zombie = |l: &str| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.get(2) == Some(&"Z") && f.get(3) == Some(&"1")
    };
    assert!(!stats.lines().any(orphan_zombie), "zombies left to the init: {stats}");
    // SIGTERM goes to the init, which passes it on to the shell.
    d.docker(&["stop", "-t", "10", &id]).expect("stop");
    assert_eq!(d.docker(&["wait", &id]).expect("wait").trim(), "42");
}

#[test]
fn output_is_complete_when_attached_before_the_start() {
    let d = Daemon::with_busybox();
    // Attach before start (as docker run does), then start: every line arrives,
    // including the first ones printed right at the start.
    let id = d.docker(&["create", "busybox", "seq", "1", "20000"]).expect("create").trim().to_string();
    let o = d.docker_out(&["start", "-a", &id]).expect("start -a");
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(text.lines().count(), 20000);
    assert!(text.starts_with("1\n2\n3\n") && text.ends_with("19999\n20000\n"));
}

#[test]
fn the_default_bridge_gives_each_container_an_address() {
    let d = Daemon::with_busybox();
    let a = d.docker(&["run", "-d", "--name", "ca", "busybox", "sleep", "300"]).expect("run ca").trim().to_string();
    d.docker(&["run", "-d", "--name", "cb", "busybox", "sleep", "300"]).expect("run cb");
    let ip_of = |name: &str| d.docker(&["inspect", "--format", "{{.NetworkSettings.IPAddress}}", name]).expect("ip");
    let (ip_a, ip_b) = (ip_of("ca").trim().to_string(), ip_of("cb").trim().to_string());
    assert!(!ip_a.is_empty() && ip_a != ip_b, "{ip_a} {ip_b}");
    assert!(!ip_a.starts_with("172.17."), "the default bridge must not clash with dockerd's: {ip_a}");
    let net: Value = serde_json::from_str(&d.docker(&["network", "inspect", "bridge"]).expect("inspect")).expect("j");
    let subnet = net[0]["IPAM"]["Config"][0]["Subnet"].as_str().expect("subnet").to_string();
    let gateway = net[0]["IPAM"]["Config"][0]["Gateway"].as_str().expect("gateway").to_string();
    let inspect: Value = serde_json::from_str(&d.docker(&["inspect", "ca"]).expect("inspect")).expect("json");
    let ep = &inspect[0]["NetworkSettings"]["Networks"]["bridge"];
    assert_eq!(ep["IPAddress"], ip_a.as_str());
    assert_eq!(ep["Gateway"], gateway.as_str());
    assert_eq!(ep["NetworkID"], net[0]["Id"]);
    assert!(ep["MacAddress"].as_str().is_some_and(|m| m.starts_with("02:42:")), "{ep}");
    let ls = d.docker(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]).expect("ls");
    for want in ["bridge bridge", "host host", "none null"] {
        assert!(ls.lines().any(|l| l == want), "{ls}");
    }

    // Inside: eth0 with that address in the bridge's subnet and a default route.
    let addr = d.docker(&["exec", "ca", "ip", "-4", "-o", "addr", "show", "eth0"]).expect("ip addr");
    let prefix = subnet.split('/').nth(1).expect("prefix");
    assert!(addr.contains(&format!("{ip_a}/{prefix}")), "{addr}");
    let route = d.docker(&["exec", "ca", "ip", "route"]).expect("ip route");
    assert!(route.contains(&format!("default via {gateway}")), "{route}");
    // Containers on the bridge reach each other, and the host reaches them.
    assert_eq!(d.out(&["exec", "ca", "ping", "-c", "1", "-W", "5", &ip_b]).0, Some(0));
    let ping = std::process::Command::new("ping").args(["-c", "1", "-W", "5", &ip_a]).output();
    if let Ok(o) = ping {
        assert!(o.status.success(), "host -> container: {}", String::from_utf8_lossy(&o.stdout));
    }
    // TCP from the host to a server in a container.
    d.docker(&["exec", "-d", "cb", "sh", "-c", "echo hello-from-b | nc -l -p 7000"]).expect("nc -l");
    let got = (0..50).find_map(|_| {
        std::thread::sleep(Duration::from_millis(100));
        let mut s = std::net::TcpStream::connect((ip_b.as_str(), 7000)).ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        Some(text)
    });
    assert_eq!(got.as_deref(), Some("hello-from-b\n"));
    // --network none: only lo, and it is up.
    let lo = d.docker(&["run", "--rm", "--network", "none", "busybox", "ip", "-o", "link"]).expect("none");
    assert_eq!(lo.lines().count(), 1, "{lo}");
    assert!(lo.contains("lo:") && lo.contains("UP"), "{lo}");
    assert_eq!(d.out(&["run", "--rm", "--network", "none", "busybox", "ping", "-c", "1", "127.0.0.1"]).0, Some(0));

    // Stopping releases the address and the veth; the next container may reuse it.
    let veth = d.veth_of(&a, "bridge").expect("veth name");
    let has_link = |name: &str| std::fs::metadata(format!("/sys/class/net/{name}")).is_ok();
    assert!(has_link(&veth) && has_link(&d.bridge));
    d.docker(&["rm", "-f", "ca", "cb"]).expect("rm");
    wait_until("the veth to go", || !has_link(&veth));
    let c = d.docker(&["run", "--rm", "busybox", "sh", "-c", "ip -4 -o addr show eth0"]).expect("run c");
    assert!(c.contains(&format!("{ip_a}/")) || c.contains(&format!("{ip_b}/")), "addresses are reused: {c}");
}

#[test]
fn group_add_and_signal_forwarding_from_the_cli() {
    let d = Daemon::with_busybox();
    let (code, stdout, stderr) =
        d.out(&["run", "--rm", "-u", "65534", "--group-add", "4242", "--group-add", "root", "busybox", "id", "-G"]);
    assert_eq!(code, Some(0), "{stderr}");
    let groups: Vec<&str> = stdout.split_whitespace().collect();
    assert!(groups.contains(&"4242") && groups.contains(&"0"), "{stdout}");

    // An attached `docker run` passes the signals it gets to the container (--sig-proxy).
    let mut cli = d
        .docker_cmd(&[
            "run",
            "--name",
            "proxied",
            "busybox",
            "sh",
            "-c",
            "trap 'exit 9' TERM; while true; do sleep 0.1; done",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("docker run");
    wait_until("the container to run", || {
        d.docker(&["inspect", "--format", "{{.State.Running}}", "proxied"]).is_ok_and(|s| s.trim() == "true")
    });
    // SAFETY: kill(2) on the docker CLI we spawned and have not reaped.
    unsafe { libc::kill(cli.id() as i32, libc::SIGTERM) };
    let status = cli.wait().expect("wait");
    assert_eq!(status.code(), Some(9), "the container's trap ran and its code came back");
}

/// Runs the docker CLI on a pseudo-terminal of 30 rows and 100 columns, as a
/// user at a terminal would; returns the master side and the CLI.
fn docker_on_tty(d: &Daemon, args: &[&str]) -> (std::fs::File, std::process::Child) {
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (0, 0);
    let ws = libc::winsize { ws_row: 30, ws_col: 100, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: openpty writes two descriptors; the name and termios pointers may be null.
    let rc = unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), &ws) };
    assert_eq!(rc, 0, "openpty");
    // SAFETY: both descriptors were just opened and are owned by nothing else.
    let (master, slave) = unsafe { (std::fs::File::from_raw_fd(master), std::fs::File::from_raw_fd(slave)) };
    let child = d
        .docker_cmd(args)
        .stdin(slave.try_clone().expect("dup"))
        .stdout(slave.try_clone().expect("dup"))
        .stderr(slave)
        .spawn()
        .expect("docker on a tty");
    (master, child)
}

#[test]
fn interactive_run_on_a_terminal_resizes_and_detaches() {
    let d = Daemon::with_busybox();
    let (master, mut cli) = docker_on_tty(&d, &["run", "-it", "--name", "tty-box", "busybox", "sh"]);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut reader = master.try_clone().expect("dup");
    let sink = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().expect("lock").extend_from_slice(&buf[..n]);
        }
    });
    let text = || String::from_utf8_lossy(&seen.lock().expect("lock")).to_string();
    wait_until("the shell's prompt", || text().contains("# "));
    let mut writer = master.try_clone().expect("dup");
    // The CLI sized the container's terminal like its own.
    writer.write_all(b"stty size; echo $((6*7))\r").expect("type");
    wait_until("the answer", || text().contains("42\r\n"));
    assert!(text().contains("30 100\r\n"), "{}", text());
    // ctrl-p ctrl-q: the CLI leaves, the shell keeps running.
    writer.write_all(b"\x10\x11").expect("detach");
    let status = cli.wait().expect("cli");
    assert_eq!(status.code(), Some(0));
    let running = d.docker(&["inspect", "--format", "{{.State.Running}}", "tty-box"]).expect("inspect");
    assert_eq!(running.trim(), "true");
    d.docker(&["rm", "-f", "tty-box"]).expect("rm");
}
