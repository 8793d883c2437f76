//! The parts of qcow2 (QEMU's docs/interop/qcow2.txt) that vmpool needs, written here so that no
//! `qemu-img` process is ever started:
//! - reading an image: header checks, walking L1/L2 to validate it or expand it to raw
//!   (back ends whose clones are block-level, btrfs and ZFS, store raw data), with every
//!   option `qemu-img` writes: cluster sizes 512 B to 2 MiB, compat 0.10 and 1.1, zlib and
//!   zstd compressed clusters, extended L2 entries (subclusters);
//! - writing an empty overlay whose backing file is an image: the O(1) clone on a directory
//!   store without reflinks.

use crate::error::{Error, IoContext, Result};
use crate::fsutil::{self, read_exact_at};
use crate::image::DiskFormat;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The first four bytes of every qcow2 file.
pub const MAGIC: [u8; 4] = *b"QFI\xfb";
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const L2_COMPRESSED: u64 = 1 << 62;
const L2_ZERO: u64 = 1;

// Incompatible feature bits.
const INCOMPAT_DIRTY: u64 = 1 << 0;
const INCOMPAT_CORRUPT: u64 = 1 << 1;
const INCOMPAT_DATA_FILE: u64 = 1 << 2;
const INCOMPAT_COMPRESSION: u64 = 1 << 3;
const INCOMPAT_EXTL2: u64 = 1 << 4;

/// Header extension naming the backing file's format.
const EXT_BACKING_FORMAT: u32 = 0xE279_2ACA;

/// The header fields vmpool reads (names as in qcow2.txt).
#[derive(Debug, Clone)]
#[allow(missing_docs)] // Field names are those of docs/interop/qcow2.txt.
pub struct Header {
    pub version: u32,
    pub backing_file_offset: u64,
    pub cluster_bits: u32,
    /// Virtual size in bytes.
    pub size: u64,
    pub crypt_method: u32,
    pub l1_size: u32,
    pub l1_table_offset: u64,
    pub refcount_table_offset: u64,
    pub incompatible_features: u64,
    pub header_length: u32,
    pub compression_type: u8,
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}
fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

impl Header {
    /// Parse the header fields vmpool uses; only structural sanity is checked here.
    pub fn parse(b: &[u8; 112]) -> Result<Header> {
        if b[..4] != MAGIC {
            return Err(Error::CorruptImage("not a qcow2 file (bad magic)".into()));
        }
        let version = be32(b, 4);
        if !(2..=3).contains(&version) {
            return Err(Error::UnsupportedFormat(format!(
                "qcow2 version {version} is not supported (2 and 3 are)"
            )));
        }
        let mut h = Header {
            version,
            backing_file_offset: be64(b, 8),
            cluster_bits: be32(b, 20),
            size: be64(b, 24),
            crypt_method: be32(b, 32),
            l1_size: be32(b, 36),
            l1_table_offset: be64(b, 40),
            refcount_table_offset: be64(b, 48),
            incompatible_features: if version >= 3 { be64(b, 72) } else { 0 },
            header_length: if version >= 3 { be32(b, 100) } else { 72 },
            compression_type: 0,
        };
        if h.incompatible_features & INCOMPAT_COMPRESSION != 0 && h.header_length > 104 {
            h.compression_type = b[104];
        }
        if !(9..=21).contains(&h.cluster_bits) {
            return Err(Error::CorruptImage(format!(
                "qcow2 cluster_bits {} is out of range",
                h.cluster_bits
            )));
        }
        Ok(h)
    }

    /// Refuse what an image to import must not have, saying why: vmpool reads these images
    /// itself, so only self-contained, clean, unencrypted ones with standard L2 entries.
    pub fn check_importable(&self) -> Result<()> {
        let h = self;
        if h.backing_file_offset != 0 {
            return Err(Error::UnsupportedFormat(
                "qcow2 image has a backing file; import a self-contained image (qemu-img convert it first)".into(),
            ));
        }
        if h.crypt_method != 0 {
            return Err(Error::UnsupportedFormat(
                "encrypted qcow2 images are not supported".into(),
            ));
        }
        let inc = h.incompatible_features;
        if inc & INCOMPAT_DIRTY != 0 {
            return Err(Error::CorruptImage("qcow2 image is marked dirty (not closed cleanly); repair it with qemu-img check -r all".into()));
        }
        if inc & INCOMPAT_CORRUPT != 0 {
            return Err(Error::CorruptImage("qcow2 image is marked corrupt".into()));
        }
        if inc & INCOMPAT_DATA_FILE != 0 {
            return Err(Error::UnsupportedFormat(
                "qcow2 images with an external data file are not supported".into(),
            ));
        }
        if inc & INCOMPAT_EXTL2 != 0 && h.cluster_bits < 14 {
            return Err(Error::CorruptImage(format!(
                "qcow2 image has extended L2 entries with {}-byte clusters (16 KiB is the least)",
                h.cluster_size()
            )));
        }
        if h.compression_type > COMPRESSION_ZSTD {
            return Err(Error::UnsupportedFormat(format!(
                "qcow2 compression type {} is unknown (zlib and zstd are supported)",
                h.compression_type
            )));
        }
        let unknown = inc
            & !(INCOMPAT_DIRTY
                | INCOMPAT_CORRUPT
                | INCOMPAT_DATA_FILE
                | INCOMPAT_COMPRESSION
                | INCOMPAT_EXTL2);
        if unknown != 0 {
            return Err(Error::UnsupportedFormat(format!(
                "qcow2 image uses unknown incompatible features {unknown:#x}"
            )));
        }
        let cluster = 1u64 << h.cluster_bits;
        let per_l2 = cluster / h.l2_entry_size();
        let needed = h.size.div_ceil(cluster * per_l2);
        if u64::from(h.l1_size) < needed {
            return Err(Error::CorruptImage(format!(
                "qcow2 L1 table has {} entries; {} GiB needs {needed}",
                h.l1_size,
                h.size >> 30
            )));
        }
        Ok(())
    }

    /// Bytes per cluster.
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// Whether L2 entries are extended (128 bits: the entry and a subcluster bitmap).
    pub fn extended_l2(&self) -> bool {
        self.incompatible_features & INCOMPAT_EXTL2 != 0
    }

    fn l2_entry_size(&self) -> u64 {
        if self.extended_l2() {
            16
        } else {
            8
        }
    }
}

/// Where one guest cluster's data is.
#[derive(Debug, Clone, Copy)]
enum Cluster {
    Zero,
    Data(u64),
    Compressed {
        offset: u64,
        len: u64,
    },
    /// Extended L2: the cluster at `offset` holds the subclusters whose bit is set in
    /// `allocated` (32 subclusters); the others read as zeros (no backing file).
    Subclusters {
        offset: u64,
        allocated: u32,
    },
}

/// Subclusters per cluster with extended L2 entries.
const SUBCLUSTERS: u64 = 32;
const COMPRESSION_ZSTD: u8 = 1;

/// The header of a qcow2 file, e.g. to read an overlay's virtual size.
pub fn read_header(file: &File) -> Result<Header> {
    let mut buf = [0u8; 112];
    let n = file
        .read_at(&mut buf, 0)
        .ctx(|| "reading qcow2 header".into())?;
    if n < 72 {
        return Err(Error::CorruptImage(format!(
            "qcow2 header is truncated ({n} bytes)"
        )));
    }
    Header::parse(&buf)
}

/// The backing file name recorded in a qcow2 header, if it has one.
pub fn backing_file(file: &File) -> Result<Option<String>> {
    let h = read_header(file)?;
    if h.backing_file_offset == 0 {
        return Ok(None);
    }
    let mut len = [0u8; 4];
    read_exact_at(file, &mut len, 16, "qcow2 header")?;
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > 1023 {
        return Err(Error::CorruptImage(format!(
            "qcow2 backing file name length {len} is out of range"
        )));
    }
    let mut name = vec![0u8; len];
    read_exact_at(
        file,
        &mut name,
        h.backing_file_offset,
        "qcow2 backing file name",
    )?;
    String::from_utf8(name)
        .map(Some)
        .map_err(|_| Error::CorruptImage("qcow2 backing file name is not UTF-8".into()))
}

/// An open qcow2 image that vmpool can read (see [`Header::check_importable`]).
pub struct Image<'a> {
    file: &'a File,
    /// Its header.
    pub header: Header,
    file_len: u64,
}

impl<'a> Image<'a> {
    /// Read and check the header and table positions.
    pub fn open(file: &'a File) -> Result<Self> {
        let file_len = fsutil::byte_size(file)?;
        let header = read_header(file)?;
        header.check_importable()?;
        let l1_end = header
            .l1_table_offset
            .checked_add(u64::from(header.l1_size) * 8);
        if l1_end.is_none_or(|end| end > file_len) {
            return Err(Error::CorruptImage(format!(
                "truncated qcow2: L1 table at {} is past the end of the {file_len}-byte file",
                header.l1_table_offset
            )));
        }
        if header.refcount_table_offset >= file_len {
            return Err(Error::CorruptImage(
                "truncated qcow2: refcount table is past the end of the file".into(),
            ));
        }
        Ok(Image {
            file,
            header,
            file_len,
        })
    }

    /// Visit every guest cluster that holds data or is explicitly zero, in guest order.
    fn walk(&self, mut visit: impl FnMut(u64, Cluster) -> Result<()>) -> Result<()> {
        let h = &self.header;
        let cs = h.cluster_size();
        let entry = h.l2_entry_size();
        let per_l2 = cs / entry;
        // At most l1_size entries (checked against the file's length at open), so this
        // allocation is bounded by the file, whatever the header claims.
        let l1_entries = h.size.div_ceil(cs * per_l2) as usize;
        let mut l1 = vec![0u8; l1_entries * 8];
        read_exact_at(self.file, &mut l1, h.l1_table_offset, "qcow2 L1 table")?;
        let mut l2 = vec![0u8; cs as usize];
        let x = 62 - (h.cluster_bits - 8);
        let past_end = |what: String, at: u64| {
            Error::CorruptImage(format!(
                "truncated qcow2: {what} at offset {at} is past the end of the {}-byte file",
                self.file_len
            ))
        };
        // Each L2 table belongs to one L1 entry and starts on a cluster (qcow2.txt): tables
        // shared or overlapping would make this walk as long as the virtual size claims,
        // whatever the file's size (a 448 KiB file with one L2 table shared by 32768 L1
        // entries walked 16 TiB of guest space: seconds to minutes per read of the image).
        let mut l2_seen = std::collections::HashSet::new();
        for (i, e) in l1.chunks_exact(8).enumerate() {
            let l2_off = be64(e, 0) & OFFSET_MASK;
            if l2_off == 0 {
                continue;
            }
            if !l2_off.is_multiple_of(cs) {
                return Err(Error::CorruptImage(format!(
                    "qcow2 L2 table offset {l2_off} is not aligned to a cluster"
                )));
            }
            if !l2_seen.insert(l2_off) {
                return Err(Error::CorruptImage(format!(
                    "qcow2 L2 table at offset {l2_off} is used by more than one L1 entry"
                )));
            }
            if l2_off.checked_add(cs).is_none_or(|end| end > self.file_len) {
                return Err(past_end("L2 table".into(), l2_off));
            }
            read_exact_at(self.file, &mut l2, l2_off, "qcow2 L2 table")?;
            for (j, e) in l2.chunks_exact(entry as usize).enumerate() {
                let guest = (i as u64 * per_l2 + j as u64) * cs;
                if guest >= h.size {
                    break;
                }
                let word = be64(e, 0);
                let c = if word & L2_COMPRESSED != 0 {
                    let offset = word & ((1u64 << x) - 1);
                    let sectors = ((word >> x) & ((1u64 << (h.cluster_bits - 8)) - 1)) + 1;
                    Cluster::Compressed {
                        offset,
                        len: sectors * 512 - (offset & 511),
                    }
                } else if h.extended_l2() {
                    let bitmap = be64(e, 8);
                    let allocated = bitmap as u32;
                    let offset = word & OFFSET_MASK;
                    if allocated == 0 {
                        // Unallocated or zero subclusters only: all zeros without a backing
                        // file. A zero-flagged subcluster is written as a hole anyway.
                        continue;
                    }
                    if offset == 0 {
                        return Err(Error::CorruptImage(format!(
                            "qcow2 guest offset {guest} has allocated subclusters but no host cluster"
                        )));
                    }
                    Cluster::Subclusters { offset, allocated }
                } else if h.version >= 3 && word & L2_ZERO != 0 {
                    Cluster::Zero
                } else if word & OFFSET_MASK != 0 {
                    Cluster::Data(word & OFFSET_MASK)
                } else {
                    continue;
                };
                let start = match c {
                    Cluster::Data(o)
                    | Cluster::Compressed { offset: o, .. }
                    | Cluster::Subclusters { offset: o, .. } => o,
                    Cluster::Zero => 0,
                };
                if start >= self.file_len {
                    return Err(past_end(format!("data of guest offset {guest}"), start));
                }
                visit(guest, c)?;
            }
        }
        Ok(())
    }

    /// Check that every table and cluster the image refers to lies inside the file.
    pub fn check(&self) -> Result<()> {
        self.walk(|_, _| Ok(()))
    }

    /// Read up to `out.len()` bytes at `off`, zero-filling what lies past the end of the file
    /// (qemu-img may leave the last cluster short).
    fn read_tolerant(&self, out: &mut [u8], off: u64, what: &str) -> Result<()> {
        out.fill(0);
        let avail = (self.file_len - off).min(out.len() as u64) as usize;
        read_exact_at(self.file, &mut out[..avail], off, what)
    }

    /// Inflate one compressed cluster into `out` (exactly one cluster): a stream that ends
    /// early is corruption, as qemu-img treats it.
    fn decompress(&self, packed: &[u8], out: &mut [u8], guest: u64) -> Result<()> {
        let bad = |why: String| {
            Error::CorruptImage(format!(
                "qcow2 compressed cluster at guest offset {guest} does not decompress: {why}"
            ))
        };
        if self.header.compression_type == COMPRESSION_ZSTD {
            use zstd::stream::raw::{Decoder, InBuffer, Operation, OutBuffer};
            let mut d = Decoder::new().map_err(|e| bad(e.to_string()))?;
            let mut input = InBuffer::around(packed);
            let mut output = OutBuffer::around(out);
            // The compressed bytes may be followed by unrelated data up to the sector end;
            // stop as soon as the cluster is whole.
            while output.pos() < output.capacity() {
                let before = (input.pos, output.pos());
                d.run(&mut input, &mut output)
                    .map_err(|e| bad(e.to_string()))?;
                if (input.pos, output.pos()) == before {
                    return Err(bad(format!(
                        "the stream ends after {} of {} bytes",
                        output.pos(),
                        output.capacity()
                    )));
                }
            }
            Ok(())
        } else {
            let mut z = flate2::Decompress::new(false);
            z.decompress(packed, out, flate2::FlushDecompress::Finish)
                .map_err(|e| bad(e.to_string()))?;
            if z.total_out() != out.len() as u64 {
                return Err(bad(format!(
                    "the stream ends after {} of {} bytes",
                    z.total_out(),
                    out.len()
                )));
            }
            Ok(())
        }
    }

    /// Write the guest-visible contents to `dst` (a new sparse file or an empty zvol) at their
    /// guest offsets. All-zero clusters are skipped, so the target stays thin.
    pub fn expand_to(&self, dst: &File, progress: &mut dyn FnMut(u64) -> Result<()>) -> Result<()> {
        let cs = self.header.cluster_size();
        let size = self.header.size;
        let mut buf = vec![0u8; cs as usize];
        let mut full = vec![0u8; cs as usize];
        let mut packed = Vec::new();
        self.walk(|guest, c| {
            let want = cs.min(size - guest) as usize;
            let out = &mut buf[..want];
            match c {
                Cluster::Zero => return progress(guest + want as u64),
                Cluster::Data(off) => self.read_tolerant(out, off, "qcow2 data cluster")?,
                Cluster::Subclusters { offset, allocated } => {
                    let sc = cs / SUBCLUSTERS;
                    out.fill(0);
                    for k in 0..SUBCLUSTERS {
                        let at = (k * sc) as usize;
                        if allocated & (1 << k) == 0 || at >= want {
                            continue;
                        }
                        let end = (at + sc as usize).min(want);
                        let host = offset + k * sc;
                        if host >= self.file_len {
                            return Err(Error::CorruptImage(format!(
                                "truncated qcow2: subcluster {k} of guest offset {guest} is past the end of the file"
                            )));
                        }
                        self.read_tolerant(&mut out[at..end], host, "qcow2 subcluster")?;
                    }
                }
                Cluster::Compressed { offset, len } => {
                    let len = len.min(self.file_len - offset) as usize;
                    packed.resize(len, 0);
                    read_exact_at(self.file, &mut packed, offset, "qcow2 compressed cluster")?;
                    self.decompress(&packed, &mut full, guest)?;
                    out.copy_from_slice(&full[..want]);
                }
            }
            if !fsutil::is_zero(out) {
                dst.write_all_at(out, guest).ctx(|| format!("writing guest offset {guest}"))?;
            }
            progress(guest + want as u64)
        })
    }
}

/// Grow the qcow2 image at `path` (not in use) to `size` bytes, when its L1 table has room
/// for the new size in the clusters it already occupies (always so for vmpool's overlays up to
/// 4 TiB with 64 KiB clusters): only the header changes, nothing is allocated or moved.
pub fn grow_in_place(path: &Path, size: u64) -> Result<()> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .ctx(|| format!("opening {}", path.display()))?;
    let h = read_header(&f)?;
    if size < h.size {
        return Err(Error::invalid(format!(
            "{} is {} bytes; disks never shrink",
            path.display(),
            h.size
        )));
    }
    // The header is what the VM's QEMU last wrote: checked arithmetic, so a forged one is
    // refused rather than wrapped around.
    let forged = || {
        Error::CorruptImage(format!(
            "{}: its qcow2 header is inconsistent",
            path.display()
        ))
    };
    let cs = h.cluster_size();
    let per_l1_entry = cs
        .checked_mul(cs / h.l2_entry_size().max(1))
        .filter(|n| *n > 0)
        .ok_or_else(forged)?;
    let needed = size.div_ceil(per_l1_entry);
    let l1_end = h
        .l1_table_offset
        .checked_add(u64::from(h.l1_size) * 8)
        .ok_or_else(forged)?;
    let capacity = l1_end
        .div_ceil(cs)
        .checked_mul(cs)
        .and_then(|e| e.checked_sub(h.l1_table_offset))
        .ok_or_else(forged)?
        / 8;
    if needed > capacity {
        return Err(Error::Unsupported(format!(
            "growing {} to {size} bytes needs a larger qcow2 L1 table ({needed} entries; it has room for {capacity})",
            path.display()
        )));
    }
    let l1_size = u32::try_from(needed.max(u64::from(h.l1_size)))
        .map_err(|_| Error::invalid(format!("{size} bytes is too large for qcow2")))?;
    // The new L1 entries lie in the table's own cluster, past its old end: still zero
    // (unallocated), which is what a grown disk reads as.
    f.write_all_at(&l1_size.to_be_bytes(), 36)
        .ctx(|| format!("writing {}", path.display()))?;
    f.write_all_at(&size.to_be_bytes(), 24)
        .ctx(|| format!("writing {}", path.display()))?;
    f.sync_all().ctx(|| format!("syncing {}", path.display()))
}

/// Create `path` (which must not exist) as an empty qcow2 v3 overlay of `size` bytes whose
/// backing file is `backing` (stored as given: a path relative to the overlay's directory keeps
/// the store relocatable). Nothing is read from the backing file, so this takes the same time
/// for any image size.
pub fn create_overlay(
    path: &Path,
    backing: &str,
    backing_format: DiskFormat,
    size: u64,
) -> Result<File> {
    const CLUSTER_BITS: u32 = 16;
    const CS: u64 = 1 << CLUSTER_BITS;
    let per_l2 = CS / 8;
    let l1_size = size.div_ceil(CS * per_l2).max(1);
    let l1_clusters = (l1_size * 8).div_ceil(CS);
    // Layout: cluster 0 header + extensions + backing name, 1 refcount table, 2 refcount
    // block, 3.. L1 table (all zero: nothing allocated yet).
    let (rt, rb, l1) = (CS, 2 * CS, 3 * CS);
    let clusters = 3 + l1_clusters;
    let fmt = backing_format.as_str().as_bytes();
    let ext_len = 8 + fmt.len().div_ceil(8) * 8;
    let name_off = 104 + ext_len + 8;
    if backing.is_empty() || backing.len() > 1023 || name_off + backing.len() > CS as usize {
        return Err(Error::invalid(format!(
            "backing file name of {} bytes does not fit a qcow2 header",
            backing.len()
        )));
    }

    let mut h = vec![0u8; name_off + backing.len()];
    let put32 = |h: &mut [u8], at: usize, v: u32| h[at..at + 4].copy_from_slice(&v.to_be_bytes());
    let put64 = |h: &mut [u8], at: usize, v: u64| h[at..at + 8].copy_from_slice(&v.to_be_bytes());
    h[..4].copy_from_slice(&MAGIC);
    put32(&mut h, 4, 3);
    put64(&mut h, 8, name_off as u64);
    put32(&mut h, 16, backing.len() as u32);
    put32(&mut h, 20, CLUSTER_BITS);
    put64(&mut h, 24, size);
    put32(&mut h, 36, l1_size as u32);
    put64(&mut h, 40, l1);
    put64(&mut h, 48, rt);
    put32(&mut h, 56, 1);
    put32(&mut h, 96, 4); // refcount_order: 16-bit refcounts
    put32(&mut h, 100, 104); // header_length
    put32(&mut h, 104, EXT_BACKING_FORMAT);
    put32(&mut h, 108, fmt.len() as u32);
    h[112..112 + fmt.len()].copy_from_slice(fmt);
    // The end-of-extensions marker (type 0, length 0) is already zero.
    h[name_off..].copy_from_slice(backing.as_bytes());

    // Whole or not at all: a create killed between making the name and writing the header
    // left an empty file that recovery could not tell from one the store did not make (a
    // random-SIGKILL test found it).
    fsutil::create_whole(path, |f| {
        f.write_all_at(&h, 0)
            .ctx(|| format!("writing {}", path.display()))?;
        f.write_all_at(&rb.to_be_bytes(), rt)
            .ctx(|| format!("writing {}", path.display()))?;
        let refcounts: Vec<u8> = (0..clusters).flat_map(|_| 1u16.to_be_bytes()).collect();
        f.write_all_at(&refcounts, rb)
            .ctx(|| format!("writing {}", path.display()))?;
        f.set_len(clusters * CS)
            .ctx(|| format!("sizing {}", path.display()))
    })
}
