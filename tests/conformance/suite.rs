//! The driver conformance suite: every storage driver must pass every test here, unchanged.
//! A driver plugs in through [`Fixture`], which makes fresh stores and lists the volumes that
//! exist on its back end (so tests can check that nothing leaked or vanished).

use crate::common::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use uuid::Uuid;
use vmpool::{failpoint, DiskFormat, Error, Store};

pub trait Fixture: Send + Sync {
    /// URI of a new, empty store.
    fn new_store(&self) -> String;
    /// Volumes on the back end for this store, as `image:<uuid>`, `vm:<uuid>`,
    /// `staging:<uuid>` (an unfinished import) or `other:<name>`.
    fn volumes(&self, uri: &str) -> BTreeSet<String>;
    /// Put something that is not a clone of any image at VM `vm`'s disk name (replacing
    /// whatever is there), with the back end's own tools, as an operator might.
    fn plant_foreign(&self, uri: &str, vm: &Uuid);
    /// Whether what `plant_foreign` put there is still there, unchanged.
    fn foreign_intact(&self, uri: &str, vm: &Uuid) -> bool;
}

const GIB: u64 = 1 << 30;

fn expect(images: &[Uuid], vms: &[Uuid]) -> BTreeSet<String> {
    images
        .iter()
        .map(|u| format!("image:{u}"))
        .chain(vms.iter().map(|u| format!("vm:{u}")))
        .collect()
}

fn code(r: Result<impl std::fmt::Debug, Error>) -> Code {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.code(),
    }
}

/// Nothing in the journal: no operation left half-done.
fn journal_empty(s: &Store) -> bool {
    std::fs::read_dir(s.catalog_dir().join(".journal"))
        .unwrap()
        .flatten()
        .all(|e| e.file_name().to_string_lossy().starts_with('.'))
}

/// Size of the raw image most tests use: small, because the ZFS suite runs under emulation
/// where hashing runs at tens of MB/s.
const SMALL: u64 = 64 << 20;

/// Images used across tests: a sparse raw with data in three places.
fn small_raw(dir: &Path) -> PathBuf {
    make_raw(
        dir,
        "small.raw",
        SMALL,
        &[(0, 65536), (30 << 20, 1 << 20), (SMALL - 4096, 4096)],
    )
}

fn import(s: &Store, p: &Path, json: &str) -> vmpool::Image {
    s.import_json(p, Some(json), None)
        .unwrap_or_else(|e| panic!("import {}: {e}", p.display()))
}

pub fn import_raw_ok(f: &dyn Fixture) {
    let tmp = scratch();
    let uri = f.new_store();
    let s = Store::open(Some(&uri)).unwrap();
    let src = small_raw(tmp.path());
    let sum = sha256_file(&src);
    let m = import(
        &s,
        &src,
        &format!(
            r#"{{"name":"deb","version":"12.1","os":"linux","sha256":"{sum}","tags":{{"desktop":true}}}}"#
        ),
    );
    assert_eq!(
        (m.name.as_str(), m.version.as_str(), m.os.as_str()),
        ("deb", "12.1", "linux")
    );
    assert_eq!(m.format, DiskFormat::Raw);
    assert_eq!(m.size_bytes, SMALL);
    assert_eq!(m.sha256, sum);
    assert_eq!(m.tags["desktop"], true);
    assert_eq!(s.image(m.uuid).unwrap(), m);
    assert_eq!(s.images().unwrap(), vec![m.clone()]);
    assert_eq!(f.volumes(&uri), expect(&[m.uuid], &[]));
    // Without a sha256 it is computed; the same bytes give the same sum.
    let m2 = import(&s, &src, r#"{"name":"deb2"}"#);
    assert_eq!(m2.sha256, sum);
    // The stored image reads back as the source.
    let vm = s.create_vm(&payload(&m.uuid, "check", "t", 1)).unwrap();
    assert!(same_content(&src, &vm.disk_path, vm.disk_format));
    assert!(journal_empty(&s));
}

pub fn import_qcow2_ok(f: &dyn Fixture) {
    let tmp = scratch();
    let uri = f.new_store();
    let s = Store::open(Some(&uri)).unwrap();
    let data = [(0, 1 << 20), (512 << 20, 3 << 20), (2 * GIB - 65536, 65536)];
    for compressed in [false, true] {
        let name = format!("img-{compressed}.qcow2");
        let q = make_qcow2(tmp.path(), &name, 2 * GIB, &data, compressed);
        let m = import(&s, &q, "{}");
        assert_eq!(m.format, DiskFormat::Qcow2);
        assert_eq!(m.size_bytes, 2 * GIB);
        assert_eq!(m.sha256, sha256_file(&q));
        let vm = s.create_vm(&payload(&m.uuid, "q", "t", 3)).unwrap();
        let raw = make_raw(tmp.path(), "expected.raw", 2 * GIB, &data);
        assert!(
            same_content(&raw, &vm.disk_path, vm.disk_format),
            "compressed={compressed}"
        );
    }
    assert!(journal_empty(&s));
}

pub fn import_bad_checksum(f: &dyn Fixture) {
    let tmp = scratch();
    let uri = f.new_store();
    let s = Store::open(Some(&uri)).unwrap();
    let src = small_raw(tmp.path());
    let wrong = "0".repeat(64);
    let r = s.import_json(&src, Some(&format!(r#"{{"sha256":"{wrong}"}}"#)), None);
    assert_eq!(code(r), Code::VMPOOL_RESULT_CHECKSUM_MISMATCH);
    assert!(s.images().unwrap().is_empty());
    assert_eq!(f.volumes(&uri), expect(&[], &[]));
    assert!(journal_empty(&s));
}

pub fn import_truncated(f: &dyn Fixture) {
    let tmp = scratch();
    let uri = f.new_store();
    let s = Store::open(Some(&uri)).unwrap();
    // qcow2 cut in half: its tables point past the end.
    let q = make_qcow2(
        tmp.path(),
        "cut.qcow2",
        GIB,
        &[(0, 4 << 20), (900 << 20, 4 << 20)],
        false,
    );
    let len = std::fs::metadata(&q).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&q)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    assert_eq!(
        code(s.import_json(&q, None, None)),
        Code::VMPOOL_RESULT_CORRUPT_IMAGE
    );
    // Raw, with the checksum of the whole file: the sum catches it.
    let raw = small_raw(tmp.path());
    let sum = sha256_file(&raw);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&raw)
        .unwrap()
        .set_len(SMALL / 2)
        .unwrap();
    let r = s.import_json(&raw, Some(&format!(r#"{{"sha256":"{sum}"}}"#)), None);
    assert_eq!(code(r), Code::VMPOOL_RESULT_CHECKSUM_MISMATCH);
    // Raw, with the expected size: refused before any copying.
    let r = s.import_json(&raw, Some(&format!(r#"{{"size_bytes":{SMALL}}}"#)), None);
    assert_eq!(code(r), Code::VMPOOL_RESULT_CORRUPT_IMAGE);
    assert!(s.images().unwrap().is_empty());
    assert_eq!(f.volumes(&uri), expect(&[], &[]));
    assert!(journal_empty(&s));
}

/// Kill `vmpoolctl` (SIGKILL, as the OOM killer would) at each step of an import; the next
/// open must show nothing and remove what it left. Killed after the manifest was written,
/// the import is complete and stays.
pub fn import_killed_midway(f: &dyn Fixture) {
    let tmp = scratch();
    let src = small_raw(tmp.path());
    let q = make_qcow2(tmp.path(), "k.qcow2", GIB, &[(0, 1 << 20)], false);
    let q_raw = make_raw(tmp.path(), "k.raw", GIB, &[(0, 1 << 20)]);
    for (point, survives) in [
        ("import.staged", false),
        ("import.copied", false),
        ("import.sealed", false),
        ("import.recorded", true),
    ] {
        for file in [&src, &q] {
            let uri = f.new_store();
            let uuid = Uuid::new_v4();
            let args = [
                "image",
                "import",
                file.to_str().unwrap(),
                "--uuid",
                &uuid.to_string(),
            ];
            ctl_killed_at(&uri, point, &args, None);
            let s = Store::open(Some(&uri)).unwrap();
            let listed: Vec<Uuid> = s.images().unwrap().iter().map(|m| m.uuid).collect();
            if survives {
                assert_eq!(listed, vec![uuid], "{point}");
                assert_eq!(f.volumes(&uri), expect(&[uuid], &[]), "{point}");
                let vm = s.create_vm(&payload(&uuid, "after", "t", 2)).unwrap();
                let raw = if *file == q { &q_raw } else { file };
                assert!(same_content(raw, &vm.disk_path, vm.disk_format));
            } else {
                assert!(listed.is_empty(), "{point}: {listed:?}");
                assert_eq!(
                    f.volumes(&uri),
                    expect(&[], &[]),
                    "{point} {}",
                    file.display()
                );
                // The uuid is free again.
                import(&s, file, &format!(r#"{{"uuid":"{uuid}"}}"#));
            }
            assert!(journal_empty(&s), "{point}");
        }
    }
}

/// An error at each step of an import rolls back at once, without waiting for a reopen.
pub fn import_failure_each_step(f: &dyn Fixture) {
    let tmp = scratch();
    let uri = f.new_store();
    let s = Store::open(Some(&uri)).unwrap();
    let src = small_raw(tmp.path());
    for point in [
        "import.staged",
        "import.copied",
        "import.sealed",
        "import.recorded",
    ] {
        failpoint::arm(point, "error");
        let r = s.import_json(&src, None, None);
        failpoint::disarm_all();
        assert_eq!(code(r), Code::VMPOOL_RESULT_INTERNAL, "{point}");
        assert!(s.images().unwrap().is_empty(), "{point}");
        assert_eq!(f.volumes(&uri), expect(&[], &[]), "{point}");
        assert!(journal_empty(&s), "{point}");
    }
    // Cancelling through the progress callback is the same.
    let mut calls = 0;
    let mut cancel = |_d: u64, _t: u64| {
        calls += 1;
        calls < 3
    };
    assert_eq!(
        code(s.import_json(&src, None, Some(&mut cancel))),
        Code::VMPOOL_RESULT_CANCELLED
    );
    assert_eq!(f.volumes(&uri), expect(&[], &[]));
}

pub fn import_refusals(f: &dyn Fixture) {
    let tmp = scratch();
    let uri = f.new_store();
    let s = Store::open(Some(&uri)).unwrap();
    let src = small_raw(tmp.path());
    let vmdk = tmp.path().join("x.vmdk");
    std::fs::write(&vmdk, b"KDMV\x01\x00\x00\x00 not really").unwrap();
    let cases: Vec<(PathBuf, &str, Code)> = vec![
        (
            tmp.path().join("missing.raw"),
            "{}",
            Code::VMPOOL_RESULT_NOT_FOUND,
        ),
        (
            tmp.path().to_owned(),
            "{}",
            Code::VMPOOL_RESULT_INVALID_ARGUMENT,
        ),
        (src.clone(), "{", Code::VMPOOL_RESULT_INVALID_JSON),
        (
            src.clone(),
            r#"{"colour":"red"}"#,
            Code::VMPOOL_RESULT_INVALID_JSON,
        ),
        (
            src.clone(),
            r#"{"name":"../etc"}"#,
            Code::VMPOOL_RESULT_INVALID_ARGUMENT,
        ),
        (
            src.clone(),
            r#"{"name":"a@b"}"#,
            Code::VMPOOL_RESULT_INVALID_ARGUMENT,
        ),
        (
            src.clone(),
            r#"{"uuid":"not-a-uuid"}"#,
            Code::VMPOOL_RESULT_INVALID_ARGUMENT,
        ),
        (
            src.clone(),
            r#"{"format":"qcow2"}"#,
            Code::VMPOOL_RESULT_INVALID_ARGUMENT,
        ),
        (
            src.clone(),
            r#"{"sha256":"xyz"}"#,
            Code::VMPOOL_RESULT_INVALID_ARGUMENT,
        ),
        (vmdk, "{}", Code::VMPOOL_RESULT_UNSUPPORTED_FORMAT),
    ];
    for (path, json, want) in cases {
        assert_eq!(
            code(s.import_json(&path, Some(json), None)),
            want,
            "{} {json}",
            path.display()
        );
    }
    // An image bigger than the store allows.
    let small_store = format!(
        "{}{}max_image_gib=1",
        f.new_store(),
        if uri.contains('?') { "&" } else { "?" }
    );
    let s2 = Store::open(Some(&small_store)).unwrap();
    let big = make_raw(tmp.path(), "big.raw", 2 * GIB, &[]);
    assert_eq!(
        code(s2.import_json(&big, None, None)),
        Code::VMPOOL_RESULT_INVALID_ARGUMENT
    );
    // Duplicate uuid.
    let m = import(&s, &src, "{}");
    let r = s.import_json(&src, Some(&format!(r#"{{"uuid":"{}"}}"#, m.uuid)), None);
    assert_eq!(code(r), Code::VMPOOL_RESULT_ALREADY_EXISTS);
    assert_eq!(s.images().unwrap().len(), 1);
    assert_eq!(f.volumes(&uri), expect(&[m.uuid], &[]));
    assert!(journal_empty(&s));
}

/// A VM disk is made without reading or writing the image's data: the I/O this thread does
/// during a create is the same for a 1 GiB and a 64 GiB image, and tiny.
pub fn clone_constant_in_image_size(f: &dyn Fixture) {
    let tmp = scratch();
    let uri = f.new_store();
    let s = Store::open(Some(&uri)).unwrap();
    let data = [(0, 8 << 20), (GIB / 2, 8 << 20)];
    let small = import(
        &s,
        &make_qcow2(tmp.path(), "1g.qcow2", GIB, &data, false),
        r#"{"name":"one"}"#,
    );
    let big = import(
        &s,
        &make_qcow2(tmp.path(), "64g.qcow2", 64 * GIB, &data, false),
        r#"{"name":"sixtyfour"}"#,
    );
    let mut io = Vec::new();
    for m in [&small, &big] {
        let before = thread_io();
        let vm = s
            .create_vm(&payload(&m.uuid, "o1", "t", m.size_bytes / GIB))
            .unwrap();
        let after = thread_io();
        let moved = (after.0 - before.0) + (after.1 - before.1);
        io.push(moved);
        assert!(
            moved < (1 << 20),
            "create from a {} GiB image moved {moved} bytes",
            m.size_bytes / GIB
        );
        assert_eq!(disk_size(&vm.disk_path, vm.disk_format), m.size_bytes);
    }
    let diff = io[0].abs_diff(io[1]);
    assert!(diff < 64 << 10, "I/O differs with image size: {io:?}");
}

pub fn clone_grows_never_shrinks(f: &dyn Fixture) {
    let tmp = scratch();
    let uri = f.new_store();
    let s = Store::open(Some(&uri)).unwrap();
    let data = [(0, 4096), (2 * GIB - 4096, 4096)];
    let m = import(
        &s,
        &make_qcow2(tmp.path(), "2g.qcow2", 2 * GIB, &data, false),
        "{}",
    );
    let src = make_raw(tmp.path(), "2g.raw", 2 * GIB, &data);
    let vm = s.create_vm(&payload(&m.uuid, "grown", "t", 20)).unwrap();
    assert_eq!(vm.disk_gib, 20);
    assert_eq!(vm.disk_size_bytes, 20 * GIB);
    assert_eq!(disk_size(&vm.disk_path, vm.disk_format), 20 * GIB);
    assert!(same_content(&src, &vm.disk_path, vm.disk_format));
    // Same size: fine. Without disk_gib: the image's size.
    let same = s.create_vm(&payload(&m.uuid, "same", "t", 2)).unwrap();
    assert_eq!(disk_size(&same.disk_path, same.disk_format), 2 * GIB);
    let p = format!(
        r#"{{"alias":"dflt","owner":"t","image_uuid":"{}","vcpus":1,"ram_mib":512}}"#,
        m.uuid
    );
    let dflt = s.create_json(&p).unwrap();
    assert_eq!(
        (dflt.disk_gib, disk_size(&dflt.disk_path, dflt.disk_format)),
        (2, 2 * GIB)
    );
    // Smaller than the image: refused, nothing made.
    let before = f.volumes(&uri);
    assert_eq!(
        code(s.create_vm(&payload(&m.uuid, "small", "t", 1))),
        Code::VMPOOL_RESULT_INVALID_ARGUMENT
    );
    assert_eq!(f.volumes(&uri), before);
    assert_eq!(s.vms(None).unwrap().len(), 3);
}

pub fn vm_lifecycle(f: &dyn Fixture) {
    let tmp = scratch();
    let uri = f.new_store();
    let s = Store::open(Some(&uri)).unwrap();
    let m = import(&s, &small_raw(tmp.path()), "{}");
    let a = s.create_vm(&payload(&m.uuid, "a", "alice", 2)).unwrap();
    let b = s.create_vm(&payload(&m.uuid, "b", "bob", 2)).unwrap();
    let fixed = Uuid::new_v4();
    let c = s
        .create_json(&format!(r#"{{"uuid":"{fixed}","alias":"c","owner":"alice","image_uuid":"{}","vcpus":1,"ram_mib":256,"disk_gib":1}}"#, m.uuid))
        .unwrap();
    assert_eq!(c.uuid, fixed);
    assert_eq!((a.vcpus, a.ram_mib, a.image_uuid), (2, 2048, m.uuid));
    assert_eq!(serde_json::to_value(a.state).unwrap(), "stopped");
    assert_eq!(s.vm(a.uuid).unwrap(), a);
    let alice: Vec<Uuid> = s
        .vms(Some("alice"))
        .unwrap()
        .iter()
        .map(|r| r.uuid)
        .collect();
    assert_eq!(alice.len(), 2);
    assert!(alice.contains(&a.uuid) && alice.contains(&c.uuid));
    assert_eq!(s.vms(Some("nobody")).unwrap().len(), 0);
    assert_eq!(s.vms(None).unwrap().len(), 3);
    assert_eq!(
        f.volumes(&uri),
        expect(&[m.uuid], &[a.uuid, b.uuid, c.uuid])
    );
    // Another handle (another worker) sees the same.
    let s2 = Store::open(Some(&uri)).unwrap();
    assert_eq!(s2.vm(b.uuid).unwrap(), b);

    s.delete_vm(b.uuid).unwrap();
    assert_eq!(code(s.vm(b.uuid)), Code::VMPOOL_RESULT_NOT_FOUND);
    assert_eq!(code(s.delete_vm(b.uuid)), Code::VMPOOL_RESULT_NOT_FOUND);
    assert_eq!(
        code(s.delete_vm(Uuid::new_v4())),
        Code::VMPOOL_RESULT_NOT_FOUND
    );
    assert_eq!(
        code(vmpool::validate::uuid("VM uuid", "nope")),
        Code::VMPOOL_RESULT_INVALID_ARGUMENT
    );
    assert_eq!(
        code(vmpool::validate::uuid("VM uuid", "../../etc/passwd")),
        Code::VMPOOL_RESULT_INVALID_ARGUMENT
    );
    assert_eq!(f.volumes(&uri), expect(&[m.uuid], &[a.uuid, c.uuid]));
    // A uuid in use cannot be created again.
    let again = format!(
        r#"{{"uuid":"{fixed}","alias":"c2","owner":"x","image_uuid":"{}","vcpus":1,"ram_mib":256}}"#,
        m.uuid
    );
    assert_eq!(
        code(s.create_json(&again)),
        Code::VMPOOL_RESULT_ALREADY_EXISTS
    );
    assert_eq!(s.vm(fixed).unwrap(), c);
    assert!(journal_empty(&s));
}

pub fn vm_refusals(f: &dyn Fixture) {
    let tmp = scratch();
    let uri = f.new_store();
    let s = Store::open(Some(&format!(
        "{uri}{}max_disk_gib=100&max_vcpus=8",
        if uri.contains('?') { "&" } else { "?" }
    )))
    .unwrap();
    let m = import(&s, &small_raw(tmp.path()), "{}");
    let img = m.uuid;
    let p = |extra: &str| {
        format!(
            r#"{{"alias":"a","owner":"o","image_uuid":"{img}","vcpus":2,"ram_mib":1024{extra}}}"#
        )
    };
    let cases: Vec<(String, Code)> = vec![
        ("{".into(), Code::VMPOOL_RESULT_INVALID_JSON),
        ("[]".into(), Code::VMPOOL_RESULT_INVALID_JSON),
        (p(r#","colour":"red""#), Code::VMPOOL_RESULT_INVALID_JSON),
        (p(r#","disk_gib":"big""#), Code::VMPOOL_RESULT_INVALID_JSON),
        (
            format!(r#"{{"alias":"a","image_uuid":"{img}","vcpus":2,"ram_mib":1024}}"#),
            Code::VMPOOL_RESULT_INVALID_JSON,
        ),
        (p(r#","disk_gib":0"#), Code::VMPOOL_RESULT_INVALID_ARGUMENT),
        (
            p(r#","disk_gib":101"#),
            Code::VMPOOL_RESULT_INVALID_ARGUMENT,
        ),
        (p(r#","disk_gib":-5"#), Code::VMPOOL_RESULT_INVALID_ARGUMENT),
        (p(r#","uuid":"xyz""#), Code::VMPOOL_RESULT_INVALID_ARGUMENT),
        (
            p("").replace(r#""vcpus":2"#, r#""vcpus":0"#),
            Code::VMPOOL_RESULT_INVALID_ARGUMENT,
        ),
        (
            p("").replace(r#""vcpus":2"#, r#""vcpus":9"#),
            Code::VMPOOL_RESULT_INVALID_ARGUMENT,
        ),
        (
            p("").replace(r#""ram_mib":1024"#, r#""ram_mib":1"#),
            Code::VMPOOL_RESULT_INVALID_ARGUMENT,
        ),
        (
            p("").replace(r#""alias":"a""#, r#""alias":"a/b""#),
            Code::VMPOOL_RESULT_INVALID_ARGUMENT,
        ),
        (
            p("").replace(r#""alias":"a""#, r#""alias":"..""#),
            Code::VMPOOL_RESULT_INVALID_ARGUMENT,
        ),
        (
            p("").replace(r#""owner":"o""#, r#""owner":"o@example.com""#),
            Code::VMPOOL_RESULT_INVALID_ARGUMENT,
        ),
        (
            p("").replace(r#""owner":"o""#, r#""owner":"o\u0000x""#),
            Code::VMPOOL_RESULT_INVALID_ARGUMENT,
        ),
        (
            p("").replace(r#""owner":"o""#, r#""owner":"o\nx""#),
            Code::VMPOOL_RESULT_INVALID_ARGUMENT,
        ),
        (
            p("").replace(
                r#""alias":"a""#,
                &format!(r#""alias":"{}""#, "a".repeat(65)),
            ),
            Code::VMPOOL_RESULT_INVALID_ARGUMENT,
        ),
        (
            p("").replace(&img.to_string(), &Uuid::new_v4().to_string()),
            Code::VMPOOL_RESULT_NOT_FOUND,
        ),
    ];
    let before = f.volumes(&uri);
    for (json, want) in cases {
        assert_eq!(code(s.create_json(&json)), want, "{json}");
    }
    assert_eq!(f.volumes(&uri), before);
    assert!(s.vms(None).unwrap().is_empty());
    assert!(journal_empty(&s));
}

pub fn image_delete_with_dependents(f: &dyn Fixture) {
    let tmp = scratch();
    let uri = f.new_store();
    let s = Store::open(Some(&uri)).unwrap();
    let m = import(&s, &small_raw(tmp.path()), "{}");
    let other = import(&s, &small_raw(tmp.path()), r#"{"name":"other"}"#);
    let v1 = s.create_vm(&payload(&m.uuid, "first", "t", 1)).unwrap();
    let v2 = s.create_vm(&payload(&m.uuid, "second", "t", 1)).unwrap();
    let e = s.delete_image(m.uuid).unwrap_err();
    assert_eq!(e.code(), Code::VMPOOL_RESULT_IN_USE);
    let msg = e.to_string();
    assert!(
        msg.contains(&v1.uuid.to_string()) && msg.contains("second"),
        "{msg}"
    );
    assert_eq!(
        f.volumes(&uri),
        expect(&[m.uuid, other.uuid], &[v1.uuid, v2.uuid])
    );
    s.delete_vm(v1.uuid).unwrap();
    assert_eq!(code(s.delete_image(m.uuid)), Code::VMPOOL_RESULT_IN_USE);
    s.delete_vm(v2.uuid).unwrap();
    s.delete_image(m.uuid).unwrap();
    assert_eq!(code(s.image(m.uuid)), Code::VMPOOL_RESULT_NOT_FOUND);
    assert_eq!(code(s.delete_image(m.uuid)), Code::VMPOOL_RESULT_NOT_FOUND);
    assert_eq!(f.volumes(&uri), expect(&[other.uuid], &[]));
    s.delete_image(other.uuid).unwrap();
    assert_eq!(f.volumes(&uri), expect(&[], &[]));
    assert!(journal_empty(&s));
}

/// Kill the CLI in the middle of a VM create, a VM delete and an image delete.
pub fn killed_midway_vm_and_delete(f: &dyn Fixture) {
    let tmp = scratch();
    let uri = f.new_store();
    let s = Store::open(Some(&uri)).unwrap();
    let m = import(&s, &small_raw(tmp.path()), "{}");
    let kill =
        |point: &str, args: &[&str], stdin: Option<&str>| ctl_killed_at(&uri, point, args, stdin);
    // Create killed after cloning, before the record: no VM, no disk after reopen.
    kill(
        "vm_create.cloned",
        &["vm", "create", "-"],
        Some(&payload_json(&m.uuid, "killed", "t", 2)),
    );
    let s = Store::open(Some(&uri)).unwrap();
    assert!(s.vms(None).unwrap().is_empty());
    assert_eq!(f.volumes(&uri), expect(&[m.uuid], &[]));
    // Create killed after the record: the VM is complete.
    kill(
        "vm_create.recorded",
        &["vm", "create", "-"],
        Some(&payload_json(&m.uuid, "kept", "t", 2)),
    );
    let s = Store::open(Some(&uri)).unwrap();
    let kept = s.vms(None).unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(f.volumes(&uri), expect(&[m.uuid], &[kept[0].uuid]));
    // Delete killed after the record went: the next open finishes it.
    kill(
        "vm_delete.unlisted",
        &["vm", "delete", &kept[0].uuid.to_string()],
        None,
    );
    let s = Store::open(Some(&uri)).unwrap();
    assert!(s.vms(None).unwrap().is_empty());
    assert_eq!(f.volumes(&uri), expect(&[m.uuid], &[]));
    kill(
        "image_delete.unlisted",
        &["image", "delete", &m.uuid.to_string()],
        None,
    );
    let s = Store::open(Some(&uri)).unwrap();
    assert!(s.images().unwrap().is_empty());
    assert_eq!(f.volumes(&uri), expect(&[], &[]));
    assert!(journal_empty(&s));
}

pub fn concurrent_creates_threads(f: &dyn Fixture) {
    let tmp = scratch();
    let uri = f.new_store();
    let s = Store::open(Some(&uri)).unwrap();
    let m = import(&s, &small_raw(tmp.path()), "{}");
    let made: Vec<Uuid> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..8)
            .map(|t| {
                let s = &s;
                sc.spawn(move || {
                    (0..4)
                        .map(|i| {
                            s.create_vm(&payload(
                                &m.uuid,
                                &format!("t{t}-{i}"),
                                &format!("u{t}"),
                                1,
                            ))
                            .unwrap()
                            .uuid
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(made.iter().collect::<BTreeSet<_>>().len(), 32);
    assert_eq!(s.vms(None).unwrap().len(), 32);
    assert_eq!(s.vms(Some("u3")).unwrap().len(), 4);
    assert_eq!(f.volumes(&uri), expect(&[m.uuid], &made));
    // The same uuid from eight threads at once: exactly one wins.
    let fixed = Uuid::new_v4();
    let p = format!(
        r#"{{"uuid":"{fixed}","alias":"race","owner":"o","image_uuid":"{}","vcpus":1,"ram_mib":128}}"#,
        m.uuid
    );
    let results: Vec<Result<_, _>> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..8).map(|_| sc.spawn(|| s.create_json(&p))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(r.code(), Code::VMPOOL_RESULT_ALREADY_EXISTS, "{r}");
    }
    assert_eq!(s.vms(None).unwrap().len(), 33);
    assert!(journal_empty(&s));
}

pub fn concurrent_creates_processes(f: &dyn Fixture) {
    let tmp = scratch();
    let uri = f.new_store();
    let s = Store::open(Some(&uri)).unwrap();
    let m = import(&s, &small_raw(tmp.path()), "{}");
    let spawn = |p: String| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_vmpoolctl"));
        c.args(["--store", &uri, "--json", "vm", "create", "-"]);
        c.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut ch = c.spawn().unwrap();
        use std::io::Write;
        ch.stdin.take().unwrap().write_all(p.as_bytes()).unwrap();
        ch
    };
    let children: Vec<_> = (0..12)
        .map(|i| spawn(payload_json(&m.uuid, &format!("p{i}"), "procs", 1)))
        .collect();
    let mut made = Vec::new();
    for ch in children {
        let out = ch.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        made.push(Uuid::try_parse(r["uuid"].as_str().unwrap()).unwrap());
    }
    assert_eq!(s.vms(Some("procs")).unwrap().len(), 12);
    assert_eq!(f.volumes(&uri), expect(&[m.uuid], &made));
    let fixed = Uuid::new_v4();
    let p = format!(
        r#"{{"uuid":"{fixed}","alias":"race","owner":"o","image_uuid":"{}","vcpus":1,"ram_mib":128}}"#,
        m.uuid
    );
    let children: Vec<_> = (0..6).map(|_| spawn(p.clone())).collect();
    let codes: Vec<i32> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap().status.code().unwrap())
        .collect();
    assert_eq!(codes.iter().filter(|&&c| c == 0).count(), 1, "{codes:?}");
    assert!(
        codes
            .iter()
            .all(|&c| c == 0 || c == Code::VMPOOL_RESULT_ALREADY_EXISTS as i32),
        "{codes:?}"
    );
    assert_eq!(s.vms(None).unwrap().len(), 13);
    assert!(journal_empty(&s));
}

/// The CLI prints exactly what the library returns, and exits with its result codes.
pub fn cli_matches_library(f: &dyn Fixture) {
    let tmp = scratch();
    let uri = f.new_store();
    let s = Store::open(Some(&uri)).unwrap();
    let src = small_raw(tmp.path());
    let out = ctl(
        &uri,
        &[
            "image",
            "import",
            src.to_str().unwrap(),
            "--name",
            "cli",
            "--json",
        ],
        &[],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8(out.stdout).unwrap();
    let v: serde_json::Value = serde_json::from_str(&printed).unwrap();
    let m = s
        .image(Uuid::try_parse(v["uuid"].as_str().unwrap()).unwrap())
        .unwrap();
    assert_eq!(printed.trim(), image_json(&m));
    let out = ctl(
        &uri,
        &["--json", "image", "get", &m.uuid.to_string()],
        &[],
        None,
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        image_json(&m)
    );
    let out = ctl(
        &uri,
        &["vm", "create", "-", "--json"],
        &[],
        Some(&payload_json(&m.uuid, "c", "cli", 1)),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let r = s
        .vm(Uuid::try_parse(v["uuid"].as_str().unwrap()).unwrap())
        .unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&vm_json(&r)).unwrap(),
        v
    );
    let out = ctl(&uri, &["vm", "list", "--owner", "cli", "--json"], &[], None);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("[{}]", vm_json(&r))
    );
    let table = ctl(&uri, &["vm", "list"], &[], None);
    assert!(String::from_utf8(table.stdout)
        .unwrap()
        .contains(&r.uuid.to_string()));
    for (args, want, stdin) in [
        (
            vec!["image", "get", &*Uuid::nil().to_string()],
            Code::VMPOOL_RESULT_NOT_FOUND,
            None,
        ),
        (
            vec!["image", "delete", "bogus"],
            Code::VMPOOL_RESULT_INVALID_ARGUMENT,
            None,
        ),
        (
            vec!["image", "delete", &*m.uuid.to_string()],
            Code::VMPOOL_RESULT_IN_USE,
            None,
        ),
        (
            vec!["vm", "create", "-"],
            Code::VMPOOL_RESULT_INVALID_JSON,
            Some("{\"x\":1}"),
        ),
        (
            vec!["image", "import", "/nonexistent/file.raw"],
            Code::VMPOOL_RESULT_NOT_FOUND,
            None,
        ),
    ] {
        let out = ctl(&uri, &args, &[], stdin);
        assert_eq!(
            out.status.code(),
            Some(want as i32),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(want.name()),
            "{args:?}"
        );
    }
    let out = ctl(&uri, &["vm", "frobnicate"], &[], None);
    assert_eq!(out.status.code(), Some(64));
    assert!(journal_empty(&s));
}

/// A VM disk name holding something the store did not make is never removed: not by crash
/// recovery of a create that died before cloning, not by deleting the VM whose disk was
/// replaced. Both succeed and leave it as it was.
pub fn foreign_disk_survives_recovery_and_delete(f: &dyn Fixture) {
    let tmp = scratch();
    let uri = f.new_store();
    let s = Store::open(Some(&uri)).unwrap();
    let m = import(&s, &small_raw(tmp.path()), "{}");

    // A create killed after journalling, before cloning; then something appears at its name.
    let x = Uuid::new_v4();
    let p = format!(
        r#"{{"uuid":"{x}","alias":"x","owner":"o","image_uuid":"{}","vcpus":1,"ram_mib":128}}"#,
        m.uuid
    );
    ctl_killed_at(
        &uri,
        "vm_create.journaled",
        &["vm", "create", "-"],
        Some(&p),
    );
    f.plant_foreign(&uri, &x);
    let s = Store::open(Some(&uri)).unwrap();
    let rec = s.info().last_recovery;
    assert!(
        f.foreign_intact(&uri, &x),
        "recovery removed a foreign disk"
    );
    assert_eq!(rec.kept.len(), 1, "{rec:?}");
    assert!(rec.errors.is_empty(), "{rec:?}");
    assert!(journal_empty(&s));
    // The name is taken: a create with that uuid fails and leaves it.
    assert_eq!(code(s.create_json(&p)), Code::VMPOOL_RESULT_ALREADY_EXISTS);
    assert!(f.foreign_intact(&uri, &x));
    assert!(s.vms(None).unwrap().is_empty());

    // A VM whose disk was replaced behind the store's back: delete removes the VM only.
    let v = s.create_vm(&payload(&m.uuid, "v", "o", 1)).unwrap();
    f.plant_foreign(&uri, &v.uuid);
    s.delete_vm(v.uuid).unwrap();
    assert_eq!(code(s.vm(v.uuid)), Code::VMPOOL_RESULT_NOT_FOUND);
    assert!(
        f.foreign_intact(&uri, &v.uuid),
        "delete removed a foreign disk"
    );
    assert!(journal_empty(&s));
}

/// Every `fail_point!` in src/, as written there (so a new step cannot be forgotten: each
/// must have a scenario below, or this fails).
pub fn failpoints_in_source() -> Vec<String> {
    let mut names = Vec::new();
    let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                for part in text.split("fail_point!(\"").skip(1) {
                    names.push(part.split('"').next().unwrap().to_owned());
                }
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

/// What the catalog and the back end hold, and the bytes of every record: two snapshots are
/// equal exactly when nothing was touched.
fn snapshot(s: &Store, f: &dyn Fixture, uri: &str) -> (BTreeSet<String>, Vec<String>) {
    let mut records: Vec<String> = s.images().unwrap().iter().map(image_json).collect();
    records.extend(s.vms(None).unwrap().iter().map(vm_json));
    records.extend(
        s.homes()
            .unwrap()
            .iter()
            .map(|h| vmpool::ffi::wire::to_string(&vmpool::ffi::wire::HomeOut::from(h)).unwrap()),
    );
    (f.volumes(uri), records)
}

/// Kill and fail every step of every multi-step operation; after reopening the store the
/// operation either happened completely or not at all, nothing is half-made or left over,
/// and no other object was touched.
pub fn every_failpoint_kill_and_error(f: &dyn Fixture) {
    let tmp = scratch();
    let src = small_raw(tmp.path());
    // Steps of running VMs, of pools and of home attaches are killed and failed with real
    // guests in tests/it/lifecycle.rs (every_lifecycle_failpoint_kill_and_error),
    // tests/it/pools.rs (every_pool_failpoint_kill_and_error) and tests/it/homes.rs
    // (every_home_attach_failpoint_kill_and_error), which cover every one of them; the
    // identity step's in tests/it/pools.rs (a_clone_whose_customization_fails_is_destroyed_and_counted),
    // suspend's and wake's in tests/it/sessions.rs (every_suspend_failpoint_kill_and_error).
    let points: Vec<String> = failpoints_in_source()
        .into_iter()
        .filter(|p| {
            ![
                "vm_start.",
                "vm_stop.",
                "pool_",
                "template.",
                "home_attach.",
                "identity.",
                "vm_suspend.",
                "vm_resume.",
            ]
            .iter()
            .any(|pre| p.starts_with(pre))
        })
        .collect();
    let mut cases = 0;
    for point in &points {
        for action in ["kill", "error"] {
            let uri = f.new_store();
            let s = Store::open(Some(&uri)).unwrap();
            // Bystanders that no operation here may touch, and the targets of the deletes.
            let other = import(&s, &src, r#"{"name":"bystander"}"#);
            let other_vm = s
                .create_vm(&payload(&other.uuid, "bystander", "o", 1))
                .unwrap();
            let target = import(&s, &src, r#"{"name":"target"}"#);
            let target_vm = s
                .create_vm(&payload(&target.uuid, "target", "o", 1))
                .unwrap();
            let new = Uuid::new_v4();
            let (args, stdin): (Vec<String>, Option<String>) = match point.split('.').next() {
                Some("import") => (
                    vec![
                        "image".into(),
                        "import".into(),
                        src.display().to_string(),
                        "--uuid".into(),
                        new.to_string(),
                    ],
                    None,
                ),
                Some("vm_create") => (
                    vec!["vm".into(), "create".into(), "-".into()],
                    Some(format!(
                        r#"{{"uuid":"{new}","alias":"n","owner":"o","image_uuid":"{}","vcpus":1,"ram_mib":128,"disk_gib":1}}"#,
                        target.uuid
                    )),
                ),
                Some("vm_delete") => (
                    vec!["vm".into(), "delete".into(), target_vm.uuid.to_string()],
                    None,
                ),
                Some("home_create") => {
                    s.create_home("t", GIB).unwrap();
                    (
                        vec![
                            "home".into(),
                            "create".into(),
                            "n".into(),
                            "--size-gib".into(),
                            "1".into(),
                        ],
                        None,
                    )
                }
                Some("home_delete") => {
                    s.create_home("t", GIB).unwrap();
                    (vec!["home".into(), "delete".into(), "t".into()], None)
                }
                Some("image_delete") => {
                    s.delete_vm(target_vm.uuid).unwrap();
                    (
                        vec!["image".into(), "delete".into(), target.uuid.to_string()],
                        None,
                    )
                }
                _ => panic!(
                    "failpoint {point} has no scenario in every_failpoint_kill_and_error: add one"
                ),
            };
            let before = snapshot(&s, f, &uri);
            let fp = format!("{point}={action}");
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            ctl_failing_at(&uri, point, action, &argv, stdin.as_deref());
            let s = Store::open(Some(&uri)).unwrap();
            let rec = s.info().last_recovery;
            assert!(
                rec.errors.is_empty() && rec.kept.is_empty(),
                "{fp}: {rec:?}"
            );
            assert!(journal_empty(&s), "{fp}: journal not empty");
            let after = snapshot(&s, f, &uri);
            // What the catalog lists is exactly what the back end holds.
            let listed = expect(
                &s.images()
                    .unwrap()
                    .iter()
                    .map(|m| m.uuid)
                    .collect::<Vec<_>>(),
                &s.vms(None)
                    .unwrap()
                    .iter()
                    .map(|v| v.uuid)
                    .chain(s.homes().unwrap().iter().map(|h| h.uuid))
                    .collect::<Vec<_>>(),
            );
            assert_eq!(after.0, listed, "{fp}: half-made or leftover volumes");
            // Either nothing changed, or the operation is complete; the bystanders never move.
            let changed: BTreeSet<&String> = before
                .1
                .iter()
                .collect::<BTreeSet<_>>()
                .symmetric_difference(&after.1.iter().collect())
                .copied()
                .collect();
            for r in &changed {
                assert!(
                    !r.contains(&other.uuid.to_string()) && !r.contains(&other_vm.uuid.to_string()),
                    "{fp}: a bystander changed: {r}"
                );
            }
            let done = match point.split('.').next().unwrap() {
                "import" => s.image(new).is_ok(),
                "vm_create" => s.vm(new).is_ok(),
                "vm_delete" => s.vm(target_vm.uuid).is_err(),
                "home_create" => s.home("n").is_ok(),
                "home_delete" => s.home("t").is_err(),
                _ => s.image(target.uuid).is_err(),
            };
            if !done {
                assert_eq!(after, before, "{fp}: not done, yet something changed");
            }
            cases += 1;
        }
    }
    eprintln!(
        "fault injection: {} failpoints x 2 actions = {cases} cases, all clean",
        points.len()
    );
}

/// The suite as `#[test]` functions for one fixture: `conformance_suite!(FIXTURE)`, plus any
/// attributes (e.g. `#[ignore = "..."]`) to put on every test.
#[macro_export]
macro_rules! conformance_suite {
    ($fx:expr $(, #[$attr:meta])*) => {
        $crate::conformance_suite!(@tests $fx; [$(#[$attr])*];
            import_raw_ok import_qcow2_ok import_bad_checksum import_truncated import_killed_midway
            import_failure_each_step import_refusals clone_constant_in_image_size
            clone_grows_never_shrinks vm_lifecycle vm_refusals image_delete_with_dependents
            killed_midway_vm_and_delete concurrent_creates_threads concurrent_creates_processes
            cli_matches_library foreign_disk_survives_recovery_and_delete
            every_failpoint_kill_and_error);
    };
    (@tests $fx:expr; $attrs:tt; $name:ident $($rest:ident)*) => {
        $crate::conformance_suite!(@one $fx; $attrs; $name);
        $crate::conformance_suite!(@tests $fx; $attrs; $($rest)*);
    };
    (@tests $fx:expr; $attrs:tt;) => {};
    (@one $fx:expr; [$(#[$attr:meta])*]; $name:ident) => {
        #[test]
        $(#[$attr])*
        fn $name() {
            $crate::suite::$name(&*$fx)
        }
    };
}
