//! Berth and dockerd (Debian's docker.io, 20.10) on one host: dockerd's
//! iptables rules (FORWARD policy DROP, its NAT and published ports) keep
//! working beside Berth's nftables table, and Berth's containers still reach
//! out and are reached through their published ports. Alone in its test binary,
//! because dockerd's FORWARD policy affects every bridge on the host.

use std::process::{Command, Stdio};
use std::time::Duration;

use berth_tests::{Daemon, Dockerd, Outside, TestImage, docker_save_tar, free_port};

fn retry(mut f: impl FnMut() -> Option<String>, want: &str) -> String {
    let mut last = String::new();
    for _ in 0..30 {
        if let Some(got) = f() {
            if got.contains(want) {
                return got;
            }
            last = got;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    last
}

#[test]
fn berth_and_dockerd_forward_side_by_side() {
    let berth = Daemon::start(&[]).expect("berthd");
    let image = docker_save_tar(&[TestImage::busybox(&["busybox:latest"])], false);
    berth.load(&image).expect("load into berth");
    let outside = Outside::new(&berth.bridge[2..], 9);
    let _server = outside.serve_whoami(9000);
    // dockerd starts after Berth: its FORWARD policy turns to DROP.
    let dockerd = Dockerd::start(&[]);
    let mut load = dockerd.docker_cmd(&["load"]).stdin(Stdio::piped()).stdout(Stdio::null()).spawn().expect("load");
    if let Some(mut stdin) = load.stdin.take() {
        use std::io::Write;
        stdin.write_all(&image).expect("write image");
    }
    assert!(load.wait().expect("load").success(), "docker load into dockerd");
    // dockerd turns the policy to DROP when it had to switch forwarding on itself
    // (here Berth did first); set it as dockerd would have.
    assert!(Command::new("iptables").args(["-P", "FORWARD", "DROP"]).status().expect("iptables").success());

    // Out of both engines' containers, each masqueraded by its own rules.
    let from_berth =
        berth.docker(&["run", "--rm", "busybox", "nc", "-w", "3", &outside.addr, "9000"]).expect("berth out");
    assert_eq!(from_berth.trim(), "10.239.9.1", "Berth's container gets out despite FORWARD DROP");
    let (ok, from_dockerd) =
        dockerd.docker(&["run", "--rm", "--network", "bridge", "busybox", "nc", "-w", "3", &outside.addr, "9000"]);
    assert!(ok && from_dockerd.trim() == "10.239.9.1", "dockerd's container gets out: {from_dockerd}");

    // Into both engines' containers through published ports, from the other host.
    let (bp, dp) = (free_port(), free_port());
    berth
        .docker(&["run", "-d", "-p", &format!("{bp}:8000"), "busybox", "httpd", "-f", "-p", "8000", "-h", "/etc"])
        .expect("berth httpd");
    let (ok, text) = dockerd.docker(&[
        "run",
        "-d",
        "-p",
        &format!("{dp}:8000"),
        "busybox",
        "httpd",
        "-f",
        "-p",
        "8000",
        "-h",
        "/etc",
    ]);
    assert!(ok, "dockerd httpd: {text}");
    let got = retry(|| outside.get(&format!("http://10.239.9.1:{bp}/passwd")), "root:x:0:0");
    assert!(got.contains("root:x:0:0"), "Berth's published port from another host: {got:?}");
    let got = retry(|| outside.get(&format!("http://10.239.9.1:{dp}/passwd")), "root:x:0:0");
    assert!(got.contains("root:x:0:0"), "dockerd's published port from another host: {got:?}");

    // dockerd's chains are as dockerd made them, with Berth's two accept rules per bridge first.
    let user = Command::new("iptables").args(["-S", "DOCKER-USER"]).output().expect("iptables");
    let user = String::from_utf8_lossy(&user.stdout).to_string();
    assert!(user.contains(&format!("-A DOCKER-USER -i {} ", berth.bridge)), "{user}");
    assert!(user.contains(&format!("-A DOCKER-USER -o {} ", berth.bridge)), "{user}");
    assert!(user.trim_end().ends_with("-A DOCKER-USER -j RETURN"), "dockerd's RETURN stays last: {user}");
    let forward = Command::new("iptables").args(["-S", "FORWARD"]).output().expect("iptables");
    assert!(String::from_utf8_lossy(&forward.stdout).contains("-A FORWARD -j DOCKER-USER"));

    // The same confinement in both engines' default containers: capability sets,
    // seccomp, no_new_privs, with and without --init and the security options.
    for args in [
        &["run", "--rm", "busybox", "cat", "/proc/self/status"][..],
        &["run", "--rm", "--init", "busybox", "cat", "/proc/1/status"],
        &["run", "--rm", "--user", "1000", "busybox", "cat", "/proc/self/status"],
        &["run", "--rm", "--cap-drop", "ALL", "--cap-add", "NET_ADMIN", "busybox", "cat", "/proc/self/status"],
        &["run", "--rm", "--security-opt", "no-new-privileges", "busybox", "cat", "/proc/self/status"],
        &["run", "--rm", "--security-opt", "seccomp=unconfined", "busybox", "cat", "/proc/self/status"],
    ] {
        let ours = berth.docker(args).expect("berth");
        let (ok, theirs) = dockerd.docker(args);
        assert!(ok, "dockerd: {theirs}");
        for key in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp"] {
            let of = |s: &str| s.lines().find(|l| l.starts_with(&format!("{key}:"))).map(str::to_string);
            assert_eq!(of(&ours), of(&theirs), "{key} for docker {}", args.join(" "));
        }
    }
    // A new user namespace is refused by both default profiles.
    let unshare = ["run", "--rm", "busybox", "busybox", "unshare", "-U", "true"];
    assert!(berth.docker(&unshare).is_err(), "Berth refuses unshare -U");
    assert!(!dockerd.docker(&unshare).0, "dockerd refuses unshare -U");

    drop(dockerd);
    let bridge = berth.bridge.clone();
    drop(berth);
    let user = Command::new("iptables").args(["-S", "DOCKER-USER"]).output().expect("iptables");
    assert!(!String::from_utf8_lossy(&user.stdout).contains(&bridge), "the test daemon's rules went with it");
}
