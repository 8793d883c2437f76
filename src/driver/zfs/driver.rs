//! The zfs: driver proper (see the module comment in mod.rs for the layout).

use super::libzfs::{self, NvList};
use super::{sys, zvol_device, zvol_path, Options, INFO};
use crate::driver::registry::{Claim, DriverInfo};
use crate::driver::{Destroyed, Detail, StorageDriver, VmDisk};
use crate::error::{Error, IoContext, Result};
use crate::image::{DiskFormat, Image};
use crate::revert::Revert;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use uuid::Uuid;

/// Volume sizes are rounded up to this (the largest default volblocksize), so any
/// volblocksize divides them.
const VOL_ALIGN: u64 = 128 << 10;

/// How long to wait for a new zvol's device node (created asynchronously by the kernel).
const DEVICE_WAIT: Duration = Duration::from_secs(30);

/// The space a thick volume reserves: its data plus the worst case of its indirect blocks,
/// as `zfs create -V` computes it (libzfs does not set it; callers of libzfs must).
fn volsize_to_reservation(volsize: u64, volblocksize: u64, copies: u64) -> u64 {
    const DN_MAX_INDBLKSHIFT: u32 = 17;
    const DNODES_PER_LEVEL: u64 = 1 << (DN_MAX_INDBLKSHIFT - 7);
    const SPA_DVAS_PER_BP: u64 = 3;
    let mut nblocks = volsize / volblocksize;
    let mut numdb: u64 = 7;
    while nblocks > 1 {
        nblocks = nblocks.div_ceil(DNODES_PER_LEVEL);
        numdb += nblocks;
    }
    numdb *= SPA_DVAS_PER_BP.min(copies + 1);
    volsize * copies + (numdb << DN_MAX_INDBLKSHIFT)
}

fn align(size: u64) -> u64 {
    size.div_ceil(VOL_ALIGN) * VOL_ALIGN
}

/// User property marking a staging volume as made by the import holding `token`. The
/// information is in the name, so checking it needs no string values from libnvpair.
fn import_marker(token: &str) -> String {
    format!("vmpool:import-{token}")
}

/// A ZFS store's driver.
#[derive(Debug)]
pub struct ZfsDriver {
    ds: String,
    catalog: PathBuf,
    thick: bool,
}

impl ZfsDriver {
    /// Open (creating if needed) the store dataset `ds`. `claim` is called with the catalog
    /// directory before anything is created inside the dataset, so a dataset that is not a
    /// store is refused untouched.
    pub fn open(ds: &str, o: Options, claim: Claim) -> Result<Box<dyn StorageDriver>> {
        let catalog = libzfs::with(|lz| {
            if !libzfs::exists(ds)? {
                let parent = ds.rsplit_once('/').map(|(p, _)| p).unwrap_or(ds);
                if !libzfs::exists(parent)? {
                    return Err(Error::not_found("ZFS dataset or pool", parent));
                }
                match lz.create(ds, sys::ZFS_TYPE_FILESYSTEM, &NvList::new()?) {
                    Ok(()) | Err(Error::AlreadyExists(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            let d = lz.open(ds, sys::ZFS_TYPE_FILESYSTEM | sys::ZFS_TYPE_VOLUME)?;
            if d.kind() != sys::ZFS_TYPE_FILESYSTEM {
                return Err(Error::NotAStore(format!(
                    "zfs:{ds} is a volume; a store needs a filesystem dataset"
                )));
            }
            if let Some(c) = &o.catalog {
                return Ok(c.clone());
            }
            if let Some(at) = d.mounted_at() {
                return Ok(at);
            }
            d.mount()?;
            d.mounted_at().ok_or_else(|| {
                Error::Unsupported(format!(
                    "zfs:{ds} cannot be mounted (mountpoint {}); mount it, or give ?catalog=/path",
                    d.prop("mountpoint").unwrap_or_default()
                ))
            })
        })?;
        claim(&catalog)?;
        libzfs::with(|lz| {
            for child in ["images", "vms"] {
                let name = format!("{ds}/{child}");
                if !libzfs::exists(&name)? {
                    let props = NvList::new()?.string("canmount", "off")?;
                    match lz.create(&name, sys::ZFS_TYPE_FILESYSTEM, &props) {
                        Ok(()) | Err(Error::AlreadyExists(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Ok(())
        })?;
        Ok(Box::new(ZfsDriver {
            ds: ds.to_owned(),
            catalog,
            thick: o.thick,
        }))
    }

    fn staging(&self, uuid: &Uuid) -> String {
        format!("{}/images/{uuid}-partial", self.ds)
    }

    fn image(&self, uuid: &Uuid) -> String {
        format!("{}/images/{uuid}", self.ds)
    }

    fn disk(&self, vm: &Uuid) -> String {
        format!("{}/vms/{vm}-disk0", self.ds)
    }

    /// Destroy a volume and its @final snapshot if present.
    fn destroy_volume(name: &str) -> Result<()> {
        let snap = format!("{name}@final");
        if libzfs::exists(&snap)? {
            libzfs::destroy_snapshot(&snap)?;
        }
        match libzfs::destroy(name) {
            Ok(()) | Err(Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl StorageDriver for ZfsDriver {
    fn info(&self) -> &'static DriverInfo {
        &INFO
    }

    fn describe(&self) -> Vec<(&'static str, Detail)> {
        vec![
            ("dataset", Detail::Text(self.ds.clone())),
            ("thick", Detail::Bool(self.thick)),
        ]
    }

    fn catalog_dir(&self) -> &Path {
        &self.catalog
    }

    fn image_stage(
        &self,
        uuid: &Uuid,
        token: &str,
        _format: DiskFormat,
        size: u64,
    ) -> Result<File> {
        libzfs::ensure_init()?;
        let name = self.staging(uuid);
        let props = NvList::new()?
            .uint64("volsize", align(size))?
            .string(&import_marker(token), "1")?;
        libzfs::create_volume(&name, &props)?;
        let mut revert = Revert::new();
        revert.add(format!("destroy {name}"), || libzfs::destroy(&name));
        let dev = zvol_device(&name, DEVICE_WAIT)?;
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&dev)
            .ctx(|| format!("opening {} ({name})", dev.display()))?;
        revert.commit();
        Ok(f)
    }

    fn image_seal(&self, uuid: &Uuid, _token: &str, _format: DiskFormat) -> Result<String> {
        let staged = self.staging(uuid);
        libzfs::snapshot(&format!("{staged}@final"))?;
        libzfs::with(|lz| {
            lz.open(&staged, sys::ZFS_TYPE_VOLUME)?
                .set_props(&NvList::new()?.string("readonly", "on")?)
        })?;
        let fin = self.image(uuid);
        libzfs::rename(&staged, &fin)?;
        Ok(format!("{fin}@final"))
    }

    fn image_discard(&self, uuid: &Uuid, token: &str, _format: DiskFormat) -> Result<Vec<String>> {
        libzfs::ensure_init()?;
        let marker = import_marker(token);
        let mut out = Vec::new();
        for name in [self.staging(uuid), self.image(uuid)] {
            if !libzfs::exists(&name)? {
                continue;
            }
            // Only what this import created carries its marker; anything else is not ours.
            if !libzfs::with(|lz| lz.open(&name, sys::ZFS_TYPE_VOLUME)?.has_user_prop(&marker))? {
                continue;
            }
            Self::destroy_volume(&name)?;
            out.push(name);
        }
        Ok(out)
    }

    fn image_destroy(&self, uuid: &Uuid, _format: DiskFormat) -> Result<()> {
        libzfs::ensure_init()?;
        Self::destroy_volume(&self.image(uuid))
    }

    fn image_adopt(&self, vm: &Uuid, _format: DiskFormat, image: &Uuid, token: &str) -> Result<()> {
        libzfs::ensure_init()?;
        let disk = self.disk(vm);
        // Marked first, so that whatever is found at the staging name after a crash can be
        // discarded as this operation's.
        libzfs::with(|lz| {
            lz.open(&disk, sys::ZFS_TYPE_VOLUME)?
                .set_props(&NvList::new()?.string(&import_marker(token), "1")?)
        })?;
        libzfs::rename(&disk, &self.staging(image))
    }

    fn vm_clone(&self, image: &Image, vm: &Uuid, size: u64) -> Result<VmDisk> {
        libzfs::ensure_init()?;
        let name = self.disk(vm);
        let vsize = align(image.size_bytes);
        let size = size.max(vsize);
        // Growth and reservation go with the clone ioctl (libzfs_core, no process-wide lock),
        // so concurrent creates share transaction groups instead of queueing on libzfs.
        let props = if size > vsize || self.thick {
            let mut p = NvList::new()?;
            if size > vsize {
                p = p.uint64("volsize", size)?;
            }
            if self.thick {
                // A failure to read these is an error: a guessed value would reserve the
                // wrong amount without a word.
                let (volblocksize, copies) = libzfs::with(|lz| {
                    let d = lz.open(&self.image(&image.uuid), sys::ZFS_TYPE_VOLUME)?;
                    Ok((d.prop_u64("volblocksize")?, d.prop_u64("copies")?))
                })?;
                if volblocksize < 512 || !(1..=3).contains(&copies) {
                    return Err(Error::Backend(format!(
                        "image {} has volblocksize {volblocksize} and copies {copies}; cannot compute a reservation",
                        image.uuid
                    )));
                }
                p = p.uint64(
                    "refreservation",
                    volsize_to_reservation(size, volblocksize, copies),
                )?;
            }
            Some(p)
        } else {
            None
        };
        libzfs::clone(
            &name,
            &format!("{}@final", self.image(&image.uuid)),
            props.as_ref(),
        )?;
        Ok(VmDisk {
            path: zvol_path(&name),
            format: DiskFormat::Raw,
            size_bytes: size,
            method: "zfs-clone",
        })
    }

    fn vm_grow(&self, vm: &Uuid, _path: &str, _format: DiskFormat, size: u64) -> Result<u64> {
        libzfs::ensure_init()?;
        let name = self.disk(vm);
        let size = align(size);
        libzfs::with(|lz| {
            lz.open(&name, sys::ZFS_TYPE_VOLUME)?
                .set_props(&NvList::new()?.uint64("volsize", size)?)
        })?;
        Ok(size)
    }

    fn vm_destroy(&self, vm: &Uuid, image: &Uuid) -> Result<Destroyed> {
        libzfs::ensure_init()?;
        let name = self.disk(vm);
        if !libzfs::exists(&name)? {
            return Ok(Destroyed::Absent);
        }
        let origin = format!("{}@final", self.image(image));
        let actual = libzfs::with(|lz| {
            lz.open(&name, sys::ZFS_TYPE_FILESYSTEM | sys::ZFS_TYPE_VOLUME)?
                .origin()
        })?;
        if actual.as_deref() != Some(origin.as_str()) {
            return Ok(Destroyed::Foreign(format!(
                "{name} is not a clone of {origin} (origin {}); it was not made by this store",
                actual.unwrap_or_else(|| "none".into())
            )));
        }
        match libzfs::destroy(&name) {
            Ok(()) => Ok(Destroyed::Removed),
            Err(Error::NotFound { .. }) => Ok(Destroyed::Absent),
            Err(e) => Err(e),
        }
    }
}
