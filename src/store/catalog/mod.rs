//! The catalog: one JSON file per image (`images/<uuid>.json`), per VM (`vms/<uuid>.json`)
//! and per pool (`pools/<name>.json`), each replaced atomically. An image or VM exists exactly when its file does; readers take no
//! locks and always see whole records. The format is in [`records`].

pub mod records;

use crate::error::{Error, Result};
use crate::fsutil;
use records::{decode, encode, HomeRecord, ImageRecord, PoolRecord, VmRecord};
use serde::de::DeserializeOwned;
use std::fs;
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// The catalog directories of one store.
#[derive(Debug, Clone)]
pub struct Catalog {
    images: PathBuf,
    vms: PathBuf,
    pools: PathBuf,
    homes: PathBuf,
}

fn read<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match fsutil::read_if_exists(path)? {
        None => Ok(None),
        Some(b) => decode(&b, path).map(Some),
    }
}

/// Uuids of the `<uuid>.json` entries of a directory, sorted for stable output.
fn uuids(dir: &Path) -> Result<Vec<Uuid>> {
    let rd = fs::read_dir(dir).map_err(|e| Error::Io {
        context: format!("listing {}", dir.display()),
        source: e,
    })?;
    let mut out: Vec<Uuid> = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let name = name.to_str()?;
            let stem = name.strip_suffix(".json")?;
            if stem.len() != 36 {
                return None;
            }
            Uuid::try_parse(stem).ok()
        })
        .collect();
    out.sort();
    Ok(out)
}

impl Catalog {
    /// The catalog under `root`, creating its directories if missing.
    pub fn open(root: &Path) -> Result<Self> {
        let c = Catalog {
            images: root.join("images"),
            vms: root.join("vms"),
            pools: root.join("pools"),
            homes: root.join("homes"),
        };
        fsutil::mkdirs(&c.images)?;
        fsutil::mkdirs(&c.vms)?;
        // Best effort: a read-only store opened by a reader has no pools to show.
        let _ = fsutil::mkdirs(&c.pools);
        let _ = fsutil::mkdirs(&c.homes);
        Ok(c)
    }

    /// The directories records live in.
    pub fn dirs(&self) -> [&Path; 4] {
        [&self.images, &self.vms, &self.pools, &self.homes]
    }

    /// Where an owner's home record is (owners are names: [`crate::validate::name`]).
    pub fn home_path(&self, owner: &str) -> PathBuf {
        self.homes.join(format!("{owner}.json"))
    }

    /// The lock serialising changes to an owner's home (create, attach, resize, delete). Its
    /// name starts with the owner's (a letter or digit), never with the temp-file prefix that
    /// recovery sweeps (an owner may be called `tmp-x`).
    pub fn home_lock_path(&self, owner: &str) -> PathBuf {
        self.homes.join(format!("{owner}.lock"))
    }

    /// An owner's home record, if they have one.
    pub fn home(&self, owner: &str) -> Result<Option<HomeRecord>> {
        read(&self.home_path(owner))
    }

    /// Write an owner's home record (atomically, durably).
    pub fn put_home(&self, r: &HomeRecord) -> Result<()> {
        fsutil::mkdirs(&self.homes)?;
        fsutil::write_atomic(&self.homes, &format!("{}.json", r.owner), &encode(r)?)
    }

    /// Remove an owner's home record; whether it was there.
    pub fn remove_home(&self, owner: &str) -> Result<bool> {
        let removed = fsutil::remove_file_if_exists(&self.home_path(owner))?;
        fsutil::sync_dir(&self.homes)?;
        Ok(removed)
    }

    /// Every home record, by owner.
    pub fn homes(&self) -> Result<Vec<HomeRecord>> {
        let rd = match fs::read_dir(&self.homes) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(Error::Io {
                    context: format!("listing {}", self.homes.display()),
                    source: e,
                })
            }
        };
        let mut owners: Vec<String> = rd
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().to_str()?.strip_suffix(".json")?.to_owned();
                crate::validate::name("owner", &n).ok().map(|_| n)
            })
            .collect();
        owners.sort();
        let mut out = Vec::new();
        for o in owners {
            if let Some(h) = self.home(&o)? {
                out.push(h);
            }
        }
        Ok(out)
    }

    /// Where a pool's record is.
    pub fn pool_path(&self, name: &str) -> PathBuf {
        self.pools.join(format!("{name}.json"))
    }

    /// A pool's record, if it exists.
    pub fn pool(&self, name: &str) -> Result<Option<PoolRecord>> {
        read(&self.pool_path(name))
    }

    /// Write a pool's record (atomically, durably).
    pub fn put_pool(&self, r: &PoolRecord) -> Result<()> {
        fsutil::mkdirs(&self.pools)?;
        fsutil::write_atomic(&self.pools, &format!("{}.json", r.spec.name), &encode(r)?)
    }

    /// Remove a pool's record; whether it was there.
    pub fn remove_pool(&self, name: &str) -> Result<bool> {
        let removed = fsutil::remove_file_if_exists(&self.pool_path(name))?;
        fsutil::sync_dir(&self.pools)?;
        Ok(removed)
    }

    /// All pools, by name.
    pub fn pools(&self) -> Result<Vec<PoolRecord>> {
        let rd = match fs::read_dir(&self.pools) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(Error::Io {
                    context: format!("listing {}", self.pools.display()),
                    source: e,
                })
            }
        };
        let mut names: Vec<String> = rd
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().to_str()?.strip_suffix(".json")?.to_owned();
                crate::validate::name("pool", &n).ok().map(|_| n)
            })
            .collect();
        names.sort();
        let mut out = Vec::new();
        for n in names {
            if let Some(p) = self.pool(&n)? {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// Where an image's record is.
    pub fn image_path(&self, uuid: &Uuid) -> PathBuf {
        self.images.join(format!("{uuid}.json"))
    }

    /// Where a VM's record is.
    pub fn vm_path(&self, uuid: &Uuid) -> PathBuf {
        self.vms.join(format!("{uuid}.json"))
    }

    /// An image's record, if it exists.
    pub fn image(&self, uuid: &Uuid) -> Result<Option<ImageRecord>> {
        read(&self.image_path(uuid))
    }

    /// Write an image's record (atomically, durably).
    pub fn put_image(&self, r: &ImageRecord) -> Result<()> {
        fsutil::write_atomic(&self.images, &format!("{}.json", r.uuid), &encode(r)?)
    }

    /// Remove an image's record; whether it was there.
    pub fn remove_image(&self, uuid: &Uuid) -> Result<bool> {
        let removed = fsutil::remove_file_if_exists(&self.image_path(uuid))?;
        fsutil::sync_dir(&self.images)?;
        Ok(removed)
    }

    /// All images, by name, then version, then creation time.
    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        let mut out = Vec::new();
        for u in uuids(&self.images)? {
            // Deleted between listing and reading: not an error.
            if let Some(m) = self.image(&u)? {
                out.push(m);
            }
        }
        out.sort_by(|a, b| {
            (&a.name, &a.version, &a.created_at).cmp(&(&b.name, &b.version, &b.created_at))
        });
        Ok(out)
    }

    /// A VM's record, if it exists.
    pub fn vm(&self, uuid: &Uuid) -> Result<Option<VmRecord>> {
        read(&self.vm_path(uuid))
    }

    /// Write a VM's record (atomically, durably).
    pub fn put_vm(&self, r: &VmRecord) -> Result<()> {
        fsutil::write_atomic(&self.vms, &format!("{}.json", r.uuid), &encode(r)?)
    }

    /// Remove a VM's record; whether it was there.
    pub fn remove_vm(&self, uuid: &Uuid) -> Result<bool> {
        let removed = fsutil::remove_file_if_exists(&self.vm_path(uuid))?;
        fsutil::sync_dir(&self.vms)?;
        Ok(removed)
    }

    /// VMs, oldest first, optionally only those of one owner.
    pub fn vms(&self, owner: Option<&str>) -> Result<Vec<VmRecord>> {
        let mut out = Vec::new();
        for u in uuids(&self.vms)? {
            if let Some(r) = self.vm(&u)? {
                if owner.is_none_or(|o| r.owner == o) {
                    out.push(r);
                }
            }
        }
        out.sort_by(|a, b| (&a.created_at, a.uuid).cmp(&(&b.created_at, b.uuid)));
        Ok(out)
    }
}
