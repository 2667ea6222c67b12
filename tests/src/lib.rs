//! Helpers for Berth's end-to-end tests: test images built from Debian's
//! `busybox-static` (no registry needed), and harnesses that start `berthd` (or
//! the split services) on a temporary data root and socket and stop them, and
//! remove everything, when dropped, even when a test fails.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub mod otlp;
pub mod postgres;
pub mod registry;

/// `sha256:<hex>` of `data`.
pub fn digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// The Unix time `offset_secs` from now, in whole seconds, as `docker events
/// --since/--until` take it.
pub fn unix_time(offset_secs: i64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    (now as i64 + offset_secs).to_string()
}

/// Where the workspace's binaries are: `BERTH_BIN_DIR`, or next to the test executable.
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("BERTH_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().expect("the executable's directory");
    // A program beside berthd (the bench) uses its own directory; a test runs
    // from target/<profile>/deps.
    if dir.join("berthd").exists() {
        dir.to_path_buf()
    } else {
        dir.parent().map(Path::to_path_buf).expect("target dir")
    }
}

/// The path of one workspace binary, checked to exist.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(p.exists(), "{} is missing: build the workspace binaries first (make build)", p.display());
    p
}

// === test images ===

/// A tar being built in memory.
pub struct Tar(tar::Builder<Vec<u8>>);

impl Default for Tar {
    fn default() -> Self {
        Self::new()
    }
}

impl Tar {
    /// An empty tar.
    pub fn new() -> Self {
        Tar(tar::Builder::new(Vec::new()))
    }
    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h
    }
    /// Adds a directory.
    pub fn dir(mut self, path: &str) -> Self {
        let mut h = Self::header(tar::EntryType::Directory, 0o755, 0);
        self.0.append_data(&mut h, path, std::io::empty()).expect("dir");
        self
    }
    /// Adds a regular file.
    pub fn file(mut self, path: &str, data: &[u8], mode: u32) -> Self {
        let mut h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        self.0.append_data(&mut h, path, data).expect("file");
        self
    }
    /// Adds a regular file (`data`) or, with `None`, a directory, owned by `uid:gid`.
    pub fn owned(mut self, path: &str, data: Option<&[u8]>, mode: u32, uid: u64, gid: u64) -> Self {
        let (kind, bytes) = match data {
            Some(d) => (tar::EntryType::Regular, d),
            None => (tar::EntryType::Directory, &[][..]),
        };
        let mut h = Self::header(kind, mode, bytes.len() as u64);
        h.set_uid(uid);
        h.set_gid(gid);
        self.0.append_data(&mut h, path, bytes).expect("entry");
        self
    }
    /// Adds a symlink.
    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.0.append_link(&mut h, path, target).expect("symlink");
        self
    }
    /// The tar bytes.
    pub fn finish(self) -> Vec<u8> {
        self.0.into_inner().expect("tar")
    }
}

/// A root filesystem layer with a static busybox and its applet links.
pub fn busybox_layer() -> Vec<u8> {
    let busybox = std::fs::read("/bin/busybox").expect("/bin/busybox: install busybox-static");
    let mut t = Tar::new().dir("bin/").dir("etc/").dir("tmp/").dir("root/").file("bin/busybox", &busybox, 0o755);
    for applet in [
        "sh", "echo", "cat", "ls", "true", "false", "sleep", "id", "hostname", "env", "ps", "mount", "grep", "wc",
        "tr", "touch", "pwd", "kill", "test", "wait", "head", "seq", "tty", "stty", "ping", "ip", "nc", "nslookup",
        "wget", "httpd", "stat", "readlink", "rm", "mkdir", "df", "ln",
    ] {
        t = t.symlink(&format!("bin/{applet}"), "busybox");
    }
    t.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n", 0o644)
        .file("etc/group", b"root:x:0:\nnogroup:x:65534:\n", 0o644)
        .finish()
}

/// A small image to build tarballs from.
#[derive(Clone)]
pub struct TestImage {
    /// Uncompressed layer tarballs, base first.
    pub layers: Vec<Vec<u8>>,
    /// `repo:tag` references.
    pub tags: Vec<String>,
    /// Extra container config (merged into `config`).
    pub config: Value,
    /// Creation time.
    pub created: String,
}

impl TestImage {
    /// A busybox image with `tags`.
    pub fn busybox(tags: &[&str]) -> Self {
        TestImage {
            layers: vec![busybox_layer()],
            tags: tags.iter().map(|s| s.to_string()).collect(),
            config: json!({"Cmd": ["sh"], "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}),
            created: "2024-01-01T00:00:00Z".into(),
        }
    }

    /// The same image plus one more layer.
    pub fn with_layer(mut self, layer: Vec<u8>, tags: &[&str]) -> Self {
        self.layers.push(layer);
        self.tags = tags.iter().map(|s| s.to_string()).collect();
        self.created = "2024-02-01T00:00:00Z".into();
        self
    }

    /// The config JSON bytes; its digest is the image ID.
    pub fn config_bytes(&self) -> Vec<u8> {
        let diff_ids: Vec<String> = self.layers.iter().map(|l| digest(l)).collect();
        let history: Vec<Value> = self
            .layers
            .iter()
            .enumerate()
            .map(|(i, _)| json!({"created": self.created, "created_by": format!("layer {i}")}))
            .collect();
        serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "created": self.created,
            "config": self.config,
            "history": history,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .expect("json")
    }

    /// The image ID dockerd gives this image.
    pub fn id(&self) -> String {
        digest(&self.config_bytes())
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

/// A `docker save` tarball in the classic layout (`<id>/layer.tar`, `<hex>.json`,
/// `manifest.json`, `repositories`), with gzip layers when `gz`.
pub fn docker_save_tar(images: &[TestImage], gz: bool) -> Vec<u8> {
    let mut t = Tar::new();
    let mut manifest = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for img in images {
        let config = img.config_bytes();
        let config_name = format!("{}.json", &digest(&config)[7..]);
        let mut layer_paths = Vec::new();
        for layer in &img.layers {
            let dir = digest(layer)[7..].to_string();
            if seen.insert(dir.clone()) {
                let data = if gz { gzip(layer) } else { layer.clone() };
                t = t.dir(&format!("{dir}/")).file(&format!("{dir}/layer.tar"), &data, 0o644).file(
                    &format!("{dir}/VERSION"),
                    b"1.0",
                    0o644,
                );
            }
            layer_paths.push(format!("{dir}/layer.tar"));
        }
        t = t.file(&config_name, &config, 0o644);
        manifest.push(json!({"Config": config_name, "RepoTags": img.tags, "Layers": layer_paths}));
    }
    t.file("manifest.json", &serde_json::to_vec(&manifest).expect("json"), 0o644).finish()
}

/// An OCI image layout tarball with gzip layers and `io.containerd.image.name` annotations.
pub fn oci_layout_tar(images: &[TestImage]) -> Vec<u8> {
    let mut t = Tar::new().file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#, 0o644);
    let mut index = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut blob = |t: Tar, data: &[u8]| -> Tar {
        let d = digest(data);
        if seen.insert(d.clone()) { t.file(&format!("blobs/sha256/{}", &d[7..]), data, 0o644) } else { t }
    };
    for img in images {
        let config = img.config_bytes();
        t = blob(t, &config);
        let mut layers = Vec::new();
        for l in &img.layers {
            let gz = gzip(l);
            layers.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest(&gz), "size": gz.len()}));
            t = blob(t, &gz);
        }
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(&config), "size": config.len()},
            "layers": layers,
        }))
        .expect("json");
        t = blob(t, &manifest);
        for tag in &img.tags {
            let (name, tg) = tag.rsplit_once(':').unwrap_or((tag, "latest"));
            let full = if name.contains('/') {
                format!("docker.io/{name}:{tg}")
            } else {
                format!("docker.io/library/{name}:{tg}")
            };
            index.push(json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest(&manifest),
                "size": manifest.len(),
                "annotations": {"io.containerd.image.name": full, "org.opencontainers.image.ref.name": tg},
            }));
        }
    }
    t.file("index.json", &serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": index})).expect("json"), 0o644)
        .finish()
}

// === harness ===

/// A running berthd on a temporary root, stopped and cleaned up on drop.
pub struct Daemon {
    child: Option<Child>,
    /// Everything lives under here.
    pub root: tempfile::TempDir,
    /// `unix://...` of the API socket.
    pub host: String,
    /// Extra arguments berthd was started with (split mode: the gateway's
    /// `--SERVICE-addr=...` flags).
    pub args: Vec<String>,
    /// Extra processes (split mode services).
    pub others: Vec<Child>,
    /// The docker CLI's config dir (no contexts, no credentials).
    pub docker_config: PathBuf,
    /// This daemon's default bridge device (each test daemon has its own,
    /// deleted on drop).
    pub bridge: String,
    /// Environment variables berthd runs with.
    pub env: Vec<(String, String)>,
}

/// Removes what test daemons that died without their clean-up (a killed test
/// run) left on the host: `bt<8 hex>` bridges that no live process names in
/// its command line (berthd's `--bridge`, or the network service's), with their
/// nft tables and DOCKER-USER rules. Once per test process.
pub fn sweep_dead_test_bridges() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Ok(links) = std::fs::read_dir("/sys/class/net") else { return };
        let names: Vec<String> = links
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.len() == 10 && n.starts_with("bt") && n[2..].bytes().all(|b| b.is_ascii_hexdigit()))
            .collect();
        if names.is_empty() {
            return;
        }
        let cmdlines: Vec<String> = std::fs::read_dir("/proc")
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
                    .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
                    .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                    .collect()
            })
            .unwrap_or_default();
        for name in names {
            if !cmdlines.iter().any(|c| c.contains(&name)) {
                remove_bridge_and_rules(&name);
            }
        }
    });
}

/// A bridge device name no other test daemon uses (`bt` and 8 hex digits:
/// swept after a killed run by [`sweep_dead_test_bridges`]).
pub fn unique_bridge() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let mix = nanos ^ (std::process::id() << 12) ^ NEXT.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9e37_79b9);
    format!("bt{mix:08x}")
}

fn wait_for(path: &Path, child: &mut Child, what: &str) -> Result<()> {
    wait_until(child, what, &path.display().to_string(), || std::os::unix::net::UnixStream::connect(path).is_ok())
}

fn wait_until(child: &mut Child, what: &str, place: &str, ready: impl Fn() -> bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    // The socket's file exists from bind(2), a moment before listen(2): ready
    // means a connection is accepted, not that the file is there.
    while !ready() {
        if let Some(status) = child.try_wait()? {
            bail!("{what} exited early with {status}");
        }
        if Instant::now() > deadline {
            bail!("{what} did not accept connections on {place} in 30s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

impl Daemon {
    /// Starts berthd on a fresh temporary root with `extra` flags.
    pub fn start(extra: &[&str]) -> Result<Self> {
        Self::start_with_env(extra, &[])
    }

    /// As [`Daemon::start`], berthd with `env` in its environment.
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Result<Self> {
        sweep_dead_test_bridges();
        let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        if !args.iter().any(|a| a.starts_with("--state-url"))
            && let Some(url) = test_state_url()?
        {
            args.push(format!("--state-url={url}"));
        }
        let root = tempfile::Builder::new().prefix("berth-e2e-").tempdir()?;
        let docker_config = root.path().join("docker-config");
        std::fs::create_dir_all(&docker_config)?;
        let mut d = Daemon {
            child: None,
            host: format!("unix://{}", root.path().join("berth.sock").display()),
            root,
            args,
            others: vec![],
            docker_config,
            bridge: unique_bridge(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        d.spawn()?;
        Ok(d)
    }

    /// berthd on a fresh root with `busybox:latest` loaded, as most tests want it.
    pub fn with_busybox() -> Self {
        let d = Daemon::start(&[]).expect("start berthd");
        d.load(&docker_save_tar(&[TestImage::busybox(&["busybox:latest"])], false)).expect("load busybox");
        d
    }

    /// berthd's process ID, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The data root.
    pub fn data_root(&self) -> PathBuf {
        self.root.path().join("data")
    }

    fn spawn(&mut self) -> Result<()> {
        let sock = self.root.path().join("berth.sock");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.root.path().join("berthd.log"))?;
        let mut cmd = Command::new(bin("berthd"));
        cmd.arg("--data-root")
            .arg(self.data_root())
            .arg("--exec-root")
            .arg(self.root.path().join("exec"))
            .arg("--config-file")
            .arg("/dev/null")
            .arg("-H")
            .arg(&self.host)
            .arg("--bridge")
            .arg(&self.bridge)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let mut child = cmd.spawn().context("spawn berthd")?;
        wait_for(&sock, &mut child, "berthd")?;
        self.child = Some(child);
        Ok(())
    }

    /// The berthd log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("berthd.log")).unwrap_or_default()
    }

    /// Stops berthd with SIGTERM and waits; returns its exit status code.
    pub fn stop(&mut self) -> Result<Option<i32>> {
        match self.child.take() {
            Some(child) => stop_child(child, "berthd"),
            None => Ok(None),
        }
    }

    /// Kills berthd with SIGKILL (a crash).
    pub fn kill9(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts berthd again on the same root.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        let _ = std::fs::remove_file(self.root.path().join("berth.sock"));
        self.spawn()
    }

    /// A docker CLI command aimed at this daemon.
    pub fn docker_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.root.path())
            .env("DOCKER_HOST", &self.host)
            .env("DOCKER_CONFIG", &self.docker_config)
            .args(args);
        c
    }

    /// Runs the docker CLI with `stdin` bytes and returns its output.
    pub fn docker_with_input(&self, args: &[&str], stdin: &[u8]) -> Result<Output> {
        let mut c = self.docker_cmd(args);
        c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().context("spawn docker")?;
        let mut pipe = child.stdin.take().context("stdin")?;
        let data = stdin.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        });
        let out = child.wait_with_output()?;
        let _ = writer.join();
        Ok(out)
    }

    /// Runs the docker CLI and returns its output.
    pub fn docker_out(&self, args: &[&str]) -> Result<Output> {
        Ok(self.docker_cmd(args).stdin(Stdio::null()).output()?)
    }

    /// Runs the docker CLI, whatever its outcome: (exit code, stdout, stderr).
    pub fn out(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let o = self.docker_out(args).expect("run the docker CLI");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).to_string(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    }

    /// Runs the docker CLI, expecting success, and returns stdout.
    pub fn docker(&self, args: &[&str]) -> Result<String> {
        let out = self.docker_out(args)?;
        if !out.status.success() {
            bail!(
                "docker {} failed ({}): {}\n--- berthd log ---\n{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr),
                self.log()
            );
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    /// Loads a tarball through `docker load`, expecting success.
    pub fn load(&self, tar: &[u8]) -> Result<String> {
        let out = self.docker_with_input(&["load"], tar)?;
        if !out.status.success() {
            bail!("docker load failed: {}\n{}", String::from_utf8_lossy(&out.stderr), self.log());
        }
        Ok(String::from_utf8(out.stdout)?)
    }
}

/// Stops a child with SIGTERM, waiting at most 20 s before SIGKILL; returns its exit code.
fn stop_child(mut child: Child, what: &str) -> Result<Option<i32>> {
    // SAFETY: kill(2) on a pid we spawned and have not reaped yet, so it cannot be reused.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status.code());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what} did not stop within 20s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // While it still answers: remove what a failed test left, so user
        // networks take their bridges with them.
        if self.child.is_some() {
            let ids = self.docker_out(&["ps", "-aq"]).map(|o| String::from_utf8_lossy(&o.stdout).to_string());
            let ids: Vec<String> = ids.unwrap_or_default().split_whitespace().map(str::to_string).collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(ids.iter().map(String::as_str));
                let _ = self.docker_out(&args);
            }
            let _ = self.docker_out(&["network", "prune", "-f"]);
        }
        let _ = self.stop();
        for c in self.others.drain(..) {
            let _ = stop_child(c, "service");
        }
        kill_leftover_containers(self.root.path());
        remove_bridge_and_rules(&self.bridge);
    }
}

/// What a test daemon with default bridge `bridge` leaves on the host by
/// design (a real daemon keeps them): the bridge, its nftables table
/// `berth_<bridge>`, and its accept rules in dockerd's DOCKER-USER chain.
pub fn remove_bridge_and_rules(bridge: &str) {
    let _ = Command::new("ip").args(["link", "delete", bridge]).stderr(Stdio::null()).status();
    let table = format!("berth_{bridge}");
    let _ = Command::new("nft").args(["delete", "table", "inet", &table]).stderr(Stdio::null()).status();
    let listing = Command::new("nft")
        .args(["-a", "list", "chain", "ip", "filter", "DOCKER-USER"])
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    let tag = format!("comment \"berth:{table}\"");
    for handle in listing.lines().filter(|l| l.contains(&tag)).filter_map(|l| l.rsplit_once("# handle ")) {
        let _ = Command::new("nft")
            .args(["delete", "rule", "ip", "filter", "DOCKER-USER", "handle", handle.1.trim()])
            .stderr(Stdio::null())
            .status();
    }
}

/// Containers outlive berthd by design, so a test that failed half-way leaves
/// some running: kill every container whose shim works under `root` (its
/// children), let the shims exit, and remove their cgroups.
fn kill_leftover_containers(root: &Path) {
    let root = root.to_string_lossy().to_string();
    let procs: Vec<(i32, i32, String)> = std::fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
                .filter_map(|pid| {
                    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                    let ppid = stat.rsplit(')').next()?.split_whitespace().nth(1)?.parse().ok()?;
                    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
                    Some((pid, ppid, String::from_utf8_lossy(&cmd).replace('\0', " ")))
                })
                .collect()
        })
        .unwrap_or_default();
    let shims: Vec<(i32, String)> = procs
        .iter()
        .filter(|(_, _, cmd)| cmd.contains("berth-shim") && cmd.contains(&root))
        .map(|(pid, _, cmd)| (*pid, cmd.rsplit('/').next().unwrap_or_default().trim().to_string()))
        .collect();
    for (shim, _) in &shims {
        for (pid, ppid, _) in &procs {
            if ppid == shim {
                // SAFETY: kill(2) of a container process this test's daemon started.
                unsafe { libc::kill(*pid, libc::SIGKILL) };
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while shims.iter().any(|(pid, _)| Path::new(&format!("/proc/{pid}")).exists()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    for (_, id) in &shims {
        for hierarchy in ["", "memory", "cpu", "pids", "cpuset", "unified"] {
            let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(hierarchy).join("berth").join(id));
        }
    }
}

/// Where the test daemons keep their state: `BERTH_TEST_STATE=postgres` runs
/// the suites on Postgres (a fresh database of the process's shared server for
/// each daemon); unset or `sqlite`, on the embedded default.
pub fn test_state_url() -> Result<Option<String>> {
    match std::env::var("BERTH_TEST_STATE").as_deref() {
        Ok("postgres") => Ok(Some(postgres::Postgres::shared().create_database()?)),
        Ok("sqlite") | Ok("") | Err(_) => Ok(None),
        Ok(other) => bail!("BERTH_TEST_STATE={other}: want postgres or sqlite"),
    }
}

/// How [`start_split_opts`] lays the services out.
#[derive(Debug, Clone, Default)]
pub struct SplitOptions<'a> {
    /// A directory `berthd certs` wrote: the services then listen on TCP with mutual TLS.
    pub tls: Option<&'a Path>,
    /// The address the services listen on with `tls` (default 127.0.0.1).
    pub listen_ip: Option<&'a str>,
    /// A network namespace (`ip netns`) to run the gateway in.
    pub gateway_netns: Option<&'a str>,
    /// Environment variables for every process.
    pub env: Vec<(String, String)>,
    /// `--state-url` for every service (default: as [`test_state_url`] says).
    pub state_url: Option<String>,
}

/// Starts the four services and the gateway as separate processes, talking gRPC
/// over unix sockets in a temporary root.
pub fn start_split() -> Result<Daemon> {
    start_split_with(None)
}

/// The `--tlsverify` flags for the files `berthd certs` writes in `dir`.
pub fn tls_flags(dir: &Path) -> Vec<String> {
    let f = |name: &str| dir.join(name).display().to_string();
    vec![
        "--tlsverify".into(),
        format!("--tlscacert={}", f("ca.pem")),
        format!("--tlscert={}", f("server-cert.pem")),
        format!("--tlskey={}", f("server-key.pem")),
    ]
}

/// As [`start_split`]; with `tls` (a directory `berthd certs` wrote), the
/// services listen on TCP ports of 127.0.0.1 and speak mutual TLS, and the
/// runtime and the gateway dial them with the same certificate. Their
/// addresses are in `Daemon::args` as `--SERVICE-addr=...`.
pub fn start_split_with(tls: Option<&Path>) -> Result<Daemon> {
    start_split_at(tls, "127.0.0.1", None)
}

/// As [`start_split_with`], the services listening on `listen_ip` (with
/// `tls`), and the gateway, when `gateway_netns` names a network namespace
/// (`ip netns`), running in it: another host, as far as the network goes.
pub fn start_split_at(tls: Option<&Path>, listen_ip: &str, gateway_netns: Option<&str>) -> Result<Daemon> {
    start_split_opts(&SplitOptions { tls, listen_ip: Some(listen_ip), gateway_netns, ..Default::default() })
}

/// The split services and gateway as `opts` say.
pub fn start_split_opts(opts: &SplitOptions) -> Result<Daemon> {
    let (tls, gateway_netns) = (opts.tls, opts.gateway_netns);
    let listen_ip = opts.listen_ip.unwrap_or("127.0.0.1");
    let state_url = match &opts.state_url {
        Some(u) => Some(u.clone()),
        None => test_state_url()?,
    };
    sweep_dead_test_bridges();
    let root = tempfile::Builder::new().prefix("berth-split-").tempdir()?;
    let docker_config = root.path().join("docker-config");
    std::fs::create_dir_all(&docker_config)?;
    let data = root.path().join("data");
    let mut others = Vec::new();
    let bridge = unique_bridge();
    let tls_args = tls.map(tls_flags).unwrap_or_default();
    let addr_of = |svc: &str| match tls {
        Some(_) => format!("tcp://{listen_ip}:{}", free_port()),
        None => format!("unix://{}", root.path().join(format!("{svc}.sock")).display()),
    };
    let addrs: Vec<(&str, String)> =
        ["image", "network", "volume", "runtime"].iter().map(|s| (*s, addr_of(s))).collect();
    let flags: Vec<String> = addrs.iter().map(|(svc, a)| format!("--{svc}-addr={a}")).collect();
    for (svc, addr) in &addrs {
        let log = std::fs::File::create(root.path().join(format!("{svc}.log")))?;
        let mut cmd = Command::new(bin(&format!("berth-{svc}")));
        if *svc == "runtime" {
            cmd.args(flags.iter().filter(|f| !f.starts_with("--runtime-")));
        }
        if *svc == "image" {
            // The builder's containers.
            cmd.args(flags.iter().filter(|f| f.starts_with("--runtime-addr")));
        }
        if *svc == "network" {
            cmd.arg("--bridge").arg(&bridge);
        }
        // Each service's own metrics, its address in `<root>/<svc>.metrics`.
        let metrics = format!("127.0.0.1:{}", free_port());
        std::fs::write(root.path().join(format!("{svc}.metrics")), &metrics)?;
        cmd.arg("--metrics-addr").arg(&metrics);
        if let Some(url) = &state_url {
            cmd.arg("--state-url").arg(url);
        }
        let mut child = cmd
            .envs(opts.env.iter().map(|(k, v)| (k, v)))
            .arg("--listen")
            .arg(addr)
            .args(&tls_args)
            .arg("--data-root")
            .arg(&data)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let what = format!("berth-{svc}");
        match addr.strip_prefix("tcp://") {
            Some(sa) => wait_until(&mut child, &what, sa, || std::net::TcpStream::connect(sa).is_ok())?,
            None => wait_for(&root.path().join(format!("{svc}.sock")), &mut child, &what)?,
        }
        others.push(child);
    }
    let host = format!("unix://{}", root.path().join("berth.sock").display());
    let log = std::fs::File::create(root.path().join("berthd.log"))?;
    let mut gw = match gateway_netns {
        Some(ns) => {
            // nsenter changes only the network namespace (`ip netns exec` would remount /sys).
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/run/netns/{ns}")).arg(bin("berth-gateway"));
            c
        }
        None => Command::new(bin("berth-gateway")),
    };
    let mut gw = gw
        .envs(opts.env.iter().map(|(k, v)| (k, v)))
        .args(&flags)
        .args(&tls_args)
        .arg("-H")
        .arg(&host)
        .arg("--config-file")
        .arg("/dev/null")
        .arg("--data-root")
        .arg(&data)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    wait_for(&root.path().join("berth.sock"), &mut gw, "berth-gateway")?;
    Ok(Daemon { child: Some(gw), root, host, args: flags, others, docker_config, bridge, env: opts.env.clone() })
}

/// Status, lower-cased headers and body of an HTTP response.
pub type HttpReply = (u16, Vec<(String, String)>, Vec<u8>);

/// A raw HTTP/1.1 exchange over a unix socket: returns status, lower-cased
/// headers and body. For what the docker CLI hides (headers, exact bodies).
pub fn raw_http(sock: &Path, method: &str, path: &str, body: &[u8]) -> Result<HttpReply> {
    raw_http_with(sock, method, path, &[], body)
}

/// As [`raw_http`], with extra request headers.
pub fn raw_http_with(
    sock: &Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpReply> {
    use std::io::Read;
    let mut s = std::os::unix::net::UnixStream::connect(sock)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: berth\r\nConnection: close\r\n{extra}Content-Length: {}\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").context("no header end")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status: u16 =
        lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).context("status")?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")) {
        body = dechunk(&body);
    }
    Ok((status, headers, body))
}

/// Opens a hijacked stream (attach, exec start) over a unix socket: sends the
/// upgrade request and reads the response head; returns the status and the
/// connection, now raw.
pub fn hijack(sock: &Path, path: &str, body: &[u8]) -> Result<(u16, std::os::unix::net::UnixStream)> {
    use std::io::Read;
    let mut s = std::os::unix::net::UnixStream::connect(sock)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: berth\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b)? == 0 {
            bail!("connection closed in the response head: {}", String::from_utf8_lossy(&head));
        }
        head.push(b[0]);
    }
    let status =
        String::from_utf8_lossy(&head).split_whitespace().nth(1).and_then(|c| c.parse().ok()).context("status")?;
    Ok((status, s))
}

/// Reads multiplexed frames from a hijacked stream until `want` appears in the
/// stdout collected so far (or the stream ends); returns that stdout.
pub fn read_frames_until(s: &mut std::os::unix::net::UnixStream, want: &str) -> Result<String> {
    use std::io::Read;
    let mut out = Vec::new();
    let mut header = [0u8; 8];
    while !String::from_utf8_lossy(&out).contains(want) {
        if s.read_exact(&mut header).is_err() {
            break;
        }
        let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let mut data = vec![0u8; len];
        s.read_exact(&mut data)?;
        if header[0] == 1 {
            out.extend_from_slice(&data);
        }
    }
    Ok(String::from_utf8_lossy(&out).to_string())
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(pos) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..pos]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = pos + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

impl Daemon {
    /// The host end of a container's veth on a network, as the network service
    /// names it: `veth` + 7 characters of the container ID + 4 of the network ID.
    pub fn veth_of(&self, container_id: &str, network: &str) -> Result<String> {
        let net = self.docker(&["network", "inspect", "--format", "{{.Id}}", network])?;
        Ok(format!("veth{}{}", &container_id[..7], &net.trim()[..4]))
    }

    /// The API socket path.
    pub fn sock(&self) -> PathBuf {
        self.root.path().join("berth.sock")
    }

    /// Files under the image store's staging directory (should be none at rest).
    pub fn staging_leftovers(&self) -> usize {
        std::fs::read_dir(self.data_root().join("image/tmp")).map(|d| d.count()).unwrap_or(0)
    }

    /// Count of unpacked layers and blobs on disk.
    pub fn content_counts(&self) -> (usize, usize) {
        let n = |p: PathBuf| std::fs::read_dir(p).map(|d| d.count()).unwrap_or(0);
        (n(self.data_root().join("image/layers")), n(self.data_root().join("image/blobs/sha256")))
    }
}

/// dockerd (Debian's docker.io) beside Berth: its own socket
/// (`DIR/docker.sock`), data root, exec root, pid file and an empty config file
/// under `dir`; its log in `DIR/dockerd.log`.
pub fn dockerd_command(dir: &Path) -> Result<Command> {
    std::fs::write(dir.join("daemon.json"), "{}")?;
    let mut c = Command::new("dockerd");
    c.arg("-H")
        .arg(format!("unix://{}", dir.join("docker.sock").display()))
        .arg("--data-root")
        .arg(dir.join("data"))
        .arg("--exec-root")
        .arg(dir.join("exec"))
        .arg("--pidfile")
        .arg(dir.join("docker.pid"))
        .arg("--config-file")
        .arg(dir.join("daemon.json"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("dockerd.log"))?);
    Ok(c)
}

/// dockerd on a temporary root; stopped, and its host changes undone, on drop.
pub struct Dockerd {
    child: Child,
    /// Its socket, root and log.
    pub dir: tempfile::TempDir,
}

impl Dockerd {
    /// Starts dockerd with `extra` flags (`--bridge none --iptables=false`
    /// leaves the host's firewall alone) and waits until it answers.
    pub fn start(extra: &[&str]) -> Dockerd {
        let dir = tempfile::Builder::new().prefix("beside-dockerd-").tempdir().expect("tmp");
        let child = dockerd_command(dir.path())
            .expect("dockerd command")
            .args(extra)
            .spawn()
            .expect("start dockerd (make test installs docker.io)");
        let d = Dockerd { child, dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !d.docker(&["version"]).0 {
            assert!(Instant::now() < deadline, "dockerd does not answer: {}", d.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    /// dockerd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    /// The docker CLI aimed at this dockerd.
    pub fn docker_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        c.env("DOCKER_HOST", format!("unix://{}", self.dir.path().join("docker.sock").display()))
            .env("DOCKER_CONFIG", self.dir.path())
            .args(args);
        c
    }

    /// Runs the docker CLI: whether it succeeded, and what it printed.
    pub fn docker(&self, args: &[&str]) -> (bool, String) {
        match self.docker_cmd(args).stdin(Stdio::null()).output() {
            Ok(o) => (
                o.status.success(),
                format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
            ),
            Err(e) => (false, e.to_string()),
        }
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let (_, ids) = self.docker(&["ps", "-aq"]);
        for id in ids.split_whitespace() {
            let _ = self.docker(&["rm", "-f", id]);
        }
        // SAFETY: kill(2) of a child we spawned and have not reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        undo_dockerd_host_changes();
    }
}

/// What dockerd leaves on the host after it stops: the FORWARD policy it set
/// to DROP, and docker0.
pub fn undo_dockerd_host_changes() {
    let _ = Command::new("iptables").args(["-P", "FORWARD", "ACCEPT"]).status();
    let _ = Command::new("ip").args(["link", "delete", "docker0"]).stderr(Stdio::null()).status();
}

/// A helper process that must not outlive the test: killed and reaped on drop.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A fresh RSA key and a self-signed certificate for `cn` in `dir`
/// (`NAME.key`, `NAME.crt`, PEM), made by openssl; `extra` goes to `openssl
/// req` (e.g. `-addext subjectAltName=IP:127.0.0.1`). Returns (key, cert).
pub fn self_signed(dir: &Path, name: &str, cn: &str, extra: &[&str]) -> (PathBuf, PathBuf) {
    let (key, cert) = (dir.join(format!("{name}.key")), dir.join(format!("{name}.crt")));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", &format!("/CN={cn}")])
        .args(extra)
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "openssl req: {}", String::from_utf8_lossy(&out.stderr));
    (key, cert)
}

/// A fresh RSA key (`key`) and a certificate (`cert`) for `subject`
/// (`/CN=alice/OU=ops`) signed by the CA `ca_cert`/`ca_key`, with the X.509v3
/// extensions `ext` (`extendedKeyUsage=clientAuth`, `subjectAltName=IP:...`),
/// made by openssl.
pub fn signed_by(ca_cert: &Path, ca_key: &Path, subject: &str, ext: &str, key: &Path, cert: &Path) {
    let dir = cert.parent().unwrap_or(Path::new("."));
    let (csr, ext_file) = (cert.with_extension("csr"), cert.with_extension("ext"));
    std::fs::write(&ext_file, format!("{ext}\n")).expect("ext");
    let run = |args: &[&std::ffi::OsStr]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let s = |v: &str| std::ffi::OsString::from(v);
    let req = [s("req"), s("-new"), s("-newkey"), s("rsa:2048"), s("-nodes"), s("-subj"), s(subject)];
    let req_files = [s("-keyout"), key.into(), s("-out"), csr.as_os_str().into()];
    run(&req.iter().chain(&req_files).map(|a| a.as_os_str()).collect::<Vec<_>>());
    let x509 = [
        s("x509"),
        s("-req"),
        s("-in"),
        csr.as_os_str().into(),
        s("-CA"),
        ca_cert.into(),
        s("-CAkey"),
        ca_key.into(),
        s("-CAcreateserial"),
        s("-days"),
        s("1"),
        s("-extfile"),
        ext_file.as_os_str().into(),
        s("-out"),
        cert.into(),
    ];
    run(&x509.iter().map(|a| a.as_os_str()).collect::<Vec<_>>());
}

/// Runs `cmd` (a server that prints `ready` once it listens) and returns only
/// then, so that no client races its start (a cold Python can take longer
/// than any fixed sleep). Killed and reaped on drop.
pub fn serve_ready(cmd: &mut Command) -> ChildGuard {
    use std::io::BufRead;
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("start the server");
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = std::io::BufReader::new(out).read_line(&mut line);
    }
    let guard = ChildGuard(child);
    assert_eq!(line.trim(), "ready", "the server did not start");
    guard
}

/// A Python TCP server on `addr:port` that answers each connection with the
/// address it saw the connection come from, or with `reply` when given.
pub const WHOAMI: &str = "import socket, sys\ns=socket.socket(); \
                          s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
                          s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(8)\nprint('ready', flush=True)\n\
                          while True:\n  c,a=s.accept(); c.sendall((sys.argv[3] if len(sys.argv) > 3 else a[0]).encode()); c.close()";

/// A network namespace standing for another host, reached through a veth pair
/// whose host end is `link`. Removed on drop. `tag` keeps names unique
/// between tests running at once.
pub struct Outside {
    pub ns: String,
    pub link: String,
    /// The namespace's own address.
    pub addr: String,
    /// Where the namespace's traffic goes: the host's end, or a bridge's gateway.
    pub host_addr: String,
}

fn sh(cmd: &str) {
    let ok = Command::new("sh").args(["-c", cmd]).status().map(|s| s.success()).unwrap_or(false);
    assert!(ok, "{cmd}");
}

impl Outside {
    /// The namespace and its veth pair, the inner end up with `addr/prefix`.
    fn plumb(ns: String, link: String, addr: &str, prefix: u8, host_addr: &str) -> Outside {
        let o = Outside { ns, link, addr: addr.to_string(), host_addr: host_addr.to_string() };
        sh(&format!("ip netns add {}", o.ns));
        sh(&format!("ip link add {} type veth peer name inner netns {}", o.link, o.ns));
        sh(&format!(
            "ip netns exec {0} ip addr add {1}/{prefix} dev inner && ip netns exec {0} ip link set inner up",
            o.ns, o.addr
        ));
        o
    }

    /// Another host on a link of its own: 10.239.N.1/30 on the host's end,
    /// 10.239.N.2/30 inside, with its default route back through the host.
    pub fn new(tag: &str, n: u8) -> Outside {
        let o = Outside::plumb(
            format!("ns{tag}"),
            format!("vo{tag}"),
            &format!("10.239.{n}.2"),
            30,
            &format!("10.239.{n}.1"),
        );
        sh(&format!("ip addr add {}/30 dev {1} && ip link set {1} up", o.host_addr, o.link));
        sh(&format!(
            "ip netns exec {0} ip link set lo up && ip netns exec {0} ip route add default via {1}",
            o.ns, o.host_addr
        ));
        o
    }

    /// A neighbour of a bridge's containers (`addr` in its /16), plugged into
    /// the bridge, that sends 127.0.0.0/8 to the bridge's `gateway`: what a
    /// container with CAP_NET_RAW, or a host on the segment, can send. Its own
    /// loopback stays down, so that 127.0.0.0/8 is not local to it.
    pub fn on_bridge(tag: &str, bridge: &str, addr: &str, gateway: &str) -> Outside {
        let o = Outside::plumb(format!("nb{tag}"), format!("vn{tag}"), addr, 16, gateway);
        sh(&format!("ip link set {0} master {bridge} && ip link set {0} up", o.link));
        sh(&format!(
            "ip netns exec {0} sh -c 'echo 1 > /proc/sys/net/ipv4/conf/all/route_localnet \
             && echo 1 > /proc/sys/net/ipv4/conf/inner/route_localnet' \
             && ip netns exec {0} ip route add 127.0.0.0/8 via {gateway} dev inner",
            o.ns
        ));
        o
    }

    /// Runs a Python server inside (see [`serve_ready`]).
    pub fn serve(&self, script: &str, args: &[&str]) -> ChildGuard {
        serve_ready(Command::new("ip").args(["netns", "exec", &self.ns, "python3", "-c", script]).args(args))
    }

    /// A [`WHOAMI`] server on `addr:port` inside.
    pub fn serve_whoami(&self, port: u16) -> ChildGuard {
        self.serve(WHOAMI, &[&self.addr, &port.to_string()])
    }

    /// An HTTP GET from inside; the body, if any came.
    pub fn get(&self, url: &str) -> Option<String> {
        let script =
            "import sys, urllib.request\nprint(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode())";
        let o = Command::new("ip").args(["netns", "exec", &self.ns, "python3", "-c", script, url]).output().ok()?;
        o.status.success().then(|| String::from_utf8_lossy(&o.stdout).to_string())
    }

    /// A TCP connection from inside to `addr:port`; what the server said, if it answered.
    pub fn fetch(&self, addr: &str, port: u16) -> Option<String> {
        let script = "import socket, sys\ns=socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)\n\
                      print(s.recv(100).decode())";
        let o = Command::new("ip")
            .args(["netns", "exec", &self.ns, "python3", "-c", script, addr, &port.to_string()])
            .output()
            .ok()?;
        o.status.success().then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "delete", &self.link]).status();
        let _ = Command::new("ip").args(["netns", "delete", &self.ns]).status();
    }
}
