//! The one list of storage drivers. The URI parser, `Store::open` and `Store::info` all read
//! it, so a new back end is a module plus one entry in [`DRIVERS`].

use super::StorageDriver;
use crate::error::Result;
use std::path::{Path, PathBuf};

/// What the part of a store URI after the scheme names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// An absolute directory path (`dir:/var/lib/vmpool`).
    Path,
    /// A ZFS dataset name (`zfs:tank/vmpool`).
    Dataset,
}

/// A parsed store location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A directory.
    Path(PathBuf),
    /// A dataset.
    Dataset(String),
}

/// The kind of thing a VM disk is, as QEMU must open it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskKind {
    /// A regular file.
    File,
    /// A block device node.
    BlockDevice,
}

/// What a driver can do, for callers choosing a store and for `Store::info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// How VM disks may be cloned, in the order tried.
    pub clone_methods: &'static [super::CloneMethod],
    /// Whether qcow2 images are kept as qcow2 (otherwise expanded to raw at import).
    pub keeps_qcow2: bool,
    /// Whether VM disks can reserve their full size up front (`?thick=1`).
    pub thick: bool,
    /// What a VM disk is.
    pub disk_kind: DiskKind,
    /// Whether a VM clone returns only once the transaction that made it is on disk, together
    /// with everything written before it to a catalog kept on the store's own file system
    /// (ZFS: clones and the catalog's files are in one pool, whose transaction groups reach
    /// the disk in order). Then a VM create's journal entry needs no sync of its own: the
    /// clone makes it durable. Whether a given store's catalog qualifies is
    /// `StorageDriver::clone_syncs_catalog`.
    pub clone_syncs_catalog: bool,
    /// Store URI options the driver takes (besides the limits every store takes), with
    /// their meaning.
    pub options: &'static [(&'static str, &'static str)],
}

/// Checks that a catalog directory is a store of this driver kind, turning an empty or
/// missing directory into one (the store's `claim`).
pub type Claim<'a> = &'a dyn Fn(&Path) -> Result<()>;

/// Opens a driver on a target with its options (unknown keys must be refused by name).
pub type OpenFn = fn(&Target, &[(&str, &str)], Claim) -> Result<Box<dyn StorageDriver>>;

/// A registry entry.
#[derive(Debug)]
pub struct DriverInfo {
    /// URI scheme.
    pub scheme: &'static str,
    /// One line for people.
    pub summary: &'static str,
    /// What the URI names.
    pub target: TargetKind,
    /// What it can do.
    pub caps: Capabilities,
    /// How to open it.
    pub open: OpenFn,
}

/// Every driver this build has, in the order `vmpoolctl` lists them.
pub static DRIVERS: &[&DriverInfo] = &[&super::dir::INFO, &super::btrfs::INFO, &super::zfs::INFO];

/// The driver for a URI scheme.
pub fn find(scheme: &str) -> Option<&'static DriverInfo> {
    DRIVERS.iter().copied().find(|d| d.scheme == scheme)
}

/// The known schemes, for error messages: `dir, btrfs, zfs`.
pub fn schemes() -> String {
    DRIVERS
        .iter()
        .map(|d| d.scheme)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The unknown-option error every driver gives.
pub fn unknown_option(key: &str, info: &DriverInfo) -> crate::Error {
    let known: Vec<&str> = info.caps.options.iter().map(|(k, _)| *k).collect();
    crate::Error::invalid(format!(
        "store option {key:?} is not known for {}: stores (known: {}; the limits max_vcpus, min_ram_mib, max_ram_mib, max_disk_gib, max_image_gib; and {})",
        info.scheme,
        if known.is_empty() { "none".to_string() } else { known.join(", ") },
        crate::vm::config::OPTIONS.join(", ")
    ))
}
