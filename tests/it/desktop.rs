//! A real desktop through vmpool: the Xfce template built from Debian packages
//! (`scripts/build-image debian-12-xfce`), imported, cloned to a VM whose disk is larger than
//! the template, booted under TCG: systemd, X on QXL, lightdm logging the user in, the Xfce
//! panel, spice-vdagent, the guest agent; the root file system grown to the VM's disk.
//!
//! Run by `make test-desktop` (in `make test`), which builds the image first (cached);
//! `VMPOOL_DESKTOP_IMAGE` names a ready one. The tests are the `desktop` module of `tests/it` so that
//! `make test-rust` skips them (`--skip desktop::`): one cold boot serves all of them.

use crate::common::{scratch, serial_log};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use uuid::Uuid;
use vmpool::vm::user::GuestUser;
use vmpool::{ImportRequest, Store};

/// A cold boot of Xfce under TCG on two host cores (measured here: about two minutes).
const BOOT: Duration = Duration::from_secs(600);
const GIB: u64 = 1 << 30;

fn image() -> PathBuf {
    if let Some(p) = std::env::var_os("VMPOOL_DESKTOP_IMAGE") {
        return PathBuf::from(p);
    }
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/build-image"))
        .arg("debian-12-xfce")
        .output()
        .expect("scripts/build-image");
    assert!(
        out.status.success(),
        "build-image: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn exec(s: &Store, vm: Uuid, argv: &[&str]) -> (i32, String) {
    let r = s.agent_exec(vm, argv, Duration::from_secs(60)).unwrap();
    (
        r.exit_code.unwrap_or(-1),
        String::from_utf8_lossy(&r.stdout).into_owned(),
    )
}

/// Connect remote-viewer (under Xvfb, `tests/spice/rv-check`) with a fresh ticket of
/// `vm` and require the Xfce panel's "Applications" on its screen (OCR); its screenshot
/// is kept in the target directory as `keep`.
fn panel_on_remote_viewer(s: &Store, vm: Uuid, tmp: &std::path::Path, keep: &str, what: &str) {
    let c = s.console(vm, Duration::from_secs(300)).unwrap();
    let vv = tmp.join("desk.vv");
    std::fs::write(&vv, &c.vv).unwrap();
    let seen = tmp.join("remote-viewer.png");
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/spice/rv-check"))
        .args([
            "--vv",
            vv.to_str().unwrap(),
            "--out",
            seen.to_str().unwrap(),
        ])
        .args(["--expect", "Applications", "--timeout", "120"])
        .output()
        .unwrap();
    let _ = std::fs::copy(&seen, PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(keep));
    assert!(
        out.status.success(),
        "remote-viewer does not show the {what} panel: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// How many distinct colours a PNG has (a desktop has many; a console or a blank
/// screen a handful).
fn colours(png: &[u8]) -> usize {
    let d = png::Decoder::new(png);
    let mut r = d.read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size()];
    let info = r.next_frame(&mut buf).unwrap();
    let px = info.color_type.samples();
    let mut seen = std::collections::HashSet::new();
    for p in buf[..info.buffer_size()].chunks(px) {
        seen.insert(p.to_vec());
    }
    seen.len()
}

#[test]
#[ignore = "boots the Xfce template (minutes of TCG): make test-desktop"]
fn an_xfce_desktop_boots_from_its_clone_with_the_disk_grown_and_the_agent_up() {
    let tmp = scratch();
    let uri = format!("dir:{}/s?accel=tcg&clone=qcow2", tmp.path().display());
    let s = Store::open(Some(&uri)).unwrap();
    let img = s
        .import_image(
            &image(),
            &ImportRequest::default()
                .name("debian-12-xfce")
                .tag("on_home", "/usr/lib/vmpool/attach-home")
                .tag("cloud_init", "nocloud"),
            None,
        )
        .unwrap();
    let template_gib = img.size_bytes.div_ceil(GIB);
    let disk_gib = template_gib + 6;
    // A desktop of a pool that keeps no spares: made and booted from its disk for alice, with
    // her home volume plugged in as it boots.
    let mut p = vmpool::pool::PoolSpec::new("desk", img.uuid);
    p.vcpus = 2;
    p.ram_mib = 2048;
    p.disk_gib = Some(disk_gib);
    p.max_vms = 1;
    p.home_gib = Some(1);
    s.create_pool(&p).unwrap();
    let started = Instant::now();
    let a = s
        .acquire(
            "desk",
            "alice",
            &vmpool::pool::AcquireOptions {
                user: Some(GuestUser {
                    login: "alice".into(),
                    full_name: Some("Alice Liddell".into()),
                    keyboard: Some("de".into()),
                    timezone: Some("Europe/Berlin".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(a.path, vmpool::pool::AcquirePath::Created);
    let v = a.vm;
    let _kill = KillOnDrop(&s, v.uuid);
    // The panel runs: the image's ready marker, written once `xfce4-panel` is up.
    loop {
        let l = serial_log(&s, v.uuid);
        if l.contains("VMPOOL-GUEST: ready") {
            break;
        }
        let st = s.vm(v.uuid).unwrap();
        assert!(
            started.elapsed() < BOOT && st.state.is_active(),
            "no desktop within {BOOT:?}: {:?} {:?}; serial log:\n{l}",
            st.state,
            st.last_exit
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    eprintln!("desktop ready after {:.0?}", started.elapsed());
    s.agent_wait(v.uuid, Duration::from_secs(120)).unwrap();

    // The root file system fills the VM's disk, not the template's.
    let (code, out) = exec(&s, v.uuid, &["/usr/bin/df", "-B1", "--output=size", "/"]);
    assert_eq!(code, 0, "{out}");
    let size: u64 = out.lines().nth(1).unwrap().trim().parse().unwrap();
    assert!(
        size > (disk_gib - 1) * GIB && size > template_gib * GIB,
        "/ is {size} bytes on a {disk_gib} GiB disk (template {template_gib} GiB)"
    );

    // A graphical session: X on QXL, the panel, the SPICE agent.
    // The session's autostart items start side by side with the panel: a minute's grace.
    for p in ["Xorg", "xfce4-panel", "spice-vdagentd", "spice-vdagent"] {
        let until = Instant::now() + Duration::from_secs(60);
        while exec(&s, v.uuid, &["/usr/bin/pgrep", "-x", p]).0 != 0 {
            if Instant::now() > until {
                let (_, ps) = exec(&s, v.uuid, &["/usr/bin/ps", "-eo", "user,comm,args"]);
                let (_, journal) = exec(
                    &s,
                    v.uuid,
                    &["/usr/bin/journalctl", "-b", "--no-pager", "-n", "200"],
                );
                panic!("{p} does not run in the guest:\n{ps}\n{journal}");
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }
    let xlog = s
        .agent_read_file(
            v.uuid,
            "/var/log/Xorg.0.log",
            4 << 20,
            Duration::from_secs(60),
        )
        .unwrap();
    let xlog = String::from_utf8_lossy(&xlog);
    assert!(
        xlog.contains("qxl(0)"),
        "X does not drive the QXL card:\n{xlog}"
    );

    // Its own identity: a machine id made on this VM's first boot; its hostname, instance
    // and SSH host keys from the NoCloud seed vmpool attached (read by the image's boot unit).
    let me = identity_of(&s, v.uuid);
    assert_eq!(me.machine_id.len(), 32, "{me:?}");
    assert_eq!(
        me.hostname,
        vmpool::vm::identity::hostname_from(&v.alias),
        "{me:?}"
    );
    assert!(me.ssh_host_key.starts_with("ssh-ed25519 "), "{me:?}");
    let instance = s
        .agent_read_file(
            v.uuid,
            "/var/lib/vmpool/instance-id",
            64,
            Duration::from_secs(30),
        )
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&instance).trim(),
        v.uuid.to_string()
    );
    // The person it is for: the desktop user became alice (renamed with her home before
    // the display manager started, so the session is hers), with her keyboard and clock.
    let (_, pw) = exec(&s, v.uuid, &["/usr/bin/getent", "passwd", "alice"]);
    assert!(
        pw.contains(":Alice Liddell:/home/alice:"),
        "the account: {pw:?}"
    );
    assert_eq!(
        exec(
            &s,
            v.uuid,
            &["/usr/bin/pgrep", "-u", "alice", "-x", "xfce4-panel"]
        )
        .0,
        0,
        "the panel is not alice's"
    );
    let (_, zone) = exec(&s, v.uuid, &["/usr/bin/date", "+%Z"]);
    assert!(matches!(zone.trim(), "CET" | "CEST"), "time zone {zone:?}");
    // Her home volume, formatted and mounted at /home/alice as the desktop booted (udev).
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, label) = exec(
            &s,
            v.uuid,
            &[
                "/usr/bin/findmnt",
                "-n",
                "-o",
                "LABEL",
                "--mountpoint",
                "/home/alice",
            ],
        );
        if label.trim() == "vmpool-home" {
            break;
        }
        if Instant::now() > until {
            let (_, j) = exec(
                &s,
                v.uuid,
                &[
                    "/bin/sh",
                    "-c",
                    "findmnt; journalctl -b -u vmpool-home --no-pager; ls -l /dev/disk/by-id",
                ],
            );
            panic!("no home volume at /home/alice:\n{j}");
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    assert!(
        xlog.contains(r#"Option "xkb_layout" "de""#),
        "X did not get the layout:\n{xlog}"
    );

    // What a person sees, through a real SPICE client with vmpool's ticket: remote-viewer
    // under Xvfb shows the panel (its "Applications" menu read by OCR).
    panel_on_remote_viewer(&s, v.uuid, tmp.path(), "desktop-remote-viewer.png", "Xfce");
    // And vmpool's own screenshot (QEMU renders a QXL guest's drawing for the SPICE
    // server's clients, so it is current once a client has been connected): a desktop,
    // not a console (many colours).
    let shot = tmp.path().join("desktop.png");
    s.screenshot(v.uuid, &shot).unwrap();
    let png = std::fs::read(&shot).unwrap();
    let n = colours(&png);
    assert!(n > 500, "the screen has {n} colours: not a desktop");
    let keep = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("desktop-screenshot.png");
    std::fs::write(&keep, &png).unwrap();
    eprintln!("screenshot ({n} colours): {}", keep.display());
}

/// A pool of Xfce desktops kept as a memory template: the template is a booted, logged-in
/// session; a hand-out restores it (no boot) and the desktop goes on at once, its agent
/// answering, its panel on a SPICE client's screen.
#[test]
#[ignore = "boots the Xfce template (minutes of TCG): make test-desktop"]
fn a_memory_template_of_the_xfce_session_hands_out_a_running_desktop() {
    let tmp = scratch();
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    let uri = format!(
        "dir:{}/s?accel=tcg&clone=qcow2&template_dir={}",
        tmp.path().display(),
        shm.path().display()
    );
    let s = Store::open(Some(&uri)).unwrap();
    // As `scripts/build-image --import` tags it: the program that gives a clone its own
    // identity, and a NoCloud seed for every boot.
    let req = ImportRequest::default()
        .name("debian-12-xfce")
        .tag("on_clone", "/usr/lib/vmpool/on-clone")
        .tag("on_home", "/usr/lib/vmpool/attach-home")
        .tag("cloud_init", "nocloud");
    let img = s.import_image(&image(), &req, None).unwrap();
    let mut p = vmpool::pool::PoolSpec::new("xfce", img.uuid);
    p.home_gib = Some(1);
    p.vcpus = 2;
    p.ram_mib = 2048;
    p.spares = 1;
    p.max_vms = 2;
    p.warmth = vmpool::pool::Warmth::Template;
    p.ready_marker = Some("VMPOOL-GUEST: ready".into());
    // The session settles (its autostart items) before its memory is taken.
    p.ready_delay_s = 10;
    p.ready_timeout_s = BOOT.as_secs() as u32;
    s.create_pool(&p).unwrap();
    let _kill = KillAll(&s);
    let t0 = Instant::now();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let rep = s
        .refill("xfce", &Default::default(), &|_| {}, &stop)
        .unwrap();
    assert!(rep.errors.is_empty() && rep.template_built, "{rep:?}");
    eprintln!("template and a spare in {:.0?}", t0.elapsed());
    let for_user = |login: &str| vmpool::pool::AcquireOptions {
        user: Some(GuestUser {
            login: login.into(),
            timezone: Some("Asia/Tokyo".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let a = s.acquire("xfce", "alice", &for_user("alice")).unwrap();
    eprintln!(
        "acquire: {} ({}) in {:.1} ms {:?}",
        a.path.as_str(),
        a.was,
        a.total_ms,
        a.steps
    );
    assert_eq!(a.was, "waiting", "a spare waiting for the template's state");
    let v = a.vm.uuid;
    let handed_out = Instant::now();
    // The restored session goes on: no boot happened since the hand-out (the guest's
    // uptime goes on from the template's, which booted minutes ago), and a boot would
    // have printed the ready marker on this VM's serial console.
    s.agent_wait(v, Duration::from_secs(120)).unwrap();
    assert_eq!(exec(&s, v, &["/usr/bin/pgrep", "-x", "xfce4-panel"]).0, 0);
    let (_, up) = exec(&s, v, &["/usr/bin/cat", "/proc/uptime"]);
    let up: f64 = up.split_whitespace().next().unwrap().parse().unwrap();
    let since = handed_out.elapsed().as_secs_f64();
    assert!(
        up > since + 30.0,
        "the guest is up {up:.0} s, {since:.0} s after the hand-out: it booted"
    );
    assert!(
        !serial_log(&s, v).contains("VMPOOL-GUEST: ready"),
        "the clone booted instead of going on from the template"
    );
    panel_on_remote_viewer(
        &s,
        v,
        tmp.path(),
        "template-clone-remote-viewer.png",
        "restored",
    );
    // The same owner comes back to the same desktop.
    let again = s
        .acquire("xfce", "alice", &vmpool::pool::AcquireOptions::default())
        .unwrap();
    assert_eq!(again.vm.uuid, v);
    // Each clone its own identity: a second owner's clone of the same template differs
    // in hostname (its alias) and machine id (without the step both would carry the
    // template's).
    let b = s.acquire("xfce", "bob", &for_user("bob")).unwrap();
    assert_ne!(b.vm.uuid, v);
    assert!(a.steps.iter().any(|s| s.0 == "identity"), "{:?}", a.steps);
    let (ia, ib) = (identity_of(&s, v), identity_of(&s, b.vm.uuid));
    assert_eq!(
        ia.hostname,
        vmpool::vm::identity::hostname_from(&a.vm.alias)
    );
    assert_eq!(
        ib.hostname,
        vmpool::vm::identity::hostname_from(&b.vm.alias)
    );
    assert_eq!((ia.machine_id.len(), ib.machine_id.len()), (32, 32));
    assert!(ia.ssh_host_key.starts_with("ssh-ed25519 "), "{ia:?}");
    ia.differs_from(&ib, "the two clones");
    assert_ne!(
        ia.urandom, ib.urandom,
        "the two clones drew the same random bytes"
    );
    assert_ne!(a.vm.vmgenid, b.vm.vmgenid);
    // Each its owner's: the running session's account renamed in place (the panel goes on
    // as uid 1000, now called by their name), their time zone.
    for (vm, login) in [(v, "alice"), (b.vm.uuid, "bob")] {
        assert_eq!(
            exec(
                &s,
                vm,
                &["/usr/bin/pgrep", "-u", login, "-x", "xfce4-panel"]
            )
            .0,
            0,
            "{login}'s desktop"
        );
        assert_eq!(exec(&s, vm, &["/usr/bin/date", "+%Z"]).1.trim(), "JST");
    }
    // And neither is the template: its values are on its disk (the template image), where
    // its first boot wrote them before its memory was taken.
    let pool = s.pool("xfce").unwrap();
    let timg = s.image(pool.template.unwrap().image_uuid).unwrap();
    let t = template_identity(&timg.disk, tmp.path());
    // The template booted with throwaway values of its own (its seed named it after its
    // build VM), not the image's.
    assert_eq!(t.hostname, "xfce-template", "{t:?}");
    eprintln!("template {t:?}\nclone a {ia:?}\nclone b {ib:?}");
    ia.differs_from(&t, "clone a and the template");
    ib.differs_from(&t, "clone b and the template");

    // Each owner's home volume, hot-plugged after the restore and mounted at /home/<login>
    // before the acquire returned; what alice keeps there outlives her desktop, and bob's
    // desktop never has it.
    assert!(a.steps.iter().any(|s| s.0 == "home"), "{:?}", a.steps);
    for (vm, login) in [(v, "alice"), (b.vm.uuid, "bob")] {
        let home = format!("/home/{login}");
        let (_, label) = exec(
            &s,
            vm,
            &[
                "/usr/bin/findmnt",
                "-n",
                "-o",
                "LABEL",
                "--mountpoint",
                &home,
            ],
        );
        assert_eq!(label.trim(), "vmpool-home", "{login}'s home");
    }
    let (rc, _) = exec(
        &s,
        v,
        &[
            "/bin/sh",
            "-c",
            "echo kept-by-alice > /home/alice/notes.txt && chown alice: /home/alice/notes.txt",
        ],
    );
    assert_eq!(rc, 0);
    assert_ne!(
        exec(
            &s,
            b.vm.uuid,
            &["/usr/bin/test", "-e", "/home/bob/notes.txt"]
        )
        .0,
        0,
        "bob sees alice's file"
    );
    s.release(v).unwrap();
    let c = s.acquire("xfce", "alice", &for_user("alice")).unwrap();
    assert_ne!(c.vm.uuid, v, "a new desktop");
    let (_, kept) = exec(&s, c.vm.uuid, &["/usr/bin/cat", "/home/alice/notes.txt"]);
    if kept.trim() != "kept-by-alice" {
        let (_, why) = exec(
            &s,
            c.vm.uuid,
            &[
                "/bin/sh",
                "-c",
                "findmnt; ls -la /home /home/alice; journalctl -b -u vmpool-home --no-pager; dmesg | tail -30; getent passwd alice 2>&1",
            ],
        );
        panic!("alice's new desktop has not her file: {kept:?}\n{why}");
    }
    eprintln!(
        "acquire with the home: {} ({}) in {:.1} ms {:?}",
        c.path.as_str(),
        c.was,
        c.total_ms,
        c.steps
    );
}

/// What must be a VM's own; `urandom` is 32 bytes its `/dev/urandom` gave after the hand-out
/// (equal in two clones if their random state were the template's; empty for the template).
#[derive(Debug)]
struct GuestIdentity {
    hostname: String,
    machine_id: String,
    ssh_host_key: String,
    urandom: String,
}

impl GuestIdentity {
    fn differs_from(&self, o: &GuestIdentity, what: &str) {
        assert_ne!(self.hostname, o.hostname, "{what} share a hostname");
        assert_ne!(self.machine_id, o.machine_id, "{what} share a machine id");
        assert_ne!(
            self.ssh_host_key, o.ssh_host_key,
            "{what} share an SSH host key"
        );
    }
}

fn identity_of(s: &Store, vm: Uuid) -> GuestIdentity {
    let file = |path: &str| {
        let b = s
            .agent_read_file(vm, path, 4096, Duration::from_secs(30))
            .unwrap();
        String::from_utf8_lossy(&b).trim().to_owned()
    };
    GuestIdentity {
        urandom: exec(
            s,
            vm,
            &["/usr/bin/od", "-An", "-tx1", "-N32", "/dev/urandom"],
        )
        .1,
        hostname: exec(s, vm, &["/usr/bin/hostname"]).1.trim().to_owned(),
        machine_id: file("/etc/machine-id"),
        ssh_host_key: file("/etc/ssh/ssh_host_ed25519_key.pub"),
    }
}

/// The template's identity, read from its disk (test tooling: `qemu-img` and `debugfs` read
/// a copy; the library runs neither).
fn template_identity(disk: &str, tmp: &std::path::Path) -> GuestIdentity {
    let raw = tmp.join("template.raw");
    let st = Command::new("qemu-img")
        .args(["convert", "-O", "raw", disk])
        .arg(&raw)
        .status()
        .unwrap();
    assert!(st.success(), "qemu-img convert {disk}");
    // The root file system is the first partition (scripts/build-image): its start sector
    // is in the MBR's first entry.
    let mut mbr = [0u8; 512];
    std::io::Read::read_exact(&mut std::fs::File::open(&raw).unwrap(), &mut mbr).unwrap();
    let start = u32::from_le_bytes(mbr[454..458].try_into().unwrap()) as u64;
    // The root file system alone, its journal replayed: what the guest wrote shortly before
    // the template was taken may still be only in the ext4 journal, which debugfs does not read
    // (a fresh-clone CI run saw the image's hostname there).
    let part = tmp.join("template-root.ext4");
    let st = Command::new("dd")
        .arg(format!("if={}", raw.display()))
        .arg(format!("of={}", part.display()))
        .args(["bs=1M", "conv=sparse", "status=none"])
        .arg("iflag=skip_bytes")
        .arg(format!("skip={}", start * 512))
        .status()
        .unwrap();
    assert!(st.success(), "dd the root partition");
    std::fs::remove_file(&raw).unwrap();
    let st = Command::new("e2fsck")
        .args(["-fy", "-E", "journal_only"])
        .arg(&part)
        .status()
        .unwrap();
    assert!(
        matches!(st.code(), Some(0..=2)),
        "e2fsck -E journal_only: {st:?}"
    );
    let fs = part.display().to_string();
    let cat = |path: &str| {
        let out = Command::new("debugfs")
            .args(["-R", &format!("cat {path}")])
            .arg(&fs)
            .output()
            .unwrap();
        assert!(out.status.success(), "debugfs cat {path}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let t = GuestIdentity {
        hostname: cat("/etc/hostname"),
        machine_id: cat("/etc/machine-id"),
        ssh_host_key: cat("/etc/ssh/ssh_host_ed25519_key.pub"),
        urandom: String::new(),
    };
    std::fs::remove_file(&part).unwrap();
    assert_eq!(t.machine_id.len(), 32, "the template's machine id: {t:?}");
    assert!(t.ssh_host_key.starts_with("ssh-ed25519 "), "{t:?}");
    t
}

struct KillAll<'a>(&'a Store);

impl Drop for KillAll<'_> {
    fn drop(&mut self) {
        if let Ok(vms) = self.0.vms(None) {
            for v in vms {
                let _ = self.0.kill_vm(v.uuid);
            }
        }
    }
}

struct KillOnDrop<'a>(&'a Store, Uuid);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill_vm(self.1);
    }
}
