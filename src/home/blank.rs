//! The store's blank image: what every home volume is a clone of.
//!
//! It holds no file system: the library runs no `mkfs` (the only processes it starts are
//! QEMU and its supervisor), so the guest formats a home on its first attach (ext4, label
//! `vmpool-home`) and copies the desktop user's skeleton into it. Cloning a blank image
//! rather than creating an empty volume keeps one code path per driver for every disk the
//! store makes, and lets a driver's clone method (zvol clone, snapshot, reflink, overlay)
//! make homes in constant time like VM disks.

use crate::error::{Error, Result};
use crate::fsutil;
use crate::image::{Image, ImportRequest};
use crate::store::Store;
use std::io::Write;
use uuid::Uuid;

/// Every store's blank image has this uuid, so concurrent first attaches make one image.
pub const BLANK_UUID: Uuid = Uuid::from_u128(0x766d_706f_6f6c_4000_8000_0000_686f_6d65);
/// Its name in image lists.
pub const BLANK_NAME: &str = "vmpool-home-blank";
/// Its size: the smallest any driver clones (homes are grown from it).
const BLANK_BYTES: u64 = 1 << 20;
/// sha256 of 1 MiB of zeros.
const BLANK_SHA256: &str = "30e14955ebf1352266dc2ff8067e68104607e750abb9d3b36582b8af909fcb58";
/// Tag marking it, so lists and the portal can leave it out.
pub const ROLE_TAG: &str = "vmpool.role";

impl Store {
    /// The blank image, imported on first use.
    pub(crate) fn blank_image(&self) -> Result<Image> {
        for _ in 0..200 {
            if let Some(r) = self.catalog.image(&BLANK_UUID)? {
                return Ok(Image::from(&r));
            }
            match self.import_blank() {
                Ok(i) => return Ok(i),
                // Another process imports it right now: wait for its manifest.
                Err(Error::AlreadyExists(_)) => {
                    std::thread::sleep(std::time::Duration::from_millis(50))
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::Busy(
            "another process has been importing the blank home image for 10 s".into(),
        ))
    }

    /// The blank image, which must be what `import_blank` makes: an image imported under its
    /// uuid by anyone else (whose data would be in every new home) is refused.
    pub(crate) fn blank_image_checked(&self) -> Result<Image> {
        let i = self
            .catalog
            .image(&BLANK_UUID)?
            .map(|r| Image::from(&r))
            .ok_or_else(|| Error::not_found("image", BLANK_UUID.to_string()))?;
        let ours = i.tags.get(ROLE_TAG).and_then(|v| v.as_str()) == Some("home")
            && i.size_bytes == BLANK_BYTES
            && i.format == crate::image::DiskFormat::Raw
            && i.sha256 == BLANK_SHA256;
        if !ours {
            return Err(Error::InvalidState(format!(
                "image {BLANK_UUID} is not vmpool's blank home image (1 MiB of zeros); delete it to let homes be made"
            )));
        }
        Ok(i)
    }

    fn import_blank(&self) -> Result<Image> {
        // A file of zeros in the catalog directory (root's, like everything the import
        // reads); a crash leaves a temp file that recovery removes.
        let dir = self.catalog_dir();
        let path = dir.join(format!(
            "{}{}-home-blank.raw",
            fsutil::TMP_PREFIX,
            fsutil::token()
        ));
        let made = (|| -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)?;
            f.write_all(&vec![0u8; BLANK_BYTES as usize])?;
            f.sync_all()
        })();
        let out = made
            .map_err(|e| Error::Io {
                context: format!("writing {}", path.display()),
                source: e,
            })
            .and_then(|()| {
                let mut req = ImportRequest::default()
                    .uuid(BLANK_UUID)
                    .name(BLANK_NAME)
                    .version("1")
                    .os("other");
                req.tags
                    .insert(ROLE_TAG.into(), serde_json::Value::String("home".into()));
                self.import_image(&path, &req, None)
            });
        let _ = std::fs::remove_file(&path);
        out
    }
}
