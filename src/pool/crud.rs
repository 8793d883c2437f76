//! Pools of a store (see `crate::pool`): create, list, get, update, delete, and how each
//! member stands. How claims stay exact across threads, processes and crashes is in
//! `pool::claims`.

use crate::error::{Error, Result};
use crate::pool::claims::{Making, PoolDir};
use crate::pool::plan::{self, Standing};
use crate::pool::{Pool, PoolSpec, PoolStatus, PoolUpdate, TemplateInfo, Warmth};
use crate::store::catalog::records::{PoolRecord, Restore, VmRecord, SCHEMA};
use crate::store::Store;
use crate::validate;
use crate::vm::{State, VmSpec};
use uuid::Uuid;

impl Store {
    pub(crate) fn pool_dir(&self, name: &str) -> PoolDir {
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
    pub(crate) fn pool_source(&self, rec: &PoolRecord) -> (Uuid, Option<Restore>) {
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
    pub(crate) fn warmth_now(&self, rec: &PoolRecord) -> Warmth {
        match rec.spec.warmth {
            Warmth::Template if self.current_template(rec).is_none() => Warmth::Disk,
            w => w,
        }
    }

    /// The disk size of the pool's VMs in GiB.
    pub(crate) fn pool_disk_gib(&self, spec: &PoolSpec) -> Result<u64> {
        let image = self
            .catalog
            .image(&spec.image_uuid)?
            .ok_or_else(|| Error::not_found("image", spec.image_uuid.to_string()))?;
        let bytes = self
            .pool_vm_spec(spec, "", "")
            .disk_bytes(image.size_bytes, &self.limits)?;
        Ok(bytes >> 30)
    }

    pub(crate) fn pool_vm_spec(&self, spec: &PoolSpec, alias: &str, owner: &str) -> VmSpec {
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
    pub(crate) fn spare_stale(&self, rec: &PoolRecord, disk_gib: u64, r: &VmRecord) -> bool {
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
        (
            plan::standing(self.warmth_now(rec), live, r.restore.is_some()),
            live,
        )
    }

    /// The pool's VMs with their standing; entries whose VM is gone (and nobody is making
    /// it) are dropped. Call under the pool lock.
    pub(crate) fn members(
        &self,
        rec: &PoolRecord,
        dir: &PoolDir,
    ) -> Result<Vec<(VmRecord, Standing, State)>> {
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

    /// The pool's desktops that run for their owners on their own (handed out, running or
    /// paused, not asleep, not waiting for a template's state): what the idle policy and the
    /// session limit look at. Read under the pool lock, which is let go before returning.
    pub(crate) fn running_desktops(&self, rec: &PoolRecord) -> Result<Vec<VmRecord>> {
        let dir = self.pool_dir(&rec.spec.name);
        let _l = dir.lock()?;
        Ok(self
            .members(rec, &dir)?
            .into_iter()
            .filter(|(r, standing, live)| {
                *standing == Standing::Owned
                    && matches!(live, State::Running | State::Paused)
                    && r.restore.is_none()
                    && r.suspended.is_none()
            })
            .map(|(r, _, _)| r)
            .collect())
    }

    /// The VMs `owner` holds in the pool (checked against their records; stale entries
    /// dropped), and whether a live process is making one for them. Without the pool lock
    /// nothing is dropped.
    pub(crate) fn held_by(
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
        let mut status = PoolStatus {
            customization_failures: rec.customization_failures,
            last_customization_failure: rec.last_customization_failure.clone(),
            ..PoolStatus::default()
        };
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
            customization_failures: 0,
            last_customization_failure: None,
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
    pub(crate) fn remove_vm_now(&self, u: Uuid) -> Result<()> {
        match self.kill_vm(u) {
            Ok(_) | Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        match self.delete_vm(u) {
            Ok(()) | Err(Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
