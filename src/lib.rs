//! vmpool: virtual machines handed out instantly from templates.
//!
//! Images (templates) are imported into a store; a VM's disk is a copy-on-write clone of an
//! image made in constant time by the store's driver (ZFS clone, btrfs snapshot, reflink or a
//! qcow2 overlay). The same engine is reachable from Rust ([`Store`]), from C through
//! `include/vmpool.h` (module [`ffi`]), from Ruby and Python (`bindings/`) and from the
//! `vmpoolctl` command.
//!
//! The Rust API is typed ([`ImportRequest`], [`Image`], [`VmSpec`], [`Vm`]); JSON exists only
//! at the C edge (`ffi::wire`) and in the on-disk catalog (`store::catalog::records`), each
//! with its own types.
//!
//! Where things live (each domain holds its own operations as `impl Store` blocks; `store/`
//! is only what a store is):
//! - `store/`   a store: open by URI, catalog (and its on-disk format), intent journal,
//!   crash recovery, locks
//! - `image/`   images, import requests, format probing, qcow2; import, list, delete (`ops`)
//! - `vm/`      VM specs and VMs; the state table (`state`); create and delete (`crud`), start
//!   (`launch`), the other transitions (`lifecycle`), uids and ports (`alloc`, `uids`),
//!   consoles and screenshots (`screen`); QEMU's command line, QMP (typed commands in
//!   `qmp::commands`), the guest agent (`agent`), the supervisor, run-time files
//! - `pool/`    pools: create and change (`crud`), acquire and release (`acquire`), refill
//!   (`refill`), memory templates (`template`), claim files (`claims`), the decisions as pure
//!   functions (`plan`)
//! - `driver/`  storage drivers and their registry: `dir`, `btrfs`, `zfs` (with its raw `sys`
//!   layer)
//! - `zone/`    isolation of each VM's QEMU: Linux (cgroups, namespaces, no root) and
//!   illumos (libzonecfg)
//! - `ffi/`     the C ABI, its result codes (`result`) and its JSON wire format (`wire`)
//! - `safe_fs`  acting in directories another uid may write (descriptors, no links followed)
//! - `revert`, `lock`, `fsutil`, `failpoint`, `validate`: shared plumbing

// Only `ffi` (with its result codes) makes the C header; every other module is marked
// `cbindgen:ignore` so that none of its items can leak into it.

/// Storage drivers.
///
/// cbindgen:ignore
pub mod driver;
pub mod error;
/// Fault injection for tests.
///
/// cbindgen:ignore
pub mod failpoint;
pub mod ffi;
/// File-system helpers.
///
/// cbindgen:ignore
pub mod fsutil;
/// Home volumes of owners.
///
/// cbindgen:ignore
pub mod home;
/// Images.
///
/// cbindgen:ignore
pub mod image;
/// Locks between processes.
///
/// cbindgen:ignore
pub mod lock;
/// Pools of ready VMs.
///
/// cbindgen:ignore
pub mod pool;
/// Static probes (USDT) around operations, their steps and QMP calls: docs/probes.md.
///
/// cbindgen:ignore
pub(crate) mod probes;
/// Undo steps.
///
/// cbindgen:ignore
pub mod revert;
/// Acting in directories another uid may write: descriptors, no links followed.
///
/// cbindgen:ignore
pub mod safe_fs;
/// Stores.
///
/// cbindgen:ignore
pub mod store;
/// Input checks.
///
/// cbindgen:ignore
pub mod validate;
/// VMs.
///
/// cbindgen:ignore
pub mod vm;
/// Isolation of each VM (Linux namespaces and cgroups; illumos zones).
///
/// cbindgen:ignore
pub mod zone;

pub use error::{Error, Result, ResultCode};
pub use image::{DiskFormat, Image, ImportRequest};
pub use store::{Recovery, Store, StoreInfo};
pub use vm::{Vm, VmSpec};

/// Library version, as `vmpool_version()` returns it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Current time as RFC 3339 UTC with second precision, the format of every `created_at`.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
