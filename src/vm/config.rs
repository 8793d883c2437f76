//! How a store runs its VMs: store URI options that every driver takes.
//!
//! | option | meaning | default |
//! |---|---|---|
//! | `accel` | `auto` (KVM when `/dev/kvm` works), `kvm` or `tcg` | `auto` |
//! | `qemu` | path of `qemu-system-x86_64` | `$VMPOOL_QEMU`, else from `PATH` |
//! | `spice` | `unix` (a socket in the VM's run directory) or `tcp` | `unix` |
//! | `spice_addr` | address SPICE listens on with `spice=tcp` | `127.0.0.1` |
//! | `spice_ports` | port range for `spice=tcp`, `FIRST-LAST` | `5900-5999` |
//! | `serial_log_kib` | size at which the serial log is rotated | `1024` |
//! | `zone` | `on`: every VM's QEMU in its zone (needs root); `off`; `auto`: on as root | `auto` |
//! | `uid_base`, `uid_count` | the uids (and gids) given to VMs, one each; each store's range is its own on the host (see `vm::uids`) | the lowest free range from `2000000`, `65536` |
//! | `template_dir` | where pools' memory templates keep their RAM (tmpfs or hugetlbfs) | `/dev/shm/vmpool` |
//! | `runtime_dir` | where VMs' sockets are (each store in its own directory) | `/run/vmpool` as root, else `$XDG_RUNTIME_DIR/vmpool` or `/tmp/vmpool-<uid>` |
//! | `net` | `isolated`: user networking with `restrict=on` (the guest reaches neither the host nor anything else); `user`: unrestricted user networking (the guest reaches the host's loopback as 10.0.2.2, and whatever the host reaches) | `isolated` |
//!
//! `template_dir` and `runtime_dir` must be trusted: every directory from `/` down owned by
//! root (or the user vmpool runs as) and writable by nobody else; vmpool makes the missing
//! ones with mode 0700 and refuses one another user made first (`safe_fs`).

use crate::error::{Error, Result};
use crate::vm::Accel;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::PathBuf;

/// Where a VM's SPICE server listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SpiceAddr {
    /// A unix socket.
    Unix {
        /// Its path.
        path: PathBuf,
    },
    /// TCP.
    Tcp {
        /// The address.
        host: IpAddr,
        /// The port.
        port: u16,
    },
}

/// How SPICE listens, per store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpiceListen {
    /// A socket in each VM's run directory.
    Unix,
    /// TCP on `addr`, a port of `ports` per VM.
    Tcp {
        /// Listen address.
        addr: IpAddr,
        /// First and last port.
        ports: (u16, u16),
    },
}

/// How a guest is networked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetMode {
    /// QEMU user networking with `restrict=on`: DHCP works, nothing is reachable.
    Isolated,
    /// QEMU user networking without restriction: the host's loopback is `10.0.2.2`.
    User,
}

/// The run options of a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunConfig {
    /// Accelerator for VMs that do not choose one.
    pub accel: Accel,
    /// QEMU binary.
    pub qemu: PathBuf,
    /// SPICE listening.
    pub spice: SpiceListen,
    /// Serial log rotation size in bytes.
    pub serial_log_bytes: u64,
    /// Whether VMs run in zones (isolated); needs root.
    pub zone: bool,
    /// First uid (and gid) given to VMs' QEMU processes; each VM gets its own. `None`: the
    /// lowest range no other store of this host has (`vm::uids`).
    pub uid_base: Option<u32>,
    /// How many uids from `uid_base` are vmpool's.
    pub uid_count: u32,
    /// Where memory templates keep their RAM and device state (each store in its own
    /// subdirectory). On tmpfs or hugetlbfs: the RAM file is mapped by every clone.
    pub template_dir: PathBuf,
    /// Where the VMs' sockets are (each store in its own directory below).
    pub runtime_dir: PathBuf,
    /// How guests are networked.
    pub net: NetMode,
}

/// The option names, for error messages.
pub const OPTIONS: &[&str] = &[
    "accel",
    "qemu",
    "spice",
    "spice_addr",
    "spice_ports",
    "serial_log_kib",
    "zone",
    "uid_base",
    "uid_count",
    "template_dir",
    "runtime_dir",
    "net",
];

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            accel: Accel::Auto,
            qemu: std::env::var_os("VMPOOL_QEMU")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("qemu-system-x86_64")),
            spice: SpiceListen::Unix,
            serial_log_bytes: 1 << 20,
            // SAFETY: geteuid has no preconditions.
            zone: unsafe { libc::geteuid() } == 0,
            uid_base: None,
            uid_count: 65_536,
            template_dir: PathBuf::from("/dev/shm/vmpool"),
            runtime_dir: default_runtime_dir(),
            net: NetMode::Isolated,
        }
    }
}

/// `/run/vmpool` for root; a user's own runtime directory otherwise.
fn default_runtime_dir() -> PathBuf {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    if uid == 0 {
        return PathBuf::from("/run/vmpool");
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d).join("vmpool"),
        None => PathBuf::from(format!("/tmp/vmpool-{uid}")),
    }
}

impl RunConfig {
    /// Apply one store option; false when the key is not a run option.
    pub fn set(&mut self, key: &str, value: &str) -> Result<bool> {
        match key {
            "accel" => self.accel = Accel::parse(value)?,
            "qemu" => {
                let p = PathBuf::from(value);
                if !p.is_absolute() {
                    return Err(Error::invalid(format!(
                        "store option qemu={value:?} is not an absolute path"
                    )));
                }
                self.qemu = p;
            }
            "spice" => {
                self.spice = match value {
                    "unix" => SpiceListen::Unix,
                    "tcp" => SpiceListen::Tcp {
                        addr: self.tcp_addr(),
                        ports: self.tcp_ports(),
                    },
                    _ => {
                        return Err(Error::invalid(format!(
                            "store option spice={value:?}: expected unix or tcp"
                        )))
                    }
                }
            }
            "spice_addr" => {
                let addr: IpAddr = value.parse().map_err(|_| {
                    Error::invalid(format!(
                        "store option spice_addr={value:?} is not an IP address"
                    ))
                })?;
                if let SpiceListen::Tcp { addr: a, .. } = &mut self.spice {
                    *a = addr;
                } else {
                    self.spice = SpiceListen::Tcp {
                        addr,
                        ports: self.tcp_ports(),
                    };
                }
            }
            "spice_ports" => {
                let bad = || {
                    Error::invalid(format!(
                        "store option spice_ports={value:?}: expected FIRST-LAST, 1024-65535"
                    ))
                };
                let (a, b) = value.split_once('-').ok_or_else(bad)?;
                let (a, b): (u16, u16) =
                    (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                if a < 1024 || a > b {
                    return Err(bad());
                }
                if let SpiceListen::Tcp { ports, .. } = &mut self.spice {
                    *ports = (a, b);
                } else {
                    self.spice = SpiceListen::Tcp {
                        addr: self.tcp_addr(),
                        ports: (a, b),
                    };
                }
            }
            "template_dir" | "runtime_dir" => {
                let p = PathBuf::from(value);
                if !p.is_absolute()
                    || p.components()
                        .any(|c| matches!(c, std::path::Component::ParentDir))
                {
                    return Err(Error::invalid(format!(
                        "store option {key}={value:?} is not an absolute path without '..'"
                    )));
                }
                if key == "template_dir" {
                    self.template_dir = p;
                } else {
                    self.runtime_dir = p;
                }
            }
            "net" => {
                self.net = match value {
                    "isolated" => NetMode::Isolated,
                    "user" => NetMode::User,
                    _ => {
                        return Err(Error::invalid(format!(
                            "store option net={value:?}: expected isolated or user"
                        )))
                    }
                }
            }
            "serial_log_kib" => {
                let n: u64 = value
                    .parse()
                    .ok()
                    .filter(|n| (16..=1 << 20).contains(n))
                    .ok_or_else(|| {
                        Error::invalid(format!(
                            "store option serial_log_kib={value:?}: expected 16 to 1048576"
                        ))
                    })?;
                self.serial_log_bytes = n << 10;
            }
            "zone" => {
                self.zone = match value {
                    "on" | "1" => true,
                    "off" | "0" => false,
                    "auto" => RunConfig::default().zone,
                    _ => {
                        return Err(Error::invalid(format!(
                            "store option zone={value:?}: expected on, off or auto"
                        )))
                    }
                }
            }
            "uid_base" | "uid_count" => {
                let n: u32 = value.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    Error::invalid(format!(
                        "store option {key}={value:?} is not a positive integer"
                    ))
                })?;
                if key == "uid_base" {
                    if n < 1000 {
                        return Err(Error::invalid(format!(
                            "store option uid_base={n}: below 1000 are system users; choose a range no one uses"
                        )));
                    }
                    self.uid_base = Some(n);
                } else {
                    self.uid_count = n;
                }
                if u64::from(self.uid_base.unwrap_or(crate::vm::uids::FIRST))
                    + u64::from(self.uid_count)
                    > u64::from(u32::MAX - 1)
                {
                    return Err(Error::invalid(
                        "store options uid_base + uid_count pass the largest uid",
                    ));
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn tcp_addr(&self) -> IpAddr {
        match &self.spice {
            SpiceListen::Tcp { addr, .. } => *addr,
            SpiceListen::Unix => IpAddr::from([127, 0, 0, 1]),
        }
    }

    fn tcp_ports(&self) -> (u16, u16) {
        match &self.spice {
            SpiceListen::Tcp { ports, .. } => *ports,
            SpiceListen::Unix => (5900, 5999),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let mut c = RunConfig::default();
        assert!(c.set("accel", "tcg").unwrap());
        assert_eq!(c.accel, Accel::Tcg);
        assert!(c.set("accel", "xen").is_err());
        assert!(!c.set("colour", "x").unwrap());
        assert!(c.set("spice_ports", "6000-6009").unwrap());
        assert_eq!(
            c.spice,
            SpiceListen::Tcp {
                addr: IpAddr::from([127, 0, 0, 1]),
                ports: (6000, 6009)
            }
        );
        assert!(c.set("spice_ports", "80-90").is_err());
        assert!(c.set("spice_addr", "not-an-ip").is_err());
        assert!(c.set("qemu", "relative/qemu").is_err());
        assert!(c.set("serial_log_kib", "1").is_err());
    }
}
