//! Content digests: `sha256:<hex>` of blobs, the diff IDs of uncompressed layers and
//! the chain IDs that name a stack of layers.
//!
//! A layer's *diff ID* is the digest of its uncompressed tarball. Its *chain ID*
//! names the layer together with everything below it: the base layer's chain ID is
//! its diff ID, and each next one is `sha256(parent_chain_id + " " + diff_id)`. Two
//! images that share a base share its chain IDs, so each chain is unpacked once.

use std::io::{self, BufRead, BufReader, Read};

use berth_core::{Error, Result};
use sha2::{Digest as _, Sha256};

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The hex part of a `sha256:` digest, after checking its shape.
pub fn digest_hex(digest: &str) -> Result<&str> {
    if crate::reference::is_valid_digest(digest) {
        Ok(&digest[7..])
    } else {
        Err(Error::invalid(format!("invalid digest {digest:?}")))
    }
}

/// Chain IDs of a stack of diff IDs, base first.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff in diff_ids {
        let next = match out.last() {
            None => diff.clone(),
            Some(parent) => sha256_digest(format!("{parent} {diff}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// A reader that hashes and counts what passes through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        Self { inner, hasher: Sha256::new(), count: 0 }
    }
    /// The digest and byte count of everything read so far.
    pub fn finish(self) -> (String, u64) {
        (format!("sha256:{}", hex::encode(self.hasher.finalize())), self.count)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Compression of a layer stream, told by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (`1f 8b`).
    Gzip,
    /// zstd (`28 b5 2f fd`).
    Zstd,
}

/// Wraps `reader` in the decompressor its magic bytes call for.
pub fn decompress<'a, R: Read + 'a>(reader: R) -> Result<(Compression, Box<dyn Read + 'a>)> {
    let mut buf = BufReader::with_capacity(256 * 1024, reader);
    let head = buf.fill_buf().map_err(Error::from)?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok((Compression::Gzip, Box::new(flate2::read::MultiGzDecoder::new(buf))))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let decoder = ruzstd::decoding::StreamingDecoder::new(buf)
            .map_err(|e| Error::invalid(format!("invalid zstd layer: {e}")))?;
        Ok((Compression::Zstd, Box::new(decoder)))
    } else {
        Ok((Compression::None, Box::new(buf)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_oci_rule() {
        let a = sha256_digest(b"a");
        let b = sha256_digest(b"b");
        let chains = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(chains[0], a);
        assert_eq!(chains[1], sha256_digest(format!("{a} {b}").as_bytes()));
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn hashing_reader_matches_one_shot() {
        let data = vec![7u8; 100_000];
        let mut r = HashingReader::new(&data[..]);
        io::copy(&mut r, &mut io::sink()).expect("copy");
        assert_eq!(r.finish(), (sha256_digest(&data), 100_000));
    }

    #[test]
    fn detects_gzip() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"hello").expect("write");
        let gz = enc.finish().expect("finish");
        let (c, mut r) = decompress(&gz[..]).expect("detect");
        assert_eq!(c, Compression::Gzip);
        let mut s = String::new();
        r.read_to_string(&mut s).expect("read");
        assert_eq!(s, "hello");
        let (c, _) = decompress(&b"plain"[..]).expect("detect");
        assert_eq!(c, Compression::None);
    }

    #[test]
    fn digest_hex_checks_shape() {
        assert!(digest_hex("sha256:xyz").is_err());
        assert_eq!(digest_hex(&sha256_digest(b"")).map(str::len).ok(), Some(64));
    }
}
