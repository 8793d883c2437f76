//! Handing out pool VMs: acquire (the owner's VM, a ready spare, or a new VM) and release.

use crate::error::{Error, Result};
use crate::pool::claims::{MakingFile, PoolDir};
use crate::pool::plan::{self, Standing};
use crate::pool::{AcquireOptions, AcquirePath, Acquired, Warmth};
use crate::store::catalog::records::PoolRecord;
use crate::store::Store;
use crate::validate;
use crate::vm::crud::Membership;
use crate::vm::launch::StartOptions;
use crate::vm::runtime::{self};
use crate::vm::{State, Vm};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Longest an acquire waits for another process that is making this owner's VM.
const OWNER_WAIT: Duration = Duration::from_secs(120);

/// Longest `acquire` waits for the owner's VM to finish a transition someone else began
/// (a start, or a stop that may take its full ACPI timeout).
const TRANSITION_WAIT: Duration = Duration::from_secs(90);

/// What the locked part of `acquire` decided.
enum Decision {
    /// The owner holds this VM.
    Held(Uuid),
    /// Another process is making the owner's VM: wait for it.
    Wait,
    /// This spare is the owner's now; how ready it was.
    Claimed(Uuid, &'static str),
    /// Make a VM for the owner (the making-file is held until it exists).
    Make(Uuid, MakingFile),
}

/// An acquire's result before it is known: a redirect to a running VM, no steps yet.
fn redirect_out() -> Acquired {
    Acquired {
        vm: placeholder_vm(),
        path: AcquirePath::Redirect,
        was: "running",
        steps: Vec::new(),
        total_ms: 0.0,
        console: None,
    }
}

fn placeholder_vm() -> Vm {
    Vm {
        uuid: Uuid::nil(),
        alias: String::new(),
        owner: String::new(),
        image_uuid: Uuid::nil(),
        vcpus: 0,
        ram_mib: 0,
        disk_gib: 0,
        created_at: String::new(),
        state: State::Stopped,
        disk_path: String::new(),
        disk_format: crate::image::DiskFormat::Raw,
        disk_size_bytes: 0,
        clone_method: String::new(),
        firmware: Default::default(),
        accel: None,
        mac: String::new(),
        vmgenid: Uuid::nil(),
        last_exit: None,
        caps: Default::default(),
        pool: None,
        user: None,
        suspended: None,
        autoboot: false,
        session_ends_at: None,
    }
}

impl Store {
    /// Get a VM of pool `name` for `owner`, running: the one they hold (the redirect),
    /// else a spare, else a new one, made on the spot if the pool is below its maximum
    /// (`POOL_EXHAUSTED` otherwise). Safe from any number of threads and processes at once:
    /// no VM goes to two owners, no owner gets more than the pool allows.
    pub fn acquire(&self, name: &str, owner: &str, opts: &AcquireOptions) -> Result<Acquired> {
        crate::probes::op("pool-acquire", format_args!("{name}/{owner}"), || {
            self.acquire_op(name, owner, opts)
        })
    }

    fn acquire_op(&self, name: &str, owner: &str, opts: &AcquireOptions) -> Result<Acquired> {
        let t0 = Instant::now();
        let mut since = t0;
        validate::name("owner", owner)?;
        if let Some(u) = &opts.user {
            u.validate()?;
        }
        // An owner whose home is in their desktop of another pool gets nothing made here.
        if self.pool_record(name)?.spec.home_gib.is_some() {
            self.home_free_for(owner, name)?;
        }
        let dir = self.pool_dir(name);
        let mut out = redirect_out();
        // The common case at 3 a.m.: the owner comes back. No lock, a few small reads.
        if !opts.another {
            let (held, _) = self.held_by(&dir, name, owner, false)?;
            if let Some(u) = held.first() {
                out.step("find", &mut since);
                return self.hand_over(*u, out, opts, t0, since, false);
            }
        }
        loop {
            let decision = {
                let _l = dir.lock()?;
                let rec = self.pool_record(name)?;
                out.step("lock", &mut since);
                self.decide(&rec, &dir, owner, opts)?
            };
            match decision {
                Decision::Wait => {
                    if t0.elapsed() > OWNER_WAIT {
                        return Err(Error::Busy(format!(
                            "another process has been making {owner}'s VM of pool {name} for {} s",
                            OWNER_WAIT.as_secs()
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Decision::Held(u) => {
                    out.step("find", &mut since);
                    return self.hand_over(u, out, opts, t0, since, false);
                }
                Decision::Claimed(u, was) => {
                    out.step("claim", &mut since);
                    out.path = AcquirePath::Spare;
                    out.was = was;
                    return self.hand_over(u, out, opts, t0, since, false);
                }
                Decision::Make(u, making) => {
                    let rec = self.pool_record(name)?;
                    let made = self.make_pool_vm(&rec, u, owner);
                    drop(making);
                    if let Err(e) = made {
                        let _l = dir.lock()?;
                        if self.catalog.vm(&u)?.is_none() {
                            dir.remove_owned(owner, &u)?;
                            dir.remove_member(&u)?;
                        }
                        return Err(e);
                    }
                    out.step("create", &mut since);
                    out.path = AcquirePath::Created;
                    out.was = "disk";
                    return self.hand_over(u, out, opts, t0, since, false);
                }
            }
        }
    }

    /// The locked part of `acquire`.
    fn decide(
        &self,
        rec: &PoolRecord,
        dir: &PoolDir,
        owner: &str,
        opts: &AcquireOptions,
    ) -> Result<Decision> {
        let name = rec.spec.name.as_str();
        let (held, making) = self.held_by(dir, name, owner, true)?;
        if !opts.another {
            if let Some(u) = held.first() {
                return Ok(Decision::Held(*u));
            }
            if making {
                return Ok(Decision::Wait);
            }
        }
        let holds = held.len() + usize::from(making);
        if holds >= rec.spec.max_per_owner as usize {
            return Err(Error::PoolExhausted(format!(
                "{owner} holds {holds} VM(s) of pool {name}, its maximum per owner"
            )));
        }
        if let Some((u, was)) = self.claim_spare(rec, dir, owner)? {
            return Ok(Decision::Claimed(u, was));
        }
        let total = dir.members()?.len();
        let total = if total >= rec.spec.max_vms as usize {
            // Entries of VMs deleted behind the pool's back do not count.
            self.members(rec, dir)?.len() + dir.all_making()?.len()
        } else {
            total
        };
        if total >= rec.spec.max_vms as usize {
            return Err(Error::PoolExhausted(format!(
                "pool {name} has {total} VMs, its maximum (max_vms {}), and no spare",
                rec.spec.max_vms
            )));
        }
        let u = Uuid::new_v4();
        dir.add_member(&u)?;
        dir.add_owned(owner, &u)?;
        let making = dir.begin_making(&u, owner)?;
        Ok(Decision::Make(u, making))
    }

    /// Claim the readiest spare for `owner`. Call under the pool lock.
    fn claim_spare(
        &self,
        rec: &PoolRecord,
        dir: &PoolDir,
        owner: &str,
    ) -> Result<Option<(Uuid, &'static str)>> {
        let name = rec.spec.name.as_str();
        let disk_gib = self.pool_disk_gib(&rec.spec)?;
        let mut candidates = Vec::new();
        for u in dir.spares()? {
            match self.catalog.vm(&u)? {
                Some(r)
                    if r.pool.as_deref() == Some(name)
                        && r.owner.is_empty()
                        && !r.template_build =>
                {
                    if self.spare_stale(rec, disk_gib, &r) {
                        continue;
                    }
                    let live = self.live(&r).state;
                    let Some((rank, was)) = plan::spare_rank(live, r.restore.is_some()) else {
                        continue;
                    };
                    candidates.push((rank, u, was));
                }
                _ => dir.remove_spare(&u)?,
            }
        }
        candidates.sort_by_key(|c| c.0);
        for (_, u, was) in candidates {
            let run = self.run_dir(&u);
            run.ensure()?;
            // Busy: being warmed or changed this instant; another spare will do.
            let Some(_lc) = runtime::try_lock(&run.lock())? else {
                continue;
            };
            let Some(mut r) = self.catalog.vm(&u)? else {
                continue;
            };
            if !r.owner.is_empty() {
                continue;
            }
            dir.add_owned(owner, &u)?;
            crate::fail_point!("pool_acquire.noted");
            r.owner = owner.to_owned();
            r.claimed_at = Some(crate::now_rfc3339());
            self.catalog.put_vm(&r)?;
            crate::fail_point!("pool_acquire.claimed");
            dir.remove_spare(&u)?;
            return Ok(Some((u, was)));
        }
        Ok(None)
    }

    /// Make a VM of the pool (its entries are written; the caller holds its making-file).
    pub(crate) fn make_pool_vm(&self, rec: &PoolRecord, u: Uuid, owner: &str) -> Result<Vm> {
        let (image, restore) = self.pool_source(rec);
        let alias = format!("{}-{}", rec.spec.name, &u.to_string()[..8]);
        let mut spec = self.pool_vm_spec(&rec.spec, &alias, owner).uuid(u);
        spec.image_uuid = image;
        crate::fail_point!("pool_make.before_create");
        self.create_vm_in(
            &spec,
            Some(&Membership {
                pool: rec.spec.name.clone(),
                template_build: false,
                restore,
            }),
        )
    }

    /// Make the owner's VM run (start, resume, or load its template's state) and finish
    /// the acquire. `only_marked`: see `make_running`.
    fn hand_over(
        &self,
        u: Uuid,
        mut out: Acquired,
        opts: &AcquireOptions,
        t0: Instant,
        mut since: Instant,
        only_marked: bool,
    ) -> Result<Acquired> {
        // A new owner's desktop carries their user from its first start: a VM booting from
        // disk reads it from the seed that start writes.
        if out.path != AcquirePath::Redirect {
            if let Some(user) = &opts.user {
                self.set_user(u, user)?;
            }
        }
        let (mut vm, was) = self.make_running(u, only_marked)?;
        let spec = vm
            .pool
            .as_deref()
            .and_then(|p| self.catalog.pool(p).ok().flatten())
            .map(|p| p.spec);
        // A desktop handed out is to run: a host start brings it back if the host goes down.
        // The owner's session starts with the hand-out, or with the acquire that brought the
        // desktop back to run; a redirect to one that runs goes on with its session.
        let max_session = spec.as_ref().and_then(|s| s.max_session_s);
        let starts = out.path != AcquirePath::Redirect
            || !matches!(was, "running" | "booting" | "paused")
            || (vm.session_ends_at.is_none() && max_session.is_some());
        let ends = starts.then(|| max_session.map(crate::pool::session_limit::end_after));
        let marked = self.mark_to_run(&u, ends)?;
        vm.autoboot = true;
        vm.session_ends_at = Vm::from(&marked).session_ends_at;
        self.mark_seen(&u);
        if out.path == AcquirePath::Redirect {
            out.was = was;
        }
        out.step(
            match was {
                "paused" => "resume",
                "suspended" => "wake",
                "waiting" => "restore",
                "running" | "booting" => "check",
                _ => "start",
            },
            &mut since,
        );
        // A clone of a memory template is handed out only with its own identity, and a new
        // owner's desktop with their user; one whose customization fails is destroyed (its
        // owner may ask again).
        let rec = self.record(&u)?;
        // A VM that just started booting from disk with a NoCloud seed reads its user there.
        let seeded = was == "disk"
            && crate::vm::seed::wanted(
                self.image_tag(rec.image_uuid, crate::vm::seed::CLOUD_INIT_TAG)
                    .map(serde_json::Value::String)
                    .as_ref(),
            );
        let program = rec.identity_pending.clone().or_else(|| {
            (out.path != AcquirePath::Redirect && opts.user.is_some() && !seeded)
                .then(|| self.identity_program(&rec))
                .flatten()
        });
        if let Some(program) = program {
            let fresh = rec.identity_pending.is_some();
            let given = self.give_identity(u, &program, fresh);
            if let Err(e) = given {
                // A host start reports it and leaves the desktop: its owner's acquire decides.
                if only_marked {
                    return Err(e);
                }
                eprintln!("vmpool: VM {u}: no identity of its own ({e}); destroying it");
                let _ = self.kill_vm(u);
                let _ = self.release(u);
                if let Some(p) = &rec.pool {
                    self.count_customization_failure(p, &format!("VM {u}: {e}"));
                }
                return Err(Error::Hypervisor(format!(
                    "VM {u} could not be given its own identity, so it was destroyed: {e}"
                )));
            }
            out.step("identity", &mut since);
            vm = self.vm(u)?;
        }
        // The owner's home, in every desktop of theirs from a pool that has homes.
        if let Some(gib) = spec.and_then(|s| s.home_gib) {
            self.attach_home(u, gib << 30, !matches!(was, "disk" | "booting"))?;
            out.step("home", &mut since);
            vm = self.vm(u)?;
        }
        if let Some(ttl) = opts.console_ttl {
            out.console = Some(self.console(u, ttl)?);
            out.step("console", &mut since);
        }
        out.vm = vm;
        out.total_ms = t0.elapsed().as_secs_f64() * 1000.0;
        Ok(out)
    }

    /// Bring an owner's desktop back to running as their acquire would (`host start`): its
    /// QEMU started, its identity given if it never got one, its home plugged in.
    pub(crate) fn bring_back(&self, u: Uuid) -> Result<Vm> {
        let t0 = Instant::now();
        let out = redirect_out();
        self.hand_over(u, out, &AcquireOptions::default(), t0, t0, true)
            .map(|a| a.vm)
    }

    /// Bring a VM to running from whatever state it is in; what it was. `only_marked`: a
    /// host start's, which starts it only if it is still marked to run (a stop asked for
    /// since is left alone).
    fn make_running(&self, u: Uuid, only_marked: bool) -> Result<(Vm, &'static str)> {
        let mut was = None;
        let deadline = Instant::now() + TRANSITION_WAIT;
        while Instant::now() < deadline {
            let vm = self.vm(u)?;
            let r = self
                .catalog
                .vm(&u)?
                .ok_or_else(|| Error::not_found("VM", u.to_string()))?;
            let accel = r.accel;
            match vm.state {
                State::Running => return Ok((vm, was.unwrap_or("running"))),
                State::Paused => {
                    was.get_or_insert(if r.restore.is_some() {
                        "waiting"
                    } else {
                        "paused"
                    });
                    match self.resume_vm(u) {
                        Ok(v) if v.state == State::Running => return Ok((v, was.unwrap_or(""))),
                        Ok(_) | Err(Error::InvalidState(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
                State::Stopped | State::Failed | State::Suspended => {
                    // A new clone of a memory template starts by loading its state: its guest
                    // is up as soon as it runs, as a waiting spare's is; a suspended VM wakes
                    // from its own saved state.
                    let restores = r
                        .restore
                        .as_ref()
                        .is_some_and(|rs| rs.memory.exists() && rs.state.exists());
                    was.get_or_insert(if vm.state == State::Suspended {
                        "suspended"
                    } else if restores {
                        "waiting"
                    } else {
                        "disk"
                    });
                    match self
                        .start_vm_if(u, &StartOptions { accel }, |r| !only_marked || r.autoboot)
                    {
                        Ok(Some(_)) | Err(Error::AlreadyRunning(_)) => {}
                        Ok(None) => {
                            return Err(Error::InvalidState(format!(
                                "VM {u} was stopped meanwhile; left stopped"
                            )))
                        }
                        // Its last run's supervisor still records its end: a moment later.
                        Err(Error::Busy(_)) => std::thread::sleep(Duration::from_millis(10)),
                        Err(e) => return Err(e),
                    }
                }
                State::Starting | State::Stopping => {
                    was.get_or_insert("booting");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        Err(Error::Timeout(format!(
            "VM {u} did not come to run within {} s",
            TRANSITION_WAIT.as_secs()
        )))
    }

    /// Give a VM back to its pool: destroyed, or (release `reset`) destroyed with a fresh
    /// spare made in its place at once.
    pub fn release(&self, u: Uuid) -> Result<()> {
        crate::probes::op("pool-release", u, || self.release_op(u))
    }

    fn release_op(&self, u: Uuid) -> Result<()> {
        let r = self
            .catalog
            .vm(&u)?
            .ok_or_else(|| Error::not_found("VM", u.to_string()))?;
        let Some(name) = r.pool.clone() else {
            return Err(Error::invalid(format!(
                "VM {u} is not from a pool; delete it instead"
            )));
        };
        if r.owner.is_empty() {
            return Err(Error::InvalidState(format!(
                "VM {u} is a spare of pool {name}, held by nobody"
            )));
        }
        let rec = self.catalog.pool(&name)?.filter(|p| !p.deleting);
        self.wake_for_home(u)?;
        self.sync_home(u);
        self.remove_vm_now(u)?;
        self.unclaim_home(&r.owner, u);
        let dir = self.pool_dir(&name);
        {
            let _l = dir.lock()?;
            dir.remove_owned(&r.owner, &u)?;
            dir.remove_member(&u)?;
        }
        if let Some(rec) = rec {
            if rec.spec.on_release == crate::pool::OnRelease::Reset {
                self.replace_spare(&rec)?;
            }
        }
        Ok(())
    }

    /// Count a clone destroyed because its customization failed (best effort: the count is
    /// for operators; the failure itself is the caller's error).
    fn count_customization_failure(&self, pool: &str, why: &str) {
        let dir = self.pool_dir(pool);
        let Ok(_l) = dir.lock() else { return };
        if let Ok(Some(mut rec)) = self.catalog.pool(pool) {
            rec.customization_failures += 1;
            rec.last_customization_failure = Some(format!(
                "{}: {}",
                crate::now_rfc3339(),
                why.chars().take(500).collect::<String>()
            ));
            let _ = self.catalog.put_pool(&rec);
        }
    }

    /// Make one spare now if the pool is below its target (release `reset`), and start it
    /// towards its warmth without waiting for the guest.
    fn replace_spare(&self, rec: &PoolRecord) -> Result<()> {
        let dir = self.pool_dir(&rec.spec.name);
        let made = {
            let _l = dir.lock()?;
            let members = self.members(rec, &dir)?;
            let spares = members.iter().filter(|m| m.1 != Standing::Owned).count()
                + dir.all_making()?.iter().filter(|m| m.1.is_empty()).count();
            let total = dir.members()?.len();
            if spares >= rec.spec.spares as usize || total >= rec.spec.max_vms as usize {
                return Ok(());
            }
            let u = Uuid::new_v4();
            dir.add_member(&u)?;
            (u, dir.begin_making(&u, "")?)
        };
        let (u, making) = made;
        let vm = self.make_pool_vm(rec, u, "");
        drop(making);
        vm?;
        let opts = StartOptions {
            accel: rec.spec.accel,
        };
        match self.warmth_now(rec) {
            Warmth::Disk => dir.add_spare(&u),
            Warmth::Template => {
                self.start_vm_if(u, &opts, |_| true)?;
                dir.add_spare(&u)
            }
            // Booting and pausing it is refill's (it waits for the guest).
            Warmth::Paused => self.start_vm_if(u, &opts, |_| true).map(drop),
        }
    }
}
