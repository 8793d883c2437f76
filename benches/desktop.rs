//! A desktop's hand-out under TCG (issue 19): `acquire` of a clone of an Xfce memory template
//! with a waiting QEMU, including its customization (the identity step through the guest
//! agent: hostname, machine id, SSH host key, RNG, the owner's account) and the attach of the
//! owner's home volume (hot-plug, then the guest formats it the first time or mounts it), each
//! step timed, against the same acquire without those two steps (lock, claim, restore,
//! console: what the busybox pools of section 7 measure).
//!
//! Needs the Xfce image: `VMPOOL_DESKTOP_IMAGE` (scripts/bench builds it with
//! scripts/build-image); without it, says so and measures nothing. Prints `VMPOOL-BENCH`
//! lines (driver `desktop`). `VMPOOL_BENCH_SMOKE=1`: two owners only.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};
use support::{emit, emit_value, smoke};
use vmpool::pool::{AcquireOptions, AcquirePath, PoolSpec, Warmth};
use vmpool::vm::user::GuestUser;
use vmpool::{ImportRequest, Store};

/// One way of acquiring: the totals and each step's times, in order of first appearance.
#[derive(Default)]
struct Samples {
    totals: Vec<Duration>,
    steps: BTreeMap<String, Vec<f64>>,
    order: Vec<String>,
}

impl Samples {
    fn add(&mut self, a: &vmpool::pool::Acquired) {
        self.totals
            .push(Duration::from_secs_f64(a.total_ms / 1000.0));
        for (s, ms) in &a.steps {
            if !self.order.iter().any(|o| o == s) {
                self.order.push((*s).to_owned());
            }
            self.steps.entry((*s).to_owned()).or_default().push(*ms);
        }
    }

    fn emit(&self, id: &str) {
        let median = |v: &[f64]| {
            let mut v = v.to_vec();
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            v[v.len() / 2]
        };
        let steps: Vec<serde_json::Value> = self
            .order
            .iter()
            .map(|s| serde_json::json!({"step": s, "median_ms": median(&self.steps[s])}))
            .collect();
        emit(
            "desktop",
            id,
            &self.totals,
            serde_json::json!({ "steps": steps }),
        );
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let Ok(image) = std::env::var("VMPOOL_DESKTOP_IMAGE") else {
        eprintln!("benches/desktop.rs: VMPOOL_DESKTOP_IMAGE is not set (scripts/build-image debian-12-xfce); nothing measured");
        return;
    };
    let tmp = support::scratch();
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    let uri = format!(
        "dir:{}/s?accel=tcg&clone=qcow2&template_dir={}",
        tmp.path().display(),
        shm.path().display()
    );
    let s = Store::open(Some(&uri)).unwrap();
    let req = ImportRequest::default()
        .name("debian-12-xfce")
        .tag("on_clone", "/usr/lib/vmpool/on-clone")
        .tag("on_home", "/usr/lib/vmpool/attach-home")
        .tag("cloud_init", "nocloud");
    let img = s
        .import_image(std::path::Path::new(&image), &req, None)
        .unwrap();
    let mut p = PoolSpec::new("xfce", img.uuid);
    p.vcpus = 2;
    p.ram_mib = 2048;
    p.spares = 1;
    p.max_vms = 3;
    p.warmth = Warmth::Template;
    p.ready_marker = Some("VMPOOL-GUEST: ready".into());
    p.ready_delay_s = 10;
    p.ready_timeout_s = 600;
    p.home_gib = Some(1);
    s.create_pool(&p).unwrap();
    let stop = AtomicBool::new(false);
    let refill = || {
        let r = s
            .refill("xfce", &Default::default(), &|_| {}, &stop)
            .unwrap();
        assert!(r.errors.is_empty(), "{r:?}");
        r
    };
    let t0 = Instant::now();
    assert!(refill().template_built);
    emit_value(
        "desktop",
        "template_build",
        serde_json::json!({"seconds": t0.elapsed().as_secs_f64()}),
    );
    let owners: Vec<String> = (0..if smoke() { 2 } else { 6 })
        .map(|i| format!("u{i}"))
        .collect();
    // First: each owner's first desktop (their home is made and formatted); then each comes
    // back to a new desktop (their home is only mounted).
    for id in ["acquire_new_home", "acquire_kept_home"] {
        let mut samples = Samples::default();
        for o in &owners {
            refill();
            let a = s
                .acquire(
                    "xfce",
                    o,
                    &AcquireOptions {
                        console_ttl: Some(Duration::from_secs(600)),
                        user: Some(GuestUser {
                            login: o.clone(),
                            timezone: Some("Europe/Berlin".into()),
                            keyboard: Some("de".into()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                )
                .unwrap();
            assert_eq!(
                (a.path, a.was),
                (AcquirePath::Spare, "waiting"),
                "{o}: {:?}",
                a.steps
            );
            eprintln!("{id} {o}: {:.0} ms {:?}", a.total_ms, a.steps);
            samples.add(&a);
            s.release(a.vm.uuid).unwrap();
        }
        samples.emit(id);
    }
    for v in s.vms(None).unwrap() {
        let _ = s.kill_vm(v.uuid);
    }
}
