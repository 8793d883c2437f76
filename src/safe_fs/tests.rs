//! The attacks each rule of `safe_fs` stops, on a scratch directory (root tests also plant
//! files owned by another uid).

use super::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn scratch() -> (tempfile::TempDir, Dir) {
    let t = tempfile::tempdir().unwrap();
    let d = Dir::trusted(t.path(), TrustRule::current(), None).unwrap();
    (t, d)
}

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo with a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
}

#[test]
fn links_fifos_and_devices_are_never_followed_or_opened() {
    let (t, d) = scratch();
    let secret = t.path().join("secret");
    std::fs::write(&secret, b"keep").unwrap();
    std::os::unix::fs::symlink(&secret, t.path().join("link")).unwrap();
    mkfifo(&t.path().join("fifo"));
    std::os::unix::fs::symlink("/dev/zero", t.path().join("zero")).unwrap();
    for name in ["link", "fifo", "zero"] {
        let e = d.open(name, Kind::File).unwrap_err();
        assert_eq!(
            e.code(),
            crate::ResultCode::VMPOOL_RESULT_PERMISSION_DENIED,
            "{e}"
        );
        assert!(d.read(name, 10).is_err());
        assert!(d.chown(name, 0, 0, Kind::File).is_err());
    }
    // A log named like a planted link is replaced, the target untouched.
    let mut f = d.append("link", 0o600).unwrap();
    std::io::Write::write_all(&mut f, b"log").unwrap();
    assert_eq!(std::fs::read(&secret).unwrap(), b"keep");
    assert!(!std::fs::symlink_metadata(t.path().join("link"))
        .unwrap()
        .file_type()
        .is_symlink());
    // A FIFO under a log's name does not block; it is replaced.
    d.append("fifo", 0o600).unwrap();
    assert!(std::fs::metadata(t.path().join("fifo")).unwrap().is_file());
    // create never reuses a name, a dangling link included.
    std::os::unix::fs::symlink(t.path().join("nowhere"), t.path().join("dangling")).unwrap();
    assert!(d.create("dangling", 0o600).is_err());
    assert!(!t.path().join("nowhere").exists());
}

#[test]
fn removing_a_tree_removes_links_not_their_targets() {
    let (t, d) = scratch();
    let victim = tempfile::tempdir().unwrap();
    std::fs::write(victim.path().join("precious"), b"x").unwrap();
    let tree = t.path().join("tree/a/b");
    std::fs::create_dir_all(&tree).unwrap();
    std::os::unix::fs::symlink(victim.path(), tree.join("to-dir")).unwrap();
    std::os::unix::fs::symlink(victim.path().join("precious"), tree.join("to-file")).unwrap();
    mkfifo(&tree.join("fifo"));
    std::os::unix::fs::symlink(victim.path(), t.path().join("top-link")).unwrap();
    assert!(d.remove("tree").unwrap());
    assert!(d.remove("top-link").unwrap());
    assert!(!d.remove("tree").unwrap());
    assert_eq!(std::fs::read(victim.path().join("precious")).unwrap(), b"x");
    assert!(d.entries().unwrap().is_empty());
}

#[test]
fn sockets_bind_and_connect_at_any_path_length_and_never_through_a_link() {
    let t = tempfile::tempdir().unwrap();
    let deep = t.path().join("d".repeat(100)).join("e".repeat(100));
    let d = Dir::trusted(&deep, TrustRule::current(), Some(0o700)).unwrap();
    assert!(deep.as_os_str().len() > 200);
    let l = d.bind("s.sock").unwrap();
    let _c = d
        .connect("s.sock", Some(TrustRule::current().owner))
        .unwrap();
    let _accepted = l.accept().unwrap();
    // Owned by someone else: refused.
    assert!(d.connect("s.sock", Some(12345)).is_err());
    // A link to a socket elsewhere: refused, even though the socket is real.
    let other = Dir::trusted(t.path(), TrustRule::current(), None).unwrap();
    let _l2 = other.bind("other.sock").unwrap();
    std::os::unix::fs::symlink(t.path().join("other.sock"), deep.join("evil.sock")).unwrap();
    let e = d.connect("evil.sock", None).unwrap_err();
    assert_eq!(
        e.code(),
        crate::ResultCode::VMPOOL_RESULT_PERMISSION_DENIED,
        "{e}"
    );
    // A regular file is not a socket.
    std::fs::write(deep.join("file.sock"), b"").unwrap();
    assert!(d.connect("file.sock", None).is_err());
}

#[test]
fn trusted_paths_refuse_links_and_directories_others_can_write() {
    let t = tempfile::tempdir().unwrap();
    let rule = TrustRule::current();
    // A link anywhere in the path is refused.
    std::fs::create_dir(t.path().join("real")).unwrap();
    std::os::unix::fs::symlink(t.path().join("real"), t.path().join("link")).unwrap();
    let e = Dir::trusted(&t.path().join("link/sub"), rule, Some(0o700)).unwrap_err();
    assert_eq!(
        e.code(),
        crate::ResultCode::VMPOOL_RESULT_PERMISSION_DENIED,
        "{e}"
    );
    assert!(
        !t.path().join("real/sub").exists(),
        "nothing made through the link"
    );
    // World-writable without the sticky bit: refused; with it and owned by root: fine.
    let ww = t.path().join("ww");
    std::fs::create_dir(&ww).unwrap();
    std::fs::set_permissions(&ww, std::fs::Permissions::from_mode(0o777)).unwrap();
    assert!(Dir::trusted(&ww.join("x"), rule, Some(0o700)).is_err());
    let made = Dir::trusted(
        Path::new("/tmp")
            .join(format!("vmpool-trust-{}", crate::fsutil::token()))
            .as_path(),
        rule,
        Some(0o700),
    )
    .unwrap();
    let md = std::fs::metadata(made.path()).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o700);
    std::fs::remove_dir(made.path()).unwrap();
    if is_root() {
        // Made first by another user (as anyone can in /tmp or /dev/shm): refused by name.
        let theirs = t.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        let e = Dir::trusted(&theirs.join("sub"), rule, Some(0o700)).unwrap_err();
        assert!(e.to_string().contains("uid 65534"), "{e}");
        assert!(!theirs.join("sub").exists());
    }
}

#[test]
fn chown_path_never_follows_the_last_component() {
    let (t, _d) = scratch();
    let target = t.path().join("target");
    std::fs::write(&target, b"").unwrap();
    std::os::unix::fs::symlink(&target, t.path().join("disk")).unwrap();
    let before = std::fs::metadata(&target).unwrap().uid();
    assert!(chown_path(&t.path().join("disk"), 4242, 4242, Kind::File).is_err());
    assert_eq!(std::fs::metadata(&target).unwrap().uid(), before);
    if is_root() {
        chown_path(&target, 4242, 4242, Kind::File).unwrap();
        assert_eq!(std::fs::metadata(&target).unwrap().uid(), 4242);
        assert!(chown_path(&target, 4242, 4242, Kind::Block).is_err());
    }
}
