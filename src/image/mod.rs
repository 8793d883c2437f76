//! Images (templates): their manifest, the request that imports one, and the import pipeline.

pub mod format;
pub mod import;
pub mod qcow2;

use crate::error::{Error, Result};
use crate::validate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// On-disk format of an image file or a VM disk, as QEMU's `format=` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    Raw,
    Qcow2,
}

impl DiskFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
        }
    }
}

/// What the store knows about an image. This is the JSON returned by `vmpool_image_get`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub uuid: Uuid,
    pub name: String,
    pub version: String,
    pub os: String,
    /// Format of the file that was imported.
    pub format: DiskFormat,
    /// Virtual size: what a VM sees as its disk size before growing.
    pub size_bytes: u64,
    /// sha256 of the imported file's bytes (what `sha256sum FILE` prints).
    pub sha256: String,
    pub created_at: String,
    #[serde(default)]
    pub tags: serde_json::Map<String, serde_json::Value>,
    /// Format the store keeps the image in (a qcow2 is kept as such on `dir:` and expanded
    /// to raw on `btrfs:` and `zfs:`).
    pub disk_format: DiskFormat,
    /// Where the image's data lives: a file path, or `pool/dataset@snapshot`.
    pub disk: String,
}

/// Caller-supplied part of a manifest (`manifest_json` of `vmpool_image_import`). Every field
/// is optional; unknown keys are refused.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    pub uuid: Option<String>,
    pub name: Option<String>,
    pub version: Option<String>,
    pub os: Option<String>,
    pub sha256: Option<String>,
    pub format: Option<DiskFormat>,
    /// Expected virtual size; a file of another size is refused as truncated or wrong.
    pub size_bytes: Option<u64>,
    pub tags: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Tags are stored with the manifest; keep them small enough for every back end.
pub const TAGS_MAX_BYTES: usize = 4096;

impl ImportRequest {
    pub fn from_json(json: Option<&str>) -> Result<Self> {
        match json.map(str::trim) {
            None | Some("") => Ok(Self::default()),
            Some(j) => serde_json::from_str(j)
                .map_err(|e| Error::InvalidJson(format!("image manifest: {e}"))),
        }
    }

    /// Check every field; fill defaults (`name` from the file name, version "1", os "other").
    pub fn validated(self, file_stem: &str) -> Result<ValidImport> {
        let uuid = match &self.uuid {
            Some(u) => validate::uuid("uuid", u)?,
            None => Uuid::new_v4(),
        };
        let name = match self.name {
            Some(n) => n,
            None => default_name(file_stem),
        };
        validate::name("name", &name)?;
        let version = self.version.unwrap_or_else(|| "1".into());
        validate::version(&version)?;
        let os = self.os.unwrap_or_else(|| "other".into());
        validate::os(&os)?;
        let sha256 = self
            .sha256
            .as_deref()
            .map(validate::sha256_hex)
            .transpose()?;
        let tags = self.tags.unwrap_or_default();
        let tag_bytes = serde_json::to_vec(&tags)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if tag_bytes > TAGS_MAX_BYTES {
            return Err(Error::invalid(format!(
                "tags take {tag_bytes} bytes as JSON; at most {TAGS_MAX_BYTES} are allowed"
            )));
        }
        if self.size_bytes == Some(0) {
            return Err(Error::invalid("size_bytes 0: an image cannot be empty"));
        }
        Ok(ValidImport {
            uuid,
            name,
            version,
            os,
            sha256,
            format: self.format,
            size_bytes: self.size_bytes,
            tags,
        })
    }
}

/// A checked import request.
#[derive(Debug, Clone)]
pub struct ValidImport {
    pub uuid: Uuid,
    pub name: String,
    pub version: String,
    pub os: String,
    pub sha256: Option<String>,
    pub format: Option<DiskFormat>,
    pub size_bytes: Option<u64>,
    pub tags: serde_json::Map<String, serde_json::Value>,
}

/// A name derived from a file name: disallowed characters become `-`, capped at 64.
fn default_name(stem: &str) -> String {
    let mut s: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    while s.contains("..") {
        s = s.replace("..", ".");
    }
    let s = s.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
    let s: String = s.chars().take(validate::NAME_MAX).collect();
    if s.is_empty() {
        "image".into()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_refusals() {
        let v = ImportRequest::from_json(None)
            .unwrap()
            .validated("debian-12 (genericcloud)")
            .unwrap();
        assert_eq!(v.name, "debian-12--genericcloud-");
        assert_eq!(v.version, "1");
        let e = ImportRequest::from_json(Some(r#"{"name":"x","colour":"red"}"#)).unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
        let e = ImportRequest::from_json(Some(r#"{"name":"a/b"}"#))
            .unwrap()
            .validated("f")
            .unwrap_err();
        assert_eq!(e.code(), crate::ResultCode::VMPOOL_RESULT_INVALID_ARGUMENT);
        let e = ImportRequest::from_json(Some(r#"{"sha256":"abc"}"#))
            .unwrap()
            .validated("f")
            .unwrap_err();
        assert!(e.to_string().contains("sha256"));
        assert!(ImportRequest::from_json(Some("{")).is_err());
    }
}
