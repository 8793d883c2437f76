//! Recognising an image file: raw or qcow2, its virtual size, and formats we refuse by name.

use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::image::{qcow2, DiskFormat};
use std::fs::File;
use std::os::unix::fs::FileExt;

/// What an image file is.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    /// Detected format.
    pub format: DiskFormat,
    /// Bytes the guest sees.
    pub virtual_size: u64,
    /// Bytes of the file itself.
    pub file_size: u64,
}

/// Magic numbers of formats people try to import, so the error says what they have.
const FOREIGN: &[(&[u8], u64, &str)] = &[
    (b"KDMV", 0, "VMDK"),
    (b"# Disk DescriptorFile", 0, "VMDK descriptor"),
    (b"<<< Oracle VM VirtualBox Disk Image >>>", 0, "VDI"),
    (b"vhdxfile", 0, "VHDX"),
    (b"conectix", 0, "VHD"),
    (b"QEVM", 0, "QED"),
];

/// Recognise `f` (refusing foreign formats by name) and check it against the format the
/// caller declared, if any.
pub fn probe(f: &File, declared: Option<DiskFormat>) -> Result<Probe> {
    let file_size = fsutil::byte_size(f)?;
    let mut head = [0u8; 64];
    let n = f
        .read_at(&mut head, 0)
        .ctx(|| "reading image header".into())?;
    let head = &head[..n];
    let detected = if head.starts_with(&qcow2::MAGIC) {
        DiskFormat::Qcow2
    } else {
        if let Some((_, _, name)) = FOREIGN
            .iter()
            .find(|(m, off, _)| head.get(*off as usize..).is_some_and(|h| h.starts_with(m)))
        {
            return Err(Error::UnsupportedFormat(format!(
                "this is a {name} image; vmpool imports raw and qcow2 (convert with qemu-img convert -O qcow2)"
            )));
        }
        DiskFormat::Raw
    };
    if let Some(d) = declared {
        if d != detected {
            return Err(Error::invalid(format!(
                "manifest says format {} but the file is {}",
                d.as_str(),
                detected.as_str()
            )));
        }
    }
    let virtual_size = match detected {
        DiskFormat::Raw => file_size,
        DiskFormat::Qcow2 => qcow2::Image::open(f)?.header.size,
    };
    Ok(Probe {
        format: detected,
        virtual_size,
        file_size,
    })
}
