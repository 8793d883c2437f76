//! Images (templates): their manifest, the request that imports one, and the import pipeline.

pub mod format;
pub mod import;
pub(crate) mod ops;
pub mod qcow2;

use crate::error::{Error, Result};
use crate::validate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// On-disk format of an image file or a VM disk, as QEMU's `format=` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    /// Plain bytes.
    Raw,
    /// QEMU copy-on-write, version 2 or 3.
    Qcow2,
}

impl DiskFormat {
    /// The name QEMU uses (`raw`, `qcow2`).
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
        }
    }
}

/// Free-form metadata of an image: caller-owned JSON values by key, stored as given.
pub type Tags = serde_json::Map<String, serde_json::Value>;

/// An image (template) in a store: what `Store::image` returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// Identity.
    pub uuid: Uuid,
    /// Name (see [`validate::NAME_RULE`]).
    pub name: String,
    /// Version string, e.g. `12.1+20240101`.
    pub version: String,
    /// Operating-system family: `linux`, `windows`, `other`, ...
    pub os: String,
    /// Format of the file that was imported.
    pub format: DiskFormat,
    /// Virtual size: what a VM sees as its disk size before growing.
    pub size_bytes: u64,
    /// sha256 of the imported file's bytes (what `sha256sum FILE` prints).
    pub sha256: String,
    /// When it was imported, RFC 3339 UTC.
    pub created_at: String,
    /// Caller metadata.
    pub tags: Tags,
    /// Format the store keeps the image in (a qcow2 is kept as such on `dir:` and expanded
    /// to raw on `btrfs:` and `zfs:`).
    pub disk_format: DiskFormat,
    /// Where the image's data lives: a file path, or `pool/dataset@snapshot`.
    pub disk: String,
}

/// What to import: every field is optional and checked by the store. Build it with struct
/// update syntax (`ImportRequest { name: Some("debian".into()), ..Default::default() }`) or
/// the builder methods.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ImportRequest {
    /// Identity to give the image; a new random uuid when `None`.
    pub uuid: Option<Uuid>,
    /// Name; derived from the file name when `None`.
    pub name: Option<String>,
    /// Version; `"1"` when `None`.
    pub version: Option<String>,
    /// Operating-system family; `"other"` when `None`.
    pub os: Option<String>,
    /// Expected sha256 (hex) of the file; the import fails if the data differs.
    pub sha256: Option<String>,
    /// Expected format; detected when `None`, verified when given.
    pub format: Option<DiskFormat>,
    /// Expected virtual size; a file of another size is refused as truncated or wrong.
    pub size_bytes: Option<u64>,
    /// Metadata stored with the image.
    pub tags: Tags,
}

impl ImportRequest {
    /// Set the name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// Set the version.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }
    /// Set the operating-system family.
    pub fn os(mut self, os: impl Into<String>) -> Self {
        self.os = Some(os.into());
        self
    }
    /// Set the uuid.
    pub fn uuid(mut self, uuid: Uuid) -> Self {
        self.uuid = Some(uuid);
        self
    }
    /// Set the expected sha256.
    pub fn sha256(mut self, hex: impl Into<String>) -> Self {
        self.sha256 = Some(hex.into());
        self
    }
    /// Add a tag.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }
}

/// Tags are stored with the manifest; keep them small enough for every back end.
pub const TAGS_MAX_BYTES: usize = 4096;

impl ImportRequest {
    /// Check every field; fill defaults (`name` from the file name, version "1", os "other").
    pub(crate) fn validated(&self, file_stem: &str) -> Result<ValidImport> {
        let uuid = self.uuid.unwrap_or_else(Uuid::new_v4);
        let name = match &self.name {
            Some(n) => n.clone(),
            None => default_name(file_stem),
        };
        validate::name("name", &name)?;
        let version = self.version.clone().unwrap_or_else(|| "1".into());
        validate::version(&version)?;
        let os = self.os.clone().unwrap_or_else(|| "other".into());
        validate::os(&os)?;
        let sha256 = self
            .sha256
            .as_deref()
            .map(validate::sha256_hex)
            .transpose()?;
        let tag_bytes = serde_json::to_vec(&self.tags)
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
            tags: self.tags.clone(),
        })
    }
}

/// A checked import request.
#[derive(Debug, Clone)]
pub(crate) struct ValidImport {
    pub uuid: Uuid,
    pub name: String,
    pub version: String,
    pub os: String,
    pub sha256: Option<String>,
    pub format: Option<DiskFormat>,
    pub size_bytes: Option<u64>,
    pub tags: Tags,
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
        let v = ImportRequest::default()
            .validated("debian-12 (genericcloud)")
            .unwrap();
        assert_eq!(v.name, "debian-12--genericcloud-");
        assert_eq!(v.version, "1");
        let e = ImportRequest::default()
            .name("a/b")
            .validated("f")
            .unwrap_err();
        assert_eq!(e.code(), crate::ResultCode::VMPOOL_RESULT_INVALID_ARGUMENT);
        let e = ImportRequest::default()
            .sha256("abc")
            .validated("f")
            .unwrap_err();
        assert!(e.to_string().contains("sha256"));
    }
}
