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

    /// The overlay vmpool writes itself (no qemu-img process) is one qemu-img accepts: `check`
    /// finds no errors, `info` shows the backing file, its format and the grown size.
    #[test]
    fn overlay_is_valid_for_qemu_img() {
        use crate::common::*;
        use crate::suite::Fixture;
        let tmp = scratch();
        let s = vmpool::Store::open(Some(&crate::fixtures::DIR_QCOW2.new_store())).unwrap();
        for (name, img) in [
            ("raw", make_raw(tmp.path(), "b.raw", 1 << 30, &[(0, 4096)])),
            (
                "qcow2",
                make_qcow2(tmp.path(), "b.qcow2", 1 << 30, &[(0, 4096)], true),
            ),
        ] {
            let m = s.import_json(&img, None, None).unwrap();
            for gib in [1u64, 20, 16 << 10] {
                let vm = s.create_vm(&payload(&m.uuid, "o", "t", gib)).unwrap();
                assert_eq!(vm.clone_method, "qcow2-overlay");
                let check = std::process::Command::new("qemu-img")
                    .args(["check", &vm.disk_path])
                    .output()
                    .unwrap();
                assert!(
                    check.status.success(),
                    "{name} {gib}: {}",
                    String::from_utf8_lossy(&check.stdout)
                );
                let info = std::process::Command::new("qemu-img")
                    .args(["info", "--output=json", &vm.disk_path])
                    .output()
                    .unwrap();
                let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
                assert_eq!(info["virtual-size"], gib << 30);
                assert_eq!(
                    info["backing-filename"],
                    format!("../images/{}.{name}", m.uuid)
                );
                assert_eq!(info["backing-filename-format"], name);
                assert!(
                    std::path::Path::new(info["full-backing-filename"].as_str().unwrap()).exists()
                );
            }
        }
    }
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
