//! How each driver plugs into the suite: fresh stores, and what volumes its back end holds.

use crate::common::*;
use crate::suite::Fixture;
use once_cell::sync::Lazy;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

static SEQ: AtomicUsize = AtomicUsize::new(0);

fn next() -> String {
    format!(
        "s{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Classify a file or subvolume name found under `images/` or `vms/`.
fn classify(kind: &str, name: &str) -> Option<String> {
    if name.ends_with(".json") || name.starts_with('.') {
        return None;
    }
    let stem = name.split('.').next().unwrap_or(name);
    let (uuid, tag) = match (
        kind,
        stem.strip_suffix("-partial"),
        stem.strip_suffix("-disk0"),
    ) {
        ("images", Some(u), _) => (u, "staging"),
        ("images", None, _) => (stem, "image"),
        ("vms", _, Some(u)) => (u, "vm"),
        ("vms", _, None) => (stem, "vm"),
        _ => return Some(format!("other:{name}")),
    };
    Some(match uuid::Uuid::try_parse(uuid) {
        Ok(u) => format!("{tag}:{u}"),
        Err(_) => format!("other:{kind}/{name}"),
    })
}

fn list_dir_volumes(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for kind in ["images", "vms"] {
        for e in std::fs::read_dir(root.join(kind)).unwrap().flatten() {
            if let Some(c) = classify(kind, &e.file_name().to_string_lossy()) {
                out.insert(c);
            }
        }
    }
    out
}

fn root_of(uri: &str) -> PathBuf {
    let rest = uri.split_once(':').unwrap().1;
    PathBuf::from(rest.split('?').next().unwrap())
}

/// dir: and btrfs: stores: one directory each under a base directory.
pub struct DirLike {
    scheme: &'static str,
    base: Lazy<PathBuf>,
    query: &'static str,
}

const FOREIGN: &[u8] = b"not made by vmpool";

fn run(cmd: &str, args: &[&str]) {
    let out = std::process::Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Fixture for DirLike {
    fn new_store(&self) -> String {
        format!(
            "{}:{}{}",
            self.scheme,
            self.base.join(next()).display(),
            self.query
        )
    }
    fn volumes(&self, uri: &str) -> BTreeSet<String> {
        list_dir_volumes(&root_of(uri))
    }
    fn plant_foreign(&self, uri: &str, vm: &uuid::Uuid) {
        let vms = root_of(uri).join("vms");
        if self.scheme == "btrfs" {
            let sv = vms.join(vm.to_string());
            if sv.exists() {
                run("btrfs", &["subvolume", "delete", sv.to_str().unwrap()]);
            }
            run("btrfs", &["subvolume", "create", sv.to_str().unwrap()]);
            std::fs::write(sv.join("disk.raw"), FOREIGN).unwrap();
        } else {
            for ext in ["raw", "qcow2"] {
                let _ = std::fs::remove_file(vms.join(format!("{vm}-disk0.{ext}")));
            }
            std::fs::write(vms.join(format!("{vm}-disk0.raw")), FOREIGN).unwrap();
        }
    }
    fn foreign_intact(&self, uri: &str, vm: &uuid::Uuid) -> bool {
        let vms = root_of(uri).join("vms");
        let p = if self.scheme == "btrfs" {
            vms.join(vm.to_string()).join("disk.raw")
        } else {
            vms.join(format!("{vm}-disk0.raw"))
        };
        std::fs::read(p).is_ok_and(|b| b == FOREIGN)
    }
}

fn temp_base() -> PathBuf {
    let base = std::env::var("VMPOOL_TEST_TMP")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    let p = base.join("vmpool-conformance");
    std::fs::create_dir_all(&p).unwrap();
    p
}

pub static DIR_QCOW2: Lazy<DirLike> = Lazy::new(|| DirLike {
    scheme: "dir",
    base: Lazy::new(temp_base),
    query: "?clone=qcow2",
});

pub static DIR_REFLINK: Lazy<DirLike> = Lazy::new(|| DirLike {
    scheme: "dir",
    base: Lazy::new(|| env_dir("VMPOOL_TEST_XFS_DIR", "a directory on XFS with reflink=1")),
    query: "?clone=reflink",
});

pub static BTRFS: Lazy<DirLike> = Lazy::new(|| DirLike {
    scheme: "btrfs",
    base: Lazy::new(|| env_dir("VMPOOL_TEST_BTRFS_DIR", "a directory on btrfs")),
    query: "",
});

/// zfs: stores, one child dataset each of `$VMPOOL_TEST_ZFS_DATASET`. Volumes are listed with
/// the `zfs` command (test tooling only).
pub struct Zfs {
    parent: Lazy<String>,
}

pub static ZFS: Lazy<Zfs> = Lazy::new(|| Zfs {
    parent: Lazy::new(|| {
        match std::env::var("VMPOOL_TEST_ZFS_DATASET") {
        Ok(v) if !v.is_empty() => v,
        _ => panic!("VMPOOL_TEST_ZFS_DATASET is not set: ZFS tests run inside the guest harness (make test-zfs)"),
    }
    }),
});

impl Zfs {
    fn zfs(args: &[&str]) -> std::process::Output {
        std::process::Command::new("zfs")
            .args(args)
            .output()
            .expect("zfs command")
    }
}

impl Fixture for Zfs {
    fn new_store(&self) -> String {
        format!("zfs:{}/{}", *self.parent, next())
    }
    fn plant_foreign(&self, uri: &str, vm: &uuid::Uuid) {
        let ds = uri.strip_prefix("zfs:").unwrap().split('?').next().unwrap();
        let name = format!("{ds}/vms/{vm}-disk0");
        let _ = Self::zfs(&["destroy", &name]);
        let out = Self::zfs(&["create", "-s", "-V", "16M", "-o", "vmpool:foreign=1", &name]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    fn foreign_intact(&self, uri: &str, vm: &uuid::Uuid) -> bool {
        let ds = uri.strip_prefix("zfs:").unwrap().split('?').next().unwrap();
        let name = format!("{ds}/vms/{vm}-disk0");
        let out = Self::zfs(&["get", "-H", "-o", "value", "vmpool:foreign", &name]);
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "1"
    }
    fn volumes(&self, uri: &str) -> BTreeSet<String> {
        let ds = uri.strip_prefix("zfs:").unwrap().split('?').next().unwrap();
        let out = std::process::Command::new("zfs")
            .args(["list", "-H", "-o", "name", "-t", "all", "-r"])
            .arg(format!("{ds}/images"))
            .arg(format!("{ds}/vms"))
            .output()
            .expect("zfs command");
        assert!(
            out.status.success(),
            "zfs list: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let names: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        let mut set = BTreeSet::new();
        for n in &names {
            let rel = n.strip_prefix(&format!("{ds}/")).unwrap();
            if rel == "images" || rel == "vms" {
                continue;
            }
            let (kind, leaf) = rel.split_once('/').unwrap();
            // An image's grown origins (`<uuid>-grown-<bytes>`, with @final: what bigger VM
            // disks are cloned from) are part of the image while it exists; after it, a leak.
            let vol = leaf.split('@').next().unwrap_or(leaf);
            if let Some((image, size)) = vol.split_once("-grown-") {
                if kind == "images"
                    && size.bytes().all(|b| b.is_ascii_digit())
                    && names.contains(&format!("{ds}/images/{image}"))
                {
                    continue;
                }
            }
            match leaf.split_once('@') {
                // An image is its zvol plus its @final snapshot; anything else is extra.
                Some((vol, "final"))
                    if kind == "images" && names.contains(&format!("{ds}/images/{vol}")) => {}
                Some(_) => {
                    set.insert(format!("other:{rel}"));
                }
                None => {
                    let c = classify(kind, leaf).unwrap();
                    if c.starts_with("image:") && !names.contains(&format!("{n}@final")) {
                        set.insert(format!("other:{rel} (no @final)"));
                    } else {
                        set.insert(c);
                    }
                }
            }
        }
        set
    }
}

/// A raw 64 GiB image clones with the same (tiny) I/O as a 1 GiB one.
pub fn raw_size_independence(f: &dyn Fixture, method: &str) {
    let tmp = scratch();
    let uri = f.new_store();
    let s = vmpool::Store::open(Some(&uri)).unwrap();
    let gib = 1u64 << 30;
    let mut io = Vec::new();
    for size in [gib, 64 * gib] {
        let src = make_raw(
            tmp.path(),
            &format!("{size}.raw"),
            size,
            &[(0, 1 << 20), (size - 4096, 4096)],
        );
        let m = s.import_json(&src, None, None).unwrap();
        let before = thread_io();
        let vm = s
            .create_vm(&payload(&m.uuid, "raw", "t", size / gib))
            .unwrap();
        let after = thread_io();
        assert_eq!(vm.clone_method, method);
        io.push((after.0 - before.0) + (after.1 - before.1));
        assert!(same_content(&src, &vm.disk_path, vm.disk_format));
    }
    assert!(
        io.iter().all(|&b| b < 1 << 20) && io[0].abs_diff(io[1]) < 64 << 10,
        "{io:?}"
    );
}
