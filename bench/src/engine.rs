//! The two engines under test, each driven through the same docker CLI: Berth
//! (berthd on a temporary root, through the test harness) and dockerd (Debian's
//! docker.io, started here with its own socket, data root, exec root and an
//! empty config, and stopped after, with what it leaves on the host undone).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

enum Kind {
    Berth(Box<berth_tests::Daemon>),
    Dockerd { child: Option<Child>, dir: tempfile::TempDir },
}

/// One engine: its name, API socket and processes.
pub struct Engine {
    /// "berth" or "dockerd".
    pub name: String,
    /// The API socket.
    pub socket: PathBuf,
    kind: Kind,
    docker_config: PathBuf,
}

/// Resident and proportional set size of an engine's processes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// Resident set size, MiB.
    pub rss_mib: f64,
    /// Proportional set size, MiB.
    pub pss_mib: f64,
}

fn wait_socket(path: &Path, child: &mut Child, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        if let Some(s) = child.try_wait()? {
            bail!("{what} exited early with {s}");
        }
        if Instant::now() > deadline {
            bail!("{what} did not create {}", path.display());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

fn stop(mut child: Child) {
    // SAFETY: kill(2) of a child we spawned and have not reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Every process whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
                .filter(|pid| {
                    std::fs::read(format!("/proc/{pid}/cmdline"))
                        .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn kib(smaps: &str, key: &str) -> f64 {
    smaps
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
}

fn memory_of(pids: &[i32]) -> Memory {
    let mut m = Memory::default();
    for pid in pids {
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) {
            m.rss_mib += kib(&s, "Rss:") / 1024.0;
            m.pss_mib += kib(&s, "Pss:") / 1024.0;
        }
    }
    m
}

impl Engine {
    /// berthd on a temporary root.
    pub fn berth() -> Result<Self> {
        Self::berth_with("berth", &[], &[])
    }

    /// berthd on a temporary root with `args` and `env`, called `name`.
    pub fn berth_with(name: &str, args: &[&str], env: &[(&str, &str)]) -> Result<Self> {
        let d = berth_tests::Daemon::start_with_env(args, env)?;
        Ok(Engine {
            name: name.into(),
            socket: d.sock(),
            docker_config: d.docker_config.clone(),
            kind: Kind::Berth(Box::new(d)),
        })
    }

    /// dockerd with its own socket, data root and exec root.
    pub fn dockerd() -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("bench-dockerd-").tempdir()?;
        let mut child =
            berth_tests::dockerd_command(dir.path())?.spawn().context("start dockerd (apt-get install docker.io)")?;
        wait_socket(&dir.path().join("docker.sock"), &mut child, "dockerd")?;
        let docker_config = dir.path().join("docker-config");
        std::fs::create_dir_all(&docker_config)?;
        let e = Engine {
            name: "dockerd".into(),
            socket: dir.path().join("docker.sock"),
            docker_config,
            kind: Kind::Dockerd { child: Some(child), dir },
        };
        // The socket appears before the API answers.
        let deadline = Instant::now() + Duration::from_secs(60);
        while e.output(&["version"]).map(|o| !o.status.success()).unwrap_or(true) {
            if Instant::now() > deadline {
                bail!("dockerd does not answer");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(e)
    }

    /// The docker CLI aimed at this engine, to spawn.
    pub fn command(&self, args: &[&str]) -> Command {
        self.cmd(args)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &self.docker_config)
            .env("DOCKER_CONFIG", &self.docker_config)
            .env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .args(args)
            .stdin(Stdio::null());
        c
    }

    /// Runs the docker CLI and returns its output.
    pub fn output(&self, args: &[&str]) -> Result<Output> {
        Ok(self.cmd(args).output()?)
    }

    /// Runs the docker CLI, expecting success; returns stdout.
    pub fn out(&self, args: &[&str]) -> Result<String> {
        let o = self.output(args)?;
        if !o.status.success() {
            bail!("{}: docker {} failed: {}", self.name, args.join(" "), String::from_utf8_lossy(&o.stderr));
        }
        Ok(String::from_utf8_lossy(&o.stdout).to_string())
    }

    /// Runs the docker CLI, expecting success, output discarded.
    pub fn ok(&self, args: &[&str]) -> Result<()> {
        let st = self.cmd(args).stdout(Stdio::null()).stderr(Stdio::piped()).output()?;
        if !st.status.success() {
            bail!("{}: docker {} failed: {}", self.name, args.join(" "), String::from_utf8_lossy(&st.stderr));
        }
        Ok(())
    }

    /// `docker load` of a tarball.
    pub fn load(&self, tar: &[u8]) -> Result<()> {
        use std::io::Write;
        let mut child = self.cmd(&["load"]).stdin(Stdio::piped()).stdout(Stdio::null()).spawn()?;
        child.stdin.take().context("stdin")?.write_all(tar)?;
        if !child.wait()?.success() {
            bail!("{}: docker load failed", self.name);
        }
        Ok(())
    }

    /// Removes containers (forcibly), in batches.
    pub fn remove_all(&self, ids: &[String]) -> Result<()> {
        for chunk in ids.chunks(100) {
            let mut args = vec!["rm", "-f"];
            args.extend(chunk.iter().map(String::as_str));
            self.ok(&args)?;
        }
        Ok(())
    }

    /// The engine's processes: for Berth berthd and every shim; for dockerd
    /// dockerd, its containerd and every containerd-shim (not the containers).
    fn pids(&self) -> Vec<i32> {
        match &self.kind {
            Kind::Berth(d) => processes_mentioning(&d.root.path().to_string_lossy()),
            Kind::Dockerd { child, dir } => {
                let mut pids = processes_mentioning(&dir.path().to_string_lossy());
                if let Some(c) = child {
                    pids.push(c.id() as i32);
                }
                pids.sort_unstable();
                pids.dedup();
                pids
            }
        }
    }

    /// CPU time (user and system) the engine's processes used so far, in ms.
    pub fn cpu_ms(&self) -> f64 {
        let tick_ms = 1000.0 / 100.0; // USER_HZ is 100 on Linux.
        self.pids()
            .iter()
            .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
            .filter_map(|stat| {
                // Fields after the command (which may hold spaces): utime is the 12th, stime the 13th.
                let rest = stat.rsplit_once(')')?.1;
                let f: Vec<&str> = rest.split_whitespace().collect();
                Some(f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?)
            })
            .sum::<f64>()
            * tick_ms
    }

    /// RSS and PSS of the engine's processes.
    pub fn memory(&self) -> Memory {
        memory_of(&self.pids())
    }

    /// RSS and PSS of one per-container monitor (berth-shim or
    /// containerd-shim-runc-v2), averaged over those running.
    pub fn shim_memory(&self) -> Memory {
        let shims: Vec<i32> = self
            .pids()
            .into_iter()
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains("shim"))
            })
            .collect();
        let total = memory_of(&shims);
        let n = shims.len().max(1) as f64;
        Memory { rss_mib: total.rss_mib / n, pss_mib: total.pss_mib / n }
    }

    /// Starts a second daemon of this kind on a fresh root and measures the time
    /// until `docker version` answers; stops it again.
    pub fn cold_start_ms(&self) -> Result<f64> {
        let dir = tempfile::Builder::new().prefix("bench-cold-").tempdir()?;
        let (mut cmd, sock) = match &self.kind {
            Kind::Berth(_) => {
                let mut c = Command::new(berth_tests::bin("berthd"));
                let sock = dir.path().join("berth.sock");
                c.arg("--data-root")
                    .arg(dir.path().join("data"))
                    .arg("--exec-root")
                    .arg(dir.path().join("exec"))
                    .arg("--config-file")
                    .arg("/dev/null")
                    .arg("--bridge")
                    .arg("btcold0")
                    .arg("-H")
                    .arg(format!("unix://{}", sock.display()))
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                (c, sock)
            }
            Kind::Dockerd { .. } => (berth_tests::dockerd_command(dir.path())?, dir.path().join("docker.sock")),
        };
        let start = Instant::now();
        let mut child = cmd.spawn()?;
        let version = || {
            Command::new("docker")
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("HOME", dir.path())
                .env("DOCKER_CONFIG", dir.path())
                .env("DOCKER_HOST", format!("unix://{}", sock.display()))
                .arg("version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let result = loop {
            if sock.exists() && version() {
                break Ok(start.elapsed().as_secs_f64() * 1000.0);
            }
            if let Ok(Some(s)) = child.try_wait() {
                break Err(anyhow::anyhow!("{} exited during cold start with {s}", self.name));
            }
            if start.elapsed() > Duration::from_secs(60) {
                break Err(anyhow::anyhow!("{} did not answer within 60 s", self.name));
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        stop(child);
        // The cold dockerd shares docker0 with the one under test; that one undoes
        // dockerd's host changes when it stops.
        if let Kind::Berth(_) = &self.kind {
            berth_tests::remove_bridge_and_rules("btcold0");
        }
        result
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Kind::Dockerd { child, .. } = &mut self.kind
            && let Some(c) = child.take()
        {
            stop(c);
            berth_tests::undo_dockerd_host_changes();
        }
    }
}
