//! `dir:/path` - plain files in a directory. A VM disk is a reflink of the image where the
//! file system can share extents (XFS, btrfs), otherwise a qcow2 overlay backed by the image.
//!
//! Layout:
//! ```text
//! <root>/images/<uuid>.raw|.qcow2           image data, mode 0444
//! <root>/images/<uuid>-partial.raw|.qcow2   an import in progress
//! <root>/vms/<uuid>-disk0.raw|.qcow2        VM disk, next to its record <uuid>.json
//! ```
//!
//! How a VM disk is known to be ours (a clone of its image) before it is removed: a qcow2
//! overlay names the image as its backing file; a reflinked raw disk carries the extended
//! attribute `user.vmpool.image` = the image's uuid, set before the disk is made durable.

use super::registry::{unknown_option, Capabilities, Claim, DiskKind, DriverInfo, Target};
use super::{reflink, CloneMethod, Destroyed, Detail, StorageDriver, VmDisk};
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::image::qcow2;
use crate::image::{DiskFormat, Image};
use crate::revert::Revert;
use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use uuid::Uuid;

/// The registry entry.
pub static INFO: DriverInfo = DriverInfo {
    scheme: "dir",
    summary: "plain files in a directory: reflinks where the file system can, else qcow2 overlays",
    target: super::TargetKind::Path,
    caps: Capabilities {
        clone_methods: &[CloneMethod::Reflink, CloneMethod::Qcow2Overlay],
        keeps_qcow2: true,
        thick: false,
        disk_kind: DiskKind::File,
        clone_syncs_catalog: false,
        options: &[(
            "clone",
            "auto (reflink where possible, else qcow2), reflink or qcow2",
        )],
    },
    open,
};

fn open(target: &Target, opts: &[(&str, &str)], claim: Claim) -> Result<Box<dyn StorageDriver>> {
    let Target::Path(root) = target else {
        return Err(Error::Internal("dir: driver given a dataset".into()));
    };
    let mut mode = CloneMode::Auto;
    for (k, v) in opts {
        match *k {
            "clone" => mode = CloneMode::parse(v)?,
            _ => return Err(unknown_option(k, &INFO)),
        }
    }
    claim(root)?;
    Ok(Box::new(DirDriver::open(root, mode)?))
}

/// Extended attribute naming the image a reflinked raw disk was cloned from.
const ORIGIN_XATTR: &str = "user.vmpool.image";

/// How a dir store makes VM disks (`?clone=` in the URI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloneMode {
    /// Reflink raw images where the file system allows, qcow2 overlay otherwise.
    Auto,
    /// Reflink only; refuse on file systems without it.
    Reflink,
    /// Always a qcow2 overlay.
    Qcow2,
}

impl CloneMode {
    /// Parse the `clone=` option.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(CloneMode::Auto),
            "reflink" => Ok(CloneMode::Reflink),
            "qcow2" => Ok(CloneMode::Qcow2),
            _ => Err(Error::invalid(format!(
                "store option clone={s:?}: expected auto, reflink or qcow2"
            ))),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            CloneMode::Auto => "auto",
            CloneMode::Reflink => "reflink",
            CloneMode::Qcow2 => "qcow2",
        }
    }
}

const REFLINK_UNKNOWN: u8 = 0;
const REFLINK_YES: u8 = 1;
const REFLINK_NO: u8 = 2;

/// A directory store's driver.
#[derive(Debug)]
pub struct DirDriver {
    root: PathBuf,
    mode: CloneMode,
    /// Learnt on the first clone: whether this file system reflinks.
    reflink: AtomicU8,
}

fn ext(f: DiskFormat) -> &'static str {
    f.as_str()
}

/// The backing file name a VM disk's overlay records for `image` (relative, so the store can
/// be moved or mounted elsewhere).
fn backing_name(image: &Uuid, f: DiskFormat) -> String {
    format!("../images/{image}.{}", ext(f))
}

impl DirDriver {
    /// Open the driver on `root` (already claimed as a store).
    pub fn open(root: &Path, mode: CloneMode) -> Result<Self> {
        fsutil::mkdirs(&root.join("images"))?;
        fsutil::mkdirs(&root.join("vms"))?;
        Ok(DirDriver {
            root: root.to_owned(),
            mode,
            reflink: AtomicU8::new(REFLINK_UNKNOWN),
        })
    }

    fn image_path(&self, uuid: &Uuid, f: DiskFormat) -> PathBuf {
        self.root.join("images").join(format!("{uuid}.{}", ext(f)))
    }

    fn staging_path(&self, uuid: &Uuid, f: DiskFormat) -> PathBuf {
        self.root
            .join("images")
            .join(format!("{uuid}-partial.{}", ext(f)))
    }

    fn disk_path(&self, vm: &Uuid, f: DiskFormat) -> PathBuf {
        self.root.join("vms").join(format!("{vm}-disk0.{}", ext(f)))
    }

    /// Try a reflink clone; `Ok(None)` when the file system cannot (and the mode allows a
    /// fallback).
    fn try_reflink(&self, image: &Image, vm: &Uuid, size: u64) -> Result<Option<VmDisk>> {
        if image.disk_format != DiskFormat::Raw || self.mode == CloneMode::Qcow2 {
            return Ok(None);
        }
        if self.mode == CloneMode::Auto && self.reflink.load(Ordering::Relaxed) == REFLINK_NO {
            return Ok(None);
        }
        let src_path = self.image_path(&image.uuid, DiskFormat::Raw);
        let src = File::open(&src_path).ctx(|| format!("opening image {}", src_path.display()))?;
        let dst_path = self.disk_path(vm, DiskFormat::Raw);
        // Made whole or not at all (an unnamed file, cloned, marked, grown, then linked in):
        // a create killed in between leaves nothing that recovery could not tell from a
        // foreign file, as the mark (the origin xattr) is on it before it has a name.
        let mut cannot: Option<nix::errno::Errno> = None;
        let made = fsutil::create_whole(&dst_path, |dst| {
            if let Err(e) = reflink::clone_file(&src, dst) {
                if reflink::unsupported(e) {
                    cannot = Some(e);
                }
                return Err(e)
                    .ctx(|| format!("FICLONE {} -> {}", src_path.display(), dst_path.display()));
            }
            fsutil::set_xattr(dst, ORIGIN_XATTR, image.uuid.to_string().as_bytes())
                .ctx(|| format!("marking {} as a clone", dst_path.display()))?;
            if size > image.size_bytes {
                dst.set_len(size)
                    .ctx(|| format!("growing {}", dst_path.display()))?;
            }
            Ok(())
        });
        match (made, cannot) {
            (Ok(_), _) => {}
            (Err(_), Some(_)) if self.mode == CloneMode::Auto => {
                self.reflink.store(REFLINK_NO, Ordering::Relaxed);
                return Ok(None);
            }
            (Err(_), Some(e)) => {
                return Err(Error::Unsupported(format!(
                    "store uses clone=reflink but {} cannot reflink ({e}); use XFS with reflink=1 or btrfs, or clone=auto",
                    self.root.display()
                )))
            }
            (Err(e), None) => return Err(e),
        }
        self.reflink.store(REFLINK_YES, Ordering::Relaxed);
        Ok(Some(VmDisk {
            path: dst_path.to_string_lossy().into_owned(),
            format: DiskFormat::Raw,
            size_bytes: size.max(image.size_bytes),
            method: CloneMethod::Reflink,
        }))
    }

    /// Whether the file at `path` is a clone of `image` made by this driver.
    fn is_clone_of(path: &Path, format: DiskFormat, image: &Uuid) -> Result<bool> {
        let f = File::open(path).ctx(|| format!("opening {}", path.display()))?;
        Ok(match format {
            DiskFormat::Qcow2 => {
                let backing = qcow2::backing_file(&f).ok().flatten();
                [DiskFormat::Raw, DiskFormat::Qcow2]
                    .iter()
                    .any(|bf| backing.as_deref() == Some(backing_name(image, *bf).as_str()))
            }
            DiskFormat::Raw => {
                fsutil::get_xattr(&f, ORIGIN_XATTR)
                    .ok()
                    .flatten()
                    .as_deref()
                    == Some(image.to_string().as_bytes())
            }
        })
    }
}

impl StorageDriver for DirDriver {
    fn info(&self) -> &'static DriverInfo {
        &INFO
    }

    fn describe(&self) -> Vec<(&'static str, Detail)> {
        let reflink = match self.reflink.load(Ordering::Relaxed) {
            REFLINK_YES => Detail::Bool(true),
            REFLINK_NO => Detail::Bool(false),
            _ => Detail::Unknown,
        };
        vec![
            ("root", Detail::Path(self.root.clone())),
            ("clone", Detail::Text(self.mode.as_str().into())),
            ("reflink", reflink),
        ]
    }

    fn catalog_dir(&self) -> &Path {
        &self.root
    }

    fn image_stage(
        &self,
        uuid: &Uuid,
        _token: &str,
        format: DiskFormat,
        size: u64,
    ) -> Result<File> {
        let path = self.staging_path(uuid, format);
        let f = fsutil::create_new(&path)?;
        let mut revert = Revert::new();
        revert.add(format!("remove {}", path.display()), || {
            fsutil::remove_file_if_exists(&path).map(drop)
        });
        f.set_len(size)
            .ctx(|| format!("sizing {}", path.display()))?;
        revert.commit();
        Ok(f)
    }

    fn image_seal(&self, uuid: &Uuid, _token: &str, format: DiskFormat) -> Result<String> {
        let staged = self.staging_path(uuid, format);
        let fin = self.image_path(uuid, format);
        fs::set_permissions(&staged, fs::Permissions::from_mode(0o444))
            .ctx(|| format!("chmod {}", staged.display()))?;
        // link + unlink instead of rename: link refuses to replace an existing file.
        fs::hard_link(&staged, &fin).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::AlreadyExists(format!("{} already exists", fin.display()))
            } else {
                Error::Io {
                    context: format!("linking {} to {}", staged.display(), fin.display()),
                    source: e,
                }
            }
        })?;
        fsutil::remove_file_if_exists(&staged)?;
        fsutil::sync_dir(&self.root.join("images"))?;
        Ok(fin.to_string_lossy().into_owned())
    }

    fn image_discard(&self, uuid: &Uuid, _token: &str, format: DiskFormat) -> Result<Vec<String>> {
        // Everything under the store's root is the store's; the caller only discards an import
        // whose manifest was never written, so a sealed file here is that import's.
        let mut out = Vec::new();
        for p in [
            self.staging_path(uuid, format),
            self.image_path(uuid, format),
        ] {
            if fsutil::remove_file_if_exists(&p)? {
                out.push(p.display().to_string());
            }
        }
        Ok(out)
    }

    fn image_destroy(&self, uuid: &Uuid, format: DiskFormat) -> Result<()> {
        fsutil::remove_file_if_exists(&self.image_path(uuid, format))?;
        fsutil::sync_dir(&self.root.join("images"))
    }

    fn image_adopt(&self, vm: &Uuid, format: DiskFormat, image: &Uuid, _token: &str) -> Result<()> {
        // A qcow2 overlay names its backing file `../images/<uuid>.<ext>`, which resolves the
        // same from images/ as from vms/.
        fsutil::rename_noreplace(
            &self.disk_path(vm, format),
            &self.staging_path(image, format),
        )?;
        fsutil::sync_dir(&self.root.join("images"))?;
        fsutil::sync_dir(&self.root.join("vms"))
    }

    fn vm_clone(&self, image: &Image, vm: &Uuid, size: u64) -> Result<VmDisk> {
        // A VM's disk name is `<uuid>-disk0` with either extension: both must be free, so
        // that nothing found there later can be mistaken for (or hide) this VM's disk. Two
        // creates of one uuid never race here (the journal key serialises them).
        for f in [DiskFormat::Raw, DiskFormat::Qcow2] {
            let p = self.disk_path(vm, f);
            if p.symlink_metadata().is_ok() {
                return Err(Error::AlreadyExists(format!(
                    "{} already exists",
                    p.display()
                )));
            }
        }
        if let Some(disk) = self.try_reflink(image, vm, size)? {
            return Ok(disk);
        }
        let path = self.disk_path(vm, DiskFormat::Qcow2);
        let size = size.max(image.size_bytes);
        let f = qcow2::create_overlay(
            &path,
            &backing_name(&image.uuid, image.disk_format),
            image.disk_format,
            size,
        )?;
        let mut revert = Revert::new();
        revert.add(format!("remove {}", path.display()), || {
            fsutil::remove_file_if_exists(&path).map(drop)
        });
        f.sync_all().ctx(|| format!("syncing {}", path.display()))?;
        revert.commit();
        Ok(VmDisk {
            path: path.to_string_lossy().into_owned(),
            format: DiskFormat::Qcow2,
            size_bytes: size,
            method: CloneMethod::Qcow2Overlay,
        })
    }

    fn vm_grow(&self, vm: &Uuid, _path: &str, format: DiskFormat, size: u64) -> Result<u64> {
        let path = self.disk_path(vm, format);
        match format {
            DiskFormat::Qcow2 => qcow2::grow_in_place(&path, size)?,
            DiskFormat::Raw => {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .ctx(|| format!("opening {}", path.display()))?;
                f.set_len(size)
                    .ctx(|| format!("growing {}", path.display()))?;
                f.sync_all().ctx(|| format!("syncing {}", path.display()))?;
            }
        }
        Ok(size)
    }

    fn vm_destroy(&self, vm: &Uuid, image: &Uuid) -> Result<Destroyed> {
        // Each name is judged on its own: ours is removed, anything else is left and reported.
        let (mut removed, mut foreign) = (false, Vec::new());
        for f in [DiskFormat::Raw, DiskFormat::Qcow2] {
            let p = self.disk_path(vm, f);
            if p.symlink_metadata().is_err() {
                continue;
            }
            if p.is_file() && Self::is_clone_of(&p, f, image)? {
                removed |= fsutil::remove_file_if_exists(&p)?;
            } else {
                foreign.push(format!(
                    "{} is not a clone of image {image} made by this store",
                    p.display()
                ));
            }
        }
        if removed {
            fsutil::sync_dir(&self.root.join("vms"))?;
        }
        Ok(match (removed, foreign.is_empty()) {
            (_, false) => Destroyed::Foreign(foreign.join("; ")),
            (true, true) => Destroyed::Removed,
            (false, true) => Destroyed::Absent,
        })
    }
}
