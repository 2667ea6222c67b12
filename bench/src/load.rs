//! A small HTTP load driver: `clients` connections over the engine's unix
//! socket, each sending GET requests back to back (keep-alive) for a while.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use http_body_util::{BodyExt, Empty};

/// Throughput and tail latency of one load run.
#[derive(Debug, Clone, Copy)]
pub struct LoadResult {
    /// Completed requests per second.
    pub rps: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
}

async fn client(socket: std::path::PathBuf, path: String, until: Instant) -> Result<Vec<u32>> {
    let stream = tokio::net::UnixStream::connect(&socket).await.context("connect")?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut micros = Vec::with_capacity(100_000);
    while Instant::now() < until {
        let req = http::Request::get(&path).header("host", "bench").body(Empty::<bytes::Bytes>::new())?;
        let start = Instant::now();
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        resp.into_body().collect().await?;
        anyhow::ensure!(status.is_success(), "GET {path}: {status}");
        micros.push(start.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
    }
    Ok(micros)
}

/// Runs the load and reports requests per second and p99.
pub fn run(socket: &Path, path: &str, clients: usize, duration: Duration) -> Result<LoadResult> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async {
        let until = Instant::now() + duration;
        let start = Instant::now();
        let tasks: Vec<_> =
            (0..clients).map(|_| tokio::spawn(client(socket.to_path_buf(), path.to_string(), until))).collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await??);
        }
        let secs = start.elapsed().as_secs_f64();
        all.sort_unstable();
        let p99 = all.get((all.len() * 99 / 100).min(all.len().saturating_sub(1))).copied().unwrap_or(0);
        Ok(LoadResult { rps: all.len() as f64 / secs, p99_ms: f64::from(p99) / 1000.0 })
    })
}
