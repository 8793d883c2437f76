//! VM operations of a store (vmadm's create, list, get, delete).

use crate::driver::Destroyed;
use crate::error::{Error, Result};
use crate::fail_point;
use crate::lock::Mode;
use crate::store::catalog::records::VmRecord;
use crate::store::journal::Op;
use crate::store::Store;
use crate::validate;
use crate::vm::{State, Vm, VmSpec};
use uuid::Uuid;

/// What makes a VM a pool's (see `create_vm_in`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Membership {
    /// The pool.
    pub pool: String,
    /// It builds the pool's memory template.
    pub template_build: bool,
    /// It resumes from the pool's memory template.
    pub restore: Option<crate::store::catalog::records::Restore>,
}

impl Store {
    /// Create a VM: its disk is a copy-on-write clone of the image grown to `disk_gib`, and
    /// its record is written atomically next to it.
    pub fn create_vm(&self, spec: &VmSpec) -> Result<Vm> {
        crate::probes::op("vm-create", &spec.alias, || self.create_vm_in(spec, None))
    }

    /// `create_vm` for a pool (`member`): the record says which pool, and whether the VM
    /// builds the pool's template or resumes from it.
    pub(crate) fn create_vm_in(&self, spec: &VmSpec, member: Option<&Membership>) -> Result<Vm> {
        spec.check(&self.limits, member.is_some())?;
        let uuid = spec.uuid.unwrap_or_else(Uuid::new_v4);
        // Shared: many creates at once, but the image cannot be deleted under us.
        let _shared = self.lock(Mode::Shared)?;
        let exists = || Error::AlreadyExists(format!("VM {uuid} already exists"));
        if self.catalog.vm(&uuid)?.is_some() {
            return Err(exists());
        }
        // A chosen uuid must not name a home volume (they share the driver's names).
        if spec.uuid.is_some() && self.catalog.homes()?.iter().any(|h| h.uuid == uuid) {
            return Err(Error::AlreadyExists(format!(
                "{uuid} is a home volume's id"
            )));
        }
        let image = self
            .catalog
            .image(&spec.image_uuid)?
            .map(|r| crate::image::Image::from(&r))
            .ok_or_else(|| Error::not_found("image", spec.image_uuid.to_string()))?;
        let size = spec.disk_bytes(image.size_bytes, &self.limits)?;

        let op = Op::VmCreate {
            uuid,
            image_uuid: image.uuid,
        };
        // With `Durability::ByClone` the entry is not synced here: the clone below is the
        // first thing this operation makes, and it returns only once the entry is on disk
        // (see `StorageDriver::clone_syncs_catalog`).
        let entry = self.begin(op, self.create_durability, |pid| {
            Error::AlreadyExists(format!(
                "VM {uuid} is being created or deleted by process {pid}"
            ))
        })?;
        if self.catalog.vm(&uuid)?.is_some() {
            entry.finish()?;
            return Err(exists());
        }
        self.run_journalled(entry, |revert| {
            fail_point!("vm_create.journaled");
            // A clone that fails leaves nothing (the driver's contract), and a name that was
            // taken is not ours: only after success is the disk ours to remove.
            let disk = self.driver.vm_clone(&image, &uuid, size)?;
            revert.add(format!("remove the disk of VM {uuid}"), || {
                match self.driver.vm_destroy(&uuid, &image.uuid)? {
                    Destroyed::Foreign(what) => Err(Error::Internal(format!(
                        "the disk just cloned does not look like a clone: {what}"
                    ))),
                    Destroyed::Removed | Destroyed::Absent => Ok(()),
                }
            });
            let vm = Vm {
                uuid,
                alias: spec.alias.clone(),
                owner: spec.owner.clone(),
                image_uuid: image.uuid,
                vcpus: spec.vcpus,
                ram_mib: spec.ram_mib,
                disk_gib: size >> 30,
                created_at: crate::now_rfc3339(),
                state: State::Stopped,
                disk_path: disk.path,
                disk_format: disk.format,
                disk_size_bytes: disk.size_bytes,
                clone_method: disk.method.as_str().to_owned(),
                firmware: spec.firmware,
                accel: spec.accel,
                mac: crate::vm::mac_for(&uuid),
                vmgenid: Uuid::new_v4(),
                last_exit: None,
                caps: spec.caps.clone(),
                pool: member.map(|m| m.pool.clone()),
                user: spec.user.clone(),
                suspended: None,
                autoboot: false,
                session_ends_at: None,
            };
            fail_point!("vm_create.cloned");
            // Undo first: a write that fails after its rename leaves the record.
            revert.add(format!("remove the record of VM {uuid}"), || {
                self.catalog.remove_vm(&uuid).map(drop)
            });
            let mut record = VmRecord::from(&vm);
            record.user = spec.user.clone();
            if let Some(m) = member {
                record.template_build = m.template_build;
                record.restore = m.restore.clone();
                if !spec.owner.is_empty() {
                    record.claimed_at = Some(vm.created_at.clone());
                }
            }
            self.catalog.put_vm(&record)?;
            fail_point!("vm_create.recorded");
            Ok(vm)
        })
    }

    /// One VM, with its live state (a VM whose QEMU died shows `failed`).
    pub fn vm(&self, uuid: Uuid) -> Result<Vm> {
        self.catalog
            .vm(&uuid)?
            .map(|r| self.live(&r))
            .ok_or_else(|| Error::not_found("VM", uuid.to_string()))
    }

    /// All VMs, or those of one owner, oldest first.
    pub fn vms(&self, owner: Option<&str>) -> Result<Vec<Vm>> {
        if let Some(o) = owner {
            validate::name("owner", o)?;
        }
        Ok(self
            .catalog
            .vms(owner)?
            .iter()
            .filter(|r| !r.template_build)
            .map(|r| self.live(r))
            .collect())
    }

    /// Delete a VM: stopped first if it runs (ACPI, then killed after 30 s), then its record
    /// (it disappears at once), its disk and its run directory. A disk that is not a clone of
    /// the VM's image (someone put another file there) is left untouched.
    pub fn delete_vm(&self, u: Uuid) -> Result<()> {
        crate::probes::op("vm-delete", u, || self.delete_vm_op(u))
    }

    fn delete_vm_op(&self, u: Uuid) -> Result<()> {
        self.ensure_stopped(u, std::time::Duration::from_secs(30))?;
        let _shared = self.lock(Mode::Shared)?;
        // The record itself becomes the journal entry (a link: works on a full disk).
        let entry = self.begin_delete(
            &format!("vm-{u}"),
            &self.catalog.vm_path(&u),
            |pid| {
                Error::Busy(format!(
                    "VM {u} is being created or deleted by process {pid}"
                ))
            },
            || Error::not_found("VM", u.to_string()),
        )?;
        let Op::VmDelete { image_uuid, .. } = entry.op else {
            return Err(Error::Internal(format!(
                "VM {u}: unexpected journal entry {:?}",
                entry.op
            )));
        };
        fail_point!("vm_delete.journaled");
        self.catalog.remove_vm(&u)?;
        fail_point!("vm_delete.unlisted");
        // A foreign disk at the name is left as it is; the VM is gone either way.
        self.driver.vm_destroy(&u, &image_uuid)?;
        self.run_dir(&u).remove()?;
        entry.finish()
    }
}
