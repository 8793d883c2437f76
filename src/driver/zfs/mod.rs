//! `zfs:pool/dataset` - images are zvols with a `@final` snapshot, VM disks are zvol clones.
//! Placeholder until the libzfs driver lands.

mod device;

pub use device::{resolve_device, zvol_device, zvol_path};

use crate::error::{Error, Result};
use std::path::PathBuf;

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub thick: bool,
    pub catalog: Option<PathBuf>,
}

impl Options {
    pub fn parse(opts: &[(&str, &str)]) -> Result<Self> {
        let mut o = Options::default();
        for (k, v) in opts {
            match *k {
                "thick" => o.thick = matches!(*v, "1" | "true" | "yes" | "on"),
                "catalog" => o.catalog = Some(PathBuf::from(v)),
                _ => return Err(Error::invalid(format!("store option {k:?} is not known for zfs: stores"))),
            }
        }
        Ok(o)
    }
}

#[derive(Debug)]
pub struct ZfsDriver;

impl ZfsDriver {
    pub fn open(_ds: &str, _o: Options) -> Result<Box<dyn super::StorageDriver>> {
        Err(Error::Unsupported("vmpool was built without ZFS support".into()))
    }
}
