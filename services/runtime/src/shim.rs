//! The runtime's side of a shim's control socket (`berth_shim::protocol`):
//! requests, and the pump that joins an attach or exec stream to a client.

use std::path::Path;

use berth_core::{Error, Result};
use berth_shim::protocol::{self as p, ExitRecord, Reply, Request};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::pb;

pub use berth_runtime_api::{InputStream, OutputStream};

/// Connects to the shim of the container whose bundle is `bundle`. The socket's
/// full path may not fit a `sockaddr_un`, so it is reached through a descriptor
/// of the bundle directory.
pub async fn connect(bundle: &Path) -> Result<UnixStream> {
    use std::os::fd::AsRawFd;
    let dir = std::fs::File::open(bundle).map_err(|e| Error::from(e).context(format!("open {}", bundle.display())))?;
    let path = format!("/proc/self/fd/{}/{}", dir.as_raw_fd(), p::SOCKET);
    let conn = UnixStream::connect(&path).await;
    drop(dir);
    conn.map_err(|e| Error::unavailable(format!("the container's shim does not answer: {e}")))
}

/// Sends one request and reads the reply line; a refusal is a reply with `ok`
/// false ([`Reply::into_result`]).
pub async fn request(bundle: &Path, req: &Request) -> Result<(Reply, UnixStream)> {
    let mut conn = connect(bundle).await?;
    let mut line = serde_json::to_string(req).map_err(|e| Error::internal(format!("shim request: {e}")))?;
    line.push('\n');
    conn.write_all(line.as_bytes()).await.map_err(|e| Error::unavailable(format!("talk to the shim: {e}")))?;
    // Byte by byte: what follows the reply line belongs to the stream.
    let mut reply = Vec::with_capacity(128);
    loop {
        let mut b = [0u8; 1];
        match conn.read(&mut b).await {
            Ok(1) if b[0] == b'\n' => break,
            Ok(1) if reply.len() < 1 << 16 => reply.push(b[0]),
            Ok(_) | Err(_) => return Err(Error::unavailable("the container's shim closed the connection")),
        }
    }
    let v: Reply = serde_json::from_slice(&reply).map_err(|e| Error::internal(format!("shim reply: {e}")))?;
    Ok((v, conn))
}

/// How input ends on a stream: whether the client's end of input closes the
/// process's stdin (Docker does so for `StdinOnce` containers and for execs,
/// never for a TTY).
#[derive(Debug, Clone, Copy)]
pub struct InputPolicy {
    /// Forward input at all.
    pub stdin: bool,
    /// Forward the end of input.
    pub close_on_eof: bool,
}

/// Joins a shim stream to a client: input frames go to the shim, output frames
/// come back as [`pb::StreamOutput`]. The stream ends when the shim closes it (the
/// process exited) or the client goes away (a detach: the shim keeps stdin open).
pub fn pump(conn: UnixStream, input: InputStream, policy: InputPolicy) -> OutputStream {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<pb::StreamOutput>>(64);
    tokio::spawn(async move {
        let (mut rd, mut wr) = conn.into_split();
        let mut input = input;
        let mut input_open = policy.stdin;
        let mut buf = Vec::with_capacity(64 * 1024);
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            // Input first: what a client typed before it detached still arrives.
            tokio::select! {
                biased;
                msg = input.next(), if input_open => {
                    let frame = match msg.and_then(|m| m.kind) {
                        Some(pb::stream_input::Kind::Stdin(data)) => {
                            let mut f = p::header(p::STDIN, data.len()).to_vec();
                            f.extend_from_slice(&data);
                            Some(f)
                        }
                        Some(pb::stream_input::Kind::CloseStdin(true)) => {
                            input_open = false;
                            policy.close_on_eof.then(|| p::header(p::CLOSE_STDIN, 0).to_vec())
                        }
                        // The client went away without ending its input: a detach.
                        None => {
                            input_open = false;
                            None
                        }
                        Some(_) => None,
                    };
                    if let Some(f) = frame
                        && wr.write_all(&f).await.is_err()
                    {
                        input_open = false;
                    }
                }
                n = rd.read(&mut chunk) => {
                    let n = match n {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    loop {
                        let out = match p::take_frame(&mut buf) {
                            Ok(Some((p::EXIT, code))) => pb::StreamOutput {
                                exited: true,
                                exit_code: String::from_utf8_lossy(&code).trim().parse().unwrap_or(128),
                                ..Default::default()
                            },
                            Ok(Some((kind, data))) => pb::StreamOutput { stream: kind as i32, data, ..Default::default() },
                            Ok(None) => break,
                            Err(e) => {
                                let _ = tx.send(Err(Error::internal(e))).await;
                                return;
                            }
                        };
                        if tx.send(Ok(out)).await.is_err() {
                            return;
                        }
                    }
                }
                _ = tx.closed() => return,
            }
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// Asks a shim to run its container's command (the barrier after `ok PID`).
pub async fn start(bundle: &Path) -> Result<()> {
    let (reply, _) = request(bundle, &Request::Start).await?;
    reply.into_result().map(drop).map_err(|(code, msg)| start_error(code.into(), &msg))
}

/// The error for a command that could not be started, worded like dockerd's.
pub fn start_error(code: i64, msg: &str) -> Error {
    let message = format!("failed to create task for container: {msg}");
    if code == 125 || code == 128 { Error::internal(message) } else { Error::invalid(message) }
}

/// Waits for the container's exit through its shim: the exit record, or `None`
/// when the shim cannot be asked (it is gone or going).
pub async fn wait(bundle: &Path) -> Option<ExitRecord> {
    let (reply, _) = request(bundle, &Request::Wait).await.ok()?;
    reply.exit
}
