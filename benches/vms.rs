//! Running VMs under TCG (issue 10): how long `start` takes to QMP ready and to the guest's
//! first serial line, a console ticket, pause and resume, an ACPI stop; and the memory an idle
//! VM costs (PSS of QEMU and its supervisor). Each is set against the bare alternative in the
//! same run: QEMU spawned directly with the same command line (no supervisor, no record), and
//! the QMP commands sent on an already open connection.
//!
//! Prints `VMPOOL-BENCH` lines (driver `vm`) that scripts/bench-report turns into BENCHMARKS.md.
//! `VMPOOL_BENCH_SMOKE=1`: a few runs only.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{emit as emit_as, smaps_kib, smoke, time};
use vmpool::store::StartOptions;
use vmpool::vm::qmp::Qmp;
use vmpool::{Store, VmSpec};

fn emit(id: &str, samples: &[Duration], extra: serde_json::Value) {
    emit_as("vm", id, samples, extra)
}

fn pss_kib(pid: u32) -> u64 {
    smaps_kib(pid, "Pss")
}

fn wait_log(s: &Store, vm: uuid::Uuid, needle: &str, from: usize) -> Duration {
    let t = Instant::now();
    loop {
        let log = String::from_utf8_lossy(&s.vm_log(vm, 1 << 30).unwrap()).into_owned();
        if log.matches(needle).count() > from {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < Duration::from_secs(180),
            "no {needle} in the log"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runs = if smoke() { 3 } else { 20 };
    let quick = if smoke() { 10 } else { 50 };
    let tmp = support::scratch();
    let uri = format!("dir:{}/s?accel=tcg&clone=qcow2", tmp.path().display());
    let (s, image) = support::guest_store(&uri);
    let spec = |i: usize| {
        VmSpec::new(image.uuid)
            .alias(format!("bench{i}"))
            .owner("bench")
            .vcpus(1)
            .ram_mib(256)
    };
    let vm = s.create_vm(&spec(0)).unwrap();

    // 1. start to QMP ready, to the first serial line; ACPI stop to stopped.
    let (mut start, mut booted, mut stop) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        let (t, _) = time(|| s.start_vm(vm.uuid, &StartOptions::default()).unwrap());
        start.push(t);
        booted.push(t + wait_log(&s, vm.uuid, "VMPOOL-TEST-GUEST: booted", i));
        wait_log(&s, vm.uuid, "VMPOOL-TEST-GUEST: ready", i);
        let (t, v) = time(|| s.stop_vm(vm.uuid, Duration::from_secs(60)).unwrap());
        assert_eq!(
            v.last_exit.as_ref().map(|e| e.reason.as_str()),
            Some("stopped on request")
        );
        stop.push(t);
    }
    // The alternative: the same QEMU command line spawned by hand, to QMP ready.
    let mut bare = Vec::new();
    for i in 0..runs {
        let dir = tmp.path().join(format!("bare{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let args = support::bare_args(&vm, &dir, None, false);
        let (t, mut child) = time(|| {
            let child = Command::new("qemu-system-x86_64")
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            Qmp::connect(&dir.join("qmp.sock"), Duration::from_secs(30)).unwrap();
            child
        });
        bare.push(t);
        let _ = child.kill();
        let _ = child.wait();
    }
    emit("start_to_qmp_ready", &start, serde_json::json!({}));
    emit("bare_qemu_to_qmp_ready", &bare, serde_json::json!({}));
    emit("start_to_first_serial_line", &booted, serde_json::json!({}));
    emit("stop_acpi_to_stopped", &stop, serde_json::json!({}));

    // 2. console ticket, pause, resume on a running guest; and the same QMP commands on an
    //    open connection.
    s.start_vm(vm.uuid, &StartOptions::default()).unwrap();
    wait_log(&s, vm.uuid, "VMPOOL-TEST-GUEST: ready", runs);
    let mut console = Vec::new();
    let (mut pause, mut resume) = (Vec::new(), Vec::new());
    for _ in 0..quick {
        console.push(time(|| s.console(vm.uuid, Duration::from_secs(600)).unwrap()).0);
        pause.push(time(|| s.pause_vm(vm.uuid).unwrap()).0);
        resume.push(time(|| s.resume_vm(vm.uuid).unwrap()).0);
    }
    let qmp_sock = s.qmp_socket_path(vm.uuid);
    let mut q = Qmp::connect(&qmp_sock, Duration::from_secs(10)).unwrap();
    let (mut raw_ticket, mut raw_stop, mut raw_cont) = (Vec::new(), Vec::new(), Vec::new());
    let call = |q: &mut Qmp, c: &str, a: Option<serde_json::Value>| {
        q.execute(c, a, Duration::from_secs(10)).unwrap();
    };
    for _ in 0..quick {
        raw_ticket.push(
            time(|| {
                call(
                    &mut q,
                    "set_password",
                    Some(serde_json::json!({"protocol": "spice", "password": "x"})),
                );
                call(
                    &mut q,
                    "expire_password",
                    Some(serde_json::json!({"protocol": "spice", "time": "+600"})),
                );
            })
            .0,
        );
        raw_stop.push(time(|| call(&mut q, "stop", None)).0);
        raw_cont.push(time(|| call(&mut q, "cont", None)).0);
    }
    drop(q);
    emit("console_ticket", &console, serde_json::json!({}));
    emit(
        "bare_qmp_ticket_open_connection",
        &raw_ticket,
        serde_json::json!({}),
    );
    emit("pause", &pause, serde_json::json!({}));
    emit(
        "bare_qmp_stop_open_connection",
        &raw_stop,
        serde_json::json!({}),
    );
    emit("resume", &resume, serde_json::json!({}));
    emit(
        "bare_qmp_cont_open_connection",
        &raw_cont,
        serde_json::json!({}),
    );

    // 3. Memory of idle VMs: PSS of QEMU and of its supervisor, a few VMs side by side.
    let n = if smoke() { 1 } else { 4 };
    let mut vms = vec![vm.uuid];
    for i in 1..n {
        let v = s.create_vm(&spec(i)).unwrap();
        s.start_vm(v.uuid, &StartOptions::default()).unwrap();
        vms.push(v.uuid);
    }
    for v in &vms {
        wait_log(
            &s,
            *v,
            "VMPOOL-TEST-GUEST: ready",
            if *v == vm.uuid { runs } else { 0 },
        );
    }
    std::thread::sleep(Duration::from_secs(if smoke() { 1 } else { 10 }));
    let (mut qemu_kib, mut sup_kib) = (Vec::new(), Vec::new());
    for v in &vms {
        let run = s.vm_status(*v).unwrap().run.unwrap();
        qemu_kib.push(pss_kib(run.qemu_pid));
        sup_kib.push(pss_kib(run.supervisor_pid));
    }
    qemu_kib.sort_unstable();
    sup_kib.sort_unstable();
    println!(
        "VMPOOL-BENCH {}",
        serde_json::json!({
            "driver": "vm", "id": "idle_memory", "n": vms.len(), "ram_mib": 256,
            "qemu_pss_kib": qemu_kib[qemu_kib.len() / 2],
            "supervisor_pss_kib": sup_kib[sup_kib.len() / 2],
            "median_us": 0, "p90_us": 0, "p99_us": 0, "mean_us": 0,
        })
    );
    for v in &vms {
        s.kill_vm(*v).unwrap();
    }
}
