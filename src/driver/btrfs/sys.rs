//! btrfs ioctl declarations from `linux/btrfs.h`: argument structs and request numbers,
//! nothing else. Sizes are checked at compile time below.

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
