//! Pools under TCG (issue 12): how long `acquire` takes, to "running, with a console
//! ticket", by the way it gets the VM - the owner's own (redirect), a paused spare, a memory
//! template clone whose QEMU waited, one with a fresh QEMU, a disk spare (QEMU started, guest
//! booting), none left (create, then start) - with 1 and with 8 acquirers at once (4 in the
//! smoke run), as threads sharing one `Store` and as processes each opening their own. Then
//! memory: what an idle template clone costs against a cold-booted VM of the same size, and
//! how many of each fit on this machine before 2 GiB are left.
//!
//! Prints `VMPOOL-BENCH` lines (driver `pool`) that scripts/bench-report turns into
//! BENCHMARKS.md. `VMPOOL_BENCH_SMOKE=1`: a few runs only.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Barrier;
use std::time::{Duration, Instant};
use support::{emit, emit_value, mem_available_kib, smaps_kib, smoke, time};
use vmpool::pool::{AcquireOptions, PoolSpec, PoolUpdate, RefillOptions, Warmth};
use vmpool::Store;

const READY: &str = "VMPOOL-TEST-GUEST: ready";

fn opts() -> AcquireOptions {
    AcquireOptions {
        console_ttl: Some(Duration::from_secs(600)),
        another: false,
        ..Default::default()
    }
}

/// This binary run again as one acquiring process: opens the store, says READY, waits for
/// the go file, acquires, prints how long it took.
fn worker() -> bool {
    let Ok(owner) = std::env::var("VMPOOL_BENCH_OWNER") else {
        return false;
    };
    let uri = std::env::var("VMPOOL_BENCH_URI").unwrap();
    let pool = std::env::var("VMPOOL_BENCH_POOL").unwrap();
    let go = std::path::PathBuf::from(std::env::var("VMPOOL_BENCH_GO").unwrap());
    let s = Store::open(Some(&uri)).unwrap();
    println!("READY");
    while !go.exists() {
        std::thread::sleep(Duration::from_micros(200));
    }
    let (t, a) = time(|| s.acquire(&pool, &owner, &opts()).unwrap());
    println!("ACQ {} {} {}", t.as_micros(), a.path.as_str(), a.was);
    true
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Threads,
    Processes,
}

struct Bench {
    s: Store,
    uri: String,
    tmp: std::path::PathBuf,
    next_owner: std::sync::atomic::AtomicUsize,
}

impl Bench {
    fn owners(&self, n: usize) -> Vec<String> {
        (0..n)
            .map(|_| {
                let i = self
                    .next_owner
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                format!("o{i}")
            })
            .collect()
    }

    fn refill(&self, pool: &str, spares: u32) {
        self.s
            .update_pool(
                pool,
                &PoolUpdate {
                    spares: Some(spares),
                    ..Default::default()
                },
            )
            .unwrap();
        let r = self
            .s
            .refill(
                pool,
                &RefillOptions { parallel: 8 },
                &|_| {},
                &AtomicBool::new(false),
            )
            .unwrap();
        assert!(r.errors.is_empty(), "{r:?}");
    }

    /// Acquire for every owner at once; each acquire's latency, checked to have gone the
    /// expected way (`path`, `was`).
    fn acquire_all(
        &self,
        pool: &str,
        owners: &[String],
        mode: Mode,
        path: &str,
        was: &str,
    ) -> Vec<Duration> {
        let got: Vec<(Duration, String, String)> = match mode {
            Mode::Threads => {
                let barrier = Barrier::new(owners.len());
                std::thread::scope(|sc| {
                    let hs: Vec<_> = owners
                        .iter()
                        .map(|o| {
                            let barrier = &barrier;
                            sc.spawn(move || {
                                barrier.wait();
                                let (t, a) = time(|| self.s.acquire(pool, o, &opts()).unwrap());
                                (t, a.path.as_str().to_owned(), a.was.to_owned())
                            })
                        })
                        .collect();
                    hs.into_iter().map(|h| h.join().unwrap()).collect()
                })
            }
            Mode::Processes => {
                let go = self.tmp.join(format!("go-{}", owners[0]));
                let kids: Vec<_> = owners
                    .iter()
                    .map(|o| {
                        let mut c = Command::new(std::env::current_exe().unwrap())
                            .env("VMPOOL_BENCH_OWNER", o)
                            .env("VMPOOL_BENCH_URI", &self.uri)
                            .env("VMPOOL_BENCH_POOL", pool)
                            .env("VMPOOL_BENCH_GO", &go)
                            .stdout(Stdio::piped())
                            .spawn()
                            .unwrap();
                        let mut out = BufReader::new(c.stdout.take().unwrap());
                        let mut line = String::new();
                        out.read_line(&mut line).unwrap();
                        assert_eq!(line.trim(), "READY");
                        (c, out)
                    })
                    .collect();
                std::fs::write(&go, b"").unwrap();
                let r = kids
                    .into_iter()
                    .map(|(mut c, mut out)| {
                        let mut line = String::new();
                        out.read_line(&mut line).unwrap();
                        assert!(c.wait().unwrap().success());
                        let f: Vec<&str> = line.split_whitespace().collect();
                        assert_eq!(f[0], "ACQ", "{line}");
                        (
                            Duration::from_micros(f[1].parse().unwrap()),
                            f[2].to_owned(),
                            f[3].to_owned(),
                        )
                    })
                    .collect();
                let _ = std::fs::remove_file(&go);
                r
            }
        };
        for (_, p, w) in &got {
            assert_eq!(
                (p.as_str(), w.as_str()),
                (path, was),
                "acquire went another way"
            );
        }
        got.into_iter().map(|g| g.0).collect()
    }

    /// Release every VM of the pool that an owner holds.
    fn release_all(&self, pool: &str) {
        for v in self.s.vms(None).unwrap() {
            if v.pool.as_deref() == Some(pool) && !v.owner.is_empty() {
                self.s.release(v.uuid).unwrap();
            }
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") || worker() {
        return;
    }
    let tmp = support::scratch();
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    let uri = format!(
        "dir:{}/s?accel=tcg&clone=qcow2&template_dir={}",
        tmp.path().display(),
        shm.path().display()
    );
    let (s, image) = support::guest_store(&uri);
    for (name, warmth) in [
        ("paused", Warmth::Paused),
        ("tpl", Warmth::Template),
        ("disk", Warmth::Disk),
    ] {
        let mut p = PoolSpec::new(name, image.uuid);
        p.vcpus = 1;
        p.ram_mib = 256;
        p.max_vms = 200;
        p.warmth = warmth;
        p.ready_marker = Some(READY.into());
        p.ready_delay_s = 1;
        s.create_pool(&p).unwrap();
    }
    let b = Bench {
        s,
        uri,
        tmp: tmp.path().to_owned(),
        next_owner: std::sync::atomic::AtomicUsize::new(0),
    };
    // The smoke run (CI) checks that every path works, not its numbers: four acquirers at
    // once instead of eight and one round of single acquires halve the guests it boots
    // (booting paused spares was two thirds of its time).
    let (seq, rounds1, many, rounds8) = if smoke() { (3, 1, 4, 1) } else { (10, 2, 8, 3) };
    let t0 = Instant::now();

    // (scenario id, pool, spares to prepare per acquire, expected path and state before)
    let scenarios: [(&str, &str, bool, &str, &str); 5] = [
        ("paused_spare", "paused", true, "spare", "paused"),
        ("template_waiting", "tpl", true, "spare", "waiting"),
        ("template_fresh_qemu", "tpl", false, "created", "disk"),
        ("disk_spare", "disk", true, "spare", "disk"),
        ("no_spare_create", "disk", false, "created", "disk"),
    ];
    for c in [1usize, many] {
        for mode in [Mode::Threads, Mode::Processes] {
            if c == 1 && mode == Mode::Processes {
                continue; // one acquirer: threads or processes are the same thing
            }
            let suffix = match (c, mode) {
                (1, _) => "c1".to_owned(),
                (_, Mode::Threads) => format!("c{c}_threads"),
                (_, Mode::Processes) => format!("c{c}_processes"),
            };
            // Redirect: owners who hold a running VM come back.
            let owners = b.owners(c);
            b.refill("tpl", 0);
            b.acquire_all("tpl", &owners, Mode::Threads, "created", "disk");
            let mut redirect = Vec::new();
            let reps = if c == 1 { seq * 2 } else { rounds8 };
            for _ in 0..reps {
                redirect.extend(b.acquire_all("tpl", &owners, mode, "redirect", "running"));
            }
            b.release_all("tpl");
            emit(
                "pool",
                &format!("redirect_{suffix}"),
                &redirect,
                serde_json::json!({"concurrency": c}),
            );

            for (id, pool, spares, path, was) in scenarios {
                let mut samples = Vec::new();
                let rounds = if c == 1 { rounds1 } else { rounds8 };
                for _ in 0..rounds {
                    let per_round = if c == 1 { seq } else { c };
                    b.refill(pool, if spares { per_round as u32 } else { 0 });
                    if c == 1 {
                        // Each VM goes as soon as it is measured: guests left running would
                        // load the CPU the next acquire is measured on.
                        for o in b.owners(per_round) {
                            samples.extend(b.acquire_all(pool, &[o], mode, path, was));
                            b.release_all(pool);
                        }
                    } else {
                        samples.extend(b.acquire_all(pool, &b.owners(c), mode, path, was));
                    }
                    b.release_all(pool);
                }
                emit(
                    "pool",
                    &format!("{id}_{suffix}"),
                    &samples,
                    serde_json::json!({"concurrency": c}),
                );
                eprintln!("{id}_{suffix} done at {:?}", t0.elapsed());
            }
        }
    }
    b.refill("paused", 0);
    b.refill("disk", 0);

    // Memory: private memory of idle template clones and of cold-booted VMs, and how many
    // fit before 2 GiB are left (from the drop of MemAvailable over a batch of them).
    let idle = Duration::from_secs(if smoke() { 2 } else { 10 });
    let private = |pid: u32| smaps_kib(pid, "Private_Clean") + smaps_kib(pid, "Private_Dirty");
    for (id, pool, k) in [
        ("template_clone", "tpl", if smoke() { 2 } else { 20 }),
        ("cold_boot", "disk", if smoke() { 1 } else { 4 }),
    ] {
        b.refill("tpl", 0);
        let before = mem_available_kib();
        let mut pids = Vec::new();
        for o in b.owners(k) {
            let a = b.s.acquire(pool, &o, &opts()).unwrap();
            let run = b.s.vm_status(a.vm.uuid).unwrap().run.unwrap();
            pids.push((a.vm.uuid, run.qemu_pid));
        }
        if pool == "disk" {
            for (u, _) in &pids {
                let deadline = Instant::now() + Duration::from_secs(300);
                while !String::from_utf8_lossy(&b.s.vm_log(*u, 1 << 30).unwrap()).contains(READY) {
                    assert!(Instant::now() < deadline, "VM {u} did not get ready");
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
        std::thread::sleep(idle);
        let after = mem_available_kib();
        let mut priv_kib: Vec<u64> = pids.iter().map(|(_, p)| private(*p)).collect();
        let mut pss: Vec<u64> = pids.iter().map(|(_, p)| smaps_kib(*p, "Pss")).collect();
        priv_kib.sort_unstable();
        pss.sort_unstable();
        let per_vm = before.saturating_sub(after) / k as u64;
        let fit = before.saturating_sub(2 << 20) / per_vm.max(1);
        emit_value(
            "pool",
            &format!("memory_{id}"),
            serde_json::json!({
                "n": k, "ram_mib": 256,
                "private_kib": priv_kib[priv_kib.len() / 2],
                "pss_kib": pss[pss.len() / 2],
                "mem_available_drop_per_vm_kib": per_vm,
                "mem_available_kib": before,
                "fit_before_2gib_left": fit,
            }),
        );
        b.release_all(pool);
    }
    for p in ["paused", "tpl", "disk"] {
        b.s.delete_pool(p).unwrap();
    }
    eprintln!("pools bench done in {:?}", t0.elapsed());
}
