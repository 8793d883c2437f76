//! The on-disk catalog format: what `images/<uuid>.json` and `vms/<uuid>.json` hold.
//!
//! These types are the stored format and nothing else: the public types ([`Image`], [`Vm`])
//! and the C ABI's JSON (`ffi::wire`) are separate, so each can change without breaking the
//! others. Compatibility rules:
//! - every record carries `schema`, the major version of this format ([`SCHEMA`]); records
//!   written before the field existed read as schema 1;
//! - a field added later gets `#[serde(default)]`, so older records stay readable, and does
//!   not change the major version;
//! - fields this version does not know (written by a newer minor version) are kept in
//!   `extra` and written back unchanged when a record is rewritten;
//! - a record with a newer major schema is refused with [`Error::Unsupported`], naming the
//!   file and both versions, instead of being misread.
//!
//! `tests/golden/` holds records written by earlier versions; a test reads them forever.

use crate::error::{Error, Result};
use crate::image::{DiskFormat, Image, Tags};
use crate::vm::runtime::RunInfo;
use crate::vm::{Accel, Caps, Firmware, LastExit, State, Vm};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use uuid::Uuid;

/// Major version of the record format this library writes and reads.
pub const SCHEMA: u32 = 1;

fn schema_1() -> u32 {
    1
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Fields of a newer minor version, kept as they are.
pub type Extra = BTreeMap<String, serde_json::Value>;

/// An image's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Record format major version.
    #[serde(default = "schema_1")]
    pub schema: u32,
    /// See [`Image`] for the meaning of each field.
    pub uuid: Uuid,
    #[allow(missing_docs)]
    pub name: String,
    #[allow(missing_docs)]
    pub version: String,
    #[allow(missing_docs)]
    pub os: String,
    #[allow(missing_docs)]
    pub format: DiskFormat,
    #[allow(missing_docs)]
    pub size_bytes: u64,
    #[allow(missing_docs)]
    pub sha256: String,
    #[allow(missing_docs)]
    pub created_at: String,
    #[allow(missing_docs)]
    #[serde(default)]
    pub tags: Tags,
    #[allow(missing_docs)]
    pub disk_format: DiskFormat,
    #[allow(missing_docs)]
    pub disk: String,
    /// The image this one was derived from (a pool's memory template: the disk of a VM
    /// booted from `parent`, frozen at the instant its memory was saved). Such an image
    /// depends on its parent, which cannot be deleted while it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Uuid>,
    /// The pool whose memory template this image is (hidden from image lists; removed with
    /// the template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_of: Option<String>,
    /// Unknown fields, written back as read.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Where a VM cloned from a memory template resumes: the template's saved RAM and device
/// state. Present until the VM first runs from it; after that its disk has moved on and a
/// later start boots from the disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restore {
    /// The template image the VM's disk was cloned from.
    pub template: Uuid,
    /// The template's memory file (tmpfs or hugetlbfs), mapped private.
    pub memory: std::path::PathBuf,
    /// The template's device state (QEMU's migration stream).
    pub state: std::path::PathBuf,
}

/// A VM's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmRecord {
    /// Record format major version.
    #[serde(default = "schema_1")]
    pub schema: u32,
    /// See [`Vm`] for the meaning of each field.
    pub uuid: Uuid,
    #[allow(missing_docs)]
    pub alias: String,
    #[allow(missing_docs)]
    pub owner: String,
    #[allow(missing_docs)]
    pub image_uuid: Uuid,
    #[allow(missing_docs)]
    pub vcpus: u32,
    #[allow(missing_docs)]
    pub ram_mib: u64,
    #[allow(missing_docs)]
    pub disk_gib: u64,
    #[allow(missing_docs)]
    pub created_at: String,
    #[allow(missing_docs)]
    pub state: State,
    #[allow(missing_docs)]
    pub disk_path: String,
    #[allow(missing_docs)]
    pub disk_format: DiskFormat,
    #[allow(missing_docs)]
    pub disk_size_bytes: u64,
    #[allow(missing_docs)]
    pub clone_method: String,
    /// Added with VM lifecycle (absent in older records: BIOS).
    #[serde(default)]
    pub firmware: Firmware,
    /// The VM's own accelerator choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accel: Option<Accel>,
    /// MAC address (older records: derived from the uuid at first start, see `mac_for`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// VM generation id (older records: the VM's uuid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmgenid: Option<Uuid>,
    /// The current run, while QEMU runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunInfo>,
    /// How the last run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<LastExit>,
    /// Resource caps of its zone.
    #[serde(default)]
    pub caps: Caps,
    /// The unprivileged uid its QEMU runs as, chosen at its first zoned start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// The pool it belongs to. With an empty `owner` it is one of the pool's spares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// When its owner got it from the pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_at: Option<String>,
    /// A pool's own VM that boots to become its memory template (never handed out).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub template_build: bool,
    /// Set while the VM waits to resume from a memory template instead of booting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<Restore>,
    /// The guest program that gives a clone of a memory template its own identity, while
    /// that is still to be done (set when the clone resumes from the template, cleared when
    /// the program reported done; a hand-out does it first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_pending: Option<String>,
    /// The person it is for (given at create or acquire), applied in the guest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<crate::vm::user::GuestUser>,
    /// Set from the moment its saved state is complete until a resume has loaded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended: Option<Suspension>,
    /// Marked to run: set by a start or wake, cleared by a stop or kill asked for (absent in
    /// older records: not marked).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub autoboot: bool,
    /// When the pool ends its owner's session (the pool's `max_session_s`, fixed when the
    /// session started: the hand-out, or the acquire that brought it back to run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_ends_at: Option<String>,
    /// Unknown fields, written back as read.
    #[serde(flatten)]
    pub extra: Extra,
}

/// When and why a VM was put to sleep, and what its saved state takes on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspension {
    /// RFC 3339 UTC.
    pub at: String,
    /// Who asked, in words (`"on request"`, `"idle"`, `"host stop"`).
    pub reason: String,
    /// Size of the saved state file.
    pub bytes: u64,
    /// It ran with a memory-template clone's devices (see `qemu::Launch::clone_layout`),
    /// which its resume must have again.
    #[serde(default)]
    pub clone_layout: bool,
}

/// A pool's record (`pools/<name>.json`). See [`crate::pool::PoolSpec`] for the fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolRecord {
    /// Record format major version.
    #[serde(default = "schema_1")]
    pub schema: u32,
    /// The pool's settings, as the caller gave them.
    #[serde(flatten)]
    pub spec: crate::pool::PoolSpec,
    /// When it was created, RFC 3339 UTC.
    pub created_at: String,
    /// When its settings last changed.
    pub updated_at: String,
    /// Set once a delete began: no acquire or refill touches it; the next delete finishes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleting: bool,
    /// Its current memory template (warmth `template`), once built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateRecord>,
    /// Clones destroyed because their customization (the identity step) failed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub customization_failures: u64,
    /// When the last one failed, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_customization_failure: Option<String>,
    /// Unknown fields, written back as read.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A pool's memory template: an image (the template VM's disk, frozen) plus its RAM and
/// device state in files, and what it was built from (it is rebuilt when that changes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateRecord {
    /// The template image (clones' disks are clones of it).
    pub image: Uuid,
    /// The image it was booted from.
    pub base_image: Uuid,
    /// The flavor it was booted with.
    pub vcpus: u32,
    #[allow(missing_docs)]
    pub ram_mib: u64,
    #[allow(missing_docs)]
    pub disk_gib: u64,
    /// Its RAM (mapped private by each clone).
    pub memory: std::path::PathBuf,
    /// Its device state.
    pub state: std::path::PathBuf,
    /// When it was made.
    pub made_at: String,
}

/// An owner's home volume (`homes/<owner>.json`): a disk that outlives their desktops.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HomeRecord {
    /// Record format major version.
    #[serde(default = "schema_1")]
    pub schema: u32,
    /// Whose it is.
    pub owner: String,
    /// The volume's own id (its name in the driver, as a VM disk's is its VM's uuid).
    pub uuid: Uuid,
    /// The blank image it is a clone of.
    pub image_uuid: Uuid,
    /// Where the driver made it.
    pub disk_path: String,
    /// Its format.
    pub disk_format: DiskFormat,
    /// Its size, bytes.
    pub size_bytes: u64,
    /// How it was made (`CloneMethod` name).
    pub clone_method: String,
    /// When it was made, RFC 3339 UTC.
    pub created_at: String,
    /// The VM it was last given to; it is in use while that VM runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attached_to: Option<Uuid>,
    /// Unknown fields, written back as read.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Parse a stored record, refusing a newer major schema by name before looking at fields.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], path: &Path) -> Result<T> {
    let unreadable = |e: serde_json::Error| {
        Error::Internal(format!(
            "catalog entry {} is unreadable: {e}",
            path.display()
        ))
    };
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(unreadable)?;
    let schema = match v.get("schema") {
        None => 1,
        Some(s) => s.as_u64().ok_or_else(|| {
            Error::Internal(format!(
                "catalog entry {} has a schema that is not a number: {s}",
                path.display()
            ))
        })?,
    };
    if schema > u64::from(SCHEMA) {
        return Err(Error::Unsupported(format!(
            "catalog entry {} was written by a newer vmpool (record schema {schema}; this vmpool {} reads up to {SCHEMA}); upgrade vmpool to use this store",
            path.display(),
            crate::VERSION
        )));
    }
    serde_json::from_value(v).map_err(unreadable)
}

/// Serialise a record for storage.
pub fn encode<T: Serialize>(record: &T) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(record).map_err(|e| Error::json("a catalog record", e))
}

impl From<&ImageRecord> for Image {
    fn from(r: &ImageRecord) -> Image {
        Image {
            uuid: r.uuid,
            name: r.name.clone(),
            version: r.version.clone(),
            os: r.os.clone(),
            format: r.format,
            size_bytes: r.size_bytes,
            sha256: r.sha256.clone(),
            created_at: r.created_at.clone(),
            tags: r.tags.clone(),
            disk_format: r.disk_format,
            disk: r.disk.clone(),
        }
    }
}

impl From<&Image> for ImageRecord {
    fn from(m: &Image) -> ImageRecord {
        ImageRecord {
            schema: SCHEMA,
            uuid: m.uuid,
            name: m.name.clone(),
            version: m.version.clone(),
            os: m.os.clone(),
            format: m.format,
            size_bytes: m.size_bytes,
            sha256: m.sha256.clone(),
            created_at: m.created_at.clone(),
            tags: m.tags.clone(),
            disk_format: m.disk_format,
            disk: m.disk.clone(),
            parent: None,
            template_of: None,
            extra: Extra::new(),
        }
    }
}

impl From<&VmRecord> for Vm {
    fn from(r: &VmRecord) -> Vm {
        Vm {
            uuid: r.uuid,
            alias: r.alias.clone(),
            owner: r.owner.clone(),
            image_uuid: r.image_uuid,
            vcpus: r.vcpus,
            ram_mib: r.ram_mib,
            disk_gib: r.disk_gib,
            created_at: r.created_at.clone(),
            state: r.state,
            disk_path: r.disk_path.clone(),
            disk_format: r.disk_format,
            disk_size_bytes: r.disk_size_bytes,
            clone_method: r.clone_method.clone(),
            firmware: r.firmware,
            accel: r.accel,
            mac: r.mac.clone().unwrap_or_else(|| crate::vm::mac_for(&r.uuid)),
            vmgenid: r.vmgenid.unwrap_or(r.uuid),
            last_exit: r.last_exit.clone(),
            caps: r.caps.clone(),
            pool: r.pool.clone(),
            user: r.user.clone(),
            suspended: r.suspended.clone(),
            autoboot: r.autoboot,
            // Only a desktop that runs for its owner is in a session (asleep or stopped, the
            // end is kept for the next start to judge, but is no end).
            session_ends_at: r
                .session_ends_at
                .clone()
                .filter(|_| r.suspended.is_none() && !r.owner.is_empty() && r.state.is_active()),
        }
    }
}

impl From<&Vm> for VmRecord {
    fn from(v: &Vm) -> VmRecord {
        VmRecord {
            schema: SCHEMA,
            uuid: v.uuid,
            alias: v.alias.clone(),
            owner: v.owner.clone(),
            image_uuid: v.image_uuid,
            vcpus: v.vcpus,
            ram_mib: v.ram_mib,
            disk_gib: v.disk_gib,
            created_at: v.created_at.clone(),
            state: v.state,
            disk_path: v.disk_path.clone(),
            disk_format: v.disk_format,
            disk_size_bytes: v.disk_size_bytes,
            clone_method: v.clone_method.clone(),
            firmware: v.firmware,
            accel: v.accel,
            mac: Some(v.mac.clone()),
            vmgenid: Some(v.vmgenid),
            run: None,
            last_exit: v.last_exit.clone(),
            caps: v.caps.clone(),
            uid: None,
            pool: v.pool.clone(),
            claimed_at: None,
            template_build: false,
            restore: None,
            identity_pending: None,
            user: v.user.clone(),
            suspended: v.suspended.clone(),
            autoboot: v.autoboot,
            session_ends_at: v.session_ends_at.clone(),
            extra: Extra::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VM_V1: &str = r#"{"uuid":"33333333-3333-4333-8333-333333333333","alias":"golden-vm","owner":"alice","image_uuid":"11111111-1111-4111-8111-111111111111","vcpus":2,"ram_mib":512,"disk_gib":1,"created_at":"2026-11-26T10:19:50Z","state":"stopped","disk_path":"/x","disk_format":"qcow2","disk_size_bytes":1073741824,"clone_method":"qcow2-overlay"}"#;

    #[test]
    fn unknown_fields_survive_a_rewrite() {
        let newer = VM_V1.replacen('{', r#"{"schema":1,"qos":{"iops":500},"#, 1);
        let r: VmRecord = decode(newer.as_bytes(), Path::new("x")).unwrap();
        assert_eq!(r.extra["qos"]["iops"], 500);
        let again: serde_json::Value = serde_json::from_slice(&encode(&r).unwrap()).unwrap();
        assert_eq!(again["qos"]["iops"], 500);
        assert_eq!(again["schema"], 1);
    }

    #[test]
    fn newer_major_is_refused_by_name() {
        let newer = VM_V1.replacen('{', r#"{"schema":2,"#, 1);
        let e = decode::<VmRecord>(newer.as_bytes(), Path::new("/s/vms/x.json")).unwrap_err();
        assert_eq!(e.code(), crate::ResultCode::VMPOOL_RESULT_UNSUPPORTED);
        let msg = e.to_string();
        assert!(
            msg.contains("/s/vms/x.json") && msg.contains("schema 2"),
            "{msg}"
        );
    }

    /// What the next version will do: add a field with a default. It reads this version's
    /// records, and this version reads its records.
    #[test]
    fn an_added_field_reads_both_ways() {
        #[derive(Deserialize, Serialize)]
        struct NextVm {
            #[serde(flatten)]
            base: VmRecord,
            #[serde(default)]
            spice_port: Option<u16>,
        }
        let ours: VmRecord = decode(VM_V1.as_bytes(), Path::new("x")).unwrap();
        let bytes = encode(&ours).unwrap();
        let next: NextVm = decode(&bytes, Path::new("x")).unwrap();
        assert_eq!(next.spice_port, None);
        assert_eq!(next.base.uuid, ours.uuid);
        let written_by_next = serde_json::to_vec(&NextVm {
            spice_port: Some(5930),
            ..next
        })
        .unwrap();
        let back: VmRecord = decode(&written_by_next, Path::new("x")).unwrap();
        assert_eq!(back.alias, "golden-vm");
        assert_eq!(back.extra["spice_port"], 5930);
    }
}
