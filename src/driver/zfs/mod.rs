//! `zfs:pool/dataset` - images are zvols with a `@final` snapshot, VM disks are zvol clones,
//! made through libzfs and libzfs_core calls (never a `zfs` or `zpool` process).
//!
//! Layout below the store's dataset `<ds>` (a filesystem, mounted: its mountpoint holds the
//! catalog, journal and locks):
//! ```text
//! <ds>/images                    container, canmount=off
//! <ds>/images/<uuid>-partial     zvol being written by an import, marked vmpool:import-<token>
//! <ds>/images/<uuid>@final       image: zvol (readonly=on) and the snapshot clones come from
//! <ds>/images/<uuid>-grown-<bytes>@final
//!                                the image grown to <bytes> (readonly=on, marked
//!                                vmpool:grown-origin): bigger VM disks are clones of it,
//!                                made once per size (see `ZfsDriver::grown_origin`)
//! <ds>/vms                       container, canmount=off, volmode=dev (stores made since
//!                                volmode was set here; older ones: `zfs set volmode=dev`)
//! <ds>/vms/<uuid>-disk0          VM disk: clone of an image's @final or of a grown origin
//! ```
//! Manifests and VM records are JSON files in the catalog (the mounted `<ds>`), not user
//! properties: a record write is a ZIL commit, while every property change costs a
//! transaction-group sync, and a VM create is then exactly one sync (the clone), its journal
//! entry made durable by that same sync (`clone_syncs_catalog`). Datasets are opened by name;
//! nothing ever lists the pool (deleting an image lists the children of `<ds>/images`, to
//! find its grown origins).

mod device;
#[cfg(vmpool_zfs)]
mod driver;
#[cfg(vmpool_zfs)]
pub mod libzfs;
#[cfg(vmpool_zfs)]
pub mod sys;

pub use device::{resolve_device, zvol_device, zvol_path};

use super::registry::{unknown_option, Capabilities, Claim, DiskKind, DriverInfo, Target};
use super::{CloneMethod, StorageDriver};
use crate::error::{Error, Result};
use std::path::PathBuf;

/// The registry entry (present in every build; without libzfs, opening says so).
pub static INFO: DriverInfo = DriverInfo {
    scheme: "zfs",
    summary: "a zvol per image with a @final snapshot; clones through libzfs_core",
    target: super::TargetKind::Dataset,
    caps: Capabilities {
        clone_methods: &[CloneMethod::ZfsClone],
        keeps_qcow2: false,
        thick: true,
        disk_kind: DiskKind::BlockDevice,
        clone_syncs_catalog: true,
        options: &[
            (
                "thick",
                "1: VM disks reserve their whole size (refreservation); 0: thin (default)",
            ),
            (
                "catalog",
                "a directory for the catalog when the dataset cannot be mounted",
            ),
        ],
    },
    open,
};

fn open(target: &Target, opts: &[(&str, &str)], claim: Claim) -> Result<Box<dyn StorageDriver>> {
    let Target::Dataset(ds) = target else {
        return Err(Error::Internal("zfs: driver given a path".into()));
    };
    let o = Options::parse(opts)?;
    ZfsDriver::open(ds, o, claim)
}

/// Options of a zfs: store URI.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `?thick=1`: VM disks reserve their full size (`refreservation`), like `zfs create -V`
    /// without `-s`. Default thin.
    pub thick: bool,
    /// `?catalog=/path`: keep the catalog in this directory instead of the dataset's
    /// mountpoint (for datasets that cannot be mounted).
    pub catalog: Option<PathBuf>,
}

impl Options {
    /// Parse the driver's URI options.
    pub fn parse(opts: &[(&str, &str)]) -> Result<Self> {
        let mut o = Options::default();
        for (k, v) in opts {
            match *k {
                "thick" => {
                    o.thick = match *v {
                        "1" | "true" | "yes" | "on" => true,
                        "0" | "false" | "no" | "off" => false,
                        _ => {
                            return Err(Error::invalid(format!(
                                "store option thick={v:?}: expected 1 or 0"
                            )))
                        }
                    }
                }
                "catalog" => {
                    let p = PathBuf::from(v);
                    if !p.is_absolute() {
                        return Err(Error::invalid(format!(
                            "store option catalog={v:?} is not an absolute path"
                        )));
                    }
                    o.catalog = Some(p);
                }
                _ => return Err(unknown_option(k, &INFO)),
            }
        }
        Ok(o)
    }
}

#[cfg(vmpool_zfs)]
pub use driver::ZfsDriver;

/// Stand-in when the library was built without libzfs.
#[cfg(not(vmpool_zfs))]
#[derive(Debug)]
pub struct ZfsDriver;

#[cfg(not(vmpool_zfs))]
impl ZfsDriver {
    /// Always [`Error::Unsupported`]: this build has no libzfs.
    pub fn open(ds: &str, _o: Options, _claim: Claim) -> Result<Box<dyn StorageDriver>> {
        Err(Error::Unsupported(format!(
            "zfs:{ds}: this vmpool was built without ZFS support (libzfs was not found at build time; install libzfslinux-dev or set VMPOOL_ZFS=1)"
        )))
    }
}

/// Whether this build has the ZFS driver.
pub const BUILT_WITH_ZFS: bool = cfg!(vmpool_zfs);
