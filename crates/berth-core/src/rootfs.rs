//! Reading files that a container controls. A container can make any path in
//! its filesystem a symlink (`ln -sf /dev/zero /etc/passwd`), a FIFO or a huge
//! file; read naively from the host, through `/proc/<pid>/root` or a layer
//! directory, an absolute symlink resolves against the *host's* root. Here the
//! path is resolved by the kernel with `openat2(RESOLVE_IN_ROOT)`, so every
//! symlink, `..` included, stays inside the given root, as in the container;
//! only a regular file is read, and only up to a size limit.

use std::io::Read;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

use crate::error::{Error, Result};

/// Reads `rel` inside `root` as the container sees it: `Ok(None)` when it does
/// not exist, an error when it is not a regular file or holds more than `max`
/// bytes.
pub fn read_in_root(root: &Path, rel: &Path, max: u64) -> Result<Option<Vec<u8>>> {
    let what = || format!("/{}", rel.display());
    let dir = nix::fcntl::open(root, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| Error::internal(format!("open {}: {e}", root.display())))?;
    // O_NONBLOCK: opening a FIFO must not wait for a writer.
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    // EAGAIN: a mount or rename anywhere on the host during a `..` step, which
    // the kernel will not vouch for; trying again is what it asks for.
    let mut tries = 0;
    let fd = loop {
        match nix::fcntl::openat2(&dir, rel, how) {
            Ok(fd) => break fd,
            Err(Errno::EAGAIN) if tries < 64 => tries += 1,
            Err(Errno::ENOENT | Errno::ENOTDIR) => return Ok(None),
            Err(e) => return Err(Error::invalid(format!("open {} in the container: {e}", what()))),
        }
    };
    let file = std::fs::File::from(fd);
    let meta = file.metadata().map_err(|e| Error::invalid(format!("stat {} in the container: {e}", what())))?;
    if !meta.is_file() {
        return Err(Error::invalid(format!("{} in the container is not a regular file", what())));
    }
    let mut out = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::invalid(format!("read {} in the container: {e}", what())))?;
    if out.len() as u64 > max {
        return Err(Error::invalid(format!("{} in the container is larger than {max} bytes", what())));
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_stay_inside_and_only_small_regular_files_are_read() {
        let outer = tempfile::tempdir().expect("tmp");
        std::fs::write(outer.path().join("secret"), b"host secret").expect("secret");
        let root = outer.path().join("root");
        std::fs::create_dir_all(root.join("etc")).expect("etc");
        std::fs::create_dir_all(root.join("usr/lib")).expect("usr/lib");
        std::fs::write(root.join("usr/lib/passwd"), b"root:x:0:0::/root:/bin/sh\n").expect("passwd");
        std::fs::write(root.join("secret"), b"inside").expect("inner secret");
        symlink("/usr/lib/passwd", root.join("etc/passwd")).expect("symlink");
        symlink("../../../secret", root.join("etc/up")).expect("symlink");
        symlink("/dev/zero", root.join("etc/zero")).expect("symlink");
        std::fs::write(root.join("etc/big"), vec![b'x'; 100]).expect("big");
        nix::unistd::mkfifo(&root.join("etc/fifo"), Mode::from_bits_truncate(0o644)).expect("fifo");

        let read = |p: &str| read_in_root(&root, Path::new(p), 64);
        assert_eq!(read("etc/passwd").expect("passwd").as_deref(), Some(&b"root:x:0:0::/root:/bin/sh\n"[..]));
        assert_eq!(read("/etc/passwd").expect("absolute").as_deref(), Some(&b"root:x:0:0::/root:/bin/sh\n"[..]));
        assert_eq!(read("etc/up").expect("dot-dot").as_deref(), Some(&b"inside"[..]), "`..` stops at the root");
        assert_eq!(read("etc/none").expect("absent"), None);
        // /dev/zero is the container's (absent here), never the host's.
        assert_eq!(read("etc/zero").expect("dangling"), None);
        std::fs::create_dir_all(root.join("dev")).expect("dev");
        std::fs::write(root.join("dev/zero"), b"").expect("fake zero");
        assert_eq!(read("etc/zero").expect("the container's own").as_deref(), Some(&b""[..]));
        let err = read("etc/big").expect_err("too big");
        assert!(err.message().contains("larger than 64 bytes"), "{}", err.message());
        let err = read("etc/fifo").expect_err("a fifo");
        assert!(err.message().contains("not a regular file"), "{}", err.message());
        let err = read("etc").expect_err("a directory");
        assert!(err.message().contains("not a regular file"), "{}", err.message());
    }
}
