//! Storage drivers: where image and VM disk data live and how a clone is made.
//!
//! A driver knows volumes only. The catalog (manifests, VM records), the intent journal and the
//! locks are the store's, the same for every driver (see `store`). Every driver is listed once
//! in [`registry`](crate::driver::registry) and passes the one conformance suite in `tests/conformance/`; a new back end
//! is one new module plus one registry entry.

pub mod btrfs;
pub mod dir;
pub mod reflink;
pub mod registry;
pub mod zfs;

use crate::error::Result;
use crate::image::{DiskFormat, Image};
use std::fs::File;
use std::path::{Path, PathBuf};
use uuid::Uuid;

pub use registry::{Capabilities, DiskKind, DriverInfo, Target, TargetKind};

/// A VM disk as the driver made it; the store records it in the VM record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmDisk {
    /// Path QEMU opens: a file, or a block device (`/dev/zvol/...`).
    pub path: String,
    /// Format of the disk.
    pub format: DiskFormat,
    /// Virtual size in bytes.
    pub size_bytes: u64,
    /// How it was made.
    pub method: CloneMethod,
}

/// How a driver makes a VM's disk from an image. The names are those the catalog and the
/// C API's status JSON carry (`clone_method`), so they never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloneMethod {
    /// A reflink copy of the image file (XFS, btrfs, bcachefs; `FICLONE`).
    Reflink,
    /// A qcow2 file whose backing file is the image.
    Qcow2Overlay,
    /// A btrfs snapshot of the image's subvolume.
    BtrfsSnapshot,
    /// A ZFS clone of the image's snapshot.
    ZfsClone,
}

impl CloneMethod {
    /// The name the catalog and the C API use.
    pub fn as_str(self) -> &'static str {
        match self {
            CloneMethod::Reflink => "reflink",
            CloneMethod::Qcow2Overlay => "qcow2-overlay",
            CloneMethod::BtrfsSnapshot => "btrfs-snapshot",
            CloneMethod::ZfsClone => "zfs-clone",
        }
    }
}

impl std::fmt::Display for CloneMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`StorageDriver::vm_destroy`] found at a VM disk's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destroyed {
    /// A clone of the image was there and is gone.
    Removed,
    /// Nothing was there.
    Absent,
    /// Something that is not a clone of the image was there; it was left untouched. The
    /// text says what it is.
    Foreign(String),
}

/// A value in a driver's description of itself (`Store::info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detail {
    /// A path on this host.
    Path(PathBuf),
    /// A word or name.
    Text(String),
    /// Yes or no.
    Bool(bool),
    /// Not known yet (e.g. learnt on first use).
    Unknown,
}

/// One back end. Implementations are shared between threads (`Store` is `Sync`), and several
/// processes may drive the same store at once: names they create must be created exclusively
/// (fail if present), never replaced.
pub trait StorageDriver: Send + Sync + std::fmt::Debug {
    /// The registry entry of this driver.
    fn info(&self) -> &'static DriverInfo;

    /// Run-time details for `Store::info`, as (key, value) pairs.
    fn describe(&self) -> Vec<(&'static str, Detail)>;

    /// Directory holding the catalog, journal and locks of this store.
    fn catalog_dir(&self) -> &Path;

    /// Whether this store's clones make its catalog's earlier writes durable
    /// ([`Capabilities::clone_syncs_catalog`], and the catalog is where that holds): a VM
    /// create then writes its journal entry without syncing it, and relies on `vm_clone`
    /// returning only once the entry is on disk. False unless a driver shows why it holds.
    fn clone_syncs_catalog(&self) -> bool {
        false
    }

    /// The path QEMU opens for a disk recorded as `disk` (a file, or a zvol's device node).
    fn disk_path(&self, disk: &str) -> Result<std::path::PathBuf> {
        Ok(std::path::PathBuf::from(disk))
    }

    /// Whether images in `format` are kept as they are (otherwise qcow2 is expanded to raw).
    fn keeps(&self, format: DiskFormat) -> bool {
        format == DiskFormat::Raw || self.info().caps.keeps_qcow2
    }

    /// Create the staging volume of an import (`<uuid>-partial`), `size` bytes, marked with
    /// `token`. Fails with `AlreadyExists` if the name is taken, and then leaves it alone;
    /// any other failure leaves nothing. Returns it open for writing.
    fn image_stage(&self, uuid: &Uuid, token: &str, format: DiskFormat, size: u64) -> Result<File>;

    /// Turn the staged volume into the final read-only image; returns where it now lives.
    fn image_seal(&self, uuid: &Uuid, token: &str, format: DiskFormat) -> Result<String>;

    /// Remove what an import marked with `token` left, staged or sealed, and nothing else.
    /// Returns a description of each thing removed.
    fn image_discard(&self, uuid: &Uuid, token: &str, format: DiskFormat) -> Result<Vec<String>>;

    /// Remove a sealed image volume; absent is fine (a retried delete).
    fn image_destroy(&self, uuid: &Uuid, format: DiskFormat) -> Result<()>;

    /// Turn a stopped VM's disk into the staged volume of image `image` (as `image_stage`
    /// would have made it, marked with `token`), by moving it, not copying: a pool's memory
    /// template keeps its template VM's disk, frozen at the instant its RAM was saved, as an
    /// image its clones are cloned from. `image_seal` then makes it the image. On failure
    /// the disk is left where it was.
    fn image_adopt(&self, vm: &Uuid, format: DiskFormat, image: &Uuid, token: &str) -> Result<()>;

    /// Make the VM's disk: a writable copy-on-write clone of `image`, `size` bytes (never
    /// smaller than the image), in time independent of the image's size. A name that is
    /// taken fails with `AlreadyExists` and is left alone; any other failure leaves nothing.
    fn vm_clone(&self, image: &Image, vm: &Uuid, size: u64) -> Result<VmDisk>;

    /// Grow a VM's disk (at `path`, in `format`, as `vm_clone` made it) to `size` bytes,
    /// while its VM is stopped; returns the new size (rounded up as the back end needs).
    fn vm_grow(&self, vm: &Uuid, path: &str, format: DiskFormat, size: u64) -> Result<u64>;

    /// Remove the VM's disk if present, but only if it is a clone of `image` (what a VM
    /// create of this store would have made); anything else at that name is left untouched
    /// and reported as [`Destroyed::Foreign`].
    fn vm_destroy(&self, vm: &Uuid, image: &Uuid) -> Result<Destroyed>;
}
