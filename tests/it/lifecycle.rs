//! Running VMs for real: QEMU (TCG) guests booting from their cloned disks, under their
//! supervisors, driven from this process and from other processes (the CLI).
//!
//! The guest is `scripts/make-test-image`: it boots from its own disk (extlinux, Debian's
//! kernel, busybox), prints `VMPOOL-TEST-GUEST: booted`, its disk size and a boot counter it
//! keeps on its disk, then a tick every second; it powers off on the ACPI button.

use crate::common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;
use vmpool::store::{StartOptions, VmUpdate};
use vmpool::vm::State;
use vmpool::{Store, Vm};

const BOOT: Duration = Duration::from_secs(120);

type Env = GuestStore;

fn env(options: &str) -> Env {
    guest_store(&format!("&clone=qcow2{options}"))
}

impl Env {
    fn vm(&self, alias: &str, disk_gib: u64) -> Vm {
        self.s
            .create_vm(
                &vmpool::VmSpec::new(self.image.uuid)
                    .alias(alias)
                    .owner("t")
                    .vcpus(1)
                    .ram_mib(256)
                    .disk_gib(disk_gib),
            )
            .unwrap()
    }

    fn wait_state(&self, vm: &Uuid, want: State, within: Duration) -> Vm {
        let deadline = Instant::now() + within;
        loop {
            let v = self.s.vm(*vm).unwrap();
            if v.state == want {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "VM {vm} is {:?} ({:?}), expected {want:?}",
                v.state,
                v.last_exit
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `key=value` of the guest's `VMPOOL-TEST-GUEST: key=value` lines, in order.
fn guest_values(log: &str, key: &str) -> Vec<u64> {
    let prefix = format!("VMPOOL-TEST-GUEST: {key}=");
    log.lines()
        .filter_map(|l| l.trim().strip_prefix(prefix.as_str()))
        .filter_map(|v| v.trim().parse().ok())
        .collect()
}

/// QEMU processes whose command line carries this VM's uuid.
fn qemu_processes(vm: &Uuid) -> Vec<u32> {
    let needle = format!("-uuid\0{vm}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    c.windows(needle.len()).any(|w| w == needle.as_bytes())
                        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                            .unwrap_or_default()
                            .contains(") Z ")
                })
                .unwrap_or(false)
        })
        .collect()
}

/// The VM's QEMU runs in its zone: not as root, no capabilities, its own PID namespace.
fn assert_zoned(s: &Store, vm: &Uuid) {
    let pid = s.vm_status(*vm).unwrap().run.unwrap().qemu_pid;
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |k: &str| {
        st.lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or("")
            .trim()
            .to_owned()
    };
    assert!(
        !field("Uid:").starts_with('0'),
        "QEMU runs as root: {}",
        field("Uid:")
    );
    assert_eq!(field("CapEff:"), "0000000000000000");
    assert_eq!(field("NoNewPrivs:"), "1");
    assert_eq!(field("Seccomp:"), "2");
    assert!(
        field("NSpid:").ends_with(" 1") || field("NSpid:").ends_with("\t1"),
        "{}",
        field("NSpid:")
    );
}

fn code<T: std::fmt::Debug>(r: vmpool::Result<T>) -> Code {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.code(),
    }
}

#[test]
fn boots_from_its_clone_counts_boots_and_sees_its_disk() {
    let e = env("");
    let image_sum = sha256_file(Path::new(&e.image.disk));
    let a = e.vm("a", 1);
    let b = e.vm("b", 2);
    for v in [&a, &b] {
        let started = e.s.start_vm(v.uuid, &StartOptions::default()).unwrap();
        assert_eq!(started.state, State::Running);
        assert_zoned(&e.s, &v.uuid);
    }
    for (v, gib) in [(&a, 1u64), (&b, 2)] {
        let log = e.wait_log(&v.uuid, "VMPOOL-TEST-GUEST: ready", 1);
        assert_eq!(guest_values(&log, "boot_count"), [1], "{}", v.alias);
        assert_eq!(guest_values(&log, "disk_bytes"), [gib << 30], "{}", v.alias);
    }
    // A reboot of the same VM: its own disk counts 2.
    e.s.reboot_vm(a.uuid).unwrap();
    let log = e.wait_log(&a.uuid, "VMPOOL-TEST-GUEST: ready", 2);
    assert_eq!(guest_values(&log, "boot_count"), [1, 2]);
    // Pause stops the guest's clock; resume goes on from there.
    e.s.pause_vm(a.uuid).unwrap();
    assert_eq!(e.s.vm(a.uuid).unwrap().state, State::Paused);
    std::thread::sleep(Duration::from_millis(300));
    let before = guest_values(&e.log(&a.uuid), "tick").len();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        guest_values(&e.log(&a.uuid), "tick").len(),
        before,
        "ticks while paused"
    );
    e.s.resume_vm(a.uuid).unwrap();
    e.wait_log(&a.uuid, "VMPOOL-TEST-GUEST: tick=", before + 2);
    // Stop (ACPI), grow the disk, start again: the guest sees the new size, counts 3.
    let stopped = e.s.stop_vm(a.uuid, Duration::from_secs(60)).unwrap();
    assert_eq!(stopped.state, State::Stopped);
    assert!(stopped.last_exit.unwrap().clean);
    assert!(e.log(&a.uuid).contains("VMPOOL-TEST-GUEST: powering off"));
    let grown =
        e.s.update_vm(
            a.uuid,
            &VmUpdate {
                disk_gib: Some(3),
                vcpus: Some(2),
                ram_mib: Some(384),
            },
        )
        .unwrap();
    assert_eq!((grown.disk_gib, grown.vcpus, grown.ram_mib), (3, 2, 384));
    e.s.start_vm(a.uuid, &StartOptions::default()).unwrap();
    let log = e.wait_log(&a.uuid, "VMPOOL-TEST-GUEST: ready", 3);
    assert_eq!(guest_values(&log, "boot_count"), [1, 2, 3]);
    assert_eq!(guest_values(&log, "disk_bytes").last(), Some(&(3u64 << 30)));
    // The template was never written.
    for v in [&a, &b] {
        e.s.stop_vm(v.uuid, Duration::from_secs(60)).unwrap();
    }
    assert_eq!(sha256_file(Path::new(&e.image.disk)), image_sum);
}

/// A descriptor the caller left open without close-on-exec (a Puma worker's socket, the lock
/// of `flock(1)` around a job) is kept neither by the supervisor, which outlives the caller,
/// nor by QEMU.
#[test]
fn the_callers_inherited_descriptors_stay_with_the_caller() {
    use std::os::unix::io::AsRawFd;
    let e = env("");
    let marker = e.tmp.path().join("inherited-marker");
    let f = std::fs::File::create(&marker).unwrap();
    // SAFETY: F_SETFD on a descriptor this test owns; clears close-on-exec, nothing else.
    assert_eq!(unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETFD, 0) }, 0);
    let v = e.vm("fds", 1);
    e.s.start_vm(v.uuid, &StartOptions::default()).unwrap();
    let run = e.s.vm_status(v.uuid).unwrap().run.unwrap();
    for pid in [run.supervisor_pid, run.qemu_pid] {
        let fds: Vec<PathBuf> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .flatten()
            .filter_map(|d| std::fs::read_link(d.path()).ok())
            .collect();
        assert!(!fds.is_empty(), "no descriptors listed for {pid}");
        assert!(
            !fds.contains(&marker),
            "process {pid} holds the caller's descriptor: {fds:?}"
        );
    }
    e.s.kill_vm(v.uuid).unwrap();
    drop(f);
}

#[test]
fn survives_its_starter_and_every_end_is_recorded() {
    let e = env("");
    let v = e.vm("ends", 1);
    let u = v.uuid.to_string();
    let ctl_ok = |args: &[&str]| {
        let out = ctl(&e.uri, args, &[], None);
        assert!(out.status.success(), "{args:?}: {out:?}");
        out
    };
    // Started by a process that exits at once; stopped by another one.
    ctl_ok(&["vm", "start", &u]);
    assert_zoned(&e.s, &v.uuid);
    e.wait_log(&v.uuid, "VMPOOL-TEST-GUEST: ready", 1);
    assert_eq!(e.s.vm(v.uuid).unwrap().state, State::Running);
    assert_eq!(qemu_processes(&v.uuid).len(), 1);
    let out = ctl_ok(&["--json", "vm", "stop", &u, "--timeout", "60"]);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["state"], "stopped");
    assert!(qemu_processes(&v.uuid).is_empty());

    // The guest powers off by itself (the ACPI button pressed behind vmpool's back).
    e.s.start_vm(v.uuid, &StartOptions::default()).unwrap();
    e.wait_log(&v.uuid, "VMPOOL-TEST-GUEST: ready", 2);
    let run = e.s.catalog_dir().join("run").join(&u);
    let mut q =
        vmpool::vm::qmp::Qmp::connect(&e.s.qmp_socket_path(v.uuid), Duration::from_secs(10))
            .unwrap();
    q.execute("system_powerdown", None, Duration::from_secs(10))
        .unwrap();
    drop(q);
    let st = e.wait_state(&v.uuid, State::Stopped, Duration::from_secs(60));
    assert_eq!(st.last_exit.unwrap().reason, "the guest powered off");

    // QEMU killed by someone else: failed, with the reason.
    let vm = e.s.start_vm(v.uuid, &StartOptions::default()).unwrap();
    let pid = e.s.vm_status(vm.uuid).unwrap().run.unwrap().qemu_pid;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    let st = e.wait_state(&v.uuid, State::Failed, Duration::from_secs(30));
    let why = st.last_exit.unwrap();
    assert!(!why.clean && why.reason.contains("SIGKILL"), "{why:?}");
    assert_eq!(why.signal, Some(9));

    // The supervisor killed: QEMU goes with it, and the status says failed, not running.
    let vm = e.s.start_vm(v.uuid, &StartOptions::default()).unwrap();
    let sup = e.s.vm_status(vm.uuid).unwrap().run.unwrap().supervisor_pid;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sup as i32),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    let st = e.wait_state(&v.uuid, State::Failed, Duration::from_secs(30));
    assert!(st.last_exit.unwrap().reason.contains("supervisor"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !qemu_processes(&v.uuid).is_empty() {
        assert!(Instant::now() < deadline, "QEMU outlived its supervisor");
        std::thread::sleep(Duration::from_millis(50));
    }
    // And it starts again from there.
    let readies = e.log(&v.uuid).matches("VMPOOL-TEST-GUEST: ready").count();
    e.s.start_vm(v.uuid, &StartOptions::default()).unwrap();
    e.wait_log(&v.uuid, "VMPOOL-TEST-GUEST: ready", readies + 1);

    // Deleting a running VM stops it and leaves nothing: no process, socket, lock or file.
    let disk = PathBuf::from(&v.disk_path);
    e.s.delete_vm(v.uuid).unwrap();
    assert!(qemu_processes(&v.uuid).is_empty());
    assert!(!run.exists(), "{} is left", run.display());
    assert!(!disk.exists());
    assert_eq!(code(e.s.vm(v.uuid)), Code::VMPOOL_RESULT_NOT_FOUND);
}

#[test]
fn eight_processes_start_stop_and_status_at_once() {
    let e = env("");
    let vms: Vec<Vm> = (0..3).map(|i| e.vm(&format!("c{i}"), 1)).collect();
    // Watch /proc all along: never two QEMU processes for one VM.
    let stop = Arc::new(AtomicBool::new(false));
    let most = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (stop, most) = (stop.clone(), most.clone());
        let ids: Vec<Uuid> = vms.iter().map(|v| v.uuid).collect();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for u in &ids {
                    most.fetch_max(qemu_processes(u).len(), Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let mut next = xorshift(0x9e37_79b9);
    let mut codes: BTreeMap<String, usize> = BTreeMap::new();
    for _round in 0..4 {
        let children: Vec<_> = (0..8)
            .map(|_| {
                let vm = vms[next(3) as usize].uuid.to_string();
                let op = ["start", "stop", "status", "start"][next(4) as usize];
                let mut args = vec![
                    "--store".to_string(),
                    e.uri.clone(),
                    "vm".into(),
                    op.into(),
                    vm,
                ];
                if op == "stop" {
                    args.extend(["--timeout".into(), "3".into()]);
                }
                (
                    op,
                    Command::new(env!("CARGO_BIN_EXE_vmpoolctl"))
                        .args(&args)
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null())
                        .spawn()
                        .unwrap(),
                )
            })
            .collect();
        for (op, mut ch) in children {
            let c = ch.wait().unwrap().code().unwrap();
            assert!(
                c == 0 || c == Code::VMPOOL_RESULT_ALREADY_RUNNING as i32,
                "{op} exited with {c}"
            );
            *codes.entry(format!("{op}:{c}")).or_default() += 1;
        }
        // Every status right: running exactly when its QEMU runs.
        for v in &vms {
            let st = e.s.vm(v.uuid).unwrap().state;
            let n = qemu_processes(&v.uuid).len();
            assert_eq!(st.is_active(), n == 1, "{}: {st:?} with {n} QEMU", v.alias);
        }
    }
    for v in &vms {
        e.s.kill_vm(v.uuid).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    eprintln!("8 processes x 4 rounds: {codes:?}");
    assert_eq!(
        most.load(Ordering::Relaxed),
        1,
        "a VM had two QEMU processes"
    );
    assert!(codes.keys().any(|k| k.starts_with("start:0")));
}

#[test]
fn bad_input_starts_nothing_and_changes_nothing() {
    let e = env("");
    let v = e.vm("bad", 1);
    let nobody = Uuid::new_v4();
    assert_eq!(
        code(e.s.start_vm(nobody, &StartOptions::default())),
        Code::VMPOOL_RESULT_NOT_FOUND
    );
    // Not running: what needs a running VM says so.
    assert_eq!(
        code(e.s.pause_vm(v.uuid)),
        Code::VMPOOL_RESULT_INVALID_STATE
    );
    assert_eq!(
        code(e.s.reboot_vm(v.uuid)),
        Code::VMPOOL_RESULT_INVALID_STATE
    );
    assert_eq!(
        code(e.s.console(v.uuid, Duration::from_secs(60))),
        Code::VMPOOL_RESULT_INVALID_STATE
    );
    // Out of range: nothing changes.
    for ttl in [0, 365 * 86_400] {
        assert_eq!(
            code(e.s.console(v.uuid, Duration::from_secs(ttl))),
            Code::VMPOOL_RESULT_INVALID_ARGUMENT
        );
    }
    for u in [
        VmUpdate {
            vcpus: Some(0),
            ..Default::default()
        },
        VmUpdate {
            ram_mib: Some(1),
            ..Default::default()
        },
        VmUpdate {
            disk_gib: Some(0),
            ..Default::default()
        },
    ] {
        assert_eq!(
            code(e.s.update_vm(v.uuid, &u)),
            Code::VMPOOL_RESULT_INVALID_ARGUMENT,
            "{u:?}"
        );
    }
    assert_eq!(e.s.vm(v.uuid).unwrap(), v);
    // Running: a second start, or changing CPUs, is refused; a shrink never happens.
    e.s.start_vm(v.uuid, &StartOptions::default()).unwrap();
    assert_eq!(
        code(e.s.start_vm(v.uuid, &StartOptions::default())),
        Code::VMPOOL_RESULT_ALREADY_RUNNING
    );
    assert_eq!(
        code(e.s.update_vm(
            v.uuid,
            &VmUpdate {
                vcpus: Some(2),
                ..Default::default()
            }
        )),
        Code::VMPOOL_RESULT_INVALID_STATE
    );
    assert_eq!(qemu_processes(&v.uuid).len(), 1);
    e.s.kill_vm(v.uuid).unwrap();
    e.s.update_vm(
        v.uuid,
        &VmUpdate {
            disk_gib: Some(2),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        code(e.s.update_vm(
            v.uuid,
            &VmUpdate {
                disk_gib: Some(1),
                ..Default::default()
            }
        )),
        Code::VMPOOL_RESULT_INVALID_ARGUMENT
    );
    // A VM whose disk is gone: NOT_FOUND, nothing started, its state unchanged.
    let w = e.vm("diskless", 1);
    std::fs::remove_file(&w.disk_path).unwrap();
    let e2 = e.s.start_vm(w.uuid, &StartOptions::default()).unwrap_err();
    assert_eq!(e2.code(), Code::VMPOOL_RESULT_NOT_FOUND, "{e2}");
    assert!(e2.to_string().contains("disk"), "{e2}");
    assert_eq!(e.s.vm(w.uuid).unwrap().state, State::Stopped);
    assert!(qemu_processes(&w.uuid).is_empty());
    // The CLI says the same with its exit codes.
    let out = ctl(&e.uri, &["vm", "start", &nobody.to_string()], &[], None);
    assert_eq!(
        out.status.code(),
        Some(Code::VMPOOL_RESULT_NOT_FOUND as i32)
    );
    let out = ctl(
        &e.uri,
        &["vm", "console", &v.uuid.to_string(), "--ttl", "0"],
        &[],
        None,
    );
    assert_eq!(
        out.status.code(),
        Some(Code::VMPOOL_RESULT_INVALID_ARGUMENT as i32)
    );
}

#[test]
fn the_serial_log_is_bounded_and_rotated() {
    let e = env("&serial_log_kib=16");
    let v = e.vm("chatty", 1);
    e.s.start_vm(v.uuid, &StartOptions::default()).unwrap();
    let log = e.wait_log(&v.uuid, "VMPOOL-TEST-GUEST: ready", 1);
    e.s.kill_vm(v.uuid).unwrap();
    let run = e.s.catalog_dir().join("run").join(v.uuid.to_string());
    let new = std::fs::metadata(run.join("serial.log")).unwrap().len();
    let old = std::fs::metadata(run.join("serial.log.1")).unwrap().len();
    assert!(
        new <= (16 << 10) + 8192 && old <= (16 << 10) + 8192,
        "{new} {old}"
    );
    assert!(log.len() as u64 <= new + old);
    assert_eq!(e.s.vm_log(v.uuid, 100).unwrap().len(), 100);
}

/// A real SPICE client reaches the guest's screen with the ticket from `console`, through
/// the `.vv` file vmpool writes: remote-viewer (Debian virt-viewer) under Xvfb, screenshot,
/// OCR of the guest's marker (tests/spice/rv-check). A wrong and an expired ticket are refused.
#[test]
#[ignore = "needs remote-viewer, Xvfb and tesseract: make test installs them"]
fn remote_viewer_reaches_the_screen_with_the_ticket() {
    for options in ["", "&spice=tcp&spice_ports=5990-5999"] {
        let e = env(options);
        let v = e.vm("spice", 1);
        e.s.start_vm(v.uuid, &StartOptions::default()).unwrap();
        e.wait_log(&v.uuid, "VMPOOL-TEST-GUEST: ready", 1);
        let tmp = scratch();
        let rv = |args: &[&str]| {
            let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/spice/rv-check"))
                .args(args)
                .args(["--timeout", "60"])
                .output()
                .unwrap();
            let line = String::from_utf8_lossy(&out.stdout).into_owned();
            (out.status.code(), line)
        };
        let c = e.s.console(v.uuid, Duration::from_secs(120)).unwrap();
        let vv = tmp.path().join("desk.vv");
        std::fs::write(&vv, &c.vv).unwrap();
        let shot = tmp.path().join("rv.png");
        let (st, line) = rv(&[
            "--vv",
            vv.to_str().unwrap(),
            "--out",
            shot.to_str().unwrap(),
            "--expect",
            "POOL-TEST-GUEST: booted",
        ]);
        assert_eq!(st, Some(0), "remote-viewer with the .vv file: {line}");
        let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "remote-viewer{}.png",
            if options.is_empty() { "-unix" } else { "-tcp" }
        ));
        let _ = std::fs::copy(&shot, keep);
        // A wrong ticket.
        let mut bad = c.vv.replace(&c.password, "not-the-ticket");
        std::fs::write(&vv, &bad).unwrap();
        let (st, line) = rv(&[
            "--vv",
            vv.to_str().unwrap(),
            "--out",
            shot.to_str().unwrap(),
        ]);
        assert_eq!(st, Some(2), "wrong ticket: {line}");
        // An expired one.
        let c = e.s.console(v.uuid, Duration::from_secs(1)).unwrap();
        std::thread::sleep(Duration::from_secs(2));
        bad = c.vv.clone();
        std::fs::write(&vv, &bad).unwrap();
        let (st, line) = rv(&[
            "--vv",
            vv.to_str().unwrap(),
            "--out",
            shot.to_str().unwrap(),
        ]);
        assert_eq!(st, Some(2), "expired ticket: {line}");
        if !options.is_empty() {
            // Only on loopback.
            let vm = e.s.vm_status(v.uuid).unwrap();
            let spice = serde_json::to_value(&vm.run.unwrap().spice).unwrap();
            assert_eq!(spice["host"], "127.0.0.1");
        }
        e.s.kill_vm(v.uuid).unwrap();
    }
}

/// Every `fail_point!` of starting and stopping (listed from src/, so a new one cannot be
/// forgotten), killed and failed through the CLI: afterwards the VM's state says exactly
/// whether a QEMU runs for it (never `running` without one, never `stopped` with one), at
/// most one QEMU ever runs, and the VM can be started and stopped again.
#[test]
fn every_lifecycle_failpoint_kill_and_error() {
    let mut points = failpoints_in("src/vm/launch.rs");
    points.extend(failpoints_in("src/vm/lifecycle.rs"));
    assert!(points.len() >= 3, "{points:?}");
    let e = env("");
    let mut cases = 0;
    for point in &points {
        for action in ["kill", "error"] {
            let v = e.vm(&format!("fp{cases}"), 1);
            let u = v.uuid.to_string();
            let (args, prepare): (Vec<&str>, bool) = match point.split('.').next().unwrap() {
                "vm_start" => (vec!["vm", "start", &u], false),
                "vm_stop" => (vec!["vm", "stop", &u, "--timeout", "5"], true),
                other => panic!("failpoint {point}: no scenario for {other} in this test"),
            };
            if prepare {
                e.s.start_vm(v.uuid, &StartOptions::default()).unwrap();
            }
            ctl_failing_at(&e.uri, point, action, &args, None);
            let fp = format!("{point}={action}");
            let s = Store::open(Some(&e.uri)).unwrap();
            let st = s.vm(v.uuid).unwrap().state;
            let n = qemu_processes(&v.uuid).len();
            assert!(n <= 1, "{fp}: {n} QEMU processes");
            assert_eq!(st.is_active(), n == 1, "{fp}: state {st:?} with {n} QEMU");
            // It goes on from there: started (again) and stopped.
            match s.start_vm(v.uuid, &StartOptions::default()) {
                Ok(_) => {}
                Err(err) => assert_eq!(
                    err.code(),
                    Code::VMPOOL_RESULT_ALREADY_RUNNING,
                    "{fp}: {err}"
                ),
            }
            assert_eq!(qemu_processes(&v.uuid).len(), 1, "{fp}");
            let k = s.kill_vm(v.uuid).unwrap();
            assert_eq!(k.state, State::Stopped, "{fp}: {k:?}");
            assert!(qemu_processes(&v.uuid).is_empty(), "{fp}");
            cases += 1;
        }
    }
    eprintln!(
        "lifecycle fault injection: {} failpoints x 2 actions = {cases} cases, all consistent",
        points.len()
    );
}

/// `firmware: uefi`: QEMU runs OVMF with the VM's own variable store (kept across runs).
#[test]
fn uefi_firmware_runs_with_its_own_variable_store() {
    let e = env("");
    let v =
        e.s.create_vm(
            &vmpool::VmSpec::new(e.image.uuid)
                .alias("uefi")
                .owner("t")
                .vcpus(1)
                .ram_mib(256)
                .firmware(vmpool::vm::Firmware::Uefi),
        )
        .unwrap();
    assert_eq!(v.firmware, vmpool::vm::Firmware::Uefi);
    e.s.start_vm(v.uuid, &StartOptions::default()).unwrap();
    // In the run directory (root's, 0700), the VM's uid owning only the file itself.
    let run = e.s.catalog_dir().join("run").join(v.uuid.to_string());
    let vars = run.join("uefi-vars.fd");
    {
        use std::os::unix::fs::MetadataExt;
        let (dir, file) = (
            std::fs::metadata(&run).unwrap(),
            std::fs::symlink_metadata(&vars).unwrap(),
        );
        assert!(file.is_file());
        assert_eq!((dir.uid(), dir.mode() & 0o777), (0, 0o700));
        assert_eq!(file.mode() & 0o777, 0o600);
        assert_ne!(file.uid(), 0, "QEMU (its VM's uid) writes its variables");
    }
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", qemu_processes(&v.uuid)[0])).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline);
    assert!(
        cmdline.contains("if=pflash") && cmdline.contains("OVMF_CODE"),
        "{cmdline}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(e.s.vm(v.uuid).unwrap().state, State::Running);
    e.s.kill_vm(v.uuid).unwrap();
    // The payload takes it by name; an unknown firmware is refused by name.
    let bad = format!(
        r#"{{"alias":"x","owner":"o","image_uuid":"{}","vcpus":1,"ram_mib":256,"firmware":"coreboot"}}"#,
        e.image.uuid
    );
    let err = e.s.create_json(&bad).unwrap_err();
    assert_eq!(err.code(), Code::VMPOOL_RESULT_INVALID_JSON, "{err}");
}

/// A store at any path starts VMs: a VM's sockets live in the runtime directory
/// (`/run/vmpool/<store id>/<uuid>/`), not in the store, and are bound through a short
/// `/proc/self/fd` path; here the catalog's path is 200 bytes long. Images, VMs and pools of
/// disk spares work there as anywhere else.
#[test]
fn a_store_at_a_200_byte_path_starts_vms() {
    let tmp = scratch();
    let base = tmp.path().display().to_string().len() + "/s".len();
    let deep = tmp
        .path()
        .join("d".repeat(200usize.saturating_sub(base + 1)));
    let uri = format!("dir:{}/s?accel=tcg&clone=qcow2", deep.display());
    let s = Store::open(Some(&uri)).unwrap();
    assert!(
        s.catalog_dir().as_os_str().len() >= 200,
        "{}",
        s.catalog_dir().display()
    );
    let image = s
        .import_image(
            &test_image(),
            &vmpool::ImportRequest::default().name("deep"),
            None,
        )
        .unwrap();
    let v = s.create_vm(&payload(&image.uuid, "deep", "t", 1)).unwrap();
    let started = s.start_vm(v.uuid, &StartOptions::default());
    struct Kill<'a>(&'a Store);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            kill_all(self.0);
        }
    }
    let _kill = Kill(&s);
    assert_eq!(started.unwrap().state, State::Running);
    let deadline = Instant::now() + BOOT;
    while !String::from_utf8_lossy(&s.vm_log(v.uuid, 1 << 20).unwrap())
        .contains("VMPOOL-TEST-GUEST: ready")
    {
        assert!(
            Instant::now() < deadline,
            "no boot in a 200-byte-deep store"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let c = s.console(v.uuid, Duration::from_secs(60)).unwrap();
    match &c.addr {
        vmpool::vm::config::SpiceAddr::Unix { path } => {
            assert!(path.as_os_str().len() <= 107, "{}", path.display());
            std::os::unix::net::UnixStream::connect(path).unwrap();
        }
        other => panic!("{other:?}"),
    }
    s.kill_vm(v.uuid).unwrap();
    let mut pool = vmpool::pool::PoolSpec::new("deep", image.uuid);
    pool.spares = 2;
    pool.disk_gib = Some(1);
    s.create_pool(&pool).unwrap();
    let stop = AtomicBool::new(false);
    let rep = s
        .refill(
            "deep",
            &vmpool::pool::RefillOptions { parallel: 2 },
            &|_| {},
            &stop,
        )
        .unwrap();
    assert!(rep.errors.is_empty() && rep.spares == 2, "{rep:?}");
    s.delete_pool("deep").unwrap();
    s.delete_vm(v.uuid).unwrap();
    assert!(s.vms(None).unwrap().is_empty());
}
