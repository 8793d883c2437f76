//! Clone-latency benchmarks: the library against the command-line way and against the bare
//! kernel or libzfs_core call, per driver, in one run on one store.
//!
//! Drivers are chosen by environment (scripts/bench sets them up):
//! - `dir-qcow2`   always (a directory under `VMPOOL_BENCH_DIR`, default target/bench-stores)
//! - `dir-reflink` when `VMPOOL_BENCH_XFS_DIR` names a directory on XFS with reflink=1
//! - `btrfs`       when `VMPOOL_BENCH_BTRFS_DIR` names a directory on btrfs
//! - `zfs`         when `VMPOOL_BENCH_ZFS_DATASET` names a dataset (inside the guest harness)
//!
//! `VMPOOL_BENCH_DRIVERS=a,b` restricts the set; `VMPOOL_BENCH_SMOKE=1` runs a few iterations
//! only (CI). Criterion drives the timing loops; every individual operation is also recorded,
//! and each measurement ends with a line `VMPOOL-BENCH {json}` (median, p90, p99) that
//! scripts/bench-report turns into BENCHMARKS.md. Processes started for the "separate
//! processes" rows re-run this binary with `VMPOOL_BENCH_WORKER` set.

use criterion::{BenchmarkGroup, Criterion, SamplingMode};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;
use vmpool::{Image, ImportRequest, Store, VmSpec};

mod support;

use support::{emit, smoke, time};

const GIB: u64 = 1 << 30;

/// Every timed operation, per measurement, in the calls criterion made (warm-up included;
/// only the last `sample_size` calls, the measured samples, are reported).
#[derive(Default)]
struct Recorder {
    calls: Vec<Vec<Duration>>,
}

impl Recorder {
    fn call(&mut self, ops: Vec<Duration>) -> Duration {
        let total = ops.iter().sum();
        self.calls.push(ops);
        total
    }
}

/// Run one criterion benchmark whose iterations are `op` (timed) each followed by `after`
/// (untimed, e.g. destroying the clone, itself timed into `after_samples`).
fn measure(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    driver: &str,
    id: &str,
    mut op: impl FnMut() -> Duration,
) -> Vec<Duration> {
    let rec = Mutex::new(Recorder::default());
    group.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let ops: Vec<Duration> = (0..iters).map(|_| op()).collect();
            rec.lock().unwrap().call(ops)
        })
    });
    let rec = rec.into_inner().unwrap();
    let samples: Vec<Duration> = rec.calls.iter().rev().take(10).flatten().copied().collect();
    emit(driver, id, &samples, serde_json::json!({}));
    samples
}

fn run(cmd: &mut Command) {
    let out = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    DirQcow2,
    DirReflink,
    Btrfs,
    Zfs,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::DirQcow2 => "dir-qcow2",
            Kind::DirReflink => "dir-reflink",
            Kind::Btrfs => "btrfs",
            Kind::Zfs => "zfs",
        }
    }
}

fn selected() -> Vec<(Kind, String)> {
    let only: Option<Vec<String>> = std::env::var("VMPOOL_BENCH_DRIVERS")
        .ok()
        .map(|s| s.split(',').map(str::to_owned).collect());
    let tag = format!("bench-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let dir_base = std::env::var("VMPOOL_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-stores"));
    let mut out = vec![(
        Kind::DirQcow2,
        format!("dir:{}?clone=qcow2", dir_base.join(&tag).display()),
    )];
    if let Ok(d) = std::env::var("VMPOOL_BENCH_XFS_DIR") {
        out.push((Kind::DirReflink, format!("dir:{d}/{tag}?clone=reflink")));
    }
    if let Ok(d) = std::env::var("VMPOOL_BENCH_BTRFS_DIR") {
        out.push((Kind::Btrfs, format!("btrfs:{d}/{tag}")));
    }
    if let Ok(d) = std::env::var("VMPOOL_BENCH_ZFS_DATASET") {
        out.push((Kind::Zfs, format!("zfs:{d}/{tag}")));
    }
    out.retain(|(k, _)| {
        only.as_ref()
            .is_none_or(|o| o.iter().any(|n| n == k.name()))
    });
    out
}

/// A sparse image of `size` with a few MiB of data: raw for dir-reflink (reflinks need raw),
/// qcow2 elsewhere (made by qemu-img: set-up tooling, not the thing measured).
fn make_image(dir: &Path, kind: Kind, size: u64) -> PathBuf {
    use std::os::unix::fs::FileExt;
    let raw = dir.join(format!("img-{}.raw", size / GIB));
    let f = std::fs::File::create(&raw).unwrap();
    f.set_len(size).unwrap();
    for off in [0, size / 2, size - (1 << 20)] {
        f.write_all_at(&vec![0xA5; 1 << 20], off).unwrap();
    }
    drop(f);
    if kind == Kind::DirReflink {
        return raw;
    }
    let q = dir.join(format!("img-{}.qcow2", size / GIB));
    run(Command::new("qemu-img")
        .args(["convert", "-O", "qcow2"])
        .arg(&raw)
        .arg(&q));
    std::fs::remove_file(raw).unwrap();
    q
}

/// What each driver's "command-line way" and "floor" are.
struct Ways {
    kind: Kind,
    uri: String,
    store: Store,
    root: PathBuf,
    dataset: String,
}

impl Ways {
    fn image_path(&self, m: &Image) -> PathBuf {
        PathBuf::from(&m.disk)
    }

    /// One clone the way vmadm, Proxmox or Incus do it: a process per clone.
    fn cli_clone(&self, m: &Image, n: usize) -> (Duration, Box<dyn FnOnce()>) {
        let name = format!("cli-{n}-{}", Uuid::new_v4().simple());
        match self.kind {
            Kind::DirQcow2 => {
                let dst = self.root.join("vms").join(format!("{name}.qcow2"));
                let (t, _) = time(|| {
                    run(Command::new("qemu-img")
                        .args([
                            "create",
                            "-q",
                            "-f",
                            "qcow2",
                            "-F",
                            m.disk_format.as_str(),
                            "-b",
                        ])
                        .arg(self.image_path(m))
                        .arg(&dst)
                        .arg(m.size_bytes.to_string()))
                });
                (t, Box::new(move || std::fs::remove_file(dst).unwrap()))
            }
            Kind::DirReflink => {
                let dst = self.root.join("vms").join(format!("{name}.raw"));
                let (t, _) = time(|| {
                    run(Command::new("cp")
                        .arg("--reflink=always")
                        .arg(self.image_path(m))
                        .arg(&dst))
                });
                (t, Box::new(move || std::fs::remove_file(dst).unwrap()))
            }
            Kind::Btrfs => {
                let src = self.root.join("images").join(m.uuid.to_string());
                let vms = self.root.join("vms");
                let (t, _) = time(|| {
                    run(Command::new("btrfs")
                        .args(["subvolume", "snapshot"])
                        .arg(&src)
                        .arg(vms.join(&name)))
                });
                (
                    t,
                    Box::new(move || {
                        vmpool::driver::btrfs::subvol_destroy(&vms, &name).unwrap();
                    }),
                )
            }
            Kind::Zfs => {
                let dst = format!("{}/vms/{name}", self.dataset);
                let (t, _) = time(|| run(Command::new("zfs").args(["clone", &m.disk, &dst])));
                (t, Box::new(move || zfs_destroy(&dst)))
            }
        }
    }

    /// The bare operation with nothing around it: returns its time and an undo.
    fn floor(&self, m: &Image, n: usize) -> (Duration, Box<dyn FnOnce()>) {
        let name = format!("floor-{n}-{}", Uuid::new_v4().simple());
        match self.kind {
            Kind::DirQcow2 => {
                let dst = self.root.join("vms").join(format!("{name}.qcow2"));
                let backing = format!("../images/{}.{}", m.uuid, m.disk_format.as_str());
                let (t, f) = time(|| {
                    vmpool::image::qcow2::create_overlay(
                        &dst,
                        &backing,
                        m.disk_format,
                        m.size_bytes,
                    )
                    .unwrap()
                });
                drop(f);
                (t, Box::new(move || std::fs::remove_file(dst).unwrap()))
            }
            Kind::DirReflink => {
                let dst = self.root.join("vms").join(format!("{name}.raw"));
                let src = std::fs::File::open(self.image_path(m)).unwrap();
                let out = std::fs::File::create(&dst).unwrap();
                let (t, r) = time(|| vmpool::driver::reflink::clone_file(&src, &out));
                r.unwrap();
                (t, Box::new(move || std::fs::remove_file(dst).unwrap()))
            }
            Kind::Btrfs => btrfs_floor(&self.root, m, name),
            Kind::Zfs => zfs_floor(&self.dataset, m, &name),
        }
    }
}

fn btrfs_floor(root: &Path, m: &Image, name: String) -> (Duration, Box<dyn FnOnce()>) {
    use std::os::unix::io::AsRawFd;
    use vmpool::driver::btrfs::sys;
    let src = std::fs::File::open(root.join("images").join(m.uuid.to_string())).unwrap();
    let vms = root.join("vms");
    let dir = std::fs::File::open(&vms).unwrap();
    let mut args = sys::btrfs_ioctl_vol_args_v2 {
        fd: src.as_raw_fd() as i64,
        transid: 0,
        flags: 0,
        unused: [0; 4],
        name: [0; sys::BTRFS_SUBVOL_NAME_MAX + 1],
    };
    args.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: dir is open; args is a fully initialised vol_args_v2.
    let (t, r) = time(|| unsafe { sys::btrfs_ioc_snap_create_v2(dir.as_raw_fd(), &args) });
    r.unwrap();
    (
        t,
        Box::new(move || {
            vmpool::driver::btrfs::subvol_destroy(&vms, &name).unwrap();
        }),
    )
}

#[cfg(vmpool_zfs)]
fn zfs_floor(ds: &str, m: &Image, name: &str) -> (Duration, Box<dyn FnOnce()>) {
    use std::ffi::CString;
    let dst = format!("{ds}/vms/{name}");
    let (n, o) = (
        CString::new(dst.clone()).unwrap(),
        CString::new(m.disk.clone()).unwrap(),
    );
    // SAFETY: both names are NUL-terminated CStrings alive across the call.
    let (t, rc) = time(|| unsafe {
        vmpool::driver::zfs::sys::lzc_clone(n.as_ptr(), o.as_ptr(), std::ptr::null_mut())
    });
    assert_eq!(rc, 0, "lzc_clone {dst}");
    (t, Box::new(move || zfs_destroy(&dst)))
}

#[cfg(not(vmpool_zfs))]
fn zfs_floor(_: &str, _: &Image, _: &str) -> (Duration, Box<dyn FnOnce()>) {
    unreachable!("zfs benches need a build with ZFS")
}

#[cfg(vmpool_zfs)]
fn zfs_destroy(name: &str) {
    vmpool::driver::zfs::libzfs::destroy(name).unwrap();
}

#[cfg(not(vmpool_zfs))]
fn zfs_destroy(_: &str) {}

fn bench_driver(c: &mut Criterion, kind: Kind, uri: &str) {
    let driver = kind.name();
    let store = Store::open(Some(uri)).unwrap();
    let root = store.catalog_dir().to_owned();
    let dataset = uri.strip_prefix("zfs:").unwrap_or("").to_owned();
    let tmp = tempfile::tempdir_in(
        std::env::var("VMPOOL_BENCH_TMP")
            .unwrap_or_else(|_| std::env::temp_dir().display().to_string()),
    )
    .unwrap();
    let big = if smoke() { 4 } else { 64 };
    eprintln!("[{driver}] importing 1 GiB and {big} GiB images into {uri}");
    let img1 = store
        .import_image(
            &make_image(tmp.path(), kind, GIB),
            &ImportRequest::default().name("bench1g"),
            None,
        )
        .unwrap();
    let img64 = store
        .import_image(
            &make_image(tmp.path(), kind, big * GIB),
            &ImportRequest::default().name("bench-big"),
            None,
        )
        .unwrap();
    let ways = Ways {
        kind,
        uri: uri.to_owned(),
        store,
        root,
        dataset,
    };
    println!(
        "VMPOOL-BENCH-INFO {}",
        serde_json::json!({"driver": driver, "uri": ways.uri, "big_gib": big, "image_format": img1.disk_format.as_str(), "smoke": smoke()})
    );

    let mut group = c.benchmark_group(driver);
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    if smoke() {
        group
            .warm_up_time(Duration::from_millis(50))
            .measurement_time(Duration::from_millis(200));
    } else {
        group
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(4));
    }
    let d = ways.store.driver();
    let mut n = 0usize;
    let destroys = Mutex::new(Vec::new());

    // 1. Library clone (driver level: image to writable VM disk), and its destroy.
    let mut lib_clone = |m: &Image| {
        n += 1;
        let vm = Uuid::new_v4();
        let (t, disk) = time(|| d.vm_clone(m, &vm, m.size_bytes).unwrap());
        assert!(disk.size_bytes >= m.size_bytes);
        let (td, _) = time(|| d.vm_destroy(&vm, &m.uuid).unwrap());
        destroys.lock().unwrap().push(td);
        t
    };
    measure(&mut group, driver, "lib_clone_1g", || lib_clone(&img1));
    emit(
        driver,
        "lib_destroy",
        &destroys.lock().unwrap(),
        serde_json::json!({}),
    );
    measure(&mut group, driver, "lib_clone_big", || lib_clone(&img64));

    // 2. The command-line way and the floor.
    let mut k = 0usize;
    measure(&mut group, driver, "cli_clone_1g", || {
        k += 1;
        let (t, undo) = ways.cli_clone(&img1, k);
        undo();
        t
    });
    for (id, img) in [("floor_clone_1g", &img1), ("floor_clone_big", &img64)] {
        measure(&mut group, driver, id, || {
            k += 1;
            let (t, undo) = ways.floor(img, k);
            undo();
            t
        });
    }

    // 3. Scale: the next clone when 10, then 1000, clones of the image exist.
    let (few, many) = if smoke() { (10, 30) } else { (10, 1000) };
    let mut kept = Vec::new();
    // Set-up, untimed: made from 8 threads so that ZFS can batch them into shared syncs.
    let fill = |to: usize, kept: &mut Vec<Uuid>| {
        let need = to.saturating_sub(kept.len());
        let made: Vec<Uuid> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..8)
                .map(|t| {
                    let img1 = &img1;
                    sc.spawn(move || {
                        (0..need)
                            .filter(|i| i % 8 == t)
                            .map(|_| {
                                let vm = Uuid::new_v4();
                                d.vm_clone(img1, &vm, img1.size_bytes).unwrap();
                                vm
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        kept.extend(made);
    };
    for (count, label) in [(few, "10"), (many, "many")] {
        if label == "many" {
            eprintln!("[{driver}] making {many} clones");
        }
        fill(count, &mut kept);
        measure(&mut group, driver, &format!("lib_clone_at_{count}"), || {
            lib_clone(&img1)
        });
        measure(
            &mut group,
            driver,
            &format!("floor_clone_at_{count}"),
            || {
                k += 1;
                let (t, undo) = ways.floor(&img1, k);
                undo();
                t
            },
        );
    }
    std::thread::scope(|sc| {
        for chunk in kept.chunks(kept.len().div_ceil(8).max(1)) {
            let img1 = &img1;
            sc.spawn(move || {
                for vm in chunk {
                    d.vm_destroy(vm, &img1.uuid).unwrap();
                }
            });
        }
    });

    // 4. VM create end to end (validate, journal, clone, grow, record) from threads; once
    //    through the C ABI (JSON parse and serialise included) to show what the boundary costs.
    let spec = |i: usize| {
        VmSpec::new(img1.uuid)
            .alias(format!("b{i}"))
            .owner("bench")
            .vcpus(2)
            .ram_mib(2048)
            .disk_gib(2)
    };
    let payload = |i: usize| {
        format!(
            r#"{{"alias":"b{i}","owner":"bench","image_uuid":"{}","vcpus":2,"ram_mib":2048,"disk_gib":2}}"#,
            img1.uuid
        )
    };
    let deletes = Mutex::new(Vec::new());
    let store = &ways.store;
    measure(&mut group, driver, "create_vm_rust", || {
        let (t, r) = time(|| store.create_vm(&spec(0)).unwrap());
        deletes
            .lock()
            .unwrap()
            .push(time(|| store.delete_vm(r.uuid).unwrap()).0);
        t
    });
    let mut handle: *mut vmpool::ffi::vmpool_store = std::ptr::null_mut();
    let c_uri = std::ffi::CString::new(uri).unwrap();
    assert_eq!(
        vmpool::ffi::vmpool_store_open(c_uri.as_ptr(), &mut handle),
        vmpool::ResultCode::VMPOOL_RESULT_OK
    );
    measure(&mut group, driver, "create_vm_c_abi", || {
        let p = std::ffi::CString::new(payload(0)).unwrap();
        let mut out: *mut std::ffi::c_char = std::ptr::null_mut();
        let (t, rc) = time(|| vmpool::ffi::vmpool_vm_create(handle, p.as_ptr(), &mut out));
        assert_eq!(rc, vmpool::ResultCode::VMPOOL_RESULT_OK);
        // SAFETY: on success `out` is a NUL-terminated string the library allocated.
        let r: serde_json::Value =
            serde_json::from_slice(unsafe { std::ffi::CStr::from_ptr(out) }.to_bytes()).unwrap();
        vmpool::ffi::vmpool_string_free(out);
        store
            .delete_vm(Uuid::try_parse(r["uuid"].as_str().unwrap()).unwrap())
            .unwrap();
        t
    });
    vmpool::ffi::vmpool_store_free(handle);
    emit(
        driver,
        "delete_vm",
        &deletes.lock().unwrap(),
        serde_json::json!({}),
    );
    group.finish();

    // Concurrent creators. Plain timed rounds rather than criterion: a round of 16 creates on
    // emulated ZFS takes seconds, so the count of rounds is bounded by time.
    let budget = if smoke() {
        Duration::from_millis(300)
    } else {
        Duration::from_secs(4)
    };
    for threads in [1usize, 4, 16] {
        let (mut ops, mut wall, mut rounds) = (Vec::new(), Duration::ZERO, 0usize);
        while rounds < 2 || wall < budget {
            let barrier = Arc::new(Barrier::new(threads));
            let started = Instant::now();
            let made: Vec<(Duration, Uuid)> = std::thread::scope(|sc| {
                let hs: Vec<_> = (0..threads)
                    .map(|i| {
                        let barrier = barrier.clone();
                        let p = spec(i);
                        sc.spawn(move || {
                            barrier.wait();
                            let (t, r) = time(|| store.create_vm(&p).unwrap());
                            (t, r.uuid)
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            });
            wall += started.elapsed();
            rounds += 1;
            for (t, u) in made {
                ops.push(t);
                store.delete_vm(u).unwrap();
            }
        }
        let per_s = (rounds * threads) as f64 / wall.as_secs_f64();
        emit(
            driver,
            &format!("create_vm_threads_{threads}"),
            &ops,
            serde_json::json!({"concurrency": threads, "creates_per_s": per_s}),
        );
    }

    // Separate processes, each creating VMs in a loop on the same store for the same time.
    for procs in [1usize, 4, 16] {
        let wall = Instant::now();
        let children: Vec<_> = (0..procs)
            .map(|_| {
                Command::new(std::env::current_exe().unwrap())
                    .env(
                        "VMPOOL_BENCH_WORKER",
                        format!("{uri}|{}|{}", img1.uuid, budget.as_millis()),
                    )
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut ops = Vec::new();
        for ch in children {
            let out = ch.wait_with_output().unwrap();
            assert!(out.status.success());
            for l in String::from_utf8(out.stdout).unwrap().lines() {
                if let Some(ns) = l.strip_prefix("op_ns ") {
                    ops.push(Duration::from_nanos(ns.parse().unwrap()));
                }
            }
        }
        let per_s = ops.len() as f64 / wall.elapsed().as_secs_f64();
        emit(
            driver,
            &format!("create_vm_procs_{procs}"),
            &ops,
            serde_json::json!({"concurrency": procs, "creates_per_s": per_s}),
        );
        for r in store.vms(Some("bench")).unwrap() {
            store.delete_vm(r.uuid).unwrap();
        }
    }
    if kind != Kind::Zfs {
        refill_vs_creates(store, driver, &img1);
    }
}

/// Pool refill on this driver: `Store::refill` of 50 disk spares (8 at a time) against 50
/// creates one after another and against one create (median of 10), as benches/zfs_refill.rs
/// measures it for ZFS (where it runs instead, with the reasons a clone waits).
fn refill_vs_creates(store: &Store, driver: &str, image: &Image) {
    let spares: u32 = if smoke() { 6 } else { 50 };
    let spec = VmSpec::new(image.uuid)
        .alias("r")
        .owner("bench-refill")
        .vcpus(1)
        .ram_mib(256)
        .disk_gib(2);
    let clear = || {
        for v in store.vms(Some("bench-refill")).unwrap() {
            store.delete_vm(v.uuid).unwrap();
        }
    };
    let mut ones: Vec<Duration> = (0..10)
        .map(|_| time(|| store.create_vm(&spec).unwrap()).0)
        .collect();
    clear();
    ones.sort();
    let one = ones[ones.len() / 2];
    let (serial, _) = time(|| {
        for _ in 0..spares {
            store.create_vm(&spec).unwrap();
        }
    });
    clear();
    let ratio = |t: Duration| t.as_secs_f64() / one.as_secs_f64();
    emit(
        driver,
        "refill_serial_creates",
        &[serial],
        serde_json::json!({"spares": spares, "one_create_us": one.as_secs_f64() * 1e6, "ratio_to_one_create": ratio(serial)}),
    );
    let mut pool = vmpool::pool::PoolSpec::new("bench-refill", image.uuid);
    pool.disk_gib = Some(2);
    pool.spares = spares;
    pool.max_vms = spares;
    store.create_pool(&pool).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (t, rep) = time(|| {
        store
            .refill(
                "bench-refill",
                &vmpool::pool::RefillOptions { parallel: 8 },
                &|_| {},
                &stop,
            )
            .unwrap()
    });
    assert_eq!(rep.spares, spares, "{rep:?}");
    assert!(rep.errors.is_empty(), "{rep:?}");
    emit(
        driver,
        "refill_8",
        &[t],
        serde_json::json!({"spares": spares, "parallel": 8, "one_create_us": one.as_secs_f64() * 1e6, "ratio_to_one_create": ratio(t)}),
    );
    // Its spares go with it.
    store.delete_pool("bench-refill").unwrap();
}

/// A worker process: create VMs one after another for the given milliseconds (at least two),
/// print each create's latency.
fn worker(spec: &str) {
    let mut parts = spec.split('|');
    let (uri, image) = (parts.next().unwrap(), parts.next().unwrap());
    let budget = Duration::from_millis(parts.next().unwrap().parse().unwrap());
    let store = Store::open(Some(uri)).unwrap();
    let spec = VmSpec::new(Uuid::try_parse(image).unwrap())
        .alias("w")
        .owner("bench")
        .vcpus(2)
        .ram_mib(2048)
        .disk_gib(2);
    let started = Instant::now();
    let mut n = 0;
    while n < 2 || started.elapsed() < budget {
        let (t, _) = time(|| store.create_vm(&spec).unwrap());
        println!("op_ns {}", t.as_nanos());
        n += 1;
    }
}

fn main() {
    if let Ok(spec) = std::env::var("VMPOOL_BENCH_WORKER") {
        worker(&spec);
        return;
    }
    let mut c = Criterion::default().configure_from_args().without_plots();
    for (kind, uri) in selected() {
        bench_driver(&mut c, kind, &uri);
    }
    c.final_summary();
}
