//! `vmpoolctl`: the library from a shell. No logic of its own: it parses arguments, calls the
//! typed `vmpool::Store` API, and prints tables (default) or exactly the JSON the C ABI
//! returns (`--json`, through the same `vmpool::ffi::wire` serialisation). The exit status is
//! the `vmpool_result` code (0 on success, 64 for usage errors).

mod guest;
mod home;
mod host;
mod pool;
mod top;

use clap::{Parser, Subcommand};
use comfy_table::{presets, ContentArrangement, Table};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{ErrorKind, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use uuid::Uuid;
use vmpool::ffi::wire;
use vmpool::{validate, DiskFormat, Error, ImportRequest, Store};

const EX_USAGE: i32 = 64;

#[derive(Parser)]
#[command(
    name = "vmpoolctl",
    version,
    about = "Images, copy-on-write clones, VMs and pools in a vmpool store"
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
    /// Pools of ready VMs handed to owners: create, list, acquire, release, refill
    #[command(subcommand)]
    Pool(pool::PoolCmd),
    /// Owners' home volumes: create, list, get, resize, delete
    #[command(subcommand)]
    Home(home::HomeCmd),
    /// A running VM's guest agent: ping, exec
    #[command(subcommand)]
    Guest(guest::GuestCmd),
    /// The store itself
    #[command(subcommand)]
    Store(StoreCmd),
    /// The store across a host's reboot: start (after the boot), stop (before the shutdown)
    #[command(subcommand)]
    Host(host::HostCmd),
    /// Every running VM, busiest first: CPU, memory, disk traffic, redrawn in place
    Top(top::TopArgs),
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
    /// Start a VM (QEMU under its supervisor, detached from this command)
    Start {
        uuid: String,
        /// auto, kvm or tcg (default: the VM's, else the store's)
        #[arg(long)]
        accel: Option<String>,
    },
    /// Shut a VM down: ACPI power button, then kill after the timeout
    Stop {
        uuid: String,
        /// Seconds the guest has to power off before QEMU is killed
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Kill a VM's QEMU at once
    Kill {
        uuid: String,
    },
    /// Reset a VM (as its reset button)
    Reboot {
        uuid: String,
    },
    /// Pause a VM's CPUs
    Pause {
        uuid: String,
    },
    /// Continue a paused VM, or wake a suspended one
    Resume {
        uuid: String,
    },
    /// Put a VM to sleep: memory and devices saved to the store, QEMU ended
    Suspend {
        uuid: String,
        /// Recorded with the suspension
        #[arg(long, default_value = "on request")]
        reason: String,
    },
    /// A VM's live state and current run
    Status {
        uuid: String,
    },
    /// What a VM uses now: CPU time, memory, each drive's I/O (counters)
    Stats {
        uuid: String,
    },
    /// Change a stopped VM's CPUs, memory or disk (the disk only grows)
    Update {
        uuid: String,
        #[arg(long)]
        vcpus: Option<u32>,
        #[arg(long)]
        ram_mib: Option<u64>,
        #[arg(long)]
        disk_gib: Option<u64>,
    },
    /// A SPICE console ticket (and, with --vv, a remote-viewer file)
    Console {
        uuid: String,
        /// Seconds the ticket is valid
        #[arg(long, default_value_t = 600)]
        ttl: u64,
        /// Write a remote-viewer connection file here (mode 0600)
        #[arg(long, value_name = "FILE")]
        vv: Option<PathBuf>,
    },
    /// Save the VM's screen as a PNG file
    Screenshot {
        uuid: String,
        file: PathBuf,
    },
    /// The VM's serial console log
    Log {
        uuid: String,
        /// Keep printing what the guest writes
        #[arg(long)]
        follow: bool,
        /// At most this many bytes from the end
        #[arg(long, default_value_t = 65536)]
        bytes: u64,
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
        let msg = if json {
            serde_json::json!({"error": {"code": code as u32, "name": code.name(), "message": e.to_string()}}).to_string()
        } else {
            format!("vmpoolctl: {}: {e}", code.name())
        };
        let _ = writeln!(std::io::stderr(), "{msg}");
        std::process::exit(code as i32);
    }
}

/// Write to stdout. When the reader has gone (`vmpoolctl ... | head`), the work is already
/// done: exit quietly with success, as other Unix tools do, instead of panicking.
pub(crate) fn out(s: &str) -> vmpool::Result<()> {
    let mut o = std::io::stdout().lock();
    match writeln!(o, "{s}").and_then(|_| o.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Err(Error::Io {
            context: "writing to standard output".into(),
            source: e,
        }),
    }
}

pub(crate) fn uuid_arg(what: &str, s: &str) -> vmpool::Result<Uuid> {
    validate::uuid(what, s)
}

fn run(cli: Cli) -> vmpool::Result<()> {
    let store = Store::open(cli.store.as_deref())?;
    let json = cli.json;
    match cli.cmd {
        Cmd::Pool(c) => pool::run(&store, c, json)?,
        Cmd::Home(c) => home::run(&store, c, json)?,
        Cmd::Guest(c) => guest::run(&store, c, json)?,
        Cmd::Host(c) => host::run(&store, c, json)?,
        Cmd::Top(a) => top::run(&store, a, json)?,
        Cmd::Store(StoreCmd::Info) => {
            let info = store.info();
            let w = wire::StoreInfoOut::from(&info);
            if json {
                out(&wire::to_string(&w)?)?
            } else {
                out(&serde_json::to_string_pretty(&w).map_err(|e| Error::json("the output", e))?)?
            }
        }
        Cmd::Store(StoreCmd::Recover) => {
            let r = store.recover()?;
            if json {
                out(&wire::to_string(&wire::RecoveryOut::from(&r))?)?
            } else {
                for c in &r.cleaned {
                    out(&format!("cleaned: {c}"))?;
                }
                for k in &r.kept {
                    out(&format!("left alone (not the store's): {k}"))?;
                }
                for e in &r.errors {
                    out(&format!("left for later: {e}"))?;
                }
                if r.cleaned.is_empty() && r.errors.is_empty() && r.kept.is_empty() {
                    out("nothing to clean up")?;
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
            let mut req = ImportRequest {
                uuid: uuid.as_deref().map(|u| uuid_arg("uuid", u)).transpose()?,
                name,
                version,
                os,
                sha256,
                format: format
                    .as_deref()
                    .map(|f| match f {
                        "raw" => Ok(DiskFormat::Raw),
                        "qcow2" => Ok(DiskFormat::Qcow2),
                        _ => Err(Error::invalid(format!(
                            "--format {f:?}: expected raw or qcow2"
                        ))),
                    })
                    .transpose()?,
                ..Default::default()
            };
            for kv in tags {
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| Error::invalid(format!("--tag {kv:?} is not KEY=VALUE")))?;
                req.tags.insert(k.into(), v.into());
            }
            // Drawn only when stderr is a terminal (indicatif hides itself otherwise).
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            if json {
                bar.set_draw_target(ProgressDrawTarget::hidden());
            }
            bar.set_style(
                ProgressStyle::with_template(
                    "importing {msg}: {bar:30} {percent:>3}% {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_message(file.display().to_string());
            let mut progress = |done: u64, total: u64| {
                bar.set_length(total);
                bar.set_position(done);
                true
            };
            let started = Instant::now();
            let result = store.import_image(&file, &req, Some(&mut progress));
            bar.finish_and_clear();
            let m = result?;
            if json {
                out(&wire::to_string(&wire::ImageOut::from(&m))?)?
            } else {
                out(&format!(
                    "imported image {} {}@{} ({}, {} virtual, sha256 {}) in {:.1} s",
                    m.uuid,
                    m.name,
                    m.version,
                    m.format.as_str(),
                    human(m.size_bytes),
                    &m.sha256[..16],
                    started.elapsed().as_secs_f64()
                ))?;
            }
        }
        Cmd::Image(ImageCmd::List) => {
            let list = store.images()?;
            if json {
                out(&wire::images(&list)?)?
            } else {
                out(&table(
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
                ))?
            }
        }
        Cmd::Image(ImageCmd::Get { uuid }) => {
            let m = store.image(uuid_arg("image uuid", &uuid)?)?;
            show(&wire::ImageOut::from(&m), json)?
        }
        Cmd::Image(ImageCmd::Delete { uuid }) => {
            store.delete_image(uuid_arg("image uuid", &uuid)?)?;
            if !json {
                out(&format!("deleted image {uuid}"))?;
            }
        }
        Cmd::Vm(VmCmd::Create { file }) => {
            let payload = read_payload(&file)?;
            // The payload file is the C ABI's JSON; parsed once, here, into a typed spec.
            let spec = wire::vm_spec(&payload)?;
            let started = Instant::now();
            let r = store.create_vm(&spec)?;
            let took = started.elapsed();
            if json {
                out(&wire::to_string(&wire::VmOut::from(&r))?)?
            } else {
                out(&format!(
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
                ))?;
            }
        }
        Cmd::Vm(VmCmd::List { owner }) => {
            let list = store.vms(owner.as_deref())?;
            if json {
                out(&wire::vms(&list)?)?
            } else {
                out(&table(
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
                                r.state.as_str().into(),
                                r.created_at.clone(),
                            ]
                        })
                        .collect(),
                ))?
            }
        }
        Cmd::Vm(VmCmd::Get { uuid }) => {
            let v = store.vm(uuid_arg("VM uuid", &uuid)?)?;
            show(&wire::VmOut::from(&v), json)?
        }
        Cmd::Vm(VmCmd::Delete { uuid }) => {
            store.delete_vm(uuid_arg("VM uuid", &uuid)?)?;
            if !json {
                out(&format!("deleted VM {uuid}"))?;
            }
        }
        Cmd::Vm(VmCmd::Start { uuid, accel }) => {
            let opts = vmpool::store::StartOptions {
                accel: accel.as_deref().map(vmpool::vm::Accel::parse).transpose()?,
            };
            let started = Instant::now();
            let v = store.start_vm(uuid_arg("VM uuid", &uuid)?, &opts)?;
            vm_done(
                &v,
                json,
                &format!("started in {:.0} ms", started.elapsed().as_secs_f64() * 1e3),
            )?
        }
        Cmd::Vm(VmCmd::Stop { uuid, timeout }) => {
            let v = store.stop_vm(uuid_arg("VM uuid", &uuid)?, Duration::from_secs(timeout))?;
            vm_done(&v, json, "stop")?
        }
        Cmd::Vm(VmCmd::Kill { uuid }) => {
            vm_done(&store.kill_vm(uuid_arg("VM uuid", &uuid)?)?, json, "kill")?
        }
        Cmd::Vm(VmCmd::Reboot { uuid }) => vm_done(
            &store.reboot_vm(uuid_arg("VM uuid", &uuid)?)?,
            json,
            "reboot",
        )?,
        Cmd::Vm(VmCmd::Pause { uuid }) => {
            vm_done(&store.pause_vm(uuid_arg("VM uuid", &uuid)?)?, json, "pause")?
        }
        Cmd::Vm(VmCmd::Resume { uuid }) => vm_done(
            &store.resume_vm(uuid_arg("VM uuid", &uuid)?)?,
            json,
            "resume",
        )?,
        Cmd::Vm(VmCmd::Suspend { uuid, reason }) => vm_done(
            &store.suspend_vm(uuid_arg("VM uuid", &uuid)?, &reason)?,
            json,
            "suspend",
        )?,
        Cmd::Vm(VmCmd::Status { uuid }) => {
            let st = store.vm_status(uuid_arg("VM uuid", &uuid)?)?;
            show(&wire::VmStatusOut::from(&st), json)?
        }
        Cmd::Vm(VmCmd::Stats { uuid }) => {
            show(&store.vm_stats(uuid_arg("VM uuid", &uuid)?)?, json)?
        }
        Cmd::Vm(VmCmd::Update {
            uuid,
            vcpus,
            ram_mib,
            disk_gib,
        }) => {
            let u = vmpool::store::VmUpdate {
                vcpus,
                ram_mib,
                disk_gib,
            };
            let v = store.update_vm(uuid_arg("VM uuid", &uuid)?, &u)?;
            vm_done(&v, json, "update")?
        }
        Cmd::Vm(VmCmd::Console { uuid, ttl, vv }) => {
            let c = store.console(uuid_arg("VM uuid", &uuid)?, Duration::from_secs(ttl))?;
            if let Some(path) = &vv {
                use std::os::unix::fs::OpenOptionsExt;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| Error::Io {
                        context: format!("writing {}", path.display()),
                        source: e,
                    })?;
                f.write_all(c.vv.as_bytes()).map_err(|e| Error::Io {
                    context: format!("writing {}", path.display()),
                    source: e,
                })?;
            }
            if json {
                out(&wire::to_string(&wire::ConsoleOut::from(&c))?)?
            } else {
                out(&format!(
                    "{}\npassword {} (valid until {})",
                    c.uri, c.password, c.expires_at
                ))?;
                if let Some(path) = vv {
                    out(&format!(
                        "remote-viewer file: {} (open with: remote-viewer {})",
                        path.display(),
                        path.display()
                    ))?;
                }
            }
        }
        Cmd::Vm(VmCmd::Screenshot { uuid, file }) => {
            store.screenshot(uuid_arg("VM uuid", &uuid)?, &file)?;
            if !json {
                out(&format!(
                    "saved the screen of VM {uuid} to {}",
                    file.display()
                ))?;
            }
        }
        Cmd::Vm(VmCmd::Log {
            uuid,
            follow,
            bytes,
        }) => {
            let u = uuid_arg("VM uuid", &uuid)?;
            let log = store.vm_log(u, bytes)?;
            raw_out(&log)?;
            if follow {
                let path = store.vm_status(u)?.serial_log;
                follow_file(&path, log.len() as u64)?;
            }
        }
    }
    Ok(())
}

/// A JSON payload from a file, or from standard input for `-`.
pub(crate) fn read_payload(file: &str) -> vmpool::Result<String> {
    let mut payload = String::new();
    if file == "-" {
        std::io::stdin()
            .take(wire::PAYLOAD_MAX as u64 + 1)
            .read_to_string(&mut payload)
            .map_err(|e| Error::Io {
                context: "reading payload from stdin".into(),
                source: e,
            })?;
        Ok(payload)
    } else {
        std::fs::read_to_string(file).map_err(|e| match e.kind() {
            ErrorKind::NotFound => Error::not_found("file", file.to_owned()),
            _ => Error::Io {
                context: format!("reading {file}"),
                source: e,
            },
        })
    }
}

/// The result of a lifecycle command: the VM (JSON) or one line for people.
fn vm_done(v: &vmpool::Vm, json: bool, what: &str) -> vmpool::Result<()> {
    if json {
        out(&wire::to_string(&wire::VmOut::from(v))?)
    } else {
        let why = v
            .last_exit
            .as_ref()
            .filter(|_| !v.state.is_active())
            .map(|e| format!(" ({})", e.reason))
            .unwrap_or_default();
        out(&format!(
            "VM {} ({}): {what}; now {}{why}",
            v.uuid,
            v.alias,
            v.state.as_str()
        ))
    }
}

pub(crate) fn raw_out(b: &[u8]) -> vmpool::Result<()> {
    let mut o = std::io::stdout().lock();
    match o.write_all(b).and_then(|_| o.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Err(Error::Io {
            context: "writing to standard output".into(),
            source: e,
        }),
    }
}

/// Print what is appended to the serial log (following its rotation) until interrupted.
fn follow_file(path: &std::path::Path, mut pos: u64) -> vmpool::Result<()> {
    use std::io::Seek;
    // The part already shown may have come from the rotated file: start at the end.
    pos = pos.min(std::fs::metadata(path).map(|m| m.len()).unwrap_or(0));
    if let Ok(m) = std::fs::metadata(path) {
        pos = m.len();
    }
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let Ok(mut f) = std::fs::File::open(path) else {
            continue;
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len < pos {
            pos = 0; // rotated
        }
        if len > pos {
            let _ = f.seek(std::io::SeekFrom::Start(pos));
            let mut buf = Vec::new();
            let _ = f.read_to_end(&mut buf);
            pos += buf.len() as u64;
            raw_out(&buf)?;
        }
    }
}

pub(crate) fn show<T: serde::Serialize>(v: &T, json: bool) -> vmpool::Result<()> {
    if json {
        out(&wire::to_string(v)?)
    } else {
        out(&serde_json::to_string_pretty(v).map_err(|e| Error::json("the output", e))?)
    }
}

pub(crate) fn human(b: u64) -> String {
    indicatif::BinaryBytes(b).to_string()
}

/// A plain table for people: no borders, columns padded, as `zfs list` or `vmadm list`.
pub(crate) fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(headers.to_vec());
    for r in rows {
        t.add_row(r);
    }
    t.lines()
        .map(|l| l.trim().to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}
