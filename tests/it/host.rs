//! A host that reboots, for real: TCG test guests in a store whose every supervisor and QEMU
//! is killed at once (a power cut), or put to sleep by `host stop` first (a clean shutdown),
//! then `host start` as the boot's `vmpool.service` runs it. Each desktop comes back running
//! or asleep as it was, none lost, none doubled, every owner lands on their own.

use crate::common::*;
use crate::sessions::{alive, next_tick, ticks, vm};
use std::time::{Duration, Instant};
use uuid::Uuid;
use vmpool::pool::{AcquireOptions, AcquirePath, PoolSpec, Warmth};
use vmpool::store::{StartOptions, HOST_STOP_REASON};
use vmpool::vm::State;
use vmpool::Store;

fn refill(s: &Store, pool: &str) {
    let r = s
        .refill(pool, &Default::default(), &|_| {}, &Default::default())
        .unwrap();
    assert!(r.errors.is_empty(), "{r:?}");
}

fn acquire(s: &Store, pool: &str, owner: &str) -> vmpool::pool::Acquired {
    s.acquire(pool, owner, &AcquireOptions::default()).unwrap()
}

/// Every supervisor and QEMU pid of the store's runs.
fn pids(s: &Store) -> Vec<u32> {
    s.vms(None)
        .unwrap()
        .iter()
        .filter_map(|v| s.vm_status(v.uuid).unwrap().run)
        .flat_map(|r| [r.supervisor_pid, r.qemu_pid])
        .collect()
}

fn wait_gone(pids: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while pids.iter().any(|p| alive(*p)) {
        assert!(Instant::now() < deadline, "still alive: {pids:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sorted(mut v: Vec<Uuid>) -> Vec<Uuid> {
    v.sort();
    v
}

/// The pool's VMs by owner (`""`: spares).
fn pool_owners(s: &Store, pool: &str) -> Vec<String> {
    let mut o: Vec<String> = s
        .vms(None)
        .unwrap()
        .into_iter()
        .filter(|v| v.pool.as_deref() == Some(pool))
        .map(|v| v.owner)
        .collect();
    o.sort();
    o
}

#[test]
fn a_host_that_went_down_under_its_vms_brings_each_back_as_it_was() {
    let e = guest_store("&clone=qcow2");
    let mut p = PoolSpec::new("desk", e.image.uuid);
    p.ram_mib = 256;
    p.spares = 1;
    p.max_vms = 4;
    p.home_gib = Some(1);
    e.s.create_pool(&p).unwrap();
    refill(&e.s, "desk");
    let ann = acquire(&e.s, "desk", "ann").vm.uuid;
    let bob = acquire(&e.s, "desk", "bob").vm.uuid;
    e.wait_log(&ann, "VMPOOL-TEST-GUEST: tick=", 1);
    e.wait_log(&bob, "VMPOOL-TEST-GUEST: tick=", 1);
    e.s.suspend_vm(bob, "idle").unwrap();
    let bob_last = *ticks(&e, &bob).last().unwrap();
    // A VM of no pool started by hand, one stopped by hand, one never started.
    let svc = vm(&e, "svc");
    let off = vm(&e, "off");
    let never = vm(&e, "never");
    for u in [svc, off] {
        e.s.start_vm(u, &StartOptions::default()).unwrap();
    }
    e.s.stop_vm(off, Duration::from_secs(1)).unwrap();
    e.wait_log(&svc, "VMPOOL-TEST-GUEST: tick=", 1);
    let marked: Vec<bool> = [ann, bob, svc, off, never]
        .iter()
        .map(|u| e.s.vm(*u).unwrap().autoboot)
        .collect();
    assert_eq!(marked, [true, true, true, false, false]);
    // The power goes: every supervisor and QEMU of the store at once.
    let all = pids(&e.s);
    assert_eq!(all.len(), 4, "ann's and svc's runs");
    for p in &all {
        // SAFETY: kill(2) on pids of this test's own VMs, read from their run facts.
        unsafe { libc::kill(*p as i32, libc::SIGKILL) };
    }
    wait_gone(&all);
    // The boot: the unit's `host start` opens the store and brings it back.
    let s = Store::open(Some(&e.uri)).unwrap();
    assert_eq!(s.vm(ann).unwrap().state, State::Failed);
    let r = s.host_start().unwrap();
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(r.started, sorted(vec![ann, svc]), "{r:?}");
    assert_eq!(r.asleep, vec![bob]);
    assert!(r.woken.is_empty() && r.suspended.is_empty(), "{r:?}");
    assert_eq!(r.refilled, vec!["desk".to_string()]);
    let states: Vec<State> = [ann, bob, svc, off, never]
        .iter()
        .map(|u| s.vm(*u).unwrap().state)
        .collect();
    use State::*;
    assert_eq!(states, [Running, Suspended, Running, Stopped, Stopped]);
    // Their memory went with the host: they boot again, ann's with her home plugged in.
    e.wait_log(&ann, "VMPOOL-TEST-GUEST: booted", 2);
    e.wait_log(&svc, "VMPOOL-TEST-GUEST: booted", 2);
    assert_eq!(s.home("ann").unwrap().attached_to, Some(ann));
    let mut q =
        vmpool::vm::qmp::Qmp::connect(&s.qmp_socket_path(ann), Duration::from_secs(10)).unwrap();
    assert!(q.has_device("home").unwrap(), "ann's home is plugged in");
    // QEMU's monitor serves one client at a time.
    drop(q);
    // None lost, none doubled: ann's, bob's and one spare.
    assert_eq!(pool_owners(&s, "desk"), ["", "ann", "bob"]);
    // Each owner lands on their own: ann's running, bob's woken where it slept.
    let a = acquire(&s, "desk", "ann");
    assert_eq!((a.vm.uuid, a.path), (ann, AcquirePath::Redirect));
    let b = acquire(&s, "desk", "bob");
    assert_eq!((b.vm.uuid, b.was), (bob, "suspended"));
    next_tick(&e, &bob, bob_last);
    assert_eq!(e.log(&bob).matches("VMPOOL-TEST-GUEST: booted").count(), 1);
    // A second host start finds nothing to do.
    let again = s.host_start().unwrap();
    assert!(
        again.errors.is_empty() && again.started.is_empty() && again.woken.is_empty(),
        "{again:?}"
    );
    assert_eq!(pool_owners(&s, "desk"), ["", "ann", "bob"]);
}

#[test]
fn host_stop_puts_every_session_to_sleep_and_host_start_brings_the_store_back() {
    let e = guest_store("&clone=qcow2&template_dir={tmp}/tpl");
    let mut p = PoolSpec::new("tpl", e.image.uuid);
    p.ram_mib = 256;
    p.warmth = Warmth::Template;
    p.spares = 1;
    p.max_vms = 3;
    p.ready_marker = Some("VMPOOL-TEST-GUEST: tick=3".into());
    e.s.create_pool(&p).unwrap();
    refill(&e.s, "tpl");
    let ann = acquire(&e.s, "tpl", "ann").vm.uuid;
    refill(&e.s, "tpl");
    let svc = vm(&e, "svc");
    e.s.start_vm(svc, &StartOptions::default()).unwrap();
    e.wait_log(&svc, "VMPOOL-TEST-GUEST: tick=", 1);
    let ann_t = *ticks(&e, &ann).last().unwrap();
    next_tick(&e, &ann, ann_t);
    let spare =
        e.s.vms(None)
            .unwrap()
            .into_iter()
            .find(|v| v.pool.as_deref() == Some("tpl") && v.owner.is_empty())
            .expect("a spare")
            .uuid;
    let all = pids(&e.s);
    assert_eq!(all.len(), 6, "ann's, svc's and the spare's runs");
    let r = e.s.host_stop().unwrap();
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(r.suspended, sorted(vec![ann, svc]));
    assert_eq!(r.ended, vec![spare]);
    wait_gone(&all);
    for u in [ann, svc] {
        let v = e.s.vm(u).unwrap();
        assert_eq!(v.state, State::Suspended);
        assert_eq!(v.suspended.unwrap().reason, HOST_STOP_REASON);
    }
    assert_eq!(e.s.vm(spare).unwrap().state, State::Stopped);
    // Nothing runs any more: a second stop has nothing to do.
    let again = e.s.host_stop().unwrap();
    assert!(
        again.suspended.is_empty() && again.ended.is_empty(),
        "{again:?}"
    );
    let (ann_last, svc_last) = (
        *ticks(&e, &ann).last().unwrap(),
        *ticks(&e, &svc).last().unwrap(),
    );
    // The boot.
    let s = Store::open(Some(&e.uri)).unwrap();
    let r = s.host_start().unwrap();
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(r.woken, vec![svc], "{r:?}");
    assert_eq!(r.asleep, vec![ann]);
    assert!(r.started.is_empty(), "{r:?}");
    assert_eq!(r.refilled, vec!["tpl".to_string()]);
    // The VM of no pool goes on where it was; the desktop sleeps until its owner comes.
    assert_eq!(s.vm(svc).unwrap().state, State::Running);
    next_tick(&e, &svc, svc_last);
    assert_eq!(e.log(&svc).matches("VMPOOL-TEST-GUEST: booted").count(), 1);
    assert_eq!(s.vm(ann).unwrap().state, State::Suspended);
    assert_eq!(s.pool("tpl").unwrap().status.spares_ready, 1);
    assert_eq!(pool_owners(&s, "tpl"), ["", "ann"]);
    let a = acquire(&s, "tpl", "ann");
    assert_eq!((a.vm.uuid, a.was), (ann, "suspended"));
    next_tick(&e, &ann, ann_last);
    assert_eq!(e.log(&ann).matches("VMPOOL-TEST-GUEST: booted").count(), 0);
}
