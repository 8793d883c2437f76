//! Home volumes: one disk per owner per store that outlives their desktops.
//!
//! A home is a copy-on-write clone of the store's blank image (made by the driver exactly as a
//! VM disk is: a zvol clone, a btrfs snapshot, a reflink or a qcow2 overlay), grown to its
//! size, recorded in `homes/<owner>.json`. It is hot-plugged into the owner's desktop when a
//! pool hands one out (module `attach`); the guest formats it on its first use and mounts it at
//! `/home/<login>`. Pool operations, releases and crash recovery never remove one: only
//! [`Store::delete_home`] does. Design notes: `docs/homes.md`.

pub mod attach;
mod blank;

pub use blank::BLANK_UUID;

use crate::driver::Destroyed;
use crate::error::{Error, Result};
use crate::fail_point;
use crate::image::DiskFormat;
use crate::lock::{self, Mode};
use crate::store::catalog::records::{HomeRecord, SCHEMA};
use crate::store::journal::{Durability, Op};
use crate::store::Store;
use crate::validate;
use uuid::Uuid;

/// Smallest home volume, bytes.
pub const MIN_BYTES: u64 = 64 << 20;

/// An owner's home volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    /// Whose it is.
    pub owner: String,
    /// The volume's id.
    pub uuid: Uuid,
    /// Its size in bytes.
    pub size_bytes: u64,
    /// Where the driver keeps it.
    pub disk_path: String,
    /// Its format.
    pub disk_format: DiskFormat,
    /// How it was made (`clone_method` of VMs: `zfs-clone`, `btrfs-snapshot`, ...).
    pub clone_method: String,
    /// When it was made.
    pub created_at: String,
    /// The running VM it is attached to, if any.
    pub attached_to: Option<Uuid>,
}

impl Store {
    fn home_from(&self, r: &HomeRecord) -> Home {
        Home {
            owner: r.owner.clone(),
            uuid: r.uuid,
            size_bytes: r.size_bytes,
            disk_path: r.disk_path.clone(),
            disk_format: r.disk_format,
            clone_method: r.clone_method.clone(),
            created_at: r.created_at.clone(),
            attached_to: r.attached_to.filter(|v| self.runs(*v)),
        }
    }

    /// Whether VM `v` exists and holds its home: its QEMU runs (starting, running, paused
    /// or stopping), or it is suspended.
    pub(crate) fn runs(&self, v: Uuid) -> bool {
        // A suspended VM keeps its claim: its saved state has the home mounted.
        self.vm(v)
            .is_ok_and(|vm| vm.state.is_active() || vm.state == crate::vm::State::Suspended)
    }

    pub(crate) fn home_lock(&self, owner: &str) -> Result<lock::Held> {
        lock::lock(&self.catalog.home_lock_path(owner), Mode::Exclusive)
    }

    fn home_size(&self, size_bytes: u64) -> Result<u64> {
        let max = self.limits.max_disk_gib << 30;
        if size_bytes < MIN_BYTES || size_bytes > max {
            return Err(Error::invalid(format!(
                "home size {size_bytes} bytes is out of range: {MIN_BYTES} bytes to the store's max_disk_gib ({max} bytes)"
            )));
        }
        Ok(size_bytes.div_ceil(1 << 20) << 20)
    }

    /// Make `owner`'s home volume, `size_bytes` (at least 64 MiB, at most the store's
    /// `max_disk_gib`; rounded up to MiB). `AlreadyExists` if they have one.
    pub fn create_home(&self, owner: &str, size_bytes: u64) -> Result<Home> {
        crate::probes::op("home-create", owner, || {
            self.create_home_op(owner, size_bytes)
        })
    }

    fn create_home_op(&self, owner: &str, size_bytes: u64) -> Result<Home> {
        validate::name("owner", owner)?;
        let size = self.home_size(size_bytes)?;
        let _l = self.home_lock(owner)?;
        self.create_home_locked(owner, size)
            .map(|r| self.home_from(&r))
    }

    /// `create_home` with the owner's home lock held.
    pub(crate) fn create_home_locked(&self, owner: &str, size: u64) -> Result<HomeRecord> {
        if self.catalog.home(owner)?.is_some() {
            return Err(Error::AlreadyExists(format!(
                "{owner} already has a home volume"
            )));
        }
        self.blank_image()?;
        // Shared: the blank image cannot be deleted under us from here on.
        let _shared = self.lock(Mode::Shared)?;
        let image = self.blank_image_checked()?;
        let uuid = Uuid::new_v4();
        let entry = self.begin(
            Op::HomeCreate {
                owner: owner.to_owned(),
                uuid,
                image_uuid: image.uuid,
            },
            Durability::Now,
            |pid| Error::Busy(format!("{owner}'s home is being changed by process {pid}")),
        )?;
        self.run_journalled(entry, |revert| {
            fail_point!("home_create.journaled");
            let disk = self.driver.vm_clone(&image, &uuid, size)?;
            revert.add(format!("remove {owner}'s new home volume"), || {
                match self.driver.vm_destroy(&uuid, &image.uuid)? {
                    Destroyed::Foreign(what) => Err(Error::Internal(format!(
                        "the home volume just cloned does not look like a clone: {what}"
                    ))),
                    Destroyed::Removed | Destroyed::Absent => Ok(()),
                }
            });
            // The owner's files: for nobody else on this host to read (a zvol's node is
            // root's and the disk group's already).
            if !disk.path.starts_with("/dev/") {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&disk.path, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| Error::Io {
                        context: format!("making {} private", disk.path),
                        source: e,
                    })?;
            }
            fail_point!("home_create.cloned");
            let rec = HomeRecord {
                schema: SCHEMA,
                owner: owner.to_owned(),
                uuid,
                image_uuid: image.uuid,
                disk_path: disk.path,
                disk_format: disk.format,
                size_bytes: disk.size_bytes,
                clone_method: disk.method.as_str().to_owned(),
                created_at: crate::now_rfc3339(),
                attached_to: None,
                extra: Default::default(),
            };
            revert.add(format!("remove {owner}'s home record"), || {
                self.catalog.remove_home(owner).map(drop)
            });
            self.catalog.put_home(&rec)?;
            Ok(rec)
        })
    }

    /// `owner`'s home volume.
    pub fn home(&self, owner: &str) -> Result<Home> {
        validate::name("owner", owner)?;
        self.catalog
            .home(owner)?
            .map(|r| self.home_from(&r))
            .ok_or_else(|| Error::not_found("home volume of owner", owner.to_owned()))
    }

    /// Every home volume of the store, by owner.
    pub fn homes(&self) -> Result<Vec<Home>> {
        Ok(self
            .catalog
            .homes()?
            .iter()
            .map(|r| self.home_from(r))
            .collect())
    }

    /// Grow `owner`'s home to `size_bytes` (never shrinks: smaller is refused), while no
    /// running VM has it; the guest grows its file system at the next attach.
    pub fn resize_home(&self, owner: &str, size_bytes: u64) -> Result<Home> {
        validate::name("owner", owner)?;
        let size = self.home_size(size_bytes)?;
        let _l = self.home_lock(owner)?;
        let mut r = self
            .catalog
            .home(owner)?
            .ok_or_else(|| Error::not_found("home volume of owner", owner.to_owned()))?;
        if size < r.size_bytes {
            return Err(Error::invalid(format!(
                "{owner}'s home is {} bytes; homes only grow (asked for {size})",
                r.size_bytes
            )));
        }
        self.not_in_use(&r)?;
        if size > r.size_bytes {
            r.size_bytes = self
                .driver
                .vm_grow(&r.uuid, &r.disk_path, r.disk_format, size)?;
            self.catalog.put_home(&r)?;
        }
        Ok(self.home_from(&r))
    }

    /// Delete `owner`'s home volume and everything on it; refused while a running VM has it.
    pub fn delete_home(&self, owner: &str) -> Result<()> {
        crate::probes::op("home-delete", owner, || self.delete_home_op(owner))
    }

    fn delete_home_op(&self, owner: &str) -> Result<()> {
        validate::name("owner", owner)?;
        let _l = self.home_lock(owner)?;
        let r = self
            .catalog
            .home(owner)?
            .ok_or_else(|| Error::not_found("home volume of owner", owner.to_owned()))?;
        self.not_in_use(&r)?;
        let _shared = self.lock(Mode::Shared)?;
        let entry = self.begin(
            Op::HomeDelete {
                owner: owner.to_owned(),
                uuid: r.uuid,
                image_uuid: r.image_uuid,
            },
            Durability::Now,
            |pid| Error::Busy(format!("{owner}'s home is being changed by process {pid}")),
        )?;
        fail_point!("home_delete.journaled");
        self.catalog.remove_home(owner)?;
        fail_point!("home_delete.unlisted");
        if let Destroyed::Foreign(what) = self.driver.vm_destroy(&r.uuid, &r.image_uuid)? {
            eprintln!("vmpool: {owner}'s home: left untouched: {what}");
        }
        entry.finish()
    }

    fn not_in_use(&self, r: &HomeRecord) -> Result<()> {
        match r.attached_to.filter(|v| self.runs(*v)) {
            Some(v) => Err(Error::InUse(format!(
                "{}'s home is attached to running VM {v}; release or stop that VM first",
                r.owner
            ))),
            None => Ok(()),
        }
    }
}
