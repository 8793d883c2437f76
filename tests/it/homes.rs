//! Home volumes for real: TCG test guests from pools with `home_gib`. The test guest writes a
//! random token to a blank home the first time it sees one and prints what it finds on it
//! (`home=new:T` / `home=found:T`), so a home's survival is read from inside the guest.

use crate::common::*;
use std::collections::BTreeSet;
use std::time::Duration;
use uuid::Uuid;
use vmpool::pool::{AcquireOptions, AcquirePath, PoolSpec, Warmth};
use vmpool::vm::qmp::Qmp;
use vmpool::Store;

const MARKER: &str = "VMPOOL-TEST-GUEST: tick=3";

fn env() -> GuestStore {
    guest_store("&template_dir={tmp}/tpl")
}

fn pool(e: &GuestStore, name: &str, warmth: Warmth, spares: u32) {
    let mut p = PoolSpec::new(name, e.image.uuid);
    p.ram_mib = 256;
    p.warmth = warmth;
    p.spares = spares;
    p.max_vms = 6;
    p.ready_marker = Some(MARKER.into());
    p.home_gib = Some(1);
    e.s.create_pool(&p).unwrap();
}

/// The token the guest of `vm` reports for its home: (`new` or `found`, token).
fn home_line(e: &GuestStore, vm: &Uuid) -> (String, String) {
    let log = e.wait_log(vm, "home=", 1);
    let line = log.lines().find(|l| l.contains("home=")).unwrap();
    let rest = line.split("home=").nth(1).unwrap().trim();
    let (how, tok) = rest.split_once(':').unwrap();
    (how.to_owned(), tok.to_owned())
}

/// Whether VM `vm`'s QEMU has a home disk plugged in.
fn has_home(s: &Store, vm: Uuid) -> bool {
    let Ok(mut q) = Qmp::connect(&s.qmp_socket_path(vm), Duration::from_secs(10)) else {
        return false;
    };
    q.has_device("home").unwrap_or(false)
}

fn acquire(s: &Store, pool: &str, owner: &str) -> vmpool::Result<vmpool::pool::Acquired> {
    s.acquire(pool, owner, &AcquireOptions::default())
}

#[test]
fn a_home_follows_its_owner_across_pools_and_nobody_else_sees_it() {
    let e = env();
    pool(&e, "cold", Warmth::Disk, 0);
    pool(&e, "warm", Warmth::Template, 1);
    let r =
        e.s.refill("warm", &Default::default(), &|_| {}, &Default::default())
            .unwrap();
    assert!(r.errors.is_empty(), "{r:?}");

    // A desktop booted from disk: a blank home, made on the owner's first acquire.
    let a = acquire(&e.s, "cold", "alice").unwrap();
    assert!(a.steps.iter().any(|(s, _)| *s == "home"), "{:?}", a.steps);
    let (how, token) = home_line(&e, &a.vm.uuid);
    assert_eq!(how, "new");
    let h = e.s.home("alice").unwrap();
    assert_eq!(h.attached_to, Some(a.vm.uuid));
    assert_eq!(h.size_bytes, 1 << 30);
    // Her files, for nobody else on the host.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&h.disk_path)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{}", h.disk_path);

    // The redirect plugs nothing twice.
    let again = acquire(&e.s, "cold", "alice").unwrap();
    assert_eq!(again.path, AcquirePath::Redirect);
    assert!(has_home(&e.s, a.vm.uuid));

    // One desktop at a time: the other pool refuses by name and makes nothing.
    let before = e.s.vms(None).unwrap().len();
    let err = acquire(&e.s, "warm", "alice").unwrap_err();
    assert_eq!(err.code(), Code::VMPOOL_RESULT_IN_USE, "{err}");
    assert!(err.to_string().contains("alice's home"), "{err}");
    assert_eq!(e.s.vms(None).unwrap().len(), before);
    // Nor can it be deleted or resized under the running desktop.
    let err = e.s.delete_home("alice").unwrap_err();
    assert_eq!(err.code(), Code::VMPOOL_RESULT_IN_USE, "{err}");
    let err = e.s.resize_home("alice", 2 << 30).unwrap_err();
    assert_eq!(err.code(), Code::VMPOOL_RESULT_IN_USE, "{err}");

    // Released (the desktop is destroyed): the home stays, and a memory-template clone of the
    // other pool gets it hot-plugged after its restore, with what the first desktop wrote.
    e.s.release(a.vm.uuid).unwrap();
    assert_eq!(e.s.home("alice").unwrap().attached_to, None);
    let b = acquire(&e.s, "warm", "alice").unwrap();
    assert_eq!(b.path, AcquirePath::Spare);
    assert_eq!(home_line(&e, &b.vm.uuid), ("found".into(), token.clone()));

    // Another owner gets their own, never alice's.
    let c = acquire(&e.s, "cold", "bob").unwrap();
    let (how, bob_token) = home_line(&e, &c.vm.uuid);
    assert_eq!(how, "new");
    assert_ne!(bob_token, token);
    let owners: BTreeSet<String> = e.s.homes().unwrap().into_iter().map(|h| h.owner).collect();
    assert_eq!(owners, BTreeSet::from(["alice".into(), "bob".into()]));

    // Deleting the pools never deletes a home; only the explicit call does.
    e.s.release(b.vm.uuid).unwrap();
    e.s.release(c.vm.uuid).unwrap();
    e.s.delete_pool("warm").unwrap();
    e.s.delete_pool("cold").unwrap();
    let h = e.s.home("alice").unwrap();
    let disk = std::path::PathBuf::from(&h.disk_path);
    assert!(disk.exists());
    let grown = e.s.resize_home("alice", 2 << 30).unwrap();
    assert_eq!(grown.size_bytes, 2 << 30);
    let err = e.s.resize_home("alice", 1 << 30).unwrap_err();
    assert_eq!(err.code(), Code::VMPOOL_RESULT_INVALID_ARGUMENT, "{err}");
    e.s.delete_home("alice").unwrap();
    assert!(!disk.exists());
    let err = e.s.home("alice").unwrap_err();
    assert_eq!(err.code(), Code::VMPOOL_RESULT_NOT_FOUND, "{err}");
    // The blank image stays while a home is cloned from it.
    let blank =
        e.s.images()
            .unwrap()
            .into_iter()
            .find(|i| i.name == "vmpool-home-blank")
            .unwrap();
    let err = e.s.delete_image(blank.uuid).unwrap_err();
    assert_eq!(err.code(), Code::VMPOOL_RESULT_IN_USE, "{err}");
    e.s.delete_home("bob").unwrap();
    e.s.delete_image(blank.uuid).unwrap();
}

#[test]
fn bad_home_requests_are_refused_and_make_nothing() {
    let e = env();
    for (owner, size, code) in [
        ("alice", 1u64 << 20, Code::VMPOOL_RESULT_INVALID_ARGUMENT),
        ("alice", u64::MAX, Code::VMPOOL_RESULT_INVALID_ARGUMENT),
        ("../etc", 1 << 30, Code::VMPOOL_RESULT_INVALID_ARGUMENT),
        (".hidden", 1 << 30, Code::VMPOOL_RESULT_INVALID_ARGUMENT),
        ("a\nb", 1 << 30, Code::VMPOOL_RESULT_INVALID_ARGUMENT),
    ] {
        let err = e.s.create_home(owner, size).unwrap_err();
        assert_eq!(err.code(), code, "{owner:?} {size}: {err}");
    }
    assert!(e.s.homes().unwrap().is_empty());
    assert_eq!(e.s.images().unwrap().len(), 1, "nothing but the test image");
    let mut p = PoolSpec::new("p", e.image.uuid);
    p.home_gib = Some(0);
    let err = e.s.create_pool(&p).unwrap_err();
    assert_eq!(err.code(), Code::VMPOOL_RESULT_INVALID_ARGUMENT, "{err}");
    p.home_gib = Some(1 << 40);
    let err = e.s.create_pool(&p).unwrap_err();
    assert_eq!(err.code(), Code::VMPOOL_RESULT_INVALID_ARGUMENT, "{err}");
    assert!(e.s.pools().unwrap().is_empty());
    // An image that took the blank image's id (its data would be in every new home) is
    // refused, and nothing is made.
    let other = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(other.path(), vec![7u8; 1 << 20]).unwrap();
    let mut req = vmpool::ImportRequest::default()
        .uuid(vmpool::home::BLANK_UUID)
        .name("vmpool-home-blank");
    req.tags.insert(
        "vmpool.role".into(),
        serde_json::Value::String("home".into()),
    );
    e.s.import_image(other.path(), &req, None).unwrap();
    let err = e.s.create_home("mallory", 256 << 20).unwrap_err();
    assert_eq!(err.code(), Code::VMPOOL_RESULT_INVALID_STATE, "{err}");
    assert!(e.s.homes().unwrap().is_empty());
    e.s.delete_image(vmpool::home::BLANK_UUID).unwrap();
    // A create killed after the clone: the next open removes exactly that volume.
    let h = e.s.create_home("carol", 256 << 20).unwrap();
    ctl_killed_at(
        &e.uri,
        "home_create.cloned",
        &["home", "create", "dave", "--size-gib", "1"],
        None,
    );
    let s = Store::open(Some(&e.uri)).unwrap();
    let homes = s.homes().unwrap();
    assert_eq!(homes.len(), 1, "{homes:?}");
    assert_eq!(homes[0].uuid, h.uuid);
    let vols: Vec<String> = std::fs::read_dir(e.tmp.path().join("s/vms"))
        .unwrap()
        .flatten()
        .map(|f| f.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(vols.len(), 1, "{vols:?}");
    assert!(vols[0].starts_with(&h.uuid.to_string()), "{vols:?}");
}

/// A worker process of the test below (`HOME_WORKER=OWNER`): acquire in pool `a`, release,
/// acquire in pool `b`, release, forever (until killed). An acquire refused because the home
/// is in the owner's other desktop releases that one first, as the portal does.
#[test]
fn worker_process() {
    let Ok(owner) = std::env::var("HOME_WORKER") else {
        return;
    };
    let s = Store::open(Some(&std::env::var("HOME_WORKER_URI").unwrap())).unwrap();
    loop {
        for p in ["a", "b"] {
            let got = match acquire(&s, p, &owner) {
                Err(e) if e.code() == Code::VMPOOL_RESULT_IN_USE => {
                    for v in s.vms(Some(&owner)).unwrap() {
                        let _ = s.release(v.uuid);
                    }
                    acquire(&s, p, &owner).unwrap()
                }
                r => r.unwrap(),
            };
            s.release(got.vm.uuid).unwrap();
            println!("RELEASED {}", got.vm.uuid);
        }
    }
}

#[test]
fn acquires_and_releases_killed_at_random_never_lose_a_home_or_plug_it_twice() {
    let e = env();
    pool(&e, "a", Warmth::Disk, 0);
    pool(&e, "b", Warmth::Disk, 0);
    let first = acquire(&e.s, "a", "h").unwrap();
    let (_, token) = home_line(&e, &first.vm.uuid);
    let home = e.s.home("h").unwrap();
    e.s.release(first.vm.uuid).unwrap();
    let mut next = xorshift(clock_seed());
    let mut cycles = 0;
    for _ in 0..12 {
        let mut w = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "homes::worker_process", "--nocapture"])
            .env("HOME_WORKER", "h")
            .env("HOME_WORKER_URI", &e.uri)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200 + next(2500)));
        w.kill().unwrap(); // SIGKILL
        let out = w.wait_with_output().unwrap();
        cycles += String::from_utf8_lossy(&out.stdout)
            .matches("RELEASED")
            .count();
        // Never lost: the same volume, on disk.
        let s = Store::open(Some(&e.uri)).unwrap();
        let h = s.home("h").unwrap();
        assert_eq!(h.uuid, home.uuid);
        assert!(std::path::Path::new(&h.disk_path).exists());
        // Never in two running desktops.
        let plugged: Vec<Uuid> = s
            .vms(Some("h"))
            .unwrap()
            .into_iter()
            .filter(|v| v.state.is_active() && has_home(&s, v.uuid))
            .map(|v| v.uuid)
            .collect();
        assert!(plugged.len() <= 1, "home in {plugged:?}");
    }
    eprintln!("{cycles} desktops acquired and released by the killed workers");
    assert!(
        cycles > 0,
        "the workers never got through one acquire and release"
    );
    // The owner's next desktop (whatever a killed worker left them) has what they wrote.
    let s = Store::open(Some(&e.uri)).unwrap();
    for v in s.vms(Some("h")).unwrap() {
        s.release(v.uuid).unwrap();
    }
    let last = acquire(&s, "b", "h").unwrap();
    assert_eq!(home_line(&e, &last.vm.uuid), ("found".into(), token));
    s.release(last.vm.uuid).unwrap();
    assert_eq!(
        std::fs::read_dir(e.tmp.path().join("s/.journal"))
            .unwrap()
            .count(),
        0,
        "journal entries left"
    );
}

/// Each step of a home attach killed and failed (the acquire fails there); the owner's next
/// acquire gives them their desktop with their home plugged in once, and the home stays.
#[test]
fn every_home_attach_failpoint_kill_and_error() {
    let points = failpoints_in("src/home/attach.rs");
    assert!(points.len() >= 2, "{points:?}");
    for point in &points {
        for action in ["kill", "error"] {
            let fp = format!("{point}={action}");
            let e = env();
            pool(&e, "fp", Warmth::Disk, 0);
            ctl_failing_at(
                &e.uri,
                point,
                action,
                &["pool", "acquire", "fp", "--owner", "ann"],
                None,
            );
            let s = Store::open(Some(&e.uri)).unwrap();
            let a = acquire(&s, "fp", "ann").unwrap();
            assert_eq!(a.path, AcquirePath::Redirect, "{fp}");
            assert_eq!(home_line(&e, &a.vm.uuid).0, "new", "{fp}");
            let h = s.home("ann").unwrap();
            assert_eq!(h.attached_to, Some(a.vm.uuid), "{fp}");
            assert!(has_home(&s, a.vm.uuid), "{fp}");
            assert_eq!(s.vms(Some("ann")).unwrap().len(), 1, "{fp}");
            s.release(a.vm.uuid).unwrap();
            assert_eq!(s.home("ann").unwrap().uuid, h.uuid, "{fp}");
        }
    }
}
