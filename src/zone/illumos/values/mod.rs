//! What a VM's illumos zone is made of, computed from its [`ZoneSpec`] by pure functions: the
//! zone's name and path, its attributes, resource controls, devices and loopback mounts, the
//! `/startvm` script the kvm brand runs as the zone's init, and the few facts read back from
//! the host (the platform, the mount table).
//!
//! Kept apart from the libzonecfg layer (`illumos`, built only on illumos or with the
//! `zones-typecheck` feature) so that it is compiled and unit-tested on every platform: these
//! are the decisions that can be checked without an illumos kernel.
//!
//! Sources the values follow (read, not copied):
//! - SmartOS `vmadm`: TritonDataCenter/smartos-live @ 059ec27268b39fc3bec4d82b949884391c75055d
//!   (2026-03-13), `src/vm/node_modules/VM.js` (`buildZonecfgUpdate`, `startVM`, the rctl
//!   table of `update`) and `proptable.js` (`brand_options.kvm`).
//! - The kvm brand of illumos-joyent, `usr/src/lib/brand/kvm/zone/`: `config.xml` @
//!   f9b92b874c7e2b0a97203e8b3e370a82027fee42, `platform.xml` @
//!   d0ca2b08e18a06d653279357d3fa022c0e12b0bf, `kinstall.ksh` @
//!   fe50f834535c7c36ad3ec5348424e3b25f9b7ac5, `statechange.ksh` @
//!   f9b92b874c7e2b0a97203e8b3e370a82027fee42 (illumos-joyent commits, found in the code
//!   index under `illumos/illumos-gate`, which shares their history; upstream illumos-gate
//!   has, as far as we know, no kvm brand).
//! - libzonecfg (`usr/src/lib/libzonecfg/common/libzonecfg.c`: name checks, the rctl alias
//!   table, `zonecfg_destroy`); revisions at the top of `illumos/sys.rs`.

use crate::zone::{IoLimits, ZoneSpec};
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// Prefix of every zone vmpool makes; the rest is the VM's uuid.
pub const ZONE_NAME_PREFIX: &str = "vmpool-";

/// Longest zone name plus its NUL (`ZONENAME_MAX` in `sys/zone.h`).
pub const ZONENAME_MAX: usize = 64;

/// The brand: SmartOS's `kvm`, whose init is `/startvm` in the zone's root (a script the
/// caller writes) and which mounts `/usr`, `/lib`, `/sbin` and `/smartdc` read-only and gives
/// the zone `/dev/kvm`. SmartOS's `bhyve` brand would be the alternative for bhyve guests; it
/// starts bhyve itself from zone attributes and so does not run vmpool's QEMU.
pub const BRAND: &str = "kvm";

/// The template the configuration starts from: the empty one, as `zonecfg create -b` and
/// SmartOS's `vmadm` use (`SUNWdefault` carries the default brand's settings, which a kvm zone
/// does not want).
pub const TEMPLATE: &str = "SUNWblank";

/// The zone's privilege limit: SmartOS's for kvm zones (`proptable.js`, `limit_priv`) except
/// that `net_access` is kept, because vmpool's QEMU opens sockets of its own (user-mode
/// networking, a SPICE TCP port) where SmartOS's QEMU only uses VNICs and UNIX sockets.
pub const LIMITPRIV: &str = "default,-file_link_any,-proc_fork,-proc_info,-proc_session";

/// The init of the kvm brand (`<initname>` in its `config.xml`), relative to the zone's root.
pub const STARTVM: &str = "startvm";

/// FIFO in the zone's root that carries QEMU's stdout (the serial console) to the caller.
pub const STDOUT_FIFO: &str = "tmp/vmpool.stdout";

/// FIFO in the zone's root that carries QEMU's stderr to the caller.
pub const STDERR_FIFO: &str = "tmp/vmpool.stderr";

/// FIFO in the zone's root on which `/startvm` says that it holds the other two open. Until
/// then a reader of an output FIFO would see end-of-file (no writer yet), which the caller
/// would take for QEMU's end.
pub const READY_FIFO: &str = "tmp/vmpool.ready";

/// Directories the kvm brand's `platform.xml` mounts read-only in every zone: a program or
/// file below them is visible inside without a mount of ours.
pub const PLATFORM_MOUNTS: [&str; 4] = ["/usr", "/lib", "/sbin", "/smartdc"];

/// Longest path libzonecfg stores (`MAXPATHLEN`), with its NUL.
pub const MAXPATHLEN: usize = 1024;

/// Smallest `zone.max-lwps` zonecfg accepts for the `max-lwps` alias (libzonecfg's alias
/// table). A raw rctl below it is not refused by libzonecfg as far as we read, but a zone
/// that `zonecfg` itself could not describe is not what we want to make.
pub const MIN_LWPS: u64 = 100;

/// Smallest `zone.max-physical-memory`: SmartOS's alias table refuses less than 1 MiB.
pub const MIN_PHYSICAL_MEMORY: u64 = 1 << 20;

/// Smallest `zone.max-swap` vmadm gives a zone (`MINIMUM_MAX_SWAP`, 256 MiB in VM.js).
pub const MIN_SWAP: u64 = 256 << 20;

/// The zone of VM `vm`: `vmpool-<uuid>`, 43 characters, so below `ZONENAME_MAX`.
pub fn zone_name(vm: &Uuid) -> String {
    format!("{ZONE_NAME_PREFIX}{vm}")
}

/// Whether libzonecfg accepts `name` for a new zone: what `zonecfg_validate_zonename` checks
/// (not `global`, shorter than `ZONENAME_MAX`, `[A-Za-z0-9][-_.A-Za-z0-9]*`) plus the rule of
/// `zonecfg_set_name` that names starting with `SUNW` are reserved.
pub fn valid_zone_name(name: &str) -> bool {
    let b = name.as_bytes();
    let ok_first = |c: u8| c.is_ascii_alphanumeric();
    let ok_rest = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.');
    name != "global"
        && !name.starts_with("SUNW")
        && !b.is_empty()
        && b.len() < ZONENAME_MAX
        && ok_first(b[0])
        && b[1..].iter().all(|&c| ok_rest(c))
}

/// The zone's path: `<run dir>/zone`. The run directory is the VM's own (made by vmpool,
/// removed with the VM, on the store's file system and so on its ZFS dataset for a ZFS store),
/// which is what SmartOS's `/zones/<uuid>` is for a vmadm VM; the zone's root is `root` in it.
pub fn zonepath(spec: &ZoneSpec) -> PathBuf {
    spec.run_dir.join("zone")
}

/// The zone's root directory (`<zonepath>/root`, fixed by zoneadmd).
pub fn zone_root(spec: &ZoneSpec) -> PathBuf {
    zonepath(spec).join("root")
}

/// Where a host path appears in the zone's root directory (mounts keep their host path inside
/// the zone, so QEMU's arguments stay valid there).
pub fn in_root(root: &Path, host: &Path) -> PathBuf {
    root.join(host.strip_prefix("/").unwrap_or(host))
}

/// Type of a zone attribute (`type` of an `attr` resource; the DTD's entities).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    /// `string`: how vmadm stores every attribute of a VM.
    String,
    /// `int`.
    Int,
    /// `uint`.
    Uint,
    /// `boolean` (`true` / `false`).
    Boolean,
}

impl AttrType {
    /// The name libzonecfg stores.
    pub fn as_str(self) -> &'static str {
        match self {
            AttrType::String => "string",
            AttrType::Int => "int",
            AttrType::Uint => "uint",
            AttrType::Boolean => "boolean",
        }
    }
}

/// The zone's attributes, as vmadm writes them for a kvm VM (`buildZonecfgUpdate` in VM.js:
/// `ram` in MiB and `vcpus`, both strings; `hostname` when there is one), plus `vmpool-vm`, the
/// VM's uuid, so that a zone can be traced back to its VM. vmadm keeps the disks as `device`
/// resources (see [`devices`]), not attributes, and builds QEMU's command line itself; here
/// the command line is vmpool's and goes into `/startvm` ([`startvm_script`]).
pub fn attrs(spec: &ZoneSpec) -> Vec<(&'static str, AttrType, String)> {
    let mut a = vec![
        ("ram", AttrType::String, spec.ram_mib.to_string()),
        ("vcpus", AttrType::String, spec.vcpus.to_string()),
        ("vmpool-vm", AttrType::String, spec.vm.to_string()),
    ];
    if !spec.hostname.is_empty() {
        a.push(("hostname", AttrType::String, spec.hostname.clone()));
    }
    a
}

/// Privilege of an rctl value (`priv` of an `rctl-value`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RctlPriv {
    /// `privileged`: set by the administrator; what every zone-wide limit of zonecfg uses.
    Privileged,
}

impl RctlPriv {
    /// The name libzonecfg stores.
    pub fn as_str(self) -> &'static str {
        match self {
            RctlPriv::Privileged => "privileged",
        }
    }
}

/// What the kernel does when an rctl value is reached (`action` of an `rctl-value`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RctlAction {
    /// `deny`: the request that would exceed it fails (an allocation, an LWP creation); for
    /// `zone.cpu-cap`, the zone's threads wait.
    Deny,
}

impl RctlAction {
    /// The name libzonecfg stores.
    pub fn as_str(self) -> &'static str {
        match self {
            RctlAction::Deny => "deny",
        }
    }
}

/// One resource control of the zone, with the one value it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rctl {
    /// Its name (`zone.*`).
    pub name: &'static str,
    /// The limit, in the rctl's unit.
    pub limit: u64,
    /// Who set it.
    pub privilege: RctlPriv,
    /// What happens at the limit.
    pub action: RctlAction,
}

fn rctl(name: &'static str, limit: u64) -> Rctl {
    Rctl {
        name,
        limit,
        privilege: RctlPriv::Privileged,
        action: RctlAction::Deny,
    }
}

/// The zone's resource controls, from [`ZoneSpec::limits`](crate::zone::ZoneSpec), named and valued
/// as SmartOS's zonecfg aliases store them (`privileged`, `deny`):
/// - `zone.cpu-cap`: `cpu_pct` as it is (the rctl is in percent of one CPU, like ours); left
///   out when 0, which the kernel refuses (VM.js removes the cap instead).
/// - `zone.max-physical-memory`: `memory_bytes`. The memory capper pages the zone out above
///   it; nothing is killed (see `oom_killed` in `illumos`).
/// - `zone.max-locked-memory`: `memory_bytes`, vmadm's default (`max_physical_memory`).
/// - `zone.max-swap`: `memory_bytes` but at least [`MIN_SWAP`], as vmadm does: the swap
///   reservation is what actually refuses memory to the zone (allocations fail, ENOMEM).
/// - `zone.max-lwps`: `pids`, raised to [`MIN_LWPS`].
pub fn rctls(spec: &ZoneSpec) -> Vec<Rctl> {
    let l = &spec.limits;
    let mut r = Vec::new();
    if l.cpu_pct > 0 {
        r.push(rctl("zone.cpu-cap", u64::from(l.cpu_pct)));
    }
    let mem = l.memory_bytes.max(MIN_PHYSICAL_MEMORY);
    r.push(rctl("zone.max-physical-memory", mem));
    r.push(rctl("zone.max-locked-memory", mem));
    r.push(rctl("zone.max-swap", mem.max(MIN_SWAP)));
    r.push(rctl("zone.max-lwps", l.pids.max(MIN_LWPS)));
    r
}

/// Why the zone cannot carry `spec`'s limits, if it cannot: illumos zones have no disk
/// bandwidth or IOPS limit (SmartOS's `zone.zfs-io-priority` is a relative weight, not a
/// cap), so a VM that asks for one is refused rather than run without it.
pub fn unsupported_limits(spec: &ZoneSpec) -> Option<String> {
    match spec.limits.io {
        Some(io) if io != IoLimits::default() => Some(format!(
            "VM {}: disk limits ({io:?}) cannot be enforced in an illumos zone (no zone rctl \
             caps bandwidth or IOPS); remove them to run this VM there",
            spec.vm
        )),
        _ => None,
    }
}

/// The device node of a zvol as illumos names it: `/dev/zvol/rdsk/<dataset>` (the raw node,
/// which vmadm gives QEMU, VM.js `volume.path`). vmpool's ZFS driver records the Linux form
/// `/dev/zvol/<dataset>`, which is mapped here; `dsk`/`rdsk` paths and other devices are kept.
pub fn illumos_device(p: &Path) -> PathBuf {
    let Ok(rest) = p.strip_prefix("/dev/zvol") else {
        return p.to_owned();
    };
    if rest.starts_with("rdsk") || rest.starts_with("dsk") || rest.as_os_str().is_empty() {
        return p.to_owned();
    }
    Path::new("/dev/zvol/rdsk").join(rest)
}

/// The zone's `device` resources (`match` paths): the spec's devices in their illumos form
/// ([`illumos_device`]), each once. `/dev/kvm` is in the brand's `platform.xml` already and
/// is listed again harmlessly. Each pair is (the path the spec has, the path the zone gets).
pub fn devices(spec: &ZoneSpec) -> Vec<(PathBuf, PathBuf)> {
    let mut out: Vec<(PathBuf, PathBuf)> = Vec::new();
    for d in &spec.devices {
        let m = illumos_device(d);
        if !out.iter().any(|(_, x)| *x == m) {
            out.push((d.clone(), m));
        }
    }
    out
}

/// The first of QEMU's arguments that still names a device by the path the spec has where the
/// zone has another one (a Linux-form zvol path): (the argument, the spec's path, the zone's).
/// QEMU would not find it in the zone, so booting refuses instead of failing later.
pub fn stale_device_arg(
    args: &[String],
    devices: &[(PathBuf, PathBuf)],
) -> Option<(String, PathBuf, PathBuf)> {
    for (from, to) in devices.iter().filter(|(f, t)| f != t) {
        let f = from.to_string_lossy();
        if let Some(a) = args.iter().find(|a| mentions_path(a, &f)) {
            return Some((a.clone(), from.clone(), to.clone()));
        }
    }
    None
}

/// `arg` contains `path` as a whole path (followed by the end, `,` or `:`, as in QEMU's
/// `file=<path>,...`).
fn mentions_path(arg: &str, path: &str) -> bool {
    arg.match_indices(path).any(|(i, _)| {
        let before_ok = i == 0 || matches!(arg.as_bytes()[i - 1], b'=' | b',' | b':');
        let end = i + path.len();
        let after_ok = end == arg.len() || matches!(arg.as_bytes()[end], b',' | b':');
        before_ok && after_ok
    })
}

/// A loopback (`lofs`) mount of a host directory at the same path in the zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The directory (host path = zone path).
    pub dir: PathBuf,
    /// Mounted `ro` (else `rw`); always `nodevices`.
    pub read_only: bool,
}

impl Mount {
    /// Its mount options, as the brand's `platform.xml` writes them.
    pub fn options(&self) -> [&'static str; 2] {
        [if self.read_only { "ro" } else { "rw" }, "nodevices"]
    }
}

/// Whether `p` is visible in every kvm zone without a mount of ours ([`PLATFORM_MOUNTS`]).
pub fn visible_in_zone(p: &Path) -> bool {
    PLATFORM_MOUNTS.iter().any(|m| p.starts_with(m))
}

/// The zone's loopback mounts: every writable directory read-write and, for each readable
/// path not already visible ([`visible_in_zone`]), the directory read-only (its parent when it
/// is a file: lofs here mounts directories only, and an image or firmware directory holds
/// only read-only templates). A writable *file* is refused: its directory is the store's disk
/// directory, shared with the other VMs, and mounting it read-write would hand them all to
/// this QEMU; on illumos a VM's disk is a zvol, given as a device. `is_dir` says what a path
/// is (the caller asks the file system). A directory below another mount is not mounted again
/// with the same access, and a directory that holds the zonepath (the host's `/`, say) is
/// refused.
pub fn mounts(spec: &ZoneSpec, is_dir: impl Fn(&Path) -> bool) -> Result<Vec<Mount>, String> {
    let mut wanted: Vec<Mount> = Vec::new();
    for w in &spec.writable {
        if !w.is_absolute() {
            return Err(format!("{} is not an absolute path", w.display()));
        }
        if !is_dir(w) {
            return Err(format!(
                "{} is a file QEMU writes; an illumos zone can only be given whole directories, \
                 and this one is shared with other VMs (use a ZFS store: its disks are devices)",
                w.display()
            ));
        }
        wanted.push(Mount {
            dir: w.clone(),
            read_only: false,
        });
    }
    for r in &spec.readable {
        if !r.is_absolute() {
            return Err(format!("{} is not an absolute path", r.display()));
        }
        if visible_in_zone(r) {
            continue;
        }
        let dir = if is_dir(r) {
            r.clone()
        } else {
            r.parent().map(Path::to_owned).unwrap_or_else(|| r.clone())
        };
        wanted.push(Mount {
            dir,
            read_only: true,
        });
    }
    // Read-write first, so that a directory both read and written is mounted once, writable.
    wanted.sort_by(|a, b| a.read_only.cmp(&b.read_only).then(a.dir.cmp(&b.dir)));
    let mut out: Vec<Mount> = Vec::new();
    for m in wanted {
        let covered = out
            .iter()
            .any(|o| m.dir.starts_with(&o.dir) && (!o.read_only || m.read_only));
        if !covered {
            out.push(m);
        }
    }
    // A directory holding the zone itself would show the zone its own root (and the host's
    // `/` everything); neither is something QEMU needs.
    let zp = zonepath(spec);
    if let Some(m) = out.iter().find(|m| zp.starts_with(&m.dir)) {
        return Err(format!(
            "{} would be mounted in the zone, but it holds the zone's own path {}",
            m.dir.display(),
            zp.display()
        ));
    }
    out.sort_by(|a, b| a.dir.cmp(&b.dir));
    Ok(out)
}

/// `s` as one word for bash: single-quoted, each `'` written as `'\''`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The `/startvm` script: the kvm brand's init (its `config.xml`), which vmadm also writes
/// (`startVM` in VM.js). It connects stdin to `/dev/null` and stdout and stderr to the FIFOs
/// the caller reads ([`STDOUT_FIFO`], [`STDERR_FIFO`]), writes a line to [`READY_FIFO`], then
/// replaces itself with QEMU, so QEMU is the zone's init, keeps its pid and inherits the
/// FIFOs. `/usr/bin/bash` as in VM.js: `/usr` is mounted
/// in every kvm zone, `/bin` is not. Only `exec` is used, since the zone may not fork
/// (`-proc_fork` in [`LIMITPRIV`]).
pub fn startvm_script(zone: &str, program: &Path, args: &[String]) -> String {
    let mut cmd = shell_quote(&program.to_string_lossy());
    for a in args {
        cmd.push(' ');
        cmd.push_str(&shell_quote(a));
    }
    format!(
        "#!/usr/bin/bash\n\
         # Written by vmpool for zone {zone}: the kvm brand runs /startvm as the zone's init.\n\
         exec </dev/null >/{STDOUT_FIFO} 2>/{STDERR_FIFO}\n\
         echo ready >/{READY_FIFO}\n\
         export PATH=/usr/bin:/usr/sbin\n\
         exec {cmd}\n"
    )
}

/// The illumos distribution, which decides the layout of zoneadmd's door argument and whether
/// the kvm brand driven here exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// SmartOS (illumos-joyent): `uname -v` is `joyent_<buildstamp>`.
    SmartOs,
    /// Any other illumos (OmniOS, OpenIndiana, ... built from illumos-gate).
    Illumos,
}

/// The platform from `uname -v` (`utsname.version`).
pub fn platform(uname_version: &str) -> Platform {
    if uname_version.starts_with("joyent_") {
        Platform::SmartOs
    } else {
        Platform::Illumos
    }
}

/// Mount points in an illumos `/etc/mnttab` (tab-separated: special, mount point, type,
/// options, time) that are `dir` or below it.
pub fn mounts_under(mnttab: &str, dir: &Path) -> Vec<PathBuf> {
    mnttab
        .lines()
        .filter_map(|l| l.split('\t').nth(1))
        .map(PathBuf::from)
        .filter(|m| m.starts_with(dir))
        .collect()
}
#[cfg(test)]
mod tests;
