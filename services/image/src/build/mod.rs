//! The classic builder (`POST /build`, `DOCKER_BUILDKIT=0 docker build`).
//!
//! The context (a tar, plain or gzip) is unpacked to a staging directory on
//! disk, never held in memory, with `.dockerignore` applied and no entry
//! outside the directory. The Dockerfile is parsed ([`dockerfile`]) and the
//! stages the target needs are built in order. Each instruction makes an image
//! whose parent is the previous one, as dockerd's classic builder does:
//! - metadata instructions (ENV, LABEL, CMD, USER, ...) commit the new config
//!   with no layer;
//! - RUN creates a container from the current image through the runtime
//!   service, runs it with the build's network mode, streams its output into
//!   the build's output and commits its writable layer (the runtime's
//!   `CommitContainer`);
//! - COPY and ADD build a tar of their sources (from the context, resolved
//!   inside it, or from another stage or image) and unpack it into a created
//!   container (the runtime's `PutArchive`, resolved inside the container),
//!   then commit it.
//!
//! Before a step runs, the cache is asked: an image whose parent is the
//! current image, whose last history entry says the same (`created_by`
//! carries the instruction, the build arguments RUN sees, and a checksum of
//! COPY's sources) and whose config is the one the step would make is reused
//! (` ---> Using cache`). With `--cache-from`, as dockerd's classic builder:
//! the listed images (pulled or loaded, so without parent links) are the
//! cache: a step is found in one when the current image's history and layers
//! are a prefix of its own and its next history entry is the step's; the
//! step's image is then made from that entry and its layer, with nothing run
//! or written. A local hit only counts then if it is an ancestor of a listed
//! image.
//!
//! The image service owns the builder (`ARCHITECTURE.md`), and asks the
//! runtime service for the containers it needs; it starts no process itself.

pub mod dockerfile;
pub mod ignore;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_core::{ByteStream, Error, Result};
use berth_image_api::{ImageApi, pb};
use berth_models::StrSlice;
use berth_models::container::{ContainerConfig, HostConfig};
use berth_models::image::ImageConfig;
use berth_runtime_api::RuntimeApi;
use futures::StreamExt;
use sha2::{Digest, Sha256};

use self::dockerfile::{Command, Flag, Instruction, Lexer, Step};
use crate::service::LocalImageService;

/// The largest Dockerfile read.
const MAX_DOCKERFILE: u64 = 4 << 20;
/// The classic builder's default shell.
const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// Where the build's messages go.
pub type Out = tokio::sync::mpsc::Sender<Result<pb::BuildMessage>>;

async fn say(out: &Out, text: impl Into<String>) {
    let msg = pb::BuildMessage { kind: Some(pb::build_message::Kind::Stream(text.into())) };
    let _ = out.send(Ok(msg)).await;
}

fn short(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

/// One stage's state while it builds.
struct Stage {
    /// The image built so far (empty: `FROM scratch` before any step).
    image: String,
    config: ContainerConfig,
    /// ARGs declared in this stage, with their values.
    args: Vec<(String, String)>,
    /// Whether this stage gave a CMD (a later ENTRYPOINT keeps it).
    cmd_set: bool,
}

impl Stage {
    /// The variables instructions see: ARGs, then ENV (ENV wins).
    fn vars(&self) -> Vec<(String, String)> {
        let mut v = self.args.clone();
        v.extend(self.config.env().iter().map(|e| match e.split_once('=') {
            Some((k, val)) => (k.to_string(), val.to_string()),
            None => (e.clone(), String::new()),
        }));
        v
    }
}

/// A stage as written: its FROM and the steps after it.
struct StageDef {
    name: Option<String>,
    from: Step,
    steps: Vec<Step>,
}

/// The build's fixed inputs.
struct Build<'a> {
    svc: &'a LocalImageService,
    runtime: Arc<dyn RuntimeApi>,
    opts: &'a pb::BuildOptions,
    context: PathBuf,
    escape: char,
    out: &'a Out,
    /// Build arguments given (`--build-arg`), and which were used.
    build_args: &'a BTreeMap<String, String>,
    used_args: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Results of the stages built so far, by index and by name.
    done: HashMap<String, String>,
    /// The `--cache-from` images found: ID and config.
    cache_sources: Vec<(String, ImageConfig)>,
    step_no: usize,
    step_total: usize,
}

impl LocalImageService {
    /// Builds from `context` (a tar) with `opts`, sending dockerd's messages to
    /// `out`; the new image's ID.
    pub(crate) async fn build_image(
        &self,
        runtime: Arc<dyn RuntimeApi>,
        opts: pb::BuildOptions,
        context: ByteStream,
        out: Out,
    ) -> Result<String> {
        if !opts.remote.is_empty() {
            return Err(Error::invalid("remote build contexts are not supported: send the context as a tar"));
        }
        let staging = self.content.staging()?;
        let dir = staging.path().join("context");
        let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(
            context.map(|r| r.map_err(|e| std::io::Error::other(e.message().to_string()))),
        ));
        let unpack_dir = dir.clone();
        let dockerfile_name =
            if opts.dockerfile.is_empty() { "Dockerfile".to_string() } else { opts.dockerfile.clone() };

        let text = tokio::task::spawn_blocking(move || -> Result<String> {
            unpack_context(reader, &unpack_dir, &dockerfile_name)?;
            let bytes = berth_core::rootfs::read_in_root(&unpack_dir, Path::new(&dockerfile_name), MAX_DOCKERFILE)?
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "Cannot locate specified Dockerfile: {}",
                        Path::new(&dockerfile_name).file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
                    ))
                })?;
            String::from_utf8(bytes).map_err(|_| Error::invalid("the Dockerfile is not UTF-8"))
        })
        .await
        .map_err(|e| Error::internal(e.to_string()))??;
        let file = dockerfile::parse(&text)?;
        let mut b = Build {
            svc: self,
            runtime,
            opts: &opts,
            context: dir,
            escape: file.escape,
            out: &out,
            build_args: &opts.build_args.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            used_args: Default::default(),
            done: HashMap::new(),
            cache_sources: Vec::new(),
            step_no: 0,
            step_total: 0,
        };
        for source in &opts.cache_from {
            // As dockerd: an image that is not here is skipped, with a warning.
            match self.image_config(source).await {
                Ok((id, _, cfg)) => b.cache_sources.push((id, cfg)),
                Err(e) => tracing::warn!(image = %source, error = %e, "cache-from image skipped"),
            }
        }
        let id = b.run(file.steps).await;
        drop(staging);
        let id = id?;
        let unused: Vec<String> = {
            let used = b.used_args.lock().unwrap_or_else(|e| e.into_inner());
            b.build_args.keys().filter(|k| !used.contains(*k) && !is_predefined_arg(k)).cloned().collect()
        };
        if !unused.is_empty() && !opts.quiet {
            say(&out, format!("[Warning] One or more build-args [{}] were not consumed\n", unused.join(" "))).await;
        }
        Ok(id)
    }
}

/// Build arguments dockerd knows without an ARG (proxies).
fn is_predefined_arg(k: &str) -> bool {
    matches!(k.to_ascii_uppercase().as_str(), "HTTP_PROXY" | "HTTPS_PROXY" | "FTP_PROXY" | "NO_PROXY" | "ALL_PROXY")
}

/// Unpacks the context tar (plain, gzip, bzip2 or xz) into `dir`, leaving
/// out what `.dockerignore` says (the Dockerfile and `.dockerignore` stay).
fn unpack_context(input: impl std::io::Read + 'static, dir: &Path, dockerfile: &str) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let seen = std::sync::Arc::new(Seen::default());
    let mut reader = Counted { inner: decompressed(input, &dir.with_extension("tar"))?, seen: seen.clone() };
    let mut archive = tar::Archive::new(&mut reader);
    archive.set_preserve_permissions(true);
    archive.set_overwrite(true);
    archive.set_unpack_xattrs(false);
    // Everything is unpacked first: `.dockerignore` may come after the
    // entries it names, which are removed once it is read.
    let mut end_of_last = 0;
    for entry in archive.entries().map_err(|e| Error::invalid(format!("read the build context: {e}")))? {
        let mut entry = match entry {
            Ok(e) => e,
            // The docker CLI sends a context whose Dockerfile lies outside it
            // (`-f ../Dockerfile`) as a tar that ends right after the last
            // entry's data, without padding or end blocks; dockerd (Go's
            // archive/tar) takes an end there as the archive's end, and so does
            // this. An end anywhere else is a truncated context.
            Err(_) if seen.ended_at(end_of_last) => break,
            Err(e) => return Err(Error::invalid(format!("read the build context: {e}"))),
        };
        let path = entry.path().map_err(|e| Error::invalid(format!("build context entry: {e}")))?.into_owned();
        end_of_last = entry.raw_file_position() + entry.size();
        entry.unpack_in(dir).map_err(|e| Error::invalid(format!("build context entry {}: {e}", path.display())))?;
    }
    berth_core::drain(reader, 1 << 20);
    if let Some(text) = berth_core::rootfs::read_in_root(dir, Path::new(".dockerignore"), 1 << 20)? {
        let ig = ignore::Ignore::parse(&String::from_utf8_lossy(&text));
        prune(dir, Path::new(""), &ig, dockerfile)?;
    }
    Ok(())
}

/// How much of a stream was read, and whether its end was.
#[derive(Debug, Default)]
struct Seen {
    read: std::sync::atomic::AtomicU64,
    eof: std::sync::atomic::AtomicBool,
}

impl Seen {
    /// Whether the stream ended (not failed) after exactly `offset` bytes.
    fn ended_at(&self, offset: u64) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        self.eof.load(Relaxed) && self.read.load(Relaxed) == offset
    }
}

/// A reader that keeps count in a [`Seen`].
struct Counted<R> {
    inner: R,
    seen: std::sync::Arc<Seen>,
}

impl<R: std::io::Read> std::io::Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::sync::atomic::Ordering::Relaxed;
        let n = self.inner.read(buf)?;
        self.seen.read.fetch_add(n as u64, Relaxed);
        if n == 0 && !buf.is_empty() {
            self.seen.eof.store(true, Relaxed);
        }
        Ok(n)
    }
}

/// `input` decompressed as its first bytes say: gzip, bzip2, xz (lzma-rs
/// decodes into a writer: to the file `scratch`, then read), or as it is.
/// For build contexts and ADD's local archives alike.
fn decompressed(input: impl std::io::Read + 'static, scratch: &Path) -> Result<Box<dyn std::io::Read>> {
    let mut input = std::io::BufReader::new(input);
    let head = std::io::BufRead::fill_buf(&mut input)?.to_vec();
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(input))
    } else if head.starts_with(b"BZh") {
        Box::new(bzip2::read::BzDecoder::new(input))
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        let mut out = std::io::BufWriter::new(std::fs::File::create(scratch)?);
        lzma_rs::xz_decompress(&mut input, &mut out).map_err(|e| Error::invalid(format!("xz: {e}")))?;
        std::io::Write::flush(&mut out)?;
        Box::new(std::io::BufReader::new(std::fs::File::open(scratch)?))
    } else {
        Box::new(input)
    })
}

/// Removes what `ig` leaves out under `dir/rel`.
fn prune(dir: &Path, rel: &Path, ig: &ignore::Ignore, dockerfile: &str) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir.join(rel)) else { return Ok(()) };
    for e in entries.filter_map(|e| e.ok()) {
        let child = rel.join(e.file_name());
        let shown = child.to_string_lossy().to_string();
        let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if shown == dockerfile || shown == ".dockerignore" {
            continue;
        }
        if ig.excludes(&shown) {
            if is_dir && ig.has_exceptions() {
                prune(dir, &child, ig, dockerfile)?;
                let _ = std::fs::remove_dir(dir.join(&child));
            } else if is_dir {
                std::fs::remove_dir_all(dir.join(&child))?;
            } else {
                std::fs::remove_file(dir.join(&child))?;
            }
        } else if is_dir {
            prune(dir, &child, ig, dockerfile)?;
        }
    }
    Ok(())
}

/// A flag's value by name.
fn flag<'f>(flags: &'f [Flag], name: &str) -> Option<&'f str> {
    flags.iter().rev().find(|f| f.name.eq_ignore_ascii_case(name)).and_then(|f| f.value.as_deref())
}

impl Build<'_> {
    fn lexer<'v>(&self, vars: &'v [(String, String)]) -> Lexer<'v> {
        Lexer { escape: self.escape, vars }
    }

    async fn say(&self, text: impl Into<String>) {
        if !self.opts.quiet {
            say(self.out, text).await;
        }
    }

    /// Splits the steps into global ARGs and stages, builds the stages the
    /// target needs, and returns the last one's image.
    async fn run(&mut self, steps: Vec<Step>) -> Result<String> {
        let mut globals = Vec::new();
        let mut stages: Vec<StageDef> = Vec::new();
        for step in steps {
            match (&step.instruction, stages.last_mut()) {
                (Instruction::From { name, .. }, _) => stages.push(StageDef {
                    name: name.clone().map(|n| n.to_ascii_lowercase()),
                    from: step,
                    steps: vec![],
                }),
                (_, Some(stage)) => stage.steps.push(step),
                (Instruction::Arg(_), None) => globals.push(step),
                _ => return Err(Error::invalid("Please provide a source image with `from` prior to commit")),
            }
        }
        let target = if self.opts.target.is_empty() {
            stages.len() - 1
        } else {
            let t = self.opts.target.to_ascii_lowercase();
            stages.iter().position(|s| s.name.as_deref() == Some(t.as_str())).ok_or_else(|| {
                Error::invalid(format!("failed to reach build target {} in Dockerfile", self.opts.target))
            })?
        };
        let needed = needed_stages(&stages, target);
        self.step_total = globals.len() + needed.iter().map(|i| 1 + stages[*i].steps.len()).sum::<usize>();
        // Global ARGs: for FROM lines, and as defaults for a stage's ARG NAME.
        let mut global_args: Vec<(String, String)> = Vec::new();
        for g in &globals {
            self.step_no += 1;
            self.say(format!("Step {}/{} : {}\n", self.step_no, self.step_total, g.text)).await;
            if let Instruction::Arg(a) = &g.instruction {
                let (k, v) = self.arg(a, &global_args, &[])?;
                global_args.push((k, v));
            }
        }
        let mut last = String::new();
        for i in needed {
            let def = &stages[i];
            let id = self.stage(def, &global_args).await?;
            self.done.insert(i.to_string(), id.clone());
            if let Some(n) = &def.name {
                self.done.insert(n.clone(), id.clone());
            }
            last = id;
        }
        if !self.opts.labels.is_empty() {
            // The build's labels go on the final image, as dockerd adds them.
            let mut config = self.image_config(&last).await?.container_config();
            config.labels.get_or_insert_with(Default::default).extend(self.opts.labels.clone());
            let labels: Vec<String> = self.opts.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let key = nop(&format!("LABEL {}", labels.join(" ")));
            last = self.metadata_commit(&last, &config, &key).await?;
        }
        if last.is_empty() {
            return Err(Error::invalid("the build made no image (a stage of only FROM scratch)"));
        }
        Ok(last)
    }

    /// Resolves `ARG NAME[=default]`: the build argument, else the default,
    /// else a global ARG's value.
    fn arg(&self, text: &str, globals: &[(String, String)], vars: &[(String, String)]) -> Result<(String, String)> {
        let lexer = self.lexer(vars);
        let (name, default) = match text.split_once('=') {
            Some((n, d)) => (n.trim().to_string(), Some(lexer.word(d.trim())?)),
            None => (text.trim().to_string(), None),
        };
        let value = match self.build_args.get(&name) {
            Some(v) => {
                self.used_args.lock().unwrap_or_else(|e| e.into_inner()).insert(name.clone());
                v.clone()
            }
            None => default
                .or_else(|| globals.iter().rev().find(|(k, _)| *k == name).map(|(_, v)| v.clone()))
                .unwrap_or_default(),
        };
        Ok((name, value))
    }

    async fn image_config(&self, id: &str) -> Result<ImageConfig> {
        let image = self.svc.inspect(id).await?;
        berth_models::parse("image config", &image.config).map_err(Error::invalid)
    }

    /// Builds one stage; its image.
    async fn stage(&mut self, def: &StageDef, globals: &[(String, String)]) -> Result<String> {
        self.step_no += 1;
        self.say(format!("Step {}/{} : {}\n", self.step_no, self.step_total, def.from.text)).await;
        let Instruction::From { image, flags, .. } = &def.from.instruction else {
            return Err(Error::internal("a stage without FROM"));
        };
        let reference = self.lexer(globals).word(image)?;
        if let Some(p) = flag(flags, "platform") {
            let p = self.lexer(globals).word(p)?;
            if !p.is_empty() && !p.starts_with("linux") {
                return Err(Error::invalid(format!("unsupported platform {p}")));
            }
        }
        let mut stage =
            Stage { image: String::new(), config: ContainerConfig::default(), args: vec![], cmd_set: false };
        if !reference.eq_ignore_ascii_case("scratch") {
            let id = match self.done.get(&reference.to_ascii_lowercase()) {
                Some(id) => id.clone(),
                None => self.base_image(&reference).await?,
            };
            stage.config = self.image_config(&id).await?.container_config();
            stage.image = id;
            self.say(format!(" ---> {}\n", short(&stage.image))).await;
            // The base's ONBUILD triggers run first, then leave the config.
            let triggers = stage.config.on_build.take().unwrap_or_default();
            if !triggers.is_empty() {
                self.say(format!(
                    "# Executing {} build trigger{}\n",
                    triggers.len(),
                    if triggers.len() == 1 { "" } else { "s" }
                ))
                .await;
                for t in triggers {
                    let parsed = dockerfile::parse(&format!("FROM scratch\n{t}\n"))?;
                    for s in parsed.steps.into_iter().skip(1) {
                        self.step(&mut stage, &s, globals).await?;
                    }
                }
            }
        }
        for s in &def.steps {
            self.step_no += 1;
            self.say(format!("Step {}/{} : {}\n", self.step_no, self.step_total, s.text)).await;
            self.step(&mut stage, s, globals).await?;
        }
        Ok(stage.image)
    }

    /// The image `reference`: pulled when missing or when asked to.
    async fn base_image(&self, reference: &str) -> Result<String> {
        if !self.opts.pull
            && let Ok(image) = self.svc.inspect(reference).await
        {
            return Ok(image.id);
        }
        let parsed = crate::reference::Reference::parse(reference)?;
        let domain = match parsed.name.split_once('/') {
            Some((d, _)) if d.contains(['.', ':']) || d == "localhost" => d.to_string(),
            _ => "docker.io".to_string(),
        };
        let auth = self.opts.auths.get(&domain).cloned().or_else(|| {
            (domain == "docker.io").then(|| self.opts.auths.get("https://index.docker.io/v1/").cloned()).flatten()
        });
        let req = pb::PullImageRequest { reference: reference.to_string(), platform: self.opts.platform.clone(), auth };
        let mut progress = self.svc.pull(req).await?;
        while let Some(p) = progress.next().await {
            let p = p?;
            if !p.error.is_empty() {
                return Err(Error::invalid(p.error));
            }
            if !p.status.is_empty() && p.current == 0 {
                let line =
                    if p.id.is_empty() { format!("{}\n", p.status) } else { format!("{}: {}\n", p.id, p.status) };
                self.say(line).await;
            }
        }
        Ok(self.svc.inspect(reference).await?.id)
    }

    /// An image whose parent is `parent`, whose last step was `key` and whose
    /// config is `config`: the cache's answer for this step.
    async fn cached(&self, parent: &str, key: &str, config: &ContainerConfig) -> Option<String> {
        if self.opts.no_cache || parent.is_empty() {
            return None;
        }
        let want = serde_json::to_value(config).ok()?;
        let images = self.svc.list(true, vec![]).await.ok()?;
        let local = images.into_iter().filter(|i| i.parent == parent).find_map(|i| {
            let cfg: ImageConfig = berth_models::parse("image config", &i.config).ok()?;
            let last = cfg.history.last()?;
            let same = last.created_by == key && serde_json::to_value(cfg.container_config()).ok()? == want;
            same.then_some(i.id)
        });
        if self.cache_sources.is_empty() {
            return local;
        }
        if let Some(hit) = local
            && self.is_ancestor_of_a_source(&hit).await
        {
            return Some(hit);
        }
        self.restore_from_cache_sources(parent, key, config).await
    }

    /// Whether `id` is one of the `--cache-from` images or an ancestor of one.
    async fn is_ancestor_of_a_source(&self, id: &str) -> bool {
        for (source, _) in &self.cache_sources {
            let mut at = source.clone();
            // Parent links cannot loop (an image's ID hashes its parent's), but stay bounded.
            for _ in 0..1000 {
                if at == id {
                    return true;
                }
                match self.svc.image_config(&at).await {
                    Ok((_, parent, _)) if !parent.is_empty() => at = parent,
                    _ => break,
                }
            }
        }
        false
    }

    /// The step's image made from a `--cache-from` image (see the module).
    async fn restore_from_cache_sources(&self, parent: &str, key: &str, config: &ContainerConfig) -> Option<String> {
        let (_, _, base) = self.svc.image_config(parent).await.ok()?;
        let (steps, layers) = (base.history.len(), base.rootfs.diff_ids.len());
        for (_, source) in &self.cache_sources {
            let Some(entry) = source.history.get(steps) else { continue };
            let same_past = source.history[..steps] == base.history[..]
                && source.rootfs.diff_ids.get(..layers) == Some(&base.rootfs.diff_ids[..]);
            if !same_past || entry.created_by != key {
                continue;
            }
            let mut made = base.clone();
            if !entry.empty_layer {
                let Some(layer) = source.rootfs.diff_ids.get(layers) else { continue };
                made.rootfs.diff_ids.push(layer.clone());
            }
            made.history.push(entry.clone());
            made.created = entry.created.clone();
            made.config = Some(config.clone());
            made.extra.remove("container");
            made.extra.remove("container_config");
            match self.svc.restore(&made, parent).await {
                Ok(id) => return Some(id),
                Err(e) => tracing::warn!(error = %e, "restoring a step from a cache-from image"),
            }
        }
        None
    }

    async fn metadata_commit(&self, parent: &str, config: &ContainerConfig, key: &str) -> Result<String> {
        if let Some(id) = self.cached(parent, key, config).await {
            self.say(" ---> Using cache\n").await;
            return Ok(id);
        }
        let options = pb::CommitOptions {
            parent: parent.to_string(),
            config: berth_models::to_vec(config),
            created_by: key.to_string(),
            empty_layer: true,
            ..Default::default()
        };
        ImageApi::commit(self.svc, options, Box::pin(futures::stream::empty())).await
    }

    /// Runs one instruction on `stage`.
    async fn step(&self, stage: &mut Stage, s: &Step, globals: &[(String, String)]) -> Result<()> {
        let vars = stage.vars();
        let lexer = self.lexer(&vars);
        let mut config = stage.config.clone();
        let key = match &s.instruction {
            Instruction::Arg(a) => {
                let (k, v) = self.arg(a, globals, &vars)?;
                stage.args.retain(|(n, _)| *n != k);
                stage.args.push((k, v));
                nop(&s.text)
            }
            Instruction::Run { command, .. } => {
                stage.image = self.run_step(stage, command).await?;
                self.say(format!(" ---> {}\n", short(&stage.image))).await;
                return Ok(());
            }
            Instruction::Copy { sources, dest, flags, add } => {
                stage.image = self.copy_step(stage, sources, dest, flags, *add, &lexer).await?;
                self.say(format!(" ---> {}\n", short(&stage.image))).await;
                return Ok(());
            }
            Instruction::From { .. } => return Err(Error::internal("FROM inside a stage")),
            other => {
                let desc = apply_metadata(&mut config, other, &lexer, &mut stage.cmd_set)?;
                nop(&desc)
            }
        };
        stage.image = self.metadata_commit(&stage.image, &config, &key).await?;
        stage.config = config;
        self.say(format!(" ---> {}\n", short(&stage.image))).await;
        Ok(())
    }

    /// A CMD/ENTRYPOINT/RUN command as argv: exec form as written, shell form
    /// under the stage's shell.
    fn argv(&self, stage: &Stage, c: &Command) -> Vec<String> {
        argv_of(&stage.config, c)
    }

    /// RUN: a container from the current image runs the command; its layer is committed.
    async fn run_step(&self, stage: &Stage, command: &Command) -> Result<String> {
        if stage.image.is_empty() {
            return Err(Error::invalid("RUN needs an image with a shell: FROM scratch has none"));
        }
        let argv = self.argv(stage, command);
        // The build arguments RUN sees, as dockerd records them.
        let args: Vec<String> = stage.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let key = if args.is_empty() {
            argv.join(" ")
        } else {
            format!("|{} {} {}", args.len(), args.join(" "), argv.join(" "))
        };
        if let Some(id) = self.cached(&stage.image, &key, &stage.config).await {
            self.say(" ---> Using cache\n").await;
            return Ok(id);
        }
        let mut run_config = stage.config.clone();
        run_config.image = stage.image.clone();
        // The command is the entrypoint, so the image's own ENTRYPOINT and CMD stay out.
        run_config.entrypoint = StrSlice(Some(argv.clone()));
        run_config.cmd = StrSlice(None);
        run_config.healthcheck = None;
        let mut env = stage.config.env().to_vec();
        for (k, v) in &stage.args {
            if !env.iter().any(|e| e.split_once('=').map(|(ek, _)| ek) == Some(k.as_str())) {
                env.push(format!("{k}={v}"));
            }
        }
        run_config.env = Some(env);
        run_config.attach_stdout = true;
        run_config.attach_stderr = true;
        let host = HostConfig {
            network_mode: if self.opts.network_mode.is_empty() {
                "default".into()
            } else {
                self.opts.network_mode.clone()
            },
            extra_hosts: (!self.opts.extra_hosts.is_empty()).then(|| self.opts.extra_hosts.clone()),
            shm_size: self.opts.shm_size.max(0),
            ..Default::default()
        };
        let ctr = self.create_container(&run_config, &host).await?;
        self.say(format!(" ---> Running in {}\n", &ctr[..12.min(ctr.len())])).await;
        let outcome = self.run_container(&ctr, &argv, stage, &key).await;
        let remove = match &outcome {
            Ok(_) => self.opts.rm,
            Err(_) => self.opts.force_rm,
        };
        if remove {
            let _ = self.runtime.remove(&ctr, true, true).await;
            self.say(format!("Removing intermediate container {}\n", &ctr[..12.min(ctr.len())])).await;
        }
        outcome
    }

    async fn run_container(&self, ctr: &str, argv: &[String], stage: &Stage, key: &str) -> Result<String> {
        self.runtime.start(ctr).await?;
        let logs = self
            .runtime
            .logs(berth_runtime_api::pb::ContainerLogsRequest {
                reference: ctr.to_string(),
                follow: true,
                stdout: true,
                stderr: true,
                tail: -1,
                ..Default::default()
            })
            .await?;
        let mut logs = logs;
        while let Some(entry) = logs.next().await {
            let Ok(entry) = entry else { break };
            self.say(String::from_utf8_lossy(&entry.line).into_owned()).await;
        }
        let code = self.runtime.wait(ctr, "not-running").await?.exit_code;
        if code != 0 {
            return Err(Error::invalid(format!("The command '{}' returned a non-zero code: {code}", argv.join(" "))));
        }
        self.runtime
            .commit(berth_runtime_api::pb::CommitContainerRequest {
                reference: ctr.to_string(),
                config: berth_models::to_vec(&stage.config),
                exact_config: true,
                created_by: key.to_string(),
                ..Default::default()
            })
            .await
    }

    /// COPY/ADD: a tar of the sources, unpacked into a created container, committed.
    async fn copy_step(
        &self,
        stage: &Stage,
        sources: &[String],
        dest: &str,
        flags: &[Flag],
        add: bool,
        lexer: &Lexer<'_>,
    ) -> Result<String> {
        let what = if add { "ADD" } else { "COPY" };
        if sources.is_empty() {
            return Err(Error::invalid(format!("{what} requires at least two arguments")));
        }
        let sources: Vec<String> = sources.iter().map(|s| lexer.word(s)).collect::<Result<_>>()?;
        let mut dest = lexer.word(dest)?;
        if !dest.starts_with('/') {
            let wd =
                if stage.config.working_dir.is_empty() { "/".to_string() } else { stage.config.working_dir.clone() };
            let joined = Path::new(&wd).join(&dest).display().to_string();
            dest = if dest.ends_with('/') { format!("{joined}/") } else { joined };
        }
        let chown = flag(flags, "chown").map(|c| lexer.word(c)).transpose()?;
        let owner = match &chown {
            Some(c) => Some(self.owner(stage, c).await?),
            None => None,
        };
        // Sources from another stage or image: its filesystem through a created container.
        let from = flag(flags, "from").map(|f| lexer.word(f)).transpose()?;
        let staging = self.svc.content.staging()?;
        let tar_path = staging.path().join("copy.tar");
        let from_root = match &from {
            Some(f) => Some(self.stage_files(f, &sources, staging.path()).await?),
            None => None,
        };
        let root = from_root.clone().unwrap_or_else(|| self.context.clone());
        let (srcs, dst, tp) = (sources.clone(), dest.clone(), tar_path.clone());
        let checksum =
            tokio::task::spawn_blocking(move || copy_tar(&root, &srcs, &dst, owner, add && from_root.is_none(), &tp))
                .await
                .map_err(|e| Error::internal(e.to_string()))??;
        let key = format!("/bin/sh -c #(nop) {what} {checksum} in {dest} ");
        if let Some(id) = self.cached(&stage.image, &key, &stage.config).await {
            self.say(" ---> Using cache\n").await;
            return Ok(id);
        }
        let base = if stage.image.is_empty() { self.scratch_base().await? } else { stage.image.clone() };
        let mut config = stage.config.clone();
        config.image = base.clone();
        config.cmd = StrSlice(Some(vec!["/bin/sh".into(), "-c".into(), format!("#(nop) {what}")]));
        let ctr = self.create_container(&config, &no_network()).await?;
        let outcome = async {
            let file = tokio::fs::File::open(&tar_path).await?;
            let body: ByteStream = Box::pin(
                tokio_util::io::ReaderStream::new(file).map(|r| r.map_err(|e| Error::internal(e.to_string()))),
            );
            let opts = berth_runtime_api::pb::PutArchiveOptions {
                reference: ctr.clone(),
                path: "/".into(),
                ..Default::default()
            };
            self.runtime.put_archive(opts, body).await?;
            self.runtime
                .commit(berth_runtime_api::pb::CommitContainerRequest {
                    reference: ctr.clone(),
                    config: berth_models::to_vec(&stage.config),
                    exact_config: true,
                    created_by: key.clone(),
                    ..Default::default()
                })
                .await
        }
        .await;
        let _ = self.runtime.remove(&ctr, true, true).await;
        drop(staging);
        outcome
    }

    /// A container of the build (never named): its ID.
    async fn create_container(&self, config: &ContainerConfig, host: &HostConfig) -> Result<String> {
        let created = self
            .runtime
            .create(berth_runtime_api::pb::CreateContainerRequest {
                config: berth_models::to_vec(config),
                host_config: berth_models::to_vec(host),
                ..Default::default()
            })
            .await?;
        Ok(created.id)
    }

    /// An empty base image for the first filesystem step after `FROM scratch`.
    async fn scratch_base(&self) -> Result<String> {
        let config = ContainerConfig::default();
        let options = pb::CommitOptions {
            parent: String::new(),
            config: berth_models::to_vec(&config),
            created_by: String::new(),
            empty_layer: true,
            ..Default::default()
        };
        ImageApi::commit(self.svc, options, Box::pin(futures::stream::empty())).await
    }

    /// `--chown` as numbers: `uid[:gid]`, names looked up in the image's
    /// /etc/passwd and /etc/group.
    async fn owner(&self, stage: &Stage, spec: &str) -> Result<(u64, u64)> {
        let (u, g) = spec.split_once(':').unwrap_or((spec, ""));
        let numeric = |s: &str| s.parse::<u64>().ok();
        if let (Some(uid), gid) = (numeric(u), numeric(g))
            && (g.is_empty() || gid.is_some())
        {
            return Ok((uid, gid.unwrap_or(uid)));
        }
        let read = |rel: &'static str| {
            let image = stage.image.clone();
            async move { self.svc.read_image_file(&image, rel).await.ok().flatten().unwrap_or_default() }
        };
        let passwd = read("etc/passwd").await;
        let group = read("etc/group").await;
        let lookup = |db: &str, name: &str| {
            db.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.first() == Some(&name)).then(|| f.get(2).and_then(|n| n.parse::<u64>().ok())).flatten()
            })
        };
        let uid = numeric(u)
            .or_else(|| lookup(&passwd, u))
            .ok_or_else(|| Error::invalid(format!("unable to find user {u}: no matching entries in passwd file")))?;
        let gid = if g.is_empty() {
            passwd
                .lines()
                .find_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.first() == Some(&u) || f.get(2).and_then(|n| n.parse::<u64>().ok()) == Some(uid))
                        .then(|| f.get(3).and_then(|n| n.parse::<u64>().ok()))
                        .flatten()
                })
                .unwrap_or(uid)
        } else {
            numeric(g)
                .or_else(|| lookup(&group, g))
                .ok_or_else(|| Error::invalid(format!("unable to find group {g}: no matching entries in group file")))?
        };
        Ok((uid, gid))
    }

    /// The files of `--from=NAME` (a stage or an image) that `sources` name,
    /// copied out into `dir/from`; that directory.
    async fn stage_files(&self, from: &str, sources: &[String], dir: &Path) -> Result<PathBuf> {
        let image = match self.done.get(&from.to_ascii_lowercase()) {
            Some(id) => id.clone(),
            None => self.base_image(from).await?,
        };
        let config = ContainerConfig {
            image,
            cmd: StrSlice(Some(vec!["/bin/sh".into(), "-c".into(), "#(nop) COPY --from".into()])),
            ..Default::default()
        };
        let ctr = self.create_container(&config, &no_network()).await?;
        let root = dir.join("from");
        let outcome = async {
            std::fs::create_dir_all(&root)?;
            for src in sources {
                let mut clean = Path::new(src)
                    .components()
                    .filter(|c| matches!(c, std::path::Component::Normal(_)))
                    .collect::<PathBuf>();
                // A wildcard is matched later (`copy_tar`): its directory is copied out.
                if clean.file_name().is_some_and(|n| n.to_string_lossy().contains(['*', '?', '['])) {
                    clean.pop();
                }
                let parent = root.join(clean.parent().unwrap_or(Path::new("")));
                std::fs::create_dir_all(&parent)?;
                let (_, stream) = self.runtime.get_archive(&ctr, &format!("/{}", clean.display())).await?;
                let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(
                    stream.map(|r| r.map_err(|e| std::io::Error::other(e.message().to_string()))),
                ));
                tokio::task::spawn_blocking(move || -> Result<()> {
                    let mut a = tar::Archive::new(reader);
                    a.set_preserve_permissions(true);
                    a.unpack(&parent).map_err(|e| Error::invalid(format!("copy from the stage: {e}")))
                })
                .await
                .map_err(|e| Error::internal(e.to_string()))??;
            }
            Ok::<_, Error>(())
        }
        .await;
        let _ = self.runtime.remove(&ctr, true, true).await;
        outcome?;
        Ok(root)
    }
}

/// The host config of the build's containers that only hold files (COPY).
fn no_network() -> HostConfig {
    HostConfig { network_mode: "none".into(), ..Default::default() }
}

/// The history entry of a step that runs nothing.
fn nop(desc: &str) -> String {
    format!("/bin/sh -c #(nop)  {desc}")
}

/// A command as argv: exec form as written, shell form under `shell` (the
/// config's SHELL, else `/bin/sh -c`).
fn argv_of(config: &ContainerConfig, c: &Command) -> Vec<String> {
    match c {
        Command::Exec(words) => words.clone(),
        Command::Shell(cmd) => {
            let mut argv: Vec<String> = if config.shell.is_empty() {
                DEFAULT_SHELL.iter().map(|s| s.to_string()).collect()
            } else {
                config.shell.as_slice().to_vec()
            };
            argv.push(cmd.clone());
            argv
        }
    }
}

/// What a metadata instruction (ENV, LABEL, CMD, ENTRYPOINT, EXPOSE, VOLUME,
/// USER, WORKDIR, STOPSIGNAL, SHELL, MAINTAINER, ONBUILD, HEALTHCHECK) does
/// to an image's config, for a build step and for `docker commit/import
/// --change` alike; its description for the history. `cmd_set` says whether
/// a CMD was given before in this stage (a new ENTRYPOINT drops an inherited
/// CMD only).
pub(crate) fn apply_metadata(
    config: &mut ContainerConfig,
    instruction: &Instruction,
    lexer: &Lexer<'_>,
    cmd_set: &mut bool,
) -> Result<String> {
    let required = |v: &str, what: &str| {
        if v.trim().is_empty() { Err(Error::invalid(format!("{what} requires at least one argument"))) } else { Ok(()) }
    };
    Ok(match instruction {
        Instruction::Env(text) => {
            required(text, "ENV")?;
            let list = config.env.get_or_insert_with(Vec::new);
            for (k, v) in lexer.pairs(text)? {
                list.retain(|e| e.split_once('=').map(|(ek, _)| ek).unwrap_or(e) != k);
                list.push(format!("{k}={v}"));
            }
            format!("ENV {}", config.env().join(" "))
        }
        Instruction::Label(text) => {
            required(text, "LABEL")?;
            let map = config.labels.get_or_insert_with(Default::default);
            let pairs = lexer.pairs(text)?;
            let shown: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            map.extend(pairs);
            format!("LABEL {}", shown.join(" "))
        }
        Instruction::Cmd(c) => {
            config.cmd = StrSlice(Some(argv_of(config, c)));
            *cmd_set = true;
            format!("CMD {}", serde_json::to_string(config.cmd.as_slice()).unwrap_or_default())
        }
        Instruction::Entrypoint(c) => {
            config.entrypoint = StrSlice(Some(argv_of(config, c)));
            if !*cmd_set {
                config.cmd = StrSlice(None);
            }
            format!("ENTRYPOINT {}", serde_json::to_string(config.entrypoint.as_slice()).unwrap_or_default())
        }
        Instruction::Expose(ports) => {
            if ports.is_empty() {
                return Err(Error::invalid("EXPOSE requires at least one argument"));
            }
            let map = config.exposed_ports.get_or_insert_with(Default::default);
            for p in ports {
                let p = lexer.word(p)?;
                let (port, proto) = p.split_once('/').unwrap_or((&p, "tcp"));
                let proto = proto.to_ascii_lowercase();
                let (lo, hi) = port.split_once('-').unwrap_or((port, port));
                let ok = lo.parse::<u16>().is_ok()
                    && hi.parse::<u16>().is_ok()
                    && matches!(proto.as_str(), "tcp" | "udp" | "sctp");
                if !ok {
                    return Err(Error::invalid(format!("invalid containerPort: {p}")));
                }
                map.insert(format!("{port}/{proto}"), serde_json::json!({}));
            }
            format!("EXPOSE {}", map.keys().cloned().collect::<Vec<_>>().join(" "))
        }
        Instruction::Volume(vols) => {
            let map = config.volumes.get_or_insert_with(Default::default);
            let mut shown = Vec::new();
            for v in vols {
                let v = lexer.word(v)?;
                if v.is_empty() {
                    return Err(Error::invalid("VOLUME specified can not be an empty string"));
                }
                map.insert(v.clone(), serde_json::json!({}));
                shown.push(v);
            }
            if shown.is_empty() {
                return Err(Error::invalid("VOLUME requires at least one argument"));
            }
            format!("VOLUME [{}]", shown.join(" "))
        }
        Instruction::User(u) => {
            required(u, "USER")?;
            config.user = lexer.word(u)?;
            format!("USER {}", config.user)
        }
        Instruction::Workdir(w) => {
            required(w, "WORKDIR")?;
            let w = lexer.word(w)?;
            config.working_dir = if w.starts_with('/') {
                w
            } else {
                let base = if config.working_dir.is_empty() { "/".to_string() } else { config.working_dir.clone() };
                Path::new(&base).join(w).display().to_string()
            };
            format!("WORKDIR {}", config.working_dir)
        }
        Instruction::Stopsignal(sig) => {
            required(sig, "STOPSIGNAL")?;
            config.stop_signal = lexer.word(sig)?;
            format!("STOPSIGNAL {}", config.stop_signal)
        }
        Instruction::Shell(words) => {
            if words.is_empty() {
                return Err(Error::invalid("SHELL requires the arguments to be in JSON form"));
            }
            config.shell = StrSlice(Some(words.clone()));
            format!("SHELL {}", serde_json::to_string(words).unwrap_or_default())
        }
        Instruction::Maintainer(m) => format!("MAINTAINER {}", lexer.word(m)?),
        Instruction::Onbuild(trigger) => {
            let upper = trigger.trim_start().to_ascii_uppercase();
            let word = upper.split_whitespace().next().unwrap_or("").to_string();
            if matches!(word.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
                return Err(Error::invalid(format!("{word} isn't allowed as an ONBUILD trigger")));
            }
            config.on_build.get_or_insert_with(Vec::new).push(trigger.clone());
            format!("ONBUILD {trigger}")
        }
        Instruction::Healthcheck { command, flags } => {
            config.healthcheck = Some(healthcheck(command.as_ref(), flags, lexer)?);
            format!("HEALTHCHECK {}", serde_json::to_string(&config.healthcheck).unwrap_or_default())
        }
        Instruction::Arg(_) | Instruction::Run { .. } | Instruction::Copy { .. } | Instruction::From { .. } => {
            return Err(Error::internal("not a metadata instruction"));
        }
    })
}

fn healthcheck(
    command: Option<&Command>,
    flags: &[Flag],
    lexer: &Lexer<'_>,
) -> Result<berth_models::container::HealthConfig> {
    let Some(command) = command else {
        return Ok(berth_models::container::HealthConfig { test: vec!["NONE".into()], ..Default::default() });
    };
    let dur = |name: &str| -> Result<i64> {
        match flag(flags, name) {
            None => Ok(0),
            Some(v) => {
                let v = lexer.word(v)?;
                berth_core::id::parse_duration(&v)
                    .map(|d| d.whole_nanoseconds() as i64)
                    .ok_or_else(|| Error::invalid(format!("invalid --{name} value {v:?}")))
            }
        }
    };
    let test = match command {
        Command::Exec(words) => std::iter::once("CMD".to_string()).chain(words.iter().cloned()).collect(),
        Command::Shell(cmd) => vec!["CMD-SHELL".to_string(), cmd.clone()],
    };
    Ok(berth_models::container::HealthConfig {
        test,
        interval: dur("interval")?,
        timeout: dur("timeout")?,
        start_period: dur("start-period")?,
        start_interval: dur("start-interval")?,
        retries: match flag(flags, "retries") {
            Some(r) => lexer.word(r)?.parse().map_err(|_| Error::invalid("invalid --retries value"))?,
            None => 0,
        },
        ..Default::default()
    })
}

/// The stages `target` needs (FROM a stage, COPY --from a stage), in order.
fn needed_stages(stages: &[StageDef], target: usize) -> Vec<usize> {
    let index_of = |name: &str| -> Option<usize> {
        let n = name.to_ascii_lowercase();
        stages.iter().position(|s| s.name.as_deref() == Some(n.as_str())).or_else(|| n.parse().ok())
    };
    let mut need = vec![false; stages.len()];
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        if i >= stages.len() || need[i] {
            continue;
        }
        need[i] = true;
        if let Instruction::From { image, .. } = &stages[i].from.instruction
            && let Some(j) = index_of(image).filter(|j| *j < i)
        {
            todo.push(j);
        }
        for s in &stages[i].steps {
            if let Instruction::Copy { flags, .. } = &s.instruction
                && let Some(f) = flag(flags, "from")
                && let Some(j) = index_of(f).filter(|j| *j < i)
            {
                todo.push(j);
            }
        }
    }
    (0..stages.len()).filter(|i| need[*i]).collect()
}

/// Writes the tar COPY/ADD unpacks at `/`: the sources under `root` (resolved
/// inside it; wildcards in the last element), placed at `dest` with dockerd's
/// rules; ADD extracts local tar archives. Its checksum for the cache.
fn copy_tar(
    root: &Path,
    sources: &[String],
    dest: &str,
    owner: Option<(u64, u64)>,
    extract: bool,
    out: &Path,
) -> Result<String> {
    let mut matched: Vec<PathBuf> = Vec::new();
    for src in sources {
        if src.contains("://") {
            return Err(Error::invalid(format!("remote URLs are not supported in ADD or COPY: {src}")));
        }
        let clean: PathBuf =
            Path::new(src).components().filter(|c| matches!(c, std::path::Component::Normal(_))).collect();
        let name = clean.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        if name.contains(['*', '?', '[']) {
            let parent = clean.parent().unwrap_or(Path::new("")).to_path_buf();
            let mut hits: Vec<PathBuf> = std::fs::read_dir(secure(root, &parent)?)
                .map(|d| {
                    d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().to_string()).collect::<Vec<_>>()
                })
                .unwrap_or_default()
                .into_iter()
                .filter(|n| ignore::matches(&name, n))
                .map(|n| parent.join(n))
                .collect();
            hits.sort();
            if hits.is_empty() {
                return Err(Error::invalid(format!("COPY failed: no source files were specified (pattern {src})")));
            }
            matched.extend(hits);
        } else {
            matched.push(clean);
        }
    }
    let to_dir = dest.ends_with('/') || matched.len() > 1;
    let file = std::fs::File::create(out)?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    tar.follow_symlinks(false);
    let mut hasher = Sha256::new();
    let dest_path = PathBuf::from(dest.trim_start_matches('/'));
    let mut kinds = Vec::new();
    for src in &matched {
        let host = secure(root, src)?;
        let meta = std::fs::symlink_metadata(&host).map_err(|_| {
            Error::invalid(format!("COPY failed: file not found in build context or excluded by .dockerignore: stat {}: file does not exist", src.display()))
        })?;
        if meta.is_dir() {
            kinds.push("dir");
            // A directory's contents go to the destination.
            add_tree(&mut tar, &mut hasher, &host, &dest_path, owner)?;
        } else if extract && meta.is_file() && is_archive(&host, &out.with_extension("unpacked")) {
            kinds.push("file");
            extract_into(&mut tar, &mut hasher, &host, &dest_path, owner, &out.with_extension("unpacked"))?;
        } else {
            kinds.push("file");
            let target = if to_dir { dest_path.join(src.file_name().unwrap_or_default()) } else { dest_path.clone() };
            add_entry(&mut tar, &mut hasher, &host, &target, owner)?;
        }
    }
    tar.into_inner().map_err(|e| Error::internal(e.to_string()))?;
    let kind = if kinds.len() == 1 { kinds[0] } else { "multi" };
    Ok(format!("{kind}:{}", hex::encode(hasher.finalize())))
}

/// `rel` under `root`, with every symlink resolved inside `root` (a context
/// cannot point COPY at the host).
fn secure(root: &Path, rel: &Path) -> Result<PathBuf> {
    let mut cur = PathBuf::new();
    let mut pending: Vec<std::ffi::OsString> = rel.components().rev().map(|c| c.as_os_str().to_os_string()).collect();
    let mut hops = 0;
    while let Some(next) = pending.pop() {
        match next.to_str() {
            Some("/") | Some(".") | Some("") => continue,
            Some("..") => {
                cur.pop();
                continue;
            }
            _ => {}
        }
        let candidate = cur.join(&next);
        // The last element is not followed (COPY copies a symlink as one).
        if !pending.is_empty()
            && let Ok(target) = std::fs::read_link(root.join(&candidate))
        {
            hops += 1;
            if hops > 40 {
                return Err(Error::invalid(format!("too many symlinks in {}", rel.display())));
            }
            if target.is_absolute() {
                cur = PathBuf::new();
            }
            pending.extend(target.components().rev().map(|c| c.as_os_str().to_os_string()));
            continue;
        }
        cur = candidate;
    }
    Ok(root.join(cur))
}

fn header_of(meta: &std::fs::Metadata, owner: Option<(u64, u64)>) -> tar::Header {
    use std::os::unix::fs::MetadataExt;
    let mut h = tar::Header::new_gnu();
    h.set_mode(meta.mode() & 0o7777);
    let (uid, gid) = owner.unwrap_or((0, 0));
    h.set_uid(uid);
    h.set_gid(gid);
    h.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
    h
}

fn add_entry(
    tar: &mut tar::Builder<impl std::io::Write>,
    hasher: &mut Sha256,
    host: &Path,
    target: &Path,
    owner: Option<(u64, u64)>,
) -> Result<()> {
    let meta = std::fs::symlink_metadata(host)?;
    let mut h = header_of(&meta, owner);
    hasher.update(target.as_os_str().as_encoded_bytes());
    hasher.update(h.mode().unwrap_or(0).to_le_bytes());
    let err = |e: std::io::Error| Error::internal(format!("tar: {e}"));
    if meta.file_type().is_symlink() {
        let link = std::fs::read_link(host)?;
        hasher.update(link.as_os_str().as_encoded_bytes());
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        tar.append_link(&mut h, target, &link).map_err(err)
    } else if meta.is_dir() {
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        tar.append_data(&mut h, target, std::io::empty()).map_err(err)
    } else if meta.is_file() {
        // Streamed through the hash: a big file is never whole in memory.
        let file = std::fs::File::open(host)?;
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(meta.len());
        tar.append_data(&mut h, target, Hashing { inner: std::io::Read::take(file, meta.len()), hasher }).map_err(err)
    } else {
        Ok(())
    }
}

/// A reader that feeds what it reads to a hash.
struct Hashing<'h, R> {
    inner: R,
    hasher: &'h mut Sha256,
}

impl<R: std::io::Read> std::io::Read for Hashing<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

fn add_tree(
    tar: &mut tar::Builder<impl std::io::Write>,
    hasher: &mut Sha256,
    dir: &Path,
    target: &Path,
    owner: Option<(u64, u64)>,
) -> Result<()> {
    if !target.as_os_str().is_empty() {
        add_entry(tar, hasher, dir, target, owner)?;
    }
    let mut names: Vec<_> = std::fs::read_dir(dir)?.filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    names.sort();
    for n in names {
        let host = dir.join(&n);
        let t = target.join(&n);
        if std::fs::symlink_metadata(&host).map(|m| m.is_dir()).unwrap_or(false) {
            add_tree(tar, hasher, &host, &t, owner)?;
        } else {
            add_entry(tar, hasher, &host, &t, owner)?;
        }
    }
    Ok(())
}

/// Whether a file is a tar archive (plain, gzip, bzip2 or xz): ADD extracts those.
fn is_archive(path: &Path, scratch: &Path) -> bool {
    let Ok(file) = std::fs::File::open(path) else { return false };
    let Ok(mut r) = decompressed(file, scratch) else { return false };
    let mut block = [0u8; 512];
    if std::io::Read::read_exact(&mut r, &mut block).is_err() {
        return false;
    }
    // A tar header: "ustar" at 257, or a valid checksum.
    if &block[257..262] == b"ustar" {
        return true;
    }
    let stored = std::str::from_utf8(&block[148..156]).ok().map(|s| s.trim_matches(|c: char| c == '\0' || c == ' '));
    let stored = stored.and_then(|s| u32::from_str_radix(s, 8).ok());
    let sum: u32 =
        block.iter().enumerate().map(|(i, b)| if (148..156).contains(&i) { 32 } else { u32::from(*b) }).sum();
    stored == Some(sum) && block.iter().any(|b| *b != 0)
}

fn extract_into(
    tar: &mut tar::Builder<impl std::io::Write>,
    hasher: &mut Sha256,
    archive: &Path,
    dest: &Path,
    owner: Option<(u64, u64)>,
    scratch: &Path,
) -> Result<()> {
    let mut a = tar::Archive::new(decompressed(std::fs::File::open(archive)?, scratch)?);
    let err = |e: std::io::Error| Error::invalid(format!("ADD {}: {e}", archive.display()));
    for entry in a.entries().map_err(err)? {
        let mut entry = entry.map_err(err)?;
        let path = entry.path().map_err(err)?.into_owned();
        let clean: PathBuf = path.components().filter(|c| matches!(c, std::path::Component::Normal(_))).collect();
        if clean.as_os_str().is_empty() {
            continue;
        }
        let mut h = entry.header().clone();
        if let Some((u, g)) = owner {
            h.set_uid(u);
            h.set_gid(g);
        }
        let target = dest.join(&clean);
        hasher.update(target.as_os_str().as_encoded_bytes());
        let e = |e: std::io::Error| Error::internal(format!("tar: {e}"));
        match h.entry_type() {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let link = entry.link_name().map_err(err)?.map(|l| l.into_owned()).unwrap_or_default();
                hasher.update(link.as_os_str().as_encoded_bytes());
                tar.append_link(&mut h, &target, &link).map_err(e)?;
            }
            _ => tar.append_data(&mut h, &target, Hashing { inner: &mut entry, hasher: &mut *hasher }).map_err(e)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_context_that_ends_right_after_its_last_entry_is_whole() {
        // What the docker CLI sends with `-f` outside the context: two
        // entries, the last one's data not padded, no end blocks.
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in [("Dockerfile", &b"FROM scratch\n"[..]), (".dockerignore", &b"x\n"[..])] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, data).expect("append");
        }
        let full = b.into_inner().expect("tar");
        let unpadded = 512 + 512 + 512 + 2;
        let dir = tempfile::tempdir().expect("tmp");
        let ctx = dir.path().join("ctx");
        unpack_context(std::io::Cursor::new(full[..unpadded].to_vec()), &ctx, "Dockerfile").expect("unpadded");
        assert_eq!(std::fs::read(ctx.join(".dockerignore")).expect("read"), b"x\n");
        // Cut inside an entry's data, or inside a header: truncated.
        for cut in [512 + 512 + 512 + 1, 512 + 5, 512 + 512 + 100] {
            let ctx = dir.path().join(format!("cut{cut}"));
            let err = unpack_context(std::io::Cursor::new(full[..cut].to_vec()), &ctx, "Dockerfile");
            assert!(err.is_err(), "cut at {cut} is not a whole context");
        }
    }

    #[test]
    fn sources_resolve_inside_the_context() {
        let dir = tempfile::tempdir().expect("tmp");
        let ctx = dir.path().join("ctx");
        std::fs::create_dir_all(ctx.join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("host-secret"), b"host").expect("secret");
        std::os::unix::fs::symlink("/", ctx.join("root")).expect("symlink");
        std::os::unix::fs::symlink("../../host-secret", ctx.join("sub/up")).expect("symlink");
        assert_eq!(secure(&ctx, Path::new("root/etc/passwd")).expect("secure"), ctx.join("etc/passwd"));
        assert_eq!(secure(&ctx, Path::new("../x")).expect("secure"), ctx.join("x"));
        // The last element is the link itself.
        assert_eq!(secure(&ctx, Path::new("sub/up")).expect("secure"), ctx.join("sub/up"));
    }

    #[test]
    fn copy_places_sources_as_dockerd_does() {
        let dir = tempfile::tempdir().expect("tmp");
        let ctx = dir.path().join("ctx");
        std::fs::create_dir_all(ctx.join("app/sub")).expect("mkdir");
        std::fs::write(ctx.join("a.txt"), b"a").expect("a");
        std::fs::write(ctx.join("b.txt"), b"b").expect("b");
        std::fs::write(ctx.join("app/sub/c"), b"c").expect("c");
        let names = |srcs: &[&str], dest: &str| {
            let out = dir.path().join("out.tar");
            let srcs: Vec<String> = srcs.iter().map(|s| s.to_string()).collect();
            let sum = copy_tar(&ctx, &srcs, dest, Some((5, 6)), false, &out).expect("tar");
            let mut a = tar::Archive::new(std::fs::File::open(&out).expect("open"));
            let names: Vec<(String, u64)> = a
                .entries()
                .expect("entries")
                .map(|e| {
                    let e = e.expect("entry");
                    (e.path().expect("path").display().to_string(), e.header().uid().expect("uid"))
                })
                .collect();
            (names, sum)
        };
        let (n, sum1) = names(&["a.txt"], "/dst");
        assert_eq!(n, [("dst".to_string(), 5)], "one file to a file path");
        assert_eq!(names(&["a.txt"], "/dst/").0[0].0, "dst/a.txt", "into a directory");
        let (n, _) = names(&["*.txt"], "/d/");
        assert_eq!(n.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(), ["d/a.txt", "d/b.txt"]);
        let (n, _) = names(&["app"], "/srv");
        assert_eq!(
            n.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
            ["srv", "srv/sub", "srv/sub/c"],
            "a directory's contents"
        );
        std::fs::write(ctx.join("a.txt"), b"changed").expect("a");
        assert_ne!(names(&["a.txt"], "/dst").1, sum1, "the checksum follows the content");
        let err =
            copy_tar(&ctx, &["nope".to_string()], "/x", None, false, &dir.path().join("o.tar")).expect_err("missing");
        assert!(err.message().contains("file not found in build context"), "{}", err.message());
    }
}
