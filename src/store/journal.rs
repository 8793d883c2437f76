//! Intent journal: before an operation creates or destroys several things it writes what it is
//! about to do, locked by the process doing it. When a process dies mid-way its entry stays and
//! its lock is free; the next open of the store finds it and the store rolls the operation back
//! (creations) or forward (deletions). One entry per object key also keeps two processes from
//! working on the same image or VM at once.

use crate::error::{Error, IoContext, Result};
use crate::fsutil::{self, TMP_PREFIX};
use crate::image::DiskFormat;
use crate::lock;
use nix::fcntl::Flock;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// What an operation may leave behind, with what the driver needs to find and verify it.
/// Part of the on-disk format: entries written by earlier versions (which also carried an
/// unused `image_format` in the VM operations) must stay readable; unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Staging or sealed image volume, no manifest yet. `token` marks volumes as ours.
    ImageImport {
        /// The image.
        uuid: Uuid,
        /// Marks the volumes this import made.
        token: String,
        /// The format it is stored in.
        format: DiskFormat,
    },
    /// Manifest being removed, then the volume.
    ImageDelete {
        /// The image.
        uuid: Uuid,
        /// The format it is stored in.
        format: DiskFormat,
    },
    /// VM disk cloned from `image_uuid`, record not yet written.
    VmCreate {
        /// The VM.
        uuid: Uuid,
        /// The image its disk is a clone of.
        image_uuid: Uuid,
    },
    /// Record being removed, then the disk.
    VmDelete {
        /// The VM.
        uuid: Uuid,
        /// The image its disk is a clone of.
        image_uuid: Uuid,
    },
}

impl Op {
    /// The object key: one operation per key at a time.
    pub fn key(&self) -> String {
        match self {
            Op::ImageImport { uuid, .. } | Op::ImageDelete { uuid, .. } => format!("image-{uuid}"),
            Op::VmCreate { uuid, .. } | Op::VmDelete { uuid, .. } => format!("vm-{uuid}"),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Body {
    #[serde(flatten)]
    op: Op,
    pid: u32,
    started_at: String,
}

/// An entry this process holds: either one it started, or a dead one it took over to recover.
#[derive(Debug)]
pub struct Entry {
    /// What the operation does.
    pub op: Op,
    /// The process that started it.
    pub pid: u32,
    path: PathBuf,
    _lock: Flock<File>,
}

impl Entry {
    /// The operation is complete (or fully undone): remove the entry, then release the lock.
    pub fn finish(self) -> Result<()> {
        fsutil::remove_file_if_exists(&self.path)?;
        Ok(())
    }
}

/// Outcome of trying to start an operation on a key.
pub enum Begin {
    /// Ours now.
    Started(Entry),
    /// Another live process is working on this key.
    InFlight {
        /// Its pid, as it recorded it (0 if unreadable).
        pid: u32,
    },
    /// A dead process left an entry for this key; it has been taken over for recovery.
    Abandoned(Entry),
}

/// The journal directory of a store.
#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
}

impl Journal {
    /// The journal in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Journal { dir }
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    /// Record the intent of `op`, durably, before doing anything it describes.
    pub fn begin(&self, op: Op) -> Result<Begin> {
        let key = op.key();
        let body = Body {
            op,
            pid: std::process::id(),
            started_at: crate::now_rfc3339(),
        };
        let bytes = serde_json::to_vec_pretty(&body).map_err(|e| Error::Internal(e.to_string()))?;
        // Written and locked under a temp name, then linked into place: an entry is never
        // visible unlocked or half-written, and link() refuses an existing key atomically.
        let tmp = self
            .dir
            .join(format!("{TMP_PREFIX}{}-{key}", fsutil::token()));
        let f = OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_CLOEXEC)
            .open(&tmp)
            .ctx(|| format!("creating journal entry {}", tmp.display()))?;
        let path = self.path(&key);
        let linked = (|| {
            let mut lock = lock::lock_new(f, &tmp)?;
            lock.write_all(&bytes)
                .ctx(|| format!("writing {}", tmp.display()))?;
            lock.sync_all()
                .ctx(|| format!("syncing {}", tmp.display()))?;
            match fs::hard_link(&tmp, &path) {
                Ok(()) => Ok(Some(lock)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(None),
                Err(e) => Err(e).ctx(|| format!("linking {}", path.display())),
            }
        })();
        let _ = fs::remove_file(&tmp);
        match linked? {
            Some(lock) => {
                fsutil::sync_dir(&self.dir)?;
                Ok(Begin::Started(Entry {
                    op: body.op,
                    pid: body.pid,
                    path,
                    _lock: lock,
                }))
            }
            None => match self.take_over(&path)? {
                Some(entry) => Ok(Begin::Abandoned(entry)),
                None => {
                    let pid = fs::read(&path)
                        .ok()
                        .and_then(|b| serde_json::from_slice::<Body>(&b).ok())
                        .map_or(0, |b| b.pid);
                    Ok(Begin::InFlight { pid })
                }
            },
        }
    }

    /// Lock an entry whose owner is gone. `None` if its owner still runs or it just finished.
    fn take_over(&self, path: &Path) -> Result<Option<Entry>> {
        let Some(lock) = lock::try_lock_existing(path, lock::Mode::Exclusive)? else {
            return Ok(None);
        };
        let bytes = fs::read(path).ctx(|| format!("reading {}", path.display()))?;
        match serde_json::from_slice::<Body>(&bytes) {
            Ok(body) => Ok(Some(Entry { op: body.op, pid: body.pid, path: path.to_owned(), _lock: lock })),
            Err(e) => Err(Error::Internal(format!(
                "journal entry {} is unreadable ({e}); it was written by a newer or broken vmpool, or is not vmpool's; it is left in place and skipped",
                path.display()
            ))),
        }
    }

    /// Entries left by processes that died, each locked for the caller to recover, and a
    /// description of each entry that cannot be read (left in place, reported, skipped: one
    /// bad file must not make the whole store unusable).
    pub fn abandoned(&self) -> Result<(Vec<Entry>, Vec<String>)> {
        let mut out = Vec::new();
        let mut unreadable = Vec::new();
        let rd = match fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((out, unreadable)),
            Err(e) => return Err(e).ctx(|| format!("listing {}", self.dir.display())),
        };
        for ent in rd.flatten() {
            let name = ent.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            match self.take_over(&ent.path()) {
                Ok(Some(entry)) => out.push(entry),
                Ok(None) => {}
                Err(e) => unreadable.push(e.to_string()),
            }
        }
        Ok((out, unreadable))
    }
}
