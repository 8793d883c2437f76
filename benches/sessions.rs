//! Suspend and wake under TCG (issue 20): `suspend_vm` (the guest's memory and devices saved
//! to the store, QEMU ended) and `resume_vm` of a suspended VM (a new QEMU loads the state, the
//! guest runs on) for 256 MiB, 1 GiB and 2 GiB guests, each set against its bare floor in the
//! same run: the same QMP migration sent by hand to a QEMU of the same command line (stop,
//! migrate into a file, wait; and a QEMU spawned with `-incoming defer`, the file loaded,
//! `cont`), with no supervisor, record, lock or fsync around it.
//!
//! Prints `VMPOOL-BENCH` lines (driver `session`). `VMPOOL_BENCH_SMOKE=1`: 256 MiB, two runs.

mod support;

use std::fs::File;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{emit as emit_as, smoke, time};
use vmpool::store::StartOptions;
use vmpool::vm::qmp::{MigrationStatus, Qmp};
use vmpool::vm::State;
use vmpool::{Store, VmSpec};

fn emit(id: &str, samples: &[Duration], extra: serde_json::Value) {
    emit_as("session", id, samples, extra)
}

/// Wait until `text` holds `needle` more than `from` times.
fn wait_for(text: impl Fn() -> String, needle: &str, from: usize) {
    let t = Instant::now();
    while text().matches(needle).count() <= from {
        assert!(t.elapsed() < Duration::from_secs(240), "no {needle}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn vm_log(s: &Store, vm: uuid::Uuid) -> String {
    String::from_utf8_lossy(&s.vm_log(vm, 1 << 30).unwrap()).into_owned()
}

fn wait_migration(q: &mut Qmp) {
    let t = Instant::now();
    loop {
        match q.query_migrate().unwrap() {
            MigrationStatus::Completed => return,
            MigrationStatus::InProgress(_) => {
                assert!(t.elapsed() < Duration::from_secs(300), "migration stuck");
                std::thread::sleep(Duration::from_micros(500));
            }
            other => panic!("migration ended {other:?}"),
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let (sizes, runs): (&[u64], usize) = if smoke() {
        (&[256], 2)
    } else {
        (&[256, 1024, 2048], 5)
    };
    let tmp = support::scratch();
    let uri = format!("dir:{}/s?accel=tcg&clone=qcow2", tmp.path().display());
    let (s, image) = support::guest_store(&uri);
    for &ram in sizes {
        let spec = |alias: &str| {
            VmSpec::new(image.uuid)
                .alias(alias)
                .owner("bench")
                .vcpus(1)
                .ram_mib(ram)
        };
        // vmpool: suspend to suspended, wake to running.
        let vm = s.create_vm(&spec(&format!("sleep{ram}"))).unwrap();
        s.start_vm(vm.uuid, &StartOptions::default()).unwrap();
        wait_for(|| vm_log(&s, vm.uuid), "VMPOOL-TEST-GUEST: ready", 0);
        let (mut sus, mut wake, mut bytes) = (Vec::new(), Vec::new(), 0);
        for _ in 0..runs {
            let ticks = vm_log(&s, vm.uuid).matches("tick=").count();
            wait_for(|| vm_log(&s, vm.uuid), "tick=", ticks);
            let (t, v) = time(|| s.suspend_vm(vm.uuid, "bench").unwrap());
            assert_eq!(v.state, State::Suspended);
            bytes = v.suspended.map_or(0, |x| x.bytes);
            sus.push(t);
            let (t, v) = time(|| s.resume_vm(vm.uuid).unwrap());
            assert_eq!(v.state, State::Running);
            wake.push(t);
        }
        s.kill_vm(vm.uuid).unwrap();
        let extra = serde_json::json!({"ram_mib": ram, "state_bytes": bytes});
        emit(&format!("suspend_{ram}"), &sus, extra.clone());
        emit(&format!("resume_{ram}"), &wake, extra);

        // The floor: the same migration by hand, between QEMUs of one command line.
        let other = s.create_vm(&spec(&format!("bare{ram}"))).unwrap();
        let dir = tmp.path().join(format!("bare{ram}"));
        std::fs::create_dir_all(&dir).unwrap();
        let serial = dir.join("serial.log");
        let (mut qemu, mut q) = spawn(&support::bare_args(&other, &dir, Some(&serial), false));
        wait_for(
            || std::fs::read_to_string(&serial).unwrap_or_default(),
            "VMPOOL-TEST-GUEST: ready",
            0,
        );
        let (mut save, mut load, mut bare_bytes) = (Vec::new(), Vec::new(), 0);
        let state = dir.join("state");
        for _ in 0..runs {
            let (t, ()) = time(|| {
                let f = File::create(&state).unwrap();
                q.stop().unwrap();
                q.set_max_bandwidth(u64::MAX >> 1).unwrap();
                let set = q.add_fd(f.as_fd()).unwrap();
                q.migrate_to_fdset(set).unwrap();
                wait_migration(&mut q);
            });
            save.push(t);
            bare_bytes = std::fs::metadata(&state).unwrap().len();
            drop(q);
            let _ = qemu.kill();
            let _ = qemu.wait();
            let (t, (child, conn)) = time(|| {
                let (child, mut conn) =
                    spawn(&support::bare_args(&other, &dir, Some(&serial), true));
                let f = File::open(&state).unwrap();
                let set = conn.add_fd(f.as_fd()).unwrap();
                conn.migrate_incoming_from_fdset(set).unwrap();
                wait_migration(&mut conn);
                conn.cont().unwrap();
                (child, conn)
            });
            load.push(t);
            (qemu, q) = (child, conn);
        }
        drop(q);
        let _ = qemu.kill();
        let _ = qemu.wait();
        let extra = serde_json::json!({"ram_mib": ram, "state_bytes": bare_bytes});
        emit(&format!("bare_save_{ram}"), &save, extra.clone());
        emit(&format!("bare_load_{ram}"), &load, extra);
        s.delete_vm(other.uuid).unwrap();
        s.delete_vm(vm.uuid).unwrap();
    }
}

/// A bare QEMU of `args`, and a connection to its monitor.
fn spawn(args: &[String]) -> (Child, Qmp) {
    let sock = args
        .iter()
        .find_map(|a| a.strip_prefix("socket,id=qmp,path="))
        .and_then(|a| a.split(',').next())
        .map(PathBuf::from)
        .unwrap();
    let _ = std::fs::remove_file(&sock);
    let child = Command::new("qemu-system-x86_64")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Looked for every millisecond: the floor should not wait on a retry's back-off.
    let t = Instant::now();
    while !sock.exists() && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(1));
    }
    (child, Qmp::connect(&sock, Duration::from_secs(30)).unwrap())
}
