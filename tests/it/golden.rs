//! Stores written by earlier versions stay readable and usable, forever.
//!
//! `tests/golden/v1/store` was made by vmpool 0.1.0 before the typed API (commit bf38011, the
//! `vmpoolctl` of that commit, `dir:` with qcow2 overlays): two images (raw and qcow2), two
//! VMs, an import killed after copying (a `-partial` file and its journal entry) and a VM
//! create killed after cloning (a disk and its journal entry). Its records have no `schema`
//! field; its journal entries carry the `image_format` field that later versions dropped.
//! Never regenerate these files: add a new `vN` directory when the format changes.

use crate::common::*;
use std::path::{Path, PathBuf};
use uuid::{uuid, Uuid};
use vmpool::Store;

const RAW: Uuid = uuid!("11111111-1111-4111-8111-111111111111");
const QCOW2: Uuid = uuid!("22222222-2222-4222-8222-222222222222");
const VM1: Uuid = uuid!("33333333-3333-4333-8333-333333333333");
const VM2: Uuid = uuid!("44444444-4444-4444-8444-444444444444");
const KILLED_VM: Uuid = uuid!("55555555-5555-4555-8555-555555555555");
const KILLED_IMPORT: Uuid = uuid!("66666666-6666-4666-8666-666666666666");

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/v1/store")
}

/// A copy of the golden store (tests must not change the committed files).
fn copy_store(dst: &Path) {
    let st = std::process::Command::new("cp")
        .args(["-a", "--sparse=always"])
        .arg(golden())
        .arg(dst)
        .status()
        .unwrap();
    assert!(st.success());
}

fn json_file(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

#[test]
fn a_v1_store_opens_and_works() {
    let tmp = scratch();
    let root = tmp.path().join("store");
    copy_store(&root);
    let s = Store::open(Some(&format!("dir:{}?clone=qcow2", root.display()))).unwrap();

    // Opening recovered both interrupted operations, reading their old journal entries.
    let rec = s.info().last_recovery;
    assert!(rec.errors.is_empty(), "{rec:?}");
    assert!(rec.kept.is_empty(), "{rec:?}");
    assert_eq!(rec.cleaned.len(), 2, "{rec:?}");
    assert!(!root
        .join(format!("images/{KILLED_IMPORT}-partial.raw"))
        .exists());
    assert!(!root.join(format!("vms/{KILLED_VM}-disk0.qcow2")).exists());
    assert_eq!(std::fs::read_dir(root.join(".journal")).unwrap().count(), 0);

    // Every record reads back field for field: the wire JSON equals the file written then.
    let images = s.images().unwrap();
    assert_eq!(
        images.iter().map(|m| m.uuid).collect::<Vec<_>>(),
        vec![QCOW2, RAW]
    );
    for m in &images {
        let file = json_file(&root.join(format!("images/{}.json", m.uuid)));
        let ours: serde_json::Value = serde_json::from_str(&image_json(m)).unwrap();
        assert_eq!(ours, file, "image {}", m.uuid);
    }
    assert_eq!(s.image(RAW).unwrap().tags["role"], "desktop");
    let vms = s.vms(None).unwrap();
    assert_eq!(vms.len(), 2);
    for v in &vms {
        // Every field the old record had reads back the same; fields added since (firmware,
        // mac, ...) come with their defaults.
        let file = json_file(&root.join(format!("vms/{}.json", v.uuid)));
        let ours: serde_json::Value = serde_json::from_str(&vm_json(v)).unwrap();
        for (k, val) in file.as_object().unwrap() {
            assert_eq!(&ours[k], val, "VM {} field {k}", v.uuid);
        }
        assert_eq!(ours["firmware"], "bios");
        assert_eq!(ours["mac"], vmpool::vm::mac_for(&v.uuid));
    }
    assert_eq!(s.vms(Some("alice")).unwrap()[0].uuid, VM1);

    // It works: new VMs from both old images show the guest the image's bytes (1 MiB with
    // "hello golden" at the start, as the images were made) and their records now carry a
    // schema; the old VMs delete with their disks, then the images.
    let src = tmp.path().join("golden-src.raw");
    let f = std::fs::File::create(&src).unwrap();
    f.set_len(1 << 20).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"hello golden", 0).unwrap();
    for image in [RAW, QCOW2] {
        let v = s.create_vm(&payload(&image, "new", "carol", 1)).unwrap();
        let rec = json_file(&root.join(format!("vms/{}.json", v.uuid)));
        assert_eq!(rec["schema"], 1);
        assert!(same_content(&src, &v.disk_path, v.disk_format), "{image}");
        s.delete_vm(v.uuid).unwrap();
    }
    for vm in [VM1, VM2] {
        s.delete_vm(vm).unwrap();
        assert!(!root.join(format!("vms/{vm}-disk0.qcow2")).exists());
    }
    s.delete_image(RAW).unwrap();
    s.delete_image(QCOW2).unwrap();
    assert!(s.images().unwrap().is_empty());
    let left: Vec<_> = std::fs::read_dir(root.join("vms"))
        .unwrap()
        .chain(std::fs::read_dir(root.join("images")).unwrap())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_record_of_a_newer_major_schema_is_refused_by_name() {
    let tmp = scratch();
    let root = tmp.path().join("store");
    copy_store(&root);
    let path = root.join(format!("vms/{VM1}.json"));
    let mut rec = json_file(&path);
    rec["schema"] = 2.into();
    rec["something_new"] = "x".into();
    std::fs::write(&path, serde_json::to_vec(&rec).unwrap()).unwrap();
    let s = Store::open(Some(&format!("dir:{}", root.display()))).unwrap();
    let e = s.vm(VM1).unwrap_err();
    assert_eq!(e.code(), Code::VMPOOL_RESULT_UNSUPPORTED);
    let msg = e.to_string();
    assert!(
        msg.contains(&path.display().to_string()) && msg.contains("newer vmpool"),
        "{msg}"
    );
    // The other VM is unaffected.
    assert_eq!(s.vm(VM2).unwrap().owner, "bob");
}

#[test]
fn a_record_with_fields_of_a_newer_minor_version_is_read() {
    let tmp = scratch();
    let root = tmp.path().join("store");
    copy_store(&root);
    let path = root.join(format!("images/{RAW}.json"));
    let mut rec = json_file(&path);
    rec["schema"] = 1.into();
    rec["signature"] = serde_json::json!({"alg": "ed25519"});
    std::fs::write(&path, serde_json::to_vec(&rec).unwrap()).unwrap();
    let s = Store::open(Some(&format!("dir:{}", root.display()))).unwrap();
    assert_eq!(s.image(RAW).unwrap().name, "golden-raw");
}
