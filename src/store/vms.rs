//! VM operations of a store (vmadm's create, list, get, delete).

use super::journal::Op;
use super::Store;
use crate::error::{Error, Result};
use crate::failpoint;
use crate::lock::Mode;
use crate::validate;
use crate::vm::{Record, Spec, State};

impl Store {
    /// Create a VM from a JSON payload (`alias`, `owner`, `image_uuid`, `vcpus`, `ram_mib`,
    /// optional `disk_gib` and `uuid`): its disk is a copy-on-write clone of the image grown to
    /// `disk_gib`, and its record is written atomically next to it.
    pub fn create_vm(&self, payload_json: &str) -> Result<Record> {
        let spec = Spec::parse(payload_json, &self.limits)?;
        // Shared: many creates at once, but the image cannot be deleted under us.
        let _shared = self.lock(Mode::Shared)?;
        let exists = || Error::AlreadyExists(format!("VM {} already exists", spec.uuid));
        if self.catalog.vm(&spec.uuid)?.is_some() {
            return Err(exists());
        }
        let image = self
            .catalog
            .image(&spec.image_uuid)?
            .ok_or_else(|| Error::not_found("image", spec.image_uuid.to_string()))?;
        let size = spec.disk_bytes(image.size_bytes, &self.limits)?;

        let op = Op::VmCreate {
            uuid: spec.uuid,
            image_uuid: image.uuid,
            image_format: image.disk_format,
        };
        let entry = self.begin(op, |pid| {
            Error::AlreadyExists(format!(
                "VM {} is being created or deleted by process {pid}",
                spec.uuid
            ))
        })?;
        if self.catalog.vm(&spec.uuid)?.is_some() {
            entry.finish()?;
            return Err(exists());
        }
        // A clone that fails leaves nothing (the driver's contract), and a name that was taken
        // is not ours: only after success is the disk ours to remove.
        let disk = match self.driver.vm_clone(&image, &spec.uuid, size) {
            Ok(d) => d,
            Err(e) => {
                entry.finish()?;
                return Err(e);
            }
        };
        let result = (|| {
            let record = Record {
                uuid: spec.uuid,
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
                clone_method: disk.method.to_owned(),
            };
            failpoint::hit("vm_create.cloned")?;
            self.catalog.put_vm(&record)?;
            failpoint::hit("vm_create.recorded")?;
            Ok(record)
        })();
        match result {
            Ok(r) => {
                entry.finish()?;
                Ok(r)
            }
            Err(e) => {
                let _ = self.catalog.remove_vm(&spec.uuid);
                if self
                    .driver
                    .vm_destroy(&spec.uuid, &image.uuid, image.disk_format)
                    .is_ok()
                {
                    let _ = entry.finish();
                }
                Err(e)
            }
        }
    }

    pub fn vm(&self, uuid: &str) -> Result<Record> {
        let u = validate::uuid("VM uuid", uuid)?;
        self.catalog
            .vm(&u)?
            .ok_or_else(|| Error::not_found("VM", u.to_string()))
    }

    /// All VMs, or those of one owner, oldest first.
    pub fn vms(&self, owner: Option<&str>) -> Result<Vec<Record>> {
        if let Some(o) = owner {
            validate::name("owner", o)?;
        }
        self.catalog.vms(owner)
    }

    /// Delete a VM: its record (it disappears at once) and its disk.
    pub fn delete_vm(&self, uuid: &str) -> Result<()> {
        let u = validate::uuid("VM uuid", uuid)?;
        let _shared = self.lock(Mode::Shared)?;
        let r = self
            .catalog
            .vm(&u)?
            .ok_or_else(|| Error::not_found("VM", u.to_string()))?;
        let image_format = match self.catalog.image(&r.image_uuid)? {
            Some(m) => m.disk_format,
            None => r.disk_format,
        };
        let op = Op::VmDelete {
            uuid: u,
            image_uuid: r.image_uuid,
            image_format,
        };
        let entry = self.begin(op, |pid| {
            Error::Busy(format!(
                "VM {u} is being created or deleted by process {pid}"
            ))
        })?;
        if !self.catalog.remove_vm(&u)? {
            // Someone else deleted it between our read and our journal entry.
            entry.finish()?;
            return Err(Error::not_found("VM", u.to_string()));
        }
        failpoint::hit("vm_delete.unlisted")?;
        self.driver.vm_destroy(&u, &r.image_uuid, image_format)?;
        entry.finish()
    }
}
