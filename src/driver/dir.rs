//! `dir:/path` - plain files in a directory. A VM disk is a reflink of the image where the
//! file system can share extents (XFS, btrfs), otherwise a qcow2 overlay backed by the image.
//!
//! Layout:
//! ```text
//! <root>/images/<uuid>.raw|.qcow2           image data, mode 0444
//! <root>/images/<uuid>-partial.raw|.qcow2   an import in progress
//! <root>/vms/<uuid>-disk0.raw|.qcow2        VM disk, next to its record <uuid>.json
//! ```

use super::{reflink, StorageDriver, VmDisk};
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::image::qcow2;
use crate::image::{DiskFormat, Manifest};
use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use uuid::Uuid;

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
}

const REFLINK_UNKNOWN: u8 = 0;
const REFLINK_YES: u8 = 1;
const REFLINK_NO: u8 = 2;

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

impl DirDriver {
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
    fn try_reflink(&self, image: &Manifest, vm: &Uuid, size: u64) -> Result<Option<VmDisk>> {
        if image.disk_format != DiskFormat::Raw || self.mode == CloneMode::Qcow2 {
            return Ok(None);
        }
        if self.mode == CloneMode::Auto && self.reflink.load(Ordering::Relaxed) == REFLINK_NO {
            return Ok(None);
        }
        let src_path = self.image_path(&image.uuid, DiskFormat::Raw);
        let src = File::open(&src_path).ctx(|| format!("opening image {}", src_path.display()))?;
        let dst_path = self.disk_path(vm, DiskFormat::Raw);
        let dst = fsutil::create_new(&dst_path)?;
        let res = (|| {
            match reflink::clone_file(&src, &dst) {
                Ok(()) => {}
                Err(e) if reflink::unsupported(e) && self.mode == CloneMode::Auto => {
                    self.reflink.store(REFLINK_NO, Ordering::Relaxed);
                    return Ok(false);
                }
                Err(e) if reflink::unsupported(e) => {
                    return Err(Error::Unsupported(format!(
                        "store uses clone=reflink but {} cannot reflink ({e}); use XFS with reflink=1 or btrfs, or clone=auto",
                        self.root.display()
                    )))
                }
                Err(e) => return Err(e).ctx(|| format!("FICLONE {} -> {}", src_path.display(), dst_path.display())),
            }
            self.reflink.store(REFLINK_YES, Ordering::Relaxed);
            if size > image.size_bytes {
                dst.set_len(size)
                    .ctx(|| format!("growing {}", dst_path.display()))?;
            }
            dst.sync_all()
                .ctx(|| format!("syncing {}", dst_path.display()))?;
            Ok(true)
        })();
        match res {
            Ok(true) => Ok(Some(VmDisk {
                path: dst_path.to_string_lossy().into_owned(),
                format: DiskFormat::Raw,
                size_bytes: size.max(image.size_bytes),
                method: "reflink",
            })),
            Ok(false) => {
                fsutil::remove_file_if_exists(&dst_path)?;
                Ok(None)
            }
            Err(e) => {
                let _ = fs::remove_file(&dst_path);
                Err(e)
            }
        }
    }
}

impl StorageDriver for DirDriver {
    fn kind(&self) -> &'static str {
        "dir"
    }

    fn describe(&self) -> serde_json::Value {
        let reflink = match self.reflink.load(Ordering::Relaxed) {
            REFLINK_YES => serde_json::Value::Bool(true),
            REFLINK_NO => serde_json::Value::Bool(false),
            _ => serde_json::Value::Null,
        };
        serde_json::json!({
            "root": self.root,
            "clone": match self.mode { CloneMode::Auto => "auto", CloneMode::Reflink => "reflink", CloneMode::Qcow2 => "qcow2" },
            "reflink": reflink,
        })
    }

    fn catalog_dir(&self) -> &Path {
        &self.root
    }

    fn keeps(&self, _format: DiskFormat) -> bool {
        true
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
        if let Err(e) = f.set_len(size).ctx(|| format!("sizing {}", path.display())) {
            let _ = fs::remove_file(&path);
            return Err(e);
        }
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

    fn vm_clone(&self, image: &Manifest, vm: &Uuid, size: u64) -> Result<VmDisk> {
        if let Some(disk) = self.try_reflink(image, vm, size)? {
            return Ok(disk);
        }
        let path = self.disk_path(vm, DiskFormat::Qcow2);
        // Relative, so the store can be moved or mounted elsewhere.
        let backing = format!("../images/{}.{}", image.uuid, ext(image.disk_format));
        let size = size.max(image.size_bytes);
        let f = qcow2::create_overlay(&path, &backing, image.disk_format, size)?;
        if let Err(e) = f.sync_all().ctx(|| format!("syncing {}", path.display())) {
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        Ok(VmDisk {
            path: path.to_string_lossy().into_owned(),
            format: DiskFormat::Qcow2,
            size_bytes: size,
            method: "qcow2-overlay",
        })
    }

    fn vm_destroy(&self, vm: &Uuid, _image: &Uuid, _image_format: DiskFormat) -> Result<bool> {
        let mut removed = false;
        for f in [DiskFormat::Raw, DiskFormat::Qcow2] {
            removed |= fsutil::remove_file_if_exists(&self.disk_path(vm, f))?;
        }
        Ok(removed)
    }
}
