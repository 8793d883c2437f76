//! Raw declarations of the libzonecfg functions, `sys/zone.h` types and libc zone calls the
//! illumos zone layer uses, and nothing else. Written by hand from the headers below (own
//! declarations, not generated); the safe layer is `super` (`illumos/mod.rs`).
//!
//! Checked against (public sources as stored by the code index used here; the index files
//! commits of the illumos-joyent fork under `illumos/illumos-gate` too, so "gate" below means
//! files whose content is the illumos-gate lineage, without Joyent's additions):
//! - illumos-gate `usr/src/head/libzonecfg.h` @ d2a70789f056fc6c9ce3ab047b52126d80b0e3da
//!   (with `zone_secflagstab`; Oracle 2010 header), and the older @ 0094b373ead542a3 for
//!   history.
//! - illumos-gate `usr/src/uts/common/sys/zone.h` @ 622f35bcc70e09ea6c910109c872f384f62d3357.
//! - illumos-gate `usr/src/lib/libzonecfg/common/libzonecfg.c` @
//!   bd93c05dbd9b8f1e8d2edf48c777bc881f927608 (what each call does with its arguments,
//!   ownership of rctl value lists, `zonecfg_call_zoneadmd`).
//! - illumos-gate `usr/src/lib/libzonecfg/common/mapfile-vers` @
//!   622f35bcc70e09ea6c910109c872f384f62d3357: every libzonecfg symbol used here is in
//!   `SYMBOL_VERSION SUNWprivate_1.1`, i.e. private to the OS and free to change.
//! - illumos-gate `usr/src/head/zone.h` @ 1b92b00d1b0d613ba3715f5c8189d8625b0c5351
//!   (`getzoneidbyname`, `zone_getattr`, `zone_get_id`).
//! - illumos-joyent (SmartOS) `usr/src/head/libzonecfg.h`: mgerdts/illumos-joyent @
//!   3a4e935d873d28bdc0ab494dcfe1c5df8aa3d55b (2019) and arekinath/illumos-joyent @
//!   3970be0dfa00a091dccea5a470fdb8888268598c (2015).
//! - illumos-joyent `usr/src/uts/common/sys/zone.h`: zssfred/illumos-joyent @
//!   07d005c4e65ae2df0e8f5d391511677eda79b9e3 and smokris/illumos-joyent @
//!   08a0f5ea09ca188edbadd95cfdfddc2160992ba4 (same `zone_cmd_arg_t`).
//! - illumos-joyent `usr/src/lib/libzonecfg/common/libzonecfg.c`: zssfred/illumos-joyent @
//!   6f1192a42360794261fce4f2961f149905d467be.
//!
//! Where SmartOS differs from illumos-gate, for what is declared here:
//! - `zone_cmd_arg_t` (zoneadmd's door argument) has `int status; uint32_t debug;` where gate
//!   has `uint32_t _pad;`, and a trailing `int pad;`: 1304 bytes against gate's 1296, with
//!   `locale` at offset 20 against 16. Both are declared; the caller picks by platform.
//!   zoneadmd checks the argument's size, so the wrong one is refused, not misread (that
//!   check is described by SmartOS's header comment; its code was not read here).
//! - `struct zone_devtab` has a trailing `struct zone_res_attrtab *zone_dev_attrp` (device
//!   properties) in SmartOS: 1032 bytes against 1024. [`zone_devtab`] is SmartOS's layout with
//!   the pointer NULL, which both libraries accept for `zonecfg_add_dev`: gate reads only
//!   `zone_dev_match`, SmartOS walks the (empty) property list. Never pass it to a function
//!   that fills it in (`zonecfg_lookup_dev`, `zonecfg_getdevent`): SmartOS would allocate a
//!   list this layer does not free.
//! - SmartOS has no `struct zone_mcaptab` / `zonecfg_modify_mcap` (capped-memory `physical`
//!   is the rctl `zone.max-physical-memory`, alias `physical`); gate has them (enforced by
//!   rcapd) and no such rctl alias. Not declared.
//! - `struct zone_nwiftab`, `struct zoneent` and `struct zone_dstab` differ too (SmartOS adds
//!   MAC, VLAN, global NIC, properties; brand, IP type, debug id; the 2015 SmartOS header has a
//!   dataset alias the 2019 one dropped). Not used, not declared.
//! - `ZONE_ATTR_*` numbers differ from 12 on (gate has `ZONE_ATTR_PHYS_MCAP` = 12, SmartOS
//!   does not); the two used here, `ZONE_ATTR_STATUS` (3) and `ZONE_ATTR_INITPID` (7), are
//!   the same in both.
//!
//! What could not be verified here (no illumos machine, no illumos headers to compile
//! against): the struct sizes are computed by hand from the headers for LP64 (`MAXPATHLEN`
//! 1024, `MAXNAMELEN` 256, `BUFSIZ` 1024, `FSTYPSZ` 16, `MAX_MNTOPT_STR` 1024, `BOOTARGS_MAX`
//! 256, C enums 4 bytes) and asserted at compile time below; that the newest illumos-gate and
//! SmartOS still have exactly these layouts; that the symbols link (nothing was linked).
//!
//! On illumos the extern blocks link `libzonecfg`; with the `zones-typecheck` feature on
//! another OS they are only type-checked (`cargo check` never links, and nothing outside this
//! module calls them).

#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_int, c_uint, c_void};

/// `MAXPATHLEN` (`sys/param.h`).
pub const MAXPATHLEN: usize = 1024;
/// `MAXNAMELEN` (`sys/param.h`).
pub const MAXNAMELEN: usize = 256;
/// `BUFSIZ` (`iso/stdio_iso.h`); attribute values are `2 * BUFSIZ`.
pub const BUFSIZ: usize = 1024;
/// `FSTYPSZ` (`sys/fstyp.h`).
pub const FSTYPSZ: usize = 16;
/// `MAX_MNTOPT_STR` (`sys/mount.h`).
pub const MAX_MNTOPT_STR: usize = 1024;
/// `BOOTARGS_MAX` (`sys/uadmin.h`).
pub const BOOTARGS_MAX: usize = 256;
/// `ZONENAME_MAX` (`sys/zone.h`).
pub const ZONENAME_MAX: usize = 64;

/// `boolean_t` (a C enum: `B_FALSE`, `B_TRUE`).
pub type boolean_t = c_int;
/// `B_FALSE`.
pub const B_FALSE: boolean_t = 0;
/// `B_TRUE`.
pub const B_TRUE: boolean_t = 1;
/// `zoneid_t` (`id_t`, an `int`).
pub type zoneid_t = c_int;
/// `pid_t` on LP64 illumos (`int`).
pub type pid_t = c_int;
/// `zone_state_t` (`uint_t`), values `ZONE_STATE_*`.
pub type zone_state_t = c_uint;
/// `zone_cmd_t` (a C enum), values `Z_*` below.
pub type zone_cmd_t = c_int;

/// Opaque `struct zone_dochandle`; libzonecfg allocates and frees it.
#[repr(C)]
pub struct zone_dochandle {
    _opaque: [u8; 0],
}
/// `zone_dochandle_t`: a pointer to the opaque handle.
pub type zone_dochandle_t = *mut zone_dochandle;

/// libzonecfg's return codes (`Z_*` in `libzonecfg.h`), the ones this layer tells apart.
pub mod z {
    use std::ffi::c_int;
    /// Success.
    pub const Z_OK: c_int = 0;
    /// No such entry.
    pub const Z_NO_ENTRY: c_int = 6;
    /// Illegal zone name.
    pub const Z_BOGUS_ZONE_NAME: c_int = 7;
    /// Bad document handle.
    pub const Z_BAD_HANDLE: c_int = 10;
    /// Out of memory.
    pub const Z_NOMEM: c_int = 11;
    /// Invalid argument.
    pub const Z_INVAL: c_int = 12;
    /// Permission denied.
    pub const Z_ACCES: c_int = 13;
    /// A string does not fit its array.
    pub const Z_TOO_BIG: c_int = 14;
    /// No such zone.
    pub const Z_NO_ZONE: c_int = 16;
    /// The zone's state does not allow this.
    pub const Z_BAD_ZONE_STATE: c_int = 21;
    /// Zone name already in use.
    pub const Z_NAME_IN_USE: c_int = 23;
    /// Consult `errno`.
    pub const Z_SYSTEM: c_int = 28;
}

/// `ZONE_STATE_CONFIGURED`: a configuration, nothing installed.
pub const ZONE_STATE_CONFIGURED: zone_state_t = 0;
/// `ZONE_STATE_INCOMPLETE`.
pub const ZONE_STATE_INCOMPLETE: zone_state_t = 1;
/// `ZONE_STATE_INSTALLED`: ready to boot.
pub const ZONE_STATE_INSTALLED: zone_state_t = 2;
/// `ZONE_STATE_READY`: the kernel zone exists, nothing runs.
pub const ZONE_STATE_READY: zone_state_t = 3;
/// `ZONE_STATE_RUNNING`.
pub const ZONE_STATE_RUNNING: zone_state_t = 4;
/// `ZONE_STATE_SHUTTING_DOWN`.
pub const ZONE_STATE_SHUTTING_DOWN: zone_state_t = 5;
/// `ZONE_STATE_DOWN`.
pub const ZONE_STATE_DOWN: zone_state_t = 6;
/// `ZONE_STATE_MOUNTED`.
pub const ZONE_STATE_MOUNTED: zone_state_t = 7;

/// `Z_READY` (`enum zone_cmd`, same values in gate and SmartOS).
pub const Z_READY: zone_cmd_t = 0;
/// `Z_BOOT`: ready the zone and start its init.
pub const Z_BOOT: zone_cmd_t = 1;
/// `Z_FORCEBOOT`.
pub const Z_FORCEBOOT: zone_cmd_t = 2;
/// `Z_REBOOT`.
pub const Z_REBOOT: zone_cmd_t = 3;
/// `Z_HALT`: kill everything in the zone and tear it down (back to installed).
pub const Z_HALT: zone_cmd_t = 4;

/// `ZONE_ATTR_STATUS` for `zone_getattr` (a `zone_status_t`).
pub const ZONE_ATTR_STATUS: c_int = 3;
/// `ZONE_ATTR_INITPID` for `zone_getattr` (a `pid_t`; -1 until init runs).
pub const ZONE_ATTR_INITPID: c_int = 7;

/// `struct zone_attrtab`: one `attr` resource.
#[repr(C)]
pub struct zone_attrtab {
    /// Name.
    pub zone_attr_name: [c_char; MAXNAMELEN],
    /// Type (`string`, `int`, `uint`, `boolean`).
    pub zone_attr_type: [c_char; MAXNAMELEN],
    /// Value.
    pub zone_attr_value: [c_char; 2 * BUFSIZ],
}

/// `struct zone_rctlvaltab`: one value of an rctl, in a list. libzonecfg frees these with
/// `free()` (`zonecfg_free_rctl_value_list`), so they must come from `malloc`.
#[repr(C)]
pub struct zone_rctlvaltab {
    /// `privileged`, `basic` or `system`.
    pub zone_rctlval_priv: [c_char; MAXNAMELEN],
    /// The limit, a decimal number.
    pub zone_rctlval_limit: [c_char; MAXNAMELEN],
    /// `deny`, `none`, `signal=...`.
    pub zone_rctlval_action: [c_char; MAXNAMELEN],
    /// Next value.
    pub zone_rctlval_next: *mut zone_rctlvaltab,
}

/// `struct zone_rctltab`: one `rctl` resource.
#[repr(C)]
pub struct zone_rctltab {
    /// The rctl's name (`zone.*`).
    pub zone_rctl_name: [c_char; MAXNAMELEN],
    /// Its values.
    pub zone_rctl_valptr: *mut zone_rctlvaltab,
}

/// `struct zone_devtab` as SmartOS has it (gate's is the first field alone; see the module
/// docs for why this layout serves both when adding).
#[repr(C)]
pub struct zone_devtab {
    /// Device path pattern (`/dev/...`).
    pub zone_dev_match: [c_char; MAXPATHLEN],
    /// SmartOS only: the device's properties; always NULL here.
    pub zone_dev_attrp: *mut c_void,
}

/// `zone_fsopt_t`: one mount option, in a list libzonecfg allocates
/// (`zonecfg_add_fs_option`) and frees (`zonecfg_free_fs_option_list`).
#[repr(C)]
pub struct zone_fsopt_t {
    /// Next option.
    pub zone_fsopt_next: *mut zone_fsopt_t,
    /// The option.
    pub zone_fsopt_opt: [c_char; MAX_MNTOPT_STR],
}

/// `struct zone_fstab`: one `fs` resource (same in gate and SmartOS).
#[repr(C)]
pub struct zone_fstab {
    /// What is mounted (for lofs, the host directory).
    pub zone_fs_special: [c_char; MAXPATHLEN],
    /// Where, relative to the zone's root.
    pub zone_fs_dir: [c_char; MAXPATHLEN],
    /// File system type (`lofs`).
    pub zone_fs_type: [c_char; FSTYPSZ],
    /// Mount options.
    pub zone_fs_options: *mut zone_fsopt_t,
    /// Device to fsck; empty for lofs.
    pub zone_fs_raw: [c_char; MAXPATHLEN],
}

/// `zone_cmd_arg_t` of illumos-gate: zoneadmd's door argument.
#[repr(C)]
pub struct zone_cmd_arg_t {
    /// Generation of the zone (libzonecfg fills it in).
    pub uniqid: u64,
    /// The command (`Z_*`).
    pub cmd: zone_cmd_t,
    /// Padding for 32/64-bit callers.
    pub _pad: u32,
    /// Locale of messages (libzonecfg copies its `locale` argument here).
    pub locale: [c_char; MAXPATHLEN],
    /// Boot arguments.
    pub bootbuf: [c_char; BOOTARGS_MAX],
}

/// `zone_cmd_arg_t` of illumos-joyent (SmartOS).
#[repr(C)]
pub struct zone_cmd_arg_joyent_t {
    /// Generation of the zone (libzonecfg fills it in).
    pub uniqid: u64,
    /// The command (`Z_*`).
    pub cmd: zone_cmd_t,
    /// Exit status of init, on shutdown.
    pub status: c_int,
    /// Brand hook debugging (`zoneadm -d`).
    pub debug: u32,
    /// Locale of messages.
    pub locale: [c_char; MAXPATHLEN],
    /// Boot arguments.
    pub bootbuf: [c_char; BOOTARGS_MAX],
    /// Keeps the size the same for 32- and 64-bit callers.
    pub pad: c_int,
}

// Sizes computed from the headers for LP64 (the only illumos ABI vmpool builds for); checked
// wherever pointers are 64 bits, so on the Linux type-check build too.
#[cfg(target_pointer_width = "64")]
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<zone_attrtab>() == 256 + 256 + 2048);
    assert!(size_of::<zone_rctlvaltab>() == 3 * 256 + 8);
    assert!(size_of::<zone_rctltab>() == 256 + 8);
    assert!(size_of::<zone_devtab>() == 1024 + 8);
    assert!(size_of::<zone_fsopt_t>() == 8 + 1024);
    assert!(size_of::<zone_fstab>() == 1024 + 1024 + 16 + 8 + 1024);
    assert!(offset_of!(zone_fstab, zone_fs_options) == 2064);
    assert!(size_of::<zone_cmd_arg_t>() == 1296);
    assert!(offset_of!(zone_cmd_arg_t, locale) == 16);
    assert!(size_of::<zone_cmd_arg_joyent_t>() == 1304);
    assert!(offset_of!(zone_cmd_arg_joyent_t, locale) == 20);
    assert!(offset_of!(zone_cmd_arg_joyent_t, pad) == 1300);
};

#[cfg_attr(target_os = "illumos", link(name = "zonecfg"))]
extern "C" {
    /// A new, empty handle (NULL when out of memory).
    pub fn zonecfg_init_handle() -> zone_dochandle_t;
    /// Load zone `zonename`'s configuration into `handle`.
    pub fn zonecfg_get_handle(zonename: *const c_char, handle: zone_dochandle_t) -> c_int;
    /// Load the snapshot libzonecfg keeps of a running zone's configuration.
    pub fn zonecfg_get_snapshot_handle(zonename: *const c_char, handle: zone_dochandle_t) -> c_int;
    /// Load template `template` (`/etc/zones/<template>.xml`) as new zone `zonename`.
    pub fn zonecfg_get_template_handle(
        template: *const c_char,
        zonename: *const c_char,
        handle: zone_dochandle_t,
    ) -> c_int;
    /// Free a handle and its document.
    pub fn zonecfg_fini_handle(handle: zone_dochandle_t);
    /// Remove zone `zonename`'s configuration and index entry (state at most installed;
    /// `force` allows installed).
    pub fn zonecfg_destroy(zonename: *const c_char, force: boolean_t) -> c_int;
    /// Write the configuration (`/etc/zones/<name>.xml`) and the index.
    pub fn zonecfg_save(handle: zone_dochandle_t) -> c_int;
    /// Text of a `Z_*` code (static or from `strerror`).
    pub fn zonecfg_strerror(err: c_int) -> *mut c_char;
    /// Rename the zone of the handle.
    pub fn zonecfg_set_name(handle: zone_dochandle_t, name: *mut c_char) -> c_int;
    /// Set the zone's path (absolute).
    pub fn zonecfg_set_zonepath(handle: zone_dochandle_t, zonepath: *mut c_char) -> c_int;
    /// Set the zone's brand.
    pub fn zonecfg_set_brand(handle: zone_dochandle_t, brand: *mut c_char) -> c_int;
    /// Set whether the zone boots with the system.
    pub fn zonecfg_set_autoboot(handle: zone_dochandle_t, autoboot: boolean_t) -> c_int;
    /// Set the zone's privilege limit (`limitpriv`).
    pub fn zonecfg_set_limitpriv(handle: zone_dochandle_t, limitpriv: *mut c_char) -> c_int;
    /// Add an `attr` resource.
    pub fn zonecfg_add_attr(handle: zone_dochandle_t, tab: *mut zone_attrtab) -> c_int;
    /// Add an `rctl` resource with the values linked to it.
    pub fn zonecfg_add_rctl(handle: zone_dochandle_t, tab: *mut zone_rctltab) -> c_int;
    /// Validate `val` and append it to `tab`'s value list (which then owns it; on failure
    /// it is not linked and stays the caller's).
    pub fn zonecfg_add_rctl_value(tab: *mut zone_rctltab, val: *mut zone_rctlvaltab) -> c_int;
    /// `free()` a value list.
    pub fn zonecfg_free_rctl_value_list(list: *mut zone_rctlvaltab);
    /// Add a `device` resource.
    pub fn zonecfg_add_dev(handle: zone_dochandle_t, tab: *mut zone_devtab) -> c_int;
    /// Add an `fs` resource.
    pub fn zonecfg_add_filesystem(handle: zone_dochandle_t, tab: *mut zone_fstab) -> c_int;
    /// Append a (malloc'd) option to `tab`'s option list.
    pub fn zonecfg_add_fs_option(tab: *mut zone_fstab, option: *mut c_char) -> c_int;
    /// Free an option list.
    pub fn zonecfg_free_fs_option_list(list: *mut zone_fsopt_t);
    /// Send `arg` (a [`zone_cmd_arg_t`] or [`zone_cmd_arg_joyent_t`], whichever the running
    /// OS has) to the zone's zoneadmd, starting zoneadmd first if needed; 0 or -1. zoneadmd's
    /// error text is printed to this process's stderr, not returned. `lock`: take the zone's
    /// zoneadm lock while starting zoneadmd (needs `zonecfg_init_lock_file` first).
    pub fn zonecfg_call_zoneadmd(
        zonename: *const c_char,
        arg: *mut c_void,
        locale: *mut c_char,
        lock: boolean_t,
    ) -> c_int;
    /// The zone's state: the kernel's if it is active, else the index's; `Z_NO_ZONE` when
    /// neither knows it.
    pub fn zone_get_state(zonename: *mut c_char, state: *mut zone_state_t) -> c_int;
    /// Set a zone's state in the index (only configured, incomplete or installed).
    pub fn zone_set_state(zonename: *mut c_char, state: zone_state_t) -> c_int;
    /// Name of a state (static string).
    pub fn zone_state_str(state: zone_state_t) -> *mut c_char;
    /// The id of an active zone, or `ZONE_ID_UNDEFINED` (-1) for a configured one; -1 as the
    /// return value when there is no such zone.
    pub fn zone_get_id(zonename: *const c_char, zoneid: *mut zoneid_t) -> c_int;
}

extern "C" {
    // libc (`<zone.h>`).
    /// The id of an active zone, -1 if none has that name.
    pub fn getzoneidbyname(zonename: *const c_char) -> zoneid_t;
    /// Read attribute `attr` of an active zone into `buf`; its size, or -1.
    pub fn zone_getattr(zoneid: zoneid_t, attr: c_int, buf: *mut c_void, bufsize: usize) -> isize;
}
