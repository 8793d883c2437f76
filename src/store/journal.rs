//! Intent journal: before an operation creates or destroys several things it writes what it is
//! about to do, locked by the process doing it. When a process dies mid-way its entry stays and
//! its lock is free; the next open of the store finds it and the store rolls the operation back
//! (creations) or forward (deletions). One entry per object key also keeps two processes from
//! working on the same image or VM at once.
//!
//! Two kinds of entry share the key space (`<kind>-<uuid>.json`):
//! - an operation body ([`Op`], pid, start time), written for imports and creates;
//! - for deletes, the object's catalog record itself, hard-linked into the journal: a delete
//!   must work on a file system that is 100% full (deleting is how an operator frees space),
//!   and a link needs no new data block. The record says everything recovery needs.
//!
//! An entry is durable before the operation does anything it describes: either synced at once
//! ([`Durability::Now`]), or, for a VM create on a driver whose clone commits the catalog
//! ([`Durability::ByClone`]), by the clone itself. An entry found empty (0 bytes) and
//! unlocked is what a crash leaves of a `ByClone` begin whose body never reached the disk;
//! nothing it describes can exist (see `Durability::ByClone`), so recovery removes it.

use super::catalog::records::{ImageRecord, VmRecord};
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{self, TMP_PREFIX};
use crate::image::DiskFormat;
use crate::lock;
use nix::fcntl::Flock;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
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
    /// An owner's home volume cloned, its record not yet written. Undone only when the
    /// record does not name this volume: a home is never removed by recovery once it is one.
    HomeCreate {
        /// The owner.
        owner: String,
        /// The volume.
        uuid: Uuid,
        /// The blank image it is a clone of.
        image_uuid: Uuid,
    },
    /// An owner's home record being removed, then its volume (the explicit delete).
    HomeDelete {
        /// The owner.
        owner: String,
        /// The volume.
        uuid: Uuid,
        /// The blank image it is a clone of.
        image_uuid: Uuid,
    },
}

impl Op {
    /// The object key: one operation per key at a time.
    pub fn key(&self) -> String {
        match self {
            Op::ImageImport { uuid, .. } | Op::ImageDelete { uuid, .. } => format!("image-{uuid}"),
            Op::VmCreate { uuid, .. } | Op::VmDelete { uuid, .. } => format!("vm-{uuid}"),
            Op::HomeCreate { owner, .. } | Op::HomeDelete { owner, .. } => format!("home-{owner}"),
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

/// How a new entry is made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Synced before `begin` returns: the entry's file, then the journal directory.
    Now,
    /// Not synced by `begin`: the caller's next step is a driver clone that returns only once
    /// everything written to the catalog before it is on disk (a driver whose
    /// `StorageDriver::clone_syncs_catalog` holds, e.g. ZFS: see its implementation for why).
    /// Until that clone exists nothing the entry describes exists, so an entry lost (or found
    /// empty) after a crash before it is harmless.
    ///
    /// The entry is written under a temp name and linked into place, never as an O_TMPFILE:
    /// ZFS makes the link of an O_TMPFILE wait for a transaction-group sync (its creation is
    /// not in the intent log), holding the journal directory's lock meanwhile, which would
    /// queue every concurrent begin and finish behind one sync each.
    ByClone,
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
    /// The entry in the way went away meanwhile (its operation finished, or it was an empty
    /// leftover of a crash and was removed): try again.
    Vanished,
}

/// Entries of dead processes, as `Journal::abandoned` finds them.
#[derive(Debug, Default)]
pub struct Leftovers {
    /// Each locked for the caller to recover.
    pub entries: Vec<Entry>,
    /// Descriptions of entries that cannot be read (left in place).
    pub unreadable: Vec<String>,
    /// Descriptions of empty entries removed (begins cut short by a crash; nothing of their
    /// operation exists).
    pub removed: Vec<String>,
}

/// What locking an existing entry found.
enum Taken {
    /// A dead owner's entry, now ours.
    Dead(Entry),
    /// Its owner still runs, or it is gone.
    NotOurs,
    /// It was empty: a begin cut short by a crash; removed.
    Empty,
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

    /// Record the intent of `op`, durably (as `durability` says), before doing anything it
    /// describes.
    pub fn begin(&self, op: Op, durability: Durability) -> Result<Begin> {
        let key = op.key();
        let body = Body {
            op,
            pid: std::process::id(),
            started_at: crate::now_rfc3339(),
        };
        let bytes =
            serde_json::to_vec_pretty(&body).map_err(|e| Error::json("a journal entry", e))?;
        let path = self.path(&key);
        let sync = durability == Durability::Now;
        // Written and locked first, then linked into place: an entry is never visible
        // unlocked or half-written, and link() refuses an existing key atomically. The
        // entry is written as an unnamed file (O_TMPFILE), so a process killed before the
        // link leaves nothing at all; where the file system cannot (or for `ByClone`, see
        // there), under a temp name.
        let tmpfile = if sync {
            OpenOptions::new()
                .write(true)
                .read(true)
                .mode(0o644)
                .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
                .open(&self.dir)
        } else {
            Err(std::io::Error::from_raw_os_error(libc::EOPNOTSUPP))
        };
        let linked = match tmpfile {
            Ok(f) => {
                let mut lock = lock::lock_new(f, &self.dir)?;
                lock.write_all(&bytes)
                    .ctx(|| format!("writing journal entry {}", path.display()))?;
                lock.sync_all()
                    .ctx(|| format!("syncing journal entry {}", path.display()))?;
                let proc_path = format!("/proc/self/fd/{}", lock.as_raw_fd());
                match nix::unistd::linkat(
                    None,
                    Path::new(&proc_path),
                    None,
                    path.as_path(),
                    nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
                ) {
                    Ok(()) => Some(lock),
                    Err(nix::errno::Errno::EEXIST) => None,
                    Err(e) => {
                        return Err(e).ctx(|| format!("linking journal entry {}", path.display()))
                    }
                }
            }
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)
                ) =>
            {
                self.begin_named(&key, &bytes, &path, sync)?
            }
            Err(e) => return Err(e).ctx(|| format!("creating journal entry {}", path.display())),
        };
        match linked {
            Some(lock) => {
                if sync {
                    fsutil::sync_dir(&self.dir)?;
                }
                Ok(Begin::Started(Entry {
                    op: body.op,
                    pid: body.pid,
                    path,
                    _lock: lock,
                }))
            }
            None => self.contended(&path),
        }
    }

    /// `begin` under a temp name (a file system without O_TMPFILE, or `ByClone`): a temp
    /// name, then link, then unlink; the file synced before the link when `sync`.
    fn begin_named(
        &self,
        key: &str,
        bytes: &[u8],
        path: &Path,
        sync: bool,
    ) -> Result<Option<Flock<File>>> {
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
        let linked = (|| {
            let mut lock = lock::lock_new(f, &tmp)?;
            lock.write_all(bytes)
                .ctx(|| format!("writing {}", tmp.display()))?;
            if sync {
                lock.sync_all()
                    .ctx(|| format!("syncing {}", tmp.display()))?;
            }
            match fs::hard_link(&tmp, path) {
                Ok(()) => Ok(Some(lock)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(None),
                Err(e) => Err(e).ctx(|| format!("linking {}", path.display())),
            }
        })();
        let _ = fs::remove_file(&tmp);
        linked
    }

    /// Begin deleting the object whose catalog record is at `record`, under `key`, by linking
    /// the record into the journal. Needs no new data block. `NotFound` if the record is gone.
    pub fn begin_delete(&self, key: &str, record: &Path) -> Result<Begin> {
        let f = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(record)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::not_found("record", record.display().to_string()))
            }
            Err(e) => return Err(e).ctx(|| format!("opening {}", record.display())),
        };
        // Read through the descriptor we will lock: the entry is this inode, whatever the name
        // points to meanwhile.
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut &f, &mut bytes)
            .ctx(|| format!("reading {}", record.display()))?;
        let (op, pid) = parse_entry(key, &bytes)
            .map_err(|e| Error::Internal(format!("{}: {e}", record.display())))?;
        let path = self.path(key);
        // Lock the record's inode before it becomes the entry: from the moment it is linked,
        // a live lock on it tells others the delete is in flight.
        let lock = match lock::lock_new(f, record) {
            Ok(l) => l,
            Err(_) => return self.contended(&path),
        };
        match fs::hard_link(record, &path) {
            Ok(()) => {
                fsutil::sync_dir(&self.dir)?;
                Ok(Begin::Started(Entry {
                    op,
                    pid,
                    path,
                    _lock: lock,
                }))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                drop(lock);
                self.contended(&path)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(Error::not_found("record", record.display().to_string()))
            }
            Err(e) => Err(e).ctx(|| format!("linking {} to {}", record.display(), path.display())),
        }
    }

    /// Someone holds (or held) the key: take a dead owner's entry over, or say who is working.
    fn contended(&self, path: &Path) -> Result<Begin> {
        match self.take_over(path)? {
            Taken::Dead(entry) => Ok(Begin::Abandoned(entry)),
            Taken::Empty => Ok(Begin::Vanished),
            Taken::NotOurs => {
                let key = key_of(path);
                let pid = fs::read(path)
                    .ok()
                    .and_then(|b| parse_entry(&key, &b).ok())
                    .map_or(0, |(_, pid)| pid);
                Ok(Begin::InFlight { pid })
            }
        }
    }

    /// Lock an entry whose owner is gone. `NotOurs` if its owner still runs or it just
    /// finished; an empty one is removed (see the module comment).
    fn take_over(&self, path: &Path) -> Result<Taken> {
        let Some(lock) = lock::try_lock_existing(path, lock::Mode::Exclusive)? else {
            return Ok(Taken::NotOurs);
        };
        let bytes = fs::read(path).ctx(|| format!("reading {}", path.display()))?;
        if bytes.is_empty() {
            // Locked by us, so no live process is writing it; and a live begin links its
            // entry only once written. Unlinked before the lock goes (with `lock`).
            fsutil::remove_file_if_exists(path)?;
            drop(lock);
            return Ok(Taken::Empty);
        }
        match parse_entry(&key_of(path), &bytes) {
            Ok((op, pid)) => Ok(Taken::Dead(Entry { op, pid, path: path.to_owned(), _lock: lock })),
            Err(e) => Err(Error::Internal(format!(
                "journal entry {} is unreadable ({e}); it was written by a newer or broken vmpool, or is not vmpool's; it is left in place and skipped",
                path.display()
            ))),
        }
    }

    /// Entries left by processes that died, each locked for the caller to recover; a
    /// description of each entry that cannot be read (left in place, reported, skipped: one
    /// bad file must not make the whole store unusable); and of each empty one removed.
    pub fn abandoned(&self) -> Result<Leftovers> {
        let mut out = Leftovers::default();
        let rd = match fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e).ctx(|| format!("listing {}", self.dir.display())),
        };
        for ent in rd.flatten() {
            let name = ent.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            match self.take_over(&ent.path()) {
                Ok(Taken::Dead(entry)) => out.entries.push(entry),
                Ok(Taken::NotOurs) => {}
                Ok(Taken::Empty) => out.removed.push(format!(
                    "removed the empty journal entry {name} (a start that a crash cut short before its entry was on disk; nothing of it was made)"
                )),
                Err(e) => out.unreadable.push(e.to_string()),
            }
        }
        Ok(out)
    }
}

/// The key of an entry path (`vm-<uuid>` of `.../vm-<uuid>.json`).
fn key_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy())
        .and_then(|n| n.strip_suffix(".json").map(str::to_owned))
        .unwrap_or_default()
}

/// Read a journal entry stored under `key`: an operation body, or (for a delete) the object's
/// catalog record. Returns the operation and the pid that started it (0 when unknown). Never
/// panics, whatever the bytes (fuzzed).
pub fn parse_entry(key: &str, bytes: &[u8]) -> std::result::Result<(Op, u32), String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if v.get("op").is_some() {
        let body: Body = serde_json::from_value(v).map_err(|e| e.to_string())?;
        if body.op.key() != key {
            return Err(format!("the entry is for {}, not {key}", body.op.key()));
        }
        return Ok((body.op, body.pid));
    }
    let (op, uuid) = if key.starts_with("vm-") {
        let r: VmRecord = serde_json::from_value(v).map_err(|e| format!("VM record: {e}"))?;
        (
            Op::VmDelete {
                uuid: r.uuid,
                image_uuid: r.image_uuid,
            },
            r.uuid,
        )
    } else if key.starts_with("image-") {
        let r: ImageRecord = serde_json::from_value(v).map_err(|e| format!("image record: {e}"))?;
        (
            Op::ImageDelete {
                uuid: r.uuid,
                format: r.disk_format,
            },
            r.uuid,
        )
    } else {
        return Err(format!("unknown journal key {key:?}"));
    };
    if op.key() != key {
        return Err(format!("the record is of {uuid}, not {key}"));
    }
    Ok((op, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsynced_entries_and_empty_leftovers() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let j = Journal::new(dir.to_owned());
        let u = Uuid::new_v4();
        let op = Op::VmCreate {
            uuid: u,
            image_uuid: Uuid::new_v4(),
        };
        let entry = dir.join(format!("vm-{u}.json"));
        let Begin::Started(e) = j.begin(op.clone(), Durability::ByClone).unwrap() else {
            panic!("not started");
        };
        // Held: another begin on the key sees it in flight (flock is per open file).
        assert!(matches!(
            j.begin(op.clone(), Durability::ByClone).unwrap(),
            Begin::InFlight { pid } if pid == std::process::id()
        ));
        // The entry, complete, and no temp file beside it.
        let names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec![format!("vm-{u}.json")]);
        assert_eq!(
            parse_entry(&format!("vm-{u}"), &fs::read(&entry).unwrap())
                .unwrap()
                .0,
            op
        );
        e.finish().unwrap();
        assert!(!entry.exists());
        // What a crash can leave of an unsynced begin: the name without the body. Recovery
        // removes it, and so does a begin that finds it in the way.
        fs::write(&entry, b"").unwrap();
        let left = j.abandoned().unwrap();
        assert!(left.entries.is_empty() && left.unreadable.is_empty());
        assert_eq!(left.removed.len(), 1, "{:?}", left.removed);
        assert!(!entry.exists());
        fs::write(&entry, b"").unwrap();
        assert!(matches!(
            j.begin(op.clone(), Durability::Now).unwrap(),
            Begin::Vanished
        ));
        assert!(matches!(
            j.begin(op, Durability::Now).unwrap(),
            Begin::Started(_)
        ));
        // Anything else unreadable is left in place and reported.
        let other = dir.join(format!("vm-{}.json", Uuid::new_v4()));
        fs::write(&other, b"{").unwrap();
        let left = j.abandoned().unwrap();
        assert_eq!(left.unreadable.len(), 1);
        assert!(other.exists());
    }

    #[test]
    fn entries_of_both_kinds_parse_and_garbage_does_not() {
        let u = "11111111-1111-4111-8111-111111111111";
        let body = format!(
            r#"{{"op":"vm_create","uuid":"{u}","image_uuid":"{u}","image_format":"raw","pid":7,"started_at":"x"}}"#
        );
        let (op, pid) = parse_entry(&format!("vm-{u}"), body.as_bytes()).unwrap();
        assert!(matches!(op, Op::VmCreate { .. }));
        assert_eq!(pid, 7);
        assert!(parse_entry(&format!("image-{u}"), body.as_bytes()).is_err());
        let rec = format!(
            r#"{{"uuid":"{u}","alias":"a","owner":"o","image_uuid":"{u}","vcpus":1,"ram_mib":64,"disk_gib":1,"created_at":"x","state":"stopped","disk_path":"/x","disk_format":"raw","disk_size_bytes":1,"clone_method":"reflink"}}"#
        );
        let (op, _) = parse_entry(&format!("vm-{u}"), rec.as_bytes()).unwrap();
        assert!(matches!(op, Op::VmDelete { .. }));
        for junk in [&b""[..], b"{", b"[]", b"{\"op\":\"explode\"}", b"\xff\xfe"] {
            assert!(parse_entry(&format!("vm-{u}"), junk).is_err());
        }
    }
}
