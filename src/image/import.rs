//! Moving image bytes into a store: streamed in fixed-size blocks (never the whole file in
//! memory), hashed on the way, holes kept as holes.

use crate::error::{IoContext, Result};
use crate::fsutil;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::os::unix::fs::FileExt;

const BLOCK: usize = 1 << 20;

/// Hash `len` bytes of `src` (holes count as the zeros they read as) and, when `dst` is given,
/// write them to `dst` at the same offsets, skipping all-zero blocks so that the copy is at
/// least as sparse as the source. `progress` gets the offset reached.
pub fn copy_sparse(
    src: &File,
    dst: Option<&File>,
    len: u64,
    hasher: &mut Sha256,
    progress: &mut dyn FnMut(u64) -> Result<()>,
) -> Result<()> {
    let zeros = vec![0u8; BLOCK];
    let mut buf = vec![0u8; BLOCK];
    let mut pos = 0u64;
    let hash_zeros = |hasher: &mut Sha256,
                      from: u64,
                      to: u64,
                      progress: &mut dyn FnMut(u64) -> Result<()>|
     -> Result<()> {
        let mut p = from;
        while p < to {
            let n = ((to - p) as usize).min(BLOCK);
            hasher.update(&zeros[..n]);
            p += n as u64;
            progress(p)?;
        }
        Ok(())
    };
    for (start, extent_len) in fsutil::data_extents(src, len)? {
        hash_zeros(hasher, pos, start, progress)?;
        let end = start + extent_len;
        let mut off = start;
        while off < end {
            let n = ((end - off) as usize).min(BLOCK);
            let chunk = &mut buf[..n];
            fsutil::read_exact_at(src, chunk, off, "image file")?;
            hasher.update(&*chunk);
            if let Some(dst) = dst {
                if !fsutil::is_zero(chunk) {
                    dst.write_all_at(chunk, off)
                        .ctx(|| format!("writing image data at offset {off}"))?;
                }
            }
            off += n as u64;
            progress(off)?;
        }
        pos = end;
    }
    hash_zeros(hasher, pos, len, progress)?;
    Ok(())
}

/// Lowercase hex of a digest.
pub fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
