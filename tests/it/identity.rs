//! The NoCloud seed (`vmpool::vm::seed`) as other FAT code reads it: `blkid` finds a vfat
//! volume labelled CIDATA (what cloud-init and the recipes' boot unit look for), `fsck.fat`
//! finds it clean, and mtools reads the three files by their long names. (The guests mount
//! it with the kernel's vfat driver: the desktop tests; this host's kernel has none.)

use crate::common::*;
use std::path::Path;
use std::process::Command;
use uuid::Uuid;
use vmpool::vm::identity::Identity;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn blkid(dev: &Path, tag: &str) -> String {
    run(Command::new("blkid")
        .args(["-p", "-o", "value", "-s", tag])
        .arg(dev))
    .trim()
    .to_owned()
}

#[test]
fn the_seed_is_a_clean_vfat_volume_labelled_cidata() {
    let tmp = scratch();
    let vm = Uuid::new_v4();
    let img = tmp.path().join("seed.img");
    std::fs::write(
        &img,
        vmpool::vm::seed::nocloud(&Identity::at_boot(vm, "desk-1")).unwrap(),
    )
    .unwrap();
    assert_eq!(blkid(&img, "TYPE"), "vfat");
    assert_eq!(blkid(&img, "LABEL"), "CIDATA");
    run(Command::new("fsck.fat").arg("-n").arg(&img));
    let mtype = |name: &str| {
        run(Command::new("mtype")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(&img)
            .arg(format!("::{name}")))
    };
    assert_eq!(
        mtype("meta-data"),
        format!("instance-id: {vm}\nlocal-hostname: desk-1\n")
    );
    assert!(mtype("user-data").starts_with("#cloud-config"));
    let doc: serde_json::Value = serde_json::from_str(&mtype("vmpool.json")).unwrap();
    assert_eq!(doc["instance_id"], vm.to_string());
    assert_eq!(doc["hostname"], "desk-1");
}

/// A bad `user` object, through the C ABI's JSON and the typed API, at create and at
/// acquire: refused by name, and nothing is made or claimed.
#[test]
fn bad_users_are_refused_by_name_and_nothing_is_made() {
    use vmpool::pool::{AcquireOptions, PoolSpec};
    use vmpool::vm::user::GuestUser;
    let tmp = scratch();
    let s = vmpool::Store::open(Some(&format!("dir:{}/s", tmp.path().display()))).unwrap();
    let img = s
        .import_image(
            &test_image(),
            &vmpool::ImportRequest::default().name("t"),
            None,
        )
        .unwrap();
    let mut p = PoolSpec::new("p", img.uuid);
    p.spares = 0;
    s.create_pool(&p).unwrap();
    let files = || {
        let mut v: Vec<_> = walk(tmp.path());
        v.sort();
        v
    };
    let before = files();
    let long = "n".repeat(10 * 1024);
    let cases = [
        (r#"{"login":"Alice"}"#.to_owned(), "user.login"),
        (r#"{"login":"root"}"#.to_owned(), "user.login"),
        (
            format!(r#"{{"login":"alice","full_name":"{long}"}}"#),
            "user.full_name",
        ),
        (
            r#"{"login":"alice","full_name":"a\u0007b"}"#.to_owned(),
            "user.full_name",
        ),
        (
            r#"{"login":"alice","full_name":"a\nb"}"#.to_owned(),
            "user.full_name",
        ),
        (
            r#"{"login":"alice","password_hash":"hunter2"}"#.to_owned(),
            "user.password_hash",
        ),
        (
            r#"{"login":"alice","password_hash":"$1$ab$cdefghijklmnopqrstu"}"#.to_owned(),
            "user.password_hash",
        ),
        (
            r#"{"login":"alice","ssh_keys":["ssh-ed25519 !!"]}"#.to_owned(),
            "user.ssh_keys",
        ),
        (
            r#"{"login":"alice","timezone":"../../etc/shadow"}"#.to_owned(),
            "user.timezone",
        ),
        (
            r#"{"login":"alice","keyboard":"de;rm"}"#.to_owned(),
            "user.keyboard",
        ),
        (r#"{"login":"alice","shell":"/bin/sh"}"#.to_owned(), "shell"),
    ];
    for (user, named) in &cases {
        let payload = format!(
            r#"{{"alias":"a","owner":"o","image_uuid":"{}","vcpus":1,"ram_mib":256,"user":{user}}}"#,
            img.uuid
        );
        // Through the wire format (unknown keys fail there), then the store.
        let e = vmpool::ffi::wire::vm_spec(&payload)
            .and_then(|spec| s.create_vm(&spec).map(drop))
            .expect_err(user);
        assert!(
            matches!(
                e.code(),
                vmpool::ResultCode::VMPOOL_RESULT_INVALID_ARGUMENT
                    | vmpool::ResultCode::VMPOOL_RESULT_INVALID_JSON
            ),
            "{user}: {e}"
        );
        assert!(e.to_string().contains(named), "{user}: {e}");
        let e = vmpool::ffi::wire::acquire_options(Some(&format!(r#"{{"user":{user}}}"#)))
            .and_then(|o| s.acquire("p", "alice", &o).map(drop))
            .expect_err(user);
        assert!(e.to_string().contains(named), "{user}: {e}");
    }
    let typed = GuestUser {
        login: "alice".into(),
        full_name: Some(long.clone()),
        ..Default::default()
    };
    let e = s
        .acquire(
            "p",
            "alice",
            &AcquireOptions {
                user: Some(typed),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(e.code(), vmpool::ResultCode::VMPOOL_RESULT_INVALID_ARGUMENT);
    assert!(s.vms(None).unwrap().is_empty());
    assert_eq!(s.pool("p").unwrap().status.total, 0);
    assert_eq!(files(), before, "a refused user left something behind");
}

/// Every path under `root` (files and directories).
fn walk(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(root).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() && !p.is_symlink() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}
