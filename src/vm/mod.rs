//! VMs: what a caller asks for ([`VmSpec`]) and what the store keeps ([`Vm`]).

use crate::error::{Error, Result};
use crate::image::DiskFormat;
use crate::validate::{self, Limits};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A VM to create. Build it with [`VmSpec::new`] and the builder methods; the store checks
/// every field against its limits before anything is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSpec {
    /// Identity to give the VM; a new random uuid when `None`.
    pub uuid: Option<Uuid>,
    /// Human name (see [`validate::NAME_RULE`]).
    pub alias: String,
    /// Who the VM belongs to (same rule as the alias).
    pub owner: String,
    /// The image whose clone becomes the VM's disk.
    pub image_uuid: Uuid,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Memory in MiB.
    pub ram_mib: u64,
    /// Disk size in GiB; `None`: the image's size rounded up to whole GiB.
    pub disk_gib: Option<u64>,
}

impl VmSpec {
    /// A VM from `image_uuid` with 1 vCPU, 512 MiB and the image's disk size; alias and
    /// owner must still be set.
    pub fn new(image_uuid: Uuid) -> Self {
        VmSpec {
            uuid: None,
            alias: String::new(),
            owner: String::new(),
            image_uuid,
            vcpus: 1,
            ram_mib: 512,
            disk_gib: None,
        }
    }
    /// Set the alias.
    pub fn alias(mut self, alias: impl Into<String>) -> Self {
        self.alias = alias.into();
        self
    }
    /// Set the owner.
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = owner.into();
        self
    }
    /// Set the uuid.
    pub fn uuid(mut self, uuid: Uuid) -> Self {
        self.uuid = Some(uuid);
        self
    }
    /// Set the number of virtual CPUs.
    pub fn vcpus(mut self, vcpus: u32) -> Self {
        self.vcpus = vcpus;
        self
    }
    /// Set the memory in MiB.
    pub fn ram_mib(mut self, ram_mib: u64) -> Self {
        self.ram_mib = ram_mib;
        self
    }
    /// Set the disk size in GiB.
    pub fn disk_gib(mut self, disk_gib: u64) -> Self {
        self.disk_gib = Some(disk_gib);
        self
    }

    /// Check every field against the store's limits.
    pub(crate) fn check(&self, limits: &Limits) -> Result<()> {
        validate::name("alias", &self.alias)?;
        validate::name("owner", &self.owner)?;
        limits.vcpus(u64::from(self.vcpus))?;
        limits.ram_mib(self.ram_mib)?;
        if let Some(d) = self.disk_gib {
            limits.disk_gib(d)?;
        }
        Ok(())
    }

    /// Disk size in bytes for an image of `image_bytes`; refuses to shrink below the image.
    pub(crate) fn disk_bytes(&self, image_bytes: u64, limits: &Limits) -> Result<u64> {
        let gib = match self.disk_gib {
            Some(g) => g,
            None => limits.disk_gib(image_bytes.div_ceil(GIB))?,
        };
        let bytes = gib_to_bytes(gib)?;
        if bytes < image_bytes {
            return Err(Error::invalid(format!(
                "disk_gib {gib} is smaller than image {} ({image_bytes} bytes); disks are never shrunk below their image",
                self.image_uuid
            )));
        }
        Ok(bytes)
    }
}

const GIB: u64 = 1 << 30;

/// `gib` GiB in bytes, refusing sizes no file or volume can have (2^63 bytes and up).
pub fn gib_to_bytes(gib: u64) -> Result<u64> {
    gib.checked_mul(GIB)
        .filter(|b| *b <= i64::MAX as u64)
        .ok_or_else(|| Error::invalid(format!("{gib} GiB is larger than any disk can be")))
}

/// Lifecycle state of a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Not running.
    Stopped,
    /// Running.
    Running,
}

impl State {
    /// The name used in JSON and tables (`stopped`, `running`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Stopped => "stopped",
            State::Running => "running",
        }
    }
}

/// A VM in a store: what `Store::vm` returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Vm {
    /// Identity.
    pub uuid: Uuid,
    /// Human name.
    pub alias: String,
    /// Who it belongs to.
    pub owner: String,
    /// The image its disk was cloned from.
    pub image_uuid: Uuid,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Memory in MiB.
    pub ram_mib: u64,
    /// Disk size in GiB.
    pub disk_gib: u64,
    /// When it was created, RFC 3339 UTC.
    pub created_at: String,
    /// Lifecycle state.
    pub state: State,
    /// Path QEMU opens: a file, or a block device (`/dev/zvol/...`).
    pub disk_path: String,
    /// Format of the disk.
    pub disk_format: DiskFormat,
    /// Virtual size of the disk in bytes.
    pub disk_size_bytes: u64,
    /// How the disk was cloned from the image (reflink, qcow2-overlay, btrfs-snapshot,
    /// zfs-clone).
    pub clone_method: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMG: Uuid = uuid::uuid!("6f1c2b34-0d4e-4f8a-9b6c-1234567890ab");

    fn spec() -> VmSpec {
        VmSpec::new(IMG)
            .alias("a")
            .owner("o")
            .vcpus(2)
            .ram_mib(2048)
            .disk_gib(20)
    }

    #[test]
    fn checks() {
        let l = Limits::default();
        spec().check(&l).unwrap();
        assert!(spec().alias("../x").check(&l).is_err());
        assert!(spec().vcpus(0).check(&l).is_err());
        let e = spec().disk_gib(0).check(&l).unwrap_err();
        assert!(e.to_string().contains("disk_gib"), "{e}");
    }

    #[test]
    fn never_shrinks() {
        let l = Limits::default();
        let s = spec().disk_gib(1);
        assert!(s.disk_bytes(2 << 30, &l).is_err());
        assert_eq!(s.disk_bytes(1 << 30, &l).unwrap(), 1 << 30);
        let s = VmSpec {
            disk_gib: None,
            ..s
        };
        assert_eq!(s.disk_bytes((1 << 30) + 1, &l).unwrap(), 2 << 30);
    }

    #[test]
    fn sizes_do_not_wrap() {
        assert!(gib_to_bytes(17179869185).is_err());
        assert!(gib_to_bytes(u64::MAX).is_err());
        assert_eq!(gib_to_bytes(16 << 10).unwrap(), 16 << 40);
    }
}
