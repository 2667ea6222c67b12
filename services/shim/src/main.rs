//! `berth-shim`: one small monitor process per container.
//!
//! The runtime service starts `berth-shim --bundle DIR`. The shim detaches (it
//! forks, the first process exits at once, the second starts a new session), so it
//! is nobody's child but init's and outlives every Berth service. It then:
//! 1. creates the container's init in new namespaces (see [`init`]), with its
//!    stdio on pipes (or a TTY opened inside the container) that the shim holds;
//!    the init stops at a barrier just before it executes the command;
//! 2. listens on `DIR/ctl.sock` (the protocol is `berth_shim::protocol`), writes
//!    `DIR/pid` and reports `ok PID` (or `err CODE MESSAGE`) on its own stdout,
//!    which the runtime service reads to its end;
//! 3. on `start`, lets the command run; from then on it copies the container's
//!    output to `DIR/container.log` in dockerd's json-file format and to every
//!    attached client, feeds attached input to the container's stdin, resizes
//!    TTYs, and runs execs in the container's namespaces;
//! 4. when the init exits, writes `DIR/exit.json` (`{"ExitCode":N,"FinishedAt":..}`)
//!    atomically, answers `wait` requests, flushes its clients and exits.
//!
//! It is single-threaded (one `poll` loop) and has no async runtime, so its
//! memory stays small. A slow client never blocks it: output for a client that
//! falls too far behind drops that client, never the container.

#![deny(unsafe_code)]

mod init;
mod log;
mod oci;
mod seccomp;
// Every `unsafe` block of the shim is in `sys`, each with its SAFETY reason.
#[allow(unsafe_code)]
mod sys;
mod userns;

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use berth_shim::protocol::{self as p, Annotations, ExecRequest, ExitRecord, Reply, Request};
use berth_shim::spec::Spec;

/// How much output may wait for one client before the client is dropped.
const CLIENT_BACKLOG: usize = 8 << 20;
/// How much input may wait for a process's stdin before its clients are paused.
const STDIN_BACKLOG: usize = 1 << 20;
/// How long output may still arrive after a process exited (from processes that
/// inherited its stdout), and how long clients get to take the last of it.
const DRAIN: Duration = Duration::from_secs(2);
const FLUSH: Duration = Duration::from_secs(5);

pub(crate) fn now() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(tmp, path)
}

fn report(line: &str) {
    let _ = sys::write_all(std::io::stdout().as_fd(), format!("{line}\n").as_bytes());
    // The runtime reads our stdout to its end: close it by pointing it at /dev/null.
    if let Ok(null) = sys::dev_null() {
        let _ = sys::dup2(null.as_fd(), 1);
    }
}

/// The standard streams of a process the shim holds. A TTY master is one
/// descriptor in three roles (stdout, stdin and the resize target), so the
/// descriptors are shared: each closes when its last role lets go of it.
#[derive(Default)]
struct Stdio {
    /// Read ends: stdout (or the TTY master) and stderr.
    out: [Option<Rc<OwnedFd>>; 2],
    /// Where input goes: the stdin pipe's write end or the TTY master.
    stdin: Option<Rc<OwnedFd>>,
    /// The TTY master, for resizes; it is also `out[0]` and `stdin`.
    master: Option<Rc<OwnedFd>>,
    stdin_buf: Vec<u8>,
    close_stdin: bool,
}

impl Stdio {
    fn open(&self) -> bool {
        self.out.iter().any(Option::is_some)
    }

    fn is_master(&self, fd: &Rc<OwnedFd>) -> bool {
        self.master.as_ref().is_some_and(|m| Rc::ptr_eq(m, fd))
    }

    fn close_out(&mut self, i: usize) {
        if let Some(fd) = self.out[i].take()
            && self.is_master(&fd)
        {
            // The TTY master is stdout, stdin and the resize target at once.
            self.master = None;
            self.stdin = None;
            self.stdin_buf.clear();
        }
    }

    fn close_all(&mut self) {
        self.close_out(0);
        self.close_out(1);
        self.stdin = None;
    }

    /// Writes what it can of the pending input; closes stdin when asked and done.
    fn pump_stdin(&mut self) {
        let Some(fd) = self.stdin.clone() else { return };
        while !self.stdin_buf.is_empty() {
            match sys::write_some(fd.as_fd(), &self.stdin_buf) {
                Ok(n) => {
                    self.stdin_buf.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    // The reader is gone: input has nowhere to go.
                    self.stdin_buf.clear();
                    if !self.is_master(&fd) {
                        self.stdin = None;
                    }
                    return;
                }
            }
        }
        if self.close_stdin && self.master.is_none() {
            self.stdin = None;
        }
    }
}

/// A process the shim supervises: the container's init or an exec.
struct Proc {
    /// The exec's ID; `None` for the init.
    exec_id: Option<String>,
    pid: libc::pid_t,
    io: Stdio,
    exit: Option<(i32, Instant)>,
    /// The connection an exec streams to.
    conn: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
enum Role {
    /// Waiting for the request line.
    Request,
    /// Attached to the container's streams.
    Attach { stdin: bool, stdout: bool, stderr: bool },
    /// The stream of the exec with this ID.
    Exec(String),
    /// Waiting for the container to exit.
    Wait,
    /// Answered; closes once its output is written.
    Done,
}

struct Conn {
    id: u64,
    sock: UnixStream,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    role: Role,
    dead: bool,
}

impl Conn {
    fn send(&mut self, bytes: &[u8]) {
        if self.outbuf.len() + bytes.len() > CLIENT_BACKLOG {
            // Too slow a reader: drop it rather than hold up the container.
            self.dead = true;
            return;
        }
        self.outbuf.extend_from_slice(bytes);
    }

    fn frame(&mut self, kind: u8, data: &[u8]) {
        for chunk in data.chunks(p::MAX_FRAME) {
            let mut f = Vec::with_capacity(chunk.len() + p::HEADER);
            f.extend_from_slice(&p::header(kind, chunk.len()));
            f.extend_from_slice(chunk);
            self.send(&f);
        }
    }

    fn reply(&mut self, r: &Reply) {
        let mut line = serde_json::to_string(r).unwrap_or_else(|_| r#"{"ok":false,"code":125}"#.into());
        line.push('\n');
        self.send(line.as_bytes());
    }

    fn flush(&mut self) {
        while !self.outbuf.is_empty() {
            match self.sock.write(&self.outbuf) {
                Ok(0) => {
                    self.dead = true;
                    return;
                }
                Ok(n) => {
                    self.outbuf.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.dead = true;
                    return;
                }
            }
        }
        if self.role == Role::Done {
            self.dead = true;
        }
    }
}

/// Ends every process in the container's cgroups and the cgroups below them
/// (a container without a PID namespace of its own leaves them behind when its
/// init exits), as runc does: with `cgroup.kill` where the kernel has it (v2:
/// recursive and atomic); else frozen first (the v1 freezer), so that none
/// exits and hands its PID to another process between being listed and being
/// signalled, then SIGKILLed and thawed. Their exits reach the shim, their
/// subreaper.
fn kill_cgroup_members(cgroups: &[PathBuf]) {
    if let [dir] = cgroups
        && dir.join("cgroup.kill").exists()
    {
        let _ = std::fs::write(dir.join("cgroup.kill"), "1");
        return;
    }
    let freezer = cgroups.iter().find(|d| d.join("freezer.state").exists());
    if let Some(f) = freezer {
        let _ = std::fs::write(f.join("freezer.state"), "FROZEN");
        for _ in 0..200 {
            if std::fs::read_to_string(f.join("freezer.state")).is_ok_and(|s| s.trim() == "FROZEN") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
    for round in 0..10 {
        let mut pids = Vec::new();
        for dir in cgroups {
            members_below(dir, &mut pids);
        }
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            sys::kill(pid, libc::SIGKILL);
        }
        if round == 0
            && let Some(f) = freezer
        {
            // Killed while frozen: they die as they thaw, none left running.
            let _ = std::fs::write(f.join("freezer.state"), "THAWED");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    if let Some(f) = freezer {
        let _ = std::fs::write(f.join("freezer.state"), "THAWED");
    }
}

/// The processes in cgroup `dir` and every cgroup below it.
fn members_below(dir: &Path, pids: &mut Vec<libc::pid_t>) {
    if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(procs.lines().filter_map(|l| l.trim().parse::<libc::pid_t>().ok()));
    }
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            members_below(&e.path(), pids);
        }
    }
}

fn exit_record(code: i32, error: Option<String>) -> ExitRecord {
    ExitRecord { exit_code: code.into(), finished_at: now(), error }
}

fn write_exit(path: &Path, record: &ExitRecord) -> std::io::Result<()> {
    write_atomic(path, &serde_json::to_vec(record).map_err(std::io::Error::other)?)
}

/// Reads the sync socket until the child executes (end of file), fails
/// (`E<code>:<message>`), or says `ready`; collects a TTY master on the way.
fn handshake(sync: BorrowedFd<'_>, master: &mut Option<OwnedFd>) -> Result<bool, (i32, String)> {
    let mut buf = vec![0u8; 8192];
    loop {
        match sys::recv_with_fd(sync, &mut buf) {
            Ok((0, _)) => return Ok(false),
            Ok((n, fd)) => {
                let msg = &buf[..n];
                if let Some(fd) = fd {
                    // Anything but the first terminal is dropped, and so closed.
                    if msg == b"pty" && master.is_none() {
                        *master = Some(fd);
                    }
                    continue;
                }
                if msg == b"ready" {
                    return Ok(true);
                }
                let text = String::from_utf8_lossy(msg.strip_prefix(b"E").unwrap_or(msg)).to_string();
                let (code, m) = text.split_once(':').unwrap_or(("128", text.as_str()));
                return Err((code.parse().unwrap_or(128), m.to_string()));
            }
            Err(e) => return Err((128, format!("read from the container's init: {e}"))),
        }
    }
}

/// The child's ends of its standard streams: the shim holds them until the
/// fork and drops (closes) them right after, so that the child's exit is seen
/// as the end of its output.
enum ChildFds {
    /// A TTY the child opens itself, inside the container.
    Tty,
    /// /dev/null for all three (a detached exec).
    Null(OwnedFd),
    /// stdin's read end (or /dev/null), stdout's and stderr's write ends.
    Pipes(OwnedFd, OwnedFd, OwnedFd),
}

impl ChildFds {
    /// The streams as another OCI runtime takes them (it passes them on).
    fn into_streams(self) -> std::io::Result<oci::Streams> {
        Ok(match self {
            ChildFds::Tty => oci::Streams::Tty,
            ChildFds::Null(n) => oci::Streams::Fds(n.try_clone()?, n.try_clone()?, n),
            ChildFds::Pipes(i, o, e) => oci::Streams::Fds(i, o, e),
        })
    }

    fn stdio(&self) -> init::Stdio<'_> {
        match self {
            ChildFds::Tty => init::Stdio::Tty,
            ChildFds::Null(n) => init::Stdio::Pipes(n.as_fd(), n.as_fd(), n.as_fd()),
            ChildFds::Pipes(i, o, e) => init::Stdio::Pipes(i.as_fd(), o.as_fd(), e.as_fd()),
        }
    }
}

/// Pipes for a process's stdio: the child's ends and ours.
fn pipes(stdin: bool) -> std::io::Result<(ChildFds, Stdio)> {
    let (out_r, out_w) = sys::pipe()?;
    let (err_r, err_w) = sys::pipe()?;
    let (in_r, in_w) = if stdin {
        let (r, w) = sys::pipe()?;
        sys::set_nonblocking(w.as_fd())?;
        (r, Some(Rc::new(w)))
    } else {
        (sys::dev_null()?, None)
    };
    let io = Stdio { out: [Some(Rc::new(out_r)), Some(Rc::new(err_r))], stdin: in_w, ..Default::default() };
    Ok((ChildFds::Pipes(in_r, out_w, err_w), io))
}

fn tty_io(master: OwnedFd) -> Stdio {
    let _ = sys::set_nonblocking(master.as_fd());
    let master = Rc::new(master);
    Stdio { out: [Some(master.clone()), None], stdin: Some(master.clone()), master: Some(master), ..Default::default() }
}

fn valid_exec_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

struct Shim {
    spec: Spec,
    /// The container's cgroup directories, which execs join.
    cgroups: Vec<PathBuf>,
    bundle: PathBuf,
    log: log::Log,
    pending: [log::Pending; 2],
    ctr: Proc,
    execs: Vec<Proc>,
    conns: Vec<Conn>,
    next_conn: u64,
    /// What holds the init before its command, until the start.
    barrier: Option<Barrier>,
    /// The OCI runtime that made the container, if not the shim itself.
    oci: Option<oci::Oci>,
    start_error: Option<(i32, String)>,
    /// The exit record, once written.
    exited: Option<ExitRecord>,
}

/// What holds a created container before its command runs.
enum Barrier {
    /// The shim's own init, waiting on its sync socket.
    Own(OwnedFd),
    /// Another OCI runtime's, released by its `start`.
    Oci,
}

#[derive(Clone, Copy)]
enum Tok {
    Signal,
    Listen,
    /// Output `stream` of process `proc` (0 is the init, n the n-th exec).
    Out(usize, usize),
    In(usize),
    Conn(usize),
}

impl Shim {
    fn proc_mut(&mut self, i: usize) -> &mut Proc {
        if i == 0 { &mut self.ctr } else { &mut self.execs[i - 1] }
    }

    fn exec_index(&self, id: &str) -> Option<usize> {
        self.execs.iter().position(|e| e.exec_id.as_deref() == Some(id)).map(|i| i + 1)
    }

    /// Output from a process: to the log and attached clients (the init's), or to
    /// the exec's client.
    fn output(&mut self, i: usize, stream: usize, data: &[u8]) {
        let kind = if stream == 0 { p::STDOUT } else { p::STDERR };
        if i == 0 {
            self.pending[stream].bytes.extend_from_slice(data);
            self.log.flush(&mut self.pending[stream], false);
            for c in self.conns.iter_mut() {
                if let Role::Attach { stdout, stderr, .. } = c.role
                    && ((stream == 0 && stdout) || (stream == 1 && stderr))
                {
                    c.frame(kind, data);
                }
            }
        } else if let Some(cid) = self.execs[i - 1].conn
            && let Some(c) = self.conns.iter_mut().find(|c| c.id == cid)
        {
            c.frame(kind, data);
        }
    }

    fn close_output(&mut self, i: usize, stream: usize) {
        self.proc_mut(i).io.close_out(stream);
        if i == 0 {
            self.log.flush(&mut self.pending[stream], true);
        }
    }

    fn read_output(&mut self, i: usize, stream: usize, buf: &mut [u8]) {
        let Some(fd) = self.proc_mut(i).io.out[stream].clone() else { return };
        match sys::read(fd.as_fd(), buf) {
            Ok(0) => self.close_output(i, stream),
            Ok(n) => {
                let data = buf[..n].to_vec();
                self.output(i, stream, &data);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            // EIO: every holder of the TTY's slave side is gone.
            Err(_) => self.close_output(i, stream),
        }
    }

    fn accept(&mut self, listener: &UnixListener) {
        while let Ok((sock, _)) = listener.accept() {
            if sock.set_nonblocking(true).is_err() {
                continue;
            }
            self.next_conn += 1;
            self.conns.push(Conn {
                id: self.next_conn,
                sock,
                inbuf: Vec::new(),
                outbuf: Vec::new(),
                role: Role::Request,
                dead: false,
            });
        }
    }

    fn read_conn(&mut self, ci: usize) {
        let mut buf = [0u8; 65536];
        let n = match self.conns[ci].sock.read(&mut buf) {
            Ok(0) => {
                // The client went away. Input stays open: a detach, not an end of input.
                self.conns[ci].dead = true;
                return;
            }
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted) => {
                return;
            }
            Err(_) => {
                self.conns[ci].dead = true;
                return;
            }
        };
        self.conns[ci].inbuf.extend_from_slice(&buf[..n]);
        match self.conns[ci].role.clone() {
            Role::Request => {
                let c = &mut self.conns[ci];
                let line: Option<Vec<u8>> = match c.inbuf.iter().position(|b| *b == b'\n') {
                    Some(pos) => Some(c.inbuf.drain(..=pos).collect()),
                    None => {
                        c.dead = c.inbuf.len() > 1 << 16;
                        None
                    }
                };
                if let Some(line) = line {
                    match serde_json::from_slice::<Request>(&line) {
                        Ok(req) => self.request(ci, req),
                        Err(e) => {
                            let c = &mut self.conns[ci];
                            c.reply(&Reply::refused(125, format!("bad request: {e}")));
                            c.role = Role::Done;
                        }
                    }
                    // Input that came with the request (an attach's first bytes).
                    self.input(ci);
                }
            }
            Role::Attach { .. } | Role::Exec(_) => self.input(ci),
            Role::Wait | Role::Done => self.conns[ci].inbuf.clear(),
        }
    }

    /// Frames from an attached client: input for the process's stdin.
    fn input(&mut self, ci: usize) {
        let target = match &self.conns[ci].role {
            Role::Attach { stdin: true, .. } => Some(0),
            Role::Exec(id) => self.exec_index(id),
            _ => None,
        };
        let Some(t) = target else {
            self.conns[ci].inbuf.clear();
            return;
        };
        loop {
            match p::take_frame(&mut self.conns[ci].inbuf) {
                Ok(Some((p::STDIN, data))) => self.proc_mut(t).io.stdin_buf.extend_from_slice(&data),
                Ok(Some((p::CLOSE_STDIN, _))) => self.proc_mut(t).io.close_stdin = true,
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => {
                    self.conns[ci].dead = true;
                    break;
                }
            }
        }
        self.proc_mut(t).io.pump_stdin();
    }

    fn request(&mut self, ci: usize, req: Request) {
        let conn_id = self.conns[ci].id;
        let (role, reply) = match req {
            Request::Attach { stdin, stdout, stderr } => {
                let role = Role::Attach { stdin, stdout, stderr };
                // After the exit there is nothing more to stream.
                (if self.exited.is_some() { Role::Done } else { role }, Some(Reply::ok()))
            }
            Request::Start => (Role::Done, Some(self.start())),
            Request::Wait => match &self.exited {
                Some(exit) => (Role::Done, Some(Reply { exit: Some(exit.clone()), ..Reply::ok() })),
                None => (Role::Wait, None),
            },
            Request::Resize { height, width, exec } => (Role::Done, Some(self.resize(height, width, exec.as_deref()))),
            Request::Exec(req) => match self.exec(&req, conn_id) {
                Ok(pid) => {
                    let role = if req.detach { Role::Done } else { Role::Exec(req.id) };
                    (role, Some(Reply { pid: Some(pid), ..Reply::ok() }))
                }
                Err((code, msg)) => (Role::Done, Some(Reply::refused(code, msg))),
            },
        };
        let c = &mut self.conns[ci];
        c.role = role;
        if let Some(r) = reply {
            c.reply(&r);
        }
    }

    /// Lets the init run the command; the answer says whether it could.
    fn start(&mut self) -> Reply {
        let outcome = match self.barrier.take() {
            None => {
                return match &self.start_error {
                    Some((code, msg)) => Reply::refused(*code, msg.clone()),
                    None => Reply::ok(),
                };
            }
            Some(Barrier::Own(sync)) => {
                let mut unused = None;
                sys::write_all(sync.as_fd(), b"go")
                    .map_err(|e| (128, format!("start: {e}")))
                    .and_then(|_| handshake(sync.as_fd(), &mut unused))
                    .map(|_| ())
            }
            Some(Barrier::Oci) => match &self.oci {
                Some(oci) => oci.start(),
                None => Err((125, "no OCI runtime".into())),
            },
        };
        match outcome {
            Ok(_) => Reply::ok(),
            Err((code, msg)) => {
                self.start_error = Some((code, msg.clone()));
                Reply::refused(code, msg)
            }
        }
    }

    fn resize(&mut self, rows: u16, cols: u16, exec: Option<&str>) -> Reply {
        let target = match exec.filter(|s| !s.is_empty()) {
            Some(id) => self.exec_index(id),
            None => Some(0),
        };
        let master = target.and_then(|t| self.proc_mut(t).io.master.clone());
        match master.map(|m| sys::set_winsize(m.as_fd(), rows, cols)) {
            Some(Ok(())) => Reply::ok(),
            Some(Err(e)) => Reply::refused(125, format!("resize: {e}")),
            None => Reply::refused(125, "the process has no terminal"),
        }
    }

    /// Starts an exec in the container; its PID.
    fn exec(&mut self, req: &ExecRequest, conn: u64) -> Result<libc::pid_t, (i32, String)> {
        let id = req.id.clone();
        if !valid_exec_id(&id) || self.exec_index(&id).is_some() {
            return Err((125, format!("invalid or duplicate exec ID {id:?}")));
        }
        if self.exited.is_some() || self.ctr.exit.is_some() {
            return Err((125, "the container is not running".into()));
        }
        if !req.cwd.starts_with('/') {
            return Err((125, format!("the working directory {:?} is not absolute", req.cwd)));
        }
        let process = init::Process {
            args: req.args.clone(),
            env: req.env.clone(),
            cwd: req.cwd.clone(),
            uid: req.uid,
            gid: req.gid,
            groups: req.groups.clone(),
        };
        let detached = req.detach;
        let tty = req.tty && !detached;
        let os = |e: std::io::Error| (125, e.to_string());
        let (child_stdio, io) = if detached {
            (ChildFds::Null(sys::dev_null().map_err(os)?), Stdio::default())
        } else if tty {
            (ChildFds::Tty, Stdio::default())
        } else {
            pipes(req.stdin).map_err(os)?
        };
        if let Some(oci) = &self.oci {
            let process = oci::ExecProcess {
                terminal: tty,
                user: berth_shim::spec::User { uid: req.uid, gid: req.gid, additional_gids: req.groups.clone() },
                args: &req.args,
                env: &req.env,
                cwd: &req.cwd,
                capabilities: &self.spec.process.capabilities,
                rlimits: &self.spec.process.rlimits,
                no_new_privileges: self.spec.process.no_new_privileges,
            };
            let (pid, master) = oci.exec(&id, &process, child_stdio.into_streams().map_err(os)?)?;
            self.add_exec(id, pid, io, master, if detached { None } else { Some(conn) });
            return Ok(pid);
        }
        let (sync_parent, sync_child) = sys::seqpacket_pair().map_err(os)?;
        // On failure, every descriptor made above is dropped, and so closed.
        let forked = sys::fork().map_err(|e| (125, format!("fork: {e}")))?;
        let pid = match forked {
            sys::Forked::Child => {
                drop(sync_parent);
                let args = init::ExecArgs {
                    spec: &self.spec,
                    cgroups: &self.cgroups,
                    init_pid: self.ctr.pid,
                    process: &process,
                    stdio: child_stdio.stdio(),
                    sync: sync_child.as_fd(),
                };
                let init::InitError(code, msg) = init::exec_in(&args);
                let _ = sys::write_all(sync_child.as_fd(), format!("E{code}:{msg}").as_bytes());
                sys::exit_now(code);
            }
            sys::Forked::Parent(pid) => pid,
        };
        drop(child_stdio);
        drop(sync_child);
        let mut master = None;
        let outcome = handshake(sync_parent.as_fd(), &mut master);
        drop(sync_parent);
        // On failure, the process's streams and any terminal are dropped, and
        // the child exits; the SIGCHLD loop reaps it.
        outcome?;
        self.add_exec(id, pid, io, master, if detached { None } else { Some(conn) });
        Ok(pid)
    }

    /// Supervises a started exec; a TTY master, if any, is its streams.
    fn add_exec(&mut self, id: String, pid: libc::pid_t, io: Stdio, master: Option<OwnedFd>, conn: Option<u64>) {
        let io = match master {
            Some(m) => tty_io(m),
            None => io,
        };
        self.execs.push(Proc { exec_id: Some(id), pid, io, exit: None, conn });
    }

    fn reap(&mut self) {
        while let Some((pid, code)) = sys::reap_any() {
            let now = Instant::now();
            if pid == self.ctr.pid {
                self.ctr.exit = Some((code, now));
                if !self.spec.owns_pid_namespace() {
                    // What the init left behind (no PID namespace ends with
                    // it): ended as runc ends it, everything in the cgroup.
                    kill_cgroup_members(&self.cgroups);
                }
            } else if let Some(e) = self.execs.iter_mut().find(|e| e.pid == pid) {
                e.exit = Some((code, now));
            }
        }
    }

    /// Finishes processes that exited and whose output is drained (or took too long).
    fn settle(&mut self) {
        let instant = Instant::now();
        let mut i = 0;
        while i < self.execs.len() {
            let e = &mut self.execs[i];
            let Some((code, at)) = e.exit else {
                i += 1;
                continue;
            };
            if e.io.open() && instant.duration_since(at) < DRAIN {
                i += 1;
                continue;
            }
            let mut e = self.execs.remove(i);
            e.io.close_all();
            let id = e.exec_id.clone().unwrap_or_default();
            let _ = write_exit(&self.bundle.join(p::files::exec_exit(&id)), &exit_record(code, None));
            if let Some(cid) = e.conn
                && let Some(c) = self.conns.iter_mut().find(|c| c.id == cid)
            {
                c.frame(p::EXIT, code.to_string().as_bytes());
                c.role = Role::Done;
            }
        }
        if self.exited.is_none()
            && let Some((code, at)) = self.ctr.exit
            && (!self.ctr.io.open() || instant.duration_since(at) >= DRAIN)
        {
            for s in 0..2 {
                self.close_output(0, s);
            }
            self.ctr.io.close_all();
            // The runtime forgets the container before anyone hears of the
            // exit: a restart makes a new one under the same ID.
            if let Some(oci) = &self.oci {
                oci.delete();
            }
            let _ = self.log.file.sync_all();
            let exit = exit_record(code, self.start_error.as_ref().map(|(_, msg)| msg.clone()));
            let _ = write_exit(&self.bundle.join(p::files::EXIT), &exit);
            let reply = Reply { exit: Some(exit.clone()), ..Reply::ok() };
            for c in self.conns.iter_mut() {
                match c.role {
                    Role::Wait => {
                        c.reply(&reply);
                        c.role = Role::Done;
                    }
                    Role::Attach { .. } | Role::Request => c.role = Role::Done,
                    _ => {}
                }
            }
            self.exited = Some(exit);
        }
    }

    fn serve(&mut self, listener: &UnixListener, sigfd: BorrowedFd<'_>) {
        let mut buf = vec![0u8; 65536];
        let mut finished_at: Option<Instant> = None;
        loop {
            if self.exited.is_some() {
                let at = *finished_at.get_or_insert_with(Instant::now);
                let pending = self.conns.iter().any(|c| !c.outbuf.is_empty() || matches!(c.role, Role::Exec(_)));
                if (!pending && self.execs.is_empty()) || at.elapsed() >= FLUSH {
                    return;
                }
            }
            let mut toks = vec![Tok::Signal, Tok::Listen];
            let mut fds = vec![
                libc::pollfd { fd: sigfd.as_raw_fd(), events: libc::POLLIN, revents: 0 },
                libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            ];
            let procs: Vec<&Proc> = std::iter::once(&self.ctr).chain(self.execs.iter()).collect();
            let mut full_stdin = vec![false; procs.len()];
            for (i, pr) in procs.iter().enumerate() {
                for (s, fd) in pr.io.out.iter().enumerate() {
                    if let Some(fd) = fd {
                        toks.push(Tok::Out(i, s));
                        fds.push(libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 });
                    }
                }
                if let Some(fd) = &pr.io.stdin
                    && !pr.io.stdin_buf.is_empty()
                {
                    toks.push(Tok::In(i));
                    fds.push(libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLOUT, revents: 0 });
                }
                full_stdin[i] = pr.io.stdin_buf.len() >= STDIN_BACKLOG;
            }
            let exec_index = |id: &str| self.execs.iter().position(|e| e.exec_id.as_deref() == Some(id)).map(|i| i + 1);
            for (ci, c) in self.conns.iter().enumerate() {
                let paused = match &c.role {
                    Role::Attach { stdin: true, .. } => full_stdin[0],
                    Role::Exec(id) => exec_index(id).is_some_and(|i| full_stdin[i]),
                    _ => false,
                };
                let mut events = if paused { 0 } else { libc::POLLIN };
                if !c.outbuf.is_empty() {
                    events |= libc::POLLOUT;
                }
                toks.push(Tok::Conn(ci));
                fds.push(libc::pollfd { fd: c.sock.as_raw_fd(), events, revents: 0 });
            }
            let waiting = self.ctr.exit.is_some() || self.execs.iter().any(|e| e.exit.is_some());
            let timeout = if waiting || self.exited.is_some() { 100 } else { -1 };
            sys::poll(&mut fds, timeout);
            for (tok, pfd) in toks.iter().zip(fds.iter()) {
                if pfd.revents == 0 {
                    continue;
                }
                match *tok {
                    Tok::Signal => {
                        sys::drain_signalfd(sigfd);
                        self.reap();
                    }
                    Tok::Listen => self.accept(listener),
                    Tok::Out(i, s) => self.read_output(i, s, &mut buf),
                    Tok::In(i) => self.proc_mut(i).io.pump_stdin(),
                    Tok::Conn(ci) => {
                        if pfd.revents & libc::POLLOUT != 0 {
                            self.conns[ci].flush();
                        }
                        if pfd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 && !self.conns[ci].dead {
                            self.read_conn(ci);
                        }
                    }
                }
            }
            // Answers written this round go out at once when the socket has room.
            for c in self.conns.iter_mut().filter(|c| !c.outbuf.is_empty() || c.role == Role::Done) {
                c.flush();
            }
            self.reap();
            self.settle();
            for c in self.conns.iter_mut().filter(|c| !c.outbuf.is_empty() || c.role == Role::Done) {
                c.flush();
            }
            self.conns.retain(|c| !c.dead);
        }
    }
}

fn run(bundle: &Path) -> Result<(), String> {
    let (spec, annotations): (Spec, Annotations) = std::fs::read(bundle.join(p::files::SPEC))
        .map_err(|e| format!("read {}: {e}", p::files::SPEC))
        .and_then(|b| Spec::parse(&b))?;
    let log = log::Log::open(annotations.log_path.clone(), annotations.log_max_size, annotations.log_max_file)
        .map_err(|e| format!("open log: {e}"))?;
    let tty = spec.process.terminal;
    let open_stdin = annotations.stdin;

    let (child_stdio, io) =
        if tty { (ChildFds::Tty, Stdio::default()) } else { pipes(open_stdin).map_err(|e| e.to_string())? };
    let sigfd = sys::sigchld_fd().map_err(|e| format!("signalfd: {e}"))?;
    let oci = annotations.runtime.as_deref().map(|r| oci::Oci::new(r, bundle)).transpose()?;
    let made = match &oci {
        Some(oci) => create_with(oci, bundle, &spec, &annotations, child_stdio),
        None => create_own(bundle, &spec, &annotations, child_stdio),
    };
    let (pid, master, barrier) = match made {
        Ok(made) => made,
        Err((code, msg)) => {
            let _ = write_exit(&bundle.join(p::files::EXIT), &exit_record(code, Some(msg.clone())));
            report(&format!("err {code} {msg}"));
            return Ok(());
        }
    };
    let io = match master {
        Some(m) => tty_io(m),
        None => io,
    };
    // The socket's path can be longer than a sockaddr_un holds; bind it relative
    // to the bundle (the shim is single-threaded, so changing directory is safe).
    std::env::set_current_dir(bundle).map_err(|e| format!("chdir {}: {e}", bundle.display()))?;
    let _ = std::fs::remove_file(p::SOCKET);
    let listener = UnixListener::bind(p::SOCKET).map_err(|e| format!("listen on {}: {e}", p::SOCKET))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p::SOCKET, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("chmod {}: {e}", p::SOCKET))?;
    }
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    write_atomic(&bundle.join(p::files::PID), pid.to_string().as_bytes()).map_err(|e| format!("write pid: {e}"))?;
    report(&format!("ok {pid}"));

    let mut shim = Shim {
        spec,
        cgroups: annotations.cgroups,
        bundle: bundle.to_path_buf(),
        log,
        pending: [
            log::Pending { name: "stdout", bytes: Vec::new() },
            log::Pending { name: "stderr", bytes: Vec::new() },
        ],
        ctr: Proc { exec_id: None, pid, io, exit: None, conn: None },
        execs: Vec::new(),
        conns: Vec::new(),
        next_conn: 0,
        barrier: Some(barrier),
        oci,
        start_error: None,
        exited: None,
    };
    shim.serve(&listener, sigfd.as_fd());
    let _ = std::fs::remove_file(bundle.join(p::SOCKET));
    Ok(())
}

/// A container made and held before its command: its init's PID, its TTY
/// master (for a terminal), and what holds it.
type Made = (libc::pid_t, Option<OwnedFd>, Barrier);

/// Makes the container with the shim's own init (see [`init`]; in a user
/// namespace, [`userns`]).
fn create_own(
    bundle: &Path,
    spec: &Spec,
    annotations: &Annotations,
    child_stdio: ChildFds,
) -> Result<Made, (i32, String)> {
    let err = |init::InitError(code, msg)| (code, msg);
    let os = |what: &str, e: std::io::Error| (125, format!("{what}: {e}"));
    let (sync_parent, sync_child) = sys::seqpacket_pair().map_err(|e| (125, e.to_string()))?;
    let in_userns = spec.has_namespace("user");
    let template = if in_userns {
        let template = userns::template(spec).map_err(err)?;
        // The root is mounted here, in a mount namespace of the shim's own.
        sys::unshare(libc::CLONE_NEWNS).map_err(|e| os("unshare the mount namespace", e))?;
        sys::mount("", Path::new("/"), None, libc::MS_REC | libc::MS_SLAVE, None)
            .map_err(|e| os("make / a slave", e))?;
        let rootfs = userns::mount_rootfs(bundle, spec, annotations, template.as_fd()).map_err(err)?;
        // The init finds it as its working directory (see `init::enter_root`).
        std::env::set_current_dir(&rootfs).map_err(|e| os("enter the root", e))?;
        Some(template)
    } else {
        None
    };
    let binds = init::prepare_binds(spec, template.as_ref().map(|t| t.as_fd())).map_err(err)?;
    drop(template);
    // Children of the shim start in a new PID namespace, whose PID 1 is the
    // container's init; in a user namespace, one the init's owns. With
    // `--pid host` in the shim's (the host's), with `--pid container:NAME`
    // in that container's.
    let pid_ns = spec.linux.namespaces.iter().find(|n| n.kind == "pid");
    let forked = if in_userns {
        sys::fork_into_userns().map_err(|e| os("clone into a user namespace", e))?
    } else {
        match pid_ns {
            Some(ns) if ns.path.is_empty() => {
                sys::unshare(libc::CLONE_NEWPID).map_err(|e| os("unshare pid namespace", e))?
            }
            Some(ns) => {
                let fd = sys::open(Path::new(&ns.path), libc::O_RDONLY).map_err(|e| os("open the PID namespace", e))?;
                sys::setns(fd.as_fd()).map_err(|e| os("join the PID namespace", e))?;
            }
            None => {}
        }
        sys::fork().map_err(|e| (125, e.to_string()))?
    };
    let pid = match forked {
        sys::Forked::Child => {
            drop(sync_parent);
            let args = init::InitArgs {
                spec,
                annotations,
                bundle,
                stdio: child_stdio.stdio(),
                sync: sync_child.as_fd(),
                root_mounted: in_userns,
                binds: &binds,
            };
            let init::InitError(code, msg) = init::run(&args);
            let _ = sys::write_all(sync_child.as_fd(), format!("E{code}:{msg}").as_bytes());
            sys::exit_now(code);
        }
        sys::Forked::Parent(pid) => pid,
    };
    drop((child_stdio, sync_child, binds));
    let give_up = |outcome: (i32, String)| {
        sys::kill(pid, libc::SIGKILL);
        let _ = sys::wait_child(pid, false);
        Err(outcome)
    };
    if in_userns {
        let mapped = userns::write_maps(pid, spec)
            .and_then(|()| sys::write_all(sync_parent.as_fd(), b"mapped"))
            .and_then(|()| {
                // The shim's later children (execs) start in the container's PID namespace.
                let pidns = sys::open(Path::new(&format!("/proc/{pid}/ns/pid")), libc::O_RDONLY)?;
                sys::setns(pidns.as_fd())
            });
        if let Err(e) = mapped {
            return give_up(os("map the user namespace", e));
        }
    }
    // Into the container's cgroups while the init sets itself up; the init runs
    // the command only after the start, so nothing escapes the limits.
    let joined = init::join_cgroups(&annotations.cgroups, pid);
    let mut master = None;
    let outcome = match joined {
        Ok(()) => handshake(sync_parent.as_fd(), &mut master),
        Err(init::InitError(code, msg)) => Err((code, msg)),
    };
    match outcome {
        Ok(true) => Ok((pid, master, Barrier::Own(sync_parent))),
        outcome => give_up(outcome.err().unwrap_or((128, "the container's init exited during setup".into()))),
    }
}

/// Makes the container with another OCI runtime (see [`oci`]).
fn create_with(
    oci: &oci::Oci,
    bundle: &Path,
    spec: &Spec,
    annotations: &Annotations,
    child_stdio: ChildFds,
) -> Result<Made, (i32, String)> {
    let os = |what: &str, e: std::io::Error| (125, format!("{what}: {e}"));
    // The container's init and execs outlive the runtime processes that start them.
    sys::set_child_subreaper().map_err(|e| os("become a subreaper", e))?;
    // The root is mounted here, in a mount namespace of the shim's own.
    sys::unshare(libc::CLONE_NEWNS).map_err(|e| os("unshare the mount namespace", e))?;
    sys::mount("", Path::new("/"), None, libc::MS_REC | libc::MS_SLAVE, None).map_err(|e| os("make / a slave", e))?;
    init::mount_rootfs(bundle, spec, annotations).map_err(|init::InitError(code, msg)| (code, msg))?;
    let streams = child_stdio.into_streams().map_err(|e| os("streams", e))?;
    let (pid, master) = oci.create(streams, spec.process.terminal)?;
    // The runtime made Berth's cgroups its own (`cgroupsPath`); joining them
    // again also covers a hierarchy the runtime leaves alone (cgroup2 on a
    // hybrid host, where the device program is).
    if let Err(init::InitError(code, msg)) = init::join_cgroups(&annotations.cgroups, pid) {
        sys::kill(pid, libc::SIGKILL);
        oci.delete();
        return Err((code, msg));
    }
    Ok((pid, master, Barrier::Oci))
}

/// `berth-shim --root-view ...`: mounts a container's filesystem in a mount
/// namespace of its own and holds it until its stdin closes, so the runtime can
/// open it through `/proc/PID/root` (`docker cp` into a stopped container,
/// `docker export`). See [`init::root_view`].
fn root_view(args: &[String]) -> ! {
    match init::RootView::parse(args).and_then(|view| view.mount()) {
        Ok(()) => {
            let _ = sys::write_all(std::io::stdout().as_fd(), b"ready\n");
            // Hold the mounts until the runtime has opened what it needs.
            let mut buf = [0u8; 64];
            while matches!(sys::read(std::io::stdin().as_fd(), &mut buf), Ok(n) if n > 0) {}
            std::process::exit(0);
        }
        Err(e) => {
            let _ = sys::write_all(std::io::stdout().as_fd(), format!("err {e}\n").as_bytes());
            std::process::exit(1);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--root-view") {
        root_view(&args[2..]);
    }
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
