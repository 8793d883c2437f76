//! Running VMs (vmadm's start, stop, kill, reboot; Proxmox's pause, resume, console): each VM
//! runs as a QEMU process under its own supervisor (`vm::supervisor`), detached from the
//! caller, controllable by any process that opens the store.
//!
//! Every state transition takes the VM's lifecycle lock (`run/<uuid>/lock`, an `flock`) and
//! writes the record atomically; no call waits for QEMU or the supervisor while holding it,
//! so the supervisor can always record how a run ended. Two starts of one VM at once: the
//! second finds it running and gets `ALREADY_RUNNING`; no VM ever has two QEMU processes
//! (the supervisor's own lock also forbids it).

use crate::error::{Error, Result};
use crate::lock::{self, Mode};
use crate::store::catalog::records::VmRecord;
use crate::store::Store;
use crate::vm::qemu::{self};
use crate::vm::qmp::{Qmp, QmpError, RunStatus};
use crate::vm::runtime::{self, RunDir, RunInfo};
use crate::vm::state;
use crate::vm::supervisor::{self, write_intent, Intent};
use crate::vm::{LastExit, Op, State, Vm};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How long connecting to QEMU's monitor may take (it serves one client at a time).
pub(crate) const QMP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long to wait for the supervisor to record a run's end after QEMU was killed.
pub(crate) const REAP_TIMEOUT: Duration = Duration::from_secs(15);

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

pub(crate) fn qmp_error(vm: &Uuid, what: &str, e: QmpError) -> Error {
    Error::Qmp {
        vm: *vm,
        what: what.to_owned(),
        source: e,
    }
}

/// What the host says about a VM, for [`state::live`]. An error reading a lock counts as
/// held: a VM is never declared gone on a doubt.
struct HostEvidence<'a> {
    store: &'a Store,
    r: &'a VmRecord,
    run: &'a RunDir,
    /// The caller holds the lifecycle lock itself (so a held lock says nothing).
    locked: bool,
}

impl state::Evidence for HostEvidence<'_> {
    fn supervised(&self) -> bool {
        runtime::lock_held(&self.run.supervisor_lock()).unwrap_or(true)
    }
    fn started(&self) -> bool {
        self.store.run_info(self.r, self.run).is_some()
    }
    fn changing(&self) -> bool {
        !self.locked && runtime::lock_held(&self.run.lock()).unwrap_or(true)
    }
    fn qemu_alive(&self) -> bool {
        self.r
            .run
            .as_ref()
            .is_some_and(|i| runtime::alive(i.qemu_pid, i.qemu_start))
    }
}

impl Store {
    pub(crate) fn run_dir(&self, vm: &Uuid) -> RunDir {
        RunDir::new(self.catalog_dir(), &self.sockets_root(), vm)
    }

    /// The state a record's VM really is in, and how its last run ended. `locked`: the
    /// caller holds the VM's lifecycle lock (so a held lock says nothing).
    ///
    /// The record says what vmpool last did; the supervisor's lock and QEMU's process say
    /// what is. A start whose caller died is `running` if its supervisor came up (its
    /// `run.json` says so), `stopped` if nothing was started; a run whose supervisor and
    /// QEMU are gone without a word is `failed`.
    pub(crate) fn live_state(
        &self,
        r: &VmRecord,
        run: &RunDir,
        locked: bool,
    ) -> (State, Option<LastExit>) {
        let ev = HostEvidence {
            store: self,
            r,
            run,
            locked,
        };
        let waits = r.restore.is_some() || r.suspended.is_some();
        if let Some(s) = state::live(r.state, waits, &ev) {
            return (s, r.last_exit.clone());
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
    pub(crate) fn run_info(&self, r: &VmRecord, run: &RunDir) -> Option<RunInfo> {
        r.run.clone().or_else(|| written_run_info(run))
    }

    /// A record as callers see it: with its live state.
    pub(crate) fn live(&self, r: &VmRecord) -> Vm {
        let mut vm = Vm::from(r);
        let (state, last_exit) = self.live_state(r, &self.run_dir(&r.uuid), false);
        vm.state = state;
        vm.last_exit = last_exit;
        vm
    }

    pub(crate) fn record(&self, uuid: &Uuid) -> Result<VmRecord> {
        self.catalog
            .vm(uuid)?
            .ok_or_else(|| Error::not_found("VM", uuid.to_string()))
    }

    pub(crate) fn lifecycle_lock(&self, run: &RunDir) -> Result<lock::Held> {
        run.ensure()?;
        lock::lock(&run.lock(), Mode::Exclusive)
    }

    /// A connection to the VM's QMP socket, through the checked descriptor of its sockets
    /// directory (`safe_fs`): a socket of ours (the supervisor's), never a link.
    pub(crate) fn qmp(&self, vm: &Uuid, run: &RunDir) -> Result<Qmp> {
        self.qmp_within(vm, run, QMP_TIMEOUT)
    }

    /// [`Store::qmp`] with its handshake bounded by `timeout`.
    pub(crate) fn qmp_within(&self, vm: &Uuid, run: &RunDir, timeout: Duration) -> Result<Qmp> {
        let dir = run.open_sockets()?.ok_or_else(|| {
            Error::InvalidState(format!("VM {vm} has no monitor socket (it does not run)"))
        })?;
        let stream = dir.connect(
            runtime::names::QMP_SOCKET,
            Some(crate::safe_fs::TrustRule::current().owner),
        )?;
        Qmp::from_stream(stream, timeout, &format!("VM {vm}'s QMP socket"))
            .map_err(|e| qmp_error(vm, "the connection", e))
    }

    /// Where the VM's QMP socket is while it runs (in its sockets directory, root's). For
    /// tools and tests that talk to QEMU themselves; vmpool's own calls go through
    /// [`Store::qmp`]'s checked descriptor.
    #[doc(hidden)]
    pub fn qmp_socket_path(&self, vm: Uuid) -> PathBuf {
        self.run_dir(&vm).qmp()
    }

    /// Run `f` (typed QMP commands, `what` for errors) on a new connection to the VM.
    pub(crate) fn with_qmp<T>(
        &self,
        vm: &Uuid,
        run: &RunDir,
        what: &str,
        f: impl FnOnce(&mut Qmp) -> std::result::Result<T, QmpError>,
    ) -> Result<T> {
        let mut q = self.qmp(vm, run)?;
        f(&mut q).map_err(|e| qmp_error(vm, what, e))
    }

    /// Wait until the run ended: the supervisor is gone (it recorded how) and QEMU too.
    pub(crate) fn wait_for_end(
        &self,
        run: &RunDir,
        info: Option<&RunInfo>,
        timeout: Duration,
    ) -> bool {
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
    /// The VM is no longer marked to run (`host start` leaves it).
    pub fn stop_vm(&self, uuid: Uuid, timeout: Duration) -> Result<Vm> {
        crate::probes::op("vm-stop", uuid, || self.stop_vm_op(uuid, timeout))
    }

    fn stop_vm_op(&self, uuid: Uuid, timeout: Duration) -> Result<Vm> {
        let run = self.run_dir(&uuid);
        let info = {
            let _lc = self.lifecycle_lock(&run)?;
            self.settle_suspend_locked(&uuid, &run)?;
            let mut r = self.record(&uuid)?;
            self.unmark_autoboot(&mut r)?;
            let (live, _) = self.live_state(&r, &run, true);
            if live == State::Suspended {
                self.discard_saved(&mut r, &run, "stopped while suspended")?;
            }
            if !live.is_active() {
                return Ok(self.live(&r));
            }
            write_intent(&run.open()?, Intent::Stop)?;
            r.state = live.to(State::Stopping, &uuid)?;
            self.catalog.put_vm(&r)?;
            crate::fail_point!("vm_stop.stopping");
            // A paused guest cannot see the power button.
            if let Ok(mut q) = self.qmp(&uuid, &run) {
                if live == State::Paused {
                    let _ = q.cont();
                }
                let _ = q.system_powerdown();
            }
            self.run_info(&r, &run)
        };
        self.end_run(
            uuid,
            &run,
            info,
            timeout,
            Intent::Stop,
            "stopped on request",
        )
    }

    /// The end of a run that was asked to end (with `intent`, after `why`): wait up to
    /// `timeout` for QEMU and its supervisor to go, kill QEMU if they have not, and record the
    /// end if the supervisor could not. The VM as it is then.
    pub(crate) fn end_run(
        &self,
        uuid: Uuid,
        run: &RunDir,
        info: Option<RunInfo>,
        timeout: Duration,
        intent: Intent,
        why: &str,
    ) -> Result<Vm> {
        if !self.wait_for_end(run, info.as_ref(), timeout) {
            self.kill_qemu(&uuid, run, info.as_ref(), intent)?;
        }
        self.finish_unsupervised(&uuid, run, why)?;
        self.vm(uuid)
    }

    /// Kill QEMU at once (SIGKILL), as pulling the plug. A VM that does not run is left as
    /// it is. The VM is no longer marked to run (`host start` leaves it).
    pub fn kill_vm(&self, uuid: Uuid) -> Result<Vm> {
        crate::probes::op("vm-kill", uuid, || self.kill_vm_op(uuid))
    }

    fn kill_vm_op(&self, uuid: Uuid) -> Result<Vm> {
        self.kill_vm_if(uuid, true, |_| true)?
            .ok_or_else(|| Error::Internal(format!("VM {uuid}: no kill")))
    }

    /// `kill_vm`, only if `cond`, asked under the VM's lifecycle lock, holds (`None` if
    /// not). `asked`: the caller's own kill, which unmarks the VM and throws a suspended
    /// VM's saved state away; vmpool's own (a host stop's) does neither, so the next host
    /// start boots it, and a suspended VM stays as it is.
    pub(crate) fn kill_vm_if(
        &self,
        uuid: Uuid,
        asked: bool,
        cond: impl FnOnce(&VmRecord) -> bool,
    ) -> Result<Option<Vm>> {
        let run = self.run_dir(&uuid);
        let info = {
            let _lc = self.lifecycle_lock(&run)?;
            self.settle_suspend_locked(&uuid, &run)?;
            let mut r = self.record(&uuid)?;
            if !cond(&r) {
                return Ok(None);
            }
            if asked {
                self.unmark_autoboot(&mut r)?;
            }
            let (live, _) = self.live_state(&r, &run, true);
            if live == State::Suspended && asked {
                self.discard_saved(&mut r, &run, "killed while suspended")?;
            }
            if !live.is_active() {
                return Ok(Some(self.live(&r)));
            }
            r.state = live.to(State::Stopping, &uuid)?;
            self.catalog.put_vm(&r)?;
            self.run_info(&r, &run)
        };
        self.kill_qemu(&uuid, &run, info.as_ref(), Intent::Kill)?;
        self.finish_unsupervised(&uuid, &run, "killed on request")?;
        self.vm(uuid).map(Some)
    }

    pub(crate) fn kill_qemu(
        &self,
        uuid: &Uuid,
        run: &RunDir,
        info: Option<&RunInfo>,
        intent: Intent,
    ) -> Result<()> {
        let info = {
            let _lc = self.lifecycle_lock(run)?;
            self.kill_qemu_locked(run, info, intent)?
        };
        if self.wait_for_end(run, info.as_ref(), REAP_TIMEOUT) {
            Ok(())
        } else {
            Err(Error::Timeout(format!(
                "VM {uuid}: QEMU or its supervisor did not end within {REAP_TIMEOUT:?} of SIGKILL"
            )))
        }
    }

    /// Write `intent` and SIGKILL the run's QEMU if it is still that process (pid and start
    /// time), under the VM's lifecycle lock, which the caller holds; the supervisor records
    /// the end once the lock is free. Returns the run's facts as last seen.
    ///
    /// A start whose caller died leaves its supervisor starting QEMU with nobody to record
    /// the run: its facts appear in `run.json` only once QEMU's monitor answers. So unless
    /// the facts given are of a live QEMU, they are looked for again *after* the intent is
    /// written; a supervisor that writes them later reads the intent after writing them and
    /// ends QEMU itself (`supervise`). One of the two always sees the other's write.
    pub(crate) fn kill_qemu_locked(
        &self,
        run: &RunDir,
        info: Option<&RunInfo>,
        intent: Intent,
    ) -> Result<Option<RunInfo>> {
        write_intent(&run.open()?, intent)?;
        let live = |i: &&RunInfo| runtime::alive(i.qemu_pid, i.qemu_start);
        let info = match info.filter(live) {
            Some(i) => Some(i.clone()),
            None => written_run_info(run).or_else(|| info.cloned()),
        };
        if let Some(i) = info.as_ref().filter(live) {
            // SAFETY: kill() has no memory-safety preconditions; the pid was checked to be
            // this VM's QEMU (pid and start time) just now.
            unsafe { libc::kill(i.qemu_pid as i32, libc::SIGKILL) };
        }
        Ok(info)
    }

    /// A stop or kill asked for: the record no longer says the VM is to run. Its session's
    /// end stays: a start before it goes on with the same session (a stop and start is no
    /// way around a pool's limit).
    fn unmark_autoboot(&self, r: &mut VmRecord) -> Result<()> {
        if r.autoboot {
            r.autoboot = false;
            self.catalog.put_vm(r)?;
        }
        Ok(())
    }

    /// Mark the VM to run, taking its lifecycle lock (a desktop handed out).
    /// `session_ends_at`: `Some` sets when the owner's session ends (a session starts).
    pub(crate) fn mark_to_run(
        &self,
        uuid: &Uuid,
        session_ends_at: Option<Option<String>>,
    ) -> Result<VmRecord> {
        let _lc = self.lifecycle_lock(&self.run_dir(uuid))?;
        let mut r = self.record(uuid)?;
        let ends = session_ends_at.unwrap_or_else(|| r.session_ends_at.clone());
        if !r.autoboot || r.session_ends_at != ends {
            r.autoboot = true;
            r.session_ends_at = ends;
            self.catalog.put_vm(&r)?;
        }
        Ok(r)
    }

    /// Mark the VM to run (a start or wake asked for), under its lifecycle lock.
    pub(crate) fn mark_autoboot(&self, uuid: &Uuid) -> Result<()> {
        let mut r = self.record(uuid)?;
        if !r.autoboot {
            r.autoboot = true;
            self.catalog.put_vm(&r)?;
        }
        Ok(())
    }

    /// After a run ended: if no supervisor recorded it (it had died first), record it here.
    pub(crate) fn finish_unsupervised(
        &self,
        uuid: &Uuid,
        run: &RunDir,
        reason: &str,
    ) -> Result<()> {
        let _lc = self.lifecycle_lock(run)?;
        let mut r = self.record(uuid)?;
        if r.state.is_active() && !runtime::lock_held(&run.supervisor_lock())? {
            let dir = run.open()?;
            let intent = crate::vm::supervisor::read_intent(&dir);
            if crate::vm::suspend::ends_suspended(&dir, &r, intent) {
                return self.mark_suspended(&mut r, run);
            }
            r.state = r.state.to(State::Stopped, uuid)?;
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
        }
        Ok(())
    }

    /// The running VM, under its lifecycle lock, or `INVALID_STATE` naming its state.
    pub(crate) fn running(&self, uuid: &Uuid, run: &RunDir, op: Op) -> Result<(VmRecord, State)> {
        let r = self.record(uuid)?;
        let (live, _) = self.live_state(&r, run, true);
        op.check(uuid, live)?;
        Ok((r, live))
    }

    /// Reset the VM (as the reset button: the guest reboots at once, the QEMU process stays).
    pub fn reboot_vm(&self, uuid: Uuid) -> Result<Vm> {
        let run = self.run_dir(&uuid);
        let _lc = self.lifecycle_lock(&run)?;
        let (r, _) = self.running(&uuid, &run, Op::Reboot)?;
        self.with_qmp(&uuid, &run, "system_reset", |q| q.system_reset())?;
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
        let (mut r, live) = self.running(&uuid, &run, Op::Pause)?;
        if !cond(&r) {
            return Ok((self.live(&r), false));
        }
        if live == State::Running {
            self.with_qmp(&uuid, &run, "stop", |q| q.stop())?;
            r.state = live.to(State::Paused, &uuid)?;
            self.catalog.put_vm(&r)?;
        }
        Ok((self.live(&r), true))
    }

    /// Continue a paused guest. A clone of a memory template whose QEMU waits for the
    /// template's state gets it first: the guest goes on from where the template was paused.
    /// A suspended VM (or one whose QEMU waits for its saved state) wakes the same way.
    pub fn resume_vm(&self, uuid: Uuid) -> Result<Vm> {
        crate::probes::op("vm-resume", uuid, || self.resume_vm_op(uuid))
    }

    fn resume_vm_op(&self, uuid: Uuid) -> Result<Vm> {
        let run = self.run_dir(&uuid);
        let _lc = self.lifecycle_lock(&run)?;
        self.settle_suspend_locked(&uuid, &run)?;
        let r = self.record(&uuid)?;
        if self.live_state(&r, &run, true).0 == State::Suspended {
            self.start_locked(uuid, &run, &Default::default(), None)?;
        }
        let vm = self.resume_locked(uuid, &run)?;
        self.mark_autoboot(&uuid)?;
        Ok(Vm {
            autoboot: true,
            ..vm
        })
    }

    /// `resume_vm` under the VM's lifecycle lock, which the caller holds.
    pub(crate) fn resume_locked(&self, uuid: Uuid, run: &RunDir) -> Result<Vm> {
        let run = run.clone();
        let (mut r, live) = self.running(&uuid, &run, Op::Resume)?;
        if live != State::Paused {
            return Ok(self.live(&r));
        }
        let mut q = self.qmp(&uuid, &run)?;
        if r.suspended.is_some() {
            self.load_suspended(&r, &mut q)?;
        }
        let restored = match &r.restore {
            Some(rs) => self.restore_state(&uuid, &mut q, rs)?,
            None => false,
        };
        // Recorded before the guest runs: from `cont` on, its disk moves on from the
        // template's, and a later start must boot it rather than load the template again.
        // A clone of a template goes on with the template's identity until it gets its own.
        if restored {
            r.identity_pending = self
                .image(r.image_uuid)
                .ok()
                .and_then(|i| i.tags.get(crate::vm::identity::ON_CLONE_TAG).cloned())
                .and_then(|v| v.as_str().map(str::to_owned));
        }
        // A woken VM's saved state is no longer its own from here: the guest moves on.
        let suspended = r.suspended.take();
        r.restore = None;
        r.state = live.to(State::Running, &uuid)?;
        self.catalog.put_vm(&r)?;
        if let Err(e) = q.cont() {
            // Only a guest that surely did not run goes back to waiting (a lost reply to
            // `cont` may hide one that runs past its saved state).
            if matches!(
                q.query_status(),
                Ok(RunStatus::InMigrate | RunStatus::Paused)
            ) {
                r.state = live;
                r.suspended = suspended;
                self.catalog.put_vm(&r)?;
            }
            return Err(qmp_error(&uuid, "cont", e));
        }
        if suspended.is_some() {
            self.drop_saved_state(&uuid);
        }
        if restored {
            let mac = r.mac.clone().unwrap_or_else(|| crate::vm::mac_for(&uuid));
            qemu::hotplug_nic(&mut q, &mac, self.run.net)
                .map_err(|e| qmp_error(&uuid, "adding the network card", e))?;
        }
        Ok(self.live(&r))
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
        let uptime_s = run.as_ref().and_then(RunInfo::uptime_s);
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
        // A suspended VM's saved state names its CPUs, memory and disk as they were.
        if live.is_active() || live == State::Suspended {
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
        let run = self.run_dir(&uuid).open()?;
        let mut out = Vec::new();
        for name in [runtime::names::SERIAL_LOG_OLD, runtime::names::SERIAL_LOG] {
            // Bounded by the rotation size; a log that grew past it meanwhile is cut below.
            if let Some(b) = run.read(name, 1 << 31)? {
                out.extend(b);
            }
        }
        let max = usize::try_from(max_bytes).unwrap_or(usize::MAX);
        if out.len() > max {
            out.drain(..out.len() - max);
        }
        Ok(out)
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

/// The facts the run's supervisor wrote (`run.json`), read through the run directory's
/// descriptor.
fn written_run_info(run: &RunDir) -> Option<RunInfo> {
    let b = run
        .open()
        .ok()?
        .read(supervisor::RUN_INFO, 1 << 16)
        .ok()??;
    serde_json::from_slice(&b).ok()
}
