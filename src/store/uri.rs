//! Store URIs: `<scheme>:<target>[?key=value&...]`, where the scheme names a driver of the
//! registry (`dir:/path`, `btrfs:/mountpoint/path`, `zfs:pool/dataset`) and the target is a
//! path or a dataset name, as that driver says.

use crate::driver::registry::{self, DriverInfo, Target, TargetKind};
use crate::error::{Error, Result};
use std::path::{Component, Path, PathBuf};

/// Longest URI accepted.
pub const URI_MAX: usize = 4096;

/// Longest dataset name we accept for a store: ZFS allows 255, and we append up to
/// `/images/<uuid>-partial@final` (52 bytes) below it.
pub const DATASET_MAX: usize = 200;

/// A parsed store URI.
#[derive(Debug, Clone)]
pub struct Uri {
    /// The driver the scheme names.
    pub driver: &'static DriverInfo,
    /// What it names.
    pub target: Target,
    /// `key=value` options, in order.
    pub options: Vec<(String, String)>,
}

/// The store used when none is named: `$VMPOOL_STORE`, else `dir:$VMPOOL_HOME`, else
/// `dir:/var/lib/vmpool`.
pub fn default_uri() -> String {
    if let Some(s) = std::env::var("VMPOOL_STORE").ok().filter(|s| !s.is_empty()) {
        return s;
    }
    let home = std::env::var("VMPOOL_HOME")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "/var/lib/vmpool".into());
    format!("dir:{home}")
}

fn abs_path(scheme: &str, s: &str) -> Result<PathBuf> {
    let p = Path::new(s);
    if !p.is_absolute() {
        return Err(Error::invalid(format!(
            "{scheme}: store path {s:?} is not absolute"
        )));
    }
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(Error::invalid(format!(
            "{scheme}: store path {s:?} contains \"..\""
        )));
    }
    if s.chars().any(|c| c.is_control()) {
        return Err(Error::invalid(format!(
            "{scheme}: store path {s:?} contains a control character"
        )));
    }
    Ok(p.components().collect())
}

/// Validate a dataset name the way ZFS does, a little stricter: components of
/// `A-Z a-z 0-9 _ - . :`, no empty component, no `@` or `#`.
pub fn dataset_name(s: &str) -> Result<()> {
    if s.is_empty() || s.len() > DATASET_MAX {
        return Err(Error::invalid(format!(
            "zfs: dataset name {s:?} must be 1-{DATASET_MAX} characters"
        )));
    }
    for comp in s.split('/') {
        let ok = !comp.is_empty()
            && comp != "."
            && comp != ".."
            && comp
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
        if !ok {
            return Err(Error::invalid(format!(
                "zfs: dataset name {s:?} has a bad component {comp:?} (allowed: A-Z a-z 0-9 _ - . :)"
            )));
        }
    }
    if !s
        .split('/')
        .next()
        .unwrap_or("")
        .starts_with(|c: char| c.is_ascii_alphabetic())
    {
        return Err(Error::invalid(format!(
            "zfs: pool name in {s:?} must start with a letter"
        )));
    }
    Ok(())
}

/// Parse and check a store URI (the driver's own options are checked when it opens).
pub fn parse(s: &str) -> Result<Uri> {
    if s.len() > URI_MAX {
        return Err(Error::StringTooLong {
            what: "store URI",
            max: URI_MAX,
        });
    }
    let (scheme, rest) = s.split_once(':').ok_or_else(|| {
        Error::invalid(format!(
            "store URI {s:?} has no scheme (expected one of {})",
            registry::schemes()
        ))
    })?;
    let (target, query) = match rest.split_once('?') {
        Some((t, q)) => (t, Some(q)),
        None => (rest, None),
    };
    let driver = registry::find(scheme).ok_or_else(|| {
        Error::invalid(format!(
            "store URI scheme {scheme:?} is not one of {}",
            registry::schemes()
        ))
    })?;
    let target = match driver.target {
        TargetKind::Path => Target::Path(abs_path(scheme, target)?),
        TargetKind::Dataset => {
            dataset_name(target)?;
            Target::Dataset(target.to_owned())
        }
    };
    let mut options = Vec::new();
    for pair in query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| Error::invalid(format!("store option {pair:?} is not key=value")))?;
        options.push((k.to_owned(), v.to_owned()));
    }
    Ok(Uri {
        driver,
        target,
        options,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        let u = parse("dir:/var/lib/vmpool?clone=qcow2&max_vcpus=8").unwrap();
        assert_eq!(u.driver.scheme, "dir");
        assert_eq!(u.target, Target::Path("/var/lib/vmpool".into()));
        assert_eq!(
            u.options,
            vec![
                ("clone".into(), "qcow2".into()),
                ("max_vcpus".into(), "8".into())
            ]
        );
        assert_eq!(
            parse("zfs:tank/vmpool").unwrap().target,
            Target::Dataset("tank/vmpool".into())
        );
        for bad in [
            "",
            "/var/lib",
            "nfs:/x",
            "dir:relative",
            "dir:/a/../b",
            "zfs:tank/a@b",
            "zfs:tank//a",
            "zfs:",
            "dir:/x?novalue",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
