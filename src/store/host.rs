//! A host that reboots (`docs/sessions.md`): `host stop` before the shutdown puts every
//! session to sleep, `host start` after the boot brings the store back. The `vmpool.service`
//! unit runs them (`ExecStop`, `ExecStart`); a host that went down without `host stop` (a
//! power cut, a kernel panic) comes back through `host start` too, minus the sessions'
//! memory.
//!
//! - **Stop**: every desktop and VM that runs is suspended to the store (reason
//!   [`HOST_STOP_REASON`]); spares, template builds and VMs still waiting for a state hold
//!   no session and are ended (refill makes them again). A VM that cannot be suspended is
//!   ended with its mark to run kept, so the next start boots it.
//! - **Start**: recovery, then every VM marked to run (`autoboot`: set by a start that runs
//!   it, a wake or a hand-out, cleared by a stop or kill asked for) that does not run is
//!   started (a
//!   pool's desktop the way its owner's acquire would bring it back: home plugged in,
//!   identity given if it never got one); VMs of no pool that `host stop` suspended wake;
//!   desktops asleep stay asleep until their owner's acquire; then every pool is refilled.
//!
//! Both are idempotent and safe beside other processes using the store: each VM is handled
//! under its own lifecycle lock by the usual operations, so a VM changed meanwhile is left as
//! that change made it.

use crate::error::{Error, Result};
use crate::pool::RefillOptions;
use crate::store::catalog::records::VmRecord;
use crate::store::Store;
use crate::vm::launch::StartOptions;
use crate::vm::State;
use std::collections::HashSet;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The reason `host stop` records on what it suspends; `host start` wakes the VMs of no pool
/// suspended for it (a pool's desktop waits for its owner).
pub const HOST_STOP_REASON: &str = "host stop";

/// VMs handled at once: a suspend writes the guest's RAM to the store and a start spawns a
/// QEMU; more at once only queue on the disk and the CPUs.
const PARALLEL: usize = 4;

/// How many times host stop looks for VMs that run: VMs started meanwhile (a refill or an
/// acquire of another process) are found by the next look.
const STOP_ROUNDS: usize = 3;

/// How long host stop waits out another process's change to a VM (a suspend or wake
/// finishing, a start) before it ends the VM.
const SETTLE_WAIT: Duration = Duration::from_secs(60);

/// What `host_start` or `host_stop` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostReport {
    /// What recovery cleaned up (start).
    pub recovered: Vec<String>,
    /// VMs started again: marked to run, their run ended with the host (start).
    pub started: Vec<Uuid>,
    /// VMs of no pool woken from `host stop`'s suspend (start).
    pub woken: Vec<Uuid>,
    /// Desktops left asleep until their owner comes back (start).
    pub asleep: Vec<Uuid>,
    /// Pools refilled (start).
    pub refilled: Vec<String>,
    /// VMs suspended (stop).
    pub suspended: Vec<Uuid>,
    /// VMs ended without a session to keep: spares, template builds, VMs waiting for a state
    /// (stop), and VMs that could not be suspended (their errors say so).
    pub ended: Vec<Uuid>,
    /// What went wrong, one line each; everything else went on.
    pub errors: Vec<String>,
}

/// One VM's part of a host start or stop.
enum Job {
    Start(Uuid),
    BringBack(Uuid),
    Wake(Uuid),
    Stop(Uuid),
}

use crate::lock::guard as lock;

/// Whether a VM holds no session of its own: a pool's spare, a template build, a VM whose
/// QEMU still waits for the state it starts from.
fn sessionless(r: &VmRecord) -> bool {
    r.template_build || (r.pool.is_some() && r.owner.is_empty()) || r.restore.is_some()
}

/// Whether a VM sleeps because `host stop` put it to sleep.
fn suspended_by_host(r: &VmRecord) -> bool {
    r.suspended
        .as_ref()
        .is_some_and(|s| s.reason == HOST_STOP_REASON)
}

impl Store {
    /// After the host booted: recover, start what was marked to run and went down with the
    /// host, wake the VMs of no pool that `host_stop` suspended, refill every pool. Desktops
    /// asleep stay asleep until their owner's acquire. Errors of single VMs and pools are in
    /// the report; the call fails only if the store cannot be read.
    pub fn host_start(&self) -> Result<HostReport> {
        let mut report = HostReport::default();
        let rec = self.recover()?;
        report.recovered = rec.cleaned;
        report.errors.extend(rec.errors);
        let mut jobs = Vec::new();
        for r in self.catalog.vms(None)? {
            if sessionless(&r) {
                continue;
            }
            match self.live(&r).state {
                State::Suspended => {
                    if r.pool.is_none() && suspended_by_host(&r) {
                        jobs.push(Job::Wake(r.uuid));
                    } else {
                        report.asleep.push(r.uuid);
                    }
                }
                State::Stopped | State::Failed if r.autoboot => jobs.push(if r.pool.is_some() {
                    Job::BringBack(r.uuid)
                } else {
                    Job::Start(r.uuid)
                }),
                _ => {}
            }
        }
        let mut report = self.run_jobs(jobs, report);
        let stop = AtomicBool::new(false);
        let opts = RefillOptions { parallel: PARALLEL };
        for p in self.catalog.pools()? {
            if p.deleting {
                continue;
            }
            let name = p.spec.name;
            match self.refill(&name, &opts, &|_| {}, &stop) {
                Ok(r) => {
                    report
                        .errors
                        .extend(r.errors.into_iter().map(|e| format!("pool {name}: {e}")));
                    report.refilled.push(name);
                }
                Err(e) => report.errors.push(format!("refilling pool {name}: {e}")),
            }
        }
        Ok(report)
    }

    /// Before the host shuts down: suspend every VM that runs (its session comes back after
    /// the boot), end the ones that hold no session. Each VM is decided again under its own
    /// lock at each step (another process may claim, wake, suspend or stop it meanwhile),
    /// and VMs started meanwhile (a refill elsewhere) are found by a second look. Returns
    /// once no QEMU of the store runs but those it could not end (their errors say so).
    pub fn host_stop(&self) -> Result<HostReport> {
        let mut report = HostReport::default();
        let mut seen = HashSet::new();
        for _ in 0..STOP_ROUNDS {
            let mut jobs = Vec::new();
            for r in self.catalog.vms(None)? {
                if self.live(&r).state.is_active() && seen.insert(r.uuid) {
                    jobs.push(Job::Stop(r.uuid));
                }
            }
            if jobs.is_empty() {
                break;
            }
            report = self.run_jobs(jobs, report);
        }
        Ok(report)
    }

    /// Host stop's part for one VM: suspended if it holds a session, ended if not; what
    /// another process does to it meanwhile is waited out (a suspend or wake finishing, a
    /// start) for up to [`SETTLE_WAIT`], then it is ended, still marked to run.
    fn stop_one(&self, u: Uuid, report: &Mutex<HostReport>) {
        let deadline = Instant::now() + SETTLE_WAIT;
        loop {
            let Ok(Some(r)) = self.catalog.vm(&u) else {
                return;
            };
            let live = self.live(&r).state;
            if !live.is_active() {
                return;
            }
            let failed = if r.suspended.is_some() {
                // A suspend finishing (its QEMU ending) or a wake: a live one is waited for
                // on the lock, one whose process died is settled (running, or suspended).
                self.settle_suspend(&u)
                    .err()
                    .map(|e| format!("settling VM {u}: {e}"))
            } else if sessionless(&r) {
                match self.kill_vm_if(u, false, |r| sessionless(r) && r.suspended.is_none()) {
                    Ok(Some(_)) => return lock(report).ended.push(u),
                    Ok(None) => None,
                    Err(e) => Some(format!("ending VM {u}: {e}")),
                }
            } else if matches!(live, State::Running | State::Paused) {
                match self.suspend_vm(u, HOST_STOP_REASON) {
                    Ok(_) => return lock(report).suspended.push(u),
                    // Changed meanwhile (claimed, stopped, being started): look again.
                    Err(Error::InvalidState(_)) => None,
                    // The save failed; the guest went on.
                    Err(e) => Some(format!("suspending VM {u}: {e}")),
                }
            } else {
                None
            };
            let failed = failed.or_else(|| {
                (Instant::now() > deadline).then(|| {
                    format!(
                        "VM {u} stayed {} for {} s",
                        live.as_str(),
                        SETTLE_WAIT.as_secs()
                    )
                })
            });
            if let Some(why) = failed {
                // Ended, still marked to run: the next host start boots it. Never a VM whose
                // suspend is finishing (its state would be lost).
                let ended = self.kill_vm_if(u, false, |r| r.suspended.is_none());
                let mut rep = lock(report);
                match ended {
                    Ok(Some(_)) => {
                        rep.errors.push(format!(
                            "{why}; it was ended instead (the next host start boots it)"
                        ));
                        rep.ended.push(u);
                    }
                    Ok(None) => rep.errors.push(why),
                    Err(e) => rep.errors.push(format!("{why}; ending it: {e}")),
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Run `jobs`, [`PARALLEL`] at a time, into `report`.
    fn run_jobs(&self, jobs: Vec<Job>, report: HostReport) -> HostReport {
        let queue = Mutex::new(jobs);
        let report = Mutex::new(report);
        std::thread::scope(|s| {
            for _ in 0..PARALLEL {
                s.spawn(|| loop {
                    let Some(job) = lock(&queue).pop() else {
                        break;
                    };
                    self.run_job(job, &report);
                });
            }
        });
        let mut r = report.into_inner().unwrap_or_else(|p| p.into_inner());
        for list in [
            &mut r.started,
            &mut r.woken,
            &mut r.asleep,
            &mut r.suspended,
            &mut r.ended,
        ] {
            list.sort();
        }
        r
    }

    fn run_job(&self, job: Job, report: &Mutex<HostReport>) {
        let opts = |u: &Uuid| StartOptions {
            accel: self.catalog.vm(u).ok().flatten().and_then(|r| r.accel),
        };
        match job {
            // Each start asks again under the VM's lock: a stop asked for meanwhile wins.
            Job::Start(u) => match self.start_vm_if(u, &opts(&u), |r| r.autoboot) {
                Ok(Some(_)) => lock(report).started.push(u),
                Ok(None) | Err(Error::AlreadyRunning(_)) => {}
                Err(e) => lock(report).errors.push(format!("starting VM {u}: {e}")),
            },
            Job::BringBack(u) => match self.bring_back(u) {
                Ok(_) => lock(report).started.push(u),
                Err(Error::InvalidState(_)) if !self.marked(&u) => {}
                Err(e) => lock(report)
                    .errors
                    .push(format!("bringing back desktop {u}: {e}")),
            },
            Job::Wake(u) => match self.start_vm_if(u, &opts(&u), suspended_by_host) {
                Ok(Some(_)) => lock(report).woken.push(u),
                Ok(None) => {}
                Err(e) => lock(report).errors.push(format!("waking VM {u}: {e}")),
            },
            Job::Stop(u) => self.stop_one(u, report),
        }
    }

    /// Whether the VM is (still) marked to run.
    fn marked(&self, u: &Uuid) -> bool {
        self.catalog
            .vm(u)
            .ok()
            .flatten()
            .is_some_and(|r| r.autoboot)
    }
}
