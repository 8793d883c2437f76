//! Build script: gives the cdylib its SONAME and decides whether the ZFS driver is built.
//!
//! ZFS support links directly against libzfs, libzfs_core and libnvpair (no dlopen, no
//! processes). `VMPOOL_ZFS=1` requires it (the build fails without the libraries),
//! `VMPOOL_ZFS=0` leaves it out, anything else (the default) builds it when the libraries are
//! found: by pkg-config on Linux, by name on illumos.

use std::env;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(vmpool_zfs)");
    println!("cargo:rerun-if-env-changed=VMPOOL_ZFS");
    println!("cargo:rerun-if-changed=build.rs");
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();

    // The C ABI is versioned by the major version; 0.x releases share SONAME .so.0.
    let major = env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
    if os == "linux" || os == "illumos" || os == "solaris" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libvmpool.so.{major}");
    }

    let want = env::var("VMPOOL_ZFS").unwrap_or_default();
    let (force, off) = (
        matches!(want.as_str(), "1" | "on" | "yes"),
        matches!(want.as_str(), "0" | "off" | "no"),
    );
    if off {
        return;
    }
    let found = if os == "illumos" || os == "solaris" {
        for lib in ["zfs", "zfs_core", "nvpair"] {
            println!("cargo:rustc-link-lib=dylib={lib}");
        }
        true
    } else {
        let probe = |name: &str| pkg_config::Config::new().cargo_metadata(true).probe(name);
        match (probe("libzfs"), probe("libzfs_core")) {
            (Ok(_), Ok(_)) => true,
            (a, b) => {
                if force {
                    panic!(
                        "VMPOOL_ZFS=1 but libzfs was not found by pkg-config: {:?} {:?}",
                        a.err(),
                        b.err()
                    );
                }
                println!("cargo:warning=libzfs not found by pkg-config: building without the zfs: driver");
                false
            }
        }
    };
    if found {
        println!("cargo:rustc-cfg=vmpool_zfs");
    }
}
