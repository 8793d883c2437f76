//! Storage drivers: where image and VM disk data live and how a clone is made.
//!
//! A driver knows volumes only. The catalog (manifests, VM records), the intent journal and the
//! locks are the store's, the same for every driver (see `store`). Every driver passes the one
//! conformance suite in `tests/conformance/`.

pub mod btrfs;
pub mod dir;
pub mod reflink;
pub mod zfs;

use crate::error::Result;
use crate::image::{DiskFormat, Manifest};
use std::fs::File;
use std::path::Path;
use uuid::Uuid;

/// A VM disk as the driver made it; the store records it in the VM record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmDisk {
    /// Path QEMU opens: a file, or a block device (`/dev/zvol/...`).
    pub path: String,
    pub format: DiskFormat,
    pub size_bytes: u64,
    /// How it was made: "reflink", "qcow2-overlay", "btrfs-snapshot", "zfs-clone".
    pub method: &'static str,
}

/// One back end. Implementations are shared between threads (`Store` is `Sync`), and several
/// processes may drive the same store at once: names they create must be created exclusively
/// (fail if present), never replaced.
pub trait StorageDriver: Send + Sync + std::fmt::Debug {
    /// URI scheme: "dir", "btrfs", "zfs".
    fn kind(&self) -> &'static str;

    /// Driver details for `vmpool_store_info`.
    fn describe(&self) -> serde_json::Value;

    /// Directory holding the catalog, journal and locks of this store.
    fn catalog_dir(&self) -> &Path;

    /// Whether images in `format` are kept as they are (otherwise qcow2 is expanded to raw).
    fn keeps(&self, format: DiskFormat) -> bool;

    /// Create the staging volume of an import (`<uuid>-partial`), `size` bytes, marked with
    /// `token`. Fails with `AlreadyExists` if the name is taken. Returns it open for writing.
    fn image_stage(&self, uuid: &Uuid, token: &str, format: DiskFormat, size: u64) -> Result<File>;

    /// Turn the staged volume into the final read-only image; returns where it now lives.
    fn image_seal(&self, uuid: &Uuid, token: &str, format: DiskFormat) -> Result<String>;

    /// Remove what an import marked with `token` left, staged or sealed, and nothing else.
    /// Returns a description of each thing removed.
    fn image_discard(&self, uuid: &Uuid, token: &str, format: DiskFormat) -> Result<Vec<String>>;

    /// Remove a sealed image volume; absent is fine (a retried delete).
    fn image_destroy(&self, uuid: &Uuid, format: DiskFormat) -> Result<()>;

    /// Make the VM's disk: a writable copy-on-write clone of `image`, `size` bytes (never
    /// smaller than the image), in time independent of the image's size.
    fn vm_clone(&self, image: &Manifest, vm: &Uuid, size: u64) -> Result<VmDisk>;

    /// Remove the VM's disk if present, but only if it is a clone of `image` (what a VM
    /// create of this store would have made). Returns whether something was removed.
    fn vm_destroy(&self, vm: &Uuid, image: &Uuid, image_format: DiskFormat) -> Result<bool>;
}
