//! The container's log in dockerd's json-file format, one JSON object per line.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use serde_json::json;

/// The longest log line kept whole; longer output is split, as json-file does.
const MAX_LINE: usize = 16 * 1024;

fn now() -> String {
    crate::now()
}

/// Output of one stream not yet written as a whole line.
pub struct Pending {
    /// `stdout` or `stderr`.
    pub name: &'static str,
    /// The bytes after the last newline.
    pub bytes: Vec<u8>,
}

/// The container's json-file log, rotated like dockerd's `max-size`/`max-file`:
/// `container.log` is current, `container.log.1` the one before, and so on.
pub struct Log {
    /// The current file.
    pub file: std::fs::File,
    path: PathBuf,
    written: u64,
    max_size: u64,
    max_files: u32,
}

impl Log {
    /// Opens (appends to) the log at `path`.
    pub fn open(path: PathBuf, max_size: u64, max_files: u32) -> std::io::Result<Self> {
        if path.as_os_str().is_empty() {
            // The `none` log driver: output goes to attached clients only.
            let file = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
            return Ok(Log { file, path, written: 0, max_size: 0, max_files: 1 });
        }
        // A container's output is its owner's business: 0600, also for a log an
        // older Berth left readable.
        let file = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(&path)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
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
        if let Ok(f) = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(&self.path) {
            self.file = f;
        }
        self.written = 0;
    }

    /// Writes one entry.
    pub fn line(&mut self, stream: &str, bytes: &[u8]) {
        let entry = json!({"log": String::from_utf8_lossy(bytes), "stream": stream, "time": now()}).to_string();
        if self.max_size > 0 && self.written + entry.len() as u64 + 1 > self.max_size && self.written > 0 {
            self.rotate();
        }
        // A log that cannot be written must not stop the container: drop the line.
        if writeln!(self.file, "{entry}").is_ok() {
            self.written += entry.len() as u64 + 1;
        }
    }

    /// Moves complete lines (and over-long partial ones) from `s.bytes` to the log.
    pub fn flush(&mut self, s: &mut Pending, all: bool) {
        while let Some(pos) = s.bytes.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = s.bytes.drain(..=pos).collect();
            self.line(s.name, &line);
        }
        if (all && !s.bytes.is_empty()) || s.bytes.len() >= MAX_LINE {
            let rest: Vec<u8> = std::mem::take(&mut s.bytes);
            self.line(s.name, &rest);
        }
    }
}
