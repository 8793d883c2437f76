//! Giving a running desktop its owner's home: claim, hot-plug, mount.
//!
//! - **Claim**, under the owner's home lock: the home's record names the VM it is attached
//!   to. A home attached to another VM that still runs is refused by name (`InUse`): a home
//!   is in at most one running VM. A claim naming a VM that no longer runs (released,
//!   stopped, killed, crashed) is stale and is simply replaced, so nothing needs cleaning
//!   after a crash and recovery never touches a home.
//! - **Hot-plug**: vmpool opens the volume (root's store, never a path another uid can
//!   write) and hands QEMU the descriptor (`add-fd`), then `blockdev-add` over
//!   `/dev/fdset/N` and `device_add` of a virtio disk with serial `vmpool-home` into the
//!   port every VM has for it. QEMU in its zone opens nothing by name. The same for a VM
//!   booted from disk (plugged as it boots) and for a memory-template clone (its device state
//!   has no home: it is plugged after the restore).
//! - **Mount**: the guest formats a blank home on first use and mounts it at
//!   `/home/<login>`: at boot through a udev rule, and for a clone that already runs through
//!   the guest agent (the image's `on_home` program), so `acquire` returns once it is there.

use crate::error::{Error, Result};
use crate::fail_point;
use crate::store::catalog::records::HomeRecord;
use crate::store::Store;
use crate::vm::qemu::HOME_PORT;
use std::fs::OpenOptions;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::time::Duration;
use uuid::Uuid;

/// The image tag naming the guest program that mounts a home (`/usr/lib/vmpool/attach-home`).
pub const ON_HOME_TAG: &str = "on_home";
/// QEMU's id of the home disk device.
pub const HOME_DEVICE: &str = "home";
/// QEMU's block node of the home disk.
const HOME_NODE: &str = "home-node";
/// The serial the guest sees (`/dev/disk/by-id/virtio-vmpool-home`).
pub const HOME_SERIAL: &str = "vmpool-home";
/// Longest the guest's mount may take (its first attach formats the volume).
const MOUNT_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest a release waits for the guest to write the home's pages out.
const SYNC_TIMEOUT: Duration = Duration::from_secs(5);

impl Store {
    /// Refuse, before anything is made, an acquire in pool `pool` for `owner` whose home is
    /// in a running VM of another pool (or of none).
    pub(crate) fn home_free_for(&self, owner: &str, pool: &str) -> Result<()> {
        let Some(h) = self.catalog.home(owner)? else {
            return Ok(());
        };
        let Some(v) = h.attached_to.filter(|v| self.runs(*v)) else {
            return Ok(());
        };
        let theirs = self.catalog.vm(&v)?.and_then(|r| r.pool);
        if theirs.as_deref() == Some(pool) {
            return Ok(());
        }
        Err(Error::InUse(format!(
            "{owner}'s home is attached to their running VM {v}{}; a home is in one desktop at a time: release that one first",
            theirs.map(|p| format!(" of pool {p}")).unwrap_or_default()
        )))
    }

    /// Give running VM `vm` its owner's home, made at `size` bytes if they have none; `up`:
    /// the guest is up (restored or running), so mount it now through the guest agent.
    pub(crate) fn attach_home(&self, vm: Uuid, size: u64, up: bool) -> Result<()> {
        let rec = self.record(&vm)?;
        if rec.owner.is_empty() {
            return Ok(());
        }
        let owner = rec.owner.as_str();
        // The lock is held until the disk is plugged in: a claim and its plug are one step to
        // every other attach, resize and delete of this home.
        let plugged = {
            let _l = self.home_lock(owner)?;
            let mut h = match self.catalog.home(owner)? {
                Some(h) => h,
                None => self.create_home_locked(owner, size)?,
            };
            if let Some(other) = h.attached_to.filter(|o| *o != vm && self.runs(*o)) {
                return Err(Error::InUse(format!(
                    "{owner}'s home is attached to their running VM {other}; a home is in one desktop at a time: release that one first"
                )));
            }
            if h.attached_to != Some(vm) {
                h.attached_to = Some(vm);
                self.catalog.put_home(&h)?;
            }
            fail_point!("home_attach.claimed");
            self.plug_home(vm, &h)?
        };
        fail_point!("home_attach.plugged");
        if plugged && up {
            if let Some(program) = self.image_tag(rec.image_uuid, ON_HOME_TAG) {
                let login = rec.user.as_ref().map(|u| u.login.as_str());
                let mut argv = vec![program.as_str()];
                argv.extend(login);
                self.run_in_guest(vm, &argv, None, MOUNT_TIMEOUT)?;
            }
        }
        Ok(())
    }

    /// Hot-plug `home` into `vm` unless it is there already; whether it was plugged now.
    fn plug_home(&self, vm: Uuid, home: &HomeRecord) -> Result<bool> {
        let run = self.run_dir(&vm);
        let mut q = self.qmp(&vm, &run)?;
        self.plug_home_into(&mut q, vm, home)
    }

    /// `plug_home` over a QMP connection the caller has (a resume plugs the home in before
    /// it loads the saved state that names it).
    pub(crate) fn plug_home_into(
        &self,
        q: &mut crate::vm::qmp::Qmp,
        vm: Uuid,
        home: &HomeRecord,
    ) -> Result<bool> {
        let path = self.driver.disk_path(&home.disk_path)?;
        let mut o = OpenOptions::new();
        o.read(true).write(true).custom_flags(libc::O_CLOEXEC);
        // A zvol's name is udev's link in /dev (root's); a file is in the store's own
        // directories, and never followed if it is a link.
        if !path.starts_with("/dev/") {
            o.custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW);
        }
        let f = o.open(&path).map_err(|e| Error::Io {
            context: format!("opening {}'s home volume {}", home.owner, path.display()),
            source: e,
        })?;
        let ft = f
            .metadata()
            .map_err(|e| Error::Io {
                context: format!("inspecting {}", path.display()),
                source: e,
            })?
            .file_type();
        if !ft.is_file() && !ft.is_block_device() {
            return Err(Error::Internal(format!(
                "{}'s home volume {} is neither a file nor a block device",
                home.owner,
                path.display()
            )));
        }
        let format = home.disk_format.as_str();
        let plug = |q: &mut crate::vm::qmp::Qmp| {
            if q.has_device(HOME_DEVICE)? {
                return Ok(false);
            }
            let set = q.add_fd(f.as_fd())?;
            let plugged = q
                .blockdev_add_fdset(HOME_NODE, format, set, ft.is_block_device())
                .and_then(|()| {
                    q.device_add_virtio_blk(HOME_DEVICE, HOME_NODE, HOME_SERIAL, HOME_PORT)
                        .inspect_err(|_| {
                            let _ = q.blockdev_del(HOME_NODE);
                        })
                });
            // QEMU keeps its own duplicate while the node is open; the set itself can go.
            let _ = q.remove_fd(set);
            plugged.map(|()| true)
        };
        plug(q).map_err(|e| crate::vm::lifecycle::qmp_error(&vm, "plugging in the home volume", e))
    }

    /// Before `vm` is destroyed while it sleeps: the home's last writes may be in its saved
    /// memory, so it wakes first (and `sync_home` then writes them out). An error leaves it
    /// asleep, for the caller to keep.
    pub(crate) fn wake_for_home(&self, vm: Uuid) -> Result<()> {
        let rec = self.record(&vm)?;
        let attached = self
            .catalog
            .home(&rec.owner)?
            .is_some_and(|h| h.attached_to == Some(vm));
        if attached
            && self.image_tag(rec.image_uuid, ON_HOME_TAG).is_some()
            && self.vm(vm)?.state == crate::vm::State::Suspended
        {
            self.resume_vm(vm)?;
        }
        Ok(())
    }

    /// Before `vm` is destroyed: have its guest write the home's pages out (best effort: a
    /// guest that does not answer loses at most what ext4 had not committed).
    pub(crate) fn sync_home(&self, vm: Uuid) {
        let Ok(rec) = self.record(&vm) else { return };
        let attached = self
            .catalog
            .home(&rec.owner)
            .ok()
            .flatten()
            .is_some_and(|h| h.attached_to == Some(vm));
        if attached && self.runs(vm) && self.image_tag(rec.image_uuid, ON_HOME_TAG).is_some() {
            if let Err(e) = self.run_in_guest(vm, &["/bin/sync"], None, SYNC_TIMEOUT) {
                eprintln!("vmpool: VM {vm}: its home's pages may not be written out: {e}");
            }
        }
    }

    /// After `vm` (of `owner`) is gone: end its claim on the home. Only then: a claim ended
    /// while the VM still ran would let a second desktop plug the home in beside it.
    pub(crate) fn unclaim_home(&self, owner: &str, vm: Uuid) {
        if owner.is_empty() {
            return;
        }
        if let Ok(_l) = self.home_lock(owner) {
            if let Ok(Some(mut h)) = self.catalog.home(owner) {
                if h.attached_to == Some(vm) {
                    h.attached_to = None;
                    let _ = self.catalog.put_home(&h);
                }
            }
        }
    }
}
