//! Driver conformance: the same suite (suite.rs) against every storage driver.
//!
//! - `dir_qcow2`: a directory store making qcow2 overlays, in the temp dir (runs everywhere).
//! - `dir_reflink`: a directory store on XFS with reflink=1 (`VMPOOL_TEST_XFS_DIR`).
//! - `btrfs`: a btrfs store (`VMPOOL_TEST_BTRFS_DIR`).
//! - `zfs`: a ZFS store (`VMPOOL_TEST_ZFS_DATASET`), run inside the guest harness.
//!
//! The last three need a prepared environment and are `#[ignore]`d in a plain `cargo test`;
//! `make test` prepares it and runs them (see tests/env/setup and tests/guest/run).

#[path = "../common/mod.rs"]
mod common;
mod fixtures;
mod suite;

mod dir_qcow2 {
    crate::conformance_suite!(crate::fixtures::DIR_QCOW2);
}

mod dir_reflink {
    crate::conformance_suite!(crate::fixtures::DIR_REFLINK, #[ignore = "needs VMPOOL_TEST_XFS_DIR (XFS with reflink): make test"]);

    /// A 64 GiB raw image reflinks in the same time as a 1 GiB one: no data is read or written.
    #[test]
    #[ignore = "needs VMPOOL_TEST_XFS_DIR (XFS with reflink): make test"]
    fn raw_64g_reflinks_without_io() {
        crate::fixtures::raw_size_independence(&*crate::fixtures::DIR_REFLINK, "reflink");
    }
}

mod btrfs {
    crate::conformance_suite!(crate::fixtures::BTRFS, #[ignore = "needs VMPOOL_TEST_BTRFS_DIR (a btrfs mount): make test"]);
}

mod zfs {
    crate::conformance_suite!(crate::fixtures::ZFS, #[ignore = "needs VMPOOL_TEST_ZFS_DATASET: runs in the guest harness (make test-zfs)"]);
}
