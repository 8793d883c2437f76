//! btrfs ioctl declarations from `linux/btrfs.h`: argument structs and request numbers,
//! nothing else. Sizes are checked at compile time below.

#![allow(missing_docs)] // Mirrors of C declarations; the C headers named above document them.
#![allow(non_camel_case_types)]

pub const BTRFS_IOCTL_MAGIC: u8 = 0x94;
pub const BTRFS_PATH_NAME_MAX: usize = 4087;
pub const BTRFS_SUBVOL_NAME_MAX: usize = 4039;
pub const BTRFS_SUBVOL_RDONLY: u64 = 1 << 1;
/// statfs f_type of btrfs.
pub const BTRFS_SUPER_MAGIC: i64 = 0x9123_683E;

#[repr(C)]
pub struct btrfs_ioctl_vol_args {
    pub fd: i64,
    pub name: [u8; BTRFS_PATH_NAME_MAX + 1],
}

#[repr(C)]
pub struct btrfs_ioctl_vol_args_v2 {
    pub fd: i64,
    pub transid: u64,
    pub flags: u64,
    pub unused: [u64; 4],
    pub name: [u8; BTRFS_SUBVOL_NAME_MAX + 1],
}

const _: () = assert!(std::mem::size_of::<btrfs_ioctl_vol_args>() == 4096);
const _: () = assert!(std::mem::size_of::<btrfs_ioctl_vol_args_v2>() == 4096);

nix::ioctl_write_ptr!(
    btrfs_ioc_subvol_create,
    BTRFS_IOCTL_MAGIC,
    14,
    btrfs_ioctl_vol_args
);
nix::ioctl_write_ptr!(
    btrfs_ioc_snap_destroy,
    BTRFS_IOCTL_MAGIC,
    15,
    btrfs_ioctl_vol_args
);
nix::ioctl_write_ptr!(
    btrfs_ioc_snap_create_v2,
    BTRFS_IOCTL_MAGIC,
    23,
    btrfs_ioctl_vol_args_v2
);
nix::ioctl_read!(btrfs_ioc_subvol_getflags, BTRFS_IOCTL_MAGIC, 25, u64);
nix::ioctl_write_ptr!(btrfs_ioc_subvol_setflags, BTRFS_IOCTL_MAGIC, 26, u64);

/// `struct btrfs_ioctl_timespec` (a u64 and a u32, padded to 16 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct btrfs_ioctl_timespec {
    pub sec: u64,
    pub nsec: u32,
}

pub const BTRFS_UUID_SIZE: usize = 16;
pub const BTRFS_VOL_NAME_MAX: usize = 255;

/// `struct btrfs_ioctl_get_subvol_info_args` (Linux 4.18+; works unprivileged).
#[repr(C)]
pub struct btrfs_ioctl_get_subvol_info_args {
    pub treeid: u64,
    pub name: [u8; BTRFS_VOL_NAME_MAX + 1],
    pub parent_id: u64,
    pub dirid: u64,
    pub generation: u64,
    pub flags: u64,
    pub uuid: [u8; BTRFS_UUID_SIZE],
    /// The subvolume this one is a snapshot of; all zero for a plain subvolume.
    pub parent_uuid: [u8; BTRFS_UUID_SIZE],
    pub received_uuid: [u8; BTRFS_UUID_SIZE],
    pub ctransid: u64,
    pub otransid: u64,
    pub stransid: u64,
    pub rtransid: u64,
    pub ctime: btrfs_ioctl_timespec,
    pub otime: btrfs_ioctl_timespec,
    pub stime: btrfs_ioctl_timespec,
    pub rtime: btrfs_ioctl_timespec,
    pub reserved: [u64; 8],
}

const _: () = assert!(std::mem::size_of::<btrfs_ioctl_timespec>() == 16);
const _: () = assert!(std::mem::size_of::<btrfs_ioctl_get_subvol_info_args>() == 504);

nix::ioctl_read!(
    btrfs_ioc_get_subvol_info,
    BTRFS_IOCTL_MAGIC,
    60,
    btrfs_ioctl_get_subvol_info_args
);
