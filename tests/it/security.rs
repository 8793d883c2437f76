//! QEMU is the attacker, and so is any local user: each test performs an attack and checks that
//! nothing outside what vmpool owns was read, written, chowned, deleted or connected to.
//!
//! - A compromised QEMU (`tests/security/evil-qemu`, run as QEMU in its zone with QEMU's command
//!   line) plants links where vmpool's root-run calls would follow them: its sockets, its
//!   UEFI variables, its screendump file, any name in any host directory it can write.
//! - A local user (`nobody`) makes the memory-template directory in world-writable `/dev/shm`
//!   before vmpool does, with a link inside.
//! - A guest tries the host's loopback (`10.0.2.2`) and the host's own address.
//! - Two stores must not share uids, and a template image must not stay its builder's.
//! - A random tree of links, FIFOs and devices planted in a VM's directories, then every
//!   lifecycle call: a sentinel tree outside stays exactly as it was.
//!
//! Every test needs root (zones, `nobody`, device nodes); run without it they fail, saying so.

use crate::common::*;
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;
use vmpool::store::StartOptions;
use vmpool::Store;

const BOOT: Duration = Duration::from_secs(120);

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(
        uid,
        0,
        "tests/it/security.rs performs attacks that need root (zones, another uid, device nodes); run it as root, as `make test` does"
    );
}

/// Things outside every store that must never be touched: a root-only socket (counting who
/// connects), a secret file, a file whose owner and mode must not change, a directory.
struct Sentinels {
    dir: tempfile::TempDir,
    sock: PathBuf,
    accepted: Arc<AtomicUsize>,
    secret: PathBuf,
    owned: PathBuf,
}

fn sentinels() -> Sentinels {
    let dir = scratch();
    let sock = dir.path().join("root-only.sock");
    let l = UnixListener::bind(&sock).unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let a = accepted.clone();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            a.fetch_add(1, Ordering::SeqCst);
            drop(c);
        }
    });
    let secret = dir.path().join("secret");
    std::fs::write(&secret, format!("TOP-SECRET-{}", Uuid::new_v4())).unwrap();
    let owned = dir.path().join("owned");
    std::fs::write(&owned, b"keep me as I am").unwrap();
    std::fs::set_permissions(&owned, std::fs::Permissions::from_mode(0o600)).unwrap();
    let sub = dir.path().join("tree/deeper");
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::write(sub.join("file"), b"also keep").unwrap();
    Sentinels {
        dir,
        sock,
        accepted,
        secret,
        owned,
    }
}

/// Every entry below `dir`: its type, mode, owner, and content hash or link target.
fn listing(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let what = if m.file_type().is_symlink() {
                format!("link {}", std::fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                todo.push(p.clone());
                "dir".into()
            } else if m.is_file() {
                sha256_file(&p)
            } else {
                "special".into()
            };
            out.insert(p, format!("{:o} {}:{} {what}", m.mode(), m.uid(), m.gid()));
        }
    }
    out
}

impl Sentinels {
    fn untouched(&self, before: &BTreeMap<PathBuf, String>) {
        assert_eq!(
            &listing(self.dir.path()),
            before,
            "the sentinel tree changed"
        );
        assert_eq!(
            self.accepted.load(Ordering::SeqCst),
            0,
            "root connected to the root-only socket through a planted link"
        );
    }
}

/// The compromised QEMU, installed where a zone sees it (`/usr/local/libexec`), pointing at
/// `s`; removed on drop.
struct EvilQemu(PathBuf);

impl EvilQemu {
    fn install(s: &Sentinels) -> EvilQemu {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/security/evil-qemu"
        ))
        .unwrap()
        .replace("@SENTINEL_SOCK@", &s.sock.display().to_string())
        .replace("@SENTINEL_SECRET@", &s.secret.display().to_string())
        .replace("@SENTINEL_OWNED@", &s.owned.display().to_string());
        let dir = Path::new("/usr/local/libexec/vmpool-tests");
        std::fs::create_dir_all(dir).unwrap();
        let p = dir.join(format!("evil-qemu-{}", Uuid::new_v4().simple()));
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        EvilQemu(p)
    }
}

impl Drop for EvilQemu {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Wait until the VM's serial log holds `needle` `n` times.
fn wait_log(s: &Store, vm: Uuid, needle: &str, n: usize) -> String {
    wait_serial_log(s, vm, needle, n, BOOT)
}

fn vm(g: &GuestStore, alias: &str) -> vmpool::Vm {
    g.s.create_vm(
        &vmpool::VmSpec::new(g.image.uuid)
            .alias(alias)
            .owner("tenant")
            .vcpus(1)
            .ram_mib(256)
            .disk_gib(1),
    )
    .unwrap()
}

/// The VM's QEMU's uid (from `/proc`).
fn qemu_uid(s: &Store, v: Uuid) -> u32 {
    let pid = s.vm_status(v).unwrap().run.unwrap().qemu_pid;
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    st.lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap()
}

/// A compromised QEMU plants links under every name root might use and in every host
/// directory it can write, then vmpool takes a console ticket (and a client connects), a
/// screenshot, stops and starts it again: nothing outside is connected to, read, chowned or
/// changed, and the QEMU finds no host directory it can write at all.
#[test]
fn a_compromised_qemu_cannot_make_root_follow_its_links() {
    require_root();
    let sn = sentinels();
    let before = listing(sn.dir.path());
    let evil = EvilQemu::install(&sn);
    let g = guest_store(&format!("&clone=qcow2&zone=on&qemu={}", evil.0.display()));
    let v = vm(&g, "attacker");
    g.s.start_vm(v.uuid, &StartOptions::default()).unwrap();
    let l = wait_log(&g.s, v.uuid, "EVIL READY", 1);
    // Whatever it planted is inside its own zone (its private /tmp): no host directory.
    for line in l.lines().filter(|l| l.contains("EVIL PLANTED ")) {
        let path = line.split_whitespace().nth(2).unwrap();
        assert!(
            path.starts_with("/tmp/"),
            "a compromised QEMU wrote a host directory: {line}"
        );
    }
    // A console ticket, and a client (a root-run console proxy) connecting by the path given.
    if let Ok(c) = g.s.console(v.uuid, Duration::from_secs(60)) {
        if let vmpool::vm::config::SpiceAddr::Unix { path } = &c.addr {
            let _ = UnixStream::connect(path);
        }
    }
    // A screenshot: whatever QEMU does, the secret never lands in it.
    let dest = g.tmp.path().join("shot.png");
    let _ = g.s.screenshot(v.uuid, &dest);
    if let Ok(shot) = std::fs::read(&dest) {
        assert_ne!(
            shot,
            std::fs::read(&sn.secret).unwrap(),
            "root copied the secret"
        );
    }
    // Stop and start again: nothing it planted is chowned or copied to.
    let _ = g.s.stop_vm(v.uuid, Duration::from_secs(10));
    g.s.start_vm(v.uuid, &StartOptions::default()).unwrap();
    wait_log(&g.s, v.uuid, "EVIL READY", 2);
    g.s.kill_vm(v.uuid).unwrap();
    g.s.delete_vm(v.uuid).unwrap();
    sn.untouched(&before);
}

/// The store id as vmpool names its directories by it: `store.json`'s `id`, else (stores
/// from before ids) FNV-1a of the canonical catalog path.
fn store_id(catalog: &Path) -> String {
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(catalog.join("store.json")).unwrap()).unwrap();
    if let Some(id) = m["id"].as_str() {
        return id.to_owned();
    }
    let c = std::fs::canonicalize(catalog).unwrap();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in c.as_os_str().as_encoded_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// A local user makes the memory-template directory in `/dev/shm` before vmpool (anyone can,
/// after every reboot) with the pool's directory a link to someone's data: the refill is
/// refused by name, and the data is untouched.
#[test]
fn a_template_directory_another_user_made_is_refused() {
    require_root();
    let sn = sentinels();
    let before = listing(sn.dir.path());
    let shm = PathBuf::from(format!("/dev/shm/vmpool-sec-{}", Uuid::new_v4().simple()));
    struct Rm(PathBuf);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _rm = Rm(shm.clone());
    let g = guest_store(&format!(
        "&clone=qcow2&zone=on&template_dir={}",
        shm.display()
    ));
    let id = store_id(g.s.catalog_dir());
    let victim = sn.dir.path().join("tree");
    let st = Command::new("/bin/sh")
        .arg("-c")
        .arg(r#"mkdir -m 0755 "$1" && mkdir -m 0755 "$1/$2" && ln -s "$3" "$1/$2/tpl""#)
        .arg("sh")
        .arg(&shm)
        .arg(&id)
        .arg(&victim)
        .uid(65534)
        .gid(65534)
        .status()
        .unwrap();
    assert!(st.success(), "nobody could not prepare the attack");
    let mut p = vmpool::pool::PoolSpec::new("tpl", g.image.uuid);
    p.ram_mib = 256;
    p.spares = 1;
    p.warmth = vmpool::pool::Warmth::Template;
    p.ready_marker = Some("VMPOOL-TEST-GUEST: ready".into());
    g.s.create_pool(&p).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let rep = g.s.refill("tpl", &Default::default(), &|_| {}, &stop);
    let why = match rep {
        Err(e) => e.to_string(),
        Ok(r) => r.errors.join("; "),
    };
    assert!(
        why.contains("uid 65534") && why.contains("another user made it"),
        "the refill did not refuse the planted directory: {why:?}"
    );
    sn.untouched(&before);
    assert!(g.s.vms(None).unwrap().iter().all(|v| !v.state.is_active()));
}

/// This host's address towards the outside (no packet is sent), if it has one.
fn host_address() -> Option<std::net::IpAddr> {
    let u = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    u.connect("192.0.2.1:9").ok()?;
    let ip = u.local_addr().ok()?.ip();
    (!ip.is_loopback()).then_some(ip)
}

/// A listener that accepts and at once closes every connection, counting them (the guest's
/// `nc` ends when its peer closes).
fn counting_listener(addr: &str) -> (u16, Arc<AtomicUsize>) {
    let l = std::net::TcpListener::bind(addr).unwrap();
    let port = l.local_addr().unwrap().port();
    let n = Arc::new(AtomicUsize::new(0));
    let count = n.clone();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            drop(c);
        }
    });
    (port, n)
}

/// A link-local address on the host's loopback for as long as it lives (as a cloud's
/// metadata service would be reached), added with `ip` (test set-up, not the library).
struct LinkLocal(&'static str);

impl LinkLocal {
    fn add() -> Option<LinkLocal> {
        let addr = "169.254.169.254";
        let ok = std::process::Command::new("ip")
            .args(["addr", "replace", &format!("{addr}/32"), "dev", "lo"])
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(LinkLocal(addr))
    }
}

impl Drop for LinkLocal {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["addr", "del", &format!("{}/32", self.0), "dev", "lo"])
            .status();
    }
}

/// What the guest of a store with `options` reaches: the host's loopback (`10.0.2.2`, where
/// slirp forwards to 127.0.0.1), a link-local address of the host, and the host's own
/// address, each with a listener counting.
fn guest_reaches(options: &str) -> Vec<(String, bool, usize)> {
    let (lo, lo_hits) = counting_listener("127.0.0.1:0");
    let (any, any_hits) = counting_listener("0.0.0.0:0");
    let mut targets = vec![(format!("10.0.2.2 {lo}"), lo_hits)];
    let link_local = LinkLocal::add().expect("adding 169.254.169.254 to lo");
    let (ll, ll_hits) = counting_listener(&format!("{}:0", link_local.0));
    targets.push((format!("{} {ll}", link_local.0), ll_hits));
    if let Some(ip) = host_address() {
        targets.push((format!("{ip} {any}"), any_hits));
    }
    let g = guest_store(&format!("&clone=qcow2{options}"));
    let v = vm(&g, "probe");
    g.s.start_vm(v.uuid, &StartOptions::default()).unwrap();
    wait_log(&g.s, v.uuid, "VMPOOL-TEST-GUEST: ready", 1);
    let mut out = Vec::new();
    for (target, hits) in targets {
        type_line(&g.s, v.uuid, &format!("net {target}"));
        let shown = target.replace(' ', ":");
        let log = wait_log(&g.s, v.uuid, &format!("net {shown} "), 1);
        let open = log.contains(&format!("net {shown} open"));
        out.push((shown, open, hits.load(Ordering::SeqCst)));
    }
    g.s.kill_vm(v.uuid).unwrap();
    out
}

/// A guest reaches neither the host's loopback (`10.0.2.2`) nor the host's address; with the
/// store option `net=user` (the documented opening) the same probe does reach them, so the
/// probe can tell.
#[test]
fn guests_reach_neither_the_host_nor_its_loopback() {
    require_root();
    for (target, open, hits) in guest_reaches("") {
        assert!(
            !open && hits == 0,
            "an isolated guest reached {target} ({hits} connections)"
        );
    }
    let opened = guest_reaches("&net=user");
    for prefix in ["10.0.2.2", "169.254.169.254"] {
        assert!(
            opened
                .iter()
                .any(|(t, open, hits)| t.starts_with(prefix) && *open && *hits > 0),
            "with net=user the probe should reach {prefix}: {opened:?}"
        );
    }
}

/// Two stores on one host never hand out the same uids; a store that asks for another's
/// range is refused by name; a memory template's image is root's, not its builder's uid
/// (which goes to the next VM); run files are private.
#[test]
fn uids_are_the_stores_own_and_templates_are_roots() {
    require_root();
    let a = guest_store("&clone=qcow2&zone=on");
    let b = guest_store("&clone=qcow2&zone=on");
    let (va, vb) = (vm(&a, "a"), vm(&b, "b"));
    a.s.start_vm(va.uuid, &StartOptions::default()).unwrap();
    b.s.start_vm(vb.uuid, &StartOptions::default()).unwrap();
    let (ua, ub) = (qemu_uid(&a.s, va.uuid), qemu_uid(&b.s, vb.uuid));
    assert!(ua >= 2_000_000 && ub >= 2_000_000);
    assert!(
        ua.abs_diff(ub) >= 65_536,
        "two stores gave uids {ua} and {ub}: same range"
    );
    // Run files: the directory root's 0700, logs and the launch file 0600.
    wait_log(&a.s, va.uuid, "VMPOOL-TEST-GUEST: ready", 1);
    let run = a.s.catalog_dir().join("run").join(va.uuid.to_string());
    let m = |p: &Path| {
        let m = std::fs::metadata(p).unwrap();
        (m.uid(), m.mode() & 0o777)
    };
    assert_eq!(m(&run), (0, 0o700));
    for f in ["serial.log", "launch.json", "supervisor.log"] {
        assert_eq!(m(&run.join(f)).1, 0o600, "{f}");
    }
    // A's range asked for by another store: refused by name, nothing started.
    let base = ua - (ua - 2_000_000) % 65_536;
    let c = guest_store(&format!("&clone=qcow2&zone=on&uid_base={base}"));
    let vc = vm(&c, "c");
    let e = c.s.start_vm(vc.uuid, &StartOptions::default()).unwrap_err();
    assert_eq!(e.code(), Code::VMPOOL_RESULT_IN_USE, "{e}");
    assert!(!c.s.vm(vc.uuid).unwrap().state.is_active());
    a.s.kill_vm(va.uuid).unwrap();
    b.s.kill_vm(vb.uuid).unwrap();
    // A memory template: its image is root's once built.
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    let t = guest_store(&format!(
        "&clone=qcow2&zone=on&template_dir={}",
        shm.path().display()
    ));
    let mut p = vmpool::pool::PoolSpec::new("tpl", t.image.uuid);
    p.ram_mib = 256;
    p.spares = 1;
    p.warmth = vmpool::pool::Warmth::Template;
    p.ready_marker = Some("VMPOOL-TEST-GUEST: ready".into());
    t.s.create_pool(&p).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let rep =
        t.s.refill("tpl", &Default::default(), &|_| {}, &stop)
            .unwrap();
    assert!(rep.errors.is_empty(), "{rep:?}");
    let tpl =
        t.s.pool("tpl")
            .unwrap()
            .template
            .expect("the pool has a template");
    let img = t.s.image(tpl.image_uuid).unwrap();
    let md = std::fs::metadata(&img.disk).unwrap();
    assert_eq!(
        md.uid(),
        0,
        "the template image {} is uid {}'s",
        img.disk,
        md.uid()
    );
    for f in ["memory", "state"] {
        let dir = shm.path().join(store_id(t.s.catalog_dir())).join("tpl");
        let tdir = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .next()
            .unwrap()
            .path();
        let md = std::fs::metadata(tdir.join(f)).unwrap();
        assert_eq!((md.uid(), md.mode() & 0o777), (0, 0o444), "{f}");
    }
}

/// xorshift, for a reproducible random tree (the seed is printed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[(self.next() % xs.len() as u64) as usize]
    }
}

/// Names vmpool uses in a VM's run directory and its sockets directory, and others.
const NAMES: &[&str] = &[
    "serial.log",
    "serial.log.1",
    "qemu.log",
    "supervisor.log",
    "launch.json",
    "run.json",
    "intent",
    "uefi-vars.fd",
    "zone-error",
    "qmp.sock",
    "spice.sock",
    "events.sock",
    "root",
    "qemu",
    "x",
];

fn mknod(p: &Path, kind: libc::mode_t, major: u32, minor: u32) {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mknod with a NUL-terminated path.
    let rc = unsafe { libc::mknod(c.as_ptr(), kind | 0o666, libc::makedev(major, minor)) };
    assert_eq!(rc, 0, "mknod {}", p.display());
}

/// Plant a random entry at `p`: a link to a sentinel (file, directory, socket, a dangling
/// name), a FIFO, a device (`/dev/zero`'s, `/dev/null`'s), or a directory of more of them.
fn plant(rng: &mut Rng, sn: &Sentinels, p: &Path, depth: u32) {
    if std::fs::symlink_metadata(p).is_ok() {
        let _ = std::fs::remove_file(p).or_else(|_| std::fs::remove_dir_all(p));
    }
    let targets = [
        sn.owned.clone(),
        sn.secret.clone(),
        sn.sock.clone(),
        sn.dir.path().join("tree"),
        sn.dir.path().join("nowhere"),
    ];
    match rng.next() % if depth < 2 { 5 } else { 4 } {
        0 | 1 => std::os::unix::fs::symlink(rng.pick(&targets), p).unwrap(),
        2 => {
            let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: mkfifo with a NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0);
        }
        3 => mknod(p, libc::S_IFCHR, 1, *rng.pick(&[3, 5])),
        _ => {
            std::fs::create_dir(p).unwrap();
            for _ in 0..3 {
                let n = *rng.pick(NAMES);
                plant(rng, sn, &p.join(n), depth + 1);
            }
        }
    }
}

/// A random tree of links, FIFOs and devices under the names vmpool uses, planted in the
/// VM's run directory (and an older version's QEMU directory) and its sockets directory
/// before and between every lifecycle call: each call works or fails by name, and nothing
/// outside is read, written, chowned, deleted or connected to.
#[test]
fn planted_trees_in_a_vms_directories_reach_nothing_outside() {
    require_root();
    let seed = std::env::var("VMPOOL_SECURITY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| u64::from(std::process::id()) << 16 | 0x5eed);
    eprintln!("planted-tree seed {seed} (VMPOOL_SECURITY_SEED to repeat)");
    let mut rng = Rng(seed | 1);
    let sn = sentinels();
    let before = listing(sn.dir.path());
    let g = guest_store("&clone=qcow2&zone=on");
    // UEFI: one more file the VM's uid writes, in its run directory.
    let v =
        g.s.create_vm(
            &vmpool::VmSpec::new(g.image.uuid)
                .alias("planted")
                .owner("tenant")
                .vcpus(1)
                .ram_mib(256)
                .disk_gib(1)
                .firmware(vmpool::vm::Firmware::Uefi),
        )
        .unwrap();
    let run = g.s.catalog_dir().join("run").join(v.uuid.to_string());
    let sockets = g.s.qmp_socket_path(v.uuid).parent().unwrap().to_owned();
    let plant_all = |rng: &mut Rng| {
        for dir in [&run, &run.join("qemu"), &sockets] {
            // Only a real directory: `qemu` may itself be a planted link (into the sentinel
            // tree), and the planter, root, must not plant through it.
            if std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) {
                for _ in 0..6 {
                    let n = *rng.pick(NAMES);
                    if n != "lock" && n != "supervisor.lock" {
                        plant(rng, &sn, &dir.join(n), 0);
                    }
                }
            }
        }
    };
    std::fs::create_dir_all(run.join("qemu")).unwrap();
    let dest = g.tmp.path().join("shot.png");
    let ticket = Duration::from_secs(60);
    type Call<'a> = Box<dyn Fn() -> Result<(), vmpool::Error> + 'a>;
    let calls: Vec<(&str, Call)> = vec![
        (
            "start",
            Box::new(|| g.s.start_vm(v.uuid, &StartOptions::default()).map(drop)),
        ),
        ("status", Box::new(|| g.s.vm_status(v.uuid).map(drop))),
        (
            "console",
            Box::new(|| {
                let c = g.s.console(v.uuid, ticket)?;
                // A client of the path, as the portal's proxy is: the sockets directory is
                // root's (no tenant plants there; this test does, to try vmpool itself), and a
                // careful client connects only to a socket, never through a link.
                if let vmpool::vm::config::SpiceAddr::Unix { path } = &c.addr {
                    use std::os::unix::fs::FileTypeExt;
                    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
                        let _ = UnixStream::connect(path);
                    }
                }
                Ok(())
            }),
        ),
        ("screenshot", Box::new(|| g.s.screenshot(v.uuid, &dest))),
        ("pause", Box::new(|| g.s.pause_vm(v.uuid).map(drop))),
        ("resume", Box::new(|| g.s.resume_vm(v.uuid).map(drop))),
        ("log", Box::new(|| g.s.vm_log(v.uuid, 1 << 20).map(drop))),
        ("reboot", Box::new(|| g.s.reboot_vm(v.uuid).map(drop))),
        (
            "stop",
            Box::new(|| g.s.stop_vm(v.uuid, Duration::from_secs(5)).map(drop)),
        ),
        (
            "start",
            Box::new(|| g.s.start_vm(v.uuid, &StartOptions::default()).map(drop)),
        ),
        ("kill", Box::new(|| g.s.kill_vm(v.uuid).map(drop))),
        ("recover", Box::new(|| g.s.recover().map(drop))),
        ("delete", Box::new(|| g.s.delete_vm(v.uuid))),
    ];
    for (name, call) in &calls {
        plant_all(&mut rng);
        match call() {
            Ok(()) => eprintln!("{name}: ok"),
            Err(e) => eprintln!("{name}: {} {e}", e.code() as u32),
        }
        sn.untouched(&before);
    }
    if let Ok(shot) = std::fs::read(&dest) {
        assert_ne!(shot, std::fs::read(&sn.secret).unwrap());
    }
}
