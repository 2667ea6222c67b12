//! A container's files from outside: `docker diff` ([`changes`]), `docker
//! export` and `docker cp` both ways ([`tree`]).
//!
//! Every operation works on a directory handle of the container's root:
//! - a running (or paused) container's own, `/proc/PID/root`, which shows its
//!   volumes and binds as the container sees them;
//! - for a stopped or created container, a *root view*: `berth-shim
//!   --root-view` mounts the overlay (and the binds of the container's last
//!   start) in a mount namespace of its own and holds it while the runtime
//!   works through `/proc/HELPER/root`; nothing is mounted on the host, and
//!   the container's lifecycle lock is held so it does not start meanwhile;
//! - for `export`, a read-only view of the image's layers under the
//!   container's writable layer, without volumes (as dockerd exports).
//!
//! The tar work is blocking and runs on the blocking pool; tars stream out
//! through a channel and in through a synchronous bridge, never whole in memory.

mod changes;
pub mod tree;

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use berth_core::{ByteStream, Error, Result};
use berth_models::container::ContainerStatus;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use tokio::io::AsyncBufReadExt;

use crate::pb;
use crate::service::{LocalRuntime, status};

/// How long a root view may take to mount.
const VIEW_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A container's root, held open for one operation: the handle, and what keeps
/// it valid (the helper holding the mounts, the container's lifecycle lock).
pub(crate) struct Root {
    pub fd: OwnedFd,
    /// How owners seen through it map to the container's.
    ids: tree::Ids,
    /// In a running remapped container: the host user and group its root is,
    /// which writes through its idmapped layers must act as.
    root_ids: Option<(u32, u32)>,
    _helper: Option<tokio::process::Child>,
    _lock: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Root {
    fn of(fd: OwnedFd, helper: Option<tokio::process::Child>) -> Root {
        Root { fd, ids: tree::Ids::default(), root_ids: None, _helper: helper, _lock: None }
    }
}

fn open_dir(path: &std::path::Path) -> Result<OwnedFd> {
    nix::fcntl::open(path, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| Error::internal(format!("open {}: {}", path.display(), e.desc())))
}

/// A writer that sends what it is given, in 64 KiB chunks, down a channel
/// (the blocking side of a streamed tar).
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Result<bytes::Bytes>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    const CHUNK: usize = 64 << 10;

    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = bytes::Bytes::from(std::mem::take(&mut self.buf));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| std::io::Error::other("the reader went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= Self::CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// Runs `write` on the blocking pool with a writer whose bytes become the
/// returned stream; an error after the first bytes ends the stream with it.
fn stream_from(write: impl FnOnce(&mut ChannelWriter) -> Result<()> + Send + 'static) -> ByteStream {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::task::spawn_blocking(move || {
        let mut w = ChannelWriter { tx: tx.clone(), buf: Vec::new() };
        let out = write(&mut w).and_then(|_| w.flush().map_err(|e| Error::internal(e.to_string())));
        if let Err(e) = out {
            let _ = tx.blocking_send(Err(e));
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

impl LocalRuntime {
    /// `docker diff`.
    pub(crate) async fn container_changes(&self, reference: &str) -> Result<Vec<pb::Change>> {
        let c = self.resolve(reference).await?;
        let image = self.images.inspect(&c.image_id).await?;
        let [upper, ..] = crate::lifecycle::bundle_dirs(&self.host.bundle(&c.id));
        let lowers: Vec<PathBuf> = image.layer_dirs.iter().rev().map(PathBuf::from).collect();
        tokio::task::spawn_blocking(move || changes::list(&upper, &lowers))
            .await
            .map_err(|e| Error::internal(e.to_string()))
    }

    /// The root of `c` with its volumes: its own while it runs, else a view
    /// that can be written.
    async fn live_root(&self, c: &pb::Container) -> Result<Root> {
        let st = status(c);
        let pid = c.state.as_ref().map(|s| s.pid).unwrap_or(0);
        if matches!(st, ContainerStatus::Running | ContainerStatus::Paused) {
            // The PID must still be the container's (not a reused number).
            if crate::lifecycle::container_pid(pid, &c.id) {
                let fd = open_dir(std::path::Path::new(&format!("/proc/{pid}/root")))?;
                let mut root = Root::of(fd, None);
                // In a user namespace its files show through idmapped layers (a
                // root view, made from outside, shows them as stored).
                let spec = std::fs::read(self.host.bundle(&c.id).join(berth_shim::protocol::files::SPEC))
                    .ok()
                    .and_then(|b| berth_shim::spec::Spec::parse(&b).ok());
                if let Some((spec, _)) = spec.filter(|(s, _)| s.has_namespace("user")) {
                    let (uids, gids) = (spec.linux.uid_mappings, spec.linux.gid_mappings);
                    root.root_ids = berth_shim::spec::IdMapping::host_of(&uids, 0)
                        .zip(berth_shim::spec::IdMapping::host_of(&gids, 0));
                    root.ids = tree::Ids { uids, gids };
                }
                return Ok(root);
            }
        }
        let lock = self.host.lock_of(&c.id).lock_owned().await;
        // It may have started while we waited for the lock.
        let fresh = self.resolve(&c.id).await?;
        if status(&fresh).is_live() {
            drop(lock);
            return Box::pin(self.live_root(&fresh)).await;
        }
        let mut root = self.root_view(&fresh, true).await?;
        root._lock = Some(lock);
        Ok(root)
    }

    /// Mounts the container's filesystem in a helper (see the module's doc):
    /// `writable` with its upper directory and binds, else read-only layers.
    async fn root_view(&self, c: &pb::Container, writable: bool) -> Result<Root> {
        let image = self.images.inspect(&c.image_id).await?;
        let bundle = self.host.bundle(&c.id);
        berth_core::perms::ensure_dir(&bundle, berth_core::perms::PRIVATE_DIR)?;
        let [upper, work, rootfs] = crate::lifecycle::bundle_dirs(&bundle);
        for d in [&upper, &work, &rootfs] {
            std::fs::create_dir_all(d).map_err(|e| Error::from(e).context(format!("create {}", d.display())))?;
        }
        let mut lowers: Vec<String> = image.layer_dirs.iter().rev().cloned().collect();
        if lowers.is_empty() {
            // An image of no layers (a build's `FROM scratch`): overlay wants one.
            let empty = bundle.join("empty");
            std::fs::create_dir_all(&empty)
                .map_err(|e| Error::from(e).context(format!("create {}", empty.display())))?;
            lowers.push(empty.display().to_string());
        }
        let mut cmd = tokio::process::Command::new(self.host.shim_program());
        cmd.arg("--root-view").arg("--target").arg(&rootfs);
        if writable {
            cmd.arg("--upper").arg(&upper).arg("--work").arg(&work);
            // The binds of its last start (volumes, bind mounts), if it ran.
            if let Ok(bytes) = std::fs::read(bundle.join(berth_shim::protocol::files::SPEC))
                && let Ok((spec, _)) = berth_shim::spec::Spec::parse(&bytes)
            {
                for m in spec.mounts.iter().filter(|m| m.kind == "bind") {
                    let mode = if m.options.iter().any(|o| o == "ro") { "ro" } else { "rw" };
                    cmd.arg("--bind").arg(format!("{}:{}:{mode}", m.source, m.destination));
                }
            }
        } else {
            lowers.insert(0, upper.display().to_string());
        }
        cmd.arg("--lower").arg(lowers.join(":"));
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| Error::internal(format!("start the root view: {e}")))?;
        let stdout = child.stdout.take().ok_or_else(|| Error::internal("the root view has no stdout"))?;
        let mut line = String::new();
        let mut reader = tokio::io::BufReader::new(stdout);
        match tokio::time::timeout(VIEW_TIMEOUT, reader.read_line(&mut line)).await {
            Ok(Ok(_)) if line.trim() == "ready" => {}
            Ok(_) => {
                let msg = line.trim().strip_prefix("err ").unwrap_or(line.trim()).to_string();
                return Err(Error::internal(format!("mount the container's filesystem: {msg}")));
            }
            Err(_) => return Err(Error::internal("mount the container's filesystem: timed out")),
        }
        let pid = child.id().ok_or_else(|| Error::internal("the root view exited"))?;
        let fd = open_dir(&PathBuf::from(format!("/proc/{pid}/root{}", rootfs.display())))?;
        Ok(Root::of(fd, Some(child)))
    }

    /// `docker export`: the image's layers and the container's changes, as a tar.
    pub(crate) async fn export_container(&self, reference: &str) -> Result<ByteStream> {
        let c = self.resolve(reference).await?;
        let root = self.root_view(&c, false).await?;
        self.emit(&c, "export", []);
        Ok(stream_from(move |w| tree::pack_root(root.fd.as_fd(), w)))
    }

    /// `HEAD /containers/{id}/archive`.
    pub(crate) async fn stat_in(&self, reference: &str, path: &str) -> Result<pb::PathStat> {
        let c = self.resolve(reference).await?;
        let root = self.live_root(&c).await?;
        let path = path.to_string();
        let name = c.name.clone();
        tokio::task::spawn_blocking(move || tree::stat(root.fd.as_fd(), &path).map_err(|e| in_container(e, &name)))
            .await
            .map_err(|e| Error::internal(e.to_string()))?
    }

    /// `GET /containers/{id}/archive`: the path's stat and its tar, from one
    /// handle of the root; fails before the first byte when the path is not there.
    pub(crate) async fn archive_of(&self, reference: &str, path: &str) -> Result<(pb::PathStat, ByteStream)> {
        let c = self.resolve(reference).await?;
        let root = self.live_root(&c).await?;
        let (path, name) = (path.to_string(), c.name.clone());
        let (stat, root, path) = tokio::task::spawn_blocking(move || {
            tree::stat(root.fd.as_fd(), &path).map_err(|e| in_container(e, &name)).map(|s| (s, root, path))
        })
        .await
        .map_err(|e| Error::internal(e.to_string()))??;
        self.emit(&c, "archive-path", []);
        Ok((stat, stream_from(move |w| tree::pack(root.fd.as_fd(), &path, w, &root.ids))))
    }

    /// `PUT /containers/{id}/archive`.
    pub(crate) async fn extract_into(&self, options: pb::PutArchiveOptions, input: ByteStream) -> Result<()> {
        let c = self.resolve(&options.reference).await?;
        let hc = crate::record::host_config(&c)?;
        if hc.readonly_rootfs {
            // As dockerd, unless the path is in a writable volume; Berth refuses outright.
            return Err(Error::forbidden("container rootfs is marked read-only"));
        }
        let root = self.live_root(&c).await?;
        let owner = if options.copy_uid_gid {
            let config = crate::record::config(&c)?;
            let read = |rel: &str| {
                let base = PathBuf::from(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&root.fd)));
                berth_core::rootfs::read_in_root(&base, std::path::Path::new(rel), 1 << 20)
                    .map(|b| b.map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default())
            };
            let user = crate::spec::resolve_user(&config.user, &[], &read("etc/passwd")?, &read("etc/group")?)?;
            Some((user.uid, user.gid))
        } else {
            None
        };
        let opts = tree::UnpackOptions {
            no_overwrite_dir_non_dir: options.no_overwrite_dir_non_dir,
            owner,
            ids: root.ids.clone(),
        };
        let reader =
            tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(futures::StreamExt::map(input, |r| {
                r.map_err(|e| std::io::Error::other(e.message().to_string()))
            })));
        let (path, name) = (options.path.clone(), c.name.clone());
        tokio::task::spawn_blocking(move || {
            let mut reader = reader;
            let out = root
                .root_ids
                .map(|(uid, gid)| crate::creds::ActingAs::new(uid, gid))
                .transpose()
                .and_then(|_acting| tree::unpack(root.fd.as_fd(), &path, &mut reader, opts))
                .map_err(|e| in_container(e, &name));
            berth_core::drain(reader, 1 << 20);
            drop(root);
            out
        })
        .await
        .map_err(|e| Error::internal(e.to_string()))??;
        self.emit(&c, "extract-to-dir", []);
        Ok(())
    }
}

impl LocalRuntime {
    /// `docker commit`: an image of the container's image and its writable
    /// layer, with its config (overridden by `req.config`, then `changes`).
    /// A running container is frozen while its layer is read unless
    /// `pause` is false.
    pub(crate) async fn commit_container(&self, req: pb::CommitContainerRequest) -> Result<String> {
        let c = self.resolve(&req.reference).await?;
        let container_config = crate::record::config(&c)?;
        let config = if req.config.is_empty() {
            container_config.clone()
        } else if req.exact_config {
            berth_models::parse("container config", &req.config).map_err(Error::invalid)?
        } else {
            let user: berth_models::container::ContainerConfig =
                berth_models::parse("container config", &req.config).map_err(Error::invalid)?;
            crate::create::merge_config(&user, &container_config)
        };
        let created_by =
            if req.created_by.is_empty() { container_config.cmd.as_slice().join(" ") } else { req.created_by };
        let freeze = req.pause && status(&c) == ContainerStatus::Running;
        if freeze {
            self.set_frozen(&c, true).await?;
        }
        let bundle = self.host.bundle(&c.id);
        let [upper, ..] = crate::lifecycle::bundle_dirs(&bundle);
        let layer =
            match nix::fcntl::open(&upper, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()) {
                Ok(dir) => stream_from(move |w| tree::pack_layer(dir.as_fd(), w)),
                // Never started: nothing changed, an empty layer.
                Err(nix::errno::Errno::ENOENT) => {
                    stream_from(|w| tar::Builder::new(w).finish().map_err(|e| Error::internal(e.to_string())))
                }
                Err(e) => return Err(Error::internal(format!("open {}: {}", upper.display(), e.desc()))),
            };
        let options = berth_image_api::pb::CommitOptions {
            repo: req.repo,
            tag: req.tag,
            parent: c.image_id.clone(),
            config: berth_models::to_vec(&config),
            changes: req.changes,
            comment: req.comment.clone(),
            author: req.author,
            created_by,
            empty_layer: false,
        };
        let out = self.images.commit(options, layer).await;
        if freeze {
            let current = self.resolve(&c.id).await?;
            if status(&current) == ContainerStatus::Paused {
                self.set_frozen(&current, false).await?;
            }
        }
        let id = out?;
        self.emit(&c, "commit", [("comment", req.comment)]);
        Ok(id)
    }
}

/// dockerd names the container in a missing path's message.
fn in_container(e: Error, name: &str) -> Error {
    if e.kind() == berth_core::ErrorKind::NotFound { Error::not_found(format!("{} {name}", e.message())) } else { e }
}
