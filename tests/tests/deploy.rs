//! Berth as a container image (deploy/Containerfile, from the binaries under
//! test and the libraries they load): built by Berth itself and run as a
//! privileged container of Berth's; built by dockerd (Debian's docker.io) and
//! run as the split services of deploy/compose.yaml by docker-compose. Either
//! way a container started through the containerized API runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_tests::{Daemon, Dockerd, TestImage, docker_save_tar, remove_bridge_and_rules, unique_bridge};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The image's root filesystem, from the binaries under test.
fn rootfs(dir: &Path) -> PathBuf {
    let out = dir.join("rootfs");
    let st = Command::new(repo().join("deploy/image-rootfs.sh"))
        .arg(berth_tests::bin_dir())
        .arg(&out)
        .current_dir(repo())
        .status()
        .expect("image-rootfs.sh");
    assert!(st.success(), "deploy/image-rootfs.sh failed");
    out
}

/// The docker CLI on the API socket `sock` (the containerized Berth).
fn inner(sock: &Path, args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .env("DOCKER_HOST", format!("unix://{}", sock.display()))
        .env("DOCKER_CONFIG", sock.parent().unwrap_or(sock))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("docker")
}

fn wait_for_api(sock: &Path, what: &dyn Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !inner(sock, &["version"]).status.success() {
        assert!(Instant::now() < deadline, "the containerized API does not answer on {}: {}", sock.display(), what());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Loads busybox through the containerized API and runs containers with it.
fn containers_run_through(sock: &Path) {
    use std::io::Write;
    let mut load = Command::new("docker")
        .env("DOCKER_HOST", format!("unix://{}", sock.display()))
        .env("DOCKER_CONFIG", sock.parent().unwrap_or(sock))
        .arg("load")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("load");
    let tar = docker_save_tar(&[TestImage::busybox(&["busybox:latest"])], false);
    load.stdin.take().expect("stdin").write_all(&tar).expect("write");
    assert!(load.wait().expect("wait").success(), "docker load through the containerized API");
    let out = inner(sock, &["run", "--rm", "busybox", "echo", "hello from a containerized Berth"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from a containerized Berth\n", "{out:?}");
    let out = inner(sock, &["run", "-d", "--name", "long", "-v", "data:/data", "busybox", "sleep", "300"]);
    assert!(out.status.success(), "{out:?}");
    let out = inner(sock, &["exec", "long", "sh", "-c", "echo kept > /data/f && cat /data/f && hostname -i"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("kept\n") && text.lines().count() == 2, "exec with a volume and an address: {out:?}");
    let out = inner(sock, &["rm", "-f", "long"]);
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn berth_builds_its_own_image_and_runs_in_it() {
    let outer = Daemon::start(&[]).expect("berthd");
    let dir = tempfile::tempdir().expect("tmp");
    let rootfs = rootfs(dir.path());
    let containerfile = repo().join("deploy/Containerfile").display().to_string();
    let built = outer
        .docker_cmd(&["build", "-q", "-f", &containerfile, "-t", "berth:e2e", &rootfs.display().to_string()])
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .expect("build");
    assert!(built.status.success(), "Berth builds Berth's image: {}", String::from_utf8_lossy(&built.stderr));
    let (data, run) = (dir.path().join("data"), dir.path().join("run"));
    let bridge = unique_bridge();
    let _cleanup = Cleanup(bridge.clone());
    let mounts = [format!("{}:/var/lib/berth", data.display()), format!("{}:/run/berth", run.display())];
    outer
        .docker(&[
            "run",
            "-d",
            "--name",
            "berth",
            "--privileged",
            "--pid",
            "host",
            "--network",
            "host",
            "-v",
            &mounts[0],
            "-v",
            &mounts[1],
            "berth:e2e",
            "berthd",
            "--data-root",
            "/var/lib/berth",
            "-H",
            "unix:///run/berth/berth.sock",
            "--exec-root",
            "/run/berth/exec",
            "--bridge",
            &bridge,
        ])
        .expect("run Berth in Berth");
    let sock = run.join("berth.sock");
    wait_for_api(&sock, &|| outer.docker(&["logs", "berth"]).unwrap_or_default());
    containers_run_through(&sock);
    outer.docker(&["rm", "-f", "berth"]).expect("stop the containerized berthd");
}

/// Removes the containerized Berth's bridge and rules, even when the test fails.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        remove_bridge_and_rules(&self.0);
    }
}

/// `docker-compose -f deploy/compose.yaml` (and `extra` files) against the
/// engine on `engine`: up, a container through the containerized gateway,
/// down. `list` names the engine's containers, for the check that the five
/// services run.
fn compose_up_and_run(engine: &Path, extra: &[&Path], list: &dyn Fn() -> String) {
    let dir = tempfile::tempdir().expect("tmp");
    let (data, run) = (dir.path().join("data"), dir.path().join("run"));
    let bridge = unique_bridge();
    let _cleanup = Cleanup(bridge.clone());
    let compose = |args: &[&str]| {
        let mut c = Command::new("docker-compose");
        c.arg("-f").arg(repo().join("deploy/compose.yaml"));
        for f in extra {
            c.arg("-f").arg(f);
        }
        c.args(["-p", "berthe2e"])
            .args(args)
            .env("DOCKER_HOST", format!("unix://{}", engine.display()))
            .env("BERTH_IMAGE", "berth:e2e")
            .env("BERTH_DATA_ROOT", &data)
            .env("BERTH_RUN_DIR", &run)
            .env("BERTH_BRIDGE", &bridge)
            .stdin(Stdio::null())
            .output()
            .expect("docker-compose (make test installs it)")
    };
    std::fs::create_dir_all(&run).expect("run dir");
    let up = compose(&["up", "-d"]);
    let down = Down(&compose);
    assert!(up.status.success(), "compose up: {}", String::from_utf8_lossy(&up.stderr));
    let sock = run.join("berth.sock");
    wait_for_api(&sock, &|| String::from_utf8_lossy(&compose(&["logs", "--no-color"]).stdout).to_string());
    // Five services, each in a container of its own.
    let names = list();
    for svc in ["image", "volume", "network", "runtime", "gateway"] {
        assert!(names.contains(&format!("berthe2e_{svc}_1")), "{svc} runs: {names}");
    }
    containers_run_through(&sock);
    drop(down);
}

/// `docker-compose down`, also when the test fails.
struct Down<'a>(&'a dyn Fn(&[&str]) -> std::process::Output);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let out = (self.0)(&["down", "--timeout", "5"]);
        if !std::thread::panicking() {
            assert!(out.status.success(), "compose down: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

#[test]
fn compose_runs_the_split_services_under_berth() {
    let outer = Daemon::start(&[]).expect("berthd");
    let dir = tempfile::tempdir().expect("tmp");
    let rootfs = rootfs(dir.path());
    let containerfile = repo().join("deploy/Containerfile").display().to_string();
    outer
        .docker_cmd(&["build", "-q", "-f", &containerfile, "-t", "berth:e2e", &rootfs.display().to_string()])
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .expect("build");
    compose_up_and_run(&outer.sock(), &[], &|| outer.docker(&["ps", "--format", "{{.Names}}"]).unwrap_or_default());
}

/// The capabilities of this process's bounding set that dockerd 20.10 knows,
/// by name (`CAP_` left out).
fn bounding_caps() -> Vec<&'static str> {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let bnd = status.lines().find_map(|l| l.strip_prefix("CapBnd:")).map(str::trim).unwrap_or("0");
    let mask = u64::from_str_radix(bnd, 16).unwrap_or(0);
    // dockerd 20.10 knows the first 38 (to AUDIT_READ).
    berth_shim::CAPABILITIES
        .iter()
        .enumerate()
        .take(38)
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, n)| *n)
        .collect()
}

#[test]
fn compose_runs_the_split_services_under_dockerd() {
    let dockerd = Dockerd::start(&["--bridge", "none", "--iptables=false"]);
    let dir = tempfile::tempdir().expect("tmp");
    let rootfs = rootfs(dir.path());
    let containerfile = repo().join("deploy/Containerfile").display().to_string();
    let (ok, out) =
        dockerd.docker(&["build", "-q", "-f", &containerfile, "-t", "berth:e2e", &rootfs.display().to_string()]);
    assert!(ok, "dockerd builds Berth's image: {out}");
    // dockerd's --privileged asks runc for every capability the kernel knows;
    // where this process's bounding set lacks some (a sandbox's: this
    // machine's has no CAP_SYS_RESOURCE), runc refuses. Nearly the same
    // powers, spelled out in an override: the bounding set's capabilities, no
    // seccomp or AppArmor, every device. /proc/sys stays read-only (compose
    // cannot lift masked paths), which Berth needs not: it writes its
    // containers' sysctls in their own /proc.
    let caps: Vec<String> = bounding_caps().iter().map(|c| format!("\"{c}\"")).collect();
    let unprivileged = format!(
        "services:\n{}",
        ["image", "network", "runtime"]
            .iter()
            .map(|svc| format!(
                "  {svc}:\n    privileged: false\n    cap_add: [{}]\n    security_opt: [\"seccomp=unconfined\", \"apparmor=unconfined\"]\n    device_cgroup_rules: [\"c *:* rmw\", \"b *:* rmw\"]\n",
                caps.join(", ")
            ))
            .collect::<String>()
    );
    let override_file = dir.path().join("sandbox.yaml");
    std::fs::write(&override_file, unprivileged).expect("override");
    let sock = dockerd.dir.path().join("docker.sock");
    compose_up_and_run(&sock, &[&override_file], &|| dockerd.docker(&["ps", "--format", "{{.Names}}"]).1);
}
