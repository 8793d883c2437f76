//! Checks on every name, identifier and size that comes from a caller, run before anything
//! touches the disk. Messages say which field was wrong and why.

use crate::error::{Error, Result};
use uuid::Uuid;

/// Longest alias, owner or image name.
pub const NAME_MAX: usize = 64;

/// Character set of aliases, owners and image names: ASCII letters, digits, `.`, `_`, `-`;
/// the first character a letter or digit. This keeps them safe as file names, ZFS dataset
/// name components, shell words and URL path segments.
pub const NAME_RULE: &str =
    "1-64 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit";

/// Parse a uuid in its canonical 36-character hyphenated form (any case); returns it lowercase.
pub fn uuid(field: &str, s: &str) -> Result<Uuid> {
    let bad = || {
        Error::invalid(format!(
            "{field} {s:?} is not a uuid (expected 8-4-4-4-12 hex digits)"
        ))
    };
    if s.len() != 36 {
        return Err(bad());
    }
    Uuid::try_parse(s).map_err(|_| bad())
}

/// Validate an alias, owner or image name against [`NAME_RULE`].
pub fn name(field: &str, s: &str) -> Result<()> {
    token(
        field,
        s,
        NAME_MAX,
        |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'),
        NAME_RULE,
    )
}

/// Image versions are a little wider than names: `+` is common in them (`12.1+20240101`).
pub fn version(s: &str) -> Result<()> {
    token(
        "version",
        s,
        32,
        |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'),
        "1-32 characters from A-Z a-z 0-9 . _ - +, starting with a letter or digit",
    )
}

/// Operating system family of an image (`linux`, `windows`, `bsd`, `other`, ...).
pub fn os(s: &str) -> Result<()> {
    token(
        "os",
        s,
        32,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'),
        "1-32 characters from a-z 0-9 _ -, starting with a letter or digit",
    )
}

fn token(
    field: &str,
    s: &str,
    max: usize,
    allowed: impl Fn(char) -> bool,
    rule: &str,
) -> Result<()> {
    let refuse = |why: String| {
        Err(Error::invalid(format!(
            "{field} {s:?} {why}; allowed: {rule}"
        )))
    };
    if s.is_empty() {
        return Err(Error::invalid(format!("{field} is empty; allowed: {rule}")));
    }
    if s.len() > max {
        return refuse(format!("is {} bytes long", s.len()));
    }
    if s.contains("..") {
        return refuse("contains \"..\"".into());
    }
    if let Some(c) = s.chars().find(|&c| !allowed(c)) {
        let shown = if c.is_control() || c == '\0' {
            format!("control character {:#04x}", c as u32)
        } else {
            format!("{c:?}")
        };
        return refuse(format!("contains {shown}"));
    }
    if !s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric()) {
        return refuse("does not start with a letter or digit".into());
    }
    Ok(())
}

/// A lowercase hex sha256 (64 characters). Uppercase is accepted and folded.
pub fn sha256_hex(s: &str) -> Result<String> {
    if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(Error::invalid(format!("sha256 {s:?} is not 64 hex digits")))
    }
}

/// Upper bounds on what one VM may ask for. Set per store through its URI
/// (`?max_vcpus=32&max_ram_mib=65536&max_disk_gib=2048&max_image_gib=512`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most virtual CPUs per VM.
    pub max_vcpus: u32,
    /// Least memory per VM, MiB.
    pub min_ram_mib: u64,
    /// Most memory per VM, MiB.
    pub max_ram_mib: u64,
    /// Largest VM disk, GiB.
    pub max_disk_gib: u64,
    /// Largest image (virtual size), GiB.
    pub max_image_gib: u64,
}

/// The largest size in GiB any limit may be raised to: 2^63 bytes, the most a file offset
/// (`off_t`) or a volume size can address, so no size computed from a limit can wrap.
pub const GIB_CEILING: u64 = (i64::MAX as u64) >> 30;

/// The most memory a limit may allow, in MiB (2^40 MiB = 1 EiB, beyond any host).
pub const RAM_MIB_CEILING: u64 = 1 << 40;

/// The most vCPUs a limit may allow (QEMU's x86 maximum is far lower; this only bounds the
/// arithmetic).
pub const VCPUS_CEILING: u64 = 4096;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_vcpus: 64,
            min_ram_mib: 32,
            max_ram_mib: 1 << 20,
            max_disk_gib: 16 << 10,
            max_image_gib: 16 << 10,
        }
    }
}

impl Limits {
    /// Apply one `key=value` store option; returns false when the key is not a limit.
    pub fn set(&mut self, key: &str, value: &str) -> Result<bool> {
        let n = |ceiling: u64| {
            let v = value
                .parse::<u64>()
                .ok()
                .filter(|&v| v > 0)
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "store option {key}={value:?} is not a positive integer"
                    ))
                })?;
            if v > ceiling {
                return Err(Error::invalid(format!(
                    "store option {key}={v} is above {ceiling}, the most this platform can address"
                )));
            }
            Ok(v)
        };
        match key {
            // The ceiling fits u32.
            "max_vcpus" => self.max_vcpus = n(VCPUS_CEILING)? as u32,
            "min_ram_mib" => self.min_ram_mib = n(RAM_MIB_CEILING)?,
            "max_ram_mib" => self.max_ram_mib = n(RAM_MIB_CEILING)?,
            "max_disk_gib" => self.max_disk_gib = n(GIB_CEILING)?,
            "max_image_gib" => self.max_image_gib = n(GIB_CEILING)?,
            _ => return Ok(false),
        }
        if self.min_ram_mib > self.max_ram_mib {
            return Err(Error::invalid(format!(
                "store options min_ram_mib={} and max_ram_mib={} leave no valid size",
                self.min_ram_mib, self.max_ram_mib
            )));
        }
        Ok(true)
    }

    /// Check a vCPU count.
    pub fn vcpus(&self, v: u64) -> Result<u32> {
        if v == 0 || v > u64::from(self.max_vcpus) {
            return Err(Error::invalid(format!(
                "vcpus {v} is out of range 1..={}",
                self.max_vcpus
            )));
        }
        Ok(v as u32)
    }

    /// Check a memory size.
    pub fn ram_mib(&self, v: u64) -> Result<u64> {
        if v < self.min_ram_mib || v > self.max_ram_mib {
            return Err(Error::invalid(format!(
                "ram_mib {v} is out of range {}..={}",
                self.min_ram_mib, self.max_ram_mib
            )));
        }
        Ok(v)
    }

    /// Check a disk size.
    pub fn disk_gib(&self, v: u64) -> Result<u64> {
        if v == 0 || v > self.max_disk_gib {
            return Err(Error::invalid(format!(
                "disk_gib {v} is out of range 1..={}",
                self.max_disk_gib
            )));
        }
        Ok(v)
    }

    /// Check an image's virtual size.
    pub fn image_bytes(&self, v: u64) -> Result<u64> {
        if v == 0 {
            return Err(Error::CorruptImage(
                "image has a virtual size of 0 bytes".into(),
            ));
        }
        // max_image_gib is at most GIB_CEILING, so this cannot wrap.
        if v.div_ceil(1 << 30) > self.max_image_gib {
            return Err(Error::invalid(format!(
                "image virtual size {v} bytes is above the store's maximum of {} GiB",
                self.max_image_gib
            )));
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(name("alias", "web-01.prod_a").is_ok());
        for bad in [
            "",
            "..",
            "a/b",
            "a@b",
            "a\0b",
            "a\nb",
            "-lead",
            ".hidden",
            "a..b",
            &"x".repeat(65),
            "é",
        ] {
            let e = name("alias", bad).unwrap_err();
            assert!(matches!(e, Error::InvalidArgument(_)), "{bad:?}");
        }
        assert!(name("alias", &"x".repeat(64)).is_ok());
        let msg = name("owner", "a@b").unwrap_err().to_string();
        assert!(msg.contains("owner") && msg.contains("'@'"), "{msg}");
    }

    #[test]
    fn uuids() {
        let u = uuid("uuid", "6F1C2B34-0d4e-4f8a-9b6c-1234567890ab").unwrap();
        assert_eq!(u.to_string(), "6f1c2b34-0d4e-4f8a-9b6c-1234567890ab");
        for bad in [
            "",
            "6f1c2b340d4e4f8a9b6c1234567890ab",
            "../../etc/passwd-0000-0000-0000-00000",
            "{6f1c2b34-0d4e-4f8a-9b6c-1234567890ab}",
        ] {
            assert!(uuid("uuid", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits() {
        let mut l = Limits::default();
        assert!(l.vcpus(0).is_err());
        assert!(l.vcpus(65).is_err());
        assert_eq!(l.vcpus(2).unwrap(), 2);
        assert!(l.set("max_disk_gib", "10").unwrap());
        assert!(l.disk_gib(11).is_err());
        assert!(l.disk_gib(0).is_err());
        assert!(l.set("max_disk_gib", "0").is_err());
        assert!(!l.set("colour", "blue").unwrap());
        assert!(l.set("max_disk_gib", "18446744073709551615").is_err());
        assert!(l.set("max_image_gib", &GIB_CEILING.to_string()).unwrap());
        assert!(l.image_bytes(16 << 20).is_ok());
        assert!(l.image_bytes(GIB_CEILING << 30).is_ok());
        assert!(l.image_bytes(u64::MAX).is_err());
        assert!(l.set("max_image_gib", "1").unwrap());
        assert!(l.image_bytes(1 << 30).is_ok());
        assert!(l.image_bytes((1 << 30) + 1).is_err());
    }
}
