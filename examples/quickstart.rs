//! The README's quick start: import a generated image into the default store, clone a few VMs
//! from it, and say what happened and how long each clone took.
//!
//! `cargo run --example quickstart [-- --store URI] [-- --vms N]`

use std::time::Instant;
use vmpool::{ImportRequest, Store, VmSpec};

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

    let store = Store::open(uri.as_deref())?;
    println!(
        "store   {} ({} driver, catalog in {})",
        store.uri(),
        store.driver().info().scheme,
        store.catalog_dir().display()
    );

    // A 4 GiB template with a few MiB of data, like a freshly installed OS image: sparse, so it
    // costs almost no disk.
    let image = match store
        .images()?
        .into_iter()
        .find(|m| m.name == "quickstart" && m.version == "1")
    {
        Some(m) => {
            println!("image   {} already imported, reusing it", m.uuid);
            m
        }
        None => {
            let dir =
                std::env::temp_dir().join(format!("vmpool-quickstart-{}", std::process::id()));
            std::fs::create_dir_all(&dir).map_err(|e| vmpool::Error::Io {
                context: format!("creating {}", dir.display()),
                source: e,
            })?;
            let path = dir.join("quickstart.raw");
            let file = std::fs::File::create(&path).map_err(|e| vmpool::Error::Io {
                context: "creating image".into(),
                source: e,
            })?;
            file.set_len(4 << 30).map_err(|e| vmpool::Error::Io {
                context: "sizing image".into(),
                source: e,
            })?;
            use std::os::unix::fs::FileExt;
            for (i, off) in [0u64, 1 << 30, 3 << 30].iter().enumerate() {
                let block = vec![i as u8 + 1; 1 << 20];
                file.write_all_at(&block, *off)
                    .map_err(|e| vmpool::Error::Io {
                        context: "writing image".into(),
                        source: e,
                    })?;
            }
            drop(file);
            let started = Instant::now();
            let req = ImportRequest::default()
                .name("quickstart")
                .version("1")
                .os("linux")
                .tag("made_by", "quickstart");
            let m = store.import_image(&path, &req, None)?;
            let _ = std::fs::remove_dir_all(&dir);
            println!(
                "image   imported {} ({} GiB virtual, sha256 {}…) in {:.2} s",
                m.uuid,
                m.size_bytes >> 30,
                &m.sha256[..12],
                started.elapsed().as_secs_f64()
            );
            m
        }
    };

    let batch = uuid::Uuid::new_v4().simple().to_string();
    for i in 0..vms {
        let spec = VmSpec::new(image.uuid)
            .alias(format!("quickstart-{}-{i}", &batch[..6]))
            .owner("demo")
            .vcpus(2)
            .ram_mib(2048)
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
    }
    let all = store.vms(Some("demo"))?;
    println!(
        "done    owner \"demo\" now has {} VM(s); see them with: vmpoolctl vm list --owner demo",
        all.len()
    );
    Ok(())
}
