//! `vmpoolctl`: the library from a shell. No logic of its own: it parses arguments, calls
//! `vmpool::Store`, and prints tables (default) or exactly the JSON the C ABI returns
//! (`--json`). The exit status is the `vmpool_result` code (0 on success, 64 for usage errors).

use clap::{Parser, Subcommand};
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::Instant;
use vmpool::{Error, Store};

const EX_USAGE: i32 = 64;

#[derive(Parser)]
#[command(
    name = "vmpoolctl",
    version,
    about = "Images, copy-on-write clones and VMs in a vmpool store"
)]
struct Cli {
    /// Store URI (dir:/path, btrfs:/path, zfs:pool/dataset); default $VMPOOL_STORE, else dir:$VMPOOL_HOME, else dir:/var/lib/vmpool
    #[arg(long, global = true, value_name = "URI")]
    store: Option<String>,
    /// Print the JSON the C ABI returns instead of tables
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Templates: import, list, get, delete
    #[command(subcommand)]
    Image(ImageCmd),
    /// Virtual machines: create, list, get, delete
    #[command(subcommand)]
    Vm(VmCmd),
    /// The store itself
    #[command(subcommand)]
    Store(StoreCmd),
}

#[derive(Subcommand)]
enum ImageCmd {
    /// Import a raw or qcow2 file as a read-only image
    Import {
        file: PathBuf,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        version: Option<String>,
        #[arg(long)]
        os: Option<String>,
        /// Expected sha256 of the file; the import fails if it differs
        #[arg(long)]
        sha256: Option<String>,
        #[arg(long)]
        uuid: Option<String>,
        /// raw or qcow2 (detected when absent; verified when given)
        #[arg(long)]
        format: Option<String>,
        /// Tag as KEY=VALUE; repeatable
        #[arg(long = "tag", value_name = "KEY=VALUE")]
        tags: Vec<String>,
    },
    List,
    Get {
        uuid: String,
    },
    Delete {
        uuid: String,
    },
}

#[derive(Subcommand)]
enum VmCmd {
    /// Create a VM from a JSON payload file, or - for standard input
    Create {
        file: String,
    },
    List {
        #[arg(long)]
        owner: Option<String>,
    },
    Get {
        uuid: String,
    },
    Delete {
        uuid: String,
    },
}

#[derive(Subcommand)]
enum StoreCmd {
    /// Show the store's driver, location and limits
    Info,
    /// Clean up after operations whose process died
    Recover,
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EX_USAGE } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let json = cli.json;
    if let Err(e) = run(cli) {
        let code = e.code();
        if json {
            let err = serde_json::json!({"error": {"code": code as i32, "name": code.name(), "message": e.to_string()}});
            eprintln!("{err}");
        } else {
            eprintln!("vmpoolctl: {}: {e}", code.name());
        }
        std::process::exit(code as i32);
    }
}

fn print_json<T: serde::Serialize>(v: &T) -> vmpool::Result<()> {
    // Same serialisation as the C ABI's *_out strings.
    let s = serde_json::to_string(v).map_err(|e| Error::Internal(e.to_string()))?;
    println!("{s}");
    Ok(())
}

fn run(cli: Cli) -> vmpool::Result<()> {
    let store = Store::open(cli.store.as_deref())?;
    let json = cli.json;
    match cli.cmd {
        Cmd::Store(StoreCmd::Info) => {
            let info = store.info();
            if json {
                print_json(&info)?
            } else {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&info).unwrap_or_default()
                )
            }
        }
        Cmd::Store(StoreCmd::Recover) => {
            let r = store.recover()?;
            if json {
                print_json(&r)?
            } else {
                for c in &r.cleaned {
                    println!("cleaned: {c}");
                }
                for e in &r.errors {
                    println!("left for later: {e}");
                }
                if r.cleaned.is_empty() && r.errors.is_empty() {
                    println!("nothing to clean up");
                }
            }
        }
        Cmd::Image(ImageCmd::Import {
            file,
            name,
            version,
            os,
            sha256,
            uuid,
            format,
            tags,
        }) => {
            let mut manifest = serde_json::Map::new();
            let mut put = |k: &str, v: Option<String>| {
                if let Some(v) = v {
                    manifest.insert(k.into(), v.into());
                }
            };
            put("name", name);
            put("version", version);
            put("os", os);
            put("sha256", sha256);
            put("uuid", uuid);
            put("format", format);
            if !tags.is_empty() {
                let mut t = serde_json::Map::new();
                for kv in tags {
                    let (k, v) = kv
                        .split_once('=')
                        .ok_or_else(|| Error::invalid(format!("--tag {kv:?} is not KEY=VALUE")))?;
                    t.insert(k.into(), v.into());
                }
                manifest.insert("tags".into(), t.into());
            }
            let manifest = serde_json::Value::Object(manifest).to_string();
            let tty = std::io::stderr().is_terminal() && !json;
            let mut last = Instant::now();
            let mut progress = |done: u64, total: u64| {
                if tty && (last.elapsed().as_millis() >= 200 || done == total) {
                    last = Instant::now();
                    let pct = (done * 100).checked_div(total).unwrap_or(100);
                    eprint!(
                        "\rimporting {}: {pct:3}% ({} of {})",
                        file.display(),
                        human(done),
                        human(total)
                    );
                    if done == total {
                        eprintln!();
                    }
                    let _ = std::io::stderr().flush();
                }
                true
            };
            let started = Instant::now();
            let m = store.import_image(&file, Some(&manifest), Some(&mut progress))?;
            if json {
                print_json(&m)?
            } else {
                println!(
                    "imported image {} {}@{} ({}, {} virtual, sha256 {}) in {:.1} s",
                    m.uuid,
                    m.name,
                    m.version,
                    m.format.as_str(),
                    human(m.size_bytes),
                    &m.sha256[..16],
                    started.elapsed().as_secs_f64()
                );
            }
        }
        Cmd::Image(ImageCmd::List) => {
            let list = store.images()?;
            if json {
                print_json(&list)?
            } else {
                table(
                    &["UUID", "NAME", "VERSION", "OS", "FORMAT", "SIZE", "CREATED"],
                    list.iter()
                        .map(|m| {
                            vec![
                                m.uuid.to_string(),
                                m.name.clone(),
                                m.version.clone(),
                                m.os.clone(),
                                m.format.as_str().into(),
                                human(m.size_bytes),
                                m.created_at.clone(),
                            ]
                        })
                        .collect(),
                )
            }
        }
        Cmd::Image(ImageCmd::Get { uuid }) => show(&store.image(&uuid)?, json)?,
        Cmd::Image(ImageCmd::Delete { uuid }) => {
            store.delete_image(&uuid)?;
            if !json {
                println!("deleted image {uuid}");
            }
        }
        Cmd::Vm(VmCmd::Create { file }) => {
            let mut payload = String::new();
            if file == "-" {
                std::io::stdin()
                    .take(vmpool::vm::PAYLOAD_MAX as u64 + 1)
                    .read_to_string(&mut payload)
                    .map_err(|e| Error::Io {
                        context: "reading payload from stdin".into(),
                        source: e,
                    })?;
            } else {
                payload = std::fs::read_to_string(&file).map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => Error::not_found("file", file.clone()),
                    _ => Error::Io {
                        context: format!("reading {file}"),
                        source: e,
                    },
                })?;
            }
            let started = Instant::now();
            let r = store.create_vm(&payload)?;
            let took = started.elapsed();
            if json {
                print_json(&r)?
            } else {
                println!(
                    "created VM {} ({}) for {} from image {} in {:.1} ms: {} vCPU, {} MiB, {} GiB disk ({}) at {}",
                    r.uuid,
                    r.alias,
                    r.owner,
                    r.image_uuid,
                    took.as_secs_f64() * 1e3,
                    r.vcpus,
                    r.ram_mib,
                    r.disk_gib,
                    r.clone_method,
                    r.disk_path
                );
            }
        }
        Cmd::Vm(VmCmd::List { owner }) => {
            let list = store.vms(owner.as_deref())?;
            if json {
                print_json(&list)?
            } else {
                table(
                    &[
                        "UUID", "ALIAS", "OWNER", "IMAGE", "VCPUS", "RAM", "DISK", "STATE",
                        "CREATED",
                    ],
                    list.iter()
                        .map(|r| {
                            vec![
                                r.uuid.to_string(),
                                r.alias.clone(),
                                r.owner.clone(),
                                r.image_uuid.to_string()[..8].to_string(),
                                r.vcpus.to_string(),
                                format!("{} MiB", r.ram_mib),
                                format!("{} GiB", r.disk_gib),
                                serde_json::to_value(r.state)
                                    .ok()
                                    .and_then(|v| v.as_str().map(str::to_owned))
                                    .unwrap_or_default(),
                                r.created_at.clone(),
                            ]
                        })
                        .collect(),
                )
            }
        }
        Cmd::Vm(VmCmd::Get { uuid }) => show(&store.vm(&uuid)?, json)?,
        Cmd::Vm(VmCmd::Delete { uuid }) => {
            store.delete_vm(&uuid)?;
            if !json {
                println!("deleted VM {uuid}");
            }
        }
    }
    Ok(())
}

fn show<T: serde::Serialize>(v: &T, json: bool) -> vmpool::Result<()> {
    if json {
        print_json(v)
    } else {
        println!(
            "{}",
            serde_json::to_string_pretty(v).map_err(|e| Error::Internal(e.to_string()))?
        );
        Ok(())
    }
}

fn human(b: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut w: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(headers.to_vec());
    for r in &rows {
        line(r.iter().map(String::as_str).collect());
    }
}
