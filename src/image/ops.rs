//! Image operations of a store (imgadm's import, list, get, delete).

use crate::error::{Error, IoContext, Result};
use crate::fail_point;
use crate::image::{format, import, qcow2, DiskFormat, Image, ImportRequest};
use crate::lock::Mode;
use crate::store::catalog::records::ImageRecord;
use crate::store::journal::{Durability, Op};
use crate::store::Store;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::path::Path;
use uuid::Uuid;

/// Open an image source for reading: only a regular file or a block device. Opened
/// non-blocking and checked with fstat before any read, so a FIFO, a socket, a terminal or a
/// directory is refused at once instead of blocking the caller forever.
fn open_source(path: &Path) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let src = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::not_found("file", path.display().to_string()))
        }
        // A socket cannot be opened at all: say what it is, not the errno.
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
            let md = std::fs::metadata(path).ctx(|| format!("stat {}", path.display()))?;
            return Err(not_importable(path, md.file_type()));
        }
        Err(e) => return Err(e).ctx(|| format!("opening {}", path.display())),
    };
    let t = src
        .metadata()
        .ctx(|| format!("stat {}", path.display()))?
        .file_type();
    if t.is_file() || std::os::unix::fs::FileTypeExt::is_block_device(&t) {
        Ok(src)
    } else {
        Err(not_importable(path, t))
    }
}

fn not_importable(path: &Path, t: std::fs::FileType) -> Error {
    use std::os::unix::fs::FileTypeExt;
    let what = if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else {
        "not a regular file"
    };
    Error::invalid(format!(
        "{} is {what}; import a regular file or a block device",
        path.display()
    ))
}

/// Progress of a long call: `(bytes done, bytes total)`; return `false` to cancel.
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64) -> bool;

impl Store {
    /// Import the raw or qcow2 file at `path` as a read-only image, as `req` says (every
    /// field optional; sha256, format and size_bytes are verified against the file).
    /// `progress` is called as bytes are copied and may cancel.
    pub fn import_image(
        &self,
        path: &Path,
        req: &ImportRequest,
        progress: Option<Progress>,
    ) -> Result<Image> {
        crate::probes::op("image-import", path.display(), || {
            self.import_image_op(path, req, progress)
        })
    }

    fn import_image_op(
        &self,
        path: &Path,
        req: &ImportRequest,
        progress: Option<Progress>,
    ) -> Result<Image> {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let v = req.validated(&stem)?;

        let src = open_source(path)?;
        let probe = format::probe(&src, v.format)?;
        self.limits.image_bytes(probe.virtual_size)?;
        if let Some(expected) = v.size_bytes {
            if expected != probe.virtual_size {
                return Err(Error::CorruptImage(format!(
                    "{} has a virtual size of {} bytes but the manifest says {expected} (truncated or the wrong file?)",
                    path.display(),
                    probe.virtual_size
                )));
            }
        }
        if probe.format == DiskFormat::Qcow2 {
            qcow2::Image::open(&src)?.check()?;
        }
        let exists = |uuid| Error::AlreadyExists(format!("image {uuid} already exists"));
        if self.catalog.image(&v.uuid)?.is_some() {
            return Err(exists(v.uuid));
        }

        let stored = if self.driver.keeps(probe.format) {
            probe.format
        } else {
            DiskFormat::Raw
        };
        let token = crate::fsutil::token();
        let entry = self.begin(
            Op::ImageImport {
                uuid: v.uuid,
                token: token.clone(),
                format: stored,
            },
            Durability::Now,
            |pid| {
                Error::AlreadyExists(format!(
                    "image {} is being imported by process {pid}",
                    v.uuid
                ))
            },
        )?;
        if self.catalog.image(&v.uuid)?.is_some() {
            entry.finish()?;
            return Err(exists(v.uuid));
        }

        let mut progress = progress;
        let total = if stored == probe.format {
            probe.file_size
        } else {
            probe.file_size + probe.virtual_size
        };
        let mut report = |done: u64| -> Result<()> {
            match progress.as_mut() {
                Some(p) => {
                    if p(done.min(total), total) {
                        Ok(())
                    } else {
                        Err(Error::Cancelled)
                    }
                }
                None => Ok(()),
            }
        };

        let stored_size = if stored == probe.format {
            probe.file_size
        } else {
            probe.virtual_size
        };
        self.run_journalled(entry, |revert| {
            // A staging name that was taken is not ours: the driver fails without touching
            // it, and only after success is there something to undo.
            let target = self
                .driver
                .image_stage(&v.uuid, &token, stored, stored_size)?;
            revert.add(format!("discard the volumes of import {}", v.uuid), || {
                self.driver.image_discard(&v.uuid, &token, stored).map(drop)
            });
            fail_point!("import.staged");
            let mut hasher = Sha256::new();
            if stored == probe.format {
                import::copy_sparse(
                    &src,
                    Some(&target),
                    probe.file_size,
                    &mut hasher,
                    &mut report,
                )?;
            } else {
                import::copy_sparse(&src, None, probe.file_size, &mut hasher, &mut report)?;
                let base = probe.file_size;
                qcow2::Image::open(&src)?.expand_to(&target, &mut |d| report(base + d))?;
            }
            fail_point!("import.copied");
            let actual = import::hex(&hasher.finalize());
            if let Some(expected) = &v.sha256 {
                if *expected != actual {
                    return Err(Error::ChecksumMismatch {
                        expected: expected.clone(),
                        actual,
                    });
                }
            }
            target
                .sync_all()
                .ctx(|| format!("syncing image {}", v.uuid))?;
            drop(target);
            let disk = self.driver.image_seal(&v.uuid, &token, stored)?;
            fail_point!("import.sealed");
            let image = Image {
                uuid: v.uuid,
                name: v.name.clone(),
                version: v.version.clone(),
                os: v.os.clone(),
                format: probe.format,
                size_bytes: probe.virtual_size,
                sha256: actual,
                created_at: crate::now_rfc3339(),
                tags: v.tags.clone(),
                disk_format: stored,
                disk,
            };
            // We hold this uuid's journal key, so a manifest under it is ours to remove; the
            // undo goes first because a write that fails after its rename leaves the file.
            revert.add(format!("remove the manifest of image {}", v.uuid), || {
                self.catalog.remove_image(&v.uuid).map(drop)
            });
            self.catalog.put_image(&ImageRecord::from(&image))?;
            fail_point!("import.recorded");
            Ok(image)
        })
    }

    /// All images, by name, then version, then creation time.
    pub fn images(&self) -> Result<Vec<Image>> {
        // Pools' memory templates are theirs, not images to pick.
        Ok(self
            .catalog
            .images()?
            .iter()
            .filter(|r| r.template_of.is_none())
            .map(Image::from)
            .collect())
    }

    /// One image.
    pub fn image(&self, uuid: Uuid) -> Result<Image> {
        self.catalog
            .image(&uuid)?
            .map(|r| Image::from(&r))
            .ok_or_else(|| Error::not_found("image", uuid.to_string()))
    }

    /// A string tag of an image (`on_clone`, `on_home`, `cloud_init`), if it has it.
    pub(crate) fn image_tag(&self, image: Uuid, tag: &str) -> Option<String> {
        self.image(image)
            .ok()?
            .tags
            .get(tag)?
            .as_str()
            .map(str::to_owned)
    }

    /// Delete an image. Refused while any VM's disk is a clone of it, a pool makes VMs of
    /// it, or a pool's memory template was made from it; the error names them.
    pub fn delete_image(&self, u: Uuid) -> Result<()> {
        self.delete_image_as(u, false)
    }

    /// `delete_image`; `template`: a pool removing its own memory template image.
    pub(crate) fn delete_image_as(&self, u: Uuid, template: bool) -> Result<()> {
        // Exclusive: no VM can be created from (or deleted off) this image meanwhile.
        let _excl = self.lock(Mode::Exclusive)?;
        let m = self
            .catalog
            .image(&u)?
            .ok_or_else(|| Error::not_found("image", u.to_string()))?;
        if let (Some(pool), false) = (&m.template_of, template) {
            return Err(Error::InUse(format!(
                "image {u} is the memory template of pool {pool}; it is removed with the template (when the pool changes image or flavor, or is deleted)"
            )));
        }
        if let Some(p) = self
            .catalog
            .pools()?
            .into_iter()
            .find(|p| p.spec.image_uuid == u)
        {
            return Err(Error::InUse(format!(
                "image {u} is used by pool {}; change the pool's image or delete the pool first",
                p.spec.name
            )));
        }
        if let Some(child) = self
            .catalog
            .images()?
            .into_iter()
            .find(|i| i.parent == Some(u))
        {
            return Err(Error::InUse(format!(
                "image {u} has a derived image {} (the memory template of pool {}); it goes when that pool's VMs made from it are gone",
                child.uuid,
                child.template_of.as_deref().unwrap_or("?")
            )));
        }
        if let Some(h) = self
            .catalog
            .homes()?
            .into_iter()
            .find(|h| h.image_uuid == u)
        {
            return Err(Error::InUse(format!(
                "image {u} is what home volumes are cloned from ({}'s, and maybe others); delete those homes first",
                h.owner
            )));
        }
        self.recover_locked()?;
        let users = self
            .catalog
            .vms(None)?
            .into_iter()
            .filter(|r| r.image_uuid == u)
            .collect::<Vec<_>>();
        if !users.is_empty() {
            let names: Vec<String> = users
                .iter()
                .take(20)
                .map(|r| format!("{} ({})", r.uuid, r.alias))
                .collect();
            let more = if users.len() > 20 {
                format!(" and {} more", users.len() - 20)
            } else {
                String::new()
            };
            return Err(Error::InUse(format!(
                "image {u} is used by {} VM(s): {}{more}; delete those VMs first",
                users.len(),
                names.join(", ")
            )));
        }
        // The manifest itself becomes the journal entry (a link: works on a full disk).
        let entry = self.begin_delete(
            &format!("image-{u}"),
            &self.catalog.image_path(&u),
            |pid| Error::Busy(format!("image {u} is being changed by process {pid}")),
            || Error::not_found("image", u.to_string()),
        )?;
        fail_point!("image_delete.journaled");
        self.catalog.remove_image(&u)?;
        fail_point!("image_delete.unlisted");
        self.driver.image_destroy(&u, m.disk_format)?;
        entry.finish()
    }
}
