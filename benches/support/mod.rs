//! What the VM and pool benchmarks share: the `VMPOOL-BENCH` line format that
//! scripts/bench-report reads, timing, the test template, memory readings.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// `VMPOOL_BENCH_SMOKE=1`: a few runs only (CI).
pub fn smoke() -> bool {
    std::env::var("VMPOOL_BENCH_SMOKE").is_ok_and(|v| v == "1")
}

/// Print one result line: median, p90, p99 and mean of `samples`, plus `extra` fields.
pub fn emit(driver: &str, id: &str, samples: &[Duration], extra: serde_json::Value) {
    let mut us: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e6).collect();
    if us.is_empty() {
        return;
    }
    us.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| us[((us.len() as f64 - 1.0) * p).round() as usize];
    let mut v = serde_json::json!({
        "driver": driver, "id": id, "n": us.len(),
        "median_us": pct(0.5), "p90_us": pct(0.9), "p99_us": pct(0.99),
        "mean_us": us.iter().sum::<f64>() / us.len() as f64,
    });
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    println!("VMPOOL-BENCH {v}");
}

/// Print a line that is not a latency (memory, counts): `fields` plus zeroed latencies.
pub fn emit_value(driver: &str, id: &str, fields: serde_json::Value) {
    let mut v = serde_json::json!({
        "driver": driver, "id": id,
        "median_us": 0, "p90_us": 0, "p99_us": 0, "mean_us": 0,
    });
    if let (Some(o), Some(e)) = (v.as_object_mut(), fields.as_object()) {
        o.extend(e.clone());
    }
    println!("VMPOOL-BENCH {v}");
}

/// How long `f` took, and what it returned.
pub fn time<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let t = Instant::now();
    let r = f();
    (t.elapsed(), r)
}

/// The bootable test template (scripts/make-test-image, cached).
pub fn test_image() -> PathBuf {
    let out = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/make-test-image"
    ))
    .output()
    .expect("scripts/make-test-image");
    assert!(out.status.success());
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// A field of `/proc/PID/smaps_rollup` in KiB (`Pss`, `Private_Dirty`, ...).
pub fn smaps_kib(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// `MemAvailable` of the host, KiB.
pub fn mem_available_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A scratch directory under `$VMPOOL_BENCH_TMP` (else the system's).
pub fn scratch() -> tempfile::TempDir {
    let base = std::env::var("VMPOOL_BENCH_TMP")
        .unwrap_or_else(|_| std::env::temp_dir().display().to_string());
    tempfile::tempdir_in(base).unwrap()
}

/// A store at `uri` with the test template imported.
pub fn guest_store(uri: &str) -> (vmpool::Store, vmpool::Image) {
    let s = vmpool::Store::open(Some(uri)).unwrap();
    let image = s
        .import_image(
            &test_image(),
            &vmpool::ImportRequest::default().name("bench-guest"),
            None,
        )
        .unwrap();
    (s, image)
}

/// The VM's QEMU command line for a bare QEMU, the benchmarks' alternative to vmpool's: its
/// sockets bound by path in `dir` (the supervisor hands vmpool's QEMU descriptors), no other
/// monitor to serve, its serial console in `serial` (or nowhere); `incoming`: waiting for a
/// state (`-incoming defer`).
pub fn bare_args(
    vm: &vmpool::Vm,
    dir: &Path,
    serial: Option<&Path>,
    incoming: bool,
) -> Vec<String> {
    let launch = vmpool::vm::qemu::Launch {
        uuid: uuid::Uuid::new_v4(),
        name: "bare".into(),
        vcpus: vm.vcpus,
        ram_mib: vm.ram_mib,
        accel: vmpool::vm::Accel::Tcg,
        tcg_tb_mib: None,
        disk: PathBuf::from(&vm.disk_path),
        disk_format: vm.disk_format,
        cache: vmpool::vm::qemu::Cache::None,
        firmware: vmpool::vm::qemu::FirmwareFiles::Bios,
        mac: vm.mac.clone(),
        vmgenid: vm.vmgenid,
        spice: vmpool::vm::config::SpiceAddr::Unix {
            path: dir.join("spice.sock"),
        },
        net: vmpool::vm::config::NetMode::Isolated,
        sandbox: true,
        memory_file: None,
        incoming_defer: incoming,
        clone_layout: false,
        prealloc: false,
        seed: false,
    };
    let qmp = format!(
        "socket,id=qmp,path={},server=on,wait=off",
        dir.join("qmp.sock").display()
    );
    let serial = serial.map_or("null,id=serial0".to_owned(), |p| {
        format!("file,id=serial0,path={},append=on", p.display())
    });
    vmpool::vm::qemu::command_line(&launch)
        .into_iter()
        .map(|a| {
            if a.starts_with("stdio,id=serial0") {
                serial.clone()
            } else if a.starts_with("socket,id=qmp,") {
                qmp.clone()
            } else if a.starts_with("socket,id=events,") {
                "null,id=events".into()
            } else if a.starts_with("socket,id=control,") {
                "null,id=control".into()
            } else if a.starts_with("socket,id=qga,") {
                // The guest agent's port stays; nothing listens behind it.
                "null,id=qga".into()
            } else if a == "disable-ticketing=off" {
                format!("unix=on,addr={}", dir.join("spice.sock").display())
            } else {
                a
            }
        })
        .collect()
}
