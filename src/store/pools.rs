//! Pools of a store (see `crate::pool`): create, list, get, update, delete; acquire, release,
//! refill. How claims stay exact across threads, processes and crashes is in
//! `pool::claims`.

use super::catalog::records::{PoolRecord, Restore, VmRecord, SCHEMA};
use super::vms::Membership;
use super::{StartOptions, Store};
use crate::error::{Error, Result};
use crate::pool::claims::{Making, MakingFile, PoolDir};
use crate::pool::{
    AcquireOptions, AcquirePath, Acquired, Pool, PoolSpec, PoolStatus, PoolUpdate, RefillOptions,
    RefillProgress, RefillReport, TemplateInfo, Warmth,
};
use crate::validate;
use crate::vm::runtime;
use crate::vm::{State, Vm, VmSpec};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
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

/// How a pool VM stands, for counting and choosing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    Owned,
    Ready,
    Warming,
    Cold,
}

impl Store {
    fn pool_dir(&self, name: &str) -> PoolDir {
        PoolDir::new(self.catalog_dir(), name)
    }

    pub(crate) fn pool_record(&self, name: &str) -> Result<PoolRecord> {
        validate::name("pool name", name)?;
        match self.catalog.pool(name)? {
            Some(r) if r.deleting => Err(Error::NotFound {
                kind: "pool",
                id: format!("{name} (being deleted)"),
            }),
            Some(r) => Ok(r),
            None => Err(Error::not_found("pool", name)),
        }
    }

    /// The image a new VM of the pool is cloned from, and where it resumes from: the
    /// current memory template for warmth `template` (once built), else the pool's image.
    fn pool_source(&self, rec: &PoolRecord) -> (Uuid, Option<Restore>) {
        if rec.spec.warmth == Warmth::Template {
            if let Some(t) = self.current_template(rec) {
                return (
                    t.image,
                    Some(Restore {
                        template: t.image,
                        memory: t.memory,
                        state: t.state,
                    }),
                );
            }
        }
        (rec.spec.image_uuid, None)
    }

    /// The warmth the pool's spares are kept at now: a pool of warmth `template` whose
    /// template is not built (yet, or it failed) keeps clones of its image, not started.
    fn warmth_now(&self, rec: &PoolRecord) -> Warmth {
        match rec.spec.warmth {
            Warmth::Template if self.current_template(rec).is_none() => Warmth::Disk,
            w => w,
        }
    }

    /// The disk size of the pool's VMs in GiB.
    fn pool_disk_gib(&self, spec: &PoolSpec) -> Result<u64> {
        let image = self
            .catalog
            .image(&spec.image_uuid)?
            .ok_or_else(|| Error::not_found("image", spec.image_uuid.to_string()))?;
        let bytes = self
            .pool_vm_spec(spec, "", "")
            .disk_bytes(image.size_bytes, &self.limits)?;
        Ok(bytes >> 30)
    }

    fn pool_vm_spec(&self, spec: &PoolSpec, alias: &str, owner: &str) -> VmSpec {
        let mut v = VmSpec::new(spec.image_uuid)
            .alias(alias)
            .owner(owner)
            .vcpus(spec.vcpus)
            .ram_mib(spec.ram_mib);
        if let Some(d) = spec.disk_gib {
            v = v.disk_gib(d);
        }
        if let Some(a) = spec.accel {
            v = v.accel(a);
        }
        v
    }

    /// Whether a spare no longer fits its pool (another image, flavor or template): refill
    /// replaces it, acquire does not hand it out.
    fn spare_stale(&self, rec: &PoolRecord, disk_gib: u64, r: &VmRecord) -> bool {
        let (image, _) = self.pool_source(rec);
        r.image_uuid != image
            || r.vcpus != rec.spec.vcpus
            || r.ram_mib != rec.spec.ram_mib
            || r.disk_gib != disk_gib
    }

    fn standing(&self, rec: &PoolRecord, disk_gib: u64, r: &VmRecord) -> (Standing, State) {
        let live = self.live(r).state;
        if !r.owner.is_empty() {
            return (Standing::Owned, live);
        }
        if self.spare_stale(rec, disk_gib, r) {
            return (Standing::Cold, live);
        }
        let s = match (self.warmth_now(rec), live) {
            (Warmth::Disk, State::Stopped) => Standing::Ready,
            (Warmth::Disk, _) => Standing::Cold,
            (Warmth::Paused, State::Paused) => Standing::Ready,
            (Warmth::Paused, State::Running | State::Starting) => Standing::Warming,
            (Warmth::Template, State::Paused) if r.restore.is_some() => Standing::Ready,
            (Warmth::Template, State::Starting) => Standing::Warming,
            _ => Standing::Cold,
        };
        (s, live)
    }

    /// The pool's VMs with their standing; entries whose VM is gone (and nobody is making
    /// it) are dropped. Call under the pool lock.
    fn members(&self, rec: &PoolRecord, dir: &PoolDir) -> Result<Vec<(VmRecord, Standing, State)>> {
        let disk_gib = self.pool_disk_gib(&rec.spec)?;
        let mut out = Vec::new();
        for u in dir.members()? {
            match self.catalog.vm(&u)? {
                Some(r) if r.pool.as_deref() == Some(rec.spec.name.as_str()) => {
                    let (s, live) = self.standing(rec, disk_gib, &r);
                    out.push((r, s, live));
                }
                _ => {
                    if dir.making(&u)? == Making::No {
                        dir.remove_member(&u)?;
                    }
                }
            }
        }
        Ok(out)
    }

    /// The VMs `owner` holds in the pool (checked against their records; stale entries
    /// dropped), and whether a live process is making one for them. Without the pool lock
    /// nothing is dropped.
    fn held_by(
        &self,
        dir: &PoolDir,
        pool: &str,
        owner: &str,
        locked: bool,
    ) -> Result<(Vec<Uuid>, bool)> {
        let mut held = Vec::new();
        let mut making = false;
        for u in dir.owned(owner)? {
            match self.catalog.vm(&u)? {
                Some(r) if r.pool.as_deref() == Some(pool) && r.owner == owner => held.push(u),
                _ if !locked => making = true,
                _ => match dir.making(&u)? {
                    Making::Live(_) => making = true,
                    Making::No => dir.remove_owned(owner, &u)?,
                },
            }
        }
        Ok((held, making))
    }

    fn pool_view(&self, rec: &PoolRecord) -> Result<Pool> {
        let dir = self.pool_dir(&rec.spec.name);
        let mut status = PoolStatus::default();
        let disk_gib = self.pool_disk_gib(&rec.spec).unwrap_or(0);
        for u in dir.members()? {
            match self.catalog.vm(&u)? {
                Some(r) if r.pool.as_deref() == Some(rec.spec.name.as_str()) => {
                    status.total += 1;
                    match self.standing(rec, disk_gib, &r).0 {
                        Standing::Owned => status.owned += 1,
                        Standing::Ready => status.spares_ready += 1,
                        Standing::Warming => status.spares_warming += 1,
                        Standing::Cold => status.spares_cold += 1,
                    }
                }
                // Being made (or a leftover the next locked call drops).
                _ if dir.path().join("making").join(u.to_string()).exists() => {
                    status.total += 1;
                    status.spares_warming += 1;
                }
                _ => {}
            }
        }
        Ok(Pool {
            spec: rec.spec.clone(),
            created_at: rec.created_at.clone(),
            updated_at: rec.updated_at.clone(),
            status,
            template: rec.template.as_ref().map(|t| TemplateInfo {
                image_uuid: t.image,
                made_at: t.made_at.clone(),
                memory: t.memory.clone(),
            }),
        })
    }

    fn check_pool_image(&self, spec: &PoolSpec) -> Result<()> {
        match self.catalog.image(&spec.image_uuid)? {
            Some(i) if i.template_of.is_none() => {}
            _ => return Err(Error::not_found("image", spec.image_uuid.to_string())),
        }
        self.pool_disk_gib(spec).map(drop)
    }

    /// Create a pool. Its spares are made by `refill`.
    pub fn create_pool(&self, spec: &PoolSpec) -> Result<Pool> {
        spec.check(&self.limits)?;
        self.check_pool_image(spec)?;
        let dir = self.pool_dir(&spec.name);
        let _l = dir.lock()?;
        if self.catalog.pool(&spec.name)?.is_some() {
            return Err(Error::AlreadyExists(format!(
                "pool {} already exists",
                spec.name
            )));
        }
        // Whatever a pool of this name left (a delete that died after its record went) is
        // not this pool's.
        dir.remove_all()?;
        dir.ensure()?;
        let now = crate::now_rfc3339();
        let rec = PoolRecord {
            schema: SCHEMA,
            spec: spec.clone(),
            created_at: now.clone(),
            updated_at: now,
            deleting: false,
            template: None,
            extra: Default::default(),
        };
        self.catalog.put_pool(&rec)?;
        self.pool_view(&rec)
    }

    /// All pools, by name.
    pub fn pools(&self) -> Result<Vec<Pool>> {
        self.catalog
            .pools()?
            .iter()
            .filter(|r| !r.deleting)
            .map(|r| self.pool_view(r))
            .collect()
    }

    /// One pool.
    pub fn pool(&self, name: &str) -> Result<Pool> {
        self.pool_view(&self.pool_record(name)?)
    }

    /// Change a pool's settings. VMs that owners hold keep theirs; spares that no longer fit
    /// are replaced by the next refill (and the memory template rebuilt).
    pub fn update_pool(&self, name: &str, u: &PoolUpdate) -> Result<Pool> {
        let dir = self.pool_dir(name);
        let _l = dir.lock()?;
        let mut rec = self.pool_record(name)?;
        let spec = u.apply(&rec.spec);
        spec.check(&self.limits)?;
        self.check_pool_image(&spec)?;
        rec.spec = spec;
        rec.updated_at = crate::now_rfc3339();
        self.catalog.put_pool(&rec)?;
        self.pool_view(&rec)
    }

    /// Delete a pool: its spares, its memory templates, its record. Refused (`IN_USE`) while
    /// owners hold VMs of it: release them first.
    pub fn delete_pool(&self, name: &str) -> Result<()> {
        validate::name("pool name", name)?;
        let dir = self.pool_dir(name);
        let _l = dir.lock()?;
        let mut rec = self
            .catalog
            .pool(name)?
            .ok_or_else(|| Error::not_found("pool", name))?;
        if !rec.deleting {
            let members = self.members(&rec, &dir)?;
            let mut owners: Vec<String> = members
                .iter()
                .filter(|(_, s, _)| *s == Standing::Owned)
                .map(|(r, _, _)| format!("{} ({})", r.owner, r.uuid))
                .collect();
            owners.extend(
                dir.all_making()?
                    .into_iter()
                    .filter(|(_, o)| !o.is_empty())
                    .map(|(u, o)| format!("{o} ({u}, being made)")),
            );
            if !owners.is_empty() {
                return Err(Error::InUse(format!(
                    "pool {name} has {} VM(s) held by owners: {}; release them first",
                    owners.len(),
                    owners.join(", ")
                )));
            }
            rec.deleting = true;
            self.catalog.put_pool(&rec)?;
        }
        // From here on the pool is gone for every caller; a crash resumes at the next delete.
        for r in self.catalog.vms(None)? {
            if r.pool.as_deref() == Some(name) {
                self.remove_vm_now(r.uuid)?;
            }
        }
        self.collect_templates(name, true)?;
        self.catalog.remove_pool(name)?;
        dir.remove_all()
    }

    /// Kill a VM and delete it (a spare, a released VM: nobody needs a clean shutdown).
    fn remove_vm_now(&self, u: Uuid) -> Result<()> {
        match self.kill_vm(u) {
            Ok(_) | Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        match self.delete_vm(u) {
            Ok(()) | Err(Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Get a VM of pool `name` for `owner`, running: the one they hold (the redirect),
    /// else a spare, else a new one, made on the spot if the pool is below its maximum
    /// (`POOL_EXHAUSTED` otherwise). Safe from any number of threads and processes at once:
    /// no VM goes to two owners, no owner gets more than the pool allows.
    pub fn acquire(&self, name: &str, owner: &str, opts: &AcquireOptions) -> Result<Acquired> {
        let t0 = Instant::now();
        let mut since = t0;
        validate::name("owner", owner)?;
        let dir = self.pool_dir(name);
        let mut out = Acquired {
            vm: placeholder_vm(),
            path: AcquirePath::Redirect,
            was: "running",
            steps: Vec::new(),
            total_ms: 0.0,
            console: None,
        };
        // The common case at 3 a.m.: the owner comes back. No lock, a few small reads.
        if !opts.another {
            let (held, _) = self.held_by(&dir, name, owner, false)?;
            if let Some(u) = held.first() {
                out.step("find", &mut since);
                return self.hand_over(*u, out, opts, t0, since);
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
                    return self.hand_over(u, out, opts, t0, since);
                }
                Decision::Claimed(u, was) => {
                    out.step("claim", &mut since);
                    out.path = AcquirePath::Spare;
                    out.was = was;
                    return self.hand_over(u, out, opts, t0, since);
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
                    return self.hand_over(u, out, opts, t0, since);
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
                    let (rank, was) = match (live, r.restore.is_some()) {
                        (State::Paused, true) => (0, "waiting"),
                        (State::Paused, false) => (0, "paused"),
                        (State::Running, _) => (1, "booting"),
                        (State::Starting, _) => (2, "booting"),
                        (State::Stopped, _) => (3, "disk"),
                        (State::Failed, _) => (4, "disk"),
                        (State::Stopping, _) => continue,
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
    fn make_pool_vm(&self, rec: &PoolRecord, u: Uuid, owner: &str) -> Result<Vm> {
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
    /// the acquire.
    fn hand_over(
        &self,
        u: Uuid,
        mut out: Acquired,
        opts: &AcquireOptions,
        t0: Instant,
        mut since: Instant,
    ) -> Result<Acquired> {
        let (vm, was) = self.make_running(u)?;
        if out.path == AcquirePath::Redirect {
            out.was = was;
        }
        out.step(
            match was {
                "paused" => "resume",
                "waiting" => "restore",
                "running" | "booting" => "check",
                _ => "start",
            },
            &mut since,
        );
        if let Some(ttl) = opts.console_ttl {
            out.console = Some(self.console(u, ttl)?);
            out.step("console", &mut since);
        }
        out.vm = vm;
        out.total_ms = t0.elapsed().as_secs_f64() * 1000.0;
        Ok(out)
    }

    /// Bring a VM to running from whatever state it is in; what it was.
    fn make_running(&self, u: Uuid) -> Result<(Vm, &'static str)> {
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
                State::Stopped | State::Failed => {
                    was.get_or_insert("disk");
                    match self.start_vm(u, &StartOptions { accel }) {
                        Ok(_) | Err(Error::AlreadyRunning(_)) => {}
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
        self.remove_vm_now(u)?;
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
        match self.warmth_now(rec) {
            Warmth::Disk => dir.add_spare(&u),
            Warmth::Template => {
                self.start_vm(
                    u,
                    &StartOptions {
                        accel: rec.spec.accel,
                    },
                )?;
                dir.add_spare(&u)
            }
            // Booting and pausing it is refill's (it waits for the guest).
            Warmth::Paused => self
                .start_vm(
                    u,
                    &StartOptions {
                        accel: rec.spec.accel,
                    },
                )
                .map(drop),
        }
    }

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
            std::thread::scope(|s| {
                for _ in 0..parallel {
                    s.spawn(|| loop {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let Some(job) = lock(&queue).pop() else {
                            break;
                        };
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
                        if let Err(e) = res {
                            lock(&report).errors.push(format!("spare: {e}"));
                        }
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
        spares.sort_by_key(|s| match s.1 {
            Standing::Ready => 0,
            Standing::Warming => 1,
            _ => 2,
        });
        let making_spares = making.iter().filter(|m| m.1.is_empty()).count();
        let target = rec.spec.spares as usize;
        let beyond = (spares.len() + making_spares).saturating_sub(target);
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
            let needs = match (self.warmth_now(rec), s.1) {
                (_, Standing::Ready) => {
                    // Ready but not offered (its offer was lost in a crash): offer it.
                    dir.add_spare(&s.0.uuid)?;
                    false
                }
                (Warmth::Disk, _) => false,
                (_, Standing::Warming) | (_, Standing::Cold) => true,
                (_, Standing::Owned) => false,
            };
            if needs && !runtime::lock_held(&self.run_dir(&s.0.uuid).path().join(WARM_LOCK))? {
                jobs.push(Job::Warm(s.0.uuid));
            }
        }
        let total = dir.members()?.len();
        let room = (rec.spec.max_vms as usize).saturating_sub(total);
        // Every spare missing is planned now; `refill` makes them `parallel` at a time from
        // one queue (no round waits for its slowest spare before the next starts).
        let missing = target
            .saturating_sub(spares.len() + making_spares)
            .min(room);
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
                            self.start_vm(u, &StartOptions { accel })?;
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
                            self.start_vm(u, &StartOptions { accel })?;
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

/// Held (flock) by whoever is warming a spare.
const WARM_LOCK: &str = "warm.lock";

/// Work of a refill round.
enum Job {
    Make(Uuid, MakingFile),
    Warm(Uuid),
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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
    }
}
