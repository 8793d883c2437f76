//! The QEMU command line of a VM, built by one pure function ([`command_line`]) from
//! [`Launch`], which `start` fills from the VM's record and the store's run options.
//!
//! What every VM gets: q35; the disk as virtio-blk (`cache=none` where the file system takes
//! O_DIRECT); QXL with SPICE (ticketing on, and no password set until a console ticket is
//! asked for, so nobody can connect before); virtio-serial with the `com.redhat.spice.0` port
//! for spice-vdagent; a USB tablet; virtio-rng; `vmgenid` (a clone can be told apart from its
//! template, and a Linux guest re-seeds its RNG); virtio-net with user-mode networking
//! (`restrict=on` unless the store opens it) and the VM's own MAC; the serial console on
//! QEMU's stdout (the supervisor logs it); three QMP monitors, each on a socket the supervisor
//! made and hands to QEMU as a descriptor (QEMU creates no socket and names no path): vmpool's
//! (listening, [`QMP_FD`]), the supervisor's events ([`EVENTS_FD`]) and its commands
//! ([`CONTROL_FD`]). A SPICE server on a unix socket listens nowhere itself: the supervisor
//! accepts on the socket and hands each connection over (`add_client`).

use crate::image::DiskFormat;
use crate::vm::config::{NetMode, SpiceAddr};
use crate::vm::Accel;
use std::path::PathBuf;
use uuid::Uuid;

/// Descriptor of vmpool's QMP socket (listening) in QEMU.
pub const QMP_FD: i32 = 3;
/// Descriptor of the supervisor's event monitor (one end of a socket pair) in QEMU.
pub const EVENTS_FD: i32 = 4;
/// Descriptor of the supervisor's command monitor (one end of a socket pair) in QEMU.
pub const CONTROL_FD: i32 = 5;
/// Descriptor of vmpool's guest agent socket (listening) in QEMU.
pub const AGENT_FD: i32 = 6;
/// Descriptor of the VM's NoCloud seed (read-only) in QEMU, when it has one.
pub const SEED_FD: i32 = 7;

/// How QEMU caches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cache {
    /// O_DIRECT, no host page cache (the default where the file system allows it).
    None,
    /// The host page cache (tmpfs and other file systems without O_DIRECT).
    Writeback,
}

/// Firmware files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirmwareFiles {
    /// QEMU's default SeaBIOS.
    Bios,
    /// OVMF code (read-only) and the VM's own variable store.
    Uefi {
        /// `OVMF_CODE*.fd`.
        code: PathBuf,
        /// The VM's copy of `OVMF_VARS*.fd`.
        vars: PathBuf,
    },
}

/// Guest memory in a file, for memory templates (pools): `share` maps it shared (the
/// template writes its memory there) or private (a clone reads the template's pages and
/// copies only what it writes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryFile {
    /// The file (on tmpfs or hugetlbfs).
    pub path: PathBuf,
    /// Shared (template) or private (clone).
    pub share: bool,
}

/// Everything the command line is made from, already checked and resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// VM uuid.
    pub uuid: Uuid,
    /// Name shown by QEMU (the alias).
    pub name: String,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Memory in MiB.
    pub ram_mib: u64,
    /// Kvm or Tcg (never Auto here).
    pub accel: Accel,
    /// TCG translation cache in MiB (`tb-size`); `None`: QEMU's default.
    pub tcg_tb_mib: Option<u32>,
    /// Disk path (file or block device).
    pub disk: PathBuf,
    /// Disk format.
    pub disk_format: DiskFormat,
    /// Disk cache mode.
    pub cache: Cache,
    /// Firmware.
    pub firmware: FirmwareFiles,
    /// MAC address.
    pub mac: String,
    /// VM generation id.
    pub vmgenid: Uuid,
    /// SPICE address.
    pub spice: SpiceAddr,
    /// How the guest is networked.
    pub net: NetMode,
    /// QEMU's own seccomp sandbox (`-sandbox`).
    pub sandbox: bool,
    /// Guest memory backed by a file (pools' memory templates).
    pub memory_file: Option<MemoryFile>,
    /// Start waiting for an incoming migration (`-incoming defer`) instead of booting.
    pub incoming_defer: bool,
    /// The devices of a memory-template clone without its template's file: RAM in the
    /// backend `mem0`, the network card's port empty (a suspended clone resumes into these:
    /// its saved state names them).
    pub clone_layout: bool,
    /// Allocate all guest RAM at start (`prealloc=on`).
    pub prealloc: bool,
    /// A NoCloud seed drive, read from `SEED_FD` (`crate::vm::seed`).
    pub seed: bool,
}

/// The arguments after the QEMU binary.
pub fn command_line(l: &Launch) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    fn arg(a: &mut Vec<String>, k: &str, v: String) {
        a.push(k.to_owned());
        a.push(v);
    }
    let a = &mut a;
    arg(a, "-name", format!("guest={},debug-threads=on", l.name));
    arg(a, "-uuid", l.uuid.to_string());
    let clone_layout = l.clone_layout || l.memory_file.is_some();
    match (&l.memory_file, l.prealloc || clone_layout) {
        (None, false) => arg(a, "-machine", "q35".into()),
        _ => arg(a, "-machine", "q35,memory-backend=mem0".into()),
    }
    match (l.accel, l.tcg_tb_mib) {
        (Accel::Tcg, Some(tb)) => arg(a, "-accel", format!("tcg,tb-size={tb}")),
        (Accel::Kvm, _) => {
            arg(a, "-accel", "kvm".into());
            arg(a, "-cpu", "host".into());
        }
        _ => arg(a, "-accel", "tcg".into()),
    }
    arg(a, "-smp", l.vcpus.to_string());
    arg(a, "-m", format!("{}M", l.ram_mib));
    let prealloc = if l.prealloc { ",prealloc=on" } else { "" };
    match &l.memory_file {
        // A clone maps the template's file private and read-only (`rom=off`: the guest still
        // writes, into its own copy of each page it touches); the file itself never changes.
        Some(m) => arg(
            a,
            "-object",
            format!(
                "memory-backend-file,id=mem0,size={}M,mem-path={},{}{prealloc}",
                l.ram_mib,
                m.path.display(),
                if m.share {
                    "share=on"
                } else {
                    "share=off,readonly=on,rom=off"
                }
            ),
        ),
        None if l.prealloc || clone_layout => arg(
            a,
            "-object",
            format!("memory-backend-ram,id=mem0,size={}M{prealloc}", l.ram_mib),
        ),
        None => {}
    }
    a.push("-nodefaults".into());
    a.push("-no-user-config".into());
    arg(a, "-display", "none".into());
    arg(a, "-msg", "timestamp=on".into());
    if let FirmwareFiles::Uefi { code, vars } = &l.firmware {
        arg(
            a,
            "-drive",
            format!(
                "if=pflash,format=raw,unit=0,readonly=on,file={}",
                code.display()
            ),
        );
        arg(
            a,
            "-drive",
            format!("if=pflash,format=raw,unit=1,file={}", vars.display()),
        );
    }
    arg(
        a,
        "-drive",
        format!(
            "file={},format={},if=none,id=disk0,cache={},discard=unmap",
            l.disk.display(),
            l.disk_format.as_str(),
            match l.cache {
                Cache::None => "none",
                Cache::Writeback => "writeback",
            }
        ),
    );
    arg(
        a,
        "-device",
        "virtio-blk-pci,drive=disk0,bootindex=1".into(),
    );
    if l.seed {
        // QEMU reads the seed through the descriptor it was given (an fd set), not a path.
        arg(
            a,
            "-add-fd",
            format!("fd={SEED_FD},set={SEED_FD},opaque=seed"),
        );
        arg(
            a,
            "-drive",
            format!("file=/dev/fdset/{SEED_FD},format=raw,if=none,id=seed,readonly=on"),
        );
        arg(a, "-device", "virtio-blk-pci,drive=seed".into());
    }
    arg(a, "-device", "qxl-vga,id=video0".into());
    arg(
        a,
        "-spice",
        match &l.spice {
            // The supervisor accepts on the socket and hands each client over.
            SpiceAddr::Unix { .. } => "disable-ticketing=off".into(),
            SpiceAddr::Tcp { host, port } => format!("port={port},addr={host}"),
        },
    );
    arg(a, "-device", "virtio-serial-pci,id=vser0".into());
    arg(a, "-chardev", "spicevmc,id=vdagent,name=vdagent".into());
    arg(
        a,
        "-device",
        "virtserialport,bus=vser0.0,chardev=vdagent,name=com.redhat.spice.0".into(),
    );
    // The guest agent's port (qemu-ga): vmpool talks to it through `AGENT_FD`.
    arg(
        a,
        "-chardev",
        format!("socket,id=qga,fd={AGENT_FD},server=on,wait=off"),
    );
    arg(
        a,
        "-device",
        "virtserialport,bus=vser0.0,chardev=qga,name=org.qemu.guest_agent.0".into(),
    );
    arg(a, "-device", "qemu-xhci,id=usb".into());
    arg(a, "-device", "usb-tablet,bus=usb.0".into());
    arg(
        a,
        "-object",
        "rng-random,id=rng0,filename=/dev/urandom".into(),
    );
    arg(a, "-device", "virtio-rng-pci,rng=rng0".into());
    arg(a, "-device", format!("vmgenid,guid={}", l.vmgenid));
    if clone_layout {
        // Memory templates: the network card's MAC is part of the device state a clone
        // loads, so the template has no card and each clone gets its own, with its own MAC,
        // hot-plugged into this port once it runs (`NIC_HOTPLUG`).
        arg(
            a,
            "-device",
            format!("pcie-root-port,id={NIC_PORT},bus=pcie.0,chassis=1"),
        );
    } else {
        arg(
            a,
            "-netdev",
            format!("user,id=net0,restrict={}", restrict(l.net)),
        );
        arg(
            a,
            "-device",
            format!("virtio-net-pci,netdev=net0,mac={}", l.mac),
        );
    }
    // The owner's home volume is hot-plugged here when the VM is handed out (`crate::home`).
    arg(
        a,
        "-device",
        format!("pcie-root-port,id={HOME_PORT},bus=pcie.0,chassis=2"),
    );
    arg(a, "-chardev", "stdio,id=serial0,signal=off".into());
    arg(a, "-serial", "chardev:serial0".into());
    for (id, fd, server) in [
        ("qmp", QMP_FD, true),
        ("events", EVENTS_FD, false),
        ("control", CONTROL_FD, false),
    ] {
        let listen = if server { ",server=on,wait=off" } else { "" };
        arg(a, "-chardev", format!("socket,id={id},fd={fd}{listen}"));
        arg(a, "-mon", format!("chardev={id},mode=control"));
    }
    if l.sandbox {
        arg(
            a,
            "-sandbox",
            "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny".into(),
        );
    }
    if l.incoming_defer {
        // -S: the guest stays paused after the state is loaded, until vmpool says `cont`
        // (after recording that the VM's disk may now move on from the template's).
        a.push("-S".into());
        arg(a, "-incoming", "defer".into());
    }
    std::mem::take(a)
}

/// The PCIe port a memory-templated VM's network card is hot-plugged into.
pub const NIC_PORT: &str = "nicport";

/// The PCIe port an owner's home volume is hot-plugged into (every VM has it, so a clone of
/// a memory template has it too).
pub const HOME_PORT: &str = "homeport";

/// Whether user networking is restricted in `net` mode (`restrict=on`).
pub fn restrict(net: NetMode) -> &'static str {
    match net {
        NetMode::Isolated => "on",
        NetMode::User => "off",
    }
}

/// Give a memory-templated VM its network card, with its own MAC, once it runs.
pub fn hotplug_nic(
    q: &mut crate::vm::qmp::Qmp,
    mac: &str,
    net: NetMode,
) -> Result<(), crate::vm::qmp::QmpError> {
    q.netdev_add_user("net0", net == NetMode::Isolated)?;
    q.device_add_virtio_net("nic0", "net0", mac, NIC_PORT)
}

/// Whether KVM works on this host: `/dev/kvm` opens and answers the API version every KVM
/// has had since 2007 (12).
pub fn kvm_usable() -> bool {
    use std::os::unix::io::AsRawFd;
    let Ok(f) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    else {
        return false;
    };
    const KVM_GET_API_VERSION: libc::c_ulong = 0xAE00;
    // SAFETY: an ioctl without an argument on a descriptor open for the call.
    let v = unsafe { libc::ioctl(f.as_raw_fd(), KVM_GET_API_VERSION as _, 0) };
    v == 12
}

/// Resolve `Auto` to what this host can do.
pub fn resolve_accel(a: Accel) -> Accel {
    match a {
        Accel::Auto if kvm_usable() => Accel::Kvm,
        Accel::Auto => Accel::Tcg,
        other => other,
    }
}

/// Whether the file system holding `path` takes O_DIRECT (tmpfs does not): QEMU's
/// `cache=none` needs it.
pub fn direct_io_works(path: &std::path::Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch() -> Launch {
        Launch {
            uuid: uuid::uuid!("33333333-3333-4333-8333-333333333333"),
            name: "desk-1".into(),
            vcpus: 2,
            ram_mib: 512,
            accel: Accel::Tcg,
            tcg_tb_mib: None,
            disk: "/s/vms/x-disk0.qcow2".into(),
            disk_format: DiskFormat::Qcow2,
            cache: Cache::None,
            firmware: FirmwareFiles::Bios,
            mac: "52:54:00:12:34:56".into(),
            vmgenid: uuid::uuid!("44444444-4444-4444-8444-444444444444"),
            spice: SpiceAddr::Unix {
                path: "/s/run/x/spice.sock".into(),
            },
            net: NetMode::Isolated,
            sandbox: false,
            memory_file: None,
            incoming_defer: false,
            clone_layout: false,
            prealloc: false,
            seed: false,
        }
    }

    /// The value after each occurrence of `flag`.
    fn values<'a>(a: &'a [String], flag: &str) -> Vec<&'a str> {
        a.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].as_str())
            .collect()
    }

    #[test]
    fn the_command_line_has_every_device() {
        let a = command_line(&launch());
        assert_eq!(values(&a, "-accel"), ["tcg"]);
        assert_eq!(values(&a, "-smp"), ["2"]);
        assert_eq!(values(&a, "-m"), ["512M"]);
        assert_eq!(
            values(&a, "-uuid"),
            ["33333333-3333-4333-8333-333333333333"]
        );
        assert!(a.contains(&"-nodefaults".to_string()));
        let drives = values(&a, "-drive");
        assert_eq!(
            drives,
            ["file=/s/vms/x-disk0.qcow2,format=qcow2,if=none,id=disk0,cache=none,discard=unmap"]
        );
        let devices = values(&a, "-device");
        for d in [
            "virtio-blk-pci,drive=disk0,bootindex=1",
            "qxl-vga,id=video0",
            "virtserialport,bus=vser0.0,chardev=vdagent,name=com.redhat.spice.0",
            "usb-tablet,bus=usb.0",
            "virtio-rng-pci,rng=rng0",
            "vmgenid,guid=44444444-4444-4444-8444-444444444444",
            "virtio-net-pci,netdev=net0,mac=52:54:00:12:34:56",
        ] {
            assert!(devices.contains(&d), "missing -device {d}: {devices:?}");
        }
        // No path for QEMU to create or follow: SPICE is handed its clients, the monitors
        // are descriptors.
        assert_eq!(values(&a, "-spice"), ["disable-ticketing=off"]);
        let chardevs = values(&a, "-chardev");
        for c in [
            "socket,id=qga,fd=6,server=on,wait=off",
            "socket,id=qmp,fd=3,server=on,wait=off",
            "socket,id=events,fd=4",
            "socket,id=control,fd=5",
        ] {
            assert!(chardevs.contains(&c), "missing -chardev {c}: {chardevs:?}");
        }
        assert!(
            devices.contains(&"virtserialport,bus=vser0.0,chardev=qga,name=org.qemu.guest_agent.0"),
            "{devices:?}"
        );
        assert!(!a.iter().any(|x| x.contains("/s/run/x/")), "{a:?}");
        // The guest reaches neither the host nor anything else.
        assert_eq!(values(&a, "-netdev"), ["user,id=net0,restrict=on"]);
        assert_eq!(values(&a, "-serial"), ["chardev:serial0"]);
        assert!(values(&a, "-sandbox").is_empty());
        assert!(values(&a, "-incoming").is_empty());
        assert!(values(&a, "-add-fd").is_empty());
        // Nothing listens on a network address unless asked.
        assert!(!a.iter().any(|x| x.contains("0.0.0.0")));
    }

    #[test]
    fn options_change_only_their_part() {
        let mut l = launch();
        l.accel = Accel::Kvm;
        l.cache = Cache::Writeback;
        l.disk_format = DiskFormat::Raw;
        l.spice = SpiceAddr::Tcp {
            host: std::net::IpAddr::from([127, 0, 0, 1]),
            port: 5930,
        };
        l.firmware = FirmwareFiles::Uefi {
            code: "/usr/share/OVMF/OVMF_CODE_4M.fd".into(),
            vars: "/s/run/x/uefi-vars.fd".into(),
        };
        l.sandbox = true;
        l.memory_file = Some(MemoryFile {
            path: "/dev/shm/t/mem".into(),
            share: false,
        });
        l.incoming_defer = true;
        l.seed = true;
        let a = command_line(&l);
        // The seed is a descriptor QEMU reads, never a path.
        assert_eq!(values(&a, "-add-fd"), ["fd=7,set=7,opaque=seed"]);
        assert!(values(&a, "-drive")
            .contains(&"file=/dev/fdset/7,format=raw,if=none,id=seed,readonly=on"));
        assert!(values(&a, "-device").contains(&"virtio-blk-pci,drive=seed"));
        assert_eq!(values(&a, "-accel"), ["kvm"]);
        assert_eq!(values(&a, "-cpu"), ["host"]);
        assert!(values(&a, "-drive")[2].contains("format=raw"));
        assert!(values(&a, "-drive")[2].contains("cache=writeback"));
        assert!(values(&a, "-drive")[0].contains("readonly=on"));
        assert_eq!(values(&a, "-spice"), ["port=5930,addr=127.0.0.1"]);
        assert_eq!(
            values(&a, "-sandbox"),
            ["on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"]
        );
        assert_eq!(values(&a, "-machine"), ["q35,memory-backend=mem0"]);
        assert!(values(&a, "-object")
            .iter()
            .any(|o| o.contains("mem-path=/dev/shm/t/mem,share=off,readonly=on,rom=off")));
        assert_eq!(values(&a, "-incoming"), ["defer"]);
        assert!(a.contains(&"-S".to_string()));
        // A templated VM gets its card later, with its own MAC.
        assert!(values(&a, "-netdev").is_empty());
        assert!(values(&a, "-device")
            .iter()
            .any(|d| d.starts_with("pcie-root-port,id=nicport")));
    }

    #[test]
    fn a_suspended_clone_resumes_into_the_clone_layout_with_its_own_ram() {
        let mut l = launch();
        l.clone_layout = true;
        l.incoming_defer = true;
        let a = command_line(&l);
        assert_eq!(values(&a, "-machine"), ["q35,memory-backend=mem0"]);
        assert_eq!(
            values(&a, "-object")[0],
            "memory-backend-ram,id=mem0,size=512M"
        );
        assert!(!a.iter().any(|x| x.contains("mem-path")));
        assert!(values(&a, "-netdev").is_empty());
        assert_eq!(values(&a, "-incoming"), ["defer"]);
        // Without the layout, RAM is QEMU's plain `-m` (a cold-booted VM's block name).
        let plain = command_line(&launch());
        assert_eq!(values(&plain, "-machine"), ["q35"]);
    }
}
