//! The catalog: one JSON file per image (`images/<uuid>.json`) and per VM (`vms/<uuid>.json`),
//! each replaced atomically. An image or VM exists exactly when its file does; readers take no
//! locks and always see whole records.

use crate::error::{Error, Result};
use crate::fsutil;
use crate::image::Manifest;
use crate::vm::Record;
use serde::{de::DeserializeOwned, Serialize};
use std::fs;
use std::path::{Path, PathBuf};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct Catalog {
    images: PathBuf,
    vms: PathBuf,
}

fn read<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match fsutil::read_if_exists(path)? {
        None => Ok(None),
        Some(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
            Error::Internal(format!(
                "catalog entry {} is unreadable: {e}",
                path.display()
            ))
        }),
    }
}

fn write<T: Serialize>(dir: &Path, uuid: &Uuid, v: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(v).map_err(|e| Error::Internal(e.to_string()))?;
    fsutil::write_atomic(dir, &format!("{uuid}.json"), &bytes)
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
    pub fn open(root: &Path) -> Result<Self> {
        let c = Catalog {
            images: root.join("images"),
            vms: root.join("vms"),
        };
        fsutil::mkdirs(&c.images)?;
        fsutil::mkdirs(&c.vms)?;
        Ok(c)
    }

    pub fn dirs(&self) -> [&Path; 2] {
        [&self.images, &self.vms]
    }

    pub fn image(&self, uuid: &Uuid) -> Result<Option<Manifest>> {
        read(&self.images.join(format!("{uuid}.json")))
    }

    pub fn put_image(&self, m: &Manifest) -> Result<()> {
        write(&self.images, &m.uuid, m)
    }

    pub fn remove_image(&self, uuid: &Uuid) -> Result<bool> {
        let removed = fsutil::remove_file_if_exists(&self.images.join(format!("{uuid}.json")))?;
        fsutil::sync_dir(&self.images)?;
        Ok(removed)
    }

    /// All images, by name, then version, then creation time.
    pub fn images(&self) -> Result<Vec<Manifest>> {
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

    pub fn vm(&self, uuid: &Uuid) -> Result<Option<Record>> {
        read(&self.vms.join(format!("{uuid}.json")))
    }

    pub fn put_vm(&self, r: &Record) -> Result<()> {
        write(&self.vms, &r.uuid, r)
    }

    pub fn remove_vm(&self, uuid: &Uuid) -> Result<bool> {
        let removed = fsutil::remove_file_if_exists(&self.vms.join(format!("{uuid}.json")))?;
        fsutil::sync_dir(&self.vms)?;
        Ok(removed)
    }

    /// VMs, oldest first, optionally only those of one owner.
    pub fn vms(&self, owner: Option<&str>) -> Result<Vec<Record>> {
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
