//! Home volumes as JSON (`vmpool_home_*`).

use crate::error::Result;
use crate::home::Home;
use crate::image::DiskFormat;
use serde::Serialize;

/// A home volume as JSON (`vmpool_home_get`, `vmpool_home_create`, list elements).
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct HomeOut<'a> {
    owner: &'a str,
    uuid: &'a uuid::Uuid,
    size_bytes: u64,
    disk_format: DiskFormat,
    disk: &'a str,
    clone_method: &'a str,
    created_at: &'a str,
    attached_to: Option<&'a uuid::Uuid>,
}

impl<'a> From<&'a Home> for HomeOut<'a> {
    fn from(h: &'a Home) -> Self {
        HomeOut {
            owner: &h.owner,
            uuid: &h.uuid,
            size_bytes: h.size_bytes,
            disk_format: h.disk_format,
            disk: &h.disk_path,
            clone_method: &h.clone_method,
            created_at: &h.created_at,
            attached_to: h.attached_to.as_ref(),
        }
    }
}

/// A list of home volumes as JSON.
pub fn homes(list: &[Home]) -> Result<String> {
    super::to_string(&list.iter().map(HomeOut::from).collect::<Vec<_>>())
}
