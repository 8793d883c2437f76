//! A pool's claim files: who holds which VM, which VMs are spares, which are being made, and
//! the pool's lock. The VM records stay the truth (a VM is the pool's when its record says
//! `pool`, an owner's when it says `owner`); these files make `acquire` cost a few small
//! reads instead of reading every record, and make counting against the pool's limits exact
//! while other processes are still making VMs.
//!
//! ```text
//! pools/<name>.json                 the pool's record
//! pools/<name>.lock                 the pool lock: claims, counts and making-files change under
//!                                   it (never removed, so that a pool deleted and made again
//!                                   under the same name is never locked through two files)
//! pools/<name>.d/build.lock         held while a memory template is being built
//! pools/<name>.d/members/<uuid>     every VM of the pool, written before its record exists
//! pools/<name>.d/owners/<owner>/<uuid>  a VM an owner holds, written before its record says so
//! pools/<name>.d/spares/<uuid>      a spare ready to claim, written once it is made (or warmed)
//! pools/<name>.d/making/<uuid>      a VM being made, locked (flock) by the process making it
//! ```
//!
//! Why this is correct across processes and crashes:
//! - Every count and every claim happens under the pool lock, and a `members` or `owners`
//!   entry is written (durably) *before* the record it stands for, so a record never exists
//!   without its entry: counting entries never undercounts, whatever moment a process dies.
//! - Entries are removed only under the pool lock, and only after the record was read and
//!   found not to match, and no live process is making that VM (its making-file is locked by
//!   a live process; `flock` dies with its holder). So a stale entry (its process died before
//!   writing the record) is dropped, and a fresh one is never dropped under its maker.
//! - A claim is one atomic record rewrite (owner set) under the VM's lifecycle lock and the
//!   pool lock; a spare entry is only a hint, re-checked against the record before a claim.
//!   So no VM is ever given to two owners, and a process killed mid-acquire leaves the VM
//!   either still a spare or the owner's (who gets it back on the next acquire).

use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::lock::{self, Mode};
use std::fs;
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// The claim files of one pool.
#[derive(Debug, Clone)]
pub struct PoolDir {
    root: PathBuf,
    lock: PathBuf,
}

/// Whether a process is making a VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Making {
    /// A live process is; for this owner ("" for a spare).
    Live(String),
    /// Nobody is (or the process died: its file is stale and was removed).
    No,
}

/// A VM this process is making: its making-file, locked until dropped (then removed).
#[derive(Debug)]
pub struct MakingFile {
    path: PathBuf,
    _lock: nix::fcntl::Flock<fs::File>,
}

impl Drop for MakingFile {
    fn drop(&mut self) {
        // Unlink before the lock goes (with the descriptor): nobody sees it unlocked.
        let _ = fs::remove_file(&self.path);
    }
}

fn uuids_in(dir: &Path) -> Result<Vec<Uuid>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).ctx(|| format!("listing {}", dir.display())),
    };
    let mut out: Vec<Uuid> = rd
        .flatten()
        .filter_map(|e| Uuid::try_parse(e.file_name().to_str()?).ok())
        .collect();
    out.sort();
    Ok(out)
}

/// Create an empty entry and make it durable (the file and its directory).
fn put(dir: &Path, name: &str) -> Result<()> {
    fsutil::mkdirs(dir)?;
    let p = dir.join(name);
    match fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&p)
    {
        Ok(_) => fsutil::sync_dir(dir),
        Err(e) => Err(e).ctx(|| format!("creating {}", p.display())),
    }
}

fn remove(dir: &Path, name: &str) -> Result<()> {
    fsutil::remove_file_if_exists(&dir.join(name)).map(drop)
}

impl PoolDir {
    /// The claim files of pool `name` in the catalog at `catalog`.
    pub fn new(catalog: &Path, name: &str) -> Self {
        let pools = catalog.join("pools");
        PoolDir {
            root: pools.join(format!("{name}.d")),
            lock: pools.join(format!("{name}.lock")),
        }
    }

    /// Its directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Make the directories.
    pub fn ensure(&self) -> Result<()> {
        for d in ["members", "owners", "spares", "making"] {
            fsutil::mkdirs(&self.root.join(d))?;
        }
        Ok(())
    }

    /// Take the pool lock, waiting for it.
    pub fn lock(&self) -> Result<lock::Held> {
        if let Some(d) = self.lock.parent() {
            fsutil::mkdirs(d)?;
        }
        lock::lock(&self.lock, Mode::Exclusive)
    }

    /// Take the template build lock if nobody holds it.
    pub fn try_build_lock(&self) -> Result<Option<nix::fcntl::Flock<fs::File>>> {
        let p = self.root.join("build.lock");
        if !p.exists() {
            put(&self.root, "build.lock")?;
        }
        lock::try_lock_existing(&p, Mode::Exclusive)
    }

    /// Every VM of the pool (and every VM being made for it).
    pub fn members(&self) -> Result<Vec<Uuid>> {
        uuids_in(&self.root.join("members"))
    }

    /// Note a VM of the pool, before its record is written.
    pub fn add_member(&self, vm: &Uuid) -> Result<()> {
        put(&self.root.join("members"), &vm.to_string())
    }

    /// Note several VMs of the pool, before their records are written: every entry is
    /// durable when this returns, made so by one sync of the directory (not one per entry).
    pub fn add_members(&self, vms: &[Uuid]) -> Result<()> {
        let dir = self.root.join("members");
        fsutil::mkdirs(&dir)?;
        for vm in vms {
            let p = dir.join(vm.to_string());
            fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&p)
                .ctx(|| format!("creating {}", p.display()))?;
        }
        fsutil::sync_dir(&dir)
    }

    /// Forget a VM that no longer exists (under the pool lock, after checking).
    pub fn remove_member(&self, vm: &Uuid) -> Result<()> {
        remove(&self.root.join("members"), &vm.to_string())?;
        remove(&self.root.join("spares"), &vm.to_string())
    }

    fn owner_dir(&self, owner: &str) -> PathBuf {
        self.root.join("owners").join(owner)
    }

    /// The VMs `owner` holds (or is being given).
    pub fn owned(&self, owner: &str) -> Result<Vec<Uuid>> {
        uuids_in(&self.owner_dir(owner))
    }

    /// Note that `owner` holds `vm`, before the record says so.
    pub fn add_owned(&self, owner: &str, vm: &Uuid) -> Result<()> {
        put(&self.owner_dir(owner), &vm.to_string())
    }

    /// Forget that `owner` holds `vm` (under the pool lock, after checking).
    pub fn remove_owned(&self, owner: &str, vm: &Uuid) -> Result<()> {
        remove(&self.owner_dir(owner), &vm.to_string())?;
        // An owner with nothing left leaves no directory behind (best effort: another
        // claim may have just added to it).
        let _ = fs::remove_dir(self.owner_dir(owner));
        Ok(())
    }

    /// Every (owner, VM) entry.
    pub fn all_owned(&self) -> Result<Vec<(String, Uuid)>> {
        let dir = self.root.join("owners");
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).ctx(|| format!("listing {}", dir.display())),
        };
        let mut out = Vec::new();
        for e in rd.flatten() {
            let Some(owner) = e.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            for u in uuids_in(&e.path())? {
                out.push((owner.clone(), u));
            }
        }
        Ok(out)
    }

    /// Spares believed ready to claim (each is re-checked against its record).
    pub fn spares(&self) -> Result<Vec<Uuid>> {
        uuids_in(&self.root.join("spares"))
    }

    /// Offer a spare for claiming.
    pub fn add_spare(&self, vm: &Uuid) -> Result<()> {
        put(&self.root.join("spares"), &vm.to_string())
    }

    /// Withdraw a spare's offer.
    pub fn remove_spare(&self, vm: &Uuid) -> Result<()> {
        remove(&self.root.join("spares"), &vm.to_string())
    }

    /// Start making `vm` for `owner` ("" for a spare): a making-file this process holds
    /// locked until the returned value is dropped. Call under the pool lock.
    pub fn begin_making(&self, vm: &Uuid, owner: &str) -> Result<MakingFile> {
        let dir = self.root.join("making");
        fsutil::mkdirs(&dir)?;
        let path = dir.join(vm.to_string());
        let f = fsutil::create_new(&path)?;
        let mut lock = lock::lock_new(f, &path)?;
        std::io::Write::write_all(&mut *lock, owner.as_bytes())
            .ctx(|| format!("writing {}", path.display()))?;
        Ok(MakingFile { path, _lock: lock })
    }

    /// Whether a live process is making `vm`; a dead maker's file is removed. Call under the
    /// pool lock.
    pub fn making(&self, vm: &Uuid) -> Result<Making> {
        let path = self.root.join("making").join(vm.to_string());
        if !path.exists() {
            return Ok(Making::No);
        }
        match lock::try_lock_existing(&path, Mode::Exclusive)? {
            // We got the lock: its maker is gone.
            Some(_dead) => {
                fsutil::remove_file_if_exists(&path)?;
                Ok(Making::No)
            }
            None if path.exists() => {
                Ok(Making::Live(fs::read_to_string(&path).unwrap_or_default()))
            }
            None => Ok(Making::No),
        }
    }

    /// VMs being made by live processes, with their owners.
    pub fn all_making(&self) -> Result<Vec<(Uuid, String)>> {
        let mut out = Vec::new();
        for u in uuids_in(&self.root.join("making"))? {
            if let Making::Live(owner) = self.making(&u)? {
                out.push((u, owner));
            }
        }
        Ok(out)
    }

    /// Remove every claim file (the pool is gone).
    pub fn remove_all(&self) -> Result<()> {
        match fs::remove_dir_all(&self.root) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::Io {
                context: format!("removing {}", self.root.display()),
                source: e,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_and_making() {
        let t = tempfile::tempdir().unwrap();
        let d = PoolDir::new(t.path(), "p");
        d.ensure().unwrap();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        d.add_member(&a).unwrap();
        d.add_member(&b).unwrap();
        assert_eq!(d.members().unwrap().len(), 2);
        d.add_owned("alice", &a).unwrap();
        assert_eq!(d.owned("alice").unwrap(), vec![a]);
        assert_eq!(d.all_owned().unwrap(), vec![("alice".into(), a)]);
        d.remove_owned("alice", &a).unwrap();
        assert!(d.owned("alice").unwrap().is_empty());
        let m = d.begin_making(&b, "bob").unwrap();
        assert_eq!(d.making(&b).unwrap(), Making::Live("bob".into()));
        drop(m);
        assert_eq!(d.making(&b).unwrap(), Making::No);
    }
}
