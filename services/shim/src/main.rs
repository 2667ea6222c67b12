//! `berth-shim`: one small monitor process per container.
//!
//! The runtime service starts `berth-shim --bundle DIR`. The shim detaches (it
//! forks, the first process exits at once, the second starts a new session), so it
//! is nobody's child but init's and outlives every Berth service. It then:
//! 1. creates the container's init in new namespaces (see [`init`]) with stdout
//!    and stderr on pipes it holds;
//! 2. reports `ok PID` or `err CODE MESSAGE` on its own stdout, which the runtime
//!    service reads to its end, and writes `DIR/pid`;
//! 3. copies the container's output to `DIR/container.log` in dockerd's json-file
//!    format (`{"log":..,"stream":"stdout","time":..}` per line);
//! 4. when the init exits, writes `DIR/exit.json` (`{"ExitCode":N,"FinishedAt":..}`)
//!    atomically and exits.
//!
//! It is single-threaded and has no async runtime, so its memory stays small.

mod init;
mod sys;

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// The longest log line kept whole; longer output is split, as json-file does.
const MAX_LINE: usize = 16 * 1024;

fn now() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(tmp, path)
}

struct Stream {
    fd: libc::c_int,
    name: &'static str,
    pending: Vec<u8>,
    open: bool,
}

/// The container's json-file log, rotated like dockerd's `max-size`/`max-file`:
/// `container.log` is current, `container.log.1` the one before, and so on.
struct Log {
    file: std::fs::File,
    path: PathBuf,
    written: u64,
    max_size: u64,
    max_files: u32,
}

impl Log {
    fn open(path: PathBuf, max_size: u64, max_files: u32) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
        let written = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(Log { file, path, written, max_size, max_files })
    }

    fn rotate(&mut self) {
        let name = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        if self.max_files <= 1 {
            let _ = self.file.set_len(0);
        } else {
            for n in (1..self.max_files - 1).rev() {
                let _ = std::fs::rename(name(n), name(n + 1));
            }
            let _ = std::fs::rename(&self.path, name(1));
        }
        if let Ok(f) = std::fs::OpenOptions::new().create(true).append(true).open(&self.path) {
            self.file = f;
        }
        self.written = 0;
    }

    fn line(&mut self, stream: &str, bytes: &[u8]) {
        let entry = json!({"log": String::from_utf8_lossy(bytes), "stream": stream, "time": now()}).to_string();
        if self.max_size > 0 && self.written + entry.len() as u64 + 1 > self.max_size && self.written > 0 {
            self.rotate();
        }
        // A log that cannot be written must not stop the container: drop the line.
        if writeln!(self.file, "{entry}").is_ok() {
            self.written += entry.len() as u64 + 1;
        }
    }

    /// Moves complete lines (and over-long partial ones) from `s.pending` to the log.
    fn flush(&mut self, s: &mut Stream, all: bool) {
        while let Some(pos) = s.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = s.pending.drain(..=pos).collect();
            self.line(s.name, &line);
        }
        if (all && !s.pending.is_empty()) || s.pending.len() >= MAX_LINE {
            let rest: Vec<u8> = std::mem::take(&mut s.pending);
            self.line(s.name, &rest);
        }
    }
}

fn report(line: &str) {
    let _ = sys::write_all(1, format!("{line}\n").as_bytes());
    // The runtime reads our stdout to its end: close it by pointing it at /dev/null.
    if let Ok(null) = sys::dev_null() {
        let _ = sys::dup2(null, 1);
        sys::close(null);
    }
}

fn run(bundle: &Path) -> Result<(), String> {
    let spec: Value = std::fs::read(bundle.join("config.json"))
        .map_err(|e| format!("read config.json: {e}"))
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| format!("parse config.json: {e}")))?;
    let log_path = spec["annotations"]["berth.log.path"]
        .as_str()
        .map(PathBuf::from)
        .unwrap_or_else(|| bundle.join("container.log"));
    let max_size = spec["annotations"]["berth.log.max-size"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
    let max_files = spec["annotations"]["berth.log.max-file"].as_str().and_then(|s| s.parse().ok()).unwrap_or(1);
    let mut log = Log::open(log_path, max_size, max_files).map_err(|e| format!("open log: {e}"))?;

    let (out_r, out_w) = sys::pipe().map_err(|e| e.to_string())?;
    let (err_r, err_w) = sys::pipe().map_err(|e| e.to_string())?;
    let (sync_r, sync_w) = sys::pipe().map_err(|e| e.to_string())?;
    // Children of the shim start in a new PID namespace, whose PID 1 is the container's init.
    sys::unshare(libc::CLONE_NEWPID).map_err(|e| format!("unshare pid namespace: {e}"))?;
    let pid = match sys::fork().map_err(|e| e.to_string())? {
        sys::Forked::Child => {
            sys::close(out_r);
            sys::close(err_r);
            sys::close(sync_r);
            let args = init::InitArgs { spec: &spec, bundle, stdout: out_w, stderr: err_w };
            let init::InitError(code, msg) = init::run(&args);
            let _ = sys::write_all(sync_w, format!("{code}:{msg}").as_bytes());
            sys::exit_now(code);
        }
        sys::Forked::Parent(pid) => pid,
    };
    sys::close(out_w);
    sys::close(err_w);
    sys::close(sync_w);
    // The sync pipe closes on exec (close-on-exec) or carries the failure.
    let mut buf = vec![0u8; 4096];
    let mut failure = Vec::new();
    loop {
        match sys::read(sync_r, &mut buf) {
            Ok(0) => break,
            Ok(n) => failure.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    sys::close(sync_r);
    if !failure.is_empty() {
        let text = String::from_utf8_lossy(&failure).to_string();
        let (code, msg) = text.split_once(':').unwrap_or(("128", text.as_str()));
        let code: i32 = code.parse().unwrap_or(128);
        let _ = sys::wait_child(pid, false);
        let exit = json!({"ExitCode": code, "FinishedAt": now(), "Error": msg});
        let _ = write_atomic(&bundle.join("exit.json"), exit.to_string().as_bytes());
        report(&format!("err {code} {msg}"));
        return Ok(());
    }
    let _ = write_atomic(&bundle.join("pid"), pid.to_string().as_bytes());
    report(&format!("ok {pid}"));

    let mut streams = [
        Stream { fd: out_r, name: "stdout", pending: Vec::new(), open: true },
        Stream { fd: err_r, name: "stderr", pending: Vec::new(), open: true },
    ];
    let mut exit_code = None;
    loop {
        let mut fds: Vec<libc::pollfd> = streams
            .iter()
            .filter(|s| s.open)
            .map(|s| libc::pollfd { fd: s.fd, events: libc::POLLIN, revents: 0 })
            .collect();
        if fds.is_empty() && exit_code.is_some() {
            break;
        }
        if !fds.is_empty() {
            // SAFETY: `fds` is a valid array of pollfd of the length we pass.
            unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 200) };
        } else {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        for s in streams.iter_mut().filter(|s| s.open) {
            let ready = fds.iter().any(|p| p.fd == s.fd && p.revents != 0);
            if !ready {
                continue;
            }
            match sys::read(s.fd, &mut buf) {
                Ok(0) | Err(_) => {
                    s.open = false;
                    log.flush(s, true);
                    sys::close(s.fd);
                }
                Ok(n) => {
                    s.pending.extend_from_slice(&buf[..n]);
                    log.flush(s, false);
                }
            }
        }
        if exit_code.is_none() {
            exit_code = sys::wait_child(pid, true).ok().flatten();
            if exit_code.is_some() {
                // PID 1 is gone, so the kernel killed the rest of its namespace: the
                // pipes close once the last writer is gone; drain what is left.
                for s in streams.iter_mut() {
                    if s.open {
                        let _ = sys::set_nonblocking(s.fd);
                    }
                }
            }
        }
        if exit_code.is_some() {
            for s in streams.iter_mut().filter(|s| s.open) {
                loop {
                    match sys::read(s.fd, &mut buf) {
                        Ok(n) if n > 0 => {
                            s.pending.extend_from_slice(&buf[..n]);
                            log.flush(s, false);
                        }
                        Ok(_) => {
                            s.open = false;
                            log.flush(s, true);
                            sys::close(s.fd);
                            break;
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(_) => {
                            s.open = false;
                            break;
                        }
                    }
                }
            }
        }
    }
    let _ = log.file.sync_all();
    let exit = json!({"ExitCode": exit_code.unwrap_or(128), "FinishedAt": now()});
    write_atomic(&bundle.join("exit.json"), exit.to_string().as_bytes()).map_err(|e| format!("write exit.json: {e}"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bundle = match args.iter().position(|a| a == "--bundle").and_then(|i| args.get(i + 1)) {
        Some(b) => PathBuf::from(b),
        None => {
            eprintln!("usage: berth-shim --bundle DIR");
            std::process::exit(2);
        }
    };
    // Detach: the first process exits at once so the runtime can reap it; the
    // second leads a new session and is reparented to init.
    match sys::fork() {
        Ok(sys::Forked::Parent(_)) => std::process::exit(0),
        Ok(sys::Forked::Child) => sys::setsid(),
        Err(e) => {
            report(&format!("err 125 fork shim: {e}"));
            std::process::exit(1);
        }
    }
    if let Err(e) = run(&bundle) {
        report(&format!("err 125 {e}"));
        std::process::exit(1);
    }
}
