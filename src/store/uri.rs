//! Store URIs: `dir:/path`, `btrfs:/mountpoint/path`, `zfs:pool/dataset`, each optionally
//! followed by `?key=value&key=value` options.

use crate::error::{Error, Result};
use std::path::{Component, Path, PathBuf};

/// Longest URI accepted.
pub const URI_MAX: usize = 4096;

/// Longest dataset name we accept for a store: ZFS allows 255, and we append up to
/// `/images/<uuid>-partial@final` (52 bytes) below it.
pub const DATASET_MAX: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Dir(PathBuf),
    Btrfs(PathBuf),
    Zfs(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    pub location: Location,
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

pub fn parse(s: &str) -> Result<Uri> {
    if s.len() > URI_MAX {
        return Err(Error::StringTooLong {
            what: "store URI",
            max: URI_MAX,
        });
    }
    let (scheme, rest) = s.split_once(':').ok_or_else(|| {
        Error::invalid(format!(
            "store URI {s:?} has no scheme (expected dir:, btrfs: or zfs:)"
        ))
    })?;
    let (target, query) = match rest.split_once('?') {
        Some((t, q)) => (t, Some(q)),
        None => (rest, None),
    };
    let location = match scheme {
        "dir" => Location::Dir(abs_path(scheme, target)?),
        "btrfs" => Location::Btrfs(abs_path(scheme, target)?),
        "zfs" => {
            dataset_name(target)?;
            Location::Zfs(target.to_owned())
        }
        _ => {
            return Err(Error::invalid(format!(
                "store URI scheme {scheme:?} is not one of dir, btrfs, zfs"
            )))
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
    Ok(Uri { location, options })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        let u = parse("dir:/var/lib/vmpool?clone=qcow2&max_vcpus=8").unwrap();
        assert_eq!(u.location, Location::Dir("/var/lib/vmpool".into()));
        assert_eq!(
            u.options,
            vec![
                ("clone".into(), "qcow2".into()),
                ("max_vcpus".into(), "8".into())
            ]
        );
        assert_eq!(
            parse("zfs:tank/vmpool").unwrap().location,
            Location::Zfs("tank/vmpool".into())
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
