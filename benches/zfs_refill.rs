//! ZFS create and refill throughput: where the time of `Store::create_vm` goes, how well
//! concurrent creates share transaction-group syncs, and how long a pool refill of many disk
//! spares takes against one create. Runs inside the guest harness (scripts/bench runs it
//! there):
//!
//! ```text
//! tests/guest/run --zpool testpool:8G -- env VMPOOL_BENCH_ZFS_DATASET=testpool \
//!     VMPOOL_BENCH_TMP=/run/tmp target/release/deps/zfs_refill-* --bench
//! ```
//!
//! Every measurement ends with a line `VMPOOL-BENCH {json}` (median, p90, p99 in
//! microseconds, as benches/clone.rs prints them, with driver `zfs-refill`). Rows:
//! - `floor_clone`, `floor_clone_grow`: bare `lzc_clone`, without and with the `volsize`
//!   property (the disk grown at clone time, as a create of a bigger disk does);
//! - `step_*`: the file operations a create does, alone on the catalog's dataset (a small
//!   file's fsync, a directory fsync, an O_TMPFILE link, a rename, an unlink);
//! - `create_vm_grown`, `create_vm_same`: `Store::create_vm` with a 2 GiB disk from the 1 GiB
//!   image, and with the image's own size; all of the above are taken in interleaved rounds;
//! - `var_{geom,dev}_{grow,pregrown}_N`: N bare clones at once under a parent of `volmode`
//!   geom (a partition scan of each new device) or dev, grown by `volsize` or cloned from an
//!   origin already grown (what the driver does): which of the two serialises clones;
//! - `floor_threads_N`, `floor_same_threads_N`, `floor_nodev_threads_N`: N concurrent bare
//!   clones (grown, not grown, grown with `zvol_inhibit_dev=1`: no device node at all);
//!   `create_threads_N`, `create_procs_N`: N creates at once from threads sharing a `Store`,
//!   and from N processes each opening it;
//! - `refill_P`: `Store::refill` of a pool of `VMPOOL_BENCH_SPARES` (default 50) disk spares
//!   with `parallel` P, against `serial_creates`: the same number of creates one after
//!   another. `ratio_to_one_create` is the refill's time over one create's median.
//!
//! Clones are kept until the end of each part (as spares are), not destroyed between
//! operations. `VMPOOL_BENCH_SMOKE=1` runs few iterations and 6 spares;
//! `VMPOOL_BENCH_PARTS` (default `single,variants,threads,procs,refill`) picks parts,
//! `VMPOOL_BENCH_PARALLEL` (default `8,16,50`) the refills' parallelism.

use std::ffi::{c_char, c_int, CString};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use uuid::Uuid;
use vmpool::pool::{PoolSpec, RefillOptions};
use vmpool::{Image, ImportRequest, Store, VmSpec};

mod support;

use support::{smoke, time};

const GIB: u64 = 1 << 30;

/// A result line under its own driver name: these rows are not benches/clone.rs's zfs rows.
fn emit(id: &str, samples: &[Duration], extra: serde_json::Value) {
    support::emit("zfs-refill", id, samples, extra);
}

fn median(samples: &[Duration]) -> Duration {
    let mut s = samples.to_vec();
    s.sort();
    s[s.len() / 2]
}

#[cfg(vmpool_zfs)]
mod zfs {
    use super::*;
    use vmpool::driver::zfs::{libzfs, sys};

    extern "C" {
        fn lzc_sync(
            pool: *const c_char,
            innvl: *mut sys::nvlist_t,
            out: *mut *mut sys::nvlist_t,
        ) -> c_int;
        fn nvlist_add_boolean_value(
            nvl: *mut sys::nvlist_t,
            name: *const c_char,
            v: c_int,
        ) -> c_int;
    }

    /// A bare `lzc_clone` of `origin` as `name`, with `volsize` when given.
    pub fn clone(name: &str, origin: &str, volsize: Option<u64>) -> Duration {
        let props = volsize.map(|v| libzfs::NvList::new().unwrap().uint64("volsize", v).unwrap());
        let t = Instant::now();
        libzfs::clone(name, origin, props.as_ref()).unwrap();
        t.elapsed()
    }

    pub fn destroy(name: &str) {
        libzfs::destroy(name).unwrap();
    }

    /// `zpool sync` of the pool holding `ds` (one transaction-group sync, nothing in it).
    pub fn sync(ds: &str) -> Duration {
        let pool = CString::new(ds.split('/').next().unwrap()).unwrap();
        let mut innvl: *mut sys::nvlist_t = std::ptr::null_mut();
        // SAFETY: innvl is a valid out pointer.
        let rc = unsafe { sys::nvlist_alloc(&mut innvl, sys::NV_UNIQUE_NAME, 0) };
        assert_eq!(rc, 0);
        // ZFS_IOC_POOL_SYNC requires "force" (false: an ordinary sync of the open txg).
        // SAFETY: innvl is valid; the key is a NUL-terminated literal.
        let rc = unsafe { nvlist_add_boolean_value(innvl, c"force".as_ptr(), 0) };
        assert_eq!(rc, 0);
        let mut out: *mut sys::nvlist_t = std::ptr::null_mut();
        let t = Instant::now();
        // SAFETY: the pool name is NUL-terminated; innvl is an empty list; out receives a
        // list we free.
        let rc = unsafe { lzc_sync(pool.as_ptr(), innvl, &mut out) };
        let d = t.elapsed();
        // SAFETY: both are NULL or lists we own, freed once.
        unsafe {
            sys::nvlist_free(out);
            sys::nvlist_free(innvl);
        }
        assert_eq!(rc, 0, "lzc_sync");
        d
    }
}

#[cfg(not(vmpool_zfs))]
mod zfs {
    use super::*;
    pub fn clone(_: &str, _: &str, _: Option<u64>) -> Duration {
        unreachable!("this bench needs a build with ZFS")
    }
    pub fn destroy(_: &str) {}
    pub fn sync(_: &str) -> Duration {
        unreachable!()
    }
}

/// The file operations of a create, alone, in `dir` (on the catalog's dataset).
fn steps(dir: &Path) -> Vec<(&'static str, Duration)> {
    let body = vec![b'x'; 600];
    let name = dir.join(format!("step-{}", Uuid::new_v4().simple()));
    let mut out = Vec::new();
    // A new small file: create and write, then fsync (one ZIL commit).
    let (t, f) = time(|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&name)
            .unwrap();
        f.write_all(&body).unwrap();
        f
    });
    out.push(("step_create_write", t));
    out.push(("step_fsync_file", time(|| f.sync_all().unwrap()).0));
    let renamed = dir.join(format!("step-{}", Uuid::new_v4().simple()));
    out.push((
        "step_rename",
        time(|| std::fs::rename(&name, &renamed).unwrap()).0,
    ));
    let d = std::fs::File::open(dir).unwrap();
    out.push(("step_fsync_dir", time(|| d.sync_all().unwrap()).0));
    out.push(("step_fsync_clean_dir", time(|| d.sync_all().unwrap()).0));
    out.push((
        "step_unlink",
        time(|| std::fs::remove_file(&renamed).unwrap()).0,
    ));
    // The journal's way: an unnamed file, written, fsynced, linked into place.
    let linked = dir.join(format!("step-{}", Uuid::new_v4().simple()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .read(true)
        .mode(0o644)
        .custom_flags(libc::O_TMPFILE)
        .open(dir)
        .unwrap();
    f.write_all(&body).unwrap();
    out.push(("step_fsync_tmpfile", time(|| f.sync_all().unwrap()).0));
    let proc_path = format!(
        "/proc/self/fd/{}",
        std::os::unix::io::AsRawFd::as_raw_fd(&f)
    );
    let (t, r) = time(|| {
        nix::unistd::linkat(
            None,
            Path::new(&proc_path),
            None,
            linked.as_path(),
            nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
        )
    });
    r.unwrap();
    out.push(("step_link_tmpfile", t));
    // A named temp file linked into place, nothing synced (what a journal entry needs when
    // the clone's own sync makes it durable).
    let tmp = dir.join(format!(".tmp-step-{}", Uuid::new_v4().simple()));
    let named = dir.join(format!("step-{}", Uuid::new_v4().simple()));
    let (t, _) = time(|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .unwrap();
        f.write_all(&body).unwrap();
        std::fs::hard_link(&tmp, &named).unwrap();
        std::fs::remove_file(&tmp).unwrap();
    });
    out.push(("step_named_link_nosync", t));
    std::fs::remove_file(&linked).unwrap();
    std::fs::remove_file(&named).unwrap();
    out
}

struct Bench {
    uri: String,
    ds: String,
    store: Store,
    img: Image,
}

impl Bench {
    fn spec(&self, disk_gib: Option<u64>) -> VmSpec {
        let s = VmSpec::new(self.img.uuid)
            .alias("z")
            .owner("bench")
            .vcpus(1)
            .ram_mib(512);
        match disk_gib {
            Some(g) => s.disk_gib(g),
            None => s,
        }
    }

    fn clear_vms(&self) {
        let vms = self.store.vms(None).unwrap();
        std::thread::scope(|sc| {
            for chunk in vms.chunks(vms.len().div_ceil(4).max(1)) {
                sc.spawn(move || {
                    for v in chunk {
                        self.store.delete_vm(v.uuid).unwrap();
                    }
                });
            }
        });
    }

    /// Interleaved rounds of the single-operation rows.
    fn single(&self) -> Duration {
        let rounds = if smoke() { 3 } else { 12 };
        let origin = self.img.disk.clone();
        let mut rows: std::collections::BTreeMap<&'static str, Vec<Duration>> = Default::default();
        let mut floors = Vec::new();
        let catalog = self.store.catalog_dir().join("vms");
        for i in 0..rounds {
            let name = format!("{}/vms/floor-{i}", self.ds);
            rows.entry("floor_clone")
                .or_default()
                .push(zfs::clone(&name, &origin, None));
            floors.push(name);
            let name = format!("{}/vms/floorg-{i}", self.ds);
            rows.entry("floor_clone_grow").or_default().push(zfs::clone(
                &name,
                &origin,
                Some(2 * GIB),
            ));
            floors.push(name);
            rows.entry("create_vm_grown")
                .or_default()
                .push(time(|| self.store.create_vm(&self.spec(Some(2))).unwrap()).0);
            rows.entry("create_vm_same")
                .or_default()
                .push(time(|| self.store.create_vm(&self.spec(None)).unwrap()).0);
            rows.entry("txg_sync")
                .or_default()
                .push(zfs::sync(&self.ds));
            for (id, t) in steps(&catalog) {
                rows.entry(id).or_default().push(t);
            }
        }
        let floor = median(&rows["floor_clone"]);
        for (id, samples) in &rows {
            let ratio = median(samples).as_secs_f64() / floor.as_secs_f64();
            emit(id, samples, serde_json::json!({"to_floor": ratio}));
        }
        for f in floors {
            zfs::destroy(&f);
        }
        self.clear_vms();
        median(&rows["create_vm_grown"])
    }

    /// N bare clones at once (grown, not grown, grown without device nodes), and N creates
    /// at once from threads.
    fn threads(&self) {
        let rounds = if smoke() { 1 } else { 3 };
        let origin = self.img.disk.clone();
        let inhibit = "/sys/module/zfs/parameters/zvol_inhibit_dev";
        for (id, volsize, nodev) in [
            ("floor_threads", Some(2 * GIB), false),
            ("floor_same_threads", None, false),
            ("floor_nodev_threads", Some(2 * GIB), true),
        ] {
            if nodev && std::fs::write(inhibit, "1").is_err() {
                continue;
            }
            for n in [1usize, 4, 16] {
                let mut lat = Vec::new();
                let mut wall = Duration::ZERO;
                let mut names = Vec::new();
                for r in 0..rounds {
                    let barrier = Arc::new(Barrier::new(n));
                    let t0 = Instant::now();
                    let made: Vec<(Duration, String)> = std::thread::scope(|sc| {
                        let hs: Vec<_> = (0..n)
                            .map(|i| {
                                let (barrier, origin) = (barrier.clone(), &origin);
                                let name = format!("{}/vms/{id}-{n}-{r}-{i}", self.ds);
                                sc.spawn(move || {
                                    barrier.wait();
                                    (zfs::clone(&name, origin, volsize), name)
                                })
                            })
                            .collect();
                        hs.into_iter().map(|h| h.join().unwrap()).collect()
                    });
                    wall += t0.elapsed();
                    for (t, name) in made {
                        lat.push(t);
                        names.push(name);
                    }
                }
                let per_s = lat.len() as f64 / wall.as_secs_f64();
                emit(
                    &format!("{id}_{n}"),
                    &lat,
                    serde_json::json!({"concurrency": n, "ops_per_s": per_s}),
                );
                for name in names {
                    zfs::destroy(&name);
                }
            }
            if nodev {
                std::fs::write(inhibit, "0").unwrap();
            }
        }
        for n in [1usize, 4, 16] {
            let mut lat = Vec::new();
            let mut wall = Duration::ZERO;
            for _ in 0..rounds {
                let barrier = Arc::new(Barrier::new(n));
                let t0 = Instant::now();
                let made: Vec<Duration> = std::thread::scope(|sc| {
                    let hs: Vec<_> = (0..n)
                        .map(|_| {
                            let barrier = barrier.clone();
                            let spec = self.spec(Some(2));
                            sc.spawn(move || {
                                barrier.wait();
                                time(|| self.store.create_vm(&spec).unwrap()).0
                            })
                        })
                        .collect();
                    hs.into_iter().map(|h| h.join().unwrap()).collect()
                });
                wall += t0.elapsed();
                lat.extend(made);
            }
            let per_s = lat.len() as f64 / wall.as_secs_f64();
            emit(
                &format!("create_threads_{n}"),
                &lat,
                serde_json::json!({"concurrency": n, "ops_per_s": per_s}),
            );
            self.clear_vms();
        }
    }

    /// What makes concurrent bare clones slow, in interleaved rounds of `n` at once: the
    /// device node's partition scan (parent `volmode` geom, the default, against dev) and
    /// the growth to 2 GiB (a clone of the image with `volsize`, against a clone of an origin
    /// already grown: a snapshot of a grown clone).
    fn variants(&self) {
        let rounds = if smoke() { 1 } else { 3 };
        let zfs_cmd = |args: &[&str]| {
            let st = Command::new("zfs").args(args).status().unwrap();
            assert!(st.success(), "zfs {args:?}");
        };
        // Parents of each `volmode` (the store's own `<ds>/vms` has dev).
        let dev_parent = format!("{}/vmsdev", self.ds);
        zfs_cmd(&[
            "create",
            "-o",
            "canmount=off",
            "-o",
            "volmode=dev",
            &dev_parent,
        ]);
        let geom = format!("{}/vmsgeom", self.ds);
        zfs_cmd(&["create", "-o", "canmount=off", "-o", "volmode=geom", &geom]);
        let grown = format!("{}/images/grown", self.ds);
        zfs::clone(&grown, &self.img.disk, Some(2 * GIB));
        vmpool::driver::zfs::libzfs::snapshot(&format!("{grown}@final")).unwrap();
        let grown_origin = format!("{grown}@final");
        let cases: [(&str, &str, &str, Option<u64>); 4] = [
            ("var_geom_grow", &geom, &self.img.disk, Some(2 * GIB)),
            ("var_dev_grow", &dev_parent, &self.img.disk, Some(2 * GIB)),
            ("var_geom_pregrown", &geom, &grown_origin, None),
            ("var_dev_pregrown", &dev_parent, &grown_origin, None),
        ];
        for n in [1usize, 16] {
            let mut lat: Vec<Vec<Duration>> = vec![Vec::new(); cases.len()];
            let mut wall = vec![Duration::ZERO; cases.len()];
            let mut names = Vec::new();
            for r in 0..rounds {
                for (c, (id, parent, origin, volsize)) in cases.iter().enumerate() {
                    let barrier = Arc::new(Barrier::new(n));
                    let t0 = Instant::now();
                    let made: Vec<(Duration, String)> = std::thread::scope(|sc| {
                        let hs: Vec<_> = (0..n)
                            .map(|i| {
                                let barrier = barrier.clone();
                                let name = format!("{parent}/{id}-{n}-{r}-{i}");
                                let volsize = *volsize;
                                sc.spawn(move || {
                                    barrier.wait();
                                    (zfs::clone(&name, origin, volsize), name)
                                })
                            })
                            .collect();
                        hs.into_iter().map(|h| h.join().unwrap()).collect()
                    });
                    wall[c] += t0.elapsed();
                    for (t, name) in made {
                        lat[c].push(t);
                        names.push(name);
                    }
                }
            }
            for (c, (id, ..)) in cases.iter().enumerate() {
                let per_s = lat[c].len() as f64 / wall[c].as_secs_f64();
                emit(
                    &format!("{id}_{n}"),
                    &lat[c],
                    serde_json::json!({"concurrency": n, "ops_per_s": per_s}),
                );
            }
            for name in names {
                zfs::destroy(&name);
            }
        }
        zfs::destroy(&dev_parent);
        zfs::destroy(&geom);
        vmpool::driver::zfs::libzfs::destroy_snapshot(&grown_origin).unwrap();
        zfs::destroy(&grown);
    }

    /// N processes, each opening the store and making `per` creates.
    fn procs(&self) {
        let per = if smoke() { 1 } else { 3 };
        for n in [1usize, 4, 16] {
            let t0 = Instant::now();
            let children: Vec<_> = (0..n)
                .map(|_| {
                    Command::new(std::env::current_exe().unwrap())
                        .env(
                            "VMPOOL_BENCH_WORKER",
                            format!("{}|{}|{per}", self.uri, self.img.uuid),
                        )
                        .stdout(Stdio::piped())
                        .spawn()
                        .unwrap()
                })
                .collect();
            let mut lat = Vec::new();
            for ch in children {
                let out = ch.wait_with_output().unwrap();
                assert!(out.status.success());
                for l in String::from_utf8(out.stdout).unwrap().lines() {
                    if let Some(ns) = l.strip_prefix("op_ns ") {
                        lat.push(Duration::from_nanos(ns.parse().unwrap()));
                    }
                }
            }
            // Process start and store open are in the wall time, as they are for real
            // callers that fork workers.
            let per_s = lat.len() as f64 / t0.elapsed().as_secs_f64();
            emit(
                &format!("create_procs_{n}"),
                &lat,
                serde_json::json!({"concurrency": n, "ops_per_s": per_s}),
            );
            self.clear_vms();
        }
    }

    /// Refill of `spares` disk spares, with several `parallel`, against as many creates one
    /// after another.
    fn refill(&self, one_create: Duration) {
        let spares: u32 = std::env::var("VMPOOL_BENCH_SPARES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(if smoke() { 6 } else { 50 });
        let (t, _) = time(|| {
            for _ in 0..spares {
                self.store.create_vm(&self.spec(Some(2))).unwrap();
            }
        });
        emit(
            "serial_creates",
            &[t],
            serde_json::json!({"spares": spares, "ratio_to_one_create": t.as_secs_f64() / one_create.as_secs_f64()}),
        );
        self.clear_vms();
        let parallels: Vec<usize> = std::env::var("VMPOOL_BENCH_PARALLEL")
            .ok()
            .map(|s| s.split(',').map(|p| p.parse().unwrap()).collect())
            .unwrap_or_else(|| vec![8, 16, 50]);
        for p in parallels {
            let name = format!("refill{p}");
            let mut spec = PoolSpec::new(&name, self.img.uuid);
            spec.disk_gib = Some(2);
            spec.spares = spares;
            spec.max_vms = spares;
            self.store.create_pool(&spec).unwrap();
            let stop = std::sync::atomic::AtomicBool::new(false);
            let (t, rep) = time(|| {
                self.store
                    .refill(&name, &RefillOptions { parallel: p }, &|_| {}, &stop)
                    .unwrap()
            });
            assert_eq!(rep.spares, spares, "{rep:?}");
            assert!(rep.errors.is_empty(), "{rep:?}");
            emit(
                &format!("refill_{p}"),
                &[t],
                serde_json::json!({"spares": spares, "parallel": p, "ratio_to_one_create": t.as_secs_f64() / one_create.as_secs_f64()}),
            );
            self.clear_vms();
            self.store.delete_pool(&name).unwrap();
        }
    }
}

fn worker(spec: &str) {
    let mut parts = spec.split('|');
    let (uri, image) = (parts.next().unwrap(), parts.next().unwrap());
    let per: usize = parts.next().unwrap().parse().unwrap();
    let store = Store::open(Some(uri)).unwrap();
    let spec = VmSpec::new(Uuid::try_parse(image).unwrap())
        .alias("w")
        .owner("bench")
        .vcpus(1)
        .ram_mib(512)
        .disk_gib(2);
    for _ in 0..per {
        let (t, _) = time(|| store.create_vm(&spec).unwrap());
        println!("op_ns {}", t.as_nanos());
    }
}

fn main() {
    if let Ok(spec) = std::env::var("VMPOOL_BENCH_WORKER") {
        worker(&spec);
        return;
    }
    // `cargo bench` passes --bench; run only then (not under `cargo test --benches`).
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let Ok(base) = std::env::var("VMPOOL_BENCH_ZFS_DATASET") else {
        eprintln!("zfs_refill: set VMPOOL_BENCH_ZFS_DATASET (run it in the guest harness)");
        return;
    };
    let ds = format!("{base}/bench-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let uri = format!("zfs:{ds}");
    let store = Store::open(Some(&uri)).unwrap();
    let tmp = tempfile::tempdir_in(
        std::env::var("VMPOOL_BENCH_TMP")
            .unwrap_or_else(|_| std::env::temp_dir().display().to_string()),
    )
    .unwrap();
    let raw = tmp.path().join("img.raw");
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::create(&raw).unwrap();
        f.set_len(GIB).unwrap();
        for off in [0, GIB / 2, GIB - (1 << 20)] {
            f.write_all_at(&vec![0xA5; 1 << 20], off).unwrap();
        }
    }
    let img = store
        .import_image(&raw, &ImportRequest::default().name("refill1g"), None)
        .unwrap();
    let b = Bench {
        uri,
        ds,
        store,
        img,
    };
    let only = std::env::var("VMPOOL_BENCH_PARTS")
        .unwrap_or_else(|_| "single,variants,threads,procs,refill".into());
    let mut one_create = None;
    if only.contains("single") {
        one_create = Some(b.single());
    }
    if only.contains("variants") {
        b.variants();
    }
    if only.contains("threads") {
        b.threads();
    }
    if only.contains("procs") {
        b.procs();
    }
    if only.contains("refill") {
        let one = one_create.unwrap_or_else(|| {
            let s: Vec<Duration> = (0..5)
                .map(|_| time(|| b.store.create_vm(&b.spec(Some(2))).unwrap()).0)
                .collect();
            b.clear_vms();
            median(&s)
        });
        b.refill(one);
    }
}
