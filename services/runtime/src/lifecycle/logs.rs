//! Reading and following a container's json-file log (`container.log` and
//! its rotations `container.log.1`..), as `docker logs` and attach want it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_core::{Error, Result};
use tokio::sync::broadcast;

use super::{Event, LogStream};
use crate::pb;
use crate::service::{LocalRuntime, status};
use crate::store::ContainerStore;

impl LocalRuntime {
    /// The container's log as a stream of entries.
    pub(crate) async fn log_stream(&self, req: pb::ContainerLogsRequest) -> Result<LogStream> {
        let c = self.resolve(&req.reference).await?;
        if crate::record::host_config(&c).is_ok_and(|h| h.log_config.kind == "none") {
            return Err(Error::not_implemented("configured logging driver does not support reading"));
        }
        let path = self.host.bundle(&c.id).join("container.log");
        let rx = self.host.subscribe();
        let store = self.store.clone();
        let (tx, out) = tokio::sync::mpsc::channel(16);
        tokio::spawn(follow_log(path, c.id.clone(), req, rx, store, tx));
        // Entries travel in batches, so that the reader of the stream finds many
        // ready at once (and frames them together).
        use futures::StreamExt;
        let entries = tokio_stream::wrappers::ReceiverStream::new(out)
            .flat_map(|batch: Vec<pb::LogEntry>| futures::stream::iter(batch.into_iter().map(Ok)));
        Ok(Box::pin(entries))
    }
}

/// One line of a json-file log, borrowed where it can be.
#[derive(serde::Deserialize)]
struct JsonLine<'a> {
    #[serde(borrow)]
    log: std::borrow::Cow<'a, str>,
    stream: &'a str,
    time: &'a str,
}

fn entry_of(line: &str, req: &pb::ContainerLogsRequest) -> Option<pb::LogEntry> {
    let v: JsonLine<'_> = serde_json::from_str(line).ok()?;
    let stream = match v.stream {
        "stdout" if req.stdout => 1,
        "stderr" if req.stderr => 2,
        _ => return None,
    };
    if req.since > 0.0 || req.until > 0.0 {
        let t = berth_core::id::parse_rfc3339(v.time).map(|t| t.unix_timestamp_nanos() as f64 / 1e9).unwrap_or(0.0);
        if (req.since > 0.0 && t < req.since) || (req.until > 0.0 && t > req.until) {
            return None;
        }
    }
    Some(pb::LogEntry { stream, time: v.time.to_string(), line: v.log.into_owned().into_bytes() })
}

async fn is_running(store: &dyn ContainerStore, id: &str) -> bool {
    store
        .containers()
        .await
        .ok()
        .and_then(|all| all.into_iter().find(|c| c.id == id))
        .is_some_and(|c| status(&c).is_running())
}

/// Sends the log written so far: every entry, or with `tail` the last ones
/// (only those are held, in a ring). Returns how far the current file was read,
/// or `None` once the receiver is gone.
fn replay(path: &Path, req: &pb::ContainerLogsRequest, tx: &LogSender) -> Option<u64> {
    use std::io::BufRead;
    let mut ring: std::collections::VecDeque<pb::LogEntry> = std::collections::VecDeque::new();
    let keep = usize::try_from(req.tail).ok();
    let mut files: Vec<PathBuf> = (1..=16).rev().map(|n| PathBuf::from(format!("{}.{n}", path.display()))).collect();
    files.push(path.to_path_buf());
    let mut read_current = 0u64;
    let mut batch = Vec::with_capacity(BATCH);
    for file in files {
        let Ok(f) = std::fs::File::open(&file) else { continue };
        let mut reader = std::io::BufReader::with_capacity(256 << 10, f);
        let mut line = String::new();
        let mut read = 0u64;
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(n) if n > 0 && line.ends_with('\n') => read += n as u64,
                // A line still being written is left for the follower.
                _ => break,
            }
            let Some(e) = entry_of(line.trim_end(), req) else { continue };
            match keep {
                None => {
                    batch.push(e);
                    if batch.len() == BATCH {
                        tx.blocking_send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH))).ok()?;
                    }
                }
                Some(0) => {}
                Some(k) => {
                    if ring.len() == k {
                        ring.pop_front();
                    }
                    ring.push_back(e);
                }
            }
        }
        if file == path {
            read_current = read;
        }
    }
    batch.extend(ring);
    while !batch.is_empty() {
        let rest = batch.split_off(batch.len().min(BATCH));
        tx.blocking_send(std::mem::replace(&mut batch, rest)).ok()?;
    }
    Some(read_current)
}

/// Entries sent together.
const BATCH: usize = 1024;

type LogSender = tokio::sync::mpsc::Sender<Vec<pb::LogEntry>>;

async fn follow_log(
    path: PathBuf,
    id: String,
    req: pb::ContainerLogsRequest,
    mut events: broadcast::Receiver<Event>,
    store: Arc<dyn ContainerStore>,
    tx: LogSender,
) {
    use tokio::io::{AsyncBufReadExt, AsyncSeekExt};
    let open = || async { tokio::fs::File::open(&path).await.ok() };
    let offset_start: u64;
    if req.from_end {
        offset_start = tokio::fs::metadata(&path).await.map(|m| m.len()).unwrap_or(0);
    } else {
        // Everything so far (rotated files first, oldest first), honouring tail,
        // read in a blocking task that streams it: a log is never held whole.
        let (p, r, t) = (path.clone(), req.clone(), tx.clone());
        match tokio::task::spawn_blocking(move || replay(&p, &r, &t)).await {
            Ok(Some(read)) => offset_start = read,
            _ => return,
        }
        if !req.follow {
            return;
        }
    }
    // Follow: for logs -f until the container is not running; for attach until its
    // next exit. The store is asked once here (and again only if events were lost);
    // after that, the exit event ends the stream.
    let mut offset = offset_start;
    let mut exited = !req.from_end && !is_running(store.as_ref(), &id).await;
    loop {
        if let Some(mut f) = open().await {
            // A file shorter than what we read was rotated: start the new one from its beginning.
            if f.metadata().await.map(|m| m.len() < offset).unwrap_or(false) {
                offset = 0;
            }
            let _ = f.seek(std::io::SeekFrom::Start(offset)).await;
            let mut reader = tokio::io::BufReader::new(f);
            let mut line = String::new();
            let mut batch = Vec::new();
            loop {
                line.clear();
                match reader.read_line(&mut line).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) if line.ends_with('\n') => {
                        offset += n as u64;
                        batch.extend(entry_of(line.trim_end(), &req));
                        if batch.len() == BATCH && tx.send(std::mem::take(&mut batch)).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => break,
                }
            }
            if !batch.is_empty() && tx.send(batch).await.is_err() {
                return;
            }
        }
        if exited {
            return;
        }
        // Drain every pending event: ours may queue behind other containers'.
        loop {
            match events.try_recv() {
                Ok(Event::Exited(i, _)) | Ok(Event::Removed(i)) if i == id => {
                    // One more pass picks up what the shim wrote last.
                    exited = true;
                    break;
                }
                Ok(_) => {}
                Err(broadcast::error::TryRecvError::Empty) => break,
                Err(broadcast::error::TryRecvError::Lagged(_)) => {
                    if !is_running(store.as_ref(), &id).await {
                        exited = true;
                        break;
                    }
                }
                Err(broadcast::error::TryRecvError::Closed) => return,
            }
        }
        if exited {
            continue;
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(stdout: bool, stderr: bool, since: f64, until: f64) -> pb::ContainerLogsRequest {
        pb::ContainerLogsRequest { stdout, stderr, since, until, ..Default::default() }
    }

    #[test]
    fn replay_streams_rotated_files_in_order_and_keeps_only_the_tail() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("container.log");
        let line =
            |n: u32| format!("{{\"log\":\"{n}\\n\",\"stream\":\"stdout\",\"time\":\"2026-01-01T00:00:0{n}Z\"}}\n");
        std::fs::write(dir.path().join("container.log.2"), line(1)).expect("log.2");
        std::fs::write(dir.path().join("container.log.1"), format!("{}{}", line(2), line(3))).expect("log.1");
        let current = format!("{}{}", line(4), line(5));
        std::fs::write(&path, format!("{current}{{\"log\":\"partial")).expect("log");
        let run = |tail: i64| {
            let (tx, mut rx) = tokio::sync::mpsc::channel(64);
            let req = pb::ContainerLogsRequest { stdout: true, stderr: true, tail, ..Default::default() };
            let read = replay(&path, &req, &tx);
            drop(tx);
            let mut got = Vec::new();
            while let Ok(batch) = rx.try_recv() {
                got.extend(batch.iter().map(|e| String::from_utf8_lossy(&e.line).trim().to_string()));
            }
            (read, got)
        };
        let (read, all) = run(-1);
        assert_eq!(all, ["1", "2", "3", "4", "5"]);
        assert_eq!(read, Some(current.len() as u64), "the partial line is left for the follower");
        assert_eq!(run(2).1, ["4", "5"]);
        assert_eq!(run(0).1, Vec::<String>::new());
        // A receiver that went away stops the replay.
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        drop(rx);
        let req = pb::ContainerLogsRequest { stdout: true, tail: -1, ..Default::default() };
        assert_eq!(replay(&path, &req, &tx), None);
    }

    #[test]
    fn log_lines_are_chosen_by_stream_and_time() {
        let line = r#"{"log":"hi\n","stream":"stderr","time":"2026-01-02T03:04:05.5Z"}"#;
        let e = entry_of(line, &req(true, true, 0.0, 0.0)).expect("an entry");
        assert_eq!((e.stream, e.line.as_slice(), e.time.as_str()), (2, &b"hi\n"[..], "2026-01-02T03:04:05.5Z"));
        assert!(entry_of(line, &req(true, false, 0.0, 0.0)).is_none(), "stderr not asked for");
        let at = 1_767_323_045.5;
        assert!(entry_of(line, &req(true, true, at - 1.0, at + 1.0)).is_some());
        assert!(entry_of(line, &req(true, true, at + 1.0, 0.0)).is_none(), "before since");
        assert!(entry_of(line, &req(true, true, 0.0, at - 1.0)).is_none(), "after until");
        assert!(entry_of("not json", &req(true, true, 0.0, 0.0)).is_none());
    }
}
