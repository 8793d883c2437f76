//! Starting a VM (vmadm's start): the QEMU command line from its record, its firmware, SPICE
//! address and zone, and its supervisor, which starts QEMU detached from the caller.

use crate::error::{Error, IoContext, Result};
use crate::lock::{self, Mode};
use crate::safe_fs::{Dir, Kind};
use crate::store::catalog::records::VmRecord;
use crate::store::Store;
use crate::vm::config::{SpiceAddr, SpiceListen};
use crate::vm::qemu::{self, Cache, FirmwareFiles, Launch};
use crate::vm::runtime::{names, RunDir, RunInfo, PRIVATE};
use crate::vm::supervisor::{self, LaunchFile, Ready};
use crate::vm::{Accel, Firmware, LastExit, State, Vm};
use crate::zone::{Limits as ZoneLimits, ZoneSpec};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use uuid::Uuid;

/// How long `start` waits for the supervisor's report (it gives up on QEMU after 60 s).
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// Options of `start_vm`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartOptions {
    /// Accelerator for this run (else the VM's, else the store's).
    pub accel: Option<Accel>,
}

/// The OVMF code and variable-store template (Debian's `ovmf` package).
fn ovmf() -> Result<(PathBuf, PathBuf)> {
    for (code, vars) in [
        (
            "/usr/share/OVMF/OVMF_CODE_4M.fd",
            "/usr/share/OVMF/OVMF_VARS_4M.fd",
        ),
        (
            "/usr/share/OVMF/OVMF_CODE.fd",
            "/usr/share/OVMF/OVMF_VARS.fd",
        ),
    ] {
        if Path::new(code).exists() && Path::new(vars).exists() {
            return Ok((code.into(), vars.into()));
        }
    }
    Err(Error::Unsupported(
        "firmware uefi needs OVMF (/usr/share/OVMF/OVMF_CODE_4M.fd; Debian package ovmf)".into(),
    ))
}

/// Largest UEFI variable store carried over from an older version's QEMU directory.
const UEFI_VARS_MAX: u64 = 64 << 20;

/// The VM's UEFI variables in its run directory (root's), made from `template` when missing.
/// An older version kept them in QEMU's own directory (`qemu/`): they are carried over from
/// there (read as a checked regular file) before that directory goes.
fn uefi_vars(run: &Dir, template: &Path) -> Result<()> {
    let ok = run
        .stat(names::UEFI_VARS)?
        .is_some_and(|st| Kind::File.matches(st.st_mode));
    if !ok {
        let legacy = run.subdir(names::LEGACY_QEMU_DIR)?;
        let old = match &legacy {
            Some(d) => d.open(names::UEFI_VARS, Kind::File).ok().flatten(),
            None => None,
        };
        let mut dst = run.replace(names::UEFI_VARS, PRIVATE)?;
        let copied = match old {
            Some(f) => std::io::copy(&mut std::io::Read::take(f, UEFI_VARS_MAX), &mut dst),
            None => std::fs::File::open(template).and_then(|mut f| std::io::copy(&mut f, &mut dst)),
        };
        copied.ctx(|| {
            format!(
                "copying the UEFI variables to {}",
                run.display(names::UEFI_VARS)
            )
        })?;
    }
    Ok(())
}

/// Run the supervisor and wait for its one-line report.
fn spawn_supervisor(run: &RunDir, dir: &Dir) -> Result<(u32, u32, u64)> {
    let bin = supervisor::binary()?;
    let log = dir.append(names::SUPERVISOR_LOG, PRIVATE)?;
    let mut child = Command::new(&bin)
        .arg(run.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .ctx(|| format!("starting {}", bin.display()))?;
    let out = child.stdout.take().expect("stdout was piped");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(out).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = match rx.recv_timeout(START_TIMEOUT) {
        Ok(l) => {
            let _ = reader.join();
            l
        }
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Timeout(format!(
                "the supervisor did not report within {START_TIMEOUT:?} (see {})",
                run.supervisor_log().display()
            )));
        }
    };
    // The first half exits right after relaying; reap it.
    let _ = child.wait();
    match serde_json::from_str::<Ready>(line.trim()) {
        Ok(Ready::Ok {
            supervisor_pid,
            qemu_pid,
            qemu_start,
        }) => Ok((supervisor_pid, qemu_pid, qemu_start)),
        Ok(Ready::Error { message }) => Err(Error::Hypervisor(message)),
        Err(e) => Err(Error::Hypervisor(format!(
            "the supervisor reported {:?} ({e}; see {})",
            line.trim(),
            run.supervisor_log().display()
        ))),
    }
}

/// The id of a group of this host (`/etc/group`), if it has one of that name.
fn group_id(name: &str) -> Option<u32> {
    std::fs::read_to_string("/etc/group")
        .ok()?
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            (f.next()? == name)
                .then(|| f.nth(1)?.parse().ok())
                .flatten()
        })
}

impl Store {
    /// Start a stopped (or failed) VM: QEMU under its supervisor, detached from the caller.
    /// Returns once QEMU's monitor answers (the guest is booting). A VM cloned from a memory
    /// template that has not run yet starts `paused`, its QEMU waiting for the template's
    /// state: `resume_vm` loads it and the guest goes on from where the template was. A
    /// suspended VM wakes: the call returns once its guest runs on from its saved state.
    /// The VM is marked to run (vmadm's `autoboot`) once it runs.
    pub fn start_vm(&self, uuid: Uuid, opts: &StartOptions) -> Result<Vm> {
        crate::probes::op("vm-start", uuid, || self.start_vm_op(uuid, opts))
    }

    fn start_vm_op(&self, uuid: Uuid, opts: &StartOptions) -> Result<Vm> {
        let run = self.run_dir(&uuid);
        let _lc = self.lifecycle_lock(&run)?;
        let started = self.start_or_wake_locked(uuid, &run, opts, |_| true);
        // The caller wants it running: marked once it runs, or if it ran already.
        if matches!(started, Ok(_) | Err(Error::AlreadyRunning(_))) {
            self.mark_autoboot(&uuid)?;
        }
        let vm = started?.ok_or_else(|| Error::Internal(format!("VM {uuid}: no start")))?;
        Ok(Vm {
            autoboot: true,
            ..vm
        })
    }

    /// `start_vm` for vmpool's own starts (a pool's spares, a host start): the VM is not
    /// marked to run by it, and it starts only if `cond`, asked under its lifecycle lock,
    /// holds (`None` if not).
    pub(crate) fn start_vm_if(
        &self,
        uuid: Uuid,
        opts: &StartOptions,
        cond: impl FnOnce(&VmRecord) -> bool,
    ) -> Result<Option<Vm>> {
        let run = self.run_dir(&uuid);
        let _lc = self.lifecycle_lock(&run)?;
        self.start_or_wake_locked(uuid, &run, opts, cond)
    }

    fn start_or_wake_locked(
        &self,
        uuid: Uuid,
        run: &RunDir,
        opts: &StartOptions,
        cond: impl FnOnce(&VmRecord) -> bool,
    ) -> Result<Option<Vm>> {
        self.settle_suspend_locked(&uuid, run)?;
        let r = self.record(&uuid)?;
        if !cond(&r) {
            return Ok(None);
        }
        if r.suspended.is_some() && self.live_state(&r, run, true).0 == State::Paused {
            return self.resume_locked(uuid, run).map(Some);
        }
        let vm = self.start_locked(uuid, run, opts, None)?;
        // A wake is one step under the lock: nobody sees its QEMU waiting, and a QEMU left
        // waiting with the lock free is a wake whose caller died (`settle_suspends`).
        if vm.state == State::Paused && vm.suspended.is_some() {
            return self.resume_locked(uuid, run).map(Some);
        }
        Ok(Some(vm))
    }

    /// `start_vm`; with `template_memory`, as a pool's template build: the guest's RAM in
    /// that shared file (made for it, in a directory only root writes).
    pub(crate) fn start_vm_as(
        &self,
        uuid: Uuid,
        opts: &StartOptions,
        template_memory: Option<&Path>,
    ) -> Result<Vm> {
        let run = self.run_dir(&uuid);
        let _lc = self.lifecycle_lock(&run)?;
        self.settle_suspend_locked(&uuid, &run)?;
        self.start_locked(uuid, &run, opts, template_memory)
    }

    /// `start_vm_as` under the VM's lifecycle lock, which the caller holds.
    pub(crate) fn start_locked(
        &self,
        uuid: Uuid,
        run: &RunDir,
        opts: &StartOptions,
        template_memory: Option<&Path>,
    ) -> Result<Vm> {
        let run = run.clone();
        let mut r = self.record(&uuid)?;
        let (live, _) = self.live_state(&r, &run, true);
        if live.is_active() {
            return Err(Error::AlreadyRunning(format!(
                "VM {uuid} is already {}",
                live.as_str()
            )));
        }
        // The supervisor of its last run may still be ending (its record written, it exits
        // in a moment), or waiting for this lock to record the end (a suspend settled under
        // it): a new run must not start under it, whose files it would clean away.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        while crate::vm::runtime::lock_held(&run.supervisor_lock())? {
            if std::time::Instant::now() > deadline {
                return Err(Error::Busy(format!(
                    "VM {uuid}: its last run is still ending; try again in a moment"
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let disk = self
            .driver
            .disk_path(&r.disk_path)
            .map_err(|_| Error::not_found("disk of VM", format!("{uuid} ({})", r.disk_path)))?;
        if !disk.exists() {
            return Err(Error::not_found(
                "disk of VM",
                format!("{uuid} ({})", disk.display()),
            ));
        }
        run.check_sockets()?;
        let accel = qemu::resolve_accel(opts.accel.or(r.accel).unwrap_or(self.run.accel));
        if accel == Accel::Kvm && !qemu::kvm_usable() {
            return Err(Error::Unsupported(format!(
                "VM {uuid} asks for accel=kvm, but /dev/kvm is not usable on this host; use accel=tcg or auto"
            )));
        }
        let _ports = match &self.run.spice {
            SpiceListen::Tcp { .. } => Some(lock::lock(
                &self.catalog_dir().join("run").join(".ports.lock"),
                Mode::Exclusive,
            )?),
            SpiceListen::Unix => None,
        };
        let spice = match &self.run.spice {
            SpiceListen::Unix => SpiceAddr::Unix { path: run.spice() },
            SpiceListen::Tcp { addr, ports } => SpiceAddr::Tcp {
                host: *addr,
                port: self.free_port(*addr, *ports)?,
            },
        };
        let rundir = run.open()?;
        let firmware = match r.firmware {
            Firmware::Bios => FirmwareFiles::Bios,
            Firmware::Uefi => {
                let (code, vars_template) = ovmf()?;
                uefi_vars(&rundir, &vars_template)?;
                FirmwareFiles::Uefi {
                    code,
                    vars: run.uefi_vars(),
                }
            }
        };
        // Older versions gave QEMU this directory; whatever it left there goes, unread.
        rundir.remove(names::LEGACY_QEMU_DIR)?;
        // A clone whose template's files are gone (the host restarted: they live on tmpfs)
        // boots from its disk, which is as the template's was at its pause: like after a
        // power cut, which every file system in the guest recovers from.
        if let Some(rs) = &r.restore {
            if !rs.memory.exists() || !rs.state.exists() {
                r.restore = None;
            }
        }
        let memory_file = match (template_memory, &r.restore) {
            (Some(path), _) => Some(qemu::MemoryFile {
                path: path.to_owned(),
                share: true,
            }),
            (None, Some(rs)) => Some(qemu::MemoryFile {
                path: rs.memory.clone(),
                share: false,
            }),
            (None, None) => None,
        };
        // A suspended VM goes on from its saved state, which `resume_vm` loads into a QEMU
        // with the devices that state names.
        let resuming = template_memory.is_none() && self.resumes(&mut r, &rundir);
        let clone_layout = resuming && r.suspended.as_ref().is_some_and(|s| s.clone_layout);
        let incoming = template_memory.is_none() && (r.restore.is_some() || resuming);
        let mac = r
            .mac
            .get_or_insert_with(|| crate::vm::mac_for(&uuid))
            .clone();
        let vmgenid = *r.vmgenid.get_or_insert(uuid);
        // The NoCloud seed, written afresh: the identity follows the VM's alias.
        let seed = self
            .image(r.image_uuid)
            .ok()
            .is_some_and(|i| crate::vm::seed::wanted(i.tags.get(crate::vm::seed::CLOUD_INIT_TAG)));
        if seed {
            let id = crate::vm::identity::Identity {
                user: r.user.clone(),
                ..crate::vm::identity::Identity::at_boot(uuid, &r.alias)
            };
            rundir.write_atomic(names::SEED, &crate::vm::seed::nocloud(&id)?, PRIVATE)?;
        } else {
            rundir.remove(names::SEED)?;
        }
        let launch = Launch {
            uuid,
            name: r.alias.clone(),
            vcpus: r.vcpus,
            ram_mib: r.ram_mib,
            accel,
            tcg_tb_mib: (accel == Accel::Tcg).then_some(crate::zone::TCG_CACHE_MIB),
            cache: if qemu::direct_io_works(&disk) {
                Cache::None
            } else {
                Cache::Writeback
            },
            disk,
            disk_format: r.disk_format,
            firmware,
            mac,
            vmgenid,
            spice: spice.clone(),
            net: self.run.net,
            sandbox: true,
            memory_file,
            incoming_defer: incoming,
            clone_layout,
            prealloc: r.caps.prealloc,
            seed,
        };
        let zone = if self.run.zone {
            Some(self.zone_spec(&mut r, &run, &launch, template_memory)?)
        } else {
            None
        };
        // A fresh directory for this run's sockets (the supervisor binds them there).
        run.fresh_sockets()?;
        let file = LaunchFile {
            qemu: self.run.qemu.clone(),
            args: qemu::command_line(&launch),
            catalog: self.catalog_dir().to_owned(),
            vm: uuid,
            sockets: run.sockets().to_owned(),
            serial_log_bytes: self.run.serial_log_bytes,
            accel,
            spice: spice.clone(),
            zone,
            seed,
        };
        // An intent left by an earlier run goes now, not when the supervisor begins: a kill
        // asked for while this start's supervisor is on its way (its caller died) must reach
        // it. So do the facts of an earlier run that ended unrecorded (a power cut): a kill
        // must not take them for this run's (see `kill_qemu_locked`).
        rundir.remove(supervisor::INTENT)?;
        rundir.remove(supervisor::RUN_INFO)?;
        // A start after its session's end begins without one (the pool gives the next).
        if crate::pool::session_limit::passed(&r) {
            r.session_ends_at = None;
        }
        rundir.write_atomic(
            names::LAUNCH,
            &serde_json::to_vec_pretty(&file).map_err(|e| Error::json("the launch file", e))?,
            PRIVATE,
        )?;
        r.state = live.to(State::Starting, &uuid)?;
        r.run = None;
        self.catalog.put_vm(&r)?;
        crate::fail_point!("vm_start.starting");
        match spawn_supervisor(&run, &rundir) {
            Ok((supervisor_pid, qemu_pid, qemu_start)) => {
                crate::fail_point!("vm_start.spawned");
                r.state = State::Starting.to(
                    if incoming {
                        State::Paused
                    } else {
                        State::Running
                    },
                    &uuid,
                )?;
                r.run = Some(RunInfo {
                    supervisor_pid,
                    qemu_pid,
                    qemu_start,
                    started_at: crate::now_rfc3339(),
                    accel,
                    spice,
                });
                self.catalog.put_vm(&r)?;
                Ok(self.live(&r))
            }
            Err(e) => {
                // A wake that could not start QEMU leaves the VM asleep: its state is whole.
                r.state = State::Starting.to(
                    if resuming {
                        State::Suspended
                    } else {
                        State::Failed
                    },
                    &uuid,
                )?;
                r.last_exit = Some(LastExit {
                    at: crate::now_rfc3339(),
                    clean: false,
                    reason: e.to_string(),
                    signal: None,
                    status: None,
                });
                self.catalog.put_vm(&r)?;
                Err(e)
            }
        }
    }

    /// The zone of a VM about to start: its uid (chosen once, kept in the record), its limits,
    /// and what it may see and write.
    fn zone_spec(
        &self,
        r: &mut VmRecord,
        run: &RunDir,
        launch: &Launch,
        template_memory: Option<&Path>,
    ) -> Result<ZoneSpec> {
        let uid = self.ensure_uid(r)?;
        // Only files: QEMU owns no directory (its sockets are descriptors).
        let mut writable = Vec::new();
        let mut devices = Vec::new();
        let mut groups = Vec::new();
        if launch.accel == Accel::Kvm {
            devices.push(PathBuf::from("/dev/kvm"));
            groups.extend(group_id("kvm"));
        }
        if launch.disk.starts_with("/dev/") {
            devices.push(launch.disk.clone());
        } else {
            writable.push(launch.disk.clone());
        }
        if let Some(memory) = template_memory {
            writable.push(memory.to_owned());
        }
        if let FirmwareFiles::Uefi { vars, .. } = &launch.firmware {
            writable.push(vars.clone());
        }
        let mut readable = Vec::new();
        // A QEMU outside /usr (the store's `qemu` option) must be visible in the zone too.
        if let Ok(program) = supervisor::find_program(&self.run.qemu) {
            if !program.starts_with("/usr") {
                readable.push(program);
            }
        }
        // A qcow2 overlay reads its backing chain: the image, and the image a template image
        // was derived from.
        let mut next = (r.disk_format == crate::image::DiskFormat::Qcow2).then_some(r.image_uuid);
        while let Some(u) = next.take() {
            if let Some(img) = self.catalog.image(&u)? {
                if img.disk_format == crate::image::DiskFormat::Qcow2 || img.parent.is_some() {
                    next = img.parent;
                }
                readable.push(PathBuf::from(img.disk));
            }
        }
        // The template's RAM, mapped private; its device state comes as a descriptor.
        if let (None, Some(rs)) = (template_memory, &r.restore) {
            readable.push(rs.memory.clone());
        }
        if let FirmwareFiles::Uefi { code, .. } = &launch.firmware {
            if !code.starts_with("/usr") {
                readable.push(code.clone());
            }
        }
        Ok(ZoneSpec {
            vm: r.uuid,
            hostname: r.alias.clone(),
            uid,
            gid: uid,
            groups,
            limits: ZoneLimits::for_vm(
                r.vcpus,
                r.ram_mib,
                launch.accel == Accel::Tcg,
                r.caps.cpu_pct,
                r.caps.memory_mib,
                r.caps.io,
            ),
            writable,
            readable,
            devices,
            run_dir: run.path().to_owned(),
            vcpus: r.vcpus,
            ram_mib: r.ram_mib,
        })
    }
}
