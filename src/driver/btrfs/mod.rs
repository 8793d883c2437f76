//! `btrfs:/mountpoint/path` - one subvolume per image and per VM, clones by snapshot ioctl.
//!
//! Layout:
//! ```text
//! <root>/images/<uuid>-partial/disk.raw   import in progress (a writable subvolume)
//! <root>/images/<uuid>/disk.raw           image (read-only subvolume)
//! <root>/vms/<uuid>/disk.raw              VM disk: writable snapshot of the image, grown
//! ```
//! Images are kept raw (a qcow2 is expanded at import) so the snapshot is the whole clone.
//! A VM subvolume is known to be ours when it is a snapshot of its image's subvolume (its
//! `parent_uuid` is the image's uuid, from `BTRFS_IOC_GET_SUBVOL_INFO`).

pub mod sys;

use super::registry::{unknown_option, Capabilities, Claim, DiskKind, DriverInfo, Target};
use super::{CloneMethod, Destroyed, Detail, StorageDriver, VmDisk};
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::image::{DiskFormat, Image};
use crate::revert::Revert;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// The registry entry.
pub static INFO: DriverInfo = DriverInfo {
    scheme: "btrfs",
    summary: "a btrfs subvolume per image and per VM; clones are snapshots",
    target: super::TargetKind::Path,
    caps: Capabilities {
        clone_methods: &[CloneMethod::BtrfsSnapshot],
        keeps_qcow2: false,
        thick: false,
        disk_kind: DiskKind::File,
        clone_syncs_catalog: false,
        options: &[],
    },
    open,
};

fn open(target: &Target, opts: &[(&str, &str)], claim: Claim) -> Result<Box<dyn StorageDriver>> {
    let Target::Path(root) = target else {
        return Err(Error::Internal("btrfs: driver given a dataset".into()));
    };
    if let Some((k, _)) = opts.first() {
        return Err(unknown_option(k, &INFO));
    }
    check_btrfs(root)?;
    claim(root)?;
    Ok(Box::new(BtrfsDriver::open(root)?))
}

const DISK: &str = "disk.raw";

fn name_field<const N: usize>(name: &str) -> Result<[u8; N]> {
    let b = name.as_bytes();
    if b.is_empty() || b.len() >= N || b.contains(&0) || b.contains(&b'/') {
        return Err(Error::Internal(format!("bad subvolume name {name:?}")));
    }
    let mut out = [0u8; N];
    out[..b.len()].copy_from_slice(b);
    Ok(out)
}

fn open_dir(p: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(p)
        .ctx(|| format!("opening {}", p.display()))
}

fn ioctl_err(what: &str, path: &Path, e: nix::errno::Errno) -> Error {
    match e {
        nix::errno::Errno::EEXIST => {
            Error::AlreadyExists(format!("{} already exists", path.display()))
        }
        nix::errno::Errno::ENOSPC => Error::Io {
            context: format!("{what} {}", path.display()),
            source: e.into(),
        },
        _ => Error::Backend(format!(
            "btrfs {what} {}: {e} ({})",
            path.display(),
            e.desc()
        )),
    }
}

/// Create an empty subvolume `parent/name`.
pub fn subvol_create(parent: &Path, name: &str) -> Result<()> {
    let dir = open_dir(parent)?;
    let args = sys::btrfs_ioctl_vol_args {
        fd: 0,
        name: name_field(name)?,
    };
    // SAFETY: dir is an open directory; args is a fully initialised vol_args of the size the
    // ioctl number encodes (checked at compile time in sys.rs).
    unsafe { sys::btrfs_ioc_subvol_create(dir.as_raw_fd(), &args) }
        .map(drop)
        .map_err(|e| ioctl_err("subvolume create", &parent.join(name), e))
}

/// Snapshot subvolume `src` as `parent/name` (writable unless `readonly`).
pub fn snapshot(src: &Path, parent: &Path, name: &str, readonly: bool) -> Result<()> {
    let s = open_dir(src)?;
    let dir = open_dir(parent)?;
    let args = sys::btrfs_ioctl_vol_args_v2 {
        fd: s.as_raw_fd() as i64,
        transid: 0,
        flags: if readonly {
            sys::BTRFS_SUBVOL_RDONLY
        } else {
            0
        },
        unused: [0; 4],
        name: name_field(name)?,
    };
    // SAFETY: dir and s are open directories for the call; args is fully initialised and of
    // the size the ioctl number encodes.
    unsafe { sys::btrfs_ioc_snap_create_v2(dir.as_raw_fd(), &args) }
        .map(drop)
        .map_err(|e| ioctl_err("snapshot", &parent.join(name), e))
}

/// Delete subvolume `parent/name`; `Ok(false)` if it does not exist.
pub fn subvol_destroy(parent: &Path, name: &str) -> Result<bool> {
    if !parent.join(name).exists() {
        return Ok(false);
    }
    let dir = open_dir(parent)?;
    let args = sys::btrfs_ioctl_vol_args {
        fd: 0,
        name: name_field(name)?,
    };
    // SAFETY: dir is an open directory; args is fully initialised.
    match unsafe { sys::btrfs_ioc_snap_destroy(dir.as_raw_fd(), &args) } {
        Ok(_) => Ok(true),
        Err(nix::errno::Errno::ENOENT) => Ok(false),
        Err(e) => Err(ioctl_err("subvolume delete", &parent.join(name), e)),
    }
}

/// Mark a subvolume read-only (or writable again).
pub fn set_readonly(subvol: &Path, ro: bool) -> Result<()> {
    let dir = open_dir(subvol)?;
    let mut flags = 0u64;
    // SAFETY: dir is open; flags is a valid u64 for the kernel to write.
    unsafe { sys::btrfs_ioc_subvol_getflags(dir.as_raw_fd(), &mut flags) }
        .map_err(|e| ioctl_err("get flags of", subvol, e))?;
    flags = if ro {
        flags | sys::BTRFS_SUBVOL_RDONLY
    } else {
        flags & !sys::BTRFS_SUBVOL_RDONLY
    };
    // SAFETY: dir is open; flags is a valid u64 for the kernel to read.
    unsafe { sys::btrfs_ioc_subvol_setflags(dir.as_raw_fd(), &flags) }
        .map(drop)
        .map_err(|e| ioctl_err("set flags of", subvol, e))
}

/// A subvolume's own uuid and the uuid of the subvolume it is a snapshot of (zero if none).
pub fn subvol_uuids(subvol: &Path) -> Result<([u8; 16], [u8; 16])> {
    let dir = open_dir(subvol)?;
    // SAFETY: all-zero bytes are a valid value of this plain-integer struct.
    let mut info: sys::btrfs_ioctl_get_subvol_info_args = unsafe { std::mem::zeroed() };
    // SAFETY: dir is open; info is a writable struct of the size the ioctl number encodes.
    unsafe { sys::btrfs_ioc_get_subvol_info(dir.as_raw_fd(), &mut info) }
        .map_err(|e| ioctl_err("get subvolume info of", subvol, e))?;
    Ok((info.uuid, info.parent_uuid))
}

/// Refuse a root that is not on btrfs (looking at the nearest existing ancestor).
pub fn check_btrfs(root: &Path) -> Result<()> {
    let mut p = root;
    while !p.exists() {
        p = p.parent().unwrap_or(Path::new("/"));
    }
    let magic = fsutil::fs_magic(p)?;
    if magic != sys::BTRFS_SUPER_MAGIC {
        return Err(Error::Unsupported(format!(
            "btrfs: {} is not on a btrfs file system (f_type {magic:#x})",
            p.display()
        )));
    }
    Ok(())
}

/// A btrfs store's driver.
#[derive(Debug)]
pub struct BtrfsDriver {
    root: PathBuf,
    images: PathBuf,
    vms: PathBuf,
}

impl BtrfsDriver {
    /// Open the driver on `root` (already claimed as a store).
    pub fn open(root: &Path) -> Result<Self> {
        let d = BtrfsDriver {
            root: root.to_owned(),
            images: root.join("images"),
            vms: root.join("vms"),
        };
        fsutil::mkdirs(&d.images)?;
        fsutil::mkdirs(&d.vms)?;
        Ok(d)
    }

    fn staging(uuid: &Uuid) -> String {
        format!("{uuid}-partial")
    }
}

impl StorageDriver for BtrfsDriver {
    fn info(&self) -> &'static DriverInfo {
        &INFO
    }

    fn describe(&self) -> Vec<(&'static str, Detail)> {
        vec![("root", Detail::Path(self.root.clone()))]
    }

    fn catalog_dir(&self) -> &Path {
        &self.root
    }

    fn image_stage(
        &self,
        uuid: &Uuid,
        _token: &str,
        _format: DiskFormat,
        size: u64,
    ) -> Result<File> {
        let name = Self::staging(uuid);
        subvol_create(&self.images, &name)?;
        let mut revert = Revert::new();
        revert.add(format!("delete subvolume {name}"), || {
            subvol_destroy(&self.images, &name).map(drop)
        });
        let path = self.images.join(&name).join(DISK);
        let f = fsutil::create_new(&path)?;
        f.set_len(size)
            .ctx(|| format!("sizing {}", path.display()))?;
        revert.commit();
        Ok(f)
    }

    fn image_seal(&self, uuid: &Uuid, _token: &str, _format: DiskFormat) -> Result<String> {
        let staged = self.images.join(Self::staging(uuid));
        let fin = self.images.join(uuid.to_string());
        set_readonly(&staged, true)?;
        fsutil::rename_noreplace(&staged, &fin)?;
        fsutil::sync_dir(&self.images)?;
        Ok(fin.join(DISK).to_string_lossy().into_owned())
    }

    fn image_discard(&self, uuid: &Uuid, _token: &str, _format: DiskFormat) -> Result<Vec<String>> {
        // As in a dir store, the root is the store's; the caller discards only imports that
        // never got a manifest.
        let mut out = Vec::new();
        for name in [Self::staging(uuid), uuid.to_string()] {
            if subvol_destroy(&self.images, &name)? {
                out.push(self.images.join(name).display().to_string());
            }
        }
        Ok(out)
    }

    fn image_destroy(&self, uuid: &Uuid, _format: DiskFormat) -> Result<()> {
        subvol_destroy(&self.images, &uuid.to_string()).map(drop)
    }

    fn image_adopt(
        &self,
        vm: &Uuid,
        _format: DiskFormat,
        image: &Uuid,
        _token: &str,
    ) -> Result<()> {
        // A subvolume moves with rename(2); it stays a snapshot of the template's base image.
        fsutil::rename_noreplace(
            &self.vms.join(vm.to_string()),
            &self.images.join(Self::staging(image)),
        )?;
        fsutil::sync_dir(&self.images)?;
        fsutil::sync_dir(&self.vms)
    }

    fn vm_clone(&self, image: &Image, vm: &Uuid, size: u64) -> Result<VmDisk> {
        let name = vm.to_string();
        snapshot(
            &self.images.join(image.uuid.to_string()),
            &self.vms,
            &name,
            false,
        )?;
        let mut revert = Revert::new();
        revert.add(format!("delete subvolume {name}"), || {
            subvol_destroy(&self.vms, &name).map(drop)
        });
        let path = self.vms.join(&name).join(DISK);
        let size = size.max(image.size_bytes);
        let f = OpenOptions::new()
            .write(true)
            .open(&path)
            .ctx(|| format!("opening {}", path.display()))?;
        if size > image.size_bytes {
            f.set_len(size)
                .ctx(|| format!("growing {}", path.display()))?;
        }
        f.sync_all().ctx(|| format!("syncing {}", path.display()))?;
        revert.commit();
        Ok(VmDisk {
            path: path.to_string_lossy().into_owned(),
            format: DiskFormat::Raw,
            size_bytes: size,
            method: CloneMethod::BtrfsSnapshot,
        })
    }

    fn vm_grow(&self, vm: &Uuid, _path: &str, _format: DiskFormat, size: u64) -> Result<u64> {
        let path = self.vms.join(vm.to_string()).join(DISK);
        let f = OpenOptions::new()
            .write(true)
            .open(&path)
            .ctx(|| format!("opening {}", path.display()))?;
        f.set_len(size)
            .ctx(|| format!("growing {}", path.display()))?;
        f.sync_all().ctx(|| format!("syncing {}", path.display()))?;
        Ok(size)
    }

    fn vm_destroy(&self, vm: &Uuid, image: &Uuid) -> Result<Destroyed> {
        let name = vm.to_string();
        let path = self.vms.join(&name);
        if !path.exists() {
            return Ok(Destroyed::Absent);
        }
        let foreign = |why: String| {
            Ok(Destroyed::Foreign(format!(
                "{} {why}, so it is not a clone of image {image} made by this store",
                path.display()
            )))
        };
        let Ok((_, parent)) = subvol_uuids(&path) else {
            return foreign("is not a subvolume".into());
        };
        let image_path = self.images.join(image.to_string());
        let expected = match subvol_uuids(&image_path) {
            Ok((own, _)) => own,
            // The image is gone (deleted by hand?): we cannot prove the disk is its clone.
            Err(_) => {
                return foreign(format!(
                    "has no image {} to compare with",
                    image_path.display()
                ))
            }
        };
        if parent != expected {
            return foreign(format!("is a snapshot of {}", Uuid::from_bytes(parent)));
        }
        Ok(if subvol_destroy(&self.vms, &name)? {
            Destroyed::Removed
        } else {
            Destroyed::Absent
        })
    }
}
