//! Reading and following a container's json-file log (`container.log` and
//! its rotations `container.log.1`..), as `docker logs` and attach want it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use berth_core::Result;
use tokio::sync::broadcast;

use super::{Event, LogStream};
use crate::pb;
use crate::service::{LocalRuntime, status};
use crate::store::ContainerStore;

impl LocalRuntime {
    /// The container's log as a stream of entries.
    pub(crate) async fn log_stream(&self, req: pb::ContainerLogsRequest) -> Result<LogStream> {
        let c = self.resolve(&req.reference).await?;
        let path = self.host.bundle(&c.id).join("container.log");
        let rx = self.host.subscribe();
        let store = self.store.clone();
        let (tx, out) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(follow_log(path, c.id.clone(), req, rx, store, tx));
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(out)))
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

async fn follow_log(
    path: PathBuf,
    id: String,
    req: pb::ContainerLogsRequest,
    mut events: broadcast::Receiver<Event>,
    store: Arc<dyn ContainerStore>,
    tx: tokio::sync::mpsc::Sender<Result<pb::LogEntry>>,
) {
    use tokio::io::{AsyncBufReadExt, AsyncSeekExt};
    let open = || async { tokio::fs::File::open(&path).await.ok() };
    let offset_start: u64;
    if req.from_end {
        offset_start = tokio::fs::metadata(&path).await.map(|m| m.len()).unwrap_or(0);
    } else {
        // Everything so far (rotated files first, oldest first), honouring tail.
        let mut entries: Vec<pb::LogEntry> = Vec::new();
        for n in (1..=16).rev() {
            let rotated = PathBuf::from(format!("{}.{n}", path.display()));
            if let Ok(text) = tokio::fs::read_to_string(&rotated).await {
                entries.extend(text.lines().filter_map(|l| entry_of(l, &req)));
            }
        }
        let text = tokio::fs::read_to_string(&path).await.unwrap_or_default();
        offset_start = text.len() as u64;
        entries.extend(text.lines().filter_map(|l| entry_of(l, &req)));
        if req.tail >= 0 && (req.tail as usize) < entries.len() {
            entries.drain(..entries.len() - req.tail as usize);
        }
        for e in entries {
            if tx.send(Ok(e)).await.is_err() {
                return;
            }
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
            loop {
                line.clear();
                match reader.read_line(&mut line).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) if line.ends_with('\n') => {
                        offset += n as u64;
                        if let Some(e) = entry_of(line.trim_end(), &req)
                            && tx.send(Ok(e)).await.is_err()
                        {
                            return;
                        }
                    }
                    Ok(_) => break,
                }
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
