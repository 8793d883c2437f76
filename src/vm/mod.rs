//! VMs: the create payload callers send and the record the store keeps.

use crate::error::{Error, Result};
use crate::image::DiskFormat;
use crate::validate::{self, Limits};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Longest payload accepted, in bytes.
pub const PAYLOAD_MAX: usize = 64 * 1024;

/// `vmpool_vm_create` input. Integers are signed so that a negative count is reported as out
/// of range rather than as a JSON type error.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    uuid: Option<String>,
    alias: String,
    owner: String,
    image_uuid: String,
    vcpus: i64,
    ram_mib: i64,
    disk_gib: Option<i64>,
}

/// A checked create request.
#[derive(Debug, Clone)]
pub struct Spec {
    pub uuid: Uuid,
    pub alias: String,
    pub owner: String,
    pub image_uuid: Uuid,
    pub vcpus: u32,
    pub ram_mib: u64,
    /// `None`: the image's size rounded up to whole GiB.
    pub disk_gib: Option<u64>,
}

fn non_negative(field: &str, v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| Error::invalid(format!("{field} {v} is negative")))
}

impl Spec {
    pub fn parse(json: &str, limits: &Limits) -> Result<Spec> {
        if json.len() > PAYLOAD_MAX {
            return Err(Error::StringTooLong {
                what: "VM payload",
                max: PAYLOAD_MAX,
            });
        }
        let p: Payload = serde_json::from_str(json)
            .map_err(|e| Error::InvalidJson(format!("VM payload: {e}")))?;
        let uuid = match &p.uuid {
            Some(u) => validate::uuid("uuid", u)?,
            None => Uuid::new_v4(),
        };
        validate::name("alias", &p.alias)?;
        validate::name("owner", &p.owner)?;
        let image_uuid = validate::uuid("image_uuid", &p.image_uuid)?;
        let vcpus = limits.vcpus(non_negative("vcpus", p.vcpus)?)?;
        let ram_mib = limits.ram_mib(non_negative("ram_mib", p.ram_mib)?)?;
        let disk_gib = p
            .disk_gib
            .map(|d| non_negative("disk_gib", d).and_then(|d| limits.disk_gib(d)))
            .transpose()?;
        Ok(Spec {
            uuid,
            alias: p.alias,
            owner: p.owner,
            image_uuid,
            vcpus,
            ram_mib,
            disk_gib,
        })
    }

    /// Disk size in bytes for an image of `image_bytes`; refuses to shrink below the image.
    pub fn disk_bytes(&self, image_bytes: u64, limits: &Limits) -> Result<u64> {
        let gib = match self.disk_gib {
            Some(g) => g,
            None => limits.disk_gib(image_bytes.div_ceil(1 << 30))?,
        };
        let bytes = gib << 30;
        if bytes < image_bytes {
            return Err(Error::invalid(format!(
                "disk_gib {gib} is smaller than image {} ({image_bytes} bytes); disks are never shrunk below their image",
                self.image_uuid
            )));
        }
        Ok(bytes)
    }
}

/// Lifecycle state of a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Stopped,
    Running,
}

/// What the store keeps about a VM. This is the JSON returned by `vmpool_vm_get`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub uuid: Uuid,
    pub alias: String,
    pub owner: String,
    pub image_uuid: Uuid,
    pub vcpus: u32,
    pub ram_mib: u64,
    pub disk_gib: u64,
    pub created_at: String,
    pub state: State,
    pub disk_path: String,
    pub disk_format: DiskFormat,
    pub disk_size_bytes: u64,
    /// How the disk was cloned from the image (reflink, qcow2-overlay, btrfs-snapshot, zfs-clone).
    pub clone_method: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMG: &str = "6f1c2b34-0d4e-4f8a-9b6c-1234567890ab";

    fn parse(j: &str) -> Result<Spec> {
        Spec::parse(j, &Limits::default())
    }

    #[test]
    fn payloads() {
        let ok = format!(
            r#"{{"alias":"a","owner":"o","image_uuid":"{IMG}","vcpus":2,"ram_mib":2048,"disk_gib":20}}"#
        );
        let s = parse(&ok).unwrap();
        assert_eq!((s.vcpus, s.ram_mib, s.disk_gib), (2, 2048, Some(20)));
        let e = parse(&ok.replace("\"vcpus\"", "\"cpus\"")).unwrap_err();
        assert_eq!(e.code(), crate::ResultCode::VMPOOL_RESULT_INVALID_JSON);
        assert!(e.to_string().contains("cpus"), "{e}");
        let e = parse(&ok.replace(":2,", ":-1,")).unwrap_err();
        assert_eq!(e.code(), crate::ResultCode::VMPOOL_RESULT_INVALID_ARGUMENT);
        let e = parse(&ok.replace(":20}", ":0}")).unwrap_err();
        assert!(e.to_string().contains("disk_gib"), "{e}");
        assert!(parse(&ok.replace("\"a\"", "\"../x\"")).is_err());
    }

    #[test]
    fn never_shrinks() {
        let s = parse(&format!(r#"{{"alias":"a","owner":"o","image_uuid":"{IMG}","vcpus":1,"ram_mib":64,"disk_gib":1}}"#)).unwrap();
        assert!(s.disk_bytes(2 << 30, &Limits::default()).is_err());
        assert_eq!(s.disk_bytes(1 << 30, &Limits::default()).unwrap(), 1 << 30);
        let s = Spec {
            disk_gib: None,
            ..s
        };
        assert_eq!(
            s.disk_bytes((1 << 30) + 1, &Limits::default()).unwrap(),
            2 << 30
        );
    }
}
