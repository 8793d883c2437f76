//! vmpool: virtual machines handed out instantly from templates.
//!
//! Images (templates) are imported into a store; a VM's disk is a copy-on-write clone of an
//! image made in constant time by the store's driver (ZFS clone, btrfs snapshot, reflink or a
//! qcow2 overlay). The same engine is reachable from Rust ([`Store`]), from C through
//! `include/vmpool.h` (module [`ffi`]), from Ruby and Python (`bindings/`) and from the
//! `vmpoolctl` command.
//!
//! Where things live:
//! - `store/`   a store: open by URI, catalog, intent journal, crash recovery, operations
//! - `image/`   manifests, format probing, qcow2, the import data path
//! - `vm/`      VM create payloads and records
//! - `driver/`  storage drivers: `dir`, `btrfs`, `zfs` (with its raw `sys` layer)
//! - `ffi/`     the C ABI
//! - `lock`, `fsutil`, `failpoint`, `validate`: shared plumbing

/// Storage drivers (not part of the C header).
///
/// cbindgen:ignore
pub mod driver;
pub mod error;
pub mod failpoint;
pub mod ffi;
pub mod fsutil;
pub mod image;
pub mod lock;
pub mod store;
pub mod validate;
pub mod vm;

pub use error::{Error, Result, ResultCode};
pub use image::{DiskFormat, Manifest};
pub use store::Store;
pub use vm::Record as VmRecord;

/// Library version, as `vmpool_version()` returns it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Current time as RFC 3339 UTC with second precision, the format of every `created_at`.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
