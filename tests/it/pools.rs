//! Pools for real: QEMU (TCG) guests from the test template, spares, owners coming back,
//! memory templates whose clones go on without booting, and many processes acquiring at once
//! (some killed with SIGKILL mid-way).

use crate::common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};
use uuid::Uuid;
use vmpool::pool::{AcquireOptions, AcquirePath, PoolSpec, RefillOptions, Warmth};
use vmpool::vm::State;
use vmpool::Store;

const MARKER: &str = "VMPOOL-TEST-GUEST: tick=3";

type Env = GuestStore;

fn env() -> Env {
    // Memory templates in the scratch directory, removed with it.
    guest_store("&template_dir={tmp}/tpl")
}

impl Env {
    fn pool(&self, name: &str, warmth: Warmth, spares: u32, max: u32) -> PoolSpec {
        let mut p = PoolSpec::new(name, self.image.uuid);
        p.vcpus = 1;
        p.ram_mib = 256;
        p.warmth = warmth;
        p.spares = spares;
        p.max_vms = max;
        p.ready_marker = Some(MARKER.into());
        self.s.create_pool(&p).unwrap();
        p
    }

    fn refill(&self, name: &str) -> vmpool::pool::RefillReport {
        let r = self
            .s
            .refill(
                name,
                &RefillOptions::default(),
                &|_| {},
                &AtomicBool::new(false),
            )
            .unwrap();
        assert!(r.errors.is_empty(), "refill: {:?}", r.errors);
        r
    }
}

/// The ticks a guest printed, in order.
fn ticks(log: &str) -> Vec<u64> {
    log.lines()
        .filter_map(|l| l.split("tick=").nth(1)?.trim().parse().ok())
        .collect()
}

#[test]
fn a_template_clone_goes_on_without_booting() {
    let e = env();
    e.pool("tpl", Warmth::Template, 1, 5);
    let r = e.refill("tpl");
    assert!(r.template_built, "{r:?}");
    assert_eq!(r.spares, 1, "{r:?}");
    let p = e.s.pool("tpl").unwrap();
    let t = p.template.expect("a template");
    assert_eq!(p.status.spares_ready, 1, "{:?}", p.status);

    let opts = AcquireOptions {
        console_ttl: Some(Duration::from_secs(60)),
        another: false,
        ..Default::default()
    };
    let a = e.s.acquire("tpl", "alice", &opts).unwrap();
    eprintln!(
        "template clone, waiting QEMU: {:.1} ms {:?}",
        a.total_ms, a.steps
    );
    assert_eq!(a.path, AcquirePath::Spare);
    assert_eq!(a.was, "waiting");
    assert_eq!(a.vm.state, State::Running);
    assert_eq!(a.vm.owner, "alice");
    assert_eq!(a.vm.image_uuid, t.image_uuid);
    assert!(a.console.is_some());
    // The template was paused after it printed tick=3: the clone's first tick is past it,
    // and it never booted.
    let log = e.wait_log(&a.vm.uuid, "tick=", 1);
    let first = ticks(&log)[0];
    assert!(first > 3, "first tick {first} of the clone:\n{log}");
    assert!(!log.contains("booted"), "the clone booted:\n{log}");
    // Its own identity: MAC and vmgenid differ from every other clone's.
    let again = e.s.acquire("tpl", "alice", &opts).unwrap();
    assert_eq!(again.path, AcquirePath::Redirect);
    assert_eq!(again.vm.uuid, a.vm.uuid);

    // No spare left: a clone with a fresh QEMU, same story.
    let b = e.s.acquire("tpl", "bob", &opts).unwrap();
    eprintln!(
        "template clone, fresh QEMU: {:.1} ms {:?}",
        b.total_ms, b.steps
    );
    assert_eq!(b.path, AcquirePath::Created);
    assert_ne!(b.vm.uuid, a.vm.uuid);
    assert_ne!(b.vm.mac, a.vm.mac);
    assert_ne!(b.vm.vmgenid, a.vm.vmgenid);
    let log = e.wait_log(&b.vm.uuid, "tick=", 1);
    assert!(ticks(&log)[0] > 3 && !log.contains("booted"), "{log}");

    // Release: destroyed; the pool can be deleted once nobody holds a VM.
    assert_eq!(
        e.s.delete_pool("tpl").unwrap_err().code(),
        Code::VMPOOL_RESULT_IN_USE
    );
    e.s.release(a.vm.uuid).unwrap();
    e.s.release(b.vm.uuid).unwrap();
    assert!(e.s.vm(a.vm.uuid).is_err());

    // A new flavor: the template is rebuilt, the old one goes, spares follow.
    e.s.update_pool(
        "tpl",
        &vmpool::pool::PoolUpdate {
            ram_mib: Some(320),
            ..Default::default()
        },
    )
    .unwrap();
    let r = e.refill("tpl");
    assert!(r.template_built, "{r:?}");
    let p = e.s.pool("tpl").unwrap();
    let t2 = p.template.unwrap();
    assert_ne!(t2.image_uuid, t.image_uuid);
    assert_eq!(
        e.s.image(t.image_uuid).unwrap_err().code(),
        Code::VMPOOL_RESULT_NOT_FOUND,
        "the old template image is gone"
    );
    assert!(!t.memory.exists(), "the old template's RAM file is gone");
    let spares: Vec<_> =
        e.s.vms(None)
            .unwrap()
            .into_iter()
            .filter(|v| v.pool.as_deref() == Some("tpl"))
            .collect();
    assert_eq!(spares.len(), 1);
    assert_eq!(
        (spares[0].ram_mib, spares[0].image_uuid),
        (320, t2.image_uuid)
    );
    // Template images are the pool's: not listed, not deletable by hand.
    assert!(e
        .s
        .images()
        .unwrap()
        .iter()
        .all(|i| i.uuid != t2.image_uuid));
    assert_eq!(
        e.s.delete_image(t2.image_uuid).unwrap_err().code(),
        Code::VMPOOL_RESULT_IN_USE
    );
    assert_eq!(
        e.s.delete_image(e.image.uuid).unwrap_err().code(),
        Code::VMPOOL_RESULT_IN_USE,
        "the pool's image"
    );
    e.s.delete_pool("tpl").unwrap();
    assert!(!t2.memory.exists());
    assert_eq!(
        e.s.image(t2.image_uuid).unwrap_err().code(),
        Code::VMPOOL_RESULT_NOT_FOUND
    );
    e.s.delete_image(e.image.uuid).unwrap();
    assert!(e.s.vms(None).unwrap().is_empty());
    let _ = e.uri;
}

#[test]
fn owners_get_their_own_vm_and_come_back_to_it() {
    let e = env();
    e.pool("desk", Warmth::Disk, 2, 3);
    e.refill("desk");
    assert_eq!(e.s.pool("desk").unwrap().status.spares_ready, 2);
    let o = AcquireOptions::default();
    let mut got = BTreeMap::new();
    for who in ["ann", "ben", "cat"] {
        let a = e.s.acquire("desk", who, &o).unwrap();
        assert_eq!(a.vm.owner, who);
        assert!(a.vm.state.is_active());
        got.insert(who, a.vm.uuid);
    }
    let distinct: BTreeSet<_> = got.values().collect();
    assert_eq!(distinct.len(), 3);
    // At the maximum: a fourth owner is refused, nothing is made.
    let err = e.s.acquire("desk", "dan", &o).unwrap_err();
    assert_eq!(err.code(), Code::VMPOOL_RESULT_POOL_EXHAUSTED, "{err}");
    assert_eq!(e.s.vms(None).unwrap().len(), 3);
    // Coming back: the same VM, never a second.
    for (who, u) in &got {
        let a = e.s.acquire("desk", who, &o).unwrap();
        assert_eq!(a.path, AcquirePath::Redirect);
        assert_eq!(a.vm.uuid, *u);
    }
    // Another one, past the owner's maximum of 1: refused.
    let err =
        e.s.acquire(
            "desk",
            "ann",
            &AcquireOptions {
                another: true,
                ..o.clone()
            },
        )
        .unwrap_err();
    assert_eq!(err.code(), Code::VMPOOL_RESULT_POOL_EXHAUSTED, "{err}");
    for u in got.values() {
        e.s.release(*u).unwrap();
    }
    e.s.delete_pool("desk").unwrap();
}

/// A worker process of the tests below: this test binary run again with `POOL_WORKER` set
/// (`acquire OWNER...`: acquire each, pause it to spare the CPU, print `owner uuid path`;
/// `refill`: one refill). Without the variable it does nothing.
#[test]
fn worker_process() {
    let Ok(mode) = std::env::var("POOL_WORKER") else {
        return;
    };
    let s = Store::open(Some(&std::env::var("POOL_WORKER_URI").unwrap())).unwrap();
    let pool = std::env::var("POOL_WORKER_POOL").unwrap();
    let mut words = mode.split_whitespace();
    match words.next() {
        Some("acquire") => {
            for owner in words {
                let a = s.acquire(&pool, owner, &AcquireOptions::default()).unwrap();
                assert_eq!(a.vm.state, State::Running, "{owner}: {:?}", a.vm);
                println!("GOT {owner} {} {}", a.vm.uuid, a.path.as_str());
                // Coming back at once: the same VM.
                let again = s.acquire(&pool, owner, &AcquireOptions::default()).unwrap();
                assert_eq!(again.vm.uuid, a.vm.uuid);
                assert_eq!(again.path, AcquirePath::Redirect);
                s.pause_vm(a.vm.uuid).unwrap();
            }
        }
        Some("refill") => {
            let r = s
                .refill(
                    &pool,
                    &RefillOptions::default(),
                    &|_| {},
                    &AtomicBool::new(false),
                )
                .unwrap();
            assert!(r.errors.is_empty(), "{r:?}");
        }
        other => panic!("unknown worker mode {other:?}"),
    }
}

fn worker(uri: &str, pool: &str, mode: &str) -> std::process::Command {
    let mut c = std::process::Command::new(std::env::current_exe().unwrap());
    c.args([
        "--exact",
        "pools::worker_process",
        "--nocapture",
        "--test-threads",
        "1",
    ])
    .env("POOL_WORKER", mode)
    .env("POOL_WORKER_URI", uri)
    .env("POOL_WORKER_POOL", pool)
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    c
}

/// `owner -> uuid` of the pool's VMs held by owners, from the records; panics if an owner
/// holds two.
fn holdings(s: &Store, pool: &str) -> BTreeMap<String, Uuid> {
    let mut m = BTreeMap::new();
    for v in s.vms(None).unwrap() {
        if v.pool.as_deref() == Some(pool) && !v.owner.is_empty() {
            if let Some(prev) = m.insert(v.owner.clone(), v.uuid) {
                panic!("{} holds two VMs: {prev} and {}", v.owner, v.uuid);
            }
        }
    }
    m
}

#[test]
fn eight_processes_acquiring_at_once_hand_out_each_vm_once() {
    let e = env();
    e.pool("many", Warmth::Template, 4, 300);
    e.refill("many");
    let kids: Vec<_> = (0..8)
        .map(|i| {
            let owners: Vec<String> = (0..25).map(|j| format!("p{i}-o{j}")).collect();
            worker(&e.uri, "many", &format!("acquire {}", owners.join(" ")))
                .spawn()
                .unwrap()
        })
        .collect();
    let mut got: BTreeMap<String, Uuid> = BTreeMap::new();
    let mut paths: BTreeMap<String, usize> = BTreeMap::new();
    for k in kids {
        let o = k.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "worker failed: {text}\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        // The test harness may print its own words before the first line.
        for l in text
            .lines()
            .filter_map(|l| l.find("GOT ").map(|i| &l[i + 4..]))
        {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert!(got.insert(f[0].into(), f[1].parse().unwrap()).is_none());
            *paths.entry(f[2].into()).or_default() += 1;
        }
    }
    assert_eq!(got.len(), 200, "owners served");
    let distinct: BTreeSet<_> = got.values().collect();
    assert_eq!(distinct.len(), 200, "distinct VMs");
    assert_eq!(paths.get("spare"), Some(&4), "{paths:?}");
    // The records agree: each owner holds exactly the VM they were given.
    assert_eq!(holdings(&e.s, "many"), got);
    // Three refills at once end at exactly the target.
    let kids: Vec<_> = (0..3)
        .map(|_| worker(&e.uri, "many", "refill").spawn().unwrap())
        .collect();
    for k in kids {
        let o = k.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let p = e.s.pool("many").unwrap();
    assert_eq!(
        (p.status.spares_ready, p.status.owned, p.status.total),
        (4, 200, 204),
        "{:?}",
        p.status
    );
    for u in got.values() {
        e.s.release(*u).unwrap();
    }
    e.s.delete_pool("many").unwrap();
    assert!(e.s.vms(None).unwrap().is_empty());
}

#[test]
fn acquirers_killed_at_random_leave_no_orphan_and_no_double_hand_out() {
    let e = env();
    e.pool("kill", Warmth::Template, 2, 100);
    e.refill("kill");
    let mut next = xorshift(clock_seed());
    let mut tried = Vec::new();
    for round in 0..20 {
        let owners: Vec<String> = (0..3).map(|j| format!("k{round}-{j}")).collect();
        tried.extend(owners.iter().cloned());
        let mut k = worker(&e.uri, "kill", &format!("acquire {}", owners.join(" ")))
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(50 + next(800)));
        k.kill().unwrap(); // SIGKILL
        k.wait().unwrap();
    }
    // The next open cleans what the dead left; a refill restores the spares.
    let s = Store::open(Some(&e.uri)).unwrap();
    e.refill("kill");
    let held = holdings(&s, "kill");
    eprintln!(
        "{} of {} owners held a VM when their acquirer was killed",
        held.len(),
        tried.len()
    );
    // Everyone gets exactly one VM: the one they hold if a killed process got that far.
    for o in &tried {
        let a = s.acquire("kill", o, &AcquireOptions::default()).unwrap();
        if let Some(u) = held.get(o) {
            assert_eq!(a.vm.uuid, *u, "{o} got a second VM");
            assert_eq!(a.path, AcquirePath::Redirect);
        }
        s.pause_vm(a.vm.uuid).unwrap();
    }
    let held = holdings(&s, "kill");
    assert_eq!(held.len(), tried.len());
    // No orphan: every VM of the pool is an owner's or a spare, every disk and every QEMU
    // belongs to a record, and nothing is left in the journal.
    let vms = s.vms(None).unwrap();
    let known: BTreeSet<Uuid> = vms.iter().map(|v| v.uuid).collect();
    let p = s.pool("kill").unwrap();
    assert_eq!(
        p.status.total as usize,
        vms.iter()
            .filter(|v| v.pool.as_deref() == Some("kill"))
            .count()
    );
    assert_eq!(p.status.owned as usize, tried.len());
    let root = e.tmp.path().join("s");
    // A record write cut short leaves a hidden temp file (`.tmp-*`), which no listing shows;
    // recovery removes those once they are old enough that no live writer can own them.
    let mut temps = Vec::new();
    for f in std::fs::read_dir(root.join("vms")).unwrap().flatten() {
        let n = f.file_name().to_string_lossy().into_owned();
        if n.starts_with(".tmp-") {
            temps.push(f.path());
            continue;
        }
        let u: Uuid = n[..36].parse().unwrap();
        assert!(known.contains(&u), "{n} has no VM record");
    }
    if !temps.is_empty() {
        let old = std::time::SystemTime::now() - Duration::from_secs(600);
        for t in &temps {
            std::fs::File::options()
                .write(true)
                .open(t)
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        drop(vmpool::Store::open(Some(&e.uri)).unwrap());
        for t in &temps {
            assert!(!t.exists(), "{} survived recovery", t.display());
        }
    }
    for q in qemus_of(&root) {
        assert!(
            known.contains(&q),
            "a QEMU runs for {q}, which has no record"
        );
    }
    assert_eq!(
        std::fs::read_dir(root.join(".journal")).unwrap().count(),
        0,
        "journal entries left"
    );
    for v in vms {
        if v.pool.is_some() && !v.owner.is_empty() {
            s.release(v.uuid).unwrap();
        }
    }
    s.delete_pool("kill").unwrap();
    assert!(qemus_of(&root).is_empty());
}

/// The VMs whose QEMU runs with a disk under `root`.
fn qemus_of(root: &std::path::Path) -> Vec<Uuid> {
    let mut out = Vec::new();
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmd) = std::fs::read(p.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if !args.first().is_some_and(|a| a.contains("qemu-system"))
            || !args.iter().any(|a| a.contains(&*root.to_string_lossy()))
        {
            continue;
        }
        if let Some(i) = args.iter().position(|a| a == "-uuid") {
            out.push(args[i + 1].parse().unwrap());
        }
    }
    out
}

#[test]
fn paused_spares_resume_and_reset_makes_a_fresh_one() {
    let e = env();
    let mut p = PoolSpec::new("warm", e.image.uuid);
    p.ram_mib = 256;
    p.warmth = Warmth::Paused;
    p.spares = 1;
    p.max_vms = 2;
    p.on_release = vmpool::pool::OnRelease::Reset;
    p.ready_marker = Some("VMPOOL-TEST-GUEST: ready".into());
    e.s.create_pool(&p).unwrap();
    let r = e.refill("warm");
    assert_eq!((r.created, r.warmed, r.spares), (1, 1, 1), "{r:?}");
    let spare =
        e.s.vms(None)
            .unwrap()
            .into_iter()
            .find(|v| v.pool.as_deref() == Some("warm"))
            .unwrap();
    assert_eq!(spare.state, State::Paused);
    assert!(spare.owner.is_empty());
    let a =
        e.s.acquire("warm", "ann", &AcquireOptions::default())
            .unwrap();
    assert_eq!(
        (a.path, a.was, a.vm.uuid),
        (AcquirePath::Spare, "paused", spare.uuid)
    );
    assert_eq!(a.vm.state, State::Running);
    // It went on: booted once, and ticks after it was resumed.
    let before = ticks(&e.log(&a.vm.uuid)).last().copied().unwrap_or(0);
    let log = e.wait_log(&a.vm.uuid, &format!("tick={}", before + 1), 1);
    assert_eq!(log.matches("VMPOOL-TEST-GUEST: booted").count(), 1, "{log}");
    // Reset: wiped, and a fresh spare takes its place at once.
    e.s.release(a.vm.uuid).unwrap();
    assert!(e.s.vm(a.vm.uuid).is_err());
    let left: Vec<_> =
        e.s.vms(None)
            .unwrap()
            .into_iter()
            .filter(|v| v.pool.as_deref() == Some("warm"))
            .collect();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].owner.is_empty() && left[0].uuid != a.vm.uuid);
    // Refill pauses it once the guest is ready.
    e.refill("warm");
    assert_eq!(e.s.pool("warm").unwrap().status.spares_ready, 1);
    assert_eq!(e.s.vm(left[0].uuid).unwrap().state, State::Paused);
    e.s.delete_pool("warm").unwrap();
    assert!(e.s.vms(None).unwrap().is_empty());
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let e = env();
    let o = AcquireOptions::default();
    let code = |r: vmpool::Result<vmpool::pool::Acquired>| r.unwrap_err().code();
    assert_eq!(
        code(e.s.acquire("nope", "ann", &o)),
        Code::VMPOOL_RESULT_NOT_FOUND
    );
    let mut p = PoolSpec::new("p", Uuid::new_v4());
    assert_eq!(
        e.s.create_pool(&p).unwrap_err().code(),
        Code::VMPOOL_RESULT_NOT_FOUND
    );
    p.image_uuid = e.image.uuid;
    p.spares = 11;
    assert_eq!(
        e.s.create_pool(&p).unwrap_err().code(),
        Code::VMPOOL_RESULT_INVALID_ARGUMENT
    );
    p.spares = 0;
    p.name = "../p".into();
    assert_eq!(
        e.s.create_pool(&p).unwrap_err().code(),
        Code::VMPOOL_RESULT_INVALID_ARGUMENT
    );
    p.name = "p".into();
    e.s.create_pool(&p).unwrap();
    assert_eq!(
        e.s.create_pool(&p).unwrap_err().code(),
        Code::VMPOOL_RESULT_ALREADY_EXISTS
    );
    assert_eq!(
        code(e.s.acquire("p", "a b", &o)),
        Code::VMPOOL_RESULT_INVALID_ARGUMENT
    );
    assert_eq!(
        code(e.s.acquire("p", "", &o)),
        Code::VMPOOL_RESULT_INVALID_ARGUMENT
    );
    let u = vmpool::pool::PoolUpdate {
        max_vms: Some(0),
        ..Default::default()
    };
    assert_eq!(
        e.s.update_pool("p", &u).unwrap_err().code(),
        Code::VMPOOL_RESULT_INVALID_ARGUMENT
    );
    assert_eq!(e.s.pool("p").unwrap().spec.max_vms, 10, "unchanged");
    let vm =
        e.s.create_vm(&payload(&e.image.uuid, "plain", "ann", 1))
            .unwrap();
    assert_eq!(
        e.s.release(vm.uuid).unwrap_err().code(),
        Code::VMPOOL_RESULT_INVALID_ARGUMENT
    );
    assert_eq!(
        e.s.release(Uuid::new_v4()).unwrap_err().code(),
        Code::VMPOOL_RESULT_NOT_FOUND
    );
    assert_eq!(e.s.vms(None).unwrap().len(), 1);
    assert_eq!(e.s.pool("p").unwrap().status.total, 0);
}

/// The CLI as a pool service: `pool create` from stdin, `pool refill --watch` keeps the
/// spares up (also after they are taken) and ends cleanly on SIGTERM; JSON as the C ABI's.
#[test]
fn the_cli_runs_a_pool_and_its_refill_service() {
    let e = env();
    let payload = format!(
        r#"{{"name":"cli","image_uuid":"{}","vcpus":1,"ram_mib":256,"max_vms":5,"spares":2}}"#,
        e.image.uuid
    );
    let out = ctl(
        &e.uri,
        &["--json", "pool", "create", "-"],
        &[],
        Some(&payload),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["name"].as_str(), v["spares"].as_u64()),
        (Some("cli"), Some(2))
    );
    let mut svc = std::process::Command::new(env!("CARGO_BIN_EXE_vmpoolctl"))
        .args([
            "--store",
            &e.uri,
            "pool",
            "refill",
            "cli",
            "--watch",
            "--interval",
            "1",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ready = |n: u32| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while e.s.pool("cli").unwrap().status.spares_ready != n {
            assert!(Instant::now() < deadline, "spares never reached {n}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    ready(2);
    let out = ctl(
        &e.uri,
        &["--json", "pool", "acquire", "cli", "--owner", "ann"],
        &[],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(a["path"], "spare");
    assert_eq!(a["vm"]["owner"], "ann");
    assert_eq!(a["vm"]["pool"], "cli");
    ready(2); // the service made another
    let t = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(svc.id() as i32),
        nix::sys::signal::SIGTERM,
    )
    .unwrap();
    let st = svc.wait().unwrap();
    assert!(st.success(), "refill --watch ended with {st:?}");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "SIGTERM took {:?}",
        t.elapsed()
    );
    let out = ctl(&e.uri, &["pool", "list"], &[], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("cli") && text.contains("2/2"), "{text}");
    let out = ctl(
        &e.uri,
        &["pool", "release", a["vm"]["uuid"].as_str().unwrap()],
        &[],
        None,
    );
    assert!(out.status.success());
    let out = ctl(&e.uri, &["pool", "delete", "cli"], &[], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every failpoint of pools and templates, with the CLI killed there and failing there: the
/// next open and the next call leave exactly one VM per owner, spares that are spares, and no
/// leftover (template images, build VMs, disks, journal entries).
#[test]
fn every_pool_failpoint_kill_and_error() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut points = Vec::new();
    for f in std::fs::read_dir(root.join("src/pool")).unwrap() {
        let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
        points.extend(
            text.split("fail_point!(\"")
                .skip(1)
                .map(|p| p.split('"').next().unwrap().to_owned()),
        );
    }
    assert!(points.len() >= 4, "{points:?}");
    for point in &points {
        for action in ["kill", "error"] {
            let e = env();
            let fp = format!("{point}={action}");
            let template = point.starts_with("template.");
            let mut p = PoolSpec::new("fp", e.image.uuid);
            p.ram_mib = 256;
            p.max_vms = 4;
            p.warmth = if template {
                Warmth::Template
            } else {
                Warmth::Disk
            };
            p.ready_marker = Some(MARKER.into());
            p.spares = u32::from(point.starts_with("pool_acquire") || template);
            e.s.create_pool(&p).unwrap();
            let args: Vec<&str> = match point.split('.').next().unwrap() {
                "pool_acquire" | "pool_make" => {
                    e.refill("fp");
                    vec!["pool", "acquire", "fp", "--owner", "ann"]
                }
                "template" => vec!["pool", "refill", "fp"],
                other => panic!("failpoint {point}: no scenario for {other} in this test"),
            };
            if template && action == "error" {
                // A refill reports what failed and goes on (spares of the image meanwhile).
                let out = ctl(&e.uri, &args, &[("VMPOOL_FAILPOINTS", &fp)], None);
                let text = String::from_utf8_lossy(&out.stdout);
                assert!(out.status.success(), "{fp}: {out:?}");
                assert!(
                    text.contains("error: building the memory template"),
                    "{fp}: {text}"
                );
            } else {
                ctl_failing_at(&e.uri, point, action, &args, None);
            }
            // The next open cleans up; the next calls go on from there.
            let s = Store::open(Some(&e.uri)).unwrap();
            let r = s
                .refill(
                    "fp",
                    &RefillOptions::default(),
                    &|_| {},
                    &AtomicBool::new(false),
                )
                .unwrap();
            assert!(r.errors.is_empty(), "{fp}: {r:?}");
            let a = s.acquire("fp", "ann", &AcquireOptions::default()).unwrap();
            assert_eq!(a.vm.state, State::Running, "{fp}");
            let held = holdings(&s, "fp");
            assert_eq!(held.get("ann"), Some(&a.vm.uuid), "{fp}: {held:?}");
            assert_eq!(held.len(), 1, "{fp}");
            let vms = s.vms(None).unwrap();
            let pool = s.pool("fp").unwrap();
            assert_eq!(
                pool.status.total as usize,
                vms.len(),
                "{fp}: {:?}",
                pool.status
            );
            let known: BTreeSet<Uuid> = vms.iter().map(|v| v.uuid).collect();
            let store = e.tmp.path().join("s");
            for f in std::fs::read_dir(store.join("vms")).unwrap().flatten() {
                let n = f.file_name().to_string_lossy().into_owned();
                assert!(
                    known.contains(&n[..36].parse().unwrap()),
                    "{fp}: {n} has no record"
                );
            }
            assert_eq!(
                std::fs::read_dir(store.join(".journal")).unwrap().count(),
                0,
                "{fp}: journal entries left"
            );
            if template {
                // One template image (the current one), its files, nothing else.
                let t = pool.template.expect("a template after the refill");
                let images: Vec<_> = std::fs::read_dir(store.join("images"))
                    .unwrap()
                    .flatten()
                    .map(|f| f.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.ends_with(".json") && !n.contains(&e.image.uuid.to_string()))
                    .collect();
                assert_eq!(images.len(), 1, "{fp}: {images:?}");
                assert!(
                    images[0].contains(&t.image_uuid.to_string()),
                    "{fp}: {images:?}"
                );
                let dirs = std::fs::read_dir(t.memory.parent().unwrap().parent().unwrap())
                    .unwrap()
                    .count();
                assert_eq!(dirs, 1, "{fp}: template directories left");
            }
            s.release(a.vm.uuid).unwrap();
            s.delete_pool("fp").unwrap();
            assert!(s.vms(None).unwrap().is_empty(), "{fp}");
        }
    }
}

/// A clone whose identity step fails (here: made to fail as it begins, through the CLI) is
/// never handed out: it is destroyed, the owner holds nothing, and the pool counts it.
#[test]
fn a_clone_whose_customization_fails_is_destroyed_and_counted() {
    let e = env();
    let mut req = vmpool::ImportRequest::default().name("with-on-clone");
    req.tags.insert(
        "on_clone".into(),
        serde_json::Value::String("/bin/true".into()),
    );
    let img = e.s.import_image(&test_image(), &req, None).unwrap();
    let mut p = PoolSpec::new("custom", img.uuid);
    p.ram_mib = 256;
    p.warmth = Warmth::Template;
    p.spares = 1;
    p.max_vms = 3;
    p.ready_marker = Some(MARKER.into());
    e.s.create_pool(&p).unwrap();
    e.refill("custom");
    assert_eq!(e.s.pool("custom").unwrap().status.customization_failures, 0);
    let out = ctl(
        &e.uri,
        &["pool", "acquire", "custom", "--owner", "ann"],
        &[("VMPOOL_FAILPOINTS", "identity.exec=error")],
        None,
    );
    assert_eq!(
        out.status.code(),
        Some(Code::VMPOOL_RESULT_HYPERVISOR as i32),
        "{out:?}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("own identity"),
        "{out:?}"
    );
    let st = e.s.pool("custom").unwrap().status;
    assert_eq!(st.customization_failures, 1, "{st:?}");
    assert!(
        st.last_customization_failure
            .as_deref()
            .is_some_and(|w| w.contains("identity.exec")),
        "{st:?}"
    );
    assert!(holdings(&e.s, "custom").is_empty());
    assert!(e.s.vms(Some("ann")).unwrap().is_empty());
    e.s.delete_pool("custom").unwrap();
}
