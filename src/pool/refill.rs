//! Refilling pools: making missing spares and warming them, from one queue with bounded
//! parallelism, safe from several processes at once.

use crate::error::{Error, Result};
use crate::pool::claims::{MakingFile, PoolDir};
use crate::pool::plan::{self, SpareAction, Standing};
use crate::pool::{RefillOptions, RefillProgress, RefillReport, Warmth};
use crate::store::catalog::records::{PoolRecord, VmRecord};
use crate::store::Store;
use crate::vm::launch::StartOptions;
use crate::vm::runtime::{self};
use crate::vm::State;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use uuid::Uuid;

/// Held (flock) by whoever is warming a spare.
const WARM_LOCK: &str = "warm.lock";

/// Work of a refill round.
enum Job {
    Make(Uuid, MakingFile),
    Warm(Uuid),
}

use crate::lock::guard as lock;

impl Store {
    /// Bring the pool's spares to its target, at its warmth: make missing ones (at most
    /// `parallel` at once, from one queue of all that are missing), warm cold ones, remove
    /// extra or outdated ones, build the memory template if the pool needs one. Idempotent;
    /// safe from several processes at once (each takes what nobody is making yet, under the
    /// pool lock; they end at exactly the target). `progress` is called as it goes; `stop`
    /// (checked between steps) ends it early.
    pub fn refill(
        &self,
        name: &str,
        opts: &RefillOptions,
        progress: &(dyn Fn(RefillProgress) + Sync),
        stop: &AtomicBool,
    ) -> Result<RefillReport> {
        crate::probes::op("pool-refill", name, || {
            self.refill_op(name, opts, progress, stop)
        })
    }

    fn refill_op(
        &self,
        name: &str,
        opts: &RefillOptions,
        progress: &(dyn Fn(RefillProgress) + Sync),
        stop: &AtomicBool,
    ) -> Result<RefillReport> {
        let parallel = opts.parallel.clamp(1, 64);
        let report = Mutex::new(RefillReport::default());
        let dir = self.pool_dir(name);
        dir.ensure()?;
        let rec = self.pool_record(name)?;
        // The template is built even without spares: a clone made on the spot needs it.
        if rec.spec.warmth == Warmth::Template {
            match self.ensure_template(name) {
                Ok(built) => lock(&report).template_built |= built,
                Err(e) => lock(&report)
                    .errors
                    .push(format!("building the memory template: {e}")),
            }
        }
        if let Err(e) = self.collect_templates(name, false) {
            lock(&report)
                .errors
                .push(format!("removing old templates: {e}"));
        }
        // Idle desktops go to sleep first: their RAM may be what new spares need.
        if let Some(after) = rec.spec.idle_suspend_after_s {
            let (n, errors) = self.suspend_idle(&rec, after);
            let mut r = lock(&report);
            r.suspended = n;
            r.errors.extend(errors);
        }
        // Sessions already given an end are ended at it, whatever the limit is now.
        let (n, errors) = self.end_sessions(&rec, rec.spec.max_session_s);
        {
            let mut r = lock(&report);
            r.sessions_ended = n;
            r.errors.extend(errors);
        }
        let mut rounds = 0;
        while !stop.load(Ordering::Relaxed) {
            rounds += 1;
            let (work, rec) = {
                let _l = dir.lock()?;
                let rec = self.pool_record(name)?;
                let work = self.plan_refill(&rec, &dir, &report, progress)?;
                (work, rec)
            };
            if work.is_empty() || rounds > 1000 {
                break;
            }
            let queue = Mutex::new(work);
            let op = crate::probes::current();
            std::thread::scope(|s| {
                for _ in 0..parallel {
                    s.spawn(|| {
                        crate::probes::within(op, || loop {
                            if stop.load(Ordering::Relaxed) {
                                break;
                            }
                            let Some(job) = lock(&queue).pop() else {
                                break;
                            };
                            let t0 = std::time::Instant::now();
                            let res = match job {
                                Job::Make(u, making) => {
                                    let made = self.make_pool_vm(&rec, u, "");
                                    drop(making);
                                    match made {
                                        Ok(_) => {
                                            lock(&report).created += 1;
                                            self.warm(&rec, &dir, u, &report)
                                        }
                                        Err(e) => Err(e),
                                    }
                                }
                                Job::Warm(u) => self.warm(&rec, &dir, u, &report),
                            };
                            let outcome = if res.is_ok() { "spare" } else { "spare-failed" };
                            crate::probes::step(outcome, t0.elapsed());
                            if let Err(e) = res {
                                lock(&report).errors.push(format!("spare: {e}"));
                            }
                        })
                    });
                }
            });
            // Stopped with spares planned but not begun: nothing of them exists but their
            // member entries, which would count against the pool's maximum until the next
            // call reclaimed them.
            let left = std::mem::take(&mut *lock(&queue));
            if left.iter().any(|j| matches!(j, Job::Make(..))) {
                let _l = dir.lock()?;
                for job in left {
                    if let Job::Make(u, making) = job {
                        dir.remove_member(&u)?;
                        drop(making);
                    }
                }
            }
            if !lock(&report).errors.is_empty() && rounds > 3 {
                break;
            }
        }
        let mut out = lock(&report).clone();
        if let Ok(rec) = self.pool_record(name) {
            let _l = dir.lock()?;
            out.spares = self
                .members(&rec, &dir)?
                .iter()
                .filter(|m| m.1 == Standing::Ready)
                .count() as u32;
        }
        Ok(out)
    }

    /// The locked part of a refill round: remove what does not fit, and hand out work.
    fn plan_refill(
        &self,
        rec: &PoolRecord,
        dir: &PoolDir,
        report: &Mutex<RefillReport>,
        progress: &(dyn Fn(RefillProgress) + Sync),
    ) -> Result<Vec<Job>> {
        let members = self.members(rec, dir)?;
        let making = dir.all_making()?;
        // A VM still being made (its maker holds its `making` file) may already have its
        // record: it is counted once, as being made, and never removed or warmed from here
        // (its create is still in flight, so a delete would fail with BUSY).
        let mut spares: Vec<(&VmRecord, Standing, State)> = members
            .iter()
            .filter(|m| m.1 != Standing::Owned)
            .filter(|m| !making.iter().any(|(u, _)| *u == m.0.uuid))
            .map(|m| (&m.0, m.1, m.2))
            .collect();
        // Outdated spares go, and the coldest beyond the target.
        let disk_gib = self.pool_disk_gib(&rec.spec)?;
        let mut remove: Vec<Uuid> = spares
            .iter()
            .filter(|s| self.spare_stale(rec, disk_gib, s.0))
            .map(|s| s.0.uuid)
            .collect();
        spares.retain(|s| !remove.contains(&s.0.uuid));
        spares.sort_by_key(|s| plan::keep_order(s.1));
        let making_spares = making.iter().filter(|m| m.1.is_empty()).count();
        let target = rec.spec.spares as usize;
        let beyond = plan::beyond_target(spares.len(), making_spares, target);
        for s in spares.iter().rev().take(beyond) {
            remove.push(s.0.uuid);
        }
        spares.retain(|s| !remove.contains(&s.0.uuid));
        for u in &remove {
            // Unoffered first, under the pool lock: no claim can take it any more.
            dir.remove_spare(u)?;
            self.remove_vm_now(*u)?;
            dir.remove_member(u)?;
            lock(report).removed += 1;
        }
        let mut jobs = Vec::new();
        // Spares below the pool's warmth, which nobody is warming.
        for s in &spares {
            let needs = match plan::spare_action(self.warmth_now(rec), s.1) {
                SpareAction::Offer => {
                    dir.add_spare(&s.0.uuid)?;
                    false
                }
                SpareAction::Warm => true,
                SpareAction::Leave => false,
            };
            if needs && !runtime::lock_held(&self.run_dir(&s.0.uuid).path().join(WARM_LOCK))? {
                jobs.push(Job::Warm(s.0.uuid));
            }
        }
        let total = dir.members()?.len();
        let room = (rec.spec.max_vms as usize).saturating_sub(total);
        // Every spare missing is planned now; `refill` makes them `parallel` at a time from
        // one queue (no round waits for its slowest spare before the next starts).
        let missing = plan::to_make(spares.len(), making_spares, target, room);
        let ready = spares.iter().filter(|s| s.1 == Standing::Ready).count() as u32;
        progress(RefillProgress {
            ready,
            target: rec.spec.spares,
            working: (missing + making_spares + jobs.len()) as u32,
        });
        if target > spares.len() + making_spares {
            let new: Vec<Uuid> = (0..missing).map(|_| Uuid::new_v4()).collect();
            dir.add_members(&new)?;
            for u in new {
                jobs.push(Job::Make(u, dir.begin_making(&u, "")?));
            }
        }
        Ok(jobs)
    }

    /// Bring a spare to the pool's warmth and offer it. Skips a spare someone else warms or
    /// that an owner took meanwhile.
    fn warm(
        &self,
        rec: &PoolRecord,
        dir: &PoolDir,
        u: Uuid,
        report: &Mutex<RefillReport>,
    ) -> Result<()> {
        let run = self.run_dir(&u);
        run.ensure()?;
        let Some(_warming) = runtime::try_lock(&run.path().join(WARM_LOCK))? else {
            return Ok(());
        };
        let is_spare = |r: &VmRecord| r.owner.is_empty();
        let r = match self.catalog.vm(&u)? {
            Some(r) if is_spare(&r) => r,
            _ => return Ok(()),
        };
        let accel = rec.spec.accel;
        let warmth = self.warmth_now(rec);
        let res = (|| -> Result<bool> {
            match warmth {
                Warmth::Disk => Ok(true),
                Warmth::Template => {
                    match self.vm(u)?.state {
                        State::Stopped | State::Failed => {
                            self.start_vm_if(u, &StartOptions { accel }, |_| true)?;
                        }
                        State::Paused if r.restore.is_some() => {}
                        other => {
                            return Err(Error::InvalidState(format!(
                                "spare {u} is {}, not waiting for its template",
                                other.as_str()
                            )))
                        }
                    }
                    Ok(true)
                }
                Warmth::Paused => {
                    let log_from = std::fs::metadata(run.serial_log()).map_or(0, |m| m.len());
                    let state = self.vm(u)?.state;
                    let from = match state {
                        State::Stopped | State::Failed => {
                            self.start_vm_if(u, &StartOptions { accel }, |_| true)?;
                            log_from
                        }
                        // Booted by someone who died before pausing it: look at its whole log.
                        _ => 0,
                    };
                    if state != State::Paused {
                        self.wait_ready(u, &rec.spec, from)?;
                    }
                    Ok(self.pause_vm_if(u, is_spare)?.1)
                }
            }
        })();
        match res {
            Ok(true) => {
                let _l = dir.lock()?;
                if self.catalog.vm(&u)?.is_some_and(|r| is_spare(&r)) {
                    dir.add_spare(&u)?;
                    lock(report).warmed += u32::from(warmth != Warmth::Disk);
                }
                Ok(())
            }
            Ok(false) => Ok(()),
            Err(e) => {
                // A spare that cannot be warmed is not kept half-ready; it goes if still a spare.
                let _l = dir.lock()?;
                if self.catalog.vm(&u)?.is_some_and(|r| is_spare(&r)) {
                    dir.remove_spare(&u)?;
                    self.remove_vm_now(u)?;
                    dir.remove_member(&u)?;
                }
                Err(e)
            }
        }
    }
}
