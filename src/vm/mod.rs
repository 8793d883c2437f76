//! VMs: what a caller asks for ([`VmSpec`]), what the store keeps ([`Vm`]), and running them:
//! the QEMU command line (`qemu`), the QMP client (`qmp`), the per-VM supervisor
//! (`supervisor`), run-time files and liveness (`runtime`), SPICE consoles (`console`).

pub mod agent;
pub(crate) mod alloc;
pub mod config;
pub mod console;
pub(crate) mod crud;
pub mod identity;
pub(crate) mod launch;
pub(crate) mod lifecycle;
pub mod qemu;
pub mod qmp;
pub mod runtime;
pub(crate) mod screen;
pub mod seed;
pub mod state;
pub mod stats;
pub mod supervisor;
pub(crate) mod suspend;
pub mod uids;
pub mod user;

use crate::error::{Error, Result};
use crate::image::DiskFormat;
use crate::validate::{self, Limits};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use state::{Op, State};

/// Firmware a VM boots with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    /// SeaBIOS (the default).
    #[default]
    Bios,
    /// OVMF (UEFI), with a per-VM copy of its variable store.
    Uefi,
}

impl Firmware {
    /// `bios` or `uefi`.
    pub fn as_str(self) -> &'static str {
        match self {
            Firmware::Bios => "bios",
            Firmware::Uefi => "uefi",
        }
    }
}

/// Which accelerator QEMU uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// KVM when `/dev/kvm` works, TCG otherwise.
    Auto,
    /// Hardware virtualisation.
    Kvm,
    /// Software emulation (slow, always available).
    Tcg,
}

impl Accel {
    /// `auto`, `kvm` or `tcg`.
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Auto => "auto",
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    /// Parse `auto`, `kvm` or `tcg`.
    pub fn parse(s: &str) -> Result<Accel> {
        match s {
            "auto" => Ok(Accel::Auto),
            "kvm" => Ok(Accel::Kvm),
            "tcg" => Ok(Accel::Tcg),
            _ => Err(Error::invalid(format!(
                "accel {s:?}: expected auto, kvm or tcg"
            ))),
        }
    }
}

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
    /// Firmware.
    pub firmware: Firmware,
    /// Accelerator for this VM; `None`: the store's.
    pub accel: Option<Accel>,
    /// Resource caps beyond what vcpus and ram_mib imply.
    pub caps: Caps,
    /// The person it is for, applied in the guest (images with a NoCloud seed or an
    /// `on_clone` program; see [`user::GuestUser`]).
    pub user: Option<user::GuestUser>,
}

/// Resource caps of a VM's zone, where it asks for ones other than its size implies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Caps {
    /// CPU time in percent of one CPU (default: `vcpus * 100`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_pct: Option<u32>,
    /// Memory of the whole QEMU process, MiB (default: RAM plus QEMU's overhead; see `zone`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
    /// Disk bandwidth and operations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io: Option<crate::zone::IoLimits>,
    /// Allocate all guest RAM when QEMU starts (no later surprise when the host is short).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prealloc: bool,
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
            firmware: Firmware::Bios,
            accel: None,
            caps: Caps::default(),
            user: None,
        }
    }
    /// Set the person it is for.
    pub fn user(mut self, user: user::GuestUser) -> Self {
        self.user = Some(user);
        self
    }
    /// Set resource caps.
    pub fn caps(mut self, caps: Caps) -> Self {
        self.caps = caps;
        self
    }
    /// Set the firmware.
    pub fn firmware(mut self, firmware: Firmware) -> Self {
        self.firmware = firmware;
        self
    }
    /// Set the accelerator.
    pub fn accel(mut self, accel: Accel) -> Self {
        self.accel = Some(accel);
        self
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
    /// `spare`: a pool's spare, which belongs to nobody yet (empty owner).
    pub(crate) fn check(&self, limits: &Limits, spare: bool) -> Result<()> {
        validate::name("alias", &self.alias)?;
        if !(spare && self.owner.is_empty()) {
            validate::name("owner", &self.owner)?;
        }
        if let Some(u) = &self.user {
            u.validate()?;
        }
        limits.vcpus(u64::from(self.vcpus))?;
        limits.ram_mib(self.ram_mib)?;
        if let Some(d) = self.disk_gib {
            limits.disk_gib(d)?;
        }
        if let Some(c) = self.caps.cpu_pct {
            if c == 0 || c > 100 * limits.max_vcpus {
                return Err(Error::invalid(format!(
                    "cpu cap {c}% is out of range 1..={}",
                    100 * limits.max_vcpus
                )));
            }
        }
        if let Some(m) = self.caps.memory_mib {
            if m < 64 || m > limits.max_ram_mib.saturating_mul(2) {
                return Err(Error::invalid(format!(
                    "memory cap of {m} MiB is out of range 64..={}",
                    limits.max_ram_mib.saturating_mul(2)
                )));
            }
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

/// The MAC address of a VM: QEMU's locally administered prefix 52:54:00 and three bytes of
/// the VM's uuid, so it is stable for the VM's life and differs between VMs.
pub fn mac_for(uuid: &Uuid) -> String {
    let b = uuid.as_bytes();
    // The last bytes of a v4 uuid are random (the first hold the version nibble).
    format!("52:54:00:{:02x}:{:02x}:{:02x}", b[13], b[14], b[15])
}

/// `gib` GiB in bytes, refusing sizes no file or volume can have (2^63 bytes and up).
pub fn gib_to_bytes(gib: u64) -> Result<u64> {
    gib.checked_mul(GIB)
        .filter(|b| *b <= i64::MAX as u64)
        .ok_or_else(|| Error::invalid(format!("{gib} GiB is larger than any disk can be")))
}

/// How QEMU ended the last time it ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LastExit {
    /// When it was noticed, RFC 3339 UTC.
    pub at: String,
    /// `true` for a guest power-off or a stop asked for through vmpool.
    pub clean: bool,
    /// What happened, for people: "guest powered off", "killed by signal 9 (SIGKILL)",
    /// "exited with status 1: <last lines of QEMU's stderr>", "out of memory", ...
    pub reason: String,
    /// The signal that ended QEMU, if one did.
    #[serde(default)]
    pub signal: Option<i32>,
    /// QEMU's exit status, if it exited.
    #[serde(default)]
    pub status: Option<i32>,
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
    /// Firmware.
    pub firmware: Firmware,
    /// The VM's own accelerator choice (`None`: the store's).
    pub accel: Option<Accel>,
    /// Its network card's MAC address, chosen once.
    pub mac: String,
    /// Its VM generation id (given to the guest through `vmgenid`).
    pub vmgenid: Uuid,
    /// How QEMU ended the last time, if it ever ran and ended.
    pub last_exit: Option<LastExit>,
    /// Resource caps of its zone.
    pub caps: Caps,
    /// The pool it belongs to, if any (a spare has an empty owner).
    pub pool: Option<String>,
    /// The person it is for (their login, name, locale, keyboard, time zone), if given.
    pub user: Option<crate::vm::user::GuestUser>,
    /// While `suspended`: when and why it was put to sleep, and its saved state's size.
    pub suspended: Option<crate::store::catalog::records::Suspension>,
    /// Marked to run (vmadm's `autoboot`): set by a start or wake, cleared by a stop or kill
    /// asked for; `host start` starts such a VM if the host went down under it.
    pub autoboot: bool,
    /// When its pool ends its owner's session (`max_session_s`), RFC 3339, while it runs
    /// for its owner; a portal warns before then.
    pub session_ends_at: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMG: Uuid = uuid::uuid!("6f1c2b34-0d4e-4f8a-9b6c-1234567890ab");

    #[test]
    fn macs_are_local_unicast_and_derived() {
        let u = uuid::uuid!("33333333-3333-4333-8333-333333333333");
        let m = mac_for(&u);
        assert!(m.starts_with("52:54:00:"));
        assert_eq!(m, mac_for(&u));
        assert_ne!(m, mac_for(&IMG));
    }

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
        spec().check(&l, false).unwrap();
        assert!(spec().alias("../x").check(&l, false).is_err());
        assert!(spec().vcpus(0).check(&l, false).is_err());
        let e = spec().disk_gib(0).check(&l, false).unwrap_err();
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
