//! Hijacked streams (attach and exec start): the HTTP upgrade, Docker's framing
//! of output, stdin with half-close, and detach keys.
//!
//! The client asks for `Upgrade: tcp`; the answer is `101 UPGRADED` and the
//! connection becomes raw: output goes out multiplexed (8-byte headers) or, with a
//! TTY, as is; input is the process's stdin. When the client closes its write
//! side, the process's stdin is closed (where Docker would); when it types the
//! detach keys, the connection ends and the process keeps running. Without an
//! upgrade the output is the response body.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_core::{ByteStream, Error, Result};
use berth_models::stream;
use berth_runtime_api::{LogStream, OutputStream, pb};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Docker's default detach sequence, ctrl-p ctrl-q.
const DEFAULT_DETACH_KEYS: &[u8] = &[16, 17];

/// Parses detach keys as dockerd does: comma-separated `ctrl-<x>` or single
/// characters (`ctrl-p,ctrl-q`, `a,ctrl-c`). Empty means the default.
pub fn detach_keys(spec: &str) -> Result<Vec<u8>> {
    if spec.is_empty() {
        return Ok(DEFAULT_DETACH_KEYS.to_vec());
    }
    let bad = || Error::invalid(format!("Invalid detach keys ({spec}) provided"));
    spec.split(',')
        .map(|k| {
            let k = k.trim();
            if let Some(c) = k.to_ascii_lowercase().strip_prefix("ctrl-") {
                let b = match c.as_bytes() {
                    [b @ b'a'..=b'z'] => b - b'a' + 1,
                    [b'@'] => 0,
                    [b'['] => 27,
                    [b'\\'] => 28,
                    [b']'] => 29,
                    [b'^'] => 30,
                    [b'_'] => 31,
                    _ => return Err(bad()),
                };
                return Ok(b);
            }
            match k.as_bytes() {
                [b] => Ok(*b),
                _ => Err(bad()),
            }
        })
        .collect()
}

/// Finds the detach sequence in a client's input, across reads. Bytes that
/// start the sequence are held back until it is clear they do not finish it.
#[derive(Debug)]
pub struct DetachScanner {
    keys: Vec<u8>,
    matched: usize,
}

impl DetachScanner {
    /// A scanner for `keys` (none: never detaches).
    pub fn new(keys: Vec<u8>) -> Self {
        Self { keys, matched: 0 }
    }

    /// The input to pass on, and whether the sequence was completed (what
    /// follows it is dropped).
    pub fn feed(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        if self.keys.is_empty() {
            return (input.to_vec(), false);
        }
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if b != self.keys[self.matched] && self.matched > 0 {
                out.extend_from_slice(&self.keys[..self.matched]);
                self.matched = 0;
            }
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    return (out, true);
                }
            } else {
                out.push(b);
            }
        }
        (out, false)
    }
}

/// The media type of a container's output: raw with a TTY, else multiplexed
/// with 8-byte frame headers. Docker 1.42+ clients read it to pick a decoder.
pub fn content_type(tty: bool) -> HeaderValue {
    HeaderValue::from_static(if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    })
}

/// Docker's framing of one piece of output; `None` for the exit message.
fn frame(o: pb::StreamOutput, tty: bool) -> Option<bytes::Bytes> {
    if o.exited {
        return None;
    }
    if tty {
        return Some(bytes::Bytes::from(o.data));
    }
    let mut out = Vec::with_capacity(o.data.len() + stream::HEADER);
    stream::put_frame(&mut out, o.stream as u8, &o.data);
    Some(bytes::Bytes::from(out))
}

/// Frames log entries for the Docker API: the 8-byte multiplexed header per
/// entry (stream, 0, 0, 0, big-endian length), or raw bytes for a TTY; with
/// `timestamps`, each line starts with its RFC 3339 time.
///
/// Entries that are ready together go out as one chunk, and consecutive lines of
/// one stream share a frame (up to [`stream::MAX_FRAME`] bytes): a long log is a few large
/// writes for Berth and for the client (the docker CLI writes each frame with its
/// own system call), while a follower still gets each line at once.
pub fn frame_logs(entries: LogStream, tty: bool, timestamps: bool) -> ByteStream {
    use futures::StreamExt;
    Box::pin(entries.ready_chunks(1024).map(move |batch| {
        let mut out = Vec::with_capacity(batch.iter().map(|e| e.as_ref().map_or(0, |e| e.line.len() + 48)).sum());
        // Where the open frame's header is, and its stream.
        let mut open: Option<(usize, i32)> = None;
        for e in batch {
            let e = e?;
            if !tty {
                let same =
                    open.is_some_and(|(at, s)| s == e.stream && out.len() - at - 8 + e.line.len() < stream::MAX_FRAME);
                if !same {
                    if let Some((at, _)) = open {
                        stream::close_frame(&mut out, at);
                    }
                    open = Some((out.len(), e.stream));
                    out.extend_from_slice(&stream::header(e.stream as u8, 0));
                }
            }
            if timestamps {
                out.extend_from_slice(e.time.as_bytes());
                out.push(b' ');
            }
            out.extend_from_slice(&e.line);
        }
        if let Some((at, _)) = open {
            stream::close_frame(&mut out, at);
        }
        Ok(bytes::Bytes::from(out))
    }))
}

/// What a hijacked stream needs besides its output.
pub struct Hijack {
    /// Raw output (a TTY) instead of multiplexed frames.
    pub tty: bool,
    /// Where the client's input goes, when stdin is attached.
    pub stdin: Option<mpsc::Sender<pb::StreamInput>>,
    /// The detach sequence.
    pub detach_keys: Vec<u8>,
    /// Ends the stream when the daemon shuts down.
    pub shutdown: CancellationToken,
}

/// How long after the upgrade a hijacked stream's first output may be sent.
const FIRST_OUTPUT_DELAY: std::time::Duration = std::time::Duration::from_millis(20);

/// Answers a request with `output`: hijacked (101, then raw) when the client
/// asked for an upgrade, else as a streaming body.
pub fn respond(parts: &mut axum::http::request::Parts, output: OutputStream, h: Hijack) -> Response {
    let upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    let wants_upgrade = parts.headers.contains_key(header::UPGRADE);
    let (tty, shutdown) = (h.tty, h.shutdown.clone());
    let Some(upgrade) = upgrade.filter(|_| wants_upgrade) else {
        let body = output
            .take_until(shutdown.cancelled_owned())
            .filter_map(move |r| futures::future::ready(r.map(|o| frame(o, tty)).transpose()))
            .map(|r| r.map_err(|e| std::io::Error::other(e.to_string())));
        let mut resp = (StatusCode::OK, axum::body::Body::from_stream(body)).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, content_type(tty));
        return resp;
    };
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        serve(hyper_util::rt::TokioIo::new(upgraded), output, h).await;
    });
    let mut resp = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let hd = resp.headers_mut();
    hd.insert(header::CONTENT_TYPE, content_type(tty));
    hd.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    hd.insert(header::UPGRADE, HeaderValue::from_static("tcp"));
    resp
}

enum InputEnd {
    /// The client closed its side: stdin was closed (where Docker would).
    Eof,
    /// The detach keys, or the process no longer takes input.
    Detached,
}

async fn serve<IO>(io: IO, mut output: OutputStream, h: Hijack)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(io);
    let tty = h.tty;
    let stdin = h.stdin;
    let has_stdin = stdin.is_some();
    let mut scanner = DetachScanner::new(h.detach_keys);
    let reader = async move {
        let Some(tx) = stdin else { return InputEnd::Eof };
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = match rd.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let close = pb::StreamInput { kind: Some(pb::stream_input::Kind::CloseStdin(true)) };
                    let _ = tx.send(close).await;
                    // Keep the sender: dropping it would read as a detach.
                    std::future::pending::<()>().await;
                    return InputEnd::Eof;
                }
                Ok(n) => n,
            };
            let (data, detached) = scanner.feed(&buf[..n]);
            if !data.is_empty() {
                let msg = pb::StreamInput { kind: Some(pb::stream_input::Kind::Stdin(data)) };
                if tx.send(msg).await.is_err() {
                    return InputEnd::Detached;
                }
            }
            if detached {
                return InputEnd::Detached;
            }
        }
    };
    let upgraded_at = tokio::time::Instant::now();
    let writer = async move {
        let mut first = true;
        while let Some(item) = output.next().await {
            let Ok(o) = item else { break };
            let Some(bytes) = frame(o, tty) else { continue };
            if first {
                // Clients that read the 101 answer through a buffered HTTP
                // reader (docker-py's exec_run, attach) lose whatever arrives
                // with it: the first output waits until they have had a moment
                // to take the headers alone, as dockerd's slower start gives
                // them. Later output is never held.
                first = false;
                tokio::time::sleep_until(upgraded_at + FIRST_OUTPUT_DELAY).await;
            }
            if wr.write_all(&bytes).await.is_err() || wr.flush().await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    };
    tokio::pin!(reader);
    tokio::pin!(writer);
    let mut reading = has_stdin;
    loop {
        tokio::select! {
            end = &mut reader, if reading => match end {
                InputEnd::Detached => return,
                InputEnd::Eof => reading = false,
            },
            _ = &mut writer => return,
            _ = h.shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_are_multiplexed_and_lines_of_one_stream_share_one() {
        let entry = |stream: i32, line: &[u8]| Ok(pb::LogEntry { stream, time: "T".into(), line: line.to_vec() });
        let entries: LogStream = Box::pin(futures::stream::iter(vec![
            entry(2, b"hi\n"),
            entry(1, b"a\n"),
            entry(1, b"b\n"),
            entry(2, b"c\n"),
        ]));
        let mut framed = frame_logs(entries, false, false);
        use futures::StreamExt;
        let chunk = framed.next().await.expect("one").expect("ok");
        let mut want = vec![2, 0, 0, 0, 0, 0, 0, 3, b'h', b'i', b'\n'];
        want.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 4, b'a', b'\n', b'b', b'\n']);
        want.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 2, b'c', b'\n']);
        assert_eq!(&chunk[..], &want[..]);
        // With timestamps each line keeps its own; with a TTY there are no headers.
        let entries: LogStream = Box::pin(futures::stream::iter(vec![entry(1, b"a\n"), entry(1, b"b\n")]));
        let chunk = frame_logs(entries, true, true).next().await.expect("one").expect("ok");
        assert_eq!(&chunk[..], b"T a\nT b\n");
    }

    #[test]
    fn detach_keys_parse_like_dockerd() {
        assert_eq!(detach_keys("").ok(), Some(vec![16, 17]));
        assert_eq!(detach_keys("ctrl-a,x").ok(), Some(vec![1, b'x']));
        assert_eq!(detach_keys("ctrl-@,ctrl-[").ok(), Some(vec![0, 27]));
        assert!(detach_keys("ctrl-1").is_err());
        assert!(detach_keys("abc").is_err());
    }

    #[test]
    fn scanner_holds_back_a_partial_sequence() {
        let mut s = DetachScanner::new(vec![16, 17]);
        assert_eq!(s.feed(b"ab\x10"), (b"ab".to_vec(), false));
        // Not the second key: the held byte is passed on.
        assert_eq!(s.feed(b"c"), (vec![16, b'c'], false));
        assert_eq!(s.feed(b"\x10\x10"), (vec![16], false));
        assert_eq!(s.feed(b"\x11rest"), (Vec::new(), true));
        let mut none = DetachScanner::new(Vec::new());
        assert_eq!(none.feed(b"\x10\x11"), (vec![16, 17], false));
    }
}
