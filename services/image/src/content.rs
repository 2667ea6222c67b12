//! The on-disk content of the image service, under `<data-root>/image/`:
//!
//! ```text
//! image.db                  metadata (see crate::store)
//! blobs/sha256/<hex>        uncompressed layer tarballs, by diff ID (for docker save)
//! layers/<hex>/             unpacked layers by chain ID: overlayfs lower dirs
//! tmp/                      staging for loads and imports; emptied at start
//! ingest/<hex>.partial      registry downloads in progress, resumed by the next pull
//! ```
//! Everything becomes visible by `rename(2)` from `tmp/`, which is atomic within one
//! filesystem, so a crash leaves either nothing or a complete file or directory;
//! the start-up sweep removes what no database row refers to.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use berth_core::{Error, Result};

use crate::digest::{self, HashingReader};

/// Paths of the content store.
#[derive(Debug, Clone)]
pub struct Content {
    root: PathBuf,
}

/// A layer tarball staged in `tmp/`, decompressed and hashed.
#[derive(Debug)]
pub struct StagedLayer {
    /// Where the uncompressed tarball is.
    pub path: PathBuf,
    /// Digest of the uncompressed tarball.
    pub diff_id: String,
    /// Digest of the bytes as they came (compressed or not).
    pub raw_digest: String,
}

impl Content {
    /// Opens (creating) the store under `root`, emptying `tmp/`.
    pub fn open(root: &Path) -> Result<Self> {
        let c = Self { root: root.to_path_buf() };
        let _ = fs::remove_dir_all(c.tmp_root());
        for dir in [c.root.join("blobs/sha256"), c.root.join("layers"), c.tmp_root(), c.ingest_root()] {
            fs::create_dir_all(&dir).map_err(|e| Error::from(e).context(format!("create {}", dir.display())))?;
        }
        Ok(c)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn tmp_root(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Partial and complete downloads of a pull, kept across failures and
    /// restarts so the next attempt resumes them (not emptied at start).
    pub fn ingest_root(&self) -> PathBuf {
        self.root.join("ingest")
    }

    /// A fresh staging directory, removed when dropped.
    pub fn staging(&self) -> Result<tempfile::TempDir> {
        Ok(tempfile::Builder::new().prefix("stage-").tempdir_in(self.tmp_root())?)
    }

    /// Path of the uncompressed layer tarball with this diff ID.
    pub fn blob_path(&self, diff_id: &str) -> Result<PathBuf> {
        Ok(self.root.join("blobs/sha256").join(digest::digest_hex(diff_id)?))
    }

    /// Directory of the unpacked layer with this chain ID.
    pub fn layer_dir(&self, chain_id: &str) -> Result<PathBuf> {
        Ok(self.root.join("layers").join(digest::digest_hex(chain_id)?))
    }

    /// Decompresses `input` into a staged file in `dir`, hashing both sides.
    pub fn stage_layer(&self, dir: &Path, input: impl Read) -> Result<StagedLayer> {
        let mut raw = HashingReader::new(input);
        let mut file = tempfile::Builder::new().prefix("layer-").tempfile_in(dir)?;
        let diff = {
            let (_, plain) = digest::decompress(&mut raw)?;
            let mut plain = HashingReader::new(plain);
            let mut out = io::BufWriter::with_capacity(256 * 1024, file.as_file_mut());
            io::copy(&mut plain, &mut out).map_err(|e| Error::invalid(format!("read layer: {e}")))?;
            out.flush()?;
            plain.finish().0
        };
        // Drain what the decompressor left (tar padding after the gzip end) so the raw digest is whole.
        io::copy(&mut raw, &mut io::sink()).map_err(|e| Error::invalid(format!("read layer: {e}")))?;
        let (raw_digest, _) = raw.finish();
        let (_, path) = file.keep().map_err(|e| Error::internal(format!("keep staged layer: {e}")))?;
        Ok(StagedLayer { path, diff_id: diff, raw_digest })
    }

    /// Moves a staged tarball to its blob path (keeping an existing identical blob).
    pub fn commit_blob(&self, staged: &Path, diff_id: &str) -> Result<PathBuf> {
        let dest = self.blob_path(diff_id)?;
        if dest.exists() {
            let _ = fs::remove_file(staged);
        } else {
            fs::File::open(staged)?.sync_all()?;
            fs::rename(staged, &dest)?;
        }
        Ok(dest)
    }

    /// Unpacks the blob `diff_id` as layer `chain_id`; returns its size. The layer
    /// appears under `layers/` only once complete.
    pub fn unpack_layer(&self, chain_id: &str, diff_id: &str) -> Result<u64> {
        let dest = self.layer_dir(chain_id)?;
        if dest.exists() {
            // A leftover of a crash before the database knew it: redo it.
            fs::remove_dir_all(&dest)?;
        }
        let work = tempfile::Builder::new().prefix("unpack-").tempdir_in(self.tmp_root())?;
        let blob = fs::File::open(self.blob_path(diff_id)?)?;
        let size = crate::layers::unpack(io::BufReader::with_capacity(256 * 1024, blob), work.path())?;
        let work = work.keep();
        fs::rename(&work, &dest).map_err(|e| {
            let _ = fs::remove_dir_all(&work);
            Error::from(e).context(format!("commit layer {chain_id}"))
        })?;
        Ok(size)
    }

    /// Removes an unpacked layer.
    pub fn remove_layer(&self, chain_id: &str) -> Result<()> {
        match fs::remove_dir_all(self.layer_dir(chain_id)?) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Removes a layer blob.
    pub fn remove_blob(&self, diff_id: &str) -> Result<()> {
        match fs::remove_file(self.blob_path(diff_id)?) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Removes layer directories and blobs that no record names (crash leftovers).
    pub fn sweep(&self, chains: &HashSet<String>, diffs: &HashSet<String>) -> Result<usize> {
        let mut removed = 0;
        for (dir, keep) in [("layers", chains), ("blobs/sha256", diffs)] {
            for entry in fs::read_dir(self.root.join(dir))? {
                let entry = entry?;
                let name = format!("sha256:{}", entry.file_name().to_string_lossy());
                if !keep.contains(&name) {
                    let path = entry.path();
                    tracing::warn!(path = %path.display(), "removing unreferenced content");
                    if path.is_dir() {
                        fs::remove_dir_all(&path)?
                    } else {
                        fs::remove_file(&path)?
                    }
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}
