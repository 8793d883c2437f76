//! Memory templates of pools (warmth `template`): instant clones that go on from a running
//! guest instead of booting.
//!
//! Building one: a VM of the pool's image and flavor boots with its RAM in a file on tmpfs
//! (`memory-backend-file,share=on`) until the pool's readiness (its serial marker or delay);
//! then its CPUs stop, its device state is saved with `x-ignore-shared` (the RAM is not
//! copied: it is the file), and QEMU quits. Its disk, untouched since the CPUs stopped, is
//! moved (not copied) to become the template's image. Each clone is a copy-on-write clone of
//! that image whose QEMU maps the RAM file private (`share=off,readonly=on,rom=off`), starts
//! with `-incoming defer`, loads the state and continues (`vm/lifecycle.rs`): its pages
//! stay shared with the template's until it writes them.
//!
//! Files: `<template_dir>/<store id>/<pool>/<template image uuid>/{memory,state}`. A
//! template is rebuilt when the pool's image or flavor changes or its files are gone (tmpfs
//! does not survive a reboot); old templates go once no VM still needs them.
//!
//! What a clone still shares with its template, and what a guest agent would have to redo:
//! the guest's machine-id and host keys, its kernel's and user space's RNG state (Linux
//! re-seeds the kernel RNG on the vmgenid change; user-space generators do not notice), its
//! clock (it resumes at the template's time until NTP or an agent sets it), open TCP
//! connections and DHCP leases (the network card is hot-plugged after the restore, with the
//! clone's own MAC, so the guest sees a new card), and anything cached from the template's
//! uptime. Each clone has its own disk, MAC, vmgenid, SPICE ticket, uid and zone.

use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::pool::claims::PoolDir;
use crate::safe_fs::{chown_path, Dir, Kind, TrustRule};
use crate::store::catalog::records::{ImageRecord, PoolRecord, TemplateRecord, SCHEMA};
use crate::store::journal::{Durability, Op};
use crate::store::Store;
use crate::vm::crud::Membership;
use crate::vm::lifecycle::{qmp_error, REAP_TIMEOUT};
use crate::vm::qmp::{MigrationStatus, Qmp, RunStatus};
use crate::vm::supervisor::{write_intent, Intent};
use crate::vm::{Op as VmOp, State, VmSpec};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How long saving or loading a memory template's device state may take (about a megabyte;
/// milliseconds normally).
pub(crate) const MIGRATION_TIMEOUT: Duration = Duration::from_secs(60);

/// The RAM file of a template.
pub const MEMORY_FILE: &str = "memory";

/// The device state of a template.
pub const STATE_FILE: &str = "state";

/// Poll `query-migrate` until the migration completed (or failed: its error).
pub(crate) fn wait_migration(uuid: &Uuid, q: &mut Qmp, what: &str) -> Result<()> {
    wait_migration_with(uuid, q, what, MIGRATION_TIMEOUT, || Ok(()))
}

/// `wait_migration` with its own `timeout`, and `check` asked before each poll (an error
/// from it ends the wait with that error).
pub(crate) fn wait_migration_with(
    uuid: &Uuid,
    q: &mut Qmp,
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<()>,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(200);
    loop {
        check()?;
        match q.query_migrate().map_err(|e| qmp_error(uuid, what, e))? {
            MigrationStatus::Completed => return Ok(()),
            MigrationStatus::Failed(why) => {
                return Err(Error::Hypervisor(format!(
                    "VM {uuid}: {what} failed: {why}"
                )))
            }
            MigrationStatus::Cancelled => {
                return Err(Error::Hypervisor(format!(
                    "VM {uuid}: {what} was cancelled"
                )))
            }
            MigrationStatus::InProgress(_) if Instant::now() > deadline => {
                return Err(Error::Timeout(format!(
                    "VM {uuid}: {what} did not finish within {timeout:?}"
                )))
            }
            MigrationStatus::InProgress(_) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
        }
    }
}

/// The trusted directory holding `path`, and the file's name in it.
fn split_dir(path: &Path) -> Result<(Dir, String)> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Error::invalid(format!("{} names no file", path.display())))?;
    let parent = path.parent().unwrap_or(Path::new("/"));
    Ok((Dir::trusted(parent, TrustRule::current(), None)?, name))
}

/// What kind of file a disk is: a zvol's node or a file.
fn disk_kind(disk: &str) -> Kind {
    if disk.starts_with("/dev/") {
        Kind::Block
    } else {
        Kind::File
    }
}

impl Store {
    /// Where the templates of pool `pool` keep their files: `<template_dir>/<store id>/<pool>`,
    /// every component trusted (`safe_fs`: root's, 0700, none made by another user first).
    fn template_root(&self, pool: &str) -> Result<Dir> {
        let path = self.run.template_dir.join(&self.id).join(pool);
        Dir::trusted(&path, TrustRule::current(), Some(0o700))
    }

    /// The pool's template if it fits the pool's settings and its files are there.
    pub(crate) fn current_template(&self, rec: &PoolRecord) -> Option<TemplateRecord> {
        let t = rec.template.as_ref()?;
        let s = &rec.spec;
        let fits = t.base_image == s.image_uuid
            && t.vcpus == s.vcpus
            && t.ram_mib == s.ram_mib
            && s.disk_gib.is_none_or(|d| d == t.disk_gib);
        let there = t.memory.exists()
            && t.state.exists()
            && self.catalog.image(&t.image).ok().flatten().is_some();
        (fits && there).then(|| t.clone())
    }

    /// Build the pool's memory template unless it has one that fits, or another process is
    /// building it right now (then this returns at once). Returns whether it built one.
    pub(crate) fn ensure_template(&self, pool: &str) -> Result<bool> {
        let dir = PoolDir::new(self.catalog_dir(), pool);
        dir.ensure()?;
        let Some(_build) = dir.try_build_lock()? else {
            return Ok(false);
        };
        let rec = self.pool_record(pool)?;
        self.remove_dead_builds(pool)?;
        if self.current_template(&rec).is_some() {
            return Ok(false);
        }
        let t = self.build_template(&rec)?;
        {
            let _l = dir.lock()?;
            let mut rec = self.pool_record(pool)?;
            rec.template = Some(t);
            self.catalog.put_pool(&rec)?;
        }
        Ok(true)
    }

    /// Template-build VMs left by processes that died mid-build (the caller holds the build
    /// lock, so none is in progress).
    fn remove_dead_builds(&self, pool: &str) -> Result<()> {
        for r in self.catalog.vms(None)? {
            if r.template_build && r.pool.as_deref() == Some(pool) {
                self.kill_vm(r.uuid)?;
                self.delete_vm(r.uuid)?;
            }
        }
        Ok(())
    }

    fn build_template(&self, rec: &PoolRecord) -> Result<TemplateRecord> {
        let s = &rec.spec;
        let image = self
            .catalog
            .image(&s.image_uuid)?
            .ok_or_else(|| Error::not_found("image", s.image_uuid.to_string()))?;
        let t = Uuid::new_v4();
        let build_vm = Uuid::new_v4();
        let root = self.template_root(&s.name)?;
        let name = t.to_string();
        let tdir = Dir::trusted(&root.path().join(&name), TrustRule::current(), Some(0o700))?;
        let mut revert = crate::revert::Revert::new();
        revert.add(format!("remove {}", tdir.path().display()), || {
            root.remove(&name).map(drop)
        });
        // Both files are root's, in a directory only root writes: QEMU gets the RAM file
        // (given to its uid below) bound into its zone, and the state file as a descriptor.
        let memory_file = tdir.create(MEMORY_FILE, 0o600)?;
        memory_file
            .set_len(s.ram_mib << 20)
            .ctx(|| format!("sizing {}", tdir.display(MEMORY_FILE)))?;
        tdir.create(STATE_FILE, 0o600)?;
        let mut spec = VmSpec::new(s.image_uuid)
            .alias(format!("{}-template", s.name))
            .uuid(build_vm)
            .vcpus(s.vcpus)
            .ram_mib(s.ram_mib);
        if let Some(d) = s.disk_gib {
            spec = spec.disk_gib(d);
        }
        if let Some(a) = s.accel {
            spec = spec.accel(a);
        }
        let vm = self.create_vm_in(
            &spec,
            Some(&Membership {
                pool: s.name.clone(),
                template_build: true,
                restore: None,
            }),
        )?;
        revert.add(format!("delete the template-build VM {build_vm}"), || {
            self.kill_vm(build_vm)?;
            self.delete_vm(build_vm)
        });
        let memory = tdir.path().join(MEMORY_FILE);
        let state = tdir.path().join(STATE_FILE);
        let log_from = 0;
        self.start_vm_as(
            vm.uuid,
            &crate::store::StartOptions { accel: s.accel },
            Some(&memory),
        )?;
        self.wait_ready(vm.uuid, s, log_from)?;
        self.save_template(vm.uuid, &tdir)?;
        // From now on nobody writes them: root's (the zone had the RAM file), read-only.
        // Through the descriptor opened when the file was made: the very same file.
        let me = TrustRule::current().owner;
        crate::safe_fs::fchown(memory_file.as_fd(), me, me)
            .ctx(|| format!("chown {}", memory.display()))?;
        for name in [MEMORY_FILE, STATE_FILE] {
            tdir.chmod(name, Kind::File, 0o444)?;
        }
        let r = self
            .catalog
            .vm(&vm.uuid)?
            .ok_or_else(|| Error::not_found("VM", vm.uuid.to_string()))?;
        if r.state != State::Stopped {
            return Err(Error::Hypervisor(format!(
                "the template-build VM {} of pool {} ended {} instead of stopping",
                vm.uuid,
                s.name,
                r.state.as_str()
            )));
        }
        // Its disk becomes the template image (journalled as an import of it).
        let token = fsutil::token();
        let op = Op::ImageImport {
            uuid: t,
            token: token.clone(),
            format: r.disk_format,
        };
        let entry = self.begin(op, Durability::Now, |pid| {
            Error::Busy(format!("image {t} is being made by process {pid}"))
        })?;
        let made_at = crate::now_rfc3339();
        self.run_journalled(entry, |undo| {
            self.driver
                .image_adopt(&vm.uuid, r.disk_format, &t, &token)?;
            undo.add(format!("discard template image {t}"), || {
                self.driver
                    .image_discard(&t, &token, r.disk_format)
                    .map(drop)
            });
            crate::fail_point!("template.adopted");
            let disk = self.driver.image_seal(&t, &token, r.disk_format)?;
            // The build VM's uid owned its disk; that uid goes to the next VM, which must not
            // write what every clone of this template reads.
            let me = TrustRule::current().owner;
            chown_path(&self.driver.disk_path(&disk)?, me, me, disk_kind(&disk))?;
            self.catalog.put_image(&ImageRecord {
                schema: SCHEMA,
                uuid: t,
                name: format!("{}-template", s.name),
                version: made_at.clone(),
                os: image.os.clone(),
                format: r.disk_format,
                size_bytes: r.disk_size_bytes,
                sha256: String::new(),
                created_at: made_at.clone(),
                // The base image's tags (its guest conventions, such as `on_clone`).
                tags: image.tags.clone(),
                disk_format: r.disk_format,
                disk,
                parent: Some(image.uuid),
                template_of: Some(s.name.clone()),
                extra: Default::default(),
            })
        })?;
        // The build VM's record goes (its disk is the image now).
        self.delete_vm(vm.uuid)?;
        revert.commit();
        Ok(TemplateRecord {
            image: t,
            base_image: image.uuid,
            vcpus: s.vcpus,
            ram_mib: s.ram_mib,
            disk_gib: r.disk_gib,
            memory,
            state,
            made_at,
        })
    }

    /// Wait until a VM's guest is ready by the pool's rule: its marker on the serial console
    /// (after byte `log_from` of the log), then the delay; or the delay alone.
    pub(crate) fn wait_ready(
        &self,
        vm: Uuid,
        s: &crate::pool::PoolSpec,
        log_from: u64,
    ) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(u64::from(s.ready_timeout_s));
        if let Some(marker) = &s.ready_marker {
            let log = self.run_dir(&vm).serial_log();
            loop {
                let seen = std::fs::read(&log)
                    .map(|b| {
                        let from = usize::try_from(log_from).unwrap_or(0).min(b.len());
                        let tail = &b[from..];
                        tail.windows(marker.len()).any(|w| w == marker.as_bytes())
                    })
                    .unwrap_or(false);
                if seen {
                    break;
                }
                let v = self.vm(vm)?;
                if !v.state.is_active() {
                    return Err(Error::Hypervisor(format!(
                        "VM {vm} ended ({}) before it was ready{}",
                        v.state.as_str(),
                        v.last_exit
                            .map(|e| format!(": {}", e.reason))
                            .unwrap_or_default()
                    )));
                }
                if Instant::now() > deadline {
                    return Err(Error::Timeout(format!(
                        "VM {vm} did not print {marker:?} on its serial console within {} s",
                        s.ready_timeout_s
                    )));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        std::thread::sleep(Duration::from_secs(u64::from(s.ready_delay_s)));
        Ok(())
    }

    /// Remove what old templates of `pool` leave once nothing needs it: an image no VM's
    /// disk is cloned from any more, RAM files no VM waits to resume from, directories of
    /// builds that died. Takes the build lock (skips if a build is in progress).
    pub(crate) fn collect_templates(&self, pool: &str, removing_pool: bool) -> Result<()> {
        let dir = PoolDir::new(self.catalog_dir(), pool);
        let Some(_build) = dir.try_build_lock()? else {
            return Ok(());
        };
        let rec = self.catalog.pool(pool)?;
        let current = rec
            .as_ref()
            .filter(|_| !removing_pool)
            .and_then(|r| self.current_template(r))
            .map(|t| t.image);
        let vms = self.catalog.vms(None)?;
        let mut keep_dirs: Vec<String> = current.iter().map(|u| u.to_string()).collect();
        for img in self.catalog.images()? {
            if img.template_of.as_deref() != Some(pool) || Some(img.uuid) == current {
                continue;
            }
            let cloned = vms.iter().any(|v| v.image_uuid == img.uuid);
            let waiting = vms
                .iter()
                .any(|v| v.restore.as_ref().is_some_and(|r| r.template == img.uuid));
            if !cloned {
                self.delete_image_as(img.uuid, true)?;
            } else if waiting {
                keep_dirs.push(img.uuid.to_string());
            }
        }
        let root = self.template_root(pool)?;
        for e in root.entries()? {
            let name = e.to_string_lossy().into_owned();
            if !keep_dirs.contains(&name) {
                root.remove(&name)?;
            }
        }
        if removing_pool {
            let parent = self.template_root(pool).ok().and_then(|_| {
                Dir::trusted(
                    &self.run.template_dir.join(&self.id),
                    TrustRule::current(),
                    None,
                )
                .ok()
            });
            if let Some(p) = parent {
                let _ = p.remove(pool);
            }
        }
        Ok(())
    }

    /// End a pool's template-build VM by saving it: pause its CPUs, write its device state
    /// into `tdir`'s state file, which QEMU gets as a descriptor (its RAM is already in the
    /// shared memory file), and quit QEMU. Its disk then holds what the guest had written at
    /// that same instant. Returns once QEMU has ended.
    fn save_template(&self, uuid: Uuid, tdir: &Dir) -> Result<()> {
        let run = self.run_dir(&uuid);
        let info = {
            let _lc = self.lifecycle_lock(&run)?;
            let (mut r, live) = self.running(&uuid, &run, VmOp::Save)?;
            let state = tdir.open_with(STATE_FILE, Kind::File, libc::O_WRONLY)?;
            let mut q = self.qmp(&uuid, &run)?;
            (|| {
                q.stop()?;
                q.set_ignore_shared(true)?;
                let set = q.add_fd(state.as_fd())?;
                q.migrate_to_fdset(set)
            })()
            .map_err(|e| qmp_error(&uuid, "saving the template's state", e))?;
            wait_migration(&uuid, &mut q, "saving the template's state")?;
            write_intent(&run.open()?, Intent::Stop)?;
            r.state = live.to(State::Stopping, &uuid)?;
            self.catalog.put_vm(&r)?;
            // `quit` closes the disk cleanly (flushed); the guest's CPUs stay stopped.
            let _ = q.quit();
            self.run_info(&r, &run)
        };
        if !self.wait_for_end(&run, info.as_ref(), REAP_TIMEOUT) {
            self.kill_qemu(&uuid, &run, info.as_ref(), Intent::Stop)?;
        }
        self.finish_unsupervised(&uuid, &run, "stopped after saving its memory template")
    }

    /// Load a memory template's device state into a QEMU waiting for it (`-incoming defer`,
    /// `-S`), from the template's state file opened here and handed over as a descriptor.
    /// Returns whether it loaded it now (`false`: it already had, before a crash).
    pub(crate) fn restore_state(
        &self,
        uuid: &Uuid,
        q: &mut Qmp,
        rs: &crate::store::catalog::records::Restore,
    ) -> Result<bool> {
        let err = |e| qmp_error(uuid, "loading the template's state", e);
        if q.query_status().map_err(err)? != RunStatus::InMigrate {
            return Ok(false);
        }
        let (dir, name) = split_dir(&rs.state)?;
        let state = dir.open(&name, Kind::File)?.ok_or_else(|| {
            Error::not_found("memory template state", rs.state.display().to_string())
        })?;
        (|| {
            q.set_ignore_shared(true)?;
            let set = q.add_fd(state.as_fd())?;
            q.migrate_incoming_from_fdset(set)
        })()
        .map_err(err)?;
        wait_migration(uuid, q, "loading the template's state")?;
        Ok(true)
    }
}
