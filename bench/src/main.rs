//! `berth-bench`: Berth against dockerd, side by side, in one run.
//!
//! Both engines run at once on their own sockets and roots; every figure is
//! measured through the same docker CLI, alternately (Berth, dockerd, Berth, ...)
//! so drift on the machine affects both, and reported as medians with min, max
//! and the run count. Results go to `bench/results/` as JSON and Markdown, and
//! `bench/chart.py` draws the ratios as a PNG.
//!
//! `--smoke` runs every figure once, against Berth only, with small sizes: the
//! check that keeps this program from rotting (part of `make test`).

mod engine;
mod load;
mod report;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use engine::Engine;
use report::{Figure, Unit};

struct Opts {
    smoke: bool,
    runs: usize,
    out: PathBuf,
    load_secs: u64,
}

fn parse_args() -> Result<Opts> {
    let mut o = Opts { smoke: false, runs: 10, out: PathBuf::from("bench/results"), load_secs: 10 };
    let mut load_secs = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--smoke" => o.smoke = true,
            "--runs" => o.runs = args.next().context("--runs N")?.parse()?,
            "--out" => o.out = PathBuf::from(args.next().context("--out DIR")?),
            "--load-secs" => load_secs = Some(args.next().context("--load-secs N")?.parse()?),
            other => bail!("unknown argument {other:?} (use --smoke, --runs N, --out DIR, --load-secs N)"),
        }
    }
    if o.smoke {
        o.runs = 1;
        o.load_secs = 1;
    }
    // Given, it holds for a smoke run too (a quick look at one load figure).
    if let Some(secs) = load_secs {
        o.load_secs = secs;
    }
    Ok(o)
}

/// Milliseconds a closure took.
fn timed(f: impl FnOnce() -> Result<()>) -> Result<f64> {
    let start = Instant::now();
    f()?;
    Ok(start.elapsed().as_secs_f64() * 1000.0)
}

/// Runs `measure` `runs` times on each engine, alternating.
fn alternate(
    engines: &[Engine],
    runs: usize,
    mut measure: impl FnMut(&Engine) -> Result<f64>,
) -> Result<Vec<Vec<f64>>> {
    let mut samples = vec![Vec::new(); engines.len()];
    for _ in 0..runs {
        for (i, e) in engines.iter().enumerate() {
            samples[i].push(measure(e).with_context(|| format!("on {}", e.name))?);
        }
    }
    Ok(samples)
}

fn main() -> Result<()> {
    let o = parse_args()?;
    let mut engines = vec![Engine::berth()?];
    if !o.smoke {
        engines.push(Engine::dockerd()?);
    }
    let image = berth_tests::docker_save_tar(&[berth_tests::TestImage::busybox(&["busybox:latest"])], false);
    for e in &engines {
        e.load(&image)?;
    }
    // Memory while idle: started, the image loaded, nothing run yet.
    let idle: Vec<engine::Memory> = engines.iter().map(Engine::memory).collect();
    let (n50, n500, lines) = if o.smoke { (3, 10, 1000) } else { (50, 500, 100_000) };
    let mut figures: Vec<Figure> = Vec::new();
    let mut add = |name: &str, unit: Unit, goal: Option<f64>, samples: Vec<Vec<f64>>, engines: &[Engine]| {
        let f = Figure::new(name, unit, goal, engines, samples);
        println!("{}", f.line());
        figures.push(f);
    };

    let s = alternate(&engines, o.runs, |e| timed(|| e.ok(&["run", "--rm", "busybox", "true"])))?;
    add("docker run --rm busybox true", Unit::Ms, Some(8.0), s, &engines);
    let s = alternate(&engines, o.runs, |e| timed(|| e.ok(&["run", "--rm", "--network", "none", "busybox", "true"])))?;
    add("docker run --rm --network none busybox true", Unit::Ms, Some(8.0), s, &engines);

    let mut created: Vec<(usize, String)> = Vec::new();
    let s = alternate(&engines, o.runs, |e| {
        let start = Instant::now();
        let id = e.out(&["create", "busybox", "true"])?;
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        created.push((engines.iter().position(|x| x.name == e.name).unwrap_or(0), id.trim().to_string()));
        Ok(ms)
    })?;
    add("docker create", Unit::Ms, None, s, &engines);
    let mut queue: Vec<Vec<String>> = vec![Vec::new(); engines.len()];
    for (i, id) in created {
        queue[i].push(id);
    }
    let s = alternate(&engines, o.runs, |e| {
        let i = engines.iter().position(|x| x.name == e.name).unwrap_or(0);
        let id = queue[i].pop().context("a created container")?;
        timed(|| e.ok(&["start", "-a", &id]))
    })?;
    add("docker start -a (created before)", Unit::Ms, None, s, &engines);

    for e in &engines {
        e.ok(&["run", "-d", "--name", "bench-exec", "busybox", "sleep", "3600"])?;
    }
    let s = alternate(&engines, o.runs, |e| timed(|| e.ok(&["exec", "bench-exec", "true"])))?;
    add("docker exec CTR true", Unit::Ms, Some(5.0), s, &engines);

    // Logs: a container that printed many lines, read back whole.
    for e in &engines {
        e.ok(&["run", "--name", "bench-logs", "busybox", "seq", "1", &lines.to_string()])?;
    }
    let s = alternate(&engines, o.runs, |e| {
        timed(|| {
            let out = e.output(&["logs", "bench-logs"])?;
            if out.stdout.iter().filter(|b| **b == b'\n').count() != lines {
                bail!("docker logs returned the wrong number of lines");
            }
            Ok(())
        })
    })?;
    add(&format!("docker logs ({lines} lines)"), Unit::Ms, Some(5.0), s, &engines);

    // docker build (the classic builder on both): a 10-step Dockerfile, cold
    // (--no-cache) and warm (every step from the cache).
    let ctx = tempfile::tempdir()?;
    std::fs::create_dir_all(ctx.path().join("src"))?;
    for i in 0..20 {
        std::fs::write(ctx.path().join(format!("src/file{i}.txt")), format!("content {i}\n").repeat(100))?;
    }
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox\nARG VERSION=1\nENV APP=/app MODE=bench\nWORKDIR /app\nCOPY src/ ./src/\n\
         RUN cat src/*.txt | wc -l > lines\nRUN echo $VERSION > version\nLABEL bench=yes\nEXPOSE 8080\n\
         USER 1000\nCMD [\"cat\", \"lines\"]\n",
    )?;
    let dir = ctx.path().display().to_string();
    let build = |e: &Engine, extra: &[&str]| -> Result<()> {
        let args: Vec<&str> = ["build", "-q", "-t", "bench-build"]
            .iter()
            .copied()
            .chain(extra.iter().copied())
            .chain([dir.as_str()])
            .collect();
        let out = e.command(&args).env("DOCKER_BUILDKIT", "0").output()?;
        if !out.status.success() {
            bail!("docker build: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    };
    let s = alternate(&engines, o.runs, |e| timed(|| build(e, &["--no-cache"])))?;
    add("docker build, 10 steps, cold (--no-cache)", Unit::Ms, None, s, &engines);
    for e in &engines {
        build(e, &[])?;
    }
    let s = alternate(&engines, o.runs, |e| timed(|| build(e, &[])))?;
    add("docker build, 10 steps, warm (cache)", Unit::Ms, None, s, &engines);

    // docker pull of a ~100 MiB image (one incompressible layer on busybox) from
    // a local registry (Debian's docker-registry, plain HTTP on 127.0.0.1, which
    // both engines treat as insecure); removed again after every pull, so every
    // run downloads, verifies and unpacks the whole layer.
    let mib = if o.smoke { 1 } else { 100 };
    let registry = berth_tests::registry::Registry::start(Default::default()).context("start docker-registry")?;
    let noise: Vec<u8> = (0..mib * 1024 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let big = berth_tests::TestImage::busybox(&[])
        .with_layer(berth_tests::Tar::new().file("noise", &noise, 0o644).finish(), &[]);
    drop(noise);
    registry.push_image(
        "bench/big",
        "v1",
        &big,
        berth_tests::registry::Format::Docker,
        berth_tests::registry::Compression::Gzip,
    )?;
    drop(big);
    let reference = format!("{}/bench/big:v1", registry.host());
    let s = alternate(&engines, o.runs, |e| {
        let ms = timed(|| e.ok(&["pull", "-q", &reference]))?;
        e.ok(&["rmi", &reference])?;
        Ok(ms)
    })?;
    add(&format!("docker pull ({mib} MiB layer, local registry)"), Unit::Ms, Some(2.0), s, &engines);
    drop(registry);

    // 50 containers started one after another, then ps with them running (and
    // the memory then: the per-container figure is the difference to idle,
    // divided by 51, the 50 and bench-exec).
    let runs_long = if o.smoke { 1 } else { 3 };
    let mut ps_running = vec![Vec::new(); engines.len()];
    let mut ps_all_running = vec![Vec::new(); engines.len()];
    let mut with50: Vec<engine::Memory> = Vec::new();
    let mut shims: Vec<engine::Memory> = Vec::new();
    let mut stats_once = vec![Vec::new(); engines.len()];
    let mut stats_cpu = vec![Vec::new(); engines.len()];
    let stream_secs = if o.smoke { 2 } else { 10 };
    let s = alternate(&engines, runs_long, |e| {
        let i = engines.iter().position(|x| x.name == e.name).unwrap_or(0);
        let mut ids = Vec::new();
        let ms = timed(|| {
            for _ in 0..n50 {
                ids.push(e.out(&["run", "-d", "busybox", "sleep", "3600"])?.trim().to_string());
            }
            Ok(())
        })?;
        for _ in 0..3 {
            ps_running[i].push(timed(|| e.ok(&["ps"]))?);
            ps_all_running[i].push(timed(|| e.ok(&["ps", "-a"]))?);
        }
        // docker stats: once for all of them, then the engine's CPU while the
        // CLI streams the stats of every one (a stream per container, a
        // sample a second each).
        stats_once[i].push(timed(|| e.ok(&["stats", "--no-stream"]))?);
        let mut streaming = e
            .command(&["stats", "--format", "{{.Name}} {{.CPUPerc}}"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        std::thread::sleep(Duration::from_secs(2));
        let before = e.cpu_ms();
        std::thread::sleep(Duration::from_secs(stream_secs));
        let used = e.cpu_ms() - before;
        let _ = streaming.kill();
        let _ = streaming.wait();
        stats_cpu[i].push(used / (stream_secs as f64 * 1000.0) * 100.0);
        if with50.len() < engines.len() {
            with50.push(e.memory());
            shims.push(e.shim_memory());
        }
        e.remove_all(&ids)?;
        Ok(ms)
    })?;
    add(&format!("{n50} x docker run -d sleep (total)"), Unit::Ms, None, s, &engines);
    add(&format!("docker ps ({n50} running)"), Unit::Ms, None, ps_running, &engines);
    add(&format!("docker ps -a ({n50} running)"), Unit::Ms, None, ps_all_running, &engines);
    add(&format!("docker stats --no-stream ({n50} running)"), Unit::Ms, None, stats_once, &engines);
    add(&format!("engine CPU, docker stats streaming {n50}"), Unit::Cpu, None, stats_cpu, &engines);

    // docker ps -a with many created containers.
    let mut many: Vec<Vec<String>> = Vec::new();
    for e in &engines {
        many.push(
            (0..n500)
                .map(|_| e.out(&["create", "busybox", "true"]).map(|s| s.trim().to_string()))
                .collect::<Result<_>>()?,
        );
    }
    let s = alternate(&engines, o.runs, |e| timed(|| e.ok(&["ps", "-a"])))?;
    add(&format!("docker ps -a ({n500} created)"), Unit::Ms, Some(2.5), s, &engines);
    for (e, ids) in engines.iter().zip(&many) {
        e.remove_all(ids)?;
    }

    // Memory: the whole engine, idle and with 50 running, and per container.
    let mem = |m: &[engine::Memory], f: fn(&engine::Memory) -> f64| m.iter().map(|x| vec![f(x)]).collect::<Vec<_>>();
    add("engine RSS, idle (MiB)", Unit::MiB, Some(4.0), mem(&idle, |m| m.rss_mib), &engines);
    add("engine PSS, idle (MiB)", Unit::MiB, None, mem(&idle, |m| m.pss_mib), &engines);
    add(&format!("engine RSS, {n50} running (MiB)"), Unit::MiB, None, mem(&with50, |m| m.rss_mib), &engines);
    let per = |f: fn(&engine::Memory) -> f64| -> Vec<Vec<f64>> {
        idle.iter().zip(&with50).map(|(a, b)| vec![(f(b) - f(a)) / (n50 + 1) as f64]).collect()
    };
    add("RSS per running container (MiB)", Unit::MiB, None, per(|m| m.rss_mib), &engines);
    add("PSS per running container (MiB)", Unit::MiB, None, per(|m| m.pss_mib), &engines);
    add("one shim's RSS (MiB)", Unit::MiB, None, mem(&shims, |m| m.rss_mib), &engines);
    add("one shim's PSS (MiB)", Unit::MiB, None, mem(&shims, |m| m.pss_mib), &engines);

    // API load: 32 clients for a while on each endpoint.
    for path in ["/_ping", "/containers/json"] {
        let runs = if o.smoke { 1 } else { 2 };
        let mut rps = vec![Vec::new(); engines.len()];
        let mut p99 = vec![Vec::new(); engines.len()];
        for _ in 0..runs {
            for (i, e) in engines.iter().enumerate() {
                let r = load::run(&e.socket, path, 32, Duration::from_secs(o.load_secs))?;
                rps[i].push(r.rps);
                p99[i].push(r.p99_ms);
            }
        }
        add(&format!("GET {path}, 32 clients: requests/s"), Unit::PerSec, None, rps, &engines);
        add(&format!("GET {path}, 32 clients: p99 latency"), Unit::Ms, None, p99, &engines);
    }

    // Cold start: from launching the daemon until `docker version` answers.
    let s = alternate(&engines, if o.smoke { 1 } else { o.runs }, |e| e.cold_start_ms())?;
    add("cold start to the first docker version", Unit::Ms, Some(6.0), s, &engines);

    for e in &engines {
        let _ = e.output(&["rm", "-f", "bench-exec", "bench-logs"]);
    }
    drop(engines);
    settings(&o, &image, n500, &mut figures)?;
    report::write(&o.out, &figures, o.smoke)?;
    Ok(())
}

/// Berth against itself with other settings: its state in Postgres (the tests'
/// server on loopback) against the embedded SQLite files, and with traces
/// exported (OTLP/gRPC to a receiver on loopback) against without.
fn settings(o: &Opts, image: &[u8], n500: usize, figures: &mut Vec<Figure>) -> Result<()> {
    let mut add = |name: &str, unit: Unit, engines: &[Engine], samples: Vec<Vec<f64>>| {
        let f = Figure::new(name, unit, None, engines, samples);
        println!("{}", f.line());
        figures.push(f);
    };
    let url = berth_tests::postgres::Postgres::shared().create_database()?;
    let state = [
        Engine::berth_with("sqlite", &[], &[])?,
        Engine::berth_with("postgres", &[&format!("--state-url={url}")], &[])?,
    ];
    for e in &state {
        e.load(image)?;
    }
    let s = alternate(&state, o.runs, |e| timed(|| e.ok(&["run", "--rm", "busybox", "true"])))?;
    add("state: docker run --rm busybox true", Unit::Ms, &state, s);
    let s = alternate(&state, o.runs, |e| timed(|| e.ok(&["volume", "create"])))?;
    add("state: docker volume create", Unit::Ms, &state, s);
    let mut many: Vec<Vec<String>> = Vec::new();
    for e in &state {
        many.push(
            (0..n500)
                .map(|_| e.out(&["create", "busybox", "true"]).map(|s| s.trim().to_string()))
                .collect::<Result<_>>()?,
        );
    }
    let s = alternate(&state, o.runs, |e| timed(|| e.ok(&["ps", "-a"])))?;
    add(&format!("state: docker ps -a ({n500} created)"), Unit::Ms, &state, s);
    // Once each: what is removed is gone after.
    let s = state
        .iter()
        .zip(&many)
        .map(|(e, ids)| timed(|| e.remove_all(ids)).map(|ms| vec![ms]))
        .collect::<Result<Vec<_>>>()?;
    add(&format!("state: docker rm -f {n500} created"), Unit::Ms, &state, s);
    drop(state);

    let (receiver, endpoint, _rt) = berth_tests::otlp::grpc_receiver();
    let tracing = [
        Engine::berth_with("traces off", &[], &[])?,
        Engine::berth_with("traces on", &[], &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())])?,
    ];
    for e in &tracing {
        e.load(image)?;
    }
    let s = alternate(&tracing, o.runs, |e| timed(|| e.ok(&["run", "--rm", "busybox", "true"])))?;
    add("traces: docker run --rm busybox true", Unit::Ms, &tracing, s);
    let mut rps = vec![Vec::new(); tracing.len()];
    for _ in 0..if o.smoke { 1 } else { 2 } {
        for (i, e) in tracing.iter().enumerate() {
            rps[i].push(load::run(&e.socket, "/containers/json", 32, Duration::from_secs(o.load_secs))?.rps);
        }
    }
    add("traces: GET /containers/json, 32 clients: requests/s", Unit::PerSec, &tracing, rps);
    if receiver.spans().is_empty() {
        bail!("tracing on, but the receiver got no span");
    }
    Ok(())
}
