//! The illumos zone of a VM: a zone of SmartOS's `kvm` brand made with libzonecfg and run by
//! zoneadmd, as SmartOS's `vmadm` runs each KVM guest, but with library calls only (no
//! `zonecfg` or `zoneadm` process; libzonecfg itself starts the zone's zoneadmd daemon when
//! it has none, as zoneadm does).
//!
//! Built on illumos, and type-checked elsewhere with the `zones-typecheck` feature; it has
//! never run: see "illumos zones" in the README for what was and was not verified. The values
//! it writes are computed by [`values`] (compiled and tested on every platform); the raw
//! declarations are in `sys`.
//!
//! What a zone is here:
//! - **create**: the configuration `vmpool-<uuid>` from the empty template (`SUNWblank`, as
//!   `zonecfg create -b`), brand `kvm`, zonepath `<run dir>/zone`, no autoboot, SmartOS's kvm
//!   privilege limit (keeping `net_access`), the attributes vmadm writes (`ram`, `vcpus`,
//!   `hostname`) and `vmpool-vm`, the rctls of the VM's limits, a `device` for each device
//!   (zvols as `/dev/zvol/rdsk/...`) and a read-only or read-write loopback mount for each
//!   directory QEMU reads or writes. Then what the brand's install hook (`kinstall`) would do:
//!   the zonepath, its `root` and `root/tmp`, and the state set to installed. `zoneadm
//!   install` and its checks (`verify`) are not run.
//! - **boot**: the kvm brand's init is `/startvm` in the zone's root; it is written here
//!   (QEMU's program and arguments, quoted) as vmadm writes it, and zoneadmd is asked to boot
//!   (`Z_BOOT` through `zonecfg_call_zoneadmd`).
//! - **destroy**: halt (`Z_HALT`) if the zone is up, remove the configuration
//!   (`zonecfg_destroy`), remove the zonepath when nothing is mounted below it.
//!
//! What is not carried over from the Linux zone, and why: QEMU runs as the zone's root (the
//! zone and its privilege limit are the boundary, as on SmartOS), so `uid`, `gid` and
//! `groups` are not used; the zone has no network resource, so QEMU's user-mode networking
//! and a SPICE TCP port stay inside the zone; disk bandwidth limits have no zone equivalent
//! and are refused ([`values::unsupported_limits`]). Only SmartOS is supported: the kvm brand
//! with `/startvm` is SmartOS's (OmniOS's kvm and bhyve brands start the hypervisor
//! themselves from zone attributes), and elsewhere every call returns
//! [`Error::Unsupported`](crate::Error::Unsupported).

pub mod values;

#[cfg(any(target_os = "illumos", feature = "zones-typecheck"))]
mod config;
#[cfg(any(target_os = "illumos", feature = "zones-typecheck"))]
pub mod sys;
#[cfg(any(target_os = "illumos", feature = "zones-typecheck"))]
mod zone;

#[cfg(any(target_os = "illumos", feature = "zones-typecheck"))]
pub use zone::IllumosZone;
