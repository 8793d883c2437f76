//! Zones: every VM's QEMU isolated from the host and from the other VMs, as SmartOS runs each
//! KVM guest's QEMU in its own zone, but with library calls and syscalls only (no `unshare`,
//! `chroot`, `runuser`, `cgcreate`, `zonecfg` or `zoneadm` processes).
//!
//! A small, separate module in the spirit of Firecracker's jailer: [`ZoneSpec`](crate::zone::ZoneSpec) says what a
//! VM's zone is (its identity, resource limits and what it may see), computed from the VM's
//! record by pure functions; [`Zone`](crate::zone::Zone) is the one interface, with a Linux implementation
//! ([`linux`](crate::zone::linux): cgroups, namespaces, an unprivileged uid, no capabilities, rlimits, QEMU's
//! seccomp sandbox) and an illumos one (`illumos`: libzonecfg and zoneadmd; built and
//! type-checked, never run here).

pub mod linux;

// Always built: its values are pure and tested on every platform; the libzonecfg layer
// inside it is built on illumos (or type-checked with `zones-typecheck`).
pub mod illumos;

/// The zone of the OS vmpool is built for: the one place that picks an implementation.
#[cfg(target_os = "illumos")]
pub type HostZone = illumos::IllumosZone;
/// The zone of the OS vmpool is built for: the one place that picks an implementation.
#[cfg(not(target_os = "illumos"))]
pub type HostZone = linux::LinuxZone;

use crate::error::Result;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use uuid::Uuid;

/// What QEMU needs beyond the guest's RAM, in MiB, charged to the VM's memory limit: its own
/// code and heap, device emulation, SPICE and the display (measured here: a 256 MiB guest's
/// QEMU has 20-40 MiB of its own on top of the RAM it touched).
pub const QEMU_OVERHEAD_MIB: u64 = 192;

/// TCG's translation cache, in MiB (QEMU's `tb-size`; its default is up to 1 GiB), set for
/// every TCG guest so that its memory is bounded, and charged to the limit too.
pub const TCG_CACHE_MIB: u32 = 128;

/// Threads a QEMU may have: its own (main, RCU, I/O, SPICE, workers) and one per vCPU, with
/// room for its thread pool. `pids.max` is this.
pub fn pids_max(vcpus: u32) -> u64 {
    64 + 4 * u64::from(vcpus)
}

/// Limits of one VM's zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// CPU time, in percent of one CPU (`vcpus * 100`, or a cap from the VM).
    pub cpu_pct: u32,
    /// Memory (RAM + QEMU's overhead), bytes.
    pub memory_bytes: u64,
    /// Tasks (threads).
    pub pids: u64,
    /// Disk bandwidth and operations, where the VM asks for them.
    pub io: Option<IoLimits>,
}

/// Disk limits of a VM (`io.max` / `blkio.throttle.*`); 0 means no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct IoLimits {
    /// Bytes per second read.
    #[serde(default)]
    pub read_bps: u64,
    /// Bytes per second written.
    #[serde(default)]
    pub write_bps: u64,
    /// Read operations per second.
    #[serde(default)]
    pub read_iops: u64,
    /// Write operations per second.
    #[serde(default)]
    pub write_iops: u64,
}

impl Limits {
    /// The limits of a VM with `vcpus` CPUs and `ram_mib` of RAM: all its CPUs (or
    /// `cpu_cap_pct`), its RAM plus [`QEMU_OVERHEAD_MIB`] (plus [`TCG_CACHE_MIB`] under TCG),
    /// or `memory_cap_mib` if it sets one, and [`pids_max`] tasks.
    pub fn for_vm(
        vcpus: u32,
        ram_mib: u64,
        tcg: bool,
        cpu_cap_pct: Option<u32>,
        memory_cap_mib: Option<u64>,
        io: Option<IoLimits>,
    ) -> Limits {
        let overhead = QEMU_OVERHEAD_MIB + if tcg { u64::from(TCG_CACHE_MIB) } else { 0 };
        let mib = memory_cap_mib.unwrap_or(ram_mib.saturating_add(overhead));
        Limits {
            cpu_pct: cpu_cap_pct.unwrap_or(vcpus.saturating_mul(100)),
            memory_bytes: mib.saturating_mul(1 << 20),
            pids: pids_max(vcpus),
            io,
        }
    }
}

/// A VM's zone: who QEMU runs as, what it may use, what it may see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneSpec {
    /// The VM.
    pub vm: Uuid,
    /// Host name inside the zone.
    pub hostname: String,
    /// The unprivileged user QEMU runs as.
    pub uid: u32,
    /// Its group.
    pub gid: u32,
    /// Extra groups (the `kvm` group when `/dev/kvm` is used).
    pub groups: Vec<u32>,
    /// Resource limits.
    pub limits: Limits,
    /// Files QEMU writes (its disk, its UEFI variables, a template's RAM); given to `uid`.
    /// Never a directory: QEMU owns no directory, so it has no name to turn into a link.
    pub writable: Vec<PathBuf>,
    /// Files it only reads (the image its disk is a clone of, firmware files outside /usr).
    pub readable: Vec<PathBuf>,
    /// Device nodes it may open besides the harmless ones (`/dev/kvm`, a zvol's node).
    pub devices: Vec<PathBuf>,
    /// The VM's run directory (the zone's root is prepared in it).
    pub run_dir: PathBuf,
    /// The vCPUs and RAM the zone is sized for (kept for the illumos attributes).
    pub vcpus: u32,
    /// RAM in MiB.
    pub ram_mib: u64,
}

/// QEMU started in its zone: its pid (as the supervisor sees it) and the read ends of its
/// stdout (the serial console) and stderr.
#[derive(Debug)]
pub struct Booted {
    /// QEMU's pid as the supervisor sees it.
    pub pid: u32,
    /// Its stdout (the serial console).
    pub stdout: std::fs::File,
    /// Its stderr.
    pub stderr: std::fs::File,
}

/// What a running zone uses, as its resource controls count it (every process in it: QEMU
/// and nothing else). `None` where the platform does not count it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ZoneUsage {
    /// CPU time used since the zone was made, microseconds.
    pub cpu_us: Option<u64>,
    /// Memory charged now, bytes.
    pub memory_bytes: Option<u64>,
    /// The most memory ever charged, bytes.
    pub memory_peak_bytes: Option<u64>,
    /// The memory limit, bytes.
    pub memory_limit_bytes: Option<u64>,
}

/// One VM's zone on this platform. The supervisor creates it, boots QEMU in it and destroys
/// it when QEMU has ended.
pub trait Zone {
    /// Create the zone (resource controls, identity, the file-system view) before QEMU
    /// starts. Idempotent: a zone left by a crashed run is reused.
    fn create(&self, spec: &ZoneSpec) -> Result<()>;
    /// Start `program` (QEMU) with `args` inside the zone, the descriptors `fds` open in it
    /// as 3, 4, ... (its sockets: QEMU creates none itself); returns the running process.
    fn boot(
        &self,
        spec: &ZoneSpec,
        program: &std::path::Path,
        args: &[String],
        fds: &[std::os::fd::BorrowedFd<'_>],
    ) -> Result<Booted>;
    /// Whether the kernel killed a process of the zone for lack of memory.
    fn oom_killed(&self, spec: &ZoneSpec) -> bool;
    /// What VM `vm`'s zone uses now, if its QEMU `pid` runs in it; `None` otherwise (the VM
    /// runs outside a zone, or not).
    fn usage(&self, vm: &Uuid, pid: u32) -> Option<ZoneUsage>;
    /// Remove what `create` made; absent is fine.
    fn destroy(&self, spec: &ZoneSpec) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_from_a_vm() {
        let l = Limits::for_vm(2, 1024, true, None, None, None);
        assert_eq!(l.cpu_pct, 200);
        assert_eq!(l.memory_bytes, (1024 + 192 + 128) << 20);
        assert_eq!(l.pids, 72);
        let l = Limits::for_vm(4, 2048, false, Some(150), Some(3000), None);
        assert_eq!((l.cpu_pct, l.memory_bytes), (150, 3000 << 20));
    }
}

/// Descriptors a child process gets as 3, 4, ... (QEMU's sockets). Duplicated first to
/// numbers above any target (close-on-exec), so that moving them into place in the child can
/// never overwrite one not yet moved.
#[derive(Debug)]
pub struct PassedFds {
    high: Vec<std::os::fd::OwnedFd>,
}

/// The lowest number the duplicates take: above every target.
const PASS_ABOVE: i32 = 64;

impl PassedFds {
    /// Duplicates of `fds`, to be installed as 3, 4, ... in a child.
    pub fn new(fds: &[std::os::fd::BorrowedFd<'_>]) -> Result<PassedFds> {
        use std::os::fd::{AsRawFd, FromRawFd};
        if fds.len() > (PASS_ABOVE - 3) as usize {
            return Err(crate::error::Error::Internal(
                "too many descriptors to pass".into(),
            ));
        }
        let mut high = Vec::new();
        for fd in fds {
            // SAFETY: fcntl(F_DUPFD_CLOEXEC) on a descriptor open for the call.
            let d = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, PASS_ABOVE) };
            if d < 0 {
                return Err(crate::error::Error::Io {
                    context: "duplicating a descriptor for QEMU".into(),
                    source: std::io::Error::last_os_error(),
                });
            }
            // SAFETY: fcntl returned a new descriptor that nothing else owns.
            high.push(unsafe { std::os::fd::OwnedFd::from_raw_fd(d) });
        }
        Ok(PassedFds { high })
    }

    /// In the child, after `fork`: put each descriptor in place (`dup2` clears
    /// close-on-exec on the copy, so exactly these reach the program). Only system calls.
    pub fn install(&self) -> bool {
        use std::os::fd::AsRawFd;
        self.high.iter().enumerate().all(|(i, fd)| {
            // SAFETY: dup2 of a descriptor this process holds onto a small fixed number.
            unsafe { libc::dup2(fd.as_raw_fd(), 3 + i as i32) >= 0 }
        })
    }
}
