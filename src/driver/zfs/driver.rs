//! The zfs: driver proper (see the module comment in mod.rs for the layout).

use super::libzfs::{self, NvList};
use super::{sys, zvol_device, zvol_path, Options, INFO};
use crate::driver::registry::{Claim, DriverInfo};
use crate::driver::{CloneMethod, Destroyed, Detail, StorageDriver, VmDisk};
use crate::error::{Error, IoContext, Result};
use crate::image::{DiskFormat, Image};
use crate::revert::Revert;
use once_cell::sync::Lazy;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Volume sizes are rounded up to this (the largest default volblocksize), so any
/// volblocksize divides them.
const VOL_ALIGN: u64 = 128 << 10;

/// How long to wait for a new zvol's device node (created asynchronously by the kernel).
const DEVICE_WAIT: Duration = Duration::from_secs(30);

/// How long a destroy waits out a volume held open for a moment (see `destroy_waiting`).
const BUSY_WAIT: Duration = Duration::from_secs(3);

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

/// User property marking a grown origin (see `ZfsDriver::grown_origin`) as vmpool's.
const GROWN_MARKER: &str = "vmpool:grown-origin";

/// Grown origins this process has checked (`Some`: usable) or failed to make or check
/// (`None`: clone from the image with `volsize` instead), by snapshot name.
static GROWN: Lazy<Mutex<HashMap<String, Option<()>>>> = Lazy::new(Default::default);

/// Held while this process makes or checks a grown origin (one at a time; rare).
static GROWING: Mutex<()> = Mutex::new(());

use crate::lock::guard as lock;

/// A ZFS store's driver.
#[derive(Debug)]
pub struct ZfsDriver {
    ds: String,
    catalog: PathBuf,
    thick: bool,
    /// The catalog is the mounted store dataset itself (see `clone_syncs_catalog`).
    catalog_in_pool: bool,
}

impl ZfsDriver {
    /// Open (creating if needed) the store dataset `ds`. `claim` is called with the catalog
    /// directory before anything is created inside the dataset, so a dataset that is not a
    /// store is refused untouched.
    pub fn open(ds: &str, o: Options, claim: Claim) -> Result<Box<dyn StorageDriver>> {
        let own_mountpoint = o.catalog.is_none();
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
                    let mut props = NvList::new()?.string("canmount", "off")?;
                    if child == "vms" {
                        // VM disks (inheriting it) get device nodes without partitions:
                        // the host never reads a guest's partition table, and making a
                        // clone's device skips the partition scan, whose first open of the
                        // new volume holds the pool-wide spa_namespace_lock (zvol_open),
                        // serialising concurrent clones.
                        props = props.string("volmode", "dev")?;
                    }
                    match lz.create(&name, sys::ZFS_TYPE_FILESYSTEM, &props) {
                        Ok(()) | Err(Error::AlreadyExists(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Ok(())
        })?;
        // The catalog's files must be in the store dataset itself (so in the clones' pool),
        // not in something mounted over its mountpoint.
        // Elsewhere (illumos: no mountinfo) entries are synced as on any other store.
        #[cfg(target_os = "linux")]
        let catalog_in_pool = own_mountpoint
            && crate::fsutil::mount_of(&catalog)?
                .is_some_and(|(fstype, source)| fstype == "zfs" && source == ds);
        #[cfg(not(target_os = "linux"))]
        let catalog_in_pool = {
            let _ = own_mountpoint;
            false
        };
        Ok(Box::new(ZfsDriver {
            ds: ds.to_owned(),
            catalog,
            thick: o.thick,
            catalog_in_pool,
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

    /// The origin of VM disks of `size` bytes cloned from `image`: the image's snapshot
    /// grown to `size` (`grown_origin`).
    fn grown(&self, image: &Uuid, size: u64) -> String {
        format!("{}/images/{image}-grown-{size}", self.ds)
    }

    /// Whether `origin` is one of `image`'s grown origins' snapshot (by its name).
    fn is_grown_origin(&self, image: &Uuid, origin: &str) -> bool {
        origin
            .strip_prefix(&format!("{}/images/{image}-grown-", self.ds))
            .and_then(|r| r.strip_suffix("@final"))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    }

    /// A snapshot of `image` already grown to `size`, made the first time a disk of that
    /// size is asked for: then every later clone of that size is one `lzc_clone` without
    /// properties (one transaction group), where a clone grown by its `volsize` property
    /// waits for a second one (`zvol_set_volsize` syncs its own) and reopens the new volume.
    /// `<image>-grown-<size>` is a clone of `<image>@final` with `volsize` and `readonly`
    /// set and the `vmpool:grown-origin` marker, snapshotted `@final`; it is made under a
    /// temp name and renamed into place whole, so the name never holds a half-made one, and
    /// a crash leaves at most a `<image>-grown-<size>-<token>` that `image_destroy` removes.
    /// `None` when it cannot be made or what is at the name is not ours: the caller clones
    /// the image with `volsize` instead.
    fn grown_origin(&self, image: &Image, size: u64) -> Option<String> {
        let grown = self.grown(&image.uuid, size);
        let snap = format!("{grown}@final");
        if let Some(known) = lock(&GROWN).get(&snap) {
            return known.map(|()| snap);
        }
        let _one = lock(&GROWING);
        if let Some(known) = lock(&GROWN).get(&snap) {
            return known.map(|()| snap);
        }
        let usable = match libzfs::exists(&snap) {
            Ok(true) => self.grown_is_ours(image, &grown, size),
            Ok(false) => self.make_grown(image, &grown, size).is_ok(),
            Err(_) => false,
        };
        lock(&GROWN).insert(snap.clone(), usable.then_some(()));
        usable.then_some(snap)
    }

    /// Whether the grown origin at `grown` is one this store made from `image` at `size`.
    fn grown_is_ours(&self, image: &Image, grown: &str, size: u64) -> bool {
        let origin = format!("{}@final", self.image(&image.uuid));
        libzfs::with(|lz| {
            let d = lz.open(grown, sys::ZFS_TYPE_VOLUME)?;
            Ok(d.has_user_prop(GROWN_MARKER)?
                && d.origin()?.as_deref() == Some(origin.as_str())
                && d.prop_u64("volsize")? == size)
        })
        .unwrap_or(false)
    }

    /// Make `grown` (see `grown_origin`); another process making it at the same time is
    /// fine (one rename wins, the other's copy is destroyed).
    fn make_grown(&self, image: &Image, grown: &str, size: u64) -> Result<()> {
        let tmp = format!("{grown}-{}", crate::fsutil::token());
        let props = NvList::new()?
            .uint64("volsize", size)?
            // Raw to the kernel (no libzfs to translate "on"): index properties are numbers.
            .uint64("readonly", 1)?
            .string(GROWN_MARKER, "1")?;
        libzfs::clone(
            &tmp,
            &format!("{}@final", self.image(&image.uuid)),
            Some(&props),
        )?;
        let made =
            libzfs::snapshot(&format!("{tmp}@final")).and_then(|()| libzfs::rename(&tmp, grown));
        match made {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = Self::destroy_volume(&tmp);
                match e {
                    Error::AlreadyExists(_) if self.grown_is_ours(image, grown, size) => Ok(()),
                    e => Err(e),
                }
            }
        }
    }

    /// Destroy a volume and its @final snapshot if present.
    fn destroy_volume(name: &str) -> Result<()> {
        let snap = format!("{name}@final");
        if libzfs::exists(&snap)? {
            libzfs::destroy_snapshot(&snap)?;
        }
        match destroy_waiting(name) {
            Ok(()) | Err(Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// `lzc_destroy` of a volume, waiting out a hold of a moment. A volume made or written a
/// moment ago can be held open briefly by someone else: the kernel's partition scan of its
/// new device (images are not volmode=dev), or udev's probe after the last writer closed it.
/// A discard right after a cancelled import met that as EBUSY. Such a hold ends in
/// milliseconds; a real user (an image's clones, a running VM) does not, and is reported
/// after [`BUSY_WAIT`].
fn destroy_waiting(name: &str) -> Result<()> {
    let deadline = Instant::now() + BUSY_WAIT;
    loop {
        match libzfs::destroy(name) {
            Err(Error::Busy(_)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            r => return r,
        }
    }
}

impl StorageDriver for ZfsDriver {
    fn info(&self) -> &'static DriverInfo {
        &INFO
    }

    fn disk_path(&self, disk: &str) -> Result<std::path::PathBuf> {
        super::resolve_device(disk)
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

    /// True when the catalog is the mountpoint of the store's dataset (not `?catalog=`).
    ///
    /// Why a VM create's journal entry then needs no sync of its own (checked against the
    /// OpenZFS source, 2.1.11 and master; the names are its functions):
    ///
    /// 1. The entry's file operations (create, write, link of the temp name, its unlink) are
    ///    ZPL operations on `<ds>`, in the same pool as the clone. Each is assigned to the
    ///    pool's open transaction group when it runs (`dmu_tx_assign` in `zfs_write`,
    ///    `zfs_create`, `zfs_link`, `zfs_remove`) and has returned, its tx committed, before
    ///    `lzc_clone` is called. Let W be the latest of those groups.
    /// 2. `lzc_clone` is `zfs_ioc_clone` -> `dmu_objset_clone` -> `dsl_sync_task`:
    ///    `dsl_sync_task_common` assigns its tx to the group open at that moment, C
    ///    (`dmu_tx_assign(tx, TXG_WAIT)`, `dst_txg`), the sync task makes the clone while C
    ///    syncs, and the call returns after `txg_wait_synced(dp, C)` (an EAGAIN retry takes a
    ///    later group and waits again). Open-group numbers only grow, so C >= W.
    /// 3. A pool's groups reach the disk whole and in order: `spa_sync` of C starts after
    ///    C-1 is synced and writes C's uberblock after all of C's blocks. Any pool state a
    ///    crash leaves that holds the clone holds every change of groups <= C, the entry's
    ///    among them: the clone on disk implies its entry on disk, and recovery finds it.
    ///    An entry that did not make it describes a clone that does not exist either.
    /// 4. The intent log can bring the entry's name back without its data: another thread's
    ///    fsync on the dataset commits every namespace record (create, link: "sync" itxs)
    ///    but the data of the file it syncs only (writes are "async" itxs, `zil_commit`), so
    ///    a crash before W synced can leave the entry empty. By 3 its clone does not exist;
    ///    the journal removes empty entries (`Journal::abandoned`).
    /// 5. Not an O_TMPFILE: `zfs_link` of one waits for a transaction-group sync itself (its
    ///    creation is not in the intent log) while the VFS holds the journal directory's
    ///    lock, so concurrent creates would queue there one sync each.
    ///
    /// Also checked: the file system holding the catalog is the dataset itself (by its device
    /// number in mountinfo), and `Store::open` checks that the journal directory is on the
    /// catalog's file system (nothing mounted over it).
    fn clone_syncs_catalog(&self) -> bool {
        self.catalog_in_pool
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
        revert.add(format!("destroy {name}"), || destroy_waiting(&name));
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
        // Its grown origins first (clones of its @final), and what a crash left of making
        // one; only those carrying vmpool's marker.
        let prefix = format!("{}-grown-", self.image(uuid));
        let children = libzfs::with(|lz| {
            lz.open(&format!("{}/images", self.ds), sys::ZFS_TYPE_FILESYSTEM)?
                .children()
        })?;
        for child in children.iter().filter(|c| c.starts_with(&prefix)) {
            let ours = libzfs::with(|lz| {
                lz.open(child, sys::ZFS_TYPE_VOLUME)?
                    .has_user_prop(GROWN_MARKER)
            });
            if matches!(ours, Ok(true)) {
                Self::destroy_volume(child)?;
            }
        }
        lock(&GROWN).retain(|snap, _| !snap.starts_with(&prefix));
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
        let reservation = if self.thick {
            // A failure to read these is an error: a guessed value would reserve the wrong
            // amount without a word.
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
            Some(volsize_to_reservation(size, volblocksize, copies))
        } else {
            None
        };
        // Growth and reservation go with the clone ioctl (libzfs_core, no process-wide lock),
        // so concurrent creates share transaction groups instead of queueing on libzfs.
        let props = |grow: bool| -> Result<Option<NvList>> {
            if !grow && reservation.is_none() {
                return Ok(None);
            }
            let mut p = NvList::new()?;
            if grow {
                p = p.uint64("volsize", size)?;
            }
            if let Some(r) = reservation {
                p = p.uint64("refreservation", r)?;
            }
            Ok(Some(p))
        };
        let from_image = format!("{}@final", self.image(&image.uuid));
        // A bigger disk is a clone of the image already grown to its size (made once per
        // size); only when that cannot be had is it grown by the clone's `volsize`.
        match (size > vsize)
            .then(|| self.grown_origin(image, size))
            .flatten()
        {
            Some(grown) => match libzfs::clone(&name, &grown, props(false)?.as_ref()) {
                // Gone (its image was deleted and imported again under the same uuid, by
                // another process): forget it, and grow this clone itself.
                Err(Error::NotFound { .. }) if !libzfs::exists(&grown)? => {
                    lock(&GROWN).remove(&grown);
                    libzfs::clone(&name, &from_image, props(true)?.as_ref())?;
                }
                r => r?,
            },
            None => libzfs::clone(&name, &from_image, props(size > vsize)?.as_ref())?,
        }
        Ok(VmDisk {
            path: zvol_path(&name),
            format: DiskFormat::Raw,
            size_bytes: size,
            method: CloneMethod::ZfsClone,
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
        let ours = actual
            .as_deref()
            .is_some_and(|a| a == origin || self.is_grown_origin(image, a));
        if !ours {
            return Ok(Destroyed::Foreign(format!(
                "{name} is not a clone of {origin} (origin {}); it was not made by this store",
                actual.unwrap_or_else(|| "none".into())
            )));
        }
        match destroy_waiting(&name) {
            Ok(()) => Ok(Destroyed::Removed),
            Err(Error::NotFound { .. }) => Ok(Destroyed::Absent),
            Err(e) => Err(e),
        }
    }
}
