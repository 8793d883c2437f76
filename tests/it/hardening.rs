//! Bugs found from outside (issue 9), each with the test that reproduced it, and the
//! conditions a store meets in production: a full file system, a read-only one, a store owned
//! by another user, and processes killed at random moments.
//!
//! Tests marked `needs root` make loop devices and mounts (test tooling only); `make test`
//! runs them as root.

use crate::common::*;
use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use uuid::Uuid;
use vmpool::{ImportRequest, Store};

fn code<T: std::fmt::Debug>(r: vmpool::Result<T>) -> Code {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.code(),
    }
}

fn sh(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A small file system of its own on a loop device, unmounted (and its image removed) on drop.
struct LoopFs {
    mnt: PathBuf,
    _dir: tempfile::TempDir,
}

impl LoopFs {
    fn new(kind: &str, mib: u64) -> LoopFs {
        let dir = scratch();
        let img = dir.path().join("fs.img");
        let f = std::fs::File::create(&img).unwrap();
        f.set_len(mib << 20).unwrap();
        match kind {
            // No blocks reserved for root: "full" means full for us too.
            "ext4" => sh("mkfs.ext4", &["-q", "-F", "-m", "0", img.to_str().unwrap()]),
            _ => sh("mkfs.xfs", &["-q", "-f", img.to_str().unwrap()]),
        }
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        sh(
            "mount",
            &["-o", "loop", img.to_str().unwrap(), mnt.to_str().unwrap()],
        );
        LoopFs { mnt, _dir: dir }
    }

    fn remount(&self, mode: &str) {
        sh(
            "mount",
            &["-o", &format!("remount,{mode}"), self.mnt.to_str().unwrap()],
        );
    }

    /// Free blocks left to an unprivileged writer, and the block size.
    fn free(&self) -> (u64, u64) {
        let st = nix::sys::statvfs::statvfs(&self.mnt).unwrap();
        (st.blocks_available(), st.fragment_size())
    }

    /// Fill the file system with a filler file until exactly `blocks` blocks are free (or
    /// as close as the file system allows from above: its own metadata moves too).
    fn fill_to(&self, blocks: u64) {
        use std::io::Write;
        let filler = self.mnt.join("filler");
        let _ = std::fs::remove_file(&filler);
        sh("sync", &[]);
        let mut f = std::fs::File::create(&filler).unwrap();
        let (_, bs) = self.free();
        loop {
            let (free, _) = self.free();
            if free <= blocks {
                break;
            }
            let chunk = ((free - blocks) * bs).min(1 << 20) as usize;
            if f.write_all(&vec![0xa5u8; chunk]).is_err() || f.sync_all().is_err() {
                break;
            }
        }
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mnt).status();
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    (unsafe { libc::geteuid() }) == 0
}

/// What the catalog lists equals what is on disk, and nothing is in flight.
fn consistent(root: &Path, s: &Store) {
    let mut on_disk = BTreeSet::new();
    for kind in ["images", "vms"] {
        for e in std::fs::read_dir(root.join(kind)).unwrap().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.ends_with(".json") || n.starts_with('.') {
                continue;
            }
            on_disk.insert(format!("{kind}/{}", &n[..36]));
            assert!(!n.contains("-partial"), "half-made import left: {n}");
        }
    }
    let mut listed: BTreeSet<String> = s
        .images()
        .unwrap()
        .iter()
        .map(|m| format!("images/{}", m.uuid))
        .collect();
    listed.extend(
        s.vms(None)
            .unwrap()
            .iter()
            .map(|v| format!("vms/{}", v.uuid)),
    );
    assert_eq!(
        on_disk,
        listed,
        "catalog and disk differ in {}",
        root.display()
    );
    let journal: Vec<_> = std::fs::read_dir(root.join(".journal"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(journal.is_empty(), "journal not empty: {journal:?}");
}

// Bug 2: a store made inside another store's journal broke the outer store for good.
#[test]
fn no_store_inside_a_store_and_a_bad_journal_entry_is_skipped() {
    let tmp = scratch();
    let outer = tmp.path().join("outer");
    let s = Store::open(Some(&format!("dir:{}", outer.display()))).unwrap();
    let img = make_raw(tmp.path(), "i.raw", 1 << 20, &[(0, 4096)]);
    let m = s
        .import_image(&img, &ImportRequest::default(), None)
        .unwrap();
    for inner in [
        ".journal/x",
        ".journal",
        "images/x",
        "vms/y/z",
        "deep/er/store",
    ] {
        let r = Store::open(Some(&format!("dir:{}", outer.join(inner).display())));
        assert_eq!(code(r), Code::VMPOOL_RESULT_NOT_A_STORE, "{inner}");
    }
    assert!(!outer.join(".journal/x").exists());
    // A file in the journal that is not an entry (another tool's, a newer vmpool's, a
    // truncated one): reported and skipped; the store keeps working.
    std::fs::write(outer.join(".journal/store.json"), b"{\"vmpool_store\":1}").unwrap();
    std::fs::write(outer.join(".journal/vm-garbage.json"), b"\x00\xff").unwrap();
    let s = Store::open(Some(&format!("dir:{}", outer.display()))).unwrap();
    let rec = s.info().last_recovery;
    assert_eq!(rec.errors.len(), 2, "{rec:?}");
    assert!(
        rec.errors.iter().all(|e| e.contains("left in place")),
        "{rec:?}"
    );
    assert_eq!(s.image(m.uuid).unwrap().uuid, m.uuid);
    s.create_vm(&payload(&m.uuid, "still", "works", 1)).unwrap();
}

// Bug 4: size arithmetic wrapped silently once limits were raised.
#[test]
fn sizes_never_wrap() {
    let tmp = scratch();
    let base = format!("dir:{}", tmp.path().join("s").display());
    // Limits beyond what a file can address are refused where they are set.
    for opt in [
        "max_disk_gib=18446744073709551615",
        "max_image_gib=17179869184",
        "max_ram_mib=18446744073709551615",
        "max_vcpus=4294967297",
    ] {
        let r = Store::open(Some(&format!("{base}?{opt}")));
        assert_eq!(code(r), Code::VMPOOL_RESULT_INVALID_ARGUMENT, "{opt}");
    }
    // At the highest limits, sizes are exact or refused, never wrapped.
    let ceiling = vmpool::validate::GIB_CEILING;
    let s = Store::open(Some(&format!(
        "{base}?max_disk_gib={ceiling}&max_image_gib={ceiling}"
    )))
    .unwrap();
    let img = make_raw(tmp.path(), "i.raw", 16 << 20, &[(0, 4096)]);
    let m = s
        .import_image(&img, &ImportRequest::default(), None)
        .unwrap();
    assert_eq!(m.size_bytes, 16 << 20);
    let too_big = payload(&m.uuid, "big", "o", 1).disk_gib(17179869185);
    let e = s.create_vm(&too_big).unwrap_err();
    assert_eq!(e.code(), Code::VMPOOL_RESULT_INVALID_ARGUMENT, "{e}");
    let v = s.create_vm(&payload(&m.uuid, "ok", "o", 64 << 10)).unwrap();
    assert_eq!((v.disk_gib, v.disk_size_bytes), (64 << 10, 64 << 40));
    assert_eq!(s.vms(None).unwrap().len(), 1);
}

// Bug 6: importing a FIFO blocked forever.
#[test]
fn only_regular_files_and_block_devices_are_imported() {
    let tmp = scratch();
    let s = Store::open(Some(&format!("dir:{}", tmp.path().join("s").display()))).unwrap();
    let fifo = tmp.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let sock = tmp.path().join("sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    for (p, what) in [
        (fifo.as_path(), "a FIFO"),
        (sock.as_path(), "a socket"),
        (Path::new("/dev/null"), "a character device"),
        (Path::new("/dev/zero"), "a character device"),
        (tmp.path(), "a directory"),
    ] {
        let started = Instant::now();
        let e = s
            .import_image(p, &ImportRequest::default(), None)
            .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{} blocked",
            p.display()
        );
        assert_eq!(e.code(), Code::VMPOOL_RESULT_INVALID_ARGUMENT, "{e}");
        assert!(e.to_string().contains(what), "{e}");
    }
    assert!(s.images().unwrap().is_empty());
}

// Bug 7: `vmpoolctl ... | head` panicked after the work was done; dir:/dev/null said IO.
#[test]
fn cli_exits_quietly_when_its_reader_goes_away_and_dev_null_is_not_a_store() {
    let tmp = scratch();
    let uri = format!("dir:{}", tmp.path().join("s").display());
    let s = Store::open(Some(&uri)).unwrap();
    let img = make_raw(tmp.path(), "i.raw", 1 << 20, &[(0, 4096)]);
    let m = s
        .import_image(&img, &ImportRequest::default(), None)
        .unwrap();
    for i in 0..30 {
        s.create_vm(&payload(&m.uuid, &format!("v{i}"), "o", 1))
            .unwrap();
    }
    for args in [
        &["vm", "list"][..],
        &["--json", "vm", "list"],
        &["image", "get", &m.uuid.to_string()],
    ] {
        let (r, w) = nix::unistd::pipe().unwrap();
        drop(r); // the reader is gone before anything is written
        let out = Command::new(env!("CARGO_BIN_EXE_vmpoolctl"))
            .arg("--store")
            .arg(&uri)
            .args(args)
            .stdout(Stdio::from(w))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    let e = Store::open(Some("dir:/dev/null")).unwrap_err();
    assert_eq!(e.code(), Code::VMPOOL_RESULT_NOT_A_STORE, "{e}");
    let e = Store::open(Some("dir:/dev/null/x")).unwrap_err();
    assert_eq!(e.code(), Code::VMPOOL_RESULT_NOT_A_STORE, "{e}");
}

// Bug 7: on a read-only file system even `image list` was refused.
#[test]
#[ignore = "needs root (loop device): make test"]
fn a_read_only_store_can_be_read() {
    assert!(is_root(), "needs root");
    let fs = LoopFs::new("ext4", 64);
    let root = fs.mnt.join("store");
    let uri = format!("dir:{}?clone=qcow2", root.display());
    let s = Store::open(Some(&uri)).unwrap();
    let tmp = scratch();
    let img = make_raw(tmp.path(), "i.raw", 4 << 20, &[(0, 4096)]);
    let m = s
        .import_image(&img, &ImportRequest::default(), None)
        .unwrap();
    let v = s.create_vm(&payload(&m.uuid, "v", "o", 1)).unwrap();
    drop(s);
    fs.remount("ro");
    let s = Store::open(Some(&uri)).unwrap();
    assert_eq!(s.images().unwrap().len(), 1);
    assert_eq!(s.vm(v.uuid).unwrap().alias, "v");
    let out = ctl(&uri, &["image", "list"], &[], None);
    assert!(out.status.success(), "{out:?}");
    for r in [
        s.create_vm(&payload(&m.uuid, "w", "o", 1)).map(drop),
        s.delete_vm(v.uuid),
        s.import_image(&img, &ImportRequest::default(), None)
            .map(drop),
    ] {
        assert_eq!(code(r), Code::VMPOOL_RESULT_PERMISSION_DENIED);
    }
    drop(s);
    fs.remount("rw");
    let s = Store::open(Some(&uri)).unwrap();
    consistent(&root, &s);
    assert_eq!(s.vms(None).unwrap().len(), 1);
}

// A store owned by another user: reading works, changing is refused with a clear code,
// nothing is lost.
#[test]
#[ignore = "needs root (to run the CLI as another user): make test"]
fn a_store_of_another_user_is_readable_and_not_changed() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    assert!(is_root(), "needs root");
    let tmp = scratch();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = tmp.path().join("store");
    let uri = format!("dir:{}?clone=qcow2", root.display());
    let s = Store::open(Some(&uri)).unwrap();
    let img = make_raw(tmp.path(), "i.raw", 4 << 20, &[(0, 4096)]);
    std::fs::set_permissions(&img, std::fs::Permissions::from_mode(0o644)).unwrap();
    let m = s
        .import_image(&img, &ImportRequest::default(), None)
        .unwrap();
    let v = s.create_vm(&payload(&m.uuid, "v", "o", 1)).unwrap();
    let as_nobody = |args: &[&str], stdin: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_vmpoolctl"));
        c.arg("--store").arg(&uri).args(args).uid(65534).gid(65534);
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut ch = c.spawn().unwrap();
        if let Some(i) = stdin {
            use std::io::Write;
            ch.stdin.take().unwrap().write_all(i.as_bytes()).unwrap();
        }
        drop(ch.stdin.take());
        ch.wait_with_output().unwrap()
    };
    let out = as_nobody(&["vm", "list"], None);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&v.uuid.to_string()));
    let denied = Some(Code::VMPOOL_RESULT_PERMISSION_DENIED as i32);
    let create = payload_json(&m.uuid, "w", "o", 1);
    for (args, stdin) in [
        (vec!["vm", "create", "-"], Some(create.as_str())),
        (vec!["vm", "delete", &*v.uuid.to_string()], None),
        (vec!["image", "import", img.to_str().unwrap()], None),
    ] {
        let out = as_nobody(&args, stdin);
        assert_eq!(out.status.code(), denied, "{args:?}: {out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("PERMISSION_DENIED"));
    }
    let s = Store::open(Some(&uri)).unwrap();
    consistent(&root, &s);
    assert_eq!(s.vms(None).unwrap().len(), 1);
    assert_eq!(s.images().unwrap().len(), 1);
}

// Bug 3: on a full file system nothing could be deleted. Now, from 0 free blocks up: deletes
// always work; import and create either work or say NO_SPACE and leave nothing.
#[test]
#[ignore = "needs root (loop device): make test"]
fn full_file_system_deletes_work_and_nothing_is_half_made() {
    assert!(is_root(), "needs root");
    let fs = LoopFs::new("ext4", 48);
    let root = fs.mnt.join("store");
    let uri = format!("dir:{}?clone=qcow2", root.display());
    let tmp = scratch();
    let img = make_raw(
        tmp.path(),
        "i.raw",
        8 << 20,
        &[(0, 256 << 10), (4 << 20, 256 << 10)],
    );
    let s = Store::open(Some(&uri)).unwrap();
    let base = s
        .import_image(&img, &ImportRequest::default().name("base"), None)
        .unwrap();
    let (mut imports, mut creates, mut no_space) = (0, 0, 0);
    let levels: Vec<u64> = (0..24)
        .chain([32, 48, 64, 96, 128, 256, 1024, 2048])
        .collect();
    for &blocks in &levels {
        // Space for a VM and an image to delete, made before the disk fills up.
        let _ = std::fs::remove_file(fs.mnt.join("filler"));
        let victim = s.create_vm(&payload(&base.uuid, "victim", "o", 1)).unwrap();
        let spare = s
            .import_image(&img, &ImportRequest::default().name("spare"), None)
            .unwrap();
        fs.fill_to(blocks);
        let free = fs.free().0;
        // Reopening a full store works (recovery must not need space).
        let s2 = Store::open(Some(&uri)).unwrap();
        // Deleting always works, whatever is left: it is how an operator frees space.
        s2.delete_vm(victim.uuid)
            .unwrap_or_else(|e| panic!("delete VM at {free} free blocks: {e}"));
        fs.fill_to(blocks);
        s2.delete_image(spare.uuid)
            .unwrap_or_else(|e| panic!("delete image at {free} free blocks: {e}"));
        fs.fill_to(blocks);
        match s2.create_vm(&payload(&base.uuid, "new", "o", 1)) {
            Ok(v) => {
                creates += 1;
                s2.delete_vm(v.uuid).unwrap();
            }
            Err(e) => {
                assert_eq!(
                    e.code(),
                    Code::VMPOOL_RESULT_NO_SPACE,
                    "create at {free}: {e}"
                );
                no_space += 1;
            }
        }
        fs.fill_to(blocks);
        match s2.import_image(&img, &ImportRequest::default().name("late"), None) {
            Ok(m) => {
                imports += 1;
                s2.delete_image(m.uuid).unwrap();
            }
            Err(e) => {
                assert_eq!(
                    e.code(),
                    Code::VMPOOL_RESULT_NO_SPACE,
                    "import at {free}: {e}"
                );
                no_space += 1;
            }
        }
        consistent(&root, &s2);
        assert_eq!(s2.images().unwrap().len(), 1, "at {free} free blocks");
    }
    eprintln!(
        "full disk: {} fill levels; deletes always worked; {creates} creates and {imports} imports fitted, {no_space} refused with NO_SPACE and left nothing",
        levels.len()
    );
    assert!(
        no_space > 0,
        "the disk was never full enough to refuse anything"
    );
}

/// A deterministic xorshift, seeded, so a failing kill moment can be replayed.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Start the CLI, SIGKILL it after `after`, return whether it had already finished.
fn kill_after(uri: &str, args: &[&str], stdin: Option<&str>, after: Duration) -> bool {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vmpoolctl"));
    c.arg("--store").arg(uri).args(args);
    c.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut ch = c.spawn().unwrap();
    if let Some(i) = stdin {
        use std::io::Write;
        let _ = ch.stdin.take().unwrap().write_all(i.as_bytes());
    }
    drop(ch.stdin.take());
    std::thread::sleep(after);
    let _ = ch.kill();
    let st = ch.wait().unwrap();
    st.signal() != Some(9)
}

// SIGKILL at random moments (not at failpoints): 20 running imports and 20 VM creates.
#[test]
fn sigkill_at_random_moments_leaves_nothing_half_made() {
    let tmp = scratch();
    let root = tmp.path().join("store");
    let uri = format!("dir:{}?clone=qcow2", root.display());
    // Data all through, so an import takes long enough to be killed in its middle.
    let chunks: Vec<(u64, usize)> = (0..48).map(|i| (i << 20, 1 << 20)).collect();
    let img = make_raw(tmp.path(), "big.raw", 48 << 20, &chunks);
    let s = Store::open(Some(&uri)).unwrap();
    let started = Instant::now();
    let base = s
        .import_image(&img, &ImportRequest::default(), None)
        .unwrap();
    let import_time = started.elapsed() + Duration::from_millis(30);
    let seed = std::env::var("VMPOOL_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1234_u64);
    eprintln!("kill moments from seed {seed} (VMPOOL_KILL_SEED to replay)");
    let mut rng = Rng(seed);
    let (mut finished, mut killed) = (0, 0);
    for i in 0..20 {
        let at = Duration::from_micros(rng.below(import_time.as_micros() as u64));
        let u = Uuid::new_v4().to_string();
        let done = kill_after(
            &uri,
            &["image", "import", img.to_str().unwrap(), "--uuid", &u],
            None,
            at,
        );
        let s = Store::open(Some(&uri)).unwrap();
        consistent(&root, &s);
        let exists = s.image(Uuid::parse_str(&u).unwrap()).is_ok();
        assert!(
            exists || !done,
            "import {i} finished but its image is missing"
        );
        if done {
            finished += 1
        } else {
            killed += 1
        }
    }
    for i in 0..20 {
        let at = Duration::from_micros(rng.below(12_000));
        let p = payload_json(&base.uuid, &format!("k{i}"), "o", 1);
        let done = kill_after(&uri, &["vm", "create", "-"], Some(&p), at);
        let s = Store::open(Some(&uri)).unwrap();
        consistent(&root, &s);
        if done {
            finished += 1
        } else {
            killed += 1
        }
    }
    eprintln!(
        "random SIGKILL: {killed} killed mid-way, {finished} finished first; all stores consistent"
    );
    assert!(
        killed >= 10,
        "too few kills landed mid-operation ({killed})"
    );
}

/// A start whose caller is killed while its supervisor still waits for QEMU's monitor (a slow
/// QEMU: a script that waits before it runs the real one), then a kill from another process:
/// that kill finds no run to signal yet, and still ends it, because the supervisor reads the
/// kill asked for once it has written the run's facts. Without that, QEMU ran on watched by
/// nobody's record and the kill timed out waiting for it (a flake of the home workers' test).
#[test]
fn a_kill_reaches_a_start_whose_caller_died_before_qemu_answered() {
    let tmp = scratch();
    let real = std::env::var_os("VMPOOL_QEMU")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::split_paths(&std::env::var_os("PATH")?)
                .map(|d| d.join("qemu-system-x86_64"))
                .find(|p| p.is_file())
        })
        .expect("qemu-system-x86_64 on PATH");
    let slow = tmp.path().join("slow-qemu");
    std::fs::write(
        &slow,
        format!("#!/bin/sh\nsleep 4\nexec {} \"$@\"\n", real.display()),
    )
    .unwrap();
    std::fs::set_permissions(&slow, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let g = guest_store(&format!("&clone=qcow2&zone=off&qemu={}", slow.display()));
    let v =
        g.s.create_vm(
            &vmpool::VmSpec::new(g.image.uuid)
                .alias("slow")
                .owner("t")
                .ram_mib(256),
        )
        .unwrap();
    let mut starter = Command::new(env!("CARGO_BIN_EXE_vmpoolctl"))
        .args(["--store", &g.uri, "vm", "start", &v.uuid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The supervisor is on its way (the record says starting); its QEMU sleeps for 4 s.
    let deadline = Instant::now() + Duration::from_secs(30);
    while g.s.vm(v.uuid).unwrap().state != vmpool::vm::State::Starting {
        assert!(Instant::now() < deadline, "the start never began");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    starter.kill().unwrap();
    assert_eq!(starter.wait().unwrap().signal(), Some(9));
    let killed = g.s.kill_vm(v.uuid).unwrap();
    assert!(!killed.state.is_active(), "{:?}", killed.state);
    // Well past the moment the slow QEMU would have answered: nothing of it runs.
    std::thread::sleep(Duration::from_secs(5));
    let after = g.s.vm_status(v.uuid).unwrap();
    assert!(!after.vm.state.is_active(), "{:?}", after.vm.state);
    assert!(after.run.is_none(), "{:?}", after.run);
}
