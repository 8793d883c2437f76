//! Raw declarations of the libzfs, libzfs_core and libnvpair functions vmpool calls, and
//! nothing else ("libzfs-sys style"). Only functions whose signatures are the same on illumos
//! and OpenZFS 2.1-2.3 are declared; C enums are passed as `int` (their ABI on every platform
//! we build for) and property numbers are never hard-coded: `zfs_name_to_prop` looks them up.
//!
//! Written by hand and checked against the installed headers by `tests/it/zfs_sys_abi.rs`, which
//! turns every declaration below into a C function-pointer assignment and compiles it with
//! `-Werror` against `<libzfs.h>` and `<libzfs_core.h>`. Keep one declaration per item in the
//! form that test parses: `pub fn name(arg: Type, ...) -> Ret;`.

#![allow(missing_docs)] // Mirrors of C declarations; the C headers named above document them.
#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_int, c_uint, c_void};

#[repr(C)]
pub struct libzfs_handle_t {
    _opaque: [u8; 0],
}
#[repr(C)]
pub struct zfs_handle_t {
    _opaque: [u8; 0],
}
#[repr(C)]
pub struct nvlist_t {
    _opaque: [u8; 0],
}
#[repr(C)]
pub struct nvpair_t {
    _opaque: [u8; 0],
}
/// `zfs_iter_f`: called with each dataset found (which the callee must close) and the
/// caller's data; non-zero stops the iteration.
#[repr(transparent)]
pub struct zfs_iter_f(pub unsafe extern "C" fn(*mut zfs_handle_t, *mut c_void) -> c_int);

pub type boolean_t = c_int;
pub type zfs_type_t = c_int;
pub type zfs_prop_t = c_int;
pub type zprop_source_t = c_int;
/// `enum lzc_dataset_type` (the `enum_` prefix stands for the C tag).
pub type enum_lzc_dataset_type = c_int;
pub type uint_t = c_uint;

pub const B_FALSE: boolean_t = 0;
pub const B_TRUE: boolean_t = 1;
pub const ZFS_TYPE_FILESYSTEM: zfs_type_t = 1 << 0;
pub const ZFS_TYPE_SNAPSHOT: zfs_type_t = 1 << 1;
pub const ZFS_TYPE_VOLUME: zfs_type_t = 1 << 2;
pub const NV_UNIQUE_NAME: uint_t = 0x1;
/// `ZPROP_INVAL`: what `zfs_name_to_prop` returns for an unknown (or user) property.
pub const ZPROP_INVAL: zfs_prop_t = -1;
pub const ZFS_MAXPROPLEN: usize = 4096;

extern "C" {
    // libzfs
    pub fn libzfs_init() -> *mut libzfs_handle_t;
    pub fn libzfs_fini(hdl: *mut libzfs_handle_t);
    pub fn libzfs_errno(hdl: *mut libzfs_handle_t) -> c_int;
    pub fn libzfs_error_description(hdl: *mut libzfs_handle_t) -> *const c_char;
    pub fn zfs_open(
        hdl: *mut libzfs_handle_t,
        name: *const c_char,
        types: c_int,
    ) -> *mut zfs_handle_t;
    pub fn zfs_close(zhp: *mut zfs_handle_t);
    pub fn zfs_get_type(zhp: *const zfs_handle_t) -> zfs_type_t;
    pub fn zfs_get_name(zhp: *const zfs_handle_t) -> *const c_char;
    pub fn zfs_iter_filesystems(
        zhp: *mut zfs_handle_t,
        func: zfs_iter_f,
        data: *mut c_void,
    ) -> c_int;
    pub fn zfs_create(
        hdl: *mut libzfs_handle_t,
        name: *const c_char,
        kind: zfs_type_t,
        props: *mut nvlist_t,
    ) -> c_int;
    pub fn zfs_destroy(zhp: *mut zfs_handle_t, defer: boolean_t) -> c_int;
    pub fn zfs_prop_set_list(zhp: *mut zfs_handle_t, props: *mut nvlist_t) -> c_int;
    pub fn zfs_prop_get(
        zhp: *mut zfs_handle_t,
        prop: zfs_prop_t,
        buf: *mut c_char,
        len: usize,
        src: *mut zprop_source_t,
        statbuf: *mut c_char,
        statlen: usize,
        literal: boolean_t,
    ) -> c_int;
    pub fn zfs_prop_get_numeric(
        zhp: *mut zfs_handle_t,
        prop: zfs_prop_t,
        value: *mut u64,
        src: *mut zprop_source_t,
        statbuf: *mut c_char,
        statlen: usize,
    ) -> c_int;
    pub fn zfs_get_user_props(zhp: *mut zfs_handle_t) -> *mut nvlist_t;
    pub fn zfs_is_mounted(zhp: *mut zfs_handle_t, where_: *mut *mut c_char) -> boolean_t;
    pub fn zfs_mount(zhp: *mut zfs_handle_t, options: *const c_char, flags: c_int) -> c_int;
    pub fn zfs_name_to_prop(name: *const c_char) -> zfs_prop_t;
}

extern "C" {
    // libzfs_core: thin ioctl wrappers that return an errno, safe to call from any thread.
    pub fn libzfs_core_init() -> c_int;
    pub fn lzc_create(
        name: *const c_char,
        kind: enum_lzc_dataset_type,
        props: *mut nvlist_t,
        wkeydata: *mut u8,
        wkeylen: uint_t,
    ) -> c_int;
    pub fn lzc_clone(name: *const c_char, origin: *const c_char, props: *mut nvlist_t) -> c_int;
    pub fn lzc_snapshot(
        snaps: *mut nvlist_t,
        props: *mut nvlist_t,
        errlist: *mut *mut nvlist_t,
    ) -> c_int;
    pub fn lzc_destroy_snaps(
        snaps: *mut nvlist_t,
        defer: boolean_t,
        errlist: *mut *mut nvlist_t,
    ) -> c_int;
    pub fn lzc_rename(source: *const c_char, target: *const c_char) -> c_int;
    pub fn lzc_destroy(name: *const c_char) -> c_int;
    pub fn lzc_exists(name: *const c_char) -> boolean_t;
}

extern "C" {
    // libnvpair
    pub fn nvlist_alloc(nvl: *mut *mut nvlist_t, flag: uint_t, kmflag: c_int) -> c_int;
    pub fn nvlist_free(nvl: *mut nvlist_t);
    pub fn nvlist_add_boolean(nvl: *mut nvlist_t, name: *const c_char) -> c_int;
    pub fn nvlist_add_string(nvl: *mut nvlist_t, name: *const c_char, val: *const c_char) -> c_int;
    pub fn nvlist_add_uint64(nvl: *mut nvlist_t, name: *const c_char, val: u64) -> c_int;
    pub fn nvlist_lookup_nvlist(
        nvl: *mut nvlist_t,
        name: *const c_char,
        val: *mut *mut nvlist_t,
    ) -> c_int;
    // Without `const` as in OpenZFS 2.1 and illumos; 2.2 added const to the pointee types,
    // which changes nothing in the ABI.
    pub fn nvlist_next_nvpair(nvl: *mut nvlist_t, nvp: *mut nvpair_t) -> *mut nvpair_t;
    pub fn nvpair_name(nvp: *mut nvpair_t) -> *mut c_char;
    pub fn nvpair_value_int32(nvp: *mut nvpair_t, val: *mut i32) -> c_int;
}

/// `ZFS_ERR_WRONG_PARENT` (`zfs_errno_t`, OpenZFS): the parent of a new dataset is not a
/// filesystem. illumos has no such code; it reports EINVAL there.
pub const ZFS_ERR_WRONG_PARENT: c_int = 1033;

pub const LZC_DATSET_TYPE_ZVOL: enum_lzc_dataset_type = 3;
