//! The typed half of the shim's control protocol and bundle: the requests a
//! client sends, the replies it gets, the exit records the shim leaves in the
//! bundle, and the bundle annotations the runtime writes for the shim. Both ends
//! (the `berth-shim` binary and the runtime service) use these types, so a field
//! cannot be misspelt on one side only, and a request that lacks a required
//! field is refused instead of read as a default (an exec without `uid` would
//! otherwise run as root).

use std::collections::HashMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One request: the first line of every connection to the control socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum Request {
    /// Stream the container's output (and take its input): a stream follows the reply.
    Attach {
        /// Forward the client's input to the container's stdin.
        stdin: bool,
        /// Send the container's stdout.
        stdout: bool,
        /// Send the container's stderr.
        stderr: bool,
    },
    /// Let the init, held at its barrier, run the command.
    Start,
    /// Reply once the container's init has exited, with its [`ExitRecord`].
    Wait,
    /// Set the window size of the container's TTY, or of an exec's.
    Resize {
        /// Rows.
        height: u16,
        /// Columns.
        width: u16,
        /// The exec whose TTY to resize; `None` for the container's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exec: Option<String>,
    },
    /// Run a process in the container's namespaces.
    Exec(ExecRequest),
}

/// A process to run in a running container (`docker exec`). Every field is
/// required: the runtime resolves the user, the environment and the working
/// directory; the shim never guesses them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    /// The exec's ID (hex), also the name of its exit record.
    pub id: String,
    /// The command and its arguments.
    pub args: Vec<String>,
    /// `KEY=value` pairs.
    pub env: Vec<String>,
    /// The working directory inside the container.
    pub cwd: String,
    /// User ID.
    pub uid: u32,
    /// Primary group ID.
    pub gid: u32,
    /// Supplementary group IDs.
    pub groups: Vec<u32>,
    /// Run on a new TTY.
    pub tty: bool,
    /// Take input from the client.
    pub stdin: bool,
    /// No stream: the reply is all the client gets.
    pub detach: bool,
}

/// The reply line to every request: `{"ok":true,...}` or
/// `{"ok":false,"code":N,"error":"..."}`. A `wait` reply carries the exit record's
/// fields beside `ok`, an `exec` reply the process's PID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// Whether the request was carried out.
    pub ok: bool,
    /// A refusal's exit-code-like status (125: the shim's own failure, 126/127:
    /// the command cannot be executed, 128: setup failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    /// A refusal's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The PID of a started exec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// The container's exit, in a `wait` reply.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<ExitRecord>,
}

impl Reply {
    /// Success with nothing to add.
    pub fn ok() -> Self {
        Reply { ok: true, code: None, error: None, pid: None, exit: None }
    }

    /// A refusal.
    pub fn refused(code: i32, error: impl Into<String>) -> Self {
        Reply { ok: false, code: Some(code), error: Some(error.into()), pid: None, exit: None }
    }

    /// `Err((code, message))` for a refusal.
    pub fn into_result(self) -> Result<Reply, (i32, String)> {
        if self.ok { Ok(self) } else { Err((self.code.unwrap_or(125), self.error.unwrap_or_else(|| "refused".into()))) }
    }
}

/// How a process ended, as the shim records it: `exit.json` for the container's
/// init, `exec-<id>.json` for an exec (dockerd's field names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The exit code (128+N for a signal).
    #[serde(rename = "ExitCode")]
    pub exit_code: i64,
    /// When it ended, RFC 3339.
    #[serde(rename = "FinishedAt")]
    pub finished_at: String,
    /// Why the command could not run, when it could not.
    #[serde(rename = "Error", default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The file names the shim writes in the bundle.
pub mod files {
    /// The container's exit record ([`super::ExitRecord`]).
    pub const EXIT: &str = "exit.json";
    /// The container's init PID, decimal.
    pub const PID: &str = "pid";
    /// The OCI spec the runtime writes.
    pub const SPEC: &str = "config.json";

    /// The exit record of exec `id`.
    pub fn exec_exit(id: &str) -> String {
        format!("exec-{id}.json")
    }
}

/// The annotation keys of the spec, in one place.
pub mod keys {
    /// Overlay lower directories, `:`-separated, top first.
    pub const LOWERDIR: &str = "berth.overlay.lowerdir";
    /// The overlay's writable layer.
    pub const UPPERDIR: &str = "berth.overlay.upperdir";
    /// The overlay's work directory.
    pub const WORKDIR: &str = "berth.overlay.workdir";
    /// Where the shim writes the container's json-file log.
    pub const LOG_PATH: &str = "berth.log.path";
    /// Rotate the log at this many bytes (0: never).
    pub const LOG_MAX_SIZE: &str = "berth.log.max-size";
    /// Keep this many log files, the current one included.
    pub const LOG_MAX_FILE: &str = "berth.log.max-file";
    /// `true`: the container's stdin is a pipe the shim keeps open (`-i`).
    pub const STDIN: &str = "berth.stdin";
    /// `true`: a minimal init runs as PID 1 and the command under it (`--init`).
    pub const INIT: &str = "berth.init";
    /// The container's cgroup directories, one a line.
    pub const CGROUPS: &str = "berth.cgroups";
    /// The OCI runtime binary (`runc`, `crun`) that makes the container, by
    /// absolute path; absent: the shim makes it itself.
    pub const RUNTIME: &str = "berth.runtime";
}

/// What the runtime tells the shim through the spec's annotations.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Annotations {
    /// Overlay lower directories, top first.
    pub lowerdirs: Vec<PathBuf>,
    /// The overlay's writable layer.
    pub upperdir: PathBuf,
    /// The overlay's work directory.
    pub workdir: PathBuf,
    /// The json-file log.
    pub log_path: PathBuf,
    /// Rotate the log at this many bytes (0: never).
    pub log_max_size: u64,
    /// Log files to keep (at least 1).
    pub log_max_file: u32,
    /// Keep the container's stdin open (`-i`).
    pub stdin: bool,
    /// Run a minimal init as PID 1 (`--init`).
    pub init: bool,
    /// The container's cgroup directories.
    pub cgroups: Vec<PathBuf>,
    /// The OCI runtime that makes the container (`--runtime runc`); `None`: the
    /// shim's own init.
    pub runtime: Option<PathBuf>,
}

impl Annotations {
    /// The annotations as the spec's string map.
    pub fn to_map(&self) -> HashMap<String, String> {
        let path = |p: &PathBuf| p.to_string_lossy().into_owned();
        let mut m = HashMap::new();
        m.insert(keys::LOWERDIR.into(), self.lowerdirs.iter().map(path).collect::<Vec<_>>().join(":"));
        m.insert(keys::UPPERDIR.into(), path(&self.upperdir));
        m.insert(keys::WORKDIR.into(), path(&self.workdir));
        m.insert(keys::LOG_PATH.into(), path(&self.log_path));
        m.insert(keys::LOG_MAX_SIZE.into(), self.log_max_size.to_string());
        m.insert(keys::LOG_MAX_FILE.into(), self.log_max_file.to_string());
        m.insert(keys::STDIN.into(), self.stdin.to_string());
        m.insert(keys::INIT.into(), self.init.to_string());
        m.insert(keys::CGROUPS.into(), self.cgroups.iter().map(path).collect::<Vec<_>>().join("\n"));
        if let Some(runtime) = &self.runtime {
            m.insert(keys::RUNTIME.into(), path(runtime));
        }
        m
    }

    /// Reads the annotations back; a missing or malformed required one is an
    /// error naming it. `stdin`, `init`, `cgroups` and `runtime` may be absent
    /// (false, none). A runtime must be named by absolute path.
    pub fn from_map(m: &HashMap<String, String>) -> Result<Self, String> {
        let get = |k: &str| m.get(k).map(String::as_str).ok_or_else(|| format!("annotation {k} is missing"));
        let num = |k: &str| -> Result<u64, String> {
            get(k)?.parse().map_err(|_| format!("annotation {k} is not a number: {:?}", m.get(k)))
        };
        let flag = |k: &str| -> Result<bool, String> {
            match m.get(k).map(String::as_str) {
                None | Some("false") => Ok(false),
                Some("true") => Ok(true),
                Some(other) => Err(format!("annotation {k} is not a boolean: {other:?}")),
            }
        };
        let lowerdirs: Vec<PathBuf> =
            get(keys::LOWERDIR)?.split(':').filter(|s| !s.is_empty()).map(PathBuf::from).collect();
        if lowerdirs.is_empty() {
            return Err(format!("annotation {} names no layer", keys::LOWERDIR));
        }
        let runtime = m.get(keys::RUNTIME).map(PathBuf::from);
        if let Some(r) = runtime.as_ref().filter(|r| !r.is_absolute()) {
            return Err(format!("annotation {} is not an absolute path: {}", keys::RUNTIME, r.display()));
        }
        Ok(Annotations {
            lowerdirs,
            upperdir: get(keys::UPPERDIR)?.into(),
            workdir: get(keys::WORKDIR)?.into(),
            log_path: get(keys::LOG_PATH)?.into(),
            log_max_size: num(keys::LOG_MAX_SIZE)?,
            log_max_file: u32::try_from(num(keys::LOG_MAX_FILE)?.max(1)).unwrap_or(u32::MAX),
            stdin: flag(keys::STDIN)?,
            init: flag(keys::INIT)?,
            cgroups: m
                .get(keys::CGROUPS)
                .map(|s| s.lines().filter(|l| !l.is_empty()).map(PathBuf::from).collect())
                .unwrap_or_default(),
            runtime,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_tagged_by_op() {
        let attach: Request =
            serde_json::from_str(r#"{"op":"attach","stdin":true,"stdout":true,"stderr":false}"#).expect("attach");
        assert_eq!(attach, Request::Attach { stdin: true, stdout: true, stderr: false });
        assert_eq!(serde_json::from_str::<Request>(r#"{"op":"start"}"#).ok(), Some(Request::Start));
        let resize: Request = serde_json::from_str(r#"{"op":"resize","height":24,"width":80}"#).expect("resize");
        assert_eq!(resize, Request::Resize { height: 24, width: 80, exec: None });
        let line = serde_json::to_string(&Request::Wait).expect("json");
        assert_eq!(line, r#"{"op":"wait"}"#);
    }

    #[test]
    fn an_exec_without_a_user_is_refused_not_run_as_root() {
        let full = r#"{"op":"exec","id":"ab","args":["id"],"env":[],"cwd":"/","uid":1000,"gid":1000,"groups":[],"tty":false,"stdin":false,"detach":false}"#;
        let Ok(Request::Exec(e)) = serde_json::from_str::<Request>(full) else { panic!("a whole exec parses") };
        assert_eq!((e.uid, e.gid), (1000, 1000));
        let no_uid = full.replace(r#""uid":1000,"#, "");
        let err = serde_json::from_str::<Request>(&no_uid).expect_err("uid is required");
        assert!(err.to_string().contains("uid"), "{err}");
        let typo = full.replace("\"cwd\"", "\"cdw\"");
        assert!(serde_json::from_str::<Request>(&typo).is_err(), "unknown fields are refused");
        assert!(serde_json::from_str::<Request>(r#"{"op":"fly"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"op":"attach","stdin":true}"#).is_err());
    }

    #[test]
    fn replies_keep_their_wire_format() {
        let wait =
            Reply { exit: Some(ExitRecord { exit_code: 3, finished_at: "T".into(), error: None }), ..Reply::ok() };
        let line = serde_json::to_string(&wait).expect("json");
        assert_eq!(line, r#"{"ok":true,"ExitCode":3,"FinishedAt":"T"}"#);
        assert_eq!(serde_json::from_str::<Reply>(&line).ok(), Some(wait));
        let refused: Reply = serde_json::from_str(r#"{"ok":false,"code":126,"error":"no"}"#).expect("reply");
        assert_eq!(refused.clone().into_result().err(), Some((126, "no".to_string())));
        assert_eq!(refused.exit, None);
        let plain: Reply = serde_json::from_str(r#"{"ok":true}"#).expect("reply");
        assert_eq!(plain, Reply::ok());
    }

    #[test]
    fn annotations_round_trip_and_name_what_is_missing() {
        let a = Annotations {
            lowerdirs: vec!["/l/2".into(), "/l/1".into()],
            upperdir: "/b/upper".into(),
            workdir: "/b/work".into(),
            log_path: "/b/container.log".into(),
            log_max_size: 10 << 20,
            log_max_file: 3,
            stdin: true,
            init: false,
            cgroups: vec!["/sys/fs/cgroup/memory/berth/x".into(), "/sys/fs/cgroup/pids/berth/x".into()],
            runtime: Some("/usr/sbin/runc".into()),
        };
        let map = a.to_map();
        assert_eq!(map[keys::LOWERDIR], "/l/2:/l/1");
        assert_eq!(Annotations::from_map(&map).ok(), Some(a.clone()));
        let mut partial = map.clone();
        partial.remove(keys::UPPERDIR);
        assert_eq!(Annotations::from_map(&partial).err(), Some(format!("annotation {} is missing", keys::UPPERDIR)));
        let mut bad = map;
        bad.insert(keys::LOG_MAX_SIZE.into(), "ten".into());
        assert!(Annotations::from_map(&bad).is_err());
        let mut relative = a.to_map();
        relative.insert(keys::RUNTIME.into(), "runc".into());
        assert!(Annotations::from_map(&relative).is_err_and(|e| e.contains("absolute")));
        let mut own = a.to_map();
        own.remove(keys::RUNTIME);
        assert_eq!(Annotations::from_map(&own).map(|a| a.runtime), Ok(None));
    }
}
