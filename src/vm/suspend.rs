//! Putting a VM to sleep and waking it: its memory and device state saved to the store's
//! disk, its QEMU ended, its RAM freed; later a new QEMU loads that state and the guest goes
//! on from the instant it was saved (`docs/sessions.md` has the design).
//!
//! - **Suspend** (`suspend_vm`): under the VM's lifecycle lock its CPUs stop, QEMU migrates
//!   everything into `run/<uuid>/suspend.state.partial` (a descriptor QEMU gets, never a
//!   path), which is synced and renamed to `suspend.state`; only then is the intent
//!   `suspend` written, the record marked, and QEMU told to quit. The supervisor ends the
//!   run `suspended` when the intent says so and the complete file is there; anything less
//!   ends as any other run.
//! - **Resume**: a start of a suspended VM launches QEMU waiting (`-incoming defer`, the
//!   devices the state names: a memory-template clone's layout, its network card and home
//!   disk plugged in before the load); `resume_vm` loads the file, records the VM running
//!   and only then continues the guest; the file goes after that.
//! - **Interrupted** either way (the caller killed), the next operation on the VM (and store
//!   recovery) settles it from what is on disk and what QEMU says (`settle_suspend`): a
//!   half-written file is removed and the guest continues; a loaded state whose guest may
//!   have run is never loaded again; a QEMU still waiting for its state is ended and the VM
//!   stays suspended. The VM is always running or suspended with a whole state, never
//!   neither.

use crate::error::{Error, Result};
use crate::fail_point;
use crate::safe_fs::{Dir, Kind};
use crate::store::catalog::records::{Suspension, VmRecord};
use crate::store::Store;
use crate::vm::lifecycle::{qmp_error, REAP_TIMEOUT};
use crate::vm::qmp::{MigrationStatus, Qmp, RunStatus};
use crate::vm::runtime::{self, names, RunDir};
use crate::vm::supervisor::{read_intent, write_intent, Intent, LaunchFile};
use crate::vm::{Op, State, Vm};
use std::os::fd::AsFd;
use uuid::Uuid;

/// `run/<uuid>/suspend.state`: a complete saved state (QEMU's migration stream).
pub const SUSPEND_STATE: &str = "suspend.state";
/// The state while QEMU writes it; never loaded.
const SUSPEND_PARTIAL: &str = "suspend.state.partial";
/// Written before a suspend stops the guest's CPUs, removed once the record says
/// `suspended` is coming: what the guest was (`running` or `paused`), for whoever settles a
/// suspend cut short (the record cannot say: the supervisor records the CPUs' stop).
const SUSPENDING: &str = "suspending";

/// Whether a run of record `r` that just ended (with `intent`) ends `suspended`: the
/// complete state the record claims is in `run` (its run directory), and either the run was
/// ended to suspend it, or it was a resume whose guest was never continued (the record says
/// running before `cont`), so the state is still the VM's. The supervisor's test.
pub fn ends_suspended(run: &Dir, r: &VmRecord, intent: Option<Intent>) -> bool {
    r.suspended.is_some()
        && (intent == Some(Intent::Suspend) || matches!(r.state, State::Starting | State::Paused))
        && is_file(run, SUSPEND_STATE)
}

fn is_file(run: &Dir, name: &str) -> bool {
    run.stat(name)
        .ok()
        .flatten()
        .is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG)
}

/// Whether the run that `run`'s launch file describes has a memory-template clone's devices
/// (a network card plugged into its port after the restore).
fn clone_layout(run: &Dir) -> Result<bool> {
    let bytes = run
        .read(names::LAUNCH, 1 << 20)?
        .ok_or_else(|| Error::Internal(format!("{} is missing", run.display(names::LAUNCH))))?;
    let l: LaunchFile =
        serde_json::from_slice(&bytes).map_err(|e| Error::json("the launch file", e))?;
    Ok(l.args
        .iter()
        .any(|a| a.starts_with(&format!("pcie-root-port,id={}", crate::vm::qemu::NIC_PORT))))
}

/// What settling a VM's suspend or wake left to do once its lifecycle lock is free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    /// Nothing: the VM is running, suspended, or resting.
    Done,
    /// A QEMU waits for the VM's saved state: the lock holder's wake goes on; without one,
    /// the wake was cut short.
    Waiting,
    /// QEMU was killed after its state was saved; its supervisor records `suspended` once
    /// it gets the lock.
    Ending,
}

/// A suspend's reason is recorded and shown: a few words, no control characters.
fn check_reason(reason: &str) -> Result<()> {
    if reason.is_empty() || reason.len() > 200 || reason.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "reason {reason:?}: give 1 to 200 bytes of text without control characters"
        )));
    }
    Ok(())
}

/// After a save that is not to be: the migration (which QEMU goes on with when its caller
/// dies) is cancelled and waited for, then the guest continues if it ran (`cont` also takes
/// back the disks a completed migration let go of). Best effort: a QEMU that does not answer
/// is left as it is.
fn go_on(q: &mut Qmp, was_running: bool) {
    let _ = q.migrate_cancel();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while matches!(q.query_migrate(), Ok(MigrationStatus::InProgress(_)))
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    if was_running {
        let _ = q.cont();
    }
}

/// How long a suspend may take to write the state of a guest with `ram_mib` of RAM: a
/// minute, and a second more per 64 MiB (a disk writes more than that per second).
fn save_timeout(ram_mib: u64) -> std::time::Duration {
    std::time::Duration::from_secs(60 + ram_mib / 64)
}

/// The largest state a guest with `ram_mib` of RAM writes: its RAM, device state and the
/// stream's framing fit well in a quarter more and 64 MiB. A QEMU writing past it is not
/// saving a guest (QEMU is not trusted), and is stopped before it fills the store.
fn state_limit(ram_mib: u64) -> u64 {
    (ram_mib << 20) / 4 * 5 + (64 << 20)
}

impl Store {
    /// Put a running (or paused) VM to sleep: save its memory and device state to the store
    /// and end its QEMU. `reason` is recorded (`on request`, `idle`, `host stop`). Returns
    /// once QEMU has ended and the VM is `suspended`; on any error before the VM was recorded
    /// as suspending, the guest goes on as it was and nothing is left.
    pub fn suspend_vm(&self, uuid: Uuid, reason: &str) -> Result<Vm> {
        crate::probes::op("vm-suspend", uuid, || self.suspend_vm_op(uuid, reason))
    }

    fn suspend_vm_op(&self, uuid: Uuid, reason: &str) -> Result<Vm> {
        self.suspend_vm_if(uuid, reason, |_| true)
    }

    /// `suspend_vm`, only if `still` (asked under the VM's lifecycle lock, with its run
    /// directory) says so; otherwise `INVALID_STATE`. The idle policy asks whether the VM is
    /// still idle: an owner who came back in between keeps their desktop.
    pub(crate) fn suspend_vm_if(
        &self,
        uuid: Uuid,
        reason: &str,
        still: impl FnOnce(&Dir) -> bool,
    ) -> Result<Vm> {
        check_reason(reason)?;
        let run = self.run_dir(&uuid);
        let info = {
            let _lc = self.lifecycle_lock(&run)?;
            self.settle_suspend_locked(&uuid, &run)?;
            let (mut r, live) = self.running(&uuid, &run, Op::Suspend)?;
            if r.restore.is_some() || r.suspended.is_some() {
                return Err(Error::InvalidState(format!(
                    "VM {uuid} has not run since its start (it waits for a saved state); there is nothing to save: wake it or stop it instead"
                )));
            }
            let dir = run.open()?;
            if !still(&dir) {
                return Err(Error::InvalidState(format!(
                    "VM {uuid} is in use again; not suspended"
                )));
            }
            let layout = clone_layout(&dir)?;
            dir.remove(SUSPEND_PARTIAL)?;
            dir.remove(SUSPEND_STATE)?;
            dir.write_atomic(SUSPENDING, live.as_str().as_bytes(), 0o600)?;
            // QEMU's fd set matches the access mode it asks for: write-only.
            drop(dir.create(SUSPEND_PARTIAL, 0o600)?);
            let file = dir.open_with(SUSPEND_PARTIAL, Kind::File, libc::O_WRONLY)?;
            let mut q = self.qmp(&uuid, &run)?;
            let what = "saving its state";
            let saved = (|| {
                q.stop()?;
                q.set_ignore_shared(false)?;
                q.set_max_bandwidth(u64::MAX >> 1)?;
                let set = q.add_fd(file.as_fd())?;
                q.migrate_to_fdset(set).inspect_err(|_| {
                    let _ = q.remove_fd(set);
                })
            })()
            .map_err(|e| qmp_error(&uuid, what, e))
            .and_then(|()| self.wait_save(&r, &mut q, &file))
            .and_then(|()| {
                fail_point!("vm_suspend.written");
                file.sync_all().map_err(|e| Error::Io {
                    context: format!("syncing {}", dir.display(SUSPEND_PARTIAL)),
                    source: e,
                })
            });
            // Then the state takes its name and the record says so. Until the record is
            // written, any failure undoes it all and the guest goes on.
            let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
            let marked = saved.and_then(|()| {
                dir.rename(SUSPEND_PARTIAL, SUSPEND_STATE)?;
                dir.sync()?;
                fail_point!("vm_suspend.saved");
                write_intent(&dir, Intent::Suspend)?;
                r.suspended = Some(Suspension {
                    at: crate::now_rfc3339(),
                    reason: reason.to_owned(),
                    bytes,
                    clone_layout: layout,
                });
                r.state = live.to(State::Stopping, &uuid)?;
                self.catalog.put_vm(&r)
            });
            if let Err(e) = marked {
                for name in [SUSPEND_PARTIAL, SUSPEND_STATE] {
                    let _ = dir.remove(name);
                }
                // A QEMU killed for writing too much is not continued.
                if bytes <= state_limit(r.ram_mib) {
                    let _ = dir.remove(crate::vm::supervisor::INTENT);
                    go_on(&mut q, live == State::Running);
                }
                let _ = dir.remove(SUSPENDING);
                return Err(e);
            }
            dir.remove(SUSPENDING)?;
            fail_point!("vm_suspend.recorded");
            let _ = q.quit();
            self.run_info(&r, &run)
        };
        self.end_run(uuid, &run, info, REAP_TIMEOUT, Intent::Suspend, "suspended")
    }

    /// Wait until QEMU has written the state into `file`; a QEMU writing more than its
    /// guest's RAM can hold is killed (its run then ends `failed`, and nothing it wrote
    /// stays).
    fn wait_save(&self, r: &VmRecord, q: &mut Qmp, file: &std::fs::File) -> Result<()> {
        let limit = state_limit(r.ram_mib);
        let oversize = || {
            let written = file.metadata().map(|m| m.len()).unwrap_or(0);
            if written <= limit {
                return Ok(());
            }
            let run = self.run_dir(&r.uuid);
            let _ = self.kill_qemu_locked(&run, self.run_info(r, &run).as_ref(), Intent::Kill);
            Err(Error::Hypervisor(format!(
                "VM {}: QEMU wrote {written} bytes of state for {} MiB of RAM; it was killed",
                r.uuid, r.ram_mib
            )))
        };
        crate::pool::template::wait_migration_with(
            &r.uuid,
            q,
            "saving its state",
            save_timeout(r.ram_mib),
            oversize,
        )
    }

    /// Whether a start of the record's VM resumes it: it is suspended and its state is
    /// there. A suspended VM whose state is gone is no longer suspended (it boots from its
    /// disk, as after a power cut).
    pub(crate) fn resumes(&self, r: &mut VmRecord, run: &Dir) -> bool {
        if r.suspended.is_some() && !is_file(run, SUSPEND_STATE) {
            r.suspended = None;
        }
        r.suspended.is_some()
    }

    /// Load a suspended VM's state into its QEMU waiting for it (`-incoming defer`): first
    /// the devices its state names that are plugged at run time (a clone's network card, the
    /// owner's home disk), then the stream from the file, handed over as a descriptor.
    /// Returns whether it loaded it now (`false`: it already had, before a crash).
    pub(crate) fn load_suspended(&self, r: &VmRecord, q: &mut Qmp) -> Result<bool> {
        let uuid = &r.uuid;
        let err = |e| qmp_error(uuid, "loading its saved state", e);
        if q.query_status().map_err(err)? != RunStatus::InMigrate {
            return Ok(false);
        }
        let Some(s) = &r.suspended else {
            return Ok(false);
        };
        let dir = self.run_dir(uuid).open()?;
        let state = dir
            .open(SUSPEND_STATE, Kind::File)?
            .ok_or_else(|| Error::not_found("saved state of VM", uuid.to_string()))?;
        // A wake cut short and tried again finds what it did before: each step is skipped
        // once done.
        if s.clone_layout && !q.has_device("nic0").map_err(err)? {
            let mac = r.mac.clone().unwrap_or_else(|| crate::vm::mac_for(uuid));
            crate::vm::qemu::hotplug_nic(q, &mac, self.run.net).map_err(err)?;
        }
        if let Some(h) = self.catalog.home(&r.owner)? {
            if h.attached_to == Some(*uuid) {
                self.plug_home_into(q, *uuid, &h)?;
            }
        }
        let started = !matches!(
            q.query_migrate().map_err(err)?,
            MigrationStatus::InProgress(ref s) if s == "none"
        );
        if !started {
            (|| {
                q.set_ignore_shared(false)?;
                let set = q.add_fd(state.as_fd())?;
                q.migrate_incoming_from_fdset(set)
            })()
            .map_err(err)?;
        }
        crate::pool::template::wait_migration(uuid, q, "loading its saved state")?;
        fail_point!("vm_resume.loaded");
        Ok(true)
    }

    /// After a resume recorded the VM running: its saved state goes (the guest has moved on
    /// from it, so it must never be loaded again).
    pub(crate) fn drop_saved_state(&self, uuid: &Uuid) {
        if let Ok(d) = self.run_dir(uuid).open() {
            let _ = d.remove(SUSPEND_STATE);
        }
    }

    /// `settle_suspend_locked`, taking the VM's lifecycle lock (so a suspend or wake under
    /// way in another process is waited for).
    pub(crate) fn settle_suspend(&self, uuid: &Uuid) -> Result<()> {
        let run = self.run_dir(uuid);
        let _lc = self.lifecycle_lock(&run)?;
        self.settle_suspend_locked(uuid, &run).map(drop)
    }

    /// Settle a suspend or resume whose caller died (see the module's notes), under the
    /// VM's lifecycle lock. Nothing to do (the common case) costs three lookups.
    pub(crate) fn settle_suspend_locked(&self, uuid: &Uuid, run: &RunDir) -> Result<Settled> {
        let Ok(dir) = run.open() else {
            return Ok(Settled::Done);
        };
        let suspending = dir.read(SUSPENDING, 64)?;
        let partial = is_file(&dir, SUSPEND_PARTIAL);
        let complete = is_file(&dir, SUSPEND_STATE);
        if suspending.is_none() && !partial && !complete {
            return Ok(Settled::Done);
        }
        let Some(mut r) = self.catalog.vm(uuid)? else {
            return Ok(Settled::Done);
        };
        let (live, _) = self.live_state(&r, run, true);
        let marked = r.suspended.is_some();
        dir.remove(SUSPEND_PARTIAL)?;
        if let Some(was) = suspending {
            // A suspend cut short before the record was marked: whatever was saved is not
            // the VM's; the guest goes on as it was.
            if !marked {
                dir.remove(SUSPEND_STATE)?;
                dir.remove(crate::vm::supervisor::INTENT)?;
                if live.is_active() {
                    if let Ok(mut q) = self.qmp(uuid, run) {
                        go_on(&mut q, was == b"running");
                    }
                }
            }
            dir.remove(SUSPENDING)?;
            if !marked {
                return Ok(Settled::Done);
            }
        }
        if !complete {
            return Ok(Settled::Done);
        }
        let info = self
            .run_info(&r, run)
            .filter(|i| runtime::alive(i.qemu_pid, i.qemu_start));
        if live == State::Suspended {
            return Ok(Settled::Done);
        }
        if marked && r.state.is_active() && read_intent(&dir) == Some(Intent::Suspend) {
            // Saved and marked, the quit sent or about to be: end the run; it is suspended.
            self.kill_qemu_locked(run, info.as_ref(), Intent::Suspend)?;
            if !runtime::lock_held(&run.supervisor_lock())? {
                self.mark_suspended(&mut r, run)?;
                return Ok(Settled::Done);
            }
            return Ok(Settled::Ending);
        }
        if !marked {
            // A resume that recorded the VM running: the state is no longer the VM's.
            dir.remove(SUSPEND_STATE)?;
            if r.state == State::Running && live.is_active() {
                let _ = self.with_qmp(uuid, run, "cont", |q| q.cont());
            }
            return Ok(Settled::Done);
        }
        // Resuming. A QEMU waiting for the state is a resting point (the next `resume_vm`
        // loads it), as a memory-template clone's is. Until the record says running, the
        // guest has not been continued: with its QEMU gone, the state is still the VM's.
        let waiting = matches!(r.state, State::Starting | State::Paused);
        let status = info
            .as_ref()
            .and_then(|_| self.qmp(uuid, run).ok())
            .and_then(|mut q| q.query_status().ok().map(|s| (s, q)));
        match status {
            Some((s, mut q)) if s != RunStatus::InMigrate => {
                // Loaded: finish the resume the caller began.
                r.suspended = None;
                r.state = r.state.to(State::Running, uuid)?;
                self.catalog.put_vm(&r)?;
                let _ = q.cont();
                dir.remove(SUSPEND_STATE)?;
            }
            // Waiting for the state: the caller (holding the lock) goes on with the wake;
            // without a caller (`settle_suspends`) the wake was cut short.
            Some(_) => return Ok(Settled::Waiting),
            None if live.is_active() => {}
            None if waiting => self.mark_suspended(&mut r, run)?,
            None => {
                // Recorded running, yet its QEMU is gone: the guest may have run past
                // the state, which must not be loaded again.
                r.suspended = None;
                self.catalog.put_vm(&r)?;
                dir.remove(SUSPEND_STATE)?;
            }
        }
        Ok(Settled::Done)
    }

    /// A suspended VM powered off: its saved state goes, it rests `stopped` (its next start
    /// boots from its disk, which is as the guest left it when it was saved).
    pub(crate) fn discard_saved(&self, r: &mut VmRecord, run: &RunDir, why: &str) -> Result<()> {
        r.state = r.state.to(State::Stopped, &r.uuid)?;
        r.suspended = None;
        r.last_exit = Some(crate::vm::LastExit {
            at: crate::now_rfc3339(),
            clean: true,
            reason: why.into(),
            signal: None,
            status: None,
        });
        // The record first: a state file without a claim is stale and never loaded.
        self.catalog.put_vm(r)?;
        run.open()?.remove(SUSPEND_STATE)?;
        Ok(())
    }

    /// Record a run that ended after its state was saved (its supervisor gone) as suspended.
    pub(crate) fn mark_suspended(&self, r: &mut VmRecord, run: &RunDir) -> Result<()> {
        r.state = r.state.to(State::Suspended, &r.uuid)?;
        r.run = None;
        r.last_exit = Some(crate::vm::LastExit {
            at: crate::now_rfc3339(),
            clean: true,
            reason: "suspended".into(),
            signal: None,
            status: None,
        });
        self.catalog.put_vm(r)?;
        run.clean_after_run();
        Ok(())
    }

    /// For store recovery: settle every VM whose run directory holds a saved state or a
    /// partial one, unless its lifecycle lock is held (it is being worked on). Errors, as
    /// text for the recovery report.
    pub(crate) fn settle_suspends(&self) -> Vec<String> {
        let mut errors = Vec::new();
        let Ok(Some(root)) = Dir::open_path(self.catalog_dir()).and_then(|c| c.subdir("run"))
        else {
            return errors;
        };
        for name in root.entries().unwrap_or_default() {
            let Some(uuid) = name.to_str().and_then(|n| Uuid::parse_str(n).ok()) else {
                continue;
            };
            let Ok(Some(dir)) = root.subdir(&uuid.to_string()) else {
                continue;
            };
            if [SUSPEND_STATE, SUSPEND_PARTIAL, SUSPENDING]
                .iter()
                .all(|n| !is_file(&dir, n))
            {
                continue;
            }
            let run = self.run_dir(&uuid);
            let settled = runtime::try_lock(&run.lock()).and_then(|held| {
                let Some(lock) = held else { return Ok(()) };
                let settled = self.settle_suspend_locked(&uuid, &run)?;
                let r = self.record(&uuid)?;
                let info = self.run_info(&r, &run);
                match settled {
                    Settled::Done => return Ok(()),
                    // A wake whose caller died (wakes hold the lock throughout): its QEMU
                    // ends, still under the lock (nobody may wake it meanwhile), and the VM
                    // stays suspended (the supervisor records it once the lock is free).
                    Settled::Waiting => {
                        self.kill_qemu_locked(&run, info.as_ref(), Intent::Suspend)?;
                    }
                    // Its QEMU was killed; the supervisor records the end once the lock is free.
                    Settled::Ending => {}
                }
                drop(lock);
                self.wait_for_end(&run, info.as_ref(), REAP_TIMEOUT);
                self.finish_unsupervised(&uuid, &run, "suspended")
            });
            if let Err(e) = settled {
                errors.push(format!("VM {uuid}: settling its suspend or resume: {e}"));
            }
        }
        errors
    }
}
