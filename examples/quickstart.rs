//! The README's quick start: import the bootable test guest (`scripts/make-test-image`) into
//! the default store, clone a few VMs from it (timing each clone), boot one under QEMU, wait
//! for its console to say it is ready, and hand out a SPICE console ticket and a
//! remote-viewer file for it.
//!
//! `cargo run --example quickstart [-- --store URI] [-- --vms N] [-- --accel kvm|tcg|auto]`
//! (TCG by default: KVM on nested virtual machines can be far slower than emulation.)

use std::path::PathBuf;
use std::time::{Duration, Instant};
use vmpool::store::StartOptions;
use vmpool::vm::Accel;
use vmpool::{Error, ImportRequest, Store, VmSpec};

fn main() {
    if let Err(e) = run() {
        eprintln!("quickstart: {}: {e}", e.code().name());
        std::process::exit(e.code() as i32);
    }
}

fn run() -> vmpool::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let uri = opt("--store");
    let vms: usize = opt("--vms").and_then(|n| n.parse().ok()).unwrap_or(5);
    let accel = Accel::parse(opt("--accel").as_deref().unwrap_or("tcg"))?;

    let store = Store::open(uri.as_deref())?;
    println!(
        "store   {} ({} driver, catalog in {})",
        store.uri(),
        store.driver().info().scheme,
        store.catalog_dir().display()
    );

    // The template: a tiny disk that boots by itself (MBR, extlinux, Debian's kernel, busybox).
    let image = match store
        .images()?
        .into_iter()
        .find(|m| m.name == "test-guest" && m.version == "1")
    {
        Some(m) => {
            println!("image   {} already imported, reusing it", m.uuid);
            m
        }
        None => {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/make-test-image");
            let out = std::process::Command::new(script)
                .output()
                .map_err(|e| Error::Io {
                    context: format!("running {script}"),
                    source: e,
                })?;
            if !out.status.success() {
                return Err(Error::Internal(format!(
                    "{script} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                )));
            }
            let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            let started = Instant::now();
            let req = ImportRequest::default()
                .name("test-guest")
                .version("1")
                .os("linux")
                .tag("made_by", "quickstart");
            let m = store.import_image(&path, &req, None)?;
            println!(
                "image   imported {} ({} MiB virtual, sha256 {}…) in {:.2} s",
                m.uuid,
                m.size_bytes >> 20,
                &m.sha256[..12],
                started.elapsed().as_secs_f64()
            );
            m
        }
    };

    let batch = uuid::Uuid::new_v4().simple().to_string();
    let mut made = Vec::new();
    for i in 0..vms {
        let spec = VmSpec::new(image.uuid)
            .alias(format!("quickstart-{}-{i}", &batch[..6]))
            .owner("demo")
            .vcpus(1)
            .ram_mib(256)
            .disk_gib(20);
        let started = Instant::now();
        let vm = store.create_vm(&spec)?;
        let took = started.elapsed();
        println!(
            "vm      {} {:<22} cloned in {:>7.2} ms ({}, {} GiB, {})",
            vm.uuid,
            vm.alias,
            took.as_secs_f64() * 1e3,
            vm.clone_method,
            vm.disk_gib,
            vm.disk_path
        );
        made.push(vm);
    }
    let Some(first) = made.first() else {
        return Ok(());
    };

    let started = Instant::now();
    store.start_vm(first.uuid, &StartOptions { accel: Some(accel) })?;
    println!(
        "start   {} started in {:.0} ms ({}); waiting for its console to say it is ready…",
        first.alias,
        started.elapsed().as_secs_f64() * 1e3,
        accel.as_str()
    );
    loop {
        let log = String::from_utf8_lossy(&store.vm_log(first.uuid, 1 << 20)?).into_owned();
        if let Some(line) = log
            .lines()
            .find(|l| l.contains("VMPOOL-TEST-GUEST: disk_bytes="))
        {
            if log.contains("VMPOOL-TEST-GUEST: ready") {
                println!(
                    "boot    the guest booted from its clone in {:.1} s and says: {}",
                    started.elapsed().as_secs_f64(),
                    line.trim()
                );
                break;
            }
        }
        if started.elapsed() > Duration::from_secs(300) {
            return Err(Error::Timeout("the guest did not boot within 300 s".into()));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let c = store.console(first.uuid, Duration::from_secs(3600))?;
    let vv = std::env::temp_dir().join(format!("{}.vv", first.alias));
    std::fs::write(&vv, &c.vv).map_err(|e| Error::Io {
        context: format!("writing {}", vv.display()),
        source: e,
    })?;
    println!("console {} (password valid until {})", c.uri, c.expires_at);
    println!("        open it with: remote-viewer {}", vv.display());
    println!(
        "done    owner \"demo\" has {} VM(s) (vmpoolctl vm list --owner demo); stop the running one with: vmpoolctl vm stop {}",
        store.vms(Some("demo"))?.len(),
        first.uuid
    );
    Ok(())
}
