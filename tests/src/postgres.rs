//! Throwaway PostgreSQL servers for the tests: Debian's `postgresql` binaries
//! run as the `postgres` user on a data directory and port of their own, with
//! trust authentication on loopback only.
//!
//! [`Postgres::shared`] is one server per test process (each test takes a
//! database of its own with [`Postgres::create_database`]); it is started from
//! a thread that lives as long as the process and asks the kernel to stop it
//! (SIGQUIT, an immediate shutdown) when that thread ends, so no server
//! outlives a test run, even a killed one. [`Postgres::start`] is one a test
//! owns, to stop, kill or restart; it is stopped and removed on drop.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A PostgreSQL server for tests.
pub struct Postgres {
    bin: PathBuf,
    /// The data directory (owned by the `postgres` user).
    pub dir: PathBuf,
    /// The TCP port on 127.0.0.1.
    pub port: u16,
    child: Mutex<Option<Child>>,
    next_db: AtomicU32,
}

/// The newest installed server's `bin` directory.
fn bin_dir() -> Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed (make test-deps installs Debian's postgresql)")?
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, p): &(u32, PathBuf)| p.join("postgres").exists())
        .collect();
    versions.sort();
    versions.pop().map(|(_, p)| p).context("no PostgreSQL server under /usr/lib/postgresql")
}

fn postgres_ids() -> Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&"postgres") && f.len() > 3).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
        })
        .context("no postgres user (Debian's postgresql package makes it)")
}

/// Removes the data directories of test servers whose process is gone.
fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(pid) = name.strip_prefix("berth-pg-").and_then(|r| r.split('-').next()) else { continue };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

impl Postgres {
    /// Makes a data directory and starts a server on it, owned by the caller.
    pub fn start() -> Result<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        sweep_stale();
        let bin = bin_dir()?;
        let (uid, gid) = postgres_ids()?;
        let dir = std::env::temp_dir().join(format!(
            "berth-pg-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir)?;
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))?;
        let out = Command::new(bin.join("initdb"))
            .args(["-D"])
            .arg(&dir)
            .args(["-U", "berth", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"])
            .uid(uid)
            .gid(gid)
            .current_dir(&dir)
            .output()
            .context("run initdb")?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let pg = Postgres { bin, dir, port: crate::free_port(), child: Mutex::new(None), next_db: AtomicU32::new(0) };
        pg.launch()?;
        Ok(pg)
    }

    /// The server of this test process, started on first use.
    pub fn shared() -> &'static Postgres {
        static SHARED: std::sync::OnceLock<Postgres> = std::sync::OnceLock::new();
        SHARED.get_or_init(|| {
            // Started from a thread that never ends: the server's
            // parent-death signal fires when the process does.
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let _ = tx.send(Postgres::start());
                loop {
                    std::thread::park();
                }
            });
            match rx.recv() {
                Ok(Ok(pg)) => pg,
                Ok(Err(e)) => panic!("start the tests' PostgreSQL server: {e:#}"),
                Err(e) => panic!("start the tests' PostgreSQL server: {e}"),
            }
        })
    }

    fn launch(&self) -> Result<()> {
        let (uid, gid) = postgres_ids()?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("server.log"))?;
        let mut cmd = Command::new(self.bin.join("postgres"));
        cmd.arg("-D")
            .arg(&self.dir)
            .args(["-p", &self.port.to_string(), "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=400"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", self.dir.display()))
            .uid(uid)
            .gid(gid)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // SAFETY: prctl(2) only, between fork and exec (async-signal-safe):
        // the server gets SIGQUIT (immediate shutdown) when the thread that
        // started it ends, so it never outlives the tests.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().context("spawn postgres")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // Exited (the port was taken meanwhile, say)? Then whatever
            // answers is not this server.
            if let Some(status) = child.try_wait()? {
                bail!("postgres exited with {status}: {}", self.log());
            }
            // Asked on its own unix socket, in its own directory.
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-p", &self.port.to_string(), "-h"])
                .arg(&self.dir)
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("postgres did not become ready in 30s: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        *self.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        Ok(())
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// A URL for database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://berth@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates a new, empty database and returns its URL.
    pub fn create_database(&self) -> Result<String> {
        let name = format!("t{}_{}", std::process::id(), self.next_db.fetch_add(1, Ordering::Relaxed));
        let out = Command::new(self.bin.join("createdb"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "berth", &name])
            .output()
            .context("run createdb")?;
        if !out.status.success() {
            bail!("createdb {name}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(self.url(&name))
    }

    /// Runs SQL with psql on database `db`; returns what it printed (unaligned, tuples only).
    pub fn psql(&self, db: &str, sql: &str) -> Result<String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "berth", "-d", db])
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .context("run psql")?;
        if !out.status.success() {
            bail!("psql {sql:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Stops the server (fast shutdown: sessions are ended, committed work is kept).
    pub fn stop(&self) -> Result<()> {
        let child = self.child.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut child) = child {
            // SAFETY: kill(2) on our own child, which has not been reaped.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            child.wait()?;
        }
        Ok(())
    }

    /// Kills the server and every backend with SIGKILL: a crash. The next
    /// start recovers from the write-ahead log.
    pub fn kill9(&self) -> Result<()> {
        let child = self.child.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut child) = child {
            let postmaster = child.id() as i32;
            // Its backends, found before it goes (they are its children).
            let backends: Vec<i32> = std::fs::read_dir("/proc")?
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter(|pid| {
                    std::fs::read_to_string(format!("/proc/{pid}/stat"))
                        .ok()
                        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.split(' ').nth(1).map(str::to_string)))
                        .flatten()
                        .and_then(|ppid| ppid.parse::<i32>().ok())
                        == Some(postmaster)
                })
                .collect();
            // SAFETY: kill(2) on our own child and its children.
            unsafe { libc::kill(postmaster, libc::SIGKILL) };
            for pid in backends {
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            child.wait()?;
            // The killed backends may hold the shared memory a moment longer.
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }

    /// Starts the server again on the same directory and port.
    pub fn restart(&self) -> Result<()> {
        self.launch()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
