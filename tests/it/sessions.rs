//! Desktops that sleep and wake, for real: TCG test guests suspended to the store (their
//! QEMU ended, their RAM freed) and woken where they were. The test guest counts a tick a
//! second in its RAM (`VMPOOL-TEST-GUEST: tick=N`) and its boots on its disk: a woken guest
//! goes on counting from its last tick without booting again.

use crate::common::*;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use uuid::Uuid;
use vmpool::pool::{AcquireOptions, AcquirePath, OnLogout, PoolSpec, Warmth};
use vmpool::store::StartOptions;
use vmpool::vm::State;
use vmpool::Store;

/// The guest's ticks so far, in order.
pub(crate) fn ticks(e: &GuestStore, vm: &Uuid) -> Vec<u64> {
    guest_ticks(&e.log(vm))
}

fn guest_ticks(log: &str) -> Vec<u64> {
    log.lines()
        .filter_map(|l| l.split("VMPOOL-TEST-GUEST: tick=").nth(1))
        .filter_map(|v| v.trim().parse().ok())
        .collect()
}

/// Wait until the guest printed a tick above `after`; that tick.
pub(crate) fn next_tick(e: &GuestStore, vm: &Uuid, after: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(t) = ticks(e, vm).into_iter().find(|t| *t > after) {
            return t;
        }
        let v = e.s.vm(*vm).unwrap();
        assert!(
            Instant::now() < deadline && v.state.is_active(),
            "VM {vm}: no tick after {after}; {:?} {:?}",
            v.state,
            v.last_exit
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The pid of the VM's QEMU while it runs.
fn qemu_pid(s: &Store, vm: Uuid) -> u32 {
    s.vm_status(vm).unwrap().run.expect("a run").qemu_pid
}

pub(crate) fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

fn run_dir(e: &GuestStore, vm: &Uuid) -> std::path::PathBuf {
    e.s.catalog_dir().join("run").join(vm.to_string())
}

fn saved_state(e: &GuestStore, vm: &Uuid) -> std::path::PathBuf {
    run_dir(e, vm).join("suspend.state")
}

pub(crate) fn vm(e: &GuestStore, alias: &str) -> Uuid {
    e.s.create_vm(
        &vmpool::VmSpec::new(e.image.uuid)
            .alias(alias)
            .owner("t")
            .vcpus(1)
            .ram_mib(256)
            .disk_gib(1),
    )
    .unwrap()
    .uuid
}

#[test]
fn a_suspended_vm_frees_its_qemu_and_wakes_where_it_was() {
    let e = guest_store("&clone=qcow2");
    let a = vm(&e, "sleeper");
    e.s.start_vm(a, &StartOptions::default()).unwrap();
    e.wait_log(&a, "VMPOOL-TEST-GUEST: tick=", 3);
    let pid = qemu_pid(&e.s, a);
    let v = e.s.suspend_vm(a, "idle").unwrap();
    assert_eq!(v.state, State::Suspended, "{:?}", v.last_exit);
    let sus = v.suspended.clone().expect("when and why");
    assert_eq!(sus.reason, "idle");
    assert!(sus.bytes > 0 && saved_state(&e, &a).exists(), "{sus:?}");
    assert!(!alive(pid), "QEMU {pid} still runs after the suspend");
    let last = *ticks(&e, &a).last().unwrap();
    // Asleep, nothing counts; what it may not do is refused by name.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(*ticks(&e, &a).last().unwrap(), last);
    let upd = e.s.update_vm(
        a,
        &vmpool::store::VmUpdate {
            ram_mib: Some(512),
            ..Default::default()
        },
    );
    assert_eq!(upd.unwrap_err().code().name(), "INVALID_STATE");
    assert_eq!(
        e.s.suspend_vm(a, "again").unwrap_err().code().name(),
        "INVALID_STATE"
    );
    assert_eq!(
        e.s.suspend_vm(a, "bad\nreason").unwrap_err().code().name(),
        "INVALID_ARGUMENT"
    );
    // A start wakes it: the same guest counts on, it did not boot again.
    let woken = e.s.start_vm(a, &StartOptions::default()).unwrap();
    assert_eq!(woken.state, State::Running);
    assert!(woken.suspended.is_none());
    let t = next_tick(&e, &a, last);
    assert!(t <= last + 2, "the guest went on from tick {last} at {t}");
    assert_eq!(e.log(&a).matches("VMPOOL-TEST-GUEST: booted").count(), 1);
    assert!(!saved_state(&e, &a).exists(), "a loaded state stays behind");
    // Twice more, through resume this time; then a stop of a suspended VM discards the state
    // and its next start boots from its disk.
    for round in 0..2 {
        e.s.suspend_vm(a, "on request").unwrap();
        let last = *ticks(&e, &a).last().unwrap();
        assert_eq!(e.s.resume_vm(a).unwrap().state, State::Running, "{round}");
        next_tick(&e, &a, last);
    }
    e.s.suspend_vm(a, "on request").unwrap();
    let stopped = e.s.stop_vm(a, Duration::from_secs(5)).unwrap();
    assert_eq!(stopped.state, State::Stopped);
    assert!(!saved_state(&e, &a).exists());
    e.s.start_vm(a, &StartOptions::default()).unwrap();
    e.wait_log(&a, "VMPOOL-TEST-GUEST: booted", 2);
}

/// A memory-template clone with its owner's home, handed out by a pool: suspended, its
/// owner's next acquire wakes the same desktop (network card and home plugged in again), and
/// the home stays claimed while it sleeps.
#[test]
fn an_owners_acquire_wakes_their_suspended_desktop_with_its_home() {
    let e = guest_store("&clone=qcow2&template_dir={tmp}/tpl");
    let mut p = PoolSpec::new("desk", e.image.uuid);
    p.ram_mib = 256;
    p.warmth = Warmth::Template;
    p.spares = 1;
    p.max_vms = 4;
    p.ready_marker = Some("VMPOOL-TEST-GUEST: tick=3".into());
    p.home_gib = Some(1);
    e.s.create_pool(&p).unwrap();
    let r =
        e.s.refill("desk", &Default::default(), &|_| {}, &Default::default())
            .unwrap();
    assert!(r.errors.is_empty(), "{r:?}");
    let got =
        e.s.acquire("desk", "ann", &AcquireOptions::default())
            .unwrap();
    let u = got.vm.uuid;
    let boots = e.log(&u).matches("VMPOOL-TEST-GUEST: booted").count();
    e.wait_log(&u, "home=", 1);
    let t0 = *ticks(&e, &u).last().unwrap();
    next_tick(&e, &u, t0);
    let v = e.s.suspend_vm(u, "idle").unwrap();
    assert_eq!(v.state, State::Suspended);
    // Asleep, the home is still hers in that desktop: no other pool's desktop takes it.
    let home = e.s.home("ann").unwrap();
    assert_eq!(home.attached_to, Some(u));
    let last = *ticks(&e, &u).last().unwrap();
    let again =
        e.s.acquire("desk", "ann", &AcquireOptions::default())
            .unwrap();
    assert_eq!(again.vm.uuid, u);
    assert_eq!(again.path, AcquirePath::Redirect);
    assert_eq!(again.was, "suspended");
    assert!(
        again.steps.iter().any(|(name, _)| *name == "wake"),
        "{:?}",
        again.steps
    );
    assert_eq!(again.vm.state, State::Running);
    next_tick(&e, &u, last);
    let mut q =
        vmpool::vm::qmp::Qmp::connect(&e.s.qmp_socket_path(u), Duration::from_secs(10)).unwrap();
    assert!(
        q.has_device("home").unwrap(),
        "the home is plugged in again"
    );
    assert!(
        q.has_device("nic0").unwrap(),
        "the network card is plugged in again"
    );
    assert_eq!(
        e.log(&u).matches("VMPOOL-TEST-GUEST: booted").count(),
        boots
    );
}

/// Kill -9 of the suspending (and the waking) process at random moments: afterwards (once
/// the store's recovery ran, as every open does) the VM is either running on or suspended
/// with a whole state that wakes, never neither; a half-written state is never loaded.
#[test]
fn a_suspend_or_wake_killed_at_any_moment_leaves_a_running_or_suspended_vm() {
    let e = guest_store("&clone=qcow2");
    let a = vm(&e, "killed");
    e.s.start_vm(a, &StartOptions::default()).unwrap();
    e.wait_log(&a, "VMPOOL-TEST-GUEST: tick=", 2);
    let mut next = xorshift(clock_seed());
    let (mut ran, mut slept) = (0, 0);
    for round in 0..10 {
        let before = e.s.vm(a).unwrap().state;
        let verb = if before == State::Suspended {
            "resume"
        } else {
            "suspend"
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_vmpoolctl"))
            .args(["--store", &e.uri, "vm", verb, &a.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // A suspend of this guest takes about a second, a wake less: kills land before,
        // inside and after each.
        let wait = Duration::from_millis(20 + next(if verb == "resume" { 700 } else { 2500 }));
        std::thread::sleep(wait);
        let _ = child.kill();
        let status = child.wait().unwrap();
        // The next process to open the store settles what the killed one left. A start killed
        // while its supervisor came up leaves a run that is still `starting` for a moment
        // (its QEMU then waits for the state): the opens after that settle it.
        let deadline = Instant::now() + Duration::from_secs(20);
        let v = loop {
            let v = Store::open(Some(&e.uri)).unwrap().vm(a).unwrap();
            if matches!(v.state, State::Running | State::Suspended) || Instant::now() > deadline {
                break v;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let last = *ticks(&e, &a).last().unwrap_or(&0);
        eprintln!("round {round}: {verb} killed after {wait:?}: {:?}", v.state);
        match v.state {
            State::Running => {
                ran += 1;
                next_tick(&e, &a, last);
            }
            State::Suspended => {
                slept += 1;
                assert!(
                    saved_state(&e, &a).exists(),
                    "round {round}: suspended without a state"
                );
            }
            other => panic!(
                "round {round}: {verb} killed after {wait:?} ({:?}) left the VM {other:?} ({:?})",
                status.signal(),
                v.last_exit
            ),
        }
        assert!(
            !run_dir(&e, &a).join("suspend.state.partial").exists(),
            "round {round}: a partial state stays"
        );
    }
    // Whatever the rounds left, the guest wakes (if asleep) and counts on from its last tick
    // without booting again.
    if e.s.vm(a).unwrap().state == State::Suspended {
        e.s.start_vm(a, &StartOptions::default()).unwrap();
    }
    let last = *ticks(&e, &a).last().unwrap();
    next_tick(&e, &a, last);
    assert_eq!(e.log(&a).matches("VMPOOL-TEST-GUEST: booted").count(), 1);
    eprintln!("kill -9 rounds: running after {ran}, suspended after {slept}");
}

/// A pool's idle policy: a handed-out desktop nobody looks at (no console client, no hand-out
/// or ticket) for `idle_suspend_after_s` is suspended by the next refill, one that was just
/// asked for is not, and its owner's acquire wakes it where it was.
#[test]
fn a_desktop_nobody_looks_at_sleeps_at_the_next_refill_and_wakes_for_its_owner() {
    let e = guest_store("&clone=qcow2");
    let mut p = PoolSpec::new("idle", e.image.uuid);
    p.ram_mib = 256;
    p.max_vms = 2;
    p.idle_suspend_after_s = Some(4);
    e.s.create_pool(&p).unwrap();
    let refill = || {
        e.s.refill("idle", &Default::default(), &|_| {}, &Default::default())
            .unwrap()
    };
    let u =
        e.s.acquire("idle", "bo", &AcquireOptions::default())
            .unwrap()
            .vm
            .uuid;
    e.wait_log(&u, "VMPOOL-TEST-GUEST: tick=", 1);
    // Asked for a console ticket now and then: never idle long enough.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_secs(2));
        e.s.console(u, Duration::from_secs(60)).unwrap();
        let r = refill();
        assert_eq!(r.suspended, 0, "{r:?}");
        assert_eq!(e.s.vm(u).unwrap().state, State::Running);
    }
    // Then nobody: the refill after the idle time puts it to sleep.
    std::thread::sleep(Duration::from_secs(5));
    let r = refill();
    assert_eq!(r.suspended, 1, "{r:?}");
    let v = e.s.vm(u).unwrap();
    assert_eq!(v.state, State::Suspended);
    assert_eq!(v.suspended.unwrap().reason, "idle");
    let last = *ticks(&e, &u).last().unwrap();
    let back =
        e.s.acquire("idle", "bo", &AcquireOptions::default())
            .unwrap();
    assert_eq!((back.vm.uuid, back.was), (u, "suspended"));
    next_tick(&e, &u, last);
    // Just woken (a hand-out): the next refill leaves it running.
    assert_eq!(refill().suspended, 0);
    assert_eq!(e.s.vm(u).unwrap().state, State::Running);
}

/// Every failpoint of suspend and wake (`src/vm/suspend.rs`), killed there and failed there:
/// the next process to open the store finds the VM running on or suspended with its state,
/// and the same guest (one boot) counts on once woken.
#[test]
fn every_suspend_failpoint_kill_and_error() {
    let points = failpoints_in("src/vm/suspend.rs");
    assert!(points.len() >= 4, "{points:?}");
    let e = guest_store("&clone=qcow2");
    let a = vm(&e, "faulty");
    e.s.start_vm(a, &StartOptions::default()).unwrap();
    e.wait_log(&a, "VMPOOL-TEST-GUEST: tick=", 1);
    let u = a.to_string();
    let mut cases = 0;
    for point in &points {
        for action in ["kill", "error"] {
            let fp = format!("{point}={action}");
            let args = match point.split('.').next().unwrap() {
                "vm_suspend" => ["vm", "suspend", &u],
                "vm_resume" => {
                    e.s.suspend_vm(a, "on request").unwrap();
                    ["vm", "resume", &u]
                }
                other => panic!("failpoint {point}: no scenario for {other} in this test"),
            };
            ctl_failing_at(&e.uri, point, action, &args, None);
            let s = Store::open(Some(&e.uri)).unwrap();
            let v = s.vm(a).unwrap();
            match v.state {
                State::Running => {}
                State::Suspended => {
                    assert!(saved_state(&e, &a).exists(), "{fp}: no state");
                    s.start_vm(a, &StartOptions::default()).unwrap();
                }
                other => panic!("{fp}: the VM is {other:?} ({:?})", v.last_exit),
            }
            let last = *ticks(&e, &a).last().unwrap();
            next_tick(&e, &a, last);
            assert!(
                !run_dir(&e, &a).join("suspend.state.partial").exists(),
                "{fp}"
            );
            cases += 1;
        }
    }
    assert_eq!(e.log(&a).matches("VMPOOL-TEST-GUEST: booted").count(), 1);
    eprintln!(
        "suspend fault injection: {} failpoints x 2 actions = {cases} cases, all running or woken",
        points.len()
    );
}

/// A pool's `on_logout`: `refresh` gives the owner a fresh desktop next time, with their home
/// (the same volume) plugged into it; `keep` gives the same desktop, still running.
#[test]
fn a_logout_refreshes_or_keeps_the_desktop_and_the_home_stays() {
    use vmpool::pool::OnLogout;
    let e = guest_store("&clone=qcow2");
    for (name, on) in [("keep", OnLogout::Keep), ("fresh", OnLogout::Refresh)] {
        let mut p = PoolSpec::new(name, e.image.uuid);
        p.ram_mib = 256;
        p.max_vms = 2;
        p.home_gib = Some(1);
        p.on_logout = on;
        e.s.create_pool(&p).unwrap();
    }
    let acquire = |pool: &str, owner: &str| {
        e.s.acquire(pool, owner, &AcquireOptions::default())
            .unwrap()
    };
    let fresh = acquire("fresh", "ann").vm.uuid;
    let kept = acquire("keep", "bo").vm.uuid;
    e.wait_log(&fresh, "VMPOOL-TEST-GUEST: tick=", 1);
    e.wait_log(&kept, "VMPOOL-TEST-GUEST: tick=", 1);
    let home = e.s.home("ann").unwrap();
    assert_eq!(home.attached_to, Some(fresh));
    // Bad input is refused by name, and changes nothing.
    let bad = e.s.logout("../ann").unwrap_err();
    assert_eq!(bad.code().name(), "INVALID_ARGUMENT");
    assert_eq!(e.s.vm(fresh).unwrap().state, State::Running);
    // Refresh: the desktop goes, the home stays hers and comes with the next one.
    let out = e.s.logout("ann").unwrap();
    assert_eq!((out.refreshed, out.kept), (vec![fresh], vec![]));
    assert_eq!(
        e.s.vm(fresh).unwrap_err().code().name(),
        "NOT_FOUND",
        "the refreshed desktop is gone"
    );
    let h = e.s.home("ann").unwrap();
    assert_eq!((h.uuid, h.attached_to), (home.uuid, None));
    let next = acquire("fresh", "ann");
    assert_ne!(next.vm.uuid, fresh);
    assert_eq!(next.path, AcquirePath::Created);
    assert_eq!(e.s.home("ann").unwrap().attached_to, Some(next.vm.uuid));
    let mut q =
        vmpool::vm::qmp::Qmp::connect(&e.s.qmp_socket_path(next.vm.uuid), Duration::from_secs(10))
            .unwrap();
    assert!(
        q.has_device("home").unwrap(),
        "her home is in the new desktop"
    );
    drop(q);
    // Keep: the same desktop, running on.
    let last = *ticks(&e, &kept).last().unwrap();
    let out = e.s.logout("bo").unwrap();
    assert_eq!((out.kept, out.refreshed), (vec![kept], vec![]));
    let back = acquire("keep", "bo");
    assert_eq!((back.vm.uuid, back.path), (kept, AcquirePath::Redirect));
    next_tick(&e, &kept, last);
}

/// A pool's session limit (`max_session_s`): each hand-out fixes when its session ends (the
/// VM says so, for a portal's warning; a redirect keeps it), the first refill after the end
/// ends it by the pool's `on_logout` (`keep`: asleep; woken by a start, as a portal's Wake
/// button does, the same guest goes on and the next refill gives it a new session, which the
/// owner's acquire then keeps; `refresh`: released, and the next acquire hands out another
/// VM), and a limit out of range is refused with nothing made.
#[test]
fn a_session_ends_at_the_pools_limit_asleep_or_released_by_on_logout() {
    let e = guest_store("&clone=qcow2");
    let spec = |name: &str, on_logout| {
        let mut p = PoolSpec::new(name, e.image.uuid);
        p.ram_mib = 256;
        p.max_vms = 2;
        p.max_session_s = Some(10);
        p.on_logout = on_logout;
        p
    };
    let mut bad = spec("bad", OnLogout::Keep);
    bad.max_session_s = Some(0);
    let err = e.s.create_pool(&bad).unwrap_err();
    assert_eq!(err.code(), Code::VMPOOL_RESULT_INVALID_ARGUMENT, "{err}");
    assert!(err.to_string().contains("max_session_s"), "{err}");
    assert!(e.s.pools().unwrap().is_empty());
    e.s.create_pool(&spec("lab", OnLogout::Keep)).unwrap();
    e.s.create_pool(&spec("class", OnLogout::Refresh)).unwrap();
    let refill = |name| {
        e.s.refill(name, &Default::default(), &|_| {}, &Default::default())
            .unwrap()
    };
    let get = |name| {
        e.s.acquire(name, "ann", &AcquireOptions::default())
            .unwrap()
    };
    let ends = |v: &vmpool::Vm| {
        humantime::parse_rfc3339(v.session_ends_at.as_deref().expect("a session end")).unwrap()
    };
    let t0 = std::time::SystemTime::now();
    let kept = get("lab").vm;
    let fresh = get("class").vm;
    for v in [&kept, &fresh] {
        // Whole seconds: the end is at most a second past t0 + 10 s (the acquire's own time).
        let left = ends(v).duration_since(t0).unwrap();
        assert!(
            left > Duration::from_secs(7) && left <= Duration::from_secs(11),
            "{left:?}"
        );
        assert_eq!(e.s.vm(v.uuid).unwrap().session_ends_at, v.session_ends_at);
    }
    // The owner back before the end: the same session.
    assert_eq!(get("lab").vm.session_ends_at, kept.session_ends_at);
    assert_eq!(
        (refill("lab").sessions_ended, refill("class").sessions_ended),
        (0, 0)
    );
    e.wait_log(&kept.uuid, "VMPOOL-TEST-GUEST: tick=", 1);
    let end = ends(&kept).max(ends(&fresh));
    std::thread::sleep(
        end.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    );
    std::thread::sleep(Duration::from_millis(1100));
    // keep: asleep, for the reason the page shows, with no session.
    assert_eq!(refill("lab").sessions_ended, 1);
    let v = e.s.vm(kept.uuid).unwrap();
    assert_eq!(v.state, State::Suspended);
    assert_eq!(
        v.suspended.unwrap().reason,
        vmpool::pool::SESSION_END_REASON
    );
    assert_eq!(v.session_ends_at, None);
    let last = *ticks(&e, &kept.uuid).last().unwrap();
    let woken = e.s.start_vm(kept.uuid, &StartOptions::default()).unwrap();
    assert_eq!(woken.state, State::Running);
    assert_eq!(
        woken.session_ends_at, None,
        "the ended session's end is not this run's"
    );
    assert_eq!(refill("lab").sessions_ended, 0);
    let again = e.s.vm(kept.uuid).unwrap();
    assert_eq!(again.state, State::Running);
    assert!(ends(&again) > ends(&kept), "a new session");
    let back = get("lab");
    assert_eq!((back.vm.uuid, back.was), (kept.uuid, "running"));
    assert_eq!(back.vm.session_ends_at, again.session_ends_at);
    next_tick(&e, &kept.uuid, last);
    assert_eq!(
        e.log(&kept.uuid)
            .matches("VMPOOL-TEST-GUEST: booted")
            .count(),
        1
    );
    // refresh: released; the next acquire is another VM with a session of its own.
    assert_eq!(refill("class").sessions_ended, 1);
    assert!(e.s.vm(fresh.uuid).is_err(), "the released VM is gone");
    let other = get("class").vm;
    assert_ne!(other.uuid, fresh.uuid);
    assert!(ends(&other) > ends(&fresh));
}
