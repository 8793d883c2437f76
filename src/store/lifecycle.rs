//! Running VMs (vmadm's start, stop, kill, reboot; Proxmox's pause, resume, console): each VM
//! runs as a QEMU process under its own supervisor (`vm::supervisor`), detached from the
//! caller, controllable by any process that opens the store.
//!
//! Every state transition takes the VM's lifecycle lock (`run/<uuid>/lock`, an `flock`) and
//! writes the record atomically; no call waits for QEMU or the supervisor while holding it,
//! so the supervisor can always record how a run ended. Two starts of one VM at once: the
//! second finds it running and gets `ALREADY_RUNNING`; no VM ever has two QEMU processes
//! (the supervisor's own lock also forbids it).

use super::catalog::records::VmRecord;
use super::Store;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::lock::{self, Mode};
use crate::vm::config::{SpiceAddr, SpiceListen};
use crate::vm::console::{self, Console};
use crate::vm::qemu::{self, Cache, FirmwareFiles, Launch};
use crate::vm::qmp::{Qmp, QmpError};
use crate::vm::runtime::{self, RunDir, RunInfo};
use crate::vm::supervisor::{self, LaunchFile, Ready, INTENT};
use crate::vm::{Accel, Firmware, LastExit, State, Vm};
use crate::zone::{Limits as ZoneLimits, ZoneSpec};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How long a QMP call may take (QEMU answers in milliseconds; this bounds a hung QEMU).
const QMP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `start` waits for the supervisor's report (it gives up on QEMU after 60 s).
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long to wait for the supervisor to record a run's end after QEMU was killed.
const REAP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long saving or loading a memory template's device state may take (about a megabyte;
/// milliseconds normally).
const MIGRATION_TIMEOUT: Duration = Duration::from_secs(60);

/// Options of `start_vm`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartOptions {
    /// Accelerator for this run (else the VM's, else the store's).
    pub accel: Option<Accel>,
}

/// Changes to a VM (`update_vm`): CPUs and memory while it is stopped; the disk grows (never
/// shrinks), also while stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VmUpdate {
    /// New vCPU count.
    pub vcpus: Option<u32>,
    /// New memory size, MiB.
    pub ram_mib: Option<u64>,
    /// New disk size, GiB (at least the current size).
    pub disk_gib: Option<u64>,
}

/// A VM and its current run.
#[derive(Debug, Clone, PartialEq)]
pub struct VmStatus {
    /// The VM, with its live state.
    pub vm: Vm,
    /// The run, while QEMU runs.
    pub run: Option<RunInfo>,
    /// Seconds since it was started, while it runs.
    pub uptime_s: Option<u64>,
    /// The serial console log.
    pub serial_log: PathBuf,
}

fn qmp_error(vm: &Uuid, what: &str, e: QmpError) -> Error {
    match e {
        QmpError::Timeout { .. } => {
            Error::Timeout(format!("VM {vm}: QEMU did not answer {what} in time ({e})"))
        }
        other => Error::Hypervisor(format!("VM {vm}: {what}: {other}")),
    }
}

impl Store {
    pub(crate) fn run_dir(&self, vm: &Uuid) -> RunDir {
        RunDir::new(self.catalog_dir(), vm)
    }

    /// The state a record's VM really is in, and how its last run ended. `locked`: the
    /// caller holds the VM's lifecycle lock (so a held lock says nothing).
    ///
    /// The record says what vmpool last did; the supervisor's lock and QEMU's process say
    /// what is. A start whose caller died is `running` if its supervisor came up (its
    /// `run.json` says so), `stopped` if nothing was started; a run whose supervisor and
    /// QEMU are gone without a word is `failed`.
    fn live_state(&self, r: &VmRecord, run: &RunDir, locked: bool) -> (State, Option<LastExit>) {
        if !r.state.is_active() {
            return (r.state, r.last_exit.clone());
        }
        let supervised = runtime::lock_held(&run.supervisor_lock()).unwrap_or(true);
        if r.state == State::Starting {
            if supervised {
                return match self.run_info(r, run) {
                    // A template clone's QEMU starts waiting for the template's state.
                    Some(_) if r.restore.is_some() => (State::Paused, r.last_exit.clone()),
                    Some(_) => (State::Running, r.last_exit.clone()),
                    None => (State::Starting, r.last_exit.clone()),
                };
            }
            if !locked && runtime::lock_held(&run.lock()).unwrap_or(true) {
                return (State::Starting, r.last_exit.clone());
            }
            return (State::Stopped, r.last_exit.clone());
        }
        if supervised {
            return (r.state, r.last_exit.clone());
        }
        // Mid-transition: a live lock holder.
        if !locked && runtime::lock_held(&run.lock()).unwrap_or(true) {
            return (r.state, r.last_exit.clone());
        }
        if let Some(info) = &r.run {
            if runtime::alive(info.qemu_pid, info.qemu_start) {
                return (r.state, r.last_exit.clone());
            }
        }
        (
            State::Failed,
            Some(LastExit {
                at: crate::now_rfc3339(),
                clean: false,
                reason: "QEMU and its supervisor ended without recording why (the supervisor was killed, and QEMU with it, or the host restarted)".into(),
                signal: None,
                status: None,
            }),
        )
    }

    /// The current run's facts: the record's, else what the supervisor wrote.
    fn run_info(&self, r: &VmRecord, run: &RunDir) -> Option<RunInfo> {
        r.run.clone().or_else(|| {
            std::fs::read(run.path().join(supervisor::RUN_INFO))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
        })
    }

    /// A record as callers see it: with its live state.
    pub(crate) fn live(&self, r: &VmRecord) -> Vm {
        let mut vm = Vm::from(r);
        let (state, last_exit) = self.live_state(r, &self.run_dir(&r.uuid), false);
        vm.state = state;
        vm.last_exit = last_exit;
        vm
    }

    fn record(&self, uuid: &Uuid) -> Result<VmRecord> {
        self.catalog
            .vm(uuid)?
            .ok_or_else(|| Error::not_found("VM", uuid.to_string()))
    }

    fn lifecycle_lock(&self, run: &RunDir) -> Result<lock::Held> {
        run.ensure()?;
        lock::lock(&run.lock(), Mode::Exclusive)
    }

    fn qmp(&self, vm: &Uuid, run: &RunDir) -> Result<Qmp> {
        Qmp::connect(&run.qmp(), QMP_TIMEOUT).map_err(|e| qmp_error(vm, "the connection", e))
    }

    fn qmp_call(
        &self,
        vm: &Uuid,
        run: &RunDir,
        cmd: &str,
        args: Option<serde_json::Value>,
    ) -> Result<serde_json::Value> {
        let mut q = self.qmp(vm, run)?;
        q.execute(cmd, args, QMP_TIMEOUT)
            .map_err(|e| qmp_error(vm, cmd, e))
    }

    /// Start a stopped (or failed) VM: QEMU under its supervisor, detached from the caller.
    /// Returns once QEMU's monitor answers (the guest is booting). A VM cloned from a memory
    /// template that has not run yet starts `paused`, its QEMU waiting for the template's
    /// state: `resume_vm` loads it and the guest goes on from where the template was.
    pub fn start_vm(&self, uuid: Uuid, opts: &StartOptions) -> Result<Vm> {
        self.start_vm_as(uuid, opts, None)
    }

    /// `start_vm`; with `template_dir`, as a pool's template build: the guest's RAM in a
    /// shared file there (QEMU may write there too, for the device state).
    pub(crate) fn start_vm_as(
        &self,
        uuid: Uuid,
        opts: &StartOptions,
        template_dir: Option<&Path>,
    ) -> Result<Vm> {
        let run = self.run_dir(&uuid);
        let _lc = self.lifecycle_lock(&run)?;
        let mut r = self.record(&uuid)?;
        let (live, _) = self.live_state(&r, &run, true);
        if live.is_active() {
            return Err(Error::AlreadyRunning(format!(
                "VM {uuid} is already {}",
                live.as_str()
            )));
        }
        let disk = crate::driver::zfs::resolve_device(&r.disk_path)
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
        let firmware = match r.firmware {
            Firmware::Bios => FirmwareFiles::Bios,
            Firmware::Uefi => {
                let (code, vars_template) = ovmf()?;
                let vars = run.uefi_vars();
                if !vars.exists() {
                    std::fs::copy(&vars_template, &vars).ctx(|| {
                        format!("copying {} to {}", vars_template.display(), vars.display())
                    })?;
                }
                FirmwareFiles::Uefi { code, vars }
            }
        };
        // A clone whose template's files are gone (the host restarted: they live on tmpfs)
        // boots from its disk, which is as the template's was at its pause: like after a
        // power cut, which every file system in the guest recovers from.
        if let Some(rs) = &r.restore {
            if !rs.memory.exists() || !rs.state.exists() {
                r.restore = None;
            }
        }
        let memory_file = match (template_dir, &r.restore) {
            (Some(dir), _) => Some(qemu::MemoryFile {
                path: dir.join(crate::store::templates::MEMORY_FILE),
                share: true,
            }),
            (None, Some(rs)) => Some(qemu::MemoryFile {
                path: rs.memory.clone(),
                share: false,
            }),
            (None, None) => None,
        };
        let incoming = template_dir.is_none() && r.restore.is_some();
        let mac = r
            .mac
            .get_or_insert_with(|| crate::vm::mac_for(&uuid))
            .clone();
        let vmgenid = *r.vmgenid.get_or_insert(uuid);
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
            qmp: run.qmp(),
            events: run.events(),
            sandbox: true,
            memory_file,
            incoming_defer: incoming,
            prealloc: r.caps.prealloc,
        };
        let zone = if self.run.zone {
            Some(self.zone_spec(&mut r, &run, &launch, template_dir)?)
        } else {
            None
        };
        let file = LaunchFile {
            qemu: self.run.qemu.clone(),
            args: qemu::command_line(&launch),
            catalog: self.catalog_dir().to_owned(),
            vm: uuid,
            serial_log_bytes: self.run.serial_log_bytes,
            accel,
            spice: spice.clone(),
            zone,
        };
        fsutil::write_atomic(
            run.path(),
            "launch.json",
            &serde_json::to_vec_pretty(&file).map_err(|e| Error::Internal(e.to_string()))?,
        )?;
        r.state = State::Starting;
        r.run = None;
        self.catalog.put_vm(&r)?;
        crate::fail_point!("vm_start.starting");
        match spawn_supervisor(&run) {
            Ok((supervisor_pid, qemu_pid, qemu_start)) => {
                crate::fail_point!("vm_start.spawned");
                r.state = if incoming {
                    State::Paused
                } else {
                    State::Running
                };
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
                r.state = State::Failed;
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

    /// The VM's uid, chosen once (the lowest of the store's range no VM has) and kept in its
    /// record.
    pub(crate) fn ensure_uid(&self, r: &mut VmRecord) -> Result<u32> {
        if let Some(u) = r.uid {
            return Ok(u);
        }
        // One uid per VM: the lowest of the store's range that no VM has.
        fsutil::mkdirs(&self.catalog_dir().join("run"))?;
        let _l = lock::lock(
            &self.catalog_dir().join("run").join(".uids.lock"),
            Mode::Exclusive,
        )?;
        let used: std::collections::BTreeSet<u32> = self
            .catalog
            .vms(None)?
            .iter()
            .filter_map(|v| v.uid)
            .collect();
        let base = self.run.uid_base;
        let uid = (base..base.saturating_add(self.run.uid_count))
            .find(|u| !used.contains(u))
            .ok_or_else(|| {
                Error::Busy(format!(
                    "all {} uids from {base} are taken; raise the store's uid_count",
                    self.run.uid_count
                ))
            })?;
        r.uid = Some(uid);
        self.catalog.put_vm(r)?;
        Ok(uid)
    }

    /// The zone of a VM about to start: its uid (chosen once, kept in the record), its limits,
    /// and what it may see and write.
    fn zone_spec(
        &self,
        r: &mut VmRecord,
        run: &RunDir,
        launch: &Launch,
        template_dir: Option<&Path>,
    ) -> Result<ZoneSpec> {
        let uid = self.ensure_uid(r)?;
        let mut writable = vec![run.qemu_dir()];
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
        if let Some(dir) = template_dir {
            writable.push(dir.to_owned());
        }
        let mut readable = Vec::new();
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
        if let (None, Some(rs)) = (template_dir, &r.restore) {
            readable.push(rs.memory.clone());
            readable.push(rs.state.clone());
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

    /// A port of `ports` that no running VM of this store has and that can be bound now.
    fn free_port(&self, addr: std::net::IpAddr, ports: (u16, u16)) -> Result<u16> {
        let taken: Vec<u16> = self
            .catalog
            .vms(None)?
            .iter()
            .filter_map(|r| match r.run.as_ref().map(|x| &x.spice) {
                Some(SpiceAddr::Tcp { port, .. }) if self.live(r).state.is_active() => Some(*port),
                _ => None,
            })
            .collect();
        (ports.0..=ports.1)
            .filter(|p| !taken.contains(p))
            .find(|p| std::net::TcpListener::bind((addr, *p)).is_ok())
            .ok_or_else(|| {
                Error::Busy(format!(
                    "no free SPICE port in {}-{} on {addr}",
                    ports.0, ports.1
                ))
            })
    }

    /// Wait until the run ended: the supervisor is gone (it recorded how) and QEMU too.
    fn wait_for_end(&self, run: &RunDir, info: Option<&RunInfo>, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let sup = runtime::lock_held(&run.supervisor_lock()).unwrap_or(true);
            let qemu = info.is_some_and(|i| runtime::alive(i.qemu_pid, i.qemu_start));
            if !sup && !qemu {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Shut a VM down: ACPI power button, then, if the guest has not powered off within
    /// `timeout`, kill QEMU. A VM that does not run is left as it is (no error).
    pub fn stop_vm(&self, uuid: Uuid, timeout: Duration) -> Result<Vm> {
        let run = self.run_dir(&uuid);
        let info = {
            let _lc = self.lifecycle_lock(&run)?;
            let mut r = self.record(&uuid)?;
            let (live, _) = self.live_state(&r, &run, true);
            if !live.is_active() {
                return Ok(self.live(&r));
            }
            std::fs::write(run.path().join(INTENT), "stop")
                .ctx(|| format!("writing {}", run.path().join(INTENT).display()))?;
            r.state = State::Stopping;
            self.catalog.put_vm(&r)?;
            crate::fail_point!("vm_stop.stopping");
            // A paused guest cannot see the power button.
            if let Ok(mut q) = self.qmp(&uuid, &run) {
                if live == State::Paused {
                    let _ = q.execute("cont", None, QMP_TIMEOUT);
                }
                let _ = q.execute("system_powerdown", None, QMP_TIMEOUT);
            }
            self.run_info(&r, &run)
        };
        if !self.wait_for_end(&run, info.as_ref(), timeout) {
            self.kill_qemu(&uuid, &run, info.as_ref(), "stop")?;
        }
        self.finish_unsupervised(&uuid, &run, "stopped on request")?;
        self.vm(uuid)
    }

    /// End a pool's template-build VM by saving it: pause its CPUs, write its device state to
    /// `state` (its RAM is already in the shared memory file), and quit QEMU. Its disk then
    /// holds what the guest had written at that same instant. Returns once QEMU has ended.
    pub(crate) fn save_template(&self, uuid: Uuid, state: &Path) -> Result<()> {
        let run = self.run_dir(&uuid);
        let info = {
            let _lc = self.lifecycle_lock(&run)?;
            let (mut r, _) =
                self.running(&uuid, &run, &[State::Running, State::Paused], "saving")?;
            let mut q = self.qmp(&uuid, &run)?;
            q.execute("stop", None, QMP_TIMEOUT)
                .map_err(|e| qmp_error(&uuid, "stop", e))?;
            q.execute(
                "migrate-set-capabilities",
                Some(serde_json::json!({"capabilities": [
                    {"capability": "x-ignore-shared", "state": true}]})),
                QMP_TIMEOUT,
            )
            .map_err(|e| qmp_error(&uuid, "migrate-set-capabilities", e))?;
            q.execute(
                "migrate",
                Some(serde_json::json!({"uri": format!("file:{},offset=0", state.display())})),
                QMP_TIMEOUT,
            )
            .map_err(|e| qmp_error(&uuid, "migrate", e))?;
            wait_migration(&uuid, &mut q, "saving the template's state")?;
            std::fs::write(run.path().join(INTENT), "stop")
                .ctx(|| format!("writing {}", run.path().join(INTENT).display()))?;
            r.state = State::Stopping;
            self.catalog.put_vm(&r)?;
            // `quit` closes the disk cleanly (flushed); the guest's CPUs stay stopped.
            let _ = q.execute("quit", None, QMP_TIMEOUT);
            self.run_info(&r, &run)
        };
        if !self.wait_for_end(&run, info.as_ref(), REAP_TIMEOUT) {
            self.kill_qemu(&uuid, &run, info.as_ref(), "stop")?;
        }
        self.finish_unsupervised(&uuid, &run, "stopped after saving its memory template")
    }

    /// Kill QEMU at once (SIGKILL), as pulling the plug. A VM that does not run is left as
    /// it is.
    pub fn kill_vm(&self, uuid: Uuid) -> Result<Vm> {
        let run = self.run_dir(&uuid);
        let info = {
            let _lc = self.lifecycle_lock(&run)?;
            let mut r = self.record(&uuid)?;
            let (live, _) = self.live_state(&r, &run, true);
            if !live.is_active() {
                return Ok(self.live(&r));
            }
            r.state = State::Stopping;
            self.catalog.put_vm(&r)?;
            self.run_info(&r, &run)
        };
        self.kill_qemu(&uuid, &run, info.as_ref(), "kill")?;
        self.finish_unsupervised(&uuid, &run, "killed on request")?;
        self.vm(uuid)
    }

    fn kill_qemu(
        &self,
        uuid: &Uuid,
        run: &RunDir,
        info: Option<&RunInfo>,
        intent: &str,
    ) -> Result<()> {
        {
            let _lc = self.lifecycle_lock(run)?;
            std::fs::write(run.path().join(INTENT), intent)
                .ctx(|| format!("writing {}", run.path().join(INTENT).display()))?;
            if let Some(i) = info {
                if runtime::alive(i.qemu_pid, i.qemu_start) {
                    // SAFETY: kill() has no memory-safety preconditions; the pid was checked
                    // to be this VM's QEMU (pid and start time) just now.
                    unsafe { libc::kill(i.qemu_pid as i32, libc::SIGKILL) };
                }
            }
        }
        if self.wait_for_end(run, info, REAP_TIMEOUT) {
            Ok(())
        } else {
            Err(Error::Timeout(format!(
                "VM {uuid}: QEMU or its supervisor did not end within {REAP_TIMEOUT:?} of SIGKILL"
            )))
        }
    }

    /// After a run ended: if no supervisor recorded it (it had died first), record it here.
    fn finish_unsupervised(&self, uuid: &Uuid, run: &RunDir, reason: &str) -> Result<()> {
        let _lc = self.lifecycle_lock(run)?;
        let mut r = self.record(uuid)?;
        if r.state.is_active() && !runtime::lock_held(&run.supervisor_lock())? {
            r.state = State::Stopped;
            r.run = None;
            r.last_exit = Some(LastExit {
                at: crate::now_rfc3339(),
                clean: true,
                reason: reason.into(),
                signal: None,
                status: None,
            });
            self.catalog.put_vm(&r)?;
            run.clean_after_run();
            let _ = std::fs::remove_file(run.path().join(INTENT));
        }
        Ok(())
    }

    /// The running VM, under its lifecycle lock, or `INVALID_STATE` naming its state.
    fn running(
        &self,
        uuid: &Uuid,
        run: &RunDir,
        allowed: &[State],
        what: &str,
    ) -> Result<(VmRecord, State)> {
        let r = self.record(uuid)?;
        let (live, _) = self.live_state(&r, run, true);
        if !allowed.contains(&live) {
            return Err(Error::InvalidState(format!(
                "VM {uuid} is {}; {what} needs it {}",
                live.as_str(),
                allowed
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" or ")
            )));
        }
        Ok((r, live))
    }

    /// Reset the VM (as the reset button: the guest reboots at once, the QEMU process stays).
    pub fn reboot_vm(&self, uuid: Uuid) -> Result<Vm> {
        let run = self.run_dir(&uuid);
        let _lc = self.lifecycle_lock(&run)?;
        let (r, _) = self.running(&uuid, &run, &[State::Running, State::Paused], "reboot")?;
        self.qmp_call(&uuid, &run, "system_reset", None)?;
        Ok(self.live(&r))
    }

    /// Pause the guest's CPUs (memory stays; `resume` continues where it was).
    pub fn pause_vm(&self, uuid: Uuid) -> Result<Vm> {
        self.pause_vm_if(uuid, |_| true).map(|(vm, _)| vm)
    }

    /// `pause_vm`, only if the record (read under the VM's lifecycle lock) passes `cond`;
    /// whether it was paused. A pool pauses a warmed spare this way, never a VM that was
    /// handed to an owner meanwhile.
    pub(crate) fn pause_vm_if(
        &self,
        uuid: Uuid,
        cond: impl FnOnce(&VmRecord) -> bool,
    ) -> Result<(Vm, bool)> {
        let run = self.run_dir(&uuid);
        let _lc = self.lifecycle_lock(&run)?;
        let (mut r, live) = self.running(&uuid, &run, &[State::Running, State::Paused], "pause")?;
        if !cond(&r) {
            return Ok((self.live(&r), false));
        }
        if live == State::Running {
            self.qmp_call(&uuid, &run, "stop", None)?;
            r.state = State::Paused;
            self.catalog.put_vm(&r)?;
        }
        Ok((self.live(&r), true))
    }

    /// Continue a paused guest. A clone of a memory template whose QEMU waits for the
    /// template's state gets it first: the guest goes on from where the template was paused.
    pub fn resume_vm(&self, uuid: Uuid) -> Result<Vm> {
        let run = self.run_dir(&uuid);
        let _lc = self.lifecycle_lock(&run)?;
        let (mut r, live) =
            self.running(&uuid, &run, &[State::Running, State::Paused], "resume")?;
        if live != State::Paused {
            return Ok(self.live(&r));
        }
        let mut q = self.qmp(&uuid, &run)?;
        let restored = match &r.restore {
            Some(rs) => self.restore_state(&uuid, &mut q, rs)?,
            None => false,
        };
        // Recorded before the guest runs: from `cont` on, its disk moves on from the
        // template's, and a later start must boot it rather than load the template again.
        r.restore = None;
        r.state = State::Running;
        self.catalog.put_vm(&r)?;
        if let Err(e) = q.execute("cont", None, QMP_TIMEOUT) {
            r.state = State::Paused;
            self.catalog.put_vm(&r)?;
            return Err(qmp_error(&uuid, "cont", e));
        }
        if restored {
            let mac = r.mac.clone().unwrap_or_else(|| crate::vm::mac_for(&uuid));
            for (cmd, args) in qemu::nic_hotplug(&mac) {
                q.execute(cmd, Some(args), QMP_TIMEOUT)
                    .map_err(|e| qmp_error(&uuid, cmd, e))?;
            }
        }
        Ok(self.live(&r))
    }

    /// Load a memory template's device state into a QEMU waiting for it (`-incoming defer`,
    /// `-S`). Returns whether it loaded it now (`false`: it already had, before a crash).
    fn restore_state(
        &self,
        uuid: &Uuid,
        q: &mut Qmp,
        rs: &super::catalog::records::Restore,
    ) -> Result<bool> {
        let status = q
            .execute("query-status", None, QMP_TIMEOUT)
            .map_err(|e| qmp_error(uuid, "query-status", e))?;
        if status.get("status").and_then(|s| s.as_str()) != Some("inmigrate") {
            return Ok(false);
        }
        q.execute(
            "migrate-set-capabilities",
            Some(serde_json::json!({"capabilities": [
                {"capability": "x-ignore-shared", "state": true}]})),
            QMP_TIMEOUT,
        )
        .map_err(|e| qmp_error(uuid, "migrate-set-capabilities", e))?;
        q.execute(
            "migrate-incoming",
            Some(serde_json::json!({"uri": format!("file:{},offset=0", rs.state.display())})),
            QMP_TIMEOUT,
        )
        .map_err(|e| qmp_error(uuid, "migrate-incoming", e))?;
        wait_migration(uuid, q, "loading the template's state")?;
        Ok(true)
    }

    /// The VM with its live state, and its run.
    pub fn vm_status(&self, uuid: Uuid) -> Result<VmStatus> {
        let r = self.record(&uuid)?;
        let vm = self.live(&r);
        let run = if vm.state.is_active() {
            self.run_info(&r, &self.run_dir(&uuid))
        } else {
            None
        };
        let uptime_s = run.as_ref().and_then(|i| {
            humantime::parse_rfc3339(&i.started_at)
                .ok()
                .and_then(|t| t.elapsed().ok())
                .map(|d| d.as_secs())
        });
        Ok(VmStatus {
            vm,
            run,
            uptime_s,
            serial_log: self.run_dir(&uuid).serial_log(),
        })
    }

    /// Change a stopped VM's CPUs, memory or disk size (the disk only grows).
    pub fn update_vm(&self, uuid: Uuid, u: &VmUpdate) -> Result<Vm> {
        let run = self.run_dir(&uuid);
        let _lc = self.lifecycle_lock(&run)?;
        let mut r = self.record(&uuid)?;
        let (live, _) = self.live_state(&r, &run, true);
        if live.is_active() {
            return Err(Error::InvalidState(format!(
                "VM {uuid} is {}; stop it before changing its CPUs, memory or disk",
                live.as_str()
            )));
        }
        if let Some(v) = u.vcpus {
            r.vcpus = self.limits.vcpus(u64::from(v))?;
        }
        if let Some(m) = u.ram_mib {
            r.ram_mib = self.limits.ram_mib(m)?;
        }
        if let Some(g) = u.disk_gib {
            let g = self.limits.disk_gib(g)?;
            let bytes = crate::vm::gib_to_bytes(g)?;
            if bytes < r.disk_size_bytes {
                return Err(Error::invalid(format!(
                    "disk_gib {g} is smaller than VM {uuid}'s disk ({} bytes); disks never shrink",
                    r.disk_size_bytes
                )));
            }
            if bytes > r.disk_size_bytes {
                r.disk_size_bytes =
                    self.driver
                        .vm_grow(&uuid, &r.disk_path, r.disk_format, bytes)?;
                r.disk_gib = g;
            }
        }
        self.catalog.put_vm(&r)?;
        Ok(self.live(&r))
    }

    /// The end of the VM's serial console log, at most `max_bytes` (the log is rotated at
    /// the store's `serial_log_kib`; the previous part is included when needed).
    pub fn vm_log(&self, uuid: Uuid, max_bytes: u64) -> Result<Vec<u8>> {
        self.record(&uuid)?;
        let run = self.run_dir(&uuid);
        let mut out = Vec::new();
        for p in [run.serial_log_old(), run.serial_log()] {
            if let Some(b) = fsutil::read_if_exists(&p)? {
                out.extend(b);
            }
        }
        let max = usize::try_from(max_bytes).unwrap_or(usize::MAX);
        if out.len() > max {
            out.drain(..out.len() - max);
        }
        Ok(out)
    }

    /// A console ticket valid for `ttl`: a new random SPICE password, set with QMP and made
    /// to expire; the previous ticket stops working.
    pub fn console(&self, uuid: Uuid, ttl: Duration) -> Result<Console> {
        if ttl < console::TTL_MIN || ttl > console::TTL_MAX {
            return Err(Error::invalid(format!(
                "console ttl of {} s is out of range {}..={} s",
                ttl.as_secs(),
                console::TTL_MIN.as_secs(),
                console::TTL_MAX.as_secs()
            )));
        }
        let run = self.run_dir(&uuid);
        let r = self.record(&uuid)?;
        let (live, _) = self.live_state(&r, &run, false);
        let info = match (self.run_info(&r, &run), live) {
            (Some(i), State::Running | State::Paused | State::Starting) => i,
            _ => {
                return Err(Error::InvalidState(format!(
                    "VM {uuid} is {}; a console needs it running",
                    live.as_str()
                )))
            }
        };
        let password = console::new_password();
        let mut q = self.qmp(&uuid, &run)?;
        q.execute(
            "set_password",
            Some(serde_json::json!({"protocol": "spice", "password": password})),
            QMP_TIMEOUT,
        )
        .map_err(|e| qmp_error(&uuid, "set_password", e))?;
        q.execute(
            "expire_password",
            Some(serde_json::json!({"protocol": "spice", "time": format!("+{}", ttl.as_secs())})),
            QMP_TIMEOUT,
        )
        .map_err(|e| qmp_error(&uuid, "expire_password", e))?;
        let expires = std::time::SystemTime::now() + ttl;
        Ok(Console {
            uri: console::uri(&info.spice),
            vv: console::vv_file(&info.spice, &password, &r.alias),
            addr: info.spice,
            password,
            expires_at: humantime::format_rfc3339_seconds(expires).to_string(),
            expires_at_unix: expires
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        })
    }

    /// Save the VM's screen as a PNG file at `dest` (QMP `screendump`).
    pub fn screenshot(&self, uuid: Uuid, dest: &Path) -> Result<()> {
        let run = self.run_dir(&uuid);
        let r = self.record(&uuid)?;
        let (live, _) = self.live_state(&r, &run, false);
        if !matches!(live, State::Running | State::Paused) {
            return Err(Error::InvalidState(format!(
                "VM {uuid} is {}; a screenshot needs it running",
                live.as_str()
            )));
        }
        // QEMU may write only in its own directory: dump there, then copy.
        let tmp = run
            .qemu_dir()
            .join(format!(".screen-{}.png", fsutil::token()));
        let res = self
            .qmp_call(
                &uuid,
                &run,
                "screendump",
                Some(serde_json::json!({"filename": tmp, "format": "png"})),
            )
            .and_then(|_| {
                std::fs::copy(&tmp, dest)
                    .map(drop)
                    .ctx(|| format!("copying the screenshot to {}", dest.display()))
            });
        let _ = std::fs::remove_file(&tmp);
        res
    }

    /// Stop a VM that runs (for delete): ACPI, then kill after `timeout`.
    pub(crate) fn ensure_stopped(&self, uuid: Uuid, timeout: Duration) -> Result<()> {
        let r = self.record(&uuid)?;
        if self.live(&r).state.is_active() {
            self.stop_vm(uuid, timeout)?;
        }
        Ok(())
    }
}

/// Poll `query-migrate` until the migration completed (or failed: its error).
pub(crate) fn wait_migration(uuid: &Uuid, q: &mut Qmp, what: &str) -> Result<()> {
    let deadline = Instant::now() + MIGRATION_TIMEOUT;
    let mut pause = Duration::from_micros(200);
    loop {
        let m = q
            .execute("query-migrate", None, QMP_TIMEOUT)
            .map_err(|e| qmp_error(uuid, "query-migrate", e))?;
        match m.get("status").and_then(|s| s.as_str()) {
            Some("completed") => return Ok(()),
            Some("failed") | Some("cancelled") => {
                return Err(Error::Hypervisor(format!(
                    "VM {uuid}: {what} failed: {}",
                    m.get("error-desc")
                        .and_then(|e| e.as_str())
                        .unwrap_or("QEMU gave no reason")
                )))
            }
            _ if Instant::now() > deadline => {
                return Err(Error::Timeout(format!(
                    "VM {uuid}: {what} did not finish within {MIGRATION_TIMEOUT:?}"
                )))
            }
            _ => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
        }
    }
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

/// Run the supervisor and wait for its one-line report.
fn spawn_supervisor(run: &RunDir) -> Result<(u32, u32, u64)> {
    let bin = supervisor::binary()?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(run.supervisor_log())
        .ctx(|| format!("opening {}", run.supervisor_log().display()))?;
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
