//! ZFS-specific behaviour, on a real pool inside the guest harness (`make test-zfs`, which
//! sets `VMPOOL_TEST_ZFS_DATASET`). The `zfs` command is used here only to set up and inspect
//! (test tooling); the library never runs it.

use crate::common::*;
use std::process::Command;
use uuid::Uuid;
use vmpool::Store;

const NEEDS: &str = "needs VMPOOL_TEST_ZFS_DATASET: runs in the guest harness (make test-zfs)";

fn parent() -> String {
    std::env::var("VMPOOL_TEST_ZFS_DATASET").expect(NEEDS)
}

fn new_ds(tag: &str) -> String {
    format!(
        "{}/{tag}-{}",
        parent(),
        &Uuid::new_v4().simple().to_string()[..8]
    )
}

fn zfs(args: &[&str]) -> String {
    let out = Command::new("zfs")
        .args(args)
        .output()
        .expect("zfs command");
    assert!(
        out.status.success(),
        "zfs {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn prop(ds: &str, p: &str) -> u64 {
    zfs(&["get", "-Hp", "-o", "value", p, ds])
        .parse()
        .unwrap_or(0)
}

fn small_image(s: &Store) -> vmpool::Image {
    let tmp = scratch();
    let src = make_raw(tmp.path(), "i.raw", 64 << 20, &[(0, 1 << 20)]);
    s.import_json(&src, None, None).unwrap()
}

#[test]
#[ignore = "needs VMPOOL_TEST_ZFS_DATASET: runs in the guest harness (make test-zfs)"]
fn thick_option_sets_refreservation() {
    let thin = new_ds("thin");
    let s = Store::open(Some(&format!("zfs:{thin}"))).unwrap();
    let m = small_image(&s);
    let vm = s.create_vm(&payload(&m.uuid, "thin", "t", 2)).unwrap();
    let disk = format!("{thin}/vms/{}-disk0", vm.uuid);
    assert_eq!(prop(&disk, "volsize"), 2 << 30);
    assert_eq!(prop(&disk, "refreservation"), 0, "thin by default");

    let thick = new_ds("thick");
    let s = Store::open(Some(&format!("zfs:{thick}?thick=1"))).unwrap();
    let m = small_image(&s);
    let vm = s.create_vm(&payload(&m.uuid, "thick", "t", 2)).unwrap();
    let disk = format!("{thick}/vms/{}-disk0", vm.uuid);
    assert_eq!(prop(&disk, "volsize"), 2 << 30);
    assert!(
        prop(&disk, "refreservation") >= 2 << 30,
        "thick reserves the whole volume"
    );
}

#[test]
#[ignore = "needs VMPOOL_TEST_ZFS_DATASET: runs in the guest harness (make test-zfs)"]
fn clone_takes_no_space_whatever_the_image_size() {
    let ds = new_ds("space");
    let s = Store::open(Some(&format!("zfs:{ds}"))).unwrap();
    let tmp = scratch();
    for gib in [1u64, 64] {
        let q = make_qcow2(
            tmp.path(),
            &format!("{gib}.qcow2"),
            gib << 30,
            &[(0, 4 << 20)],
            false,
        );
        let m = s.import_json(&q, None, None).unwrap();
        let vm = s.create_vm(&payload(&m.uuid, "o1", "t", gib)).unwrap();
        let disk = format!("{ds}/vms/{}-disk0", vm.uuid);
        assert_eq!(prop(&disk, "volsize"), gib << 30);
        assert!(prop(&disk, "used") < 1 << 20, "a fresh clone uses no space");
        assert_eq!(
            zfs(&["get", "-H", "-o", "value", "origin", &disk]),
            format!("{ds}/images/{}@final", m.uuid)
        );
    }
}

/// Datasets that happen to carry the names vmpool would use, made by someone else, are
/// refused and never touched: not by the failing call, not by crash recovery.
#[test]
#[ignore = "needs VMPOOL_TEST_ZFS_DATASET: runs in the guest harness (make test-zfs)"]
fn colliding_foreign_datasets_are_never_touched() {
    let ds = new_ds("foreign");
    let uri = format!("zfs:{ds}");
    let s = Store::open(Some(&uri)).unwrap();
    let image = small_image(&s);
    let (u_partial, u_final, v) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let foreign = [
        format!("{ds}/images/{u_partial}-partial"),
        format!("{ds}/images/{u_final}"),
        format!("{ds}/vms/{v}-disk0"),
    ];
    for f in &foreign {
        zfs(&["create", "-s", "-V", "16M", f]);
    }
    let guids: Vec<String> = foreign
        .iter()
        .map(|f| zfs(&["get", "-H", "-o", "value", "guid", f]))
        .collect();
    let tmp = scratch();
    let src = make_raw(tmp.path(), "x.raw", 64 << 20, &[(0, 4096)]);

    let e = s
        .import_json(&src, Some(&format!(r#"{{"uuid":"{u_partial}"}}"#)), None)
        .unwrap_err();
    assert_eq!(e.code(), Code::VMPOOL_RESULT_ALREADY_EXISTS, "{e}");
    let e = s
        .import_json(&src, Some(&format!(r#"{{"uuid":"{u_final}"}}"#)), None)
        .unwrap_err();
    assert_eq!(e.code(), Code::VMPOOL_RESULT_ALREADY_EXISTS, "{e}");
    let p = format!(
        r#"{{"uuid":"{v}","alias":"x","owner":"o","image_uuid":"{}","vcpus":1,"ram_mib":128}}"#,
        image.uuid
    );
    let e = s.create_json(&p).unwrap_err();
    assert_eq!(e.code(), Code::VMPOOL_RESULT_ALREADY_EXISTS, "{e}");

    // An import of the colliding uuid killed after it made its staging volume: recovery
    // removes that volume and leaves the foreign one alone.
    let args = [
        "image",
        "import",
        src.to_str().unwrap(),
        "--uuid",
        &u_final.to_string(),
    ];
    ctl_killed_at(&uri, "import.copied", &args, None);
    let s = Store::open(Some(&uri)).unwrap();
    let info = s.info();
    assert!(info.last_recovery.errors.is_empty(), "{info:?}");
    assert!(!info.last_recovery.cleaned.is_empty(), "{info:?}");
    assert!(!Command::new("zfs")
        .args(["list", &format!("{ds}/images/{u_final}-partial")])
        .output()
        .unwrap()
        .status
        .success());

    let now: Vec<String> = foreign
        .iter()
        .map(|f| zfs(&["get", "-H", "-o", "value", "guid", f]))
        .collect();
    assert_eq!(guids, now, "foreign datasets were replaced");
    assert_eq!(s.images().unwrap().len(), 1);
    assert!(s.vms(None).unwrap().is_empty());
}

/// A disk bigger than its image is a clone of the image grown once per size (so a create
/// is one clone without properties); VM disks have no partition devices; a create's
/// journal entry is made durable by the clone. Deleting the image removes its grown
/// origins and what a crash left of making one, and nothing that is not vmpool's.
#[test]
#[ignore = "needs VMPOOL_TEST_ZFS_DATASET: runs in the guest harness (make test-zfs)"]
fn bigger_disks_clone_a_grown_origin() {
    let ds = new_ds("grown");
    let s = Store::open(Some(&format!("zfs:{ds}"))).unwrap();
    let get = |p: &str, d: &str| zfs(&["get", "-H", "-o", "value", p, d]);
    let exists = |d: &str| {
        Command::new("zfs")
            .args(["list", "-t", "all", d])
            .output()
            .unwrap()
            .status
            .success()
    };
    assert_eq!(get("volmode", &format!("{ds}/vms")), "dev");
    assert!(s.info().capabilities.clone_syncs_catalog);
    let m = small_image(&s);
    let image = format!("{ds}/images/{}", m.uuid);
    let grown = format!("{image}-grown-{}", 2u64 << 30);
    let mut vms = Vec::new();
    for alias in ["a", "b"] {
        let vm = s.create_vm(&payload(&m.uuid, alias, "t", 2)).unwrap();
        let disk = format!("{ds}/vms/{}-disk0", vm.uuid);
        assert_eq!(get("origin", &disk), format!("{grown}@final"));
        assert_eq!(prop(&disk, "volsize"), 2 << 30);
        assert_eq!(get("readonly", &disk), "off");
        assert_eq!(vm.disk_size_bytes, 2 << 30);
        vms.push(vm.uuid);
    }
    assert_eq!(get("readonly", &grown), "on");
    assert_eq!(get("vmpool:grown-origin", &grown), "1");
    // What a crash while making one leaves (marked, under a temp name), and a dataset of
    // someone else's at the name of another size.
    let leftover = format!("{grown}-0123456789ab");
    zfs(&[
        "clone",
        "-o",
        "vmpool:grown-origin=1",
        &format!("{image}@final"),
        &leftover,
    ]);
    let foreign = format!("{image}-grown-{}", 4u64 << 30);
    zfs(&["create", "-s", "-V", "16M", &foreign]);
    // That size is then grown by the clone's own volsize, from the image.
    let vm = s.create_vm(&payload(&m.uuid, "c", "t", 4)).unwrap();
    let disk = format!("{ds}/vms/{}-disk0", vm.uuid);
    assert_eq!(get("origin", &disk), format!("{image}@final"));
    assert_eq!(prop(&disk, "volsize"), 4 << 30);
    vms.push(vm.uuid);
    for u in vms {
        s.delete_vm(u).unwrap();
    }
    s.delete_image(m.uuid).unwrap();
    assert!(!exists(&grown) && !exists(&leftover) && !exists(&image));
    assert!(exists(&foreign), "someone else's dataset was removed");
    // The catalog elsewhere (`?catalog=`): entries are synced as everywhere else.
    let other = new_ds("elsewhere");
    let dir = scratch();
    let s = Store::open(Some(&format!(
        "zfs:{other}?catalog={}",
        dir.path().join("cat").display()
    )))
    .unwrap();
    assert!(!s.driver().clone_syncs_catalog());
}

#[test]
#[ignore = "needs VMPOOL_TEST_ZFS_DATASET: runs in the guest harness (make test-zfs)"]
fn store_on_a_non_store_dataset_is_refused() {
    let ds = new_ds("occupied");
    zfs(&["create", &ds]);
    let mnt = zfs(&["get", "-H", "-o", "value", "mountpoint", &ds]);
    std::fs::write(format!("{mnt}/somebody-elses-file"), b"data").unwrap();
    let e = Store::open(Some(&format!("zfs:{ds}"))).unwrap_err();
    assert_eq!(e.code(), Code::VMPOOL_RESULT_NOT_A_STORE, "{e}");
    assert!(!Command::new("zfs")
        .args(["list", &format!("{ds}/images")])
        .output()
        .unwrap()
        .status
        .success());
    let e = Store::open(Some(&format!("zfs:{}/missing/child", parent()))).unwrap_err();
    assert_eq!(e.code(), Code::VMPOOL_RESULT_NOT_FOUND, "{e}");
}
