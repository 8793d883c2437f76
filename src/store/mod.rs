//! A store: one driver's volumes plus the catalog, journal and locks that make operations on
//! them atomic, crash-safe and safe between processes.
//!
//! Catalog directory layout (the store root for `dir:`/`btrfs:`, the dataset's mountpoint for
//! `zfs:`):
//! ```text
//! store.json          marks the directory as a store: format version and driver
//! .lock               store lock: shared by VM create/delete, exclusive for image delete
//! .journal/<key>.json intent of an operation in flight (see journal.rs)
//! images/<uuid>.json  image manifests
//! vms/<uuid>.json     VM records
//! pools/<name>.json   pool records
//! homes/<owner>.json  owners' home volumes (`crate::home`)
//! ```

pub mod catalog;
pub mod host;
pub mod journal;
pub mod uri;

pub use host::{HostReport, HOST_STOP_REASON};

pub use crate::vm::launch::StartOptions;
pub use crate::vm::lifecycle::{VmStatus, VmUpdate};

use crate::driver::{Capabilities, Destroyed, Detail, StorageDriver};
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::lock::{self, Mode};
use crate::revert::Revert;
use crate::validate::Limits;
use crate::vm::config::RunConfig;
use catalog::Catalog;
use journal::{Begin, Durability, Entry, Journal, Op};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use crate::image::ops::Progress;

/// Version of the on-disk layout written into `store.json`.
pub const LAYOUT_VERSION: u32 = 1;

/// `store.json`: marks a directory as a store (part of the on-disk format).
#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    vmpool_store: u32,
    driver: String,
    created_at: String,
    /// A random id (32 hex digits) naming the store's directories outside its catalog (its
    /// sockets, its memory templates) and its uid range on the host. Stores made before it
    /// existed use a hash of their catalog's path ([`store_id`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
}

/// The id of the store whose catalog is `catalog`: its marker's, else (a store made before
/// ids) FNV-1a of its canonical path, a hash that is the same in every version and process.
pub(crate) fn store_id(catalog: &Path) -> Result<String> {
    let marker = catalog.join("store.json");
    if let Some(bytes) = fsutil::read_if_exists(&marker)? {
        if let Ok(Marker { id: Some(id), .. }) = serde_json::from_slice::<Marker>(&bytes) {
            if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Ok(id);
            }
        }
    }
    let canonical = std::fs::canonicalize(catalog).unwrap_or_else(|_| catalog.to_owned());
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in canonical.as_os_str().as_encoded_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    Ok(format!("{h:016x}"))
}

/// What the last recovery pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Leftovers of dead operations that were removed (or deletions completed).
    pub cleaned: Vec<String>,
    /// Leftovers that could not be handled now (or journal entries that cannot be read);
    /// retried at the next open.
    pub errors: Vec<String>,
    /// Things found where a dead operation's volume was expected that are not the store's
    /// (not a clone of the image); left untouched.
    pub kept: Vec<String>,
}

/// What `Store::info` tells about a store.
#[derive(Debug, Clone)]
pub struct StoreInfo {
    /// The URI it was opened with.
    pub uri: String,
    /// The driver's scheme.
    pub driver: &'static str,
    /// What the driver can do.
    pub capabilities: Capabilities,
    /// Where the catalog is.
    pub catalog: PathBuf,
    /// Driver details.
    pub details: Vec<(&'static str, Detail)>,
    /// The store's limits.
    pub limits: Limits,
    /// What the last recovery did.
    pub last_recovery: Recovery,
    /// Library version.
    pub version: &'static str,
}

/// An open store. Cheap to share: every method takes `&self` and is safe to call from many
/// threads and processes at once.
#[derive(Debug)]
pub struct Store {
    pub(crate) uri: String,
    pub(crate) driver: Box<dyn StorageDriver>,
    pub(crate) catalog: Catalog,
    pub(crate) journal: Journal,
    pub(crate) lock_path: PathBuf,
    pub(crate) limits: Limits,
    pub(crate) run: RunConfig,
    pub(crate) last_recovery: Mutex<Recovery>,
    /// How a VM create's journal entry is made durable: by the clone itself when the driver
    /// commits the catalog with its clones and the journal is on the catalog's file system.
    pub(crate) create_durability: Durability,
    /// The store's id ([`store_id`]).
    pub(crate) id: String,
    /// The first uid of the store's range, once claimed on this host (`vm::uids`).
    pub(crate) uid_base: once_cell::sync::OnceCell<u32>,
}

/// Directory entries that do not make a directory "in use" when it is first made a store.
fn ignorable(name: &str) -> bool {
    name == "lost+found" || name.starts_with(fsutil::TMP_PREFIX)
}

/// Whether `a` and `b` are on one mounted file system (nothing mounted between them).
fn same_fs(a: &Path, b: &Path) -> Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let dev = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.dev())
            .ctx(|| format!("stat {}", p.display()))
    };
    Ok(dev(a)? == dev(b)?)
}

/// The store (a directory holding `store.json`) that `dir` lies inside, if any.
fn enclosing_store(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .skip(1)
        .find(|a| a.join("store.json").is_file())
        .map(Path::to_owned)
}

/// Make sure `dir` is a store of this `driver` kind, turning an empty or missing directory
/// into one. A non-empty directory without a marker is refused: we never adopt (and later
/// clean up in) a directory that holds someone else's files; nor one inside another store.
fn claim(dir: &Path, driver: &str) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(md) if !md.is_dir() => {
            return Err(Error::NotAStore(format!(
                "{} is not a directory",
                dir.display()
            )))
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
            return Err(Error::NotAStore(format!(
                "{} is not a directory (a component of its path is a file)",
                dir.display()
            )))
        }
        Err(e) => return Err(e).ctx(|| format!("stat {}", dir.display())),
    }
    let marker = dir.join("store.json");
    if let Some(bytes) = fsutil::read_if_exists(&marker)? {
        let m: Marker = serde_json::from_slice(&bytes).map_err(|e| {
            Error::NotAStore(format!(
                "{} is not a vmpool store marker: {e}",
                marker.display()
            ))
        })?;
        if m.vmpool_store > LAYOUT_VERSION {
            return Err(Error::Unsupported(format!(
                "{} has store layout {}; this vmpool reads up to {LAYOUT_VERSION}",
                dir.display(),
                m.vmpool_store
            )));
        }
        if m.driver != driver {
            return Err(Error::NotAStore(format!(
                "{} is a {} store, not {driver}",
                dir.display(),
                m.driver
            )));
        }
        return Ok(());
    }
    if let Some(outer) = enclosing_store(dir) {
        return Err(Error::NotAStore(format!(
            "{} is inside the store at {}; a store cannot be made inside another store",
            dir.display(),
            outer.display()
        )));
    }
    if dir.exists() {
        let rd = std::fs::read_dir(dir).ctx(|| format!("listing {}", dir.display()))?;
        if let Some(e) = rd
            .flatten()
            .find(|e| !ignorable(&e.file_name().to_string_lossy()))
        {
            return Err(Error::NotAStore(format!(
                "{} is not empty (it has {:?}) and is not a vmpool store; refusing to take it over",
                dir.display(),
                e.file_name()
            )));
        }
    } else {
        fsutil::mkdirs(dir)?;
    }
    let m = Marker {
        vmpool_store: LAYOUT_VERSION,
        driver: driver.to_owned(),
        created_at: crate::now_rfc3339(),
        id: Some(uuid::Uuid::new_v4().simple().to_string()),
    };
    fsutil::write_atomic(
        dir,
        "store.json",
        &serde_json::to_vec_pretty(&m).map_err(|e| Error::json("the store marker", e))?,
    )
}

impl Store {
    /// Open the store named by `uri`, or the default store ([`uri::default_uri`]) for `None`.
    /// Creates it when missing, and cleans up after operations whose process died.
    pub fn open(uri: Option<&str>) -> Result<Store> {
        let uri_s = uri.map(str::to_owned).unwrap_or_else(uri::default_uri);
        let parsed = uri::parse(&uri_s)?;
        let mut limits = Limits::default();
        let mut run = RunConfig::default();
        let mut rest = Vec::new();
        for (k, v) in &parsed.options {
            if !limits.set(k, v)? && !run.set(k, v)? {
                rest.push((k.as_str(), v.as_str()));
            }
        }
        let scheme = parsed.driver.scheme;
        let claim_as = |dir: &Path| claim(dir, scheme);
        let driver = (parsed.driver.open)(&parsed.target, &rest, &claim_as)?;
        let dir = driver.catalog_dir().to_owned();
        let journal = Journal::new(dir.join(".journal"));
        fsutil::mkdirs(journal.dir())?;
        let create_durability = if driver.clone_syncs_catalog() && same_fs(&dir, journal.dir())? {
            Durability::ByClone
        } else {
            Durability::Now
        };
        let id = store_id(&dir)?;
        let store = Store {
            id,
            uid_base: once_cell::sync::OnceCell::new(),
            uri: uri_s,
            catalog: Catalog::open(&dir)?,
            journal,
            lock_path: dir.join(".lock"),
            driver,
            limits,
            run,
            last_recovery: Mutex::new(Recovery::default()),
            create_durability,
        };
        store.recover()?;
        Ok(store)
    }

    /// The URI the store was opened with.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The driver.
    pub fn driver(&self) -> &dyn StorageDriver {
        &*self.driver
    }

    /// The store's limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The catalog directory.
    pub fn catalog_dir(&self) -> &Path {
        self.driver.catalog_dir()
    }

    /// The store's id: names its directories outside the catalog and its uid range.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Where the store's VMs keep their sockets (`<runtime_dir>/<id>`).
    pub(crate) fn sockets_root(&self) -> PathBuf {
        self.run.runtime_dir.join(&self.id)
    }

    /// Store details (`vmpool_store_info`).
    pub fn info(&self) -> StoreInfo {
        StoreInfo {
            uri: self.uri.clone(),
            driver: self.driver.info().scheme,
            capabilities: self.driver.info().caps,
            catalog: self.catalog_dir().to_owned(),
            details: self.driver.describe(),
            limits: self.limits.clone(),
            last_recovery: self
                .last_recovery
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            version: crate::VERSION,
        }
    }

    pub(crate) fn lock(&self, mode: Mode) -> Result<lock::Held> {
        lock::lock(&self.lock_path, mode)
    }

    /// Run the steps of an operation journalled by `entry`: on success the entry is finished;
    /// on failure every undo step registered on the [`Revert`] runs, and the entry is
    /// finished only if all of them worked (otherwise the next recovery finishes the job).
    pub(crate) fn run_journalled<'r, T>(
        &self,
        entry: Entry,
        steps: impl FnOnce(&mut Revert<'r>) -> Result<T>,
    ) -> Result<T> {
        let mut revert: Revert<'r> = Revert::new();
        match steps(&mut revert) {
            Ok(v) => {
                revert.commit();
                entry.finish()?;
                Ok(v)
            }
            Err(e) => {
                if revert.rollback().is_ok() {
                    let _ = entry.finish();
                }
                Err(e)
            }
        }
    }

    /// Start `op`: journal its intent, durable as `durability` says. A dead predecessor on the
    /// same key is recovered first; a live one makes this fail with `conflict(pid)`.
    pub(crate) fn begin(
        &self,
        op: Op,
        durability: Durability,
        conflict: impl Fn(u32) -> Error,
    ) -> Result<Entry> {
        for _ in 0..3 {
            match self.journal.begin(op.clone(), durability)? {
                Begin::Started(e) => return Ok(e),
                Begin::InFlight { pid } => return Err(conflict(pid)),
                Begin::Abandoned(dead) => {
                    self.undo(dead)?;
                }
                Begin::Vanished => {}
            }
        }
        Err(conflict(0))
    }

    /// Start deleting the object whose record is at `record`, under `key` (see
    /// `Journal::begin_delete`: no new blocks needed). A dead predecessor on the key is
    /// recovered first; a live one makes this fail with `conflict(pid)`; a record that is gone
    /// gives `gone()`.
    pub(crate) fn begin_delete(
        &self,
        key: &str,
        record: &Path,
        conflict: impl Fn(u32) -> Error,
        gone: impl Fn() -> Error,
    ) -> Result<Entry> {
        for _ in 0..3 {
            match self.journal.begin_delete(key, record) {
                Ok(Begin::Started(e)) => return Ok(e),
                Ok(Begin::InFlight { pid }) => return Err(conflict(pid)),
                Ok(Begin::Abandoned(dead)) => {
                    self.undo(dead)?;
                }
                Ok(Begin::Vanished) => {}
                Err(Error::NotFound { .. }) => return Err(gone()),
                Err(e) => return Err(e),
            }
        }
        Err(conflict(0))
    }

    /// Finish what a dead process left: creations are rolled back, deletions completed.
    pub(crate) fn undo(&self, entry: Entry) -> Result<Recovery> {
        let mut r = Recovery::default();
        let done = &mut r.cleaned;
        match &entry.op {
            Op::ImageImport {
                uuid,
                token,
                format,
            } => {
                if self.catalog.image(uuid)?.is_none() {
                    for what in self.driver.image_discard(uuid, token, *format)? {
                        done.push(format!(
                            "removed {what} of an interrupted import of image {uuid} (pid {})",
                            entry.pid
                        ));
                    }
                }
            }
            Op::ImageDelete { uuid, format } => {
                self.catalog.remove_image(uuid)?;
                self.driver.image_destroy(uuid, *format)?;
                done.push(format!(
                    "completed an interrupted delete of image {uuid} (pid {})",
                    entry.pid
                ));
            }
            Op::VmCreate { uuid, image_uuid } => {
                let a_home = self.catalog.homes()?.iter().any(|h| h.uuid == *uuid);
                if self.catalog.vm(uuid)?.is_none() && !a_home {
                    match self.driver.vm_destroy(uuid, image_uuid)? {
                        Destroyed::Removed => done.push(format!(
                            "removed the disk of an interrupted create of VM {uuid} (pid {})",
                            entry.pid
                        )),
                        Destroyed::Absent => {}
                        Destroyed::Foreign(what) => r.kept.push(what),
                    }
                }
            }
            Op::VmDelete { uuid, image_uuid } => {
                self.catalog.remove_vm(uuid)?;
                if let Destroyed::Foreign(what) = self.driver.vm_destroy(uuid, image_uuid)? {
                    r.kept.push(what);
                }
                done.push(format!(
                    "completed an interrupted delete of VM {uuid} (pid {})",
                    entry.pid
                ));
            }
            Op::HomeCreate {
                owner,
                uuid,
                image_uuid,
            } => {
                let kept = self.catalog.home(owner)?.is_some_and(|h| h.uuid == *uuid);
                if !kept {
                    match self.driver.vm_destroy(uuid, image_uuid)? {
                        Destroyed::Removed => done.push(format!(
                            "removed the volume of an interrupted create of {owner}'s home (pid {})",
                            entry.pid
                        )),
                        Destroyed::Absent => {}
                        Destroyed::Foreign(what) => r.kept.push(what),
                    }
                }
            }
            Op::HomeDelete {
                owner,
                uuid,
                image_uuid,
            } => {
                // The record's removal is the delete's point of no return: before it, the
                // home is still the owner's (and may be in a desktop again), so it stays.
                if self.catalog.home(owner)?.is_some_and(|h| h.uuid == *uuid) {
                    done.push(format!(
                        "dropped an interrupted delete of {owner}'s home that had not begun (pid {})",
                        entry.pid
                    ));
                } else {
                    if let Destroyed::Foreign(what) = self.driver.vm_destroy(uuid, image_uuid)? {
                        r.kept.push(what);
                    }
                    done.push(format!(
                        "completed an interrupted delete of {owner}'s home (pid {})",
                        entry.pid
                    ));
                }
            }
        }
        entry.finish()?;
        Ok(r)
    }

    /// Clean up after operations whose process died. Runs at every open; safe to call at any
    /// time from any process (live operations are never touched).
    pub fn recover(&self) -> Result<Recovery> {
        let _shared = self.lock(Mode::Shared)?;
        self.recover_locked()
    }

    pub(crate) fn recover_locked(&self) -> Result<Recovery> {
        let mut report = Recovery::default();
        let left = self.journal.abandoned()?;
        report.errors.extend(left.unreadable);
        report.cleaned.extend(left.removed);
        for entry in left.entries {
            let what = format!("{:?}", entry.op);
            match self.undo(entry) {
                Ok(r) => {
                    report.cleaned.extend(r.cleaned);
                    report.kept.extend(r.kept);
                    report.errors.extend(r.errors);
                }
                Err(e) => report.errors.push(format!("{what}: {e}")),
            }
        }
        // Suspends and resumes whose caller died: the guest goes on, or stays suspended.
        report.errors.extend(self.settle_suspends());
        let stale = std::time::Duration::from_secs(60);
        let dirs = [self.catalog_dir(), self.journal.dir()];
        for dir in dirs.into_iter().chain(self.catalog.dirs()) {
            // Best effort: on a read-only store (or one we may not write) reading must go on.
            match fsutil::remove_stale_temps(dir, stale) {
                Ok(removed) => report.cleaned.extend(
                    removed
                        .iter()
                        .map(|p| format!("removed stale temp file {}", p.display())),
                ),
                Err(e) => report.errors.push(e.to_string()),
            }
        }
        *self.last_recovery.lock().unwrap_or_else(|p| p.into_inner()) = report.clone();
        Ok(report)
    }
}
